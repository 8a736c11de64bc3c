//! Method numbers and the object kinds they apply to.

use crate::Status;

/// Kind of kernel object a capability names; also reported by `CapIdentify` and `CapInfo`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// Serial console output.
    Console = 1,
    /// One interrupt vector routed to the holder.
    Interrupt = 2,
    /// A physical MMIO region (e.g. a PCI BAR) the holder may map.
    DeviceMemory = 3,
    /// A range of x86 I/O ports the holder may access directly.
    IoPorts = 4,
    /// Monotonic time and sleeping.
    Timer = 5,
    /// The holder's own process: start threads, set the calling thread's CPU, end it.
    Process = 6,
    /// The holder's own address space: map, unmap and protect anonymous memory.
    VirtualMemory = 7,
}

impl ObjectKind {
    /// Every kind, for enumeration in tests and tools.
    pub const ALL: [ObjectKind; 7] = [
        ObjectKind::Console,
        ObjectKind::Interrupt,
        ObjectKind::DeviceMemory,
        ObjectKind::IoPorts,
        ObjectKind::Timer,
        ObjectKind::Process,
        ObjectKind::VirtualMemory,
    ];

    /// Parses a raw kind (from `CapInfo::kind` or a `CapIdentify` result); `None` if unknown.
    pub const fn from_u32(raw: u32) -> Option<ObjectKind> {
        match raw {
            1 => Some(ObjectKind::Console),
            2 => Some(ObjectKind::Interrupt),
            3 => Some(ObjectKind::DeviceMemory),
            4 => Some(ObjectKind::IoPorts),
            5 => Some(ObjectKind::Timer),
            6 => Some(ObjectKind::Process),
            7 => Some(ObjectKind::VirtualMemory),
            _ => None,
        }
    }

    /// Stable lower-case name for logs.
    pub const fn name(self) -> &'static str {
        match self {
            ObjectKind::Console => "console",
            ObjectKind::Interrupt => "interrupt",
            ObjectKind::DeviceMemory => "device_memory",
            ObjectKind::IoPorts => "io_ports",
            ObjectKind::Timer => "timer",
            ObjectKind::Process => "process",
            ObjectKind::VirtualMemory => "virtual_memory",
        }
    }
}

impl TryFrom<u32> for ObjectKind {
    type Error = Status;
    fn try_from(raw: u32) -> Result<ObjectKind, Status> {
        ObjectKind::from_u32(raw).ok_or(Status::BadArgument)
    }
}

/// Operation requested by a submission: interface in the high byte, operation in the low byte.
/// The numeric values are ABI.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// Does nothing and completes `Ok`; the capability is ignored. Round-trip probe.
    Nop = 0x0000,
    /// Duplicates the capability `cap` into a new slot; `results[0]` = new id.
    CapCopy = 0x0001,
    /// Releases `cap`; pending deferred operations on it complete `Cancelled`.
    CapRelease = 0x0002,
    /// `results[0]` = [`ObjectKind`], `results[1]` = kind-specific word.
    CapIdentify = 0x0003,
    /// Writes `args[1]` (<= 4096) bytes at `args[0]` to the console (NUL bytes are
    /// dropped); `results[0]` = written.
    ConsoleWrite = 0x0101,
    /// Waits for the interrupt; `results[0]` = count since last wait, `results[1]` = TSC.
    InterruptWait = 0x0201,
    /// Re-enables (unmasks / EOIs) the interrupt line after the driver handled it.
    InterruptAcknowledge = 0x0202,
    /// `results[0]` = vector, `results[1]` = encoded [`crate::InterruptSource`].
    InterruptInfo = 0x0203,
    /// Moves the source, live, to a vector of CPU `args[0]` (the holder only); `results` =
    /// (new vector, CPU). No delivery is lost or duplicated across the move.
    InterruptSetAffinity = 0x0204,
    /// Maps the region at page-aligned `args[0]`; `results` = (vaddr, size).
    DeviceMemoryMap = 0x0301,
    /// `results[0]` = size, `results[1]` = PCI bdf.
    DeviceMemoryInfo = 0x0302,
    /// Makes `args[1]` pages of the caller's own memory at `args[0]` reachable by the
    /// device's DMA; the device may write them if `args[2]` = 1 (then they must be writable).
    /// `results` = (IOVA, pages): the address the device uses; the physical address is never
    /// shown. The pages are pinned: `VmUnmap`/`VmProtect` of them answer `Busy` until
    /// `DeviceMemoryDmaUnmap`. `Unsupported` without DMA remapping.
    DeviceMemoryDmaMap = 0x0303,
    /// Removes the mapping made at IOVA `args[0]` of `args[1]` pages; completes after the
    /// unit's IOTLB invalidation did (no translation of it is left in the IOMMU).
    DeviceMemoryDmaUnmap = 0x0304,
    /// The DMA faults the IOMMU recorded for the device while this process (or another
    /// holder alongside it) held it: `results[0]` = count, `results[1]` = the last one,
    /// encoded by [`crate::DmaFaultReport`] (0 when none). `Denied` without DMA remapping.
    DeviceMemoryDmaFaults = 0x0305,
    /// Grants direct `in`/`out` access; `results` = (first port, count).
    IoPortsEnable = 0x0401,
    /// `results[0]` = ns since boot, `results[1]` = TSC.
    TimerNow = 0x0501,
    /// Completes after at least `args[0]` ns.
    TimerSleep = 0x0502,
    /// `results[0]` = TSC frequency in Hz.
    TimerTscHz = 0x0503,
    /// Starts a thread: `args` = (entry, stack top, argument, CPU index); it enters ring 3
    /// with rdi = its own ring page, rsi = start info, rdx = argument. `results[0]` = tid.
    ProcessSpawnThread = 0x0601,
    /// Moves the calling thread to CPU `args[0]` (it runs there from its next scheduling).
    ProcessSetAffinity = 0x0602,
    /// Ends the calling thread (never completes); the process ends with its last thread.
    ProcessExitThread = 0x0603,
    /// `results[0]` = live threads, `results[1]` = the calling thread's CPU.
    ProcessInfo = 0x0604,
    /// Maps `args[1]` zeroed pages at page-aligned `args[0]`, writable if `args[2]` = 1
    /// (never executable). `Denied` if the range touches a kernel page (ring, start info).
    VmMap = 0x0701,
    /// Unmaps `args[1]` pages at `args[0]`; completes after every CPU that may cache them
    /// has flushed its TLB, and only then are the frames freed. `Denied` (nothing unmapped)
    /// if the range touches a kernel page.
    VmUnmap = 0x0702,
    /// Sets `args[1]` pages at `args[0]` writable (`args[2]` = 1) or read-only (0), with
    /// the same TLB shootdown as `VmUnmap`. `Denied` (nothing changed) if the range touches
    /// a kernel page, or asks for write access to an executable page (W^X).
    VmProtect = 0x0703,
}

impl Method {
    /// Every method, for enumeration in tests and tools.
    pub const ALL: [Method; 25] = [
        Method::Nop,
        Method::CapCopy,
        Method::CapRelease,
        Method::CapIdentify,
        Method::ConsoleWrite,
        Method::InterruptWait,
        Method::InterruptAcknowledge,
        Method::InterruptInfo,
        Method::InterruptSetAffinity,
        Method::DeviceMemoryMap,
        Method::DeviceMemoryInfo,
        Method::DeviceMemoryDmaMap,
        Method::DeviceMemoryDmaUnmap,
        Method::DeviceMemoryDmaFaults,
        Method::IoPortsEnable,
        Method::TimerNow,
        Method::TimerSleep,
        Method::TimerTscHz,
        Method::ProcessSpawnThread,
        Method::ProcessSetAffinity,
        Method::ProcessExitThread,
        Method::ProcessInfo,
        Method::VmMap,
        Method::VmUnmap,
        Method::VmProtect,
    ];

    /// Parses a raw method number; `None` if unknown.
    pub const fn from_u16(raw: u16) -> Option<Method> {
        Some(match raw {
            0x0000 => Method::Nop,
            0x0001 => Method::CapCopy,
            0x0002 => Method::CapRelease,
            0x0003 => Method::CapIdentify,
            0x0101 => Method::ConsoleWrite,
            0x0201 => Method::InterruptWait,
            0x0202 => Method::InterruptAcknowledge,
            0x0203 => Method::InterruptInfo,
            0x0204 => Method::InterruptSetAffinity,
            0x0301 => Method::DeviceMemoryMap,
            0x0302 => Method::DeviceMemoryInfo,
            0x0303 => Method::DeviceMemoryDmaMap,
            0x0304 => Method::DeviceMemoryDmaUnmap,
            0x0305 => Method::DeviceMemoryDmaFaults,
            0x0401 => Method::IoPortsEnable,
            0x0501 => Method::TimerNow,
            0x0502 => Method::TimerSleep,
            0x0503 => Method::TimerTscHz,
            0x0601 => Method::ProcessSpawnThread,
            0x0602 => Method::ProcessSetAffinity,
            0x0603 => Method::ProcessExitThread,
            0x0604 => Method::ProcessInfo,
            0x0701 => Method::VmMap,
            0x0702 => Method::VmUnmap,
            0x0703 => Method::VmProtect,
            _ => return None,
        })
    }

    /// The raw number written into `Submission::method`.
    pub const fn as_u16(self) -> u16 {
        self as u16
    }

    /// The object kind the capability must name for this method; `None` for `Nop` and the
    /// generic `Cap*` methods, which work on any capability.
    pub const fn interface(self) -> Option<ObjectKind> {
        // The interface byte of a method number is its object kind's code (0 = generic).
        ObjectKind::from_u32(((self as u16) >> 8) as u32)
    }

    /// True for methods whose completion may be posted by a later `cap_enter` (they block).
    pub const fn is_deferred(self) -> bool {
        matches!(self, Method::InterruptWait | Method::TimerSleep | Method::ProcessExitThread)
    }

    /// Stable lower-case dotted name for logs, e.g. `console.write`.
    pub const fn name(self) -> &'static str {
        match self {
            Method::Nop => "nop",
            Method::CapCopy => "cap.copy",
            Method::CapRelease => "cap.release",
            Method::CapIdentify => "cap.identify",
            Method::ConsoleWrite => "console.write",
            Method::InterruptWait => "interrupt.wait",
            Method::InterruptAcknowledge => "interrupt.acknowledge",
            Method::InterruptInfo => "interrupt.info",
            Method::InterruptSetAffinity => "interrupt.set_affinity",
            Method::DeviceMemoryMap => "device_memory.map",
            Method::DeviceMemoryInfo => "device_memory.info",
            Method::DeviceMemoryDmaMap => "device_memory.dma_map",
            Method::DeviceMemoryDmaUnmap => "device_memory.dma_unmap",
            Method::DeviceMemoryDmaFaults => "device_memory.dma_faults",
            Method::IoPortsEnable => "io_ports.enable",
            Method::TimerNow => "timer.now",
            Method::TimerSleep => "timer.sleep",
            Method::TimerTscHz => "timer.tsc_hz",
            Method::ProcessSpawnThread => "process.spawn_thread",
            Method::ProcessSetAffinity => "process.set_affinity",
            Method::ProcessExitThread => "process.exit_thread",
            Method::ProcessInfo => "process.info",
            Method::VmMap => "virtual_memory.map",
            Method::VmUnmap => "virtual_memory.unmap",
            Method::VmProtect => "virtual_memory.protect",
        }
    }
}

impl TryFrom<u16> for Method {
    type Error = Status;
    fn try_from(raw: u16) -> Result<Method, Status> {
        Method::from_u16(raw).ok_or(Status::BadMethod)
    }
}

impl From<Method> for u16 {
    fn from(m: Method) -> u16 {
        m as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_u16_parses_consistently() {
        let mut known = 0;
        for raw in 0..=u16::MAX {
            match Method::try_from(raw) {
                Ok(m) => {
                    known += 1;
                    assert_eq!(m.as_u16(), raw);
                    assert!(Method::ALL.contains(&m));
                }
                Err(e) => assert_eq!(e, Status::BadMethod),
            }
        }
        assert_eq!(known, Method::ALL.len());
    }

    #[test]
    fn interfaces() {
        use ObjectKind::*;
        let expect = [
            (Method::Nop, None),
            (Method::CapCopy, None),
            (Method::CapRelease, None),
            (Method::CapIdentify, None),
            (Method::ConsoleWrite, Some(Console)),
            (Method::InterruptWait, Some(Interrupt)),
            (Method::InterruptAcknowledge, Some(Interrupt)),
            (Method::InterruptInfo, Some(Interrupt)),
            (Method::InterruptSetAffinity, Some(Interrupt)),
            (Method::DeviceMemoryMap, Some(DeviceMemory)),
            (Method::DeviceMemoryInfo, Some(DeviceMemory)),
            (Method::DeviceMemoryDmaMap, Some(DeviceMemory)),
            (Method::DeviceMemoryDmaUnmap, Some(DeviceMemory)),
            (Method::DeviceMemoryDmaFaults, Some(DeviceMemory)),
            (Method::IoPortsEnable, Some(IoPorts)),
            (Method::TimerNow, Some(Timer)),
            (Method::TimerSleep, Some(Timer)),
            (Method::TimerTscHz, Some(Timer)),
            (Method::ProcessSpawnThread, Some(Process)),
            (Method::ProcessSetAffinity, Some(Process)),
            (Method::ProcessExitThread, Some(Process)),
            (Method::ProcessInfo, Some(Process)),
            (Method::VmMap, Some(VirtualMemory)),
            (Method::VmUnmap, Some(VirtualMemory)),
            (Method::VmProtect, Some(VirtualMemory)),
        ];
        assert_eq!(expect.len(), Method::ALL.len());
        for (m, k) in expect {
            assert_eq!(m.interface(), k, "{m:?}");
            assert!(m.name().starts_with(k.map_or("", |k| k.name())));
        }
        assert!(Method::TimerSleep.is_deferred() && Method::InterruptWait.is_deferred());
        assert!(!Method::TimerNow.is_deferred());
    }

    #[test]
    fn kinds() {
        for raw in 0..64u32 {
            match ObjectKind::try_from(raw) {
                Ok(k) => assert_eq!(k as u32, raw),
                Err(e) => {
                    assert_eq!(e, Status::BadArgument);
                    assert!(!(1..=7).contains(&raw));
                }
            }
        }
        assert_eq!(ObjectKind::from_u32(u32::MAX), None);
        assert_eq!(ObjectKind::ALL.len(), 7);
        let names: std::collections::BTreeSet<_> =
            ObjectKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), 7, "names are distinct");
        assert!(names
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
        assert_eq!(ObjectKind::Console.name(), "console");
    }
}
