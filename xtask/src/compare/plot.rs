//! PNG latency plots with `plotters`' bitmap backend. No font backend is compiled in (it
//! would need system fonts), so the images carry no text: the legend is in report.md.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::{Figure, Side};

const W: u32 = 800;
const H: u32 = 400;
const BINS: usize = 60;
const LINUX: RGBColor = RGBColor(220, 60, 50);
const LINUX_DARK: RGBColor = RGBColor(130, 20, 20);
const KEEL: RGBColor = RGBColor(40, 90, 200);

/// One PNG per figure that has Linux samples or values on both sides; returns the paths.
pub fn plot_all(figs: &[Figure], dir: &Path) -> Vec<PathBuf> {
    let _ = std::fs::create_dir_all(dir);
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
        let i = (((x - lo.ln()) / span) * BINS as f64).floor().clamp(0.0, (BINS - 1) as f64) as usize;
        h[i] += 1.0;
    }
    h.iter_mut().for_each(|c| *c /= samples.len() as f64);
    h
}

fn plot_one(f: &Figure, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let all: Vec<u64> = values(&f.linux).into_iter().chain(values(&f.keel)).filter(|&v| v > 0).collect();
    let lo = *all.iter().min().ok_or("no data")? as f64 / 1.2;
    let hi = *all.iter().max().ok_or("no data")? as f64 * 1.2;
    let (hl, hk) = (histogram(&f.linux.samples, lo, hi), histogram(&f.keel.samples, lo, hi));
    let ymax = hl.iter().chain(&hk).cloned().fold(0.05, f64::max) * 1.1;
    let root = BitMapBackend::new(path, (W, H)).into_drawing_area();
    root.fill(&WHITE)?;
    let area = root.margin(10, 10, 10, 10);
    let mut chart = ChartBuilder::on(&area).build_cartesian_2d(0f64..BINS as f64, 0f64..ymax)?;
    let xpos = |v: u64| ((v.max(1) as f64).ln() - lo.ln()) / (hi.ln() - lo.ln()) * BINS as f64;
    // Decade grid lines (10^k cycles).
    let mut d = 10f64.powf(lo.log10().ceil());
    while d < hi {
        chart.draw_series(LineSeries::new([(xpos(d as u64), 0.0), (xpos(d as u64), ymax)], RGBColor(220, 220, 220)))?;
        d *= 10.0;
    }
    for (h, color) in [(&hl, LINUX.mix(0.6)), (&hk, KEEL.mix(0.6))] {
        chart.draw_series(h.iter().enumerate().filter(|(_, &c)| c > 0.0).map(|(i, &c)| Rectangle::new([(i as f64, 0.0), (i as f64 + 0.9, c)], color.filled())))?;
    }
    for (side, color) in [(&f.linux, LINUX_DARK), (&f.keel, KEEL)] {
        for (v, width) in [(side.median, 3), (side.p99, 1)] {
            if let Some(v) = v {
                let x = xpos(v);
                chart.draw_series(LineSeries::new([(x, 0.0), (x, ymax)], color.stroke_width(width)))?;
            }
        }
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn histogram_shares() {
        let h = super::histogram(&[10, 10, 1000, 1000], 9.0, 1100.0);
        assert!((h.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert_eq!(h.iter().filter(|&&c| c > 0.0).count(), 2);
    }
}
