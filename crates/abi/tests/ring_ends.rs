//! The ring's free-running `u32` indices driven across their wrap by a model producer and
//! consumer: slots stay consecutive, pending/space counts stay exact, and a hostile index at
//! any distance is refused.

use keel_abi::Status;
use keel_abi::{cq_budget, cq_slot, cq_space, sq_pending, sq_slot, CQ_ENTRIES, SQ_ENTRIES};

#[test]
fn producer_and_consumer_cross_the_u32_wrap() {
    for start in [u32::MAX - 3 * CQ_ENTRIES, u32::MAX - 1, u32::MAX, 0] {
        let (mut sq_head, mut sq_tail) = (start, start);
        let (mut cq_head, mut cq_tail) = (start.wrapping_sub(7), start.wrapping_sub(7));
        let mut in_flight = 0u32;
        let mut wrapped = false;
        for step in 0..20 * CQ_ENTRIES {
            // Submit as much as the SQ holds, then the kernel consumes up to its CQ budget.
            let pending = sq_pending(sq_head, sq_tail).unwrap();
            let room = SQ_ENTRIES - pending;
            for _ in 0..room.min(1 + step % 5) {
                let next = sq_tail.wrapping_add(1);
                assert_eq!(sq_slot(next), (sq_slot(sq_tail) + 1) % SQ_ENTRIES as usize);
                sq_tail = next;
            }
            let budget = cq_budget(cq_head, cq_tail, in_flight).unwrap();
            let pending = sq_pending(sq_head, sq_tail).unwrap();
            for _ in 0..pending.min(budget) {
                sq_head = sq_head.wrapping_add(1);
                let next = cq_tail.wrapping_add(1);
                assert_eq!(cq_slot(next), (cq_slot(cq_tail) + 1) % CQ_ENTRIES as usize);
                cq_tail = next;
                wrapped |= cq_tail == 0 || sq_tail == 0;
            }
            in_flight = step % 3;
            // The program drains some completions.
            let used = CQ_ENTRIES - cq_space(cq_head, cq_tail).unwrap();
            cq_head = cq_head.wrapping_add(used.min(step % 7));
            // Exact counts: the model's u64 differences agree.
            assert!(sq_pending(sq_head, sq_tail).unwrap() <= SQ_ENTRIES);
            assert!(cq_space(cq_head, cq_tail).unwrap() <= CQ_ENTRIES);
            // A hostile index one past either bound is refused, at every point of the run.
            let over = sq_head.wrapping_add(SQ_ENTRIES + 1);
            assert_eq!(sq_pending(sq_head, over), Err(Status::BadRing));
            assert_eq!(sq_pending(sq_head, sq_head.wrapping_sub(1)), Err(Status::BadRing));
            assert_eq!(cq_space(cq_tail.wrapping_add(1), cq_tail), Err(Status::BadRing));
            assert_eq!(
                cq_space(cq_tail.wrapping_sub(CQ_ENTRIES + 1), cq_tail),
                Err(Status::BadRing)
            );
        }
        assert!(start == 0 || wrapped, "start {start:#x}: the run crossed the wrap");
    }
}
