//! CPU-local variables declared by the module that owns them: `cpu_local! { static X: T =
//! init; }` gives every CPU index its own `T` (each on its own cache line), so the framework's
//! per-CPU block does not have to know the types of the layers above it.
//!
//! The current CPU's value is reached only through an [`IrqGuard`] ([`CpuLocalVar::get`]), and
//! the reference borrows it, as for `percpu::local`: it cannot outlive the proof that the
//! code stays on this CPU, and no handler on this CPU runs while it lives. Another CPU's value
//! ([`CpuLocalVar::of`]) is handed out only when `T` is `Sync`.

use super::percpu::{self, IrqGuard, MAX_CPUS};

/// One CPU's value, alone on its cache line (no false sharing between neighbouring CPUs).
#[repr(align(64))]
pub struct Slot<T>(T);

impl<T> Slot<T> {
    /// For [`cpu_local!`](crate::cpu_local) only.
    #[doc(hidden)]
    pub const fn new(value: T) -> Slot<T> {
        Slot(value)
    }
}

/// A `T` per CPU index (declared with [`cpu_local!`](crate::cpu_local)).
pub struct CpuLocalVar<T> {
    slots: [Slot<T>; MAX_CPUS],
}

// SAFETY: the current CPU's slot is reached only through `get`, on that CPU, with interrupts
// off for as long as the reference lives (it borrows the guard, which is neither `Send` nor
// `Sync`): one CPU, one context at a time, like `percpu::local`. Other CPUs' slots are reached
// only through `of`, which requires `T: Sync`. `T: Send` because values are built in a static
// on the boot CPU and used on the CPU whose index they carry.
unsafe impl<T: Send> Sync for CpuLocalVar<T> {}

impl<T> CpuLocalVar<T> {
    /// For [`cpu_local!`](crate::cpu_local) only.
    #[doc(hidden)]
    pub const fn from_slots(slots: [Slot<T>; MAX_CPUS]) -> CpuLocalVar<T> {
        CpuLocalVar { slots }
    }

    /// This CPU's value, for as long as the guard keeps the code on this CPU.
    #[inline]
    pub fn get<'g>(&'static self, _: &'g IrqGuard) -> &'g T {
        &self.slots[percpu::current_index() as usize].0
    }
}

impl<T: Sync> CpuLocalVar<T> {
    /// CPU `index`'s value (shared state other CPUs read or post to).
    #[inline]
    pub fn of(&'static self, index: u32) -> &'static T {
        &self.slots[index as usize].0
    }
}

/// Declares CPU-local variables: `cpu_local! { pub static SCHED: CpuSched = CpuSched::new(); }`
/// (the initialiser must be a constant expression; it is evaluated once per CPU index).
#[macro_export]
macro_rules! cpu_local {
    ($($(#[$attr:meta])* $vis:vis static $name:ident: $ty:ty = $init:expr;)+) => {$(
        $(#[$attr])*
        $vis static $name: $crate::arch::x86_64::cpu_local::CpuLocalVar<$ty> =
            $crate::arch::x86_64::cpu_local::CpuLocalVar::from_slots(
                [const { $crate::arch::x86_64::cpu_local::Slot::new($init) };
                    $crate::arch::x86_64::percpu::MAX_CPUS],
            );
    )+};
}
