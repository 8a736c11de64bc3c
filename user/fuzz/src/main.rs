//! A randomized ring fuzzer: `threads=T` threads on `cpus=C` CPUs push `submissions=N`
//! random submissions in total through their own rings — methods (known ones and random
//! numbers), capabilities (live, copied, released, random), pointers (own pages, unmapped,
//! kernel, non-canonical, unaligned) and sizes — and count what comes back. The kernel must
//! answer every one, never fault, and give back every frame and heap byte once the process is
//! gone (its own report). The fuzzer never aims at its own code, stack, ring or start info,
//! never releases the capabilities it reports with, and never ends a thread at random: it
//! tests the kernel, not whether a program can destroy itself. Between batches it also makes
//! hostile system calls: `cap_enter` with `min_complete` above `CQ_ENTRIES` (nothing may be
//! consumed) and unknown call numbers (`BadMethod`).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};

use keel_rt::abi::{Method, ObjectKind, Submission, CQ_ENTRIES, MAX_VM_PAGES, SQ_ENTRIES};
use keel_rt::util::{arg_u64, cap};
use keel_rt::{ev, println, ring, start_info, CapId, Ring};

keel_rt::entry!(main);

const PAGE: u64 = 4096;
const MAX_WORKERS: usize = 16;
const STACKS_VADDR: u64 = 0x0000_6000_0000;
const STACK_PAGES: u64 = 4;
/// Each worker's private sandbox: the only user pages its VM calls and pointers touch (a
/// worker never points into another's, so no copy races another thread's unmap here).
const SANDBOX_VADDR: u64 = 0x0000_1000_0000_0000;
const SANDBOX_PAGES: u64 = 64;
const SANDBOX_STRIDE: u64 = 0x100_0000;
/// Deferred sleeps a worker may have outstanding (each holds a completion slot).
const MAX_SLEEPS: u64 = 4;

static SUBMITTED: AtomicU64 = AtomicU64::new(0);
static COMPLETED: AtomicU64 = AtomicU64::new(0);
static OK: AtomicU64 = AtomicU64::new(0);
static ERRORS: AtomicU64 = AtomicU64::new(0);
static ENTER_ERRORS: AtomicU64 = AtomicU64::new(0);
static SPAWNED: AtomicU64 = AtomicU64::new(0);
static BAD_ENTERS: AtomicU64 = AtomicU64::new(0);
static BAD_ENTER_CONSUMED: AtomicU64 = AtomicU64::new(0);
static BAD_SYSCALLS: AtomicU64 = AtomicU64::new(0);
static BAD_SYSCALL_UNEXPECTED: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicU64 = AtomicU64::new(0);
static QUOTA: AtomicU64 = AtomicU64::new(0);
static SEED: AtomicU64 = AtomicU64::new(0);

/// xorshift64*: reproducible from `seed=`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Capabilities a worker may name: the granted ones (never released), its own copies (free
/// to release), and ids that name nothing.
struct Caps {
    granted: [u32; 4],
    copies: [u32; 8],
}

impl Caps {
    fn pick(&self, rng: &mut Rng) -> u32 {
        match rng.below(8) {
            0..=3 => self.granted[rng.below(4) as usize],
            4 | 5 => self.copies[rng.below(8) as usize],
            6 => rng.below(300) as u32,
            _ => rng.next() as u32,
        }
    }
}

/// An address: mostly the worker's own sandbox, else something the kernel must refuse.
fn address(rng: &mut Rng, sandbox: u64) -> u64 {
    match rng.below(10) {
        0..=4 => sandbox + rng.below(SANDBOX_PAGES) * PAGE,
        5 => sandbox + rng.below(SANDBOX_PAGES * PAGE), // unaligned
        6 => [0, 0x1000, 0x0000_7fff_ffff_f000, 0x0000_5555_0000_0000][rng.below(4) as usize],
        7 => [0x0000_8000_0000_0000, 0xffff_8000_0000_0000, 0xffff_ffff_8010_0000, u64::MAX - 4095]
            [rng.below(4) as usize],
        8 => rng.next() & !0xFFF,
        _ => rng.next(),
    }
}

fn size(rng: &mut Rng) -> u64 {
    match rng.below(6) {
        0 => 0,
        1 => 1 + rng.below(16),
        2 => 1 + rng.below(MAX_VM_PAGES + 8),
        3 => PAGE,
        4 => u64::MAX - rng.below(16),
        _ => rng.next(),
    }
}

/// Every method but `ProcessExitThread` (which would end the fuzzing thread), drawn
/// uniformly from the ABI's own list so that a new method is fuzzed without an edit here.
fn random_method(rng: &mut Rng) -> Method {
    loop {
        let m = Method::ALL[rng.below(Method::ALL.len() as u64) as usize];
        if m != Method::ProcessExitThread {
            return m;
        }
    }
}

/// One random submission for worker `index`.
fn random_submission(
    rng: &mut Rng,
    caps: &Caps,
    sandbox: u64,
    sleeps: &mut u64,
    user_data: u64,
) -> Submission {
    let raw_method = rng.below(16) == 0;
    let method = if raw_method { rng.next() as u16 } else { random_method(rng) as u16 };
    let mut s = Submission {
        cap: caps.pick(rng),
        method,
        flags: if rng.below(32) == 0 { rng.next() as u16 } else { 0 },
        args: [address(rng, sandbox), size(rng), rng.below(3), rng.next()],
        user_data,
    };
    if raw_method {
        return s;
    }
    let known = Method::ALL.iter().find(|m| **m as u16 == method);
    if let Some(m) = known {
        // Mostly well-formed, so the calls get past decoding into the objects: the right
        // capability, unused arguments zero.
        if rng.below(8) != 0 {
            s.args[args_used(*m)..].iter_mut().for_each(|w| *w = 0);
        }
        if let Some(i) = m.interface().and_then(|k| GRANTED_KINDS.iter().position(|g| *g == k)) {
            if rng.below(3) != 0 {
                s.cap = caps.granted[i];
            }
        }
    }
    match known {
        Some(Method::CapRelease) if caps.granted.contains(&s.cap) => {
            s.cap = caps.copies[rng.below(8) as usize]
        }
        // Pointers only into the sandbox or refused ones, and short: the console stays readable.
        Some(Method::ConsoleWrite) => {
            s.args[1] = if rng.below(4) == 0 { rng.next() } else { rng.below(3) }
        }
        Some(Method::TimerSleep) => {
            if *sleeps >= MAX_SLEEPS {
                s.method = Method::TimerNow as u16;
            } else {
                *sleeps += 1;
                s.args[0] = rng.below(200_000);
            }
        }
        // New threads start where they fault at once (refused, unmapped or a data page),
        // never in this program's code; and rarely.
        Some(Method::ProcessSpawnThread) => {
            if rng.below(64) != 0 {
                s.method = Method::ProcessInfo as u16;
            } else {
                s.args[0] = [0x1000, 0x0000_8000_0000_0000, 0xffff_ffff_8010_0200, sandbox]
                    [rng.below(4) as usize];
                s.args[1] = address(rng, sandbox);
                s.args[3] = rng.below(4);
            }
        }
        Some(Method::ProcessSetAffinity) => {
            s.args[0] = if rng.below(4) == 0 { rng.next() } else { rng.below(4) }
        }
        Some(m @ (Method::VmMap | Method::VmUnmap | Method::VmProtect)) => {
            if rng.below(8) != 0 {
                // Inside the sandbox (possibly running off its end into the gap after it).
                s.args[0] = sandbox + rng.below(SANDBOX_PAGES) * PAGE;
                s.args[1] = 1 + rng.below(8);
            } else {
                // Elsewhere, but never over this program's own image, stack or rings (low and
                // top of user space): unaligned, kernel, non-canonical or far-away addresses.
                s.args[0] = [
                    sandbox + 1 + rng.below(PAGE - 1),
                    0x0000_8000_0000_0000,
                    0xffff_ffff_8010_0000,
                    u64::MAX - 4095,
                    0x0000_4000_0000_0000 | (rng.next() & 0x0000_0fff_ffff_f000),
                ][rng.below(5) as usize];
                // Few pages to map, so a run maps megabytes, not all of memory.
                if *m == Method::VmMap {
                    s.args[1] = 1 + rng.below(4);
                }
            }
        }
        _ => {}
    }
    s
}

/// The kinds granted to the fuzzer, in the order of `Caps::granted`.
const GRANTED_KINDS: [ObjectKind; 4] =
    [ObjectKind::Console, ObjectKind::Timer, ObjectKind::Process, ObjectKind::VirtualMemory];

/// Leading argument words `method` reads (the ABI requires the rest to be zero).
fn args_used(method: Method) -> usize {
    match method {
        Method::ConsoleWrite | Method::VmUnmap => 2,
        Method::DeviceMemoryMap
        | Method::TimerSleep
        | Method::ProcessSetAffinity
        | Method::InterruptSetAffinity => 1,
        Method::VmMap | Method::VmProtect => 3,
        Method::ProcessSpawnThread => 4,
        _ => 0,
    }
}

/// A system call with a number that is neither `cap_enter` nor `exit`: must return
/// `BadMethod` and change nothing.
fn raw_syscall(number: u64, rdi: u64, rsi: u64) -> i64 {
    let ret: i64;
    // SAFETY: an unknown system call number only returns an error in rax; the instruction
    // clobbers rcx and r11.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") number as i64 => ret,
            in("rdi") rdi,
            in("rsi") rsi,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// Hostile system-call arguments between batches: `cap_enter` with `min_complete` above
/// `CQ_ENTRIES` (must consume nothing: `sq_head` read back) and unknown call numbers.
fn hostile_syscalls(rng: &mut Rng, ring_vaddr: u64) {
    // SAFETY: this thread's ring page; only the kernel-published `sq_head` is read.
    let header = unsafe { &*(ring_vaddr as *const keel_rt::abi::RingHeader) };
    if rng.below(8) == 0 {
        let before = header.sq_head.load(Ordering::Acquire);
        let r =
            keel_rt::cap_enter(CQ_ENTRIES as u64 + 1 + rng.below(u64::MAX - 100), rng.below(1000));
        BAD_ENTERS.fetch_add(1, Ordering::Relaxed);
        if header.sq_head.load(Ordering::Acquire) != before
            || r != keel_rt::abi::Status::BadArgument.as_i32() as i64
        {
            BAD_ENTER_CONSUMED.fetch_add(1, Ordering::Relaxed);
        }
    }
    if rng.below(16) == 0 {
        let number = match rng.below(3) {
            0 => 2 + rng.below(64),
            1 => u64::MAX - rng.below(4),
            _ => rng.next() | 2,
        };
        BAD_SYSCALLS.fetch_add(1, Ordering::Relaxed);
        if raw_syscall(number, rng.next(), rng.next())
            != keel_rt::abi::Status::BadMethod.as_i32() as i64
        {
            BAD_SYSCALL_UNEXPECTED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// Thread entry: rdi = ring page, rdx = worker index.
keel_rt::thread_entry!(fn worker_start => worker);

/// Completions seen by one worker (drained after each batch).
fn drain(ring: &mut Ring, sleeps: &mut u64) -> u64 {
    let mut n = 0;
    while let Some(c) = ring.next_completion() {
        n += 1;
        if c.status == 0 {
            OK.fetch_add(1, Ordering::Relaxed);
        } else {
            ERRORS.fetch_add(1, Ordering::Relaxed);
        }
        if c.user_data & (1 << 62) != 0 {
            *sleeps = sleeps.saturating_sub(1);
        }
    }
    COMPLETED.fetch_add(n, Ordering::Relaxed);
    n
}

extern "C" fn worker(ring_vaddr: u64, index: u64) -> ! {
    // SAFETY: the kernel passed this thread's own ring page in rdi.
    let mut ring = unsafe { Ring::for_thread(ring_vaddr) };
    let mut rng =
        Rng(SEED.load(Ordering::Relaxed) ^ (index + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let sandbox = SANDBOX_VADDR + index * SANDBOX_STRIDE;
    let granted = GRANTED_KINDS.map(|k| cap(k).0);
    let mut copies = [0u32; 8];
    for c in &mut copies {
        *c = ring.cap_copy(CapId(granted[0])).map_or(0, |id| id.0);
    }
    let caps = Caps { granted, copies };
    let quota = QUOTA.load(Ordering::Relaxed);
    let (mut sent, mut sleeps, mut seq) = (0u64, 0u64, 0u64);
    while sent < quota {
        let batch = (1 + rng.below(SQ_ENTRIES as u64)).min(quota - sent);
        for _ in 0..batch {
            seq += 1;
            let sleeping_before = sleeps;
            let mut sub = random_submission(&mut rng, &caps, sandbox, &mut sleeps, seq);
            if sleeps > sleeping_before {
                sub.user_data |= 1 << 62; // a deferred sleep: its completion frees the budget
            }
            if ring.submit(sub).is_err() {
                break;
            }
            sent += 1;
            if sub.method == Method::ProcessSpawnThread as u16 {
                SPAWNED.fetch_add(1, Ordering::Relaxed);
            }
        }
        hostile_syscalls(&mut rng, ring_vaddr);
        if ring.enter(0, 0).is_err() {
            ENTER_ERRORS.fetch_add(1, Ordering::Relaxed);
        }
        drain(&mut ring, &mut sleeps);
    }
    // Collect what is still outstanding (short sleeps), then leave.
    for _ in 0..100 {
        if ring.sq_space() == SQ_ENTRIES && sleeps == 0 {
            break;
        }
        let _ = ring.enter(1, 10_000_000);
        drain(&mut ring, &mut sleeps);
    }
    SUBMITTED.fetch_add(sent, Ordering::Relaxed);
    DONE.fetch_add(1, Ordering::Release);
    let _ = ring.call(cap(ObjectKind::Process), keel_rt::Method::ProcessExitThread, [0; 4]);
    loop {
        core::hint::spin_loop();
    }
}

fn main() -> u64 {
    let total = arg_u64("submissions", 100_000);
    let workers = arg_u64("threads", 4).clamp(1, MAX_WORKERS as u64);
    let cpus = arg_u64("cpus", 2).max(1);
    SEED.store(arg_u64("seed", 0x5eed_f00d), Ordering::Relaxed);
    QUOTA.store(total.div_ceil(workers), Ordering::Relaxed);
    let vm = cap(ObjectKind::VirtualMemory);
    let t0 = keel_rt::util::rdtsc();
    for i in 0..workers {
        let mut r = ring().expect("ring");
        let stack = STACKS_VADDR + i * (STACK_PAGES + 1) * PAGE;
        let sandbox = SANDBOX_VADDR + i * SANDBOX_STRIDE;
        let mapped = r.call(vm, Method::VmMap, [stack, STACK_PAGES, 1, 0]).is_ok()
            && r.call(vm, Method::VmMap, [sandbox, SANDBOX_PAGES, 1, 0]).is_ok();
        let spawned = mapped
            && r.call(
                cap(ObjectKind::Process),
                Method::ProcessSpawnThread,
                [worker_start as *const () as u64, stack + STACK_PAGES * PAGE, i, i % cpus],
            )
            .is_ok();
        if !spawned {
            drop(r);
            println!("worker {i} could not start");
            return 2;
        }
    }
    let timer = cap(ObjectKind::Timer);
    let mut waited_ms = 0u64;
    while DONE.load(Ordering::Acquire) < workers && waited_ms < 600_000 {
        let _ = ring().expect("ring").timer_sleep(timer, 10_000_000);
        waited_ms += 10;
    }
    let cycles = keel_rt::util::rdtsc() - t0;
    ev!("threads", workers);
    ev!("cpus", cpus);
    ev!("seed", format_args!("{:#x}", SEED.load(Ordering::Relaxed)));
    ev!("finished", if DONE.load(Ordering::Acquire) == workers { "yes" } else { "no" });
    ev!("submitted", SUBMITTED.load(Ordering::Relaxed));
    ev!("completed", COMPLETED.load(Ordering::Relaxed));
    ev!("ok", OK.load(Ordering::Relaxed));
    ev!("errors", ERRORS.load(Ordering::Relaxed));
    ev!("enter_errors", ENTER_ERRORS.load(Ordering::Relaxed));
    ev!("spawn_attempts", SPAWNED.load(Ordering::Relaxed));
    ev!("bad_enters", BAD_ENTERS.load(Ordering::Relaxed));
    ev!("bad_enter_consumed", BAD_ENTER_CONSUMED.load(Ordering::Relaxed));
    ev!("bad_syscalls", BAD_SYSCALLS.load(Ordering::Relaxed));
    ev!("bad_syscall_unexpected", BAD_SYSCALL_UNEXPECTED.load(Ordering::Relaxed));
    ev!("cycles", cycles);
    let _ = start_info();
    0
}
