//! The `DeviceMemory` object: a PCI BAR granted to a driver, mapped uncached into its space.

use keel_abi::Status;

use super::{Caller, Reply};
use crate::mm::address_space::UserPerms;

/// A PCI BAR granted to a driver.
#[derive(Debug)]
pub struct DeviceMemory {
    pub phys: u64,
    pub size: u64,
    pub bdf: u16,
}

/// The methods of a `DeviceMemory` capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Maps the whole region at `vaddr` (page aligned, non-zero, below the end of user space;
    /// the end of the range is checked here).
    Map { vaddr: u64 },
    /// Reports size and PCI bdf.
    Info,
}

impl DeviceMemory {
    /// Executes a `DeviceMemory` method.
    pub fn invoke(&self, caller: &Caller, method: Method) -> Result<Reply, Status> {
        match method {
            Method::Map { vaddr } => self.map(caller, vaddr).map(Reply::Now),
            Method::Info => Ok(Reply::Now([self.size, self.bdf as u64])),
        }
    }

    /// Maps the region, rounded up to whole pages, uncached at `vaddr`; refuses
    /// (`BadAddress`) if anything is mapped there already.
    fn map(&self, caller: &Caller, vaddr: u64) -> Result<[u64; 2], Status> {
        let size = self.size.div_ceil(4096) * 4096;
        keel_abi::user_range(vaddr, size)?;
        let result = caller.process().with_space(|space| {
            if space.any_mapped(vaddr, size) {
                return Err(Status::BadAddress);
            }
            let perms = UserPerms { write: true, exec: false, uncached: true };
            for off in (0..size).step_by(4096) {
                space
                    .map_device(vaddr + off, self.phys + off, perms)
                    .map_err(|_| Status::NoMemory)?;
            }
            Ok([vaddr, size])
        });
        result.unwrap_or(Err(Status::Cancelled))
    }
}
