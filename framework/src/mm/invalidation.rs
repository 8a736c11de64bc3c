//! Free-after-flush by construction. Changing or removing a user mapping yields an
//! [`Invalidation`]: the pages whose translations other CPUs may still cache, and the frames
//! that were behind removed mappings. Its fields are private to this module and the only way
//! to free those frames is [`Invalidation::complete`], which first runs the TLB shootdown that
//! covers the pages and returns only after every resident CPU acknowledged it. Dropping an
//! uncompleted invalidation leaks its frames (counted, logged): a leak is harmless, a frame
//! reused while a stale TLB entry still reaches it is not.

use core::sync::atomic::{AtomicU64, Ordering};

use smallvec::SmallVec;

use crate::arch::x86_64::tlb::{self, CpuMask};

/// Frames kept out of the allocator because their shootdown did not complete (an
/// invalidation dropped unflushed, or a CPU that could not be interrupted).
pub static LEAKED_UNFLUSHED: AtomicU64 = AtomicU64::new(0);

/// Pages of one address space whose TLB entries are stale, and the frames freed once they
/// are flushed everywhere.
#[must_use = "frames behind stale TLB entries are freed only by `complete`"]
pub struct Invalidation {
    pml4: u64,
    pages: Addresses,
    frames: Addresses,
}

/// Page or frame addresses, held inline up to a few: the usual unmap or protect touches one
/// page, and its shootdown path then never enters the heap (a heap free costs more than the
/// TLB flush it follows).
type Addresses = SmallVec<[u64; INLINE_ADDRESSES]>;
const INLINE_ADDRESSES: usize = 4;

impl Invalidation {
    /// Nothing stale yet in the address space whose PML4 is `pml4`.
    pub fn new(pml4: u64) -> Invalidation {
        Invalidation { pml4, pages: Addresses::new_const(), frames: Addresses::new_const() }
    }

    /// The PML4 these pages belong to.
    pub fn pml4(&self) -> u64 {
        self.pml4
    }

    /// A page whose permissions changed (its frame stays mapped).
    pub(super) fn page_changed(&mut self, va: u64) {
        self.pages.push(va);
    }

    /// A page that was unmapped; `frame` when the address space owned it (device memory and
    /// kernel pages are not freed here).
    pub(super) fn page_unmapped(&mut self, va: u64, frame: Option<u64>) {
        self.pages.push(va);
        if let Some(f) = frame {
            self.frames.push(f);
        }
    }

    /// Pages to flush.
    pub fn pages(&self) -> usize {
        self.pages.len()
    }

    /// Frames waiting for the flush.
    pub fn frames(&self) -> usize {
        self.frames.len()
    }

    /// Shoots the pages down on every CPU in `resident` (the address space's resident set),
    /// waits for every acknowledgement, and only then frees the frames. Returns
    /// `(pages, frames freed)`. If some CPU could not be interrupted, its TLB may still reach
    /// the frames: they are kept out of the allocator for good (counted, logged). Callable
    /// with interrupts on or off, as `tlb::shootdown` is (its wait serves requests aimed at
    /// this CPU either way).
    pub fn complete(mut self, resident: &CpuMask) -> (usize, usize) {
        #[cfg(feature = "scenarios")]
        widen_stale_window(&self.pages);
        if let Err(unreached) = tlb::shootdown(self.pml4, resident, &self.pages) {
            log::error!(
                "mm: {} frames withheld, CPUs {:?} not flushed",
                self.frames.len(),
                unreached.0
            );
            return (self.pages.len(), 0); // `drop` counts the withheld frames
        }
        let frames = core::mem::take(&mut self.frames);
        for &f in &frames {
            release(f);
        }
        (self.pages.len(), frames.len())
    }
}

impl Drop for Invalidation {
    fn drop(&mut self) {
        if !self.frames.is_empty() {
            LEAKED_UNFLUSHED.fetch_add(self.frames.len() as u64, Ordering::Relaxed);
            log::error!(
                "mm: {} frames without a completed TLB shootdown; kept out of the allocator",
                self.frames.len()
            );
        }
    }
}

/// Returns a frame to the allocator; in the scenarios build it is filled with
/// [`FREED_POISON`] first, so a reader that still reaches it through a stale TLB entry sees
/// that it was freed.
fn release(frame: u64) {
    #[cfg(feature = "scenarios")]
    {
        let words = super::phys_to_virt(frame).as_mut_ptr::<u64>();
        for i in 0..512 {
            // SAFETY: the frame is ours until `free` below, and lies in the physical map.
            unsafe { words.add(i).write_volatile(FREED_POISON) };
        }
    }
    super::frames::free(frame);
}

/// What freed frames hold in the scenarios build (no user program writes it).
#[cfg(feature = "scenarios")]
pub const FREED_POISON: u64 = 0xF4EE_D0D0_F4EE_D0D0;

/// The poison proof's pages (`user/vmhostile`, phase 5): their unmaps wait this long between
/// the page-table change and the shootdown, so readers on other CPUs keep reading through
/// their stale entries while the unmap is in flight.
#[cfg(feature = "scenarios")]
pub const POISON_PROBE_VADDR: u64 = 0x0000_4a00_0000;
#[cfg(feature = "scenarios")]
const POISON_PROBE_DELAY_US: u64 = 2_000;

#[cfg(feature = "scenarios")]
fn widen_stale_window(pages: &[u64]) {
    if pages.iter().any(|&va| va & !0xfff == POISON_PROBE_VADDR) {
        crate::time::delay_us(POISON_PROBE_DELAY_US);
    }
}
