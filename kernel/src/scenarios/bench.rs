//! `proof=bench`: in-guest measurements for `make bench` (not a test: nothing here is
//! asserted against a threshold). IPI round trip between CPU 0 and CPU 1 in TSC cycles
//! (target busy, and target halted),
//! AP bring-up time, the LAPIC timer calibration error, wake-up of an idle CPU by posted
//! work (the reschedule-IPI path), and single-page TLB shootdown latency with 1, 2, 4, ...
//! and all other CPUs resident in the address space. Everything runs in ring 0, so it works under
//! every accelerator.

use alloc::vec::Vec;
use core::sync::atomic::AtomicU64;

use core::sync::atomic::Ordering;
use fw::arch::x86_64::tlb;
use fw::mm::address_space::{AddressSpace, UserPerms};
use fw::mm::paging;

use keel_boot::cmdline::CommandLine;

use fw::arch::x86_64::{cpu, lapic, percpu, smp};
use fw::bringup::System;
use fw::exit::verdict;

/// Median and 99th percentile of `samples` (sorted in place).
fn percentiles(samples: &mut [u64]) -> (u64, u64) {
    samples.sort_unstable();
    let at = |p: usize| samples[(samples.len() - 1) * p / 100];
    (at(50), at(99))
}

pub fn run(system: System, cmdline: &CommandLine) -> ! {
    let trips = super::support::option_u64(cmdline, "trips", 10_000) as usize;
    let mode = lapic::mode_name(system.mode);
    ev!("bench.mode", mode);
    // The mode as the CPU has it: IA32_APIC_BASE.EXTD, read now on this CPU.
    ev!("bench.apic_base_mode", if lapic::x2apic_enabled_in_msr() { "x2apic" } else { "xapic" });
    ev!("bench.exec.kiloloop_cycles", execution_rate());
    let Some(other) = percpu::online().find(|c| c.index != 0) else {
        verdict(false, "bench needs two CPUs");
    };
    ipi_round_trips(other, trips, super::support::option_u64(cmdline, "idle_gap_us", 100));
    ev!("bench.tsc_khz", fw::time::tsc_hz() / 1000);

    let mut bringup: Vec<u64> =
        system.reports.iter().filter(|r| r.bringup_ns > 0).map(|r| r.bringup_ns / 1000).collect();
    if !bringup.is_empty() {
        let (m, p) = percentiles(&mut bringup);
        ev!("bench.ap_bringup.median_us", m);
        ev!("bench.ap_bringup.p99_us", p);
        ev!("bench.ap_bringup.max_us", bringup.iter().max().copied().unwrap_or(0));
    }

    // Calibration error: the 10 ms calibration against a 200 ms re-measurement.
    let short = percpu::with_current(|me| me.lapic.timer_hz.load(Ordering::Relaxed));
    let long = long_timer_measurement(200);
    let error_ppm = (short as i128 - long as i128).abs() * 1_000_000 / long.max(1) as i128;
    ev!("bench.timer.calibrated_hz", short);
    ev!("bench.timer.reference_hz", long);
    ev!("bench.timer.calibration_error_ppm", error_ppm);
    wake_latency();
    shootdown_latency(super::support::option_u64(cmdline, "shootdowns", 2000) as usize);
    ev!("lapic.icr_status_reads", lapic::ICR_STATUS_READS.load(Ordering::Relaxed));
    ev!("lapic.icr_stuck", lapic::ICR_STUCK.load(Ordering::Relaxed));
    verdict(true, "")
}

static SPIN_RELEASE: AtomicU64 = AtomicU64::new(0);
static SPINNING: AtomicU64 = AtomicU64::new(0);

/// Work for the target of the busy round trips: spin with interrupts enabled (as a CPU
/// running a user thread would, and as Linux's membarrier target does) until released.
fn spin_until_released(_: usize) {
    SPINNING.store(1, Ordering::Release);
    // No PAUSE: under KVM a PAUSE loop gets the vCPU descheduled (see `hold_resident`).
    while SPIN_RELEASE.load(Ordering::Acquire) == 0 {}
    SPINNING.store(0, Ordering::Release);
}

/// `trips` pings after 200 discarded ones, each's round trip in TSC cycles.
fn ping_samples(other: &percpu::PerCpu, trips: usize, gap_us: u64) -> Vec<u64> {
    let mut samples = Vec::with_capacity(trips);
    for i in 0..trips + 200 {
        fw::time::delay_us(gap_us);
        match smp::ping(other, smp::PingWait::Tight) {
            Some(c) if i >= 200 => samples.push(c),
            Some(_) => {}
            None => verdict(false, "IPI round trip timed out"),
        }
    }
    samples
}

/// IPI round trips CPU 0 -> CPU 1 -> CPU 0 with the target busy (spinning in a loop
/// with interrupts on: the handler runs at once) and idle (halted in its idle loop
/// `idle_gap_us` after the previous trip, so each IPI also wakes it).
fn ipi_round_trips(other: &percpu::PerCpu, trips: usize, idle_gap_us: u64) {
    SPIN_RELEASE.store(0, Ordering::Release);
    let ticket = smp::post_work(other, spin_until_released, 0);
    if !fw::time::spin_until(0, 2_000_000_000, || SPINNING.load(Ordering::Acquire) != 0) {
        verdict(false, "the busy target never started spinning");
    }
    let mut busy = ping_samples(other, trips, 0);
    // Still spinning after the last trip: every sample had a busy target.
    let stayed_busy = SPINNING.load(Ordering::Acquire) != 0;
    SPIN_RELEASE.store(1, Ordering::Release);
    if !smp::wait_work(other, ticket, 2_000_000_000) {
        verdict(false, "the busy target did not stop");
    }
    ev!("bench.ipi_rtt.busy.target_stayed_busy", if stayed_busy { "yes" } else { "no" });
    let (median, p99) = percentiles(&mut busy);
    ev!("bench.ipi_rtt.busy.samples", busy.len());
    ev!("bench.ipi_rtt.busy.median_cycles", median);
    ev!("bench.ipi_rtt.busy.p99_cycles", p99);

    let mut idle = ping_samples(other, trips, idle_gap_us);
    let (median, p99) = percentiles(&mut idle);
    ev!("bench.ipi_rtt.idle.gap_us", idle_gap_us);
    ev!("bench.ipi_rtt.idle.samples", idle.len());
    ev!("bench.ipi_rtt.idle.median_cycles", median);
    ev!("bench.ipi_rtt.idle.p99_cycles", p99);
}

static POSTED_AT: AtomicU64 = AtomicU64::new(0);
static WOKE_AFTER: AtomicU64 = AtomicU64::new(0);

fn note_wake(_: usize) {
    WOKE_AFTER.store(cpu::rdtsc() - POSTED_AT.load(Ordering::Acquire), Ordering::Release);
}

/// Posted work to a halted CPU: IPI 49 wakes its idle loop, which runs the work. Measures
/// post → first instruction of the work.
fn wake_latency() {
    let Some(other) = percpu::online().find(|c| c.index != 0) else { return };
    let mut samples = Vec::with_capacity(1000);
    for _ in 0..1000 {
        fw::time::delay_us(100); // let it halt again
        POSTED_AT.store(cpu::rdtsc(), Ordering::Release);
        let ticket = smp::post_work(other, note_wake, 0);
        if !smp::wait_work(other, ticket, 1_000_000_000) {
            return;
        }
        samples.push(WOKE_AFTER.load(Ordering::Acquire));
    }
    let (m, p) = percentiles(&mut samples);
    ev!("bench.wake_idle_cpu.median_cycles", m);
    ev!("bench.wake_idle_cpu.p99_cycles", p);
}

static HOLD_SPACE: AtomicU64 = AtomicU64::new(0);
static RELEASE: AtomicU64 = AtomicU64::new(0);
static HOLDING: AtomicU64 = AtomicU64::new(0);
static HALTED_HOLDERS: AtomicU64 = AtomicU64::new(0);

/// The test space's resident set. Static: a holder that starts or leaves late (after its
/// wait timed out) still reads a live mask, never a dead stack frame.
static HOLD_MASK: tlb::CpuMask = tlb::CpuMask::new();

/// Work for a resident CPU: load the test address space, mark it resident, stay (serving
/// shootdown IPIs with interrupts on) until released.
fn hold_resident(_: usize) {
    let mask = &HOLD_MASK;
    let me = percpu::current_index();
    let pml4 = HOLD_SPACE.load(Ordering::Acquire);
    mask.insert(me);
    // SAFETY: the test space shares the kernel half, so this code keeps running.
    unsafe { paging::load_space(pml4) };
    HOLDING.fetch_add(1, Ordering::AcqRel);
    // Busy like a user thread would be (no PAUSE: under KVM a PAUSE loop gets the vCPU
    // descheduled, and the measurement would be of the host scheduler) — or halted, like a
    // CPU whose thread is blocked while the space stays loaded.
    if HALTED_HOLDERS.load(Ordering::Acquire) != 0 {
        while RELEASE.load(Ordering::Acquire) == 0 {
            x86_64::instructions::interrupts::enable_and_hlt();
        }
    } else {
        while RELEASE.load(Ordering::Acquire) == 0 {}
    }
    // Back to the kernel tables before leaving the set.
    paging::load_kernel_space();
    mask.remove(me);
    HOLDING.fetch_sub(1, Ordering::AcqRel);
}

/// Single-page shootdown and unmap with 1, 2, 4, ... other CPUs resident.
fn shootdown_latency(rounds: usize) {
    let Ok(mut space) = AddressSpace::new() else { return };
    HOLD_SPACE.store(space.pml4(), Ordering::Release);
    let others: Vec<_> = percpu::online().filter(|c| c.index != 0).collect();
    let page = 0x0000_4000_0000u64;
    let perms = UserPerms { write: true, exec: false, uncached: false };
    // Holders for 1, 2, 4, ... CPUs and for all of them: spinning (like user threads
    // computing), then halted (like CPUs whose threads are blocked while the space stays
    // loaded; on a host with fewer cores than vCPUs only these show the IPIs overlapping).
    let counts = holder_counts(others.len());
    let plan: Vec<(usize, bool)> =
        [false, true].iter().flat_map(|&halted| counts.iter().map(move |&n| (n, halted))).collect();
    for (n, halted) in plan {
        HALTED_HOLDERS.store(halted as u64, Ordering::Release);
        let mask = &HOLD_MASK;
        RELEASE.store(0, Ordering::Release);
        let tickets: Vec<_> =
            others[..n].iter().map(|c| (*c, smp::post_work(c, hold_resident, 0))).collect();
        let deadline = fw::time::now_ns() + 2_000_000_000;
        while HOLDING.load(Ordering::Acquire) < n as u64 && fw::time::now_ns() < deadline {
            core::hint::spin_loop();
        }
        // One spinning holder: a ping to the same CPU before each shootdown, so the two
        // figures share the host's moment (TCG's speed drifts by 2x within a run).
        let paired = n == 1 && !halted;
        let ping_first = if paired { Some(others[0]) } else { None };
        let (mut samples, mut whole, mut pings) =
            unmap_rounds(&mut space, page, perms, rounds, ping_first);
        RELEASE.store(1, Ordering::Release);
        for (c, t) in tickets {
            smp::wait_work(c, t, 2_000_000_000);
        }
        // The next size starts from an empty set (a holder that never left is reported).
        if !mask.is_empty() {
            log::warn!("bench: holders still resident after release: {mask:?}");
        }
        let (m, p) = percentiles(&mut samples);
        let kind = if halted { "halted_" } else { "" };
        ev!(("bench.shootdown.{}{}cpu.median_cycles", kind, n), m);
        ev!(("bench.shootdown.{}{}cpu.p99_cycles", kind, n), p);
        // The whole unmap as VmUnmap does it minus the ring: page-table update, shootdown,
        // frame freed (what Linux's munmap figure is compared with).
        if paired {
            let shootdown_median = m;
            let (m, p) = percentiles(&mut pings);
            ev!("bench.shootdown.1cpu.paired_ipi_rtt.median_cycles", m);
            ev!("bench.shootdown.1cpu.paired_ipi_rtt.p99_cycles", p);
            ev!("bench.shootdown.1cpu.per_mille_of_ipi_rtt", shootdown_median * 1000 / m.max(1));
        }
        let (m, p) = percentiles(&mut whole);
        ev!(("bench.unmap.{}{}cpu.median_cycles", kind, n), m);
        ev!(("bench.unmap.{}{}cpu.p99_cycles", kind, n), p);
    }
    space.destroy();
    invlpg_cost(page);
}

/// How many holders each size of the shootdown benchmark runs with: 1, 2, 4, ... and, when
/// that does not reach it, every other CPU.
fn holder_counts(others: usize) -> Vec<usize> {
    let mut counts: Vec<usize> = Vec::new();
    let mut n = 1;
    while n <= others {
        counts.push(n);
        n *= 2;
    }
    if !others.is_power_of_two() && others != 0 {
        counts.push(others);
    }
    counts
}

/// `rounds` rounds on one page while the holders are resident, each: map it, make it
/// read-only, unmap it. Returns the TSC cycles of the shootdown alone (the read-only change's
/// invalidation: no frame to free, so completing it is exactly the shootdown), of the whole
/// unmap (page-table update, shootdown, frame released) and, with `ping_first`, of a ping
/// round trip to that CPU before each round.
fn unmap_rounds(
    space: &mut AddressSpace,
    page: u64,
    perms: UserPerms,
    rounds: usize,
    ping_first: Option<&percpu::PerCpu>,
) -> (Vec<u64>, Vec<u64>, Vec<u64>) {
    use fw::mm::invalidation::Invalidation;
    let mask = &HOLD_MASK;
    let mut samples = Vec::with_capacity(rounds);
    let mut whole = Vec::with_capacity(rounds);
    let mut pings = Vec::with_capacity(if ping_first.is_some() { rounds } else { 0 });
    for _ in 0..rounds {
        if let Some(holder) = ping_first {
            match smp::ping(holder, smp::PingWait::Tight) {
                Some(c) => pings.push(c),
                None => verdict(false, "IPI round trip to a holder timed out"),
            }
        }
        let Ok(_) = space.map_new(page, perms) else { break };
        let mut changed = Invalidation::new(space.pml4());
        if space.protect(page, false, &mut changed).is_err() {
            break;
        }
        let t0 = cpu::rdtsc();
        let _ = changed.complete(mask);
        samples.push(cpu::rdtsc() - t0);
        let t0 = cpu::rdtsc();
        let mut stale = Invalidation::new(space.pml4());
        if space.unmap(page, &mut stale).is_err() {
            break;
        }
        // The shootdown, then the frame's release back to the allocator (one lock).
        let _ = stale.complete(mask);
        whole.push(cpu::rdtsc() - t0);
    }
    (samples, whole, pings)
}

/// TSC cycles of one INVLPG on this CPU (median of 1,000), the part of a shootdown's
/// handler no implementation can skip.
fn invlpg_cost(page: u64) {
    let mut samples = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let t0 = cpu::rdtsc();
        x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(page));
        samples.push(cpu::rdtsc() - t0);
    }
    ev!("bench.invlpg.median_cycles", percentiles(&mut samples).0);
}

/// TSC cycles for 1,000 iterations of a dependent multiply-add in registers (median of 11
/// runs): how fast this virtual CPU executes plain instructions, which every other figure
/// here is relative to. A few thousand on hardware-assisted virtualization, ~10^5 under TCG,
/// ~10^7 where the hypervisor interprets the guest kernel (PVM with an unmodified guest).
fn execution_rate() -> u64 {
    let mut runs = [0u64; 11];
    let mut x = 1u64;
    for run in runs.iter_mut() {
        let t0 = cpu::rdtsc();
        for _ in 0..1000 {
            x = core::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
        *run = cpu::rdtsc() - t0;
    }
    percentiles(&mut runs).0
}

/// Counts the LAPIC timer (masked one-shot) against the TSC for `ms` milliseconds on this CPU,
/// then restarts the regular tick.
fn long_timer_measurement(ms: u64) -> u64 {
    x86_64::instructions::interrupts::without_interrupts(|| {
        lapic::stop_timer();
        let hz = lapic::measure_timer_hz(ms * 1_000_000);
        lapic::start_tick(lapic::tsc_deadline_mode(), lapic::tickless());
        hz
    })
}
