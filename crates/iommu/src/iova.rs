//! A domain's device-visible address space: first-fit runs of pages in a window the device
//! can address (edu masks DMA addresses to 28 bits), tracked in a fixed bitmap so the
//! allocator needs no heap. Page 0 of the window is never handed out: an IOVA of 0 is what a
//! confused driver writes by accident.

/// Pages `IovaSpace` tracks per bitmap word.
const WORD_PAGES: u64 = 64;

/// IOVAs `[base, base + WORDS * 64 pages)`, with a used bit per page.
#[derive(Clone, Debug)]
pub struct IovaSpace<const WORDS: usize> {
    base: u64,
    used: [u64; WORDS],
}

impl<const WORDS: usize> IovaSpace<WORDS> {
    /// A window at `base` (page aligned), empty but for its first page.
    pub fn new(base: u64) -> Option<Self> {
        if base & 0xFFF != 0 || WORDS == 0 {
            return None;
        }
        let mut used = [0; WORDS];
        used[0] = 1;
        Some(IovaSpace { base, used })
    }

    /// One past the window's last byte.
    pub fn end(&self) -> u64 {
        self.base + WORDS as u64 * WORD_PAGES * 4096
    }

    fn is_used(&self, page: u64) -> bool {
        self.used[(page / WORD_PAGES) as usize] & 1 << (page % WORD_PAGES) != 0
    }

    fn set(&mut self, page: u64, used: bool) {
        let (w, b) = ((page / WORD_PAGES) as usize, page % WORD_PAGES);
        if used {
            self.used[w] |= 1 << b
        } else {
            self.used[w] &= !(1 << b)
        }
    }

    /// The first free run of `pages` pages; its IOVA.
    pub fn allocate(&mut self, pages: u64) -> Option<u64> {
        let total = WORDS as u64 * WORD_PAGES;
        if pages == 0 || pages > total {
            return None;
        }
        let mut run = 0;
        for page in 0..total {
            run = if self.is_used(page) { 0 } else { run + 1 };
            if run == pages {
                let first = page + 1 - pages;
                (first..=page).for_each(|p| self.set(p, true));
                return Some(self.base + first * 4096);
            }
        }
        None
    }

    /// Returns `[iova, iova + pages)`; refused (nothing changes) unless every page of it is
    /// allocated.
    pub fn free(&mut self, iova: u64, pages: u64) -> bool {
        if !self.contains(iova, pages) {
            return false;
        }
        let first = (iova - self.base) / 4096;
        if first == 0 || !(first..first + pages).all(|p| self.is_used(p)) {
            return false;
        }
        (first..first + pages).for_each(|p| self.set(p, false));
        true
    }

    /// Whether `[iova, iova + pages)` is a page-aligned range inside the window.
    pub fn contains(&self, iova: u64, pages: u64) -> bool {
        iova & 0xFFF == 0
            && iova >= self.base
            && pages > 0
            && pages
                .checked_mul(4096)
                .and_then(|len| iova.checked_add(len))
                .is_some_and(|end| end <= self.end())
    }

    /// Pages handed out (the reserved first page excluded).
    pub fn allocated_pages(&self) -> u64 {
        self.used.iter().map(|w| w.count_ones() as u64).sum::<u64>() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_runs_and_reuse() {
        let mut s = IovaSpace::<2>::new(0x100_0000).unwrap();
        assert_eq!(s.end(), 0x100_0000 + 128 * 4096);
        assert_eq!(s.allocate(1), Some(0x100_1000), "page 0 is never handed out");
        assert_eq!(s.allocate(3), Some(0x100_2000));
        assert_eq!(s.allocate(1), Some(0x100_5000));
        assert!(s.free(0x100_2000, 3));
        assert_eq!(s.allocate(2), Some(0x100_2000));
        assert_eq!(s.allocated_pages(), 4);
        // A run across the word boundary.
        assert_eq!(s.allocate(100), Some(0x100_6000));
        assert_eq!(s.allocate(100), None);
    }

    #[test]
    fn hostile_frees_change_nothing() {
        let mut s = IovaSpace::<1>::new(0x10_0000).unwrap();
        let a = s.allocate(2).unwrap();
        assert!(!s.free(a + 1, 1), "unaligned");
        assert!(!s.free(a, 3), "past the allocation");
        assert!(!s.free(0x10_0000, 1), "the reserved page");
        assert!(!s.free(0x20_0000, 1), "outside the window");
        assert!(!s.free(a, u64::MAX), "length overflow");
        assert!(!s.free(a, 0));
        assert_eq!(s.allocated_pages(), 2);
        assert!(s.free(a, 2));
        assert!(!s.free(a, 2), "double free");
        assert_eq!(s.allocate(0), None);
        assert!(IovaSpace::<1>::new(0x10_0800).is_none());
    }
}
