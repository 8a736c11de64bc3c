use std::collections::BTreeMap;

use super::*;
use crate::queue::{TYPE_IEC, TYPE_WAIT};

const OLD: [u64; 2] = [0x0000_0001_0030_0001, 0x0004_0008];
const NEW: [u64; 2] = [0x0000_0002_0041_0001, 0x0004_0010];
const INDEX: u16 = 24;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Store(u16),
    Flush(u16),
    Iec(usize, u16),
    Wait(usize),
    Complete(usize),
}

#[derive(Default)]
struct FakeQueue {
    pending: Vec<[u64; 2]>,
    /// The unit's interrupt entry cache.
    cached: BTreeMap<u16, [u64; 2]>,
}

/// Table memory as the CPU and the units see it, and units with an interrupt entry cache.
/// A non-coherent unit reads memory, not the CPU's cache: a store reaches it only through
/// `flush`. After an invalidation a unit refetches the entry at once (an interrupt arriving
/// right then), so what it caches is what memory held when the descriptor was processed.
struct FakeTable {
    coherent: bool,
    cpu: BTreeMap<u16, [u64; 2]>,
    memory: BTreeMap<u16, [u64; 2]>,
    queues: Vec<FakeQueue>,
    log: Vec<Step>,
}

#[derive(Debug, PartialEq, Eq)]
struct NoStatusWrite(usize);

impl FakeTable {
    fn new(coherent: bool, units: usize) -> Self {
        let old = BTreeMap::from([(INDEX, OLD)]);
        FakeTable {
            coherent,
            cpu: old.clone(),
            memory: old.clone(),
            queues: (0..units)
                .map(|_| FakeQueue { pending: vec![], cached: old.clone() })
                .collect(),
            log: vec![],
        }
    }

    fn cached(&self, unit: usize) -> Option<[u64; 2]> {
        self.queues[unit].cached.get(&INDEX).copied()
    }
}

impl EntryUpdate for FakeTable {
    type Error = NoStatusWrite;

    fn store(&mut self, index: u16, raw: [u64; 2]) {
        self.log.push(Step::Store(index));
        self.cpu.insert(index, raw);
        if self.coherent {
            self.memory.insert(index, raw);
        }
    }

    fn flush(&mut self, index: u16) {
        self.log.push(Step::Flush(index));
        if let Some(raw) = self.cpu.get(&index) {
            self.memory.insert(index, *raw);
        }
    }

    fn units(&self) -> usize {
        self.queues.len()
    }

    fn enqueue(&mut self, unit: usize, descriptor: [u64; 2]) {
        if descriptor[0] & 0xF == TYPE_IEC {
            self.log.push(Step::Iec(unit, (descriptor[0] >> 32) as u16));
        }
        self.queues[unit].pending.push(descriptor);
    }

    fn enqueue_wait(&mut self, unit: usize) {
        self.log.push(Step::Wait(unit));
        self.queues[unit].pending.push([TYPE_WAIT | 1 << 5, 0x1000]);
    }

    fn complete(&mut self, unit: usize) -> Result<(), NoStatusWrite> {
        self.log.push(Step::Complete(unit));
        let FakeTable { memory, queues, .. } = self;
        let queue = &mut queues[unit];
        let mut status_written = false;
        for descriptor in queue.pending.drain(..) {
            status_written = false;
            match descriptor[0] & 0xF {
                TYPE_IEC => {
                    let index = (descriptor[0] >> 32) as u16;
                    queue.cached.remove(&index);
                    if let Some(raw) = memory.get(&index) {
                        queue.cached.insert(index, *raw);
                    }
                }
                TYPE_WAIT => status_written = true,
                _ => {}
            }
        }
        if status_written {
            Ok(())
        } else {
            Err(NoStatusWrite(unit))
        }
    }
}

#[test]
fn coherent_units_cache_the_new_entry_after_invalidation_and_wait() {
    let mut table = FakeTable::new(true, 2);
    write_entry(&mut table, INDEX, NEW, true).unwrap();
    assert_eq!(table.cached(0), Some(NEW));
    assert_eq!(table.cached(1), Some(NEW));
    assert_eq!(
        table.log,
        [
            Step::Store(INDEX),
            Step::Iec(0, INDEX),
            Step::Wait(0),
            Step::Complete(0),
            Step::Iec(1, INDEX),
            Step::Wait(1),
            Step::Complete(1),
        ],
        "store, then per unit the entry's invalidation, a wait behind it, then completion"
    );
}

#[test]
fn non_coherent_units_see_the_entry_only_through_the_flush_before_invalidation() {
    let mut table = FakeTable::new(false, 2);
    write_entry(&mut table, INDEX, NEW, false).unwrap();
    assert_eq!(table.cached(0), Some(NEW), "unit 0 cached a stale entry");
    assert_eq!(table.cached(1), Some(NEW), "unit 1 cached a stale entry");
    assert_eq!(table.log[..3], [Step::Store(INDEX), Step::Flush(INDEX), Step::Iec(0, INDEX)]);
    let flushes = table.log.iter().filter(|s| matches!(s, Step::Flush(_))).count();
    assert_eq!(flushes, 1, "one flush of the entry's line serves every unit");
}

#[test]
fn a_coherent_unit_is_not_flushed() {
    let mut table = FakeTable::new(true, 1);
    write_entry(&mut table, INDEX, NEW, true).unwrap();
    assert!(!table.log.iter().any(|s| matches!(s, Step::Flush(_))));
}

#[test]
fn a_failing_unit_stops_the_sequence() {
    struct Stuck(FakeTable);
    impl EntryUpdate for Stuck {
        type Error = NoStatusWrite;
        fn store(&mut self, i: u16, raw: [u64; 2]) {
            self.0.store(i, raw)
        }
        fn flush(&mut self, i: u16) {
            self.0.flush(i)
        }
        fn units(&self) -> usize {
            self.0.units()
        }
        fn enqueue(&mut self, u: usize, d: [u64; 2]) {
            self.0.enqueue(u, d)
        }
        fn enqueue_wait(&mut self, u: usize) {
            self.0.enqueue_wait(u)
        }
        fn complete(&mut self, u: usize) -> Result<(), NoStatusWrite> {
            self.0.complete(u)?;
            Err(NoStatusWrite(u))
        }
    }
    let mut stuck = Stuck(FakeTable::new(true, 2));
    assert_eq!(write_entry(&mut stuck, INDEX, NEW, true), Err(NoStatusWrite(0)));
    assert!(!stuck.0.log.contains(&Step::Iec(1, INDEX)), "unit 1 was still invalidated");
}

/// The fake itself tells the wrong orders apart, so the tests above can fail.
#[test]
fn the_fake_catches_wrong_orders() {
    // Invalidate before the store: the unit refetches the old entry.
    let mut table = FakeTable::new(true, 1);
    table.enqueue(0, queue::iec(Some((INDEX, 0))));
    table.enqueue_wait(0);
    table.complete(0).unwrap();
    table.store(INDEX, NEW);
    assert_eq!(table.cached(0), Some(OLD));

    // Non-coherent, flush after the invalidation: the unit refetched stale memory.
    let mut table = FakeTable::new(false, 1);
    table.store(INDEX, NEW);
    table.enqueue(0, queue::iec(Some((INDEX, 0))));
    table.enqueue_wait(0);
    table.complete(0).unwrap();
    table.flush(INDEX);
    assert_eq!(table.cached(0), Some(OLD));

    // Non-coherent, no flush at all.
    let mut table = FakeTable::new(false, 1);
    table.store(INDEX, NEW);
    table.enqueue(0, queue::iec(Some((INDEX, 0))));
    table.enqueue_wait(0);
    table.complete(0).unwrap();
    assert_eq!(table.cached(0), Some(OLD));

    // No wait behind the invalidation: completion has no status write to see.
    let mut table = FakeTable::new(true, 1);
    table.store(INDEX, NEW);
    table.enqueue(0, queue::iec(Some((INDEX, 0))));
    assert_eq!(table.complete(0), Err(NoStatusWrite(0)));
}
