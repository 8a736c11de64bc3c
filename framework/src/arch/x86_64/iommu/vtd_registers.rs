//! MMIO access to one remapping unit's register page (VT-d spec 10.4). The only `unsafe`
//! of the IOMMU driver besides the table and queue memory.

use keel_iommu::sequence::UnitRegisters;

use crate::mm::paging::{map_physical, Caching};

/// How long a register handshake (a global command, a queue drain) may take.
const HANDSHAKE_TIMEOUT_NS: u64 = 100_000_000;

/// The mapped register set of one unit.
pub struct Registers {
    base: *mut u8,
}

// SAFETY: the registers are only touched under the IOMMU lock.
unsafe impl Send for Registers {}

impl Registers {
    /// Maps `pages` 4-KiB pages of registers at `phys` uncached.
    pub fn map(phys: u64, pages: u32) -> Registers {
        let base = map_physical(phys, pages as u64 * 4096, Caching::Uncached).as_mut_ptr::<u8>();
        Registers { base }
    }

    pub fn read32(&self, offset: usize) -> u32 {
        // SAFETY: `offset` is one of the architectural register offsets inside the mapped
        // register page(s), 4-byte aligned.
        unsafe { self.base.add(offset).cast::<u32>().read_volatile() }
    }

    pub fn write32(&self, offset: usize, value: u32) {
        // SAFETY: as in `read32`.
        unsafe { self.base.add(offset).cast::<u32>().write_volatile(value) }
    }

    pub fn read64(&self, offset: usize) -> u64 {
        // SAFETY: as in `read32`, 8-byte aligned (64-bit registers are naturally aligned).
        unsafe { self.base.add(offset).cast::<u64>().read_volatile() }
    }

    pub fn write64(&self, offset: usize, value: u64) {
        // SAFETY: as in `read64`.
        unsafe { self.base.add(offset).cast::<u64>().write_volatile(value) }
    }
}

/// The pure crate's sequences drive the unit through this.
impl UnitRegisters for Registers {
    fn read32(&mut self, offset: usize) -> u32 {
        Registers::read32(self, offset)
    }

    fn write32(&mut self, offset: usize, value: u32) {
        Registers::write32(self, offset, value)
    }

    fn read64(&mut self, offset: usize) -> u64 {
        Registers::read64(self, offset)
    }

    fn write64(&mut self, offset: usize, value: u64) {
        Registers::write64(self, offset, value)
    }

    fn poll(&mut self, done: &mut dyn FnMut(&mut Self) -> bool) -> bool {
        crate::time::spin_until(0, HANDSHAKE_TIMEOUT_NS, || done(self))
    }
}
