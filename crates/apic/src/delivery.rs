//! When a send reads the xAPIC delivery-status bit, and what it saw.

use crate::icr::{DeliveryMode, IcrValue, DELIVERY_MODE_SHIFT};

/// Whether a send polls the xAPIC delivery-status bit (ICR low bit 12).
///
/// The bit only says whether *this* LAPIC has finished sending (SDM Vol. 3A
/// 11.6.1: "completed sending any previous IPIs"); on the system-bus xAPIC
/// of every x86-64 CPU it says nothing about whether the target accepted the
/// interrupt, so polling it after a send proves no delivery, and the SDM
/// asks for no poll before one. x2APIC removed the bit ("not needed",
/// 11.12.9). Keel therefore polls only around the bring-up IPIs, where a
/// send that never leaves the LAPIC is worth reporting and the sequence is
/// slow anyway (milliseconds of mandated delays): the INIT that resets the
/// target and the start-up IPIs, which the SDM says are "not automatically
/// retried" when the source APIC cannot deliver them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryWait {
    /// One write and return: fixed and NMI IPIs, and every x2APIC send.
    None,
    /// A bounded wait for idle before the write (a previous send still in
    /// the LAPIC) and after it (this one left): xAPIC INIT and start-up.
    AroundSend,
}

impl IcrValue {
    /// The delivery-status policy for this send (see [`DeliveryWait`]).
    pub const fn delivery_wait(&self) -> DeliveryWait {
        match *self {
            IcrValue::XApic { low, .. } => {
                let mode = (low >> DELIVERY_MODE_SHIFT) & 0b111;
                if mode == DeliveryMode::Init.bits() || mode == DeliveryMode::StartUp.bits() {
                    DeliveryWait::AroundSend
                } else {
                    DeliveryWait::None
                }
            }
            IcrValue::X2Apic(_) => DeliveryWait::None,
        }
    }
}

/// What a send saw of the xAPIC delivery-status bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not read (fixed and NMI IPIs; every x2APIC send).
    NotPolled,
    /// Read idle before and after the write.
    Idle,
    /// Still "send pending" when a bounded wait gave up.
    StuckPending,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{Event, FakeLapic};
    use crate::icr::Ipi;
    use crate::id::ApicId;
    use crate::lapic::Lapic;
    use crate::mode::LapicMode;

    fn lapic(mode: LapicMode, id: u32) -> Lapic<FakeLapic> {
        Lapic::new(FakeLapic::new(mode, ApicId::new(id)))
    }

    fn events(l: &Lapic<FakeLapic>) -> &[Event] {
        l.registers().events()
    }

    #[test]
    fn only_xapic_init_and_startup_wait_for_delivery_status() {
        let id = ApicId::new(1);
        for m in [
            Ipi::fixed(0x40),
            Ipi::nmi(),
            Ipi::init_assert(),
            Ipi::init_deassert(),
            Ipi::startup(8),
        ] {
            let around = matches!(m.delivery, DeliveryMode::Init | DeliveryMode::StartUp);
            let x = m.to(id).encode(LapicMode::XApic).unwrap();
            let x2 = m.to(id).encode(LapicMode::X2Apic).unwrap();
            let want = if around { DeliveryWait::AroundSend } else { DeliveryWait::None };
            assert_eq!(x.delivery_wait(), want, "{m:?}");
            assert_eq!(x2.delivery_wait(), DeliveryWait::None, "{m:?}");
        }
    }

    #[test]
    fn fixed_and_nmi_sends_are_one_icr_write_and_nothing_else() {
        for mode in [LapicMode::XApic, LapicMode::X2Apic] {
            for ipi in [Ipi::fixed(0x31).to(ApicId::new(1)), Ipi::nmi().to_all_but_self()] {
                let mut l = lapic(mode, 0);
                assert_eq!(l.send(ipi), Ok(DeliveryStatus::NotPolled));
                assert!(
                    matches!(events(&l), [Event::Icr(_)]),
                    "{mode:?} {ipi:?}: {:?}",
                    events(&l)
                );
            }
        }
    }

    #[test]
    fn a_stuck_delivery_status_on_a_bring_up_ipi_is_reported() {
        let mut l = lapic(LapicMode::XApic, 0);
        l.registers_mut().stick_delivery_status(true);
        assert_eq!(l.send(Ipi::startup(0x08).to(ApicId::new(1))), Ok(DeliveryStatus::StuckPending));
        assert_eq!(events(&l)[0], Event::WaitIcrIdle, "waits before the write");
        assert!(matches!(events(&l)[1], Event::Icr(_)));
        assert_eq!(events(&l)[2], Event::WaitIcrIdle, "and after it");
        // A fixed IPI never looks at the bit, stuck or not.
        l.registers_mut().clear_events();
        assert_eq!(l.send(Ipi::fixed(0x31).to(ApicId::new(1))), Ok(DeliveryStatus::NotPolled));
        assert_eq!(events(&l).len(), 1);
    }
}
