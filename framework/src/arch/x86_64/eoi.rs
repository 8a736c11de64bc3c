//! The one way to end an interrupt: [`InService`], a token the trap dispatcher hands to the
//! handler of a vector the LAPIC has in service, and whose consumption writes the EOI.
//!
//! The path of every LAPIC-delivered interrupt is: dispatch → handler(token) → EOI exactly
//! once → reschedule on the way out (in the dispatcher, after the handler returned, so a
//! context switch never leaves a vector in service). The token is zero-sized, neither `Copy`
//! nor `Clone`, and `!Send`: it cannot be duplicated, kept in a static or moved to another
//! CPU. A handler that must EOI at a precise point (the `Interrupt` contract: mask the
//! source, then EOI at once) calls [`InService::eoi`]; any other path EOIs when the token is
//! dropped, at the latest when the handler returns. Vectors that set no ISR bit never get a
//! token: the spurious vector, NMIs, exceptions, the PIC's parked vectors, and software
//! `int`s into the device range (detected by [`InService::claim`]).

use core::marker::PhantomData;

use super::lapic;

/// A vector this CPU's LAPIC has in service, to be acknowledged exactly once.
#[must_use = "an in-service vector is acknowledged by `eoi()` (or when the token is dropped)"]
pub struct InService {
    /// Ties the token to the CPU it was created on.
    _this_cpu: PhantomData<*const ()>,
}

impl InService {
    /// A vector only the LAPIC delivers to this kernel (timer, IPI, shootdown, error, ISR
    /// probe): kernel code never raises them with `int`, so no ISR read is needed.
    #[inline(always)]
    pub(in crate::arch::x86_64) fn delivered() -> InService {
        InService { _this_cpu: PhantomData }
    }

    /// The token for `vector` if it may be in service: `None` when its ISR bit is clear on a
    /// machine whose ISR reads back (a software `int`, which no EOI may follow: it would
    /// retire some other, lower-priority interrupt still being handled). Where the ISR does
    /// not read back (see `lapic::probe_isr`), every entry counts as a delivery.
    #[inline]
    pub(in crate::arch::x86_64) fn claim(vector: u8) -> Option<InService> {
        (!lapic::not_in_service(vector)).then(InService::delivered)
    }

    /// End of interrupt, now.
    #[inline(always)]
    pub fn eoi(self) {
        // `Drop` writes it.
    }
}

impl Drop for InService {
    #[inline(always)]
    fn drop(&mut self) {
        lapic::local().eoi();
    }
}
