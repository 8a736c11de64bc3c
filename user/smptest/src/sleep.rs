//! `mode=sleep n=N`: how late a ring-3 `TimerSleep` returns. The thread sleeps `N` times
//! 1 ms, then `N` times 10 ms, and times each call on the TSC from before the submission to
//! after the completion (system call, timed list, timer interrupt, wake-up and switch back
//! included), as `clock_nanosleep` is timed on Linux in `bench/linux/kbench.c`.

use keel_rt::abi::{Method, ObjectKind};
use keel_rt::util::{arg_u64, cap, percentiles, rdtsc};
use keel_rt::{ev, ring};

/// Samples kept per sleep length (the `n=` argument is clamped to it).
const MAX_SAMPLES: usize = 1000;
/// Sleeps before the measured ones (the first wake-ups of a cold path).
const WARMUP: usize = 5;
/// The sleep lengths measured, in milliseconds.
const LENGTHS_MS: [u64; 2] = [1, 10];

/// Reports `sleep_<ms>ms.{samples,early,min_ns,median_ns,p99_ns,max_ns}`; lateness is the
/// observed duration minus the requested one, `early` counts calls that returned before it.
pub fn sleep() -> u64 {
    let n = (arg_u64("n", 200) as usize).clamp(1, MAX_SAMPLES);
    let timer = cap(ObjectKind::Timer);
    let tsc_hz = match ring().expect("ring").call(timer, Method::TimerTscHz, [0; 4]) {
        Ok(c) if c.results[0] > 0 => c.results[0],
        _ => return 2,
    };
    ev!("sleep.tsc_hz", tsc_hz);
    let mut late = [0u64; MAX_SAMPLES];
    for ms in LENGTHS_MS {
        let asked_ns = ms * 1_000_000;
        let mut early = 0u64;
        for i in 0..WARMUP + n {
            let mut r = ring().expect("ring");
            let t0 = rdtsc();
            if r.timer_sleep(timer, asked_ns).is_err() {
                return 3;
            }
            let cycles = rdtsc().wrapping_sub(t0);
            let took_ns = (u128::from(cycles) * 1_000_000_000 / u128::from(tsc_hz)) as u64;
            if i >= WARMUP {
                early += u64::from(took_ns < asked_ns);
                late[i - WARMUP] = took_ns.saturating_sub(asked_ns);
            }
        }
        let kept = &mut late[..n];
        let (median, p99) = percentiles(kept);
        ev!(format_args!("sleep_{ms}ms.samples"), n);
        ev!(format_args!("sleep_{ms}ms.early"), early);
        ev!(format_args!("sleep_{ms}ms.min_ns"), kept[0]);
        ev!(format_args!("sleep_{ms}ms.median_ns"), median);
        ev!(format_args!("sleep_{ms}ms.p99_ns"), p99);
        ev!(format_args!("sleep_{ms}ms.max_ns"), kept[n - 1]);
    }
    0
}
