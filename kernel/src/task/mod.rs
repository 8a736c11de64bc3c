//! Processes and threads. A process owns an address space, a capability table and its
//! threads; each thread has its own ring page, runs in ring 3 and enters the kernel only
//! through `syscall` (`cap_enter`, `exit`) or interrupts. A thread runs on its home CPU,
//! chosen at creation; only the thread itself moves it (`ProcessSetAffinity`).

pub mod loader;
pub mod process;
pub mod ring;
pub mod sched;
pub mod syscall;
pub mod thread;

pub use process::Process;
pub use thread::Thread;

/// Hands the framework this layer's handlers for the events it raises (first thing at boot:
/// before interrupts, before the APs).
pub fn register_upcalls() {
    fw::upcall::register(fw::upcall::Upcalls {
        syscall: syscall::handle,
        switch_current_to_int80: process::switch_current_to_int80,
        user_fault: process::user_fault,
        refuse_user_return: process::refuse_user_return,
        leave_if_exiting: process::leave_if_exiting,
        tick: sched::tick,
        rearm_timer: sched::rearm_timer,
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
