//! `cargo xtask bench-compare --bringup [--cpus 8,64,288]`: AP bring-up on Keel (parallel
//! and serial) and on the Linux guest, on one VM per CPU count. Method: docs/benchmarks.md
//! ("AP bring-up").
//!
//! Every point is one q35 machine, the same for all three boots: `smm=off` (SeaBIOS relocates
//! SMM per CPU, which at 1,024 vCPUs blows up QEMU's memory; nothing here needs SMM), the
//! x2APIC CPU model, and an IOMMU with interrupt remapping in x2APIC mode, without which Linux
//! keeps xAPIC under TCG and cannot address CPUs above APIC ID 254. Boots run one at a time,
//! Linux first, then Keel parallel, then Keel serial, point by point.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};

use super::parse::GuestOutput;
use super::runs::Runs;
use super::{
    bringup_console, bringup_report, linux, loadavg, qemu_bin, run_linux, LinuxRun, Options,
    X2APIC_IOMMU,
};
use crate::checks::eq;
use crate::proofs::{self, Accels, Proof};
use crate::qemu::{Accel, AccelEnv, MachineSpec};
use crate::runner::{self, Env, JobResult, Outcome};
use crate::{bootstrap, builder};

/// Points when `--cpus` is not given: both finish in about ten minutes under TCG on two
/// host cores; 288 and 1,024 are opt-in (Linux alone needs far longer there).
pub const DEFAULT_CPUS: [u32; 2] = [8, 64];
/// The goal: Keel's parallel all-online time at most `TARGET_RATIO` x Linux's at these points.
pub const TARGET_CPUS: [u32; 2] = [64, 288];
pub const TARGET_RATIO: f64 = 0.5;
const MACHINE: &str = "q35,smm=off";

/// How Keel starts its APs (`smp_bringup=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeelBringUp {
    Parallel,
    Serial,
}

impl KeelBringUp {
    pub fn name(self) -> &'static str {
        match self {
            KeelBringUp::Parallel => "parallel",
            KeelBringUp::Serial => "serial",
        }
    }
}

/// One kernel's bring-up at one point.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    /// Guest microseconds from the first AP's start to all CPUs online.
    pub all_online_us: Option<u64>,
    /// APIC mode as the guest reported it.
    pub apic_mode: String,
    /// Parallel or serial, as the guest reported it.
    pub how: String,
    /// Where the figure comes from.
    pub source: String,
    /// Why there is no figure (or why it is suspect).
    pub failure: Option<String>,
    /// Host wall-clock seconds of the whole boot.
    pub wall_secs: f64,
    /// Guest seconds since boot when the figure was read (Linux: `/proc/uptime` in init),
    /// beside `wall_secs` to show how far guest time tracked the host's.
    pub guest_uptime_s: Option<f64>,
}

impl Measured {
    /// All-online time divided among the `cpus - 1` APs.
    pub fn per_ap_us(&self, cpus: u32) -> Option<u64> {
        Some(self.all_online_us? / u64::from(cpus.saturating_sub(1).max(1)))
    }
}

/// The three boots at one CPU count.
#[derive(Clone, Debug)]
pub struct Point {
    pub cpus: u32,
    pub keel_parallel: Measured,
    pub keel_serial: Measured,
    pub linux: Measured,
}

impl Point {
    /// Keel `how` / Linux all-online time (< 1: Keel faster).
    pub fn ratio(&self, keel: &Measured) -> Option<f64> {
        match (keel.all_online_us, self.linux.all_online_us) {
            (Some(k), Some(l)) if l > 0 => Some(k as f64 / l as f64),
            _ => None,
        }
    }
}

/// Memory of the point's VM (both kernels): Linux's per-CPU areas grow with the CPU count.
pub fn memory_for(cpus: u32) -> &'static str {
    match cpus {
        0..=64 => "1G",
        65..=512 => "2G",
        _ => "4G",
    }
}

/// The VM of one point (see the module comment).
pub fn machine(cpus: u32) -> MachineSpec {
    MachineSpec {
        machine: MACHINE,
        smp: cpus,
        memory: memory_for(cpus),
        cpu: proofs::x2apic_cpu(),
        extra: X2APIC_IOMMU.iter().map(|s| s.to_string()).collect(),
    }
}

/// Host seconds a boot may take: TCG runs every vCPU on two host cores, Linux's boot work
/// grows with the CPU count, a serial Keel bring-up waits for each AP in turn.
fn linux_timeout(cpus: u32) -> Duration {
    Duration::from_secs(300 + 8 * u64::from(cpus))
}
fn keel_timeout(cpus: u32, how: KeelBringUp) -> u64 {
    let per_cpu = if how == KeelBringUp::Serial { 4 } else { 2 };
    180 + per_cpu * u64::from(cpus)
}

/// Keel's `proof=bringup` scenario on the point's machine: the figures are read from
/// `bench.bringup.*`; the checks fail a boot that did not bring every CPU online as asked.
pub fn keel_proof(cpus: u32, how: KeelBringUp) -> Proof {
    let name: &'static str =
        Box::leak(format!("bringup-compare-{cpus}-{}", how.name()).into_boxed_str());
    let args =
        if how == KeelBringUp::Serial { "smp_bringup=serial" } else { "smp_bringup=parallel" };
    let mut p = Proof::new(name, "AP bring-up on the bench-compare --bringup VM")
        .scenario("bringup")
        .args(args)
        .accels(Accels::TcgOnly)
        .bench()
        .timeout_secs(keel_timeout(cpus, how))
        .check(eq("smp.bringup", how.name()))
        .check(eq("smp.online", u64::from(cpus)))
        .check(eq("bench.bringup.cpus", u64::from(cpus)));
    p.machine = machine(cpus);
    p
}

fn keel_measured(r: Option<&JobResult>) -> Measured {
    let Some(r) = r else {
        return Measured { failure: Some("did not run".into()), ..Measured::default() };
    };
    let wall_secs = r.secs().unwrap_or(0.0);
    match &r.outcome {
        Outcome::Skipped(why) => {
            Measured { failure: Some(format!("skipped: {why}")), ..Measured::default() }
        }
        Outcome::Error(e) => {
            Measured { failure: Some(format!("could not run: {e}")), ..Measured::default() }
        }
        Outcome::Ran { transcript, failures, output } => {
            let ev = |k: &str| transcript.evidence.get(k).map(|v| v.to_string());
            let remap = ev("iommu.remapping")
                .map_or_else(String::new, |m| format!(", interrupt remapping {m}"));
            let failure = if let Some(t) = output.timed_out {
                Some(format!("timed out after {}s", t.as_secs()))
            } else {
                failures.first().map(|f| format!("run FAILED: {f}"))
            };
            Measured {
                all_online_us: transcript
                    .evidence
                    .get("bench.bringup.all_online_us")
                    .and_then(|v| v.as_u64()),
                apic_mode: format!("{}{remap}", ev("lapic.mode").unwrap_or_else(|| "?".into())),
                how: ev("smp.bringup").unwrap_or_else(|| "?".into()),
                source: format!("{}: bench.bringup.all_online_us", r.name),
                failure,
                wall_secs,
                guest_uptime_s: None,
            }
        }
    }
}

/// Linux's bring-up from its own printk clock (see [`GuestOutput::bringup_us`]).
pub fn linux_measured(run: &LinuxRun, cpus: u32) -> Measured {
    let g: &GuestOutput = &run.guest;
    let mode = g.apic_mode.unwrap_or(if g.done {
        super::parse::NO_X2APIC_MESSAGE
    } else {
        "unknown (run did not finish)"
    });
    let how = match &g.parallel_disabled {
        Some(why) => format!("serial (\"{why}\")"),
        None => "parallel (Linux's default; no \"Parallel CPU startup disabled\" message)".into(),
    };
    // sysfs from init; a run stopped at the line itself has only the line's CPU count.
    let online = g.results.get("bringup.online").cloned();
    let want = format!("0-{}", cpus - 1);
    // A run stopped during bring-up: how long it had been going, on the guest's clock.
    let lower_bound = match (g.all_online_us, g.bringup_start_us, g.last_time_us) {
        (None, Some(start), Some(last)) => format!(
            "; not all online {} µs of guest time after 'smp: Bringing up' (a lower bound)",
            last.saturating_sub(start)
        ),
        _ => String::new(),
    };
    let failure = run.failure.clone().map(|f| f + &lower_bound).or_else(|| {
        match (&online, g.brought_up_cpus) {
            (Some(o), _) if *o != want => Some(format!("only CPUs {o} online, not {want}")),
            (None, Some(n)) if n != cpus => Some(format!("Linux brought up {n} CPUs, not {cpus}")),
            (None, None) => {
                Some("neither bringup.online nor a CPU count in 'smp: Brought up'".into())
            }
            _ => None,
        }
    });
    Measured {
        all_online_us: g.bringup_us(),
        apic_mode: mode.into(),
        how,
        source: format!(
            "linux {}: dmesg 'smp: Bringing up secondary CPUs' to 'smp: Brought up'",
            run.label
        ),
        failure,
        wall_secs: run.output.as_ref().map_or(0.0, |o| o.elapsed.as_secs_f64()),
        guest_uptime_s: g.results.get("bringup.uptime_s").and_then(|v| v.parse().ok()),
    }
}

fn linux_run(cpus: u32, lpj: Option<u64>) -> LinuxRun {
    // The kernel log keeps the bring-up lines however many CPUs print theirs; `lpj=` skips
    // the per-AP delay-loop calibration when asked for.
    let mut extra_cmdline = String::from("log_buf_len=8M");
    if let Some(lpj) = lpj {
        extra_cmdline.push_str(&format!(" lpj={lpj}"));
    }
    LinuxRun {
        label: format!("bringup-smp{cpus}"),
        mode: "x2apic",
        accel: Accel::Tcg,
        machine: machine(cpus),
        benches: "bringup",
        extra_cmdline,
        timeout: linux_timeout(cpus),
        args: vec![],
        output: None,
        guest: GuestOutput::default(),
        failure: None,
    }
}

/// Runs every point (Linux, Keel parallel, Keel serial; one VM at a time) and writes
/// `target/compare/bringup/{report.md,report.json,all-online.png}`.
pub fn run(opts: &Options) -> Result<ExitCode> {
    let cpus = if opts.cpus.is_empty() { DEFAULT_CPUS.to_vec() } else { opts.cpus.clone() };
    if let Some(&bad) = cpus.iter().find(|&&n| !(2..=4096).contains(&n)) {
        bail!("--cpus {bad}: bring-up needs 2 to 4,096 vCPUs");
    }
    bootstrap::ensure_qemu()?;
    let root = builder::workspace_root();
    let dir = root.join("target/compare/bringup");
    std::fs::create_dir_all(&dir)?;
    let host = crate::report::HostInfo::detect();
    let accel_env = AccelEnv::detect()?;
    println!("xtask: bench-compare --bringup at {cpus:?} vCPUs: preparing the Linux guest");
    let guest = linux::prepare(&root, &root.join("target/compare"))?;
    let artifacts = builder::build_all(false, &[builder::Image::Scenarios])?;
    let env = Env {
        qemu: qemu_bin(),
        kernel: artifacts.kernel,
        plain_kernel: artifacts.plain_kernel,
        example_kernel: artifacts.example_kernel,
        user_dir: artifacts.user_dir,
        log_dir: dir.join("keel"),
        root: root.clone(),
    };
    let load_start = loadavg();
    let mut points = Vec::new();
    let mut runs = Vec::new();
    let mut keel_runs = Vec::new();
    for &n in &cpus {
        let mut lr = linux_run(n, opts.linux_lpj);
        if opts.linux_console {
            bringup_console::run_linux_watched(&mut lr, &guest, &dir.join("linux"));
        } else {
            run_linux(&mut lr, &guest, &dir.join("linux"), opts);
        }
        let linux = linux_measured(&lr, n);
        let kproofs = [keel_proof(n, KeelBringUp::Parallel), keel_proof(n, KeelBringUp::Serial)];
        let plan = proofs::plan(&kproofs, &accel_env);
        let results = runner::run_all(&kproofs, &plan, &env, 1, |r| {
            println!("{}", crate::report::progress_line(r))
        });
        let find = |p: &Proof| results.iter().find(|r| r.name == p.name && r.accel == Accel::Tcg);
        let point = Point {
            cpus: n,
            keel_parallel: keel_measured(find(&kproofs[0])),
            keel_serial: keel_measured(find(&kproofs[1])),
            linux,
        };
        println!("{}", bringup_report::point_line(&point));
        points.push(point);
        runs.push(lr);
        keel_runs.extend(results);
        // After every point, so a long run that is stopped keeps what it measured.
        let mut notes = vec![format!(
            "Host load average (1/5/15 min) at start: {load_start}, now: {}. Other QEMU guests on the host slow every vCPU thread; both kernels' figures are guest time.",
            loadavg()
        )];
        if opts.linux_console {
            notes.push("--linux-console: Linux printed its kernel log on the serial console (no `quiet`) and was stopped at 'smp: Brought up'; its figures come from the console's printk timestamps, and no init ran (no sysfs CPU list, no uptime).".into());
        }
        let cx = Runs { host: &host, guest: &guest, linux: &runs, keel: &keel_runs, notes: &notes };
        write_reports(&points, &cx, &dir)?;
    }
    println!("\n{}", bringup_report::table(&points));
    let all_ok = points.iter().all(|p| {
        [&p.keel_parallel, &p.keel_serial, &p.linux]
            .iter()
            .all(|m| m.failure.is_none() && m.all_online_us.is_some())
    });
    println!(
        "bench-compare --bringup: {}",
        if all_ok {
            "every boot brought all CPUs online"
        } else {
            "some boots failed (see the report)"
        }
    );
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `report.md`, `report.json` and `all-online.png` in `dir`.
fn write_reports(points: &[Point], cx: &Runs<'_>, dir: &Path) -> Result<()> {
    let plot = dir.join("all-online.png");
    let plotted = match bringup_report::plot(points, &plot) {
        Ok(()) => Some(plot.as_path()),
        Err(e) => {
            eprintln!("xtask: no plot: {e}");
            None
        }
    };
    std::fs::write(dir.join("report.md"), bringup_report::markdown(points, cx, plotted))?;
    std::fs::write(dir.join("report.json"), bringup_report::json(points, cx))?;
    println!(
        "xtask: wrote {}, {}{}",
        dir.join("report.md").display(),
        dir.join("report.json").display(),
        plotted.map_or_else(String::new, |p| format!(" and {}", p.display()))
    );
    Ok(())
}

/// `--cpus 8,64,288` -> [8, 64, 288].
pub fn parse_cpus(list: &str) -> Result<Vec<u32>> {
    let v: Result<Vec<u32>, _> = list.split(',').map(|w| w.trim().parse::<u32>()).collect();
    match v {
        Ok(v) if !v.is_empty() && v.iter().all(|&n| n >= 2) => Ok(v),
        _ => bail!("--cpus wants a comma-separated list of CPU counts >= 2, e.g. 8,64,288"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_boot_of_a_point_gets_the_same_vm() {
        let linux = linux_run(288, None).machine.args(Accel::Tcg);
        for how in [KeelBringUp::Parallel, KeelBringUp::Serial] {
            assert_eq!(keel_proof(288, how).machine.args(Accel::Tcg), linux);
        }
        let joined = linux.join(" ");
        assert!(
            joined.contains("q35,smm=off")
                && joined.contains("intel-iommu,intremap=on,eim=on")
                && joined.contains("-smp 288"),
            "{joined}"
        );
        assert!(joined.contains("+x2apic"), "{joined}");
    }

    #[test]
    fn keel_proofs_check_what_they_measure() {
        let p = keel_proof(64, KeelBringUp::Serial);
        assert!(
            p.cmdline.contains("proof=bringup") && p.cmdline.contains("smp_bringup=serial"),
            "{}",
            p.cmdline
        );
        let checks: Vec<String> = p.checks.iter().map(|c| c.to_string()).collect();
        assert!(checks.iter().any(|c| c.contains("smp.online") && c.contains("64")), "{checks:?}");
    }

    #[test]
    fn linux_figure_needs_every_cpu_online() {
        let mut r = linux_run(4, None);
        r.guest = GuestOutput::parse(
            "DMESG [    1.000000] smp: Bringing up secondary CPUs ...\nDMESG [    1.300000] smp: Brought up 1 node, 4 CPUs\nRESULT bringup.online=0-3\nKBENCH done\n",
        );
        let m = linux_measured(&r, 4);
        assert_eq!((m.all_online_us, m.failure.as_deref()), (Some(300_000), None));
        assert_eq!(m.per_ap_us(4), Some(100_000));
        r.guest.results.insert("bringup.online".into(), "0-2".into());
        assert!(linux_measured(&r, 4).failure.unwrap().contains("only CPUs 0-2"));
    }

    #[test]
    fn lpj_goes_on_linux_command_line_only_when_asked() {
        assert_eq!(linux_run(8, None).extra_cmdline, "log_buf_len=8M");
        assert_eq!(linux_run(8, Some(9_781_704)).extra_cmdline, "log_buf_len=8M lpj=9781704");
    }

    #[test]
    fn cpus_list() {
        assert_eq!(parse_cpus("8,64,288").unwrap(), [8, 64, 288]);
        assert!(parse_cpus("8,x").is_err());
        assert!(parse_cpus("1").is_err());
    }
}
