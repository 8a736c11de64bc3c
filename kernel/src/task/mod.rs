//! Processes and threads. A process owns an address space, a capability table and one shared
//! ring page; its thread(s) run in ring 3 and enter the kernel only through `syscall`
//! (`cap_enter`, `exit`) or interrupts. Threads are pinned to a home CPU chosen at creation.

pub mod loader;
pub mod process;
pub mod ring;
pub mod sched;
pub mod syscall;
pub mod thread;

pub use process::Process;
pub use thread::Thread;
