//! Little-endian fields of firmware tables (DMAR, IVRS), read with bounds checks: `None` past
//! the end of the bytes, never a panic, whatever offset a hostile table names.

pub(crate) fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at.checked_add(1)?)?]))
}

pub(crate) fn le32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

pub(crate) fn le64(b: &[u8], at: usize) -> Option<u64> {
    let lo = le32(b, at)? as u64;
    let hi = le32(b, at.checked_add(4)?)? as u64;
    Some(hi << 32 | lo)
}
