//! ELF executables (`keel-elf`): every guarantee the crate documents for an `Ok` image is
//! re-checked from the returned segments, against two user-space limits.
#![no_main]

use keel_elf::{ElfImage, PAGE_SIZE, USER_END_MAX, USER_START};
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8], user_end: u64) {
    let Ok(image) = ElfImage::parse(bytes, user_end) else { return };
    assert_eq!(image.user_end(), user_end);
    let segments: Vec<_> = image.segments().collect();
    assert!(!segments.is_empty() && segments.len() <= keel_elf::MAX_LOAD_SEGMENTS);
    for s in &segments {
        assert!(s.memsz > 0 && s.filesz <= s.memsz);
        assert!(s.vaddr >= USER_START && s.end() <= user_end && s.end() > s.vaddr);
        assert!(!(s.flags.write && s.flags.exec), "W^X");
        assert_eq!(s.vaddr % PAGE_SIZE, s.file_offset % PAGE_SIZE);
        assert!(s.align <= 1 || s.align.is_power_of_two());
        assert_eq!(image.segment_data(s).len() as u64, s.filesz);
        let (start, end) = s.page_range();
        assert!(start <= s.vaddr && s.end() <= end && end <= user_end);
        assert_eq!(s.page_count(), (end - start) / PAGE_SIZE);
    }
    for (i, a) in segments.iter().enumerate() {
        for b in &segments[i + 1..] {
            assert!(a.end() <= b.vaddr || b.end() <= a.vaddr, "segments overlap");
            let ((a0, a1), (b0, b1)) = (a.page_range(), b.page_range());
            assert!(a1 <= b0 || b1 <= a0 || a.flags == b.flags, "shared page, two permissions");
        }
    }
    let entry = image.entry();
    assert!(segments.iter().any(|s| s.flags.exec && s.vaddr <= entry && entry < s.end()));
    let (lo, hi) = image.page_span();
    assert!(lo < hi && hi <= user_end && lo >= USER_START & !(PAGE_SIZE - 1));
}

fuzz_target!(|data: &[u8]| {
    // The kernel's limit, and a small one so segment bounds are exercised from both sides.
    check(data, USER_END_MAX);
    check(data, 0x80_0000);
});
