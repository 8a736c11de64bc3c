//! The parsed Multiboot 1 information's types: memory map entries, modules, the optional
//! field groups and [`BootInfo`] itself. The parser is in the parent module.

use core::fmt;

use super::*;

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
        PhysRange { start: self.start as u64, end: self.end as u64 }
    }

    /// The physical memory its command line occupies (including the NUL).
    pub const fn cmdline_range(&self) -> Option<PhysRange> {
        if self.cmdline_phys == 0 {
            None
        } else {
            let start = self.cmdline_phys as u64;
            Some(PhysRange { start, end: start + self.cmdline_len as u64 + 1 })
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
    pub(super) info_phys: u32,
    pub(super) flags: u32,
    pub(super) basic_memory: Option<BasicMemory>,
    pub(super) boot_device: Option<u32>,
    pub(super) cmdline: [u8; MAX_CMDLINE_LEN],
    pub(super) cmdline_len: Option<usize>,
    pub(super) loader_name: [u8; MAX_LOADER_NAME_LEN],
    pub(super) loader_name_len: Option<usize>,
    pub(super) mmap: [MmapEntry; MAX_MMAP_ENTRIES],
    pub(super) mmap_len: Option<usize>,
    pub(super) zero_length_entries: usize,
    pub(super) modules: [Module; MAX_MODULES],
    pub(super) module_count: usize,
    pub(super) elf_sections: Option<ElfSections>,
    pub(super) config_table: Option<u32>,
    pub(super) apm_table: Option<u32>,
    pub(super) framebuffer: Option<Framebuffer>,
    pub(super) occupied: [BootRange; OCCUPIED_CAPACITY],
    pub(super) occupied_len: usize,
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
