//! Time: the TSC, calibrated against the PIT at boot, gives Keel its clock and its delays
//! (AP start-up waits, timer calibration). Loop counts are never used as delays.

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::Port;

use crate::arch::x86_64::cpu::{self, rdtsc};

/// The PIT input clock.
const PIT_HZ: u64 = 1_193_182;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static BOOT_TSC: AtomicU64 = AtomicU64::new(0);
/// TSC ticks per nanosecond and nanoseconds per tick, as 32.32 fixed point, so that the
/// conversions on hot paths (every `spin_until`) are one multiply instead of a 128-bit
/// division (a software routine: ≈ 700 cycles under TCG).
static TSC_PER_NS_Q32: AtomicU64 = AtomicU64::new(0);
static NS_PER_TSC_Q32: AtomicU64 = AtomicU64::new(0);

/// `value * q32 / 2^32` without overflow.
fn mul_q32(value: u64, q32: u64) -> u64 {
    ((value as u128 * q32 as u128) >> 32) as u64
}

/// TSC frequency in Hz (0 before [`init`]).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Nanoseconds since [`init`].
pub fn now_ns() -> u64 {
    tsc_to_ns(rdtsc().wrapping_sub(BOOT_TSC.load(Ordering::Relaxed)))
}

/// Converts a TSC delta to nanoseconds.
pub fn tsc_to_ns(ticks: u64) -> u64 {
    mul_q32(ticks, NS_PER_TSC_Q32.load(Ordering::Relaxed))
}

/// Converts nanoseconds to TSC ticks.
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
        if polls % 64 == 0 {
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

/// Runs `f` across one PIT channel-2 countdown of `ms` milliseconds and returns the elapsed
/// time in nanoseconds according to the PIT (the caller measures its own clock inside `f`).
///
/// Channel 2 is gated through port 0x61 and its output is readable there, so no interrupt
/// is involved: this works before the IDT/APIC are up and under every accelerator.
pub fn pit_window(ms: u64, mut begin: impl FnMut(), mut end: impl FnMut()) -> u64 {
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
        while gate.read() & 0x20 == 0 {
            core::hint::spin_loop();
        }
        end();
    }
    count as u64 * 1_000_000_000 / PIT_HZ
}

/// Calibrates the TSC (CPUID 0x15 when it reports a real crystal, else the PIT: the median
/// of five 10 ms windows). Not the shortest window: a vCPU descheduled between restarting
/// the PIT and its first TSC read sees a window that is too short (once, under a loaded
/// host, 10.9 MHz for a 2.4 GHz TSC, which made every delay 225 times too short); a late
/// last read makes one too long. The median ignores up to two of either.
pub fn init() {
    let f = cpu::features();
    let from_cpuid = matches!(f.tsc_crystal, Some((_, _, crystal)) if crystal != 0);
    let hz = match f.tsc_crystal {
        Some((den, num, crystal)) if crystal != 0 => crystal as u64 * num as u64 / den as u64,
        _ => {
            let mut rates = [0u64; 5];
            for rate in rates.iter_mut() {
                let (mut a, mut b) = (0, 0);
                let ns = pit_window(10, || a = rdtsc(), || b = rdtsc());
                *rate = ((b - a) as u128 * 1_000_000_000 / ns.max(1) as u128) as u64;
            }
            rates.sort_unstable();
            rates[rates.len() / 2]
        }
    };
    TSC_HZ.store(hz, Ordering::Relaxed);
    TSC_PER_NS_Q32.store(((hz as u128) << 32).div_ceil(1_000_000_000) as u64, Ordering::Relaxed);
    NS_PER_TSC_Q32.store(((1_000_000_000u128 << 32) / hz.max(1) as u128) as u64, Ordering::Relaxed);
    BOOT_TSC.store(rdtsc(), Ordering::Relaxed);
    log::info!("time: TSC {} kHz ({})", hz / 1000, if from_cpuid { "CPUID 0x15" } else { "PIT" });
    ev!("time.tsc_khz", hz / 1000);
}
