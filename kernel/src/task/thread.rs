//! Threads: a kernel stack, a saved kernel context, a home CPU and a state word.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use fw::sync::IrqSafeMutex;
use keel_abi::{Completion, RingHeader, Status, Submission};

use super::Process;
use fw::arch::x86_64::context;
use fw::arch::x86_64::gdt::{USER_CODE, USER_DATA};
use fw::arch::x86_64::trap_entry::TrapFrame;

/// Kernel stack per thread.
pub const KERNEL_STACK_SIZE: usize = 32 * 1024;

pub use keel_sched::ThreadState;

static NEXT_TID: AtomicU64 = AtomicU64::new(1);

/// Threads created since boot (each took the next thread ID).
pub fn created() -> u64 {
    NEXT_TID.load(Ordering::Relaxed) - 1
}

/// A thread's ring page. The kernel owns the frame: it reaches it through the physical map
/// (never through the program's mapping), shows it to the program as a kernel page the
/// program cannot unmap or reprotect, and its process frees it only after the address space
/// is gone, under the ring lock, so no late completion can land in a reused frame.
pub struct RingFrame(u64);

impl RingFrame {
    /// Physical address of the frame.
    pub fn phys(&self) -> u64 {
        self.0
    }

    fn base(&self) -> *mut u8 {
        fw::mm::phys_to_virt(self.0).as_mut_ptr::<u8>()
    }

    /// The header (indices shared with the program: atomics, read as hostile).
    pub fn header(&self) -> &RingHeader {
        // SAFETY: the frame is a live ring page while this `RingFrame` exists (it is freed
        // only by taking it out of its `RingState`); the header holds only atomics.
        unsafe { &*self.base().cast::<RingHeader>() }
    }

    /// Copies submission slot `slot` (< SQ_ENTRIES) out of the page.
    pub fn read_submission(&self, slot: usize) -> Submission {
        debug_assert!(slot < keel_abi::SQ_ENTRIES as usize);
        // SAFETY: the slot lies inside the live ring page; a plain volatile read of bytes the
        // program may be changing (any bit pattern is a valid `Submission`).
        unsafe {
            (self.base().add(keel_abi::SQ_OFFSET + slot * core::mem::size_of::<Submission>())
                as *const Submission)
                .read_volatile()
        }
    }

    /// Writes completion slot `slot` (< CQ_ENTRIES).
    pub fn write_completion(&self, slot: usize, completion: Completion) {
        debug_assert!(slot < keel_abi::CQ_ENTRIES as usize);
        // SAFETY: the slot lies inside the live ring page (CQ_OFFSET + slot * 32 < 4096).
        unsafe {
            (self.base().add(keel_abi::CQ_OFFSET + slot * core::mem::size_of::<Completion>())
                as *mut Completion)
                .write_volatile(completion)
        }
    }
}

/// Kernel-side ring state: the kernel's own copies of the indices it owns (the page's copies
/// are published for the user, never trusted back), the `cap_enter` waiter, and the page
/// itself (`None` once the process is torn down).
pub struct RingState {
    pub sq_head: u32,
    pub cq_tail: u32,
    /// Submissions taken whose completion is not posted yet (each holds a CQ slot).
    pub in_flight: u32,
    /// Blocked in `cap_enter` waiting for this many completions.
    pub waiting_for: Option<u32>,
    /// Completions that could not be posted (the user corrupted `cq_head`).
    pub overflow: u32,
    pub page: Option<RingFrame>,
}

impl RingState {
    /// Fresh indices over the ring page at `phys` (its header already initialised).
    pub fn new(phys: u64) -> RingState {
        RingState {
            sq_head: 0,
            cq_tail: 0,
            in_flight: 0,
            waiting_for: None,
            overflow: 0,
            page: Some(RingFrame(phys)),
        }
    }
}

/// One thread of a process.
pub struct Thread {
    pub tid: u64,
    pub process: Arc<Process>,
    /// CPU index whose run queue this thread lives on.
    pub home_cpu: AtomicU32,
    state: keel_sched::ThreadStateCell,
    /// Set when the thread leaves the CPU but should run again (preemption).
    pub requeue: AtomicBool,
    /// Its home CPU's tick count when it was last queued there: at switch-in, the ticks it
    /// waited runnable (see `Process::max_queue_wait_ticks`).
    pub queued_at_tick: AtomicU64,
    /// Saved kernel stack pointer while switched out, written and read by `context::switch`
    /// through [`Thread::saved_rsp_slot`]. An atomic (same layout as `u64`) so that `Thread`
    /// is `Sync` without an `unsafe impl`: the plain accesses the switch makes are confined
    /// to that `unsafe fn`, whose contract (home CPU, interrupts off, handed between CPUs
    /// only through the run queue's lock) keeps them from racing.
    saved_rsp: AtomicU64,
    stack: Box<[u8]>,
    /// This thread's ring (each thread has its own page, so threads never share ring
    /// indices; the process keeps a reference to free the page) and where the process sees it.
    pub ring_vaddr: u64,
    pub ring: Arc<IrqSafeMutex<RingState>>,
}

impl Thread {
    /// A thread that will enter ring 3 at `entry` with `rsp`, rdi = its ring page, `rsi`,
    /// `rdx`.
    #[allow(clippy::too_many_arguments)]
    pub fn new_user(
        process: Arc<Process>,
        home_cpu: u32,
        entry: u64,
        rsp: u64,
        ring: (Arc<IrqSafeMutex<RingState>>, u64),
        rsi: u64,
        rdx: u64,
    ) -> Arc<Thread> {
        let (ring, ring_vaddr) = ring;
        let rdi = ring_vaddr;
        let stack = alloc::vec![0u8; KERNEL_STACK_SIZE].into_boxed_slice();
        let top = (stack.as_ptr_range().end as u64) & !0xf;
        let frame_addr = top - core::mem::size_of::<TrapFrame>() as u64;
        let frame = TrapFrame {
            rax: 0,
            rbx: 0,
            rcx: 0,
            rdx,
            rsi,
            rdi,
            rbp: 0,
            r8: 0,
            r9: 0,
            r10: 0,
            r11: 0,
            r12: 0,
            r13: 0,
            r14: 0,
            r15: 0,
            vector: 0,
            error_code: 0,
            rip: entry,
            cs: USER_CODE as u64,
            rflags: 0x202, // IF set, reserved bit 1
            rsp,
            ss: USER_DATA as u64,
        };
        // SAFETY: `frame_addr` is inside the new stack, aligned, with room below for the
        // switch frame prepared next.
        let saved = unsafe {
            (frame_addr as *mut TrapFrame).write(frame);
            context::prepare_new_context(frame_addr)
        };
        Arc::new(Thread {
            tid: NEXT_TID.fetch_add(1, Ordering::Relaxed),
            process,
            home_cpu: AtomicU32::new(home_cpu),
            state: keel_sched::ThreadStateCell::new(),
            requeue: AtomicBool::new(false),
            queued_at_tick: AtomicU64::new(0),
            saved_rsp: AtomicU64::new(saved),
            stack,
            ring_vaddr,
            ring,
        })
    }

    /// Posts the completion of a submission, now or later (a deferred one), and releases the
    /// CQ slot reserved when the submission was taken; wakes the thread if it waits in
    /// `cap_enter` for enough completions. Any context, any CPU.
    pub fn post(self: &Arc<Self>, user_data: u64, status: Status, results: [u64; 2]) {
        if self.process.is_destroyed() || self.state() == ThreadState::Exited {
            return;
        }
        if self.write_completion(user_data, status, results) {
            super::sched::wake(self);
        }
    }

    /// Writes one completion into the ring's CQ (under the ring lock) and says whether the
    /// thread waits for no more than are now available (the caller then wakes it).
    fn write_completion(&self, user_data: u64, status: Status, results: [u64; 2]) -> bool {
        let mut guard = self.ring.lock();
        let ring = &mut *guard;
        if ring.in_flight > 0 {
            ring.in_flight -= 1;
        }
        let Some(page) = ring.page.as_ref() else { return false }; // process torn down
        let header = page.header();
        let head = header.cq_head.load(Ordering::Acquire);
        match keel_abi::cq_space(head, ring.cq_tail) {
            Ok(space) if space > 0 => {}
            _ => {
                ring.overflow += 1;
                header.overflow.fetch_add(1, Ordering::Relaxed);
                self.process.cq_overflow.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        let slot = keel_abi::cq_slot(ring.cq_tail);
        page.write_completion(
            slot,
            Completion { user_data, status: status.as_i32(), flags: 0, results },
        );
        ring.cq_tail = ring.cq_tail.wrapping_add(1);
        header.cq_tail.store(ring.cq_tail, Ordering::Release);
        self.process.completions.fetch_add(1, Ordering::Relaxed);
        if !status.is_ok() {
            self.process.errors.fetch_add(1, Ordering::Relaxed);
        }
        let available = keel_abi::cq_available(head, ring.cq_tail).unwrap_or(u32::MAX);
        match ring.waiting_for {
            Some(min) if available >= min => {
                ring.waiting_for = None;
                true
            }
            _ => false,
        }
    }

    /// Top of this thread's kernel stack (TSS.RSP0 / syscall stack while it runs).
    pub fn kernel_stack_top(&self) -> u64 {
        (self.stack.as_ptr_range().end as u64) & !0xf
    }

    /// Current state.
    pub fn state(&self) -> ThreadState {
        self.state.get()
    }

    /// Sets the state (only the thread itself or its scheduler does this; `Exited` is final).
    pub fn set_state(&self, s: ThreadState) {
        self.state.set(s);
    }

    /// Blocked → Runnable; true when this call did the transition (the caller then queues it).
    pub fn try_wake(&self) -> bool {
        self.state.try_wake()
    }

    /// Pointer to the saved stack pointer slot.
    ///
    /// # Safety
    /// Only the home CPU's scheduler and the thread itself (switching out) may use it, with
    /// interrupts disabled; a thread moving to another CPU passes through the run queue's
    /// lock between its switch-out and its next switch-in.
    pub unsafe fn saved_rsp_slot(&self) -> *mut u64 {
        self.saved_rsp.as_ptr()
    }
}

impl Drop for Thread {
    /// The last reference is gone, so no kernel path can post into the ring page any more:
    /// the page is free for the process's next thread.
    fn drop(&mut self) {
        self.process.recycle_ring(self.ring.clone(), self.ring_vaddr);
    }
}
