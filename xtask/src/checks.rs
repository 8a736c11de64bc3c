//! Checks on evidence *values* (presence alone proves little), and the
//! judgement of a finished run against a proof's expectations.

use std::fmt;
use std::sync::Arc;

use keel_evidence::{exit, parse_u64, Transcript, Value, Verdict};

/// A predicate on one value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pred {
    Present,
    /// Equal; compared as integers when both sides parse as integers
    /// (`0xdead0000` == `3735879680`), else as strings.
    Eq(String),
    Ge(u64),
    Le(u64),
    /// Inclusive.
    Range(u64, u64),
}

/// Predicate constructors for wildcard checks: `for_each_cpu("cpu.*.mode", is::eq("x2apic"))`.
pub mod is {
    use super::Pred;
    pub fn eq(v: impl std::fmt::Display) -> Pred {
        Pred::Eq(v.to_string())
    }
    pub fn ge(n: u64) -> Pred {
        Pred::Ge(n)
    }
}

impl Pred {
    fn test(&self, v: Value<'_>) -> bool {
        match self {
            Pred::Present => true,
            Pred::Eq(want) => match (v.as_u64(), parse_u64(want)) {
                (Some(a), Some(b)) => a == b,
                _ => v.as_str() == want,
            },
            Pred::Ge(n) => v.as_u64().is_some_and(|x| x >= *n),
            Pred::Le(n) => v.as_u64().is_some_and(|x| x <= *n),
            Pred::Range(lo, hi) => v.as_u64().is_some_and(|x| (*lo..=*hi).contains(&x)),
        }
    }
}

impl fmt::Display for Pred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pred::Present => f.write_str("present"),
            Pred::Eq(v) => write!(f, "== {v}"),
            Pred::Ge(n) => write!(f, ">= {n}"),
            Pred::Le(n) => write!(f, "<= {n}"),
            Pred::Range(lo, hi) => write!(f, "in {lo}..={hi}"),
        }
    }
}

/// How many keys a wildcard check must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Count {
    AtLeast(usize),
    /// Exactly the integer value of another key (e.g. `smp.online`).
    EqualsKey(String),
}

pub type CustomFn = Arc<dyn Fn(&Transcript) -> Result<(), String> + Send + Sync>;

#[derive(Clone)]
pub enum Check {
    Key { key: String, pred: Pred },
    Absent { key: String },
    ForEach { pattern: String, pred: Pred, count: Count },
    KeysEqual { a: String, b: String },
    Custom { name: String, f: CustomFn },
}

/// `key == value` (integer-aware).
pub fn eq(key: &str, value: impl fmt::Display) -> Check {
    Check::Key { key: key.into(), pred: is::eq(value) }
}
pub fn ge(key: &str, n: u64) -> Check {
    Check::Key { key: key.into(), pred: Pred::Ge(n) }
}
pub fn le(key: &str, n: u64) -> Check {
    Check::Key { key: key.into(), pred: Pred::Le(n) }
}
pub fn range(key: &str, lo: u64, hi: u64) -> Check {
    Check::Key { key: key.into(), pred: Pred::Range(lo, hi) }
}
pub fn present(key: &str) -> Check {
    Check::Key { key: key.into(), pred: Pred::Present }
}
pub fn absent(key: &str) -> Check {
    Check::Absent { key: key.into() }
}
/// Every key matching `pattern` (`*` = one dotted segment) satisfies `pred`;
/// by default at least one must match (tighten with `count_eq_key`).
pub fn for_each_cpu(pattern: &str, pred: Pred) -> Check {
    Check::ForEach { pattern: pattern.into(), pred, count: Count::AtLeast(1) }
}
/// Both keys present, integers, and equal (e.g. IPIs sent == received).
pub fn keys_equal(a: &str, b: &str) -> Check {
    Check::KeysEqual { a: a.into(), b: b.into() }
}
/// Anything else; return `Err(explanation)` to fail.
pub fn custom(
    name: &str,
    f: impl Fn(&Transcript) -> Result<(), String> + Send + Sync + 'static,
) -> Check {
    Check::Custom { name: name.into(), f: Arc::new(f) }
}

impl Check {
    /// Wildcard matches must number exactly the value of `key`.
    pub fn count_eq_key(self, key: &str) -> Check {
        self.with_count(Count::EqualsKey(key.into()))
    }
    fn with_count(self, c: Count) -> Check {
        match self {
            Check::ForEach { pattern, pred, .. } => Check::ForEach { pattern, pred, count: c },
            _ => panic!("count rules apply only to for_each_cpu checks"),
        }
    }

    /// Keys and patterns this check names, for registry validation.
    pub fn names(&self) -> Vec<&str> {
        match self {
            Check::Key { key, .. } | Check::Absent { key } => vec![key],
            Check::ForEach { pattern, count: Count::EqualsKey(k), .. } => vec![pattern, k],
            Check::ForEach { pattern, .. } => vec![pattern],
            Check::KeysEqual { a, b } => vec![a, b],
            Check::Custom { .. } => vec![],
        }
    }

    /// `Ok` or a one-line explanation including the observed value.
    pub fn eval(&self, t: &Transcript) -> Result<(), String> {
        let ev = &t.evidence;
        match self {
            Check::Key { key, pred } => match ev.get(key) {
                None => Err(format!("{key}: missing (want {pred})")),
                Some(v) if pred.test(v) => Ok(()),
                Some(v) => Err(format!("{key} = {v}, want {pred}")),
            },
            Check::Absent { key } => match ev.get(key) {
                None => Ok(()),
                Some(v) => Err(format!("{key} = {v}, want absent")),
            },
            Check::ForEach { pattern, pred, count } => {
                let matched: Vec<_> = ev.matching(pattern).collect();
                let bad: Vec<String> = matched
                    .iter()
                    .filter(|(_, v)| !pred.test(*v))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                if !bad.is_empty() {
                    return Err(format!("{pattern}: want {pred}, got {}", bad.join(" ")));
                }
                let n = matched.len();
                match count {
                    Count::AtLeast(m) if n < *m => {
                        Err(format!("{pattern}: {n} keys matched, want >= {m}"))
                    }
                    Count::EqualsKey(k) => match ev.get(k).and_then(|v| v.as_u64()) {
                        None => Err(format!("{pattern}: count key {k} missing or not an integer")),
                        Some(m) if n as u64 != m => {
                            Err(format!("{pattern}: {n} keys matched, want {k} = {m}"))
                        }
                        Some(_) => Ok(()),
                    },
                    _ => Ok(()),
                }
            }
            Check::KeysEqual { a, b } => {
                let get = |k: &str| ev.get(k).map(|v| (v.as_str().to_string(), v.as_u64()));
                match (get(a), get(b)) {
                    (Some((_, Some(x))), Some((_, Some(y)))) if x == y => Ok(()),
                    (Some((x, _)), Some((y, _))) => Err(format!("{a} = {x} != {b} = {y}")),
                    (None, _) => Err(format!("{a}: missing (want == {b})")),
                    (_, None) => Err(format!("{b}: missing (want == {a})")),
                }
            }
            Check::Custom { name, f } => f(t).map_err(|e| format!("{name}: {e}")),
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Key { key, pred } => write!(f, "{key} {pred}"),
            Check::Absent { key } => write!(f, "{key} absent"),
            Check::ForEach { pattern, pred, count } => {
                write!(f, "each {pattern} {pred}")?;
                match count {
                    Count::AtLeast(1) => Ok(()),
                    Count::AtLeast(n) => write!(f, " (>= {n} keys)"),
                    Count::EqualsKey(k) => write!(f, " (count == {k})"),
                }
            }
            Check::KeysEqual { a, b } => write!(f, "{a} == {b}"),
            Check::Custom { name, .. } => write!(f, "{name}"),
        }
    }
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Check({self})")
    }
}

/// What the verdict line must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectVerdict {
    Pass,
    /// `VERDICT fail ...` with any reason.
    Fail,
    /// Anything but `VERDICT pass` (fail or no verdict), e.g. after a fatal exception.
    NotPass,
}

/// Expected end of a boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expect {
    /// QEMU exit status (see `keel_evidence::exit`).
    pub status: i32,
    pub verdict: ExpectVerdict,
}

impl Expect {
    pub const PASS: Expect = Expect { status: exit::STATUS_PASS, verdict: ExpectVerdict::Pass };
    pub const FATAL_EXCEPTION: Expect =
        Expect { status: exit::STATUS_FATAL_EXCEPTION, verdict: ExpectVerdict::NotPass };
    /// The kernel's own verdict fails (status 35, `VERDICT fail`).
    pub const FAIL: Expect = Expect { status: exit::STATUS_FAIL, verdict: ExpectVerdict::Fail };
    /// A deliberate kernel panic (status 37, no passing verdict).
    pub const PANIC: Expect =
        Expect { status: exit::STATUS_PANIC, verdict: ExpectVerdict::NotPass };
}

/// The raw facts of one finished boot, as the judge needs them.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    /// `None` when killed (timeout) or killed by a signal.
    pub status: Option<i32>,
    pub timed_out: Option<std::time::Duration>,
    pub transcript: &'a Transcript,
}

fn status_text(s: i32) -> String {
    format!("{s} ({})", exit::describe(s))
}

/// Every reason the boot does not meet `expect` + `checks`; empty = pass.
pub fn judge(expect: &Expect, checks: &[Check], obs: &Observed<'_>) -> Vec<String> {
    let mut fails = Vec::new();
    if let Some(t) = obs.timed_out {
        fails.push(format!("timeout: killed after {}s", t.as_secs()));
    }
    match obs.status {
        Some(s) if s == expect.status => {}
        Some(s) => fails.push(format!(
            "exit status {}, want {}",
            status_text(s),
            status_text(expect.status)
        )),
        None if obs.timed_out.is_none() => fails.push("QEMU killed by a signal".into()),
        None => {}
    }
    fails.extend(judge_transcript(expect, checks, obs.transcript));
    fails
}

/// The verdict and evidence half of [`judge`], for emulators without QEMU's exit device
/// (Bochs), where the serial transcript is all there is.
pub fn judge_transcript(expect: &Expect, checks: &[Check], t: &Transcript) -> Vec<String> {
    let mut fails = Vec::new();
    match (expect.verdict, &t.verdict) {
        (ExpectVerdict::Pass, Some(Verdict::Pass)) => {}
        (ExpectVerdict::Fail, Some(Verdict::Fail(_))) => {}
        (ExpectVerdict::NotPass, None | Some(Verdict::Fail(_))) => {}
        (ExpectVerdict::NotPass, Some(Verdict::Pass)) => {
            fails.push("unexpected VERDICT pass".into())
        }
        (want, None) => fails.push(format!("no VERDICT line (want {want:?})")),
        (want, Some(v)) => fails.push(format!("VERDICT {v}, want {want:?}")),
    }
    for e in &t.errors {
        fails.push(format!("malformed {e}"));
    }
    for c in checks {
        if let Err(e) = c.eval(t) {
            fails.push(format!("check failed: {e}"));
        }
    }
    fails
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Transcript {
        Transcript::parse(s)
    }

    #[test]
    fn value_checks() {
        let tr = t("EV a=5 cr2=0xdead0000 mode=xapic big=3735879680\n");
        assert!(eq("a", 5).eval(&tr).is_ok());
        assert!(eq("a", "0x5").eval(&tr).is_ok());
        assert!(eq("cr2", "0xdead0000").eval(&tr).is_ok());
        assert!(eq("cr2", 3_735_879_680u64).eval(&tr).is_ok());
        assert!(eq("big", "0xDEAD0000").eval(&tr).is_ok());
        assert!(eq("mode", "xapic").eval(&tr).is_ok());
        assert_eq!(eq("mode", "x2apic").eval(&tr).unwrap_err(), "mode = xapic, want == x2apic");
        assert!(ge("a", 5).eval(&tr).is_ok());
        assert!(ge("a", 6).eval(&tr).is_err());
        assert!(le("a", 5).eval(&tr).is_ok());
        assert!(le("a", 4).eval(&tr).is_err());
        assert!(range("a", 1, 5).eval(&tr).is_ok());
        assert!(range("a", 6, 9).eval(&tr).is_err());
        assert!(ge("mode", 0).eval(&tr).is_err(), "non-integer fails numeric checks");
        assert!(present("a").eval(&tr).is_ok());
        assert!(present("zz").eval(&tr).unwrap_err().contains("missing"));
        assert!(absent("zz").eval(&tr).is_ok());
        assert!(absent("a").eval(&tr).is_err());
    }

    #[test]
    fn wildcard_checks() {
        let tr = t("EV smp.online=2 cpu.0.mode=x2apic cpu.1.mode=x2apic cpu.0.timer_ticks=60 cpu.1.timer_ticks=12\n");
        assert!(for_each_cpu("cpu.*.mode", is::eq("x2apic"))
            .count_eq_key("smp.online")
            .eval(&tr)
            .is_ok());
        let e = for_each_cpu("cpu.*.timer_ticks", is::ge(50)).eval(&tr).unwrap_err();
        assert!(e.contains("cpu.1.timer_ticks=12"), "{e}");
        assert!(
            for_each_cpu("cpu.*.absent", is::ge(0)).eval(&tr).is_err(),
            "zero matches fail by default"
        );
        let tr3 = t("EV smp.online=3 cpu.0.mode=x2apic cpu.1.mode=x2apic\n");
        let e = for_each_cpu("cpu.*.mode", is::eq("x2apic"))
            .count_eq_key("smp.online")
            .eval(&tr3)
            .unwrap_err();
        assert!(e.contains("2 keys matched"), "{e}");
    }

    #[test]
    fn keys_equal_check() {
        assert!(keys_equal("s", "r").eval(&t("EV s=4 r=0x4\n")).is_ok());
        assert_eq!(keys_equal("s", "r").eval(&t("EV s=4 r=3\n")).unwrap_err(), "s = 4 != r = 3");
        assert!(keys_equal("s", "r").eval(&t("EV s=4\n")).unwrap_err().contains("r: missing"));
        assert!(keys_equal("s", "r").eval(&t("EV s=a r=a\n")).is_err(), "must be integers");
    }

    #[test]
    fn custom_check() {
        let c = custom("monotonic", |t| {
            let v: Vec<_> = t.evidence.all("tick").iter().filter_map(|s| parse_u64(s)).collect();
            if v.windows(2).all(|w| w[0] <= w[1]) {
                Ok(())
            } else {
                Err(format!("{v:?}"))
            }
        });
        assert!(c.eval(&t("EV tick=1\nEV tick=2\n")).is_ok());
        assert_eq!(c.eval(&t("EV tick=2\nEV tick=1\n")).unwrap_err(), "monotonic: [2, 1]");
    }

    fn obs(status: Option<i32>, tr: &Transcript) -> Observed<'_> {
        Observed { status, timed_out: None, transcript: tr }
    }

    #[test]
    fn judge_pass() {
        let tr = t("EV a=1\nVERDICT pass\n");
        assert!(judge(&Expect::PASS, &[eq("a", 1)], &obs(Some(33), &tr)).is_empty());
    }

    #[test]
    fn judge_failing_check_fails() {
        let tr = t("EV a=1\nVERDICT pass\n");
        let f = judge(&Expect::PASS, &[eq("a", 2)], &obs(Some(33), &tr));
        assert_eq!(f, ["check failed: a = 1, want == 2"]);
    }

    #[test]
    fn judge_wrong_status_fails() {
        let tr = t("VERDICT pass\n");
        let f = judge(&Expect::PASS, &[], &obs(Some(37), &tr));
        assert_eq!(f.len(), 1);
        assert!(f[0].contains("exit status 37 (kernel panic), want 33"), "{f:?}");
        assert!(!judge(&Expect::PASS, &[], &obs(None, &tr)).is_empty());
    }

    #[test]
    fn judge_missing_verdict_fails() {
        let tr = t("EV a=1\n");
        let f = judge(&Expect::PASS, &[], &obs(Some(33), &tr));
        assert_eq!(f, ["no VERDICT line (want Pass)"]);
    }

    #[test]
    fn judge_malformed_ev_fails() {
        let tr = t("EV a=1 Bad=2\nVERDICT pass\n");
        let f = judge(&Expect::PASS, &[eq("a", 1)], &obs(Some(33), &tr));
        assert_eq!(f.len(), 1);
        assert!(f[0].starts_with("malformed line 1"), "{f:?}");
    }

    #[test]
    fn judge_expected_failure() {
        let tr = t("EV fault.vector=14\n");
        assert!(judge(&Expect::FATAL_EXCEPTION, &[eq("fault.vector", 14)], &obs(Some(39), &tr))
            .is_empty());
        let tr = t("EV fault.vector=14\nVERDICT fail fatal\n");
        assert!(judge(&Expect::FATAL_EXCEPTION, &[], &obs(Some(39), &tr)).is_empty());
        let tr = t("VERDICT pass\n");
        let f = judge(&Expect::FATAL_EXCEPTION, &[], &obs(Some(39), &tr));
        assert_eq!(f, ["unexpected VERDICT pass"]);
        let fail = Expect { status: 35, verdict: ExpectVerdict::Fail };
        assert!(judge(&fail, &[], &obs(Some(35), &t("VERDICT fail x\n"))).is_empty());
        assert!(!judge(&fail, &[], &obs(Some(35), &t("VERDICT pass\n"))).is_empty());
    }

    #[test]
    fn judge_timeout() {
        let tr = t("");
        let o = Observed {
            status: None,
            timed_out: Some(std::time::Duration::from_secs(1)),
            transcript: &tr,
        };
        let f = judge(&Expect::PASS, &[], &o);
        assert_eq!(f[0], "timeout: killed after 1s");
    }
}
