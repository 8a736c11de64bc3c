//! The contents of the disk image the `nvme-poll` proof boots with, shared by the tool that
//! writes the image and the driver that checks what it reads: every 8-byte word is a
//! function of its byte offset on the disk, so a block read from the wrong place, or only
//! partly transferred, does not match.

/// The seed of the image as created.
pub const IMAGE_SEED: u64 = 0x4B45_454C_4E56_4D45;
/// The seed of the block the driver writes.
pub const WRITE_SEED: u64 = 0x5752_4954_5445_4E21;

/// The little-endian word at `byte_offset` (a multiple of 8) of a disk filled with `seed`.
pub fn word(byte_offset: u64, seed: u64) -> u64 {
    (byte_offset / 8 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed
}

/// Fills `buf`, which sits at `byte_offset` on the disk, with the pattern of `seed`.
pub fn fill(buf: &mut [u64], byte_offset: u64, seed: u64) {
    for (i, w) in buf.iter_mut().enumerate() {
        *w = word(byte_offset + 8 * i as u64, seed);
    }
}

/// How many words of `buf` (at `byte_offset`) differ from the pattern of `seed`.
pub fn mismatches(buf: &[u64], byte_offset: u64, seed: u64) -> usize {
    buf.iter().enumerate().filter(|&(i, &w)| w != word(byte_offset + 8 * i as u64, seed)).count()
}
