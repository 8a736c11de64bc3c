//! One view of the boot hand-over, whichever Multiboot version the loader spoke.
//!
//! QEMU's `-kernel` speaks Multiboot 1; GRUB (BIOS or UEFI) boots the same image through its
//! Multiboot 2 header. The entry code passes `eax`/`ebx` through unchanged and
//! [`Handover::parse`] tells the two apart by the magic.

use core::fmt;

use crate::multiboot::{BootInfo, BootRange, MmapEntry, Module, MultibootError, PhysRead};
use crate::multiboot2::{Firmware, MapSource, Multiboot2Error, Multiboot2Info, Rsdp};

/// The parsed hand-over. One of them exists once, on the boot stack, before any heap:
/// the size difference between the variants does not matter.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Handover {
    /// Multiboot 1 (QEMU `-kernel`, GRUB `multiboot`).
    V1(BootInfo),
    /// Multiboot 2 (GRUB `multiboot2`).
    V2(Multiboot2Info),
}

/// Why the hand-over was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoverError {
    /// `eax` held neither Multiboot magic.
    UnknownMagic {
        /// The value found.
        found: u32,
    },
    /// A Multiboot 1 structure was malformed.
    V1(MultibootError),
    /// A Multiboot 2 structure was malformed.
    V2(Multiboot2Error),
}

impl fmt::Display for HandoverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownMagic { found } => write!(
                f,
                "boot magic {found:#x} is neither Multiboot 1 ({:#x}) nor Multiboot 2 ({:#x})",
                crate::multiboot::BOOTLOADER_MAGIC,
                crate::multiboot2::BOOTLOADER_MAGIC
            ),
            Self::V1(e) => write!(f, "multiboot1: {e}"),
            Self::V2(e) => write!(f, "multiboot2: {e}"),
        }
    }
}

/// Where the kernel should look for the ACPI root pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcpiRoot {
    /// The loader handed over a validated RSDP copy: use it, scan nothing.
    FromLoader(Rsdp),
    /// A BIOS machine whose loader gave no RSDP: the legacy EBDA/BIOS-area scan is allowed.
    ScanBiosAreas,
    /// UEFI firmware without an RSDP tag: there are no BIOS areas to scan.
    Unavailable,
}

impl Handover {
    /// Parses the hand-over the loader described by `magic` (`eax`) and `info_phys` (`ebx`).
    pub fn parse<M: PhysRead + ?Sized>(
        mem: &M,
        magic: u32,
        info_phys: u32,
    ) -> Result<Self, HandoverError> {
        match magic {
            crate::multiboot::BOOTLOADER_MAGIC => {
                BootInfo::parse(mem, magic, info_phys).map(Self::V1).map_err(HandoverError::V1)
            }
            crate::multiboot2::BOOTLOADER_MAGIC => Multiboot2Info::parse(mem, magic, info_phys)
                .map(Self::V2)
                .map_err(HandoverError::V2),
            found => Err(HandoverError::UnknownMagic { found }),
        }
    }

    /// `1` or `2`, for the boot log and evidence.
    pub fn protocol_version(&self) -> u8 {
        match self {
            Self::V1(_) => 1,
            Self::V2(_) => 2,
        }
    }

    /// BIOS or UEFI (Multiboot 1 loaders are BIOS-only).
    pub fn firmware(&self) -> Firmware {
        match self {
            Self::V1(_) => Firmware::Bios,
            Self::V2(i) => i.firmware(),
        }
    }

    /// The memory map and where it came from, if the loader gave one.
    pub fn memory_map(&self) -> Option<(&[MmapEntry], MapSource)> {
        match self {
            Self::V1(i) => i.memory_map().map(|m| (m, MapSource::Multiboot)),
            Self::V2(i) => i.memory_map(),
        }
    }

    /// The kernel command line, if given.
    pub fn command_line(&self) -> Option<&str> {
        match self {
            Self::V1(i) => i.command_line(),
            Self::V2(i) => i.command_line(),
        }
    }

    /// The boot loader's name, if given.
    pub fn boot_loader_name(&self) -> Option<&str> {
        match self {
            Self::V1(i) => i.boot_loader_name(),
            Self::V2(i) => i.boot_loader_name(),
        }
    }

    /// Boot modules in loader order.
    pub fn modules(&self) -> &[Module] {
        match self {
            Self::V1(i) => i.modules(),
            Self::V2(i) => i.modules(),
        }
    }

    /// Ranges to keep out of the frame allocator while the hand-over is read.
    pub fn occupied(&self) -> &[BootRange] {
        match self {
            Self::V1(i) => i.occupied(),
            Self::V2(i) => i.occupied(),
        }
    }

    /// Where to find ACPI: the loader's RSDP when given, a BIOS scan only on BIOS machines.
    pub fn acpi_root(&self) -> AcpiRoot {
        match self {
            Self::V2(i) => match (i.rsdp(), i.firmware()) {
                (Some(r), _) => AcpiRoot::FromLoader(r),
                (None, Firmware::Uefi) => AcpiRoot::Unavailable,
                (None, Firmware::Bios) => AcpiRoot::ScanBiosAreas,
            },
            Self::V1(_) => AcpiRoot::ScanBiosAreas,
        }
    }
}
