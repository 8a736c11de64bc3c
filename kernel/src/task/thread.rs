//! Threads: a kernel stack, a saved kernel context, a home CPU and a state word.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

use super::Process;
use crate::arch::x86_64::context;
use crate::arch::x86_64::gdt::{USER_CODE, USER_DATA};
use crate::arch::x86_64::interrupts::TrapFrame;

/// Kernel stack per thread.
pub const KERNEL_STACK_SIZE: usize = 32 * 1024;

/// Scheduling state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ThreadState {
    /// In a run queue or about to be.
    Runnable = 0,
    /// On its CPU now.
    Running = 1,
    /// Waiting for a completion, a timeout or an interrupt.
    Blocked = 2,
    /// Finished; reaped by its CPU's scheduler context.
    Exited = 3,
}

static NEXT_TID: AtomicU64 = AtomicU64::new(1);

/// One thread of a process.
pub struct Thread {
    pub tid: u64,
    pub process: Arc<Process>,
    /// CPU index whose run queue this thread lives on.
    pub home_cpu: AtomicU32,
    state: AtomicU8,
    /// Set when the thread leaves the CPU but should run again (preemption).
    pub requeue: AtomicBool,
    /// Saved kernel stack pointer while switched out. Only the home CPU touches it, with
    /// interrupts off.
    saved_rsp: UnsafeCell<u64>,
    stack: Box<[u8]>,
}

// SAFETY: `saved_rsp` is only accessed by the home CPU with interrupts disabled (the
// scheduler protocol in `sched.rs`); everything else is atomic or immutable.
unsafe impl Sync for Thread {}
// SAFETY: as above.
unsafe impl Send for Thread {}

impl Thread {
    /// A thread that will enter ring 3 at `entry` with `rsp`, `rdi`, `rsi`.
    pub fn new_user(process: Arc<Process>, home_cpu: u32, entry: u64, rsp: u64, rdi: u64, rsi: u64) -> Arc<Thread> {
        let stack = alloc::vec![0u8; KERNEL_STACK_SIZE].into_boxed_slice();
        let top = (stack.as_ptr_range().end as u64) & !0xf;
        let frame_addr = top - core::mem::size_of::<TrapFrame>() as u64;
        let frame = TrapFrame {
            rax: 0, rbx: 0, rcx: 0, rdx: 0, rsi, rdi, rbp: 0, r8: 0, r9: 0, r10: 0, r11: 0,
            r12: 0, r13: 0, r14: 0, r15: 0,
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
            state: AtomicU8::new(ThreadState::Runnable as u8),
            requeue: AtomicBool::new(false),
            saved_rsp: UnsafeCell::new(saved),
            stack,
        })
    }

    /// Top of this thread's kernel stack (TSS.RSP0 / syscall stack while it runs).
    pub fn kernel_stack_top(&self) -> u64 {
        (self.stack.as_ptr_range().end as u64) & !0xf
    }

    /// Current state.
    pub fn state(&self) -> ThreadState {
        match self.state.load(Ordering::Acquire) {
            0 => ThreadState::Runnable,
            1 => ThreadState::Running,
            2 => ThreadState::Blocked,
            _ => ThreadState::Exited,
        }
    }

    /// Sets the state unconditionally (only the thread itself or its scheduler does this).
    pub fn set_state(&self, s: ThreadState) {
        self.state.store(s as u8, Ordering::Release);
    }

    /// Blocked → Runnable; true when this call did the transition (the caller then queues it).
    pub fn try_wake(&self) -> bool {
        self.state
            .compare_exchange(ThreadState::Blocked as u8, ThreadState::Runnable as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Pointer to the saved stack pointer slot.
    ///
    /// # Safety
    /// Only the home CPU's scheduler and the thread itself (switching out) may use it, with
    /// interrupts disabled.
    pub unsafe fn saved_rsp_slot(&self) -> *mut u64 {
        self.saved_rsp.get()
    }
}
