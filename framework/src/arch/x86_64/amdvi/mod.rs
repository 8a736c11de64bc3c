//! AMD-Vi (the AMD IOMMU): discovery, report, bring-up and interrupt remapping.
//!
//! The firmware describes each IOMMU in the IVRS table (parsed by `keel_iommu::ivrs`): its
//! register base, its interrupt features (XT: 32-bit destinations, GA: the 128-bit IRTE) and
//! the device id each requester's interrupts carry, the IOAPIC's included. Keel reads the
//! unit's extended feature register back, then brings the unit up ([`unit`]): device table
//! entries for the requesters the IVRS lists (DMA untranslated), the command buffer, the
//! event log and a completion wait read back. With one unit and no `iommu=off`, interrupts
//! are remapped ([`remap`]): the IOAPIC's entry and each MSI function's entry name an
//! interrupt table, GA/XT entries when unit and CPU allow (then a device interrupt reaches
//! any APIC ID), legacy entries otherwise. Otherwise the entries leave interrupts untranslated
//! and routing stays in compatibility format.
//!
//! QEMU 10.0's `amd-iommu` with its default `pt=on` builds the IOAPIC's address space
//! before the regions it aliases exist, so every IOAPIC interrupt is dropped whatever the
//! guest programs (fixed upstream by moving that set-up last); with `pt=off` the IOAPIC's
//! writes reach the LAPICs, never remapped. See docs/interrupts.md.

pub mod dma;
mod events;
mod registers;
pub mod remap;
mod unit;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use keel_iommu::amdvi::control;
use keel_iommu::amdvi_ir::{self, IrteFormat};
use keel_iommu::ivrs::{Efr, Ivhd, Ivrs};
use registers::Registers;

pub use remap::{mode, AmdRemapError};

/// `iommu.amd.*` evidence of the remapping state (nothing when it is off).
pub fn evidence() {
    remap::evidence();
    dma::evidence();
}

/// Discovers the AMD IOMMUs the IVRS lists, reports them (`iommu.amd.*` evidence) and
/// brings them up: with interrupt remapping when `remap_allowed` and there is one unit.
/// `ioapic_ids` are the MADT's IOAPICs, whose requester ids the IVRS must name.
/// `efr_image_override` replaces every type-0x11/0x40 block's EFR image (the scenarios'
/// stand-in for firmware whose table disagrees with the unit).
pub fn init(ioapic_ids: &[u8], remap_allowed: bool, efr_image_override: Option<u64>) {
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
    let mut units: Vec<_> = ivrs.preferred_units().collect();
    if let Some(image) = efr_image_override {
        for unit in units.iter_mut().filter(|u| u.efr_image.is_some()) {
            unit.efr_image = Some(image);
        }
    }
    ev!("iommu.amd.units", units.len());
    let remap = remap_allowed && units.len() == 1 && super::iommu::mode().is_none();
    if !remap {
        ev!("iommu.amd.remap", "off");
    }
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
        if let Some(image) = unit.efr_image {
            // Firmware may describe the unit wrongly (Linux reports an "EFR mismatch"); the
            // features used are those both the table and the register grant.
            ev!(("iommu.amd.{i}.efr_image"), format_args!("{image:#x}"));
            ev!(("iommu.amd.{i}.efr_agrees"), if image == efr.0 { "yes" } else { "no" });
        }
        if i == 0 {
            ev!("iommu.amd.xt", if live.xt && features.xt { "yes" } else { "no" });
            ev!("iommu.amd.ga", if live.ga && features.ga { "yes" } else { "no" });
        }
        if firmware_control & control::IOMMU_EN != 0 {
            log::warn!("amdvi: unit {i}: firmware left it enabled (control {firmware_control:#x})");
        }
        if remap {
            // GA entries only with the feature in both the IVRS and the register, XT for
            // their 32-bit destinations, and CMPXCHG16B to write them in one store (Linux's
            // conditions for GA mode).
            let ga = live.ga && features.ga && live.xt && features.xt;
            let cx16 = remap::has_cmpxchg16b();
            ev!("cpu.cmpxchg16b", if cx16 { "yes" } else { "no" });
            let format = if ga && cx16 { IrteFormat::Ga } else { IrteFormat::Legacy };
            bring_up_remapping(i, regs, unit, &ivrs, ioapic_ids, format);
        } else {
            let setup = unit::Setup {
                interrupt_quad: &|_, _| 0,
                control: 0,
                event_log: None,
                dma_deny: None,
            };
            bring_up(i, &regs, unit, &ivrs, ioapic_ids, &setup);
        }
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

/// Brings unit `i` up with interrupt remapping: an empty table (every entry RemapEn = 0, so
/// fixed interrupts are blocked until a route exists) for each listed requester before the
/// unit starts, the event log and its MSI to the boot CPU.
fn bring_up_remapping(
    i: usize,
    regs: Registers,
    unit: &Ivhd<'_>,
    ivrs: &Ivrs<'_>,
    ioapic_ids: &[u8],
    format: IrteFormat,
) {
    let mut ioapics = BTreeMap::new();
    for id in ioapic_ids {
        let Some((owner, devid)) = ivrs.ioapic_device(*id) else { continue };
        if owner.base_address == unit.base_address {
            ioapics.insert(*id, devid);
        }
    }
    let settings: BTreeMap<u16, u8> = unit::listed_device_ids(unit).into_iter().collect();
    let mut tables = BTreeMap::new();
    for devid in settings.keys() {
        let Some(table) = crate::mm::frames::allocate_zeroed() else {
            log::warn!("amdvi: no memory for the interrupt tables");
            for t in tables.values() {
                crate::mm::frames::free(*t);
            }
            return;
        };
        tables.insert(*devid, table);
    }
    let Some(events) = events::EventLog::allocate() else {
        log::warn!("amdvi: no memory for the event log");
        return;
    };
    // The empty table every deny entry names (DMA translation, default deny).
    let Some(empty_root) = crate::mm::frames::allocate_zeroed() else {
        log::warn!("amdvi: no memory for the DMA deny table");
        return;
    };
    let quad = |id: u16, setting: u8| match tables.get(&id) {
        Some(t) => amdvi_ir::remap_interrupt_quad(*t, setting).unwrap_or(0),
        None => 0,
    };
    let ga = if format == IrteFormat::Ga {
        amdvi_ir::control::GA_EN | amdvi_ir::control::XT_EN
    } else {
        0
    };
    let setup = unit::Setup {
        interrupt_quad: &quad,
        control: ga | amdvi_ir::control::EVENT_LOG_EN | amdvi_ir::control::EVENT_INT_EN,
        event_log: amdvi_ir::event_log_base(events.phys),
        dma_deny: dma::deny_quads(empty_root),
    };
    let Some(report) = bring_up(i, &regs, unit, ivrs, ioapic_ids, &setup) else {
        // The unit is off: its tables and log go back.
        for frame in tables.values().chain([&events.phys, &empty_root]) {
            crate::mm::frames::free(*frame);
        }
        return;
    };
    let efr = regs.extended_features();
    remap::install(remap::Remapper {
        regs,
        devtab_phys: report.table_phys,
        devtab_entries: report.table_entries,
        command_phys: report.command_phys,
        store_phys: report.store_phys,
        queued: report.commands,
        format,
        tables,
        settings,
        ioapics,
        msi_index: BTreeMap::new(),
        entries_written: 0,
        table_invalidations: 0,
        waits: 0,
        events,
    });
    log::info!("amdvi: unit {i}: interrupt remapping on, {format:?} entries");
    dma::install(report.table_phys, report.table_entries, empty_root, efr);
    let bsp = super::percpu::with_current(|me| me.apic_id.load(Ordering::Acquire));
    match events::enable_interrupt(unit.device_id, bsp) {
        Ok((vector, dest)) => {
            remap::with(|r| r.events.msi = Some((vector, dest)));
            ev!("iommu.amd.event_msi_vector", vector);
            ev!("iommu.amd.event_msi_destination", dest);
        }
        Err(why) => {
            log::warn!("amdvi: event-log interrupt not taken: {why}; the log is read on demand");
            ev!("iommu.amd.event_msi_destination", "none");
        }
    }
    remap::evidence();
}

/// Brings unit `i` up and reports what the unit and memory read back.
fn bring_up(
    i: usize,
    regs: &Registers,
    unit: &Ivhd<'_>,
    ivrs: &Ivrs<'_>,
    ioapic_ids: &[u8],
    setup: &unit::Setup<'_>,
) -> Option<unit::Report> {
    let yes = |on: bool| if on { "yes" } else { "no" };
    match unit::bring_up(regs, unit, setup) {
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
            Some(r)
        }
        Err(e) => {
            log::warn!("amdvi: unit {i}: left disabled: {e:?}");
            ev!(("iommu.amd.{i}.enabled"), yes(regs.control() & control::IOMMU_EN != 0));
            None
        }
    }
}
