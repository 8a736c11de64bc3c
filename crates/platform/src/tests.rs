use super::*;
use keel_apic::LvtLocal;

fn lapic(uid: u32, id: u32, flags: u32) -> MadtRecord {
    MadtRecord::LocalApic { processor_uid: uid, apic_id: id, flags }
}

fn x2(uid: u32, id: u32, flags: u32) -> MadtRecord {
    MadtRecord::LocalX2Apic { processor_uid: uid, apic_id: id, flags }
}

fn iso(source: u8, gsi: u32, flags: u16) -> MadtRecord {
    MadtRecord::InterruptSourceOverride { bus: 0, source, gsi, flags }
}

const IOAPIC0: MadtRecord = MadtRecord::IoApic { id: 0, address: 0xFEC0_0000, gsi_base: 0 };

/// QEMU q35, `-smp 2`: what the kernel will see in practice.
fn qemu_q35() -> Vec<MadtRecord> {
    vec![
        lapic(0, 0, 1),
        lapic(1, 1, 1),
        IOAPIC0,
        iso(0, 2, 0x0000),
        iso(5, 5, 0x000D),
        iso(9, 9, 0x000D),
        iso(10, 10, 0x000D),
        iso(11, 11, 0x000D),
        MadtRecord::LocalApicNmi { processor_uid: 0xFF, flags: 0, lint: 1 },
    ]
}

fn diags(p: &Platform) -> Vec<Diagnostic> {
    p.diagnostics().collect()
}

#[test]
fn typical_qemu_tables() {
    let mut p = Platform::from_records(0xFEE0_0000, true, qemu_q35(), 0);
    assert!(diags(&p).is_empty(), "{:?}", diags(&p));
    assert_eq!(p.cpu_count(), 2);
    assert_eq!(p.bsp().apic_id, 0);
    assert_eq!(
        p.cpus()[1],
        CpuEntry {
            index: CpuIndex(1),
            apic_id: 1,
            processor_uid: 1,
            source: CpuSource::Type0,
            state: CpuState::Enabled,
        }
    );
    assert_eq!(p.local_apic_address(), 0xFEE0_0000);
    assert!(p.pc_at_compatible());
    assert_eq!(
        p.ioapics(),
        &[IoApicEntry { id: 0, address: 0xFEC0_0000, gsi_base: 0, pins: None }]
    );

    // IRQ0 -> GSI2, conforming flags = ISA defaults.
    let high_edge =
        |gsi| IrqRoute { gsi, polarity: Polarity::ActiveHigh, trigger: TriggerMode::Edge };
    assert_eq!(p.resolve_isa_irq(0), Some(high_edge(2)));
    // IRQ9: level, active high on q35.
    assert_eq!(
        p.resolve_isa_irq(9),
        Some(IrqRoute { gsi: 9, polarity: Polarity::ActiveHigh, trigger: TriggerMode::Level })
    );
    // No override: identity.
    assert_eq!(p.resolve_isa_irq(1), Some(high_edge(1)));
    assert_eq!(p.resolve_isa_irq(4), Some(high_edge(4)));
    // IRQ2's identity GSI belongs to IRQ0 now.
    assert_eq!(p.resolve_isa_irq(2), None);
    assert_eq!(p.resolve_isa_irq(16), None);
    assert_eq!(p.resolve_isa_irq(255), None);
    // Reverse lookup.
    assert_eq!(p.isa_irq_for_gsi(2), Some(0));
    assert_eq!(p.isa_irq_for_gsi(0), None);
    assert_eq!(p.isa_irq_for_gsi(1), Some(1));
    assert_eq!(p.isa_irq_for_gsi(9), Some(9));
    assert_eq!(p.isa_irq_for_gsi(16), None);

    // The pin count is recorded once the kernel has read it.
    assert_eq!(p.ioapics()[0].pins, None);
    p.set_ioapic_pins(0, 24).unwrap();
    assert_eq!(p.ioapics()[0].pins, Some(24));
    assert_eq!(p.set_ioapic_pins(1, 24), Err(PlatformError::NoSuchIoApic { index: 1 }));
    assert_eq!(p.set_ioapic_pins(0, 0), Err(PlatformError::InvalidPinCount { index: 0, pins: 0 }));
    assert_eq!(
        p.set_ioapic_pins(0, 257),
        Err(PlatformError::InvalidPinCount { index: 0, pins: 257 })
    );

    // NMI on LINT1 for every CPU, from the table.
    for uid in [0, 1] {
        let lints = p.local_lints(uid);
        assert_eq!(lints.source, LintSource::Madt);
        assert_eq!((lints.lint0, lints.lint1), (LvtLocal::masked(), LvtLocal::nmi()));
    }

    let s = p.summary(LapicMode::XApic);
    assert_eq!((s.cpus, s.enabled, s.online_capable, s.skipped_disabled), (2, 2, 0, 0));
    assert_eq!(
        (s.duplicates, s.unreachable, s.ioapics, s.isa_overrides, s.diagnostics),
        (0, 0, 1, 5, 0)
    );
}

#[test]
fn x2apic_tables_with_large_ids() {
    let recs = vec![
        lapic(0, 0, 1),
        lapic(1, 1, 1),
        x2(256, 256, 1),
        x2(257, 257, 1),
        IOAPIC0,
        MadtRecord::LocalX2ApicNmi { processor_uid: 0xFFFF_FFFF, flags: 0, lint: 1 },
    ];
    let p = Platform::from_records(0xFEE0_0000, true, recs, 0);
    assert!(diags(&p).is_empty(), "{:?}", diags(&p));
    assert_eq!(p.cpu_count(), 4);
    let c = p.cpu_by_apic_id(257).unwrap();
    assert_eq!((c.index, c.source), (CpuIndex(3), CpuSource::Type9));
    // xAPIC cannot address 256/257: reported, not truncated to 0/1.
    let xr: Vec<u32> = p
        .cpus()
        .iter()
        .filter(|c| Platform::is_reachable(c.apic_id, LapicMode::XApic))
        .map(|c| c.apic_id)
        .collect();
    assert_eq!(xr, [0, 1]);
    let un: Vec<_> = p.unreachable_diagnostics(LapicMode::XApic).collect();
    assert_eq!(
        un,
        [
            Diagnostic::UnreachableInXApic { apic_id: 256 },
            Diagnostic::UnreachableInXApic { apic_id: 257 }
        ]
    );
    assert_eq!(p.summary(LapicMode::XApic).unreachable, 2);
    assert_eq!(p.unreachable_diagnostics(LapicMode::X2Apic).count(), 0);
    assert_eq!(p.summary(LapicMode::X2Apic).unreachable, 0);
    assert_eq!(p.local_lints(257).lint1, LvtLocal::nmi());
}

#[test]
fn xapic_reachability_boundaries() {
    for (id, reachable) in [(0, true), (254, true), (255, false), (256, false), (257, false)] {
        assert_eq!(Platform::is_reachable(id, LapicMode::XApic), reachable, "id {id}");
        assert!(Platform::is_reachable(id, LapicMode::X2Apic));
    }
    assert!(!Platform::is_reachable(u32::MAX, LapicMode::X2Apic));
    let recs = vec![x2(1, 254, 1), x2(2, 255, 1), x2(3, 256, 1), x2(4, 257, 1)];
    let p = Platform::from_records(0xFEE0_0000, false, recs, 254);
    let ids: Vec<u32> = p.cpus().iter().map(|c| c.apic_id).collect();
    assert_eq!(ids, [254, 255, 256, 257]);
    let un: Vec<_> = p.unreachable_diagnostics(LapicMode::XApic).collect();
    assert_eq!(un.len(), 3);
    assert_eq!(un[0], Diagnostic::UnreachableInXApic { apic_id: 255 });
    assert_eq!(
        un[0].to_string(),
        "CPU with APIC ID 0xff cannot be addressed in xAPIC mode (IDs above 254 need x2APIC); skipped"
    );
}

#[test]
fn duplicate_apic_id_type0_and_type9() {
    let recs = vec![lapic(0, 0, 1), lapic(1, 1, 1), x2(1, 1, 1), x2(7, 0, 1), IOAPIC0];
    let p = Platform::from_records(0xFEE0_0000, true, recs, 0);
    assert_eq!(p.cpu_count(), 2);
    assert_eq!(p.cpu_by_apic_id(1).unwrap().source, CpuSource::Type0);
    assert_eq!(
        diags(&p),
        [
            Diagnostic::DuplicateApicId {
                apic_id: 1,
                first_uid: 1,
                duplicate_uid: 1,
                duplicate_source: CpuSource::Type9
            },
            Diagnostic::DuplicateApicId {
                apic_id: 0,
                first_uid: 0,
                duplicate_uid: 7,
                duplicate_source: CpuSource::Type9
            },
        ]
    );
    assert_eq!(p.summary(LapicMode::X2Apic).duplicates, 2);
}

#[test]
fn duplicate_processor_uid() {
    let p = Platform::from_records(0, false, vec![lapic(0, 0, 1), lapic(0, 1, 1), IOAPIC0], 0);
    assert_eq!(p.cpu_count(), 2);
    assert_eq!(diags(&p), [Diagnostic::DuplicateProcessorUid { processor_uid: 0, apic_id: 1 }]);
}

#[test]
fn bsp_not_first_gets_index_zero() {
    let recs = vec![lapic(0, 0, 1), lapic(1, 2, 1), lapic(2, 4, 1), lapic(3, 6, 1), IOAPIC0];
    let p = Platform::from_records(0xFEE0_0000, true, recs, 4);
    assert!(diags(&p).is_empty());
    let v: Vec<(u32, u32)> = p.cpus().iter().map(|c| (c.index.0, c.apic_id)).collect();
    assert_eq!(v, [(0, 4), (1, 0), (2, 2), (3, 6)]);
    for (i, c) in p.cpus().iter().enumerate() {
        assert_eq!(p.cpu(CpuIndex(i as u32)), Some(c));
    }
    assert_eq!(p.cpu(CpuIndex(4)), None);
}

#[test]
fn bsp_missing_is_added() {
    let p = Platform::from_records(0xFEE0_0000, true, vec![lapic(1, 1, 1), IOAPIC0], 3);
    assert_eq!(diags(&p), [Diagnostic::BspNotInTable { apic_id: 3 }]);
    assert_eq!(p.bsp().apic_id, 3);
    assert_eq!(p.bsp().source, CpuSource::Assumed);
    assert_eq!(p.bsp().processor_uid, UID_UNKNOWN);
    assert_eq!(p.cpus()[1].index, CpuIndex(1));
    assert_eq!(p.cpu_count(), 2);
    // Empty table: still one CPU, and no IOAPIC is reported.
    let p = Platform::from_records(0xFEE0_0000, false, Vec::new(), 0);
    assert_eq!(p.cpu_count(), 1);
    assert_eq!(diags(&p), [Diagnostic::BspNotInTable { apic_id: 0 }, Diagnostic::NoIoApic]);
}

#[test]
fn bsp_marked_disabled_is_kept() {
    let p = Platform::from_records(0, false, vec![lapic(0, 0, 0), lapic(1, 1, 1), IOAPIC0], 0);
    assert_eq!(diags(&p), [Diagnostic::BspMarkedDisabled { apic_id: 0 }]);
    assert_eq!(p.bsp().state, CpuState::Enabled);
    assert_eq!(p.cpu_count(), 2);
}

#[test]
fn disabled_and_online_capable_mix() {
    let recs = vec![
        lapic(0, 0, 1),
        lapic(1, 1, 0), // absent: skipped
        lapic(2, 2, 2), // online capable
        lapic(3, 3, 1),
        x2(4, 300, 0), // absent
        x2(5, 301, 2), // online capable
        IOAPIC0,
    ];
    let p = Platform::from_records(0xFEE0_0000, true, recs, 0);
    assert!(diags(&p).is_empty(), "{:?}", diags(&p));
    let v: Vec<(u32, CpuState)> = p.cpus().iter().map(|c| (c.apic_id, c.state)).collect();
    assert_eq!(
        v,
        [
            (0, CpuState::Enabled),
            (2, CpuState::OnlineCapable),
            (3, CpuState::Enabled),
            (301, CpuState::OnlineCapable)
        ]
    );
    assert_eq!(p.enabled_cpus().count(), 2);
    let s = p.summary(LapicMode::XApic);
    assert_eq!(
        (s.cpus, s.enabled, s.online_capable, s.skipped_disabled, s.unreachable),
        (4, 2, 2, 2, 1)
    );
    // A disabled entry does not block a later enabled one with that ID.
    let p = Platform::from_records(
        0,
        false,
        vec![lapic(0, 0, 1), lapic(1, 1, 0), x2(1, 1, 1), IOAPIC0],
        0,
    );
    assert_eq!(p.cpu_by_apic_id(1).unwrap().source, CpuSource::Type9);
}

#[test]
fn bad_cpu_flags_and_ids() {
    let recs = vec![
        lapic(0, 0, 1),
        lapic(1, 1, 0x1 | 0x8), // reserved bit
        lapic(2, 2, 0x3),       // enabled + online capable (reserved combo)
        lapic(3, 0xFF, 1),      // invalid in type 0
        lapic(4, 0x1FF, 1),     // cannot come from a u8: invalid
        x2(5, u32::MAX, 1),     // broadcast
        IOAPIC0,
    ];
    let p = Platform::from_records(0, false, recs, 0);
    assert_eq!(p.cpu_count(), 3);
    assert_eq!(p.cpu_by_apic_id(2).unwrap().state, CpuState::Enabled);
    assert_eq!(
        diags(&p),
        [
            Diagnostic::ReservedCpuFlags { apic_id: 1, flags: 9 },
            Diagnostic::OnlineCapableWhileEnabled { apic_id: 2 },
            Diagnostic::InvalidApicId { processor_uid: 3, apic_id: 0xFF, source: CpuSource::Type0 },
            Diagnostic::InvalidApicId {
                processor_uid: 4,
                apic_id: 0x1FF,
                source: CpuSource::Type0
            },
            Diagnostic::InvalidApicId {
                processor_uid: 5,
                apic_id: u32::MAX,
                source: CpuSource::Type9
            },
        ]
    );
    assert_eq!(p.summary(LapicMode::X2Apic).invalid, 3);
    // Type 9 may legitimately carry 0xFF.
    let p = Platform::from_records(0, false, vec![lapic(0, 0, 1), x2(9, 0xFF, 1), IOAPIC0], 0);
    assert_eq!(p.cpu_count(), 2);
}

#[test]
fn cpu_capacity_overflow() {
    // BSP listed last, after more CPUs than fit: it still gets index 0.
    let extra = MAX_CPUS as u32 + 88;
    let mut recs: Vec<MadtRecord> = (1..=extra).map(|i| x2(i, i, 1)).collect();
    recs.push(x2(0, 0, 1));
    recs.push(IOAPIC0);
    let p = Platform::from_records(0, false, recs, 0);
    assert_eq!(p.cpu_count(), MAX_CPUS);
    assert_eq!(p.bsp().apic_id, 0);
    assert_eq!(p.cpus()[MAX_CPUS - 1].apic_id, (MAX_CPUS - 1) as u32);
    assert_eq!(p.cpus()[MAX_CPUS - 1].index, CpuIndex((MAX_CPUS - 1) as u32));
    assert_eq!(
        diags(&p),
        [Diagnostic::CpuCapacityExceeded { apic_id: MAX_CPUS as u32, capacity: MAX_CPUS }]
    );
    assert_eq!(p.summary(LapicMode::X2Apic).dropped_over_capacity, extra as usize - (MAX_CPUS - 1));
    // Indices are dense and match positions.
    assert!(p.cpus().iter().enumerate().all(|(i, c)| c.index.0 as usize == i));
}

#[test]
fn other_capacity_overflows_and_diagnostic_flood() {
    let mut recs = vec![lapic(0, 0, 1)];
    for i in 0..20u8 {
        recs.push(MadtRecord::IoApic {
            id: i,
            address: 0xFEC0_0000 + i as u32 * 0x1000,
            gsi_base: i as u32 * 24,
        });
    }
    for i in 0..20u32 {
        recs.push(MadtRecord::NmiSource { flags: 0, gsi: 100 + i });
    }
    for i in 0..(MAX_LAPIC_NMIS as u32 + 1) {
        recs.push(MadtRecord::LocalX2ApicNmi { processor_uid: i, flags: 0, lint: 1 });
    }
    // 200 invalid entries to overflow the diagnostic list.
    for i in 0..200u32 {
        recs.push(lapic(1000 + i, 0xFF, 1));
    }
    let p = Platform::from_records(0, false, recs, 0);
    assert_eq!(p.ioapics().len(), MAX_IOAPICS);
    assert_eq!(p.nmi_sources().len(), MAX_NMI_SOURCES);
    assert_eq!(p.lapic_nmis().len(), MAX_LAPIC_NMIS);
    let d = diags(&p);
    assert_eq!(d.len(), MAX_DIAGNOSTICS);
    assert_eq!(d[0], Diagnostic::IoApicCapacityExceeded { id: 16, capacity: MAX_IOAPICS });
    assert!(d.contains(&Diagnostic::NmiSourceCapacityExceeded { gsi: 116 }));
    assert!(
        d.contains(&Diagnostic::LapicNmiCapacityExceeded { processor_uid: MAX_LAPIC_NMIS as u32 })
    );
    assert!(p.diagnostics_dropped() > 0);
    assert_eq!(p.summary(LapicMode::XApic).diagnostics, MAX_DIAGNOSTICS + p.diagnostics_dropped());
}

mod interrupts;
mod misc;

#[test]
fn duplicates_found_above_and_below_the_bitmap() {
    // IDs below the duplicate bitmap's range are checked in O(1), larger ones by a scan:
    // both must still be diagnosed and dropped.
    let recs =
        vec![x2(0, 0, 1), x2(1, 5, 1), x2(2, 40_000, 1), x2(3, 5, 1), x2(4, 40_000, 1), IOAPIC0];
    let p = Platform::from_records(0, false, recs, 0);
    assert_eq!(p.cpu_count(), 3);
    assert_eq!(p.summary(LapicMode::X2Apic).duplicates, 2);
    // Rebuilding in place forgets the previous machine's IDs.
    let mut q = p.clone();
    q.rebuild(0, false, vec![x2(0, 0, 1), x2(1, 5, 1), IOAPIC0], 0);
    assert_eq!(q.cpu_count(), 2);
    assert_eq!(q.summary(LapicMode::X2Apic).duplicates, 0);
}
