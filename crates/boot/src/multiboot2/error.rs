//! What can be wrong with a Multiboot 2 hand-over, named precisely enough to report.

use core::fmt;

use super::BOOTLOADER_MAGIC;
use crate::multiboot::{BootData, MultibootError, ReadError};

/// Why [`super::Multiboot2Info::parse`] refused the hand-over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Multiboot2Error {
    /// `eax` did not hold the Multiboot 2 magic.
    BadMagic {
        /// The value found.
        found: u32,
    },
    /// `ebx` was 0.
    NullInfoPointer,
    /// The structure must be 8-byte aligned.
    Misaligned {
        /// The address passed in `ebx`.
        info_phys: u32,
    },
    /// `total_size` below the fixed part plus an end tag, or above the bound.
    BadTotalSize {
        /// The value found.
        total_size: u32,
        /// The largest size accepted.
        max: u32,
    },
    /// The structure does not end below 4 GiB (module and string addresses are 32-bit).
    AboveFourGiB {
        /// Start of the structure.
        info_phys: u32,
        /// Its claimed size.
        total_size: u32,
    },
    /// A tag is shorter than its header or runs past `total_size`.
    BadTagSize {
        /// Offset of the tag from the start of the structure.
        offset: u32,
        /// Its type.
        kind: u32,
        /// Its claimed size.
        size: u32,
    },
    /// A tag that may appear once appeared again.
    DuplicateTag {
        /// Offset of the second copy.
        offset: u32,
        /// Its type.
        kind: u32,
    },
    /// The tag list ended (by `total_size`) without an end tag.
    MissingEndTag,
    /// More than [`super::MAX_TAGS`] tags.
    TooManyTags {
        /// The bound.
        max: usize,
    },
    /// A memory-map tag too short for its own header.
    MmapHeaderTruncated {
        /// The tag's size.
        size: u32,
    },
    /// A memory-map entry size below the minimum or not a multiple of 8.
    BadMmapEntrySize {
        /// The size found.
        entry_size: u32,
        /// The minimum.
        min: u32,
    },
    /// More memory-map records (or distinct merged entries) than can be stored.
    TooManyMmapEntries {
        /// The bound that was reached.
        max: usize,
    },
    /// An ACPI RSDP tag too short for the RSDP it must hold.
    RsdpTruncated {
        /// Bytes available in the tag.
        len: u32,
        /// Bytes needed.
        needed: u32,
    },
    /// The RSDP copy does not start with `RSD PTR `.
    RsdpBadSignature,
    /// The RSDP checksum (first 20 bytes) or extended checksum fails.
    RsdpBadChecksum {
        /// True for the extended (ACPI 2.0) checksum.
        extended: bool,
    },
    /// The root table address in the RSDP is 0.
    RsdpNullRoot,
    /// Reading the structure failed.
    Read {
        /// What was being read.
        what: BootData,
        /// Why it failed.
        error: ReadError,
    },
    /// A problem shared with Multiboot 1 (strings, module ranges, overflowing entries).
    V1(MultibootError),
}

impl fmt::Display for Multiboot2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadMagic { found } => {
                write!(f, "bootloader magic {found:#x} is not Multiboot 2 ({BOOTLOADER_MAGIC:#x})")
            }
            Self::NullInfoPointer => f.write_str("multiboot2 info pointer is null"),
            Self::Misaligned { info_phys } => {
                write!(f, "multiboot2 info at {info_phys:#x} is not 8-byte aligned")
            }
            Self::BadTotalSize { total_size, max } => {
                write!(f, "multiboot2 total_size {total_size} outside 16..={max}")
            }
            Self::AboveFourGiB { info_phys, total_size } => {
                write!(f, "multiboot2 info {info_phys:#x}+{total_size:#x} crosses 4 GiB")
            }
            Self::BadTagSize { offset, kind, size } => {
                write!(f, "multiboot2 tag type {kind} at offset {offset:#x} has bad size {size}")
            }
            Self::DuplicateTag { offset, kind } => {
                write!(f, "multiboot2 tag type {kind} repeated at offset {offset:#x}")
            }
            Self::MissingEndTag => f.write_str("multiboot2 tag list has no end tag"),
            Self::TooManyTags { max } => write!(f, "more than {max} multiboot2 tags"),
            Self::MmapHeaderTruncated { size } => {
                write!(f, "memory map tag of size {size} is truncated")
            }
            Self::BadMmapEntrySize { entry_size, min } => {
                write!(f, "memory map entry size {entry_size} (minimum {min}, multiple of 8)")
            }
            Self::TooManyMmapEntries { max } => write!(f, "more than {max} memory map entries"),
            Self::RsdpTruncated { len, needed } => {
                write!(f, "ACPI RSDP tag holds {len} bytes, needs {needed}")
            }
            Self::RsdpBadSignature => f.write_str("ACPI RSDP copy has no 'RSD PTR ' signature"),
            Self::RsdpBadChecksum { extended } => {
                write!(f, "ACPI RSDP {}checksum fails", if extended { "extended " } else { "" })
            }
            Self::RsdpNullRoot => f.write_str("ACPI RSDP names no root table"),
            Self::Read { what, error } => write!(f, "cannot read {what}: {error}"),
            Self::V1(e) => e.fmt(f),
        }
    }
}
