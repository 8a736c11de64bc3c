//! Command-line parsing (hand-rolled: a handful of flags does not justify clap).

use anyhow::{bail, Context, Result};

use crate::qemu::Accel;

pub const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  build [--image plain|scenarios|example]
                             build the kernel images (plain, and with the proof scenarios), the
                             example kernel (examples/minimal-smp) and the user programs under
                             user/; --image: only that image
  run [--proof NAME] [--accel tcg|kvm] [--append ARGS] [--timeout SECS]
                             boot once with serial on the terminal; exit 0 on a clean halt.
                             Without --proof: the plain image with manifests/default.manifest
                             and its programs; with it: the scenarios image as the proof boots
  debug [--proof NAME]       like run, but QEMU waits for gdb on :1234 (-s -S); writes
                             target/keel.gdb (symbols, breaks at _start32 and kernel_entry);
                             in another terminal: gdb -x target/keel.gdb
  test [--filter SUBSTR] [--jobs N] [--no-host-tests] [--timer periodic|tickless]
                             host unit tests, then every proof in parallel
  test-scale [--filter SUBSTR] [--jobs N]
                             proofs on large machines (288 and 1,024 vCPUs, xAPIC at 255, panic
                             stop at 288): minutes each under TCG, one at a time by default
  test-hostile [--filter SUBSTR] [--jobs N]
                             the long hostile proofs (10^6-submission fuzzing), kept out of `test`
  test-soak [--filter SUBSTR] [--jobs N]
                             the endurance proofs (memory churn of 10x RAM, 10^4 thread and 10^3
                             process cycles, capability churn, an interrupt storm), both LAPIC
                             modes; about 8 minutes on 2 cores under TCG, kept out of `test`
  test-firmware [--filter SUBSTR] [--jobs N]
                             the firmware proofs: proofs booted by GRUB from an ISO under SeaBIOS
                             and OVMF (UEFI), judged like their -kernel versions; one at a time
                             unless --jobs
  test-bochs [--filter SUBSTR]
                             boot proof ISOs under Bochs on x2APIC and xAPIC CPU models, one at a
                             time; proofs needing a QEMU-only device are reported as skipped
  iso [--out PATH] [--release]
                             hybrid BIOS+UEFI GRUB ISO (CD or USB stick), default target/keel.iso:
                             the plain kernel booting the default manifest's programs, then one
                             entry per proof on the scenarios kernel; --release: the plain
                             kernel and its default entry only (no scenarios on the image)
  proofs                     list proofs and their QEMU command lines
  bench [--filter SUBSTR]    run benchmark proofs, print bench.* evidence, write target/bench.json
  bench-compare [--quick] [--no-64] [--no-scale] [--wake] [--timer] [--nvme [--cpus 2,4]] [--rounds N] [--bringup [--cpus 8,64,288] [--linux-console] [--linux-lpj N]]
                             Keel's benchmarks vs a Debian Linux guest in the same QEMU configurations;
                             writes target/compare/report.{md,json} and plots (docs/benchmarks.md).
                             --no-scale: only the 2-vCPU machines (no 4/8/64-vCPU runs);
                             --wake: device interrupt -> driver wake figures only; --timer: timer
                             interrupts/s (idle, busy; 8 and 64 vCPUs) and sleep wake-up lateness
                             only (TCG); --nvme: only NVMe
                             4 KiB random reads (QD 1/32, one queue / one per CPU) at --cpus counts
                             (default 2,4; at most 8), IOPS and latency; --rounds N: N
                             alternating Linux/Keel rounds, each figure the median of the rounds;
                             --bringup: only AP bring-up (all CPUs online) of Keel parallel, Keel
                             serial and Linux on one VM per --cpus count (default 8,64; 288 and
                             1024 are opt-in: Linux needs far longer there); target/compare/bringup/;
                             --linux-console: Linux logs to the console (no quiet) and is stopped at
                             'smp: Brought up' instead of booting to init (for 288 and more vCPUs);
                             --linux-lpj N: lpj=N on Linux's command line (no per-CPU delay-loop
                             calibration; take N from an 8-vCPU boot's log)
  mutants [--only NAME | --area AREA] [--baseline]
                             apply each curated kernel break to a scratch copy (target/mutants/tree),
                             build it, boot the proofs that must catch it; fails unless all are caught.
                             --area: only one file's breaks (general, interrupts, time, endurance,
                             drivers, proofs, amd)
                             --baseline: first boot those proofs without any break
  package-check [--allow-dirty] [--msrv]
                             the crates meant for the package registry (keel-apic, keel-iommu,
                             keel-platform): metadata, README and CHANGELOG, missing_docs denied,
                             no_std build for x86_64-unknown-none, doctests, then `cargo package`
                             of all three (each verified against the others' packages); --msrv:
                             also build and doctest each with its rust-version (rustup installs it)
  clippy                     clippy with warnings denied: host crates (tests too), the kernel and its
                             framework with and without the scenarios, the user programs and the
                             example kernel, each with its build's target and flags
  fuzz [--target NAME] [--runs N | --seconds S]
                             coverage-guided fuzzing (cargo-fuzz, libFuzzer, nightly) of every
                             parser of untrusted input, one target after the other from the seeds
                             in fuzz/seeds/; default 10^7 executions per target; prints
                             executions and libFuzzer's cov/ft figures. Targets: madt, dmar,
                             multiboot1, multiboot2, elf, manifest, ring, cmdline
  qemu-check                 make sure QEMU >= 9.0 is installed (installs it as root on Debian/Ubuntu)

environment:
  QEMU_FLAGS   extra QEMU options for `run` (-cpu/-smp/-machine/-accel/-m replace the defaults)
  KEEL_APPEND  extra kernel command line for `run`
  KEEL_ACCEL   tcg|kvm: force an accelerator (default: KVM if /dev/kvm opens, plus TCG)
  KEEL_KERNEL  boot this kernel ELF (built with the scenarios) instead of building one
  KEEL_PLAIN_KERNEL  the same for the plain image
  KEEL_EXAMPLE_KERNEL  the same for the example kernel
  KEEL_USER_DIR  take user program ELFs from this directory instead of building them
  KEEL_QEMU    QEMU binary to use (skips the version check)
";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cmd {
    /// `image`: only that kernel image (else both).
    Build {
        image: Option<crate::builder::Image>,
    },
    Run {
        proof: Option<String>,
        accel: Option<Accel>,
        append: Vec<String>,
        timeout: Option<u64>,
    },
    Debug {
        proof: Option<String>,
    },
    /// `long`: the long proofs (`test-hostile`) instead of the default set.
    /// `timer`: every proof whose command line names no `timer=` gets `timer=<mode>`.
    Test {
        filter: Option<String>,
        jobs: Option<usize>,
        host_tests: bool,
        long: bool,
        timer: Option<String>,
    },
    TestScale {
        filter: Option<String>,
        jobs: Option<usize>,
    },
    TestSoak {
        filter: Option<String>,
        jobs: Option<usize>,
    },
    TestFirmware {
        filter: Option<String>,
        jobs: Option<usize>,
    },
    /// `release`: the plain kernel and its default entry only.
    Iso {
        out: Option<String>,
        release: bool,
    },
    TestBochs {
        filter: Option<String>,
    },
    Proofs,
    Bench {
        filter: Option<String>,
    },
    BenchCompare(crate::compare::Options),
    Mutants {
        only: Option<String>,
        area: Option<String>,
        baseline: bool,
    },
    PackageCheck {
        allow_dirty: bool,
        msrv: bool,
    },
    Clippy,
    Fuzz {
        target: Option<String>,
        budget: crate::fuzz::Budget,
    },
    QemuCheck,
    Help,
}

pub fn parse(args: &[String]) -> Result<Cmd> {
    let Some((cmd, rest)) = args.split_first() else { return Ok(Cmd::Help) };
    let mut it = rest.iter();
    let val = |flag: &str, it: &mut std::slice::Iter<String>| -> Result<String> {
        it.next().cloned().with_context(|| format!("{flag} needs a value"))
    };
    let mut cmd = match cmd.as_str() {
        "build" => Cmd::Build { image: None },
        "run" => Cmd::Run { proof: None, accel: None, append: vec![], timeout: None },
        "test" => {
            Cmd::Test { filter: None, jobs: None, host_tests: true, long: false, timer: None }
        }
        "test-hostile" => {
            Cmd::Test { filter: None, jobs: None, host_tests: false, long: true, timer: None }
        }
        "test-scale" => Cmd::TestScale { filter: None, jobs: None },
        "test-soak" => Cmd::TestSoak { filter: None, jobs: None },
        "test-firmware" => Cmd::TestFirmware { filter: None, jobs: None },
        "iso" => Cmd::Iso { out: None, release: false },
        "test-bochs" => Cmd::TestBochs { filter: None },
        "debug" => Cmd::Debug { proof: None },
        "proofs" => Cmd::Proofs,
        "bench" => Cmd::Bench { filter: None },
        "bench-compare" => Cmd::BenchCompare(Default::default()),
        "mutants" => Cmd::Mutants { only: None, area: None, baseline: false },
        "package-check" => Cmd::PackageCheck { allow_dirty: false, msrv: false },
        "clippy" => Cmd::Clippy,
        "fuzz" => {
            Cmd::Fuzz { target: None, budget: crate::fuzz::Budget::Runs(crate::fuzz::DEFAULT_RUNS) }
        }
        "qemu-check" | "bootstrap" => Cmd::QemuCheck,
        "help" | "-h" | "--help" => Cmd::Help,
        other => bail!("unknown command {other:?}\n\n{USAGE}"),
    };
    while let Some(flag) = it.next() {
        // Accept --flag=value as well as --flag value.
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (flag.as_str(), None),
        };
        let mut value = || inline.clone().map_or_else(|| val(flag, &mut it), Ok);
        match (&mut cmd, flag) {
            (Cmd::Run { proof, .. } | Cmd::Debug { proof }, "--proof") => *proof = Some(value()?),
            (Cmd::Run { accel, .. }, "--accel") => *accel = Some(Accel::parse(&value()?)?),
            (Cmd::Run { append, .. }, "--append") => append.push(value()?),
            (Cmd::Run { timeout, .. }, "--timeout") => {
                *timeout = Some(value()?.parse().context("--timeout wants seconds")?)
            }
            (
                Cmd::Test { filter, .. }
                | Cmd::TestScale { filter, .. }
                | Cmd::TestSoak { filter, .. }
                | Cmd::TestFirmware { filter, .. }
                | Cmd::TestBochs { filter }
                | Cmd::Bench { filter },
                "--filter",
            ) => *filter = Some(value()?),
            (
                Cmd::Test { jobs, .. }
                | Cmd::TestScale { jobs, .. }
                | Cmd::TestSoak { jobs, .. }
                | Cmd::TestFirmware { jobs, .. },
                "--jobs" | "-j",
            ) => *jobs = Some(value()?.parse().context("--jobs wants a number")?),
            (Cmd::Iso { out, .. }, "--out") => *out = Some(value()?),
            (Cmd::Iso { release, .. }, "--release") => *release = true,
            (Cmd::Build { image }, "--image") => {
                let name = value()?;
                *image = Some(crate::builder::Image::from_name(&name).with_context(|| {
                    format!("--image wants plain, scenarios or example, not {name:?}")
                })?)
            }
            (Cmd::Test { host_tests, .. }, "--no-host-tests") => *host_tests = false,
            (Cmd::Test { timer, .. }, "--timer") => {
                let mode = value()?;
                if !["periodic", "tickless"].contains(&mode.as_str()) {
                    bail!("--timer wants periodic or tickless, not {mode:?}");
                }
                *timer = Some(mode)
            }
            (Cmd::PackageCheck { allow_dirty, .. }, "--allow-dirty") => *allow_dirty = true,
            (Cmd::PackageCheck { msrv, .. }, "--msrv") => *msrv = true,
            (Cmd::BenchCompare(o), "--quick") => o.quick = true,
            (Cmd::BenchCompare(o), "--no-64") => o.no_64 = true,
            (Cmd::BenchCompare(o), "--no-scale") => o.no_scale = true,
            (Cmd::BenchCompare(o), "--wake") => o.wake_only = true,
            (Cmd::BenchCompare(o), "--timer") => o.timer = true,
            (Cmd::BenchCompare(o), "--nvme") => o.nvme_only = true,
            (Cmd::BenchCompare(o), "--bringup") => o.bringup = true,
            (Cmd::BenchCompare(o), "--linux-console") => o.linux_console = true,
            (Cmd::BenchCompare(o), "--linux-lpj") => {
                o.linux_lpj = Some(
                    value()?
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .context("--linux-lpj wants a positive number")?,
                )
            }
            (Cmd::BenchCompare(o), "--cpus") => o.cpus = crate::compare::parse_cpus(&value()?)?,
            (Cmd::BenchCompare(o), "--rounds") => {
                o.rounds = value()?
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .context("--rounds wants a positive number")?
            }
            (Cmd::Mutants { only, .. }, "--only") => *only = Some(value()?),
            (Cmd::Mutants { area, .. }, "--area") => *area = Some(value()?),
            (Cmd::Mutants { baseline, .. }, "--baseline") => *baseline = true,
            (Cmd::Fuzz { target, .. }, "--target") => *target = Some(value()?),
            (Cmd::Fuzz { budget, .. }, "--runs") => {
                *budget = crate::fuzz::Budget::Runs(
                    value()?.parse().ok().filter(|&n| n > 0).context("--runs wants a number")?,
                )
            }
            (Cmd::Fuzz { budget, .. }, "--seconds") => {
                *budget = crate::fuzz::Budget::Seconds(
                    value()?.parse().ok().filter(|&n| n > 0).context("--seconds wants a number")?,
                )
            }
            (_, "-h" | "--help") => return Ok(Cmd::Help),
            (_, f) => bail!("unknown option {f:?} for {}\n\n{USAGE}", args[0]),
        }
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Cmd> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn commands() {
        assert_eq!(p("").unwrap(), Cmd::Help);
        assert_eq!(p("build").unwrap(), Cmd::Build { image: None });
        assert_eq!(
            p("build --image plain").unwrap(),
            Cmd::Build { image: Some(crate::builder::Image::Plain) }
        );
        assert_eq!(
            p("build --image example").unwrap(),
            Cmd::Build { image: Some(crate::builder::Image::Example) }
        );
        assert!(p("build --image other").is_err());
        assert_eq!(p("iso --release").unwrap(), Cmd::Iso { out: None, release: true });
        assert_eq!(
            p("run --proof boot --accel=kvm --append a=1 --timeout 5").unwrap(),
            Cmd::Run {
                proof: Some("boot".into()),
                accel: Some(Accel::Kvm),
                append: vec!["a=1".into()],
                timeout: Some(5)
            }
        );
        assert_eq!(
            p("test --filter smp -j 1").unwrap(),
            Cmd::Test {
                filter: Some("smp".into()),
                jobs: Some(1),
                host_tests: true,
                long: false,
                timer: None
            }
        );
        assert_eq!(
            p("test-hostile -j 1").unwrap(),
            Cmd::Test { filter: None, jobs: Some(1), host_tests: false, long: true, timer: None }
        );
        assert_eq!(
            p("test-soak --filter memory -j 1").unwrap(),
            Cmd::TestSoak { filter: Some("memory".into()), jobs: Some(1) }
        );
        assert_eq!(p("bench").unwrap(), Cmd::Bench { filter: None });
        assert_eq!(
            p("test-scale --filter 288").unwrap(),
            Cmd::TestScale { filter: Some("288".into()), jobs: None }
        );
        assert_eq!(
            p("test-firmware --filter uefi -j 2").unwrap(),
            Cmd::TestFirmware { filter: Some("uefi".into()), jobs: Some(2) }
        );
        assert_eq!(p("debug --proof smp").unwrap(), Cmd::Debug { proof: Some("smp".into()) });
        assert_eq!(
            p("iso --out /tmp/k.iso").unwrap(),
            Cmd::Iso { out: Some("/tmp/k.iso".into()), release: false }
        );
        assert_eq!(
            p("bench-compare --quick").unwrap(),
            Cmd::BenchCompare(crate::compare::Options { quick: true, ..Default::default() })
        );
        assert_eq!(
            p("bench-compare --wake --rounds 5").unwrap(),
            Cmd::BenchCompare(crate::compare::Options {
                wake_only: true,
                rounds: 5,
                ..Default::default()
            })
        );
        assert!(p("bench-compare --rounds 0").is_err());
        assert_eq!(
            p("bench-compare --timer --rounds 1").unwrap(),
            Cmd::BenchCompare(crate::compare::Options {
                timer: true,
                rounds: 1,
                ..Default::default()
            })
        );
        assert_eq!(
            p("bench-compare --no-scale --rounds 3").unwrap(),
            Cmd::BenchCompare(crate::compare::Options {
                no_scale: true,
                rounds: 3,
                ..Default::default()
            })
        );
        assert_eq!(
            p("bench-compare --bringup --cpus 8,64,288").unwrap(),
            Cmd::BenchCompare(crate::compare::Options {
                bringup: true,
                cpus: vec![8, 64, 288],
                ..Default::default()
            })
        );
        assert!(p("bench-compare --bringup --cpus 8,,64").is_err());
        assert_eq!(
            p("bench-compare --bringup --cpus 288 --linux-console --linux-lpj 9781704").unwrap(),
            Cmd::BenchCompare(crate::compare::Options {
                bringup: true,
                cpus: vec![288],
                linux_console: true,
                linux_lpj: Some(9_781_704),
                ..Default::default()
            })
        );
        assert!(p("bench-compare --bringup --linux-lpj 0").is_err());
        assert_eq!(p("qemu-check").unwrap(), Cmd::QemuCheck);
        assert_eq!(
            p("mutants --only x --baseline").unwrap(),
            Cmd::Mutants { only: Some("x".into()), area: None, baseline: true }
        );
        assert_eq!(
            p("mutants --area time").unwrap(),
            Cmd::Mutants { only: None, area: Some("time".into()), baseline: false }
        );
        assert_eq!(
            p("fuzz").unwrap(),
            Cmd::Fuzz { target: None, budget: crate::fuzz::Budget::Runs(10_000_000) }
        );
        assert_eq!(
            p("fuzz --target elf --seconds 30").unwrap(),
            Cmd::Fuzz { target: Some("elf".into()), budget: crate::fuzz::Budget::Seconds(30) }
        );
        assert!(p("fuzz --runs 0").is_err());
        assert!(p("run --accel hvf").is_err());
        assert!(p("test --proof x").is_err());
        assert!(p("run --proof").is_err());
        assert!(p("frobnicate").is_err());
    }
}
