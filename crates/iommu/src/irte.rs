//! The interrupt-remapping table entry (IRTE, VT-d spec 9.10) and the table's index plan.
//!
//! Remapped-format IRTE (128 bits), low quadword: P (bit 0), FPD (1), DM (2), RH (3),
//! TM (4), DLM (7:5), AVAIL (11:8), IM (15, 0 = remapped), V (23:16), DST (63:32); high
//! quadword: SID (79:64), SQ (81:80), SVT (83:82). DST holds an 8-bit xAPIC ID in bits
//! 47:40 when the table runs in xAPIC mode (IRTA.EIME = 0) and the full 32-bit x2APIC ID
//! when it runs in extended interrupt mode (EIME = 1, spec 9.10 "Destination ID").

use keel_apic::{ApicId, TriggerMode, XApicId};

use crate::dmar::SourceId;

const PRESENT: u64 = 1 << 0;
const FAULT_PROCESSING_DISABLE: u64 = 1 << 1;
const DEST_MODE_LOGICAL: u64 = 1 << 2;
const REDIRECTION_HINT: u64 = 1 << 3;
const TRIGGER_LEVEL: u64 = 1 << 4;
const DELIVERY_SHIFT: u32 = 5;
const IRTE_MODE_POSTED: u64 = 1 << 15;
const VECTOR_SHIFT: u32 = 16;
const DESTINATION_SHIFT: u32 = 32;
const XAPIC_DESTINATION_SHIFT: u32 = 40;
const SQ_SHIFT: u32 = 16;
const SVT_SHIFT: u32 = 18;
/// Low-quadword bits that must be zero in a remapped-format IRTE (14:12, 31:24).
const LOW_RESERVED: u64 = 0x7 << 12 | 0xFF << 24;
/// High-quadword bits that must be zero (127:84).
const HIGH_RESERVED: u64 = !0 << 20;

/// Interrupt-remapping mode of the whole table (IRTA.EIME).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestinationMode {
    /// EIME = 0: 8-bit destinations (the LAPICs run in xAPIC mode).
    XApic,
    /// EIME = 1: 32-bit destinations (the LAPICs run in x2APIC mode).
    X2Apic,
}

/// A physical destination an IRTE can name in its table's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrteDestination {
    /// xAPIC mode: an 8-bit APIC ID.
    XApic(XApicId),
    /// Extended interrupt mode: any 32-bit x2APIC ID.
    X2Apic(ApicId),
}

impl IrteDestination {
    /// The destination for `cpu` in a table of `mode`; `None` when xAPIC mode cannot name it
    /// (APIC ID above 254).
    pub fn for_mode(mode: DestinationMode, cpu: ApicId) -> Option<Self> {
        match mode {
            DestinationMode::X2Apic => Some(IrteDestination::X2Apic(cpu)),
            DestinationMode::XApic => XApicId::try_from(cpu).ok().map(IrteDestination::XApic),
        }
    }

    /// The APIC ID named.
    pub fn apic_id(self) -> ApicId {
        match self {
            IrteDestination::XApic(id) => ApicId::new(id.get() as u32),
            IrteDestination::X2Apic(id) => id,
        }
    }
}

/// Which requests an IRTE accepts (SVT/SQ/SID, spec 9.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceValidation {
    /// SVT = 00: any requester may use the entry.
    None,
    /// SVT = 01, SQ = 00: only this exact requester id.
    Requester(SourceId),
    /// SVT = 10: requesters whose bus is in `first..=last` (devices behind a PCIe-to-PCI
    /// bridge arrive with the bridge's id or a bus in its range).
    BusRange {
        /// First bus.
        first: u8,
        /// Last bus.
        last: u8,
    },
}

/// One remapped-format IRTE: a fixed-delivery, physical-destination interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Irte {
    /// Vector delivered to the destination.
    pub vector: u8,
    /// Target CPU.
    pub destination: IrteDestination,
    /// Edge or level (level lines get a directed EOI back to the IOAPIC).
    pub trigger: TriggerMode,
    /// Which requesters may use the entry.
    pub source: SourceValidation,
}

/// Why an IRTE could not be built or decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrteError {
    /// Vectors 0-15 are illegal for fixed delivery.
    IllegalVector(u8),
    /// The entry is not present.
    NotPresent,
    /// Posted-interrupt format (IM = 1), which Keel never writes.
    Posted,
    /// Logical destination, redirection hint or a non-fixed delivery mode.
    NotFixedPhysical,
    /// Reserved bits are set.
    Reserved,
    /// The destination does not fit the table's mode (xAPIC mode, ID above 254 or 0xFF).
    Unreachable(u32),
}

impl Irte {
    /// Encodes the entry as (low, high) quadwords for a table in `mode`.
    pub fn encode(&self, mode: DestinationMode) -> Result<[u64; 2], IrteError> {
        let vector = check_vector(self.vector)?;
        let destination = match (mode, self.destination) {
            (DestinationMode::X2Apic, d) => (d.apic_id().get() as u64) << DESTINATION_SHIFT,
            (DestinationMode::XApic, IrteDestination::XApic(id)) => {
                (id.get() as u64) << XAPIC_DESTINATION_SHIFT
            }
            (DestinationMode::XApic, IrteDestination::X2Apic(id)) => {
                let id = XApicId::try_from(id).map_err(|_| IrteError::Unreachable(id.get()))?;
                (id.get() as u64) << XAPIC_DESTINATION_SHIFT
            }
        };
        let trigger = match self.trigger {
            TriggerMode::Edge => 0,
            TriggerMode::Level => TRIGGER_LEVEL,
        };
        let low = PRESENT | trigger | (vector as u64) << VECTOR_SHIFT | destination;
        let high = match self.source {
            SourceValidation::None => 0,
            SourceValidation::Requester(sid) => 1 << SVT_SHIFT | sid.0 as u64,
            SourceValidation::BusRange { first, last } => {
                2 << SVT_SHIFT | (first as u64) << 8 | last as u64
            }
        };
        Ok([low, high])
    }

    /// Decodes an entry read back from a table in `mode`.
    pub fn decode(raw: [u64; 2], mode: DestinationMode) -> Result<Self, IrteError> {
        let [low, high] = raw;
        if low & PRESENT == 0 {
            return Err(IrteError::NotPresent);
        }
        if low & IRTE_MODE_POSTED != 0 {
            return Err(IrteError::Posted);
        }
        if low & (DEST_MODE_LOGICAL | REDIRECTION_HINT) != 0 || (low >> DELIVERY_SHIFT) & 0x7 != 0 {
            return Err(IrteError::NotFixedPhysical);
        }
        if low & LOW_RESERVED != 0 || high & HIGH_RESERVED != 0 {
            return Err(IrteError::Reserved);
        }
        let vector = (low >> VECTOR_SHIFT) as u8;
        check_vector(vector)?;
        let destination = match mode {
            DestinationMode::X2Apic => {
                IrteDestination::X2Apic(ApicId::new((low >> DESTINATION_SHIFT) as u32))
            }
            DestinationMode::XApic => {
                if (low >> DESTINATION_SHIFT) & !0xFF00 != 0 {
                    return Err(IrteError::Reserved);
                }
                let raw = (low >> XAPIC_DESTINATION_SHIFT) as u8;
                IrteDestination::XApic(XApicId::new(raw).ok_or(IrteError::Unreachable(raw as u32))?)
            }
        };
        let source = match (high >> SVT_SHIFT) & 0x3 {
            0 => SourceValidation::None,
            1 if (high >> SQ_SHIFT) & 0x3 == 0 => {
                SourceValidation::Requester(SourceId(high as u16))
            }
            2 => SourceValidation::BusRange { first: (high >> 8) as u8, last: high as u8 },
            _ => return Err(IrteError::Reserved),
        };
        let trigger = if low & TRIGGER_LEVEL != 0 { TriggerMode::Level } else { TriggerMode::Edge };
        Ok(Irte { vector, destination, trigger, source })
    }
}

fn check_vector(vector: u8) -> Result<u8, IrteError> {
    if vector < keel_apic::MIN_FIXED_VECTOR {
        Err(IrteError::IllegalVector(vector))
    } else {
        Ok(vector)
    }
}

/// The entry that is not present (P = 0): what every unused slot holds. An interrupt that
/// indexes it is blocked and reported as fault reason 0x22.
pub const NOT_PRESENT: [u64; 2] = [0, 0];

/// Whether the fault-processing-disable bit is set (Keel never sets it: faults are evidence).
pub fn fault_processing_disabled(raw: [u64; 2]) -> bool {
    raw[0] & FAULT_PROCESSING_DISABLE != 0
}

/// Largest table the IRTA size field can describe (2^(15+1) entries).
pub const MAX_ENTRIES: u32 = 1 << 16;

/// How the table's indices are used: IOAPIC pins by GSI first (index = GSI, so a pin's
/// entry never moves), then one handle per MSI source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexPlan {
    /// GSIs covered (the highest IOAPIC GSI + 1).
    pub gsis: u32,
    /// MSI handles reserved after the GSIs.
    pub msi_handles: u32,
    /// Table entries: a power of two ≥ `gsis + msi_handles`, at least 256 (one 4-KiB page).
    pub entries: u32,
}

impl IndexPlan {
    /// Sizes the table for `gsis` IOAPIC inputs and `msi_handles` MSI sources; `None` when
    /// it would exceed the architectural 65,536 entries.
    pub fn new(gsis: u32, msi_handles: u32) -> Option<Self> {
        let needed = gsis.checked_add(msi_handles)?.max(256);
        let entries = needed.checked_next_power_of_two()?;
        (entries <= MAX_ENTRIES).then_some(IndexPlan { gsis, msi_handles, entries })
    }

    /// The IRTA size field S: the table holds 2^(S+1) entries (spec 10.4.29).
    pub fn size_field(&self) -> u8 {
        (self.entries.trailing_zeros() - 1) as u8
    }

    /// Bytes of table memory (16 per entry).
    pub fn bytes(&self) -> u64 {
        self.entries as u64 * 16
    }

    /// The index of an IOAPIC input.
    pub fn gsi_index(&self, gsi: u32) -> Option<u16> {
        (gsi < self.gsis).then_some(gsi as u16)
    }

    /// The index of the `n`-th MSI source.
    pub fn msi_index(&self, n: u32) -> Option<u16> {
        (n < self.msi_handles).then(|| (self.gsis + n) as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> ApicId {
        ApicId::new(n)
    }

    #[test]
    fn x2apic_mode_entry_carries_the_full_destination() {
        let e = Irte {
            vector: 0x51,
            destination: IrteDestination::for_mode(DestinationMode::X2Apic, id(257)).unwrap(),
            trigger: TriggerMode::Edge,
            source: SourceValidation::Requester(SourceId(0xFF00)),
        };
        let [low, high] = e.encode(DestinationMode::X2Apic).unwrap();
        assert_eq!(low, 0x0000_0101_0051_0001);
        assert_eq!(high, 0x0004_FF00);
        assert_eq!(Irte::decode([low, high], DestinationMode::X2Apic).unwrap(), e);
    }

    #[test]
    fn xapic_mode_entry_puts_the_id_in_bits_47_40() {
        let e = Irte {
            vector: 0x60,
            destination: IrteDestination::for_mode(DestinationMode::XApic, id(3)).unwrap(),
            trigger: TriggerMode::Level,
            source: SourceValidation::None,
        };
        let [low, high] = e.encode(DestinationMode::XApic).unwrap();
        assert_eq!(low, 0x0000_0300_0060_0011);
        assert_eq!(high, 0);
        assert_eq!(Irte::decode([low, high], DestinationMode::XApic).unwrap(), e);
    }

    #[test]
    fn xapic_mode_cannot_name_ids_above_254() {
        assert_eq!(IrteDestination::for_mode(DestinationMode::XApic, id(255)), None);
        assert_eq!(IrteDestination::for_mode(DestinationMode::XApic, id(257)), None);
        let e = Irte {
            vector: 0x60,
            destination: IrteDestination::X2Apic(id(257)),
            trigger: TriggerMode::Edge,
            source: SourceValidation::None,
        };
        assert_eq!(e.encode(DestinationMode::XApic), Err(IrteError::Unreachable(257)));
        assert_eq!(e.destination.apic_id(), id(257));
    }

    #[test]
    fn illegal_vectors_and_foreign_formats_are_refused() {
        let e = Irte {
            vector: 15,
            destination: IrteDestination::X2Apic(id(1)),
            trigger: TriggerMode::Edge,
            source: SourceValidation::None,
        };
        assert_eq!(e.encode(DestinationMode::X2Apic), Err(IrteError::IllegalVector(15)));
        let m = DestinationMode::X2Apic;
        assert_eq!(Irte::decode(NOT_PRESENT, m), Err(IrteError::NotPresent));
        assert_eq!(Irte::decode([1 | 1 << 15, 0], m), Err(IrteError::Posted));
        assert_eq!(Irte::decode([1 | 1 << 2 | 0x40 << 16, 0], m), Err(IrteError::NotFixedPhysical));
        assert_eq!(Irte::decode([1 | 1 << 5 | 0x40 << 16, 0], m), Err(IrteError::NotFixedPhysical));
        assert_eq!(Irte::decode([1 | 1 << 12 | 0x40 << 16, 0], m), Err(IrteError::Reserved));
        assert_eq!(Irte::decode([1 | 0x40 << 16, 1 << 40], m), Err(IrteError::Reserved));
        assert_eq!(Irte::decode([1 | 0x40 << 16, 3 << 18], m), Err(IrteError::Reserved));
        assert_eq!(
            Irte::decode([1 | 0x40 << 16 | 1 << 32, 0], DestinationMode::XApic),
            Err(IrteError::Reserved)
        );
        assert!(!fault_processing_disabled([1, 0]));
        assert!(fault_processing_disabled([3, 0]));
    }

    #[test]
    fn bus_range_validation_round_trips() {
        let e = Irte {
            vector: 0x70,
            destination: IrteDestination::X2Apic(id(0x1_0000)),
            trigger: TriggerMode::Edge,
            source: SourceValidation::BusRange { first: 2, last: 5 },
        };
        let raw = e.encode(DestinationMode::X2Apic).unwrap();
        assert_eq!(raw[1], 2 << 18 | 0x0205);
        assert_eq!(Irte::decode(raw, DestinationMode::X2Apic).unwrap(), e);
    }

    #[test]
    fn every_vector_and_destination_round_trips() {
        let mut rng = keel_testkit::XorShift(0x1427E);
        for _ in 0..20_000 {
            let vector = 16 + rng.below(240) as u8;
            let apic = rng.next() as u32;
            let trigger = if rng.below(2) == 0 { TriggerMode::Edge } else { TriggerMode::Level };
            let source = SourceValidation::Requester(SourceId(rng.next() as u16));
            for mode in [DestinationMode::XApic, DestinationMode::X2Apic] {
                let Some(destination) = IrteDestination::for_mode(mode, id(apic % 300)) else {
                    continue;
                };
                let e = Irte { vector, destination, trigger, source };
                assert_eq!(Irte::decode(e.encode(mode).unwrap(), mode).unwrap(), e);
            }
            let e =
                Irte { vector, destination: IrteDestination::X2Apic(id(apic)), trigger, source };
            assert_eq!(
                Irte::decode(e.encode(DestinationMode::X2Apic).unwrap(), DestinationMode::X2Apic)
                    .unwrap(),
                e
            );
        }
    }

    #[test]
    fn index_plan_sizes_the_table_for_the_machine() {
        let p = IndexPlan::new(24, 144).unwrap();
        assert_eq!(p.entries, 256);
        assert_eq!(p.size_field(), 7);
        assert_eq!(p.bytes(), 4096);
        assert_eq!(p.gsi_index(23), Some(23));
        assert_eq!(p.gsi_index(24), None);
        assert_eq!(p.msi_index(0), Some(24));
        assert_eq!(p.msi_index(143), Some(167));
        assert_eq!(p.msi_index(144), None);
        let big = IndexPlan::new(5 * 24 + 120, 300).unwrap();
        assert_eq!(big.entries, 1024);
        assert_eq!(big.size_field(), 9);
        assert_eq!(IndexPlan::new(65_000, 536).unwrap().entries, MAX_ENTRIES);
        assert_eq!(IndexPlan::new(65_000, 537), None);
        assert_eq!(IndexPlan::new(u32::MAX, 1), None);
    }
}
