//! `proof=races`: interrupt and mailbox corner cases, checked from state read back where it
//! lives.
//!
//! * Software `int` into the device range: while a real (self-IPI) device vector is in
//!   service, its handler executes `int` on a claimed device vector whose handler EOIs, and on
//!   an unclaimed one. Neither may EOI: the first vector's ISR bit, read from the LAPIC, must
//!   still be set afterwards, and the claimed handler must not have run.
//! * Shootdown IPIs that cannot be sent: with CPUs 1 and 2 resident in a test space, a
//!   shootdown whose every IPI fails must return promptly with those CPUs unreached and
//!   their requests withdrawn (not wait 5 s and panic); one whose logical (cluster) IPIs fail
//!   must fall back to physical ones and complete.
//! * The withdraw window (issue 21, ABA): a shootdown aimed at CPU 1 alone whose IPI fails
//!   withdraws its request; a hook between locating the request's slot and claiming it makes
//!   CPU 1 serve the request (a real IPI) and a second shooter publish its own request in the
//!   same slot. The withdraw must leave the second request queued (CPU 1 then serves it) and
//!   must not count the first one's acknowledgement twice (the shootdown returns, with no
//!   CPU unreached, instead of waiting 5 s for an acknowledgement that wrapped).
//! * Concurrent `post_work`: the boot CPU and CPU 1 post to CPU 2 at the same time, many
//!   times; each work records its own argument, and when `wait_work` says a ticket is done,
//!   that poster's work must have run (a ticket taken apart from its slot could name the other
//!   poster's work).

use core::sync::atomic::{AtomicU64, Ordering};

use keel_apic::icr::Destination;
use keel_apic::{ApicId, IcrError, Ipi};

use fw::arch::x86_64::ioapic::InService;
use fw::arch::x86_64::{ioapic, lapic, percpu, smp, tlb};
use fw::bringup::System;
use fw::exit::verdict;
use fw::mm::address_space::{AddressSpace, UserPerms};
use fw::mm::paging;

static PROBE_VECTOR: AtomicU64 = AtomicU64::new(0);
static EOI_VECTOR: AtomicU64 = AtomicU64::new(0);
static PROBED: AtomicU64 = AtomicU64::new(0);
static ISR_BEFORE: AtomicU64 = AtomicU64::new(0);
static ISR_AFTER: AtomicU64 = AtomicU64::new(0);
static EOI_HANDLER_RUNS: AtomicU64 = AtomicU64::new(0);

/// The device range's first vector: never allocated in this scenario (it grants no
/// `Interrupt`, whose per-CPU vectors fill each CPU's space from the bottom; kernel-wide
/// vectors such as this scenario's probe and handler are taken from the top).
const UNCLAIMED_VECTOR: u8 = 0x50;

/// `int` with a vector known only at run time (the instruction takes an immediate).
fn soft_int(vector: u8) -> bool {
    macro_rules! table {
        ($($v:literal),*) => {
            match vector {
                // SAFETY: a software interrupt into a vector with a trap stub; the device
                // path must treat it as not in service and return.
                $($v => unsafe { core::arch::asm!(concat!("int ", stringify!($v))) },)*
                _ => return false,
            }
        };
    }
    table!(0x50, 0x51, 0x52, 0x53, 0xDC, 0xDD, 0xDE, 0xDF);
    true
}

/// A handler like an `Interrupt` object's: it EOIs.
fn eoi_handler(_vector: u8, token: InService) {
    EOI_HANDLER_RUNS.fetch_add(1, Ordering::Relaxed);
    token.eoi();
}

/// Runs with the probe vector in service (delivered by the LAPIC as a self-IPI).
fn probe_handler(vector: u8, token: InService) {
    ISR_BEFORE.store(lapic::in_service(vector) as u64, Ordering::Relaxed);
    let claimed = soft_int(EOI_VECTOR.load(Ordering::Relaxed) as u8);
    let unclaimed = soft_int(UNCLAIMED_VECTOR);
    ISR_AFTER.store(lapic::in_service(vector) as u64, Ordering::Relaxed);
    PROBED.store(1 + (claimed && unclaimed) as u64, Ordering::Release);
    token.eoi();
}

fn soft_int_into_device_range() -> bool {
    let (Some(probe), Some(eoi)) =
        (ioapic::allocate_vector(probe_handler), ioapic::allocate_vector(eoi_handler))
    else {
        log::error!("races: no device vectors");
        return false;
    };
    if !lapic::isr_readable() {
        // PVM's emulated LAPIC shows no ISR bit inside handlers: the kernel cannot tell a
        // software `int` from a delivery there and EOIs as before (reported at boot).
        ev!("races.softint.checked", "no");
        return true;
    }
    ev!("races.softint.checked", "yes");
    PROBE_VECTOR.store(probe as u64, Ordering::Relaxed);
    EOI_VECTOR.store(eoi as u64, Ordering::Relaxed);
    let me = ApicId::new(percpu::with_current(|me| me.apic_id.load(Ordering::Acquire)));
    let not_in_service_before = ioapic::NOT_IN_SERVICE.load(Ordering::Relaxed);
    if lapic::send(Ipi::fixed(probe).to(me)).is_err() {
        return false;
    }
    let probed = fw::time::spin_until(0, 1_000_000_000, || PROBED.load(Ordering::Acquire) != 0);
    let yes = |v: &AtomicU64| if v.load(Ordering::Relaxed) == 1 { "yes" } else { "no" };
    ev!("races.softint.probe_vector", probe);
    ev!("races.softint.claimed_vector", eoi);
    ev!("races.softint.ints_issued", if PROBED.load(Ordering::Relaxed) == 2 { 2 } else { 0 });
    ev!("races.softint.isr_before", yes(&ISR_BEFORE));
    ev!("races.softint.isr_after", yes(&ISR_AFTER));
    ev!("races.softint.claimed_handler_runs", EOI_HANDLER_RUNS.load(Ordering::Relaxed));
    ev!(
        "races.softint.not_in_service",
        ioapic::NOT_IN_SERVICE.load(Ordering::Relaxed) - not_in_service_before
    );
    ev!(
        "races.softint.probe_in_service_at_end",
        if lapic::in_service(probe) { "yes" } else { "no" }
    );
    probed
}

static HOLD_MASK: tlb::CpuMask = tlb::CpuMask::new();
static HOLD_SPACE: AtomicU64 = AtomicU64::new(0);
static HOLDING: AtomicU64 = AtomicU64::new(0);
static RELEASE: AtomicU64 = AtomicU64::new(0);

/// Work for CPUs 1 and 2: stay resident in the test space (serving shootdowns) until released.
fn hold_resident(_: usize) {
    let me = percpu::current_index();
    HOLD_MASK.insert(me);
    // SAFETY: the test space shares the kernel half, so this code keeps running.
    unsafe { paging::load_space(HOLD_SPACE.load(Ordering::Acquire)) };
    HOLDING.fetch_add(1, Ordering::AcqRel);
    while RELEASE.load(Ordering::Acquire) == 0 {
        core::hint::spin_loop();
    }
    paging::load_kernel_space();
    HOLD_MASK.remove(me);
    HOLDING.fetch_sub(1, Ordering::AcqRel);
}

fn unsendable_shootdowns() -> bool {
    let Ok(mut space) = AddressSpace::new() else { return false };
    HOLD_SPACE.store(space.pml4(), Ordering::Release);
    let holders: alloc::vec::Vec<_> =
        smp::online_cpus().into_iter().filter(|c| c.index == 1 || c.index == 2).collect();
    let tickets: alloc::vec::Vec<_> =
        holders.iter().map(|c| (*c, smp::post_work(c, hold_resident, 0))).collect();
    let held = fw::time::spin_until(0, 2_000_000_000, || HOLDING.load(Ordering::Acquire) == 2);
    let page = 0x0000_4000_0000u64;
    let perms = UserPerms { write: true, exec: false, uncached: false };
    let _ = space.map_new(page, perms);
    // Every IPI fails.
    let failures_before = tlb::SEND_FAILURES.load(Ordering::Relaxed);
    let t0 = fw::time::now_ns();
    let all_failed = tlb::shootdown_via(space.pml4(), &HOLD_MASK, &[page], &mut |ipi| {
        Err(IcrError::DestinationUnreachableInXApic(match ipi.destination() {
            Destination::Physical(id) => id,
            _ => ApicId::new(0xFFFF),
        }))
    });
    let took_ms = (fw::time::now_ns() - t0) / 1_000_000;
    let unreached = all_failed.as_ref().err().map_or(0, |u| u.0.len());
    ev!("races.tlb.all_failed.result", if all_failed.is_ok() { "ok" } else { "unreached" });
    ev!("races.tlb.all_failed.unreached", unreached);
    ev!("races.tlb.all_failed.ms", took_ms);
    ev!("races.tlb.all_failed.left_queued", tlb::queued(1) + tlb::queued(2));
    // Logical (cluster) IPIs fail, physical ones work.
    let logical_before = tlb::SEND_FAILURES.load(Ordering::Relaxed);
    let fallback =
        tlb::shootdown_via(space.pml4(), &HOLD_MASK, &[page], &mut |ipi| match ipi.destination() {
            Destination::X2ApicLogical(_) => Err(IcrError::LogicalNeedsX2Apic),
            _ => lapic::send(ipi),
        });
    ev!("races.tlb.logical_failed.result", if fallback.is_ok() { "ok" } else { "unreached" });
    ev!(
        "races.tlb.logical_failed.failures",
        tlb::SEND_FAILURES.load(Ordering::Relaxed) - logical_before
    );
    ev!("races.tlb.send_failures", tlb::SEND_FAILURES.load(Ordering::Relaxed) - failures_before);
    let aba = withdraw_window(space.pml4(), page);
    RELEASE.store(1, Ordering::Release);
    for (c, t) in tickets {
        smp::wait_work(c, t, 2_000_000_000);
    }
    space.destroy();
    held && aba
}

/// CPU 1 alone, as a resident set.
static CPU1_MASK: tlb::CpuMask = tlb::CpuMask::new();
static ABA_PML4: AtomicU64 = AtomicU64::new(0);
static ABA_SERVED_FIRST: AtomicU64 = AtomicU64::new(0);
static ABA_SECOND_PUBLISHED: AtomicU64 = AtomicU64::new(0);

/// Inside the withdraw's window: CPU 1 serves the first request, then a second shooter
/// publishes its request in the slot that freed.
fn serve_then_reuse_slot() {
    let served =
        tlb::window::interrupt(1) && fw::time::spin_until(0, 1_000_000_000, || tlb::queued(1) == 0);
    ABA_SERVED_FIRST.store(served as u64, Ordering::Release);
    let published = tlb::window::publish_second(1, ABA_PML4.load(Ordering::Acquire));
    ABA_SECOND_PUBLISHED.store(published as u64, Ordering::Release);
}

/// The withdraw ABA (see the module comment); true when the scenario could run.
fn withdraw_window(pml4: u64, page: u64) -> bool {
    CPU1_MASK.insert(1);
    ABA_PML4.store(pml4, Ordering::Release);
    let runs_before = tlb::window::WITHDRAW_HOOK_RUNS.load(Ordering::Relaxed);
    tlb::window::set_withdraw_hook(Some(serve_then_reuse_slot));
    let t0 = fw::time::now_ns();
    let result = tlb::shootdown_via(pml4, &CPU1_MASK, &[page], &mut |ipi| {
        Err(IcrError::DestinationUnreachableInXApic(match ipi.destination() {
            Destination::Physical(id) => id,
            _ => ApicId::new(0xFFFF),
        }))
    });
    tlb::window::set_withdraw_hook(None);
    let took_ms = (fw::time::now_ns() - t0) / 1_000_000;
    let queued_after = tlb::queued(1);
    // The second shooter's request, if still queued, is served by CPU 1's next IPI.
    let second_served = tlb::window::interrupt(1)
        && fw::time::spin_until(0, 1_000_000_000, || tlb::window::second_pending() == Some(0));
    let runs = tlb::window::WITHDRAW_HOOK_RUNS.load(Ordering::Relaxed) - runs_before;
    ev!("races.tlb.withdraw_aba.hook_runs", runs);
    ev!("races.tlb.withdraw_aba.first_served", ABA_SERVED_FIRST.load(Ordering::Acquire));
    ev!("races.tlb.withdraw_aba.second_published", ABA_SECOND_PUBLISHED.load(Ordering::Acquire));
    ev!("races.tlb.withdraw_aba.result", if result.is_ok() { "ok" } else { "unreached" });
    ev!("races.tlb.withdraw_aba.ms", took_ms);
    ev!("races.tlb.withdraw_aba.second_queued_after", queued_after);
    ev!(
        "races.tlb.withdraw_aba.second_pending",
        tlb::window::second_pending().map_or(u64::MAX, u64::from)
    );
    ev!("races.tlb.withdraw_aba.second_served", if second_served { "yes" } else { "no" });
    CPU1_MASK.remove(1);
    runs == 1
}

/// One slot per poster; each work stores its argument's sequence number there.
static SEEN: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
static SWAPS: AtomicU64 = AtomicU64::new(0);
static POSTER_DONE: AtomicU64 = AtomicU64::new(0);
static ROUNDS: AtomicU64 = AtomicU64::new(0);

/// Work run on the target: records (poster, sequence) packed in `arg`, and lingers a little
/// so the other poster's post overlaps it.
fn record(arg: usize) {
    let (poster, seq) = (arg >> 32, arg as u64 & 0xFFFF_FFFF);
    SEEN[poster].store(seq, Ordering::Release);
    fw::time::delay_us(2);
}

/// Posts `ROUNDS` works to `target` as `poster` and checks each one ran when its ticket says.
fn post_many(poster: usize, target: &'static percpu::PerCpu) {
    for seq in 1..=ROUNDS.load(Ordering::Relaxed) {
        let ticket = smp::post_work(target, record, (poster << 32) | seq as usize);
        if smp::wait_work(target, ticket, 2_000_000_000)
            && SEEN[poster].load(Ordering::Acquire) < seq
        {
            SWAPS.fetch_add(1, Ordering::Relaxed);
        }
    }
    POSTER_DONE.fetch_add(1, Ordering::AcqRel);
}

fn poster_on_cpu1(target_index: usize) {
    if let Some(target) = percpu::cpu(target_index as u32) {
        post_many(1, target);
    }
}

fn concurrent_posts(rounds: u64) -> bool {
    let cpus = smp::online_cpus();
    let (Some(cpu1), Some(cpu2)) =
        (cpus.iter().find(|c| c.index == 1), cpus.iter().find(|c| c.index == 2))
    else {
        log::error!("races: concurrent posts need 3 CPUs");
        return false;
    };
    ROUNDS.store(rounds, Ordering::Relaxed);
    smp::post_work(cpu1, poster_on_cpu1, 2);
    post_many(0, cpu2);
    let finished =
        fw::time::spin_until(0, 30_000_000_000, || POSTER_DONE.load(Ordering::Acquire) == 2);
    ev!("races.post_work.rounds_per_poster", rounds);
    ev!("races.post_work.finished", if finished { "yes" } else { "no" });
    ev!("races.post_work.swapped_tickets", SWAPS.load(Ordering::Relaxed));
    finished
}

/// Runs both parts.
pub fn run(_system: System, cmdline: &keel_boot::cmdline::CommandLine) -> ! {
    let soft = soft_int_into_device_range();
    let shootdowns = unsendable_shootdowns();
    let posts = concurrent_posts(super::support::option_u64(cmdline, "posts", 2000));
    verdict(soft && shootdowns && posts, "races scenario incomplete")
}
