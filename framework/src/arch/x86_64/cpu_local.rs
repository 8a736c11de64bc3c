//! CPU-local variables declared by the module that owns them: `cpu_local! { static X: T; }`
//! gives every CPU its own `T`, so the framework's per-CPU block does not have to know the
//! types of the layers above it. The owner gives each CPU its value when the CPU is prepared
//! ([`CpuLocalVar::init`], on the boot CPU, before that CPU runs); the value lives on the heap,
//! alone on its cache line, and is never freed (CPUs never go away). A variable costs one
//! pointer per possible CPU in the image and one value per CPU that exists.
//!
//! The current CPU's value is reached only through an [`IrqGuard`] ([`CpuLocalVar::get`]),
//! and the reference borrows it, as for `percpu::local`: it cannot outlive the proof that the
//! code stays on this CPU, and no handler on this CPU runs while it lives. Another CPU's value
//! ([`CpuLocalVar::of`]) is handed out only when `T` is `Sync`.

use alloc::boxed::Box;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, Ordering};

use super::percpu::{self, IrqGuard, MAX_CPUS};

/// One CPU's value, alone on its cache line (no false sharing between neighbouring CPUs).
#[repr(align(64))]
struct Slot<T>(T);

/// A `T` per CPU index (declared with [`cpu_local!`](crate::cpu_local)).
pub struct CpuLocalVar<T> {
    slots: [AtomicPtr<Slot<T>>; MAX_CPUS],
}

// SAFETY: the current CPU's value is reached only through `get`, on that CPU, with interrupts
// off for as long as the reference lives (it borrows the guard, which is neither `Send` nor
// `Sync`): one CPU, one context at a time, like `percpu::local`. Other CPUs' values are
// reached only through `of`, which requires `T: Sync`. `T: Send` because `init` builds a
// value on the boot CPU for the CPU whose index it carries.
unsafe impl<T: Send> Sync for CpuLocalVar<T> {}

impl<T> CpuLocalVar<T> {
    /// No CPU has a value yet (const: for statics; zero, so it costs no image bytes).
    #[allow(clippy::new_without_default)] // only ever a static
    pub const fn new() -> CpuLocalVar<T> {
        CpuLocalVar { slots: [const { AtomicPtr::new(null_mut()) }; MAX_CPUS] }
    }

    /// Gives CPU `index` its value: once, before that CPU uses it (from the owner's CPU
    /// preparation, outside interrupt context: it allocates).
    pub fn init(&'static self, index: u32, value: T) {
        let slot = Box::into_raw(Box::new(Slot(value)));
        let previous = self.slots[index as usize].swap(slot, Ordering::AcqRel);
        assert!(previous.is_null(), "cpu{index}'s CPU-local value is set once");
    }

    #[inline(always)]
    fn slot(&'static self, index: u32) -> &'static T {
        let slot = self.slots[index as usize].load(Ordering::Acquire);
        if slot.is_null() {
            unprepared(index);
        }
        // SAFETY: non-null slots come from `Box::into_raw` in `init`, published with Release
        // (paired with the Acquire above) and never freed or replaced.
        unsafe { &(*slot).0 }
    }

    /// This CPU's value, for as long as the guard keeps the code on this CPU.
    #[inline(always)]
    pub fn get<'g>(&'static self, _: &'g IrqGuard) -> &'g T {
        self.slot(percpu::current_index())
    }
}

impl<T: Sync> CpuLocalVar<T> {
    /// CPU `index`'s value (shared state other CPUs read or post to).
    #[inline(always)]
    pub fn of(&'static self, index: u32) -> &'static T {
        self.slot(index)
    }
}

/// Out of line and cold: the check stays one compare on every access (small enough for the
/// accessors to inline).
#[cold]
#[inline(never)]
fn unprepared(index: u32) -> ! {
    panic!("cpu{index} used a CPU-local value before it was prepared")
}

/// Declares CPU-local variables: `cpu_local! { pub static SCHED: CpuSched; }`; the owner
/// gives each CPU its value with `SCHED.init(index, value)` when the CPU is prepared.
#[macro_export]
macro_rules! cpu_local {
    ($($(#[$attr:meta])* $vis:vis static $name:ident: $ty:ty;)+) => {$(
        $(#[$attr])*
        $vis static $name: $crate::arch::x86_64::cpu_local::CpuLocalVar<$ty> =
            $crate::arch::x86_64::cpu_local::CpuLocalVar::new();
    )+};
}
