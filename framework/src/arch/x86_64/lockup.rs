//! Hard-lockup detector, cross-CPU on the architectural LAPIC (no perf counters): every CPU,
//! on its own timer tick, looks at the tick count of the next online CPU in index order (the
//! last one wraps to the first). A CPU whose count has not moved while the watcher itself
//! ticked for longer than the bound (default 1 s, `lockup_ms=` on the command line, 0 turns
//! the detector off) is stuck with interrupts off: the watcher sends it an NMI, whose
//! handler (`smp::nmi`, lock-free) records the interrupted RIP in the target's per-CPU block,
//! and reports the target's APIC ID and that RIP with `log::error!`. One report per stall;
//! the machine keeps running.
//!
//! The time base is the watcher's own tick count, not a clock: a watcher that is itself
//! stalled (or descheduled by a host) reports nothing rather than a false lockup.
//!
//! With a periodic tick an idle CPU keeps ticking (it halts with interrupts on), so a halted
//! CPU still counts. Tickless (`timer=tickless`), an idle CPU takes no timer interrupts at
//! all: it publishes that it is halted in its idle loop (`oneshot.idle`), the watcher skips
//! it, and leaving idle counts as progress (`oneshot.idle_exits`). A busy CPU keeps a
//! watchdog deadline (a quarter of the bound, `sched::watchdog_ns`), so a healthy one moves
//! well within the bound, and the watcher checks on each of its own timer interrupts; the
//! time base is then the TSC, since the watcher's own interrupts are no longer regular.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use keel_apic::{ApicId, Ipi};

use super::lapic;
use super::percpu::{self, IrqGuard, PerCpu};

/// A watcher's record of the CPU it watches. Written only by the watching CPU (in its tick);
/// atomics so the shared per-CPU part stays `Sync`.
pub struct Watch {
    /// Index of the watched CPU (`u32::MAX` before the first look).
    target: AtomicU32,
    /// The watched CPU's tick count when it last moved.
    last_ticks: AtomicU64,
    /// The watcher's own tick count at that moment (periodic), or the time (ns, tickless).
    own_ticks_at_change: AtomicU64,
    /// The current stall was already reported.
    reported: AtomicBool,
}

impl Watch {
    /// Watching nothing yet.
    pub const fn new() -> Self {
        Watch {
            target: AtomicU32::new(u32::MAX),
            last_ticks: AtomicU64::new(0),
            own_ticks_at_change: AtomicU64::new(0),
            reported: AtomicBool::new(false),
        }
    }
}

impl Default for Watch {
    fn default() -> Self {
        Self::new()
    }
}

/// Default bound: a CPU that has not ticked for this long is reported.
pub const DEFAULT_BOUND_MS: u64 = 1000;
/// How long the watcher waits for the stuck CPU's NMI handler to record its RIP.
const NMI_WAIT_NS: u64 = 100_000_000;

static BOUND_MS: AtomicU64 = AtomicU64::new(DEFAULT_BOUND_MS);

/// Lockups reported since boot.
pub static REPORTS: AtomicU64 = AtomicU64::new(0);
/// Reports whose NMI was not answered within [`NMI_WAIT_NS`] (RIP unknown, reported as 0).
pub static NMI_UNANSWERED: AtomicU64 = AtomicU64::new(0);
/// The last report: watcher index, stuck CPU's index, APIC ID and RIP, and how long it had
/// not ticked (ms, by the watcher's ticks). `u64::MAX` before any report.
pub static LAST_WATCHER: AtomicU64 = AtomicU64::new(u64::MAX);
pub static LAST_CPU: AtomicU64 = AtomicU64::new(u64::MAX);
pub static LAST_APIC_ID: AtomicU64 = AtomicU64::new(u64::MAX);
pub static LAST_RIP: AtomicU64 = AtomicU64::new(u64::MAX);
pub static LAST_STALL_MS: AtomicU64 = AtomicU64::new(u64::MAX);

/// Sets the bound (ms); 0 turns the detector off.
pub fn set_bound_ms(ms: u64) {
    BOUND_MS.store(ms, Ordering::Relaxed);
}

/// The bound in ms (0: off).
pub fn bound_ms() -> u64 {
    BOUND_MS.load(Ordering::Relaxed)
}

/// The CPU `me` watches: the next online CPU by index, wrapping; none when alone.
fn watched_by(me: u32) -> Option<&'static PerCpu> {
    let online = || percpu::online().filter(|c| c.index != me);
    online().find(|c| c.index > me).or_else(|| online().next())
}

/// Called from this CPU's timer tick (vector 48, after its own count moved).
pub fn watch(cpu: &IrqGuard) {
    let bound_ms = bound_ms();
    if bound_ms == 0 || crate::panic::going_down() {
        return;
    }
    let me = percpu::current(cpu);
    let Some(target) = watched_by(me.index) else { return };
    let tickless = lapic::tickless();
    let own = match tickless {
        true => crate::time::now_ns(),
        false => me.lapic.timer_ticks.load(Ordering::Relaxed),
    };
    let theirs = target.lapic.timer_ticks.load(Ordering::Relaxed);
    // Tickless, leaving an idle halt is progress too (an idle CPU takes no interrupts).
    let theirs = theirs + target.oneshot.idle_exits.load(Ordering::Acquire);
    let idle = tickless && target.oneshot.idle.load(Ordering::Acquire);
    let w = &me.lockup;
    if idle
        || w.target.load(Ordering::Relaxed) != target.index
        || theirs != w.last_ticks.load(Ordering::Relaxed)
    {
        // An idle CPU is halted with interrupts on: not locked up. Its count restarts.
        w.target.store(target.index, Ordering::Relaxed);
        w.last_ticks.store(theirs, Ordering::Relaxed);
        w.own_ticks_at_change.store(own, Ordering::Relaxed);
        w.reported.store(false, Ordering::Relaxed);
        return;
    }
    // The rate of the watcher's own clock: its ticks, or (tickless) nanoseconds.
    let hz = if tickless { 1_000_000_000 } else { lapic::tick_hz() };
    let stalled_ticks = own - w.own_ticks_at_change.load(Ordering::Relaxed);
    // At least two own ticks: one tick of phase difference is not a stall.
    let bound_ticks = (bound_ms * hz / 1000).max(2);
    if stalled_ticks <= bound_ticks || w.reported.swap(true, Ordering::Relaxed) {
        return;
    }
    report(me, target, stalled_ticks * 1000 / hz);
}

/// Asks the stuck CPU where it is (NMI) and reports it. Runs in the watcher's tick with
/// interrupts off; the wait is bounded by [`NMI_WAIT_NS`].
fn report(me: &PerCpu, target: &PerCpu, stalled_ms: u64) {
    let apic_id = target.apic_id.load(Ordering::Acquire);
    let counts = super::smp::NMI_COUNTS.of(target.index);
    let nmis_before = counts.nmis.load(Ordering::Acquire);
    let sent = lapic::send(Ipi::nmi().to(ApicId::new(apic_id))).is_ok();
    let answered = sent
        && crate::time::spin_until(0, NMI_WAIT_NS, || {
            counts.nmis.load(Ordering::Acquire) != nmis_before
        });
    let rip = if answered {
        counts.rip.load(Ordering::Relaxed)
    } else {
        NMI_UNANSWERED.fetch_add(1, Ordering::Relaxed);
        0
    };
    LAST_WATCHER.store(me.index as u64, Ordering::Relaxed);
    LAST_CPU.store(target.index as u64, Ordering::Relaxed);
    LAST_APIC_ID.store(apic_id as u64, Ordering::Relaxed);
    LAST_RIP.store(rip, Ordering::Relaxed);
    LAST_STALL_MS.store(stalled_ms, Ordering::Relaxed);
    REPORTS.fetch_add(1, Ordering::Release);
    log::error!(
        "lockup: cpu{} (APIC ID {apic_id}) has not ticked for {stalled_ms} ms (seen by cpu{}); \
         interrupted at rip {rip:#x}{}",
        target.index,
        me.index,
        if answered { "" } else { " (its NMI was not answered)" }
    );
}
