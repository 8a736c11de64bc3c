//! Memory: the physical map, the frame allocator, kernel page tables and the kernel heap.
//!
//! Address space layout (kernel half):
//! * `PHYS_OFFSET` (`0xffff_8000_0000_0000`) + p: physical address p. RAM is mapped with
//!   2 MiB pages (write-back, NX); MMIO is mapped on demand with 4 KiB uncached pages.
//! * `KERNEL_VMA` (`0xffff_ffff_8000_0000`) + p: the kernel image, 4 KiB pages with per-
//!   section permissions (text RX, rodata R, data/bss RW; all but text NX).
//!
//! The lower half is left to user address spaces.

pub mod address_space;
pub mod fault;
pub mod frames;
pub mod heap;
pub mod invalidation;
pub mod paging;
pub mod user;

use alloc::string::String;
use alloc::vec::Vec;
use keel_boot::handover::{AcpiRoot, Handover};
use keel_boot::memory::{MemoryMap, PhysRange};
use keel_boot::multiboot::{
    MemoryType, MmapEntry, PhysRead, ReadError, MAX_MMAP_ENTRIES, MAX_MODULES,
};
use keel_boot::multiboot2::Firmware;
use spin::Once;
use x86_64::VirtAddr;

/// Base of the physical map.
pub const PHYS_OFFSET: u64 = 0xffff_8000_0000_0000;
/// Base of the kernel image mapping (the image itself starts 1 MiB above).
pub const KERNEL_VMA: u64 = 0xffff_ffff_8000_0000;

/// The kernel virtual address of physical address `phys` in the physical map.
#[inline]
pub fn phys_to_virt(phys: u64) -> VirtAddr {
    VirtAddr::new(PHYS_OFFSET + phys)
}

/// What boot left us, copied into the heap so the Multiboot structures can be forgotten.
pub struct BootContext {
    /// Kernel command line (`-append`).
    pub cmdline: &'static str,
    /// Boot modules (`-initrd a,b`): physical range and their own command line.
    pub modules: Vec<Module>,
    /// Usable RAM after reservations, in KiB.
    pub usable_kib: u64,
    /// Where ACPI is to be found (the loader's RSDP, a BIOS scan, or nowhere).
    pub acpi_root: AcpiRoot,
    /// BIOS or UEFI, as the hand-over tells.
    pub firmware: Firmware,
}

/// The firmware memory map as the loader gave it, kept for decisions made after the
/// frame allocator took over (which low pages the AP trampoline may use).
static FIRMWARE_MAP: Once<FirmwareMap> = Once::new();

struct FirmwareMap {
    entries: [MmapEntry; MAX_MMAP_ENTRIES],
    len: usize,
    modules: [PhysRange; MAX_MODULES],
    module_count: usize,
}

/// The firmware memory map entries (after [`init`]).
pub fn firmware_memory_map() -> &'static [MmapEntry] {
    let map = FIRMWARE_MAP.get().expect("mm::init has not run");
    &map.entries[..map.len]
}

/// Where the loader put the boot modules, which stay in use for the kernel's lifetime.
pub fn boot_module_ranges() -> &'static [PhysRange] {
    let map = FIRMWARE_MAP.get().expect("mm::init has not run");
    &map.modules[..map.module_count]
}

/// One boot module.
pub struct Module {
    pub start: u64,
    pub end: u64,
    pub name: String,
}

/// Reads physical memory through the physical map (the boot tables map 0..4 GiB of it).
pub struct PhysMapReader;

impl PhysRead for PhysMapReader {
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let len = buf.len();
        match phys.checked_add(len as u64) {
            Some(end) if end <= paging::mapped_limit() => {}
            _ => return Err(ReadError::OutOfBounds { phys, len }),
        }
        // SAFETY: [phys, end) lies inside the physical map (checked above), which is
        // always mapped readable; the bytes are copied, never referenced.
        unsafe {
            core::ptr::copy_nonoverlapping(
                phys_to_virt(phys).as_ptr::<u8>(),
                buf.as_mut_ptr(),
                buf.len(),
            );
        }
        Ok(())
    }
}

extern "C" {
    static __kernel_start_phys: u8;
    static __bss_end_phys: u8;
}

/// Physical extent of the kernel image including .bss.
pub fn kernel_image_phys() -> PhysRange {
    // Linker-script symbols; only their addresses are used.
    let (start, end) = (
        core::ptr::addr_of!(__kernel_start_phys) as u64,
        core::ptr::addr_of!(__bss_end_phys) as u64,
    );
    PhysRange { start, end }
}

/// Brings up memory management on the boot CPU from the Multiboot 1 or 2 hand-over
/// (`magic` and `info_phys` are the loader's `eax` and `ebx`).
pub fn init(magic: u32, info_phys: u32) -> BootContext {
    let reader = PhysMapReader;
    let info = parse_handover(&reader, magic, info_phys);

    let Some((entries, source)) = info.memory_map() else {
        log::error!("boot: the loader gave no memory map");
        crate::exit::exit(crate::exit::ExitCode::Panic);
    };
    log::info!("boot: memory map from {source:?} ({} entries)", entries.len());
    keep_firmware_map(&info, entries);
    let map = usable_memory(&info, entries);
    let usable_kib = map.usable_bytes() / 1024;
    ev!("boot.mem.usable_kib", usable_kib);

    frames::init(&map);
    paging::init(entries);
    heap::init(map.usable_bytes());

    boot_context(&info, &reader, usable_kib)
}

/// The loader's hand-over, logged and recorded as evidence; without one there is no memory
/// to find, so boot ends here.
fn parse_handover(reader: &PhysMapReader, magic: u32, info_phys: u32) -> Handover {
    let info = match Handover::parse(reader, magic, info_phys) {
        Ok(info) => info,
        Err(e) => {
            log::error!("boot: unusable boot information ({e}); cannot find memory");
            crate::exit::exit(crate::exit::ExitCode::Panic);
        }
    };
    log::info!(
        "boot: multiboot{} from {:?}, firmware {:?}",
        info.protocol_version(),
        info.boot_loader_name().unwrap_or("an unnamed loader"),
        info.firmware()
    );
    if let Handover::V2(v2) = &info {
        // Bit n = tag type n was present (framebuffer and console tags are ignored: serial only).
        log::info!(
            "boot: multiboot2 tags {:#x}, EFI memory map {}",
            v2.tags_seen(),
            if v2.efi_memory_map().is_some() { "present" } else { "absent" }
        );
    }
    ev!("boot.protocol", info.protocol_version());
    ev!(
        "boot.firmware",
        match info.firmware() {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
        }
    );

    info
}

/// Copies the firmware's memory map and the module ranges into `FIRMWARE_MAP`, for decisions
/// made after the frame allocator took over (AP trampoline pages, module ranges kept in use).
fn keep_firmware_map(info: &Handover, entries: &[MmapEntry]) {
    FIRMWARE_MAP.call_once(|| {
        let blank = MmapEntry { base: 0, length: 0, kind: MemoryType::Reserved };
        let mods = info.modules();
        let mut map = FirmwareMap {
            entries: [blank; MAX_MMAP_ENTRIES],
            len: entries.len(),
            modules: [PhysRange::default(); MAX_MODULES],
            module_count: mods.len(),
        };
        map.entries[..entries.len()].copy_from_slice(entries);
        for (slot, m) in map.modules.iter_mut().zip(mods) {
            *slot = m.range();
        }
        map
    });
}

/// The usable RAM: the firmware map less the kernel image, low memory and whatever the boot
/// information itself occupies (a failed reservation is logged, not fatal).
fn usable_memory(info: &Handover, entries: &[MmapEntry]) -> MemoryMap {
    let mut map = match MemoryMap::from_entries(entries.iter().copied()) {
        Ok(m) => m,
        Err(e) => {
            log::error!("boot: bad memory map ({e:?})");
            crate::exit::exit(crate::exit::ExitCode::Panic);
        }
    };
    let reserve = |map: &mut MemoryMap, r: PhysRange, what: &str| {
        if let Err(e) = map.reserve(r) {
            log::error!("memory: cannot reserve {what} {:#x}..{:#x}: {e:?}", r.start, r.end);
        }
    };
    reserve(&mut map, kernel_image_phys(), "kernel image");
    if let Err(e) = map.reserve_low_memory() {
        log::error!("memory: cannot reserve low memory: {e:?}");
    }
    if let Err(e) = map.reserve_boot_ranges(info.occupied()) {
        log::error!("memory: cannot reserve boot information: {e:?}");
    }

    for r in map.usable() {
        log::info!(
            "memory: usable {:#010x}..{:#010x} ({} KiB)",
            r.start,
            r.end,
            (r.end - r.start) / 1024
        );
    }
    map
}

/// What boot left us, copied into the heap (which must be up) so the hand-over can be
/// forgotten.
fn boot_context(info: &Handover, reader: &PhysMapReader, usable_kib: u64) -> BootContext {
    let cmdline = String::from(info.command_line().unwrap_or(""));
    let modules = info
        .modules()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut buf = [0u8; 256];
            let name = m.read_cmdline(reader, i, &mut buf).map(String::from).unwrap_or_default();
            Module { start: m.start as u64, end: m.end as u64, name }
        })
        .collect();
    let (acpi_root, firmware) = (info.acpi_root(), info.firmware());
    BootContext { cmdline: String::leak(cmdline), modules, usable_kib, acpi_root, firmware }
}
