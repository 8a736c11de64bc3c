//! User address spaces: a PML4 whose upper half is the kernel's (shared PDPTs) and whose lower
//! half holds one process's mappings. Frames the process owns (its image, stack and anonymous
//! memory) are freed with the address space. Two software PTE bits mark frames it does not
//! own: device frames (PCI BARs), never freed, and kernel pages (rings, start info), which the
//! program may use but never unmap, remap or reprotect, and which only their kernel owner frees
//! after its last use. No user page is ever writable and executable at once.

use x86_64::structures::paging::mapper::{MapToError, TranslateResult};
use x86_64::structures::paging::{
    Mapper, OffsetPageTable, Page, PageTable, PageTableFlags as F, PhysFrame, Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

use core::sync::atomic::{AtomicU64, Ordering};

use super::frames::{self, KernelFrames};
use super::invalidation::Invalidation;
use super::{paging, phys_to_virt, PHYS_OFFSET};

/// Software-available PTE bit: the frame is device memory, not owned by the address space.
const DEVICE: F = F::BIT_9;
/// Software-available PTE bit: a kernel page shown to the program (ring, start info); the
/// kernel owns the frame and the mapping.
const KERNEL_PAGE: F = F::BIT_10;

/// Unmap / protect / map attempts refused because they touched a kernel page.
pub static KERNEL_PAGE_REFUSALS: AtomicU64 = AtomicU64::new(0);
/// Mappings or protection changes refused because the page would be writable and executable.
pub static WX_REFUSALS: AtomicU64 = AtomicU64::new(0);
/// Highest user address + 1.
pub const USER_END: u64 = 0x0000_8000_0000_0000;

/// Why a user mapping failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// Address outside the user half or not page aligned.
    BadAddress,
    /// Something is already mapped there.
    AlreadyMapped,
    /// No frame for the data or a page table.
    NoMemory,
    /// The page is a kernel page: the program may not change its mapping.
    KernelPage,
    /// The page would be writable and executable.
    WriteExecute,
}

/// Page permissions for user mappings.
#[derive(Clone, Copy, Debug)]
pub struct UserPerms {
    pub write: bool,
    pub exec: bool,
    pub uncached: bool,
}

/// Who owns the frame behind a mapping.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// The address space: freed with it (or by the shootdown that follows an unmap).
    Space,
    /// Device memory: never freed.
    Device,
    /// The kernel: never freed by the space, never changed by the program.
    Kernel,
}

/// One process's page tables.
pub struct AddressSpace {
    pml4: u64,
    /// Frames currently mapped as owned memory (leak accounting).
    owned_frames: u64,
}

impl AddressSpace {
    /// A new address space sharing the kernel half.
    pub fn new() -> Result<AddressSpace, MapError> {
        let pml4 = frames::allocate_zeroed().ok_or(MapError::NoMemory)?;
        let kernel = phys_to_virt(paging::kernel_pml4()).as_ptr::<u64>();
        let table = phys_to_virt(pml4).as_mut_ptr::<u64>();
        // SAFETY: both are page-table frames in the physical map; the copy shares the kernel's
        // PDPTs (entries 256..512), which are never freed.
        unsafe {
            for i in 256..512 {
                *table.add(i) = *kernel.add(i);
            }
        }
        Ok(AddressSpace { pml4, owned_frames: 0 })
    }

    /// Physical address of the PML4 (what CR3 gets).
    pub fn pml4(&self) -> u64 {
        self.pml4
    }

    fn tables(&self) -> OffsetPageTable<'static> {
        // SAFETY: `pml4` is this address space's table; the physical map covers all table frames.
        unsafe {
            OffsetPageTable::new(
                &mut *phys_to_virt(self.pml4).as_mut_ptr::<PageTable>(),
                VirtAddr::new(PHYS_OFFSET),
            )
        }
    }

    fn map(&mut self, va: u64, frame: u64, perms: UserPerms, owner: Owner) -> Result<(), MapError> {
        if !va.is_multiple_of(4096) || !(0x1000..USER_END).contains(&va) {
            return Err(MapError::BadAddress);
        }
        if perms.write && perms.exec {
            WX_REFUSALS.fetch_add(1, Ordering::Relaxed);
            return Err(MapError::WriteExecute);
        }
        let mut flags = F::PRESENT | F::USER_ACCESSIBLE;
        if perms.write {
            flags |= F::WRITABLE;
        }
        if !perms.exec {
            flags |= F::NO_EXECUTE;
        }
        if perms.uncached {
            flags |= F::NO_CACHE | F::WRITE_THROUGH;
        }
        match owner {
            Owner::Space => {}
            Owner::Device => flags |= DEVICE,
            Owner::Kernel => flags |= KERNEL_PAGE,
        }
        let parent = F::PRESENT | F::WRITABLE | F::USER_ACCESSIBLE;
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
        let frame = PhysFrame::<Size4KiB>::containing_address(PhysAddr::new(frame));
        // SAFETY: user-half mapping in a table no CPU uses for kernel code; the frame is either
        // freshly allocated for this space or device memory the caller was granted.
        match unsafe {
            self.tables().map_to_with_table_flags(page, frame, flags, parent, &mut KernelFrames)
        } {
            Ok(flush) => {
                flush.ignore(); // new mappings: no stale TLB entry can exist for them
                Ok(())
            }
            Err(MapToError::PageAlreadyMapped(_)) | Err(MapToError::ParentEntryHugePage) => {
                Err(MapError::AlreadyMapped)
            }
            Err(MapToError::FrameAllocationFailed) => Err(MapError::NoMemory),
        }
    }

    /// Maps a fresh zeroed frame at `va` and returns its physical address.
    pub fn map_new(&mut self, va: u64, perms: UserPerms) -> Result<u64, MapError> {
        let frame = frames::allocate_zeroed().ok_or(MapError::NoMemory)?;
        match self.map(va, frame, perms, Owner::Space) {
            Ok(()) => {
                self.owned_frames += 1;
                Ok(frame)
            }
            Err(e) => {
                frames::free(frame);
                Err(e)
            }
        }
    }

    /// Shows a kernel page (ring, start info) to the program. The program cannot unmap,
    /// remap or reprotect it; this space never frees it (its kernel owner does, after the
    /// space is destroyed and its own last use).
    pub fn map_kernel_page(
        &mut self,
        va: u64,
        frame: u64,
        perms: UserPerms,
    ) -> Result<(), MapError> {
        self.map(va, frame, perms, Owner::Kernel)
    }

    /// Maps device memory (never freed by this space).
    pub fn map_device(&mut self, va: u64, phys: u64, perms: UserPerms) -> Result<(), MapError> {
        self.map(va, phys, perms, Owner::Device)
    }

    fn leaf_flags(&self, va: u64) -> Option<F> {
        let va = VirtAddr::try_new(va & !0xfff).ok()?;
        match self.tables().translate(va) {
            TranslateResult::Mapped { flags, .. } => Some(flags),
            _ => None,
        }
    }

    /// Refuses a program's change to `pages` pages at `va` if one of them is a kernel page
    /// (counted in [`KERNEL_PAGE_REFUSALS`]).
    pub fn check_not_kernel(&self, va: u64, pages: u64) -> Result<(), MapError> {
        let touches = (0..pages).any(|i| {
            self.leaf_flags(va.wrapping_add(i * 4096)).is_some_and(|f| f.contains(KERNEL_PAGE))
        });
        if touches {
            KERNEL_PAGE_REFUSALS.fetch_add(1, Ordering::Relaxed);
            return Err(MapError::KernelPage);
        }
        Ok(())
    }

    /// Refuses making `pages` pages at `va` writable if one of them is executable (counted
    /// in [`WX_REFUSALS`]).
    pub fn check_not_code(&self, va: u64, pages: u64) -> Result<(), MapError> {
        let code = (0..pages).any(|i| {
            self.leaf_flags(va.wrapping_add(i * 4096)).is_some_and(|f| !f.contains(F::NO_EXECUTE))
        });
        if code {
            WX_REFUSALS.fetch_add(1, Ordering::Relaxed);
            return Err(MapError::WriteExecute);
        }
        Ok(())
    }

    /// Physical address `va` maps to, if any.
    pub fn translate(&self, va: u64) -> Option<u64> {
        self.tables().translate_addr(VirtAddr::new(va)).map(|p| p.as_u64())
    }

    /// The frame behind `va` when it is memory this space owns (not device memory, not a
    /// kernel page) and user accessible, with whether it is writable: what a driver may
    /// offer its device for DMA.
    pub fn owned_page(&self, va: u64) -> Option<(u64, bool)> {
        if !va.is_multiple_of(4096) || va >= USER_END {
            return None;
        }
        match self.tables().translate(VirtAddr::new(va)) {
            TranslateResult::Mapped { frame, flags, .. }
                if flags.contains(F::USER_ACCESSIBLE)
                    && !flags.intersects(DEVICE | KERNEL_PAGE) =>
            {
                Some((frame.start_address().as_u64(), flags.contains(F::WRITABLE)))
            }
            _ => None,
        }
    }

    /// Whether any page of `[va, va + len)` is mapped.
    pub fn any_mapped(&self, va: u64, len: u64) -> bool {
        let tables = self.tables();
        let mut page = va & !0xfff;
        while page < va.saturating_add(len) {
            if tables.translate_addr(VirtAddr::new(page)).is_some() {
                return true;
            }
            page += 4096;
        }
        false
    }

    /// Removes the mapping at `va` and records it in `stale`: the page must be shot down
    /// and an owned frame is freed only by that shootdown ([`Invalidation::complete`]).
    /// Kernel pages are refused.
    pub fn unmap(&mut self, va: u64, stale: &mut Invalidation) -> Result<(), MapError> {
        if !va.is_multiple_of(4096) || va >= USER_END {
            return Err(MapError::BadAddress);
        }
        debug_assert_eq!(stale.pml4(), self.pml4);
        let mut tables = self.tables();
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
        let flags = match tables.translate(page.start_address()) {
            TranslateResult::Mapped { flags, .. } => flags,
            _ => return Err(MapError::BadAddress),
        };
        if flags.contains(KERNEL_PAGE) {
            KERNEL_PAGE_REFUSALS.fetch_add(1, Ordering::Relaxed);
            return Err(MapError::KernelPage);
        }
        let (frame, flush) = tables.unmap(page).map_err(|_| MapError::BadAddress)?;
        flush.ignore(); // the shootdown in `stale.complete` covers every CPU, this one included
        let owned = !flags.contains(DEVICE);
        if owned {
            self.owned_frames -= 1;
        }
        stale.page_unmapped(va, owned.then(|| frame.start_address().as_u64()));
        Ok(())
    }

    /// Makes the page at `va` writable or read-only and records it in `stale` for the
    /// shootdown. Kernel pages are refused, and so is making an executable page writable.
    pub fn protect(
        &mut self,
        va: u64,
        writable: bool,
        stale: &mut Invalidation,
    ) -> Result<(), MapError> {
        let mut tables = self.tables();
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
        let flags = match tables.translate(page.start_address()) {
            TranslateResult::Mapped { flags, .. } if flags.contains(F::USER_ACCESSIBLE) => flags,
            _ => return Err(MapError::BadAddress),
        };
        if flags.contains(KERNEL_PAGE) {
            KERNEL_PAGE_REFUSALS.fetch_add(1, Ordering::Relaxed);
            return Err(MapError::KernelPage);
        }
        if writable && !flags.contains(F::NO_EXECUTE) {
            WX_REFUSALS.fetch_add(1, Ordering::Relaxed);
            return Err(MapError::WriteExecute);
        }
        let flags = if writable { flags | F::WRITABLE } else { flags - F::WRITABLE };
        // SAFETY: only the permission bits of an existing user mapping change.
        unsafe { tables.update_flags(page, flags) }.map_err(|_| MapError::BadAddress)?.ignore();
        stale.page_changed(va);
        Ok(())
    }

    /// Frames owned by this space (data pages, not page tables).
    pub fn owned_frames(&self) -> u64 {
        self.owned_frames
    }

    /// Frees every owned frame and every lower-half page table. The caller guarantees no CPU
    /// has this PML4 loaded (threads are gone and their CPUs switched to the kernel tables).
    pub fn destroy(self) {
        let root = phys_to_virt(self.pml4).as_mut_ptr::<PageTable>();
        // SAFETY: exclusive ownership per the contract above; all tables are in the physical map.
        unsafe { free_level(&mut *root, 4, 0, 256) };
        frames::free(self.pml4);
    }
}

/// Recursively frees the lower half (PML4 entries `first..last`).
///
/// # Safety
/// `table` must be an exclusively owned page table of the given level.
unsafe fn free_level(table: &mut PageTable, level: u8, first: usize, last: usize) {
    for i in first..last {
        let entry = &mut table[i];
        if !entry.flags().contains(F::PRESENT) {
            continue;
        }
        let phys = entry.addr().as_u64();
        if level == 1 || entry.flags().contains(F::HUGE_PAGE) {
            // Device and kernel pages belong to someone else.
            if !entry.flags().intersects(DEVICE | KERNEL_PAGE) {
                frames::free(phys);
            }
        } else {
            // SAFETY: a present non-leaf entry points at a child table we own.
            unsafe {
                free_level(&mut *phys_to_virt(phys).as_mut_ptr::<PageTable>(), level - 1, 0, 512)
            };
            frames::free(phys);
        }
        entry.set_unused();
    }
}
