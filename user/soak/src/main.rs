//! Endurance workloads for `cargo xtask test-soak`. The kernel's own counters are the
//! evidence (frames `VmMap` mapped and `VmUnmap` freed, threads and processes created and
//! reaped, capabilities copied and released); what this program prints is its side of the
//! story, and every mismatch it sees makes it exit non-zero.
//!
//! * `mode=memory threads=T cpus=C chunk_pages=P total_mib=M`: T threads on C CPUs each map
//!   a private region of P pages, write a pattern into every page, check it and unmap it,
//!   until together they have churned M MiB.
//! * `mode=threads cycles=N batch=B cpus=C`: N threads started (`ProcessSpawnThread`) in
//!   batches of B spread over C CPUs; each ends itself with `ProcessExitThread`; the next
//!   batch starts once the kernel reports only the main thread alive.
//! * `mode=caps rounds=R`: each round copies the granted `Timer` capability until the
//!   table is full (`NoMemory`), uses the last copy, then releases every copy.
//! * `mode=exit`: checks its start info and exits at once (one run of a program the
//!   manifest restarts: the process spawn/exit cycle is the kernel's).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use keel_rt::abi::{CapId, Method, ObjectKind, Status};
use keel_rt::util::{arg_u64, cap};
use keel_rt::{ev, ring, start_info, Ring};

keel_rt::entry!(main);

const PAGE: u64 = 4096;
const STACKS_VADDR: u64 = 0x0000_6000_0000;
const STACK_PAGES: u64 = 4;
const CHURN_VADDR: u64 = 0x0001_0000_0000;
/// Address space between two threads' churn regions (1 GiB).
const CHURN_STRIDE: u64 = 0x4000_0000;
/// Threads of one process at most (the kernel's limit, main thread included).
const MAX_THREADS: u64 = 64;

static PAGES_CHURNED: AtomicU64 = AtomicU64::new(0);
static ERRORS: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicU64 = AtomicU64::new(0);
/// Pages each memory thread churns in all, and per `VmMap`.
static SHARE_PAGES: AtomicU64 = AtomicU64::new(0);
static CHUNK_PAGES: AtomicU64 = AtomicU64::new(0);

const JOB_MEMORY: u64 = 1 << 56;
const JOB_EXIT: u64 = 2 << 56;

keel_rt::thread_entry!(fn thread_start => thread_body);

extern "C" fn thread_body(ring_vaddr: u64, arg: u64) -> ! {
    // SAFETY: the kernel passed this thread's own ring page in rdi.
    let mut ring = unsafe { Ring::for_thread(ring_vaddr) };
    if arg & (0xFF << 56) == JOB_MEMORY {
        churn(&mut ring, arg & 0xFF);
        DONE.fetch_add(1, Ordering::Release);
    }
    let _ = ring.call(cap(ObjectKind::Process), Method::ProcessExitThread, [0; 4]);
    // ProcessExitThread never completes; reaching here is a kernel bug worth a fault.
    ERRORS.fetch_add(1, Ordering::Relaxed);
    loop {
        core::hint::spin_loop();
    }
}

/// Stack of thread slot `slot` (one guard page between stacks).
fn stack_top(slot: u64) -> u64 {
    STACKS_VADDR + slot * (STACK_PAGES + 1) * PAGE + STACK_PAGES * PAGE
}

/// Maps the stacks of `slots` thread slots once; they are reused by every batch.
fn map_stacks(slots: u64) -> Result<(), Status> {
    let mut r = ring().expect("ring");
    for slot in 0..slots {
        let base = stack_top(slot) - STACK_PAGES * PAGE;
        r.call(cap(ObjectKind::VirtualMemory), Method::VmMap, [base, STACK_PAGES, 1, 0])?;
    }
    Ok(())
}

fn spawn(slot: u64, cpu: u64, arg: u64) -> Result<(), Status> {
    let entry = thread_start as *const () as u64;
    ring()
        .expect("ring")
        .call(
            cap(ObjectKind::Process),
            Method::ProcessSpawnThread,
            [entry, stack_top(slot), arg, cpu],
        )
        .map(|_| ())
}

/// Threads of this process the kernel reports alive.
fn live_threads() -> u64 {
    ring()
        .expect("ring")
        .call(cap(ObjectKind::Process), Method::ProcessInfo, [0; 4])
        .map_or(u64::MAX, |c| c.results[0])
}

/// Waits (at most `ms` sleeps of 1 ms, each rounded up to the kernel's tick) until only the
/// main thread is left.
fn wait_alone(ms: u64) -> bool {
    for _ in 0..ms {
        if live_threads() == 1 {
            return true;
        }
        sleep_ms(1);
    }
    live_threads() == 1
}

fn sleep_ms(ms: u64) {
    let _ = ring().expect("ring").timer_sleep(cap(ObjectKind::Timer), ms * 1_000_000);
}

/// One memory thread: map, fill every page, check, unmap, until its share is churned.
fn churn(ring: &mut Ring, index: u64) {
    let vm = cap(ObjectKind::VirtualMemory);
    let base = CHURN_VADDR + index * CHURN_STRIDE;
    let chunk = CHUNK_PAGES.load(Ordering::Relaxed);
    let mut left = SHARE_PAGES.load(Ordering::Relaxed);
    let mut round = 0u64;
    while left > 0 {
        let pages = chunk.min(left);
        if ring.call(vm, Method::VmMap, [base, pages, 1, 0]).is_err() {
            ERRORS.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let stamp = |page: u64| (index << 56) ^ (round << 24) ^ page;
        let word = |page: u64| (base + page * PAGE + (page % 512) * 8) as *mut u64;
        for page in 0..pages {
            // SAFETY: the region was just mapped writable for this thread alone.
            unsafe { word(page).write_volatile(stamp(page)) };
        }
        for page in 0..pages {
            // SAFETY: as above; still mapped.
            if unsafe { word(page).read_volatile() } != stamp(page) {
                ERRORS.fetch_add(1, Ordering::Relaxed);
            }
        }
        match ring.call(vm, Method::VmUnmap, [base, pages, 0, 0]) {
            // results[1]: frames the kernel gave back after the shootdown.
            Ok(c) if c.results[1] == pages => {}
            _ => {
                ERRORS.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        PAGES_CHURNED.fetch_add(pages, Ordering::Relaxed);
        left -= pages;
        round += 1;
    }
}

fn memory() -> u64 {
    let threads = arg_u64("threads", 4).clamp(1, 16);
    let cpus = arg_u64("cpus", 2).max(1);
    let chunk = arg_u64("chunk_pages", 1024).clamp(1, keel_rt::abi::MAX_VM_PAGES);
    let total_pages = arg_u64("total_mib", 64) * (1 << 20) / PAGE;
    CHUNK_PAGES.store(chunk, Ordering::Relaxed);
    SHARE_PAGES.store(total_pages.div_ceil(threads), Ordering::Relaxed);
    if map_stacks(threads).is_err() {
        return 3;
    }
    for i in 0..threads {
        if spawn(i, i % cpus, JOB_MEMORY | i).is_err() {
            return 3;
        }
    }
    while DONE.load(Ordering::Acquire) < threads {
        sleep_ms(10);
    }
    let alone = wait_alone(10_000);
    let churned = PAGES_CHURNED.load(Ordering::Relaxed) * PAGE;
    ev!("threads", threads);
    ev!("bytes_churned", churned);
    ev!("errors", ERRORS.load(Ordering::Relaxed));
    if alone && ERRORS.load(Ordering::Relaxed) == 0 && churned >= total_pages * PAGE {
        0
    } else {
        4
    }
}

fn threads() -> u64 {
    let cycles = arg_u64("cycles", 1000);
    let batch = arg_u64("batch", 32).clamp(1, MAX_THREADS - 1);
    let cpus = arg_u64("cpus", 2).max(1);
    if map_stacks(batch).is_err() {
        return 3;
    }
    let (mut spawned, mut refused) = (0u64, 0u64);
    while spawned < cycles {
        let n = batch.min(cycles - spawned);
        for slot in 0..n {
            match spawn(slot, (spawned + slot) % cpus, JOB_EXIT | slot) {
                Ok(()) => {}
                Err(_) => refused += 1,
            }
        }
        spawned += n;
        // Every thread of the batch must be gone before its stack slot is reused.
        if !wait_alone(10_000) {
            ev!("stuck_at", spawned);
            ev!("stuck_live_threads", live_threads());
            return 5;
        }
    }
    ev!("spawned", spawned - refused);
    ev!("refused", refused);
    ev!("errors", ERRORS.load(Ordering::Relaxed));
    if refused == 0 && ERRORS.load(Ordering::Relaxed) == 0 {
        0
    } else {
        4
    }
}

/// Copies `timer` until the table is full; returns the copies, or the unexpected status.
fn fill(r: &mut Ring, timer: CapId, copies: &mut [CapId]) -> Result<usize, Status> {
    let mut n = 0;
    loop {
        match r.cap_copy(timer) {
            Ok(c) if n < copies.len() => {
                copies[n] = c;
                n += 1;
            }
            Ok(_) => return Err(Status::BadArgument), // more slots than the kernel promises
            Err(Status::NoMemory) => return Ok(n),
            Err(e) => return Err(e),
        }
    }
}

fn caps() -> u64 {
    let rounds = arg_u64("rounds", 10);
    let timer = cap(ObjectKind::Timer);
    let mut copies = [CapId(0); 256];
    let (mut copied, mut released, mut filled_each) = (0u64, 0u64, None);
    // The console needs the ring too: the guard is held per round only, and failures are
    // reported after it is dropped.
    let mut failure = None;
    for _ in 0..rounds {
        let mut r = ring().expect("ring");
        let n = match fill(&mut r, timer, &mut copies) {
            Ok(n) => n,
            Err(e) => {
                failure = Some(e.name());
                break;
            }
        };
        // The same room every round: nothing of an earlier round stayed in the table.
        if *filled_each.get_or_insert(n) != n {
            failure = Some("room_changed");
            break;
        }
        // The last copy works like the original.
        if n == 0 || r.timer_now(copies[n - 1]).is_err() {
            failure = Some("copy_unusable");
            break;
        }
        copied += n as u64;
        for c in &copies[..n] {
            if r.cap_release(*c).is_err() {
                failure = Some("release_failed");
                break;
            }
            released += 1;
        }
        if failure.is_some() {
            break;
        }
        // A released id is dead.
        if r.timer_now(copies[0]).is_ok() {
            failure = Some("released_cap_works");
            break;
        }
    }
    if let Some(why) = failure {
        ev!("failure", why);
        return 4;
    }
    ev!("rounds", rounds);
    ev!("copies_per_round", filled_each.unwrap_or(0));
    ev!("copied", copied);
    ev!("released", released);
    0
}

fn main() -> u64 {
    match start_info().arg("mode").unwrap_or("exit") {
        "memory" => memory(),
        "threads" => threads(),
        "caps" => caps(),
        "exit" => {
            if start_info().program_name().is_empty() {
                1
            } else {
                0
            }
        }
        _ => 1,
    }
}
