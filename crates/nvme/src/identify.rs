//! The Identify data structures the driver reads (Base 2.0, 5.17.2.1; NVM Command Set 1.0,
//! 4.1.5.1): 4 KiB each.

use crate::{le16, le32, le64};

/// Bytes of an Identify data structure.
pub const SIZE: usize = 4096;

/// Identify Controller, the fields used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Controller {
    /// PCI vendor ID (bytes 1:0).
    pub vid: u16,
    /// Serial number (bytes 23:4) and model number (63:24), ASCII, space padded.
    pub serial: [u8; 20],
    pub model: [u8; 40],
    /// Maximum Data Transfer Size: `2^mdts` minimum pages, 0 = no limit (byte 77).
    pub mdts: u8,
    /// Controller ID (bytes 79:78).
    pub cntlid: u16,
    /// Version (bytes 83:80), as VS.
    pub version: u32,
    /// Submission and completion entry sizes, required and maximum, as log2 (bytes 512
    /// and 513: required in bits 3:0, maximum in 7:4).
    pub sqes: u8,
    pub cqes: u8,
    /// Number of Namespaces: the largest namespace ID (bytes 519:516).
    pub nn: u32,
}

impl Controller {
    pub fn parse(b: &[u8; SIZE]) -> Controller {
        let mut serial = [0; 20];
        serial.copy_from_slice(&b[4..24]);
        let mut model = [0; 40];
        model.copy_from_slice(&b[24..64]);
        Controller {
            vid: le16(b, 0),
            serial,
            model,
            mdts: b[77],
            cntlid: le16(b, 78),
            version: le32(b, 80),
            sqes: b[512],
            cqes: b[513],
            nn: le32(b, 516),
        }
    }

    /// The serial number without its padding.
    pub fn serial_str(&self) -> &str {
        trimmed(&self.serial)
    }

    pub fn model_str(&self) -> &str {
        trimmed(&self.model)
    }

    /// Whether 64-byte submission and 16-byte completion entries are allowed.
    pub fn takes_standard_entries(&self) -> bool {
        let fits = |b: u8, want: u8| b & 0xF <= want && want <= b >> 4;
        fits(self.sqes, 6) && fits(self.cqes, 4)
    }

    /// The largest transfer in bytes, given the minimum page size; `None` for no limit.
    pub fn max_transfer(&self, page_min: u64) -> Option<u64> {
        (self.mdts != 0).then(|| page_min << self.mdts.min(40))
    }
}

fn trimmed(b: &[u8]) -> &str {
    let s = core::str::from_utf8(b).unwrap_or("");
    s.trim_end_matches([' ', '\0'])
}

/// Identify Namespace, the fields used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Namespace {
    /// Namespace size, capacity and utilisation in logical blocks (bytes 7:0, 15:8, 23:16).
    pub nsze: u64,
    pub ncap: u64,
    pub nuse: u64,
    /// Number of LBA formats, 0-based (byte 25).
    pub nlbaf: u8,
    /// Formatted LBA size: the format in use, bits 3:0 (and 6:5 above 16 formats) of byte 26.
    pub flbas: u8,
    /// The format in use: metadata bytes per block (bits 15:0) and log2 of the data size
    /// (bits 23:16) of LBA format `flbas` (at 128 + 4 × index).
    pub metadata_size: u16,
    pub lba_shift: u8,
}

impl Namespace {
    /// `None` if the format in use is past the namespace's list or names a block size
    /// below 512 bytes (LBADS < 9 means the format is not supported).
    pub fn parse(b: &[u8; SIZE]) -> Option<Namespace> {
        let nlbaf = b[25];
        let flbas = b[26];
        let index = (flbas & 0xF) | ((flbas >> 5) & 3) << 4;
        if index > nlbaf {
            return None;
        }
        let format = le32(b, 128 + 4 * index as usize);
        let lba_shift = (format >> 16) as u8;
        if !(9..=31).contains(&lba_shift) {
            return None;
        }
        Some(Namespace {
            nsze: le64(b, 0),
            ncap: le64(b, 8),
            nuse: le64(b, 16),
            nlbaf,
            flbas,
            metadata_size: format as u16,
            lba_shift,
        })
    }

    /// Bytes per logical block.
    pub fn block_size(&self) -> u64 {
        1 << self.lba_shift
    }

    /// The namespace's size in bytes.
    pub fn bytes(&self) -> u64 {
        self.nsze << self.lba_shift
    }
}
