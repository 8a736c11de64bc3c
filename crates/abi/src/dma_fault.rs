//! The DMA fault a `DeviceMemoryDmaFaults` completion reports in one word.

/// One DMA fault as the IOMMU recorded it: the page the device addressed (VT-d records
/// page-granular addresses), the unit's reason code and the direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaFaultReport {
    /// The faulting address, page aligned (an IOVA, or whatever the device emitted).
    pub page: u64,
    /// The unit's fault reason (VT-d: 0x1 root entry not present, 0x5 write to a read-only
    /// page, ...).
    pub reason: u8,
    /// The device wrote (true) or read.
    pub write: bool,
}

impl DmaFaultReport {
    /// Bits 63:12 the page, bits 11:4 the reason, bit 0 set for a write; never 0 for a
    /// fault (a report with page 0, reason 0 and a read is encoded with bit 1 set).
    pub const fn encode(self) -> u64 {
        (self.page & !0xFFF) | (self.reason as u64) << 4 | 1 << 1 | self.write as u64
    }

    /// The report of a `results[1]`; `None` for 0 (no fault) or bits 3:2 set.
    pub const fn decode(word: u64) -> Option<DmaFaultReport> {
        if word & 0b1110 != 0b0010 {
            return None;
        }
        Some(DmaFaultReport {
            page: word & !0xFFF,
            reason: (word >> 4) as u8,
            write: word & 1 != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_no_fault() {
        for r in [
            DmaFaultReport { page: 0x800_0000, reason: 1, write: true },
            DmaFaultReport { page: 0, reason: 0, write: false },
            DmaFaultReport { page: 0xFFFF_FFFF_FFFF_F000, reason: 0xFF, write: false },
        ] {
            assert_ne!(r.encode(), 0);
            assert_eq!(DmaFaultReport::decode(r.encode()), Some(r));
        }
        assert_eq!(DmaFaultReport { page: 0x1234, reason: 5, write: true }.encode(), 0x1053);
        assert_eq!(DmaFaultReport::decode(0), None);
        assert_eq!(DmaFaultReport::decode(0x1051 | 0b100), None);
    }
}
