use super::*;
use crate::handover::{AcpiRoot, Handover, HandoverError};
use crate::multiboot::{ReadError, SliceMemory};
use keel_testkit::XorShift;

const INFO: u32 = 0x10_0000 - 0x2000;

/// Builds a Multiboot 2 tag list the way GRUB lays it out.
#[derive(Default)]
struct Builder {
    tags: Vec<u8>,
}

impl Builder {
    fn tag(mut self, kind: u32, payload: &[u8]) -> Self {
        self.tags.extend_from_slice(&kind.to_le_bytes());
        self.tags.extend_from_slice(&(8 + payload.len() as u32).to_le_bytes());
        self.tags.extend_from_slice(payload);
        while !self.tags.len().is_multiple_of(8) {
            self.tags.push(0);
        }
        self
    }
    fn string(self, kind: u32, s: &str) -> Self {
        let mut p = s.as_bytes().to_vec();
        p.push(0);
        self.tag(kind, &p)
    }
    fn module(self, start: u32, end: u32, name: &str) -> Self {
        let mut p = Vec::new();
        p.extend_from_slice(&start.to_le_bytes());
        p.extend_from_slice(&end.to_le_bytes());
        p.extend_from_slice(name.as_bytes());
        p.push(0);
        self.tag(3, &p)
    }
    fn mmap(self, entries: &[(u64, u64, u32)]) -> Self {
        let mut p = Vec::new();
        p.extend_from_slice(&24u32.to_le_bytes());
        p.extend_from_slice(&0u32.to_le_bytes());
        for &(base, len, kind) in entries {
            p.extend_from_slice(&base.to_le_bytes());
            p.extend_from_slice(&len.to_le_bytes());
            p.extend_from_slice(&kind.to_le_bytes());
            p.extend_from_slice(&0u32.to_le_bytes());
        }
        self.tag(6, &p)
    }
    fn efi_mmap(self, descs: &[(u32, u64, u64)]) -> Self {
        let mut p = Vec::new();
        p.extend_from_slice(&48u32.to_le_bytes());
        p.extend_from_slice(&1u32.to_le_bytes());
        for &(kind, base, pages) in descs {
            let mut d = [0u8; 48];
            d[0..4].copy_from_slice(&kind.to_le_bytes());
            d[8..16].copy_from_slice(&base.to_le_bytes());
            d[24..32].copy_from_slice(&pages.to_le_bytes());
            p.extend_from_slice(&d);
        }
        self.tag(17, &p)
    }
    fn build(self) -> Vec<u8> {
        let mut out = Vec::new();
        let total = 8 + self.tags.len() as u32 + 8;
        out.extend_from_slice(&total.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&self.tags);
        out.extend_from_slice(&[0, 0, 0, 0, 8, 0, 0, 0]);
        out
    }
}

fn rsdp_v1(rsdt: u32) -> Vec<u8> {
    let mut b = b"RSD PTR ".to_vec();
    b.push(0); // checksum, fixed below
    b.extend_from_slice(b"BOCHS ");
    b.push(0); // revision 0
    b.extend_from_slice(&rsdt.to_le_bytes());
    b[8] = 0u8.wrapping_sub(b.iter().fold(0u8, |a, &x| a.wrapping_add(x)));
    b
}

fn rsdp_v2(rsdt: u32, xsdt: u64) -> Vec<u8> {
    let mut b = rsdp_v1(rsdt);
    b[15] = 2;
    b[8] = 0;
    b[8] = 0u8.wrapping_sub(b.iter().fold(0u8, |a, &x| a.wrapping_add(x)));
    b.extend_from_slice(&36u32.to_le_bytes());
    b.extend_from_slice(&xsdt.to_le_bytes());
    b.extend_from_slice(&[0, 0, 0, 0]); // extended checksum + reserved
    b[32] = 0u8.wrapping_sub(b.iter().fold(0u8, |a, &x| a.wrapping_add(x)));
    b
}

fn parse(bytes: &[u8]) -> Result<Multiboot2Info, Multiboot2Error> {
    Multiboot2Info::parse(&SliceMemory::new(INFO as u64, bytes), BOOTLOADER_MAGIC, INFO)
}

/// What GRUB hands over under OVMF: command line, name, modules, E820-style map, the EFI map,
/// both RSDP copies and the EFI64 system table, plus a framebuffer tag Keel ignores.
fn grub_uefi() -> Vec<u8> {
    Builder::default()
        .string(1, "/boot/keel proof=smp lapic=x2apic")
        .string(2, "GRUB 2.06")
        .module(0x20_0000, 0x20_1234, "/boot/manifest")
        .module(0x20_2000, 0x21_0000, "/boot/hello")
        .tag(8, &[0u8; 24]) // framebuffer
        .mmap(&[(0, 0xa0000, 1), (0x10_0000, 0x7f00000, 1), (0x7f0_0000, 0x10_0000, 4)])
        .tag(12, &0x7fd_0000u64.to_le_bytes())
        .tag(14, &rsdp_v1(0x7fe_0000))
        .tag(15, &rsdp_v2(0x7fe_0000, 0x7fe_1000))
        .efi_mmap(&[
            (3, 0, 1),
            (7, 0x1000, 0x9f),
            (2, 0x10_0000, 0x100),
            (7, 0x20_0000, 0x7d00),
            (5, 0x7f0_0000, 0x10),
            (9, 0x7f1_0000, 0x10),
        ])
        .build()
}

#[test]
fn parses_a_grub_uefi_handover() {
    let info = parse(&grub_uefi()).unwrap();
    assert_eq!(info.command_line(), Some("/boot/keel proof=smp lapic=x2apic"));
    assert_eq!(info.boot_loader_name(), Some("GRUB 2.06"));
    assert_eq!(info.firmware(), Firmware::Uefi);
    let (map, source) = info.memory_map().unwrap();
    assert_eq!(source, MapSource::Multiboot);
    assert_eq!(map.len(), 3);
    assert_eq!(map[2].kind, MemoryType::AcpiNvs);
    let mods = info.modules();
    assert_eq!(mods.len(), 2);
    assert_eq!((mods[1].start, mods[1].end), (0x20_2000, 0x21_0000));
    let bytes = grub_uefi();
    let mem2 = SliceMemory::new(INFO as u64, &bytes);
    let mut buf = [0u8; 64];
    assert_eq!(mods[0].read_cmdline(&mem2, 0, &mut buf).unwrap(), "/boot/manifest");
    let rsdp = info.rsdp().unwrap();
    assert_eq!(rsdp.source, RsdpSource::NewTag);
    assert_eq!(rsdp.root_table(), (2, 0x7fe_1000));
    // The EFI map: boot-services and loader pages are free after exit, adjacent ones merge.
    let efi = info.efi_memory_map().unwrap();
    assert_eq!(efi[0], MmapEntry { base: 0, length: 0xa0000, kind: MemoryType::Available });
    assert_eq!(
        efi[1],
        MmapEntry { base: 0x10_0000, length: 0x7e0_0000, kind: MemoryType::Available }
    );
    assert_eq!(efi[2].kind, MemoryType::Reserved);
    assert_eq!(efi[3].kind, MemoryType::AcpiReclaimable);
    let occupied: Vec<_> = info.occupied().iter().map(|r| r.range).collect();
    assert_eq!(
        occupied[0],
        PhysRange { start: INFO as u64, end: INFO as u64 + bytes.len() as u64 }
    );
    assert!(occupied.contains(&PhysRange { start: 0x20_2000, end: 0x21_0000 }));
}

#[test]
fn bios_handover_without_rsdp_allows_the_legacy_scan_but_uefi_does_not() {
    let bios = Builder::default().string(1, "keel").mmap(&[(0, 0x9fc00, 1)]).build();
    let h = Handover::parse(&SliceMemory::new(INFO as u64, &bios), BOOTLOADER_MAGIC, INFO).unwrap();
    assert_eq!(h.firmware(), Firmware::Bios);
    assert_eq!(h.acpi_root(), AcpiRoot::ScanBiosAreas);
    let uefi = Builder::default().mmap(&[(0, 0x9fc00, 1)]).tag(12, &[0u8; 8]).build();
    let h = Handover::parse(&SliceMemory::new(INFO as u64, &uefi), BOOTLOADER_MAGIC, INFO).unwrap();
    assert_eq!(h.acpi_root(), AcpiRoot::Unavailable);
    assert_eq!(h.protocol_version(), 2);
    let old_only = Builder::default().tag(14, &rsdp_v1(0xe_0000)).build();
    let h =
        Handover::parse(&SliceMemory::new(INFO as u64, &old_only), BOOTLOADER_MAGIC, INFO).unwrap();
    match h.acpi_root() {
        AcpiRoot::FromLoader(r) => assert_eq!(r.root_table(), (0, 0xe_0000)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        Handover::parse(&SliceMemory::new(0, &[]), 0x1234, 8).unwrap_err(),
        HandoverError::UnknownMagic { found: 0x1234 }
    );
}

#[test]
fn efi_map_alone_is_the_memory_map_and_active_boot_services_keep_their_memory() {
    let only_efi = Builder::default().efi_mmap(&[(7, 0, 0xa0), (4, 0x10_0000, 0x100)]).build();
    let info = parse(&only_efi).unwrap();
    let (map, source) = info.memory_map().unwrap();
    assert_eq!(source, MapSource::Efi);
    assert_eq!(
        map,
        &[
            MmapEntry { base: 0, length: 0xa_0000, kind: MemoryType::Available },
            MmapEntry { base: 0x10_0000, length: 0x10_0000, kind: MemoryType::Available }
        ]
    );
    // Tag 18 after the map still turns boot-services memory into reserved memory.
    let active =
        Builder::default().efi_mmap(&[(7, 0, 0xa0), (4, 0x10_0000, 0x100)]).tag(18, &[]).build();
    let info = parse(&active).unwrap();
    assert!(info.efi_boot_services_active());
    assert_eq!(info.memory_map().unwrap().0[1].kind, MemoryType::Reserved);
}

#[test]
fn header_errors() {
    let good = grub_uefi();
    let mem = SliceMemory::new(INFO as u64, &good);
    assert_eq!(
        Multiboot2Info::parse(&mem, 0x2bad_b002, INFO).unwrap_err(),
        Multiboot2Error::BadMagic { found: 0x2bad_b002 }
    );
    assert_eq!(
        Multiboot2Info::parse(&mem, BOOTLOADER_MAGIC, 0).unwrap_err(),
        Multiboot2Error::NullInfoPointer
    );
    assert_eq!(
        Multiboot2Info::parse(&mem, BOOTLOADER_MAGIC, INFO + 4).unwrap_err(),
        Multiboot2Error::Misaligned { info_phys: INFO + 4 }
    );
    let mut b = good.clone();
    b[0..4].copy_from_slice(&8u32.to_le_bytes());
    assert!(matches!(parse(&b), Err(Multiboot2Error::BadTotalSize { total_size: 8, .. })));
    b[0..4].copy_from_slice(&(MAX_INFO_LEN + 8).to_le_bytes());
    assert!(matches!(parse(&b), Err(Multiboot2Error::BadTotalSize { .. })));
    // total_size beyond readable memory: a read error, not a fault.
    b[0..4].copy_from_slice(&(good.len() as u32 + 64).to_le_bytes());
    let mut cut = b.clone();
    let n = cut.len() - 8;
    cut[n..].fill(0xff); // destroy the end tag
    assert!(matches!(
        parse(&cut),
        Err(Multiboot2Error::BadTagSize { .. }) | Err(Multiboot2Error::Read { .. })
    ));
    let high =
        Multiboot2Info::parse(&SliceMemory::new(0xffff_ff00, &good), BOOTLOADER_MAGIC, 0xffff_ff00);
    assert!(matches!(high, Err(Multiboot2Error::AboveFourGiB { .. })));
}

#[test]
fn tag_errors() {
    // No end tag: total_size ends right after a tag.
    let mut b = Builder::default().string(1, "x").build();
    let n = b.len() as u32 - 8;
    b.truncate(n as usize);
    b[0..4].copy_from_slice(&n.to_le_bytes());
    assert_eq!(parse(&b).unwrap_err(), Multiboot2Error::MissingEndTag);
    // A tag claiming to run past total_size, or shorter than its header.
    let mut b = Builder::default().string(1, "abc").build();
    b[12..16].copy_from_slice(&0x1000u32.to_le_bytes());
    assert!(matches!(
        parse(&b),
        Err(Multiboot2Error::BadTagSize { offset: 8, kind: 1, size: 0x1000 })
    ));
    b[12..16].copy_from_slice(&4u32.to_le_bytes());
    assert!(matches!(parse(&b), Err(Multiboot2Error::BadTagSize { size: 4, .. })));
    // End tag with a wrong size.
    let mut b = Builder::default().build();
    b[12..16].copy_from_slice(&16u32.to_le_bytes());
    assert!(matches!(parse(&b), Err(Multiboot2Error::BadTagSize { kind: 0, .. })));
    // Duplicates of single tags.
    let b = Builder::default().string(1, "a").string(1, "b").build();
    assert!(matches!(parse(&b), Err(Multiboot2Error::DuplicateTag { kind: 1, .. })));
    // Unterminated and non-UTF-8 strings.
    let b = Builder::default().tag(1, b"abc").build();
    assert!(matches!(
        parse(&b),
        Err(Multiboot2Error::V1(MultibootError::BadString {
            error: StringError::Unterminated { .. },
            ..
        }))
    ));
    let b = Builder::default().tag(1, &[0xff, 0xfe, 0]).build();
    assert!(matches!(
        parse(&b),
        Err(Multiboot2Error::V1(MultibootError::BadString {
            error: StringError::InvalidUtf8 { valid_up_to: 0 },
            ..
        }))
    ));
    let long = "x".repeat(MAX_CMDLINE_LEN + 1);
    assert!(parse(&Builder::default().string(1, &long).build()).is_err());
    assert!(parse(&Builder::default().string(1, &long[1..]).build()).is_ok());
    // Too many tags of an ignored kind.
    let mut many = Builder::default();
    for _ in 0..MAX_TAGS + 1 {
        many = many.tag(21, &[0; 4]);
    }
    assert_eq!(parse(&many.build()).unwrap_err(), Multiboot2Error::TooManyTags { max: MAX_TAGS });
}

#[test]
fn module_and_map_errors() {
    let b = Builder::default().module(0x2000, 0x1000, "m").build();
    assert!(matches!(
        parse(&b),
        Err(Multiboot2Error::V1(MultibootError::ModuleBadRange { index: 0, .. }))
    ));
    let b = Builder::default().tag(3, &[0; 8]).build();
    assert!(matches!(parse(&b), Err(Multiboot2Error::BadTagSize { kind: 3, .. })));
    let mut mods = Builder::default();
    for i in 0..=MAX_MODULES as u32 {
        mods = mods.module(i * 0x1000, i * 0x1000 + 1, "m");
    }
    assert!(matches!(
        parse(&mods.build()),
        Err(Multiboot2Error::V1(MultibootError::TooManyModules { .. }))
    ));
    let b = Builder::default().mmap(&[(u64::MAX - 1, 2, 1)]).build();
    assert!(matches!(
        parse(&b),
        Err(Multiboot2Error::V1(MultibootError::MmapEntryOverflow { .. }))
    ));
    let b = Builder::default().tag(6, &[20, 0, 0, 0, 0, 0, 0, 0]).build();
    assert!(matches!(parse(&b), Err(Multiboot2Error::BadMmapEntrySize { entry_size: 20, .. })));
    let b = Builder::default().tag(6, &[24, 0, 0]).build();
    assert!(matches!(parse(&b), Err(Multiboot2Error::MmapHeaderTruncated { .. })));
    let b = Builder::default().efi_mmap(&[(7, 0x1000, u64::MAX / 2)]).build();
    assert!(matches!(
        parse(&b),
        Err(Multiboot2Error::V1(MultibootError::MmapEntryOverflow { .. }))
    ));
    // More distinct entries than the map holds is refused, never truncated.
    let entries: Vec<_> = (0..=MAX_MMAP_ENTRIES as u64).map(|i| (i * 0x2000, 0x1000, 1)).collect();
    assert!(matches!(
        parse(&Builder::default().mmap(&entries).build()),
        Err(Multiboot2Error::TooManyMmapEntries { .. })
    ));
    // Zero-length entries are skipped.
    let info = parse(&Builder::default().mmap(&[(0, 0, 1), (0x1000, 0x1000, 1)]).build()).unwrap();
    assert_eq!(info.memory_map().unwrap().0.len(), 1);
}

#[test]
fn rsdp_errors() {
    let mut bad_sig = rsdp_v1(0x1000);
    bad_sig[0] = b'X';
    assert_eq!(
        parse(&Builder::default().tag(14, &bad_sig).build()).unwrap_err(),
        Multiboot2Error::RsdpBadSignature
    );
    let mut bad_sum = rsdp_v1(0x1000);
    bad_sum[16] ^= 1;
    assert_eq!(
        parse(&Builder::default().tag(14, &bad_sum).build()).unwrap_err(),
        Multiboot2Error::RsdpBadChecksum { extended: false }
    );
    let mut bad_ext = rsdp_v2(0x1000, 0x2000);
    bad_ext[24] ^= 1;
    assert_eq!(
        parse(&Builder::default().tag(15, &bad_ext).build()).unwrap_err(),
        Multiboot2Error::RsdpBadChecksum { extended: true }
    );
    assert!(matches!(
        parse(&Builder::default().tag(14, &[0; 10]).build()),
        Err(Multiboot2Error::RsdpTruncated { .. })
    ));
    assert!(matches!(
        parse(&Builder::default().tag(15, &rsdp_v2(1, 2)[..30]).build()),
        Err(Multiboot2Error::RsdpTruncated { needed: 36, .. })
    ));
    assert_eq!(
        parse(&Builder::default().tag(14, &rsdp_v1(0)).build()).unwrap_err(),
        Multiboot2Error::RsdpNullRoot
    );
    // A v2 RSDP whose XSDT is 0 falls back to the RSDT.
    let info = parse(&Builder::default().tag(15, &rsdp_v2(0x3000, 0)).build()).unwrap();
    assert_eq!(info.rsdp().unwrap().root_table(), (0, 0x3000));
}

#[test]
fn errors_display_clearly() {
    let e = Multiboot2Error::BadTagSize { offset: 8, kind: 6, size: 3 };
    assert_eq!(e.to_string(), "multiboot2 tag type 6 at offset 0x8 has bad size 3");
    let e = Multiboot2Error::Read {
        what: BootData::MemoryMap,
        error: ReadError::OutOfBounds { phys: 0x10, len: 4 },
    };
    assert!(e.to_string().contains("memory map"));
}

/// Random byte flips, truncations and size-field rewrites of real-looking hand-overs: the
/// parser returns `Ok` or an error, never panics, and anything it accepts is self-consistent.
#[test]
fn fuzz_mutated_handovers_never_panic() {
    let seeds = [
        grub_uefi(),
        Builder::default()
            .string(1, "keel")
            .mmap(&[(0, 0x9fc00, 1)])
            .tag(14, &rsdp_v1(0xe0000))
            .build(),
    ];
    let mut rng = XorShift(0x6d62_3266_757a_7a01);
    let mut accepted = 0;
    for round in 0..20_000 {
        let mut b = seeds[round % seeds.len()].clone();
        for _ in 0..1 + rng.below(6) {
            let i = rng.below(b.len());
            match rng.below(4) {
                0 => b[i] = rng.next() as u8,
                1 => b[i] ^= 1 << rng.below(8),
                2 if i + 4 <= b.len() => {
                    let v = [0u32, 4, 7, 8, 24, 48, 0x1000, u32::MAX][rng.below(8)];
                    b[i & !3..(i & !3) + 4].copy_from_slice(&v.to_le_bytes());
                }
                _ => b.truncate(i.max(8)),
            }
        }
        if let Ok(info) = parse(&b) {
            accepted += 1;
            for r in info.occupied() {
                assert!(!r.range.is_empty());
            }
            if let Some((map, _)) = info.memory_map() {
                assert!(map.iter().all(|e| e.length > 0 && e.base.checked_add(e.length).is_some()));
            }
            for m in info.modules() {
                assert!(m.start <= m.end);
            }
            let _ = info.command_line();
        }
    }
    assert!(accepted > 100, "mutations should leave some hand-overs valid ({accepted})");
}
