//! Local vector table entries and the other small LAPIC register values
//! (spurious vector, divide configuration, error status, version).
//!
//! Each type has `encode()`/`decode()` so call sites never shift bits.

use crate::signal::{Polarity, TriggerMode};

/// LVT mask bit (16): a masked entry never delivers.
pub const LVT_MASKED: u32 = 1 << 16;
/// LVT delivery-status bit (12), read-only; never set by an encoder.
pub const LVT_DELIVERY_PENDING: u32 = 1 << 12;
/// LVT LINT remote-IRR bit (14), read-only; never set by an encoder.
pub const LVT_REMOTE_IRR: u32 = 1 << 14;
/// An LVT value that is masked with everything else zero: the safe "off" state.
pub const LVT_MASKED_ONLY: u32 = LVT_MASKED;

const VECTOR_MASK: u32 = 0xFF;
const DELIVERY_SHIFT: u32 = 8;
const POLARITY_SHIFT: u32 = 13;
const TRIGGER_SHIFT: u32 = 15;
const TIMER_MODE_SHIFT: u32 = 17;

/// Why a raw register value could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// LVT timer mode 0b11 is reserved.
    ReservedTimerMode,
    /// A LINT delivery mode Keel does not use (SMI, INIT) or a reserved one.
    UnsupportedDeliveryMode(u32),
}

/// LVT timer mode (bits 17-18).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimerMode {
    /// Count down once from the initial count.
    OneShot,
    /// Reload the initial count on every expiry.
    Periodic,
    /// Fire when the TSC reaches `IA32_TSC_DEADLINE` (needs `CPUID.01H:ECX[24]`).
    TscDeadline,
}

impl TimerMode {
    const fn bits(self) -> u32 {
        match self {
            TimerMode::OneShot => 0b00,
            TimerMode::Periodic => 0b01,
            TimerMode::TscDeadline => 0b10,
        }
    }
}

/// The LVT timer entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LvtTimer {
    /// Interrupt vector (>= 16).
    pub vector: u8,
    /// Counting mode.
    pub mode: TimerMode,
    /// Whether expiries are suppressed.
    pub masked: bool,
}

impl LvtTimer {
    /// Register value.
    pub const fn encode(self) -> u32 {
        self.vector as u32 | self.mode.bits() << TIMER_MODE_SHIFT | mask_bit(self.masked)
    }

    /// Decodes a register value (read-only status bits are ignored).
    pub const fn decode(raw: u32) -> Result<Self, DecodeError> {
        let mode = match (raw >> TIMER_MODE_SHIFT) & 0b11 {
            0b00 => TimerMode::OneShot,
            0b01 => TimerMode::Periodic,
            0b10 => TimerMode::TscDeadline,
            _ => return Err(DecodeError::ReservedTimerMode),
        };
        Ok(LvtTimer { vector: (raw & VECTOR_MASK) as u8, mode, masked: raw & LVT_MASKED != 0 })
    }
}

/// Delivery modes Keel uses on the LINT0/LINT1 pins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LocalDeliveryMode {
    /// Deliver `vector`.
    Fixed,
    /// Deliver as NMI (vector ignored; the pin must be edge-triggered).
    Nmi,
    /// Legacy 8259 virtual-wire mode: the PIC supplies the vector.
    ExtInt,
}

impl LocalDeliveryMode {
    const fn bits(self) -> u32 {
        match self {
            LocalDeliveryMode::Fixed => 0b000,
            LocalDeliveryMode::Nmi => 0b100,
            LocalDeliveryMode::ExtInt => 0b111,
        }
    }
}

/// An LVT LINT0/LINT1 entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LvtLocal {
    /// Delivery mode.
    pub delivery: LocalDeliveryMode,
    /// Vector (only meaningful for `Fixed`; sent as 0 otherwise).
    pub vector: u8,
    /// Pin polarity.
    pub polarity: Polarity,
    /// Pin trigger mode (NMI and ExtINT are always edge per the SDM).
    pub trigger: TriggerMode,
    /// Whether the pin is ignored.
    pub masked: bool,
}

impl LvtLocal {
    /// A masked pin: Keel's default for LINT0 (the legacy PIC is not used).
    pub const fn masked() -> Self {
        LvtLocal {
            delivery: LocalDeliveryMode::Fixed,
            vector: 0,
            polarity: Polarity::ActiveHigh,
            trigger: TriggerMode::Edge,
            masked: true,
        }
    }

    /// The conventional LINT1 wiring: unmasked NMI, edge, active high.
    pub const fn nmi() -> Self {
        LvtLocal {
            delivery: LocalDeliveryMode::Nmi,
            vector: 0,
            polarity: Polarity::ActiveHigh,
            trigger: TriggerMode::Edge,
            masked: false,
        }
    }

    /// Register value. The vector field is zeroed for NMI/ExtINT.
    pub const fn encode(self) -> u32 {
        let vector = match self.delivery {
            LocalDeliveryMode::Fixed => self.vector as u32,
            _ => 0,
        };
        vector
            | self.delivery.bits() << DELIVERY_SHIFT
            | self.polarity.bit() << POLARITY_SHIFT
            | self.trigger.bit() << TRIGGER_SHIFT
            | mask_bit(self.masked)
    }

    /// Decodes a register value (read-only status bits are ignored).
    pub const fn decode(raw: u32) -> Result<Self, DecodeError> {
        let delivery = match (raw >> DELIVERY_SHIFT) & 0b111 {
            0b000 => LocalDeliveryMode::Fixed,
            0b100 => LocalDeliveryMode::Nmi,
            0b111 => LocalDeliveryMode::ExtInt,
            other => return Err(DecodeError::UnsupportedDeliveryMode(other)),
        };
        Ok(LvtLocal {
            delivery,
            vector: (raw & VECTOR_MASK) as u8,
            polarity: Polarity::from_bit(raw >> POLARITY_SHIFT),
            trigger: TriggerMode::from_bit(raw >> TRIGGER_SHIFT),
            masked: raw & LVT_MASKED != 0,
        })
    }
}

/// The LVT error entry: where APIC errors (ESR) are signalled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LvtError {
    /// Interrupt vector (>= 16).
    pub vector: u8,
    /// Whether error interrupts are suppressed.
    pub masked: bool,
}

impl LvtError {
    /// Register value.
    pub const fn encode(self) -> u32 {
        self.vector as u32 | mask_bit(self.masked)
    }

    /// Decodes a register value.
    pub const fn decode(raw: u32) -> Self {
        LvtError { vector: (raw & VECTOR_MASK) as u8, masked: raw & LVT_MASKED != 0 }
    }
}

const fn mask_bit(masked: bool) -> u32 {
    if masked {
        LVT_MASKED
    } else {
        0
    }
}

/// Timer divide configuration.
///
/// The divider is encoded in bits 0, 1 and 3 (bit 2 is reserved): the value
/// `(bit3 bit1 bit0)` selects 2^(value+1), with 0b111 meaning divide by 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerDivide {
    /// Divide by 1.
    By1,
    /// Divide by 2.
    By2,
    /// Divide by 4.
    By4,
    /// Divide by 8.
    By8,
    /// Divide by 16.
    By16,
    /// Divide by 32.
    By32,
    /// Divide by 64.
    By64,
    /// Divide by 128.
    By128,
}

impl TimerDivide {
    /// All dividers from finest (1) to coarsest (128).
    pub const ALL: [TimerDivide; 8] = [
        TimerDivide::By1,
        TimerDivide::By2,
        TimerDivide::By4,
        TimerDivide::By8,
        TimerDivide::By16,
        TimerDivide::By32,
        TimerDivide::By64,
        TimerDivide::By128,
    ];

    /// The bus-clock divisor.
    pub const fn divisor(self) -> u32 {
        match self {
            TimerDivide::By1 => 1,
            TimerDivide::By2 => 2,
            TimerDivide::By4 => 4,
            TimerDivide::By8 => 8,
            TimerDivide::By16 => 16,
            TimerDivide::By32 => 32,
            TimerDivide::By64 => 64,
            TimerDivide::By128 => 128,
        }
    }

    /// The divider for `divisor`, if it is a supported power of two.
    pub const fn from_divisor(divisor: u32) -> Option<Self> {
        let mut i = 0;
        while i < Self::ALL.len() {
            if Self::ALL[i].divisor() == divisor {
                return Some(Self::ALL[i]);
            }
            i += 1;
        }
        None
    }

    /// Divide configuration register value (bits 0, 1, 3).
    pub const fn encode(self) -> u32 {
        // 3-bit selector: divisor 2^(n+1) for n in 0..=6, 0b111 for 1.
        let selector = match self {
            TimerDivide::By1 => 0b111,
            other => other.divisor().trailing_zeros() - 1,
        };
        (selector & 0b011) | ((selector & 0b100) << 1)
    }

    /// Decodes a divide configuration register value (bit 2 and bits above 3
    /// are ignored).
    pub const fn decode(raw: u32) -> Self {
        let selector = (raw & 0b011) | ((raw >> 1) & 0b100);
        if selector == 0b111 {
            TimerDivide::By1
        } else {
            Self::ALL[selector as usize + 1]
        }
    }
}

/// The spurious-interrupt vector register (SVR).
///
/// The spurious vector is delivered when an interrupt is withdrawn before
/// acceptance. It does not set an ISR bit, so its handler must **not** EOI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpuriousVector {
    /// Spurious vector (conventionally 0xFF; low nibble must be 0xF on P6).
    pub vector: u8,
    /// Bit 8: APIC software enable. While clear, LVT mask bits are stuck at 1.
    pub apic_software_enabled: bool,
    /// Bit 9: disable focus-processor checking (lowest-priority delivery).
    pub focus_check_disabled: bool,
    /// Bit 12: suppress EOI broadcast to IOAPICs for level interrupts.
    pub eoi_broadcast_suppression: bool,
}

/// SVR bit 8.
pub const SVR_APIC_SOFTWARE_ENABLE: u32 = 1 << 8;
/// SVR bit 9.
pub const SVR_FOCUS_CHECK_DISABLE: u32 = 1 << 9;
/// SVR bit 12.
pub const SVR_EOI_BROADCAST_SUPPRESSION: u32 = 1 << 12;

impl SpuriousVector {
    /// Register value.
    pub const fn encode(self) -> u32 {
        let mut raw = self.vector as u32;
        if self.apic_software_enabled {
            raw |= SVR_APIC_SOFTWARE_ENABLE;
        }
        if self.focus_check_disabled {
            raw |= SVR_FOCUS_CHECK_DISABLE;
        }
        if self.eoi_broadcast_suppression {
            raw |= SVR_EOI_BROADCAST_SUPPRESSION;
        }
        raw
    }

    /// Decodes a register value.
    pub const fn decode(raw: u32) -> Self {
        SpuriousVector {
            vector: (raw & VECTOR_MASK) as u8,
            apic_software_enabled: raw & SVR_APIC_SOFTWARE_ENABLE != 0,
            focus_check_disabled: raw & SVR_FOCUS_CHECK_DISABLE != 0,
            eoi_broadcast_suppression: raw & SVR_EOI_BROADCAST_SUPPRESSION != 0,
        }
    }
}

/// Decoded error status register (ESR).
///
/// The ESR latches on a write: software writes (0) and then reads, and the
/// read returns errors logged since the previous write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct EsrFlags(u32);

impl EsrFlags {
    /// Bit 0: checksum error on a sent message (P6 APIC bus only).
    pub const SEND_CHECKSUM: u32 = 1 << 0;
    /// Bit 1: checksum error on a received message (P6 APIC bus only).
    pub const RECEIVE_CHECKSUM: u32 = 1 << 1;
    /// Bit 2: a sent message was not accepted by any APIC.
    pub const SEND_ACCEPT: u32 = 1 << 2;
    /// Bit 3: a received message was not accepted (P6 APIC bus only).
    pub const RECEIVE_ACCEPT: u32 = 1 << 3;
    /// Bit 4: a lowest-priority IPI was attempted where unsupported.
    pub const REDIRECTABLE_IPI: u32 = 1 << 4;
    /// Bit 5: this APIC tried to send a vector 0-15.
    pub const SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
    /// Bit 6: this APIC received or locally generated a vector 0-15.
    pub const RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
    /// Bit 7: access to a reserved register offset (xAPIC).
    pub const ILLEGAL_REGISTER_ADDRESS: u32 = 1 << 7;
    /// All defined bits.
    pub const ALL: u32 = 0xFF;

    /// Decodes a raw ESR value, dropping reserved bits.
    pub const fn from_raw(raw: u32) -> Self {
        EsrFlags(raw & Self::ALL)
    }

    /// The defined bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// True when no error was logged.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every bit in `mask` is set.
    pub const fn contains(self, mask: u32) -> bool {
        self.0 & mask == mask
    }

    /// Bit 0.
    pub const fn send_checksum(self) -> bool {
        self.contains(Self::SEND_CHECKSUM)
    }
    /// Bit 1.
    pub const fn receive_checksum(self) -> bool {
        self.contains(Self::RECEIVE_CHECKSUM)
    }
    /// Bit 2.
    pub const fn send_accept(self) -> bool {
        self.contains(Self::SEND_ACCEPT)
    }
    /// Bit 3.
    pub const fn receive_accept(self) -> bool {
        self.contains(Self::RECEIVE_ACCEPT)
    }
    /// Bit 4.
    pub const fn redirectable_ipi(self) -> bool {
        self.contains(Self::REDIRECTABLE_IPI)
    }
    /// Bit 5.
    pub const fn send_illegal_vector(self) -> bool {
        self.contains(Self::SEND_ILLEGAL_VECTOR)
    }
    /// Bit 6.
    pub const fn receive_illegal_vector(self) -> bool {
        self.contains(Self::RECEIVE_ILLEGAL_VECTOR)
    }
    /// Bit 7.
    pub const fn illegal_register_address(self) -> bool {
        self.contains(Self::ILLEGAL_REGISTER_ADDRESS)
    }
}

/// Decoded LAPIC version register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Version {
    /// Bits 0-7: 0x1X for integrated APICs, 0x0X for the discrete 82489DX.
    pub version: u8,
    /// Bits 16-23: index of the last LVT entry (entry count minus one).
    pub max_lvt: u8,
    /// Bit 24: SVR bit 12 (EOI-broadcast suppression) is implemented.
    pub eoi_broadcast_suppression_supported: bool,
}

impl Version {
    /// Decodes a register value.
    pub const fn decode(raw: u32) -> Self {
        Version {
            version: (raw & 0xFF) as u8,
            max_lvt: ((raw >> 16) & 0xFF) as u8,
            eoi_broadcast_suppression_supported: raw & (1 << 24) != 0,
        }
    }

    /// Register value (for fakes and tests).
    pub const fn encode(self) -> u32 {
        self.version as u32
            | (self.max_lvt as u32) << 16
            | if self.eoi_broadcast_suppression_supported { 1 << 24 } else { 0 }
    }

    /// Number of LVT entries.
    pub const fn lvt_entries(self) -> u32 {
        self.max_lvt as u32 + 1
    }

    /// Whether the APIC is integrated in the CPU (vs. a discrete 82489DX).
    pub const fn is_integrated(self) -> bool {
        self.version >= 0x10
    }

    /// LVT performance-counter entry exists (max LVT >= 4).
    pub const fn has_lvt_perf(self) -> bool {
        self.max_lvt >= 4
    }

    /// LVT thermal entry exists (max LVT >= 5).
    pub const fn has_lvt_thermal(self) -> bool {
        self.max_lvt >= 5
    }

    /// LVT CMCI entry exists (max LVT >= 6).
    pub const fn has_lvt_cmci(self) -> bool {
        self.max_lvt >= 6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lvt_timer_round_trips_every_mode() {
        for mode in [TimerMode::OneShot, TimerMode::Periodic, TimerMode::TscDeadline] {
            for masked in [false, true] {
                let t = LvtTimer { vector: 0xEC, mode, masked };
                assert_eq!(LvtTimer::decode(t.encode()), Ok(t));
            }
        }
    }

    #[test]
    fn lvt_timer_bit_layout() {
        assert_eq!(
            LvtTimer { vector: 0x20, mode: TimerMode::OneShot, masked: false }.encode(),
            0x0000_0020
        );
        assert_eq!(
            LvtTimer { vector: 0x20, mode: TimerMode::Periodic, masked: false }.encode(),
            0x0002_0020
        );
        assert_eq!(
            LvtTimer { vector: 0x20, mode: TimerMode::TscDeadline, masked: true }.encode(),
            0x0005_0020
        );
        assert_eq!(LvtTimer::decode(0x0006_0020), Err(DecodeError::ReservedTimerMode));
    }

    #[test]
    fn lvt_local_encodings() {
        assert_eq!(LvtLocal::masked().encode(), LVT_MASKED);
        assert_eq!(LvtLocal::nmi().encode(), 0x0000_0400);
        let ext = LvtLocal { delivery: LocalDeliveryMode::ExtInt, vector: 0x55, ..LvtLocal::nmi() };
        assert_eq!(ext.encode(), 0x0000_0700, "vector is not sent for ExtINT");
        let fixed = LvtLocal {
            delivery: LocalDeliveryMode::Fixed,
            vector: 0x41,
            polarity: Polarity::ActiveLow,
            trigger: TriggerMode::Level,
            masked: true,
        };
        assert_eq!(fixed.encode(), 0x0001_A041);
        assert_eq!(LvtLocal::decode(fixed.encode()), Ok(fixed));
        assert_eq!(LvtLocal::decode(LvtLocal::nmi().encode()), Ok(LvtLocal::nmi()));
        assert_eq!(LvtLocal::decode(0x200), Err(DecodeError::UnsupportedDeliveryMode(0b010)));
    }

    #[test]
    fn lvt_error_round_trip() {
        let e = LvtError { vector: 0xFE, masked: false };
        assert_eq!(e.encode(), 0xFE);
        assert_eq!(LvtError::decode(e.encode() | LVT_DELIVERY_PENDING), e);
        assert!(LvtError::decode(LVT_MASKED).masked);
    }

    #[test]
    fn timer_divide_uses_bits_0_1_and_3() {
        let expected = [
            (TimerDivide::By1, 0b1011),
            (TimerDivide::By2, 0b0000),
            (TimerDivide::By4, 0b0001),
            (TimerDivide::By8, 0b0010),
            (TimerDivide::By16, 0b0011),
            (TimerDivide::By32, 0b1000),
            (TimerDivide::By64, 0b1001),
            (TimerDivide::By128, 0b1010),
        ];
        for (divide, raw) in expected {
            assert_eq!(divide.encode(), raw, "{divide:?}");
            assert_eq!(divide.encode() & 0b0100, 0, "bit 2 is reserved");
            assert_eq!(TimerDivide::decode(raw), divide);
            assert_eq!(TimerDivide::decode(raw | 0b0100), divide, "bit 2 ignored");
            assert_eq!(TimerDivide::from_divisor(divide.divisor()), Some(divide));
        }
        assert_eq!(TimerDivide::from_divisor(3), None);
    }

    #[test]
    fn svr_bits() {
        let svr = SpuriousVector {
            vector: 0xFF,
            apic_software_enabled: true,
            focus_check_disabled: true,
            eoi_broadcast_suppression: true,
        };
        assert_eq!(svr.encode(), 0x13FF);
        assert_eq!(SpuriousVector::decode(0x13FF), svr);
        let plain = SpuriousVector::decode(0x1FF);
        assert!(
            plain.apic_software_enabled
                && !plain.focus_check_disabled
                && !plain.eoi_broadcast_suppression
        );
        assert!(!SpuriousVector::decode(0xFF).apic_software_enabled, "reset value is disabled");
    }

    #[test]
    fn esr_flags_decode() {
        let esr = EsrFlags::from_raw(0xFFFF_FF20 | 0x80);
        assert!(esr.send_illegal_vector());
        assert!(esr.illegal_register_address());
        assert!(!esr.receive_illegal_vector());
        assert!(!esr.send_accept());
        assert_eq!(esr.bits() & !EsrFlags::ALL, 0, "reserved bits dropped");
        assert!(EsrFlags::from_raw(0).is_empty());
        let all = EsrFlags::from_raw(0xFF);
        assert!(
            all.send_checksum()
                && all.receive_checksum()
                && all.send_accept()
                && all.receive_accept()
        );
        assert!(all.redirectable_ipi() && all.receive_illegal_vector());
    }

    #[test]
    fn version_decode() {
        let v = Version::decode(0x0106_0015);
        assert_eq!(
            v,
            Version { version: 0x15, max_lvt: 6, eoi_broadcast_suppression_supported: true }
        );
        assert_eq!(v.lvt_entries(), 7);
        assert!(v.is_integrated() && v.has_lvt_cmci() && v.has_lvt_thermal() && v.has_lvt_perf());
        let old = Version::decode(0x0003_0004);
        assert!(!old.is_integrated() && !old.has_lvt_perf());
        assert_eq!(Version::decode(v.encode()), v);
    }
}
