//! Queued invalidation (VT-d spec 6.5.2): a ring of 128-bit descriptors in memory; software
//! writes descriptors at the tail and moves IQT_REG, the unit consumes them up to the tail
//! and moves IQH_REG. Keel uses two kinds: the interrupt-entry-cache invalidation (6.5.2.7),
//! after any IRTE change, and the invalidation wait (6.5.2.8) with a status write, whose
//! completion proves every earlier descriptor has been processed.

/// Descriptor type 0x4: interrupt entry cache invalidate.
pub const TYPE_IEC: u64 = 0x4;
/// Descriptor type 0x5: invalidation wait.
pub const TYPE_WAIT: u64 = 0x5;
/// Bytes per descriptor (DW = 0).
pub const DESCRIPTOR_BYTES: u64 = 16;

/// An interrupt-entry-cache invalidation: all entries (G = 0), or the `2^mask` entries
/// starting at `index` (G = 1, IM in bits 31:27, IIDX in bits 47:32).
pub fn iec(selective: Option<(u16, u8)>) -> [u64; 2] {
    match selective {
        None => [TYPE_IEC, 0],
        Some((index, mask)) => {
            [TYPE_IEC | 1 << 4 | ((mask & 0x1F) as u64) << 27 | (index as u64) << 32, 0]
        }
    }
}

/// An invalidation wait that, once all earlier descriptors completed, writes `data` to the
/// dword at `status_phys` (SW = 1, bit 5) with the fence flag (FN, bit 6) so that later
/// descriptors wait for it; IF (interrupt on completion, bit 4) stays clear: Keel polls.
pub fn wait(status_phys: u64, data: u32) -> Option<[u64; 2]> {
    if status_phys & 0x3 != 0 {
        return None;
    }
    Some([TYPE_WAIT | 1 << 5 | 1 << 6 | (data as u64) << 32, status_phys])
}

/// Ring position arithmetic for a queue of `entries` descriptors (a power of two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ring {
    /// Descriptors in the ring.
    pub entries: u32,
}

impl Ring {
    /// The slot after `slot`.
    pub fn next(self, slot: u32) -> u32 {
        (slot + 1) % self.entries
    }

    /// IQT/IQH register value for a slot (offset in bytes, bits 18:4).
    pub fn register(self, slot: u32) -> u64 {
        slot as u64 * DESCRIPTOR_BYTES
    }

    /// The slot an IQH/IQT register value points at.
    pub fn slot(self, register: u64) -> u32 {
        ((register >> 4) & 0x7FFF) as u32 % self.entries
    }

    /// Free slots between the unit's head and software's tail (one is always kept empty so
    /// that head == tail means "empty").
    pub fn free(self, head: u32, tail: u32) -> u32 {
        (head + self.entries - tail - 1) % self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iec_descriptors() {
        assert_eq!(iec(None), [0x4, 0]);
        assert_eq!(iec(Some((24, 0))), [0x4 | 0x10 | 24 << 32, 0]);
        assert_eq!(iec(Some((0x100, 3))), [0x4 | 0x10 | 3 << 27 | 0x100 << 32, 0]);
    }

    #[test]
    fn wait_descriptor_writes_status() {
        assert_eq!(wait(0x1000, 0xC0DE), Some([0x5 | 0x20 | 0x40 | 0xC0DE << 32, 0x1000]));
        assert_eq!(wait(0x1002, 1), None, "status address must be dword aligned");
    }

    #[test]
    fn ring_positions() {
        let r = Ring { entries: 256 };
        assert_eq!(r.next(255), 0);
        assert_eq!(r.register(3), 0x30);
        assert_eq!(r.slot(0x30), 3);
        assert_eq!(r.slot(r.register(255)), 255);
        assert_eq!(r.free(0, 0), 255);
        assert_eq!(r.free(5, 4), 0);
        assert_eq!(r.free(4, 5), 254);
    }
}
