//! Shared pieces of the fuzz targets: the MADT byte layout (the kernel gets it from the
//! `acpi` crate, which this workspace does not build) and a manifest printer for the
//! parse → print → parse round trip.

use keel_manifest::{Device, Grant, Manifest, Program};
use keel_platform::MadtRecord;

/// Offset of an ACPI table's checksum byte.
pub const ACPI_CHECKSUM_OFFSET: usize = 9;

/// A copy of an ACPI table with its checksum byte set so that the bytes the header declares
/// (as many as there are) sum to zero: mutations then reach the walk behind the check.
pub fn with_repaired_checksum(data: &[u8]) -> Vec<u8> {
    let mut fixed = data.to_vec();
    if fixed.len() > ACPI_CHECKSUM_OFFSET {
        let declared = fixed.get(4..8).map_or(0, |b| le32(b, 0) as usize);
        let len = declared.min(fixed.len());
        fixed[ACPI_CHECKSUM_OFFSET] = 0;
        let sum = fixed[..len].iter().fold(0u8, |s, b| s.wrapping_add(*b));
        fixed[ACPI_CHECKSUM_OFFSET] = sum.wrapping_neg();
    }
    fixed
}

/// The checksum rule both ACPI table parsers promise: the raw bytes are accepted exactly
/// when their checksum was already right (then the repair changed nothing), a bad checksum
/// is the only error a repair can cure, and any other error stays the same.
pub fn check_checksum_rule<T, E: core::fmt::Debug + PartialEq>(
    data: &[u8],
    fixed: &[u8],
    raw: &Result<T, E>,
    repaired: &Result<T, E>,
    is_bad_checksum: impl Fn(&E) -> bool,
) {
    match (raw, repaired) {
        (Ok(_), Ok(_)) => assert_eq!(data[ACPI_CHECKSUM_OFFSET], fixed[ACPI_CHECKSUM_OFFSET]),
        (Ok(_), Err(e)) => panic!("repairing a valid checksum broke the table: {e:?}"),
        (Err(e), _) if is_bad_checksum(e) => assert!(repaired.is_ok()),
        (Err(a), Err(b)) => assert_eq!(a, b),
        (Err(e), Ok(_)) => panic!("only a checksum repair can make a table valid: {e:?}"),
    }
}

/// Offset of the first MADT entry (ACPI header, LAPIC address, flags).
pub const MADT_ENTRIES_OFFSET: usize = 44;

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    (le32(b, at + 4) as u64) << 32 | le32(b, at) as u64
}

/// A raw MADT split as the kernel sees it: header fields and one record per entry.
pub struct MadtBytes {
    /// Local APIC address from the header.
    pub local_apic_address: u32,
    /// Flags bit 0 (PCAT_COMPAT): the 8259 pair is present.
    pub pc_at_compatible: bool,
    /// The entries, converted the way `framework/src/acpi.rs` converts the `acpi` crate's.
    pub records: Vec<MadtRecord>,
    /// Bytes past the table's declared length (a fuzz input may append some).
    pub trailer_len: usize,
}

/// Decodes a MADT (ACPI 6.5 §5.2.12): entries are `type: u8, length: u8, body`. An entry
/// shorter than its type needs, or running past the table, ends the walk, as the `acpi`
/// crate's iterator does. `None` when the fixed part is missing.
pub fn decode_madt(bytes: &[u8]) -> Option<MadtBytes> {
    if bytes.len() < MADT_ENTRIES_OFFSET {
        return None;
    }
    let declared = (le32(bytes, 4) as usize).clamp(MADT_ENTRIES_OFFSET, bytes.len());
    let table = &bytes[..declared];
    let mut records = Vec::new();
    let mut at = MADT_ENTRIES_OFFSET;
    while at + 2 <= table.len() {
        let (kind, length) = (table[at], table[at + 1] as usize);
        if length < 2 || at + length > table.len() {
            break;
        }
        let e = &table[at..at + length];
        let need = match kind {
            0 | 3 => 8,
            1 | 5 | 0xA => 12,
            2 => 10,
            4 => 6,
            9 => 16,
            _ => 2,
        };
        if length < need {
            break;
        }
        records.push(match kind {
            0 => MadtRecord::LocalApic {
                processor_uid: e[2] as u32,
                apic_id: e[3] as u32,
                flags: le32(e, 4),
            },
            1 => MadtRecord::IoApic { id: e[2], address: le32(e, 4), gsi_base: le32(e, 8) },
            2 => MadtRecord::InterruptSourceOverride {
                bus: e[2],
                source: e[3],
                gsi: le32(e, 4),
                flags: le16(e, 8),
            },
            3 => MadtRecord::NmiSource { flags: le16(e, 2), gsi: le32(e, 4) },
            4 => MadtRecord::LocalApicNmi {
                processor_uid: e[2] as u32,
                flags: le16(e, 3),
                lint: e[5],
            },
            5 => MadtRecord::LocalApicAddressOverride { address: le64(e, 4) },
            9 => MadtRecord::LocalX2Apic {
                apic_id: le32(e, 4),
                flags: le32(e, 8),
                processor_uid: le32(e, 12),
            },
            0xA => MadtRecord::LocalX2ApicNmi {
                flags: le16(e, 2),
                processor_uid: le32(e, 4),
                lint: e[8],
            },
            other => MadtRecord::Other { kind: other },
        });
        at += length;
    }
    Some(MadtBytes {
        local_apic_address: le32(bytes, 36),
        pc_at_compatible: le32(bytes, 40) & 1 != 0,
        records,
        trailer_len: bytes.len() - declared,
    })
}

/// A manifest string literal: the lexer's four escapes, everything else as is.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn print_device(d: &Device, out: &mut String) {
    let dma = if d.dma_unprotected { ", dma = \"unprotected\"" } else { "" };
    out.push_str(&format!(
        "device {} {{ pci = {:04x}:{:04x}, index = {}{dma} }}\n",
        d.name, d.vendor, d.device, d.index
    ));
}

fn print_program(p: &Program, out: &mut String) {
    out.push_str(&format!("program {} {{\n", quoted(&p.name)));
    out.push_str(&format!("    binary = {}\n", quoted(&p.binary)));
    out.push_str(&format!("    args = {}\n", quoted(&p.args)));
    if let Some(cpu) = p.cpu {
        out.push_str(&format!("    cpu = {cpu}\n"));
    }
    if let Some(after) = &p.after {
        out.push_str(&format!("    after = {}\n", quoted(after)));
    }
    if let Some(code) = p.expect_exit {
        out.push_str(&format!("    expect_exit = {code:#x}\n"));
    }
    if p.expect_refused {
        out.push_str("    expect_start = \"refused\"\n");
    }
    if p.restarts != 0 {
        out.push_str(&format!("    restarts = {}\n", p.restarts));
    }
    match (p.dma_unprotected, p.dma_remapped) {
        (true, _) => out.push_str("    dma = \"unprotected\"\n"),
        (false, true) => out.push_str("    dma = \"remapped\"\n"),
        (false, false) => {}
    }
    for g in &p.grants {
        // `Grant`'s Display is documented as manifest syntax: the round trip checks it.
        let _: &Grant = g;
        out.push_str(&format!("    grant {g}\n"));
    }
    out.push_str("}\n");
}

/// Prints a manifest in the grammar of `keel_manifest`'s crate docs (devices first, then
/// programs in order); parsing the text must give back the same [`Manifest`].
pub fn print_manifest(m: &Manifest) -> String {
    let mut out = String::new();
    for d in &m.devices {
        print_device(d, &mut out);
    }
    for p in &m.programs {
        print_program(p, &mut out);
    }
    out
}
