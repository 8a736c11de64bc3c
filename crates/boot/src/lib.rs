//! What the bootloader hands over, turned into checked Keel types.
//!
//! The kernel is started by QEMU `-kernel` using Multiboot 1, or by GRUB (BIOS or
//! UEFI) using Multiboot 2; [`handover::Handover`] tells them apart. Everything the
//! bootloader leaves in memory is untrusted input: this crate parses it without
//! panicking, reports malformed data as error enums, and never allocates (the
//! kernel calls it before its heap exists).
//!
//! * [`multiboot`]: the Multiboot 1 information structure, read through
//!   [`multiboot::PhysRead`] so it is testable on the host.
//! * [`multiboot2`]: the Multiboot 2 tag list (memory map, EFI memory map,
//!   modules, ACPI RSDP copies), read the same way.
//! * [`handover`]: either of the two, and where ACPI is to be found.
//! * [`memory`]: a fixed-capacity map of usable physical memory built from the
//!   Multiboot memory map, with reservations subtracted.
//! * [`cmdline`]: the kernel command line (`proof=<name> key=value flag`).

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cmdline;
pub mod handover;
pub mod lowmem;
pub mod memory;
pub mod multiboot;
pub mod multiboot2;
