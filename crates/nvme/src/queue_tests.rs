use super::*;
use crate::completion::{Completion, ENTRY_SIZE};
use keel_testkit::XorShift;

#[test]
fn submission_ring_fills_to_one_short() {
    let mut sq = SubmissionRing::new(4).unwrap();
    assert_eq!(sq.push(), Some((0, 1)));
    assert_eq!(sq.push(), Some((1, 2)));
    assert_eq!(sq.push(), Some((2, 3)));
    assert_eq!(sq.push(), None);
    assert_eq!(sq.in_flight(), 3);
    sq.consumed_up_to(2);
    assert_eq!(sq.in_flight(), 1);
    assert_eq!(sq.push(), Some((3, 0)));
    assert_eq!(sq.push(), Some((0, 1)));
    assert_eq!(sq.push(), None);
    sq.consumed_up_to(9); // out of the ring: ignored
    assert_eq!(sq.in_flight(), 3);
    assert!(SubmissionRing::new(1).is_none());
}

#[test]
fn zeroed_memory_is_not_a_completion() {
    let mut cq = CompletionRing::new(8).unwrap();
    assert_eq!(cq.take(&[0; ENTRY_SIZE]), None);
    assert_eq!(cq.head(), 0);
}

/// A controller that completes commands in its own time, writing entries with the phase
/// of its pass, never into a slot the driver has not released through the head doorbell.
struct Controller {
    cq: Vec<[u8; ENTRY_SIZE]>,
    tail: usize,
    phase: bool,
    /// The head the driver last wrote to the doorbell.
    doorbell_head: usize,
    sq_head: u16,
    sq_entries: u16,
}

impl Controller {
    fn new(cq_entries: usize, sq_entries: u16) -> Controller {
        Controller {
            cq: vec![[0; ENTRY_SIZE]; cq_entries],
            tail: 0,
            phase: true,
            doorbell_head: 0,
            sq_head: 0,
            sq_entries,
        }
    }

    fn full(&self) -> bool {
        (self.tail + 1) % self.cq.len() == self.doorbell_head
    }

    fn complete(&mut self, cid: u16) {
        assert!(!self.full());
        self.sq_head = (self.sq_head + 1) % self.sq_entries;
        let c = Completion {
            result: 0,
            sq_head: self.sq_head,
            sq_id: 1,
            cid,
            phase: self.phase,
            status: 0,
        };
        self.cq[self.tail] = c.to_bytes();
        self.tail += 1;
        if self.tail == self.cq.len() {
            self.tail = 0;
            self.phase = !self.phase;
        }
    }
}

/// Commands go in, completions come back in random batches over many passes of both rings;
/// the driver sees every command once, in order, and never an old entry.
#[test]
fn many_wraps_lose_and_repeat_nothing() {
    let mut rng = XorShift(0xC0FFEE);
    for (cq_n, sq_n) in [(2u16, 2u16), (4, 4), (16, 8), (8, 16), (65, 64)] {
        let mut ctrl = Controller::new(cq_n as usize, sq_n);
        let mut sq = SubmissionRing::new(sq_n).unwrap();
        let mut cq = CompletionRing::new(cq_n).unwrap();
        let mut submitted = std::collections::VecDeque::new();
        let (mut next_cid, mut seen) = (0u16, 0u32);
        while seen < 5_000 {
            // Submit a few (as far as the rings allow: at most cq_n - 1 outstanding).
            for _ in 0..rng.below(5) {
                if submitted.len() + 1 >= cq_n as usize {
                    break;
                }
                let Some(_) = sq.push() else { break };
                submitted.push_back(next_cid);
                next_cid = next_cid.wrapping_add(1);
            }
            // The controller completes some of them.
            let done = rng.below(submitted.len() + 1);
            let pending_in_ctrl: Vec<u16> = submitted.iter().copied().collect();
            for &cid in pending_in_ctrl.iter().take(done) {
                if ctrl.full() {
                    break;
                }
                ctrl.complete(cid);
                submitted.pop_front();
            }
            // The driver polls until the head holds an old entry.
            let mut drained = 0;
            while let Some(c) = cq.take(&ctrl.cq[cq.head() as usize]) {
                assert_eq!(c.cid, (seen as u16), "completions in order, each once");
                sq.consumed_up_to(c.sq_head);
                seen += 1;
                drained += 1;
            }
            assert_eq!(cq.head() as usize, ctrl.tail, "the driver caught up exactly");
            if drained > 0 {
                ctrl.doorbell_head = cq.head() as usize;
            }
        }
        assert!(cq.wraps() >= 5_000 / cq_n as u64 - 1);
    }
}
