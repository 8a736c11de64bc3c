use super::*;
use crate::memory::MemoryMap;

/// Sparse fake physical memory: several disjoint `Vec`-backed regions.
struct FakeMem {
    regions: Vec<(u64, Vec<u8>)>,
}

impl FakeMem {
    fn new() -> Self {
        Self { regions: Vec::new() }
    }
    fn put(&mut self, phys: u64, bytes: &[u8]) {
        self.regions.push((phys, bytes.to_vec()));
    }
}

impl PhysRead for FakeMem {
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        for (base, bytes) in &self.regions {
            if let Ok(()) = SliceMemory::new(*base, bytes).read(phys, buf) {
                return Ok(());
            }
        }
        Err(ReadError::OutOfBounds { phys, len: buf.len() })
    }
}

const INFO: u32 = 0x9000;
const MMAP: u32 = 0x9500;
const CMDLINE: u32 = 0x2_0000;
const NAME: u32 = 0x9900;
const MODS: u32 = 0x9a00;

fn info_bytes(fields: &[(usize, u32)]) -> Vec<u8> {
    let mut b = vec![0u8; INFO_MAX_LEN];
    for &(off, v) in fields {
        b[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    b
}

fn mmap_entry(size: u32, base: u64, len: u64, kind: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&size.to_le_bytes());
    v.extend_from_slice(&base.to_le_bytes());
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(&kind.to_le_bytes());
    v.resize(4 + size.clamp(20, 64) as usize, 0);
    v
}

fn qemu_mmap() -> Vec<u8> {
    let mut m = Vec::new();
    m.extend(mmap_entry(20, 0, 0x9fc00, 1));
    m.extend(mmap_entry(20, 0x9fc00, 0x400, 2));
    m.extend(mmap_entry(20, 0xf0000, 0x10000, 2));
    m.extend(mmap_entry(20, 0x100000, 0x7ee0000, 1));
    m.extend(mmap_entry(20, 0x7fe0000, 0x20000, 2));
    m.extend(mmap_entry(20, 0xfffc0000, 0x40000, 2));
    m
}

/// A QEMU-like hand-over with memory, cmdline, mmap, loader name and one module.
fn qemu_mem() -> FakeMem {
    let mmap = qemu_mmap();
    let mut mem = FakeMem::new();
    mem.put(
        INFO as u64,
        &info_bytes(&[
            (0, FLAG_MEMORY | FLAG_CMDLINE | FLAG_MODULES | FLAG_MMAP | FLAG_BOOT_LOADER_NAME),
            (4, 639),
            (8, 130_944),
            (16, CMDLINE),
            (20, 1),
            (24, MODS),
            (44, mmap.len() as u32),
            (48, MMAP),
            (64, NAME),
        ]),
    );
    mem.put(MMAP as u64, &mmap);
    mem.put(CMDLINE as u64, b"proof=smp cpus=4 \"x\"\0");
    mem.put(NAME as u64, b"qemu\0");
    let mut modl = Vec::new();
    for v in [0x20_0000u32, 0x20_3000, 0x9c00, 0] {
        modl.extend_from_slice(&v.to_le_bytes());
    }
    mem.put(MODS as u64, &modl);
    mem.put(0x9c00, b"init.elf arg\0");
    mem
}

fn patch(mem: &mut FakeMem, phys: u64, off: usize, v: u32) {
    let r = mem.regions.iter_mut().find(|(b, _)| *b == phys).unwrap();
    r.1[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn parses_qemu_like_handover() {
    let mem = qemu_mem();
    let info = BootInfo::parse(&mem, BOOTLOADER_MAGIC, INFO).unwrap();
    assert_eq!(info.basic_memory(), Some(BasicMemory { lower_kib: 639, upper_kib: 130_944 }));
    assert_eq!(info.command_line(), Some("proof=smp cpus=4 \"x\""));
    assert_eq!(info.boot_loader_name(), Some("qemu"));
    assert_eq!(info.boot_device(), None);
    assert_eq!(info.unknown_flags(), 0);
    let mm = info.memory_map().unwrap();
    assert_eq!(mm.len(), 6);
    assert_eq!(mm[0], MmapEntry { base: 0, length: 0x9fc00, kind: MemoryType::Available });
    assert_eq!(mm[5].kind, MemoryType::Reserved);
    let m = info.modules();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].range(), PhysRange { start: 0x20_0000, end: 0x20_3000 });
    let mut buf = [0u8; MAX_MODULE_CMDLINE_LEN];
    assert_eq!(m[0].read_cmdline(&mem, 0, &mut buf).unwrap(), "init.elf arg");

    let occ: Vec<_> = info.occupied().iter().map(|r| (r.kind, r.range)).collect();
    let pr = |s: u64, e: u64| PhysRange { start: s, end: e };
    assert!(occ.contains(&(BootData::InfoStructure, pr(0x9000, 0x9000 + 68))));
    assert!(occ.contains(&(BootData::MemoryMap, pr(0x9500, 0x9500 + 6 * 24))));
    assert!(occ.contains(&(BootData::CommandLine, pr(0x2_0000, 0x2_0000 + 21))));
    assert!(occ.contains(&(BootData::BootLoaderName, pr(0x9900, 0x9905))));
    assert!(occ.contains(&(BootData::ModuleList, pr(0x9a00, 0x9a10))));
    assert!(occ.contains(&(BootData::Module(0), pr(0x20_0000, 0x20_3000))));
    assert!(occ.contains(&(BootData::ModuleCommandLine(0), pr(0x9c00, 0x9c0d))));

    // End-to-end: build the allocator's map.
    let mut map = MemoryMap::from_entries(mm.iter().copied()).unwrap();
    map.reserve_low_memory().unwrap();
    map.reserve_boot_info(&info).unwrap();
    let u: Vec<_> = map.usable().collect();
    assert_eq!(u, vec![pr(0x10_0000, 0x20_0000), pr(0x20_3000, 0x7fe_0000)]);
}

#[test]
fn bad_magic_and_null_pointer() {
    let mem = qemu_mem();
    assert_eq!(
        BootInfo::parse(&mem, 0x36d7_6289, INFO).unwrap_err(),
        MultibootError::BadMagic { found: 0x36d7_6289 }
    );
    assert_eq!(
        BootInfo::parse(&mem, BOOTLOADER_MAGIC, 0).unwrap_err(),
        MultibootError::NullInfoPointer
    );
    assert!(matches!(
        BootInfo::parse(&mem, BOOTLOADER_MAGIC, 0x4000_0000).unwrap_err(),
        MultibootError::Read { what: BootData::InfoStructure, .. }
    ));
}

#[test]
fn minimal_info_only_reads_what_flags_need() {
    // Only flags + mem fields exist in memory (12 bytes): must still parse.
    let mut mem = FakeMem::new();
    let mut b = info_bytes(&[(0, FLAG_MEMORY | (1 << 20)), (4, 640), (8, 1024)]);
    b.truncate(12);
    mem.put(INFO as u64, &b);
    let info = BootInfo::parse(&mem, BOOTLOADER_MAGIC, INFO).unwrap();
    assert_eq!(info.memory_map(), None);
    assert_eq!(info.command_line(), None);
    assert!(info.modules().is_empty());
    assert_eq!(info.unknown_flags(), 1 << 20);
    assert_eq!(info.occupied().len(), 1);
    assert_eq!(info.occupied()[0].range.len(), 12);
}

#[test]
fn conflicting_symbol_flags() {
    let mut mem = FakeMem::new();
    mem.put(INFO as u64, &info_bytes(&[(0, FLAG_AOUT_SYMS | FLAG_ELF_SECTIONS)]));
    assert_eq!(
        BootInfo::parse(&mem, BOOTLOADER_MAGIC, INFO).unwrap_err(),
        MultibootError::ConflictingSymbolFlags
    );
}

#[test]
fn elf_sections_framebuffer_and_extras() {
    let mut mem = FakeMem::new();
    let mut b = info_bytes(&[
        (
            0,
            FLAG_ELF_SECTIONS
                | FLAG_BOOT_DEVICE
                | FLAG_CONFIG_TABLE
                | FLAG_APM_TABLE
                | FLAG_FRAMEBUFFER
                | FLAG_DRIVES,
        ),
        (12, 0x80ff_ffff),
        (28, 10),
        (32, 64),
        (36, 0x50000),
        (40, 9),
        (52, 0x20),
        (56, 0x7000),
        (60, 0xf1234),
        (68, 0xf5678),
        (96, 4096),
        (100, 1024),
        (104, 768),
    ]);
    b[88..96].copy_from_slice(&0xfd00_0000u64.to_le_bytes());
    b[108] = 32;
    b[109] = 1;
    mem.put(INFO as u64, &b);
    let info = BootInfo::parse(&mem, BOOTLOADER_MAGIC, INFO).unwrap();
    assert_eq!(
        info.elf_sections(),
        Some(ElfSections { num: 10, entry_size: 64, addr: 0x50000, shndx: 9 })
    );
    assert_eq!(info.boot_device(), Some(0x80ff_ffff));
    assert_eq!(info.config_table(), Some(0xf1234));
    assert_eq!(info.apm_table(), Some(0xf5678));
    let fb = info.framebuffer().unwrap();
    assert_eq!(
        (fb.address, fb.pitch, fb.width, fb.height, fb.bpp, fb.kind),
        (0xfd00_0000, 4096, 1024, 768, 32, 1)
    );
    let kinds: Vec<_> = info.occupied().iter().map(|r| r.kind).collect();
    assert_eq!(kinds, vec![BootData::InfoStructure, BootData::ElfSectionHeaders, BootData::Drives]);
    assert_eq!(info.occupied()[0].range.len(), 116);
    assert_eq!(info.occupied()[1].range.len(), 640);
}

fn with_mmap(mmap: &[u8], length: u32) -> Result<BootInfo, MultibootError> {
    let mut mem = FakeMem::new();
    mem.put(INFO as u64, &info_bytes(&[(0, FLAG_MMAP), (44, length), (48, MMAP)]));
    mem.put(MMAP as u64, mmap);
    BootInfo::parse(&mem, BOOTLOADER_MAGIC, INFO)
}

#[test]
fn mmap_size_field_drives_stride() {
    let mut m = Vec::new();
    m.extend(mmap_entry(28, 0x1000, 0x1000, 1)); // 8 bytes of padding
    m.extend(mmap_entry(20, 0x5000, 0x1000, 3));
    m.extend(mmap_entry(36, 0x9000, 0x1000, 4));
    m.extend(mmap_entry(20, 0xa000, 0x1000, 5));
    m.extend(mmap_entry(20, 0xb000, 0x1000, 99));
    let info = with_mmap(&m, m.len() as u32).unwrap();
    let kinds: Vec<_> = info.memory_map().unwrap().iter().map(|e| (e.base, e.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (0x1000, MemoryType::Available),
            (0x5000, MemoryType::AcpiReclaimable),
            (0x9000, MemoryType::AcpiNvs),
            (0xa000, MemoryType::BadMemory),
            (0xb000, MemoryType::Other(99)),
        ]
    );
}

#[test]
fn mmap_entry_too_small_or_zero() {
    let mut m = mmap_entry(20, 0x1000, 0x1000, 1);
    m.extend(mmap_entry(0, 0, 0, 0)); // size 0 would loop forever
    assert_eq!(
        with_mmap(&m, m.len() as u32).unwrap_err(),
        MultibootError::MmapEntryTooSmall { offset: 24, size: 0 }
    );
    let m = mmap_entry(12, 0x1000, 0x1000, 1);
    assert_eq!(
        with_mmap(&m, 24).unwrap_err(),
        MultibootError::MmapEntryTooSmall { offset: 0, size: 12 }
    );
}

#[test]
fn mmap_entry_huge_size_or_truncated_length() {
    let m = mmap_entry(0xffff_fff0, 0x1000, 0x1000, 1);
    assert_eq!(
        with_mmap(&m[..24], 24).unwrap_err(),
        MultibootError::MmapEntryTruncated { offset: 0, size: 0xffff_fff0, remaining: 24 }
    );
    // mmap_length not a whole number of entries.
    let mut m = mmap_entry(20, 0x1000, 0x1000, 1);
    m.extend(mmap_entry(20, 0x2000, 0x1000, 1));
    assert_eq!(
        with_mmap(&m, 40).unwrap_err(),
        MultibootError::MmapEntryTruncated { offset: 24, size: 20, remaining: 16 }
    );
    assert_eq!(
        with_mmap(&m, 26).unwrap_err(),
        MultibootError::MmapEntryTruncated { offset: 24, size: 0, remaining: 2 }
    );
    // mmap_length larger than readable memory.
    assert!(matches!(
        with_mmap(&m, 48 + 24).unwrap_err(),
        MultibootError::Read { what: BootData::MemoryMap, .. }
    ));
}

#[test]
fn mmap_zero_length_and_overflow() {
    let mut m = mmap_entry(20, 0x1000, 0, 1);
    m.extend(mmap_entry(20, 0x2000, 0x1000, 1));
    m.extend(mmap_entry(20, 0x3000, 0, 2));
    let info = with_mmap(&m, m.len() as u32).unwrap();
    assert_eq!(info.memory_map().unwrap().len(), 1);
    assert_eq!(info.zero_length_entries(), 2);

    let mut m = mmap_entry(20, 0x1000, 0x1000, 1);
    m.extend(mmap_entry(20, u64::MAX - 0xfff, 0x2000, 2));
    assert_eq!(
        with_mmap(&m, m.len() as u32).unwrap_err(),
        MultibootError::MmapEntryOverflow { index: 1, base: u64::MAX - 0xfff, length: 0x2000 }
    );
    // Empty map (flag set, length 0) is an empty list, not "no map".
    let info = with_mmap(&[], 0).unwrap();
    assert_eq!(info.memory_map(), Some(&[][..]));
}

#[test]
fn mmap_too_many_entries() {
    let mut m = Vec::new();
    for i in 0..(MAX_MMAP_ENTRIES as u64 + 1) {
        m.extend(mmap_entry(20, i * 0x1000, 0x1000, 1));
    }
    assert_eq!(
        with_mmap(&m, m.len() as u32).unwrap_err(),
        MultibootError::TooManyMmapEntries { max: MAX_MMAP_ENTRIES }
    );
    let mut m = Vec::new();
    for _ in 0..(MAX_MMAP_RECORDS + 1) {
        m.extend(mmap_entry(20, 0, 0, 1));
    }
    assert_eq!(
        with_mmap(&m, m.len() as u32).unwrap_err(),
        MultibootError::TooManyMmapEntries { max: MAX_MMAP_RECORDS }
    );
}

#[test]
fn cmdline_unterminated_invalid_utf8_and_limits() {
    let mut mem = qemu_mem();
    let long = vec![b'a'; MAX_CMDLINE_LEN + 10];
    mem.regions.retain(|(b, _)| *b != CMDLINE as u64);
    mem.put(CMDLINE as u64, &long);
    assert_eq!(
        BootInfo::parse(&mem, BOOTLOADER_MAGIC, INFO).unwrap_err(),
        MultibootError::BadString {
            what: BootData::CommandLine,
            error: StringError::Unterminated { max: MAX_CMDLINE_LEN }
        }
    );
    // Exactly at the limit is fine.
    let mut exact = vec![b'b'; MAX_CMDLINE_LEN];
    exact.push(0);
    mem.regions.retain(|(b, _)| *b != CMDLINE as u64);
    mem.put(CMDLINE as u64, &exact);
    let info = BootInfo::parse(&mem, BOOTLOADER_MAGIC, INFO).unwrap();
    assert_eq!(info.command_line_bytes().unwrap().len(), MAX_CMDLINE_LEN);
    // String running into unreadable memory.
    mem.regions.retain(|(b, _)| *b != CMDLINE as u64);
    mem.put(CMDLINE as u64, b"abc");
    assert!(matches!(
        BootInfo::parse(&mem, BOOTLOADER_MAGIC, INFO).unwrap_err(),
        MultibootError::Read { what: BootData::CommandLine, .. }
    ));
    // Invalid UTF-8.
    mem.regions.retain(|(b, _)| *b != CMDLINE as u64);
    mem.put(CMDLINE as u64, b"ok\xff\xfe\0");
    assert_eq!(
        BootInfo::parse(&mem, BOOTLOADER_MAGIC, INFO).unwrap_err(),
        MultibootError::BadString {
            what: BootData::CommandLine,
            error: StringError::InvalidUtf8 { valid_up_to: 2 }
        }
    );
    // Bad loader name.
    let mut mem = qemu_mem();
    mem.regions.retain(|(b, _)| *b != NAME as u64);
    mem.put(NAME as u64, &[b'x'; 100]);
    assert_eq!(
        BootInfo::parse(&mem, BOOTLOADER_MAGIC, INFO).unwrap_err(),
        MultibootError::BadString {
            what: BootData::BootLoaderName,
            error: StringError::Unterminated { max: MAX_LOADER_NAME_LEN }
        }
    );
}

#[test]
fn modules_malformed() {
    let mut mem = qemu_mem();
    patch(&mut mem, INFO as u64, 20, 17);
    assert_eq!(
        BootInfo::parse(&mem, BOOTLOADER_MAGIC, INFO).unwrap_err(),
        MultibootError::TooManyModules { count: 17, max: MAX_MODULES }
    );
    patch(&mut mem, INFO as u64, 20, 2); // second entry not in memory
    assert!(matches!(
        BootInfo::parse(&mem, BOOTLOADER_MAGIC, INFO).unwrap_err(),
        MultibootError::Read { what: BootData::ModuleList, .. }
    ));
    patch(&mut mem, INFO as u64, 20, 1);
    patch(&mut mem, MODS as u64, 4, 0x1f_0000); // end < start
    assert_eq!(
        BootInfo::parse(&mem, BOOTLOADER_MAGIC, INFO).unwrap_err(),
        MultibootError::ModuleBadRange { index: 0, start: 0x20_0000, end: 0x1f_0000 }
    );
    patch(&mut mem, MODS as u64, 4, 0x20_0000); // empty module is fine
    patch(&mut mem, MODS as u64, 8, 0); // and no string
    let info = BootInfo::parse(&mem, BOOTLOADER_MAGIC, INFO).unwrap();
    assert_eq!(info.modules()[0].cmdline_range(), None);
    let mut buf = [0u8; 8];
    assert_eq!(info.modules()[0].read_cmdline(&mem, 0, &mut buf).unwrap(), "");
    assert!(info.occupied().iter().all(|r| !matches!(r.kind, BootData::Module(_))));
    patch(&mut mem, MODS as u64, 8, 0x7777_0000); // dangling string pointer
    assert!(matches!(
        BootInfo::parse(&mem, BOOTLOADER_MAGIC, INFO).unwrap_err(),
        MultibootError::Read { what: BootData::ModuleCommandLine(0), .. }
    ));
    // Zero modules with the flag set.
    patch(&mut mem, INFO as u64, 20, 0);
    let info = BootInfo::parse(&mem, BOOTLOADER_MAGIC, INFO).unwrap();
    assert!(info.modules().is_empty());
}

#[test]
fn slice_memory_bounds() {
    let bytes = [1u8, 2, 3, 4];
    let m = SliceMemory::new(0x100, &bytes);
    let mut b = [0u8; 2];
    m.read(0x102, &mut b).unwrap();
    assert_eq!(b, [3, 4]);
    assert!(m.read(0x103, &mut b).is_err());
    assert!(m.read(0xff, &mut b).is_err());
    assert!(m.read(u64::MAX, &mut b).is_err());
}

#[test]
fn errors_display_clearly() {
    let e = MultibootError::MmapEntryTooSmall { offset: 24, size: 0 };
    assert_eq!(e.to_string(), "memory map entry at offset 0x18 has size 0, minimum is 20");
    let e = MultibootError::BadString {
        what: BootData::ModuleCommandLine(2),
        error: StringError::Unterminated { max: 256 },
    };
    assert_eq!(e.to_string(), "command line of module 2 is not NUL-terminated within 256 bytes");
    let e = MultibootError::BadMagic { found: 0 };
    assert!(e.to_string().contains("0x2badb002"));
}
