//! Multiboot 1 boot information, parsed and validated.
//!
//! The bootloader leaves a structure in physical memory and passes its address
//! in `ebx` (and the magic `0x2BADB002` in `eax`). Every field and pointer in it
//! is untrusted: [`BootInfo::parse`] reads it through [`PhysRead`] (so tests can
//! use a byte buffer), checks every length, copies what the kernel needs into
//! fixed-capacity storage and returns a [`MultibootError`] describing exactly
//! what was wrong otherwise. After parsing, nothing refers back into
//! bootloader memory, so the kernel may reuse it once it has consumed
//! [`BootInfo::occupied`].

use core::fmt;

use crate::memory::PhysRange;

/// Value of `eax` when a Multiboot 1 loader jumps to the kernel; anything else
/// means the info pointer in `ebx` is meaningless.
pub const BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;

/// Flag bit: `mem_lower` / `mem_upper` are valid.
pub const FLAG_MEMORY: u32 = 1 << 0;
/// Flag bit: `boot_device` is valid.
pub const FLAG_BOOT_DEVICE: u32 = 1 << 1;
/// Flag bit: `cmdline` is valid.
pub const FLAG_CMDLINE: u32 = 1 << 2;
/// Flag bit: `mods_count` / `mods_addr` are valid.
pub const FLAG_MODULES: u32 = 1 << 3;
/// Flag bit: a.out symbol table fields are valid (exclusive with bit 5).
pub const FLAG_AOUT_SYMS: u32 = 1 << 4;
/// Flag bit: ELF section header fields are valid (exclusive with bit 4).
pub const FLAG_ELF_SECTIONS: u32 = 1 << 5;
/// Flag bit: `mmap_length` / `mmap_addr` are valid.
pub const FLAG_MMAP: u32 = 1 << 6;
/// Flag bit: `drives_length` / `drives_addr` are valid.
pub const FLAG_DRIVES: u32 = 1 << 7;
/// Flag bit: `config_table` is valid.
pub const FLAG_CONFIG_TABLE: u32 = 1 << 8;
/// Flag bit: `boot_loader_name` is valid.
pub const FLAG_BOOT_LOADER_NAME: u32 = 1 << 9;
/// Flag bit: `apm_table` is valid.
pub const FLAG_APM_TABLE: u32 = 1 << 10;
/// Flag bit: VBE fields are valid.
pub const FLAG_VBE: u32 = 1 << 11;
/// Flag bit: framebuffer fields are valid.
pub const FLAG_FRAMEBUFFER: u32 = 1 << 12;
/// All flag bits Multiboot 1 defines; others are ignored (as the spec asks)
/// but reported through [`BootInfo::unknown_flags`].
pub const KNOWN_FLAGS: u32 = (1 << 13) - 1;

/// Longest kernel command line accepted (bytes, excluding the NUL). Bounded
/// so a missing terminator cannot make the parser walk through memory.
pub const MAX_CMDLINE_LEN: usize = 1024;
/// Longest boot loader name kept (bytes, excluding the NUL).
pub const MAX_LOADER_NAME_LEN: usize = 64;
/// Longest module command line accepted (bytes, excluding the NUL).
pub const MAX_MODULE_CMDLINE_LEN: usize = 256;
/// Memory-map entries (non-empty) that can be stored.
pub const MAX_MMAP_ENTRIES: usize = 128;
/// Raw memory-map records (including zero-length ones) that will be walked;
/// bounds the work a hostile `mmap_length` can cause.
pub const MAX_MMAP_RECORDS: usize = 1024;
/// Boot modules that can be stored; more is an error, never silent loss.
pub const MAX_MODULES: usize = 16;

/// Smallest legal value of an mmap entry's `size` field (base + length + type).
const MMAP_ENTRY_MIN_SIZE: u32 = 20;
/// Size of one module-list entry.
const MODULE_ENTRY_SIZE: u64 = 16;
/// Largest info structure we read (through the framebuffer colour info).
const INFO_MAX_LEN: usize = 116;
/// Capacity of the occupied-range list: 7 fixed structures + 2 per module.
const OCCUPIED_CAPACITY: usize = 7 + 2 * MAX_MODULES;

/// Why physical memory could not be read; returned by [`PhysRead`]
/// implementations so bad pointers become errors instead of faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// The range `[phys, phys + len)` is not backed by readable memory.
    OutOfBounds {
        /// First address of the failed read.
        phys: u64,
        /// Length of the failed read.
        len: usize,
    },
    /// The address is not mapped by the kernel's current page tables.
    Unmapped {
        /// First address of the failed read.
        phys: u64,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutOfBounds { phys, len } => {
                write!(f, "physical range {phys:#x}+{len:#x} is out of bounds")
            }
            Self::Unmapped { phys } => write!(f, "physical address {phys:#x} is not mapped"),
        }
    }
}

/// Access to physical memory, abstracted so the parser runs unchanged in the
/// kernel (reading identity-mapped memory) and in host tests (a byte buffer).
pub trait PhysRead {
    /// Fills `buf` with the bytes at `[phys, phys + buf.len())` or reports why
    /// that range cannot be read.
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), ReadError>;
}

impl<T: PhysRead + ?Sized> PhysRead for &T {
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        (**self).read(phys, buf)
    }
}

/// A [`PhysRead`] over one byte slice that stands for physical memory starting
/// at `base`; lets the kernel wrap an identity-mapped window without `unsafe`
/// in this crate.
#[derive(Debug, Clone, Copy)]
pub struct SliceMemory<'a> {
    base: u64,
    bytes: &'a [u8],
}

impl<'a> SliceMemory<'a> {
    /// Physical memory `[base, base + bytes.len())` backed by `bytes`.
    pub const fn new(base: u64, bytes: &'a [u8]) -> Self {
        Self { base, bytes }
    }
}

impl PhysRead for SliceMemory<'_> {
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let oob = ReadError::OutOfBounds {
            phys,
            len: buf.len(),
        };
        let off = phys.checked_sub(self.base).ok_or(oob)?;
        let off = usize::try_from(off).map_err(|_| oob)?;
        let end = off.checked_add(buf.len()).ok_or(oob)?;
        let src = self.bytes.get(off..end).ok_or(oob)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// A piece of bootloader-provided data; names the culprit in errors and the
/// owner of each range in [`BootInfo::occupied`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootData {
    /// The Multiboot information structure itself.
    InfoStructure,
    /// The memory map (`mmap_addr`, `mmap_length`).
    MemoryMap,
    /// The module list (`mods_addr`, 16 bytes per module).
    ModuleList,
    /// The kernel command line string.
    CommandLine,
    /// The boot loader name string.
    BootLoaderName,
    /// The BIOS drive list.
    Drives,
    /// The ELF section header table of the kernel image.
    ElfSectionHeaders,
    /// The payload of module `n`.
    Module(usize),
    /// The command line string of module `n`.
    ModuleCommandLine(usize),
}

impl fmt::Display for BootData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::InfoStructure => f.write_str("multiboot info structure"),
            Self::MemoryMap => f.write_str("memory map"),
            Self::ModuleList => f.write_str("module list"),
            Self::CommandLine => f.write_str("kernel command line"),
            Self::BootLoaderName => f.write_str("boot loader name"),
            Self::Drives => f.write_str("drive list"),
            Self::ElfSectionHeaders => f.write_str("ELF section headers"),
            Self::Module(n) => write!(f, "module {n}"),
            Self::ModuleCommandLine(n) => write!(f, "command line of module {n}"),
        }
    }
}

/// What was wrong with a NUL-terminated string from the bootloader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringError {
    /// No NUL within `max` bytes: a wild pointer or a missing terminator.
    Unterminated {
        /// The limit that was reached.
        max: usize,
    },
    /// The bytes are not UTF-8; Keel's command-line syntax is UTF-8 only.
    InvalidUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
}

/// Why the Multiboot hand-over was rejected. Each variant carries enough to
/// print a precise message; the kernel then falls back (e.g. to `mem_upper`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MultibootError {
    /// `eax` did not hold [`BOOTLOADER_MAGIC`]: not booted by Multiboot 1.
    BadMagic {
        /// The value found instead.
        found: u32,
    },
    /// The info pointer was 0.
    NullInfoPointer,
    /// A structure could not be read through [`PhysRead`].
    Read {
        /// Which structure was being read.
        what: BootData,
        /// The accessor's reason.
        error: ReadError,
    },
    /// Flags 4 (a.out) and 5 (ELF) are both set; the spec makes them exclusive
    /// and the fields overlap, so neither can be trusted.
    ConflictingSymbolFlags,
    /// An mmap entry's `size` is below 20, so it cannot hold base/length/type
    /// (and a size of 0 would loop forever).
    MmapEntryTooSmall {
        /// Byte offset of the entry within the map.
        offset: u32,
        /// The `size` field found.
        size: u32,
    },
    /// An mmap entry extends past `mmap_length` (huge `size`, or a length that
    /// is not a whole number of entries).
    MmapEntryTruncated {
        /// Byte offset of the entry within the map.
        offset: u32,
        /// The `size` field found (0 if not even the size field fits).
        size: u32,
        /// Bytes left in the map at `offset`.
        remaining: u32,
    },
    /// An mmap entry's `base + length` overflows the 64-bit address space.
    MmapEntryOverflow {
        /// Index of the record in the map.
        index: usize,
        /// Its base.
        base: u64,
        /// Its length.
        length: u64,
    },
    /// More mmap records than [`MAX_MMAP_ENTRIES`] (non-empty) or
    /// [`MAX_MMAP_RECORDS`] (raw).
    TooManyMmapEntries {
        /// The limit that was exceeded.
        max: usize,
    },
    /// `mods_count` exceeds [`MAX_MODULES`].
    TooManyModules {
        /// The count found.
        count: u32,
        /// The limit.
        max: usize,
    },
    /// A module whose end lies before its start.
    ModuleBadRange {
        /// Module index.
        index: usize,
        /// `mod_start`.
        start: u32,
        /// `mod_end`.
        end: u32,
    },
    /// A string (command line, loader name, module string) is malformed.
    BadString {
        /// Which string.
        what: BootData,
        /// What is wrong with it.
        error: StringError,
    },
}

impl fmt::Display for MultibootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadMagic { found } => write!(
                f,
                "bootloader magic is {found:#010x}, expected {BOOTLOADER_MAGIC:#010x} (not booted via Multiboot 1)"
            ),
            Self::NullInfoPointer => f.write_str("multiboot info pointer is null"),
            Self::Read { what, error } => write!(f, "cannot read {what}: {error}"),
            Self::ConflictingSymbolFlags => {
                f.write_str("multiboot flags 4 (a.out symbols) and 5 (ELF sections) are both set")
            }
            Self::MmapEntryTooSmall { offset, size } => write!(
                f,
                "memory map entry at offset {offset:#x} has size {size}, minimum is {MMAP_ENTRY_MIN_SIZE}"
            ),
            Self::MmapEntryTruncated { offset, size, remaining } => write!(
                f,
                "memory map entry at offset {offset:#x} (size {size}) runs past mmap_length ({remaining} bytes left)"
            ),
            Self::MmapEntryOverflow { index, base, length } => write!(
                f,
                "memory map entry {index} base={base:#x} length={length:#x} overflows the address space"
            ),
            Self::TooManyMmapEntries { max } => {
                write!(f, "memory map has more than {max} entries")
            }
            Self::TooManyModules { count, max } => {
                write!(f, "{count} boot modules, at most {max} supported")
            }
            Self::ModuleBadRange { index, start, end } => {
                write!(f, "module {index} ends ({end:#x}) before it starts ({start:#x})")
            }
            Self::BadString { what, error: StringError::Unterminated { max } } => {
                write!(f, "{what} is not NUL-terminated within {max} bytes")
            }
            Self::BadString { what, error: StringError::InvalidUtf8 { valid_up_to } } => {
                write!(f, "{what} is not valid UTF-8 (valid up to byte {valid_up_to})")
            }
        }
    }
}

/// Classification of a memory-map region; only [`MemoryType::Available`] may
/// be handed to the frame allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryType {
    /// Type 1: RAM free for use.
    Available,
    /// Type 2: reserved (ROM, MMIO, firmware).
    Reserved,
    /// Type 3: holds ACPI tables; reusable only after they have been parsed.
    AcpiReclaimable,
    /// Type 4: ACPI non-volatile storage, must be preserved across sleep.
    AcpiNvs,
    /// Type 5: defective RAM.
    BadMemory,
    /// Any other type value; treated as reserved.
    Other(u32),
}

impl MemoryType {
    /// Decodes the Multiboot/E820 type value.
    pub const fn from_raw(raw: u32) -> Self {
        match raw {
            1 => Self::Available,
            2 => Self::Reserved,
            3 => Self::AcpiReclaimable,
            4 => Self::AcpiNvs,
            5 => Self::BadMemory,
            n => Self::Other(n),
        }
    }
}

/// One non-empty region of the firmware memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmapEntry {
    /// First physical address.
    pub base: u64,
    /// Length in bytes (never 0, and `base + length` never overflows).
    pub length: u64,
    /// What the region may be used for.
    pub kind: MemoryType,
}

impl MmapEntry {
    /// The region as a half-open range. Always `Some` for entries produced by
    /// [`BootInfo::parse`], which rejects overflowing ones.
    pub const fn range(&self) -> Option<PhysRange> {
        PhysRange::from_base_len(self.base, self.length)
    }
}

/// A boot module (e.g. an initial user program) loaded by the bootloader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Module {
    /// First byte of the module.
    pub start: u32,
    /// One past the last byte (validated `>= start`).
    pub end: u32,
    /// Physical address of its NUL-terminated command line; 0 if none.
    pub cmdline_phys: u32,
    /// Validated length of that command line, excluding the NUL.
    pub cmdline_len: u32,
}

impl Module {
    /// The physical memory the module occupies, to reserve and to map.
    pub const fn range(&self) -> PhysRange {
        PhysRange {
            start: self.start as u64,
            end: self.end as u64,
        }
    }

    /// The physical memory its command line occupies (including the NUL).
    pub const fn cmdline_range(&self) -> Option<PhysRange> {
        if self.cmdline_phys == 0 {
            None
        } else {
            let start = self.cmdline_phys as u64;
            Some(PhysRange {
                start,
                end: start + self.cmdline_len as u64 + 1,
            })
        }
    }

    /// Reads the module's command line into `buf` (which should hold
    /// [`MAX_MODULE_CMDLINE_LEN`] bytes); module strings are not copied by
    /// the parser to keep [`BootInfo`] small. Empty if the module has none.
    pub fn read_cmdline<'b, M: PhysRead + ?Sized>(
        &self,
        mem: &M,
        index: usize,
        buf: &'b mut [u8],
    ) -> Result<&'b str, MultibootError> {
        if self.cmdline_phys == 0 {
            return Ok("");
        }
        let what = BootData::ModuleCommandLine(index);
        let n = read_c_string(mem, self.cmdline_phys as u64, buf, what)?;
        utf8(&buf[..n], what)
    }
}

/// `mem_lower` / `mem_upper`: the legacy memory sizes, a fallback when there
/// is no memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BasicMemory {
    /// KiB of conventional memory starting at 0 (at most 640).
    pub lower_kib: u32,
    /// KiB of memory starting at 1 MiB, up to the first hole.
    pub upper_kib: u32,
}

/// Location of the kernel image's ELF section header table (flag 5), for
/// symbolising backtraces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfSections {
    /// Number of section headers.
    pub num: u32,
    /// Size of one header.
    pub entry_size: u32,
    /// Physical address of the table.
    pub addr: u32,
    /// Index of the section-name string table.
    pub shndx: u32,
}

/// Linear framebuffer set up by the bootloader (flag 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framebuffer {
    /// Physical address of the framebuffer.
    pub address: u64,
    /// Bytes per scan line.
    pub pitch: u32,
    /// Width in pixels (or characters for text mode).
    pub width: u32,
    /// Height in pixels (or characters).
    pub height: u32,
    /// Bits per pixel.
    pub bpp: u8,
    /// 0 indexed, 1 direct RGB, 2 EGA text.
    pub kind: u8,
}

/// A physical range holding bootloader data, with its owner, so the kernel
/// can reserve it before the frame allocator starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootRange {
    /// What lives there.
    pub kind: BootData,
    /// Where (never empty).
    pub range: PhysRange,
}

/// The validated Multiboot 1 hand-over, copied into fixed-capacity storage.
///
/// About 5 KiB; the kernel may want to keep it in a `static` rather than on a
/// small early-boot stack.
#[derive(Clone)]
pub struct BootInfo {
    info_phys: u32,
    flags: u32,
    basic_memory: Option<BasicMemory>,
    boot_device: Option<u32>,
    cmdline: [u8; MAX_CMDLINE_LEN],
    cmdline_len: Option<usize>,
    loader_name: [u8; MAX_LOADER_NAME_LEN],
    loader_name_len: Option<usize>,
    mmap: [MmapEntry; MAX_MMAP_ENTRIES],
    mmap_len: Option<usize>,
    zero_length_entries: usize,
    modules: [Module; MAX_MODULES],
    module_count: usize,
    elf_sections: Option<ElfSections>,
    config_table: Option<u32>,
    apm_table: Option<u32>,
    framebuffer: Option<Framebuffer>,
    occupied: [BootRange; OCCUPIED_CAPACITY],
    occupied_len: usize,
}

impl fmt::Debug for BootInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootInfo")
            .field("info_phys", &self.info_phys)
            .field("flags", &self.flags)
            .field("basic_memory", &self.basic_memory)
            .field("boot_device", &self.boot_device)
            .field("command_line", &self.command_line())
            .field("boot_loader_name", &self.boot_loader_name())
            .field("memory_map", &self.memory_map())
            .field("zero_length_entries", &self.zero_length_entries)
            .field("modules", &self.modules())
            .field("elf_sections", &self.elf_sections)
            .field("config_table", &self.config_table)
            .field("apm_table", &self.apm_table)
            .field("framebuffer", &self.framebuffer)
            .field("occupied", &self.occupied())
            .finish()
    }
}

/// Bytes of the info structure that must be read for the given flags (each
/// optional field group lies further into the structure).
fn info_len_for(flags: u32) -> usize {
    const ENDS: [(u32, usize); 13] = [
        (FLAG_FRAMEBUFFER, 116),
        (FLAG_VBE, 88),
        (FLAG_APM_TABLE, 72),
        (FLAG_BOOT_LOADER_NAME, 68),
        (FLAG_CONFIG_TABLE, 64),
        (FLAG_DRIVES, 60),
        (FLAG_MMAP, 52),
        (FLAG_ELF_SECTIONS, 44),
        (FLAG_AOUT_SYMS, 44),
        (FLAG_MODULES, 28),
        (FLAG_CMDLINE, 20),
        (FLAG_BOOT_DEVICE, 16),
        (FLAG_MEMORY, 12),
    ];
    ENDS.iter()
        .find(|(bit, _)| flags & bit != 0)
        .map_or(4, |&(_, len)| len)
}

fn le32(b: &[u8], off: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[off..off + 4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(a)
}

fn read<M: PhysRead + ?Sized>(
    mem: &M,
    phys: u64,
    buf: &mut [u8],
    what: BootData,
) -> Result<(), MultibootError> {
    mem.read(phys, buf)
        .map_err(|error| MultibootError::Read { what, error })
}

/// Reads a NUL-terminated string at `phys` into `buf`, returning its length.
/// Reads byte by byte so a string ending right before unreadable memory works.
fn read_c_string<M: PhysRead + ?Sized>(
    mem: &M,
    phys: u64,
    buf: &mut [u8],
    what: BootData,
) -> Result<usize, MultibootError> {
    let max = buf.len();
    let mut addr = phys;
    for (i, slot) in buf.iter_mut().enumerate() {
        let mut b = [0u8; 1];
        read(mem, addr, &mut b, what)?;
        if b[0] == 0 {
            return Ok(i);
        }
        *slot = b[0];
        addr += 1;
    }
    // The buffer is full; only a NUL right after it is acceptable.
    let mut b = [0u8; 1];
    read(mem, addr, &mut b, what)?;
    if b[0] == 0 {
        return Ok(max);
    }
    Err(MultibootError::BadString {
        what,
        error: StringError::Unterminated { max },
    })
}

fn utf8(bytes: &[u8], what: BootData) -> Result<&str, MultibootError> {
    core::str::from_utf8(bytes).map_err(|e| MultibootError::BadString {
        what,
        error: StringError::InvalidUtf8 {
            valid_up_to: e.valid_up_to(),
        },
    })
}

impl BootInfo {
    /// Validates `magic` and parses the info structure at `info_phys`.
    ///
    /// Everything referenced by the structure (memory map, modules, strings)
    /// is read and checked here, so a returned `BootInfo` is fully trusted
    /// and its accessors cannot fail.
    pub fn parse<M: PhysRead + ?Sized>(
        mem: &M,
        magic: u32,
        info_phys: u32,
    ) -> Result<BootInfo, MultibootError> {
        if magic != BOOTLOADER_MAGIC {
            return Err(MultibootError::BadMagic { found: magic });
        }
        if info_phys == 0 {
            return Err(MultibootError::NullInfoPointer);
        }
        let base = info_phys as u64;
        let mut raw = [0u8; INFO_MAX_LEN];
        read(mem, base, &mut raw[..4], BootData::InfoStructure)?;
        let flags = le32(&raw, 0);
        if flags & FLAG_AOUT_SYMS != 0 && flags & FLAG_ELF_SECTIONS != 0 {
            return Err(MultibootError::ConflictingSymbolFlags);
        }
        let len = info_len_for(flags);
        read(mem, base, &mut raw[..len], BootData::InfoStructure)?;
        let has = |bit: u32| flags & bit != 0;

        let mut info = BootInfo {
            info_phys,
            flags,
            basic_memory: None,
            boot_device: None,
            cmdline: [0; MAX_CMDLINE_LEN],
            cmdline_len: None,
            loader_name: [0; MAX_LOADER_NAME_LEN],
            loader_name_len: None,
            mmap: [MmapEntry {
                base: 0,
                length: 0,
                kind: MemoryType::Reserved,
            }; MAX_MMAP_ENTRIES],
            mmap_len: None,
            zero_length_entries: 0,
            modules: [Module::default(); MAX_MODULES],
            module_count: 0,
            elf_sections: None,
            config_table: None,
            apm_table: None,
            framebuffer: None,
            occupied: [BootRange {
                kind: BootData::InfoStructure,
                range: PhysRange { start: 0, end: 0 },
            }; OCCUPIED_CAPACITY],
            occupied_len: 0,
        };
        info.occupy(BootData::InfoStructure, base, len as u64);

        if has(FLAG_MEMORY) {
            info.basic_memory = Some(BasicMemory {
                lower_kib: le32(&raw, 4),
                upper_kib: le32(&raw, 8),
            });
        }
        if has(FLAG_BOOT_DEVICE) {
            info.boot_device = Some(le32(&raw, 12));
        }
        if has(FLAG_CMDLINE) {
            let phys = le32(&raw, 16) as u64;
            let n = read_c_string(mem, phys, &mut info.cmdline, BootData::CommandLine)?;
            utf8(&info.cmdline[..n], BootData::CommandLine)?;
            info.cmdline_len = Some(n);
            info.occupy(BootData::CommandLine, phys, n as u64 + 1);
        }
        if has(FLAG_MODULES) {
            info.parse_modules(mem, le32(&raw, 20), le32(&raw, 24))?;
        }
        if has(FLAG_ELF_SECTIONS) {
            let e = ElfSections {
                num: le32(&raw, 28),
                entry_size: le32(&raw, 32),
                addr: le32(&raw, 36),
                shndx: le32(&raw, 40),
            };
            info.occupy(
                BootData::ElfSectionHeaders,
                e.addr as u64,
                e.num as u64 * e.entry_size as u64,
            );
            info.elf_sections = Some(e);
        }
        if has(FLAG_MMAP) {
            info.parse_mmap(mem, le32(&raw, 44), le32(&raw, 48))?;
        }
        if has(FLAG_DRIVES) {
            info.occupy(
                BootData::Drives,
                le32(&raw, 56) as u64,
                le32(&raw, 52) as u64,
            );
        }
        if has(FLAG_CONFIG_TABLE) {
            info.config_table = Some(le32(&raw, 60));
        }
        if has(FLAG_BOOT_LOADER_NAME) {
            let phys = le32(&raw, 64) as u64;
            let n = read_c_string(mem, phys, &mut info.loader_name, BootData::BootLoaderName)?;
            utf8(&info.loader_name[..n], BootData::BootLoaderName)?;
            info.loader_name_len = Some(n);
            info.occupy(BootData::BootLoaderName, phys, n as u64 + 1);
        }
        if has(FLAG_APM_TABLE) {
            info.apm_table = Some(le32(&raw, 68));
        }
        if has(FLAG_FRAMEBUFFER) {
            info.framebuffer = Some(Framebuffer {
                address: le64(&raw, 88),
                pitch: le32(&raw, 96),
                width: le32(&raw, 100),
                height: le32(&raw, 104),
                bpp: raw[108],
                kind: raw[109],
            });
        }
        Ok(info)
    }

    fn occupy(&mut self, kind: BootData, start: u64, len: u64) {
        // Both operands come from u32 fields (or a u32*u32 product), so the sum
        // cannot overflow u64; the list capacity covers every possible entry.
        let range = PhysRange {
            start,
            end: start.saturating_add(len),
        };
        if !range.is_empty() && self.occupied_len < OCCUPIED_CAPACITY {
            self.occupied[self.occupied_len] = BootRange { kind, range };
            self.occupied_len += 1;
        }
    }

    fn parse_modules<M: PhysRead + ?Sized>(
        &mut self,
        mem: &M,
        count: u32,
        addr: u32,
    ) -> Result<(), MultibootError> {
        if count as usize > MAX_MODULES {
            return Err(MultibootError::TooManyModules {
                count,
                max: MAX_MODULES,
            });
        }
        self.occupy(
            BootData::ModuleList,
            addr as u64,
            count as u64 * MODULE_ENTRY_SIZE,
        );
        for index in 0..count as usize {
            let mut e = [0u8; MODULE_ENTRY_SIZE as usize];
            let phys = addr as u64 + index as u64 * MODULE_ENTRY_SIZE;
            read(mem, phys, &mut e, BootData::ModuleList)?;
            let (start, end, string) = (le32(&e, 0), le32(&e, 4), le32(&e, 8));
            if end < start {
                return Err(MultibootError::ModuleBadRange { index, start, end });
            }
            let mut m = Module {
                start,
                end,
                cmdline_phys: string,
                cmdline_len: 0,
            };
            if string != 0 {
                let mut buf = [0u8; MAX_MODULE_CMDLINE_LEN];
                let what = BootData::ModuleCommandLine(index);
                let n = read_c_string(mem, string as u64, &mut buf, what)?;
                utf8(&buf[..n], what)?;
                m.cmdline_len = n as u32;
            }
            self.modules[index] = m;
            self.module_count = index + 1;
            self.occupy(BootData::Module(index), start as u64, (end - start) as u64);
            if let Some(r) = m.cmdline_range() {
                self.occupy(BootData::ModuleCommandLine(index), r.start, r.len());
            }
        }
        Ok(())
    }

    fn parse_mmap<M: PhysRead + ?Sized>(
        &mut self,
        mem: &M,
        length: u32,
        addr: u32,
    ) -> Result<(), MultibootError> {
        self.occupy(BootData::MemoryMap, addr as u64, length as u64);
        let mut offset: u32 = 0;
        let mut records = 0usize;
        let mut stored = 0usize;
        while offset < length {
            let remaining = length - offset;
            if remaining < 4 {
                return Err(MultibootError::MmapEntryTruncated {
                    offset,
                    size: 0,
                    remaining,
                });
            }
            let phys = addr as u64 + offset as u64;
            let mut sz = [0u8; 4];
            read(mem, phys, &mut sz, BootData::MemoryMap)?;
            let size = u32::from_le_bytes(sz);
            if size < MMAP_ENTRY_MIN_SIZE {
                return Err(MultibootError::MmapEntryTooSmall { offset, size });
            }
            if size > remaining - 4 {
                return Err(MultibootError::MmapEntryTruncated {
                    offset,
                    size,
                    remaining,
                });
            }
            records += 1;
            if records > MAX_MMAP_RECORDS {
                return Err(MultibootError::TooManyMmapEntries {
                    max: MAX_MMAP_RECORDS,
                });
            }
            let mut e = [0u8; MMAP_ENTRY_MIN_SIZE as usize];
            read(mem, phys + 4, &mut e, BootData::MemoryMap)?;
            let (base, len, kind) = (le64(&e, 0), le64(&e, 8), le32(&e, 16));
            if len == 0 {
                self.zero_length_entries += 1;
            } else {
                if base.checked_add(len).is_none() {
                    return Err(MultibootError::MmapEntryOverflow {
                        index: records - 1,
                        base,
                        length: len,
                    });
                }
                if stored == MAX_MMAP_ENTRIES {
                    return Err(MultibootError::TooManyMmapEntries {
                        max: MAX_MMAP_ENTRIES,
                    });
                }
                self.mmap[stored] = MmapEntry {
                    base,
                    length: len,
                    kind: MemoryType::from_raw(kind),
                };
                stored += 1;
            }
            // size <= remaining - 4, so this stays <= length.
            offset += 4 + size;
        }
        self.mmap_len = Some(stored);
        Ok(())
    }

    /// The raw `flags` word, for logging.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Flag bits Multiboot 1 does not define; ignored, but worth logging.
    pub fn unknown_flags(&self) -> u32 {
        self.flags & !KNOWN_FLAGS
    }

    /// Physical address of the info structure as passed in `ebx`.
    pub fn info_phys(&self) -> u32 {
        self.info_phys
    }

    /// `mem_lower`/`mem_upper`, the fallback if there is no memory map.
    pub fn basic_memory(&self) -> Option<BasicMemory> {
        self.basic_memory
    }

    /// BIOS boot device word, if provided.
    pub fn boot_device(&self) -> Option<u32> {
        self.boot_device
    }

    /// The kernel command line bytes (without NUL), if provided.
    pub fn command_line_bytes(&self) -> Option<&[u8]> {
        self.cmdline_len.map(|n| &self.cmdline[..n])
    }

    /// The kernel command line (validated UTF-8 during parsing), if provided;
    /// feed it to [`crate::cmdline::CommandLine::parse`].
    pub fn command_line(&self) -> Option<&str> {
        self.command_line_bytes()
            .and_then(|b| core::str::from_utf8(b).ok())
    }

    /// The boot loader's name (e.g. `qemu`), if provided.
    pub fn boot_loader_name(&self) -> Option<&str> {
        self.loader_name_len
            .and_then(|n| core::str::from_utf8(&self.loader_name[..n]).ok())
    }

    /// Non-empty memory-map entries in table order, or `None` if the
    /// bootloader provided no map (flag 6 clear).
    pub fn memory_map(&self) -> Option<&[MmapEntry]> {
        self.mmap_len.map(|n| &self.mmap[..n])
    }

    /// Memory-map entries with length 0 that were skipped (harmless firmware
    /// noise, counted for the boot log).
    pub fn zero_length_entries(&self) -> usize {
        self.zero_length_entries
    }

    /// Boot modules in bootloader order (empty if flag 3 is clear).
    pub fn modules(&self) -> &[Module] {
        &self.modules[..self.module_count]
    }

    /// Where the kernel's ELF section headers are, if provided.
    pub fn elf_sections(&self) -> Option<ElfSections> {
        self.elf_sections
    }

    /// BIOS configuration table address, if provided.
    pub fn config_table(&self) -> Option<u32> {
        self.config_table
    }

    /// APM table address, if provided.
    pub fn apm_table(&self) -> Option<u32> {
        self.apm_table
    }

    /// Framebuffer description, if provided.
    pub fn framebuffer(&self) -> Option<Framebuffer> {
        self.framebuffer
    }

    /// Every non-empty physical range holding bootloader data or modules; the
    /// kernel reserves these (see
    /// [`crate::memory::MemoryMap::reserve_boot_info`]).
    pub fn occupied(&self) -> &[BootRange] {
        &self.occupied[..self.occupied_len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryMap;

    /// Sparse fake physical memory: several disjoint `Vec`-backed regions.
    struct FakeMem {
        regions: Vec<(u64, Vec<u8>)>,
    }

    impl FakeMem {
        fn new() -> Self {
            Self {
                regions: Vec::new(),
            }
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
            Err(ReadError::OutOfBounds {
                phys,
                len: buf.len(),
            })
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
                (
                    0,
                    FLAG_MEMORY | FLAG_CMDLINE | FLAG_MODULES | FLAG_MMAP | FLAG_BOOT_LOADER_NAME,
                ),
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
        assert_eq!(
            info.basic_memory(),
            Some(BasicMemory {
                lower_kib: 639,
                upper_kib: 130_944
            })
        );
        assert_eq!(info.command_line(), Some("proof=smp cpus=4 \"x\""));
        assert_eq!(info.boot_loader_name(), Some("qemu"));
        assert_eq!(info.boot_device(), None);
        assert_eq!(info.unknown_flags(), 0);
        let mm = info.memory_map().unwrap();
        assert_eq!(mm.len(), 6);
        assert_eq!(
            mm[0],
            MmapEntry {
                base: 0,
                length: 0x9fc00,
                kind: MemoryType::Available
            }
        );
        assert_eq!(mm[5].kind, MemoryType::Reserved);
        let m = info.modules();
        assert_eq!(m.len(), 1);
        assert_eq!(
            m[0].range(),
            PhysRange {
                start: 0x20_0000,
                end: 0x20_3000
            }
        );
        let mut buf = [0u8; MAX_MODULE_CMDLINE_LEN];
        assert_eq!(
            m[0].read_cmdline(&mem, 0, &mut buf).unwrap(),
            "init.elf arg"
        );

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
            MultibootError::Read {
                what: BootData::InfoStructure,
                ..
            }
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
        mem.put(
            INFO as u64,
            &info_bytes(&[(0, FLAG_AOUT_SYMS | FLAG_ELF_SECTIONS)]),
        );
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
            Some(ElfSections {
                num: 10,
                entry_size: 64,
                addr: 0x50000,
                shndx: 9
            })
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
        assert_eq!(
            kinds,
            vec![
                BootData::InfoStructure,
                BootData::ElfSectionHeaders,
                BootData::Drives
            ]
        );
        assert_eq!(info.occupied()[0].range.len(), 116);
        assert_eq!(info.occupied()[1].range.len(), 640);
    }

    fn with_mmap(mmap: &[u8], length: u32) -> Result<BootInfo, MultibootError> {
        let mut mem = FakeMem::new();
        mem.put(
            INFO as u64,
            &info_bytes(&[(0, FLAG_MMAP), (44, length), (48, MMAP)]),
        );
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
        let kinds: Vec<_> = info
            .memory_map()
            .unwrap()
            .iter()
            .map(|e| (e.base, e.kind))
            .collect();
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
            MultibootError::MmapEntryTooSmall {
                offset: 24,
                size: 0
            }
        );
        let m = mmap_entry(12, 0x1000, 0x1000, 1);
        assert_eq!(
            with_mmap(&m, 24).unwrap_err(),
            MultibootError::MmapEntryTooSmall {
                offset: 0,
                size: 12
            }
        );
    }

    #[test]
    fn mmap_entry_huge_size_or_truncated_length() {
        let m = mmap_entry(0xffff_fff0, 0x1000, 0x1000, 1);
        assert_eq!(
            with_mmap(&m[..24], 24).unwrap_err(),
            MultibootError::MmapEntryTruncated {
                offset: 0,
                size: 0xffff_fff0,
                remaining: 24
            }
        );
        // mmap_length not a whole number of entries.
        let mut m = mmap_entry(20, 0x1000, 0x1000, 1);
        m.extend(mmap_entry(20, 0x2000, 0x1000, 1));
        assert_eq!(
            with_mmap(&m, 40).unwrap_err(),
            MultibootError::MmapEntryTruncated {
                offset: 24,
                size: 20,
                remaining: 16
            }
        );
        assert_eq!(
            with_mmap(&m, 26).unwrap_err(),
            MultibootError::MmapEntryTruncated {
                offset: 24,
                size: 0,
                remaining: 2
            }
        );
        // mmap_length larger than readable memory.
        assert!(matches!(
            with_mmap(&m, 48 + 24).unwrap_err(),
            MultibootError::Read {
                what: BootData::MemoryMap,
                ..
            }
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
            MultibootError::MmapEntryOverflow {
                index: 1,
                base: u64::MAX - 0xfff,
                length: 0x2000
            }
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
            MultibootError::TooManyMmapEntries {
                max: MAX_MMAP_ENTRIES
            }
        );
        let mut m = Vec::new();
        for _ in 0..(MAX_MMAP_RECORDS + 1) {
            m.extend(mmap_entry(20, 0, 0, 1));
        }
        assert_eq!(
            with_mmap(&m, m.len() as u32).unwrap_err(),
            MultibootError::TooManyMmapEntries {
                max: MAX_MMAP_RECORDS
            }
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
                error: StringError::Unterminated {
                    max: MAX_CMDLINE_LEN
                }
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
            MultibootError::Read {
                what: BootData::CommandLine,
                ..
            }
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
                error: StringError::Unterminated {
                    max: MAX_LOADER_NAME_LEN
                }
            }
        );
    }

    #[test]
    fn modules_malformed() {
        let mut mem = qemu_mem();
        patch(&mut mem, INFO as u64, 20, 17);
        assert_eq!(
            BootInfo::parse(&mem, BOOTLOADER_MAGIC, INFO).unwrap_err(),
            MultibootError::TooManyModules {
                count: 17,
                max: MAX_MODULES
            }
        );
        patch(&mut mem, INFO as u64, 20, 2); // second entry not in memory
        assert!(matches!(
            BootInfo::parse(&mem, BOOTLOADER_MAGIC, INFO).unwrap_err(),
            MultibootError::Read {
                what: BootData::ModuleList,
                ..
            }
        ));
        patch(&mut mem, INFO as u64, 20, 1);
        patch(&mut mem, MODS as u64, 4, 0x1f_0000); // end < start
        assert_eq!(
            BootInfo::parse(&mem, BOOTLOADER_MAGIC, INFO).unwrap_err(),
            MultibootError::ModuleBadRange {
                index: 0,
                start: 0x20_0000,
                end: 0x1f_0000
            }
        );
        patch(&mut mem, MODS as u64, 4, 0x20_0000); // empty module is fine
        patch(&mut mem, MODS as u64, 8, 0); // and no string
        let info = BootInfo::parse(&mem, BOOTLOADER_MAGIC, INFO).unwrap();
        assert_eq!(info.modules()[0].cmdline_range(), None);
        let mut buf = [0u8; 8];
        assert_eq!(
            info.modules()[0].read_cmdline(&mem, 0, &mut buf).unwrap(),
            ""
        );
        assert!(info
            .occupied()
            .iter()
            .all(|r| !matches!(r.kind, BootData::Module(_))));
        patch(&mut mem, MODS as u64, 8, 0x7777_0000); // dangling string pointer
        assert!(matches!(
            BootInfo::parse(&mem, BOOTLOADER_MAGIC, INFO).unwrap_err(),
            MultibootError::Read {
                what: BootData::ModuleCommandLine(0),
                ..
            }
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
        let e = MultibootError::MmapEntryTooSmall {
            offset: 24,
            size: 0,
        };
        assert_eq!(
            e.to_string(),
            "memory map entry at offset 0x18 has size 0, minimum is 20"
        );
        let e = MultibootError::BadString {
            what: BootData::ModuleCommandLine(2),
            error: StringError::Unterminated { max: 256 },
        };
        assert_eq!(
            e.to_string(),
            "command line of module 2 is not NUL-terminated within 256 bytes"
        );
        let e = MultibootError::BadMagic { found: 0 };
        assert!(e.to_string().contains("0x2badb002"));
    }
}
