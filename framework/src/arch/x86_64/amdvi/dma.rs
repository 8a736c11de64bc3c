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

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::sync::IrqSafeMutex;
use keel_iommu::amdvi::{self, DTE_BYTES};
use keel_iommu::amdvi_dma::{self, DteTranslation, IoPageTable};
use keel_iommu::iova::IovaSpace;
use keel_iommu::pagetable::{DmaRights, TableMemory};

use super::remap::{self, AmdRemapError};
use super::unit::{read_quad, write_quads};
use crate::arch::x86_64::iommu::{DmaError, DmaRemapping};
use crate::mm::{frames, phys_to_virt};

/// The IOVA window: 256 pages from 16 MiB (inside edu's 28-bit DMA mask), as on VT-d.
const IOVA_BASE: u64 = 0x100_0000;
const IOVA_WORDS: usize = 4;

/// Page tables in kernel frames, through the physical map (AMD-Vi table walks snoop).
struct Tables;

impl TableMemory for Tables {
    fn allocate_table(&mut self) -> Option<u64> {
        frames::allocate_zeroed()
    }

    fn free_table(&mut self, table: u64) {
        frames::free(table);
    }

    fn read(&self, table: u64, index: usize) -> u64 {
        // SAFETY: `table` is a page-table frame a domain owns; index < 512.
        unsafe { phys_to_virt(table).as_ptr::<u64>().add(index).read_volatile() }
    }

    fn write(&mut self, table: u64, index: usize, value: u64) {
        // SAFETY: as in `read`.
        unsafe { phys_to_virt(table).as_mut_ptr::<u64>().add(index).write_volatile(value) };
    }
}

struct Mapping {
    iova: u64,
    vaddr: u64,
    pages: u64,
}

struct Domain {
    bdf: u16,
    owner: u64,
    id: u16,
    table: IoPageTable,
    iova: IovaSpace<IOVA_WORDS>,
    mappings: Vec<Mapping>,
}

/// The DMA state of the AMD unit: the deny entry's empty table, the domains, the counters.
pub struct AmdDma {
    devtab_phys: u64,
    devtab_entries: usize,
    /// The empty top-level table every deny entry names.
    empty_root: u64,
    levels: u32,
    domains: Vec<Domain>,
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
        domains: Vec::new(),
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
        if let Some(i) = self.domains.iter().position(|d| d.bdf == bdf) {
            return if self.domains[i].owner == owner { Ok(i) } else { Err(DmaError::Busy) };
        }
        if bdf as usize >= self.devtab_entries || self.next_id == u16::MAX {
            return Err(DmaError::NoMemory);
        }
        let id = self.next_id;
        let table = IoPageTable::new(&mut Tables, self.levels).ok_or(DmaError::NoMemory)?;
        let Some([q0, q1]) = amdvi_dma::translated_dte(table.root, self.levels, id) else {
            Tables.free_table(table.root);
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
        self.domains.push(Domain {
            bdf,
            owner,
            id,
            table,
            iova: IovaSpace::new(IOVA_BASE).expect("aligned window"),
            mappings: Vec::new(),
        });
        log::info!("amdvi: {bdf:04x}: DMA domain {id} for pid {owner}");
        Ok(self.domains.len() - 1)
    }

    fn map(
        &mut self,
        bdf: u16,
        owner: u64,
        vaddr: u64,
        frames: &[u64],
        device_writes: bool,
    ) -> Result<u64, DmaError> {
        let i = self.attach(bdf, owner)?;
        let pages = frames.len() as u64;
        let d = &mut self.domains[i];
        let iova = d.iova.allocate(pages).ok_or(DmaError::NoIova)?;
        let rights = DmaRights { read: true, write: device_writes };
        for (n, frame) in frames.iter().enumerate() {
            if d.table.map(&mut Tables, iova + n as u64 * 4096, *frame, rights).is_err() {
                for undo in 0..n as u64 {
                    let _ = d.table.unmap(&mut Tables, iova + undo * 4096);
                }
                d.iova.free(iova, pages);
                return Err(DmaError::NoMemory);
            }
        }
        // The DMA-death proofs read these frames back after their owner died.
        #[cfg(feature = "scenarios")]
        frames.iter().for_each(|f| crate::arch::x86_64::iommu::death_watch::dma_mapped_frame(*f));
        d.mappings.push(Mapping { iova, vaddr, pages });
        self.maps += 1;
        Ok(iova)
    }

    fn unmap(&mut self, bdf: u16, owner: u64, iova: u64, pages: u64) -> Result<(), DmaError> {
        let i = self
            .domains
            .iter()
            .position(|d| d.bdf == bdf && d.owner == owner)
            .ok_or(DmaError::NotMapped)?;
        let d = &mut self.domains[i];
        let at = d
            .mappings
            .iter()
            .position(|m| m.iova == iova && m.pages == pages)
            .ok_or(DmaError::NotMapped)?;
        for n in 0..pages {
            d.table.unmap(&mut Tables, iova + n * 4096).map_err(|_| DmaError::NotMapped)?;
        }
        let id = d.id;
        // Completed before the pages are unpinned (the caller frees nothing before this).
        self.run(&[amdvi_dma::invalidate_iommu_pages(id, iova, pages)])?;
        let d = &mut self.domains[i];
        d.iova.free(iova, pages);
        d.mappings.swap_remove(at);
        self.unmaps += 1;
        Ok(())
    }

    fn detach(&mut self, bdf: u16, owner: u64) -> Result<bool, DmaError> {
        let Some(i) = self.domains.iter().position(|d| d.bdf == bdf && d.owner == owner) else {
            return Ok(false);
        };
        let [q0, q1] = deny_quads(self.empty_root).ok_or(DmaError::NoMemory)?;
        // Quadword 0 first: from that store on the entry denies.
        let dte = self.dte_phys(bdf);
        write_quads(dte, &[q0]);
        write_quads(dte + 8, &[q1]);
        let id = self.domains[i].id;
        self.run(&[amdvi::invalidate_devtab_entry(bdf), amdvi_dma::invalidate_domain(id)])?;
        self.devtab_invalidations += 1;
        // Only now: the tables go back and the pins drop.
        let d = self.domains.swap_remove(i);
        for m in &d.mappings {
            for n in 0..m.pages {
                let _frame = d.table.unmap(&mut Tables, m.iova + n * 4096);
                #[cfg(feature = "scenarios")]
                if let Ok(frame) = _frame {
                    crate::arch::x86_64::iommu::death_watch::revoked_frame(frame);
                }
            }
        }
        Tables.free_table(d.table.root);
        self.detaches += 1;
        log::info!("amdvi: {bdf:04x}: DMA domain {id} of pid {owner} revoked");
        Ok(true)
    }

    fn pinned(&self, owner: u64, vaddr: u64, pages: u64) -> bool {
        let end = vaddr.saturating_add(pages.saturating_mul(4096));
        self.domains.iter().filter(|d| d.owner == owner).flat_map(|d| &d.mappings).any(|m| {
            let m_end = m.vaddr + m.pages * 4096;
            m.vaddr < end && vaddr < m_end
        })
    }

    /// The translation fields of `bdf`'s entry, read from the device table.
    fn entry(&self, bdf: u16) -> DteTranslation {
        let dte = self.dte_phys(bdf);
        DteTranslation::of(read_quad(dte), read_quad(dte + 8))
    }
}

impl DmaRemapping for AmdDma {
    fn map(
        &mut self,
        bdf: u16,
        owner: u64,
        vaddr: u64,
        frames: &[u64],
        device_writes: bool,
    ) -> Result<u64, DmaError> {
        AmdDma::map(self, bdf, owner, vaddr, frames, device_writes)
    }

    fn unmap(&mut self, bdf: u16, owner: u64, iova: u64, pages: u64) -> Result<(), DmaError> {
        AmdDma::unmap(self, bdf, owner, iova, pages)
    }

    fn detach(&mut self, bdf: u16, owner: u64) -> Result<bool, DmaError> {
        AmdDma::detach(self, bdf, owner)
    }

    fn pinned(&self, owner: u64, vaddr: u64, pages: u64) -> bool {
        AmdDma::pinned(self, owner, vaddr, pages)
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
        ev!("iommu.dma.domains_live", d.domains.len());
        ev!("iommu.dma.pinned_refusals", crate::arch::x86_64::iommu::pinned_refusals());
        ev!("iommu.amd.dma.levels", d.levels);
        ev!("iommu.amd.dma.deny_written", DENY_WRITTEN.load(Ordering::Relaxed));
        ev!("iommu.amd.dma.entries_deny", deny);
        ev!("iommu.amd.dma.entries_translated", translated);
        ev!("iommu.amd.dma.entries_untranslated", untranslated);
        ev!("iommu.amd.dma.entries_blocked", blocked);
        ev!("iommu.amd.dma.page_invalidations", d.page_invalidations);
        ev!("iommu.amd.dma.devtab_invalidations", d.devtab_invalidations);
        let empty = (0..512).all(|i| Tables.read(d.empty_root, i) == 0);
        ev!("iommu.amd.dma.empty_root_empty", if empty { "yes" } else { "no" });
    });
}
