//! The kernel command line: `proof=<name> key=value key="quoted value" flag`.
//!
//! The command line selects the kernel's proof scenario and its options, so
//! a typo must be reported (with the byte position) rather than silently
//! ignored. Parsing borrows from the input string and uses a fixed-capacity
//! token array, so it works before the heap exists.
//!
//! Syntax: tokens are separated by ASCII whitespace. A token is either a bare
//! `flag` or `key=value`. A value may be wrapped in double quotes to contain
//! whitespace (`msg="a b"`); there are no escape sequences. Quotes anywhere
//! else are an error. Keys (and flags) must be unique.

use core::fmt;

/// Maximum number of tokens; bounded so the parser needs no allocation.
pub const MAX_TOKENS: usize = 32;

/// Why a command line (or one of its values) was rejected. Positions are byte
/// offsets into the command line, so the kernel can point at the mistake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmdlineError {
    /// A `"` opened at `pos` is never closed.
    UnterminatedQuote {
        /// Offset of the opening quote.
        pos: usize,
    },
    /// A token starts with `=` (`=value`).
    EmptyKey {
        /// Offset of the token.
        pos: usize,
    },
    /// A key or flag appears a second time at `pos`; which one should win is
    /// ambiguous, so neither does.
    DuplicateKey {
        /// Offset of the second occurrence.
        pos: usize,
    },
    /// More than [`MAX_TOKENS`] tokens; the first one that does not fit is at `pos`.
    TooManyTokens {
        /// Offset of the first token that does not fit.
        pos: usize,
        /// The limit.
        max: usize,
    },
    /// A `"` where quotes are not allowed (in a key or inside an unquoted value).
    UnexpectedQuote {
        /// Offset of the quote.
        pos: usize,
    },
    /// Text directly after a closing quote (`k="a"b`).
    TrailingAfterQuote {
        /// Offset of the first character after the closing quote.
        pos: usize,
    },
    /// A value requested as a number is not decimal or `0x` hex, or overflows u64.
    InvalidNumber {
        /// Offset of the value.
        pos: usize,
    },
    /// A value was requested for a bare flag.
    MissingValue {
        /// Offset of the flag.
        pos: usize,
    },
}

impl fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnterminatedQuote { pos } => write!(f, "unterminated quote at byte {pos}"),
            Self::EmptyKey { pos } => write!(f, "empty key before '=' at byte {pos}"),
            Self::DuplicateKey { pos } => write!(f, "duplicate key at byte {pos}"),
            Self::TooManyTokens { pos, max } => {
                write!(f, "more than {max} tokens (token at byte {pos} does not fit)")
            }
            Self::UnexpectedQuote { pos } => write!(f, "unexpected quote at byte {pos}"),
            Self::TrailingAfterQuote { pos } => {
                write!(f, "text after closing quote at byte {pos}")
            }
            Self::InvalidNumber { pos } => {
                write!(f, "value at byte {pos} is not a decimal or 0x-hex u64")
            }
            Self::MissingValue { pos } => write!(f, "flag at byte {pos} has no value"),
        }
    }
}

/// One token of the command line, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param<'a> {
    /// The key (or the flag name).
    pub key: &'a str,
    /// The value without quotes; `None` for a bare flag.
    pub value: Option<&'a str>,
    /// Byte offset of the token, for error messages.
    pub pos: usize,
    /// Byte offset of the value (after any opening quote); equals `pos` for flags.
    pub value_pos: usize,
}

/// A parsed kernel command line; the kernel reads `proof=<name>` and its
/// options from it.
#[derive(Debug, Clone)]
pub struct CommandLine<'a> {
    params: [Param<'a>; MAX_TOKENS],
    len: usize,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl<'a> CommandLine<'a> {
    /// Parses `s`. Duplicates, stray quotes, empty keys and too many tokens are
    /// errors carrying the byte position.
    pub fn parse(s: &'a str) -> Result<Self, CmdlineError> {
        let empty = Param { key: "", value: None, pos: 0, value_pos: 0 };
        let mut out = CommandLine { params: [empty; MAX_TOKENS], len: 0 };
        let b = s.as_bytes();
        let n = b.len();
        let mut i = 0;
        loop {
            while i < n && is_ws(b[i]) {
                i += 1;
            }
            if i == n {
                break;
            }
            let pos = i;
            while i < n && !is_ws(b[i]) && b[i] != b'=' {
                if b[i] == b'"' {
                    return Err(CmdlineError::UnexpectedQuote { pos: i });
                }
                i += 1;
            }
            // All delimiters are ASCII, so every index used for slicing is a
            // char boundary.
            let key = &s[pos..i];
            let (value, value_pos) = if i < n && b[i] == b'=' {
                if key.is_empty() {
                    return Err(CmdlineError::EmptyKey { pos });
                }
                i += 1;
                if i < n && b[i] == b'"' {
                    let quote = i;
                    i += 1;
                    let start = i;
                    while i < n && b[i] != b'"' {
                        i += 1;
                    }
                    if i == n {
                        return Err(CmdlineError::UnterminatedQuote { pos: quote });
                    }
                    let v = &s[start..i];
                    i += 1;
                    if i < n && !is_ws(b[i]) {
                        return Err(CmdlineError::TrailingAfterQuote { pos: i });
                    }
                    (Some(v), start)
                } else {
                    let start = i;
                    while i < n && !is_ws(b[i]) {
                        if b[i] == b'"' {
                            return Err(CmdlineError::UnexpectedQuote { pos: i });
                        }
                        i += 1;
                    }
                    (Some(&s[start..i]), start)
                }
            } else {
                (None, pos)
            };
            if out.params().iter().any(|p| p.key == key) {
                return Err(CmdlineError::DuplicateKey { pos });
            }
            if out.len == MAX_TOKENS {
                return Err(CmdlineError::TooManyTokens { pos, max: MAX_TOKENS });
            }
            out.params[out.len] = Param { key, value, pos, value_pos };
            out.len += 1;
        }
        Ok(out)
    }

    /// All tokens in command-line order.
    pub fn params(&self) -> &[Param<'a>] {
        &self.params[..self.len]
    }

    /// Iterates over the tokens in order (e.g. to log them or reject unknown keys).
    pub fn iter(&self) -> impl Iterator<Item = &Param<'a>> + '_ {
        self.params().iter()
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty (or all-whitespace) command line.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn find(&self, key: &str) -> Option<&Param<'a>> {
        self.params().iter().find(|p| p.key == key)
    }

    /// The value of `key=value`; `None` if absent or given as a bare flag.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.find(key).and_then(|p| p.value)
    }

    /// True if `name` appears as a bare flag (not as `name=value`).
    pub fn flag(&self, name: &str) -> bool {
        self.find(name).is_some_and(|p| p.value.is_none())
    }

    /// True if `key` appears at all, as a flag or with a value.
    pub fn contains(&self, key: &str) -> bool {
        self.find(key).is_some()
    }

    /// The value of `key` as a number (decimal or `0x` hex); `Ok(None)` if
    /// absent, an error naming the position if present but malformed, so a
    /// mistyped option is reported rather than replaced by a default.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, CmdlineError> {
        let Some(p) = self.find(key) else {
            return Ok(None);
        };
        let Some(v) = p.value else {
            return Err(CmdlineError::MissingValue { pos: p.pos });
        };
        parse_u64(v).map(Some).ok_or(CmdlineError::InvalidNumber { pos: p.value_pos })
    }
}

/// Parses decimal or `0x`/`0X` hex without sign, whitespace or underscores.
pub fn parse_u64(v: &str) -> Option<u64> {
    let (digits, radix) = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (v, 10),
    };
    if digits.is_empty() || !digits.bytes().all(|c| (c as char).is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_tokens() {
        let c = CommandLine::parse("  proof=smp cpus=4\tverbose  mask=0xff ").unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(c.get("proof"), Some("smp"));
        assert_eq!(c.get_u64("cpus"), Ok(Some(4)));
        assert_eq!(c.get_u64("mask"), Ok(Some(255)));
        assert!(c.flag("verbose"));
        assert!(!c.flag("proof"));
        assert!(c.contains("proof"));
        assert_eq!(c.get("verbose"), None);
        assert_eq!(c.get("missing"), None);
        assert_eq!(c.get_u64("missing"), Ok(None));
        let keys: Vec<_> = c.iter().map(|p| p.key).collect();
        assert_eq!(keys, ["proof", "cpus", "verbose", "mask"]);
        assert_eq!(c.params()[1].pos, 12);
    }

    #[test]
    fn empty_lines() {
        assert!(CommandLine::parse("").unwrap().is_empty());
        assert!(CommandLine::parse(" \t\n ").unwrap().is_empty());
    }

    #[test]
    fn quoted_values() {
        let c = CommandLine::parse(r#"msg="hello world" e="" x=a=b u="ünï côde""#).unwrap();
        assert_eq!(c.get("msg"), Some("hello world"));
        assert_eq!(c.get("e"), Some(""));
        assert_eq!(c.get("x"), Some("a=b"));
        assert_eq!(c.get("u"), Some("ünï côde"));
        assert_eq!(c.params()[0].value_pos, 5);
        let c = CommandLine::parse("k=").unwrap();
        assert_eq!(c.get("k"), Some(""));
    }

    #[test]
    fn errors_with_positions() {
        assert_eq!(
            CommandLine::parse(r#"a=1 msg="oops"#).unwrap_err(),
            CmdlineError::UnterminatedQuote { pos: 8 }
        );
        assert_eq!(CommandLine::parse("a=1 =x").unwrap_err(), CmdlineError::EmptyKey { pos: 4 });
        assert_eq!(
            CommandLine::parse("a=1 b a=2").unwrap_err(),
            CmdlineError::DuplicateKey { pos: 6 }
        );
        assert_eq!(CommandLine::parse("f f").unwrap_err(), CmdlineError::DuplicateKey { pos: 2 });
        assert_eq!(CommandLine::parse("f f=1").unwrap_err(), CmdlineError::DuplicateKey { pos: 2 });
        assert_eq!(
            CommandLine::parse(r#"a"b=1"#).unwrap_err(),
            CmdlineError::UnexpectedQuote { pos: 1 }
        );
        assert_eq!(
            CommandLine::parse(r#"a=b"c""#).unwrap_err(),
            CmdlineError::UnexpectedQuote { pos: 3 }
        );
        assert_eq!(
            CommandLine::parse(r#"a="b"c"#).unwrap_err(),
            CmdlineError::TrailingAfterQuote { pos: 5 }
        );
        assert_eq!(
            CmdlineError::UnterminatedQuote { pos: 8 }.to_string(),
            "unterminated quote at byte 8"
        );
    }

    #[test]
    fn token_limit() {
        let ok: Vec<String> = (0..MAX_TOKENS).map(|i| format!("k{i}=v")).collect();
        let line = ok.join(" ");
        assert_eq!(CommandLine::parse(&line).unwrap().len(), MAX_TOKENS);
        let over = format!("{line} extra");
        assert_eq!(
            CommandLine::parse(&over).unwrap_err(),
            CmdlineError::TooManyTokens { pos: line.len() + 1, max: MAX_TOKENS }
        );
    }

    #[test]
    fn numbers() {
        let c = CommandLine::parse("a=0 b=18446744073709551615 c=18446744073709551616 d=0x d=1");
        assert_eq!(c.unwrap_err(), CmdlineError::DuplicateKey { pos: 55 });
        let c = CommandLine::parse(
            "a=0 b=18446744073709551615 c=18446744073709551616 d=0x e=+5 f=0XfF g=12z h=-1 flag",
        )
        .unwrap();
        assert_eq!(c.get_u64("a"), Ok(Some(0)));
        assert_eq!(c.get_u64("b"), Ok(Some(u64::MAX)));
        assert_eq!(c.get_u64("c"), Err(CmdlineError::InvalidNumber { pos: 29 }));
        assert_eq!(c.get_u64("d"), Err(CmdlineError::InvalidNumber { pos: 52 }));
        assert!(c.get_u64("e").is_err());
        assert_eq!(c.get_u64("f"), Ok(Some(255)));
        assert!(c.get_u64("g").is_err());
        assert!(c.get_u64("h").is_err());
        assert_eq!(c.get_u64("flag"), Err(CmdlineError::MissingValue { pos: 78 }));
        assert_eq!(parse_u64("0x1_0"), None);
        assert_eq!(parse_u64("0xFFFFFFFFFFFFFFFF"), Some(u64::MAX));
        assert_eq!(parse_u64("0x10000000000000000"), None);
    }
}
