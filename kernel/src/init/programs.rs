//! Starting the boot manifest's programs: the manifest and the program ELFs arrive as boot
//! modules; each program starts in ring 3 once the one its entry names in `after = "x"` has
//! exited, and the kernel runs them until every one has exited.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use keel_manifest::Manifest;

use crate::task::loader::{self, ModuleImage};
use crate::task::{sched, Process};

/// The programs started so far, by manifest name, and how many could not be started or
/// were still running at the deadline.
pub struct Run {
    pub started: Vec<(String, Arc<Process>)>,
    pub failures: u32,
}

impl Run {
    /// The process started for `name`, if it was.
    pub fn process(&self, name: &str) -> Option<&Arc<Process>> {
        self.started.iter().find(|(n, _)| n == name).map(|(_, p)| p)
    }
}

/// The boot modules and the manifest among them.
pub fn load(boot: &crate::mm::BootContext) -> Result<(Vec<ModuleImage>, Manifest), String> {
    // The loader resolves granted devices by PCI ID: enumerate once, before any start.
    let _ = crate::pci::devices();
    let mods = loader::modules(boot);
    let manifest = loader::manifest(&mods)?;
    Ok((mods, manifest))
}

/// Starts every program of `manifest` in its `after` order and runs them until all have
/// exited or, when `deadline_ns` is given, until that time (`time::now_ns`) has passed.
pub fn run(manifest: &Manifest, mods: &[ModuleImage], deadline_ns: Option<u64>) -> Run {
    let mut run = Run { started: Vec::new(), failures: 0 };
    loop {
        start_ready(manifest, mods, &mut run);
        let all_started = run.started.len() == manifest.programs.len();
        let started = &run.started;
        let timeout = deadline_ns.map_or(u64::MAX, |d| d.saturating_sub(crate::time::now_ns()));
        let finished = sched::run_until(
            || {
                started.iter().all(|(_, p)| p.is_destroyed())
                    || started
                        .iter()
                        .any(|(n, p)| p.is_destroyed() && waiting_on(manifest, started, n))
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
        if all_started && run.started.iter().all(|(_, p)| p.is_destroyed()) {
            return run;
        }
    }
}

/// Starts every not-yet-started program whose predecessor (if any) has exited. A program
/// that cannot start counts as a failure and as exited, so its successors still run.
fn start_ready(manifest: &Manifest, mods: &[ModuleImage], run: &mut Run) {
    for program in &manifest.programs {
        if run.process(&program.name).is_some() {
            continue;
        }
        let ready = match &program.after {
            None => true,
            Some(prev) => run.process(prev).is_some_and(|p| p.is_destroyed()),
        };
        if !ready {
            continue;
        }
        match loader::start(manifest, program, mods) {
            Ok(p) => {
                if program.expect_refused {
                    log::error!(
                        "init: {} started, but the grant policy should refuse it",
                        program.name
                    );
                    run.failures += 1;
                }
                run.started.push((program.name.clone(), p))
            }
            Err(loader::StartError::Refused(_)) if program.expect_refused => {
                log::info!("init: {} refused, as its manifest expects", program.name);
                run.started.push((program.name.clone(), Process::new_dead(&program.name)));
            }
            Err(e) => {
                log::error!("init: cannot start {}: {e}", program.name);
                ev!(("proc.{}.start_error", program.name.replace('-', "_")), "yes");
                run.failures += 1;
                run.started.push((program.name.clone(), Process::new_dead(&program.name)));
            }
        }
    }
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
