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
    // Drivers: DMA remapping
    Break {
        name: "dma-translation-never-enabled",
        what: "the root table is allocated but no unit is pointed at it nor has translation turned on: device DMA reaches physical memory",
        edits: &[Edit {
            file: "kernel/src/arch/x86_64/iommu/dma.rs",
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
            find: "                pci::disable_bus_master(device);\n",
            replace: "",
        }],
        proofs: &["dma-deny"],
        accel: Accel::Tcg,
    },
    Break {
        name: "dma-unmap-skips-iotlb-invalidation",
        what: "DeviceMemoryDmaUnmap clears the page-table leaves but never invalidates the IOTLB: the unit keeps translating the IOVA from its cache",
        edits: &[Edit {
            file: "kernel/src/arch/x86_64/iommu/domain.rs",
            find: "        self.invalidate_iotlb(units, id, iova, pages)?;\n        let d = self.domains",
            replace: "        let d = self.domains",
        }],
        proofs: &["dma-roundtrip", "dma-roundtrip-caching-mode"],
        accel: Accel::Tcg,
    },
    Break {
        name: "iommu-fault-events-left-masked",
        what: "the fault-event interrupt is programmed but FECTL stays masked: faults wait for the tick's poll",
        edits: &[Edit {
            file: "kernel/src/arch/x86_64/iommu/unit.rs",
            find: "        self.regs.write32(offset::FAULT_EVENT_CONTROL, 0);\n",
            replace: "",
        }],
        proofs: &["dma-deny"],
        accel: Accel::Tcg,
    },
];
