//! The invalidation queue of one unit (VT-d spec 6.5.2): a 4-KiB ring of 256 descriptors.
//! Each submission is the descriptor followed by an invalidation wait with a status write
//! (6.5.2.8); completion is the status dword changing to the submission's token, which the
//! unit writes only after every earlier descriptor has been processed.

use core::sync::atomic::{fence, Ordering};

use keel_iommu::queue::{self, Ring};
use keel_iommu::regs::{offset, FaultStatus};

use super::vtd_registers::Registers;
use crate::mm::{frames, phys_to_virt};

/// How long a wait descriptor may take before the unit is declared stuck.
const COMPLETION_TIMEOUT_NS: u64 = 100_000_000;

/// Why an invalidation did not complete.
#[derive(Clone, Copy, Debug)]
pub enum QueueError {
    /// No memory for the ring.
    NoMemory,
    /// The unit reported an invalid descriptor (FSTS.IQE) at this head slot.
    InvalidDescriptor(u32),
    /// The status write never arrived.
    Timeout,
}

pub struct InvalidationQueue {
    ring_phys: u64,
    ring: Ring,
    tail: u32,
    /// A dword the wait descriptors write their token to.
    status_phys: u64,
    token: u32,
    /// Submissions completed (evidence).
    pub completed: u64,
}

impl InvalidationQueue {
    /// Allocates the ring (zeroed) and a status dword.
    pub fn new() -> Result<InvalidationQueue, QueueError> {
        let ring_phys = frames::allocate_zeroed().ok_or(QueueError::NoMemory)?;
        let status_phys = frames::allocate_zeroed().ok_or(QueueError::NoMemory)?;
        Ok(InvalidationQueue {
            ring_phys,
            ring: Ring { entries: 256 },
            tail: 0,
            status_phys,
            token: 0,
            completed: 0,
        })
    }

    /// IQA_REG value: the ring's base with QS = 0 (one page, 256 descriptors).
    pub fn address_register(&self) -> u64 {
        keel_iommu::regs::iq_address(self.ring_phys, 0).expect("frames are page aligned")
    }

    /// The tail restarts at 0 whenever queued invalidation is (re-)enabled: the unit resets
    /// IQH to 0 then (spec 10.4.22).
    pub fn reset(&mut self) {
        self.tail = 0;
    }

    fn write_slot(&mut self, descriptor: [u64; 2]) {
        let slot = phys_to_virt(self.ring_phys + self.ring.register(self.tail)).as_mut_ptr::<u64>();
        // SAFETY: `slot` is a 16-byte descriptor inside the ring page this queue owns; the
        // unit reads only slots before the tail, and this one is past it until IQT moves.
        unsafe {
            slot.write_volatile(descriptor[0]);
            slot.add(1).write_volatile(descriptor[1]);
        }
        self.tail = self.ring.next(self.tail);
    }

    fn status(&self) -> u32 {
        // SAFETY: the status dword is in a frame this queue owns; the unit writes it by DMA.
        unsafe { phys_to_virt(self.status_phys).as_ptr::<u32>().read_volatile() }
    }

    /// Queues `descriptor` plus a wait, moves the tail and polls for the status write.
    pub fn submit(&mut self, regs: &Registers, descriptor: [u64; 2]) -> Result<(), QueueError> {
        self.enqueue(regs, descriptor);
        self.enqueue_wait();
        self.complete(regs)
    }

    /// Writes `descriptor` at the tail (the unit sees it once [`Self::complete`] moves IQT).
    pub fn enqueue(&mut self, regs: &Registers, descriptor: [u64; 2]) {
        let head = self.ring.slot(regs.read64(offset::IQ_HEAD));
        if self.ring.free(head, self.tail) < 2 {
            // Every submission waits for itself, so the ring is empty here unless the unit
            // is stuck; waiting for it in `complete` reports that.
            log::warn!("iommu: invalidation queue full (head {head}, tail {})", self.tail);
        }
        self.write_slot(descriptor);
    }

    /// Writes an invalidation wait with a fresh token at the tail.
    pub fn enqueue_wait(&mut self) {
        self.token = self.token.wrapping_add(1).max(1);
        self.write_slot(
            queue::wait(self.status_phys, self.token).expect("frames are dword aligned"),
        );
    }

    /// Moves IQT past what was enqueued and polls for the last wait's status write.
    pub fn complete(&mut self, regs: &Registers) -> Result<(), QueueError> {
        let token = self.token;
        // The descriptors must be in memory before the unit sees the new tail.
        fence(Ordering::SeqCst);
        regs.write64(offset::IQ_TAIL, self.ring.register(self.tail));
        let done =
            crate::time::spin_until(crate::time::TIGHT_POLL_NS, COMPLETION_TIMEOUT_NS, || {
                self.status() == token
                    || FaultStatus(regs.read32(offset::FAULT_STATUS)).queue_error()
            });
        let status = FaultStatus(regs.read32(offset::FAULT_STATUS));
        if status.queue_error() {
            // Spec 6.5.2.10: the head stays at the bad descriptor; clearing IQE resumes.
            let at = self.ring.slot(regs.read64(offset::IQ_HEAD));
            regs.write32(offset::FAULT_STATUS, status.clear_value());
            return Err(QueueError::InvalidDescriptor(at));
        }
        if !done || self.status() != token {
            return Err(QueueError::Timeout);
        }
        self.completed += 1;
        Ok(())
    }
}
