//! Proofs of live interrupt affinity (`InterruptSetAffinity`): edu's MSI moved between CPUs
//! 0 and 1 fifty times while it raises, with VT-d remapping (the IRTE rewritten and the
//! interrupt entry cache invalidated) and without it (the MSI message rewritten, xAPIC).
//! Every count is read from the kernel's per-source counters and the route from the IRTE or
//! the function's MSI registers.

use super::{user_proof, xapic_cpu, Proof};
use crate::checks::{custom, eq, ge, keys_equal};
use crate::trace::{ev_str, ev_u64};

/// Interrupts and moves in `manifests/irq-affinity-move.manifest`.
const RAISES: u64 = 400;
const MOVES: u64 = 50;
/// `-device intel-iommu` with interrupt remapping in extended interrupt mode.
const IOMMU: &[&str] = &["-device", "intel-iommu,intremap=on,eim=on"];

/// What both proofs show: every raise taken once, the moves all made, deliveries on both
/// CPUs adding up, no delivery on a vector nobody owned, every retired vector accounted
/// for, and the source owning the vector it ends on (after an even count of moves: CPU 0).
fn moved_and_delivered(p: Proof) -> Proof {
    p.check(eq("user.edu_move.raised", RAISES))
        .check(keys_equal("user.edu_move.received", "user.edu_move.raised"))
        .check(eq("user.edu_move.moves", MOVES))
        .check(eq("user.edu_move.moves_refused", 0))
        // Hostile targets refused, nothing moved for them (the kernel counted 50).
        .check(eq("user.edu_move.move_to_absent_cpu", "bad_argument"))
        .check(eq("user.edu_move.move_to_u64_max", "bad_argument"))
        .check(eq("irq.msi_edu.deliveries", RAISES))
        .check(eq("irq.msi_edu.acknowledgements", RAISES + 1))
        .check(eq("irq.msi_edu.moves", MOVES))
        .check(custom("deliveries_cpu.0 + deliveries_cpu.1 == deliveries, each > 0", |t| {
            let on0 = ev_u64(t, "irq.msi_edu.deliveries_cpu.0")?;
            let on1 = ev_u64(t, "irq.msi_edu.deliveries_cpu.1")?;
            let all = ev_u64(t, "irq.msi_edu.deliveries")?;
            if on0 + on1 == all && on0 > 0 && on1 > 0 {
                Ok(())
            } else {
                Err(format!("cpu0 {on0} + cpu1 {on1} vs {all} deliveries"))
            }
        }))
        .check(eq("vectors.unowned_deliveries", 0))
        .check(custom("retired vectors: released + reclaimed + pending == moves", |t| {
            let released = ev_u64(t, "vectors.retired_released")?;
            let reclaimed = ev_u64(t, "vectors.retired_reclaimed")?;
            let pending = ev_u64(t, "vectors.retired_pending")?;
            if released + reclaimed + pending == MOVES && released > 0 {
                Ok(())
            } else {
                Err(format!("released {released} reclaimed {reclaimed} pending {pending}"))
            }
        }))
        .check(eq("irq.msi_edu.cpu", 0))
        .check(eq("irq.msi_edu.owner_in_matrix", "yes"))
}

fn remapped() -> Proof {
    let p = user_proof(
        Proof::new(
            "irq-affinity-move",
            "edu's MSI moved 50 times between CPUs while raising, via VT-d (IRTE + IEC), x2APIC",
        ),
        "irq-affinity-move",
        &["edu-driver"],
    )
    .machine("q35,kernel-irqchip=split")
    .qemu_extra(IOMMU);
    moved_and_delivered(p)
        .check(eq("iommu.remapping", "on"))
        .check(eq("iommu.mode", "x2apic"))
        .check(eq("iommu.faults", 0))
        .check(eq("irq.msi_edu.format", "remappable"))
        // The route read back from the IRTE: the CPU the kernel says, its vector.
        .check(keys_equal("irq.msi_edu.irte_destination", "irq.msi_edu.target_apic_id"))
        .check(keys_equal("irq.msi_edu.irte_vector", "irq.msi_edu.vector"))
        // One entry write per move at least, each followed by an IEC invalidation the unit
        // counted (its queue's wait descriptor completed).
        .check(ge("iommu.entries_written", MOVES))
        // What the emulated unit saw: an IEC invalidation for every move at least, and the
        // edu handle's remaps went to both CPUs (APIC IDs 0 and 1), no other.
        .trace(&["vtd_inv_desc_iec", "vtd_ir_remap"])
        .trace_check("vtd_inv_desc_iec events > irq.msi_edu.moves", |t, tr| {
            let moves = ev_u64(t, "irq.msi_edu.moves")?;
            let traced = tr.count("vtd_inv_desc_iec", &[]) as u64;
            if traced > moves {
                Ok(())
            } else {
                Err(format!("{traced} IEC invalidations traced for {moves} moves"))
            }
        })
        .trace_check("vtd_ir_remap of the edu handle: to APIC IDs 0 and 1 only, both", |t, tr| {
            let index = ev_str(t, "irq.msi_edu.remap_index")?;
            let want = [("index", index.as_str())];
            let dests: Vec<&str> =
                tr.matching("vtd_ir_remap", &want).filter_map(|e| e.field("dest")).collect();
            let is = |d: &str, n: u64| keel_evidence::parse_u64(d) == Some(n);
            let (to0, to1) = (dests.iter().any(|d| is(d, 0)), dests.iter().any(|d| is(d, 1)));
            if to0 && to1 && dests.iter().all(|d| is(d, 0) || is(d, 1)) {
                Ok(())
            } else {
                Err(format!("remaps of index {index} went to {dests:?}"))
            }
        })
        .check(custom("iommu.unit.0.invalidations >= iommu.entries_written", |t| {
            let inv = ev_u64(t, "iommu.unit.0.invalidations")?;
            let written = ev_u64(t, "iommu.entries_written")?;
            if inv >= written {
                Ok(())
            } else {
                Err(format!("{inv} invalidations for {written} entries written"))
            }
        }))
}

fn compatibility() -> Proof {
    let p = user_proof(
        Proof::new(
            "irq-affinity-move-xapic",
            "the same without an IOMMU, xAPIC: the MSI message rewritten in place",
        ),
        "irq-affinity-move",
        &["edu-driver"],
    )
    .cpu(xapic_cpu());
    moved_and_delivered(p)
        .check(eq("irq.msi_edu.format", "compatibility"))
        // The route read back from the function's MSI address and data.
        .check(keys_equal("irq.msi_edu.msi_destination", "irq.msi_edu.target_apic_id"))
        .check(keys_equal("irq.msi_edu.msi_vector", "irq.msi_edu.vector"))
}

pub fn proofs() -> Vec<Proof> {
    vec![remapped(), compatibility()]
}
