//! The domain bookkeeping both IOMMUs' DMA remapping shares: which process holds which
//! function's domain, its IOVA window, the mappings that pin the caller's pages, and the
//! order in which a revoked domain's leaves, pins and tables go. What differs per vendor
//! (the entry that names the table, the invalidations and their waits) stays with the
//! vendor; it calls [`DomainList::revoke`] only once its invalidations completed.

use alloc::vec::Vec;

use keel_iommu::amdvi_dma::IoPageTable;
use keel_iommu::iova::IovaSpace;
use keel_iommu::pagetable::{DmaRights, PageTable, TableError, TableMemory};

use super::dma_remapping::MapRequest;
use super::domain::DmaError;
use crate::mm::{frames, phys_to_virt};

/// The IOVA window: 1,024 pages from 16 MiB (inside edu's 28-bit DMA mask): an NVMe driver's
/// 64 queue pairs (2 ring pages and 4 buffers each, one `DmaMap` per queue) take 392 pages,
/// 8 queues of 32 reads in flight 312. A first-fit allocation scans at most these 1,024 bits.
const IOVA_BASE: u64 = 0x100_0000;
const IOVA_WORDS: usize = 16;

/// Tables in kernel frames, reached through the physical map; a unit whose table walks do
/// not snoop (`coherent: false`) gets every written line flushed.
pub struct KernelTables {
    pub coherent: bool,
}

impl TableMemory for KernelTables {
    fn allocate_table(&mut self) -> Option<u64> {
        let frame = frames::allocate_zeroed()?;
        if !self.coherent {
            super::flush_range(frame, 4096);
        }
        Some(frame)
    }

    fn free_table(&mut self, table: u64) {
        frames::free(table);
    }

    fn read(&self, table: u64, index: usize) -> u64 {
        // SAFETY: `table` is a page-table frame the domain owns; index < 512.
        unsafe { phys_to_virt(table).as_ptr::<u64>().add(index).read_volatile() }
    }

    fn write(&mut self, table: u64, index: usize, value: u64) {
        // SAFETY: as in `read`.
        unsafe { phys_to_virt(table).as_mut_ptr::<u64>().add(index).write_volatile(value) };
        if !self.coherent {
            super::flush_range(table + index as u64 * 8, 8);
        }
    }
}

/// A domain's I/O page table (VT-d second-level or AMD-Vi): both offer the same operations.
pub trait IoTable {
    fn root(&self) -> u64;
    fn map_page(
        &self,
        mem: &mut KernelTables,
        iova: u64,
        frame: u64,
        rights: DmaRights,
    ) -> Result<(), TableError>;
    fn unmap_page(&self, mem: &mut KernelTables, iova: u64) -> Result<u64, TableError>;
}

macro_rules! io_table {
    ($table:ty) => {
        impl IoTable for $table {
            fn root(&self) -> u64 {
                self.root
            }
            fn map_page(
                &self,
                mem: &mut KernelTables,
                iova: u64,
                frame: u64,
                rights: DmaRights,
            ) -> Result<(), TableError> {
                self.map(mem, iova, frame, rights)
            }
            fn unmap_page(&self, mem: &mut KernelTables, iova: u64) -> Result<u64, TableError> {
                self.unmap(mem, iova)
            }
        }
    };
}
io_table!(PageTable);
io_table!(IoPageTable);

struct Mapping {
    iova: u64,
    vaddr: u64,
    pages: u64,
}

/// One function's domain, held by one process.
pub struct Domain<T> {
    pub bdf: u16,
    pub owner: u64,
    pub id: u16,
    table: T,
    iova: IovaSpace<IOVA_WORDS>,
    mappings: Vec<Mapping>,
}

/// Every domain of one remapper.
pub struct DomainList<T> {
    domains: Vec<Domain<T>>,
}

impl<T: IoTable> Default for DomainList<T> {
    fn default() -> DomainList<T> {
        DomainList::new()
    }
}

impl<T: IoTable> DomainList<T> {
    pub const fn new() -> DomainList<T> {
        DomainList { domains: Vec::new() }
    }

    pub fn live(&self) -> usize {
        self.domains.len()
    }

    pub fn get(&self, i: usize) -> &Domain<T> {
        &self.domains[i]
    }

    pub fn iter(&self) -> impl Iterator<Item = &Domain<T>> {
        self.domains.iter()
    }

    /// The domain `owner` holds for `bdf`, if any.
    pub fn find(&self, bdf: u16, owner: u64) -> Option<usize> {
        self.domains.iter().position(|d| d.bdf == bdf && d.owner == owner)
    }

    /// `Some` when `bdf` already has a domain: `owner`'s, or `Busy` when another holds it.
    pub fn existing(&self, bdf: u16, owner: u64) -> Option<Result<usize, DmaError>> {
        let i = self.domains.iter().position(|d| d.bdf == bdf)?;
        Some(if self.domains[i].owner == owner { Ok(i) } else { Err(DmaError::Busy) })
    }

    /// Records a new domain (its entry already names `table`); returns its index.
    pub fn push(&mut self, bdf: u16, owner: u64, id: u16, table: T) -> usize {
        let iova = IovaSpace::new(IOVA_BASE).expect("aligned window");
        self.domains.push(Domain { bdf, owner, id, table, iova, mappings: Vec::new() });
        self.domains.len() - 1
    }

    /// Maps the request's frames into domain `i` at a fresh IOVA; on a failure the leaves
    /// already written are cleared and the IOVAs given back.
    pub fn map_frames(
        &mut self,
        mem: &mut KernelTables,
        i: usize,
        request: &MapRequest<'_>,
    ) -> Result<u64, DmaError> {
        let MapRequest { vaddr, frames, device_writes, .. } = *request;
        let pages = frames.len() as u64;
        let d = &mut self.domains[i];
        let iova = d.iova.allocate(pages).ok_or(DmaError::NoIova)?;
        let rights = DmaRights { read: true, write: device_writes };
        for (n, frame) in frames.iter().enumerate() {
            if d.table.map_page(mem, iova + n as u64 * 4096, *frame, rights).is_err() {
                for undo in 0..n as u64 {
                    let _ = d.table.unmap_page(mem, iova + undo * 4096);
                }
                d.iova.free(iova, pages);
                return Err(DmaError::NoMemory);
            }
        }
        // The DMA-death proofs read these frames back after their owner died.
        #[cfg(feature = "scenarios")]
        frames.iter().for_each(|f| super::death_watch::dma_mapped_frame(*f));
        d.mappings.push(Mapping { iova, vaddr, pages });
        Ok(iova)
    }

    /// Clears the leaves of the mapping `[iova, iova + pages)` of domain `i`; returns the
    /// mapping's index for [`DomainList::release`] once the vendor's invalidation completed.
    pub fn clear_mapping(
        &mut self,
        mem: &mut KernelTables,
        i: usize,
        iova: u64,
        pages: u64,
    ) -> Result<usize, DmaError> {
        let d = &mut self.domains[i];
        let at = d
            .mappings
            .iter()
            .position(|m| m.iova == iova && m.pages == pages)
            .ok_or(DmaError::NotMapped)?;
        for n in 0..pages {
            d.table.unmap_page(mem, iova + n * 4096).map_err(|_| DmaError::NotMapped)?;
        }
        Ok(at)
    }

    /// Gives back mapping `at` of domain `i` (IOVAs and pin): only after the invalidation.
    pub fn release(&mut self, i: usize, at: usize) {
        let d = &mut self.domains[i];
        let m = d.mappings.swap_remove(at);
        d.iova.free(m.iova, m.pages);
    }

    /// Drops domain `i` once its entry is gone and the unit's invalidations completed: the
    /// leaves are cleared (the pins drop) and the table freed.
    pub fn revoke(&mut self, mem: &mut KernelTables, i: usize) {
        let d = self.domains.swap_remove(i);
        for m in &d.mappings {
            for n in 0..m.pages {
                let _frame = d.table.unmap_page(mem, m.iova + n * 4096);
                // The DMA-death proofs check that each is still the owner's here.
                #[cfg(feature = "scenarios")]
                if let Ok(frame) = _frame {
                    super::death_watch::revoked_frame(frame);
                }
            }
        }
        mem.free_table(d.table.root());
    }

    /// Whether any page of `[vaddr, vaddr + pages)` is DMA-mapped for `owner`.
    pub fn pinned(&self, owner: u64, vaddr: u64, pages: u64) -> bool {
        let end = vaddr.saturating_add(pages.saturating_mul(4096));
        self.domains.iter().filter(|d| d.owner == owner).flat_map(|d| &d.mappings).any(|m| {
            let m_end = m.vaddr + m.pages * 4096;
            m.vaddr < end && vaddr < m_end
        })
    }
}
