//! `bench-compare --timer`: timer interrupts per second taken by an idle CPU and by a CPU
//! running one busy thread (8 and 64 vCPUs), and how late a 1 ms / 10 ms sleep wakes, Keel
//! (tickless measured, the periodic tick as reference) beside Linux 6.12 on the same VM.
//!
//! Keel: the `tickless` scenario (CPU 1 idle for 3 s, then spinning with interrupts on for
//! 2 s; the interrupts are the per-CPU counter incremented in the timer handler) and
//! `bench-timer-sleep` (ring-3 `TimerSleep` on CPU 1). Linux: `kbench timer`
//! (`/proc/interrupts` LOC of CPU 1 before and after the same windows; `clock_nanosleep` on
//! CPU 1). Method and figures: docs/benchmarks.md ("Timer").

use super::*;
use figures::keel_u64;

/// Keel's timer scenario (`proof=tickless`, xAPIC) and its ring-3 sleep benchmark.
const SCENARIO_PROOF: &str = "tickless";
const SLEEP_PROOF: &str = "bench-timer-sleep";
/// vCPU counts of the interrupt figures; the sleep figures are taken at the first.
const CPUS: [u32; 2] = [8, 64];
/// Keel's timer modes, each as a figure's `mode`: tickless is measured against the targets,
/// the periodic tick is the reference row.
const MODES: [(&str, &str); 2] =
    [("xapic-tickless", "timer=tickless"), ("xapic-periodic", "timer=periodic")];
/// The sleep figures: name, length (ms), suffix of Linux's `sleep_<ms>ms<suffix>` metric.
/// Keel's side is the same `TimerSleep` in each pair; Linux's with its default timer slack
/// (50 us for a normal task: the targets) and with the least slack, 1 ns (reference).
const SLEEP_FIGURES: [(&str, u64, &str); 4] = [
    ("sleep_wake_latency_1ms", 1, ""),
    ("sleep_wake_latency_10ms", 10, ""),
    ("sleep_wake_latency_1ms_vs_slack1ns", 1, "_slack1ns"),
    ("sleep_wake_latency_10ms_vs_slack1ns", 10, "_slack1ns"),
];
/// Unit of the interrupt-rate figures: integers, and the 0.1/s target is 100 in it.
const RATE_UNIT: &str = "irqs/1000 s";

fn memory(smp: u32) -> &'static str {
    if smp <= 8 {
        "512M"
    } else {
        "1G"
    }
}

/// The VM of every timer run with `smp` vCPUs, on both sides: the `tickless` proof's machine
/// (q35, `qemu64,-x2apic`) with `-smp` and `-m` set.
fn machine(smp: u32) -> Option<MachineSpec> {
    let base = find(SCENARIO_PROOF)?.machine;
    Some(MachineSpec { smp, memory: memory(smp), ..base })
}

fn cpus(opts: &Options) -> impl Iterator<Item = u32> + '_ {
    CPUS.into_iter().filter(|&n| n != 64 || !opts.no_64)
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn scenario_name(mode: &str, smp: u32) -> String {
    format!("timer-{}-smp{smp}", mode.trim_start_matches("xapic-"))
}

fn sleep_name(mode: &str, smp: u32) -> String {
    format!("{SLEEP_PROOF}-{}-smp{smp}", mode.trim_start_matches("xapic-"))
}

fn linux_label(smp: u32) -> String {
    format!("timer-smp{smp}")
}

/// Keel runs: the scenario in both timer modes at each vCPU count, the sleep benchmark in
/// both modes at the first. The scenario's own checks assume 2 CPUs and tickless, so its
/// variants here carry none (as the bench variants at 4/8/64 vCPUs); the sleep proof keeps
/// its checks, which hold in both modes.
pub(super) fn keel_proofs(opts: &Options) -> (Vec<Proof>, Vec<String>) {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    let (Some(scenario), Some(sleep)) = (find(SCENARIO_PROOF), find(SLEEP_PROOF)) else {
        notes.push(format!("Keel proof {SCENARIO_PROOF} or {SLEEP_PROOF} is not in the registry"));
        return (out, notes);
    };
    for (mode, arg) in MODES {
        for smp in cpus(opts) {
            let Some(m) = machine(smp) else { continue };
            let mut p = scenario.clone().args(arg).timeout_secs(900);
            p.name = leak(scenario_name(mode, smp));
            p.machine = m;
            p.checks.clear();
            out.push(p);
        }
        let smp = CPUS[0];
        let Some(m) = machine(smp) else { continue };
        let mut p = sleep.clone().args(arg).timeout_secs(600);
        p.name = leak(sleep_name(mode, smp));
        p.machine = m;
        out.push(p);
    }
    (out, notes)
}

/// Linux runs: one boot per vCPU count, `kbench=timer` (TCG only, as Keel's ring-3 runs).
pub(super) fn linux_runs(accel: Accel, opts: &Options) -> Vec<LinuxRun> {
    let lpj = opts.linux_lpj.map(|n| format!("lpj={n}")).unwrap_or_default();
    cpus(opts)
        .filter_map(|smp| {
            Some(LinuxRun {
                label: linux_label(smp),
                mode: "xapic",
                accel,
                machine: machine(smp)?,
                benches: "timer",
                extra_cmdline: lpj.clone(),
                timeout: Duration::from_secs(if smp <= 8 { 600 } else { 1800 }),
                args: vec![],
                output: None,
                guest: GuestOutput::default(),
                failure: None,
            })
        })
        .collect()
}

/// Interrupts per 1,000 s from a count over a window in milliseconds.
pub fn per_1000_s(taken: u64, window_ms: u64) -> Option<u64> {
    (window_ms > 0).then(|| taken * 1_000_000 / window_ms)
}

/// Keel's rate on CPU 1 in `phase` (`idle`/`busy`): the handler-counted interrupts over the
/// scenario's measured window.
fn keel_rate(results: &[JobResult], name: &str, phase: &str) -> Side {
    let taken_key = format!("tickless.{phase}.interrupts");
    let window_key = format!("tickless.{phase}.window_ms");
    let side = keel_side(results, name, Accel::Tcg, &taken_key, None, None);
    let Some(taken) = side.median else { return side };
    let window = keel_u64(results, name, Accel::Tcg, &window_key).unwrap_or(0);
    match per_1000_s(taken, window) {
        Some(rate) => Side {
            median: Some(rate),
            n: Some(1),
            source: format!("{name}/tcg: {taken_key}={taken} over {window_key}={window} (CPU 1)"),
            ..side
        },
        None => Side::missing(format!("{name}/tcg printed no {window_key}")),
    }
}

fn linux_run<'a>(runs: &'a [LinuxRun], label: &str) -> Result<&'a LinuxRun, Side> {
    runs.iter()
        .find(|r| r.label == label && r.accel == Accel::Tcg)
        .ok_or_else(|| Side::missing(format!("no Linux run {label} under tcg")))
}

fn linux_missing(r: &LinuxRun, what: &str) -> Side {
    let err =
        r.guest.results.iter().find(|(k, _)| k.ends_with("error")).map(|(k, v)| format!("{k}={v}"));
    Side::missing(format!(
        "linux {}/tcg: {}",
        r.label,
        err.or(r.failure.clone()).unwrap_or_else(|| format!("no {what} result"))
    ))
}

/// Linux's rate on the chosen CPU in `phase`: LOC before and after the window.
fn linux_rate(runs: &[LinuxRun], label: &str, phase: &str) -> Side {
    let r = match linux_run(runs, label) {
        Ok(r) => r,
        Err(s) => return s,
    };
    let g = &r.guest;
    let key = |f: &str| format!("timer.{phase}_{f}");
    match (g.u64(&key("irqs")), g.u64(&key("window_us"))) {
        (Some(taken), Some(us)) if us >= 1000 => Side {
            median: per_1000_s(taken, us / 1000),
            p99: None,
            n: Some(1),
            samples: vec![],
            source: format!(
                "linux {label}/tcg: kbench timer, /proc/interrupts LOC of CPU {} +{taken} over {us} us",
                g.u64("timer.cpu").map_or_else(|| "?".into(), |c| c.to_string())
            ),
            missing: None,
        },
        _ => linux_missing(r, &key("irqs")),
    }
}

/// Linux's `clock_nanosleep` lateness (ns) of `sleep_<ms>ms<suffix>` (`""`: default timer
/// slack; `"_slack1ns"`: after `PR_SET_TIMERSLACK` 1 ns).
fn linux_sleep(runs: &[LinuxRun], label: &str, ms: u64, suffix: &str) -> Side {
    let r = match linux_run(runs, label) {
        Ok(r) => r,
        Err(s) => return s,
    };
    let metric = format!("sleep_{ms}ms{suffix}");
    let g = &r.guest;
    match g.u64(&format!("{metric}.median_ns")) {
        Some(m) => Side {
            median: Some(m),
            p99: g.u64(&format!("{metric}.p99_ns")),
            n: g.u64(&format!("{metric}.samples")),
            samples: g.samples.get(&metric).cloned().unwrap_or_default(),
            source: format!("linux {label}/tcg: kbench timer {metric} (clock_nanosleep on CPU 1)"),
            missing: None,
        },
        None => linux_missing(r, &metric),
    }
}

pub(super) fn figures(keel: &[JobResult], linux: &[LinuxRun], opts: &Options) -> Vec<Figure> {
    let mut figs = Vec::new();
    for (mode, _) in MODES {
        let fig = |metric, unit, smp, keel, linux| Figure {
            metric,
            unit,
            mode,
            smp,
            accel: Accel::Tcg,
            keel,
            linux,
            round_ratios: vec![],
        };
        for smp in cpus(opts) {
            let (name, label) = (scenario_name(mode, smp), linux_label(smp));
            for (metric, phase) in
                [("timer_irqs_per_s_idle", "idle"), ("timer_irqs_per_s_busy", "busy")]
            {
                figs.push(fig(
                    metric,
                    RATE_UNIT,
                    smp,
                    keel_rate(keel, &name, phase),
                    linux_rate(linux, &label, phase),
                ));
            }
        }
        let smp = CPUS[0];
        let name = sleep_name(mode, smp);
        for (metric, ms, suffix) in SLEEP_FIGURES {
            let key = |f: &str| format!("user.smptest.sleep_{ms}ms.{f}");
            figs.push(fig(
                metric,
                "ns late",
                smp,
                keel_side(
                    keel,
                    &name,
                    Accel::Tcg,
                    &key("median_ns"),
                    Some(&key("p99_ns")),
                    Some(&key("samples")),
                ),
                linux_sleep(linux, &linux_label(smp), ms, suffix),
            ));
        }
    }
    figs
}

/// Keel / Linux where a zero Linux figure still decides: 0/0 is 0, k/0 is infinite.
fn ratio_or_zero(f: &Figure) -> Option<f64> {
    match (f.keel.median?, f.linux.median?) {
        (0, 0) => Some(0.0),
        (_, 0) => Some(f64::INFINITY),
        (k, l) => Some(k as f64 / l as f64),
    }
}

/// The targets of issue 25, on the tickless rows: an idle Keel CPU takes at most 0.1 timer
/// interrupts/s and no more than Linux's idle CPU; wake-ups no later than Linux's.
pub(super) fn targets(figs: &[Figure]) -> Vec<Target> {
    let find = |metric: &str, smp: u32| {
        figs.iter().find(|f| f.metric == metric && f.smp == smp && f.mode == MODES[0].0)
    };
    let mut out = Vec::new();
    let mut t = |what: String, limit: f64, r: Option<f64>| {
        out.push(Target { what, limit, rounds: vec![r] })
    };
    for smp in CPUS {
        let Some(idle) = find("timer_irqs_per_s_idle", smp) else { continue };
        t(
            format!("smp{smp} tickless: idle Keel CPU, timer interrupts/s (a rate, not a ratio)"),
            0.1,
            idle.keel.median.map(|r| r as f64 / 1000.0),
        );
        t(
            format!("smp{smp} tickless: idle CPU timer interrupts, Keel / Linux"),
            1.0,
            ratio_or_zero(idle),
        );
    }
    for (metric, _, _) in SLEEP_FIGURES {
        if let Some(f) = find(metric, CPUS[0]) {
            t(format!("smp{} tickless: {metric} (median), Keel / Linux", CPUS[0]), 1.0, f.ratio());
        }
    }
    out
}

/// What the timer figures include, for the report's notes.
pub(super) fn notes() -> Vec<String> {
    vec![
        format!("Timer figures ({RATE_UNIT}): interrupts per 1,000 s, so the 0.1/s target is 100. Keel: CPU 1's timer interrupts counted in its vector-48 handler over the `tickless` scenario's windows (idle: CPU 1 in its idle loop, 3 s; busy: CPU 1 spinning in the kernel with interrupts on, 2 s), booted with `timer=tickless` (measured) and `timer=periodic` (reference rows). Linux: the `LOC` row of /proc/interrupts for CPU 1 before and after the same windows (idle: kbench sleeping on CPU 0; busy: one thread spinning in user mode pinned to CPU 1)."),
        "Sleep figures (ns late = observed - requested): Keel: a ring-3 thread on CPU 1 times each `TimerSleep` of 1 ms / 10 ms on the TSC around the call (`bench-timer-sleep`, 200 each after 5 warm-up); Linux: `clock_nanosleep(CLOCK_MONOTONIC)` of the same lengths pinned to CPU 1, timed with `clock_gettime` (200 each after 5 warm-up), with the default timer slack (50 us for a normal task; the `sleep_wake_latency_*ms` rows) and again after `PR_SET_TIMERSLACK` 1 ns (the `*_vs_slack1ns` rows, same Keel figure).".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "KBENCH start cpus=8 kernel=6.12\n\
        DMESG            CPU0       CPU1\n\
        RESULT timer.cpu=1\n\
        SAMPLES timer_idle_percpu 40 3 2 2 1 1 1 1\n\
        RESULT timer.idle_window_us=3000400\n\
        RESULT timer.idle_irqs=3\n\
        RESULT timer.idle_milli_per_s=999\n\
        SAMPLES timer_busy_percpu 30 500 1 1 1 1 1 1\n\
        RESULT timer.busy_window_us=2000000\n\
        RESULT timer.busy_irqs=500\n\
        SAMPLES sleep_1ms 60000 70000 80000\n\
        RESULT sleep_1ms.samples=3\n\
        RESULT sleep_1ms.early=0\n\
        RESULT sleep_1ms.median_ns=70000\n\
        RESULT sleep_1ms.p99_ns=70000\n\
        KBENCH done\n";

    fn run(console: &str, failure: Option<&str>) -> LinuxRun {
        let mut r = linux_runs(Accel::Tcg, &Options::default()).remove(0);
        r.guest = GuestOutput::parse(console);
        r.failure = failure.map(str::to_string);
        r
    }

    #[test]
    fn linux_timer_console_gives_rates_and_sleeps() {
        let runs = [run(CONSOLE, None)];
        let idle = linux_rate(&runs, "timer-smp8", "idle");
        assert_eq!(idle.median, Some(1000), "3 in 3000 ms: 1/s");
        assert!(idle.source.contains("LOC of CPU 1 +3"), "{}", idle.source);
        assert_eq!(linux_rate(&runs, "timer-smp8", "busy").median, Some(250_000));
        let s = linux_sleep(&runs, "timer-smp8", 1, "");
        assert_eq!((s.median, s.p99, s.n), (Some(70_000), Some(70_000), Some(3)));
        assert_eq!(s.samples, [60_000, 70_000, 80_000]);
        let missing = linux_sleep(&runs, "timer-smp8", 10, "");
        assert!(missing.missing.unwrap().contains("no sleep_10ms result"));
        let slack = linux_sleep(&runs, "timer-smp8", 1, "_slack1ns").missing.unwrap();
        assert!(slack.contains("no sleep_1ms_slack1ns result"), "{slack}");
        let failed = [run("RESULT timer.error=cpus_1_cpu_1\n", Some("guest hung"))];
        let why = linux_rate(&failed, "timer-smp8", "idle").missing.unwrap();
        assert!(why.contains("timer.error=cpus_1_cpu_1"), "{why}");
        assert!(linux_rate(&runs, "timer-smp64", "idle").missing.is_some());
    }

    #[test]
    fn rates_and_targets() {
        assert_eq!(per_1000_s(0, 3000), Some(0));
        assert_eq!(per_1000_s(12, 3000), Some(4000));
        assert_eq!(per_1000_s(1, 0), None);
        let side = |m: Option<u64>| Side { median: m, ..Side::default() };
        let fig = |metric, k, l| Figure {
            metric,
            unit: RATE_UNIT,
            mode: MODES[0].0,
            smp: 8,
            accel: Accel::Tcg,
            keel: side(k),
            linux: side(l),
            round_ratios: vec![],
        };
        let t = targets(&[
            fig("timer_irqs_per_s_idle", Some(0), Some(0)),
            fig("sleep_wake_latency_1ms", Some(50), Some(100)),
        ]);
        assert_eq!(t.len(), 3);
        assert_eq!((t[0].median(), t[0].met()), (Some(0.0), Some(true)));
        assert_eq!((t[1].median(), t[1].met()), (Some(0.0), Some(true)), "0 / 0 meets");
        assert_eq!(t[2].median(), Some(0.5));
        let t = targets(&[fig("timer_irqs_per_s_idle", Some(200), Some(0))]);
        assert_eq!(t[0].met(), Some(false), "0.2/s is over 0.1/s");
        assert_eq!(t[1].met(), Some(false), "more than Linux's 0");
    }

    #[test]
    fn keel_and_linux_boot_the_same_vm() {
        let opts = Options::default();
        let (keel, notes) = keel_proofs(&opts);
        assert!(notes.is_empty(), "{notes:?}");
        let names: Vec<&str> = keel.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                "timer-tickless-smp8",
                "timer-tickless-smp64",
                "bench-timer-sleep-tickless-smp8",
                "timer-periodic-smp8",
                "timer-periodic-smp64",
                "bench-timer-sleep-periodic-smp8"
            ]
        );
        let linux = linux_runs(Accel::Tcg, &opts);
        for p in &keel {
            let l = linux.iter().find(|l| l.machine.smp == p.machine.smp).unwrap();
            assert_eq!(l.machine, p.machine, "{}", p.name);
        }
        assert!(keel[0].cmdline.contains("timer=tickless"), "{}", keel[0].cmdline);
        assert!(keel[3].cmdline.contains("timer=periodic"), "{}", keel[3].cmdline);
        let no64 = Options { no_64: true, ..Options::default() };
        assert_eq!(linux_runs(Accel::Tcg, &no64).len(), 1);
        assert_eq!(keel_proofs(&no64).0.len(), 4);
    }
}
