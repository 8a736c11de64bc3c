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

mod error;
mod phys;
mod types;

pub use error::{BootData, MultibootError, StringError};
pub use phys::{PhysRead, ReadError, SliceMemory};
pub use types::*;

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
    ENDS.iter().find(|(bit, _)| flags & bit != 0).map_or(4, |&(_, len)| len)
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
    mem.read(phys, buf).map_err(|error| MultibootError::Read { what, error })
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
    Err(MultibootError::BadString { what, error: StringError::Unterminated { max } })
}

fn utf8(bytes: &[u8], what: BootData) -> Result<&str, MultibootError> {
    core::str::from_utf8(bytes).map_err(|e| MultibootError::BadString {
        what,
        error: StringError::InvalidUtf8 { valid_up_to: e.valid_up_to() },
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
            mmap: [MmapEntry { base: 0, length: 0, kind: MemoryType::Reserved }; MAX_MMAP_ENTRIES],
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
            info.basic_memory =
                Some(BasicMemory { lower_kib: le32(&raw, 4), upper_kib: le32(&raw, 8) });
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
            info.occupy(BootData::Drives, le32(&raw, 56) as u64, le32(&raw, 52) as u64);
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
        let range = PhysRange { start, end: start.saturating_add(len) };
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
            return Err(MultibootError::TooManyModules { count, max: MAX_MODULES });
        }
        self.occupy(BootData::ModuleList, addr as u64, count as u64 * MODULE_ENTRY_SIZE);
        for index in 0..count as usize {
            let mut e = [0u8; MODULE_ENTRY_SIZE as usize];
            let phys = addr as u64 + index as u64 * MODULE_ENTRY_SIZE;
            read(mem, phys, &mut e, BootData::ModuleList)?;
            let (start, end, string) = (le32(&e, 0), le32(&e, 4), le32(&e, 8));
            if end < start {
                return Err(MultibootError::ModuleBadRange { index, start, end });
            }
            let mut m = Module { start, end, cmdline_phys: string, cmdline_len: 0 };
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
                return Err(MultibootError::MmapEntryTruncated { offset, size: 0, remaining });
            }
            let phys = addr as u64 + offset as u64;
            let mut sz = [0u8; 4];
            read(mem, phys, &mut sz, BootData::MemoryMap)?;
            let size = u32::from_le_bytes(sz);
            if size < MMAP_ENTRY_MIN_SIZE {
                return Err(MultibootError::MmapEntryTooSmall { offset, size });
            }
            if size > remaining - 4 {
                return Err(MultibootError::MmapEntryTruncated { offset, size, remaining });
            }
            records += 1;
            if records > MAX_MMAP_RECORDS {
                return Err(MultibootError::TooManyMmapEntries { max: MAX_MMAP_RECORDS });
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
                    return Err(MultibootError::TooManyMmapEntries { max: MAX_MMAP_ENTRIES });
                }
                self.mmap[stored] =
                    MmapEntry { base, length: len, kind: MemoryType::from_raw(kind) };
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
        self.command_line_bytes().and_then(|b| core::str::from_utf8(b).ok())
    }

    /// The boot loader's name (e.g. `qemu`), if provided.
    pub fn boot_loader_name(&self) -> Option<&str> {
        self.loader_name_len.and_then(|n| core::str::from_utf8(&self.loader_name[..n]).ok())
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
mod tests;
