//! One remapping hardware unit: capability checks, the enabling sequence through the global
//! command register, queued invalidation of its interrupt entry cache and fault records.

use keel_iommu::regs::{self, offset, Capability, ExtendedCapability, FaultRecord, FaultStatus, GlobalBit};
use keel_iommu::queue;

use super::queue::{InvalidationQueue, QueueError};
use super::registers::Registers;

/// How long a global command may take to show in the status register.
const COMMAND_TIMEOUT_NS: u64 = 100_000_000;
/// FECTL bit 31 (IM): fault events do not raise an interrupt; Keel polls the records.
const FAULT_EVENT_MASKED: u32 = 1 << 31;

/// Why a unit could not be used or enabled.
#[derive(Clone, Copy, Debug)]
pub enum UnitError {
    /// ECAP.IR is clear: the unit cannot remap interrupts.
    NoInterruptRemapping,
    /// ECAP.QI is clear: the interrupt entry cache can only be invalidated through the queue.
    NoQueuedInvalidation,
    /// The LAPICs run in x2APIC mode but ECAP.EIM is clear (no 32-bit destinations).
    NoExtendedInterruptMode,
    /// A global command did not show in GSTS in time.
    CommandTimeout(GlobalBit),
    /// The invalidation queue failed.
    Queue(QueueError),
}

/// A fault the unit recorded (decoded from a fault-recording register).
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    pub record: FaultRecord,
    pub slot: usize,
}

pub struct Unit {
    pub register_base: u64,
    regs: Registers,
    pub capability: Capability,
    pub extended: ExtendedCapability,
    queue: InvalidationQueue,
}

impl Unit {
    /// Maps the unit and checks that it can remap interrupts in the LAPICs' mode.
    pub fn probe(register_base: u64, pages: u32, x2apic: bool) -> Result<Unit, UnitError> {
        let regs = Registers::map(register_base, pages);
        let capability = Capability(regs.read64(offset::CAPABILITY));
        let extended = ExtendedCapability(regs.read64(offset::EXTENDED_CAPABILITY));
        let version = regs.read32(offset::VERSION);
        log::info!(
            "iommu: unit at {register_base:#x}: version {}.{} cap {:#x} ecap {:#x}",
            (version >> 4) & 0xF, version & 0xF, capability.0, extended.0
        );
        if !extended.interrupt_remapping() {
            return Err(UnitError::NoInterruptRemapping);
        }
        if !extended.queued_invalidation() {
            return Err(UnitError::NoQueuedInvalidation);
        }
        if x2apic && !extended.extended_interrupt_mode() {
            return Err(UnitError::NoExtendedInterruptMode);
        }
        let queue = InvalidationQueue::new().map_err(UnitError::Queue)?;
        Ok(Unit { register_base, regs, capability, extended, queue })
    }

    /// IRTA_REG as the unit holds it.
    pub fn irta(&self) -> u64 {
        self.regs.read64(offset::IRT_ADDRESS)
    }

    pub fn status(&self) -> u32 {
        self.regs.read32(offset::GLOBAL_STATUS)
    }

    /// Issues one global command and waits for its status (spec 10.4.4: one bit changed per
    /// write, the one-shot status bits not echoed back).
    fn command(&self, bit: GlobalBit, set: bool) -> Result<(), UnitError> {
        let value = bit.command(self.status(), set);
        self.regs.write32(offset::GLOBAL_COMMAND, value);
        // One-shot commands (SIRTP) report completion by setting their status bit.
        let reached = crate::time::spin_until(0, COMMAND_TIMEOUT_NS, || bit.reached(self.status(), set));
        if reached { Ok(()) } else { Err(UnitError::CommandTimeout(bit)) }
    }

    /// Turns off what firmware left on (interrupt remapping, queued invalidation) so the
    /// enabling sequence starts from a known state (spec 10.4.4: IRE and QIE are cleared
    /// before the table or queue they use is replaced).
    fn quiesce(&mut self) -> Result<(), UnitError> {
        let status = self.status();
        if GlobalBit::TranslationEnable.reached(status, true) {
            log::warn!("iommu: unit {:#x}: firmware left DMA translation on; left as is", self.register_base);
        }
        if GlobalBit::InterruptRemapping.reached(status, true) {
            log::warn!("iommu: unit {:#x}: firmware left interrupt remapping on; disabling first", self.register_base);
            self.command(GlobalBit::InterruptRemapping, false)?;
        }
        if GlobalBit::QueuedInvalidation.reached(self.status(), true) {
            // The queue must be drained (IQH == IQT) before QIE is cleared (spec 10.4.4).
            let drained = crate::time::spin_until(0, COMMAND_TIMEOUT_NS, || {
                self.regs.read64(offset::IQ_HEAD) == self.regs.read64(offset::IQ_TAIL)
            });
            if !drained {
                log::warn!("iommu: unit {:#x}: firmware's invalidation queue did not drain", self.register_base);
            }
            self.command(GlobalBit::QueuedInvalidation, false)?;
        }
        Ok(())
    }

    /// The enabling sequence (spec 6.5.2 and 10.4.4/10.4.5/10.4.29): queued invalidation on,
    /// table pointer set (SIRTP, then a global interrupt-entry-cache invalidation: the unit
    /// may hold entries of a previous table), compatibility-format interrupts blocked (CFI
    /// clear: a device left in compatibility format must fault, not bypass the table), then
    /// IRE.
    pub fn enable(&mut self, irta: u64) -> Result<(), UnitError> {
        self.quiesce()?;
        self.regs.write32(offset::FAULT_EVENT_CONTROL, FAULT_EVENT_MASKED);
        self.report_faults("before enabling");
        // Spec 10.4.22/10.4.23: IQT is set to 0 and IQA programmed while QIE is clear.
        self.queue.reset();
        self.regs.write64(offset::IQ_TAIL, 0);
        self.regs.write64(offset::IQ_ADDRESS, self.queue.address_register());
        self.command(GlobalBit::QueuedInvalidation, true)?;
        self.regs.write64(offset::IRT_ADDRESS, irta);
        self.command(GlobalBit::SetInterruptTablePointer, true)?;
        self.invalidate_all()?;
        if GlobalBit::CompatibilityFormat.reached(self.status(), true) {
            self.command(GlobalBit::CompatibilityFormat, false)?;
        }
        self.command(GlobalBit::InterruptRemapping, true)?;
        Ok(())
    }

    /// Global interrupt-entry-cache invalidation (spec 6.5.2.7, G = 0).
    pub fn invalidate_all(&mut self) -> Result<(), UnitError> {
        self.queue.submit(&self.regs, queue::iec(None)).map_err(UnitError::Queue)
    }

    /// Invalidates the cached copy of one IRTE (spec 6.5.2.7, G = 1, IM = 0).
    pub fn invalidate_entry(&mut self, index: u16) -> Result<(), UnitError> {
        self.queue.submit(&self.regs, queue::iec(Some((index, 0)))).map_err(UnitError::Queue)
    }

    /// Invalidation submissions completed so far.
    pub fn invalidations(&self) -> u64 {
        self.queue.completed
    }

    /// Reads every recorded fault, logs it and clears it (spec 7.3.1 and 10.4.14: F is
    /// write-1-to-clear in the upper quadword; PPF clears when no record holds a fault).
    pub fn collect_faults(&mut self, mut sink: impl FnMut(Fault)) -> FaultStatus {
        let status = FaultStatus(self.regs.read32(offset::FAULT_STATUS));
        if status.pending() {
            let count = self.capability.fault_recording_count();
            let base = self.capability.fault_recording_offset();
            for i in 0..count {
                let slot = (status.first_record() + i) % count;
                let at = base + slot * 16;
                let low = self.regs.read64(at);
                let high = self.regs.read64(at + 8);
                let Some(record) = FaultRecord::decode(low, high) else { continue };
                sink(Fault { record, slot });
                self.regs.write64(at + 8, regs::FAULT_RECORD_FAULT);
            }
        }
        if status.clear_value() != 0 {
            self.regs.write32(offset::FAULT_STATUS, status.clear_value());
        }
        status
    }

    pub fn report_faults(&mut self, when: &str) -> usize {
        let base = self.register_base;
        let mut n = 0;
        let status = self.collect_faults(|f| {
            n += 1;
            log::warn!(
                "iommu: unit {base:#x} fault ({when}): reason {:#x} ({}) source {:#06x} index {} (record {})",
                f.record.reason, regs::fault_reason(f.record.reason), f.record.source_id, f.record.interrupt_index, f.slot
            );
        });
        if status.overflow() {
            log::warn!("iommu: unit {base:#x}: fault records overflowed ({when})");
        }
        n
    }
}
