//! `cargo xtask bench-compare`: Keel's in-guest benchmarks next to the same measurements on
//! a Debian Linux guest, in the same QEMU configurations. Method: `docs/benchmarks.md`.
//!
//! Keel's side reuses the proof runner (`runner::run_all`) on the `.bench()` proofs, the
//! `interrupt-grant*` proofs (INTx wake) and bench-scenario variants at 8/64 vCPUs.
//! Linux's side boots `bench/linux/init` + `kbench` on the Keel proof's own `MachineSpec`.

mod bringup;
mod bringup_console;
mod bringup_report;
mod cpio;
mod figures;
pub use figures::Target;
use figures::{figures, targets};
mod linux;
mod nvme;
mod parse;
mod plot;
mod report;
mod rounds;
mod runs;
mod timer;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use crate::proofs::{self, Proof};
use crate::qemu::{self, Accel, AccelEnv, BootSpec, MachineSpec};
use crate::runner::{self, Env, JobResult, Mode, Outcome, ProcessOutput};
use crate::{bootstrap, builder};
pub use bringup::parse_cpus;
pub use parse::GuestOutput;
use rounds::{merge_rounds, merge_targets};

/// Options of `cargo xtask bench-compare`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Skip the 64-vCPU boots (slow under TCG).
    pub no_64: bool,
    /// Only the 2-vCPU machines: no 4/8/64-vCPU runs on either side.
    pub no_scale: bool,
    /// Fewer samples (smoke run); figures are then marked as such.
    pub quick: bool,
    /// Only the device interrupt -> driver wake figures (edu guests, interrupt-grant proofs).
    pub wake_only: bool,
    /// `--timer`: only the timer figures (`timer.rs`): interrupts/s idle and busy at 8 and
    /// 64 vCPUs, sleep wake-up lateness; TCG only.
    pub timer: bool,
    /// Alternating Linux/Keel rounds (0 or 1: one); each figure is the median of the rounds,
    /// so slow drifts of the host's load hit both sides alike.
    pub rounds: u32,
    /// `--bringup`: only the AP bring-up comparison (`bringup.rs`) at `cpus` vCPUs.
    pub bringup: bool,
    /// `--cpus 8,64,288`: the bring-up points (empty: [`bringup::DEFAULT_CPUS`]).
    pub cpus: Vec<u32>,
    /// `--linux-console`: Linux logs to the console and is stopped at `smp: Brought up`.
    pub linux_console: bool,
    /// `--nvme`: only the NVMe random-read figures (`nvme.rs`), at `cpus` vCPUs.
    pub nvme_only: bool,
    /// `--linux-lpj N`: `lpj=N` on Linux's command line, so its APs skip the delay-loop
    /// calibration (under TCG that calibration fails and falls back to the slow loop on
    /// every AP).
    pub linux_lpj: Option<u64>,
}

impl Options {
    fn rounds(&self) -> u32 {
        self.rounds.max(1)
    }
}

/// The two interrupt-controller configurations, as in the Keel proofs.
pub const MODES: [&str; 2] = ["xapic", "x2apic"];

/// Keel proofs on the x2APIC machine. Here they get an IOMMU with interrupt remapping in
/// x2APIC mode (EIM), on both sides: without remapping Linux keeps the xAPIC interface under
/// TCG ("x2apic: IRQ remapping doesn't support X2APIC mode"), so only this machine has both
/// guests in x2APIC mode. A kernel that does not program the IOMMU gets its interrupts
/// passed through unchanged. TCG only: under KVM, remapping needs a split irqchip.
const X2APIC_MACHINE_PROOFS: [&str; 3] = ["bench-x2apic", "interrupt-grant-x2apic", "bench-ring"];
const X2APIC_IOMMU: [&str; 2] = ["-device", "intel-iommu,intremap=on,eim=on"];

/// One side of a figure: a summary, optionally the raw samples, or why there is none.
#[derive(Clone, Debug, Default)]
pub struct Side {
    pub median: Option<u64>,
    pub p99: Option<u64>,
    pub n: Option<u64>,
    pub samples: Vec<u64>,
    /// Where the number comes from (proof/evidence key, or guest run/metric).
    pub source: String,
    /// Why the figure is missing (shown as "—" plus this reason).
    pub missing: Option<String>,
}

impl Side {
    fn missing(why: impl Into<String>) -> Side {
        Side { missing: Some(why.into()), ..Side::default() }
    }
}

/// One row of the report.
#[derive(Clone, Debug)]
pub struct Figure {
    pub metric: &'static str,
    pub unit: &'static str,
    pub mode: &'static str,
    pub smp: u32,
    pub accel: Accel,
    pub keel: Side,
    pub linux: Side,
    /// Keel/Linux ratio of each round where both sides have a figure (`--rounds`).
    pub round_ratios: Vec<f64>,
}

impl Figure {
    pub fn config(&self) -> String {
        format!("{} smp{}", self.mode, self.smp)
    }
    pub fn ratio(&self) -> Option<f64> {
        match (self.keel.median, self.linux.median) {
            (Some(k), Some(l)) if l > 0 => Some(k as f64 / l as f64),
            _ => None,
        }
    }
    pub fn slug(&self) -> String {
        format!("{}-{}-smp{}-{}", self.metric, self.mode, self.smp, self.accel)
    }
}

/// One Linux guest boot.
#[derive(Clone, Debug)]
pub struct LinuxRun {
    pub label: String,
    pub mode: &'static str,
    pub accel: Accel,
    pub machine: MachineSpec,
    /// `kbench=` list for the init script.
    pub benches: &'static str,
    /// Kernel options after the `kbench=` list.
    pub extra_cmdline: String,
    pub timeout: Duration,
    pub args: Vec<String>,
    pub output: Option<ProcessOutput>,
    pub guest: GuestOutput,
    /// Why the run produced nothing usable.
    pub failure: Option<String>,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".into(),
        |l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}

fn qemu_bin() -> PathBuf {
    std::env::var_os("KEEL_QEMU")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(qemu::QEMU_BIN), PathBuf::from)
}

/// A registry proof as bench-compare runs it (the x2APIC machine with its IOMMU).
fn find(name: &str) -> Option<Proof> {
    let p = proofs::registry().into_iter().find(|p| p.name == name)?;
    Some(if X2APIC_MACHINE_PROOFS.contains(&name) {
        p.qemu_extra(&X2APIC_IOMMU).accels(proofs::Accels::TcgOnly)
    } else {
        p
    })
}

/// Keel proofs to run: the bench proofs, the INTx wake proofs, bench variants at 4/8/64 vCPUs
/// (shootdowns with every other CPU resident, as Linux's munmap there; boot time).
fn keel_proofs(opts: &Options) -> (Vec<Proof>, Vec<String>) {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    let wake =
        ["bench-ring", "interrupt-grant", "interrupt-grant-x2apic", "interrupt-grant-remote"];
    let bench = if opts.wake_only { &[][..] } else { &["bench-xapic", "bench-x2apic"][..] };
    for &name in bench.iter().chain(&wake) {
        match find(name) {
            Some(p) => out.push(p),
            None => notes.push(format!("Keel proof {name} is not in the registry")),
        }
    }
    if opts.wake_only || opts.no_scale {
        return (out, notes);
    }
    for mode in MODES {
        let Some(base) = find(&format!("bench-{mode}")) else { continue };
        for smp in [4u32, 8, 64] {
            if smp == 64 && opts.no_64 {
                continue;
            }
            let name: &'static str = Box::leak(format!("bench-{mode}-smp{smp}").into_boxed_str());
            let mut p = base.clone().args("trips=1000").smp(smp).timeout_secs(300);
            p.name = name;
            // Boot time and the unmap with every other CPU resident are the figures here; the
            // base proof's checks (>= 10,000 IPI samples) do not apply to `trips=1000`.
            p.checks.clear();
            out.push(p);
        }
    }
    (out, notes)
}

fn keel_result<'a>(results: &'a [JobResult], name: &str, accel: Accel) -> Option<&'a JobResult> {
    results.iter().find(|r| r.name == name && r.accel == accel)
}

/// A Keel figure from one proof's evidence.
fn keel_side(
    results: &[JobResult],
    name: &str,
    accel: Accel,
    median: &str,
    p99: Option<&str>,
    n: Option<&str>,
) -> Side {
    let Some(r) = keel_result(results, name, accel) else {
        let why = match find(name).map(|p| p.effective_accels()) {
            Some(proofs::Accels::TcgOnly) if accel == Accel::Kvm => {
                format!("{name} is TCG-only")
            }
            _ => format!("{name} did not run under {accel}"),
        };
        return Side::missing(why);
    };
    match &r.outcome {
        Outcome::Skipped(why) => Side::missing(format!("{name}/{accel} skipped: {why}")),
        Outcome::Error(e) => Side::missing(format!("{name}/{accel} could not run: {e}")),
        Outcome::Ran { transcript, failures, output } => {
            let ev = &transcript.evidence;
            let get = |k: &str| ev.get(k).and_then(|v| v.as_u64());
            let Some(m) = get(median) else {
                let why = if let Some(t) = output.timed_out {
                    format!(
                        "{name}/{accel} timed out after {}s before printing {median}",
                        t.as_secs()
                    )
                } else {
                    format!("{name}/{accel} printed no {median}")
                };
                return Side::missing(why);
            };
            let mut source = format!("{name}/{accel}: {median}");
            if !failures.is_empty() {
                source.push_str(&format!(" (run FAILED: {})", failures[0]));
            }
            Side {
                median: Some(m),
                p99: p99.and_then(get),
                n: n.and_then(get),
                samples: vec![],
                source,
                missing: None,
            }
        }
    }
}

/// Linux guest runs for one accelerator.
fn linux_runs(accel: Accel, opts: &Options) -> Vec<LinuxRun> {
    if opts.timer {
        return timer::linux_runs(accel, opts);
    }
    let mut runs = Vec::new();
    let mk = |label: String, mode, machine: MachineSpec, benches, secs| LinuxRun {
        label,
        mode,
        accel,
        machine,
        benches,
        extra_cmdline: String::new(),
        timeout: Duration::from_secs(secs),
        args: vec![],
        output: None,
        guest: GuestOutput::default(),
        failure: None,
    };
    for mode in MODES {
        let Some(bench) = find(&format!("bench-{mode}")) else { continue };
        let uio = if mode == "xapic" { "interrupt-grant" } else { "interrupt-grant-x2apic" };
        if let Some(u) = find(uio) {
            runs.push(mk(format!("{mode}-smp2-edu"), mode, u.machine.clone(), "uio", 300));
        }
        if opts.wake_only {
            continue;
        }
        runs.push(mk(format!("{mode}-smp2"), mode, bench.machine.clone(), "ipi,munmap,boot", 300));
        if opts.no_scale {
            continue;
        }
        for smp in [4u32, 8, 64] {
            if smp == 64 && opts.no_64 {
                continue;
            }
            let m = MachineSpec { smp, ..bench.machine.clone() };
            let benches = if smp == 64 { "boot" } else { "munmap,boot" };
            runs.push(mk(
                format!("{mode}-smp{smp}"),
                mode,
                m,
                benches,
                if smp == 64 { 300 } else { 400 },
            ));
        }
    }
    runs
}

fn run_linux(run: &mut LinuxRun, guest: &linux::Guest, log_dir: &Path, opts: &Options) {
    let mut cmdline = format!("console=ttyS0 quiet panic=-1 kbench={}", run.benches);
    if opts.quick {
        cmdline.push_str(" kbench_n=1000 kbench_uio_n=200 kbench_munmap_n=300");
    }
    if !run.extra_cmdline.is_empty() {
        cmdline = format!("{cmdline} {}", run.extra_cmdline);
    }

    let modules = [guest.initramfs.clone()];
    run.args = qemu::command_args(
        &run.machine,
        run.accel,
        &BootSpec { kernel: &guest.vmlinuz, cmdline: &cmdline, modules: &modules },
        &[],
    );
    println!("xtask: linux {} ({}) ...", run.label, run.accel);
    match runner::run_process(qemu_bin().as_os_str(), &run.args, Some(run.timeout), Mode::Captured)
    {
        Ok(out) => {
            let base = log_dir.join(format!("linux-{}-{}", run.label, run.accel));
            let _ = std::fs::create_dir_all(log_dir);
            let _ = std::fs::write(base.with_extension("log"), &out.stdout);
            let _ = std::fs::write(
                base.with_extension("cmd"),
                format!("qemu-system-x86_64 {}\n", qemu::shell_quote(&run.args)),
            );
            if !out.stderr.is_empty() {
                let _ = std::fs::write(base.with_extension("stderr"), &out.stderr);
            }
            run.guest = GuestOutput::parse(&out.stdout);
            if let (false, Some(p)) = (run.guest.done, &run.guest.panic) {
                run.failure = Some(format!("guest kernel panic: {p} (-m {})", run.machine.memory));
            } else if !run.guest.done {
                run.failure = Some(match out.timed_out {
                    Some(t) if out.stdout.trim().is_empty() => {
                        format!("no console output within {}s (guest hung)", t.as_secs())
                    }
                    Some(t) => {
                        format!("timed out after {}s before the benchmarks finished", t.as_secs())
                    }
                    None => format!(
                        "guest stopped (status {:?}) before the benchmarks finished",
                        out.status
                    ),
                });
            }
            println!(
                "xtask: linux {} ({}) {} in {:.1}s",
                run.label,
                run.accel,
                run.failure.as_deref().unwrap_or("done"),
                out.elapsed.as_secs_f64()
            );
            run.output = Some(out);
        }
        Err(e) => run.failure = Some(format!("{e:#}")),
    }
}

/// A Linux figure from one guest run.
fn linux_side(
    runs: &[LinuxRun],
    label: &str,
    accel: Accel,
    metric: &str,
    kvm_skip: Option<&str>,
) -> Side {
    if let (Accel::Kvm, Some(why)) = (accel, kvm_skip) {
        return Side::missing(why.to_string());
    }
    let Some(r) = runs.iter().find(|r| r.label == label && r.accel == accel) else {
        return Side::missing(format!("no Linux run {label} under {accel}"));
    };
    if metric == "boot" {
        return match r.guest.bringup_us() {
            Some(us) => Side {
                median: Some(us),
                n: Some(1),
                source: format!(
                    "linux {label}/{accel}: dmesg 'smp: Bringing up' to 'smp: Brought up'"
                ),
                ..Side::default()
            },
            None => Side::missing(format!(
                "linux {label}/{accel}: {}",
                r.failure.as_deref().unwrap_or("no 'smp: Bringing up'/'smp: Brought up' lines")
            )),
        };
    }
    let g = &r.guest;
    match g.u64(&format!("{metric}.median_cycles")) {
        Some(m) => Side {
            median: Some(m),
            // The guest's own p99; recomputed from the samples if the line got mangled.
            p99: g
                .u64(&format!("{metric}.p99_cycles"))
                .or_else(|| g.samples.get(metric).and_then(|v| parse::percentiles(v)).map(|p| p.1)),
            n: g.u64(&format!("{metric}.samples")),
            samples: g.samples.get(metric).cloned().unwrap_or_default(),
            source: format!("linux {label}/{accel}: kbench {metric}"),
            missing: None,
        },
        None => {
            let err = g
                .results
                .iter()
                .find(|(k, _)| k.ends_with("error"))
                .map(|(k, v)| format!("{k}={v}"));
            Side::missing(format!(
                "linux {label}/{accel}: {}",
                err.or(r.failure.clone()).unwrap_or_else(|| format!("no {metric} result"))
            ))
        }
    }
}

const NO_LINUX_IDLE_IPI: &str = "no Linux counterpart: membarrier interrupts only CPUs running the process's threads and skips an idle one; \
    this row is Keel's cost of waking a halted CPU by IPI, shown beside the busy round trip";
const NO_LINUX_MSI: &str =
    "uio_pci_generic is INTx-only; Linux MSI to user space needs VFIO (not measured)";

/// Keel's `bench.unmap.<n>cpu.*` with n = N - 1 other CPUs resident (the kernel measures
/// 1, 2, 4, ... and all others) from the Keel run on the same VM as Linux's smp-N run, whose
/// threads occupy all N CPUs.
fn keel_shootdown(results: &[JobResult], mode: &str, smp: u32, accel: Accel) -> Side {
    let name = if smp == 2 { format!("bench-{mode}") } else { format!("bench-{mode}-smp{smp}") };
    let others = smp - 1;
    let key = format!("bench.unmap.{others}cpu.median_cycles");
    keel_side(
        results,
        &name,
        accel,
        &key,
        Some(&format!("bench.unmap.{others}cpu.p99_cycles")),
        None,
    )
}

pub fn run(opts: Options) -> Result<ExitCode> {
    if opts.bringup {
        return bringup::run(&opts);
    }
    bootstrap::ensure_qemu()?;
    let root = builder::workspace_root();
    let dir = root.join("target/compare");
    std::fs::create_dir_all(&dir)?;
    let host = crate::report::HostInfo::detect();
    let accel_env = AccelEnv::detect()?;

    println!("xtask: bench-compare: preparing the Linux guest (Debian packages via apt)");
    let guest = linux::prepare(&root, &dir)?;
    println!(
        "xtask: guest kernel {}, {}; initramfs {}",
        guest.kernel_package,
        guest.busybox_package,
        guest.initramfs.display()
    );

    let mut notes = Vec::new();
    let load_start = loadavg();
    let (kproofs, keel_notes) = if opts.timer {
        timer::keel_proofs(&opts)
    } else if opts.nvme_only {
        nvme::keel_proofs(&opts)
    } else {
        keel_proofs(&opts)
    };
    if opts.timer {
        notes.extend(timer::notes());
    }
    notes.extend(keel_notes);
    let plan = proofs::plan(&kproofs, &accel_env);
    let artifacts = builder::build_all(
        kproofs.iter().any(|p| !p.programs.is_empty()),
        &[builder::Image::Scenarios],
    )?;
    let env = Env {
        qemu: qemu_bin(),
        kernel: artifacts.kernel,
        plain_kernel: artifacts.plain_kernel,
        example_kernel: artifacts.example_kernel,
        user_dir: artifacts.user_dir,
        log_dir: dir.join("keel"),
        root: root.clone(),
    };
    let log_dir = dir.join("linux");
    let mut accels = vec![Accel::Tcg];
    let mut kvm_skip = None;
    let mut kvm_linux_runs = false;
    let mut rounds = Vec::new();
    let mut target_rounds = Vec::new();
    let mut first_round: Option<(Vec<LinuxRun>, Vec<JobResult>)> = None;
    let mut all_ok = true;
    for round in 1..=opts.rounds() {
        if opts.rounds() > 1 {
            println!("\nxtask: bench-compare round {round}/{}", opts.rounds());
        }
        // Linux under TCG, then KVM: one probe in the first round, the full set only if it boots.
        let mut linux = if opts.nvme_only {
            nvme::linux_runs(&opts, &log_dir)?
        } else {
            linux_runs(Accel::Tcg, &opts)
        };
        for r in &mut linux {
            run_linux(r, &guest, &log_dir, &opts);
        }
        if opts.nvme_only {
            // The NVMe proofs are TCG-only (ring 3 under PVM is skipped).
        } else if round == 1 && opts.timer {
            notes.push("--timer: TCG only (Keel's ring-3 sleep runs under TCG here)".into());
        } else if round == 1 && accel_env.kvm_available() && accel_env.forced != Some(Accel::Tcg) {
            accels.push(Accel::Kvm);
            let mut kruns = linux_runs(Accel::Kvm, &opts);
            let mut probe = kruns.remove(0);
            probe.timeout = Duration::from_secs(90);
            run_linux(&mut probe, &guest, &log_dir, &opts);
            if let Some(why) = probe.failure.clone() {
                let msg =
                    format!("Linux guest under KVM: {why} (tried {} once, 90 s cap)", probe.label);
                notes.push(msg.clone());
                kvm_skip = Some(msg);
                linux.push(probe);
            } else {
                kvm_linux_runs = true;
                linux.push(probe);
                for mut r in kruns {
                    run_linux(&mut r, &guest, &log_dir, &opts);
                    linux.push(r);
                }
            }
        } else if round == 1 {
            notes.push("KVM not available (or KEEL_ACCEL=tcg): TCG only".into());
        } else if kvm_linux_runs {
            for mut r in linux_runs(Accel::Kvm, &opts) {
                run_linux(&mut r, &guest, &log_dir, &opts);
                linux.push(r);
            }
        }

        // Keel: one run at a time, like `cargo xtask bench`.
        println!("\nxtask: Keel: {} run(s)", plan.len());
        let keel = runner::run_all(&kproofs, &plan, &env, 1, |r| {
            println!("{}", crate::report::progress_line(r))
        });

        for r in linux
            .iter()
            .filter(|r| r.mode == "x2apic" && r.guest.apic_mode == Some(parse::X2APIC_REFUSED))
        {
            let n = format!("Linux {} ({}): -cpu offers x2APIC, but the guest kernel stayed in xAPIC mode (\"x2apic: IRQ remapping doesn't support X2APIC mode\": \
                without interrupt remapping Linux uses x2APIC only under a hypervisor it recognises, and TCG shows none). Its x2apic-row figures are Linux-in-xAPIC-mode on the x2APIC VM.", r.label, r.accel);
            if !notes.contains(&n) {
                notes.push(n);
            }
        }
        all_ok &= linux.iter().filter(|r| r.accel == Accel::Tcg).all(|r| r.failure.is_none())
            && !keel.iter().any(|r| r.failed());
        let figs = if opts.timer {
            timer::figures(&keel, &linux, &opts)
        } else if opts.nvme_only {
            nvme::figures(&keel, &linux, &opts)
        } else {
            figures(&keel, &linux, &accels, kvm_skip.as_deref(), &opts)
        };
        if opts.timer {
            target_rounds.push(timer::targets(&figs));
        } else if opts.nvme_only {
            target_rounds.push(nvme::targets(&figs));
        } else if !opts.wake_only {
            target_rounds.push(targets(&figs, &keel));
        }
        rounds.push(figs);
        first_round.get_or_insert((linux, keel));
    }
    let (linux, keel) = first_round.unwrap_or_default();
    if opts.rounds() > 1 {
        notes.push(format!(
            "{} rounds, each all Linux runs then all Keel runs; a figure is the median of the rounds' medians (its source lists them), \
             and the rounds' own Keel/Linux ratios are listed under Rounds. Command lines below are the first round's.",
            opts.rounds()
        ));
    }
    notes.push(format!(
        "Host load average (1/5/15 min) at start: {load_start}, at end: {}. Anything else running on the host (other QEMU guests) disturbs these figures.",
        loadavg()
    ));
    let figs = merge_rounds(rounds);
    let targets = merge_targets(target_rounds);
    let runs = runs::Runs { host: &host, guest: &guest, linux: &linux, keel: &keel, notes: &notes };
    let ctx = report::Context { runs, opts: &opts, targets: &targets };
    let table = report::table(&figs);
    println!("\n{table}");
    println!("{}", report::targets_table(&targets));
    let mut plots = plot::plot_all(&figs, &dir.join("plots"));
    if opts.nvme_only {
        plots.extend(nvme::plot_iops(&figs, &dir.join("plots")));
    }
    std::fs::write(dir.join("report.md"), report::markdown(&figs, &ctx, &plots))?;
    std::fs::write(dir.join("report.json"), report::json(&figs, &ctx))?;
    println!(
        "xtask: wrote {}, {} and {} plot(s) in {}",
        dir.join("report.md").display(),
        dir.join("report.json").display(),
        plots.len(),
        dir.join("plots").display()
    );
    println!(
        "bench-compare: {}",
        if all_ok {
            "all Keel and Linux TCG runs ok"
        } else {
            "some Keel or Linux TCG runs failed (see the report)"
        }
    );
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
