//! SMP: starting the application processors (INIT / INIT de-assert / SIPI / SIPI, one AP at a
//! time, delays from the TSC), the vector-49 IPI mailbox, and the NMI stop used on panic.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use keel_apic::{ApicId, Ipi, LapicMode};
use keel_platform::{CpuState, Platform};
use spin::Mutex;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;
use x86_64::PhysAddr;

use super::interrupts::{TrapFrame, IPI_VECTOR};
use super::percpu::{self, ApBlocks, PerCpu, MAX_CPUS};
use super::trampoline::{self, TrampolineParams};
use super::{cpu, interrupts, lapic};
use crate::mm::paging;
use crate::time;

/// Kernel stack of each AP.
const AP_STACK_SIZE: usize = 64 * 1024;
/// INIT assert to INIT de-assert (and the first SIPI right after): the MP spec's 10 ms.
const INIT_DELAY_US: u64 = 10_000;
/// First SIPI to the second one, sent only when the AP has not arrived by then (200 µs).
const SIPI_DELAY_US: u64 = 200;
/// How long an AP may take to reach Rust after its second SIPI before it is skipped.
const AP_ARRIVAL_TIMEOUT_US: u64 = 1_000_000;
/// How long an arrived AP may take to calibrate and come online.
const AP_ONLINE_TIMEOUT_US: u64 = 2_000_000;

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
    pub fn pings_acked(&self) -> u64 {
        self.ping_acks.load(Ordering::Acquire)
    }
}

impl Default for Mailbox {
    fn default() -> Self {
        Self::new()
    }
}

/// IPI counters kept by senders.
pub static PINGS_SENT: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Vector 49: acknowledge pings (so the sender's round trip completes) and wake the idle
/// loop for posted work.
pub fn ipi_interrupt() {
    let me = percpu::current();
    me.ipis_received.fetch_add(1, Ordering::Relaxed);
    let requested = me.mailbox.ping_requests.load(Ordering::Acquire);
    me.mailbox.ping_acks.store(requested, Ordering::Release);
    lapic::eoi();
}

/// How the sender waits for a ping's acknowledgement.
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
const PING_TIMEOUT_NS: u64 = 5_000_000_000;

/// Sends one ping IPI from this CPU to `target` and waits for its handler to acknowledge it.
/// Returns the round trip in TSC ticks, or `None` on timeout.
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
    PINGS_SENT[percpu::current().index as usize].fetch_add(1, Ordering::Relaxed);
    // Tight: no PAUSE at all (the benchmark); Polite: PAUSE from the first poll.
    let tight_ns = if wait == PingWait::Tight { PING_TIMEOUT_NS } else { 0 };
    if !time::spin_until(tight_ns, PING_TIMEOUT_NS, || mailbox.ping_acks.load(Ordering::Acquire) >= ticket) {
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
fn idle_loop() -> ! {
    let me = percpu::current();
    loop {
        x86_64::instructions::interrupts::disable();
        if crate::task::sched::schedule_once() {
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
            // `sti; hlt` as a pair: an interrupt arriving between them still wakes the hlt.
            None => x86_64::instructions::interrupts::enable_and_hlt(),
        }
    }
}

static STOPPED: AtomicU32 = AtomicU32::new(0);

/// NMI: during a panic stop, park this CPU; otherwise count it.
pub fn nmi(_frame: &mut TrapFrame) {
    if crate::panic::going_down() {
        STOPPED.fetch_add(1, Ordering::SeqCst);
        crate::exit::halt_forever();
    }
    if percpu::gs_ready() {
        percpu::current().nmis.fetch_add(1, Ordering::Relaxed);
    }
}

/// CPUs parked by the panic NMI.
pub fn stopped_count() -> u32 {
    STOPPED.load(Ordering::SeqCst)
}

/// Stops every other CPU with an NMI (all-but-self shorthand) so the panic report is the only
/// output; waits briefly for them to park.
pub fn stop_other_cpus() {
    if lapic::mode().is_none() {
        return;
    }
    let others = percpu::online().count().saturating_sub(1) as u32;
    if others == 0 {
        return;
    }
    let _ = lapic::send(Ipi::nmi().to_all_but_self());
    let start = cpu::rdtsc();
    let limit = time::ns_to_tsc(100_000_000).max(1_000_000);
    while STOPPED.load(Ordering::SeqCst) < others && cpu::rdtsc() - start < limit {
        core::hint::spin_loop();
    }
}

/// What the boot CPU hands each AP (through the trampoline's argument).
struct ApStartup {
    blocks: ApBlocks,
    expected_apic_id: u32,
    arrived: AtomicBool,
    /// 0 = running, 1 = online, 2 = APIC ID mismatch, 3 = cannot follow the LAPIC mode.
    outcome: AtomicU32,
    use_deadline: bool,
}

/// Result of bringing up one platform CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApOutcome {
    Online,
    Unreachable,
    NoArrival,
    ApicIdMismatch,
    ModeFailure,
    NotStarted,
}

/// One line of the SMP report.
pub struct CpuReport {
    pub index: u32,
    pub apic_id: u32,
    pub outcome: ApOutcome,
    pub bringup_ns: u64,
}

/// Starts every enabled AP the platform lists, one at a time.
pub fn start_aps(platform: &Platform, mode: LapicMode, use_deadline: bool) -> Vec<CpuReport> {
    let mut reports = Vec::new();
    let bsp_apic = percpu::current().apic_id.load(Ordering::Acquire);
    match trampoline::trampoline_frame() {
        Ok(frame) => ev!("smp.trampoline_frame", format_args!("{frame:#x}")),
        Err(why) => {
            log::error!("smp: no low memory for the AP trampoline ({why}); application processors not started");
            ev!("smp.trampoline", "unavailable");
            let others = platform.cpus().iter().filter(|c| c.apic_id != bsp_apic);
            let not_started = |c: &keel_platform::CpuEntry| CpuReport { index: c.index.0, apic_id: c.apic_id, outcome: ApOutcome::NotStarted, bringup_ns: 0 };
            return others.map(not_started).collect();
        }
    }
    trampoline::install();
    for cpu in platform.cpus() {
        if cpu.apic_id == bsp_apic {
            continue;
        }
        let index = cpu.index.0;
        let mut report = CpuReport { index, apic_id: cpu.apic_id, outcome: ApOutcome::NotStarted, bringup_ns: 0 };
        if cpu.state != CpuState::Enabled {
            log::info!("smp: cpu index {index} apic-id {} is online-capable but not enabled; not started", cpu.apic_id);
            reports.push(report);
            continue;
        }
        if mode == LapicMode::XApic && cpu.apic_id > 254 {
            log::warn!(
                "smp: cpu index {index} has APIC ID {} which xAPIC mode cannot address (8-bit, 255 = broadcast); skipped",
                cpu.apic_id
            );
            report.outcome = ApOutcome::Unreachable;
            reports.push(report);
            continue;
        }
        if index as usize >= MAX_CPUS {
            log::warn!("smp: cpu index {index} beyond MAX_CPUS; skipped");
            reports.push(report);
            continue;
        }
        let start = time::now_ns();
        report.outcome = start_one(index, cpu.apic_id, use_deadline);
        report.bringup_ns = time::now_ns() - start;
        reports.push(report);
    }
    reports
}

fn start_one(index: u32, apic_id: u32, use_deadline: bool) -> ApOutcome {
    let stack = Box::leak(alloc::vec![0u8; AP_STACK_SIZE].into_boxed_slice());
    let startup: &'static ApStartup = Box::leak(Box::new(ApStartup {
        blocks: percpu::allocate_ap(index),
        expected_apic_id: apic_id,
        arrived: AtomicBool::new(false),
        outcome: AtomicU32::new(0),
        use_deadline,
    }));
    trampoline::set_params(TrampolineParams {
        cr3: 0,
        nx: cpu::features().nx as u64,
        entry: ap_entry as *const () as u64,
        stack_top: stack.as_ptr_range().end as u64 & !0xf,
        arg: startup as *const ApStartup as u64,
    });
    let target = ApicId::new(apic_id);
    let send = |ipi: Ipi| {
        if let Err(e) = lapic::send(ipi) {
            log::error!("smp: IPI to APIC ID {apic_id} failed: {e:?}");
        }
    };
    // INIT assert, INIT de-assert, then two SIPIs — to this AP only, never broadcast.
    send(Ipi::init_assert().to(target));
    time::delay_us(INIT_DELAY_US);
    send(Ipi::init_deassert().to(target));
    let sipi = Ipi::startup(trampoline::sipi_page()).to(target);
    send(sipi);
    time::delay_us(SIPI_DELAY_US);
    if !startup.arrived.load(Ordering::Acquire) {
        send(sipi);
        time::delay_us(SIPI_DELAY_US);
    }
    let deadline = time::now_ns() + AP_ARRIVAL_TIMEOUT_US * 1000;
    while !startup.arrived.load(Ordering::Acquire) {
        if time::now_ns() > deadline {
            log::error!("smp: cpu index {index} (APIC ID {apic_id}) did not arrive; skipped");
            return ApOutcome::NoArrival;
        }
        core::hint::spin_loop();
    }
    let deadline = time::now_ns() + AP_ONLINE_TIMEOUT_US * 1000;
    loop {
        match startup.outcome.load(Ordering::Acquire) {
            1 => return ApOutcome::Online,
            2 => return ApOutcome::ApicIdMismatch,
            3 => return ApOutcome::ModeFailure,
            _ if time::now_ns() > deadline => return ApOutcome::NoArrival,
            _ => core::hint::spin_loop(),
        }
    }
}

/// First Rust code on an AP (from the trampoline, on its own stack, trampoline CR3).
extern "C" fn ap_entry(startup: &'static ApStartup) -> ! {
    // SAFETY: the kernel tables map everything this code touches, as the trampoline tables'
    // kernel half did; the identity mapping is no longer needed.
    unsafe {
        Cr3::write(PhysFrame::containing_address(PhysAddr::new(paging::kernel_pml4())), Cr3Flags::empty());
        percpu::install_ap(&startup.blocks);
    }
    startup.arrived.store(true, Ordering::Release);
    interrupts::init_idt();
    cpu::enable_protection();
    super::syscall::init_cpu();
    let id = match lapic::init_ap() {
        Ok(id) => id,
        Err(e) => {
            log::error!("smp: cannot follow the boot CPU's LAPIC mode: {e:?}");
            startup.outcome.store(3, Ordering::Release);
            crate::exit::halt_forever();
        }
    };
    if id.get() != startup.expected_apic_id {
        log::error!("smp: expected APIC ID {} but this CPU is {}", startup.expected_apic_id, id.get());
        startup.outcome.store(2, Ordering::Release);
        crate::exit::halt_forever();
    }
    lapic::calibrate_timer();
    lapic::start_tick(startup.use_deadline);
    let me = percpu::current();
    me.online.store(true, Ordering::Release);
    startup.outcome.store(1, Ordering::Release);
    idle_loop()
}

/// Number of online CPUs.
pub fn online_count() -> usize {
    percpu::online().count()
}

/// Used by proofs that want the list of online CPU blocks.
pub fn online_cpus() -> Vec<&'static PerCpu> {
    percpu::online().collect()
}
