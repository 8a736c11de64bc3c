//! DMA domains: one per PCI function a driver maps memory for. A domain is a context entry
//! (present only while the driver holds it), a second-level page table and an IOVA window
//! below 2^28 (edu's DMA mask). The driver names its own pages; the kernel finds their
//! frames and the device sees only IOVAs. Ordering rules:
//! * a mapping becomes visible without invalidation, except in caching mode (the unit may
//!   have cached the not-present entry: spec 6.1), where the context cache / IOTLB are
//!   invalidated after the entry is written;
//! * an unmap or a detach completes the IOTLB (and context-cache) invalidation, through the
//!   queue with a wait descriptor, before it returns: only then may the pages be unpinned
//!   and their frames freed.

use keel_iommu::context::{self, AddressWidth, ContextEntry, RootEntry, TranslationType};
use keel_iommu::dma::{self as vtd, ContextScope, EntryChange, IotlbScope};
use keel_iommu::pagetable::{PageTable, TableMemory};

use super::dma_domain::{DomainList, KernelTables};
use super::dma_remapping::MapRequest;
use super::vtd_unit::{Unit, UnitError};
use crate::mm::phys_to_virt;

/// Why a DMA request was refused.
#[derive(Clone, Copy, Debug)]
pub enum DmaError {
    /// Another process holds the function's domain.
    Busy,
    /// No frame for a table, or no domain id left.
    NoMemory,
    /// No free IOVA run of that length.
    NoIova,
    /// No such mapping (unmap of an IOVA range the caller was not given).
    NotMapped,
    /// A unit's invalidation failed.
    Unit(UnitError),
    /// The AMD unit did not complete its commands.
    AmdVi(crate::arch::x86_64::amdvi::AmdRemapError),
}

/// Every domain, the per-bus context tables and the counters.
pub struct Domains {
    context_tables: [Option<u64>; context::TABLE_ENTRIES],
    domains: DomainList<PageTable>,
    next_id: u16,
    pub maps: u64,
    pub unmaps: u64,
    pub detaches: u64,
    /// IOTLB invalidations completed (wait descriptor seen), per unit summed.
    pub iotlb_invalidations: u64,
}

/// Writes one 128-bit entry: the upper half first, then the lower one with P, so the unit
/// never reads a present entry with a stale upper half.
fn write_entry(mem: &mut KernelTables, phys: u64, raw: [u64; 2]) {
    let p = phys_to_virt(phys).as_mut_ptr::<u64>();
    // SAFETY: `phys` is an entry of a root or context table the kernel owns.
    unsafe {
        if raw[0] & 1 == 0 {
            p.write_volatile(raw[0]);
            p.add(1).write_volatile(raw[1]);
        } else {
            p.add(1).write_volatile(raw[1]);
            p.write_volatile(raw[0]);
        }
    }
    if !mem.coherent {
        super::flush_range(phys, 16);
    }
}

fn submit_all(units: &mut [Unit], descriptor: [u64; 2]) -> Result<(), DmaError> {
    units.iter_mut().try_for_each(|u| u.submit(descriptor)).map_err(DmaError::Unit)
}

fn flush_write_buffers(units: &mut [Unit]) -> Result<(), DmaError> {
    units.iter_mut().try_for_each(|u| u.flush_write_buffer()).map_err(DmaError::Unit)
}

impl Domains {
    pub fn new() -> Domains {
        Domains {
            context_tables: [None; context::TABLE_ENTRIES],
            domains: DomainList::new(),
            next_id: 1,
            maps: 0,
            unmaps: 0,
            detaches: 0,
            iotlb_invalidations: 0,
        }
    }

    /// Present context entries, read from the context tables.
    pub fn present_contexts(&self) -> usize {
        let mem = KernelTables { coherent: true };
        self.context_tables
            .iter()
            .flatten()
            .map(|t| (0..256).filter(|i| mem.read(*t, i * 2) & 1 != 0).count())
            .sum()
    }

    pub fn live(&self) -> usize {
        self.domains.live()
    }

    /// Whether any page of `[vaddr, vaddr + pages)` is DMA-mapped for `owner`.
    pub fn pinned(&self, owner: u64, vaddr: u64, pages: u64) -> bool {
        self.domains.pinned(owner, vaddr, pages)
    }

    /// Invalidates `pages` pages at `iova` of domain `id` on every unit; returns once the
    /// wait descriptors completed.
    fn invalidate_iotlb(
        &mut self,
        units: &mut [Unit],
        id: u16,
        iova: u64,
        pages: u64,
    ) -> Result<(), DmaError> {
        let cap = units[0].dma_capability();
        let scope = vtd::iotlb_range(id, iova, pages, cap);
        let descriptor = vtd::iotlb(scope, cap).expect("iotlb_range builds aligned ranges");
        submit_all(units, descriptor)?;
        self.iotlb_invalidations += units.len() as u64;
        Ok(())
    }

    /// The domain of `bdf`, created (context entry made present) on first use.
    fn attach(
        &mut self,
        units: &mut [Unit],
        mem: &mut KernelTables,
        root_phys: u64,
        bdf: u16,
        owner: u64,
    ) -> Result<usize, DmaError> {
        if let Some(held) = self.domains.existing(bdf, owner) {
            return held;
        }
        let cap = units[0].dma_capability();
        let width = AddressWidth::for_unit(cap).ok_or(DmaError::NoMemory)?;
        let id = self.next_id;
        if id == u16::MAX || !units.iter().all(|u| u.dma_capability().domain_usable(id)) {
            return Err(DmaError::NoMemory);
        }
        let (bus, devfn) = context::slots(bdf);
        let context_table = match self.context_tables[bus] {
            Some(t) => t,
            None => {
                let t = mem.allocate_table().ok_or(DmaError::NoMemory)?;
                let root = RootEntry { context_table: Some(t) }.encode().expect("frame");
                write_entry(mem, root_phys + bus as u64 * 16, root);
                self.context_tables[bus] = Some(t);
                t
            }
        };
        let table = PageTable::new(mem, width).ok_or(DmaError::NoMemory)?;
        let entry = ContextEntry {
            domain: id,
            page_table: table.root,
            width,
            translation: TranslationType::SecondLevel,
        };
        let raw = entry.encode(cap).map_err(|_| DmaError::NoMemory)?;
        write_entry(mem, context_table + devfn as u64 * 16, raw);
        flush_write_buffers(units)?;
        if vtd::must_invalidate(EntryChange::Populated, cap) {
            // The unit may hold the not-present root/context entry: drop it.
            submit_all(units, vtd::context_cache(ContextScope::Global))?;
            let iotlb = vtd::iotlb(IotlbScope::Domain(id), cap).expect("domain scope");
            submit_all(units, iotlb)?;
            self.iotlb_invalidations += units.len() as u64;
        }
        self.next_id += 1;
        let i = self.domains.push(bdf, owner, id, table);
        log::info!("iommu: {bdf:04x}: DMA domain {id} for pid {owner} ({} bits)", width.bits());
        Ok(i)
    }

    /// Maps the request's frames (one per page, the caller's pages, pinned by the caller's
    /// lock until this returns and by [`Domains::pinned`] after) and returns their IOVA.
    pub fn map(
        &mut self,
        units: &mut [Unit],
        mem: &mut KernelTables,
        root_phys: u64,
        request: &MapRequest<'_>,
    ) -> Result<u64, DmaError> {
        let i = self.attach(units, mem, root_phys, request.bdf, request.owner)?;
        let iova = self.domains.map_frames(mem, i, request)?;
        let id = self.domains.get(i).id;
        flush_write_buffers(units)?;
        if vtd::must_invalidate(EntryChange::Populated, units[0].dma_capability()) {
            self.invalidate_iotlb(units, id, iova, request.frames.len() as u64)?;
        }
        self.maps += 1;
        Ok(iova)
    }

    /// Removes the mapping `[iova, iova + pages)` of `owner`'s domain for `bdf`: the leaves
    /// cleared, the IOTLB invalidated and waited for, then the IOVAs and the pin released.
    pub fn unmap(
        &mut self,
        units: &mut [Unit],
        mem: &mut KernelTables,
        bdf: u16,
        owner: u64,
        iova: u64,
        pages: u64,
    ) -> Result<(), DmaError> {
        let i = self.domains.find(bdf, owner).ok_or(DmaError::NotMapped)?;
        let at = self.domains.clear_mapping(mem, i, iova, pages)?;
        let id = self.domains.get(i).id;
        flush_write_buffers(units)?;
        self.invalidate_iotlb(units, id, iova, pages)?;
        self.domains.release(i, at);
        self.unmaps += 1;
        Ok(())
    }

    /// Revokes `owner`'s domain for `bdf`: context entry cleared, context cache and IOTLB
    /// invalidated and waited for, then the tables freed and the pins dropped. The bus's
    /// context table goes with its last domain (root entry cleared and invalidated first).
    pub fn detach(
        &mut self,
        units: &mut [Unit],
        mem: &mut KernelTables,
        root_phys: u64,
        bdf: u16,
        owner: u64,
    ) -> Result<bool, DmaError> {
        let Some(i) = self.domains.find(bdf, owner) else {
            return Ok(false);
        };
        let (bus, devfn) = context::slots(bdf);
        let context_table = self.context_tables[bus].expect("attached domains have one");
        write_entry(mem, context_table + devfn as u64 * 16, [0, 0]);
        flush_write_buffers(units)?;
        let cap = units[0].dma_capability();
        let id = self.domains.get(i).id;
        submit_all(units, vtd::context_cache(ContextScope::Device { domain: id, source: bdf }))?;
        submit_all(units, vtd::iotlb(IotlbScope::Domain(id), cap).expect("domain scope"))?;
        self.iotlb_invalidations += units.len() as u64;
        self.domains.revoke(mem, i);
        if !self.domains.iter().any(|other| context::slots(other.bdf).0 == bus) {
            // The bus's last domain: its root entry goes too, then its context table.
            write_entry(mem, root_phys + bus as u64 * 16, [0, 0]);
            flush_write_buffers(units)?;
            submit_all(units, vtd::context_cache(ContextScope::Global))?;
            mem.free_table(context_table);
            self.context_tables[bus] = None;
        }
        self.detaches += 1;
        log::info!("iommu: {bdf:04x}: DMA domain {id} of pid {owner} revoked");
        Ok(true)
    }
}
