//! Proof scenarios, compiled in only with the kernel's `scenarios` feature (a plain build and
//! the release image leave them out). The kernel command line's `proof=<name>` picks one; it
//! runs on the [`System`] `init::bring_up` returned, prints evidence (`EV key=value`) from
//! the code paths it exercised and ends with a verdict. The host-side runner (`xtask`)
//! checks the values; the kernel also checks what it can and fails loudly.

mod bench;
mod churn;
mod dma_bench;
mod dma_watch;
mod nmi;
mod races;
mod route_evidence;
mod rtc;
mod scale;
mod smp_scenario;
mod support;
mod tickless;
mod user_scenario;
mod vectors;

pub use fw::bringup::System;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use keel_boot::cmdline::CommandLine;

use fw::arch::x86_64::{percpu, smp as smp_arch};
use fw::exit::verdict;
use fw::mm::BootContext;
use support::option_u64;

/// What a scenario runs on: the brought-up system and what the boot loader handed over.
pub struct Context<'a> {
    pub system: System,
    pub cmdline: &'a CommandLine<'a>,
    pub boot: &'a BootContext,
}

/// One scenario: `proof=<name>` runs `run`.
pub struct Scenario {
    pub name: &'static str,
    pub run: fn(Context) -> !,
}

/// Every scenario, by name. A static slice rather than a linker section of self-registering
/// entries (as Asterinas's ktest does): all scenarios live in this one module, so one table
/// the compiler checks says what exists, needs no linker-script section and no `unsafe` to
/// walk it, and the `scenarios` feature leaves the table out with the module.
pub static SCENARIOS: &[Scenario] = &[
    Scenario { name: "default", run: bring_up_only },
    Scenario { name: "boot", run: |c| boot_checks(c.boot, &c.system) },
    Scenario { name: "exceptions", run: |_| exceptions() },
    Scenario { name: "smp", run: |c| smp_scenario::run(c.system, c.cmdline) },
    Scenario { name: "bench", run: |c| bench::run(c.system, c.cmdline) },
    Scenario { name: "user", run: |c| user_scenario::run(c.system, c.cmdline, c.boot) },
    Scenario { name: "races", run: |c| races::run(c.system, c.cmdline) },
    Scenario { name: "nmi_window", run: |c| nmi::run_window(c.system) },
    Scenario { name: "lockup", run: |c| nmi::run_lockup(c.system, c.cmdline) },
    Scenario { name: "tickless", run: |c| tickless::run(c.system, c.cmdline) },
    Scenario { name: "panic", run: |c| panic_on_ap(c.system) },
    Scenario { name: "bringup", run: |c| scale::bringup_bench(c.system) },
    Scenario {
        name: "shootdown_all",
        run: |c| scale::shootdown_everywhere(c.system, option_u64(c.cmdline, "rounds", 3)),
    },
];

/// The scenario `name`; an unknown name is reported with the list of known ones.
pub fn find(name: &str) -> Option<&'static Scenario> {
    let found = SCENARIOS.iter().find(|s| s.name == name);
    if found.is_none() {
        let known: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
        log::error!("proof={name}: no such scenario; known: {}", known.join(", "));
    }
    found
}

/// Test-only switches, read before bring-up and applied through the narrow hooks that exist
/// only in a kernel built with the scenarios; any scenario can be combined with them.
/// `irq_target=boot`: every device interrupt on CPU 0 (drivers elsewhere woken by IPI 49).
/// `entry=int80`: new processes enter through the `int 0x80` gate. `smp_abandon=<apic id>`:
/// that AP's start slot is abandoned before its SIPI (it must park). `smp_lose=<apic id>`:
/// that AP reports its slot online and halts without coming online (the verdict must fail).
/// `smp_wrong_mode=<apic id>`: on an x2APIC machine, that AP comes online with its LAPIC
/// back in xAPIC mode and halts (the verdict must fail).
pub fn prepare(cmdline: &CommandLine) {
    if cmdline.get("irq_target") == Some("boot") {
        crate::task::loader::deliver_irqs_to_boot_cpu();
    }
    if cmdline.get("entry") == Some("int80") {
        fw::arch::x86_64::syscall_entry::start_processes_on_int80();
    }
    if cmdline.get("smp_abandon").is_some() {
        fw::arch::x86_64::ap_start::abandon_before_sipi(
            option_u64(cmdline, "smp_abandon", 0) as u32
        );
    }
    if cmdline.get("smp_lose").is_some() {
        fw::arch::x86_64::ap_start::lose_silently(option_u64(cmdline, "smp_lose", 0) as u32);
    }
    if cmdline.get("smp_wrong_mode").is_some() {
        fw::arch::x86_64::ap_start::leave_in_wrong_mode(
            option_u64(cmdline, "smp_wrong_mode", 0) as u32
        );
    }
}

/// `proof=default`: bring-up and a heap check, no programs.
fn bring_up_only(c: Context) -> ! {
    let heap_ok = heap_check();
    verdict(heap_ok && c.system.all_online(), "default boot incomplete")
}

/// Allocates, fills and verifies heap memory of several shapes.
pub fn heap_check() -> bool {
    let mut v: Vec<u64> = Vec::with_capacity(128 * 1024);
    for i in 0..128 * 1024u64 {
        v.push(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    }
    let vec_ok =
        v.iter().enumerate().all(|(i, &x)| x == (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    drop(v);
    let mut map = BTreeMap::new();
    for i in 0..1000u32 {
        map.insert(i, alloc::format!("value-{i}"));
    }
    let map_ok = map.len() == 1000 && map.get(&777).map(|s| s.as_str()) == Some("value-777");
    drop(map);
    let ok = vec_ok && map_ok;
    ev!("heap.check", if ok { "ok" } else { "corrupt" });
    ev!("heap.used_bytes_after", fw::mm::heap::used_bytes());
    ok
}

fn boot_checks(boot: &BootContext, system: &System) -> ! {
    let heap_ok = heap_check();
    ev!("boot.modules", boot.modules.len());
    ev!("frames.free", fw::mm::frames::free_count());
    let ok = heap_ok && boot.usable_kib > 0 && system.all_online();
    verdict(ok, "boot checks failed")
}

/// Deliberately touches an unmapped kernel-visible address: the page-fault path must print
/// its diagnostic and exit with the fatal-exception status.
fn exceptions() -> ! {
    log::info!("exceptions: reading unmapped address 0xdead0000");
    // SAFETY: intentionally invalid: the proof is that this faults and the fault is reported.
    let value = unsafe { core::ptr::read_volatile(0xdead_0000 as *const u64) };
    log::error!("exceptions: read returned {value:#x} instead of faulting");
    verdict(false, "no page fault")
}

fn chatter(_: usize) {
    let me = percpu::current_index();
    for i in 0u64.. {
        log::info!("chatter from cpu{me}: line {i} of a long report that must not interleave with the panic");
    }
}

fn panic_now(_: usize) {
    panic!("deliberate panic on cpu{}", percpu::current_index());
}

/// `proof=panic`: every other CPU prints without pause, then CPU 1 panics. The panic must stop
/// the others with an NMI and print one uninterrupted report (the runner checks the lines).
fn panic_on_ap(_system: System) -> ! {
    let online = smp_arch::online_cpus();
    ev!("panic.online", online.len());
    let Some(victim) = online.iter().find(|c| c.index == 1).copied() else {
        verdict(false, "panic proof needs two CPUs")
    };
    for cpu in online.iter().filter(|c| c.index > 1) {
        smp_arch::post_work(cpu, chatter, 0);
    }
    fw::time::delay_us(20_000);
    smp_arch::post_work(victim, panic_now, 0);
    // The boot CPU chatters too until the NMI stops it.
    chatter(0);
    verdict(false, "not reached")
}
