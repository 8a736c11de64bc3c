//! Validation of submissions: the kernel's first, pure line of defence against user input.

use crate::{CapId, Method, Status, Submission, PAGE_SIZE, USER_SPACE_END};

/// Largest `ConsoleWrite` length, so one write is bounded kernel work.
pub const CONSOLE_WRITE_MAX: u64 = 4096;

/// A submission whose flags, method and arguments have been checked; the capability
/// (`Submission::cap`) is *not* checked here, that needs the process's capability table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// No operation.
    Nop,
    /// Duplicate the submission's capability.
    CapCopy,
    /// Release the submission's capability.
    CapRelease,
    /// Report kind and kind-specific word of the capability.
    CapIdentify,
    /// Write `len` bytes at user address `ptr` (range already checked against user space;
    /// the kernel must still check it is mapped and readable).
    ConsoleWrite {
        /// Start of the bytes in user memory.
        ptr: u64,
        /// Number of bytes, at most [`CONSOLE_WRITE_MAX`].
        len: u64,
    },
    /// Wait for the next (coalesced) interrupt.
    InterruptWait,
    /// Re-enable the interrupt line.
    InterruptAcknowledge,
    /// Report vector and source.
    InterruptInfo,
    /// Move the live source to a vector of `cpu`.
    InterruptSetAffinity {
        /// CPU index.
        cpu: u64,
    },
    /// Map the device region at `vaddr` (page aligned, non-zero, below user space end; the
    /// kernel must still check `vaddr + size` with [`user_range`]).
    DeviceMemoryMap {
        /// Requested user virtual address of the mapping.
        vaddr: u64,
    },
    /// Report size and PCI bdf.
    DeviceMemoryInfo,
    /// Make `pages` pages at `vaddr` (page aligned, in user space) reachable by the device,
    /// writable by it if `device_writes`.
    DeviceMemoryDmaMap {
        /// The caller's memory.
        vaddr: u64,
        /// Page count, 1..=[`MAX_DMA_PAGES`].
        pages: u64,
        /// The device may write the pages.
        device_writes: bool,
    },
    /// Remove the DMA mapping at `iova` (page aligned, non-zero) of `pages` pages.
    DeviceMemoryDmaUnmap {
        /// The IOVA `DeviceMemoryDmaMap` returned.
        iova: u64,
        /// Its page count.
        pages: u64,
    },
    /// Report the DMA faults recorded for the device while it is held.
    DeviceMemoryDmaFaults,
    /// Enable direct port access.
    IoPortsEnable,
    /// Read the clock.
    TimerNow,
    /// Complete after at least `ns` nanoseconds (0 completes at the next opportunity).
    TimerSleep {
        /// Minimum sleep duration.
        ns: u64,
    },
    /// Report the TSC frequency.
    TimerTscHz,
    /// Start a thread at `entry` with `stack_top` (16-byte aligned), `arg`, on `cpu`.
    ProcessSpawnThread {
        /// First instruction of the thread.
        entry: u64,
        /// Initial stack pointer.
        stack_top: u64,
        /// Passed in rdx.
        arg: u64,
        /// CPU index to run on.
        cpu: u64,
    },
    /// Move the calling thread to `cpu`.
    ProcessSetAffinity {
        /// CPU index.
        cpu: u64,
    },
    /// End the calling thread.
    ProcessExitThread,
    /// Thread count and current CPU.
    ProcessInfo,
    /// Map `pages` zeroed pages at `vaddr`.
    VmMap {
        /// Page-aligned start.
        vaddr: u64,
        /// Number of pages (1..=MAX_VM_PAGES).
        pages: u64,
        /// Writable?
        writable: bool,
    },
    /// Unmap `pages` pages at `vaddr`.
    VmUnmap {
        /// Page-aligned start.
        vaddr: u64,
        /// Number of pages (1..=MAX_VM_PAGES).
        pages: u64,
    },
    /// Change `pages` pages at `vaddr` to writable or read-only.
    VmProtect {
        /// Page-aligned start.
        vaddr: u64,
        /// Number of pages (1..=MAX_VM_PAGES).
        pages: u64,
        /// Writable?
        writable: bool,
    },
}

/// Largest page count of one `VmMap`/`VmUnmap`/`VmProtect` (bounded kernel work per entry).
pub const MAX_VM_PAGES: u64 = 1024;
/// Largest page count of one `DeviceMemoryDmaMap`/`DmaUnmap` (bounded kernel work).
pub const MAX_DMA_PAGES: u64 = 64;

impl Request {
    /// The method this request invokes.
    pub const fn method(&self) -> Method {
        match self {
            Request::Nop => Method::Nop,
            Request::CapCopy => Method::CapCopy,
            Request::CapRelease => Method::CapRelease,
            Request::CapIdentify => Method::CapIdentify,
            Request::ConsoleWrite { .. } => Method::ConsoleWrite,
            Request::InterruptWait => Method::InterruptWait,
            Request::InterruptAcknowledge => Method::InterruptAcknowledge,
            Request::InterruptInfo => Method::InterruptInfo,
            Request::InterruptSetAffinity { .. } => Method::InterruptSetAffinity,
            Request::DeviceMemoryMap { .. } => Method::DeviceMemoryMap,
            Request::DeviceMemoryInfo => Method::DeviceMemoryInfo,
            Request::DeviceMemoryDmaMap { .. } => Method::DeviceMemoryDmaMap,
            Request::DeviceMemoryDmaUnmap { .. } => Method::DeviceMemoryDmaUnmap,
            Request::DeviceMemoryDmaFaults => Method::DeviceMemoryDmaFaults,
            Request::IoPortsEnable => Method::IoPortsEnable,
            Request::TimerNow => Method::TimerNow,
            Request::TimerSleep { .. } => Method::TimerSleep,
            Request::TimerTscHz => Method::TimerTscHz,
            Request::ProcessSpawnThread { .. } => Method::ProcessSpawnThread,
            Request::ProcessSetAffinity { .. } => Method::ProcessSetAffinity,
            Request::ProcessExitThread => Method::ProcessExitThread,
            Request::ProcessInfo => Method::ProcessInfo,
            Request::VmMap { .. } => Method::VmMap,
            Request::VmUnmap { .. } => Method::VmUnmap,
            Request::VmProtect { .. } => Method::VmProtect,
        }
    }

    /// The argument words this request is encoded with (unused ones 0).
    pub const fn args(&self) -> [u64; 4] {
        match *self {
            Request::ConsoleWrite { ptr, len } => [ptr, len, 0, 0],
            Request::DeviceMemoryMap { vaddr } => [vaddr, 0, 0, 0],
            Request::DeviceMemoryDmaMap { vaddr, pages, device_writes } => {
                [vaddr, pages, device_writes as u64, 0]
            }
            Request::DeviceMemoryDmaUnmap { iova, pages } => [iova, pages, 0, 0],
            Request::TimerSleep { ns } => [ns, 0, 0, 0],
            Request::ProcessSpawnThread { entry, stack_top, arg, cpu } => {
                [entry, stack_top, arg, cpu]
            }
            Request::ProcessSetAffinity { cpu } | Request::InterruptSetAffinity { cpu } => {
                [cpu, 0, 0, 0]
            }
            Request::VmMap { vaddr, pages, writable } => [vaddr, pages, writable as u64, 0],
            Request::VmUnmap { vaddr, pages } => [vaddr, pages, 0, 0],
            Request::VmProtect { vaddr, pages, writable } => [vaddr, pages, writable as u64, 0],
            _ => [0; 4],
        }
    }

    /// Builds the submission for this request, so user code never hand-packs arguments.
    /// `decode(&r.encode(cap, d)) == Ok(r)` for every request that passed `decode`.
    pub const fn encode(&self, cap: CapId, user_data: u64) -> Submission {
        Submission {
            cap: cap.0,
            method: self.method() as u16,
            flags: 0,
            args: self.args(),
            user_data,
        }
    }
}

/// Checks that `[ptr, ptr + len)` lies in user space: no overflow, ends at or below
/// [`USER_SPACE_END`], and a non-empty range does not start at address 0. `BadAddress`
/// otherwise. Mapping/permission checks are the kernel's job on top of this.
pub const fn user_range(ptr: u64, len: u64) -> Result<(), Status> {
    let end = match ptr.checked_add(len) {
        Some(end) => end,
        None => return Err(Status::BadAddress),
    };
    if end > USER_SPACE_END || (len != 0 && ptr == 0) {
        return Err(Status::BadAddress);
    }
    Ok(())
}

/// Validates a submission (copied out of the ring once, so it cannot change under us).
///
/// Checks, in this order: `flags == 0` (`BadFlags`), the method is known (`BadMethod`), the
/// method's argument rules (`BadArgument` for values out of range or non-zero unused
/// arguments, `BadAddress` for bad user addresses). Never panics.
pub fn decode(sub: &Submission) -> Result<Request, Status> {
    if sub.flags != 0 {
        return Err(Status::BadFlags);
    }
    let method = Method::try_from(sub.method)?;
    let a = sub.args;
    // `used` = how many leading argument words the method reads; the rest must be 0.
    let used = match method {
        Method::ConsoleWrite => 2,
        Method::DeviceMemoryMap
        | Method::TimerSleep
        | Method::ProcessSetAffinity
        | Method::InterruptSetAffinity => 1,
        Method::VmUnmap | Method::DeviceMemoryDmaUnmap => 2,
        Method::VmMap | Method::VmProtect | Method::DeviceMemoryDmaMap => 3,
        Method::ProcessSpawnThread => 4,
        _ => 0,
    };
    if a[used..].iter().any(|&w| w != 0) {
        return Err(Status::BadArgument);
    }
    Ok(match method {
        Method::Nop => Request::Nop,
        Method::CapCopy => Request::CapCopy,
        Method::CapRelease => Request::CapRelease,
        Method::CapIdentify => Request::CapIdentify,
        Method::ConsoleWrite => {
            let (ptr, len) = (a[0], a[1]);
            if len > CONSOLE_WRITE_MAX {
                return Err(Status::BadArgument);
            }
            user_range(ptr, len)?;
            Request::ConsoleWrite { ptr, len }
        }
        Method::InterruptWait => Request::InterruptWait,
        Method::InterruptAcknowledge => Request::InterruptAcknowledge,
        Method::InterruptInfo => Request::InterruptInfo,
        Method::InterruptSetAffinity => Request::InterruptSetAffinity { cpu: a[0] },
        Method::DeviceMemoryMap => {
            let vaddr = a[0];
            if vaddr == 0 || !vaddr.is_multiple_of(PAGE_SIZE) || vaddr >= USER_SPACE_END {
                return Err(Status::BadAddress);
            }
            Request::DeviceMemoryMap { vaddr }
        }
        Method::DeviceMemoryInfo => Request::DeviceMemoryInfo,
        Method::DeviceMemoryDmaMap => {
            let (vaddr, pages) = (a[0], a[1]);
            if pages == 0 || pages > MAX_DMA_PAGES {
                return Err(Status::BadArgument);
            }
            if vaddr == 0 || !vaddr.is_multiple_of(PAGE_SIZE) {
                return Err(Status::BadAddress);
            }
            user_range(vaddr, pages * PAGE_SIZE)?;
            let device_writes = match a[2] {
                0 => false,
                1 => true,
                _ => return Err(Status::BadArgument),
            };
            Request::DeviceMemoryDmaMap { vaddr, pages, device_writes }
        }
        Method::DeviceMemoryDmaUnmap => {
            let (iova, pages) = (a[0], a[1]);
            if pages == 0 || pages > MAX_DMA_PAGES {
                return Err(Status::BadArgument);
            }
            if iova == 0
                || !iova.is_multiple_of(PAGE_SIZE)
                || iova.checked_add(pages * PAGE_SIZE).is_none()
            {
                return Err(Status::BadAddress);
            }
            Request::DeviceMemoryDmaUnmap { iova, pages }
        }
        Method::DeviceMemoryDmaFaults => Request::DeviceMemoryDmaFaults,
        Method::IoPortsEnable => Request::IoPortsEnable,
        Method::TimerNow => Request::TimerNow,
        Method::TimerSleep => Request::TimerSleep { ns: a[0] },
        Method::TimerTscHz => Request::TimerTscHz,
        Method::ProcessSpawnThread => {
            let (entry, stack_top) = (a[0], a[1]);
            // The stack pointer starts at `stack_top`, so it must be a canonical address
            // too: `USER_SPACE_END` itself is not (the return to ring 3 would refuse it).
            if entry == 0
                || entry >= USER_SPACE_END
                || stack_top == 0
                || stack_top >= USER_SPACE_END
                || stack_top % 16 != 0
            {
                return Err(Status::BadAddress);
            }
            Request::ProcessSpawnThread { entry, stack_top, arg: a[2], cpu: a[3] }
        }
        Method::ProcessSetAffinity => Request::ProcessSetAffinity { cpu: a[0] },
        Method::ProcessExitThread => Request::ProcessExitThread,
        Method::ProcessInfo => Request::ProcessInfo,
        Method::VmMap | Method::VmUnmap | Method::VmProtect => {
            let (vaddr, pages) = (a[0], a[1]);
            if pages == 0 || pages > MAX_VM_PAGES {
                return Err(Status::BadArgument);
            }
            if vaddr == 0 || !vaddr.is_multiple_of(PAGE_SIZE) {
                return Err(Status::BadAddress);
            }
            user_range(vaddr, pages * PAGE_SIZE)?;
            let writable = match (method, a[2]) {
                (Method::VmUnmap, _) => false,
                (_, 0) => false,
                (_, 1) => true,
                _ => return Err(Status::BadArgument),
            };
            match method {
                Method::VmMap => Request::VmMap { vaddr, pages, writable },
                Method::VmUnmap => Request::VmUnmap { vaddr, pages },
                _ => Request::VmProtect { vaddr, pages, writable },
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(method: Method, args: [u64; 4]) -> Submission {
        Submission { cap: CapId::new(3, 1).0, method: method as u16, flags: 0, args, user_data: 77 }
    }

    #[test]
    fn spawn_stack_top_must_be_canonical() {
        let d = |stack_top| {
            decode(
                &Request::ProcessSpawnThread { entry: 0x20_0000, stack_top, arg: 0, cpu: 0 }
                    .encode(CapId::new(1, 1), 0),
            )
        };
        assert!(d(USER_SPACE_END - 16).is_ok());
        assert_eq!(d(USER_SPACE_END), Err(Status::BadAddress));
        assert_eq!(d(USER_SPACE_END + 16), Err(Status::BadAddress));
    }

    #[test]
    fn argumentless_methods() {
        let cases = [
            (Method::Nop, Request::Nop),
            (Method::CapCopy, Request::CapCopy),
            (Method::CapRelease, Request::CapRelease),
            (Method::CapIdentify, Request::CapIdentify),
            (Method::InterruptWait, Request::InterruptWait),
            (Method::InterruptAcknowledge, Request::InterruptAcknowledge),
            (Method::InterruptInfo, Request::InterruptInfo),
            (Method::DeviceMemoryInfo, Request::DeviceMemoryInfo),
            (Method::DeviceMemoryDmaFaults, Request::DeviceMemoryDmaFaults),
            (Method::IoPortsEnable, Request::IoPortsEnable),
            (Method::TimerNow, Request::TimerNow),
            (Method::TimerTscHz, Request::TimerTscHz),
        ];
        for (m, r) in cases {
            assert_eq!(decode(&sub(m, [0; 4])), Ok(r));
            assert_eq!(r.method(), m);
            for i in 0..4 {
                let mut args = [0; 4];
                args[i] = 1;
                assert_eq!(decode(&sub(m, args)), Err(Status::BadArgument), "{m:?} arg {i}");
                args[i] = u64::MAX;
                assert_eq!(decode(&sub(m, args)), Err(Status::BadArgument));
            }
        }
    }

    #[test]
    fn dma_map_and_unmap_arguments() {
        let map = |v, p, w| decode(&sub(Method::DeviceMemoryDmaMap, [v, p, w, 0]));
        assert_eq!(
            map(0x4000_0000, 2, 1),
            Ok(Request::DeviceMemoryDmaMap { vaddr: 0x4000_0000, pages: 2, device_writes: true })
        );
        assert_eq!(map(0x4000_0000, 0, 0), Err(Status::BadArgument));
        assert_eq!(map(0x4000_0000, MAX_DMA_PAGES + 1, 0), Err(Status::BadArgument));
        assert!(map(0x4000_0000, MAX_DMA_PAGES, 0).is_ok());
        assert_eq!(map(0x4000_0000, 1, 2), Err(Status::BadArgument));
        assert_eq!(map(0, 1, 0), Err(Status::BadAddress));
        assert_eq!(map(0x4000_0800, 1, 0), Err(Status::BadAddress));
        assert_eq!(map(USER_SPACE_END - 4096, 2, 0), Err(Status::BadAddress));
        assert_eq!(map(0xFFFF_FFFF_FFFF_F000, 1, 0), Err(Status::BadAddress));
        assert_eq!(
            decode(&sub(Method::DeviceMemoryDmaMap, [0x4000_0000, 1, 0, 1])),
            Err(Status::BadArgument)
        );
        let unmap = |i, p| decode(&sub(Method::DeviceMemoryDmaUnmap, [i, p, 0, 0]));
        assert_eq!(
            unmap(0x100_1000, 1),
            Ok(Request::DeviceMemoryDmaUnmap { iova: 0x100_1000, pages: 1 })
        );
        assert_eq!(unmap(0, 1), Err(Status::BadAddress));
        assert_eq!(unmap(0x100_1001, 1), Err(Status::BadAddress));
        assert_eq!(unmap(0xFFFF_FFFF_FFFF_F000, 1), Err(Status::BadAddress));
        assert_eq!(unmap(0x100_1000, 0), Err(Status::BadArgument));
        assert_eq!(unmap(0x100_1000, MAX_DMA_PAGES + 1), Err(Status::BadArgument));
        for r in [
            Request::DeviceMemoryDmaMap { vaddr: 0x1000, pages: 3, device_writes: false },
            Request::DeviceMemoryDmaUnmap { iova: 0x2000, pages: 3 },
        ] {
            assert_eq!(decode(&r.encode(CapId::new(1, 1), 0)), Ok(r));
        }
    }

    #[test]
    fn nop_ignores_cap() {
        for cap in [0, 1, u32::MAX] {
            let s = Submission { cap, ..Default::default() };
            assert_eq!(decode(&s), Ok(Request::Nop));
        }
    }

    #[test]
    fn flags_checked_first() {
        for m in Method::ALL {
            for flags in [1u16, 0x8000, u16::MAX] {
                let mut s = sub(m, [u64::MAX; 4]);
                s.flags = flags;
                assert_eq!(decode(&s), Err(Status::BadFlags));
            }
        }
        let s = Submission { method: 0x0fff, flags: 1, ..Default::default() };
        assert_eq!(decode(&s), Err(Status::BadFlags));
    }

    #[test]
    fn unknown_methods() {
        for raw in [0x0004u16, 0x0100, 0x0102, 0x0200, 0x0205, 0x0306, 0x0402, 0x0504, 0xffff] {
            let s = Submission { method: raw, ..Default::default() };
            assert_eq!(decode(&s), Err(Status::BadMethod), "{raw:#x}");
        }
    }

    #[test]
    fn interrupt_set_affinity_reads_one_word() {
        let d = |a| decode(&sub(Method::InterruptSetAffinity, a));
        assert_eq!(d([1, 0, 0, 0]), Ok(Request::InterruptSetAffinity { cpu: 1 }));
        assert_eq!(d([u64::MAX, 0, 0, 0]), Ok(Request::InterruptSetAffinity { cpu: u64::MAX }));
        assert_eq!(d([1, 1, 0, 0]), Err(Status::BadArgument));
    }

    #[test]
    fn console_write() {
        let ok = |ptr, len| decode(&sub(Method::ConsoleWrite, [ptr, len, 0, 0]));
        assert_eq!(ok(0x1000, 5), Ok(Request::ConsoleWrite { ptr: 0x1000, len: 5 }));
        assert_eq!(ok(0x1000, 4096), Ok(Request::ConsoleWrite { ptr: 0x1000, len: 4096 }));
        assert_eq!(ok(0x1000, 0), Ok(Request::ConsoleWrite { ptr: 0x1000, len: 0 }));
        assert_eq!(ok(0, 0), Ok(Request::ConsoleWrite { ptr: 0, len: 0 }));
        assert_eq!(ok(0x1000, 4097), Err(Status::BadArgument));
        assert_eq!(ok(0x1000, u64::MAX), Err(Status::BadArgument));
        assert_eq!(ok(0, 1), Err(Status::BadAddress));
        // Last bytes of user space are fine; one past is not.
        assert!(ok(USER_SPACE_END - 4096, 4096).is_ok());
        assert!(ok(USER_SPACE_END - 1, 1).is_ok());
        assert_eq!(ok(USER_SPACE_END - 1, 2), Err(Status::BadAddress));
        assert_eq!(ok(USER_SPACE_END, 1), Err(Status::BadAddress));
        assert_eq!(ok(USER_SPACE_END + 1, 0), Err(Status::BadAddress));
        // Kernel half and overflow.
        assert_eq!(ok(0xffff_8000_0000_0000, 16), Err(Status::BadAddress));
        assert_eq!(ok(u64::MAX, 1), Err(Status::BadAddress));
        assert_eq!(ok(u64::MAX - 2, 4096), Err(Status::BadAddress));
        // Unused args.
        assert_eq!(decode(&sub(Method::ConsoleWrite, [0x1000, 1, 1, 0])), Err(Status::BadArgument));
        assert_eq!(decode(&sub(Method::ConsoleWrite, [0x1000, 1, 0, 9])), Err(Status::BadArgument));
    }

    #[test]
    fn device_memory_map() {
        let d = |v| decode(&sub(Method::DeviceMemoryMap, [v, 0, 0, 0]));
        assert_eq!(d(0x4000_0000), Ok(Request::DeviceMemoryMap { vaddr: 0x4000_0000 }));
        assert_eq!(
            d(USER_SPACE_END - 4096),
            Ok(Request::DeviceMemoryMap { vaddr: USER_SPACE_END - 4096 })
        );
        assert_eq!(d(0), Err(Status::BadAddress));
        assert_eq!(d(0x4000_0001), Err(Status::BadAddress));
        assert_eq!(d(0x4000_0800), Err(Status::BadAddress));
        assert_eq!(d(USER_SPACE_END), Err(Status::BadAddress));
        assert_eq!(d(!0xfff), Err(Status::BadAddress));
        assert_eq!(
            decode(&sub(Method::DeviceMemoryMap, [0x4000_0000, 4096, 0, 0])),
            Err(Status::BadArgument)
        );
    }

    #[test]
    fn timer_sleep() {
        for ns in [0, 1, 1_000_000, u64::MAX] {
            assert_eq!(
                decode(&sub(Method::TimerSleep, [ns, 0, 0, 0])),
                Ok(Request::TimerSleep { ns })
            );
        }
        assert_eq!(decode(&sub(Method::TimerSleep, [1, 0, 0, 1])), Err(Status::BadArgument));
    }

    #[test]
    fn user_ranges() {
        assert_eq!(user_range(0, 0), Ok(()));
        assert_eq!(user_range(USER_SPACE_END, 0), Ok(()));
        assert_eq!(user_range(USER_SPACE_END + 1, 0), Err(Status::BadAddress));
        assert_eq!(user_range(0x1000, USER_SPACE_END - 0x1000), Ok(()));
        assert_eq!(user_range(0x1000, USER_SPACE_END), Err(Status::BadAddress));
        assert_eq!(user_range(1, u64::MAX), Err(Status::BadAddress));
    }

    #[test]
    fn encode_round_trip_every_method() {
        let reqs = [
            Request::Nop,
            Request::CapCopy,
            Request::CapRelease,
            Request::CapIdentify,
            Request::ConsoleWrite { ptr: 0x40_0000, len: 12 },
            Request::InterruptWait,
            Request::InterruptAcknowledge,
            Request::InterruptInfo,
            Request::InterruptSetAffinity { cpu: 1 },
            Request::DeviceMemoryMap { vaddr: 0x1_0000_0000 },
            Request::DeviceMemoryInfo,
            Request::DeviceMemoryDmaMap { vaddr: 0x4000_0000, pages: 2, device_writes: true },
            Request::DeviceMemoryDmaUnmap { iova: 0x100_1000, pages: 2 },
            Request::DeviceMemoryDmaFaults,
            Request::IoPortsEnable,
            Request::TimerNow,
            Request::TimerSleep { ns: 5_000 },
            Request::TimerTscHz,
            Request::ProcessSpawnThread { entry: 0x20_0000, stack_top: 0x30_0000, arg: 7, cpu: 1 },
            Request::ProcessSetAffinity { cpu: 3 },
            Request::ProcessExitThread,
            Request::ProcessInfo,
            Request::VmMap { vaddr: 0x4000_0000, pages: 4, writable: true },
            Request::VmUnmap { vaddr: 0x4000_0000, pages: 4 },
            Request::VmProtect { vaddr: 0x4000_0000, pages: 4, writable: false },
        ];
        assert_eq!(reqs.len(), Method::ALL.len());
        for r in reqs {
            let s = r.encode(CapId::new(9, 2), 0xdead);
            assert_eq!((s.cap, s.user_data, s.flags), (CapId::new(9, 2).0, 0xdead, 0));
            assert_eq!(decode(&s), Ok(r));
        }
    }

    use keel_testkit::XorShift;

    /// Random word biased towards edge values, which is where bugs live.
    fn word(rng: &mut XorShift) -> u64 {
        let edges = [
            0,
            1,
            4095,
            4096,
            4097,
            USER_SPACE_END - 1,
            USER_SPACE_END,
            USER_SPACE_END - 4096,
            u64::MAX,
            u64::MAX - 4095,
            1 << 63,
        ];
        match rng.next() % 4 {
            0 => edges[rng.below(edges.len())],
            1 => rng.next() & 0xffff,
            2 => rng.next() & !0xfff,
            _ => rng.next(),
        }
    }

    #[test]
    fn fuzz_never_panics_and_round_trips() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut accepted = 0u32;
        for _ in 0..200_000 {
            let method = if rng.next().is_multiple_of(8) {
                rng.next() as u16
            } else {
                Method::ALL[(rng.next() % Method::ALL.len() as u64) as usize] as u16
            };
            let mut args = [0u64; 4];
            for a in &mut args {
                if !rng.next().is_multiple_of(3) {
                    *a = word(&mut rng);
                }
            }
            let s = Submission {
                cap: rng.next() as u32,
                method,
                flags: if rng.next().is_multiple_of(16) { rng.next() as u16 } else { 0 },
                args,
                user_data: rng.next(),
            };
            match decode(&s) {
                Ok(r) => {
                    accepted += 1;
                    // Anything accepted is exactly reproducible from the typed request.
                    assert_eq!(r.encode(CapId(s.cap), s.user_data), s);
                    if let Request::ConsoleWrite { ptr, len } = r {
                        assert!(len <= CONSOLE_WRITE_MAX && ptr + len <= USER_SPACE_END);
                    }
                    if let Request::DeviceMemoryMap { vaddr } = r {
                        assert!(vaddr % PAGE_SIZE == 0 && vaddr < USER_SPACE_END && vaddr != 0);
                    }
                }
                Err(e) => assert!(matches!(
                    e,
                    Status::BadFlags | Status::BadMethod | Status::BadArgument | Status::BadAddress
                )),
            }
        }
        assert!(accepted > 1000, "fuzz loop should also exercise the accept path");
    }
}
