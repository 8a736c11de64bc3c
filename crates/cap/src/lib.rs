//! Per-process capability table for Keel.
//!
//! A [`CapTable`] maps the [`CapId`]s a process holds to kernel objects (`T`, typically an
//! enum of `Arc`-like handles). Properties the kernel relies on:
//!
//! * **Fixed capacity, allocated once.** The slot array is allocated at construction; no
//!   operation allocates afterwards, so a process cannot grow kernel memory by inserting
//!   capabilities: a full table answers [`CapError::Full`] (`Status::NoMemory`).
//! * **Generation-tagged ids.** An id is `(slot index, slot generation)`. Releasing a slot
//!   bumps its generation, so an id kept after release is [`CapError::Stale`] and never
//!   reaches the object that later reuses the slot. Generation 0 is never issued, so
//!   [`CapId::NULL`] is never valid.
//! * **FIFO slot reuse.** Freed slots are reused least-recently-freed first, which spreads
//!   generation bumps over all slots: a stale id can only alias again after its slot went
//!   through all 65535 generations, i.e. after at least `65535 × free slots` releases.
//! * All operations are O(1) except [`CapTable::revoke_where`] and [`CapTable::drain`]
//!   (O(capacity)); none panics on any input.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use keel_abi::{CapId, Status};

/// Why a capability operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CapError {
    /// The id is [`CapId::NULL`].
    Null,
    /// The id's index is beyond the table's capacity.
    NoSuchSlot,
    /// The slot exists but the id's generation is not the live one (released, revoked,
    /// reused, or never issued).
    Stale,
    /// No free slot (or, for [`CapTable::try_new`], the slot array could not be allocated).
    Full,
}

impl CapError {
    /// The status user space sees: everything is `BadCap` except `Full` → `NoMemory`.
    pub const fn status(self) -> Status {
        match self {
            CapError::Null | CapError::NoSuchSlot | CapError::Stale => Status::BadCap,
            CapError::Full => Status::NoMemory,
        }
    }
}

impl From<CapError> for Status {
    fn from(e: CapError) -> Status {
        e.status()
    }
}

/// Free-list terminator.
const NONE: u32 = u32::MAX;

enum Entry<T> {
    Occupied(T),
    Free { next: u32 },
}

struct Slot<T> {
    /// Generation of the live id if occupied, of the next id to issue if free; never 0.
    generation: u16,
    entry: Entry<T>,
}

/// Next generation after `g`, skipping 0 on wrap.
const fn next_generation(g: u16) -> u16 {
    match g.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

/// A fixed-capacity table of capabilities to objects of type `T`.
pub struct CapTable<T> {
    slots: Vec<Slot<T>>,
    free_head: u32,
    free_tail: u32,
    len: usize,
}

impl<T> CapTable<T> {
    /// A table with `capacity` slots (at most 65535, the `u16` index range), allocated now.
    /// Aborts on allocation failure like any `Vec`; the kernel should prefer [`Self::try_new`].
    pub fn new(capacity: u16) -> CapTable<T> {
        Self::build(Vec::with_capacity(capacity as usize), capacity)
    }

    /// Like [`Self::new`] but reports allocation failure as [`CapError::Full`].
    pub fn try_new(capacity: u16) -> Result<CapTable<T>, CapError> {
        let mut v = Vec::new();
        v.try_reserve_exact(capacity as usize).map_err(|_| CapError::Full)?;
        Ok(Self::build(v, capacity))
    }

    fn build(mut slots: Vec<Slot<T>>, capacity: u16) -> CapTable<T> {
        let n = capacity as u32;
        for i in 0..n {
            let next = if i + 1 < n { i + 1 } else { NONE };
            slots.push(Slot { generation: 1, entry: Entry::Free { next } });
        }
        CapTable {
            slots,
            free_head: if n > 0 { 0 } else { NONE },
            free_tail: if n > 0 { n - 1 } else { NONE },
            len: 0,
        }
    }

    /// Number of live capabilities.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no capability is live.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of slots, fixed at construction.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// True if the next insert would fail with `Full`.
    pub fn is_full(&self) -> bool {
        self.free_head == NONE
    }

    /// Stores `object` in a free slot and returns its new id.
    pub fn insert(&mut self, object: T) -> Result<CapId, CapError> {
        let index = self.free_head;
        let slot = self.slots.get_mut(index as usize).ok_or(CapError::Full)?;
        let next = match slot.entry {
            Entry::Free { next } => next,
            // Unreachable by construction; refuse rather than overwrite a live object.
            Entry::Occupied(_) => return Err(CapError::Full),
        };
        slot.entry = Entry::Occupied(object);
        self.free_head = next;
        if next == NONE {
            self.free_tail = NONE;
        }
        self.len += 1;
        Ok(CapId::new(index as u16, slot.generation))
    }

    /// Index of the slot `id` names, if `id` is live.
    fn live_index(&self, id: CapId) -> Result<usize, CapError> {
        if id.is_null() {
            return Err(CapError::Null);
        }
        let index = id.index() as usize;
        let slot = self.slots.get(index).ok_or(CapError::NoSuchSlot)?;
        match slot.entry {
            Entry::Occupied(_) if slot.generation == id.generation() => Ok(index),
            _ => Err(CapError::Stale),
        }
    }

    /// The object `id` names.
    pub fn get(&self, id: CapId) -> Result<&T, CapError> {
        let index = self.live_index(id)?;
        match &self.slots[index].entry {
            Entry::Occupied(t) => Ok(t),
            Entry::Free { .. } => Err(CapError::Stale),
        }
    }

    /// Mutable access to the object `id` names (e.g. per-capability wait state).
    pub fn get_mut(&mut self, id: CapId) -> Result<&mut T, CapError> {
        let index = self.live_index(id)?;
        match &mut self.slots[index].entry {
            Entry::Occupied(t) => Ok(t),
            Entry::Free { .. } => Err(CapError::Stale),
        }
    }

    /// True if `id` is live.
    pub fn contains(&self, id: CapId) -> bool {
        self.live_index(id).is_ok()
    }

    /// Frees slot `index` (which must be occupied) and returns its object.
    fn free_slot(&mut self, index: usize) -> Option<T> {
        let slot = self.slots.get_mut(index)?;
        if let Entry::Free { .. } = slot.entry {
            return None;
        }
        let old = core::mem::replace(&mut slot.entry, Entry::Free { next: NONE });
        slot.generation = next_generation(slot.generation);
        let i = index as u32;
        if self.free_tail == NONE {
            self.free_head = i;
        } else if let Some(Slot { entry: Entry::Free { next }, .. }) =
            self.slots.get_mut(self.free_tail as usize)
        {
            *next = i;
        }
        self.free_tail = i;
        self.len -= 1;
        match old {
            Entry::Occupied(t) => Some(t),
            Entry::Free { .. } => None,
        }
    }

    /// Removes `id` and returns its object; `id` (and every other copy of the same slot id)
    /// is stale from now on. Copies made with [`Self::copy`] live in other slots and stay valid.
    pub fn release(&mut self, id: CapId) -> Result<T, CapError> {
        let index = self.live_index(id)?;
        self.free_slot(index).ok_or(CapError::Stale)
    }

    /// Releases every capability whose object matches `pred` (e.g. all capabilities to a
    /// dying object) and returns how many were released.
    pub fn revoke_where(&mut self, mut pred: impl FnMut(&T) -> bool) -> usize {
        let mut n = 0;
        for index in 0..self.slots.len() {
            let hit = matches!(&self.slots[index].entry, Entry::Occupied(t) if pred(t));
            if hit && self.free_slot(index).is_some() {
                n += 1;
            }
        }
        n
    }

    /// Live capabilities in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (CapId, &T)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| match &s.entry {
            Entry::Occupied(t) => Some((CapId::new(i as u16, s.generation), t)),
            Entry::Free { .. } => None,
        })
    }

    /// Releases every capability (process exit), yielding the objects in slot order. All
    /// capabilities are released even if the iterator is dropped early.
    pub fn drain(&mut self) -> Drain<'_, T> {
        Drain { table: self, next: 0 }
    }
}

impl<T: Clone> CapTable<T> {
    /// Duplicates `id` into a new slot naming a clone of the same object.
    pub fn copy(&mut self, id: CapId) -> Result<CapId, CapError> {
        let object = self.get(id)?.clone();
        self.insert(object)
    }
}

/// Iterator returned by [`CapTable::drain`].
pub struct Drain<'a, T> {
    table: &'a mut CapTable<T>,
    next: usize,
}

impl<T> Iterator for Drain<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        while self.next < self.table.slots.len() {
            let index = self.next;
            self.next += 1;
            if let Some(t) = self.table.free_slot(index) {
                return Some(t);
            }
        }
        None
    }
}

impl<T> Drop for Drain<'_, T> {
    fn drop(&mut self) {
        for _ in self.by_ref() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn insert_get_release() {
        let mut t = CapTable::new(4);
        assert_eq!((t.len(), t.capacity(), t.is_empty()), (0, 4, true));
        let a = t.insert("a").unwrap();
        let b = t.insert("b").unwrap();
        assert_ne!(a, b);
        assert!(a.generation() != 0 && b.generation() != 0);
        assert_eq!(t.get(a), Ok(&"a"));
        assert_eq!(t.get(b), Ok(&"b"));
        *t.get_mut(b).unwrap() = "B";
        assert_eq!(t.get(b), Ok(&"B"));
        assert_eq!(t.len(), 2);
        assert_eq!(t.release(a), Ok("a"));
        assert_eq!(t.get(a), Err(CapError::Stale));
        assert_eq!(t.release(a), Err(CapError::Stale));
        assert!(!t.contains(a) && t.contains(b));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn bad_ids() {
        let mut t = CapTable::new(2);
        let a = t.insert(1u8).unwrap();
        assert_eq!(t.get(CapId::NULL), Err(CapError::Null));
        assert_eq!(t.get(CapId::new(2, 1)), Err(CapError::NoSuchSlot));
        assert_eq!(t.get(CapId::new(u16::MAX, u16::MAX)), Err(CapError::NoSuchSlot));
        // Generation 0 is never issued (and index 0 / generation 0 is NULL itself).
        assert_eq!(t.get(CapId::new(a.index(), 0)), Err(CapError::Null));
        let b = t.insert(2u8).unwrap();
        assert_eq!(t.get(CapId::new(b.index(), 0)), Err(CapError::Stale));
        t.release(b).unwrap();
        // Forged generation on a live slot.
        assert_eq!(t.get(CapId::new(a.index(), a.generation() + 1)), Err(CapError::Stale));
        // A free slot's upcoming generation is not live yet.
        assert_eq!(t.get(CapId::new(1, 1)), Err(CapError::Stale));
        assert_eq!(t.copy(CapId::NULL), Err(CapError::Null));
        assert_eq!(t.release(CapId::new(9, 1)), Err(CapError::NoSuchSlot));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn error_statuses() {
        assert_eq!(CapError::Null.status(), Status::BadCap);
        assert_eq!(CapError::NoSuchSlot.status(), Status::BadCap);
        assert_eq!(CapError::Stale.status(), Status::BadCap);
        assert_eq!(Status::from(CapError::Full), Status::NoMemory);
    }

    #[test]
    fn stale_id_never_reaches_reused_slot() {
        let mut t = CapTable::new(1);
        let old = t.insert("old object").unwrap();
        t.release(old).unwrap();
        let new = t.insert("new object").unwrap();
        assert_eq!(new.index(), old.index(), "the slot is reused");
        assert_ne!(new, old);
        assert_eq!(t.get(old), Err(CapError::Stale));
        assert_eq!(t.copy(old), Err(CapError::Stale));
        assert_eq!(t.release(old), Err(CapError::Stale));
        assert_eq!(t.get(new), Ok(&"new object"));
    }

    #[test]
    fn full_and_zero_capacity() {
        let mut t = CapTable::new(3);
        for i in 0..3 {
            assert!(!t.is_full());
            t.insert(i).unwrap();
            assert!(!t.is_empty());
        }
        assert!(t.is_full());
        assert_eq!(t.insert(9), Err(CapError::Full));
        let first = t.iter().next().unwrap().0;
        assert_eq!(t.copy(first), Err(CapError::Full));
        assert_eq!(t.len(), 3);

        let mut z: CapTable<u8> = CapTable::new(0);
        assert!(z.is_full() && z.is_empty());
        assert_eq!(z.insert(1), Err(CapError::Full));
        assert_eq!(z.get(CapId::new(0, 1)), Err(CapError::NoSuchSlot));
        assert_eq!(z.drain().count(), 0);
        assert!(CapTable::<u8>::try_new(u16::MAX).unwrap().capacity() == u16::MAX as usize);
    }

    #[test]
    fn copy_is_independent() {
        let mut t = CapTable::new(4);
        let a = t.insert(String::from("obj")).unwrap();
        let c = t.copy(a).unwrap();
        assert_ne!(a.index(), c.index());
        assert_eq!(t.get(c).unwrap(), "obj");
        t.release(a).unwrap();
        assert_eq!(t.get(c).unwrap(), "obj");
        assert_eq!(t.get(a), Err(CapError::Stale));
    }

    #[test]
    fn fifo_reuse() {
        let mut t = CapTable::new(4);
        let ids: Vec<_> = (0..4).map(|i| t.insert(i).unwrap()).collect();
        t.release(ids[2]).unwrap();
        t.release(ids[0]).unwrap();
        assert_eq!(t.insert(10).unwrap().index(), 2);
        assert_eq!(t.insert(11).unwrap().index(), 0);
        // With several free slots, the least recently freed is used first.
        let mut t = CapTable::new(3);
        let a = t.insert(0).unwrap();
        assert_eq!(a.index(), 0);
        t.release(a).unwrap();
        assert_eq!(t.insert(1).unwrap().index(), 1);
    }

    #[test]
    fn generation_wrap_skips_zero() {
        let mut t = CapTable::new(1);
        let first = t.insert(0u32).unwrap();
        assert_eq!(first.generation(), 1);
        let mut prev = first;
        t.release(first).unwrap();
        for i in 1..=70_000u32 {
            let id = t.insert(i).unwrap();
            assert_ne!(id.generation(), 0);
            assert_ne!(id, prev);
            assert_eq!(t.get(prev), Err(CapError::Stale));
            if i % 65_535 == 0 {
                // A full cycle of non-zero generations brings the first one back.
                assert_eq!(id.generation(), 1);
            }
            prev = id;
            t.release(id).unwrap();
        }
    }

    #[test]
    fn revoke_and_drain() {
        let mut t = CapTable::new(8);
        let ids: Vec<_> = (0..6u32).map(|i| t.insert(i).unwrap()).collect();
        assert_eq!(t.revoke_where(|v| v % 2 == 0), 3);
        assert_eq!(t.revoke_where(|v| v % 2 == 0), 0);
        assert_eq!(t.len(), 3);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(t.get(*id).is_ok(), i % 2 == 1);
        }
        let seen: Vec<_> = t.iter().map(|(_, v)| *v).collect();
        assert_eq!(seen, [1, 3, 5]);
        let drained: Vec<_> = t.drain().collect();
        assert_eq!(drained, [1, 3, 5]);
        assert!(t.is_empty());
        assert!(ids.iter().all(|id| t.get(*id) == Err(CapError::Stale)));
        // Dropping a drain early still empties the table.
        let ids: Vec<_> = (0..8u32).map(|i| t.insert(i).unwrap()).collect();
        assert!(t.drain().next().is_some());
        assert!(t.is_empty());
        assert!(ids.iter().all(|id| !t.contains(*id)));
        // All slots are free and usable again.
        for i in 0..8 {
            t.insert(i).unwrap();
        }
        assert!(t.is_full());
    }

    use keel_testkit::XorShift;

    /// Random operations against a trivially correct reference (a map from live id to value
    /// plus the set of every id ever issued).
    #[test]
    fn randomized_model() {
        for seed in [1u64, 0xdead_beef, 0x1234_5678_9abc_def0, 42] {
            let cap = 8u16;
            let mut rng = XorShift(seed);
            let mut t: CapTable<u64> = CapTable::new(cap);
            let mut live: HashMap<CapId, u64> = HashMap::new();
            let mut issued: Vec<CapId> = Vec::new();
            let mut issued_set: HashSet<CapId> = HashSet::new();
            let mut counter = 0u64;
            let pick = |rng: &mut XorShift, issued: &Vec<CapId>| -> CapId {
                match rng.below(10) {
                    0 => CapId(rng.next() as u32),
                    1 => CapId::NULL,
                    _ if issued.is_empty() => CapId::new(0, 1),
                    _ => issued[rng.below(issued.len())],
                }
            };
            let mut record = |id: CapId, issued: &mut Vec<CapId>| {
                assert!(issued_set.insert(id), "id {id:?} issued twice");
                issued.push(id);
            };
            for _ in 0..50_000 {
                match rng.below(100) {
                    0..=34 => {
                        counter += 1;
                        match t.insert(counter) {
                            Ok(id) => {
                                assert!(live.len() < cap as usize);
                                assert!(
                                    id.generation() != 0 && (id.index() as usize) < t.capacity()
                                );
                                live.insert(id, counter);
                                record(id, &mut issued);
                            }
                            Err(e) => {
                                assert_eq!(e, CapError::Full);
                                assert_eq!(live.len(), cap as usize);
                            }
                        }
                    }
                    35..=59 => {
                        let id = pick(&mut rng, &issued);
                        assert_eq!(t.get(id).ok(), live.get(&id));
                        if let Err(e) = t.get(id) {
                            let want = if id.is_null() {
                                CapError::Null
                            } else if id.index() >= cap {
                                CapError::NoSuchSlot
                            } else {
                                CapError::Stale
                            };
                            assert_eq!(e, want);
                        }
                    }
                    60..=69 => {
                        let id = pick(&mut rng, &issued);
                        match t.copy(id) {
                            Ok(new) => {
                                let v = live[&id];
                                live.insert(new, v);
                                record(new, &mut issued);
                            }
                            Err(CapError::Full) => {
                                assert!(live.contains_key(&id) && live.len() == cap as usize)
                            }
                            Err(_) => assert!(!live.contains_key(&id)),
                        }
                    }
                    70..=96 => {
                        let id = pick(&mut rng, &issued);
                        assert_eq!(t.release(id).ok(), live.remove(&id));
                    }
                    97..=98 => {
                        let m = rng.below(5) as u64 + 2;
                        let want = live.values().filter(|v| **v % m == 0).count();
                        assert_eq!(t.revoke_where(|v| v % m == 0), want);
                        live.retain(|_, v| *v % m != 0);
                    }
                    _ => {
                        let mut got: Vec<u64> = t.drain().collect();
                        let mut want: Vec<u64> = live.drain().map(|(_, v)| v).collect();
                        got.sort_unstable();
                        want.sort_unstable();
                        assert_eq!(got, want);
                    }
                }
                assert_eq!(t.len(), live.len());
                assert_eq!(t.is_full(), live.len() == cap as usize);
                let mut it: Vec<(CapId, u64)> = t.iter().map(|(id, v)| (id, *v)).collect();
                let mut want: Vec<(CapId, u64)> = live.iter().map(|(id, v)| (*id, *v)).collect();
                it.sort_unstable();
                want.sort_unstable();
                assert_eq!(it, want);
            }
        }
    }
}
