//! Multiboot 2 boot information, parsed and validated.
//!
//! GRUB's `multiboot2` command (BIOS and UEFI) leaves a list of 8-byte aligned
//! tags in physical memory and passes its address in `ebx` with the magic
//! `0x36D76289` in `eax`. Like Multiboot 1, every byte is untrusted:
//! [`Multiboot2Info::parse`] reads through [`PhysRead`], checks every size and
//! offset, copies what the kernel needs into fixed-capacity storage, and
//! reports a [`Multiboot2Error`] otherwise.
//!
//! Unlike Multiboot 1 the loader may run on UEFI firmware, where there is no
//! BIOS data area, no EBDA and no legacy RSDP in `0xE0000..0xFFFFF`: the ACPI
//! root pointer arrives as a copy in a tag ([`Rsdp`]) and the memory map may
//! come from the EFI memory map (tag 17) only.

use crate::memory::PhysRange;
use crate::multiboot::{
    BootData, BootRange, MemoryType, MmapEntry, Module, MultibootError, PhysRead, StringError,
    MAX_CMDLINE_LEN, MAX_LOADER_NAME_LEN, MAX_MMAP_ENTRIES, MAX_MODULES, MAX_MODULE_CMDLINE_LEN,
};

mod error;
mod rsdp;

pub use error::Multiboot2Error;
pub use rsdp::{Rsdp, RsdpSource};

/// Value of `eax` when a Multiboot 2 loader jumps to the kernel.
pub const BOOTLOADER_MAGIC: u32 = 0x36D7_6289;
/// Largest information structure accepted: GRUB's is a few KiB even with a
/// long EFI memory map; the bound keeps a hostile `total_size` from making the
/// parser walk gigabytes.
pub const MAX_INFO_LEN: u32 = 256 * 1024;
/// Tags walked at most (including ignored ones).
pub const MAX_TAGS: usize = 512;
/// Memory-map records walked at most (tag 6 or 17), before merging.
pub const MAX_MMAP_RECORDS: usize = 2048;

/// Tag type numbers from the Multiboot 2 specification.
mod tag {
    pub const END: u32 = 0;
    pub const CMDLINE: u32 = 1;
    pub const LOADER_NAME: u32 = 2;
    pub const MODULE: u32 = 3;
    pub const MMAP: u32 = 6;
    pub const EFI32_SYSTEM_TABLE: u32 = 11;
    pub const EFI64_SYSTEM_TABLE: u32 = 12;
    pub const ACPI_OLD: u32 = 14;
    pub const ACPI_NEW: u32 = 15;
    pub const EFI_MMAP: u32 = 17;
    pub const EFI_BOOT_SERVICES_ACTIVE: u32 = 18;
    pub const EFI32_IMAGE_HANDLE: u32 = 19;
    pub const EFI64_IMAGE_HANDLE: u32 = 20;
}

/// Tag header: type and size (of the header plus payload, without padding).
const TAG_HEADER_LEN: u32 = 8;
/// A Multiboot 2 memory-map entry: base, length, type, reserved.
const MMAP_ENTRY_MIN_SIZE: u32 = 24;
/// An EFI memory descriptor up to and including `NumberOfPages`.
const EFI_DESCRIPTOR_MIN_SIZE: u32 = 32;
/// Capacity of the occupied list: the structure itself plus the modules.
const OCCUPIED_CAPACITY: usize = 1 + MAX_MODULES;

/// Which firmware ran before the loader, as far as the tags tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// No EFI tag: a PC BIOS (legacy areas such as the EBDA may exist).
    Bios,
    /// An EFI system table, image handle or EFI memory map was handed over:
    /// there is no BIOS data area and low memory is only what the map says.
    Uefi,
}

/// Where the memory map came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapSource {
    /// Tag 6, the E820-style map.
    Multiboot,
    /// Tag 17, EFI memory descriptors converted to Multiboot types.
    Efi,
}

/// The validated Multiboot 2 hand-over, copied into fixed-capacity storage.
#[derive(Clone, Debug)]
pub struct Multiboot2Info {
    info_phys: u32,
    total_size: u32,
    tags_seen: u32,
    cmdline: [u8; MAX_CMDLINE_LEN],
    cmdline_len: Option<usize>,
    loader_name: [u8; MAX_LOADER_NAME_LEN],
    loader_name_len: Option<usize>,
    mmap: [MmapEntry; MAX_MMAP_ENTRIES],
    mmap_len: Option<usize>,
    efi_mmap: [MmapEntry; MAX_MMAP_ENTRIES],
    efi_mmap_len: Option<usize>,
    modules: [Module; MAX_MODULES],
    module_count: usize,
    rsdp_old: Option<Rsdp>,
    rsdp_new: Option<Rsdp>,
    efi_boot_services_active: bool,
    occupied: [BootRange; OCCUPIED_CAPACITY],
    occupied_len: usize,
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

/// One tag as found in the walk: type, physical address of its header and its
/// size (header included, padding excluded).
#[derive(Debug, Clone, Copy)]
struct Tag {
    kind: u32,
    phys: u64,
    size: u32,
}

impl Tag {
    fn payload(&self) -> u64 {
        self.phys + TAG_HEADER_LEN as u64
    }
    fn payload_len(&self) -> u32 {
        self.size - TAG_HEADER_LEN
    }
}

fn read<M: PhysRead + ?Sized>(
    mem: &M,
    phys: u64,
    buf: &mut [u8],
    what: BootData,
) -> Result<(), Multiboot2Error> {
    mem.read(phys, buf).map_err(|error| Multiboot2Error::Read { what, error })
}

/// Copies a string that must end with a NUL inside `len` bytes at `phys` into
/// `buf`, returning its length. Strings in Multiboot 2 live inside their tag,
/// so the tag size bounds them.
fn tag_string<M: PhysRead + ?Sized>(
    mem: &M,
    phys: u64,
    len: u32,
    buf: &mut [u8],
    what: BootData,
) -> Result<usize, Multiboot2Error> {
    let max = buf.len();
    let mut b = [0u8; 1];
    for i in 0..len as usize {
        read(mem, phys + i as u64, &mut b, what)?;
        if b[0] == 0 {
            return core::str::from_utf8(&buf[..i]).map(|_| i).map_err(|e| {
                Multiboot2Error::V1(MultibootError::BadString {
                    what,
                    error: StringError::InvalidUtf8 { valid_up_to: e.valid_up_to() },
                })
            });
        }
        if i == max {
            break;
        }
        buf[i] = b[0];
    }
    Err(Multiboot2Error::V1(MultibootError::BadString {
        what,
        error: StringError::Unterminated { max: max.min(len as usize) },
    }))
}

/// Loader and boot-services memory (EFI types 1 to 4): free once boot services
/// have exited (GRUB exits them for a kernel that did not ask to keep them),
/// which is known only after the whole tag list was read.
const EFI_BOOT_SERVICES_MEMORY: MemoryType = MemoryType::Other(0xEF1_0001);

/// Converts an EFI memory type to the Multiboot type the frame allocator uses.
fn efi_memory_type(efi: u32) -> MemoryType {
    match efi {
        7 => MemoryType::Available, // EfiConventionalMemory
        1..=4 => EFI_BOOT_SERVICES_MEMORY,
        9 => MemoryType::AcpiReclaimable,
        10 => MemoryType::AcpiNvs,
        8 => MemoryType::BadMemory,
        _ => MemoryType::Reserved, // runtime services, MMIO, PAL code, persistent, unknown
    }
}

/// Appends `e` to `list[..*len]`, merging it into the previous entry when they
/// touch and have the same type (EFI maps list hundreds of small pieces).
fn push_merged(
    list: &mut [MmapEntry; MAX_MMAP_ENTRIES],
    len: &mut usize,
    e: MmapEntry,
) -> Result<(), Multiboot2Error> {
    if let Some(last) = len.checked_sub(1).map(|i| &mut list[i]) {
        if last.kind == e.kind && last.base + last.length == e.base {
            last.length += e.length; // both ends were checked against overflow
            return Ok(());
        }
    }
    if *len == MAX_MMAP_ENTRIES {
        return Err(Multiboot2Error::TooManyMmapEntries { max: MAX_MMAP_ENTRIES });
    }
    list[*len] = e;
    *len += 1;
    Ok(())
}

impl Multiboot2Info {
    /// Validates `magic` and parses the tag list at `info_phys`.
    pub fn parse<M: PhysRead + ?Sized>(
        mem: &M,
        magic: u32,
        info_phys: u32,
    ) -> Result<Self, Multiboot2Error> {
        if magic != BOOTLOADER_MAGIC {
            return Err(Multiboot2Error::BadMagic { found: magic });
        }
        if info_phys == 0 {
            return Err(Multiboot2Error::NullInfoPointer);
        }
        if !info_phys.is_multiple_of(8) {
            return Err(Multiboot2Error::Misaligned { info_phys });
        }
        let mut fixed = [0u8; 8];
        read(mem, info_phys as u64, &mut fixed, BootData::InfoStructure)?;
        let total_size = le32(&fixed, 0);
        if !(16..=MAX_INFO_LEN).contains(&total_size) {
            return Err(Multiboot2Error::BadTotalSize { total_size, max: MAX_INFO_LEN });
        }
        if (info_phys as u64) + total_size as u64 > 1 << 32 {
            return Err(Multiboot2Error::AboveFourGiB { info_phys, total_size });
        }
        let mut info = Self::empty(info_phys, total_size);
        info.occupy(BootData::InfoStructure, info_phys as u64, total_size as u64);

        let end = info_phys as u64 + total_size as u64;
        let mut phys = info_phys as u64 + 8;
        for _ in 0..MAX_TAGS {
            let offset = (phys - info_phys as u64) as u32;
            if end.saturating_sub(phys) < TAG_HEADER_LEN as u64 {
                return Err(Multiboot2Error::MissingEndTag);
            }
            let mut header = [0u8; 8];
            read(mem, phys, &mut header, BootData::InfoStructure)?;
            let t = Tag { kind: le32(&header, 0), size: le32(&header, 4), phys };
            if t.size < TAG_HEADER_LEN || t.size as u64 > end - phys {
                return Err(Multiboot2Error::BadTagSize { offset, kind: t.kind, size: t.size });
            }
            if t.kind == tag::END {
                if t.size != TAG_HEADER_LEN {
                    return Err(Multiboot2Error::BadTagSize { offset, kind: t.kind, size: t.size });
                }
                return info.finish();
            }
            if t.kind < 32 {
                info.tags_seen |= 1 << t.kind;
            }
            info.parse_tag(mem, t, offset)?;
            // Next tag at the next 8-byte boundary; `size <= end - phys` and
            // `end < 2^32 + 8` so this neither overflows nor passes `end` by more than 7.
            phys = (phys + t.size as u64 + 7) & !7;
        }
        Err(Multiboot2Error::TooManyTags { max: MAX_TAGS })
    }

    fn empty(info_phys: u32, total_size: u32) -> Self {
        let blank = MmapEntry { base: 0, length: 0, kind: MemoryType::Reserved };
        Self {
            info_phys,
            total_size,
            tags_seen: 0,
            cmdline: [0; MAX_CMDLINE_LEN],
            cmdline_len: None,
            loader_name: [0; MAX_LOADER_NAME_LEN],
            loader_name_len: None,
            mmap: [blank; MAX_MMAP_ENTRIES],
            mmap_len: None,
            efi_mmap: [blank; MAX_MMAP_ENTRIES],
            efi_mmap_len: None,
            modules: [Module::default(); MAX_MODULES],
            module_count: 0,
            rsdp_old: None,
            rsdp_new: None,
            efi_boot_services_active: false,
            occupied: [BootRange {
                kind: BootData::InfoStructure,
                range: PhysRange { start: 0, end: 0 },
            }; OCCUPIED_CAPACITY],
            occupied_len: 0,
        }
    }

    fn parse_tag<M: PhysRead + ?Sized>(
        &mut self,
        mem: &M,
        t: Tag,
        offset: u32,
    ) -> Result<(), Multiboot2Error> {
        let once = |seen: bool| {
            if seen {
                Err(Multiboot2Error::DuplicateTag { offset, kind: t.kind })
            } else {
                Ok(())
            }
        };
        match t.kind {
            tag::CMDLINE => {
                once(self.cmdline_len.is_some())?;
                let n = tag_string(
                    mem,
                    t.payload(),
                    t.payload_len(),
                    &mut self.cmdline,
                    BootData::CommandLine,
                )?;
                self.cmdline_len = Some(n);
            }
            tag::LOADER_NAME => {
                once(self.loader_name_len.is_some())?;
                let n = tag_string(
                    mem,
                    t.payload(),
                    t.payload_len(),
                    &mut self.loader_name,
                    BootData::BootLoaderName,
                )?;
                self.loader_name_len = Some(n);
            }
            tag::MODULE => self.parse_module(mem, t)?,
            tag::MMAP => {
                once(self.mmap_len.is_some())?;
                self.parse_mmap(mem, t)?;
            }
            tag::EFI_MMAP => {
                once(self.efi_mmap_len.is_some())?;
                self.parse_efi_mmap(mem, t)?;
            }
            tag::ACPI_OLD => {
                once(self.rsdp_old.is_some())?;
                self.rsdp_old =
                    Some(Rsdp::parse(mem, t.payload(), t.payload_len(), RsdpSource::OldTag)?);
            }
            tag::ACPI_NEW => {
                once(self.rsdp_new.is_some())?;
                self.rsdp_new =
                    Some(Rsdp::parse(mem, t.payload(), t.payload_len(), RsdpSource::NewTag)?);
            }
            tag::EFI_BOOT_SERVICES_ACTIVE => self.efi_boot_services_active = true,
            // Framebuffer, console, ELF sections, SMBIOS, APM, network, load base and
            // others: Keel uses the serial port only and needs none of them.
            _ => {}
        }
        Ok(())
    }

    fn parse_module<M: PhysRead + ?Sized>(
        &mut self,
        mem: &M,
        t: Tag,
    ) -> Result<(), Multiboot2Error> {
        let index = self.module_count;
        if index == MAX_MODULES {
            return Err(Multiboot2Error::V1(MultibootError::TooManyModules {
                count: index as u32 + 1,
                max: MAX_MODULES,
            }));
        }
        if t.payload_len() < 9 {
            return Err(Multiboot2Error::BadTagSize {
                offset: (t.phys - self.info_phys as u64) as u32,
                kind: t.kind,
                size: t.size,
            });
        }
        let mut b = [0u8; 8];
        read(mem, t.payload(), &mut b, BootData::ModuleList)?;
        let (start, end) = (le32(&b, 0), le32(&b, 4));
        if end < start {
            return Err(Multiboot2Error::V1(MultibootError::ModuleBadRange { index, start, end }));
        }
        let what = BootData::ModuleCommandLine(index);
        let mut buf = [0u8; MAX_MODULE_CMDLINE_LEN];
        let n = tag_string(mem, t.payload() + 8, t.payload_len() - 8, &mut buf, what)?;
        // The whole structure lies below 4 GiB (checked in `parse`), so this fits.
        let cmdline_phys = (t.payload() + 8) as u32;
        self.modules[index] = Module { start, end, cmdline_phys, cmdline_len: n as u32 };
        self.module_count += 1;
        self.occupy(BootData::Module(index), start as u64, (end - start) as u64);
        Ok(())
    }

    fn parse_mmap<M: PhysRead + ?Sized>(&mut self, mem: &M, t: Tag) -> Result<(), Multiboot2Error> {
        let mut head = [0u8; 8];
        if t.payload_len() < 8 {
            return Err(Multiboot2Error::MmapHeaderTruncated { size: t.size });
        }
        read(mem, t.payload(), &mut head, BootData::MemoryMap)?;
        let entry_size = le32(&head, 0);
        if entry_size < MMAP_ENTRY_MIN_SIZE || !entry_size.is_multiple_of(8) {
            return Err(Multiboot2Error::BadMmapEntrySize { entry_size, min: MMAP_ENTRY_MIN_SIZE });
        }
        let count = (t.payload_len() - 8) / entry_size;
        let mut len = 0usize;
        for i in 0..count.min(MAX_MMAP_RECORDS as u32 + 1) {
            if i as usize == MAX_MMAP_RECORDS {
                return Err(Multiboot2Error::TooManyMmapEntries { max: MAX_MMAP_RECORDS });
            }
            let mut e = [0u8; 20];
            read(mem, t.payload() + 8 + i as u64 * entry_size as u64, &mut e, BootData::MemoryMap)?;
            let (base, length, kind) = (le64(&e, 0), le64(&e, 8), le32(&e, 16));
            let entry = checked_entry(i as usize, base, length, MemoryType::from_raw(kind))?;
            if let Some(entry) = entry {
                // No merging: E820 types are reported as they are.
                if len == MAX_MMAP_ENTRIES {
                    return Err(Multiboot2Error::TooManyMmapEntries { max: MAX_MMAP_ENTRIES });
                }
                self.mmap[len] = entry;
                len += 1;
            }
        }
        self.mmap_len = Some(len);
        Ok(())
    }

    fn parse_efi_mmap<M: PhysRead + ?Sized>(
        &mut self,
        mem: &M,
        t: Tag,
    ) -> Result<(), Multiboot2Error> {
        if t.payload_len() < 8 {
            return Err(Multiboot2Error::MmapHeaderTruncated { size: t.size });
        }
        let mut head = [0u8; 8];
        read(mem, t.payload(), &mut head, BootData::MemoryMap)?;
        let desc_size = le32(&head, 0);
        if desc_size < EFI_DESCRIPTOR_MIN_SIZE || !desc_size.is_multiple_of(8) {
            return Err(Multiboot2Error::BadMmapEntrySize {
                entry_size: desc_size,
                min: EFI_DESCRIPTOR_MIN_SIZE,
            });
        }
        let count = (t.payload_len() - 8) / desc_size;
        let mut len = 0usize;
        for i in 0..count.min(MAX_MMAP_RECORDS as u32 + 1) {
            if i as usize == MAX_MMAP_RECORDS {
                return Err(Multiboot2Error::TooManyMmapEntries { max: MAX_MMAP_RECORDS });
            }
            let mut d = [0u8; EFI_DESCRIPTOR_MIN_SIZE as usize];
            read(mem, t.payload() + 8 + i as u64 * desc_size as u64, &mut d, BootData::MemoryMap)?;
            let (efi_type, base, pages) = (le32(&d, 0), le64(&d, 8), le64(&d, 24));
            let length = pages.checked_mul(4096).ok_or(Multiboot2Error::V1(
                MultibootError::MmapEntryOverflow { index: i as usize, base, length: pages },
            ))?;
            if let Some(e) = checked_entry(i as usize, base, length, efi_memory_type(efi_type))? {
                push_merged(&mut self.efi_mmap, &mut len, e)?;
            }
        }
        self.efi_mmap_len = Some(len);
        Ok(())
    }

    fn finish(mut self) -> Result<Self, Multiboot2Error> {
        if let Some(n) = self.efi_mmap_len {
            let raw = self.efi_mmap;
            let freed = if self.efi_boot_services_active {
                MemoryType::Reserved
            } else {
                MemoryType::Available
            };
            let mut len = 0;
            for e in &raw[..n] {
                let kind = if e.kind == EFI_BOOT_SERVICES_MEMORY { freed } else { e.kind };
                push_merged(&mut self.efi_mmap, &mut len, MmapEntry { kind, ..*e })?;
            }
            self.efi_mmap_len = Some(len);
        }
        Ok(self)
    }

    fn occupy(&mut self, kind: BootData, start: u64, len: u64) {
        let range = PhysRange { start, end: start.saturating_add(len) };
        if !range.is_empty() && self.occupied_len < OCCUPIED_CAPACITY {
            self.occupied[self.occupied_len] = BootRange { kind, range };
            self.occupied_len += 1;
        }
    }

    /// Physical address of the structure as passed in `ebx`.
    pub fn info_phys(&self) -> u32 {
        self.info_phys
    }

    /// `total_size` of the structure.
    pub fn total_size(&self) -> u32 {
        self.total_size
    }

    /// Bit `n` set when a tag of type `n < 32` was present, for the boot log.
    pub fn tags_seen(&self) -> u32 {
        self.tags_seen
    }

    /// The firmware the loader ran on.
    pub fn firmware(&self) -> Firmware {
        let efi = [
            tag::EFI32_SYSTEM_TABLE,
            tag::EFI64_SYSTEM_TABLE,
            tag::EFI_MMAP,
            tag::EFI32_IMAGE_HANDLE,
            tag::EFI64_IMAGE_HANDLE,
            tag::EFI_BOOT_SERVICES_ACTIVE,
        ];
        if efi.iter().any(|&k| self.tags_seen & (1 << k) != 0) {
            Firmware::Uefi
        } else {
            Firmware::Bios
        }
    }

    /// True if the loader left EFI boot services running (tag 18): their memory
    /// is then not free.
    pub fn efi_boot_services_active(&self) -> bool {
        self.efi_boot_services_active
    }

    /// The kernel command line, if provided.
    pub fn command_line(&self) -> Option<&str> {
        self.cmdline_len.and_then(|n| core::str::from_utf8(&self.cmdline[..n]).ok())
    }

    /// The boot loader's name, if provided.
    pub fn boot_loader_name(&self) -> Option<&str> {
        self.loader_name_len.and_then(|n| core::str::from_utf8(&self.loader_name[..n]).ok())
    }

    /// The memory map: tag 6 if present, else the converted EFI map, else `None`.
    pub fn memory_map(&self) -> Option<(&[MmapEntry], MapSource)> {
        match (self.mmap_len, self.efi_mmap_len) {
            (Some(n), _) => Some((&self.mmap[..n], MapSource::Multiboot)),
            (None, Some(n)) => Some((&self.efi_mmap[..n], MapSource::Efi)),
            (None, None) => None,
        }
    }

    /// The EFI memory map converted to Multiboot types (merged), if tag 17 was present.
    pub fn efi_memory_map(&self) -> Option<&[MmapEntry]> {
        self.efi_mmap_len.map(|n| &self.efi_mmap[..n])
    }

    /// Boot modules in tag order; each command line lies inside the structure.
    pub fn modules(&self) -> &[Module] {
        &self.modules[..self.module_count]
    }

    /// The ACPI root pointer to use: the ACPI 2.0+ copy (tag 15) when present,
    /// else the ACPI 1.0 copy (tag 14).
    pub fn rsdp(&self) -> Option<Rsdp> {
        self.rsdp_new.or(self.rsdp_old)
    }

    /// Every range the kernel must not reuse while it still reads the hand-over.
    pub fn occupied(&self) -> &[BootRange] {
        &self.occupied[..self.occupied_len]
    }
}

/// Builds an entry, rejecting overflow and dropping empty ones.
fn checked_entry(
    index: usize,
    base: u64,
    length: u64,
    kind: MemoryType,
) -> Result<Option<MmapEntry>, Multiboot2Error> {
    if length == 0 {
        return Ok(None);
    }
    if base.checked_add(length).is_none() {
        return Err(Multiboot2Error::V1(MultibootError::MmapEntryOverflow { index, base, length }));
    }
    Ok(Some(MmapEntry { base, length, kind }))
}

#[cfg(test)]
mod tests;
