//! Spurious user page faults. After a mapping gains rights (`VmProtect(writable)`), a CPU
//! whose flush has not landed may still hold the old entry, and the architecture allows it
//! to fault on an access the page table now permits (Intel SDM 3A §4.10.4.3, "spurious page
//! faults"). Such a fault is not the program's: the handler walks the current tables, and if
//! they permit the access it flushes the address locally and lets the instruction retry.
//!
//! The retry is bounded: the same thread faulting spuriously at the same page again on the
//! same CPU within [`REPEAT_WINDOW_NS`] after that flush is a real fault (a table walk that
//! disagrees with the hardware must not loop forever).

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::structures::paging::PageTableFlags as F;

use super::address_space::USER_END;
use super::phys_to_virt;
use crate::arch::x86_64::percpu::{self, MAX_CPUS};

/// User page faults the current tables already permitted (retried after a local flush).
pub static SPURIOUS_FAULTS: AtomicU64 = AtomicU64::new(0);
/// Spurious-looking faults that repeated at once and were treated as real.
pub static SPURIOUS_REPEATS: AtomicU64 = AtomicU64::new(0);

/// A second spurious fault by the same thread at the same page on one CPU within this much
/// of the first is not retried again.
pub const REPEAT_WINDOW_NS: u64 = 10_000_000;

/// #PF error-code bits.
const PF_WRITE: u64 = 1 << 1;
const PF_USER: u64 = 1 << 2;
const PF_FETCH: u64 = 1 << 4;
/// Reserved-bit, protection-key, shadow-stack and SGX faults are never spurious here.
const PF_NEVER_SPURIOUS: u64 = (1 << 3) | (1 << 5) | (1 << 6) | (1 << 15);

/// The last spurious fault retried on each CPU: thread, page, time.
struct LastRetry {
    tid: AtomicU64,
    page: AtomicU64,
    at_ns: AtomicU64,
}

static LAST_RETRY: [LastRetry; MAX_CPUS] = [const {
    LastRetry { tid: AtomicU64::new(0), page: AtomicU64::new(0), at_ns: AtomicU64::new(0) }
}; MAX_CPUS];

/// Handles a ring-3 #PF at `addr` with `error` by thread `tid` if it is spurious: true when
/// the instruction should simply be retried (the address was flushed here).
pub fn retry_spurious(tid: u64, addr: u64, error: u64) -> bool {
    if error & PF_USER == 0 || error & PF_NEVER_SPURIOUS != 0 {
        return false;
    }
    let write = error & PF_WRITE != 0;
    let fetch = error & PF_FETCH != 0;
    let pml4 = percpu::local(&percpu::IrqGuard::new()).loaded_space.get();
    #[cfg(feature = "scenarios")]
    widen_window(pml4, addr, write, fetch);
    // A not-present fault the tables now satisfy (a map that landed meanwhile) retries too.
    if !user_access_allowed(pml4, addr, write, fetch) && !walk_disagrees(addr) {
        return false;
    }
    let page = addr & !0xfff;
    let now = crate::time::now_ns();
    let cpu = percpu::current_index() as usize;
    let Some(last) = LAST_RETRY.get(cpu) else { return false };
    if last.tid.load(Ordering::Relaxed) == tid
        && last.page.load(Ordering::Relaxed) == page
        && now.saturating_sub(last.at_ns.load(Ordering::Relaxed)) < REPEAT_WINDOW_NS
    {
        // Flushed once already and it faulted again: not a stale entry.
        last.tid.store(0, Ordering::Relaxed);
        SPURIOUS_REPEATS.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    last.tid.store(tid, Ordering::Relaxed);
    last.page.store(page, Ordering::Relaxed);
    last.at_ns.store(now, Ordering::Relaxed);
    x86_64::instructions::tlb::flush(x86_64::VirtAddr::new_truncate(addr));
    SPURIOUS_FAULTS.fetch_add(1, Ordering::Relaxed);
    true
}

/// Whether the tables rooted at `pml4` let ring 3 access `va` now: every level present and
/// user, writable for a write, none no-execute for a fetch.
pub fn user_access_allowed(pml4: u64, va: u64, write: bool, fetch: bool) -> bool {
    if va >= USER_END || pml4 == 0 {
        return false;
    }
    let mut table = pml4;
    for level in (1..=4u32).rev() {
        let index = (va >> (12 + 9 * (level - 1))) & 0x1ff;
        let entry_ptr = phys_to_virt(table + index * 8).as_ptr::<u64>();
        // SAFETY: page-table frames lie in the physical map, and the tables of the space
        // loaded here live as long as a thread of it runs; an entry is one aligned word, so
        // a concurrent update is seen whole, before or after.
        let entry = unsafe { core::ptr::read_volatile(entry_ptr) };
        let flags = F::from_bits_truncate(entry);
        if !flags.contains(F::PRESENT | F::USER_ACCESSIBLE)
            || (write && !flags.contains(F::WRITABLE))
            || (fetch && flags.contains(F::NO_EXECUTE))
        {
            return false;
        }
        if level == 1 || (level < 4 && flags.contains(F::HUGE_PAGE)) {
            return true;
        }
        table = entry & 0x000f_ffff_ffff_f000;
    }
    false
}

/// The probe page of the spurious-fault proof (`user/vmhostile`, phase 4).
#[cfg(feature = "scenarios")]
pub const SPURIOUS_PROBE_VADDR: u64 = 0x0000_4800_0000;

/// The probe page of the retry-bound proof: the scenarios kernel takes every fault there
/// for spurious, as a table walk that disagreed with the hardware would.
#[cfg(feature = "scenarios")]
pub const RETRY_LOOP_PROBE_VADDR: u64 = 0x0000_4c00_0000;

#[cfg(feature = "scenarios")]
fn walk_disagrees(addr: u64) -> bool {
    addr & !0xfff == RETRY_LOOP_PROBE_VADDR
}

#[cfg(not(feature = "scenarios"))]
fn walk_disagrees(_addr: u64) -> bool {
    false
}

/// Scenarios build: a fault on the probe page waits (up to 5 s, so a starved host cannot close
/// the window before the other CPU's change lands) for another CPU to grant the access before
/// the walk, as a CPU whose TLB kept the old read-only entry would fault after the table
/// changed: the window of a real spurious fault, widened.
#[cfg(feature = "scenarios")]
fn widen_window(pml4: u64, addr: u64, write: bool, fetch: bool) {
    if addr & !0xfff == SPURIOUS_PROBE_VADDR {
        crate::time::spin_until(0, 5_000_000_000, || user_access_allowed(pml4, addr, write, fetch));
    }
}
