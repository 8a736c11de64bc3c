//! `cap_enter`: consume published submissions in order, execute each against the process's
//! capability table, post completions, then block until enough completions are available or
//! the timeout passes. Everything read from the ring page is hostile: indices are checked by
//! `keel_abi`, each entry is copied out once and decoded by `keel_abi::decode`, and user memory
//! is read only through [`UserSlice`], whose copy turns a missing page into `BadAddress`.

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use keel_abi::{CapId, ObjectKind, Request, Status, Submission, TIMEOUT_INFINITE};

use super::process::{self, Process};
use super::sched::{self, TimedKind};
use super::thread::{Thread, ThreadState};
use crate::arch::x86_64::cpu;
use crate::mm::address_space::{MapError, UserPerms};
use crate::mm::invalidation::Invalidation;
use crate::mm::user::UserSlice;
use crate::object::Object;

/// What executing one submission produced.
enum Outcome {
    Done(Status, [u64; 2]),
    /// Completes later (its reservation stays in flight).
    Deferred,
    /// Done, and the thread must leave this CPU for its new home.
    Migrate(Status, [u64; 2]),
    /// The thread ends (`ProcessExitThread`): its caller leaves the kernel frames first.
    ExitThread,
}

/// What `cap_enter` asks of the system-call layer.
pub enum Entered {
    /// Return this value in `rax`.
    Return(i64),
    /// End the calling thread. The system-call layer does it once every reference it took
    /// is dropped: exiting never unwinds, so anything still held on the stack would leak.
    ExitThread,
}

fn irqs_off<R>(f: impl FnOnce() -> R) -> R {
    x86_64::instructions::interrupts::without_interrupts(f)
}

/// Takes the next submission if there is one and the CQ has room for its completion
/// (reserving that room). `Err` when the user corrupted the indices.
fn take_submission(t: &Thread) -> Result<Option<Submission>, Status> {
    irqs_off(|| {
        let mut guard = t.ring.lock();
        let ring = &mut *guard;
        let page = ring.page.as_ref().ok_or(Status::Cancelled)?;
        let header = page.header();
        let tail = header.sq_tail.load(Ordering::Acquire);
        if keel_abi::sq_pending(ring.sq_head, tail)? == 0 {
            return Ok(None);
        }
        let cq_head = header.cq_head.load(Ordering::Acquire);
        if keel_abi::cq_budget(cq_head, ring.cq_tail, ring.in_flight)? == 0 {
            return Ok(None); // back-pressure: leave it in the SQ until completions are consumed
        }
        let slot = keel_abi::sq_slot(ring.sq_head);
        let sub = page.read_submission(slot);
        ring.sq_head = ring.sq_head.wrapping_add(1);
        header.sq_head.store(ring.sq_head, Ordering::Release);
        ring.in_flight += 1;
        Ok(Some(sub))
    })
}

/// The `cap_enter` system call. Arguments are validated before any submission is consumed:
/// a call that fails with `BadArgument` leaves the submission queue as it was.
pub fn cap_enter(thread: &Arc<Thread>, min_complete: u64, timeout_ns: u64) -> Entered {
    let Ok(min) = keel_abi::min_complete(min_complete) else {
        return Entered::Return(Status::BadArgument.as_i32() as i64);
    };
    loop {
        match take_submission(thread) {
            Err(status) => return Entered::Return(status.as_i32() as i64),
            Ok(None) => break,
            Ok(Some(sub)) => match execute(thread, &sub) {
                Outcome::Done(status, results) => thread.post(sub.user_data, status, results, true),
                Outcome::Deferred => {}
                Outcome::Migrate(status, results) => {
                    thread.post(sub.user_data, status, results, true);
                    sched::yield_current();
                    // Resumed by the new home's scheduler with interrupts off; the rest of
                    // the call runs with them on, like the part before (a shootdown waits
                    // for other CPUs, and they may be waiting for this one).
                    x86_64::instructions::interrupts::enable();
                }
                Outcome::ExitThread => return Entered::ExitThread,
            },
        }
    }
    Entered::Return(wait_for_completions(thread, min, timeout_ns))
}

/// Blocks until `min` completions are available, the timeout passes or the process exits.
fn wait_for_completions(thread: &Arc<Thread>, min: u32, timeout_ns: u64) -> i64 {
    let p = &thread.process;
    let deadline = (timeout_ns != TIMEOUT_INFINITE).then(|| crate::time::now_ns().saturating_add(timeout_ns));
    loop {
        x86_64::instructions::interrupts::disable();
        let available = {
            let mut ring = thread.ring.lock();
            let Some(page) = ring.page.as_ref() else { return Status::Cancelled.as_i32() as i64 };
            let head = page.header().cq_head.load(Ordering::Acquire);
            let available = match keel_abi::cq_available(head, ring.cq_tail) {
                Ok(a) => a,
                Err(s) => return s.as_i32() as i64,
            };
            let timed_out = timeout_ns == 0 || deadline.is_some_and(|d| crate::time::now_ns() >= d);
            if available >= min {
                ring.waiting_for = None;
                Some(available as i64)
            } else if timed_out || p.is_exiting() {
                ring.waiting_for = None;
                Some(Status::TimedOut.as_i32() as i64)
            } else {
                thread.set_state(ThreadState::Blocked);
                ring.waiting_for = Some(min);
                None
            }
        };
        if let Some(result) = available {
            sched::cancel_wake(thread);
            return result;
        }
        if let Some(d) = deadline {
            sched::add_timed(d, thread.clone(), TimedKind::Wake);
        }
        sched::block_current();
    }
}

fn lookup(p: &Process, cap: u32, kind: ObjectKind) -> Result<Object, Status> {
    let object = irqs_off(|| p.caps.lock().get(CapId(cap)).cloned()).map_err(|e| e.status())?;
    if object.kind() != kind {
        return Err(Status::WrongType);
    }
    Ok(object)
}

fn done(r: Result<[u64; 2], Status>) -> Outcome {
    match r {
        Ok(results) => Outcome::Done(Status::Ok, results),
        Err(s) => Outcome::Done(s, [0, 0]),
    }
}

fn execute(thread: &Arc<Thread>, sub: &Submission) -> Outcome {
    let p = &thread.process;
    let request = match keel_abi::decode(sub) {
        Ok(r) => r,
        Err(s) => return Outcome::Done(s, [0, 0]),
    };
    // The capability must name an object of the kind the method needs; `Nop` and the
    // generic `Cap*` methods take any capability (or none) and check it themselves.
    let object = match request.method().interface() {
        None => None,
        Some(kind) => match lookup(p, sub.cap, kind) {
            Ok(o) => Some(o),
            Err(s) => return Outcome::Done(s, [0, 0]),
        },
    };
    match (request, object) {
        (Request::Nop, _) => done(Ok([0, 0])),
        (Request::CapCopy, _) => done(
            irqs_off(|| p.caps.lock().copy(CapId(sub.cap)))
                .map(|id| [id.0 as u64, 0])
                .map_err(|e| e.status()),
        ),
        (Request::CapRelease, _) => done(process::release_cap(p, CapId(sub.cap)).map(|_| [0, 0])),
        (Request::CapIdentify, _) => done(
            irqs_off(|| p.caps.lock().get(CapId(sub.cap)).cloned())
                .map(|o| [o.kind() as u64, 0])
                .map_err(|e| e.status()),
        ),
        (Request::ConsoleWrite { ptr, len }, _) => done((|| {
            let mut buf = [0u8; keel_abi::CONSOLE_WRITE_MAX as usize];
            let buf = &mut buf[..len as usize];
            UserSlice::new(ptr, len)?.read(buf)?;
            p.console_write(buf);
            Ok([len, 0])
        })()),
        (Request::InterruptWait, Some(Object::Interrupt(irq))) => match irq.wait(thread, sub.user_data) {
            Ok(Some(results)) => Outcome::Done(Status::Ok, results),
            Ok(None) => Outcome::Deferred,
            Err(s) => Outcome::Done(s, [0, 0]),
        },
        (Request::InterruptAcknowledge, Some(Object::Interrupt(irq))) => done(irq.acknowledge(p).map(|_| [0, 0])),
        (Request::InterruptInfo, Some(Object::Interrupt(irq))) => {
            let source = match &irq.source {
                crate::object::interrupt::Source::Ioapic { gsi, .. } => keel_abi::InterruptSource::Gsi(*gsi),
                crate::object::interrupt::Source::Msi { device, .. } => keel_abi::InterruptSource::Msi { bdf: device.addr.bdf() },
            };
            done(Ok([irq.vector as u64, source.encode()]))
        }
        (Request::DeviceMemoryMap { vaddr }, Some(Object::DeviceMemory(dm))) => done(map_device(p, vaddr, dm.phys, dm.size)),
        (Request::DeviceMemoryInfo, Some(Object::DeviceMemory(dm))) => done(Ok([dm.size, dm.bdf as u64])),
        (Request::IoPortsEnable, Some(Object::IoPorts { first, last })) => {
            p.enable_io_ports(first, last);
            done(Ok([first as u64, (last - first) as u64 + 1]))
        }
        (Request::TimerNow, _) => done(Ok([crate::time::now_ns(), cpu::rdtsc()])),
        (Request::TimerTscHz, _) => done(Ok([crate::time::tsc_hz(), 0])),
        (Request::TimerSleep { ns }, _) => {
            let deadline = crate::time::now_ns().saturating_add(ns);
            sched::add_timed(deadline, thread.clone(), TimedKind::SleepDone { user_data: sub.user_data });
            Outcome::Deferred
        }
        (Request::ProcessSpawnThread { entry, stack_top, arg, cpu }, _) => done((|| {
            let cpu = online_cpu(cpu)?;
            if p.is_exiting() {
                return Err(Status::Cancelled);
            }
            let ring = p.new_ring()?;
            let t = Thread::new_user(p.clone(), cpu, entry, stack_top, ring, keel_abi::START_INFO_VADDR, arg);
            let tid = t.tid;
            p.add_thread(t.clone());
            sched::enqueue(t);
            Ok([tid, 0])
        })()),
        (Request::ProcessSetAffinity { cpu }, _) => match online_cpu(cpu) {
            Ok(cpu) => {
                thread.home_cpu.store(cpu, Ordering::Release);
                Outcome::Migrate(Status::Ok, [cpu as u64, 0])
            }
            Err(s) => Outcome::Done(s, [0, 0]),
        },
        (Request::ProcessExitThread, _) => Outcome::ExitThread,
        (Request::ProcessInfo, _) => done(Ok([p.live_threads() as u64, crate::arch::x86_64::percpu::current_index() as u64])),
        (Request::VmMap { vaddr, pages, writable }, _) => done(vm_map(p, vaddr, pages, writable)),
        (Request::VmUnmap { vaddr, pages }, _) => done(vm_unmap(p, vaddr, pages)),
        (Request::VmProtect { vaddr, pages, writable }, _) => done(vm_protect(p, vaddr, pages, writable)),
        // Unreachable: `lookup` matched the object's kind to the method's interface.
        (_, _) => Outcome::Done(Status::WrongType, [0, 0]),
    }
}

fn map_device(p: &Process, vaddr: u64, phys: u64, size: u64) -> Result<[u64; 2], Status> {
    let size = size.div_ceil(4096) * 4096;
    keel_abi::user_range(vaddr, size)?;
    let result = p.with_space(|space| {
        if space.any_mapped(vaddr, size) {
            return Err(Status::BadAddress);
        }
        let perms = UserPerms { write: true, exec: false, uncached: true };
        for off in (0..size).step_by(4096) {
            space.map_device(vaddr + off, phys + off, perms).map_err(|_| Status::NoMemory)?;
        }
        Ok([vaddr, size])
    });
    result.unwrap_or(Err(Status::Cancelled))
}

fn online_cpu(cpu: u64) -> Result<u32, Status> {
    let cpu = u32::try_from(cpu).map_err(|_| Status::BadArgument)?;
    match crate::arch::x86_64::percpu::cpu(cpu) {
        Some(c) if c.online.load(Ordering::Acquire) => Ok(cpu),
        _ => Err(Status::BadArgument),
    }
}

/// What a refused change to a program's mappings reports.
fn vm_status(e: MapError) -> Status {
    match e {
        MapError::NoMemory => Status::NoMemory,
        MapError::KernelPage | MapError::WriteExecute => Status::Denied,
        MapError::BadAddress | MapError::AlreadyMapped => Status::BadAddress,
    }
}

/// Maps fresh zeroed pages; refuses (`Denied`) if a kernel page lies in the range, and
/// (`BadAddress`) if anything else is mapped there.
fn vm_map(p: &Process, vaddr: u64, pages: u64, writable: bool) -> Result<[u64; 2], Status> {
    let perms = UserPerms { write: writable, exec: false, uncached: false };
    let mut undo = None;
    let result = p
        .with_space(|space| {
            space.check_not_kernel(vaddr, pages).map_err(vm_status)?;
            if space.any_mapped(vaddr, pages * 4096) {
                return Err(Status::BadAddress);
            }
            for i in 0..pages {
                if let Err(e) = space.map_new(vaddr + i * 4096, perms) {
                    // Undo what this call mapped. Another thread may already have touched
                    // those pages, so their frames go back only after a shootdown.
                    let mut stale = Invalidation::new(space.pml4());
                    for j in 0..i {
                        let _ = space.unmap(vaddr + j * 4096, &mut stale);
                    }
                    undo = Some(stale);
                    return Err(vm_status(e));
                }
            }
            Ok([vaddr, pages])
        })
        .unwrap_or(Err(Status::Cancelled));
    if let Some(stale) = undo {
        let _ = stale.complete(&p.resident);
    }
    result
}

/// Unmaps, shoots down the TLBs of every CPU the space is resident on, then frees frames
/// (the [`Invalidation`] frees them only after the shootdown). A range touching a kernel
/// page is refused (`Denied`) before anything changes.
fn vm_unmap(p: &Process, vaddr: u64, pages: u64) -> Result<[u64; 2], Status> {
    let stale = p
        .with_space(|space| -> Result<Invalidation, Status> {
            space.check_not_kernel(vaddr, pages).map_err(vm_status)?;
            let mut stale = Invalidation::new(space.pml4());
            for i in 0..pages {
                let _ = space.unmap(vaddr + i * 4096, &mut stale); // unmapped pages are skipped
            }
            Ok(stale)
        })
        .ok_or(Status::Cancelled)??;
    if stale.pages() == 0 {
        return Err(Status::BadAddress);
    }
    let (pages, frames) = stale.complete(&p.resident);
    Ok([pages as u64, frames as u64])
}

/// Changes permissions and shoots down stale (more permissive or less) entries. Refused
/// (`Denied`) before anything changes if the range touches a kernel page, or asks for
/// write access to an executable page (W^X).
fn vm_protect(p: &Process, vaddr: u64, pages: u64, writable: bool) -> Result<[u64; 2], Status> {
    let stale = p
        .with_space(|space| -> Result<Invalidation, Status> {
            space.check_not_kernel(vaddr, pages).map_err(vm_status)?;
            if writable {
                space.check_not_code(vaddr, pages).map_err(vm_status)?;
            }
            let mut stale = Invalidation::new(space.pml4());
            for i in 0..pages {
                let _ = space.protect(vaddr + i * 4096, writable, &mut stale); // unmapped pages are skipped
            }
            Ok(stale)
        })
        .ok_or(Status::Cancelled)??;
    if stale.pages() == 0 {
        return Err(Status::BadAddress);
    }
    let (pages, _) = stale.complete(&p.resident);
    Ok([pages as u64, 0])
}
