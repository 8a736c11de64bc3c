//! The two system calls: `cap_enter(min_complete, timeout_ns)` and `exit(code)`.

use super::ring::Entered;
use fw::arch::x86_64::trap_entry::TrapFrame;

/// Dispatches on `rax`; the result goes back in `rax`.
pub fn handle(frame: &mut TrapFrame) {
    match frame.rax {
        keel_abi::SYS_CAP_ENTER => {
            let Some(thread) = super::sched::current_thread() else {
                frame.rax = keel_abi::Status::Denied.as_i32() as i64 as u64;
                return;
            };
            x86_64::instructions::interrupts::enable();
            let entered = super::ring::cap_enter(&thread, frame.rdi, frame.rsi);
            // Exiting never unwinds this frame: the reference goes first.
            drop(thread);
            // A slice the tick found used up while in the kernel ends before ring 3 resumes.
            super::sched::preempt_point();
            match entered {
                Entered::Return(r) => frame.rax = r as u64,
                Entered::ExitThread => super::process::exit_thread(),
            }
        }
        keel_abi::SYS_EXIT => super::process::exit_current(frame.rdi),
        _ => frame.rax = keel_abi::Status::BadMethod.as_i32() as i64 as u64,
    }
    super::process::leave_if_exiting();
}
