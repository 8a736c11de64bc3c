//! Breaks: per-CPU device vectors, MSI-X and live affinity.

use super::{Break, Edit};
use crate::qemu::Accel;

pub(super) const BREAKS: &[Break] = &[
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
            find: "s.change(|m| m.release(cpu, vector), |_| (cpu, vector))",
            replace: "s.change(|m| m.owner(cpu, vector).ok_or(AllocError::NotAllocated), |_| (cpu, vector))",
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
            file: "kernel/src/object/interrupt/routing.rs",
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
            file: "kernel/src/object/interrupt/routing.rs",
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
            file: "kernel/src/object/interrupt/routing.rs",
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
            file: "kernel/src/object/interrupt/routing.rs",
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
        name: "retired-vectors-drained-only-by-tick",
        what: "tickless: a CPU releases the old vectors of moved sources only in its timer interrupt, so an idle CPU keeps them",
        edits: &[Edit {
            file: "kernel/src/task/sched.rs",
            find: "        fw::arch::x86_64::vector_space::drain_retired(me.index);\n        me.oneshot.kernel_wake_ns.store(wake_ns, Ordering::Relaxed);",
            replace: "        me.oneshot.kernel_wake_ns.store(wake_ns, Ordering::Relaxed);",
        }],
        proofs: &["irq-affinity-move", "irq-affinity-move-xapic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "retired-check-inverted",
        what: "the lock-free check on the way into idle skips the drain exactly when a retired vector waits",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/vector_space.rs",
            find: "    if RETIRED_WAITING.load(Ordering::Acquire) == 0 {",
            replace: "    if RETIRED_WAITING.load(Ordering::Acquire) != 0 {",
        }],
        proofs: &["irq-affinity-move"],
        accel: Accel::Tcg,
    },
    Break {
        name: "owner-table-not-published",
        what: "a vector allocated in the matrix is not copied into the table the dispatcher reads without the lock",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/vector_space.rs",
            find: "            table.publish(m, cpu, vector);\n        }\n        result",
            replace: "            let _ = (table, cpu, vector);\n        }\n        result",
        }],
        proofs: &["nvme-msix"],
        accel: Accel::Tcg,
    },
    Break {
        name: "source-not-in-owner-table",
        what: "a new interrupt source is not entered in the lock-free table its owner handle indexes",
        edits: &[Edit {
            file: "kernel/src/object/interrupt.rs",
            find: "    BY_OWNER[owner.0 as usize].store(Arc::into_raw(object.clone()).cast_mut(), Ordering::Release);\n",
            replace: "",
        }],
        proofs: &["nvme-msix"],
        accel: Accel::Tcg,
    },
];
