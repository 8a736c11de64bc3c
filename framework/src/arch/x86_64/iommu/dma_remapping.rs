//! The DMA half of the one interface both IOMMUs implement: the rest of the kernel maps,
//! unmaps and revokes a driver's DMA through `iommu::dma_*` without knowing whether a VT-d
//! unit or the AMD unit translates. Each vendor keeps its own tables and ordering rules;
//! both promise the same contract: one domain per PCI function held by one process, IOVAs
//! only for the caller's own frames, an unmap or a revocation that returns only after the
//! unit completed its invalidations (so the pages may be unpinned and freed then), and
//! pinning answered from the live mappings.

use super::domain::DmaError;
use super::vtd_dma::Translation;
use super::vtd_unit::Unit;

/// A driver's request to map its own pages for one PCI function's DMA.
pub struct MapRequest<'a> {
    pub bdf: u16,
    /// The process holding (or about to hold) the function's domain.
    pub owner: u64,
    /// Where the caller sees the pages (what the pinning check compares).
    pub vaddr: u64,
    /// The pages' frames, one per page.
    pub frames: &'a [u64],
    pub device_writes: bool,
}

/// A unit (or set of units) that translates drivers' DMA through per-function domains.
pub trait DmaRemapping {
    /// Maps the request's frames for its function's DMA, creating the owner's domain on
    /// first use; returns their IOVA.
    fn map(&mut self, request: &MapRequest<'_>) -> Result<u64, DmaError>;
    /// Removes the mapping `[iova, iova + pages)`; returns after the invalidation completed.
    fn unmap(&mut self, bdf: u16, owner: u64, iova: u64, pages: u64) -> Result<(), DmaError>;
    /// Revokes `owner`'s domain for `bdf` (false: it had none); returns after the
    /// invalidations completed, the tables freed and the pins dropped.
    fn detach(&mut self, bdf: u16, owner: u64) -> Result<bool, DmaError>;
    /// Whether any of `owner`'s pages in `[vaddr, vaddr + pages)` is mapped for DMA.
    fn pinned(&self, owner: u64, vaddr: u64, pages: u64) -> bool;
}

/// VT-d: the units and their translation state, borrowed from the remapper.
pub struct VtdDma<'a> {
    pub units: &'a mut [Unit],
    pub translation: &'a mut Translation,
}

impl DmaRemapping for VtdDma<'_> {
    fn map(&mut self, request: &MapRequest<'_>) -> Result<u64, DmaError> {
        let t = &mut *self.translation;
        let root = t.root_phys;
        t.domains.map(self.units, &mut t.tables, root, request)
    }

    fn unmap(&mut self, bdf: u16, owner: u64, iova: u64, pages: u64) -> Result<(), DmaError> {
        let t = &mut *self.translation;
        t.domains.unmap(self.units, &mut t.tables, bdf, owner, iova, pages)
    }

    fn detach(&mut self, bdf: u16, owner: u64) -> Result<bool, DmaError> {
        let t = &mut *self.translation;
        let root = t.root_phys;
        t.domains.detach(self.units, &mut t.tables, root, bdf, owner)
    }

    fn pinned(&self, owner: u64, vaddr: u64, pages: u64) -> bool {
        self.translation.domains.pinned(owner, vaddr, pages)
    }
}
