//! The curated kernel breaks. Each one is a small textual edit that makes the kernel (or a
//! user program) wrong in one specific way, and names the proofs that must then fail.
//!
//! Snippets are short and unique so the list survives code motion: an edit matches its
//! snippet wherever it moved inside the file, and a snippet that is gone or ambiguous stops
//! the run with "break no longer applies" instead of silently testing nothing.

use crate::qemu::Accel;

mod amd;
mod drivers;
mod endurance;
mod general;
mod interrupts;
mod proofs;
mod time;

/// One textual replacement in one file (path relative to the repository root).
pub struct Edit {
    pub file: &'static str,
    /// Must occur exactly once in the file.
    pub find: &'static str,
    pub replace: &'static str,
}

/// A deliberate break and the proofs that must catch it.
pub struct Break {
    pub name: &'static str,
    /// What the break does, in words.
    pub what: &'static str,
    pub edits: &'static [Edit],
    /// Every one of these proofs must fail with the break applied.
    pub proofs: &'static [&'static str],
    /// TCG, except where only KVM exposes the feature under test (TSC-deadline).
    pub accel: Accel,
}

/// The areas, each with its file's breaks, in the order `make mutants` runs them.
pub const AREAS: &[(&str, &[Break])] = &[
    ("general", general::BREAKS),
    ("interrupts", interrupts::BREAKS),
    ("time", time::BREAKS),
    ("endurance", endurance::BREAKS),
    ("drivers", drivers::BREAKS),
    ("proofs", proofs::BREAKS),
    ("amd", amd::BREAKS),
];

/// Every curated break.
pub fn breaks() -> impl Iterator<Item = &'static Break> {
    AREAS.iter().flat_map(|(_, group)| group.iter())
}

/// The breaks of one area (`--area`): the whole run takes hours on two cores, an area a
/// fraction of that.
pub fn area(name: &str) -> Option<&'static [Break]> {
    AREAS.iter().find(|(n, _)| *n == name).map(|(_, group)| *group)
}
