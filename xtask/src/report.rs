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
            let more = if failures.len() > 1 { format!(" (+{} more)", failures.len() - 1) } else { String::new() };
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
            let _ = writeln!(s, "--- serial, last {} of {} lines ---", lines.len() - from, lines.len());
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

/// `bench.*` evidence of each run: (proof, accel, key, value, run passed).
pub fn bench_rows(results: &[JobResult]) -> Vec<(String, String, String, String, bool)> {
    let mut rows = Vec::new();
    for r in results {
        if let Outcome::Ran { transcript, .. } = &r.outcome {
            for (k, v) in transcript.evidence.matching_prefix("bench.") {
                rows.push((r.name.to_string(), r.accel.to_string(), k.to_string(), v.to_string(), r.passed()));
            }
        }
    }
    rows
}

pub fn bench_table(rows: &[(String, String, String, String, bool)]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{:<20}  {:<5}  {:<40}  VALUE", "PROOF", "ACCEL", "METRIC");
    for (p, a, k, v, ok) in rows {
        let flag = if *ok { "" } else { "  (run FAILED)" };
        let _ = writeln!(s, "{p:<20}  {a:<5}  {k:<40}  {v}{flag}");
    }
    s
}

fn json_str(s: &str) -> String {
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

/// `target/bench.json`: one object per run; integer values as JSON numbers.
pub fn bench_json(results: &[JobResult]) -> String {
    let mut s = String::from("{\n  \"runs\": [");
    let mut first = true;
    for r in results {
        let Outcome::Ran { transcript, output, .. } = &r.outcome else { continue };
        let metrics: Vec<String> = transcript
            .evidence
            .matching_prefix("bench.")
            .map(|(k, v)| {
                let val = v.as_u64().map(|n| n.to_string()).unwrap_or_else(|| json_str(v.as_str()));
                format!("{}: {val}", json_str(k))
            })
            .collect();
        let _ = write!(
            s,
            "{}\n    {{\"proof\": {}, \"accel\": {}, \"passed\": {}, \"seconds\": {:.3}, \"metrics\": {{{}}}}}",
            if first { "" } else { "," },
            json_str(r.name),
            json_str(r.accel.name()),
            r.passed(),
            output.elapsed.as_secs_f64(),
            metrics.join(", ")
        );
        first = false;
    }
    s.push_str("\n  ]\n}\n");
    s
}

/// Prefix lookups on evidence (kept here: only reporting needs them).
trait PrefixExt {
    fn matching_prefix<'a>(&'a self, prefix: &'a str) -> Box<dyn Iterator<Item = (&'a str, keel_evidence::Value<'a>)> + 'a>;
}

impl PrefixExt for keel_evidence::Evidence {
    fn matching_prefix<'a>(&'a self, prefix: &'a str) -> Box<dyn Iterator<Item = (&'a str, keel_evidence::Value<'a>)> + 'a> {
        Box::new(self.keys().filter(move |k| k.starts_with(prefix)).filter_map(move |k| self.get(k).map(|v| (k, v))))
    }
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
                output: ProcessOutput { status: Some(33), timed_out: None, stdout: out.into(), stderr: String::new(), elapsed: Duration::from_millis(1500) },
                transcript: Transcript::parse(out),
                failures: failures.iter().map(|s| s.to_string()).collect(),
            },
            log: None,
        }
    }

    #[test]
    fn summary_counts() {
        let skip = JobResult { outcome: Outcome::Skipped("needs KVM".into()), ..ran("s", "", &[]) };
        assert_eq!(summary_line(&[ran("a", "", &[]), ran("b", "", &["x"])]), "1 passed, 1 failed");
        assert_eq!(summary_line(&[ran("a", "", &[]), skip]), "1 passed, 0 failed, 1 skipped");
    }

    #[test]
    fn table_and_details() {
        let rs = [ran("boot", "", &[]), ran("exceptions", "hello\nEV a=1\n", &["check failed: a = 1, want == 2", "other"])];
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
        let rows = bench_rows(&rs);
        assert_eq!(rows.len(), 2);
        let j = bench_json(&rs);
        assert!(j.contains(r#""metrics": {"bench.ipi_ns": 1200, "bench.mode": "x2apic"}"#), "{j}");
        assert!(j.contains(r#""proof": "b", "accel": "tcg", "passed": true"#), "{j}");
        assert_eq!(json_str("a\"b\\\n"), r#""a\"b\\\u000a""#);
    }
}
