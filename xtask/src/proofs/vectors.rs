//! Per-CPU device vectors: where the interrupt-grant sources' vectors live (read from the
//! kernel's matrix), and the proof that a full CPU sends new sources elsewhere.

use crate::checks::{eq, keys_equal};

use super::user::{device_interrupts_on, remote_wakes_received, BOOT_CPU, DRIVER_CPU};
use super::Proof;

/// The sources of `manifests/interrupt-grant.manifest`, by evidence key.
const SOURCES: [&str; 3] = ["msi_edu", "intx_edu", "isa_8"];

/// Every source's vector is allocated in CPU `on`'s space and the matrix names it the owner
/// there; CPU `other` holds none (counts read from the matrix).
pub(super) fn vectors_on(p: Proof, on: u64, other: u64) -> Proof {
    let mut p = p
        .check(eq(&format!("vectors.cpu.{on}.allocated"), SOURCES.len() as u64))
        .check(eq(&format!("vectors.cpu.{other}.allocated"), 0))
        .check(eq("vectors.unowned_deliveries", 0));
    for s in SOURCES {
        p = p.check(eq(&format!("irq.{s}.cpu"), on));
        p = p.check(eq(&format!("irq.{s}.owner_in_matrix"), "yes"));
    }
    p
}

/// Device vectors per CPU: the range 0x50..=0xDF less the system-call gate (0x80). No other
/// system vector is reserved in the interrupt-grant scenario.
const VECTORS_PER_CPU: u64 = 0xDF - 0x50 + 1 - 1;

/// `vector_fill=1`: CPU 1's space was filled before the drivers started, so all three grants
/// (asking for CPU 1, the drivers' CPU) were placed on CPU 0; the drivers still received every
/// interrupt, woken by IPI 49; the filler's vectors all went back to CPU 1's free pool.
pub(super) fn vector_exhaustion(p: Proof) -> Proof {
    vectors_on(p, BOOT_CPU, DRIVER_CPU)
        .check(eq("vectors.fill.cpu", DRIVER_CPU))
        .check(eq("vectors.fill.taken", VECTORS_PER_CPU))
        .check(eq("vectors.fill.available_after", 0))
        .check(keys_equal("vectors.fill.released", "vectors.fill.taken"))
        .check(eq("vectors.placed_elsewhere", SOURCES.len() as u64))
        .check(eq(&format!("vectors.cpu.{DRIVER_CPU}.available"), VECTORS_PER_CPU))
        .check(device_interrupts_on(BOOT_CPU))
        .check(remote_wakes_received())
}
