//! The kernel heap: a `linked_list_allocator` over one physically contiguous block reached
//! through the physical map.

use linked_list_allocator::LockedHeap;

use super::{frames, phys_to_virt};

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Heap size: enough for per-CPU tables of a few hundred CPUs plus kernel objects.
pub const HEAP_BYTES: u64 = 16 * 1024 * 1024;

/// Carves the heap from the frame allocator.
pub fn init() {
    let (phys, bytes) = [HEAP_BYTES, HEAP_BYTES / 4]
        .into_iter()
        .find_map(|bytes| frames::allocate_contiguous(bytes / keel_mm::FRAME_SIZE, 0x20_0000).map(|p| (p, bytes)))
        .expect("no contiguous memory for the kernel heap");
    // SAFETY: the block was just allocated for the heap alone and is mapped writable in the
    // physical map; `init` runs once, before any allocation.
    unsafe { HEAP.lock().init(phys_to_virt(phys).as_mut_ptr::<u8>(), bytes as usize) };
    log::info!("heap: {} KiB at {:#x}", bytes / 1024, phys);
}

/// Bytes currently allocated (for leak reports).
pub fn used_bytes() -> usize {
    HEAP.lock().used()
}
