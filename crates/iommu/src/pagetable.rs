//! A domain's second-level page table (VT-d spec 9.8, 3.7): 4-KiB leaves only, 3 or 4
//! levels by the domain's [`AddressWidth`]. Generic over the memory the tables live in
//! ([`TableMemory`]: the kernel's frames and physical map; a map in host tests), so the
//! walk, the permission bits and the freeing of emptied tables are host-tested.

use crate::context::AddressWidth;

/// Second-level entry bit 0: read allowed.
pub const READ: u64 = 1 << 0;
/// Second-level entry bit 1: write allowed.
pub const WRITE: u64 = 1 << 1;
/// Bits 51:12: the next table or the page.
const ADDRESS_MASK: u64 = 0x000F_FFFF_FFFF_F000;
/// Entries per table.
const ENTRIES: u64 = 512;

/// Where tables live: 4-KiB frames of 512 64-bit entries, addressed physically.
pub trait TableMemory {
    /// A zeroed frame for a new table, or `None` when memory ran out.
    fn allocate_table(&mut self) -> Option<u64>;
    /// Gives back a table that no entry references any more.
    fn free_table(&mut self, table: u64);
    /// Reads entry `index` of the table at `table`.
    fn read(&self, table: u64, index: usize) -> u64;
    /// Writes entry `index` of the table at `table` (and, on a non-coherent unit, flushes
    /// it from the CPU cache).
    fn write(&mut self, table: u64, index: usize, value: u64);
}

/// What a device may do with a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaRights {
    /// The device may read the page.
    pub read: bool,
    /// The device may write the page.
    pub write: bool,
}

impl DmaRights {
    fn bits(self) -> u64 {
        ((self.read as u64) * READ) | ((self.write as u64) * WRITE)
    }
}

/// Why a page-table operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    /// The IOVA or physical address is not page aligned, or the IOVA is beyond the table.
    BadAddress,
    /// Rights with neither read nor write.
    NoRights,
    /// The IOVA is already mapped.
    Mapped,
    /// The IOVA is not mapped.
    NotMapped,
    /// No frame for an intermediate table.
    NoMemory,
}

/// One domain's table: its root and depth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageTable {
    /// The top-level table (the context entry's SLPTPTR).
    pub root: u64,
    /// Levels and translated bits.
    pub width: AddressWidth,
}

impl PageTable {
    /// A table with an empty root.
    pub fn new<M: TableMemory>(mem: &mut M, width: AddressWidth) -> Option<PageTable> {
        Some(PageTable { root: mem.allocate_table()?, width })
    }

    fn index(iova: u64, level: u32) -> usize {
        ((iova >> (12 + 9 * (level - 1))) & (ENTRIES - 1)) as usize
    }

    fn check(&self, iova: u64) -> Result<(), TableError> {
        if iova & 0xFFF != 0 || iova >> self.width.bits() != 0 {
            return Err(TableError::BadAddress);
        }
        Ok(())
    }

    /// Maps the page at `iova` to `phys`. Intermediate tables are created as needed, with
    /// read and write allowed (the leaf's bits decide: the unit ANDs the levels' rights).
    pub fn map<M: TableMemory>(
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
        if rights.bits() == 0 {
            return Err(TableError::NoRights);
        }
        let mut table = self.root;
        for level in (2..=self.width.levels()).rev() {
            let i = Self::index(iova, level);
            let entry = mem.read(table, i);
            table = if entry & (READ | WRITE) != 0 {
                entry & ADDRESS_MASK
            } else {
                let next = mem.allocate_table().ok_or(TableError::NoMemory)?;
                mem.write(table, i, next | READ | WRITE);
                next
            };
        }
        let i = Self::index(iova, 1);
        if mem.read(table, i) & (READ | WRITE) != 0 {
            return Err(TableError::Mapped);
        }
        mem.write(table, i, phys | rights.bits());
        Ok(())
    }

    /// The page `iova` translates to, with its rights.
    pub fn translate<M: TableMemory>(&self, mem: &M, iova: u64) -> Option<(u64, DmaRights)> {
        self.check(iova).ok()?;
        let mut table = self.root;
        for level in (1..=self.width.levels()).rev() {
            let entry = mem.read(table, Self::index(iova, level));
            if entry & (READ | WRITE) == 0 {
                return None;
            }
            if level == 1 {
                let rights = DmaRights { read: entry & READ != 0, write: entry & WRITE != 0 };
                return Some((entry & ADDRESS_MASK, rights));
            }
            table = entry & ADDRESS_MASK;
        }
        None
    }

    /// Clears the leaf for `iova` and returns the page it mapped. Intermediate tables that
    /// became empty are unlinked and freed: the caller's IOTLB invalidation (which must
    /// complete before the page itself is reused) also covers the paging-structure caches.
    pub fn unmap<M: TableMemory>(&self, mem: &mut M, iova: u64) -> Result<u64, TableError> {
        self.check(iova)?;
        let levels = self.width.levels() as usize;
        // The tables walked through, top first.
        let mut path = [0u64; 4];
        let mut table = self.root;
        for (depth, level) in (2..=self.width.levels()).rev().enumerate() {
            path[depth] = table;
            let entry = mem.read(table, Self::index(iova, level));
            if entry & (READ | WRITE) == 0 {
                return Err(TableError::NotMapped);
            }
            table = entry & ADDRESS_MASK;
        }
        path[levels - 1] = table;
        let i = Self::index(iova, 1);
        let leaf = mem.read(table, i);
        if leaf & (READ | WRITE) == 0 {
            return Err(TableError::NotMapped);
        }
        mem.write(table, i, 0);
        // Free emptied tables bottom-up, never the root.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct Memory {
        tables: BTreeMap<u64, Vec<u64>>,
        next: u64,
        freed: Vec<u64>,
        limit: Option<usize>,
    }

    impl TableMemory for Memory {
        fn allocate_table(&mut self) -> Option<u64> {
            if self.limit.is_some_and(|l| self.tables.len() >= l) {
                return None;
            }
            self.next += 0x1000;
            self.tables.insert(0x100_0000 + self.next, vec![0; 512]);
            Some(0x100_0000 + self.next)
        }
        fn free_table(&mut self, table: u64) {
            assert!(self.tables.remove(&table).is_some(), "double free {table:#x}");
            self.freed.push(table);
        }
        fn read(&self, table: u64, index: usize) -> u64 {
            self.tables[&table][index]
        }
        fn write(&mut self, table: u64, index: usize, value: u64) {
            self.tables.get_mut(&table).expect("live table")[index] = value;
        }
    }

    const RW: DmaRights = DmaRights { read: true, write: true };
    const RO: DmaRights = DmaRights { read: true, write: false };

    #[test]
    fn map_translate_unmap_in_both_widths() {
        for width in [AddressWidth::Bits39, AddressWidth::Bits48] {
            let mut mem = Memory::default();
            let pt = PageTable::new(&mut mem, width).unwrap();
            pt.map(&mut mem, 0x10_0000, 0xABC_D000, RW).unwrap();
            pt.map(&mut mem, 0x10_1000, 0xABC_E000, RO).unwrap();
            assert_eq!(mem.tables.len(), width.levels() as usize);
            assert_eq!(pt.translate(&mem, 0x10_0000), Some((0xABC_D000, RW)));
            assert_eq!(pt.translate(&mem, 0x10_1000), Some((0xABC_E000, RO)));
            assert_eq!(pt.translate(&mem, 0x10_2000), None);
            assert_eq!(pt.map(&mut mem, 0x10_0000, 0x5000, RW), Err(TableError::Mapped));
            assert_eq!(pt.unmap(&mut mem, 0x10_0000), Ok(0xABC_D000));
            assert_eq!(pt.translate(&mem, 0x10_0000), None);
            assert_eq!(pt.unmap(&mut mem, 0x10_0000), Err(TableError::NotMapped));
            assert!(mem.freed.is_empty(), "the leaf table still holds 0x101000");
            assert_eq!(pt.unmap(&mut mem, 0x10_1000), Ok(0xABC_E000));
            assert_eq!(mem.freed.len(), width.levels() as usize - 1);
            assert_eq!(mem.tables.keys().copied().collect::<Vec<_>>(), [pt.root]);
            assert!(mem.tables[&pt.root].iter().all(|e| *e == 0));
        }
    }

    #[test]
    fn leaf_bits_and_intermediate_rights() {
        let mut mem = Memory::default();
        let pt = PageTable::new(&mut mem, AddressWidth::Bits39).unwrap();
        pt.map(&mut mem, 0x4000_0000, 0x7000, RO).unwrap();
        let l3 = mem.read(pt.root, 1);
        assert_eq!(l3 & 3, READ | WRITE, "non-leaf entries allow both");
        let l2 = mem.read(l3 & ADDRESS_MASK, 0);
        assert_eq!(mem.read(l2 & ADDRESS_MASK, 0), 0x7000 | READ);
    }

    #[test]
    fn hostile_arguments() {
        let mut mem = Memory::default();
        let pt = PageTable::new(&mut mem, AddressWidth::Bits39).unwrap();
        assert_eq!(pt.map(&mut mem, 0x1001, 0x2000, RW), Err(TableError::BadAddress));
        assert_eq!(pt.map(&mut mem, 0x1000, 0x2001, RW), Err(TableError::BadAddress));
        assert_eq!(pt.map(&mut mem, 1 << 39, 0x2000, RW), Err(TableError::BadAddress));
        assert_eq!(pt.map(&mut mem, 0x1000, 1 << 52, RW), Err(TableError::BadAddress));
        let none = DmaRights { read: false, write: false };
        assert_eq!(pt.map(&mut mem, 0x1000, 0x2000, none), Err(TableError::NoRights));
        assert_eq!(pt.translate(&mem, 1 << 39), None);
        mem.limit = Some(2);
        assert_eq!(pt.map(&mut mem, 0x1000, 0x2000, RW), Err(TableError::NoMemory));
    }
}
