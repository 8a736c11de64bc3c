//! Ring-3 I/O port access: each CPU's TSS I/O permission bitmap, and the record of what this
//! CPU opened in it.
//!
//! A CPU opens a process's ranges when one of its threads is switched in and closes them
//! when it leaves. Closing reads the CPU's own record ([`OpenPorts`]), never the process's
//! current list: that list may be emptied meanwhile by another CPU (the process's last
//! thread exiting there), and ports closed by re-reading it would stay open for whatever
//! runs here next.
//!
//! Releasing an `IoPorts` capability closes its range at once on every CPU where the
//! process is resident: the releasing CPU closes it itself, every other one in its vector-49
//! IPI handler ([`revoke_everywhere`]), and the release returns after each acknowledged.
//! Ordering: the range leaves the process's list (under its lock) before the resident set is
//! read, and a CPU switching a thread in joins the set before it reads that list, so a CPU
//! either reads the list without the range or is in the set and gets the IPI.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use keel_apic::{ApicId, Ipi};
use spin::Mutex;

use super::gdt::CpuTables;
use super::lapic;
use super::percpu::{self, IrqGuard};
use super::tlb::CpuMask;
use super::trap_entry::IPI_VECTOR;

/// Ranges one CPU records; more (never in practice: a driver holds a few) and it closes
/// its whole bitmap on the next close instead.
pub const RECORDED_RANGES: usize = 8;

/// What this CPU opened in its bitmap and for which process.
pub struct OpenPorts {
    pid: u64,
    ranges: [(u16, u16); RECORDED_RANGES],
    count: usize,
    /// More ranges were opened than recorded: the next close resets the whole bitmap.
    overflow: bool,
}

impl OpenPorts {
    /// Nothing open.
    pub const fn new() -> Self {
        OpenPorts { pid: 0, ranges: [(0, 0); RECORDED_RANGES], count: 0, overflow: false }
    }
}

impl Default for OpenPorts {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `f` on this CPU's tables (the bitmap and its record).
fn with_tables<R>(guard: &IrqGuard, f: impl FnOnce(&mut CpuTables) -> R) -> R {
    // SAFETY: this CPU's own tables (set once at bring-up, never freed); interrupts are off
    // (the guard), so nothing else on this CPU touches them during `f`, which cannot reach
    // them again (it gets the only reference), and no other CPU ever writes them.
    f(unsafe { &mut *percpu::local(guard).tables() })
}

fn set_bits(bitmap: &mut [u8], first: u16, last: u16, open: bool) {
    for port in first..=last {
        let byte = &mut bitmap[port as usize / 8];
        if open {
            *byte &= !(1 << (port % 8));
        } else {
            *byte |= 1 << (port % 8);
        }
    }
}

/// Sets (`open`) or clears ring 3's access to `first..=last` in this CPU's bitmap, without
/// touching the record.
pub fn set_range(guard: &IrqGuard, first: u16, last: u16, open: bool) {
    with_tables(guard, |t| set_bits(&mut t.io_bitmap, first, last, open));
}

/// Opens `first..=last` for ring 3 on this CPU, for process `pid`, and records it.
pub fn open(guard: &IrqGuard, pid: u64, first: u16, last: u16) {
    let rec_pid = with_tables(guard, |t| {
        (t.io_open.count != 0 || t.io_open.overflow).then_some(t.io_open.pid)
    });
    if rec_pid.is_some_and(|p| p != pid) {
        // Another process's ports are still recorded (never expected: every switch-out
        // closes them): close them before anything of this one opens.
        close_recorded(guard);
    }
    with_tables(guard, |t| {
        set_bits(&mut t.io_bitmap, first, last, true);
        let rec = &mut t.io_open;
        rec.pid = pid;
        if rec.ranges[..rec.count].contains(&(first, last)) {
            return;
        }
        if rec.count < RECORDED_RANGES {
            rec.ranges[rec.count] = (first, last);
            rec.count += 1;
        } else {
            rec.overflow = true;
        }
    });
}

/// Closes every port this CPU opened (its record, whoever holds what now); returns how many
/// ranges it closed.
pub fn close_recorded(guard: &IrqGuard) -> usize {
    with_tables(guard, close_recorded_in)
}

fn close_recorded_in(t: &mut CpuTables) -> usize {
    let n = t.io_open.count;
    if t.io_open.overflow {
        t.io_bitmap.fill(0xFF);
    } else {
        for &(first, last) in &t.io_open.ranges[..n] {
            set_bits(&mut t.io_bitmap, first, last, false);
        }
    }
    t.io_open = OpenPorts::new();
    n
}

/// Closes the ports of `first..=last` this CPU opened for `pid` (nothing when it opened
/// them for no one or for another process); returns how many recorded ranges it touched.
fn revoke_here(guard: &IrqGuard, pid: u64, first: u16, last: u16) -> u64 {
    with_tables(guard, |t| {
        if t.io_open.pid != pid || t.io_open.count == 0 && !t.io_open.overflow {
            return 0;
        }
        if t.io_open.overflow {
            // What exactly was opened is unknown: close everything; the process's other
            // ranges reopen at its next switch-in.
            return close_recorded_in(t).max(1) as u64;
        }
        let mut kept = [(0u16, 0u16); RECORDED_RANGES];
        let (mut kept_n, mut closed) = (0, 0);
        for i in 0..t.io_open.count {
            let (f, l) = t.io_open.ranges[i];
            if f > last || first > l {
                kept[kept_n] = (f, l);
                kept_n += 1;
                continue;
            }
            set_bits(&mut t.io_bitmap, f.max(first), l.min(last), false);
            closed += 1;
            // What the revoked range did not cover stays open and recorded.
            let left = (f < first).then(|| (f, first - 1));
            let right = (l > last).then(|| (last + 1, l));
            for part in [left, right].into_iter().flatten() {
                if kept_n < RECORDED_RANGES {
                    kept[kept_n] = part;
                    kept_n += 1;
                } else {
                    t.io_open.overflow = true;
                }
            }
        }
        t.io_open.ranges = kept;
        t.io_open.count = kept_n;
        closed
    })
}

/// Ports open for ring 3 in this CPU's bitmap, counted from all 65,536 bits.
pub fn open_ports(guard: &IrqGuard) -> u32 {
    with_tables(guard, |t| t.io_bitmap[..8192].iter().map(|b| b.count_zeros()).sum())
}

/// One CPU's incoming revocations (the process, the range, tickets) and its I/O figures;
/// part of its shared per-CPU block.
pub struct RevokeInbox {
    send_lock: Mutex<()>,
    pid: AtomicU64,
    range: AtomicU32,
    requested: AtomicU64,
    done: AtomicU64,
    /// Recorded ranges revocations closed on this CPU (counted on the closing path).
    closes: AtomicU64,
    /// Ports found open in this CPU's bitmap by [`report`] (read on this CPU).
    open_seen: AtomicU32,
}

impl RevokeInbox {
    /// Nothing requested, nothing closed, the bitmap not read yet.
    pub const fn new() -> Self {
        RevokeInbox {
            send_lock: Mutex::new(()),
            pid: AtomicU64::new(0),
            range: AtomicU32::new(0),
            requested: AtomicU64::new(0),
            done: AtomicU64::new(0),
            closes: AtomicU64::new(0),
            open_seen: AtomicU32::new(u32::MAX),
        }
    }
}

impl Default for RevokeInbox {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves a revocation aimed at this CPU, if one is pending (vector 49, or a waiting sender
/// with interrupts off).
pub fn serve(guard: &IrqGuard) {
    let slot = &percpu::current(guard).io_revoke;
    let requested = slot.requested.load(Ordering::Acquire);
    if requested <= slot.done.load(Ordering::Acquire) {
        return;
    }
    let pid = slot.pid.load(Ordering::Acquire);
    let range = slot.range.load(Ordering::Acquire);
    let closed = revoke_here(guard, pid, (range >> 16) as u16, range as u16);
    slot.closes.fetch_add(closed, Ordering::Relaxed);
    slot.done.store(requested, Ordering::Release);
}

/// A revocation some CPU did not acknowledge in time.
#[derive(Debug)]
pub struct RevokeTimeout(pub u32);

/// Closes `first..=last` of process `pid` here and on every other CPU in `resident`, and
/// returns once each has done so. The range must already be out of the process's list.
pub fn revoke_everywhere(
    pid: u64,
    resident: &CpuMask,
    first: u16,
    last: u16,
) -> Result<(), RevokeTimeout> {
    let me = percpu::current_index();
    {
        let guard = IrqGuard::new();
        let closed = revoke_here(&guard, pid, first, last);
        percpu::current(&guard).io_revoke.closes.fetch_add(closed, Ordering::Relaxed);
    }
    // The list update before the mask read (pairs with the insert before the switch-in).
    core::sync::atomic::fence(Ordering::SeqCst);
    let serve_here = !x86_64::instructions::interrupts::are_enabled();
    for cpu in resident.snapshot() {
        if cpu == me {
            continue;
        }
        let Some(target) = percpu::cpu(cpu) else { continue };
        let slot = &target.io_revoke;
        let _serial = slot.send_lock.lock();
        slot.pid.store(pid, Ordering::Release);
        slot.range.store(u32::from(first) << 16 | u32::from(last), Ordering::Release);
        let ticket = slot.requested.fetch_add(1, Ordering::AcqRel) + 1;
        let apic_id = ApicId::new(target.apic_id.load(Ordering::Acquire));
        if lapic::send(Ipi::fixed(IPI_VECTOR).to(apic_id)).is_err() {
            return Err(RevokeTimeout(cpu));
        }
        // Two CPUs revoking at each other with interrupts off serve each other here.
        let acked = crate::time::spin_until(crate::time::TIGHT_POLL_NS, 5_000_000_000, || {
            if serve_here {
                serve(&IrqGuard::new());
            }
            slot.done.load(Ordering::Acquire) >= ticket
        });
        if !acked {
            return Err(RevokeTimeout(cpu));
        }
    }
    Ok(())
}

fn count_open_here(_: usize) {
    let guard = IrqGuard::new();
    let open = open_ports(&guard);
    percpu::current(&guard).io_revoke.open_seen.store(open, Ordering::Release);
}

/// Evidence per online CPU, each read on that CPU: ports open for ring 3 in its bitmap
/// (`io.cpuN.open_ports`, all 65,536 bits read back) and recorded ranges its revocations
/// closed (`io.cpuN.revoke_closes`). Runs on the boot CPU once no program is left.
pub fn report() {
    let me = percpu::current_index();
    for cpu in super::smp::online_cpus() {
        let i = cpu.index;
        if i == me {
            count_open_here(0);
        } else {
            let ticket = super::smp::post_work(cpu, count_open_here, 0);
            if !super::smp::wait_work(cpu, ticket, 1_000_000_000) {
                log::error!("io: cpu{i} did not read its I/O bitmap back");
            }
        }
        match cpu.io_revoke.open_seen.load(Ordering::Acquire) {
            u32::MAX => crate::ev!(("io.cpu{}.open_ports", i), "unread"),
            open => crate::ev!(("io.cpu{}.open_ports", i), open),
        }
        let closes = cpu.io_revoke.closes.load(Ordering::Relaxed);
        crate::ev!(("io.cpu{}.revoke_closes", i), closes);
    }
}
