//! A second emulator: Bochs 2.7 boots the proof ISOs (GRUB, BIOS) on CPU models QEMU does not
//! have, and the transcript is judged by the same checks as under QEMU, minus what only
//! QEMU can give and with Bochs's known LDR defect accounted for:
//! * no `isa-debug-exit`: the exit status is not judged, only the `VERDICT` line and the
//!   evidence; Bochs never exits by itself, so the run ends when `VERDICT` appears;
//! * no `edu` device: proofs that need it are reported as skipped with the reason;
//! * after an xAPIC→x2APIC switch Bochs leaves every x2APIC LDR at 0 (architecturally it is
//!   derived from the APIC ID). Keel then sends one physical IPI per CPU instead of cluster
//!   IPIs; [`ldr_or_physical_fallback`] checks exactly that, instead of the LDR check.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use keel_evidence::Transcript;

use crate::checks::{custom, judge_transcript, Check};
use crate::proofs::{Proof, LDR_CHECK};
use crate::runner::Env;
use crate::{bootstrap, iso};

const BOCHS_FILES: &[(&str, &str)] = &[
    ("/usr/bin/bochs", "bochs"),
    ("/usr/share/bochs/BIOS-bochs-latest", "bochsbios"),
    ("/usr/share/vgabios/vgabios.bin", "vgabios"),
];

/// One Bochs machine: a CPU model and the proofs judged on it.
pub struct BochsMachine {
    pub model: &'static str,
    pub what: &'static str,
    pub proofs: &'static [&'static str],
}

/// The machines `make test-bochs` boots. A proof's CPU count comes from the registry.
pub const MACHINES: &[BochsMachine] = &[
    BochsMachine {
        model: "corei7_skylake_x",
        what: "x2APIC, TSC-deadline",
        proofs: &[
            "smp-x2apic",
            "tlb-shootdown-4",
            "hostile-ring",
            "panic-nmi",
            "interrupt-grant-x2apic",
        ],
    },
    BochsMachine {
        model: "corei7_sandy_bridge_2600k",
        what: "xAPIC, TSC-deadline",
        proofs: &["smp", "tlb-shootdown-4-xapic", "shootdown-stress-xapic", "interrupt-grant"],
    },
    BochsMachine { model: "core2_penryn_t9600", what: "xAPIC, no TSC-deadline", proofs: &["smp"] },
];

/// Why a proof cannot be judged on Bochs, if it cannot.
pub fn unsupported(p: &Proof) -> Option<String> {
    let extra = p.machine.extra.join(" ");
    if p.manifest.is_some_and(|m| {
        std::fs::read_to_string(crate::builder::workspace_root().join(m))
            .is_ok_and(|t| t.contains("pci = 1234:11e8"))
    }) {
        return Some("needs QEMU's edu PCI device (Bochs has none)".into());
    }
    if extra.contains("maxcpus") || extra.contains("core-id") {
        return Some(format!("needs a QEMU CPU topology ({extra})"));
    }
    if !p.trace_events.is_empty() {
        return Some("needs QEMU trace events".into());
    }
    None
}

/// The proof's checks as Bochs can meet them: the LDR check and the cluster-IPI count
/// replaced by [`ldr_or_physical_fallback`].
pub fn bochs_checks(p: &Proof) -> Vec<Check> {
    let mut checks: Vec<Check> = p
        .checks
        .iter()
        .filter(|c| c.to_string() != LDR_CHECK && !c.names().contains(&"tlb.last_icr_writes"))
        .cloned()
        .collect();
    checks.push(ldr_or_physical_fallback());
    checks
}

/// In x2APIC mode either every LDR is the architectural one (and a TLB shootdown used one
/// cluster IPI per cluster), or every LDR is 0 (Bochs) and the shootdown sent one physical
/// IPI per target CPU. Anything mixed fails.
pub fn ldr_or_physical_fallback() -> Check {
    custom("x2APIC: architectural LDRs with cluster IPIs, or LDR 0 everywhere with one physical IPI per CPU", |t| {
        let get = |k: String| t.evidence.get(&k).and_then(|v| v.as_u64());
        if t.evidence.get("lapic.mode").map(|v| v.as_str().to_string()).as_deref() != Some("x2apic") {
            return Ok(());
        }
        let online = get("smp.online".into()).ok_or("no smp.online")?;
        let (mut architectural, mut zero) = (0, 0);
        let mut clusters = std::collections::BTreeMap::new();
        for cpu in 0..online {
            let id = get(format!("cpu.{cpu}.apic_id")).ok_or(format!("no cpu.{cpu}.apic_id"))?;
            let ldr = get(format!("cpu.{cpu}.x2apic_ldr")).ok_or(format!("no cpu.{cpu}.x2apic_ldr"))?;
            clusters.insert(cpu, id >> 4);
            match ldr {
                0 => zero += 1,
                l if l == ((id >> 4) << 16 | 1 << (id & 0xF)) => architectural += 1,
                l => return Err(format!("cpu {cpu}: APIC ID {id} has LDR {l:#x}, neither architectural nor 0")),
            }
        }
        if architectural != online && zero != online {
            return Err(format!("{architectural} architectural and {zero} zero LDRs of {online}"));
        }
        let (Some(targets), Some(writes)) = (get("tlb.last_targets".into()), get("tlb.last_icr_writes".into())) else {
            return Ok(()); // no shootdown in this proof
        };
        let cpus: Vec<u64> = (0..64).filter(|b| targets & 1 << b != 0).collect();
        let want = if zero == online {
            cpus.len() as u64
        } else {
            let mut c: Vec<_> = cpus.iter().filter_map(|cpu| clusters.get(cpu)).collect();
            c.dedup();
            c.len() as u64
        };
        if writes == want {
            Ok(())
        } else {
            Err(format!("tlb.last_icr_writes = {writes} for targets {targets:#b}, want {want}"))
        }
    })
}

/// `bochsrc` for booting `iso` on `cpus` CPUs of `model`, serial into `serial`.
pub fn bochsrc(
    model: &str,
    cpus: u32,
    memory_mib: u32,
    iso: &Path,
    serial: &Path,
    log: &Path,
) -> String {
    format!(
        "# Generated by `cargo xtask test-bochs`.\n\
         megs: {memory_mib}\n\
         cpu: model={model}, count={cpus}, ips=100000000\n\
         # No terminal or headless display in Debian's build: RFB without waiting for a client.\n\
         display_library: rfb, options=\"timeout=0\"\n\
         # Without a sound driver Bochs aborts.\n\
         sound: driver=dummy\n\
         romimage: file=/usr/share/bochs/BIOS-bochs-latest\n\
         vgaromimage: file=/usr/share/vgabios/vgabios.bin\n\
         ata0-master: type=cdrom, path={}, status=inserted\n\
         boot: cdrom\n\
         com1: enabled=1, mode=file, dev={}\n\
         log: {}\n\
         panic: action=fatal\nerror: action=report\ninfo: action=ignore\ndebug: action=ignore\n\
         clock: sync=none, time0=local\n\
         pci: enabled=1, chipset=i440fx\n\
         mouse: enabled=0\n",
        iso.display(),
        serial.display(),
        log.display()
    )
}

/// Memory for Bochs from a QEMU size like `256M`.
fn memory_mib(qemu: &str) -> u32 {
    qemu.trim_end_matches(['M', 'm']).parse().unwrap_or(256)
}

/// What one Bochs boot left.
pub struct BochsRun {
    pub transcript: Transcript,
    pub serial: PathBuf,
    pub elapsed: Duration,
    pub timed_out: bool,
}

/// Boots `p`'s ISO on `machine` and returns the transcript once `VERDICT` appeared (or at
/// `limit`). Bochs is killed either way; it never exits on its own.
pub fn boot(p: &Proof, machine: &BochsMachine, env: &Env, limit: Duration) -> Result<BochsRun> {
    bootstrap::ensure_debian_files(BOCHS_FILES)?;
    let iso = env.prepare_iso(p, &p.cmdline, iso::Firmware::SeaBios)?;
    let base = env.log_dir.join(format!("{}-bochs-{}", p.name, machine.model));
    let (serial, rc, log) =
        (base.with_extension("log"), base.with_extension("bochsrc"), base.with_extension("bochs"));
    let _ = std::fs::remove_file(&serial);
    std::fs::write(
        &rc,
        bochsrc(machine.model, p.machine.smp, memory_mib(p.machine.memory), &iso, &serial, &log),
    )?;
    let start = Instant::now();
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new("bochs")
            .args(["-q", "-f"])
            .arg(&rc)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("cannot start bochs")?
    };
    // The Debian build has the debugger: it stops before the first instruction until `c`.
    child.stdin.take().context("bochs stdin")?.write_all(b"c\n")?;
    let text = || std::fs::read_to_string(&serial).unwrap_or_default();
    let finished = |t: &str| t.lines().any(|l| l.starts_with("VERDICT ")) && t.ends_with('\n');
    let mut timed_out = false;
    loop {
        if finished(&text()) || child.try_wait()?.is_some() {
            break;
        }
        if start.elapsed() >= limit {
            timed_out = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // SAFETY: plain syscall on the process group we created.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
    let raw = text();
    // GRUB's menu drawing precedes the kernel's output; the parser ignores non-evidence lines.
    Ok(BochsRun {
        transcript: Transcript::parse(&raw),
        serial,
        elapsed: start.elapsed(),
        timed_out,
    })
}

/// Judges one finished Bochs boot of `p`.
pub fn judge(p: &Proof, run: &BochsRun) -> Vec<String> {
    let mut fails = judge_transcript(&p.expect, &bochs_checks(p), &run.transcript);
    if run.timed_out {
        fails.insert(0, format!("timeout: no VERDICT after {}s", run.elapsed.as_secs()));
    }
    fails
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Transcript {
        Transcript::parse(s)
    }

    #[test]
    fn bochs_ldr_defect_needs_the_physical_fallback() {
        let c = ldr_or_physical_fallback();
        let base = "EV lapic.mode=x2apic\nEV smp.online=4\nEV cpu.0.apic_id=0\nEV cpu.1.apic_id=1\nEV cpu.2.apic_id=2\nEV cpu.3.apic_id=3\n";
        let zero = "EV cpu.0.x2apic_ldr=0x0\nEV cpu.1.x2apic_ldr=0x0\nEV cpu.2.x2apic_ldr=0x0\nEV cpu.3.x2apic_ldr=0x0\n";
        let arch = "EV cpu.0.x2apic_ldr=0x1\nEV cpu.1.x2apic_ldr=0x2\nEV cpu.2.x2apic_ldr=0x4\nEV cpu.3.x2apic_ldr=0x8\n";
        let tlb = |w: u32| format!("EV tlb.last_targets=14\nEV tlb.last_icr_writes={w}\n");
        assert_eq!(c.eval(&t(&format!("{base}{zero}{}", tlb(3)))), Ok(()));
        assert!(
            c.eval(&t(&format!("{base}{zero}{}", tlb(1)))).is_err(),
            "cluster IPI with LDR 0 reaches nobody"
        );
        assert_eq!(c.eval(&t(&format!("{base}{arch}{}", tlb(1)))), Ok(()));
        assert!(
            c.eval(&t(&format!("{base}{arch}{}", tlb(3)))).is_err(),
            "architectural LDRs must be used"
        );
        let mixed = arch.replace("x2apic_ldr=0x8", "x2apic_ldr=0x0");
        assert!(c.eval(&t(&format!("{base}{mixed}"))).is_err());
        assert_eq!(c.eval(&t("EV lapic.mode=xapic\n")), Ok(()));
        assert_eq!(c.eval(&t(&format!("{base}{zero}"))), Ok(()), "smp proof: no shootdown");
    }

    #[test]
    fn registry_proofs_exist_and_edu_ones_are_skipped() {
        let reg = crate::proofs::registry();
        for m in MACHINES {
            for name in m.proofs {
                let p = reg
                    .iter()
                    .find(|p| p.name == *name)
                    .unwrap_or_else(|| panic!("{name} not in the registry"));
                let skip = unsupported(p);
                assert_eq!(skip.is_some(), name.starts_with("interrupt-grant"), "{name}: {skip:?}");
            }
        }
        let smp = reg.iter().find(|p| p.name == "smp-x2apic").unwrap();
        let checks = bochs_checks(smp);
        assert!(!checks.iter().any(|c| c.to_string() == LDR_CHECK));
        assert_eq!(checks.len(), smp.checks.len());
    }

    #[test]
    fn bochsrc_names_model_cpus_and_files() {
        let rc = bochsrc(
            "core2_penryn_t9600",
            2,
            128,
            Path::new("/t/a.iso"),
            Path::new("/t/s.log"),
            Path::new("/t/b.log"),
        );
        assert!(rc.contains("cpu: model=core2_penryn_t9600, count=2,"));
        assert!(
            rc.contains("megs: 128\n")
                && rc.contains("path=/t/a.iso,")
                && rc.contains("dev=/t/s.log\n")
        );
        assert!(rc.contains("sound: driver=dummy") && rc.contains("options=\"timeout=0\""));
        assert_eq!(memory_mib("256M"), 256);
    }
}
