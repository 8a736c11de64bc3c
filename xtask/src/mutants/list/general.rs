//! Breaks: APIC modes, IPIs, timers, shootdowns, the runtime and the example kernel.

use super::{Break, Edit};
use crate::qemu::Accel;

pub(super) const BREAKS: &[Break] = &[
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
    // The counters each module keeps in its own `cpu_local!` variable
    Break {
        name: "syscall-entry-counted-as-int80",
        what: "the trap entry counts `syscall` entries in the int 0x80 counter of its CPU-local entry counts",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/trap_entry.rs",
            find: "count_entry(|me| &me.syscall);",
            replace: "count_entry(|me| &me.int80);",
        }],
        proofs: &["interrupt-grant"],
        accel: Accel::Tcg,
    },
    Break {
        name: "device-interrupt-counted-on-boot-cpu",
        what: "every device interrupt is counted in CPU 0's DEVICE_INTERRUPTS, whichever CPU took it",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/ioapic.rs",
            find: "DEVICE_INTERRUPTS.get(cpu).fetch_add(1, Ordering::Relaxed);",
            replace: "DEVICE_INTERRUPTS.of(0).fetch_add(1, Ordering::Relaxed);",
        }],
        proofs: &["interrupt-grant"],
        accel: Accel::Tcg,
    },
    Break {
        name: "ipi-received-not-counted",
        what: "the IPI 49 handler does not count what it received in its CPU-local IPIS_RECEIVED",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/smp.rs",
            find: "IPIS_RECEIVED.get(cpu).fetch_add(1, Ordering::Relaxed);",
            replace: "IPIS_RECEIVED.get(cpu).fetch_add(0, Ordering::Relaxed);",
        }],
        proofs: &["interrupt-grant-remote"],
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
    Break {
        name: "no-apic-check-skipped",
        what: "the boot goes on on a CPU whose CPUID reports no local APIC, reading APIC registers that are not there",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/cpu.rs",
            find: "    if !f.apic {\n",
            replace: "    if !f.apic && false {\n",
        }],
        proofs: &["no-local-apic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "smptest-assumes-manifest-cpus",
        what: "smptest spawns on every CPU its arguments name, without asking which are online: a one-CPU machine fails the default manifest",
        edits: &[Edit {
            file: "user/smptest/src/main.rs",
            find: "            let cpus = online_cpus(cpus());\n",
            replace: "            let cpus = cpus();\n",
        }],
        proofs: &["plain-boot-1cpu"],
        accel: Accel::Tcg,
    },
    Break {
        name: "space-never-kept",
        what: "a CPU loads the kernel tables whenever a thread leaves it, so a thread woken on its own CPU pays a CR3 load each time",
        edits: &[Edit {
            file: "kernel/src/task/space.rs",
            find: "    if exited || ending(process) {",
            replace: "    if exited || ending(process) || !exited {",
        }],
        proofs: &["preempt"],
        accel: Accel::Tcg,
    },
    Break {
        name: "space-reaper-asks-no-one",
        what: "the reaper waits for CPUs that keep the ending process's tables but never sends them IPI 49",
        edits: &[Edit {
            file: "kernel/src/task/space.rs",
            find: "        super::sched::kick(cpu);",
            replace: "        let _ = cpu;",
        }],
        proofs: &["preempt"],
        accel: Accel::Tcg,
    },
    Break {
        name: "space-kept-through-ending",
        what: "IPI 49 leaves a kept space alone even when its process is ending, so its tables are never freed",
        edits: &[Edit {
            file: "kernel/src/task/space.rs",
            find: "        Some(p) if ending(&p) => {",
            replace: "        Some(p) if ending(&p) && p.pid == u64::MAX => {",
        }],
        proofs: &["preempt-tickless"],
        accel: Accel::Tcg,
    },
];
