//! Scenarios build: the frames the IOMMUs map for devices' DMA and, at each domain's
//! revocation, whether the allocator still held them, for the proofs where a driver dies
//! with a transfer in flight (`dma_death_seed=`; the kernel's `scenarios::dma_watch` reads
//! the frames back after the programs ran). Both vendors' domains call in here.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Frames mapped for DMA that are kept (the first ones).
const WATCHED_KEPT: usize = 4;
static MAPPED: [AtomicU64; WATCHED_KEPT] = [const { AtomicU64::new(0) }; WATCHED_KEPT];
static MAPPED_COUNT: AtomicUsize = AtomicUsize::new(0);
/// Frames a domain's revocation unpinned while the allocator still had them allocated.
static REVOKED_BEFORE_FREE: AtomicUsize = AtomicUsize::new(0);

/// Called by the IOMMU for each frame it maps for a device's DMA.
pub fn dma_mapped_frame(frame: u64) {
    let n = MAPPED_COUNT.fetch_add(1, Ordering::Relaxed);
    if let Some(slot) = MAPPED.get(n) {
        slot.store(frame, Ordering::Relaxed);
    }
}

/// Called by a domain's revocation for each frame it unpins, once the device's entry is
/// cleared and the caches are invalidated: the allocator must not have freed it yet.
pub fn revoked_frame(frame: u64) {
    if !crate::mm::frames::is_free(frame) {
        REVOKED_BEFORE_FREE.fetch_add(1, Ordering::Relaxed);
    }
}

/// The frames mapped for DMA so far (at most the first [`WATCHED_KEPT`]).
#[cfg(feature = "scenarios")]
pub fn mapped_frames() -> impl Iterator<Item = u64> {
    let count = MAPPED_COUNT.load(Ordering::Relaxed).min(WATCHED_KEPT);
    MAPPED.iter().take(count).map(|slot| slot.load(Ordering::Relaxed))
}

/// How many unpinned frames revocation found still allocated.
#[cfg(feature = "scenarios")]
pub fn revoked_before_free() -> usize {
    REVOKED_BEFORE_FREE.load(Ordering::Relaxed)
}
