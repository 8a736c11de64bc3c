use super::*;
use keel_testkit::XorShift;

/// Builds DMAR tables byte by byte, fixing length and checksum at the end.
pub(crate) struct TableBuilder {
    bytes: Vec<u8>,
}

impl TableBuilder {
    pub(crate) fn new(flags: u8) -> Self {
        let mut bytes = vec![0u8; STRUCTURES_OFFSET];
        bytes[..4].copy_from_slice(b"DMAR");
        bytes[8] = 1;
        bytes[36] = 38; // 39-bit host address width
        bytes[37] = flags;
        TableBuilder { bytes }
    }

    pub(crate) fn drhd(mut self, flags: u8, segment: u16, base: u64, scopes: &[Vec<u8>]) -> Self {
        let len = DRHD_SCOPES_OFFSET + scopes.iter().map(Vec::len).sum::<usize>();
        self.bytes.extend_from_slice(&0u16.to_le_bytes());
        self.bytes.extend_from_slice(&(len as u16).to_le_bytes());
        self.bytes.extend_from_slice(&[flags, 0]);
        self.bytes.extend_from_slice(&segment.to_le_bytes());
        self.bytes.extend_from_slice(&base.to_le_bytes());
        for s in scopes {
            self.bytes.extend_from_slice(s);
        }
        self
    }

    pub(crate) fn other(mut self, kind: u16, body: usize) -> Self {
        self.bytes.extend_from_slice(&kind.to_le_bytes());
        self.bytes.extend_from_slice(&((4 + body) as u16).to_le_bytes());
        self.bytes.extend(core::iter::repeat_n(0xAB, body));
        self
    }

    pub(crate) fn build(mut self) -> Vec<u8> {
        let len = self.bytes.len() as u32;
        self.bytes[4..8].copy_from_slice(&len.to_le_bytes());
        self.bytes[9] = 0;
        let sum = self.bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        self.bytes[9] = 0u8.wrapping_sub(sum);
        self.bytes
    }
}

pub(crate) fn scope(kind: u8, id: u8, bus: u8, path: &[(u8, u8)]) -> Vec<u8> {
    let mut s = vec![kind, (SCOPE_PATH_OFFSET + 2 * path.len()) as u8, 0, 0, id, bus];
    for (d, f) in path {
        s.extend_from_slice(&[*d, *f]);
    }
    s
}

/// What QEMU's q35 with `-device intel-iommu,intremap=on` reports: one include-all unit at
/// 0xFED90000 listing IOAPIC 0 at 0xFF:00.0.
fn qemu_like() -> Vec<u8> {
    TableBuilder::new(0b001)
        .drhd(DRHD_INCLUDE_PCI_ALL, 0, 0xFED9_0000, &[scope(3, 0, 0xFF, &[(0, 0)])])
        .build()
}

#[test]
fn qemu_table_has_one_include_all_unit_with_the_ioapic() {
    let bytes = qemu_like();
    let dmar = Dmar::parse(&bytes).unwrap();
    assert!(dmar.flags.interrupt_remapping);
    assert!(!dmar.flags.x2apic_opt_out);
    assert_eq!(dmar.host_address_width, 38);
    let units: Vec<_> = dmar.units().collect();
    assert_eq!(units.len(), 1);
    assert!(units[0].include_pci_all());
    assert_eq!(units[0].register_base, 0xFED9_0000);
    assert_eq!(units[0].register_pages(), 1);
    let (unit, io) = dmar.ioapic_unit(0).unwrap();
    assert_eq!(unit, units[0]);
    assert_eq!(io.kind, ScopeKind::IoApic);
    assert_eq!(io.source_id(), Some(SourceId(0xFF00)));
    assert!(dmar.ioapic_unit(1).is_none());
    assert_eq!(dmar.first_error(), None);
}

#[test]
fn listed_endpoints_and_bridges_win_over_the_include_all_unit() {
    let bytes = TableBuilder::new(1)
        .drhd(0, 0, 0x1000, &[scope(1, 0, 0, &[(2, 0)]), scope(2, 0, 0, &[(0x1C, 0)])])
        .other(1, 20)
        .drhd(
            DRHD_INCLUDE_PCI_ALL,
            0,
            0x2000,
            &[scope(3, 8, 0xF0, &[(0x1F, 0)]), scope(4, 0, 0, &[(0x1F, 7)])],
        )
        .build();
    let dmar = Dmar::parse(&bytes).unwrap();
    let no_bridges = |_| None;
    let gpu = SourceId::new(0, 2, 0).unwrap();
    assert_eq!(dmar.unit_for_pci(0, gpu, no_bridges).unwrap().register_base, 0x1000);
    let bridge = SourceId::new(0, 0x1C, 0).unwrap();
    assert_eq!(dmar.unit_for_pci(0, bridge, no_bridges).unwrap().register_base, 0x1000);
    let below = SourceId::new(3, 0, 0).unwrap();
    assert_eq!(dmar.unit_for_pci(0, below, no_bridges).unwrap().register_base, 0x2000);
    let buses = |b: SourceId| (b == bridge).then_some((2u8, 4u8));
    assert_eq!(dmar.unit_for_pci(0, below, buses).unwrap().register_base, 0x1000);
    let other = SourceId::new(0, 3, 0).unwrap();
    assert_eq!(dmar.unit_for_pci(0, other, no_bridges).unwrap().register_base, 0x2000);
    assert!(dmar.unit_for_pci(1, other, no_bridges).is_none(), "no unit for segment 1");
    let (unit, io) = dmar.ioapic_unit(8).unwrap();
    assert_eq!(unit.register_base, 0x2000);
    assert_eq!(io.source_id(), SourceId::new(0xF0, 0x1F, 0));
    let kinds: Vec<_> = dmar.structures().map(|s| matches!(s, Ok(Structure::Drhd(_)))).collect();
    assert_eq!(kinds, [true, false, true]);
}

#[test]
fn deep_paths_have_no_direct_source_id() {
    let s = scope(1, 0, 0, &[(0x1C, 0), (0, 0)]);
    let bytes = TableBuilder::new(1).drhd(0, 0, 0x1000, &[s]).build();
    let dmar = Dmar::parse(&bytes).unwrap();
    let scope = dmar.units().next().unwrap().scopes().next().unwrap().unwrap();
    assert_eq!(scope.hops().collect::<Vec<_>>(), [(0x1C, 0), (0, 0)]);
    assert_eq!(scope.source_id(), None);
}

#[test]
fn header_errors_are_reported() {
    let good = qemu_like();
    assert_eq!(Dmar::parse(&good[..40]).unwrap_err(), DmarError::Truncated { len: 40 });
    let mut sig = good.clone();
    sig[0] = b'X';
    assert!(matches!(Dmar::parse(&sig), Err(DmarError::BadSignature(_))));
    let mut sum = good.clone();
    sum[40] ^= 1;
    assert!(matches!(Dmar::parse(&sum), Err(DmarError::BadChecksum(_))));
    let mut long = good.clone();
    long[4..8].copy_from_slice(&1000u32.to_le_bytes());
    assert!(matches!(Dmar::parse(&long), Err(DmarError::BadLength { declared: 1000, .. })));
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[1, 2, 3]);
    assert_eq!(
        Dmar::parse(&trailing).unwrap().units().count(),
        1,
        "bytes past the declared length are ignored"
    );
}

#[test]
fn malformed_structures_and_scopes_end_the_walk() {
    // A structure claiming length 2 (below its own header).
    let mut b = TableBuilder::new(1).other(1, 0).build();
    b[STRUCTURES_OFFSET + 2] = 2;
    let b = refix(b);
    let dmar = Dmar::parse(&b).unwrap();
    assert_eq!(
        dmar.first_error(),
        Some(DmarError::MalformedStructure { offset: STRUCTURES_OFFSET })
    );
    // A DRHD shorter than its fixed part.
    let b = TableBuilder::new(1).other(0, 4).build();
    assert_eq!(
        Dmar::parse(&b).unwrap().first_error(),
        Some(DmarError::ShortDrhd { offset: STRUCTURES_OFFSET })
    );
    // A scope with an odd path length.
    let mut s = scope(3, 0, 0xFF, &[(0, 0)]);
    s[1] = 7;
    s.push(0);
    let b = TableBuilder::new(1).drhd(1, 0, 0x1000, &[s]).build();
    let dmar = Dmar::parse(&b).unwrap();
    assert_eq!(dmar.first_error(), Some(DmarError::MalformedScope { offset: 0 }));
    assert!(dmar.ioapic_unit(0).is_none());
}

fn refix(mut b: Vec<u8>) -> Vec<u8> {
    b[9] = 0;
    let sum = b.iter().fold(0u8, |s, x| s.wrapping_add(*x));
    b[9] = 0u8.wrapping_sub(sum);
    b
}

/// Walks everything a kernel would walk; bounded by the input size.
fn walk(bytes: &[u8]) {
    let Ok(dmar) = Dmar::parse(bytes) else { return };
    let mut steps = 0;
    for s in dmar.structures() {
        steps += 1;
        if let Ok(Structure::Drhd(d)) = s {
            for sc in d.scopes() {
                steps += 1;
                if let Ok(sc) = sc {
                    let _ = sc.source_id();
                    steps += sc.hops().count();
                }
            }
        }
    }
    assert!(steps <= bytes.len(), "iteration did not terminate in bounded steps");
    let _ = dmar.first_error();
    for id in [0u8, 1, 8, 255] {
        let _ = dmar.ioapic_unit(id);
    }
    let _ = dmar.unit_for_pci(0, SourceId(0x0010), |b| Some((b.bus(), 255)));
}

#[test]
fn fuzz_random_bytes_never_panic() {
    let mut rng = XorShift(0x5EED_D3A2);
    for _ in 0..20_000 {
        let len = rng.below(200);
        let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if len >= STRUCTURES_OFFSET {
            b[..4].copy_from_slice(b"DMAR");
            b[4..8].copy_from_slice(&(len as u32).to_le_bytes());
            b = refix(b);
        }
        walk(&b);
    }
}

#[test]
fn fuzz_mutated_tables_never_panic() {
    let base = TableBuilder::new(1)
        .drhd(0, 0, 0x1000, &[scope(1, 0, 0, &[(2, 0)]), scope(2, 0, 0, &[(0x1C, 0), (0, 0)])])
        .other(1, 12)
        .drhd(
            DRHD_INCLUDE_PCI_ALL,
            0,
            0x2000,
            &[scope(3, 0, 0xFF, &[(0, 0)]), scope(4, 0, 0, &[(0x1F, 7)])],
        )
        .build();
    walk(&base);
    let mut rng = XorShift(0xD3A2_0001);
    for _ in 0..50_000 {
        let mut b = base.clone();
        for _ in 0..1 + rng.below(4) {
            let at = STRUCTURES_OFFSET + rng.below(b.len() - STRUCTURES_OFFSET);
            b[at] = rng.next() as u8;
        }
        if rng.below(4) == 0 {
            let cut = STRUCTURES_OFFSET + rng.below(b.len() - STRUCTURES_OFFSET);
            b.truncate(cut);
            let len = b.len() as u32;
            b[4..8].copy_from_slice(&len.to_le_bytes());
        }
        walk(&refix(b));
    }
}

#[test]
fn x2apic_opt_out_flag_is_read() {
    for (flags, remap, opt_out) in [(0b001, true, false), (0b011, true, true), (0b010, false, true)]
    {
        let bytes = TableBuilder::new(flags).build();
        let dmar = Dmar::parse(&bytes).unwrap();
        assert_eq!(dmar.flags.interrupt_remapping, remap);
        assert_eq!(dmar.flags.x2apic_opt_out, opt_out);
        assert_eq!(dmar.units().count(), 0);
        assert_eq!(dmar.first_error(), None);
    }
}
