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
//!     dma = "unprotected"
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
//!               | "index" "=" NUMBER                  (* optional, u32, default 0 *)
//!               | "dma" "=" "\"unprotected\"" ;       (* optional: see below *)
//! program       = "program" STRING "{" { program_entry [","] } "}" ;
//! program_entry = "binary" "=" STRING                (* required *)
//!               | "args" "=" STRING                  (* default "" *)
//!               | "cpu" "=" NUMBER                   (* u32 *)
//!               | "after" "=" STRING                 (* name of another program *)
//!               | "expect_exit" "=" NUMBER           (* u64 *)
//!               | "dma" "=" "\"unprotected\""          (* drive PCI devices without DMA remapping *)
//!               | "expect_start" "=" "\"refused\""     (* proofs: the policy must refuse it *)
//!               | "restarts" "=" NUMBER              (* 0..=MAX_RESTARTS, default 0 *)
//!               | "grant" grant ;
//! grant         = "Console" | "Timer" | "Process" | "VirtualMemory"
//!               | "Interrupt" "{" { int_field [","] } "}"               (* source required *)
//!               | "DeviceMemory" "{" { dm_field [","] } "}"              (* pci, bar required *)
//!               | "IoPorts" "{" NUMBER [ ".." NUMBER ] [","] "}" ;       (* inclusive, u16 *)
//! dm_field      = "pci" "=" IDENT | "bar" "=" NUMBER ;                  (* bar 0..=5 *)
//! int_field     = "source" "=" source | "cpu" "=" NUMBER ;          (* cpu: its vector's CPU *)
//! source        = "msi" "(" IDENT ")" | "intx" "(" IDENT ")"
//!               | "msix" "(" IDENT "," NUMBER ")"                         (* entry 0..=2047 *)
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
//!
//! The grant policy ([`policy`]) comes on top, per program: no kernel-owned I/O ports, no
//! `IoPorts` overlap between programs that may run at the same time, and no PCI device grant
//! without DMA remapping unless `dma = "unprotected"` says the driver is not contained.
//! [`parse_checked`] applies it on the host; the kernel's loader refuses each offending
//! program at start, adding the ranges it learns at boot.
//! when the named program has exited (after its last run, when it has `restarts`).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

mod lexer;
mod parser;
pub mod policy;
#[cfg(test)]
mod tests;

use lexer::lex;

/// Highest ISA IRQ line a manifest may name: the legacy PICs had 16 lines.
pub const MAX_ISA_IRQ: u8 = 15;
/// Highest MSI-X table entry (a table has at most 2,048).
pub const MAX_MSIX_ENTRY: u16 = 2047;
/// Highest PCI BAR index: a type-0 header has six BARs.
pub const MAX_BAR: u8 = 5;
/// Most `restarts` one program may ask for: each run is a fresh process, so the bound only
/// keeps a typo from keeping a machine busy for days.
pub const MAX_RESTARTS: u32 = 1_000_000;

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
    /// `dma = "unprotected"`: every driver of this device may be granted it without DMA
    /// remapping (and can then reach all of memory by DMA).
    pub dma_unprotected: bool,
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
    /// Exit code the kernel should expect (reported in evidence), from every run.
    pub expect_exit: Option<u64>,
    /// Further runs after the first has exited: each loads the ELF again into a fresh
    /// process with fresh grants once the previous run's process has been reaped. Programs
    /// `after` this one start once the last run has exited.
    pub restarts: u32,
    /// Capabilities granted, in file order.
    pub grants: Vec<Grant>,
    /// `dma = "unprotected"`: the program may drive PCI devices without DMA remapping.
    pub dma_unprotected: bool,
    /// `dma = "remapped"`: the program's devices must be contained by DMA remapping; it is
    /// refused on a machine without it (the host check takes the machine to have it).
    pub dma_remapped: bool,
    /// `expect_start = "refused"`: the grant policy must refuse this program (proofs).
    pub expect_refused: bool,
}

impl Program {
    /// How many times the program runs in all (the first run and its restarts).
    pub fn runs(&self) -> u64 {
        1 + u64::from(self.restarts)
    }

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
    /// The right to receive one interrupt source; with `cpu = N` its vector is placed in
    /// CPU N's space (default: the program's CPU), e.g. one queue's vector per CPU.
    Interrupt(InterruptSource, Option<u32>),
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
    /// Whether two grants give the same right: an interrupt source is one right whatever
    /// CPU it is asked on.
    pub fn same_right(&self, other: &Grant) -> bool {
        match (self, other) {
            (Grant::Interrupt(a, _), Grant::Interrupt(b, _)) => a == b,
            _ => self == other,
        }
    }

    /// The device a grant refers to, if any, so references can be checked and resolved.
    pub fn device(&self) -> Option<&str> {
        match self {
            Grant::Interrupt(
                InterruptSource::Msi(d) | InterruptSource::Intx(d) | InterruptSource::Msix(d, _),
                _,
            ) => Some(d),
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
            Grant::Interrupt(s, None) => write!(f, "Interrupt {{ source = {s} }}"),
            Grant::Interrupt(s, Some(cpu)) => {
                write!(f, "Interrupt {{ source = {s}, cpu = {cpu} }}")
            }
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
    /// One MSI-X table entry of the named PCI device (the kernel programs and masks it;
    /// the table itself is never mapped into a driver).
    Msix(String, u16),
    /// ISA IRQ line (0..=15); the kernel applies ACPI interrupt source overrides.
    Isa(u8),
}

impl fmt::Display for InterruptSource {
    /// Manifest syntax, e.g. `msi(edu)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterruptSource::Msi(d) => write!(f, "msi({d})"),
            InterruptSource::Intx(d) => write!(f, "intx({d})"),
            InterruptSource::Msix(d, e) => write!(f, "msix({d}, {e})"),
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
    /// An interrupt source other than `msi`, `intx`, `msix`, `isa`.
    UnknownInterruptSource(String),
    /// An ISA IRQ above 15.
    IsaIrqOutOfRange(u64),
    /// An MSI-X table entry above [`MAX_MSIX_ENTRY`].
    MsixEntryOutOfRange(u64),
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
    /// A `dma` value other than `"unprotected"`.
    InvalidDma(String),
    /// An `expect_start` value other than `"refused"`.
    InvalidExpectStart(String),
    /// The grant policy refuses a program's grants ([`parse_checked`]).
    Refused {
        /// The program.
        program: String,
        /// Why.
        refusal: policy::Refusal,
    },
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
                    "unknown interrupt source `{s}` (expected msi, intx, msix or isa)"
                )
            }
            ErrorKind::IsaIrqOutOfRange(n) => {
                write!(f, "ISA IRQ {n} out of range (0..={MAX_ISA_IRQ})")
            }
            ErrorKind::MsixEntryOutOfRange(n) => {
                write!(f, "MSI-X entry {n} out of range (0..={MAX_MSIX_ENTRY})")
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
            ErrorKind::InvalidDma(v) => {
                write!(f, "invalid dma {v:?} (\"unprotected\", or \"remapped\" in a program)")
            }
            ErrorKind::InvalidExpectStart(v) => {
                write!(f, "invalid expect_start {v:?} (the only value is \"refused\")")
            }
            ErrorKind::Refused { program, refusal } => {
                write!(f, "program \"{program}\" refused: {refusal}")
            }
        }
    }
}

/// Parses and validates a manifest. This is the only entry point: a returned [`Manifest`]
/// has passed every syntactic and semantic check.
pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
    parser::parse_tokens(lex(text)?)
}

/// [`parse`], then the grant policy as far as it is known without the machine
/// ([`policy::KERNEL_OWNED_PORTS`], overlaps, DMA without remapping): the host's check of a
/// manifest. The first refusal of a program not marked `expect_start = "refused"` is the
/// error, placed at the program's line (the kernel's loader refuses per program, adding
/// what it learns at boot).
pub fn parse_checked(text: &str) -> Result<Manifest, ManifestError> {
    let (manifest, program_pos) = parser::parse_tokens_with_positions(lex(text)?)?;
    for (program, pos) in manifest.programs.iter().zip(program_pos) {
        if program.expect_refused {
            continue;
        }
        // A program that requires DMA remapping is checked as on a machine that has it.
        let refusals = policy::refusals(&manifest, program, &[], program.dma_remapped);
        if let Some(refusal) = refusals.into_iter().next() {
            return Err(ManifestError {
                line: pos.0,
                column: pos.1,
                kind: ErrorKind::Refused { program: program.name.clone(), refusal },
            });
        }
    }
    Ok(manifest)
}
