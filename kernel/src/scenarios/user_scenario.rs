//! `proof=user`: the plain boot's programs (`init::programs`) under a deadline, with evidence:
//! each exit code against the manifest's `expect_exit`, the interrupt sources' delivery
//! counts, and frame / capability accounting before and after (leaks fail the proof).

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use keel_boot::cmdline::CommandLine;
use keel_manifest::{Grant, Manifest};

use crate::init::programs;
use crate::object::interrupt;
use crate::task::loader::ModuleImage;
use crate::task::process;
use fw::arch::x86_64::trap_entry::ENTRY_COUNTS;
use fw::arch::x86_64::{ioapic, percpu, smp, vector_space};
use fw::bringup::System;
use fw::exit::verdict;
use fw::mm::BootContext;

/// `_system`: bring-up must have happened (CPUs online, tick running); nothing else is needed.
pub fn run(_system: System, cmdline: &CommandLine, boot: &BootContext) -> ! {
    let (mods, manifest) = load(cmdline, boot);
    if cmdline.get("io_exit_race") == Some("widen") {
        process::widen_io_exit_race();
    }
    // Before the baselines: the benchmark maps edu's BAR into the kernel for good.
    super::dma_bench::run(cmdline);
    // Before the baselines too: filling a CPU's vectors creates the matrix, and mapping an
    // MSI-X table into the kernel may take a page-table frame (kept for good).
    let vector_fill = super::vectors::fill(cmdline);
    super::vectors::map_msix_tables(&manifest);
    let churn = super::churn::Churn::start();
    let frames_before = fw::mm::frames::free_count();
    let heap_before = fw::mm::heap::used_bytes();
    ev!("user.frames_free_before", frames_before);
    ev!("user.programs", manifest.programs.len());

    let timeout_ns = super::support::option_u64(cmdline, "user_timeout_ms", 60_000) * 1_000_000;
    let exit_window_ns = super::support::option_u64(cmdline, "exit_window_ms", 0) * 1_000_000;
    crate::task::ring::EXIT_WINDOW_NS.store(exit_window_ns, Ordering::Relaxed);
    let watch = super::dma_watch::start(cmdline);
    let run = programs::run(&manifest, &mods, Some(fw::time::now_ns() + timeout_ns));
    super::dma_watch::finish(watch);
    super::dma_watch::death_evidence(cmdline);
    let mut failures = run.failures + programs::unexpected_exits(&manifest, &run);
    churn.programs_done();
    program_evidence(&manifest, &run);
    interrupt_evidence();
    super::vectors::release(vector_fill);
    super::vectors::evidence();
    cpu_evidence();
    if manifest.programs.iter().any(|p| p.grants.iter().any(|g| matches!(g, Grant::IoPorts { .. })))
    {
        // Every CPU's I/O bitmap read back there, once no program is left.
        fw::arch::x86_64::io_bitmap::report();
    }
    kernel_counter_evidence();
    // The records above were the last use of the processes: drop the proof's references, so
    // what is still allocated now is what the kernel kept (read from the allocators).
    drop(run);
    if leaked(frames_before, heap_before) {
        failures += 1;
    }
    if !super::churn::Churn::end() {
        failures += 1;
    }
    ev!("user.failures", failures);
    verdict(failures == 0, "user programs failed")
}

/// The boot modules and manifest, after the optional IOMMU fault self-test: either failing
/// ends the proof before any program starts.
fn load(cmdline: &CommandLine, boot: &BootContext) -> (Vec<ModuleImage>, Manifest) {
    let (mods, manifest) = match programs::load(boot) {
        Ok(loaded) => loaded,
        Err(e) => {
            log::error!("user: {e}");
            verdict(false, "no usable manifest");
        }
    };
    if cmdline.get("iommu_fault_test") == Some("edu") && !super::route_evidence::fault_self_test() {
        log::error!("user: the IOMMU fault self-test failed");
        verdict(false, "IOMMU fault self-test failed");
    }
    (mods, manifest)
}

/// Per program: what it was expected to exit with and the counters its process kept.
fn program_evidence(manifest: &Manifest, run: &programs::Run) {
    for program in &manifest.programs {
        let key = program.name.replace('-', "_");
        let Some(p) = run.process(&program.name) else { continue };
        let expected =
            if program.expect_refused { u64::MAX } else { program.expect_exit.unwrap_or(0) };
        ev!(("proc.{}.exit_expected", key), expected);
        ev!(("proc.{}.runs", key), run.runs_of(&program.name));
        ev!(("proc.{}.completions", key), p.completions.load(Ordering::Relaxed));
        ev!(("proc.{}.errors", key), p.errors.load(Ordering::Relaxed));
        ev!(("proc.{}.thread_faults", key), p.thread_faults.load(Ordering::Relaxed));
        ev!(("proc.{}.cq_overflow", key), p.cq_overflow.load(Ordering::Relaxed));
        let most = p.max_submissions_per_call.load(Ordering::Relaxed);
        ev!(("proc.{}.max_submissions_per_call", key), most);
        let waited = p.max_queue_wait_ticks.load(Ordering::Relaxed);
        ev!(("proc.{}.max_queue_wait_ticks", key), waited);
    }
}

/// Per `Interrupt` source the kernel set up: deliveries, acknowledgements and the mask and
/// route state at the end, then the IOMMU's fault record.
fn interrupt_evidence() {
    for irq in interrupt::all() {
        let key = irq.name.replace(['(', ')', ',', ' '], "_").replace("__", "_");
        let key = key.trim_end_matches('_');
        ev!(("irq.{}.vector", key), irq.vector());
        // Where the source lives, and whether the matrix names it the owner there.
        ev!(("irq.{}.cpu", key), irq.cpu());
        let owned = vector_space::owner(irq.cpu(), irq.vector()) == Some(irq.owner());
        ev!(("irq.{}.owner_in_matrix", key), if owned { "yes" } else { "no" });
        ev!(("irq.{}.deliveries", key), irq.deliveries.load(Ordering::Relaxed));
        ev!(("irq.{}.acknowledgements", key), irq.acknowledgements.load(Ordering::Relaxed));
        ev!(("irq.{}.coalesced_while_masked", key), irq.while_masked.load(Ordering::Relaxed));
        // Read from the IOAPIC entry / MSI mask bit; `software` where the hardware has none,
        // and then the kernel's own state is reported separately as what it is.
        ev!(("irq.{}.masked_at_end", key), irq.hardware_mask().evidence());
        ev!(("irq.{}.software_masked_at_end", key), if irq.is_masked() { "yes" } else { "no" });
        ev!(("irq.{}.target_apic_id", key), irq.target_apic_id.load(Ordering::Relaxed));
        ev!(("irq.{}.on_target_cpu", key), irq.on_target.load(Ordering::Relaxed));
        ev!(("irq.{}.off_target_cpu", key), irq.off_target.load(Ordering::Relaxed));
        ev!(("irq.{}.moves", key), irq.moves.load(Ordering::Relaxed));
        ev!(("irq.{}.pending_at_move", key), irq.pending_at_move.load(Ordering::Relaxed));
        for (cpu, count) in irq.deliveries_by_cpu.iter().enumerate() {
            ev!(("irq.{}.deliveries_cpu.{}", key, cpu), count.load(Ordering::Relaxed));
        }
        if let Some(device) = irq.pci_device() {
            let on = fw::pci::bus_master(device);
            ev!(("irq.{}.bus_master_at_end", key), if on { "yes" } else { "no" });
        }
        let prefix = alloc::format!("irq.{key}");
        match &irq.source {
            interrupt::Source::Ioapic { gsi, .. } => {
                super::route_evidence::ioapic_evidence(&prefix, *gsi)
            }
            interrupt::Source::Msi { device, cap, .. } => {
                super::route_evidence::msi_evidence(&prefix, device, *cap)
            }
            interrupt::Source::Msix { function, entry } => {
                super::vectors::msix_evidence(&prefix, &irq, function, *entry)
            }
        }
    }
    ev!("iommu.faults", fw::arch::x86_64::iommu::collect_faults());
    fw::arch::x86_64::iommu::evidence();
}

/// Per CPU: the counters kept where the events happen, then the entry-path and TLB totals.
fn cpu_evidence() {
    // One-shot arming figures and `timer.tickless` (read from each CPU's counters).
    super::tickless::report_timer_figures();
    for cpu in percpu::online() {
        ev!(("cpu.{}.timer_ticks", cpu.index), cpu.lapic.timer_ticks.load(Ordering::Relaxed));
        ev!(
            ("cpu.{}.context_switches", cpu.index),
            crate::task::sched::state_of(cpu).switches.load(Ordering::Relaxed)
        );
        ev!(
            ("cpu.{}.preemptions", cpu.index),
            crate::task::sched::state_of(cpu).preemptions.load(Ordering::Relaxed)
        );
        let in_kernel =
            crate::task::sched::state_of(cpu).kernel_preemptions.load(Ordering::Relaxed);
        ev!(("cpu.{}.kernel_preemptions", cpu.index), in_kernel);
        let delay_tsc =
            crate::task::sched::state_of(cpu).max_resched_delay_tsc.load(Ordering::Relaxed);
        let delay_us = delay_tsc * 1_000_000 / fw::time::tsc_hz().max(1);
        ev!(("cpu.{}.max_resched_delay_us", cpu.index), delay_us);
        ev!(("cpu.{}.tlb_ipis", cpu.index), cpu.tlb.ipis.load(Ordering::Relaxed));
        ev!(("cpu.{}.tlb_requests", cpu.index), cpu.tlb.requests.load(Ordering::Relaxed));
        // Counted where they happen: IPI 49 in its handler on the receiving CPU, device
        // vectors in the dispatcher of the CPU that took them, ring-3 entries per entry path.
        ev!(
            ("cpu.{}.ipis_received", cpu.index),
            smp::IPIS_RECEIVED.of(cpu.index).load(Ordering::Relaxed)
        );
        ev!(
            ("cpu.{}.wake_ipis_sent", cpu.index),
            crate::task::sched::state_of(cpu).wake_ipis.load(Ordering::Relaxed)
        );
        let (device, entries) =
            (ioapic::DEVICE_INTERRUPTS.of(cpu.index), ENTRY_COUNTS.of(cpu.index));
        ev!(("cpu.{}.device_interrupts", cpu.index), device.load(Ordering::Relaxed));
        ev!(("cpu.{}.syscall_entries", cpu.index), entries.syscall.load(Ordering::Relaxed));
        ev!(("cpu.{}.int80_entries", cpu.index), entries.int80.load(Ordering::Relaxed));
    }
    let space = |f: fn(&crate::task::space::SpaceCounts) -> &AtomicU64| -> u64 {
        percpu::online()
            .map(|c| f(crate::task::space::COUNTS.of(c.index)).load(Ordering::Relaxed))
            .sum()
    };
    ev!("space.switch_ins_kept", space(|c| &c.kept));
    ev!("space.loads", space(|c| &c.loads));
    ev!("space.left_on_request", space(|c| &c.left_on_request));
    ev!("space.leaked", crate::task::process::SPACES_LEAKED.load(Ordering::Relaxed));
    ev!(
        "entry.syscall",
        percpu::online()
            .map(|c| ENTRY_COUNTS.of(c.index).syscall.load(Ordering::Relaxed))
            .sum::<u64>()
    );
    ev!(
        "entry.int80",
        percpu::online()
            .map(|c| ENTRY_COUNTS.of(c.index).int80.load(Ordering::Relaxed))
            .sum::<u64>()
    );
    use fw::arch::x86_64::tlb;
    ev!("tlb.shootdowns", tlb::shootdowns());
    ev!("tlb.shootdowns_local", tlb::shootdowns_local());
    ev!("tlb.ipis_sent", tlb::ipis_sent());
    ev!("tlb.last_targets", format_args!("{:#x}", tlb::LAST_TARGETS.load(Ordering::Relaxed)));
    ev!("tlb.last_icr_writes", tlb::LAST_ICR_WRITES.load(Ordering::Relaxed));
}

/// The kernel's refusal and fixup counters and the process totals.
fn kernel_counter_evidence() {
    use fw::mm::address_space::{KERNEL_PAGE_REFUSALS, WX_REFUSALS};
    ev!("mm.user_copy_fixups", fw::arch::x86_64::usercopy::FIXUPS.load(Ordering::Relaxed));
    ev!("mm.user_copy_partial", fw::mm::user::PARTIAL_COPIES.load(Ordering::Relaxed));
    ev!("mm.kernel_page_refusals", KERNEL_PAGE_REFUSALS.load(Ordering::Relaxed));
    ev!("mm.wx_refusals", WX_REFUSALS.load(Ordering::Relaxed));
    ev!("mm.spurious_faults", fw::mm::fault::SPURIOUS_FAULTS.load(Ordering::Relaxed));
    ev!("mm.spurious_repeats", fw::mm::fault::SPURIOUS_REPEATS.load(Ordering::Relaxed));
    let exit_window_hits = crate::task::ring::EXIT_WINDOW_HITS.load(Ordering::Relaxed);
    ev!("ring.exit_window_hits", exit_window_hits);
    let steps = crate::object::virtual_memory::STEP_PREEMPTIONS.load(Ordering::Relaxed);
    ev!("vm.step_preemptions", steps);
    ev!("mm.refused_frees", fw::mm::frames::REFUSED_FREES.load(Ordering::Relaxed));
    ev!("mm.unflushed_frames_kept", fw::mm::invalidation::LEAKED_UNFLUSHED.load(Ordering::Relaxed));
    ev!("user.bad_returns", process::BAD_RETURNS.load(Ordering::Relaxed));
    ev!("user.processes", process::created());
    ev!("user.processes_live", process::live().len());
}

/// Frame and heap accounting after the programs' references were dropped, and the system-call
/// gate in use; true when frames leaked.
fn leaked(frames_before: u64, heap_before: usize) -> bool {
    // The CPU that reaped a process's last thread drops that thread (its kernel stack, about
    // 40 KiB of heap) just after the reap the programs' run waited for: give it up to a second
    // to get there. A real leak stays, and is reported below.
    let settled = || {
        fw::mm::frames::free_count() == frames_before && fw::mm::heap::used_bytes() == heap_before
    };
    fw::time::spin_until(0, 1_000_000_000, settled);
    let frames_after = fw::mm::frames::free_count();
    let heap_after = fw::mm::heap::used_bytes();
    ev!("user.frames_free_after", frames_after);
    ev!("user.frames_leaked", frames_before as i64 - frames_after as i64);
    ev!("user.heap_before", heap_before);
    ev!("user.heap_after", heap_after);
    ev!("user.heap_leaked", heap_after as i64 - heap_before as i64);
    // The gate the kernel asks new processes to use; which one they used is `entry.*`.
    ev!(
        "user.gate_requested",
        if fw::arch::x86_64::syscall_entry::int80_by_default() { "int80" } else { "syscall" }
    );
    ev!(
        "user.syscall_entry",
        format_args!("{:#x}", fw::arch::x86_64::syscall_entry::entry_address())
    );
    ev!("user.syscall_emulated", fw::arch::x86_64::syscall_entry::emulated_count());
    ev!(
        "user.syscall_emulation_refused",
        fw::arch::x86_64::syscall_entry::emulation_refused_count()
    );
    if frames_after != frames_before {
        log::error!("user: {} frames leaked", frames_before as i64 - frames_after as i64);
        return true;
    }
    false
}
