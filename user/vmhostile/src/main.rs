//! Memory-isolation attacks from ring 3, with nothing but `Console`, `Process`,
//! `VirtualMemory` and `Timer`. Each phase reports what it tried and what the kernel answered;
//! the proof compares those figures with the kernel's own counters.
//!
//! 1. Kernel pages: unmap, reprotect and map over the ring pages (this thread's and a spawned
//!    thread's) and the start-info page, alone and inside larger ranges. Every attempt must be
//!    refused with `Denied`, the neighbouring ordinary page must stay mapped, and the ring and
//!    start info must still work afterwards.
//! 2. W^X: ask for the program's own code pages to become writable. Refused with `Denied`;
//!    a thread that then writes to the code page is ended by a fault, and the code bytes are
//!    unchanged.
//! 3. Copy race: a thread on another CPU maps, write-protects and unmaps a two-page region in
//!    a loop while this thread submits `ConsoleWrite`s of 4 KiB straddling both pages (at
//!    least `rounds`, and on until the racer completed `racer_cycles` cycles). Each
//!    copy either succeeds (the region holds zeros, which the console drops) or fails with
//!    `BadAddress`; anything else, or a kernel fault, fails the proof.
//! 0. Local-only shootdowns (run first, while the space is resident on CPU 0 alone): a thread
//!    on CPU 0 writes a page, write-protects it and writes again; another reads a page, unmaps
//!    it and reads again. The second access must fault (the kernel ends each thread and
//!    reports the address): the shootdown flushed this CPU although no other needed an IPI.
//! 4. Spurious fault: a thread on CPU 1 writes a read-only probe page while this thread makes
//!    it writable; the scenarios kernel holds the fault until the table changed (the window of
//!    a stale read-only TLB entry, widened). The writer must survive and its write land.
//!    Then the retry bound: the scenarios kernel takes every fault on a second probe page
//!    for spurious (a walk that disagrees with the hardware); a thread writing it read-only
//!    must be ended after one retry, not loop.
//! 5. Freed-frame poison: per round, a reader on CPU 1 checks every word of a page it reads
//!    in a loop while this thread unmaps the page (the scenarios kernel delays the shootdown
//!    after the table change, and fills freed frames with a poison pattern): the reader must
//!    see only the page's own data until its flush ends it with a fault, never the poison.
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use keel_rt::abi::{Method, ObjectKind, Status, Submission, RING_VADDR, START_INFO_VADDR};
use keel_rt::util::{arg_u64, cap};
use keel_rt::{ev, ring, start_info, CapId, Ring};

keel_rt::entry!(main);

const PAGE: u64 = 4096;
/// The region the racer maps and unmaps.
const RACE_VADDR: u64 = 0x0000_4000_0000;
const RACE_PAGES: u64 = 2;
/// Stacks of spawned threads.
const STACKS_VADDR: u64 = 0x0000_6000_0000;
const STACK_PAGES: u64 = 8;
/// An ordinary page right below the start-info page (a range over both must be refused whole).
const NEIGHBOUR_VADDR: u64 = START_INFO_VADDR - PAGE;
/// Submissions per `cap_enter` in the race.
const BATCH: u64 = 16;

static STOP: AtomicU64 = AtomicU64::new(0);
static RACER_DONE: AtomicU64 = AtomicU64::new(0);
static RACER_CYCLES: AtomicU64 = AtomicU64::new(0);
static RACER_ERRORS: AtomicU64 = AtomicU64::new(0);
static PARKED: AtomicU64 = AtomicU64::new(0);

keel_rt::thread_entry!(fn thread_start => thread_body);

const JOB_RACER: u64 = 1;
const JOB_PARKED: u64 = 2;
const JOB_PATCH: u64 = 3;
const JOB_LOCAL_PROTECT: u64 = 4;
const JOB_LOCAL_UNMAP: u64 = 5;
const JOB_SPURIOUS: u64 = 6;
const JOB_POISON_READER: u64 = 7;

/// Phase 0's pages (write-protected, unmapped).
const LOCAL_PROTECT_VADDR: u64 = 0x0000_4400_0000;
const LOCAL_UNMAP_VADDR: u64 = 0x0000_4400_2000;
static LOCAL_PROTECTED: AtomicU64 = AtomicU64::new(0);
static LOCAL_PROTECT_WRITTEN: AtomicU64 = AtomicU64::new(0);
static LOCAL_UNMAPPED: AtomicU64 = AtomicU64::new(0);
static LOCAL_UNMAP_READ: AtomicU64 = AtomicU64::new(0);

/// Phase 4's probe page (the kernel's `SPURIOUS_PROBE_VADDR`).
const SPURIOUS_VADDR: u64 = 0x0000_4800_0000;
const SPURIOUS_VALUE: u64 = 0x5b0b_5b0b;
static SPURIOUS_READY: AtomicU64 = AtomicU64::new(0);
static SPURIOUS_WRITTEN: AtomicU64 = AtomicU64::new(0);
/// The retry-bound probe page (the kernel's `RETRY_LOOP_PROBE_VADDR`).
const RETRY_LOOP_VADDR: u64 = 0x0000_4c00_0000;
static RETRY_LOOP_WRITTEN: AtomicU64 = AtomicU64::new(0);
const JOB_RETRY_LOOP: u64 = 8;

/// Phase 5's page (the kernel's `POISON_PROBE_VADDR`), what freed frames hold in the
/// scenarios kernel, and the readers' findings.
const POISON_VADDR: u64 = 0x0000_4a00_0000;
const FREED_POISON: u64 = 0xF4EE_D0D0_F4EE_D0D0;
const PAGE_PATTERN: u64 = 0x0da7_a000_0000_0000;
static READERS_UP: AtomicU64 = AtomicU64::new(0);
static READS: AtomicU64 = AtomicU64::new(0);
static READS_IN_FLIGHT: AtomicU64 = AtomicU64::new(0);
static UNMAP_IN_FLIGHT: AtomicU64 = AtomicU64::new(0);
static POISON_SEEN: AtomicU64 = AtomicU64::new(0);
static WRONG_DATA: AtomicU64 = AtomicU64::new(0);

/// The code byte the patcher thread tries to change, and whether its write went through.
static PATCH_TARGET: AtomicU64 = AtomicU64::new(0);
static PATCH_WRITTEN: AtomicU64 = AtomicU64::new(0);

extern "C" fn thread_body(ring_vaddr: u64, job: u64) -> ! {
    // SAFETY: the kernel passed this thread's own ring page in rdi.
    let mut ring = unsafe { Ring::for_thread(ring_vaddr) };
    match job {
        JOB_RACER => race_mappings(&mut ring),
        JOB_PATCH => {
            let target = PATCH_TARGET.load(Ordering::Acquire) as *mut u8;
            // SAFETY: deliberately invalid: the code page must stay read-only, so this write
            // faults and the kernel ends this thread.
            unsafe { target.write_volatile(target.read_volatile() ^ 0xff) };
            PATCH_WRITTEN.store(1, Ordering::Release);
        }
        JOB_LOCAL_PROTECT => {
            let page = LOCAL_PROTECT_VADDR as *mut u64;
            // SAFETY: mapped writable by the main thread; the second write must fault.
            unsafe { page.write_volatile(1) };
            let vm = cap(ObjectKind::VirtualMemory);
            let ok = ring.call(vm, Method::VmProtect, [LOCAL_PROTECT_VADDR, 1, 0, 0]).is_ok();
            LOCAL_PROTECTED.store(ok as u64, Ordering::Release);
            // SAFETY: deliberately invalid: the page is read-only now.
            unsafe { page.write_volatile(2) };
            LOCAL_PROTECT_WRITTEN.store(1, Ordering::Release);
        }
        JOB_LOCAL_UNMAP => {
            let page = LOCAL_UNMAP_VADDR as *const u64;
            // SAFETY: mapped by the main thread; the second read must fault.
            let _ = unsafe { page.read_volatile() };
            let vm = cap(ObjectKind::VirtualMemory);
            let ok = ring.call(vm, Method::VmUnmap, [LOCAL_UNMAP_VADDR, 1, 0, 0]).is_ok();
            LOCAL_UNMAPPED.store(ok as u64, Ordering::Release);
            // SAFETY: deliberately invalid: the page is unmapped now.
            let _ = unsafe { page.read_volatile() };
            LOCAL_UNMAP_READ.store(1, Ordering::Release);
        }
        JOB_SPURIOUS => {
            SPURIOUS_READY.store(1, Ordering::Release);
            // SAFETY: read-only when written; the main thread makes it writable meanwhile.
            unsafe { (SPURIOUS_VADDR as *mut u64).write_volatile(SPURIOUS_VALUE) };
            SPURIOUS_WRITTEN.store(1, Ordering::Release);
        }
        JOB_POISON_READER => read_until_unmapped(),
        JOB_RETRY_LOOP => {
            // SAFETY: deliberately invalid: the page stays read-only, so this write faults
            // until the kernel gives up retrying and ends this thread.
            unsafe { (RETRY_LOOP_VADDR as *mut u64).write_volatile(1) };
            RETRY_LOOP_WRITTEN.store(1, Ordering::Release);
        }
        _ => {
            // Holds its ring (the second ring page) until the main thread is done with it.
            PARKED.store(1, Ordering::Release);
            while STOP.load(Ordering::Acquire) == 0 {
                let _ = ring.call(cap(ObjectKind::Timer), Method::TimerSleep, [100_000, 0, 0, 0]);
            }
        }
    }
    let _ = ring.call(cap(ObjectKind::Process), Method::ProcessExitThread, [0; 4]);
    loop {
        core::hint::spin_loop();
    }
}

/// Map, write-protect, unmap the race region until told to stop.
fn race_mappings(ring: &mut Ring) {
    let vm = cap(ObjectKind::VirtualMemory);
    while STOP.load(Ordering::Acquire) == 0 {
        let ok = ring.call(vm, Method::VmMap, [RACE_VADDR, RACE_PAGES, 1, 0]).is_ok()
            && ring.call(vm, Method::VmProtect, [RACE_VADDR, RACE_PAGES, 0, 0]).is_ok()
            && ring.call(vm, Method::VmUnmap, [RACE_VADDR, RACE_PAGES, 0, 0]).is_ok();
        if !ok {
            RACER_ERRORS.fetch_add(1, Ordering::Relaxed);
        }
        RACER_CYCLES.fetch_add(1, Ordering::Relaxed);
    }
    RACER_DONE.store(1, Ordering::Release);
}

/// Reads the poison page word by word until a fault ends this thread, counting what it saw.
fn read_until_unmapped() {
    READERS_UP.fetch_add(1, Ordering::AcqRel);
    loop {
        for i in 0..PAGE / 8 {
            // SAFETY: mapped until the main thread unmaps it; the read after the flush faults
            // and ends this thread.
            let word = unsafe { ((POISON_VADDR + i * 8) as *const u64).read_volatile() };
            if word == FREED_POISON {
                POISON_SEEN.fetch_add(1, Ordering::Relaxed);
            } else if word != PAGE_PATTERN | i {
                WRONG_DATA.fetch_add(1, Ordering::Relaxed);
            }
            READS.fetch_add(1, Ordering::Relaxed);
            if UNMAP_IN_FLIGHT.load(Ordering::Relaxed) != 0 {
                READS_IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn spawn(slot: u64, cpu: u64, job: u64) -> Result<u64, Status> {
    let mut r = ring().expect("ring");
    let stack = STACKS_VADDR + slot * (STACK_PAGES + 1) * PAGE;
    r.call(cap(ObjectKind::VirtualMemory), Method::VmMap, [stack, STACK_PAGES, 1, 0])?;
    let top = stack + STACK_PAGES * PAGE;
    let c = r.call(
        cap(ObjectKind::Process),
        Method::ProcessSpawnThread,
        [thread_start as *const () as u64, top, job, cpu],
    )?;
    Ok(c.results[0])
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Phase 1: every change to a kernel page is refused and nothing around it changes.
fn kernel_pages() {
    let vm = cap(ObjectKind::VirtualMemory);
    let mut r = ring().expect("ring");
    // An ordinary page next to the start info, and a second thread's ring below ours.
    let neighbour = r.call(vm, Method::VmMap, [NEIGHBOUR_VADDR, 1, 1, 0]).is_ok();
    // SAFETY: just mapped writable.
    unsafe { (NEIGHBOUR_VADDR as *mut u64).write_volatile(0x5eed) };
    drop(r);
    let parked = spawn(0, 1, JOB_PARKED).is_ok();
    while parked && PARKED.load(Ordering::Acquire) == 0 {
        core::hint::spin_loop();
    }
    let second_ring = RING_VADDR - PAGE;
    let attempts: [(Method, [u64; 4]); 12] = [
        (Method::VmUnmap, [RING_VADDR, 1, 0, 0]),
        (Method::VmProtect, [RING_VADDR, 1, 0, 0]),
        (Method::VmProtect, [RING_VADDR, 1, 1, 0]),
        (Method::VmMap, [RING_VADDR, 1, 1, 0]),
        (Method::VmUnmap, [second_ring, 1, 0, 0]),
        (Method::VmUnmap, [second_ring, 2, 0, 0]),
        (Method::VmUnmap, [START_INFO_VADDR, 1, 0, 0]),
        (Method::VmProtect, [START_INFO_VADDR, 1, 1, 0]),
        (Method::VmMap, [START_INFO_VADDR, 1, 0, 0]),
        // Ranges that start on an ordinary page and run into a kernel page.
        (Method::VmUnmap, [NEIGHBOUR_VADDR, 2, 0, 0]),
        (Method::VmProtect, [NEIGHBOUR_VADDR, 2, 0, 0]),
        (Method::VmMap, [NEIGHBOUR_VADDR - 4 * PAGE, 8, 1, 0]),
    ];
    let mut denied = 0u64;
    let mut r = ring().expect("ring");
    for (method, args) in attempts {
        match r.call(vm, method, args) {
            Err(Status::Denied) => denied += 1,
            other => keel_rt::println!(
                "{} {:#x}: {:?} (expected denied)",
                method.name(),
                args[0],
                other.map(|c| c.status)
            ),
        }
    }
    // The neighbour is still mapped, writable and holds its value (the refused ranges were
    // refused whole); the ring still serves calls; the start info still reads.
    // SAFETY: mapped above; a refused unmap/protect left it as it was.
    let neighbour_intact = neighbour
        && unsafe {
            (NEIGHBOUR_VADDR as *mut u64).write_volatile(0x5eee);
            (NEIGHBOUR_VADDR as *const u64).read_volatile() == 0x5eee
        };
    let ring_works = r.call(cap(ObjectKind::Timer), Method::TimerNow, [0; 4]).is_ok()
        && r.call(CapId::NULL, Method::Nop, [0; 4]).is_ok();
    drop(r);
    ev!("kernel_page_attempts", attempts.len());
    ev!("kernel_page_denied", denied);
    ev!("neighbour_intact", yes(neighbour_intact));
    ev!("ring_works_after", yes(ring_works));
    ev!("start_info_intact", yes(start_info().program_name() == "vmhostile"));
    ev!("second_thread", yes(parked));
}

fn checksum(addr: u64, len: u64) -> u64 {
    (0..len / 8).fold(0xcbf2_9ce4_8422_2325u64, |h, i| {
        // SAFETY: reads of the program's own mapped code pages.
        let w = unsafe { ((addr + i * 8) as *const u64).read_volatile() };
        (h ^ w).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Phase 2: code never becomes writable.
fn write_xor_execute() {
    let vm = cap(ObjectKind::VirtualMemory);
    let code = (write_xor_execute as *const () as u64) & !(PAGE - 1);
    let before = checksum(code, PAGE);
    let mut r = ring().expect("ring");
    let attempts: [[u64; 4]; 2] = [[code, 1, 1, 0], [code, 2, 1, 0]];
    let mut denied = 0u64;
    for args in attempts {
        match r.call(vm, Method::VmProtect, args) {
            Err(Status::Denied) => denied += 1,
            other => keel_rt::println!(
                "protect code {:#x} writable: {:?} (expected denied)",
                args[0],
                other.map(|c| c.status)
            ),
        }
    }
    // The page really stayed read-only: a thread that writes to it is ended by a fault.
    let live = |r: &mut Ring| {
        r.call(cap(ObjectKind::Process), Method::ProcessInfo, [0; 4])
            .map(|c| c.results[0])
            .unwrap_or(0)
    };
    let threads_before = live(&mut r);
    drop(r);
    PATCH_TARGET.store(code, Ordering::Release);
    let patcher = spawn(2, 1, JOB_PATCH);
    let mut r = ring().expect("ring");
    let start = keel_rt::util::rdtsc();
    while patcher.is_ok()
        && PATCH_WRITTEN.load(Ordering::Acquire) == 0
        && live(&mut r) > threads_before
    {
        if keel_rt::util::rdtsc() - start > 50_000_000_000 {
            break;
        }
    }
    drop(r);
    ev!("wx_attempts", attempts.len());
    ev!("wx_denied", denied);
    ev!("patch_tid", patcher.unwrap_or(0));
    ev!("patch_addr", code);
    ev!("patch_written", yes(PATCH_WRITTEN.load(Ordering::Acquire) != 0));
    ev!("code_unchanged", yes(checksum(code, PAGE) == before));
}

/// Phase 3: copies racing map / protect / unmap on another CPU.
fn copy_race(rounds: u64, min_racer_cycles: u64) {
    let console = cap(ObjectKind::Console);
    let racer = spawn(1, 1, JOB_RACER).is_ok();

    let (mut ok, mut bad_address, mut other, mut copies) = (0u64, 0u64, 0u64, 0u64);
    let mut r = ring().expect("ring");
    // At least `rounds` copies, and on until the racer has gone through `min_racer_cycles`
    // map/protect/unmap cycles (bounded, in case it is stuck: the proof then fails).
    let racing = || {
        RACER_CYCLES.load(Ordering::Relaxed) < min_racer_cycles
            && RACER_DONE.load(Ordering::Relaxed) == 0
    };
    while copies < rounds || (racer && racing() && copies < 20 * rounds) {
        let batch = BATCH;
        for k in 0..batch {
            // 4 KiB from the middle of the first page into the second.
            let sub = Submission {
                cap: console.0,
                method: Method::ConsoleWrite as u16,
                flags: 0,
                args: [RACE_VADDR + PAGE / 2, PAGE, 0, 0],
                user_data: copies + k,
            };
            if r.submit(sub).is_err() {
                other += 1;
            }
        }
        let _ = r.enter(batch as u32, 5_000_000_000);
        while let Some(c) = r.next_completion() {
            copies += 1;
            match Status::from_i32(c.status) {
                Some(Status::Ok) => ok += 1,
                Some(Status::BadAddress) => bad_address += 1,
                _ => other += 1,
            }
        }
    }
    drop(r);
    STOP.store(1, Ordering::Release);
    while racer && RACER_DONE.load(Ordering::Acquire) == 0 {
        core::hint::spin_loop();
    }
    ev!("racer", yes(racer));
    ev!("copies", copies);
    ev!("copy_ok", ok);
    ev!("copy_bad_address", bad_address);
    ev!("copy_other", other);
    ev!("racer_cycles", RACER_CYCLES.load(Ordering::Relaxed));
    ev!("racer_errors", RACER_ERRORS.load(Ordering::Relaxed));
}

/// Live threads of this process (the kernel's count).
fn live_threads(r: &mut Ring) -> u64 {
    r.call(cap(ObjectKind::Process), Method::ProcessInfo, [0; 4]).map(|c| c.results[0]).unwrap_or(0)
}

/// Sleeps until the process is back to `threads` live threads (at most about 10 s).
fn wait_threads(threads: u64) {
    let mut r = ring().expect("ring");
    for _ in 0..10_000 {
        if live_threads(&mut r) <= threads {
            return;
        }
        let _ = r.call(cap(ObjectKind::Timer), Method::TimerSleep, [1_000_000, 0, 0, 0]);
    }
}

/// Phase 0: shootdowns that interrupt no other CPU still flush this one.
fn local_only() {
    let vm = cap(ObjectKind::VirtualMemory);
    let mut r = ring().expect("ring");
    let mapped = r.call(vm, Method::VmMap, [LOCAL_PROTECT_VADDR, 1, 1, 0]).is_ok()
        && r.call(vm, Method::VmMap, [LOCAL_UNMAP_VADDR, 1, 1, 0]).is_ok();
    let before = live_threads(&mut r);
    drop(r);
    let protect_tid = spawn(3, 0, JOB_LOCAL_PROTECT).unwrap_or(0);
    wait_threads(before);
    let unmap_tid = spawn(4, 0, JOB_LOCAL_UNMAP).unwrap_or(0);
    wait_threads(before);
    ev!("local_mapped", yes(mapped));
    ev!("local_protect_tid", protect_tid);
    ev!("local_protect_addr", LOCAL_PROTECT_VADDR);
    ev!("local_protected", yes(LOCAL_PROTECTED.load(Ordering::Acquire) != 0));
    ev!("local_protect_written", yes(LOCAL_PROTECT_WRITTEN.load(Ordering::Acquire) != 0));
    ev!("local_unmap_tid", unmap_tid);
    ev!("local_unmap_addr", LOCAL_UNMAP_VADDR);
    ev!("local_unmapped", yes(LOCAL_UNMAPPED.load(Ordering::Acquire) != 0));
    ev!("local_unmap_read", yes(LOCAL_UNMAP_READ.load(Ordering::Acquire) != 0));
}

/// Phase 4: a write that faults on a read-only entry while another CPU makes it writable.
fn spurious_fault() {
    let vm = cap(ObjectKind::VirtualMemory);
    let mut r = ring().expect("ring");
    let mapped = r.call(vm, Method::VmMap, [SPURIOUS_VADDR, 1, 0, 0]).is_ok();
    drop(r);
    // The earlier phases' threads were all told to stop, but one may still be on its way out:
    // counted now and gone later, it would let the waits below return while the writer still
    // runs. Wait until this thread is the only one, so the count is the writer's alone.
    wait_threads(1);
    let before = 1;
    let writer = spawn(5, 1, JOB_SPURIOUS).is_ok();
    while writer && SPURIOUS_READY.load(Ordering::Acquire) == 0 {
        core::hint::spin_loop();
    }
    let mut r = ring().expect("ring");
    // The writer faults at once; the kernel holds that fault until this change lands.
    let _ = r.call(cap(ObjectKind::Timer), Method::TimerSleep, [20_000_000, 0, 0, 0]);
    let protected = r.call(vm, Method::VmProtect, [SPURIOUS_VADDR, 1, 1, 0]).is_ok();
    drop(r);
    wait_threads(before);
    // SAFETY: mapped above (readable throughout).
    let value = unsafe { (SPURIOUS_VADDR as *const u64).read_volatile() };
    ev!("spurious_mapped", yes(mapped));
    ev!("spurious_protected", yes(protected));
    ev!("spurious_written", yes(SPURIOUS_WRITTEN.load(Ordering::Acquire) != 0));
    ev!("spurious_value_landed", yes(value == SPURIOUS_VALUE));
    // The retry bound.
    let mut r = ring().expect("ring");
    let mapped = r.call(vm, Method::VmMap, [RETRY_LOOP_VADDR, 1, 0, 0]).is_ok();
    drop(r);
    let looper = spawn(30, 1, JOB_RETRY_LOOP).unwrap_or(0);
    wait_threads(before);
    ev!("retry_loop_mapped", yes(mapped));
    ev!("retry_loop_tid", looper);
    ev!("retry_loop_addr", RETRY_LOOP_VADDR);
    ev!("retry_loop_written", yes(RETRY_LOOP_WRITTEN.load(Ordering::Acquire) != 0));
}

/// Phase 5: readers on CPU 1 while the page they read is unmapped.
fn poison_readers(rounds: u64) {
    let vm = cap(ObjectKind::VirtualMemory);
    let mut failed = 0u64;
    for round in 0..rounds {
        let mut r = ring().expect("ring");
        if r.call(vm, Method::VmMap, [POISON_VADDR, 1, 1, 0]).is_err() {
            failed += 1;
            continue;
        }
        for i in 0..PAGE / 8 {
            // SAFETY: just mapped writable.
            unsafe { ((POISON_VADDR + i * 8) as *mut u64).write_volatile(PAGE_PATTERN | i) };
        }
        let before = live_threads(&mut r);
        drop(r);
        if spawn(6 + round, 1, JOB_POISON_READER).is_err() {
            failed += 1;
            break;
        }
        let reads = READS.load(Ordering::Acquire);
        while READERS_UP.load(Ordering::Acquire) <= round
            || READS.load(Ordering::Acquire) < reads + 4 * PAGE / 8
        {
            core::hint::spin_loop();
        }
        let mut r = ring().expect("ring");
        UNMAP_IN_FLIGHT.store(1, Ordering::Release);
        if r.call(vm, Method::VmUnmap, [POISON_VADDR, 1, 0, 0]).is_err() {
            failed += 1;
        }
        UNMAP_IN_FLIGHT.store(0, Ordering::Release);
        drop(r);
        wait_threads(before);
    }
    ev!("poison_rounds", rounds);
    ev!("poison_round_failures", failed);
    ev!("poison_reads", READS.load(Ordering::Relaxed));
    ev!("poison_reads_in_flight", READS_IN_FLIGHT.load(Ordering::Relaxed));
    ev!("poison_seen", POISON_SEEN.load(Ordering::Relaxed));
    ev!("poison_wrong_data", WRONG_DATA.load(Ordering::Relaxed));
}

fn main() -> u64 {
    local_only();
    kernel_pages();
    write_xor_execute();
    copy_race(arg_u64("rounds", 100_000), arg_u64("racer_cycles", 500));
    spurious_fault();
    poison_readers(arg_u64("poison_rounds", 16));
    0
}
