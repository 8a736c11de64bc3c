//! Attacks on the kernel's control flow and accounting, chosen by `mode=`:
//!
//! * `spawn rounds=R`: R times, start threads until the kernel says `NoMemory` (the process
//!   maximum), check that one more is refused, then let all of them end. The kernel must give
//!   back every frame and every heap byte (its own report, after the process is gone).
//! * `exit-live`: start the maximum of threads — spinning in ring 3, blocked in `cap_enter`
//!   forever, or with a long sleep pending — and exit the process under them. The kernel must
//!   end them all and give everything back.
//! * `return`: a thread enters the kernel from the last two bytes of user space, so the
//!   return address is the first non-canonical one (`0x0000_8000_0000_0000`). The kernel's
//!   return path must refuse it and end the thread (real CPUs would fault in ring 0); the
//!   process goes on; the same for a `syscall` made with a non-canonical stack pointer.
//!   Spawning a thread at a non-canonical entry must fail with `BadAddress`.
//! * `jump`: threads jump straight to the kernel's `syscall` entry with a chosen RCX (a
//!   non-canonical one, then one just past a real `syscall` instruction). Each must die of
//!   the page fault; the kernel must not emulate a system call for them.
//! * `enter`: `cap_enter(65, 0)` with queued submissions must fail with `BadArgument` and
//!   consume nothing.
//! * `bounds`: every path that takes a user address, at the edges of user space (see
//!   `bounds.rs`).
//! * `irqwait`: a thread waiting on an `Interrupt` ends; the next wait by another thread must
//!   be accepted (not `Busy`).
//! * `ports-release`, `ports-exit`: released I/O ports are closed everywhere (`ports.rs`).

use core::sync::atomic::{AtomicU64, Ordering};

use keel_rt::abi::{Method, ObjectKind, RingHeader, Status, Submission, CQ_ENTRIES, RING_VADDR};
use keel_rt::util::{arg_u64, cap};
use keel_rt::{ev, println, ring, start_info, Ring};

pub(crate) const PAGE: u64 = 4096;
const STACKS_VADDR: u64 = 0x0000_6000_0000;
const STACK_PAGES: u64 = 2;
/// Threads a process may have at once (the kernel's limit, main thread included).
const MAX_THREADS: u64 = 64;
/// The kernel pins its `syscall` entry here (`kernel/linker.ld`); the kernel reports the
/// real address too (`user.syscall_entry`) and the proof compares the two.
pub(crate) const KERNEL_SYSCALL_ENTRY: u64 = 0xffff_ffff_8010_0200;
/// First address above the lower canonical half.
pub(crate) const NON_CANONICAL: u64 = 0x0000_8000_0000_0000;

const JOB_EXIT_AFTER_RELEASE: u64 = 1 << 56;
const JOB_IRQ_WAIT: u64 = 3 << 56;
const JOB_SPIN: u64 = 4 << 56;
const JOB_BLOCK: u64 = 5 << 56;
const JOB_SLEEP_PENDING: u64 = 6 << 56;
/// I/O port jobs (`ports.rs`): the low bits say which.
pub(crate) const JOB_PORTS: u64 = 7 << 56;

static RELEASE: AtomicU64 = AtomicU64::new(0);
pub(crate) static STARTED: AtomicU64 = AtomicU64::new(0);
/// Ring page of the thread that jumps into the kernel (for its "resumed" path).
static JUMPER_RING: AtomicU64 = AtomicU64::new(0);
/// Times a jumping thread came back to user code (only if the kernel emulated its jump).
pub(crate) static RESUMED: AtomicU64 = AtomicU64::new(0);
static IRQ_WAIT_STATUS: AtomicU64 = AtomicU64::new(u64::MAX);

/// Where `top.ld` places the `.keel_top` page (the last page of user space).
const TOP_PAGE: u64 = NON_CANONICAL - PAGE;

keel_rt::thread_entry!(pub(crate) fn thread_start => thread_body);

/// Enters the kernel through the last instruction of the top page: the return address is
/// the first non-canonical one. rax = `cap_enter`, rdi = rsi = 0 (returns at once).
#[unsafe(naked)]
extern "C" fn top_page_thread() -> ! {
    core::arch::naked_asm!(
        "xor eax, eax",
        "xor edi, edi",
        "xor esi, esi",
        "mov r8, {insn}",
        "jmp r8",
        insn = const TOP_PAGE + PAGE - 2,
    )
}

/// Enters the kernel with a non-canonical stack pointer (RIP is fine): the return must be
/// refused just the same.
#[unsafe(naked)]
extern "C" fn bad_rsp_thread() -> ! {
    core::arch::naked_asm!(
        "mov rsp, {nc}",
        "xor eax, eax",
        "xor edi, edi",
        "xor esi, esi",
        "syscall",
        "ud2",
        nc = const NON_CANONICAL,
    )
}

/// Jumps to the kernel's `syscall` entry with RCX = rdx (the thread argument), rax =
/// `cap_enter`. A real `syscall` precedes `jump_gadget_after`, so RCX may point just past one.
#[unsafe(naked)]
pub(crate) extern "C" fn jump_thread() -> ! {
    core::arch::naked_asm!(
        "mov [rip + {ring}], rdi",
        "mov rcx, rdx",
        "xor eax, eax",
        "xor edi, edi",
        "xor esi, esi",
        "mov r8, {entry}",
        "jmp r8",
        "syscall",
        ".global jump_gadget_after",
        "jump_gadget_after:",
        "call {resumed}",
        "ud2",
        ring = sym JUMPER_RING,
        entry = const KERNEL_SYSCALL_ENTRY,
        resumed = sym jump_resumed,
    )
}

extern "C" {
    fn jump_gadget_after();
}

/// Only reached when the kernel "completed" a jump as if it were a system call.
extern "C" fn jump_resumed() -> ! {
    RESUMED.fetch_add(1, Ordering::Relaxed);
    // SAFETY: this thread's ring page, saved before the jump.
    let mut ring = unsafe { Ring::for_thread(JUMPER_RING.load(Ordering::Relaxed)) };
    let _ = ring.call(cap(ObjectKind::Process), Method::ProcessExitThread, [0; 4]);
    loop {
        core::hint::spin_loop();
    }
}

extern "C" fn thread_body(ring_vaddr: u64, arg: u64) -> ! {
    // SAFETY: the kernel passed this thread's own ring page in rdi.
    let mut ring = unsafe { Ring::for_thread(ring_vaddr) };
    STARTED.fetch_add(1, Ordering::Release);
    match arg & (0xFF << 56) {
        JOB_EXIT_AFTER_RELEASE => {
            let round = arg & 0xFFFF_FFFF;
            while RELEASE.load(Ordering::Acquire) <= round {
                let _ = ring.timer_sleep(cap(ObjectKind::Timer), 1_000_000);
            }
        }
        JOB_SPIN => loop {
            core::hint::spin_loop();
        },
        JOB_BLOCK => loop {
            // Nothing will ever complete: blocked until the process ends.
            let _ = ring.enter(1, keel_rt::abi::TIMEOUT_INFINITE);
        },
        JOB_SLEEP_PENDING => {
            let sleep = Submission {
                cap: cap(ObjectKind::Timer).0,
                method: Method::TimerSleep as u16,
                flags: 0,
                args: [u64::MAX, 0, 0, 0],
                user_data: 9,
            };
            let _ = ring.submit(sleep);
            loop {
                let _ = ring.enter(1, keel_rt::abi::TIMEOUT_INFINITE);
            }
        }
        JOB_IRQ_WAIT => {
            let irq = cap(ObjectKind::Interrupt);
            let wait = Submission {
                cap: irq.0,
                method: Method::InterruptWait as u16,
                flags: 0,
                args: [0; 4],
                user_data: 7,
            };
            let _ = ring.submit(wait);
            let _ = ring.enter(0, 0);
            // A completion now would be Busy or an interrupt; none means the wait is pending.
            let status = ring.next_completion().map_or(0, |c| c.status as i64 as u64);
            IRQ_WAIT_STATUS.store(status, Ordering::Release);
        }
        JOB_PORTS => crate::ports::thread_job(arg & !(0xFF << 56)),
        _ => {}
    }
    let _ = ring.call(cap(ObjectKind::Process), Method::ProcessExitThread, [0; 4]);
    loop {
        core::hint::spin_loop();
    }
}

pub(crate) fn stack_top(slot: u64) -> u64 {
    STACKS_VADDR + slot * (STACK_PAGES + 1) * PAGE + STACK_PAGES * PAGE
}

pub(crate) fn map_stacks(count: u64) {
    let mut r = ring().expect("ring");
    for slot in 0..count {
        let base = stack_top(slot) - STACK_PAGES * PAGE;
        keel_rt::util::check(
            "map a stack",
            r.call(cap(ObjectKind::VirtualMemory), Method::VmMap, [base, STACK_PAGES, 1, 0]),
        );
    }
}

pub(crate) fn spawn_at(entry: u64, slot: u64, cpu: u64, arg: u64) -> Result<u64, Status> {
    let mut r = ring().expect("ring");
    r.call(cap(ObjectKind::Process), Method::ProcessSpawnThread, [entry, stack_top(slot), arg, cpu])
        .map(|c| c.results[0])
}

pub(crate) fn live_threads() -> u64 {
    ring()
        .expect("ring")
        .call(cap(ObjectKind::Process), Method::ProcessInfo, [0; 4])
        .map_or(0, |c| c.results[0])
}

pub(crate) fn sleep_ms(ms: u64) {
    let _ = ring().expect("ring").timer_sleep(cap(ObjectKind::Timer), ms * 1_000_000);
}

/// Waits (up to ~10 s) until only the main thread is left.
pub(crate) fn wait_alone() -> bool {
    for _ in 0..10_000 {
        if live_threads() == 1 {
            return true;
        }
        sleep_ms(1);
    }
    false
}

pub(crate) fn cpus() -> u64 {
    arg_u64("cpus", 2).max(1)
}

/// Spawn-max/exit rounds; see the module comment.
fn spawn_rounds() -> u64 {
    let rounds = arg_u64("rounds", 3);
    let extra = MAX_THREADS - 1;
    map_stacks(extra);
    let (mut spawned, mut refused_at_max, mut retries, mut failures) = (0u64, 0u64, 0u64, 0u64);
    for round in 0..rounds {
        let mut slot = 0;
        while slot < extra {
            match spawn_at(
                thread_start as *const () as u64,
                slot,
                slot % cpus(),
                JOB_EXIT_AFTER_RELEASE | round,
            ) {
                Ok(_) => {
                    spawned += 1;
                    slot += 1;
                }
                // The previous round's threads may still be on their way out.
                Err(Status::NoMemory) if retries < 10_000 => {
                    retries += 1;
                    sleep_ms(1);
                }
                Err(s) => {
                    println!("round {round}: spawn {slot} failed: {}", s.name());
                    failures += 1;
                    break;
                }
            }
        }
        // The process is at its maximum now: one more must be refused.
        if live_threads() == MAX_THREADS
            && spawn_at(thread_start as *const () as u64, 0, 0, JOB_EXIT_AFTER_RELEASE | round)
                == Err(Status::NoMemory)
        {
            refused_at_max += 1;
        }
        RELEASE.store(round + 1, Ordering::Release);
        if !wait_alone() {
            failures += 1;
        }
    }
    ev!("rounds", rounds);
    ev!("spawned", spawned);
    ev!("refused_at_max", refused_at_max);
    ev!("spawn_retries", retries);
    ev!("failures", failures);
    failures
}

/// Exit with the maximum of threads alive; see the module comment.
fn exit_live() -> u64 {
    let extra = MAX_THREADS - 1;
    map_stacks(extra);
    let jobs = [JOB_SPIN, JOB_BLOCK, JOB_SLEEP_PENDING];
    let mut spawned = 0;
    for slot in 0..extra {
        if spawn_at(thread_start as *const () as u64, slot, slot % cpus(), jobs[slot as usize % 3])
            .is_ok()
        {
            spawned += 1;
        }
    }
    // Let them all get going (spinning, blocked, sleeping).
    while STARTED.load(Ordering::Acquire) < spawned {
        sleep_ms(1);
    }
    sleep_ms(20);
    ev!("live_threads_at_exit", live_threads());
    ev!("spawned", spawned);
    0
}

/// Non-canonical return and spawn attempts; see the module comment.
fn return_attacks() -> u64 {
    map_stacks(2);
    // SAFETY: only the address of the linker-placed page is taken.
    // The page's last two bytes: `syscall` (0F 05) or `int 0x80` (CD 80).
    // SAFETY: `top.ld` maps the page (read + execute) in this image.
    let insn = unsafe { core::ptr::read_volatile((TOP_PAGE + PAGE - 2) as *const [u8; 2]) };
    ev!("top_insn", format_args!("{:02x}{:02x}", insn[0], insn[1]));
    let bad_entry = spawn_at(NON_CANONICAL, 0, 0, 0);
    let kernel_entry = spawn_at(KERNEL_SYSCALL_ENTRY, 0, 0, 0);
    let bad_stack = ring().expect("ring").call(
        cap(ObjectKind::Process),
        Method::ProcessSpawnThread,
        [thread_start as *const () as u64, NON_CANONICAL + PAGE, 0, 0],
    );
    ev!("spawn_noncanonical_entry", bad_entry.err().map_or("ok", |s| s.name()));
    ev!("spawn_kernel_entry", kernel_entry.err().map_or("ok", |s| s.name()));
    ev!("spawn_noncanonical_stack", bad_stack.err().map_or("ok", |s| s.name()));
    let attempts = arg_u64("attempts", 2);
    let mut ended = 0;
    for i in 0..attempts {
        if spawn_at(top_page_thread as *const () as u64, 1, i % cpus(), 0).is_ok() && wait_alone() {
            ended += 1;
        }
    }
    let rsp_ended = spawn_at(bad_rsp_thread as *const () as u64, 1, 0, 0).is_ok() && wait_alone();
    ev!("return_attempts", attempts);
    ev!("return_threads_ended", ended);
    ev!("bad_rsp_thread_ended", if rsp_ended { "yes" } else { "no" });
    ev!("survived", "yes");
    0
}

/// Jumps into the kernel entry; see the module comment.
fn jump_attacks() -> u64 {
    map_stacks(1);
    let targets = [NON_CANONICAL, jump_gadget_after as *const () as u64];
    let mut ended = 0;
    for (i, rcx) in targets.iter().enumerate() {
        if spawn_at(jump_thread as *const () as u64, 0, i as u64 % cpus(), *rcx).is_ok()
            && wait_alone()
        {
            ended += 1;
        }
    }
    ev!("jump_target", format_args!("{KERNEL_SYSCALL_ENTRY:#x}"));
    ev!("jump_attempts", targets.len());
    ev!("jump_threads_ended", ended);
    ev!("jump_resumed", RESUMED.load(Ordering::Relaxed));
    0
}

/// `cap_enter` with a bad `min_complete` and queued work; see the module comment.
fn enter_attack() -> u64 {
    // SAFETY: this process's ring page; only the kernel-published `sq_head` is read.
    let header = unsafe { &*(RING_VADDR as *const RingHeader) };
    let queued = 3u64;
    let mut r = ring().expect("ring");
    for i in 0..queued {
        let _ = r.submit(Submission {
            cap: 0,
            method: Method::Nop as u16,
            flags: 0,
            args: [0; 4],
            user_data: 100 + i,
        });
    }
    let head_before = header.sq_head.load(Ordering::Acquire);
    let bad = keel_rt::cap_enter(CQ_ENTRIES as u64 + 1, 0);
    let head_after_bad = header.sq_head.load(Ordering::Acquire);
    let huge = keel_rt::cap_enter(u64::MAX, 0);
    let head_after_huge = header.sq_head.load(Ordering::Acquire);
    let good = r.enter(queued as u32, 1_000_000_000);
    let mut completed = 0;
    while let Some(c) = r.next_completion() {
        if c.status == 0 && (100..100 + queued).contains(&c.user_data) {
            completed += 1;
        }
    }
    drop(r); // printing needs the ring
    let bad_argument = Status::BadArgument.as_i32() as i64;
    ev!("enter_65", if bad == bad_argument { "bad_argument" } else { "other" });
    ev!("enter_max", if huge == bad_argument { "bad_argument" } else { "other" });
    ev!(
        "consumed_by_bad_enter",
        head_after_bad.wrapping_sub(head_before) + head_after_huge.wrapping_sub(head_after_bad)
    );
    ev!("completed_after", completed);
    ev!("good_enter", if good.is_ok() { "ok" } else { "failed" });
    0
}

/// An `Interrupt` waiter that ends must not block the next waiter.
fn irq_wait_attack() -> u64 {
    map_stacks(1);
    let irq = cap(ObjectKind::Interrupt);
    if spawn_at(thread_start as *const () as u64, 0, 1 % cpus(), JOB_IRQ_WAIT).is_err()
        || !wait_alone()
    {
        return 3;
    }
    let first = IRQ_WAIT_STATUS.load(Ordering::Acquire);
    let mut r = ring().expect("ring");
    let wait = Submission {
        cap: irq.0,
        method: Method::InterruptWait as u16,
        flags: 0,
        args: [0; 4],
        user_data: 8,
    };
    let _ = r.submit(wait);
    let _ = r.enter(1, 20_000_000);
    let second = r.next_completion().map(|c| c.status());
    // Releasing the capability cancels a pending wait.
    let released = r.cap_release(irq).is_ok();
    let _ = r.enter(1, 1_000_000_000);
    let cancelled =
        r.next_completion().is_some_and(|c| c.user_data == 8 && c.status() == Status::Cancelled);
    drop(r); // printing needs the ring
    ev!("first_wait", if first == 0 { "pending" } else { "completed" });
    ev!(
        "second_wait",
        match second {
            None => "pending",
            Some(Status::Busy) => "busy",
            Some(Status::Ok) => "ok",
            Some(_) => "other",
        }
    );
    ev!("released", if released { "yes" } else { "no" });
    ev!("second_wait_cancelled", if cancelled || second.is_some() { "yes" } else { "no" });
    0
}

pub fn main() -> u64 {
    match start_info().arg("mode").unwrap_or("") {
        "spawn" => spawn_rounds(),
        "exit-live" => exit_live(),
        "return" => return_attacks(),
        "jump" => jump_attacks(),
        "enter" => enter_attack(),
        "irqwait" => irq_wait_attack(),
        "ports-release" => crate::ports::release(),
        "ports-exit" => crate::ports::exit_together(),
        "bounds" => crate::bounds::bounds_attacks(),
        other => {
            println!("unknown mode {other:?}");
            1
        }
    }
}
