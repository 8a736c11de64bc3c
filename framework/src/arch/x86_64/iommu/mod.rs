//! Intel VT-d interrupt remapping, and DMA remapping on top of it (`vtd_dma.rs`: translation on,
//! default deny, faults; `domain.rs`: drivers' DMA domains).
//!
//! With remapping on, an IOAPIC entry or MSI address no longer names a CPU: it carries an
//! index into the interrupt-remapping table (IRT), and the remapping unit builds the
//! interrupt from that entry (vector, trigger, destination), after checking the requester's
//! source id. In extended interrupt mode (IRTA.EIME, used whenever the LAPICs run in x2APIC
//! mode) the entry's destination is a full 32-bit APIC ID, which is how a device interrupt
//! reaches a CPU whose APIC ID is above 254.
//!
//! Ownership: the kernel owns one table shared by every unit the DMAR lists (each unit's
//! IRTA points at it). Index = GSI for IOAPIC inputs (so a pin's entry never moves), then
//! one handle per MSI function. Every entry change is followed by an index-selective
//! interrupt-entry-cache invalidation on every unit (spec 6.5.2.7), completed through a
//! wait descriptor before the source is unmasked. Without a DMAR (or with a unit that cannot
//! remap in the LAPICs' mode) nothing is enabled and routing stays in compatibility format,
//! and DMA is not translated either (it needs the queue interrupt remapping brings up).

#[cfg(feature = "scenarios")]
pub mod death_watch;
mod dma_domain;
mod dma_remapping;
mod domain;
mod queue;
mod vtd_dma;
mod vtd_registers;
mod vtd_unit;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, Ordering};

use keel_apic::{ApicId, LapicMode, TriggerMode};
use keel_iommu::irte::{
    DestinationMode, IndexPlan, Irte, IrteDestination, IrteError, SourceValidation,
};
use keel_iommu::regs::{FaultRecord, GlobalBit};
use keel_iommu::{Dmar, SourceId};

use crate::mm::{frames, phys_to_virt};
use crate::sync::IrqSafeMutex;
use vtd_unit::{Unit, UnitError};

/// Why a remapped route could not be set up.
#[derive(Clone, Copy, Debug)]
pub enum RemapError {
    /// Remapping is not enabled.
    Inactive,
    /// The GSI or MSI handle is outside the table.
    NoIndex,
    /// No unit in the DMAR covers the IOAPIC or PCI function.
    NotCovered,
    /// The entry could not be encoded.
    Entry(IrteError),
    /// A unit failed to invalidate its cache.
    Unit(UnitError),
    /// The AMD-Vi unit could not remap the source.
    AmdVi(super::amdvi::AmdRemapError),
}

struct Remapper {
    dmar: Dmar<'static>,
    units: Vec<Unit>,
    mode: DestinationMode,
    plan: IndexPlan,
    table_phys: u64,
    /// Every unit snoops table reads (ECAP.C); otherwise entries are flushed from the cache.
    coherent: bool,
    /// MSI handles by requester id (bits 15:0), and MSI-X entry + 1 (bits 31:16; 0 = MSI).
    msi_handles: BTreeMap<u32, u16>,
    entries_written: u64,
    faults: u64,
    /// Interrupt-remapping faults the timer-tick poll took, until the next collection.
    ir_backlog: [Option<FaultRecord>; IR_BACKLOG],
    ir_backlog_len: usize,
    /// DMA remapping (default deny), when every unit took it.
    dma: Option<vtd_dma::Translation>,
}

/// Interrupt-remapping faults the tick poll holds for the next collection (more are counted
/// as lost).
const IR_BACKLOG: usize = 8;

static REMAPPER: IrqSafeMutex<Option<Remapper>> = IrqSafeMutex::new(None);
/// 0: off; 1: xAPIC mode (EIME = 0); 2: extended interrupt mode. Read without the lock on
/// every route decision.
static MODE: AtomicU8 = AtomicU8::new(0);

/// The table's destination mode when remapping is on, through VT-d or AMD-Vi.
pub fn mode() -> Option<DestinationMode> {
    match MODE.load(Ordering::Acquire) {
        1 => Some(DestinationMode::XApic),
        2 => Some(DestinationMode::X2Apic),
        _ => super::amdvi::mode(),
    }
}

fn with<R>(f: impl FnOnce(&mut Remapper) -> R) -> Option<R> {
    REMAPPER.lock().as_mut().map(f)
}

/// Finds the DMAR, checks every unit and enables interrupt remapping on all of them, or on
/// none. `gsis` is the number of IOAPIC inputs (highest GSI + 1), `msi_sources` how many
/// MSI functions can ever be routed (one device vector each).
pub fn init(lapic_mode: LapicMode, ioapic_ids: &[u8], gsis: u32, msi_sources: u32, allowed: bool) {
    let state = match try_init(lapic_mode, ioapic_ids, gsis, msi_sources, allowed) {
        Ok(r) => {
            let mode = r.mode;
            *REMAPPER.lock() = Some(r);
            MODE.store(if mode == DestinationMode::X2Apic { 2 } else { 1 }, Ordering::Release);
            "on"
        }
        Err((code, why)) => {
            log::info!("iommu: interrupt remapping off: {why}");
            ev!("iommu.off_reason", code);
            "off"
        }
    };
    ev!("iommu.remapping", state);
    if state == "on" {
        evidence();
    }
}

/// Why remapping stays off: an evidence code and the reason in words.
type OffReason = (&'static str, &'static str);

fn try_init(
    lapic_mode: LapicMode,
    ioapic_ids: &[u8],
    gsis: u32,
    msi_sources: u32,
    allowed: bool,
) -> Result<Remapper, OffReason> {
    let bytes = crate::acpi::dmar().ok_or(("no-dmar", "no DMAR table (no IOMMU)"))?;
    let dmar = Dmar::parse(bytes).map_err(|e| {
        log::warn!("iommu: DMAR rejected: {e:?}");
        ("dmar-malformed", "DMAR table malformed")
    })?;
    if let Some(e) = dmar.first_error() {
        log::warn!("iommu: DMAR structure error: {e:?} (the structures before it are used)");
    }
    for u in dmar.units() {
        log::info!(
            "iommu: DRHD at {:#x} segment {} include-all {}",
            u.register_base,
            u.segment,
            u.include_pci_all()
        );
        for s in u.scopes().map_while(Result::ok) {
            log::info!(
                "iommu:   scope {:?} id {} at {:?}",
                s.kind,
                s.enumeration_id,
                s.source_id()
            );
        }
    }
    ev!("iommu.units", dmar.units().count());
    if !dmar.flags.interrupt_remapping {
        return Err((
            "dmar-without-interrupt-remapping",
            "DMAR does not report interrupt remapping",
        ));
    }
    if !allowed {
        return Err(("command-line", "disabled on the command line (iommu=off)"));
    }
    // Every IOAPIC must sit under a unit (VT-d spec 8.3.1: they are listed explicitly), or
    // its pins could not be remapped while the others are: all or nothing.
    if let Some(id) = ioapic_ids.iter().find(|id| dmar.ioapic_unit(**id).is_none()) {
        log::warn!("iommu: IOAPIC {id} is in no DMAR device scope");
        return Err(("ioapic-not-in-dmar", "an IOAPIC is under no remapping unit"));
    }
    let x2apic = lapic_mode == LapicMode::X2Apic;
    let mut units = Vec::new();
    for u in dmar.units() {
        let unit = Unit::probe(u.register_base, u.register_pages(), x2apic).map_err(|e| {
            log::warn!("iommu: unit {:#x} unusable: {e:?}", u.register_base);
            ("unit-cannot-remap", "a remapping unit cannot remap interrupts in this LAPIC mode")
        })?;
        units.push(unit);
    }
    if units.is_empty() {
        return Err(("no-unit", "DMAR lists no remapping unit"));
    }
    let mode = if x2apic { DestinationMode::X2Apic } else { DestinationMode::XApic };
    let plan = IndexPlan::new(gsis, msi_sources)
        .ok_or(("table-too-large", "interrupt sources exceed 65,536 table entries"))?;
    let pages = plan.bytes().div_ceil(4096);
    let table_phys = frames::allocate_contiguous(pages, 4096)
        .ok_or(("no-memory", "no memory for the remapping table"))?;
    // SAFETY: the frames were just allocated for the table; nothing else references them.
    unsafe {
        core::ptr::write_bytes(
            phys_to_virt(table_phys).as_mut_ptr::<u8>(),
            0,
            plan.bytes() as usize,
        )
    };
    let coherent = units.iter().all(|u| u.extended.coherent());
    if !coherent {
        flush_range(table_phys, plan.bytes());
    }
    let irta = keel_iommu::regs::irt_address(table_phys, plan.size_field(), x2apic)
        .expect("page-aligned table");
    for unit in &mut units {
        unit.enable(irta).map_err(|e| {
            log::error!("iommu: unit {:#x}: enabling failed: {e:?}", unit.register_base);
            ("enable-failed", "enabling sequence failed")
        })?;
        log::info!(
            "iommu: unit {:#x}: interrupt remapping on, {} entries, EIME {}",
            unit.register_base,
            plan.entries,
            x2apic
        );
    }
    // DMA translation after interrupt remapping: it uses the queue that sequence started.
    let dma = match vtd_dma::Translation::enable(&mut units, coherent) {
        Ok(t) => {
            // Fault events to this (the boot) CPU; the tick poll stays as the backstop.
            let bsp = super::percpu::with_current(|me| me.apic_id.load(Ordering::Acquire));
            for unit in &mut units {
                if !unit.enable_fault_events(super::trap_entry::IOMMU_FAULT_VECTOR, bsp, x2apic) {
                    log::warn!("iommu: fault events cannot reach APIC ID {bsp}; polled only");
                }
            }
            Some(t)
        }
        Err(e) => {
            log::error!("iommu: DMA translation could not be enabled: {e:?}; DMA is not contained");
            None
        }
    };
    Ok(Remapper {
        dmar,
        units,
        mode,
        plan,
        table_phys,
        coherent,
        msi_handles: BTreeMap::new(),
        entries_written: 0,
        faults: 0,
        ir_backlog: [None; IR_BACKLOG],
        ir_backlog_len: 0,
        dma,
    })
}

pub(super) fn flush_range(phys: u64, len: u64) {
    let mut at = phys & !63;
    while at < phys + len {
        // SAFETY: `at` is inside memory the remapper owns, mapped in the physical map.
        unsafe { core::arch::x86_64::_mm_clflush(phys_to_virt(at).as_ptr::<u8>()) };
        at += 64;
    }
    // SAFETY: a fence has no memory-safety preconditions.
    unsafe { core::arch::x86_64::_mm_mfence() };
}

/// The remapping table and the units' queues, for `keel_iommu::update::write_entry`.
struct TableUpdate<'a> {
    table_phys: u64,
    units: &'a mut [Unit],
}

impl keel_iommu::update::EntryUpdate for TableUpdate<'_> {
    type Error = UnitError;

    fn store(&mut self, index: u16, raw: [u64; 2]) {
        let p = phys_to_virt(self.table_phys + index as u64 * 16).as_mut_ptr::<u64>();
        // SAFETY: `write_entry` checked `index` against the plan; the table is kernel-owned
        // memory. Upper half first, then the lower half with P, one 64-bit store each.
        unsafe {
            p.add(1).write_volatile(raw[1]);
            p.write_volatile(raw[0]);
        }
    }

    fn flush(&mut self, index: u16) {
        flush_range(self.table_phys + index as u64 * 16, 16);
    }

    fn units(&self) -> usize {
        self.units.len()
    }

    fn enqueue(&mut self, unit: usize, descriptor: [u64; 2]) {
        self.units[unit].enqueue(descriptor)
    }

    fn enqueue_wait(&mut self, unit: usize) {
        self.units[unit].enqueue_wait()
    }

    fn complete(&mut self, unit: usize) -> Result<(), UnitError> {
        self.units[unit].complete()
    }
}

impl Remapper {
    /// Reads and clears every unit's records: DMA faults go to the translation's counters,
    /// interrupt-remapping faults (the backlog the tick took first) to `ir`. Allocation-free.
    fn collect(&mut self, mut ir: impl FnMut(FaultRecord)) {
        for record in self.ir_backlog.iter_mut().take(self.ir_backlog_len).filter_map(Option::take)
        {
            ir(record);
        }
        self.ir_backlog_len = 0;
        let Remapper { units, dma, .. } = self;
        for unit in units.iter_mut() {
            let overflow = unit.collect_all(&mut ir, |f| {
                if let Some(t) = dma.as_mut() {
                    t.record(f)
                }
            });
            if let (true, Some(t)) = (overflow, dma.as_mut()) {
                t.overflows += 1;
            }
        }
    }

    fn entry_ptr(&self, index: u16) -> *mut u64 {
        phys_to_virt(self.table_phys + index as u64 * 16).as_mut_ptr::<u64>()
    }

    fn read_entry(&self, index: u16) -> [u64; 2] {
        let p = self.entry_ptr(index);
        // SAFETY: `index` is below the table size (callers check it against the plan).
        unsafe { [p.read_volatile(), p.add(1).read_volatile()] }
    }

    /// Writes an entry and invalidates every unit's cached copy through the pure sequence
    /// (`keel_iommu::update`: store, `clflush` when not coherent, IEC, wait). The source is
    /// masked by the caller, so no request uses the entry while its halves change.
    fn write_entry(&mut self, index: u16, raw: [u64; 2]) -> Result<(), RemapError> {
        if index as u32 >= self.plan.entries {
            return Err(RemapError::NoIndex);
        }
        let mut table = TableUpdate { table_phys: self.table_phys, units: &mut self.units };
        keel_iommu::update::write_entry(&mut table, index, raw, self.coherent)
            .map_err(RemapError::Unit)?;
        self.entries_written += 1;
        Ok(())
    }

    fn program(
        &mut self,
        index: u16,
        vector: u8,
        cpu: ApicId,
        trigger: TriggerMode,
        source: SourceValidation,
    ) -> Result<(), RemapError> {
        let destination = IrteDestination::for_mode(self.mode, cpu)
            .ok_or(RemapError::Entry(IrteError::Unreachable(cpu.get())))?;
        let raw = Irte { vector, destination, trigger, source }
            .encode(self.mode)
            .map_err(RemapError::Entry)?;
        self.write_entry(index, raw)
    }

    /// Which requester ids the function's entry accepts. A function on bus 0 signals with its
    /// own id. Behind a bridge the id can be the bridge's (a PCIe-to-PCI bridge takes over
    /// its devices' requests), which Keel does not model yet: such entries accept any
    /// requester, and the log says so.
    fn pci_source(&self, sid: SourceId) -> Result<SourceValidation, RemapError> {
        self.dmar
            .unit_for_pci(0, sid, |bridge| crate::pci::bridge_buses(bridge.0))
            .ok_or(RemapError::NotCovered)?;
        if sid.bus() == 0 {
            return Ok(SourceValidation::Requester(sid));
        }
        log::warn!(
            "iommu: {:04x}: behind a bridge, its MSI entry does not validate the requester id",
            sid.0
        );
        Ok(SourceValidation::None)
    }
}

/// Programs the entry for IOAPIC input `gsi` of the IOAPIC with MADT id `ioapic_id` and
/// returns its index (the remappable RTE's interrupt index).
pub fn program_ioapic(
    ioapic_id: u8,
    gsi: u32,
    vector: u8,
    cpu: ApicId,
    trigger: TriggerMode,
) -> Result<u16, RemapError> {
    with(|r| {
        let index = r.plan.gsi_index(gsi).ok_or(RemapError::NoIndex)?;
        let (_, scope) = r.dmar.ioapic_unit(ioapic_id).ok_or(RemapError::NotCovered)?;
        // The IOAPIC's requests carry the source id its DMAR scope names (spec 8.3.1.1).
        let source = scope.source_id().map_or(SourceValidation::None, SourceValidation::Requester);
        r.program(index, vector, cpu, trigger, source)?;
        Ok(index)
    })
    .unwrap_or(Err(RemapError::Inactive))
}

/// Programs the entry of PCI function `bdf`'s MSI (edge) and returns its handle (allocated
/// on first use, kept for the function's later routes).
pub fn program_msi(bdf: u16, vector: u8, cpu: ApicId) -> Result<u16, RemapError> {
    program_message(bdf, bdf as u32, vector, cpu)
}

/// The same for MSI-X table entry `entry` of function `bdf`: each entry has its own handle
/// (its own vector and destination), all validating the function's requester id.
pub fn program_msix(bdf: u16, entry: u16, vector: u8, cpu: ApicId) -> Result<u16, RemapError> {
    program_message(bdf, (entry as u32 + 1) << 16 | bdf as u32, vector, cpu)
}

fn program_message(bdf: u16, key: u32, vector: u8, cpu: ApicId) -> Result<u16, RemapError> {
    with(|r| {
        let source = r.pci_source(SourceId(bdf))?;
        let handle = match r.msi_handles.get(&key) {
            Some(h) => *h,
            None => {
                let h = r.plan.msi_index(r.msi_handles.len() as u32).ok_or(RemapError::NoIndex)?;
                r.msi_handles.insert(key, h);
                h
            }
        };
        r.program(handle, vector, cpu, TriggerMode::Edge, source)?;
        Ok(handle)
    })
    .unwrap_or(Err(RemapError::Inactive))
}

/// The entry at `index` as the table holds it now (read back from table memory).
pub fn entry(index: u16) -> Option<Result<Irte, IrteError>> {
    with(|r| ((index as u32) < r.plan.entries).then(|| Irte::decode(r.read_entry(index), r.mode)))
        .flatten()
}

/// The IOAPIC input's index, when remapping is on.
pub fn gsi_index(gsi: u32) -> Option<u16> {
    with(|r| r.plan.gsi_index(gsi)).flatten()
}

/// An index no source uses (its entry is not present): the last one, when the plan leaves it
/// free. The fault self-test points a request at it.
#[cfg(feature = "scenarios")]
pub fn unused_index() -> Option<u16> {
    with(|r| {
        (r.plan.gsis + r.plan.msi_handles < r.plan.entries).then(|| (r.plan.entries - 1) as u16)
    })
    .flatten()
}

/// Reads and clears every unit's fault records and returns them, without counting them as
/// unexpected (the fault self-test provokes one on purpose).
#[cfg(feature = "scenarios")]
pub fn take_faults() -> Vec<FaultRecord> {
    with(|r| {
        let mut taken = Vec::new();
        r.collect(|f| taken.push(f));
        taken
    })
    .unwrap_or_default()
}

/// Reads and clears every unit's fault records; returns how many were recorded so far.
pub fn collect_faults() -> u64 {
    with(|r| {
        let mut found = 0;
        r.collect(|f| {
            found += 1;
            log::warn!(
                "iommu: interrupt fault: reason {:#x} ({}) source {:#06x} index {}",
                f.reason,
                keel_iommu::regs::fault_reason(f.reason),
                f.source_id,
                f.interrupt_index
            );
        });
        r.faults += found;
        if let Some(t) = r.dma.as_mut() {
            t.log_new_faults();
        }
        r.faults
    })
    .unwrap_or(0)
}

/// The boot CPU's timer tick: takes the fault records so that the few the unit has are free
/// for the next fault (a storm costs each tick at most the units' records). Skips the tick
/// when another CPU holds the remapper; never logs or allocates (interrupt context).
pub fn poll_faults() {
    let Some(mut guard) = REMAPPER.try_lock() else { return };
    let Some(r) = guard.as_mut() else { return };
    let Remapper { units, dma, ir_backlog, ir_backlog_len, faults, .. } = r;
    for unit in units.iter_mut() {
        let overflow = unit.collect_all(
            |record| match ir_backlog.get_mut(*ir_backlog_len) {
                Some(slot) => {
                    *slot = Some(record);
                    *ir_backlog_len += 1;
                }
                None => *faults += 1,
            },
            |f| {
                if let Some(t) = dma.as_mut() {
                    t.record(f)
                }
            },
        );
        if let (true, Some(t)) = (overflow, dma.as_mut()) {
            t.overflows += 1;
        }
    }
}

pub use dma_domain::{DomainList, KernelTables};
pub use dma_remapping::{DmaRemapping, MapRequest};
pub use domain::DmaError;

/// Runs `f` on the unit that translates DMA: VT-d's when a VT-d unit does, the AMD unit's
/// (`amdvi::dma`) otherwise. `None` when DMA translation is off.
fn with_dma<R>(f: impl FnOnce(&mut dyn DmaRemapping) -> R) -> Option<R> {
    let mut f = Some(f);
    let vtd = with(|r| {
        let Remapper { units, dma, .. } = r;
        let translation = dma.as_mut()?;
        let f = f.take().expect("called once");
        Some(f(&mut dma_remapping::VtdDma { units, translation }))
    })
    .flatten();
    match (vtd, f) {
        (Some(result), _) => Some(result),
        (None, Some(f)) => super::amdvi::dma::with_dma(|d| f(d)),
        (None, None) => None,
    }
}

/// Maps the frames of `owner`'s pages at `vaddr` for PCI function `bdf`'s DMA and returns
/// their IOVA. The caller holds `owner`'s address-space lock, so the pages cannot be
/// unmapped until [`dma_pinned`] covers them. `None` when DMA translation is off. Either
/// vendor's domains ([`with_dma`]): the callers never ask which.
pub fn dma_map(
    bdf: u16,
    owner: u64,
    vaddr: u64,
    frames: &[u64],
    device_writes: bool,
) -> Option<Result<u64, DmaError>> {
    with_dma(|d| d.map(&MapRequest { bdf, owner, vaddr, frames, device_writes }))
}

/// Removes a mapping; returns after the IOTLB invalidation completed.
pub fn dma_unmap(bdf: u16, owner: u64, iova: u64, pages: u64) -> Option<Result<(), DmaError>> {
    with_dma(|d| d.unmap(bdf, owner, iova, pages))
}

/// Revokes `owner`'s domain for `bdf` (its `DeviceMemory` released or the process ended);
/// returns after the context cache and IOTLB invalidations completed.
pub fn dma_detach(bdf: u16, owner: u64) {
    if let Some(Err(e)) = with_dma(|d| d.detach(bdf, owner)) {
        log::error!("iommu: {bdf:04x}: revoking the DMA domain of pid {owner} failed: {e:?}");
    }
}

/// Function `bdf` was granted to a driver: its DMA faults are kept for the holders (see
/// [`dma_faults_of`]). False without DMA translation or when no slot is left.
pub fn hold_dma_faults(bdf: u16) -> bool {
    with(|r| r.dma.as_mut().is_some_and(|t| t.hold(bdf))).unwrap_or(false)
}

/// A holder of `bdf` (one [`hold_dma_faults`]) is gone.
pub fn let_go_dma_faults(bdf: u16) {
    with(|r| r.dma.as_mut().map(|t| t.let_go(bdf)));
}

/// The DMA faults recorded for held function `bdf` (count, last), after taking what the
/// units recorded so far.
pub fn dma_faults_of(bdf: u16) -> Option<(u64, Option<keel_iommu::dma::DmaFault>)> {
    collect_faults();
    with(|r| r.dma.as_ref().and_then(|t| t.held_faults(bdf))).flatten()
}

/// `VmUnmap`/`VmProtect` requests refused because they touched DMA-mapped pages.
static PINNED_REFUSALS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Counts a request refused for touching pinned pages (evidence `iommu.dma.pinned_refusals`).
pub fn count_pinned_refusal() {
    PINNED_REFUSALS.fetch_add(1, Ordering::Relaxed);
}

/// Whether any of `owner`'s pages in `[vaddr, vaddr + pages)` is mapped for DMA.
pub fn dma_pinned(owner: u64, vaddr: u64, pages: u64) -> bool {
    with_dma(|d| d.pinned(owner, vaddr, pages)).unwrap_or(false)
}

/// Requests refused so far for touching pinned pages.
pub fn pinned_refusals() -> u64 {
    PINNED_REFUSALS.load(Ordering::Relaxed)
}

/// Fault-event interrupts taken (the units' FEDATA vector).
static FAULT_INTERRUPTS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The units' fault-event interrupt: takes the records at once (bounded like the tick's
/// poll, which also covers a record this one misses because another CPU held the lock).
pub fn fault_interrupt(token: super::eoi::InService) {
    FAULT_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
    poll_faults();
    token.eoi();
}

/// Whether DMA translation is on (every VT-d unit took the root table, or the AMD unit
/// denies every requester without a domain).
pub fn dma_translation() -> bool {
    with_dma(|_| ()).is_some()
}

/// `iommu.*` evidence, read back from the units' registers (AMD-Vi's `iommu.amd.*`).
pub fn evidence() {
    super::amdvi::evidence();
    with(|r| {
        ev!("iommu.mode", if r.mode == DestinationMode::X2Apic { "x2apic" } else { "xapic" });
        ev!("iommu.irt_entries", r.plan.entries);
        ev!("iommu.irt_phys", format_args!("{:#x}", r.table_phys));
        ev!("iommu.entries_written", r.entries_written);
        for (i, unit) in r.units.iter().enumerate() {
            let status = unit.status();
            let irta = unit.irta();
            ev!(("iommu.unit.{}.gsts", i), format_args!("{status:#x}"));
            ev!(
                ("iommu.unit.{}.ire", i),
                if GlobalBit::InterruptRemapping.reached(status, true) { "yes" } else { "no" }
            );
            ev!(
                ("iommu.unit.{}.qie", i),
                if GlobalBit::QueuedInvalidation.reached(status, true) { "yes" } else { "no" }
            );
            ev!(("iommu.unit.{}.irta", i), format_args!("{irta:#x}"));
            ev!(("iommu.unit.{}.eime", i), if irta & (1 << 11) != 0 { "yes" } else { "no" });
            ev!(("iommu.unit.{}.invalidations", i), unit.invalidations());
        }
        ev!("iommu.dma", if r.dma.is_some() { "on" } else { "off" });
        ev!("iommu.dma.pinned_refusals", PINNED_REFUSALS.load(Ordering::Relaxed));
        ev!("iommu.fault_interrupts", FAULT_INTERRUPTS.load(Ordering::Relaxed));
        for (i, unit) in r.units.iter().enumerate() {
            let masked = unit.fault_event_control() & (1 << 31) != 0;
            ev!(("iommu.unit.{}.fault_events", i), if masked { "masked" } else { "on" });
        }
        if let Some(t) = r.dma.as_mut() {
            t.evidence(&r.units);
        }
    });
}
