//! Processes: an address space, a capability table, the kernel pages shown to the program
//! (start info, one ring per thread), granted I/O port ranges and its threads. Exit —
//! voluntary or by a fault — releases every capability (an `Interrupt` source is masked and its
//! waiter cancelled) before the thread leaves its CPU; the address space is destroyed
//! afterwards by the CPU's scheduler context, once no CPU can have it loaded, and only then
//! are the kernel pages freed.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use fw::sync::IrqSafeMutex;
use keel_abi::{CapId, Status};
use keel_cap::CapTable;

use super::sched;
use super::thread::{RingState, Thread};
use crate::object::Object;
use fw::arch::x86_64::trap_entry::TrapFrame;
use fw::arch::x86_64::{io_bitmap, percpu};
use fw::mm::address_space::AddressSpace;
use fw::mm::phys_to_virt;

/// Capability slots per process.
pub const CAP_SLOTS: u16 = 256;
/// Threads (and ring pages) per process.
pub const MAX_THREADS: u32 = 64;

static NEXT_PID: AtomicU64 = AtomicU64::new(1);
static PROCESSES: IrqSafeMutex<Vec<Arc<Process>>> = IrqSafeMutex::new(Vec::new());

/// One process.
pub struct Process {
    pub pid: u64,
    pub name: String,
    pml4: u64,
    space: IrqSafeMutex<Option<AddressSpace>>,
    pub caps: IrqSafeMutex<CapTable<Object>>,
    io_ranges: IrqSafeMutex<Vec<(u16, u16)>>,
    console_line: IrqSafeMutex<String>,
    exited: AtomicBool,
    destroyed: AtomicBool,
    /// `exit` was called: every thread leaves at its next kernel entry or return.
    exiting: AtomicBool,
    pub exit_code: AtomicU64,
    threads: IrqSafeMutex<Vec<Arc<Thread>>>,
    live_threads: AtomicU32,
    next_ring_slot: AtomicU32,
    /// Ring pages (physical, user address) of threads that were dropped: a new thread takes
    /// one of these before a fresh slot, so a process can start and end threads forever.
    free_rings: IrqSafeMutex<Vec<(Arc<IrqSafeMutex<RingState>>, u64)>>,
    /// CPUs that may hold TLB entries of this address space (its CR3 is loaded there).
    pub resident: fw::arch::x86_64::tlb::CpuMask,
    /// Threads ended by a fault while others went on, and the last faulting address.
    pub thread_faults: AtomicU64,
    /// Completions dropped because a thread corrupted its `cq_head`.
    pub cq_overflow: AtomicU64,
    /// The most submissions one `cap_enter` of any of its threads consumed (bounded by
    /// `SQ_ENTRIES`: the call's snapshot of `sq_tail`).
    pub max_submissions_per_call: AtomicU64,
    /// The most ticks of its CPU any of its threads waited runnable before it ran: a wait of
    /// at most one tick is a scheduling gap under two time slices.
    pub max_queue_wait_ticks: AtomicU64,
    pub last_fault: AtomicU64,
    /// Completion statistics for reports.
    pub completions: AtomicU64,
    pub errors: AtomicU64,
    /// Kernel pages shown to the program: the start-info page (the kernel may update
    /// `entry_gate`) and every thread's ring. They are freed by [`release_kernel_pages`]
    /// after the address space is destroyed, each under its own lock.
    start_info: IrqSafeMutex<Option<u64>>,
    rings: IrqSafeMutex<Vec<Arc<IrqSafeMutex<RingState>>>>,
}

/// Resets a recycled ring page for a new thread (under its lock; teardown may have taken the
/// page already, and then there is nothing to reuse).
fn reset_ring(ring: &IrqSafeMutex<RingState>) -> Option<()> {
    let mut state = ring.lock();
    let phys = state.page.as_ref()?.phys();
    // SAFETY: the frame is this process's live ring page (its state still holds
    // it, under the lock); the new thread's header replaces the old one before the
    // thread exists.
    unsafe {
        core::ptr::write_bytes(phys_to_virt(phys).as_mut_ptr::<u8>(), 0, 4096);
        (phys_to_virt(phys).as_mut_ptr::<keel_abi::RingHeader>())
            .write(keel_abi::RingHeader::new());
    }
    *state = RingState::new(phys);
    Some(())
}

impl Process {
    /// A process around an address space (threads are added with [`Process::add_thread`]).
    pub fn new(name: &str, space: AddressSpace) -> Arc<Process> {
        let p = Arc::new(Process {
            pid: NEXT_PID.fetch_add(1, Ordering::Relaxed),
            name: String::from(name),
            pml4: space.pml4(),
            space: IrqSafeMutex::new(Some(space)),
            caps: IrqSafeMutex::new(CapTable::new(CAP_SLOTS)),
            io_ranges: IrqSafeMutex::new(Vec::new()),
            console_line: IrqSafeMutex::new(String::new()),
            exited: AtomicBool::new(false),
            destroyed: AtomicBool::new(false),
            exiting: AtomicBool::new(false),
            exit_code: AtomicU64::new(0),
            threads: IrqSafeMutex::new(Vec::new()),
            live_threads: AtomicU32::new(0),
            next_ring_slot: AtomicU32::new(0),
            free_rings: IrqSafeMutex::new(Vec::new()),
            resident: fw::arch::x86_64::tlb::CpuMask::new(),
            thread_faults: AtomicU64::new(0),
            cq_overflow: AtomicU64::new(0),
            max_submissions_per_call: AtomicU64::new(0),
            max_queue_wait_ticks: AtomicU64::new(0),
            last_fault: AtomicU64::new(0),
            completions: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            start_info: IrqSafeMutex::new(None),
            rings: IrqSafeMutex::new(Vec::new()),
        });
        PROCESSES.lock().push(p.clone());
        p
    }

    /// A placeholder for a program that could not be started (reported as exited with
    /// `u64::MAX`).
    pub fn new_dead(name: &str) -> Arc<Process> {
        let p = Process::new(name, AddressSpace::new().expect("a page for a placeholder"));
        abandon(&p, u64::MAX);
        p
    }

    /// The PML4 to load while this process runs.
    pub fn pml4(&self) -> u64 {
        self.pml4
    }

    /// Whether it has exited (its caps are released).
    pub fn has_exited(&self) -> bool {
        self.exited.load(Ordering::Acquire)
    }

    /// Whether its address space is gone too.
    pub fn is_destroyed(&self) -> bool {
        self.destroyed.load(Ordering::Acquire)
    }

    /// Whether `exit` was called (threads leave at their next kernel boundary).
    pub fn is_exiting(&self) -> bool {
        self.exiting.load(Ordering::Acquire)
    }

    /// Records that a `cap_enter` has consumed `count` submissions so far.
    pub fn note_submissions_per_call(&self, count: u64) {
        self.max_submissions_per_call.fetch_max(count, Ordering::Relaxed);
    }

    /// Records that one of its threads waited `ticks` runnable before it was switched in.
    pub fn note_queue_wait(&self, ticks: u64) {
        self.max_queue_wait_ticks.fetch_max(ticks, Ordering::Relaxed);
    }

    /// Threads still alive.
    pub fn live_threads(&self) -> u32 {
        self.live_threads.load(Ordering::Acquire)
    }

    /// Maps a fresh ring page for a new thread (slot 0 at `RING_VADDR`, later ones below it)
    /// as a kernel page and returns its state and user address. The process keeps the ring
    /// to free its page after teardown. A ring left by a dropped thread is reused first.
    pub fn new_ring(&self) -> Result<(Arc<IrqSafeMutex<RingState>>, u64), Status> {
        loop {
            let Some((ring, vaddr)) = self.free_rings.lock().pop() else { break };
            // A kernel page stays mapped where it was (the program cannot unmap it), and its
            // thread was dropped, so no kernel path posts into it any more: reset it for the
            // new thread (under its lock; teardown may have taken the page already).
            let reused = reset_ring(&ring);
            if reused.is_some() {
                return Ok((ring, vaddr));
            }
        }
        // The frame first: a spawn refused for want of memory must not use up a slot (64
        // such refusals used to leave the process unable to spawn ever again). The slot count
        // saturates at the maximum instead of counting every refused call.
        let phys = fw::mm::frames::allocate_zeroed().ok_or(Status::NoMemory)?;
        let next = |s: u32| (s < MAX_THREADS).then_some(s + 1);
        let Ok(slot) = self.next_ring_slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, next)
        else {
            fw::mm::frames::free(phys);
            return Err(Status::NoMemory);
        };
        let vaddr = keel_abi::RING_VADDR - slot as u64 * 4096;
        // SAFETY: a fresh zeroed frame; the header is written before any thread can see it.
        unsafe {
            (phys_to_virt(phys).as_mut_ptr::<keel_abi::RingHeader>())
                .write(keel_abi::RingHeader::new())
        };
        let perms = fw::mm::address_space::UserPerms { write: true, exec: false, uncached: false };
        match self.with_space(|s| s.map_kernel_page(vaddr, phys, perms)) {
            Some(Ok(())) => {
                let ring = Arc::new(IrqSafeMutex::new(RingState::new(phys)));
                self.rings.lock().push(ring.clone());
                Ok((ring, vaddr))
            }
            _ => {
                fw::mm::frames::free(phys);
                Err(Status::NoMemory)
            }
        }
    }

    /// Records the start-info frame (mapped as a kernel page) so teardown frees it.
    pub fn set_start_info(&self, phys: u64) {
        *self.start_info.lock() = Some(phys);
    }

    /// Runs `f` on the start-info page while it exists.
    pub fn with_start_info<R>(&self, f: impl FnOnce(&mut keel_abi::StartInfo) -> R) -> Option<R> {
        let phys = (*self.start_info.lock())?;
        // SAFETY: the frame stays allocated while its lock holds `Some` (teardown takes it
        // under the lock); the kernel is its only writer, the program maps it read-only.
        Some(f(unsafe { &mut *phys_to_virt(phys).as_mut_ptr::<keel_abi::StartInfo>() }))
    }

    /// A dropped thread's ring becomes free for the next thread of this process.
    pub fn recycle_ring(&self, ring: Arc<IrqSafeMutex<RingState>>, vaddr: u64) {
        if !self.is_destroyed() {
            self.free_rings.lock().push((ring, vaddr));
        }
    }

    /// Records a new thread (before it is queued).
    pub fn add_thread(&self, t: Arc<Thread>) {
        self.live_threads.fetch_add(1, Ordering::AcqRel);
        self.threads.lock().push(t);
    }

    /// Runs `f` on the address space (None once destroyed).
    pub fn with_space<R>(&self, f: impl FnOnce(&mut AddressSpace) -> R) -> Option<R> {
        self.space.lock().as_mut().map(f)
    }

    /// Adds an I/O port range to the ranges this process may use and opens it on this CPU,
    /// where the calling thread runs; its other threads get it at their next switch-in.
    /// Refused once the capability is gone: a release on another CPU between the caller's
    /// lookup and here has already revoked the range (checked under the list's lock, which
    /// the release takes after dropping the capability).
    pub fn enable_io_ports(&self, first: u16, last: u16) -> Result<(), Status> {
        let mut ranges = self.io_ranges.lock();
        let held = self.caps.lock().iter().any(
            |(_, o)| matches!(*o, Object::IoPorts { first: f, last: l } if (f, l) == (first, last)),
        );
        if !held {
            return Err(Status::BadCap);
        }
        if !ranges.contains(&(first, last)) {
            ranges.push((first, last));
        }
        io_bitmap::open(&percpu::IrqGuard::new(), self.pid, first, last);
        Ok(())
    }

    /// Opens this process's ports on this CPU (switch-in, from its current list) or closes
    /// what this CPU opened (switch-out, from the CPU's own record: the list may already be
    /// emptied by its last thread exiting on another CPU). Interrupts are off.
    pub fn grant_io_ports_on_this_cpu(&self, open: bool) {
        let guard = percpu::IrqGuard::new();
        if open {
            for &(first, last) in self.io_ranges.lock().iter() {
                io_bitmap::open(&guard, self.pid, first, last);
            }
        } else {
            self.widen_io_exit_race();
            io_bitmap::close_recorded(&guard);
        }
    }

    /// For the exit-race proof (`io_exit_race=widen`): a CPU whose thread of this process
    /// has exited waits, before closing its ports, until the process's last thread (on
    /// another CPU) has exited and emptied the list — the interleaving that leaks ports when
    /// closing re-reads the list. Bounded (100 ms); only in a kernel built with the scenarios.
    fn widen_io_exit_race(&self) {
        #[cfg(feature = "scenarios")]
        if WIDEN_IO_EXIT_RACE.load(Ordering::Relaxed)
            && sched::current_thread()
                .is_some_and(|t| t.state() == super::thread::ThreadState::Exited)
        {
            let start = fw::arch::x86_64::cpu::rdtsc();
            while !self.has_exited()
                && fw::arch::x86_64::cpu::rdtsc() - start < fw::time::ns_to_tsc(100_000_000)
            {
                core::hint::spin_loop();
            }
        }
    }

    /// Console output from the process, line by line: `EV key=value` lines become
    /// `EV user.<name>.<key>=value` (the harness can tell user evidence from kernel evidence),
    /// every other line is prefixed with the program name. NUL bytes are dropped (padding).
    pub fn console_write(&self, bytes: &[u8]) {
        let mut line = self.console_line.lock();
        for &b in bytes.iter().filter(|&&b| b != 0) {
            if b == b'\n' || line.len() >= 512 {
                emit_user_line(&self.name, &line);
                line.clear();
            } else if b == b'\t' || (0x20..0x7f).contains(&b) {
                line.push(b as char);
            } else {
                line.push('?');
            }
        }
    }
}

fn emit_user_line(name: &str, line: &str) {
    if let Some(rest) = line.strip_prefix("EV ") {
        let valid = keel_evidence::is_valid_key;
        let pairs: Vec<(&str, &str)> =
            rest.split_whitespace().filter_map(|kv| kv.split_once('=')).collect();
        if !pairs.is_empty()
            && pairs.iter().all(|(k, v)| valid(k) && !v.is_empty() && !v.contains('='))
        {
            for (k, v) in pairs {
                fw::println!("EV user.{}.{}={}", name.replace('-', "_"), k, v);
            }
            return;
        }
    }
    fw::println!("[{name}] {line}");
}

/// Releases what a capability holds when its last holder goes away.
fn release_object(p: &Arc<Process>, object: &Object) {
    match object {
        Object::Interrupt(irq) => irq.release(p),
        Object::DeviceMemory(region) => region.release(p.pid),
        _ => {}
    }
}

/// Releases one capability id; objects referenced by no other slot of this process are
/// released too (an `Interrupt` gets masked and its waiter cancelled, an `IoPorts` range is
/// closed on every CPU where the process runs before this returns).
pub fn release_cap(p: &Arc<Process>, id: CapId) -> Result<(), Status> {
    let object = p.caps.lock().release(id).map_err(|e| e.status())?;
    if let Object::IoPorts { first, last } = object {
        revoke_io_ports(p, first, last);
    }
    let still_held = {
        p.caps.lock().iter().any(|(_, o)| match (o, &object) {
            (Object::Interrupt(a), Object::Interrupt(b)) => Arc::ptr_eq(a, b),
            // One domain per PCI function: it stays while any BAR of it is held.
            (Object::DeviceMemory(a), Object::DeviceMemory(b)) => a.bdf == b.bdf,
            _ => false,
        })
    };
    if !still_held {
        release_object(p, &object);
    }
    Ok(())
}

/// Set by the exit-race proof; exists only in a kernel built with the scenarios.
#[cfg(feature = "scenarios")]
static WIDEN_IO_EXIT_RACE: AtomicBool = AtomicBool::new(false);

/// For the exit-race proof: see [`Process::widen_io_exit_race`].
#[cfg(feature = "scenarios")]
pub fn widen_io_exit_race() {
    WIDEN_IO_EXIT_RACE.store(true, Ordering::Relaxed);
}

/// Takes a released `IoPorts` range out of the process's list (unless another slot still
/// holds it) and closes it on every CPU where the process is resident, before returning.
fn revoke_io_ports(p: &Arc<Process>, first: u16, last: u16) {
    let removed = {
        let mut ranges = p.io_ranges.lock();
        let still_held = p.caps.lock().iter().any(
            |(_, o)| matches!(*o, Object::IoPorts { first: f, last: l } if (f, l) == (first, last)),
        );
        if !still_held {
            ranges.retain(|&r| r != (first, last));
        }
        !still_held
    };
    if !removed {
        return;
    }
    if let Err(e) = io_bitmap::revoke_everywhere(p.pid, &p.resident, first, last) {
        // The CPU did not answer: it cannot be trusted to have closed the range.
        panic!("IoPorts release: cpu{} did not close {first:#x}..{last:#x}", e.0);
    }
}

/// Releases everything the process holds (capabilities — an `Interrupt` gets masked and its
/// waiter cancelled — I/O ports), once.
fn release_resources(p: &Arc<Process>) {
    let objects: Vec<Object> = p.caps.lock().drain().collect();
    for o in &objects {
        release_object(p, o);
    }
    {
        p.grant_io_ports_on_this_cpu(false);
        p.io_ranges.lock().clear();
    }
    let line = core::mem::take(&mut *p.console_line.lock());
    if !line.is_empty() {
        emit_user_line(&p.name, &line);
    }
}

/// A process that never ran (its start failed half-way): give back what it was granted and
/// its address space, and report it as exited with `code`.
pub fn abandon(p: &Arc<Process>, code: u64) {
    release_resources(p);
    p.exit_code.store(code, Ordering::Release);
    p.exited.store(true, Ordering::Release);
    let taken = p.space.lock().take();
    if let Some(space) = taken {
        space.destroy();
    }
    release_kernel_pages(p);
    p.destroyed.store(true, Ordering::Release);
    forget(p);
}

/// Frees the kernel pages the program was shown (start info, rings), once its address space
/// is destroyed so no mapping or TLB entry reaches them. Each is taken out under its own
/// lock, so a completion posted from another CPU meanwhile either finished or finds no page.
fn release_kernel_pages(p: &Process) {
    let taken = p.start_info.lock().take();
    if let Some(phys) = taken {
        fw::mm::frames::free(phys);
    }
    drop(core::mem::take(&mut *p.free_rings.lock()));
    let rings = core::mem::take(&mut *p.rings.lock());
    for ring in rings {
        let taken = ring.lock().page.take();
        if let Some(page) = taken {
            fw::mm::frames::free(page.phys());
        }
    }
}

/// `exit(code)` from any thread: the whole process ends. Other threads leave at their next
/// kernel boundary (tick, system call, wake-up); blocked ones are woken for that.
pub fn exit_current(code: u64) -> ! {
    x86_64::instructions::interrupts::disable();
    let thread = sched::current_thread().expect("exit from a thread");
    let p = thread.process.clone();
    if !p.exiting.swap(true, Ordering::AcqRel) {
        p.exit_code.store(code, Ordering::Release);
    }
    let others: Vec<Arc<Thread>> =
        p.threads.lock().iter().filter(|t| t.tid != thread.tid).cloned().collect();
    for t in &others {
        wake_for_exit(t);
    }
    drop(others);
    drop(p);
    drop(thread);
    exit_thread()
}

/// Wakes a thread of an exiting process (`exiting` already set). `wait_for_completions`
/// checks `exiting` and sets `Blocked` under the thread's ring lock; taking that lock here
/// means the waiter either has not checked yet (and will see `exiting`) or is already
/// `Blocked` (and this wakes it): a wake-up cannot land between its check and its block.
fn wake_for_exit(t: &Arc<Thread>) {
    let woken = {
        let _waiter = t.ring.lock();
        t.try_wake()
    };
    if woken {
        sched::enqueue(t.clone());
    }
}

/// Ends the calling thread. The last thread out releases the process's resources and
/// reports its exit; the address space goes when the scheduler reaps that last thread.
pub fn exit_thread() -> ! {
    x86_64::instructions::interrupts::disable();
    let thread = sched::current_thread().expect("exit from a thread");
    let p = thread.process.clone();
    sched::cancel_timed(&thread);
    crate::object::interrupt::cancel_waits_of(&thread);
    thread.ring.lock().waiting_for = None;
    if p.live_threads.fetch_sub(1, Ordering::AcqRel) == 1 {
        release_resources(&p);
        p.exited.store(true, Ordering::Release);
        let code = p.exit_code.load(Ordering::Acquire);
        log::info!("process {} ({}) exited with code {code:#x}", p.pid, p.name);
        fw::ev!(("proc.{}.exit", p.name.replace('-', "_")), code);
    }
    drop(p);
    drop(thread);
    sched::exit_current()
}

/// At a kernel boundary of a thread whose process is exiting: leave.
pub fn leave_if_exiting() {
    if let Some(t) = sched::current_thread() {
        if t.process.is_exiting() {
            drop(t);
            exit_thread();
        }
    }
}

/// Tells the running process to enter the kernel with `int 0x80` from now on.
pub fn switch_current_to_int80() {
    if let Some(t) = sched::current_thread() {
        t.process.with_start_info(|info| {
            // SAFETY: a field of the live start-info page (see `with_start_info`); volatile
            // because the program reads it concurrently.
            unsafe {
                core::ptr::addr_of_mut!(info.entry_gate).write_volatile(keel_abi::ENTRY_INT80)
            }
        });
    }
}

/// A CPU exception in ring 3: report it and end the process, never the kernel.
pub fn user_fault(frame: &mut TrapFrame) {
    if fw::arch::x86_64::syscall_entry::recover_from_failed_syscall(frame) {
        switch_current_to_int80();
        super::syscall::handle(frame);
        return;
    }
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    // A #PF the tables already permit came from a stale TLB entry: flushed, retried.
    let tid = sched::current_thread().map_or(0, |t| t.tid);
    if frame.vector == 14 && fw::mm::fault::retry_spurious(tid, cr2, frame.error_code) {
        return;
    }
    let alone = report_fault(frame, cr2);
    end_faulting_thread(0xFFFF_0000 | frame.vector, alone)
}

/// Logs a ring-3 fault, records its evidence and counts it; true when the faulting thread is
/// the process's only one. Everything it allocates is dropped before the caller exits.
fn report_fault(frame: &TrapFrame, addr: u64) -> bool {
    let (pid, name) = sched::current_thread()
        .map(|t| (t.process.pid, t.process.name.clone()))
        .unwrap_or((0, String::new()));
    log::warn!(
        "user fault: process {pid} ({name}) vector {} ({}) error {:#x} rip {:#x} cr2 {:#x}",
        frame.vector,
        fw::panic::exception_name(frame.vector),
        frame.error_code,
        frame.rip,
        addr
    );
    log::warn!(
        "user fault: cs {:#x} ss {:#x} rsp {:#x} rflags {:#x} rcx {:#x} r11 {:#x} rax {:#x}",
        frame.cs,
        frame.ss,
        frame.rsp,
        frame.rflags,
        frame.rcx,
        frame.r11,
        frame.rax
    );
    let key = name.replace('-', "_");
    fw::ev!(("proc.{}.fault_vector", key), frame.vector);
    fw::ev!(("proc.{}.fault_addr", key), format_args!("{:#x}", addr));
    let Some(t) = sched::current_thread() else { return true };
    if t.process.live_threads() <= 1 {
        return true;
    }
    // Other threads go on: only the faulting thread ends (its fault is in the report).
    fw::ev!(("proc.{}.thread_fault.{}", key, t.tid), format_args!("{:#x}", addr));
    t.process.thread_faults.fetch_add(1, Ordering::Relaxed);
    if t.process.exit_code.load(Ordering::Relaxed) == 0 {
        t.process.last_fault.store(addr, Ordering::Relaxed);
    }
    false
}

/// Ends a thread the kernel refused to continue: the whole process with `code` when it was
/// alone, else only this thread.
fn end_faulting_thread(code: u64, alone: bool) -> ! {
    if alone {
        exit_current(code)
    }
    exit_thread()
}

/// The return path found a ring-3 frame it must not return to (non-canonical RIP or RSP,
/// or not a user selector): `sysretq`/`iretq` would fault in ring 0 on real CPUs. Counted
/// (the kernel's own check, visible where an emulator would not fault), then the thread ends
/// as for a general-protection fault.
pub fn refuse_user_return(frame: &mut TrapFrame) -> ! {
    x86_64::instructions::interrupts::disable();
    let count = BAD_RETURNS.fetch_add(1, Ordering::Relaxed) + 1;
    log::warn!(
        "return to ring 3 refused: rip {:#x} rsp {:#x} cs {:#x} ss {:#x} (#{count})",
        frame.rip,
        frame.rsp,
        frame.cs,
        frame.ss
    );
    let alone = {
        let name =
            sched::current_thread().map(|t| t.process.name.replace('-', "_")).unwrap_or_default();
        let canonical = |a: u64| a >> 47 == 0;
        if !canonical(frame.rip) {
            fw::ev!(("proc.{}.bad_return_rip", name), format_args!("{:#x}", frame.rip));
        }
        if !canonical(frame.rsp) {
            fw::ev!(("proc.{}.bad_return_rsp", name), format_args!("{:#x}", frame.rsp));
        }
        frame.vector = 13;
        report_fault(frame, frame.rip)
    };
    end_faulting_thread(EXIT_BAD_RETURN, alone)
}

/// Exit code of a process whose only thread asked to return to ring 3 at a non-canonical
/// address (a general-protection fault on real CPUs).
pub const EXIT_BAD_RETURN: u64 = 0xFFFF_0000 | 13;

/// Returns to ring 3 the return path refused (see [`refuse_user_return`]).
pub static BAD_RETURNS: AtomicU64 = AtomicU64::new(0);

/// Scheduler context after a thread exited: when it was the last one, destroy the address
/// space once no CPU has it loaded (`resident` tracks them: CPUs that keep it while idle
/// leave when asked, see `space.rs`).
pub fn reap(thread: &Arc<Thread>) {
    THREADS_REAPED.fetch_add(1, Ordering::Relaxed);
    let p = &thread.process;
    p.threads.lock().retain(|t| t.tid != thread.tid);
    if p.live_threads() != 0 || !p.exited.load(Ordering::Acquire) {
        return;
    }
    // Every CPU must have left the address space before its tables are freed: one may
    // still be switching away from its last thread, others keep it loaded while idle
    // (`space.rs`) and leave it when asked (asked again every 10 ms).
    let mut next_ask = 0;
    let left = fw::time::spin_until(0, 1_000_000_000, || {
        if p.resident.is_empty() {
            return true;
        }
        let now = fw::time::now_ns();
        if now >= next_ask {
            super::space::ask_to_leave(p);
            next_ask = now + 10_000_000;
        }
        false
    });
    if !left {
        SPACES_LEAKED.fetch_add(1, Ordering::Relaxed);
        log::error!(
            "process {}: address space still resident on {:?}; leaking it",
            p.pid,
            p.resident
        );
        return;
    }
    let taken = p.space.lock().take();
    if let Some(space) = taken {
        space.destroy();
        release_kernel_pages(p);
        p.destroyed.store(true, Ordering::Release);
        // The boot CPU's `run_until` waits for this (tickless, nothing else may wake it).
        super::sched::wake_boot_cpu();
    }
    forget(p);
}

/// Address spaces [`reap`] left unfreed: some CPU stayed in the resident set for 1 s.
pub static SPACES_LEAKED: AtomicU64 = AtomicU64::new(0);
/// Exited threads the scheduler handed to [`reap`] (endurance evidence).
pub static THREADS_REAPED: AtomicU64 = AtomicU64::new(0);
/// Destroyed processes dropped from the registry by [`forget`] (endurance evidence).
pub static PROCESSES_REAPED: AtomicU64 = AtomicU64::new(0);

/// Drops a destroyed process from the registry (its last reference then goes with its
/// last holder: a finished process keeps no kernel memory).
fn forget(p: &Arc<Process>) {
    PROCESSES_REAPED.fetch_add(1, Ordering::Relaxed);
    {
        let mut live = PROCESSES.lock();
        live.retain(|q| !Arc::ptr_eq(q, p));
        // The registry's room follows the live count: none left, nothing kept.
        live.shrink_to_fit();
    }
}

/// Processes not yet destroyed.
pub fn live() -> Vec<Arc<Process>> {
    PROCESSES.lock().clone()
}

/// Processes created since boot.
pub fn created() -> u64 {
    NEXT_PID.load(Ordering::Relaxed) - 1
}
