//! Human output: the results table, failure details, the closing count line,
//! and the benchmark table/JSON.

use std::fmt::Write as _;

use crate::runner::{JobResult, Outcome};

/// Lines of serial output shown for a failed proof.
const TAIL_LINES: usize = 60;

/// One-cell verdict: `pass`, `FAIL: reason`, `skip: reason`.
pub fn verdict_cell(r: &JobResult) -> String {
    match &r.outcome {
        Outcome::Skipped(why) => format!("skip: {why}"),
        Outcome::Error(e) => format!("FAIL: {}", first_line(e)),
        Outcome::Ran { failures, .. } if failures.is_empty() => "pass".into(),
        Outcome::Ran { failures, .. } => {
            let more = if failures.len() > 1 {
                format!(" (+{} more)", failures.len() - 1)
            } else {
                String::new()
            };
            format!("FAIL: {}{more}", first_line(&failures[0]))
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Progress line printed as each job completes.
pub fn progress_line(r: &JobResult) -> String {
    let t = r.secs().map(|s| format!("{s:6.1}s")).unwrap_or_else(|| "      -".into());
    format!("  {:<24} {:<4} {t}  {}", r.name, r.accel, verdict_cell(r))
}

pub fn table(results: &[JobResult]) -> String {
    let w = results.iter().map(|r| r.name.len()).max().unwrap_or(5).max(5);
    let mut s = String::new();
    let _ = writeln!(s, "{:<w$}  {:<5}  {:>7}  VERDICT", "PROOF", "ACCEL", "TIME(s)");
    for r in results {
        let t = r.secs().map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into());
        let _ = writeln!(s, "{:<w$}  {:<5}  {:>7}  {}", r.name, r.accel.name(), t, verdict_cell(r));
    }
    s
}

/// Everything needed to debug one failed run without re-running it.
pub fn failure_details(r: &JobResult) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "==== FAILED: {} ({}) ====", r.name, r.accel);
    let _ = writeln!(s, "command: qemu-system-x86_64 {}", crate::qemu::shell_quote(&r.args));
    match &r.outcome {
        Outcome::Error(e) => {
            let _ = writeln!(s, "error: {e}");
        }
        Outcome::Ran { output, failures, .. } => {
            let lines: Vec<&str> = output.stdout.lines().collect();
            let from = lines.len().saturating_sub(TAIL_LINES);
            let _ =
                writeln!(s, "--- serial, last {} of {} lines ---", lines.len() - from, lines.len());
            for l in &lines[from..] {
                let _ = writeln!(s, "| {l}");
            }
            if !output.stderr.trim().is_empty() {
                let _ = writeln!(s, "--- qemu stderr ---");
                for l in output.stderr.lines().take(20) {
                    let _ = writeln!(s, "! {l}");
                }
            }
            let _ = writeln!(s, "--- failed checks ---");
            for f in failures {
                let _ = writeln!(s, "  x {f}");
            }
            if let Some(log) = &r.log {
                let _ = writeln!(s, "full transcript: {}", log.display());
            }
            if let Some(trace) = &r.trace {
                let _ = writeln!(s, "QEMU trace: {}", trace.display());
            }
        }
        Outcome::Skipped(_) => {}
    }
    s
}

/// `N passed, N failed[, N skipped]` — the plain closing line CI reads.
pub fn summary_line(results: &[JobResult]) -> String {
    let count = |f: fn(&JobResult) -> bool| results.iter().filter(|r| f(r)).count();
    let (p, f, k) = (count(JobResult::passed), count(JobResult::failed), count(JobResult::skipped));
    if k > 0 {
        format!("{p} passed, {f} failed, {k} skipped")
    } else {
        format!("{p} passed, {f} failed")
    }
}

/// `Some(explanation)` when not a single proof booted (all skipped, e.g. `KEEL_ACCEL=kvm` on a
/// host without usable KVM): a test run that proved nothing must not pass.
pub fn nothing_ran(results: &[JobResult]) -> Option<String> {
    if results.iter().any(|r| !r.skipped()) {
        return None;
    }
    let mut reasons: Vec<&str> = results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Skipped(why) => Some(why.as_str()),
            _ => None,
        })
        .collect();
    reasons.sort();
    reasons.dedup();
    Some(format!(
        "no proof ran: all {} run(s) were skipped ({})",
        results.len(),
        reasons.join("; ")
    ))
}

/// One benchmark run: a column of the side-by-side table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchRun {
    /// `proof/accel`.
    pub label: String,
    pub passed: bool,
    /// `bench.*` and `user.*` evidence in transcript order.
    pub metrics: Vec<(String, String)>,
}

/// The figures (`bench_metrics`) of each run that booted (skipped runs have no column).
pub fn bench_runs(results: &[JobResult]) -> Vec<BenchRun> {
    results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Ran { transcript, .. } => Some(BenchRun {
                label: format!("{}/{}", r.name, r.accel),
                passed: r.passed(),
                metrics: bench_metrics(&transcript.evidence)
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }),
            _ => None,
        })
        .collect()
}

/// Side by side: one row per metric, one column per (proof, accel) run, so the same
/// metric under xAPIC/x2APIC and TCG/KVM reads across a line. `-` = run lacks the metric;
/// `*` marks a column whose run failed (its numbers are suspect).
pub fn bench_table(runs: &[BenchRun]) -> String {
    let mut metrics: Vec<&str> = Vec::new();
    for r in runs {
        for (k, _) in &r.metrics {
            if !metrics.contains(&k.as_str()) {
                metrics.push(k);
            }
        }
    }
    let heads: Vec<String> = runs
        .iter()
        .map(|r| if r.passed { r.label.clone() } else { format!("{}*", r.label) })
        .collect();
    let cell = |r: &BenchRun, m: &str| {
        r.metrics.iter().find(|(k, _)| k == m).map_or("-", |(_, v)| v.as_str()).to_string()
    };
    let mw = metrics.iter().map(|m| m.len()).max().unwrap_or(0).max("METRIC".len());
    let widths: Vec<usize> = runs
        .iter()
        .zip(&heads)
        .map(|(r, h)| metrics.iter().map(|m| cell(r, m).len()).max().unwrap_or(0).max(h.len()))
        .collect();
    let mut s = String::new();
    let _ = write!(s, "{:<mw$}", "METRIC");
    for (h, w) in heads.iter().zip(&widths) {
        let _ = write!(s, "  {h:>w$}");
    }
    s.push('\n');
    for m in &metrics {
        let _ = write!(s, "{m:<mw$}");
        for (r, w) in runs.iter().zip(&widths) {
            let _ = write!(s, "  {:>w$}", cell(r, m));
        }
        s.push('\n');
    }
    if runs.iter().any(|r| !r.passed) {
        s.push_str("* run FAILED: see the failure details above\n");
    }
    s
}

/// The host a benchmark ran on, recorded next to its numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInfo {
    /// `uname -r`.
    pub kernel: String,
    pub cpu: String,
    pub nproc: usize,
    /// UTC, RFC 3339.
    pub date: String,
}

impl HostInfo {
    pub fn detect() -> HostInfo {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .or_else(|| {
                std::process::Command::new("uname")
                    .arg("-r")
                    .output()
                    .ok()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            })
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| cpu_model(&c))
            .unwrap_or_else(|| "unknown".into());
        let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        HostInfo { kernel, cpu, nproc, date: rfc3339_utc(secs) }
    }
}

/// First `model name` in /proc/cpuinfo.
fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "model name").then(|| v.trim().to_string())
    })
}

/// Unix seconds to `YYYY-MM-DDTHH:MM:SSZ` (Howard Hinnant's civil-from-days), so the
/// harness needs neither a date crate nor `date(1)`.
fn rfc3339_utc(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// A JSON string literal (quotes, backslashes and control characters escaped).
pub fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// `target/bench.json`: the host, then one object per run with its QEMU command line;
/// integer values as JSON numbers.
pub fn bench_json(results: &[JobResult], host: &HostInfo) -> String {
    let mut s = format!(
        "{{\n  \"host\": {{\"kernel\": {}, \"cpu\": {}, \"nproc\": {}, \"date\": {}}},\n  \"runs\": [",
        json_str(&host.kernel),
        json_str(&host.cpu),
        host.nproc,
        json_str(&host.date)
    );
    let mut first = true;
    for r in results {
        let Outcome::Ran { transcript, output, .. } = &r.outcome else { continue };
        let metrics: Vec<String> = bench_metrics(&transcript.evidence)
            .map(|(k, v)| {
                let val = v.as_u64().map(|n| n.to_string()).unwrap_or_else(|| json_str(v.as_str()));
                format!("{}: {val}", json_str(k))
            })
            .collect();
        let _ = write!(
            s,
            "{}\n    {{\"proof\": {}, \"accel\": {}, \"passed\": {}, \"seconds\": {:.3}, \"qemu\": {}, \"metrics\": {{{}}}}}",
            if first { "" } else { "," },
            json_str(r.name),
            json_str(r.accel.name()),
            r.passed(),
            output.elapsed.as_secs_f64(),
            json_str(&format!("qemu-system-x86_64 {}", crate::qemu::shell_quote(&r.args))),
            metrics.join(", ")
        );
        first = false;
    }
    s.push_str("\n  ]\n}\n");
    s
}

/// The figures a benchmark run reports: kernel `bench.*` evidence and what its ring-3
/// benchmark programs print (`user.*`: ring calls, interrupt wake-ups, prime-count phases).
fn bench_metrics(
    evidence: &keel_evidence::Evidence,
) -> impl Iterator<Item = (&str, keel_evidence::Value<'_>)> {
    evidence
        .keys()
        .filter(|k| k.starts_with("bench.") || k.starts_with("user."))
        .filter_map(move |k| evidence.get(k).map(|v| (k, v)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::Accel;
    use crate::runner::ProcessOutput;
    use keel_evidence::Transcript;
    use std::time::Duration;

    fn ran(name: &'static str, out: &str, failures: &[&str]) -> JobResult {
        JobResult {
            name,
            accel: Accel::Tcg,
            args: vec!["-kernel".into(), "k".into()],
            outcome: Outcome::Ran {
                output: ProcessOutput {
                    status: Some(33),
                    timed_out: None,
                    stdout: out.into(),
                    stderr: String::new(),
                    elapsed: Duration::from_millis(1500),
                },
                transcript: Transcript::parse(out),
                failures: failures.iter().map(|s| s.to_string()).collect(),
            },
            log: None,
            trace: None,
        }
    }

    #[test]
    fn summary_counts() {
        let skip = JobResult { outcome: Outcome::Skipped("needs KVM".into()), ..ran("s", "", &[]) };
        assert_eq!(summary_line(&[ran("a", "", &[]), ran("b", "", &["x"])]), "1 passed, 1 failed");
        assert_eq!(summary_line(&[ran("a", "", &[]), skip]), "1 passed, 0 failed, 1 skipped");
    }

    #[test]
    fn a_run_that_booted_nothing_is_reported() {
        let skip =
            |why: &str| JobResult { outcome: Outcome::Skipped(why.into()), ..ran("s", "", &[]) };
        assert_eq!(nothing_ran(&[ran("a", "", &[]), skip("x")]), None);
        assert_eq!(nothing_ran(&[ran("a", "", &["failed"])]), None);
        let why = nothing_ran(&[skip("needs KVM"), skip("needs KVM"), skip("TCG only")]).unwrap();
        assert_eq!(why, "no proof ran: all 3 run(s) were skipped (TCG only; needs KVM)");
    }

    #[test]
    fn table_and_details() {
        let rs = [
            ran("boot", "", &[]),
            ran("exceptions", "hello\nEV a=1\n", &["check failed: a = 1, want == 2", "other"]),
        ];
        let t = table(&rs);
        assert!(t.contains("boot        tcg        1.5  pass"), "{t}");
        assert!(t.contains("FAIL: check failed: a = 1, want == 2 (+1 more)"), "{t}");
        let d = failure_details(&rs[1]);
        assert!(d.contains("| hello\n| EV a=1\n"), "{d}");
        assert!(d.contains("  x other"), "{d}");
    }

    #[test]
    fn bench_output() {
        let rs = [ran("b", "EV bench.ipi_ns=1200 bench.mode=x2apic other=1\nVERDICT pass\n", &[])];
        let runs = bench_runs(&rs);
        assert_eq!(runs[0].metrics.len(), 2);
        let host = HostInfo {
            kernel: "6.1.0".into(),
            cpu: "Some \"CPU\"".into(),
            nproc: 2,
            date: "2026-01-01T00:00:00Z".into(),
        };
        let j = bench_json(&rs, &host);
        assert!(j.contains(r#""metrics": {"bench.ipi_ns": 1200, "bench.mode": "x2apic"}"#), "{j}");
        assert!(j.contains(r#""proof": "b", "accel": "tcg", "passed": true"#), "{j}");
        assert!(j.contains(r#""qemu": "qemu-system-x86_64 -kernel k""#), "{j}");
        assert!(j.contains(r#""host": {"kernel": "6.1.0", "cpu": "Some \"CPU\"", "nproc": 2, "date": "2026-01-01T00:00:00Z"}"#), "{j}");
        assert_eq!(json_str("a\"b\\\n"), r#""a\"b\\\u000a""#);
    }

    #[test]
    fn bench_table_is_side_by_side() {
        let mut kvm = ran(
            "bench-xapic",
            "EV bench.ipi_rtt.median_ns=950 bench.ap_boot_us=12\nVERDICT pass\n",
            &[],
        );
        kvm.accel = Accel::Kvm;
        let rs = [
            ran("bench-xapic", "EV bench.ipi_rtt.median_ns=41000\nVERDICT pass\n", &[]),
            kvm,
            ran("bench-x2apic", "EV bench.ipi_rtt.median_ns=38000\n", &["no VERDICT line"]),
            JobResult {
                outcome: Outcome::Skipped("needs KVM".into()),
                ..ran("bench-x2apic", "", &[])
            },
        ];
        let t = bench_table(&bench_runs(&rs));
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "METRIC                   bench-xapic/tcg  bench-xapic/kvm  bench-x2apic/tcg*",
            "{t}"
        );
        assert_eq!(
            lines[1],
            "bench.ipi_rtt.median_ns            41000              950              38000",
            "{t}"
        );
        assert_eq!(
            lines[2],
            "bench.ap_boot_us                       -               12                  -",
            "{t}"
        );
        assert!(lines[3].starts_with("* run FAILED"), "{t}");
        assert_eq!(bench_table(&[]), "METRIC\n");
    }

    #[test]
    fn host_info_pieces() {
        assert_eq!(
            cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags : x\n").as_deref(),
            Some("AMD EPYC 7B13")
        );
        assert_eq!(cpu_model("processor : 0\n"), None);
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_utc(951_782_400 + 3661), "2000-02-29T01:01:01Z");
    }
}
