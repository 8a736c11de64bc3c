use super::*;
use keel_testkit::XorShift;

/// The IVRS QEMU 10.0 builds for q35 with `-device amd-iommu,intremap=on,xtsup=on`, copied
/// from guest memory: one IOMMU (00:03.0, registers at 0xFED80000) described twice, by a
/// type-0x10 and a type-0x11 IVHD, each selecting the host bridge, VGA, the IOMMU itself and
/// the ICH9 functions 1F.0/2/3, and naming IOAPIC 0 as requester 00:14.0.
const QEMU_XTSUP: &[u8] = &[
    0x49, 0x56, 0x52, 0x53, 0xb8, 0x00, 0x00, 0x00, 0x01, 0x1b, 0x42, 0x4f, 0x43, 0x48, 0x53, 0x20,
    0x42, 0x58, 0x50, 0x43, 0x20, 0x20, 0x20, 0x20, 0x01, 0x00, 0x00, 0x00, 0x42, 0x58, 0x50, 0x43,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x10, 0xd1, 0x3c, 0x00, 0x18, 0x00, 0x40, 0x00, 0x00, 0x00, 0xd8, 0xfe, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x45, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, 0x00,
    0x02, 0x10, 0x00, 0x00, 0x02, 0x18, 0x00, 0x00, 0x02, 0xf8, 0x00, 0x00, 0x02, 0xfa, 0x00, 0x00,
    0x02, 0xfb, 0x00, 0x00, 0x48, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x00, 0x01, 0x11, 0x11, 0x4c, 0x00,
    0x18, 0x00, 0x40, 0x00, 0x00, 0x00, 0xd8, 0xfe, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0xd7, 0x29, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, 0x00, 0x02, 0x10, 0x00, 0x00,
    0x02, 0x18, 0x00, 0x00, 0x02, 0xf8, 0x00, 0x00, 0x02, 0xfa, 0x00, 0x00, 0x02, 0xfb, 0x00, 0x00,
    0x48, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x00, 0x01,
];

/// Builds IVRS tables byte by byte, fixing length and checksum at the end.
struct TableBuilder {
    bytes: Vec<u8>,
}

impl TableBuilder {
    fn new(ivinfo: u32) -> Self {
        let mut bytes = vec![0u8; BLOCKS_OFFSET];
        bytes[..4].copy_from_slice(b"IVRS");
        bytes[8] = 2;
        bytes[36..40].copy_from_slice(&ivinfo.to_le_bytes());
        TableBuilder { bytes }
    }

    /// An IVHD of `kind` for IOMMU `device_id`, with `word` as its feature word (0x10) and
    /// `efr` as its EFR image (0x11/0x40).
    fn ivhd(
        mut self,
        kind: u8,
        device_id: u16,
        base: u64,
        word: u32,
        efr: u64,
        entries: &[u8],
    ) -> Self {
        let fixed = if kind == 0x10 { IVHD10_ENTRIES_OFFSET } else { IVHD11_ENTRIES_OFFSET };
        let len = fixed + entries.len();
        self.bytes.extend_from_slice(&[kind, 0]);
        self.bytes.extend_from_slice(&(len as u16).to_le_bytes());
        self.bytes.extend_from_slice(&device_id.to_le_bytes());
        self.bytes.extend_from_slice(&0x40u16.to_le_bytes());
        self.bytes.extend_from_slice(&base.to_le_bytes());
        self.bytes.extend_from_slice(&0u16.to_le_bytes()); // segment
        self.bytes.extend_from_slice(&0u16.to_le_bytes()); // info
        self.bytes.extend_from_slice(&word.to_le_bytes());
        if kind != 0x10 {
            self.bytes.extend_from_slice(&efr.to_le_bytes());
            self.bytes.extend_from_slice(&0u64.to_le_bytes());
        }
        self.bytes.extend_from_slice(entries);
        self
    }

    fn other(mut self, kind: u8, body: usize) -> Self {
        self.bytes.extend_from_slice(&[kind, 0]);
        self.bytes.extend_from_slice(&((4 + body) as u16).to_le_bytes());
        self.bytes.extend(core::iter::repeat_n(0xAB, body));
        self
    }

    fn build(self) -> Vec<u8> {
        refix(self.bytes)
    }
}

fn refix(mut b: Vec<u8>) -> Vec<u8> {
    if b.len() < 10 {
        return b;
    }
    let len = b.len() as u32;
    b[4..8].copy_from_slice(&len.to_le_bytes());
    b[9] = 0;
    let sum = b.iter().fold(0u8, |s, x| s.wrapping_add(*x));
    b[9] = 0u8.wrapping_sub(sum);
    b
}

fn select(device_id: u16) -> [u8; 4] {
    let d = device_id.to_le_bytes();
    [2, d[0], d[1], 0]
}

fn special(handle: u8, device_id: u16, variety: u8) -> [u8; 8] {
    let d = device_id.to_le_bytes();
    [0x48, 0, 0, 0xD7, handle, d[0], d[1], variety]
}

#[test]
fn qemu_table_describes_one_iommu_twice_with_xt_and_ga() {
    let ivrs = Ivrs::parse(QEMU_XTSUP).unwrap();
    assert_eq!(ivrs.first_error(), None);
    assert!(ivrs.info.efr_supported());
    assert_eq!(ivrs.info.pa_size(), 40);
    let all: Vec<_> = ivrs.units().collect();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].kind, IvhdType::Legacy10);
    assert_eq!(all[1].kind, IvhdType::Efr11);
    for h in &all {
        assert_eq!(h.device_id, 0x0018); // 00:03.0
        assert_eq!(h.base_address, 0xFED8_0000);
        assert_eq!(h.segment, 0);
        assert_eq!(h.capability_offset, 0x40);
        assert_eq!(h.features(), Features { xt: true, ga: true });
    }
    // Type 0x10 reports through its feature word, 0x11 through the EFR image.
    assert_eq!(all[0].feature_word, 0x45);
    assert_eq!(all[0].efr_image, None);
    assert_eq!(all[1].efr_image, Some(0x29D7));
    let preferred: Vec<_> = ivrs.preferred_units().collect();
    assert_eq!(preferred, vec![all[1]]);
    let (unit, devid) = ivrs.ioapic_device(0).unwrap();
    assert_eq!((unit.kind, devid), (IvhdType::Efr11, 0x00A0)); // 00:14.0
    assert_eq!(ivrs.ioapic_device(1), None);
    assert_eq!(ivrs.hpet_device(0), None);
    let ids: Vec<u16> = unit.device_ranges().map(|r| r.first).collect();
    assert_eq!(ids, [0x00, 0x08, 0x10, 0x18, 0xF8, 0xFA, 0xFB]);
    assert!(unit.serves(0x00A0) && unit.serves(0xFA) && !unit.serves(0x0100));
}

#[test]
fn without_xtsup_the_image_lacks_xt() {
    let efr = 0x29D7 & !Efr::XT;
    let b = TableBuilder::new(1)
        .ivhd(0x10, 0x18, 0xFED8_0000, 0x44, 0, &select(0))
        .ivhd(0x11, 0x18, 0xFED8_0000, 0, efr, &select(0))
        .build();
    let ivrs = Ivrs::parse(&b).unwrap();
    let unit = ivrs.preferred_units().next().unwrap();
    assert_eq!(unit.kind, IvhdType::Efr11);
    assert_eq!(unit.features(), Features { xt: false, ga: true });
    let legacy = ivrs.units().next().unwrap();
    assert_eq!(legacy.features(), Features { xt: false, ga: true });
}

#[test]
fn highest_type_wins_per_iommu_and_distinct_iommus_all_stay() {
    let b = TableBuilder::new(1)
        .ivhd(0x40, 0x18, 0xFED8_0000, 0, Efr::XT, &[])
        .ivhd(0x10, 0x18, 0xFED8_0000, 0, 0, &[])
        .ivhd(0x11, 0x18, 0xFED8_0000, 0, 0, &[])
        .ivhd(0x10, 0x1000, 0xFD00_0000, 0, 0, &[])
        .other(0x20, 28)
        .build();
    let ivrs = Ivrs::parse(&b).unwrap();
    assert_eq!(ivrs.first_error(), None);
    let kinds: Vec<_> = ivrs.preferred_units().map(|u| (u.kind, u.device_id)).collect();
    assert_eq!(kinds, [(IvhdType::Efr40, 0x18), (IvhdType::Legacy10, 0x1000)]);
    assert!(ivrs.blocks().any(|b| matches!(b, Ok(Block::Other { kind: 0x20, length: 32 }))));
}

#[test]
fn ranges_aliases_and_specials() {
    let mut e = Vec::new();
    e.extend_from_slice(&[3, 0x00, 0x01, 0x11]); // range start 01:00.0, setting 0x11
    e.extend_from_slice(&[4, 0xFF, 0x01, 0]); // range end 01:1f.7
    e.extend_from_slice(&[0x42, 0x08, 0x02, 0, 0, 0x00, 0x02, 0]); // alias select 02:01.0 -> 02:00.0
    e.extend_from_slice(&[0x43, 0x00, 0x03, 0, 0, 0x10, 0x00, 0]); // alias range 03:00.0..
    e.extend_from_slice(&[4, 0x20, 0x03, 0]); // .. 03:04.0 -> 00:02.0
    e.extend_from_slice(&[0, 0, 0, 0]); // padding
    e.extend_from_slice(&special(2, 0x00A0, SPECIAL_IOAPIC));
    e.extend_from_slice(&special(0, 0x00A5, SPECIAL_HPET));
    let b = TableBuilder::new(0).ivhd(0x10, 0x02, 0xFD00_0000, 0, 0, &e).build();
    let ivrs = Ivrs::parse(&b).unwrap();
    assert_eq!(ivrs.first_error(), None);
    let unit = ivrs.units().next().unwrap();
    let ranges: Vec<_> = unit.device_ranges().collect();
    assert_eq!(
        ranges,
        [
            DeviceRange { first: 0x100, last: 0x1FF, setting: 0x11, alias: None },
            DeviceRange { first: 0x208, last: 0x208, setting: 0, alias: Some(0x200) },
            DeviceRange { first: 0x300, last: 0x320, setting: 0, alias: Some(0x10) },
        ]
    );
    assert_eq!(ivrs.ioapic_device(2).map(|(_, d)| d), Some(0x00A0));
    assert_eq!(ivrs.hpet_device(0).map(|(_, d)| d), Some(0x00A5));
    assert!(unit.serves(0x1A0) && !unit.serves(0x200));
}

#[test]
fn unknown_entries_are_skipped_by_their_encoded_length() {
    let mut e = Vec::new();
    e.extend_from_slice(&[0x05, 0xEE, 0xEE, 0xEE]); // unknown 4-byte type
    e.extend_from_slice(&[0x7F, 1, 2, 3, 4, 5, 6, 7]); // unknown 8-byte type
    e.extend_from_slice(&special(0, 0x00A0, SPECIAL_IOAPIC));
    // ACPI HID entry with a 3-byte UID: 22 + 3 bytes.
    let mut hid = vec![0xF0, 0x10, 0x00, 0];
    hid.extend_from_slice(b"AMDI0020");
    hid.extend_from_slice(&[0; 8]);
    hid.extend_from_slice(&[2, 3]);
    hid.extend_from_slice(b"ID0");
    e.extend_from_slice(&hid);
    e.extend_from_slice(&select(0x18));
    let b = TableBuilder::new(1).ivhd(0x40, 0x18, 0xFED8_0000, 0, 0, &e).build();
    let ivrs = Ivrs::parse(&b).unwrap();
    assert_eq!(ivrs.first_error(), None);
    let unit = ivrs.units().next().unwrap();
    let entries: Vec<_> = unit.entries().map(Result::unwrap).collect();
    assert_eq!(entries[0], DeviceEntry::Unknown { kind: 0x05 });
    assert_eq!(entries[1], DeviceEntry::Unknown { kind: 0x7F });
    assert!(matches!(
        entries[3],
        DeviceEntry::AcpiHid { device_id: 0x10, hid: b"AMDI0020", uid: b"ID0" }
    ));
    assert_eq!(entries[4], DeviceEntry::Select { device_id: 0x18, setting: 0 });
    assert_eq!(entries.iter().map(DeviceEntry::length).sum::<usize>(), e.len());
    assert_eq!(ivrs.ioapic_device(0).map(|(_, d)| d), Some(0xA0));
}

#[test]
fn header_errors_are_reported() {
    assert_eq!(Ivrs::parse(&QEMU_XTSUP[..40]).unwrap_err(), IvrsError::Truncated { len: 40 });
    let mut b = QEMU_XTSUP.to_vec();
    b[0] = b'X';
    assert_eq!(Ivrs::parse(&b).unwrap_err(), IvrsError::BadSignature(*b"XVRS"));
    let mut b = QEMU_XTSUP.to_vec();
    b[4] = 0xFF;
    assert_eq!(
        Ivrs::parse(&b).unwrap_err(),
        IvrsError::BadLength { declared: 0xFF, available: 184 }
    );
    let mut b = QEMU_XTSUP.to_vec();
    b[100] ^= 1;
    assert!(matches!(Ivrs::parse(&b).unwrap_err(), IvrsError::BadChecksum(_)));
}

#[test]
fn malformed_blocks_and_entries_end_the_walk_with_a_reason() {
    // A block claiming length 2.
    let mut b = TableBuilder::new(0).other(0x20, 0).build();
    b[BLOCKS_OFFSET + 2] = 2;
    let b = refix(b);
    let ivrs = Ivrs::parse(&b).unwrap();
    assert_eq!(ivrs.first_error(), Some(IvrsError::MalformedBlock { offset: BLOCKS_OFFSET }));
    // A block running past the table.
    let mut b = TableBuilder::new(0).other(0x20, 4).build();
    b[BLOCKS_OFFSET + 2] = 60;
    let b = refix(b);
    let ivrs = Ivrs::parse(&b).unwrap();
    assert_eq!(ivrs.first_error(), Some(IvrsError::MalformedBlock { offset: BLOCKS_OFFSET }));
    // A type-0x11 IVHD with only the 24 bytes of a type 0x10.
    let mut b = TableBuilder::new(0).ivhd(0x10, 0x18, 0x1000, 0, 0, &[]).build();
    b[BLOCKS_OFFSET] = 0x11;
    let b = refix(b);
    let ivrs = Ivrs::parse(&b).unwrap();
    assert_eq!(
        ivrs.first_error(),
        Some(IvrsError::ShortIvhd { offset: BLOCKS_OFFSET, kind: 0x11 })
    );
    assert_eq!(ivrs.units().count(), 0);
    // An 8-byte special entry cut to 4 bytes by its IVHD's length.
    let b = TableBuilder::new(0).ivhd(0x10, 0x18, 0x1000, 0, 0, &special(0, 0xA0, 1)[..4]).build();
    let ivrs = Ivrs::parse(&b).unwrap();
    assert_eq!(ivrs.first_error(), Some(IvrsError::MalformedEntry { offset: 0, kind: 0x48 }));
    assert_eq!(ivrs.ioapic_device(0), None);
    // A type at 0x80 or above other than ACPI HID has no length to skip by.
    let mut e = select(0).to_vec();
    e.extend_from_slice(&[0x90, 0, 0, 0]);
    e.extend_from_slice(&special(0, 0xA0, 1));
    let b = TableBuilder::new(0).ivhd(0x10, 0x18, 0x1000, 0, 0, &e).build();
    let ivrs = Ivrs::parse(&b).unwrap();
    assert_eq!(ivrs.first_error(), Some(IvrsError::MalformedEntry { offset: 4, kind: 0x90 }));
    assert_eq!(ivrs.ioapic_device(0), None);
    // An ACPI HID entry whose UID length overruns.
    let mut hid = vec![0xF0, 0, 0, 0];
    hid.extend_from_slice(&[0; 17]);
    hid.push(200);
    let b = TableBuilder::new(0).ivhd(0x10, 0x18, 0x1000, 0, 0, &hid).build();
    let ivrs = Ivrs::parse(&b).unwrap();
    assert_eq!(ivrs.first_error(), Some(IvrsError::MalformedEntry { offset: 0, kind: 0xF0 }));
    // Range end without a start, start without an end.
    let b = TableBuilder::new(0).ivhd(0x10, 0x18, 0x1000, 0, 0, &[4, 0, 1, 0]).build();
    let ivrs = Ivrs::parse(&b).unwrap();
    assert_eq!(ivrs.first_error(), Some(IvrsError::UnpairedRange { offset: 0 }));
    let b = TableBuilder::new(0).ivhd(0x10, 0x18, 0x1000, 0, 0, &[2, 0, 0, 0, 3, 0, 1, 0]).build();
    let ivrs = Ivrs::parse(&b).unwrap();
    assert_eq!(ivrs.first_error(), Some(IvrsError::UnpairedRange { offset: 4 }));
    assert_eq!(ivrs.units().next().unwrap().device_ranges().count(), 1);
}

fn walk(b: &[u8]) {
    if let Ok(ivrs) = Ivrs::parse(b) {
        let _ = ivrs.first_error();
        for u in ivrs.preferred_units() {
            let _ = u.features();
            let _ = u.device_ranges().count();
            let _ = u.serves(0xA0);
            for e in u.entries().flatten() {
                let _ = e.length();
            }
        }
        let _ = ivrs.ioapic_device(0);
        let _ = ivrs.hpet_device(0);
    }
}

#[test]
fn fuzz_random_bytes_never_panic() {
    let mut rng = XorShift(0x5EED_1485);
    for _ in 0..20_000 {
        let len = rng.below(220);
        let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if len >= BLOCKS_OFFSET {
            b[..4].copy_from_slice(b"IVRS");
            b = refix(b);
        }
        walk(&b);
    }
}

#[test]
fn fuzz_mutated_qemu_tables_never_panic() {
    let mut rng = XorShift(0x1485_0001);
    for _ in 0..50_000 {
        let mut b = QEMU_XTSUP.to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = BLOCKS_OFFSET + rng.below(b.len() - BLOCKS_OFFSET);
            b[at] = rng.next() as u8;
        }
        if rng.below(4) == 0 {
            let cut = BLOCKS_OFFSET + rng.below(b.len() - BLOCKS_OFFSET);
            b.truncate(cut);
        }
        walk(&refix(b));
    }
}
