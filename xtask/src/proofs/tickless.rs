//! Tickless timekeeping (`timer=tickless`, `kernel/src/scenarios/tickless.rs`): an idle CPU
//! takes (almost) no timer interrupts and is not reported as locked up, a busy one keeps its
//! watchdog deadline, kernel sleeps wake on their armed deadline; the lockup detector still
//! catches a CPU spinning with interrupts off, and ring-3 threads sharing a CPU are still
//! preempted at each slice end.

use crate::checks::{custom, eq, for_each_cpu, is, Check};
use crate::trace::{ev_str, ev_u64};

use super::{nmi, user, x2apic_cpu, xapic_cpu, Accels, Proof};
use crate::qemu::CpuSpec;

mod sleep_bench;

/// The boot option every proof here adds.
const TICKLESS: &str = "timer=tickless";

/// An idle CPU may take at most 0.1 timer interrupts per second (issue 25's target).
fn idle_rate_at_most_a_tenth() -> Check {
    custom("the idle CPU took <= 0.1 timer interrupts/s over the idle window", |t| {
        let window_ms = ev_u64(t, "tickless.idle.window_ms")?;
        let taken = ev_u64(t, "tickless.idle.interrupts")?;
        if window_ms < 2000 {
            return Err(format!("idle window {window_ms} ms is too short to measure"));
        }
        // taken / (window_ms / 1000) <= 0.1
        if taken * 10_000 <= window_ms {
            Ok(())
        } else {
            Err(format!("{taken} timer interrupts on the idle CPU in {window_ms} ms"))
        }
    })
}

/// A busy CPU takes its watchdog interrupts: at least half as many as one per watchdog
/// period (host noise), and no more than twice as many plus two (no hidden periodic tick).
fn busy_cpu_keeps_watchdog() -> Check {
    custom("the busy CPU took its watchdog interrupts (and no periodic tick)", |t| {
        let window_ms = ev_u64(t, "tickless.busy.window_ms")?;
        let taken = ev_u64(t, "tickless.busy.interrupts")?;
        let period_ms = ev_u64(t, "tickless.watchdog_ms")?.max(1);
        let expected = window_ms / period_ms;
        let (lo, hi) = (expected / 2, 2 * expected + 2);
        if lo >= 1 && (lo..=hi).contains(&taken) {
            Ok(())
        } else {
            Err(format!("{taken} interrupts in {window_ms} ms; expected {lo}..={hi}"))
        }
    })
}

/// Kernel sleeps of 1..16 ms woke within this of their deadline (an unarmed sleep waits for
/// the next watchdog interrupt, up to 250 ms). TCG on a loaded 2-core host showed up to
/// 22 ms (one vCPU thread waiting for a host CPU); the deadline itself is exact.
const SLEEP_LATE_BOUND_US: u64 = 50_000;
/// Sleeps of the 32 allowed past the bound: a host that deschedules a vCPU thread (seen:
/// 58 ms once under KVM with the host loaded) delays a wake-up the guest armed on time.
/// An unarmed sleep is late nearly every time.
const SLEEPS_PAST_BOUND_ALLOWED: usize = 2;

/// Every kernel sleep's lateness, read per sleep: the median within the bound, and at most
/// [`SLEEPS_PAST_BOUND_ALLOWED`] past it.
fn sleeps_wake_on_time() -> Check {
    custom("kernel sleeps woke on their deadline (median and all but 2 of 32 within 50 ms)", |t| {
        let mut lates: Vec<u64> = t
            .evidence
            .matching("tickless.sleep.*.*.late_us")
            .map(|(k, v)| v.as_u64().ok_or_else(|| format!("{k} = {v}")))
            .collect::<Result<_, _>>()?;
        if lates.len() != 32 {
            return Err(format!("{} sleeps reported, want 32", lates.len()));
        }
        lates.sort_unstable();
        let median = lates[lates.len() / 2];
        let past = lates.iter().filter(|&&l| l > SLEEP_LATE_BOUND_US).count();
        if median <= SLEEP_LATE_BOUND_US && past <= SLEEPS_PAST_BOUND_ALLOWED {
            Ok(())
        } else {
            Err(format!("median {median} us, {past} of 32 past {SLEEP_LATE_BOUND_US} us"))
        }
    })
}

/// The timer mode read back from every CPU's LVT is one-shot or TSC-deadline, never periodic.
fn lvt_one_shot() -> Check {
    custom(
        "every CPU's LVT timer is one-shot or TSC-deadline (timer.mode, cpu.*.timer_mode)",
        |t| {
            let mode = ev_str(t, "timer.mode")?;
            if mode != "one-shot" && mode != "tsc-deadline" {
                return Err(format!("timer.mode = {mode}"));
            }
            match t.evidence.matching("cpu.*.timer_mode").find(|(_, v)| v.as_str() != mode) {
                Some((k, v)) => Err(format!("{k} = {v}, timer.mode = {mode}")),
                None => Ok(()),
            }
        },
    )
}

fn kernel_only(p: Proof, cpu: CpuSpec, mode: &'static str) -> Proof {
    p.scenario("tickless")
        .args(TICKLESS)
        .smp(2)
        .cpu(cpu)
        .timeout_secs(120)
        .check(eq("lapic.mode", mode))
        .check(eq("smp.online", 2))
        .check(eq("timer.requested", "tickless"))
        .check(eq("tickless.enabled", "yes"))
        .check(lvt_one_shot())
        .check(eq("timer.tickless", "yes"))
        .check(idle_rate_at_most_a_tenth())
        .check(eq("tickless.idle.lockup_reports", 0))
        .check(eq("lockup.reports", 0))
        .check(busy_cpu_keeps_watchdog())
        .check(eq("tickless.sleep.count", 32))
        .check(sleeps_wake_on_time())
        .check(for_each_cpu("cpu.*.timer_arms", is::ge(1)).count_eq_key("smp.online"))
}

pub(super) fn proofs() -> Vec<Proof> {
    vec![
        sleep_bench::proof(),
        kernel_only(Proof::new("tickless", "timer=tickless (xAPIC): idle CPU <= 0.1 timer interrupts/s and not reported, busy CPU keeps its watchdog, sleeps wake on their deadline"), xapic_cpu(), "xapic"),
        kernel_only(Proof::new("tickless-x2apic", "the same in x2APIC mode"), x2apic_cpu(), "x2apic"),
        // TCG offers no TSC-deadline timer; KVM exposes it to qemu64 when asked.
        kernel_only(Proof::new("tickless-tsc-deadline", "the same with the timer in TSC-deadline mode (KVM)").accels(Accels::KvmOnly), CpuSpec::new("qemu64", &["+x2apic", "+tsc-deadline"]), "x2apic")
            .check(eq("timer.mode", "tsc-deadline")),
        nmi::lockup_proof(Proof::new("lockup-tickless", "timer=tickless: a CPU spinning with interrupts off is still reported by its watcher (x2APIC)").args(TICKLESS), x2apic_cpu(), nmi::SPINNER_X2APIC),
        nmi::lockup_proof(Proof::new("lockup-tickless-xapic", "the same in xAPIC mode").args(TICKLESS), xapic_cpu(), nmi::SPINNER_XAPIC),
        // Both programs run and end on CPU 1; the second starts only once the boot CPU, idle
        // in its supervising loop with nothing armed, has seen the first one destroyed.
        user::user_proof(Proof::new("hostile-ring-tickless", "timer=tickless: programs ending on CPU 1 wake the boot CPU's supervising loop (the second starts after the first, the faulter is killed)").args(TICKLESS), "hostile-ring", &["hostile"])
            .check(eq("timer.tickless", "yes"))
            .check(eq("user.hostile.unexpected_ok", 0))
            .check(eq("proc.faulter.fault_vector", 14))
            .check(eq("proc.faulter.exit", 0xffff_000e_u64)),
        user::preempt(Proof::new("preempt-tickless", "timer=tickless: two ring-3 spinners on one CPU are preempted at each slice end; the main thread's sleep wakes an idle CPU").args(TICKLESS))
            .check(eq("timer.tickless", "yes"))
            // 300 ms of sharing at 100 Hz is 30 slice ends; an unarmed slice end leaves only
            // the 250 ms watchdog (one or two).
            .check(custom("CPU 1 preempted at >= 10 slice ends", |t| {
                match ev_u64(t, "cpu.1.preemptions")? {
                    n if n >= 10 => Ok(()),
                    n => Err(format!("cpu.1.preemptions = {n}")),
                }
            })),
    ]
}
