//! The one lock for state an interrupt handler also touches: [`IrqSafeMutex`]. Its guard holds
//! the spin lock *and* an [`IrqGuard`], so interrupts are off on this CPU for exactly as long
//! as the lock is held: a handler on the same CPU can never spin on a lock its own interrupted
//! code holds. There is no way to take it with interrupts on.
//!
//! The guard's fields drop in order: the lock is released first, then interrupts come back
//! (if they were on when it was taken). Guards of nested locks restore correctly when dropped
//! in the reverse order of taking (Rust's scope order); an early `drop` of an outer guard
//! while an inner one is held would turn interrupts back on too soon.

use core::ops::{Deref, DerefMut};

use crate::arch::x86_64::percpu::IrqGuard;

/// A spin lock whose holder always runs with interrupts off.
pub struct IrqSafeMutex<T> {
    inner: spin::Mutex<T>,
}

/// The lock held, with interrupts off on this CPU until it drops.
pub struct IrqSafeGuard<'a, T> {
    // Declared first, so released before `_irqs_off` turns interrupts back on.
    lock: spin::MutexGuard<'a, T>,
    _irqs_off: IrqGuard,
}

impl<T> IrqSafeMutex<T> {
    /// An unlocked mutex (const: for statics).
    pub const fn new(value: T) -> IrqSafeMutex<T> {
        IrqSafeMutex { inner: spin::Mutex::new(value) }
    }

    /// Interrupts off (if they were on), then the lock.
    #[inline]
    pub fn lock(&self) -> IrqSafeGuard<'_, T> {
        let irqs_off = IrqGuard::new();
        IrqSafeGuard { lock: self.inner.lock(), _irqs_off: irqs_off }
    }

    /// Interrupts off (if they were on), then the lock if it is free now; `None` (and
    /// interrupts as they were) if someone holds it.
    #[inline]
    pub fn try_lock(&self) -> Option<IrqSafeGuard<'_, T>> {
        let irqs_off = IrqGuard::new();
        let lock = self.inner.try_lock()?;
        Some(IrqSafeGuard { lock, _irqs_off: irqs_off })
    }

    /// Whether some CPU holds the lock now (a snapshot: for the panic path only).
    pub fn is_locked(&self) -> bool {
        self.inner.is_locked()
    }

    /// Releases the lock whoever holds it.
    ///
    /// # Safety
    /// Only for the panic path, once every other CPU is stopped: the holder must never touch
    /// the value again.
    pub unsafe fn force_unlock(&self) {
        // SAFETY: the caller guarantees the holder is gone for good.
        unsafe { self.inner.force_unlock() }
    }
}

impl<T: Default> Default for IrqSafeMutex<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> Deref for IrqSafeGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        &self.lock
    }
}

impl<T> DerefMut for IrqSafeGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        &mut self.lock
    }
}
