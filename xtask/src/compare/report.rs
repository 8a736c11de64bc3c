//! `target/compare/report.md` and `report.json`.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::runs::{accel_label, Runs};
use super::{Figure, Options, Side, Target};
use crate::qemu::{shell_quote, Accel};
use crate::runner::Outcome;

pub struct Context<'a> {
    pub runs: Runs<'a>,
    pub opts: &'a Options,
    pub targets: &'a [Target],
}

/// Two decimals, or three significant digits below 0.1 (a ratio is never shown as 0.00).
fn ratio_cell(r: Option<f64>) -> String {
    match r {
        None => "—".into(),
        Some(r) if r > 0.0 && r < 0.1 => format!("{r:.2e}"),
        Some(r) => format!("{r:.2}"),
    }
}

fn met_cell(t: &Target) -> &'static str {
    match t.met() {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "no figure",
    }
}

/// The targets for the terminal: each round's ratio, the median, met or not.
pub fn targets_table(targets: &[Target]) -> String {
    let mut s = String::new();
    for t in targets {
        let rounds: Vec<String> = t.rounds.iter().map(|r| ratio_cell(*r)).collect();
        let _ = writeln!(
            s,
            "target {:<72} <= {:.2}: rounds {} median {} ({})",
            t.what,
            t.limit,
            rounds.join(" "),
            ratio_cell(t.median()),
            met_cell(t)
        );
    }
    s
}

/// APIC mode of each run, from the guest's own output: Linux's kernel log, Keel's evidence
/// (`bench.apic_base_mode` is IA32_APIC_BASE read back; `lapic.mode` the mode it chose).
fn apic_modes(cx: &Context<'_>) -> String {
    let mut s = String::new();
    for r in cx.runs.linux {
        let mode = r.guest.apic_mode.unwrap_or(if r.guest.done {
            super::parse::NO_X2APIC_MESSAGE
        } else {
            "unknown (run did not finish)"
        });
        let _ = writeln!(s, "* Linux `{}` ({}): {mode}", r.label, accel_label(r.accel));
    }
    for r in cx.runs.keel {
        let Outcome::Ran { transcript, .. } = &r.outcome else { continue };
        let ev = |k: &str| transcript.evidence.get(k).map(|v| v.to_string());
        let chosen = ev("lapic.mode").unwrap_or_else(|| "?".into());
        let msr = ev("bench.apic_base_mode")
            .map_or_else(String::new, |m| format!(", IA32_APIC_BASE says {m}"));
        let remap = ev("iommu.remapping")
            .map_or_else(String::new, |m| format!(", interrupt remapping {m}"));
        let _ = writeln!(s, "* Keel `{}` ({}): {chosen}{msr}{remap}", r.name, accel_label(r.accel));
    }
    s
}

fn cell(v: Option<u64>) -> String {
    v.map_or_else(|| "—".into(), |v| v.to_string())
}

fn side_cells(s: &Side) -> (String, String) {
    if s.missing.is_some() {
        return ("—".into(), "—".into());
    }
    (cell(s.median), cell(s.p99))
}

/// Plain-text table for the terminal.
pub fn table(figs: &[Figure]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<18} {:<12} {:<4} {:>6} {:>12} {:>12} {:>12} {:>12} {:>9}",
        "METRIC",
        "CONFIG",
        "ACC",
        "UNIT",
        "KEEL med",
        "KEEL p99",
        "LINUX med",
        "LINUX p99",
        "KEEL/LNX"
    );
    for f in figs {
        let (km, kp) = side_cells(&f.keel);
        let (lm, lp) = side_cells(&f.linux);
        let r = f.ratio().map_or_else(|| "—".into(), |r| format!("{r:.2}"));
        let _ = writeln!(
            s,
            "{:<18} {:<12} {:<4} {:>6} {km:>12} {kp:>12} {lm:>12} {lp:>12} {r:>9}",
            f.metric,
            f.config(),
            f.accel.name(),
            f.unit
        );
    }
    s
}

pub const FIGURE_NOTES: &[(&str, &str)] = &[
    (
        "ipi_round_trip_busy",
        "Keel: kernel-mode IPI ping CPU 0 -> CPU 1 -> CPU 0 (send fixed IPI, the target's handler acknowledges through memory, sender polls) while CPU 1 spins in a loop with \
         interrupts on, as Linux's target runs a user thread; bench.ipi_rtt.busy.*, 10,000 trips after 200 warm-up trips. \
         Linux: membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) from a thread pinned to CPU 0 while a sibling thread spins in user mode on CPU 1: \
         includes the syscall entry/exit, an smp_call_function IPI to CPU 1, the remote handler and the wait for its completion; 10,000 samples after 200 warm-up.",
    ),
    (
        "ipi_wake_idle",
        "Keel: the same ping with CPU 1 halted in its idle loop (each trip 100 us after the previous one), bench.ipi_rtt.idle.*: the cost of waking a halted CPU. \
         Linux: no counterpart (membarrier skips CPUs not running the process).",
    ),
    (
        "unmap_one_page",
        "Linux: munmap() of one freshly mmapped and touched 4 KiB page by a thread on CPU 0 while sibling threads of the same process spin in user mode on every other CPU \
         (the TLB shootdown IPIs go to all of them). \
         Keel: bench.unmap.<n>cpu.* from the bench scenario on the same VM: kernel-mode unmap of one user page (page-table update), its shootdown and the frame's release, \
         with n = N - 1 other CPUs holding the address space loaded (spinning in ring 0 with interrupts on), as on the Linux side; no system call, 2,000 samples.",
    ),
    (
        "irq_to_wake_intx",
        "Both: TSC at the driver's write of edu register 0x60 (raise) to TSC after the driver's wait returns, in user space. \
         Keel: edu-driver on CPU 1 over INTx via Interrupt.wait, the line routed to CPU 1 (interrupt-grant proofs, 1,000 samples, no warm-up discard). \
         Linux: uio_pci_generic (INTx), read() on /dev/uio0, kbench pinned to CPU 1 and the IRQ's affinity set to CPU 1 (/proc/irq/N/smp_affinity_list); \
         between samples the driver clears edu status (0x64) and re-enables INTx through the PCI command register in sysfs config (not timed); 1,000 samples after 200 warm-up.",
    ),
    (
        "irq_to_wake_intx_remote",
        "As irq_to_wake_intx with the interrupt on the other CPU: the driver on CPU 1 is woken by an IPI from CPU 0. \
         Keel: interrupt-grant-remote (irq_target=boot). Linux: the IRQ's affinity set to CPU 0, kbench on CPU 1.",
    ),
    (
        "irq_to_wake_msi",
        "Keel: edu-driver over MSI via Interrupt.wait (bench-ring: 1,000 samples, x2APIC; interrupt-grant: 1,000 samples, xAPIC). Linux: not measured (UIO has no MSI).",
    ),
    (
        "all_cpus_online",
        "Microseconds of AP bring-up, a single boot each, in guest time. Keel: smp.all_online_us (TSC from the first AP's start to the last AP online). \
         Linux: printk timestamps from 'smp: Bringing up secondary CPUs' to 'smp: Brought up N nodes, M CPUs'. `bench-compare --bringup` compares this at 8 to 1,024 vCPUs.",
    ),
];

pub fn markdown(figs: &[Figure], cx: &Context<'_>, plots: &[PathBuf]) -> String {
    let mut s = String::new();
    let h = cx.runs.host;
    let _ = writeln!(s, "# Keel vs Linux: bench-compare report\n");
    let _ = writeln!(s, "* Date: {}", h.date);
    let _ = writeln!(s, "* Host: {} ({} CPUs), host kernel {}", h.cpu, h.nproc, h.kernel);
    let _ = writeln!(
        s,
        "* Linux guest: {} with {} and kbench (bench/linux/kbench.c, gcc -O2 -static)",
        cx.runs.guest.kernel_package, cx.runs.guest.busybox_package
    );
    let accels: Vec<&str> = {
        let mut a: Vec<Accel> = figs.iter().map(|f| f.accel).collect();
        a.dedup();
        a.into_iter().map(accel_label).collect()
    };
    let _ = writeln!(s, "* Accelerators: {}. TCG figures are emulation: they show relative costs inside QEMU's emulator, not hardware latencies.", accels.join(", "));
    if cx.opts.quick {
        let _ = writeln!(s, "* QUICK run (--quick): reduced sample counts.");
    }
    let _ = writeln!(s, "* Units: TSC cycles (both guests read the same virtual TSC) or microseconds (boot). Ratio = Keel median / Linux median (< 1: Keel faster).\n");
    let _ = writeln!(s, "| metric | config | accel | unit | Keel median | Keel p99 | Linux median | Linux p99 | Keel/Linux |");
    let _ = writeln!(s, "|---|---|---|---|---:|---:|---:|---:|---:|");
    let mut reasons: Vec<String> = Vec::new();
    let mut mark = |side: &Side| -> String {
        match &side.missing {
            Some(why) => {
                let i = reasons.iter().position(|r| r == why).unwrap_or_else(|| {
                    reasons.push(why.clone());
                    reasons.len() - 1
                });
                format!(" [{}]", i + 1)
            }
            None => String::new(),
        }
    };
    for f in figs {
        let (km, kp) = side_cells(&f.keel);
        let (lm, lp) = side_cells(&f.linux);
        let (kr, lr) = (mark(&f.keel), mark(&f.linux));
        let r = f.ratio().map_or_else(|| "—".into(), |r| format!("{r:.2}"));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {km}{kr} | {kp} | {lm}{lr} | {lp} | {r} |",
            f.metric,
            f.config(),
            accel_label(f.accel),
            f.unit
        );
    }
    let _ = writeln!(s, "\nMissing figures (\"—\"):\n");
    for (i, r) in reasons.iter().enumerate() {
        let _ = writeln!(s, "{}. {r}", i + 1);
    }
    if figs.iter().any(|f| f.round_ratios.len() > 1) {
        let _ = writeln!(s, "\n## Rounds\n\nKeel/Linux ratio in each round (Linux and Keel measured back to back):\n");
        for f in figs.iter().filter(|f| f.round_ratios.len() > 1) {
            let r: Vec<String> = f.round_ratios.iter().map(|r| format!("{r:.2}")).collect();
            let _ = writeln!(
                s,
                "* {} {} {}: {}",
                f.metric,
                f.config(),
                accel_label(f.accel),
                r.join(", ")
            );
        }
    }
    if !cx.targets.is_empty() {
        let _ = writeln!(s, "\n## Targets\n\nRatios measured in each round (TCG); a target is met when the median over the rounds is at most its limit.\n");
        let _ = writeln!(s, "| target | limit | each round | median | |\n|---|---:|---|---:|---|");
        for t in cx.targets {
            let rounds: Vec<String> = t.rounds.iter().map(|r| ratio_cell(*r)).collect();
            let _ = writeln!(
                s,
                "| {} | {:.2} | {} | {} | {} |",
                t.what,
                t.limit,
                rounds.join(", "),
                ratio_cell(t.median()),
                met_cell(t)
            );
        }
    }
    let _ = writeln!(
        s,
        "\n## APIC mode of each guest\n\nAs each guest reported it (first round):\n\n{}",
        apic_modes(cx)
    );
    let _ = writeln!(s, "\n## What each figure includes\n");
    for (m, n) in FIGURE_NOTES {
        let _ = writeln!(s, "* **{m}**: {n}");
    }
    let _ = writeln!(s, "\nSame VM on both sides: each Linux run uses the MachineSpec of the Keel proof it is compared with (machine, -cpu model and flags, -smp, -m, devices, accelerator); \
        configurations Keel has no proof for (munmap at 4/8 CPUs, boot at 8/64) take the bench proof's machine with only -smp changed. Medians are quoted; p99 shows the noise. \
        The host has {} CPUs: with more vCPUs than host CPUs under TCG, vCPU threads are time-sliced by the host and tail latencies grow accordingly.", h.nproc);
    cx.runs.notes_markdown(&mut s);
    if !plots.is_empty() {
        let _ = writeln!(s, "\n## Plots\n\nLatency distributions (x: cycles, log scale; y: share of samples). Red bars: Linux samples; \
            vertical lines: Linux median/p99 (dark red, thick/thin), Keel median/p99 (blue, thick/thin; Keel's evidence carries summaries only).\n");
        for p in plots {
            let name = p.file_name().unwrap().to_string_lossy();
            let _ = writeln!(s, "* [{name}](plots/{name})");
        }
    }
    cx.runs.command_lines_markdown(&mut s);
    s
}

fn js(s: &str) -> String {
    crate::report::json_str(s)
}

fn jn(v: Option<u64>) -> String {
    v.map_or_else(|| "null".into(), |v| v.to_string())
}

fn side_json(s: &Side) -> String {
    let samples: Vec<String> = s.samples.iter().map(u64::to_string).collect();
    format!(
        "{{\"median\": {}, \"p99\": {}, \"n\": {}, \"source\": {}, \"missing\": {}, \"samples\": [{}]}}",
        jn(s.median),
        jn(s.p99),
        jn(s.n),
        js(&s.source),
        s.missing.as_deref().map_or_else(|| "null".into(), js),
        samples.join(",")
    )
}

pub fn json(figs: &[Figure], cx: &Context<'_>) -> String {
    let h = cx.runs.host;
    let mut s = format!(
        "{{\n  \"date\": {},\n  \"host\": {{\"kernel\": {}, \"cpu\": {}, \"nproc\": {}}},\n  \"linux_guest\": {{\"kernel\": {}, \"busybox\": {}}},\n  \"quick\": {},\n  \"figures\": [",
        js(&h.date),
        js(&h.kernel),
        js(&h.cpu),
        h.nproc,
        js(&cx.runs.guest.kernel_package),
        js(&cx.runs.guest.busybox_package),
        cx.opts.quick
    );
    for (i, f) in figs.iter().enumerate() {
        let ratio = f.ratio().map_or_else(|| "null".into(), |r| format!("{r:.4}"));
        let _ = write!(
            s,
            "{}\n    {{\"metric\": {}, \"unit\": {}, \"mode\": {}, \"smp\": {}, \"accel\": {}, \"emulation\": {}, \"ratio_keel_over_linux\": {ratio}, \"round_ratios\": [{}],\n     \"keel\": {},\n     \"linux\": {}}}",
            if i == 0 { "" } else { "," },
            js(f.metric),
            js(f.unit),
            js(f.mode),
            f.smp,
            js(f.accel.name()),
            f.accel == Accel::Tcg,
            f.round_ratios.iter().map(|r| format!("{r:.4}")).collect::<Vec<_>>().join(", "),
            side_json(&f.keel),
            side_json(&f.linux)
        );
    }
    s.push_str("\n  ],\n  \"linux_runs\": [");
    for (i, r) in cx.runs.linux.iter().enumerate() {
        let (secs, status) =
            r.output.as_ref().map_or((0.0, None), |o| (o.elapsed.as_secs_f64(), o.status));
        let _ = write!(
            s,
            "{}\n    {{\"label\": {}, \"mode\": {}, \"accel\": {}, \"seconds\": {secs:.3}, \"status\": {}, \"completed\": {}, \"failure\": {}, \"qemu\": {}}}",
            if i == 0 { "" } else { "," },
            js(&r.label),
            js(r.mode),
            js(r.accel.name()),
            status.map_or_else(|| "null".into(), |v| v.to_string()),
            r.guest.done,
            r.failure.as_deref().map_or_else(|| "null".into(), js),
            js(&format!("qemu-system-x86_64 {}", shell_quote(&r.args)))
        );
    }
    s.push_str("\n  ],\n  \"keel_runs\": [");
    for (i, r) in cx.runs.keel.iter().enumerate() {
        let verdict = match &r.outcome {
            Outcome::Skipped(_) => "skipped",
            _ if r.passed() => "passed",
            _ => "failed",
        };
        let _ = write!(
            s,
            "{}\n    {{\"proof\": {}, \"accel\": {}, \"seconds\": {:.3}, \"verdict\": {}, \"detail\": {}, \"qemu\": {}}}",
            if i == 0 { "" } else { "," },
            js(r.name),
            js(r.accel.name()),
            r.secs().unwrap_or(0.0),
            js(verdict),
            js(&crate::report::verdict_cell(r)),
            js(&format!("qemu-system-x86_64 {}", shell_quote(&r.args)))
        );
    }
    s.push_str("\n  ],\n  \"notes\": [");
    s.push_str(&cx.runs.notes.iter().map(|n| js(n)).collect::<Vec<_>>().join(", "));
    s.push_str("]\n}\n");
    s
}
