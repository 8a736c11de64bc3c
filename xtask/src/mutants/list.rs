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
            find: "            self.mask_source(true);\n            st.masked = true;\n            st.holder = None;",
            replace: "            st.masked = true;\n            st.holder = None;",
        }],
        proofs: &["interrupt-grant", "driver-death"],
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
            file: "kernel/src/arch/x86_64/lapic.rs",
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
            file: "kernel/src/arch/x86_64/lapic.rs",
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
            file: "kernel/src/arch/x86_64/smp.rs",
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
            file: "kernel/src/arch/x86_64/tlb.rs",
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
            file: "kernel/src/time.rs",
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
            file: "kernel/src/mm/fault.rs",
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
            file: "kernel/src/mm/fault.rs",
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
            file: "kernel/src/arch/x86_64/tlb.rs",
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
            file: "kernel/src/arch/x86_64/tlb.rs",
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
            file: "kernel/src/mm/invalidation.rs",
            find: "        #[cfg(feature = \"scenarios\")]\n        widen_stale_window(&self.pages);\n",
            replace: "        for &f in &self.frames {\n            release(f);\n        }\n        self.frames.clear();\n        #[cfg(feature = \"scenarios\")]\n        widen_stale_window(&self.pages);\n",
        }],
        proofs: &["vmhostile"],
        accel: Accel::Tcg,
    },
    // Proofs: issue 23
    Break {
        name: "panic-nmi-all-but-self",
        what: "the panic stop sends one all-but-self NMI, which also reaches an AP parked in the trampoline (no IDT: the machine triple-faults)",
        edits: &[Edit {
            file: "kernel/src/arch/x86_64/smp.rs",
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
            file: "kernel/src/exit.rs",
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
            file: "kernel/src/init/cpus.rs",
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
            file: "kernel/src/init/cpus.rs",
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
            file: "kernel/src/mm/user.rs",
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
                file: "kernel/src/arch/x86_64/iommu/mod.rs",
                find: "            return Ok(SourceValidation::Requester(sid));\n",
                replace: "            return Ok(SourceValidation::None);\n",
            },
            Edit {
                file: "kernel/src/arch/x86_64/iommu/mod.rs",
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
            file: "kernel/src/arch/x86_64/iommu/mod.rs",
            find: "            return Ok(SourceValidation::Requester(sid));\n",
            replace: "            return Ok(SourceValidation::Requester(SourceId(sid.0 ^ 8)));\n",
        }],
        proofs: &["interrupt-remap-x2apic"],
        accel: Accel::Tcg,
    },
];
