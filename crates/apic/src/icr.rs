//! Typed inter-processor-interrupt builder and ICR encoders.
//!
//! Call sites say what they mean (`Ipi::startup(page).to(id)`) and the
//! encoders own every bit position. Encoding is fallible because several
//! combinations are architecturally invalid or unreachable, and a silently
//! truncated destination would interrupt the wrong CPU.

use crate::id::{ApicId, NotXApicAddressable, X2ApicCluster, XApicId};
use crate::mode::LapicMode;
use crate::signal::TriggerMode;

/// ICR low bit 12: "send pending" in xAPIC mode.
///
/// Read-only, not part of the x2APIC ICR (reserved there) and never set by
/// an encoder. Polled only where [`crate::delivery::DeliveryWait`] says so.
pub const ICR_DELIVERY_STATUS_PENDING: u32 = 1 << 12;

/// Bits of the 64-bit x2APIC ICR that software may set: vector (0-7),
/// delivery mode (8-10), destination mode (11), level (14), trigger (15),
/// shorthand (18-19) and destination (32-63). Everything else is reserved;
/// KVM and real parts #GP on a WRMSR that sets them.
pub const X2APIC_ICR_WRITABLE_MASK: u64 = 0xFFFF_FFFF_000C_CFFF;

/// Bits of xAPIC ICR low that software may set (same fields as the x2APIC
/// low half; bit 12 is the read-only delivery status).
pub const XAPIC_ICR_LOW_WRITABLE_MASK: u32 = 0x000C_CFFF;

/// Bits of xAPIC ICR high that software may set: the destination, 24-31.
pub const XAPIC_ICR_HIGH_WRITABLE_MASK: u32 = 0xFF00_0000;

pub(crate) const DELIVERY_MODE_SHIFT: u32 = 8;
/// ICR bit 11: destination mode, 1 = logical.
const DESTINATION_MODE_LOGICAL: u32 = 1 << 11;
const LEVEL_SHIFT: u32 = 14;
const TRIGGER_SHIFT: u32 = 15;
const SHORTHAND_SHIFT: u32 = 18;
const XAPIC_DESTINATION_SHIFT: u32 = 24;
const X2APIC_DESTINATION_SHIFT: u32 = 32;

/// ICR delivery mode (bits 8-10). Only the modes Keel sends are listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryMode {
    /// Deliver `vector` as a normal interrupt.
    Fixed,
    /// Non-maskable interrupt; the vector field is ignored (sent as 0).
    Nmi,
    /// INIT (assert or, on P6-era APICs, level de-assert).
    Init,
    /// Start-up IPI; the vector is the 4 KiB page number of the trampoline.
    StartUp,
}

impl DeliveryMode {
    /// The 3-bit field value.
    pub const fn bits(self) -> u32 {
        match self {
            DeliveryMode::Fixed => 0b000,
            DeliveryMode::Nmi => 0b100,
            DeliveryMode::Init => 0b101,
            DeliveryMode::StartUp => 0b110,
        }
    }
}

/// ICR level bit (14).
///
/// Must be `Assert` for everything except the INIT level de-assert message;
/// that is the only IPI with level 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Level {
    /// Bit 14 clear.
    Deassert,
    /// Bit 14 set.
    Assert,
}

/// ICR destination shorthand (bits 18-19).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shorthand {
    /// Use the destination field.
    None,
    /// The sending CPU only.
    ToSelf,
    /// Every CPU including the sender.
    AllIncludingSelf,
    /// Every CPU except the sender.
    AllExcludingSelf,
}

impl Shorthand {
    /// The 2-bit field value.
    pub const fn bits(self) -> u32 {
        match self {
            Shorthand::None => 0b00,
            Shorthand::ToSelf => 0b01,
            Shorthand::AllIncludingSelf => 0b10,
            Shorthand::AllExcludingSelf => 0b11,
        }
    }
}

/// Where an IPI goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Destination {
    /// One CPU, addressed by physical APIC ID (destination mode bit 11 = 0).
    Physical(ApicId),
    /// A shorthand; the destination field is left 0.
    Shorthand(Shorthand),
    /// Several CPUs of one x2APIC cluster (destination mode bit 11 = 1); x2APIC only.
    X2ApicLogical(X2ApicCluster),
}

/// An IPI message still missing its destination.
///
/// Produced by the [`Ipi`] constructors; the destination step turns it into
/// an [`Ipi`], so an IPI without a destination cannot be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpiMessage {
    pub(crate) delivery: DeliveryMode,
    vector: u8,
    level: Level,
    trigger: TriggerMode,
}

impl IpiMessage {
    /// Targets one CPU by physical APIC ID.
    pub const fn to(self, id: ApicId) -> Ipi {
        self.with(Destination::Physical(id))
    }

    /// Targets the members of one x2APIC cluster in one write (x2APIC mode only).
    pub const fn to_cluster(self, destination: X2ApicCluster) -> Ipi {
        self.with(Destination::X2ApicLogical(destination))
    }

    /// Targets the sending CPU (only valid for fixed IPIs).
    pub const fn to_self(self) -> Ipi {
        self.with(Destination::Shorthand(Shorthand::ToSelf))
    }

    /// Targets every CPU including the sender (only valid for fixed IPIs).
    pub const fn to_all(self) -> Ipi {
        self.with(Destination::Shorthand(Shorthand::AllIncludingSelf))
    }

    /// Targets every CPU except the sender.
    pub const fn to_all_but_self(self) -> Ipi {
        self.with(Destination::Shorthand(Shorthand::AllExcludingSelf))
    }

    const fn with(self, destination: Destination) -> Ipi {
        Ipi { message: self, destination }
    }
}

/// A complete inter-processor interrupt, ready to encode for either mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipi {
    message: IpiMessage,
    destination: Destination,
}

/// Why an [`Ipi`] cannot be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcrError {
    /// Fixed IPIs cannot use vectors 0-15 (the LAPIC flags them as illegal).
    IllegalVector(u8),
    /// xAPIC physical destinations are 8 bits and 0xFF is broadcast, so ids
    /// above 254 cannot be reached in xAPIC mode.
    DestinationUnreachableInXApic(ApicId),
    /// The SDM's valid-combination table allows the `Self` and
    /// `All Including Self` shorthands only with fixed delivery.
    ShorthandNotAllowed {
        /// The requested delivery mode.
        delivery: DeliveryMode,
        /// The requested shorthand.
        shorthand: Shorthand,
    },
    /// Logical cluster destinations exist only in x2APIC mode.
    LogicalNeedsX2Apic,
    /// Keel sends only fixed IPIs to logical destinations (INIT and SIPI go to one CPU by
    /// physical ID, NMI to all but self).
    LogicalNotFixed(DeliveryMode),
}

impl From<NotXApicAddressable> for IcrError {
    fn from(e: NotXApicAddressable) -> Self {
        IcrError::DestinationUnreachableInXApic(e.0)
    }
}

/// The two 32-bit halves of an xAPIC ICR.
///
/// The backend must write `high` first and `low` second: the write to ICR
/// low is what sends the IPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XApicIcr {
    /// ICR high (offset 0x310): destination in bits 24-31.
    pub high: u32,
    /// ICR low (offset 0x300): vector, delivery mode, level, trigger, shorthand.
    pub low: u32,
}

impl XApicIcr {
    /// The 64-bit view used by the SDM (destination in bits 56-63).
    pub const fn as_u64(self) -> u64 {
        ((self.high as u64) << 32) | self.low as u64
    }
}

/// An encoded ICR in the format of one specific mode, handed to
/// [`crate::lapic::LapicRegisters::write_icr`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IcrValue {
    /// xAPIC: write `high` (0x310), then `low` (0x300).
    XApic {
        /// ICR high, destination in bits 24-31.
        high: u32,
        /// ICR low; writing it sends the IPI.
        low: u32,
    },
    /// x2APIC: one WRMSR to 0x830 (after `mfence; lfence`).
    X2Apic(u64),
}

impl From<XApicIcr> for IcrValue {
    fn from(icr: XApicIcr) -> Self {
        IcrValue::XApic { high: icr.high, low: icr.low }
    }
}

impl Ipi {
    /// A normal interrupt with `vector` (must be >= 16, checked at encode).
    pub const fn fixed(vector: u8) -> IpiMessage {
        IpiMessage {
            delivery: DeliveryMode::Fixed,
            vector,
            level: Level::Assert,
            trigger: TriggerMode::Edge,
        }
    }

    /// A non-maskable interrupt (vector field sent as 0).
    pub const fn nmi() -> IpiMessage {
        IpiMessage {
            delivery: DeliveryMode::Nmi,
            vector: 0,
            level: Level::Assert,
            trigger: TriggerMode::Edge,
        }
    }

    /// INIT assert: resets the target into wait-for-SIPI.
    pub const fn init_assert() -> IpiMessage {
        IpiMessage {
            delivery: DeliveryMode::Init,
            vector: 0,
            level: Level::Assert,
            trigger: TriggerMode::Edge,
        }
    }

    /// INIT level de-assert (level 0, level-triggered).
    ///
    /// Only P6-era external APICs need it; Pentium 4 and later ignore it, so
    /// the AP start-up sequence may omit it. It is the only IPI with level 0.
    pub const fn init_deassert() -> IpiMessage {
        IpiMessage {
            delivery: DeliveryMode::Init,
            vector: 0,
            level: Level::Deassert,
            trigger: TriggerMode::Level,
        }
    }

    /// Start-up IPI: the AP begins real-mode execution at `page * 4096`, so
    /// the trampoline must sit on a 4 KiB page below 1 MiB (a `u8` page
    /// number guarantees that).
    pub const fn startup(page: u8) -> IpiMessage {
        IpiMessage {
            delivery: DeliveryMode::StartUp,
            vector: page,
            level: Level::Assert,
            trigger: TriggerMode::Edge,
        }
    }

    /// The delivery mode.
    pub const fn delivery(&self) -> DeliveryMode {
        self.message.delivery
    }

    /// The vector field (SIPI: page number; NMI/INIT: 0).
    pub const fn vector(&self) -> u8 {
        self.message.vector
    }

    /// The level bit.
    pub const fn level(&self) -> Level {
        self.message.level
    }

    /// The trigger mode bit.
    pub const fn trigger(&self) -> TriggerMode {
        self.message.trigger
    }

    /// The destination.
    pub const fn destination(&self) -> Destination {
        self.destination
    }

    fn validate(&self) -> Result<(), IcrError> {
        let delivery = self.message.delivery;
        if delivery == DeliveryMode::Fixed {
            crate::check_fixed_vector(self.message.vector).map_err(IcrError::IllegalVector)?;
        }
        if matches!(self.destination, Destination::X2ApicLogical(_))
            && delivery != DeliveryMode::Fixed
        {
            return Err(IcrError::LogicalNotFixed(delivery));
        }
        if let Destination::Shorthand(
            shorthand @ (Shorthand::ToSelf | Shorthand::AllIncludingSelf),
        ) = self.destination
        {
            if delivery != DeliveryMode::Fixed {
                return Err(IcrError::ShorthandNotAllowed { delivery, shorthand });
            }
        }
        Ok(())
    }

    /// The 32 "command" bits shared by both formats (no destination, no
    /// delivery status).
    fn command_bits(&self) -> u32 {
        let m = &self.message;
        let level = match m.level {
            Level::Assert => 1,
            Level::Deassert => 0,
        };
        let (shorthand, destination_mode) = match self.destination {
            Destination::Physical(_) => (Shorthand::None, 0),
            Destination::Shorthand(s) => (s, 0),
            Destination::X2ApicLogical(_) => (Shorthand::None, DESTINATION_MODE_LOGICAL),
        };
        u32::from(m.vector)
            | m.delivery.bits() << DELIVERY_MODE_SHIFT
            | destination_mode
            | level << LEVEL_SHIFT
            | m.trigger.bit() << TRIGGER_SHIFT
            | shorthand.bits() << SHORTHAND_SHIFT
    }

    /// Encodes for xAPIC: destination in ICR high bits 24-31 (bits 56-63 of
    /// the 64-bit view). Ids > 254 are an error, never truncated.
    pub fn encode_xapic(&self) -> Result<XApicIcr, IcrError> {
        self.validate()?;
        let high = match self.destination {
            Destination::Physical(id) => {
                u32::from(XApicId::try_from(id)?.get()) << XAPIC_DESTINATION_SHIFT
            }
            Destination::Shorthand(_) => 0,
            Destination::X2ApicLogical(_) => return Err(IcrError::LogicalNeedsX2Apic),
        };
        Ok(XApicIcr { high, low: self.command_bits() })
    }

    /// Encodes for x2APIC: destination in bits 32-63, no delivery-status
    /// bit and no reserved bit set.
    pub fn encode_x2apic(&self) -> Result<u64, IcrError> {
        self.validate()?;
        let destination = match self.destination {
            Destination::Physical(id) => u64::from(id.get()) << X2APIC_DESTINATION_SHIFT,
            Destination::Shorthand(_) => 0,
            Destination::X2ApicLogical(c) => u64::from(c.raw()) << X2APIC_DESTINATION_SHIFT,
        };
        let value = destination | u64::from(self.command_bits());
        debug_assert!(value & !X2APIC_ICR_WRITABLE_MASK == 0);
        Ok(value)
    }

    /// Encodes in the format of `mode`.
    pub fn encode(&self, mode: LapicMode) -> Result<IcrValue, IcrError> {
        match mode {
            LapicMode::XApic => self.encode_xapic().map(IcrValue::from),
            LapicMode::X2Apic => self.encode_x2apic().map(IcrValue::X2Apic),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEVEL_BIT: u32 = 1 << 14;
    const TRIGGER_LEVEL_BIT: u32 = 1 << 15;

    fn all_messages() -> [IpiMessage; 5] {
        [Ipi::fixed(0x40), Ipi::nmi(), Ipi::init_assert(), Ipi::init_deassert(), Ipi::startup(8)]
    }

    #[test]
    fn cluster_ipi_sets_logical_mode_and_the_cluster_bitmap() {
        let a = X2ApicCluster::of_apic_id(ApicId::new(1));
        let b = X2ApicCluster::of_apic_id(ApicId::new(3));
        let both = a.join(b).unwrap();
        let icr = Ipi::fixed(0x32).to_cluster(both).encode_x2apic().unwrap();
        assert_eq!(
            icr, 0x0000_000A_0000_4832,
            "logical (bit 11), level assert (bit 14), vector 0x32"
        );
        assert_eq!(icr & !X2APIC_ICR_WRITABLE_MASK, 0);
        // APIC ID 257 = cluster 16, member 1.
        let far = X2ApicCluster::of_apic_id(ApicId::new(257));
        assert_eq!(far.raw(), 0x0010_0002);
        assert_eq!(a.join(far), None, "different clusters never merge");
        assert_eq!(Ipi::fixed(0x32).to_cluster(far).encode_x2apic().unwrap() >> 32, 0x0010_0002);
    }

    #[test]
    fn cluster_ipis_are_x2apic_only_and_fixed_only() {
        let c = X2ApicCluster::of_apic_id(ApicId::new(2));
        assert_eq!(
            Ipi::fixed(0x32).to_cluster(c).encode_xapic(),
            Err(IcrError::LogicalNeedsX2Apic)
        );
        assert_eq!(
            Ipi::nmi().to_cluster(c).encode_x2apic(),
            Err(IcrError::LogicalNotFixed(DeliveryMode::Nmi))
        );
        assert_eq!(
            Ipi::init_assert().to_cluster(c).encode(LapicMode::X2Apic),
            Err(IcrError::LogicalNotFixed(DeliveryMode::Init))
        );
    }

    #[test]
    fn ldr_values_name_exactly_one_member() {
        assert_eq!(
            X2ApicCluster::from_ldr(0x0001_0004),
            Some(X2ApicCluster::of_apic_id(ApicId::new(18)))
        );
        assert_eq!(X2ApicCluster::from_ldr(0x0001_0006), None);
        assert_eq!(X2ApicCluster::from_ldr(0x0001_0000), None);
        for id in [0u32, 1, 15, 16, 255, 257, 0xF_FFFF] {
            let c = X2ApicCluster::of_apic_id(ApicId::new(id));
            assert_eq!(X2ApicCluster::from_ldr(c.raw()), Some(c));
            assert_eq!(u32::from(c.cluster()), id >> 4);
            assert_eq!(c.members(), 1 << (id & 0xF));
        }
    }

    #[test]
    fn fixed_xapic_destination_goes_to_high_bits_24_to_31() {
        let icr = Ipi::fixed(0x40).to(ApicId::new(3)).encode_xapic().unwrap();
        assert_eq!(icr.high, 0x0300_0000);
        assert_eq!(icr.low, 0x0000_4040); // vector | level assert
        assert_eq!(icr.as_u64() >> 56, 3);
    }

    #[test]
    fn xapic_destination_254_is_the_highest_reachable() {
        let icr = Ipi::fixed(0x40).to(ApicId::new(254)).encode_xapic().unwrap();
        assert_eq!(icr.high, 0xFE00_0000);
        assert_eq!(
            Ipi::fixed(0x40).to(ApicId::new(255)).encode_xapic(),
            Err(IcrError::DestinationUnreachableInXApic(ApicId::new(255)))
        );
        // 257 would truncate to 1 with `as u8`: must fail instead.
        assert_eq!(
            Ipi::fixed(0x40).to(ApicId::new(257)).encode_xapic(),
            Err(IcrError::DestinationUnreachableInXApic(ApicId::new(257)))
        );
    }

    #[test]
    fn x2apic_destination_goes_to_bits_32_to_63() {
        let icr = Ipi::fixed(0x40).to(ApicId::new(257)).encode_x2apic().unwrap();
        assert_eq!(icr >> 32, 257);
        assert_eq!(icr as u32, 0x0000_4040);
        let icr = Ipi::fixed(0x40).to(ApicId::new(0xFFFF_FFFE)).encode_x2apic().unwrap();
        assert_eq!(icr >> 32, 0xFFFF_FFFE);
    }

    #[test]
    fn x2apic_never_sets_delivery_status_or_reserved_bits() {
        for message in all_messages() {
            for ipi in [
                message.to(ApicId::new(0xFFFF_FFFE)),
                message.to_all_but_self(),
                message.to(ApicId::new(1)),
            ] {
                let icr = ipi.encode_x2apic().unwrap();
                assert_eq!(icr & u64::from(ICR_DELIVERY_STATUS_PENDING), 0, "{ipi:?}");
                assert_eq!(icr & !X2APIC_ICR_WRITABLE_MASK, 0, "{ipi:?}");
            }
        }
    }

    #[test]
    fn xapic_never_sets_delivery_status_or_reserved_bits() {
        for message in all_messages() {
            let icr = message.to(ApicId::new(254)).encode_xapic().unwrap();
            assert_eq!(icr.low & ICR_DELIVERY_STATUS_PENDING, 0);
            assert_eq!(icr.low & !XAPIC_ICR_LOW_WRITABLE_MASK, 0);
            assert_eq!(icr.high & !XAPIC_ICR_HIGH_WRITABLE_MASK, 0);
        }
    }

    #[test]
    fn fixed_vectors_below_16_are_rejected() {
        for v in 0..16 {
            assert_eq!(
                Ipi::fixed(v).to(ApicId::new(1)).encode_x2apic(),
                Err(IcrError::IllegalVector(v))
            );
            assert_eq!(Ipi::fixed(v).to_self().encode_xapic(), Err(IcrError::IllegalVector(v)));
        }
        assert!(Ipi::fixed(16).to(ApicId::new(1)).encode_x2apic().is_ok());
        assert!(Ipi::fixed(255).to(ApicId::new(1)).encode_x2apic().is_ok());
    }

    #[test]
    fn init_deassert_is_the_only_level_zero_ipi() {
        for message in all_messages() {
            let low = message.to(ApicId::new(1)).encode_xapic().unwrap().low;
            let is_deassert = message == Ipi::init_deassert();
            assert_eq!(low & LEVEL_BIT == 0, is_deassert, "{message:?}");
        }
        let low = Ipi::init_deassert().to(ApicId::new(1)).encode_xapic().unwrap().low;
        assert_eq!(low, 0x0000_8500); // INIT, level 0, trigger level
        assert_ne!(low & TRIGGER_LEVEL_BIT, 0);
    }

    #[test]
    fn init_assert_and_sipi_encodings() {
        let init = Ipi::init_assert().to(ApicId::new(2)).encode_xapic().unwrap();
        assert_eq!(init, XApicIcr { high: 0x0200_0000, low: 0x0000_4500 });
        assert_eq!(Ipi::startup(0x08).to(ApicId::new(2)).vector(), 0x08);
        assert_eq!(Ipi::fixed(0x31).to(ApicId::new(2)).vector(), 0x31);
        let sipi = Ipi::startup(0x08).to(ApicId::new(2)).encode_xapic().unwrap();
        assert_eq!(sipi, XApicIcr { high: 0x0200_0000, low: 0x0000_4608 });
        let sipi = Ipi::startup(0x9F).to(ApicId::new(300)).encode_x2apic().unwrap();
        assert_eq!(sipi, (300u64 << 32) | 0x469F);
    }

    #[test]
    fn nmi_encoding_has_zero_vector() {
        let nmi = Ipi::nmi().to(ApicId::new(5)).encode_x2apic().unwrap();
        assert_eq!(nmi, (5u64 << 32) | 0x4400);
    }

    #[test]
    fn shorthands_encode_bits_18_19_and_leave_destination_zero() {
        assert_eq!(
            Ipi::fixed(0x30).to_self().encode_xapic().unwrap(),
            XApicIcr { high: 0, low: 0x0004_4030 }
        );
        assert_eq!(Ipi::fixed(0x30).to_all().encode_xapic().unwrap().low, 0x0008_4030);
        assert_eq!(Ipi::fixed(0x30).to_all_but_self().encode_x2apic().unwrap(), 0x000C_4030);
        assert_eq!(Ipi::init_assert().to_all_but_self().encode_x2apic().unwrap(), 0x000C_4500);
    }

    #[test]
    fn self_and_all_including_self_only_allow_fixed() {
        for message in [Ipi::nmi(), Ipi::init_assert(), Ipi::startup(1)] {
            assert!(matches!(
                message.to_self().encode_x2apic(),
                Err(IcrError::ShorthandNotAllowed { .. })
            ));
            assert!(matches!(
                message.to_all().encode_xapic(),
                Err(IcrError::ShorthandNotAllowed { .. })
            ));
            assert!(message.to_all_but_self().encode_xapic().is_ok());
        }
    }

    #[test]
    fn encode_picks_format_by_mode() {
        let ipi = Ipi::fixed(0x50).to(ApicId::new(7));
        assert_eq!(
            ipi.encode(LapicMode::XApic),
            Ok(IcrValue::XApic { high: 0x0700_0000, low: 0x4050 })
        );
        assert_eq!(ipi.encode(LapicMode::X2Apic), Ok(IcrValue::X2Apic((7 << 32) | 0x4050)));
    }

    #[test]
    fn both_formats_share_the_low_command_bits() {
        for message in all_messages() {
            let ipi = message.to(ApicId::new(9));
            assert_eq!(ipi.encode_xapic().unwrap().low, ipi.encode_x2apic().unwrap() as u32);
        }
    }
}
