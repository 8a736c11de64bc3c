//! Device interrupt vectors, one space per CPU.
//!
//! A vector number only means something on the CPU it arrives at: vector 0x60 on CPU 3 and
//! vector 0x60 on CPU 7 are different interrupts. A machine with one global table of device
//! vectors is limited to one range's worth of sources for the whole system; giving each CPU
//! its own range multiplies that by the CPU count, which is what a multi-queue device with
//! one vector per CPU needs. [`Matrix`] keeps that per-CPU state; the design follows the
//! facts of Linux's `kernel/irq/matrix.c` (per-CPU bitmaps, system vectors taken on every
//! CPU, placement on the least-loaded CPU of a set). The MSI-X side is `keel-pci`.
//!
//! Pure logic: the kernel owns the IDT and the device registers, this crate decides.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod matrix;

pub use matrix::{AllocError, Matrix, Owner, Placement};
