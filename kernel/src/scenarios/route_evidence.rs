//! Evidence of how a device interrupt is routed, read back from where the route lives: the
//! IOAPIC's redirection entry or the function's MSI address register, and (with interrupt
//! remapping) the interrupt-remapping table entry they index, decoded from table memory.

use keel_apic::ioapic::RedirectionEntry;
use keel_apic::TriggerMode;
use keel_iommu::{RemappableMsi, RemappableRte, SourceValidation};

use fw::arch::x86_64::{amdvi, ioapic, iommu};
use fw::pci::{self, PciDevice};

/// `<prefix>.format` (`remappable`/`compatibility`), `<prefix>.remap_index` and the IRTE's
/// decoded destination and vector when the entry is remappable.
pub fn ioapic_evidence(prefix: &str, gsi: u32) {
    let Ok(raw) = ioapic::read_entry(gsi) else {
        ev!(("{}.format", prefix), "unreadable");
        return;
    };
    ev!(("{}.rte", prefix), format_args!("{:#010x}_{:08x}", raw.high, raw.low));
    if amdvi::mode().is_some() {
        // AMD-Vi: the RTE's vector field is the index into the IOAPIC requester's table.
        let devid = ioapic::id_of(gsi).and_then(amdvi::remap::ioapic_device);
        match (RedirectionEntry::decode(raw), devid) {
            (Ok(rte), Some(devid)) => amdvi_evidence(prefix, devid, rte.vector as u16),
            _ => ev!(("{}.format", prefix), "unreadable"),
        }
        return;
    }
    match RemappableRte::decode(raw) {
        Some(rte) => {
            ev!(("{}.format", prefix), "remappable");
            irte_evidence(prefix, rte.index);
        }
        None => {
            ev!(("{}.format", prefix), "compatibility");
            if let Ok(RedirectionEntry {
                destination: keel_apic::ioapic::IoDestination::Physical(id),
                ..
            }) = RedirectionEntry::decode(raw)
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
    // The id the function's requests carry on bus 0 (its bus/device/function).
    ev!(("{}.requester_id", prefix), format_args!("{:#x}", device.addr.bdf()));
    if amdvi::mode().is_some() {
        // AMD-Vi: MSI data bits 10:0 index the function's own table.
        let data = pci::msi_data(device, cap);
        ev!(("{}.msi_data", prefix), format_args!("{data:#x}"));
        amdvi_evidence(prefix, device.addr.bdf(), data & 0x7FF);
        return;
    }
    match RemappableMsi::decode(address) {
        Some(msi) => {
            ev!(("{}.format", prefix), "remappable");
            irte_evidence(prefix, msi.handle);
        }
        None => {
            // Compatibility format: destination APIC ID in address bits 19:12, vector in
            // data bits 7:0, as the function holds them.
            ev!(("{}.format", prefix), "compatibility");
            ev!(("{}.msi_destination", prefix), (address >> 12) & 0xFF);
            ev!(("{}.msi_vector", prefix), pci::msi_data(device, cap) & 0xFF);
        }
    }
}

/// The AMD-Vi entry `index` of requester `devid`'s table, decoded from table memory, and its
/// raw quadwords (as the unit's `amdvi_ir_irte_ga_val` trace shows them).
pub fn amdvi_evidence(prefix: &str, devid: u16, index: u16) {
    ev!(("{}.format", prefix), "amdvi");
    ev!(("{}.irte_devid", prefix), format_args!("{devid:#06x}"));
    ev!(("{}.remap_index", prefix), index);
    match amdvi::remap::entry(devid, index) {
        Some(Ok(irte)) => {
            ev!(("{}.irte_destination", prefix), irte.destination);
            ev!(("{}.irte_vector", prefix), irte.vector);
        }
        Some(Err(e)) => ev!(("{}.irte_destination", prefix), format_args!("invalid:{e:?}")),
        None => ev!(("{}.irte_destination", prefix), "no-table"),
    }
    if let Some(raw) = amdvi::remap::raw_entry(devid, index) {
        ev!(("{}.irte_raw", prefix), format_args!("{:#x}_{:#x}", raw[1], raw[0]));
    }
}

/// The whole entry at `index`, decoded from table memory: destination, vector, trigger mode
/// and source validation (SVT, and SID or the bus range; a requester entry decodes only with
/// SQ = 0, every other bit pattern is reported invalid).
pub fn irte_evidence(prefix: &str, index: u16) {
    ev!(("{}.remap_index", prefix), index);
    match iommu::entry(index) {
        Some(Ok(irte)) => {
            ev!(("{}.irte_destination", prefix), irte.destination.apic_id().get());
            ev!(("{}.irte_vector", prefix), irte.vector);
            let trigger = match irte.trigger {
                TriggerMode::Edge => "edge",
                TriggerMode::Level => "level",
            };
            ev!(("{}.irte_trigger", prefix), trigger);
            match irte.source {
                SourceValidation::None => ev!(("{}.irte_svt", prefix), "none"),
                SourceValidation::Requester(sid) => {
                    ev!(("{}.irte_svt", prefix), "requester");
                    ev!(("{}.irte_sid", prefix), format_args!("{:#x}", sid.0));
                }
                SourceValidation::BusRange { first, last } => {
                    ev!(("{}.irte_svt", prefix), "bus_range");
                    ev!(
                        ("{}.irte_sid", prefix),
                        format_args!("{:#x}", (first as u16) << 8 | last as u16)
                    );
                }
            }
        }
        Some(Err(e)) => ev!(("{}.irte_destination", prefix), format_args!("invalid:{e:?}")),
        None => ev!(("{}.irte_destination", prefix), "no-table"),
    }
}

/// `iommu_fault_test=edu`: proves the fault path end to end before the drivers start. The
/// edu device's MSI is pointed at a table index whose entry is not present and the device
/// raises one interrupt: the unit must block it and record fault reason 0x22 with edu's
/// requester id and that index, which the kernel reads from the fault-recording registers.
pub fn fault_self_test() -> bool {
    let (Some(index), Some(dev)) = (iommu::unused_index(), pci::find(0x1234, 0x11e8, 0)) else {
        ev!("iommu.fault_test", "no-edu-or-no-free-index");
        return false;
    };
    let Some(cap) = pci::find_capability(dev, 0x05) else {
        ev!("iommu.fault_test", "no-msi");
        return false;
    };
    let stale = iommu::take_faults();
    if !stale.is_empty() {
        log::warn!("iommu: {} fault(s) before the self-test: {stale:?}", stale.len());
    }
    let bar =
        fw::mm::paging::map_physical(dev.bars[0].phys, 0x100, fw::mm::paging::Caching::Uncached)
            .as_mut_ptr::<u32>();
    pci::enable(dev, true, true, false);
    pci::msi_write(dev, cap, RemappableMsi { handle: index }.address(), 0);
    // SAFETY: BAR 0 of edu is its register page, mapped uncached; 0x60 raises an interrupt.
    unsafe { bar.byte_add(0x60).write_volatile(1) };
    let mut faults = alloc::vec::Vec::new();
    fw::time::spin_until(0, 500_000_000, || {
        faults.extend(iommu::take_faults());
        !faults.is_empty()
    });
    // SAFETY: as above; 0x64 acknowledges the raised interrupt in the device.
    unsafe { bar.byte_add(0x64).write_volatile(1) };
    pci::msi_disable(dev, cap);
    let Some(f) = faults.first() else {
        ev!("iommu.fault_test", "no-fault-recorded");
        return false;
    };
    log::info!("iommu: fault self-test: {f:?} ({})", keel_iommu::regs::fault_reason(f.reason));
    ev!("iommu.fault_test", "recorded");
    ev!("iommu.fault_test.reason", format_args!("{:#x}", f.reason));
    ev!("iommu.fault_test.source_id", format_args!("{:#x}", f.source_id));
    ev!("iommu.fault_test.index", f.interrupt_index);
    ev!("iommu.fault_test.expected_index", index);
    ev!("iommu.fault_test.expected_source_id", format_args!("{:#x}", dev.addr.bdf()));
    f.reason == 0x22 && f.interrupt_index == index && f.source_id == dev.addr.bdf()
}
