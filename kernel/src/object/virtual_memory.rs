//! The `VirtualMemory` object: the holder's own address space. It maps anonymous zeroed
//! pages, unmaps them and changes their permissions; every change that can leave a stale
//! TLB entry completes only after the shootdown (see [`Invalidation`]).

use core::sync::atomic::{AtomicU64, Ordering};

use keel_abi::Status;

use super::{Caller, Reply};
use crate::task::{sched, Process};
use fw::mm::address_space::{AddressSpace, MapError, UserPerms};
use fw::mm::invalidation::Invalidation;

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

/// Frames `VmMap` mapped (fresh zeroed frames) and `VmUnmap` gave back to the allocator after
/// its shootdown, since boot: the endurance proofs' churn, counted where it happens.
pub static FRAMES_MAPPED: AtomicU64 = AtomicU64::new(0);
pub static FRAMES_UNMAPPED: AtomicU64 = AtomicU64::new(0);

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

/// Pages one step of a `VirtualMemory` method changes under the address-space lock (with
/// interrupts off); a preemption point follows each step, so a 1,024-page call is never one
/// long non-preemptible section.
const PAGES_PER_STEP: u64 = 64;

/// Threads that left their CPU between two steps of a `VirtualMemory` method (the tick had
/// found their slice used up).
pub static STEP_PREEMPTIONS: AtomicU64 = AtomicU64::new(0);

/// Runs `step(space, first, count)` over `pages` pages in steps of [`PAGES_PER_STEP`], each
/// under the address-space lock, with a preemption point between steps. Stops at the first
/// step that returns `Err`; `Cancelled` once the address space is gone.
fn in_steps(
    p: &Process,
    pages: u64,
    mut step: impl FnMut(&mut AddressSpace, u64, u64) -> Result<(), Status>,
) -> Result<(), Status> {
    let mut done = 0;
    while done < pages {
        let count = (pages - done).min(PAGES_PER_STEP);
        p.with_space(|space| step(space, done, count)).unwrap_or(Err(Status::Cancelled))?;
        done += count;
        if done < pages && sched::preempt_point() {
            STEP_PREEMPTIONS.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Maps fresh zeroed pages; refuses (`Denied`) if a kernel page lies in the range, and
/// (`BadAddress`) if anything else is mapped there.
fn map(p: &Process, vaddr: u64, pages: u64, writable: bool) -> Result<[u64; 2], Status> {
    let perms = UserPerms { write: writable, exec: false, uncached: false };
    p.with_space(|space| {
        space.check_not_kernel(vaddr, pages).map_err(status)?;
        if space.any_mapped(vaddr, pages * 4096) {
            return Err(Status::BadAddress);
        }
        Ok(())
    })
    .unwrap_or(Err(Status::Cancelled))?;
    let mut undo = None;
    let result = in_steps(p, pages, |space, first, count| {
        for i in first..first + count {
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
        Ok(())
    });
    if let Some(stale) = undo {
        let _ = stale.complete(&p.resident);
    }
    if result.is_ok() {
        FRAMES_MAPPED.fetch_add(pages, Ordering::Relaxed);
    }
    result.map(|()| [vaddr, pages])
}

/// Pages mapped for a device's DMA are pinned: unmapping or reprotecting them is refused
/// (`Busy`) until `DeviceMemoryDmaUnmap`. Checked under the space lock, which
/// `DeviceMemoryDmaMap` holds while it maps, so neither can slip past the other: once before
/// anything changes, and again for each 64-page step, since another thread may pin pages of
/// the range at a preemption point between steps (then the steps already done stay done and
/// the call answers `Busy`).
fn refuse_pinned(p: &Process, vaddr: u64, pages: u64) -> Result<(), Status> {
    if fw::arch::x86_64::iommu::dma_pinned(p.pid, vaddr, pages) {
        fw::arch::x86_64::iommu::count_pinned_refusal();
        return Err(Status::Busy);
    }
    Ok(())
}

/// Unmaps, shoots down the TLBs of every CPU the space is resident on, then frees frames
/// (the [`Invalidation`] frees them only after the shootdown). A range touching a kernel
/// page is refused (`Denied`) before anything changes.
fn unmap(p: &Process, vaddr: u64, pages: u64) -> Result<[u64; 2], Status> {
    let mut stale = p
        .with_space(|space| -> Result<Invalidation, Status> {
            space.check_not_kernel(vaddr, pages).map_err(status)?;
            refuse_pinned(p, vaddr, pages)?;
            Ok(Invalidation::new(space.pml4()))
        })
        .ok_or(Status::Cancelled)??;
    let stepped = in_steps(p, pages, |space, first, count| {
        // Again for each step, under the same lock: another thread may have pinned part of
        // the range for DMA at a preemption point between steps.
        refuse_pinned(p, vaddr + first * 4096, count)?;
        for i in first..first + count {
            let _ = space.unmap(vaddr + i * 4096, &mut stale); // unmapped pages are skipped
        }
        Ok(())
    });
    // What the steps unmapped is flushed and freed even if a later step found no space.
    let (pages, frames) = match stale.pages() {
        0 => (0, 0),
        _ => stale.complete(&p.resident),
    };
    FRAMES_UNMAPPED.fetch_add(frames as u64, Ordering::Relaxed);
    stepped?;
    if pages == 0 {
        return Err(Status::BadAddress);
    }
    Ok([pages as u64, frames as u64])
}

/// Changes permissions and shoots down stale (more permissive or less) entries. Refused
/// (`Denied`) before anything changes if the range touches a kernel page, or asks for
/// write access to an executable page (W^X).
fn protect(p: &Process, vaddr: u64, pages: u64, writable: bool) -> Result<[u64; 2], Status> {
    let mut stale = p
        .with_space(|space| -> Result<Invalidation, Status> {
            space.check_not_kernel(vaddr, pages).map_err(status)?;
            if writable {
                space.check_not_code(vaddr, pages).map_err(status)?;
            }
            refuse_pinned(p, vaddr, pages)?;
            Ok(Invalidation::new(space.pml4()))
        })
        .ok_or(Status::Cancelled)??;
    let stepped = in_steps(p, pages, |space, first, count| {
        refuse_pinned(p, vaddr + first * 4096, count)?; // pinned between steps (see `unmap`)
        for i in first..first + count {
            // Unmapped pages are skipped.
            let _ = space.protect(vaddr + i * 4096, writable, &mut stale);
        }
        Ok(())
    });
    let changed = match stale.pages() {
        0 => 0,
        _ => stale.complete(&p.resident).0,
    };
    stepped?;
    if changed == 0 {
        return Err(Status::BadAddress);
    }
    Ok([changed as u64, 0])
}
