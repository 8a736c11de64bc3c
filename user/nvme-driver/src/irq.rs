//! Completions by interrupt: the I/O completion queue's MSI-X entry, granted as an
//! `Interrupt` capability (`msix(nvme, 1)`), woken by `InterruptWait` and re-armed by
//! `InterruptAcknowledge` (the kernel unmasks the entry's vector mask).

use keel_rt::util::check as r;
use keel_rt::{println, CapId, Ring};

/// Wakes and interrupts counted by the driver.
#[derive(Default)]
pub struct Counts {
    /// Completed `InterruptWait`s, and the deliveries they reported (their `count`s).
    pub waits: u64,
    pub interrupts: u64,
}

/// Submits one `InterruptWait` and gives up after `timeout_ns`; the delivery count.
fn wait_with_timeout(ring: &mut Ring, irq: CapId, timeout_ns: u64) -> Option<u64> {
    let tag = 0x4e56_0000_0000_0001;
    r("interrupt wait", ring.interrupt_wait_within(irq, tag, timeout_ns)).map(|(count, _)| count)
}

/// Waits for the queue's interrupt, then re-arms it at once: a completion posted after the
/// acknowledge raises a new message (or sets the entry's pending bit, sent at the unmask),
/// and the caller looks at the ring again before the next wait, so none is lost.
pub fn wait_and_rearm(ring: &mut Ring, irq: CapId, counts: &mut Counts, timeout_ns: u64) -> bool {
    let Some(n) = wait_with_timeout(ring, irq, timeout_ns) else {
        println!("no interrupt within {} ms", timeout_ns / 1_000_000);
        return false;
    };
    counts.waits += 1;
    counts.interrupts += n;
    r("acknowledge", ring.interrupt_acknowledge(irq));
    true
}
