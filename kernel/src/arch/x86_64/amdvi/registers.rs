//! MMIO reads of one AMD IOMMU's registers (AMD IOMMU spec 3.4). The only `unsafe` of the
//! AMD-Vi code.

use crate::mm::paging::{map_physical, Caching};

/// Control register (offset 0x18).
const CONTROL: usize = 0x18;
/// Extended feature register (offset 0x30).
const EXTENDED_FEATURES: usize = 0x30;
/// Control bit 0, IommuEn: the unit translates.
pub const CONTROL_IOMMU_EN: u64 = 1 << 0;

/// The first register page of one unit, mapped uncached.
pub struct Registers {
    base: *const u8,
}

impl Registers {
    /// Maps the page at `phys` (the IVHD's base address) uncached.
    pub fn map(phys: u64) -> Registers {
        Registers { base: map_physical(phys, 4096, Caching::Uncached).as_ptr::<u8>() }
    }

    fn read64(&self, offset: usize) -> u64 {
        // SAFETY: `offset` is an architectural register offset inside the mapped page,
        // 8-byte aligned; reading these registers has no side effect.
        unsafe { self.base.add(offset).cast::<u64>().read_volatile() }
    }

    /// The extended feature register as the unit reports it.
    pub fn extended_features(&self) -> u64 {
        self.read64(EXTENDED_FEATURES)
    }

    /// The control register.
    pub fn control(&self) -> u64 {
        self.read64(CONTROL)
    }
}
