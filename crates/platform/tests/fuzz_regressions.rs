//! Inputs found by `make fuzz` (the `madt` target), kept as host tests.

use keel_platform::{Diagnostic, MadtRecord, Platform, MADT_CPU_ENABLED};

fn iso(source: u8, gsi: u32) -> MadtRecord {
    MadtRecord::InterruptSourceOverride { bus: 0, source, gsi, flags: 0 }
}

/// The table listed IRQ 5 -> GSI 5 before IRQ 3 -> GSI 5: the conflict names IRQ 5 first,
/// yet the reverse lookup gives IRQ 3, the lower number. The documentation used to promise
/// "the first"; both IRQs are named in the diagnostic and the lookup's rule is documented.
#[test]
fn shared_override_gsi_reverse_lookup_gives_the_lower_irq() {
    let records = [
        MadtRecord::LocalApic { processor_uid: 0, apic_id: 0, flags: MADT_CPU_ENABLED },
        MadtRecord::IoApic { id: 0, address: 0xFEC0_0000, gsi_base: 0 },
        iso(5, 5),
        iso(9, 9),
        iso(3, 5),
    ];
    let mut p = Box::new(Platform::empty());
    p.rebuild(0xFEE0_0000, true, records, 0);
    let conflicts: Vec<Diagnostic> =
        p.diagnostics().filter(|d| matches!(d, Diagnostic::OverrideGsiConflict { .. })).collect();
    assert_eq!(
        conflicts,
        [Diagnostic::OverrideGsiConflict { gsi: 5, first_source: 5, second_source: 3 }]
    );
    assert_eq!(p.resolve_isa_irq(5).map(|r| r.gsi), Some(5));
    assert_eq!(p.resolve_isa_irq(3).map(|r| r.gsi), Some(5));
    assert_eq!(p.isa_irq_for_gsi(5), Some(3));
    assert_eq!(p.isa_irq_for_gsi(9), Some(9));
}
