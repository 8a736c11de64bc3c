//! Multiboot 1 hand-over (`keel-boot`): input = the info structure's physical address
//! (4 bytes, little endian) and the memory image starting there, which every pointer in
//! the structure (command line, memory map, modules, strings) must fall back into. Accepted
//! hand-overs are checked against the guarantees `BootInfo::parse` documents, and the
//! combined `Handover` parser the kernel calls must agree with it.
#![no_main]

use keel_boot::cmdline::CommandLine;
use keel_boot::handover::Handover;
use keel_boot::multiboot::{BootInfo, SliceMemory, BOOTLOADER_MAGIC};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let info_phys = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let mem = SliceMemory::new(info_phys as u64, &data[4..]);
    let parsed = BootInfo::parse(&mem, BOOTLOADER_MAGIC, info_phys);
    let handover = Handover::parse(&mem, BOOTLOADER_MAGIC, info_phys);
    assert_eq!(parsed.is_ok(), handover.is_ok());
    let Ok(info) = parsed else { return };
    let handover = handover.unwrap();
    assert_eq!(info.info_phys(), info_phys);
    assert_eq!(info.unknown_flags() & !info.flags(), 0);
    for r in info.occupied() {
        assert!(r.range.start < r.range.end, "empty occupied range {r:?}");
    }
    if let Some(map) = info.memory_map() {
        for e in map {
            assert!(e.length > 0);
            let range = e.range().expect("parse rejects overflowing entries");
            assert_eq!(range.end - range.start, e.length);
        }
    }
    for m in info.modules() {
        assert!(m.start <= m.end);
        assert!(m.cmdline_phys != 0 || m.cmdline_len == 0);
    }
    assert_eq!(info.command_line().map(str::len), info.command_line_bytes().map(<[u8]>::len));
    assert_eq!(handover.command_line(), info.command_line());
    assert_eq!(handover.boot_loader_name(), info.boot_loader_name());
    assert_eq!(handover.modules(), info.modules());
    if let Some(line) = info.command_line() {
        // The kernel hands the validated command line straight to its parser.
        if let Ok(cl) = CommandLine::parse(line) {
            assert!(cl.len() <= keel_boot::cmdline::MAX_TOKENS);
        }
    }
});
