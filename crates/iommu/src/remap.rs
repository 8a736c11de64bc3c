//! Remappable interrupt-request formats: what the IOAPIC and MSI-capable devices are
//! programmed with once interrupt remapping is on. They no longer name a CPU or a vector's
//! delivery; they name an IRTE (the "handle" or "interrupt index"), and the remapping unit
//! looks the rest up in its table.

use keel_apic::ioapic::{EncodedEntry, RTE_MASKED};
use keel_apic::msi::MSI_ADDRESS_BASE;
use keel_apic::{Polarity, TriggerMode};

/// RTE bit 48 / MSI address bit 4: the request is in remappable format.
const RTE_FORMAT_REMAPPABLE: u32 = 1 << (48 - 32);
const RTE_INDEX_LOW_SHIFT: u32 = 49 - 32;
const RTE_INDEX_15: u32 = 1 << 11;
const RTE_POLARITY_SHIFT: u32 = 13;
const RTE_TRIGGER_SHIFT: u32 = 15;
const MSI_FORMAT_REMAPPABLE: u32 = 1 << 4;
const MSI_SUBHANDLE_VALID: u32 = 1 << 3;
const MSI_HANDLE_15: u32 = 1 << 2;
const MSI_HANDLE_LOW_SHIFT: u32 = 5;

/// An IOAPIC redirection entry in remappable format (VT-d spec 5.1.5.1).
///
/// Low half: vector (7:0, must equal the IRTE's vector: the IOAPIC matches EOIs of level
/// lines by it), `interrupt_index[15]` (11), polarity (13), trigger (15), mask (16). High
/// half: format = 1 (bit 48 of the entry) and `interrupt_index[14:0]` (63:49). Bits 10:8 and
/// 47:17 are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemappableRte {
    /// IRTE index.
    pub index: u16,
    /// The vector the IRTE delivers.
    pub vector: u8,
    /// Input pin polarity.
    pub polarity: Polarity,
    /// Edge or level.
    pub trigger: TriggerMode,
    /// Whether the pin is masked.
    pub masked: bool,
}

impl RemappableRte {
    /// Both 32-bit halves, as written to the IOAPIC's redirection registers.
    pub fn encode(&self) -> EncodedEntry {
        let low = self.vector as u32
            | if self.index & 0x8000 != 0 { RTE_INDEX_15 } else { 0 }
            | self.polarity.bit() << RTE_POLARITY_SHIFT
            | self.trigger.bit() << RTE_TRIGGER_SHIFT
            | if self.masked { RTE_MASKED } else { 0 };
        let high = RTE_FORMAT_REMAPPABLE | ((self.index & 0x7FFF) as u32) << RTE_INDEX_LOW_SHIFT;
        EncodedEntry { low, high }
    }

    /// Decodes an entry read back from the IOAPIC; `None` when it is in compatibility format.
    pub fn decode(raw: EncodedEntry) -> Option<Self> {
        if raw.high & RTE_FORMAT_REMAPPABLE == 0 {
            return None;
        }
        let index = (raw.high >> RTE_INDEX_LOW_SHIFT) as u16
            | if raw.low & RTE_INDEX_15 != 0 { 0x8000 } else { 0 };
        Some(RemappableRte {
            index,
            vector: raw.low as u8,
            polarity: Polarity::from_bit(raw.low >> RTE_POLARITY_SHIFT),
            trigger: TriggerMode::from_bit(raw.low >> RTE_TRIGGER_SHIFT),
            masked: raw.low & RTE_MASKED != 0,
        })
    }
}

/// An MSI address/data pair in remappable format (VT-d spec 5.1.5.2): address bits 31:20 =
/// 0xFEE, `handle[14:0]` in 19:5, format = 1 (bit 4), SHV = 0 (bit 3: no sub-handle, one
/// message per function), `handle[15]` in bit 2. The data word is then ignored by the
/// remapping unit and programmed 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemappableMsi {
    /// IRTE index.
    pub handle: u16,
}

impl RemappableMsi {
    /// The 32-bit address (the upper address dword is 0).
    pub fn address(&self) -> u32 {
        MSI_ADDRESS_BASE
            | ((self.handle & 0x7FFF) as u32) << MSI_HANDLE_LOW_SHIFT
            | MSI_FORMAT_REMAPPABLE
            | if self.handle & 0x8000 != 0 { MSI_HANDLE_15 } else { 0 }
    }

    /// The data word.
    pub fn data(&self) -> u16 {
        0
    }

    /// Decodes an address read back from a device; `None` when it is not a remappable MSI.
    pub fn decode(address: u32) -> Option<Self> {
        if address & 0xFFF0_0000 != MSI_ADDRESS_BASE || address & MSI_FORMAT_REMAPPABLE == 0 {
            return None;
        }
        if address & MSI_SUBHANDLE_VALID != 0 {
            return None;
        }
        let handle = ((address >> MSI_HANDLE_LOW_SHIFT) & 0x7FFF) as u16
            | if address & MSI_HANDLE_15 != 0 { 0x8000 } else { 0 };
        Some(RemappableMsi { handle })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_apic::ioapic::RedirectionEntry;

    #[test]
    fn rte_layout_matches_the_spec() {
        let rte = RemappableRte {
            index: 8,
            vector: 0x51,
            polarity: Polarity::ActiveHigh,
            trigger: TriggerMode::Edge,
            masked: true,
        };
        let e = rte.encode();
        assert_eq!(e.low, 0x0001_0051);
        assert_eq!(e.high, 0x0011_0000, "format bit 48 and index 8 at bits 63:49");
        let level = RemappableRte {
            index: 0x8003,
            vector: 0x60,
            polarity: Polarity::ActiveLow,
            trigger: TriggerMode::Level,
            masked: false,
        };
        let e = level.encode();
        assert_eq!(e.low, 0x60 | 1 << 11 | 1 << 13 | 1 << 15);
        assert_eq!(e.high, 1 << 16 | 3 << 17);
        assert_eq!(RemappableRte::decode(e), Some(level));
    }

    #[test]
    fn compatibility_entries_are_not_remappable() {
        let compat = RedirectionEntry::masked_fixed(0x51, keel_apic::XApicId::new(3).unwrap())
            .encode()
            .unwrap();
        assert_eq!(RemappableRte::decode(compat), None);
    }

    #[test]
    fn msi_address_layout_matches_the_spec() {
        let m = RemappableMsi { handle: 24 };
        assert_eq!(m.address(), 0xFEE0_0000 | 24 << 5 | 1 << 4);
        assert_eq!(m.data(), 0);
        assert_eq!(RemappableMsi::decode(m.address()), Some(m));
        let high = RemappableMsi { handle: 0xFFFF };
        assert_eq!(high.address(), 0xFEEF_FFF4);
        assert_eq!(RemappableMsi::decode(high.address()), Some(high));
        assert_eq!(RemappableMsi::decode(0xFEE0_3000), None, "compatibility format");
        assert_eq!(RemappableMsi::decode(0xFEE0_0018), None, "sub-handle valid");
        assert_eq!(RemappableMsi::decode(0xFED0_0010), None, "outside the interrupt window");
    }

    #[test]
    fn every_index_round_trips() {
        for index in 0..=u16::MAX {
            assert_eq!(
                RemappableMsi::decode(RemappableMsi { handle: index }.address()).unwrap().handle,
                index
            );
            let rte = RemappableRte {
                index,
                vector: 0x40,
                polarity: Polarity::ActiveHigh,
                trigger: TriggerMode::Level,
                masked: index % 2 == 0,
            };
            assert_eq!(RemappableRte::decode(rte.encode()), Some(rte));
        }
    }
}
