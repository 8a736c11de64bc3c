//! The capability table at the ends of its spaces: a table of the largest capacity filled to
//! its last slot and refilled, the free list's ends, whole-table walks, and a slot's
//! generation counter taken through its maximum while other slots stay live.

use keel_abi::CapId;
use keel_cap::{CapError, CapTable};

const MAX: u16 = u16::MAX;

/// Fills every free slot in free-list order; checks the table is then full.
fn fill(t: &mut CapTable<u32>) -> Vec<CapId> {
    let ids: Vec<CapId> = (0..MAX as u32).map(|v| t.insert(v).unwrap()).collect();
    assert!(t.is_full() && t.len() == MAX as usize);
    assert_eq!(t.insert(0), Err(CapError::Full));
    assert_eq!(t.copy(ids[0]), Err(CapError::Full));
    ids
}

#[test]
fn the_largest_table_exhausts_and_refills() {
    let mut t = CapTable::<u32>::try_new(MAX).unwrap();
    let mut stale: Vec<CapId> = Vec::new();
    for round in 0..4u16 {
        let ids = fill(&mut t);
        for (i, id) in ids.iter().enumerate() {
            // Released in index order last round, so refilled in index order, one generation on.
            assert_eq!((id.index() as usize, id.generation()), (i, round + 1));
        }
        assert!(stale.iter().all(|&old| t.get(old) == Err(CapError::Stale)), "{round}");
        assert_eq!(t.get(ids[MAX as usize - 1]), Ok(&(MAX as u32 - 1)), "the last slot");
        assert_eq!(t.get(CapId::new(MAX, round + 1)), Err(CapError::NoSuchSlot));
        for id in &ids {
            t.release(*id).unwrap();
        }
        assert!(t.is_empty() && !t.is_full());
        stale = ids;
    }
}

#[test]
fn the_free_list_ends_are_reused_in_release_order() {
    let mut t = CapTable::<u32>::new(MAX);
    let ids = fill(&mut t);
    // The last slot, the first, one in the middle: released into an empty free list.
    let order = [MAX as usize - 1, 0, 40_000];
    for &i in &order {
        assert_eq!(t.release(ids[i]), Ok(i as u32));
    }
    assert_eq!(t.len(), MAX as usize - 3);
    for &i in &order {
        let id = t.insert(1).unwrap();
        assert_eq!((id.index() as usize, id.generation()), (i, 2));
    }
    assert_eq!(t.insert(0), Err(CapError::Full), "full again after the ends were reused");
}

#[test]
fn whole_table_walks_on_a_full_table() {
    let mut t = CapTable::<u32>::new(MAX);
    let ids = fill(&mut t);
    assert_eq!(t.iter().count(), MAX as usize);
    assert_eq!(t.iter().last().map(|(id, _)| id), Some(ids[MAX as usize - 1]));
    assert_eq!(t.revoke_where(|v| v % 2 == 1), MAX as usize / 2);
    assert_eq!(t.len(), MAX as usize / 2 + 1);
    let drained: Vec<u32> = t.drain().collect();
    assert_eq!(drained.len(), MAX as usize / 2 + 1);
    assert_eq!(drained.last(), Some(&(MAX as u32 - 1)));
    assert!(t.is_empty());
    // Every slot is reusable after the walks, and no counter wrapped.
    fill(&mut t);
}

/// One slot cycles through every generation while its neighbours stay live: generation 0 is
/// skipped, and an old id aliases again only after all 65,535 generations, as documented.
#[test]
fn a_generation_through_its_maximum_with_neighbours_live() {
    let mut t = CapTable::<u32>::new(3);
    let left = t.insert(1).unwrap();
    let first = t.insert(2).unwrap();
    let right = t.insert(3).unwrap();
    assert_eq!((first.index(), first.generation()), (1, 1));
    t.release(first).unwrap();
    let mut seen = vec![false; MAX as usize + 1];
    seen[1] = true;
    for n in 2..=(2 * MAX as u32 + 2) {
        let id = t.insert(n).unwrap();
        assert_eq!(id.index(), 1, "the only free slot");
        let g = id.generation();
        assert_ne!(g, 0);
        assert_eq!(g as u32, (n - 1) % MAX as u32 + 1, "generations 1..=65535 in turn");
        seen[g as usize] = true;
        // `first` (generation 1) is stale until the slot comes round to generation 1 again.
        assert_eq!(t.get(first).is_ok(), g == 1, "n = {n}");
        assert_eq!((t.get(left), t.get(right)), (Ok(&1), Ok(&3)));
        t.release(id).unwrap();
    }
    assert!(seen[1..].iter().all(|&s| s), "every generation issued");
    assert_eq!(t.len(), 2);
}
