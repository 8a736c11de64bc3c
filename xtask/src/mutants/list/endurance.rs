//! Breaks: TLB and faults, NMI entry and the lockup detector, scheduling and bounded work, soak.

use super::{Break, Edit};
use crate::qemu::Accel;

pub(super) const BREAKS: &[Break] = &[
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
        // The periodic tick's progress signal (tickless, an idle CPU is skipped instead).
        proofs: &["smp-periodic", "smp-x2apic-periodic"],
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
            replace: "Method::Release => p.caps.lock().get(cap).map(|_| ()).map_err(Status::from).map(|()| {",
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
];
