//! Physical frame accounting for Keel.
//!
//! [`FrameBitmap`] tracks 4 KiB frames of one contiguous physical window with two bits per
//! frame: free (1 = free) and managed (1 = the frame came from a usable range, so it may ever
//! be handed out and taken back). A free of an unmanaged frame — frame 0, the kernel image,
//! firmware tables, the bitmap itself — is refused whatever the caller believed it owned. It is pure logic over a caller-provided `&mut [u64]`, so the kernel can
//! place the bitmap in memory it carved from the boot memory map, and host tests can drive it
//! with a `Vec`. Counters make leaks visible: `free_frames()` before and after a workload must
//! match.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

/// Size of a frame.
pub const FRAME_SIZE: u64 = 4096;

/// Why an operation on the bitmap was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The address is not frame aligned.
    Unaligned(u64),
    /// The address lies outside the window this bitmap covers.
    OutOfRange(u64),
    /// Freeing a frame that is already free: a double free in the caller.
    DoubleFree(u64),
    /// Freeing a frame the allocator never managed (reserved or never usable memory).
    NotManaged(u64),
    /// The bitmap storage is too small for the window.
    StorageTooSmall { needed_words: usize, given_words: usize },
    /// The window would end past the top of the 64-bit address space.
    WindowTooLarge { base: u64, frames: u64 },
}

/// A broken internal invariant of a [`FrameBitmap`] (found by [`FrameBitmap::check_invariants`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvariantError {
    /// The free counter disagrees with the number of set free bits.
    FreeCount { counted: u64, bits: u64 },
    /// A frame is free but not managed (frame index).
    FreeNotManaged(u64),
    /// A bit is set beyond the last frame of the window (frame index).
    BitPastWindow(u64),
}

/// Two bits per frame of `[base, base + frames * FRAME_SIZE)`; frames start out *used* and
/// unmanaged until the owner marks usable ranges free.
pub struct FrameBitmap<'a> {
    base: u64,
    frames: u64,
    /// Free bits.
    words: &'a mut [u64],
    /// Managed bits.
    managed: &'a mut [u64],
    free: u64,
    next_hint: u64,
}

impl<'a> FrameBitmap<'a> {
    /// Number of `u64` words needed to track `frames` frames (both bitmaps).
    pub const fn words_for(frames: u64) -> usize {
        2 * Self::bitmap_words(frames)
    }

    const fn bitmap_words(frames: u64) -> usize {
        frames.div_ceil(64) as usize
    }

    /// A bitmap for `frames` frames starting at `base`, all initially used.
    pub fn new(base: u64, frames: u64, words: &'a mut [u64]) -> Result<Self, FrameError> {
        if !base.is_multiple_of(FRAME_SIZE) {
            return Err(FrameError::Unaligned(base));
        }
        // Every address computed later (`base + i * FRAME_SIZE`, the window's end) stays below
        // this bound, so none of them can wrap.
        if frames.checked_mul(FRAME_SIZE).and_then(|bytes| base.checked_add(bytes)).is_none() {
            return Err(FrameError::WindowTooLarge { base, frames });
        }
        let needed = Self::words_for(frames);
        if words.len() < needed {
            return Err(FrameError::StorageTooSmall {
                needed_words: needed,
                given_words: words.len(),
            });
        }
        words.iter_mut().for_each(|w| *w = 0);
        let (words, managed) = words[..needed].split_at_mut(needed / 2);
        Ok(FrameBitmap { base, frames, words, managed, free: 0, next_hint: 0 })
    }

    /// One past the window's last byte (cannot wrap: checked by [`Self::new`]).
    fn window_end(&self) -> u64 {
        self.base + self.frames * FRAME_SIZE
    }

    fn index_of(&self, addr: u64) -> Result<u64, FrameError> {
        if !addr.is_multiple_of(FRAME_SIZE) {
            return Err(FrameError::Unaligned(addr));
        }
        if addr < self.base || (addr - self.base) / FRAME_SIZE >= self.frames {
            return Err(FrameError::OutOfRange(addr));
        }
        Ok((addr - self.base) / FRAME_SIZE)
    }

    fn is_free_index(&self, i: u64) -> bool {
        self.words[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn is_managed_index(&self, i: u64) -> bool {
        self.managed[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set_managed_index(&mut self, i: u64, managed: bool) {
        let word = &mut self.managed[(i / 64) as usize];
        if managed {
            *word |= 1 << (i % 64);
        } else {
            *word &= !(1 << (i % 64));
        }
    }

    fn set_free_index(&mut self, i: u64, free: bool) {
        let word = &mut self.words[(i / 64) as usize];
        if free {
            *word |= 1 << (i % 64);
        } else {
            *word &= !(1 << (i % 64));
        }
    }

    /// Marks `[start, end)` free and managed (page-aligned inward); frames outside the window
    /// are ignored so the caller can feed the raw memory map. Already-free frames are not
    /// counted twice.
    pub fn add_free_range(&mut self, start: u64, end: u64) {
        // A start in the last partial frame of the address space has no whole frame after it.
        let start = start.checked_next_multiple_of(FRAME_SIZE).unwrap_or(u64::MAX);
        let end = end / FRAME_SIZE * FRAME_SIZE;
        let (start, end) = (start.max(self.base), end.min(self.window_end()));
        let mut addr = start;
        while addr < end {
            let i = (addr - self.base) / FRAME_SIZE;
            self.set_managed_index(i, true);
            if !self.is_free_index(i) {
                self.set_free_index(i, true);
                self.free += 1;
            }
            addr += FRAME_SIZE;
        }
    }

    /// Marks `[start, end)` used and unmanaged for good (page-aligned outward), e.g. to
    /// reserve the bitmap itself: such frames are never handed out nor taken back.
    pub fn reserve_range(&mut self, start: u64, end: u64) {
        if start >= end {
            return; // empty: rounding outward must not turn it into a frame
        }
        let start = start / FRAME_SIZE * FRAME_SIZE;
        // An end in the last partial frame of the address space reserves up to the top
        // (rounding it up would wrap to 0 and reserve nothing).
        let end = end.checked_next_multiple_of(FRAME_SIZE).unwrap_or(u64::MAX);
        let (start, end) = (start.max(self.base), end.min(self.window_end()));
        let mut addr = start;
        while addr < end {
            let i = (addr - self.base) / FRAME_SIZE;
            self.set_managed_index(i, false);
            if self.is_free_index(i) {
                self.set_free_index(i, false);
                self.free -= 1;
            }
            addr += FRAME_SIZE;
        }
    }

    /// Allocates one frame (lowest free at or after a moving hint, wrapping once).
    pub fn allocate(&mut self) -> Option<u64> {
        self.allocate_below(u64::MAX)
    }

    /// Allocates one frame whose address is below `limit` (e.g. 4 GiB for a CR3 a 32-bit
    /// trampoline loads).
    pub fn allocate_below(&mut self, limit: u64) -> Option<u64> {
        if self.free == 0 {
            return None;
        }
        // The free bitmap alone: `words_for` counts both bitmaps (storage), not this one.
        let words = self.words.len();
        let start_word = (self.next_hint / 64) as usize % words.max(1);
        for k in 0..words {
            let w = (start_word + k) % words;
            let bits = self.words[w];
            if bits == 0 {
                continue;
            }
            let i = w as u64 * 64 + bits.trailing_zeros() as u64;
            if i >= self.frames {
                continue;
            }
            let addr = self.base + i * FRAME_SIZE;
            if addr >= limit {
                // Lower frames may exist before the hint; scan from the start once.
                return self.allocate_below_from_start(limit);
            }
            self.take(i);
            self.next_hint = i;
            return Some(addr);
        }
        None
    }

    /// The lowest free frame, if it lies below `limit`. The next-fit hint stays where it was:
    /// frames below a limit are the scarce ones, and moving the general cursor down to them
    /// would spend them on allocations that could have gone anywhere.
    fn allocate_below_from_start(&mut self, limit: u64) -> Option<u64> {
        let w = self.words.iter().position(|&bits| bits != 0)?;
        let i = w as u64 * 64 + self.words[w].trailing_zeros() as u64;
        let addr = self.base + i * FRAME_SIZE;
        if i >= self.frames || addr >= limit {
            return None;
        }
        self.take(i);
        Some(addr)
    }

    /// Marks free frame `i` used.
    fn take(&mut self, i: u64) {
        self.set_free_index(i, false);
        self.free -= 1;
    }

    /// Index of the first frame at or after index `from` whose address is a multiple of
    /// `align`; `None` when no such address exists below 2^64.
    fn aligned_index(&self, from: u64, align: u64) -> Option<u64> {
        let addr = self.base.checked_add(from.checked_mul(FRAME_SIZE)?)?;
        Some((addr.checked_next_multiple_of(align)? - self.base) / FRAME_SIZE)
    }

    /// Allocates `count` physically contiguous frames aligned to `align` bytes (a power of
    /// two, at least a frame): the heap and DMA buffers need this.
    pub fn allocate_contiguous(&mut self, count: u64, align: u64) -> Option<u64> {
        // More frames than are free can never succeed; the bound also keeps `i + count` from
        // wrapping for a huge `count`.
        if count == 0 || count > self.free || !align.is_power_of_two() || align < FRAME_SIZE {
            return None;
        }
        let mut i = self.aligned_index(0, align)?;
        while i.checked_add(count)? <= self.frames {
            match (i..i + count).find(|&j| !self.is_free_index(j)) {
                None => {
                    for j in i..i + count {
                        self.set_free_index(j, false);
                    }
                    self.free -= count;
                    return Some(self.base + i * FRAME_SIZE);
                }
                Some(used) => i = self.aligned_index(used + 1, align)?,
            }
        }
        None
    }

    /// Returns a frame. Double frees, unmanaged frames and foreign addresses are errors, never
    /// corruption.
    pub fn free(&mut self, addr: u64) -> Result<(), FrameError> {
        let i = self.index_of(addr)?;
        if !self.is_managed_index(i) {
            return Err(FrameError::NotManaged(addr));
        }
        if self.is_free_index(i) {
            return Err(FrameError::DoubleFree(addr));
        }
        self.set_free_index(i, true);
        self.free += 1;
        Ok(())
    }

    /// Whether `addr` is currently free.
    pub fn is_free(&self, addr: u64) -> Result<bool, FrameError> {
        Ok(self.is_free_index(self.index_of(addr)?))
    }

    /// Free frames now.
    pub fn free_frames(&self) -> u64 {
        self.free
    }

    /// Frames the window covers.
    pub fn total_frames(&self) -> u64 {
        self.frames
    }

    /// Checks every word of both bitmaps: the free counter equals the set free bits, every
    /// free frame is managed, and no bit is set past the window. O(frames / 64); run after
    /// workloads (host tests after every step, the kernel's soak proofs at the end).
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        let mut bits = 0u64;
        for (w, (&free, &managed)) in self.words.iter().zip(self.managed.iter()).enumerate() {
            let first = w as u64 * 64;
            let in_window = match self.frames - first {
                n if n >= 64 => u64::MAX,
                n => (1u64 << n) - 1,
            };
            let stray = (free | managed) & !in_window;
            if stray != 0 {
                return Err(InvariantError::BitPastWindow(first + stray.trailing_zeros() as u64));
            }
            let unmanaged_free = free & !managed;
            if unmanaged_free != 0 {
                return Err(InvariantError::FreeNotManaged(
                    first + unmanaged_free.trailing_zeros() as u64,
                ));
            }
            bits += free.count_ones() as u64;
        }
        if bits != self.free {
            return Err(InvariantError::FreeCount { counted: self.free, bits });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bitmap(frames: u64) -> (Vec<u64>, u64) {
        (vec![0; FrameBitmap::words_for(frames)], frames)
    }

    #[test]
    fn starts_used_and_frees_ranges_page_aligned_inward() {
        let (mut w, n) = bitmap(256);
        let mut b = FrameBitmap::new(0x10_0000, n, &mut w).unwrap();
        assert_eq!(b.free_frames(), 0);
        b.add_free_range(0x10_0800, 0x10_5000); // first partial frame excluded
        assert_eq!(b.free_frames(), 4);
        b.add_free_range(0x10_0000, 0x10_5000); // overlap is not double counted
        assert_eq!(b.free_frames(), 5);
    }

    #[test]
    fn ranges_outside_window_are_clipped() {
        let (mut w, n) = bitmap(16);
        let mut b = FrameBitmap::new(0x1000, n, &mut w).unwrap();
        b.add_free_range(0, 0x100_0000);
        assert_eq!(b.free_frames(), 16);
    }

    #[test]
    fn allocate_and_free_round_trip_keeps_counters() {
        let (mut w, n) = bitmap(130);
        let mut b = FrameBitmap::new(0, n, &mut w).unwrap();
        b.add_free_range(0, 130 * FRAME_SIZE);
        let before = b.free_frames();
        let frames: Vec<u64> = (0..130).map(|_| b.allocate().unwrap()).collect();
        assert_eq!(b.allocate(), None);
        let mut sorted = frames.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 130, "no frame handed out twice");
        for f in frames {
            b.free(f).unwrap();
        }
        assert_eq!(b.free_frames(), before);
    }

    #[test]
    fn double_free_and_foreign_addresses_are_errors() {
        let (mut w, n) = bitmap(8);
        let mut b = FrameBitmap::new(0x8000, n, &mut w).unwrap();
        b.add_free_range(0x8000, 0x10000);
        let f = b.allocate().unwrap();
        b.free(f).unwrap();
        assert_eq!(b.free(f), Err(FrameError::DoubleFree(f)));
        assert_eq!(b.free(0x8001), Err(FrameError::Unaligned(0x8001)));
        assert_eq!(b.free(0x1000), Err(FrameError::OutOfRange(0x1000)));
        assert_eq!(b.free(0x10000), Err(FrameError::OutOfRange(0x10000)));
    }

    #[test]
    fn frames_never_usable_or_reserved_are_never_taken_back() {
        let (mut w, n) = bitmap(64);
        let mut b = FrameBitmap::new(0, n, &mut w).unwrap();
        b.add_free_range(0x1000, 0x20000); // frame 0 is not usable
        b.reserve_range(0x8000, 0x9000); // e.g. the bitmap's own storage
        assert_eq!(b.free(0), Err(FrameError::NotManaged(0)));
        assert_eq!(b.free(0x8000), Err(FrameError::NotManaged(0x8000)));
        assert_eq!(b.free(0x30000), Err(FrameError::NotManaged(0x30000))); // in the window, never usable
        let before = b.free_frames();
        let f = b.allocate().unwrap();
        assert_ne!(f, 0x8000);
        b.free(f).unwrap();
        assert_eq!(b.free_frames(), before);
    }

    #[test]
    fn reserve_removes_free_frames() {
        let (mut w, n) = bitmap(64);
        let mut b = FrameBitmap::new(0, n, &mut w).unwrap();
        b.add_free_range(0, 64 * FRAME_SIZE);
        b.reserve_range(0x1800, 0x3001); // outward: frames 1, 2, 3
        assert_eq!(b.free_frames(), 61);
        assert!(!b.is_free(0x1000).unwrap());
        assert!(!b.is_free(0x3000).unwrap());
        assert!(b.is_free(0x4000).unwrap());
    }

    #[test]
    fn contiguous_allocation_respects_alignment_and_holes() {
        let (mut w, n) = bitmap(2048);
        let mut b = FrameBitmap::new(0x1000, n, &mut w).unwrap();
        b.add_free_range(0x1000, 0x1000 + 2048 * FRAME_SIZE);
        b.reserve_range(0x20_0000, 0x20_1000); // a hole at the first 2 MiB boundary
        let a = b.allocate_contiguous(16, 0x20_0000).unwrap();
        assert_eq!(a % 0x20_0000, 0);
        assert_ne!(a, 0x20_0000);
        for k in 0..16 {
            assert!(!b.is_free(a + k * FRAME_SIZE).unwrap());
        }
        assert_eq!(b.free_frames(), 2048 - 1 - 16);
        assert_eq!(b.allocate_contiguous(4000, FRAME_SIZE), None);
    }

    #[test]
    fn allocate_below_limit() {
        let (mut w, n) = bitmap(64);
        let mut b = FrameBitmap::new(0, n, &mut w).unwrap();
        b.add_free_range(0x20000, 64 * FRAME_SIZE);
        // Move the hint high.
        for _ in 0..20 {
            b.allocate().unwrap();
        }
        b.free(0x20000).unwrap();
        assert_eq!(b.allocate_below(0x21000), Some(0x20000));
        assert_eq!(b.allocate_below(0x21000), None);
    }

    #[test]
    fn hint_at_the_top_of_the_window_wraps_instead_of_indexing_past_the_free_bitmap() {
        // 256 frames = 4 words per bitmap; storage is 8 words. Driving the hint to the last
        // frame and allocating again used to index the free bitmap by storage words.
        let (mut w, n) = bitmap(256);
        let mut b = FrameBitmap::new(0, n, &mut w).unwrap();
        b.add_free_range(0, 256 * FRAME_SIZE);
        for round in 0..4 {
            let all: Vec<u64> = (0..256).map(|_| b.allocate().unwrap()).collect();
            assert_eq!(b.allocate(), None, "round {round}");
            for f in all {
                b.free(f).unwrap();
            }
            assert_eq!(b.free_frames(), 256);
            assert_eq!(b.check_invariants(), Ok(()));
        }
    }

    #[test]
    fn storage_and_alignment_are_checked() {
        let mut w = vec![0u64; 1];
        assert!(matches!(
            FrameBitmap::new(0, 65, &mut w),
            Err(FrameError::StorageTooSmall { needed_words: 4, given_words: 1 })
        ));
        assert_eq!(FrameBitmap::new(0x10, 1, &mut w).err(), Some(FrameError::Unaligned(0x10)));
    }
}
