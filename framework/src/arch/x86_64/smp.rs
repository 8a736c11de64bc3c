//! SMP: the vector-49 IPI mailbox, the AP idle loop, and the NMI stop used on panic.
//! Starting the APs is in `ap_start`.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use keel_apic::{ApicId, Ipi};
use spin::Mutex;

use super::eoi::InService;
use super::percpu::{self, IrqGuard, PerCpu};
use super::trap_entry::{TrapFrame, IPI_VECTOR};
use super::{cpu, lapic};
use crate::time;

pub use super::ap_start::{start_aps, ApOutcome, BringUp, CpuReport};

/// Work posted to a CPU: a plain function and one argument, run by the target's idle loop
/// with interrupts enabled (long work) — the IPI only wakes it.
#[derive(Clone, Copy)]
struct Work {
    func: fn(usize),
    arg: usize,
    /// The poster's ticket, taken while filling the slot: the ticket names this work and no
    /// other, whatever order concurrent posters run in.
    ticket: u64,
}

/// A CPU's incoming IPI requests. Senders to one target serialise on `send_lock`, so one
/// ping is outstanding per target and vector-49 interrupts for pings never coalesce.
pub struct Mailbox {
    send_lock: Mutex<()>,
    ping_requests: AtomicU64,
    ping_acks: AtomicU64,
    work: Mutex<Option<Work>>,
    work_posted: AtomicU64,
    work_done: AtomicU64,
}

impl Mailbox {
    /// An empty mailbox.
    pub const fn new() -> Self {
        Mailbox {
            send_lock: Mutex::new(()),
            ping_requests: AtomicU64::new(0),
            ping_acks: AtomicU64::new(0),
            work: Mutex::new(None),
            work_posted: AtomicU64::new(0),
            work_done: AtomicU64::new(0),
        }
    }

    /// Ping requests this CPU's handler acknowledged.
    #[cfg(feature = "scenarios")]
    pub fn pings_acked(&self) -> u64 {
        self.ping_acks.load(Ordering::Acquire)
    }
}

impl Default for Mailbox {
    fn default() -> Self {
        Self::new()
    }
}

/// IPI counters kept by senders (read by the smp scenarios).
#[cfg(feature = "scenarios")]
pub static PINGS_SENT: [AtomicU64; percpu::MAX_CPUS] =
    [const { AtomicU64::new(0) }; percpu::MAX_CPUS];

crate::cpu_local! {
    /// IPIs each CPU took on vector 49.
    pub static IPIS_RECEIVED: AtomicU64 = AtomicU64::new(0);
}

/// Vector 49: acknowledge pings (so the sender's round trip completes), close I/O ports an
/// `IoPorts` release revoked, wake the idle loop for posted work, and hand the kernel its
/// wake-up.
pub fn ipi_interrupt(token: InService, cpu: &IrqGuard) {
    IPIS_RECEIVED.get(cpu).fetch_add(1, Ordering::Relaxed);
    let me = percpu::current(cpu);
    super::io_bitmap::serve(cpu);
    let requested = me.mailbox.ping_requests.load(Ordering::Acquire);
    me.mailbox.ping_acks.store(requested, Ordering::Release);
    token.eoi();
    // The kernel's part: a thread queued here by another CPU needs the running one's slice
    // end armed (tickless), and a process ending elsewhere needs its kept tables left.
    (crate::upcall::get().wake_ipi)(cpu);
}

/// How the sender waits for a ping's acknowledgement.
#[cfg(feature = "scenarios")]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PingWait {
    /// A tight poll without PAUSE: the lowest latency when every vCPU has a host CPU (the
    /// benchmark). Under KVM, PAUSE loops trigger pause-loop exiting and the vCPU may be
    /// descheduled right when the acknowledgement lands.
    Tight,
    /// PAUSE in the poll: lets an overcommitted host run the target vCPU (all-to-all proofs
    /// with more vCPUs than host CPUs).
    Polite,
}

/// A ping not acknowledged within this is lost.
#[cfg(feature = "scenarios")]
static PING_TIMEOUT_NS: AtomicU64 = AtomicU64::new(5_000_000_000);

/// Sets how long a ping may stay unacknowledged before it counts as lost (default 5 s;
/// hundreds of vCPUs sharing a few host cores can leave a target unscheduled longer).
#[cfg(feature = "scenarios")]
pub fn set_ping_timeout_ms(ms: u64) {
    PING_TIMEOUT_NS.store(ms.saturating_mul(1_000_000), Ordering::Relaxed);
}

/// Sends one ping IPI from this CPU to `target` and waits for its handler to acknowledge it.
/// Returns the round trip in TSC ticks, or `None` on timeout. Only the scenarios ping: the
/// kernel's own IPI 49s are wake-ups and revocations, which wait for no acknowledgement.
#[cfg(feature = "scenarios")]
pub fn ping(target: &PerCpu, wait: PingWait) -> Option<u64> {
    let apic_id = ApicId::new(target.apic_id.load(Ordering::Acquire));
    let mailbox = &target.mailbox;
    let _serial = mailbox.send_lock.lock();
    let ticket = mailbox.ping_requests.fetch_add(1, Ordering::AcqRel) + 1;
    let start = cpu::rdtsc();
    if let Err(e) = lapic::send(Ipi::fixed(IPI_VECTOR).to(apic_id)) {
        log::error!("smp: cannot address cpu{} ({e:?})", target.index);
        return None;
    }
    PINGS_SENT[percpu::current_index() as usize].fetch_add(1, Ordering::Relaxed);
    // Tight: no PAUSE at all (the benchmark); Polite: PAUSE from the first poll.
    let timeout_ns = PING_TIMEOUT_NS.load(Ordering::Relaxed);
    let tight_ns = if wait == PingWait::Tight { timeout_ns } else { 0 };
    if !time::spin_until(tight_ns, timeout_ns, || {
        mailbox.ping_acks.load(Ordering::Acquire) >= ticket
    }) {
        return None;
    }
    Some(cpu::rdtsc() - start)
}

/// Runs `func(arg)` on CPU `target` (its idle loop, interrupts enabled) and returns a ticket
/// for [`wait_work`]. CPU 0 (the boot CPU) runs the proof itself and takes no posted work.
pub fn post_work(target: &PerCpu, func: fn(usize), arg: usize) -> u64 {
    let apic_id = ApicId::new(target.apic_id.load(Ordering::Acquire));
    let mailbox = &target.mailbox;
    let ticket = loop {
        let mut slot = mailbox.work.lock();
        if slot.is_none() {
            let ticket = mailbox.work_posted.fetch_add(1, Ordering::AcqRel) + 1;
            *slot = Some(Work { func, arg, ticket });
            break ticket;
        }
        drop(slot);
        core::hint::spin_loop();
    };
    let _serial = mailbox.send_lock.lock();
    lapic::send(Ipi::fixed(IPI_VECTOR).to(apic_id)).expect("online CPUs are addressable");
    ticket
}

/// Waits until `target` finished the work with `ticket` (or the timeout passes).
pub fn wait_work(target: &PerCpu, ticket: u64, timeout_ns: u64) -> bool {
    time::spin_until(0, timeout_ns, || target.mailbox.work_done.load(Ordering::Acquire) >= ticket)
}

/// The AP idle loop: sleep until an interrupt, run posted work.
pub(super) fn idle_loop() -> ! {
    // The idle loop is this CPU's own context and never runs anywhere else.
    let me = percpu::cpu(percpu::current_index()).expect("this CPU is installed");
    let upcalls = crate::upcall::get();
    loop {
        x86_64::instructions::interrupts::disable();
        if (upcalls.schedule_once)() {
            continue;
        }
        let work = me.mailbox.work.lock().take();
        match work {
            Some(w) => {
                x86_64::instructions::interrupts::enable();
                (w.func)(w.arg);
                // Tickets run in the order they were taken (one slot, filled under its lock).
                me.mailbox.work_done.fetch_max(w.ticket, Ordering::AcqRel);
            }
            // Tickless, published as idle and with nothing armed that it does not owe.
            None => (upcalls.idle_halt)(super::oneshot::NONE),
        }
    }
}

static STOPPED: AtomicU32 = AtomicU32::new(0);

/// What a CPU's NMI handler records outside panic stops (read by the lockup watcher).
pub struct NmiCounts {
    /// NMIs taken; incremented after [`NmiCounts::rip`] is written.
    pub nmis: AtomicU64,
    /// The RIP the last counted NMI interrupted.
    pub rip: AtomicU64,
}

crate::cpu_local! {
    /// Each CPU's NMI count and last interrupted RIP.
    pub static NMI_COUNTS: NmiCounts = NmiCounts { nmis: AtomicU64::new(0), rip: AtomicU64::new(0) };
}

/// NMI: during a panic stop, park this CPU; otherwise record the interrupted RIP and count
/// it (the lockup watcher reads both). No locks: an NMI can land anywhere, inside any lock's
/// critical section included.
pub fn nmi(frame: &mut TrapFrame, cpu: &IrqGuard) {
    if crate::panic::going_down() {
        STOPPED.fetch_add(1, Ordering::SeqCst);
        crate::exit::halt_forever();
    }
    if percpu::gs_ready() {
        let mine = NMI_COUNTS.get(cpu);
        mine.rip.store(frame.rip, Ordering::Relaxed);
        // Release: whoever sees the count sees the RIP it counts.
        mine.nmis.fetch_add(1, Ordering::Release);
    }
}

/// CPUs parked by the panic NMI.
pub fn stopped_count() -> u32 {
    STOPPED.load(Ordering::SeqCst)
}

/// Stops every other online CPU with an NMI so the panic report is the only output; waits
/// briefly for them to park. One NMI per online CPU, never the all-but-self shorthand: CPUs
/// Keel never started (skipped, short of memory, beyond the limit) may still sit in firmware
/// code with no usable IDT, where an NMI triple-faults and resets the whole machine before
/// the report is printed.
pub fn stop_other_cpus() {
    if lapic::mode().is_none() {
        return;
    }
    let me = percpu::current_index_or_boot();
    let mut others = 0u32;
    for cpu in percpu::online().filter(|c| c.index != me) {
        let id = ApicId::new(cpu.apic_id.load(Ordering::Acquire));
        if lapic::send(Ipi::nmi().to(id)).is_ok() {
            others += 1;
        }
    }
    if others == 0 {
        return;
    }
    let start = cpu::rdtsc();
    let limit = time::ns_to_tsc(100_000_000).max(1_000_000);
    while STOPPED.load(Ordering::SeqCst) < others && cpu::rdtsc() - start < limit {
        core::hint::spin_loop();
    }
}

/// Number of online CPUs.
pub fn online_count() -> usize {
    percpu::online().count()
}

/// Used by proofs that want the list of online CPU blocks.
pub fn online_cpus() -> Vec<&'static PerCpu> {
    percpu::online().collect()
}
