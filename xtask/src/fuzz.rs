//! `cargo xtask fuzz`: coverage-guided fuzzing (cargo-fuzz, libFuzzer) of every parser of
//! untrusted input, one target after the other, from the committed seeds in `fuzz/seeds/`.
//!
//! The fuzz crate is its own nightly workspace (`fuzz/`), so the stable build never sees it.
//! Every crate it fuzzes forbids `unsafe`, so the targets run without a sanitizer
//! (`--sanitizer none`): memory errors cannot happen in them, and libFuzzer runs about twice
//! as fast; panics, failed assertions and integer overflows (debug assertions stay on) are
//! what it finds. Each target's new inputs go to `fuzz/corpus/<target>` (not committed),
//! crashes to `fuzz/artifacts/<target>`. A target with a token dictionary
//! (`fuzz/dicts/<target>.dict`) gets it passed with `-dict=`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::builder::workspace_root;

/// Every fuzz target, with the parser it feeds.
pub const TARGETS: [(&str, &str); 10] = [
    ("madt", "MADT entries interpreted by keel-platform"),
    ("dmar", "DMAR table (keel-iommu dmar.rs)"),
    ("ivrs", "IVRS table (keel-iommu ivrs.rs)"),
    ("pci_config", "PCI configuration space and MSI-X placement (keel-pci)"),
    ("multiboot1", "Multiboot 1 info structure (keel-boot)"),
    ("multiboot2", "Multiboot 2 tag list (keel-boot)"),
    ("elf", "user ELF executables (keel-elf)"),
    ("manifest", "boot manifest (keel-manifest)"),
    ("ring", "ring submissions and index checks (keel-abi)"),
    ("cmdline", "kernel command line (keel-boot cmdline)"),
];

/// How long each target runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// libFuzzer `-runs=N`: this many executions.
    Runs(u64),
    /// libFuzzer `-max_total_time=S`.
    Seconds(u64),
}

/// The executions `make fuzz` runs per target by default.
pub const DEFAULT_RUNS: u64 = 10_000_000;

/// What one run reported (libFuzzer's own figures).
#[derive(Debug, Default)]
struct Stats {
    executions: Option<u64>,
    /// `cov:`: coverage points (edges) reached.
    cov: Option<u64>,
    /// `ft:`: features (edges with hit-count buckets, value profiles).
    ft: Option<u64>,
    /// Edges instrumented in the target binary (`INFO: Loaded 1 modules (N inline 8-bit
    /// counters)`): the denominator of `cov`.
    edges: Option<u64>,
    corpus: Option<u64>,
}

fn field(line: &str, name: &str) -> Option<u64> {
    let mut words = line.split_whitespace();
    words.find(|w| *w == name)?;
    let value = words.next()?;
    // `corp: 150/11Kb` is entries/bytes: the leading digits are the figure.
    let digits = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    value[..digits].parse().ok()
}

impl Stats {
    fn absorb(&mut self, line: &str) {
        if line.starts_with('#') {
            self.cov = field(line, "cov:").or(self.cov);
            self.ft = field(line, "ft:").or(self.ft);
            self.corpus = field(line, "corp:").or(self.corpus);
        }
        if line.starts_with("INFO: Loaded") && line.contains("inline 8-bit counters") {
            self.edges =
                line.split('(').nth(1).and_then(|r| r.split_whitespace().next()?.parse().ok());
        }
        if let Some(n) = line.strip_prefix("stat::number_of_executed_units:") {
            self.executions = n.trim().parse().ok();
        }
    }
}

fn show(v: Option<u64>) -> String {
    v.map_or_else(|| "?".into(), |n| n.to_string())
}

fn ensure_tools() -> Result<()> {
    let nightly = Command::new("rustup").args(["toolchain", "list"]).output()?;
    if !String::from_utf8_lossy(&nightly.stdout).lines().any(|l| l.starts_with("nightly")) {
        eprintln!("xtask: installing the nightly toolchain (libFuzzer needs -Zsanitizer)");
        let ok = Command::new("rustup")
            .args(["toolchain", "install", "nightly", "--profile", "minimal"])
            .status()?
            .success();
        if !ok {
            bail!("rustup toolchain install nightly failed");
        }
    }
    let have = Command::new("cargo").args(["fuzz", "--version"]).output();
    if !have.is_ok_and(|o| o.status.success()) {
        eprintln!("xtask: installing cargo-fuzz");
        let ok = Command::new("cargo")
            .args(["install", "cargo-fuzz", "--locked"])
            .status()
            .context("running cargo install")?
            .success();
        if !ok {
            bail!("cargo install cargo-fuzz failed");
        }
    }
    Ok(())
}

/// Runs one target; returns its figures, or an error naming the crash artifact.
fn run_target(fuzz_dir: &Path, name: &str, budget: Budget) -> Result<Stats> {
    let corpus = fuzz_dir.join("corpus").join(name);
    std::fs::create_dir_all(&corpus)?;
    let seeds = fuzz_dir.join("seeds").join(name);
    let limit = match budget {
        Budget::Runs(n) => format!("-runs={n}"),
        Budget::Seconds(s) => format!("-max_total_time={s}"),
    };
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo", "fuzz", "run", "--sanitizer", "none", name])
        .arg(&corpus)
        .arg(&seeds)
        .args(["--", &limit, "-print_final_stats=1", "-print_pcs=0"]);
    // A token dictionary, for the text formats whose keywords random bytes rarely spell.
    let dict = fuzz_dir.join("dicts").join(format!("{name}.dict"));
    if dict.is_file() {
        cmd.arg(format!("-dict={}", dict.display()));
    }
    cmd.current_dir(fuzz_dir)
        // The stable toolchain `cargo xtask` runs under must not leak into the nightly build.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .env_remove("CARGO_TARGET_DIR")
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("starting cargo fuzz")?;
    let mut stats = Stats::default();
    let stderr = child.stderr.take().expect("stderr is piped");
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        stats.absorb(&line);
        // libFuzzer's NEW/REDUCE line per corpus change is noise here; its pulses (at
        // powers of two), INITED, DONE and everything that is not progress are kept.
        let quiet = line.starts_with('#') && (line.contains("NEW") || line.contains("REDUCE"));
        if !quiet {
            eprintln!("{line}");
        }
    }
    if !child.wait()?.success() {
        bail!(
            "fuzz target {name} failed: the crashing input is in fuzz/artifacts/{name}/ \
             (reproduce: cd fuzz && cargo fuzz run --sanitizer none {name} <file>)"
        );
    }
    Ok(stats)
}

/// `cargo xtask fuzz`: the selected targets one after the other, then a summary table.
pub fn run(target: Option<&str>, budget: Budget) -> Result<()> {
    let selected: Vec<&str> = match target {
        Some(t) if TARGETS.iter().any(|(n, _)| *n == t) => vec![t],
        Some(t) => {
            bail!("unknown fuzz target {t:?}; targets: {}", TARGETS.map(|(n, _)| n).join(", "))
        }
        None => TARGETS.iter().map(|(n, _)| *n).collect(),
    };
    ensure_tools()?;
    let fuzz_dir = workspace_root().join("fuzz");
    let mut rows = Vec::new();
    for name in selected {
        eprintln!("xtask: fuzzing {name} ({budget:?})");
        let start = Instant::now();
        let stats = run_target(&fuzz_dir, name, budget)?;
        rows.push((name, stats, start.elapsed().as_secs()));
    }
    println!(
        "{:<11} {:>12} {:>6} {:>6} {:>7} {:>7} {:>7}",
        "target", "executions", "cov", "of", "ft", "corpus", "secs"
    );
    for (name, s, secs) in &rows {
        println!(
            "{name:<11} {:>12} {:>6} {:>6} {:>7} {:>7} {secs:>7}",
            show(s.executions),
            show(s.cov),
            show(s.edges),
            show(s.ft),
            show(s.corpus)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_figures() {
        let mut s = Stats::default();
        s.absorb("INFO: Loaded 1 modules   (555 inline 8-bit counters): 555 [0x5, 0x6), ");
        s.absorb(
            "#2097152\tpulse  cov: 312 ft: 1204 corp: 141/9876b lim: 4096 exec/s: 69905 rss: 60Mb",
        );
        s.absorb(
            "#10000000\tDONE   cov: 318 ft: 1251 corp: 150/11Kb lim: 4096 exec/s: 71428 rss: 61Mb",
        );
        s.absorb("stat::number_of_executed_units: 10000000");
        assert_eq!(
            (s.executions, s.cov, s.ft, s.corpus, s.edges),
            (Some(10_000_000), Some(318), Some(1251), Some(150), Some(555))
        );
    }

    #[test]
    fn every_target_has_seeds() {
        let seeds = workspace_root().join("fuzz/seeds");
        for (name, _) in TARGETS {
            let n = std::fs::read_dir(seeds.join(name)).map_or(0, |d| d.count());
            assert!(n > 0, "fuzz/seeds/{name} is empty");
        }
    }
}
