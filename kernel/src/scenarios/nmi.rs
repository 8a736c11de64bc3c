//! NMI proofs, kernel-only.
//!
//! * `proof=nmi_window`: CPU 1 enters a `swapgs` window on purpose — in ring 0 with the
//!   user's GS base (0, what every thread runs with) loaded, as right after `syscall` or
//!   before `sysretq` — and waits there with interrupts off; the boot CPU sends it an NMI.
//!   The paranoid NMI entry must see the user GS, swap to the kernel's, count the NMI on
//!   CPU 1's own block and swap back: the counters are read back from CPU 1's block and the
//!   entry stub's own swap counter, the RIP the handler recorded must lie in the window, and
//!   GS must be CPU 1's block again afterwards. Through a CS-based entry the handler reads
//!   per-CPU data at GS 0 and faults.
//! * `proof=lockup`: CPU 1 spins with interrupts off for longer than the lockup bound in a
//!   function whose bounds are symbols; CPU 0 (its watcher) must report it once, with its
//!   APIC ID and a RIP inside that function, and CPU 1 must then serve work again.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use keel_apic::{ApicId, Ipi};
use keel_boot::cmdline::CommandLine;
use x86_64::registers::model_specific::{GsBase, KernelGsBase};
use x86_64::VirtAddr;

use fw::arch::x86_64::{lapic, lockup, percpu, smp, trap_entry};
use fw::bringup::System;
use fw::exit::verdict;
use fw::time;

global_asm!(
    r#"
.section .text
/* rdi: &IN_WINDOW, rsi: &this CPU's nmis counter, rdx: TSC deadline. Interrupts are off.
 * Between the two swapgs GS is the user's: nothing here may touch it. */
.global keel_swapgs_window
keel_swapgs_window:
    movq %rdx, %r9
    movq (%rsi), %r8            /* nmis before */
    swapgs
    movq $1, (%rdi)
1:  pause
    cmpq (%rsi), %r8
    jne 2f
    rdtsc
    shlq $32, %rdx
    orq %rdx, %rax
    cmpq %r9, %rax
    jb 1b
2:  movq $0, (%rdi)
    swapgs
    ret
.global keel_swapgs_window_end
keel_swapgs_window_end:

/* rdi: TSC deadline. Spins with interrupts off, then restores RFLAGS. */
.global keel_lockup_spin
keel_lockup_spin:
    pushfq
    cli
    movq %rdi, %rcx
1:  pause
    rdtsc
    shlq $32, %rdx
    orq %rdx, %rax
    cmpq %rcx, %rax
    jb 1b
    popfq
    ret
.global keel_lockup_spin_end
keel_lockup_spin_end:
"#,
    options(att_syntax)
);

extern "C" {
    fn keel_swapgs_window(in_window: *const AtomicU64, nmis: *const AtomicU64, deadline: u64);
    static keel_swapgs_window_end: u8;
    fn keel_lockup_spin(deadline: u64);
    static keel_lockup_spin_end: u8;
}

/// The code range `[start, end)` between a routine's symbol and its end label.
fn range(start: usize, end: *const u8) -> (u64, u64) {
    (start as u64, end as u64)
}

/// How long CPU 1 waits in the window for the NMI at most.
const WINDOW_WAIT_NS: u64 = 2_000_000_000;

static IN_WINDOW: AtomicU64 = AtomicU64::new(0);
/// CPU 1's GS base after the window, and its block's address as GS must hold it.
static GS_AFTER: AtomicU64 = AtomicU64::new(0);
static GS_BEFORE: AtomicU64 = AtomicU64::new(0);

/// Posted to CPU 1: load a user GS and wait in the window for the NMI.
fn sit_in_swapgs_window(_: usize) {
    let mine = smp::NMI_COUNTS.of(percpu::current_index());
    x86_64::instructions::interrupts::without_interrupts(|| {
        GS_BEFORE.store(GsBase::read().as_u64(), Ordering::Relaxed);
        let kernel_gs_saved = KernelGsBase::read();
        // The user's GS base as every thread has it: the window's GS.
        KernelGsBase::write(VirtAddr::new(0));
        let deadline = fw::arch::x86_64::cpu::rdtsc() + time::ns_to_tsc(WINDOW_WAIT_NS);
        // SAFETY: interrupts are off; the routine swaps GS, touches only the two counters
        // passed in (both 'static), and swaps back before returning.
        unsafe { keel_swapgs_window(&IN_WINDOW, &mine.nmis, deadline) };
        KernelGsBase::write(kernel_gs_saved);
        GS_AFTER.store(GsBase::read().as_u64(), Ordering::Relaxed);
    });
}

fn swapgs_window() -> bool {
    let Some(target) = smp::online_cpus().into_iter().find(|c| c.index == 1) else {
        log::error!("nmi_window: needs two CPUs");
        return false;
    };
    let (theirs, boot) = (smp::NMI_COUNTS.of(target.index), smp::NMI_COUNTS.of(0));
    let (nmis_before, boot_nmis_before) =
        (theirs.nmis.load(Ordering::Acquire), boot.nmis.load(Ordering::Acquire));
    let swaps_before = trap_entry::PARANOID_GS_SWAPS.load(Ordering::Acquire);
    let ticket = smp::post_work(target, sit_in_swapgs_window, 0);
    let entered = time::spin_until(0, 2_000_000_000, || IN_WINDOW.load(Ordering::Acquire) == 1);
    let apic_id = ApicId::new(target.apic_id.load(Ordering::Acquire));
    let sent = entered && lapic::send(Ipi::nmi().to(apic_id)).is_ok();
    let finished = smp::wait_work(target, ticket, 5_000_000_000);
    let (start, end) = range(
        keel_swapgs_window as *const () as usize,
        core::ptr::addr_of!(keel_swapgs_window_end),
    );
    let yes = |b: bool| if b { "yes" } else { "no" };
    ev!("nmi_window.entered", yes(entered));
    ev!("nmi_window.nmi_sent", yes(sent));
    ev!("nmi_window.finished", yes(finished));
    ev!("nmi_window.cpu1_nmis", theirs.nmis.load(Ordering::Acquire) - nmis_before);
    ev!("nmi_window.cpu0_nmis", boot.nmis.load(Ordering::Acquire) - boot_nmis_before);
    ev!(
        "nmi_window.paranoid_swaps",
        trap_entry::PARANOID_GS_SWAPS.load(Ordering::Acquire) - swaps_before
    );
    ev!("nmi_window.rip", format_args!("{:#x}", theirs.rip.load(Ordering::Relaxed)));
    ev!("nmi_window.start", format_args!("{start:#x}"));
    ev!("nmi_window.end", format_args!("{end:#x}"));
    let (before, after) = (GS_BEFORE.load(Ordering::Relaxed), GS_AFTER.load(Ordering::Relaxed));
    ev!("nmi_window.gs_restored", yes(before != 0 && before == after));
    entered && sent && finished
}

/// `proof=nmi_window`.
pub fn run_window(_system: System) -> ! {
    verdict(swapgs_window(), "nmi_window scenario incomplete")
}

/// Posted to CPU 1: spin with interrupts off for `ms`.
fn spin_interrupts_off(ms: usize) {
    let deadline = fw::arch::x86_64::cpu::rdtsc() + time::ns_to_tsc(ms as u64 * 1_000_000);
    // SAFETY: the routine only reads the TSC and restores RFLAGS (IF) on return.
    unsafe { keel_lockup_spin(deadline) };
}

/// `proof=lockup`: `spin_ms=` (default twice the bound) on CPU 1 with interrupts off.
pub fn run_lockup(_system: System, cmdline: &CommandLine) -> ! {
    let Some(target) = smp::online_cpus().into_iter().find(|c| c.index == 1) else {
        verdict(false, "lockup proof needs two CPUs")
    };
    let bound = lockup::bound_ms();
    let spin_ms = super::support::option_u64(cmdline, "spin_ms", 2 * bound);
    let reports_before = lockup::REPORTS.load(Ordering::Acquire);
    let ticks_before = target.lapic.timer_ticks.load(Ordering::Relaxed);
    let ticket = smp::post_work(target, spin_interrupts_off, spin_ms as usize);
    // The boot CPU waits with interrupts on: its ticks keep coming, and with them the watch.
    let limit = time::now_ns() + (spin_ms + 5_000) * 1_000_000;
    while !smp::wait_work(target, ticket, 0) && time::now_ns() < limit {
        x86_64::instructions::interrupts::enable_and_hlt();
    }
    let finished = smp::wait_work(target, ticket, 0);
    // CPU 1 runs again: it serves a ping and ticks on.
    let pinged = smp::ping(target, smp::PingWait::Polite).is_some();
    super::support::sleep_ms(100);
    let ticks_after = target.lapic.timer_ticks.load(Ordering::Relaxed);
    let (start, end) =
        range(keel_lockup_spin as *const () as usize, core::ptr::addr_of!(keel_lockup_spin_end));
    let yes = |b: bool| if b { "yes" } else { "no" };
    ev!("lockup.spin_ms", spin_ms);
    ev!("lockup.spin_finished", yes(finished));
    ev!("lockup.spinner_pinged_after", yes(pinged));
    ev!("lockup.spinner_ticks_during_and_after", ticks_after - ticks_before);
    ev!("lockup.spinner", target.index);
    ev!("lockup.spinner_apic_id", target.apic_id.load(Ordering::Acquire));
    ev!("lockup.reports", lockup::REPORTS.load(Ordering::Acquire) - reports_before);
    ev!("lockup.nmi_unanswered", lockup::NMI_UNANSWERED.load(Ordering::Relaxed));
    ev!("lockup.watcher", lockup::LAST_WATCHER.load(Ordering::Relaxed));
    ev!("lockup.cpu", lockup::LAST_CPU.load(Ordering::Relaxed));
    ev!("lockup.apic_id", lockup::LAST_APIC_ID.load(Ordering::Relaxed));
    ev!("lockup.stall_ms", lockup::LAST_STALL_MS.load(Ordering::Relaxed));
    ev!("lockup.rip", format_args!("{:#x}", lockup::LAST_RIP.load(Ordering::Relaxed)));
    ev!("lockup.spin_start", format_args!("{start:#x}"));
    ev!("lockup.spin_end", format_args!("{end:#x}"));
    verdict(finished && pinged, "lockup scenario incomplete")
}

/// Evidence for proofs that must see no lockup report (healthy CPUs only): first lets at
/// least 1.5 bounds pass since `started` (all CPUs were online by then), with interrupts on,
/// so a watcher that would report a healthy CPU has had the time to.
pub fn watch_then_report(started_ns: u64) {
    let span_ns = lockup::bound_ms() * 1_500_000;
    let elapsed_ns = time::now_ns() - started_ns;
    if elapsed_ns < span_ns {
        super::support::sleep_ms((span_ns - elapsed_ns).div_ceil(1_000_000));
    }
    ev!("lockup.watched_ms", (time::now_ns() - started_ns) / 1_000_000);
    ev!("lockup.reports", lockup::REPORTS.load(Ordering::Acquire));
}
