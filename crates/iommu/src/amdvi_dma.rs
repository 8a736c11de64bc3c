//! AMD-Vi DMA translation (AMD IOMMU spec #48882: 2.2.2 device table entry, 2.2.3 I/O page
//! tables, 2.4.3 INVALIDATE_IOMMU_PAGES): the translation fields of a device table entry,
//! a domain's I/O page table with 4-KiB leaves, and the page invalidation command. Pure
//! encoders and a walk generic over [`TableMemory`], host-tested against the bit layouts.
//!
//! Default deny: a requester with no driver's domain gets an entry with V = 1, TV = 1, a
//! paging mode and an empty root table, and IR = IW = 0: the unit refuses every request at
//! the entry itself (an IO_PAGE_FAULT), whatever the page table would say. A domain's entry
//! has IR = IW = 1 and the leaves decide.

use crate::pagetable::{DmaRights, TableError, TableMemory};
use crate::radix::{table_operations, EntryFormat, Radix};

/// I/O page-table entry bits (spec 2.2.3, figures 9 and 10).
pub mod pte {
    /// Bit 0, PR: the entry is present.
    pub const PRESENT: u64 = 1 << 0;
    /// Bits 11:9, NextLevel: 0 in a 4-KiB leaf, the level below in a directory entry.
    pub const NEXT_LEVEL_SHIFT: u32 = 9;
    /// Bit 61, IR: reads allowed.
    pub const IR: u64 = 1 << 61;
    /// Bit 62, IW: writes allowed.
    pub const IW: u64 = 1 << 62;
    /// Bits 51:12: the next table or the page.
    pub const ADDRESS_MASK: u64 = 0x000F_FFFF_FFFF_F000;
}

/// Device table entry translation bits beyond [`crate::amdvi::dte`].
pub mod dte {
    /// Quadword 0 bits 11:9, Mode: the page table's levels (0: no translation).
    pub const MODE_SHIFT: u32 = 9;
    /// Quadword 0 bits 51:12, Page Table Root Pointer.
    pub const ROOT_MASK: u64 = 0x000F_FFFF_FFFF_F000;
    /// Quadword 1 bits 15:0, DomainID.
    pub const DOMAIN_MASK: u64 = 0xFFFF;
}

/// Levels of every domain's table: 3 (a 39-bit IOVA space), within any unit's HATS.
pub const LEVELS: u32 = 3;

/// The most levels the unit's host page tables may have (EFR bits 11:10, HATS: 00b four,
/// 01b five, 10b six; 11b reserved).
pub fn max_levels(efr: u64) -> Option<u32> {
    match (efr >> 10) & 3 {
        0 => Some(4),
        1 => Some(5),
        2 => Some(6),
        _ => None,
    }
}

/// The levels a domain uses on a unit with extended features `efr` (`None` when the unit
/// cannot walk [`LEVELS`]).
pub fn domain_levels(efr: u64) -> Option<u32> {
    max_levels(efr).filter(|m| *m >= LEVELS).map(|_| LEVELS)
}

/// Quadwords 0 and 1 of the entry of a requester in domain `domain` whose table has
/// `levels` levels at `root`: V, TV, Mode, root, IR = IW = 1 (the leaves decide). `None`
/// for an unaligned or too-wide root or a mode outside 1..=6.
pub fn translated_dte(root: u64, levels: u32, domain: u16) -> Option<[u64; 2]> {
    use crate::amdvi::dte::{IR, IW, TRANSLATION_VALID, VALID};
    if root & !dte::ROOT_MASK != 0 || !(1..=6).contains(&levels) {
        return None;
    }
    let q0 = VALID | TRANSLATION_VALID | (levels as u64) << dte::MODE_SHIFT | root | IR | IW;
    Some([q0, domain as u64])
}

/// Quadwords 0 and 1 of a requester with no domain: V, TV, Mode [`LEVELS`] over the empty
/// table `empty_root`, IR = IW = 0 and domain 0, so every request is refused at the entry.
pub fn deny_dte(empty_root: u64) -> Option<[u64; 2]> {
    translated_dte(empty_root, LEVELS, 0)
        .map(|[q0, _]| [q0 & !(crate::amdvi::dte::IR | crate::amdvi::dte::IW), 0])
}

/// The translation fields of a device table entry, decoded (for evidence read from memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DteTranslation {
    /// V.
    pub valid: bool,
    /// TV.
    pub translation_valid: bool,
    /// Mode: the table's levels.
    pub levels: u32,
    /// Page Table Root Pointer.
    pub root: u64,
    /// IR and IW.
    pub rights: DmaRights,
    /// DomainID.
    pub domain: u16,
}

impl DteTranslation {
    /// Decodes quadwords 0 and 1.
    pub fn of(q0: u64, q1: u64) -> DteTranslation {
        use crate::amdvi::dte::{IR, IW, TRANSLATION_VALID, VALID};
        DteTranslation {
            valid: q0 & VALID != 0,
            translation_valid: q0 & TRANSLATION_VALID != 0,
            levels: ((q0 >> dte::MODE_SHIFT) & 7) as u32,
            root: q0 & dte::ROOT_MASK,
            rights: DmaRights { read: q0 & IR != 0, write: q0 & IW != 0 },
            domain: (q1 & dte::DOMAIN_MASK) as u16,
        }
    }

    /// What the entry lets the requester's DMA do: "deny" (valid, translated, no rights),
    /// "translated" (a page table decides), "untranslated" (V = 0, or TV = 0 or Mode 0 with
    /// rights: DMA reaches physical memory) or "blocked" (TV = 0 without rights).
    pub fn name(self) -> &'static str {
        let rights = self.rights.read || self.rights.write;
        match (self.valid, self.translation_valid, self.levels, rights) {
            (false, ..) => "untranslated",
            (true, true, 1..=6, false) => "deny",
            (true, true, 1..=6, true) => "translated",
            (true, _, _, true) => "untranslated",
            (true, _, _, false) => "blocked",
        }
    }
}

/// INVALIDATE_IOMMU_PAGES opcode (bits 63:60).
pub const INVALIDATE_IOMMU_PAGES: u64 = 0x3;

/// INVALIDATE_IOMMU_PAGES for `pages` pages at `iova` of `domain`, with PDE = 1 (the walk's
/// cached directory entries go too: unmap frees emptied tables). One page: S = 0. More: S = 1
/// and the smallest naturally aligned power-of-two block that covers them, encoded by the
/// ones below its size bit (spec table 14); a block above 2^51 invalidates every page.
pub fn invalidate_iommu_pages(domain: u16, iova: u64, pages: u64) -> [u64; 2] {
    const PDE: u64 = 1 << 1;
    const SIZE: u64 = 1 << 0;
    const ALL: u64 = 0x7FFF_FFFF_FFFF_F000;
    let q0 = (domain as u64) << 32 | INVALIDATE_IOMMU_PAGES << 60;
    let page = iova & !0xFFF;
    if pages <= 1 {
        return [q0, page | PDE];
    }
    let last = page + (pages - 1) * 4096;
    // Smallest order o (block of 2^o pages) with page and last in the same block.
    let mut order = 1u32;
    while order < 52 && (page >> (12 + order)) != (last >> (12 + order)) {
        order += 1;
    }
    if order >= 40 {
        return [q0, ALL | PDE | SIZE];
    }
    let base = page & !((1u64 << (12 + order)) - 1);
    let ones = ((1u64 << (order - 1)) - 1) << 12;
    [q0, base | ones | PDE | SIZE]
}

/// INVALIDATE_IOMMU_PAGES for every page of `domain` (S = 1, PDE = 1).
pub fn invalidate_domain(domain: u16) -> [u64; 2] {
    invalidate_iommu_pages(domain, 0, 1 << 52)
}

/// The pages an INVALIDATE_IOMMU_PAGES covers: (domain, first IOVA, bytes).
pub fn invalidated_range(cmd: [u64; 2]) -> (u16, u64, u64) {
    let domain = (cmd[0] >> 32) as u16;
    let address = cmd[1] & !0xFFF;
    if cmd[1] & 1 == 0 {
        return (domain, address, 4096);
    }
    let ones = (address >> 12).trailing_ones();
    let bytes = 1u64 << (12 + ones + 1).min(63);
    (domain, address & !(bytes - 1), bytes)
}

/// One domain's I/O page table: its root and levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoPageTable {
    /// The top-level table (the entry's Page Table Root Pointer).
    pub root: u64,
    /// Levels (the entry's Mode).
    pub levels: u32,
}

/// The AMD-Vi I/O page-table entry format: PR, NextLevel, IR/IW.
pub(crate) struct IoEntry;

impl EntryFormat for IoEntry {
    fn present(entry: u64) -> bool {
        entry & pte::PRESENT != 0
    }
    fn directory(next: u64, level: u32) -> u64 {
        next | pte::PRESENT | ((level - 1) as u64) << pte::NEXT_LEVEL_SHIFT | pte::IR | pte::IW
    }
    fn leaf(phys: u64, rights: DmaRights) -> u64 {
        phys | pte::PRESENT | ((rights.read as u64) * pte::IR) | ((rights.write as u64) * pte::IW)
    }
    fn rights(entry: u64) -> DmaRights {
        DmaRights { read: entry & pte::IR != 0, write: entry & pte::IW != 0 }
    }
    /// NextLevel names the level below (0 in a leaf): the unit walks no other way.
    fn follows(entry: u64, level: u32) -> bool {
        ((entry >> pte::NEXT_LEVEL_SHIFT) & 7) as u32 == level - 1
    }
}

impl IoPageTable {
    /// A table with an empty root.
    pub fn new<M: TableMemory>(mem: &mut M, levels: u32) -> Option<IoPageTable> {
        (1..=6).contains(&levels).then_some(())?;
        Some(IoPageTable { root: mem.allocate_table()?, levels })
    }

    fn walk(&self) -> Radix<IoEntry> {
        Radix::new(self.root, self.levels)
    }

    table_operations!();
}

#[cfg(test)]
#[path = "amdvi_dma_tests.rs"]
mod tests;
