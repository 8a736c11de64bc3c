//! The frame bitmap at the ends of its arithmetic: counts, alignments and ranges near 2^64,
//! and windows that would end past it. None of these may wrap, panic or move a counter.

use keel_mm::{FrameBitmap, FrameError, FRAME_SIZE};

fn full_window(base: u64, frames: u64, storage: &mut Vec<u64>) -> FrameBitmap<'_> {
    storage.resize(FrameBitmap::words_for(frames), 0);
    let mut b = FrameBitmap::new(base, frames, storage).unwrap();
    b.add_free_range(base, base + frames * FRAME_SIZE);
    b
}

#[test]
fn huge_contiguous_counts_are_refused_without_wrapping() {
    let mut storage = Vec::new();
    let mut b = full_window(0x1000, 130, &mut storage);
    // The base is not 8 KiB aligned, so that scan starts at frame 1, where `1 + count` used to
    // wrap (a panic here; without overflow checks, a bogus success and a wrapped counter).
    let first = b.allocate().unwrap();
    for count in [u64::MAX, u64::MAX - 1, u64::MAX / 2 + 1, 1 << 52, 130] {
        for align in [FRAME_SIZE, 2 * FRAME_SIZE] {
            assert_eq!(b.allocate_contiguous(count, align), None, "{count} {align}");
            assert_eq!((b.free_frames(), b.check_invariants()), (129, Ok(())));
        }
    }
    b.free(first).unwrap();
    assert_eq!(b.allocate_contiguous(130, FRAME_SIZE), Some(0x1000), "exactly the window");
    assert_eq!((b.free_frames(), b.check_invariants()), (0, Ok(())));
    assert_eq!(b.allocate_contiguous(1, FRAME_SIZE), None);
}

#[test]
fn huge_alignments_are_refused_without_wrapping() {
    // A window in the top half of the address space: the next 2^63-aligned address after
    // its base does not exist, and rounding up to it used to wrap.
    let base = (1 << 63) + 0x1000;
    let mut storage = Vec::new();
    let mut b = full_window(base, 64, &mut storage);
    for shift in 12..64 {
        let align = 1u64 << shift;
        let want = (base % align == 0).then_some(base);
        let want = want.or_else(|| {
            let up = base.checked_next_multiple_of(align)?;
            (up + 4 * FRAME_SIZE <= base + 64 * FRAME_SIZE).then_some(up)
        });
        let got = b.allocate_contiguous(4, align);
        assert_eq!(got, want, "align 2^{shift}");
        if let Some(first) = got {
            (0..4).for_each(|k| b.free(first + k * FRAME_SIZE).unwrap());
        }
        assert_eq!((b.free_frames(), b.check_invariants()), (64, Ok(())));
    }
    // A used frame whose next aligned candidate lies past 2^64.
    let f = b.allocate().unwrap();
    assert_eq!(f, base);
    assert_eq!(b.allocate_contiguous(64, FRAME_SIZE), None);
    assert_eq!(b.allocate_contiguous(2, 1 << 62), None);
    assert_eq!(b.free_frames(), 63);
}

#[test]
fn ranges_ending_at_the_top_of_the_address_space() {
    let mut storage = Vec::new();
    let mut b = full_window(0, 64, &mut storage);
    // Rounding `u64::MAX` up to a frame used to wrap to 0 and reserve nothing.
    b.reserve_range(8 * FRAME_SIZE, u64::MAX);
    assert_eq!(b.free_frames(), 8);
    assert_eq!(b.free(9 * FRAME_SIZE), Err(FrameError::NotManaged(9 * FRAME_SIZE)));
    // Rounding a start in the last frame of the address space up used to wrap as well.
    b.add_free_range(u64::MAX - 10, u64::MAX);
    b.add_free_range(u64::MAX - FRAME_SIZE + 1, 4 * FRAME_SIZE);
    assert_eq!((b.free_frames(), b.check_invariants()), (8, Ok(())));
    b.add_free_range(0, u64::MAX);
    assert_eq!(b.free_frames(), 64);
    b.reserve_range(0, u64::MAX);
    assert_eq!((b.free_frames(), b.check_invariants()), (0, Ok(())));
}

#[test]
fn an_empty_reservation_reserves_nothing() {
    let mut storage = Vec::new();
    let mut b = full_window(0, 64, &mut storage);
    b.reserve_range(0x1800, 0x1800); // rounded outward, this used to take frame 1
    b.reserve_range(0x3000, 0x2000);
    assert_eq!(b.free_frames(), 64);
    b.reserve_range(0x1800, 0x1801);
    assert_eq!(b.free_frames(), 63);
}

#[test]
fn windows_past_the_top_of_the_address_space_are_refused() {
    let mut storage = vec![0u64; 4];
    let top = u64::MAX - FRAME_SIZE + 1; // the last frame of the address space
    assert_eq!(
        FrameBitmap::new(top, 2, &mut storage).err(),
        Some(FrameError::WindowTooLarge { base: top, frames: 2 })
    );
    assert_eq!(
        FrameBitmap::new(0, u64::MAX / FRAME_SIZE + 1, &mut storage).err(),
        Some(FrameError::WindowTooLarge { base: 0, frames: u64::MAX / FRAME_SIZE + 1 })
    );
    // Its end must be representable: the highest window accepted ends one frame below 2^64.
    let mut b = FrameBitmap::new(top - FRAME_SIZE, 1, &mut storage).unwrap();
    b.add_free_range(0, u64::MAX);
    assert_eq!(b.allocate_below(u64::MAX), Some(top - FRAME_SIZE));
    assert_eq!(b.check_invariants(), Ok(()));
}

/// `allocate_below` finds a frame below the limit wherever the hint is, and leaves the hint
/// (the general allocations' cursor) where it was.
#[test]
fn allocate_below_from_the_start_keeps_the_cursor() {
    let mut storage = Vec::new();
    let mut b = full_window(0, 256, &mut storage);
    for _ in 0..200 {
        b.allocate().unwrap(); // the cursor is now at frame 199
    }
    b.free(5 * FRAME_SIZE).unwrap();
    b.free(70 * FRAME_SIZE).unwrap();
    // Only frame 5 lies below the limit: found by the scan from the start.
    assert_eq!(b.allocate_below(64 * FRAME_SIZE), Some(5 * FRAME_SIZE));
    assert_eq!(b.allocate_below(64 * FRAME_SIZE), None);
    // General allocations continue after the cursor, not at frame 70.
    assert_eq!(b.allocate(), Some(200 * FRAME_SIZE));
    assert_eq!(b.check_invariants(), Ok(()));
}

/// A window of no frames: every call answers, none indexes an empty bitmap.
#[test]
fn an_empty_window_answers_everything() {
    let mut storage: Vec<u64> = Vec::new();
    let mut b = FrameBitmap::new(0x1000, 0, &mut storage).unwrap();
    b.add_free_range(0, u64::MAX);
    b.reserve_range(0, u64::MAX);
    assert_eq!((b.allocate(), b.allocate_below(u64::MAX)), (None, None));
    assert_eq!(b.allocate_contiguous(1, FRAME_SIZE), None);
    assert_eq!(b.free(0x1000), Err(FrameError::OutOfRange(0x1000)));
    assert_eq!((b.free_frames(), b.total_frames(), b.check_invariants()), (0, 0, Ok(())));
}
