//! The `--bringup` report: terminal table, `report.md`, `report.json` and the plot of
//! all-online time against CPU count (log-log; Keel parallel, Keel serial, Linux).

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::bringup::{Measured, Point, TARGET_CPUS, TARGET_RATIO};
use super::runs::Runs;
use crate::report::json_str as js;

const LINUX: RGBColor = RGBColor(200, 40, 30);
const KEEL_PARALLEL: RGBColor = RGBColor(30, 80, 200);
const KEEL_SERIAL: RGBColor = RGBColor(90, 170, 230);

fn ms(us: Option<u64>) -> String {
    us.map_or_else(|| "—".into(), |us| format!("{:.1}", us as f64 / 1000.0))
}

fn us_cell(us: Option<u64>) -> String {
    us.map_or_else(|| "—".into(), |us| us.to_string())
}

fn ratio_cell(r: Option<f64>) -> String {
    r.map_or_else(|| "—".into(), |r| format!("{r:.3}"))
}

/// The sides of a point with their labels, in report order.
fn sides(p: &Point) -> [(&'static str, &Measured); 3] {
    [("Keel parallel", &p.keel_parallel), ("Keel serial", &p.keel_serial), ("Linux 6.12", &p.linux)]
}

/// One line per point as it finishes.
pub fn point_line(p: &Point) -> String {
    let mut s = format!("bringup {} vCPUs:", p.cpus);
    for (name, m) in sides(p) {
        let _ = write!(s, " {name} {} ms", ms(m.all_online_us));
        if let Some(f) = &m.failure {
            let _ = write!(s, " ({f})");
        }
        s.push(';');
    }
    let _ = write!(s, " Keel parallel/Linux {}", ratio_cell(p.ratio(&p.keel_parallel)));
    s
}

/// One point's cells, in the column order of both tables: Keel parallel and serial, Linux
/// (all online, per AP), then the two ratios.
fn row(p: &Point) -> [String; 8] {
    let n = p.cpus;
    [
        ms(p.keel_parallel.all_online_us),
        us_cell(p.keel_parallel.per_ap_us(n)),
        ms(p.keel_serial.all_online_us),
        us_cell(p.keel_serial.per_ap_us(n)),
        ms(p.linux.all_online_us),
        us_cell(p.linux.per_ap_us(n)),
        ratio_cell(p.ratio(&p.keel_parallel)),
        ratio_cell(p.ratio(&p.keel_serial)),
    ]
}

/// Terminal table.
pub fn table(points: &[Point]) -> String {
    let mut s = format!(
        "{:>5} {:>12} {:>10} {:>12} {:>10} {:>12} {:>10} {:>9} {:>9}\n",
        "vCPUs",
        "KEEL par ms",
        "per AP us",
        "KEEL ser ms",
        "per AP us",
        "LINUX ms",
        "per AP us",
        "par/LNX",
        "ser/LNX"
    );
    for p in points {
        let [kp, kp_ap, ks, ks_ap, l, l_ap, rp, rs] = row(p);
        let _ = writeln!(
            s,
            "{:>5} {kp:>12} {kp_ap:>10} {ks:>12} {ks_ap:>10} {l:>12} {l_ap:>10} {rp:>9} {rs:>9}",
            p.cpus
        );
    }
    s
}

/// `(log2 vCPUs, ms)` of every point where `side` has a figure. The x axis is linear in
/// log2 so that every power of two gets a labelled tick.
fn series(points: &[Point], side: impl Fn(&Point) -> &Measured) -> Vec<(f64, f64)> {
    points
        .iter()
        .filter_map(|p| {
            side(p).all_online_us.map(|us| (f64::from(p.cpus).log2(), us as f64 / 1000.0))
        })
        .collect()
}

/// All-online time (ms, log) against vCPUs (log), one line with markers per kernel/mode.
pub fn plot(points: &[Point], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    super::plot::register_font()?;
    let lines = [
        ("Keel, parallel bring-up", KEEL_PARALLEL, series(points, |p| &p.keel_parallel)),
        ("Keel, serial bring-up", KEEL_SERIAL, series(points, |p| &p.keel_serial)),
        ("Linux 6.12 (its default: parallel)", LINUX, series(points, |p| &p.linux)),
    ];
    let all: Vec<(f64, f64)> = lines.iter().flat_map(|l| l.2.iter().copied()).collect();
    if all.is_empty() {
        return Err("no figures to plot".into());
    }
    let (xlo, xhi) = all.iter().fold((f64::MAX, 0f64), |(lo, hi), &(x, _)| (lo.min(x), hi.max(x)));
    let (ylo, yhi) = all.iter().fold((f64::MAX, 0f64), |(lo, hi), &(_, y)| (lo.min(y), hi.max(y)));
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "AP bring-up: time to all CPUs online vs CPU count (QEMU TCG, guest time)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(
            xlo.floor() - 0.5..xhi.ceil() + 0.5,
            (ylo.max(0.01) / 2.0..yhi * 2.0).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("vCPUs (log scale)")
        .y_desc("all CPUs online (ms, log scale)")
        .x_labels((xhi.ceil() - xlo.floor()) as usize + 2)
        .x_label_formatter(&|v| {
            if (v - v.round()).abs() < 1e-6 {
                format!("{:.0}", v.exp2())
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| {
            if *v >= 10.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        })
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for (name, color, data) in lines {
        if data.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(data.iter().map(|&(x, y)| Circle::new((x, y), 4, color.filled())))?;
        chart.draw_series(data.iter().map(|&(x, y)| {
            Text::new(
                if y >= 10.0 { format!("{y:.0}") } else { format!("{y:.1}") },
                (x + 0.06, y * 1.05),
                ("sans-serif", 12).into_font().color(&color),
            )
        }))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Keel parallel / Linux at each target point, if measured.
fn targets(points: &[Point]) -> Vec<(u32, Option<f64>)> {
    TARGET_CPUS
        .iter()
        .map(|&n| (n, points.iter().find(|p| p.cpus == n).and_then(|p| p.ratio(&p.keel_parallel))))
        .collect()
}

pub fn markdown(points: &[Point], cx: &Runs<'_>, plot: Option<&Path>) -> String {
    let h = cx.host;
    let mut s = String::from("# Keel vs Linux: AP bring-up\n\n");
    let _ = writeln!(
        s,
        "* Date: {}; host: {} ({} CPUs), host kernel {}",
        h.date, h.cpu, h.nproc, h.kernel
    );
    let _ =
        writeln!(s, "* Linux guest: {} with {}", cx.guest.kernel_package, cx.guest.busybox_package);
    let _ = writeln!(
        s,
        "* Both figures are **guest time under QEMU TCG** (emulation): Keel's TSC from its first AP start to the last AP online \
         (`bench.bringup.all_online_us`), Linux's printk clock from `smp: Bringing up secondary CPUs` to `smp: Brought up N nodes, M CPUs`. \
         With more vCPUs than host CPUs, the vCPU threads share {} host CPUs; the figures are relative costs inside the emulator, not hardware bring-up times.",
        h.nproc
    );
    let _ =
        writeln!(s, "* Per AP = all online / (N − 1). Ratio = Keel / Linux (< 1: Keel faster).\n");
    let _ = writeln!(
        s,
        "| vCPUs | Keel parallel (ms) | per AP (µs) | Keel serial (ms) | per AP (µs) | Linux 6.12 (ms) | per AP (µs) | Keel parallel / Linux | Keel serial / Linux |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for p in points {
        let _ = writeln!(s, "| {} | {} |", p.cpus, row(p).join(" | "));
    }
    let _ = writeln!(s, "\n## Target\n\nKeel's parallel all-online time ≤ {TARGET_RATIO} × Linux's on the same VM:\n");
    for (n, r) in targets(points) {
        let verdict = match r {
            Some(r) if r <= TARGET_RATIO => "met",
            Some(_) => "NOT met",
            None => "not measured",
        };
        let _ = writeln!(s, "* {n} vCPUs: {} ({verdict})", ratio_cell(r));
    }
    let _ = writeln!(s, "\n## Each boot\n\nAPIC mode and bring-up mode as each guest reported them; host wall time of the whole boot.\n");
    for p in points {
        for (name, m) in sides(p) {
            let status =
                m.failure.as_deref().map_or_else(|| "ok".to_string(), |f| format!("**{f}**"));
            let uptime = m.guest_uptime_s.map_or_else(String::new, |u| {
                format!(" (guest uptime {u:.0} s when init read the log)")
            });
            let _ = writeln!(s, "* {} vCPUs, {name}: {status}; APIC {}; bring-up {}; {:.1} s wall{uptime}; source {}", p.cpus, m.apic_mode, m.how, m.wall_secs, m.source);
        }
    }
    if let Some(p) = plot {
        let _ = writeln!(
            s,
            "\n## Plot\n\n![all CPUs online vs vCPUs]({})",
            p.file_name().map_or_else(String::new, |f| f.to_string_lossy().into_owned())
        );
    }
    cx.notes_markdown(&mut s);
    cx.command_lines_markdown(&mut s);
    s
}

fn measured_json(m: &Measured, cpus: u32) -> String {
    let n = |v: Option<u64>| v.map_or_else(|| "null".into(), |v| v.to_string());
    format!(
        "{{\"all_online_us\": {}, \"per_ap_us\": {}, \"apic_mode\": {}, \"bringup\": {}, \"source\": {}, \"failure\": {}, \"wall_seconds\": {:.1}, \"guest_uptime_seconds\": {}}}",
        n(m.all_online_us),
        n(m.per_ap_us(cpus)),
        js(&m.apic_mode),
        js(&m.how),
        js(&m.source),
        m.failure.as_deref().map_or_else(|| "null".into(), js),
        m.wall_secs,
        m.guest_uptime_s.map_or_else(|| "null".into(), |u| format!("{u:.2}"))
    )
}

pub fn json(points: &[Point], cx: &Runs<'_>) -> String {
    let r = |v: Option<f64>| v.map_or_else(|| "null".into(), |v| format!("{v:.4}"));
    let mut s = format!(
        "{{\n  \"date\": {},\n  \"host\": {{\"cpu\": {}, \"nproc\": {}}},\n  \"linux_guest\": {},\n  \"time_base\": \"guest time under QEMU TCG\",\n  \"points\": [",
        js(&cx.host.date),
        js(&cx.host.cpu),
        cx.host.nproc,
        js(&cx.guest.kernel_package)
    );
    for (i, p) in points.iter().enumerate() {
        let _ = write!(
            s,
            "{}\n    {{\"cpus\": {}, \"keel_parallel\": {},\n     \"keel_serial\": {},\n     \"linux\": {},\n     \"keel_parallel_over_linux\": {}, \"keel_serial_over_linux\": {}}}",
            if i == 0 { "" } else { "," },
            p.cpus,
            measured_json(&p.keel_parallel, p.cpus),
            measured_json(&p.keel_serial, p.cpus),
            measured_json(&p.linux, p.cpus),
            r(p.ratio(&p.keel_parallel)),
            r(p.ratio(&p.keel_serial))
        );
    }
    s.push_str("\n  ]\n}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(us: u64) -> Measured {
        Measured { all_online_us: Some(us), ..Measured::default() }
    }

    fn points() -> Vec<Point> {
        vec![
            Point { cpus: 8, keel_parallel: m(2_000), keel_serial: m(9_000), linux: m(1_500_000) },
            Point {
                cpus: 64,
                keel_parallel: m(30_000),
                keel_serial: m(90_000),
                linux: Measured { all_online_us: None, failure: Some("timed out".into()), ..m(0) },
            },
        ]
    }

    #[test]
    fn table_and_targets() {
        let p = points();
        let t = table(&p);
        assert!(t.contains("1500.0") && t.contains("0.001"), "{t}");
        assert_eq!(p[0].keel_serial.per_ap_us(8), Some(1_285));
        assert_eq!(targets(&p), [(64, None), (288, None)], "a failed Linux boot gives no ratio");
        let met = vec![Point {
            cpus: 64,
            keel_parallel: m(5_000),
            keel_serial: m(9_000),
            linux: m(20_000),
        }];
        assert_eq!(targets(&met)[0], (64, Some(0.25)));
    }

    #[test]
    fn plot_is_written() {
        if !std::path::Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").exists() {
            eprintln!("fonts-dejavu-core not installed (bench-compare installs it); skipping");
            return;
        }
        let path = std::env::temp_dir().join(format!("xtask-bringup-{}.png", std::process::id()));
        plot(&points(), &path).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 5_000);
        let _ = std::fs::remove_file(&path);
    }
}
