//! Scheduling under hostile load, from ring 3.
//!
//! * `mode=fair shared=S other=O ms=T`: a flooding thread on CPU S calls `cap_enter` in a
//!   loop while a feeder thread on CPU O keeps the flooder's SQ full of `Nop`s and its CQ
//!   drained, so the flooder spends nearly all its time in the kernel (a `cap_enter` that
//!   re-read `sq_tail` would never leave: the feeder refills the queue while it runs). A
//!   victim thread on CPU S records the largest gap between two consecutive TSC reads: the
//!   time it was off the CPU. With preemption in the kernel and bounded `cap_enter`, it stays
//!   near one time slice. The main thread (CPU O) sleeps T ms, stops everyone and reports.
//!   With `vm=1` the flooder instead maps and unmaps 1,024 pages per call, over and over
//!   (no feeder): the kernel must preempt it between the steps of those calls.
//! * `mode=exitrace`: a thread on CPU 1 blocks in `cap_enter` with no timeout while the main
//!   thread (CPU 0) exits the process; the process must still end (the scenarios image
//!   widens the window between the waiter's exit check and its block with `exit_window_ms=`).

use core::sync::atomic::{AtomicU64, Ordering};

use keel_rt::abi::{Method, ObjectKind, Submission, TIMEOUT_INFINITE};
use keel_rt::util::{arg_u64, cap, rdtsc};
use keel_rt::{cap_enter, ev, ring, Ring};

use super::{spawn, wait_done, DONE, STOP};

/// The flooder's ring page (0 until it runs), for the feeder.
static FLOOD_RING: AtomicU64 = AtomicU64::new(0);
/// `cap_enter` calls the flooder made, `Nop`s the feeder published and completions it took.
static FLOOD_CALLS: AtomicU64 = AtomicU64::new(0);
static FED: AtomicU64 = AtomicU64::new(0);
static DRAINED: AtomicU64 = AtomicU64::new(0);
/// Set when the feeder no longer touches the flooder's ring: only then may the flooder use
/// it itself (its last call ends the thread).
static FEED_DONE: AtomicU64 = AtomicU64::new(0);
/// `vm=1` map/unmap pairs that did not both succeed.
static VM_FLOOD_ERRORS: AtomicU64 = AtomicU64::new(0);
/// The victim's largest gap between consecutive TSC reads, and its loop count.
static MAX_GAP_TSC: AtomicU64 = AtomicU64::new(0);
static VICTIM_LOOPS: AtomicU64 = AtomicU64::new(0);
/// Gaps longer than half a slice, and longer than two slices (`slice_tsc`, from the main
/// thread, 0 until known).
static GAPS_OVER_HALF_SLICE: AtomicU64 = AtomicU64::new(0);
static GAPS_OVER_TWO_SLICES: AtomicU64 = AtomicU64::new(0);
static SLICE_TSC: AtomicU64 = AtomicU64::new(0);
/// Set by the `exitrace` waiter just before it blocks.
static WAITING: AtomicU64 = AtomicU64::new(0);

/// Argument word jobs (see `main.rs` for the others).
pub const JOB_FLOOD: u64 = 5 << 56;
pub const JOB_FEED: u64 = 6 << 56;
pub const JOB_VICTIM: u64 = 7 << 56;
pub const JOB_WAIT_FOREVER: u64 = 8 << 56;
pub const JOB_VM_FLOOD: u64 = 9 << 56;

/// Where the `vm=1` flooder maps and unmaps `MAX_VM_PAGES` pages (4 MiB) over and over.
const VM_FLOOD_VADDR: u64 = 0x0000_5800_0000;

/// The body of a thread started with one of this module's jobs; false for other jobs.
pub fn run_job(job: u64, ring_vaddr: u64) -> bool {
    match job {
        JOB_FLOOD => {
            FLOOD_RING.store(ring_vaddr, Ordering::Release);
            while STOP.load(Ordering::Acquire) == 0 {
                let _ = cap_enter(0, 0);
                FLOOD_CALLS.fetch_add(1, Ordering::Relaxed);
            }
            while FEED_DONE.load(Ordering::Acquire) == 0 {
                core::hint::spin_loop();
            }
        }
        JOB_VM_FLOOD => {
            // SAFETY: the kernel passed this thread's own ring page; the thread's other
            // `Ring` is used only after this one is done.
            let mut own = unsafe { Ring::for_thread(ring_vaddr) };
            let vm = cap(ObjectKind::VirtualMemory);
            let pages = keel_rt::abi::MAX_VM_PAGES;
            while STOP.load(Ordering::Acquire) == 0 {
                let mapped = own.call(vm, Method::VmMap, [VM_FLOOD_VADDR, pages, 1, 0]).is_ok();
                let unmapped = own.call(vm, Method::VmUnmap, [VM_FLOOD_VADDR, pages, 0, 0]).is_ok();
                if !(mapped && unmapped) {
                    VM_FLOOD_ERRORS.fetch_add(1, Ordering::Relaxed);
                }
                FLOOD_CALLS.fetch_add(2, Ordering::Relaxed);
            }
        }
        JOB_FEED => {
            feed();
            FEED_DONE.store(1, Ordering::Release);
        }
        JOB_VICTIM => {
            let mut last = rdtsc();
            let mut max_gap = 0;
            let mut loops = 0u64;
            let slice = SLICE_TSC.load(Ordering::Acquire);
            while STOP.load(Ordering::Acquire) == 0 {
                let now = rdtsc();
                let gap = now.wrapping_sub(last);
                if gap > slice / 2 {
                    GAPS_OVER_HALF_SLICE.fetch_add(1, Ordering::Relaxed);
                    if gap > 2 * slice {
                        GAPS_OVER_TWO_SLICES.fetch_add(1, Ordering::Relaxed);
                    }
                }
                max_gap = max_gap.max(gap);
                last = now;
                loops += 1;
            }
            MAX_GAP_TSC.store(max_gap, Ordering::Release);
            VICTIM_LOOPS.store(loops, Ordering::Release);
        }
        JOB_WAIT_FOREVER => {
            WAITING.store(1, Ordering::Release);
            // Nothing submitted: only the process's exit ends this wait.
            let _ = cap_enter(1, TIMEOUT_INFINITE);
        }
        _ => return false,
    }
    true
}

/// Keeps the flooder's SQ full and its CQ empty until told to stop.
fn feed() {
    let mut base = FLOOD_RING.load(Ordering::Acquire);
    while base == 0 && STOP.load(Ordering::Acquire) == 0 {
        core::hint::spin_loop();
        base = FLOOD_RING.load(Ordering::Acquire);
    }
    if base == 0 {
        return;
    }
    // SAFETY: the flooder's own ring page, mapped for the life of the process. The flooder
    // never touches its queues itself (it only calls `cap_enter`): this thread is the one
    // user of both sides, as hostile as the kernel must assume any program is.
    let mut flood = unsafe { Ring::for_thread(base) };
    let nop =
        Submission { cap: 0, method: Method::Nop as u16, flags: 0, args: [0; 4], user_data: 1 };
    while STOP.load(Ordering::Acquire) == 0 {
        while flood.next_completion().is_some() {
            DRAINED.fetch_add(1, Ordering::Relaxed);
        }
        while flood.submit(nop).is_ok() {
            FED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `mode=fair`: see the module comment.
pub fn fair() -> u64 {
    let shared = arg_u64("shared", 1);
    let other = arg_u64("other", 0);
    let timer = cap(ObjectKind::Timer);
    let tsc_hz = match ring().expect("ring").call(timer, Method::TimerTscHz, [0; 4]) {
        Ok(c) if c.results[0] > 0 => c.results[0],
        _ => return 2,
    };
    SLICE_TSC.store(tsc_hz / arg_u64("tick_hz", 100), Ordering::Release);
    let ring_flood = [(shared, JOB_VICTIM), (shared, JOB_FLOOD), (other, JOB_FEED)];
    let vm_flood = [(shared, JOB_VICTIM), (shared, JOB_VM_FLOOD)];
    let jobs: &[(u64, u64)] = if arg_u64("vm", 0) != 0 { &vm_flood } else { &ring_flood };
    let target = DONE.load(Ordering::Acquire) + jobs.len() as u64;
    for (slot, &(cpu, job)) in jobs.iter().enumerate() {
        if spawn(slot as u64, cpu, job | slot as u64).is_err() {
            return 3;
        }
    }
    let _ = ring().expect("ring").timer_sleep(timer, arg_u64("ms", 1000) * 1_000_000);
    STOP.store(1, Ordering::Release);
    let ended = wait_done(target);
    let max_gap_us = MAX_GAP_TSC.load(Ordering::Acquire) * 1_000_000 / tsc_hz;
    ev!("shared_cpu", shared);
    ev!("victim_max_gap_us", max_gap_us);
    ev!("victim_loops", VICTIM_LOOPS.load(Ordering::Acquire));
    ev!("victim_gaps_over_half_slice", GAPS_OVER_HALF_SLICE.load(Ordering::Relaxed));
    ev!("victim_gaps_over_two_slices", GAPS_OVER_TWO_SLICES.load(Ordering::Relaxed));
    ev!("flood_calls", FLOOD_CALLS.load(Ordering::Relaxed));
    ev!("flood_fed", FED.load(Ordering::Relaxed));
    ev!("flood_drained", DRAINED.load(Ordering::Relaxed));
    ev!("vm_flood_errors", VM_FLOOD_ERRORS.load(Ordering::Relaxed));
    ev!("threads_ended", if ended { "yes" } else { "no" });
    if ended {
        0
    } else {
        5
    }
}

/// `mode=exitrace`: see the module comment. Returns (exits the process) while the waiter is
/// in the kernel; never sleeps itself, so no wait of this thread enters the widened window.
pub fn exitrace() -> u64 {
    if spawn(0, 1, JOB_WAIT_FOREVER).is_err() {
        return 3;
    }
    while WAITING.load(Ordering::Acquire) == 0 {
        core::hint::spin_loop();
    }
    // Let the waiter get into the kernel and its widened window (1 s in the proof): 200 ms of
    // immediate calls, long enough for a vCPU the host descheduled a while to get there.
    let timer = cap(ObjectKind::Timer);
    let mut r = ring().expect("ring");
    let Ok((start, _)) = r.timer_now(timer) else { return 2 };
    while r.timer_now(timer).map_or(u64::MAX, |(ns, _)| ns) < start + 200_000_000 {}
    0
}
