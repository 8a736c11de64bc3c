//! Threads on every CPU and TLB shootdown, from ring 3.
//!
//! * `mode=shootdown workers=N`: N threads on CPUs 1..=N read one page in a loop; the main
//!   thread (CPU 0) unmaps it. The kernel must flush every CPU where the address space is
//!   resident before `VmUnmap` completes, so each reader faults on its next access (the
//!   kernel reports the address and thread) and no CPU outside the resident set gets an IPI.
//! * `mode=stress threads=N iters=M`: N threads map, fill, check, write-protect, re-check and
//!   unmap private regions concurrently (every operation shoots down every resident CPU, so
//!   shootdowns cross each other constantly); any checksum mismatch is counted.
//! * `mode=primes limit=L`: counts primes below L with 1, 2 and 4 threads; the result must be
//!   the same each time; prints cycles per phase (the speed-up is for `make bench`).
//! * `mode=preempt ms=T`: two threads spin on CPU 1, neither ever entering the kernel, while
//!   the main thread sleeps T ms on CPU 0: both make progress only if the timer tick preempts
//!   ring 3. Then the main thread moves itself to CPU 1 and back (`ProcessSetAffinity`) and
//!   reports the CPU the kernel says it runs on after each move.
//! * `mode=fair`, `mode=exitrace`: scheduling under hostile load (see `fair.rs`).
//! * `mode=sleep n=N`: lateness of ring-3 `TimerSleep` calls of 1 and 10 ms (`sleep.rs`).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use keel_rt::abi::{Method, ObjectKind, Status};
use keel_rt::util::{arg_u64, cap, rdtsc};
use keel_rt::{ev, println, ring, start_info, Ring};

keel_rt::entry!(main);

const PAGE: u64 = 4096;
const TARGET_VADDR: u64 = 0x0000_5000_0000;
const STACKS_VADDR: u64 = 0x0000_6000_0000;
const STACK_PAGES: u64 = 8;
const STRESS_VADDR: u64 = 0x0000_7000_0000;
const MAX_THREADS: usize = 16;

static READS: [AtomicU64; MAX_THREADS] = [const { AtomicU64::new(0) }; MAX_THREADS];
/// Set by the main thread once `VmUnmap` returned.
static UNMAPPED: AtomicU64 = AtomicU64::new(0);
/// Reads that succeeded although they started after the unmap completed: a stale TLB entry.
static STALE: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicU64 = AtomicU64::new(0);
static ERRORS: AtomicU64 = AtomicU64::new(0);
static OPS: AtomicU64 = AtomicU64::new(0);
static PRIMES: AtomicU64 = AtomicU64::new(0);
static MODE_STRESS_ITERS: AtomicU64 = AtomicU64::new(0);
static PRIME_LIMIT: AtomicU64 = AtomicU64::new(0);
static PRIME_THREADS: AtomicU64 = AtomicU64::new(1);
/// Spin counts of the `preempt` threads, and the flag that ends them.
static SPINS: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
static STOP: AtomicU64 = AtomicU64::new(0);

mod fair;
mod sleep;

keel_rt::thread_entry!(fn thread_start => thread_body);

/// Argument word: job in the high byte, thread index in the low bits.
const JOB_READER: u64 = 1 << 56;
const JOB_STRESS: u64 = 2 << 56;
const JOB_PRIMES: u64 = 3 << 56;
const JOB_SPIN: u64 = 4 << 56;

extern "C" fn thread_body(ring_vaddr: u64, arg: u64) -> ! {
    // SAFETY: the kernel passed this thread's own ring page in rdi.
    let mut ring = unsafe { Ring::for_thread(ring_vaddr) };
    let index = (arg & 0xFF) as usize;
    match arg & (0xFF << 56) {
        JOB_READER => loop {
            let unmapped_before = UNMAPPED.load(Ordering::Acquire) != 0;
            // SAFETY: the page is mapped until the main thread unmaps it; the access after
            // that faults, which is the point (the kernel ends this thread).
            let v = unsafe { core::ptr::read_volatile(TARGET_VADDR as *const u64) };
            if unmapped_before {
                // The unmap (and its shootdown) had completed before this read began.
                STALE.fetch_add(1, Ordering::Relaxed);
            }
            if v != 0x5eed {
                ERRORS.fetch_add(1, Ordering::Relaxed);
            }
            READS[index].fetch_add(1, Ordering::Relaxed);
        },
        JOB_STRESS => stress(&mut ring, index),
        JOB_SPIN => {
            while STOP.load(Ordering::Acquire) == 0 {
                SPINS[index % 2].fetch_add(1, Ordering::Relaxed);
            }
        }
        JOB_PRIMES => {
            let n = count_primes(
                index as u64,
                PRIME_THREADS.load(Ordering::Relaxed),
                PRIME_LIMIT.load(Ordering::Relaxed),
            );
            PRIMES.fetch_add(n, Ordering::Relaxed);
        }
        job => {
            fair::run_job(job, ring_vaddr);
        }
    }
    DONE.fetch_add(1, Ordering::Release);
    let _ = ring.call(cap(ObjectKind::Process), Method::ProcessExitThread, [0; 4]);
    loop {
        core::hint::spin_loop();
    }
}

/// Starts a thread on `cpu` with its own stack (`slot` picks it) and argument `arg`.
fn spawn(slot: u64, cpu: u64, arg: u64) -> Result<u64, Status> {
    let mut r = ring().expect("ring");
    let stack = STACKS_VADDR + slot * (STACK_PAGES + 1) * PAGE; // one guard page between stacks
    r.call(cap(ObjectKind::VirtualMemory), Method::VmMap, [stack, STACK_PAGES, 1, 0])?;
    let top = stack + STACK_PAGES * PAGE;
    let c = r.call(
        cap(ObjectKind::Process),
        Method::ProcessSpawnThread,
        [thread_start as *const () as u64, top, arg, cpu],
    )?;
    Ok(c.results[0])
}

fn cpus() -> u64 {
    arg_u64("cpus", 2)
}

/// How many of CPUs `0..want` are online, asked of the kernel: the calling thread moves to
/// each in turn (`ProcessSetAffinity` refuses a CPU that is not online) and then back to the
/// CPU it started on. A machine smaller than the manifest assumed runs the work on fewer
/// CPUs instead of failing.
fn online_cpus(want: u64) -> u64 {
    let process = cap(ObjectKind::Process);
    let mut ring = ring().expect("ring");
    let home = ring.call(process, Method::ProcessInfo, [0; 4]).map_or(0, |c| c.results[1]);
    let online = (1..want)
        .find(|&cpu| ring.call(process, Method::ProcessSetAffinity, [cpu, 0, 0, 0]).is_err())
        .unwrap_or(want);
    let _ = ring.call(process, Method::ProcessSetAffinity, [home, 0, 0, 0]);
    online
}

fn stress(ring: &mut Ring, index: usize) {
    let vm = cap(ObjectKind::VirtualMemory);
    let base = STRESS_VADDR + index as u64 * 0x10_0000;
    let pages = 4;
    for iter in 0..MODE_STRESS_ITERS.load(Ordering::Relaxed) {
        if ring.call(vm, Method::VmMap, [base, pages, 1, 0]).is_err() {
            ERRORS.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let words = (pages * PAGE / 8) as usize;
        let ptr = base as *mut u64;
        let pattern = |i: usize| (index as u64) << 48 ^ iter << 24 ^ i as u64;
        // SAFETY: the region was just mapped writable for this thread alone.
        unsafe {
            for i in 0..words {
                ptr.add(i).write_volatile(pattern(i));
            }
        }
        let check = |ring: &mut Ring| {
            let _ = ring;
            // SAFETY: mapped (read-only or writable) for this thread alone.
            (0..words).all(|i| unsafe { ptr.add(i).read_volatile() } == pattern(i))
        };
        if !check(ring) {
            ERRORS.fetch_add(1, Ordering::Relaxed);
        }
        if ring.call(vm, Method::VmProtect, [base, pages, 0, 0]).is_err() || !check(ring) {
            ERRORS.fetch_add(1, Ordering::Relaxed);
        }
        if ring.call(vm, Method::VmProtect, [base, pages, 1, 0]).is_err() {
            ERRORS.fetch_add(1, Ordering::Relaxed);
        }
        if ring.call(vm, Method::VmUnmap, [base, pages, 0, 0]).is_err() {
            ERRORS.fetch_add(1, Ordering::Relaxed);
        }
        OPS.fetch_add(4, Ordering::Relaxed);
    }
}

/// Numbers per chunk of prime-counting work. Threads take every `threads`-th chunk: chunks
/// mix odd and even numbers and small and large ones alike, so the threads get equal work
/// (interleaving single numbers would hand one thread all the odd ones).
const PRIME_CHUNK: u64 = 256;

/// Primes below `limit` in chunks `first`, `first + step`, `first + 2 * step`, ...
fn count_primes(first: u64, step: u64, limit: u64) -> u64 {
    let is_prime =
        |n: u64| n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| !n.is_multiple_of(d));
    let mut count = 0;
    let mut chunk = first;
    while chunk * PRIME_CHUNK < limit {
        let start = chunk * PRIME_CHUNK;
        count += (start..(start + PRIME_CHUNK).min(limit)).filter(|&n| is_prime(n)).count() as u64;
        chunk += step;
    }
    count
}

/// How long (in 1 ms sleeps, at least) the shootdown test waits for its faulting readers to
/// be gone before it reports what it sees.
const READERS_GONE_TIMEOUT_MS: u64 = 20_000;

fn sleep_ms(ms: u64) {
    let _ = ring().expect("ring").timer_sleep(cap(ObjectKind::Timer), ms * 1_000_000);
}

fn wait_done(n: u64) -> bool {
    for _ in 0..10_000 {
        if DONE.load(Ordering::Acquire) >= n {
            return true;
        }
        sleep_ms(1);
    }
    false
}

fn main() -> u64 {
    match start_info().arg("mode").unwrap_or("shootdown") {
        "shootdown" => {
            let workers = arg_u64("workers", 1).min(MAX_THREADS as u64 - 1);
            let vm = cap(ObjectKind::VirtualMemory);
            if ring().expect("ring").call(vm, Method::VmMap, [TARGET_VADDR, 1, 1, 0]).is_err() {
                return 2;
            }
            // SAFETY: just mapped writable.
            unsafe { core::ptr::write_volatile(TARGET_VADDR as *mut u64, 0x5eed) };
            for i in 0..workers {
                if spawn(i, 1 + i, JOB_READER | i).is_err() {
                    return 3;
                }
            }
            // Every reader must be reading before the unmap.
            while (0..workers as usize).any(|i| READS[i].load(Ordering::Relaxed) < 1000) {
                sleep_ms(1);
            }
            let t0 = rdtsc();
            let unmapped = ring().expect("ring").call(vm, Method::VmUnmap, [TARGET_VADDR, 1, 0, 0]);
            let cycles = rdtsc() - t0;
            UNMAPPED.store(1, Ordering::Release);
            let before: u64 = (0..workers as usize).map(|i| READS[i].load(Ordering::Relaxed)).sum();
            // Wait for the state the proof checks: every faulting reader gone. Each first
            // prints its fault report under the console lock, which on a real-speed UART
            // takes a good part of a second; the bound only catches a reader that never dies.
            let live_threads = || {
                let info = ring().expect("ring").call(
                    cap(ObjectKind::Process),
                    Method::ProcessInfo,
                    [0; 4],
                );
                info.map(|c| c.results[0]).unwrap_or(0)
            };
            let mut live = live_threads();
            for _ in 0..READERS_GONE_TIMEOUT_MS {
                if live <= 1 {
                    break;
                }
                sleep_ms(1);
                live = live_threads();
            }
            let after: u64 = (0..workers as usize).map(|i| READS[i].load(Ordering::Relaxed)).sum();
            ev!("workers", workers);
            ev!("unmap", if unmapped.is_ok() { "ok" } else { "failed" });
            ev!("unmap_cycles", cycles);
            ev!("reads_after_unmap", after.saturating_sub(before));
            ev!("live_threads_after", live);
            ev!("read_errors", ERRORS.load(Ordering::Relaxed));
            ev!("stale_reads", STALE.load(Ordering::Relaxed));
            0
        }
        "stress" => {
            let threads = arg_u64("threads", cpus()).min(MAX_THREADS as u64);
            MODE_STRESS_ITERS.store(arg_u64("iters", 50), Ordering::Relaxed);
            for i in 0..threads {
                if spawn(i, i % cpus(), JOB_STRESS | i).is_err() {
                    return 3;
                }
            }
            let finished = wait_done(threads);
            ev!("threads", threads);
            ev!("finished", if finished { "yes" } else { "no" });
            ev!("operations", OPS.load(Ordering::Relaxed));
            ev!("errors", ERRORS.load(Ordering::Relaxed));
            if finished && ERRORS.load(Ordering::Relaxed) == 0 {
                0
            } else {
                4
            }
        }
        "primes" => {
            let limit = arg_u64("limit", 200_000);
            PRIME_LIMIT.store(limit, Ordering::Relaxed);
            let cpus = online_cpus(cpus());
            ev!("cpus_used", cpus);
            let mut reference = None;
            let mut single = None;
            let mut ok = true;
            let mut spawned = 0u64;
            for threads in [1u64, 2, 4] {
                if threads > cpus {
                    break;
                }
                PRIMES.store(0, Ordering::Relaxed);
                PRIME_THREADS.store(threads, Ordering::Relaxed);
                let target = DONE.load(Ordering::Acquire) + threads;
                let t0 = rdtsc();
                for t in 0..threads {
                    if spawn(spawned, t % cpus, JOB_PRIMES | t).is_err() {
                        return 3;
                    }
                    spawned += 1;
                }
                if !wait_done(target) {
                    return 5;
                }
                let cycles = rdtsc() - t0;
                let count = PRIMES.load(Ordering::Relaxed);
                ev!(format_args!("threads_{threads}.primes"), count);
                ev!(format_args!("threads_{threads}.cycles"), cycles);
                // Speed-up over one thread, in hundredths (printed, never asserted).
                let one = *single.get_or_insert(cycles);
                ev!(format_args!("threads_{threads}.speedup_x100"), one * 100 / cycles.max(1));
                ok &= *reference.get_or_insert(count) == count;
            }
            ev!("limit", limit);
            ev!("consistent", if ok { "yes" } else { "no" });
            println!("primes below {limit}: {}", reference.unwrap_or(0));
            if ok {
                0
            } else {
                6
            }
        }
        "preempt" => preempt(),
        "fair" => fair::fair(),
        "exitrace" => fair::exitrace(),
        "sleep" => sleep::sleep(),
        _ => 1,
    }
}

/// `mode=preempt`: see the module comment.
fn preempt() -> u64 {
    const SPIN_CPU: u64 = 1;
    let target = DONE.load(Ordering::Acquire) + 2;
    for i in 0..2 {
        if spawn(i, SPIN_CPU, JOB_SPIN | i).is_err() {
            return 3;
        }
    }
    sleep_ms(arg_u64("ms", 300));
    let spins = [SPINS[0].load(Ordering::Relaxed), SPINS[1].load(Ordering::Relaxed)];
    STOP.store(1, Ordering::Release);
    let ended = wait_done(target);
    ev!("spin_0", spins[0]);
    ev!("spin_1", spins[1]);
    ev!("both_ran", if spins[0] > 0 && spins[1] > 0 { "yes" } else { "no" });
    ev!("spinners_ended", if ended { "yes" } else { "no" });
    // Where the kernel runs this thread after each move (read from the CPU it is on).
    let process = cap(ObjectKind::Process);
    for (step, cpu) in [SPIN_CPU, 0].into_iter().enumerate() {
        let running_on = {
            let mut ring = ring().expect("ring");
            let moved = ring.call(process, Method::ProcessSetAffinity, [cpu, 0, 0, 0]).is_ok();
            let now =
                ring.call(process, Method::ProcessInfo, [0; 4]).map_or(u64::MAX, |c| c.results[1]);
            if moved {
                now
            } else {
                u64::MAX
            }
        };
        ev!(format_args!("move_{step}.asked"), cpu);
        ev!(format_args!("move_{step}.running_on"), running_on);
    }
    if ended {
        0
    } else {
        5
    }
}
