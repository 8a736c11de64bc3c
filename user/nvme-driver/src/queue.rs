//! One submission / completion queue pair in this process's DMA pages.

use core::sync::atomic::{fence, Ordering};

use keel_nvme::command::{Command, ENTRY_SIZE as SQE};
use keel_nvme::completion::{Completion, ENTRY_SIZE as CQE};
use keel_nvme::queue::{CompletionRing, SubmissionRing};
use keel_nvme::regs;
use keel_rt::util::Mmio;

/// A queue pair: both rings live in pages this process mapped and the device reaches by
/// IOVA; the doorbells are in BAR 0.
pub struct QueuePair {
    qid: u16,
    entries: u16,
    sq_va: u64,
    cq_va: u64,
    sq: SubmissionRing,
    cq: CompletionRing,
    sq_doorbell: usize,
    cq_doorbell: usize,
    next_cid: u16,
    /// Completions taken from the ring (by their phase tag), and those with a non-zero
    /// status.
    pub completions: u64,
    pub errors: u64,
}

impl QueuePair {
    /// Queue `qid` with `entries` slots each at `sq_va` and `cq_va` (zeroed pages).
    pub fn new(qid: u16, entries: u16, sq_va: u64, cq_va: u64, stride: u64) -> QueuePair {
        QueuePair {
            qid,
            entries,
            sq_va,
            cq_va,
            sq: SubmissionRing::new(entries).expect("ring of at least 2"),
            cq: CompletionRing::new(entries).expect("ring of at least 2"),
            sq_doorbell: regs::sq_tail_doorbell(qid, stride) as usize,
            cq_doorbell: regs::cq_head_doorbell(qid, stride) as usize,
            next_cid: 0,
            completions: 0,
            errors: 0,
        }
    }

    /// Slots in each ring.
    pub fn entries(&self) -> u16 {
        self.entries
    }

    /// The queue's id.
    pub fn qid(&self) -> u16 {
        self.qid
    }

    /// Passes of the completion ring so far.
    pub fn wraps(&self) -> u64 {
        self.cq.wraps()
    }

    /// Writes `make(cid)` into the next slot without ringing the doorbell; returns the
    /// command identifier, or `None` when the ring is full.
    pub fn queue(&mut self, make: impl FnOnce(u16) -> Command) -> Option<u16> {
        let (slot, _) = self.sq.push()?;
        let cid = self.next_cid;
        self.next_cid = self.next_cid.wrapping_add(1);
        let bytes = make(cid).to_bytes();
        let at = (self.sq_va + slot as u64 * SQE as u64) as *mut [u8; SQE];
        // SAFETY: `at` is slot `slot` (< entries) of the submission page this process
        // mapped for the queue; the controller only reads slots past the doorbell's tail.
        unsafe { at.write_volatile(bytes) };
        Some(cid)
    }

    /// Tells the controller about every queued command.
    pub fn ring_doorbell(&self, bar: &Mmio) {
        // The entries must be in memory before the controller can fetch them.
        fence(Ordering::SeqCst);
        bar.write(self.sq_doorbell, self.sq.tail() as u32);
    }

    /// The next completion if the controller has posted it (by its phase tag); moves the
    /// head doorbell past it.
    pub fn take(&mut self, bar: &Mmio) -> Option<Completion> {
        let c = self.take_quietly()?;
        self.release_head(bar);
        Some(c)
    }

    /// The next completion if the controller has posted it, without telling the controller:
    /// a batch is taken this way, then released with one [`release_head`](Self::release_head)
    /// (each doorbell write is a trip to the device, and under emulation one into QEMU's
    /// device lock; Linux's driver also writes the head once per batch).
    pub fn take_quietly(&mut self) -> Option<Completion> {
        let at = (self.cq_va + self.cq.head() as u64 * CQE as u64) as *const [u8; CQE];
        // SAFETY: `at` is slot `head` (< entries) of the completion page this process
        // mapped for the queue; the controller writes it by DMA, hence the volatile read.
        let entry = unsafe { at.read_volatile() };
        let c = self.cq.take(&entry)?;
        fence(Ordering::SeqCst);
        self.sq.consumed_up_to(c.sq_head);
        self.completions += 1;
        if !c.succeeded() {
            self.errors += 1;
        }
        Some(c)
    }

    /// Moves the head doorbell past every completion taken so far.
    pub fn release_head(&self, bar: &Mmio) {
        bar.write(self.cq_doorbell, self.cq.head() as u32);
    }

    /// Waits for the next completion until `give_up()` says so (checked every 4,096 polls);
    /// moves the head doorbell past it.
    pub fn poll(&mut self, bar: &Mmio, mut give_up: impl FnMut() -> bool) -> Option<Completion> {
        let mut spins = 0u32;
        loop {
            if let Some(c) = self.take(bar) {
                return Some(c);
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(4096) && give_up() {
                return None;
            }
            core::hint::spin_loop();
        }
    }
}
