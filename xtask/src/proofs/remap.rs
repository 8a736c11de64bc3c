//! Proofs of VT-d interrupt remapping: device interrupts delivered to the CPU with APIC ID
//! 257 through the IOMMU, cross-checked against QEMU's `vtd_*` trace events (what the
//! emulated remapping unit really did), and the refusal on the same machine without one.

use super::{
    drivers_delivered, firmware_x2apic_machine, smp_checks, user_proof, x2apic_cpu, Proof,
};
use crate::checks::{custom, eq, for_each_cpu, ge, is, keys_equal, Check};
use crate::trace::{ev_str, ev_u64, Trace};

/// `-device intel-iommu` with interrupt remapping and extended interrupt mode.
const IOMMU: &[&str] = &["-device", "intel-iommu,intremap=on,eim=on"];

/// The machine with the IOMMU. KVM's in-kernel IOAPIC cannot remap, so the IOAPIC moves to
/// QEMU (`kernel-irqchip=split`); TCG ignores the option.
impl Proof {
    fn with_iommu(self) -> Proof {
        self.machine("q35,kernel-irqchip=split").qemu_extra(IOMMU)
    }
}
/// The CPU with APIC ID 257 (CPU index 2 after APIC IDs 0 and 1).
const CPU_257: &[&str] =
    &["-device", "qemu64-x86_64-cpu,x2apic=on,socket-id=0,core-id=257,thread-id=0"];
/// Interrupts each edu driver raises in `manifests/interrupt-remap-257.manifest`.
const EDU_RAISES_257: u64 = 300;
/// QEMU trace events of the remapping unit the proofs log.
const VTD_TRACE: &[&str] =
    &["vtd_ir_enable", "vtd_reg_ir_root", "vtd_ir_irte_get", "vtd_ir_remap", "vtd_inv_desc_iec"];
/// Handled interrupts may exceed traced remaps by one in flight when the log was cut.
const REMAP_TRACE_SLACK: u64 = 2;

fn hex_or_dec(v: &str) -> Option<u64> {
    keel_evidence::parse_u64(v)
}

/// What the emulated unit saw: remapping enabled once, the table the kernel reports, at least
/// one invalidation per entry written, and for each source (`prefix` with its delivery
/// counter): every remap of its index went to the destination and vector the kernel's table
/// holds, no fewer remaps than the kernel counted deliveries, and the table entry QEMU read
/// names that destination.
pub fn vtd_trace_checks(p: Proof, sources: &'static [(&'static str, &'static str)]) -> Proof {
    let mut p = p
        .trace(VTD_TRACE)
        .trace_check("vtd_ir_enable 1 traced, never disabled after", |_, tr| {
            let states: Vec<&str> = tr.values("vtd_ir_enable", "enable");
            match states.last() {
                Some(&"1") => Ok(()),
                other => Err(format!("vtd_ir_enable states {states:?} (last {other:?})")),
            }
        })
        .trace_check("vtd_reg_ir_root addr/size == iommu.irt_phys/irt_entries", |t, tr| {
            let (phys, entries) = (ev_u64(t, "iommu.irt_phys")?, ev_u64(t, "iommu.irt_entries")?);
            let roots: Vec<(Option<u64>, Option<u64>)> = tr
                .matching("vtd_reg_ir_root", &[])
                .map(|e| {
                    (e.field("addr").and_then(hex_or_dec), e.field("size").and_then(hex_or_dec))
                })
                .collect();
            if roots.last() == Some(&(Some(phys), Some(entries))) {
                Ok(())
            } else {
                Err(format!("traced roots {roots:?}, kernel says {phys:#x}/{entries}"))
            }
        })
        .trace_check(
            "vtd_inv_desc_iec events >= iommu.entries_written + 1 (the global one)",
            |t, tr| {
                let written = ev_u64(t, "iommu.entries_written")?;
                let traced = tr.count("vtd_inv_desc_iec", &[]) as u64;
                if traced > written {
                    Ok(())
                } else {
                    Err(format!("{traced} IEC invalidations traced for {written} entries written"))
                }
            },
        );
    for &(prefix, counter) in sources {
        let name = format!("{prefix}: every vtd_ir_remap of its index went to its IRTE's destination and vector, >= {counter}");
        p = p.trace_check(&name, move |t, tr| source_remapped(t, tr, prefix, counter));
    }
    super::counted_as_taken(p, sources)
}

fn source_remapped(
    t: &keel_evidence::Transcript,
    tr: &Trace,
    prefix: &str,
    counter: &str,
) -> Result<(), String> {
    let index = ev_str(t, &format!("{prefix}.remap_index"))?;
    let dest = ev_u64(t, &format!("{prefix}.irte_destination"))?;
    let vector = ev_u64(t, &format!("{prefix}.irte_vector"))?;
    let counted = ev_u64(t, counter)?;
    let mut remaps = 0u64;
    for e in tr.matching("vtd_ir_remap", &[("index", &index)]) {
        let (d, v) = (e.field("dest").and_then(hex_or_dec), e.field("vector").and_then(hex_or_dec));
        if d != Some(dest) || v != Some(vector) {
            return Err(format!("remap of index {index} went elsewhere: {}", e.raw));
        }
        remaps += 1;
    }
    if remaps + REMAP_TRACE_SLACK < counted {
        return Err(format!("kernel counted {counted} deliveries but QEMU remapped index {index} only {remaps} times"));
    }
    // QEMU passes the entry's quadwords to this event swapped: the field it labels `high`
    // holds bits 63:0 (P, trigger, vector, destination), `low` bits 127:64 (SID, SQ, SVT).
    let reads: Vec<(u64, Option<u64>)> = tr
        .matching("vtd_ir_irte_get", &[("index", &index)])
        .filter_map(|e| {
            e.field("high").and_then(hex_or_dec).map(|q| (q, e.field("low").and_then(hex_or_dec)))
        })
        .collect();
    if reads.is_empty() {
        return Err(format!("QEMU never read IRTE {index}"));
    }
    // Bits 63:32 hold the destination in extended interrupt mode, bits 47:40 in xAPIC mode.
    let xapic = ev_str(t, "iommu.mode")? == "xapic";
    let destination = |low: u64| if xapic { (low >> 40) & 0xFF } else { low >> 32 };
    if let Some((low, _)) = reads.iter().find(|(low, _)| destination(*low) != dest) {
        return Err(format!(
            "QEMU read IRTE {index} with destination {} (low {low:#x}), kernel says {dest}",
            destination(*low)
        ));
    }
    let whole = IrteFields::of_kernel(t, prefix)?;
    for &(low, high) in &reads {
        let high = high.ok_or_else(|| format!("QEMU's read of IRTE {index} has no high half"))?;
        let traced = IrteFields::of_quadwords(low, high)?;
        if traced != whole || traced.vector != vector {
            return Err(format!(
                "QEMU read IRTE {index} as {traced:?} (low {low:#x} high {high:#x}), kernel's table says {whole:?}, vector {vector}"
            ));
        }
    }
    Ok(())
}

/// The parts of an IRTE beyond its destination, as the kernel decoded them from its table
/// (`<prefix>.irte_*`) or as QEMU read them (both quadwords of `vtd_ir_irte_get`).
#[derive(Debug, PartialEq, Eq)]
struct IrteFields {
    vector: u64,
    trigger: &'static str,
    svt: &'static str,
    /// SID, or the bus range as `first << 8 | last`; absent when SVT is none.
    sid: Option<u64>,
}

impl IrteFields {
    fn of_kernel(t: &keel_evidence::Transcript, prefix: &str) -> Result<IrteFields, String> {
        let name = |v: String, names: &[&'static str]| {
            names.iter().copied().find(|n| *n == v).ok_or(format!("{prefix}: unknown {v}"))
        };
        let svt =
            name(ev_str(t, &format!("{prefix}.irte_svt"))?, &["none", "requester", "bus_range"])?;
        Ok(IrteFields {
            vector: ev_u64(t, &format!("{prefix}.irte_vector"))?,
            trigger: name(ev_str(t, &format!("{prefix}.irte_trigger"))?, &["edge", "level"])?,
            svt,
            sid: match svt {
                "none" => None,
                _ => Some(ev_u64(t, &format!("{prefix}.irte_sid"))?),
            },
        })
    }

    /// VT-d 9.10: bit 4 TM, 23:16 vector; 79:64 SID, 81:80 SQ (0: all 16 SID bits
    /// compared), 83:82 SVT.
    fn of_quadwords(low: u64, high: u64) -> Result<IrteFields, String> {
        let (svt, sq) = ((high >> 18) & 3, (high >> 16) & 3);
        let svt = match (svt, sq) {
            (0, _) => "none",
            (1, 0) => "requester",
            (2, _) => "bus_range",
            _ => return Err(format!("IRTE high quadword {high:#x}: SVT {svt} SQ {sq}")),
        };
        Ok(IrteFields {
            vector: (low >> 16) & 0xFF,
            trigger: if low & (1 << 4) != 0 { "level" } else { "edge" },
            svt,
            sid: (svt != "none").then_some(high & 0xFFFF),
        })
    }
}

/// The firmware-x2APIC machine with a CPU of APIC ID 257.
fn machine_257(p: Proof) -> Proof {
    firmware_x2apic_machine(p).qemu_extra(CPU_257)
}

/// Per-source checks of the remapped drivers' interrupts on the CPU with `apic_id`.
fn remapped_source(p: Proof, key: &'static str, apic_id: u64) -> Proof {
    let k = |s: &str| -> &'static str { Box::leak(format!("irq.{key}.{s}").into_boxed_str()) };
    p.check(eq(k("target_apic_id"), apic_id))
        .check(keys_equal(k("on_target_cpu"), k("deliveries")))
        .check(eq(k("off_target_cpu"), 0))
        .check(eq(k("format"), "remappable"))
        // Source validation on: the MSI entry accepts the function's own requester id (read
        // from its PCI location), the IOAPIC entries the IOAPIC's (QEMU: 0xff00).
        .check(eq(k("irte_svt"), "requester"))
        .check(if key == "msi_edu" {
            keys_equal(k("irte_sid"), k("requester_id"))
        } else {
            eq(k("irte_sid"), "0xff00")
        })
        // edu's INTx is level-triggered; its MSI and the RTC (ISA IRQ 8) are edge.
        .check(eq(k("irte_trigger"), if key == "intx_edu" { "level" } else { "edge" }))
        .check(eq(k("irte_destination"), apic_id))
        .check(keys_equal(k("irte_vector"), k("vector")))
        // Read back from the RTE / MSI mask bit; edu's MSI has none, so only the kernel's
        // software mask exists for it and the evidence says `software`.
        .check(eq(k("masked_at_end"), if key == "msi_edu" { "software" } else { "yes" }))
        .check(eq(k("software_masked_at_end"), "yes"))
}

fn remapping_on(p: Proof) -> Proof {
    remapping_in(p, "x2apic")
}

/// Remapping on every unit (read back from GSTS and IRTA), in `mode` (EIME for x2APIC).
fn remapping_in(p: Proof, mode: &'static str) -> Proof {
    p.check(eq("iommu.remapping", "on"))
        .check(eq("iommu.mode", mode))
        .check(eq("iommu.unit.0.ire", "yes"))
        .check(eq("iommu.unit.0.qie", "yes"))
        .check(eq("iommu.unit.0.eime", if mode == "x2apic" { "yes" } else { "no" }))
        .check(eq("iommu.faults", 0))
}

const USER_SOURCES: &[(&str, &str)] = &[
    ("irq.msi_edu", "irq.msi_edu.deliveries"),
    ("irq.intx_edu", "irq.intx_edu.deliveries"),
    ("irq.isa_8", "irq.isa_8.deliveries"),
];

pub fn proofs() -> Vec<Proof> {
    vec![
        rtc_to_257(),
        drivers_on_257(),
        drivers_remapped(
            "interrupt-remap-x2apic",
            "the interrupt-grant drivers via VT-d in extended interrupt mode, Keel enabling x2APIC",
            "x2apic",
        )
        .check(eq("lapic.firmware_state", "xapic")),
        drivers_remapped(
            "interrupt-remap-xapic",
            "the interrupt-grant drivers via VT-d in xAPIC mode (8-bit IRTE destinations)",
            "xapic",
        ),
        death_across_cpus(),
        remapping_on(
            user_proof(
                Proof::new("interrupt-storm-remap", "interrupt-storm with VT-d remapping on")
                    .args("timer=periodic"),
                "interrupt-storm",
                &["edu-driver"],
            )
            .with_iommu(),
        )
        .check(eq("irq.intx_edu.deliveries", 1))
        .check(eq("irq.intx_edu.format", "remappable"))
        .check(eq("irq.intx_edu.masked_at_end", "yes"))
        .check(eq("user.edu_storm.first_wait_count", 1))
        .check(eq("user.edu_storm.second_wait", "timed_out"))
        // The storm must not stop any CPU's tick (a livelocked CPU counts 0). 10, not the
        // 30 the 300 ms wait holds at 100 Hz: QEMU coalesces a starved vCPU's ticks (17 seen).
        .check(for_each_cpu("cpu.*.timer_ticks", is::ge(10)).count_eq_key("smp.online")),
        two_msi_functions(
            "interrupt-remap-two-msi",
            "two edu functions' MSIs via VT-d: a remapping entry each, each validating its own requester id",
            "x2apic",
        ),
        two_msi_functions(
            "interrupt-remap-two-msi-xapic",
            "the same in xAPIC mode (8-bit IRTE destinations)",
            "xapic",
        ),
        death_checks(remapping_on(
            user_proof(
                Proof::new("driver-death-remap", "driver-death with VT-d remapping on"),
                "driver-death",
                &["edu-driver"],
            )
            .with_iommu(),
        ))
        .check(eq("irq.intx_edu.format", "remappable"))
        .check(eq("irq.intx_edu.masked_at_end", "yes")),
    ]
}

/// Interrupts each edu driver raises in `manifests/interrupt-remap-two-msi.manifest`.
const EDU_RAISES_TWO_MSI: u64 = 100;
const TWO_MSI_SOURCES: &[(&str, &str)] =
    &[("irq.msi_edu", "irq.msi_edu.deliveries"), ("irq.msi_edu2", "irq.msi_edu2.deliveries")];

/// Evidence keys `a` and `b` both present, with different values.
fn keys_differ(a: &'static str, b: &'static str) -> Check {
    custom(&format!("{a} != {b}"), move |t| {
        let (x, y) = (ev_str(t, a)?, ev_str(t, b)?);
        if x != y {
            Ok(())
        } else {
            Err(format!("{a} and {b} are both {x}"))
        }
    })
}

/// Two edu functions, each with an MSI driver: each function's entry is its own (distinct
/// handles, each SID the function's requester id), and each delivery is counted for its own
/// source and traced through its own index.
/// LAPICs (and the table's destination format) in `mode`.
fn two_msi_functions(name: &'static str, description: &'static str, mode: &'static str) -> Proof {
    let cpu = if mode == "x2apic" { x2apic_cpu() } else { super::xapic_cpu() };
    let p = user_proof(Proof::new(name, description), "interrupt-remap-two-msi", &["edu-driver"])
        .cpu(cpu)
        .qemu_extra(&["-device", "edu"])
        .with_iommu();
    let mut p = remapping_in(p, mode)
        .check(keys_differ("irq.msi_edu.requester_id", "irq.msi_edu2.requester_id"))
        .check(keys_differ("irq.msi_edu.remap_index", "irq.msi_edu2.remap_index"));
    for (program, key) in [("edu_msi", "msi_edu"), ("edu2_msi", "msi_edu2")] {
        let k = |s: &str| -> &'static str { Box::leak(format!("irq.{key}.{s}").into_boxed_str()) };
        let u =
            |s: &str| -> &'static str { Box::leak(format!("user.{program}.{s}").into_boxed_str()) };
        p = p
            .check(eq(u("raised"), EDU_RAISES_TWO_MSI))
            .check(keys_equal(u("received"), u("raised")))
            .check(eq(k("deliveries"), EDU_RAISES_TWO_MSI))
            .check(eq(k("format"), "remappable"))
            .check(eq(k("irte_svt"), "requester"))
            .check(keys_equal(k("irte_sid"), k("requester_id")))
            .check(eq(k("irte_trigger"), "edge"))
            .check(keys_equal(k("irte_vector"), k("vector")))
            .check(eq(Box::leak(format!("proc.{program}.exit").into_boxed_str()), 0));
    }
    vtd_trace_checks(p, TWO_MSI_SOURCES)
}

/// Scenario `smp`: the RTC through a remappable RTE to APIC ID 257.
fn rtc_to_257() -> Proof {
    let p = machine_257(Proof::new(
        "apic-id-257-remap",
        "the RTC through the IOAPIC and VT-d remapping to the CPU with APIC ID 257",
    ))
    .with_iommu();
    vtd_trace_checks(
        remapping_on(smp_checks(p, 3, "x2apic"))
            .check(eq("smp.max_apic_id", 257))
            .check(eq("ioapic.route_above_254", "remapped"))
            .check(eq("rtc.apic_id", 257))
            .check(eq("rtc.format", "remappable"))
            .check(eq("rtc.irte_destination", 257))
            .check(keys_equal("rtc.irte_vector", "rtc.vector")),
        &[("rtc", "rtc.interrupts")],
    )
}

/// Each source of the interrupt-grant drivers remapped to `apic_id`.
fn every_source_on(p: Proof, apic_id: u64) -> Proof {
    ["msi_edu", "intx_edu", "isa_8"].into_iter().fold(p, |p, key| remapped_source(p, key, apic_id))
}

/// The edu MSI/INTx and RTC drivers on APIC ID 257, plus the fault self-test.
fn drivers_on_257() -> Proof {
    let p = machine_257(user_proof(
        Proof::new("interrupt-remap-257", "edu MSI, edu INTx (level) and RTC drivers on the CPU with APIC ID 257 via VT-d (firmware x2APIC)"),
        "interrupt-remap-257",
        &["edu-driver", "rtc-driver"],
    ))
    .with_iommu()
    .args("iommu_fault_test=edu");
    let p = drivers_delivered(remapping_on(p), EDU_RAISES_257)
        .check(eq("lapic.firmware_state", "x2apic"))
        .check(eq("iommu.fault_test", "recorded"))
        .check(eq("iommu.fault_test.reason", "0x22"))
        .check(keys_equal("iommu.fault_test.index", "iommu.fault_test.expected_index"))
        .check(keys_equal("iommu.fault_test.source_id", "iommu.fault_test.expected_source_id"))
        .check(eq("proc.edu_msi.exit", 0))
        .check(eq("proc.edu_intx.exit", 0))
        .check(eq("proc.rtc.exit", 0));
    vtd_trace_checks(every_source_on(p, 257), USER_SOURCES)
}

/// The interrupt-grant proof on a machine with the IOMMU, LAPICs in `mode` (drivers on CPU 1).
fn drivers_remapped(name: &'static str, description: &'static str, mode: &'static str) -> Proof {
    let cpu = if mode == "x2apic" { x2apic_cpu() } else { super::xapic_cpu() };
    let p = super::interrupt_grant(
        Proof::new(name, description).cpu(cpu).with_iommu(),
        mode,
        super::Gate::Syscall,
    );
    vtd_trace_checks(every_source_on(remapping_in(p, mode), 1), USER_SOURCES)
}

/// The `driver-death` checks (the dying driver exits 7, the successor inherits and takes 50).
fn death_checks(p: Proof) -> Proof {
    p.check(eq("proc.edu_dying.exit", 7))
        .check(eq("user.edu_dying.raised", 1))
        .check(eq("user.edu_successor.inherited", "yes"))
        .check(eq("user.edu_successor.received", 50))
        .check(keys_equal("user.edu_successor.received", "user.edu_successor.raised"))
        .check(eq("proc.edu_successor.exit", 0))
}

/// driver-death with the successor on APIC ID 257: the re-grant re-points the table entry.
fn death_across_cpus() -> Proof {
    let p = machine_257(user_proof(
        Proof::new("driver-death-remap-257", "driver-death across CPUs: the successor on APIC ID 257 gets the source re-pointed through the table"),
        "driver-death-remap-257",
        &["edu-driver"],
    ))
    .with_iommu();
    vtd_trace_checks(death_checks(remapping_on(p)).check(ge("iommu.entries_written", 2)), &[])
        .trace_check("intx(edu) remapped to APIC ID 1, then only to 257 after the re-grant, >= the successor's 50", remap_moved_to_257)
        .check(eq("irq.intx_edu.target_apic_id", 257))
        .check(eq("irq.intx_edu.irte_destination", 257))
        .check(eq("irq.intx_edu.format", "remappable"))
        .check(eq("irq.intx_edu.off_target_cpu", 0))
        .check(keys_equal("irq.intx_edu.on_target_cpu", "irq.intx_edu.deliveries"))
        .check(eq("irq.intx_edu.masked_at_end", "yes"))
}

fn remap_moved_to_257(t: &keel_evidence::Transcript, tr: &Trace) -> Result<(), String> {
    let index = ev_str(t, "irq.intx_edu.remap_index")?;
    let dests: Vec<Option<u64>> = tr
        .matching("vtd_ir_remap", &[("index", &index)])
        .map(|e| e.field("dest").and_then(hex_or_dec))
        .collect();
    let first_257 =
        dests.iter().position(|d| *d == Some(257)).ok_or("no remap of intx(edu) to APIC ID 257")?;
    if let Some(bad) = dests[..first_257].iter().find(|d| **d != Some(1)) {
        return Err(format!("before the re-grant a remap went to {bad:?}, not APIC ID 1"));
    }
    if let Some(bad) = dests[first_257..].iter().find(|d| **d != Some(257)) {
        return Err(format!("after the re-grant a remap went to {bad:?}, not APIC ID 257"));
    }
    let to_257 = (dests.len() - first_257) as u64;
    let received = ev_u64(t, "user.edu_successor.received")?;
    if to_257 >= received {
        Ok(())
    } else {
        Err(format!("{to_257} remaps to 257 for {received} received"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines shaped like QEMU 10's trace of `apic-id-257-remap` (IRTE quadwords swapped in
    /// `vtd_ir_irte_get`, as QEMU prints them).
    fn trace(remaps: &[(u32, u32)], irte_high: u64) -> Trace {
        trace_whole(remaps, irte_high, 0x4ff00)
    }

    /// The same with the entry's bits 127:64 (QEMU's `low`) given too.
    fn trace_whole(remaps: &[(u32, u32)], irte_high: u64, irte_low: u64) -> Trace {
        let mut t = String::from("vtd_reg_ir_root addr 0x192000 size 0x100\nvtd_inv_desc_iec granularity 0x0 index 0x0 mask 0x0\nvtd_ir_enable enable 1\n");
        t += "vtd_inv_desc_iec granularity 0x1 index 0x8 mask 0x0\n";
        for (dest, vector) in remaps {
            t += &format!("vtd_ir_irte_get index 8 low {irte_low:#x} high {irte_high:#x}\n");
            t += &format!(
                "vtd_ir_remap index 8 trigger 0 vector {vector} deliver 0 dest {dest:#x} mode 0\n"
            );
        }
        // `-d int`: the CPU took vector 0x50 as often as `EV` says the kernel counted.
        t += &"Servicing hardware INT=0x50\n".repeat(3);
        Trace::parse(&t)
    }

    const EV: &str = "EV iommu.irt_phys=0x192000 iommu.irt_entries=256 iommu.entries_written=1 iommu.mode=x2apic\n\
                      EV rtc.remap_index=8 rtc.irte_destination=257 rtc.irte_vector=80 rtc.vector=80 rtc.interrupts=3\n\
                      EV rtc.irte_trigger=edge rtc.irte_svt=requester rtc.irte_sid=0xff00\n";

    fn judge(ev: &str, tr: &Trace) -> Vec<String> {
        let p = rtc_to_257();
        crate::trace::judge_trace(&p.trace_checks, &keel_evidence::Transcript::parse(ev), Ok(tr))
    }

    #[test]
    fn remapped_rtc_passes() {
        assert_eq!(judge(EV, &trace(&[(257, 80); 4], 0x101_0050_0001)), Vec::<String>::new());
    }

    #[test]
    fn every_kind_of_lie_fails() {
        let good = 0x101_0050_0001;
        let f = judge(EV, &trace(&[(257, 80), (1, 80), (257, 80)], good));
        assert!(f.iter().any(|f| f.contains("went elsewhere")), "{f:?}");
        let f =
            judge(&EV.replace("rtc.interrupts=3", "rtc.interrupts=4"), &trace(&[(257, 80)], good));
        assert!(
            f.iter().any(|f| f.contains("counted 4 deliveries but QEMU remapped index 8 only 1")),
            "{f:?}"
        );
        let f = judge(EV, &trace(&[(257, 80); 4], 0x1_0050_0001));
        assert!(f.iter().any(|f| f.contains("QEMU read IRTE 8 with destination 1")), "{f:?}");
        let f = judge(
            &EV.replace("entries_written=1", "entries_written=2"),
            &trace(&[(257, 80); 4], good),
        );
        assert!(
            f.iter().any(|f| f.contains("2 IEC invalidations traced for 2 entries written")),
            "{f:?}"
        );
        let f = judge(&EV.replace("0x192000", "0x193000"), &trace(&[(257, 80); 4], good));
        assert!(f.iter().any(|f| f.contains("vtd_reg_ir_root")), "{f:?}");
        let off = Trace::parse("vtd_ir_enable enable 1\nvtd_ir_enable enable 0\n");
        assert!(judge(EV, &off).iter().any(|f| f.contains("vtd_ir_enable")));
        let none = Trace::parse("");
        assert!(judge(EV, &none).iter().any(|f| f.contains("only 0 times")));
        assert!(judge(&EV.replace("rtc.interrupts=3", "rtc.interrupts=0"), &none)
            .iter()
            .any(|f| f.contains("never read IRTE 8")));
        // Two-sided: the remaps bound the kernel's count from below only; a count short of
        // what the CPU took fails against `-d int`.
        let f = judge(
            &EV.replace("rtc.interrupts=3", "rtc.interrupts=1"),
            &trace(&[(257, 80); 4], good),
        );
        assert!(
            f.iter().any(|f| f.contains("the kernel counted 1, CPUs took vector 80 3 times")),
            "{f:?}"
        );
    }

    #[test]
    fn the_whole_entry_is_cross_checked() {
        let good = 0x101_0050_0001;
        let pass =
            |ev: &str, low: u64, high: u64| judge(ev, &trace_whole(&[(257, 80); 4], low, high));
        assert_eq!(pass(EV, good, 0x4ff00), Vec::<String>::new());
        // Source validation switched off in the table QEMU reads, the kernel claims it.
        assert!(pass(EV, good, 0xff00).iter().any(|f| f.contains("svt: \"none\"")), "SVT");
        // Another requester id, a non-zero SQ, a level trigger, another vector.
        assert!(!pass(EV, good, 0x4ff08).is_empty(), "SID");
        assert!(!pass(EV, good, 0x5ff00).is_empty(), "SQ");
        assert!(!pass(EV, good | 1 << 4, 0x4ff00).is_empty(), "trigger");
        assert!(!pass(EV, 0x101_0051_0001, 0x4ff00).is_empty(), "vector");
        // The kernel's own evidence must say the same: none where QEMU read requester.
        let off = EV.replace("rtc.irte_svt=requester", "rtc.irte_svt=none");
        assert!(!pass(&off, good, 0x4ff00).is_empty(), "kernel none, QEMU requester");
        assert_eq!(pass(&off, good, 0xff00), Vec::<String>::new(), "both none");
        // A trace without the entry's high half proves nothing about it.
        let half = Trace::parse(&format!(
            "vtd_ir_enable enable 1\nvtd_ir_irte_get index 8 high {good:#x}\n{}",
            "vtd_ir_remap index 8 trigger 0 vector 80 deliver 0 dest 0x101 mode 0\n".repeat(3)
        ));
        assert!(judge(EV, &half).iter().any(|f| f.contains("no high half")));
    }

    #[test]
    fn xapic_mode_reads_the_destination_from_bits_47_40() {
        let ev = EV
            .replace("iommu.mode=x2apic", "iommu.mode=xapic")
            .replace("irte_destination=257", "irte_destination=1");
        assert_eq!(judge(&ev, &trace(&[(1, 80); 4], 0x100_0050_0001)), Vec::<String>::new());
        assert!(
            !judge(&ev, &trace(&[(1, 80); 4], 0x1_0050_0001)).is_empty(),
            "bits 63:32 = 1 is not an xAPIC destination"
        );
    }

    #[test]
    fn the_re_grant_must_move_every_later_remap_to_257() {
        let ev = keel_evidence::Transcript::parse(
            "EV irq.intx_edu.remap_index=23 user.edu_successor.received=2\n",
        );
        let t = |dests: &[u32]| {
            let lines: String = dests
                .iter()
                .map(|d| {
                    format!(
                        "vtd_ir_remap index 23 trigger 1 vector 82 deliver 0 dest {d:#x} mode 0\n"
                    )
                })
                .collect();
            remap_moved_to_257(&ev, &Trace::parse(&lines))
        };
        assert_eq!(t(&[1, 257, 257]), Ok(()));
        assert!(t(&[1, 257, 1, 257]).unwrap_err().contains("after the re-grant"));
        assert!(t(&[0, 257, 257]).unwrap_err().contains("before the re-grant"));
        assert!(t(&[1, 257]).unwrap_err().contains("1 remaps to 257 for 2 received"));
        assert!(t(&[1, 1]).is_err());
    }
}
