//! The boot report. Above `acpi::PER_CPU_LINES_LIMIT` CPUs it prints counts, extremes and
//! ranges read from every CPU's block instead of one line per CPU (thousands of lines would
//! dominate the run and the transcript).

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use keel_apic::LapicMode;
use keel_platform::startup::Ranges;

use crate::arch::x86_64::{ap_start, lapic, percpu, smp as smp_arch};

/// Whether this machine's evidence is summarised rather than listed per CPU.
pub fn summarised() -> bool {
    percpu::all().count() > crate::acpi::PER_CPU_LINES_LIMIT
}

/// The x2APIC logical ID a CPU's LDR must hold (cluster in 31:16, one-hot member in 15:0),
/// per the SDM's derivation from the APIC ID.
fn expected_ldr(apic_id: u32) -> u32 {
    ((apic_id >> 4) << 16) | (1 << (apic_id & 0xF))
}

/// Counts and extremes over every CPU block that exists, each value read back from the
/// block the CPU itself filled in.
pub fn boot_summary(mode: LapicMode) {
    let cpus: Vec<_> = percpu::all().collect();
    let online: Vec<_> = cpus.iter().filter(|c| c.online.load(Ordering::Acquire)).collect();
    let hz: Vec<u64> = online.iter().map(|c| c.lapic.timer_hz.load(Ordering::Relaxed)).collect();
    let mut ids: Vec<u32> = online.iter().map(|c| c.apic_id.load(Ordering::Relaxed)).collect();
    ids.sort_unstable();
    let ldr_mismatches = if mode == LapicMode::X2Apic {
        online
            .iter()
            .filter(|c| {
                c.x2apic_ldr.load(Ordering::Relaxed)
                    != expected_ldr(c.apic_id.load(Ordering::Relaxed))
            })
            .count()
    } else {
        0
    };
    let base_mismatches = online
        .iter()
        .filter(|c| {
            let base = c.apic_base.load(Ordering::Relaxed);
            let x2 = base & (1 << 10) != 0;
            base & (1 << 11) == 0 || x2 != (mode == LapicMode::X2Apic)
        })
        .count();
    log::info!(
        "smp: {} CPU blocks, {} online, timer {}..{} Hz, online APIC IDs {}",
        cpus.len(),
        online.len(),
        hz.iter().min().unwrap_or(&0),
        hz.iter().max().unwrap_or(&0),
        Ranges(&ids)
    );
    ev!("smp.summary", "yes");
    ev!("smp.summary.cpu_blocks", cpus.len());
    ev!("smp.summary.online", online.len());
    ev!("smp.summary.timer_hz_min", hz.iter().min().unwrap_or(&0));
    ev!("smp.summary.timer_hz_max", hz.iter().max().unwrap_or(&0));
    ev!("smp.summary.apic_base_mode_mismatches", base_mismatches);
    ev!("smp.summary.x2apic_ldr_mismatches", ldr_mismatches);
    ev!("smp.summary.online_apic_ids", Ranges(&ids));
}

/// The CPUs that did not come online, grouped by outcome, as index ranges.
pub fn report_failures(reports: &[smp_arch::CpuReport]) {
    let mut kinds: Vec<(alloc::string::String, Vec<u32>)> = Vec::new();
    for r in reports.iter().filter(|r| r.outcome != smp_arch::ApOutcome::Online) {
        let name = alloc::format!("{:?}", r.outcome);
        match kinds.iter_mut().find(|(k, _)| *k == name) {
            Some((_, list)) => list.push(r.index),
            None => kinds.push((name, alloc::vec![r.index])),
        }
    }
    for (kind, list) in &kinds {
        log::warn!("smp: {} CPUs {kind}: index {}", list.len(), Ranges(list));
    }
}

/// Bring-up cost per AP: extremes and median of the online APs' start-to-online times.
pub fn bringup_figures(reports: &[smp_arch::CpuReport]) {
    let mut us: Vec<u64> =
        reports.iter().filter(|r| r.bringup_ns > 0).map(|r| r.bringup_ns / 1000).collect();
    us.sort_unstable();
    if let (Some(min), Some(max)) = (us.first(), us.last()) {
        ev!("smp.bringup_us.min", min);
        ev!("smp.bringup_us.median", us[us.len() / 2]);
        ev!("smp.bringup_us.max", max);
    }
    ev!("smp.parked", ap_start::parked_count());
}

/// How often each name occurs, in first-seen order: `x2apic on 2` or `xapic on 1, x2apic on 1`.
struct Tally(Vec<(&'static str, usize)>);

impl Tally {
    fn of(names: impl Iterator<Item = &'static str>) -> Tally {
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        for name in names {
            match counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, count)) => *count += 1,
                None => counts.push((name, 1)),
            }
        }
        Tally(counts)
    }
}

impl core::fmt::Display for Tally {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, (name, count)) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{name} on {count}")?;
        }
        Ok(())
    }
}

/// The CPU lines a person reads at the end of a plain boot: the CPUs and the LAPIC mode each
/// runs (from its own `IA32_APIC_BASE`), and the timer each armed (its LVT timer register and
/// calibrated frequency).
pub fn cpu_summary(system: &super::System) {
    let online: Vec<_> = percpu::online().collect();
    let modes = Tally::of(
        online.iter().map(|c| lapic::apic_base_mode_name(c.apic_base.load(Ordering::Relaxed))),
    );
    let timers = Tally::of(
        online.iter().map(|c| lapic::timer_mode_name(c.lapic.timer_lvt.load(Ordering::Relaxed))),
    );
    let hz: Vec<u64> = online.iter().map(|c| c.lapic.timer_hz.load(Ordering::Relaxed)).collect();
    let (hz_min, hz_max) = (hz.iter().min().unwrap_or(&0), hz.iter().max().unwrap_or(&0));
    log::info!(
        "summary: {} of {} CPUs online; LAPIC mode: {modes} (chosen at boot: {})",
        online.len(),
        system.platform.cpus().len(),
        lapic::mode_name(system.mode)
    );
    let input = if hz_min == hz_max {
        alloc::format!("{hz_min} Hz")
    } else {
        alloc::format!("{hz_min}..{hz_max} Hz")
    };
    // Tickless, the rate is the time slice's, not a tick's.
    let rate = if lapic::tickless() { "slices (tickless)" } else { "tick" };
    log::info!(
        "summary: timer: {timers}; {} Hz {rate}; LAPIC timer input {input}",
        lapic::tick_hz()
    );
}
