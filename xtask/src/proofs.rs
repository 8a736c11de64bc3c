//! The proof registry: one table entry per scenario the kernel can boot into.
//!
//! A proof boots the kernel with `proof=<name>` on its command line, on a
//! declared virtual machine, under declared accelerators, and passes only if
//! the QEMU exit status, the VERDICT line and every evidence check match and
//! no EV line was malformed. Add a proof by adding one entry to [`registry`].

use std::time::Duration;

// The whole check vocabulary is in scope so new entries need no import edits.
#[allow(unused_imports)]
use crate::checks::{self, absent, custom, eq, for_each_cpu, ge, is, keys_equal, le, present, range, Check, Expect};
use crate::qemu::{Accel, AccelEnv, CpuSpec, MachineSpec};

/// Which accelerators a proof runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accels {
    /// Once per available accelerator: TCG always, KVM too when it opens.
    Any,
    KvmOnly,
    TcgOnly,
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct Proof {
    pub name: &'static str,
    pub description: &'static str,
    /// Kernel command line; starts with `proof=<name>`.
    pub cmdline: String,
    pub machine: MachineSpec,
    pub accels: Accels,
    pub timeout: Duration,
    pub expect: Expect,
    pub checks: Vec<Check>,
    /// Benchmarks run under `cargo xtask bench`, not `cargo xtask test`.
    pub bench: bool,
}

impl Proof {
    /// Defaults: `proof=<name>`, uniprocessor q35 with `qemu64,-x2apic`,
    /// 128 MiB, any accelerator, 60 s, expects `VERDICT pass` and status 33.
    pub fn new(name: &'static str, description: &'static str) -> Proof {
        Proof {
            name,
            description,
            cmdline: format!("proof={name}"),
            machine: MachineSpec::q35_up(),
            accels: Accels::Any,
            timeout: DEFAULT_TIMEOUT,
            expect: Expect::PASS,
            checks: vec![],
            bench: false,
        }
    }
    /// Extra kernel options after `proof=<name>`.
    pub fn args(mut self, extra: &str) -> Self {
        self.cmdline = format!("proof={} {extra}", self.name);
        self
    }
    pub fn smp(mut self, n: u32) -> Self {
        self.machine.smp = n;
        self
    }
    pub fn memory(mut self, m: &'static str) -> Self {
        self.machine.memory = m;
        self
    }
    pub fn machine(mut self, m: &'static str) -> Self {
        self.machine.machine = m;
        self
    }
    pub fn cpu(mut self, cpu: CpuSpec) -> Self {
        self.machine.cpu = cpu;
        self
    }
    /// Raw QEMU arguments, e.g. `&["-device", "..."]`.
    pub fn qemu_extra(mut self, args: &[&str]) -> Self {
        self.machine.extra.extend(args.iter().map(|s| s.to_string()));
        self
    }
    pub fn accels(mut self, a: Accels) -> Self {
        self.accels = a;
        self
    }
    pub fn timeout_secs(mut self, s: u64) -> Self {
        self.timeout = Duration::from_secs(s);
        self
    }
    pub fn expect(mut self, e: Expect) -> Self {
        self.expect = e;
        self
    }
    pub fn check(mut self, c: Check) -> Self {
        self.checks.push(c);
        self
    }
    pub fn bench(mut self) -> Self {
        self.bench = true;
        self
    }
}

/// Every proof. Order here is the order of the report.
pub fn registry() -> Vec<Proof> {
    vec![
        Proof::new("boot", "Multiboot handoff, memory map, ACPI tables, heap")
            .check(ge("boot.mem.usable_kib", 65536))
            .check(ge("acpi.madt.cpus", 1))
            .check(ge("acpi.ioapics", 1))
            .check(eq("heap.check", "ok"))
            .check(eq("boot.cmdline.proof", "boot")),
        Proof::new("exceptions", "A deliberate page fault on an unmapped address is diagnosed and fatal")
            .expect(Expect::FATAL_EXCEPTION)
            .check(eq("fault.vector", 14))
            .check(eq("fault.cr2", "0xdead0000"))
            .check(present("fault.rip")),
        // Upcoming (one entry each), e.g.:
        // Proof::new("smp", "APs start, per-CPU timers tick, IPIs arrive")
        //     .smp(2).cpu(CpuSpec::qemu64_xapic())
        //     .check(eq("lapic.mode", "xapic"))
        //     .check(eq("smp.online", 2))
        //     .check(for_each_cpu("cpu.*.timer_ticks", is::ge(50)).count_eq_key("smp.online"))
        //     .check(keys_equal("ipi.sent", "ipi.received")),
    ]
}

/// One scheduled (or skipped) boot of a proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub proof: usize,
    pub accel: Accel,
    /// `Some(reason)`: reported as skipped, not run.
    pub skip: Option<String>,
}

const NO_KVM: &str = "needs KVM: /dev/kvm not available";

/// Expand proofs into (proof, accelerator) runs for this host.
pub fn plan(proofs: &[Proof], env: &AccelEnv) -> Vec<Job> {
    let mut jobs = Vec::new();
    for (i, p) in proofs.iter().enumerate() {
        let run = |accel| Job { proof: i, accel, skip: None };
        let skip = |accel, why: &str| Job { proof: i, accel, skip: Some(why.to_string()) };
        let kvm = || if env.kvm_available { run(Accel::Kvm) } else { skip(Accel::Kvm, NO_KVM) };
        match (p.accels, env.forced) {
            (Accels::Any, None) => {
                jobs.push(run(Accel::Tcg));
                if env.kvm_available {
                    jobs.push(run(Accel::Kvm));
                }
            }
            (Accels::Any | Accels::TcgOnly, Some(Accel::Tcg)) | (Accels::TcgOnly, None) => jobs.push(run(Accel::Tcg)),
            (Accels::Any | Accels::KvmOnly, Some(Accel::Kvm)) | (Accels::KvmOnly, None) => jobs.push(kvm()),
            (Accels::KvmOnly, Some(Accel::Tcg)) => jobs.push(skip(Accel::Kvm, "needs KVM: KEEL_ACCEL=tcg")),
            (Accels::TcgOnly, Some(Accel::Kvm)) => jobs.push(skip(Accel::Tcg, "TCG only: KEEL_ACCEL=kvm")),
        }
    }
    jobs
}

/// Registry sanity rules, enforced by a unit test so a bad entry fails
/// `cargo test` instead of a boot.
pub fn validate(proofs: &[Proof]) -> Vec<String> {
    let mut errs = Vec::new();
    let mut names = std::collections::HashSet::new();
    for p in proofs {
        if !names.insert(p.name) {
            errs.push(format!("{}: duplicate proof name", p.name));
        }
        if !keel_evidence::is_valid_key(p.name) || p.name.contains('.') {
            errs.push(format!("{}: name must be [a-z0-9_]+", p.name));
        }
        if !p.cmdline.split_whitespace().any(|w| w == format!("proof={}", p.name)) {
            errs.push(format!("{}: cmdline {:?} lacks proof={}", p.name, p.cmdline, p.name));
        }
        for accel in [Accel::Tcg, Accel::Kvm] {
            let cpu = p.machine.cpu.arg(accel);
            if !cpu.split(',').any(|f| f == "+x2apic" || f == "-x2apic") {
                errs.push(format!("{}: -cpu {cpu} under {accel} must say +x2apic or -x2apic", p.name));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_valid() {
        assert_eq!(validate(&registry()), Vec::<String>::new());
    }

    #[test]
    fn validate_catches_mistakes() {
        let bad = vec![
            Proof::new("dup", "").cpu(CpuSpec::new("qemu64", &[])),
            Proof::new("dup", "").check(present("Bad.Key")),
        ];
        let errs = validate(&bad);
        assert_eq!(errs.len(), 4, "{errs:#?}"); // 2x missing x2apic, duplicate, bad key
    }

    #[test]
    fn smp_entry_is_one_expression() {
        let p = Proof::new("smp", "")
            .smp(2)
            .cpu(CpuSpec::qemu64_xapic())
            .check(eq("lapic.mode", "xapic"))
            .check(eq("smp.online", 2))
            .check(for_each_cpu("cpu.*.timer_ticks", is::ge(50)).count_eq_key("smp.online"))
            .check(keys_equal("ipi.sent", "ipi.received"));
        assert!(validate(std::slice::from_ref(&p)).is_empty());
        let t = keel_evidence::Transcript::parse(
            "EV lapic.mode=xapic smp.online=2 cpu.0.timer_ticks=100 cpu.1.timer_ticks=99 ipi.sent=8 ipi.received=8\nVERDICT pass\n",
        );
        let obs = checks::Observed { status: Some(33), timed_out: None, transcript: &t };
        assert!(checks::judge(&p.expect, &p.checks, &obs).is_empty());
    }

    fn proofs3() -> Vec<Proof> {
        vec![
            Proof::new("any", ""),
            Proof::new("kvm", "").accels(Accels::KvmOnly),
            Proof::new("tcg", "").accels(Accels::TcgOnly),
        ]
    }

    fn summary(env: AccelEnv) -> Vec<String> {
        let ps = proofs3();
        plan(&ps, &env)
            .iter()
            .map(|j| format!("{}/{}{}", ps[j.proof].name, j.accel, j.skip.as_ref().map(|s| format!(" skip: {s}")).unwrap_or_default()))
            .collect()
    }

    #[test]
    fn accel_expansion_with_kvm() {
        let env = AccelEnv { kvm_available: true, forced: None };
        assert_eq!(summary(env), ["any/tcg", "any/kvm", "kvm/kvm", "tcg/tcg"]);
    }

    #[test]
    fn accel_expansion_without_kvm() {
        let env = AccelEnv { kvm_available: false, forced: None };
        assert_eq!(summary(env), ["any/tcg", "kvm/kvm skip: needs KVM: /dev/kvm not available", "tcg/tcg"]);
    }

    #[test]
    fn accel_forced() {
        let env = AccelEnv { kvm_available: true, forced: Some(Accel::Tcg) };
        assert_eq!(summary(env), ["any/tcg", "kvm/kvm skip: needs KVM: KEEL_ACCEL=tcg", "tcg/tcg"]);
        let env = AccelEnv { kvm_available: true, forced: Some(Accel::Kvm) };
        assert_eq!(summary(env), ["any/kvm", "kvm/kvm", "tcg/tcg skip: TCG only: KEEL_ACCEL=kvm"]);
        let env = AccelEnv { kvm_available: false, forced: Some(Accel::Kvm) };
        assert_eq!(
            summary(env),
            [
                "any/kvm skip: needs KVM: /dev/kvm not available",
                "kvm/kvm skip: needs KVM: /dev/kvm not available",
                "tcg/tcg skip: TCG only: KEEL_ACCEL=kvm"
            ]
        );
    }
}
