//! Finding the MADT (the `acpi` crate) and handing its entries to `keel-platform`, which
//! decides what they mean: dense CPU indices, enabled CPUs, LINT wiring, oddities reported
//! as diagnostics rather than trusted.

use core::ptr::NonNull;

use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use keel_platform::{MadtRecord, Platform};

/// Every physical address is its own virtual address here (boot.rs maps 0..4 GiB 1:1).
#[derive(Clone, Copy)]
struct IdentityMapped;

impl AcpiHandler for IdentityMapped {
    unsafe fn map_physical_region<T>(&self, phys: usize, size: usize) -> PhysicalMapping<Self, T> {
        let virt = NonNull::new(phys as *mut T).expect("ACPI table at physical 0");
        // SAFETY: the identity map covers every table the firmware places below 4 GiB.
        unsafe { PhysicalMapping::new(phys, virt, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// Fills `platform` from the firmware's MADT; `bsp_apic_id` is the running CPU's ID.
pub fn interpret(platform: &mut Platform, bsp_apic_id: u32) -> Result<(), acpi::AcpiError> {
    // SAFETY: the BIOS areas (EBDA, 0xE0000..0xFFFFF) are identity-mapped; the crate checks
    // signatures and checksums of everything it follows from there.
    let tables = unsafe { AcpiTables::search_for_rsdp_bios(IdentityMapped)? };
    let madt = tables.find_table::<Madt>()?;
    let m = madt.get();
    platform.rebuild(m.local_apic_address, m.supports_8259(), m.entries().map(record), bsp_apic_id);
    Ok(())
}

/// One MADT entry in `keel-platform`'s vocabulary (widths normalised, nothing dropped).
fn record(entry: MadtEntry) -> MadtRecord {
    match entry {
        MadtEntry::LocalApic(e) => MadtRecord::LocalApic {
            processor_uid: e.processor_id.into(),
            apic_id: e.apic_id.into(),
            flags: e.flags,
        },
        MadtEntry::LocalX2Apic(e) => MadtRecord::LocalX2Apic {
            processor_uid: e.processor_uid,
            apic_id: e.x2apic_id,
            flags: e.flags,
        },
        MadtEntry::IoApic(e) => MadtRecord::IoApic {
            id: e.io_apic_id,
            address: e.io_apic_address,
            gsi_base: e.global_system_interrupt_base,
        },
        MadtEntry::InterruptSourceOverride(e) => MadtRecord::InterruptSourceOverride {
            bus: e.bus,
            source: e.irq,
            gsi: e.global_system_interrupt,
            flags: e.flags,
        },
        MadtEntry::NmiSource(e) => {
            MadtRecord::NmiSource { flags: e.flags, gsi: e.global_system_interrupt }
        }
        MadtEntry::LocalApicNmi(e) => MadtRecord::LocalApicNmi {
            processor_uid: e.processor_id.into(),
            flags: e.flags,
            lint: e.nmi_line,
        },
        MadtEntry::X2ApicNmi(e) => MadtRecord::LocalX2ApicNmi {
            processor_uid: e.processor_uid,
            flags: e.flags,
            lint: e.nmi_line,
        },
        MadtEntry::LocalApicAddressOverride(e) => {
            MadtRecord::LocalApicAddressOverride { address: e.local_apic_address }
        }
        // Entry types a PC kernel does not use: keel-platform notes each kind once.
        MadtEntry::IoSapic(_) => MadtRecord::Other { kind: 6 },
        MadtEntry::LocalSapic(_) => MadtRecord::Other { kind: 7 },
        MadtEntry::PlatformInterruptSource(_) => MadtRecord::Other { kind: 8 },
        MadtEntry::Gicc(_) => MadtRecord::Other { kind: 0xB },
        MadtEntry::Gicd(_) => MadtRecord::Other { kind: 0xC },
        MadtEntry::GicMsiFrame(_) => MadtRecord::Other { kind: 0xD },
        MadtEntry::GicRedistributor(_) => MadtRecord::Other { kind: 0xE },
        MadtEntry::GicInterruptTranslationService(_) => MadtRecord::Other { kind: 0xF },
        MadtEntry::MultiprocessorWakeup(_) => MadtRecord::Other { kind: 0x10 },
    }
}
