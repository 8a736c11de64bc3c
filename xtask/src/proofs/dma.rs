//! Proofs of VT-d DMA remapping, default deny: a driver aims edu's DMA engine at an IOVA no
//! domain maps and at a page of the kernel image; every request faults (the kernel's fault
//! records and QEMU's `vtd_dmar_fault` trace agree) and the kernel page's checksum is the
//! same after as before. Once the driver exited, bus mastering is off: a program holding
//! only the BAR starts a transfer that the unit never sees (no further fault). Both LAPIC
//! modes, and a unit in caching mode. A driver that dies with a device write in flight has
//! its domain revoked before its frames are freed: the write faults, the freed frame never
//! holds the pattern (`dma-death*`).

use super::{user_proof, xapic_cpu, Proof};
use crate::checks::{eq, ge, keys_equal};
use crate::trace::{ev_u64, Trace};

/// The unit's trace events these proofs read.
const DMAR_TRACE: &[&str] = &["vtd_dmar_enable", "vtd_reg_dmar_root", "vtd_dmar_fault"];
/// The kernel page `manifests/dma-attack.manifest` aims at (its `target=`).
const WATCHED_PAGE: &str = "dma_watch=0x101000";
/// The IOVA the manifest writes first (its `iova=`).
const UNMAPPED_IOVA: u64 = 0x800_0000;
/// Transfers the driver starts: a write and a read of the kernel page, a write to the IOVA.
const ATTEMPTS: u64 = 3;

fn hex_or_dec(v: &str) -> Option<u64> {
    keel_evidence::parse_u64(v)
}

pub fn proofs() -> Vec<Proof> {
    vec![
        dma_attack("dma-deny", "x2APIC", "intel-iommu,intremap=on,eim=on", false),
        dma_attack("dma-deny-xapic", "xAPIC", "intel-iommu,intremap=on,eim=on", false)
            .cpu(xapic_cpu()),
        dma_attack(
            "dma-deny-caching-mode",
            "x2APIC, caching mode",
            "intel-iommu,intremap=on,eim=on,caching-mode=on",
            true,
        ),
        roundtrip("dma-roundtrip", "x2APIC", "intel-iommu,intremap=on,eim=on", false),
        roundtrip("dma-roundtrip-xapic", "xAPIC", "intel-iommu,intremap=on,eim=on", false)
            .cpu(xapic_cpu()),
        roundtrip(
            "dma-roundtrip-caching-mode",
            "x2APIC, caching mode",
            "intel-iommu,intremap=on,eim=on,caching-mode=on",
            true,
        ),
        death("dma-death", "x2APIC, the driver exits", "dma-death", 0),
        death("dma-death-xapic", "xAPIC, the driver page-faults", "dma-death-fault", 0xffff_000e)
            .cpu(xapic_cpu()),
        death(
            "dma-death-bus-master",
            "x2APIC, the driver's Interrupt released",
            "dma-death-bus-master",
            0,
        ),
        bench(true),
        bench(false),
    ]
}

/// Round trips the kernel times (`dma_bench=`), and map/unmap pairs the driver times.
const BENCH_ROUNDS: u64 = 16;
const BENCH_MAPS: u64 = 64;

/// The kernel's [`BENCH_ROUNDS`] edu round trips (either unit, or none), each copy checked.
pub(super) fn bench_rounds(p: Proof, translated: bool) -> Proof {
    p.args(Box::leak(format!("dma_bench={BENCH_ROUNDS}").into_boxed_str()))
        .bench()
        .check(eq("bench.dma.translation", if translated { "on" } else { "off" }))
        .check(eq("bench.dma.rounds", BENCH_ROUNDS))
        .check(eq("bench.dma.rounds_copied", BENCH_ROUNDS))
        .check(eq("proc.edu_bench.exit", 0))
}

/// The driver's [`BENCH_MAPS`] timed `DeviceMemoryDmaMap`/`DmaUnmap` pairs, its domain gone
/// at the end (either unit).
pub(super) fn bench_map_checks(p: Proof) -> Proof {
    p.check(eq("iommu.dma.domains_live", 0))
        .check(eq("user.edu_bench.dma_map", "ok"))
        .check(eq("user.edu_bench.dma_samples", BENCH_MAPS))
}

/// `cargo xtask bench --filter dma`: edu round trips with translation on (through IOVAs)
/// and off (by physical address, no IOMMU) on the same machine otherwise; with the IOMMU,
/// the cost of `DeviceMemoryDmaMap`/`DmaUnmap` measured in the driver. Every round's copy
/// is checked in the destination frame.
fn bench(translated: bool) -> Proof {
    let (name, manifest, description) = if translated {
        (
            "bench-dma-translated",
            "dma-bench",
            "edu DMA round trips through IOVAs (VT-d on); DmaMap/DmaUnmap cost",
        )
    } else {
        (
            "bench-dma-untranslated",
            "dma-bench-unprotected",
            "edu DMA round trips by physical address (no IOMMU, dma = \"unprotected\")",
        )
    };
    let p = user_proof(Proof::new(name, description), manifest, &["edu-driver"])
        .machine("q35,kernel-irqchip=split");
    let p = bench_rounds(p, translated);
    if translated {
        let p = p
            .qemu_extra(&["-device", "intel-iommu,intremap=on,eim=on"])
            .check(eq("iommu.dma_faults", 0));
        bench_map_checks(p)
    } else {
        p.check(eq("user.edu_bench.dma_map", "denied"))
    }
}

/// The pattern seed of `manifests/dma-death*.manifest` (the driver's `seed=`).
const DEATH_SEED: &str = "dma_death_seed=0xd1e";

/// A driver dies with edu's 4-KiB write of a pattern into its one DMA page in flight. The
/// revocation (context cleared, caches invalidated) precedes the free of the frame, which,
/// read back after the transfer's 100 ms, holds none of the pattern. `edu-hold` keeps bus
/// mastering on (`dma-death`, `-xapic`): the write faults at the IOVA (kernel record and
/// QEMU trace agree). Without it (`dma-death-bus-master`) the driver's own `Interrupt`
/// release turned bus mastering off: the write never reaches the unit.
fn death(name: &'static str, how: &'static str, manifest: &'static str, exit: u64) -> Proof {
    let bus_master_kept = manifest != "dma-death-bus-master";
    let description: &'static str = Box::leak(
        format!("DMA in flight at driver death never lands in the freed frame ({how})")
            .into_boxed_str(),
    );
    let p = user_proof(Proof::new(name, description), manifest, &["edu-driver"])
        .machine("q35,kernel-irqchip=split")
        .qemu_extra(&["-device", "intel-iommu,intremap=on,eim=on"])
        .args(DEATH_SEED)
        .check(eq("iommu.dma", "on"))
        .check(eq("proc.edu_death.exit", exit))
        .check(eq("user.edu_death.in_flight_at_death", "yes"))
        .check(eq("iommu.dma.maps", 1))
        .check(eq("iommu.dma.detaches", 1))
        .check(eq("iommu.dma.domains_live", 0))
        .check(eq("iommu.dma.present_contexts", 0))
        .check(eq("iommu.dma.present_roots", 0));
    let p = death_frame_checks(p)
        .check(eq("iommu.dma_fault_overflows", 0))
        .check(eq("iommu.faults", 0))
        .trace(DMAR_TRACE);
    if !bus_master_kept {
        // Bus mastering off (read from the command register): the unit saw nothing.
        return p
            .check(eq("irq.msi_edu.bus_master_at_end", "no"))
            .check(eq("iommu.dma_faults", 0))
            .trace_check("no vtd_dmar_fault: the write never left the device", |_, tr| {
                match tr.matching("vtd_dmar_fault", &[]).count() {
                    0 => Ok(()),
                    n => Err(format!("{n} vtd_dmar_fault events")),
                }
            });
    }
    // The in-flight write, and nothing else, faulted: at the dead driver's IOVA.
    p.check(eq("proc.edu_hold.exit", 0))
        .check(eq("iommu.dma_faults", 1))
        .check(keys_equal("iommu.dma_fault.last.address", "user.edu_death.death_iova"))
        .check(keys_equal("iommu.dma_fault.last.source_id", "dma.edu_source_id"))
        .check(eq("iommu.dma_fault.last.write", "yes"))
        .trace_check(
            "vtd_dmar_fault: the in-flight write, from edu, at the dead driver's IOVA",
            death_fault_traced,
        )
}

/// A traced fault: (source id, IOVA page, "1" for a write).
type TracedFault<'a> = (Option<u64>, Option<u64>, Option<&'a str>);

/// QEMU's `vtd_dmar_fault` events, consecutive ones of one source, page and direction
/// counted once (one transfer's accesses to one page, see [`faults_agree`]).
fn traced_transfers(tr: &Trace) -> Vec<TracedFault<'_>> {
    let mut transfers: Vec<TracedFault<'_>> = Vec::new();
    for e in tr.matching("vtd_dmar_fault", &[]) {
        let fault = (
            e.field("sid").and_then(hex_or_dec),
            e.field("addr").and_then(hex_or_dec).map(|a| a & !0xFFF),
            e.field("write"),
        );
        if transfers.last() != Some(&fault) {
            transfers.push(fault);
        }
    }
    transfers
}

/// Revocation before the free, read from the allocator when it unpinned the frame; the
/// frame freed by the end and free of the pattern, read from the frame (either unit).
pub(super) fn death_frame_checks(p: Proof) -> Proof {
    p.check(eq("dma.death.mapped_frames", 1))
        .check(eq("dma.death.revoked_before_free", 1))
        .check(eq("dma.death.frames_free", 1))
        .check(eq("dma.death.pattern_words", 0))
}

/// QEMU traced faults of exactly one transfer: a write from edu to the IOVA page the kernel
/// recorded (one transfer's accesses to one page count once, see [`faults_agree`]).
fn death_fault_traced(t: &keel_evidence::Transcript, tr: &Trace) -> Result<(), String> {
    let sid = ev_u64(t, "dma.edu_source_id")?;
    let iova = ev_u64(t, "user.edu_death.death_iova")?;
    let transfers = traced_transfers(tr);
    match transfers.as_slice() {
        [(Some(s), Some(a), Some("1"))] if *s == sid && *a == iova => Ok(()),
        other => Err(format!("traced faults {other:?}, want one write from {sid:#x} at {iova:#x}")),
    }
}

/// Per `dma-roundtrip` driver, what it saw of its transfers on either unit: the IOVA in its
/// window, the copy, the read-only page and the stale DMA not landing, the pinned unmap.
pub(super) fn roundtrip_driver_checks(p: Proof, key: &'static str) -> Proof {
    let k = |s: &str| -> &'static str { Box::leak(format!("user.{key}.{s}").into_boxed_str()) };
    p.check(eq(k("iova_in_window"), "yes"))
        .check(eq(k("roundtrip"), "ok"))
        .check(eq(k("readonly_respected"), "yes"))
        .check(eq(k("pinned_unmap"), "busy"))
        .check(eq(k("stale_dma_landed"), "no"))
        .check(eq(k("unmap_after"), "ok"))
}

/// Per `dma-roundtrip` driver on VT-d, what it must have seen.
fn driver_checks(p: Proof, key: &'static str) -> Proof {
    let k = |s: &str| -> &'static str { Box::leak(format!("user.{key}.{s}").into_boxed_str()) };
    roundtrip_driver_checks(p, key)
        // Delivered to the driver by `DeviceMemoryDmaFaults`: the write after its unmap,
        // not the other driver's.
        .check(eq(k("own_faults"), 1))
        .check(eq(k("own_fault_reason"), "0x5"))
        .check(eq(k("own_fault_write"), "yes"))
}

/// Two edu drivers in turn map their own pages for DMA and copy a pattern through the
/// device by IOVA; a device write to a read-only mapping and a DMA after `DmaUnmap` fault;
/// the first exits with a page still mapped and the kernel revokes its domain, the second
/// gets the device anew.
fn roundtrip(
    name: &'static str,
    how: &'static str,
    device: &'static str,
    caching_mode: bool,
) -> Proof {
    let description: &'static str = Box::leak(
        format!(
            "edu DMA round trips through IOVAs, pinning, unmap and revocation under VT-d ({how})"
        )
        .into_boxed_str(),
    );
    let p = user_proof(Proof::new(name, description), "dma-roundtrip", &["edu-driver"])
        .machine("q35,kernel-irqchip=split")
        .qemu_extra(&["-device", device]);
    let p = driver_checks(driver_checks(p, "edu_rt"), "edu_rt2");
    p.check(eq("iommu.dma", "on"))
        .check(eq("iommu.unit.0.caching_mode", if caching_mode { "yes" } else { "no" }))
        .check(eq("proc.edu_rt.exit", 0))
        .check(eq("proc.edu_rt2.exit", 0))
        // Two maps and one unmap per driver; each exit revoked a domain.
        .check(eq("iommu.dma.maps", 4))
        .check(eq("iommu.dma.unmaps", 2))
        .check(eq("iommu.dma.detaches", 2))
        .check(eq("iommu.dma.domains_live", 0))
        .check(eq("iommu.dma.present_contexts", 0))
        .check(eq("iommu.dma.pinned_refusals", 2))
        // Per driver: the write after the unmap. (The write to the read-only page is
        // blocked without a record on QEMU: it hits the IOTLB entry the read before it
        // cached, and QEMU checks permissions on an IOTLB hit without reporting a fault.)
        .check(eq("iommu.dma_faults", 2))
        .check(eq("iommu.dma_fault.last.reason", "0x5"))
        .check(eq("iommu.dma_fault.last.write", "yes"))
        .check(eq("iommu.dma.present_roots", 0))
        .check(eq("iommu.dma_fault_overflows", 0))
        .check(eq("iommu.faults", 0))
}

/// `dma-attack` on either unit: the driver ended its [`ATTEMPTS`] transfers and exited; its
/// exit released its Interrupt: bus mastering off (read from the command register), so the
/// BAR-only program's one transfer never reached the unit.
pub(super) fn attack_program_checks(p: Proof) -> Proof {
    p.check(eq("proc.edu_dma.exit", 0))
        .check(eq("user.edu_dma.dma_ended", ATTEMPTS))
        .check(eq("irq.msi_edu.bus_master_at_end", "no"))
        .check(eq("proc.edu_bar_only.exit", 0))
        .check(eq("user.edu_bar_only.dma_ended", 1))
}

fn dma_attack(
    name: &'static str,
    how: &'static str,
    device: &'static str,
    caching_mode: bool,
) -> Proof {
    let description: &'static str = Box::leak(
        format!("edu's DMA at an unmapped IOVA and at kernel memory faults under VT-d ({how})")
            .into_boxed_str(),
    );
    let p = user_proof(Proof::new(name, description), "dma-attack", &["edu-driver"])
        .machine("q35,kernel-irqchip=split")
        .qemu_extra(&["-device", device])
        .args(WATCHED_PAGE);
    let p = p
        .check(eq("iommu.remapping", "on"))
        .check(eq("iommu.dma", "on"))
        .check(eq("iommu.unit.0.te", "yes"))
        .check(keys_equal("iommu.unit.0.rtaddr", "iommu.dma.root_phys"))
        .check(eq("iommu.dma.present_roots", 0))
        .check(eq("iommu.unit.0.caching_mode", if caching_mode { "yes" } else { "no" }));
    attack_program_checks(p)
        // Each driver reads back the faults its own device caused (`DeviceMemoryDmaFaults`):
        // all three for the attacker, with the last record's page, reason and direction;
        // none for the BAR-only program, which held the device only after the attacker.
        .check(eq("user.edu_dma.own_faults", ATTEMPTS))
        .check(keys_equal("user.edu_dma.own_fault_page", "iommu.dma_fault.last.address"))
        .check(eq("user.edu_dma.own_fault_reason", "0x1"))
        .check(eq("user.edu_dma.own_fault_write", "yes"))
        .check(eq("user.edu_bar_only.own_faults", 0))
        .check(eq("iommu.dma_faults", ATTEMPTS))
        .check(eq("iommu.dma_fault_overflows", 0))
        // The faults raised the fault-event interrupt (counted in its handler).
        .check(eq("iommu.unit.0.fault_events", "on"))
        .check(ge("iommu.fault_interrupts", 1))
        .check(eq("iommu.faults", 0))
        .check(eq("iommu.dma_fault.last.reason", "0x1"))
        .check(eq("iommu.dma_fault.last.write", "yes"))
        .check(eq("iommu.dma_fault.last.address", "0x8000000"))
        .check(keys_equal("iommu.dma_fault.last.source_id", "dma.edu_source_id"))
        .check(eq("dma.watch.in_kernel_image", "yes"))
        .check(eq("dma.watch.unchanged", "yes"))
        .trace(DMAR_TRACE)
        .trace_check("vtd_dmar_enable 1 and the root table the kernel reports", dmar_enabled)
        .trace_check(
            "vtd_dmar_fault: one per attempt, from edu, at the kernel page then the IOVA",
            faults_agree,
        )
}

fn dmar_enabled(t: &keel_evidence::Transcript, tr: &Trace) -> Result<(), String> {
    let states = tr.values("vtd_dmar_enable", "enable");
    if states.last() != Some(&"1") {
        return Err(format!("vtd_dmar_enable states {states:?}"));
    }
    let root = ev_u64(t, "iommu.dma.root_phys")?;
    let traced: Vec<Option<u64>> = tr
        .matching("vtd_reg_dmar_root", &[])
        .map(|e| e.field("addr").and_then(hex_or_dec))
        .collect();
    if traced.last() == Some(&Some(root)) {
        Ok(())
    } else {
        Err(format!("traced roots {traced:?}, kernel says {root:#x}"))
    }
}

/// Every fault QEMU reported is one the kernel counted, from edu, in the driver's order:
/// the kernel page (write), the kernel page (read), the IOVA (write), and none after (the
/// BAR-only program's write, bus mastering off, never reached the unit). One transfer may fault
/// on several accesses to its page; the unit compresses those (spec 7.2.1, QEMU: "not
/// recorded due to compression of faults") into one record, so consecutive events of one
/// source, page and direction count once.
fn faults_agree(t: &keel_evidence::Transcript, tr: &Trace) -> Result<(), String> {
    let sid = ev_u64(t, "dma.edu_source_id")?;
    let page = ev_u64(t, "dma.watch.phys")?;
    let counted = ev_u64(t, "iommu.dma_faults")?;
    let transfers = traced_transfers(tr);
    if transfers.len() as u64 != counted {
        return Err(format!(
            "QEMU traced faults of {} transfers, the kernel counted {counted}",
            transfers.len()
        ));
    }
    let want = [(page, "1"), (page, "0"), (UNMAPPED_IOVA, "1")];
    if transfers.len() != want.len() {
        return Err(format!("{} transfers faulted, {} attempts made", transfers.len(), want.len()));
    }
    for (i, ((s, a, w), (addr, write))) in transfers.iter().zip(want).enumerate() {
        if *s != Some(sid) || *a != Some(addr) || *w != Some(write) {
            return Err(format!(
                "fault {i}: sid {s:?} page {a:?} write {w:?}, want sid {sid:#x} page {addr:#x} write {write}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EV: &str = "EV dma.edu_source_id=0x18 dma.watch.phys=0x101000 iommu.dma_faults=3 iommu.dma=on iommu.dma.root_phys=0x395000\n";

    fn trace(faults: &[(u16, u64, u8)]) -> Trace {
        let mut s =
            String::from("vtd_reg_dmar_root addr 0x395000 extended 0\nvtd_dmar_enable enable 1\n");
        for (sid, addr, write) in faults {
            s += &format!("vtd_dmar_fault sid 0x{sid:x} fault 1 addr 0x{addr:x} write {write}\n");
        }
        Trace::parse(&s)
    }

    fn judge(ev: &str, tr: &Trace) -> Vec<String> {
        let p = dma_attack("dma-deny", "x", "intel-iommu", false);
        crate::trace::judge_trace(&p.trace_checks, &keel_evidence::Transcript::parse(ev), Ok(tr))
    }

    #[test]
    fn agreeing_faults_pass_and_lies_fail() {
        let good = [(0x18, 0x101000, 1), (0x18, 0x101000, 0), (0x18, 0x800_0000, 1)];
        assert_eq!(judge(EV, &trace(&good)), Vec::<String>::new());
        // QEMU traces each faulting access; one transfer's accesses count once.
        let split = [
            (0x18, 0x101000, 1),
            (0x18, 0x101004, 1),
            (0x18, 0x101000, 0),
            (0x18, 0x101004, 0),
            (0x18, 0x800_0000, 1),
        ];
        assert_eq!(judge(EV, &trace(&split)), Vec::<String>::new());
        assert!(!judge(&EV.replace("faults=3", "faults=2"), &trace(&good)).is_empty());
        let other = [(0x20, 0x101000, 1), (0x18, 0x101000, 0), (0x18, 0x800_0000, 1)];
        assert!(!judge(EV, &trace(&other)).is_empty());
        assert!(!judge(EV, &trace(&good[..2])).is_empty());
        assert!(!judge(&EV.replace("0x395000", "0x396000"), &trace(&good)).is_empty());
        assert!(!judge(EV, &Trace::parse("")).is_empty());
    }
}
