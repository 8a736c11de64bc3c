//! Recursive descent over the tokens, then the semantic checks (names, references, cycles).

use alloc::borrow::ToOwned;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;

use crate::lexer::{describe, parse_number, parse_pci_half, Pos, Tok, Token};
use crate::*;

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

/// Parses the token stream and runs the semantic checks.
pub(crate) fn parse_tokens(toks: Vec<Token>) -> Result<Manifest, ManifestError> {
    parse_tokens_with_positions(toks).map(|(m, _)| m)
}

/// [`parse_tokens`], with each program's (line, column) for later checks to blame.
pub(crate) fn parse_tokens_with_positions(
    toks: Vec<Token>,
) -> Result<(Manifest, Vec<(u32, u32)>), ManifestError> {
    let mut p = Parser { toks, i: 0 };
    let src = p.manifest()?;
    check(&src)?;
    let positions = src.programs.iter().map(|p| (p.name_pos.line, p.name_pos.column)).collect();
    let manifest = Manifest {
        devices: src.devices.into_iter().map(|d| d.device).collect(),
        programs: src.programs.into_iter().map(|p| p.program).collect(),
    };
    Ok((manifest, positions))
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
        t.pos.err(ErrorKind::Expected { expected, found: describe(&t.tok) })
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
            Tok::Num(s) => parse_number(s, max).map(|v| (v, t.pos)).map_err(|k| t.pos.err(k)),
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
        let mut m = ManifestSrc { devices: Vec::new(), programs: Vec::new() };
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
        let mut dma_unprotected = false;
        while let Some((key, pos)) = self.block_key("a device key (pci, index, dma) or '}'")? {
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
                "dma" => {
                    once(&mut seen, "dma", pos)?;
                    dma_unprotected = self.dma_value(false)?;
                }
                _ => return Err(pos.err(ErrorKind::UnknownKey { key, context: "device" })),
            }
            self.eat_comma();
        }
        let (vendor, device) =
            pci.ok_or_else(|| open.err(ErrorKind::MissingKey { key: "pci", context: "device" }))?;
        Ok(DeviceSrc { device: Device { name, vendor, device, index, dma_unprotected }, name_pos })
    }

    /// `= "unprotected"` after `dma`: the only value, an explicit opt-in.
    /// `= "unprotected"` (true) or, where `remapped_allowed`, `= "remapped"` (false).
    fn dma_value(&mut self, remapped_allowed: bool) -> PResult<bool> {
        self.expect(Tok::Eq, "'='")?;
        let (v, vpos) = self.string("\"unprotected\" or \"remapped\"")?;
        match v.as_str() {
            "unprotected" => Ok(true),
            "remapped" if remapped_allowed => Ok(false),
            _ => Err(vpos.err(ErrorKind::InvalidDma(v))),
        }
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
                restarts: 0,
                grants: Vec::new(),
                dma_unprotected: false,
                dma_remapped: false,
                expect_refused: false,
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
                    if p.program.grants.iter().any(|g| g.same_right(&grant)) {
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
                "dma" => {
                    once(&mut seen, "dma", pos)?;
                    let unprotected = self.dma_value(true)?;
                    p.program.dma_unprotected = unprotected;
                    p.program.dma_remapped = !unprotected;
                }
                "expect_start" => {
                    once(&mut seen, "expect_start", pos)?;
                    self.expect(Tok::Eq, "'='")?;
                    let (v, vpos) = self.string("\"refused\"")?;
                    if v != "refused" {
                        return Err(vpos.err(ErrorKind::InvalidExpectStart(v)));
                    }
                    p.program.expect_refused = true;
                }
                "restarts" => {
                    once(&mut seen, "restarts", pos)?;
                    self.expect(Tok::Eq, "'='")?;
                    p.program.restarts = self.number(u64::from(MAX_RESTARTS))?.0 as u32;
                }
                _ => return Err(pos.err(ErrorKind::UnknownKey { key, context: "program" })),
            }
            self.eat_comma();
        }
        if !have_binary {
            return Err(open.err(ErrorKind::MissingKey { key: "binary", context: "program" }));
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
                let (mut src, mut cpu) = (None, None);
                while let Some((key, pos)) = self.block_key("`source`, `cpu` or '}'")? {
                    let taken = match key.as_str() {
                        "source" => src.is_some(),
                        "cpu" => cpu.is_some(),
                        _ => {
                            return Err(
                                pos.err(ErrorKind::UnknownKey { key, context: "Interrupt grant" })
                            )
                        }
                    };
                    if taken {
                        return Err(pos.err(ErrorKind::DuplicateKey(key)));
                    }
                    self.expect(Tok::Eq, "'='")?;
                    if key == "source" {
                        src = Some(self.source()?);
                    } else {
                        cpu = Some(self.number(u64::from(u32::MAX))?.0 as u32);
                    }
                    self.eat_comma();
                }
                let (s, spos) = src.ok_or_else(|| {
                    kpos.err(ErrorKind::MissingKey { key: "source", context: "Interrupt grant" })
                })?;
                Ok((Grant::Interrupt(s, cpu), spos))
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
                            return Err(pos
                                .err(ErrorKind::UnknownKey { key, context: "DeviceMemory grant" }))
                        }
                    }
                    self.eat_comma();
                }
                let (device, dpos) = dev.ok_or_else(|| {
                    kpos.err(ErrorKind::MissingKey { key: "pci", context: "DeviceMemory grant" })
                })?;
                let bar = bar.ok_or_else(|| {
                    kpos.err(ErrorKind::MissingKey { key: "bar", context: "DeviceMemory grant" })
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

    /// `msi(dev)`, `intx(dev)`, `msix(dev, entry)` or `isa(n)`, with the position of its
    /// argument.
    fn source(&mut self) -> PResult<(InterruptSource, Pos)> {
        let (kind, kpos) = self.ident("an interrupt source (msi, intx, msix, isa)")?;
        let src = match kind.as_str() {
            "msix" => {
                self.expect(Tok::LParen, "'('")?;
                let (dev, dpos) = self.ident("a device name")?;
                self.expect(Tok::Comma, "','")?;
                let (n, npos) = self.number(u64::MAX)?;
                if n > u64::from(MAX_MSIX_ENTRY) {
                    return Err(npos.err(ErrorKind::MsixEntryOutOfRange(n)));
                }
                self.expect(Tok::RParen, "')'")?;
                (InterruptSource::Msix(dev, n as u16), dpos)
            }
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
/// so the message does not depend on the order the checks run in. Names are looked up in
/// ordered maps and the `after` loops found in one pass, so a manifest of n programs is
/// checked in O(n log n).
fn check(m: &ManifestSrc) -> PResult<()> {
    let mut errors: Vec<ManifestError> = Vec::new();
    let mut devices: BTreeSet<&str> = BTreeSet::new();
    for d in &m.devices {
        if !devices.insert(d.device.name.as_str()) {
            errors.push(d.name_pos.err(ErrorKind::DuplicateDevice(d.device.name.clone())));
        }
    }
    // First program of each name (what `after` refers to).
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, p) in m.programs.iter().enumerate() {
        if index.insert(p.program.name.as_str(), i).is_some() {
            errors.push(p.name_pos.err(ErrorKind::DuplicateProgram(p.program.name.clone())));
        }
    }
    for (i, p) in m.programs.iter().enumerate().rev() {
        index.insert(p.program.name.as_str(), i);
    }
    let on_cycle = after_cycles(m, &index);
    for (i, p) in m.programs.iter().enumerate() {
        let prog = &p.program;
        for (g, pos) in prog.grants.iter().zip(&p.grant_pos) {
            if let Some(dev) = g.device() {
                if !devices.contains(dev) {
                    errors.push(pos.err(ErrorKind::UnknownDevice(dev.to_owned())));
                }
            }
        }
        if let Some(after) = &prog.after {
            if *after == prog.name {
                errors.push(p.after_pos.err(ErrorKind::AfterSelf(after.clone())));
            } else if !index.contains_key(after.as_str()) {
                errors.push(p.after_pos.err(ErrorKind::UnknownProgram(after.clone())));
            } else if on_cycle[i] {
                errors.push(p.after_pos.err(ErrorKind::AfterCycle(prog.name.clone())));
            }
        }
    }
    match errors.into_iter().min_by_key(|e| (e.line, e.column)) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Which programs lie on an `after` loop (following `after` from them comes back to them).
/// Each program has at most one `after`, so one walk per unvisited program, stopping at
/// anything already seen, visits every program once.
fn after_cycles(m: &ManifestSrc, index: &BTreeMap<&str, usize>) -> Vec<bool> {
    #[derive(Clone, Copy, PartialEq)]
    enum Seen {
        No,
        OnThisWalk,
        Done,
    }
    let next: Vec<Option<usize>> = m
        .programs
        .iter()
        .map(|p| p.program.after.as_deref().and_then(|a| index.get(a).copied()))
        .collect();
    let mut seen = alloc::vec![Seen::No; next.len()];
    let mut on_cycle = alloc::vec![false; next.len()];
    let mut walk: Vec<usize> = Vec::new();
    for start in 0..next.len() {
        walk.clear();
        let mut cur = Some(start);
        while let Some(c) = cur.filter(|&c| seen[c] == Seen::No) {
            seen[c] = Seen::OnThisWalk;
            walk.push(c);
            cur = next[c];
        }
        // Stopped on a program of this walk: the walk from there on is a loop.
        if let Some(c) = cur.filter(|&c| seen[c] == Seen::OnThisWalk) {
            let from = walk.iter().rposition(|&w| w == c).unwrap_or(walk.len());
            for &w in &walk[from..] {
                on_cycle[w] = true;
            }
        }
        for &w in &walk {
            seen[w] = Seen::Done;
        }
    }
    on_cycle
}
