//! Which runs the registry expands to on this host (`plan`), and the registry's sanity
//! rules (`validate`, `validate_files`), enforced by unit tests.

use super::{Accels, Proof};
#[cfg(test)]
use crate::builder::Image;
use crate::qemu::{Accel, AccelEnv, KvmBackend};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub proof: usize,
    pub accel: Accel,
    /// `Some(reason)`: reported as skipped, not run.
    pub skip: Option<String>,
}

const NO_KVM: &str = "needs KVM: /dev/kvm not available";
pub const PVM_RING3: &str =
    "KVM here is PVM (kvm_pvm): a guest's ring-3 syscall/int 0x80 does not reach its kernel";

/// Expand proofs into (proof, accelerator) runs for this host.
pub fn plan(proofs: &[Proof], env: &AccelEnv) -> Vec<Job> {
    let mut jobs = Vec::new();
    for (i, p) in proofs.iter().enumerate() {
        let run = |accel| Job { proof: i, accel, skip: None };
        let skip = |accel, why: &str| Job { proof: i, accel, skip: Some(why.to_string()) };
        let kvm = || match env.kvm {
            None => skip(Accel::Kvm, NO_KVM),
            Some(KvmBackend::Pvm) if p.guest_ring3 => skip(Accel::Kvm, PVM_RING3),
            Some(_) => run(Accel::Kvm),
        };
        match (p.effective_accels(), env.forced) {
            (Accels::Any, None) => {
                jobs.push(run(Accel::Tcg));
                if env.kvm_available() {
                    jobs.push(kvm());
                }
            }
            (Accels::Any | Accels::TcgOnly, Some(Accel::Tcg)) | (Accels::TcgOnly, None) => {
                jobs.push(run(Accel::Tcg))
            }
            (Accels::Any | Accels::KvmOnly, Some(Accel::Kvm)) | (Accels::KvmOnly, None) => {
                jobs.push(kvm())
            }
            (Accels::KvmOnly, Some(Accel::Tcg)) => {
                jobs.push(skip(Accel::Kvm, "needs KVM: KEEL_ACCEL=tcg"))
            }
            (Accels::TcgOnly, Some(Accel::Kvm)) => {
                jobs.push(skip(Accel::Tcg, "TCG only: KEEL_ACCEL=kvm"))
            }
        }
    }
    jobs
}

/// Registry sanity rules, enforced by a unit test so a bad entry fails
/// `cargo test` instead of a boot.
#[cfg(test)]
pub fn validate(proofs: &[Proof]) -> Vec<String> {
    let mut errs = Vec::new();
    let mut names = std::collections::HashSet::new();
    for p in proofs {
        if !names.insert(p.name) {
            errs.push(format!("{}: duplicate proof name", p.name));
        }
        // Names become file names and `make run-<name>` targets; the scenario goes on the
        // kernel command line, so it must be a plain word.
        if p.name.is_empty()
            || !p
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        {
            errs.push(format!("{}: name must be [a-z0-9_-]+", p.name));
        }
        // No scenario (the kernel's plain boot) only on the images that have none: the plain
        // kernel and the example kernel.
        let plain_boot = p.scenario.is_empty() && matches!(p.image, Image::Plain | Image::Example);
        if !plain_boot && (!keel_evidence::is_valid_key(p.scenario) || p.scenario.contains('.')) {
            errs.push(format!("{}: scenario {:?} must be [a-z0-9_]+", p.name, p.scenario));
        }
        for ev in &p.trace_events {
            if ev.is_empty()
                || !ev.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                errs.push(format!("{}: trace event {ev:?} must be [a-z0-9_]+", p.name));
            }
        }
        if !p.trace_checks.is_empty() && p.trace_events.is_empty() {
            errs.push(format!("{}: trace_check without .trace(..) events", p.name));
        }
        if !p.trace_events.is_empty() && p.accels == Accels::KvmOnly {
            errs.push(format!("{}: traced proofs are TCG-only but accels is KvmOnly", p.name));
        }
        if let Some(m) = p.manifest {
            if m.starts_with('/') || m.contains(',') || m.contains(' ') {
                errs.push(format!(
                    "{}: manifest {m:?} must be a repo-relative path without ',' or ' '",
                    p.name
                ));
            }
        }
        for prog in &p.programs {
            if prog.is_empty() || prog.contains(['/', ',', ' ']) {
                errs.push(format!("{}: program {prog:?} must be a plain binary name", p.name));
            }
        }
        if plain_boot {
            if p.cmdline.split_whitespace().any(|w| w.starts_with("proof=")) {
                errs.push(format!(
                    "{}: cmdline {:?} of a plain boot names a scenario",
                    p.name, p.cmdline
                ));
            }
        } else if !p.cmdline.split_whitespace().any(|w| w == format!("proof={}", p.scenario)) {
            errs.push(format!("{}: cmdline {:?} lacks proof={}", p.name, p.cmdline, p.name));
        }
        for accel in [Accel::Tcg, Accel::Kvm] {
            let cpu = p.machine.cpu.arg(accel);
            if !cpu.split(',').any(|f| f == "+x2apic" || f == "-x2apic") {
                errs.push(format!(
                    "{}: -cpu {cpu} under {accel} must say +x2apic or -x2apic",
                    p.name
                ));
            }
        }
        for c in &p.checks {
            for k in c.names() {
                if !keel_evidence::is_valid_pattern(k) {
                    errs.push(format!("{}: check {c} names invalid key/pattern {k:?}", p.name));
                }
            }
        }
        if p.timeout.is_zero() {
            errs.push(format!("{}: zero timeout", p.name));
        }
    }
    errs
}

/// Rules that need the checkout: manifests exist under `root`, and programs are
/// user binaries (checked only when `user_bins` is known, i.e. `user/` exists).
#[cfg(test)]
pub fn validate_files(
    proofs: &[Proof],
    root: &std::path::Path,
    user_bins: Option<&[String]>,
) -> Vec<String> {
    let mut errs = Vec::new();
    for p in proofs {
        if let Some(m) = p.manifest {
            if !root.join(m).is_file() {
                errs.push(format!("{}: manifest {m} does not exist", p.name));
            }
        }
        if let Some(bins) = user_bins {
            for prog in &p.programs {
                if !bins.iter().any(|b| b == prog) {
                    errs.push(format!(
                        "{}: program {prog:?} is not a user binary (have: {})",
                        p.name,
                        bins.join(", ")
                    ));
                }
            }
        }
    }
    errs
}
