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

/// The groups, in the order `make mutants` runs them.
const GROUPS: &[&[Break]] = &[
    general::BREAKS,
    interrupts::BREAKS,
    time::BREAKS,
    endurance::BREAKS,
    drivers::BREAKS,
    proofs::BREAKS,
    amd::BREAKS,
];

/// Every curated break.
pub fn breaks() -> impl Iterator<Item = &'static Break> {
    GROUPS.iter().flat_map(|group| group.iter())
}
