//! `bench-compare --nvme`: 4 KiB random reads through Keel's ring-3 NVMe driver
//! (`bench-nvme-*` proofs) and through Linux's `nvme` driver (`kbench nvme`, io_uring), on
//! the same VM with the same disk image: queue depth 1 and 32, one queue and one per CPU,
//! at each CPU count of `--cpus` (default 2 and 4). Figures: the latency (median and p99
//! cycles, Linux's samples plotted) and IOPS of each configuration; a plot of IOPS against
//! the number of queues.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::*;
use crate::proofs::nvme_bench::{bench_nvme, DISK_BYTES, READS};

/// CPU counts measured when `--cpus` names none.
pub const DEFAULT_CPUS: [u32; 2] = [2, 4];
/// The four configurations: (figure name, queue depth, one queue per CPU).
const CONFIGS: [(&str, u64, bool); 4] = [
    ("nvme_randread_qd1_q1", 1, false),
    ("nvme_randread_qd32_q1", 32, false),
    ("nvme_randread_qd1_percpu", 1, true),
    ("nvme_randread_qd32_percpu", 32, true),
];
/// Kernel options of every Linux run: DMA through the IOMMU as Keel's (the Debian kernel
/// leaves VT-d's DMA translation off unless asked); no IO-APIC timer check (on a loaded
/// host the 4-vCPU guest failed it under TCG: "timer doesn't work through
/// Interrupt-remapped IO-APIC", a panic before init).
const LINUX_OPTIONS: &str = "intel_iommu=on no_timer_check";

fn cpus(opts: &Options) -> Vec<u32> {
    if opts.cpus.is_empty() {
        DEFAULT_CPUS.to_vec()
    } else {
        opts.cpus.clone()
    }
}

/// The `iops` figure's name of a configuration.
fn iops_metric(metric: &str) -> &'static str {
    Box::leak(format!("{metric}_iops").into_boxed_str())
}

/// Keel's `user.nvme_bench.qd<D>_q<N>` prefix of a configuration at `smp` CPUs.
pub fn keel_prefix(qd: u64, per_cpu: bool, smp: u32) -> String {
    format!("user.nvme_bench.qd{qd}_q{}", if per_cpu { smp } else { 1 })
}

/// Keel's proofs: the four configurations at each CPU count.
pub(super) fn keel_proofs(opts: &Options) -> (Vec<Proof>, Vec<String>) {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for smp in cpus(opts) {
        if !(2..=crate::proofs::nvme_bench::MAX_SMP).contains(&smp) {
            notes.push(format!("--cpus {smp}: the NVMe benchmark runs on 2 to 8 CPUs"));
            continue;
        }
        for (_, qd, per_cpu) in CONFIGS {
            out.push(bench_nvme(qd, per_cpu, smp));
        }
    }
    (out, notes)
}

/// The disk image Linux reads: the pattern Keel's runner writes for the proofs.
fn write_disk(path: &Path) -> Result<()> {
    let mut words = vec![0u64; (DISK_BYTES / 8) as usize];
    keel_nvme::pattern::fill(&mut words, 0, keel_nvme::pattern::IMAGE_SEED);
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    std::fs::create_dir_all(path.parent().expect("a directory"))?;
    std::fs::write(path, bytes)?;
    Ok(())
}

/// One Linux boot per CPU count on the Keel proofs' machine, the disk image attached as
/// Keel's runner attaches it (`-drive ...,id=nvm0`, named by the same `-device nvme`).
pub(super) fn linux_runs(opts: &Options, dir: &Path) -> Result<Vec<LinuxRun>> {
    let disk = dir.join("nvme.disk");
    write_disk(&disk)?;
    let mut runs = Vec::new();
    for smp in cpus(opts) {
        if !(2..=crate::proofs::nvme_bench::MAX_SMP).contains(&smp) {
            continue;
        }
        let mut machine = bench_nvme(1, true, smp).machine;
        let drive = format!("file={},if=none,id=nvm0,format=raw", disk.display());
        machine.extra.extend(["-drive".to_string(), drive]);
        runs.push(LinuxRun {
            label: format!("nvme-smp{smp}"),
            mode: "x2apic",
            accel: Accel::Tcg,
            machine,
            benches: "nvme",
            extra_cmdline: format!("{LINUX_OPTIONS} kbench_nvme_n={READS}"),
            timeout: Duration::from_secs(900),
            args: vec![],
            output: None,
            guest: GuestOutput::default(),
            failure: None,
        });
    }
    Ok(runs)
}

/// Linux's IOPS of `metric` from the run with `label`.
fn linux_iops(runs: &[LinuxRun], label: &str, metric: &str) -> Side {
    let Some(r) = runs.iter().find(|r| r.label == label) else {
        return Side::missing(format!("no Linux run {label}"));
    };
    match r.guest.u64(&format!("{metric}.iops")) {
        Some(v) => Side {
            median: Some(v),
            n: r.guest.u64(&format!("{metric}.samples")),
            source: format!("linux {label}/tcg: kbench {metric}.iops"),
            ..Side::default()
        },
        None => Side::missing(format!(
            "linux {label}/tcg: {}",
            r.guest
                .results
                .get(&format!("{metric}.error"))
                .cloned()
                .or(r.failure.clone())
                .unwrap_or_else(|| format!("no {metric}.iops result"))
        )),
    }
}

/// Latency and IOPS of every configuration at every CPU count (TCG).
pub(super) fn figures(keel: &[JobResult], linux: &[LinuxRun], opts: &Options) -> Vec<Figure> {
    let mut figs = Vec::new();
    for smp in cpus(opts) {
        let label = format!("nvme-smp{smp}");
        for (metric, qd, per_cpu) in CONFIGS {
            let proof = bench_nvme(qd, per_cpu, smp).name;
            let k = keel_prefix(qd, per_cpu, smp);
            let fig = |metric, unit, keel, linux| Figure {
                metric,
                unit,
                mode: "x2apic",
                smp,
                accel: Accel::Tcg,
                keel,
                linux,
                round_ratios: vec![],
            };
            figs.push(fig(
                metric,
                "cycles",
                keel_side(
                    keel,
                    proof,
                    Accel::Tcg,
                    &format!("{k}.median_cycles"),
                    Some(&format!("{k}.p99_cycles")),
                    Some(&format!("{k}.samples")),
                ),
                linux_side(linux, &label, Accel::Tcg, metric, None),
            ));
            figs.push(fig(
                iops_metric(metric),
                "IOPS",
                keel_side(keel, proof, Accel::Tcg, &format!("{k}.iops"), None, None),
                linux_iops(linux, &label, metric),
            ));
        }
    }
    figs
}

/// Keel IOPS >= Linux's (Linux / Keel <= 1) and Keel p99 <= Linux's, per configuration.
pub(super) fn targets(figs: &[Figure]) -> Vec<Target> {
    let mut out = Vec::new();
    for f in figs {
        let (what, r) = if f.unit == "IOPS" {
            let r = match (f.keel.median, f.linux.median) {
                (Some(k), Some(l)) if k > 0 => Some(l as f64 / k as f64),
                _ => None,
            };
            (format!("{} smp{}: Linux IOPS / Keel IOPS", f.metric, f.smp), r)
        } else {
            let r = match (f.keel.p99, f.linux.p99) {
                (Some(k), Some(l)) if l > 0 => Some(k as f64 / l as f64),
                _ => None,
            };
            (format!("{} smp{}: Keel p99 / Linux p99", f.metric, f.smp), r)
        };
        out.push(Target { what, limit: 1.0, rounds: vec![r] });
    }
    out
}

/// The points of the IOPS plot: per (side, queue depth), (queues, IOPS) in queue order.
/// One queue: the `q1` figure at the smallest CPU count; N queues: `percpu` at N CPUs.
pub fn iops_series(figs: &[Figure]) -> Vec<(String, Vec<(u32, u64)>)> {
    let mut out = Vec::new();
    for side in ["Keel", "Linux"] {
        for qd in [1u64, 32] {
            let mut points = Vec::new();
            let pick = |f: &Figure| if side == "Keel" { f.keel.median } else { f.linux.median };
            let q1 = format!("nvme_randread_qd{qd}_q1_iops");
            let percpu = format!("nvme_randread_qd{qd}_percpu_iops");
            if let Some(v) =
                figs.iter().filter(|f| f.metric == q1).min_by_key(|f| f.smp).and_then(pick)
            {
                points.push((1, v));
            }
            for f in figs.iter().filter(|f| f.metric == percpu) {
                if let Some(v) = pick(f) {
                    points.push((f.smp, v));
                }
            }
            points.sort();
            points.dedup_by_key(|p| p.0);
            out.push((format!("{side} QD{qd}"), points));
        }
    }
    out
}

/// `nvme-iops-vs-queues.png`: IOPS against the number of queues, Keel and Linux, QD 1 and 32.
pub(super) fn plot_iops(figs: &[Figure], dir: &Path) -> Option<PathBuf> {
    let series = iops_series(figs);
    if series.iter().all(|(_, p)| p.is_empty()) || super::plot::register_font().is_err() {
        return None;
    }
    let path = dir.join("nvme-iops-vs-queues.png");
    let _ = std::fs::create_dir_all(dir);
    match draw(&series, &path) {
        Ok(()) => Some(path),
        Err(e) => {
            eprintln!("xtask: plot {} failed: {e}", path.display());
            None
        }
    }
}

fn draw(
    series: &[(String, Vec<(u32, u64)>)],
    path: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let xmax = series.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)).max().unwrap_or(1) + 1;
    let ymax =
        series.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)).max().unwrap_or(1) as f64 * 1.45;
    let root = BitMapBackend::new(path, (800, 450)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("NVMe 4 KiB random reads: IOPS vs queues (TCG)", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0u32..xmax, 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_desc("I/O queues (one per CPU; 1 = one queue)")
        .y_desc("IOPS")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    let colors = [
        RGBColor(40, 90, 200),
        RGBColor(20, 40, 120),
        RGBColor(220, 60, 50),
        RGBColor(130, 20, 20),
    ];
    for ((name, points), color) in series.iter().zip(colors) {
        if points.is_empty() {
            continue;
        }
        let pts: Vec<(u32, f64)> = points.iter().map(|&(q, v)| (q, v as f64)).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2)));
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
    }
    super::plot::draw_legend(&mut chart)?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(metric: &'static str, smp: u32, keel: u64, linux: u64) -> Figure {
        let side = |v| Side { median: Some(v), p99: Some(v * 2), ..Side::default() };
        Figure {
            metric,
            unit: if metric.ends_with("_iops") { "IOPS" } else { "cycles" },
            mode: "x2apic",
            smp,
            accel: Accel::Tcg,
            keel: side(keel),
            linux: side(linux),
            round_ratios: vec![],
        }
    }

    #[test]
    fn series_by_queue_count() {
        let figs = [
            fig("nvme_randread_qd1_q1_iops", 4, 90, 9),
            fig("nvme_randread_qd1_q1_iops", 2, 100, 10),
            fig("nvme_randread_qd1_percpu_iops", 2, 150, 15),
            fig("nvme_randread_qd1_percpu_iops", 4, 250, 25),
            fig("nvme_randread_qd1_percpu", 4, 7, 7),
        ];
        let s = iops_series(&figs);
        assert_eq!(s[0], ("Keel QD1".to_string(), vec![(1, 100), (2, 150), (4, 250)]));
        assert_eq!(s[1].1, vec![]);
        assert_eq!(s[2], ("Linux QD1".to_string(), vec![(1, 10), (2, 15), (4, 25)]));
    }

    /// The IOPS plot renders with its legend and is written.
    #[test]
    fn iops_plot_written() {
        if !Path::new(super::super::plot::FONT.0).exists() {
            eprintln!("font not installed (make bench-compare installs it); skipping");
            return;
        }
        let figs = [
            fig("nvme_randread_qd1_q1_iops", 2, 100, 10),
            fig("nvme_randread_qd1_percpu_iops", 4, 250, 25),
        ];
        let dir = std::env::temp_dir().join(format!("xtask-nvme-plot-{}", std::process::id()));
        let out = plot_iops(&figs, &dir).expect("the plot was not written");
        assert!(std::fs::metadata(&out).unwrap().len() > 5_000);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn targets_iops_and_p99() {
        let t = targets(&[
            fig("nvme_randread_qd1_q1_iops", 2, 200, 100),
            fig("nvme_randread_qd1_q1", 2, 300, 100),
        ]);
        assert_eq!(t[0].median(), Some(0.5));
        assert_eq!(t[0].met(), Some(true));
        assert_eq!(t[1].median(), Some(3.0));
        assert_eq!(t[1].met(), Some(false));
        assert!(t[1].what.contains("p99"));
    }

    #[test]
    fn keel_keys() {
        assert_eq!(keel_prefix(32, true, 4), "user.nvme_bench.qd32_q4");
        assert_eq!(keel_prefix(1, false, 4), "user.nvme_bench.qd1_q1");
        assert_eq!(bench_nvme(32, true, 4).name, "bench-nvme-qd32-percpu-smp4");
        assert_eq!(bench_nvme(1, false, 2).name, "bench-nvme-qd1-q1");
    }

    #[test]
    fn linux_nvme_console() {
        let g = GuestOutput::parse(
            "RESULT nvme_randread_qd32_percpu.iops=41234\n\
             RESULT nvme_randread_qd32_percpu.median_cycles=900\n\
             RESULT nvme_randread_qd32_percpu.p99_cycles=5000\n\
             RESULT nvme_randread_qd32_percpu.samples=3\n\
             SAMPLES nvme_randread_qd32_percpu 900 5000 800\n\
             KBENCH done\n",
        );
        let run = LinuxRun {
            label: "nvme-smp2".into(),
            mode: "x2apic",
            accel: Accel::Tcg,
            machine: MachineSpec::q35_up(),
            benches: "nvme",
            extra_cmdline: String::new(),
            timeout: Duration::from_secs(1),
            args: vec![],
            output: None,
            guest: g,
            failure: None,
        };
        let runs = [run];
        let iops = linux_iops(&runs, "nvme-smp2", "nvme_randread_qd32_percpu");
        assert_eq!(iops.median, Some(41234));
        assert_eq!(iops.n, Some(3));
        let missing = linux_iops(&runs, "nvme-smp2", "nvme_randread_qd1_q1");
        assert!(missing.missing.is_some());
        let lat = linux_side(&runs, "nvme-smp2", Accel::Tcg, "nvme_randread_qd32_percpu", None);
        assert_eq!((lat.median, lat.p99), (Some(900), Some(5000)));
        assert_eq!(lat.samples, vec![900, 5000, 800]);
    }
}
