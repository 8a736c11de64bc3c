//! DMAR (`keel-iommu`): the table as firmware hands it over. The checksum is repaired on a
//! copy so mutations reach the structure walk; the raw bytes are parsed too, and must be
//! accepted exactly when their checksum was already right.
#![no_main]

use keel_fuzz::{check_checksum_rule, with_repaired_checksum};
use keel_iommu::dmar::{Structure, STRUCTURES_OFFSET};
use keel_iommu::{Dmar, DmarError, ScopeKind, SourceId};
use libfuzzer_sys::fuzz_target;

fn walk(dmar: &Dmar<'_>) {
    let (mut errors, mut scope_errors, mut walk_ended) = (0, 0, false);
    for s in dmar.structures() {
        // A malformed structure's length cannot be trusted: nothing may follow it.
        assert!(!walk_ended);
        match s {
            Err(e) => {
                errors += 1;
                match e {
                    DmarError::MalformedStructure { .. } => walk_ended = true,
                    DmarError::ShortDrhd { .. } => {}
                    other => panic!("structure walk yielded {other:?}"),
                }
            }
            Ok(Structure::Other { length, .. }) => {
                assert!(length >= 4);
            }
            Ok(Structure::Drhd(d)) => {
                assert!(d.register_pages().is_power_of_two() && d.register_pages() <= 1 << 15);
                for scope in d.scopes() {
                    let Ok(scope) = scope else {
                        scope_errors += 1;
                        break;
                    };
                    let hops: Vec<(u8, u8)> = scope.hops().collect();
                    match scope.source_id() {
                        Some(sid) => {
                            // One hop on the start bus, decoded into its parts and back.
                            assert_eq!(hops.len(), 1);
                            assert_eq!(sid.bus(), scope.start_bus);
                            assert_eq!((sid.device(), sid.function()), hops[0]);
                            assert_eq!(
                                SourceId::new(sid.bus(), sid.device(), sid.function()),
                                Some(sid)
                            );
                        }
                        None => assert!(hops.len() != 1 || hops[0].0 >= 32 || hops[0].1 >= 8),
                    }
                    if scope.kind == ScopeKind::IoApic {
                        let (unit, found) = dmar.ioapic_unit(scope.enumeration_id).unwrap();
                        assert_eq!(found.kind, ScopeKind::IoApic);
                        assert_eq!(found.enumeration_id, scope.enumeration_id);
                        assert!(dmar.units().any(|u| u == unit));
                    }
                }
            }
        }
    }
    assert_eq!(dmar.first_error().is_none(), errors == 0 && scope_errors == 0);
    for segment in [0u16, 1] {
        for sid in [SourceId(0), SourceId(0x0010), SourceId(0x0100), SourceId(0xFFFF)] {
            if let Some(unit) = dmar.unit_for_pci(segment, sid, |_| Some((0, 255))) {
                assert_eq!(unit.segment, segment);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let raw = Dmar::parse(data);
    let fixed = with_repaired_checksum(data);
    let repaired = Dmar::parse(&fixed);
    check_checksum_rule(data, &fixed, &raw, &repaired, |e| matches!(e, DmarError::BadChecksum(_)));
    if let Ok(dmar) = repaired {
        let declared = u32::from_le_bytes(fixed[4..8].try_into().unwrap()) as usize;
        assert!(declared >= STRUCTURES_OFFSET && declared <= fixed.len());
        walk(&dmar);
    }
});
