//! Small helpers every driver needs: capabilities by kind, fatal-error checks, the TSC,
//! numeric arguments, percentiles, volatile MMIO, port I/O.

use keel_abi::{CapId, ObjectKind, Status};

/// Exit code of a program that lacks a capability it needs.
pub const EXIT_MISSING_CAP: u64 = 2;
/// Exit code of a program whose kernel call failed unexpectedly.
pub const EXIT_CALL_FAILED: u64 = 3;

/// The first granted capability of `kind`; exits with [`EXIT_MISSING_CAP`] if there is none.
pub fn cap(kind: ObjectKind) -> CapId {
    match crate::start_info().find_cap(kind, 0) {
        Some(c) => c.id,
        None => {
            crate::println!("missing capability {}", kind.name());
            crate::exit(EXIT_MISSING_CAP)
        }
    }
}

/// The value of a call that must succeed; otherwise prints `what` and the status and exits
/// with [`EXIT_CALL_FAILED`].
pub fn check<T>(what: &str, result: Result<T, Status>) -> T {
    match result {
        Ok(v) => v,
        Err(s) => {
            crate::println!("{what} failed: {}", s.name());
            crate::exit(EXIT_CALL_FAILED)
        }
    }
}

/// Reads the time-stamp counter (the kernel's interrupt timestamps use the same clock).
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is allowed in ring 3 (CR4.TSD is clear) and has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The program argument `key` as a number (decimal or 0x hex), or `default`.
pub fn arg_u64(key: &str, default: u64) -> u64 {
    match crate::start_info().arg(key) {
        Some(v) => parse_u64(v).unwrap_or(default),
        None => default,
    }
}

/// Parses decimal or `0x` hexadecimal.
pub fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Median and 99th percentile of `samples` (sorted in place); zeros when empty.
pub fn percentiles(samples: &mut [u64]) -> (u64, u64) {
    if samples.is_empty() {
        return (0, 0);
    }
    samples.sort_unstable();
    let at = |p: usize| samples[(samples.len() - 1) * p / 100];
    (at(50), at(99))
}

/// A 32-bit device register at `base + offset` in a `DeviceMemory` mapping.
pub struct Mmio {
    base: *mut u32,
}

impl Mmio {
    /// Wraps a mapping returned by `DeviceMemoryMap`.
    ///
    /// # Safety
    /// `base` must be the start of a live uncached device mapping large enough for every
    /// offset later passed to `read`/`write`.
    pub unsafe fn new(base: u64) -> Mmio {
        Mmio { base: base as *mut u32 }
    }

    /// Volatile 32-bit read.
    pub fn read(&self, offset: usize) -> u32 {
        // SAFETY: per `new`'s contract.
        unsafe { self.base.byte_add(offset).read_volatile() }
    }

    /// Volatile 32-bit write.
    pub fn write(&self, offset: usize, value: u32) {
        // SAFETY: per `new`'s contract.
        unsafe { self.base.byte_add(offset).write_volatile(value) }
    }
}

/// `outb` (needs an enabled `IoPorts` capability covering `port`).
pub fn outb(port: u16, value: u8) {
    // SAFETY: the kernel opened this port in the TSS bitmap; otherwise the CPU raises #GP
    // and the kernel ends the process, which is the intended failure mode.
    unsafe {
        core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack))
    };
}

/// `inb` (as `outb`).
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as in `outb`.
    unsafe {
        core::arch::asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack))
    };
    value
}
