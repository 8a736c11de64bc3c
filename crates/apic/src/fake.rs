//! Recording fakes of the LAPIC and IOAPIC for host tests.
//!
//! [`FakeLapic`] implements [`LapicRegisters`] for either mode, keeps a
//! register file, records every access in order, and **panics** on accesses
//! the real hardware would reject (#GP in x2APIC) or that indicate a
//! sequencing bug (ESR read without a preceding write, ICR sent through a
//! plain write). The checks are also exposed as `check_*` functions returning
//! [`FakeError`] so tests can assert on them without panicking.
//!
//! Available under `cfg(test)` and with the `fake` feature; fixed capacity,
//! no allocation.

use crate::icr::{
    IcrValue, ICR_DELIVERY_STATUS_PENDING, X2APIC_ICR_WRITABLE_MASK, XAPIC_ICR_HIGH_WRITABLE_MASK,
    XAPIC_ICR_LOW_WRITABLE_MASK,
};
use crate::id::{ApicId, XApicId};
use crate::ioapic::IoapicRegisters;
use crate::lapic::LapicRegisters;
use crate::lvt::{EsrFlags, Version, LVT_MASKED};
use crate::mode::LapicMode;
use crate::regs::Register;

/// Maximum number of recorded events per fake.
pub const EVENT_CAPACITY: usize = 256;

/// One recorded LAPIC access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A register read.
    Read(Register),
    /// A register write with its value.
    Write(Register, u32),
    /// An ICR send.
    Icr(IcrValue),
    /// A bounded poll of the xAPIC delivery-status bit.
    WaitIcrIdle,
}

/// An access the fake refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FakeError {
    /// The register does not exist in this mode.
    Absent(Register, LapicMode),
    /// Read of a write-only register (e.g. EOI in x2APIC).
    NotReadable(Register),
    /// Write of a read-only register.
    NotWritable(Register),
    /// The ICR must be sent with `write_icr`, not a plain write.
    IcrThroughPlainWrite(Register),
    /// x2APIC requires 0 for EOI and ESR writes.
    NonZeroWrite(Register, u32),
    /// ESR read without a write immediately before it.
    EsrReadWithoutWrite,
    /// ICR format does not match the fake's mode.
    WrongIcrFormat(IcrValue),
    /// ICR with reserved or delivery-status bits set.
    IcrReservedBits(IcrValue),
    /// Delivery status polled in x2APIC mode, which has no such bit.
    NoDeliveryStatus,
}

/// A fake local APIC.
#[derive(Clone, Debug)]
pub struct FakeLapic {
    mode: LapicMode,
    registers: [u32; 64],
    events: [Event; EVENT_CAPACITY],
    len: usize,
    esr_latched: bool,
    pending_errors: u32,
    delivery_stuck: bool,
}

/// Version register the fake reports by default: integrated APIC, 7 LVTs.
pub const FAKE_DEFAULT_VERSION: Version =
    Version { version: 0x15, max_lvt: 6, eoi_broadcast_suppression_supported: false };

impl FakeLapic {
    /// A fake in `mode` with APIC ID `id`, register file at reset values.
    ///
    /// Panics in xAPIC mode if `id` does not fit the 8-bit ID register.
    pub fn new(mode: LapicMode, id: ApicId) -> Self {
        let mut fake = FakeLapic {
            mode,
            registers: [0; 64],
            events: [Event::Read(Register::Id); EVENT_CAPACITY],
            len: 0,
            esr_latched: false,
            pending_errors: 0,
            delivery_stuck: false,
        };
        let id_register = match mode {
            LapicMode::XApic => {
                XApicId::try_from(id).expect("xAPIC fake needs an 8-bit id").to_id_register()
            }
            LapicMode::X2Apic => id.get(),
        };
        fake.set(Register::Id, id_register);
        fake.set(Register::Version, FAKE_DEFAULT_VERSION.encode());
        fake.set(Register::Svr, 0xFF);
        for lvt in [
            Register::LvtCmci,
            Register::LvtTimer,
            Register::LvtThermal,
            Register::LvtPerf,
            Register::LvtLint0,
            Register::LvtLint1,
            Register::LvtError,
        ] {
            fake.set(lvt, LVT_MASKED);
        }
        if mode == LapicMode::XApic {
            fake.set(Register::Dfr, 0xFFFF_FFFF);
        }
        fake
    }

    /// Presets a register without recording an event (test setup).
    pub fn set(&mut self, reg: Register, value: u32) {
        self.registers[reg.slot()] = value;
    }

    /// Peeks a register without recording an event (test assertions).
    pub fn get(&self, reg: Register) -> u32 {
        self.registers[reg.slot()]
    }

    /// Simulates the hardware logging errors; they become visible in the
    /// ESR at the next ESR write.
    pub fn inject_errors(&mut self, errors: u32) {
        self.pending_errors |= errors & EsrFlags::ALL;
    }

    /// Makes the xAPIC delivery-status bit read "send pending" for ever
    /// (`true`) or idle (`false`, the default).
    pub fn stick_delivery_status(&mut self, stuck: bool) {
        self.delivery_stuck = stuck;
    }

    /// Every access so far, in order.
    pub fn events(&self) -> &[Event] {
        &self.events[..self.len]
    }

    /// Forgets recorded events.
    pub fn clear_events(&mut self) {
        self.len = 0;
    }

    /// Position of the first event equal to `event`.
    pub fn position(&self, event: Event) -> Option<usize> {
        self.events().iter().position(|e| *e == event)
    }

    /// Position of the first write to `reg`.
    pub fn first_write_to(&self, reg: Register) -> Option<usize> {
        self.events().iter().position(|e| matches!(e, Event::Write(r, _) if *r == reg))
    }

    fn record(&mut self, event: Event) {
        assert!(self.len < EVENT_CAPACITY, "FakeLapic event log full");
        self.events[self.len] = event;
        self.len += 1;
    }

    /// Whether a read of `reg` is allowed now.
    pub fn check_read(&self, reg: Register) -> Result<(), FakeError> {
        let access = reg.access(self.mode);
        if access == crate::regs::Access::Absent {
            return Err(FakeError::Absent(reg, self.mode));
        }
        if !access.can_read() {
            return Err(FakeError::NotReadable(reg));
        }
        if reg == Register::Esr && !self.esr_latched {
            return Err(FakeError::EsrReadWithoutWrite);
        }
        Ok(())
    }

    /// Whether a plain write of `value` to `reg` is allowed.
    pub fn check_write(&self, reg: Register, value: u32) -> Result<(), FakeError> {
        let access = reg.access(self.mode);
        if access == crate::regs::Access::Absent {
            return Err(FakeError::Absent(reg, self.mode));
        }
        if matches!(reg, Register::IcrLow | Register::IcrHigh) {
            return Err(FakeError::IcrThroughPlainWrite(reg));
        }
        if !access.can_write() {
            return Err(FakeError::NotWritable(reg));
        }
        if self.mode == LapicMode::X2Apic
            && matches!(reg, Register::Eoi | Register::Esr)
            && value != 0
        {
            return Err(FakeError::NonZeroWrite(reg, value));
        }
        Ok(())
    }

    /// Whether `icr` is a valid ICR for this fake's mode.
    pub fn check_icr(&self, icr: IcrValue) -> Result<(), FakeError> {
        match (self.mode, icr) {
            (LapicMode::XApic, IcrValue::XApic { high, low }) => {
                let reserved =
                    (low & !XAPIC_ICR_LOW_WRITABLE_MASK) | (high & !XAPIC_ICR_HIGH_WRITABLE_MASK);
                if reserved != 0 || low & ICR_DELIVERY_STATUS_PENDING != 0 {
                    return Err(FakeError::IcrReservedBits(icr));
                }
                Ok(())
            }
            (LapicMode::X2Apic, IcrValue::X2Apic(value)) => {
                if value & !X2APIC_ICR_WRITABLE_MASK != 0 {
                    return Err(FakeError::IcrReservedBits(icr));
                }
                Ok(())
            }
            _ => Err(FakeError::WrongIcrFormat(icr)),
        }
    }
}

impl LapicRegisters for FakeLapic {
    fn mode(&self) -> LapicMode {
        self.mode
    }

    fn read(&mut self, reg: Register) -> u32 {
        if let Err(e) = self.check_read(reg) {
            panic!("FakeLapic rejected read: {e:?}");
        }
        self.record(Event::Read(reg));
        if reg == Register::Esr {
            self.esr_latched = false;
        }
        self.get(reg)
    }

    fn write(&mut self, reg: Register, value: u32) {
        if let Err(e) = self.check_write(reg, value) {
            panic!("FakeLapic rejected write: {e:?}");
        }
        self.record(Event::Write(reg, value));
        match reg {
            Register::Esr => {
                // The write latches errors logged since the previous write.
                self.set(Register::Esr, self.pending_errors);
                self.pending_errors = 0;
                self.esr_latched = true;
            }
            Register::Eoi => {}
            Register::TimerInitialCount => {
                self.set(Register::TimerInitialCount, value);
                self.set(Register::TimerCurrentCount, value);
            }
            _ => self.set(reg, value),
        }
    }

    fn wait_icr_idle(&mut self) -> bool {
        if self.mode == LapicMode::X2Apic {
            panic!("FakeLapic rejected poll: {:?}", FakeError::NoDeliveryStatus);
        }
        self.record(Event::WaitIcrIdle);
        !self.delivery_stuck
    }

    fn write_icr(&mut self, icr: IcrValue) {
        if let Err(e) = self.check_icr(icr) {
            panic!("FakeLapic rejected ICR: {e:?}");
        }
        self.record(Event::Icr(icr));
        match icr {
            IcrValue::XApic { high, low } => {
                self.set(Register::IcrHigh, high);
                self.set(Register::IcrLow, low);
            }
            IcrValue::X2Apic(value) => {
                // Storage only: the high half lives in the ICR-high slot.
                self.set(Register::IcrLow, value as u32);
                self.registers[Register::IcrHigh.slot()] = (value >> 32) as u32;
            }
        }
    }
}

/// One recorded IOAPIC access (register index via IOREGSEL, data via IOWIN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoEvent {
    /// Read of register `index`.
    Read(u8),
    /// Write of `value` to register `index`.
    Write(u8, u32),
}

/// A fake IOAPIC with a 256-entry indirect register file.
#[derive(Clone, Debug)]
pub struct FakeIoapic {
    registers: [u32; 256],
    events: [IoEvent; EVENT_CAPACITY],
    len: usize,
}

impl FakeIoapic {
    /// A fake with `pins` redirection entries (1..=120), all masked, and
    /// IOAPIC id `id`.
    pub fn new(id: u8, pins: u8) -> Self {
        assert!((1..=crate::ioapic::MAX_PINS).contains(&pins));
        let mut fake =
            FakeIoapic { registers: [0; 256], events: [IoEvent::Read(0); EVENT_CAPACITY], len: 0 };
        fake.registers[usize::from(crate::ioapic::IOAPICID)] = u32::from(id & 0xF) << 24;
        fake.registers[usize::from(crate::ioapic::IOAPICVER)] = 0x20 | u32::from(pins - 1) << 16;
        for pin in 0..pins {
            fake.registers[usize::from(crate::ioapic::redirection_low_index(pin))] = LVT_MASKED;
        }
        fake
    }

    /// Peeks a register without recording.
    pub fn get(&self, index: u8) -> u32 {
        self.registers[usize::from(index)]
    }

    /// Presets a register without recording.
    pub fn set(&mut self, index: u8, value: u32) {
        self.registers[usize::from(index)] = value;
    }

    /// Every access so far, in order.
    pub fn events(&self) -> &[IoEvent] {
        &self.events[..self.len]
    }

    /// Forgets recorded events.
    pub fn clear_events(&mut self) {
        self.len = 0;
    }

    fn record(&mut self, event: IoEvent) {
        assert!(self.len < EVENT_CAPACITY, "FakeIoapic event log full");
        self.events[self.len] = event;
        self.len += 1;
    }
}

impl IoapicRegisters for FakeIoapic {
    fn read(&mut self, index: u8) -> u32 {
        self.record(IoEvent::Read(index));
        self.registers[usize::from(index)]
    }

    fn write(&mut self, index: u8, value: u32) {
        assert!(
            index != crate::ioapic::IOAPICVER && index != crate::ioapic::IOAPICARB,
            "FakeIoapic rejected write to read-only register {index:#x}"
        );
        self.record(IoEvent::Write(index, value));
        self.registers[usize::from(index)] = value;
    }
}
