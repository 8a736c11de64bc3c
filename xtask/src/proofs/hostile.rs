//! Hostile proofs: ring-3 programs attack the kernel's control flow and accounting
//! (`user/attack`) and fuzz its ring (`user/fuzz`); the kernel's own counters and allocator
//! figures are the evidence (docs/security.md).

use super::{user_proof, x2apic_cpu, xapic_cpu, Proof};
#[allow(unused_imports)]
use crate::checks::{custom, eq, ge, keys_equal, le};
use crate::qemu::CpuSpec;
use keel_evidence::Transcript;

/// Threads one `attack-spawn` round starts (the process maximum minus the main thread).
const SPAWN_PER_ROUND: u64 = 63;
const SPAWN_ROUNDS: u64 = 3;
/// `attempts=` of each return attack (sysretq and iretq builds).
const RETURN_ATTEMPTS: u64 = 2;

fn attack(p: Proof, cpu: CpuSpec) -> Proof {
    user_proof(p, "attack", &["attack", "attack-iret"])
        .cpu(cpu)
        .check(eq("user.heap_leaked", 0))
        .check(eq("user.processes_live", 0))
        .check(eq("lapic.isr_readable", "yes"))
        // cap_enter(65, 0) and cap_enter(u64::MAX, 0) refuse and consume nothing.
        .check(eq("user.attack_enter.enter_65", "bad_argument"))
        .check(eq("user.attack_enter.enter_max", "bad_argument"))
        .check(eq("user.attack_enter.consumed_by_bad_enter", 0))
        .check(eq("user.attack_enter.completed_after", 3))
        // Spawn-max/exit rounds: every thread started, the 65th refused each round.
        .check(eq("user.attack_spawn.failures", 0))
        .check(eq("user.attack_spawn.spawned", SPAWN_PER_ROUND * SPAWN_ROUNDS))
        .check(eq("user.attack_spawn.refused_at_max", SPAWN_ROUNDS))
        .check(eq("proc.attack_spawn.exit", 0))
        // Exit under 63 live threads (spinning, blocked forever, a sleep of u64::MAX pending).
        .check(eq("user.attack_exit_live.spawned", SPAWN_PER_ROUND))
        .check(eq("user.attack_exit_live.live_threads_at_exit", SPAWN_PER_ROUND + 1))
        .check(eq("proc.attack_exit_live.exit", 0))
        // Returns to 0x8000_0000_0000 through sysretq and iretq: refused by the kernel's own
        // check (counted), the thread ended, the process went on.
        .check(eq("user.attack_return.top_insn", "0f05"))
        .check(eq("user.attack_iret.top_insn", "cd80"))
        // Per build: RETURN_ATTEMPTS bad RIPs and one bad RSP.
        .check(eq("user.bad_returns", 2 * (RETURN_ATTEMPTS + 1)))
        .check(eq("proc.attack_return.bad_return_rip", "0x800000000000"))
        .check(eq("proc.attack_iret.bad_return_rip", "0x800000000000"))
        .check(eq("proc.attack_return.bad_return_rsp", "0x800000000000"))
        .check(eq("proc.attack_iret.bad_return_rsp", "0x800000000000"))
        .check(eq("proc.attack_return.thread_faults", RETURN_ATTEMPTS + 1))
        .check(eq("proc.attack_iret.thread_faults", RETURN_ATTEMPTS + 1))
        .check(eq("user.attack_return.bad_rsp_thread_ended", "yes"))
        .check(eq("user.attack_iret.bad_rsp_thread_ended", "yes"))
        .check(eq("user.attack_return.return_threads_ended", RETURN_ATTEMPTS))
        .check(eq("user.attack_iret.return_threads_ended", RETURN_ATTEMPTS))
        .check(eq("user.attack_return.survived", "yes"))
        .check(eq("user.attack_return.spawn_noncanonical_entry", "bad_address"))
        .check(eq("user.attack_return.spawn_kernel_entry", "bad_address"))
        .check(eq("user.attack_return.spawn_noncanonical_stack", "bad_address"))
        .check(eq("proc.attack_return.exit", 0))
        .check(eq("proc.attack_iret.exit", 0))
        // Jumps into the syscall entry: page faults, never an emulated system call, and no
        // switch of anyone's entry gate.
        .check(keys_equal("user.attack_jump.jump_target", "user.syscall_entry"))
        .check(eq("user.attack_jump.jump_threads_ended", 2))
        .check(eq("user.attack_jump.jump_resumed", 0))
        .check(eq("proc.attack_jump.fault_vector", 14))
        .check(eq("user.syscall_emulated", 0))
        .check(eq("user.syscall_emulation_refused", 2))
        .check(eq("user.gate_requested", "syscall"))
}

/// An `Interrupt` waiter thread that ended does not make the next wait `Busy`.
/// Jumps into the `syscall` entry the `bounds` attack makes (`JUMP_RCX` in
/// `user/attack/src/bounds.rs`).
const BOUNDS_JUMPS: u64 = 7;

/// `user/attack mode=bounds`: each edge case's status, as the kernel must answer it.
const BOUNDS_STATUSES: &[(&str, &str)] = &[
    ("vm_unmap_last_page", "ok"),
    ("vm_map_last_page", "ok"),
    ("vm_protect_last_page", "ok"),
    ("console_last_bytes", "ok"),
    ("console_last_byte", "ok"),
    ("console_cross_by_one", "bad_address"),
    ("console_cross", "bad_address"),
    ("console_zero_at_edge", "ok"),
    ("console_zero_past_edge", "bad_address"),
    ("console_start_at_edge", "bad_address"),
    ("console_wrap", "bad_address"),
    ("console_kernel_half", "bad_address"),
    ("spawn_entry_at_edge", "bad_address"),
    ("spawn_entry_wrap", "bad_address"),
    ("spawn_entry_kernel_half", "bad_address"),
    ("spawn_stack_at_edge", "bad_address"),
    ("spawn_stack_wrap", "bad_address"),
    ("spawn_stack_kernel_half", "bad_address"),
    ("device_size", "1048576"),
    ("device_map_cross", "bad_address"),
    ("device_map_over_ring", "bad_address"),
    ("device_map_at_edge", "bad_address"),
    ("device_map_wrap", "bad_address"),
    ("device_map_kernel_half", "bad_address"),
    ("device_map_below_start_info", "ok"),
    ("vm_protect_last_page_writable", "ok"),
    ("spawn_stack_last", "ok"),
    ("spawn_stack_last_ended", "yes"),
    ("spawn_stack_last_ran", "1"),
];

/// Every user-address path at the edges of user space (`manifests/attack-bounds.manifest`),
/// run with `entry=int80` so no `syscall` ever enters ring 0 and the kernel takes a jump
/// into its `syscall` entry for a failed `syscall`: it then reads the two bytes before RCX
/// from user memory, with RCX at the edges. Each jump must be refused (no emulation, the
/// thread ends by its page fault) and the kernel must survive every case.
fn bounds(p: Proof, cpu: CpuSpec) -> Proof {
    let mut p = user_proof(p, "attack-bounds", &["attack"])
        .cpu(cpu)
        .args("entry=int80")
        .check(eq("user.gate_requested", "int80"))
        .check(eq("entry.syscall", 0))
        .check(eq("user.heap_leaked", 0))
        .check(eq("user.processes_live", 0))
        .check(eq("proc.attack_bounds.exit", 0))
        .check(eq("user.attack_bounds.survived", "yes"))
        .check(keys_equal("user.attack_bounds.jump_target", "user.syscall_entry"))
        .check(eq("user.attack_bounds.jump_attempts", BOUNDS_JUMPS))
        .check(eq("user.attack_bounds.jump_threads_ended", BOUNDS_JUMPS))
        .check(eq("user.attack_bounds.jump_resumed", 0))
        .check(eq("proc.attack_bounds.fault_vector", 14))
        // Only the jumps fault: the thread on the last page ran and ended normally.
        .check(eq("proc.attack_bounds.thread_faults", BOUNDS_JUMPS))
        .check(eq("user.syscall_emulated", 0))
        .check(eq("user.syscall_emulation_refused", BOUNDS_JUMPS))
        .check(custom("the last bytes of user space reached the console", |t| {
            match t.log.iter().any(|l| l.contains("[bounds: the last bytes of user space]")) {
                true => Ok(()),
                false => Err("no console line from the last page".into()),
            }
        }));
    for &(case, want) in BOUNDS_STATUSES {
        p = p.check(eq(&format!("user.attack_bounds.{case}"), want));
    }
    for method in ["vm_map", "vm_unmap", "vm_protect"] {
        for edge in ["cross", "at_edge", "hole", "wrap", "wrap_pages", "kernel_half"] {
            p = p.check(eq(&format!("user.attack_bounds.{method}_{edge}"), "bad_address"));
        }
    }
    p
}

fn irq_waiter(p: Proof, cpu: CpuSpec) -> Proof {
    user_proof(p, "attack-irq", &["attack"])
        .cpu(cpu)
        .check(eq("user.processes_live", 0))
        .check(eq("user.attack_irq.first_wait", "pending"))
        .check(eq("user.attack_irq.second_wait", "pending"))
        .check(eq("user.attack_irq.released", "yes"))
        .check(eq("user.attack_irq.second_wait_cancelled", "yes"))
        .check(eq("irq.isa_8.masked_at_end", "yes"))
        .check(eq("proc.attack_irq.exit", 0))
}

/// Rounds of `ports-exit` in `manifests/io-ports.manifest`.
const PORTS_EXIT_ROUNDS: u64 = 8;

/// Kernel-owned resources are refused, each with its range or device named; a released
/// `IoPorts` range is closed at once on the other CPU (the spinning thread's `in` faults with
/// #GP, closed there by the vector-49 path); last threads exiting together leave every CPU's
/// I/O bitmap closed (read back on each CPU).
fn io_ports(p: Proof, cpu: CpuSpec) -> Proof {
    let mut p = user_proof(p, "io-ports", &["attack"])
        .cpu(cpu)
        .check(eq("user.heap_leaked", 0))
        // The non-last exiting thread's CPU closes only after the last one emptied the list.
        .args("io_exit_race=widen")
        .check(eq("user.processes_live", 0))
        .check(eq("proc.refuse_config.refused", "kernel_owned_ports_0xcf8_0xcff_owner_0xcf8_0xcff"))
        .check(eq(
            "proc.refuse_config_data.refused",
            "kernel_owned_ports_0xcfc_0xcff_owner_0xcf8_0xcff",
        ))
        // From the FADT: q35's PM1a control block.
        .check(eq("proc.refuse_pm.refused", "kernel_owned_ports_0x604_0x604_owner_0x604_0x605"))
        .check(eq("proc.refuse_overlap_a.refused", "overlapping_ports_0x530_0x531"))
        .check(eq("proc.refuse_overlap_b.refused", "overlapping_ports_0x531_0x532"))
        .check(eq("proc.refuse_dma.refused", "dma_not_contained_edu"))
        .check(eq("proc.dma_optin.dma", "unprotected"))
        .check(eq("dma.contained", "no"))
        .check(eq("proc.dma_optin.exit", 0))
        .check(eq("user.ports_release.released", "yes"))
        .check(eq("user.ports_release.after_release_in", "faulted"))
        .check(eq("user.ports_release.second_thread_ended", "yes"))
        .check(eq("proc.ports_release.fault_vector", 13))
        .check(eq("proc.ports_release.thread_faults", 1))
        .check(eq("proc.ports_release.exit", 0))
        // One range closed by the release on each CPU: locally on CPU 0, by IPI on CPU 1.
        .check(eq("io.cpu0.revoke_closes", 1))
        .check(eq("io.cpu1.revoke_closes", 1))
        .check(eq("io.cpu0.open_ports", 0))
        .check(eq("io.cpu1.open_ports", 0));
    for round in 0..PORTS_EXIT_ROUNDS {
        let used: &'static str =
            Box::leak(format!("user.ports_exit_{round}.used_on_two_cpus").into_boxed_str());
        let exit: &'static str =
            Box::leak(format!("proc.ports_exit_{round}.exit").into_boxed_str());
        p = p.check(eq(used, "yes")).check(eq(exit, 0));
    }
    p
}

/// The `races` software-`int` evidence. PVM's emulated LAPIC shows no ISR bit inside a
/// handler (`lapic.isr_readable=no`), so there the kernel cannot tell a software `int` from a
/// delivery and the part is skipped; everywhere else (TCG, hardware) it must hold.
/// `hostile-attack` requires `lapic.isr_readable=yes`, so TCG cannot skip it unnoticed.
fn softint_ok(t: &Transcript) -> Result<(), String> {
    let get = |k: &str| {
        t.evidence.get(k).map(|v| v.as_str().to_string()).ok_or_else(|| format!("{k}: missing"))
    };
    match get("lapic.isr_readable")?.as_str() {
        "no" => {
            return if get("races.softint.checked")? == "no" {
                Ok(())
            } else {
                Err("ISR unreadable but checked".into())
            }
        }
        "yes" => {}
        other => return Err(format!("lapic.isr_readable = {other}")),
    }
    let want = [
        ("races.softint.checked", "yes"),
        ("races.softint.ints_issued", "2"),
        ("races.softint.isr_before", "yes"),
        ("races.softint.isr_after", "yes"),
        ("races.softint.claimed_handler_runs", "0"),
        ("races.softint.not_in_service", "2"),
        ("races.softint.probe_in_service_at_end", "no"),
    ];
    for (k, v) in want {
        let got = get(k)?;
        if got != v {
            return Err(format!("{k} = {got}, want {v}"));
        }
    }
    Ok(())
}

/// Kernel-only corner cases (`kernel/src/scenarios/races.rs`): a software `int` into the device
/// range leaves the in-service vector alone; a shootdown's withdraw never takes another
/// shooter's request from a reused slot; concurrent `post_work` tickets name their own work.
fn races(p: Proof, cpu: CpuSpec, logical: bool) -> Proof {
    p.scenario("races")
        // 2 × 500 concurrent posts: a few seconds under PVM-backed KVM as well.
        .args("posts=500")
        .smp(3)
        .cpu(cpu)
        .timeout_secs(120)
        .check(custom("software int into the device range: not EOI'd, claimed handler not run (where the ISR reads back)", softint_ok))
        .check(eq("races.tlb.all_failed.result", "unreached"))
        .check(eq("races.tlb.all_failed.unreached", 2))
        .check(le("races.tlb.all_failed.ms", 1000))
        .check(eq("races.tlb.all_failed.left_queued", 0))
        .check(eq("races.tlb.logical_failed.result", "ok"))
        // One logical IPI for the cluster of CPUs 1-2 in x2APIC mode; none in xAPIC mode.
        .check(eq("races.tlb.logical_failed.failures", logical as u64))
        // The withdraw ABA: inside the widened window CPU 1 served the first request and a
        // second shooter reused its slot; the withdraw left that request alone (CPU 1 then
        // served it) and the first shootdown completed without counting an ack twice.
        .check(eq("races.tlb.withdraw_aba.hook_runs", 1))
        .check(eq("races.tlb.withdraw_aba.first_served", 1))
        .check(eq("races.tlb.withdraw_aba.second_published", 1))
        .check(eq("races.tlb.withdraw_aba.result", "ok"))
        .check(le("races.tlb.withdraw_aba.ms", 1000))
        .check(eq("races.tlb.withdraw_aba.second_queued_after", 1))
        .check(eq("races.tlb.withdraw_aba.second_served", "yes"))
        .check(eq("races.tlb.withdraw_aba.second_pending", 0))
        .check(eq("races.post_work.finished", "yes"))
        .check(eq("races.post_work.swapped_tickets", 0))
}

/// Submissions of the fuzz run in `cargo xtask test` (`manifests/fuzz.manifest`) and of the
/// long one in `cargo xtask test-hostile` (`manifests/fuzz-full.manifest`).
const FUZZ_SUBMISSIONS: u64 = 100_000;
const FUZZ_FULL_SUBMISSIONS: u64 = 1_000_000;

/// The fuzzer's evidence: every submission answered, no kernel fault (the verdict and exit
/// status), nothing leaked, and the program after it served correctly.
fn fuzz(p: Proof, manifest: &'static str, submissions: u64, cpu: CpuSpec) -> Proof {
    user_proof(p, manifest, &["fuzz", "smptest"])
        .cpu(cpu)
        .smp(2)
        .check(eq("user.fuzz.finished", "yes"))
        .check(ge("user.fuzz.submitted", submissions))
        .check(keys_equal("user.fuzz.completed", "user.fuzz.submitted"))
        .check(ge("user.fuzz.ok", 1))
        .check(ge("user.fuzz.errors", 1))
        .check(eq("user.fuzz.enter_errors", 0))
        .check(ge("user.fuzz.bad_enters", 1))
        .check(eq("user.fuzz.bad_enter_consumed", 0))
        .check(ge("user.fuzz.bad_syscalls", 1))
        .check(eq("user.fuzz.bad_syscall_unexpected", 0))
        .check(eq("proc.fuzz.exit", 0))
        .check(eq("user.heap_leaked", 0))
        .check(eq("user.processes_live", 0))
        .check(eq("user.after_fuzz.finished", "yes"))
        .check(eq("user.after_fuzz.errors", 0))
        .check(eq("user.after_fuzz.operations", 160))
        .check(eq("proc.after_fuzz.exit", 0))
}

pub(super) fn registry() -> Vec<Proof> {
    vec![
        races(Proof::new("races", "software int into the device range never EOIs; concurrent post_work tickets (x2APIC)"), x2apic_cpu(), true),
        races(Proof::new("races-xapic", "the same in xAPIC mode"), xapic_cpu(), false),
        attack(Proof::new("hostile-attack", "spawn-max/exit, non-canonical returns, entry jumps, bad cap_enter, dead irq waiter (x2APIC)"), x2apic_cpu()),
        attack(Proof::new("hostile-attack-xapic", "the same in xAPIC mode"), xapic_cpu()),
        bounds(Proof::new("hostile-bounds", "every user-address path at the edges of user space (last byte and page, crossing 2^47, wrapping, zero length, syscall-entry jumps with RCX at the edges): refused with BadAddress, the kernel survives (x2APIC)"), x2apic_cpu()),
        bounds(Proof::new("hostile-bounds-xapic", "the same in xAPIC mode"), xapic_cpu()),
        irq_waiter(Proof::new("hostile-irq-waiter", "an Interrupt waiter thread that ended leaves the source free for the next wait (x2APIC)"), x2apic_cpu()),
        irq_waiter(Proof::new("hostile-irq-waiter-xapic", "the same in xAPIC mode"), xapic_cpu()),
        io_ports(Proof::new("hostile-io-ports", "kernel-owned ports, overlaps and uncontained DMA refused; a released IoPorts range closed at once on the other CPU (#GP); last threads exiting together leave no port open (x2APIC)"), x2apic_cpu()),
        io_ports(Proof::new("hostile-io-ports-xapic", "the same in xAPIC mode"), xapic_cpu()),
        fuzz(Proof::new("hostile-fuzz", "10^5 random submissions from 4 threads on 2 CPUs: all answered, nothing leaked, the next program served (x2APIC)"), "fuzz", FUZZ_SUBMISSIONS, x2apic_cpu()),
        fuzz(Proof::new("hostile-fuzz-xapic", "the same in xAPIC mode"), "fuzz", FUZZ_SUBMISSIONS, xapic_cpu()),
        fuzz(Proof::new("hostile-fuzz-full", "10^6 random submissions from 4 threads on 2 CPUs (x2APIC)"), "fuzz-full", FUZZ_FULL_SUBMISSIONS, x2apic_cpu())
            // The kernel's own deadline for the programs (60 s by default) must outlast them.
            .args("user_timeout_ms=800000")
            .timeout_secs(900)
            .long(),
        fuzz(Proof::new("hostile-fuzz-full-xapic", "the same in xAPIC mode"), "fuzz-full", FUZZ_FULL_SUBMISSIONS, xapic_cpu())
            .args("user_timeout_ms=800000")
            .timeout_secs(900)
            .long(),
    ]
}
