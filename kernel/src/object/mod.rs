//! Kernel objects reached through capabilities.

pub mod interrupt;

use alloc::sync::Arc;

use keel_abi::ObjectKind;

pub use interrupt::InterruptObject;

/// A PCI BAR granted to a driver.
#[derive(Debug)]
pub struct DeviceMemory {
    pub phys: u64,
    pub size: u64,
    pub bdf: u16,
}

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
}
