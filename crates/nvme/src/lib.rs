//! NVMe (NVM Express Base Specification 2.0, NVM Command Set 1.0) for a polled driver.
//!
//! Everything a driver needs to compute, nothing it must touch: the controller's register
//! offsets and fields ([`regs`]), submission and completion queue entries ([`command`],
//! [`completion`]), the queue rings with the completion phase bit ([`queue`]), and the
//! identify data ([`identify`]). The driver reads and writes the BAR and the DMA memory;
//! this crate is pure and host-tested.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod command;
pub mod completion;
pub mod identify;
pub mod pattern;
pub mod queue;
pub mod regs;

/// Reads a little-endian u16 at `at` (the caller guarantees the bounds).
fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    le32(b, at) as u64 | (le32(b, at + 4) as u64) << 32
}

#[cfg(test)]
mod tests;
