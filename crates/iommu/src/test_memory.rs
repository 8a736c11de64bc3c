//! The host tests' [`TableMemory`]: tables in a map, frees recorded, an optional limit on
//! live tables to run allocation out.

use crate::pagetable::{DmaRights, TableMemory};
use std::collections::BTreeMap;

/// Read and write.
pub const RW: DmaRights = DmaRights { read: true, write: true };
/// Read only.
pub const RO: DmaRights = DmaRights { read: true, write: false };

/// Tables by address.
#[derive(Default)]
pub struct Memory {
    /// Live tables and their entries.
    pub tables: BTreeMap<u64, Vec<u64>>,
    next: u64,
    /// Tables given back, in order.
    pub freed: Vec<u64>,
    /// The most live tables allowed (`None`: unlimited).
    pub limit: Option<usize>,
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
