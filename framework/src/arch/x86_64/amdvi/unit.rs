//! Bringing one AMD IOMMU up: a device table whose entries for the requesters the IVRS
//! lists pass DMA untranslated (V = 1, TV = 0 with reads and writes allowed) and whose
//! interrupt fields (quadword 2) the caller chooses: IV = 0 (pass-through;
//! `keel_iommu::amdvi::passthrough_dte` says why not IntCtl = pass) or remapping through a
//! table ([`super::remap`]). Then the command buffer, an INVALIDATE_DEVTAB_ENTRY per entry
//! written and a COMPLETION_WAIT whose store the kernel reads back before it reports the
//! unit up. Entries the IVRS does not list stay zero (V = 0, IV = 0), which passes.

use alloc::vec::Vec;

use keel_iommu::amdvi::{self, control, reg, IntCtl};
use keel_iommu::ivrs::{DeviceEntry, Ivhd};

use super::registers::Registers;
use crate::mm::{frames, phys_to_virt};

/// How long the completion-wait store may take.
const COMPLETION_TIMEOUT_NS: u64 = 100_000_000;
/// The value the completion wait stores ("KEELAMDV").
const COMPLETION_MAGIC: u64 = 0x4B45_454C_414D_4456;

/// What the bring-up did, read back from the unit and from memory.
pub struct Report {
    /// Device table entries written.
    pub entries_written: usize,
    /// Device ids the table covers.
    pub table_entries: usize,
    /// Physical address of the device table.
    pub table_phys: u64,
    /// Commands queued.
    pub commands: usize,
    /// Physical address of the completion-wait store.
    pub store_phys: u64,
    /// The value read back from the store (the magic once the unit completed).
    pub store_value: u64,
    /// Head and tail pointers read back.
    pub head: u64,
    /// Tail pointer read back.
    pub tail: u64,
    /// Physical address of the command buffer.
    pub command_phys: u64,
}

/// What the caller decides: each listed entry's quadword 2, the control bits enabled with
/// the unit, and the event log.
pub struct Setup<'a> {
    /// Quadword 2 of the entry of requester `id` with IVRS setting `setting`.
    pub interrupt_quad: &'a dyn Fn(u16, u8) -> u64,
    /// Control bits set together with IommuEn and CmdBufEn (GAEn, XTEn, the event log's).
    pub control: u64,
    /// The event log base register, written with the unit off.
    pub event_log: Option<u64>,
    /// Quadwords 0 and 1 of every entry of the table when DMA is translated (the deny
    /// entry, [`super::dma`]); `None`: listed entries pass DMA untranslated.
    pub dma_deny: Option<[u64; 2]>,
}

/// Why the unit stays disabled.
#[derive(Debug)]
pub enum Error {
    /// No memory for the tables.
    NoMemory,
    /// A table address the registers cannot hold.
    BadAddress,
    /// The completion wait never stored its value.
    CompletionTimeout,
    /// More listed requesters than one command buffer holds invalidations for.
    TooManyEntries,
}

pub fn listed_device_ids(ivhd: &Ivhd<'_>) -> Vec<(u16, u8)> {
    let mut ids: Vec<(u16, u8)> = Vec::new();
    for r in ivhd.device_ranges() {
        for id in r.first..=r.last {
            ids.push((id, r.setting));
        }
    }
    for e in ivhd.entries().map_while(Result::ok) {
        if let DeviceEntry::Special { device_id, setting, .. } = e {
            ids.push((device_id, setting));
        }
    }
    ids.sort_unstable_by_key(|(id, _)| *id);
    ids.dedup_by_key(|(id, _)| *id);
    ids
}

pub fn write_quads(phys: u64, quads: &[u64]) {
    let p = phys_to_virt(phys).as_mut_ptr::<u64>();
    for (i, q) in quads.iter().enumerate() {
        // SAFETY: `phys` lies in a frame the kernel allocated for this unit's tables, in
        // the physical map; `quads` stays inside the entry or command slot being written.
        unsafe { p.add(i).write_volatile(*q) };
    }
}

pub fn read_quad(phys: u64) -> u64 {
    // SAFETY: as in `write_quads`, an 8-byte-aligned address in the unit's own frames.
    unsafe { phys_to_virt(phys).as_ptr::<u64>().read_volatile() }
}

/// Quadword 2 of the device table entry of `device_id` in the table at `table_phys`.
pub fn dte_int_ctl(table_phys: u64, device_id: u16) -> IntCtl {
    IntCtl::of(read_quad(table_phys + device_id as u64 * amdvi::DTE_BYTES as u64 + 16))
}

/// Builds the tables, points the unit at them, enables it and waits for the commands.
pub fn bring_up(regs: &Registers, ivhd: &Ivhd<'_>, setup: &Setup<'_>) -> Result<Report, Error> {
    let ids = listed_device_ids(ivhd);
    // One invalidation per entry plus the wait must fit the 256-command ring (255 usable).
    if ids.len() + 1 > (1 << amdvi::COMMAND_BUFFER_LOG2) - 1 {
        log::warn!("amdvi: {} requesters listed, more than one command buffer holds", ids.len());
        return Err(Error::TooManyEntries);
    }
    // Whole buses: the table covers every function of the highest bus listed.
    let max_bus = ids.last().map_or(0, |(id, _)| id >> 8) as usize;
    let table_entries = (max_bus + 1) * 256;
    let pages = (table_entries / amdvi::DTES_PER_PAGE) as u64;
    let table_phys = frames::allocate_contiguous(pages, 4096).ok_or(Error::NoMemory)?;
    let (command, store) = (frames::allocate_zeroed(), frames::allocate_zeroed());
    let result = match (command, store) {
        (Some(command_phys), Some(store_phys)) => {
            program(regs, setup, &ids, pages, table_phys, command_phys, store_phys)
                .map(|done| (done, store_phys))
        }
        _ => Err(Error::NoMemory),
    };
    if result.is_err() {
        // The unit is off again (or was never pointed at them): the frames go back.
        let table = (0..pages).map(|p| table_phys + p * 4096);
        for frame in table.chain(command).chain(store) {
            frames::free(frame);
        }
    }
    result.map(|((commands, head, tail), store_phys)| Report {
        entries_written: ids.len(),
        table_entries,
        table_phys,
        commands,
        store_phys,
        store_value: read_quad(store_phys),
        head,
        tail,
        command_phys: command.unwrap_or(0),
    })
}

/// Fills the table, points the unit at it and runs the commands: (commands, head, tail).
fn program(
    regs: &Registers,
    setup: &Setup<'_>,
    ids: &[(u16, u8)],
    pages: u64,
    table_phys: u64,
    command_phys: u64,
    store_phys: u64,
) -> Result<(usize, u64, u64), Error> {
    for page in 0..pages {
        // SAFETY: the frames were just allocated for the table and are in the physical map.
        unsafe {
            core::ptr::write_bytes(
                phys_to_virt(table_phys + page * 4096).as_mut_ptr::<u8>(),
                0,
                4096,
            )
        };
    }
    if let Some(deny) = setup.dma_deny {
        // Every requester the table covers, listed or not: no DMA without a domain.
        let entries = pages * amdvi::DTES_PER_PAGE as u64;
        for id in 0..entries {
            write_quads(table_phys + id * amdvi::DTE_BYTES as u64, &deny);
        }
        super::dma::count_deny_written(entries);
    }
    for (id, setting) in ids {
        let mut entry = amdvi::passthrough_dte();
        if let Some(deny) = setup.dma_deny {
            entry[..2].copy_from_slice(&deny);
        }
        entry[2] = (setup.interrupt_quad)(*id, *setting);
        write_quads(table_phys + *id as u64 * amdvi::DTE_BYTES as u64, &entry);
    }
    let devtab = amdvi::device_table_base(table_phys, pages).ok_or(Error::BadAddress)?;
    let cmdbuf = amdvi::command_buffer_base(command_phys).ok_or(Error::BadAddress)?;
    // The base registers may only change while the unit is off.
    let off = regs.control() & !(control::IOMMU_EN | control::CMD_BUF_EN);
    regs.write64(reg::CONTROL, off);
    regs.write64(reg::DEVICE_TABLE_BASE, devtab);
    regs.write64(reg::COMMAND_BUFFER_BASE, cmdbuf);
    regs.write64(reg::COMMAND_HEAD, 0);
    regs.write64(reg::COMMAND_TAIL, 0);
    if let Some(base) = setup.event_log {
        regs.write64(keel_iommu::amdvi_ir::reg::EVENT_LOG_BASE, base);
        regs.write64(keel_iommu::amdvi_ir::reg::EVENT_HEAD, 0);
        regs.write64(keel_iommu::amdvi_ir::reg::EVENT_TAIL, 0);
    }
    // Queue the invalidations and the wait, then enable: the unit runs them at once.
    let mut commands = 0usize;
    let mut queue = |cmd: [u64; 2]| {
        write_quads(command_phys + amdvi::ring_offset(commands), &cmd);
        commands += 1;
    };
    for (id, _) in ids {
        queue(amdvi::invalidate_devtab_entry(*id));
    }
    queue(amdvi::completion_wait(store_phys, COMPLETION_MAGIC).ok_or(Error::BadAddress)?);
    regs.write64(reg::CONTROL, off | setup.control | control::IOMMU_EN | control::CMD_BUF_EN);
    regs.write64(reg::COMMAND_TAIL, amdvi::ring_offset(commands));
    let deadline = crate::time::now_ns() + COMPLETION_TIMEOUT_NS;
    while read_quad(store_phys) != COMPLETION_MAGIC {
        if crate::time::now_ns() > deadline {
            // A unit that does not complete its commands is not trusted with translation.
            regs.write64(reg::CONTROL, off);
            return Err(Error::CompletionTimeout);
        }
        core::hint::spin_loop();
    }
    Ok((commands, regs.read64(reg::COMMAND_HEAD), regs.read64(reg::COMMAND_TAIL)))
}
