//! Memory: the physical map, the frame allocator, kernel page tables and the kernel heap.
//!
//! Address space layout (kernel half):
//! * `PHYS_OFFSET` (`0xffff_8000_0000_0000`) + p: physical address p. RAM is mapped with
//!   2 MiB pages (write-back, NX); MMIO is mapped on demand with 4 KiB uncached pages.
//! * `KERNEL_VMA` (`0xffff_ffff_8000_0000`) + p: the kernel image, 4 KiB pages with per-
//!   section permissions (text RX, rodata R, data/bss RW; all but text NX).
//! The lower half is left to user address spaces.

pub mod address_space;
pub mod frames;
pub mod heap;
pub mod paging;

use alloc::string::String;
use alloc::vec::Vec;
use keel_boot::memory::{MemoryMap, PhysRange};
use keel_boot::multiboot::{BootInfo, PhysRead, ReadError};
use x86_64::VirtAddr;

/// Base of the physical map.
pub const PHYS_OFFSET: u64 = 0xffff_8000_0000_0000;
/// Base of the kernel image mapping (the image itself starts 1 MiB above).
pub const KERNEL_VMA: u64 = 0xffff_ffff_8000_0000;

/// The kernel virtual address of physical address `phys` in the physical map.
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
}

/// One Multiboot module.
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
            core::ptr::copy_nonoverlapping(phys_to_virt(phys).as_ptr::<u8>(), buf.as_mut_ptr(), buf.len());
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
    let (start, end) = (core::ptr::addr_of!(__kernel_start_phys) as u64, core::ptr::addr_of!(__bss_end_phys) as u64);
    PhysRange { start, end }
}

/// Brings up memory management on the boot CPU.
pub fn init(magic: u32, info_phys: u32) -> BootContext {
    let reader = PhysMapReader;
    let info = match BootInfo::parse(&reader, magic, info_phys) {
        Ok(info) => info,
        Err(e) => {
            log::error!("multiboot: unusable boot information ({e:?}); cannot find memory");
            crate::exit::exit(crate::exit::ExitCode::Panic);
        }
    };

    let Some(entries) = info.memory_map() else {
        log::error!("multiboot: the loader gave no memory map");
        crate::exit::exit(crate::exit::ExitCode::Panic);
    };
    let mut map = match MemoryMap::from_entries(entries.iter().copied()) {
        Ok(m) => m,
        Err(e) => {
            log::error!("multiboot: bad memory map ({e:?})");
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
    if let Err(e) = map.reserve_boot_info(&info) {
        log::error!("memory: cannot reserve boot information: {e:?}");
    }

    for r in map.usable() {
        log::info!("memory: usable {:#010x}..{:#010x} ({} KiB)", r.start, r.end, (r.end - r.start) / 1024);
    }
    let usable_kib = map.usable_bytes() / 1024;
    ev!("boot.mem.usable_kib", usable_kib);

    frames::init(&map);
    paging::init(entries);
    heap::init(map.usable_bytes());

    let cmdline = String::from(info.command_line().unwrap_or(""));
    let modules = info
        .modules()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut buf = [0u8; 256];
            let name = m.read_cmdline(&reader, i, &mut buf).map(String::from).unwrap_or_default();
            Module { start: m.start as u64, end: m.end as u64, name }
        })
        .collect();
    BootContext { cmdline: String::leak(cmdline), modules, usable_kib }
}
