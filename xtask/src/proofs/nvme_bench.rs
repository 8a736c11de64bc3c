//! The NVMe driver's random-read benchmark (`user/nvme-driver/src/bench.rs`): 4 KiB reads at
//! xorshift block numbers over a 16 MiB namespace, queue depth 1 or 32, one queue or one per
//! CPU, each queue's completions by its MSI-X vector on its thread's CPU. The proofs pass
//! only if every read completed without error, the first and last word of every block read
//! matched the image pattern, and the first blocks of each queue matched word by word;
//! `cargo xtask bench-compare --nvme` takes IOPS and the latency median and p99 from them.

use super::{user_proof, Accels, Proof};
use crate::checks::{custom, eq, ge, keys_equal};
use crate::trace::ev_u64;

/// The benchmark's disk: 4,096 blocks of 4 KiB (the Linux guest reads the same image).
pub const DISK_BYTES: u64 = 16 << 20;
/// Reads per queue (`bench=` of `manifests/nvme-bench-*.manifest`; `kbench nvme` too).
pub const READS: u64 = 2000;
/// Most CPUs (so queues) a run uses: the driver's `workers::MAX_QUEUES`.
pub const MAX_SMP: u32 = 8;
/// The device, as on the Linux side: queue pairs offered, serial.
pub const DEVICE: &str = "nvme,serial=keel-bench-0,drive=nvm0,max_ioqpairs=8";

pub fn proofs() -> Vec<Proof> {
    let mut v = Vec::new();
    for qd in [1, 32] {
        for per_cpu in [false, true] {
            v.push(bench_nvme(qd, per_cpu, 2));
        }
        // Eight queues of 32 reads: 312 pages of the domain's IOVA window.
        v.push(bench_nvme(qd, true, MAX_SMP));
    }
    v
}

/// `bench-nvme-qd<qd>-<q1|percpu>` on `smp` CPUs (`-smp<n>` appended above 2): one queue on
/// CPU 1, or one queue per CPU.
pub fn bench_nvme(qd: u64, per_cpu: bool, smp: u32) -> Proof {
    let queues = if per_cpu { smp as u64 } else { 1 };
    let shape = if per_cpu { "percpu" } else { "q1" };
    let suffix = if smp == 2 { String::new() } else { format!("-smp{smp}") };
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let name = leak(format!("bench-nvme-qd{qd}-{shape}{suffix}"));
    let description = leak(format!(
        "NVMe 4 KiB random reads, queue depth {qd}, {}: IOPS, completion latency p50/p99 (x2APIC, VT-d)",
        if per_cpu { format!("one queue per CPU ({smp})") } else { "one queue on CPU 1".into() }
    ));
    let manifest = leak(if per_cpu {
        format!("nvme-bench-{smp}-qd{qd}")
    } else {
        format!("nvme-bench-q1-qd{qd}")
    });
    let config = format!("qd{qd}_q{queues}");
    let k = |f: &str| leak(format!("user.nvme_bench.{config}.{f}"));
    let mut p = user_proof(Proof::new(name, description), manifest, &["nvme-driver"])
        .machine("q35,kernel-irqchip=split")
        .smp(smp)
        .qemu_extra(&["-device", "intel-iommu,intremap=on,eim=on"])
        .qemu_extra(&["-device", DEVICE])
        .disk("nvm0", DISK_BYTES, None)
        .accels(Accels::TcgOnly)
        .timeout_secs(300)
        .bench()
        .check(eq("proc.nvme_bench.exit", 0))
        .check(eq(k("reads"), READS * queues))
        .check(eq(k("completed"), READS * queues))
        .check(eq(k("verified"), READS * queues))
        .check(eq(k("full_checked"), 8 * queues))
        .check(keys_equal(k("full_matching"), k("full_checked")))
        .check(eq(k("errors"), 0))
        .check(eq(k("lost"), 0))
        .check(eq(k("samples"), READS * queues))
        .check(ge(k("iops"), 1))
        .check(latency_ordered(k("median_cycles"), k("p99_cycles")))
        .check(eq("user.nvme_bench.bench.disabled", "yes"))
        .check(eq("iommu.dma_faults", 0))
        .check(eq("iommu.dma.domains_live", 0));
    for q in 1..=queues {
        let cpu = if per_cpu { q - 1 } else { 1 };
        p = p.check(eq(leak(format!("user.nvme_bench.{config}.q{q}.ran_on")), cpu));
    }
    p
}

/// 0 < median <= p99.
fn latency_ordered(median: &'static str, p99: &'static str) -> crate::checks::Check {
    custom("0 < latency median <= p99", move |t| {
        let (m, p) = (ev_u64(t, median)?, ev_u64(t, p99)?);
        if m > 0 && m <= p {
            Ok(())
        } else {
            Err(format!("median {m}, p99 {p}"))
        }
    })
}
