//! AMD-Vi interrupt remapping: the interrupt fields of a device table entry, the two
//! interrupt remapping table entry (IRTE) formats, the event log, and the control bits that
//! select them (AMD I/O Virtualization Technology (IOMMU) Specification, #48882: 2.2.2
//! device table entry, 2.2.5 interrupt remapping tables, 2.5 event logging, 3.4 MMIO
//! registers). Pure encoders and decoders, host-tested against the spec's bit layouts.
//!
//! A remapped request's MSI data bits 10:0 index the requester's own table (the DTE's
//! IntTableRootPtr); bits 10:8 are also the delivery mode, so fixed interrupts use indices
//! below 256. With GAEn the table holds 128-bit entries (32-bit destination with XTEn),
//! otherwise 32-bit entries (8-bit destination).

/// Control register bits beyond those of [`crate::amdvi::control`] (spec 3.4.3).
pub mod control {
    /// Bit 2, EventLogEn: the unit writes events to the log.
    pub const EVENT_LOG_EN: u64 = 1 << 2;
    /// Bit 3, EventIntEn: the unit signals its MSI when it writes an event.
    pub const EVENT_INT_EN: u64 = 1 << 3;
    /// Bit 17, GAEn: interrupt tables hold 128-bit entries.
    pub const GA_EN: u64 = 1 << 17;
    /// Bit 50, XTEn: 32-bit interrupt destinations (x2APIC).
    pub const XT_EN: u64 = 1 << 50;
}

/// Event log and status register offsets (spec 3.4.1, 3.4.4, 3.4.5).
pub mod reg {
    /// Event log base address and length.
    pub const EVENT_LOG_BASE: usize = 0x0010;
    /// Event log head pointer (byte offset, bits 18:4).
    pub const EVENT_HEAD: usize = 0x2010;
    /// Event log tail pointer (byte offset, bits 18:4).
    pub const EVENT_TAIL: usize = 0x2018;
    /// Status register: bit 0 EventOverflow, bit 1 EventLogInt, bit 2 ComWaitInt (write 1
    /// to clear).
    pub const STATUS: usize = 0x2020;
}

/// log2 of the event log's entries: 256 entries of 16 bytes, one page (the minimum).
pub const EVENT_LOG_LOG2: u32 = 8;
/// Bytes of one event log entry.
pub const EVENT_BYTES: usize = 16;

/// The event log base register for a one-page log at `phys` (bits 51:12 base, 59:56
/// EventLen).
pub fn event_log_base(phys: u64) -> Option<u64> {
    (phys & 0xFFF == 0 && phys >> 52 == 0).then_some(phys | (EVENT_LOG_LOG2 as u64) << 56)
}

/// log2 of the entries of each interrupt table Keel builds: 256 (every fixed-interrupt
/// index; IntTabLen = 8).
pub const TABLE_LOG2: u32 = 8;
/// Entries of one interrupt table.
pub const TABLE_ENTRIES: usize = 1 << TABLE_LOG2;

/// DTE quadword 2 (bits 191:128) with interrupt remapping on (spec 2.2.2): IV = 1,
/// IntTabLen (bits 4:1) = `TABLE_LOG2`, IntTableRootPtr (bits 51:6) = `table_phys`,
/// IntCtl (bits 61:60) = 10b (remapped), and the INIT/ExtInt/NMI/LINT pass bits of the IVRS
/// `setting` byte. `None` when the table is not 64-byte aligned or above 52 bits.
pub fn remap_interrupt_quad(table_phys: u64, setting: u8) -> Option<u64> {
    use crate::amdvi::dte;
    if table_phys & 0x3F != 0 || table_phys >> 52 != 0 {
        return None;
    }
    let pass = crate::amdvi::interrupt_pass_quad(setting)
        & !(dte::INTERRUPT_VALID | 3 << dte::INT_CTL_SHIFT);
    Some(
        dte::INTERRUPT_VALID
            | (TABLE_LOG2 as u64) << 1
            | table_phys
            | dte::INT_CTL_REMAP << dte::INT_CTL_SHIFT
            | pass,
    )
}

/// The interrupt fields of DTE quadword 2, decoded (for evidence read back from memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterruptFields {
    /// IV.
    pub valid: bool,
    /// IntTabLen: log2 of the table's entries.
    pub table_log2: u32,
    /// IntTableRootPtr.
    pub table_phys: u64,
    /// IntCtl (bits 61:60).
    pub int_ctl: u8,
}

impl InterruptFields {
    /// Decodes quadword 2 of a DTE.
    pub fn of(q2: u64) -> InterruptFields {
        InterruptFields {
            valid: q2 & 1 != 0,
            table_log2: ((q2 >> 1) & 0xF) as u32,
            table_phys: q2 & 0x000F_FFFF_FFFF_FFC0,
            int_ctl: ((q2 >> 60) & 3) as u8,
        }
    }
}

/// Which IRTE format the unit reads (GAEn).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrteFormat {
    /// 32-bit entries: 8-bit destination (spec 2.2.5.1).
    Legacy,
    /// 128-bit entries (GuestMode = 0): 32-bit destination with XTEn (spec 2.2.5.2).
    Ga,
}

impl IrteFormat {
    /// Bytes of one entry.
    pub fn entry_bytes(self) -> usize {
        match self {
            IrteFormat::Legacy => 4,
            IrteFormat::Ga => 16,
        }
    }
}

/// Why an entry cannot be encoded or decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmdIrteError {
    /// A legacy entry's destination is 8 bits: APIC IDs above 254 (255 is broadcast).
    Unreachable(u32),
    /// Vectors 0..=15 are not deliverable.
    IllegalVector(u8),
    /// RemapEn is clear.
    NotRemapped,
    /// GuestMode, logical destination mode, or a delivery type other than fixed is set.
    Unsupported,
}

/// A fixed, physical-destination remapped interrupt: what Keel writes in either format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmdIrte {
    /// The vector delivered.
    pub vector: u8,
    /// The destination APIC ID.
    pub destination: u32,
}

const REMAP_EN: u64 = 1 << 0;
/// IntType (bits 4:2), DM (bit 6) and GuestMode (bit 7) of either format's low word.
const TYPE_DM_GUEST: u64 = 0b111 << 2 | 1 << 6 | 1 << 7;

impl AmdIrte {
    /// The legacy 32-bit entry (spec 2.2.5.1): RemapEn (bit 0), IntType (4:2) = fixed,
    /// DM (6) = physical, Destination (15:8), Vector (23:16).
    pub fn encode_legacy(self) -> Result<u32, AmdIrteError> {
        self.check_vector()?;
        if self.destination > 254 {
            return Err(AmdIrteError::Unreachable(self.destination));
        }
        Ok(REMAP_EN as u32 | self.destination << 8 | (self.vector as u32) << 16)
    }

    /// Decodes a legacy entry.
    pub fn decode_legacy(raw: u32) -> Result<AmdIrte, AmdIrteError> {
        if raw as u64 & REMAP_EN == 0 {
            return Err(AmdIrteError::NotRemapped);
        }
        if raw as u64 & TYPE_DM_GUEST != 0 {
            return Err(AmdIrteError::Unsupported);
        }
        Ok(AmdIrte { vector: (raw >> 16) as u8, destination: (raw >> 8) & 0xFF })
    }

    /// The 128-bit entry with GuestMode = 0 (spec 2.2.5.2): low quadword RemapEn (bit 0),
    /// IntType (4:2) = fixed, DM (6) = physical, GuestMode (7) = 0, Destination bits 23:0
    /// (31:8); high quadword Vector (7:0), Destination bits 31:24 (63:56).
    pub fn encode_ga(self) -> Result<[u64; 2], AmdIrteError> {
        self.check_vector()?;
        let d = self.destination as u64;
        Ok([REMAP_EN | (d & 0xFF_FFFF) << 8, self.vector as u64 | (d >> 24) << 56])
    }

    /// Decodes a 128-bit entry; the destination is all 32 bits (as a unit with XTEn reads it).
    pub fn decode_ga(raw: [u64; 2]) -> Result<AmdIrte, AmdIrteError> {
        if raw[0] & REMAP_EN == 0 {
            return Err(AmdIrteError::NotRemapped);
        }
        if raw[0] & TYPE_DM_GUEST != 0 {
            return Err(AmdIrteError::Unsupported);
        }
        let destination = ((raw[0] >> 8) & 0xFF_FFFF) as u32 | ((raw[1] >> 56) as u32) << 24;
        Ok(AmdIrte { vector: raw[1] as u8, destination })
    }

    fn check_vector(self) -> Result<(), AmdIrteError> {
        if self.vector < 16 {
            Err(AmdIrteError::IllegalVector(self.vector))
        } else {
            Ok(())
        }
    }
}

/// Event codes (spec 2.5, the event log entry's bits 63:60).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// 0x1 ILLEGAL_DEV_TABLE_ENTRY.
    IllegalDeviceTableEntry,
    /// 0x2 IO_PAGE_FAULT (with I set: an interrupt request was blocked).
    IoPageFault,
    /// 0x3 DEV_TAB_HARDWARE_ERROR.
    DeviceTableHardwareError,
    /// 0x4 PAGE_TAB_HARDWARE_ERROR.
    PageTableHardwareError,
    /// 0x5 ILLEGAL_COMMAND_ERROR.
    IllegalCommand,
    /// 0x6 COMMAND_HARDWARE_ERROR.
    CommandHardwareError,
    /// 0x7 IOTLB_INV_TIMEOUT.
    IotlbInvalidationTimeout,
    /// 0x8 INVALID_DEVICE_REQUEST.
    InvalidDeviceRequest,
    /// 0x9 INVALID_PPR_REQUEST.
    InvalidPprRequest,
    /// 0xA EVENT_COUNTER_ZERO.
    EventCounterZero,
    /// Any other code.
    Other(u8),
}

impl EventKind {
    fn of(code: u8) -> EventKind {
        match code {
            1 => EventKind::IllegalDeviceTableEntry,
            2 => EventKind::IoPageFault,
            3 => EventKind::DeviceTableHardwareError,
            4 => EventKind::PageTableHardwareError,
            5 => EventKind::IllegalCommand,
            6 => EventKind::CommandHardwareError,
            7 => EventKind::IotlbInvalidationTimeout,
            8 => EventKind::InvalidDeviceRequest,
            9 => EventKind::InvalidPprRequest,
            0xA => EventKind::EventCounterZero,
            c => EventKind::Other(c),
        }
    }

    /// The spec's name.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::IllegalDeviceTableEntry => "ILLEGAL_DEV_TABLE_ENTRY",
            EventKind::IoPageFault => "IO_PAGE_FAULT",
            EventKind::DeviceTableHardwareError => "DEV_TAB_HARDWARE_ERROR",
            EventKind::PageTableHardwareError => "PAGE_TAB_HARDWARE_ERROR",
            EventKind::IllegalCommand => "ILLEGAL_COMMAND_ERROR",
            EventKind::CommandHardwareError => "COMMAND_HARDWARE_ERROR",
            EventKind::IotlbInvalidationTimeout => "IOTLB_INV_TIMEOUT",
            EventKind::InvalidDeviceRequest => "INVALID_DEVICE_REQUEST",
            EventKind::InvalidPprRequest => "INVALID_PPR_REQUEST",
            EventKind::EventCounterZero => "EVENT_COUNTER_ZERO",
            EventKind::Other(_) => "OTHER",
        }
    }
}

/// One event log entry, decoded (spec 2.5: DeviceID bits 15:0, flags 59:48, EventCode
/// 63:60, then a 64-bit address or command pointer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The requester (0 for command errors).
    pub device_id: u16,
    /// The event's flags (for IO_PAGE_FAULT bit 3 is I, an interrupt request).
    pub flags: u16,
    /// The faulting address, or the offending command's address.
    pub address: u64,
}

impl Event {
    /// Decodes the two quadwords of an entry.
    pub fn decode(raw: [u64; 2]) -> Event {
        Event {
            kind: EventKind::of((raw[0] >> 60) as u8),
            device_id: raw[0] as u16,
            flags: ((raw[0] >> 48) & 0xFFF) as u16,
            address: raw[1],
        }
    }

    /// Whether an IO_PAGE_FAULT was an interrupt request (flag I).
    pub fn is_interrupt(&self) -> bool {
        self.kind == EventKind::IoPageFault && self.flags & (1 << 3) != 0
    }
}

/// An entry the hardware has not written yet reads as zero: code 0 is no event.
pub fn is_empty(raw: [u64; 2]) -> bool {
    raw[0] >> 60 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dte_interrupt_quad() {
        let q2 = remap_interrupt_quad(0x1234_5000, 0).unwrap();
        // IV, IntTabLen = 8 at bits 4:1, root, IntCtl = 10b.
        assert_eq!(q2, 1 | 8 << 1 | 0x1234_5000 | 2 << 60);
        let f = InterruptFields::of(q2);
        assert_eq!(
            f,
            InterruptFields { valid: true, table_log2: 8, table_phys: 0x1234_5000, int_ctl: 2 }
        );
        assert_eq!(crate::amdvi::IntCtl::of(q2), crate::amdvi::IntCtl::Remap);
        // Pass bits from the IVRS setting, never the reserved bits (QEMU's mask).
        let q2 = remap_interrupt_quad(0x40, 0xFF).unwrap();
        assert_eq!(q2 & (0b111 << 56 | 0b11 << 62), 0b111 << 56 | 0b11 << 62);
        assert_eq!(q2 & 0x08F0_0000_0000_0000, 0);
        assert_eq!((q2 >> 60) & 3, 2);
        assert_eq!(remap_interrupt_quad(0x1234_5020, 0), None);
        assert_eq!(remap_interrupt_quad(1 << 52, 0), None);
    }

    #[test]
    fn legacy_entry() {
        let e = AmdIrte { vector: 0x31, destination: 0x12 };
        let raw = e.encode_legacy().unwrap();
        assert_eq!(raw, 0x0031_1201);
        assert_eq!(AmdIrte::decode_legacy(raw), Ok(e));
        assert_eq!(
            AmdIrte { vector: 0x31, destination: 255 }.encode_legacy(),
            Err(AmdIrteError::Unreachable(255))
        );
        assert_eq!(
            AmdIrte { vector: 0x31, destination: 257 }.encode_legacy(),
            Err(AmdIrteError::Unreachable(257))
        );
        assert_eq!(AmdIrte::decode_legacy(raw & !1), Err(AmdIrteError::NotRemapped));
        assert_eq!(AmdIrte::decode_legacy(raw | 1 << 6), Err(AmdIrteError::Unsupported));
        assert_eq!(
            AmdIrte { vector: 2, destination: 0 }.encode_legacy(),
            Err(AmdIrteError::IllegalVector(2))
        );
    }

    #[test]
    fn ga_entry_with_x2apic_destination() {
        let e = AmdIrte { vector: 0x50, destination: 257 };
        let raw = e.encode_ga().unwrap();
        // QEMU's irte_ga: lo destination:24 at bit 8, hi vector:8, destination_hi:8 at 56.
        assert_eq!(raw, [1 | 0x101 << 8, 0x50]);
        assert_eq!(AmdIrte::decode_ga(raw), Ok(e));
        let high = AmdIrte { vector: 0xEF, destination: 0xAB12_3456 }.encode_ga().unwrap();
        assert_eq!(high, [1 | 0x12_3456 << 8, 0xEF | 0xAB << 56]);
        assert_eq!(AmdIrte::decode_ga(high).unwrap().destination, 0xAB12_3456);
        assert_eq!(AmdIrte::decode_ga([high[0] | 1 << 7, high[1]]), Err(AmdIrteError::Unsupported));
        assert_eq!(AmdIrte::decode_ga([0, high[1]]), Err(AmdIrteError::NotRemapped));
        assert_eq!(IrteFormat::Ga.entry_bytes() * TABLE_ENTRIES, 4096);
        assert_eq!(IrteFormat::Legacy.entry_bytes() * TABLE_ENTRIES, 1024);
    }

    #[test]
    fn control_and_log_registers() {
        assert_eq!(control::GA_EN, 0x2_0000);
        assert_eq!(control::XT_EN, 0x4_0000_0000_0000);
        assert_eq!(control::EVENT_LOG_EN | control::EVENT_INT_EN, 0xC);
        assert_eq!(event_log_base(0x7_7000), Some(0x0800_0000_0007_7000));
        assert_eq!(event_log_base(0x7_7008), None);
    }

    #[test]
    fn events() {
        // QEMU's amdvi_encode_event: devid 0..15, info 48..63 (code << 12 | flags).
        let io_fault = [0x2000_0000_0000_0018 | 0x008 << 48, 0xFEE0_0000];
        let e = Event::decode(io_fault);
        assert_eq!(e.kind, EventKind::IoPageFault);
        assert_eq!((e.device_id, e.flags, e.address), (0x18, 8, 0xFEE0_0000));
        assert!(e.is_interrupt());
        let e = Event::decode([0x5000_0000_0000_0000, 0x1_2340]);
        assert_eq!((e.kind.name(), e.device_id, e.address), ("ILLEGAL_COMMAND_ERROR", 0, 0x1_2340));
        assert!(!e.is_interrupt());
        assert_eq!(Event::decode([0x8000_0000_0000_00A0, 0]).kind, EventKind::InvalidDeviceRequest);
        assert_eq!(
            Event::decode([0x1000_0000_0000_0010, 0]).kind.name(),
            "ILLEGAL_DEV_TABLE_ENTRY"
        );
        assert_eq!(Event::decode([0xF000_0000_0000_0000, 0]).kind, EventKind::Other(0xF));
        assert!(is_empty([0, 0]));
        assert!(!is_empty(io_fault));
    }
}
