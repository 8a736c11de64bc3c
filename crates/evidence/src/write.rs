//! Kernel-side formatting. `core` only: usable from the serial console before
//! the heap exists. Keys are validated with `debug_assert!` so a typo panics in
//! debug kernels (and shows up as a failed proof) but costs nothing in release.

use core::fmt::{self, Display, Write};

/// Write one evidence line: `EV <key>=<value>\n`.
///
/// ```
/// let mut s = String::new();
/// keel_evidence::write_ev(&mut s, "smp.online", 2).unwrap();
/// assert_eq!(s, "EV smp.online=2\n");
/// ```
pub fn write_ev<W: Write + ?Sized>(w: &mut W, key: &str, value: impl Display) -> fmt::Result {
    EvLine::new(w).kv(key, value).finish()
}

/// `VERDICT pass\n`. Must be the last line of a boot.
pub fn write_verdict_pass<W: Write + ?Sized>(w: &mut W) -> fmt::Result {
    w.write_str("VERDICT pass\n")
}

/// `VERDICT fail <reason>\n`. Newlines in the reason are replaced by spaces so
/// the verdict stays one line.
pub fn write_verdict_fail<W: Write + ?Sized>(w: &mut W, reason: impl Display) -> fmt::Result {
    w.write_str("VERDICT fail ")?;
    write!(OneLine(w), "{reason}")?;
    w.write_str("\n")
}

/// Builder for an `EV` line with several pairs:
///
/// ```
/// let mut s = String::new();
/// keel_evidence::EvLine::new(&mut s).kv("cpu.1.apic_id", 1).kv("cpu.1.mode", "xapic").finish().unwrap();
/// assert_eq!(s, "EV cpu.1.apic_id=1 cpu.1.mode=xapic\n");
/// ```
pub struct EvLine<'w, W: Write + ?Sized> {
    w: &'w mut W,
    result: fmt::Result,
}

impl<'w, W: Write + ?Sized> EvLine<'w, W> {
    pub fn new(w: &'w mut W) -> Self {
        let result = w.write_str("EV");
        Self { w, result }
    }

    /// Append ` key=value`. The first write error sticks and is returned by `finish`.
    pub fn kv(mut self, key: &str, value: impl Display) -> Self {
        debug_assert!(crate::is_valid_key(key), "invalid evidence key {key:?}");
        if self.result.is_ok() {
            self.result = (|| {
                write!(self.w, " {key}=")?;
                let mut v = Token { w: &mut *self.w, len: 0 };
                write!(v, "{value}")?;
                debug_assert!(v.len > 0, "empty evidence value for {key}");
                Ok(())
            })();
        }
        self
    }

    /// Terminate the line.
    pub fn finish(self) -> fmt::Result {
        self.result?;
        self.w.write_str("\n")
    }
}

/// Forwards a value, asserting (debug builds) it is one token without whitespace.
struct Token<'a, W: Write + ?Sized> {
    w: &'a mut W,
    len: usize,
}

impl<W: Write + ?Sized> Write for Token<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        debug_assert!(
            !s.chars().any(|c| c.is_whitespace() || c == '='),
            "evidence value contains whitespace or '=': {s:?}"
        );
        self.len += s.len();
        self.w.write_str(s)
    }
}

/// Forwards text with line breaks flattened to spaces.
struct OneLine<'a, W: Write + ?Sized>(&'a mut W);

impl<W: Write + ?Sized> Write for OneLine<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for (i, part) in s.split(['\n', '\r']).enumerate() {
            if i > 0 {
                self.0.write_char(' ')?;
            }
            self.0.write_str(part)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_pair() {
        let mut s = String::new();
        write_ev(&mut s, "fault.cr2", format_args!("{:#x}", 0xdead_0000u64)).unwrap();
        assert_eq!(s, "EV fault.cr2=0xdead0000\n");
    }

    #[test]
    fn multi_pair_and_verdicts() {
        let mut s = String::new();
        EvLine::new(&mut s).kv("a", 1).kv("b.c", "ok").finish().unwrap();
        write_verdict_fail(&mut s, "ipi lost\non cpu 1").unwrap();
        write_verdict_pass(&mut s).unwrap();
        assert_eq!(s, "EV a=1 b.c=ok\nVERDICT fail ipi lost on cpu 1\nVERDICT pass\n");
    }

    #[test]
    #[should_panic(expected = "invalid evidence key")]
    fn bad_key_panics_in_debug() {
        let mut s = String::new();
        let _ = write_ev(&mut s, "Bad Key", 1);
    }

    #[test]
    #[should_panic(expected = "whitespace")]
    fn bad_value_panics_in_debug() {
        let mut s = String::new();
        let _ = write_ev(&mut s, "k", "two words");
    }

    #[cfg(feature = "parse")]
    #[test]
    fn writer_output_round_trips_through_parser() {
        let mut s = String::new();
        write_ev(&mut s, "x.y", 42).unwrap();
        write_verdict_pass(&mut s).unwrap();
        let t = crate::Transcript::parse(&s);
        assert!(t.errors.is_empty());
        assert_eq!(t.evidence.get("x.y").unwrap().as_u64(), Some(42));
        assert_eq!(t.verdict, Some(crate::Verdict::Pass));
    }
}
