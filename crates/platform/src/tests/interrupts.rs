//! IOAPICs, interrupt source overrides and NMI wiring.

use super::*;
use keel_apic::LvtLocal;

#[test]
fn ioapic_duplicates_and_overlap() {
    let recs = vec![
        lapic(0, 0, 1),
        MadtRecord::IoApic { id: 1, address: 0xFEC0_0000, gsi_base: 0 },
        MadtRecord::IoApic { id: 1, address: 0xFEC0_1000, gsi_base: 24 },
        MadtRecord::IoApic { id: 2, address: 0xFEC0_2000, gsi_base: 0 },
        MadtRecord::IoApic { id: 3, address: 0xFEC0_3000, gsi_base: 40 },
    ];
    let mut p = Platform::from_records(0, false, recs, 0);
    assert_eq!(
        diags(&p),
        [
            Diagnostic::DuplicateIoApicId { id: 1 },
            Diagnostic::DuplicateIoApicGsiBase { gsi_base: 0, first_id: 1, second_id: 2 },
        ]
    );
    p.set_ioapic_pins(0, 24).unwrap();
    p.set_ioapic_pins(1, 24).unwrap(); // 24..48
    p.set_ioapic_pins(3, 24).unwrap(); // 40..64 overlaps #1
    p.set_ioapic_pins(3, 24).unwrap(); // same again: not reported twice
    assert_eq!(diags(&p)[2..], [Diagnostic::IoApicGsiOverlap { first: 1, second: 3 }]);
}

#[test]
fn override_flag_decoding() {
    let recs = vec![
        lapic(0, 0, 1),
        IOAPIC0,
        iso(1, 1, 0b0000),   // conforms: high, edge
        iso(3, 3, 0b0101),   // high, edge explicit
        iso(4, 4, 0b1111),   // low, level
        iso(5, 5, 0b0011),   // low, edge
        iso(6, 6, 0b1101),   // high, level
        iso(7, 7, 0b0010),   // reserved polarity -> default high
        iso(8, 8, 0b1000),   // reserved trigger -> default edge
        iso(12, 12, 0x0013), // reserved upper bits
    ];
    let p = Platform::from_records(0, true, recs, 0);
    let r = |irq| {
        let x = p.resolve_isa_irq(irq).unwrap();
        (x.polarity, x.trigger)
    };
    use Polarity::*;
    use TriggerMode::*;
    assert_eq!(r(1), (ActiveHigh, Edge));
    assert_eq!(r(3), (ActiveHigh, Edge));
    assert_eq!(r(4), (ActiveLow, Level));
    assert_eq!(r(5), (ActiveLow, Edge));
    assert_eq!(r(6), (ActiveHigh, Level));
    assert_eq!(r(7), (ActiveHigh, Edge));
    assert_eq!(r(8), (ActiveHigh, Edge));
    assert_eq!(r(12), (ActiveLow, Edge));
    assert_eq!(
        diags(&p),
        [
            Diagnostic::ReservedIntiFlags {
                context: IntiContext::Override { source: 7 },
                flags: 2
            },
            Diagnostic::ReservedIntiFlags {
                context: IntiContext::Override { source: 8 },
                flags: 8
            },
            Diagnostic::ReservedIntiFlags {
                context: IntiContext::Override { source: 12 },
                flags: 0x13
            },
        ]
    );
    assert_eq!(
        diags(&p)[0].to_string(),
        "interrupt source override for IRQ 7 has reserved INTI flags 0x0002; bus default used for the reserved field"
    );
}

#[test]
fn bad_overrides() {
    let recs = vec![
        lapic(0, 0, 1),
        IOAPIC0,
        MadtRecord::InterruptSourceOverride { bus: 1, source: 3, gsi: 20, flags: 0 },
        iso(16, 20, 0),
        iso(0, 2, 0),
        iso(0, 5, 0), // duplicate for IRQ0
        iso(1, 2, 0), // also GSI 2
    ];
    let p = Platform::from_records(0, true, recs, 0);
    assert_eq!(
        diags(&p),
        [
            Diagnostic::OverrideNotIsa { bus: 1, source: 3 },
            Diagnostic::OverrideSourceOutOfRange { source: 16 },
            Diagnostic::DuplicateOverride { source: 0, first_gsi: 2, second_gsi: 5 },
            Diagnostic::OverrideGsiConflict { gsi: 2, first_source: 0, second_source: 1 },
        ]
    );
    assert_eq!(p.resolve_isa_irq(0).unwrap().gsi, 2);
    assert_eq!(p.resolve_isa_irq(3).unwrap().gsi, 3); // non-ISA override ignored
    assert_eq!(p.isa_irq_for_gsi(2), Some(0));
    assert_eq!(p.isa_irq_for_gsi(5), Some(5));
}

#[test]
fn nmi_wiring() {
    let recs = vec![
        lapic(0, 0, 1),
        lapic(1, 1, 1),
        lapic(2, 2, 1),
        IOAPIC0,
        MadtRecord::NmiSource { flags: 0b1111, gsi: 17 },
        MadtRecord::NmiSource { flags: 0b0110, gsi: 18 },
        MadtRecord::LocalApicNmi { processor_uid: 0xFF, flags: 0b0101, lint: 1 },
        MadtRecord::LocalApicNmi { processor_uid: 1, flags: 0b1111, lint: 0 },
        MadtRecord::LocalApicNmi { processor_uid: 2, flags: 0, lint: 2 },
        // In type 0xA, UID 0xFF is a real processor, not "all".
        MadtRecord::LocalX2ApicNmi { processor_uid: 0xFF, flags: 0, lint: 0 },
    ];
    let p = Platform::from_records(0, true, recs, 0);
    assert_eq!(
        p.nmi_sources(),
        &[
            NmiSourceEntry { gsi: 17, polarity: Polarity::ActiveLow, trigger: TriggerMode::Level },
            NmiSourceEntry { gsi: 18, polarity: Polarity::ActiveHigh, trigger: TriggerMode::Edge },
        ]
    );
    let nmi = LvtLocal::nmi();
    let nmi_low = LvtLocal { polarity: Polarity::ActiveLow, ..nmi };
    let lints = |uid| {
        let l = p.local_lints(uid);
        (l.lint0, l.lint1, l.source)
    };
    // UID 0: only the "all" entry (LINT1).
    assert_eq!(lints(0), (LvtLocal::masked(), nmi, LintSource::Madt));
    // UID 1: its own LINT0 entry (active low; the level trigger is not an NMI's) and the
    // "all" entry's LINT1.
    assert_eq!(lints(1), (nmi_low, nmi, LintSource::Madt));
    // UID 2: its LINT2 entry is invalid; the "all" entry applies.
    assert_eq!(lints(2), (LvtLocal::masked(), nmi, LintSource::Madt));
    // UID 0xFF (named by the x2APIC entry): LINT0 of its own, LINT1 from "all".
    assert_eq!(lints(0xFF), (nmi, nmi, LintSource::Madt));
    assert_eq!(p.lapic_nmis()[0].target, NmiTarget::All);
    assert_eq!(p.lapic_nmis()[2].target, NmiTarget::Processor(0xFF));
    assert_eq!(
        diags(&p),
        [
            Diagnostic::ReservedIntiFlags { context: IntiContext::NmiSource { gsi: 18 }, flags: 6 },
            Diagnostic::InvalidLint { processor_uid: 2, lint: 2 },
        ]
    );
    // No NMI entries at all: LINT1 = NMI by convention.
    let p = Platform::from_records(0, true, vec![lapic(0, 0, 1), IOAPIC0], 0);
    let l = p.local_lints(0);
    assert_eq!((l.lint0, l.lint1, l.source), (LvtLocal::masked(), nmi, LintSource::Fallback));
}

#[test]
fn lint_entry_for_one_processor_wins_over_all_and_others_fall_back() {
    let recs = vec![
        lapic(0, 0, 1),
        lapic(1, 1, 1),
        // x2APIC "all" (0xFFFFFFFF): LINT0 active high.
        MadtRecord::LocalX2ApicNmi { processor_uid: 0xFFFF_FFFF, flags: 0, lint: 0 },
        // UID 1's own LINT0: active low.
        MadtRecord::LocalApicNmi { processor_uid: 1, flags: 0b0011, lint: 0 },
        // Only UID 7 (absent) gets LINT1.
        MadtRecord::LocalApicNmi { processor_uid: 7, flags: 0, lint: 1 },
    ];
    let p = Platform::from_records(0, true, recs, 0);
    let nmi = LvtLocal::nmi();
    let l0 = p.local_lints(0);
    assert_eq!((l0.lint0, l0.lint1, l0.source), (nmi, LvtLocal::masked(), LintSource::Madt));
    let l1 = p.local_lints(1);
    assert_eq!(l1.lint0, LvtLocal { polarity: Polarity::ActiveLow, ..nmi });
    assert_eq!(l1.lint1, LvtLocal::masked());
    // A CPU no entry names: the table has entries, none for it, so the convention holds.
    let p = Platform::from_records(
        0,
        true,
        vec![
            lapic(0, 0, 1),
            lapic(3, 3, 1),
            MadtRecord::LocalApicNmi { processor_uid: 0, flags: 0, lint: 1 },
        ],
        0,
    );
    assert_eq!(p.local_lints(3).source, LintSource::Fallback);
    assert_eq!(p.local_lints(3).lint1, nmi);
}
