//! `attack-iret`: the attacks of `user/attack`; this build's top page ends with `int 0x80`
//! (return through `iretq`).
#![no_std]
#![no_main]

#[path = "../../attack/src/attacks.rs"]
mod attacks;
#[path = "../../attack/src/bounds.rs"]
mod bounds;
#[path = "../../attack/src/ports.rs"]
mod ports;

core::arch::global_asm!(
    ".section .keel_top, \"ax\"",
    ".global keel_top_page",
    "keel_top_page:",
    ".fill 4094, 1, 0xcc",
    "int 0x80",
);

keel_rt::entry!(attacks::main);
