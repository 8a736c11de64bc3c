//! Address overrides, unknown records, rebuilding, and diagnostic messages.

use super::*;

#[test]
fn lapic_address_override_and_unknown_records() {
    let recs = vec![
        lapic(0, 0, 1),
        IOAPIC0,
        MadtRecord::LocalApicAddressOverride { address: 0x1_FEE0_0000 },
        MadtRecord::LocalApicAddressOverride { address: 0x2_FEE0_0000 },
        MadtRecord::Other { kind: 0x11 },
        MadtRecord::Other { kind: 0x11 },
        MadtRecord::Other { kind: 0xFF },
    ];
    let p = Platform::from_records(0xFEE0_0000, false, recs, 0);
    assert_eq!(p.local_apic_address(), 0x1_FEE0_0000);
    assert!(!p.pc_at_compatible());
    assert_eq!(
        diags(&p),
        [
            Diagnostic::DuplicateLocalApicAddressOverride { address: 0x2_FEE0_0000 },
            Diagnostic::UnhandledRecord { kind: 0x11 },
            Diagnostic::UnhandledRecord { kind: 0xFF },
        ]
    );
}

#[test]
fn rebuild_in_place_resets_state() {
    let mut p = Platform::empty();
    p.rebuild(0xFEE0_0000, true, qemu_q35(), 0);
    assert_eq!(p.cpu_count(), 2);
    p.rebuild(0xFEE0_0000, true, vec![lapic(0, 5, 1), IOAPIC0], 5);
    assert_eq!(p.cpu_count(), 1);
    assert_eq!(p.bsp().apic_id, 5);
    assert_eq!(p.resolve_isa_irq(0).unwrap().gsi, 0);
    assert!(diags(&p).is_empty());
    assert_eq!(p.bsp_apic_id(), 5);
}

#[test]
fn every_diagnostic_displays() {
    let all = [
        Diagnostic::CpuCapacityExceeded { apic_id: 1, capacity: 2 },
        Diagnostic::DuplicateApicId {
            apic_id: 1,
            first_uid: 1,
            duplicate_uid: 2,
            duplicate_source: CpuSource::Type9,
        },
        Diagnostic::DuplicateProcessorUid { processor_uid: 1, apic_id: 2 },
        Diagnostic::InvalidApicId { processor_uid: 1, apic_id: 0xFF, source: CpuSource::Type0 },
        Diagnostic::ReservedCpuFlags { apic_id: 1, flags: 8 },
        Diagnostic::OnlineCapableWhileEnabled { apic_id: 1 },
        Diagnostic::BspNotInTable { apic_id: 1 },
        Diagnostic::BspMarkedDisabled { apic_id: 1 },
        Diagnostic::UnreachableInXApic { apic_id: 300 },
        Diagnostic::IoApicCapacityExceeded { id: 1, capacity: 2 },
        Diagnostic::DuplicateIoApicId { id: 1 },
        Diagnostic::DuplicateIoApicGsiBase { gsi_base: 0, first_id: 1, second_id: 2 },
        Diagnostic::IoApicGsiOverlap { first: 0, second: 1 },
        Diagnostic::NoIoApic,
        Diagnostic::ReservedIntiFlags {
            context: IntiContext::LapicNmi { processor_uid: 1 },
            flags: 2,
        },
        Diagnostic::OverrideNotIsa { bus: 1, source: 2 },
        Diagnostic::OverrideSourceOutOfRange { source: 20 },
        Diagnostic::DuplicateOverride { source: 0, first_gsi: 2, second_gsi: 3 },
        Diagnostic::OverrideGsiConflict { gsi: 2, first_source: 0, second_source: 1 },
        Diagnostic::NmiSourceCapacityExceeded { gsi: 1 },
        Diagnostic::LapicNmiCapacityExceeded { processor_uid: 1 },
        Diagnostic::InvalidLint { processor_uid: 1, lint: 3 },
        Diagnostic::DuplicateLocalApicAddressOverride { address: 1 },
        Diagnostic::UnhandledRecord { kind: 0x11 },
    ];
    for d in all {
        let s = d.to_string();
        assert!(s.len() > 10, "{s}");
    }
    assert_eq!(
        Diagnostic::DuplicateApicId {
            apic_id: 1,
            first_uid: 1,
            duplicate_uid: 2,
            duplicate_source: CpuSource::Type9
        }
        .to_string(),
        "APIC ID 0x1 listed twice (UID 0x1 kept, local x2APIC (type 9) entry with UID 0x2 ignored)"
    );
    assert_eq!(CpuIndex(3).to_string(), "cpu3");
}
