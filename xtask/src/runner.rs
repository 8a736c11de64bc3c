//! Running QEMU (or a test double) with a timeout, capturing the serial
//! transcript, and running proofs in parallel.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use keel_evidence::Transcript;

use crate::builder::Image;
use crate::checks::{judge, Observed};
use crate::iso::{self, Firmware};
use crate::proofs::{Boot, Job, Proof};
use crate::qemu::{self, Accel, BootSpec};
use crate::trace::{judge_trace, Trace};

/// How the child is attached to our terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Batch: stdin closed, own process group (so a timeout kills everything
    /// it spawned), output only captured.
    Captured,
    /// `cargo xtask run`: stdin inherited, output echoed live and captured.
    Interactive,
}

/// What a finished (or killed) process left behind.
#[derive(Clone, Debug)]
pub struct ProcessOutput {
    /// Exit code; `None` if killed by a signal (including our timeout kill).
    pub status: Option<i32>,
    /// `Some(limit)` if we killed it for exceeding `limit`.
    pub timed_out: Option<Duration>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

fn pump(
    mut src: impl Read + Send + 'static,
    buf: Arc<Mutex<Vec<u8>>>,
    echo: Option<fn() -> Box<dyn Write>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        let mut out = echo.map(|f| f());
        loop {
            match src.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.lock().unwrap().extend_from_slice(&chunk[..n]);
                    if let Some(o) = out.as_mut() {
                        let _ = o.write_all(&chunk[..n]);
                        let _ = o.flush();
                    }
                }
            }
        }
    })
}

/// Run `program args` until it exits or `timeout` passes (then SIGKILL its
/// process group). The program is a parameter so tests can inject a fake QEMU.
pub fn run_process(
    program: &OsStr,
    args: &[String],
    timeout: Option<Duration>,
    mode: Mode,
) -> Result<ProcessOutput> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    match mode {
        Mode::Captured => {
            use std::os::unix::process::CommandExt;
            cmd.stdin(Stdio::null()).process_group(0);
        }
        Mode::Interactive => {
            cmd.stdin(Stdio::inherit());
        }
    }
    let start = Instant::now();
    let mut child =
        cmd.spawn().with_context(|| format!("cannot start {}", program.to_string_lossy()))?;
    let (out_buf, err_buf) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let interactive = mode == Mode::Interactive;
    let readers = [
        pump(
            child.stdout.take().unwrap(),
            out_buf.clone(),
            interactive.then_some(|| Box::new(std::io::stdout()) as Box<dyn Write>),
        ),
        pump(
            child.stderr.take().unwrap(),
            err_buf.clone(),
            interactive.then_some(|| Box::new(std::io::stderr()) as Box<dyn Write>),
        ),
    ];
    let mut timed_out = None;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if let Some(limit) = timeout {
            if start.elapsed() >= limit {
                timed_out = Some(limit);
                if mode == Mode::Captured {
                    // Negative pid = the whole group: shell wrappers and their children too.
                    // SAFETY: plain syscall on a pid we own.
                    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                }
                let _ = child.kill();
                break child.wait()?;
            }
        }
        thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    // Grandchildren that escaped the kill could hold the pipes open; don't hang on them.
    let deadline = Instant::now() + Duration::from_secs(2);
    for r in readers {
        while !r.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        if r.is_finished() {
            let _ = r.join();
        }
    }
    let text = |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().unwrap()).into_owned();
    Ok(ProcessOutput {
        status: if timed_out.is_some() { None } else { status.code() },
        timed_out,
        stdout: text(&out_buf),
        stderr: text(&err_buf),
        elapsed,
    })
}

/// Where the kernel and friends are, and which QEMU to use.
#[derive(Clone, Debug)]
pub struct Env {
    pub qemu: PathBuf,
    /// The kernel image built with the scenarios (what proofs boot unless they say otherwise).
    pub kernel: PathBuf,
    /// The plain kernel image (no scenarios compiled in).
    pub plain_kernel: PathBuf,
    /// The example kernel (`examples/minimal-smp`).
    pub example_kernel: PathBuf,
    /// Repo root: proof manifests are relative to it.
    pub root: PathBuf,
    /// User program ELFs (`Proof::programs` are looked up here).
    pub user_dir: PathBuf,
    /// Directory for transcripts and traces (`target/proofs`).
    pub log_dir: PathBuf,
}

impl Env {
    /// The kernel image proof `p` boots.
    pub fn kernel_for(&self, p: &Proof) -> &Path {
        match p.image {
            Image::Plain => &self.plain_kernel,
            Image::Scenarios => &self.kernel,
            Image::Example => &self.example_kernel,
        }
    }

    /// `<log_dir>/iso/<name>.iso`: the ISO an ISO-booted proof runs from.
    pub fn iso_path(&self, p: &Proof) -> PathBuf {
        self.log_dir.join("iso").join(format!("{}.iso", p.name))
    }

    /// The GRUB entry that boots proof `p` with its command line and modules.
    pub fn iso_entry(&self, p: &Proof, cmdline: &str) -> iso::Entry {
        iso::Entry {
            title: format!("Keel: {}", p.name),
            kernel: self.kernel_for(p).to_path_buf(),
            cmdline: cmdline.to_string(),
            modules: p.modules(&self.root, &self.user_dir),
        }
    }

    /// Builds the proof's ISO (its only entry boots it at once) and makes sure the
    /// firmware is installed.
    pub fn prepare_iso(&self, p: &Proof, cmdline: &str, fw: Firmware) -> Result<PathBuf> {
        if fw == Firmware::Ovmf {
            iso::ensure_ovmf()?;
        }
        let path = self.iso_path(p);
        iso::build(&path, &[self.iso_entry(p, cmdline)], 0)?;
        Ok(path)
    }

    /// `<log_dir>/<name>-<accel>.disk`: the proof's disk image, written anew before each run.
    pub fn disk_path(&self, p: &Proof, accel: Accel) -> PathBuf {
        self.log_dir.join(format!("{}-{accel}.disk", p.name))
    }

    /// Writes the proof's disk image (if it has one) with the image pattern.
    pub fn prepare_disk(&self, p: &Proof, accel: Accel) -> Result<()> {
        let Some(disk) = p.disk else { return Ok(()) };
        let path = self.disk_path(p, accel);
        std::fs::create_dir_all(&self.log_dir)?;
        let mut words = vec![0u64; (disk.bytes / 8) as usize];
        keel_nvme::pattern::fill(&mut words, 0, keel_nvme::pattern::IMAGE_SEED);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Reads the proof's disk image back after a run (see [`crate::proofs::Disk`]): one
    /// failure line per block that holds neither what it should nor anything expected.
    pub fn judge_disk(&self, p: &Proof, accel: Accel) -> Vec<String> {
        use keel_nvme::pattern::{mismatches, IMAGE_SEED, WRITE_SEED};
        let Some(disk) = p.disk else { return vec![] };
        let path = self.disk_path(p, accel);
        let bytes = match std::fs::read(&path) {
            Ok(b) if b.len() as u64 == disk.bytes => b,
            Ok(b) => return vec![format!("disk image is {} bytes, not {}", b.len(), disk.bytes)],
            Err(e) => return vec![format!("reading {}: {e}", path.display())],
        };
        let mut failures = vec![];
        for (block, chunk) in bytes.chunks(4096).enumerate() {
            let words: Vec<u64> =
                chunk.chunks(8).map(|w| u64::from_le_bytes(w.try_into().unwrap())).collect();
            let seed = if disk.written == Some(block as u64) { WRITE_SEED } else { IMAGE_SEED };
            let wrong = mismatches(&words, block as u64 * 4096, seed);
            if wrong != 0 {
                failures.push(format!(
                    "disk block {block}: {wrong} words differ from the expected pattern"
                ));
            }
        }
        failures
    }

    /// `<log_dir>/<name>-<accel>.trace`, where QEMU writes a traced proof's events.
    pub fn trace_path(&self, p: &Proof, accel: Accel) -> PathBuf {
        self.log_dir.join(format!("{}-{accel}.trace", p.name))
    }
}

/// Final state of one job. (A handful exist per run; boxing `Ran` buys nothing.)
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    Skipped(String),
    /// The harness itself failed (QEMU missing, ...).
    Error(String),
    Ran {
        output: ProcessOutput,
        transcript: Transcript,
        failures: Vec<String>,
    },
}

#[derive(Clone, Debug)]
pub struct JobResult {
    pub name: &'static str,
    pub accel: Accel,
    pub args: Vec<String>,
    pub outcome: Outcome,
    pub log: Option<PathBuf>,
    /// QEMU trace file of a traced proof.
    pub trace: Option<PathBuf>,
}

impl JobResult {
    pub fn passed(&self) -> bool {
        matches!(&self.outcome, Outcome::Ran { failures, .. } if failures.is_empty())
    }
    pub fn skipped(&self) -> bool {
        matches!(self.outcome, Outcome::Skipped(_))
    }
    pub fn failed(&self) -> bool {
        !self.passed() && !self.skipped()
    }
    pub fn secs(&self) -> Option<f64> {
        match &self.outcome {
            Outcome::Ran { output, .. } => Some(output.elapsed.as_secs_f64()),
            _ => None,
        }
    }
}

/// QEMU arguments for a proof under one accelerator (`user_flags` only from `cargo xtask run`).
pub fn proof_args_with(
    p: &Proof,
    accel: Accel,
    env: &Env,
    cmdline: &str,
    user_flags: &[String],
) -> Vec<String> {
    let modules = p.modules(&env.root, &env.user_dir);
    let mut args = match p.boot {
        Boot::Kernel => qemu::command_args(
            &p.machine,
            accel,
            &BootSpec { kernel: env.kernel_for(p), cmdline, modules: &modules },
            user_flags,
        ),
        Boot::Iso(fw) => {
            qemu::iso_command_args(&p.machine, accel, &env.iso_path(p), &fw.qemu_args(), user_flags)
        }
    };
    if !p.trace_events.is_empty() {
        args.extend(qemu::trace_args(&p.trace_events, &env.trace_path(p, accel)));
    }
    if let Some(disk) = p.disk {
        let file = env.disk_path(p, accel).display().to_string();
        args.extend(["-drive".into(), format!("file={file},if=none,id={},format=raw", disk.id)]);
    }
    args
}

/// QEMU arguments for a proof under one accelerator.
pub fn proof_args(p: &Proof, accel: Accel, env: &Env) -> Vec<String> {
    proof_args_with(p, accel, env, &p.cmdline, &[])
}

/// Multiboot modules must exist, and `-initrd` splits on ',' and takes text after a
/// space as the module's arguments; catch both before QEMU gives a vaguer error.
pub fn check_modules(p: &Proof, env: &Env) -> Result<(), String> {
    for m in p.modules(&env.root, &env.user_dir) {
        let s = m.display().to_string();
        if s.contains([',', ' ']) {
            return Err(format!(
                "Multiboot module path {s:?} contains ',' or ' ' (QEMU -initrd cannot pass it)"
            ));
        }
        if !m.is_file() {
            return Err(format!(
                "Multiboot module {s} missing (build user programs, or set KEEL_USER_DIR)"
            ));
        }
    }
    Ok(())
}

/// Remove a stale trace and make sure QEMU's `-D` directory exists.
pub fn prepare_trace(path: &Path) {
    if let Some(d) = path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    let _ = std::fs::remove_file(path);
}

/// Trace-check failures for a finished traced run (none for untraced proofs).
pub fn judge_trace_file(p: &Proof, transcript: &Transcript, path: &Path) -> Vec<String> {
    if p.trace_events.is_empty() {
        return vec![];
    }
    match Trace::read(path) {
        Ok(tr) => judge_trace(&p.trace_checks, transcript, Ok(&tr)),
        Err(e) => judge_trace(
            &p.trace_checks,
            transcript,
            Err(&format!("cannot read {}: {e}", path.display())),
        ),
    }
}

/// Boot one proof, write its transcript, judge it.
pub fn run_job(p: &Proof, job: &Job, env: &Env) -> JobResult {
    let args = proof_args(p, job.accel, env);
    let mut res = JobResult {
        name: p.name,
        accel: job.accel,
        args: args.clone(),
        outcome: Outcome::Skipped(String::new()),
        log: None,
        trace: None,
    };
    if let Some(why) = &job.skip {
        res.outcome = Outcome::Skipped(why.clone());
        return res;
    }
    if let Err(e) = check_modules(p, env) {
        res.outcome = Outcome::Error(e);
        return res;
    }
    if let Boot::Iso(fw) = p.boot {
        if let Err(e) = env.prepare_iso(p, &p.cmdline, fw) {
            res.outcome = Outcome::Error(format!("building the ISO: {e:#}"));
            return res;
        }
    }
    if let Err(e) = env.prepare_disk(p, job.accel) {
        res.outcome = Outcome::Error(format!("writing the disk image: {e:#}"));
        return res;
    }
    let trace = (!p.trace_events.is_empty()).then(|| env.trace_path(p, job.accel));
    if let Some(t) = &trace {
        prepare_trace(t);
    }
    let output = match run_process(env.qemu.as_os_str(), &args, Some(p.timeout), Mode::Captured) {
        Ok(o) => o,
        Err(e) => {
            res.outcome = Outcome::Error(format!("{e:#}"));
            return res;
        }
    };
    res.log = save_log(&env.log_dir, p.name, job.accel, &args, &output);
    let transcript = Transcript::parse(&output.stdout);
    let mut failures = judge(
        &p.expect,
        &p.checks,
        &Observed { status: output.status, timed_out: output.timed_out, transcript: &transcript },
    );
    if let Some(t) = &trace {
        failures.extend(judge_trace_file(p, &transcript, t));
    }
    failures.extend(env.judge_disk(p, job.accel));
    res.trace = trace;
    res.outcome = Outcome::Ran { output, transcript, failures };
    res
}

/// `<dir>/<name>-<accel>.log` holds the serial transcript verbatim; QEMU's
/// command and stderr go to `.cmd` / `.stderr` beside it.
fn save_log(
    dir: &Path,
    name: &str,
    accel: Accel,
    args: &[String],
    out: &ProcessOutput,
) -> Option<PathBuf> {
    std::fs::create_dir_all(dir).ok()?;
    let base = dir.join(format!("{name}-{accel}"));
    let log = base.with_extension("log");
    std::fs::write(&log, &out.stdout).ok()?;
    let _ = std::fs::write(
        base.with_extension("cmd"),
        format!("qemu-system-x86_64 {}\n", qemu::shell_quote(args)),
    );
    let err = base.with_extension("stderr");
    if out.stderr.is_empty() {
        let _ = std::fs::remove_file(err);
    } else {
        let _ = std::fs::write(err, &out.stderr);
    }
    Some(log)
}

/// Run jobs on `workers` threads; `on_done` sees each result as it lands
/// (progress output). Results come back in job order.
pub fn run_all(
    proofs: &[Proof],
    jobs: &[Job],
    env: &Env,
    workers: usize,
    on_done: impl Fn(&JobResult) + Sync,
) -> Vec<JobResult> {
    // Start the slow (KVM) boots first so the tail is short.
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| (jobs[i].skip.is_none(), jobs[i].accel == Accel::Kvm));
    order.reverse();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<JobResult>>> = Mutex::new(vec![None; jobs.len()]);
    thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some(&i) = order.get(k) else { break };
                let r = run_job(&proofs[jobs[i].proof], &jobs[i], env);
                on_done(&r);
                results.lock().unwrap()[i] = Some(r);
            });
        }
    });
    results.into_inner().unwrap().into_iter().map(|r| r.expect("every job ran")).collect()
}

#[cfg(test)]
mod tests;
