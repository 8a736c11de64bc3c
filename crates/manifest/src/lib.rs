//! The Keel boot manifest.
//!
//! One declarative text file, handed to the kernel as a Multiboot module, names the programs
//! to start and the capabilities each one is granted. The kernel grants nothing the manifest
//! does not name, so this parser is the single place where authority enters the system: it is
//! strict (unknown keys, duplicates and out-of-range numbers are errors, never ignored) and it
//! never panics on bad input. Errors carry a 1-based line and column.
//!
//! # Example
//!
//! ```text
//! # Keel boot manifest: comments start with '#'
//! device edu { pci = 1234:11e8 }
//! program "edu-msi" {
//!     binary = "edu-driver"
//!     args = "mode=msi count=100"
//!     cpu = 1
//!     expect_exit = 0
//!     grant Console
//!     grant Interrupt { source = msi(edu) }
//!     grant DeviceMemory { pci = edu, bar = 0 }
//!     grant IoPorts { 0x70..0x71 }
//! }
//! program "edu-intx" { binary = "edu-driver" after = "edu-msi" grant Interrupt { source = intx(edu) } }
//! ```
//!
//! # Grammar
//!
//! ```text
//! manifest      = { item } EOF ;
//! item          = device | program ;
//! device        = "device" IDENT "{" { device_field [","] } "}" ;
//! device_field  = "pci" "=" HEX16 ":" HEX16          (* required: vendor:device, hex *)
//!               | "index" "=" NUMBER ;                (* optional, u32, default 0 *)
//! program       = "program" STRING "{" { program_entry [","] } "}" ;
//! program_entry = "binary" "=" STRING                (* required *)
//!               | "args" "=" STRING                  (* default "" *)
//!               | "cpu" "=" NUMBER                   (* u32 *)
//!               | "after" "=" STRING                 (* name of another program *)
//!               | "expect_exit" "=" NUMBER           (* u64 *)
//!               | "grant" grant ;
//! grant         = "Console" | "Timer" | "Process" | "VirtualMemory"
//!               | "Interrupt" "{" { "source" "=" source [","] } "}"       (* source required *)
//!               | "DeviceMemory" "{" { dm_field [","] } "}"              (* pci, bar required *)
//!               | "IoPorts" "{" NUMBER [ ".." NUMBER ] [","] "}" ;       (* inclusive, u16 *)
//! dm_field      = "pci" "=" IDENT | "bar" "=" NUMBER ;                  (* bar 0..=5 *)
//! source        = "msi" "(" IDENT ")" | "intx" "(" IDENT ")"
//!               | "isa" "(" NUMBER ")" ;                                 (* irq 0..=15 *)
//! ```
//!
//! Lexical rules: `#` starts a comment to end of line; whitespace (including newlines) only
//! separates tokens. `IDENT` is `[A-Za-z_][A-Za-z0-9_-]*`. `NUMBER` is decimal or `0x` hex.
//! `HEX16` is 1 to 4 hex digits (an optional `0x` is accepted). `STRING` is double quoted on
//! one line, with the escapes `\\`, `\"`, `\n`, `\t`. Keys may appear in any order but at
//! most once; commas between entries are optional.
//!
//! Semantics checked after parsing (devices may be declared before or after their use):
//! program and device names are unique, every device a grant names is declared, `after`
//! names another existing program and the `after` chains have no cycle, and one program
//! never lists the same grant twice. Programs start in file order; one with `after` starts
//! when the named program has exited.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

#[cfg(test)]
mod tests;

/// Highest ISA IRQ line a manifest may name: the legacy PICs had 16 lines.
pub const MAX_ISA_IRQ: u8 = 15;
/// Highest PCI BAR index: a type-0 header has six BARs.
pub const MAX_BAR: u8 = 5;

/// The whole boot manifest: everything the kernel is allowed to hand out at boot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Named PCI devices that grants refer to, in file order.
    pub devices: Vec<Device>,
    /// Programs to start, in file (= start) order.
    pub programs: Vec<Program>,
}

impl Manifest {
    /// Looks a program up by name, so the kernel can resolve `after` references.
    pub fn program(&self, name: &str) -> Option<&Program> {
        self.programs.iter().find(|p| p.name == name)
    }

    /// Looks a device up by name, so the kernel can resolve grants to a PCI function.
    pub fn device(&self, name: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.name == name)
    }
}

/// A PCI device given a name in the manifest so that grants can refer to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Name used by grants (`msi(name)`, `pci = name`).
    pub name: String,
    /// PCI vendor id to match.
    pub vendor: u16,
    /// PCI device id to match.
    pub device: u16,
    /// Which match to take when several functions share vendor:device (0 = first).
    pub index: u32,
}

/// One program to start and the authority it receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Program {
    /// Unique name, used in evidence and by `after`.
    pub name: String,
    /// Basename of the Multiboot module holding the executable.
    pub binary: String,
    /// Argument string passed in the program's start info.
    pub args: String,
    /// CPU index to run on; `None` means the default, CPU 0.
    pub cpu: Option<u32>,
    /// Start only after this program has exited.
    pub after: Option<String>,
    /// Exit code the kernel should expect (reported in evidence).
    pub expect_exit: Option<u64>,
    /// Capabilities granted, in file order.
    pub grants: Vec<Grant>,
}

impl Program {
    /// The CPU index to run on, applying the default of 0.
    pub fn cpu_or_default(&self) -> u32 {
        self.cpu.unwrap_or(0)
    }

    /// Whether a Multiboot module string names this program's binary. The module string may
    /// carry a directory and trailing arguments; only the basename of its first word counts.
    pub fn matches_module(&self, module_string: &str) -> bool {
        module_basename(module_string) == self.binary
    }
}

/// Basename of the first whitespace-separated word of a Multiboot module string, the name a
/// manifest `binary` is compared against.
pub fn module_basename(module_string: &str) -> &str {
    let path = module_string.split_whitespace().next().unwrap_or("");
    path.rsplit('/').next().unwrap_or(path)
}

/// A capability the kernel hands a program at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Write access to the kernel console.
    Console,
    /// Access to the timer / sleep service.
    Timer,
    /// The program's own process object: start threads, set affinity.
    Process,
    /// The program's own address space: map/unmap/protect anonymous memory.
    VirtualMemory,
    /// The right to receive one interrupt source.
    Interrupt(InterruptSource),
    /// A mapping of one BAR of a named PCI device.
    DeviceMemory {
        /// Device name as declared with `device`.
        device: String,
        /// BAR index, 0..=5.
        bar: u8,
    },
    /// Access to the inclusive I/O port range `first..=last`.
    IoPorts {
        /// First port of the range.
        first: u16,
        /// Last port of the range (inclusive).
        last: u16,
    },
}

impl Grant {
    /// The device a grant refers to, if any, so references can be checked and resolved.
    pub fn device(&self) -> Option<&str> {
        match self {
            Grant::Interrupt(InterruptSource::Msi(d) | InterruptSource::Intx(d)) => Some(d),
            Grant::DeviceMemory { device, .. } => Some(device),
            _ => None,
        }
    }
}

impl fmt::Display for Grant {
    /// Manifest syntax, so evidence and error messages show what the file said.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grant::Console => f.write_str("Console"),
            Grant::Timer => f.write_str("Timer"),
            Grant::Process => f.write_str("Process"),
            Grant::VirtualMemory => f.write_str("VirtualMemory"),
            Grant::Interrupt(s) => write!(f, "Interrupt {{ source = {s} }}"),
            Grant::DeviceMemory { device, bar } => {
                write!(f, "DeviceMemory {{ pci = {device}, bar = {bar} }}")
            }
            Grant::IoPorts { first, last } => write!(f, "IoPorts {{ {first:#x}..{last:#x} }}"),
        }
    }
}

/// Where an interrupt comes from; the kernel routes each source to at most one holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterruptSource {
    /// MSI of the named PCI device.
    Msi(String),
    /// Legacy INTx of the named PCI device, routed through the IOAPIC.
    Intx(String),
    /// ISA IRQ line (0..=15); the kernel applies ACPI interrupt source overrides.
    Isa(u8),
}

impl fmt::Display for InterruptSource {
    /// Manifest syntax, e.g. `msi(edu)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterruptSource::Msi(d) => write!(f, "msi({d})"),
            InterruptSource::Intx(d) => write!(f, "intx({d})"),
            InterruptSource::Isa(n) => write!(f, "isa({n})"),
        }
    }
}

/// A manifest that was refused, with the 1-based position of the offending token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub column: u32,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl fmt::Display for ManifestError {
    /// `manifest:LINE:COLUMN: message`, the usual compiler style.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "manifest:{}:{}: {}", self.line, self.column, self.kind)
    }
}

/// Why a manifest was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A character that starts no token.
    UnexpectedChar(char),
    /// A string literal not closed on its line.
    UnterminatedString,
    /// A backslash escape other than `\\ \" \n \t`.
    InvalidEscape(char),
    /// The grammar wanted something else here.
    Expected {
        /// What the parser wanted.
        expected: &'static str,
        /// Description of the token it got.
        found: String,
    },
    /// A malformed number literal.
    InvalidNumber(String),
    /// A number larger than the field allows.
    NumberOutOfRange {
        /// The literal as written.
        value: String,
        /// Largest accepted value.
        max: u64,
    },
    /// A malformed PCI id half (wants 1 to 4 hex digits).
    InvalidPciId(String),
    /// A key that this block does not know.
    UnknownKey {
        /// The key as written.
        key: String,
        /// The kind of block it appeared in.
        context: &'static str,
    },
    /// A key given twice in one block.
    DuplicateKey(String),
    /// A required key is absent.
    MissingKey {
        /// The missing key.
        key: &'static str,
        /// The kind of block that lacks it.
        context: &'static str,
    },
    /// `grant` followed by an unknown capability kind.
    UnknownGrant(String),
    /// An interrupt source other than `msi`, `intx`, `isa`.
    UnknownInterruptSource(String),
    /// An ISA IRQ above 15.
    IsaIrqOutOfRange(u64),
    /// A BAR index above 5.
    BarOutOfRange(u64),
    /// An `IoPorts` range whose first port is above its last.
    ReversedPortRange {
        /// First port as written.
        first: u16,
        /// Last port as written.
        last: u16,
    },
    /// The same grant listed twice in one program.
    DuplicateGrant(Grant),
    /// An empty program name.
    EmptyProgramName,
    /// A `binary` that is empty or contains a `/` (it must be a basename).
    InvalidBinary(String),
    /// Two programs with the same name.
    DuplicateProgram(String),
    /// Two devices with the same name.
    DuplicateDevice(String),
    /// A grant naming a device that is never declared.
    UnknownDevice(String),
    /// `after` naming a program that does not exist.
    UnknownProgram(String),
    /// `after` naming the program itself.
    AfterSelf(String),
    /// `after` chains that loop back, so none of them would ever start.
    AfterCycle(String),
}

impl fmt::Display for ErrorKind {
    /// A one-line human-readable message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::UnexpectedChar(c) => write!(f, "unexpected character {c:?}"),
            ErrorKind::UnterminatedString => {
                f.write_str("unterminated string (strings end on their line)")
            }
            ErrorKind::InvalidEscape(c) => {
                write!(f, "invalid escape '\\{c}' (allowed: \\\\ \\\" \\n \\t)")
            }
            ErrorKind::Expected { expected, found } => {
                write!(f, "expected {expected} but found {found}")
            }
            ErrorKind::InvalidNumber(s) => write!(f, "invalid number `{s}` (decimal or 0x hex)"),
            ErrorKind::NumberOutOfRange { value, max } => {
                write!(f, "number `{value}` out of range (maximum {max})")
            }
            ErrorKind::InvalidPciId(s) => write!(f, "invalid PCI id `{s}` (1 to 4 hex digits)"),
            ErrorKind::UnknownKey { key, context } => write!(f, "unknown key `{key}` in {context}"),
            ErrorKind::DuplicateKey(k) => write!(f, "key `{k}` given twice"),
            ErrorKind::MissingKey { key, context } => {
                write!(f, "{context} is missing required key `{key}`")
            }
            ErrorKind::UnknownGrant(g) => write!(
                f,
                "unknown grant `{g}` (expected Console, Timer, Process, VirtualMemory, Interrupt, DeviceMemory or IoPorts)"
            ),
            ErrorKind::UnknownInterruptSource(s) => {
                write!(
                    f,
                    "unknown interrupt source `{s}` (expected msi, intx or isa)"
                )
            }
            ErrorKind::IsaIrqOutOfRange(n) => {
                write!(f, "ISA IRQ {n} out of range (0..={MAX_ISA_IRQ})")
            }
            ErrorKind::BarOutOfRange(n) => write!(f, "BAR {n} out of range (0..={MAX_BAR})"),
            ErrorKind::ReversedPortRange { first, last } => {
                write!(f, "I/O port range {first:#x}..{last:#x} is reversed")
            }
            ErrorKind::DuplicateGrant(g) => write!(f, "duplicate grant `{g}`"),
            ErrorKind::EmptyProgramName => f.write_str("program name is empty"),
            ErrorKind::InvalidBinary(b) => {
                write!(
                    f,
                    "invalid binary {b:?} (a non-empty module basename without '/')"
                )
            }
            ErrorKind::DuplicateProgram(p) => write!(f, "duplicate program \"{p}\""),
            ErrorKind::DuplicateDevice(d) => write!(f, "duplicate device `{d}`"),
            ErrorKind::UnknownDevice(d) => write!(
                f,
                "unknown device `{d}` (declare it with `device {d} {{ pci = VVVV:DDDD }}`)"
            ),
            ErrorKind::UnknownProgram(p) => write!(f, "`after` names unknown program \"{p}\""),
            ErrorKind::AfterSelf(p) => write!(f, "program \"{p}\" cannot start after itself"),
            ErrorKind::AfterCycle(p) => write!(f, "`after` chain through \"{p}\" forms a cycle"),
        }
    }
}

/// Parses and validates a manifest. This is the only entry point: a returned [`Manifest`]
/// has passed every syntactic and semantic check.
pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
    let toks = lex(text)?;
    let mut p = Parser { toks, i: 0 };
    let src = p.manifest()?;
    check(&src)?;
    Ok(Manifest {
        devices: src.devices.into_iter().map(|d| d.device).collect(),
        programs: src.programs.into_iter().map(|p| p.program).collect(),
    })
}

// ---------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pos {
    line: u32,
    column: u32,
}

impl Pos {
    fn err(self, kind: ErrorKind) -> ManifestError {
        ManifestError {
            line: self.line,
            column: self.column,
            kind,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
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
struct Token {
    tok: Tok,
    pos: Pos,
}

fn describe(t: &Tok) -> String {
    use alloc::format;
    fn clip(s: &str) -> &str {
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

fn lex(text: &str) -> Result<Vec<Token>, ManifestError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut pos = Pos { line: 1, column: 1 };
    // Advances over one character, keeping the position current.
    fn bump(chars: &mut core::iter::Peekable<core::str::Chars<'_>>, pos: &mut Pos) -> Option<char> {
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
                    out.push(Token {
                        tok: Tok::DotDot,
                        pos: start,
                    });
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
                out.push(Token {
                    tok: Tok::Str(s),
                    pos: start,
                });
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
                out.push(Token {
                    tok: Tok::Num(s),
                    pos: start,
                });
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
                out.push(Token {
                    tok: Tok::Ident(s),
                    pos: start,
                });
            }
            other => return Err(start.err(ErrorKind::UnexpectedChar(other))),
        }
    }
    out.push(Token { tok: Tok::Eof, pos });
    Ok(out)
}

/// Decimal or `0x` hex, at most `max`.
fn parse_number(text: &str, max: u64) -> Result<u64, ErrorKind> {
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
        let d = c
            .to_digit(radix)
            .ok_or_else(|| ErrorKind::InvalidNumber(text.to_owned()))?;
        match v
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(d)))
        {
            Some(n) => v = n,
            None => overflow = true,
        }
    }
    if overflow || v > max {
        return Err(ErrorKind::NumberOutOfRange {
            value: text.to_owned(),
            max,
        });
    }
    Ok(v)
}

/// One half of a PCI id: 1..=4 hex digits, optional `0x`.
fn parse_pci_half(text: &str) -> Result<u16, ErrorKind> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    if digits.is_empty() || digits.len() > 4 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ErrorKind::InvalidPciId(text.to_owned()));
    }
    u16::from_str_radix(digits, 16).map_err(|_| ErrorKind::InvalidPciId(text.to_owned()))
}

// ---------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------

struct DeviceSrc {
    device: Device,
    name_pos: Pos,
}

struct ProgramSrc {
    program: Program,
    name_pos: Pos,
    after_pos: Pos,
    /// Per grant: position of the device name it refers to (or of the grant itself).
    grant_pos: Vec<Pos>,
}

struct ManifestSrc {
    devices: Vec<DeviceSrc>,
    programs: Vec<ProgramSrc>,
}

struct Parser {
    toks: Vec<Token>,
    i: usize,
}

type PResult<T> = Result<T, ManifestError>;

/// Records `key` as seen in a block, refusing a second occurrence.
fn once(seen: &mut Vec<&'static str>, key: &'static str, pos: Pos) -> PResult<()> {
    if seen.contains(&key) {
        return Err(pos.err(ErrorKind::DuplicateKey(key.to_owned())));
    }
    seen.push(key);
    Ok(())
}

impl Parser {
    fn peek(&self) -> &Token {
        // `lex` always ends the list with Eof and `next` never moves past it.
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if t.tok != Tok::Eof {
            self.i += 1;
        }
        t
    }

    fn unexpected(t: &Token, expected: &'static str) -> ManifestError {
        t.pos.err(ErrorKind::Expected {
            expected,
            found: describe(&t.tok),
        })
    }

    fn expect(&mut self, want: Tok, expected: &'static str) -> PResult<Pos> {
        let t = self.next();
        if t.tok == want {
            Ok(t.pos)
        } else {
            Err(Self::unexpected(&t, expected))
        }
    }

    fn ident(&mut self, expected: &'static str) -> PResult<(String, Pos)> {
        let t = self.next();
        match t.tok {
            Tok::Ident(s) => Ok((s, t.pos)),
            _ => Err(Self::unexpected(&t, expected)),
        }
    }

    fn string(&mut self, expected: &'static str) -> PResult<(String, Pos)> {
        let t = self.next();
        match t.tok {
            Tok::Str(s) => Ok((s, t.pos)),
            _ => Err(Self::unexpected(&t, expected)),
        }
    }

    fn number(&mut self, max: u64) -> PResult<(u64, Pos)> {
        let t = self.next();
        match &t.tok {
            Tok::Num(s) => parse_number(s, max)
                .map(|v| (v, t.pos))
                .map_err(|k| t.pos.err(k)),
            _ => Err(Self::unexpected(&t, "a number")),
        }
    }

    fn eat_comma(&mut self) {
        if self.peek().tok == Tok::Comma {
            self.next();
        }
    }

    /// `"key" "="` inside a block; returns `None` at the closing brace.
    fn block_key(&mut self, expected: &'static str) -> PResult<Option<(String, Pos)>> {
        if self.peek().tok == Tok::RBrace {
            self.next();
            return Ok(None);
        }
        let (k, pos) = self.ident(expected)?;
        Ok(Some((k, pos)))
    }

    fn manifest(&mut self) -> PResult<ManifestSrc> {
        let mut m = ManifestSrc {
            devices: Vec::new(),
            programs: Vec::new(),
        };
        loop {
            let t = self.peek().clone();
            match &t.tok {
                Tok::Eof => return Ok(m),
                Tok::Ident(k) if k == "program" => {
                    self.next();
                    m.programs.push(self.program()?);
                }
                Tok::Ident(k) if k == "device" => {
                    self.next();
                    m.devices.push(self.device()?);
                }
                _ => return Err(Self::unexpected(&t, "'program' or 'device'")),
            }
        }
    }

    fn device(&mut self) -> PResult<DeviceSrc> {
        let (name, name_pos) = self.ident("a device name")?;
        let open = self.expect(Tok::LBrace, "'{'")?;
        let mut seen = Vec::new();
        let mut pci = None;
        let mut index = 0u32;
        while let Some((key, pos)) = self.block_key("a device key (pci, index) or '}'")? {
            match key.as_str() {
                "pci" => {
                    once(&mut seen, "pci", pos)?;
                    self.expect(Tok::Eq, "'='")?;
                    let v = self.pci_half()?;
                    self.expect(Tok::Colon, "':' between vendor and device id")?;
                    let d = self.pci_half()?;
                    pci = Some((v, d));
                }
                "index" => {
                    once(&mut seen, "index", pos)?;
                    self.expect(Tok::Eq, "'='")?;
                    index = self.number(u64::from(u32::MAX))?.0 as u32;
                }
                _ => {
                    return Err(pos.err(ErrorKind::UnknownKey {
                        key,
                        context: "device",
                    }))
                }
            }
            self.eat_comma();
        }
        let (vendor, device) = pci.ok_or_else(|| {
            open.err(ErrorKind::MissingKey {
                key: "pci",
                context: "device",
            })
        })?;
        Ok(DeviceSrc {
            device: Device {
                name,
                vendor,
                device,
                index,
            },
            name_pos,
        })
    }

    fn pci_half(&mut self) -> PResult<u16> {
        let t = self.next();
        match &t.tok {
            Tok::Num(s) | Tok::Ident(s) => parse_pci_half(s).map_err(|k| t.pos.err(k)),
            _ => Err(Self::unexpected(&t, "a hex PCI id")),
        }
    }

    fn program(&mut self) -> PResult<ProgramSrc> {
        let (name, name_pos) = self.string("a program name string")?;
        if name.is_empty() {
            return Err(name_pos.err(ErrorKind::EmptyProgramName));
        }
        let open = self.expect(Tok::LBrace, "'{'")?;
        let mut seen = Vec::new();
        let mut p = ProgramSrc {
            program: Program {
                name,
                binary: String::new(),
                args: String::new(),
                cpu: None,
                after: None,
                expect_exit: None,
                grants: Vec::new(),
            },
            name_pos,
            after_pos: name_pos,
            grant_pos: Vec::new(),
        };
        let mut have_binary = false;
        while let Some((key, pos)) =
            self.block_key("a program entry (key = value or grant) or '}'")?
        {
            match key.as_str() {
                "grant" => {
                    let (grant, gpos) = self.grant()?;
                    if p.program.grants.contains(&grant) {
                        return Err(pos.err(ErrorKind::DuplicateGrant(grant)));
                    }
                    p.program.grants.push(grant);
                    p.grant_pos.push(gpos);
                }
                "binary" => {
                    once(&mut seen, "binary", pos)?;
                    self.expect(Tok::Eq, "'='")?;
                    let (b, bpos) = self.string("a binary name string")?;
                    if b.is_empty() || b.contains('/') {
                        return Err(bpos.err(ErrorKind::InvalidBinary(b)));
                    }
                    p.program.binary = b;
                    have_binary = true;
                }
                "args" => {
                    once(&mut seen, "args", pos)?;
                    self.expect(Tok::Eq, "'='")?;
                    p.program.args = self.string("an argument string")?.0;
                }
                "cpu" => {
                    once(&mut seen, "cpu", pos)?;
                    self.expect(Tok::Eq, "'='")?;
                    p.program.cpu = Some(self.number(u64::from(u32::MAX))?.0 as u32);
                }
                "after" => {
                    once(&mut seen, "after", pos)?;
                    self.expect(Tok::Eq, "'='")?;
                    let (a, apos) = self.string("a program name string")?;
                    p.program.after = Some(a);
                    p.after_pos = apos;
                }
                "expect_exit" => {
                    once(&mut seen, "expect_exit", pos)?;
                    self.expect(Tok::Eq, "'='")?;
                    p.program.expect_exit = Some(self.number(u64::MAX)?.0);
                }
                _ => {
                    return Err(pos.err(ErrorKind::UnknownKey {
                        key,
                        context: "program",
                    }))
                }
            }
            self.eat_comma();
        }
        if !have_binary {
            return Err(open.err(ErrorKind::MissingKey {
                key: "binary",
                context: "program",
            }));
        }
        Ok(p)
    }

    /// After `grant`: the grant and the position to blame if its device is unknown.
    fn grant(&mut self) -> PResult<(Grant, Pos)> {
        let (kind, kpos) = self.ident("a grant kind")?;
        match kind.as_str() {
            "Console" => Ok((Grant::Console, kpos)),
            "Timer" => Ok((Grant::Timer, kpos)),
            "Process" => Ok((Grant::Process, kpos)),
            "VirtualMemory" => Ok((Grant::VirtualMemory, kpos)),
            "Interrupt" => {
                self.expect(Tok::LBrace, "'{'")?;
                let mut src = None;
                while let Some((key, pos)) = self.block_key("`source` or '}'")? {
                    if key != "source" {
                        return Err(pos.err(ErrorKind::UnknownKey {
                            key,
                            context: "Interrupt grant",
                        }));
                    }
                    if src.is_some() {
                        return Err(pos.err(ErrorKind::DuplicateKey(key)));
                    }
                    self.expect(Tok::Eq, "'='")?;
                    src = Some(self.source()?);
                    self.eat_comma();
                }
                let (s, spos) = src.ok_or_else(|| {
                    kpos.err(ErrorKind::MissingKey {
                        key: "source",
                        context: "Interrupt grant",
                    })
                })?;
                Ok((Grant::Interrupt(s), spos))
            }
            "DeviceMemory" => {
                self.expect(Tok::LBrace, "'{'")?;
                let mut seen = Vec::new();
                let mut dev = None;
                let mut bar = None;
                while let Some((key, pos)) = self.block_key("`pci`, `bar` or '}'")? {
                    match key.as_str() {
                        "pci" => {
                            once(&mut seen, "pci", pos)?;
                            self.expect(Tok::Eq, "'='")?;
                            dev = Some(self.ident("a device name")?);
                        }
                        "bar" => {
                            once(&mut seen, "bar", pos)?;
                            self.expect(Tok::Eq, "'='")?;
                            let (n, npos) = self.number(u64::MAX)?;
                            if n > u64::from(MAX_BAR) {
                                return Err(npos.err(ErrorKind::BarOutOfRange(n)));
                            }
                            bar = Some(n as u8);
                        }
                        _ => {
                            return Err(pos.err(ErrorKind::UnknownKey {
                                key,
                                context: "DeviceMemory grant",
                            }))
                        }
                    }
                    self.eat_comma();
                }
                let (device, dpos) = dev.ok_or_else(|| {
                    kpos.err(ErrorKind::MissingKey {
                        key: "pci",
                        context: "DeviceMemory grant",
                    })
                })?;
                let bar = bar.ok_or_else(|| {
                    kpos.err(ErrorKind::MissingKey {
                        key: "bar",
                        context: "DeviceMemory grant",
                    })
                })?;
                Ok((Grant::DeviceMemory { device, bar }, dpos))
            }
            "IoPorts" => {
                self.expect(Tok::LBrace, "'{'")?;
                let (first, fpos) = self.number(u64::from(u16::MAX))?;
                let last = if self.peek().tok == Tok::DotDot {
                    self.next();
                    self.number(u64::from(u16::MAX))?.0
                } else {
                    first
                };
                let (first, last) = (first as u16, last as u16);
                if first > last {
                    return Err(fpos.err(ErrorKind::ReversedPortRange { first, last }));
                }
                self.eat_comma();
                self.expect(Tok::RBrace, "'..' or '}'")?;
                Ok((Grant::IoPorts { first, last }, kpos))
            }
            _ => Err(kpos.err(ErrorKind::UnknownGrant(kind))),
        }
    }

    /// `msi(dev)`, `intx(dev)` or `isa(n)`, with the position of its argument.
    fn source(&mut self) -> PResult<(InterruptSource, Pos)> {
        let (kind, kpos) = self.ident("an interrupt source (msi, intx, isa)")?;
        let src = match kind.as_str() {
            "msi" | "intx" => {
                self.expect(Tok::LParen, "'('")?;
                let (dev, dpos) = self.ident("a device name")?;
                self.expect(Tok::RParen, "')'")?;
                let s = if kind == "msi" {
                    InterruptSource::Msi(dev)
                } else {
                    InterruptSource::Intx(dev)
                };
                (s, dpos)
            }
            "isa" => {
                self.expect(Tok::LParen, "'('")?;
                let (n, npos) = self.number(u64::MAX)?;
                if n > u64::from(MAX_ISA_IRQ) {
                    return Err(npos.err(ErrorKind::IsaIrqOutOfRange(n)));
                }
                self.expect(Tok::RParen, "')'")?;
                (InterruptSource::Isa(n as u8), npos)
            }
            _ => return Err(kpos.err(ErrorKind::UnknownInterruptSource(kind))),
        };
        Ok(src)
    }
}

// ---------------------------------------------------------------------------------------
// Semantic checks
// ---------------------------------------------------------------------------------------

/// Cross-item checks. All violations are collected and the earliest in the file reported,
/// so the message does not depend on the order the checks run in.
fn check(m: &ManifestSrc) -> PResult<()> {
    let mut errors: Vec<ManifestError> = Vec::new();
    for (i, d) in m.devices.iter().enumerate() {
        if m.devices[..i]
            .iter()
            .any(|e| e.device.name == d.device.name)
        {
            errors.push(
                d.name_pos
                    .err(ErrorKind::DuplicateDevice(d.device.name.clone())),
            );
        }
    }
    for (i, p) in m.programs.iter().enumerate() {
        let prog = &p.program;
        if m.programs[..i].iter().any(|e| e.program.name == prog.name) {
            errors.push(
                p.name_pos
                    .err(ErrorKind::DuplicateProgram(prog.name.clone())),
            );
        }
        for (g, pos) in prog.grants.iter().zip(&p.grant_pos) {
            if let Some(dev) = g.device() {
                if !m.devices.iter().any(|d| d.device.name == dev) {
                    errors.push(pos.err(ErrorKind::UnknownDevice(dev.to_owned())));
                }
            }
        }
        if let Some(after) = &prog.after {
            if *after == prog.name {
                errors.push(p.after_pos.err(ErrorKind::AfterSelf(after.clone())));
            } else if !m.programs.iter().any(|e| e.program.name == *after) {
                errors.push(p.after_pos.err(ErrorKind::UnknownProgram(after.clone())));
            } else if in_after_cycle(m, i) {
                errors.push(p.after_pos.err(ErrorKind::AfterCycle(prog.name.clone())));
            }
        }
    }
    match errors.into_iter().min_by_key(|e| (e.line, e.column)) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Whether following `after` from program `start` comes back to it.
fn in_after_cycle(m: &ManifestSrc, start: usize) -> bool {
    let mut cur = start;
    // A chain longer than the number of programs must repeat; bound the walk by that.
    for _ in 0..m.programs.len() {
        let Some(after) = &m.programs[cur].program.after else {
            return false;
        };
        match m.programs.iter().position(|e| e.program.name == *after) {
            Some(next) if next == start => return true,
            Some(next) => cur = next,
            None => return false,
        }
    }
    false
}
