//! A domain's second-level page table (VT-d spec 9.8, 3.7): 4-KiB leaves only, 3 or 4
//! levels by the domain's [`AddressWidth`]. Generic over the memory the tables live in
//! ([`TableMemory`]: the kernel's frames and physical map; a map in host tests), so the
//! walk, the permission bits and the freeing of emptied tables are host-tested.

use crate::context::AddressWidth;
use crate::radix::{table_operations, EntryFormat, Radix};

/// Second-level entry bit 0: read allowed.
pub const READ: u64 = 1 << 0;
/// Second-level entry bit 1: write allowed.
pub const WRITE: u64 = 1 << 1;

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

/// The second-level entry format: present when R or W is set, the rights are those bits.
pub(crate) struct SecondLevel;

impl EntryFormat for SecondLevel {
    fn present(entry: u64) -> bool {
        entry & (READ | WRITE) != 0
    }
    fn directory(next: u64, _level: u32) -> u64 {
        next | READ | WRITE
    }
    fn leaf(phys: u64, rights: DmaRights) -> u64 {
        phys | ((rights.read as u64) * READ) | ((rights.write as u64) * WRITE)
    }
    fn rights(entry: u64) -> DmaRights {
        DmaRights { read: entry & READ != 0, write: entry & WRITE != 0 }
    }
    fn follows(_entry: u64, _level: u32) -> bool {
        true
    }
}

impl PageTable {
    /// A table with an empty root.
    pub fn new<M: TableMemory>(mem: &mut M, width: AddressWidth) -> Option<PageTable> {
        Some(PageTable { root: mem.allocate_table()?, width })
    }

    fn walk(&self) -> Radix<SecondLevel> {
        Radix::new(self.root, self.width.levels())
    }

    table_operations!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radix::ADDRESS_MASK;
    use crate::test_memory::{Memory, RO, RW};

    #[test]
    fn width_sets_the_depth() {
        for width in [AddressWidth::Bits39, AddressWidth::Bits48] {
            let mut mem = Memory::default();
            let pt = PageTable::new(&mut mem, width).unwrap();
            pt.map(&mut mem, 0x10_0000, 0xABC_D000, RW).unwrap();
            assert_eq!(mem.tables.len(), width.levels() as usize);
            assert_eq!(pt.translate(&mem, 0x10_0000), Some((0xABC_D000, RW)));
            assert_eq!(pt.unmap(&mut mem, 0x10_0000), Ok(0xABC_D000));
            assert_eq!(mem.freed.len(), width.levels() as usize - 1);
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
        // A directory entry that allows only reads caps the leaf below it.
        pt.map(&mut mem, 0x4000_1000, 0x8000, RW).unwrap();
        mem.write(l3 & ADDRESS_MASK, 0, (l2 & ADDRESS_MASK) | READ);
        assert_eq!(pt.translate(&mem, 0x4000_1000), Some((0x8000, RO)));
    }
}
