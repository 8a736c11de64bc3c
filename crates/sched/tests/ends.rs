//! The run queue at the end of its reservation: full, then driven around its ring storage
//! many times, with no allocation after `reserve` (interrupt paths push into it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use keel_sched::RunQueue;

/// Counts this thread's allocations (tests run on several threads at once).
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; the thread-local counter is a const
// `Cell` without a destructor, so touching it never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn a_full_queue_wraps_its_storage_without_allocating() {
    for capacity in [1usize, 2, 3, 7, 8, 64, 1000] {
        let mut q = RunQueue::new();
        q.reserve(capacity);
        let before = allocations();
        let (mut pushed, mut popped) = (0u64, 0u64);
        for _ in 0..capacity {
            q.push(pushed).unwrap();
            pushed += 1;
        }
        assert_eq!(q.push(u64::MAX), Err(u64::MAX), "capacity {capacity}: full");
        // Ten times around the storage, in strides that do and do not divide the capacity.
        for round in 0..10 * capacity {
            let stride = 1 + round % capacity;
            for _ in 0..stride {
                assert_eq!(q.pop(), Some(popped), "FIFO across the wrap");
                popped += 1;
            }
            for _ in 0..stride {
                q.push(pushed).unwrap();
                pushed += 1;
            }
            assert_eq!(q.len(), capacity);
            assert_eq!(q.push(u64::MAX), Err(u64::MAX));
        }
        assert_eq!(allocations(), before, "capacity {capacity}: push allocated");
        while q.pop().is_some() {}
        assert!(q.is_empty());
    }
}

#[test]
fn a_reservation_grows_but_never_shrinks() {
    let mut q = RunQueue::new();
    q.reserve(3);
    q.push(0).unwrap();
    q.push(1).unwrap();
    q.reserve(5); // while not empty
    q.reserve(1); // smaller: keeps 5
    let before = allocations();
    for i in 2..5 {
        q.push(i).unwrap();
    }
    assert_eq!(q.push(9), Err(9));
    assert_eq!(allocations(), before);
    assert_eq!((0..5).map(|_| q.pop().unwrap()).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
}
