//! Processes and threads. A process owns an address space, a capability table and its
//! threads; each thread has its own ring page, runs in ring 3 and enters the kernel only
//! through `syscall` (`cap_enter`, `exit`) or interrupts. A thread runs on its home CPU,
//! chosen at creation; only the thread itself moves it (`ProcessSetAffinity`).

pub mod loader;
pub mod process;
pub mod ring;
pub mod sched;
pub mod space;
pub mod syscall;
pub mod thread;

pub use process::Process;
pub use thread::Thread;

use fw::arch::x86_64::percpu::IrqGuard;
use fw::arch::x86_64::trap_entry::TrapFrame;

/// This layer's handlers for the framework's trap entry (bound at compile time: see
/// `fw::trap_entry!` in `main.rs`).
pub enum TrapHandlers {}

impl fw::upcall::TrapHandlers for TrapHandlers {
    #[inline(always)]
    fn syscall(frame: &mut TrapFrame) {
        syscall::handle(frame)
    }
    fn user_fault(frame: &mut TrapFrame) {
        process::user_fault(frame)
    }
    fn refuse_user_return(frame: &mut TrapFrame) -> ! {
        process::refuse_user_return(frame)
    }
    #[inline(always)]
    fn leave_if_exiting() {
        process::leave_if_exiting()
    }
    #[inline(always)]
    fn tick(from_user: bool, cpu: &mut IrqGuard) {
        sched::tick(from_user, cpu)
    }
}

/// Hands the framework this layer's other handlers (first thing at boot: before interrupts,
/// before the APs).
pub fn register_upcalls() {
    fw::upcall::register(fw::upcall::Upcalls {
        rearm_timer: sched::rearm_timer,
        wake_ipi: space::on_wake_ipi,
        schedule_once: sched::schedule_once,
        idle_halt: sched::idle_halt,
        prepare_cpu: sched::prepare_cpu,
        current_space,
    });
}

/// The PML4 of the current thread's process, if a thread runs on this CPU.
fn current_space() -> Option<u64> {
    sched::current_thread().map(|thread| thread.process.pml4())
}
