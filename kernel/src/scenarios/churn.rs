//! Endurance evidence of a `proof=user` run: how much the programs churned, read from the
//! counters kept on the kernel's own paths (frames `VmMap` mapped and `VmUnmap` freed,
//! threads created and reaped, processes created and reaped, restarted runs, capabilities
//! copied and released and the fullest table), the wall time,
//! and the frame allocator's invariants checked on the real bitmap at both ends.

use core::sync::atomic::Ordering;

use crate::init::programs::RESTARTS;
use crate::object::cap;
use crate::object::virtual_memory::{FRAMES_MAPPED, FRAMES_UNMAPPED};
use crate::task::{process, thread};
use fw::mm::frames;

/// The counters at the start of the run.
pub struct Churn {
    started_ns: u64,
    frames_mapped: u64,
    frames_unmapped: u64,
    threads_created: u64,
    threads_reaped: u64,
    processes_created: u64,
    processes_reaped: u64,
    restarts: u64,
    cap_copies: u64,
    cap_releases: u64,
    cap_copies_refused_full: u64,
}

impl Churn {
    /// Reads every counter, checks the allocator and reports its free frames now.
    pub fn start() -> Churn {
        ev!("mm.free_frames_start", frames::free_count());
        ev!("mm.invariants_start", invariants());
        Churn {
            started_ns: fw::time::now_ns(),
            frames_mapped: FRAMES_MAPPED.load(Ordering::Relaxed),
            frames_unmapped: FRAMES_UNMAPPED.load(Ordering::Relaxed),
            threads_created: thread::created(),
            threads_reaped: process::THREADS_REAPED.load(Ordering::Relaxed),
            processes_created: process::created(),
            processes_reaped: process::PROCESSES_REAPED.load(Ordering::Relaxed),
            restarts: RESTARTS.load(Ordering::Relaxed),
            cap_copies: cap::COPIES.load(Ordering::Relaxed),
            cap_releases: cap::RELEASES.load(Ordering::Relaxed),
            cap_copies_refused_full: cap::COPIES_REFUSED_FULL.load(Ordering::Relaxed),
        }
    }

    /// The programs have run: what each counter moved by and the wall time.
    pub fn programs_done(&self) {
        let ms = (fw::time::now_ns() - self.started_ns) / 1_000_000;
        let mapped = FRAMES_MAPPED.load(Ordering::Relaxed) - self.frames_mapped;
        let unmapped = FRAMES_UNMAPPED.load(Ordering::Relaxed) - self.frames_unmapped;
        ev!("churn.wall_ms", ms);
        ev!("churn.vm_frames_mapped", mapped);
        ev!("churn.vm_frames_unmapped", unmapped);
        ev!("churn.vm_bytes_unmapped", unmapped * keel_mm::FRAME_SIZE);
        ev!("churn.threads_created", thread::created() - self.threads_created);
        ev!(
            "churn.threads_reaped",
            process::THREADS_REAPED.load(Ordering::Relaxed) - self.threads_reaped
        );
        ev!("churn.processes_created", process::created() - self.processes_created);
        ev!(
            "churn.processes_reaped",
            process::PROCESSES_REAPED.load(Ordering::Relaxed) - self.processes_reaped
        );
        ev!("churn.restarts", RESTARTS.load(Ordering::Relaxed) - self.restarts);
        ev!("churn.cap_copies", cap::COPIES.load(Ordering::Relaxed) - self.cap_copies);
        ev!("churn.cap_releases", cap::RELEASES.load(Ordering::Relaxed) - self.cap_releases);
        ev!(
            "churn.cap_copies_refused_full",
            cap::COPIES_REFUSED_FULL.load(Ordering::Relaxed) - self.cap_copies_refused_full
        );
        ev!("churn.cap_table_peak", cap::TABLE_PEAK.load(Ordering::Relaxed));
    }

    /// After the proof dropped its references: the allocator's invariants and free frames
    /// at the end; false when the invariants are broken.
    pub fn end() -> bool {
        ev!("mm.free_frames_end", frames::free_count());
        let result = invariants();
        ev!("mm.invariants", result);
        result == "ok"
    }
}

/// `ok`, or which invariant the allocator found broken (the details go to the log).
fn invariants() -> &'static str {
    use keel_mm::InvariantError;
    let Err(e) = frames::check_invariants() else { return "ok" };
    log::error!("mm: frame allocator invariant broken: {e:?}");
    match e {
        InvariantError::FreeCount { .. } => "free_count_off",
        InvariantError::FreeNotManaged(_) => "free_not_managed",
        InvariantError::BitPastWindow(_) => "bit_past_window",
    }
}
