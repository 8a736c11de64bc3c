//! CPU-local variables declared by the module that owns them: `cpu_local! { static X: T =
//! init; }` gives every CPU its own `T`, so the framework's per-CPU block does not have to
//! know the types of the layers above it (as OSTD's `cpu_local!`).
//!
//! Each declaration puts its initial value (a constant) in the `.cpu_local` section; the
//! framework copies the whole section into every CPU's block when it builds the block
//! (`percpu::UpperArea`, before the CPU runs or anyone else reaches it), so every CPU has every
//! variable from the start, at the same offset. Reaching the current CPU's value is then the
//! block pointer at `gs:[0]` plus a link-time constant: no table, no check. A variable costs
//! its size per CPU that exists, nothing per possible CPU. Values that need the heap (a run
//! queue's room) are set up by the owner when the CPU is prepared.
//!
//! The current CPU's value is reached only through an [`IrqGuard`] ([`CpuLocalVar::get`]),
//! and the reference borrows it, as for `percpu::local`: it cannot outlive the proof that the
//! code stays on this CPU, and no handler on this CPU runs while it lives. Another CPU's value
//! ([`CpuLocalVar::of`]) is handed out only when `T` is `Sync`.

use super::percpu::{self, IrqGuard, UPPER_AREA_BYTES};

extern "C" {
    /// Bounds of `.cpu_local` (kernel/linker.ld: 64-aligned, inside `.data`).
    static __cpu_local_start: u8;
    static __cpu_local_end: u8;
}

/// A `T` per CPU (declared with [`cpu_local!`](crate::cpu_local)). The static itself lies in
/// `.cpu_local` and holds the initial value: it is only ever copied (byte for byte, into each
/// new block), never read or written in place; its address, a link-time constant, locates the
/// variable in every block's copy of the section, so reaching it loads nothing but `gs:[0]`.
#[repr(transparent)]
pub struct CpuLocalVar<T: 'static> {
    initial: T,
}

// SAFETY: the value in the section is never accessed as a `T` (only copied), so sharing the
// static shares nothing of it. The current CPU's value is reached only through `get`, on that
// CPU, with interrupts off for as long as the reference lives (it borrows the guard, which is
// neither `Send` nor `Sync`): one CPU, one context at a time, like `percpu::local`. Other
// CPUs' values are reached only through `of`, which requires `T: Sync`. `T: Send` because
// each CPU's value is a copy made on the boot CPU for the CPU whose block it is in.
unsafe impl<T: Send> Sync for CpuLocalVar<T> {}

/// Bytes of `.cpu_local` (every block's area holds a copy).
fn section_len() -> usize {
    // Only the addresses of the linker's symbols are taken (no access: no `unsafe`).
    core::ptr::addr_of!(__cpu_local_end) as usize - core::ptr::addr_of!(__cpu_local_start) as usize
}

/// Fills a new block's area with the initial values (the section's bytes); the block is not
/// reachable by anyone else yet.
///
/// # Safety
/// `area` must be valid for writes of `UPPER_AREA_BYTES` bytes, 64-aligned, and not in use.
pub(super) unsafe fn fill(area: *mut u8) {
    let len = section_len();
    assert!(len <= UPPER_AREA_BYTES, "CPU-local variables take {len} bytes per CPU");
    // SAFETY: the section is `len` readable bytes of constant initial values (byte copies of a
    // constant are independent values: a constant owns no heap memory); `area` has room
    // (asserted) and is the caller's to write.
    unsafe { core::ptr::copy_nonoverlapping(core::ptr::addr_of!(__cpu_local_start), area, len) };
}

impl<T> CpuLocalVar<T> {
    /// For [`cpu_local!`](crate::cpu_local) only.
    ///
    /// # Safety
    /// The value must become a `static` placed in `.cpu_local`: its address is taken as its
    /// place in every CPU's copy of that section.
    #[doc(hidden)]
    pub const unsafe fn new(initial: T) -> CpuLocalVar<T> {
        CpuLocalVar { initial }
    }

    /// This variable's offset in every CPU's area: two link-time constants, no load.
    #[inline(always)]
    fn offset(&'static self) -> usize {
        let start = core::ptr::addr_of!(__cpu_local_start) as usize;
        core::ptr::addr_of!(self.initial) as usize - start
    }

    /// This CPU's value, for as long as the guard keeps the code on this CPU.
    #[inline(always)]
    pub fn get<'g>(&'static self, guard: &'g IrqGuard) -> &'g T {
        let area = percpu::upper_area(guard);
        // SAFETY: the static lies in `.cpu_local` (its `link_section`), so `offset` is where
        // the block's copy of the section holds this variable's value, a valid `T` since the
        // block was built (`fill`), aligned (the section and the area are 64-aligned, and
        // `T`'s alignment is at most 64, checked in `cpu_local!`). Blocks are never freed and
        // values never moved or dropped; shared access only.
        unsafe { &*area.add(self.offset()).cast::<T>() }
    }
}

impl<T: Sync> CpuLocalVar<T> {
    /// CPU `index`'s value (shared state other CPUs read or post to), once its block is built.
    #[inline(always)]
    pub fn of(&'static self, index: u32) -> &'static T {
        let area = percpu::upper_area_of(index).expect("the CPU's block is built");
        // SAFETY: as in `get`.
        unsafe { &*area.add(self.offset()).cast::<T>() }
    }
}

/// Declares CPU-local variables: `cpu_local! { static SCHED: CpuSched = CpuSched::new(); }`.
/// The initial value must be a constant; every CPU starts with a copy of it.
#[macro_export]
macro_rules! cpu_local {
    ($($(#[$attr:meta])* $vis:vis static $name:ident: $ty:ty = $init:expr;)+) => {$(
        $(#[$attr])*
        #[link_section = ".cpu_local"]
        $vis static $name: $crate::arch::x86_64::cpu_local::CpuLocalVar<$ty> = {
            const _: () = assert!(core::mem::align_of::<$ty>() <= 64);
            // Named outside the `unsafe` block below, so the caller's expression gets no
            // `unsafe` from it; used once, as the static's value.
            #[allow(clippy::declare_interior_mutable_const)]
            const INITIAL: $ty = $init;
            // SAFETY: the static this initialises is in `.cpu_local` (`link_section` above).
            unsafe { $crate::arch::x86_64::cpu_local::CpuLocalVar::new(INITIAL) }
        };
    )+};
}
