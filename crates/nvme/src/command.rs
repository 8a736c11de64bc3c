//! Submission queue entries (Base 2.0, 4.2): 64 bytes, little-endian dwords.
//!
//! CDW0 holds the opcode (bits 7:0), the fused-operation bits (9:8, 0 here), PSDT (15:14,
//! 0: PRPs) and the command identifier (31:16). NSID is dword 1, the data pointer (PRP1,
//! PRP2) dwords 6–9, and dwords 10–15 are command specific.

/// Admin opcodes used by the driver.
pub const ADMIN_DELETE_IO_SQ: u8 = 0x00;
pub const ADMIN_CREATE_IO_SQ: u8 = 0x01;
pub const ADMIN_DELETE_IO_CQ: u8 = 0x04;
pub const ADMIN_CREATE_IO_CQ: u8 = 0x05;
pub const ADMIN_IDENTIFY: u8 = 0x06;
pub const ADMIN_SET_FEATURES: u8 = 0x09;
/// Feature identifiers: Number of Queues (Base 2.0, 5.27.1.5).
pub const FEATURE_NUMBER_OF_QUEUES: u8 = 0x07;
/// NVM command set I/O opcodes.
pub const IO_FLUSH: u8 = 0x00;
pub const IO_WRITE: u8 = 0x01;
pub const IO_READ: u8 = 0x02;

/// Identify CNS values: the namespace's data structure, the controller's, the active
/// namespace ID list.
pub const CNS_NAMESPACE: u8 = 0x00;
pub const CNS_CONTROLLER: u8 = 0x01;
pub const CNS_ACTIVE_NAMESPACES: u8 = 0x02;

/// Bytes per submission entry.
pub const ENTRY_SIZE: usize = 64;

/// One submission queue entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Command {
    pub opcode: u8,
    pub cid: u16,
    pub nsid: u32,
    pub prp1: u64,
    pub prp2: u64,
    /// Command dwords 10 to 15.
    pub cdw: [u32; 6],
}

impl Command {
    /// The 64 bytes as the controller reads them.
    pub fn to_bytes(&self) -> [u8; ENTRY_SIZE] {
        let mut d = [0u32; 16];
        d[0] = self.opcode as u32 | (self.cid as u32) << 16;
        d[1] = self.nsid;
        d[6] = self.prp1 as u32;
        d[7] = (self.prp1 >> 32) as u32;
        d[8] = self.prp2 as u32;
        d[9] = (self.prp2 >> 32) as u32;
        d[10..16].copy_from_slice(&self.cdw);
        let mut b = [0u8; ENTRY_SIZE];
        for (i, dw) in d.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&dw.to_le_bytes());
        }
        b
    }

    /// Decodes an entry (the fields this crate writes; others are dropped).
    pub fn from_bytes(b: &[u8; ENTRY_SIZE]) -> Command {
        let d = |i: usize| crate::le32(b, i * 4);
        Command {
            opcode: d(0) as u8,
            cid: (d(0) >> 16) as u16,
            nsid: d(1),
            prp1: crate::le64(b, 24),
            prp2: crate::le64(b, 32),
            cdw: [d(10), d(11), d(12), d(13), d(14), d(15)],
        }
    }

    /// Identify: `cns` selects the structure, written as one 4 KiB page at `buffer`.
    pub fn identify(cid: u16, cns: u8, nsid: u32, buffer: u64) -> Command {
        Command {
            opcode: ADMIN_IDENTIFY,
            cid,
            nsid,
            prp1: buffer,
            cdw: [cns as u32, 0, 0, 0, 0, 0],
            ..Command::default()
        }
    }

    /// Set Features, Number of Queues: asks for `pairs` I/O submission and completion queues
    /// (1..=65,535; NSQR and NCQR are 0-based). The completion's result says how many the
    /// controller allocated ([`granted_queue_pairs`]).
    pub fn set_queue_count(cid: u16, pairs: u16) -> Command {
        let n = pairs.saturating_sub(1) as u32;
        Command {
            opcode: ADMIN_SET_FEATURES,
            cid,
            cdw: [FEATURE_NUMBER_OF_QUEUES as u32, n << 16 | n, 0, 0, 0, 0],
            ..Command::default()
        }
    }

    /// Create I/O Completion Queue `qid` of `entries` entries (physically contiguous at
    /// `base`); `vector` is its interrupt vector when `interrupts` is set (polled
    /// otherwise).
    pub fn create_io_cq(
        cid: u16,
        qid: u16,
        entries: u16,
        base: u64,
        vector: u16,
        interrupts: bool,
    ) -> Command {
        let flags = 1 | (interrupts as u32) << 1; // PC = 1, IEN
        Command {
            opcode: ADMIN_CREATE_IO_CQ,
            cid,
            prp1: base,
            cdw: [queue_dword(qid, entries), (vector as u32) << 16 | flags, 0, 0, 0, 0],
            ..Command::default()
        }
    }

    /// Create I/O Submission Queue `qid` of `entries` entries at `base`, completing into
    /// completion queue `cqid` (medium priority, which round-robin arbitration ignores).
    pub fn create_io_sq(cid: u16, qid: u16, entries: u16, base: u64, cqid: u16) -> Command {
        Command {
            opcode: ADMIN_CREATE_IO_SQ,
            cid,
            prp1: base,
            cdw: [queue_dword(qid, entries), (cqid as u32) << 16 | 1, 0, 0, 0, 0],
            ..Command::default()
        }
    }

    /// Read or Write of `blocks` logical blocks from `lba`, with the data pointer `prp`.
    /// `blocks` is 1..=65,536 (NLB is 0-based; a caller passing 0 gets 1 block).
    pub fn read(cid: u16, nsid: u32, lba: u64, blocks: u32, prp: Prp) -> Command {
        Self::io(IO_READ, cid, nsid, lba, blocks, prp)
    }

    pub fn write(cid: u16, nsid: u32, lba: u64, blocks: u32, prp: Prp) -> Command {
        Self::io(IO_WRITE, cid, nsid, lba, blocks, prp)
    }

    fn io(opcode: u8, cid: u16, nsid: u32, lba: u64, blocks: u32, prp: Prp) -> Command {
        let nlb = blocks.saturating_sub(1) & 0xFFFF;
        Command {
            opcode,
            cid,
            nsid,
            prp1: prp.prp1,
            prp2: prp.prp2,
            cdw: [lba as u32, (lba >> 32) as u32, nlb, 0, 0, 0],
        }
    }
}

/// The I/O queue pairs a Number of Queues result allows: the smaller of NSQA (bits 15:0)
/// and NCQA (31:16), both 0-based.
pub fn granted_queue_pairs(result: u32) -> u32 {
    (result & 0xFFFF).min(result >> 16) + 1
}

/// CDW10 of the queue-creation commands: QSIZE (0-based) in 31:16, QID in 15:0.
fn queue_dword(qid: u16, entries: u16) -> u32 {
    (entries.saturating_sub(1) as u32) << 16 | qid as u32
}

/// The data pointer of a command that uses PRPs (Base 2.0, 4.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prp {
    pub prp1: u64,
    pub prp2: u64,
}

/// Why a transfer cannot be described by PRP1 and PRP2 alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrpError {
    /// Zero bytes.
    Empty,
    /// The address is not dword aligned (PRP entries' bits 1:0 are reserved).
    Misaligned,
    /// The buffer spans more than two pages: it needs a PRP list.
    NeedsList,
}

impl Prp {
    /// The PRPs of a buffer at device address `addr` of `len` bytes, with `page` byte
    /// memory pages. PRP1 may start inside a page; if the buffer runs into a second page,
    /// PRP2 is that page's address; more than two pages need a PRP list, which this does
    /// not build.
    pub fn for_buffer(addr: u64, len: u64, page: u64) -> Result<Prp, PrpError> {
        if len == 0 {
            return Err(PrpError::Empty);
        }
        if addr & 3 != 0 {
            return Err(PrpError::Misaligned);
        }
        let first_page = addr & !(page - 1);
        let last_page = (addr + len - 1) & !(page - 1);
        match (last_page - first_page) / page {
            0 => Ok(Prp { prp1: addr, prp2: 0 }),
            1 => Ok(Prp { prp1: addr, prp2: last_page }),
            _ => Err(PrpError::NeedsList),
        }
    }
}
