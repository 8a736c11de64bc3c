//! The `DeviceMemory` object: a PCI BAR granted to a driver, mapped uncached into its space.

use keel_abi::{DmaFaultReport, Status};

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::{Caller, Reply};
use fw::arch::x86_64::iommu;
use fw::mm::address_space::UserPerms;

/// A PCI BAR granted to a driver.
#[derive(Debug)]
pub struct DeviceMemory {
    pub phys: u64,
    pub size: u64,
    pub bdf: u16,
    /// The function's DMA faults are kept for its holders while this object lives.
    reports_faults: bool,
    /// Byte ranges of the BAR (page-aligned) never mapped into the holder: the function's
    /// MSI-X table and PBA pages, which only the kernel writes.
    withheld: Vec<(u64, u64)>,
}

/// Pages a `Map` left out (MSI-X table / PBA) and found unmapped when read back from the
/// holder's page tables afterwards.
pub static WITHHELD_PAGES: AtomicU64 = AtomicU64::new(0);

/// The methods of a `DeviceMemory` capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Maps the whole region at `vaddr` (page aligned, non-zero, below the end of user space;
    /// the end of the range is checked here).
    Map { vaddr: u64 },
    /// Reports size and PCI bdf.
    Info,
    /// Maps `pages` of the caller's own pages at `vaddr` for the device's DMA.
    DmaMap { vaddr: u64, pages: u64, device_writes: bool },
    /// Removes a DMA mapping (after the IOTLB invalidation completed).
    DmaUnmap { iova: u64, pages: u64 },
    /// Reports the function's DMA faults while it is held: count and the last one.
    DmaFaults,
}

impl DeviceMemory {
    /// A BAR of function `bdf` granted to a driver: from now until the object is dropped,
    /// the IOMMU keeps the function's DMA faults for its holders.
    pub fn new(phys: u64, size: u64, bdf: u16) -> DeviceMemory {
        DeviceMemory {
            phys,
            size,
            bdf,
            reports_faults: iommu::hold_dma_faults(bdf),
            withheld: Vec::new(),
        }
    }

    /// The same, with the byte ranges `withheld` of the BAR never mapped into the holder.
    pub fn withholding(mut self, withheld: Vec<(u64, u64)>) -> DeviceMemory {
        self.withheld = withheld;
        self
    }

    fn is_withheld(&self, offset: u64) -> bool {
        self.withheld.iter().any(|&(start, end)| (start..end).contains(&offset))
    }

    /// Executes a `DeviceMemory` method.
    pub fn invoke(&self, caller: &Caller, method: Method) -> Result<Reply, Status> {
        match method {
            Method::Map { vaddr } => self.map(caller, vaddr).map(Reply::Now),
            Method::Info => Ok(Reply::Now([self.size, self.bdf as u64])),
            Method::DmaMap { vaddr, pages, device_writes } => {
                self.dma_map(caller, vaddr, pages, device_writes).map(Reply::Now)
            }
            Method::DmaUnmap { iova, pages } => {
                let p = caller.process();
                match iommu::dma_unmap(self.bdf, p.pid, iova, pages) {
                    None => Err(Status::Denied),
                    Some(Ok(())) => Ok(Reply::Now([iova, pages])),
                    Some(Err(e)) => Err(dma_status(e)),
                }
            }
            Method::DmaFaults => self.dma_faults().map(Reply::Now),
        }
    }

    /// `results` = (faults, last fault encoded by [`DmaFaultReport`], 0 when none);
    /// `Denied` without DMA translation.
    fn dma_faults(&self) -> Result<[u64; 2], Status> {
        let held = self.reports_faults.then(|| iommu::dma_faults_of(self.bdf)).flatten();
        let (count, last) = held.ok_or(Status::Denied)?;
        let report = last.map_or(0, |f| {
            DmaFaultReport { page: f.address & !0xFFF, reason: f.reason, write: f.write }.encode()
        });
        Ok([count, report])
    }

    /// Finds the frames of the caller's pages (each must be its own memory, and writable
    /// when the device may write) and maps them, all under the address-space lock so no
    /// page can be unmapped half-way; `Denied` without DMA translation (no IOMMU: the
    /// device cannot be contained, so it is given no address at all).
    fn dma_map(
        &self,
        caller: &Caller,
        vaddr: u64,
        pages: u64,
        device_writes: bool,
    ) -> Result<[u64; 2], Status> {
        let p = caller.process();
        let result = p.with_space(|space| {
            let mut frames = Vec::with_capacity(pages as usize);
            for n in 0..pages {
                match space.owned_page(vaddr + n * 4096) {
                    Some((frame, writable)) if writable || !device_writes => frames.push(frame),
                    Some(_) => return Err(Status::Denied),
                    None => return Err(Status::BadAddress),
                }
            }
            match iommu::dma_map(self.bdf, p.pid, vaddr, &frames, device_writes) {
                None => Err(Status::Denied),
                Some(Ok(iova)) => Ok([iova, pages]),
                Some(Err(e)) => Err(dma_status(e)),
            }
        });
        result.unwrap_or(Err(Status::Cancelled))
    }

    /// The holder is gone (its last capability released, or the process ended): revoke
    /// the function's DMA domain before the process's frames can be freed.
    pub fn release(&self, holder_pid: u64) {
        iommu::dma_detach(self.bdf, holder_pid);
    }
}

fn dma_status(e: iommu::DmaError) -> Status {
    match e {
        iommu::DmaError::Busy => Status::Busy,
        iommu::DmaError::NoMemory | iommu::DmaError::NoIova => Status::NoMemory,
        iommu::DmaError::NotMapped => Status::BadAddress,
        iommu::DmaError::Unit(_) | iommu::DmaError::AmdVi(_) => Status::Cancelled,
    }
}

impl DeviceMemory {
    /// Maps the region, rounded up to whole pages, uncached at `vaddr`, except the withheld
    /// pages (left unmapped: an access there faults); refuses (`BadAddress`) if anything is
    /// mapped there already.
    fn map(&self, caller: &Caller, vaddr: u64) -> Result<[u64; 2], Status> {
        let size = self.size.div_ceil(4096) * 4096;
        keel_abi::user_range(vaddr, size)?;
        let result = caller.process().with_space(|space| {
            if space.any_mapped(vaddr, size) {
                return Err(Status::BadAddress);
            }
            let perms = UserPerms { write: true, exec: false, uncached: true };
            for off in (0..size).step_by(4096) {
                if self.is_withheld(off) {
                    continue;
                }
                space
                    .map_device(vaddr + off, self.phys + off, perms)
                    .map_err(|_| Status::NoMemory)?;
            }
            let unmapped = (0..size)
                .step_by(4096)
                .filter(|&off| self.is_withheld(off) && space.translate(vaddr + off).is_none())
                .count();
            WITHHELD_PAGES.fetch_add(unmapped as u64, Ordering::Relaxed);
            Ok([vaddr, size])
        });
        result.unwrap_or(Err(Status::Cancelled))
    }
}

impl Drop for DeviceMemory {
    /// The last capability to this grant is gone: its holder no longer gets the faults.
    fn drop(&mut self) {
        if self.reports_faults {
            iommu::let_go_dma_faults(self.bdf);
        }
    }
}
