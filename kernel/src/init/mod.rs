//! What a plain boot does: the framework's bring-up (`fw::bringup`), then the boot
//! manifest's programs in ring 3 until they have all exited ([`run`]). The proof scenarios
//! (the `scenarios` feature) run on the [`System`] bring-up returns instead of [`run`]'s
//! programs.

pub mod grant_policy;
pub mod programs;
pub mod summary;

use keel_boot::cmdline::CommandLine;
use keel_platform::Platform;

use fw::arch::x86_64::smp as smp_arch;
pub use fw::bringup::{bring_up, System};
use fw::exit::verdict;
use fw::mm::BootContext;

/// A plain boot: bring-up, then the boot manifest's programs until every one has exited;
/// the machine then halts (status pass when each exited as its manifest expects). Without a
/// manifest module there is nothing to start and the kernel halts after bring-up.
pub fn run(platform: &'static Platform, cmdline: &CommandLine, boot: &BootContext) -> ! {
    let system = bring_up(platform, cmdline);
    if !system.all_online() {
        log::warn!(
            "init: {} of {} CPUs came online",
            smp_arch::online_count(),
            system.expected_online
        );
    }
    if boot.modules.is_empty() {
        log::info!("init: no boot modules, so no manifest and no programs; halting");
        ev!("init.programs", 0);
        verdict(true, "")
    }
    let (mods, manifest) = match programs::load(boot) {
        Ok(loaded) => loaded,
        Err(e) => {
            log::error!("init: {e}");
            verdict(false, "no usable manifest")
        }
    };
    log::info!("init: starting {} programs of the boot manifest", manifest.programs.len());
    ev!("init.programs", manifest.programs.len());
    let run = programs::run(&manifest, &mods, None);
    let failures = run.failures + programs::unexpected_exits(&manifest, &run);
    ev!("init.programs_exited", run.started.iter().filter(|(_, p)| p.is_destroyed()).count());
    ev!("init.failures", failures);
    log::info!("init: every program has exited ({failures} failures); halting");
    summary::final_summary(&system, &manifest, &run);
    verdict(failures == 0, "programs failed")
}
