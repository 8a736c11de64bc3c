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
    /// `moves=N cpus=K`: live moves of the source to the next of CPUs `0..K` still to make
    /// (one right after each I/O doorbell, with the commands in flight), made and refused.
    pub moves_left: u64,
    pub cpus: u64,
    pub cpu_now: u64,
    pub moves: u64,
    pub moves_refused: u64,
}

/// Moves the source to the next CPU when moves are left (`InterruptSetAffinity`), while
/// the commands just submitted complete: their message may arrive before, during (held in
/// the entry's pending bit while the kernel masks it for the switch) or after the move.
pub fn move_if_due(ring: &mut Ring, irq: CapId, counts: &mut Counts) {
    if counts.moves_left == 0 || counts.cpus < 2 {
        return;
    }
    counts.moves_left -= 1;
    let next = (counts.cpu_now + 1) % counts.cpus;
    match ring.interrupt_set_affinity(irq, next) {
        Ok((_, cpu)) if cpu == next => {
            counts.moves += 1;
            counts.cpu_now = next;
        }
        Ok(_) | Err(_) => counts.moves_refused += 1,
    }
}

/// User data of the driver's `InterruptWait` submissions.
const WAIT_TAG: u64 = 0x4e56_0000_0000_0001;

/// Counts a wait that completed (`Some((deliveries, tsc))`), or reports that none came
/// within `timeout_ns`; whether one came.
fn counted(counts: &mut Counts, waited: Option<(u64, u64)>, timeout_ns: u64) -> bool {
    let Some((n, _)) = waited else {
        println!("no interrupt within {} ms", timeout_ns / 1_000_000);
        return false;
    };
    counts.waits += 1;
    counts.interrupts += n;
    true
}

/// Re-arms the source after a wait (`InterruptAcknowledge`: the kernel unmasks its entry).
pub fn rearm(ring: &mut Ring, irq: CapId) {
    r("acknowledge", ring.interrupt_acknowledge(irq));
}

/// Waits for the queue's interrupt, then re-arms it at once: a completion posted after the
/// acknowledge raises a new message (or sets the entry's pending bit, sent at the unmask),
/// and the caller looks at the ring again before the next wait, so none is lost.
pub fn wait_and_rearm(ring: &mut Ring, irq: CapId, counts: &mut Counts, timeout_ns: u64) -> bool {
    let waited = r("interrupt wait", ring.interrupt_wait_within(irq, WAIT_TAG, timeout_ns));
    let woke = counted(counts, waited, timeout_ns);
    if woke {
        rearm(ring, irq);
    }
    woke
}

/// Re-arms the source (it was left masked while the caller drained the queue) and waits
/// for its next interrupt, in one system call: a completion posted while it was masked is
/// held in the entry's pending bit and sent at the unmask, completing the wait at once.
pub fn rearm_and_wait(ring: &mut Ring, irq: CapId, counts: &mut Counts, timeout_ns: u64) -> bool {
    let waited = r(
        "acknowledge and wait",
        ring.interrupt_acknowledge_then_wait_within(irq, WAIT_TAG, timeout_ns),
    );
    counted(counts, waited, timeout_ns)
}
