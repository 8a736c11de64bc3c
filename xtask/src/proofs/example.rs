//! The example kernel (`examples/minimal-smp`): another kernel built on keel-apic and
//! keel-platform alone brings up every CPU of a 4-CPU machine in each LAPIC mode. Every
//! value checked is read back where it lives: the mode from each CPU's IA32_APIC_BASE, the
//! APIC ID from each CPU's own ID register, ticks and IPIs from counters the interrupt
//! handlers increment on the CPU that took the interrupt.

use super::{x2apic_cpu, xapic_cpu, Proof};
use crate::builder::Image;
use crate::checks::{custom, eq, for_each_cpu, ge, is, keys_equal, Check};
use crate::qemu::CpuSpec;

const CPUS: u64 = 4;
/// The example's `IPIS_PER_PAIR`: each CPU sends this many to each other CPU.
const IPIS_PER_PAIR: u64 = 25;

pub(super) fn proofs() -> Vec<Proof> {
    vec![
        example(
            "example-smp",
            "example kernel (keel-apic + keel-platform only), xAPIC: 4 CPUs up, ticks and IPIs counted on each",
            xapic_cpu(),
            "xapic",
        ),
        example(
            "example-smp-x2apic",
            "the example kernel in x2APIC mode, chosen by keel-apic's mode plan",
            x2apic_cpu(),
            "x2apic",
        ),
    ]
}

fn example(name: &'static str, what: &'static str, cpu: CpuSpec, mode: &'static str) -> Proof {
    let per_cpu = (CPUS - 1) * IPIS_PER_PAIR;
    Proof::new(name, what)
        .image(Image::Example)
        .without_scenario()
        .smp(CPUS as u32)
        .cpu(cpu)
        .timeout_secs(30)
        .check(eq("platform.cpus", CPUS))
        .check(eq("smp.online", CPUS))
        .check(eq("lapic.mode", mode))
        .check(for_each_cpu("cpu.*.online", is::eq("yes")).count_eq_key("smp.online"))
        .check(for_each_cpu("cpu.*.mode", is::eq(mode)).count_eq_key("smp.online"))
        .check(distinct_apic_ids())
        .check(ge("timer.hz", 1_000_000))
        .check(for_each_cpu("cpu.*.timer_ticks", is::ge(20)).count_eq_key("smp.online"))
        .check(for_each_cpu("cpu.*.ipi_sent", is::eq(per_cpu)).count_eq_key("smp.online"))
        .check(for_each_cpu("cpu.*.ipi_received", is::eq(per_cpu)).count_eq_key("smp.online"))
        .check(for_each_cpu("cpu.*.lapic_errors", is::eq(0)).count_eq_key("smp.online"))
        .check(eq("ipi.expected", CPUS * per_cpu))
        .check(keys_equal("ipi.sent", "ipi.expected"))
        .check(keys_equal("ipi.received", "ipi.expected"))
        .check(eq("ipi.timeouts", 0))
}

/// Each CPU read a different APIC ID from its own LAPIC: four CPUs reported, not one four times.
fn distinct_apic_ids() -> Check {
    custom("every CPU's own LAPIC ID register reads a different APIC ID", |t| {
        let mut ids = std::collections::BTreeSet::new();
        for (k, v) in t.evidence.matching("cpu.*.apic_id") {
            let id = v.as_u64().ok_or_else(|| format!("{k} = {v} is not an integer"))?;
            if !ids.insert(id) {
                return Err(format!("{k} = {id} repeats another CPU's APIC ID"));
            }
        }
        if ids.len() as u64 == CPUS {
            Ok(())
        } else {
            Err(format!("{} CPUs reported an APIC ID, {CPUS} expected", ids.len()))
        }
    })
}

#[cfg(test)]
mod tests {
    /// The example adopts keel-apic and keel-platform and nothing else of Keel's: its
    /// manifest names no other workspace crate (a dependency on, say, keel-boot would make it
    /// a poorer witness that the two crates stand alone).
    #[test]
    fn example_depends_on_no_other_keel_crate() {
        let manifest = crate::builder::workspace_root().join("examples/minimal-smp/Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let keel: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("keel-") && l.contains('='))
            .filter_map(|l| l.split(['=', '.']).next())
            .map(str::trim)
            .collect();
        assert_eq!(keel, ["keel-apic", "keel-platform"], "{}", manifest.display());
    }
}
