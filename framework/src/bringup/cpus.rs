//! Every CPU the MADT lists, accounted for after bring-up. A CPU counts as online only when
//! an online per-CPU block carries its APIC ID and that CPU's own `IA32_APIC_BASE` (read on
//! it) is in the boot CPU's mode; otherwise bring-up must have reported why it is not
//! (disabled or beyond the limit, unaddressable, short of memory, or its slot abandoned,
//! where a late AP parks). Anything else — an AP that claimed its slot and hung, failed its
//! mode or APIC-ID check, or is reported online without being so — is unaccounted, and
//! [`crate::exit::verdict`] then fails whatever the scenario concluded.

use core::sync::atomic::{AtomicUsize, Ordering};

use keel_apic::LapicMode;
use keel_platform::Platform;

use crate::arch::x86_64::smp::{ApOutcome, CpuReport};
use crate::arch::x86_64::{lapic, percpu};

/// CPUs bring-up left unaccounted; `usize::MAX` until [`account`] ran.
static UNACCOUNTED: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Unaccounted CPUs of the last bring-up (0 when bring-up has not run: nothing to account).
pub fn unaccounted() -> usize {
    match UNACCOUNTED.load(Ordering::Acquire) {
        usize::MAX => 0,
        n => n,
    }
}

/// An outcome bring-up reports for a CPU it deliberately left alone or gave up on.
fn reported_skip(outcome: ApOutcome) -> bool {
    matches!(
        outcome,
        ApOutcome::NotStarted
            | ApOutcome::Unreachable
            | ApOutcome::OutOfMemory(_)
            | ApOutcome::NoArrival
    )
}

/// Checks every MADT CPU against the per-CPU blocks and the bring-up reports, records and
/// returns how many are unaccounted (each one logged).
pub fn account(platform: &Platform, mode: LapicMode, reports: &[CpuReport]) -> usize {
    let want = lapic::mode_name(mode);
    let online_blocks_with = |apic_id: u32| {
        percpu::online().filter(|c| c.apic_id.load(Ordering::Acquire) == apic_id).count()
    };
    let mut unaccounted = 0;
    let mut matched = 0;
    for cpu in platform.cpus() {
        let blocks = online_blocks_with(cpu.apic_id);
        let in_mode = percpu::online().any(|c| {
            c.apic_id.load(Ordering::Acquire) == cpu.apic_id
                && lapic::apic_base_mode_name(c.apic_base.load(Ordering::Relaxed)) == want
        });
        matched += blocks;
        if blocks == 1 && in_mode {
            continue;
        }
        let report = reports.iter().find(|r| r.apic_id == cpu.apic_id);
        if blocks == 0 && report.is_some_and(|r| reported_skip(r.outcome)) {
            continue;
        }
        unaccounted += 1;
        log::error!(
            "smp: cpu index {} apic-id {}: {} online blocks, in {want} mode: {in_mode}, reported {:?}",
            cpu.index.0,
            cpu.apic_id,
            blocks,
            report.map(|r| r.outcome)
        );
    }
    // An online block whose APIC ID the MADT does not list (an AP in another's slot).
    let strays = percpu::online().count().saturating_sub(matched);
    if strays > 0 {
        log::error!("smp: {strays} online CPUs carry an APIC ID the MADT does not list");
    }
    let total = unaccounted + strays;
    UNACCOUNTED.store(total, Ordering::Release);
    ev!("smp.unaccounted", total);
    total
}
