//! AMD-Vi (the AMD IOMMU): discovery, report and pass-through bring-up.
//!
//! The firmware describes each IOMMU in the IVRS table (parsed by `keel_iommu::ivrs`): its
//! register base, its interrupt features (XT: 32-bit destinations, GA: the 128-bit IRTE) and
//! the device id each requester's interrupts carry, the IOAPIC's included. Keel reads the
//! unit's extended feature register back, then brings each unit up in pass-through
//! ([`unit`]): device table entries for the requesters the IVRS lists that leave DMA and
//! interrupts untranslated, the command buffer, and a completion wait read back. IOAPIC and
//! MSI routing stays in compatibility format as on a machine without an IOMMU;
//! destinations above 254 then need the LAPICs' own x2APIC reach, as today. Interrupt
//! remapping through AMD-Vi is not done.
//!
//! QEMU 10.0's `amd-iommu` with its default `pt=on` builds the IOAPIC's address space
//! before the regions it aliases exist, so every IOAPIC interrupt is dropped whatever the
//! guest programs (fixed upstream by moving that set-up last); with `pt=off` the IOAPIC's
//! writes reach the LAPICs, never remapped. See docs/interrupts.md.

mod registers;
mod unit;

use alloc::vec::Vec;

use keel_iommu::amdvi::control;
use keel_iommu::ivrs::{Efr, Ivhd, Ivrs};
use registers::Registers;

/// Discovers the AMD IOMMUs the IVRS lists and reports them (`iommu.amd.*` evidence).
/// `ioapic_ids` are the MADT's IOAPICs, whose requester ids the IVRS must name.
pub fn init(ioapic_ids: &[u8]) {
    let Some(bytes) = crate::acpi::ivrs() else {
        ev!("iommu.amd.ivrs", "none");
        return;
    };
    let ivrs = match Ivrs::parse(bytes) {
        Ok(ivrs) => ivrs,
        Err(e) => {
            log::warn!("amdvi: IVRS rejected: {e:?}");
            ev!("iommu.amd.ivrs", "malformed");
            return;
        }
    };
    ev!("iommu.amd.ivrs", "parsed");
    if let Some(e) = ivrs.first_error() {
        log::warn!("amdvi: IVRS error: {e:?} (the blocks and entries before it are used)");
        ev!("iommu.amd.ivrs_error", format_args!("{e:?}"));
    }
    log::info!(
        "amdvi: IVinfo {:#x}: EFR images {}, {} physical address bits",
        ivrs.info.0,
        ivrs.info.efr_supported(),
        ivrs.info.pa_size()
    );
    let units: Vec<_> = ivrs.preferred_units().collect();
    ev!("iommu.amd.units", units.len());
    for (i, unit) in units.iter().enumerate() {
        let features = unit.features();
        log::info!(
            "amdvi: unit {i}: IVHD type {:#x}, device {:#06x} segment {} registers at {:#x}, \
             XT {} GA {}, {} device ranges",
            unit.kind.raw(),
            unit.device_id,
            unit.segment,
            unit.base_address,
            features.xt,
            features.ga,
            unit.device_ranges().count()
        );
        ev!(("iommu.amd.{i}.ivhd_type"), format_args!("{:#x}", unit.kind.raw()));
        ev!(("iommu.amd.{i}.base"), format_args!("{:#x}", unit.base_address));
        ev!(("iommu.amd.{i}.device_id"), format_args!("{:#06x}", unit.device_id));
        // What the unit itself reports, read from its registers.
        let regs = Registers::map(unit.base_address);
        let efr = Efr(regs.extended_features());
        let firmware_control = regs.control();
        let live = efr.features();
        if live != features {
            log::warn!(
                "amdvi: unit {i}: the IVRS says {features:?} but the EFR register {:#x} says {live:?}",
                efr.0
            );
        }
        ev!(("iommu.amd.{i}.efr"), format_args!("{:#x}", efr.0));
        if i == 0 {
            ev!("iommu.amd.xt", if live.xt && features.xt { "yes" } else { "no" });
            ev!("iommu.amd.ga", if live.ga && features.ga { "yes" } else { "no" });
        }
        if firmware_control & control::IOMMU_EN != 0 {
            log::warn!("amdvi: unit {i}: firmware left it enabled (control {firmware_control:#x})");
        }
        bring_up(i, &regs, unit, &ivrs, ioapic_ids);
    }
    for id in ioapic_ids {
        match ivrs.ioapic_device(*id) {
            Some((unit, devid)) => {
                log::info!(
                    "amdvi: IOAPIC {id} requests as {:02x}:{:02x}.{} through the unit at {:#x}",
                    devid >> 8,
                    (devid >> 3) & 0x1F,
                    devid & 7,
                    unit.base_address
                );
                ev!(("iommu.amd.ioapic.{id}.devid"), format_args!("{devid:#06x}"));
            }
            None => {
                log::warn!("amdvi: the IVRS names no requester id for IOAPIC {id}");
                ev!(("iommu.amd.ioapic.{id}.devid"), "none");
            }
        }
    }
}

/// Brings unit `i` up in pass-through and reports what the unit and memory read back.
fn bring_up(i: usize, regs: &Registers, unit: &Ivhd<'_>, ivrs: &Ivrs<'_>, ioapic_ids: &[u8]) {
    let yes = |on: bool| if on { "yes" } else { "no" };
    match unit::bring_up(regs, unit) {
        Ok(r) => {
            let control_reg = regs.control();
            log::info!(
                "amdvi: unit {i}: pass-through: {} of {} device table entries at {:#x}, {} \
                 commands, completion stored {:#x}, control {control_reg:#x}",
                r.entries_written,
                r.table_entries,
                r.table_phys,
                r.commands,
                r.store_value
            );
            ev!(("iommu.amd.{i}.enabled"), yes(control_reg & control::IOMMU_EN != 0));
            ev!(("iommu.amd.{i}.cmdbuf"), yes(control_reg & control::CMD_BUF_EN != 0));
            ev!(("iommu.amd.{i}.dte_written"), r.entries_written);
            ev!(("iommu.amd.{i}.commands"), r.commands);
            ev!(("iommu.amd.{i}.completion_store"), format_args!("{:#x}", r.store_phys));
            ev!(("iommu.amd.{i}.completion_value"), format_args!("{:#x}", r.store_value));
            ev!(("iommu.amd.{i}.cmd_head"), r.head);
            ev!(("iommu.amd.{i}.cmd_tail"), r.tail);
            for id in ioapic_ids {
                let Some((owner, devid)) = ivrs.ioapic_device(*id) else { continue };
                if owner.base_address == unit.base_address {
                    let ctl = unit::dte_int_ctl(r.table_phys, devid);
                    ev!(("iommu.amd.ioapic.{id}.int_ctl"), ctl.name());
                }
            }
        }
        Err(e) => {
            log::warn!("amdvi: unit {i}: left disabled: {e:?}");
            ev!(("iommu.amd.{i}.enabled"), yes(regs.control() & control::IOMMU_EN != 0));
        }
    }
}
