//! `attack`: control-flow and accounting attacks on the kernel from ring 3 (see
//! `attacks.rs`); this build's top page ends with `syscall` (return through `sysretq`).
#![no_std]
#![no_main]

mod attacks;
mod bounds;
mod ports;

core::arch::global_asm!(
    ".section .keel_top, \"ax\"",
    ".global keel_top_page",
    "keel_top_page:",
    ".fill 4094, 1, 0xcc",
    "syscall",
);

keel_rt::entry!(attacks::main);
