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
