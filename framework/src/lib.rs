//! Keel's framework: the hardware and memory layer under the kernel. CPUs and their local
//! APICs, traps and system-call entry, per-CPU and CPU-local data, memory (frames, heap, page
//! tables, address spaces, user copies), time, the console, ACPI, PCI, the IOMMUs, panics and
//! the exit device, and the boot-time bring-up of all of it.
//!
//! It depends on nothing above it: the kernel (tasks, objects, init) uses it, never the other
//! way round. Where the framework needs the kernel (a system call arrived, a tick, the idle
//! loop looking for a thread), it calls the handlers the kernel registered at boot
//! ([`upcall`]).
#![no_std]

extern crate alloc;

#[macro_use]
pub mod console;
pub mod acpi;
pub mod arch;
pub mod bringup;
pub mod exit;
pub mod mm;
pub mod panic;
pub mod pci;
pub mod sync;
pub mod time;
pub mod upcall;
