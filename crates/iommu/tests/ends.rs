//! The interrupt-remapping table's index plan and the invalidation queue at their ends: the
//! largest table the IRTA can describe, handed out to its last index, and the largest queue
//! driven around its ring.

use keel_iommu::irte::MAX_ENTRIES;
use keel_iommu::queue::{Ring, DESCRIPTOR_BYTES};
use keel_iommu::IndexPlan;

/// Every GSI and MSI index of a plan, GSIs first.
fn all_indices(p: &IndexPlan) -> Vec<u32> {
    let gsis = (0..p.gsis).map(|g| p.gsi_index(g).unwrap() as u32);
    let msis = (0..p.msi_handles).map(|n| p.msi_index(n).unwrap() as u32);
    gsis.chain(msis).collect()
}

#[test]
fn the_largest_plan_hands_out_every_index_once() {
    for (gsis, msis) in [(65_000, 536), (0, MAX_ENTRIES), (MAX_ENTRIES, 0), (24, MAX_ENTRIES - 24)]
    {
        let p = IndexPlan::new(gsis, msis).unwrap();
        assert_eq!((p.entries, p.size_field(), p.bytes()), (MAX_ENTRIES, 15, 1 << 20));
        // Distinct, in order, the last one at 65,535: nothing wrapped into a u16.
        assert_eq!(all_indices(&p), (0..MAX_ENTRIES).collect::<Vec<_>>(), "{gsis} + {msis}");
        assert_eq!((p.gsi_index(gsis), p.msi_index(msis)), (None, None));
        assert_eq!((p.gsi_index(u32::MAX), p.msi_index(u32::MAX)), (None, None));
        // One more source than the table holds is refused.
        assert_eq!(IndexPlan::new(gsis + 1, msis), None);
        assert_eq!(IndexPlan::new(gsis, msis + 1), None);
    }
    assert_eq!(IndexPlan::new(u32::MAX, u32::MAX), None);
}

#[test]
fn every_plan_size_ends_inside_its_table() {
    for shift in 8..=16u32 {
        let entries = 1u32 << shift;
        for needed in [entries / 2 + 1, entries - 1, entries] {
            let p = IndexPlan::new(needed / 3, needed - needed / 3).unwrap();
            assert_eq!(p.entries, entries, "{needed}");
            assert_eq!(1u32 << (p.size_field() + 1), p.entries);
            let indices = all_indices(&p);
            assert_eq!(indices, (0..needed).collect::<Vec<_>>(), "{needed}");
        }
    }
}

#[test]
fn the_largest_queue_wraps_and_round_trips_every_slot() {
    // IQA's queue size field allows up to 2^(7 + 8) descriptors of 16 bytes.
    for entries in [256u32, 1 << 15] {
        let ring = Ring { entries };
        let mut slot = 0;
        for _ in 0..3 * entries {
            let register = ring.register(slot);
            assert!(register < entries as u64 * DESCRIPTOR_BYTES);
            assert_eq!(ring.slot(register), slot);
            slot = ring.next(slot);
        }
        assert_eq!((slot, ring.next(entries - 1)), (0, 0), "three times round");
        // A hostile register value (bits above the offset field) still names a slot.
        assert!(ring.slot(u64::MAX) < entries);
        // Free slots against a model: one is always kept empty.
        let last = entries - 1;
        for (head, tail) in [(0, 0), (0, last), (last, 0), (last, last), (5, 4), (4, 5)] {
            let used = (tail + entries - head) % entries;
            assert_eq!(ring.free(head, tail), entries - 1 - used, "{head} {tail}");
        }
    }
}
