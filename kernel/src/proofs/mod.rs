//! Boot scenarios. The kernel command line's `proof=<name>` picks one; each prints evidence
//! (`EV key=value`) from the code paths it exercised and ends with a verdict. The host-side
//! runner (`xtask`) checks the values; the kernel also checks what it can and fails loudly.

mod bench;
mod races;
mod user;
mod remap;
mod rtc;
mod scale;
mod smp;

pub use crate::init::{bring_up, option_u64, System};

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use keel_boot::cmdline::CommandLine;
use keel_platform::Platform;

use crate::arch::x86_64::{percpu, smp as smp_arch};
use crate::exit::verdict;
use crate::mm::BootContext;

/// Runs the scenario `name`.
pub fn run(name: &str, cmdline: &CommandLine, boot: &BootContext, platform: &'static Platform) -> ! {
    match name {
        "exceptions" => exceptions(),
        "boot" => {
            let system = bring_up(platform, cmdline);
            boot_checks(boot, &system)
        }
        "default" => {
            let system = bring_up(platform, cmdline);
            let heap_ok = heap_check();
            verdict(heap_ok && system.all_online(), "default boot incomplete")
        }
        "smp" => smp::run(bring_up(platform, cmdline), cmdline),
        "bench" => bench::run(bring_up(platform, cmdline), cmdline),
        "user" => user::run(bring_up(platform, cmdline), cmdline, boot),
        "races" => races::run(bring_up(platform, cmdline), cmdline),
        "panic" => panic_on_ap(bring_up(platform, cmdline)),
        "bringup" => scale::bringup_bench(bring_up(platform, cmdline)),
        "shootdown_all" => {
            let rounds = option_u64(cmdline, "rounds", 3);
            scale::shootdown_everywhere(bring_up(platform, cmdline), rounds)
        }
        other => {
            log::error!("unknown proof {other:?}");
            verdict(false, "unknown proof")
        }
    }
}

/// Allocates, fills and verifies heap memory of several shapes.
pub fn heap_check() -> bool {
    let mut v: Vec<u64> = Vec::with_capacity(128 * 1024);
    for i in 0..128 * 1024u64 {
        v.push(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    }
    let vec_ok = v.iter().enumerate().all(|(i, &x)| x == (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    drop(v);
    let mut map = BTreeMap::new();
    for i in 0..1000u32 {
        map.insert(i, alloc::format!("value-{i}"));
    }
    let map_ok = map.len() == 1000 && map.get(&777).map(|s| s.as_str()) == Some("value-777");
    drop(map);
    let ok = vec_ok && map_ok;
    ev!("heap.check", if ok { "ok" } else { "corrupt" });
    ev!("heap.used_bytes_after", crate::mm::heap::used_bytes());
    ok
}

fn boot_checks(boot: &BootContext, system: &System) -> ! {
    let heap_ok = heap_check();
    ev!("boot.modules", boot.modules.len());
    ev!("frames.free", crate::mm::frames::free_count());
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
    crate::time::delay_us(20_000);
    smp_arch::post_work(victim, panic_now, 0);
    // The boot CPU chatters too until the NMI stops it.
    chatter(0);
    verdict(false, "not reached")
}
