//! AMD machines: EPYC CPU models (TCG) on q35, with and without the AMD IOMMU. The smp
//! checks (ticks, IPIs both ways, the RTC through the IOAPIC) must hold as on the Intel-like
//! `qemu64`, and the IOMMU the IVRS describes must be reported as QEMU built it: one unit at
//! 0xFED80000 (PCI 00:03.0) whose type-0x11 IVHD is preferred, XT as `xtsup` says, GA, and
//! IOAPIC 0 requesting as 00:14.0. The unit is brought up with interrupt remapping (GA/XT
//! entries, or legacy ones without XT), each source's entry read back from its requester's
//! table and cross-checked against QEMU's `amdvi_*` trace.
//!
//! `pt=off`: QEMU 10.0 builds the IOAPIC's address space under the AMD IOMMU before the
//! regions it aliases exist, so with the default `pt=on` every IOAPIC interrupt is dropped
//! whatever the guest does (0 RTC interrupts); with `pt=off` the IOAPIC's writes pass the
//! IOMMU's translation untouched. See docs/interrupts.md.

use super::user::user_proof;
use super::{
    firmware_x2apic_machine, interrupt_grant, smp_checks, x2apic_cpu, Accels, Gate, Proof,
};
use crate::checks::{custom, eq, ge, keys_equal};
use crate::qemu::CpuSpec;
use crate::trace::{ev_str, ev_u64, Trace};

/// The AMD IOMMU with interrupt remapping and x2APIC (XT) support advertised.
pub(super) const AMD_IOMMU_XT: &[&str] = &["-device", "amd-iommu,intremap=on,xtsup=on,pt=off"];
/// The same without XT: the EFR image and register lack XTSup.
pub(super) const AMD_IOMMU_NO_XT: &[&str] = &["-device", "amd-iommu,intremap=on,pt=off"];
/// QEMU trace events of the unit's register accesses.
const AMDVI_TRACE: &[&str] = &[
    "amdvi_mmio_read",
    "amdvi_control_status",
    "amdvi_devtab_inval",
    "amdvi_completion_wait",
    "amdvi_command_error",
    "amdvi_ir_remap_msi",
    "amdvi_ir_intctl",
    "amdvi_ir_irte_ga_val",
    "amdvi_ir_irte_val",
    "amdvi_ir_err",
    "amdvi_ir_target_abort",
    "amdvi_page_fault",
    "amdvi_mem_ir_write_req",
    "amdvi_intr_inval",
    "amdvi_unhandled_command",
];

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

/// The interrupt sources a proof routes: (evidence prefix, key of the target APIC ID, key of
/// the vector, whether an IOAPIC input, whose index is its vector).
type Sources = &'static [(&'static str, &'static str, &'static str, bool)];

/// The RTC of the smp scenario.
const RTC: Sources = &[("rtc", "rtc.apic_id", "rtc.vector", true)];
/// The interrupt-grant drivers' three sources.
const DRIVERS: Sources = &[
    ("irq.msi_edu", "irq.msi_edu.target_apic_id", "irq.msi_edu.vector", false),
    ("irq.intx_edu", "irq.intx_edu.target_apic_id", "irq.intx_edu.vector", true),
    ("irq.isa_8", "irq.isa_8.target_apic_id", "irq.isa_8.vector", true),
];

/// Splits `amdvi_ir_remap_msi (addr A, data D) -> (addr TA, data TD)` into its numbers.
pub(super) fn remap_words(raw: &str) -> Option<[u64; 4]> {
    let w: Vec<u64> = raw
        .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
        .filter(|w| w.starts_with("0x"))
        .filter_map(keel_evidence::parse_u64)
        .collect();
    w.try_into().ok()
}

/// The IVRS QEMU builds, as the kernel parsed it; the unit brought up with interrupt
/// remapping in `format` ("ga" or "legacy"); each of `sources` routed through its table entry
/// (read back from table memory); QEMU's trace agreeing: the commands, one interrupt-table
/// invalidation per entry written, and every interrupt the unit remapped built from an
/// entry the kernel reported.
fn amd_iommu_checks(
    p: Proof,
    xt: &'static str,
    format: &'static str,
    sources: Sources,
    device_msis: bool,
) -> Proof {
    let en = if format == "ga" { "yes" } else { "no" };
    let mut p = p
        .check(eq("acpi.ivrs", "yes"))
        .check(eq("acpi.dmar", "no"))
        .check(eq("iommu.amd.ivrs", "parsed"))
        .check(eq("iommu.amd.units", 1))
        .check(eq("iommu.amd.0.ivhd_type", "0x11"))
        .check(eq("iommu.amd.0.base", "0xfed80000"))
        .check(eq("iommu.amd.0.device_id", "0x0018"))
        .check(eq("iommu.amd.xt", xt))
        .check(eq("iommu.amd.ga", "yes"))
        .check(eq("iommu.amd.ioapic.0.devid", "0x00a0"))
        // Read back from the control register, the DTE in memory, the completion store and
        // the head/tail registers.
        .check(eq("iommu.amd.0.enabled", "yes"))
        .check(eq("iommu.amd.0.cmdbuf", "yes"))
        .check(eq("iommu.amd.0.completion_value", "0x4b45454c414d4456"))
        .check(keys_equal("iommu.amd.0.cmd_head", "iommu.amd.0.cmd_tail"))
        .check(eq("iommu.amd.remap", format))
        .check(eq("iommu.amd.ga_en", en))
        .check(eq("iommu.amd.xt_en", en))
        .check(eq("iommu.amd.ioapic.0.int_ctl", "remap"))
        .check(eq("iommu.amd.ioapic.0.int_table_len", 256))
        .check(eq("iommu.amd.ioapic.0.int_table_matches", "yes"))
        .check(keys_equal("iommu.amd.entries_written", "iommu.amd.table_invalidations"))
        .check(ge("iommu.amd.table_invalidations", sources.len() as u64))
        // The event log: its base register holds the kernel's page, the unit reports it
        // running, and the unit's own MSI names the boot CPU (APIC ID 0) in its config space.
        .check(eq("iommu.amd.event_log_running", "yes"))
        .check(custom(
            "the event log base register names the kernel's log page (256 entries)",
            |t| {
                let base = ev_u64(t, "iommu.amd.event_log")?;
                let phys = ev_u64(t, "iommu.amd.event_log_phys")?;
                if base == phys | 8 << 56 {
                    Ok(())
                } else {
                    Err(format!("base register {base:#x}, log page {phys:#x}"))
                }
            },
        ))
        .check(eq("iommu.amd.event_msi_destination", 0));
    for (prefix, target, vector, ioapic) in sources {
        let k = |s: &str| format!("{prefix}.{s}");
        p = p
            .check(eq(&k("format"), "amdvi"))
            .check(keys_equal(&k("irte_destination"), target))
            .check(keys_equal(&k("irte_vector"), vector));
        if *ioapic {
            p = p
                .check(eq(&k("irte_devid"), "0x00a0"))
                .check(keys_equal(&k("remap_index"), vector));
        } else {
            p = p.check(keys_equal(&k("irte_devid"), &k("requester_id")));
        }
    }
    p.trace(AMDVI_TRACE)
        .trace_check("amdvi: the EFR read, the unit enabled with its command buffer, one devtab invalidation per entry written (00:14.0 among them), the bring-up wait storing the kernel's value, then one wait per later batch storing its sequence number", |t, tr: &Trace| {
            let efr_reads = tr
                .matching("amdvi_mmio_read", &[])
                .filter(|e| e.raw.contains("AMDVI_MMIO_EXT_FEATURES"))
                .count();
            if efr_reads == 0 {
                return Err("the EFR was never read from the unit".into());
            }
            let control = tr
                .matching("amdvi_control_status", &[])
                .filter_map(|e| e.raw.rsplit(' ').next().and_then(keel_evidence::parse_u64))
                .last();
            if control.map(|c| c & 0x1001) != Some(0x1001) {
                return Err(format!("last control traced {control:x?}, want IommuEn and CmdBufEn"));
            }
            let written = ev_u64(t, "iommu.amd.0.dte_written")?;
            let invals: Vec<&str> =
                tr.matching("amdvi_devtab_inval", &[]).map(|e| e.raw.as_str()).collect();
            if invals.len() as u64 != written || !invals.iter().any(|l| l.contains("00:14.0")) {
                return Err(format!("{} devtab invalidations traced for {written} entries: {invals:?}", invals.len()));
            }
            let store = ev_u64(t, "iommu.amd.0.completion_store")?;
            let value = ev_u64(t, "iommu.amd.0.completion_value")?;
            let later = ev_u64(t, "iommu.amd.completion_waits")?;
            let waits: Vec<&str> =
                tr.matching("amdvi_completion_wait", &[]).map(|e| e.raw.as_str()).collect();
            let want: Vec<String> = [value]
                .into_iter()
                .chain(1..=later)
                .map(|v| format!("store address {store:#x} and store data {v:#x}"))
                .collect();
            if waits.len() != want.len() || !waits.iter().zip(&want).all(|(w, x)| w.contains(x.as_str())) {
                return Err(format!("completion waits traced {waits:?}, want {want:?}"));
            }
            Ok(())
        })
        .trace_check("amdvi: one interrupt-table invalidation per entry written; no command or remapping error; every interrupt the unit remapped came from an entry the kernel reported (index, vector, destination, and the 128-bit entry the unit read), at least one per edu MSI counted", move |t, tr: &Trace| {
            let errors: Vec<&str> = tr
                .matching("amdvi_command_error", &[])
                .map(|e| e.raw.as_str())
                .filter(|l| !l.contains("command buffer disabled"))
                .chain(tr.matching("amdvi_ir_err", &[]).map(|e| e.raw.as_str()))
                .chain(tr.matching("amdvi_ir_target_abort", &[]).map(|e| e.raw.as_str()))
                .chain(tr.matching("amdvi_page_fault", &[]).map(|e| e.raw.as_str()))
                .collect();
            if !errors.is_empty() {
                return Err(format!("errors traced: {errors:?}"));
            }
            let invalidations = tr.matching("amdvi_intr_inval", &[]).count() as u64;
            let counted = ev_u64(t, "iommu.amd.table_invalidations")?;
            if invalidations != counted {
                return Err(format!("{invalidations} interrupt-table invalidations traced, kernel counted {counted}"));
            }
            let mut known = Vec::new();
            for (prefix, ..) in sources {
                let k = |s: &str| format!("{prefix}.{s}");
                known.push((
                    ev_u64(t, &k("remap_index"))?,
                    ev_u64(t, &k("irte_vector"))?,
                    ev_u64(t, &k("irte_destination"))?,
                    ev_str(t, &k("irte_raw"))?,
                ));
            }
            let mut remapped = 0u64;
            for e in tr.matching("amdvi_ir_remap_msi", &[]) {
                let [_, data, to_addr, to_data] =
                    remap_words(&e.raw).ok_or_else(|| format!("unparsed: {}", e.raw))?;
                // The 32-bit destination: bits 7:0 in address bits 19:12, the rest in the
                // high address dword (QEMU's extended-destination MSI).
                let to_dest = ((to_addr >> 32) & !0xFF) | ((to_addr >> 12) & 0xFF);
                let hit = known.iter().any(|(index, vector, dest, _)| {
                    data & 0x7FF == *index && to_data & 0xFF == *vector && to_dest == *dest
                });
                if !hit {
                    return Err(format!("remapped from no reported entry: {}", e.raw));
                }
                remapped += 1;
            }
            for e in tr.matching("amdvi_ir_irte_ga_val", &[]) {
                let words: Vec<&str> = e.raw.split_whitespace().filter(|w| w.starts_with("0x")).collect();
                let seen = words.join("_");
                if !known.iter().any(|(.., raw)| *raw == seen) {
                    return Err(format!("the unit read an entry the kernel did not report: {}", e.raw));
                }
            }
            let want = if device_msis { ev_u64(t, "irq.msi_edu.deliveries")? } else { 0 };
            if device_msis && (want == 0 || remapped < want) {
                return Err(format!("{remapped} interrupts remapped by the unit, kernel counted {want} edu MSIs"));
            }
            Ok(())
        })
}

/// The ring-3 edu (MSI, INTx) and RTC drivers on EPYC-Rome with the unit remapping: edu's
/// MSIs carry only index 0 of edu's table and reach the driver's CPU through the GA entry
/// (QEMU's `amdvi_ir_remap_msi`).
fn amd_drivers() -> Proof {
    let p = Proof::new(
        "amd-interrupt-grant",
        "the interrupt-grant drivers on EPYC-Rome with AMD-Vi interrupt remapping (GA, XT)",
    )
    .cpu(epyc("EPYC-Rome", true))
    .qemu_extra(AMD_IOMMU_XT);
    amd_iommu_checks(interrupt_grant(p, "x2apic", Gate::Syscall), "yes", "ga", DRIVERS, true)
        .check(eq("irq.msi_edu.msi_address", "0xfee00000"))
}

/// The EPYC-Rome vCPU with APIC ID 257 (x2APIC only).
const ROME_257: &[&str] =
    &["-device", "EPYC-Rome-x86_64-cpu,x2apic=on,socket-id=0,core-id=257,thread-id=0"];
/// The edu MSI source alone (the IOAPIC's requests bypass QEMU 10.0's unit).
const MSI_ONLY: Sources =
    &[("irq.msi_edu", "irq.msi_edu.target_apic_id", "irq.msi_edu.vector", false)];

/// The edu MSI driver on APIC ID 257 of an EPYC-Rome machine: its MSI names only index 0 of
/// edu's table, the GA entry holds destination 257 (bits 31:24 in the high quadword, 23:0
/// in the low one), and every MSI the unit remapped arrived on that CPU.
fn amd_msi_257() -> Proof {
    // The unit first, so that it is 00:03.0 (device id 0x0018) as on the other machines.
    let p = user_proof(
        Proof::new(
            "amd-msi-257",
            "edu MSI on the CPU with APIC ID 257 through AMD-Vi GA/XT remapping (EPYC-Rome)",
        )
        .qemu_extra(AMD_IOMMU_XT),
        "amd-msi-257",
        &["edu-driver"],
    )
    .cpu(epyc("EPYC-Rome", true))
    .qemu_extra(&["-smp", "2,maxcpus=260"])
    .qemu_extra(ROME_257)
    .accels(Accels::TcgOnly);
    amd_iommu_checks(p, "yes", "ga", MSI_ONLY, true)
        .check(eq("smp.max_apic_id", 257))
        .check(eq("proc.edu_msi.exit", 0))
        .check(eq("irq.msi_edu.target_apic_id", 257))
        .check(eq("irq.msi_edu.irte_destination", 257))
        .check(keys_equal("irq.msi_edu.on_target_cpu", "irq.msi_edu.deliveries"))
        .check(eq("irq.msi_edu.deliveries", 300))
        .check(eq("irq.msi_edu.off_target_cpu", 0))
        .check(eq("irq.msi_edu.msi_address", "0xfee00000"))
}

/// A machine with APIC ID 257 whose unit lacks XT: legacy entries (8-bit destinations), so
/// the RTC route to 257 is refused with the reason and the RTC goes to APIC ID 1 instead.
fn amd_legacy_257_refused() -> Proof {
    let p = Proof::new(
        "amd-legacy-257-refused",
        "EPYC-Rome with APIC ID 257, AMD IOMMU without XT: the route to 257 refused, legacy entries",
    )
    .smp(2)
    .cpu(epyc("EPYC-Rome", true))
    .qemu_extra(AMD_IOMMU_NO_XT)
    .qemu_extra(&["-smp", "2,maxcpus=260"])
    .qemu_extra(ROME_257)
    .accels(Accels::TcgOnly);
    amd_iommu_checks(smp_checks(p, 3, "x2apic"), "no", "legacy", RTC, false)
        .check(eq("smp.max_apic_id", 257))
        .check(eq("ioapic.route_above_254", "refused"))
        .check(eq("ioapic.route_above_254_reason", "8-bit-destination-without-remapping"))
        .check(eq("iommu.amd.refused_above_254", 1))
        .check(eq("rtc.apic_id", 1))
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
            "ga",
            RTC,
            false,
        )
        .check(eq("iommu.amd.0.efr", "0x29d7"))
        .check(eq("iommu.amd.0.efr_agrees", "yes")),
        amd_iommu_checks(
            amd_smp(
                "amd-rome-iommu-xapic",
                "EPYC-Rome, xAPIC, AMD IOMMU without XT: IVRS reported, RTC via IOAPIC",
                epyc("EPYC-Rome", false),
                "xapic",
            )
            .qemu_extra(AMD_IOMMU_NO_XT),
            "no",
            "legacy",
            RTC,
            false,
        ),
        // Firmware whose IVRS claims XT for a unit without it (the image of an xtsup=on
        // unit on an xtsup=off one): the register decides, so the entries stay legacy.
        amd_iommu_checks(
            amd_smp(
                "amd-efr-mismatch",
                "EPYC-Rome, x2APIC, AMD IOMMU without XT whose IVRS EFR image claims XT: the register decides",
                epyc("EPYC-Rome", true),
                "x2apic",
            )
            .qemu_extra(AMD_IOMMU_NO_XT)
            .args("ivrs_efr_image=0x29d7"),
            "no",
            "legacy",
            RTC,
            false,
        )
        .check(eq("iommu.amd.0.efr", "0x29d3"))
        .check(eq("iommu.amd.0.efr_image", "0x29d7"))
        .check(eq("iommu.amd.0.efr_agrees", "no")),
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
            "ga",
            RTC,
            false,
        ),
        amd_drivers(),
        amd_msi_257(),
        amd_legacy_257_refused(),
    ]
    .into_iter()
    .chain(opt_out_proofs())
    .collect()
}
