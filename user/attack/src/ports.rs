//! I/O port revocation from ring 3 (the program holds `IoPorts { port }`, `port=` names it):
//!
//! * `ports-release`: the main thread (CPU 0) enables the port; a second thread on CPU 1
//!   uses it, then spins in ring 3 (no system call, so nothing switches it out). The main
//!   thread releases the capability; the spinning thread's next `in` must raise #GP (the
//!   kernel reports vector 13 and ends only that thread). Its progress markers say how far
//!   it got: `after_release_in=faulted` when the `in` never completed.
//! * `ports-exit`: both threads use the port, then leave with `ProcessExitThread` at the
//!   same moment on two CPUs, so the process's last two threads exit at once. The kernel
//!   reads every CPU's I/O bitmap back afterwards (`io.cpuN.open_ports`).

use core::sync::atomic::{AtomicU64, Ordering};

use keel_rt::abi::{Method, ObjectKind};
use keel_rt::util::{arg_u64, cap, inb};
use keel_rt::{ev, ring};

use crate::attacks::{map_stacks, sleep_ms, spawn_at, thread_start, wait_alone, JOB_PORTS};

/// The second thread's progress.
static PHASE: AtomicU64 = AtomicU64::new(0);
/// Set by the main thread: go on (use the port again, or exit).
static GO: AtomicU64 = AtomicU64::new(0);

const PHASE_USED: u64 = 1;
const PHASE_ABOUT_TO_USE: u64 = 2;
const PHASE_USED_AFTER: u64 = 3;

const JOB_USE_AFTER_GO: u64 = 1 << 32;
const JOB_EXIT_ON_GO: u64 = 2 << 32;

fn port() -> u16 {
    arg_u64("port", 0x510) as u16
}

/// The second thread (`attacks::thread_body` dispatches here; it exits after).
pub(crate) fn thread_job(arg: u64) {
    let port = arg as u16;
    let _ = inb(port);
    PHASE.store(PHASE_USED, Ordering::Release);
    while GO.load(Ordering::Acquire) == 0 {
        core::hint::spin_loop();
    }
    if arg & JOB_USE_AFTER_GO != 0 {
        PHASE.store(PHASE_ABOUT_TO_USE, Ordering::Release);
        let _ = inb(port);
        PHASE.store(PHASE_USED_AFTER, Ordering::Release);
    }
}

fn enable() -> bool {
    let mut r = ring().expect("ring");
    r.call(cap(ObjectKind::IoPorts), Method::IoPortsEnable, [0; 4]).is_ok()
}

/// Starts the second thread on CPU 1 and waits until it has used the port there.
fn start_second(job: u64) -> bool {
    map_stacks(1);
    let arg = JOB_PORTS | job | u64::from(port());
    if spawn_at(thread_start as *const () as u64, 0, 1, arg).is_err() {
        return false;
    }
    for _ in 0..10_000 {
        if PHASE.load(Ordering::Acquire) >= PHASE_USED {
            return true;
        }
        sleep_ms(1);
    }
    false
}

/// See the module comment.
pub(crate) fn release() -> u64 {
    if !enable() {
        return 2;
    }
    let _ = inb(port());
    if !start_second(JOB_USE_AFTER_GO) {
        return 3;
    }
    // The second thread spins in ring 3 on CPU 1 with the port open there.
    let released = ring().expect("ring").cap_release(cap(ObjectKind::IoPorts)).is_ok();
    GO.store(1, Ordering::Release);
    let ended = wait_alone();
    let after = match PHASE.load(Ordering::Acquire) {
        PHASE_ABOUT_TO_USE => "faulted",
        PHASE_USED_AFTER => "succeeded",
        _ => "not_run",
    };
    ev!("used_before_release", "yes");
    ev!("released", if released { "yes" } else { "no" });
    ev!("after_release_in", after);
    ev!("second_thread_ended", if ended { "yes" } else { "no" });
    0
}

/// See the module comment.
pub(crate) fn exit_together() -> u64 {
    if !enable() {
        return 2;
    }
    let _ = inb(port());
    if !start_second(JOB_EXIT_ON_GO) {
        return 3;
    }
    ev!("used_on_two_cpus", "yes");
    let mut r = ring().expect("ring");
    GO.store(1, Ordering::Release);
    let _ = r.call(cap(ObjectKind::Process), Method::ProcessExitThread, [0; 4]);
    loop {
        core::hint::spin_loop();
    }
}
