//! The `Console` object: text from a program to the kernel console, line by line.

use keel_abi::{Status, CONSOLE_WRITE_MAX};

use super::{Caller, Reply};
use fw::mm::user::UserSlice;

/// The methods of a `Console` capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Writes `len` (at most [`CONSOLE_WRITE_MAX`]) bytes at user address `ptr`; the ABI
    /// checked the range lies in user space, the copy checks it is mapped.
    Write { ptr: u64, len: u64 },
}

/// Executes a `Console` method.
pub fn invoke(caller: &Caller, method: Method) -> Result<Reply, Status> {
    match method {
        Method::Write { ptr, len } => {
            let mut buf = [0u8; CONSOLE_WRITE_MAX as usize];
            let buf = buf.get_mut(..len as usize).ok_or(Status::BadArgument)?;
            UserSlice::new(ptr, len)?.read(buf)?;
            caller.process().console_write(buf);
            Ok(Reply::Now([len, 0]))
        }
    }
}
