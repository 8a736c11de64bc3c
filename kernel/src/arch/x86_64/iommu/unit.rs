//! One remapping hardware unit: capability checks, the enabling sequence through the global
//! command register, queued invalidation of its interrupt entry cache and fault records.

use keel_iommu::queue;
use keel_iommu::regs::{
    self, offset, Capability, ExtendedCapability, FaultRecord, FaultStatus, GlobalBit,
};
use keel_iommu::sequence::{self, SequenceError};

use super::queue::{InvalidationQueue, QueueError};
use super::registers::Registers;

/// Why a unit could not be used or enabled.
#[derive(Clone, Copy, Debug)]
pub enum UnitError {
    /// The DRHD's register base is 0 or not page-aligned.
    BadRegisterBase,
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
        if register_base == 0 || register_base & 0xFFF != 0 {
            return Err(UnitError::BadRegisterBase);
        }
        let regs = Registers::map(register_base, pages);
        let capability = Capability(regs.read64(offset::CAPABILITY));
        let extended = ExtendedCapability(regs.read64(offset::EXTENDED_CAPABILITY));
        let version = regs.read32(offset::VERSION);
        log::info!(
            "iommu: unit at {register_base:#x}: version {}.{} cap {:#x} ecap {:#x}",
            (version >> 4) & 0xF,
            version & 0xF,
            capability.0,
            extended.0
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

    /// Enables interrupt remapping with the table at `irta` through the pure crate's
    /// sequence (`keel_iommu::sequence::enable`: VT-d spec 6.5.2, 10.4.4/10.4.5, 10.4.22/23,
    /// 10.4.29), the global interrupt-entry-cache invalidation going through this unit's
    /// queue once it runs.
    pub fn enable(&mut self, irta: u64) -> Result<(), UnitError> {
        self.report_faults("before enabling");
        self.queue.reset();
        let iqa = self.queue.address_register();
        let Unit { regs, queue, register_base, .. } = self;
        let found = sequence::enable(regs, iqa, irta, |r: &mut Registers| {
            queue.submit(r, queue::iec(None))
        })
        .map_err(|e| match e {
            SequenceError::CommandTimeout(bit) => UnitError::CommandTimeout(bit),
            SequenceError::Invalidation(q) => UnitError::Queue(q),
        })?;
        if found.translation {
            log::warn!(
                "iommu: unit {register_base:#x}: firmware left DMA translation on; left as is"
            );
        }
        if found.interrupt_remapping || found.queued_invalidation {
            log::warn!("iommu: unit {register_base:#x}: firmware left IR {} / QI {} on; turned off before enabling", found.interrupt_remapping, found.queued_invalidation);
        }
        if found.queue_stuck {
            log::warn!(
                "iommu: unit {register_base:#x}: firmware's invalidation queue did not drain"
            );
        }
        Ok(())
    }

    /// Invalidates the cached copy of one IRTE (spec 6.5.2.7, G = 1, IM = 0).
    pub fn invalidate_entry(&mut self, index: u16) -> Result<(), UnitError> {
        self.queue.submit(&self.regs, queue::iec(Some((index, 0)))).map_err(UnitError::Queue)
    }

    /// Invalidation submissions completed so far.
    pub fn invalidations(&self) -> u64 {
        self.queue.completed
    }

    /// Reads, hands over and clears every recorded fault (`keel_iommu::sequence`).
    pub fn collect_faults(&mut self, mut sink: impl FnMut(Fault)) -> FaultStatus {
        sequence::collect_faults(&mut self.regs, self.capability, |record, slot| {
            sink(Fault { record, slot })
        })
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
