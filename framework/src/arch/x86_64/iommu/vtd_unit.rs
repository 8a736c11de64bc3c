//! One remapping hardware unit: capability checks, the enabling sequence through the global
//! command register, queued invalidation of its interrupt entry cache and fault records.

use keel_iommu::dma::{self, DmaCapability, DmaFault, TranslationStart};
use keel_iommu::queue;
use keel_iommu::regs::{offset, Capability, ExtendedCapability, FaultRecord, GlobalBit};
use keel_iommu::sequence::{self, SequenceError};

use super::queue::{InvalidationQueue, QueueError};
use super::vtd_registers::Registers;

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
        let base = self.register_base;
        self.collect_all(
            |f| log::warn!("iommu: unit {base:#x}: fault from before enabling: {f:?}"),
            |f| log::warn!("iommu: unit {base:#x}: DMA fault from before enabling: {f:?}"),
        );
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

    /// CAP_REG seen as the DMA-remapping fields.
    pub fn dma_capability(&self) -> DmaCapability {
        DmaCapability(self.capability.0)
    }

    /// RTADDR_REG as the unit holds it.
    pub fn root_table_address(&self) -> u64 {
        self.regs.read64(dma::ROOT_TABLE_ADDRESS)
    }

    /// Points the unit at `root_phys` and turns translation on (`keel_iommu::dma::
    /// enable_translation`), the global context-cache and IOTLB invalidations going through
    /// this unit's queue (which interrupt remapping's enabling already started).
    pub fn enable_translation(&mut self, root_phys: u64) -> Result<TranslationStart, UnitError> {
        let capability = self.dma_capability();
        let Unit { regs, queue, .. } = self;
        dma::enable_translation(regs, root_phys, capability, |r: &mut Registers| {
            for descriptor in super::vtd_dma::global_invalidations(capability) {
                queue.submit(r, descriptor)?;
            }
            Ok(())
        })
        .map_err(|e| match e {
            SequenceError::CommandTimeout(bit) => UnitError::CommandTimeout(bit),
            SequenceError::Invalidation(q) => UnitError::Queue(q),
        })
    }

    /// Reads and clears every fault record, handing interrupt-remapping faults to `ir` and
    /// DMA faults to `dma`; returns whether the records had overflowed (faults were lost).
    /// Bounded by the unit's number of records; allocates nothing.
    pub fn collect_all(
        &mut self,
        mut ir: impl FnMut(FaultRecord),
        mut dma: impl FnMut(DmaFault),
    ) -> bool {
        let status =
            dma::collect_raw_faults(&mut self.regs, self.capability, |low, high, _slot| {
                if let Some(f) = DmaFault::decode(low, high) {
                    dma(f);
                } else if let Some(record) = FaultRecord::decode(low, high) {
                    ir(record);
                }
            });
        status.overflow()
    }

    /// Programs the fault-event interrupt (`vector` to the CPU with `apic_id`) and unmasks
    /// it (FECTL.IM clear); false when the mode cannot name that CPU (it stays masked).
    pub fn enable_fault_events(&mut self, vector: u8, apic_id: u32, extended: bool) -> bool {
        let Some((data, address, upper)) = dma::fault_event_message(vector, apic_id, extended)
        else {
            return false;
        };
        self.regs.write32(dma::FAULT_EVENT_DATA, data);
        self.regs.write32(dma::FAULT_EVENT_ADDRESS, address);
        self.regs.write32(dma::FAULT_EVENT_UPPER_ADDRESS, upper);
        self.regs.write32(offset::FAULT_EVENT_CONTROL, 0);
        true
    }

    /// FECTL as the unit holds it (bit 31: masked).
    pub fn fault_event_control(&self) -> u32 {
        self.regs.read32(offset::FAULT_EVENT_CONTROL)
    }

    /// Queues one descriptor and waits for its completion (a wait descriptor after it).
    pub fn submit(&mut self, descriptor: [u64; 2]) -> Result<(), UnitError> {
        self.queue.submit(&self.regs, descriptor).map_err(UnitError::Queue)
    }

    /// Flushes the write buffer when CAP.RWBF asks for it (after table writes).
    pub fn flush_write_buffer(&mut self) -> Result<(), UnitError> {
        let capability = self.dma_capability();
        dma::flush_write_buffer::<_, QueueError>(&mut self.regs, capability).map(|_| ()).map_err(
            |e| match e {
                SequenceError::CommandTimeout(bit) => UnitError::CommandTimeout(bit),
                SequenceError::Invalidation(q) => UnitError::Queue(q),
            },
        )
    }

    /// Writes `descriptor` at the queue's tail (seen by the unit at [`Self::complete`]).
    pub fn enqueue(&mut self, descriptor: [u64; 2]) {
        self.queue.enqueue(&self.regs, descriptor)
    }

    /// Writes an invalidation wait with a fresh status token at the queue's tail.
    pub fn enqueue_wait(&mut self) {
        self.queue.enqueue_wait()
    }

    /// Moves the tail and waits for the last wait's status write.
    pub fn complete(&mut self) -> Result<(), UnitError> {
        self.queue.complete(&self.regs).map_err(UnitError::Queue)
    }

    /// Invalidation submissions completed so far.
    pub fn invalidations(&self) -> u64 {
        self.queue.completed
    }
}
