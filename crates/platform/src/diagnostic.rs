//! Everything odd the firmware tables can say, as values the kernel prints instead of
//! panicking on.

use core::fmt;

use crate::*;

/// The MADT entry whose INTI flags were malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntiContext {
    /// An interrupt source override for this ISA IRQ.
    Override {
        /// ISA IRQ.
        source: u8,
    },
    /// An NMI source for this GSI.
    NmiSource {
        /// GSI.
        gsi: u32,
    },
    /// A local APIC NMI entry for this UID.
    LapicNmi {
        /// Processor UID as given.
        processor_uid: u32,
    },
}

impl fmt::Display for IntiContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Override { source } => write!(f, "interrupt source override for IRQ {source}"),
            Self::NmiSource { gsi } => write!(f, "NMI source GSI {gsi}"),
            Self::LapicNmi { processor_uid } => {
                write!(f, "local APIC NMI for processor UID {processor_uid:#x}")
            }
        }
    }
}

/// Something odd in the MADT and what Keel did about it. None of these stop
/// the boot; the kernel prints them so firmware problems are visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Diagnostic {
    /// More than [`MAX_CPUS`] CPUs; this one (and later ones) were dropped.
    CpuCapacityExceeded {
        /// The first dropped APIC ID.
        apic_id: u32,
        /// The capacity.
        capacity: usize,
    },
    /// The same APIC ID appears twice; the first entry is kept.
    DuplicateApicId {
        /// The APIC ID.
        apic_id: u32,
        /// UID of the kept entry.
        first_uid: u32,
        /// UID of the ignored entry.
        duplicate_uid: u32,
        /// Entry type of the ignored entry.
        duplicate_source: CpuSource,
    },
    /// Two CPUs share a processor UID, making UID-based NMI wiring ambiguous.
    DuplicateProcessorUid {
        /// The UID.
        processor_uid: u32,
        /// APIC ID of the second CPU.
        apic_id: u32,
    },
    /// An APIC ID that cannot name a CPU (0xFF in type 0, or the x2APIC
    /// broadcast value); the entry is ignored.
    InvalidApicId {
        /// UID of the entry.
        processor_uid: u32,
        /// The bad APIC ID.
        apic_id: u32,
        /// Entry type.
        source: CpuSource,
    },
    /// Reserved bits set in a local APIC entry's flags (ignored).
    ReservedCpuFlags {
        /// APIC ID of the entry.
        apic_id: u32,
        /// The raw flags.
        flags: u32,
    },
    /// Online Capable set together with Enabled (reserved combination);
    /// treated as Enabled.
    OnlineCapableWhileEnabled {
        /// APIC ID of the entry.
        apic_id: u32,
    },
    /// The running BSP is not listed; it was added as CPU 0 anyway.
    BspNotInTable {
        /// The BSP's APIC ID.
        apic_id: u32,
    },
    /// The running BSP is listed as disabled; treated as enabled since it runs.
    BspMarkedDisabled {
        /// The BSP's APIC ID.
        apic_id: u32,
    },
    /// A CPU whose APIC ID cannot be addressed in xAPIC mode (> 254); it must
    /// be skipped, never addressed with a truncated ID.
    UnreachableInXApic {
        /// The APIC ID.
        apic_id: u32,
    },
    /// More than [`MAX_IOAPICS`] IOAPICs; this one was dropped.
    IoApicCapacityExceeded {
        /// ID of the dropped IOAPIC.
        id: u8,
        /// The capacity.
        capacity: usize,
    },
    /// Two IOAPICs share an ID (both kept).
    DuplicateIoApicId {
        /// The ID.
        id: u8,
    },
    /// Two IOAPICs claim the same GSI base (both kept; the first wins lookups).
    DuplicateIoApicGsiBase {
        /// The GSI base.
        gsi_base: u32,
        /// ID of the first IOAPIC.
        first_id: u8,
        /// ID of the second IOAPIC.
        second_id: u8,
    },
    /// Once pin counts are known, two IOAPICs' GSI ranges overlap (the lower
    /// index wins lookups).
    IoApicGsiOverlap {
        /// Index of one IOAPIC.
        first: usize,
        /// Index of the other IOAPIC.
        second: usize,
    },
    /// The MADT lists no IOAPIC; external interrupts cannot be routed.
    NoIoApic,
    /// INTI flags with a reserved polarity/trigger encoding or reserved bits;
    /// the bus default is used for the reserved field.
    ReservedIntiFlags {
        /// Which entry.
        context: IntiContext,
        /// The raw flags.
        flags: u16,
    },
    /// An interrupt source override for a bus other than ISA (ignored).
    OverrideNotIsa {
        /// The bus.
        bus: u8,
        /// The source IRQ.
        source: u8,
    },
    /// An interrupt source override for an IRQ above 15 (ignored).
    OverrideSourceOutOfRange {
        /// The source IRQ.
        source: u8,
    },
    /// A second override for the same ISA IRQ (ignored; the first is kept).
    DuplicateOverride {
        /// The ISA IRQ.
        source: u8,
        /// GSI of the kept override.
        first_gsi: u32,
        /// GSI of the ignored one.
        second_gsi: u32,
    },
    /// Two ISA IRQs are overridden onto the same GSI (both kept; reverse
    /// lookup returns the lower-numbered IRQ, whichever the table listed first).
    OverrideGsiConflict {
        /// The shared GSI.
        gsi: u32,
        /// The first ISA IRQ.
        first_source: u8,
        /// The second ISA IRQ.
        second_source: u8,
    },
    /// More than [`MAX_NMI_SOURCES`] NMI sources; this one was dropped.
    NmiSourceCapacityExceeded {
        /// GSI of the dropped entry.
        gsi: u32,
    },
    /// More than [`MAX_LAPIC_NMIS`] local APIC NMI entries; this one was dropped.
    LapicNmiCapacityExceeded {
        /// UID of the dropped entry.
        processor_uid: u32,
    },
    /// A local APIC NMI entry naming a LINT pin other than 0 or 1 (ignored).
    InvalidLint {
        /// UID of the entry.
        processor_uid: u32,
        /// The bad pin.
        lint: u8,
    },
    /// More than one local APIC address override (the first is used).
    DuplicateLocalApicAddressOverride {
        /// The ignored address.
        address: u64,
    },
    /// An entry type Keel does not interpret (reported once per type).
    UnhandledRecord {
        /// The MADT entry type.
        kind: u8,
    },
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::CpuCapacityExceeded { apic_id, capacity } => write!(
                f,
                "more than {capacity} CPUs: APIC ID {apic_id:#x} and any later CPUs are ignored"
            ),
            Self::DuplicateApicId { apic_id, first_uid, duplicate_uid, duplicate_source } => write!(
                f,
                "APIC ID {apic_id:#x} listed twice (UID {first_uid:#x} kept, {duplicate_source} entry with UID {duplicate_uid:#x} ignored)"
            ),
            Self::DuplicateProcessorUid { processor_uid, apic_id } => write!(
                f,
                "processor UID {processor_uid:#x} reused by APIC ID {apic_id:#x}; NMI wiring by UID is ambiguous"
            ),
            Self::InvalidApicId { processor_uid, apic_id, source } => write!(
                f,
                "{source} entry UID {processor_uid:#x} has invalid APIC ID {apic_id:#x}; ignored"
            ),
            Self::ReservedCpuFlags { apic_id, flags } => write!(
                f,
                "APIC ID {apic_id:#x} has reserved flag bits set (flags {flags:#x}); ignored them"
            ),
            Self::OnlineCapableWhileEnabled { apic_id } => write!(
                f,
                "APIC ID {apic_id:#x} is both Enabled and Online Capable (reserved); treated as enabled"
            ),
            Self::BspNotInTable { apic_id } => write!(
                f,
                "boot CPU (APIC ID {apic_id:#x}) is missing from the MADT; added as CPU 0"
            ),
            Self::BspMarkedDisabled { apic_id } => write!(
                f,
                "boot CPU (APIC ID {apic_id:#x}) is marked disabled in the MADT; treated as enabled"
            ),
            Self::UnreachableInXApic { apic_id } => write!(
                f,
                "CPU with APIC ID {apic_id:#x} cannot be addressed in xAPIC mode (IDs above 254 need x2APIC); skipped"
            ),
            Self::IoApicCapacityExceeded { id, capacity } => {
                write!(f, "more than {capacity} IOAPICs: IOAPIC {id} ignored")
            }
            Self::DuplicateIoApicId { id } => write!(f, "IOAPIC ID {id} is used twice"),
            Self::DuplicateIoApicGsiBase { gsi_base, first_id, second_id } => write!(
                f,
                "IOAPICs {first_id} and {second_id} both start at GSI {gsi_base}; IOAPIC {first_id} wins"
            ),
            Self::IoApicGsiOverlap { first, second } => write!(
                f,
                "GSI ranges of IOAPIC #{first} and IOAPIC #{second} overlap; #{first} wins"
            ),
            Self::NoIoApic => f.write_str("MADT lists no IOAPIC; external interrupts cannot be routed"),
            Self::ReservedIntiFlags { context, flags } => write!(
                f,
                "{context} has reserved INTI flags {flags:#06x}; bus default used for the reserved field"
            ),
            Self::OverrideNotIsa { bus, source } => write!(
                f,
                "interrupt source override for IRQ {source} on bus {bus} (not ISA) ignored"
            ),
            Self::OverrideSourceOutOfRange { source } => write!(
                f,
                "interrupt source override for IRQ {source} (not an ISA IRQ 0-15) ignored"
            ),
            Self::DuplicateOverride { source, first_gsi, second_gsi } => write!(
                f,
                "IRQ {source} overridden twice (GSI {first_gsi} kept, GSI {second_gsi} ignored)"
            ),
            Self::OverrideGsiConflict { gsi, first_source, second_source } => write!(
                f,
                "IRQ {first_source} and IRQ {second_source} are both routed to GSI {gsi}"
            ),
            Self::NmiSourceCapacityExceeded { gsi } => {
                write!(f, "too many NMI sources: GSI {gsi} ignored")
            }
            Self::LapicNmiCapacityExceeded { processor_uid } => write!(
                f,
                "too many local APIC NMI entries: entry for UID {processor_uid:#x} ignored"
            ),
            Self::InvalidLint { processor_uid, lint } => write!(
                f,
                "local APIC NMI for UID {processor_uid:#x} names LINT{lint} (only 0 and 1 exist); ignored"
            ),
            Self::DuplicateLocalApicAddressOverride { address } => write!(
                f,
                "second local APIC address override ({address:#x}) ignored"
            ),
            Self::UnhandledRecord { kind } => write!(f, "MADT entry type {kind:#x} not interpreted"),
        }
    }
}

/// Refusal of [`Platform::set_ioapic_pins`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlatformError {
    /// No IOAPIC with that index.
    NoSuchIoApic {
        /// The index given.
        index: usize,
    },
    /// A pin count of 0 or above [`MAX_IOAPIC_PINS`] (bad hardware read).
    InvalidPinCount {
        /// The IOAPIC index.
        index: usize,
        /// The count given.
        pins: u32,
    },
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoSuchIoApic { index } => write!(f, "no IOAPIC #{index}"),
            Self::InvalidPinCount { index, pins } => {
                write!(f, "IOAPIC #{index}: pin count {pins} outside 1..={MAX_IOAPIC_PINS}")
            }
        }
    }
}
