//! The kernel's physical frame allocator: one [`FrameBitmap`] over all usable RAM, behind a
//! [`IrqSafeMutex`] (frames are allocated from interrupt-free paths only; the lock makes a
//! slip a slowdown instead of a deadlock).

use core::sync::atomic::{AtomicU64, Ordering};
use keel_boot::memory::MemoryMap;
use keel_mm::{FrameBitmap, FRAME_SIZE};
use x86_64::structures::paging::{FrameAllocator, PhysFrame, Size4KiB};
use x86_64::PhysAddr;

use super::phys_to_virt;
use crate::sync::IrqSafeMutex;

static FRAMES: IrqSafeMutex<Option<FrameBitmap<'static>>> = IrqSafeMutex::new(None);

/// Builds the bitmap over `[0, highest usable address)`, storing it in the first usable range
/// large enough, which it then reserves.
pub fn init(map: &MemoryMap) {
    let top = map.usable().map(|r| r.end).max().unwrap_or(0);
    let frames = top / FRAME_SIZE;
    let words = FrameBitmap::words_for(frames);
    let bytes = (words * 8) as u64;
    let home = map
        .usable()
        .find(|r| r.end - r.start >= bytes && r.end <= super::paging::BOOT_MAPPED_LIMIT)
        .expect("no usable range can hold the frame bitmap");
    // SAFETY: `home` is usable RAM (not the kernel, modules or boot data, all reserved), in the
    // boot physical map, and from here on owned by the bitmap alone (reserved below).
    let storage: &'static mut [u64] = unsafe {
        core::slice::from_raw_parts_mut(phys_to_virt(home.start).as_mut_ptr::<u64>(), words)
    };
    let mut bitmap = FrameBitmap::new(0, frames, storage).expect("bitmap storage sized above");
    for r in map.usable() {
        bitmap.add_free_range(r.start, r.end);
    }
    bitmap.reserve_range(home.start, home.start + bytes);
    log::info!(
        "frames: {} free of {} ({} KiB bitmap at {:#x})",
        bitmap.free_frames(),
        frames,
        bytes / 1024,
        home.start
    );
    *FRAMES.lock() = Some(bitmap);
}

fn with<R>(f: impl FnOnce(&mut FrameBitmap<'static>) -> R) -> R {
    f(FRAMES.lock().as_mut().expect("frame allocator not initialised"))
}

/// One zeroed frame, or `None` when memory is exhausted.
pub fn allocate_zeroed() -> Option<u64> {
    let frame = with(|b| b.allocate())?;
    // SAFETY: the frame was free, so nothing references it; it is RAM inside the physical map.
    unsafe {
        core::ptr::write_bytes(phys_to_virt(frame).as_mut_ptr::<u8>(), 0, FRAME_SIZE as usize)
    };
    Some(frame)
}

/// `count` contiguous frames aligned to `align` bytes (not zeroed).
pub fn allocate_contiguous(count: u64, align: u64) -> Option<u64> {
    with(|b| b.allocate_contiguous(count, align))
}

/// Frees refused: double frees, and frames the allocator never managed (frame 0, the kernel
/// image, firmware and boot data), whatever a page table claimed.
pub static REFUSED_FREES: AtomicU64 = AtomicU64::new(0);

/// Returns a frame; misuse is reported and counted, never silently corrupts the bitmap.
pub fn free(frame: u64) {
    if let Err(e) = with(|b| b.free(frame)) {
        REFUSED_FREES.fetch_add(1, Ordering::Relaxed);
        log::error!("frames: refused free of {frame:#x}: {e:?}");
    }
}

/// Whether `frame` is free now (false for a frame the allocator does not manage).
pub fn is_free(frame: u64) -> bool {
    with(|b| b.is_free(frame).unwrap_or(false))
}

/// Free frames now (leak checks compare this before and after a workload).
pub fn free_count() -> u64 {
    with(|b| b.free_frames())
}

/// Checks the real bitmap's invariants (free counter equals the set free bits, every free
/// frame managed, nothing past the window) under the allocator lock: a full walk of both
/// bitmaps, for the end of a workload, not for a hot path.
pub fn check_invariants() -> Result<(), keel_mm::InvariantError> {
    with(|b| b.check_invariants())
}

/// Adapter for the `x86_64` crate's page-table code.
pub struct KernelFrames;

// SAFETY: every frame returned is unused, zeroed RAM owned by the caller from now on.
unsafe impl FrameAllocator<Size4KiB> for KernelFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        allocate_zeroed().map(|f| PhysFrame::containing_address(PhysAddr::new(f)))
    }
}
