//! The `Process` object: the holder's own process. It starts threads, moves the calling
//! thread to another CPU, ends it, and reports the thread count.

use core::sync::atomic::Ordering;

use keel_abi::Status;

use super::{Caller, Reply};
use crate::task::{sched, Thread};
use fw::arch::x86_64::percpu;

/// The methods of a `Process` capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Starts a thread at `entry` with `stack_top`, `arg` in rdx, homed on CPU index `cpu`.
    SpawnThread { entry: u64, stack_top: u64, arg: u64, cpu: u64 },
    /// Makes CPU index `cpu` the calling thread's home; it moves there at once.
    SetAffinity { cpu: u64 },
    /// Ends the calling thread.
    ExitThread,
    /// Reports live threads and the calling thread's CPU.
    Info,
}

/// Executes a `Process` method.
pub fn invoke(caller: &Caller, method: Method) -> Result<Reply, Status> {
    let p = caller.process();
    match method {
        Method::SpawnThread { entry, stack_top, arg, cpu } => {
            let cpu = online_cpu(cpu)?;
            if p.is_exiting() {
                return Err(Status::Cancelled);
            }
            let ring = p.new_ring()?;
            let t = Thread::new_user(
                p.clone(),
                cpu,
                entry,
                stack_top,
                ring,
                keel_abi::START_INFO_VADDR,
                arg,
            );
            let tid = t.tid;
            p.add_thread(t.clone());
            sched::enqueue(t);
            Ok(Reply::Now([tid, 0]))
        }
        Method::SetAffinity { cpu } => {
            let cpu = online_cpu(cpu)?;
            caller.thread.home_cpu.store(cpu, Ordering::Release);
            Ok(Reply::NowThenMigrate([cpu as u64, 0]))
        }
        Method::ExitThread => Ok(Reply::ExitThread),
        Method::Info => Ok(Reply::Now([p.live_threads() as u64, percpu::current_index() as u64])),
    }
}

/// The CPU index `cpu` if it names an online CPU, `BadArgument` otherwise.
fn online_cpu(cpu: u64) -> Result<u32, Status> {
    let cpu = u32::try_from(cpu).map_err(|_| Status::BadArgument)?;
    match percpu::cpu(cpu) {
        Some(c) if c.online.load(Ordering::Acquire) => Ok(cpu),
        _ => Err(Status::BadArgument),
    }
}
