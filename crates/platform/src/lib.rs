//! What the ACPI MADT says about the machine, in Keel's own terms.
//!
//! The kernel parses the ACPI tables (with the `acpi` crate) and converts each
//! MADT entry into a [`MadtRecord`]. This crate decides what the records
//! *mean*: which CPUs exist and how they are numbered, which of them can be
//! addressed in the current APIC mode, where ISA IRQs and NMIs are wired. It
//! never fails: anything odd in the firmware tables becomes a [`Diagnostic`]
//! the kernel can print, and the safe interpretation is used.
//!
//! Key rule: a [`CpuIndex`] (dense, BSP = 0) is never an APIC ID (sparse
//! 32-bit hardware address). APIC IDs are kept as `u32` everywhere.
//!
//! Storage is fixed-capacity (no allocation); at [`MAX_CPUS`] = 4,096 a
//! [`Platform`] is over 100 KiB, so the kernel keeps it in a `static`
//! ([`Platform::empty`] plus [`Platform::rebuild`]) rather than building it on
//! a stack with the by-value [`Platform::from_records`].
//!
//! The crate is `no_std`, allocation-free, forbids `unsafe` and builds on stable Rust 1.65+; it
//! takes its register value types (modes, LINT entries, polarity) from `keel-apic`.
//!
//! # Example
//!
//! Three CPUs as QEMU describes them (one of them past xAPIC's reach), one IOAPIC and the
//! PC's timer override:
//!
//! ```
//! use keel_apic::{LapicMode, Polarity, TriggerMode};
//! use keel_platform::{CpuIndex, MadtRecord, Platform, MADT_CPU_ENABLED};
//!
//! let records = [
//!     MadtRecord::LocalApic { processor_uid: 0, apic_id: 0, flags: MADT_CPU_ENABLED },
//!     MadtRecord::LocalApic { processor_uid: 1, apic_id: 1, flags: MADT_CPU_ENABLED },
//!     MadtRecord::LocalX2Apic { processor_uid: 2, apic_id: 300, flags: MADT_CPU_ENABLED },
//!     MadtRecord::IoApic { id: 0, address: 0xFEC0_0000, gsi_base: 0 },
//!     MadtRecord::InterruptSourceOverride { bus: 0, source: 0, gsi: 2, flags: 0 },
//!     MadtRecord::LocalApicNmi { processor_uid: 0xFF, flags: 0, lint: 1 },
//! ];
//! // Kept in a `static` by a kernel; boxed here (the fixed-capacity tables are large).
//! let mut platform = Box::new(Platform::empty());
//! platform.rebuild(0xFEE0_0000, true, records, 0);
//!
//! // The BSP is CPU index 0; indices are dense, APIC IDs are not.
//! assert_eq!(platform.bsp().index, CpuIndex(0));
//! assert_eq!(platform.cpu(CpuIndex(2)).unwrap().apic_id, 300);
//! // APIC ID 300 needs x2APIC: the summary says how many CPUs xAPIC would strand.
//! assert_eq!(platform.summary(LapicMode::X2Apic).unreachable, 0);
//! assert_eq!(platform.summary(LapicMode::XApic).unreachable, 1);
//!
//! // ISA IRQ 0 (the PIT) arrives on GSI 2; GSI 0 is nobody's.
//! let timer = platform.resolve_isa_irq(0).unwrap();
//! assert_eq!((timer.gsi, timer.polarity, timer.trigger), (2, Polarity::ActiveHigh, TriggerMode::Edge));
//! assert_eq!(platform.resolve_isa_irq(2), None);
//!
//! // LINT1 is NMI on every CPU (the "all processors" entry), LINT0 masked.
//! let lints = platform.local_lints(2);
//! assert!(lints.lint0.masked && !lints.lint1.masked);
//! assert_eq!(platform.diagnostics().count(), 0);
//! ```
//!
//! Odd tables are interpreted, not rejected: a duplicate APIC ID or a BSP the table forgot
//! becomes a [`Diagnostic`] and the safe reading is used.
//!
//! ```
//! use keel_platform::{Diagnostic, MadtRecord, Platform, MADT_CPU_ENABLED};
//!
//! let records = [
//!     MadtRecord::LocalApic { processor_uid: 1, apic_id: 1, flags: MADT_CPU_ENABLED },
//!     MadtRecord::LocalApic { processor_uid: 2, apic_id: 1, flags: MADT_CPU_ENABLED },
//! ];
//! let mut platform = Box::new(Platform::empty());
//! platform.rebuild(0xFEE0_0000, true, records, 0);
//! assert_eq!(platform.cpu_count(), 2); // the running BSP (APIC ID 0) and APIC ID 1 once
//! assert!(platform.diagnostics().any(|d| matches!(d, Diagnostic::BspNotInTable { apic_id: 0 })));
//! assert!(platform.diagnostics().any(|d| matches!(d, Diagnostic::DuplicateApicId { .. })));
//! assert!(platform.diagnostics().any(|d| matches!(d, Diagnostic::NoIoApic)));
//! ```

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use core::fmt;

/// Maximum CPUs tracked (QEMU q35's maximum, and the documented limit of
/// Keel); extra ones are dropped with a diagnostic.
pub const MAX_CPUS: usize = 4096;
/// Maximum IOAPICs tracked.
pub const MAX_IOAPICS: usize = 16;
/// Maximum NMI source records tracked.
pub const MAX_NMI_SOURCES: usize = 16;
/// Maximum local APIC NMI records tracked (firmware may list one per CPU).
pub const MAX_LAPIC_NMIS: usize = MAX_CPUS;
/// Maximum diagnostics stored; more are counted in
/// [`Platform::diagnostics_dropped`].
pub const MAX_DIAGNOSTICS: usize = 64;
/// Number of legacy ISA IRQs (0-15) that interrupt source overrides can remap.
pub const ISA_IRQS: usize = 16;
/// Largest IOAPIC pin count (the max-redirection-entry field is 8 bits).
pub const MAX_IOAPIC_PINS: u32 = 256;

/// MADT local APIC flag bit 0: the processor is usable now.
pub const MADT_CPU_ENABLED: u32 = 1 << 0;
/// MADT local APIC flag bit 1 (ACPI 6.3+): a disabled processor that can be
/// brought online later; reserved when Enabled is set.
pub const MADT_CPU_ONLINE_CAPABLE: u32 = 1 << 1;
/// Processor UID meaning "all processors" in a type 4 (local APIC NMI) entry.
pub const UID_ALL_XAPIC: u32 = 0xFF;
/// Processor UID meaning "all processors" in a type 0xA (local x2APIC NMI) entry.
pub const UID_ALL_X2APIC: u32 = 0xFFFF_FFFF;
/// Processor UID reported for a BSP that was missing from the MADT.
pub const UID_UNKNOWN: u32 = 0xFFFF_FFFF;

mod diagnostic;
mod queries;
mod records;
mod reset;
pub mod startup;

use reset::{mark_seen, SEEN_WORDS};

pub use diagnostic::{Diagnostic, IntiContext, PlatformError};
pub use records::*;

/// Counts for the boot log and evidence lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// The mode `unreachable` was computed for.
    pub mode: LapicMode,
    /// CPUs in the list (enabled + online-capable).
    pub cpus: usize,
    /// Enabled CPUs.
    pub enabled: usize,
    /// Online-capable (not yet enabled) CPUs.
    pub online_capable: usize,
    /// Entries that were disabled and not online capable (not CPUs).
    pub skipped_disabled: usize,
    /// Entries ignored because their APIC ID was already listed.
    pub duplicates: usize,
    /// Entries ignored because of an invalid APIC ID.
    pub invalid: usize,
    /// CPUs dropped because the list was full.
    pub dropped_over_capacity: usize,
    /// CPUs that cannot be addressed in `mode`.
    pub unreachable: usize,
    /// IOAPICs.
    pub ioapics: usize,
    /// Valid ISA interrupt source overrides.
    pub isa_overrides: usize,
    /// Diagnostics recorded (stored + dropped).
    pub diagnostics: usize,
}

/// INTI flag decoding result: values plus whether anything was reserved.
fn decode_inti(flags: u16) -> (Polarity, TriggerMode, bool) {
    let mut bad = flags & !0xF != 0;
    let polarity = match flags & 0b11 {
        0b00 | 0b01 => Polarity::ActiveHigh,
        0b11 => Polarity::ActiveLow,
        _ => {
            bad = true;
            Polarity::ActiveHigh
        }
    };
    let trigger = match (flags >> 2) & 0b11 {
        0b00 | 0b01 => TriggerMode::Edge,
        0b11 => TriggerMode::Level,
        _ => {
            bad = true;
            TriggerMode::Edge
        }
    };
    (polarity, trigger, bad)
}

const EMPTY_CPU: CpuEntry = CpuEntry {
    index: CpuIndex(0),
    apic_id: 0,
    processor_uid: 0,
    source: CpuSource::Assumed,
    state: CpuState::Enabled,
};
const EMPTY_IOAPIC: IoApicEntry = IoApicEntry { id: 0, address: 0, gsi_base: 0, pins: None };
const EMPTY_NMI_SOURCE: NmiSourceEntry =
    NmiSourceEntry { gsi: 0, polarity: Polarity::ActiveHigh, trigger: TriggerMode::Edge };
const EMPTY_LAPIC_NMI: LapicNmi = LapicNmi {
    target: NmiTarget::All,
    lint: 0,
    polarity: Polarity::ActiveHigh,
    trigger: TriggerMode::Edge,
};

/// The machine as described by the MADT, interpreted and checked.
#[derive(Clone)]
pub struct Platform {
    local_apic_address: u64,
    lapic_address_overridden: bool,
    pc_at_compatible: bool,
    bsp_apic_id: u32,
    bsp_found: bool,
    cpus: [CpuEntry; MAX_CPUS],
    cpu_count: usize,
    skipped_disabled: usize,
    duplicates: usize,
    invalid_cpus: usize,
    dropped_cpus: usize,
    ioapics: [IoApicEntry; MAX_IOAPICS],
    ioapic_count: usize,
    overrides: [Option<IsaOverride>; ISA_IRQS],
    nmi_sources: [NmiSourceEntry; MAX_NMI_SOURCES],
    nmi_source_count: usize,
    lapic_nmis: [LapicNmi; MAX_LAPIC_NMIS],
    lapic_nmi_count: usize,
    diags: [Diagnostic; MAX_DIAGNOSTICS],
    diag_count: usize,
    diags_dropped: usize,
    seen_other_kinds: [u32; 8],
    /// APIC IDs and processor UIDs below [`SEEN_BITS`] already listed: duplicate checks in
    /// O(1) for every ID a real MADT uses, so interpreting n entries is O(n), not O(n²)
    /// (larger values fall back to a scan).
    seen_apic_ids: [u64; SEEN_WORDS],
    seen_uids: [u64; SEEN_WORDS],
}

impl fmt::Debug for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Platform")
            .field("local_apic_address", &self.local_apic_address)
            .field("pc_at_compatible", &self.pc_at_compatible)
            .field("cpus", &self.cpus())
            .field("ioapics", &self.ioapics())
            .field("overrides", &self.overrides)
            .field("nmi_sources", &self.nmi_sources())
            .field("lapic_nmis", &self.lapic_nmis())
            .field("diagnostics", &&self.diags[..self.diag_count])
            .field("diagnostics_dropped", &self.diags_dropped)
            .finish()
    }
}

impl Platform {
    /// A platform with no CPUs, for placing in a `static` before
    /// [`Platform::rebuild`] fills it in (avoids a large stack temporary).
    pub const fn empty() -> Self {
        Self {
            local_apic_address: 0,
            lapic_address_overridden: false,
            pc_at_compatible: false,
            bsp_apic_id: 0,
            bsp_found: false,
            cpus: [EMPTY_CPU; MAX_CPUS],
            cpu_count: 0,
            skipped_disabled: 0,
            duplicates: 0,
            invalid_cpus: 0,
            dropped_cpus: 0,
            ioapics: [EMPTY_IOAPIC; MAX_IOAPICS],
            ioapic_count: 0,
            overrides: [None; ISA_IRQS],
            nmi_sources: [EMPTY_NMI_SOURCE; MAX_NMI_SOURCES],
            nmi_source_count: 0,
            lapic_nmis: [EMPTY_LAPIC_NMI; MAX_LAPIC_NMIS],
            lapic_nmi_count: 0,
            diags: [Diagnostic::NoIoApic; MAX_DIAGNOSTICS],
            diag_count: 0,
            diags_dropped: 0,
            seen_other_kinds: [0; 8],
            seen_apic_ids: [0; SEEN_WORDS],
            seen_uids: [0; SEEN_WORDS],
        }
    }

    /// Interprets the MADT. Never fails: problems become [`Diagnostic`]s.
    ///
    /// `local_apic_address` and `pc_at_compatible` come from the MADT header,
    /// `bsp_apic_id` from the running CPU (CPUID / LAPIC ID register); the BSP
    /// always becomes [`CpuIndex`] 0, even if the table omits it.
    pub fn from_records(
        local_apic_address: u32,
        pc_at_compatible: bool,
        records: impl IntoIterator<Item = MadtRecord>,
        bsp_apic_id: u32,
    ) -> Platform {
        let mut p = Platform::empty();
        p.rebuild(local_apic_address, pc_at_compatible, records, bsp_apic_id);
        p
    }

    /// In-place version of [`Platform::from_records`]; discards previous contents.
    pub fn rebuild(
        &mut self,
        local_apic_address: u32,
        pc_at_compatible: bool,
        records: impl IntoIterator<Item = MadtRecord>,
        bsp_apic_id: u32,
    ) {
        self.clear();
        self.local_apic_address = local_apic_address as u64;
        self.pc_at_compatible = pc_at_compatible;
        self.bsp_apic_id = bsp_apic_id;
        // Slot 0 is reserved for the BSP so it can never be dropped.
        self.cpu_count = 1;
        for r in records {
            self.record(r);
        }
        if !self.bsp_found {
            self.cpus[0] = CpuEntry {
                index: CpuIndex(0),
                apic_id: bsp_apic_id,
                processor_uid: UID_UNKNOWN,
                source: CpuSource::Assumed,
                state: CpuState::Enabled,
            };
            self.bsp_found = true;
            self.diag(Diagnostic::BspNotInTable { apic_id: bsp_apic_id });
        }
        if self.ioapic_count == 0 {
            self.diag(Diagnostic::NoIoApic);
        }
    }

    fn diag(&mut self, d: Diagnostic) {
        if self.diag_count < MAX_DIAGNOSTICS {
            self.diags[self.diag_count] = d;
            self.diag_count += 1;
        } else {
            self.diags_dropped += 1;
        }
    }

    fn filled_cpus(&self) -> &[CpuEntry] {
        let start = if self.bsp_found { 0 } else { 1 };
        &self.cpus[start..self.cpu_count]
    }

    fn record(&mut self, r: MadtRecord) {
        match r {
            MadtRecord::LocalApic { processor_uid, apic_id, flags } => {
                self.add_cpu(processor_uid, apic_id, flags, CpuSource::Type0)
            }
            MadtRecord::LocalX2Apic { processor_uid, apic_id, flags } => {
                self.add_cpu(processor_uid, apic_id, flags, CpuSource::Type9)
            }
            MadtRecord::IoApic { id, address, gsi_base } => self.add_ioapic(id, address, gsi_base),
            MadtRecord::InterruptSourceOverride { bus, source, gsi, flags } => {
                self.add_override(bus, source, gsi, flags)
            }
            MadtRecord::NmiSource { flags, gsi } => {
                let (polarity, trigger, bad) = decode_inti(flags);
                if bad {
                    let context = IntiContext::NmiSource { gsi };
                    self.diag(Diagnostic::ReservedIntiFlags { context, flags });
                }
                if self.nmi_source_count < MAX_NMI_SOURCES {
                    self.nmi_sources[self.nmi_source_count] =
                        NmiSourceEntry { gsi, polarity, trigger };
                    self.nmi_source_count += 1;
                } else {
                    self.diag(Diagnostic::NmiSourceCapacityExceeded { gsi });
                }
            }
            MadtRecord::LocalApicNmi { processor_uid, flags, lint } => {
                let target = if processor_uid == UID_ALL_XAPIC || processor_uid == UID_ALL_X2APIC {
                    NmiTarget::All
                } else {
                    NmiTarget::Processor(processor_uid)
                };
                self.add_lapic_nmi(processor_uid, target, flags, lint)
            }
            MadtRecord::LocalX2ApicNmi { processor_uid, flags, lint } => {
                let target = if processor_uid == UID_ALL_X2APIC {
                    NmiTarget::All
                } else {
                    NmiTarget::Processor(processor_uid)
                };
                self.add_lapic_nmi(processor_uid, target, flags, lint)
            }
            MadtRecord::LocalApicAddressOverride { address } => {
                if self.lapic_address_overridden {
                    self.diag(Diagnostic::DuplicateLocalApicAddressOverride { address });
                } else {
                    self.lapic_address_overridden = true;
                    self.local_apic_address = address;
                }
            }
            MadtRecord::Other { kind } => {
                let (word, bit) = ((kind / 32) as usize, 1u32 << (kind % 32));
                if self.seen_other_kinds[word] & bit == 0 {
                    self.seen_other_kinds[word] |= bit;
                    self.diag(Diagnostic::UnhandledRecord { kind });
                }
            }
        }
    }

    fn add_cpu(&mut self, processor_uid: u32, apic_id: u32, flags: u32, source: CpuSource) {
        let valid = match source {
            CpuSource::Type0 => apic_id < 0xFF,
            _ => apic_id != u32::MAX,
        };
        if !valid {
            self.invalid_cpus += 1;
            self.diag(Diagnostic::InvalidApicId { processor_uid, apic_id, source });
            return;
        }
        if flags & !(MADT_CPU_ENABLED | MADT_CPU_ONLINE_CAPABLE) != 0 {
            self.diag(Diagnostic::ReservedCpuFlags { apic_id, flags });
        }
        let enabled = flags & MADT_CPU_ENABLED != 0;
        let online = flags & MADT_CPU_ONLINE_CAPABLE != 0;
        let is_bsp = apic_id == self.bsp_apic_id;
        let state = if enabled {
            if online {
                self.diag(Diagnostic::OnlineCapableWhileEnabled { apic_id });
            }
            CpuState::Enabled
        } else if is_bsp && !self.bsp_found {
            self.diag(Diagnostic::BspMarkedDisabled { apic_id });
            CpuState::Enabled
        } else if online {
            CpuState::OnlineCapable
        } else {
            self.skipped_disabled += 1;
            return;
        };
        let maybe_dup_id = mark_seen(&mut self.seen_apic_ids, apic_id) != Some(false);
        let maybe_dup_uid = mark_seen(&mut self.seen_uids, processor_uid) != Some(false);
        let first = if maybe_dup_id {
            self.filled_cpus().iter().find(|c| c.apic_id == apic_id)
        } else {
            None
        };
        if let Some(first) = first {
            let first_uid = first.processor_uid;
            self.duplicates += 1;
            self.diag(Diagnostic::DuplicateApicId {
                apic_id,
                first_uid,
                duplicate_uid: processor_uid,
                duplicate_source: source,
            });
            return;
        }
        if maybe_dup_uid && self.filled_cpus().iter().any(|c| c.processor_uid == processor_uid) {
            self.diag(Diagnostic::DuplicateProcessorUid { processor_uid, apic_id });
        }
        let mut entry = CpuEntry { index: CpuIndex(0), apic_id, processor_uid, source, state };
        if is_bsp {
            self.cpus[0] = entry;
            self.bsp_found = true;
        } else if self.cpu_count < MAX_CPUS {
            entry.index = CpuIndex(self.cpu_count as u32);
            self.cpus[self.cpu_count] = entry;
            self.cpu_count += 1;
        } else {
            self.dropped_cpus += 1;
            if self.dropped_cpus == 1 {
                self.diag(Diagnostic::CpuCapacityExceeded { apic_id, capacity: MAX_CPUS });
            }
        }
    }

    fn add_ioapic(&mut self, id: u8, address: u32, gsi_base: u32) {
        let existing = &self.ioapics[..self.ioapic_count];
        let dup_id = existing.iter().any(|io| io.id == id);
        let same_base = existing.iter().find(|io| io.gsi_base == gsi_base).map(|io| io.id);
        if dup_id {
            self.diag(Diagnostic::DuplicateIoApicId { id });
        }
        if let Some(first_id) = same_base {
            self.diag(Diagnostic::DuplicateIoApicGsiBase { gsi_base, first_id, second_id: id });
        }
        if self.ioapic_count < MAX_IOAPICS {
            self.ioapics[self.ioapic_count] = IoApicEntry { id, address, gsi_base, pins: None };
            self.ioapic_count += 1;
        } else {
            self.diag(Diagnostic::IoApicCapacityExceeded { id, capacity: MAX_IOAPICS });
        }
    }

    fn add_override(&mut self, bus: u8, source: u8, gsi: u32, flags: u16) {
        if bus != 0 {
            self.diag(Diagnostic::OverrideNotIsa { bus, source });
            return;
        }
        if source as usize >= ISA_IRQS {
            self.diag(Diagnostic::OverrideSourceOutOfRange { source });
            return;
        }
        let (polarity, trigger, bad) = decode_inti(flags);
        if bad {
            let context = IntiContext::Override { source };
            self.diag(Diagnostic::ReservedIntiFlags { context, flags });
        }
        if let Some(first) = self.overrides[source as usize] {
            self.diag(Diagnostic::DuplicateOverride {
                source,
                first_gsi: first.gsi,
                second_gsi: gsi,
            });
            return;
        }
        if let Some(other) = self.overrides.iter().flatten().find(|o| o.gsi == gsi) {
            let first_source = other.source;
            self.diag(Diagnostic::OverrideGsiConflict { gsi, first_source, second_source: source });
        }
        self.overrides[source as usize] =
            Some(IsaOverride { source, gsi, polarity, trigger, flags });
    }

    fn add_lapic_nmi(&mut self, processor_uid: u32, target: NmiTarget, flags: u16, lint: u8) {
        if lint > 1 {
            self.diag(Diagnostic::InvalidLint { processor_uid, lint });
            return;
        }
        let (polarity, trigger, bad) = decode_inti(flags);
        if bad {
            let context = IntiContext::LapicNmi { processor_uid };
            self.diag(Diagnostic::ReservedIntiFlags { context, flags });
        }
        if self.lapic_nmi_count < MAX_LAPIC_NMIS {
            self.lapic_nmis[self.lapic_nmi_count] = LapicNmi { target, lint, polarity, trigger };
            self.lapic_nmi_count += 1;
        } else {
            self.diag(Diagnostic::LapicNmiCapacityExceeded { processor_uid });
        }
    }
}

#[cfg(test)]
mod tests;

/// The README's example, compiled and run with the doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
