//! `cargo xtask`: build Keel, boot it under QEMU, and check what it proves.
//! See `cli::USAGE` for commands; the evidence contract is `docs/proofs.md`.

mod bochs;
mod bootstrap;
mod builder;
mod checks;
mod cli;
mod compare;
mod debug;
mod fuzz;
mod images;
mod iso;
#[cfg(test)]
mod layering;
mod mutants;
mod package;
mod proofs;
mod qemu;
mod report;
mod runner;
mod trace;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use keel_evidence::{exit, Transcript};

use builder::Image;
use cli::Cmd;
use proofs::Proof;
use qemu::{AccelEnv, BootSpec, MachineSpec};
use runner::{Env, JobResult, Mode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli::parse(&args).and_then(dispatch) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Help => {
            print!("{}", cli::USAGE);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::PackageCheck { allow_dirty, msrv } => {
            package::check(allow_dirty, msrv)?;
            println!("xtask: {} ready to publish", package::PUBLISHED.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Clippy => {
            builder::clippy()?;
            println!("xtask: clippy clean (host crates, kernel, user programs, example)");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Fuzz { target, budget } => {
            fuzz::run(target.as_deref(), budget)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::QemuCheck => {
            bootstrap::ensure_qemu()?;
            println!("xtask: QEMU ok");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Build { image } => {
            bootstrap::ensure_qemu()?;
            let images = image
                .map_or_else(|| vec![Image::Scenarios, Image::Plain, Image::Example], |i| vec![i]);
            // The example kernel boots no user programs: `--image example` builds none.
            let a = builder::build_all(image != Some(Image::Example), &images)?;
            for (image, path) in [
                (Image::Plain, &a.plain_kernel),
                (Image::Scenarios, &a.kernel),
                (Image::Example, &a.example_kernel),
            ] {
                if images.contains(&image) {
                    println!("kernel: {} ({image:?})", path.display());
                }
            }
            let programs =
                builder::discover_user_programs(&builder::workspace_root())?.unwrap_or_default();
            for p in &programs {
                println!("user:   {}", a.user_dir.join(p).display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Proofs => list_proofs(),
        Cmd::Run { proof, accel, append, timeout } => run(proof, accel, append, timeout, false),
        // TCG: hardware breakpoints and single-stepping behave there as on a real CPU.
        Cmd::Debug { proof } => run(
            proof,
            Some(AccelEnv::detect()?.forced.unwrap_or(qemu::Accel::Tcg)),
            vec![],
            None,
            true,
        ),
        Cmd::Test { filter, jobs, host_tests, long, timer } => {
            test(filter, jobs, host_tests, Suite { long, ..Suite::DEFAULT }, timer.as_deref())
        }
        Cmd::TestScale { filter, jobs } => {
            test(filter, jobs, false, Suite { scale: true, ..Suite::DEFAULT }, None)
        }
        Cmd::TestSoak { filter, jobs } => {
            test(filter, jobs, false, Suite { soak: true, ..Suite::DEFAULT }, None)
        }
        Cmd::TestFirmware { filter, jobs } => test_firmware(filter, jobs),
        Cmd::Iso { out, release } => make_iso(out, release),
        Cmd::TestBochs { filter } => test_bochs(filter),
        Cmd::Bench { filter } => bench(filter),
        Cmd::BenchCompare(opts) => compare::run(opts),
        Cmd::Mutants { only, area, baseline } => {
            bootstrap::ensure_qemu()?;
            mutants::run(only, area, baseline)
        }
    }
}

fn qemu_bin() -> PathBuf {
    std::env::var_os("KEEL_QEMU")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(qemu::QEMU_BIN), PathBuf::from)
}

fn env_for(a: builder::Artifacts) -> Env {
    let root = builder::workspace_root();
    Env {
        qemu: qemu_bin(),
        kernel: a.kernel,
        plain_kernel: a.plain_kernel,
        example_kernel: a.example_kernel,
        user_dir: a.user_dir,
        log_dir: root.join("target/proofs"),
        root,
    }
}

/// Build user programs only when some proof boots them.
fn needs_user<'a>(proofs: impl IntoIterator<Item = &'a Proof>) -> bool {
    proofs.into_iter().any(|p| !p.programs.is_empty())
}

/// The kernel images these proofs boot (each built once, whatever the number of proofs).
fn images_for<'a>(proofs: impl IntoIterator<Item = &'a Proof>) -> Vec<Image> {
    let mut images: Vec<Image> = Vec::new();
    for p in proofs {
        if !images.contains(&p.image) {
            images.push(p.image);
        }
    }
    images
}

/// With both images built: the plain one must hold no scenario and no test-only hook.
fn check_images(a: &builder::Artifacts, images: &[Image]) -> Result<()> {
    if images.contains(&Image::Plain) && images.contains(&Image::Scenarios) {
        let found = images::check_scenarios_left_out(&a.plain_kernel, &a.kernel)?;
        println!("xtask: the plain kernel leaves the scenarios out (0 of the {found} scenario and hook symbols of the scenarios kernel)");
    }
    Ok(())
}

fn find_proof(name: &str) -> Result<Proof> {
    let all = proofs::registry();
    let names: Vec<_> = all.iter().map(|p| p.name).collect();
    all.into_iter()
        .find(|p| p.name == name)
        .with_context(|| format!("no proof {name:?}; known: {}", names.join(", ")))
}

/// Which tagged proofs a suite runs (all false: `make test`).
#[derive(Clone, Copy)]
struct Suite {
    bench: bool,
    long: bool,
    scale: bool,
    soak: bool,
}

impl Suite {
    const DEFAULT: Suite = Suite { bench: false, long: false, scale: false, soak: false };
}

/// Proofs of one suite: `make test` boots through `-kernel`, `make test-hostile` the long
/// ones among those, `make test-soak` the endurance ones, `make test-scale` the large
/// machines (benchmarks included), `make test-firmware` from ISOs, `make bench` runs the
/// benchmarks.
fn select(filter: Option<&str>, s: Suite) -> Vec<Proof> {
    let kernel_boot = |p: &Proof| p.boot == proofs::Boot::Kernel;
    let suite = |p: &Proof| {
        p.scale == s.scale
            && (s.scale || (p.bench == s.bench && p.long == s.long && p.soak == s.soak))
    };
    proofs::registry()
        .into_iter()
        .filter(|p| suite(p) && kernel_boot(p) && filter.is_none_or(|f| p.name.contains(f)))
        .collect()
}

fn select_firmware(filter: Option<&str>) -> Vec<Proof> {
    proofs::registry()
        .into_iter()
        .filter(|p| p.boot != proofs::Boot::Kernel && filter.is_none_or(|f| p.name.contains(f)))
        .collect()
}

fn test_firmware(filter: Option<String>, jobs: Option<usize>) -> Result<ExitCode> {
    bootstrap::ensure_qemu()?;
    iso::ensure_tools()?;
    iso::ensure_ovmf()?;
    let selected = select_firmware(filter.as_deref());
    if selected.is_empty() {
        bail!("no firmware proof matches {:?}", filter.unwrap_or_default());
    }
    let started = std::time::Instant::now();
    // One boot at a time unless asked: the in-kernel tick and RTC checks measure wall time,
    // and two OVMF machines on a 2-core host starve each other's vCPUs.
    let results = run_proofs(&selected, Some(jobs.unwrap_or(1)))?;
    println!("{}", report::summary_line(&results));
    println!("xtask: firmware proofs took {:.0}s wall time", started.elapsed().as_secs_f64());
    if let Some(why) = report::nothing_ran(&results) {
        eprintln!("xtask: error: {why}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(if results.iter().any(JobResult::failed) { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The default manifest and its programs, as boot modules: what a plain boot starts.
fn default_modules(env: &Env) -> Vec<PathBuf> {
    let programs = proofs::DEFAULT_PROGRAMS.iter().map(|p| env.user_dir.join(p));
    std::iter::once(env.root.join(proofs::DEFAULT_MANIFEST)).chain(programs).collect()
}

/// The menu of `make iso`: the plain kernel running the default manifest's programs first,
/// then (unless `release`) one entry per distinct command line of the `-kernel` proofs on
/// the scenarios kernel that need no QEMU-only device (the same rule as for Bochs).
fn iso_entries(env: &Env, release: bool) -> Vec<iso::Entry> {
    let default = iso::Entry {
        title: format!("Keel: ring-3 programs of {}", proofs::DEFAULT_MANIFEST),
        kernel: env.plain_kernel.clone(),
        cmdline: String::new(),
        modules: default_modules(env),
    };
    let mut entries = vec![default];
    if release {
        return entries;
    }
    for p in select(None, Suite::DEFAULT)
        .into_iter()
        .filter(|p| bochs::unsupported(p).is_none() && p.image == Image::Scenarios)
    {
        let e = env.iso_entry(&p, &p.cmdline);
        // Proofs differing only in the virtual machine boot the same entry.
        if !entries
            .iter()
            .any(|x| x.kernel == e.kernel && x.cmdline == e.cmdline && x.modules == e.modules)
        {
            entries.push(e);
        }
    }
    entries
}

/// Boots each Bochs machine's proofs one at a time (Bochs is single-threaded and slow; its
/// RFB display also wants the one port), prints a table, fails if any judged proof failed.
fn test_bochs(filter: Option<String>) -> Result<ExitCode> {
    let env = env_for(builder::build_all(true, &[Image::Scenarios])?);
    let registry = proofs::registry();
    let started = std::time::Instant::now();
    let (mut rows, mut failed) = (Vec::new(), 0);
    for m in bochs::MACHINES {
        println!("xtask: Bochs CPU model {} ({})", m.model, m.what);
        for name in m.proofs.iter().filter(|n| filter.as_deref().is_none_or(|f| n.contains(f))) {
            let p = registry
                .iter()
                .find(|p| p.name == *name)
                .with_context(|| format!("no proof {name}"))?;
            let row = |verdict: String| {
                format!("{:<26} {:<22} {:>4} {verdict}", m.model, p.name, p.machine.smp)
            };
            if let Some(why) = bochs::unsupported(p) {
                rows.push(row(format!("   -  skipped: {why}")));
                println!("{}", rows.last().unwrap());
                continue;
            }
            runner::check_modules(p, &env).map_err(anyhow::Error::msg)?;
            let limit = (p.timeout * 8).max(Duration::from_secs(480));
            let run = bochs::boot(p, m, &env, limit)?;
            let fails = bochs::judge(p, &run);
            let secs = run.elapsed.as_secs_f64();
            rows.push(row(if fails.is_empty() {
                format!("{secs:5.0}s pass")
            } else {
                format!("{secs:5.0}s FAIL: {}", fails[0])
            }));
            println!("{}", rows.last().unwrap());
            if !fails.is_empty() {
                failed += 1;
                for f in &fails {
                    println!("  x {f}");
                }
                println!(
                    "  transcript: {} (Bochs's own log: {})",
                    run.serial.display(),
                    run.serial.with_extension("bochs").display()
                );
            }
        }
    }
    println!("\n{:<26} {:<22} {:>4} TIME  VERDICT", "BOCHS CPU MODEL", "PROOF", "CPUS");
    for r in &rows {
        println!("{r}");
    }
    let skipped = rows.iter().filter(|r| r.contains("skipped:")).count();
    let passed = rows.len() - skipped - failed;
    println!("\nxtask: Bochs: {:.0}s wall time", started.elapsed().as_secs_f64());
    println!("bochs: {passed} passed, {failed} failed, {skipped} skipped");
    if passed + failed == 0 {
        println!("xtask: no Bochs proof ran");
        return Ok(ExitCode::FAILURE);
    }
    Ok(if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn make_iso(out: Option<String>, release: bool) -> Result<ExitCode> {
    let images = if release { vec![Image::Plain] } else { vec![Image::Scenarios, Image::Plain] };
    let artifacts = builder::build_all(true, &images)?;
    check_images(&artifacts, &images)?;
    let env = env_for(artifacts);
    let out = out.map_or_else(|| env.root.join("target/keel.iso"), PathBuf::from);
    iso::build(&out, &iso_entries(&env, release), 5)?;
    println!("xtask: wrote {} (BIOS and UEFI; boot it as a CD, or `dd if={} of=/dev/sdX bs=4M` for a USB stick)", out.display(), out.display());
    Ok(ExitCode::SUCCESS)
}

fn list_proofs() -> Result<ExitCode> {
    let env = AccelEnv::detect()?;
    let all = proofs::registry();
    let target = builder::workspace_root().join("target");
    let image = |i: Image| builder::kernel_override(i).unwrap_or_else(|| i.path_under(&target));
    let user_dir = builder::user_dir_override().unwrap_or_else(builder::default_user_dir);
    let e = env_for(builder::Artifacts {
        kernel: image(Image::Scenarios),
        plain_kernel: image(Image::Plain),
        example_kernel: image(Image::Example),
        user_dir,
    });
    println!("{}", env.kvm_summary());
    for job in proofs::plan(&all, &env) {
        let p = &all[job.proof];
        let tag = if p.scale {
            " [scale]"
        } else if p.bench {
            " [bench]"
        } else if p.long {
            " [test-hostile]"
        } else if p.soak {
            " [test-soak]"
        } else {
            ""
        };
        println!("\n{} ({}){tag}: {}", p.name, job.accel, p.description);
        match p.image {
            Image::Plain => println!("  image: plain (no scenarios compiled in)"),
            Image::Example => println!("  image: the example kernel (examples/minimal-smp)"),
            Image::Scenarios => {}
        }
        if let Some(note) = p.accel_note() {
            println!("  {note}");
        }
        println!(
            "  expect: status {} ({}), verdict {:?}, timeout {}s",
            p.expect.status,
            exit::describe(p.expect.status),
            p.expect.verdict,
            p.timeout.as_secs()
        );
        for c in &p.checks {
            println!("  check: {c}");
        }
        for c in &p.trace_checks {
            println!("  check: {c}");
        }
        for m in p.modules(&e.root, &e.user_dir) {
            println!("  module: {}", m.display());
        }
        if let proofs::Boot::Iso(fw) = p.boot {
            println!(
                "  boot: GRUB from {} (Multiboot 2) under {fw:?}, built when the proof runs",
                e.iso_path(p).display()
            );
        }
        match &job.skip {
            Some(why) => println!("  skipped here: {why}"),
            None => println!(
                "  {} {}",
                e.qemu.display(),
                qemu::shell_quote(&runner::proof_args(p, job.accel, &e))
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Boots once with serial on the terminal; `gdb`: stopped under QEMU's gdb stub, with
/// `target/keel.gdb` written for the debugger.
fn run(
    proof: Option<String>,
    accel: Option<qemu::Accel>,
    append: Vec<String>,
    timeout: Option<u64>,
    gdb: bool,
) -> Result<ExitCode> {
    let proof = proof.map(|n| find_proof(&n)).transpose()?;
    // Traced proofs default to TCG: KVM's in-kernel APIC skips the trace points; so do boots
    // with ring-3 programs (a plain boot's, or a proof's) where KVM is PVM (they cannot enter
    // the kernel there).
    let traced = proof.as_ref().is_some_and(|p| !p.trace_events.is_empty());
    let ring3 = proof.as_ref().is_none_or(|p| p.guest_ring3);
    let accel_env = AccelEnv::detect()?;
    let accel = match accel {
        Some(a) => a,
        None if accel_env.forced.is_none()
            && (traced || (ring3 && accel_env.kvm == Some(qemu::KvmBackend::Pvm))) =>
        {
            qemu::Accel::Tcg
        }
        None => accel_env.preferred(),
    };
    if traced && accel == qemu::Accel::Kvm {
        eprintln!("xtask: warning: {} traces QEMU's APIC; under KVM the trace stays empty and trace checks are skipped", proof.as_ref().unwrap().name);
    }
    let user_flags = qemu::user_flags_from_env()?;
    let machine = proof.as_ref().map_or_else(MachineSpec::run_default, |p| p.machine.clone());
    let mut cmdline: Vec<String> = Vec::new();
    // What the scale proofs boot with (proofs/scale.rs, NO_LOCKUP_WATCH): a user's own
    // `lockup_ms=` (later on the line) still wins.
    if qemu::requested_cpus(&machine, &user_flags) > qemu::SMM_OFF_ABOVE_CPUS {
        cmdline.push("lockup_ms=0".into());
    }
    cmdline.extend(proof.as_ref().map(|p| p.cmdline.clone()));
    cmdline.extend(std::env::var("KEEL_APPEND").ok().filter(|s| !s.trim().is_empty()));
    cmdline.extend(append);
    let cmdline = merge_cmdline(&cmdline.join(" "));

    if std::env::var_os("KEEL_QEMU").is_none() {
        bootstrap::ensure_qemu()?;
    }
    // No proof: the plain image with the default manifest and its programs (what a user's
    // boot does); a proof: the image it boots.
    let image = proof.as_ref().map_or(Image::Plain, |p| p.image);
    let env = env_for(builder::build_all(
        proof.as_ref().is_none_or(|p| !p.programs.is_empty()),
        &[image],
    )?);
    let kernel = match &proof {
        Some(p) => env.kernel_for(p).to_path_buf(),
        None => env.plain_kernel.clone(),
    };
    let default_modules = default_modules(&env);
    let args = match &proof {
        Some(p) => {
            runner::check_modules(p, &env).map_err(anyhow::Error::msg)?;
            if let proofs::Boot::Iso(fw) = p.boot {
                env.prepare_iso(p, &cmdline, fw)?;
            }
            if traced {
                runner::prepare_trace(&env.trace_path(p, accel));
            }
            env.prepare_disk(p, accel)?;
            runner::proof_args_with(p, accel, &env, &cmdline, &user_flags)
        }
        None => qemu::command_args(
            &machine,
            accel,
            &BootSpec { kernel: &kernel, cmdline: &cmdline, modules: &default_modules },
            &user_flags,
        ),
    };
    let mut args = args;
    if gdb {
        let script = env.root.join("target/keel.gdb");
        std::fs::write(&script, debug::gdb_script(&kernel))?;
        args.extend(debug::qemu_args());
        eprintln!(
            "xtask: QEMU waits for gdb on :{}; in another terminal: gdb -x {}",
            debug::GDB_PORT,
            script.display()
        );
    }
    eprintln!("xtask: {} {}", env.qemu.display(), qemu::shell_quote(&args));
    // A proof gets the same timeout as under `make test` unless told otherwise.
    let timeout = timeout.map(Duration::from_secs).or(proof.as_ref().map(|p| p.timeout));
    let out = runner::run_process(env.qemu.as_os_str(), &args, timeout, Mode::Interactive)?;
    let log = builder::workspace_root().join("target/run.log");
    let _ = std::fs::write(&log, &out.stdout);
    let transcript = Transcript::parse(&out.stdout);
    for e in &transcript.errors {
        eprintln!("xtask: malformed {e}");
    }
    if let Some(p) = &proof {
        let mut fails = checks::judge(
            &p.expect,
            &p.checks,
            &checks::Observed {
                status: out.status,
                timed_out: out.timed_out,
                transcript: &transcript,
            },
        );
        if traced && accel == qemu::Accel::Tcg {
            let path = env.trace_path(p, accel);
            fails.extend(runner::judge_trace_file(p, &transcript, &path));
            eprintln!("xtask: QEMU trace in {}", path.display());
        }
        if fails.is_empty() {
            eprintln!(
                "xtask: proof {} ({accel}) passed ({:.1}s)",
                p.name,
                out.elapsed.as_secs_f64()
            );
            return Ok(ExitCode::SUCCESS);
        }
        for f in &fails {
            eprintln!("xtask:   x {f}");
        }
        bail!("proof {} ({accel}) FAILED; transcript in {}", p.name, log.display());
    }
    match (out.status, out.timed_out) {
        (_, Some(t)) => bail!("timed out after {}s", t.as_secs()),
        (Some(exit::STATUS_PASS), _) => {
            eprintln!("xtask: kernel halted cleanly ({:.1}s)", out.elapsed.as_secs_f64());
            Ok(ExitCode::SUCCESS)
        }
        (Some(s), _) => bail!("QEMU exited with status {s}: {}", exit::describe(s)),
        (None, _) => bail!("QEMU was killed by a signal"),
    }
}

/// Run `proofs` on all workers, printing progress, the table, and details of failures.
fn run_proofs(proofs: &[Proof], jobs: Option<usize>) -> Result<Vec<JobResult>> {
    let accel_env = AccelEnv::detect()?;
    let plan = proofs::plan(proofs, &accel_env);
    let images = images_for(proofs);
    let artifacts = builder::build_all(needs_user(proofs), &images)?;
    check_images(&artifacts, &images)?;
    let env = env_for(artifacts);
    let workers =
        jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!(
        "\nxtask: {} proof run(s) on {workers} worker(s); {}",
        plan.len(),
        accel_env.kvm_summary()
    );
    let stdout = std::sync::Mutex::new(());
    let results = runner::run_all(proofs, &plan, &env, workers, |r| {
        let _g = stdout.lock();
        println!("{}", report::progress_line(r));
    });
    println!("\n{}", report::table(&results));
    for r in results.iter().filter(|r| r.failed()) {
        println!("{}", report::failure_details(r));
    }
    Ok(results)
}

fn test(
    filter: Option<String>,
    jobs: Option<usize>,
    host_tests: bool,
    suite: Suite,
    timer: Option<&str>,
) -> Result<ExitCode> {
    let scale = suite.scale;
    bootstrap::ensure_qemu()?;
    if host_tests {
        println!("xtask: host unit tests");
        builder::host_tests()?;
    }
    let mut selected = select(filter.as_deref(), suite);
    if let Some(mode) = timer {
        // The other timer mode for every proof that does not choose one itself.
        for p in selected.iter_mut() {
            if !p.cmdline.split_whitespace().any(|w| w.starts_with("timer=")) {
                p.cmdline = format!("{} timer={mode}", p.cmdline).trim_start().to_string();
            }
        }
    }
    let started = std::time::Instant::now();
    if selected.is_empty() {
        bail!("no proof matches {:?}", filter.unwrap_or_default());
    }
    // Scale proofs each keep hundreds of vCPU threads busy: one at a time unless asked.
    let jobs = if scale { jobs.or(Some(1)) } else { jobs };
    let results = run_proofs(&selected, jobs)?;
    if scale {
        println!("{}", report::bench_table(&report::bench_runs(&results)));
    }
    println!("{}", report::summary_line(&results));
    if suite.soak {
        println!("xtask: endurance proofs took {:.0}s wall time", started.elapsed().as_secs_f64());
    }
    if let Some(why) = report::nothing_ran(&results) {
        eprintln!("xtask: error: {why}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(if results.iter().any(JobResult::failed) { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn bench(filter: Option<String>) -> Result<ExitCode> {
    bootstrap::ensure_qemu()?;
    let selected = select(filter.as_deref(), Suite { bench: true, ..Suite::DEFAULT });
    let path = builder::workspace_root().join("target/bench.json");
    std::fs::create_dir_all(path.parent().unwrap())?;
    if selected.is_empty() {
        println!("xtask: no benchmark proofs registered (tag one with `.bench()` in xtask/src/proofs.rs)");
        std::fs::write(&path, report::bench_json(&[], &report::HostInfo::detect()))?;
        return Ok(ExitCode::SUCCESS);
    }
    // One run at a time: parallel boots would disturb each other's timings.
    let results = run_proofs(&selected, Some(1))?;
    println!("{}", report::bench_table(&report::bench_runs(&results)));
    std::fs::write(&path, report::bench_json(&results, &report::HostInfo::detect()))?;
    println!("xtask: wrote {}", path.display());
    println!("{}", report::summary_line(&results));
    Ok(if results.iter().any(JobResult::failed) { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Later `key=value` words replace earlier ones with the same key (the kernel rejects
/// duplicate keys), so `--append trips=100` overrides a proof's own `trips=10000`.
fn merge_cmdline(cmdline: &str) -> String {
    let words: Vec<&str> = cmdline.split_whitespace().collect();
    let key = |w: &str| w.split_once('=').map_or(w, |(k, _)| k).to_string();
    words
        .iter()
        .enumerate()
        .filter(|(i, w)| !words[i + 1..].iter().any(|later| key(later) == key(w)))
        .map(|(_, w)| *w)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod cmdline_tests {
    #[test]
    fn later_keys_override_earlier_ones() {
        assert_eq!(
            super::merge_cmdline("proof=bench trips=10000 gap_us=5 trips=30"),
            "proof=bench gap_us=5 trips=30"
        );
        assert_eq!(super::merge_cmdline("proof=smp"), "proof=smp");
    }
}
