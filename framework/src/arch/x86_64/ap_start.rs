//! Starting the application processors.
//!
//! The boot CPU prepares one *start slot* per AP — its APIC ID, stack, GDT/TSS and per-CPU
//! block, all from frames — in a table sorted by APIC ID, then wakes the APs:
//!
//! * **parallel** (default): INIT to every AP, one 10 ms wait, INIT de-assert and SIPI to
//!   every AP, one 200 µs wait, a second SIPI to those not yet arrived; then it waits for
//!   all of them together. The spec's delays are paid once per machine, not once per AP.
//! * **serial** (`smp_bringup=serial`): the same sequence for one AP at a time, waiting for
//!   it to come online before the next (kept for comparison).
//!
//! Each AP runs the shared trampoline, reads its own APIC ID (CPUID 0BH, else CPUID 1) and
//! claims the slot with that ID (`keel_platform::startup`). The boot CPU abandons slots whose
//! AP never claimed them; an AP arriving after that finds its slot abandoned and parks in
//! the trampoline, so a late AP can never run with another AP's parameters.

use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use keel_apic::{ApicId, Ipi, LapicMode};
use keel_platform::startup::{
    find_by_apic_id, sorted_unique, ApicKeyed, SlotState, StartSlotState,
};
use keel_platform::{CpuState, Platform};
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;
use x86_64::PhysAddr;

use super::percpu::{self, ApBlocks, ApMemoryShortage, AP_FRAME_BYTES, MAX_CPUS};
use super::trampoline::{self, TrampolineParams};
use super::{cpu, lapic, trap_entry};
use crate::mm::paging;
use crate::time;

/// INIT assert to INIT de-assert (and the first SIPI right after): the MP spec's 10 ms.
const INIT_DELAY_US: u64 = 10_000;
/// First SIPI to the second one, sent only to APs that have not arrived by then (200 µs).
const SIPI_DELAY_US: u64 = 200;
/// How long APs may make no progress at all (no slot claimed, none settled) before the boot
/// CPU abandons the unclaimed ones. Progress-based, so a 1,024-vCPU machine on two host
/// cores that starts APs slowly but steadily is never cut off, while a dead AP costs this
/// once, not once per AP.
const STALL_TIMEOUT_NS: u64 = 5_000_000_000;
/// Serial: how long one AP may take to claim its slot before it is abandoned; as long as the
/// parallel path lets the whole machine stall. (1 s was too short for 1,024 vCPUs on two
/// loaded host cores: a woken vCPU thread sometimes waited longer for a time slice, and its
/// AP arrived after its slot was abandoned and parked.)
const AP_ARRIVAL_TIMEOUT_NS: u64 = STALL_TIMEOUT_NS;

/// How the APs are started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BringUp {
    Parallel,
    Serial,
}

impl BringUp {
    /// From the `smp_bringup=` command-line value (absent: parallel).
    pub fn from_option(value: Option<&str>) -> Result<BringUp, &str> {
        match value {
            None | Some("parallel") => Ok(BringUp::Parallel),
            Some("serial") => Ok(BringUp::Serial),
            Some(other) => Err(other),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BringUp::Parallel => "parallel",
            BringUp::Serial => "serial",
        }
    }
}

/// Result of bringing up one platform CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApOutcome {
    Online,
    /// Its APIC ID cannot be addressed in the chosen mode.
    Unreachable,
    /// Never claimed its slot (abandoned).
    NoArrival,
    /// Claimed its slot but never reported online.
    NoOnline,
    ApicIdMismatch,
    ModeFailure,
    /// Not enabled, or beyond [`MAX_CPUS`].
    NotStarted,
    OutOfMemory(ApMemoryShortage),
}

/// One line of the SMP report.
pub struct CpuReport {
    pub index: u32,
    pub apic_id: u32,
    pub outcome: ApOutcome,
    /// From the first IPI of its start sequence (parallel: of the whole batch) to online.
    pub bringup_ns: u64,
}

/// Why a claimed AP gave up.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ApFailure {
    Mode,
    ApicId,
}

/// Everything one AP needs, found by its APIC ID.
struct StartSlot {
    apic_id: u32,
    index: u32,
    state: StartSlotState,
    blocks: ApBlocks,
    use_deadline: bool,
    /// The boot CPU's LAPIC timer rate, the AP's calibration reference.
    reference_hz: u64,
    /// TSC at the start of this AP's sequence, and when it came online.
    start_tsc: AtomicU64,
    online_tsc: AtomicU64,
    /// Set once, by the AP, before it marks the slot failed.
    failure: spin::Once<ApFailure>,
}

impl ApicKeyed for StartSlot {
    fn apic_id(&self) -> u32 {
        self.apic_id
    }
}

/// The published slot table (leaked: a late AP may look it up at any time).
static TABLE: AtomicPtr<StartSlot> = AtomicPtr::new(core::ptr::null_mut());
static TABLE_LEN: AtomicUsize = AtomicUsize::new(0);
/// APs that found no slot of their own, or found it abandoned, and parked.
static PARKED: AtomicU64 = AtomicU64::new(0);

/// The stacks the trampoline lookup runs on, one per bucket lock.
#[repr(C, align(16))]
struct LookupStacks(UnsafeCell<[u8; trampoline::LOOKUP_BUCKETS << trampoline::LOOKUP_STACK_SHIFT]>);

// SAFETY: Rust never reads or writes the bytes (only their address is taken); the
// trampoline's lookup code runs on bucket `b`'s stack only while holding bucket `b`'s lock.
unsafe impl Sync for LookupStacks {}

static LOOKUP_STACKS: LookupStacks = LookupStacks(UnsafeCell::new(
    [0; trampoline::LOOKUP_BUCKETS << trampoline::LOOKUP_STACK_SHIFT],
));

fn table() -> &'static [StartSlot] {
    let ptr = TABLE.load(Ordering::Acquire);
    if ptr.is_null() {
        return &[];
    }
    // SAFETY: `publish` stores a leaked, never-modified slice's pointer after its length.
    unsafe { core::slice::from_raw_parts(ptr, TABLE_LEN.load(Ordering::Acquire)) }
}

fn publish(slots: &'static [StartSlot]) {
    debug_assert!(sorted_unique(slots));
    TABLE_LEN.store(slots.len(), Ordering::Release);
    TABLE.store(slots.as_ptr() as *mut StartSlot, Ordering::Release);
}

/// APs that parked in the trampoline (no slot, or a slot abandoned before they arrived).
pub fn parked_count() -> u64 {
    PARKED.load(Ordering::Acquire)
}

/// This CPU's APIC ID from CPUID: leaf 0BH's x2APIC ID when the leaf exists, else the 8-bit
/// initial APIC ID of leaf 1. Needs no LAPIC access, so it works before the LAPIC is set up.
fn own_apic_id() -> u32 {
    let max_leaf = core::arch::x86_64::__cpuid(0).eax;
    if max_leaf >= 0x0B {
        let topology = core::arch::x86_64::__cpuid_count(0x0B, 0);
        if topology.ebx & 0xFFFF != 0 {
            return topology.edx;
        }
    }
    core::arch::x86_64::__cpuid(1).ebx >> 24
}

/// What the lookup hands back to the trampoline (RAX, RDX): the AP's stack top and slot.
#[repr(C)]
struct SlotGrant {
    stack_top: u64,
    slot: u64,
}

/// Runs in the trampoline (trampoline page tables, no GS, no IDT) under a bucket lock: find this
/// AP's slot by its own APIC ID and claim it. Zero stack = park. Must not fault or panic.
extern "C" fn ap_claim_slot() -> SlotGrant {
    let id = own_apic_id();
    match find_by_apic_id(table(), id) {
        Some(slot) if slot.state.claim().is_ok() => {
            SlotGrant { stack_top: slot.blocks.stack_top, slot: slot as *const StartSlot as u64 }
        }
        _ => {
            PARKED.fetch_add(1, Ordering::AcqRel);
            SlotGrant { stack_top: 0, slot: 0 }
        }
    }
}

/// Starts every enabled AP the platform lists that Keel can address and has memory for.
pub fn start_aps(
    platform: &Platform,
    mode: LapicMode,
    use_deadline: bool,
    how: BringUp,
) -> Vec<CpuReport> {
    let bsp_apic = percpu::with_current(|me| me.apic_id.load(Ordering::Acquire));
    match trampoline::trampoline_frame() {
        Ok(frame) => ev!("smp.trampoline_frame", format_args!("{frame:#x}")),
        Err(why) => {
            log::error!("smp: no low memory for the AP trampoline ({why}); application processors not started");
            ev!("smp.trampoline", "unavailable");
            let others = platform.cpus().iter().filter(|c| c.apic_id != bsp_apic);
            let not_started = |c: &keel_platform::CpuEntry| CpuReport {
                index: c.index.0,
                apic_id: c.apic_id,
                outcome: ApOutcome::NotStarted,
                bringup_ns: 0,
            };
            return others.map(not_started).collect();
        }
    }
    trampoline::install();
    let mut reports = Vec::with_capacity(platform.cpus().len());
    let mut wanted = Vec::with_capacity(platform.cpus().len());
    let (mut disabled, mut unreachable) = (0usize, 0usize);
    for cpu in platform.cpus().iter().filter(|c| c.apic_id != bsp_apic) {
        let (index, apic_id) = (cpu.index.0, cpu.apic_id);
        let skip = |outcome| CpuReport { index, apic_id, outcome, bringup_ns: 0 };
        if cpu.state != CpuState::Enabled {
            disabled += 1;
            reports.push(skip(ApOutcome::NotStarted));
        } else if !keel_platform::Platform::is_reachable(apic_id, mode) {
            unreachable += 1;
            reports.push(skip(ApOutcome::Unreachable));
        } else if index as usize >= MAX_CPUS {
            reports.push(skip(ApOutcome::NotStarted));
        } else {
            wanted.push((index, apic_id));
        }
    }
    if disabled > 0 {
        log::info!("smp: {disabled} online-capable CPUs are not enabled; not started");
    }
    if unreachable > 0 {
        log::warn!("smp: {unreachable} CPUs have APIC IDs above 254, which xAPIC mode cannot address; skipped");
    }
    let prepare_start = time::now_ns();
    let slots = prepare_slots(&wanted, use_deadline, &mut reports);
    ev!("smp.prepare_us", (time::now_ns() - prepare_start) / 1000);
    publish(slots);
    trampoline::set_params(TrampolineParams {
        cr3: 0,
        nx: cpu::features().nx as u64,
        entry: ap_entry as *const () as u64,
        lookup: ap_claim_slot as *const () as u64,
        // Only the address is taken here; each bucket's lock serialises its stack's users.
        lookup_stacks: LOOKUP_STACKS.0.get() as u64,
    });
    let abandoned = late_ap::abandon_chosen_slot(slots);
    match how {
        BringUp::Parallel => start_parallel(slots),
        BringUp::Serial => slots.iter().for_each(start_serial),
    }
    if abandoned {
        // The abandoned AP was still sent its SIPIs; give it time to find out and park.
        time::spin_until(0, STALL_TIMEOUT_NS, || parked_count() > 0);
    }
    reports.extend(slots.iter().map(report_of));
    reports.sort_unstable_by_key(|r| r.index);
    reports
}

/// Memory for every wanted AP (one contiguous run when RAM has it), as a slot table sorted
/// by APIC ID. APs that get no memory are reported, never started.
fn prepare_slots(
    wanted: &[(u32, u32)],
    use_deadline: bool,
    reports: &mut Vec<CpuReport>,
) -> &'static [StartSlot] {
    let region = percpu::reserve_ap_region(wanted.len());
    let reference_hz = percpu::with_current(|me| me.lapic.timer_hz.load(Ordering::Relaxed));
    let mut slots = Vec::with_capacity(wanted.len());
    let mut short = Vec::new();
    for (i, &(index, apic_id)) in wanted.iter().enumerate() {
        match percpu::allocate_ap(index, region.map(|r| r + (i * AP_FRAME_BYTES) as u64)) {
            Ok(blocks) => slots.push(StartSlot {
                apic_id,
                index,
                state: StartSlotState::new(),
                blocks,
                use_deadline,
                reference_hz,
                start_tsc: AtomicU64::new(0),
                online_tsc: AtomicU64::new(0),
                failure: spin::Once::new(),
            }),
            Err(why) => {
                short.push(index);
                reports.push(CpuReport {
                    index,
                    apic_id,
                    outcome: ApOutcome::OutOfMemory(why),
                    bringup_ns: 0,
                });
            }
        }
    }
    if !short.is_empty() {
        log::error!(
            "smp: out of memory for {} CPUs (each needs {} KiB of frames and up to {} KiB of heap); not started: index {}",
            short.len(),
            AP_FRAME_BYTES / 1024,
            percpu::AP_HEAP_BYTES / 1024,
            keel_platform::startup::Ranges(&short)
        );
    }
    ev!("smp.ap_frame_bytes", AP_FRAME_BYTES);
    ev!("smp.ap_memory_contiguous", if region.is_some() { "yes" } else { "no" });
    ev!("smp.out_of_memory", short.len());
    slots.sort_unstable_by_key(|s| s.apic_id);
    Vec::leak(slots)
}

fn send(ipi: Ipi, apic_id: u32) {
    if let Err(e) = lapic::send(ipi) {
        log::error!("smp: IPI to APIC ID {apic_id} failed: {e:?}");
    }
}

/// INIT and SIPIs to every AP at once, the spec's delays paid once.
fn start_parallel(slots: &'static [StartSlot]) {
    let sipi = Ipi::startup(trampoline::sipi_page());
    let start = cpu::rdtsc();
    for s in slots {
        s.start_tsc.store(start, Ordering::Relaxed);
        send(Ipi::init_assert().to(ApicId::new(s.apic_id)), s.apic_id);
    }
    time::delay_us(INIT_DELAY_US);
    for s in slots {
        send(Ipi::init_deassert().to(ApicId::new(s.apic_id)), s.apic_id);
    }
    for s in slots {
        send(sipi.to(ApicId::new(s.apic_id)), s.apic_id);
    }
    time::delay_us(SIPI_DELAY_US);
    for s in slots.iter().filter(|s| s.state.get() == SlotState::Waiting) {
        send(sipi.to(ApicId::new(s.apic_id)), s.apic_id);
    }
    wait_until_settled(slots);
}

/// Waits while APs make progress; after a stall, abandons the unclaimed slots (their APs
/// park if they ever arrive) and gives the claimed ones one more stall period.
fn wait_until_settled(slots: &[StartSlot]) {
    let mut last = (usize::MAX, 0u64);
    let mut abandoned = false;
    loop {
        let (mut settled, mut claimed) = (0, 0);
        for s in slots {
            match s.state.get() {
                SlotState::Waiting => {}
                SlotState::Claimed => claimed += 1,
                _ => settled += 1,
            }
        }
        if settled == slots.len() {
            return;
        }
        let progress = settled * 2 + claimed;
        let now = time::now_ns();
        if progress != last.0 {
            last = (progress, now);
        } else if now - last.1 > STALL_TIMEOUT_NS {
            if abandoned {
                return;
            }
            let gave_up = slots.iter().filter(|s| s.state.abandon().is_ok()).count();
            if gave_up > 0 {
                log::error!("smp: {gave_up} APs did not arrive; abandoned");
            }
            abandoned = true;
            last = (usize::MAX, now);
        }
        time::delay_us(50);
    }
}

/// INIT, SIPI, SIPI to one AP, then wait for it. An already abandoned slot's AP is still
/// woken (the late-AP proof), but not waited for.
fn start_serial(s: &StartSlot) {
    let target = ApicId::new(s.apic_id);
    s.start_tsc.store(cpu::rdtsc(), Ordering::Relaxed);
    send(Ipi::init_assert().to(target), s.apic_id);
    time::delay_us(INIT_DELAY_US);
    send(Ipi::init_deassert().to(target), s.apic_id);
    let sipi = Ipi::startup(trampoline::sipi_page()).to(target);
    send(sipi, s.apic_id);
    time::delay_us(SIPI_DELAY_US);
    if s.state.get() == SlotState::Waiting {
        send(sipi, s.apic_id);
    }
    let arrived =
        time::spin_until(0, AP_ARRIVAL_TIMEOUT_NS, || s.state.get() != SlotState::Waiting);
    if !arrived && s.state.abandon().is_ok() {
        log::error!("smp: cpu index {} (APIC ID {}) did not arrive; abandoned", s.index, s.apic_id);
        return;
    }
    time::spin_until(0, STALL_TIMEOUT_NS, || s.state.settled());
}

fn report_of(s: &StartSlot) -> CpuReport {
    let outcome = match s.state.get() {
        SlotState::Online => ApOutcome::Online,
        SlotState::Waiting | SlotState::Abandoned => ApOutcome::NoArrival,
        SlotState::Claimed => ApOutcome::NoOnline,
        SlotState::Failed if s.failure.get() == Some(&ApFailure::Mode) => ApOutcome::ModeFailure,
        SlotState::Failed => ApOutcome::ApicIdMismatch,
    };
    let online = s.online_tsc.load(Ordering::Acquire);
    let bringup_ns =
        if online == 0 { 0 } else { time::tsc_to_ns(online - s.start_tsc.load(Ordering::Relaxed)) };
    CpuReport { index: s.index, apic_id: s.apic_id, outcome, bringup_ns }
}

fn fail(slot: &StartSlot, why: ApFailure) -> ! {
    slot.failure.call_once(|| why);
    let _ = slot.state.finish(false);
    crate::exit::halt_forever()
}

/// First Rust code on an AP after the lookup (its own stack, trampoline CR3).
extern "C" fn ap_entry(slot: &'static StartSlot) -> ! {
    // SAFETY: the kernel tables map everything this code touches, as the trampoline tables'
    // kernel half did; the identity mapping is no longer needed. The blocks were built for
    // this AP, and only this AP claimed the slot.
    unsafe {
        Cr3::write(
            PhysFrame::containing_address(PhysAddr::new(paging::kernel_pml4())),
            Cr3Flags::empty(),
        );
        percpu::install_ap(&slot.blocks);
    }
    trap_entry::init_idt();
    cpu::enable_protection();
    super::syscall_entry::init_cpu();
    let id = match lapic::init_ap() {
        Ok(id) => id,
        Err(e) => {
            log::error!("smp: cannot follow the boot CPU's LAPIC mode: {e:?}");
            fail(slot, ApFailure::Mode)
        }
    };
    if id.get() != slot.apic_id {
        log::error!(
            "smp: slot for APIC ID {} claimed by a CPU whose LAPIC says {}",
            slot.apic_id,
            id.get()
        );
        fail(slot, ApFailure::ApicId)
    }
    lapic::calibrate_timer_ap(slot.reference_hz);
    // The boot CPU's first call fixed the mode (tickless included); this follows it.
    lapic::start_tick(slot.use_deadline, lapic::tickless());
    #[cfg(feature = "scenarios")]
    if late_ap::lost_for_test(slot.apic_id) {
        // The lost-AP proof: the slot says online, the CPU never is (the verdict must fail).
        let _ = slot.state.finish(true);
        crate::exit::halt_forever()
    }
    #[cfg(feature = "scenarios")]
    if late_ap::wrong_mode_for_test(slot.apic_id) {
        // The wrong-mode proof: online with its LAPIC back in xAPIC mode, then halted with
        // interrupts off (it never touches the LAPIC again); the verdict must fail.
        x86_64::instructions::interrupts::disable();
        lapic::leave_x2apic_for_test();
        percpu::with_current(|me| me.online.store(true, Ordering::Release));
        let _ = slot.state.finish(true);
        crate::exit::halt_forever()
    }
    percpu::with_current(|me| me.online.store(true, Ordering::Release));
    slot.online_tsc.store(cpu::rdtsc(), Ordering::Release);
    let _ = slot.state.finish(true);
    super::smp::idle_loop()
}

/// The late-AP proof: one slot abandoned before any SIPI, so its AP arrives "late" by
/// construction and must park. Exists only in a kernel built with the scenarios; without
/// them no slot is ever abandoned before its AP was given the time to claim it.
mod late_ap {
    use super::StartSlot;

    #[cfg(feature = "scenarios")]
    static CHOSEN: spin::Once<u32> = spin::Once::new();
    #[cfg(feature = "scenarios")]
    static LOST: spin::Once<u32> = spin::Once::new();

    /// The AP of `apic_id` reports its slot online but never marks its per-CPU block online:
    /// a CPU lost without a report, which the kernel's accounting must catch.
    #[cfg(feature = "scenarios")]
    pub fn lose_silently(apic_id: u32) {
        LOST.call_once(|| apic_id);
    }

    /// Whether the AP of `apic_id` is the one [`lose_silently`] chose.
    #[cfg(feature = "scenarios")]
    pub fn lost_for_test(apic_id: u32) -> bool {
        LOST.get() == Some(&apic_id)
    }

    #[cfg(feature = "scenarios")]
    static WRONG_MODE: spin::Once<u32> = spin::Once::new();

    /// The AP of `apic_id` comes online with its LAPIC left in xAPIC mode on an x2APIC
    /// machine: a CPU in the wrong state, which the kernel's accounting must catch.
    #[cfg(feature = "scenarios")]
    pub fn leave_in_wrong_mode(apic_id: u32) {
        WRONG_MODE.call_once(|| apic_id);
    }

    /// Whether the AP of `apic_id` is the one [`leave_in_wrong_mode`] chose.
    #[cfg(feature = "scenarios")]
    pub fn wrong_mode_for_test(apic_id: u32) -> bool {
        WRONG_MODE.get() == Some(&apic_id)
    }

    /// Abandons the slot of `apic_id` before the SIPIs of the next [`super::start_aps`].
    #[cfg(feature = "scenarios")]
    pub fn abandon_before_sipi(apic_id: u32) {
        CHOSEN.call_once(|| apic_id);
    }

    /// Abandons the chosen slot if there is one; whether a slot was abandoned.
    #[cfg(feature = "scenarios")]
    pub fn abandon_chosen_slot(slots: &[StartSlot]) -> bool {
        let chosen = CHOSEN
            .get()
            .and_then(|&id| super::find_by_apic_id(slots, id))
            .filter(|s| s.state.abandon().is_ok());
        if let Some(slot) = chosen {
            log::warn!("smp: slot of APIC ID {} abandoned before its SIPI (test)", slot.apic_id);
            ev!("smp.abandoned_for_test", slot.apic_id);
        }
        chosen.is_some()
    }

    #[cfg(not(feature = "scenarios"))]
    pub fn abandon_chosen_slot(_: &[StartSlot]) -> bool {
        false
    }
}

#[cfg(feature = "scenarios")]
pub use late_ap::{abandon_before_sipi, leave_in_wrong_mode, lose_silently};
