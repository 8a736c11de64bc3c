//! `bench-timer-sleep`: how late a ring-3 `TimerSleep` of 1 ms and of 10 ms returns
//! (`smptest mode=sleep`, `manifests/timer-sleep.manifest`), tickless; `bench-compare
//! --timer` sets it beside Linux's `clock_nanosleep`.

use crate::checks::{custom, Check};
use crate::trace::ev_u64;

use super::{user, xapic_cpu, Proof, TICKLESS};

const SLEEP_BENCH_PROOF: &str = "bench-timer-sleep";
/// The sleep lengths `smptest mode=sleep` measures (its `sleep_<ms>ms.*` evidence).
const SLEEP_BENCH_LENGTHS_MS: [u64; 2] = [1, 10];
/// Samples per length (`n=` in the manifest).
const SAMPLES: u64 = 200;
/// Median lateness allowed: an armed deadline wakes within microseconds plus the host's
/// delays of a vCPU thread (tens of ms seen on the loaded 2-core host under TCG); a sleep
/// left to the 250 ms watchdog, or a deadline set late, is past it.
const MEDIAN_LATE_BOUND_NS: u64 = 20_000_000;

/// Every sleep length: all samples taken, none returned before the time asked, median
/// lateness within [`MEDIAN_LATE_BOUND_NS`].
fn sleeps_on_time() -> Check {
    custom("ring-3 sleeps of 1 and 10 ms (200 each): none early, median lateness <= 20 ms", |t| {
        for ms in SLEEP_BENCH_LENGTHS_MS {
            let key = |f: &str| format!("user.smptest.sleep_{ms}ms.{f}");
            let samples = ev_u64(t, &key("samples"))?;
            if samples != SAMPLES {
                return Err(format!("{} = {samples}, want {SAMPLES}", key("samples")));
            }
            let early = ev_u64(t, &key("early"))?;
            if early != 0 {
                return Err(format!("{} = {early}: returned before the time asked", key("early")));
            }
            let median = ev_u64(t, &key("median_ns"))?;
            if median > MEDIAN_LATE_BOUND_NS {
                return Err(format!(
                    "{} = {median}, want <= {MEDIAN_LATE_BOUND_NS}",
                    key("median_ns")
                ));
            }
        }
        Ok(())
    })
}

pub(super) fn proof() -> Proof {
    user::user_proof(
        Proof::new(SLEEP_BENCH_PROOF, "timer=tickless: ring-3 TimerSleep of 1 ms and 10 ms on an otherwise idle CPU, 200 each: none early, median lateness <= 20 ms (wake-up latency for bench-compare --timer)"),
        "timer-sleep",
        &["smptest"],
    )
    .args(TICKLESS)
    .cpu(xapic_cpu())
    .bench()
    .check(crate::checks::eq("proc.smptest.exit", 0))
    .check(sleeps_on_time())
}
