//! Multiboot 2 hand-over (`keel-boot`): input = the info structure's physical address
//! (4 bytes, little endian) and the memory image starting there. Accepted hand-overs are
//! checked against the guarantees `Multiboot2Info::parse` documents, and the combined
//! `Handover` parser the kernel calls must agree with it.
#![no_main]

use keel_boot::cmdline::CommandLine;
use keel_boot::handover::Handover;
use keel_boot::multiboot::SliceMemory;
use keel_boot::multiboot2::{Multiboot2Info, BOOTLOADER_MAGIC};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let info_phys = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let mem = SliceMemory::new(info_phys as u64, &data[4..]);
    let parsed = Multiboot2Info::parse(&mem, BOOTLOADER_MAGIC, info_phys);
    let handover = Handover::parse(&mem, BOOTLOADER_MAGIC, info_phys);
    assert_eq!(parsed.is_ok(), handover.is_ok());
    let Ok(info) = parsed else { return };
    let handover = handover.unwrap();
    assert_eq!(info.info_phys(), info_phys);
    assert!(info.info_phys() % 8 == 0);
    // The end tag may come before `total_size` (the rest is never read), so only the
    // header's own bounds hold.
    assert!(info.total_size() >= 16);
    assert!(u64::from(info_phys) + u64::from(info.total_size()) <= 1 << 32);
    for r in info.occupied() {
        assert!(r.range.start < r.range.end, "empty occupied range {r:?}");
    }
    let maps = info.memory_map().map(|(m, _)| m).into_iter().chain(info.efi_memory_map());
    for map in maps {
        for e in map {
            assert!(e.length > 0);
            let range = e.range().expect("parse rejects overflowing entries");
            assert_eq!(range.end - range.start, e.length);
        }
    }
    for m in info.modules() {
        assert!(m.start <= m.end);
    }
    assert_eq!(handover.command_line(), info.command_line());
    assert_eq!(handover.boot_loader_name(), info.boot_loader_name());
    assert_eq!(handover.modules(), info.modules());
    assert_eq!(handover.firmware(), info.firmware());
    assert_eq!(handover.memory_map(), info.memory_map());
    if let Some(line) = info.command_line() {
        if let Ok(cl) = CommandLine::parse(line) {
            assert!(cl.len() <= keel_boot::cmdline::MAX_TOKENS);
        }
    }
});
