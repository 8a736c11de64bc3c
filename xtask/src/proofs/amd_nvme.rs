//! The NVMe driver with one queue pair per CPU on EPYC-Rome with QEMU's `amd-iommu`
//! remapping interrupts and translating DMA (TCG): each MSI-X entry gets its own entry in
//! the function's AMD-Vi interrupt table (index = table entry + 1, past the MSI's index 0),
//! and its message carries only that index (address destination 0), so nothing but the
//! unit's translation can deliver it to the queue's CPU.

use super::amd::{remap_words, AMD_IOMMU_NO_XT, AMD_IOMMU_XT};
use super::nvme::{controller, driver_checks, queues_on_their_cpus};
use super::user::user_proof;
use super::{Accels, Proof};
use crate::checks::{eq, keys_equal};
use crate::qemu::CpuSpec;
use crate::trace::{ev_u64, Trace};

/// The unit's trace events the cross-check reads.
const TRACE: &[&str] = &["amdvi_ir_remap_msi", "amdvi_ir_err", "amdvi_ir_target_abort"];

/// Queues (and CPUs) of the machine: `manifests/nvme-msix-8.manifest`.
const QUEUES: u64 = 8;

pub fn proofs() -> Vec<Proof> {
    vec![
        amd_nvme(
            "amd-nvme-msix",
            "one NVMe queue pair per CPU on 8 EPYC-Rome CPUs, each MSI-X entry through its own AMD-Vi entry (GA, XT), DMA through AMD-Vi",
            true,
        ),
        amd_nvme(
            "amd-nvme-msix-xapic",
            "amd-nvme-msix in xAPIC mode with legacy AMD-Vi entries (no XT)",
            false,
        ),
    ]
}

fn amd_nvme(name: &'static str, description: &'static str, x2apic: bool) -> Proof {
    let (unit, cpu, remap) = if x2apic {
        (AMD_IOMMU_XT, "+x2apic", "ga")
    } else {
        (AMD_IOMMU_NO_XT, "-x2apic", "legacy")
    };
    // The unit first, so that it is 00:03.0 as on the other AMD machines.
    let p =
        user_proof(Proof::new(name, description).qemu_extra(unit), "nvme-msix-8", &["nvme-driver"])
            .smp(QUEUES as u32)
            .cpu(CpuSpec::new("EPYC-Rome", &[cpu]))
            .accels(Accels::TcgOnly);
    let p = driver_checks(controller(p), 1, QUEUES)
        .check(eq("iommu.amd.remap", remap))
        .check(eq("iommu.amd.dma.entries_translated", 0))
        .check(eq("user.nvme.io_queues.asked", QUEUES))
        .check(eq("user.nvme.io_queues.controller_granted", 64));
    queues_on_their_cpus(p, QUEUES, amdvi_entry).trace(TRACE).trace_check(
        "amdvi: no remapping error; every message the unit remapped came from a queue's entry (index q + 1 to its vector and CPU), at least as many per queue as the kernel counted deliveries",
        remapped_per_queue,
    )
}

/// QEMU's `amdvi_ir_remap_msi` lines against the entries the kernel reported.
fn remapped_per_queue(t: &keel_evidence::Transcript, tr: &Trace) -> Result<(), String> {
    let errors: Vec<&str> = tr
        .matching("amdvi_ir_err", &[])
        .chain(tr.matching("amdvi_ir_target_abort", &[]))
        .map(|e| e.raw.as_str())
        .collect();
    if !errors.is_empty() {
        return Err(format!("remapping errors traced: {errors:?}"));
    }
    let mut remapped = [0u64; QUEUES as usize];
    for e in tr.matching("amdvi_ir_remap_msi", &[]) {
        let [_, data, to_addr, to_data] =
            remap_words(&e.raw).ok_or_else(|| format!("unparsed: {}", e.raw))?;
        // The 32-bit destination: bits 7:0 in address bits 19:12, the rest in the high
        // address dword (QEMU's extended-destination MSI).
        let to_dest = ((to_addr >> 32) & !0xFF) | ((to_addr >> 12) & 0xFF);
        // Index q + 1 is queue q's (MSI-X entry q).
        let index = data & 0x7FF;
        let k = |s: &str| format!("irq.msix_nvme_{}.{s}", index.wrapping_sub(1));
        let known = (2..=QUEUES + 1).contains(&index)
            && ev_u64(t, &k("irte_vector"))? == to_data & 0xFF
            && ev_u64(t, &k("irte_destination"))? == to_dest;
        if !known {
            return Err(format!("remapped from no queue's entry: {}", e.raw));
        }
        remapped[index as usize - 2] += 1;
    }
    for (i, seen) in remapped.iter().enumerate() {
        let delivered = ev_u64(t, &format!("irq.msix_nvme_{}.deliveries", i + 1))?;
        if *seen < delivered || *seen == 0 {
            return Err(format!(
                "queue {}: {seen} messages remapped, {delivered} delivered",
                i + 1
            ));
        }
    }
    Ok(())
}

/// Entry q's message names index q + 1 of the function's own table (data bits 10:0, the
/// address naming no CPU); that entry, read back from table memory, holds the queue's CPU
/// and vector.
fn amdvi_entry(p: Proof, q: u64) -> Proof {
    let k =
        |s: &str| -> &'static str { Box::leak(format!("irq.msix_nvme_{q}.{s}").into_boxed_str()) };
    p.check(eq(k("format"), "amdvi"))
        .check(keys_equal(k("irte_devid"), k("requester_id")))
        .check(eq(k("remap_index"), q + 1))
        .check(eq(k("msix_address"), "0xfee00000"))
}
