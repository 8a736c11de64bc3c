//! The slots of one CPU's shootdown inbox, as pure logic over request identities.
//!
//! A shooter publishes a request (a non-zero identity, in the kernel the address of the
//! request on its stack, unique while the request lives) in a free slot and sets the slot's
//! ready bit; the target's handler takes every ready slot; a shooter whose IPI could not be
//! sent withdraws its request if the handler has not taken it.
//!
//! **Who owns a published request is decided on the slot itself**: the handler takes a slot
//! with one swap to zero, a withdraw with one compare-exchange from the request's identity to
//! zero, so exactly one of them gets it, and a withdraw can never take a *later* request
//! that reuses the slot (its identity differs). The ready bits are only hints of where to
//! look: a bit may stay set for a slot already emptied (by a withdraw, or by a handler that
//! found the slot through an earlier bit), and the next handler then finds the slot empty.
//! (Deciding ownership by the ready bit, as an earlier design did, lets a withdraw that found
//! its slot, then lost the race to the handler, clear the bit of another shooter's request
//! published in the same slot meanwhile: that request was lost and the first one's
//! acknowledgement counted twice.)

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// Requests one CPU can have queued at once (one per concurrent shooter; more shooters wait).
pub const INBOX_SLOTS: usize = 16;

/// Published request identities (0: free) and the hint of which slots to look at.
pub struct SlotInbox {
    slots: [AtomicUsize; INBOX_SLOTS],
    /// Bit i: slot i may hold a request no handler has taken yet.
    ready: AtomicU32,
}

impl SlotInbox {
    /// Empty.
    pub const fn new() -> SlotInbox {
        SlotInbox { slots: [const { AtomicUsize::new(0) }; INBOX_SLOTS], ready: AtomicU32::new(0) }
    }

    /// Publishes `id` (non-zero) in a free slot; false if every slot is taken.
    pub fn push(&self, id: usize) -> bool {
        debug_assert_ne!(id, 0, "0 marks a free slot");
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.compare_exchange(0, id, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                // Release: the handler that sees the bit sees the slot and the request.
                self.ready.fetch_or(1 << i, Ordering::Release);
                return true;
            }
        }
        false
    }

    /// Takes every request published before the call (and perhaps some published during
    /// it), freeing their slots, and hands each identity to `serve` once.
    pub fn take(&self, mut serve: impl FnMut(usize)) {
        let mut ready = self.ready.swap(0, Ordering::AcqRel);
        while ready != 0 {
            let i = ready.trailing_zeros() as usize;
            ready &= ready - 1;
            // The swap claims the slot: a withdraw racing it finds zero (or a later request,
            // which is not its own) and leaves.
            let id = self.slots[i].swap(0, Ordering::AcqRel);
            if id != 0 {
                serve(id);
            }
        }
    }

    /// Takes `id` back if no handler has taken it; true if it did (then no handler ever
    /// serves it). Locating the slot and claiming it are two steps, but the claim verifies
    /// the identity, so whatever happens in between cannot make it take another request.
    pub fn withdraw(&self, id: usize) -> bool {
        self.withdraw_with(id, || {})
    }

    /// [`SlotInbox::withdraw`] with `between` run after the slot is located and before it is
    /// claimed (tests, and the kernel's scenarios, widen that window with it).
    pub fn withdraw_with(&self, id: usize, between: impl FnOnce()) -> bool {
        let Some(slot) = self.slots.iter().find(|s| s.load(Ordering::Acquire) == id) else {
            return false;
        };
        between();
        // Its ready bit (if still set) becomes a hint to an empty slot: harmless.
        slot.compare_exchange(id, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok()
    }

    /// Requests published and not taken yet (evidence).
    pub fn waiting(&self) -> usize {
        self.slots.iter().filter(|s| s.load(Ordering::Acquire) != 0).count()
    }
}

impl Default for SlotInbox {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    const A: usize = 0x1000;
    const B: usize = 0x2000;

    fn taken(inbox: &SlotInbox) -> Vec<usize> {
        let mut v = Vec::new();
        inbox.take(|id| v.push(id));
        v
    }

    #[test]
    fn push_take_and_withdraw_each_own_a_request_once() {
        let inbox = SlotInbox::new();
        assert!(inbox.push(A) && inbox.push(B));
        assert_eq!(inbox.waiting(), 2);
        assert!(inbox.withdraw(A));
        assert!(!inbox.withdraw(A), "withdrawn twice");
        assert_eq!(taken(&inbox), vec![B]);
        assert!(!inbox.withdraw(B), "a served request is not withdrawn");
        assert_eq!(inbox.waiting(), 0);
    }

    #[test]
    fn full_inbox_refuses_then_frees_slots() {
        let inbox = SlotInbox::new();
        for id in 1..=INBOX_SLOTS {
            assert!(inbox.push(id * 8));
        }
        assert!(!inbox.push(0x9_9990));
        assert_eq!(taken(&inbox).len(), INBOX_SLOTS);
        assert!(inbox.push(0x9_9990));
    }

    /// The interleaving of issue 21 item 5: the withdraw located A's slot; before it claims,
    /// the handler serves A and a second shooter publishes B in the same slot. The withdraw
    /// must fail (A was served: one acknowledgement, not two) and B must stay queued.
    #[test]
    fn withdraw_never_takes_a_later_request_in_its_slot() {
        let inbox = SlotInbox::new();
        assert!(inbox.push(A));
        let mut served = Vec::new();
        let withdrew = inbox.withdraw_with(A, || {
            inbox.take(|id| served.push(id));
            assert!(inbox.push(B));
        });
        assert!(!withdrew, "A was served; withdrawing it too counts its acknowledgement twice");
        assert_eq!(served, vec![A]);
        assert_eq!(inbox.waiting(), 1);
        assert_eq!(taken(&inbox), vec![B], "B lost");
    }

    /// The handler took the ready bits but not yet the slot when the withdraw claims: the
    /// withdraw wins, and the handler then finds the slot empty (no double service).
    #[test]
    fn withdraw_between_the_handlers_two_steps() {
        let inbox = SlotInbox::new();
        assert!(inbox.push(A));
        let bits = inbox.ready.swap(0, Ordering::AcqRel);
        assert!(inbox.withdraw(A));
        // The handler's second step, for the bits it took.
        assert_eq!(bits, 1);
        assert_eq!(inbox.slots[0].swap(0, Ordering::AcqRel), 0);
        assert!(taken(&inbox).is_empty());
    }

    /// A stale ready bit (left by a withdraw) makes the next handler look at an empty slot
    /// or at a later request, which it serves once.
    #[test]
    fn stale_ready_bits_are_harmless() {
        let inbox = SlotInbox::new();
        assert!(inbox.push(A));
        assert!(inbox.withdraw(A));
        assert!(taken(&inbox).is_empty());
        assert!(inbox.push(A) && inbox.withdraw(A) && inbox.push(B));
        assert_eq!(taken(&inbox), vec![B]);
        assert!(taken(&inbox).is_empty());
    }

    /// Threads: shooters publish and sometimes withdraw, a handler takes. Every request is
    /// either served once or withdrawn once, never both, never neither.
    #[test]
    fn concurrent_shooters_and_handler_account_for_every_request() {
        const SHOOTERS: usize = 4;
        const ROUNDS: usize = 10_000;
        let inbox = Arc::new(SlotInbox::new());
        let served: Arc<Vec<AtomicU64>> =
            Arc::new((0..SHOOTERS * ROUNDS + 1).map(|_| AtomicU64::new(0)).collect());
        let stop = Arc::new(AtomicU64::new(0));
        let handler = {
            let (inbox, served, stop) = (inbox.clone(), served.clone(), stop.clone());
            std::thread::spawn(move || loop {
                let done = stop.load(Ordering::Acquire) != 0;
                inbox.take(|id| {
                    served[id].fetch_add(1, Ordering::Relaxed);
                });
                if done {
                    break;
                }
            })
        };
        let shooters: Vec<_> = (0..SHOOTERS)
            .map(|s| {
                let inbox = inbox.clone();
                std::thread::spawn(move || {
                    let mut withdrawn = Vec::new();
                    for r in 0..ROUNDS {
                        let id = 1 + s * ROUNDS + r;
                        while !inbox.push(id) {
                            std::hint::spin_loop();
                        }
                        if r % 2 == 0 && inbox.withdraw(id) {
                            withdrawn.push(id);
                        }
                    }
                    withdrawn
                })
            })
            .collect();
        let withdrawn: std::collections::HashSet<usize> =
            shooters.into_iter().flat_map(|t| t.join().unwrap()).collect();
        stop.store(1, Ordering::Release);
        handler.join().unwrap();
        for id in 1..=SHOOTERS * ROUNDS {
            let times = served[id].load(Ordering::Relaxed);
            let pulled = u64::from(withdrawn.contains(&id));
            assert_eq!(times + pulled, 1, "request {id}: served {times}, withdrawn {pulled}");
        }
    }
}
