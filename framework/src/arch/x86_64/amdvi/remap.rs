//! AMD-Vi interrupt remapping: one interrupt table per requester (256 entries, IntTabLen =
//! 8), named by its device table entry (IV = 1, IntCtl = remapped). A remapped request's
//! MSI data bits 10:0 index that table; the entry holds the vector and destination. With
//! the unit's GA and XT features and the CPU's CMPXCHG16B (Linux's condition for GA mode)
//! entries are 128 bits with a 32-bit destination (GAEn, XTEn), written in one atomic
//! 16-byte store; otherwise 32-bit entries with an 8-bit destination, and a destination
//! above 254 is refused with the reason.
//!
//! Indices: an IOAPIC input's index is its vector (the redirection entry's vector field is
//! the index, so the RTE also names the same vector and, up to APIC ID 254, the same CPU: an
//! IOAPIC whose requests bypass the unit, as QEMU 10.0's does, still delivers the route the
//! table holds). An MSI function gets index 0 of its own table, and its message carries
//! only that index (address destination 0, data = index), so nothing but the unit's
//! translation can deliver it. MSI-X table entry e of a function gets index e + 1 of the
//! same table (entries 0..=254), each with its own vector and destination. Every entry change is followed by INVALIDATE_INTERRUPT_TABLE
//! for the requester and a COMPLETION_WAIT the kernel polls; a new table by
//! INVALIDATE_DEVTAB_ENTRY. Every requester the IVRS lists gets its (empty) table before the
//! unit starts, so its fixed interrupts are blocked (RemapEn = 0) until a route exists.

use alloc::collections::BTreeMap;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use crate::sync::{IrqSafeGuard, IrqSafeMutex};
use keel_apic::ApicId;
use keel_iommu::amdvi::{self, reg};
use keel_iommu::amdvi_ir::{self, AmdIrte, AmdIrteError, IrteFormat};
use keel_iommu::irte::DestinationMode;

use super::registers::Registers;
use super::unit::{read_quad, write_quads};
use crate::mm::{frames, phys_to_virt};

/// How long one completion wait may take.
const COMPLETION_TIMEOUT_NS: u64 = 100_000_000;

/// Why a remapped route could not be set up.
#[derive(Clone, Copy, Debug)]
pub enum AmdRemapError {
    /// AMD-Vi remapping is not on.
    Inactive,
    /// The requester is outside the device table, or the IVRS names no id for the IOAPIC.
    NotCovered,
    /// The entry cannot be encoded (a legacy entry cannot name an APIC ID above 254).
    Entry(AmdIrteError),
    /// No memory for an interrupt table.
    NoMemory,
    /// The unit did not complete its invalidation.
    CompletionTimeout,
    /// The requester's table is full.
    NoIndex,
}

/// The state of the remapping unit, built by [`super::init`].
pub struct Remapper {
    pub(super) regs: Registers,
    pub(super) devtab_phys: u64,
    pub(super) devtab_entries: usize,
    pub(super) command_phys: u64,
    pub(super) store_phys: u64,
    /// Commands queued since the ring's start (the tail is `ring_offset(queued)`).
    pub(super) queued: usize,
    pub(super) format: IrteFormat,
    /// Interrupt tables by requester id.
    pub(super) tables: BTreeMap<u16, u64>,
    /// IVRS settings of the listed requesters (their INIT/NMI/... pass bits).
    pub(super) settings: BTreeMap<u16, u8>,
    /// Requester ids of the IOAPICs by MADT id.
    pub(super) ioapics: BTreeMap<u8, u16>,
    /// Next free index of each MSI requester's table, and the index each function uses.
    pub(super) msi_index: BTreeMap<u16, u16>,
    pub(super) entries_written: u64,
    /// INVALIDATE_INTERRUPT_TABLE commands the unit completed.
    pub(super) table_invalidations: u64,
    /// Completion waits the unit stored (each one's value is its sequence number).
    pub(super) waits: u64,
    pub(super) events: super::events::EventLog,
}

static REMAPPER: IrqSafeMutex<Option<Remapper>> = IrqSafeMutex::new(None);
/// 0: off; 1: legacy entries (8-bit destinations); 2: GA entries with XT.
static MODE: AtomicU8 = AtomicU8::new(0);
/// Routes refused because a legacy entry cannot name the destination.
pub static REFUSED_ABOVE_254: AtomicU64 = AtomicU64::new(0);

/// The destination mode of the tables, when AMD-Vi remapping is on.
pub fn mode() -> Option<DestinationMode> {
    match MODE.load(Ordering::Acquire) {
        1 => Some(DestinationMode::XApic),
        2 => Some(DestinationMode::X2Apic),
        _ => None,
    }
}

pub(super) fn install(r: Remapper) {
    let mode = if r.format == IrteFormat::Ga { 2 } else { 1 };
    *REMAPPER.lock() = Some(r);
    MODE.store(mode, Ordering::Release);
}

/// The remapper for the event-log interrupt, unless another CPU holds it.
pub(super) fn try_lock() -> Option<IrqSafeGuard<'static, Option<Remapper>>> {
    REMAPPER.try_lock()
}

pub(super) fn with<R>(f: impl FnOnce(&mut Remapper) -> R) -> Option<R> {
    REMAPPER.lock().as_mut().map(f)
}

/// Whether this CPU can update a 128-bit entry in one store (CPUID.1:ECX.CX16).
pub fn has_cmpxchg16b() -> bool {
    core::arch::x86_64::__cpuid(1).ecx & (1 << 13) != 0
}

/// Stores a 128-bit entry in one atomic write (`lock cmpxchg16b`), so the unit never reads
/// half of it.
///
/// # Safety
/// `p` is 16-byte aligned, in memory the remapper owns; the CPU has CMPXCHG16B.
unsafe fn store_entry128(p: *mut u64, new: [u64; 2]) {
    // SAFETY: as the caller guarantees.
    let (mut lo, mut hi) = unsafe { (p.read_volatile(), p.add(1).read_volatile()) };
    loop {
        let (seen_lo, seen_hi): (u64, u64);
        // SAFETY: `p` is a 16-byte-aligned entry the remapper owns; RBX (reserved by the
        // compiler) is swapped in and restored around the instruction.
        unsafe {
            core::arch::asm!(
                "xchg {new_lo}, rbx",
                "lock cmpxchg16b [{p}]",
                "mov rbx, {new_lo}",
                p = in(reg) p,
                new_lo = inout(reg) new[0] => _,
                in("rcx") new[1],
                inout("rax") lo => seen_lo,
                inout("rdx") hi => seen_hi,
                options(nostack),
            );
        }
        if (seen_lo, seen_hi) == (lo, hi) {
            break;
        }
        (lo, hi) = (seen_lo, seen_hi);
    }
}

impl Remapper {
    /// Queues `commands` and a COMPLETION_WAIT, then polls its store.
    fn run(&mut self, commands: &[[u64; 2]]) -> Result<(), AmdRemapError> {
        let sequence = self.waits + 1;
        let wait = amdvi::completion_wait(self.store_phys, sequence)
            .ok_or(AmdRemapError::CompletionTimeout)?;
        for c in commands.iter().chain([&wait]) {
            write_quads(self.command_phys + amdvi::ring_offset(self.queued), c);
            self.queued += 1;
        }
        self.regs.write64(reg::COMMAND_TAIL, amdvi::ring_offset(self.queued));
        let done = crate::time::spin_until(0, COMPLETION_TIMEOUT_NS, || {
            read_quad(self.store_phys) == sequence
        });
        if !done {
            return Err(AmdRemapError::CompletionTimeout);
        }
        self.waits = sequence;
        Ok(())
    }

    fn dte_phys(&self, device_id: u16) -> u64 {
        self.devtab_phys + device_id as u64 * amdvi::DTE_BYTES as u64
    }

    /// The requester's interrupt table, built and installed in its entry on first use.
    pub(super) fn table_for(&mut self, device_id: u16) -> Result<u64, AmdRemapError> {
        if let Some(t) = self.tables.get(&device_id) {
            return Ok(*t);
        }
        if device_id as usize >= self.devtab_entries {
            return Err(AmdRemapError::NotCovered);
        }
        let table = frames::allocate_zeroed().ok_or(AmdRemapError::NoMemory)?;
        let setting = self.settings.get(&device_id).copied().unwrap_or(0);
        let q2 = amdvi_ir::remap_interrupt_quad(table, setting).ok_or(AmdRemapError::NoMemory)?;
        let dte = self.dte_phys(device_id);
        if read_quad(dte) & amdvi::dte::VALID == 0 {
            // An entry the IVRS did not list: valid, DMA untranslated as for the listed ones.
            write_quads(dte, &amdvi::passthrough_dte()[..1]);
        }
        write_quads(dte + 16, &[q2]);
        self.tables.insert(device_id, table);
        self.run(&[amdvi::invalidate_devtab_entry(device_id)])?;
        Ok(table)
    }

    /// Writes entry `index` of `device_id`'s table and invalidates the unit's cached copy.
    fn write_entry(
        &mut self,
        device_id: u16,
        index: u16,
        irte: AmdIrte,
    ) -> Result<(), AmdRemapError> {
        if index as usize >= amdvi_ir::TABLE_ENTRIES {
            return Err(AmdRemapError::NoIndex);
        }
        let table = self.table_for(device_id)?;
        let at = table + index as u64 * self.format.entry_bytes() as u64;
        match self.format {
            IrteFormat::Ga => {
                let raw = irte.encode_ga().map_err(AmdRemapError::Entry)?;
                // SAFETY: `at` is a 16-byte-aligned entry of a table frame this remapper
                // allocated; GA mode is chosen only with CMPXCHG16B.
                unsafe { store_entry128(phys_to_virt(at).as_mut_ptr::<u64>(), raw) };
            }
            IrteFormat::Legacy => {
                let raw = irte.encode_legacy().map_err(|e| {
                    if let AmdIrteError::Unreachable(_) = e {
                        REFUSED_ABOVE_254.fetch_add(1, Ordering::Relaxed);
                    }
                    AmdRemapError::Entry(e)
                })?;
                // SAFETY: a 4-byte-aligned entry of a table frame this remapper allocated.
                unsafe { phys_to_virt(at).as_mut_ptr::<u32>().write_volatile(raw) };
            }
        }
        self.entries_written += 1;
        self.run(&[amdvi::invalidate_interrupt_table(device_id)])?;
        self.table_invalidations += 1;
        Ok(())
    }

    /// Entry `index` of `device_id`'s table as memory holds it now.
    pub(super) fn read_entry(
        &self,
        device_id: u16,
        index: u16,
    ) -> Option<Result<AmdIrte, AmdIrteError>> {
        let table = *self.tables.get(&device_id)?;
        if index as usize >= amdvi_ir::TABLE_ENTRIES {
            return None;
        }
        let at = table + index as u64 * self.format.entry_bytes() as u64;
        Some(match self.format {
            IrteFormat::Ga => AmdIrte::decode_ga([read_quad(at), read_quad(at + 8)]),
            // SAFETY: a 4-byte-aligned entry of a table frame this remapper allocated.
            IrteFormat::Legacy => {
                AmdIrte::decode_legacy(unsafe { phys_to_virt(at).as_ptr::<u32>().read_volatile() })
            }
        })
    }
}

/// Runs `commands` and a completion wait on the unit (the DMA domains' invalidations).
pub(super) fn run_commands(commands: &[[u64; 2]]) -> Result<(), AmdRemapError> {
    with(|r| r.run(commands)).unwrap_or(Err(AmdRemapError::Inactive))
}

/// Programs the entry of IOAPIC `ioapic_id`'s input routed to `vector` on `cpu`; returns the
/// index (the vector) the redirection entry must carry.
pub fn program_ioapic(ioapic_id: u8, vector: u8, cpu: ApicId) -> Result<u16, AmdRemapError> {
    with(|r| {
        let devid = *r.ioapics.get(&ioapic_id).ok_or(AmdRemapError::NotCovered)?;
        let index = vector as u16;
        r.write_entry(devid, index, AmdIrte { vector, destination: cpu.get() })?;
        Ok(index)
    })
    .unwrap_or(Err(AmdRemapError::Inactive))
}

/// Programs the entry of PCI function `bdf`'s MSI; returns the index its data must carry.
pub fn program_msi(bdf: u16, vector: u8, cpu: ApicId) -> Result<u16, AmdRemapError> {
    with(|r| {
        let index = *r.msi_index.entry(bdf).or_insert(0);
        r.write_entry(bdf, index, AmdIrte { vector, destination: cpu.get() })?;
        Ok(index)
    })
    .unwrap_or(Err(AmdRemapError::Inactive))
}

/// The index MSI-X table entry `entry` uses in its function's table: past the MSI's index
/// 0, so a function's MSI and MSI-X entries never share one.
pub fn msix_index(entry: u16) -> Option<u16> {
    let index = entry.checked_add(1)?;
    ((index as usize) < amdvi_ir::TABLE_ENTRIES).then_some(index)
}

/// Programs the entry of MSI-X table entry `entry` of PCI function `bdf`; returns the index
/// its data must carry ([`msix_index`]).
pub fn program_msix(bdf: u16, entry: u16, vector: u8, cpu: ApicId) -> Result<u16, AmdRemapError> {
    let index = msix_index(entry).ok_or(AmdRemapError::NoIndex)?;
    let irte = AmdIrte { vector, destination: cpu.get() };
    with(|r| r.write_entry(bdf, index, irte).map(|()| index))
        .unwrap_or(Err(AmdRemapError::Inactive))
}

/// The requester id of IOAPIC `ioapic_id`, when remapping is on.
pub fn ioapic_device(ioapic_id: u8) -> Option<u16> {
    with(|r| r.ioapics.get(&ioapic_id).copied()).flatten()
}

/// Entry `index` of `device_id`'s table, decoded from memory (`None` without a table).
pub fn entry(device_id: u16, index: u16) -> Option<Result<AmdIrte, AmdIrteError>> {
    with(|r| r.read_entry(device_id, index)).flatten()
}

/// The raw quadwords of entry `index` of `device_id`'s table (for the trace cross-check).
#[cfg(feature = "scenarios")]
pub fn raw_entry(device_id: u16, index: u16) -> Option<[u64; 2]> {
    with(|r| {
        let table = *r.tables.get(&device_id)?;
        let at = table + index as u64 * r.format.entry_bytes() as u64;
        Some(match r.format {
            IrteFormat::Ga => [read_quad(at), read_quad(at + 8)],
            // SAFETY: a 4-byte-aligned entry of a table frame this remapper allocated.
            IrteFormat::Legacy => {
                [unsafe { phys_to_virt(at).as_ptr::<u32>().read_volatile() } as u64, 0]
            }
        })
    })
    .flatten()
}

/// `iommu.amd.*` remapping evidence, read back from the control register, the device table
/// and the counters kept where the commands completed.
pub fn evidence() {
    with(|r| {
        let control = r.regs.control();
        let yes = |on: bool| if on { "yes" } else { "no" };
        ev!("iommu.amd.remap", if r.format == IrteFormat::Ga { "ga" } else { "legacy" });
        ev!("iommu.amd.ga_en", yes(control & amdvi_ir::control::GA_EN != 0));
        ev!("iommu.amd.xt_en", yes(control & amdvi_ir::control::XT_EN != 0));
        ev!("iommu.amd.entries_written", r.entries_written);
        ev!("iommu.amd.table_invalidations", r.table_invalidations);
        ev!("iommu.amd.completion_waits", r.waits);
        ev!("iommu.amd.tables", r.tables.len());
        ev!("iommu.amd.refused_above_254", REFUSED_ABOVE_254.load(Ordering::Relaxed));
        for (id, devid) in &r.ioapics {
            let f = amdvi_ir::InterruptFields::of(read_quad(r.dte_phys(*devid) + 16));
            ev!(
                ("iommu.amd.ioapic.{}.int_ctl", id),
                amdvi::IntCtl::of(read_quad(r.dte_phys(*devid) + 16)).name()
            );
            ev!(("iommu.amd.ioapic.{}.int_table_len", id), 1u32 << f.table_log2);
            let matches = r.tables.get(devid) == Some(&f.table_phys);
            ev!(("iommu.amd.ioapic.{}.int_table_matches", id), yes(f.valid && matches));
        }
        r.events.evidence(&r.regs);
    });
}
