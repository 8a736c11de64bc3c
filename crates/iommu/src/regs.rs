//! The remapping unit's registers (VT-d spec 10.4) as typed values.

/// Register offsets from the unit's base (VT-d spec 10.4, table "Address Mapping for
/// Remapping Hardware Registers").
pub mod offset {
    /// Version (32-bit).
    pub const VERSION: usize = 0x00;
    /// Capability (64-bit).
    pub const CAPABILITY: usize = 0x08;
    /// Extended capability (64-bit).
    pub const EXTENDED_CAPABILITY: usize = 0x10;
    /// Global command (32-bit, write-only).
    pub const GLOBAL_COMMAND: usize = 0x18;
    /// Global status (32-bit).
    pub const GLOBAL_STATUS: usize = 0x1C;
    /// Fault status (32-bit).
    pub const FAULT_STATUS: usize = 0x34;
    /// Fault event control (32-bit).
    pub const FAULT_EVENT_CONTROL: usize = 0x38;
    /// Invalidation queue head (64-bit).
    pub const IQ_HEAD: usize = 0x80;
    /// Invalidation queue tail (64-bit).
    pub const IQ_TAIL: usize = 0x88;
    /// Invalidation queue address (64-bit).
    pub const IQ_ADDRESS: usize = 0x90;
    /// Invalidation completion status (32-bit).
    pub const IQ_COMPLETION_STATUS: usize = 0x9C;
    /// Interrupt-remapping table address (64-bit).
    pub const IRT_ADDRESS: usize = 0xB8;
}

/// CAP_REG (spec 10.4.2): the fields interrupt remapping needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability(pub u64);

impl Capability {
    /// Bit 7 (CM): caching mode (a virtual unit that caches not-present entries).
    pub fn caching_mode(self) -> bool {
        self.0 & (1 << 7) != 0
    }

    /// Byte offset of the first fault-recording register (FRO, bits 33:24, in 16-byte units).
    pub fn fault_recording_offset(self) -> usize {
        (((self.0 >> 24) & 0x3FF) as usize) * 16
    }

    /// Number of fault-recording registers (NFR + 1, bits 47:40).
    pub fn fault_recording_count(self) -> usize {
        ((self.0 >> 40) & 0xFF) as usize + 1
    }
}

/// ECAP_REG (spec 10.4.3): the fields interrupt remapping needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtendedCapability(pub u64);

impl ExtendedCapability {
    /// Bit 0 (C): the unit snoops its table reads (no cache flush needed after writes).
    pub fn coherent(self) -> bool {
        self.0 & (1 << 0) != 0
    }

    /// Bit 1 (QI): queued invalidation.
    pub fn queued_invalidation(self) -> bool {
        self.0 & (1 << 1) != 0
    }

    /// Bit 3 (IR): interrupt remapping.
    pub fn interrupt_remapping(self) -> bool {
        self.0 & (1 << 3) != 0
    }

    /// Bit 4 (EIM): extended interrupt mode (32-bit destinations, needed for x2APIC).
    pub fn extended_interrupt_mode(self) -> bool {
        self.0 & (1 << 4) != 0
    }
}

/// One command of the global command register and its status bit (GCMD/GSTS share bit
/// positions, spec 10.4.4/10.4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobalBit {
    /// Bit 31: translation enable (DMA remapping).
    TranslationEnable,
    /// Bit 30: set root table pointer (one-shot; status RTPS).
    SetRootTablePointer,
    /// Bit 27: write buffer flush (one-shot; status WBFS clears when done).
    WriteBufferFlush,
    /// Bit 26: queued invalidation enable.
    QueuedInvalidation,
    /// Bit 25: interrupt remapping enable.
    InterruptRemapping,
    /// Bit 24: set interrupt-remap table pointer (one-shot; status IRTPS).
    SetInterruptTablePointer,
    /// Bit 23: compatibility-format interrupts allowed (xAPIC mode only).
    CompatibilityFormat,
}

/// GSTS bits that report one-shot commands (RTPS 30, FLS 29, WBFS 27, IRTPS 24): they must
/// not be echoed back into GCMD, or the command would be re-issued (spec 10.4.4: "status =
/// GSTS & 0x96FFFFFF").
pub const ONE_SHOT_STATUS: u32 = !0x96FF_FFFF;

impl GlobalBit {
    /// Bit mask (the same in GCMD and GSTS).
    pub fn mask(self) -> u32 {
        1 << match self {
            GlobalBit::TranslationEnable => 31,
            GlobalBit::SetRootTablePointer => 30,
            GlobalBit::WriteBufferFlush => 27,
            GlobalBit::QueuedInvalidation => 26,
            GlobalBit::InterruptRemapping => 25,
            GlobalBit::SetInterruptTablePointer => 24,
            GlobalBit::CompatibilityFormat => 23,
        }
    }

    /// The GCMD value that changes only this command: the persistent state read from GSTS
    /// with the one-shot bits cleared, then this bit set or cleared (spec 10.4.4).
    pub fn command(self, status: u32, set: bool) -> u32 {
        let persistent = status & !ONE_SHOT_STATUS;
        if set {
            persistent | self.mask()
        } else {
            persistent & !self.mask()
        }
    }

    /// Whether `status` shows the command done (`set`: bit set; otherwise clear).
    pub fn reached(self, status: u32, set: bool) -> bool {
        (status & self.mask() != 0) == set
    }
}

/// IRTA_REG (spec 10.4.29): table base (4-KiB aligned), EIME (bit 11), size S (3:0).
pub fn irt_address(table_phys: u64, size_field: u8, extended: bool) -> Option<u64> {
    if table_phys & 0xFFF != 0 || size_field > 15 {
        return None;
    }
    Some(table_phys | if extended { 1 << 11 } else { 0 } | size_field as u64)
}

/// IQA_REG (spec 10.4.23): queue base (4-KiB aligned), DW = 0 (128-bit descriptors), QS
/// (2:0): 2^QS pages of 256 descriptors each.
pub fn iq_address(queue_phys: u64, size_field: u8) -> Option<u64> {
    if queue_phys & 0xFFF != 0 || size_field > 7 {
        return None;
    }
    Some(queue_phys | size_field as u64)
}

/// FSTS_REG (spec 10.4.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultStatus(pub u32);

impl FaultStatus {
    /// Bit 0 (PFO): fault records overflowed.
    pub fn overflow(self) -> bool {
        self.0 & 1 != 0
    }

    /// Bit 1 (PPF): at least one fault-recording register holds a fault.
    pub fn pending(self) -> bool {
        self.0 & 2 != 0
    }

    /// Bit 4 (IQE): a descriptor the unit fetched was invalid.
    pub fn queue_error(self) -> bool {
        self.0 & (1 << 4) != 0
    }

    /// Bit 6 (ITE): an invalidation timed out (device-TLB).
    pub fn invalidation_timeout(self) -> bool {
        self.0 & (1 << 6) != 0
    }

    /// Bits 15:8 (FRI): index of the first recorded fault.
    pub fn first_record(self) -> usize {
        ((self.0 >> 8) & 0xFF) as usize
    }

    /// The RW1C error bits to write back to clear them (PFO, IQE, ICE, ITE).
    pub fn clear_value(self) -> u32 {
        self.0 & (1 | 1 << 4 | 1 << 5 | 1 << 6)
    }
}

/// One fault-recording register (128 bits, spec 10.4.14).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultRecord {
    /// Bits 103:96: the fault reason (see [`fault_reason`]).
    pub reason: u8,
    /// Bits 79:64: requester id of the faulting request.
    pub source_id: u16,
    /// For interrupt-remapping faults, FI bits 63:48: the interrupt index.
    pub interrupt_index: u16,
}

/// Bit 127 (F) of a fault-recording register, i.e. bit 63 of its upper quadword: set while
/// the record holds a fault; software writes 1 to clear it.
pub const FAULT_RECORD_FAULT: u64 = 1 << 63;

impl FaultRecord {
    /// Decodes the two quadwords of a fault-recording register; `None` when F is clear.
    pub fn decode(low: u64, high: u64) -> Option<Self> {
        if high & FAULT_RECORD_FAULT == 0 {
            return None;
        }
        Some(FaultRecord {
            reason: (high >> 32) as u8,
            source_id: high as u16,
            interrupt_index: (low >> 48) as u16,
        })
    }
}

/// The name of an interrupt-remapping fault reason (spec 7.1.3, table of fault reasons).
pub fn fault_reason(reason: u8) -> &'static str {
    match reason {
        0x20 => "reserved field set in a remappable request",
        0x21 => "interrupt index beyond the table size",
        0x22 => "IRTE not present",
        0x23 => "IRT read failed",
        0x24 => "IRTE reserved field set",
        0x25 => "compatibility-format request blocked",
        0x26 => "source-id validation failed",
        0x27 => "posted IRTE with posting not supported",
        0x01..=0x1F => "DMA remapping fault",
        _ => "unknown fault reason",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_never_echoes_one_shot_status() {
        // Status: TES=0, RTPS=1, QIES=1, IRTPS=1 (one-shot RTPS and IRTPS must drop).
        let status = 1 << 30 | 1 << 26 | 1 << 24;
        assert_eq!(GlobalBit::InterruptRemapping.command(status, true), 1 << 26 | 1 << 25);
        assert_eq!(GlobalBit::SetInterruptTablePointer.command(1 << 26, true), 1 << 26 | 1 << 24);
        assert_eq!(
            GlobalBit::CompatibilityFormat.command(1 << 25 | 1 << 23 | 1 << 26, false),
            1 << 25 | 1 << 26
        );
        assert_eq!(ONE_SHOT_STATUS, 1 << 30 | 1 << 29 | 1 << 27 | 1 << 24);
        assert!(GlobalBit::QueuedInvalidation.reached(1 << 26, true));
        assert!(!GlobalBit::QueuedInvalidation.reached(0, true));
        assert!(GlobalBit::InterruptRemapping.reached(0, false));
        assert_eq!(GlobalBit::TranslationEnable.mask(), 1 << 31);
    }

    #[test]
    fn capability_fields() {
        // QEMU: NFR = 0 (one record), FRO = 0x22 (offset 0x220).
        let cap = Capability(0x22 << 24 | 1 << 7);
        assert_eq!(cap.fault_recording_offset(), 0x220);
        assert_eq!(cap.fault_recording_count(), 1);
        assert!(cap.caching_mode());
        let ecap = ExtendedCapability(0b11010);
        assert!(
            ecap.queued_invalidation()
                && ecap.interrupt_remapping()
                && ecap.extended_interrupt_mode()
        );
        assert!(!ecap.coherent());
    }

    #[test]
    fn table_and_queue_addresses() {
        assert_eq!(irt_address(0x12_3000, 7, true), Some(0x12_3807));
        assert_eq!(irt_address(0x12_3000, 7, false), Some(0x12_3007));
        assert_eq!(irt_address(0x12_3800, 7, true), None);
        assert_eq!(irt_address(0x12_3000, 16, true), None);
        assert_eq!(iq_address(0x40_0000, 0), Some(0x40_0000));
        assert_eq!(iq_address(0x40_0010, 0), None);
        assert_eq!(iq_address(0x40_0000, 8), None);
    }

    #[test]
    fn fault_status_and_records() {
        let s = FaultStatus(0x0302 | 1 << 4 | 1);
        assert!(s.pending() && s.queue_error() && s.overflow());
        assert!(!s.invalidation_timeout());
        assert_eq!(s.first_record(), 3);
        assert_eq!(s.clear_value(), 1 | 1 << 4);
        let high = FAULT_RECORD_FAULT | 0x22 << 32 | 0xFF00;
        let r = FaultRecord::decode(0x0018 << 48, high).unwrap();
        assert_eq!(r, FaultRecord { reason: 0x22, source_id: 0xFF00, interrupt_index: 0x18 });
        assert_eq!(fault_reason(r.reason), "IRTE not present");
        assert_eq!(FaultRecord::decode(0, high & !FAULT_RECORD_FAULT), None);
        assert_eq!(fault_reason(0x26), "source-id validation failed");
        assert_eq!(fault_reason(0x05), "DMA remapping fault");
        assert_eq!(fault_reason(0x80), "unknown fault reason");
    }
}
