//! The firmware proofs: chosen `-kernel` proofs booted instead from a GRUB ISO (Multiboot 2)
//! under SeaBIOS and under OVMF (UEFI), judged by exactly the same checks. Under UEFI the
//! kernel gets its RSDP and memory map from Multiboot 2 tags, there is no BIOS data area,
//! and low memory is free only where the EFI memory map says so.

use std::time::Duration;

use super::{Accels, Boot, Proof};
use crate::checks::eq;
use crate::iso::Firmware;

/// The `-kernel` proofs that also run from the ISO: both LAPIC modes, ring-3 drivers taking
/// edu MSI and INTx interrupts, and a machine whose firmware leaves x2APIC enabled.
pub const FIRMWARE_BASES: &[&str] = &["smp", "smp-x2apic", "interrupt-grant", "firmware-x2apic"];

/// The `-kernel` proof each firmware variant is made from. SeaBIOS enables x2APIC as soon as
/// the machine may hold APIC IDs above 254 (`maxcpus=260`); OVMF only when a present CPU
/// has one, so its firmware-x2apic case is the machine with APIC ID 257.
fn base_for(fw: Firmware, name: &str) -> &str {
    match (fw, name) {
        (Firmware::Ovmf, "firmware-x2apic") => "apic-id-257",
        _ => name,
    }
}

/// Firmware plus GRUB add seconds of TCG time before the kernel starts (OVMF most).
const FIRMWARE_EXTRA_TIME: Duration = Duration::from_secs(90);

/// `bios-<name>` and `uefi-<name>` for each of [`FIRMWARE_BASES`] found in `base`.
pub fn firmware_variants(base: &[Proof]) -> Vec<Proof> {
    let mut out = Vec::new();
    for fw in [Firmware::SeaBios, Firmware::Ovmf] {
        for name in FIRMWARE_BASES {
            let from = base_for(fw, name);
            let Some(p) = base.iter().find(|p| p.name == from) else { continue };
            let (label, firmware) = match fw {
                Firmware::SeaBios => ("SeaBIOS", "bios"),
                Firmware::Ovmf => ("OVMF (UEFI)", "uefi"),
            };
            let mut v = p.clone();
            v.name = Box::leak(format!("{}-{name}", fw.short()).into_boxed_str());
            v.description = Box::leak(
                format!("{from} booted by GRUB from the ISO under {label}").into_boxed_str(),
            );
            v.boot = Boot::Iso(fw);
            v.accels = Accels::TcgOnly;
            v.timeout += FIRMWARE_EXTRA_TIME;
            // The hand-over really was Multiboot 2 from the named firmware, and ACPI was found
            // through the loader's RSDP tag, never by scanning BIOS areas.
            v = v
                .check(eq("boot.protocol", 2))
                .check(eq("boot.firmware", firmware))
                .check(eq("acpi.rsdp", "loader"));
            if *name == "firmware-x2apic" {
                v = v.check(eq("lapic.firmware_state", "x2apic")).check(eq("lapic.mode_writes", 0));
            }
            out.push(v);
        }
    }
    out
}
