//! Keel's evidence format: the contract between the kernel, which prints
//! machine-readable facts on COM1, and the proof harness (`xtask`), which parses
//! the serial transcript and checks them. See `docs/proofs.md`.
//!
//! ```text
//! EV <key>=<value> [<key>=<value> ...]
//! VERDICT pass
//! VERDICT fail <free text reason>
//! ```
//!
//! The writer half ([`write_ev`], [`EvLine`], [`write_verdict_pass`], ...) is
//! `core`-only so the `no_std` kernel can use it before it has a heap. The parser
//! half ([`Transcript`]) needs `alloc` and sits behind the default `parse` feature.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(feature = "parse")]
extern crate alloc;

mod key;
mod write;

#[cfg(feature = "parse")]
mod parse;

pub use key::{is_valid_key, is_valid_pattern, is_valid_value, pattern_matches};
pub use write::{write_ev, write_verdict_fail, write_verdict_pass, EvLine};

#[cfg(feature = "parse")]
pub use parse::{parse_u64, Evidence, ParseError, Transcript, Value, Verdict};

/// QEMU exit statuses produced by `isa-debug-exit` (`(byte << 1) | 1`).
pub mod exit {
    /// Byte the kernel writes to port 0xf4 after `VERDICT pass`.
    pub const CODE_PASS: u8 = 0x10;
    /// Byte for `VERDICT fail` (a check inside the kernel failed).
    pub const CODE_FAIL: u8 = 0x11;
    /// Byte for a kernel panic.
    pub const CODE_PANIC: u8 = 0x12;
    /// Byte for a fatal CPU exception (diagnostic printed first).
    pub const CODE_FATAL_EXCEPTION: u8 = 0x13;

    /// QEMU's process exit status for a byte written to isa-debug-exit.
    pub const fn qemu_status(code: u8) -> i32 {
        ((code as i32) << 1) | 1
    }

    pub const STATUS_PASS: i32 = qemu_status(CODE_PASS);
    pub const STATUS_FAIL: i32 = qemu_status(CODE_FAIL);
    pub const STATUS_PANIC: i32 = qemu_status(CODE_PANIC);
    pub const STATUS_FATAL_EXCEPTION: i32 = qemu_status(CODE_FATAL_EXCEPTION);

    /// Human name of a QEMU exit status, for reports.
    pub fn describe(status: i32) -> &'static str {
        match status {
            STATUS_PASS => "pass (clean halt)",
            STATUS_FAIL => "verdict fail",
            STATUS_PANIC => "kernel panic",
            STATUS_FATAL_EXCEPTION => "fatal CPU exception",
            0 => {
                "QEMU exited normally (no isa-debug-exit write: triple fault/reset or powered off?)"
            }
            1 => "QEMU error (bad option or kernel image?)",
            _ => "unexpected status",
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        #[test]
        fn statuses_match_doc_table() {
            assert_eq!(STATUS_PASS, 33);
            assert_eq!(STATUS_FAIL, 35);
            assert_eq!(STATUS_PANIC, 37);
            assert_eq!(STATUS_FATAL_EXCEPTION, 39);
        }
    }
}
