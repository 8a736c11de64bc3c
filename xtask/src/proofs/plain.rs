//! Proofs of the plain kernel image (built without the `scenarios` feature): what a user's
//! boot does, and that the proof scenarios are really left out of it. The other half of the
//! latter is `images::check_scenarios_left_out` on the ELF files before any boot.

use super::{x2apic_cpu, Proof};
use crate::builder::Image;
use crate::checks::{absent, eq, Expect, ExpectVerdict};
use crate::qemu::CpuSpec;
use keel_evidence::exit;

/// What a plain boot starts (`make run`, `make iso`'s first entry): this manifest ...
pub const DEFAULT_MANIFEST: &str = "manifests/default.manifest";
/// ... and its programs, as boot modules after it.
pub const DEFAULT_PROGRAMS: &[&str] = &["smptest", "hostile"];

/// A user's boot of the plain image: the default manifest and its programs on `cpus` CPUs.
fn default_manifest_boot(name: &'static str, what: &'static str, cpus: u32) -> Proof {
    Proof::new(name, what)
        .image(Image::Plain)
        .without_scenario()
        .smp(cpus)
        .memory("256M")
        .cpu(x2apic_cpu())
        .manifest(DEFAULT_MANIFEST)
        .programs(DEFAULT_PROGRAMS)
        .guest_ring3()
        .timeout_secs(120)
}

pub(super) fn proofs() -> Vec<Proof> {
    vec![
        // No `proof=`: init brings the machine up, starts the manifest's programs in their
        // `after` order and halts once all have exited, each as its manifest expects.
        default_manifest_boot("plain-boot", "the plain image (no scenarios): bring-up, then the default manifest's programs run to their exits", 2)
            .check(eq("boot.cmdline.proof", "none"))
            .check(eq("smp.online", 2))
            .check(eq("init.programs", 3))
            .check(eq("init.programs_exited", 3))
            .check(eq("init.failures", 0))
            .check(eq("proc.smptest.exit", 0))
            .check(eq("proc.hostile.exit", 0))
            .check(eq("proc.faulter.exit", 0xffff_000e_u64))
            .check(eq("user.smptest.cpus_used", 2))
            // Evidence only the `user` scenario prints: it did not run.
            .check(absent("user.failures")),
        // The same manifest on one CPU (`make run QEMU_FLAGS="-smp 1"`): it names CPU 1, so the
        // loader starts `hostile` on CPU 0 and smptest asks the kernel which CPUs it may use.
        default_manifest_boot("plain-boot-1cpu", "the default manifest on a one-CPU machine: programs placed on CPU 1 run on CPU 0, smptest counts on the one CPU online", 1)
            .check(eq("smp.online", 1))
            .check(eq("init.programs_exited", 3))
            .check(eq("init.failures", 0))
            .check(eq("proc.smptest.exit", 0))
            .check(eq("user.smptest.cpus_used", 1))
            .check(eq("user.smptest.threads_1.primes", 9592))
            .check(absent("user.smptest.threads_2.primes"))
            .check(eq("proc.hostile.exit", 0))
            .check(eq("proc.faulter.exit", 0xffff_000e_u64)),
        // A CPU without a local APIC (CPUID.01H:EDX[9] clear) is refused at once, before any
        // APIC register is read: the boot fails and says why instead of running on garbage.
        Proof::new("no-local-apic", "a CPU whose CPUID reports no local APIC: the boot stops before bring-up with a failing verdict")
            .image(Image::Plain)
            .without_scenario()
            .smp(1)
            .memory("128M")
            .cpu(CpuSpec::new("qemu64", &["-apic", "-x2apic"]))
            .manifest(DEFAULT_MANIFEST)
            .programs(DEFAULT_PROGRAMS)
            .timeout_secs(60)
            .expect(Expect { status: exit::STATUS_FAIL, verdict: ExpectVerdict::Fail })
            .check(eq("cpu.apic_cpuid", "no"))
            .check(absent("lapic.mode_writes"))
            .check(absent("smp.online"))
            .check(absent("init.programs")),
        // `proof=` on the plain image is refused before bring-up, never run as a plain boot.
        Proof::new("plain-refuses-proof", "proof=smp on the plain image: scenarios are not compiled in, the boot fails")
            .image(Image::Plain)
            .scenario("smp")
            .expect(Expect { status: exit::STATUS_FAIL, verdict: ExpectVerdict::Fail })
            .check(eq("boot.cmdline.proof", "smp"))
            .check(eq("boot.scenarios", "absent"))
            .check(absent("smp.online")),
    ]
}
