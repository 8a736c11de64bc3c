//! Measures the capability ring: a no-op call (`Nop` submitted, `cap_enter(1)`, completion
//! consumed) one at a time, and 32 no-ops per `cap_enter`, in TSC cycles.
#![no_std]
#![no_main]

use keel_rt::abi::{Method, Submission, TIMEOUT_INFINITE};
use keel_rt::util::{arg_u64, percentiles, rdtsc};
use keel_rt::{ev, ring, CapId};

keel_rt::entry!(main);

const MAX: usize = 20_000;

/// Sample storage in .bss (too large for the 64 KiB user stack).
static mut SAMPLES: [u64; MAX] = [0; MAX];
static mut BATCH_SAMPLES: [u64; MAX / 32] = [0; MAX / 32];

fn main() -> u64 {
    let calls = (arg_u64("calls", 10_000) as usize).min(MAX);
    // SAFETY: single-threaded program; these are the only references to the statics.
    let (samples, batch_samples) = unsafe {
        (&mut *core::ptr::addr_of_mut!(SAMPLES), &mut *core::ptr::addr_of_mut!(BATCH_SAMPLES))
    };
    let mut ring = ring().expect("ring");
    // Warm-up, discarded.
    for _ in 0..1000 {
        let _ = ring.call(CapId::NULL, Method::Nop, [0; 4]);
    }
    for s in samples.iter_mut().take(calls) {
        let t0 = rdtsc();
        let c = ring.call(CapId::NULL, Method::Nop, [0; 4]);
        *s = rdtsc() - t0;
        if c.is_err() {
            return 1;
        }
    }
    let (median, p99) = percentiles(&mut samples[..calls]);

    // Batched: 32 submissions, one system call, 32 completions.
    let batches = calls / 32;
    for (b, s) in batch_samples.iter_mut().take(batches).enumerate() {
        let t0 = rdtsc();
        for k in 0..32 {
            let sub = Submission {
                cap: 0,
                method: Method::Nop as u16,
                flags: 0,
                args: [0; 4],
                user_data: (b * 32 + k) as u64,
            };
            if ring.submit(sub).is_err() {
                return 2;
            }
        }
        if ring.enter(32, TIMEOUT_INFINITE).is_err() {
            return 3;
        }
        let mut n = 0;
        while ring.next_completion().is_some() {
            n += 1;
        }
        *s = (rdtsc() - t0) / 32;
        if n != 32 {
            return 4;
        }
    }
    let (batch_median, batch_p99) = percentiles(&mut batch_samples[..batches]);
    drop(ring);
    ev!("nop_calls", calls);
    ev!("nop_call_median_cycles", median);
    ev!("nop_call_p99_cycles", p99);
    ev!("nop_batched_median_cycles_per_call", batch_median);
    ev!("nop_batched_p99_cycles_per_call", batch_p99);
    0
}
