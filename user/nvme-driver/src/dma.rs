//! The driver's DMA pages, one `DeviceMemoryDmaMap` per piece so no call passes
//! `MAX_DMA_PAGES`: the base run (admin rings, identify page, queue 1's rings and buffers,
//! the write buffer) and then each further I/O queue's own run (its two ring pages and
//! `THREAD_BATCH` read buffers). The pages lie back to back at `DMA_VA`; each run has the
//! IOVA its map returned, so a page's device address is its run's IOVA plus its offset.

use core::sync::atomic::{AtomicU64, Ordering};

use keel_rt::abi::{Method, Status};
use keel_rt::{ring, CapId};

use crate::workers::MAX_QUEUES;
use crate::{DMA_PAGES, DMA_VA, PAGE, THREAD_BATCH};

/// Pages of each further queue's run.
pub const QUEUE_RUN_PAGES: u64 = 2 + THREAD_BATCH;

/// The IOVA of run `r` (0: the base run, q: queue q+1's run); 0 until mapped.
static RUN_IOVAS: [AtomicU64; MAX_QUEUES] = [const { AtomicU64::new(0) }; MAX_QUEUES];
/// `DeviceMemoryDmaMap` calls that succeeded.
static MAPS: AtomicU64 = AtomicU64::new(0);

/// The run holding page `page` and the page's offset in it.
fn run_of(page: u64) -> (usize, u64) {
    if page < DMA_PAGES {
        return (0, page);
    }
    let past = page - DMA_PAGES;
    (1 + (past / QUEUE_RUN_PAGES) as usize, past % QUEUE_RUN_PAGES)
}

/// First page and length of run `r`.
fn run_pages(r: usize) -> (u64, u64) {
    match r {
        0 => (0, DMA_PAGES),
        _ => (DMA_PAGES + (r as u64 - 1) * QUEUE_RUN_PAGES, QUEUE_RUN_PAGES),
    }
}

/// The device address of DMA page `page` (its run must be mapped).
pub fn iova(page: u64) -> u64 {
    let (r, offset) = run_of(page);
    RUN_IOVAS[r].load(Ordering::Relaxed) + offset * PAGE
}

/// Maps run `r` (0: the base run, else queue index `r`'s run) into this process (`VmMap`,
/// zeroed) and for the device; its IOVA.
pub fn map_run(dm: CapId, vm: CapId, r: usize) -> Result<u64, Status> {
    let (first, pages) = run_pages(r);
    let va = DMA_VA + first * PAGE;
    // Each result is checked once the ring is free again, so a failure can be printed.
    let mapped = ring().expect("ring").call(vm, Method::VmMap, [va, pages, 1, 0]);
    mapped?;
    let iova = ring().expect("ring").dma_map(dm, va, pages, true)?;
    RUN_IOVAS[r].store(iova, Ordering::Relaxed);
    MAPS.fetch_add(1, Ordering::Relaxed);
    Ok(iova)
}

/// Successful `DeviceMemoryDmaMap` calls so far.
pub fn maps() -> u64 {
    MAPS.load(Ordering::Relaxed)
}
