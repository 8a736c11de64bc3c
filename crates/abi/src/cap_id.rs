//! Capability ids as seen by user programs.

/// A process-local handle to a kernel object: low 16 bits are the slot index in the process's
/// capability table, high 16 bits the slot's generation, so an id kept after release is
/// recognised as stale instead of reaching whatever object reuses the slot.
///
/// Generation 0 is never handed out, so `CapId(0)` ([`CapId::NULL`]) is never a live id.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CapId(pub u32);

impl CapId {
    /// The "no capability" id; never valid.
    pub const NULL: CapId = CapId(0);

    /// Builds an id from its slot index and generation.
    pub const fn new(index: u16, generation: u16) -> CapId {
        CapId(((generation as u32) << 16) | index as u32)
    }

    /// Slot index in the owning process's table.
    pub const fn index(self) -> u16 {
        self.0 as u16
    }

    /// Generation of the slot when this id was issued (never 0 for a live id).
    pub const fn generation(self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// True for [`CapId::NULL`].
    pub const fn is_null(self) -> bool {
        self.0 == 0
    }

    /// Converts a completion result word (e.g. `CapCopy`'s `results[0]`) back into an id;
    /// `None` if the word does not fit in 32 bits.
    pub const fn from_u64(raw: u64) -> Option<CapId> {
        if raw > u32::MAX as u64 {
            None
        } else {
            Some(CapId(raw as u32))
        }
    }
}

impl From<CapId> for u64 {
    fn from(id: CapId) -> u64 {
        id.0 as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        let id = CapId::new(0x1234, 0xabcd);
        assert_eq!(id.0, 0xabcd_1234);
        assert_eq!(id.index(), 0x1234);
        assert_eq!(id.generation(), 0xabcd);
        assert!(!id.is_null());
        assert!(CapId::NULL.is_null());
        assert_eq!(CapId::new(0, 0), CapId::NULL);
        assert_eq!(CapId::from_u64(u64::from(id)), Some(id));
        assert_eq!(CapId::from_u64(1 << 32), None);
        assert_eq!(CapId::from_u64(u32::MAX as u64), Some(CapId(u32::MAX)), "the largest id fits");
        for i in [0u16, 1, 255, u16::MAX] {
            for g in [0u16, 1, 0x8000, u16::MAX] {
                let id = CapId::new(i, g);
                assert_eq!((id.index(), id.generation()), (i, g));
            }
        }
    }
}
