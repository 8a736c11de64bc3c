//! A minimal x86_64 kernel that adopts Keel's APIC layer: `keel-apic` for the local APIC
//! (mode state machine, programming sequences, typed ICR, timer arithmetic) and
//! `keel-platform` for what the MADT means. Everything else is the few hundred lines any
//! kernel has anyway: a boot path, an IDT, a register backend, a delay.
//!
//! What it does, in order: choose the LAPIC mode (x2APIC when offered), interpret the MADT,
//! enable the boot CPU's LAPIC, calibrate its timer against the PIT, start every other CPU
//! with INIT and start-up IPIs, run each CPU's periodic timer, have each CPU in turn send
//! IPIs to every other one, and print what each CPU counted as `EV key=value` lines.

#![no_std]
#![no_main]

mod apic;
mod boot;
mod console;
mod cpu;
mod irq;
mod madt;
mod pic;
mod pit;

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use keel_apic::timer::{frequency_hz, smallest_divide_for};
use keel_apic::{plan_for_ap, plan_for_bsp, ApicBase, ApicId, ApicState, DeliveryStatus, Ipi};
use keel_apic::{LapicMode, LocalInit, TimerDivide};
use keel_platform::{CpuState, Platform};
use spin::Mutex;
use x86_64::instructions::interrupts;

use cpu::{Cpu, CPUS};

/// The interpreted MADT. Over 100 KiB at keel-platform's 4,096-CPU capacity, so it lives in
/// a static and is filled in place (`rebuild`), never built on a stack.
static PLATFORM: Mutex<Platform> = Mutex::new(Platform::empty());

/// Timer period on every CPU.
const TICK_NS: u64 = 1_000_000;
/// How long the boot CPU measures the LAPIC timer against the PIT.
const CALIBRATION_US: u64 = 10_000;
/// INIT to first start-up IPI, and between the two start-up IPIs (the MP specification).
const INIT_DELAY_US: u64 = 10_000;
const SIPI_DELAY_US: u64 = 200;
/// How long an AP may take from its start-up IPI to online (generous: an emulated vCPU on a
/// loaded host may wait long for a time slice).
const AP_TIMEOUT_US: u64 = 2_000_000;
/// IPIs each CPU sends to each other CPU, one at a time.
const IPIS_PER_PAIR: u64 = 25;
/// How long a sender waits for one IPI to be counted, in its own timer ticks.
const IPI_TIMEOUT_TICKS: u64 = 1_000;
/// How long every CPU keeps ticking after the IPIs, before the report.
const RUN_US: u64 = 200_000;
/// Ticks each CPU must have counted for the verdict.
const MIN_TICKS: u64 = 20;

/// The calibrated timer settings, computed once by the boot CPU and used by every CPU.
static TIMER: Mutex<Option<(TimerDivide, u32)>> = Mutex::new(None);
/// Which CPU sends its IPIs now (`NO_SENDER`: none). One sender at a time, one IPI in flight:
/// two fixed IPIs of one vector pending at a target would merge into one interrupt.
static SENDER: AtomicUsize = AtomicUsize::new(NO_SENDER);
const NO_SENDER: usize = usize::MAX;
static IPI_TIMEOUTS: AtomicU64 = AtomicU64::new(0);

#[no_mangle]
extern "C" fn kmain() -> ! {
    irq::load();
    // Firmware's 8259s out of the way while the LAPIC still passes their line on (pic.rs).
    pic::remap_and_mask();

    // 1. The mode: keel-apic turns CPUID and IA32_APIC_BASE into a legal sequence of writes.
    let plan = plan_for_bsp(apic::mode_inputs()).unwrap_or_else(|e| fail("mode", e));
    apic::apply(&plan);
    cpu::set_mode(plan.mode, apic::read_apic_base().base_address());

    // 2. The platform: keel-platform interprets the MADT; the boot CPU is index 0.
    let mut platform = PLATFORM.lock();
    let bsp_apic_id = cpu::lapic().id().get();
    madt::interpret(&mut platform, bsp_apic_id).unwrap_or_else(|e| fail("madt", e));
    for d in platform.diagnostics() {
        println!("example: MADT: {d}");
    }
    for entry in platform.cpus().iter().filter(|c| c.state == CpuState::Enabled) {
        let (index, id) = (entry.index.0 as usize, entry.apic_id);
        if index >= cpu::MAX_CPUS || !Platform::is_reachable(id, plan.mode) {
            println!("example: cpu {index} (APIC ID {id}) left offline");
            continue;
        }
        CPUS[index].processor_uid.store(entry.processor_uid, Ordering::Relaxed);
        CPUS[index].apic_id.store(id, Ordering::Release);
    }
    ev!("platform.cpus", platform.summary(plan.mode).enabled);
    drop(platform);

    // 3. The boot CPU's LAPIC and timer.
    let me = &CPUS[0];
    enable_local_apic(me);
    *TIMER.lock() = Some(calibrate());
    start_timer();
    me.come_online();
    interrupts::enable();

    // 4. Every other CPU, one at a time. The trampoline has one parameter block, so after
    //    an AP that never arrived (and might still, late) no other AP is started.
    let sipi_vector = boot::install_trampoline();
    for (index, ap) in cpu::present().skip(1) {
        if !start_ap(index, ap, sipi_vector) {
            break;
        }
    }

    // 5. Each online CPU in turn sends IPIs to all the others.
    for (index, c) in cpu::present().filter(|(_, c)| c.online.load(Ordering::Acquire)) {
        if index == 0 {
            send_ipis(0);
            continue;
        }
        SENDER.store(index, Ordering::Release);
        let deadline = me.ticks.load(Ordering::Relaxed) + IPI_TIMEOUT_TICKS * cpu::MAX_CPUS as u64;
        while SENDER.load(Ordering::Acquire) == index && me.ticks.load(Ordering::Relaxed) < deadline
        {
            x86_64::instructions::hlt();
        }
        if SENDER.swap(NO_SENDER, Ordering::AcqRel) == index {
            println!(
                "example: cpu {index} (APIC ID {}) never finished its IPIs",
                c.id_register.load(Ordering::Relaxed)
            );
            IPI_TIMEOUTS.fetch_add(1, Ordering::Relaxed);
        }
    }
    pit::wait_us(RUN_US);
    report(plan.mode)
}

/// Enables the running CPU's LAPIC with the LINT wiring the MADT gives it.
fn enable_local_apic(me: &Cpu) {
    let lints = PLATFORM.lock().local_lints(me.processor_uid.load(Ordering::Relaxed));
    let init = LocalInit {
        spurious_vector: irq::SPURIOUS_VECTOR,
        error_vector: irq::ERROR_VECTOR,
        lint0: lints.lint0,
        lint1: lints.lint1,
    };
    cpu::lapic().enable(init).unwrap_or_else(|e| fail("lapic enable", e));
}

/// The timer's input frequency, measured against the PIT, and the divider and count that
/// make it tick every [`TICK_NS`] (keel-apic's arithmetic).
fn calibrate() -> (TimerDivide, u32) {
    let mut lapic = cpu::lapic();
    let divide = TimerDivide::By16;
    // Counts down from the maximum; stopped long before it could expire.
    lapic.start_periodic(irq::TIMER_VECTOR, divide, u32::MAX).unwrap_or_else(|e| fail("timer", e));
    let (first, second, elapsed_ns) = pit::measure(CALIBRATION_US, || lapic.current_count());
    lapic.stop_timer();
    let hz = frequency_hz((first - second).into(), divide, elapsed_ns)
        .unwrap_or_else(|e| fail("timer", e));
    ev!("timer.hz", hz);
    smallest_divide_for(hz, TICK_NS).unwrap_or_else(|e| fail("timer", e))
}

fn start_timer() {
    let (divide, count) = TIMER.lock().expect("timer calibrated");
    cpu::lapic()
        .start_periodic(irq::TIMER_VECTOR, divide, count)
        .unwrap_or_else(|e| fail("timer", e));
}

/// INIT, then start-up IPIs until the AP reports online (keel-apic encodes each for the
/// mode and, in xAPIC, polls the delivery status around it). No INIT de-assert: every CPU
/// since the Pentium 4 ignores it. Returns whether the AP came online.
fn start_ap(index: usize, ap: &'static Cpu, sipi_vector: u8) -> bool {
    boot::set_trampoline_params(boot::TrampolineParams {
        cr3: boot::boot_page_tables(),
        stack_top: boot::ap_stack_top(index),
        entry: ap_main as extern "C" fn(u64) -> ! as usize as u64,
        cpu_index: index as u64,
    });
    let target = ApicId::new(ap.apic_id.load(Ordering::Relaxed));
    let mut lapic = cpu::lapic();
    let mut send = |ipi: Ipi| {
        let status = interrupts::without_interrupts(|| lapic.send(ipi));
        if status.unwrap_or_else(|e| fail("icr", e)) == DeliveryStatus::StuckPending {
            println!("example: a start-up IPI to APIC ID {target} stayed pending");
        }
    };
    send(Ipi::init_assert().to(target));
    pit::wait_us(INIT_DELAY_US);
    for _ in 0..2 {
        send(Ipi::startup(sipi_vector).to(target));
        pit::wait_us(SIPI_DELAY_US);
        if ap.online.load(Ordering::Acquire) {
            return true;
        }
    }
    for _ in 0..AP_TIMEOUT_US / 1_000 {
        if ap.online.load(Ordering::Acquire) {
            return true;
        }
        pit::wait_us(1_000);
    }
    println!("example: cpu {index} (APIC ID {target}) did not come online");
    false
}

/// Where each AP arrives from the trampoline, on its own stack, interrupts off.
extern "C" fn ap_main(index: u64) -> ! {
    irq::load();
    // An AP follows the boot CPU's mode; keel-apic plans the way there from firmware's state.
    match plan_for_ap(apic::mode_inputs(), cpu::mode()) {
        Ok(plan) => apic::apply(&plan),
        Err(e) => fail("ap mode", e),
    }
    let me = &CPUS[index as usize];
    enable_local_apic(me);
    start_timer();
    me.come_online();
    loop {
        // Check, then halt with interrupts re-enabled in one step; the timer wakes it.
        interrupts::disable();
        if SENDER.load(Ordering::Acquire) == index as usize {
            interrupts::enable();
            send_ipis(index as usize);
            SENDER.store(NO_SENDER, Ordering::Release);
            continue;
        }
        interrupts::enable_and_hlt();
    }
}

/// The running CPU (`index`) sends [`IPIS_PER_PAIR`] IPIs to every other online CPU, each
/// only after the previous one was counted by its target.
fn send_ipis(index: usize) {
    let me = &CPUS[index];
    for (_, target) in
        cpu::present().filter(|(i, c)| *i != index && c.online.load(Ordering::Acquire))
    {
        let ipi =
            Ipi::fixed(irq::IPI_VECTOR).to(ApicId::new(target.apic_id.load(Ordering::Relaxed)));
        for _ in 0..IPIS_PER_PAIR {
            let before = target.ipis_received.load(Ordering::Acquire);
            interrupts::without_interrupts(|| cpu::lapic().send(ipi))
                .unwrap_or_else(|e| fail("icr", e));
            me.ipis_sent.fetch_add(1, Ordering::Relaxed);
            let deadline = me.ticks.load(Ordering::Relaxed) + IPI_TIMEOUT_TICKS;
            while target.ipis_received.load(Ordering::Acquire) == before {
                if me.ticks.load(Ordering::Relaxed) >= deadline {
                    IPI_TIMEOUTS.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                core::hint::spin_loop();
            }
        }
    }
}

/// Prints what every CPU counted and the verdict those counts give.
fn report(mode: LapicMode) -> ! {
    // Modes as IA32_APIC_BASE reads, not as planned: the boot CPU's now, each CPU's own.
    let mode_name = |state: ApicState| match state {
        ApicState::X2Apic => "x2apic",
        ApicState::XApic => "xapic",
        _ => "disabled",
    };
    let planned = mode_name(ApicState::enabled(mode));
    ev!("lapic.mode", mode_name(apic::read_apic_base().state()));
    let (mut online, mut sent, mut received, mut ok) = (0u64, 0, 0, true);
    for (i, c) in cpu::present() {
        let is_online = c.online.load(Ordering::Acquire);
        let read_mode = mode_name(ApicBase::from_raw(c.apic_base.load(Ordering::Relaxed)).state());
        let (ticks, s, r) = (
            c.ticks.load(Ordering::Relaxed),
            c.ipis_sent.load(Ordering::Relaxed),
            c.ipis_received.load(Ordering::Relaxed),
        );
        let errors = c.lapic_errors.load(Ordering::Relaxed);
        ev!(format_args!("cpu.{i}.online"), if is_online { "yes" } else { "no" });
        ev!(format_args!("cpu.{i}.apic_id"), c.id_register.load(Ordering::Relaxed));
        ev!(format_args!("cpu.{i}.mode"), read_mode);
        ev!(format_args!("cpu.{i}.timer_ticks"), ticks);
        ev!(format_args!("cpu.{i}.ipi_sent"), s);
        ev!(format_args!("cpu.{i}.ipi_received"), r);
        ev!(format_args!("cpu.{i}.lapic_errors"), errors);
        online += is_online as u64;
        (sent, received) = (sent + s, received + r);
        ok &= is_online && read_mode == planned && ticks >= MIN_TICKS && s == r && errors == 0;
    }
    let timeouts = IPI_TIMEOUTS.load(Ordering::Relaxed);
    ev!("smp.online", online);
    ev!("ipi.expected", online * online.saturating_sub(1) * IPIS_PER_PAIR);
    ev!("ipi.sent", sent);
    ev!("ipi.received", received);
    ev!("ipi.timeouts", timeouts);
    ok &= timeouts == 0 && online == cpu::present().count() as u64;
    console::finish(ok, "a CPU is offline, in the wrong mode, not ticking, or lost IPIs")
}

fn fail(what: &str, error: impl core::fmt::Debug) -> ! {
    println!("example: {what}: {error:?}");
    console::finish(false, what)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("example: {info}");
    console::finish(false, "panic")
}
