//! The pure pieces of Keel's TLB shootdown, host-tested:
//!
//! * [`CpuMask`]: an atomic set of CPU indices (an address space's resident set: the CPUs
//!   whose TLBs may hold its entries), and [`CpuSet`], a plain copy of one taken at one
//!   moment, and [`CpuWord`], one word of a mask read once (what a shootdown streams its
//!   targets from, so it never copies a whole set);
//! * [`IpiGrouper`]: consecutive targets in one x2APIC cluster gathered into one IPI;
//! * [`SlotInbox`]: the slots of one CPU's queue of shootdown requests (publish, take,
//!   withdraw a request whose IPI could not be sent, never another's);
//! * [`flush_plan`]: page-by-page invalidation or a full flush, by the batch size.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

mod groups;
mod inbox;
pub use groups::{IpiGroup, IpiGrouper, GROUP_CAPACITY};
pub use inbox::{SlotInbox, INBOX_SLOTS};

/// Highest number of CPUs a [`CpuMask`] can hold (the kernel asserts its CPU limit fits).
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

    /// The words that may hold members, in order, each read once when the iteration reaches
    /// it (how many are left is known before reading them). A shootdown counts and interrupts the members of each word from that one value,
    /// without copying the whole set (a set is 512 bytes; a one-target shootdown reads one
    /// word).
    #[inline]
    pub fn words(&self) -> impl ExactSizeIterator<Item = CpuWord> + '_ {
        let word = |(i, w): (usize, &AtomicU64)| CpuWord {
            first: i as u32 * 64,
            bits: w.load(Ordering::SeqCst),
        };
        self.used_words().iter().enumerate().map(word)
    }

    /// The words that ever held a member (the count read first, then the words).
    #[inline]
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
}

/// 64 consecutive CPU indices of a set, as one value: CPU `first() + i` is a member when bit
/// `i` is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuWord {
    first: u32,
    bits: u64,
}

impl CpuWord {
    /// The CPU index of bit 0.
    #[inline]
    pub fn first(&self) -> u32 {
        self.first
    }

    /// The members as a bit mask relative to [`CpuWord::first`].
    #[inline]
    pub fn bits(&self) -> u64 {
        self.bits
    }

    /// Removes `cpu`; returns whether it was a member (false for CPUs outside this word).
    #[inline]
    pub fn remove(&mut self, cpu: u32) -> bool {
        let Some(offset) = cpu.checked_sub(self.first).filter(|&o| o < 64) else { return false };
        let was = self.bits & 1 << offset != 0;
        self.bits &= !(1 << offset);
        was
    }

    /// Number of members.
    #[inline]
    pub fn len(&self) -> u32 {
        self.bits.count_ones()
    }

    /// Whether the word has no member.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.bits == 0
    }
}

impl IntoIterator for CpuWord {
    type Item = u32;
    type IntoIter = CpuWordIter;
    #[inline]
    fn into_iter(self) -> CpuWordIter {
        CpuWordIter(self)
    }
}

/// Members of a [`CpuWord`] in increasing order.
pub struct CpuWordIter(CpuWord);

impl Iterator for CpuWordIter {
    type Item = u32;
    #[inline]
    fn next(&mut self) -> Option<u32> {
        let word = &mut self.0;
        if word.bits == 0 {
            return None;
        }
        let bit = word.bits.trailing_zeros();
        word.bits &= word.bits - 1;
        Some(word.first + bit)
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
    use super::*;
    use std::sync::Arc;

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
        assert_eq!(s.into_iter().take_while(|&c| c < 64).collect::<Vec<_>>(), [0, 3, 63]);
        assert_eq!(m.iter().collect::<Vec<_>>(), [0, 63, 64, 200, 511]);
        assert!(
            super::CpuSet::default().is_empty()
                && super::CpuSet::default().into_iter().next().is_none()
        );
        s.insert(64);
        s.insert(9999);
        assert!(s.contains(64) && s.len() == 6);
    }

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
        assert_eq!(m.words().next().map(|w| w.bits()), Some((1 << 0) | (1 << 1) | (1 << 63)));
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
    fn words_are_the_used_words_read_once_each() {
        let m = CpuMask::new();
        assert_eq!(m.words().count(), 0);
        for cpu in [1, 3, 64, 130] {
            m.insert(cpu);
        }
        assert_eq!(m.words().len(), 3, "words 0..=2 were ever used");
        let words: Vec<CpuWord> = m.words().collect();
        assert_eq!(words.iter().map(|w| w.first()).collect::<Vec<_>>(), [0, 64, 128]);
        assert_eq!(words[0].bits(), 1 << 1 | 1 << 3);
        let members: Vec<u32> = words.iter().flat_map(|w| *w).collect();
        assert_eq!(members, [1, 3, 64, 130]);
        assert_eq!(members, m.iter().collect::<Vec<_>>(), "same members as a snapshot");
        // Iterating reads each word when it gets there: a word changed before the iteration
        // reaches it is seen as changed, one already read is not.
        let mut it = m.words();
        let w0 = it.next().unwrap();
        m.remove(1);
        m.insert(65);
        assert_eq!(w0.bits(), 1 << 1 | 1 << 3);
        assert_eq!(it.next().unwrap().into_iter().collect::<Vec<_>>(), [64, 65]);
    }

    #[test]
    fn word_remove_len_and_bounds() {
        let m = CpuMask::new();
        for cpu in [64, 70, 127] {
            m.insert(cpu);
        }
        let mut w = m.words().nth(1).unwrap();
        assert_eq!((w.first(), w.len()), (64, 3));
        assert!(!w.remove(63) && !w.remove(128) && !w.remove(69), "not members of this word");
        assert!(w.remove(70) && !w.remove(70));
        assert_eq!((w.len(), w.is_empty()), (2, false));
        assert!(w.remove(64) && w.remove(127) && w.is_empty());
        assert_eq!(w.into_iter().next(), None);
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
    fn flush_plans() {
        assert_eq!(flush_plan(0), FlushPlan::Nothing);
        assert_eq!(flush_plan(1), FlushPlan::Pages(1));
        assert_eq!(flush_plan(FLUSH_CEILING_PAGES), FlushPlan::Pages(FLUSH_CEILING_PAGES));
        assert_eq!(flush_plan(FLUSH_CEILING_PAGES + 1), FlushPlan::Full);
        assert_eq!(flush_plan(usize::MAX), FlushPlan::Full);
    }
}
