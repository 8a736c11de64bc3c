//! `cap_enter`: consume published submissions in order, hand each to the object its
//! capability names, post completions, then block until enough completions are available or
//! the timeout passes. The ring only moves submissions and completions; what a method does
//! lives with its object (`crate::object`). Everything read from the ring page is hostile:
//! indices are checked by `keel_abi`, and each entry is copied out once and decoded by
//! `keel_abi::decode` before any object sees it.

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use keel_abi::{CapId, Status, Submission, TIMEOUT_INFINITE};

use super::process::Process;
use super::sched::{self, TimedKind};
use super::thread::{Thread, ThreadState};
use crate::object::{self, Caller, Invocation, Object, Reply};

/// What `cap_enter` asks of the system-call layer.
pub enum Entered {
    /// Return this value in `rax`.
    Return(i64),
    /// End the calling thread. The system-call layer does it once every reference it took
    /// is dropped: exiting never unwinds, so anything still held on the stack would leak.
    ExitThread,
}

/// The `sq_tail` this call consumes up to, read once (docs/abi.md): submissions published
/// after it wait for the next call, so one call takes at most `SQ_ENTRIES` however fast
/// another thread refills the queue. `Err` when the user corrupted the indices.
fn snapshot_tail(t: &Thread) -> Result<u32, Status> {
    let ring = t.ring.lock();
    let page = ring.page.as_ref().ok_or(Status::Cancelled)?;
    let tail = page.header().sq_tail.load(Ordering::Acquire);
    keel_abi::sq_pending(ring.sq_head, tail)?;
    Ok(tail)
}

/// Takes the next submission before `until` (the call's snapshot of `sq_tail`) if there is
/// one and the CQ has room for its completion (reserving that room). `Err` when the user
/// corrupted the indices.
fn take_submission(t: &Thread, until: u32) -> Result<Option<Submission>, Status> {
    let mut guard = t.ring.lock();
    let ring = &mut *guard;
    let page = ring.page.as_ref().ok_or(Status::Cancelled)?;
    let header = page.header();
    let tail = until;
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
}

/// The `cap_enter` system call. Arguments are validated before any submission is consumed:
/// a call that fails with `BadArgument` leaves the submission queue as it was. Bounded work:
/// at most `SQ_ENTRIES` submissions (a snapshot of `sq_tail`), with a preemption point after
/// each one.
pub fn cap_enter(thread: &Arc<Thread>, min_complete: u64, timeout_ns: u64) -> Entered {
    let Ok(min) = keel_abi::min_complete(min_complete) else {
        return Entered::Return(Status::BadArgument.as_i32() as i64);
    };
    let until = match snapshot_tail(thread) {
        Ok(tail) => tail,
        Err(status) => return Entered::Return(status.as_i32() as i64),
    };
    let mut consumed = 0u64;
    loop {
        sched::preempt_point();
        match take_submission(thread, until) {
            Err(status) => return Entered::Return(status.as_i32() as i64),
            Ok(None) => break,
            Ok(Some(sub)) => {
                consumed += 1;
                thread.process.note_submissions_per_call(consumed);
                match execute(thread, &sub) {
                    Err(status) => thread.post(sub.user_data, status, [0, 0]),
                    Ok(Reply::Now(results)) => thread.post(sub.user_data, Status::Ok, results),
                    Ok(Reply::Later) => {}
                    Ok(Reply::NowThenMigrate(results)) => {
                        thread.post(sub.user_data, Status::Ok, results);
                        sched::yield_current();
                        // Resumed by the new home's scheduler with interrupts off; the rest of
                        // the call runs with them on, like the part before (a shootdown waits
                        // for other CPUs, and they may be waiting for this one).
                        x86_64::instructions::interrupts::enable();
                    }
                    Ok(Reply::ExitThread) => return Entered::ExitThread,
                }
            }
        }
    }
    Entered::Return(wait_for_completions(thread, min, timeout_ns))
}

/// Blocks until `min` completions are available, the timeout passes or the process exits.
fn wait_for_completions(thread: &Arc<Thread>, min: u32, timeout_ns: u64) -> i64 {
    let p = &thread.process;
    let deadline =
        (timeout_ns != TIMEOUT_INFINITE).then(|| fw::time::now_ns().saturating_add(timeout_ns));
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
            let timed_out = timeout_ns == 0 || deadline.is_some_and(|d| fw::time::now_ns() >= d);
            if available >= min {
                ring.waiting_for = None;
                Some(available as i64)
            } else if timed_out || p.is_exiting() {
                ring.waiting_for = None;
                Some(Status::TimedOut.as_i32() as i64)
            } else {
                #[cfg(feature = "scenarios")]
                widen_exit_window(p);
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

/// The object capability `cap` of `p` names (a clone of the reference).
fn lookup(p: &Process, cap: CapId) -> Result<Object, Status> {
    Ok(p.caps.lock().get(cap).cloned()?)
}

/// Decodes one submission and hands it to the object that executes it: the generic methods
/// get the capability id, every other method the object the id names.
fn execute(thread: &Arc<Thread>, sub: &Submission) -> Result<Reply, Status> {
    let invocation = Invocation::from(keel_abi::decode(sub)?);
    let caller = Caller { thread, user_data: sub.user_data };
    let cap = CapId(sub.cap);
    match invocation {
        Invocation::Cap(method) => object::cap::invoke(&caller, cap, method),
        Invocation::Object(method) => lookup(&thread.process, cap)?.invoke(&caller, method),
    }
}

/// Scenarios image only: a delay between `wait_for_completions`' exit check and its block,
/// with the ring lock held, long enough for another thread's `exit` to land inside it
/// (`exit_window_ms=` on the command line; 0 when absent). Proves that exit wakes a waiter
/// in that window (proof `exit-wake-window`).
#[cfg(feature = "scenarios")]
pub static EXIT_WINDOW_NS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Scenarios image only: delays that an `exit` of the waiter's process landed inside (its
/// `exiting` flag was clear at the check and set at the end of the delay).
#[cfg(feature = "scenarios")]
pub static EXIT_WINDOW_HITS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

#[cfg(feature = "scenarios")]
fn widen_exit_window(p: &Process) {
    let ns = EXIT_WINDOW_NS.load(Ordering::Relaxed);
    if ns != 0 {
        let end = fw::time::now_ns().saturating_add(ns);
        while fw::time::now_ns() < end {
            core::hint::spin_loop();
        }
        if p.is_exiting() {
            EXIT_WINDOW_HITS.fetch_add(1, Ordering::Relaxed);
        }
    }
}
