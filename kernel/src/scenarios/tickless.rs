//! `proof=tickless` (booted with `timer=tickless`, 2 CPUs): the one-shot timer on the path.
//!
//! * Idle: CPU 1 sits in its idle loop for a measured window; its timer interrupts (counted
//!   in the vector-48 handler) must be (almost) none, and its watcher (CPU 0, busy here,
//!   checking on each of its watchdog interrupts) must not report it.
//! * Busy: CPU 1 spins with interrupts on for a window; it still takes its watchdog
//!   interrupts (what lets the lockup watcher see it move).
//! * Sleeps: kernel waits of 1..=16 ms on CPU 0 and on CPU 1, each armed as a one-shot
//!   deadline: requested against observed on the TSC.
//! * The per-CPU arming figures (arms, idle disarms, pieces, missed deadlines, lateness),
//!   read from each CPU's `oneshot` counters.

use core::sync::atomic::{AtomicU64, Ordering};

use keel_boot::cmdline::CommandLine;

use fw::arch::x86_64::{lapic, lockup, oneshot, percpu, smp};
use fw::bringup::System;
use fw::exit::verdict;
use fw::time;

/// Kernel sleeps measured per CPU.
const SLEEPS: u64 = 16;

/// Each sleep's lateness (ns) on the boot CPU and on CPU 1 (written by its posted work).
static BOOT_LATE_NS: [AtomicU64; SLEEPS as usize] = [const { AtomicU64::new(0) }; SLEEPS as usize];
static AP_LATE_NS: [AtomicU64; SLEEPS as usize] = [const { AtomicU64::new(0) }; SLEEPS as usize];

/// Sleeps 1..=[`SLEEPS`] ms with [`oneshot::halt_until`]; each wake-up's lateness (ns after
/// the requested time) goes into `late`.
fn measure_sleeps(late: &[AtomicU64; SLEEPS as usize]) {
    for (ms, slot) in (1..=SLEEPS).zip(late) {
        let until = time::now_ns() + ms * 1_000_000;
        oneshot::halt_until(until);
        slot.store(time::now_ns().saturating_sub(until), Ordering::Relaxed);
    }
}

fn sleeps_on_ap(_: usize) {
    measure_sleeps(&AP_LATE_NS);
}

/// Spins with interrupts on for `ms` (CPU 1's busy window).
fn spin_busy(ms: usize) {
    let until = time::now_ns() + ms as u64 * 1_000_000;
    while time::now_ns() < until {
        core::hint::spin_loop();
    }
}

pub fn run(_system: System, cmdline: &CommandLine) -> ! {
    let started_ns = time::now_ns();
    let Some(ap) = smp::online_cpus().into_iter().find(|c| c.index == 1) else {
        verdict(false, "tickless proof needs two CPUs")
    };
    let boot = percpu::cpu(0).expect("boot CPU");
    ev!("tickless.enabled", if lapic::tickless() { "yes" } else { "no" });
    ev!("tickless.watchdog_ms", crate::task::sched::watchdog_ns() / 1_000_000);
    // Let CPU 1 settle in its idle loop (bring-up work done, its busy deadline gone).
    super::support::sleep_ms(300);

    // Idle window: CPU 1 has nothing to do.
    let idle_ms = super::support::option_u64(cmdline, "idle_ms", 3000);
    let reports_before = lockup::REPORTS.load(Ordering::Acquire);
    let (ap_before, boot_before) = (ticks(ap), ticks(boot));
    let t0 = time::now_ns();
    super::support::sleep_ms(idle_ms);
    let window_ns = time::now_ns() - t0;
    ev!("tickless.idle.window_ms", window_ns / 1_000_000);
    ev!("tickless.idle.interrupts", ticks(ap) - ap_before);
    ev!("tickless.idle.boot_cpu_interrupts", ticks(boot) - boot_before);
    ev!("tickless.idle.lockup_reports", lockup::REPORTS.load(Ordering::Acquire) - reports_before);

    // Busy window: CPU 1 spins with interrupts on.
    let busy_ms = super::support::option_u64(cmdline, "busy_ms", 2000);
    let ap_before = ticks(ap);
    let t0 = time::now_ns();
    let ticket = smp::post_work(ap, spin_busy, busy_ms as usize);
    let busy_done = smp::wait_work(ap, ticket, (busy_ms + 10_000) * 1_000_000);
    ev!("tickless.busy.window_ms", (time::now_ns() - t0) / 1_000_000);
    ev!("tickless.busy.interrupts", ticks(ap) - ap_before);

    // Sleeps on both CPUs.
    measure_sleeps(&BOOT_LATE_NS);
    let ticket = smp::post_work(ap, sleeps_on_ap, 0);
    let ap_done = smp::wait_work(ap, ticket, 30_000_000_000);
    ev!("tickless.sleep.count", 2 * SLEEPS);
    let lates = || BOOT_LATE_NS.iter().chain(&AP_LATE_NS).map(|l| l.load(Ordering::Relaxed));
    ev!("tickless.sleep.min_late_us", lates().min().unwrap_or(0) / 1000);
    ev!("tickless.sleep.max_late_us", lates().max().unwrap_or(0) / 1000);
    for (cpu, sleeps) in [(0, &BOOT_LATE_NS), (ap.index, &AP_LATE_NS)] {
        for (ms, late) in (1..=SLEEPS).zip(sleeps) {
            ev!(("tickless.sleep.{}.{}ms.late_us", cpu, ms), late.load(Ordering::Relaxed) / 1000);
        }
    }

    super::nmi::watch_then_report(started_ns);
    report_timer_figures();
    verdict(busy_done && ap_done, "tickless scenario incomplete")
}

fn ticks(cpu: &percpu::PerCpu) -> u64 {
    cpu.lapic.timer_ticks.load(Ordering::Relaxed)
}

/// Per-CPU one-shot figures (totals only on a summarised machine), and `timer.tickless`:
/// `yes` when every online CPU armed one-shot deadlines and at least one halted idle with
/// none armed (counted where the hardware is written); a periodic tick arms none.
pub fn report_timer_figures() {
    let summarised = fw::bringup::report::summarised();
    let (mut cpus_armed, mut cpus, mut idle_disarms, mut missed, mut max_late_ns) = (0, 0, 0, 0, 0);
    for cpu in percpu::online() {
        let t = &cpu.oneshot;
        let arms = t.arms.load(Ordering::Relaxed);
        cpus += 1;
        cpus_armed += u64::from(arms > 0);
        idle_disarms += t.idle_disarms.load(Ordering::Relaxed);
        missed += t.missed.load(Ordering::Relaxed);
        max_late_ns = max_late_ns.max(t.max_late_ns.load(Ordering::Relaxed));
        if summarised {
            continue;
        }
        ev!(("cpu.{}.timer_interrupts", cpu.index), ticks(cpu));
        ev!(("cpu.{}.timer_arms", cpu.index), arms);
        ev!(("cpu.{}.timer_idle_disarms", cpu.index), t.idle_disarms.load(Ordering::Relaxed));
        ev!(("cpu.{}.timer_on_deadline", cpu.index), t.on_deadline.load(Ordering::Relaxed));
        ev!(("cpu.{}.timer_pieces", cpu.index), t.pieces.load(Ordering::Relaxed));
        ev!(("cpu.{}.timer_missed", cpu.index), t.missed.load(Ordering::Relaxed));
        ev!(("cpu.{}.timer_max_late_us", cpu.index), t.max_late_ns.load(Ordering::Relaxed) / 1000);
    }
    ev!("timer.miss_bound_us", oneshot::MISS_BOUND_NS / 1000);
    ev!("timer.cpus_armed", cpus_armed);
    ev!("timer.idle_disarms", idle_disarms);
    ev!("timer.missed", missed);
    ev!("timer.max_late_us", max_late_ns / 1000);
    let tickless = cpus > 0 && cpus_armed == cpus && idle_disarms > 0;
    ev!("timer.tickless", if tickless { "yes" } else { "no" });
}
