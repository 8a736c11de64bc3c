//! `proof=bench`: in-guest measurements for `make bench` (not a test: nothing here is
//! asserted against a threshold). IPI round trip between CPU 0 and CPU 1 in TSC cycles,
//! AP bring-up time, and the LAPIC timer calibration error.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use keel_boot::cmdline::CommandLine;

use super::System;
use crate::arch::x86_64::{cpu, lapic, percpu, smp};
use crate::exit::verdict;

/// Median and 99th percentile of `samples` (sorted in place).
fn percentiles(samples: &mut [u64]) -> (u64, u64) {
    samples.sort_unstable();
    let at = |p: usize| samples[(samples.len() - 1) * p / 100];
    (at(50), at(99))
}

pub fn run(system: System, cmdline: &CommandLine) -> ! {
    let trips = super::option_u64(cmdline, "trips", 10_000) as usize;
    let mode = lapic::mode_name(system.mode);
    ev!("bench.mode", mode);
    let Some(other) = percpu::online().find(|c| c.index != 0) else {
        return verdict(false, "bench needs two CPUs");
    };
    // Warm-up trips are discarded.
    for _ in 0..200 {
        smp::ping(other);
    }
    // Trips run back to back by default (`gap_us=N` spaces them so the target is deep in
    // `hlt` when each IPI lands; see docs/benchmarks.md for both figures).
    let gap_us = super::option_u64(cmdline, "gap_us", 0);
    let mut samples = Vec::with_capacity(trips);
    for _ in 0..trips {
        crate::time::delay_us(gap_us);
        match smp::ping(other) {
            Some(c) => samples.push(c),
            None => return verdict(false, "IPI round trip timed out"),
        }
    }
    let (median, p99) = percentiles(&mut samples);
    ev!("bench.ipi_rtt.samples", samples.len());
    ev!("bench.ipi_rtt.median_cycles", median);
    ev!("bench.ipi_rtt.p99_cycles", p99);
    ev!("bench.tsc_khz", crate::time::tsc_hz() / 1000);

    let mut bringup: Vec<u64> = system.reports.iter().filter(|r| r.bringup_ns > 0).map(|r| r.bringup_ns / 1000).collect();
    if !bringup.is_empty() {
        let (m, p) = percentiles(&mut bringup);
        ev!("bench.ap_bringup.median_us", m);
        ev!("bench.ap_bringup.p99_us", p);
        ev!("bench.ap_bringup.max_us", bringup.iter().max().copied().unwrap_or(0));
    }

    // Calibration error: the 10 ms calibration against a 200 ms re-measurement.
    let short = percpu::current().timer_hz.load(Ordering::Relaxed);
    let long = long_timer_measurement(200);
    let error_ppm = (short as i128 - long as i128).abs() * 1_000_000 / long.max(1) as i128;
    ev!("bench.timer.calibrated_hz", short);
    ev!("bench.timer.reference_hz", long);
    ev!("bench.timer.calibration_error_ppm", error_ppm);
    verdict(true, "")
}

/// Counts the LAPIC timer (masked one-shot) against the TSC for `ms` milliseconds on this CPU,
/// then restarts the regular tick.
fn long_timer_measurement(ms: u64) -> u64 {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut l = lapic::local();
        l.stop_timer();
        let hz = lapic::measure_timer_hz(ms * 1_000_000);
        let _ = cpu::rdtsc();
        lapic::start_tick(lapic::tsc_deadline_mode());
        hz
    })
}
