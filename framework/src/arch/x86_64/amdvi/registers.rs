//! MMIO access to one AMD IOMMU's registers (AMD IOMMU spec 3.4). The only `unsafe` of the
//! AMD-Vi code besides the device table and command buffer memory.

use keel_iommu::amdvi::reg;

use crate::mm::paging::{map_physical, Caching};

/// Bytes of the register block mapped: the control registers at 0x0000 and the
/// head/tail pointers at 0x2000.
const MAPPED_BYTES: u64 = 0x4000;

/// The register block of one unit, mapped uncached.
pub struct Registers {
    base: *mut u8,
}

// SAFETY: the mapping is global and the remapping state that owns a block is only touched
// under its lock.
unsafe impl Send for Registers {}

impl Registers {
    /// Maps the block at `phys` (the IVHD's base address) uncached.
    pub fn map(phys: u64) -> Registers {
        Registers { base: map_physical(phys, MAPPED_BYTES, Caching::Uncached).as_mut_ptr::<u8>() }
    }

    /// Reads the 64-bit register at `offset`.
    pub fn read64(&self, offset: usize) -> u64 {
        debug_assert!(offset.is_multiple_of(8) && offset < MAPPED_BYTES as usize);
        // SAFETY: `offset` is an architectural register offset inside the mapped block,
        // 8-byte aligned; reading these registers has no side effect.
        unsafe { self.base.add(offset).cast::<u64>().read_volatile() }
    }

    /// Writes the 64-bit register at `offset`.
    pub fn write64(&self, offset: usize, value: u64) {
        debug_assert!(offset.is_multiple_of(8) && offset < MAPPED_BYTES as usize);
        // SAFETY: as in `read64`; every value written is built by `keel_iommu::amdvi`.
        unsafe { self.base.add(offset).cast::<u64>().write_volatile(value) }
    }

    /// The extended feature register as the unit reports it.
    pub fn extended_features(&self) -> u64 {
        self.read64(reg::EXTENDED_FEATURES)
    }

    /// The control register.
    pub fn control(&self) -> u64 {
        self.read64(reg::CONTROL)
    }
}
