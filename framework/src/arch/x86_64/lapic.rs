//! The local APIC on this CPU: the two register backends (xAPIC MMIO, x2APIC MSR) behind
//! `keel_apic::Lapic`, boot-time mode selection, the timer, and the interrupt handlers for
//! the timer, error and spurious vectors.
//!
//! All register logic (encodings, sequences, mode plans) lives in `keel_apic` and is host-
//! tested against a fake LAPIC; this file only has the leaves that touch hardware. Dispatch
//! is static: [`Backend`] is an enum matched per access (no vtable on the EOI path), and it is
//! `!Send` because a LAPIC handle names *this* CPU's LAPIC.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use keel_apic::base::x2apic_lock_state;
use keel_apic::{
    bsp_mode, plan_for_ap, plan_to, ApicBase, ApicId, BspModeReason, IcrValue, Ipi, Lapic,
    LapicMode, LapicRegisters, LocalInit, ModeInputs, Register, TimerDivide,
};
use keel_platform::{CpuIndex, UID_UNKNOWN};
use spin::Once;

use super::cpu::{self, rdmsr, rdtsc, wrmsr, wrmsr_fence};
use super::eoi::InService;
use super::percpu::{self, IrqGuard};
use super::trap_entry::{LAPIC_ERROR_VECTOR, SPURIOUS_VECTOR, TIMER_VECTOR};
use crate::mm::paging::{map_physical, Caching};
use crate::time;

const IA32_APIC_BASE: u32 = 0x1B;
const IA32_TSC_DEADLINE: u32 = 0x6E0;
const IA32_ARCH_CAPABILITIES: u32 = 0x10A;
const IA32_XAPIC_DISABLE_STATUS: u32 = 0xBD;

/// Default timer tick rate on every CPU (documented in docs/lapic.md); `tick_hz=` on the
/// command line changes it for the whole machine.
pub const TICK_HZ: u64 = 100;
/// Tick rates `tick_hz=` accepts: at 1 kHz the period is still far above the tick's cost,
/// at 10 Hz the 16-divided count of a 1 GHz timer (6.25 million) fits its 32 bits.
pub const TICK_HZ_RANGE: core::ops::RangeInclusive<u64> = 10..=1000;
/// The tick rate every CPU arms; set once on the boot CPU before any tick starts.
static TICK_RATE_HZ: AtomicU64 = AtomicU64::new(TICK_HZ);

/// The tick rate of every CPU.
#[inline]
pub fn tick_hz() -> u64 {
    TICK_RATE_HZ.load(Ordering::Relaxed)
}

/// Sets the tick rate for the machine (before the boot CPU starts its tick); a rate outside
/// [`TICK_HZ_RANGE`] is refused and returned.
pub fn set_tick_hz(hz: u64) -> Result<(), u64> {
    if !TICK_HZ_RANGE.contains(&hz) {
        return Err(hz);
    }
    TICK_RATE_HZ.store(hz, Ordering::Relaxed);
    Ok(())
}

/// The divider used for one-shot/periodic modes.
const TIMER_DIVIDE: TimerDivide = TimerDivide::By16;

/// One CPU's LAPIC timer and interrupt counters, in its shared per-CPU part: written on that
/// CPU (set-up and handlers), read by anyone (reports, proofs).
pub struct CpuLapic {
    /// LAPIC timer interrupts taken (vector 48).
    pub timer_ticks: AtomicU64,
    /// Measured LAPIC timer input frequency (Hz, after the divider).
    pub timer_hz: AtomicU64,
    /// The LVT timer register as read back after the tick was started.
    pub timer_lvt: AtomicU32,
    /// LVT LINT0 and LINT1 as read back after the LAPIC was enabled.
    pub lint_lvt: [AtomicU32; 2],
    /// Spurious LAPIC interrupts (never EOI'd).
    pub spurious: AtomicU64,
    /// LAPIC error interrupts, and the last ESR value seen.
    pub errors: AtomicU64,
    pub last_esr: AtomicU32,
}

impl CpuLapic {
    /// Zeroed (const: per-CPU blocks are built in statics).
    pub const fn new() -> Self {
        CpuLapic {
            timer_ticks: AtomicU64::new(0),
            timer_hz: AtomicU64::new(0),
            timer_lvt: AtomicU32::new(0),
            lint_lvt: [AtomicU32::new(0), AtomicU32::new(0)],
            spurious: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_esr: AtomicU32::new(0),
        }
    }
}

impl Default for CpuLapic {
    fn default() -> Self {
        Self::new()
    }
}

/// The mode the boot CPU chose (APs follow it), with what that mode needs to reach the
/// registers.
#[derive(Clone, Copy)]
enum Chosen {
    /// xAPIC: the kernel virtual address of the MMIO page (mapped by the boot CPU).
    XApic { mmio: usize },
    /// x2APIC: MSRs only; the MMIO page is never mapped.
    X2Apic,
}

/// Set once by [`init_boot_cpu`].
static CHOSEN: Once<Chosen> = Once::new();

/// How every CPU's tick is produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickMode {
    /// The LAPIC timer reloads itself (divide [`TIMER_DIVIDE`]).
    Periodic,
    /// One-shot deadlines against the TSC, re-armed by each tick `period_tsc` ahead.
    TscDeadline { period_tsc: u64 },
    /// No tick: each CPU armed for its earliest deadline only (`oneshot`), in TSC-deadline
    /// mode when the CPU has it, else LAPIC one-shot.
    Tickless { tsc_deadline: bool },
}

/// Set by the first [`start_tick`] (the boot CPU); APs follow it.
static TICK_MODE: Once<TickMode> = Once::new();

/// The mode every LAPIC runs in (after [`init_boot_cpu`]).
pub fn mode() -> Option<LapicMode> {
    CHOSEN.get().map(|chosen| match chosen {
        Chosen::XApic { .. } => LapicMode::XApic,
        Chosen::X2Apic => LapicMode::X2Apic,
    })
}

/// Short lower-case name for evidence lines.
pub fn mode_name(mode: LapicMode) -> &'static str {
    match mode {
        LapicMode::XApic => "xapic",
        LapicMode::X2Apic => "x2apic",
    }
}

/// Register access for this CPU's LAPIC in the chosen mode.
pub(crate) enum Backend {
    /// xAPIC: 32-bit MMIO registers at 16-byte strides from the mapped base.
    XApic { base: *mut u32, _cpu_local: PhantomData<*const ()> },
    /// x2APIC: MSRs 0x800 + offset/16; the ICR is one 64-bit MSR.
    X2Apic { _cpu_local: PhantomData<*const ()> },
}

impl LapicRegisters for Backend {
    fn mode(&self) -> LapicMode {
        match self {
            Backend::XApic { .. } => LapicMode::XApic,
            Backend::X2Apic { .. } => LapicMode::X2Apic,
        }
    }

    #[inline]
    fn read(&mut self, reg: Register) -> u32 {
        match self {
            Backend::XApic { base, .. } => {
                let offset = reg.xapic_offset().expect("register absent in xAPIC mode") as usize;
                // SAFETY: `base` maps this CPU's 4 KiB xAPIC page uncached; `offset` is an
                // architectural register offset within it.
                unsafe { base.byte_add(offset).read_volatile() }
            }
            Backend::X2Apic { .. } => {
                let msr = reg.x2apic_msr().expect("register absent in x2APIC mode");
                // SAFETY: x2APIC is enabled on this CPU, so MSRs 0x800..0x8FF exist.
                unsafe { rdmsr(msr) as u32 }
            }
        }
    }

    #[inline]
    fn write(&mut self, reg: Register, value: u32) {
        match self {
            Backend::XApic { base, .. } => {
                let offset = reg.xapic_offset().expect("register absent in xAPIC mode") as usize;
                // SAFETY: as in `read`.
                unsafe { base.byte_add(offset).write_volatile(value) }
            }
            Backend::X2Apic { .. } => {
                let msr = reg.x2apic_msr().expect("register absent in x2APIC mode");
                // SAFETY: as in `read`; the register values come from keel_apic encoders.
                unsafe { wrmsr(msr, value as u64) }
            }
        }
    }

    fn write_icr(&mut self, icr: IcrValue) {
        match (self, icr) {
            (Backend::XApic { base, .. }, IcrValue::XApic { high, low }) => {
                let base = *base;
                // Two writes and nothing else: ICR high (the destination; the SDM only says
                // the *low* half may be lost in deep C-states, but another sender may have
                // changed it), then ICR low, which sends. No delivery-status poll: see
                // `keel_apic::DeliveryWait` (the bring-up IPIs poll in `Lapic::send`).
                // Interrupts off so an interrupt handler sending its own IPI cannot slip
                // between the two writes and leave its destination in ICR high.
                let _irqs_off = IrqGuard::new();
                // SAFETY: as in `read`; ICR high is 0x310, ICR low (the send) 0x300.
                unsafe {
                    base.byte_add(0x310).write_volatile(high);
                    base.byte_add(0x300).write_volatile(low);
                }
            }
            (Backend::X2Apic { .. }, IcrValue::X2Apic(v)) => {
                // One WRMSR, no delivery-status polling (x2APIC has none). The fence makes
                // earlier stores (e.g. a mailbox) visible before the IPI can arrive: WRMSR to
                // the x2APIC ICR is not serializing (SDM 11.12.3).
                wrmsr_fence();
                // SAFETY: x2APIC ICR MSR; `v` has no reserved bits (keel_apic's encoder).
                unsafe { wrmsr(keel_apic::regs::X2APIC_ICR_MSR, v) };
            }
            _ => unreachable!("ICR encoded for the other mode"),
        }
    }

    fn wait_icr_idle(&mut self) -> bool {
        let Backend::XApic { base, .. } = self else {
            // `IcrValue::delivery_wait` never asks in x2APIC mode: the bit does not exist.
            unreachable!("x2APIC has no delivery status");
        };
        // Bounded: a stuck bit is reported by the caller, not a hang.
        for _ in 0..ICR_IDLE_POLLS {
            ICR_STATUS_READS.fetch_add(1, Ordering::Relaxed);
            // SAFETY: ICR low of this CPU's mapped xAPIC page.
            if unsafe { base.byte_add(0x300).read_volatile() }
                & keel_apic::icr::ICR_DELIVERY_STATUS_PENDING
                == 0
            {
                return true;
            }
            core::hint::spin_loop();
        }
        false
    }
}

/// Upper bound of delivery-status reads per wait (far beyond the few bus cycles a send
/// takes on hardware; emulators never set the bit).
const ICR_IDLE_POLLS: u32 = 1_000_000;

/// Reads of the xAPIC delivery-status bit on all CPUs (evidence that fixed IPIs send
/// without one: only the bring-up IPIs add to it).
pub static ICR_STATUS_READS: AtomicU64 = AtomicU64::new(0);
/// Bring-up IPIs whose delivery status stayed "send pending".
pub static ICR_STUCK: AtomicU64 = AtomicU64::new(0);

/// A handle on the calling CPU's LAPIC. Framework-only: `Lapic::eoi` acknowledges whatever
/// is in service, so the kernel crate never holds a `Lapic` and ends an interrupt only by
/// consuming the dispatcher's [`InService`] token (the spurious vector never gets one).
pub(crate) fn local() -> Lapic<Backend> {
    let backend = match CHOSEN.get() {
        Some(Chosen::X2Apic) => Backend::X2Apic { _cpu_local: PhantomData },
        Some(Chosen::XApic { mmio }) => {
            Backend::XApic { base: *mmio as *mut u32, _cpu_local: PhantomData }
        }
        None => panic!("LAPIC used before mode selection"),
    };
    Lapic::new(backend)
}

/// Whether `vector` is in service on this CPU (its ISR bit, read from the LAPIC).
pub fn in_service(vector: u8) -> bool {
    local().is_in_service(vector)
}

/// Whether `vector` was accepted by this CPU's LAPIC and is still in its IRR or ISR: an
/// interrupt this CPU has not finished handling.
pub fn accepted_not_done(vector: u8) -> bool {
    let mut lapic = local();
    lapic.is_requested(vector) || lapic.is_in_service(vector)
}

/// ISR probe result, set once by the probe vector's handler: whether a delivered vector
/// showed in the ISR inside its handler (hardware and TCG: yes; PVM's emulated LAPIC: no).
/// Unset until `probe_isr` ran.
static ISR_PROBE: Once<IsrReadBack> = Once::new();

/// Whether this machine's LAPIC shows a vector in service while its handler runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IsrReadBack {
    Readable,
    Unreadable,
}

/// Vector 0xFD: a real delivery; records whether the LAPIC shows it in service.
pub fn isr_probe_interrupt(token: InService) {
    let seen = in_service(super::trap_entry::ISR_PROBE_VECTOR);
    ISR_PROBE.call_once(|| if seen { IsrReadBack::Readable } else { IsrReadBack::Unreadable });
    token.eoi();
}

/// Sends one self-IPI on the probe vector and waits for it (boot CPU, interrupts on). Where
/// the ISR cannot be read back, the "is it in service?" checks are skipped (and every device
/// vector is EOI'd, as without them): reported as `lapic.isr_readable`.
pub fn probe_isr() -> bool {
    let me = ApicId::new(percpu::with_current(|me| me.apic_id.load(Ordering::Acquire)));
    if send(Ipi::fixed(super::trap_entry::ISR_PROBE_VECTOR).to(me)).is_ok() {
        crate::time::spin_until(0, 100_000_000, || ISR_PROBE.is_completed());
    }
    isr_readable()
}

/// Whether ISR reads are trustworthy here (see [`probe_isr`]).
pub fn isr_readable() -> bool {
    ISR_PROBE.get() == Some(&IsrReadBack::Readable)
}

/// Whether an entry on `vector` may be a software `int` rather than a LAPIC delivery: its
/// ISR bit is clear, on a machine whose ISR can be read back.
pub fn not_in_service(vector: u8) -> bool {
    isr_readable() && !in_service(vector)
}

/// Sends an IPI from this CPU. Interrupts stay off across the ICR write: in xAPIC mode it is
/// two register writes (destination, then command), and a handler that sends in between (the
/// lockup watcher's NMI from the tick) would leave its destination under the command.
pub fn send(ipi: Ipi) -> Result<(), keel_apic::IcrError> {
    let status = {
        let _irqs_off = IrqGuard::new();
        local().send(ipi)
    }?;
    if status == keel_apic::DeliveryStatus::StuckPending {
        ICR_STUCK.fetch_add(1, Ordering::Relaxed);
        log::warn!("lapic: ICR delivery status stuck at send pending ({ipi:?})");
    }
    Ok(())
}

fn mode_inputs() -> ModeInputs {
    let f = cpu::features();
    // SAFETY: IA32_APIC_BASE exists on every CPU with a local APIC (all x86_64 CPUs).
    let apic_base = ApicBase::from_raw(unsafe { rdmsr(IA32_APIC_BASE) });
    let edx7 = if f.max_leaf >= 7 { core::arch::x86_64::__cpuid_count(7, 0).edx } else { 0 };
    let locked = x2apic_lock_state(
        edx7,
        // SAFETY: called only when CPUID.7:EDX[29] enumerates IA32_ARCH_CAPABILITIES.
        || unsafe { rdmsr(IA32_ARCH_CAPABILITIES) },
        // SAFETY: called only when ARCH_CAPABILITIES[21] enumerates XAPIC_DISABLE_STATUS.
        || unsafe { rdmsr(IA32_XAPIC_DISABLE_STATUS) },
    );
    // CPUID of *this* CPU: an AP must not assume the boot CPU's x2APIC support.
    let cpuid_x2apic = core::arch::x86_64::__cpuid(1).ecx & (1 << 21) != 0;
    ModeInputs { cpuid_x2apic, apic_base, x2apic_locked: locked }
}

/// Whether IA32_APIC_BASE of this CPU has x2APIC mode enabled (EXTD), read now.
#[cfg(feature = "scenarios")]
pub fn x2apic_enabled_in_msr() -> bool {
    // SAFETY: IA32_APIC_BASE exists on every CPU with a local APIC.
    ApicBase::from_raw(unsafe { rdmsr(IA32_APIC_BASE) }).state() == keel_apic::ApicState::X2Apic
}

/// IA32_APIC_BASE writes made on all CPUs (cross-checked against QEMU's trace).
pub static APIC_BASE_WRITES: AtomicU64 = AtomicU64::new(0);

/// The wrong-mode proof (scenarios build only): takes this CPU's LAPIC from x2APIC back to
/// xAPIC, through disabled (the legal path), and records the register where the boot report
/// and the CPU accounting read it. The kernel never uses this CPU's LAPIC afterwards.
#[cfg(feature = "scenarios")]
pub fn leave_x2apic_for_test() {
    const EN: u64 = 1 << 11;
    const EXTD: u64 = 1 << 10;
    // SAFETY: IA32_APIC_BASE exists on every CPU with a local APIC.
    let base = unsafe { rdmsr(IA32_APIC_BASE) };
    if base & EXTD != 0 {
        // SAFETY: x2APIC → disabled → xAPIC are legal IA32_APIC_BASE transitions (SDM
        // 10.12.5); nothing uses this CPU's LAPIC after them.
        unsafe {
            wrmsr(IA32_APIC_BASE, base & !(EN | EXTD));
            wrmsr(IA32_APIC_BASE, (base & !EXTD) | EN);
        }
    }
    // SAFETY: as above.
    let now = unsafe { rdmsr(IA32_APIC_BASE) };
    percpu::with_current(|me| me.apic_base.store(now, Ordering::Relaxed));
}

fn apply_plan(writes: &[ApicBase]) {
    for w in writes {
        APIC_BASE_WRITES.fetch_add(1, Ordering::Relaxed);
        // SAFETY: every value comes from keel_apic's plan, whose steps are each a legal
        // IA32_APIC_BASE transition (an illegal one would #GP).
        unsafe { wrmsr(IA32_APIC_BASE, w.raw()) };
    }
}

/// This CPU's local interrupt setup: LINT0/LINT1 as the MADT's local APIC NMI entries for
/// its processor UID say (LINT1 = NMI when none names it).
fn local_init() -> LocalInit {
    let platform = crate::acpi::platform();
    let index = percpu::with_current(|me| me.index);
    let uid = platform.cpu(CpuIndex(index)).map_or(UID_UNKNOWN, |c| c.processor_uid);
    let lints = platform.local_lints(uid);
    LocalInit {
        spurious_vector: SPURIOUS_VECTOR,
        error_vector: LAPIC_ERROR_VECTOR,
        lint0: lints.lint0,
        lint1: lints.lint1,
    }
}

/// Whether the firmware's DMAR asks the OS not to enable x2APIC (its X2APIC_OPT_OUT flag).
fn firmware_x2apic_opt_out() -> bool {
    crate::acpi::dmar()
        .and_then(|bytes| keel_iommu::Dmar::parse(bytes).ok())
        .is_some_and(|dmar| dmar.flags.x2apic_opt_out)
}

/// Boot CPU: choose the mode (x2APIC when CPUID says so or firmware enabled/locked it,
/// unless the DMAR opts out and firmware left xAPIC),
/// switch to it, map the xAPIC page only in xAPIC mode, and enable the LAPIC.
pub fn init_boot_cpu() -> LapicMode {
    let inputs = mode_inputs();
    let opt_out = firmware_x2apic_opt_out();
    let (target, reason) = bsp_mode(inputs, opt_out);
    match reason {
        BspModeReason::FirmwareOptOut => log::info!(
            "lapic: x2APIC is available but the DMAR sets X2APIC_OPT_OUT and firmware left \
             xAPIC: staying in xAPIC mode"
        ),
        BspModeReason::OptOutButFirmwareX2Apic => log::info!(
            "lapic: the DMAR sets X2APIC_OPT_OUT but firmware already enabled or locked x2APIC: \
             staying in x2APIC mode"
        ),
        _ => {}
    }
    ev!("lapic.x2apic_opt_out", if opt_out { "yes" } else { "no" });
    let plan = match plan_to(inputs, target) {
        Ok(p) => p,
        Err(e) => panic!("lapic: no usable mode for the boot CPU: {e:?} (inputs {inputs:?})"),
    };
    log::info!(
        "lapic: cpuid-x2apic={} apic-base={:#x} (firmware {:?}, locked {:?}) -> {:?} with {} MSR write(s)",
        inputs.cpuid_x2apic,
        inputs.apic_base.raw(),
        inputs.apic_base.state(),
        inputs.x2apic_locked,
        plan.mode,
        plan.writes().len()
    );
    ev!("lapic.firmware_state", state_name(inputs.apic_base.state()));
    ev!("lapic.mode_writes", plan.writes().len());
    apply_plan(plan.writes());
    let chosen = match plan.mode {
        LapicMode::XApic => {
            let base = inputs.apic_base.base_address();
            Chosen::XApic { mmio: map_physical(base, 4096, Caching::Uncached).as_u64() as usize }
        }
        LapicMode::X2Apic => Chosen::X2Apic,
    };
    ev!(
        "lapic.xapic_mmio_mapped",
        if matches!(chosen, Chosen::XApic { .. }) { "yes" } else { "no" }
    );
    CHOSEN.call_once(|| chosen);
    enable_local();
    plan.mode
}

/// An AP: follow the boot CPU's mode, enable the LAPIC, return its APIC ID.
pub fn init_ap() -> Result<ApicId, keel_apic::ModeError> {
    let required = mode().expect("boot CPU chose a mode first");
    let plan = plan_for_ap(mode_inputs(), required)?;
    apply_plan(plan.writes());
    Ok(enable_local())
}

fn enable_local() -> ApicId {
    let mut lapic = local();
    match lapic.enable(local_init()) {
        Ok(esr) if !esr.is_empty() => log::warn!("lapic: ESR after enable: {:#x}", esr.bits()),
        Ok(_) => {}
        Err(e) => panic!("lapic: enable failed: {e:?}"),
    }
    let id = lapic.id();
    // What the evidence reports as this CPU's LINT wiring: the registers, not the plan.
    let lints = [Register::LvtLint0, Register::LvtLint1].map(|reg| lapic.registers_mut().read(reg));
    percpu::with_current(|me| {
        me.apic_id.store(id.get(), Ordering::Release);
        for (slot, lvt) in me.lapic.lint_lvt.iter().zip(lints) {
            slot.store(lvt, Ordering::Relaxed);
        }
        if mode() == Some(LapicMode::X2Apic) {
            // The LDR is read-only in x2APIC mode; what the CPU reports is what multicast
            // IPIs must name (`X2ApicCluster::of_apic_id` is the architectural rule it follows).
            me.x2apic_ldr.store(lapic.registers_mut().read(Register::Ldr), Ordering::Release);
        }
        // SAFETY: IA32_APIC_BASE exists on every CPU with a local APIC.
        me.apic_base.store(unsafe { rdmsr(IA32_APIC_BASE) }, Ordering::Relaxed);
    });
    id
}

/// Stops this CPU's LAPIC timer (masked, count 0) until [`start_tick`] starts it again.
pub fn stop_timer() {
    local().stop_timer();
}

/// Counts this CPU's LAPIC timer (masked one-shot from the maximum count, divide by 1)
/// against the TSC for `window_ns` and returns its input frequency in Hz.
pub fn measure_timer_hz(window_ns: u64) -> u64 {
    let mut lapic = local();
    let masked = keel_apic::LvtTimer {
        vector: TIMER_VECTOR,
        mode: keel_apic::TimerMode::OneShot,
        masked: true,
    };
    let regs = lapic.registers_mut();
    regs.write(Register::TimerDivide, TimerDivide::By1.encode());
    regs.write(Register::LvtTimer, masked.encode());
    let start_tsc = rdtsc();
    regs.write(Register::TimerInitialCount, u32::MAX);
    let deadline = start_tsc + time::ns_to_tsc(window_ns);
    while rdtsc() < deadline {
        core::hint::spin_loop();
    }
    let remaining = lapic.current_count();
    let elapsed_ns = time::tsc_to_ns(rdtsc() - start_tsc);
    lapic.stop_timer();
    let counted = (u32::MAX - remaining) as u64;
    keel_apic::timer::frequency_hz(counted, TimerDivide::By1, elapsed_ns).unwrap_or(0)
}

/// Calibrates this CPU's LAPIC timer: the best of three 10 ms windows against the TSC. KVM's
/// APIC timer runs at 1 GHz whatever CPUID 0x15 says, so the rate is always measured.
pub fn calibrate_timer() -> u64 {
    let hz = (0..3).map(|_| measure_timer_hz(10_000_000)).max().unwrap_or(0);
    percpu::with_current(|me| me.lapic.timer_hz.store(hz, Ordering::Relaxed));
    hz
}

/// Calibrates an AP's LAPIC timer in 1 ms windows against the TSC (no PIT, no shared
/// resource, so every AP does it at the same time): the first window within 2 % of the boot
/// CPU's `reference_hz` is taken, else the best of three. The rate is this CPU's own
/// measurement, never a copy of the reference.
pub fn calibrate_timer_ap(reference_hz: u64) -> u64 {
    let mut best = 0;
    for _ in 0..3 {
        let hz = measure_timer_hz(1_000_000);
        best = best.max(hz);
        if reference_hz != 0 && hz.abs_diff(reference_hz) <= reference_hz / 50 {
            best = hz;
            break;
        }
    }
    percpu::with_current(|me| me.lapic.timer_hz.store(best, Ordering::Relaxed));
    best
}

/// Starts this CPU's tick on vector 48: TSC-deadline mode when the CPU has it, else periodic;
/// with `tickless`, no tick but one-shot deadlines (TSC-deadline or LAPIC one-shot). The
/// first call (the boot CPU) fixes the mode for every CPU; later calls follow it.
pub fn start_tick(use_deadline: bool, tickless: bool) {
    let mut lapic = local();
    let mode = *TICK_MODE.call_once(|| match use_deadline {
        _ if tickless => TickMode::Tickless { tsc_deadline: use_deadline },
        true => TickMode::TscDeadline { period_tsc: time::tsc_hz() / tick_hz() },
        false => TickMode::Periodic,
    });
    if let TickMode::Tickless { tsc_deadline } = mode {
        super::oneshot::start(tsc_deadline);
    } else if let TickMode::TscDeadline { period_tsc } = mode {
        lapic.arm_tsc_deadline(TIMER_VECTOR).expect("valid vector");
        arm_deadline(rdtsc() + period_tsc);
    } else {
        let hz = percpu::with_current(|me| me.lapic.timer_hz.load(Ordering::Relaxed));
        let count =
            keel_apic::timer::initial_count_for(hz, TIMER_DIVIDE, 1_000_000_000 / tick_hz())
                .expect("tick period fits the 32-bit counter");
        lapic.start_periodic(TIMER_VECTOR, TIMER_DIVIDE, count).expect("valid vector and count");
    }
    // What the evidence reports as this CPU's timer mode: the register, not the decision.
    let lvt = lapic.registers_mut().read(Register::LvtTimer);
    percpu::with_current(|me| me.lapic.timer_lvt.store(lvt, Ordering::Relaxed));
}

/// Evidence name of the mode an LVT timer register value selects.
pub fn timer_mode_name(lvt: u32) -> &'static str {
    match keel_apic::LvtTimer::decode(lvt).map(|t| t.mode) {
        Ok(keel_apic::TimerMode::TscDeadline) => "tsc-deadline",
        Ok(keel_apic::TimerMode::Periodic) => "periodic",
        Ok(keel_apic::TimerMode::OneShot) => "one-shot",
        Err(_) => "reserved",
    }
}

/// Evidence name of what an LVT LINT register value delivers: `masked`, `nmi`,
/// `nmi-active-low`, `fixed`, `extint` or `reserved`.
pub fn lint_name(lvt: u32) -> &'static str {
    use keel_apic::lvt::LocalDeliveryMode as Delivery;
    match keel_apic::LvtLocal::decode(lvt) {
        Ok(l) if l.masked => "masked",
        Ok(l) => match (l.delivery, l.polarity) {
            (Delivery::Nmi, keel_apic::Polarity::ActiveHigh) => "nmi",
            (Delivery::Nmi, keel_apic::Polarity::ActiveLow) => "nmi-active-low",
            (Delivery::Fixed, _) => "fixed",
            (Delivery::ExtInt, _) => "extint",
        },
        Err(_) => "reserved",
    }
}

/// Evidence name of the LAPIC mode an `IA32_APIC_BASE` value (as read on its CPU) selects.
pub fn apic_base_mode_name(raw: u64) -> &'static str {
    state_name(ApicBase::from_raw(raw).state())
}

fn arm_deadline(tsc: u64) {
    // Intel: fence so the WRMSR is ordered after earlier stores.
    wrmsr_fence();
    // SAFETY: IA32_TSC_DEADLINE exists (CPUID.1:ECX[24] checked by the caller's mode).
    unsafe { wrmsr(IA32_TSC_DEADLINE, tsc) };
}

/// Whether the timer runs in TSC-deadline mode (periodic by re-arming, or tickless).
#[inline]
pub fn tsc_deadline_mode() -> bool {
    matches!(
        TICK_MODE.get(),
        Some(TickMode::TscDeadline { .. } | TickMode::Tickless { tsc_deadline: true })
    )
}

/// Whether CPUs run tickless (`timer=tickless`): one-shot deadlines, none while idle.
#[inline]
pub fn tickless() -> bool {
    matches!(TICK_MODE.get(), Some(TickMode::Tickless { .. }))
}

/// Vector 48: count, re-arm (TSC-deadline tick) or note the deadline that fired (tickless),
/// EOI. The dispatcher then lets the scheduler expire timeouts, preempt a user thread and,
/// tickless, arm the next deadline (after the EOI, so a switch never leaves the vector in
/// service).
#[inline]
pub fn timer_interrupt(token: InService, cpu: &IrqGuard) {
    let me = percpu::current(cpu);
    me.lapic.timer_ticks.fetch_add(1, Ordering::Relaxed);
    match TICK_MODE.get() {
        Some(TickMode::TscDeadline { period_tsc }) => arm_deadline(rdtsc() + period_tsc),
        Some(TickMode::Tickless { .. }) => super::oneshot::fired(me),
        _ => {}
    }
    token.eoi();
}

/// The spurious vector: counted, and deliberately *not* acknowledged (the dispatcher gives
/// it no [`InService`] token) — a spurious interrupt never set an ISR bit, so an EOI here
/// would retire some other in-service interrupt.
pub fn spurious_interrupt(cpu: &IrqGuard) {
    percpu::current(cpu).lapic.spurious.fetch_add(1, Ordering::Relaxed);
}

/// LVT error: record the ESR (written before read, as the SDM requires) and acknowledge.
pub fn error_interrupt(token: InService, cpu: &IrqGuard) {
    let esr = local().read_error();
    let me = percpu::current(cpu);
    me.lapic.errors.fetch_add(1, Ordering::Relaxed);
    me.lapic.last_esr.store(esr.bits(), Ordering::Relaxed);
    token.eoi();
}

/// Lower-case name of an IA32_APIC_BASE state for evidence lines.
fn state_name(state: keel_apic::ApicState) -> &'static str {
    match state {
        keel_apic::ApicState::Disabled => "disabled",
        keel_apic::ApicState::XApic => "xapic",
        keel_apic::ApicState::X2Apic => "x2apic",
        keel_apic::ApicState::Invalid => "invalid",
    }
}
