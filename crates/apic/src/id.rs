//! APIC identifiers.
//!
//! APIC IDs are sparse hardware topology values (package/core/SMT fields), not
//! dense CPU indices; the kernel keeps its own index→id map. Two newtypes keep
//! the 32-bit x2APIC space and the 8-bit xAPIC space apart so that narrowing
//! is always a checked [`TryFrom`], never an `as u8`.

use crate::mode::LapicMode;

/// A local APIC ID as the hardware reports it (full 32 bits in x2APIC mode).
///
/// Deliberately not an index: ids can have holes (e.g. 0, 2, 4, ... on SMT-off
/// parts) and exceed the CPU count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApicId(u32);

impl ApicId {
    /// Wraps a raw 32-bit APIC ID (e.g. from the MADT x2APIC entry or CPUID.0BH).
    pub const fn new(raw: u32) -> Self {
        ApicId(raw)
    }

    /// The raw 32-bit value.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// Decodes the local APIC ID register as read in `mode`.
    ///
    /// The xAPIC ID register keeps the 8-bit id in bits 24-31 (the low bits
    /// are reserved); the x2APIC ID MSR (0x802) is the whole 32-bit id.
    /// Forgetting the `>> 24` is a classic bug that makes every CPU look like
    /// CPU 0 or a huge id, hence this single decoding point.
    pub const fn from_id_register(raw: u32, mode: LapicMode) -> Self {
        match mode {
            LapicMode::XApic => ApicId(raw >> XAPIC_ID_SHIFT),
            LapicMode::X2Apic => ApicId(raw),
        }
    }
}

impl core::fmt::Display for ApicId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "apic#{}", self.0)
    }
}

/// Bit position of the 8-bit id inside the xAPIC ID register.
pub const XAPIC_ID_SHIFT: u32 = 24;

/// An APIC ID that an xAPIC-format destination field (ICR high bits 24-31,
/// IOAPIC RTE bits 56-63, MSI address bits 12-19) can name individually.
///
/// Only 0..=254 qualify: 0xFF is the xAPIC broadcast destination, so an id of
/// 255 can never be targeted on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct XApicId(u8);

impl XApicId {
    /// Largest individually addressable xAPIC id.
    pub const MAX: u8 = 254;
    /// The xAPIC broadcast destination; not a valid individual target.
    pub const BROADCAST: u8 = 0xFF;

    /// Returns the id if it is individually addressable (not 0xFF).
    pub const fn new(raw: u8) -> Option<Self> {
        if raw <= Self::MAX {
            Some(XApicId(raw))
        } else {
            None
        }
    }

    /// The raw 8-bit value.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// The value of an xAPIC ID register holding this id (`id << 24`).
    ///
    /// Used by the fake LAPIC and by tests; real hardware sets the register.
    pub const fn to_id_register(self) -> u32 {
        (self.0 as u32) << XAPIC_ID_SHIFT
    }
}

/// Why an [`ApicId`] cannot be used where an 8-bit xAPIC destination is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotXApicAddressable(pub ApicId);

impl TryFrom<ApicId> for XApicId {
    type Error = NotXApicAddressable;

    /// Narrows a 32-bit id; fails for ids > 254 instead of truncating.
    fn try_from(id: ApicId) -> Result<Self, Self::Error> {
        match u8::try_from(id.get()) {
            Ok(raw) => XApicId::new(raw).ok_or(NotXApicAddressable(id)),
            Err(_) => Err(NotXApicAddressable(id)),
        }
    }
}

impl From<XApicId> for ApicId {
    fn from(id: XApicId) -> Self {
        ApicId(u32::from(id.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xapic_id_register_decodes_bits_24_to_31() {
        assert_eq!(ApicId::from_id_register(0x0300_0000, LapicMode::XApic), ApicId::new(3));
        // Reserved low bits must not leak into the id.
        assert_eq!(ApicId::from_id_register(0x0300_00FF, LapicMode::XApic), ApicId::new(3));
        assert_eq!(ApicId::from_id_register(0xFE00_0000, LapicMode::XApic), ApicId::new(0xFE));
    }

    #[test]
    fn display_names_the_id() {
        assert_eq!(format!("{}", ApicId::new(257)), "apic#257");
    }

    #[test]
    fn x2apic_id_register_is_full_32_bits() {
        assert_eq!(ApicId::from_id_register(0x0000_0101, LapicMode::X2Apic), ApicId::new(257));
        assert_eq!(ApicId::from_id_register(0xFFFF_FFFE, LapicMode::X2Apic).get(), 0xFFFF_FFFE);
    }

    #[test]
    fn xapic_id_narrowing_rejects_255_and_above() {
        assert_eq!(XApicId::try_from(ApicId::new(0)).unwrap().get(), 0);
        assert_eq!(XApicId::try_from(ApicId::new(254)).unwrap().get(), 254);
        assert_eq!(XApicId::try_from(ApicId::new(255)), Err(NotXApicAddressable(ApicId::new(255))));
        // 256 would truncate to 0 with `as u8`: must be an error instead.
        assert!(XApicId::try_from(ApicId::new(256)).is_err());
        assert!(XApicId::try_from(ApicId::new(257)).is_err());
        assert!(XApicId::new(XApicId::BROADCAST).is_none());
    }

    #[test]
    fn xapic_id_round_trips_through_id_register() {
        for raw in 0..=XApicId::MAX {
            let id = XApicId::new(raw).unwrap();
            assert_eq!(
                ApicId::from_id_register(id.to_id_register(), LapicMode::XApic),
                ApicId::from(id)
            );
        }
    }
}

/// An x2APIC logical destination in cluster mode: a cluster number (bits 31-16) and a bitmap
/// of up to 16 of its members (bits 15-0). One ICR write reaches every member named.
///
/// Each CPU's own logical ID is its read-only LDR (MSR 0x80D), architecturally
/// `(x2APIC ID >> 4) << 16 | 1 << (x2APIC ID & 0xF)` (SDM vol. 3, "Deriving Logical x2APIC ID
/// from the Local x2APIC ID"). There is no xAPIC form: xAPIC logical mode needs the LDR/DFR
/// programmed, which Keel does not do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct X2ApicCluster {
    cluster: u16,
    members: u16,
}

impl X2ApicCluster {
    /// The logical ID an x2APIC derives from `id`.
    pub const fn of_apic_id(id: ApicId) -> X2ApicCluster {
        X2ApicCluster { cluster: (id.get() >> 4) as u16, members: 1 << (id.get() & 0xF) }
    }

    /// A CPU's own LDR value; `None` unless exactly one member bit is set (a CPU names one
    /// member: anything else is not an LDR).
    pub const fn from_ldr(ldr: u32) -> Option<X2ApicCluster> {
        let members = ldr as u16;
        if members.count_ones() != 1 {
            return None;
        }
        Some(X2ApicCluster { cluster: (ldr >> 16) as u16, members })
    }

    /// The cluster number.
    pub const fn cluster(self) -> u16 {
        self.cluster
    }

    /// The member bitmap.
    pub const fn members(self) -> u16 {
        self.members
    }

    /// This destination plus `other`'s members; `None` if `other` is in another cluster.
    pub const fn join(self, other: X2ApicCluster) -> Option<X2ApicCluster> {
        if self.cluster != other.cluster {
            return None;
        }
        Some(X2ApicCluster { cluster: self.cluster, members: self.members | other.members })
    }

    /// The 32-bit destination field.
    pub const fn raw(self) -> u32 {
        (self.cluster as u32) << 16 | self.members as u32
    }
}
