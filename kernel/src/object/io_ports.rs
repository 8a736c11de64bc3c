//! The `IoPorts` object: an inclusive range of x86 I/O ports a driver may use directly.

use keel_abi::Status;

use super::{Caller, Reply};

/// The methods of an `IoPorts` capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Opens the range in the TSS I/O bitmap for every thread of the caller's process
    /// (`BadCap` once the capability was released: the range is closed again everywhere).
    Enable,
}

/// Executes an `IoPorts` method on the range `first..=last`.
pub fn invoke(caller: &Caller, first: u16, last: u16, method: Method) -> Result<Reply, Status> {
    match method {
        Method::Enable => {
            caller.process().enable_io_ports(first, last)?;
            Ok(Reply::Now([first as u64, (last - first) as u64 + 1]))
        }
    }
}
