//! Memory-isolation proofs: ring-3 attacks on kernel pages, W^X and user-memory copies, each
//! checked against the kernel's own counters (the exception-table fixups it took, the kernel
//! page and W^X refusals it made), in both LAPIC modes.

use super::{user_proof, x2apic_cpu, xapic_cpu, Proof};
use crate::checks::{custom, eq, ge, keys_equal};

/// Copies the race makes at least (`manifests/vmhostile.manifest`, `rounds=`).
pub const RACE_COPIES: u64 = 100_000;
/// Map/protect/unmap cycles the racer completes at least (`racer_cycles=`).
pub const RACER_CYCLES: u64 = 500;
/// Unmaps of a page read on another CPU, each with its own reader (`poison_rounds=`).
pub const POISON_ROUNDS: u64 = 16;

/// `thread` (a tid in `tid_key`) was ended by a fault at the address in `addr_key`.
fn ended_by_fault_at(
    what: &'static str,
    tid_key: &'static str,
    addr_key: &'static str,
) -> crate::checks::Check {
    custom(what, move |t| {
        let get = |k: &str| t.evidence.get(k).and_then(|v| v.as_u64()).ok_or(format!("no {k}"));
        let (tid, addr) = (get(tid_key)?, get(addr_key)?);
        let fault = get(&format!("proc.vmhostile.thread_fault.{tid}"))?;
        if fault == addr {
            Ok(())
        } else {
            Err(format!("thread {tid} faulted at {fault:#x}, expected {addr:#x}"))
        }
    })
}

/// `vmhostile` on a 2-CPU machine in `mode`: every attack refused or survived, with figures
/// matching the kernel's counters.
fn vmhostile(p: Proof, mode: &'static str) -> Proof {
    let cpu = p.machine.cpu.clone();
    user_proof(p, "vmhostile", &["vmhostile"])
        .cpu(cpu)
        .timeout_secs(300)
        .check(eq("lapic.mode", mode))
        .check(eq("proc.vmhostile.exit", 0))
        // Kernel pages: every attempt refused with Denied, counted by the kernel's refusal
        // path; the neighbouring page, the ring and the start info unaffected.
        .check(eq("user.vmhostile.second_thread", "yes"))
        .check(ge("user.vmhostile.kernel_page_attempts", 12))
        .check(keys_equal(
            "user.vmhostile.kernel_page_denied",
            "user.vmhostile.kernel_page_attempts",
        ))
        .check(keys_equal("mm.kernel_page_refusals", "user.vmhostile.kernel_page_attempts"))
        .check(eq("user.vmhostile.neighbour_intact", "yes"))
        .check(eq("user.vmhostile.ring_works_after", "yes"))
        .check(eq("user.vmhostile.start_info_intact", "yes"))
        // W^X: code never becomes writable, and its bytes are unchanged.
        .check(ge("user.vmhostile.wx_attempts", 2))
        .check(keys_equal("user.vmhostile.wx_denied", "user.vmhostile.wx_attempts"))
        .check(keys_equal("mm.wx_refusals", "user.vmhostile.wx_attempts"))
        .check(eq("user.vmhostile.code_unchanged", "yes"))
        .check(eq("user.vmhostile.patch_written", "no"))
        // The patcher, the two local-only threads, the retry looper and one poison reader
        // per round.
        .check(eq("proc.vmhostile.thread_faults", 4 + POISON_ROUNDS))
        .check(custom(
            "the patcher thread was ended by a fault at the code address it wrote",
            |t| {
                let get =
                    |k: &str| t.evidence.get(k).and_then(|v| v.as_u64()).ok_or(format!("no {k}"));
                let (tid, addr) =
                    (get("user.vmhostile.patch_tid")?, get("user.vmhostile.patch_addr")?);
                let fault = get(&format!("proc.vmhostile.thread_fault.{tid}"))?;
                if fault == addr {
                    Ok(())
                } else {
                    Err(format!("thread {tid} faulted at {fault:#x}, wrote {addr:#x}"))
                }
            },
        ))
        // The race: every copy completed Ok or BadAddress, every BadAddress was a page fault
        // the exception table recovered (no other check stands in front of the copy), and
        // both outcomes occurred.
        .check(eq("user.vmhostile.racer", "yes"))
        .check(ge("user.vmhostile.copies", RACE_COPIES))
        .check(eq("user.vmhostile.copy_other", 0))
        .check(eq("user.vmhostile.racer_errors", 0))
        .check(ge("user.vmhostile.copy_bad_address", 1))
        .check(ge("user.vmhostile.copy_ok", 1))
        .check(keys_equal("mm.user_copy_fixups", "user.vmhostile.copy_bad_address"))
        .check(ge("user.vmhostile.racer_cycles", RACER_CYCLES))
        .check(eq("mm.unflushed_frames_kept", 0))
        .check(eq("user.heap_leaked", 0))
        // Local-only shootdowns (the space resident on CPU 0 alone): after the write-protect
        // the write faults, after the unmap the read faults, at the page's address; counted
        // among the shootdowns that interrupted no other CPU.
        .check(eq("user.vmhostile.local_mapped", "yes"))
        .check(eq("user.vmhostile.local_protected", "yes"))
        .check(eq("user.vmhostile.local_protect_written", "no"))
        .check(ended_by_fault_at(
            "the write after a local-only write-protect faulted at that page",
            "user.vmhostile.local_protect_tid",
            "user.vmhostile.local_protect_addr",
        ))
        .check(eq("user.vmhostile.local_unmapped", "yes"))
        .check(eq("user.vmhostile.local_unmap_read", "no"))
        .check(ended_by_fault_at(
            "the read after a local-only unmap faulted at that page",
            "user.vmhostile.local_unmap_tid",
            "user.vmhostile.local_unmap_addr",
        ))
        .check(ge("tlb.shootdowns_local", 2))
        // A write that faulted on the read-only entry while CPU 0 made it writable (window
        // widened by the scenarios kernel): retried, not ended; counted as spurious.
        .check(eq("user.vmhostile.spurious_mapped", "yes"))
        .check(eq("user.vmhostile.spurious_protected", "yes"))
        .check(eq("user.vmhostile.spurious_written", "yes"))
        .check(eq("user.vmhostile.spurious_value_landed", "yes"))
        // The retry bound: a fault the (scenarios) walk always takes for spurious is retried
        // once, then ends the thread at that page.
        .check(eq("user.vmhostile.retry_loop_mapped", "yes"))
        .check(eq("user.vmhostile.retry_loop_written", "no"))
        .check(ended_by_fault_at(
            "a fault repeated at once after its spurious retry ended the thread at that page",
            "user.vmhostile.retry_loop_tid",
            "user.vmhostile.retry_loop_addr",
        ))
        .check(ge("mm.spurious_faults", 2))
        .check(eq("mm.spurious_repeats", 1))
        // Freed frames are poisoned (scenarios kernel); readers on CPU 1 read while the unmap
        // is in flight and never see the poison or foreign data.
        .check(eq("user.vmhostile.poison_rounds", POISON_ROUNDS))
        .check(eq("user.vmhostile.poison_round_failures", 0))
        .check(ge("user.vmhostile.poison_reads_in_flight", 1))
        .check(eq("user.vmhostile.poison_seen", 0))
        .check(eq("user.vmhostile.poison_wrong_data", 0))
}

pub fn proofs() -> Vec<Proof> {
    vec![
        vmhostile(Proof::new("vmhostile", "kernel pages, W^X and 10^5 user copies racing unmap on another CPU: refused or BadAddress, never a kernel fault (x2APIC)").cpu(x2apic_cpu()), "x2apic"),
        vmhostile(Proof::new("vmhostile-xapic", "the same in xAPIC mode").cpu(xapic_cpu()), "xapic"),
    ]
}
