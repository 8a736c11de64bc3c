//! PCI configuration-space logic: the capability list, and MSI-X.
//!
//! Pure logic over bytes the caller read: the kernel does the configuration and BAR
//! accesses, this crate says where things are and what to write.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod msix;

/// The capability ID of MSI (PCI Local Bus 3.0, 6.8.1).
pub const CAP_MSI: u8 = 0x05;
/// The capability ID of PCI Express.
pub const CAP_PCIE: u8 = 0x10;
/// The capability ID of MSI-X (PCI Local Bus 3.0, 6.8.2).
pub const CAP_MSIX: u8 = 0x11;

/// Status register bit 4: the function has a capability list at offset 0x34.
const STATUS_CAP_LIST: u16 = 1 << 4;
/// The most capabilities the 192 bytes after the header can hold (4 bytes each, dword
/// aligned): a longer walk is a loop in the list.
const MAX_CAPS: usize = 48;

/// The offsets of the capabilities in a function's 256-byte configuration space, in list
/// order, as `(id, offset)`. Stops at a pointer into the header (< 0x40), past the end or
/// after [`MAX_CAPS`] entries (a looping list); the low two bits of each pointer are
/// reserved and ignored.
pub fn capabilities(config: &[u8; 256]) -> impl Iterator<Item = (u8, u8)> + '_ {
    let status = u16::from_le_bytes([config[6], config[7]]);
    let mut next = if status & STATUS_CAP_LIST != 0 { config[0x34] & !3 } else { 0 };
    let mut seen = 0;
    core::iter::from_fn(move || {
        if next < 0x40 || seen == MAX_CAPS {
            return None;
        }
        seen += 1;
        let at = next;
        next = config[at as usize + 1] & !3;
        Some((config[at as usize], at))
    })
}

/// The offset of the first capability with `id`, if the function has one.
pub fn find_capability(config: &[u8; 256], id: u8) -> Option<u8> {
    capabilities(config).find(|&(cap, _)| cap == id).map(|(_, at)| at)
}

#[cfg(test)]
mod tests;
