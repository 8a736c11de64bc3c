//! Kernel page tables: built once on the boot CPU to replace the boot tables, then shared by
//! every CPU (the kernel half of every future address space points at the same PDPTs).

use core::sync::atomic::{AtomicU64, Ordering};
use keel_boot::multiboot::{MemoryType, MmapEntry};
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::mapper::MapToError;
use x86_64::structures::paging::{
    Mapper, OffsetPageTable, Page, PageTable, PageTableFlags as F, PhysFrame, Size2MiB, Size4KiB,
};
use x86_64::{PhysAddr, VirtAddr};

use super::frames::{self, KernelFrames};
use super::{phys_to_virt, KERNEL_VMA, PHYS_OFFSET};
use crate::arch::x86_64::percpu;
use crate::sync::IrqSafeMutex;

/// The boot tables map this much of physical memory at `PHYS_OFFSET`.
pub const BOOT_MAPPED_LIMIT: u64 = 4 << 30;

const TWO_MIB: u64 = 2 << 20;

static KERNEL_TABLES: IrqSafeMutex<Option<OffsetPageTable<'static>>> = IrqSafeMutex::new(None);
static KERNEL_PML4: AtomicU64 = AtomicU64::new(0);
/// Highest physical address known to be readable through the physical map.
static MAPPED_LIMIT: AtomicU64 = AtomicU64::new(BOOT_MAPPED_LIMIT);

/// Upper bound of physical addresses `PhysMapReader` may touch.
pub fn mapped_limit() -> u64 {
    MAPPED_LIMIT.load(Ordering::Relaxed)
}

/// Physical address of the kernel PML4 (what every CPU loads into CR3).
pub fn kernel_pml4() -> u64 {
    KERNEL_PML4.load(Ordering::Relaxed)
}

/// Loads the address space `pml4` on this CPU and records it in `PerCpu::loaded_space`, with
/// interrupts off so a shootdown handler never sees the record disagree with CR3 (it tests
/// the record instead of reading CR3, which traps under some hypervisors).
///
/// # Safety
/// `pml4` must map the kernel half exactly as the kernel tables do (every user space does),
/// so the code running now keeps running after the load.
pub unsafe fn load_space(pml4: u64) {
    // The load and its record happen together on one CPU, with interrupts off.
    let cpu = percpu::IrqGuard::new();
    // SAFETY: the caller guarantees the kernel half is mapped as in the kernel tables.
    unsafe { Cr3::write(PhysFrame::containing_address(PhysAddr::new(pml4)), Cr3Flags::empty()) };
    percpu::local(&cpu).loaded_space.set(pml4);
}

/// Back to the kernel tables on this CPU (see [`load_space`]).
pub fn load_kernel_space() {
    // SAFETY: the kernel tables map everything kernel code touches.
    unsafe { load_space(kernel_pml4()) }
}

extern "C" {
    static __kernel_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __bss_end: u8;
}

fn sym(s: &u8) -> u64 {
    s as *const u8 as u64
}

/// Builds and loads the kernel tables.
pub fn init(memory_map: &[MmapEntry]) {
    let pml4_phys = frames::allocate_zeroed().expect("no frame for the kernel PML4");
    assert!(pml4_phys < BOOT_MAPPED_LIMIT);
    // SAFETY: a fresh zeroed frame in the physical map, used only as this page table.
    let pml4: &'static mut PageTable =
        unsafe { &mut *phys_to_virt(pml4_phys).as_mut_ptr::<PageTable>() };
    // SAFETY: the physical map at PHYS_OFFSET covers every table frame (all below 4 GiB).
    let mut tables = unsafe { OffsetPageTable::new(pml4, VirtAddr::new(PHYS_OFFSET)) };

    // Physical map of RAM-like ranges (usable, ACPI, NVS) and the first MiB, 2 MiB pages.
    let ram = F::PRESENT | F::WRITABLE | F::NO_EXECUTE | F::GLOBAL;
    let mut top = 0u64;
    let map_range = |tables: &mut OffsetPageTable<'static>, start: u64, end: u64| {
        let mut p = start / TWO_MIB * TWO_MIB;
        while p < end {
            map_2mib(tables, p, ram);
            p += TWO_MIB;
        }
    };
    map_range(&mut tables, 0, 1 << 20);
    for e in memory_map {
        let ram_like = matches!(
            e.kind,
            MemoryType::Available | MemoryType::AcpiReclaimable | MemoryType::AcpiNvs
        );
        if ram_like && e.length > 0 {
            let end = e.base.saturating_add(e.length);
            map_range(&mut tables, e.base, end);
            top = top.max(end);
        }
    }

    // The kernel image with per-section permissions.
    // SAFETY: linker-script symbols; only their addresses are used.
    let (start, text_end, rodata_end, end) =
        unsafe { (sym(&__kernel_start), sym(&__text_end), sym(&__rodata_end), sym(&__bss_end)) };
    map_image(&mut tables, start, text_end, F::PRESENT | F::GLOBAL);
    map_image(&mut tables, text_end, rodata_end, F::PRESENT | F::GLOBAL | F::NO_EXECUTE);
    map_image(&mut tables, rodata_end, end, F::PRESENT | F::GLOBAL | F::NO_EXECUTE | F::WRITABLE);

    // SAFETY: the new tables map the running code, the stack (.bss), the physical map and
    // everything reachable from them exactly as the boot tables did, minus the identity map.
    unsafe {
        Cr3::write(PhysFrame::containing_address(PhysAddr::new(pml4_phys)), Cr3Flags::empty())
    };
    KERNEL_PML4.store(pml4_phys, Ordering::Relaxed);
    MAPPED_LIMIT.store(top.max(1 << 20), Ordering::Relaxed);
    *KERNEL_TABLES.lock() = Some(tables);
    log::info!("paging: kernel tables at {pml4_phys:#x}, RAM mapped up to {top:#x}");
}

fn map_2mib(tables: &mut OffsetPageTable<'static>, phys: u64, flags: F) {
    let page = Page::<Size2MiB>::containing_address(VirtAddr::new(PHYS_OFFSET + phys));
    let frame = PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(phys));
    // SAFETY: a physical-map alias of RAM; nothing in the kernel assumes it is unmapped.
    match unsafe { tables.map_to(page, frame, flags, &mut KernelFrames) } {
        Ok(flush) => flush.ignore(),
        Err(MapToError::PageAlreadyMapped(_)) => {}
        Err(e) => panic!("paging: cannot map physical {phys:#x}: {e:?}"),
    }
}

fn map_image(tables: &mut OffsetPageTable<'static>, start: u64, end: u64, flags: F) {
    let mut va = start;
    while va < end {
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
        let frame = PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(va - KERNEL_VMA));
        // SAFETY: maps the kernel image onto itself with the section's permissions.
        unsafe { tables.map_to(page, frame, flags, &mut KernelFrames) }
            .expect("kernel image page mapped twice")
            .ignore();
        va += 4096;
    }
}

/// How a device or firmware range is cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caching {
    /// Normal memory (ACPI tables in reserved ranges).
    WriteBack,
    /// Device registers (LAPIC, IOAPIC, HPET, PCI BARs).
    Uncached,
}

/// Maps `[phys, phys + len)` into the physical map (4 KiB pages, NX) if it is not mapped yet
/// and returns its virtual address. RAM already covered by 2 MiB pages is left as is.
pub fn map_physical(phys: u64, len: u64, caching: Caching) -> VirtAddr {
    let mut flags = F::PRESENT | F::WRITABLE | F::NO_EXECUTE | F::GLOBAL;
    if caching == Caching::Uncached {
        flags |= F::NO_CACHE | F::WRITE_THROUGH;
    }
    {
        let mut guard = KERNEL_TABLES.lock();
        let tables = guard.as_mut().expect("paging not initialised");
        let mut p = phys & !0xfff;
        let end = phys.saturating_add(len.max(1));
        while p < end {
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(PHYS_OFFSET + p));
            let frame = PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(p));
            // SAFETY: an alias of a physical range in the physical map, which exists to alias
            // physical memory; the caller chose the caching the range needs.
            match unsafe { tables.map_to(page, frame, flags, &mut KernelFrames) } {
                Ok(flush) => flush.flush(),
                Err(MapToError::PageAlreadyMapped(_)) | Err(MapToError::ParentEntryHugePage) => {}
                Err(e) => panic!("paging: cannot map {p:#x}: {e:?}"),
            }
            p += 4096;
        }
    }
    phys_to_virt(phys)
}
