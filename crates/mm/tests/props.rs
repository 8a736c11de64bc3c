//! Property tests of the frame bitmap against a reference model (one `bool` per frame for
//! free and for managed), many seeds: every step of a random workload is checked against the
//! model, and the bitmap's own invariants are checked after every step. The windows are
//! chosen to put the next-fit hint on every word boundary and at the end of the window.

use std::collections::HashSet;

use keel_mm::{FrameBitmap, FrameError, FRAME_SIZE};
use keel_testkit::XorShift;

/// Frame counts: below, at and above multiples of 64 (the bitmap word).
const FRAME_COUNTS: [u64; 15] =
    [1, 2, 63, 64, 65, 127, 128, 129, 191, 192, 200, 256, 257, 320, 383];
/// Window bases: zero, odd frame numbers (alignment is absolute), a high one.
const BASES: [u64; 5] = [0, 0x1000, 0x7000, 0x10_0000, 0x3_FFFF_F000];

/// The reference: what each frame is, independent of how the bitmap stores it.
struct Model {
    base: u64,
    free: Vec<bool>,
    managed: Vec<bool>,
}

impl Model {
    fn new(base: u64, frames: u64) -> Model {
        Model { base, free: vec![false; frames as usize], managed: vec![false; frames as usize] }
    }

    fn addr(&self, i: usize) -> u64 {
        self.base + i as u64 * FRAME_SIZE
    }

    fn frames(&self) -> usize {
        self.free.len()
    }

    fn free_count(&self) -> u64 {
        self.free.iter().filter(|&&f| f).count() as u64
    }

    /// Frames lying wholly inside `[start, end)` become free and managed.
    fn add_free_range(&mut self, start: u64, end: u64) {
        for i in 0..self.frames() {
            let a = self.addr(i) as u128;
            if a >= start as u128 && a + FRAME_SIZE as u128 <= end as u128 {
                self.free[i] = true;
                self.managed[i] = true;
            }
        }
    }

    /// Frames touching `[start, end)` become used and unmanaged.
    fn reserve_range(&mut self, start: u64, end: u64) {
        for i in 0..self.frames() {
            let a = self.addr(i) as u128;
            if a < end as u128 && a + FRAME_SIZE as u128 > start as u128 {
                self.free[i] = false;
                self.managed[i] = false;
            }
        }
    }

    fn any_free_below(&self, limit: u64) -> bool {
        (0..self.frames()).any(|i| self.free[i] && self.addr(i) < limit)
    }

    /// The lowest `align`-aligned address starting `count` free frames.
    fn lowest_run(&self, count: u64, align: u64) -> Option<u64> {
        if count == 0 || !align.is_power_of_two() || align < FRAME_SIZE {
            return None;
        }
        let count = usize::try_from(count).ok()?;
        (0..self.frames())
            .find(|&i| {
                self.addr(i).is_multiple_of(align)
                    && i.checked_add(count).is_some_and(|end| end <= self.frames())
                    && self.free[i..i + count].iter().all(|&f| f)
            })
            .map(|i| self.addr(i))
    }

    /// What `free(addr)` must answer, and the frame index when it succeeds.
    fn free_result(&self, addr: u64) -> Result<usize, FrameError> {
        if !addr.is_multiple_of(FRAME_SIZE) {
            return Err(FrameError::Unaligned(addr));
        }
        let i = match addr.checked_sub(self.base).map(|off| off / FRAME_SIZE) {
            Some(i) if i < self.frames() as u64 => i as usize,
            _ => return Err(FrameError::OutOfRange(addr)),
        };
        if !self.managed[i] {
            Err(FrameError::NotManaged(addr))
        } else if self.free[i] {
            Err(FrameError::DoubleFree(addr))
        } else {
            Ok(i)
        }
    }

    fn index_of(&self, addr: u64) -> usize {
        ((addr - self.base) / FRAME_SIZE) as usize
    }
}

/// The bitmap and its model side by side, with the frames handed out and not yet returned.
struct Harness<'a> {
    bitmap: FrameBitmap<'a>,
    model: Model,
    held: Vec<u64>,
    held_set: HashSet<u64>,
}

impl Harness<'_> {
    /// After every step: the invariants, the counter, and every frame against the model.
    fn check(&self, step: &str) {
        assert_eq!(self.bitmap.check_invariants(), Ok(()), "{step}");
        assert_eq!(self.bitmap.free_frames(), self.model.free_count(), "{step}");
        for i in 0..self.model.frames() {
            let addr = self.model.addr(i);
            assert_eq!(self.bitmap.is_free(addr), Ok(self.model.free[i]), "{step}: {addr:#x}");
        }
    }

    /// Records an allocation result: a frame the model had free, never held twice.
    fn took(&mut self, got: Option<u64>, limit: u64, step: &str) {
        let Some(addr) = got else { return };
        assert!(addr < limit, "{step}: {addr:#x} not below {limit:#x}");
        let i = self.model.index_of(addr);
        assert!(self.model.free[i] && self.model.managed[i], "{step}: {addr:#x} was not free");
        assert!(self.held_set.insert(addr), "{step}: {addr:#x} handed out twice");
        self.model.free[i] = false;
        self.held.push(addr);
    }

    fn allocate(&mut self, step: &str) -> Option<u64> {
        let got = self.bitmap.allocate();
        assert_eq!(got.is_some(), self.model.free_count() > 0, "{step}");
        self.took(got, u64::MAX, step);
        got
    }

    fn allocate_below(&mut self, limit: u64, step: &str) -> Option<u64> {
        let got = self.bitmap.allocate_below(limit);
        assert_eq!(got.is_some(), self.model.any_free_below(limit), "{step}: limit {limit:#x}");
        self.took(got, limit, step);
        got
    }

    fn allocate_contiguous(&mut self, count: u64, align: u64, step: &str) {
        let got = self.bitmap.allocate_contiguous(count, align);
        let step = format!("{step}: {count} frames aligned {align:#x}");
        assert_eq!(got, self.model.lowest_run(count, align), "{step}");
        if let Some(first) = got {
            for k in 0..count {
                self.took(Some(first + k * FRAME_SIZE), u64::MAX, &step);
            }
        }
    }

    fn free_held(&mut self, k: usize, step: &str) {
        let addr = self.held.swap_remove(k);
        self.held_set.remove(&addr);
        let i = self.model.free_result(addr).expect("a held frame is managed and used");
        assert_eq!(self.bitmap.free(addr), Ok(()), "{step}: {addr:#x}");
        self.model.free[i] = true;
    }

    fn free_any(&mut self, addr: u64, step: &str) {
        let want = self.model.free_result(addr);
        assert_eq!(self.bitmap.free(addr), want.map(|_| ()), "{step}: {addr:#x}");
        if let Ok(i) = want {
            self.model.free[i] = true;
            if self.held_set.remove(&addr) {
                self.held.retain(|&h| h != addr);
            }
        }
    }

    /// Frames the model no longer holds as used (freed or reserved by a range) leave `held`.
    fn forget_changed(&mut self) {
        let model = &self.model;
        self.held.retain(|&a| {
            let i = model.index_of(a);
            !model.free[i] && model.managed[i]
        });
        self.held_set = self.held.iter().copied().collect();
    }
}

/// Limits worth trying for a window: outside it, at its ends, on and around word boundaries.
fn limit(rng: &mut XorShift, base: u64, frames: u64) -> u64 {
    let word = 64 * rng.below((frames / 64 + 2) as usize) as u64;
    let at = |i: u64| base.saturating_add(i * FRAME_SIZE);
    match rng.below(12) {
        0 => 0,
        1 => base.saturating_sub(1),
        2 => base,
        3 => at(word),
        4 => at(word).saturating_sub(FRAME_SIZE),
        5 => at(word + 1),
        6 => at(frames - 1),
        7 => at(frames),
        8 => at(frames + 1),
        9 => u64::MAX,
        10 => at(rng.below(frames as usize) as u64) + rng.below(FRAME_SIZE as usize) as u64,
        _ => at(rng.below(frames as usize + 1) as u64),
    }
}

/// A window with reserved holes and never-usable gaps, as the kernel builds from a memory map.
fn populate(h: &mut Harness<'_>, rng: &mut XorShift, base: u64, frames: u64) {
    let end = base + frames * FRAME_SIZE;
    let mut ranges = vec![(base, end)];
    if rng.below(2) == 0 && frames > 4 {
        // A usable range that starts and ends inside frames (rounded inward), and a gap.
        let cut = base + rng.below(frames as usize) as u64 * FRAME_SIZE;
        ranges = vec![(base + 0x800, cut), (cut + FRAME_SIZE, end + 0x10_0000)];
    }
    for (s, e) in ranges {
        h.bitmap.add_free_range(s, e);
        h.model.add_free_range(s, e);
    }
    for _ in 0..rng.below(4) {
        let s = base + rng.below(frames as usize) as u64 * FRAME_SIZE + rng.below(4096) as u64;
        let e = s + 1 + rng.below(3 * FRAME_SIZE as usize) as u64;
        h.bitmap.reserve_range(s, e);
        h.model.reserve_range(s, e);
    }
    h.check("populate");
}

fn for_each_window(mut run: impl FnMut(u64, u64, u64)) {
    for (k, &frames) in FRAME_COUNTS.iter().enumerate() {
        for (j, &base) in BASES.iter().enumerate() {
            run(base, frames, 0x9E37_79B9_7F4A_7C15 ^ ((k as u64) << 32 | (j as u64 + 1)));
        }
    }
}

#[test]
fn random_workloads_match_the_model_after_every_step() {
    for_each_window(|base, frames, seed| {
        for round in 0..2u64 {
            let mut rng = XorShift(seed.wrapping_mul(round + 1) | 1);
            let mut storage = vec![0; FrameBitmap::words_for(frames)];
            let bitmap = FrameBitmap::new(base, frames, &mut storage).unwrap();
            let model = Model::new(base, frames);
            let mut h = Harness { bitmap, model, held: Vec::new(), held_set: HashSet::new() };
            populate(&mut h, &mut rng, base, frames);
            for n in 0..1500 {
                let step = format!("base {base:#x} frames {frames} seed {seed:#x} step {n}");
                match rng.below(100) {
                    0..=29 => drop(h.allocate(&step)),
                    30..=44 => drop(h.allocate_below(limit(&mut rng, base, frames), &step)),
                    45..=51 => {
                        let count = match rng.below(8) {
                            0 => 0,
                            1 => frames,
                            2 => frames + 1,
                            3 => u64::MAX - rng.below(3) as u64,
                            4 => 64,
                            _ => 1 + rng.below(9) as u64,
                        };
                        let align = match rng.below(8) {
                            0 => 1 << (rng.below(64) as u32),
                            1 => 3 * FRAME_SIZE,
                            _ => FRAME_SIZE << rng.below(7),
                        };
                        h.allocate_contiguous(count, align, &step);
                    }
                    52..=89 if !h.held.is_empty() => {
                        let k = rng.below(h.held.len());
                        h.free_held(k, &step);
                    }
                    90..=95 => {
                        // Double frees, unmanaged, foreign and unaligned addresses.
                        let addr = match rng.below(4) {
                            0 => base + rng.below(frames as usize) as u64 * FRAME_SIZE,
                            1 => base + (frames + rng.below(3) as u64) * FRAME_SIZE,
                            2 => base.wrapping_sub(FRAME_SIZE),
                            _ => (base + rng.below(frames as usize * 4096) as u64) | 1,
                        };
                        h.free_any(addr, &step);
                    }
                    96..=97 => {
                        let s = base + rng.below(frames as usize) as u64 * FRAME_SIZE;
                        let e = s + rng.below(3 * FRAME_SIZE as usize) as u64;
                        h.bitmap.reserve_range(s, e);
                        h.model.reserve_range(s, e);
                        h.forget_changed();
                    }
                    _ => {
                        let s = base + rng.below(frames as usize) as u64 * FRAME_SIZE;
                        let e = s + rng.below(3 * FRAME_SIZE as usize) as u64;
                        h.bitmap.add_free_range(s, e);
                        h.model.add_free_range(s, e);
                        h.forget_changed();
                    }
                }
                h.check(&step);
            }
        }
    });
}

/// Holds every frame but a sliding gap, so each allocation sits just past the previous one:
/// the hint visits every word boundary and the window's end, and wraps several times. Every
/// fourth allocation goes through `allocate_below` with a limit on a word boundary.
#[test]
fn the_hint_crosses_every_word_boundary_and_wraps() {
    for_each_window(|base, frames, seed| {
        for gap in [1u64, 63, 65] {
            let gap = gap.min(frames);
            let mut rng = XorShift(seed ^ gap);
            let mut storage = vec![0; FrameBitmap::words_for(frames)];
            let bitmap = FrameBitmap::new(base, frames, &mut storage).unwrap();
            let model = Model::new(base, frames);
            let mut h = Harness { bitmap, model, held: Vec::new(), held_set: HashSet::new() };
            h.bitmap.add_free_range(base, base + frames * FRAME_SIZE);
            h.model.add_free_range(base, base + frames * FRAME_SIZE);
            while h.allocate("fill").is_some() {}
            assert_eq!(h.held.len() as u64, frames);
            for addr in (0..gap).map(|i| base + i * FRAME_SIZE) {
                h.free_any(addr, "open the gap");
            }
            let mut handed = vec![0u32; frames as usize];
            let (mut previous, mut wraps) = (None, 0);
            for n in 0..(4 * frames).max(8) {
                let step = format!("base {base:#x} frames {frames} gap {gap} step {n}");
                // Keep `gap` frames free: return the frame `gap` after the cursor.
                let next = (n + gap) % frames;
                let addr = base + next * FRAME_SIZE;
                if h.held_set.contains(&addr) {
                    let k = h.held.iter().position(|&a| a == addr).unwrap();
                    h.free_held(k, &step);
                }
                h.check(&step);
                let got = if n % 4 == 3 {
                    let words = frames.div_ceil(64);
                    let boundary = 64 * (1 + rng.below(words as usize) as u64);
                    h.allocate_below(base + boundary * FRAME_SIZE, &step)
                } else {
                    h.allocate(&step)
                };
                h.check(&step);
                let Some(got) = got else { continue };
                let i = h.model.index_of(got);
                handed[i] += 1;
                // A wrap: from the upper half of the window to the lower half.
                if previous.is_some_and(|p| got < p && p - got >= frames * FRAME_SIZE / 2) {
                    wraps += 1;
                }
                previous = Some(got);
            }
            let step = format!("base {base:#x} frames {frames} gap {gap}");
            assert!(frames < 2 || wraps >= 3, "{step}: the hint wrapped only {wraps} times");
            // The first and last frame of every word, and the window's last frame.
            for w in 0..frames.div_ceil(64) {
                let (first, last) = (w * 64, ((w + 1) * 64).min(frames) - 1);
                assert!(handed[first as usize] > 0 && handed[last as usize] > 0, "{step}: {w}");
            }
        }
    });
}

/// Each allocation call with a full window: every frame given once, then nothing, then every
/// frame again after random-order frees, many times around.
#[test]
fn exhaust_and_refill_in_random_order() {
    for_each_window(|base, frames, seed| {
        let mut rng = XorShift(seed);
        let mut storage = vec![0; FrameBitmap::words_for(frames)];
        let bitmap = FrameBitmap::new(base, frames, &mut storage).unwrap();
        let model = Model::new(base, frames);
        let mut h = Harness { bitmap, model, held: Vec::new(), held_set: HashSet::new() };
        populate(&mut h, &mut rng, base, frames);
        let usable = h.model.free_count();
        for round in 0..6 {
            let step = format!("base {base:#x} frames {frames} round {round}");
            loop {
                let got = match round % 3 {
                    0 => h.allocate(&step),
                    1 => h.allocate_below(u64::MAX - rng.below(2) as u64, &step),
                    _ => {
                        let before = h.held.len();
                        h.allocate_contiguous(1, FRAME_SIZE, &step);
                        (h.held.len() > before).then_some(0)
                    }
                };
                h.check(&step);
                if got.is_none() {
                    break;
                }
            }
            assert_eq!(h.held.len() as u64, usable, "{step}: every usable frame, once");
            assert_eq!(h.bitmap.free_frames(), 0);
            while !h.held.is_empty() {
                let k = rng.below(h.held.len());
                h.free_held(k, &step);
                h.check(&step);
            }
            assert_eq!(h.bitmap.free_frames(), usable, "{step}: back at baseline");
        }
    });
}
