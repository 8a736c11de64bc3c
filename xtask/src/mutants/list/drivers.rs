//! Breaks: kernel-owned ports, DMA remapping, the NVMe driver.

use super::{Break, Edit};
use crate::qemu::Accel;

pub(super) const BREAKS: &[Break] = &[
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
    // Drivers: DMA remapping
    Break {
        name: "dma-translation-never-enabled",
        what: "the root table is allocated but no unit is pointed at it nor has translation turned on: device DMA reaches physical memory",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/iommu/vtd_dma.rs",
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
            file: "framework/src/arch/x86_64/iommu/vtd_dma.rs",
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
            file: "framework/src/arch/x86_64/iommu/vtd_dma.rs",
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
        name: "nvme-queues-capped-at-8",
        what: "the NVMe driver keeps its old cap of 8 queue pairs: on 64 CPUs 56 of them get no queue",
        edits: &[Edit {
            file: "user/nvme-driver/src/workers.rs",
            find: "pub const MAX_QUEUES: usize = 64;",
            replace: "pub const MAX_QUEUES: usize = 8;",
        }],
        proofs: &["nvme-msix-64"],
        accel: Accel::Tcg,
    },
    Break {
        name: "nvme-controller-grant-ignored",
        what: "the NVMe driver creates every queue pair it asked for, past the count the controller granted in its Number of Queues completion",
        edits: &[Edit {
            file: "user/nvme-driver/src/main.rs",
            find: "    Some(wanted.min(granted))\n",
            replace: "    Some(wanted)\n",
        }],
        proofs: &["nvme-msix-granted-4"],
        accel: Accel::Tcg,
    },
    Break {
        name: "nvme-all-queues-on-entry-1",
        what: "every NVMe completion queue raises MSI-X entry 1, so every queue's completions interrupt CPU 0 instead of its own CPU",
        edits: &[Edit {
            file: "user/nvme-driver/src/main.rs",
            find: "(IO_VECTOR + i as u16, true)",
            replace: "(IO_VECTOR, true)",
        }],
        proofs: &["nvme-msix-64", "nvme-msix-64-xapic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "nvme-queue-runs-share-base-iova",
        what: "the NVMe driver gives every page the base run's IOVA plus its offset in its own run, as if all its DMA pages were one mapping",
        edits: &[Edit {
            file: "user/nvme-driver/src/dma.rs",
            find: "    RUN_IOVAS[r].load(Ordering::Relaxed) + offset * PAGE\n",
            replace: "    let _ = r;\n    RUN_IOVAS[0].load(Ordering::Relaxed) + offset * PAGE\n",
        }],
        proofs: &["nvme-msix-8", "nvme-msix-64"],
        accel: Accel::Tcg,
    },
    Break {
        name: "iova-window-256-pages",
        what: "the DMA IOVA window stays at 256 pages: a driver with 64 queue pairs (392 DMA pages) runs out of device addresses",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/iommu/dma_domain.rs",
            find: "const IOVA_WORDS: usize = 16;",
            replace: "const IOVA_WORDS: usize = 4;",
        }],
        proofs: &["nvme-msix-64"],
        accel: Accel::Tcg,
    },
    Break {
        name: "start-info-16-caps",
        what: "the start info keeps room for 16 capabilities: a driver with an Interrupt grant per CPU of 64 cannot start",
        edits: &[Edit {
            file: "crates/abi/src/start.rs",
            find: "pub const MAX_START_CAPS: usize = 128;",
            replace: "pub const MAX_START_CAPS: usize = 16;",
        }],
        proofs: &["nvme-msix-64"],
        accel: Accel::Tcg,
    },
    Break {
        name: "nvme-bench-reads-the-next-block",
        what: "the NVMe benchmark's reads fetch the 4 KiB block after the one they name: the blocks' ends no longer match the image",
        edits: &[Edit {
            file: "user/nvme-driver/src/bench.rs",
            find: "let (lba, lbas) = (b * self.lbas, self.lbas as u32);",
            replace: "let (lba, lbas) = ((b + 1) % self.pages * self.lbas, self.lbas as u32);",
        }],
        proofs: &["bench-nvme-qd1-q1"],
        accel: Accel::Tcg,
    },
    Break {
        name: "ack-then-wait-enters-for-one",
        what: "the runtime's acknowledge-and-wait returns once the acknowledge completed, before the interrupt",
        edits: &[Edit {
            file: "user/rt/src/ring.rs",
            find: "let entered = match self.enter(2, timeout_ns) {",
            replace: "let entered = match self.enter(1, timeout_ns) {",
        }],
        proofs: &["nvme-msix-8"],
        accel: Accel::Tcg,
    },
];
