//! Breaks: what the types promise: local flushes, freed frames, parked CPUs, remapping entries read back.

use super::{Break, Edit};
use crate::qemu::Accel;

pub(super) const BREAKS: &[Break] = &[
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
];
