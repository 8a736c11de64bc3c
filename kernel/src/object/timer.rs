//! The `Timer` object: the monotonic clock, the TSC rate, and sleeping.

use keel_abi::Status;

use super::{Caller, Reply};
use crate::task::sched::{self, TimedKind};
use fw::arch::x86_64::cpu;

/// The methods of a `Timer` capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Reports nanoseconds since boot and the TSC.
    Now,
    /// Completes after at least `ns` nanoseconds (0: at the next tick).
    Sleep { ns: u64 },
    /// Reports the TSC frequency.
    TscHz,
}

/// Executes a `Timer` method.
pub fn invoke(caller: &Caller, method: Method) -> Result<Reply, Status> {
    match method {
        Method::Now => Ok(Reply::Now([fw::time::now_ns(), cpu::rdtsc()])),
        Method::TscHz => Ok(Reply::Now([fw::time::tsc_hz(), 0])),
        Method::Sleep { ns } => {
            // On this CPU's timed list: the tick that passes the deadline posts the completion.
            let deadline = fw::time::now_ns().saturating_add(ns);
            sched::add_timed(
                deadline,
                caller.thread.clone(),
                TimedKind::SleepDone { user_data: caller.user_data },
            );
            Ok(Reply::Later)
        }
    }
}
