//! Tickless timekeeping (`timer=tickless`): each CPU's LAPIC timer is armed for that CPU's
//! earliest deadline only, and a CPU halted in its idle loop with nothing pending has no
//! timer armed at all. The deadlines themselves are chosen by the scheduler
//! (`sched::rearm_timer`); this file programs them into the hardware and keeps the figures.
//!
//! Hardware: TSC-deadline mode where the CPU has it (one WRMSR of the absolute TSC value;
//! 0 disarms), else LAPIC one-shot with divide 16. The one-shot counter has 32 bits: at
//! TCG's 1 GHz input (62.5 MHz after the divide) one count lasts at most about 68 s, so a
//! longer deadline is armed in pieces, each interrupt re-arming the rest (`pieces`).
//!
//! Figures (per CPU, read by proofs): hardware arms and disarms, interrupts that came at
//! or after their deadline, pieces, interrupts later than [`MISS_BOUND_NS`] past their
//! deadline (`missed`) and the worst lateness seen.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use keel_apic::{LapicRegisters, Register, TimerDivide};

use super::cpu::{rdtsc, wrmsr, wrmsr_fence};
use super::lapic;
use super::percpu::PerCpu;
use crate::time;

const IA32_TSC_DEADLINE: u32 = 0x6E0;

/// The one-shot divider (the same as the periodic tick's).
pub const ONESHOT_DIVIDE: TimerDivide = TimerDivide::By16;

/// An interrupt later than this past its deadline counts as a missed deadline.
pub const MISS_BOUND_NS: u64 = 2_000_000;

/// "Nothing armed".
pub const NONE: u64 = u64::MAX;

/// One CPU's one-shot timer state, in its shared per-CPU part: written on that CPU (with
/// interrupts off), read by anyone (the lockup watcher, reports, proofs).
pub struct Oneshot {
    /// The deadline (ns since boot) the hardware is armed for, [`NONE`] when disarmed.
    armed_ns: AtomicU64,
    /// When the armed interrupt is due: the deadline, or the arming time for a deadline
    /// that had already passed (lateness is measured from here).
    due_ns: AtomicU64,
    /// A kernel wait's wake-up time ([`halt_until`]), [`NONE`] when none.
    pub kernel_wake_ns: AtomicU64,
    /// Halted in an idle loop: not locked up, and owes no watchdog deadline.
    pub idle: AtomicBool,
    /// Times this CPU left an idle halt (the lockup watcher counts them as progress).
    pub idle_exits: AtomicU64,
    /// When this CPU last left an idle halt, and when its timer last fired (ns since boot):
    /// the busy watchdog is due one period after the later of the two.
    pub busy_since_ns: AtomicU64,
    pub last_fire_ns: AtomicU64,
    /// Hardware arms, and disarms made on the way into an idle halt.
    pub arms: AtomicU64,
    pub idle_disarms: AtomicU64,
    /// Interrupts at or after their deadline; interrupts before it (a piece of a long
    /// deadline, or a superseded arm that was already pending).
    pub on_deadline: AtomicU64,
    pub pieces: AtomicU64,
    /// Interrupts more than [`MISS_BOUND_NS`] late, and the worst lateness (ns).
    pub missed: AtomicU64,
    pub max_late_ns: AtomicU64,
}

impl Oneshot {
    /// Nothing armed (const: per-CPU blocks are built in statics).
    pub const fn new() -> Self {
        Oneshot {
            armed_ns: AtomicU64::new(NONE),
            due_ns: AtomicU64::new(NONE),
            kernel_wake_ns: AtomicU64::new(NONE),
            idle: AtomicBool::new(false),
            idle_exits: AtomicU64::new(0),
            busy_since_ns: AtomicU64::new(0),
            last_fire_ns: AtomicU64::new(0),
            arms: AtomicU64::new(0),
            idle_disarms: AtomicU64::new(0),
            on_deadline: AtomicU64::new(0),
            pieces: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            max_late_ns: AtomicU64::new(0),
        }
    }
}

impl Default for Oneshot {
    fn default() -> Self {
        Self::new()
    }
}

/// Sets this CPU's LVT up for tickless operation and arms its first deadline (a CPU that
/// has not reached its idle loop is busy: its watchdog is due).
pub fn start(tsc_deadline: bool) {
    setup_lvt(tsc_deadline);
    {
        let cpu = super::percpu::IrqGuard::new();
        // The LVT set-up left nothing armed (also when restarted after a measurement).
        super::percpu::current(&cpu).oneshot.armed_ns.store(NONE, Ordering::Relaxed);
        (crate::upcall::get().rearm_timer)(&cpu);
    }
}

fn setup_lvt(tsc_deadline: bool) {
    let mut apic = lapic::local();
    if tsc_deadline {
        apic.arm_tsc_deadline(super::trap_entry::TIMER_VECTOR).expect("valid vector");
        write_tsc_deadline(0);
    } else {
        let lvt = keel_apic::LvtTimer {
            vector: super::trap_entry::TIMER_VECTOR,
            mode: keel_apic::TimerMode::OneShot,
            masked: false,
        };
        let regs = apic.registers_mut();
        regs.write(Register::TimerDivide, ONESHOT_DIVIDE.encode());
        regs.write(Register::LvtTimer, lvt.encode());
        regs.write(Register::TimerInitialCount, 0);
    }
}

fn write_tsc_deadline(tsc: u64) {
    // Intel: fence so the WRMSR is ordered after earlier stores.
    wrmsr_fence();
    // SAFETY: IA32_TSC_DEADLINE exists (CPUID.1:ECX[24], checked before tickless chose it).
    unsafe { wrmsr(IA32_TSC_DEADLINE, tsc) };
}

/// Timer interrupt on this CPU (tickless): records whether it came on its deadline and how
/// late; the hardware is then disarmed until the scheduler re-arms it.
pub fn fired(me: &PerCpu) {
    let now = time::now_ns();
    let t = &me.oneshot;
    t.last_fire_ns.store(now, Ordering::Relaxed);
    let armed = t.armed_ns.swap(NONE, Ordering::Relaxed);
    let due = t.due_ns.load(Ordering::Relaxed);
    if armed == NONE || now < armed {
        t.pieces.fetch_add(1, Ordering::Relaxed);
        return;
    }
    t.on_deadline.fetch_add(1, Ordering::Relaxed);
    let late = now.saturating_sub(due);
    t.max_late_ns.fetch_max(late, Ordering::Relaxed);
    if late > MISS_BOUND_NS {
        t.missed.fetch_add(1, Ordering::Relaxed);
    }
}

/// Programs this CPU's timer for `deadline_ns` ([`NONE`]: disarm). Interrupts off, on the
/// CPU itself. Nothing is written when that deadline is already armed.
pub fn program(me: &PerCpu, deadline_ns: u64) {
    let t = &me.oneshot;
    if t.armed_ns.load(Ordering::Relaxed) == deadline_ns {
        return;
    }
    t.armed_ns.store(deadline_ns, Ordering::Relaxed);
    let tsc_deadline = lapic::tsc_deadline_mode();
    if deadline_ns == NONE {
        if t.idle.load(Ordering::Relaxed) {
            t.idle_disarms.fetch_add(1, Ordering::Relaxed);
        }
        if tsc_deadline {
            write_tsc_deadline(0);
        } else {
            lapic::local().registers_mut().write(Register::TimerInitialCount, 0);
        }
        return;
    }
    t.arms.fetch_add(1, Ordering::Relaxed);
    let (now_tsc, now_ns) = (rdtsc(), time::now_ns());
    let delta_ns = deadline_ns.saturating_sub(now_ns);
    t.due_ns.store(deadline_ns.max(now_ns), Ordering::Relaxed);
    if tsc_deadline {
        // A deadline already past still fires (the SDM: at once).
        write_tsc_deadline(now_tsc + time::ns_to_tsc(delta_ns).max(1));
    } else {
        let count = oneshot_count(me.lapic.timer_hz.load(Ordering::Relaxed), delta_ns);
        lapic::local().registers_mut().write(Register::TimerInitialCount, count);
    }
}

/// The one-shot initial count for `delta_ns` at input frequency `hz` (divide 16): rounded
/// up, at least 1, at most the counter's range (`keel_apic::timer::oneshot_count_for`,
/// host-tested); the rest of a longer deadline is armed when that piece ends.
fn oneshot_count(hz: u64, delta_ns: u64) -> u32 {
    keel_apic::timer::oneshot_count_for(hz, ONESHOT_DIVIDE, delta_ns)
}

/// Halts this CPU (interrupts on while halted) until `until_ns`, with its timer armed for
/// it: a kernel wait that needs no periodic tick. Returns with interrupts on.
pub fn halt_until(until_ns: u64) {
    loop {
        x86_64::instructions::interrupts::disable();
        if time::now_ns() >= until_ns {
            break;
        }
        let cpu = super::percpu::IrqGuard::new();
        let me = super::percpu::current(&cpu);
        me.oneshot.kernel_wake_ns.store(until_ns, Ordering::Relaxed);
        (crate::upcall::get().rearm_timer)(&cpu);
        drop(cpu);
        x86_64::instructions::interrupts::enable_and_hlt();
    }
    super::percpu::with_current(|me| me.oneshot.kernel_wake_ns.store(NONE, Ordering::Relaxed));
    x86_64::instructions::interrupts::enable();
}
