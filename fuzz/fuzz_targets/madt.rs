//! MADT interpretation (`keel-platform`): raw table bytes, decoded entry by entry as the
//! kernel does, then interpreted. Checks the documented invariants of the result and that
//! rebuilding a used `Platform` in place (the kernel's `static`) equals a fresh one.
#![no_main]

use std::cell::RefCell;

use keel_fuzz::decode_madt;
use keel_platform::{
    CpuIndex, Diagnostic, LapicMode, Platform, ISA_IRQS, MAX_CPUS, MAX_DIAGNOSTICS, MAX_IOAPICS,
};
use libfuzzer_sys::fuzz_target;

thread_local! {
    /// Rebuilt in place by every input, so it always holds the previous input's machine.
    static REUSED: RefCell<Box<Platform>> = RefCell::new(Box::new(Platform::empty()));
    /// Reset to `Platform::empty()` before each input (one allocation for the whole run).
    static FRESH: RefCell<Box<Platform>> = RefCell::new(Box::new(Platform::empty()));
}

fn check(p: &Platform, bsp_apic_id: u32, saw_ioapic: bool) {
    let cpus = p.cpus();
    assert!(!cpus.is_empty() && cpus.len() <= MAX_CPUS);
    assert_eq!(p.cpu_count(), cpus.len());
    // The running BSP is always CPU index 0, whatever the table says.
    assert_eq!(p.bsp().index, CpuIndex(0));
    assert_eq!(p.bsp().apic_id, bsp_apic_id);
    assert_eq!(p.bsp_apic_id(), bsp_apic_id);
    for (i, c) in cpus.iter().enumerate() {
        // Indices are dense and APIC IDs unique (duplicates become diagnostics).
        assert_eq!(c.index, CpuIndex(i as u32));
        assert_eq!(p.cpu(c.index), Some(c));
        assert_eq!(p.cpu_by_apic_id(c.apic_id).map(|f| f.index), Some(c.index));
    }
    assert!(p.ioapics().len() <= MAX_IOAPICS);
    let diags: Vec<Diagnostic> = p.diagnostics().collect();
    assert!(diags.len() <= MAX_DIAGNOSTICS);
    assert!(p.diagnostics_dropped() == 0 || diags.len() == MAX_DIAGNOSTICS);
    if !saw_ioapic {
        assert!(p.ioapics().is_empty());
    }
    if p.ioapics().is_empty() && diags.len() < MAX_DIAGNOSTICS {
        assert!(diags.contains(&Diagnostic::NoIoApic));
    }
    for mode in [LapicMode::XApic, LapicMode::X2Apic] {
        let s = p.summary(mode);
        assert_eq!(s.cpus, cpus.len());
        assert_eq!(s.enabled + s.online_capable, s.cpus);
        assert_eq!(s.ioapics, p.ioapics().len());
        assert_eq!(s.diagnostics, diags.len() + p.diagnostics_dropped());
        let unreachable = cpus.iter().filter(|c| !Platform::is_reachable(c.apic_id, mode));
        assert_eq!(s.unreachable, unreachable.count());
    }
    // ISA routing: an IRQ resolves to a GSI that maps back to that IRQ. Overrides sharing
    // a GSI are each named in an `OverrideGsiConflict`, and the reverse lookup then gives
    // the lowest-numbered of them, which routes to the same GSI.
    for irq in 0..ISA_IRQS as u8 {
        if let Some(route) = p.resolve_isa_irq(irq) {
            let back = p.isa_irq_for_gsi(route.gsi).expect("a routed GSI has an ISA IRQ");
            if back == irq || p.diagnostics_dropped() > 0 {
                continue;
            }
            let named = diags.iter().any(|d| {
                matches!(*d, Diagnostic::OverrideGsiConflict { gsi, first_source, second_source }
                    if gsi == route.gsi && (first_source == irq || second_source == irq))
            });
            assert!(named, "ISA IRQ {irq} -> {route:?} -> IRQ {back}, no diagnostic");
            assert!(back < irq, "ISA IRQ {irq} -> {route:?} -> IRQ {back}: not the lowest");
            assert_eq!(p.resolve_isa_irq(back).map(|r| r.gsi), Some(route.gsi));
        }
    }
    assert_eq!(p.resolve_isa_irq(ISA_IRQS as u8), None);
    for n in p.lapic_nmis() {
        assert!(n.lint <= 1);
    }
    for c in cpus.iter().take(64) {
        let _ = p.local_lints(c.processor_uid);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(madt) = decode_madt(data) else { return };
    // The BSP's APIC ID: four bytes appended past the table, else the first CPU entry's
    // (where QEMU and real firmware list the BSP), else 0.
    let bsp_apic_id = if madt.trailer_len >= 4 {
        let t = &data[data.len() - 4..];
        u32::from_le_bytes([t[0], t[1], t[2], t[3]])
    } else {
        madt.records
            .iter()
            .find_map(|r| match *r {
                keel_platform::MadtRecord::LocalApic { apic_id, .. }
                | keel_platform::MadtRecord::LocalX2Apic { apic_id, .. } => Some(apic_id),
                _ => None,
            })
            .unwrap_or(0)
    };
    let saw_ioapic =
        madt.records.iter().any(|r| matches!(r, keel_platform::MadtRecord::IoApic { .. }));
    FRESH.with(|fresh| {
        let mut fresh = fresh.borrow_mut();
        **fresh = Platform::empty();
        fresh.rebuild(
            madt.local_apic_address,
            madt.pc_at_compatible,
            madt.records.iter().copied(),
            bsp_apic_id,
        );
        check(&fresh, bsp_apic_id, saw_ioapic);
        compare_with_reused(&fresh, &madt);
    });
});

fn compare_with_reused(fresh: &Platform, madt: &keel_fuzz::MadtBytes) {
    let bsp_apic_id = fresh.bsp_apic_id();
    REUSED.with(|reused| {
        let mut reused = reused.borrow_mut();
        reused.rebuild(
            madt.local_apic_address,
            madt.pc_at_compatible,
            madt.records.iter().copied(),
            bsp_apic_id,
        );
        // "Discards previous contents": nothing of the last machine may survive.
        assert_eq!(format!("{:?}", **reused), format!("{fresh:?}"));
        for mode in [LapicMode::XApic, LapicMode::X2Apic] {
            assert_eq!(reused.summary(mode), fresh.summary(mode));
        }
    });
}
