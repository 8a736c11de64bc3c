//! Starting the boot manifest's programs: the manifest and the program ELFs arrive as boot
//! modules; each program starts in ring 3 once the one its entry names in `after = "x"` has
//! exited, and the kernel runs them until every one has exited. A program with `restarts = N`
//! runs N more times, each run a fresh process (the ELF loaded again, a new address space and
//! new grants) started once the previous run's process has been reaped.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use keel_manifest::Manifest;

use super::grant_policy;
use crate::task::loader::{self, ModuleImage};
use crate::task::{sched, Process};

/// Runs started again after an earlier run of the same program was reaped (`restarts`).
pub static RESTARTS: AtomicU64 = AtomicU64::new(0);

/// The programs started so far, by manifest name (each with its latest run), how many runs
/// each has had, and how many could not be started or were still running at the deadline
/// (a run that exits unexpectedly is the program's last: [`unexpected_exits`] reports it).
pub struct Run {
    pub started: Vec<(String, Arc<Process>)>,
    pub runs: Vec<(String, u64)>,
    pub failures: u32,
}

impl Run {
    /// The process started for `name`, if it was.
    pub fn process(&self, name: &str) -> Option<&Arc<Process>> {
        self.started.iter().find(|(n, _)| n == name).map(|(_, p)| p)
    }

    /// Runs of `name` started so far (0 before its first).
    pub fn runs_of(&self, name: &str) -> u64 {
        self.runs.iter().find(|(n, _)| n == name).map_or(0, |(_, r)| *r)
    }

    /// Whether the latest run of `program` was its last: it has no restart left, or one
    /// of its runs ended unexpectedly (restarting it would hide that).
    fn finished_all_runs(&self, program: &keel_manifest::Program) -> bool {
        let Some(p) = self.process(&program.name) else { return false };
        p.is_destroyed()
            && (self.runs_of(&program.name) >= program.runs()
                || p.exit_code.load(Ordering::Acquire) != program.expect_exit.unwrap_or(0))
    }
}

/// The boot modules and the manifest among them.
pub fn load(boot: &fw::mm::BootContext) -> Result<(Vec<ModuleImage>, Manifest), String> {
    // The loader resolves granted devices by PCI ID: enumerate once, before any start.
    let _ = fw::pci::devices();
    let mods = loader::modules(boot);
    let manifest = loader::manifest(&mods)?;
    Ok((mods, manifest))
}

/// Starts every program of `manifest` in its `after` order and runs them until all have
/// exited or, when `deadline_ns` is given, until that time (`time::now_ns`) has passed.
pub fn run(manifest: &Manifest, mods: &[ModuleImage], deadline_ns: Option<u64>) -> Run {
    let mut run = Run { started: Vec::new(), runs: Vec::new(), failures: 0 };
    loop {
        start_ready(manifest, mods, &mut run);
        let all_started = run.started.len() == manifest.programs.len();
        let started = &run.started;
        let timeout = deadline_ns.map_or(u64::MAX, |d| d.saturating_sub(fw::time::now_ns()));
        let finished = sched::run_until(
            || {
                started.iter().all(|(_, p)| p.is_destroyed())
                    || started.iter().any(|(n, p)| {
                        p.is_destroyed()
                            && (waiting_on(manifest, started, n) || restart_due(manifest, &run, n))
                    })
            },
            timeout,
        );
        if !finished {
            log::error!("init: programs still running at the deadline");
            for (n, p) in &run.started {
                if !p.is_destroyed() {
                    log::error!("init: {n} (pid {}) did not exit", p.pid);
                }
            }
            run.failures += 1;
            return run;
        }
        if all_started && manifest.programs.iter().all(|p| run.finished_all_runs(p)) {
            return run;
        }
    }
}

/// Whether `name`'s latest run is over and another is due.
fn restart_due(manifest: &Manifest, run: &Run, name: &str) -> bool {
    manifest.program(name).is_some_and(|p| !run.finished_all_runs(p))
}

/// Starts every not-yet-started program whose predecessor (if any) has run for the last
/// time, and the next run of every program whose latest run was reaped with restarts left.
/// A program that cannot start counts as a failure and as exited (with no further run), so
/// its successors still run.
fn start_ready(manifest: &Manifest, mods: &[ModuleImage], run: &mut Run) {
    for program in &manifest.programs {
        let restart = match run.process(&program.name) {
            None => false,
            Some(_) if run.finished_all_runs(program) => continue,
            Some(p) if p.is_destroyed() => true,
            Some(_) => continue,
        };
        let ready = match &program.after {
            None => true,
            Some(prev) => manifest.program(prev).is_some_and(|p| run.finished_all_runs(p)),
        };
        if !ready {
            continue;
        }
        if restart {
            // The previous run was reaped; its last thread may still be being dropped on
            // its CPU (kernel stack and all): wait for that, so the heap and free frames
            // here are the same at every restart unless a run leaves something behind.
            if let Some(previous) = run.process(&program.name) {
                wait_sole_holder(previous);
            }
            let key = program.name.replace('-', "_");
            ev!(("proc.{}.heap_at_restart", key), fw::mm::heap::used_bytes());
            ev!(("proc.{}.free_frames_at_restart", key), fw::mm::frames::free_count());
        }
        let started = match grant_policy::start(manifest, program, mods) {
            Ok(p) => {
                if program.expect_refused {
                    log::error!(
                        "init: {} started, but the grant policy should refuse it",
                        program.name
                    );
                    run.failures += 1;
                }
                p
            }
            Err(grant_policy::StartError::Refused(_)) if program.expect_refused => {
                log::info!("init: {} refused, as its manifest expects", program.name);
                Process::new_dead(&program.name)
            }
            Err(e) => {
                log::error!("init: cannot start {}: {e}", program.name);
                ev!(("proc.{}.start_error", program.name.replace('-', "_")), "yes");
                run.failures += 1;
                Process::new_dead(&program.name)
            }
        };
        // A failed start reports `u64::MAX`: never the expected code, so no further run.
        if restart {
            RESTARTS.fetch_add(1, Ordering::Relaxed);
        }
        match run.started.iter_mut().find(|(n, _)| *n == program.name) {
            Some((_, latest)) => *latest = started,
            None => run.started.push((program.name.clone(), started)),
        }
        match run.runs.iter_mut().find(|(n, _)| *n == program.name) {
            Some((_, runs)) => *runs += 1,
            None => run.runs.push((program.name.clone(), 1)),
        }
    }
}

/// Waits (at most a second) until `p` is referenced by the caller alone: the scheduler of
/// the CPU that reaped its last thread drops that thread (and its stack) just after.
fn wait_sole_holder(p: &Arc<Process>) {
    let deadline = fw::time::now_ns() + 1_000_000_000;
    while Arc::strong_count(p) > 1 {
        if fw::time::now_ns() > deadline {
            log::warn!("init: pid {} still referenced after its reap", p.pid);
            return;
        }
        core::hint::spin_loop();
    }
    // The last reference may have gone with the last thread, still being freed on its CPU.
    crate::task::sched::wait_reaps_done();
}

/// Whether some not-yet-started program waits for `name` (so the loop must go start it).
fn waiting_on(manifest: &Manifest, started: &[(String, Arc<Process>)], name: &str) -> bool {
    manifest
        .programs
        .iter()
        .any(|p| p.after.as_deref() == Some(name) && !started.iter().any(|(n, _)| *n == p.name))
}

/// Programs whose exit code differs from their manifest's `expect_exit` (0 unless given);
/// each is logged.
pub fn unexpected_exits(manifest: &Manifest, run: &Run) -> u32 {
    let mut wrong = 0;
    for program in &manifest.programs {
        let Some(p) = run.process(&program.name) else { continue };
        let code = p.exit_code.load(Ordering::Acquire);
        // A refused program is reported as exited with u64::MAX.
        let expected =
            if program.expect_refused { u64::MAX } else { program.expect_exit.unwrap_or(0) };
        if code != expected {
            log::error!("init: {} exited with {code:#x}, expected {expected:#x}", program.name);
            wrong += 1;
        }
    }
    wrong
}
