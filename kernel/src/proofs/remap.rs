//! Evidence of how a device interrupt is routed, read back from where the route lives: the
//! IOAPIC's redirection entry or the function's MSI address register, and (with interrupt
//! remapping) the interrupt-remapping table entry they index, decoded from table memory.

use keel_apic::ioapic::RedirectionEntry;
use keel_iommu::{RemappableMsi, RemappableRte};

use crate::arch::x86_64::{iommu, ioapic};
use crate::pci::{self, PciDevice};

/// `<prefix>.format` (`remappable`/`compatibility`), `<prefix>.remap_index` and the IRTE's
/// decoded destination and vector when the entry is remappable.
pub fn ioapic_evidence(prefix: &str, gsi: u32) {
    let Ok(raw) = ioapic::read_entry(gsi) else {
        ev!(("{}.format", prefix), "unreadable");
        return;
    };
    ev!(("{}.rte", prefix), format_args!("{:#010x}_{:08x}", raw.high, raw.low));
    match RemappableRte::decode(raw) {
        Some(rte) => {
            ev!(("{}.format", prefix), "remappable");
            irte_evidence(prefix, rte.index);
        }
        None => {
            ev!(("{}.format", prefix), "compatibility");
            if let Ok(RedirectionEntry { destination: keel_apic::ioapic::IoDestination::Physical(id), .. }) =
                RedirectionEntry::decode(raw)
            {
                ev!(("{}.rte_destination", prefix), id.get());
            }
        }
    }
}

/// The same for a function's MSI address.
pub fn msi_evidence(prefix: &str, device: &PciDevice, cap: u8) {
    let address = pci::msi_address(device, cap);
    ev!(("{}.msi_address", prefix), format_args!("{address:#x}"));
    match RemappableMsi::decode(address) {
        Some(msi) => {
            ev!(("{}.format", prefix), "remappable");
            irte_evidence(prefix, msi.handle);
        }
        None => ev!(("{}.format", prefix), "compatibility"),
    }
}

fn irte_evidence(prefix: &str, index: u16) {
    ev!(("{}.remap_index", prefix), index);
    match iommu::entry(index) {
        Some(Ok(irte)) => {
            ev!(("{}.irte_destination", prefix), irte.destination.apic_id().get());
            ev!(("{}.irte_vector", prefix), irte.vector);
        }
        Some(Err(e)) => ev!(("{}.irte_destination", prefix), format_args!("invalid:{e:?}")),
        None => ev!(("{}.irte_destination", prefix), "no-table"),
    }
}
