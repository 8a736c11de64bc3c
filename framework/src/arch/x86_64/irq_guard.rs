//! Interrupts off on this CPU, as a value.
//!
//! The vector-48 tick switches away only from a thread that it interrupted in user mode; a
//! thread in the kernel leaves its CPU only by switching out itself (`sched::block_current`,
//! `yield_current`, `sched::preempt_point` when the tick asked for it, which does nothing
//! with interrupts off), and a thread may come back
//! on another CPU once its home changed. An [`IrqGuard`] is the proof that neither can happen
//! underneath: while it lives, interrupts are off, so no handler runs and no tick preempts.
//! Per-CPU state of the current CPU is reached only through one (`percpu::current`,
//! `percpu::local`), and references to it borrow the guard. Switching out takes the guard
//! mutably, so no such reference survives a switch that could resume on another CPU.

use core::marker::PhantomData;

use x86_64::instructions::interrupts;

/// Interrupts are off on this CPU for as long as the guard lives.
pub struct IrqGuard {
    /// Whether interrupts were on when the guard was taken (and come back on when it drops).
    restore: bool,
    /// Neither `Send` nor `Sync`: the proof holds for the CPU that took it.
    _this_cpu: PhantomData<*mut ()>,
}

impl IrqGuard {
    /// Turns interrupts off if they are on (one flag check when they already are) and back on
    /// when the guard drops.
    #[inline]
    pub fn new() -> IrqGuard {
        let restore = interrupts::are_enabled();
        if restore {
            interrupts::disable();
        }
        IrqGuard { restore, _this_cpu: PhantomData }
    }

    /// The guard a trap handler already holds: interrupt gates clear IF on entry, so this
    /// costs nothing.
    ///
    /// # Safety
    /// Interrupts must be off now and stay off until the guard drops (nothing in its scope
    /// executes `sti`).
    #[inline]
    pub unsafe fn interrupts_already_off() -> IrqGuard {
        debug_assert!(!interrupts::are_enabled());
        IrqGuard { restore: false, _this_cpu: PhantomData }
    }
}

impl Default for IrqGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for IrqGuard {
    #[inline]
    fn drop(&mut self) {
        if self.restore {
            interrupts::enable();
        }
    }
}
