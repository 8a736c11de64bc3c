//! The pure pieces of application-processor start-up: the claim protocol between the boot
//! CPU and a starting AP, the lookup of an AP's slot by its own APIC ID, and compact
//! summaries of CPU lists for boot reports on large machines.
//!
//! Every AP runs the same trampoline and finds *its own* slot by the APIC ID it reads from
//! its own hardware, so no AP can ever take parameters meant for another. A slot is claimed
//! exactly once: either by its AP ([`StartSlotState::claim`]) or by the boot CPU giving up
//! on it ([`StartSlotState::abandon`]); whichever comes second loses, so an AP that arrives
//! after its deadline sees the abandonment and parks itself.

use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};

/// Where a start slot is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SlotState {
    /// Prepared; the AP has not claimed it yet.
    Waiting = 0,
    /// The AP found and claimed it and runs on the slot's stack.
    Claimed = 1,
    /// The AP reported itself online.
    Online = 2,
    /// The AP reported a failure (mode, identity) and halted.
    Failed = 3,
    /// The boot CPU stopped waiting before the AP claimed it; the AP must never use it.
    Abandoned = 4,
}

impl TryFrom<u8> for SlotState {
    type Error = u8;
    fn try_from(raw: u8) -> Result<Self, u8> {
        Ok(match raw {
            0 => SlotState::Waiting,
            1 => SlotState::Claimed,
            2 => SlotState::Online,
            3 => SlotState::Failed,
            4 => SlotState::Abandoned,
            other => return Err(other),
        })
    }
}

/// A slot's state, shared by the boot CPU and the slot's AP.
#[derive(Debug)]
pub struct StartSlotState(AtomicU8);

impl StartSlotState {
    /// A fresh, unclaimed slot.
    pub const fn new() -> Self {
        StartSlotState(AtomicU8::new(SlotState::Waiting as u8))
    }

    /// The state now.
    pub fn get(&self) -> SlotState {
        SlotState::try_from(self.0.load(Ordering::Acquire)).unwrap_or(SlotState::Failed)
    }

    fn transition(&self, from: SlotState, to: SlotState) -> Result<(), SlotState> {
        self.0
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
            .map_err(|now| SlotState::try_from(now).unwrap_or(SlotState::Failed))
    }

    /// The AP takes its slot; fails (with the state found) if the boot CPU abandoned it or
    /// another CPU with the same APIC ID got there first.
    pub fn claim(&self) -> Result<(), SlotState> {
        self.transition(SlotState::Waiting, SlotState::Claimed)
    }

    /// The boot CPU gives up on a slot its AP never claimed; fails (with the state found)
    /// if the AP claimed it after all.
    pub fn abandon(&self) -> Result<(), SlotState> {
        self.transition(SlotState::Waiting, SlotState::Abandoned)
    }

    /// The AP reports its outcome (only from `Claimed`).
    pub fn finish(&self, online: bool) -> Result<(), SlotState> {
        self.transition(
            SlotState::Claimed,
            if online { SlotState::Online } else { SlotState::Failed },
        )
    }

    /// Whether the AP can no longer change the state (online, failed or abandoned).
    pub fn settled(&self) -> bool {
        matches!(self.get(), SlotState::Online | SlotState::Failed | SlotState::Abandoned)
    }
}

impl Default for StartSlotState {
    fn default() -> Self {
        Self::new()
    }
}

/// Finds the entry with `apic_id` in `slots`, which must be sorted by [`ApicKeyed::apic_id`]
/// (checked by [`sorted_unique`]): O(log n), so n APs looking themselves up cost n log n.
pub fn find_by_apic_id<T: ApicKeyed>(slots: &[T], apic_id: u32) -> Option<&T> {
    slots.binary_search_by_key(&apic_id, |s| s.apic_id()).ok().map(|i| &slots[i])
}

/// Whether `slots` is strictly increasing by APIC ID (so every ID has at most one slot).
pub fn sorted_unique<T: ApicKeyed>(slots: &[T]) -> bool {
    slots.windows(2).all(|w| w[0].apic_id() < w[1].apic_id())
}

/// Anything keyed by an APIC ID.
pub trait ApicKeyed {
    /// The APIC ID this entry belongs to.
    fn apic_id(&self) -> u32;
}

impl ApicKeyed for u32 {
    fn apic_id(&self) -> u32 {
        *self
    }
}

/// Displays a list of numbers as ranges (`0-5,8-13,16`): APIC IDs or CPU indices of a large
/// machine on one line. Consecutive runs in the input order are merged.
pub struct Ranges<'a>(pub &'a [u32]);

impl fmt::Display for Ranges<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        let mut first = true;
        while let Some((&start, _)) = rest.split_first() {
            let run = rest
                .iter()
                .enumerate()
                .take_while(|&(i, &v)| Some(v) == start.checked_add(i as u32))
                .count();
            let end = rest[run - 1];
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if run == 1 {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
            rest = &rest[run..];
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_and_abandon_exclude_each_other() {
        let s = StartSlotState::new();
        assert_eq!(s.claim(), Ok(()));
        assert_eq!(s.abandon(), Err(SlotState::Claimed));
        assert_eq!(s.claim(), Err(SlotState::Claimed));
        assert_eq!(s.finish(true), Ok(()));
        assert_eq!(s.get(), SlotState::Online);
        assert!(s.settled());

        let late = StartSlotState::new();
        assert!(!late.settled());
        assert_eq!(late.abandon(), Ok(()));
        assert_eq!(late.claim(), Err(SlotState::Abandoned), "a late AP must not get its slot");
        assert_eq!(late.finish(true), Err(SlotState::Abandoned));
        assert!(late.settled());
    }

    #[test]
    fn claim_races_have_one_winner() {
        let s = std::sync::Arc::new(StartSlotState::new());
        let wins: usize = (0..8)
            .map(|i| {
                let s = s.clone();
                std::thread::spawn(
                    move || if i % 2 == 0 { s.claim().is_ok() } else { s.abandon().is_ok() },
                )
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap() as usize)
            .sum();
        assert_eq!(wins, 1);
    }

    #[test]
    fn lookup_by_sparse_apic_id() {
        let ids = [0u32, 1, 4, 5, 8, 257, 4095, 0xFFFF_FFFE];
        assert!(sorted_unique(&ids[..]));
        for id in ids {
            assert_eq!(find_by_apic_id(&ids[..], id), Some(&id));
        }
        for missing in [2u32, 3, 6, 256, 258, 0xFFFF_FFFF] {
            assert_eq!(find_by_apic_id(&ids[..], missing), None);
        }
        assert!(!sorted_unique(&[1u32, 1][..]));
        assert!(!sorted_unique(&[2u32, 1][..]));
    }

    #[test]
    fn ranges_compress_runs() {
        let s = |v: &[u32]| Ranges(v).to_string();
        assert_eq!(s(&[]), "none");
        assert_eq!(s(&[7]), "7");
        assert_eq!(s(&[0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 16]), "0-5,8-13,16");
        assert_eq!(s(&[1, 3, 5]), "1,3,5");
        assert_eq!(s(&[u32::MAX - 1, u32::MAX]), "4294967294-4294967295");
    }

    #[test]
    fn state_bytes_round_trip() {
        for s in [
            SlotState::Waiting,
            SlotState::Claimed,
            SlotState::Online,
            SlotState::Failed,
            SlotState::Abandoned,
        ] {
            assert_eq!(SlotState::try_from(s as u8), Ok(s));
        }
        assert_eq!(SlotState::try_from(9), Err(9));
    }
}
