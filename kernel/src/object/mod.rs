//! Kernel objects reached through capabilities, and their methods.
//!
//! The ring (`task/ring.rs`) only moves submissions and completions: it takes a submission
//! that `keel_abi::decode` accepted, sorts it into an [`Invocation`] with one exhaustive
//! table, looks the capability up and hands both to the object. Each object module owns its
//! methods as a typed enum and executes them, answering `Result<Reply, Status>`. Nothing
//! falls through a catch-all: a new ABI method does not compile until the table gives it an
//! object kind, and a new method of a kind does not compile until that object executes it.
//! A capability that names an object of another kind than the method's answers `WrongType`,
//! checked where each kind's methods are dispatched ([`Object::invoke`]).

pub mod cap;
pub mod console_object;
pub mod device_memory;
pub mod interrupt;
pub mod io_ports;
pub mod msix;
pub mod process_object;
pub mod timer;
pub mod virtual_memory;

use alloc::sync::Arc;

use keel_abi::{ObjectKind, Request, Status};

pub use device_memory::DeviceMemory;
pub use interrupt::InterruptObject;

use crate::task::{Process, Thread};

/// What a capability designates. Cloning a capability clones the reference, not the object.
#[derive(Clone)]
pub enum Object {
    /// Write text to the kernel console.
    Console,
    /// Read time, sleep.
    Timer,
    /// A device interrupt source (one holder at a time).
    Interrupt(Arc<InterruptObject>),
    /// A PCI BAR the holder may map uncached.
    DeviceMemory(Arc<DeviceMemory>),
    /// An inclusive range of I/O ports the holder may enable in its TSS bitmap.
    IoPorts { first: u16, last: u16 },
    /// The holder's own process (threads, affinity).
    Process,
    /// The holder's own address space (anonymous memory).
    VirtualMemory,
}

impl Object {
    /// The ABI's kind code.
    pub fn kind(&self) -> ObjectKind {
        match self {
            Object::Console => ObjectKind::Console,
            Object::Timer => ObjectKind::Timer,
            Object::Interrupt(_) => ObjectKind::Interrupt,
            Object::DeviceMemory(_) => ObjectKind::DeviceMemory,
            Object::IoPorts { .. } => ObjectKind::IoPorts,
            Object::Process => ObjectKind::Process,
            Object::VirtualMemory => ObjectKind::VirtualMemory,
        }
    }

    /// Executes `method` on this object. The method's kind decides which object it needs;
    /// a capability to any other kind answers `WrongType` and nothing runs.
    pub fn invoke(&self, caller: &Caller, method: ObjectMethod) -> Result<Reply, Status> {
        const WRONG: Status = Status::WrongType;
        match method {
            ObjectMethod::Console(m) => {
                let Object::Console = self else { return Err(WRONG) };
                console_object::invoke(caller, m)
            }
            ObjectMethod::Interrupt(m) => {
                let Object::Interrupt(irq) = self else { return Err(WRONG) };
                irq.invoke(caller, m)
            }
            ObjectMethod::DeviceMemory(m) => {
                let Object::DeviceMemory(region) = self else { return Err(WRONG) };
                region.invoke(caller, m)
            }
            ObjectMethod::IoPorts(m) => {
                let Object::IoPorts { first, last } = *self else { return Err(WRONG) };
                io_ports::invoke(caller, first, last, m)
            }
            ObjectMethod::Timer(m) => {
                let Object::Timer = self else { return Err(WRONG) };
                timer::invoke(caller, m)
            }
            ObjectMethod::Process(m) => {
                let Object::Process = self else { return Err(WRONG) };
                process_object::invoke(caller, m)
            }
            ObjectMethod::VirtualMemory(m) => {
                let Object::VirtualMemory = self else { return Err(WRONG) };
                virtual_memory::invoke(caller, m)
            }
        }
    }
}

/// Who invokes a method: the calling thread, and the submission's `user_data`, under which a
/// completion that comes later is posted.
pub struct Caller<'a> {
    pub thread: &'a Arc<Thread>,
    pub user_data: u64,
}

impl Caller<'_> {
    /// The calling thread's process (whose capability the method was invoked through).
    pub fn process(&self) -> &Arc<Process> {
        &self.thread.process
    }
}

/// What a method that succeeded answers (a failure is its `Status`, completed at once with
/// zero results).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Complete now with `Ok` and these result words.
    Now([u64; 2]),
    /// The completion is posted later (its CQ reservation stays in flight).
    Later,
    /// Complete now with `Ok`, then the calling thread leaves this CPU for its new home.
    NowThenMigrate([u64; 2]),
    /// The calling thread ends; its submission never completes.
    ExitThread,
}

/// A decoded submission, sorted by who executes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// `Nop` and the `Cap*` methods: they act on the capability id itself, whatever it names
    /// (`Nop` on nothing), so the ring does not look it up.
    Cap(cap::Method),
    /// A method of the object the capability names.
    Object(ObjectMethod),
}

/// A method of one object kind, with its arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectMethod {
    Console(console_object::Method),
    Interrupt(interrupt::Method),
    DeviceMemory(device_memory::Method),
    IoPorts(io_ports::Method),
    Timer(timer::Method),
    Process(process_object::Method),
    VirtualMemory(virtual_memory::Method),
}

impl From<Request> for Invocation {
    /// The one table from ABI methods to the objects that execute them; each row names the
    /// module of the kind in the method number's interface byte (`Method::interface`).
    fn from(request: Request) -> Invocation {
        use ObjectMethod as O;
        match request {
            Request::Nop => Invocation::Cap(cap::Method::Nop),
            Request::CapCopy => Invocation::Cap(cap::Method::Copy),
            Request::CapRelease => Invocation::Cap(cap::Method::Release),
            Request::CapIdentify => Invocation::Cap(cap::Method::Identify),
            Request::ConsoleWrite { ptr, len } => {
                Invocation::Object(O::Console(console_object::Method::Write { ptr, len }))
            }
            Request::InterruptWait => Invocation::Object(O::Interrupt(interrupt::Method::Wait)),
            Request::InterruptAcknowledge => {
                Invocation::Object(O::Interrupt(interrupt::Method::Acknowledge))
            }
            Request::InterruptInfo => Invocation::Object(O::Interrupt(interrupt::Method::Info)),
            Request::InterruptSetAffinity { cpu } => {
                Invocation::Object(O::Interrupt(interrupt::Method::SetAffinity { cpu }))
            }
            Request::DeviceMemoryMap { vaddr } => {
                Invocation::Object(O::DeviceMemory(device_memory::Method::Map { vaddr }))
            }
            Request::DeviceMemoryInfo => {
                Invocation::Object(O::DeviceMemory(device_memory::Method::Info))
            }
            Request::DeviceMemoryDmaMap { vaddr, pages, device_writes } => {
                Invocation::Object(O::DeviceMemory(device_memory::Method::DmaMap {
                    vaddr,
                    pages,
                    device_writes,
                }))
            }
            Request::DeviceMemoryDmaUnmap { iova, pages } => {
                Invocation::Object(O::DeviceMemory(device_memory::Method::DmaUnmap { iova, pages }))
            }
            Request::DeviceMemoryDmaFaults => {
                Invocation::Object(O::DeviceMemory(device_memory::Method::DmaFaults))
            }
            Request::IoPortsEnable => Invocation::Object(O::IoPorts(io_ports::Method::Enable)),
            Request::TimerNow => Invocation::Object(O::Timer(timer::Method::Now)),
            Request::TimerSleep { ns } => Invocation::Object(O::Timer(timer::Method::Sleep { ns })),
            Request::TimerTscHz => Invocation::Object(O::Timer(timer::Method::TscHz)),
            Request::ProcessSpawnThread { entry, stack_top, arg, cpu } => {
                Invocation::Object(O::Process(process_object::Method::SpawnThread {
                    entry,
                    stack_top,
                    arg,
                    cpu,
                }))
            }
            Request::ProcessSetAffinity { cpu } => {
                Invocation::Object(O::Process(process_object::Method::SetAffinity { cpu }))
            }
            Request::ProcessExitThread => {
                Invocation::Object(O::Process(process_object::Method::ExitThread))
            }
            Request::ProcessInfo => Invocation::Object(O::Process(process_object::Method::Info)),
            Request::VmMap { vaddr, pages, writable } => {
                Invocation::Object(O::VirtualMemory(virtual_memory::Method::Map {
                    vaddr,
                    pages,
                    writable,
                }))
            }
            Request::VmUnmap { vaddr, pages } => {
                Invocation::Object(O::VirtualMemory(virtual_memory::Method::Unmap { vaddr, pages }))
            }
            Request::VmProtect { vaddr, pages, writable } => {
                Invocation::Object(O::VirtualMemory(virtual_memory::Method::Protect {
                    vaddr,
                    pages,
                    writable,
                }))
            }
        }
    }
}
