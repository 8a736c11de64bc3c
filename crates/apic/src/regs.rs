//! The architectural local-APIC register map.
//!
//! One enum names every register; each backend translates it to an MMIO
//! offset ([`Register::xapic_offset`]) or an MSR number
//! ([`Register::x2apic_msr`]). Registers that exist in only one mode return
//! `None` in the other, so a backend can never silently touch the wrong thing.

use crate::mode::LapicMode;

/// Index (0-7) of one 32-bit slice of a 256-bit vector bank (ISR, TMR, IRR).
///
/// Vector `v` lives in bank `v / 32`, bit `v % 32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Bank(u8);

impl Bank {
    /// Number of 32-bit registers in a 256-bit bank.
    pub const COUNT: u8 = 8;

    /// Returns the bank index if it is in 0..8.
    pub const fn new(index: u8) -> Option<Self> {
        if index < Self::COUNT {
            Some(Bank(index))
        } else {
            None
        }
    }

    /// The bank holding `vector`'s bit.
    pub const fn for_vector(vector: u8) -> Self {
        Bank(vector / 32)
    }

    /// The bit mask of `vector` inside its bank register.
    pub const fn bit_for_vector(vector: u8) -> u32 {
        1 << (vector % 32)
    }

    /// The bank index 0..8.
    pub const fn index(self) -> u8 {
        self.0
    }
}

/// An architectural local-APIC register.
///
/// Covers what Keel programs or inspects. The ICR is modelled as the two
/// xAPIC halves; in x2APIC mode [`Register::IcrLow`] names the single 64-bit
/// MSR 0x830 and [`Register::IcrHigh`] does not exist. Sending an IPI always
/// goes through [`crate::lapic::LapicRegisters::write_icr`], never a plain
/// register write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Register {
    /// Local APIC ID (xAPIC: id in bits 24-31; x2APIC: 32-bit, read-only).
    Id,
    /// Version, max LVT entry, EOI-broadcast-suppression support.
    Version,
    /// Task priority: interrupts at or below this class are held back.
    Tpr,
    /// Processor priority (read-only).
    Ppr,
    /// End of interrupt (write-only; x2APIC demands the value 0).
    Eoi,
    /// Logical destination (read-only in x2APIC).
    Ldr,
    /// Destination format (xAPIC only; gone in x2APIC).
    Dfr,
    /// Spurious-interrupt vector and APIC software enable.
    Svr,
    /// In-service bank (read-only).
    Isr(Bank),
    /// Trigger-mode bank (read-only).
    Tmr(Bank),
    /// Interrupt-request bank (read-only).
    Irr(Bank),
    /// Error status (write before read; x2APIC demands the value 0).
    Esr,
    /// LVT corrected-machine-check interrupt (present when max LVT >= 6).
    LvtCmci,
    /// ICR low half (xAPIC 0x300) / the whole 64-bit ICR (x2APIC MSR 0x830).
    IcrLow,
    /// ICR high half, destination in bits 24-31 (xAPIC only).
    IcrHigh,
    /// LVT timer.
    LvtTimer,
    /// LVT thermal sensor (present when max LVT >= 5).
    LvtThermal,
    /// LVT performance counters (present when max LVT >= 4).
    LvtPerf,
    /// LVT LINT0 pin (usually ExtINT from the legacy PIC, masked by Keel).
    LvtLint0,
    /// LVT LINT1 pin (usually wired to NMI).
    LvtLint1,
    /// LVT error.
    LvtError,
    /// Timer initial count; writing it (re)starts one-shot/periodic timers.
    TimerInitialCount,
    /// Timer current count (read-only).
    TimerCurrentCount,
    /// Timer divide configuration.
    TimerDivide,
    /// SELF IPI (x2APIC only, write-only, vector in bits 0-7).
    SelfIpi,
}

/// What an access to a register in a given mode is allowed to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The register does not exist in this mode (x2APIC: #GP; xAPIC: undefined).
    Absent,
    /// Reads only; writes #GP in x2APIC and are ignored or harmful in xAPIC.
    ReadOnly,
    /// Writes only; reads #GP in x2APIC.
    WriteOnly,
    /// Reads and writes.
    ReadWrite,
}

impl Access {
    /// Whether a read is architecturally allowed.
    pub const fn can_read(self) -> bool {
        matches!(self, Access::ReadOnly | Access::ReadWrite)
    }

    /// Whether a write is architecturally allowed.
    pub const fn can_write(self) -> bool {
        matches!(self, Access::WriteOnly | Access::ReadWrite)
    }
}

/// First MSR of the x2APIC register block; MSR = base + xAPIC offset / 16.
pub const X2APIC_MSR_BASE: u32 = 0x800;

/// The x2APIC ICR MSR (one 64-bit register).
pub const X2APIC_ICR_MSR: u32 = 0x830;

/// Size of the xAPIC MMIO register window.
pub const XAPIC_MMIO_SIZE: usize = 0x1000;

impl Register {
    /// Every register, for exhaustive tests and register dumps.
    pub const ALL: [Register; 46] = {
        use Register::*;
        [
            Id,
            Version,
            Tpr,
            Ppr,
            Eoi,
            Ldr,
            Dfr,
            Svr,
            Isr(Bank(0)),
            Isr(Bank(1)),
            Isr(Bank(2)),
            Isr(Bank(3)),
            Isr(Bank(4)),
            Isr(Bank(5)),
            Isr(Bank(6)),
            Isr(Bank(7)),
            Tmr(Bank(0)),
            Tmr(Bank(1)),
            Tmr(Bank(2)),
            Tmr(Bank(3)),
            Tmr(Bank(4)),
            Tmr(Bank(5)),
            Tmr(Bank(6)),
            Tmr(Bank(7)),
            Irr(Bank(0)),
            Irr(Bank(1)),
            Irr(Bank(2)),
            Irr(Bank(3)),
            Irr(Bank(4)),
            Irr(Bank(5)),
            Irr(Bank(6)),
            Irr(Bank(7)),
            Esr,
            LvtCmci,
            IcrLow,
            IcrHigh,
            LvtTimer,
            LvtThermal,
            LvtPerf,
            LvtLint0,
            LvtLint1,
            LvtError,
            TimerInitialCount,
            TimerCurrentCount,
            TimerDivide,
            SelfIpi,
        ]
    };

    /// The architectural offset of the register in the 4 KiB APIC page.
    ///
    /// SELF IPI has no xAPIC MMIO register but its x2APIC MSR (0x83F) still
    /// follows the `0x800 + offset / 16` rule with offset 0x3F0, so it is
    /// given that offset here; [`Register::xapic_offset`] hides it.
    const fn architectural_offset(self) -> u16 {
        match self {
            Register::Id => 0x020,
            Register::Version => 0x030,
            Register::Tpr => 0x080,
            Register::Ppr => 0x0A0,
            Register::Eoi => 0x0B0,
            Register::Ldr => 0x0D0,
            Register::Dfr => 0x0E0,
            Register::Svr => 0x0F0,
            Register::Isr(bank) => 0x100 + 0x10 * bank.0 as u16,
            Register::Tmr(bank) => 0x180 + 0x10 * bank.0 as u16,
            Register::Irr(bank) => 0x200 + 0x10 * bank.0 as u16,
            Register::Esr => 0x280,
            Register::LvtCmci => 0x2F0,
            Register::IcrLow => 0x300,
            Register::IcrHigh => 0x310,
            Register::LvtTimer => 0x320,
            Register::LvtThermal => 0x330,
            Register::LvtPerf => 0x340,
            Register::LvtLint0 => 0x350,
            Register::LvtLint1 => 0x360,
            Register::LvtError => 0x370,
            Register::TimerInitialCount => 0x380,
            Register::TimerCurrentCount => 0x390,
            Register::TimerDivide => 0x3E0,
            Register::SelfIpi => 0x3F0,
        }
    }

    /// Dense slot number 0..64 (offset / 16), handy for register-file arrays.
    pub const fn slot(self) -> usize {
        (self.architectural_offset() >> 4) as usize
    }

    /// Byte offset from the xAPIC MMIO base, or `None` for x2APIC-only
    /// registers (SELF IPI).
    #[inline]
    pub const fn xapic_offset(self) -> Option<u16> {
        match self {
            Register::SelfIpi => None,
            other => Some(other.architectural_offset()),
        }
    }

    /// MSR number in x2APIC mode (`0x800 + offset / 16`), or `None` for the
    /// xAPIC-only registers (ICR high, DFR).
    #[inline]
    pub const fn x2apic_msr(self) -> Option<u32> {
        match self {
            Register::IcrHigh | Register::Dfr => None,
            other => Some(X2APIC_MSR_BASE + (other.architectural_offset() as u32 >> 4)),
        }
    }

    /// What the architecture allows for this register in `mode`.
    ///
    /// Backends may `debug_assert!` on it; the fake LAPIC enforces it.
    pub const fn access(self, mode: LapicMode) -> Access {
        use Register::*;
        match (self, mode) {
            (IcrHigh | Dfr, LapicMode::X2Apic) => Access::Absent,
            (SelfIpi, LapicMode::XApic) => Access::Absent,
            (SelfIpi | Eoi, _) => Access::WriteOnly,
            (Id | Ldr, LapicMode::XApic) => Access::ReadWrite,
            (Id | Ldr, LapicMode::X2Apic) => Access::ReadOnly,
            (Version | Ppr | Isr(_) | Tmr(_) | Irr(_) | TimerCurrentCount, _) => Access::ReadOnly,
            _ => Access::ReadWrite,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xapic_offsets_match_the_sdm_table() {
        assert_eq!(Register::Id.xapic_offset(), Some(0x20));
        assert_eq!(Register::Version.xapic_offset(), Some(0x30));
        assert_eq!(Register::Tpr.xapic_offset(), Some(0x80));
        assert_eq!(Register::Eoi.xapic_offset(), Some(0xB0));
        assert_eq!(Register::Svr.xapic_offset(), Some(0xF0));
        assert_eq!(Register::Isr(Bank::new(7).unwrap()).xapic_offset(), Some(0x170));
        assert_eq!(Register::Tmr(Bank::new(0).unwrap()).xapic_offset(), Some(0x180));
        assert_eq!(Register::Irr(Bank::new(7).unwrap()).xapic_offset(), Some(0x270));
        assert_eq!(Register::Esr.xapic_offset(), Some(0x280));
        assert_eq!(Register::IcrLow.xapic_offset(), Some(0x300));
        assert_eq!(Register::IcrHigh.xapic_offset(), Some(0x310));
        assert_eq!(Register::LvtTimer.xapic_offset(), Some(0x320));
        assert_eq!(Register::LvtError.xapic_offset(), Some(0x370));
        assert_eq!(Register::TimerInitialCount.xapic_offset(), Some(0x380));
        assert_eq!(Register::TimerCurrentCount.xapic_offset(), Some(0x390));
        assert_eq!(Register::TimerDivide.xapic_offset(), Some(0x3E0));
        assert_eq!(Register::SelfIpi.xapic_offset(), None);
    }

    #[test]
    fn x2apic_msrs_follow_0x800_plus_offset_over_16() {
        assert_eq!(Register::Id.x2apic_msr(), Some(0x802));
        assert_eq!(Register::Eoi.x2apic_msr(), Some(0x80B));
        assert_eq!(Register::Svr.x2apic_msr(), Some(0x80F));
        assert_eq!(Register::Esr.x2apic_msr(), Some(0x828));
        assert_eq!(Register::LvtCmci.x2apic_msr(), Some(0x82F));
        assert_eq!(Register::IcrLow.x2apic_msr(), Some(X2APIC_ICR_MSR));
        assert_eq!(Register::LvtTimer.x2apic_msr(), Some(0x832));
        assert_eq!(Register::TimerDivide.x2apic_msr(), Some(0x83E));
        assert_eq!(Register::SelfIpi.x2apic_msr(), Some(0x83F));
        for reg in Register::ALL {
            if let (Some(off), Some(msr)) = (reg.xapic_offset(), reg.x2apic_msr()) {
                assert_eq!(msr, 0x800 + u32::from(off) / 16, "{reg:?}");
            }
        }
    }

    #[test]
    fn icr_high_and_dfr_do_not_exist_in_x2apic() {
        assert_eq!(Register::IcrHigh.x2apic_msr(), None);
        assert_eq!(Register::Dfr.x2apic_msr(), None);
        assert_eq!(Register::IcrHigh.access(LapicMode::X2Apic), Access::Absent);
        assert_eq!(Register::Dfr.access(LapicMode::X2Apic), Access::Absent);
        assert_eq!(Register::SelfIpi.access(LapicMode::XApic), Access::Absent);
    }

    #[test]
    fn access_rules() {
        assert!(!Register::Eoi.access(LapicMode::X2Apic).can_read());
        assert!(Register::Eoi.access(LapicMode::X2Apic).can_write());
        assert!(!Register::Id.access(LapicMode::X2Apic).can_write());
        assert!(Register::Id.access(LapicMode::XApic).can_write());
        assert!(!Register::TimerCurrentCount.access(LapicMode::XApic).can_write());
        assert!(Register::Esr.access(LapicMode::X2Apic).can_read());
    }

    #[test]
    fn slots_are_unique_and_dense() {
        let mut seen = [false; 64];
        for reg in Register::ALL {
            assert!(!seen[reg.slot()], "{reg:?}");
            seen[reg.slot()] = true;
        }
    }

    #[test]
    fn bank_math() {
        assert_eq!(Bank::for_vector(0x20).index(), 1);
        assert_eq!(Bank::bit_for_vector(0x21), 1 << 1);
        assert_eq!(Bank::for_vector(0xFF).index(), 7);
        assert!(Bank::new(8).is_none());
    }
}
