//! PNG latency plots with `plotters`' bitmap backend: per figure, the Linux and Keel sample
//! histograms on a logarithmic cycles axis, their medians (thick) and p99s (thin), with a
//! title, axis labels and a legend. Text is drawn with `ab_glyph` from DejaVu Sans, read
//! at run time from Debian's `fonts-dejavu-core` (installed when missing).

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::{Figure, Side};

const W: u32 = 800;
const H: u32 = 400;
const BINS: usize = 60;
const LINUX: RGBColor = RGBColor(220, 60, 50);
const LINUX_DARK: RGBColor = RGBColor(130, 20, 20);
const KEEL: RGBColor = RGBColor(40, 90, 200);

/// The TTF the plots' text is drawn with, and the Debian package that ships it.
pub(super) const FONT: (&str, &str) =
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "fonts-dejavu-core");

/// Registers the font as `sans-serif` for every plot (once per process).
pub(super) fn register_font() -> Result<(), String> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        crate::bootstrap::ensure_debian_files(&[FONT]).map_err(|e| format!("{e:#}"))?;
        let bytes = std::fs::read(FONT.0).map_err(|e| format!("{}: {e}", FONT.0))?;
        // plotters keeps registered fonts for the process's lifetime.
        plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            Box::leak(bytes.into_boxed_slice()),
        )
        .map_err(|_| format!("{} is not a usable TrueType font", FONT.0))
    })
    .clone()
}

/// One PNG per figure that has Linux samples or values on both sides; returns the paths.
pub fn plot_all(figs: &[Figure], dir: &Path) -> Vec<PathBuf> {
    let _ = std::fs::create_dir_all(dir);
    if let Err(e) = register_font() {
        eprintln!("xtask: no plots: {e}");
        return vec![];
    }
    let mut out = Vec::new();
    for f in figs.iter().filter(|f| f.unit == "cycles") {
        if f.linux.samples.is_empty() && f.keel.samples.is_empty() {
            continue;
        }
        let path = dir.join(format!("{}.png", f.slug()));
        match plot_one(f, &path) {
            Ok(()) => out.push(path),
            Err(e) => eprintln!("xtask: plot {} failed: {e}", path.display()),
        }
    }
    out
}

fn values(s: &Side) -> Vec<u64> {
    let mut v = s.samples.clone();
    v.extend(s.median);
    v.extend(s.p99);
    v
}

/// Log-spaced histogram: share of samples per bin.
pub fn histogram(samples: &[u64], lo: f64, hi: f64) -> Vec<f64> {
    let mut h = vec![0f64; BINS];
    if samples.is_empty() {
        return h;
    }
    let span = (hi.ln() - lo.ln()).max(1e-9);
    for &s in samples {
        let x = (s.max(1) as f64).ln();
        let i =
            (((x - lo.ln()) / span) * BINS as f64).floor().clamp(0.0, (BINS - 1) as f64) as usize;
        h[i] += 1.0;
    }
    h.iter_mut().for_each(|c| *c /= samples.len() as f64);
    h
}

/// Lower edge of histogram bin `i` on the log scale between `lo` and `hi`.
fn bin_edge(i: usize, lo: f64, hi: f64) -> f64 {
    (lo.ln() + (hi.ln() - lo.ln()) * i as f64 / BINS as f64).exp()
}

fn plot_one(f: &Figure, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let all: Vec<u64> =
        values(&f.linux).into_iter().chain(values(&f.keel)).filter(|&v| v > 0).collect();
    let lo = *all.iter().min().ok_or("no data")? as f64 / 1.2;
    let hi = *all.iter().max().ok_or("no data")? as f64 * 1.2;
    let (hl, hk) = (histogram(&f.linux.samples, lo, hi), histogram(&f.keel.samples, lo, hi));
    let ymax = hl.iter().chain(&hk).cloned().fold(0.05, f64::max) * 1.1;
    let root = BitMapBackend::new(path, (W, H)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!("{}: {} ({}, {})", f.metric, f.config(), f.accel, "Linux vs Keel");
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_desc(format!("latency ({}, log scale)", f.unit))
        .y_desc("share of samples")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    for (h, color, name) in [(&hl, LINUX, "Linux samples"), (&hk, KEEL, "Keel samples")] {
        if h.iter().all(|&c| c == 0.0) {
            continue;
        }
        let bars = h.iter().enumerate().filter(|(_, &c)| c > 0.0).map(move |(i, &c)| {
            Rectangle::new(
                [(bin_edge(i, lo, hi), 0.0), (bin_edge(i + 1, lo, hi) * 0.98, c)],
                color.mix(0.6).filled(),
            )
        });
        chart.draw_series(bars)?.label(name).legend(move |(x, y)| {
            Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.mix(0.6).filled())
        });
    }
    for (side, color, name) in [(&f.linux, LINUX_DARK, "Linux"), (&f.keel, KEEL, "Keel")] {
        for (v, width, what) in [(side.median, 3, "median"), (side.p99, 1, "p99")] {
            if let Some(v) = v {
                let x = v.max(1) as f64;
                chart
                    .draw_series(LineSeries::new([(x, 0.0), (x, ymax)], color.stroke_width(width)))?
                    .label(format!("{name} {what} {v}"))
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 14, y)], color.stroke_width(width))
                    });
            }
        }
    }
    draw_legend(&mut chart)?;
    root.present()?;
    Ok(())
}

/// The legend every chart here carries: upper right, on a light box.
pub(super) fn draw_legend<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, CT>,
) -> Result<(), Box<dyn std::error::Error>> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn histogram_shares() {
        let h = super::histogram(&[10, 10, 1000, 1000], 9.0, 1100.0);
        assert!((h.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert_eq!(h.iter().filter(|&&c| c > 0.0).count(), 2);
        assert!((super::bin_edge(0, 10.0, 1000.0) - 10.0).abs() < 1e-9);
        assert!((super::bin_edge(super::BINS, 10.0, 1000.0) - 1000.0).abs() < 1e-6);
    }

    /// A real plot with its title, labels and legend renders and is written.
    #[test]
    fn plot_has_text() {
        use super::super::{Figure, Side};
        let side = |samples: Vec<u64>| Side {
            median: Some(samples[samples.len() / 2]),
            p99: samples.last().copied(),
            n: Some(samples.len() as u64),
            samples,
            ..Default::default()
        };
        let f = Figure {
            metric: "ipi_rtt",
            unit: "cycles",
            mode: "xapic",
            smp: 2,
            accel: crate::qemu::Accel::Tcg,
            keel: side((1000..1100).collect()),
            linux: side((3000..3300).step_by(3).collect()),
            round_ratios: vec![],
        };
        if !std::path::Path::new(super::FONT.0).exists() {
            eprintln!("{} not installed (make bench-compare installs it); skipping", super::FONT.1);
            return;
        }
        let dir = std::env::temp_dir().join(format!("xtask-plot-{}", std::process::id()));
        let out = super::plot_all(&[f], &dir);
        assert_eq!(out.len(), 1, "the plot was not written");
        assert!(std::fs::metadata(&out[0]).unwrap().len() > 5_000);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
