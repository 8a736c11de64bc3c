//! Controller registers (Base 2.0, 3.1.3) at the start of BAR 0, and the doorbells after
//! them.

/// Controller Capabilities, 64 bits.
pub const CAP: u64 = 0x00;
/// Version.
pub const VS: u64 = 0x08;
/// Interrupt Mask Set / Clear (pin and single-message MSI only).
pub const INTMS: u64 = 0x0C;
pub const INTMC: u64 = 0x10;
/// Controller Configuration.
pub const CC: u64 = 0x14;
/// Controller Status.
pub const CSTS: u64 = 0x1C;
/// Admin Queue Attributes: queue sizes.
pub const AQA: u64 = 0x24;
/// Admin Submission / Completion Queue base addresses, 64 bits each.
pub const ASQ: u64 = 0x28;
pub const ACQ: u64 = 0x30;
/// Where the doorbells start.
pub const DOORBELLS: u64 = 0x1000;

/// CAP, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap(pub u64);

impl Cap {
    /// Maximum Queue Entries Supported, as a count (the field is 0-based): bits 15:0.
    pub fn max_queue_entries(self) -> u32 {
        (self.0 & 0xFFFF) as u32 + 1
    }

    /// Contiguous Queues Required: bit 16.
    pub fn contiguous_queues_required(self) -> bool {
        self.0 & (1 << 16) != 0
    }

    /// Worst-case time to become ready after CC.EN changes, in milliseconds (TO, bits
    /// 31:24, in 500 ms units).
    pub fn timeout_ms(self) -> u32 {
        ((self.0 >> 24) & 0xFF) as u32 * 500
    }

    /// Doorbell Stride: each doorbell is `4 << DSTRD` bytes apart (bits 35:32).
    pub fn doorbell_stride(self) -> u64 {
        4 << ((self.0 >> 32) & 0xF)
    }

    /// Command Sets Supported, bits 44:37; bit 0 of the field is the NVM command set.
    pub fn supports_nvm_command_set(self) -> bool {
        (self.0 >> 37) & 1 != 0
    }

    /// Smallest and largest memory page size, in bytes (`1 << (12 + MPSMIN/MPSMAX)`, bits
    /// 51:48 and 55:52).
    pub fn page_size_min(self) -> u64 {
        1 << (12 + ((self.0 >> 48) & 0xF))
    }

    pub fn page_size_max(self) -> u64 {
        1 << (12 + ((self.0 >> 52) & 0xF))
    }
}

/// The offset of submission queue `qid`'s tail doorbell (queue 0 is the admin queue).
pub fn sq_tail_doorbell(qid: u16, stride: u64) -> u64 {
    DOORBELLS + (2 * qid as u64) * stride
}

/// The offset of completion queue `qid`'s head doorbell.
pub fn cq_head_doorbell(qid: u16, stride: u64) -> u64 {
    DOORBELLS + (2 * qid as u64 + 1) * stride
}

/// CC.EN.
pub const CC_ENABLE: u32 = 1;

/// The CC value that enables the controller: NVM command set (CSS 0), `page_size` memory
/// pages (MPS = log2(page) - 12), round-robin arbitration, no shutdown, 64-byte submission
/// and 16-byte completion entries (IOSQES = 6, IOCQES = 4). `None` for a page size that is
/// not a power of two from 4 KiB to 128 MiB.
pub fn cc_enable(page_size: u64) -> Option<u32> {
    if !page_size.is_power_of_two() || !(4096..=(1 << 27)).contains(&page_size) {
        return None;
    }
    let mps = page_size.trailing_zeros() - 12;
    Some(CC_ENABLE | mps << 7 | 6 << 16 | 4 << 20)
}

/// CSTS.RDY: the controller is ready (after enable) or not (after disable).
pub const CSTS_READY: u32 = 1;
/// CSTS.CFS: Controller Fatal Status.
pub const CSTS_FATAL: u32 = 1 << 1;

/// The AQA value for an admin submission queue of `sq` entries and a completion queue of
/// `cq` entries (both 0-based in the register, 2..=4096 entries). `None` outside that.
pub fn aqa(sq: u32, cq: u32) -> Option<u32> {
    let ok = |n: u32| (2..=4096).contains(&n);
    (ok(sq) && ok(cq)).then(|| (sq - 1) | (cq - 1) << 16)
}
