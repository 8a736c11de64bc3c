//! The pure pieces of Keel's SMP scheduler and TLB shootdown, host-tested:
//!
//! * [`CpuMask`]: an atomic set of CPU indices (the address-space resident set), and
//!   [`CpuSet`], a plain copy of one taken at one moment;
//! * [`ThreadStateCell`]: the thread state machine shared by a thread's CPU and its wakers;
//! * [`RunQueue`]: a bounded FIFO that never allocates after creation, so interrupt paths
//!   (wake-ups) can push without calling the allocator;
//! * [`flush_plan`]: page-by-page invalidation or a full flush, by the batch size.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::VecDeque;
use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

/// Highest number of CPUs a [`CpuMask`] can hold.
pub const MAX_CPUS: usize = 4096;
const WORDS: usize = MAX_CPUS / 64;

/// Where `cpu` lives in a set's words: (word index, bit), `None` at or above [`MAX_CPUS`].
fn slot(cpu: u32) -> Option<(usize, u64)> {
    ((cpu as usize) < MAX_CPUS).then(|| (cpu as usize / 64, 1 << (cpu % 64)))
}

/// A set of CPU indices with sequentially consistent updates: the shootdown's ordering
/// argument needs "set my bit, then load CR3" and "write PTEs, then read the set" to be
/// totally ordered.
///
/// The set also remembers how many of its words ever held a member, so reading it costs one
/// word on a machine with up to 64 CPUs, not all [`MAX_CPUS`] / 64: the shooter reads the
/// count and then that many words, and an inserter raises the count before it sets its bit,
/// so a bit the shooter's word reads could see is never beyond the count it read.
pub struct CpuMask {
    words: [AtomicU64; WORDS],
    /// 1 + the highest word index ever inserted into (never decreases).
    used: AtomicUsize,
}

impl CpuMask {
    /// The empty set.
    pub const fn new() -> CpuMask {
        CpuMask { words: [const { AtomicU64::new(0) }; WORDS], used: AtomicUsize::new(0) }
    }

    /// Adds `cpu` (indices ≥ [`MAX_CPUS`] are ignored).
    pub fn insert(&self, cpu: u32) {
        if let Some((word, bit)) = slot(cpu) {
            // A plain load first: the count rises at most WORDS times in the set's life,
            // and inserts happen on every switch into an address space.
            if self.used.load(Ordering::SeqCst) <= word {
                self.used.fetch_max(word + 1, Ordering::SeqCst);
            }
            self.words[word].fetch_or(bit, Ordering::SeqCst);
        }
    }

    /// Removes `cpu`.
    pub fn remove(&self, cpu: u32) {
        if let Some((word, bit)) = slot(cpu) {
            self.words[word].fetch_and(!bit, Ordering::SeqCst);
        }
    }

    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: u32) -> bool {
        slot(cpu).is_some_and(|(word, bit)| self.words[word].load(Ordering::SeqCst) & bit != 0)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.used_words().iter().all(|w| w.load(Ordering::SeqCst) == 0)
    }

    /// Members in increasing order (each word read once: a snapshot per word).
    pub fn iter(&self) -> impl Iterator<Item = u32> {
        self.snapshot().into_iter()
    }

    /// The members now, as a plain value (each word read once): what a shootdown counts
    /// acknowledgements from and sends IPIs to, so both agree.
    pub fn snapshot(&self) -> CpuSet {
        let mut set = CpuSet::default();
        let used = self.used_words();
        for (copy, word) in set.words.iter_mut().zip(used) {
            *copy = word.load(Ordering::SeqCst);
        }
        set.used = used.len();
        set
    }

    /// The words that ever held a member (the count read first, then the words).
    fn used_words(&self) -> &[AtomicU64] {
        &self.words[..self.used.load(Ordering::SeqCst).min(WORDS)]
    }
}

/// A set of CPU indices as a plain value (a [`CpuMask::snapshot`]), cheap to keep on a stack
/// and iterated by scanning set bits. Scans stop at the highest word that may hold a member.
#[derive(Clone, Copy, Debug)]
pub struct CpuSet {
    words: [u64; WORDS],
    /// Words from this index on are zero.
    used: usize,
}

impl Default for CpuSet {
    fn default() -> Self {
        CpuSet { words: [0; WORDS], used: 0 }
    }
}

impl PartialEq for CpuSet {
    fn eq(&self, other: &CpuSet) -> bool {
        self.words == other.words
    }
}

impl Eq for CpuSet {}

impl CpuSet {
    /// Adds `cpu` (indices ≥ [`MAX_CPUS`] are ignored).
    pub fn insert(&mut self, cpu: u32) {
        if let Some((word, bit)) = slot(cpu) {
            self.words[word] |= bit;
            self.used = self.used.max(word + 1);
        }
    }

    /// Whether `cpu` is a member.
    pub fn contains(&self, cpu: u32) -> bool {
        slot(cpu).is_some_and(|(word, bit)| self.words[word] & bit != 0)
    }

    /// Removes `cpu`; returns whether it was a member.
    pub fn remove(&mut self, cpu: u32) -> bool {
        let was = self.contains(cpu);
        if let Some((word, bit)) = slot(cpu) {
            self.words[word] &= !bit;
        }
        was
    }

    /// The words that may hold members.
    fn used_words(&self) -> &[u64] {
        &self.words[..self.used]
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        // One step per member, none per empty word: baseline x86-64 has no POPCNT, and a
        // software popcount of every word was the bulk of a one-target shootdown's
        // bookkeeping.
        let mut n = 0;
        for &word in self.used_words() {
            let mut w = word;
            while w != 0 {
                w &= w - 1;
                n += 1;
            }
        }
        n
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.used_words().iter().all(|&w| w == 0)
    }

    /// The first 64 CPUs as a bit mask (for evidence lines).
    pub fn low_bits(&self) -> u64 {
        self.words[0]
    }
}

impl IntoIterator for CpuSet {
    type Item = u32;
    type IntoIter = CpuSetIter;
    fn into_iter(self) -> CpuSetIter {
        CpuSetIter { set: self, word: 0 }
    }
}

/// Members of a [`CpuSet`] in increasing order.
pub struct CpuSetIter {
    set: CpuSet,
    word: usize,
}

impl Iterator for CpuSetIter {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        while self.word < self.set.used {
            let w = &mut self.set.words[self.word];
            if *w != 0 {
                let bit = w.trailing_zeros();
                *w &= *w - 1;
                return Some(self.word as u32 * 64 + bit);
            }
            self.word += 1;
        }
        None
    }
}

impl Default for CpuMask {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for CpuMask {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

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
            .compare_exchange(ThreadState::Blocked as u8, ThreadState::Runnable as u8, Ordering::AcqRel, Ordering::Acquire)
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

/// Above this many pages one shootdown flushes the whole (non-global) TLB instead of one
/// `invlpg` per page: each `invlpg` costs about a TLB refill, so past a few dozen pages a CR3
/// reload is cheaper (Linux draws the line at 33).
pub const FLUSH_CEILING_PAGES: usize = 32;

/// How one shootdown invalidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushPlan {
    /// Nothing to do.
    Nothing,
    /// `invlpg` each of this many pages.
    Pages(usize),
    /// Reload CR3.
    Full,
}

/// The plan for a batch of `pages` pages.
pub const fn flush_plan(pages: usize) -> FlushPlan {
    match pages {
        0 => FlushPlan::Nothing,
        n if n <= FLUSH_CEILING_PAGES => FlushPlan::Pages(n),
        _ => FlushPlan::Full,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn snapshot_is_a_copy_with_the_same_members() {
        let m = super::CpuMask::new();
        for cpu in [0, 3, 63, 64, 200, 511] {
            m.insert(cpu);
        }
        let mut s = m.snapshot();
        m.remove(3);
        assert_eq!(s.into_iter().collect::<Vec<_>>(), [0, 3, 63, 64, 200, 511]);
        assert_eq!(s.len(), 6);
        assert!(!s.is_empty());
        assert!(s.remove(64) && !s.remove(64) && !s.remove(9999));
        assert!(!s.contains(64) && s.contains(511) && !s.contains(512));
        assert_eq!(s.low_bits(), 1 | 1 << 3 | 1 << 63);
        assert_eq!(m.iter().collect::<Vec<_>>(), [0, 63, 64, 200, 511]);
        assert!(super::CpuSet::default().is_empty() && super::CpuSet::default().into_iter().next().is_none());
        s.insert(64);
        s.insert(9999);
        assert!(s.contains(64) && s.len() == 6);
    }

    use super::*;
    use std::sync::Arc;

    #[test]
    fn mask_insert_remove_iter() {
        let m = CpuMask::new();
        assert!(m.is_empty());
        for c in [0, 1, 63, 64, 257, 511] {
            m.insert(c);
        }
        m.insert(9999); // out of range: ignored
        assert!(!m.is_empty());
        assert_eq!(format!("{m:?}"), "[0, 1, 63, 64, 257, 511]");
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![0, 1, 63, 64, 257, 511]);
        assert!(m.contains(257) && !m.contains(256));
        assert_eq!(m.snapshot().low_bits(), (1 << 0) | (1 << 1) | (1 << 63));
        for c in [0, 1, 63, 64, 257, 511] {
            m.remove(c);
        }
        assert!(m.is_empty());
    }

    #[test]
    fn reads_stop_at_the_highest_word_ever_used() {
        let m = CpuMask::new();
        assert_eq!(m.snapshot().used, 0);
        m.insert(5);
        assert_eq!(m.snapshot().used, 1, "CPUs 0..63 live in one word");
        m.insert(4095);
        m.remove(4095);
        // The count never falls, so a snapshot still reads every word a member could be in.
        assert_eq!(m.snapshot().used, WORDS);
        assert_eq!(m.iter().collect::<Vec<_>>(), [5]);
        let mut s = CpuSet::default();
        s.insert(130);
        assert_eq!(s.used, 3);
        assert_eq!(s.into_iter().collect::<Vec<_>>(), [130]);
        // Equal members, different scan bounds: equal sets.
        let mut t = m.snapshot();
        t.remove(5);
        t.insert(130);
        assert_eq!(s, t);
    }

    #[test]
    fn mask_concurrent_updates_lose_nothing() {
        let m = Arc::new(CpuMask::new());
        let handles: Vec<_> = (0..8u32)
            .map(|t| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for round in 0..1000u32 {
                        let cpu = t * 64 + round % 64;
                        m.insert(cpu);
                        if round % 2 == 1 {
                            m.remove(cpu);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        // Every even slot of each thread's word stays set, every odd one ends cleared.
        for t in 0..8u32 {
            for b in 0..64u32 {
                assert_eq!(m.contains(t * 64 + b), b % 2 == 0, "cpu {}", t * 64 + b);
            }
        }
    }

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

    #[test]
    fn flush_plans() {
        assert_eq!(flush_plan(0), FlushPlan::Nothing);
        assert_eq!(flush_plan(1), FlushPlan::Pages(1));
        assert_eq!(flush_plan(FLUSH_CEILING_PAGES), FlushPlan::Pages(FLUSH_CEILING_PAGES));
        assert_eq!(flush_plan(FLUSH_CEILING_PAGES + 1), FlushPlan::Full);
        assert_eq!(flush_plan(usize::MAX), FlushPlan::Full);
    }
}
