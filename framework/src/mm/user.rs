//! The one typed way the kernel touches user memory.
//!
//! A [`UserSlice`] names a byte range of the calling process's address space by the numbers a
//! program passed. Making one checks only arithmetic (no overflow, below the user half's end);
//! whether the pages are mapped is decided by the copy itself, at the moment it runs: the copy
//! is a single faultable instruction covered by the exception table (see
//! `arch/x86_64/usercopy.rs`), so a page that is missing, read-only for a write, or unmapped by
//! another CPU mid-copy ends the copy with [`Status::BadAddress`] instead of a kernel fault.
//! There is no check-then-copy window to race. No other kernel code dereferences a user
//! address: ring and start-info pages are kernel pages reached through the physical map.

use core::sync::atomic::{AtomicU64, Ordering};

use keel_abi::Status;

use super::address_space::USER_END;
use crate::arch::x86_64::{percpu, usercopy};

/// Copies that faulted after some bytes were copied: the page went away mid-copy.
pub static PARTIAL_COPIES: AtomicU64 = AtomicU64::new(0);

/// `len` bytes at user address `addr` in the address space loaded on this CPU.
#[derive(Clone, Copy, Debug)]
pub struct UserSlice {
    addr: u64,
    len: usize,
}

impl UserSlice {
    /// A range a program named; `BadAddress` if it overflows or leaves the user half.
    pub fn new(addr: u64, len: u64) -> Result<UserSlice, Status> {
        let end = addr.checked_add(len).ok_or(Status::BadAddress)?;
        if end > USER_END {
            return Err(Status::BadAddress);
        }
        Ok(UserSlice { addr, len: usize::try_from(len).map_err(|_| Status::BadAddress)? })
    }

    /// Bytes in the range.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The calling thread's process must be the one loaded on this CPU (a system call made
    /// by one of its threads): user addresses mean nothing in another address space.
    fn in_caller_space() -> Result<(), Status> {
        let caller_space = (crate::upcall::get().current_space)().ok_or(Status::BadAddress)?;
        let loaded = percpu::local(&percpu::IrqGuard::new()).loaded_space.get();
        if loaded == caller_space {
            Ok(())
        } else {
            Err(Status::BadAddress)
        }
    }

    /// Copies the range into `buf` (exactly `len` bytes); `BadAddress` if any byte of it is
    /// not readable now.
    pub fn read(&self, buf: &mut [u8]) -> Result<(), Status> {
        if buf.len() != self.len {
            return Err(Status::BadArgument);
        }
        Self::in_caller_space()?;
        // SAFETY: `buf` is valid for `len` bytes; the source lies below USER_END (checked in
        // `new`) and a fault on it resumes at the exception-table fixup.
        let left = unsafe { usercopy::copy(buf.as_mut_ptr(), self.addr as *const u8, self.len) };
        if left != 0 && left < self.len {
            PARTIAL_COPIES.fetch_add(1, Ordering::Relaxed);
        }
        if left == 0 {
            Ok(())
        } else {
            Err(Status::BadAddress)
        }
    }
}
