//! IVRS (`keel-iommu`): the AMD-Vi table as firmware hands it over. As for the DMAR, the
//! checksum is repaired on a copy so mutations reach the block and device-entry walks, and
//! the raw bytes must be accepted exactly when their checksum was already right.
#![no_main]

use keel_fuzz::{check_checksum_rule, with_repaired_checksum};
use keel_iommu::ivrs::{Block, DeviceEntry, Ivrs, IvrsError, BLOCKS_OFFSET, ENTRY_ACPI_HID};
use libfuzzer_sys::fuzz_target;

/// Walks one IVHD's entries; returns whether any entry was malformed or a range left
/// unpaired (a start while one is open, an end with none open, a start never closed),
/// worked out here independently of the crate's `first_error`.
fn entries(unit: &keel_iommu::ivrs::Ivhd<'_>) -> bool {
    let mut ended = false;
    let mut malformed = false;
    let mut open = false;
    for e in unit.entries() {
        // A malformed entry's length cannot be trusted: nothing may follow it.
        assert!(!ended);
        match e {
            // A type of unknown length, or an entry running past the IVHD's end.
            Err(IvrsError::MalformedEntry { .. }) => {
                ended = true;
                malformed = true;
            }
            Err(other) => panic!("entry walk yielded {other:?}"),
            Ok(entry) => {
                match entry {
                    DeviceEntry::RangeStart { .. } | DeviceEntry::AliasRangeStart { .. } => {
                        malformed |= open;
                        open = true;
                    }
                    DeviceEntry::RangeEnd { .. } => {
                        malformed |= !open;
                        open = false;
                    }
                    _ => {}
                }
                let len = entry.length();
                match entry {
                    DeviceEntry::AcpiHid { hid, uid, .. } => {
                        assert_eq!(hid.len(), 8);
                        assert_eq!(len, 22 + uid.len());
                    }
                    DeviceEntry::Unknown { kind } => {
                        assert!(kind < 0x80 && kind != ENTRY_ACPI_HID);
                        assert_eq!(len, 4 << (kind >> 6));
                    }
                    _ => assert!(len == 4 || len == 8),
                }
            }
        }
    }
    malformed | open
}

fn walk(ivrs: &Ivrs<'_>, declared: usize) {
    let (mut errors, mut ended) = (false, false);
    let mut offset = BLOCKS_OFFSET;
    for b in ivrs.blocks() {
        assert!(!ended);
        match b {
            Err(IvrsError::MalformedBlock { offset: at }) => {
                assert!(offset == usize::MAX || at == offset);
                assert!(at >= BLOCKS_OFFSET && at < declared);
                errors = true;
                ended = true;
            }
            Err(IvrsError::ShortIvhd { offset: at, kind }) => {
                assert!(offset == usize::MAX || at == offset);
                assert!(matches!(kind, 0x10 | 0x11 | 0x40));
                errors = true;
                // A short IVHD still has a trustworthy length: the walk goes on, but the
                // block's length is unknown here, so stop checking offsets.
                offset = usize::MAX;
            }
            Err(other) => panic!("block walk yielded {other:?}"),
            Ok(Block::Other { kind, length }) => {
                assert!(length >= 4);
                assert!(!matches!(kind, 0x10 | 0x11 | 0x40));
                offset = offset.saturating_add(length as usize);
            }
            Ok(Block::Ivhd(unit)) => {
                let bad = entries(&unit);
                assert_eq!(unit.first_error().is_some(), bad);
                errors |= bad;
                for range in unit.device_ranges() {
                    assert!(range.first <= range.last);
                    assert!(unit.serves(range.first) && unit.serves(range.last));
                }
                // Block lengths are not exposed for IVHDs; stop checking offsets.
                offset = usize::MAX;
            }
        }
        if offset != usize::MAX {
            assert!(offset <= declared);
        }
    }
    assert_eq!(ivrs.first_error().is_none(), !errors);

    // One preferred IVHD per IOMMU, always one of the units, of the highest type listed.
    let preferred: Vec<_> = ivrs.preferred_units().collect();
    for (i, p) in preferred.iter().enumerate() {
        assert!(ivrs.units().any(|u| u == *p));
        for q in &preferred[i + 1..] {
            assert!((p.device_id, p.segment) != (q.device_id, q.segment));
        }
    }
    for u in ivrs.units() {
        let p = preferred
            .iter()
            .find(|p| (p.device_id, p.segment) == (u.device_id, u.segment))
            .expect("every IOMMU has a preferred IVHD");
        let rank = |t: u8| [0x10, 0x11, 0x40].iter().position(|k| *k == t).unwrap();
        assert!(rank(p.kind.raw()) >= rank(u.kind.raw()));
        assert_eq!(u.efr_image.is_some(), u.kind.raw() != 0x10);
    }
    // A special device found for an IOAPIC or HPET is named by a preferred unit's entry.
    for handle in [0u8, 1, 0x20, 0xFF] {
        for (found, variety) in [(ivrs.ioapic_device(handle), 1u8), (ivrs.hpet_device(handle), 2)] {
            if let Some((unit, device_id)) = found {
                assert!(preferred.contains(&unit));
                assert!(unit.entries().map_while(Result::ok).any(|e| matches!(
                    e,
                    DeviceEntry::Special { handle: h, device_id: d, variety: v, .. }
                        if h == handle && d == device_id && v == variety
                )));
                assert!(unit.serves(device_id));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let raw = Ivrs::parse(data);
    let fixed = with_repaired_checksum(data);
    let repaired = Ivrs::parse(&fixed);
    check_checksum_rule(data, &fixed, &raw, &repaired, |e| matches!(e, IvrsError::BadChecksum(_)));
    if let Ok(ivrs) = repaired {
        let declared = u32::from_le_bytes(fixed[4..8].try_into().unwrap()) as usize;
        assert!(declared >= BLOCKS_OFFSET && declared <= fixed.len());
        walk(&ivrs, declared);
    }
});
