//! The `VirtualMemory` object: the holder's own address space. It maps anonymous zeroed
//! pages, unmaps them and changes their permissions; every change that can leave a stale
//! TLB entry completes only after the shootdown (see [`Invalidation`]).

use keel_abi::Status;

use super::{Caller, Reply};
use crate::mm::address_space::{MapError, UserPerms};
use crate::mm::invalidation::Invalidation;
use crate::task::Process;

/// The methods of a `VirtualMemory` capability. The ABI checked every range: page aligned,
/// 1..=`MAX_VM_PAGES` pages, inside user space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Maps `pages` zeroed pages at `vaddr`, writable or read-only, never executable.
    Map { vaddr: u64, pages: u64, writable: bool },
    /// Unmaps `pages` pages at `vaddr`.
    Unmap { vaddr: u64, pages: u64 },
    /// Makes `pages` pages at `vaddr` writable or read-only.
    Protect { vaddr: u64, pages: u64, writable: bool },
}

/// Executes a `VirtualMemory` method on the caller's address space.
pub fn invoke(caller: &Caller, method: Method) -> Result<Reply, Status> {
    let p = caller.process();
    match method {
        Method::Map { vaddr, pages, writable } => map(p, vaddr, pages, writable),
        Method::Unmap { vaddr, pages } => unmap(p, vaddr, pages),
        Method::Protect { vaddr, pages, writable } => protect(p, vaddr, pages, writable),
    }
    .map(Reply::Now)
}

/// What a refused change to a program's mappings reports.
fn status(e: MapError) -> Status {
    match e {
        MapError::NoMemory => Status::NoMemory,
        MapError::KernelPage | MapError::WriteExecute => Status::Denied,
        MapError::BadAddress | MapError::AlreadyMapped => Status::BadAddress,
    }
}

/// Maps fresh zeroed pages; refuses (`Denied`) if a kernel page lies in the range, and
/// (`BadAddress`) if anything else is mapped there.
fn map(p: &Process, vaddr: u64, pages: u64, writable: bool) -> Result<[u64; 2], Status> {
    let perms = UserPerms { write: writable, exec: false, uncached: false };
    let mut undo = None;
    let result = p
        .with_space(|space| {
            space.check_not_kernel(vaddr, pages).map_err(status)?;
            if space.any_mapped(vaddr, pages * 4096) {
                return Err(Status::BadAddress);
            }
            for i in 0..pages {
                if let Err(e) = space.map_new(vaddr + i * 4096, perms) {
                    // Undo what this call mapped. Another thread may already have touched
                    // those pages, so their frames go back only after a shootdown.
                    let mut stale = Invalidation::new(space.pml4());
                    for j in 0..i {
                        let _ = space.unmap(vaddr + j * 4096, &mut stale);
                    }
                    undo = Some(stale);
                    return Err(status(e));
                }
            }
            Ok([vaddr, pages])
        })
        .unwrap_or(Err(Status::Cancelled));
    if let Some(stale) = undo {
        let _ = stale.complete(&p.resident);
    }
    result
}

/// Pages mapped for a device's DMA are pinned: unmapping or reprotecting them is refused
/// (`Busy`, nothing changed) until `DeviceMemoryDmaUnmap`. Checked under the space lock,
/// which `DeviceMemoryDmaMap` holds while it maps, so neither can slip past the other.
fn refuse_pinned(p: &Process, vaddr: u64, pages: u64) -> Result<(), Status> {
    if crate::arch::x86_64::iommu::dma_pinned(p.pid, vaddr, pages) {
        crate::arch::x86_64::iommu::count_pinned_refusal();
        return Err(Status::Busy);
    }
    Ok(())
}

/// Unmaps, shoots down the TLBs of every CPU the space is resident on, then frees frames
/// (the [`Invalidation`] frees them only after the shootdown). A range touching a kernel
/// page is refused (`Denied`) before anything changes.
fn unmap(p: &Process, vaddr: u64, pages: u64) -> Result<[u64; 2], Status> {
    let stale = p
        .with_space(|space| -> Result<Invalidation, Status> {
            space.check_not_kernel(vaddr, pages).map_err(status)?;
            refuse_pinned(p, vaddr, pages)?;
            let mut stale = Invalidation::new(space.pml4());
            for i in 0..pages {
                let _ = space.unmap(vaddr + i * 4096, &mut stale); // unmapped pages are skipped
            }
            Ok(stale)
        })
        .ok_or(Status::Cancelled)??;
    if stale.pages() == 0 {
        return Err(Status::BadAddress);
    }
    let (pages, frames) = stale.complete(&p.resident);
    Ok([pages as u64, frames as u64])
}

/// Changes permissions and shoots down stale (more permissive or less) entries. Refused
/// (`Denied`) before anything changes if the range touches a kernel page, or asks for
/// write access to an executable page (W^X).
fn protect(p: &Process, vaddr: u64, pages: u64, writable: bool) -> Result<[u64; 2], Status> {
    let stale = p
        .with_space(|space| -> Result<Invalidation, Status> {
            space.check_not_kernel(vaddr, pages).map_err(status)?;
            if writable {
                space.check_not_code(vaddr, pages).map_err(status)?;
            }
            refuse_pinned(p, vaddr, pages)?;
            let mut stale = Invalidation::new(space.pml4());
            for i in 0..pages {
                let _ = space.protect(vaddr + i * 4096, writable, &mut stale); // unmapped pages are skipped
            }
            Ok(stale)
        })
        .ok_or(Status::Cancelled)??;
    if stale.pages() == 0 {
        return Err(Status::BadAddress);
    }
    let (pages, _) = stale.complete(&p.resident);
    Ok([pages as u64, 0])
}
