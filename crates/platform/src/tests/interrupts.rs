//! IOAPICs, interrupt source overrides and NMI wiring.

use super::*;

#[test]
fn ioapic_duplicates_and_overlap() {
    let recs = vec![
        lapic(0, 0, 1),
        MadtRecord::IoApic {
            id: 1,
            address: 0xFEC0_0000,
            gsi_base: 0,
        },
        MadtRecord::IoApic {
            id: 1,
            address: 0xFEC0_1000,
            gsi_base: 24,
        },
        MadtRecord::IoApic {
            id: 2,
            address: 0xFEC0_2000,
            gsi_base: 0,
        },
        MadtRecord::IoApic {
            id: 3,
            address: 0xFEC0_3000,
            gsi_base: 40,
        },
    ];
    let mut p = Platform::from_records(0, false, recs, 0);
    assert_eq!(
        diags(&p),
        [
            Diagnostic::DuplicateIoApicId { id: 1 },
            Diagnostic::DuplicateIoApicGsiBase {
                gsi_base: 0,
                first_id: 1,
                second_id: 2
            },
        ]
    );
    p.set_ioapic_pins(0, 24).unwrap();
    p.set_ioapic_pins(1, 24).unwrap(); // 24..48
    p.set_ioapic_pins(3, 24).unwrap(); // 40..64 overlaps #1
    p.set_ioapic_pins(3, 24).unwrap(); // same again: not reported twice
    assert_eq!(
        diags(&p)[2..],
        [Diagnostic::IoApicGsiOverlap {
            first: 1,
            second: 3
        }]
    );
    assert_eq!(p.ioapic_for_gsi(30), Some((1, 6)));
    assert_eq!(p.ioapic_for_gsi(45), Some((1, 21))); // lower index wins
    assert_eq!(p.ioapic_for_gsi(50), Some((3, 10)));
    assert_eq!(p.ioapic_for_gsi(64), None);
    assert_eq!(p.ioapic_for_gsi(u32::MAX), None);
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
    use Trigger::*;
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
        MadtRecord::InterruptSourceOverride {
            bus: 1,
            source: 3,
            gsi: 20,
            flags: 0,
        },
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
            Diagnostic::DuplicateOverride {
                source: 0,
                first_gsi: 2,
                second_gsi: 5
            },
            Diagnostic::OverrideGsiConflict {
                gsi: 2,
                first_source: 0,
                second_source: 1
            },
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
        MadtRecord::NmiSource {
            flags: 0b1111,
            gsi: 17,
        },
        MadtRecord::NmiSource {
            flags: 0b0110,
            gsi: 18,
        },
        MadtRecord::LocalApicNmi {
            processor_uid: 0xFF,
            flags: 0b0101,
            lint: 1,
        },
        MadtRecord::LocalApicNmi {
            processor_uid: 1,
            flags: 0b1111,
            lint: 0,
        },
        MadtRecord::LocalApicNmi {
            processor_uid: 2,
            flags: 0,
            lint: 2,
        },
        // In type 0xA, UID 0xFF is a real processor, not "all".
        MadtRecord::LocalX2ApicNmi {
            processor_uid: 0xFF,
            flags: 0,
            lint: 0,
        },
    ];
    let p = Platform::from_records(0, true, recs, 0);
    assert_eq!(
        p.nmi_sources(),
        &[
            NmiSourceEntry {
                gsi: 17,
                polarity: Polarity::ActiveLow,
                trigger: Trigger::Level
            },
            NmiSourceEntry {
                gsi: 18,
                polarity: Polarity::ActiveHigh,
                trigger: Trigger::Edge
            },
        ]
    );
    assert_eq!(
        p.lapic_nmi_for(0),
        Some((1, Polarity::ActiveHigh, Trigger::Edge))
    );
    assert_eq!(
        p.lapic_nmi_for(1),
        Some((0, Polarity::ActiveLow, Trigger::Level))
    );
    assert_eq!(
        p.lapic_nmi_for(2),
        Some((1, Polarity::ActiveHigh, Trigger::Edge))
    );
    assert_eq!(
        p.lapic_nmi_for(0xFF),
        Some((0, Polarity::ActiveHigh, Trigger::Edge))
    );
    assert_eq!(p.lapic_nmis()[0].target, NmiTarget::All);
    assert_eq!(p.lapic_nmis()[2].target, NmiTarget::Processor(0xFF));
    assert_eq!(
        diags(&p),
        [
            Diagnostic::ReservedIntiFlags {
                context: IntiContext::NmiSource { gsi: 18 },
                flags: 6
            },
            Diagnostic::InvalidLint {
                processor_uid: 2,
                lint: 2
            },
        ]
    );
    // No NMI entries at all.
    let p = Platform::from_records(0, true, vec![lapic(0, 0, 1), IOAPIC0], 0);
    assert_eq!(p.lapic_nmi_for(0), None);
}
