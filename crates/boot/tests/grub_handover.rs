//! GRUB 2.06's real Multiboot 2 hand-overs, captured from Keel's ISO under SeaBIOS and OVMF
//! (`fuzz/tools/capture_multiboot2.py`; also the `multiboot2` fuzz target's seeds): each is
//! the info structure's address (4 bytes) and the structure.

use keel_boot::handover::Handover;
use keel_boot::multiboot::SliceMemory;
use keel_boot::multiboot2::{Firmware, Multiboot2Info, BOOTLOADER_MAGIC};

fn parse(seed: &[u8]) -> Multiboot2Info {
    let info_phys = u32::from_le_bytes(seed[..4].try_into().unwrap());
    let mem = SliceMemory::new(info_phys as u64, &seed[4..]);
    assert!(Handover::parse(&mem, BOOTLOADER_MAGIC, info_phys).is_ok());
    Multiboot2Info::parse(&mem, BOOTLOADER_MAGIC, info_phys).unwrap()
}

#[test]
fn grub_under_seabios() {
    let info = parse(include_bytes!("../../../fuzz/seeds/multiboot2/grub-2.06-seabios.bin"));
    assert!(info.boot_loader_name().unwrap().starts_with("GRUB 2.06"));
    assert_eq!(info.firmware(), Firmware::Bios);
    assert_eq!(info.modules().len(), 3);
    assert!(info.rsdp().is_some());
    assert!(info.memory_map().is_some());
}

#[test]
fn grub_under_ovmf() {
    let info = parse(include_bytes!("../../../fuzz/seeds/multiboot2/grub-2.06-ovmf.bin"));
    assert!(info.boot_loader_name().unwrap().starts_with("GRUB 2.06"));
    assert_eq!(info.firmware(), Firmware::Uefi);
    assert_eq!(info.modules().len(), 3);
    assert!(info.rsdp().is_some());
    assert!(info.efi_memory_map().is_some());
}
