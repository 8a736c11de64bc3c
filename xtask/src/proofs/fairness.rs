//! Scheduling under hostile load: fairness while a thread floods `cap_enter` (bounded work per
//! call, preemption in the kernel), in both LAPIC modes, on the boot CPU and on an AP; and
//! the exit wake-up that must not be lost in the window between a waiter's check and block.

use super::{user_proof, x2apic_cpu, xapic_cpu, Proof};
use crate::checks::{custom, eq, ge, le, Check};
use crate::trace::ev_u64;

/// `keel_abi::SQ_ENTRIES`: the most submissions one `cap_enter` may consume.
const SQ_ENTRIES: u64 = 32;

/// Slices of host allowance in the victim's own, wall-clock measure: the TSC keeps running
/// while the host deschedules the vCPU thread: on the shared 2-core build host (two proofs in
/// parallel) the victim saw up to 284 ms (2.8 slices at `tick_hz=10`) where the kernel saw a
/// one-tick wait. The two-slice bound itself is checked on the guest's clock
/// (`max_queue_wait_ticks`).
const HOST_ALLOWANCE_SLICES: u64 = 2;

/// The victim's largest time off the CPU (ring 3, TSC) is under two time slices plus the host
/// allowance (a slice is one tick period, `timer.tick_hz` as the kernel reports it).
fn victim_gap_bounded() -> Check {
    custom("the victim's largest gap is under 2 slices (+ host allowance)", |t| {
        let hz = ev_u64(t, "timer.tick_hz")?;
        let gap_us = ev_u64(t, "user.smptest.victim_max_gap_us")?;
        let bound_us = (2 + HOST_ALLOWANCE_SLICES) * 1_000_000 / hz.max(1);
        if gap_us < bound_us {
            Ok(())
        } else {
            Err(format!("victim off the CPU for {gap_us} us, bound {bound_us} us"))
        }
    })
}

/// On the guest's own clock: no thread of the process waited runnable across more than
/// [`MAX_QUEUE_WAIT_TICKS`] ticks of its CPU (switch-in minus enqueue tick).
fn queue_wait_under_two_slices() -> Check {
    le("proc.smptest.max_queue_wait_ticks", MAX_QUEUE_WAIT_TICKS)
}

/// One tick waited means less than two slices; that is what the kernel achieves (1 in 49 of
/// about 50 runs). The one run that counted 2 had the host pause the vCPU for 13.9 ms across a
/// tick, so the proof allows one tick of host noise: still far below what a kernel that does
/// not preempt in the kernel (8 ticks) or a five-tick slice (5) shows.
const MAX_QUEUE_WAIT_TICKS: u64 = 2;

/// `smptest mode=fair` sharing CPU `shared` (manifest `fair-<placement>`) in LAPIC `mode`:
/// no thread waits two slices, the flooder was preempted inside the kernel on
/// that CPU (counted at the preemption point), and no `cap_enter` consumed more than
/// `SQ_ENTRIES` (the kernel's per-process maximum) although the feeder published far more.
fn fairness(p: Proof, manifest: &'static str, shared: u64, mode: &'static str) -> Proof {
    let cpu = p.machine.cpu.clone();
    user_proof(p, manifest, &["smptest"])
        .cpu(cpu)
        .args("tick_hz=10")
        .timeout_secs(90)
        .check(eq("lapic.mode", mode))
        .check(eq("proc.smptest.exit", 0))
        .check(eq("user.heap_leaked", 0))
        .check(eq("user.smptest.shared_cpu", shared))
        .check(eq("user.smptest.threads_ended", "yes"))
        .check(ge("user.smptest.flood_fed", 10 * SQ_ENTRIES))
        .check(ge("user.smptest.victim_loops", 1000))
        .check(victim_gap_bounded())
        .check(queue_wait_under_two_slices())
        .check(ge(&format!("cpu.{shared}.kernel_preemptions"), 1))
        .check(le("proc.smptest.max_submissions_per_call", SQ_ENTRIES))
        .check(ge("proc.smptest.max_submissions_per_call", 1))
}

/// The proofs of this module.
pub(super) fn proofs() -> Vec<Proof> {
    vec![
        fairness(Proof::new("fair-ap-x2apic", "a flooder in cap_enter shares CPU 1 with a victim: gap < 2 slices, <= SQ_ENTRIES per call (x2APIC)").cpu(x2apic_cpu()), "fair-ap", 1, "x2apic"),
        fairness(Proof::new("fair-ap-xapic", "the same in xAPIC mode").cpu(xapic_cpu()), "fair-ap", 1, "xapic"),
        fairness(Proof::new("fair-bsp-x2apic", "the same sharing the boot CPU (x2APIC)").cpu(x2apic_cpu()), "fair-bsp", 0, "x2apic"),
        fairness(Proof::new("fair-bsp-xapic", "the same sharing the boot CPU (xAPIC)").cpu(xapic_cpu()), "fair-bsp", 0, "xapic"),
        // Long VirtualMemory calls instead of a ring flood: the flooder is preempted between
        // the 64-page steps of its 1,024-page calls.
        user_proof(Proof::new("fair-vm-ap-x2apic", "1,024-page VmMap/VmUnmap calls beside a victim on CPU 1: preempted between steps, gap < 2 slices"), "fair-vm", &["smptest"])
            .args("tick_hz=10")
            .timeout_secs(90)
            .check(eq("proc.smptest.exit", 0))
            .check(eq("user.heap_leaked", 0))
            .check(eq("user.smptest.threads_ended", "yes"))
            .check(eq("user.smptest.vm_flood_errors", 0))
            .check(ge("user.smptest.flood_calls", 20))
            .check(ge("user.smptest.victim_loops", 1000))
            .check(victim_gap_bounded())
            .check(queue_wait_under_two_slices())
            .check(ge("vm.step_preemptions", 1)),
        // The scenarios image holds the waiter 1 s between its exit check and its block
        // (ring lock held); the process must still end, and the exit must land in that window.
        user_proof(Proof::new("exit-wake-window", "exit lands between a waiter's exit check and its block: the waiter is woken, the process reaped"), "exit-wake", &["smptest"])
            .cpu(x2apic_cpu())
            .args("exit_window_ms=1000 user_timeout_ms=15000")
            .timeout_secs(60)
            .check(eq("proc.smptest.exit", 0))
            .check(eq("user.heap_leaked", 0))
            .check(ge("ring.exit_window_hits", 1)),
    ]
}
