//! Completion queue entries (Base 2.0, 4.2.1): 16 bytes.
//!
//! DW0 is command specific, DW2 holds the submission queue head (15:0) and the submission
//! queue it came from (31:16), DW3 the command identifier (15:0), the phase tag (bit 16)
//! and the status field (31:17: status code 24:17, status code type 27:25, more 30,
//! do-not-retry 31).

/// Bytes per completion entry.
pub const ENTRY_SIZE: usize = 16;

/// One completion entry, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    pub result: u32,
    pub sq_head: u16,
    pub sq_id: u16,
    pub cid: u16,
    pub phase: bool,
    /// The 15-bit status field (DW3 bits 31:17); 0 is success.
    pub status: u16,
}

impl Completion {
    pub fn from_bytes(b: &[u8; ENTRY_SIZE]) -> Completion {
        let dw2 = crate::le32(b, 8);
        let dw3 = crate::le32(b, 12);
        Completion {
            result: crate::le32(b, 0),
            sq_head: dw2 as u16,
            sq_id: (dw2 >> 16) as u16,
            cid: dw3 as u16,
            phase: dw3 & (1 << 16) != 0,
            status: (dw3 >> 17) as u16,
        }
    }

    /// The entry as a controller writes it (for tests and models).
    pub fn to_bytes(&self) -> [u8; ENTRY_SIZE] {
        let mut b = [0u8; ENTRY_SIZE];
        b[0..4].copy_from_slice(&self.result.to_le_bytes());
        b[8..12].copy_from_slice(&(self.sq_head as u32 | (self.sq_id as u32) << 16).to_le_bytes());
        let dw3 =
            self.cid as u32 | (self.phase as u32) << 16 | ((self.status as u32) & 0x7FFF) << 17;
        b[12..16].copy_from_slice(&dw3.to_le_bytes());
        b
    }

    /// Status Code: bits 7:0 of the status field.
    pub fn status_code(&self) -> u8 {
        self.status as u8
    }

    /// Status Code Type: 0 generic, 1 command specific, 2 media and data integrity.
    pub fn status_code_type(&self) -> u8 {
        ((self.status >> 8) & 7) as u8
    }

    pub fn do_not_retry(&self) -> bool {
        self.status & (1 << 14) != 0
    }

    pub fn succeeded(&self) -> bool {
        self.status_code() == 0 && self.status_code_type() == 0
    }
}

/// Generic status codes the driver names (type 0).
pub const SC_SUCCESS: u8 = 0x00;
pub const SC_INVALID_OPCODE: u8 = 0x01;
pub const SC_INVALID_FIELD: u8 = 0x02;
pub const SC_LBA_OUT_OF_RANGE: u8 = 0x80;
