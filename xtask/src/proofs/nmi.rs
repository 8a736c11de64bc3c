//! NMI proofs (`kernel/src/scenarios/nmi.rs`): the paranoid NMI entry inside a `swapgs`
//! window, and the cross-CPU hard-lockup detector.

use super::{x2apic_cpu, xapic_cpu, Accels, Proof};
use crate::checks::{custom, eq, keys_equal};
use crate::qemu::CpuSpec;
use keel_evidence::Transcript;

/// `start <= key < end`, all three read from the transcript.
fn inside(t: &Transcript, key: &str, start: &str, end: &str) -> Result<(), String> {
    let get =
        |k: &str| t.evidence.get(k).and_then(|v| v.as_u64()).ok_or_else(|| format!("{k}: missing"));
    let (v, s, e) = (get(key)?, get(start)?, get(end)?);
    if s < e && (s..e).contains(&v) {
        Ok(())
    } else {
        Err(format!("{key} = {v:#x}, outside [{s:#x}, {e:#x})"))
    }
}

/// CPU 1 waits in ring 0 with the user's GS (0) loaded; an NMI from CPU 0 lands there.
fn nmi_window(p: Proof, cpu: CpuSpec) -> Proof {
    p.scenario("nmi_window")
        .smp(2)
        .cpu(cpu)
        .timeout_secs(60)
        .check(eq("nmi_window.entered", "yes"))
        .check(eq("nmi_window.nmi_sent", "yes"))
        .check(eq("nmi_window.finished", "yes"))
        // Counted on CPU 1's own block, not CPU 0's, and by the paranoid path's swap.
        .check(eq("nmi_window.cpu1_nmis", 1))
        .check(eq("nmi_window.cpu0_nmis", 0))
        .check(eq("nmi_window.paranoid_swaps", 1))
        .check(custom("the NMI interrupted the swapgs window (recorded RIP inside it)", |t| {
            inside(t, "nmi_window.rip", "nmi_window.start", "nmi_window.end")
        }))
        .check(eq("nmi_window.gs_restored", "yes"))
}

/// The second CPU (index 1) of the lockup machine: APIC ID 3, so a report that named the
/// CPU's index instead of its APIC ID (or the watcher's) cannot pass.
const SPINNER_APIC_ID: u64 = 3;

/// The spinner CPU's `-device` in each LAPIC mode.
pub(super) const SPINNER_X2APIC: &str =
    "qemu64-x86_64-cpu,x2apic=on,smep=on,smap=on,rdrand=on,socket-id=0,core-id=3,thread-id=0";
pub(super) const SPINNER_XAPIC: &str =
    "qemu64-x86_64-cpu,x2apic=off,smep=on,smap=on,rdrand=on,socket-id=0,core-id=3,thread-id=0";

/// CPU 1 spins with interrupts off for twice the 1 s bound; CPU 0 reports it. TCG only:
/// under the PVM-backed KVM on a loaded host, the watcher's NMI to the spinning vCPU went
/// unanswered for its 100 ms once, and once the watcher's own ticks were too starved to count
/// the bound, in 3 of about 10 runs; TCG never missed.
pub(super) fn lockup_proof(p: Proof, cpu: CpuSpec, spinner: &'static str) -> Proof {
    p.scenario("lockup")
        .accels(Accels::TcgOnly)
        .smp(2)
        .cpu(cpu)
        .qemu_extra(&["-smp", "1,maxcpus=4,sockets=1,cores=4,threads=1", "-device", spinner])
        .timeout_secs(60)
        .check(eq("lockup.bound_ms", 1000))
        .check(eq("lockup.spinner_apic_id", SPINNER_APIC_ID))
        .check(eq("lockup.spin_finished", "yes"))
        .check(eq("lockup.spinner_pinged_after", "yes"))
        .check(eq("lockup.reports", 1))
        .check(eq("lockup.nmi_unanswered", 0))
        .check(eq("lockup.watcher", 0))
        .check(keys_equal("lockup.cpu", "lockup.spinner"))
        .check(keys_equal("lockup.apic_id", "lockup.spinner_apic_id"))
        .check(custom("the reported RIP lies inside the spinning function", |t| {
            inside(t, "lockup.rip", "lockup.spin_start", "lockup.spin_end")
        }))
}

pub(super) fn registry() -> Vec<Proof> {
    vec![
        nmi_window(Proof::new("nmi-window", "an NMI in the swapgs window (ring 0, user GS) counts on its own CPU through the paranoid entry (x2APIC)"), x2apic_cpu()),
        nmi_window(Proof::new("nmi-window-xapic", "the same in xAPIC mode"), xapic_cpu()),
        // The periodic tick's watch; `lockup-tickless*` prove the default (tickless.rs).
        lockup_proof(Proof::new("lockup", "a CPU (APIC ID 3) spinning with interrupts off past the bound is reported by its watcher: APIC ID, RIP from an NMI (x2APIC, timer=periodic)").args("timer=periodic"), x2apic_cpu(), SPINNER_X2APIC),
        lockup_proof(Proof::new("lockup-xapic", "the same in xAPIC mode").args("timer=periodic"), xapic_cpu(), SPINNER_XAPIC),
    ]
}
