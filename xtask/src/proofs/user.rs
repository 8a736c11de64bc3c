//! Builders for the ring-3 proofs (scenario `user`): the shared machine, and the evidence
//! the interrupt-grant, TLB shootdown and scaling proofs must show.

use crate::checks::{custom, eq, for_each_cpu, ge, is, keys_equal, le, Check};
use crate::trace::ev_u64;

use super::{x2apic_cpu, Proof};

/// Ring-3 programs under scenario `user`: q35, 2 CPUs, the `edu` device, the manifest and
/// its programs as Multiboot modules. TCG, and KVM when it is hardware-backed (see
/// [`KvmBackend::Pvm`] for why a PVM host skips them).
pub(super) fn user_proof(
    p: Proof,
    manifest: &'static str,
    programs: &'static [&'static str],
) -> Proof {
    let manifest_path: &'static str =
        Box::leak(format!("manifests/{manifest}.manifest").into_boxed_str());
    p.scenario("user")
        .smp(2)
        .memory("256M")
        .cpu(x2apic_cpu())
        .qemu_extra(&["-device", "edu"])
        .manifest(manifest_path)
        .programs(programs)
        .guest_ring3()
        .timeout_secs(120)
        .check(eq("user.failures", 0))
        .check(eq("user.frames_leaked", 0))
        .check(eq("mm.refused_frees", 0))
        .check(eq("space.leaked", 0))
}

/// Interrupts each edu driver raises in `manifests/interrupt-grant.manifest` (`count=`): also
/// the sample count of the wake-latency figures `bench-compare` takes from these proofs.
const EDU_RAISES: u64 = 1000;

/// How ring 3 enters the kernel in a proof: the counters on each entry path must show it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Gate {
    Syscall,
    Int80,
}

/// Ring-3 entries every driver run makes at least (one per raised edu interrupt and more).
const MIN_ENTRIES: u64 = 2 * EDU_RAISES;

/// Every ring-3 entry went through `gate`, counted on the entry paths (`cpu.N.*_entries`).
pub(super) fn entry_checks(p: Proof, gate: Gate) -> Proof {
    let (used, unused) = match gate {
        Gate::Syscall => ("entry.syscall", "entry.int80"),
        Gate::Int80 => ("entry.int80", "entry.syscall"),
    };
    p.check(ge(used, MIN_ENTRIES)).check(eq(unused, 0))
}

/// The CPU the drivers run on (`cpu = 1` in `manifests/interrupt-grant.manifest`), and the
/// boot CPU that takes their interrupts under `irq_target=boot`.
pub(super) const DRIVER_CPU: u64 = 1;
pub(super) const BOOT_CPU: u64 = 0;

/// The edu driver's `raises` MSIs and INTx interrupts each reached it and were each delivered
/// once, and the RTC driver took at least 64 interrupts: the checks every driver proof shares.
pub fn drivers_delivered(p: Proof, raises: u64) -> Proof {
    p.check(eq("user.edu_msi.raised", raises))
        .check(keys_equal("user.edu_msi.received", "user.edu_msi.raised"))
        .check(eq("irq.msi_edu.deliveries", raises))
        .check(eq("user.edu_intx.raised", raises))
        .check(keys_equal("user.edu_intx.received", "user.edu_intx.raised"))
        .check(eq("irq.intx_edu.deliveries", raises))
        .check(ge("user.rtc.received", 64))
        .check(ge("irq.isa_8.deliveries", 64))
}
/// Sum of the three sources' deliveries (the kernel's per-source counters).
fn deliveries(t: &keel_evidence::Transcript) -> Result<u64, String> {
    ["irq.msi_edu.deliveries", "irq.intx_edu.deliveries", "irq.isa_8.deliveries"]
        .iter()
        .try_fold(0, |sum, k| Ok(sum + ev_u64(t, k)?))
}

/// Every device interrupt was taken on CPU `on` (counted in the dispatcher of the CPU that
/// took it), none elsewhere.
pub(super) fn device_interrupts_on(on: u64) -> Check {
    custom(
        &format!("every device interrupt was taken on cpu {on} (cpu.N.device_interrupts)"),
        move |t| {
            let total = deliveries(t)?;
            for (k, v) in t.evidence.matching("cpu.*.device_interrupts") {
                let n = v.as_u64().ok_or(format!("{k} = {v}"))?;
                let want = if k == format!("cpu.{on}.device_interrupts") { total } else { 0 };
                if n != want {
                    return Err(format!("{k} = {n}, want {want} (sources delivered {total})"));
                }
            }
            ev_u64(t, &format!("cpu.{on}.device_interrupts")).map(drop)
        },
    )
}

/// The `interrupt-grant` evidence: MSI and INTx drivers got exactly what they raised, the RTC
/// driver its periodic interrupts, every source masked again at the end (read from the IOAPIC
/// entries; the edu MSI has no mask bit, so its mask is the kernel's software state and
/// reported as such), and every entry through `gate`.
pub(super) fn interrupt_grant(p: Proof, mode: &'static str, gate: Gate) -> Proof {
    let cpu = p.machine.cpu.clone();
    let p = drivers_delivered(
        user_proof(p, "interrupt-grant", &["edu-driver", "rtc-driver"]),
        EDU_RAISES,
    )
    .cpu(cpu)
    .check(eq("lapic.mode", mode))
    .check(for_each_cpu("cpu.*.mode", is::eq(mode)).count_eq_key("smp.online"))
    .check(eq("irq.msi_edu.masked_at_end", "software"))
    .check(eq("irq.msi_edu.software_masked_at_end", "yes"))
    .check(eq("irq.intx_edu.masked_at_end", "yes"))
    .check(eq("irq.isa_8.masked_at_end", "yes"))
    .check(eq("proc.edu_msi.exit", 0))
    .check(eq("proc.edu_intx.exit", 0))
    .check(eq("proc.rtc.exit", 0))
    .check(ge("user.edu_msi.raise_to_wake_median_cycles", 1));
    entry_checks(p, gate)
}

/// Wake-ups of drivers blocked on CPU 1 by interrupts taken on CPU 0 must arrive by IPI 49:
/// at least this many were sent (a driver that had not blocked yet finds its interrupt
/// pending and needs none; TCG runs see several hundred of 2,064).
const MIN_REMOTE_WAKES: u64 = 20;

/// IPI 49 wake-ups sent to the drivers' CPU (counted by the senders) arrived there (counted by
/// the vector-49 handler of the receiving CPU). Two IPIs sent while the first is still
/// pending in the target's IRR are received once, so the receive count may fall short of
/// the sent count, but not below half of it (TCG: 1,086 received of 1,133 sent); nothing
/// else sends IPI 49 in this scenario, so it may not exceed it.
pub(super) fn remote_wakes_received() -> Check {
    custom("wake-ups crossed CPUs: sent/2 <= IPI 49s received on the drivers' CPU <= sent", |t| {
        let sent = ev_u64(t, &format!("cpu.{DRIVER_CPU}.wake_ipis_sent"))?;
        let received = ev_u64(t, &format!("cpu.{DRIVER_CPU}.ipis_received"))?;
        if sent < MIN_REMOTE_WAKES {
            Err(format!(
                "only {sent} wake IPIs sent to cpu {DRIVER_CPU}, want >= {MIN_REMOTE_WAKES}"
            ))
        } else if received < sent / 2 || received > sent {
            Err(format!("cpu {DRIVER_CPU} received {received} IPI 49s, but {sent} wake IPIs were sent to it"))
        } else {
            Ok(())
        }
    })
}

/// `smptest mode=shootdown`: `workers` readers on CPUs 1..=workers of a 4-CPU machine, the
/// unmapping thread on CPU 0. Every reader faults on its next access (the kernel reports the
/// address and thread), the unmap completed, and no frame leaked.
pub(super) fn tlb_shootdown(p: Proof, manifest: &'static str, workers: u64) -> Proof {
    let cpu = p.machine.cpu.clone();
    user_proof(p, manifest, &["smptest"])
        .cpu(cpu)
        .smp(4)
        // Threads that ended by a fault leave nothing behind either.
        .check(eq("user.heap_leaked", 0))
        .check(eq("user.smptest.workers", workers))
        .check(eq("user.smptest.unmap", "ok"))
        .check(eq("user.smptest.stale_reads", 0))
        .check(le("user.smptest.reads_after_unmap", workers))
        .check(eq("user.smptest.live_threads_after", 1))
        .check(eq("user.smptest.read_errors", 0))
        .check(eq("proc.smptest.thread_faults", workers))
        .check(eq("proc.smptest.fault_addr", "0x50000000"))
        .check(ge("tlb.shootdowns", 1))
        .check(eq("proc.smptest.exit", 0))
}

/// `smptest mode=stress`: 4 threads on 4 CPUs, every mapping checked, every operation a
/// shootdown to all resident CPUs.
pub(super) fn shootdown_stress(p: Proof) -> Proof {
    let cpu = p.machine.cpu.clone();
    user_proof(p, "shootdown-stress", &["smptest"])
        .cpu(cpu)
        .smp(4)
        .check(eq("user.heap_leaked", 0))
        .check(eq("user.smptest.finished", "yes"))
        .check(eq("user.smptest.errors", 0))
        .check(eq("user.smptest.operations", 640))
        .check(ge("tlb.shootdowns", 480))
        .check(eq("proc.smptest.exit", 0))
}

/// `smptest mode=preempt`: two threads that never enter the kernel share CPU 1, so both
/// progress only through tick preemption (counted on CPU 1's path); the main thread's moves
/// between CPUs land where it asked, as the kernel reads its CPU after each resume.
pub(super) fn preempt(p: Proof) -> Proof {
    user_proof(p, "preempt", &["smptest"])
        .check(eq("user.heap_leaked", 0))
        .check(eq("user.smptest.both_ran", "yes"))
        .check(eq("user.smptest.spinners_ended", "yes"))
        .check(ge("cpu.1.preemptions", 2))
        .check(eq("user.smptest.move_0.running_on", 1))
        .check(eq("user.smptest.move_1.running_on", 0))
        .check(eq("proc.smptest.exit", 0))
        // The main thread, woken on CPU 0 after its sleep, finds its tables still loaded there;
        // CPU 1 keeps the space after the main thread moved back to CPU 0, and leaves it at
        // the reaper's IPI 49.
        .check(ge("space.switch_ins_kept", 1))
        .check(ge("space.left_on_request", 1))
}

/// `smptest mode=primes` on 4 CPUs: the same, correct prime count with 1, 2 and 4 threads
/// (the speed-up per phase is printed, never asserted).
pub(super) fn smp_scale(p: Proof) -> Proof {
    user_proof(p, "smp-scale", &["smptest"])
        .smp(4)
        .check(eq("user.heap_leaked", 0))
        .check(eq("user.smptest.threads_1.primes", 9592))
        .check(eq("user.smptest.threads_2.primes", 9592))
        .check(eq("user.smptest.threads_4.primes", 9592))
        .check(eq("user.smptest.consistent", "yes"))
}
