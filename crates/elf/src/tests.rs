use super::*;
use std::vec::Vec;

const R: u32 = PF_R;
const RX: u32 = PF_R | PF_X;
const RW: u32 = PF_R | PF_W;
const END: u64 = USER_END_MAX;

#[derive(Clone, Copy)]
struct Ph {
    p_type: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
}

fn load(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Ph {
    Ph { p_type: PT_LOAD, flags, offset, vaddr, filesz, memsz, align: 0x1000 }
}

/// Builds small ELF images; starts from a valid two-segment executable.
#[derive(Clone)]
struct Builder {
    class: u8,
    data: u8,
    ident_version: u8,
    version: u32,
    e_type: u16,
    machine: u16,
    entry: u64,
    phoff: u64,
    ehsize: u16,
    phentsize: u16,
    phnum: Option<u16>,
    phdrs: Vec<Ph>,
    file_len: usize,
}

impl Builder {
    fn new() -> Self {
        Builder {
            class: ELFCLASS64,
            data: ELFDATA2LSB,
            ident_version: 1,
            version: 1,
            e_type: ET_EXEC,
            machine: EM_X86_64,
            entry: 0x40_0010,
            phoff: 64,
            ehsize: 64,
            phentsize: 56,
            phnum: None,
            phdrs: vec![
                load(RX, 0x1000, 0x40_0000, 0x100, 0x100),
                load(RW, 0x2000, 0x40_2000, 0x10, 0x2000),
            ],
            file_len: 0x3000,
        }
    }

    fn ph(mut self, ph: Ph) -> Self {
        self.phdrs.push(ph);
        self
    }

    fn build(&self) -> Vec<u8> {
        let table_end = self.phoff as usize + self.phdrs.len() * 56;
        let mut b = vec![0u8; self.file_len.max(table_end)];
        for (i, x) in b.iter_mut().enumerate() {
            *x = (i as u8).wrapping_mul(31);
        }
        b[..64].fill(0);
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = self.class;
        b[5] = self.data;
        b[6] = self.ident_version;
        b[16..18].copy_from_slice(&self.e_type.to_le_bytes());
        b[18..20].copy_from_slice(&self.machine.to_le_bytes());
        b[20..24].copy_from_slice(&self.version.to_le_bytes());
        b[24..32].copy_from_slice(&self.entry.to_le_bytes());
        b[32..40].copy_from_slice(&self.phoff.to_le_bytes());
        b[52..54].copy_from_slice(&self.ehsize.to_le_bytes());
        b[54..56].copy_from_slice(&self.phentsize.to_le_bytes());
        let phnum = self.phnum.unwrap_or(self.phdrs.len() as u16);
        b[56..58].copy_from_slice(&phnum.to_le_bytes());
        for (i, ph) in self.phdrs.iter().enumerate() {
            let o = self.phoff as usize + i * 56;
            b[o..o + 4].copy_from_slice(&ph.p_type.to_le_bytes());
            b[o + 4..o + 8].copy_from_slice(&ph.flags.to_le_bytes());
            b[o + 8..o + 16].copy_from_slice(&ph.offset.to_le_bytes());
            b[o + 16..o + 24].copy_from_slice(&ph.vaddr.to_le_bytes());
            b[o + 24..o + 32].copy_from_slice(&ph.vaddr.to_le_bytes());
            b[o + 32..o + 40].copy_from_slice(&ph.filesz.to_le_bytes());
            b[o + 40..o + 48].copy_from_slice(&ph.memsz.to_le_bytes());
            b[o + 48..o + 56].copy_from_slice(&ph.align.to_le_bytes());
        }
        b
    }

    fn parse_err(&self) -> ElfError {
        let bytes = self.build();
        match ElfImage::parse(&bytes, END) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        }
    }
}

#[test]
fn valid_image() {
    let bytes = Builder::new().build();
    let img = ElfImage::parse(&bytes, END).unwrap();
    assert_eq!(img.entry(), 0x40_0010);
    assert_eq!(img.user_end(), END);
    let segs: Vec<_> = img.segments().collect();
    assert_eq!(segs.len(), 2);
    assert_eq!(
        segs[0],
        LoadSegment {
            index: 0,
            vaddr: 0x40_0000,
            memsz: 0x100,
            filesz: 0x100,
            file_offset: 0x1000,
            flags: SegmentFlags { read: true, write: false, exec: true },
            align: 0x1000,
        }
    );
    assert_eq!(segs[1].flags, SegmentFlags { read: true, write: true, exec: false });
    assert_eq!(page_range(&segs[0]), (0x40_0000, 0x40_1000));
    assert_eq!(segs[1].page_range(), (0x40_2000, 0x40_4000));
    assert_eq!(segs[1].page_count(), 2);
    assert_eq!(img.segment_data(&segs[0]), &bytes[0x1000..0x1100]);
    assert_eq!(img.segment_data(&segs[1]).len(), 0x10);
    assert_eq!(img.page_span(), (0x40_0000, 0x40_4000));
    assert_eq!(img.bytes().len(), bytes.len());
}

#[test]
fn unaligned_segment_page_range() {
    let mut b = Builder::new();
    b.phdrs[0] = load(RX, 0x1234, 0x40_0234, 0x100, 0xe00);
    b.entry = 0x40_0300;
    let bytes = b.build();
    let img = ElfImage::parse(&bytes, END).unwrap();
    let s = img.segments().next().unwrap();
    assert_eq!(s.page_range(), (0x40_0000, 0x40_2000));
    assert_eq!(s.end(), 0x40_1034);
}

#[test]
fn other_headers_and_empty_loads_are_skipped() {
    let b = Builder::new()
        .ph(Ph {
            p_type: 0x6474_e551,
            flags: RW,
            offset: 0,
            vaddr: 0,
            filesz: 0,
            memsz: 0,
            align: 16,
        }) // GNU_STACK
        .ph(Ph {
            p_type: 7,
            flags: R,
            offset: 0x2000,
            vaddr: 0x40_2000,
            filesz: 8,
            memsz: 8,
            align: 8,
        }) // TLS
        .ph(load(RW | PF_X, 0, 0, 0, 0)); // empty PT_LOAD: ignored entirely
    let bytes = b.build();
    let img = ElfImage::parse(&bytes, END).unwrap();
    assert_eq!(img.segments().count(), 2);
}

#[test]
fn same_flags_may_share_a_page() {
    let mut b = Builder::new();
    b.phdrs[1] = load(RX, 0x1100, 0x40_0100, 0x20, 0x20);
    let bytes = b.build();
    assert_eq!(ElfImage::parse(&bytes, END).unwrap().segments().count(), 2);
}

#[test]
fn segment_may_end_exactly_at_user_end() {
    let mut b = Builder::new();
    b.phdrs[1] = load(RW, 0x2000, 0x7fff_ffff_e000, 0x10, 0x2000);
    let bytes = b.build();
    assert!(ElfImage::parse(&bytes, END).is_ok());
    assert_eq!(
        ElfImage::parse(&bytes, 0x7fff_ffff_f000).unwrap_err(),
        ElfError::OutsideUserSpace { index: 1 }
    );
}

#[test]
fn user_end_parameter() {
    let bytes = Builder::new().build();
    for bad in [END + 0x1000, 0x40_0001, 0, USER_START, u64::MAX] {
        assert_eq!(ElfImage::parse(&bytes, bad).unwrap_err(), ElfError::InvalidUserEnd(bad));
    }
    assert_eq!(
        ElfImage::parse(&bytes, 0x40_1000).unwrap_err(),
        ElfError::OutsideUserSpace { index: 1 }
    );
    assert!(ElfImage::parse(&bytes, 0x40_4000).is_ok());
}

#[test]
fn header_errors() {
    assert_eq!(ElfImage::parse(&[], END).unwrap_err(), ElfError::TooShort(0));
    assert_eq!(ElfImage::parse(&[0x7f, b'E', b'L', b'F'], END).unwrap_err(), ElfError::TooShort(4));
    let mut bytes = Builder::new().build();
    bytes[1] = b'X';
    assert_eq!(ElfImage::parse(&bytes, END).unwrap_err(), ElfError::BadMagic);

    let mut b = Builder::new();
    b.class = 1;
    assert_eq!(b.parse_err(), ElfError::NotElf64(1));
    let mut b = Builder::new();
    b.data = 2;
    assert_eq!(b.parse_err(), ElfError::NotLittleEndian(2));
    let mut b = Builder::new();
    b.ident_version = 0;
    assert_eq!(b.parse_err(), ElfError::BadVersion);
    let mut b = Builder::new();
    b.version = 2;
    assert_eq!(b.parse_err(), ElfError::BadVersion);
    let mut b = Builder::new();
    b.machine = 3;
    assert_eq!(b.parse_err(), ElfError::WrongMachine(3));
    let mut b = Builder::new();
    b.e_type = ET_DYN;
    assert_eq!(b.parse_err(), ElfError::PositionIndependent);
    assert!(b.parse_err().to_string().contains("relocation-model=static"));
    let mut b = Builder::new();
    b.e_type = 1;
    assert_eq!(b.parse_err(), ElfError::NotExecutable(1));
    let mut b = Builder::new();
    b.ehsize = 52;
    assert_eq!(b.parse_err(), ElfError::BadHeaderSize(52));
    let mut b = Builder::new();
    b.phentsize = 32;
    assert_eq!(b.parse_err(), ElfError::BadProgramHeaderSize(32));
    let mut b = Builder::new();
    b.phnum = Some(0);
    assert_eq!(b.parse_err(), ElfError::NoProgramHeaders);
    let mut b = Builder::new();
    b.phnum = Some(0xffff);
    assert_eq!(b.parse_err(), ElfError::TooManyProgramHeaders(0xffff));
}

#[test]
fn program_header_table_bounds() {
    let mut b = Builder::new();
    b.phnum = Some(MAX_PROGRAM_HEADERS); // table claims more entries than the file holds
    b.file_len = 0x1000 + 0x100;
    b.phdrs.truncate(1);
    let mut bytes = b.build();
    bytes.truncate(0x1100);
    assert_eq!(ElfImage::parse(&bytes, END).unwrap_err(), ElfError::ProgramHeadersOutOfFile);
    for phoff in [u64::MAX, u64::MAX - 55, 0x3000, 0x3000 - 56] {
        let mut b = Builder::new();
        b.phoff = 64;
        let mut bytes = b.build();
        bytes[32..40].copy_from_slice(&phoff.to_le_bytes());
        assert_eq!(
            ElfImage::parse(&bytes, END).unwrap_err(),
            ElfError::ProgramHeadersOutOfFile,
            "{phoff:#x}"
        );
    }
}

#[test]
fn dynamic_programs_refused() {
    let b = Builder::new().ph(Ph {
        p_type: PT_INTERP,
        flags: R,
        offset: 0x2000,
        vaddr: 0,
        filesz: 4,
        memsz: 4,
        align: 1,
    });
    assert_eq!(b.parse_err(), ElfError::Interpreter);
    let b = Builder::new().ph(Ph {
        p_type: PT_DYNAMIC,
        flags: RW,
        offset: 0x2000,
        vaddr: 0x40_2000,
        filesz: 4,
        memsz: 4,
        align: 8,
    });
    assert_eq!(b.parse_err(), ElfError::Dynamic);
}

#[test]
fn segment_count_errors() {
    let mut b = Builder::new();
    b.phdrs = vec![Ph {
        p_type: 6,
        flags: R,
        offset: 64,
        vaddr: 0x40_0040,
        filesz: 56,
        memsz: 56,
        align: 8,
    }];
    assert_eq!(b.parse_err(), ElfError::NoLoadSegments);
    b.phdrs = vec![load(RX, 0x1000, 0x40_0000, 0, 0)];
    assert_eq!(b.parse_err(), ElfError::NoLoadSegments);

    let mut b = Builder::new();
    b.phdrs.clear();
    for i in 0..=MAX_LOAD_SEGMENTS as u64 {
        b.phdrs.push(load(RX, 0x1000, 0x40_0000 + i * 0x1000, 0x10, 0x100));
    }
    assert_eq!(b.parse_err(), ElfError::TooManySegments);
    b.phdrs.pop();
    assert_eq!(ElfImage::parse(&b.build(), END).unwrap().segments().count(), MAX_LOAD_SEGMENTS);
}

#[test]
fn per_segment_errors() {
    let with = |ph: Ph| {
        let mut b = Builder::new();
        b.phdrs[1] = ph;
        b.parse_err()
    };
    assert_eq!(
        with(load(RW, 0x2000, 0x40_2000, 0x11, 0x10)),
        ElfError::FileSizeExceedsMemSize { index: 1 }
    );
    assert_eq!(
        with(load(RW, 0x2000, 0x40_2000, 0x1001, 0x2000)),
        ElfError::SegmentOutOfFile { index: 1 }
    );
    assert_eq!(with(load(RW, u64::MAX, 0x40_2fff, 1, 1)), ElfError::SegmentOutOfFile { index: 1 });
    assert_eq!(with(load(RW, 0x3000, 0x40_2000, 1, 1)), ElfError::SegmentOutOfFile { index: 1 });
    assert_eq!(
        with(load(RW, 0x2000, 0xffff_ffff_ffff_f000, 0x10, 0x2000)),
        ElfError::AddressOverflow { index: 1 }
    );
    assert_eq!(
        with(load(RW, 0x2000, 0xffff_8000_0000_0000, 0x10, 0x10)),
        ElfError::OutsideUserSpace { index: 1 }
    );
    assert_eq!(
        with(load(RW, 0x2000, 0x7fff_ffff_f000, 0x10, 0x1001)),
        ElfError::OutsideUserSpace { index: 1 }
    );
    assert_eq!(with(load(RW, 0x0000, 0x0, 0x10, 0x10)), ElfError::OutsideUserSpace { index: 1 });
    assert_eq!(with(load(RW, 0x0ff0, 0xff0, 0x10, 0x20)), ElfError::OutsideUserSpace { index: 1 });
    assert_eq!(
        with(load(RW | PF_X, 0x2000, 0x40_2000, 0x10, 0x10)),
        ElfError::WritableAndExecutable { index: 1 }
    );
    assert_eq!(
        with(load(PF_W | PF_X, 0x2000, 0x40_2000, 0x10, 0x10)),
        ElfError::WritableAndExecutable { index: 1 }
    );
    assert_eq!(with(load(RW, 0x2008, 0x40_2000, 0x10, 0x10)), ElfError::NotCongruent { index: 1 });
    let mut ph = load(RW, 0x2000, 0x40_2000, 0x10, 0x10);
    ph.align = 0x3000;
    assert_eq!(with(ph), ElfError::BadAlignment { index: 1, align: 0x3000 });
    ph.align = 0;
    let mut b = Builder::new();
    b.phdrs[1] = ph;
    assert!(ElfImage::parse(&b.build(), END).is_ok(), "align 0 means no constraint");
}

#[test]
fn overlap_errors() {
    let with = |ph: Ph| {
        let mut b = Builder::new();
        b.phdrs[1] = ph;
        b.parse_err()
    };
    // Same bytes, even with the same flags.
    assert_eq!(
        with(load(RX, 0x1080, 0x40_0080, 0x10, 0x10)),
        ElfError::OverlappingSegments { first: 0, second: 1 }
    );
    // Containing the other.
    assert_eq!(
        with(load(R, 0x1000, 0x3f_f000, 0x10, 0x3000)),
        ElfError::OverlappingSegments { first: 0, second: 1 }
    );
    // Disjoint bytes, shared page, different permissions.
    assert_eq!(
        with(load(RW, 0x1100, 0x40_0100, 0x10, 0x10)),
        ElfError::ConflictingPagePermissions { first: 0, second: 1 }
    );
    assert_eq!(
        with(load(R, 0x1200, 0x40_0200, 0x10, 0x10)),
        ElfError::ConflictingPagePermissions { first: 0, second: 1 }
    );
    // Adjacent pages are fine.
    let mut b = Builder::new();
    b.phdrs[1] = load(RW, 0x2000, 0x40_1000, 0x10, 0x10);
    assert!(ElfImage::parse(&b.build(), END).is_ok());
}

#[test]
fn entry_errors() {
    let mut b = Builder::new();
    b.entry = 0x40_2000; // in the RW segment
    assert_eq!(b.parse_err(), ElfError::EntryNotExecutable(0x40_2000));
    b.entry = 0x40_0100; // one past the text segment
    assert_eq!(b.parse_err(), ElfError::EntryNotExecutable(0x40_0100));
    b.entry = 0;
    assert_eq!(b.parse_err(), ElfError::EntryNotExecutable(0));
    b.entry = 0x40_00ff;
    assert!(ElfImage::parse(&b.build(), END).is_ok());
}

#[test]
fn error_messages_are_nonempty() {
    let mut b = Builder::new();
    b.entry = 1;
    assert_eq!(b.parse_err().to_string(), "entry point 0x1 is not in an executable segment");
    assert_eq!(
        ElfError::WritableAndExecutable { index: 2 }.to_string(),
        "segment 2: writable and executable (W^X)"
    );
}

#[test]
fn segment_data_of_foreign_segment_is_empty() {
    let bytes = Builder::new().build();
    let img = ElfImage::parse(&bytes, END).unwrap();
    let mut s = img.segments().next().unwrap();
    s.file_offset = u64::MAX;
    assert!(img.segment_data(&s).is_empty());
    s.file_offset = 0x2fff;
    s.filesz = 2;
    assert!(img.segment_data(&s).is_empty());
}

use keel_testkit::XorShift;

/// Everything a successful parse promises, re-checked independently.
fn check_invariants(img: &ElfImage<'_>, bytes: &[u8]) {
    let segs: Vec<_> = img.segments().collect();
    assert!(!segs.is_empty());
    for s in &segs {
        assert!(s.filesz <= s.memsz && s.memsz > 0);
        assert!(s.vaddr >= USER_START && s.end() <= img.user_end());
        assert!(!(s.flags.write && s.flags.exec));
        assert_eq!(s.vaddr % PAGE_SIZE, s.file_offset % PAGE_SIZE);
        assert!((s.file_offset + s.filesz) as usize <= bytes.len());
        assert_eq!(img.segment_data(s).len() as u64, s.filesz);
        let (a, b) = page_range(s);
        assert!(a <= s.vaddr && s.end() <= b && b <= img.user_end());
    }
    assert!(segs.iter().any(|s| s.flags.exec && s.vaddr <= img.entry() && img.entry() < s.end()));
}

#[test]
fn fuzz_mutated_images_never_panic() {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let base = Builder::new().build();
    let mut accepted = 0;
    for _ in 0..50_000 {
        let mut bytes = base.clone();
        for _ in 0..1 + rng.below(4) {
            // Mostly hit the headers, where the interesting fields are.
            let i = if rng.below(4) == 0 { rng.below(bytes.len()) } else { rng.below(64 + 2 * 56) };
            match rng.below(3) {
                0 => bytes[i] = rng.next() as u8,
                1 => bytes[i] ^= 1 << rng.below(8),
                _ => {
                    let v = [0u64, 1, 0xfff, 0x1000, u64::MAX, 0x8000_0000_0000, rng.next()]
                        [rng.below(7)];
                    let i = i & !7;
                    if i + 8 <= bytes.len() {
                        bytes[i..i + 8].copy_from_slice(&v.to_le_bytes());
                    }
                }
            }
        }
        if rng.below(8) == 0 {
            bytes.truncate(rng.below(bytes.len() + 1));
        }
        let user_end = if rng.below(8) == 0 { rng.next() } else { END };
        if let Ok(img) = ElfImage::parse(&bytes, user_end) {
            accepted += 1;
            check_invariants(&img, &bytes);
        }
    }
    assert!(accepted > 0, "some light mutations should still parse");
}

#[test]
fn fuzz_random_bytes_never_panic() {
    let mut rng = XorShift(0x0123_4567_89ab_cdef);
    for _ in 0..20_000 {
        let len = rng.below(400);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if len >= 20 && rng.below(2) == 0 {
            // A plausible prefix so the fuzz gets past the first checks.
            bytes[..4].copy_from_slice(b"\x7fELF");
            bytes[4] = 2;
            bytes[5] = 1;
            bytes[6] = 1;
            bytes[16..20].copy_from_slice(&[2, 0, 62, 0]);
        }
        if let Ok(img) = ElfImage::parse(&bytes, END) {
            check_invariants(&img, &bytes);
        }
    }
}
