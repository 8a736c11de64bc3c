//! What can be wrong with the boot information, named precisely enough to report.

use core::fmt;

#[allow(unused_imports)] // named by doc links
use super::{BootInfo, PhysRead, MAX_MMAP_ENTRIES, MAX_MMAP_RECORDS, MAX_MODULES};
use super::{ReadError, BOOTLOADER_MAGIC, MMAP_ENTRY_MIN_SIZE};

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
