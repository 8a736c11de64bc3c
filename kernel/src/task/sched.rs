//! Per-CPU scheduling. Each CPU has a run queue and a scheduler context (the CPU's idle loop,
//! on its boot/AP stack). Every switch goes thread → scheduler context → thread, as in xv6:
//! the scheduler context picks the next runnable thread, loads its address space (unless the
//! CPU kept it: `space.rs`), kernel stack and I/O permissions, and switches to it; a thread
//! leaves the CPU by switching back.
//!
//! Protocol (interrupts off throughout): a thread that blocks sets `Blocked` and switches
//! out; a waker moves it `Blocked → Runnable` with a compare-exchange and queues it on its
//! home CPU (IPI 49 when that is another CPU); a preempted thread sets `requeue` and the
//! scheduler context queues it after the switch. A thread's home changes only while it runs
//! (`ProcessSetAffinity` on itself); it then leaves through [`yield_current`] and the old
//! CPU's scheduler context queues it on the new home once the switch is complete. So a thread
//! is only ever queued, while still finishing its switch-out, on the CPU doing that switch,
//! and cannot run before the switch completes.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use fw::sync::IrqSafeMutex;
use keel_apic::{ApicId, Ipi};
use keel_sched::RunQueue;

use super::thread::{Thread, ThreadState};
use fw::arch::x86_64::cpu::rdtsc;
use fw::arch::x86_64::percpu::{self, IrqGuard, PerCpu};
use fw::arch::x86_64::trap_entry::IPI_VECTOR;
use fw::arch::x86_64::{context, lapic, lockup, oneshot};

/// What a timed event does when its deadline passes.
pub enum TimedKind {
    /// Wake the thread (a `cap_enter` timeout).
    Wake,
    /// Post a `TimerSleep` completion with this user data, then wake if enough completions.
    SleepDone { user_data: u64 },
}

struct TimedEvent {
    deadline_ns: u64,
    thread: Arc<Thread>,
    kind: TimedKind,
}

/// One CPU's scheduler state that other CPUs touch: wakers queue threads on it, exiting
/// threads drop their timed events from every CPU. A CPU-local variable of this module (`SCHED`).
pub struct CpuSched {
    run_queue: IrqSafeMutex<RunQueue<Arc<Thread>>>,
    timed: IrqSafeMutex<Vec<TimedEvent>>,
    /// Context switches into threads on this CPU.
    pub switches: AtomicU64,
    /// Timer-driven preemptions (of ring 3, at the tick itself).
    pub preemptions: AtomicU64,
    /// Set by the tick when the thread it interrupted in the kernel has used up its slice and
    /// others wait here; honoured at the next [`preempt_point`] (cleared at every switch-in).
    need_resched: AtomicBool,
    /// Threads switched out at a [`preempt_point`] because `need_resched` was set.
    pub kernel_preemptions: AtomicU64,
    /// TSC when the tick set `need_resched`, and the longest it then took to reach a
    /// preemption point (TSC cycles): the longest non-preemptible stretch seen on this CPU.
    need_resched_at: AtomicU64,
    pub max_resched_delay_tsc: AtomicU64,
    /// IPI 49s other CPUs sent to wake a thread queued here (counted by the sender; the
    /// receive side is `smp::IPIS_RECEIVED`).
    pub wake_ipis: AtomicU64,
    /// Tickless: when the running thread's slice ends (ns since boot; one tick period after
    /// it was switched in).
    slice_end_ns: AtomicU64,
    /// Set while this CPU's scheduler context reaps an exited thread and drops it: from
    /// before the reap until the thread's memory is freed (see [`wait_reaps_done`]).
    reaping: AtomicBool,
}

impl CpuSched {
    /// Empty state (const: every CPU's copy starts as this).
    pub const fn new() -> Self {
        CpuSched {
            run_queue: IrqSafeMutex::new(RunQueue::new()),
            timed: IrqSafeMutex::new(Vec::new()),
            switches: AtomicU64::new(0),
            preemptions: AtomicU64::new(0),
            need_resched: AtomicBool::new(false),
            kernel_preemptions: AtomicU64::new(0),
            need_resched_at: AtomicU64::new(0),
            max_resched_delay_tsc: AtomicU64::new(0),
            wake_ipis: AtomicU64::new(0),
            slice_end_ns: AtomicU64::new(0),
            reaping: AtomicBool::new(false),
        }
    }
}

/// One CPU's scheduler state that only that CPU touches, with interrupts off (reached
/// through the guard, `SCHED_LOCAL`): cells, no locks.
pub struct CpuSchedLocal {
    /// The thread running on this CPU (between `schedule_once`'s switch in and back).
    current: Cell<Option<Arc<Thread>>>,
    /// The scheduler context's saved stack pointer while a thread runs.
    idle_rsp: Cell<u64>,
}

impl CpuSchedLocal {
    /// Empty state (const: every CPU's copy starts as this).
    pub const fn new() -> Self {
        CpuSchedLocal { current: Cell::new(None), idle_rsp: Cell::new(0) }
    }

    /// Whether a thread runs on this CPU.
    fn has_current(&self) -> bool {
        let thread = self.current.take();
        let running = thread.is_some();
        self.current.set(thread);
        running
    }

    /// A new reference to the current thread (the slot keeps its own).
    fn current_thread(&self) -> Option<Arc<Thread>> {
        let thread = self.current.take();
        let copy = thread.clone();
        self.current.set(thread);
        copy
    }
}

impl Default for CpuSchedLocal {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuSched {
    /// Reserves run-queue room (called once per CPU, outside interrupt context).
    pub fn reserve(&self, threads: usize) {
        self.run_queue.lock().reserve(threads);
        self.timed.lock().reserve(threads);
    }
}

impl Default for CpuSched {
    fn default() -> Self {
        Self::new()
    }
}

fw::cpu_local! {
    /// Each CPU's scheduler state that other CPUs touch (run queue, timed events, counters).
    static SCHED: CpuSched = CpuSched::new();
    /// Each CPU's scheduler state that only that CPU touches (current thread, idle context).
    static SCHED_LOCAL: CpuSchedLocal = CpuSchedLocal::new();
}

/// Threads one CPU's run queue can hold (reserved up front: wake-ups never allocate).
pub const RUN_QUEUE_CAPACITY: usize = 256;

/// CPU `cpu`'s shared scheduler state.
#[inline]
pub fn state_of(cpu: &PerCpu) -> &'static CpuSched {
    SCHED.of(cpu.index)
}

/// Reserves CPU `index`'s run queue and timed-event list before it runs (the kernel's
/// `prepare_cpu` upcall: the boot CPU once the heap exists, each AP as bring-up allocates it).
pub fn prepare_cpu(index: u32) {
    SCHED.of(index).reserve(RUN_QUEUE_CAPACITY);
}

/// The thread running on this CPU, if any.
#[inline]
pub fn current_thread() -> Option<Arc<Thread>> {
    let cpu = IrqGuard::new();
    SCHED_LOCAL.get(&cpu).current_thread()
}

/// Queues a runnable thread on its home CPU and wakes that CPU if it is another one.
pub fn enqueue(thread: Arc<Thread>) {
    let home = thread.home_cpu.load(Ordering::Relaxed);
    let Some(cpu) = percpu::cpu(home) else {
        log::error!("sched: thread {} has no CPU {home}", thread.tid);
        return;
    };
    thread.queued_at_tick.store(slice_clock(cpu), Ordering::Relaxed);
    let queued = state_of(cpu).run_queue.lock().push(thread);
    if let Err(t) = queued {
        // The queue's room was reserved up front so this path never allocates.
        log::error!("sched: cpu{home} run queue full; thread {} dropped", t.tid);
        return;
    }
    if home == percpu::current_index() {
        // Tickless: the running thread's slice end is armed now that another one waits.
        rearm_timer(&IrqGuard::new());
    } else {
        let apic = ApicId::new(cpu.apic_id.load(Ordering::Acquire));
        state_of(cpu).wake_ipis.fetch_add(1, Ordering::Relaxed);
        let _ = lapic::send(Ipi::fixed(IPI_VECTOR).to(apic));
    }
}

/// Makes a blocked thread runnable (no-op if it is not blocked).
pub fn wake(thread: &Arc<Thread>) {
    if thread.try_wake() {
        enqueue(thread.clone());
    }
}

/// Scheduler context: runs one runnable thread until it leaves the CPU. Returns false when
/// the run queue was empty. Must be called with interrupts off, from the CPU's idle loop.
pub fn schedule_once() -> bool {
    // Interrupts are already off: the guard costs a flag check and restores nothing. The
    // scheduler context never leaves its CPU, so `me` and `local` stay this CPU's across the
    // switch below.
    let cpu = IrqGuard::new();
    let (me, local) = (percpu::current(&cpu), SCHED_LOCAL.get(&cpu));
    let Some(thread) = SCHED.get(&cpu).run_queue.lock().pop() else { return false };
    if thread.state() == ThreadState::Exited {
        return true;
    }
    let waited = slice_clock(me).saturating_sub(thread.queued_at_tick.load(Ordering::Relaxed));
    thread.process.note_queue_wait(waited);
    thread.set_state(ThreadState::Running);
    // A fresh slice: a request meant for the thread that ran before is void.
    SCHED.get(&cpu).need_resched.store(false, Ordering::Relaxed);
    local.current.set(Some(thread.clone()));
    SCHED.get(&cpu).switches.fetch_add(1, Ordering::Relaxed);
    if lapic::tickless() {
        SCHED.get(&cpu).slice_end_ns.store(fw::time::now_ns() + slice_ns(), Ordering::Relaxed);
        rearm_timer(&cpu);
    }
    let process = &thread.process;
    super::space::enter(&cpu, process);
    percpu::set_kernel_stack(&cpu, thread.kernel_stack_top());
    process.grant_io_ports_on_this_cpu(true);
    // SAFETY: interrupts are off; both contexts are alive (this idle stack and the thread's
    // kernel stack, kept alive by the `Arc` in `current`).
    unsafe { context::switch(local.idle_rsp.as_ptr(), *thread.saved_rsp_slot()) };
    // Back in the scheduler context: the thread blocked, was preempted or exited.
    process.grant_io_ports_on_this_cpu(false);
    // The process's tables stay loaded unless the thread exited or the process is ending.
    super::space::leave(&cpu, process, thread.state() == ThreadState::Exited);
    // The reference `current` held; the one popped from the run queue goes now, so that an
    // exited thread is freed where `reaping` says so.
    let current = local.current.take().expect("thread was current");
    drop(thread);
    match current.state() {
        ThreadState::Exited => {
            // The process may be destroyed here and its last reference go with the thread:
            // whoever waits for that sees `reaping` until the thread is freed.
            reaping(&cpu, || {
                super::process::reap(&current);
                drop(current);
            });
        }
        _ if current.requeue.swap(false, Ordering::AcqRel) => {
            current.set_state(ThreadState::Runnable);
            // Its home may have changed (affinity): queue it there.
            enqueue(current);
        }
        _ => {}
    }
    true
}

/// From a thread: leave the CPU (state already set by the caller). The guard is borrowed
/// mutably, so no reference to this CPU's state survives the switch: the thread may resume
/// on another CPU (its home changed), always with interrupts off.
fn switch_out(thread: &Thread, cpu: &mut IrqGuard) {
    let idle_rsp = SCHED_LOCAL.get(cpu).idle_rsp.get();
    // SAFETY: interrupts off (the guard), running on the thread's own stack on its home CPU;
    // the idle context was saved by `schedule_once` on this CPU.
    unsafe { context::switch(thread.saved_rsp_slot(), idle_rsp) };
}

/// Leaves the CPU until someone calls [`wake`]; returns after being resumed. The caller set
/// the state to `Blocked` and registered with its waker first (under the waker's lock, with
/// interrupts off), so a wake-up from another CPU in between cannot be lost.
pub fn block_current() {
    let mut cpu = IrqGuard::new();
    let thread = SCHED_LOCAL.get(&cpu).current_thread().expect("blocking outside a thread");
    switch_out(&thread, &mut cpu);
}

/// Runs `f` inside this CPU's reaping window: a thread or process reference `f` drops may
/// be the last, and [`wait_reaps_done`] waits until its memory is freed.
fn reaping(cpu: &IrqGuard, f: impl FnOnce()) {
    let sched = SCHED.get(cpu);
    sched.reaping.store(true, Ordering::SeqCst);
    f();
    sched.reaping.store(false, Ordering::Release);
}

/// Waits (bounded, 1 s) until no CPU is in the middle of reaping an exited thread, so that a
/// process's last reference seen dropped also means its last thread's memory is freed (the
/// thread holds the process, and drops that reference before its own allocation goes).
pub fn wait_reaps_done() {
    core::sync::atomic::fence(Ordering::SeqCst);
    for cpu in percpu::all() {
        fw::time::spin_until(0, 1_000_000_000, || !state_of(cpu).reaping.load(Ordering::Acquire));
    }
}

/// Ends the current thread: never returns.
///
/// Nothing owned may stay on this stack: the frame is never unwound, so a reference kept
/// here would never be dropped (each one used to keep a whole thread and its kernel stack
/// alive). The CPU's `current` slot keeps the thread alive until the scheduler context has
/// switched away from its stack and reaps it.
pub fn exit_current() -> ! {
    x86_64::instructions::interrupts::disable();
    // Owns nothing (a flag): fine to leave on a stack that is never unwound.
    let mut cpu = IrqGuard::new();
    let thread = SCHED_LOCAL.get(&cpu).current_thread().expect("exit outside a thread");
    thread.set_state(ThreadState::Exited);
    let raw: *const Thread = Arc::as_ptr(&thread);
    drop(thread);
    // SAFETY: `current` on this CPU still holds a reference (only this CPU's scheduler
    // context takes it, after the switch below), so the thread outlives the call.
    switch_out(unsafe { &*raw }, &mut cpu);
    unreachable!("an exited thread was resumed");
}

/// Registers a timed event on this CPU (checked every tick).
pub fn add_timed(deadline_ns: u64, thread: Arc<Thread>, kind: TimedKind) {
    let cpu = IrqGuard::new();
    SCHED.get(&cpu).timed.lock().push(TimedEvent { deadline_ns, thread, kind });
    rearm_timer(&cpu);
}

/// Drops timed events of a thread (when it exits).
pub fn cancel_timed(thread: &Thread) {
    {
        for cpu in percpu::all() {
            state_of(cpu).timed.lock().retain(|e| e.thread.tid != thread.tid);
        }
    }
}

/// Drops the thread's pending `cap_enter` timeout (its wait ended some other way).
pub fn cancel_wake(thread: &Thread) {
    let cpu = IrqGuard::new();
    SCHED
        .get(&cpu)
        .timed
        .lock()
        .retain(|e| !(e.thread.tid == thread.tid && matches!(e.kind, TimedKind::Wake)));
}

/// Timed events one tick expires at most (bounded, allocation-free work per interrupt).
const MAX_EXPIRED_PER_TICK: usize = 16;

/// Timer tick on this CPU (after EOI): expire timed events; when others are waiting, the
/// running thread's slice (one tick period) is used up: a thread interrupted in ring 3 is
/// switched out here, one interrupted in the kernel at its next [`preempt_point`] (the tick
/// may have interrupted it holding a lock, so it cannot switch here). `cpu` is the timer
/// handler's guard.
pub fn tick(from_user: bool, cpu: &mut IrqGuard) {
    let me = percpu::current(cpu);
    // Old vectors of interrupt sources moved away from this CPU: released once its LAPIC
    // holds nothing on them (only this CPU can read its own IRR and ISR).
    fw::arch::x86_64::vector_space::drain_retired(me.index);
    let now = fw::time::now_ns();
    // A kernel wait's deadline is served by this interrupt (the waiter checks the time and
    // arms again if it must): armed again, a past deadline would fire at once, over and over.
    if me.oneshot.kernel_wake_ns.load(Ordering::Relaxed) <= now {
        me.oneshot.kernel_wake_ns.store(oneshot::NONE, Ordering::Relaxed);
    }
    // No allocation here: this runs in interrupt context, possibly on top of kernel code that
    // holds the heap lock. Expired events move to a fixed array (the rest wait a tick).
    let mut expired: [Option<TimedEvent>; MAX_EXPIRED_PER_TICK] =
        [const { None }; MAX_EXPIRED_PER_TICK];
    let mut count = 0;
    {
        let mut timed = SCHED.get(cpu).timed.lock();
        let mut i = 0;
        while i < timed.len() && count < MAX_EXPIRED_PER_TICK {
            if timed[i].deadline_ns <= now {
                expired[count] = Some(timed.swap_remove(i));
                count += 1;
            } else {
                i += 1;
            }
        }
    }
    for e in expired.iter_mut().take(count).filter_map(Option::take) {
        match e.kind {
            TimedKind::Wake => wake(&e.thread),
            TimedKind::SleepDone { user_data } => {
                e.thread.post(user_data, keel_abi::Status::Ok, [0, 0]);
            }
        }
    }
    // Tickless, the slice ends at its own deadline (periodic: at every tick). An ended slice
    // is renewed one slice from now, as the next tick would come: a thread in the kernel
    // runs on to its preemption point, a preempted one is replaced.
    let slice_over =
        !lapic::tickless() || now >= SCHED.get(cpu).slice_end_ns.load(Ordering::Relaxed);
    if lapic::tickless() && slice_over {
        SCHED.get(cpu).slice_end_ns.store(now + slice_ns(), Ordering::Relaxed);
    }
    rearm_timer(cpu);
    if !slice_over {
        return;
    }
    if SCHED.get(cpu).run_queue.lock().is_empty() {
        return;
    }
    if let Some(t) = SCHED_LOCAL.get(cpu).current_thread() {
        if !from_user {
            if !SCHED.get(cpu).need_resched.swap(true, Ordering::Relaxed) {
                SCHED.get(cpu).need_resched_at.store(rdtsc(), Ordering::Relaxed);
            }
        } else {
            t.requeue.store(true, Ordering::Release);
            t.set_state(ThreadState::Runnable);
            SCHED.get(cpu).preemptions.fetch_add(1, Ordering::Relaxed);
            switch_out(&t, cpu);
        }
    }
}

/// Leaves the CPU and comes back through the run queue of the thread's (possibly new) home.
/// Returns with interrupts off.
pub fn yield_current() {
    x86_64::instructions::interrupts::disable();
    let mut cpu = IrqGuard::new();
    if let Some(t) = SCHED_LOCAL.get(&cpu).current_thread() {
        t.requeue.store(true, Ordering::Release);
        t.set_state(ThreadState::Runnable);
        switch_out(&t, &mut cpu);
    }
}

/// A safe point in a thread's kernel work (no lock held, interrupts on): if the tick found
/// this thread's slice used up while others wait on its CPU, leave the CPU now and come back
/// through the run queue. Returns with interrupts on, possibly on another CPU (a thread whose
/// home changed resumes there). Does nothing with interrupts off (the caller may hold a lock).
/// True when it left the CPU.
pub fn preempt_point() -> bool {
    if !x86_64::instructions::interrupts::are_enabled() {
        return false;
    }
    let requested = {
        let cpu = IrqGuard::new();
        let requested = SCHED.get(&cpu).need_resched.swap(false, Ordering::Relaxed);
        if requested {
            SCHED.get(&cpu).kernel_preemptions.fetch_add(1, Ordering::Relaxed);
            let delay =
                rdtsc().saturating_sub(SCHED.get(&cpu).need_resched_at.load(Ordering::Relaxed));
            SCHED.get(&cpu).max_resched_delay_tsc.fetch_max(delay, Ordering::Relaxed);
        }
        requested
    };
    if requested {
        yield_current();
        x86_64::instructions::interrupts::enable();
    }
    requested
}

/// The boot CPU's loop while user programs run: schedule threads, sleep when idle, until
/// `done()` or the deadline.
pub fn run_until(done: impl Fn() -> bool, timeout_ns: u64) -> bool {
    // `u64::MAX`: no deadline.
    let deadline = fw::time::now_ns().saturating_add(timeout_ns);
    loop {
        x86_64::instructions::interrupts::disable();
        if schedule_once() {
            continue;
        }
        if done() {
            x86_64::instructions::interrupts::enable();
            return true;
        }
        if fw::time::now_ns() > deadline {
            x86_64::instructions::interrupts::enable();
            return false;
        }
        idle_halt(deadline);
    }
}

/// Tickless: wakes the boot CPU from its idle halt. Its `run_until` polls state other CPUs
/// change (a process destroyed) and, with no tick, would otherwise see it only at its
/// deadline. Periodic: nothing (the next tick polls).
pub fn wake_boot_cpu() {
    nudge(0);
}

/// Tickless: interrupts CPU `index` (another one) so that it passes its idle loop once more:
/// halted with nothing armed, it would otherwise not run its housekeeping (releasing retired
/// vectors) until something else woke it. Periodic: nothing (its next tick does it).
pub fn nudge(index: u32) {
    if lapic::tickless() && index != percpu::current_index() {
        kick(index);
    }
}

/// Sends IPI 49 to CPU `index` in either timer mode (see `space::on_wake_ipi`).
pub fn kick(index: u32) {
    if let Some(cpu) = percpu::cpu(index) {
        let _ = lapic::send(
            Ipi::fixed(IPI_VECTOR).to(ApicId::new(cpu.apic_id.load(Ordering::Acquire))),
        );
    }
}

/// The length of a time slice: one tick period.
fn slice_ns() -> u64 {
    1_000_000_000 / lapic::tick_hz()
}

/// The clock queue waits are measured in, in slices: the CPU's tick count, or (tickless,
/// where ticks are sparse) the time since boot in slice lengths.
fn slice_clock(cpu: &percpu::PerCpu) -> u64 {
    if lapic::tickless() {
        fw::time::now_ns() / slice_ns()
    } else {
        cpu.lapic.timer_ticks.load(Ordering::Relaxed)
    }
}

/// How often a busy CPU's timer fires at the least (tickless): a quarter of the lockup bound
/// (its watcher must see it move well within the bound), 250 ms with the detector off.
pub fn watchdog_ns() -> u64 {
    match lockup::bound_ms() {
        0 => 250_000_000,
        ms => ms * 250_000,
    }
}

/// Tickless: arms this CPU's timer for its earliest deadline: the first timed event (sleep
/// expiries and `cap_enter` timeouts), a kernel wait's wake-up, and, unless halted in an idle
/// loop, the running thread's slice end when another thread waits here and the busy
/// watchdog. An idle CPU with no timed event has nothing armed. Interrupts off.
pub fn rearm_timer(cpu: &IrqGuard) {
    if !lapic::tickless() {
        return;
    }
    let me = percpu::current(cpu);
    let mut next = wake_deadline(me, SCHED.get(cpu));
    if !me.oneshot.idle.load(Ordering::Relaxed) {
        if SCHED_LOCAL.get(cpu).has_current() && !SCHED.get(cpu).run_queue.lock().is_empty() {
            next = next.min(SCHED.get(cpu).slice_end_ns.load(Ordering::Relaxed));
        }
        let since = me.oneshot.busy_since_ns.load(Ordering::Relaxed);
        let fired = me.oneshot.last_fire_ns.load(Ordering::Relaxed);
        next = next.min(since.max(fired) + watchdog_ns());
    }
    oneshot::program(me, next);
}

/// The earliest wake-up this CPU owes: its first timed event or a kernel wait's deadline.
fn wake_deadline(me: &percpu::PerCpu, sched: &CpuSched) -> u64 {
    let timed = sched.timed.lock().iter().map(|e| e.deadline_ns).min();
    timed.unwrap_or(oneshot::NONE).min(me.oneshot.kernel_wake_ns.load(Ordering::Relaxed))
}

/// An idle loop's halt (interrupts off on entry, on at return): tickless, the CPU is
/// published as idle (the lockup watcher skips it) and its timer armed only for what it owes
/// (`wake_ns`, [`oneshot::NONE`] for nothing); periodic, a plain `sti; hlt`.
pub fn idle_halt(wake_ns: u64) {
    if !lapic::tickless() {
        x86_64::instructions::interrupts::enable_and_hlt();
        return;
    }
    {
        let cpu = IrqGuard::new();
        let me = percpu::current(&cpu);
        // With no tick, the way into an idle halt is where this CPU releases the old vectors
        // of sources moved away from it (see `tick`).
        fw::arch::x86_64::vector_space::drain_retired(me.index);
        me.oneshot.kernel_wake_ns.store(wake_ns, Ordering::Relaxed);
        me.oneshot.idle.store(true, Ordering::Release);
        rearm_timer(&cpu);
    }
    // `sti; hlt` as a pair: an interrupt arriving between them still wakes the hlt.
    x86_64::instructions::interrupts::enable_and_hlt();
    {
        let cpu = IrqGuard::new();
        let me = percpu::current(&cpu);
        me.oneshot.kernel_wake_ns.store(oneshot::NONE, Ordering::Relaxed);
        me.oneshot.busy_since_ns.store(fw::time::now_ns(), Ordering::Relaxed);
        me.oneshot.idle.store(false, Ordering::Release);
        me.oneshot.idle_exits.fetch_add(1, Ordering::Release);
        rearm_timer(&cpu);
    }
}
