//! Scenarios for large machines: the AP bring-up benchmark and a shootdown served by every
//! CPU. The summarised boot report they rely on is `fw::bringup::report`.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use fw::arch::x86_64::{percpu, smp as smp_arch};

/// `proof=bringup`: AP bring-up cost as benchmark figures (the `smp_bringup=` option picks
/// parallel or serial): all online, per AP on average, and the spread of per-AP times.
pub fn bringup_bench(system: fw::bringup::System) -> ! {
    let aps = system.expected_online.saturating_sub(1) as u64;
    let all_us = system.all_online_ns / 1000;
    ev!("bench.bringup.cpus", system.expected_online);
    ev!("bench.bringup.all_online_us", all_us);
    ev!("bench.bringup.per_ap_us", all_us / aps.max(1));
    let mut us: Vec<u64> =
        system.reports.iter().filter(|r| r.bringup_ns > 0).map(|r| r.bringup_ns / 1000).collect();
    us.sort_unstable();
    if let Some(max) = us.last() {
        ev!("bench.bringup.ap_median_us", us[us.len() / 2]);
        ev!("bench.bringup.ap_max_us", max);
    }
    fw::exit::verdict(
        system.all_online()
            && system.reports.iter().all(|r| r.outcome == smp_arch::ApOutcome::Online),
        "not every AP came online",
    )
}

static HOLD_SPACE: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
static HOLDING: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
static LOADED_HERE: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
static RELEASE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Posted to every AP: load the test space, join its resident set, halt (serving shootdown
/// IPIs) until released, then leave the set on the kernel tables again.
fn hold_space(mask_addr: usize) {
    // SAFETY: the mask lives in `shootdown_everywhere`'s frame, which waits for every holder
    // to finish this function before returning.
    let mask = unsafe { &*(mask_addr as *const fw::arch::x86_64::tlb::CpuMask) };
    // Posted work runs in this AP's idle loop, which never leaves the CPU.
    let me = percpu::cpu(percpu::current_index()).expect("this CPU is installed");
    let pml4 = HOLD_SPACE.load(Ordering::Acquire);
    mask.insert(me.index);
    // SAFETY: the test space shares the kernel half, so this code keeps running.
    unsafe { fw::mm::paging::load_space(pml4) };
    // Read back from this CPU's own record of what it loaded (what the shootdown handler
    // compares against before flushing).
    if percpu::local(&percpu::IrqGuard::new()).loaded_space.get() == pml4 {
        LOADED_HERE.fetch_add(1, Ordering::AcqRel);
    }
    HOLDING.fetch_add(1, Ordering::AcqRel);
    while !RELEASE.load(Ordering::Acquire) {
        x86_64::instructions::interrupts::enable_and_hlt();
    }
    fw::mm::paging::load_kernel_space();
    mask.remove(me.index);
    HOLDING.fetch_sub(1, Ordering::AcqRel);
}

/// `proof=shootdown_all`: one address space resident on every online CPU (the APs halted in
/// it), `rounds` single-page unmaps each shot down everywhere; every AP must have served
/// every request (its own inbox counter), as counted from the CPUs' blocks.
pub fn shootdown_everywhere(system: fw::bringup::System, rounds: u64) -> ! {
    use fw::arch::x86_64::{smp, tlb};
    use fw::mm::address_space::{AddressSpace, UserPerms};
    let Ok(mut space) = AddressSpace::new() else { fw::exit::verdict(false, "no address space") };
    HOLD_SPACE.store(space.pml4(), Ordering::Release);
    let others: Vec<_> = percpu::online().filter(|c| c.index != percpu::current_index()).collect();
    let mask = tlb::CpuMask::new();
    let tickets: Vec<_> = others
        .iter()
        .map(|c| (*c, smp::post_work(c, hold_space, &mask as *const _ as usize)))
        .collect();
    let n = others.len() as u64;
    let joined = fw::time::spin_until(0, 120_000_000_000, || HOLDING.load(Ordering::Acquire) == n);
    ev!("tlb.all.holders", HOLDING.load(Ordering::Acquire));
    ev!("tlb.all.loaded_on_cpu", LOADED_HERE.load(Ordering::Acquire));
    ev!("tlb.all.resident", mask.snapshot().len());
    let before: Vec<u64> = others.iter().map(|c| c.tlb.requests.load(Ordering::Acquire)).collect();
    let ipis_before = tlb::ipis_sent();
    let page = 0x0000_4000_0000u64;
    let perms = UserPerms { write: true, exec: false, uncached: false };
    let mut done = 0;
    for _ in 0..rounds {
        let Ok(_) = space.map_new(page, perms) else { break };
        let mut stale = fw::mm::invalidation::Invalidation::new(space.pml4());
        if space.unmap(page, &mut stale).is_err() {
            break;
        }
        // A frame some CPU may still reach is never freed (the invalidation withholds it when
        // the shootdown names CPUs it could not interrupt); that round then does not count.
        if stale.complete(&mask).1 != 1 {
            log::error!("shootdown_all: CPUs not reached");
            break;
        }
        done += 1;
    }
    let served = others
        .iter()
        .zip(&before)
        .filter(|(c, b)| c.tlb.requests.load(Ordering::Acquire) - **b == done)
        .count();
    ev!("tlb.all.rounds", done);
    ev!("tlb.all.cpus_served_every_round", served);
    ev!("tlb.all.icr_writes", tlb::ipis_sent() - ipis_before);
    RELEASE.store(true, Ordering::Release);
    let left = tickets.into_iter().filter(|(c, t)| !smp::wait_work(c, *t, 60_000_000_000)).count();
    ev!("tlb.all.holders_not_released", left);
    space.destroy();
    let ok = joined && done == rounds && served == others.len() && left == 0 && system.all_online();
    fw::exit::verdict(ok, "shootdown everywhere incomplete")
}
