//! The pure pieces of Keel's SMP scheduler, host-tested:
//!
//! * [`ThreadStateCell`]: the thread state machine shared by a thread's CPU and its wakers;
//! * [`RunQueue`]: a bounded FIFO that never allocates after creation, so interrupt paths
//!   (wake-ups) can push without calling the allocator.
//!
//! The CPU sets and flush plan of TLB shootdown are in `keel-shootdown`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::VecDeque;
use core::sync::atomic::{AtomicU8, Ordering};

/// Where a thread is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ThreadState {
    /// Queued, or about to be.
    Runnable = 0,
    /// On its CPU.
    Running = 1,
    /// Waiting for a wake-up.
    Blocked = 2,
    /// Done; never runs again.
    Exited = 3,
}

/// The state word: the thread's CPU moves it Runnable → Running → Blocked/Runnable/Exited;
/// wakers (any CPU, interrupt context) only ever move Blocked → Runnable, with a
/// compare-exchange, so exactly one of several concurrent wakers queues the thread and a
/// wake-up of a thread that is not blocked does nothing.
pub struct ThreadStateCell(AtomicU8);

impl ThreadStateCell {
    /// A new thread starts runnable.
    pub const fn new() -> ThreadStateCell {
        ThreadStateCell(AtomicU8::new(ThreadState::Runnable as u8))
    }

    /// The current state.
    pub fn get(&self) -> ThreadState {
        match self.0.load(Ordering::Acquire) {
            0 => ThreadState::Runnable,
            1 => ThreadState::Running,
            2 => ThreadState::Blocked,
            _ => ThreadState::Exited,
        }
    }

    /// Set by the thread's own CPU (never by a waker). `Exited` is final.
    pub fn set(&self, s: ThreadState) {
        let _ = self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
            (cur != ThreadState::Exited as u8).then_some(s as u8)
        });
    }

    /// Blocked → Runnable; true for the one caller that did it (it must queue the thread).
    pub fn try_wake(&self) -> bool {
        self.0
            .compare_exchange(
                ThreadState::Blocked as u8,
                ThreadState::Runnable as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }
}

impl Default for ThreadStateCell {
    fn default() -> Self {
        Self::new()
    }
}

/// A FIFO of runnable threads with a fixed capacity reserved at creation: `push` never
/// allocates, so it is safe in interrupt context; a full queue is an error the caller reports.
pub struct RunQueue<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T> RunQueue<T> {
    /// An empty queue (no storage until [`RunQueue::reserve`]); `const` for per-CPU statics.
    pub const fn new() -> RunQueue<T> {
        RunQueue { items: VecDeque::new(), capacity: 0 }
    }

    /// Reserves room for `capacity` entries (outside interrupt context).
    pub fn reserve(&mut self, capacity: usize) {
        self.items.reserve_exact(capacity.saturating_sub(self.items.len()));
        self.capacity = self.capacity.max(capacity);
    }

    /// Appends; `Err(item)` when the reserved capacity is used up.
    pub fn push(&mut self, item: T) -> Result<(), T> {
        if self.items.len() >= self.capacity {
            return Err(item);
        }
        self.items.push_back(item);
        Ok(())
    }

    /// The oldest entry.
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    /// Entries queued.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl<T> Default for RunQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn state_machine_transitions() {
        let s = ThreadStateCell::new();
        assert_eq!(s.get(), ThreadState::Runnable);
        assert!(!s.try_wake(), "a runnable thread is not woken twice");
        s.set(ThreadState::Running);
        assert_eq!(s.get(), ThreadState::Running);
        assert!(!s.try_wake());
        s.set(ThreadState::Blocked);
        assert_eq!(s.get(), ThreadState::Blocked);
        assert!(s.try_wake());
        assert_eq!(s.get(), ThreadState::Runnable);
        assert!(!s.try_wake());
        s.set(ThreadState::Exited);
        s.set(ThreadState::Runnable);
        assert_eq!(s.get(), ThreadState::Exited, "exited is final");
        assert!(!s.try_wake());
    }

    #[test]
    fn exactly_one_of_many_wakers_queues_the_thread() {
        for _ in 0..200 {
            let s = Arc::new(ThreadStateCell::new());
            s.set(ThreadState::Blocked);
            let wins: usize = (0..4)
                .map(|_| {
                    let s = s.clone();
                    std::thread::spawn(move || s.try_wake() as usize)
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|h| h.join().unwrap())
                .sum();
            assert_eq!(wins, 1);
        }
    }

    #[test]
    fn run_queue_is_fifo_and_bounded() {
        let mut q = RunQueue::new();
        assert_eq!(q.push(1), Err(1), "no reservation, no room");
        q.reserve(3);
        for i in 0..3 {
            q.push(i).unwrap();
        }
        assert_eq!(q.push(9), Err(9));
        assert_eq!((q.len(), q.is_empty()), (3, false));
        assert_eq!((q.pop(), q.pop(), q.pop(), q.pop()), (Some(0), Some(1), Some(2), None));
        assert!(q.is_empty());
        q.push(7).unwrap();
        assert_eq!(q.pop(), Some(7));
    }
}
