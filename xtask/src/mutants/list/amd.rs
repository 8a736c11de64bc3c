//! Breaks: AMD-Vi interrupt remapping and DMA translation.

use super::{Break, Edit};
use crate::qemu::Accel;

pub(super) const BREAKS: &[Break] = &[
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
        proofs: &["amd-efr-mismatch"],
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
    Break {
        name: "amdvi-msix-one-index-for-every-entry",
        what: "every MSI-X entry of a function gets index 1 of its AMD-Vi table: the last entry programmed names the CPU and vector of all of them",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/amdvi/remap.rs",
            find: "    let index = msix_index(entry).ok_or(AmdRemapError::NoIndex)?;",
            replace: "    let index = msix_index(0).ok_or(AmdRemapError::NoIndex)?;\n    let _ = entry;",
        }],
        proofs: &["amd-nvme-msix", "amd-nvme-msix-xapic"],
        accel: Accel::Tcg,
    },
];
