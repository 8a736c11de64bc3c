//! Time: the TSC, calibrated at boot against the best reference the machine has (CPUID, the
//! HPET, the ACPI PM timer or the PIT; `keel_clock` decides), gives Keel its clock and its
//! delays (AP start-up waits, timer calibration). Loop counts are never used as delays; the
//! only loop bounds here are guards against a reference that stopped.

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::Port;

use keel_clock::{Available, ClockSource, Plan};

use crate::arch::x86_64::cpu::{self, rdtsc};

use keel_clock::PIT_HZ;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static BOOT_TSC: AtomicU64 = AtomicU64::new(0);
/// TSC ticks per nanosecond and nanoseconds per tick, as 32.32 fixed point, so that the
/// conversions on hot paths (every `spin_until`) are one multiply instead of a 128-bit
/// division (a software routine: ≈ 700 cycles under TCG).
static TSC_PER_NS_Q32: AtomicU64 = AtomicU64::new(0);
static NS_PER_TSC_Q32: AtomicU64 = AtomicU64::new(0);

/// `value * q32 / 2^32` without overflow.
#[inline]
fn mul_q32(value: u64, q32: u64) -> u64 {
    ((value as u128 * q32 as u128) >> 32) as u64
}

/// TSC frequency in Hz (0 before [`init`]).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Nanoseconds since [`init`].
#[inline]
pub fn now_ns() -> u64 {
    tsc_to_ns(rdtsc().wrapping_sub(BOOT_TSC.load(Ordering::Relaxed)))
}

/// Converts a TSC delta to nanoseconds.
#[inline]
pub fn tsc_to_ns(ticks: u64) -> u64 {
    mul_q32(ticks, NS_PER_TSC_Q32.load(Ordering::Relaxed))
}

/// Converts nanoseconds to TSC ticks.
#[inline]
pub fn ns_to_tsc(ns: u64) -> u64 {
    mul_q32(ns, TSC_PER_NS_Q32.load(Ordering::Relaxed))
}

/// How long [`spin_until`] polls without PAUSE before it starts pausing.
pub const TIGHT_POLL_NS: u64 = 50_000;

/// Spins until `done()` holds (true) or `limit_ns` pass (false). For the first `tight_ns` the
/// poll has no PAUSE: an acknowledgement from another CPU usually lands within an IPI round
/// trip, and a PAUSE delays seeing it (under TCG every PAUSE leaves the vCPU's translated-code
/// loop; under KVM a PAUSE loop invites pause-loop exiting and a reschedule of this vCPU).
/// After that PAUSE lets an overcommitted host run the CPU being waited for.
pub fn spin_until(tight_ns: u64, limit_ns: u64, mut done: impl FnMut() -> bool) -> bool {
    let start = crate::arch::x86_64::cpu::rdtsc();
    let (tight, limit) = (ns_to_tsc(tight_ns), ns_to_tsc(limit_ns));
    let mut pausing = tight == 0;
    let mut polls = 0u32;
    loop {
        if done() {
            return true;
        }
        if pausing {
            core::hint::spin_loop();
        }
        polls = polls.wrapping_add(1);
        // The clock every 64 polls only: RDTSC is slow under some hypervisors.
        if polls.is_multiple_of(64) {
            let elapsed = crate::arch::x86_64::cpu::rdtsc().wrapping_sub(start);
            if elapsed > limit {
                return done();
            }
            pausing = elapsed > tight;
        }
    }
}

/// Busy-waits at least `ns` nanoseconds.
pub fn delay_ns(ns: u64) {
    let start = rdtsc();
    let ticks = ns_to_tsc(ns);
    while rdtsc().wrapping_sub(start) < ticks {
        core::hint::spin_loop();
    }
}

/// Busy-waits at least `us` microseconds.
pub fn delay_us(us: u64) {
    delay_ns(us * 1000);
}

/// Reads of a reference counter one calibration window may take before the counter is taken
/// for stopped (a device that vanished mid-window). A guard against hanging, never a delay:
/// at 20 ns a read this is a second, far beyond a 10 ms window.
const MAX_WINDOW_READS: u64 = 50_000_000;
/// Reads a reference counter gets to change once, when probing whether the device is there
/// (an absent port or register reads the same all-ones value forever).
const PROBE_READS: u32 = 100_000;
/// Windows per calibration, and each window's length in milliseconds.
const WINDOWS: usize = 5;
const WINDOW_MS: u64 = 10;

/// Runs `f` across one PIT channel-2 countdown of `ms` milliseconds and returns the elapsed
/// time in nanoseconds according to the PIT (the caller measures its own clock inside `f`),
/// or `None` when no PIT counts: right after the count is loaded the channel's output (port
/// 0x61 bit 5) must be low, and an absent PIT reads as all ones at once.
///
/// Channel 2 is gated through port 0x61 and its output is readable there, so no interrupt
/// is involved: this works before the IDT/APIC are up and under every accelerator.
pub fn pit_window(ms: u64, mut begin: impl FnMut(), mut end: impl FnMut()) -> Option<u64> {
    let count = (PIT_HZ * ms / 1000).min(0xffff) as u16;
    let mut gate = Port::<u8>::new(0x61);
    let mut command = Port::<u8>::new(0x43);
    let mut channel2 = Port::<u8>::new(0x42);
    // SAFETY: PIT and port 0x61 are legacy devices owned by the kernel; no memory effects.
    unsafe {
        let g = gate.read();
        gate.write((g & !0x02) | 0x01); // speaker off, gate on
        command.write(0b1011_0000); // channel 2, lobyte/hibyte, mode 0, binary
        channel2.write(count as u8);
        channel2.write((count >> 8) as u8);
        // Restart the count: drop and raise the gate.
        let g = gate.read();
        gate.write(g & !0x01);
        gate.write(g | 0x01);
        begin();
        if gate.read() & 0x20 != 0 {
            return None; // the output is already high: nothing is counting
        }
        let mut reads = 0u64;
        while gate.read() & 0x20 == 0 {
            reads += 1;
            if reads > MAX_WINDOW_READS {
                return None;
            }
            core::hint::spin_loop();
        }
        end();
    }
    Some(count as u64 * 1_000_000_000 / PIT_HZ)
}

/// The TSC rate over [`WINDOWS`] PIT windows (the median), `None` without a PIT.
fn tsc_hz_from_pit() -> Option<u64> {
    let mut rates = [0u64; WINDOWS];
    for rate in rates.iter_mut() {
        let (mut a, mut b) = (0, 0);
        let ns = pit_window(WINDOW_MS, || a = rdtsc(), || b = rdtsc())?;
        *rate = keel_clock::tsc_hz_from_window(b.wrapping_sub(a), ns, 1_000_000_000)?;
    }
    keel_clock::median(&mut rates)
}

/// A free-running reference counter: how to read it, its width in bits and its rate.
struct Counter<R: FnMut() -> u64> {
    read: R,
    bits: u32,
    hz: u64,
}

impl<R: FnMut() -> u64> Counter<R> {
    /// Whether the counter moves at all within [`PROBE_READS`] reads.
    fn counts(&mut self) -> bool {
        let first = (self.read)();
        (0..PROBE_READS).any(|_| keel_clock::counter_delta(first, (self.read)(), self.bits) != 0)
    }

    /// The TSC rate over [`WINDOWS`] windows of [`WINDOW_MS`] (the median); `None` when the
    /// counter stops inside a window.
    fn tsc_hz(&mut self) -> Option<u64> {
        let window_ticks = self.hz * WINDOW_MS / 1000;
        let mut rates = [0u64; WINDOWS];
        for rate in rates.iter_mut() {
            let (c0, t0) = ((self.read)(), rdtsc());
            let mut reads = 0u64;
            let (ticks, t1) = loop {
                let (c, t) = ((self.read)(), rdtsc());
                let ticks = keel_clock::counter_delta(c0, c, self.bits);
                if ticks >= window_ticks {
                    break (ticks, t);
                }
                reads += 1;
                if reads > MAX_WINDOW_READS {
                    return None;
                }
            };
            *rate = keel_clock::tsc_hz_from_window(t1.wrapping_sub(t0), ticks, self.hz)?;
        }
        keel_clock::median(&mut rates)
    }
}

/// The ACPI PM timer at `port` (24 or 32 bits), if it counts.
fn pm_timer(port: u16, bits: u32) -> Option<Counter<impl FnMut() -> u64>> {
    let mut reg = Port::<u32>::new(port);
    // SAFETY: the FADT's PM timer block is a read-only counter the kernel owns.
    let read = move || unsafe { reg.read() } as u64;
    let mut counter = Counter { read, bits, hz: keel_clock::PM_TIMER_HZ };
    counter.counts().then_some(counter)
}

/// HPET registers (offsets into its block).
const HPET_CAPABILITIES: usize = 0x00;
const HPET_CONFIG: usize = 0x10;
const HPET_MAIN_COUNTER: usize = 0xF0;
/// Capabilities bit 13: the main counter is 64 bits wide.
const HPET_COUNTER_64: u64 = 1 << 13;
/// General configuration bit 0: the main counter runs.
const HPET_ENABLE: u64 = 1;

/// The HPET at `base` with its main counter running (started if firmware left it stopped;
/// the kernel is its only user), if its period is valid and it counts.
fn hpet(base: u64) -> Option<Counter<impl FnMut() -> u64>> {
    let regs = crate::mm::paging::map_physical(base, 0x400, crate::mm::paging::Caching::Uncached)
        .as_mut_ptr::<u64>();
    let reg = move |offset: usize| regs.wrapping_byte_add(offset);
    // SAFETY: the block is mapped uncached above; the registers are 64-bit aligned.
    let capabilities = unsafe { reg(HPET_CAPABILITIES).read_volatile() };
    let hz = keel_clock::hpet_hz(capabilities)?;
    // SAFETY: as above; only the enable bit is changed.
    unsafe {
        let config = reg(HPET_CONFIG).read_volatile();
        if config & HPET_ENABLE == 0 {
            reg(HPET_CONFIG).write_volatile(config | HPET_ENABLE);
        }
    }
    let bits = if capabilities & HPET_COUNTER_64 != 0 { 64 } else { 32 };
    // SAFETY: as above.
    let read = move || unsafe { reg(HPET_MAIN_COUNTER).read_volatile() };
    let mut counter = Counter { read, bits, hz };
    counter.counts().then_some(counter)
}

/// One source's TSC rate: read from CPUID, or measured against the device.
fn tsc_hz_from(source: ClockSource, hw: &crate::acpi::ClockHardware) -> Option<u64> {
    let f = cpu::features();
    match source {
        ClockSource::Cpuid => keel_clock::cpuid_tsc_hz(f.tsc_crystal, f.base_mhz),
        ClockSource::Hpet => hpet(hw.hpet_base?)?.tsc_hz(),
        ClockSource::PmTimer => {
            let (port, bits) = hw.pm_timer?;
            pm_timer(port, bits)?.tsc_hz()
        }
        ClockSource::Pit => tsc_hz_from_pit(),
    }
}

/// The sources present on this machine: CPUID when it reports a rate, the HPET and PM timer
/// when the firmware describes them and they count, the PIT when its channel 2 counts.
fn available_sources(hw: &crate::acpi::ClockHardware) -> Available {
    let f = cpu::features();
    Available::NONE
        .with(ClockSource::Cpuid, keel_clock::cpuid_tsc_hz(f.tsc_crystal, f.base_mhz).is_some())
        .with(ClockSource::Hpet, hw.hpet_base.and_then(hpet).is_some())
        .with(ClockSource::PmTimer, hw.pm_timer.and_then(|(p, b)| pm_timer(p, b)).is_some())
        .with(ClockSource::Pit, pit_window(1, || {}, || {}).is_some())
}

/// What calibration found: the rate used and how it was obtained.
struct Calibration {
    tsc_hz: u64,
    source: Option<ClockSource>,
}

/// Takes the first plausible rate: the planned source, then the others in preference order.
/// A source whose rate is implausible is reported and skipped, never used.
fn calibrate(plan: &Plan, available: Available, hw: &crate::acpi::ClockHardware) -> Calibration {
    let candidates =
        core::iter::once(plan.primary).chain(available.iter().filter(|s| *s != plan.primary));
    let mut rejected = 0u32;
    for source in candidates {
        match tsc_hz_from(source, hw) {
            Some(hz) if keel_clock::plausible(hz) => {
                ev!("time.rejected", rejected);
                return Calibration { tsc_hz: hz, source: Some(source) };
            }
            other => {
                rejected += 1;
                log::error!(
                    "time: {} gave a TSC rate of {other:?} Hz, outside {:?}; not used",
                    source.name(),
                    keel_clock::PLAUSIBLE_TSC_HZ
                );
            }
        }
    }
    ev!("time.rejected", rejected);
    log::error!(
        "time: no clock source gave a plausible TSC rate; assuming {} Hz: every delay is a guess",
        FALLBACK_TSC_HZ
    );
    Calibration { tsc_hz: FALLBACK_TSC_HZ, source: None }
}

/// The rate assumed when no source gives a plausible one (said loudly, and in the evidence as
/// `time.clocksource=none`).
const FALLBACK_TSC_HZ: u64 = 2_000_000_000;

/// Calibrates the TSC against the best reference the machine has (`keel_clock::plan`:
/// CPUID, HPET, PM timer, PIT; `clocksource=` forces one), then measures it again against a
/// second source when there is one and says whether the two agree. Every measured source
/// takes the median of five 10 ms windows: a vCPU descheduled inside a window makes that
/// window wrong (once, under a loaded host, a 2.4 GHz TSC measured at 10.9 MHz), and the
/// median ignores up to two of them. Runs after `acpi::init`, which found the HPET and the
/// PM timer.
pub fn init(clocksource: Option<&str>) {
    let hw = crate::acpi::clock_hardware();
    let forced = clocksource.and_then(|name| {
        let source = ClockSource::from_name(name);
        if source.is_none() {
            log::warn!("command line: clocksource={name} is not one of cpuid, hpet, pm-timer, pit; ignored");
        }
        source
    });
    let available = available_sources(&hw);
    let mut names = available.iter().map(ClockSource::name);
    let first = names.next().unwrap_or("none");
    let mut listed = alloc::string::String::from(first);
    names.for_each(|n| {
        listed.push(',');
        listed.push_str(n);
    });
    ev!("time.sources", listed);
    let plan = keel_clock::plan(available, forced).unwrap_or(Plan {
        primary: ClockSource::Pit,
        cross_check: None,
        forced_absent: forced,
    });
    if let Some(absent) = plan.forced_absent {
        log::warn!(
            "time: clocksource={} is not present; using {}",
            absent.name(),
            plan.primary.name()
        );
    }
    ev!("time.clocksource_forced", forced.map_or("none", ClockSource::name));
    let calibration = calibrate(&plan, available, &hw);
    let hz = calibration.tsc_hz;
    TSC_HZ.store(hz, Ordering::Relaxed);
    TSC_PER_NS_Q32.store(((hz as u128) << 32).div_ceil(1_000_000_000) as u64, Ordering::Relaxed);
    NS_PER_TSC_Q32.store(((1_000_000_000u128 << 32) / hz.max(1) as u128) as u64, Ordering::Relaxed);
    BOOT_TSC.store(rdtsc(), Ordering::Relaxed);
    let used = calibration.source.map_or("none", ClockSource::name);
    log::info!("time: TSC {} kHz ({used})", hz / 1000);
    ev!("time.tsc_khz", hz / 1000);
    ev!("time.clocksource", used);
    cross_check(calibration.source, available, &hw, hz);
}

/// Measures the TSC against a second source (never CPUID, never the one used) and reports
/// whether the two rates agree within `keel_clock::AGREEMENT_PPM`.
fn cross_check(
    used: Option<ClockSource>,
    available: Available,
    hw: &crate::acpi::ClockHardware,
    hz: u64,
) {
    let second = available.iter().find(|s| Some(*s) != used && *s != ClockSource::Cpuid);
    let Some(second) = second.filter(|_| used.is_some()) else {
        ev!("time.cross_source", "none");
        ev!("time.cross_check", "none");
        return;
    };
    ev!("time.cross_source", second.name());
    let Some(other) = tsc_hz_from(second, hw) else {
        log::warn!("time: {} stopped counting during the cross-check", second.name());
        ev!("time.cross_check", "failed");
        return;
    };
    ev!("time.cross_tsc_khz", other / 1000);
    let ppm = keel_clock::difference_ppm(hz, other);
    ev!("time.cross_difference_ppm", ppm);
    if keel_clock::agree(hz, other) {
        ev!("time.cross_check", "agree");
    } else {
        log::warn!(
            "time: TSC {} kHz by {} but {} kHz by {} ({ppm} ppm apart)",
            hz / 1000,
            used.map_or("none", ClockSource::name),
            other / 1000,
            second.name()
        );
        ev!("time.cross_check", "disagree");
    }
}
