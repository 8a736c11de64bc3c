//! Local-APIC programming sequences, generic over a tiny register backend.
//!
//! The kernel implements [`LapicRegisters`] twice (xAPIC MMIO, x2APIC MSR);
//! all ordering rules live here, in one place that host tests exercise
//! through `fake::FakeLapic`.
//!
//! **Spurious interrupts are never EOI'd.** The spurious vector does not set
//! an ISR bit, so an EOI from the spurious handler would retire some *other*
//! in-service interrupt. The kernel's spurious handler must return without
//! calling [`Lapic::eoi`].

use crate::delivery::{DeliveryStatus, DeliveryWait};
use crate::icr::{IcrError, IcrValue, Ipi};
use crate::id::ApicId;
use crate::lvt::{
    EsrFlags, LvtError, LvtLocal, LvtTimer, SpuriousVector, TimerDivide, TimerMode, Version,
    LVT_MASKED, LVT_MASKED_ONLY,
};
use crate::mode::LapicMode;
use crate::regs::{Bank, Register};

/// Register access for one CPU's local APIC, implemented by the kernel.
///
/// Implementations are leaf code: translate [`Register`] to an MMIO offset
/// or MSR and perform the access. They must not reorder accesses.
pub trait LapicRegisters {
    /// The mode this backend drives.
    fn mode(&self) -> LapicMode;
    /// Reads a 32-bit register.
    fn read(&mut self, reg: Register) -> u32;
    /// Writes a 32-bit register. Never called with the ICR.
    fn write(&mut self, reg: Register, value: u32);
    /// Sends one encoded ICR. The backend does the mode-specific part: xAPIC
    /// writes ICR high then ICR low with interrupts off (nothing else);
    /// x2APIC executes `mfence; lfence` then one WRMSR 0x830. The value
    /// always matches [`LapicRegisters::mode`].
    fn write_icr(&mut self, icr: IcrValue);
    /// xAPIC only: polls the ICR delivery-status bit until it reads idle,
    /// within a bound; returns false if it stayed "send pending". Called
    /// only for sends whose [`IcrValue::delivery_wait`] asks for it.
    fn wait_icr_idle(&mut self) -> bool;
}

/// Local interrupt configuration applied by [`Lapic::enable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalInit {
    /// Spurious vector (>= 16; 0xFF is conventional).
    pub spurious_vector: u8,
    /// Vector for APIC error interrupts (>= 16).
    pub error_vector: u8,
    /// LINT0 and LINT1, as the MADT's local APIC NMI entries wire them for
    /// this CPU (see `keel_platform`'s `local_lints`); a pin no entry names is
    /// masked (Keel uses no 8259 virtual wire).
    pub lint0: LvtLocal,
    /// LINT1 (conventionally NMI).
    pub lint1: LvtLocal,
}

/// Why a LAPIC operation was refused before touching hardware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LapicError {
    /// Vectors 0-15 cannot be delivered.
    IllegalVector(u8),
    /// An initial count of 0 stops the timer instead of starting it.
    ZeroInitialCount,
}

/// TPR value that lets every interrupt class through.
pub const TPR_ACCEPT_ALL: u32 = 0;

/// One CPU's local APIC, driven through backend `R`.
#[derive(Debug)]
pub struct Lapic<R: LapicRegisters> {
    regs: R,
}

fn vector(v: u8) -> Result<u8, LapicError> {
    crate::check_fixed_vector(v).map_err(LapicError::IllegalVector)
}

impl<R: LapicRegisters> Lapic<R> {
    /// Wraps a backend.
    pub const fn new(regs: R) -> Self {
        Lapic { regs }
    }

    /// The backend (e.g. to inspect a fake).
    pub fn registers(&self) -> &R {
        &self.regs
    }

    /// Mutable backend access for operations this type does not model.
    pub fn registers_mut(&mut self) -> &mut R {
        &mut self.regs
    }

    /// Unwraps the backend.
    pub fn into_registers(self) -> R {
        self.regs
    }

    /// The backend's mode.
    pub fn mode(&self) -> LapicMode {
        self.regs.mode()
    }

    /// This CPU's APIC ID, decoded for the current mode.
    pub fn id(&mut self) -> ApicId {
        let raw = self.regs.read(Register::Id);
        ApicId::from_id_register(raw, self.regs.mode())
    }

    /// The decoded version register.
    pub fn version(&mut self) -> Version {
        Version::decode(self.regs.read(Register::Version))
    }

    /// Whether `vector` has been accepted and waits for the CPU (IRR bit set).
    pub fn is_requested(&mut self, vector: u8) -> bool {
        self.regs.read(Register::Irr(Bank::for_vector(vector))) & Bank::bit_for_vector(vector) != 0
    }

    /// Signals end of interrupt for the highest in-service vector.
    ///
    /// Writes 0 (x2APIC #GPs on non-zero). Never call it for the spurious
    /// vector: see the module documentation. This is the register operation;
    /// which entry owes an EOI is known only to the kernel's interrupt
    /// dispatcher, so a kernel should keep its `Lapic` private to that layer
    /// and hand handlers a token whose consumption calls this (Keel's
    /// framework does: its `InService`, never created for the spurious
    /// vector).
    pub fn eoi(&mut self) {
        self.regs.write(Register::Eoi, 0);
    }

    /// Whether `vector` is currently in service (ISR bit set).
    pub fn is_in_service(&mut self, vector: u8) -> bool {
        self.regs.read(Register::Isr(Bank::for_vector(vector))) & Bank::bit_for_vector(vector) != 0
    }

    /// Encodes `ipi` for the backend's mode and sends it: one ICR write,
    /// plus the delivery-status polls [`IcrValue::delivery_wait`] asks for
    /// (xAPIC INIT and start-up only).
    pub fn send(&mut self, ipi: Ipi) -> Result<DeliveryStatus, IcrError> {
        let icr = ipi.encode(self.regs.mode())?;
        match icr.delivery_wait() {
            DeliveryWait::None => {
                self.regs.write_icr(icr);
                Ok(DeliveryStatus::NotPolled)
            }
            DeliveryWait::AroundSend => {
                let before = self.regs.wait_icr_idle();
                self.regs.write_icr(icr);
                let after = self.regs.wait_icr_idle();
                Ok(if before && after {
                    DeliveryStatus::Idle
                } else {
                    DeliveryStatus::StuckPending
                })
            }
        }
    }

    /// Brings the local APIC into Keel's baseline state.
    ///
    /// Order matters: the SVR software-enable goes first, because while the
    /// APIC is software-disabled every LVT mask bit is forced to 1 and
    /// unmasking writes are lost. Then TPR 0, LINT0 masked, LINT1 masked or
    /// NMI, timer and optional LVTs masked, LVT error unmasked, and finally
    /// the ESR is cleared (write, then read). Returns errors latched before
    /// enable (usually empty).
    pub fn enable(&mut self, cfg: LocalInit) -> Result<EsrFlags, LapicError> {
        let spurious_vector = vector(cfg.spurious_vector)?;
        let error_vector = vector(cfg.error_vector)?;
        let version = self.version();
        let svr = SpuriousVector {
            vector: spurious_vector,
            apic_software_enabled: true,
            focus_check_disabled: false,
            eoi_broadcast_suppression: false,
        };
        self.regs.write(Register::Svr, svr.encode());
        self.regs.write(Register::Tpr, TPR_ACCEPT_ALL);
        self.regs.write(Register::LvtLint0, cfg.lint0.encode());
        self.regs.write(Register::LvtLint1, cfg.lint1.encode());
        self.regs.write(Register::LvtTimer, LVT_MASKED_ONLY);
        if version.has_lvt_perf() {
            self.regs.write(Register::LvtPerf, LVT_MASKED_ONLY);
        }
        if version.has_lvt_thermal() {
            self.regs.write(Register::LvtThermal, LVT_MASKED_ONLY);
        }
        if version.has_lvt_cmci() {
            self.regs.write(Register::LvtCmci, LVT_MASKED_ONLY);
        }
        self.regs
            .write(Register::LvtError, LvtError { vector: error_vector, masked: false }.encode());
        Ok(self.read_error())
    }

    /// Reads and clears the error status: the ESR must be written (with 0)
    /// before it is read, which latches the errors logged since the last
    /// write.
    pub fn read_error(&mut self) -> EsrFlags {
        self.regs.write(Register::Esr, 0);
        EsrFlags::from_raw(self.regs.read(Register::Esr))
    }

    fn start_counting(
        &mut self,
        vector: u8,
        mode: TimerMode,
        divide: TimerDivide,
        count: u32,
    ) -> Result<(), LapicError> {
        let vector = self::vector(vector)?;
        if count == 0 {
            return Err(LapicError::ZeroInitialCount);
        }
        // Divide and LVT first: writing the initial count starts the timer,
        // so everything it depends on must already be in place.
        self.regs.write(Register::TimerDivide, divide.encode());
        self.regs.write(Register::LvtTimer, LvtTimer { vector, mode, masked: false }.encode());
        self.regs.write(Register::TimerInitialCount, count);
        Ok(())
    }

    /// Starts a periodic timer firing `vector` every
    /// `initial_count * divide.divisor()` bus-clock ticks.
    pub fn start_periodic(
        &mut self,
        vector: u8,
        divide: TimerDivide,
        initial_count: u32,
    ) -> Result<(), LapicError> {
        self.start_counting(vector, TimerMode::Periodic, divide, initial_count)
    }

    /// Switches the LVT timer to TSC-deadline mode with `vector`.
    ///
    /// Only the LVT is written; the kernel then writes `IA32_TSC_DEADLINE`
    /// (MSR 0x6E0) itself, after an `mfence` so the LVT write is ordered
    /// first. Requires `CPUID.01H:ECX[24]`.
    pub fn arm_tsc_deadline(&mut self, vector: u8) -> Result<(), LapicError> {
        let vector = self::vector(vector)?;
        let lvt = LvtTimer { vector, mode: TimerMode::TscDeadline, masked: false };
        self.regs.write(Register::LvtTimer, lvt.encode());
        Ok(())
    }

    /// Stops a one-shot/periodic timer: masks the LVT, then zeroes the
    /// initial count (which halts counting). In TSC-deadline mode the kernel
    /// must also write 0 to `IA32_TSC_DEADLINE`.
    pub fn stop_timer(&mut self) {
        self.mask_timer();
        self.regs.write(Register::TimerInitialCount, 0);
    }

    /// Sets the LVT timer mask bit, preserving vector and mode.
    pub fn mask_timer(&mut self) {
        let lvt = self.regs.read(Register::LvtTimer);
        self.regs.write(Register::LvtTimer, lvt | LVT_MASKED);
    }

    /// The timer's current count (for calibration).
    pub fn current_count(&mut self) -> u32 {
        self.regs.read(Register::TimerCurrentCount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::DeliveryStatus;
    use crate::fake::{Event, FakeError, FakeLapic};
    use crate::lvt::{EsrFlags, LVT_MASKED};
    use crate::signal::Polarity;

    const INIT: LocalInit = LocalInit {
        spurious_vector: 0xFF,
        error_vector: 0xFE,
        lint0: LvtLocal::masked(),
        lint1: LvtLocal::nmi(),
    };

    fn lapic(mode: LapicMode, id: u32) -> Lapic<FakeLapic> {
        Lapic::new(FakeLapic::new(mode, ApicId::new(id)))
    }

    fn events(l: &Lapic<FakeLapic>) -> &[Event] {
        l.registers().events()
    }

    #[test]
    fn id_decodes_per_mode() {
        let mut x = lapic(LapicMode::XApic, 3);
        assert_eq!(x.registers().get(Register::Id), 0x0300_0000);
        assert_eq!(x.id(), ApicId::new(3));
        let mut x2 = lapic(LapicMode::X2Apic, 257);
        assert_eq!(x2.id(), ApicId::new(257));
    }

    #[test]
    fn eoi_writes_zero() {
        for mode in [LapicMode::XApic, LapicMode::X2Apic] {
            let mut l = lapic(mode, 1);
            l.eoi();
            assert_eq!(events(&l), [Event::Write(Register::Eoi, 0)]);
        }
    }

    #[test]
    fn enable_sequence_order() {
        for mode in [LapicMode::XApic, LapicMode::X2Apic] {
            let mut l = lapic(mode, 1);
            assert_eq!(l.enable(INIT), Ok(EsrFlags::default()));
            let f = l.registers();
            let svr = f.first_write_to(Register::Svr).unwrap();
            for lvt in
                [Register::LvtLint0, Register::LvtLint1, Register::LvtError, Register::LvtTimer]
            {
                assert!(svr < f.first_write_to(lvt).unwrap(), "SVR enable must precede {lvt:?}");
            }
            assert_eq!(f.get(Register::Svr), 0x1FF);
            assert_eq!(f.get(Register::Tpr), 0);
            assert_eq!(f.get(Register::LvtLint0), LVT_MASKED);
            assert_eq!(f.get(Register::LvtLint1), 0x400, "LINT1 = NMI, unmasked");
            assert_eq!(f.get(Register::LvtError), 0xFE);
            assert_ne!(f.get(Register::LvtTimer) & LVT_MASKED, 0);
            assert_ne!(f.get(Register::LvtCmci) & LVT_MASKED, 0);
            // Last two accesses: ESR write then ESR read.
            let tail = &f.events()[f.events().len() - 2..];
            assert_eq!(tail, [Event::Write(Register::Esr, 0), Event::Read(Register::Esr)]);
        }
    }

    #[test]
    fn enable_writes_the_lint_pins_it_is_given() {
        let mut l = lapic(LapicMode::X2Apic, 1);
        let lint0 = LvtLocal { polarity: Polarity::ActiveLow, ..LvtLocal::nmi() };
        l.enable(LocalInit { lint0, lint1: LvtLocal::masked(), ..INIT }).unwrap();
        assert_eq!(l.registers().get(Register::LvtLint0), 0x2400, "LINT0 = NMI, active low");
        assert_eq!(l.registers().get(Register::LvtLint1), LVT_MASKED);
    }

    #[test]
    fn enable_skips_lvts_the_version_does_not_have() {
        let mut fake = FakeLapic::new(LapicMode::XApic, ApicId::new(0));
        fake.set(Register::Version, 0x0003_0014); // max LVT 3: no perf/thermal/CMCI
        let mut l = Lapic::new(fake);
        l.enable(INIT).unwrap();
        for reg in [Register::LvtPerf, Register::LvtThermal, Register::LvtCmci] {
            assert_eq!(l.registers().first_write_to(reg), None, "{reg:?}");
        }
    }

    #[test]
    fn enable_rejects_illegal_vectors_before_any_access() {
        let mut l = lapic(LapicMode::XApic, 0);
        assert_eq!(
            l.enable(LocalInit { spurious_vector: 7, ..INIT }),
            Err(LapicError::IllegalVector(7))
        );
        assert_eq!(
            l.enable(LocalInit { error_vector: 15, ..INIT }),
            Err(LapicError::IllegalVector(15))
        );
        assert!(events(&l).is_empty());
    }

    #[test]
    fn esr_is_written_before_read_and_reports_latched_errors() {
        let mut l = lapic(LapicMode::X2Apic, 0);
        l.registers_mut().inject_errors(EsrFlags::SEND_ILLEGAL_VECTOR);
        let esr = l.read_error();
        assert!(esr.send_illegal_vector());
        assert_eq!(events(&l), [Event::Write(Register::Esr, 0), Event::Read(Register::Esr)]);
        assert!(l.read_error().is_empty(), "write cleared the latch");
    }

    #[test]
    #[should_panic(expected = "EsrReadWithoutWrite")]
    fn fake_rejects_esr_read_without_write() {
        let mut fake = FakeLapic::new(LapicMode::XApic, ApicId::new(0));
        fake.read(Register::Esr);
    }

    #[test]
    fn periodic_timer_programs_divide_and_lvt_before_count() {
        for mode in [LapicMode::XApic, LapicMode::X2Apic] {
            let mut l = lapic(mode, 0);
            l.start_periodic(0x30, TimerDivide::By16, 100_000).unwrap();
            assert_eq!(
                events(&l),
                [
                    Event::Write(Register::TimerDivide, 0b0011),
                    Event::Write(Register::LvtTimer, 0x0002_0030),
                    Event::Write(Register::TimerInitialCount, 100_000),
                ]
            );
        }
    }

    #[test]
    fn timer_refuses_zero_counts_and_illegal_vectors_before_any_access() {
        let mut l = lapic(LapicMode::XApic, 0);
        assert_eq!(l.start_periodic(0x31, TimerDivide::By1, 0), Err(LapicError::ZeroInitialCount));
        assert_eq!(l.start_periodic(2, TimerDivide::By1, 1), Err(LapicError::IllegalVector(2)));
        assert!(events(&l).is_empty());
    }

    #[test]
    fn tsc_deadline_sets_lvt_mode_only() {
        let mut l = lapic(LapicMode::X2Apic, 0);
        l.arm_tsc_deadline(0xEF).unwrap();
        assert_eq!(events(&l), [Event::Write(Register::LvtTimer, 0x0004_00EF)]);
    }

    #[test]
    fn stop_and_mask_timer() {
        let mut l = lapic(LapicMode::XApic, 0);
        l.start_periodic(0x30, TimerDivide::By2, 1000).unwrap();
        l.registers_mut().clear_events();
        l.stop_timer();
        assert_eq!(
            events(&l),
            [
                Event::Read(Register::LvtTimer),
                Event::Write(Register::LvtTimer, 0x0003_0030),
                Event::Write(Register::TimerInitialCount, 0),
            ]
        );
        assert_eq!(l.current_count(), 0);
        // Masking a masked timer leaves it masked.
        l.mask_timer();
        assert_eq!(l.registers_mut().read(Register::LvtTimer), 0x0003_0030);
    }

    #[test]
    fn current_count_reads_the_register() {
        let mut l = lapic(LapicMode::X2Apic, 0);
        l.registers_mut().set(Register::TimerCurrentCount, 4242);
        assert_eq!(l.current_count(), 4242);
        assert_eq!(events(&l), [Event::Read(Register::TimerCurrentCount)]);
    }

    #[test]
    fn send_in_xapic_puts_destination_in_high_bits() {
        let mut l = lapic(LapicMode::XApic, 0);
        l.send(Ipi::fixed(0x40).to(ApicId::new(3))).unwrap();
        assert_eq!(events(&l), [Event::Icr(IcrValue::XApic { high: 0x0300_0000, low: 0x4040 })]);
        assert_eq!(
            l.send(Ipi::fixed(0x40).to(ApicId::new(257))),
            Err(IcrError::DestinationUnreachableInXApic(ApicId::new(257)))
        );
        assert_eq!(events(&l).len(), 1, "failed send touches nothing");
    }

    #[test]
    fn send_in_x2apic_is_one_icr_write_with_32_bit_destination() {
        let mut l = lapic(LapicMode::X2Apic, 0);
        l.send(Ipi::fixed(0x40).to(ApicId::new(257))).unwrap();
        assert_eq!(events(&l), [Event::Icr(IcrValue::X2Apic((257 << 32) | 0x4040))]);
    }

    #[test]
    fn ap_startup_sequence_in_both_modes() {
        for mode in [LapicMode::XApic, LapicMode::X2Apic] {
            let mut l = lapic(mode, 0);
            let ap = ApicId::new(2);
            for ipi in
                [Ipi::init_assert(), Ipi::init_deassert(), Ipi::startup(0x08), Ipi::startup(0x08)]
            {
                let status = l.send(ipi.to(ap)).unwrap();
                let expected = if mode == LapicMode::XApic {
                    DeliveryStatus::Idle
                } else {
                    DeliveryStatus::NotPolled
                };
                assert_eq!(status, expected, "{mode:?}");
            }
            let icrs = events(&l).iter().filter(|e| matches!(e, Event::Icr(_))).count();
            assert_eq!(icrs, 4);
            let polls = events(&l).iter().filter(|e| **e == Event::WaitIcrIdle).count();
            // xAPIC: a bounded poll before and after each bring-up IPI; x2APIC has no bit.
            assert_eq!(polls, if mode == LapicMode::XApic { 8 } else { 0 }, "{mode:?}");
        }
    }

    #[test]
    fn spurious_vector_is_not_in_service_and_needs_no_eoi() {
        // The spurious vector never sets an ISR bit; a handler that EOIs
        // would retire whatever real interrupt is in service.
        let mut l = lapic(LapicMode::X2Apic, 0);
        l.enable(INIT).unwrap();
        assert!(!l.is_in_service(INIT.spurious_vector));
        l.registers_mut().set(Register::Isr(Bank::for_vector(0x41)), Bank::bit_for_vector(0x41));
        assert!(l.is_in_service(0x41));
        assert!(!l
            .registers()
            .events()
            .iter()
            .any(|e| matches!(e, Event::Write(Register::Eoi, _))));
    }

    #[test]
    fn fake_rejects_mode_illegal_accesses() {
        let x2 = FakeLapic::new(LapicMode::X2Apic, ApicId::new(0));
        assert_eq!(
            x2.check_write(Register::IcrHigh, 0),
            Err(FakeError::Absent(Register::IcrHigh, LapicMode::X2Apic))
        );
        assert_eq!(
            x2.check_read(Register::Dfr),
            Err(FakeError::Absent(Register::Dfr, LapicMode::X2Apic))
        );
        assert_eq!(x2.check_read(Register::Eoi), Err(FakeError::NotReadable(Register::Eoi)));
        assert_eq!(
            x2.check_write(Register::Eoi, 1),
            Err(FakeError::NonZeroWrite(Register::Eoi, 1))
        );
        assert_eq!(x2.check_write(Register::Id, 0), Err(FakeError::NotWritable(Register::Id)));
        assert_eq!(
            x2.check_write(Register::IcrLow, 0),
            Err(FakeError::IcrThroughPlainWrite(Register::IcrLow))
        );
        let xa = IcrValue::XApic { high: 0, low: 0x4040 };
        assert_eq!(x2.check_icr(xa), Err(FakeError::WrongIcrFormat(xa)));
        let status = IcrValue::X2Apic(0x4040 | 1 << 12);
        assert_eq!(x2.check_icr(status), Err(FakeError::IcrReservedBits(status)));
        let reserved = IcrValue::X2Apic(0x4040 | 1 << 20);
        assert_eq!(x2.check_icr(reserved), Err(FakeError::IcrReservedBits(reserved)));

        let x = FakeLapic::new(LapicMode::XApic, ApicId::new(0));
        assert_eq!(
            x.check_write(Register::SelfIpi, 0x40),
            Err(FakeError::Absent(Register::SelfIpi, LapicMode::XApic))
        );
        let wide = IcrValue::X2Apic(0x4040);
        assert_eq!(x.check_icr(wide), Err(FakeError::WrongIcrFormat(wide)));
        let low_dest = IcrValue::XApic { high: 0x03, low: 0x4040 };
        assert_eq!(x.check_icr(low_dest), Err(FakeError::IcrReservedBits(low_dest)));
        assert_eq!(
            x.check_write(Register::TimerCurrentCount, 1),
            Err(FakeError::NotWritable(Register::TimerCurrentCount))
        );
    }

    #[test]
    #[should_panic(expected = "Absent(IcrHigh")]
    fn fake_panics_on_icr_high_in_x2apic() {
        let mut fake = FakeLapic::new(LapicMode::X2Apic, ApicId::new(0));
        fake.write(Register::IcrHigh, 0);
    }

    #[test]
    #[should_panic(expected = "WrongIcrFormat")]
    fn fake_panics_on_64_bit_icr_in_xapic() {
        let mut fake = FakeLapic::new(LapicMode::XApic, ApicId::new(0));
        fake.write_icr(IcrValue::X2Apic(0x4040));
    }

    #[test]
    fn every_encodable_ipi_is_accepted_by_the_fake() {
        let messages = [
            Ipi::fixed(0x40),
            Ipi::nmi(),
            Ipi::init_assert(),
            Ipi::init_deassert(),
            Ipi::startup(9),
        ];
        for mode in [LapicMode::XApic, LapicMode::X2Apic] {
            let mut l = lapic(mode, 0);
            for m in messages {
                for ipi in [m.to(ApicId::new(254)), m.to_self(), m.to_all(), m.to_all_but_self()] {
                    // Either refused by the encoder, or valid for the hardware.
                    let _ = l.send(ipi);
                }
            }
            assert!(events(&l).len() >= 10);
        }
    }
}
