//! Host-side parser for a serial transcript.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::key::{is_valid_key, is_valid_pattern, pattern_matches};

/// The kernel's verdict line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// `VERDICT fail <reason>`; the reason may be empty.
    Fail(String),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Pass => f.write_str("pass"),
            Verdict::Fail(r) if r.is_empty() => f.write_str("fail"),
            Verdict::Fail(r) => write!(f, "fail {r}"),
        }
    }
}

/// A line that looked machine-readable but broke the format. The runner fails
/// any proof whose transcript has one: silently dropping evidence hides bugs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number in the transcript.
    pub line: usize,
    pub text: String,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {:?}", self.line, self.reason, self.text)
    }
}

/// One evidence value, borrowed from the transcript.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Value<'a>(pub &'a str);

impl<'a> Value<'a> {
    pub fn as_str(&self) -> &'a str {
        self.0
    }
    /// Decimal or `0x` hex.
    pub fn as_u64(&self) -> Option<u64> {
        parse_u64(self.0)
    }
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Parse a decimal or `0x`/`0X` hexadecimal integer (no sign, no separators).
pub fn parse_u64(s: &str) -> Option<u64> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (s, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// All evidence pairs of a transcript: per key the values in print order (the
/// last one is "the" value), plus the global order of every pair.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evidence {
    by_key: BTreeMap<String, Vec<String>>,
    order: Vec<(String, String)>,
}

impl Evidence {
    pub fn insert(&mut self, key: &str, value: &str) {
        self.by_key.entry(key.to_string()).or_default().push(value.to_string());
        self.order.push((key.to_string(), value.to_string()));
    }
    /// The last value printed for `key`.
    pub fn get(&self, key: &str) -> Option<Value<'_>> {
        self.by_key.get(key).and_then(|v| v.last()).map(|s| Value(s))
    }
    /// Every value printed for `key`, in order (empty if never printed).
    pub fn all(&self, key: &str) -> &[String] {
        self.by_key.get(key).map(Vec::as_slice).unwrap_or(&[])
    }
    pub fn contains(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }
    /// Distinct keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.by_key.keys().map(String::as_str)
    }
    /// Every `(key, value)` pair in print order, duplicates included.
    pub fn entries(&self) -> &[(String, String)] {
        &self.order
    }
    /// Keys matching a wildcard pattern (`cpu.*.mode`) with their last values,
    /// sorted by key. An invalid pattern matches nothing.
    pub fn matching<'s>(
        &'s self,
        pattern: &'s str,
    ) -> impl Iterator<Item = (&'s str, Value<'s>)> + 's {
        let valid = is_valid_pattern(pattern);
        self.by_key
            .iter()
            .filter(move |(k, _)| valid && pattern_matches(pattern, k))
            .filter_map(|(k, v)| v.last().map(|s| (k.as_str(), Value(s))))
    }
    pub fn len(&self) -> usize {
        self.by_key.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// A parsed serial transcript.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transcript {
    pub evidence: Evidence,
    /// The first VERDICT line, if any.
    pub verdict: Option<Verdict>,
    /// Free-form lines (neither EV nor VERDICT), without line terminators.
    pub log: Vec<String>,
    /// Malformed machine-readable lines; non-empty means the proof fails.
    pub errors: Vec<ParseError>,
}

impl Transcript {
    pub fn parse(text: &str) -> Transcript {
        let mut t = Transcript::default();
        for (idx, raw) in text.split('\n').enumerate() {
            let line = clean(raw);
            let n = idx + 1;
            let mut err = |reason: String| {
                t.errors.push(ParseError { line: n, text: line.to_string(), reason })
            };
            if let Some(rest) = word_rest(line, "EV") {
                if t.verdict.is_some() {
                    err("EV line after VERDICT (the verdict must be printed last)".into());
                }
                let mut any = false;
                for pair in rest.split_whitespace() {
                    any = true;
                    match pair.split_once('=') {
                        None => err(format!("pair {pair:?} has no '='")),
                        Some((k, _)) if !is_valid_key(k) => {
                            err(format!("invalid key {k:?} (want [a-z0-9_.]+)"))
                        }
                        Some((_, "")) => err(format!("empty value in {pair:?}")),
                        Some((_, v)) if v.contains('=') => {
                            err(format!("value contains '=' in {pair:?}"))
                        }
                        Some((k, v)) => t.evidence.insert(k, v),
                    }
                }
                if !any {
                    err("EV line without key=value pairs".into());
                }
            } else if let Some(rest) = word_rest(line, "VERDICT") {
                let rest = rest.trim();
                let verdict = if rest == "pass" {
                    Some(Verdict::Pass)
                } else if let Some(reason) = word_rest(rest, "fail") {
                    Some(Verdict::Fail(reason.trim().to_string()))
                } else {
                    err(format!("unknown verdict {rest:?} (want 'pass' or 'fail <reason>')"));
                    None
                };
                if let Some(v) = verdict {
                    if t.verdict.is_some() {
                        err("second VERDICT line (exactly one per boot)".into());
                    } else {
                        t.verdict = Some(v);
                    }
                }
            } else if !(line.is_empty() && idx + 1 == text.split('\n').count()) {
                t.log.push(line.to_string());
            }
        }
        t
    }
}

/// If `line` is `word` alone or `word` followed by whitespace, the rest.
fn word_rest<'a>(line: &'a str, word: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(word)?;
    (rest.is_empty() || rest.starts_with(char::is_whitespace)).then_some(rest)
}

/// Drop the line terminator and any leading terminal noise (firmware may emit
/// ANSI escape sequences or NULs on the serial port before the kernel's first
/// line, without a newline in between).
fn clean(raw: &str) -> &str {
    let mut s = raw.strip_suffix('\r').unwrap_or(raw);
    loop {
        if let Some(rest) = s.strip_prefix('\x1b') {
            // CSI: ESC [ params final-byte(0x40..=0x7e); other escapes: ESC + one char.
            if let Some(csi) = rest.strip_prefix('[') {
                match csi.find(|c: char| ('\x40'..='\x7e').contains(&c)) {
                    Some(end) => s = &csi[end + 1..],
                    None => return "",
                }
            } else {
                let mut it = rest.chars();
                it.next();
                s = it.as_str();
            }
        } else if s.starts_with(|c: char| c.is_control()) {
            s = &s[1..];
        } else {
            return s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
Keel booting\r
EV boot.mem.usable_kib=130048 acpi.madt.cpus=2\r
EV heap.check=ok\r
some log = with equals\r
EV smp.online=1\r
EV smp.online=2\r
EV fault.cr2=0xdead0000\r
VERDICT pass\r
halting\r
";

    #[test]
    fn parses_sample() {
        let t = Transcript::parse(SAMPLE);
        assert!(t.errors.is_empty(), "{:?}", t.errors);
        assert_eq!(t.verdict, Some(Verdict::Pass));
        let e = &t.evidence;
        assert_eq!(e.get("boot.mem.usable_kib").unwrap().as_u64(), Some(130048));
        assert_eq!(e.get("heap.check").unwrap().as_str(), "ok");
        assert_eq!(e.get("smp.online").unwrap().as_u64(), Some(2), "last value wins");
        assert_eq!(e.all("smp.online"), ["1", "2"]);
        assert_eq!(e.all("nope"), [] as [String; 0]);
        assert_eq!(e.get("fault.cr2").unwrap().as_u64(), Some(0xdead_0000));
        assert_eq!(e.entries().len(), 6);
        assert_eq!(e.len(), 5);
        assert_eq!(t.log, ["Keel booting", "some log = with equals", "halting"]);
    }

    #[test]
    fn integers() {
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("42"), Some(42));
        assert_eq!(parse_u64("0x2A"), Some(42));
        assert_eq!(parse_u64("0Xff"), Some(255));
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64("18446744073709551616"), None);
        for bad in ["", "0x", "-1", "+1", "1_000", "x2apic", "12a", " 1"] {
            assert_eq!(parse_u64(bad), None, "{bad:?}");
        }
        assert_eq!(Value("ok").as_u64(), None);
    }

    #[test]
    fn fail_verdict_with_reason() {
        let t = Transcript::parse("VERDICT fail ipi 3 lost\n");
        assert_eq!(t.verdict, Some(Verdict::Fail("ipi 3 lost".into())));
        let t = Transcript::parse("VERDICT fail");
        assert_eq!(t.verdict, Some(Verdict::Fail(String::new())));
        assert_eq!(t.verdict.unwrap().to_string(), "fail");
    }

    #[test]
    fn no_verdict() {
        let t = Transcript::parse("EV a=1\n");
        assert_eq!(t.verdict, None);
        assert!(t.errors.is_empty());
    }

    #[test]
    fn malformed_lines_are_errors() {
        let t = Transcript::parse(
            "EV\nEV   \nEV novalue\nEV Bad=1\nEV a.=1\nEV k=\nEV k=a=b\nEV good=1 bad\nVERDICT maybe\n",
        );
        assert_eq!(t.errors.len(), 9, "{:#?}", t.errors);
        assert_eq!(t.errors[0].line, 1);
        assert_eq!(t.errors[8].line, 9);
        assert_eq!(t.evidence.get("good").unwrap().as_u64(), Some(1), "valid pairs kept");
        assert_eq!(t.verdict, None);
    }

    #[test]
    fn not_machine_lines() {
        let t = Transcript::parse("EVENT x=1\nEVa=1\nVERDICTS pass\n");
        assert!(t.errors.is_empty());
        assert!(t.evidence.is_empty());
        assert_eq!(t.verdict, None);
        assert_eq!(t.log.len(), 3);
    }

    #[test]
    fn ordering_rules() {
        let t = Transcript::parse("VERDICT pass\nEV late=1\nVERDICT fail again\n");
        assert_eq!(t.verdict, Some(Verdict::Pass), "first verdict kept");
        assert_eq!(t.errors.len(), 2);
        assert!(t.errors[0].reason.contains("after VERDICT"));
        assert!(t.errors[1].reason.contains("second VERDICT"));
    }

    #[test]
    fn strips_terminal_noise() {
        let t = Transcript::parse("\x1bc\x1b[?7l\x1b[2J\x1b[1;1HEV a=1\n\0\0VERDICT pass\n");
        assert!(t.errors.is_empty(), "{:?}", t.errors);
        assert_eq!(t.evidence.get("a").unwrap().as_u64(), Some(1));
        assert_eq!(t.verdict, Some(Verdict::Pass));
    }

    #[test]
    fn tabs_separate_pairs() {
        let t = Transcript::parse("EV\ta=1\tb=2");
        assert!(t.errors.is_empty());
        assert_eq!(t.evidence.len(), 2);
    }

    #[test]
    fn wildcard_matching() {
        let t = Transcript::parse(
            "EV cpu.0.mode=x2apic cpu.1.mode=xapic cpu.mode=x cpu.1.timer_ticks=5\n",
        );
        let m: Vec<_> = t.evidence.matching("cpu.*.mode").map(|(k, v)| (k, v.as_str())).collect();
        assert_eq!(m, [("cpu.0.mode", "x2apic"), ("cpu.1.mode", "xapic")]);
        assert_eq!(t.evidence.matching("cpu..mode").count(), 0);
    }
}
