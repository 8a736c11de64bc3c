//! The architectural bit positions this crate names, pinned to the documents that define
//! them (Intel SDM vol. 3A ch. 11, the 82093AA IOAPIC datasheet). A constant that drifted
//! would still encode consistently with itself, so only an independent statement of the
//! position catches it.

use crate::base::*;
use crate::icr::ICR_DELIVERY_STATUS_PENDING;
use crate::ioapic::{RTE_MASKED, RTE_READ_ONLY_BITS};

fn bit(n: u32) -> u64 {
    1 << n
}

#[test]
fn cpuid_and_msr_bits() {
    assert_eq!(u64::from(CPUID_01_ECX_X2APIC), bit(21), "CPUID.01H:ECX[21] x2APIC");
    assert_eq!(u64::from(CPUID_07_EDX_ARCH_CAPABILITIES), bit(29), "CPUID.07H:EDX[29]");
    assert_eq!(ARCH_CAP_XAPIC_DISABLE_STATUS, bit(21), "IA32_ARCH_CAPABILITIES[21]");
    assert_eq!(LEGACY_XAPIC_DISABLED, bit(0), "IA32_XAPIC_DISABLE_STATUS[0]");
    assert_eq!(APIC_BASE_BSP, bit(8));
    assert_eq!(APIC_BASE_EXTD, bit(10));
    assert_eq!(APIC_BASE_EN, bit(11));
}

#[test]
fn icr_and_rte_bits() {
    assert_eq!(u64::from(ICR_DELIVERY_STATUS_PENDING), bit(12), "ICR delivery status");
    assert_eq!(u64::from(RTE_MASKED), bit(16), "RTE mask");
    assert_eq!(u64::from(RTE_READ_ONLY_BITS), bit(12) | bit(14), "RTE delivery status, remote IRR");
}

#[test]
fn bsp_flag_is_bit_8_only() {
    assert!(ApicBase::from_raw(0xFEE0_0900).is_bsp());
    assert!(!ApicBase::from_raw(0xFEE0_0800).is_bsp(), "an AP");
    assert!(!ApicBase::from_raw(0xFEE0_0C00).is_bsp(), "an AP in x2APIC mode");
}

#[test]
fn lvt_status_bits() {
    use crate::lvt::{LVT_DELIVERY_PENDING, LVT_MASKED, LVT_REMOTE_IRR};
    assert_eq!(u64::from(LVT_MASKED), bit(16));
    assert_eq!(u64::from(LVT_DELIVERY_PENDING), bit(12));
    assert_eq!(u64::from(LVT_REMOTE_IRR), bit(14));
}

/// ESR bit n is reported by exactly the accessor for bit n (SDM 11.5.3).
#[test]
fn each_esr_accessor_reads_its_own_bit() {
    use crate::lvt::EsrFlags;
    let accessors: [fn(EsrFlags) -> bool; 8] = [
        EsrFlags::send_checksum,
        EsrFlags::receive_checksum,
        EsrFlags::send_accept,
        EsrFlags::receive_accept,
        EsrFlags::redirectable_ipi,
        EsrFlags::send_illegal_vector,
        EsrFlags::receive_illegal_vector,
        EsrFlags::illegal_register_address,
    ];
    for n in 0..8 {
        let esr = EsrFlags::from_raw(1 << n);
        assert_eq!(esr.bits(), 1 << n);
        assert!(!esr.is_empty());
        for (m, read) in accessors.iter().enumerate() {
            assert_eq!(read(esr), m == n, "ESR bit {n}, accessor for bit {m}");
        }
    }
}

#[test]
fn spurious_vector_register_decodes_its_fields() {
    use crate::lvt::SpuriousVector;
    let svr = SpuriousVector::decode(0x0000_0140);
    assert_eq!(svr.vector, 0x40);
    assert!(
        svr.apic_software_enabled && !svr.focus_check_disabled && !svr.eoi_broadcast_suppression
    );
    assert_eq!(SpuriousVector::decode(svr.encode()), svr);
}

#[test]
fn version_register_fields() {
    use crate::lvt::Version;
    let v = Version::decode(0x0005_0014);
    assert_eq!((v.version, v.max_lvt, v.eoi_broadcast_suppression_supported), (0x14, 5, false));
    assert!(Version::decode(0x0105_0014).eoi_broadcast_suppression_supported, "bit 24");
}

#[test]
fn enabled_states_name_their_register_access_mode() {
    use crate::{ApicState, LapicMode};
    assert_eq!(ApicState::XApic.mode(), Some(LapicMode::XApic));
    assert_eq!(ApicState::X2Apic.mode(), Some(LapicMode::X2Apic));
    assert_eq!(ApicState::Disabled.mode(), None);
    assert_eq!(ApicState::Invalid.mode(), None);
}

#[test]
fn msi_address_and_data_round_trip() {
    use crate::id::{ApicId, XApicId};
    use crate::msi::{MsiAddress, MsiData};
    let dest = XApicId::try_from(ApicId::new(3)).unwrap();
    let address = MsiAddress::physical(dest);
    let decoded = MsiAddress::decode(address.encode()).unwrap();
    assert_eq!(decoded, address);
    assert!(!decoded.redirection_hint && !decoded.logical);
    assert!(
        MsiData::fixed(crate::MIN_FIXED_VECTOR).encode().is_ok(),
        "vector 16 is the first legal one"
    );
    assert!(MsiData::fixed(crate::MIN_FIXED_VECTOR - 1).encode().is_err());
}

#[test]
fn isr_irr_bit_of_a_vector() {
    use crate::regs::Bank;
    assert_eq!(Bank::bit_for_vector(49), 1 << 17, "vector 49: bank 1, bit 17");
    assert_eq!(Bank::for_vector(49).index(), 1);
}

#[test]
fn timer_divide_from_divisor() {
    use crate::lvt::TimerDivide;
    for d in TimerDivide::ALL {
        assert_eq!(TimerDivide::from_divisor(d.divisor()), Some(d));
    }
    assert_eq!(TimerDivide::from_divisor(3), None);
}
