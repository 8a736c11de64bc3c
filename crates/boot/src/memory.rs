//! The physical memory map the frame allocator is seeded from.
//!
//! Firmware memory maps overlap, are unsorted and describe memory the kernel
//! must not hand out (its own image, boot modules, the bootloader's data, the
//! first MiB). [`MemoryMap`] turns that into a sorted, disjoint list of usable
//! ranges with a fixed capacity, so it works before the heap exists and never
//! loses a range silently: running out of room is a [`MemoryMapError`].

use core::fmt;

use crate::multiboot::{BootInfo, BootRange, MemoryType, MmapEntry};

/// Size of the pages the frame allocator hands out; usable ranges are
/// trimmed to this granularity because a partial page cannot be allocated.
pub const PAGE_SIZE: u64 = 4096;

/// End of the first MiB. It holds the real-mode IVT, the BIOS data area, EBDA,
/// option ROMs and the AP trampoline page, so the kernel always reserves it.
pub const LOW_MEMORY_END: u64 = 0x10_0000;

/// Number of disjoint usable ranges a [`MemoryMap`] can hold. Real firmware
/// reports a few dozen regions; reservations can split each of them once.
pub const MEMORY_MAP_CAPACITY: usize = 128;

/// A half-open physical address range `[start, end)`.
///
/// Half-open so that adjacent ranges share a boundary value and empty ranges
/// (`start == end`) need no special casing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PhysRange {
    /// First byte of the range.
    pub start: u64,
    /// One past the last byte of the range.
    pub end: u64,
}

impl PhysRange {
    /// Builds `[start, end)`; `None` if `start > end`, so inverted ranges from
    /// bad input cannot be created by accident.
    pub const fn new(start: u64, end: u64) -> Option<Self> {
        if start > end {
            None
        } else {
            Some(Self { start, end })
        }
    }

    /// Builds `[base, base + len)`; `None` if the end overflows `u64`, which is
    /// how firmware tables express garbage lengths.
    pub const fn from_base_len(base: u64, len: u64) -> Option<Self> {
        match base.checked_add(len) {
            Some(end) => Some(Self { start: base, end }),
            None => None,
        }
    }

    /// Length in bytes (zero for empty or inverted ranges).
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    /// True if the range contains no byte.
    pub const fn is_empty(&self) -> bool {
        self.start >= self.end
    }

    /// True if `addr` lies inside the range.
    pub const fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// True if the two ranges share at least one byte.
    pub const fn overlaps(&self, other: &PhysRange) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// The largest page-aligned sub-range (start rounded up, end rounded down),
    /// or `None` if it contains no whole page: only whole pages can be
    /// allocated.
    pub const fn page_aligned(&self) -> Option<PhysRange> {
        let start = match align_up(self.start, PAGE_SIZE) {
            Some(s) => s,
            None => return None,
        };
        let end = self.end & !(PAGE_SIZE - 1);
        if start < end {
            Some(PhysRange { start, end })
        } else {
            None
        }
    }
}

impl fmt::Display for PhysRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.start, self.end)
    }
}

const fn align_up(value: u64, align: u64) -> Option<u64> {
    match value.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// Why a [`MemoryMap`] operation was refused. The map is left unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryMapError {
    /// More disjoint usable ranges than [`MEMORY_MAP_CAPACITY`]; refusing is
    /// safer than dropping memory (or a reservation) silently.
    CapacityExceeded {
        /// The capacity that was exceeded.
        capacity: usize,
    },
    /// A range with `start > end` was passed in.
    InvalidRange {
        /// Start of the rejected range.
        start: u64,
        /// End of the rejected range.
        end: u64,
    },
    /// A memory-map entry whose `base + length` overflows `u64`.
    RangeOverflow {
        /// Base address of the entry.
        base: u64,
        /// Length of the entry.
        length: u64,
    },
}

impl fmt::Display for MemoryMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::CapacityExceeded { capacity } => {
                write!(f, "memory map needs more than {capacity} disjoint usable ranges")
            }
            Self::InvalidRange { start, end } => {
                write!(f, "inverted physical range start={start:#x} end={end:#x}")
            }
            Self::RangeOverflow { base, length } => write!(
                f,
                "memory region base={base:#x} length={length:#x} overflows the 64-bit address space"
            ),
        }
    }
}

/// Sorted, disjoint, non-adjacent usable physical memory ranges.
///
/// Invariant: `ranges[..len]` is sorted by start, and for consecutive ranges
/// `a.end < b.start` (overlapping or touching ranges are merged). Ranges are
/// byte-exact; page alignment is applied when reading ([`MemoryMap::usable`]),
/// so two adjacent unaligned pieces still combine into whole pages.
#[derive(Clone)]
pub struct MemoryMap {
    ranges: [PhysRange; MEMORY_MAP_CAPACITY],
    len: usize,
    highest_reported: u64,
}

impl fmt::Debug for MemoryMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.ranges()).finish()
    }
}

impl Default for MemoryMap {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryMap {
    /// An empty map, as a starting point for [`MemoryMap::add_usable`].
    pub const fn new() -> Self {
        Self {
            ranges: [PhysRange { start: 0, end: 0 }; MEMORY_MAP_CAPACITY],
            len: 0,
            highest_reported: 0,
        }
    }

    /// Builds the map from Multiboot memory-map entries.
    ///
    /// Only [`MemoryType::Available`] is usable; every other type (including
    /// ACPI reclaimable, which the kernel still needs to read) is subtracted
    /// *after* all usable entries were added, so where a usable and a reserved
    /// entry overlap the reserved one wins regardless of table order.
    /// Zero-length entries are ignored.
    pub fn from_entries<I>(entries: I) -> Result<Self, MemoryMapError>
    where
        I: IntoIterator<Item = MmapEntry>,
        I::IntoIter: Clone,
    {
        let iter = entries.into_iter();
        let mut map = Self::new();
        for e in iter.clone() {
            let r = PhysRange::from_base_len(e.base, e.length)
                .ok_or(MemoryMapError::RangeOverflow { base: e.base, length: e.length })?;
            if r.is_empty() {
                continue;
            }
            map.highest_reported = map.highest_reported.max(r.end);
            if e.kind == MemoryType::Available {
                map.add_usable(r)?;
            }
        }
        for e in iter {
            if e.kind == MemoryType::Available {
                continue;
            }
            // Overflow was already rejected in the first pass.
            if let Some(r) = PhysRange::from_base_len(e.base, e.length) {
                map.reserve(r)?;
            }
        }
        Ok(map)
    }

    /// Adds a usable range, merging it with overlapping or adjacent ones.
    ///
    /// Reservations made earlier are *not* re-applied, so add all usable
    /// memory first and reserve afterwards.
    pub fn add_usable(&mut self, r: PhysRange) -> Result<(), MemoryMapError> {
        check(r)?;
        if r.is_empty() {
            return Ok(());
        }
        let cur = &self.ranges[..self.len];
        // [lo, hi) are the ranges that overlap or touch `r`.
        let lo = cur.partition_point(|x| x.end < r.start);
        let hi = cur.partition_point(|x| x.start <= r.end);
        if lo == hi {
            self.splice(lo, hi, &[r])
        } else {
            let merged =
                PhysRange { start: r.start.min(cur[lo].start), end: r.end.max(cur[hi - 1].end) };
            self.splice(lo, hi, &[merged])
        }
    }

    /// Removes `r` from the usable memory: the kernel image, boot modules,
    /// Multiboot structures, the first MiB. Splitting a range needs one more
    /// slot; if none is left the map is unchanged and an error is returned.
    pub fn reserve(&mut self, r: PhysRange) -> Result<(), MemoryMapError> {
        check(r)?;
        if r.is_empty() {
            return Ok(());
        }
        let cur = &self.ranges[..self.len];
        // [lo, hi) are the ranges sharing at least one byte with `r`.
        let lo = cur.partition_point(|x| x.end <= r.start);
        let hi = cur.partition_point(|x| x.start < r.end);
        if lo >= hi {
            return Ok(());
        }
        let mut pieces = [PhysRange::default(); 2];
        let mut n = 0;
        if cur[lo].start < r.start {
            pieces[n] = PhysRange { start: cur[lo].start, end: r.start };
            n += 1;
        }
        if cur[hi - 1].end > r.end {
            pieces[n] = PhysRange { start: r.end, end: cur[hi - 1].end };
            n += 1;
        }
        self.splice(lo, hi, &pieces[..n])
    }

    /// Reserves `[0, 1 MiB)`: BIOS data and the AP trampoline live there.
    pub fn reserve_low_memory(&mut self) -> Result<(), MemoryMapError> {
        self.reserve(PhysRange { start: 0, end: LOW_MEMORY_END })
    }

    /// Reserves every range the bootloader's data occupies (info structure,
    /// memory map, module list, strings, module payloads), so the frame
    /// allocator cannot hand them out while the kernel still reads them.
    pub fn reserve_boot_info(&mut self, info: &BootInfo) -> Result<(), MemoryMapError> {
        self.reserve_boot_ranges(info.occupied())
    }

    /// Reserves each range of a hand-over's occupied list (Multiboot 1 or 2).
    pub fn reserve_boot_ranges(&mut self, ranges: &[BootRange]) -> Result<(), MemoryMapError> {
        for r in ranges {
            self.reserve(r.range)?;
        }
        Ok(())
    }

    /// Replaces `ranges[lo..hi]` with `new`, keeping everything else, or fails
    /// without modification if the result does not fit.
    fn splice(&mut self, lo: usize, hi: usize, new: &[PhysRange]) -> Result<(), MemoryMapError> {
        let removed = hi - lo;
        let new_len = self.len - removed + new.len();
        if new_len > MEMORY_MAP_CAPACITY {
            return Err(MemoryMapError::CapacityExceeded { capacity: MEMORY_MAP_CAPACITY });
        }
        // Move the tail [hi, len) to start at lo + new.len().
        self.ranges.copy_within(hi..self.len, lo + new.len());
        self.ranges[lo..lo + new.len()].copy_from_slice(new);
        self.len = new_len;
        Ok(())
    }

    /// The byte-exact usable ranges (sorted, disjoint), before page trimming.
    pub fn ranges(&self) -> &[PhysRange] {
        &self.ranges[..self.len]
    }

    /// Usable ranges trimmed to whole 4 KiB pages (start rounded up, end
    /// rounded down); ranges without a whole page are skipped. This is what
    /// the frame allocator consumes.
    pub fn usable(&self) -> impl Iterator<Item = PhysRange> + '_ {
        self.ranges().iter().filter_map(|r| r.page_aligned())
    }

    /// Total bytes in whole usable pages, for the boot log and sanity checks.
    pub fn usable_bytes(&self) -> u64 {
        self.usable().map(|r| r.len()).sum()
    }

    /// Number of whole usable pages.
    pub fn usable_pages(&self) -> u64 {
        self.usable_bytes() / PAGE_SIZE
    }

    /// One past the highest usable page-aligned address (0 if nothing is
    /// usable): how far the kernel's physical-memory mapping must reach.
    pub fn highest_address(&self) -> u64 {
        self.usable().last().map_or(0, |r| r.end)
    }

    /// One past the highest address mentioned by any non-empty firmware entry
    /// (usable or not), for diagnostics about holes and MMIO windows.
    pub fn highest_reported_address(&self) -> u64 {
        self.highest_reported
    }

    /// True if no usable byte remains.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn check(r: PhysRange) -> Result<(), MemoryMapError> {
    if r.start > r.end {
        Err(MemoryMapError::InvalidRange { start: r.start, end: r.end })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> PhysRange {
        PhysRange::new(start, end).unwrap()
    }

    fn e(base: u64, length: u64, kind: MemoryType) -> MmapEntry {
        MmapEntry { base, length, kind }
    }

    #[test]
    fn range_basics() {
        assert!(PhysRange::new(5, 4).is_none());
        assert!(PhysRange::from_base_len(u64::MAX, 2).is_none());
        let x = r(0x1000, 0x3000);
        assert_eq!(x.len(), 0x2000);
        assert!(x.contains(0x1000) && !x.contains(0x3000));
        assert!(x.overlaps(&r(0x2fff, 0x4000)));
        assert!(!x.overlaps(&r(0x3000, 0x4000)));
        assert_eq!(r(0x1001, 0x2fff).page_aligned(), None);
        assert_eq!(r(0x1001, 0x3fff).page_aligned(), Some(r(0x2000, 0x3000)));
        assert_eq!(r(u64::MAX - 5, u64::MAX).page_aligned(), None);
    }

    #[test]
    fn qemu_like_map() {
        let entries = [
            e(0, 0x9fc00, MemoryType::Available),
            e(0x9fc00, 0x400, MemoryType::Reserved),
            e(0xf0000, 0x10000, MemoryType::Reserved),
            e(0x100000, 0x7ee0000, MemoryType::Available),
            e(0x7fe0000, 0x20000, MemoryType::Reserved),
            e(0xfffc0000, 0x40000, MemoryType::Reserved),
        ];
        let mut m = MemoryMap::from_entries(entries.iter().copied()).unwrap();
        assert_eq!(m.ranges(), &[r(0, 0x9fc00), r(0x100000, 0x7fe0000)]);
        assert_eq!(m.highest_reported_address(), 0x1_0000_0000);
        m.reserve_low_memory().unwrap();
        m.reserve(r(0x100000, 0x180000)).unwrap(); // kernel image
        let u: Vec<_> = m.usable().collect();
        assert_eq!(u, vec![r(0x180000, 0x7fe0000)]);
        assert_eq!(m.highest_address(), 0x7fe0000);
        assert_eq!(m.usable_bytes(), 0x7fe0000 - 0x180000);
        assert_eq!(m.usable_pages(), (0x7fe0000 - 0x180000) / 4096);
    }

    #[test]
    fn merges_overlapping_and_adjacent_in_any_order() {
        let entries = [
            e(0x5000, 0x1000, MemoryType::Available),
            e(0x1000, 0x2000, MemoryType::Available),
            e(0x3000, 0x2000, MemoryType::Available), // adjacent to both
            e(0x2000, 0x800, MemoryType::Available),  // fully inside
            e(0x10000, 0x1000, MemoryType::Available),
            e(0x20000, 0, MemoryType::Available), // zero length ignored
        ];
        let m = MemoryMap::from_entries(entries.iter().copied()).unwrap();
        assert_eq!(m.ranges(), &[r(0x1000, 0x6000), r(0x10000, 0x11000)]);
    }

    #[test]
    fn reserved_wins_regardless_of_order() {
        let entries = [
            e(0x4000, 0x2000, MemoryType::Reserved),
            e(0x0, 0x10000, MemoryType::Available),
            e(0x8000, 0x1000, MemoryType::AcpiReclaimable),
            e(0xf000, 0x4000, MemoryType::BadMemory), // overlaps the end
            e(0x9000, 0x10, MemoryType::Other(77)),
        ];
        let m = MemoryMap::from_entries(entries.iter().copied()).unwrap();
        assert_eq!(m.ranges(), &[r(0, 0x4000), r(0x6000, 0x8000), r(0x9010, 0xf000)]);
        let u: Vec<_> = m.usable().collect();
        assert_eq!(u, vec![r(0, 0x4000), r(0x6000, 0x8000), r(0xa000, 0xf000)]);
    }

    #[test]
    fn unaligned_adjacent_pieces_merge_into_pages() {
        let mut m = MemoryMap::new();
        m.add_usable(r(0x1800, 0x2800)).unwrap();
        m.add_usable(r(0x2800, 0x3800)).unwrap();
        assert_eq!(m.usable().collect::<Vec<_>>(), vec![r(0x2000, 0x3000)]);
    }

    #[test]
    fn reserve_spanning_many_ranges() {
        let mut m = MemoryMap::new();
        for i in 0..10u64 {
            m.add_usable(r(i * 0x10000, i * 0x10000 + 0x8000)).unwrap();
        }
        m.reserve(r(0x14000, 0x84000)).unwrap();
        assert_eq!(
            m.ranges(),
            &[r(0, 0x8000), r(0x10000, 0x14000), r(0x84000, 0x88000), r(0x90000, 0x98000)]
        );
        // Reserving outside or empty is a no-op.
        m.reserve(r(0x200000, 0x300000)).unwrap();
        m.reserve(r(0x5000, 0x5000)).unwrap();
        assert_eq!(m.ranges().len(), 4);
        // Reserving everything empties the map.
        m.reserve(r(0, u64::MAX)).unwrap();
        assert!(m.is_empty());
        assert_eq!(m.highest_address(), 0);
    }

    #[test]
    fn inverted_and_overflowing_input_are_errors() {
        let mut m = MemoryMap::new();
        let bad = PhysRange { start: 9, end: 3 };
        assert_eq!(m.add_usable(bad), Err(MemoryMapError::InvalidRange { start: 9, end: 3 }));
        assert_eq!(m.reserve(bad), Err(MemoryMapError::InvalidRange { start: 9, end: 3 }));
        let entries = [e(u64::MAX - 10, 100, MemoryType::Available)];
        assert_eq!(
            MemoryMap::from_entries(entries.iter().copied()).unwrap_err(),
            MemoryMapError::RangeOverflow { base: u64::MAX - 10, length: 100 }
        );
    }

    #[test]
    fn capacity_overflow_is_an_error_and_leaves_map_intact() {
        let mut m = MemoryMap::new();
        for i in 0..MEMORY_MAP_CAPACITY as u64 {
            m.add_usable(r(i * 0x10000, i * 0x10000 + 0x8000)).unwrap();
        }
        let before: Vec<_> = m.ranges().to_vec();
        let err = m.add_usable(r(0x1000_0000, 0x1000_1000)).unwrap_err();
        assert_eq!(err, MemoryMapError::CapacityExceeded { capacity: MEMORY_MAP_CAPACITY });
        // Splitting a range needs a slot too.
        assert!(m.reserve(r(0x1000, 0x2000)).is_err());
        assert_eq!(m.ranges(), &before[..]);
        // Merging into an existing range needs no slot.
        m.add_usable(r(0x8000, 0x9000)).unwrap();
        // Trimming an edge needs no slot.
        m.reserve(r(0, 0x1000)).unwrap();
        assert_eq!(m.ranges()[0], r(0x1000, 0x9000));
        // Building from too many entries fails rather than truncating.
        let many: Vec<_> =
            (0..200u64).map(|i| e(i * 0x10000, 0x1000, MemoryType::Available)).collect();
        assert!(matches!(
            MemoryMap::from_entries(many.iter().copied()),
            Err(MemoryMapError::CapacityExceeded { .. })
        ));
    }

    #[test]
    fn randomized_against_bitmap_model() {
        // Small deterministic PRNG; compare against a per-page model.
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..200 {
            let mut model = [false; 64];
            let mut m = MemoryMap::new();
            let ops: Vec<(bool, u64, u64)> = (0..12)
                .map(|_| {
                    let a = rnd(64);
                    let b = rnd(64);
                    (rnd(3) == 0, a.min(b), a.max(b))
                })
                .collect();
            // All adds first, then reserves (the documented protocol).
            for &(_, a, b) in ops.iter().filter(|o| !o.0) {
                m.add_usable(r(a * PAGE_SIZE, b * PAGE_SIZE)).unwrap();
                for p in a..b {
                    model[p as usize] = true;
                }
            }
            for &(_, a, b) in ops.iter().filter(|o| o.0) {
                m.reserve(r(a * PAGE_SIZE, b * PAGE_SIZE)).unwrap();
                for p in a..b {
                    model[p as usize] = false;
                }
            }
            let mut got = [false; 64];
            for u in m.usable() {
                for p in u.start / PAGE_SIZE..u.end / PAGE_SIZE {
                    got[p as usize] = true;
                }
            }
            assert_eq!(got, model);
            for w in m.ranges().windows(2) {
                assert!(w[0].end < w[1].start, "not disjoint/merged: {:?}", m);
            }
        }
    }
}
