//! Validation of static ELF64 x86_64 user executables before Keel maps them.
//!
//! The kernel maps a user program's `PT_LOAD` segments straight from its Multiboot module, so
//! every number in the file is untrusted input that will become a page-table entry. This crate
//! does all the checking up front, with checked arithmetic and no panics:
//! [`ElfImage::parse`] either refuses the file with an [`ElfError`] or returns an image whose
//! [`segments`](ElfImage::segments) can be mapped without further checks.
//!
//! What `parse` guarantees for an `Ok` image:
//!
//! * header: magic, `ELFCLASS64`, little endian, version 1, `EM_X86_64`, `ET_EXEC` (PIE /
//!   `ET_DYN` is refused: Keel does not relocate; build user programs with
//!   `-C relocation-model=static`), a 64-byte header and 56-byte program headers, a program
//!   header table inside the file, no `PT_INTERP` and no `PT_DYNAMIC`;
//! * every `PT_LOAD` with a non-zero `memsz` (zero-sized ones are ignored and not yielded):
//!   `filesz <= memsz`, file bytes inside the file, `vaddr + memsz` does not overflow, the
//!   whole segment lies in `[USER_START, user_end)`, it is not both writable and executable
//!   (W^X), `vaddr % 4096 == file_offset % 4096` (so file pages map onto memory pages),
//!   `p_align` is 0 or a power of two;
//! * segments do not overlap in bytes; two segments may share a 4 KiB page only when their
//!   flags are identical (the loader then fills the shared page from both and maps it once,
//!   with those flags); sharing a page with different permissions is refused, because one
//!   page table entry cannot carry two permissions;
//! * the entry point lies inside an executable segment.
//!
//! Section headers are not looked at: a loader does not need them.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use core::fmt;

#[cfg(test)]
mod tests;

/// Page size the kernel maps user segments with; congruence and overlap are checked at it.
pub const PAGE_SIZE: u64 = 4096;
/// Lowest user address: page 0 stays unmapped so null dereferences fault.
pub const USER_START: u64 = 0x1000;
/// End of the lower canonical half; no `user_end` may exceed it.
pub const USER_END_MAX: u64 = 0x0000_8000_0000_0000;
/// Most `PT_LOAD` segments accepted; real static executables have a handful, and the bound
/// keeps validation allocation-free and its cost small.
pub const MAX_LOAD_SEGMENTS: usize = 16;
/// Most program headers accepted, bounding the work done on a hostile header.
pub const MAX_PROGRAM_HEADERS: u16 = 128;

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const EV_CURRENT: u8 = 1;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

/// Why an executable was refused. Segment errors carry the program header index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// The caller's `user_end` is unaligned, above [`USER_END_MAX`] or not above [`USER_START`].
    InvalidUserEnd(u64),
    /// The file is shorter than an ELF header.
    TooShort(usize),
    /// The file does not start with `\x7fELF`.
    BadMagic,
    /// Not `ELFCLASS64` (value found).
    NotElf64(u8),
    /// Not little endian (`EI_DATA` found).
    NotLittleEndian(u8),
    /// `EI_VERSION` or `e_version` is not 1.
    BadVersion,
    /// `e_machine` is not x86_64 (value found).
    WrongMachine(u16),
    /// `ET_DYN`: a PIE or shared object, which would need relocating.
    PositionIndependent,
    /// `e_type` is neither `ET_EXEC` nor `ET_DYN` (value found).
    NotExecutable(u16),
    /// `e_ehsize` is not 64.
    BadHeaderSize(u16),
    /// `e_phentsize` is not 56.
    BadProgramHeaderSize(u16),
    /// `e_phnum` is 0.
    NoProgramHeaders,
    /// `e_phnum` exceeds [`MAX_PROGRAM_HEADERS`] (includes the `PN_XNUM` escape).
    TooManyProgramHeaders(u16),
    /// The program header table extends past the end of the file.
    ProgramHeadersOutOfFile,
    /// A `PT_INTERP` header: the program wants a dynamic loader.
    Interpreter,
    /// A `PT_DYNAMIC` header: the program wants dynamic linking or relocation.
    Dynamic,
    /// More than [`MAX_LOAD_SEGMENTS`] non-empty `PT_LOAD` segments.
    TooManySegments,
    /// No non-empty `PT_LOAD` segment.
    NoLoadSegments,
    /// `p_filesz > p_memsz`.
    FileSizeExceedsMemSize {
        /// Program header index.
        index: usize,
    },
    /// The segment's file bytes extend past the end of the file (or the sum overflows).
    SegmentOutOfFile {
        /// Program header index.
        index: usize,
    },
    /// `p_vaddr + p_memsz` overflows.
    AddressOverflow {
        /// Program header index.
        index: usize,
    },
    /// The segment is not entirely inside `[USER_START, user_end)`.
    OutsideUserSpace {
        /// Program header index.
        index: usize,
    },
    /// The segment is writable and executable (W^X).
    WritableAndExecutable {
        /// Program header index.
        index: usize,
    },
    /// `p_vaddr` and `p_offset` differ modulo the page size, so pages cannot be mapped.
    NotCongruent {
        /// Program header index.
        index: usize,
    },
    /// `p_align` is neither 0 nor a power of two.
    BadAlignment {
        /// Program header index.
        index: usize,
        /// The value found.
        align: u64,
    },
    /// Two segments claim the same virtual bytes.
    OverlappingSegments {
        /// Earlier program header index.
        first: usize,
        /// Later program header index.
        second: usize,
    },
    /// Two segments share a page but want different permissions for it.
    ConflictingPagePermissions {
        /// Earlier program header index.
        first: usize,
        /// Later program header index.
        second: usize,
    },
    /// The entry point is not inside an executable segment (address found).
    EntryNotExecutable(u64),
}

impl fmt::Display for ElfError {
    /// A one-line message for the kernel log and evidence.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ElfError::*;
        match *self {
            InvalidUserEnd(e) => write!(f, "invalid user address limit {e:#x}"),
            TooShort(n) => write!(f, "file too short for an ELF header ({n} bytes)"),
            BadMagic => f.write_str("not an ELF file (bad magic)"),
            NotElf64(c) => write!(f, "not a 64-bit ELF (class {c})"),
            NotLittleEndian(d) => write!(f, "not little endian (data encoding {d})"),
            BadVersion => f.write_str("unsupported ELF version"),
            WrongMachine(m) => write!(f, "not an x86_64 executable (machine {m})"),
            PositionIndependent => f.write_str(
                "ET_DYN (PIE) executables are not supported: build with -C relocation-model=static",
            ),
            NotExecutable(t) => write!(f, "not an executable (type {t})"),
            BadHeaderSize(s) => write!(f, "bad ELF header size {s}"),
            BadProgramHeaderSize(s) => write!(f, "bad program header entry size {s}"),
            NoProgramHeaders => f.write_str("no program headers"),
            TooManyProgramHeaders(n) => {
                write!(f, "{n} program headers (at most {MAX_PROGRAM_HEADERS})")
            }
            ProgramHeadersOutOfFile => f.write_str("program header table lies outside the file"),
            Interpreter => {
                f.write_str("PT_INTERP present: dynamically linked executables are not supported")
            }
            Dynamic => f.write_str("PT_DYNAMIC present: only static executables are supported"),
            TooManySegments => write!(f, "more than {MAX_LOAD_SEGMENTS} loadable segments"),
            NoLoadSegments => f.write_str("no loadable segments"),
            FileSizeExceedsMemSize { index } => {
                write!(f, "segment {index}: file size exceeds memory size")
            }
            SegmentOutOfFile { index } => {
                write!(f, "segment {index}: file bytes lie outside the file")
            }
            AddressOverflow { index } => write!(f, "segment {index}: address range overflows"),
            OutsideUserSpace { index } => write!(f, "segment {index}: lies outside user space"),
            WritableAndExecutable { index } => {
                write!(f, "segment {index}: writable and executable (W^X)")
            }
            NotCongruent { index } => {
                write!(f, "segment {index}: address and file offset differ modulo the page size")
            }
            BadAlignment { index, align } => {
                write!(f, "segment {index}: alignment {align:#x} is not a power of two")
            }
            OverlappingSegments { first, second } => {
                write!(f, "segments {first} and {second} overlap")
            }
            ConflictingPagePermissions { first, second } => {
                write!(f, "segments {first} and {second} share a page with different permissions")
            }
            EntryNotExecutable(e) => {
                write!(f, "entry point {e:#x} is not in an executable segment")
            }
        }
    }
}

/// Access rights of a segment, from `p_flags`; they become page-table permissions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SegmentFlags {
    /// `PF_R`.
    pub read: bool,
    /// `PF_W`.
    pub write: bool,
    /// `PF_X`.
    pub exec: bool,
}

impl SegmentFlags {
    /// Decodes `p_flags`, ignoring OS- and processor-specific bits.
    pub const fn from_bits(p_flags: u32) -> Self {
        SegmentFlags {
            read: p_flags & PF_R != 0,
            write: p_flags & PF_W != 0,
            exec: p_flags & PF_X != 0,
        }
    }
}

/// One validated `PT_LOAD` segment: map `[vaddr, vaddr + memsz)`, copy `filesz` bytes from
/// `file_offset`, zero the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadSegment {
    /// Index of its program header, to name it in diagnostics.
    pub index: usize,
    /// First virtual address.
    pub vaddr: u64,
    /// Bytes of memory the segment occupies (≥ `filesz`).
    pub memsz: u64,
    /// Bytes taken from the file; the remaining `memsz - filesz` are zero (`.bss`).
    pub filesz: u64,
    /// Offset of the file bytes.
    pub file_offset: u64,
    /// Access rights.
    pub flags: SegmentFlags,
    /// `p_align` as given (0 or a power of two); informational, the kernel maps 4 KiB pages.
    pub align: u64,
}

impl LoadSegment {
    /// One past the last virtual address.
    pub const fn end(&self) -> u64 {
        // Cannot overflow for a validated segment: vaddr + memsz <= user_end.
        self.vaddr.wrapping_add(self.memsz)
    }

    /// The pages the segment touches, see [`page_range`].
    pub const fn page_range(&self) -> (u64, u64) {
        page_range(self)
    }

    /// Number of pages the segment touches.
    pub const fn page_count(&self) -> u64 {
        let (s, e) = page_range(self);
        (e - s) / PAGE_SIZE
    }
}

/// Page-aligned `[start_page, end_page)` address range covering a segment, the unit the
/// kernel allocates and maps. `end_page` is exclusive.
pub const fn page_range(seg: &LoadSegment) -> (u64, u64) {
    let start = seg.vaddr & !(PAGE_SIZE - 1);
    // Validated segments end at or below user_end <= 2^47, so rounding up cannot overflow.
    let end = seg.end().wrapping_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
    (start, end)
}

/// A validated executable borrowing the module bytes.
#[derive(Clone, Copy, Debug)]
pub struct ElfImage<'a> {
    bytes: &'a [u8],
    entry: u64,
    phoff: usize,
    phnum: usize,
    user_end: u64,
}

#[derive(Clone, Copy)]
struct Phdr {
    p_type: u32,
    p_flags: u32,
    p_offset: u64,
    p_vaddr: u64,
    p_filesz: u64,
    p_memsz: u64,
    p_align: u64,
}

fn rd<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    rd(b, off).map(u32::from_le_bytes)
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    rd(b, off).map(u64::from_le_bytes)
}

fn phdr_at(b: &[u8], off: usize) -> Option<Phdr> {
    Some(Phdr {
        p_type: u32_at(b, off)?,
        p_flags: u32_at(b, off + 4)?,
        p_offset: u64_at(b, off + 8)?,
        p_vaddr: u64_at(b, off + 16)?,
        p_filesz: u64_at(b, off + 32)?,
        p_memsz: u64_at(b, off + 40)?,
        p_align: u64_at(b, off + 48)?,
    })
}

impl<'a> ElfImage<'a> {
    /// Validates `bytes` as a static x86_64 executable whose segments all lie below
    /// `user_end` (page aligned, at most [`USER_END_MAX`]). See the crate docs for the full
    /// list of checks.
    pub fn parse(bytes: &'a [u8], user_end: u64) -> Result<Self, ElfError> {
        if user_end > USER_END_MAX || !user_end.is_multiple_of(PAGE_SIZE) || user_end <= USER_START
        {
            return Err(ElfError::InvalidUserEnd(user_end));
        }
        let ehdr: [u8; EHDR_SIZE] = rd(bytes, 0).ok_or(ElfError::TooShort(bytes.len()))?;
        if ehdr[..4] != *b"\x7fELF" {
            return Err(ElfError::BadMagic);
        }
        if ehdr[4] != ELFCLASS64 {
            return Err(ElfError::NotElf64(ehdr[4]));
        }
        if ehdr[5] != ELFDATA2LSB {
            return Err(ElfError::NotLittleEndian(ehdr[5]));
        }
        let h16 = |off: usize| u16::from_le_bytes([ehdr[off], ehdr[off + 1]]);
        let e_version = u32_at(&ehdr, 20).unwrap_or(0);
        if ehdr[6] != EV_CURRENT || e_version != u32::from(EV_CURRENT) {
            return Err(ElfError::BadVersion);
        }
        let machine = h16(18);
        if machine != EM_X86_64 {
            return Err(ElfError::WrongMachine(machine));
        }
        match h16(16) {
            ET_EXEC => {}
            ET_DYN => return Err(ElfError::PositionIndependent),
            t => return Err(ElfError::NotExecutable(t)),
        }
        let ehsize = h16(52);
        if usize::from(ehsize) != EHDR_SIZE {
            return Err(ElfError::BadHeaderSize(ehsize));
        }
        let phnum = h16(56);
        if phnum == 0 {
            return Err(ElfError::NoProgramHeaders);
        }
        if phnum > MAX_PROGRAM_HEADERS {
            return Err(ElfError::TooManyProgramHeaders(phnum));
        }
        let phentsize = h16(54);
        if usize::from(phentsize) != PHDR_SIZE {
            return Err(ElfError::BadProgramHeaderSize(phentsize));
        }
        let entry = u64_at(&ehdr, 24).unwrap_or(0);
        let phoff = u64_at(&ehdr, 32).unwrap_or(0);
        let table_len = usize::from(phnum) * PHDR_SIZE;
        let phoff = usize::try_from(phoff)
            .ok()
            .filter(|&off| off.checked_add(table_len).is_some_and(|end| end <= bytes.len()))
            .ok_or(ElfError::ProgramHeadersOutOfFile)?;
        let image = ElfImage { bytes, entry, phoff, phnum: usize::from(phnum), user_end };
        image.validate_segments()?;
        Ok(image)
    }

    /// Per-segment checks, pairwise overlap, entry point.
    fn validate_segments(&self) -> Result<(), ElfError> {
        let mut loads = [None::<LoadSegment>; MAX_LOAD_SEGMENTS];
        let mut count = 0;
        for index in 0..self.phnum {
            let ph = self.phdr(index).ok_or(ElfError::ProgramHeadersOutOfFile)?;
            match ph.p_type {
                PT_INTERP => return Err(ElfError::Interpreter),
                PT_DYNAMIC => return Err(ElfError::Dynamic),
                PT_LOAD => {}
                _ => continue,
            }
            let seg = self.check_load(index, &ph)?;
            let Some(seg) = seg else { continue };
            if count == MAX_LOAD_SEGMENTS {
                return Err(ElfError::TooManySegments);
            }
            for other in loads[..count].iter().flatten() {
                if seg.vaddr < other.end() && other.vaddr < seg.end() {
                    return Err(ElfError::OverlappingSegments {
                        first: other.index,
                        second: index,
                    });
                }
                let (a0, a1) = page_range(other);
                let (b0, b1) = page_range(&seg);
                if b0 < a1 && a0 < b1 && seg.flags != other.flags {
                    return Err(ElfError::ConflictingPagePermissions {
                        first: other.index,
                        second: index,
                    });
                }
            }
            loads[count] = Some(seg);
            count += 1;
        }
        if count == 0 {
            return Err(ElfError::NoLoadSegments);
        }
        let entry_ok = loads[..count]
            .iter()
            .flatten()
            .any(|s| s.flags.exec && s.vaddr <= self.entry && self.entry < s.end());
        if !entry_ok {
            return Err(ElfError::EntryNotExecutable(self.entry));
        }
        Ok(())
    }

    /// Checks one `PT_LOAD`; `Ok(None)` for an ignored empty segment.
    fn check_load(&self, index: usize, ph: &Phdr) -> Result<Option<LoadSegment>, ElfError> {
        if ph.p_filesz > ph.p_memsz {
            return Err(ElfError::FileSizeExceedsMemSize { index });
        }
        let in_file =
            ph.p_offset.checked_add(ph.p_filesz).is_some_and(|end| end <= self.bytes.len() as u64);
        if !in_file {
            return Err(ElfError::SegmentOutOfFile { index });
        }
        if ph.p_memsz == 0 {
            return Ok(None);
        }
        if ph.p_align > 1 && !ph.p_align.is_power_of_two() {
            return Err(ElfError::BadAlignment { index, align: ph.p_align });
        }
        let end = ph.p_vaddr.checked_add(ph.p_memsz).ok_or(ElfError::AddressOverflow { index })?;
        if ph.p_vaddr < USER_START || end > self.user_end {
            return Err(ElfError::OutsideUserSpace { index });
        }
        let flags = SegmentFlags::from_bits(ph.p_flags);
        if flags.write && flags.exec {
            return Err(ElfError::WritableAndExecutable { index });
        }
        if ph.p_vaddr % PAGE_SIZE != ph.p_offset % PAGE_SIZE {
            return Err(ElfError::NotCongruent { index });
        }
        Ok(Some(LoadSegment {
            index,
            vaddr: ph.p_vaddr,
            memsz: ph.p_memsz,
            filesz: ph.p_filesz,
            file_offset: ph.p_offset,
            flags,
            align: ph.p_align,
        }))
    }

    fn phdr(&self, index: usize) -> Option<Phdr> {
        phdr_at(self.bytes, self.phoff.checked_add(index.checked_mul(PHDR_SIZE)?)?)
    }

    /// The validated entry point, inside an executable segment.
    pub const fn entry(&self) -> u64 {
        self.entry
    }

    /// The `user_end` the image was validated against.
    pub const fn user_end(&self) -> u64 {
        self.user_end
    }

    /// The whole module, e.g. for hashing into evidence.
    pub const fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The non-empty `PT_LOAD` segments in program header order, all validated by `parse`.
    pub fn segments(&self) -> Segments<'a> {
        Segments { image: *self, next: 0 }
    }

    /// The file bytes to copy for a segment of this image (`filesz` bytes at `file_offset`).
    /// Returns an empty slice for a segment that does not belong to this image's file.
    pub fn segment_data(&self, seg: &LoadSegment) -> &'a [u8] {
        let range = usize::try_from(seg.file_offset)
            .ok()
            .and_then(|s| Some((s, s.checked_add(usize::try_from(seg.filesz).ok()?)?)));
        match range {
            Some((s, e)) => self.bytes.get(s..e).unwrap_or(&[]),
            None => &[],
        }
    }

    /// Lowest and one-past-highest page address any segment touches: the span the kernel
    /// reserves for the image (a segment exists, so the span is non-empty).
    pub fn page_span(&self) -> (u64, u64) {
        self.segments()
            .map(|s| page_range(&s))
            .fold((u64::MAX, 0), |(lo, hi), (s, e)| (lo.min(s), hi.max(e)))
    }
}

/// Iterator over an image's validated `PT_LOAD` segments.
#[derive(Clone, Debug)]
pub struct Segments<'a> {
    image: ElfImage<'a>,
    next: usize,
}

impl Iterator for Segments<'_> {
    type Item = LoadSegment;

    fn next(&mut self) -> Option<LoadSegment> {
        while self.next < self.image.phnum {
            let index = self.next;
            self.next += 1;
            let ph = self.image.phdr(index)?;
            if ph.p_type != PT_LOAD {
                continue;
            }
            // Already validated by `parse`; a failure here is impossible, but skip rather
            // than panic.
            if let Ok(Some(seg)) = self.image.check_load(index, &ph) {
                return Some(seg);
            }
        }
        None
    }
}
