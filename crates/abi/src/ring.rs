//! Layout of the shared ring page and the pure index arithmetic both sides use.
//!
//! Indices are free-running `u32` counters; a slot is `index & (entries - 1)`. The reader of
//! an index written by the other side must treat it as hostile, which is why every helper
//! here returns `Result` instead of trusting the difference of two counters.

use core::mem::{offset_of, size_of};
use core::sync::atomic::AtomicU32;

use crate::{Status, RING_SIZE};

/// Submission queue length (a power of two).
pub const SQ_ENTRIES: u32 = 32;
/// Completion queue length (a power of two, larger than the SQ so a full SQ batch fits).
pub const CQ_ENTRIES: u32 = 64;
/// Byte offset of `Submission[SQ_ENTRIES]` in the ring page.
pub const SQ_OFFSET: usize = 64;
/// Byte offset of `Completion[CQ_ENTRIES]` in the ring page.
pub const CQ_OFFSET: usize = SQ_OFFSET + 48 * SQ_ENTRIES as usize;

/// Control block at offset 0 of the ring page (64 bytes).
///
/// Ownership: the user writes `sq_tail` and `cq_head`; the kernel writes `sq_head`,
/// `cq_tail`, the two sizes and `overflow`. The kernel keeps private copies of the indices
/// it owns and never reads them back from the page.
#[repr(C)]
#[derive(Debug)]
pub struct RingHeader {
    /// Submissions consumed by the kernel (kernel advances).
    pub sq_head: AtomicU32,
    /// Submissions published by the user (user advances, Release after writing the entry).
    pub sq_tail: AtomicU32,
    /// Completions consumed by the user (user advances).
    pub cq_head: AtomicU32,
    /// Completions published by the kernel (kernel advances, Release after writing).
    pub cq_tail: AtomicU32,
    /// Kernel fills in [`SQ_ENTRIES`].
    pub sq_entries: u32,
    /// Kernel fills in [`CQ_ENTRIES`].
    pub cq_entries: u32,
    /// Completions the kernel had to drop because the user broke the `cq_head` protocol.
    /// Stays 0 for a well-behaved process.
    pub overflow: AtomicU32,
    /// Zero; room for future fields without moving the queues.
    pub _reserved: [u32; 9],
}

impl RingHeader {
    /// The header the kernel writes into a fresh ring page: all indices 0, sizes filled in.
    pub const fn new() -> RingHeader {
        RingHeader {
            sq_head: AtomicU32::new(0),
            sq_tail: AtomicU32::new(0),
            cq_head: AtomicU32::new(0),
            cq_tail: AtomicU32::new(0),
            sq_entries: SQ_ENTRIES,
            cq_entries: CQ_ENTRIES,
            overflow: AtomicU32::new(0),
            _reserved: [0; 9],
        }
    }
}

impl Default for RingHeader {
    fn default() -> Self {
        RingHeader::new()
    }
}

/// One request: invoke `method` on capability `cap`. 48 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Submission {
    /// Capability the method is invoked on (`CapId.0`); ignored by `Nop`.
    pub cap: u32,
    /// [`crate::Method`] number.
    pub method: u16,
    /// Must be 0 (no flags are defined yet); otherwise the completion is `BadFlags`.
    pub flags: u16,
    /// Method arguments; unused ones must be 0.
    pub args: [u64; 4],
    /// Opaque value copied into the matching [`Completion`].
    pub user_data: u64,
}

/// The answer to one submission. 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    /// `Submission::user_data` of the request this answers.
    pub user_data: u64,
    /// A [`Status`] value.
    pub status: i32,
    /// 0 (no flags are defined yet).
    pub flags: u32,
    /// Method results; 0 when unused or on error.
    pub results: [u64; 2],
}

impl Completion {
    /// The typed status; unknown raw values (a kernel/ABI mismatch) read as `BadRing`.
    pub const fn status(&self) -> Status {
        match Status::from_i32(self.status) {
            Some(s) => s,
            None => Status::BadRing,
        }
    }
}

// Layout is ABI: fail the build if anything moves.
const _: () = {
    assert!(size_of::<RingHeader>() == 64);
    assert!(offset_of!(RingHeader, sq_head) == 0);
    assert!(offset_of!(RingHeader, sq_tail) == 4);
    assert!(offset_of!(RingHeader, cq_head) == 8);
    assert!(offset_of!(RingHeader, cq_tail) == 12);
    assert!(offset_of!(RingHeader, sq_entries) == 16);
    assert!(offset_of!(RingHeader, cq_entries) == 20);
    assert!(offset_of!(RingHeader, overflow) == 24);
    assert!(offset_of!(RingHeader, _reserved) == 28);

    assert!(size_of::<Submission>() == 48);
    assert!(core::mem::align_of::<Submission>() == 8);
    assert!(offset_of!(Submission, cap) == 0);
    assert!(offset_of!(Submission, method) == 4);
    assert!(offset_of!(Submission, flags) == 6);
    assert!(offset_of!(Submission, args) == 8);
    assert!(offset_of!(Submission, user_data) == 40);

    assert!(size_of::<Completion>() == 32);
    assert!(core::mem::align_of::<Completion>() == 8);
    assert!(offset_of!(Completion, user_data) == 0);
    assert!(offset_of!(Completion, status) == 8);
    assert!(offset_of!(Completion, flags) == 12);
    assert!(offset_of!(Completion, results) == 16);

    assert!(SQ_ENTRIES.is_power_of_two() && CQ_ENTRIES.is_power_of_two());
    assert!(CQ_ENTRIES >= SQ_ENTRIES);
    assert!(SQ_OFFSET >= size_of::<RingHeader>());
    assert!(SQ_OFFSET.is_multiple_of(8) && CQ_OFFSET.is_multiple_of(8));
    assert!(CQ_OFFSET == SQ_OFFSET + size_of::<Submission>() * SQ_ENTRIES as usize);
    assert!(CQ_OFFSET + size_of::<Completion>() * CQ_ENTRIES as usize <= RING_SIZE);
};

/// Array slot of submission index `index`.
pub const fn sq_slot(index: u32) -> usize {
    (index & (SQ_ENTRIES - 1)) as usize
}

/// Array slot of completion index `index`.
pub const fn cq_slot(index: u32) -> usize {
    (index & (CQ_ENTRIES - 1)) as usize
}

/// Number of published, unconsumed submissions; `BadRing` if `tail` is more than
/// [`SQ_ENTRIES`] ahead of `head` (including "behind", which wraps to a huge distance).
pub const fn sq_pending(head: u32, tail: u32) -> Result<u32, Status> {
    let pending = tail.wrapping_sub(head);
    if pending > SQ_ENTRIES {
        Err(Status::BadRing)
    } else {
        Ok(pending)
    }
}

/// Number of posted, unconsumed completions; `BadRing` if the indices are more than
/// [`CQ_ENTRIES`] apart (e.g. the user moved `cq_head` past `cq_tail`).
pub const fn cq_available(head: u32, tail: u32) -> Result<u32, Status> {
    let used = tail.wrapping_sub(head);
    if used > CQ_ENTRIES {
        Err(Status::BadRing)
    } else {
        Ok(used)
    }
}

/// Free completion slots; `BadRing` under the same rule as [`cq_available`].
pub const fn cq_space(head: u32, tail: u32) -> Result<u32, Status> {
    match cq_available(head, tail) {
        Ok(used) => Ok(CQ_ENTRIES - used),
        Err(e) => Err(e),
    }
}

/// How many more submissions the kernel may consume now: free completion slots minus the
/// `in_flight` deferred operations that already hold a reservation (never negative).
pub const fn cq_budget(head: u32, tail: u32, in_flight: u32) -> Result<u32, Status> {
    match cq_space(head, tail) {
        Ok(space) => Ok(space.saturating_sub(in_flight)),
        Err(e) => Err(e),
    }
}

/// Validates `cap_enter`'s `min_complete` (at most [`CQ_ENTRIES`]). The kernel checks it
/// before consuming any submission, so a rejected call leaves the queue untouched.
pub const fn min_complete(raw: u64) -> Result<u32, Status> {
    if raw > CQ_ENTRIES as u64 {
        Err(Status::BadArgument)
    } else {
        Ok(raw as u32)
    }
}

/// Interprets the raw `rax` of `cap_enter`: a completion count in `0..=CQ_ENTRIES`, or a
/// negative [`Status`]. Anything else (only a kernel bug could produce it) reads as `BadRing`.
pub const fn enter_result(raw: i64) -> Result<u32, Status> {
    if raw >= 0 {
        if raw <= CQ_ENTRIES as i64 {
            Ok(raw as u32)
        } else {
            Err(Status::BadRing)
        }
    } else if raw >= i32::MIN as i64 {
        match Status::from_i32(raw as i32) {
            Some(s) => Err(s),
            None => Err(Status::BadRing),
        }
    } else {
        Err(Status::BadRing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_complete_accepts_up_to_the_queue_length() {
        assert_eq!(min_complete(0), Ok(0));
        assert_eq!(min_complete(CQ_ENTRIES as u64), Ok(CQ_ENTRIES));
        assert_eq!(min_complete(CQ_ENTRIES as u64 + 1), Err(Status::BadArgument));
        assert_eq!(min_complete(u64::MAX), Err(Status::BadArgument));
    }

    /// Heads around every interesting wrap point of a `u32` counter.
    fn heads() -> Vec<u32> {
        let mut v = Vec::new();
        for base in [0u32, 1 << 16, 1 << 31, u32::MAX - 200] {
            for d in 0..=400u32 {
                v.push(base.wrapping_add(d));
            }
        }
        v.extend([u32::MAX, u32::MAX - 31, u32::MAX - 32, u32::MAX - 63, u32::MAX - 64]);
        v
    }

    #[test]
    fn sq_pending_wraps() {
        for head in heads() {
            for d in 0..=300u32 {
                let tail = head.wrapping_add(d);
                let r = sq_pending(head, tail);
                if d <= SQ_ENTRIES {
                    assert_eq!(r, Ok(d), "head={head} tail={tail}");
                } else {
                    assert_eq!(r, Err(Status::BadRing), "head={head} tail={tail}");
                }
                // A tail behind the head is always corrupt.
                if d != 0 {
                    assert_eq!(sq_pending(head, head.wrapping_sub(d)), Err(Status::BadRing));
                }
            }
        }
    }

    #[test]
    fn cq_space_wraps() {
        for head in heads() {
            for d in 0..=300u32 {
                let tail = head.wrapping_add(d);
                if d <= CQ_ENTRIES {
                    assert_eq!(cq_available(head, tail), Ok(d));
                    assert_eq!(cq_space(head, tail), Ok(CQ_ENTRIES - d));
                    for in_flight in [0, 1, 5, CQ_ENTRIES, u32::MAX] {
                        let want = (CQ_ENTRIES - d).saturating_sub(in_flight);
                        assert_eq!(cq_budget(head, tail, in_flight), Ok(want));
                    }
                } else {
                    assert_eq!(cq_available(head, tail), Err(Status::BadRing));
                    assert_eq!(cq_space(head, tail), Err(Status::BadRing));
                    assert_eq!(cq_budget(head, tail, 0), Err(Status::BadRing));
                }
                if d != 0 {
                    // User moved cq_head past cq_tail.
                    assert_eq!(cq_space(head, head.wrapping_sub(d)), Err(Status::BadRing));
                }
            }
        }
    }

    #[test]
    fn exhaustive_small_domain_model() {
        // Model the counters in u64 (no wrap) and compare against the u32 helpers for all
        // head/tail pairs in a window straddling the u32 wrap.
        let base: u64 = (1u64 << 32) - 100;
        for h in base..base + 200 {
            for t in base..base + 200 {
                let (hw, tw) = (h as u32, t as u32);
                let model_ok = t >= h && t - h <= SQ_ENTRIES as u64;
                assert_eq!(sq_pending(hw, tw).is_ok(), model_ok);
                if model_ok {
                    assert_eq!(sq_pending(hw, tw).unwrap() as u64, t - h);
                }
                let model_ok = t >= h && t - h <= CQ_ENTRIES as u64;
                assert_eq!(cq_space(hw, tw).is_ok(), model_ok);
            }
        }
    }

    #[test]
    fn slots_wrap() {
        assert_eq!(sq_slot(0), 0);
        assert_eq!(sq_slot(SQ_ENTRIES), 0);
        assert_eq!(sq_slot(u32::MAX), (SQ_ENTRIES - 1) as usize);
        assert_eq!(cq_slot(CQ_ENTRIES + 3), 3);
        assert_eq!(cq_slot(u32::MAX), (CQ_ENTRIES - 1) as usize);
        // Successive indices across the wrap visit consecutive slots.
        let mut i = u32::MAX - 5;
        for _ in 0..10 {
            assert_eq!(sq_slot(i.wrapping_add(1)), (sq_slot(i) + 1) % SQ_ENTRIES as usize);
            i = i.wrapping_add(1);
        }
    }

    #[test]
    fn enter_results() {
        assert_eq!(enter_result(0), Ok(0));
        assert_eq!(enter_result(CQ_ENTRIES as i64), Ok(CQ_ENTRIES));
        assert_eq!(enter_result(CQ_ENTRIES as i64 + 1), Err(Status::BadRing));
        assert_eq!(enter_result(-9), Err(Status::TimedOut));
        assert_eq!(enter_result(-12), Err(Status::BadRing));
        assert_eq!(enter_result(-14), Err(Status::BadRing));
        assert_eq!(enter_result(i64::MIN), Err(Status::BadRing));
        assert_eq!(enter_result(i64::MAX), Err(Status::BadRing));
    }

    #[test]
    fn header_defaults_and_completion_status() {
        let h = RingHeader::new();
        assert_eq!((h.sq_entries, h.cq_entries), (SQ_ENTRIES, CQ_ENTRIES));
        assert_eq!(h._reserved, [0; 9]);
        let mut c = Completion::default();
        assert_eq!(c.status(), Status::Ok);
        c.status = -5;
        assert_eq!(c.status(), Status::Busy);
        c.status = 7;
        assert_eq!(c.status(), Status::BadRing);
    }
}
