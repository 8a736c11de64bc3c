//! `IA32_APIC_BASE` and the MSRs that say whether firmware locked x2APIC.

use crate::mode::ApicState;

/// `IA32_APIC_BASE` MSR number.
pub const IA32_APIC_BASE: u32 = 0x1B;
/// `IA32_ARCH_CAPABILITIES` MSR number; exists only when
/// `CPUID.(EAX=7,ECX=0):EDX[29]` is set.
pub const IA32_ARCH_CAPABILITIES: u32 = 0x10A;
/// `IA32_XAPIC_DISABLE_STATUS` MSR number; readable only when
/// `IA32_ARCH_CAPABILITIES` bit 21 is set.
pub const IA32_XAPIC_DISABLE_STATUS: u32 = 0xBD;

/// CPUID.01H:ECX bit 21: the CPU supports x2APIC.
pub const CPUID_01_ECX_X2APIC: u32 = 1 << 21;
/// CPUID.(EAX=7,ECX=0):EDX bit 29: `IA32_ARCH_CAPABILITIES` exists.
pub const CPUID_07_EDX_ARCH_CAPABILITIES: u32 = 1 << 29;
/// `IA32_ARCH_CAPABILITIES` bit 21: `IA32_XAPIC_DISABLE_STATUS` exists.
pub const ARCH_CAP_XAPIC_DISABLE_STATUS: u64 = 1 << 21;
/// `IA32_XAPIC_DISABLE_STATUS` bit 0: firmware locked the APIC in x2APIC
/// mode; legacy xAPIC (and leaving x2APIC) is unavailable.
pub const LEGACY_XAPIC_DISABLED: u64 = 1 << 0;

/// `IA32_APIC_BASE` bit 8: this CPU is the bootstrap processor.
pub const APIC_BASE_BSP: u64 = 1 << 8;
/// `IA32_APIC_BASE` bit 10 (EXTD): x2APIC mode enable.
pub const APIC_BASE_EXTD: u64 = 1 << 10;
/// `IA32_APIC_BASE` bit 11 (EN): APIC global enable.
pub const APIC_BASE_EN: u64 = 1 << 11;
/// `IA32_APIC_BASE` bits 12..52: the xAPIC MMIO base (architectural maximum
/// MAXPHYADDR is 52; bits above the CPU's MAXPHYADDR read as zero).
pub const APIC_BASE_ADDRESS_MASK: u64 = 0x000F_FFFF_FFFF_F000;

/// A value of `IA32_APIC_BASE`.
///
/// Built from the raw MSR and modified field by field so that bits this
/// crate does not understand are written back exactly as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ApicBase(u64);

/// Why an `IA32_APIC_BASE` field update was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicBaseError {
    /// The base must be 4 KiB aligned and below 2^52.
    InvalidBaseAddress(u64),
}

impl ApicBase {
    /// Wraps a raw MSR value.
    pub const fn from_raw(raw: u64) -> Self {
        ApicBase(raw)
    }

    /// The raw MSR value to write back.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Bit 8: this CPU is the BSP.
    pub const fn is_bsp(self) -> bool {
        self.0 & APIC_BASE_BSP != 0
    }

    /// Bit 10 (EXTD): x2APIC mode enabled.
    pub const fn x2apic_enabled(self) -> bool {
        self.0 & APIC_BASE_EXTD != 0
    }

    /// Bit 11 (EN): APIC globally enabled.
    pub const fn globally_enabled(self) -> bool {
        self.0 & APIC_BASE_EN != 0
    }

    /// Physical address of the xAPIC register page.
    pub const fn base_address(self) -> u64 {
        self.0 & APIC_BASE_ADDRESS_MASK
    }

    /// Same value with a different base address; other bits preserved.
    pub const fn with_base_address(self, address: u64) -> Result<Self, ApicBaseError> {
        if address & !APIC_BASE_ADDRESS_MASK != 0 {
            return Err(ApicBaseError::InvalidBaseAddress(address));
        }
        Ok(ApicBase((self.0 & !APIC_BASE_ADDRESS_MASK) | address))
    }

    /// The (EN, EXTD) state.
    pub const fn state(self) -> ApicState {
        ApicState::from_bits(self.globally_enabled(), self.x2apic_enabled())
    }

    /// Same value with EN/EXTD set for `state`; every other bit preserved.
    pub const fn with_state(self, state: ApicState) -> Self {
        let (en, extd) = state.bits();
        let mut raw = self.0 & !(APIC_BASE_EN | APIC_BASE_EXTD);
        if en {
            raw |= APIC_BASE_EN;
        }
        if extd {
            raw |= APIC_BASE_EXTD;
        }
        ApicBase(raw)
    }
}

/// A value of `IA32_XAPIC_DISABLE_STATUS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct XapicDisableStatus(u64);

impl XapicDisableStatus {
    /// Wraps a raw MSR value.
    pub const fn from_raw(raw: u64) -> Self {
        XapicDisableStatus(raw)
    }

    /// Bit 0: firmware locked x2APIC mode (legacy xAPIC disabled).
    pub const fn legacy_xapic_disabled(self) -> bool {
        self.0 & LEGACY_XAPIC_DISABLED != 0
    }
}

/// Determines whether firmware locked x2APIC, reading MSRs only when the
/// architecture says they exist (RDMSR of a missing MSR #GPs).
///
/// `cpuid_07_edx` is CPUID.(EAX=7,ECX=0):EDX (0 when leaf 7 is absent);
/// `read_arch_capabilities` and `read_xapic_disable_status` perform the
/// RDMSRs and are called only when enumerated. Returns `None` when the lock
/// MSR is not enumerated, which is what [`crate::mode::ModeInputs`] expects.
pub fn x2apic_lock_state(
    cpuid_07_edx: u32,
    read_arch_capabilities: impl FnOnce() -> u64,
    read_xapic_disable_status: impl FnOnce() -> u64,
) -> Option<bool> {
    if cpuid_07_edx & CPUID_07_EDX_ARCH_CAPABILITIES == 0 {
        return None;
    }
    if read_arch_capabilities() & ARCH_CAP_XAPIC_DISABLE_STATUS == 0 {
        return None;
    }
    Some(XapicDisableStatus::from_raw(read_xapic_disable_status()).legacy_xapic_disabled())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apic_base_field_decode() {
        let base = ApicBase::from_raw(0xFEE0_0900);
        assert!(base.is_bsp());
        assert!(base.globally_enabled());
        assert!(!base.x2apic_enabled());
        assert_eq!(base.base_address(), 0xFEE0_0000);
        assert_eq!(base.state(), ApicState::XApic);
        assert_eq!(ApicBase::from_raw(0xFEE0_0D00).state(), ApicState::X2Apic);
        assert_eq!(ApicBase::from_raw(0xFEE0_0100).state(), ApicState::Disabled);
        assert_eq!(ApicBase::from_raw(0xFEE0_0500).state(), ApicState::Invalid);
    }

    #[test]
    fn with_state_preserves_unknown_bits() {
        // Bits 0-7, 9 and 63 are not interpreted here and must survive.
        let raw = 0x8000_0000_FEE0_02FF | APIC_BASE_BSP;
        let base = ApicBase::from_raw(raw);
        let x2 = base.with_state(ApicState::X2Apic);
        assert_eq!(x2.raw(), raw | APIC_BASE_EN | APIC_BASE_EXTD);
        assert_eq!(x2.with_state(ApicState::Disabled).raw(), raw);
        assert_eq!(base.with_state(ApicState::XApic).raw(), raw | APIC_BASE_EN);
    }

    #[test]
    fn base_address_update_is_checked() {
        let base = ApicBase::from_raw(0xFEE0_0900);
        assert_eq!(base.with_base_address(0x1_0000_0000).unwrap().raw(), 0x1_0000_0900);
        assert_eq!(
            base.with_base_address(0xFEE0_0010),
            Err(ApicBaseError::InvalidBaseAddress(0xFEE0_0010))
        );
        assert!(base.with_base_address(1 << 52).is_err());
    }

    #[test]
    fn lock_state_reads_only_enumerated_msrs() {
        let never = || -> u64 { panic!("MSR read without enumeration") };
        assert_eq!(x2apic_lock_state(0, never, never), None);
        assert_eq!(x2apic_lock_state(CPUID_07_EDX_ARCH_CAPABILITIES, || 0, never), None);
        let caps = || ARCH_CAP_XAPIC_DISABLE_STATUS;
        assert_eq!(x2apic_lock_state(CPUID_07_EDX_ARCH_CAPABILITIES, caps, || 1), Some(true));
        assert_eq!(x2apic_lock_state(CPUID_07_EDX_ARCH_CAPABILITIES, caps, || 0), Some(false));
        assert!(XapicDisableStatus::from_raw(1).legacy_xapic_disabled());
    }
}
