//! What both comparison reports (`bench-compare` and `--bringup`) list besides their
//! figures: the host, the Linux guest, every boot with its QEMU command line, and the notes.

use std::fmt::Write as _;

use super::linux::Guest;
use super::LinuxRun;
use crate::qemu::{shell_quote, Accel};
use crate::report::HostInfo;
use crate::runner::JobResult;

/// The boots of one comparison and where they ran.
pub struct Runs<'a> {
    pub host: &'a HostInfo,
    pub guest: &'a Guest,
    pub linux: &'a [LinuxRun],
    pub keel: &'a [JobResult],
    pub notes: &'a [String],
}

/// The accelerator as the reports name it (TCG marked as emulation).
pub fn accel_label(a: Accel) -> &'static str {
    match a {
        Accel::Tcg => "TCG (emulation)",
        Accel::Kvm => "KVM",
    }
}

impl Runs<'_> {
    /// `## Notes` and one item per note; nothing without notes.
    pub fn notes_markdown(&self, s: &mut String) {
        if self.notes.is_empty() {
            return;
        }
        let _ = writeln!(s, "\n## Notes\n");
        for n in self.notes {
            let _ = writeln!(s, "* {n}");
        }
    }

    /// `## Runs and QEMU command lines`: every Linux boot, then every Keel boot, each with
    /// its accelerator, wall time, outcome and command line.
    pub fn command_lines_markdown(&self, s: &mut String) {
        let _ = writeln!(s, "\n## Runs and QEMU command lines\n\n### Linux\n");
        for r in self.linux {
            let status = r.failure.as_deref().unwrap_or("ok");
            let secs = r.output.as_ref().map_or(0.0, |o| o.elapsed.as_secs_f64());
            let _ = writeln!(
                s,
                "* `{}` ({}, {secs:.1}s): {status}\n\n      qemu-system-x86_64 {}\n",
                r.label,
                accel_label(r.accel),
                shell_quote(&r.args)
            );
        }
        let _ = writeln!(s, "### Keel\n");
        for r in self.keel {
            let _ = writeln!(
                s,
                "* `{}` ({}, {:.1}s): {}\n\n      qemu-system-x86_64 {}\n",
                r.name,
                accel_label(r.accel),
                r.secs().unwrap_or(0.0),
                crate::report::verdict_cell(r),
                shell_quote(&r.args)
            );
        }
    }
}
