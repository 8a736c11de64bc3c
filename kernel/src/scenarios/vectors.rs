//! `vector_fill=<cpu>`: before the programs start, every free vector of that CPU's space is
//! taken (through the kernel's own allocator), so the grants that ask for it must be placed
//! on another CPU; after the programs, the vectors are given back through the same release
//! path a moving source uses. Evidence is read from the matrix: what the CPU had left once
//! full, and what every CPU holds at the end.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use keel_boot::cmdline::CommandLine;
use keel_vectors::Owner;

use crate::object::interrupt;
use crate::object::msix::MsixFunction;
use fw::arch::x86_64::{percpu, vector_space};

/// Owner handles of the filler's vectors: far above any interrupt source's.
const FILLER_OWNER_BASE: u32 = 0x8000_0000;

/// The vectors the filler holds on one CPU.
pub struct Fill {
    cpu: u32,
    taken: Vec<u8>,
}

/// Takes every free vector of the CPU `vector_fill=` names (none without the option).
pub fn fill(cmdline: &CommandLine) -> Option<Fill> {
    cmdline.get("vector_fill")?;
    let cpu = super::support::option_u64(cmdline, "vector_fill", 0) as u32;
    let mut taken = Vec::new();
    // No fallback CPUs: the allocation fails once `cpu` is full instead of moving on.
    while let Ok(placed) =
        vector_space::allocate(cpu, &[], Owner(FILLER_OWNER_BASE + taken.len() as u32))
    {
        taken.push(placed.vector);
    }
    ev!("vectors.fill.cpu", cpu);
    ev!("vectors.fill.taken", taken.len());
    ev!("vectors.fill.available_after", vector_space::available_on(cpu).unwrap_or(u32::MAX));
    Some(Fill { cpu, taken })
}

/// Gives the filler's vectors back; evidence of how many releases the matrix accepted.
pub fn release(fill: Option<Fill>) {
    let Some(fill) = fill else { return };
    let released = fill.taken.iter().filter(|&&v| vector_space::release(fill.cpu, v).is_ok());
    ev!("vectors.fill.released", released.count());
}

/// Per online CPU: per-CPU vectors allocated and still free, read from the matrix; then the
/// placement and dispatch counters.
pub fn evidence() {
    // No matrix yet (no source was granted): nothing to read, no per-CPU lines.
    for cpu in percpu::online() {
        if let Some(allocated) = vector_space::allocated_on(cpu.index) {
            ev!(("vectors.cpu.{}.allocated", cpu.index), allocated);
        }
        if let Some(available) = vector_space::available_on(cpu.index) {
            ev!(("vectors.cpu.{}.available", cpu.index), available);
        }
    }
    ev!("vectors.placed_elsewhere", interrupt::PLACED_ELSEWHERE.load(Ordering::Relaxed));
    let unowned = vector_space::UNOWNED_DELIVERIES.load(Ordering::Relaxed);
    ev!("vectors.unowned_deliveries", unowned);
    // Old vectors of moved sources: released by their CPU, drain passes that found one
    // still accepted there (IRR/ISR), taken back by their owner, still waiting.
    ev!("vectors.retired_released", vector_space::RETIRED_RELEASED.load(Ordering::Relaxed));
    let still = vector_space::RETIRED_STILL_ACCEPTED.load(Ordering::Relaxed);
    ev!("vectors.retired_still_accepted", still);
    ev!("vectors.retired_reclaimed", vector_space::RECLAIMED.load(Ordering::Relaxed));
    ev!("vectors.retired_pending", vector_space::retired_pending());
    let withheld = crate::object::device_memory::WITHHELD_PAGES.load(Ordering::Relaxed);
    ev!("devmem.msix_pages_withheld", withheld);
}

/// An MSI-X source: the setup order and the entry as the function's table holds them now,
/// and the mask operations whose effect was read back from the table.
pub fn msix_evidence(
    prefix: &str,
    irq: &interrupt::InterruptObject,
    function: &MsixFunction,
    entry: u16,
) {
    let yes = |b: bool| if b { "yes" } else { "no" };
    ev!(("{}.msix_table_size", prefix), function.msix.vectors());
    ev!(("{}.msix_setup_function_masked", prefix), yes(function.setup_control.function_masked()));
    ev!(("{}.msix_setup_enabled", prefix), yes(function.setup_control.enabled()));
    ev!(("{}.msix_setup_masked_entries", prefix), function.setup_masked_entries);
    ev!(("{}.msix_enabled_and_open", prefix), yes(function.enabled_and_open()));
    let e = function.entry(entry);
    ev!(("{}.msix_address", prefix), format_args!("{:#x}", e.address));
    ev!(("{}.msix_data", prefix), format_args!("{:#x}", e.data));
    ev!(("{}.requester_id", prefix), format_args!("{:#x}", function.device.addr.bdf()));
    // AMD-Vi: data bits 10:0 index the function's own table; VT-d: a remappable-format
    // address names the entry's IRTE. Either is read back from table memory.
    if fw::arch::x86_64::amdvi::mode().is_some() {
        let bdf = function.device.addr.bdf();
        super::route_evidence::amdvi_evidence(prefix, bdf, (e.data & 0x7FF) as u16);
    } else {
        vtd_or_compatibility(prefix, e.address as u32);
    }
    ev!(("{}.msix_pending", prefix), yes(function.pending(entry)));
    ev!(("{}.masks_read_back", prefix), irq.masks_read_back.load(Ordering::Relaxed));
    ev!(("{}.unmasks_read_back", prefix), irq.unmasks_read_back.load(Ordering::Relaxed));
}

/// `<prefix>.format` of an MSI-X address without AMD-Vi, and the IRTE a remappable one names.
fn vtd_or_compatibility(prefix: &str, address: u32) {
    match keel_iommu::RemappableMsi::decode(address) {
        Some(msi) => {
            ev!(("{}.format", prefix), "remappable");
            super::route_evidence::irte_evidence(prefix, msi.handle);
        }
        None => ev!(("{}.format", prefix), "compatibility"),
    }
}

/// Maps and sets up the MSI-X function of every device a `msix(...)` grant names, before
/// the frame baseline: the kernel mapping of the table is kept for good.
pub fn map_msix_tables(manifest: &keel_manifest::Manifest) {
    use keel_manifest::{Grant, InterruptSource};
    for program in &manifest.programs {
        for g in &program.grants {
            if let Grant::Interrupt(InterruptSource::Msix(name, _), _) = g {
                let found = crate::task::loader::resolve_device(manifest, name);
                if let Err(e) = found.map(crate::object::msix::function) {
                    log::warn!("vectors: MSI-X of {name}: {e:?}");
                }
            }
        }
    }
}
