//! AMD-Vi DMA translation, default deny, behind the same DMA model as VT-d
//! (`iommu::dma_map`/`dma_unmap`/`dma_detach` dispatch here when the AMD unit remaps).
//!
//! At bring-up every device table entry is a deny entry (`keel_iommu::amdvi_dma::deny_dte`:
//! V, TV, a paging mode over one empty kernel-owned table, IR = IW = 0), so a requester with
//! no driver's domain has every DMA refused at its entry. A driver's first `DmaMap` gives its
//! function a domain: an I/O page table (3 levels, within the unit's HATS) and an entry with
//! IR = IW = 1 naming it. Ordering rules, as for VT-d:
//! * a mapping needs no invalidation (the unit caches no not-present entry);
//! * an unmap clears the leaves, then INVALIDATE_IOMMU_PAGES for the range and a
//!   COMPLETION_WAIT the kernel polls, before it returns: only then are the pages unpinned;
//! * a revocation writes the deny entry back, then INVALIDATE_DEVTAB_ENTRY,
//!   INVALIDATE_IOMMU_PAGES for the whole domain and the wait, and only then frees the tables
//!   and drops the pins.
//!
//! The unit's IO_PAGE_FAULT events would be the fault records; QEMU 10.0 writes none to the
//! event log (see docs/security.md), so faults are not reported to drivers here.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::sync::IrqSafeMutex;
use keel_iommu::amdvi::{self, DTE_BYTES};
use keel_iommu::amdvi_dma::{self, DteTranslation, IoPageTable};
use keel_iommu::pagetable::TableMemory;

use super::remap::{self, AmdRemapError};
use super::unit::{read_quad, write_quads};
use crate::arch::x86_64::iommu::{DmaError, DmaRemapping, DomainList, KernelTables, MapRequest};

/// The domains' tables in kernel frames; AMD-Vi table walks snoop, so nothing is flushed.
fn tables() -> KernelTables {
    KernelTables { coherent: true }
}

/// The DMA state of the AMD unit: the deny entry's empty table, the domains, the counters.
pub struct AmdDma {
    devtab_phys: u64,
    devtab_entries: usize,
    /// The empty top-level table every deny entry names.
    empty_root: u64,
    levels: u32,
    domains: DomainList<IoPageTable>,
    next_id: u16,
    maps: u64,
    unmaps: u64,
    detaches: u64,
    /// INVALIDATE_IOMMU_PAGES commands whose completion wait the unit stored.
    page_invalidations: u64,
    /// INVALIDATE_DEVTAB_ENTRY commands for domain changes, completed.
    devtab_invalidations: u64,
}

static DMA: IrqSafeMutex<Option<AmdDma>> = IrqSafeMutex::new(None);
/// Deny entries written at bring-up.
static DENY_WRITTEN: AtomicU64 = AtomicU64::new(0);

/// Quadwords 0 and 1 of every entry at bring-up, over the empty table `empty_root`.
pub(super) fn deny_quads(empty_root: u64) -> Option<[u64; 2]> {
    amdvi_dma::deny_dte(empty_root)
}

/// Counts the deny entries the bring-up wrote.
pub(super) fn count_deny_written(n: u64) {
    DENY_WRITTEN.store(n, Ordering::Relaxed);
}

/// Called once the unit runs with every entry denying DMA: from now on drivers' DMA goes
/// through domains.
pub(super) fn install(devtab_phys: u64, devtab_entries: usize, empty_root: u64, efr: u64) {
    let Some(levels) = amdvi_dma::domain_levels(efr) else {
        log::warn!("amdvi: the unit walks fewer than {} levels: no DMA domains", amdvi_dma::LEVELS);
        return;
    };
    *DMA.lock() = Some(AmdDma {
        devtab_phys,
        devtab_entries,
        empty_root,
        levels,
        domains: DomainList::new(),
        next_id: 1,
        maps: 0,
        unmaps: 0,
        detaches: 0,
        page_invalidations: 0,
        devtab_invalidations: 0,
    });
    log::info!("amdvi: DMA translation on, default deny ({levels}-level domains)");
}

fn with<R>(f: impl FnOnce(&mut AmdDma) -> R) -> Option<R> {
    DMA.lock().as_mut().map(f)
}

fn unit_error(e: AmdRemapError) -> DmaError {
    DmaError::AmdVi(e)
}

impl AmdDma {
    fn dte_phys(&self, bdf: u16) -> u64 {
        self.devtab_phys + bdf as u64 * DTE_BYTES as u64
    }

    /// Runs `commands` and a completion wait on the unit; returns once it stored.
    fn run(&mut self, commands: &[[u64; 2]]) -> Result<(), DmaError> {
        remap::run_commands(commands).map_err(unit_error)?;
        let pages = commands.iter().filter(|c| c[0] >> 60 == amdvi_dma::INVALIDATE_IOMMU_PAGES);
        self.page_invalidations += pages.count() as u64;
        Ok(())
    }

    /// The domain of `bdf`, created (its entry switched from deny to the table) on first use.
    fn attach(&mut self, bdf: u16, owner: u64) -> Result<usize, DmaError> {
        if let Some(held) = self.domains.existing(bdf, owner) {
            return held;
        }
        if bdf as usize >= self.devtab_entries || self.next_id == u16::MAX {
            return Err(DmaError::NoMemory);
        }
        let id = self.next_id;
        let table = IoPageTable::new(&mut tables(), self.levels).ok_or(DmaError::NoMemory)?;
        let Some([q0, q1]) = amdvi_dma::translated_dte(table.root, self.levels, id) else {
            tables().free_table(table.root);
            return Err(DmaError::NoMemory);
        };
        // The domain id first: until quadword 0 changes the entry still denies.
        let dte = self.dte_phys(bdf);
        write_quads(dte + 8, &[q1]);
        write_quads(dte, &[q0]);
        // Whatever the unit cached for the deny entry (domain 0) and for this id goes.
        let invalidated = self.run(&[
            amdvi::invalidate_devtab_entry(bdf),
            amdvi_dma::invalidate_domain(0),
            amdvi_dma::invalidate_domain(id),
        ]);
        if let Err(e) = invalidated {
            // The deny entry back; the (empty) table stays allocated: the unit may have
            // cached the entry naming it.
            if let Some([d0, d1]) = deny_quads(self.empty_root) {
                write_quads(dte, &[d0]);
                write_quads(dte + 8, &[d1]);
            }
            return Err(e);
        }
        self.devtab_invalidations += 1;
        self.next_id += 1;
        let i = self.domains.push(bdf, owner, id, table);
        log::info!("amdvi: {bdf:04x}: DMA domain {id} for pid {owner}");
        Ok(i)
    }

    /// The translation fields of `bdf`'s entry, read from the device table.
    fn entry(&self, bdf: u16) -> DteTranslation {
        let dte = self.dte_phys(bdf);
        DteTranslation::of(read_quad(dte), read_quad(dte + 8))
    }
}

impl DmaRemapping for AmdDma {
    fn map(&mut self, request: &MapRequest<'_>) -> Result<u64, DmaError> {
        let i = self.attach(request.bdf, request.owner)?;
        let iova = self.domains.map_frames(&mut tables(), i, request)?;
        self.maps += 1;
        Ok(iova)
    }

    fn unmap(&mut self, bdf: u16, owner: u64, iova: u64, pages: u64) -> Result<(), DmaError> {
        let i = self.domains.find(bdf, owner).ok_or(DmaError::NotMapped)?;
        let at = self.domains.clear_mapping(&mut tables(), i, iova, pages)?;
        let id = self.domains.get(i).id;
        // Completed before the pages are unpinned (the caller frees nothing before this).
        self.run(&[amdvi_dma::invalidate_iommu_pages(id, iova, pages)])?;
        self.domains.release(i, at);
        self.unmaps += 1;
        Ok(())
    }

    fn detach(&mut self, bdf: u16, owner: u64) -> Result<bool, DmaError> {
        let Some(i) = self.domains.find(bdf, owner) else {
            return Ok(false);
        };
        let [q0, q1] = deny_quads(self.empty_root).ok_or(DmaError::NoMemory)?;
        // Quadword 0 first: from that store on the entry denies.
        let dte = self.dte_phys(bdf);
        write_quads(dte, &[q0]);
        write_quads(dte + 8, &[q1]);
        let id = self.domains.get(i).id;
        self.run(&[amdvi::invalidate_devtab_entry(bdf), amdvi_dma::invalidate_domain(id)])?;
        self.devtab_invalidations += 1;
        // Only now: the tables go back and the pins drop.
        self.domains.revoke(&mut tables(), i);
        self.detaches += 1;
        log::info!("amdvi: {bdf:04x}: DMA domain {id} of pid {owner} revoked");
        Ok(true)
    }

    fn pinned(&self, owner: u64, vaddr: u64, pages: u64) -> bool {
        self.domains.pinned(owner, vaddr, pages)
    }
}

/// Runs `f` on the AMD unit's DMA state (`iommu::dma_*` through [`DmaRemapping`]); `None`
/// when AMD-Vi DMA translation is off.
pub fn with_dma<R>(f: impl FnOnce(&mut dyn DmaRemapping) -> R) -> Option<R> {
    with(|d| f(d))
}

/// `iommu.dma*` and `iommu.amd.dma.*` evidence: the device table's entries as memory holds
/// them (how many deny, are translated, or would let DMA through) and the counters kept
/// where the unit completed the commands.
pub fn evidence() {
    with(|d| {
        let (mut deny, mut translated, mut untranslated, mut blocked) = (0, 0, 0, 0);
        for bdf in 0..d.devtab_entries {
            match d.entry(bdf as u16).name() {
                "deny" => deny += 1,
                "translated" => translated += 1,
                "untranslated" => untranslated += 1,
                _ => blocked += 1,
            }
        }
        ev!("iommu.dma", "on");
        ev!("iommu.dma.maps", d.maps);
        ev!("iommu.dma.unmaps", d.unmaps);
        ev!("iommu.dma.detaches", d.detaches);
        ev!("iommu.dma.domains_live", d.domains.live());
        ev!("iommu.dma.pinned_refusals", crate::arch::x86_64::iommu::pinned_refusals());
        ev!("iommu.amd.dma.levels", d.levels);
        ev!("iommu.amd.dma.deny_written", DENY_WRITTEN.load(Ordering::Relaxed));
        ev!("iommu.amd.dma.entries_deny", deny);
        ev!("iommu.amd.dma.entries_translated", translated);
        ev!("iommu.amd.dma.entries_untranslated", untranslated);
        ev!("iommu.amd.dma.entries_blocked", blocked);
        ev!("iommu.amd.dma.page_invalidations", d.page_invalidations);
        ev!("iommu.amd.dma.devtab_invalidations", d.devtab_invalidations);
        let empty = (0..512).all(|i| tables().read(d.empty_root, i) == 0);
        ev!("iommu.amd.dma.empty_root_empty", if empty { "yes" } else { "no" });
    });
}
