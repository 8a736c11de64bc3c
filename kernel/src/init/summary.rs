//! The summary at the end of a plain boot: the CPU lines (from the framework's bring-up
//! report), then how each program of the boot manifest ended (its process's exit code against
//! the manifest's expectation).

use core::sync::atomic::Ordering;

use fw::bringup::{report, System};

/// Every line of the final summary.
pub fn final_summary(
    system: &System,
    manifest: &keel_manifest::Manifest,
    run: &super::programs::Run,
) {
    report::cpu_summary(system);
    for program in &manifest.programs {
        let expected = program.expect_exit.unwrap_or(0);
        match run.process(&program.name) {
            Some(p) => {
                let code = p.exit_code.load(Ordering::Acquire);
                if code == expected {
                    log::info!(
                        "summary: program {}: {}, as the manifest expects",
                        program.name,
                        ExitStatus(code)
                    );
                } else {
                    log::info!(
                        "summary: program {}: {}, but the manifest expects {}",
                        program.name,
                        ExitStatus(code),
                        ExitStatus(expected)
                    );
                }
            }
            None => log::info!("summary: program {}: never started", program.name),
        }
    }
}

/// A program's exit status in words: a code it passed to `exit`, or the fault that ended it
/// (the kernel reports a thread killed by exception vector `v` as `0xFFFF_0000 | v`).
struct ExitStatus(u64);

impl core::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let code = self.0;
        if code >> 16 == 0xFFFF {
            let name = match code & 0xFFFF {
                0 => "#DE",
                6 => "#UD",
                13 => "#GP",
                14 => "#PF",
                _ => "exception",
            };
            write!(f, "killed by {name} ({code:#x})")
        } else {
            write!(f, "exited {code:#x}")
        }
    }
}
