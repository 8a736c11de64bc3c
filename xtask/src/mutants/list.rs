//! The curated kernel breaks. Each one is a small textual edit that makes the kernel (or a
//! user program) wrong in one specific way, and names the proofs that must then fail.
//!
//! Snippets are short and unique so the list survives code motion: an edit matches its
//! snippet wherever it moved inside the file, and a snippet that is gone or ambiguous stops
//! the run with "break no longer applies" instead of silently testing nothing.

use crate::qemu::Accel;

/// One textual replacement in one file (path relative to the repository root).
pub struct Edit {
    pub file: &'static str,
    /// Must occur exactly once in the file.
    pub find: &'static str,
    pub replace: &'static str,
}

/// A deliberate break and the proofs that must catch it.
pub struct Break {
    pub name: &'static str,
    /// What the break does, in words.
    pub what: &'static str,
    pub edits: &'static [Edit],
    /// Every one of these proofs must fail with the break applied.
    pub proofs: &'static [&'static str],
    /// TCG, except where only KVM exposes the feature under test (TSC-deadline).
    pub accel: Accel,
}

pub const BREAKS: &[Break] = &[
    Break {
        name: "user-runtime-always-syscall",
        what: "the user runtime ignores the kernel's request for the int 0x80 gate",
        edits: &[Edit {
            file: "user/rt/src/syscall.rs",
            find: "crate::start_info().entry_gate == ENTRY_INT80",
            replace: "crate::start_info().entry_gate == ENTRY_INT80 && false",
        }],
        proofs: &["interrupt-grant-int80"],
        accel: Accel::Tcg,
    },
    Break {
        name: "release-leaves-source-unmasked",
        what: "releasing an Interrupt capability clears the software flag but not the hardware mask",
        edits: &[Edit {
            file: "kernel/src/object/interrupt.rs",
            find: "        self.mask_source(true);\n        st.masked = true;\n        st.holder = None;",
            replace: "        st.masked = true;\n        st.holder = None;",
        }],
        proofs: &["interrupt-grant", "driver-death"],
        accel: Accel::Tcg,
    },
    // Per-CPU device vectors
    Break {
        name: "vector-looked-up-on-wrong-cpu",
        what: "a per-CPU device vector's owner is looked up in CPU 0's space, whichever CPU took it",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/ioapic.rs",
            find: "super::vector_space::dispatch(percpu::current(cpu).index, vector, token)",
            replace: "super::vector_space::dispatch(0, vector, token)",
        }],
        proofs: &["interrupt-grant", "nvme-msix-8"],
        accel: Accel::Tcg,
    },
    Break {
        name: "vector-full-cpu-refuses",
        what: "a grant whose CPU has no free vector is refused instead of placed on the least-loaded CPU",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/vector_space.rs",
            find: "Err(AllocError::CpuFull | AllocError::CpuOffline | AllocError::NoSuchCpu) => m",
            replace: "Err(AllocError::CpuOffline | AllocError::NoSuchCpu) => m",
        }],
        proofs: &["vector-exhaust"],
        accel: Accel::Tcg,
    },
    Break {
        name: "vector-release-keeps-vector",
        what: "releasing a per-CPU vector reports success but leaves it allocated in the matrix",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/vector_space.rs",
            find: "with_space(|s| s.matrix().release(cpu, vector))",
            replace: "with_space(|s| s.matrix().owner(cpu, vector).ok_or(AllocError::NotAllocated))",
        }],
        proofs: &["vector-exhaust"],
        accel: Accel::Tcg,
    },
    // MSI-X in the kernel
    Break {
        name: "msix-unmask-skipped-on-acknowledge",
        what: "acknowledging an MSI-X source leaves its entry's vector mask set",
        edits: &[Edit {
            file: "kernel/src/object/interrupt.rs",
            find: "                function.set_masked(*entry, masked);",
            replace: "                if masked {\n                    function.set_masked(*entry, true);\n                }",
        }],
        proofs: &["nvme-msix"],
        accel: Accel::Tcg,
    },
    // Live affinity (InterruptSetAffinity)
    Break {
        name: "affinity-old-vector-released-at-switch",
        what: "a moved source's old vector is released at once instead of retired to its CPU",
        edits: &[Edit {
            file: "kernel/src/object/interrupt.rs",
            find: "        if !vector_space::retire(old_cpu, old_vector) {",
            replace: "        if vector_space::release(old_cpu, old_vector).is_err() {",
        }],
        proofs: &["irq-affinity-move", "irq-affinity-move-xapic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "affinity-irte-without-invalidation",
        what: "an IRTE is rewritten without invalidating the units' interrupt entry cache",
        edits: &[Edit {
            file: "crates/iommu/src/update.rs",
            find: "        target.enqueue(unit, queue::iec(Some((index, 0))));\n",
            replace: "",
        }],
        proofs: &["irq-affinity-move"],
        accel: Accel::Tcg,
    },
    Break {
        name: "affinity-route-not-recorded",
        what: "a move rewrites the hardware route but the kernel keeps the old CPU and vector",
        edits: &[Edit {
            file: "kernel/src/object/interrupt.rs",
            find: "        self.vector.store(vector, Ordering::Release);\n        self.cpu.store(target.index, Ordering::Release);\n",
            replace: "",
        }],
        proofs: &["irq-affinity-move", "irq-affinity-move-xapic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "affinity-absent-cpu-falls-back",
        what: "a move to a CPU that does not exist goes to CPU 0 instead of answering BadArgument",
        edits: &[Edit {
            file: "kernel/src/object/interrupt.rs",
            find: "            .filter(|c| c.online.load(Ordering::Acquire))\n            .ok_or(Status::BadArgument)?;",
            replace: "            .filter(|c| c.online.load(Ordering::Acquire))\n            .or_else(|| percpu::cpu(0))\n            .ok_or(Status::BadArgument)?;",
        }],
        proofs: &["irq-affinity-move", "irq-affinity-move-xapic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "affinity-armed-source-left-masked",
        what: "a move masks an armed source for the switch and never unmasks it (a completion held in the pending bit is never sent)",
        edits: &[Edit {
            file: "kernel/src/object/interrupt.rs",
            find: "        if armed {\n            self.mask_source(false);\n        }\n        self.moves.fetch_add",
            replace: "        self.moves.fetch_add",
        }],
        proofs: &["nvme-msix-move"],
        accel: Accel::Tcg,
    },
    Break {
        name: "msix-table-page-mapped-to-driver",
        what: "a DeviceMemory map also maps the BAR pages holding the MSI-X table and PBA",
        edits: &[Edit {
            file: "kernel/src/object/device_memory.rs",
            find: "                if self.is_withheld(off) {\n                    continue;\n                }\n",
            replace: "",
        }],
        proofs: &["nvme-msix"],
        accel: Accel::Tcg,
    },
    Break {
        name: "interrupt-grant-cpu-ignored",
        what: "an Interrupt grant's `cpu =` is ignored: every queue's vector goes to the program's CPU",
        edits: &[Edit {
            file: "kernel/src/task/loader.rs",
            find: "interrupt_target(requested_cpu.unwrap_or(cpu))",
            replace: "interrupt_target({ let _ = requested_cpu; cpu })",
        }],
        proofs: &["nvme-msix-2", "nvme-msix-8"],
        accel: Accel::Tcg,
    },
    Break {
        name: "msix-one-irte-for-every-entry",
        what: "every MSI-X entry of a function shares the function's one remapping entry",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/iommu/mod.rs",
            find: "program_message(bdf, (entry as u32 + 1) << 16 | bdf as u32, vector, cpu)",
            replace: "program_message(bdf, { let _ = entry; bdf as u32 }, vector, cpu)",
        }],
        proofs: &["nvme-msix-2"],
        accel: Accel::Tcg,
    },
    Break {
        name: "msix-setup-without-function-mask",
        what: "MSI-X is enabled with the function unmasked before its entries are masked",
        edits: &[Edit {
            file: "kernel/src/object/msix.rs",
            find: "        self.write_control(masked);",
            replace: "        self.write_control(open);",
        }],
        proofs: &["nvme-msix"],
        accel: Accel::Tcg,
    },
    Break {
        name: "timer-method-on-any-object",
        what: "a Timer method runs on a capability to any object kind instead of answering WrongType",
        edits: &[Edit {
            file: "kernel/src/object/mod.rs",
            find: "                let Object::Timer = self else { return Err(WRONG) };\n",
            replace: "",
        }],
        proofs: &["hostile-ring"],
        accel: Accel::Tcg,
    },
    Break {
        name: "timer-always-periodic",
        what: "the LAPIC timer is started periodic even where TSC-deadline was chosen",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/lapic.rs",
            find: "        true => TickMode::TscDeadline { period_tsc: time::tsc_hz() / tick_hz() },",
            replace: "        true => TickMode::Periodic,",
        }],
        proofs: &["tsc-deadline"],
        // TCG offers no TSC-deadline timer (QEMU: "TCG doesn't support ... tsc-deadline").
        accel: Accel::Kvm,
    },
    Break {
        name: "generation-compare-removed",
        what: "a capability id's generation is not compared, so a stale id reaches the slot's new object",
        edits: &[Edit {
            file: "crates/cap/src/lib.rs",
            find: "Entry::Occupied(_) if slot.generation == id.generation() => Ok(index),",
            replace: "Entry::Occupied(_) => Ok(index),",
        }],
        proofs: &["hostile-ring"],
        accel: Accel::Tcg,
    },
    Break {
        name: "aps-left-in-xapic",
        what: "application processors skip their IA32_APIC_BASE switch and stay in xAPIC mode",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/lapic.rs",
            find: "    let plan = plan_for_ap(mode_inputs(), required)?;\n    apply_plan(plan.writes());",
            replace: "    let _plan = plan_for_ap(mode_inputs(), required)?;",
        }],
        proofs: &["smp-x2apic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "ipi-handler-no-eoi",
        what: "the vector-49 handler forgets its in-service token, so it returns without an EOI",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/smp.rs",
            find: "    me.mailbox.ping_acks.store(requested, Ordering::Release);\n    token.eoi();",
            replace: "    me.mailbox.ping_acks.store(requested, Ordering::Release);\n    core::mem::forget(token);",
        }],
        proofs: &["smp"],
        accel: Accel::Tcg,
    },
    Break {
        name: "madt-lint-nmi-ignored",
        what: "the MADT's local APIC NMI entries leave their LINT pin masked instead of NMI",
        edits: &[Edit {
            file: "crates/platform/src/queries.rs",
            find: "Some(n) => LvtLocal { polarity: n.polarity, ..LvtLocal::nmi() },",
            replace: "Some(_) => LvtLocal::masked(),",
        }],
        proofs: &["smp"],
        accel: Accel::Tcg,
    },
    Break {
        name: "shootdown-no-invlpg",
        what: "a TLB shootdown acknowledges without invalidating the pages",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/tlb.rs",
            find: "                x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(va));",
            replace: "                let _ = va;",
        }],
        proofs: &["tlb-shootdown-2"],
        accel: Accel::Tcg,
    },
    Break {
        name: "x2apic-destination-8-bit",
        what: "x2APIC IPIs carry only the low 8 bits of the APIC ID (257 becomes 1)",
        edits: &[Edit {
            file: "crates/apic/src/icr.rs",
            find: "Destination::Physical(id) => u64::from(id.get()) << X2APIC_DESTINATION_SHIFT,",
            replace: "Destination::Physical(id) => u64::from(id.get() as u8) << X2APIC_DESTINATION_SHIFT,",
        }],
        proofs: &["apic-id-257"],
        accel: Accel::Tcg,
    },
    Break {
        name: "rtc-routed-to-wrong-cpu",
        what: "the RTC's IOAPIC entry names the boot CPU instead of the chosen target",
        edits: &[Edit {
            file: "kernel/src/scenarios/rtc.rs",
            find: "ioapic::route(route.gsi, vector, apic_id, polarity, trigger, false)",
            replace: "ioapic::route(route.gsi, vector, ApicId::new(percpu::with_current(|me| me.apic_id.load(Ordering::Acquire))), polarity, trigger, false)",
        }],
        proofs: &["smp-trace"],
        accel: Accel::Tcg,
    },
    Break {
        name: "remote-wake-without-ipi",
        what: "waking a thread queued on another CPU sends no IPI 49 (it waits for that CPU's next tick)",
        edits: &[Edit {
            file: "kernel/src/task/sched.rs",
            find: "        let _ = lapic::send(Ipi::fixed(IPI_VECTOR).to(apic));",
            replace: "        let _ = apic;",
        }],
        proofs: &["interrupt-grant-remote"],
        accel: Accel::Tcg,
    },
    // Time: clock sources without the PIT
    Break {
        name: "pm-timer-rate-wrong",
        what: "the ACPI PM timer is taken to count at the PIT's 1.193 MHz instead of 3.579545 MHz",
        edits: &[Edit {
            file: "crates/clock/src/lib.rs",
            find: "pub const PM_TIMER_HZ: u64 = 3_579_545;",
            replace: "pub const PM_TIMER_HZ: u64 = 1_193_182;",
        }],
        proofs: &["clock-pm-timer", "clock-hpet"],
        accel: Accel::Tcg,
    },
    Break {
        name: "absent-pit-taken-for-present",
        what: "a PIT whose output is already high when its count starts is taken for a working one",
        edits: &[Edit {
            file: "framework/src/time.rs",
            find: "            return None; // the output is already high: nothing is counting",
            replace: "",
        }],
        proofs: &["clock-pm-timer-x2apic", "clock-hpet-x2apic"],
        accel: Accel::Tcg,
    },
    // Endurance: TLB and faults
    Break {
        name: "withdraw-claims-reused-slot",
        what: "a shootdown's withdraw claims the slot it located whatever it holds by then (the two-step withdraw: a request served meanwhile and a second shooter's request in its slot is taken, the first ack counted twice)",
        edits: &[Edit {
            file: "crates/shootdown/src/inbox.rs",
            find: "slot.compare_exchange(id, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok()",
            replace: "slot.swap(0, Ordering::AcqRel) != 0",
        }],
        proofs: &["races", "races-xapic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "spurious-fault-not-rechecked",
        what: "a user #PF never re-walks the page table: a fault on a stale read-only entry the table already made writable ends the thread",
        edits: &[Edit {
            file: "framework/src/mm/fault.rs",
            find: "    if !user_access_allowed(pml4, addr, write, fetch) && !walk_disagrees(addr) {\n        return false;",
            replace: "    if true {\n        return false;",
        }],
        proofs: &["vmhostile"],
        accel: Accel::Tcg,
    },
    Break {
        name: "spurious-retry-unbounded",
        what: "a user #PF the walk takes for spurious is retried however often it repeats at once",
        edits: &[Edit {
            file: "framework/src/mm/fault.rs",
            find: "        && now.saturating_sub(last.at_ns.load(Ordering::Relaxed)) < REPEAT_WINDOW_NS\n",
            replace: "        && false\n",
        }],
        proofs: &["vmhostile"],
        accel: Accel::Tcg,
    },
    Break {
        name: "local-only-shootdown-skips-own-flush",
        what: "a shootdown that interrupts no other CPU skips the shooter's own flush",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/tlb.rs",
            find: "    if me_resident {\n",
            replace: "    if me_resident && remote > 0 {\n",
        }],
        proofs: &["vmhostile", "vmhostile-xapic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "local-only-shootdowns-not-counted",
        what: "shootdowns that interrupt no other CPU are not counted (tlb.shootdowns_local stays 0)",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/tlb.rs",
            find: "bump(&me.tlb.started_local, 1);",
            replace: "bump(&me.tlb.started_local, 0);",
        }],
        proofs: &["vmhostile"],
        accel: Accel::Tcg,
    },
    Break {
        name: "frames-freed-before-shootdown",
        what: "an invalidation frees (and, in the scenarios build, poisons) its frames before the shootdown that covers them",
        edits: &[Edit {
            file: "framework/src/mm/invalidation.rs",
            find: "        #[cfg(feature = \"scenarios\")]\n        widen_stale_window(&self.pages);\n",
            replace: "        for &f in &self.frames {\n            release(f);\n        }\n        self.frames.clear();\n        #[cfg(feature = \"scenarios\")]\n        widen_stale_window(&self.pages);\n",
        }],
        proofs: &["vmhostile"],
        accel: Accel::Tcg,
    },
    // Endurance: NMI entry and lockup detector
    Break {
        name: "nmi-entry-swapgs-from-cs",
        what: "NMI takes the common entry again: swapgs decided by the saved CS, so an NMI in a swapgs window runs with the user's GS",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/trap_entry.rs",
            find: "    .if (vec == 2) || (vec == 18)\n    jmp trap_paranoid",
            replace: "    .if (vec == 18)\n    jmp trap_paranoid",
        }],
        proofs: &["nmi-window", "nmi-window-xapic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "lockup-watcher-sends-no-nmi",
        what: "the lockup watcher reports without sending the stuck CPU an NMI (no RIP)",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/lockup.rs",
            find: "let sent = lapic::send(Ipi::nmi().to(ApicId::new(apic_id))).is_ok();",
            replace: "let sent = { let _ = Ipi::nmi; let _ = ApicId::new; true };",
        }],
        proofs: &["lockup", "lockup-xapic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "lockup-watcher-reads-own-ticks",
        what: "the lockup watcher reads its own tick count instead of the watched CPU's",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/lockup.rs",
            find: "let theirs = target.lapic.timer_ticks.load(Ordering::Relaxed);",
            replace: "let theirs = me.lapic.timer_ticks.load(Ordering::Relaxed);",
        }],
        proofs: &["lockup", "lockup-xapic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "lockup-watcher-ignores-progress",
        what: "the lockup watcher never notices the watched CPU's ticks moving (every CPU reported after the bound)",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/lockup.rs",
            find: "        || theirs != w.last_ticks.load(Ordering::Relaxed)\n",
            replace: "        || (theirs != w.last_ticks.load(Ordering::Relaxed) && w.last_ticks.load(Ordering::Relaxed) == 0)\n",
        }],
        proofs: &["smp", "smp-x2apic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "nmi-paranoid-exit-keeps-kernel-gs",
        what: "the paranoid NMI exit does not swap back: code interrupted in a swapgs window resumes with the kernel's GS and its own swapgs then loads the user's",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/trap_entry.rs",
            find: "    testl %ebx, %ebx\n    jz 6f\n    swapgs\n",
            replace: "    testl %ebx, %ebx\n    jz 6f\n",
        }],
        proofs: &["nmi-window", "nmi-window-xapic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "lockup-reports-every-tick",
        what: "the lockup watcher forgets it reported the stall and reports it again on every tick",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/lockup.rs",
            find: "|| w.reported.swap(true, Ordering::Relaxed)",
            replace: "|| (w.reported.swap(true, Ordering::Relaxed) && false)",
        }],
        proofs: &["lockup", "lockup-xapic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "lockup-apic-id-from-index",
        what: "the lockup watcher takes the stuck CPU's index for its APIC ID (NMI and report go to the wrong ID)",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/lockup.rs",
            find: "let apic_id = target.apic_id.load(Ordering::Acquire);",
            replace: "let apic_id = target.index;",
        }],
        proofs: &["lockup", "lockup-xapic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "nmi-paranoid-always-swaps",
        what: "the paranoid entry swaps GS on every NMI, also when the kernel's GS is already loaded",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/trap_entry.rs",
            find: "    js 5f                       /* upper half: the kernel's GS is loaded */\n",
            replace: "",
        }],
        proofs: &["lockup", "lockup-xapic"],
        accel: Accel::Tcg,
    },
    // Drivers: kernel-owned ports
    Break {
        name: "config-ports-accepted",
        what: "the grant policy forgets that PCI configuration ports 0xcf8..0xcff are the kernel's",
        edits: &[Edit {
            file: "crates/manifest/src/policy.rs",
            find: "    OwnedPorts { first: 0xcf8, last: 0xcff, owner: \"PCI configuration (and the 0xcf9 reset)\" },\n",
            replace: "",
        }],
        proofs: &["hostile-io-ports"],
        accel: Accel::Tcg,
    },
    Break {
        name: "io-release-leaves-bitmap-open",
        what: "releasing an IoPorts capability closes the range on the releasing CPU only; other CPUs running the process keep it open",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/io_bitmap.rs",
            find: "        if cpu == me {\n            continue;",
            replace: "        if cpu == me || cpu != me {\n            continue;",
        }],
        proofs: &["hostile-io-ports"],
        accel: Accel::Tcg,
    },
    Break {
        name: "io-close-rereads-process-list",
        what: "switch-out closes the ports the process lists now, not those this CPU opened (the record unused), so a list emptied by the last thread exiting on another CPU leaves them open",
        edits: &[
            Edit {
                file: "kernel/src/task/process.rs",
                find: "            io_bitmap::close_recorded(&guard);",
                replace: "            for &(first, last) in self.io_ranges.lock().iter() {\n                io_bitmap::set_range(&guard, first, last, false);\n            }",
            },
            Edit {
                file: "framework/src/arch/x86_64/io_bitmap.rs",
                find: "    if rec_pid.is_some_and(|p| p != pid) {",
                replace: "    if rec_pid.is_some_and(|p| p != pid) && false {",
            },
        ],
        proofs: &["hostile-io-ports"],
        accel: Accel::Tcg,
    },
    // Endurance: scheduling and bounded work
    Break {
        name: "tick-preempts-only-ring3",
        what: "the tick no longer asks a thread it interrupted in the kernel to leave at its next preemption point",
        edits: &[Edit {
            file: "kernel/src/task/sched.rs",
            find: "            if !SCHED.get(cpu).need_resched.swap(true, Ordering::Relaxed) {",
            replace: "            if false {",
        }],
        proofs: &["fair-ap-x2apic", "fair-bsp-xapic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "cap-enter-rereads-sq-tail",
        what: "cap_enter re-reads sq_tail for each submission instead of its snapshot (no bound while another thread refills the queue)",
        edits: &[Edit {
            file: "kernel/src/task/ring.rs",
            find: "    let tail = until;",
            replace: "    let tail = header.sq_tail.load(Ordering::Acquire);\n    let _ = until;",
        }],
        proofs: &["fair-ap-x2apic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "exit-wakes-without-ring-lock",
        what: "exit wakes the other threads without taking their ring lock (a wake between a waiter's exit check and its block is lost)",
        edits: &[Edit {
            file: "kernel/src/task/process.rs",
            find: "        wake_for_exit(t);",
            replace: "        sched::wake(t);",
        }],
        proofs: &["exit-wake-window"],
        accel: Accel::Tcg,
    },
    Break {
        name: "vm-steps-without-preemption",
        what: "a long VmMap/VmUnmap/VmProtect no longer reaches a preemption point between its 64-page steps",
        edits: &[Edit {
            file: "kernel/src/object/virtual_memory.rs",
            find: "        if done < pages && sched::preempt_point() {",
            replace: "        if done < pages && { let _ = sched::preempt_point; false } {",
        }],
        proofs: &["fair-vm-ap-x2apic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "slice-five-ticks",
        what: "the tick preempts only on every fifth tick: a time slice five times too long",
        edits: &[Edit {
            file: "kernel/src/task/sched.rs",
            find: "    if SCHED.get(cpu).run_queue.lock().is_empty() {\n        return;\n    }",
            replace: "    if SCHED.get(cpu).run_queue.lock().is_empty() || me.lapic.timer_ticks.load(Ordering::Relaxed) % 5 != 0 {\n        return;\n    }",
        }],
        proofs: &["fair-ap-xapic", "fair-bsp-x2apic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "exit-window-not-widened",
        what: "the scenarios image no longer holds a waiter between its exit check and its block (the proof would pass without testing the window)",
        edits: &[Edit {
            file: "kernel/src/task/ring.rs",
            find: "                widen_exit_window(p);",
            replace: "                let _ = widen_exit_window;",
        }],
        proofs: &["exit-wake-window"],
        accel: Accel::Tcg,
    },
    // Ecosystem: example kernel
    Break {
        name: "example-skips-sipi",
        what: "the example kernel sends INIT but never the start-up IPI: no AP comes online",
        edits: &[Edit {
            file: "examples/minimal-smp/src/main.rs",
            find: "        send(Ipi::startup(sipi_vector).to(target));\n",
            replace: "",
        }],
        proofs: &["example-smp", "example-smp-x2apic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "example-ap-ignores-mode-plan",
        what: "the example's APs skip keel-apic's plan_for_ap writes: in x2APIC they stay xAPIC under an x2APIC backend",
        edits: &[Edit {
            file: "examples/minimal-smp/src/main.rs",
            find: "        Ok(plan) => apic::apply(&plan),\n",
            replace: "        Ok(_) => {}\n",
        }],
        proofs: &["example-smp-x2apic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "example-ipi-counted-twice",
        what: "the example's IPI handler counts each IPI twice",
        edits: &[Edit {
            file: "examples/minimal-smp/src/irq.rs",
            find: "me.ipis_received.fetch_add(1,",
            replace: "me.ipis_received.fetch_add(2,",
        }],
        proofs: &["example-smp", "example-smp-x2apic"],
        accel: Accel::Tcg,
    },
    // Endurance: soak
    Break {
        name: "soak-unmap-leaks-a-frame",
        what: "every large VmUnmap (4 MiB and more) keeps one of its frames out of the allocator",
        edits: &[Edit {
            file: "framework/src/mm/invalidation.rs",
            find: "        for &f in &frames {",
            replace: "        for &f in frames.iter().skip(usize::from(self.pages.len() >= 1024)) {",
        }],
        proofs: &["soak-memory"],
        accel: Accel::Tcg,
    },
    Break {
        name: "soak-process-left-unreaped",
        what: "every 100th process stays in the registry after its address space is destroyed",
        edits: &[Edit {
            file: "kernel/src/task/process.rs",
            find: "        super::sched::wake_boot_cpu();\n    }\n    forget(p);\n}",
            replace: "        super::sched::wake_boot_cpu();\n    }\n    if p.pid % 100 != 0 {\n        forget(p);\n    }\n}",
        }],
        proofs: &["soak-processes"],
        accel: Accel::Tcg,
    },
    Break {
        name: "soak-thread-ring-not-recycled",
        what: "an ended thread's ring page is not handed to the next thread (spawns fail after 64)",
        edits: &[Edit {
            file: "kernel/src/task/process.rs",
            find: "            self.free_rings.lock().push((ring, vaddr));",
            replace: "            let _ = (ring, vaddr);",
        }],
        proofs: &["soak-threads"],
        accel: Accel::Tcg,
    },
    Break {
        name: "soak-frame-counter-off",
        what: "reserving frames clears their free bits but leaves the free counter as it was",
        edits: &[Edit {
            file: "crates/mm/src/lib.rs",
            find: "            self.set_managed_index(i, false);\n            if self.is_free_index(i) {\n                self.set_free_index(i, false);\n                self.free -= 1;\n",
            replace: "            self.set_managed_index(i, false);\n            if self.is_free_index(i) {\n                self.set_free_index(i, false);\n",
        }],
        proofs: &["soak-processes"],
        accel: Accel::Tcg,
    },
    Break {
        name: "soak-release-keeps-slot",
        what: "CapRelease answers Ok but leaves the capability in its slot",
        edits: &[Edit {
            file: "kernel/src/object/cap.rs",
            find: "Method::Release => process::release_cap(p, cap).map(|()| {",
            replace: "Method::Release => irqs_off(|| p.caps.lock().get(cap).map(|_| ())).map_err(Status::from).map(|()| {",
        }],
        proofs: &["soak-processes"],
        accel: Accel::Tcg,
    },
    Break {
        name: "soak-irq-source-per-grant",
        what: "every Interrupt grant creates a new source (vector, registry entry) instead of reusing the one kept",
        edits: &[Edit {
            file: "kernel/src/object/interrupt.rs",
            find: "    let existing = SOURCES.lock().iter().find(|s| s.name == name).cloned();",
            replace: "    let existing: Option<Arc<InterruptObject>> = None;",
        }],
        proofs: &["soak-irq"],
        accel: Accel::Tcg,
    },
    // Drivers: DMA remapping
    Break {
        name: "dma-translation-never-enabled",
        what: "the root table is allocated but no unit is pointed at it nor has translation turned on: device DMA reaches physical memory",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/iommu/dma.rs",
            find: "let start = unit.enable_translation(root_phys)?;",
            replace: "let start = keel_iommu::dma::TranslationStart::default();",
        }],
        proofs: &["dma-deny"],
        accel: Accel::Tcg,
    },
    Break {
        name: "bus-master-left-on-at-death",
        what: "releasing a PCI function's Interrupt leaves its bus mastering on: a later BAR-only holder can still start DMA",
        edits: &[Edit {
            file: "kernel/src/object/interrupt.rs",
            find: "            pci::disable_bus_master(device);\n",
            replace: "",
        }],
        proofs: &["dma-deny", "dma-death-bus-master"],
        accel: Accel::Tcg,
    },
    Break {
        name: "dma-unmap-skips-iotlb-invalidation",
        what: "DeviceMemoryDmaUnmap clears the page-table leaves but never invalidates the IOTLB: the unit keeps translating the IOVA from its cache",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/iommu/domain.rs",
            find: "        self.invalidate_iotlb(units, id, iova, pages)?;\n        self.domains.release(i, at);",
            replace: "        self.domains.release(i, at);",
        }],
        proofs: &["dma-roundtrip", "dma-roundtrip-caching-mode"],
        accel: Accel::Tcg,
    },
    Break {
        name: "dma-death-domain-not-revoked",
        what: "a driver's death releases its DeviceMemory without revoking the DMA domain: its frames are freed while the device can still write them",
        edits: &[Edit {
            file: "kernel/src/object/device_memory.rs",
            find: "        iommu::dma_detach(self.bdf, holder_pid);\n",
            replace: "        let _ = holder_pid;\n",
        }],
        proofs: &["dma-death", "dma-death-xapic", "nvme-msix-death"],
        accel: Accel::Tcg,
    },
    Break {
        name: "dma-faults-not-delivered",
        what: "DMA faults are counted and logged but never kept for the driver holding the device: DeviceMemoryDmaFaults reports none",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/iommu/dma.rs",
            find: "            h.faults += 1;\n            h.last = Some(f);\n",
            replace: "            let _ = h;\n",
        }],
        proofs: &["dma-deny", "dma-roundtrip"],
        accel: Accel::Tcg,
    },
    Break {
        name: "dma-faults-outlive-holder",
        what: "a driver's release of its device does not let go of the function's fault record: the next holder is shown the previous one's faults",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/iommu/dma.rs",
            find: "            h.holders -= 1;\n",
            replace: "            let _ = h;\n",
        }],
        proofs: &["dma-deny", "dma-roundtrip"],
        accel: Accel::Tcg,
    },
    Break {
        name: "iommu-fault-events-left-masked",
        what: "the fault-event interrupt is programmed but FECTL stays masked: faults wait for the tick's poll",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/iommu/vtd_unit.rs",
            find: "        self.regs.write32(offset::FAULT_EVENT_CONTROL, 0);\n",
            replace: "",
        }],
        proofs: &["dma-deny"],
        accel: Accel::Tcg,
    },
    // Proofs: issue 23
    Break {
        name: "panic-nmi-all-but-self",
        what: "the panic stop sends one all-but-self NMI, which also reaches an AP parked in the trampoline (no IDT: the machine triple-faults)",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/smp.rs",
            find: "    for cpu in percpu::online().filter(|c| c.index != me) {\n        let id = ApicId::new(cpu.apic_id.load(Ordering::Acquire));\n        if lapic::send(Ipi::nmi().to(id)).is_ok() {\n            others += 1;\n        }\n    }\n",
            replace: "    if lapic::send(Ipi::nmi().to_all_but_self()).is_ok() {\n        others = percpu::online().filter(|c| c.index != me).count() as u32;\n    }\n",
        }],
        proofs: &["panic-nmi-abandoned", "panic-nmi-abandoned-xapic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "verdict-ignores-unaccounted-cpus",
        what: "the kernel's verdict passes whatever CPUs bring-up left unaccounted",
        edits: &[Edit {
            file: "framework/src/exit.rs",
            find: "    if lost > 0 {\n",
            replace: "    if lost > usize::MAX / 2 {\n",
        }],
        proofs: &["smp-lost-ap", "smp-wrong-mode-ap"],
        accel: Accel::Tcg,
    },
    Break {
        name: "cpu-reported-online-taken-for-online",
        what: "the CPU accounting takes a bring-up report of online for the CPU being online",
        edits: &[Edit {
            file: "framework/src/bringup/cpus.rs",
            find: "            | ApOutcome::NoArrival\n",
            replace: "            | ApOutcome::NoArrival\n            | ApOutcome::Online\n",
        }],
        proofs: &["smp-lost-ap"],
        accel: Accel::Tcg,
    },
    Break {
        name: "cpu-mode-not-accounted",
        what: "the CPU accounting takes any online CPU with the right APIC ID, whatever its LAPIC mode",
        edits: &[Edit {
            file: "framework/src/bringup/cpus.rs",
            find: "                && lapic::apic_base_mode_name(c.apic_base.load(Ordering::Relaxed)) == want\n",
            replace: "",
        }],
        proofs: &["smp-wrong-mode-ap"],
        accel: Accel::Tcg,
    },
    Break {
        name: "user-slice-end-one-page-up",
        what: "UserSlice accepts ranges ending up to one page above user space, so ring 0 reads a non-canonical address",
        edits: &[Edit {
            file: "framework/src/mm/user.rs",
            find: "        if end > USER_END {\n",
            replace: "        if end > USER_END + 4096 {\n",
        }],
        proofs: &["hostile-bounds"],
        accel: Accel::Tcg,
    },
    Break {
        name: "irte-source-validation-off",
        what: "interrupt-remapping entries are written without source validation (SVT 0): any requester may use them",
        edits: &[
            Edit {
                file: "framework/src/arch/x86_64/iommu/mod.rs",
                find: "            return Ok(SourceValidation::Requester(sid));\n",
                replace: "            return Ok(SourceValidation::None);\n",
            },
            Edit {
                file: "framework/src/arch/x86_64/iommu/mod.rs",
                find: "scope.source_id().map_or(SourceValidation::None, SourceValidation::Requester);",
                replace: "SourceValidation::None;",
            },
        ],
        proofs: &["interrupt-remap-x2apic", "interrupt-remap-xapic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "irte-sid-of-another-function",
        what: "an MSI entry validates the requester id of another function (device 1 further on the bus)",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/iommu/mod.rs",
            find: "            return Ok(SourceValidation::Requester(sid));\n",
            replace: "            return Ok(SourceValidation::Requester(SourceId(sid.0 ^ 8)));\n",
        }],
        proofs: &["interrupt-remap-x2apic"],
        accel: Accel::Tcg,
    },
    // AMD
    Break {
        name: "ivrs-special-devid-from-entry-header",
        what: "the IVRS special entry's requester id is read from the entry's own device-id field (0) instead of bytes 5..7: the IOAPIC's device id is wrong",
        edits: &[Edit {
            file: "crates/iommu/src/ivrs.rs",
            find: "                device_id: le16(e, 5).unwrap_or(0),\n                variety: e[7],",
            replace: "                device_id,\n                variety: e[7],",
        }],
        proofs: &["amd-rome-iommu"],
        accel: Accel::Tcg,
    },
    Break {
        name: "ivrs-prefers-legacy-ivhd",
        what: "of the IVHDs describing one IOMMU the lowest type is used (0x10 instead of 0x11)",
        edits: &[Edit {
            file: "crates/iommu/src/ivrs.rs",
            find: "o.kind.rank() > h.kind.rank()",
            replace: "o.kind.rank() < h.kind.rank()",
        }],
        proofs: &["amd-rome-iommu"],
        accel: Accel::Tcg,
    },
    Break {
        name: "amdvi-xt-from-ga-bit",
        what: "XTSup is read from the EFR's GA bit: a unit without x2APIC support is reported with it",
        edits: &[Edit {
            file: "crates/iommu/src/ivrs.rs",
            find: "    pub const XT: u64 = 1 << 2;",
            replace: "    pub const XT: u64 = 1 << 7;",
        }],
        proofs: &["amd-rome-iommu-xapic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "acpi-ivrs-not-copied",
        what: "the IVRS is never copied from the firmware: the AMD IOMMU goes unreported",
        edits: &[Edit {
            file: "framework/src/acpi.rs",
            find: "IVRS.call_once(|| copy_table::<IvrsHeader>(&tables));",
            replace: "IVRS.call_once(|| None);",
        }],
        proofs: &["amd-rome-iommu"],
        accel: Accel::Tcg,
    },
    Break {
        name: "amdvi-efr-from-table",
        what: "the EFR evidence is copied from the IVRS image instead of read from the unit's register",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/amdvi/mod.rs",
            find: "let efr = Efr(regs.extended_features());",
            replace: "let efr = Efr(unit.efr_image.unwrap_or(regs.control()));",
        }],
        proofs: &["amd-rome-iommu"],
        accel: Accel::Tcg,
    },
    Break {
        name: "x2apic-opt-out-ignored",
        what: "the DMAR's X2APIC_OPT_OUT is ignored: the boot CPU enables x2APIC although firmware left xAPIC",
        edits: &[Edit {
            file: "crates/apic/src/mode.rs",
            find: "        (true, true) => (LapicMode::XApic, BspModeReason::FirmwareOptOut),",
            replace: "        (true, true) => (LapicMode::X2Apic, BspModeReason::FirmwareOptOut),",
        }],
        proofs: &["x2apic-opt-out"],
        accel: Accel::Tcg,
    },
    Break {
        name: "x2apic-opt-out-leaves-firmware-x2apic",
        what: "the opt-out is obeyed even when firmware already enabled x2APIC: the boot CPU drops back to xAPIC",
        edits: &[Edit {
            file: "crates/apic/src/mode.rs",
            find: "        (true, true) if firmware_x2apic => {",
            replace: "        (true, true) if firmware_x2apic && !firmware_opt_out => {",
        }],
        proofs: &["x2apic-opt-out-firmware-x2apic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "amdvi-dte-intctl-pass",
        what: "the remapping entries set IntCtl = pass instead of remapped (QEMU then rebuilds each device MSI as vector 0 to APIC ID 0)",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/amdvi/mod.rs",
            find: "        Some(t) => amdvi_ir::remap_interrupt_quad(*t, setting).unwrap_or(0),",
            replace: "        Some(_) => keel_iommu::amdvi::interrupt_pass_quad(setting),",
        }],
        proofs: &["amd-interrupt-grant"],
        accel: Accel::Tcg,
    },
    Break {
        name: "amdvi-irt-not-invalidated",
        what: "interrupt table entries are written without INVALIDATE_INTERRUPT_TABLE (only the completion wait)",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/amdvi/remap.rs",
            find: "        self.run(&[amdvi::invalidate_interrupt_table(device_id)])?;",
            replace: "        self.run(&[])?;",
        }],
        proofs: &["amd-rome-iommu"],
        accel: Accel::Tcg,
    },
    Break {
        name: "amdvi-ga-destination-misplaced",
        what: "the GA entry's destination is written at bit 16 instead of bit 8 (APIC ID 1 becomes 256)",
        edits: &[Edit {
            file: "crates/iommu/src/amdvi_ir.rs",
            find: "Ok([REMAP_EN | (d & 0xFF_FFFF) << 8, self.vector as u64 | (d >> 24) << 56])",
            replace: "Ok([REMAP_EN | (d & 0xFF_FFFF) << 16, self.vector as u64 | (d >> 24) << 56])",
        }],
        proofs: &["amd-rome-iommu", "amd-interrupt-grant"],
        accel: Accel::Tcg,
    },
    Break {
        name: "amdvi-ga-destination-8-bit",
        what: "the GA entry keeps only destination bits 7:0 (APIC ID 257 becomes 1)",
        edits: &[Edit {
            file: "crates/iommu/src/amdvi_ir.rs",
            find: "Ok([REMAP_EN | (d & 0xFF_FFFF) << 8, self.vector as u64 | (d >> 24) << 56])",
            replace: "Ok([REMAP_EN | (d & 0xFF) << 8, self.vector as u64 | (d >> 24) << 56])",
        }],
        proofs: &["amd-msi-257"],
        accel: Accel::Tcg,
    },
    Break {
        name: "amdvi-legacy-accepts-above-254",
        what: "a legacy (8-bit destination) entry is written for an APIC ID above 254",
        edits: &[Edit {
            file: "crates/iommu/src/amdvi_ir.rs",
            find: "        if self.destination > 254 {",
            replace: "        if self.destination > 0xFFFF {",
        }],
        proofs: &["amd-legacy-257-refused"],
        accel: Accel::Tcg,
    },
    Break {
        name: "amdvi-legacy-while-xt",
        what: "legacy 32-bit entries although the unit has GA and XT and the CPU CMPXCHG16B",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/amdvi/mod.rs",
            find: "let format = if ga && cx16 { IrteFormat::Ga } else { IrteFormat::Legacy };",
            replace: "let format = if ga && cx16 && false { IrteFormat::Ga } else { IrteFormat::Legacy };",
        }],
        proofs: &["amd-rome-iommu"],
        accel: Accel::Tcg,
    },
    Break {
        name: "amdvi-msi-wrong-device-id",
        what: "an MSI function's entry is written in the table of the neighbouring requester id",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/amdvi/remap.rs",
            find: "        r.write_entry(bdf, index, AmdIrte { vector, destination: cpu.get() })?;",
            replace: "        r.write_entry(bdf ^ 1, index, AmdIrte { vector, destination: cpu.get() })?;",
        }],
        proofs: &["amd-interrupt-grant"],
        accel: Accel::Tcg,
    },
    Break {
        name: "amdvi-devtab-not-invalidated",
        what: "the device table entries are written without INVALIDATE_DEVTAB_ENTRY commands",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/amdvi/unit.rs",
            find: "        queue(amdvi::invalidate_devtab_entry(*id));",
            replace: "        let _ = id;",
        }],
        proofs: &["amd-rome-iommu"],
        accel: Accel::Tcg,
    },
    Break {
        name: "amdvi-no-completion-wait",
        what: "the unit is reported up without a completion wait",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/amdvi/unit.rs",
            find: "    queue(amdvi::completion_wait(store_phys, COMPLETION_MAGIC).ok_or(Error::BadAddress)?);",
            replace: "",
        }],
        proofs: &["amd-rome-iommu"],
        accel: Accel::Tcg,
    },
    // Time: tickless
    Break {
        name: "tickless-idle-rearms-periodically",
        what: "tickless: an idle CPU still arms the busy watchdog, so it takes a timer interrupt every 250 ms",
        edits: &[Edit {
            file: "kernel/src/task/sched.rs",
            find: "    if !me.oneshot.idle.load(Ordering::Relaxed) {\n",
            replace: "    if !me.oneshot.idle.load(Ordering::Relaxed) || lapic::tickless() {\n",
        }],
        proofs: &["tickless"],
        accel: Accel::Tcg,
    },
    Break {
        name: "tickless-slice-end-unarmed",
        what: "tickless: the running thread's slice end is not armed when others are runnable (only the watchdog preempts)",
        edits: &[Edit {
            file: "kernel/src/task/sched.rs",
            find: "            next = next.min(SCHED.get(cpu).slice_end_ns.load(Ordering::Relaxed));\n",
            replace: "",
        }],
        proofs: &["preempt-tickless"],
        accel: Accel::Tcg,
    },
    Break {
        name: "tickless-sleep-unarmed",
        what: "tickless: sleep expiries, wait timeouts and kernel waits are not armed (only a busy CPU's watchdog ends them)",
        edits: &[Edit {
            file: "kernel/src/task/sched.rs",
            find: "    timed.unwrap_or(oneshot::NONE).min(me.oneshot.kernel_wake_ns.load(Ordering::Relaxed))\n",
            replace: "    let _ = timed;\n    oneshot::NONE\n",
        }],
        proofs: &["tickless-x2apic", "preempt-tickless"],
        accel: Accel::Tcg,
    },
    Break {
        name: "tickless-busy-watchdog-unarmed",
        what: "tickless: a busy CPU arms no watchdog deadline, so a watcher with nothing else to do never checks",
        edits: &[Edit {
            file: "kernel/src/task/sched.rs",
            find: "        next = next.min(since.max(fired) + watchdog_ns());\n",
            replace: "        let _ = (since, fired);\n",
        }],
        proofs: &["tickless-x2apic", "lockup-tickless"],
        accel: Accel::Tcg,
    },
    Break {
        name: "lockup-reports-idle-cpu",
        what: "tickless: the lockup watcher ignores that its CPU is halted idle and reports it after the bound",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/lockup.rs",
            find: "let idle = tickless && target.oneshot.idle.load(Ordering::Acquire);",
            replace: "let idle = tickless && target.oneshot.idle.load(Ordering::Acquire) && false;",
        }],
        proofs: &["tickless"],
        accel: Accel::Tcg,
    },
    Break {
        name: "tickless-exit-wakes-nobody",
        what: "tickless: a process destroyed on another CPU does not wake the boot CPU's supervising loop",
        edits: &[Edit {
            file: "kernel/src/task/process.rs",
            find: "        super::sched::wake_boot_cpu();\n",
            replace: "",
        }],
        proofs: &["hostile-ring-tickless"],
        accel: Accel::Tcg,
    },
    // Proofs: issue 23, remapping
    Break {
        name: "irte-one-handle-for-every-msi-function",
        what: "the MSI handle allocator returns the first MSI index for every function: two functions share one remapping entry (the later one's SID and vector win)",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/iommu/mod.rs",
            find: "r.plan.msi_index(r.msi_handles.len() as u32)",
            replace: "r.plan.msi_index(0)",
        }],
        proofs: &["interrupt-remap-two-msi", "interrupt-remap-two-msi-xapic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "nvme-completion-phase-never-flips",
        what: "the NVMe completion ring keeps expecting phase 1 after it wraps: the driver takes the previous pass's entries as new",
        edits: &[Edit {
            file: "crates/nvme/src/queue.rs",
            find: "            self.phase = !self.phase;\n",
            replace: "",
        }],
        proofs: &["nvme-poll", "nvme-poll-xapic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "nvme-driver-writes-the-next-block",
        what: "the NVMe driver's write lands one 4 KiB block past the one it names",
        edits: &[Edit {
            file: "user/nvme-driver/src/main.rs",
            find: "Command::write(cid, NSID, lba(target), lbas_per_page, wprp)",
            replace: "Command::write(cid, NSID, lba(target + 1), lbas_per_page, wprp)",
        }],
        proofs: &["nvme-poll", "nvme-poll-xapic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "amdvi-dma-entries-pass-through",
        what: "the AMD unit's device table entries pass DMA untranslated (V, IR, IW, TV = 0) instead of denying it",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/amdvi/dma.rs",
            find: "    amdvi_dma::deny_dte(empty_root)\n}",
            replace: "    let _ = empty_root;\n    Some([keel_iommu::amdvi::passthrough_dte()[0], 0])\n}",
        }],
        proofs: &["amd-dma-deny"],
        accel: Accel::Tcg,
    },
    Break {
        name: "amdvi-dma-unmap-not-invalidated",
        what: "DmaUnmap on AMD-Vi clears the leaves but skips INVALIDATE_IOMMU_PAGES (only the completion wait)",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/amdvi/dma.rs",
            find: "        self.run(&[amdvi_dma::invalidate_iommu_pages(id, iova, pages)])?;",
            replace: "        self.run(&[])?;",
        }],
        proofs: &["amd-dma-roundtrip"],
        accel: Accel::Tcg,
    },
    Break {
        name: "amdvi-dma-revocation-keeps-entry",
        what: "revoking an AMD-Vi domain frees its tables and frames but leaves the device table entry naming them",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/amdvi/dma.rs",
            find: "        write_quads(dte, &[q0]);\n        write_quads(dte + 8, &[q1]);",
            replace: "        let _ = (q0, q1);",
        }],
        proofs: &["amd-dma-roundtrip", "amd-dma-death"],
        accel: Accel::Tcg,
    },
    Break {
        name: "amdvi-dma-revocation-not-invalidated",
        what: "revoking an AMD-Vi domain writes the deny entry but invalidates neither the entry nor the domain's pages before the frames are freed",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/amdvi/dma.rs",
            find: "        self.run(&[amdvi::invalidate_devtab_entry(bdf), amdvi_dma::invalidate_domain(id)])?;",
            replace: "        self.run(&[])?;",
        }],
        proofs: &["amd-dma-death"],
        accel: Accel::Tcg,
    },
];
