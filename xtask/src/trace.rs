//! QEMU trace-event logs (`-d trace:<event> -D <file>`) and checks against them.
//!
//! Trace points see what the *emulated hardware* did, independently of what the kernel
//! claims in its evidence, so a trace check can catch a kernel that counts wrong. They
//! fire only in QEMU's userspace APIC, so traced proofs run under TCG only.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use keel_evidence::{parse_u64, Transcript};

/// One trace line, e.g. `apic_deliver_irq dest 1 dest_mode 0 ... vector 80 trigger_mode 0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    pub name: String,
    /// `("dest", "1")`, ...; an event printing one bare value (`cpu_set_apic_base 0x...`)
    /// has the single field `("value", ...)`.
    pub fields: Vec<(String, String)>,
    /// The line as read (prefix included), for error messages.
    pub raw: String,
}

impl TraceEvent {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Pseudo trace event: QEMU's `-d int` log item. Under TCG it logs every interrupt a CPU
/// actually takes (`Servicing hardware INT=0x50`), which is what an interrupt handler can
/// count; `apic_deliver_irq` also counts deliveries that merged with one already pending.
pub const INTERRUPT_LOG: &str = "int";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    pub events: Vec<TraceEvent>,
    /// Vectors of the hardware interrupts CPUs took, in log order (`-d int` only).
    pub taken_vectors: Vec<u8>,
}

/// The vector of a `-d int` line `Servicing hardware INT=0x50`.
fn taken_vector(line: &str) -> Option<u8> {
    let hex = line.trim().strip_prefix("Servicing hardware INT=0x")?;
    u8::from_str_radix(hex.trim(), 16).ok()
}

/// Integers compare as integers (QEMU prints `vector 80`, evidence may say `0x50`).
fn same_value(a: &str, b: &str) -> bool {
    match (parse_u64(a), parse_u64(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn is_event_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl TraceEvent {
    /// `None` for lines that are not trace events (QEMU warnings and the like).
    pub fn parse(line: &str) -> Option<TraceEvent> {
        let raw = line.trim_end().to_string();
        let mut body = raw.trim_start();
        // `-msg timestamp=on` and the log backend may prefix `pid@secs.usecs:`.
        if !body.starts_with(|c: char| c.is_ascii_alphabetic()) {
            body = body.split_once(':')?.1.trim_start();
        }
        let mut toks = body.split_whitespace();
        let name = toks.next().filter(|n| is_event_name(n))?.to_string();
        // Tolerate `key=value`, `key = value` and `key value,` spellings.
        let toks: Vec<String> = toks
            .flat_map(|t| t.split('=').map(str::to_string).collect::<Vec<_>>())
            .map(|t| t.trim_end_matches([',', ';']).to_string())
            .filter(|t| !t.is_empty())
            .collect();
        let fields = match toks.as_slice() {
            [] => vec![],
            [v] => vec![("value".to_string(), v.clone())],
            _ => {
                let mut f: Vec<(String, String)> =
                    toks.chunks_exact(2).map(|c| (c[0].clone(), c[1].clone())).collect();
                if toks.len() % 2 == 1 {
                    f.push(("value".to_string(), toks[toks.len() - 1].clone()));
                }
                f
            }
        };
        Some(TraceEvent { name, fields, raw })
    }
}

impl Trace {
    pub fn parse(text: &str) -> Trace {
        Trace {
            events: text.lines().filter_map(TraceEvent::parse).collect(),
            taken_vectors: text.lines().filter_map(taken_vector).collect(),
        }
    }

    pub fn read(path: &Path) -> std::io::Result<Trace> {
        Ok(Trace::parse(&String::from_utf8_lossy(&std::fs::read(path)?)))
    }

    /// Events called `name` whose fields all match `want` (integer-aware).
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        want: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a TraceEvent> + 'a {
        self.events.iter().filter(move |e| {
            e.name == name && want.iter().all(|(k, v)| e.field(k).is_some_and(|x| same_value(x, v)))
        })
    }

    /// `count("apic_deliver_irq", &[("vector", "80"), ("dest", "1")])`.
    pub fn count(&self, name: &str, want: &[(&str, &str)]) -> usize {
        self.matching(name, want).count()
    }

    /// How many times a CPU took hardware interrupt `vector` (needs [`INTERRUPT_LOG`]).
    pub fn taken(&self, vector: u8) -> usize {
        self.taken_vectors.iter().filter(|&&v| v == vector).count()
    }

    /// Field `field` of every `name` event, in order (`values("cpu_set_apic_base", "value")`).
    pub fn values(&self, name: &str, field: &str) -> Vec<&str> {
        self.events.iter().filter(|e| e.name == name).filter_map(|e| e.field(field)).collect()
    }
}

pub type TraceFn = Arc<dyn Fn(&Transcript, &Trace) -> Result<(), String> + Send + Sync>;

/// A named predicate on (evidence, trace); `Err(explanation)` fails the proof.
#[derive(Clone)]
pub struct TraceCheck {
    pub name: String,
    pub f: TraceFn,
}

impl fmt::Display for TraceCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "trace: {}", self.name)
    }
}

impl fmt::Debug for TraceCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceCheck({})", self.name)
    }
}

/// Failures of `checks`; a missing/unreadable trace fails every check (the
/// proof asked for a trace, so no trace is not a pass).
pub fn judge_trace(
    checks: &[TraceCheck],
    transcript: &Transcript,
    trace: Result<&Trace, &str>,
) -> Vec<String> {
    match trace {
        Err(why) if !checks.is_empty() => vec![format!("trace unavailable: {why}")],
        Err(_) => vec![],
        Ok(tr) => checks
            .iter()
            .filter_map(|c| {
                (c.f)(transcript, tr).err().map(|e| format!("trace check failed: {}: {e}", c.name))
            })
            .collect(),
    }
}

/// Evidence value as an integer, or an explanation naming the key.
pub fn ev_u64(t: &Transcript, key: &str) -> Result<u64, String> {
    match t.evidence.get(key) {
        None => Err(format!("evidence {key} missing")),
        Some(v) => v.as_u64().ok_or_else(|| format!("evidence {key} = {v} is not an integer")),
    }
}

/// Evidence value as a string, or an explanation naming the key.
pub fn ev_str(t: &Transcript, key: &str) -> Result<String, String> {
    t.evidence
        .get(key)
        .map(|v| v.as_str().to_string())
        .ok_or_else(|| format!("evidence {key} missing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = "\
cpu_set_apic_base 0x00000000fee00d00
apic_deliver_irq dest 1 dest_mode 0 delivery_mode 0 vector 80 trigger_mode 0
apic_deliver_irq dest 0 dest_mode 0 delivery_mode 0 vector 80 trigger_mode 0
apic_deliver_irq dest 1 dest_mode 0 delivery_mode 0 vector 48 trigger_mode 0
qemu-system-x86_64: warning: something unrelated
";

    fn prefixed(s: &str) -> String {
        s.lines().enumerate().map(|(i, l)| format!("4242@1700000000.{i:06}:{l}\n")).collect()
    }

    #[test]
    fn parses_plain_lines() {
        let t = Trace::parse(PLAIN);
        assert_eq!(t.events.len(), 4, "{t:#?}");
        assert_eq!(t.events[0].name, "cpu_set_apic_base");
        assert_eq!(t.events[0].fields, [("value".to_string(), "0x00000000fee00d00".to_string())]);
        assert_eq!(t.events[1].field("dest"), Some("1"));
        assert_eq!(t.events[1].field("trigger_mode"), Some("0"));
        assert_eq!(t.events[1].fields.len(), 5);
        assert_eq!(t.values("cpu_set_apic_base", "value"), ["0x00000000fee00d00"]);
    }

    #[test]
    fn parses_pid_timestamp_prefix() {
        let t = Trace::parse(&prefixed(PLAIN));
        assert_eq!(
            t,
            Trace {
                taken_vectors: vec![],
                events: Trace::parse(PLAIN)
                    .events
                    .into_iter()
                    .enumerate()
                    .map(|(i, mut e)| {
                        e.raw = format!("4242@1700000000.{i:06}:{}", e.raw);
                        e
                    })
                    .collect()
            }
        );
        // A space after the colon is fine too.
        let e = TraceEvent::parse("  17@1.5: cpu_set_apic_base 0xfee00900").unwrap();
        assert_eq!(e.field("value"), Some("0xfee00900"));
    }

    #[test]
    fn other_spellings_and_junk() {
        let e = TraceEvent::parse("ioapic_set_irq vector=80, level = 1").unwrap();
        assert_eq!(e.field("vector"), Some("80"));
        assert_eq!(e.field("level"), Some("1"));
        let e = TraceEvent::parse("apic_mem_readl addr 0x30 val").unwrap();
        assert_eq!((e.field("addr"), e.field("value")), (Some("0x30"), Some("val")));
        assert!(TraceEvent::parse("").is_none());
        assert!(TraceEvent::parse("12345 no colon here").is_none());
        assert!(TraceEvent::parse("Warning: x").is_none(), "capitalised words are not events");
        assert_eq!(TraceEvent::parse("bare_event").unwrap().fields, []);
    }

    #[test]
    fn interrupts_taken_come_from_the_int_log() {
        let log = "Servicing hardware INT=0x50\n     3: v=50 e=0000 i=0 cpl=0 IP=0008:ffffffff80101234\nRAX=0000000000000000 RBX=1\nServicing hardware INT=0x30\nServicing hardware INT=0x50\n";
        let t = Trace::parse(&format!("{PLAIN}{log}"));
        assert_eq!(t.taken_vectors, [0x50, 0x30, 0x50]);
        assert_eq!((t.taken(0x50), t.taken(0x31)), (2, 0));
        assert_eq!(t.events.len(), 4, "the int log adds no trace events: {:#?}", t.events);
    }

    #[test]
    fn count_is_integer_aware() {
        let t = Trace::parse(&prefixed(PLAIN));
        assert_eq!(t.count("apic_deliver_irq", &[("vector", "80"), ("dest", "1")]), 1);
        assert_eq!(t.count("apic_deliver_irq", &[("vector", "0x50")]), 2);
        assert_eq!(t.count("apic_deliver_irq", &[]), 3);
        assert_eq!(t.count("apic_deliver_irq", &[("nosuch", "1")]), 0);
        assert_eq!(t.count("cpu_set_apic_base", &[("value", "0xfee00d00")]), 1);
    }

    #[test]
    fn judge_plumbing() {
        let tr = Transcript::parse("EV rtc.vector=0x50 rtc.interrupts=2\nVERDICT pass\n");
        let trace = Trace::parse(PLAIN);
        let checks = vec![
            TraceCheck {
                name: "irqs".into(),
                f: Arc::new(|t, tr| {
                    let v = ev_str(t, "rtc.vector")?;
                    let n = tr.count("apic_deliver_irq", &[("vector", &v)]) as u64;
                    if n == ev_u64(t, "rtc.interrupts")? {
                        Ok(())
                    } else {
                        Err(format!("{n} traced"))
                    }
                }),
            },
            TraceCheck { name: "missing".into(), f: Arc::new(|t, _| ev_u64(t, "nope").map(drop)) },
        ];
        assert_eq!(judge_trace(&checks[..1], &tr, Ok(&trace)), Vec::<String>::new());
        assert_eq!(
            judge_trace(&checks, &tr, Ok(&trace)),
            ["trace check failed: missing: evidence nope missing"]
        );
        assert_eq!(judge_trace(&checks, &tr, Err("no file")), ["trace unavailable: no file"]);
        assert!(judge_trace(&[], &tr, Err("no file")).is_empty());
    }
}
