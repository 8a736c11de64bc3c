//! The vocabulary: MADT records as the kernel hands them over, and what the platform is
//! made of once they are interpreted (CPUs, IOAPICs, ISA routes, NMI wiring).

use core::fmt;

/// The signalling and mode vocabulary is the register crate's own: one `Polarity`, one
/// `TriggerMode`, one `LapicMode` from the MADT to the redirection entry.
pub use keel_apic::{LapicMode, Polarity, TriggerMode};

/// One MADT entry, converted by the kernel from the `acpi` crate's types.
/// Widths are normalised (`u32` APIC IDs and UIDs) so no information is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MadtRecord {
    /// Type 0, processor local APIC (APIC ID and UID come from `u8`s).
    LocalApic {
        /// ACPI processor UID.
        processor_uid: u32,
        /// Local APIC ID (0xFF is invalid here).
        apic_id: u32,
        /// Enabled / Online Capable flags.
        flags: u32,
    },
    /// Type 9, processor local x2APIC (32-bit APIC ID and UID).
    LocalX2Apic {
        /// ACPI processor UID.
        processor_uid: u32,
        /// x2APIC ID.
        apic_id: u32,
        /// Enabled / Online Capable flags.
        flags: u32,
    },
    /// Type 1, I/O APIC.
    IoApic {
        /// IOAPIC ID.
        id: u8,
        /// MMIO base address.
        address: u32,
        /// First GSI served by this IOAPIC.
        gsi_base: u32,
    },
    /// Type 2, interrupt source override (ISA IRQ remapping).
    InterruptSourceOverride {
        /// Bus, must be 0 (ISA).
        bus: u8,
        /// ISA IRQ number.
        source: u8,
        /// GSI it is wired to.
        gsi: u32,
        /// MPS INTI flags (polarity bits 0-1, trigger bits 2-3).
        flags: u16,
    },
    /// Type 3, NMI source (a GSI that delivers NMI).
    NmiSource {
        /// MPS INTI flags.
        flags: u16,
        /// The GSI.
        gsi: u32,
    },
    /// Type 4, local APIC NMI. `processor_uid` 0xFF (or 0xFFFFFFFF) = all.
    LocalApicNmi {
        /// Target processor UID, or [`UID_ALL_XAPIC`](crate::UID_ALL_XAPIC).
        processor_uid: u32,
        /// MPS INTI flags.
        flags: u16,
        /// LINT pin (0 or 1).
        lint: u8,
    },
    /// Type 0xA, local x2APIC NMI. `processor_uid` 0xFFFFFFFF = all (0xFF is
    /// an ordinary UID here, which is why this is a separate variant).
    LocalX2ApicNmi {
        /// Target processor UID, or [`UID_ALL_X2APIC`](crate::UID_ALL_X2APIC).
        processor_uid: u32,
        /// MPS INTI flags.
        flags: u16,
        /// LINT pin (0 or 1).
        lint: u8,
    },
    /// Type 5, 64-bit local APIC address override.
    LocalApicAddressOverride {
        /// The 64-bit local APIC base.
        address: u64,
    },
    /// Any other entry type (ignored; reported once per type).
    Other {
        /// The MADT entry type.
        kind: u8,
    },
}

/// Dense CPU number used by the kernel for per-CPU data: the BSP is 0, the
/// others follow MADT order. Deliberately distinct from the APIC ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuIndex(pub u32);

impl fmt::Display for CpuIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cpu{}", self.0)
    }
}

/// Which MADT entry described a CPU, for diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuSource {
    /// Type 0 (local APIC).
    Type0,
    /// Type 9 (local x2APIC).
    Type9,
    /// Not in the table: the running BSP, added so it always has index 0.
    Assumed,
}

impl fmt::Display for CpuSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Type0 => "local APIC (type 0)",
            Self::Type9 => "local x2APIC (type 9)",
            Self::Assumed => "assumed BSP",
        })
    }
}

/// Whether a CPU may be started now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuState {
    /// Present and usable.
    Enabled,
    /// Disabled now but can be brought online (hot-add); may not be present.
    OnlineCapable,
}

/// One CPU as Keel sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuEntry {
    /// Dense kernel index (BSP = 0).
    pub index: CpuIndex,
    /// Hardware APIC ID used to address IPIs.
    pub apic_id: u32,
    /// ACPI processor UID (links to NMI entries); [`UID_UNKNOWN`](crate::UID_UNKNOWN) if assumed.
    pub processor_uid: u32,
    /// Which entry type described it.
    pub source: CpuSource,
    /// Enabled or only online-capable.
    pub state: CpuState,
}

/// One I/O APIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoApicEntry {
    /// IOAPIC ID from the MADT.
    pub id: u8,
    /// MMIO base address.
    pub address: u32,
    /// First GSI it serves.
    pub gsi_base: u32,
    /// Number of redirection entries, once the kernel has read it from the
    /// hardware ([`Platform::set_ioapic_pins`](crate::Platform::set_ioapic_pins)); needed to map GSIs to pins.
    pub pins: Option<u32>,
}

/// Where an interrupt arrives and how its line behaves: what the kernel needs
/// to program an IOAPIC redirection entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqRoute {
    /// Global system interrupt number.
    pub gsi: u32,
    /// Line polarity.
    pub polarity: Polarity,
    /// Trigger mode.
    pub trigger: TriggerMode,
}

/// A validated interrupt source override (ISA IRQ -> GSI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsaOverride {
    /// ISA IRQ (0-15).
    pub source: u8,
    /// Target GSI.
    pub gsi: u32,
    /// Decoded polarity.
    pub polarity: Polarity,
    /// Decoded trigger.
    pub trigger: TriggerMode,
    /// Raw MPS INTI flags, for logging.
    pub flags: u16,
}

/// A GSI wired to deliver NMI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NmiSourceEntry {
    /// The GSI.
    pub gsi: u32,
    /// Decoded polarity.
    pub polarity: Polarity,
    /// Decoded trigger.
    pub trigger: TriggerMode,
}

/// Which processors a local APIC NMI entry applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NmiTarget {
    /// Every processor.
    All,
    /// The processor with this ACPI UID.
    Processor(u32),
}

/// How one CPU's LINT0/LINT1 are to be programmed ([`Platform::local_lints`](crate::Platform::local_lints)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalLints {
    /// LVT LINT0.
    pub lint0: keel_apic::LvtLocal,
    /// LVT LINT1.
    pub lint1: keel_apic::LvtLocal,
    /// Whether the MADT said so, or nothing in it named this CPU.
    pub source: LintSource,
}

/// Where a CPU's LINT wiring came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LintSource {
    /// Local (x2)APIC NMI entries naming this CPU or all CPUs.
    Madt,
    /// No entry applies: LINT1 = NMI, LINT0 masked.
    Fallback,
}

/// A LAPIC LINT pin configured as NMI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LapicNmi {
    /// Which processors.
    pub target: NmiTarget,
    /// LINT0 or LINT1.
    pub lint: u8,
    /// Decoded polarity.
    pub polarity: Polarity,
    /// Decoded trigger.
    pub trigger: TriggerMode,
}
