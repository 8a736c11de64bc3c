//! MSI-X (PCI Local Bus 3.0, 6.8.2; PCIe 6.1, 7.7.2): the capability, the vector table and
//! the pending-bit array.
//!
//! The capability (12 bytes) holds Message Control (table size, function mask, enable)
//! and two BAR locations: the table (16 bytes per vector) and the pending-bit array (PBA,
//! one bit per vector in 64-bit words). Unlike MSI, every vector has its own mask bit in
//! its table entry, so a source can be masked at the device while others keep firing; a
//! vector that fires while masked (or while the whole function is masked) sets its pending
//! bit and is sent when unmasked.
//!
//! Setting a function up without a stray message, in order ([`setup`] gives the control
//! values): (1) enable MSI-X **with the function mask set**, (2) write every entry with its
//! mask bit set, (3) clear the function mask, (4) unmask each vector as its driver arms it.
//! Entries are only rewritten while masked (a device may read a half-written entry
//! otherwise).

/// Message Control bit 15: MSI-X enabled (INTx and MSI are then off).
pub const CONTROL_ENABLE: u16 = 1 << 15;
/// Message Control bit 14: every vector of the function masked, whatever its own bit says.
pub const CONTROL_FUNCTION_MASK: u16 = 1 << 14;
/// Message Control bits 10:0: table size minus one.
pub const CONTROL_TABLE_SIZE: u16 = 0x7FF;
/// The most vectors a function can have.
pub const MAX_VECTORS: u16 = 2048;

/// Bytes per table entry.
pub const ENTRY_SIZE: u64 = 16;
/// Offsets inside an entry: message address low and high dwords, message data, vector
/// control.
pub const ENTRY_ADDRESS_LO: u64 = 0;
pub const ENTRY_ADDRESS_HI: u64 = 4;
pub const ENTRY_DATA: u64 = 8;
pub const ENTRY_VECTOR_CONTROL: u64 = 12;
/// Vector Control bit 0: this vector is masked.
pub const VECTOR_MASKED: u32 = 1;

/// Message Control of an MSI-X capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageControl(pub u16);

impl MessageControl {
    /// How many vectors the table has (1..=2048).
    pub fn table_size(self) -> u16 {
        (self.0 & CONTROL_TABLE_SIZE) + 1
    }

    pub fn enabled(self) -> bool {
        self.0 & CONTROL_ENABLE != 0
    }

    pub fn function_masked(self) -> bool {
        self.0 & CONTROL_FUNCTION_MASK != 0
    }

    /// The same register with the enable bit set or cleared (read-only bits kept as read).
    pub fn with_enable(self, on: bool) -> MessageControl {
        MessageControl(if on { self.0 | CONTROL_ENABLE } else { self.0 & !CONTROL_ENABLE })
    }

    /// The same register with the function mask set or cleared.
    pub fn with_function_mask(self, on: bool) -> MessageControl {
        MessageControl(if on {
            self.0 | CONTROL_FUNCTION_MASK
        } else {
            self.0 & !CONTROL_FUNCTION_MASK
        })
    }
}

/// The Message Control values of the setup sequence, from the value read: first written
/// (enabled, function masked) before the entries are written, then (enabled, unmasked)
/// after.
pub fn setup(read: MessageControl) -> [MessageControl; 2] {
    let masked = read.with_enable(true).with_function_mask(true);
    [masked, masked.with_function_mask(false)]
}

/// Where a structure lives: a BAR (its index, 0..=5) and an offset inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarLocation {
    pub bar: u8,
    pub offset: u32,
}

impl BarLocation {
    /// Decodes a Table or PBA Offset/BIR register: BIR in bits 2:0, the offset (8-byte
    /// aligned) in the rest.
    pub fn decode(reg: u32) -> Result<BarLocation, MsixError> {
        let bar = (reg & 7) as u8;
        if bar > 5 {
            return Err(MsixError::BadBir(bar));
        }
        Ok(BarLocation { bar, offset: reg & !7 })
    }
}

/// Why an MSI-X capability is unusable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsixError {
    /// The capability at that offset is not MSI-X (its ID).
    NotMsix(u8),
    /// The capability does not fit in configuration space.
    Truncated,
    /// A BIR of 6 or 7 (reserved).
    BadBir(u8),
    /// The table or PBA runs past its BAR (or the BAR is absent: size 0).
    OutsideBar,
    /// The table and the PBA overlap in one BAR.
    Overlap,
}

/// A parsed MSI-X capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msix {
    /// Offset of the capability in configuration space (Message Control is at +2).
    pub cap: u8,
    pub control: MessageControl,
    pub table: BarLocation,
    pub pba: BarLocation,
}

impl Msix {
    /// Parses the capability at `cap` in a function's configuration space.
    pub fn parse(config: &[u8; 256], cap: u8) -> Result<Msix, MsixError> {
        let at = cap as usize;
        if at + 12 > config.len() {
            return Err(MsixError::Truncated);
        }
        if config[at] != crate::CAP_MSIX {
            return Err(MsixError::NotMsix(config[at]));
        }
        let dword = |o: usize| {
            u32::from_le_bytes([
                config[at + o],
                config[at + o + 1],
                config[at + o + 2],
                config[at + o + 3],
            ])
        };
        Ok(Msix {
            cap,
            control: MessageControl(u16::from_le_bytes([config[at + 2], config[at + 3]])),
            table: BarLocation::decode(dword(4))?,
            pba: BarLocation::decode(dword(8))?,
        })
    }

    /// Offset of Message Control in configuration space.
    pub fn control_offset(&self) -> u8 {
        self.cap + 2
    }

    /// How many vectors the table has.
    pub fn vectors(&self) -> u16 {
        self.control.table_size()
    }

    /// Bytes of the table.
    pub fn table_bytes(&self) -> u64 {
        self.vectors() as u64 * ENTRY_SIZE
    }

    /// Bytes of the PBA: one bit per vector, in whole 64-bit words.
    pub fn pba_bytes(&self) -> u64 {
        (self.vectors() as u64).div_ceil(64) * 8
    }

    /// Checks that the table and the PBA lie inside their BARs (`bar_size(i)` is BAR i's
    /// size, 0 when absent) and do not overlap each other.
    pub fn check_bars(&self, bar_size: impl Fn(u8) -> u64) -> Result<(), MsixError> {
        let table = (self.table.offset as u64, self.table_bytes());
        let pba = (self.pba.offset as u64, self.pba_bytes());
        for (loc, (start, len)) in [(self.table, table), (self.pba, pba)] {
            if start + len > bar_size(loc.bar) {
                return Err(MsixError::OutsideBar);
            }
        }
        if self.table.bar == self.pba.bar && table.0 < pba.0 + pba.1 && pba.0 < table.0 + table.1 {
            return Err(MsixError::Overlap);
        }
        Ok(())
    }

    /// Offset of entry `vector` inside the table's BAR (`None` past the table).
    pub fn entry_offset(&self, vector: u16) -> Option<u64> {
        (vector < self.vectors()).then(|| self.table.offset as u64 + vector as u64 * ENTRY_SIZE)
    }

    /// Offset inside the PBA's BAR of the 64-bit word holding `vector`'s pending bit, and
    /// the bit's index in it (`None` past the table).
    pub fn pending_bit(&self, vector: u16) -> Option<(u64, u32)> {
        (vector < self.vectors())
            .then(|| (self.pba.offset as u64 + (vector as u64 / 64) * 8, vector as u32 % 64))
    }

    /// Byte ranges `(bar, start, end)` the kernel must keep to itself (never granted to a
    /// driver): the table and the PBA, each rounded out to whole 4 KiB pages.
    pub fn kernel_pages(&self) -> [(u8, u64, u64); 2] {
        let page = |loc: BarLocation, len: u64| {
            let start = loc.offset as u64 & !0xFFF;
            (loc.bar, start, (loc.offset as u64 + len).div_ceil(4096) * 4096)
        };
        [page(self.table, self.table_bytes()), page(self.pba, self.pba_bytes())]
    }
}

/// One table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub address: u64,
    pub data: u32,
    pub masked: bool,
}

impl Entry {
    /// The four dwords in table order. `old_control` is the Vector Control read before:
    /// its reserved bits (31:1) are written back as read, as the specification asks.
    pub fn encode(&self, old_control: u32) -> [u32; 4] {
        let control = (old_control & !VECTOR_MASKED) | self.masked as u32;
        [self.address as u32, (self.address >> 32) as u32, self.data, control]
    }

    /// Decodes the four dwords of an entry.
    pub fn decode(dwords: [u32; 4]) -> Entry {
        Entry {
            address: dwords[0] as u64 | (dwords[1] as u64) << 32,
            data: dwords[2],
            masked: dwords[3] & VECTOR_MASKED != 0,
        }
    }
}

/// Vector Control with the mask bit set or cleared, reserved bits kept.
pub fn vector_control(old: u32, masked: bool) -> u32 {
    (old & !VECTOR_MASKED) | masked as u32
}

#[cfg(test)]
#[path = "msix_tests.rs"]
mod tests;
