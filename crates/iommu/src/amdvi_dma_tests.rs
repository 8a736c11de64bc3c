use super::*;
use crate::test_memory::{Memory, RO, RW};

#[test]
fn levels_from_hats() {
    assert_eq!(max_levels(0), Some(4));
    assert_eq!(max_levels(1 << 10), Some(5));
    assert_eq!(max_levels(2 << 10), Some(6));
    assert_eq!(max_levels(3 << 10), None);
    assert_eq!(domain_levels(0), Some(3));
    assert_eq!(domain_levels(3 << 10), None);
    // QEMU 10.0's EFR (HATS 00b among other bits).
    assert_eq!(domain_levels(0x0000_0029_0000_00D4 & !(3 << 10)), Some(3));
}

#[test]
fn dte_translation_fields() {
    let [q0, q1] = translated_dte(0x12_3000, 3, 7).unwrap();
    assert_eq!(q0, 1 | 1 << 1 | 3 << 9 | 0x12_3000 | 1 << 61 | 1 << 62);
    assert_eq!(q1, 7);
    // QEMU's reserved-bit mask for quadword 0 (`amdvi_validate_dte`).
    assert_eq!(q0 & 0x8030_0000_0000_00FC, 0);
    let t = DteTranslation::of(q0, q1);
    assert_eq!((t.levels, t.root, t.domain, t.rights), (3, 0x12_3000, 7, RW));
    assert_eq!(t.name(), "translated");
    assert_eq!(translated_dte(0x12_3800, 3, 1), None);
    assert_eq!(translated_dte(1 << 52, 3, 1), None);
    assert_eq!(translated_dte(0x1000, 0, 1), None);
    assert_eq!(translated_dte(0x1000, 7, 1), None);

    let [d0, d1] = deny_dte(0x45_6000).unwrap();
    assert_eq!(d0, 1 | 1 << 1 | 3 << 9 | 0x45_6000);
    assert_eq!(d1, 0);
    assert_eq!(DteTranslation::of(d0, d1).name(), "deny");
    // The pass-through entry of the bring-up, and an all-zero one, let DMA through.
    let pass = crate::amdvi::passthrough_dte();
    assert_eq!(DteTranslation::of(pass[0], pass[1]).name(), "untranslated");
    assert_eq!(DteTranslation::of(0, 0).name(), "untranslated");
    assert_eq!(DteTranslation::of(1 | 1 << 1, 0).name(), "blocked");
}

#[test]
fn page_invalidation_commands() {
    // One page: S = 0, PDE = 1, domain in bits 47:32, opcode 3.
    let c = invalidate_iommu_pages(5, 0x100_0000, 1);
    assert_eq!(c, [0x3000_0005_0000_0000, 0x100_0000 | 2]);
    assert_eq!(invalidated_range(c), (5, 0x100_0000, 4096));
    // QEMU's reserved fields (`amdvi_inval_pages`): cmd[0] 31:20 and 59:48, cmd[1] 11:3.
    assert_eq!(c[0] & 0x0FFF_0000_FFF0_0000, 0);
    // Two aligned pages: an 8-KiB block (bit 12 clear).
    let c = invalidate_iommu_pages(5, 0x100_0000, 2);
    assert_eq!(c[1], 0x100_0000 | 3);
    assert_eq!(invalidated_range(c), (5, 0x100_0000, 0x2000));
    // Two pages straddling a 16-KiB boundary need a 32-KiB block.
    let c = invalidate_iommu_pages(1, 0x100_3000, 2);
    assert_eq!(invalidated_range(c), (1, 0x100_0000, 0x8000));
    assert_eq!(c[1] & 0xFF8, 0);
    // A whole domain: S = 1 and every address bit below 63 set.
    let c = invalidate_domain(3);
    assert_eq!(c, [0x3000_0003_0000_0000, 0x7FFF_FFFF_FFFF_F003]);
    // Every page those commands name is covered.
    for (iova, pages) in [(0x100_0000u64, 3u64), (0x100_5000, 7), (0xFFF_F000, 2), (0x1000, 256)] {
        let (_, base, bytes) = invalidated_range(invalidate_iommu_pages(9, iova, pages));
        assert!(base <= iova && iova + pages * 4096 <= base + bytes, "{iova:#x} {pages}");
        // The smallest such block: its halves each miss a page.
        let last = iova + (pages - 1) * 4096;
        assert!(iova - base < bytes / 2 && last - base >= bytes / 2, "{iova:#x} {pages}");
    }
}

#[test]
fn entry_layout_walks_like_the_unit() {
    let mut mem = Memory::default();
    let pt = IoPageTable::new(&mut mem, 3).unwrap();
    let iova = 0x4000_0000 | 0x20_0000 | 0x3000;
    pt.map(&mut mem, iova, 0x7000, RO).unwrap();
    // Level 3 index = iova bits 38:30, directory NextLevel 2, IR|IW|PR.
    let l3 = mem.read(pt.root, 1);
    assert_eq!(l3 & !pte::ADDRESS_MASK, pte::PRESENT | 2 << 9 | pte::IR | pte::IW);
    let l2 = mem.read(l3 & pte::ADDRESS_MASK, 1);
    assert_eq!((l2 >> 9) & 7, 1);
    // The leaf: NextLevel 0, IR only.
    assert_eq!(mem.read(l2 & pte::ADDRESS_MASK, 3), 0x7000 | pte::PRESENT | pte::IR);
    // A walk the way QEMU's `amdvi_page_walk` indexes: (addr >> (3 + 9 * level)) & 0x1FF.
    let mut table = pt.root;
    let mut level = 3u64;
    let mut entry = 0;
    while level > 0 {
        entry = mem.read(table, ((iova >> (3 + 9 * level)) & 0x1FF) as usize);
        table = entry & pte::ADDRESS_MASK;
        level = (entry >> 9) & 7;
    }
    assert_eq!(entry & pte::ADDRESS_MASK, 0x7000);
    // A directory whose NextLevel disagrees is not followed.
    mem.write(pt.root, 1, l3 & !(7 << 9) | 5 << 9);
    assert_eq!(pt.translate(&mem, iova), None);
}

#[test]
fn levels_out_of_range_refused() {
    let mut mem = Memory::default();
    assert!(IoPageTable::new(&mut mem, 0).is_none());
    assert!(IoPageTable::new(&mut mem, 7).is_none());
    assert!(mem.tables.is_empty());
}
