//! The remapping unit's programming sequences, generic over the register access so host
//! tests drive them through a recording fake (`sequence_tests.rs`). The kernel supplies MMIO
//! and a clock ([`UnitRegisters`]) and the invalidation queue (memory it owns).

use crate::regs::{offset, Capability, FaultRecord, FaultStatus, GlobalBit, FAULT_RECORD_FAULT};

/// Register access to one unit, plus bounded polling.
pub trait UnitRegisters {
    /// Reads a 32-bit register.
    fn read32(&mut self, offset: usize) -> u32;
    /// Writes a 32-bit register.
    fn write32(&mut self, offset: usize, value: u32);
    /// Reads a 64-bit register.
    fn read64(&mut self, offset: usize) -> u64;
    /// Writes a 64-bit register.
    fn write64(&mut self, offset: usize, value: u64);
    /// Calls `done` until it returns true (then true) or the platform's time limit for a
    /// register handshake passes (then false).
    fn poll(&mut self, done: &mut dyn FnMut(&mut Self) -> bool) -> bool;
}

/// Why a sequence stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceError<E> {
    /// A global command did not show in GSTS in time.
    CommandTimeout(GlobalBit),
    /// The global interrupt-entry-cache invalidation failed.
    Invalidation(E),
}

/// FECTL bit 31 (IM): fault events raise no interrupt; the kernel polls the records.
pub const FAULT_EVENT_MASKED: u32 = 1 << 31;

/// What [`quiesce`] found on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FirmwareState {
    /// DMA translation (TE) was on; it is left alone.
    pub translation: bool,
    /// Interrupt remapping was on and has been turned off.
    pub interrupt_remapping: bool,
    /// Queued invalidation was on and has been turned off.
    pub queued_invalidation: bool,
    /// The firmware's queue had not drained within the time limit.
    pub queue_stuck: bool,
}

/// Issues one global command and waits for its status (VT-d spec 10.4.4: one command per
/// write, GCMD built from GSTS without the one-shot status bits).
pub fn command<R: UnitRegisters, E>(
    regs: &mut R,
    bit: GlobalBit,
    set: bool,
) -> Result<(), SequenceError<E>> {
    let status = regs.read32(offset::GLOBAL_STATUS);
    regs.write32(offset::GLOBAL_COMMAND, bit.command(status, set));
    let mut reached = |r: &mut R| bit.reached(r.read32(offset::GLOBAL_STATUS), set);
    if regs.poll(&mut reached) {
        Ok(())
    } else {
        Err(SequenceError::CommandTimeout(bit))
    }
}

/// Turns off what firmware left on (IRE, then QIE once its queue drained) so that the
/// table and queue can be replaced (spec 10.4.4: they must not change while in use).
pub fn quiesce<R: UnitRegisters, E>(regs: &mut R) -> Result<FirmwareState, SequenceError<E>> {
    let status = regs.read32(offset::GLOBAL_STATUS);
    let mut found = FirmwareState {
        translation: GlobalBit::TranslationEnable.reached(status, true),
        ..FirmwareState::default()
    };
    if GlobalBit::InterruptRemapping.reached(status, true) {
        found.interrupt_remapping = true;
        command(regs, GlobalBit::InterruptRemapping, false)?;
    }
    if GlobalBit::QueuedInvalidation.reached(regs.read32(offset::GLOBAL_STATUS), true) {
        found.queued_invalidation = true;
        let mut drained = |r: &mut R| r.read64(offset::IQ_HEAD) == r.read64(offset::IQ_TAIL);
        found.queue_stuck = !regs.poll(&mut drained);
        command(regs, GlobalBit::QueuedInvalidation, false)?;
    }
    Ok(found)
}

/// The enabling sequence (spec 6.5.2, 10.4.4/10.4.5, 10.4.22/23, 10.4.29): quiesce; mask
/// fault events; IQT = 0 and IQA while QIE is clear, then QIE; IRTA, then SIRTP; a global
/// interrupt-entry-cache invalidation (`invalidate_all`, through the now-running queue: the
/// unit may cache entries of an earlier table); CFI cleared if set (compatibility-format
/// requests must fault, not bypass the table); then IRE.
pub fn enable<R: UnitRegisters, E>(
    regs: &mut R,
    iq_address: u64,
    irt_address: u64,
    invalidate_all: impl FnOnce(&mut R) -> Result<(), E>,
) -> Result<FirmwareState, SequenceError<E>> {
    let found = quiesce(regs)?;
    regs.write32(offset::FAULT_EVENT_CONTROL, FAULT_EVENT_MASKED);
    regs.write64(offset::IQ_TAIL, 0);
    regs.write64(offset::IQ_ADDRESS, iq_address);
    command(regs, GlobalBit::QueuedInvalidation, true)?;
    regs.write64(offset::IRT_ADDRESS, irt_address);
    command(regs, GlobalBit::SetInterruptTablePointer, true)?;
    invalidate_all(regs).map_err(SequenceError::Invalidation)?;
    if GlobalBit::CompatibilityFormat.reached(regs.read32(offset::GLOBAL_STATUS), true) {
        command(regs, GlobalBit::CompatibilityFormat, false)?;
    }
    command(regs, GlobalBit::InterruptRemapping, true)?;
    Ok(found)
}

/// Reads every recorded fault, hands it to `sink` with its record slot and clears it (spec
/// 7.3.1, 10.4.14: F is write-1-to-clear in the upper quadword); then clears the RW1C error
/// bits of FSTS. Returns the fault status as read.
pub fn collect_faults<R: UnitRegisters>(
    regs: &mut R,
    capability: Capability,
    mut sink: impl FnMut(FaultRecord, usize),
) -> FaultStatus {
    let status = FaultStatus(regs.read32(offset::FAULT_STATUS));
    if status.pending() {
        let count = capability.fault_recording_count();
        let base = capability.fault_recording_offset();
        for i in 0..count {
            let slot = (status.first_record() + i) % count;
            let at = base + slot * 16;
            let low = regs.read64(at);
            let high = regs.read64(at + 8);
            let Some(record) = FaultRecord::decode(low, high) else { continue };
            sink(record, slot);
            regs.write64(at + 8, FAULT_RECORD_FAULT);
        }
    }
    if status.clear_value() != 0 {
        regs.write32(offset::FAULT_STATUS, status.clear_value());
    }
    status
}

#[cfg(test)]
#[path = "sequence_tests.rs"]
mod tests;
