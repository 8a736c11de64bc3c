//! DMA remapping on a unit (VT-d spec 3, 6.5, 10.4): the capability fields it depends on,
//! the invalidation descriptors for the context cache and the IOTLB, the enabling sequence
//! (root table pointer, then translation) and decoded DMA fault records.

use crate::queue::DESCRIPTOR_BYTES;
use crate::regs::{offset, FaultStatus, GlobalBit, FAULT_RECORD_FAULT};
use crate::sequence::{command, SequenceError, UnitRegisters};

/// Root table address register (64-bit, spec 10.4.6).
pub const ROOT_TABLE_ADDRESS: usize = 0x20;

/// CAP_REG (spec 10.4.2): the fields DMA remapping needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaCapability(pub u64);

impl DmaCapability {
    /// Bits 2:0 (ND): the unit supports 2^(4 + 2 ND) domain ids.
    pub fn domains(self) -> u32 {
        1 << (4 + 2 * (self.0 & 7).min(6))
    }

    /// Bit 4 (RWBF): table writes must be followed by a write-buffer flush.
    pub fn write_buffer_flush(self) -> bool {
        self.0 & 1 << 4 != 0
    }

    /// Bit 7 (CM): the unit may cache not-present and faulting entries, so a
    /// not-present → present change must be invalidated too (spec 6.1).
    pub fn caching_mode(self) -> bool {
        self.0 & 1 << 7 != 0
    }

    /// Bits 12:8 (SAGAW): supported adjusted guest address widths.
    pub fn sagaw(self) -> u8 {
        ((self.0 >> 8) & 0x1F) as u8
    }

    /// Bits 21:16 (MGAW): maximum guest address width in bits.
    pub fn mgaw(self) -> u32 {
        ((self.0 >> 16) & 0x3F) as u32 + 1
    }

    /// Bit 54 (DWD) and bit 55 (DRD): IOTLB invalidations may drain writes / reads.
    pub fn drain(self) -> (bool, bool) {
        (self.0 & 1 << 54 != 0, self.0 & 1 << 55 != 0)
    }

    /// Bits 53:48 (MAMV): the largest page-selective invalidation mask.
    pub fn max_address_mask(self) -> u8 {
        ((self.0 >> 48) & 0x3F) as u8
    }

    /// Whether `domain` may tag a context entry: below 2^(4 + 2 ND), and not 0 in caching
    /// mode (spec 6.2.2: the unit reserves it).
    pub fn domain_usable(self, domain: u16) -> bool {
        (domain as u32) < self.domains() && !(domain == 0 && self.caching_mode())
    }
}

/// Descriptor type 0x1: context-cache invalidate (spec 6.5.2.1).
pub const TYPE_CONTEXT_CACHE: u64 = 0x1;
/// Descriptor type 0x2: IOTLB invalidate (spec 6.5.2.3).
pub const TYPE_IOTLB: u64 = 0x2;

/// What a context-cache invalidation covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextScope {
    /// Every cached context entry.
    Global,
    /// One function's entry (FM = 0) in `domain`: after it is made present or cleared.
    Device {
        /// The domain the entry had (or now has).
        domain: u16,
        /// The function's requester id.
        source: u16,
    },
}

/// A context-cache invalidation descriptor.
pub fn context_cache(scope: ContextScope) -> [u64; 2] {
    match scope {
        ContextScope::Global => [TYPE_CONTEXT_CACHE | 1 << 4, 0],
        ContextScope::Device { domain, source } => {
            [TYPE_CONTEXT_CACHE | 3 << 4 | (domain as u64) << 16 | (source as u64) << 32, 0]
        }
    }
}

/// What an IOTLB invalidation covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IotlbScope {
    /// Every domain.
    Global,
    /// Every translation of one domain.
    Domain(u16),
    /// The 2^`mask` pages at `address` (aligned to them) in `domain`.
    Pages {
        /// The domain.
        domain: u16,
        /// First page's address.
        address: u64,
        /// Address mask (AM): log2 of the page count.
        mask: u8,
    },
}

/// An IOTLB invalidation descriptor, draining reads and writes when the unit can (so that
/// no request translated through the old entry is still on its way when the wait
/// descriptor after it completes); `None` for a misaligned page-selective range.
pub fn iotlb(scope: IotlbScope, capability: DmaCapability) -> Option<[u64; 2]> {
    let (dw, dr) = capability.drain();
    let drain = (dw as u64) << 6 | (dr as u64) << 7;
    Some(match scope {
        IotlbScope::Global => [TYPE_IOTLB | 1 << 4 | drain, 0],
        IotlbScope::Domain(d) => [TYPE_IOTLB | 2 << 4 | drain | (d as u64) << 16, 0],
        IotlbScope::Pages { domain, address, mask } => {
            // A mask past 51 leaves no bits of a 4 KiB-aligned span in 64: never valid.
            let span = match 4096u64.checked_shl(u32::from(mask)) {
                Some(span) if mask <= 0x3F && span != 0 => span,
                _ => return None,
            };
            if address % span != 0 {
                return None;
            }
            [TYPE_IOTLB | 3 << 4 | drain | (domain as u64) << 16, address | mask as u64]
        }
    })
}

/// The IOTLB invalidation for `pages` pages at `address` in `domain`: page-selective when
/// one naturally aligned block within MAMV covers exactly them, domain-selective otherwise
/// (a wider invalidation is always correct, a narrower one never).
pub fn iotlb_range(domain: u16, address: u64, pages: u64, cap: DmaCapability) -> IotlbScope {
    let mask = pages.trailing_zeros() as u8;
    let span = 4096u64.checked_shl(u32::from(mask)).filter(|s| *s != 0);
    match span {
        Some(span)
            if pages.is_power_of_two() && address % span == 0 && mask <= cap.max_address_mask() =>
        {
            IotlbScope::Pages { domain, address, mask }
        }
        _ => IotlbScope::Domain(domain),
    }
}

/// A change to a context or page-table entry, for [`must_invalidate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryChange {
    /// Not present → present.
    Populated,
    /// Present → not present, or a present entry changed.
    Revoked,
}

/// Whether an entry change needs an invalidation before it takes effect: always for a
/// revocation; for a not-present → present change only in caching mode (spec 6.1: such a
/// unit may have cached the not-present entry).
pub fn must_invalidate(change: EntryChange, capability: DmaCapability) -> bool {
    change == EntryChange::Revoked || capability.caching_mode()
}

/// RTADDR_REG: the root table (4-KiB aligned), TTM = 00 (legacy mode).
pub fn root_table_address(root_phys: u64) -> Option<u64> {
    (root_phys & 0xFFF == 0).then_some(root_phys)
}

/// Flushes the unit's write buffer when CAP.RWBF asks for it (spec 6.8): after table
/// writes, before the invalidation that publishes them. Returns whether a flush was issued.
pub fn flush_write_buffer<R: UnitRegisters, E>(
    regs: &mut R,
    capability: DmaCapability,
) -> Result<bool, SequenceError<E>> {
    if !capability.write_buffer_flush() {
        return Ok(false);
    }
    let bit = GlobalBit::WriteBufferFlush;
    let status = regs.read32(offset::GLOBAL_STATUS);
    regs.write32(offset::GLOBAL_COMMAND, bit.command(status, true));
    let mut done = |r: &mut R| bit.reached(r.read32(offset::GLOBAL_STATUS), false);
    if regs.poll(&mut done) {
        Ok(true)
    } else {
        Err(SequenceError::CommandTimeout(bit))
    }
}

/// What [`enable_translation`] found and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TranslationStart {
    /// Firmware had left translation on: the new root table replaced its tables without
    /// ever turning translation off (no window in which DMA goes untranslated).
    pub firmware_left_on: bool,
    /// A write-buffer flush was issued (CAP.RWBF).
    pub write_buffer_flushed: bool,
}

/// The DMA enabling sequence (spec 10.4.4-10.4.6, 6.5): RTADDR, then SRTP until RTPS; the
/// write buffer flushed when required; then a global context-cache and IOTLB invalidation
/// (`invalidate_all`, through the running invalidation queue: cached entries of an earlier
/// table must go); then TE until TES. The root table must already be in memory.
pub fn enable_translation<R: UnitRegisters, E>(
    regs: &mut R,
    root_phys: u64,
    capability: DmaCapability,
    invalidate_all: impl FnOnce(&mut R) -> Result<(), E>,
) -> Result<TranslationStart, SequenceError<E>> {
    let firmware_left_on =
        GlobalBit::TranslationEnable.reached(regs.read32(offset::GLOBAL_STATUS), true);
    let rtaddr = root_table_address(root_phys).expect("page-aligned root table");
    regs.write64(ROOT_TABLE_ADDRESS, rtaddr);
    command(regs, GlobalBit::SetRootTablePointer, true)?;
    let write_buffer_flushed = flush_write_buffer(regs, capability)?;
    invalidate_all(regs).map_err(SequenceError::Invalidation)?;
    if !firmware_left_on {
        command(regs, GlobalBit::TranslationEnable, true)?;
    }
    Ok(TranslationStart { firmware_left_on, write_buffer_flushed })
}

/// Fault event data register (32-bit, spec 10.4.11): the interrupt's vector.
pub const FAULT_EVENT_DATA: usize = 0x3C;
/// Fault event address register (32-bit, spec 10.4.12).
pub const FAULT_EVENT_ADDRESS: usize = 0x40;
/// Fault event upper address register (32-bit, spec 10.4.13): with extended interrupt mode,
/// bits 31:8 of the destination APIC ID.
pub const FAULT_EVENT_UPPER_ADDRESS: usize = 0x44;

/// The fault-event interrupt's (data, address, upper address) for `vector` to the CPU with
/// APIC ID `apic_id`, physical destination, fixed delivery (spec 5.1.6, 10.4.11-13). A
/// 32-bit destination needs extended interrupt mode; `None` for an ID the mode cannot name.
pub fn fault_event_message(vector: u8, apic_id: u32, extended: bool) -> Option<(u32, u32, u32)> {
    if !extended && apic_id > 0xFF {
        return None;
    }
    let address = 0xFEE0_0000 | (apic_id & 0xFF) << 12;
    let upper = if extended { apic_id & 0xFFFF_FF00 } else { 0 };
    Some((vector as u32, address, upper))
}

/// A DMA remapping fault record (spec 10.4.14): reasons 0x01-0x1F.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaFault {
    /// Fault reason (see [`dma_fault_reason`]).
    pub reason: u8,
    /// Requester id of the faulting request.
    pub source_id: u16,
    /// The page the request addressed (FI, bits 63:12).
    pub address: u64,
    /// A write (T = 0) or a read (T = 1, bit 126).
    pub write: bool,
}

impl DmaFault {
    /// Decodes a fault-recording register; `None` when F is clear or it is an interrupt
    /// remapping fault (reason 0x20 and above).
    pub fn decode(low: u64, high: u64) -> Option<DmaFault> {
        let reason = (high >> 32) as u8;
        if high & FAULT_RECORD_FAULT == 0 || reason == 0 || reason >= 0x20 {
            return None;
        }
        Some(DmaFault {
            reason,
            source_id: high as u16,
            address: low & !0xFFF,
            write: high & 1 << 62 == 0,
        })
    }
}

/// The name of a DMA remapping fault reason (spec 7.1.3).
pub fn dma_fault_reason(reason: u8) -> &'static str {
    match reason {
        0x1 => "root entry not present",
        0x2 => "context entry not present",
        0x3 => "context entry invalid",
        0x4 => "address beyond the guest address width",
        0x5 => "write not permitted",
        0x6 => "read not permitted",
        0x7 => "page-table entry access failed",
        0x8 => "root table access failed",
        0x9 => "context table access failed",
        0xA => "root entry reserved field set",
        0xB => "context entry reserved field set",
        0xC => "page-table entry reserved field set",
        0xD => "translation type blocked",
        _ => "unknown DMA fault reason",
    }
}

/// Reads every fault-recording register that holds a fault, hands its raw quadwords and
/// slot to `sink` and clears it, then clears FSTS's error bits. At most the unit's NFR
/// records are visited per call, so a fault storm costs each call a bounded time.
pub fn collect_raw_faults<R: UnitRegisters>(
    regs: &mut R,
    capability: crate::regs::Capability,
    mut sink: impl FnMut(u64, u64, usize),
) -> FaultStatus {
    let status = FaultStatus(regs.read32(offset::FAULT_STATUS));
    if status.pending() {
        let count = capability.fault_recording_count();
        let base = capability.fault_recording_offset();
        for i in 0..count {
            let slot = (status.first_record() + i) % count;
            let at = base + slot * 16;
            let (low, high) = (regs.read64(at), regs.read64(at + 8));
            if high & FAULT_RECORD_FAULT == 0 {
                continue;
            }
            sink(low, high, slot);
            regs.write64(at + 8, FAULT_RECORD_FAULT);
        }
    }
    if status.clear_value() != 0 {
        regs.write32(offset::FAULT_STATUS, status.clear_value());
    }
    status
}

/// Bytes of one descriptor (checked against the queue's layout).
const _: () = assert!(DESCRIPTOR_BYTES == 16);

#[cfg(test)]
#[path = "dma_tests.rs"]
mod tests;
