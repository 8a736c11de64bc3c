//! Resetting a [`Platform`] in place and the duplicate-ID bitmaps `add_cpu` uses: at 4,096
//! CPUs a `Platform` is too large to rebuild through a temporary or to check for duplicate
//! IDs by scanning.

use crate::{Platform, ISA_IRQS};

/// IDs tracked by the duplicate bitmaps (8 x 4,096: room for sparse topologies).
pub(crate) const SEEN_BITS: u32 = 32_768;
pub(crate) const SEEN_WORDS: usize = SEEN_BITS as usize / 64;

/// Sets `id`'s bit in `bits`; returns `Some(was_set)`, or `None` when `id` is too large
/// for the bitmap.
pub(crate) fn mark_seen(bits: &mut [u64; SEEN_WORDS], id: u32) -> Option<bool> {
    if id >= SEEN_BITS {
        return None;
    }
    let (word, bit) = (id as usize / 64, 1u64 << (id % 64));
    let was = bits[word] & bit != 0;
    bits[word] |= bit;
    Some(was)
}

impl Platform {
    /// Resets every field to [`Platform::empty`]'s value without building a
    /// whole empty `Platform` (over 100 KiB) as a temporary: the arrays are
    /// only read up to their counts, so only the counts and small fields reset.
    pub(crate) fn clear(&mut self) {
        self.local_apic_address = 0;
        self.lapic_address_overridden = false;
        self.pc_at_compatible = false;
        self.bsp_apic_id = 0;
        self.bsp_found = false;
        self.cpu_count = 0;
        self.skipped_disabled = 0;
        self.duplicates = 0;
        self.invalid_cpus = 0;
        self.dropped_cpus = 0;
        self.ioapic_count = 0;
        self.overrides = [None; ISA_IRQS];
        self.nmi_source_count = 0;
        self.lapic_nmi_count = 0;
        self.diag_count = 0;
        self.diags_dropped = 0;
        self.seen_other_kinds = [0; 8];
        self.seen_apic_ids = [0; SEEN_WORDS];
        self.seen_uids = [0; SEEN_WORDS];
    }
}
