//! A ring-3 driver for QEMU's `edu` PCI device, proving the `Interrupt` capability path.
//!
//! It maps BAR 0 through its `DeviceMemory` capability, raises interrupts through the
//! device's registers and takes each one with `Interrupt.wait`, clears it in the device and
//! re-arms the source with `Interrupt.acknowledge`. Modes (`mode=` argument):
//! * `msi` / `intx`: `count` interrupts, one at a time; prints how many were raised and
//!   received, and the wake latency from the kernel's timestamp. With `ms=T` instead: back to
//!   back for T milliseconds of the `Timer`'s clock (an interrupt storm of endurance runs).
//! * `move`: as `msi`, and moves the live source (`InterruptSetAffinity`) to the next of
//!   CPUs `0..cpus` `moves` times, each between raising an interrupt and taking it; every
//!   other interrupt is raised by edu's factorial unit, which signals from its own thread
//!   when done (so the message races the move). Prints the moves made and refused.
//! * `storm`: raises one level-triggered INTx and never clears or acknowledges it; a second
//!   wait must time out (the kernel masked the line: exactly one delivery).
//! * `die`: raises an interrupt and exits without taking or acknowledging it.
//! * `takeover`: first collects an interrupt a previous holder left asserted, then runs like
//!   `intx`.
//! * `dma-attack`: aims edu's DMA engine at addresses it was never given (the kernel page
//!   `target`, written and read, then `iova`, which no domain maps; the first `steps` of
//!   these) and waits for each transfer to end; the kernel's fault records and page
//!   checksum say what became of them, and `DeviceMemoryDmaFaults` gives the driver the
//!   faults its device caused (`own_faults`). Needs no `Interrupt` capability.
//! * `dma-roundtrip`: maps two of its own pages for DMA (`DeviceMemoryDmaMap`; one the
//!   device may only read), copies a pattern through edu's buffer by IOVA and checks it;
//!   then checks that a device write to the read-only page, a `VmUnmap` of a mapped page
//!   and a DMA to an IOVA after `DeviceMemoryDmaUnmap` all fail. Exits with the read-only
//!   page still mapped: the kernel revokes it. Reports its `own_faults` too.
//! * `dma-death`: maps one of its pages for DMA, loads a pattern (`seed`) into edu's buffer
//!   from it, clears the page, starts edu's write of the buffer into it and dies while the
//!   transfer is in flight (edu completes it 100 ms later): `death=exit` returns at once,
//!   `death=fault` touches an unmapped page. The kernel revokes the domain before the
//!   page's frame is freed; its proof watches the freed frame.
//! * `dma-bench`: times `count` `DeviceMemoryDmaMap`/`DeviceMemoryDmaUnmap` pairs of one
//!   page (each call from submission to completion, in TSC cycles), with a second page
//!   mapped throughout so the domain stays attached; prints `dma_map=<status>` when the
//!   kernel gives no device address (no IOMMU).
//! * `hold-bus-master`: holds the function's `Interrupt` (so bus mastering stays on) for
//!   `ms` milliseconds and exits; needs no `DeviceMemory`.
#![no_std]
#![no_main]

use keel_rt::abi::{Method, ObjectKind, Status};
use keel_rt::util::{arg_u64, cap, check as r, percentiles, rdtsc, Mmio};
use keel_rt::{ev, println, ring, start_info, CapId};

keel_rt::entry!(main);

/// Where the BAR is mapped in this process.
const BAR_VADDR: u64 = 0x0000_1000_0000;
/// edu registers (QEMU docs/specs/edu.rst).
const REG_ID: usize = 0x00;
const REG_LIVENESS: usize = 0x04;
const REG_FACTORIAL: usize = 0x08;
const REG_STATUS: usize = 0x20;
/// Status bit: raise an interrupt when the factorial is computed.
const STATUS_IRQ_FACTORIAL: u32 = 0x80;
const REG_IRQ_STATUS: usize = 0x24;
const REG_IRQ_RAISE: usize = 0x60;
const REG_IRQ_ACK: usize = 0x64;
const REG_DMA_SRC: usize = 0x80;
const REG_DMA_DST: usize = 0x88;
const REG_DMA_COUNT: usize = 0x90;
const REG_DMA_CMD: usize = 0x98;
/// DMA command bits: start (clears when done) and direction (set: edu buffer → memory).
const DMA_RUN: u32 = 1;
const DMA_TO_MEMORY: u32 = 2;
/// Where edu's own buffer sits in its DMA address space.
const EDU_BUFFER: u64 = 0x40000;
const EDU_ID_MASK: u32 = 0xFFFF;
const EDU_ID: u32 = 0x00ED;

const MAX_SAMPLES: usize = 1024;

/// Submits one `InterruptWait` and gives up after `timeout_ns` (`Some` when it completed).
fn wait_with_timeout(irq: CapId, timeout_ns: u64) -> Option<(u64, u64)> {
    let tag = 0x5700_0000_0000_0001;
    r("interrupt wait", ring().expect("ring").interrupt_wait_within(irq, tag, timeout_ns))
}

fn main() -> u64 {
    let mode = start_info().arg("mode").unwrap_or("msi");
    let count = arg_u64("count", 100);
    let timer = cap(ObjectKind::Timer);
    if mode == "hold-bus-master" {
        let _irq = cap(ObjectKind::Interrupt);
        r("sleep", ring().expect("ring").timer_sleep(timer, arg_u64("ms", 1000) * 1_000_000));
        return 0;
    }
    let dm = cap(ObjectKind::DeviceMemory);

    let mapped = r(
        "DeviceMemoryMap",
        ring().expect("ring").call(dm, Method::DeviceMemoryMap, [BAR_VADDR, 0, 0, 0]),
    );
    // SAFETY: the kernel just mapped the whole BAR (results[1] bytes) uncached at BAR_VADDR.
    let edu = unsafe { Mmio::new(mapped.results[0]) };
    let id = edu.read(REG_ID);
    edu.write(REG_LIVENESS, 0x1234_5678);
    let alive = edu.read(REG_LIVENESS) == !0x1234_5678;
    println!("edu id {id:#x} liveness {alive} bar {:#x} bytes, mode {mode}", mapped.results[1]);
    if id & EDU_ID_MASK != EDU_ID || !alive {
        return 4;
    }

    if mode == "dma-attack" {
        return dma_attack(&edu, dm, timer);
    }
    if mode == "dma-roundtrip" {
        return dma_roundtrip(&edu, dm, timer);
    }
    if mode == "dma-death" {
        return dma_death(&edu, dm, timer);
    }
    if mode == "dma-bench" {
        return dma_bench(dm, count as usize);
    }
    let irq = cap(ObjectKind::Interrupt);
    match mode {
        "die" => {
            r("arm", ring().expect("ring").interrupt_acknowledge(irq));
            edu.write(REG_IRQ_RAISE, 1);
            r("sleep", ring().expect("ring").timer_sleep(timer, 20_000_000));
            ev!("raised", 1);
            println!("exiting with the interrupt pending and unacknowledged");
            return 7;
        }
        "storm" => {
            r("arm", ring().expect("ring").interrupt_acknowledge(irq));
            edu.write(REG_IRQ_RAISE, 1);
            let first = r("wait", ring().expect("ring").interrupt_wait(irq));
            // Neither the device nor the capability is acknowledged: the line stays asserted.
            let second = wait_with_timeout(irq, 300_000_000);
            ev!("first_wait_count", first.0);
            ev!("second_wait", if second.is_some() { "completed" } else { "timed_out" });
            return if second.is_none() { 0 } else { 5 };
        }
        "takeover" => {
            r("arm", ring().expect("ring").interrupt_acknowledge(irq));
            let inherited = wait_with_timeout(irq, 500_000_000);
            ev!("inherited", if inherited.is_some() { "yes" } else { "no" });
            let status = edu.read(REG_IRQ_STATUS);
            edu.write(REG_IRQ_ACK, status);
            if inherited.is_some() {
                r("ack", ring().expect("ring").interrupt_acknowledge(irq));
            }
        }
        _ => {
            // Start from a quiet device, then arm the source.
            edu.write(REG_IRQ_ACK, edu.read(REG_IRQ_STATUS));
            r("arm", ring().expect("ring").interrupt_acknowledge(irq));
        }
    }

    // With `ms=`: raise until that much time has passed (checked every 64 interrupts).
    let now_ns = || r("now", ring().expect("ring").timer_now(timer)).0;
    let (count, deadline_ns) = match arg_u64("ms", 0) {
        0 => (count, u64::MAX),
        ms => (u64::MAX, now_ns() + ms * 1_000_000),
    };
    let mut received = 0u64;
    let mut coalesced = 0u64;
    let mut wake = [0u64; MAX_SAMPLES];
    let mut round_trip = [0u64; MAX_SAMPLES];
    let mut raised = 0u64;
    // `mode=move`: a move every `move_every` interrupts, between the raise and the wait.
    let (moves, cpus) =
        if mode == "move" { (arg_u64("moves", 50), arg_u64("cpus", 2)) } else { (0, 1) };
    let move_every = count.checked_div(moves).map_or(u64::MAX, |n| n.max(1));
    let (mut moved, mut refused, mut cpu_now) = (0u64, 0u64, 0u64);
    if mode == "move" {
        edu.write(REG_STATUS, STATUS_IRQ_FACTORIAL);
        // Hostile targets first: a CPU that does not exist, and one past 32 bits.
        for (key, cpu) in [("move_to_absent_cpu", 4096), ("move_to_u64_max", u64::MAX)] {
            let answer = ring().expect("ring").interrupt_set_affinity(irq, cpu);
            ev!(key, answer.map_or_else(|s| s.name(), |_| "ok"));
        }
    }
    for i in 0..count {
        if i % 64 == 0 && deadline_ns != u64::MAX && now_ns() >= deadline_ns {
            break;
        }
        raised += 1;
        let t_raise = rdtsc();
        if mode == "move" && i % 2 == 1 {
            // Signalled from the device's own thread once computed: races what follows.
            edu.write(REG_FACTORIAL, 10);
        } else {
            edu.write(REG_IRQ_RAISE, 1);
        }
        if moved + refused < moves && i % move_every == 0 {
            let next = (cpu_now + 1) % cpus;
            match ring().expect("ring").interrupt_set_affinity(irq, next) {
                Ok((_, cpu)) if cpu == next => {
                    moved += 1;
                    cpu_now = next;
                }
                Ok(_) | Err(_) => refused += 1,
            }
        }
        let (n, ts) = r("wait", ring().expect("ring").interrupt_wait(irq));
        let t_wake = rdtsc();
        let status = edu.read(REG_IRQ_STATUS);
        edu.write(REG_IRQ_ACK, status);
        r("ack", ring().expect("ring").interrupt_acknowledge(irq));
        received += n;
        if n > 1 {
            coalesced += n - 1;
        }
        if (i as usize) < MAX_SAMPLES {
            wake[i as usize] = t_wake.saturating_sub(ts);
            round_trip[i as usize] = t_wake.saturating_sub(t_raise);
        }
    }
    let samples = (raised as usize).min(MAX_SAMPLES);
    let (wake_median, wake_p99) = percentiles(&mut wake[..samples]);
    let (rt_median, rt_p99) = percentiles(&mut round_trip[..samples]);
    ev!("mode", mode);
    if mode == "move" {
        ev!("moves", moved);
        ev!("moves_refused", refused);
    }
    ev!("raised", raised);
    ev!("received", received);
    ev!("coalesced", coalesced);
    ev!("wake_median_cycles", wake_median);
    ev!("wake_p99_cycles", wake_p99);
    ev!("raise_to_wake_median_cycles", rt_median);
    ev!("raise_to_wake_p99_cycles", rt_p99);
    if received == raised {
        0
    } else {
        6
    }
}

/// Runs one edu DMA transfer of `count` bytes between `memory` and edu's buffer and waits
/// (up to a second) for the engine to finish; true when it did.
fn dma_transfer(edu: &Mmio, timer: CapId, memory: u64, to_memory: bool, count: u32) -> bool {
    dma_start(edu, memory, to_memory, count);
    for _ in 0..100 {
        r("sleep", ring().expect("ring").timer_sleep(timer, 10_000_000));
        if edu.read(REG_DMA_CMD) & DMA_RUN == 0 {
            // Leave the kernel's tick time to take the fault record before the next one.
            r("sleep", ring().expect("ring").timer_sleep(timer, 50_000_000));
            return true;
        }
    }
    false
}

/// Programs one edu DMA transfer and starts it (edu runs it 100 ms of virtual time later).
fn dma_start(edu: &Mmio, memory: u64, to_memory: bool, count: u32) {
    let (src, dst) = if to_memory { (EDU_BUFFER, memory) } else { (memory, EDU_BUFFER) };
    edu.write(REG_DMA_SRC, src as u32);
    edu.write(REG_DMA_SRC + 4, (src >> 32) as u32);
    edu.write(REG_DMA_DST, dst as u32);
    edu.write(REG_DMA_DST + 4, (dst >> 32) as u32);
    edu.write(REG_DMA_COUNT, count);
    edu.write(REG_DMA_CMD, DMA_RUN | if to_memory { DMA_TO_MEMORY } else { 0 });
}

/// Reads back, through `DeviceMemoryDmaFaults`, the faults the kernel delivered for this
/// driver's device: `own_faults`, and the last one's page, reason and direction.
fn report_own_faults(dm: CapId) {
    // Bound first: the ring is borrowed until the statement ends, and printing needs it.
    let faults = ring().expect("ring").dma_faults(dm);
    match faults {
        Ok((count, last)) => {
            ev!("own_faults", count);
            if let Some(f) = last {
                ev!("own_fault_page", format_args!("{:#x}", f.page));
                ev!("own_fault_reason", format_args!("{:#x}", f.reason));
                ev!("own_fault_write", yes(f.write));
            }
        }
        Err(s) => ev!("own_faults", s.name()),
    }
}

/// `mode=dma-attack`: a write and a read of the kernel page `target`, then a write to an
/// IOVA no domain maps (the first `steps` of these). Exit 0 when every transfer ended (it
/// may have faulted).
fn dma_attack(edu: &Mmio, dm: CapId, timer: CapId) -> u64 {
    let iova = arg_u64("iova", 0x0800_0000);
    let target = arg_u64("target", 0x0010_1000);
    // The kernel page is written first, while edu's buffer still holds its initial zeros:
    // a write that landed would change the page (a write-back of bytes read from it would
    // not).
    let attempts = [(target, true), (target, false), (iova, true)];
    let steps = (arg_u64("steps", 3) as usize).min(attempts.len());
    let mut ended = 0u64;
    for &(address, to_memory) in &attempts[..steps] {
        if dma_transfer(edu, timer, address, to_memory, 8) {
            ended += 1;
        }
        println!(
            "dma {} {address:#x}: engine {}",
            if to_memory { "write to" } else { "read of" },
            if edu.read(REG_DMA_CMD) & DMA_RUN == 0 { "done" } else { "still running" }
        );
    }
    ev!("dma_attempts", steps);
    ev!("dma_ended", ended);
    report_own_faults(dm);
    if ended == steps as u64 {
        0
    } else {
        8
    }
}

/// Where `dma-roundtrip` maps its two pages.
const SRC_VA: u64 = 0x0000_2000_0000;
const DST_VA: u64 = SRC_VA + 4096;

fn page(va: u64) -> &'static mut [u64; 512] {
    // SAFETY: `va` is a page this program mapped with `VmMap` (writable: `SRC_VA`, `DST_VA`,
    // `DEATH_VA`) and keeps mapped while it uses it.
    unsafe { &mut *(va as *mut [u64; 512]) }
}

fn fill(va: u64, seed: u64) {
    for (i, w) in page(va).iter_mut().enumerate() {
        *w = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
    }
}

fn holds(va: u64, seed: u64) -> bool {
    page(va)
        .iter()
        .enumerate()
        .all(|(i, w)| *w == (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed)
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// `mode=dma-roundtrip`: see the module comment. Exit 0 when every check held.
fn dma_roundtrip(edu: &Mmio, dm: CapId, timer: CapId) -> u64 {
    let vm = cap(ObjectKind::VirtualMemory);
    r("VmMap", ring().expect("ring").call(vm, Method::VmMap, [SRC_VA, 2, 1, 0]));
    fill(SRC_VA, 0x5EED);
    fill(DST_VA, 0);
    let src = r("dma_map src", ring().expect("ring").dma_map(dm, SRC_VA, 1, false));
    let t_map = rdtsc();
    let dst = r("dma_map dst", ring().expect("ring").dma_map(dm, DST_VA, 1, true));
    let map_cycles = rdtsc().saturating_sub(t_map);
    println!("IOVAs: src {src:#x} (device reads) dst {dst:#x} (device writes)");
    let in_window = src < 1 << 28 && dst < 1 << 28 && src != dst;
    // Memory → edu buffer → memory, by IOVA only.
    let moved =
        dma_transfer(edu, timer, src, false, 4096) && dma_transfer(edu, timer, dst, true, 4096);
    let roundtrip = moved && holds(DST_VA, 0x5EED);
    // The device may only read `src`: a write to it faults, the page keeps its pattern.
    fill(DST_VA, 0xBAD);
    let readonly_respected = dma_transfer(edu, timer, dst, false, 4096)
        && dma_transfer(edu, timer, src, true, 4096)
        && holds(SRC_VA, 0x5EED);
    // A DMA-mapped page is pinned.
    let pinned = ring().expect("ring").call(vm, Method::VmUnmap, [DST_VA, 1, 0, 0]);
    // After DmaUnmap the IOVA leads nowhere: a write to it faults, the page stays as is.
    let t_unmap = rdtsc();
    r("dma_unmap dst", ring().expect("ring").dma_unmap(dm, dst, 1));
    let unmap_cycles = rdtsc().saturating_sub(t_unmap);
    fill(DST_VA, 0x0DD);
    let stale_ended = dma_transfer(edu, timer, dst, true, 4096);
    let stale_landed = !holds(DST_VA, 0x0DD);
    let unmap_after = ring().expect("ring").call(vm, Method::VmUnmap, [DST_VA, 1, 0, 0]);
    ev!("iova_in_window", yes(in_window));
    // One call each, from submission to completion (the unmap includes its IOTLB wait).
    ev!("dma_map_cycles", map_cycles);
    ev!("dma_unmap_cycles", unmap_cycles);
    ev!("roundtrip", if roundtrip { "ok" } else { "mismatch" });
    ev!("readonly_respected", yes(readonly_respected));
    ev!("pinned_unmap", pinned.err().map_or("ok", |s| s.name()));
    ev!("stale_dma_landed", yes(stale_landed));
    ev!("unmap_after", unmap_after.err().map_or("ok", |s| s.name()));
    report_own_faults(dm);
    let pinned_refused = matches!(pinned, Err(Status::Busy));
    let all = in_window && roundtrip && readonly_respected && pinned_refused && stale_ended;
    if all && !stale_landed && unmap_after.is_ok() {
        0
    } else {
        9
    }
}

/// Where `dma-death` maps its page.
const DEATH_VA: u64 = 0x0000_3000_0000;
/// An address `death=fault` touches: never mapped in this process.
const UNMAPPED_VA: u64 = 0x0000_4000_0000;

/// `mode=dma-death`: see the module comment. Returns (exit) or faults with edu's write of the
/// pattern still in flight; an error before that point exits 10.
fn dma_death(edu: &Mmio, dm: CapId, timer: CapId) -> u64 {
    let seed = arg_u64("seed", 0xD1E);
    let vm = cap(ObjectKind::VirtualMemory);
    r("VmMap", ring().expect("ring").call(vm, Method::VmMap, [DEATH_VA, 1, 1, 0]));
    fill(DEATH_VA, seed);
    let iova = r("dma_map", ring().expect("ring").dma_map(dm, DEATH_VA, 1, true));
    // The device reads the pattern into its buffer; the page is cleared after, so only a
    // device write can put the pattern back.
    if !dma_transfer(edu, timer, iova, false, 4096) {
        return 10;
    }
    page(DEATH_VA).fill(0);
    dma_start(edu, iova, true, 4096);
    let in_flight = edu.read(REG_DMA_CMD) & DMA_RUN != 0;
    ev!("death_iova", format_args!("{iova:#x}"));
    ev!("in_flight_at_death", yes(in_flight));
    if start_info().arg("death") == Some("fault") {
        // SAFETY: deliberately not sound: nothing is mapped at UNMAPPED_VA, so this load
        // page-faults and the kernel ends the process (the point of `death=fault`).
        let v = unsafe { (UNMAPPED_VA as *const u64).read_volatile() };
        // Not reached: the load above ends the process.
        return 11 + v.min(1);
    }
    0
}

/// Where `dma-bench` maps its two pages.
const BENCH_VA: u64 = 0x0000_5000_0000;

/// `mode=dma-bench`: see the module comment.
fn dma_bench(dm: CapId, count: usize) -> u64 {
    let vm = cap(ObjectKind::VirtualMemory);
    r("VmMap", ring().expect("ring").call(vm, Method::VmMap, [BENCH_VA, 2, 1, 0]));
    let kept = ring().expect("ring").dma_map(dm, BENCH_VA, 1, true);
    let kept = match kept {
        Ok(iova) => iova,
        Err(s) => {
            ev!("dma_map", s.name());
            return 0;
        }
    };
    let samples = count.min(MAX_SAMPLES);
    let mut map = [0u64; MAX_SAMPLES];
    let mut unmap = [0u64; MAX_SAMPLES];
    for i in 0..samples {
        let t0 = rdtsc();
        let iova = r("dma_map", ring().expect("ring").dma_map(dm, BENCH_VA + 4096, 1, true));
        let t1 = rdtsc();
        r("dma_unmap", ring().expect("ring").dma_unmap(dm, iova, 1));
        let t2 = rdtsc();
        map[i] = t1.saturating_sub(t0);
        unmap[i] = t2.saturating_sub(t1);
    }
    r("dma_unmap", ring().expect("ring").dma_unmap(dm, kept, 1));
    let (map_median, map_p99) = percentiles(&mut map[..samples]);
    let (unmap_median, unmap_p99) = percentiles(&mut unmap[..samples]);
    ev!("dma_map", "ok");
    ev!("dma_samples", samples);
    ev!("dma_map_median_cycles", map_median);
    ev!("dma_map_p99_cycles", map_p99);
    ev!("dma_unmap_median_cycles", unmap_median);
    ev!("dma_unmap_p99_cycles", unmap_p99);
    0
}
