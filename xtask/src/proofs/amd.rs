//! AMD machines: EPYC CPU models (TCG) on q35, with and without the AMD IOMMU. The smp
//! checks (ticks, IPIs both ways, the RTC through the IOAPIC) must hold as on the Intel-like
//! `qemu64`, and the IOMMU the IVRS describes must be reported as QEMU built it: one unit at
//! 0xFED80000 (PCI 00:03.0) whose type-0x11 IVHD is preferred, XT as `xtsup` says, GA, and
//! IOAPIC 0 requesting as 00:14.0. The unit is read, never programmed: QEMU's trace shows
//! the extended-feature register read and no register written.
//!
//! `pt=off`: QEMU 10.0 builds the IOAPIC's address space under the AMD IOMMU before the
//! regions it aliases exist, so with the default `pt=on` every IOAPIC interrupt is dropped
//! whatever the guest does (0 RTC interrupts); with `pt=off` the IOAPIC's writes pass the
//! IOMMU's translation untouched. See docs/interrupts.md.

use super::{firmware_x2apic_machine, smp_checks, x2apic_cpu, Accels, Proof};
use crate::checks::eq;
use crate::qemu::CpuSpec;
use crate::trace::Trace;

/// The AMD IOMMU with interrupt remapping and x2APIC (XT) support advertised.
const AMD_IOMMU_XT: &[&str] = &["-device", "amd-iommu,intremap=on,xtsup=on,pt=off"];
/// The same without XT: the EFR image and register lack XTSup.
const AMD_IOMMU_NO_XT: &[&str] = &["-device", "amd-iommu,intremap=on,pt=off"];
/// QEMU trace events of the unit's register accesses.
const AMDVI_TRACE: &[&str] = &["amdvi_mmio_read", "amdvi_mmio_write", "amdvi_ir_remap_msi"];

/// A DMAR with only X2APIC_OPT_OUT set (no remapping unit), added to QEMU's own tables with
/// `-acpitable`: QEMU's `intel-iommu` never sets the flag (its DMAR flags are 0x01, `eim=on`
/// or `off`), so this is the one way to boot a machine whose firmware opts out.
const DMAR_OPT_OUT: &[&str] =
    &["-acpitable", concat!("file=", env!("CARGO_MANIFEST_DIR"), "/data/dmar-x2apic-opt-out.bin")];

/// The firmware's x2APIC opt-out, honoured as Linux does: x2APIC available by CPUID but
/// firmware left xAPIC, so the kernel stays in xAPIC (mode read back from the MSR); when
/// firmware already enabled x2APIC, the kernel stays there with no mode write.
fn opt_out_proofs() -> Vec<Proof> {
    vec![
        smp_checks(
            Proof::new(
                "x2apic-opt-out",
                "DMAR X2APIC_OPT_OUT on an x2APIC CPU: Keel stays in xAPIC",
            )
            .smp(2)
            .cpu(x2apic_cpu())
            .qemu_extra(DMAR_OPT_OUT),
            2,
            "xapic",
        )
        .check(eq("cpu.x2apic_cpuid", "yes"))
        .check(eq("lapic.firmware_state", "xapic"))
        .check(eq("lapic.x2apic_opt_out", "yes"))
        .check(eq("lapic.mode_writes", 0))
        .check(eq("lapic.xapic_mmio_mapped", "yes")),
        smp_checks(
            firmware_x2apic_machine(Proof::new(
                "x2apic-opt-out-firmware-x2apic",
                "DMAR X2APIC_OPT_OUT, firmware already in x2APIC: Keel stays in x2APIC",
            ))
            .qemu_extra(DMAR_OPT_OUT),
            2,
            "x2apic",
        )
        .check(eq("lapic.firmware_state", "x2apic"))
        .check(eq("lapic.x2apic_opt_out", "yes"))
        .check(eq("lapic.mode_writes", 0)),
    ]
}

fn epyc(model: &'static str, x2apic: bool) -> CpuSpec {
    CpuSpec::new(model, if x2apic { &["+x2apic"] } else { &["-x2apic"] })
}

/// The smp scenario on an EPYC model, both LAPIC modes' checks as on `qemu64`.
fn amd_smp(
    name: &'static str,
    description: &'static str,
    cpu: CpuSpec,
    mode: &'static str,
) -> Proof {
    smp_checks(Proof::new(name, description).smp(2).cpu(cpu).accels(Accels::TcgOnly), 2, mode)
        .check(eq("lockup.reports", 0))
}

/// The IVRS QEMU builds, as the kernel parsed it and read the unit back.
fn amd_iommu_checks(p: Proof, xt: &'static str) -> Proof {
    p.check(eq("acpi.ivrs", "yes"))
        .check(eq("acpi.dmar", "no"))
        .check(eq("iommu.amd.ivrs", "parsed"))
        .check(eq("iommu.amd.units", 1))
        .check(eq("iommu.amd.0.ivhd_type", "0x11"))
        .check(eq("iommu.amd.0.base", "0xfed80000"))
        .check(eq("iommu.amd.0.device_id", "0x0018"))
        .check(eq("iommu.amd.xt", xt))
        .check(eq("iommu.amd.ga", "yes"))
        .check(eq("iommu.amd.ioapic.0.devid", "0x00a0"))
        .check(eq("iommu.amd.0.enabled", "no"))
        .trace(AMDVI_TRACE)
        .trace_check(
            "amdvi_mmio_read of the EFR traced, no register written, nothing remapped",
            |_, tr: &Trace| {
                let efr_reads = tr
                    .matching("amdvi_mmio_read", &[])
                    .filter(|e| e.raw.contains("AMDVI_MMIO_EXT_FEATURES"))
                    .count();
                let writes = tr.count("amdvi_mmio_write", &[]);
                let remaps = tr.count("amdvi_ir_remap_msi", &[]);
                if efr_reads >= 1 && writes == 0 && remaps == 0 {
                    Ok(())
                } else {
                    Err(format!("{efr_reads} EFR reads, {writes} register writes, {remaps} remaps"))
                }
            },
        )
}

pub fn proofs() -> Vec<Proof> {
    vec![
        amd_smp(
            "amd-rome",
            "EPYC-Rome, x2APIC, no IOMMU: ticks, IPIs, RTC via IOAPIC",
            epyc("EPYC-Rome", true),
            "x2apic",
        )
        .check(eq("acpi.ivrs", "no"))
        .check(eq("iommu.amd.ivrs", "none")),
        amd_iommu_checks(
            amd_smp(
                "amd-rome-iommu",
                "EPYC-Rome, x2APIC, AMD IOMMU (XT): IVRS reported, RTC via IOAPIC",
                epyc("EPYC-Rome", true),
                "x2apic",
            )
            .qemu_extra(AMD_IOMMU_XT),
            "yes",
        ),
        amd_iommu_checks(
            amd_smp(
                "amd-rome-iommu-xapic",
                "EPYC-Rome, xAPIC, AMD IOMMU without XT: IVRS reported, RTC via IOAPIC",
                epyc("EPYC-Rome", false),
                "xapic",
            )
            .qemu_extra(AMD_IOMMU_NO_XT),
            "no",
        ),
        amd_smp(
            "amd-milan",
            "EPYC-Milan, x2APIC, no IOMMU: ticks, IPIs, RTC via IOAPIC",
            epyc("EPYC-Milan", true),
            "x2apic",
        ),
        amd_iommu_checks(
            amd_smp(
                "amd-genoa-iommu",
                "EPYC-Genoa, x2APIC, AMD IOMMU (XT): IVRS reported, RTC via IOAPIC",
                epyc("EPYC-Genoa", true),
                "x2apic",
            )
            .qemu_extra(AMD_IOMMU_XT),
            "yes",
        ),
    ]
    .into_iter()
    .chain(opt_out_proofs())
    .collect()
}
