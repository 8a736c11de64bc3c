//! Safe access to the process's submission/completion ring at `RING_VADDR`.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};

use keel_abi::{
    cq_available, cq_slot, enter_result, sq_pending, sq_slot, CapId, Completion, DmaFaultReport,
    Method, ObjectKind, Request, RingHeader, Status, Submission, CONSOLE_WRITE_MAX, CQ_ENTRIES,
    CQ_OFFSET, RING_VADDR, SQ_ENTRIES, SQ_OFFSET, TIMEOUT_INFINITE,
};

use crate::syscall::cap_enter;

/// Bit 63 of `user_data` marks submissions made by [`Ring::call`]; programs that submit
/// their own entries should keep it clear so their completions are never mistaken for one.
pub const CALL_USER_DATA_TAG: u64 = 1 << 63;

/// Completions [`Ring::call`] can set aside while it waits for its own (one full CQ).
pub const STASH_ENTRIES: usize = CQ_ENTRIES as usize;

/// The process's ring plus the user-side bookkeeping (`user_data` counter, completions set
/// aside by [`Ring::call`]). Obtain it with [`crate::ring`].
pub struct Ring {
    base: usize,
    next_call: u64,
    stash: [Completion; STASH_ENTRIES],
    stash_head: usize,
    stash_len: usize,
}

impl Ring {
    /// The ring of a thread started with `ProcessSpawnThread`: the kernel passes its page's
    /// address in rdi at the thread's entry (the main thread's ring is [`crate::ring`]).
    ///
    /// # Safety
    /// `base` must be the ring page the kernel gave the calling thread, and only that thread
    /// may use the returned `Ring`.
    pub unsafe fn for_thread(base: u64) -> Ring {
        Ring::at(base as usize)
    }

    const fn at(base: usize) -> Ring {
        Ring {
            base,
            next_call: 0,
            stash: [Completion { user_data: 0, status: 0, flags: 0, results: [0; 2] };
                STASH_ENTRIES],
            stash_head: 0,
            stash_len: 0,
        }
    }

    fn header(&self) -> &RingHeader {
        // SAFETY: the kernel maps the ring page read/write at `base` for the life of the
        // process; the header is only accessed through atomics or read-only plain fields.
        unsafe { &*(self.base as *const RingHeader) }
    }

    fn sq_entry(&self, slot: usize) -> *mut Submission {
        (self.base + SQ_OFFSET + slot * core::mem::size_of::<Submission>()) as *mut Submission
    }

    fn cq_entry(&self, slot: usize) -> *const Completion {
        (self.base + CQ_OFFSET + slot * core::mem::size_of::<Completion>()) as *const Completion
    }

    /// Free submission slots right now (0 if the kernel-written `sq_head` is inconsistent).
    pub fn sq_space(&self) -> u32 {
        let h = self.header();
        let head = h.sq_head.load(Ordering::Acquire);
        let tail = h.sq_tail.load(Ordering::Relaxed);
        sq_pending(head, tail).map_or(0, |p| SQ_ENTRIES - p)
    }

    /// Publishes one submission; the kernel consumes it at the next [`Ring::enter`].
    /// `RingFull` if all [`SQ_ENTRIES`] slots are published but not yet consumed, `BadRing`
    /// if the indices are inconsistent.
    pub fn submit(&mut self, sub: Submission) -> Result<(), Status> {
        let h = self.header();
        let head = h.sq_head.load(Ordering::Acquire);
        let tail = h.sq_tail.load(Ordering::Relaxed);
        if sq_pending(head, tail)? == SQ_ENTRIES {
            return Err(Status::RingFull);
        }
        // SAFETY: the slot is inside the mapped ring page and not owned by the kernel (it is
        // between `tail` and `head + SQ_ENTRIES`); Release below orders this write before
        // the kernel can observe the new tail.
        unsafe { ptr::write_volatile(self.sq_entry(sq_slot(tail)), sub) };
        h.sq_tail.store(tail.wrapping_add(1), Ordering::Release);
        Ok(())
    }

    /// Calls `cap_enter(min_complete, timeout_ns)`: the kernel consumes the published
    /// submissions and waits for completions. Returns the number available in the CQ.
    pub fn enter(&mut self, min_complete: u32, timeout_ns: u64) -> Result<u32, Status> {
        enter_result(cap_enter(min_complete as u64, timeout_ns))
    }

    /// Takes one completion straight from the CQ (ignoring the stash).
    fn pop_cq(&mut self) -> Option<Completion> {
        let h = self.header();
        let head = h.cq_head.load(Ordering::Relaxed);
        let tail = h.cq_tail.load(Ordering::Acquire);
        if cq_available(head, tail).ok()? == 0 {
            return None;
        }
        // SAFETY: the slot is inside the mapped page and published (Acquire on cq_tail);
        // the kernel does not reuse it before we advance cq_head.
        let c = unsafe { ptr::read_volatile(self.cq_entry(cq_slot(head))) };
        h.cq_head.store(head.wrapping_add(1), Ordering::Release);
        Some(c)
    }

    /// The oldest completion not yet returned: first those [`Ring::call`] set aside, then
    /// the CQ. `None` if there is none right now (does not enter the kernel).
    pub fn next_completion(&mut self) -> Option<Completion> {
        if self.stash_len > 0 {
            let c = self.stash[self.stash_head];
            self.stash_head = (self.stash_head + 1) % STASH_ENTRIES;
            self.stash_len -= 1;
            return Some(c);
        }
        self.pop_cq()
    }

    /// Completions available without entering the kernel (stash plus CQ).
    pub fn completions_ready(&self) -> u32 {
        let h = self.header();
        let cq = cq_available(h.cq_head.load(Ordering::Relaxed), h.cq_tail.load(Ordering::Acquire))
            .unwrap_or(0);
        cq + self.stash_len as u32
    }

    /// Invokes `method` on `cap` and waits for the answer: submits one entry with a fresh
    /// `user_data` (tagged with [`CALL_USER_DATA_TAG`]), enters with `min_complete = 1` until
    /// its completion arrives, and sets other completions aside for
    /// [`Ring::next_completion`]. A non-`Ok` completion status is returned as `Err`.
    ///
    /// `Err(RingFull)` if the SQ is full, or if more than [`STASH_ENTRIES`] unrelated
    /// completions had to be set aside (the call's own completion then shows up later
    /// through `next_completion`).
    pub fn call(
        &mut self,
        cap: CapId,
        method: Method,
        args: [u64; 4],
    ) -> Result<Completion, Status> {
        self.next_call = self.next_call.wrapping_add(1);
        let user_data = CALL_USER_DATA_TAG | self.next_call;
        self.submit(Submission { cap: cap.0, method: method as u16, flags: 0, args, user_data })?;
        loop {
            let available = self.enter(1, TIMEOUT_INFINITE)?;
            let mut popped = 0u32;
            loop {
                if self.stash_len == STASH_ENTRIES {
                    return Err(Status::RingFull);
                }
                let Some(c) = self.pop_cq() else { break };
                popped += 1;
                if c.user_data == user_data {
                    return c.status().into_result().map(|()| c);
                }
                let slot = (self.stash_head + self.stash_len) % STASH_ENTRIES;
                self.stash[slot] = c;
                self.stash_len += 1;
            }
            if available > 0 && popped == 0 {
                // The kernel says completions exist but the indices disagree: do not spin.
                return Err(Status::BadRing);
            }
        }
    }

    /// [`Ring::call`] with a typed request (arguments packed by [`Request::encode`]).
    pub fn invoke(&mut self, cap: CapId, request: Request) -> Result<Completion, Status> {
        self.call(cap, request.method(), request.args())
    }

    /// Writes all of `bytes` to a Console capability (in chunks of at most 4096 bytes);
    /// returns the number of bytes the kernel reported written.
    pub fn console_write(&mut self, cap: CapId, bytes: &[u8]) -> Result<u64, Status> {
        let mut written = 0;
        for chunk in bytes.chunks(CONSOLE_WRITE_MAX as usize) {
            let req = Request::ConsoleWrite { ptr: chunk.as_ptr() as u64, len: chunk.len() as u64 };
            written += self.invoke(cap, req)?.results[0];
        }
        Ok(written)
    }

    /// `DeviceMemoryDmaMap`: makes `pages` of this process's pages at `vaddr` reachable by
    /// the device of DeviceMemory capability `cap` (writable by it if `device_writes`);
    /// returns the IOVA the device must use. The pages stay pinned until [`Ring::dma_unmap`].
    pub fn dma_map(
        &mut self,
        cap: CapId,
        vaddr: u64,
        pages: u64,
        device_writes: bool,
    ) -> Result<u64, Status> {
        let req = Request::DeviceMemoryDmaMap { vaddr, pages, device_writes };
        self.invoke(cap, req).map(|c| c.results[0])
    }

    /// `DeviceMemoryDmaUnmap`: the device can no longer reach the pages once this returns.
    pub fn dma_unmap(&mut self, cap: CapId, iova: u64, pages: u64) -> Result<(), Status> {
        self.invoke(cap, Request::DeviceMemoryDmaUnmap { iova, pages }).map(|_| ())
    }

    /// `DeviceMemoryDmaFaults`: how many DMA faults the IOMMU recorded for the device while
    /// it was held, and the last one (`None` while there was none).
    pub fn dma_faults(&mut self, cap: CapId) -> Result<(u64, Option<DmaFaultReport>), Status> {
        let c = self.invoke(cap, Request::DeviceMemoryDmaFaults)?;
        Ok((c.results[0], DmaFaultReport::decode(c.results[1])))
    }

    /// `CapCopy`: a second, independently releasable id for the same object.
    pub fn cap_copy(&mut self, cap: CapId) -> Result<CapId, Status> {
        let c = self.invoke(cap, Request::CapCopy)?;
        CapId::from_u64(c.results[0]).ok_or(Status::BadCap)
    }

    /// `CapRelease`: gives the capability up; the id becomes stale.
    pub fn cap_release(&mut self, cap: CapId) -> Result<(), Status> {
        self.invoke(cap, Request::CapRelease).map(|_| ())
    }

    /// `CapIdentify`: the object's kind (`None` if unknown to this ABI) and its
    /// kind-specific word.
    pub fn cap_identify(&mut self, cap: CapId) -> Result<(Option<ObjectKind>, u64), Status> {
        let c = self.invoke(cap, Request::CapIdentify)?;
        let kind = u32::try_from(c.results[0]).ok().and_then(ObjectKind::from_u32);
        Ok((kind, c.results[1]))
    }

    /// `TimerNow`: (ns since boot, TSC).
    pub fn timer_now(&mut self, cap: CapId) -> Result<(u64, u64), Status> {
        let c = self.invoke(cap, Request::TimerNow)?;
        Ok((c.results[0], c.results[1]))
    }

    /// `TimerSleep`: blocks this call until at least `ns` have passed.
    pub fn timer_sleep(&mut self, cap: CapId, ns: u64) -> Result<(), Status> {
        self.invoke(cap, Request::TimerSleep { ns }).map(|_| ())
    }

    /// `InterruptWait`: blocks until the interrupt fires; (count since last wait, TSC of
    /// the first unobserved one).
    pub fn interrupt_wait(&mut self, cap: CapId) -> Result<(u64, u64), Status> {
        let c = self.invoke(cap, Request::InterruptWait)?;
        Ok((c.results[0], c.results[1]))
    }

    /// `InterruptWait` that gives up after `timeout_ns`: `Some((count, tsc))` when the first
    /// completion is this wait's (tagged `user_data`) and `Ok`, `None` on a timeout or any
    /// other first completion (a timed-out wait stays pending in the kernel). `Err` when the
    /// submission or `cap_enter` itself failed.
    pub fn interrupt_wait_within(
        &mut self,
        cap: CapId,
        user_data: u64,
        timeout_ns: u64,
    ) -> Result<Option<(u64, u64)>, Status> {
        let method = Method::InterruptWait as u16;
        self.submit(Submission { cap: cap.0, method, flags: 0, args: [0; 4], user_data })?;
        match self.enter(1, timeout_ns) {
            Ok(n) if n > 0 => {}
            Ok(_) | Err(Status::TimedOut) => return Ok(None),
            Err(s) => return Err(s),
        }
        Ok(self.wait_result(user_data))
    }

    /// `InterruptAcknowledge` then `InterruptWait`, submitted together and entered once
    /// (one system call per interrupt instead of two): the same answers as
    /// [`interrupt_wait_within`](Self::interrupt_wait_within), `Err` also when the
    /// acknowledge failed. An interrupt held pending while the source was masked arrives at
    /// the acknowledge and completes the wait at once.
    pub fn interrupt_acknowledge_then_wait_within(
        &mut self,
        cap: CapId,
        user_data: u64,
        timeout_ns: u64,
    ) -> Result<Option<(u64, u64)>, Status> {
        let ack_tag = user_data ^ 1 << 63;
        let method = Method::InterruptAcknowledge as u16;
        self.submit(Submission { cap: cap.0, method, flags: 0, args: [0; 4], user_data: ack_tag })?;
        let method = Method::InterruptWait as u16;
        self.submit(Submission { cap: cap.0, method, flags: 0, args: [0; 4], user_data })?;
        let entered = match self.enter(2, timeout_ns) {
            Ok(n) => n,
            Err(Status::TimedOut) => 0,
            Err(s) => return Err(s),
        };
        // The acknowledge completes within the call, before the wait can.
        match self.next_completion() {
            Some(c) if c.user_data == ack_tag => c.status().into_result()?,
            _ => return Err(Status::BadRing),
        }
        if entered < 2 {
            return Ok(None);
        }
        Ok(self.wait_result(user_data))
    }

    /// The next completion as an `InterruptWait`'s answer: (count, tsc) when it is the wait
    /// tagged `user_data` and `Ok`.
    fn wait_result(&mut self, user_data: u64) -> Option<(u64, u64)> {
        let c = self.next_completion()?;
        (c.user_data == user_data && c.status == 0).then_some((c.results[0], c.results[1]))
    }

    /// `InterruptAcknowledge`: re-enables the line after the device was serviced.
    pub fn interrupt_acknowledge(&mut self, cap: CapId) -> Result<(), Status> {
        self.invoke(cap, Request::InterruptAcknowledge).map(|_| ())
    }

    /// `InterruptSetAffinity`: moves the live source to CPU `cpu`; (new vector, CPU).
    pub fn interrupt_set_affinity(&mut self, cap: CapId, cpu: u64) -> Result<(u64, u64), Status> {
        let c = self.invoke(cap, Request::InterruptSetAffinity { cpu })?;
        Ok((c.results[0], c.results[1]))
    }
}

/// The one ring of this (single-threaded) process behind a re-entrancy flag, so safe code
/// can never hold two `&mut Ring` at once (e.g. a `print!` inside code holding the ring).
struct GlobalRing {
    busy: AtomicBool,
    ring: UnsafeCell<Ring>,
}

// SAFETY: access to `ring` is serialised by `busy` (processes are single-threaded, and even
// a concurrent user would be excluded by the compare-exchange).
unsafe impl Sync for GlobalRing {}

static RING: GlobalRing = GlobalRing {
    busy: AtomicBool::new(false),
    ring: UnsafeCell::new(Ring::at(RING_VADDR as usize)),
};

/// Exclusive access to the process's ring; released when dropped.
pub struct RingGuard {
    _private: (),
}

impl Deref for RingGuard {
    type Target = Ring;
    fn deref(&self) -> &Ring {
        // SAFETY: a RingGuard exists only while `busy` is held by it.
        unsafe { &*RING.ring.get() }
    }
}

impl DerefMut for RingGuard {
    fn deref_mut(&mut self) -> &mut Ring {
        // SAFETY: as above; `&mut self` makes this the only live reference.
        unsafe { &mut *RING.ring.get() }
    }
}

impl Drop for RingGuard {
    fn drop(&mut self) {
        RING.busy.store(false, Ordering::Release);
    }
}

/// The process's ring, or `None` if a [`RingGuard`] is already alive (re-entrant use).
pub fn ring() -> Option<RingGuard> {
    RING.busy
        .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
        .ok()
        .map(|_| RingGuard { _private: () })
}

/// Takes the ring even if a guard is alive. Only for the panic path, which never returns
/// to the code holding the other guard.
///
/// # Safety
/// The caller must never return to code that holds an existing [`RingGuard`].
pub(crate) unsafe fn steal_ring() -> RingGuard {
    RING.busy.store(true, Ordering::Relaxed);
    RingGuard { _private: () }
}
