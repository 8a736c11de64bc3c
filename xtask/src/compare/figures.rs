//! The comparison figures (Keel beside Linux, per accelerator) and the targets each must meet.

use super::*;

pub(super) fn figures(
    keel: &[JobResult],
    linux: &[LinuxRun],
    accels: &[Accel],
    kvm_skip: Option<&str>,
    opts: &Options,
) -> Vec<Figure> {
    let mut figs = Vec::new();
    for &accel in accels {
        for mode in MODES {
            let bench = format!("bench-{mode}");
            let fig = |metric, unit, smp, keel, linux| Figure {
                metric,
                unit,
                mode,
                smp,
                accel,
                keel,
                linux,
                round_ratios: vec![],
            };
            figs.push(fig(
                "ipi_round_trip_busy",
                "cycles",
                2,
                keel_side(
                    keel,
                    &bench,
                    accel,
                    "bench.ipi_rtt.busy.median_cycles",
                    Some("bench.ipi_rtt.busy.p99_cycles"),
                    Some("bench.ipi_rtt.busy.samples"),
                ),
                linux_side(linux, &format!("{mode}-smp2"), accel, "ipi", kvm_skip),
            ));
            figs.push(fig(
                "ipi_wake_idle",
                "cycles",
                2,
                keel_side(
                    keel,
                    &bench,
                    accel,
                    "bench.ipi_rtt.idle.median_cycles",
                    Some("bench.ipi_rtt.idle.p99_cycles"),
                    Some("bench.ipi_rtt.idle.samples"),
                ),
                Side::missing(NO_LINUX_IDLE_IPI),
            ));
            for smp in [2u32, 4, 8] {
                if smp > 2 && opts.no_scale {
                    continue;
                }
                figs.push(fig(
                    "unmap_one_page",
                    "cycles",
                    smp,
                    keel_shootdown(keel, mode, smp, accel),
                    linux_side(
                        linux,
                        &format!("{mode}-smp{smp}"),
                        accel,
                        &format!("munmap_{smp}cpu"),
                        kvm_skip,
                    ),
                ));
            }
            let grant = if mode == "xapic" { "interrupt-grant" } else { "interrupt-grant-x2apic" };
            figs.push(fig(
                "irq_to_wake_intx",
                "cycles",
                2,
                keel_side(
                    keel,
                    grant,
                    accel,
                    "user.edu_intx.raise_to_wake_median_cycles",
                    Some("user.edu_intx.raise_to_wake_p99_cycles"),
                    Some("user.edu_intx.raised"),
                ),
                linux_side(linux, &format!("{mode}-smp2-edu"), accel, "uio", kvm_skip),
            ));
            if mode == "xapic" {
                figs.push(fig(
                    "irq_to_wake_intx_remote",
                    "cycles",
                    2,
                    keel_side(
                        keel,
                        "interrupt-grant-remote",
                        accel,
                        "user.edu_intx.raise_to_wake_median_cycles",
                        Some("user.edu_intx.raise_to_wake_p99_cycles"),
                        Some("user.edu_intx.raised"),
                    ),
                    linux_side(linux, &format!("{mode}-smp2-edu"), accel, "uio_remote", kvm_skip),
                ));
            }
            let (msi_proof, msi_prefix) = if mode == "x2apic" {
                ("bench-ring", "user.edu_msi")
            } else {
                (grant, "user.edu_msi")
            };
            figs.push(fig(
                "irq_to_wake_msi",
                "cycles",
                2,
                keel_side(
                    keel,
                    msi_proof,
                    accel,
                    &format!("{msi_prefix}.raise_to_wake_median_cycles"),
                    Some(&format!("{msi_prefix}.raise_to_wake_p99_cycles")),
                    Some(&format!("{msi_prefix}.raised")),
                ),
                Side::missing(NO_LINUX_MSI),
            ));
            for smp in [2u32, 8, 64] {
                if smp > 2 && opts.no_scale {
                    continue;
                }
                let name = if smp == 2 { bench.clone() } else { format!("{bench}-smp{smp}") };
                let keel_side = if smp == 64 && opts.no_64 {
                    Side::missing("64-vCPU runs skipped (--no-64)")
                } else {
                    keel_side(keel, &name, accel, "smp.all_online_us", None, None)
                };
                let linux_side = if smp == 64 && opts.no_64 {
                    Side::missing("64-vCPU runs skipped (--no-64)")
                } else {
                    linux_side(linux, &format!("{mode}-smp{smp}"), accel, "boot", kvm_skip)
                };
                figs.push(fig("all_cpus_online", "us", smp, keel_side, linux_side));
            }
        }
    }
    if opts.wake_only {
        figs.retain(|f| f.metric.starts_with("irq_to_wake"));
    }
    figs
}

/// One of the goals in docs/benchmarks.md ("Targets"): a ratio measured in each round.
#[derive(Clone, Debug)]
pub struct Target {
    pub what: String,
    /// Met when the median over rounds is at most this.
    pub limit: f64,
    /// The ratio in each round (`None`: a side was missing).
    pub rounds: Vec<Option<f64>>,
}

impl Target {
    pub fn median(&self) -> Option<f64> {
        let mut v: Vec<f64> = self.rounds.iter().flatten().copied().collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    }
    pub fn met(&self) -> Option<bool> {
        self.median().map(|m| m <= self.limit)
    }
}

/// A number from one Keel proof's evidence.
pub(super) fn keel_u64(results: &[JobResult], name: &str, accel: Accel, key: &str) -> Option<u64> {
    match &keel_result(results, name, accel)?.outcome {
        Outcome::Ran { transcript, .. } => transcript.evidence.get(key).and_then(|v| v.as_u64()),
        _ => None,
    }
}

/// This round's value of every target (TCG figures; one round's figures `figs`).
pub(super) fn targets(figs: &[Figure], keel: &[JobResult]) -> Vec<Target> {
    let ratio = |metric: &str, mode: &str| {
        figs.iter()
            .find(|f| f.metric == metric && f.mode == mode && f.smp == 2 && f.accel == Accel::Tcg)
            .and_then(Figure::ratio)
    };
    let mut out = Vec::new();
    let mut t = |what: String, limit: f64, r: Option<f64>| {
        out.push(Target { what, limit, rounds: vec![r] })
    };
    for mode in MODES {
        let bench = format!("bench-{mode}");
        let ev = |key: &str| keel_u64(keel, &bench, Accel::Tcg, key);
        t(
            format!("{mode}: busy IPI round trip / Linux membarrier"),
            0.5,
            ratio("ipi_round_trip_busy", mode),
        );
        let own = match (
            ev("bench.shootdown.1cpu.median_cycles"),
            ev("bench.ipi_rtt.busy.median_cycles"),
        ) {
            (Some(s), Some(i)) if i > 0 => Some(s as f64 / i as f64),
            _ => None,
        };
        t(format!("{mode}: 1-CPU shootdown / Keel busy IPI round trip (same boot)"), 1.3, own);
        t(
            format!("{mode}: 1-CPU shootdown / ping to the same holder, alternating samples"),
            1.3,
            ev("bench.shootdown.1cpu.per_mille_of_ipi_rtt").map(|p| p as f64 / 1000.0),
        );
        t(
            format!("{mode}: unmap (1 other CPU) / Linux munmap"),
            0.2,
            ratio("unmap_one_page", mode),
        );
        t(
            format!("{mode}: device -> driver wake (INTx) / Linux UIO"),
            0.5,
            ratio("irq_to_wake_intx", mode),
        );
    }
    out
}
