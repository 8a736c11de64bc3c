//! Firmware tables (DMAR, IVRS): the ACPI header both start with, and little-endian fields
//! read with bounds checks: `None` past the end of the bytes, never a panic, whatever offset
//! a hostile table names.

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

/// Offset of the ACPI header's length field.
const HEADER_LENGTH_OFFSET: usize = 4;

/// Why an ACPI table's header was refused; each parser maps it into its own error type.
pub(crate) enum HeaderError {
    Truncated { len: usize },
    BadSignature([u8; 4]),
    BadLength { declared: u32, available: usize },
    BadChecksum(u8),
}

/// Checks an ACPI table's header: at least `fixed` bytes, the `signature`, a declared length
/// that covers the fixed part and lies within the bytes, and a zero byte sum over it. Returns
/// the table cut to its declared length (bytes past it are ignored).
pub(crate) fn acpi_table<'a>(
    bytes: &'a [u8],
    signature: &[u8; 4],
    fixed: usize,
) -> Result<&'a [u8], HeaderError> {
    let truncated = HeaderError::Truncated { len: bytes.len() };
    if bytes.len() < fixed.max(8) {
        return Err(truncated);
    }
    let found = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if &found != signature {
        return Err(HeaderError::BadSignature(found));
    }
    let declared = le32(bytes, HEADER_LENGTH_OFFSET).ok_or(truncated)?;
    let len = declared as usize;
    if len < fixed || len > bytes.len() {
        return Err(HeaderError::BadLength { declared, available: bytes.len() });
    }
    let bytes = &bytes[..len];
    let sum = bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    if sum != 0 {
        return Err(HeaderError::BadChecksum(sum));
    }
    Ok(bytes)
}
