//! DMA remapping, default deny: every unit translates DMA through one kernel-owned root
//! table, and a requester whose root/context entry is not present has each request blocked
//! and recorded as a fault. The table starts empty, so until a driver is given a domain no
//! device can read or write memory; the IOMMU's own structures and kernel frames are never
//! in any domain. Faults are collected on the boot CPU's timer tick (bounded: at most the
//! unit's fault-recording registers per tick, no allocation, no logging in the interrupt) and
//! logged when the evidence is written. Drivers' domains are in `domain.rs`.

use keel_iommu::dma::{self, ContextScope, DmaCapability, DmaFault, IotlbScope};
use keel_iommu::regs::GlobalBit;

use super::dma_domain::KernelTables;
use super::domain::Domains;
use super::vtd_unit::{Unit, UnitError};
use crate::mm::{frames, phys_to_virt};

/// Recent faults kept for the log (the counters cover every fault).
const KEPT_FAULTS: usize = 8;
/// PCI functions held by drivers at once whose faults are reported to them.
const HELD_SOURCES: usize = 16;

/// The faults of one function a driver holds (`holders` = 0: a free slot).
#[derive(Clone, Copy)]
struct HeldSource {
    source: u16,
    holders: u32,
    faults: u64,
    last: Option<DmaFault>,
}

const FREE_SLOT: HeldSource = HeldSource { source: 0, holders: 0, faults: 0, last: None };

/// The DMA half of the remapper: the root table and the faults seen.
pub struct Translation {
    pub root_phys: u64,
    /// DMA faults collected since translation was enabled.
    pub faults: u64,
    /// Polls that found the unit's records overflowed (faults lost to the storm).
    pub overflows: u64,
    /// The last [`KEPT_FAULTS`] faults, oldest first once full.
    kept: [Option<DmaFault>; KEPT_FAULTS],
    /// Faults already written to the log.
    logged: u64,
    /// Per function held by a driver: its faults since it was first held.
    held: [HeldSource; HELD_SOURCES],
    /// Drivers' DMA domains.
    pub domains: Domains,
    /// Table memory (with cache flushes when a unit does not snoop).
    pub tables: KernelTables,
}

impl Translation {
    /// Allocates the (empty) root table and enables translation on every unit. Each unit's
    /// queue is already running (interrupt remapping brought it up).
    pub fn enable(units: &mut [Unit], coherent: bool) -> Result<Translation, UnitError> {
        let root_phys = frames::allocate_zeroed()
            .ok_or(UnitError::Queue(super::queue::QueueError::NoMemory))?;
        if !coherent {
            super::flush_range(root_phys, 4096);
        }
        for unit in units.iter_mut() {
            let start = unit.enable_translation(root_phys)?;
            log::info!(
                "iommu: unit {:#x}: DMA translation on, root table {root_phys:#x}, default deny (caching mode {}, write-buffer flush {})",
                unit.register_base,
                unit.dma_capability().caching_mode(),
                start.write_buffer_flushed
            );
            if start.firmware_left_on {
                log::warn!(
                    "iommu: unit {:#x}: firmware left DMA translation on; its tables were replaced without turning it off",
                    unit.register_base
                );
            }
        }
        Ok(Translation {
            root_phys,
            faults: 0,
            overflows: 0,
            kept: [None; KEPT_FAULTS],
            logged: 0,
            held: [FREE_SLOT; HELD_SOURCES],
            domains: Domains::new(),
            tables: KernelTables { coherent },
        })
    }

    /// Present root entries, read from the table (0 while no device has a domain).
    pub fn present_roots(&self) -> usize {
        let table = phys_to_virt(self.root_phys).as_ptr::<u64>();
        (0..keel_iommu::context::TABLE_ENTRIES)
            // SAFETY: the root table is one kernel-owned page of 256 16-byte entries.
            .filter(|i| unsafe { table.add(i * 2).read_volatile() } & 1 != 0)
            .count()
    }

    /// Counts a DMA fault and keeps it for the log and, when a driver holds its source,
    /// for that driver (interrupt context allowed).
    pub fn record(&mut self, f: DmaFault) {
        self.kept[(self.faults % KEPT_FAULTS as u64) as usize] = Some(f);
        self.faults += 1;
        if let Some(h) = self.held.iter_mut().find(|h| h.holders > 0 && h.source == f.source_id) {
            h.faults += 1;
            h.last = Some(f);
        }
    }

    /// A driver was granted function `source`: its faults are kept for it from now on
    /// (counted afresh when no other holder has it). False when every slot is taken.
    pub fn hold(&mut self, source: u16) -> bool {
        if let Some(h) = self.held.iter_mut().find(|h| h.holders > 0 && h.source == source) {
            h.holders += 1;
            return true;
        }
        match self.held.iter_mut().find(|h| h.holders == 0) {
            Some(h) => {
                *h = HeldSource { source, holders: 1, faults: 0, last: None };
                true
            }
            None => false,
        }
    }

    /// A holder of `source` is gone; with the last one its faults are forgotten, so the
    /// next driver sees only its own.
    pub fn let_go(&mut self, source: u16) {
        if let Some(h) = self.held.iter_mut().find(|h| h.holders > 0 && h.source == source) {
            h.holders -= 1;
        }
    }

    /// The faults recorded for held function `source` and the last one.
    pub fn held_faults(&self, source: u16) -> Option<(u64, Option<DmaFault>)> {
        self.held.iter().find(|h| h.holders > 0 && h.source == source).map(|h| (h.faults, h.last))
    }

    /// Logs the faults not yet logged (outside interrupt context).
    pub fn log_new_faults(&mut self) {
        let first_kept = self.faults.saturating_sub(KEPT_FAULTS as u64);
        for n in self.logged.max(first_kept)..self.faults {
            if let Some(f) = self.kept[(n % KEPT_FAULTS as u64) as usize] {
                log::warn!(
                    "iommu: DMA fault: source {:02x}:{:02x}.{} {} {:#x}: reason {:#x} ({})",
                    f.source_id >> 8,
                    (f.source_id >> 3) & 0x1F,
                    f.source_id & 7,
                    if f.write { "write to" } else { "read of" },
                    f.address,
                    f.reason,
                    dma::dma_fault_reason(f.reason)
                );
            }
        }
        self.logged = self.faults;
    }

    /// The most recent fault.
    pub fn last(&self) -> Option<DmaFault> {
        self.faults.checked_sub(1).and_then(|n| self.kept[(n % KEPT_FAULTS as u64) as usize])
    }

    /// `iommu.dma.*` evidence: the table as read from memory, each unit's TE and RTADDR as
    /// read from its registers, and the faults.
    pub fn evidence(&mut self, units: &[Unit]) {
        self.log_new_faults();
        ev!("iommu.dma.root_phys", format_args!("{:#x}", self.root_phys));
        ev!("iommu.dma.present_roots", self.present_roots());
        for (i, unit) in units.iter().enumerate() {
            let te = GlobalBit::TranslationEnable.reached(unit.status(), true);
            ev!(("iommu.unit.{}.te", i), if te { "yes" } else { "no" });
            ev!(("iommu.unit.{}.rtaddr", i), format_args!("{:#x}", unit.root_table_address()));
            ev!(
                ("iommu.unit.{}.caching_mode", i),
                if unit.dma_capability().caching_mode() { "yes" } else { "no" }
            );
        }
        ev!("iommu.dma.maps", self.domains.maps);
        ev!("iommu.dma.unmaps", self.domains.unmaps);
        ev!("iommu.dma.detaches", self.domains.detaches);
        ev!("iommu.dma.iotlb_invalidations", self.domains.iotlb_invalidations);
        ev!("iommu.dma.domains_live", self.domains.live());
        ev!("iommu.dma.present_contexts", self.domains.present_contexts());
        ev!("iommu.dma_faults", self.faults);
        ev!("iommu.dma_fault_overflows", self.overflows);
        if let Some(f) = self.last() {
            ev!("iommu.dma_fault.last.source_id", format_args!("{:#x}", f.source_id));
            ev!("iommu.dma_fault.last.address", format_args!("{:#x}", f.address));
            ev!("iommu.dma_fault.last.reason", format_args!("{:#x}", f.reason));
            ev!("iommu.dma_fault.last.write", if f.write { "yes" } else { "no" });
        }
    }
}

/// The descriptors that drop every cached context entry and translation (after the root
/// table pointer changes, spec 6.5).
pub fn global_invalidations(capability: DmaCapability) -> [[u64; 2]; 2] {
    [
        dma::context_cache(ContextScope::Global),
        dma::iotlb(IotlbScope::Global, capability).expect("global scope always encodes"),
    ]
}
