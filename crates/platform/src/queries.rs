//! What the interpreted MADT says, as queries: CPUs, APIC addresses, IOAPIC routing, NMIs
//! and diagnostics. Building the [`Platform`] from the table lives in the crate root.

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
    /// xAPIC destinations are 8 bits with 0xFF as broadcast, so only 0..=254;
    /// x2APIC excludes only the broadcast 0xFFFFFFFF.
    pub const fn is_reachable(apic_id: u32, mode: ApicMode) -> bool {
        match mode {
            ApicMode::XApic => apic_id <= 0xFE,
            ApicMode::X2Apic => apic_id != u32::MAX,
        }
    }

    /// CPUs that can be addressed in `mode`; the kernel starts only these.
    pub fn reachable_cpus(&self, mode: ApicMode) -> impl Iterator<Item = &CpuEntry> + '_ {
        self.cpus()
            .iter()
            .filter(move |c| Self::is_reachable(c.apic_id, mode))
    }

    /// One [`Diagnostic::UnreachableInXApic`] per CPU that cannot be addressed
    /// in `mode` (none in x2APIC mode), for the kernel to print.
    pub fn unreachable_diagnostics(&self, mode: ApicMode) -> impl Iterator<Item = Diagnostic> + '_ {
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
    /// [`Platform::set_ioapic_pins`] and [`Platform::ioapic_for_gsi`].
    pub fn ioapics(&self) -> &[IoApicEntry] {
        &self.ioapics[..self.ioapic_count]
    }

    /// Records how many redirection entries IOAPIC `index` has (read by the
    /// kernel from its version register), enabling [`Platform::ioapic_for_gsi`].
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

    /// Which IOAPIC (index) and pin serve `gsi`; `None` if no IOAPIC with a
    /// known pin count covers it.
    pub fn ioapic_for_gsi(&self, gsi: u32) -> Option<(usize, u32)> {
        self.ioapics().iter().enumerate().find_map(|(i, io)| {
            let pins = io.pins?;
            let off = gsi.checked_sub(io.gsi_base)?;
            (off < pins).then_some((i, off))
        })
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
            return Some(IrqRoute {
                gsi: o.gsi,
                polarity: o.polarity,
                trigger: o.trigger,
            });
        }
        if self.isa_overrides().any(|o| o.gsi == irq as u32) {
            return None;
        }
        Some(IrqRoute {
            gsi: irq as u32,
            polarity: Polarity::ActiveHigh,
            trigger: Trigger::Edge,
        })
    }

    /// The ISA IRQ delivered on `gsi`, if any (reverse of
    /// [`Platform::resolve_isa_irq`]), e.g. to name an interrupt in logs.
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

    /// The LINT pin (and its polarity/trigger) to program as NMI on the CPU
    /// with `processor_uid`: an entry naming the UID wins over an "all" entry.
    pub fn lapic_nmi_for(&self, processor_uid: u32) -> Option<(u8, Polarity, Trigger)> {
        let nmis = self.lapic_nmis();
        nmis.iter()
            .find(|n| n.target == NmiTarget::Processor(processor_uid))
            .or_else(|| nmis.iter().find(|n| n.target == NmiTarget::All))
            .map(|n| (n.lint, n.polarity, n.trigger))
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
    pub fn summary(&self, mode: ApicMode) -> Summary {
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
