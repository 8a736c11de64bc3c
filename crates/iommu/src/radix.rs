//! The radix walk both units' DMA page tables share: 512 entries a table, 4-KiB leaves,
//! 9 IOVA bits a level, intermediate tables created on map and freed when emptied on unmap.
//! The entry formats differ (VT-d second-level: R/W bits; AMD-Vi: PR, NextLevel, IR/IW), so
//! the walk takes them from an [`EntryFormat`].

use crate::pagetable::{DmaRights, TableError, TableMemory};

/// Bits 51:12 of an entry in either format: the next table or the page.
pub(crate) const ADDRESS_MASK: u64 = 0x000F_FFFF_FFFF_F000;
/// Entries per table.
const ENTRIES: u64 = 512;
/// The most levels a walk handles (AMD-Vi Mode 6).
const MAX_LEVELS: usize = 6;

/// How one unit encodes and reads its table entries.
pub(crate) trait EntryFormat {
    /// The entry leads somewhere (a table or a page).
    fn present(entry: u64) -> bool;
    /// The entry at `level` (2 or more) that points at the table `next` one level below,
    /// with every right (the unit ANDs the levels' rights, so the leaf decides).
    fn directory(next: u64, level: u32) -> u64;
    /// A 4-KiB leaf for `phys` with `rights`.
    fn leaf(phys: u64, rights: DmaRights) -> u64;
    /// The rights a present entry grants.
    fn rights(entry: u64) -> DmaRights;
    /// A present entry at `level` is what the unit follows there (a directory naming the
    /// level below, or at level 1 a leaf).
    fn follows(entry: u64, level: u32) -> bool;
}

/// A table of `levels` levels at `root`, walked with format `F`.
pub(crate) struct Radix<F> {
    root: u64,
    levels: u32,
    format: core::marker::PhantomData<F>,
}

impl<F: EntryFormat> Radix<F> {
    /// The walk of the table at `root`; `levels` is at most six.
    pub(crate) fn new(root: u64, levels: u32) -> Radix<F> {
        debug_assert!((1..=MAX_LEVELS as u32).contains(&levels));
        Radix { root, levels, format: core::marker::PhantomData }
    }

    fn index(iova: u64, level: u32) -> usize {
        ((iova >> (12 + 9 * (level - 1))) & (ENTRIES - 1)) as usize
    }

    fn check(&self, iova: u64) -> Result<(), TableError> {
        let bits = 12 + 9 * self.levels;
        if iova & 0xFFF != 0 || (bits < 64 && iova >> bits != 0) {
            return Err(TableError::BadAddress);
        }
        Ok(())
    }

    /// Maps the page at `iova` to `phys`, creating directory tables as needed.
    pub(crate) fn map<M: TableMemory>(
        &self,
        mem: &mut M,
        iova: u64,
        phys: u64,
        rights: DmaRights,
    ) -> Result<(), TableError> {
        self.check(iova)?;
        if phys & !ADDRESS_MASK != 0 {
            return Err(TableError::BadAddress);
        }
        if !rights.read && !rights.write {
            return Err(TableError::NoRights);
        }
        let mut table = self.root;
        for level in (2..=self.levels).rev() {
            let i = Self::index(iova, level);
            let entry = mem.read(table, i);
            table = if F::present(entry) {
                entry & ADDRESS_MASK
            } else {
                let next = mem.allocate_table().ok_or(TableError::NoMemory)?;
                mem.write(table, i, F::directory(next, level));
                next
            };
        }
        let i = Self::index(iova, 1);
        if F::present(mem.read(table, i)) {
            return Err(TableError::Mapped);
        }
        mem.write(table, i, F::leaf(phys, rights));
        Ok(())
    }

    /// The page `iova` translates to, with the AND of every level's rights.
    pub(crate) fn translate<M: TableMemory>(&self, mem: &M, iova: u64) -> Option<(u64, DmaRights)> {
        self.check(iova).ok()?;
        let (mut table, mut read, mut write) = (self.root, true, true);
        for level in (1..=self.levels).rev() {
            let entry = mem.read(table, Self::index(iova, level));
            if !F::present(entry) || !F::follows(entry, level) {
                return None;
            }
            let rights = F::rights(entry);
            read &= rights.read;
            write &= rights.write;
            table = entry & ADDRESS_MASK;
        }
        Some((table, DmaRights { read, write }))
    }

    /// Clears the leaf for `iova` and returns the page it mapped. Directory tables that
    /// became empty are unlinked and freed bottom-up, never the root: the caller's
    /// invalidation (completed before the page is reused) drops the unit's cached copies.
    pub(crate) fn unmap<M: TableMemory>(&self, mem: &mut M, iova: u64) -> Result<u64, TableError> {
        self.check(iova)?;
        let levels = self.levels as usize;
        // The tables walked through, top first.
        let mut path = [0u64; MAX_LEVELS];
        let mut table = self.root;
        for (depth, level) in (2..=self.levels).rev().enumerate() {
            path[depth] = table;
            let entry = mem.read(table, Self::index(iova, level));
            if !F::present(entry) {
                return Err(TableError::NotMapped);
            }
            table = entry & ADDRESS_MASK;
        }
        path[levels - 1] = table;
        let i = Self::index(iova, 1);
        let leaf = mem.read(table, i);
        if !F::present(leaf) {
            return Err(TableError::NotMapped);
        }
        mem.write(table, i, 0);
        for depth in (1..levels).rev() {
            let t = path[depth];
            if (0..ENTRIES as usize).any(|j| mem.read(t, j) != 0) {
                break;
            }
            let level = (levels - depth) as u32 + 1;
            mem.write(path[depth - 1], Self::index(iova, level), 0);
            mem.free_table(t);
        }
        Ok(leaf & ADDRESS_MASK)
    }
}

/// The public `map`, `translate` and `unmap` of a table type whose `walk()` gives its
/// [`Radix`]: both units' tables offer the same three operations.
macro_rules! table_operations {
    () => {
        /// Maps the page at `iova` to `phys`. Directory tables are created as needed with
        /// every right (the unit ANDs the levels' rights, so the leaf decides).
        pub fn map<M: TableMemory>(
            &self,
            mem: &mut M,
            iova: u64,
            phys: u64,
            rights: DmaRights,
        ) -> Result<(), TableError> {
            self.walk().map(mem, iova, phys, rights)
        }

        /// The page `iova` translates to, with its rights (the AND of every level's).
        pub fn translate<M: TableMemory>(&self, mem: &M, iova: u64) -> Option<(u64, DmaRights)> {
            self.walk().translate(mem, iova)
        }

        /// Clears the leaf for `iova` and returns the page it mapped. Directory tables that
        /// became empty are unlinked and freed, never the root: the caller's invalidation
        /// (VT-d's IOTLB invalidation also covers the paging-structure caches; AMD-Vi's
        /// INVALIDATE_IOMMU_PAGES has PDE = 1), completed before the page is reused, drops
        /// the unit's cached copies.
        pub fn unmap<M: TableMemory>(&self, mem: &mut M, iova: u64) -> Result<u64, TableError> {
            self.walk().unmap(mem, iova)
        }
    };
}
pub(crate) use table_operations;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amdvi_dma::IoEntry;
    use crate::pagetable::SecondLevel;
    use crate::test_memory::{Memory, RO, RW};

    /// Two pages mapped, translated, remapped (refused) and unmapped; the emptied tables
    /// freed down to the root.
    fn map_translate_unmap<F: EntryFormat>(levels: u32) {
        let mut mem = Memory::default();
        let root = mem.allocate_table().unwrap();
        let pt = Radix::<F>::new(root, levels);
        pt.map(&mut mem, 0x10_0000, 0xABC_D000, RW).unwrap();
        pt.map(&mut mem, 0x10_1000, 0xABC_E000, RO).unwrap();
        assert_eq!(mem.tables.len(), levels as usize);
        assert_eq!(pt.translate(&mem, 0x10_0000), Some((0xABC_D000, RW)));
        assert_eq!(pt.translate(&mem, 0x10_1000), Some((0xABC_E000, RO)));
        assert_eq!(pt.translate(&mem, 0x10_2000), None);
        assert_eq!(pt.map(&mut mem, 0x10_0000, 0x5000, RW), Err(TableError::Mapped));
        assert_eq!(pt.unmap(&mut mem, 0x10_0000), Ok(0xABC_D000));
        assert_eq!(pt.translate(&mem, 0x10_0000), None);
        assert_eq!(pt.unmap(&mut mem, 0x10_0000), Err(TableError::NotMapped));
        assert!(mem.freed.is_empty(), "the leaf table still holds 0x101000");
        assert_eq!(pt.unmap(&mut mem, 0x10_1000), Ok(0xABC_E000));
        assert_eq!(mem.freed.len(), levels as usize - 1);
        assert_eq!(mem.tables.keys().copied().collect::<Vec<_>>(), [root]);
        assert!(mem.tables[&root].iter().all(|e| *e == 0));
    }

    /// Unaligned or too-wide addresses, no rights, an unmapped page, no memory left.
    fn hostile_arguments<F: EntryFormat>() {
        let mut mem = Memory::default();
        let pt = Radix::<F>::new(mem.allocate_table().unwrap(), 3);
        assert_eq!(pt.map(&mut mem, 0x1001, 0x2000, RW), Err(TableError::BadAddress));
        assert_eq!(pt.map(&mut mem, 0x1000, 0x2001, RW), Err(TableError::BadAddress));
        assert_eq!(pt.map(&mut mem, 1 << 39, 0x2000, RW), Err(TableError::BadAddress));
        assert_eq!(pt.map(&mut mem, 0x1000, 1 << 52, RW), Err(TableError::BadAddress));
        let none = DmaRights { read: false, write: false };
        assert_eq!(pt.map(&mut mem, 0x1000, 0x2000, none), Err(TableError::NoRights));
        assert_eq!(pt.translate(&mem, 1 << 39), None);
        assert_eq!(pt.unmap(&mut mem, 0x1000), Err(TableError::NotMapped));
        mem.limit = Some(2);
        assert_eq!(pt.map(&mut mem, 0x1000, 0x2000, RW), Err(TableError::NoMemory));
    }

    #[test]
    fn second_level_in_both_widths() {
        map_translate_unmap::<SecondLevel>(3);
        map_translate_unmap::<SecondLevel>(4);
        hostile_arguments::<SecondLevel>();
    }

    #[test]
    fn amdvi_io_page_table() {
        map_translate_unmap::<IoEntry>(crate::amdvi_dma::LEVELS);
        map_translate_unmap::<IoEntry>(6);
        hostile_arguments::<IoEntry>();
    }
}
