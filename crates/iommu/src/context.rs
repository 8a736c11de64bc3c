//! DMA remapping's first two levels (VT-d spec 9.1, 9.3, legacy mode): the root table (one
//! 128-bit entry per bus, pointing at that bus's context table) and the context table (one
//! 128-bit entry per device/function, naming the domain and its second-level page table).
//! A function whose entry is not present has every DMA request blocked and reported.

use crate::dma::DmaCapability;

/// Root entry P (bit 0) and context entry P (bit 0).
const PRESENT: u64 = 1;
/// Bits 63:12: a 4-KiB aligned physical address.
const ADDRESS_MASK: u64 = !0xFFF;

/// Entries per root or context table (4 KiB of 16-byte entries).
pub const TABLE_ENTRIES: usize = 256;

/// The adjusted guest address width of a domain: how many levels its page table has
/// (context entry AW, spec 9.3; supported widths in CAP.SAGAW, 10.4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressWidth {
    /// 39 bits, 3-level table (AW = 1, SAGAW bit 1).
    Bits39,
    /// 48 bits, 4-level table (AW = 2, SAGAW bit 2).
    Bits48,
}

impl AddressWidth {
    /// The widest width the unit supports that Keel builds tables for (48 before 39), or
    /// `None` when SAGAW names neither.
    pub fn for_unit(capability: DmaCapability) -> Option<AddressWidth> {
        let sagaw = capability.sagaw();
        if sagaw & 1 << 2 != 0 {
            Some(AddressWidth::Bits48)
        } else if sagaw & 1 << 1 != 0 {
            Some(AddressWidth::Bits39)
        } else {
            None
        }
    }

    /// The context entry's AW field.
    pub fn field(self) -> u64 {
        match self {
            AddressWidth::Bits39 => 1,
            AddressWidth::Bits48 => 2,
        }
    }

    /// Page-table levels.
    pub fn levels(self) -> u32 {
        match self {
            AddressWidth::Bits39 => 3,
            AddressWidth::Bits48 => 4,
        }
    }

    /// Address bits the table translates.
    pub fn bits(self) -> u32 {
        12 + 9 * self.levels()
    }
}

/// A root entry: present with the bus's context table, or not present (the whole bus
/// blocked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootEntry {
    /// Physical address of the bus's context table (4-KiB aligned).
    pub context_table: Option<u64>,
}

impl RootEntry {
    /// The entry's two quadwords; `None` when the table address is not page aligned.
    pub fn encode(self) -> Option<[u64; 2]> {
        match self.context_table {
            None => Some([0, 0]),
            Some(phys) if phys & !ADDRESS_MASK == 0 => Some([phys | PRESENT, 0]),
            Some(_) => None,
        }
    }

    /// Reads an entry back (reserved bits ignored).
    pub fn decode(raw: [u64; 2]) -> RootEntry {
        RootEntry { context_table: (raw[0] & PRESENT != 0).then_some(raw[0] & ADDRESS_MASK) }
    }
}

/// Context entry translation type (TT, bits 3:2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TranslationType {
    /// 00: untranslated requests go through the second-level table; device-TLB refused.
    SecondLevel,
}

/// A present context entry: the domain a function's DMA is translated in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextEntry {
    /// Domain identifier (DID, bits 87:72); tags the unit's cached translations.
    pub domain: u16,
    /// Physical address of the domain's top-level page table.
    pub page_table: u64,
    /// The table's depth.
    pub width: AddressWidth,
    /// How requests are translated.
    pub translation: TranslationType,
}

/// Why a context entry cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextError {
    /// The page table is not 4-KiB aligned.
    Unaligned,
    /// The domain id is beyond the unit's CAP.ND, or 0 while the unit is in caching mode
    /// (spec 6.2.2: DID 0 is reserved then).
    DomainOutOfRange,
}

impl ContextEntry {
    /// The entry's two quadwords (P set, FPD clear: faults are recorded).
    pub fn encode(self, capability: DmaCapability) -> Result<[u64; 2], ContextError> {
        if self.page_table & !ADDRESS_MASK != 0 {
            return Err(ContextError::Unaligned);
        }
        if !capability.domain_usable(self.domain) {
            return Err(ContextError::DomainOutOfRange);
        }
        let tt = match self.translation {
            TranslationType::SecondLevel => 0u64,
        };
        Ok([self.page_table | tt << 2 | PRESENT, self.width.field() | (self.domain as u64) << 8])
    }

    /// Reads an entry back; `None` when not present or its AW/TT are not Keel's.
    pub fn decode(raw: [u64; 2]) -> Option<ContextEntry> {
        if raw[0] & PRESENT == 0 || (raw[0] >> 2) & 3 != 0 {
            return None;
        }
        let width = match raw[1] & 7 {
            1 => AddressWidth::Bits39,
            2 => AddressWidth::Bits48,
            _ => return None,
        };
        Some(ContextEntry {
            domain: (raw[1] >> 8) as u16,
            page_table: raw[0] & ADDRESS_MASK,
            width,
            translation: TranslationType::SecondLevel,
        })
    }
}

/// A requester id's slots: the root table index (bus) and the context table index
/// (device << 3 | function).
pub fn slots(requester: u16) -> (usize, usize) {
    ((requester >> 8) as usize, (requester & 0xFF) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU's defaults: SAGAW 39+48, ND = 16 bits, CM per `caching-mode`.
    fn qemu(cm: bool) -> DmaCapability {
        DmaCapability(0b110 << 8 | 6 | if cm { 1 << 7 } else { 0 } | 47 << 16)
    }

    #[test]
    fn root_entries() {
        assert_eq!(RootEntry { context_table: Some(0x5000) }.encode(), Some([0x5001, 0]));
        assert_eq!(RootEntry { context_table: None }.encode(), Some([0, 0]));
        assert_eq!(RootEntry { context_table: Some(0x5008) }.encode(), None);
        assert_eq!(RootEntry::decode([0x5001, 0]).context_table, Some(0x5000));
        assert_eq!(RootEntry::decode([0x5000, 0]).context_table, None);
    }

    #[test]
    fn context_entries_carry_domain_width_and_table() {
        let e = ContextEntry {
            domain: 0x1234,
            page_table: 0xABC_D000,
            width: AddressWidth::Bits48,
            translation: TranslationType::SecondLevel,
        };
        let raw = e.encode(qemu(false)).unwrap();
        assert_eq!(raw, [0xABC_D001, 0x12_3402]);
        assert_eq!(ContextEntry::decode(raw), Some(e));
        assert_eq!(ContextEntry::decode([raw[0] & !1, raw[1]]), None, "not present");
        let e39 = ContextEntry { width: AddressWidth::Bits39, ..e };
        assert_eq!(e39.encode(qemu(false)).unwrap()[1] & 7, 1);
        assert_eq!(
            ContextEntry { page_table: 0x1001, ..e }.encode(qemu(false)),
            Err(ContextError::Unaligned)
        );
    }

    #[test]
    fn domain_zero_is_reserved_in_caching_mode_and_nd_bounds_ids() {
        let e = ContextEntry {
            domain: 0,
            page_table: 0x1000,
            width: AddressWidth::Bits39,
            translation: TranslationType::SecondLevel,
        };
        assert!(e.encode(qemu(false)).is_ok());
        assert_eq!(e.encode(qemu(true)), Err(ContextError::DomainOutOfRange));
        // ND = 0: 16 domains.
        let small = DmaCapability(0b10 << 8);
        assert!(ContextEntry { domain: 15, ..e }.encode(small).is_ok());
        assert_eq!(
            ContextEntry { domain: 16, ..e }.encode(small),
            Err(ContextError::DomainOutOfRange)
        );
    }

    #[test]
    fn address_width_from_sagaw() {
        assert_eq!(AddressWidth::for_unit(qemu(false)), Some(AddressWidth::Bits48));
        assert_eq!(AddressWidth::for_unit(DmaCapability(0b10 << 8)), Some(AddressWidth::Bits39));
        assert_eq!(AddressWidth::for_unit(DmaCapability(0b1000 << 8)), None, "5-level only");
        assert_eq!(AddressWidth::Bits39.bits(), 39);
        assert_eq!(AddressWidth::Bits48.bits(), 48);
    }

    #[test]
    fn requester_slots() {
        assert_eq!(slots(0x0020), (0, 0x20));
        assert_eq!(slots(0x0318), (3, 0x18));
    }
}
