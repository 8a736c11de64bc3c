//! How the parser reads physical memory: through [`PhysRead`], so the kernel can use its
//! physical map and tests a byte buffer, and a bad pointer is an error instead of a fault.

use core::fmt;

/// Why physical memory could not be read; returned by [`PhysRead`]
/// implementations so bad pointers become errors instead of faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// The range `[phys, phys + len)` is not backed by readable memory.
    OutOfBounds {
        /// First address of the failed read.
        phys: u64,
        /// Length of the failed read.
        len: usize,
    },
    /// The address is not mapped by the kernel's current page tables.
    Unmapped {
        /// First address of the failed read.
        phys: u64,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutOfBounds { phys, len } => {
                write!(f, "physical range {phys:#x}+{len:#x} is out of bounds")
            }
            Self::Unmapped { phys } => write!(f, "physical address {phys:#x} is not mapped"),
        }
    }
}

/// Access to physical memory, abstracted so the parser runs unchanged in the
/// kernel (reading identity-mapped memory) and in host tests (a byte buffer).
pub trait PhysRead {
    /// Fills `buf` with the bytes at `[phys, phys + buf.len())` or reports why
    /// that range cannot be read.
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), ReadError>;
}

impl<T: PhysRead + ?Sized> PhysRead for &T {
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        (**self).read(phys, buf)
    }
}

/// A [`PhysRead`] over one byte slice that stands for physical memory starting
/// at `base`; lets the kernel wrap an identity-mapped window without `unsafe`
/// in this crate.
#[derive(Debug, Clone, Copy)]
pub struct SliceMemory<'a> {
    base: u64,
    bytes: &'a [u8],
}

impl<'a> SliceMemory<'a> {
    /// Physical memory `[base, base + bytes.len())` backed by `bytes`.
    pub const fn new(base: u64, bytes: &'a [u8]) -> Self {
        Self { base, bytes }
    }
}

impl PhysRead for SliceMemory<'_> {
    fn read(&self, phys: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let oob = ReadError::OutOfBounds { phys, len: buf.len() };
        let off = phys.checked_sub(self.base).ok_or(oob)?;
        let off = usize::try_from(off).map_err(|_| oob)?;
        let end = off.checked_add(buf.len()).ok_or(oob)?;
        let src = self.bytes.get(off..end).ok_or(oob)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}
