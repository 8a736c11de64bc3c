//! The driver's side of a submission / completion queue pair (Base 2.0, 3.3.1).
//!
//! A submission queue is a ring the driver fills at its tail and the controller consumes
//! from its head; the driver learns the head from each completion (SQ Head Pointer). It is
//! full when one slot is left, so that a full ring and an empty one differ.
//!
//! A completion queue is a ring the controller fills. The driver never reads a "tail":
//! each entry carries a phase tag, written inverted on each pass of the controller through
//! the ring. The memory starts zeroed (phase 0), the controller's first pass writes phase
//! 1, so the entry at the head is new exactly when its phase equals the phase the driver
//! expects; at the wrap the expected phase flips. After consuming entries the driver
//! writes the new head to the queue's head doorbell, which frees those slots.

use crate::completion::Completion;

/// The driver's state of a submission queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubmissionRing {
    entries: u16,
    tail: u16,
    head: u16,
}

impl SubmissionRing {
    /// A ring of `entries` slots (at least 2).
    pub fn new(entries: u16) -> Option<SubmissionRing> {
        (entries >= 2).then_some(SubmissionRing { entries, tail: 0, head: 0 })
    }

    /// The slot the next command goes into, and the tail to write to the doorbell after
    /// it; `None` when the ring is full.
    pub fn push(&mut self) -> Option<(u16, u16)> {
        let next = (self.tail + 1) % self.entries;
        if next == self.head {
            return None;
        }
        let slot = self.tail;
        self.tail = next;
        Some((slot, next))
    }

    /// Records the controller's head, as reported in a completion. A value outside the
    /// ring is ignored (the controller is wrong; the ring stays conservative).
    pub fn consumed_up_to(&mut self, sq_head: u16) {
        if sq_head < self.entries {
            self.head = sq_head;
        }
    }

    /// Commands submitted and not yet consumed by the controller.
    pub fn in_flight(&self) -> u16 {
        (self.tail + self.entries - self.head) % self.entries
    }

    pub fn tail(&self) -> u16 {
        self.tail
    }
}

/// The driver's state of a completion queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompletionRing {
    entries: u16,
    head: u16,
    phase: bool,
    /// Passes completed through the ring (each one flips the phase).
    wraps: u64,
}

impl CompletionRing {
    /// A ring of `entries` slots whose memory the driver zeroed.
    pub fn new(entries: u16) -> Option<CompletionRing> {
        (entries >= 2).then_some(CompletionRing { entries, head: 0, phase: true, wraps: 0 })
    }

    /// The slot to look at next.
    pub fn head(&self) -> u16 {
        self.head
    }

    /// The phase tag a new entry at the head carries.
    pub fn expected_phase(&self) -> bool {
        self.phase
    }

    /// How many times the head wrapped around.
    pub fn wraps(&self) -> u64 {
        self.wraps
    }

    /// Takes the entry at the head if the controller has written it (its phase is the
    /// expected one), moving the head on; `None` if it is an old one.
    pub fn take(&mut self, entry: &[u8; crate::completion::ENTRY_SIZE]) -> Option<Completion> {
        let c = Completion::from_bytes(entry);
        if c.phase != self.phase {
            return None;
        }
        self.head += 1;
        if self.head == self.entries {
            self.head = 0;
            self.phase = !self.phase;
            self.wraps += 1;
        }
        Some(c)
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
