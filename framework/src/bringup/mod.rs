//! The boot sequence below the kernel's own objects: legacy PIC off, the boot CPU's LAPIC in
//! its mode, timer calibration and tick, IOAPICs, interrupt remapping, the application
//! processors, the boot report and the accounting of every CPU the MADT lists. The kernel
//! registers its upcalls (`crate::upcall`) before it calls [`bring_up`]: the APs reach their
//! scheduler hook as soon as they are online.
//!
//! The command-line options read here are boot options of the kernel itself (`timer=`,
//! `iommu=`, `smp_bringup=`); switches that exist only to provoke a path for a proof are
//! read by the scenarios, never here.

pub mod cpus;
pub mod report;

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use keel_apic::LapicMode;
use keel_boot::cmdline::CommandLine;
use keel_platform::Platform;

use crate::arch::x86_64::trap_entry::{DEVICE_VECTOR_BASE, DEVICE_VECTOR_LAST};
use crate::arch::x86_64::{amdvi, ioapic, iommu, lapic, percpu, pic, smp as smp_arch};

/// What bring-up produced.
pub struct System {
    pub mode: LapicMode,
    pub platform: &'static Platform,
    pub reports: Vec<smp_arch::CpuReport>,
    pub expected_online: usize,
    /// From the start of AP bring-up until every AP that was going to come online had.
    pub all_online_ns: u64,
}

impl System {
    /// Whether every CPU we tried to start came online. (Whether every CPU the MADT lists
    /// is accounted for, [`cpus::account`], every verdict checks.)
    pub fn all_online(&self) -> bool {
        smp_arch::online_count() == self.expected_online
    }
}

/// PIC off, LAPIC mode and enable, timer calibration and tick, IOAPICs, APs, boot report.
pub fn bring_up(platform: &'static Platform, cmdline: &CommandLine) -> System {
    pic::disable();
    crate::arch::x86_64::syscall_entry::init_cpu();
    let mode = lapic::init_boot_cpu();
    // Read back from this CPU's IA32_APIC_BASE (EN, EXTD), not the mode the plan chose.
    ev!(
        "lapic.mode",
        lapic::apic_base_mode_name(percpu::with_current(|me| me.apic_base.load(Ordering::Relaxed)))
    );
    let version = lapic::local().version();
    ev!("lapic.version", format_args!("{:#x}", version.version));
    ev!("lapic.max_lvt", version.max_lvt);
    let features = crate::arch::x86_64::cpu::features();
    let requested = cmdline.get("timer");
    // One-shot deadlines (tickless) unless the command line asks for a tick: `timer=periodic`
    // forces the LAPIC's periodic mode, `timer=tick` ticks by TSC-deadline where the CPU has
    // it (docs/lapic.md).
    let (tickless, forced_periodic, reported) = match requested {
        None => (true, false, "default"),
        Some("tickless") => (true, false, "tickless"),
        Some("periodic") => (false, true, "periodic"),
        Some("tick") => (false, false, "tick"),
        Some(other) => {
            log::warn!("command line: timer={other} unknown (tickless, periodic, tick); tickless");
            (true, false, "default")
        }
    };
    ev!("timer.requested", reported);
    let use_deadline = features.tsc_deadline && !forced_periodic;
    match cmdline.get_u64("tick_hz") {
        Ok(None) => {}
        Ok(Some(hz)) => {
            if let Err(hz) = lapic::set_tick_hz(hz) {
                log::warn!(
                    "command line: tick_hz={hz} outside {:?}; using {} Hz",
                    lapic::TICK_HZ_RANGE,
                    lapic::tick_hz()
                );
            }
        }
        Err(e) => log::warn!("command line: tick_hz: {e:?}; using {} Hz", lapic::tick_hz()),
    }
    ev!("timer.tick_hz", lapic::tick_hz());
    match cmdline.get_u64("lockup_ms") {
        Ok(None) => {}
        Ok(Some(ms)) => crate::arch::x86_64::lockup::set_bound_ms(ms),
        Err(e) => log::warn!(
            "command line: lockup_ms: {e:?}; using {} ms",
            crate::arch::x86_64::lockup::bound_ms()
        ),
    }
    ev!("lockup.bound_ms", crate::arch::x86_64::lockup::bound_ms());
    let hz = lapic::calibrate_timer();
    ev!("timer.bsp_hz", hz);
    lapic::start_tick(use_deadline, tickless);
    // The mode the boot CPU's LVT timer register holds, not the one asked for.
    ev!(
        "timer.mode",
        lapic::timer_mode_name(percpu::with_current(|me| me
            .lapic
            .timer_lvt
            .load(Ordering::Relaxed)))
    );
    ioapic::init(platform);
    // Interrupt remapping before any route: every entry is then written in its final format.
    let msi_sources = (DEVICE_VECTOR_LAST - DEVICE_VECTOR_BASE) as u32 + 1;
    iommu::init(
        mode,
        &ioapic::ids(),
        ioapic::gsi_limit(),
        msi_sources,
        cmdline.get("iommu") != Some("off"),
    );
    // Scenarios only: an IVRS EFR image that disagrees with the unit, as buggy firmware
    // writes one (the kernel must go by the register).
    #[cfg(feature = "scenarios")]
    let efr_image = cmdline.get_u64("ivrs_efr_image").ok().flatten();
    #[cfg(not(feature = "scenarios"))]
    let efr_image = None;
    amdvi::init(&ioapic::ids(), cmdline.get("iommu") != Some("off"), efr_image);
    percpu::with_current(|me| me.online.store(true, Ordering::Release));
    x86_64::instructions::interrupts::enable();
    ev!("lapic.isr_readable", if lapic::probe_isr() { "yes" } else { "no" });

    let how = match smp_arch::BringUp::from_option(cmdline.get("smp_bringup")) {
        Ok(how) => how,
        Err(other) => {
            log::warn!("command line: smp_bringup={other:?} is neither parallel nor serial; using parallel");
            smp_arch::BringUp::Parallel
        }
    };
    ev!("smp.bringup", how.name());
    let started = crate::time::now_ns();
    let reports = smp_arch::start_aps(platform, mode, use_deadline, how);
    let expected_online =
        1 + reports.iter().filter(|r| r.outcome == smp_arch::ApOutcome::Online).count();
    let all_ns = crate::time::now_ns() - started;
    let system = System { mode, platform, reports, expected_online, all_online_ns: all_ns };
    boot_report(&system, all_ns);
    cpus::account(platform, mode, &system.reports);
    system
}

/// Every per-CPU state below was read on that CPU from its registers: the mode from its own
/// `IA32_APIC_BASE`, the timer mode from its LVT timer register.
fn boot_report(system: &System, all_online_ns: u64) {
    let mode = lapic::mode_name(system.mode);
    if report::summarised() {
        report::boot_summary(system.mode);
        report::report_failures(&system.reports);
    } else {
        per_cpu_report(system);
    }
    report::bringup_figures(&system.reports);
    let skipped =
        system.reports.iter().filter(|r| r.outcome != smp_arch::ApOutcome::Online).count();
    let declared = system.platform.cpus().len();
    log::info!("smp: {}/{} online mode={mode}", smp_arch::online_count(), declared);
    ev!("lapic.apic_base_writes", lapic::APIC_BASE_WRITES.load(Ordering::Relaxed));
    ev!("smp.online", smp_arch::online_count());
    ev!("smp.declared", declared);
    ev!("smp.skipped", skipped);
    ev!("smp.all_online_us", all_online_ns / 1000);
    let max_id = percpu::online().map(|c| c.apic_id.load(Ordering::Relaxed)).max().unwrap_or(0);
    ev!("smp.max_apic_id", max_id);
}

/// One line and evidence keys per CPU (small machines: the proofs check each CPU by name).
fn per_cpu_report(system: &System) {
    for cpu in percpu::all() {
        let apic_id = cpu.apic_id.load(Ordering::Acquire);
        let online = cpu.online.load(Ordering::Acquire);
        let hz = cpu.lapic.timer_hz.load(Ordering::Relaxed);
        let mode = lapic::apic_base_mode_name(cpu.apic_base.load(Ordering::Relaxed));
        log::info!(
            "cpu {:3}: apic-id {:5} mode {mode:6} timer {:>10} Hz online {}",
            cpu.index,
            apic_id,
            hz,
            online
        );
        ev!(("cpu.{}.apic_id", cpu.index), apic_id);
        ev!(("cpu.{}.mode", cpu.index), mode);
        ev!(
            ("cpu.{}.timer_mode", cpu.index),
            lapic::timer_mode_name(cpu.lapic.timer_lvt.load(Ordering::Relaxed))
        );
        ev!(
            ("cpu.{}.lint0", cpu.index),
            lapic::lint_name(cpu.lapic.lint_lvt[0].load(Ordering::Relaxed))
        );
        ev!(
            ("cpu.{}.lint1", cpu.index),
            lapic::lint_name(cpu.lapic.lint_lvt[1].load(Ordering::Relaxed))
        );
        ev!(("cpu.{}.timer_hz", cpu.index), hz);
        ev!(("cpu.{}.online", cpu.index), if online { "yes" } else { "no" });
        ev!(
            ("cpu.{}.apic_base", cpu.index),
            format_args!("{:#x}", cpu.apic_base.load(Ordering::Relaxed))
        );
        if system.mode == keel_apic::LapicMode::X2Apic {
            ev!(
                ("cpu.{}.x2apic_ldr", cpu.index),
                format_args!("{:#x}", cpu.x2apic_ldr.load(Ordering::Relaxed))
            );
        }
    }
    for r in &system.reports {
        if r.outcome != smp_arch::ApOutcome::Online {
            log::warn!("cpu index {} apic-id {}: {:?}", r.index, r.apic_id, r.outcome);
        } else {
            ev!(("cpu.{}.bringup_us", r.index), r.bringup_ns / 1000);
        }
    }
}
