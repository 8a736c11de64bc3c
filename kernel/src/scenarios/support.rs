//! Helpers every scenario may use. They live apart from the scenario table (`mod.rs`), so
//! that the scenarios import them without importing the table that names the scenarios.

use keel_boot::cmdline::CommandLine;

/// A numeric command-line option with a default; a malformed value is reported and ignored.
pub fn option_u64(cmdline: &CommandLine, key: &str, default: u64) -> u64 {
    match cmdline.get_u64(key) {
        Ok(Some(v)) => v,
        Ok(None) => default,
        Err(e) => {
            log::warn!("command line: {key}: {e:?}; using {default}");
            default
        }
    }
}

/// Lets time pass on the boot CPU with interrupts on (ticks keep arriving everywhere).
pub fn sleep_ms(ms: u64) {
    // Tickless, the timer is armed for the end: no tick is needed to wake up.
    fw::arch::x86_64::oneshot::halt_until(fw::time::now_ns() + ms * 1_000_000);
}
