//! A ring-3 driver for QEMU's `edu` PCI device, proving the `Interrupt` capability path.
//!
//! It maps BAR 0 through its `DeviceMemory` capability, raises interrupts through the
//! device's registers and takes each one with `Interrupt.wait`, clears it in the device and
//! re-arms the source with `Interrupt.acknowledge`. Modes (`mode=` argument):
//! * `msi` / `intx`: `count` interrupts, one at a time; prints how many were raised and
//!   received, and the wake latency from the kernel's timestamp. With `ms=T` instead: back to
//!   back for T milliseconds of the `Timer`'s clock (an interrupt storm of endurance runs).
//! * `storm`: raises one level-triggered INTx and never clears or acknowledges it; a second
//!   wait must time out (the kernel masked the line: exactly one delivery).
//! * `die`: raises an interrupt and exits without taking or acknowledging it.
//! * `takeover`: first collects an interrupt a previous holder left asserted, then runs like
//!   `intx`.
#![no_std]
#![no_main]

use keel_rt::abi::{Method, ObjectKind, Status, Submission};
use keel_rt::util::{arg_u64, cap, check as r, percentiles, rdtsc, Mmio};
use keel_rt::{ev, println, ring, start_info, CapId};

keel_rt::entry!(main);

/// Where the BAR is mapped in this process.
const BAR_VADDR: u64 = 0x0000_1000_0000;
/// edu registers (QEMU docs/specs/edu.rst).
const REG_ID: usize = 0x00;
const REG_LIVENESS: usize = 0x04;
const REG_IRQ_STATUS: usize = 0x24;
const REG_IRQ_RAISE: usize = 0x60;
const REG_IRQ_ACK: usize = 0x64;
const EDU_ID_MASK: u32 = 0xFFFF;
const EDU_ID: u32 = 0x00ED;

const MAX_SAMPLES: usize = 1024;

/// Submits one `InterruptWait` and gives up after `timeout_ns` (true when it completed).
fn wait_with_timeout(irq: CapId, timeout_ns: u64) -> Option<(u64, u64)> {
    let mut ring = ring().expect("ring");
    let tag = 0x5700_0000_0000_0001;
    r(
        "submit",
        ring.submit(Submission {
            cap: irq.0,
            method: Method::InterruptWait as u16,
            flags: 0,
            args: [0; 4],
            user_data: tag,
        }),
    );
    match ring.enter(1, timeout_ns) {
        Ok(n) if n > 0 => {}
        Ok(_) | Err(Status::TimedOut) => return None,
        Err(s) => {
            println!("cap_enter failed: {}", s.name());
            keel_rt::exit(3)
        }
    }
    let c = ring.next_completion()?;
    (c.user_data == tag && c.status == 0).then_some((c.results[0], c.results[1]))
}

fn main() -> u64 {
    let mode = start_info().arg("mode").unwrap_or("msi");
    let count = arg_u64("count", 100);
    let irq = cap(ObjectKind::Interrupt);
    let dm = cap(ObjectKind::DeviceMemory);
    let timer = cap(ObjectKind::Timer);

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
    for i in 0..count {
        if i % 64 == 0 && deadline_ns != u64::MAX && now_ns() >= deadline_ns {
            break;
        }
        raised += 1;
        let t_raise = rdtsc();
        edu.write(REG_IRQ_RAISE, 1);
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
