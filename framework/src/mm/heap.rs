//! The kernel heap: a `linked_list_allocator` over one physically contiguous block reached
//! through the physical map.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{null_mut, NonNull};

use linked_list_allocator::Heap;

use super::{frames, phys_to_virt};
use crate::sync::IrqSafeMutex;

/// The heap behind the one IRQ-safe lock: an interrupt handler on the same CPU can never spin
/// on the heap lock its own CPU holds. (Interrupt paths do not allocate by design; this
/// makes a slip a slowdown instead of a deadlock.)
struct KernelHeap(IrqSafeMutex<Heap>);

// SAFETY: `Heap` is a correct first-fit allocator over the block `init` gives it; the lock
// serialises every use of it.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0.lock().allocate_first_fit(layout).map_or(null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `GlobalAlloc`'s contract: `ptr` came from `alloc` on this heap with `layout`
        // (so it is not null).
        unsafe { self.0.lock().deallocate(NonNull::new_unchecked(ptr), layout) }
    }
}

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(IrqSafeMutex::new(Heap::empty()));

/// Smallest heap Keel asks for (kernel objects of a small machine).
pub const MIN_HEAP_BYTES: u64 = 16 * 1024 * 1024;
/// Largest heap: per-CPU stacks and tables come from frames, not from here.
pub const MAX_HEAP_BYTES: u64 = 256 * 1024 * 1024;

/// The heap grows with the machine: a sixteenth of usable RAM (per-CPU run queues and
/// kernel objects scale with RAM and CPUs), between the two bounds, in 2 MiB units.
pub fn size_for(usable_bytes: u64) -> u64 {
    (usable_bytes / 16).clamp(MIN_HEAP_BYTES, MAX_HEAP_BYTES) & !0x1F_FFFF
}

/// Carves the heap from the frame allocator (halving the request while RAM is short).
pub fn init(usable_bytes: u64) {
    let wanted = size_for(usable_bytes);
    let (phys, bytes) = (0..4)
        .map(|halvings| wanted >> halvings)
        .find_map(|bytes| {
            frames::allocate_contiguous(bytes / keel_mm::FRAME_SIZE, 0x20_0000).map(|p| (p, bytes))
        })
        .expect("no contiguous memory for the kernel heap");
    // SAFETY: the block was just allocated for the heap alone and is mapped writable in the
    // physical map; `init` runs once, before any allocation.
    unsafe { HEAP.0.lock().init(phys_to_virt(phys).as_mut_ptr::<u8>(), bytes as usize) };
    log::info!("heap: {} KiB at {:#x}", bytes / 1024, phys);
}

/// Bytes still free in the heap (boot checks it before reserving per-CPU queues).
pub fn free_bytes() -> usize {
    HEAP.0.lock().free()
}

/// Bytes currently allocated (for leak reports).
pub fn used_bytes() -> usize {
    HEAP.0.lock().used()
}
