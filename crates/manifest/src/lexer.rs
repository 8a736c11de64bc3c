//! Tokens with their source positions, and number literals (decimal, hex, PCI ids).

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;

use crate::{ErrorKind, ManifestError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub(crate) line: u32,
    pub(crate) column: u32,
}

impl Pos {
    pub(crate) fn err(self, kind: ErrorKind) -> ManifestError {
        ManifestError { line: self.line, column: self.column, kind }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    LBrace,
    RBrace,
    LParen,
    RParen,
    Eq,
    Comma,
    Colon,
    DotDot,
    Eof,
}

#[derive(Clone, Debug)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) pos: Pos,
}

pub(crate) fn describe(t: &Tok) -> String {
    use alloc::format;
    pub(crate) fn clip(s: &str) -> &str {
        match s.char_indices().nth(32) {
            Some((i, _)) => &s[..i],
            None => s,
        }
    }
    match t {
        Tok::Ident(s) => format!("identifier `{}`", clip(s)),
        Tok::Str(s) => format!("string {:?}", clip(s)),
        Tok::Num(s) => format!("number `{}`", clip(s)),
        Tok::LBrace => "'{'".to_owned(),
        Tok::RBrace => "'}'".to_owned(),
        Tok::LParen => "'('".to_owned(),
        Tok::RParen => "')'".to_owned(),
        Tok::Eq => "'='".to_owned(),
        Tok::Comma => "','".to_owned(),
        Tok::Colon => "':'".to_owned(),
        Tok::DotDot => "'..'".to_owned(),
        Tok::Eof => "end of file".to_owned(),
    }
}

pub(crate) fn lex(text: &str) -> Result<Vec<Token>, ManifestError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut pos = Pos { line: 1, column: 1 };
    // Advances over one character, keeping the position current.
    pub(crate) fn bump(
        chars: &mut core::iter::Peekable<core::str::Chars<'_>>,
        pos: &mut Pos,
    ) -> Option<char> {
        let c = chars.next()?;
        if c == '\n' {
            pos.line = pos.line.saturating_add(1);
            pos.column = 1;
        } else {
            pos.column = pos.column.saturating_add(1);
        }
        Some(c)
    }
    while let Some(&c) = chars.peek() {
        let start = pos;
        match c {
            c if c.is_whitespace() => {
                bump(&mut chars, &mut pos);
            }
            '#' => {
                while let Some(&c) = chars.peek() {
                    if c == '\n' {
                        break;
                    }
                    bump(&mut chars, &mut pos);
                }
            }
            '{' | '}' | '(' | ')' | '=' | ',' | ':' => {
                bump(&mut chars, &mut pos);
                let tok = match c {
                    '{' => Tok::LBrace,
                    '}' => Tok::RBrace,
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    '=' => Tok::Eq,
                    ',' => Tok::Comma,
                    _ => Tok::Colon,
                };
                out.push(Token { tok, pos: start });
            }
            '.' => {
                bump(&mut chars, &mut pos);
                if chars.peek() == Some(&'.') {
                    bump(&mut chars, &mut pos);
                    out.push(Token { tok: Tok::DotDot, pos: start });
                } else {
                    return Err(start.err(ErrorKind::UnexpectedChar('.')));
                }
            }
            '"' => {
                bump(&mut chars, &mut pos);
                let mut s = String::new();
                loop {
                    let at = pos;
                    match bump(&mut chars, &mut pos) {
                        None | Some('\n') => return Err(start.err(ErrorKind::UnterminatedString)),
                        Some('"') => break,
                        Some('\\') => match bump(&mut chars, &mut pos) {
                            Some('\\') => s.push('\\'),
                            Some('"') => s.push('"'),
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            None | Some('\n') => {
                                return Err(start.err(ErrorKind::UnterminatedString))
                            }
                            Some(e) => return Err(at.err(ErrorKind::InvalidEscape(e))),
                        },
                        Some(c) => s.push(c),
                    }
                }
                out.push(Token { tok: Tok::Str(s), pos: start });
            }
            c if c.is_ascii_digit() => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if !(c.is_ascii_alphanumeric() || c == '_') {
                        break;
                    }
                    s.push(c);
                    bump(&mut chars, &mut pos);
                }
                out.push(Token { tok: Tok::Num(s), pos: start });
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if !(c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                        break;
                    }
                    s.push(c);
                    bump(&mut chars, &mut pos);
                }
                out.push(Token { tok: Tok::Ident(s), pos: start });
            }
            other => return Err(start.err(ErrorKind::UnexpectedChar(other))),
        }
    }
    out.push(Token { tok: Tok::Eof, pos });
    Ok(out)
}

/// Decimal or `0x` hex, at most `max`.
pub(crate) fn parse_number(text: &str, max: u64) -> Result<u64, ErrorKind> {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None => (text, 10),
    };
    if digits.is_empty() {
        return Err(ErrorKind::InvalidNumber(text.to_owned()));
    }
    let mut v: u64 = 0;
    let mut overflow = false;
    for c in digits.chars() {
        let d = c.to_digit(radix).ok_or_else(|| ErrorKind::InvalidNumber(text.to_owned()))?;
        match v.checked_mul(u64::from(radix)).and_then(|v| v.checked_add(u64::from(d))) {
            Some(n) => v = n,
            None => overflow = true,
        }
    }
    if overflow || v > max {
        return Err(ErrorKind::NumberOutOfRange { value: text.to_owned(), max });
    }
    Ok(v)
}

/// One half of a PCI id: 1..=4 hex digits, optional `0x`.
pub(crate) fn parse_pci_half(text: &str) -> Result<u16, ErrorKind> {
    let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).unwrap_or(text);
    if digits.is_empty() || digits.len() > 4 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ErrorKind::InvalidPciId(text.to_owned()));
    }
    u16::from_str_radix(digits, 16).map_err(|_| ErrorKind::InvalidPciId(text.to_owned()))
}
