//! Endurance proofs (`cargo xtask test-soak`): memory churn of more than 10x RAM, 10^4
//! thread and 10^3 process spawn/exit cycles, capability tables filled and emptied, and an
//! interrupt storm, each in both LAPIC modes. Every figure is read from a kernel counter on
//! the path (`churn.*`, `irq.*`), and each run must end with the heap and every frame back
//! at baseline and the frame allocator's invariants checked in the kernel (docs/proofs.md).

use super::{user_proof, x2apic_cpu, xapic_cpu, Proof};
use crate::checks::{custom, eq, ge, keys_equal, Check};
use crate::qemu::CpuSpec;
use crate::trace::ev_u64;

/// RAM of the soak machines (`user_proof`'s 256 MiB) and the churn asked of them.
const RAM_BYTES: u64 = 256 << 20;
const CHURN_TIMES_RAM: u64 = 10;
/// `threads=` of `manifests/soak-memory.manifest`, and the stack each thread gets.
const SOAK_THREADS: u64 = 4;
const SOAK_STACK_PAGES: u64 = 4;
/// `cycles=` of `manifests/soak-threads.manifest`, `1 + restarts` of the process soak.
const THREAD_CYCLES: u64 = 10_000;
const PROCESS_RUNS: u64 = 1_000;
/// `rounds=` of the capability soak, and the room each round fills: the table's 256 slots
/// minus the two grants (Console, Timer) the program holds.
const CAP_ROUNDS: u64 = 200;
const CAP_SLOTS: u64 = 256;
const CAP_ROOM: u64 = CAP_SLOTS - 2;
/// The interrupt storm: runs of the driver (`1 + restarts`) and the length of each (`ms=` of
/// `manifests/soak-irq.manifest`).
const STORM_RUNS: u64 = 3;
const STORM_MS: u64 = 30_000;

/// What every endurance run ends with: frames and processes back at baseline, the
/// allocator's invariants intact at both ends (checked on the kernel's real bitmap). The
/// heap is checked by each proof: the storm's interrupt source is created once and kept.
fn baseline(p: Proof) -> Proof {
    p.check(eq("user.processes_live", 0))
        .check(eq("mm.invariants_start", "ok"))
        .check(eq("mm.invariants", "ok"))
        .check(keys_equal("mm.free_frames_end", "mm.free_frames_start"))
        .check(eq("mm.unflushed_frames_kept", 0))
        .check(ge("churn.wall_ms", 1))
        .soak()
}

fn soak(
    p: Proof,
    manifest: &'static str,
    programs: &'static [&'static str],
    cpu: CpuSpec,
) -> Proof {
    baseline(user_proof(p, manifest, programs).cpu(cpu))
}

/// Every value printed for `key` equals `want`, and there are `count` of them.
fn each(key: &'static str, want: &'static str, count: u64) -> Check {
    custom(&format!("{count} values of {key}, each {want}"), move |t| {
        let all = t.evidence.all(key);
        match all.iter().find(|v| v.as_str() != want) {
            Some(v) => Err(format!("{key} = {v}")),
            None if all.len() as u64 != count => Err(format!("{} values of {key}", all.len())),
            None => Ok(()),
        }
    })
}

/// The `count` values printed for `key` (once per restart) are all equal, and equal to
/// `to`'s value when given: what a restart finds is what the first run found.
fn same_at_each(key: &'static str, count: u64, to: Option<&'static str>) -> Check {
    let what = match to {
        Some(to) => format!("{count} values of {key}, each equal to {to}"),
        None => format!("{count} values of {key}, all equal"),
    };
    custom(&what, move |t| {
        let all = t.evidence.all(key);
        if all.len() as u64 != count {
            return Err(format!("{} values of {key}", all.len()));
        }
        let want = match to {
            Some(to) => ev_u64(t, to)?,
            None => {
                all.first().and_then(|v| v.parse().ok()).ok_or(format!("{key}: not a number"))?
            }
        };
        match all.iter().position(|v| v.parse::<u64>().ok() != Some(want)) {
            Some(i) => Err(format!("{key} #{} = {}, want {want}", i + 1, all[i])),
            None => Ok(()),
        }
    })
}

fn memory(p: Proof, cpu: CpuSpec) -> Proof {
    soak(p, "soak-memory", &["soak"], cpu)
        .check(eq("user.heap_leaked", 0))
        .args("user_timeout_ms=400000")
        .timeout_secs(480)
        .check(eq("proc.soak_memory.exit", 0))
        .check(eq("user.soak_memory.errors", 0))
        .check(ge("churn.vm_bytes_unmapped", CHURN_TIMES_RAM * RAM_BYTES))
        .check(keys_equal("user.soak_memory.bytes_churned", "churn.vm_bytes_unmapped"))
        .check(custom(
            "VmMap frames = VmUnmap frames + the threads' stacks (freed with the address space)",
            |t| {
                let mapped = ev_u64(t, "churn.vm_frames_mapped")?;
                let unmapped = ev_u64(t, "churn.vm_frames_unmapped")?;
                let stacks = SOAK_THREADS * SOAK_STACK_PAGES;
                (mapped == unmapped + stacks)
                    .then_some(())
                    .ok_or(format!("{mapped} mapped, {unmapped} unmapped, {stacks} stack pages"))
            },
        ))
        // The churning threads ran on both CPUs (entries counted on each CPU's entry path):
        // two calls per 4 MiB chunk, a quarter of the chunks per thread.
        .check(ge("cpu.0.syscall_entries", 500))
        .check(ge("cpu.1.syscall_entries", 500))
}

fn threads(p: Proof, cpu: CpuSpec) -> Proof {
    soak(p, "soak-threads", &["soak"], cpu)
        .check(eq("user.heap_leaked", 0))
        .args("user_timeout_ms=400000")
        .timeout_secs(480)
        .check(eq("proc.soak_threads.exit", 0))
        .check(eq("user.soak_threads.spawned", THREAD_CYCLES))
        .check(eq("user.soak_threads.refused", 0))
        // The spawned threads and the main thread: every one created was reaped.
        .check(eq("churn.threads_created", THREAD_CYCLES + 1))
        .check(keys_equal("churn.threads_reaped", "churn.threads_created"))
}

fn processes(p: Proof, cpu: CpuSpec) -> Proof {
    soak(p, "soak-processes", &["soak"], cpu)
        .check(eq("user.heap_leaked", 0))
        // Each restart found the heap and the free frames as the first run did.
        .check(same_at_each("proc.soak_exit.heap_at_restart", PROCESS_RUNS - 1, None))
        .check(same_at_each(
            "proc.soak_exit.free_frames_at_restart",
            PROCESS_RUNS - 1,
            Some("mm.free_frames_start"),
        ))
        .args("user_timeout_ms=400000")
        .timeout_secs(480)
        .check(eq("proc.soak_exit.runs", PROCESS_RUNS))
        .check(eq("churn.restarts", PROCESS_RUNS - 1))
        // Printed by the kernel as each run's last thread exits.
        .check(each("proc.soak_exit.exit", "0", PROCESS_RUNS))
        // The runs and the capability program: every process created was reaped.
        .check(eq("churn.processes_created", PROCESS_RUNS + 1))
        .check(keys_equal("churn.processes_reaped", "churn.processes_created"))
        .check(eq("proc.soak_caps.exit", 0))
        .check(eq("user.soak_caps.copies_per_round", CAP_ROOM))
        .check(eq("churn.cap_copies", CAP_ROUNDS * CAP_ROOM))
        .check(keys_equal("churn.cap_releases", "churn.cap_copies"))
        .check(eq("churn.cap_copies_refused_full", CAP_ROUNDS))
        .check(eq("churn.cap_table_peak", CAP_SLOTS))
}

/// Sum of every value printed for `key` (one per run).
fn sum_all(t: &keel_evidence::Transcript, key: &str) -> Result<u64, String> {
    t.evidence.all(key).iter().try_fold(0u64, |sum, v| {
        v.parse::<u64>().map(|n| sum + n).map_err(|_| format!("{key} = {v}"))
    })
}

fn storm(p: Proof, cpu: CpuSpec) -> Proof {
    soak(p, "soak-irq", &["edu-driver"], cpu)
        .args("user_timeout_ms=300000")
        // 90 s by the guest's clock, which under TCG on a loaded host ran at a third of the
        // host's (one run took 311 s).
        .timeout_secs(600)
        .check(eq("proc.soak_irq.exit", 0))
        .check(eq("proc.soak_irq.runs", STORM_RUNS))
        .check(ge("churn.wall_ms", STORM_RUNS * STORM_MS))
        // The second and third storms found the heap and the frames as the first left them.
        .check(same_at_each("proc.soak_irq.heap_at_restart", STORM_RUNS - 1, None))
        .check(same_at_each(
            "proc.soak_irq.free_frames_at_restart",
            STORM_RUNS - 1,
            Some("mm.free_frames_start"),
        ))
        .check(custom(
            "every interrupt raised in the 3 runs was received, and delivered once by the kernel",
            |t| {
                let raised = sum_all(t, "user.soak_irq.raised")?;
                let received = sum_all(t, "user.soak_irq.received")?;
                let delivered = ev_u64(t, "irq.msi_edu.deliveries")?;
                (raised >= 10_000 && received == raised && delivered == raised)
                    .then_some(())
                    .ok_or(format!("raised {raised}, received {received}, delivered {delivered}"))
            },
        ))
        // Every delivery acknowledged, plus the arming acknowledgement of each run.
        .check(custom("acknowledgements = deliveries + one arming per run", |t| {
            let acks = ev_u64(t, "irq.msi_edu.acknowledgements")?;
            let delivered = ev_u64(t, "irq.msi_edu.deliveries")?;
            (acks == delivered + STORM_RUNS)
                .then_some(())
                .ok_or(format!("{acks} acknowledgements, {delivered} deliveries"))
        }))
        .check(custom("the storm lasted its length: at least 100 interrupts a second", |t| {
            let (raised, ms) = (sum_all(t, "user.soak_irq.raised")?, ev_u64(t, "churn.wall_ms")?);
            (raised * 1000 / ms.max(1) >= 100)
                .then_some(())
                .ok_or(format!("{raised} interrupts in {ms} ms"))
        }))
}

pub(super) fn proofs() -> Vec<Proof> {
    vec![
        memory(Proof::new("soak-memory", "10x RAM mapped, written and unmapped by 4 threads on 2 CPUs; every frame back, allocator invariants hold (x2APIC)"), x2apic_cpu()),
        memory(Proof::new("soak-memory-xapic", "the same in xAPIC mode"), xapic_cpu()),
        threads(Proof::new("soak-threads", "10^4 thread spawn/exit cycles on 2 CPUs: every thread reaped, heap and frames at baseline (x2APIC)"), x2apic_cpu()),
        threads(Proof::new("soak-threads-xapic", "the same in xAPIC mode"), xapic_cpu()),
        processes(Proof::new("soak-processes", "10^3 process runs of one restarted program, then capability tables filled and emptied 200 times (x2APIC)"), x2apic_cpu()),
        processes(Proof::new("soak-processes-xapic", "the same in xAPIC mode"), xapic_cpu()),
        storm(Proof::new("soak-irq", "3 x 30 s of back-to-back edu MSIs, each delivered once and acknowledged; nothing kept per run (x2APIC)"), x2apic_cpu()),
        storm(Proof::new("soak-irq-xapic", "the same in xAPIC mode"), xapic_cpu()),
    ]
}
