//! What the interpreted MADT says, as queries: CPUs, APIC addresses, IOAPIC routing, NMIs
//! and diagnostics. Building the [`Platform`] from the table lives in the crate root.

use keel_apic::{ApicId, LvtLocal, XApicId};

use crate::*;

impl Platform {
    // ----- CPUs -----

    /// All CPUs (enabled and online-capable), indexed by [`CpuIndex`]; the
    /// BSP is element 0.
    pub fn cpus(&self) -> &[CpuEntry] {
        &self.cpus[..self.cpu_count]
    }

    /// Number of CPUs in [`Platform::cpus`].
    pub fn cpu_count(&self) -> usize {
        self.cpu_count
    }

    /// The boot CPU (always present, index 0).
    pub fn bsp(&self) -> &CpuEntry {
        &self.cpus[0]
    }

    /// The CPU with a given kernel index.
    pub fn cpu(&self, index: CpuIndex) -> Option<&CpuEntry> {
        self.cpus().get(index.0 as usize)
    }

    /// The CPU with a given APIC ID (e.g. to identify an AP that just woke up).
    pub fn cpu_by_apic_id(&self, apic_id: u32) -> Option<&CpuEntry> {
        self.cpus().iter().find(|c| c.apic_id == apic_id)
    }

    /// CPUs marked Enabled (the ones to start at boot).
    pub fn enabled_cpus(&self) -> impl Iterator<Item = &CpuEntry> + '_ {
        self.cpus().iter().filter(|c| c.state == CpuState::Enabled)
    }

    /// True if a CPU with `apic_id` can be targeted by an IPI in `mode`:
    /// xAPIC destinations are 8 bits with 0xFF as broadcast ([`XApicId`]), so only
    /// 0..=254; x2APIC excludes only the broadcast 0xFFFFFFFF.
    pub fn is_reachable(apic_id: u32, mode: LapicMode) -> bool {
        match mode {
            LapicMode::XApic => XApicId::try_from(ApicId::new(apic_id)).is_ok(),
            LapicMode::X2Apic => apic_id != u32::MAX,
        }
    }

    /// One [`Diagnostic::UnreachableInXApic`] per CPU that cannot be addressed
    /// in `mode` (none in x2APIC mode), for the kernel to print.
    pub fn unreachable_diagnostics(
        &self,
        mode: LapicMode,
    ) -> impl Iterator<Item = Diagnostic> + '_ {
        self.cpus()
            .iter()
            .filter(move |c| !Self::is_reachable(c.apic_id, mode))
            .map(|c| Diagnostic::UnreachableInXApic { apic_id: c.apic_id })
    }

    // ----- APIC addresses / legacy -----

    /// Physical base of the local APICs (the 64-bit override if present).
    pub fn local_apic_address(&self) -> u64 {
        self.local_apic_address
    }

    /// True if the MADT says legacy 8259 PICs are present (PCAT_COMPAT): the
    /// kernel must mask them before using the IOAPIC.
    pub fn pc_at_compatible(&self) -> bool {
        self.pc_at_compatible
    }

    /// The BSP APIC ID this platform was built with.
    pub fn bsp_apic_id(&self) -> u32 {
        self.bsp_apic_id
    }

    // ----- IOAPICs and IRQ routing -----

    /// IOAPICs in table order; positions are the indices used by
    /// [`Platform::set_ioapic_pins`].
    pub fn ioapics(&self) -> &[IoApicEntry] {
        &self.ioapics[..self.ioapic_count]
    }

    /// Records how many redirection entries IOAPIC `index` has (read by the
    /// kernel from its version register).
    /// Overlapping GSI ranges become a diagnostic.
    pub fn set_ioapic_pins(&mut self, index: usize, pins: u32) -> Result<(), PlatformError> {
        if index >= self.ioapic_count {
            return Err(PlatformError::NoSuchIoApic { index });
        }
        if pins == 0 || pins > MAX_IOAPIC_PINS {
            return Err(PlatformError::InvalidPinCount { index, pins });
        }
        self.ioapics[index].pins = Some(pins);
        let lo = self.ioapics[index].gsi_base as u64;
        let hi = lo + pins as u64;
        for other in 0..self.ioapic_count {
            if other == index {
                continue;
            }
            let io = self.ioapics[other];
            if let Some(p) = io.pins {
                let (olo, ohi) = (io.gsi_base as u64, io.gsi_base as u64 + p as u64);
                if lo < ohi && olo < hi {
                    let d = Diagnostic::IoApicGsiOverlap {
                        first: other.min(index),
                        second: other.max(index),
                    };
                    if !self.diagnostics().any(|x| x == d) {
                        self.diag(d);
                    }
                }
            }
        }
        Ok(())
    }

    /// The validated interrupt source overrides.
    pub fn isa_overrides(&self) -> impl Iterator<Item = &IsaOverride> + '_ {
        self.overrides.iter().flatten()
    }

    /// Where ISA IRQ `irq` arrives: its override if any, otherwise the
    /// identity GSI with ISA defaults (active high, edge).
    ///
    /// `None` for `irq >= 16`, and for an IRQ whose identity GSI has been
    /// claimed by another IRQ's override (e.g. IRQ 2 when IRQ 0 -> GSI 2):
    /// routing it would mis-deliver the other device's interrupt.
    pub fn resolve_isa_irq(&self, irq: u8) -> Option<IrqRoute> {
        if irq as usize >= ISA_IRQS {
            return None;
        }
        if let Some(o) = self.overrides[irq as usize] {
            return Some(IrqRoute { gsi: o.gsi, polarity: o.polarity, trigger: o.trigger });
        }
        if self.isa_overrides().any(|o| o.gsi == irq as u32) {
            return None;
        }
        Some(IrqRoute {
            gsi: irq as u32,
            polarity: Polarity::ActiveHigh,
            trigger: TriggerMode::Edge,
        })
    }

    /// The ISA IRQ delivered on `gsi`, if any (reverse of
    /// [`Platform::resolve_isa_irq`]), e.g. to name an interrupt in logs. When several
    /// overrides share `gsi` ([`Diagnostic::OverrideGsiConflict`]), the lowest-numbered IRQ.
    pub fn isa_irq_for_gsi(&self, gsi: u32) -> Option<u8> {
        if let Some(o) = self.isa_overrides().find(|o| o.gsi == gsi) {
            return Some(o.source);
        }
        if (gsi as usize) < ISA_IRQS && self.overrides[gsi as usize].is_none() {
            return Some(gsi as u8);
        }
        None
    }

    // ----- NMIs -----

    /// GSIs wired to NMI.
    pub fn nmi_sources(&self) -> &[NmiSourceEntry] {
        &self.nmi_sources[..self.nmi_source_count]
    }

    /// All valid local APIC NMI entries.
    pub fn lapic_nmis(&self) -> &[LapicNmi] {
        &self.lapic_nmis[..self.lapic_nmi_count]
    }

    /// The LINT0/LINT1 entries for the CPU with `processor_uid`, from the MADT's local
    /// (x2)APIC NMI structures: per pin, an entry naming the UID wins over an "all
    /// processors" one; a pin no entry names is masked. When no entry names this CPU at
    /// all, LINT1 is NMI (the PC convention) and LINT0 masked.
    ///
    /// An NMI pin takes the entry's polarity; its trigger is edge whatever the entry
    /// says: the LVT trigger bit applies to fixed delivery only, NMI is always edge
    /// sensitive (SDM vol. 3 §11.5.1).
    pub fn local_lints(&self, processor_uid: u32) -> LocalLints {
        let entry_for = |lint: u8| {
            let on_pin = || self.lapic_nmis().iter().filter(move |n| n.lint == lint);
            on_pin()
                .find(|n| n.target == NmiTarget::Processor(processor_uid))
                .or_else(|| on_pin().find(|n| n.target == NmiTarget::All))
        };
        let nmi_pin = |entry: Option<&LapicNmi>| match entry {
            Some(n) => LvtLocal { polarity: n.polarity, ..LvtLocal::nmi() },
            None => LvtLocal::masked(),
        };
        let (lint0, lint1) = (entry_for(0), entry_for(1));
        if lint0.is_none() && lint1.is_none() {
            return LocalLints {
                lint0: LvtLocal::masked(),
                lint1: LvtLocal::nmi(),
                source: LintSource::Fallback,
            };
        }
        LocalLints { lint0: nmi_pin(lint0), lint1: nmi_pin(lint1), source: LintSource::Madt }
    }

    // ----- Diagnostics -----

    /// Everything odd found while interpreting the table, in order.
    pub fn diagnostics(&self) -> impl Iterator<Item = Diagnostic> + '_ {
        self.diags[..self.diag_count].iter().copied()
    }

    /// Diagnostics that did not fit in [`MAX_DIAGNOSTICS`] (counted, not stored).
    pub fn diagnostics_dropped(&self) -> usize {
        self.diags_dropped
    }

    /// Counts for the boot log, with reachability computed for `mode`.
    pub fn summary(&self, mode: LapicMode) -> Summary {
        let enabled = self.enabled_cpus().count();
        Summary {
            mode,
            cpus: self.cpu_count,
            enabled,
            online_capable: self.cpu_count - enabled,
            skipped_disabled: self.skipped_disabled,
            duplicates: self.duplicates,
            invalid: self.invalid_cpus,
            dropped_over_capacity: self.dropped_cpus,
            unreachable: self.unreachable_diagnostics(mode).count(),
            ioapics: self.ioapic_count,
            isa_overrides: self.isa_overrides().count(),
            diagnostics: self.diag_count + self.diags_dropped,
        }
    }
}
