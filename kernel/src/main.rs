//! Keel: a capability microkernel for x86_64.
//!
//! Two layers (docs/architecture.md): the framework (`keel-framework`, here `fw`: CPUs, traps,
//! memory, time, console, ACPI, PCI, IOMMUs, bring-up) and this kernel crate above it (tasks,
//! objects, init, the proof scenarios). Lower layers never call up: the framework reaches the
//! kernel only through the trap handlers it is instantiated with below and the upcalls
//! registered first thing at boot.
//!
//! Boot path: `fw::arch::x86_64::boot` (Multiboot 1 or 2, 32-bit) → long mode →
//! [`kernel_entry`] → upcalls, memory, ACPI, interrupts → `fw::bringup` (local APICs, IOAPICs,
//! remapping, application processors) → `init` (the boot manifest's programs). A kernel built
//! with the `scenarios` feature runs the proof scenario `proof=<name>` names on the
//! brought-up system instead.
#![no_std]
#![no_main]

extern crate alloc;
#[macro_use]
extern crate keel_framework as fw;

pub mod init;
pub mod object;
#[cfg(feature = "scenarios")]
pub mod scenarios;
pub mod task;

use keel_boot::cmdline::CommandLine;

// The framework's trap entry, bound to this kernel's handlers.
fw::trap_entry!(task::TrapHandlers);

/// First Rust code on the boot CPU, called from the long-mode trampoline in `boot.rs` with
/// the Multiboot magic (1 or 2, told apart in `mm::init`) and the physical address of the
/// Multiboot information.
#[no_mangle]
pub extern "C" fn kernel_entry(multiboot_magic: u32, multiboot_info: u32) -> ! {
    task::register_upcalls();
    fw::console::init();
    log::info!("keel {} booting", env!("CARGO_PKG_VERSION"));
    fw::arch::x86_64::cpu::init_boot_cpu_features();
    fw::arch::x86_64::percpu::init_boot_cpu();
    fw::arch::x86_64::trap_entry::init_idt();

    let boot = fw::mm::init(multiboot_magic, multiboot_info);
    task::sched::prepare_cpu(0);
    // Multiboot loaders (QEMU, GRUB) put the kernel's path first; options follow it.
    let cmdline_text: &'static str = match boot.cmdline.split_once(' ') {
        Some((first, rest)) if !first.contains('=') => rest.trim_start(),
        None if !boot.cmdline.contains('=') => "",
        _ => boot.cmdline,
    };
    let cmdline = match CommandLine::parse(cmdline_text) {
        Ok(c) => c,
        Err(e) => {
            log::error!("malformed kernel command line {cmdline_text:?}: {e:?}; using defaults");
            CommandLine::parse("").expect("empty command line parses")
        }
    };
    let scenario = cmdline.get("proof");
    ev!("boot.cmdline.proof", scenario.unwrap_or("none"));

    // ACPI first: it finds the HPET and the PM timer the TSC may be calibrated against.
    let platform = fw::acpi::init(boot.acpi_root);
    fw::time::init(cmdline.get("clocksource"));
    match scenario {
        None => init::run(platform, &cmdline, &boot),
        Some(name) => run_scenario(name, &cmdline, &boot, platform),
    }
}

/// `proof=<name>`: test-only switches first, then bring-up, then the scenario on its result.
#[cfg(feature = "scenarios")]
fn run_scenario(
    name: &str,
    cmdline: &CommandLine,
    boot: &fw::mm::BootContext,
    platform: &'static keel_platform::Platform,
) -> ! {
    let Some(scenario) = scenarios::find(name) else {
        fw::exit::verdict(false, "unknown scenario")
    };
    scenarios::prepare(cmdline);
    let system = init::bring_up(platform, cmdline);
    (scenario.run)(scenarios::Context { system, cmdline, boot })
}

/// Without the `scenarios` feature there is nothing to run: said, and the boot fails rather
/// than pass as a proof it never ran.
#[cfg(not(feature = "scenarios"))]
fn run_scenario(
    name: &str,
    _: &CommandLine,
    _: &fw::mm::BootContext,
    _: &'static keel_platform::Platform,
) -> ! {
    log::error!("proof={name}: proof scenarios are not compiled into this kernel (build it with the `scenarios` feature)");
    ev!("boot.scenarios", "absent");
    fw::exit::verdict(false, "scenarios not compiled in")
}
