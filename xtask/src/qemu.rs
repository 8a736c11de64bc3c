//! QEMU command lines: accelerator choice, machine description, and the
//! `QEMU_FLAGS` merge rules.

use std::fmt;
use std::path::Path;

use anyhow::{bail, Result};

/// Default QEMU binary; `KEEL_QEMU` overrides it (tests and odd installs).
pub const QEMU_BIN: &str = "qemu-system-x86_64";

/// Options that must appear once: a `QEMU_FLAGS` occurrence replaces the default.
const SINGULAR: &[&str] = &["-cpu", "-smp", "-machine", "-accel", "-m"];

/// Fixed plumbing every boot needs: serial on stdout, exit status through
/// isa-debug-exit, never reboot (a triple fault must end the run, not loop).
const PLUMBING: &[&str] = &[
    "-display",
    "none",
    "-serial",
    "stdio",
    "-monitor",
    "none",
    "-no-reboot",
    "-device",
    "isa-debug-exit,iobase=0xf4,iosize=0x04",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Accel {
    Tcg,
    Kvm,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
    pub fn parse(s: &str) -> Result<Accel> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tcg" => Ok(Accel::Tcg),
            "kvm" => Ok(Accel::Kvm),
            other => bail!("unknown accelerator {other:?} (want tcg or kvm)"),
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What implements `/dev/kvm` on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvmBackend {
    /// `kvm_intel` / `kvm_amd`: hardware virtualization (VMX/SVM).
    Hardware,
    /// `kvm_pvm`: PVM runs guests without VMX/SVM, deprivileged with shadow paging. It runs
    /// an unmodified guest kernel, but a ring-3 `syscall` or `int 0x80` of such a guest does
    /// not reach the guest kernel (docs/proofs.md), and every privileged step (IPI, CR3,
    /// INVLPG) is a trip into the host.
    Pvm,
}

impl KvmBackend {
    /// The host kernel's loaded modules say which backend serves `/dev/kvm`.
    fn detect() -> KvmBackend {
        if std::path::Path::new("/sys/module/kvm_pvm").exists() {
            KvmBackend::Pvm
        } else {
            KvmBackend::Hardware
        }
    }
}

/// What the host offers and what the user forced (`KEEL_ACCEL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccelEnv {
    /// `None`: no usable `/dev/kvm`.
    pub kvm: Option<KvmBackend>,
    pub forced: Option<Accel>,
}

impl AccelEnv {
    /// KVM counts only if `/dev/kvm` opens read-write (existing is not enough:
    /// containers often expose it without permission).
    pub fn detect() -> Result<AccelEnv> {
        let opens = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
        let forced = match std::env::var("KEEL_ACCEL") {
            Ok(v) if !v.trim().is_empty() => {
                Some(Accel::parse(&v).map_err(|e| anyhow::anyhow!("KEEL_ACCEL: {e}"))?)
            }
            _ => None,
        };
        Ok(AccelEnv { kvm: opens.then(KvmBackend::detect), forced })
    }

    pub fn kvm_available(&self) -> bool {
        self.kvm.is_some()
    }

    /// One line for run headers: `KVM available`, `KVM available (PVM)`, `KVM not available`.
    pub fn kvm_summary(&self) -> String {
        let state = match self.kvm {
            None => "not available",
            Some(KvmBackend::Hardware) => "available",
            Some(KvmBackend::Pvm) => "available (PVM: kvm_pvm, no VMX/SVM)",
        };
        format!(
            "KVM {state}{}",
            self.forced.map(|a| format!(", forced KEEL_ACCEL={a}")).unwrap_or_default()
        )
    }

    /// The accelerator for a single interactive run.
    pub fn preferred(&self) -> Accel {
        self.forced.unwrap_or(if self.kvm_available() { Accel::Kvm } else { Accel::Tcg })
    }
}

/// CPU model plus flags. Flags can differ per accelerator because QEMU's named
/// models expose different features under KVM and TCG (qemu64 has x2APIC
/// under KVM only), so every proof states `+x2apic`/`-x2apic` explicitly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuSpec {
    pub model: &'static str,
    /// Flags for every accelerator, e.g. `-x2apic`, `+smep`.
    pub flags: Vec<&'static str>,
    pub tcg_flags: Vec<&'static str>,
    pub kvm_flags: Vec<&'static str>,
}

impl CpuSpec {
    pub fn new(model: &'static str, flags: &[&'static str]) -> CpuSpec {
        CpuSpec { model, flags: flags.to_vec(), tcg_flags: vec![], kvm_flags: vec![] }
    }
    /// `qemu64,-x2apic`: xAPIC on both accelerators.
    pub fn qemu64_xapic() -> CpuSpec {
        CpuSpec::new("qemu64", &["-x2apic"])
    }
    /// What `make run` boots: `qemu64,+smep,+smap,+rdrand,+x2apic` on both accelerators, the
    /// x2APIC backend Keel prefers and the hardening the kernel enables when offered (QEMU
    /// drops a flag the host cannot give, and the kernel reports what it turned on).
    /// `QEMU_FLAGS="-cpu qemu64,+smep,+smap,+rdrand,-x2apic"` boots the xAPIC backend.
    pub fn run_default() -> CpuSpec {
        CpuSpec::new("qemu64", &["+smep", "+smap", "+rdrand", "+x2apic"])
    }
    pub fn with_tcg_flags(mut self, flags: &[&'static str]) -> CpuSpec {
        self.tcg_flags.extend_from_slice(flags);
        self
    }
    pub fn with_kvm_flags(mut self, flags: &[&'static str]) -> CpuSpec {
        self.kvm_flags.extend_from_slice(flags);
        self
    }
    /// The `-cpu` argument for one accelerator.
    pub fn arg(&self, accel: Accel) -> String {
        let extra = match accel {
            Accel::Tcg => &self.tcg_flags,
            Accel::Kvm => &self.kvm_flags,
        };
        std::iter::once(self.model)
            .chain(self.flags.iter().copied())
            .chain(extra.iter().copied())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Machines with more vCPUs than this (those xAPIC cannot address) run without System
/// Management Mode. SeaBIOS relocates SMBASE on every CPU one after another, and under TCG
/// each relocation grows QEMU's own memory: with SMM a 1,024-vCPU q35 passed 14 GB of host
/// RSS before SeaBIOS handed over; without it SeaBIOS hands over in 1-2 minutes at about
/// 400 MB, and QEMU stays under 600 MB with Keel running on all 1,024 vCPUs. Nothing in
/// Keel uses SMM (no SMI handler, no SMRAM), so only the firmware notices.
pub const SMM_OFF_ABOVE_CPUS: u32 = 255;

/// The virtual machine a boot runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineSpec {
    pub machine: &'static str,
    pub smp: u32,
    pub memory: &'static str,
    pub cpu: CpuSpec,
    /// Extra raw QEMU arguments (devices etc.), appended as given.
    pub extra: Vec<String>,
}

impl MachineSpec {
    /// Uniprocessor q35, 128 MiB, qemu64 without x2APIC.
    pub fn q35_up() -> MachineSpec {
        MachineSpec {
            machine: "q35",
            smp: 1,
            memory: "128M",
            cpu: CpuSpec::qemu64_xapic(),
            extra: vec![],
        }
    }
    /// The `cargo xtask run` default: q35, 2 CPUs, x2APIC ([`CpuSpec::run_default`]).
    pub fn run_default() -> MachineSpec {
        MachineSpec { smp: 2, cpu: CpuSpec::run_default(), ..MachineSpec::q35_up() }
    }

    /// The `-machine` value: as given, plus `smm=off` on machines of more than
    /// [`SMM_OFF_ABOVE_CPUS`] vCPUs (unless the machine string already says).
    pub fn machine_arg(&self) -> String {
        if self.smp > SMM_OFF_ABOVE_CPUS && !self.machine.contains("smm=") {
            format!("{},smm=off", self.machine)
        } else {
            self.machine.to_string()
        }
    }

    /// Machine options for `accel` (without kernel and plumbing).
    pub fn args(&self, accel: Accel) -> Vec<String> {
        let mut a = vec![
            "-machine".into(),
            self.machine_arg(),
            "-accel".into(),
            accel.name().into(),
            "-cpu".into(),
            self.cpu.arg(accel),
            "-smp".into(),
            self.smp.to_string(),
            "-m".into(),
            self.memory.into(),
        ];
        a.extend(self.extra.iter().cloned());
        a
    }
}

/// What to boot.
#[derive(Clone, Debug)]
pub struct BootSpec<'a> {
    pub kernel: &'a Path,
    pub cmdline: &'a str,
    /// Multiboot modules (`-initrd a,b`): the proof's manifest, then its user programs.
    pub modules: &'a [std::path::PathBuf],
}

/// The CPUs present at boot that an `-smp` value asks for: its leading count or `cpus=`,
/// else the product of the topology it gives (`sockets=4,cores=36,threads=2`); `maxcpus=`
/// only adds hot-pluggable slots. `None` when the value names none of these.
pub fn smp_cpus(value: &str) -> Option<u32> {
    let mut count = None;
    let mut topology: Option<u32> = None;
    for (i, part) in value.split(',').enumerate() {
        let (key, number) = match part.split_once('=') {
            Some((k, v)) => (k, v.parse::<u32>().ok()),
            None if i == 0 => ("cpus", part.parse::<u32>().ok()),
            None => continue,
        };
        match (key, number) {
            ("cpus", Some(n)) => count = Some(n),
            ("sockets" | "dies" | "clusters" | "cores" | "threads", Some(n)) => {
                topology = Some(topology.unwrap_or(1).saturating_mul(n))
            }
            _ => {}
        }
    }
    count.or(topology)
}

/// What a proof's [`MachineSpec`] adds for its CPU count, added too when the count comes
/// from `QEMU_FLAGS` (`make run QEMU_FLAGS="-smp 1024 ..."`): `smm=off` on the machine above
/// [`SMM_OFF_ABOVE_CPUS`] vCPUs unless it says otherwise.
fn fit_machine_to_user_smp(args: &mut [String], user_flags: &[String]) {
    if user_smp(user_flags).is_none_or(|n| n <= SMM_OFF_ABOVE_CPUS) {
        return;
    }
    if let Some(p) = args.iter().position(|a| canonical_opt(a) == Some("-machine")) {
        if let Some(machine) = args.get_mut(p + 1).filter(|m| !m.contains("smm=")) {
            machine.push_str(",smm=off");
        }
    }
}

/// The CPU count of the last `-smp` in `user_flags` that names one.
fn user_smp(user_flags: &[String]) -> Option<u32> {
    user_flags
        .windows(2)
        .rev()
        .filter(|w| canonical_opt(&w[0]) == Some("-smp"))
        .find_map(|w| smp_cpus(&w[1]))
}

/// How many CPUs the boot asks for once `QEMU_FLAGS` is merged: the user's `-smp`, else the
/// machine's.
pub fn requested_cpus(machine: &MachineSpec, user_flags: &[String]) -> u32 {
    user_smp(user_flags).unwrap_or(machine.smp)
}

/// Full argument vector (without the program name).
pub fn command_args(
    machine: &MachineSpec,
    accel: Accel,
    boot: &BootSpec<'_>,
    user_flags: &[String],
) -> Vec<String> {
    let mut args = merge_flags(&machine.args(accel), user_flags);
    fit_machine_to_user_smp(&mut args, user_flags);
    args.extend(PLUMBING.iter().map(|s| s.to_string()));
    args.push("-kernel".into());
    args.push(boot.kernel.display().to_string());
    args.push("-append".into());
    args.push(boot.cmdline.into());
    if !boot.modules.is_empty() {
        args.push("-initrd".into());
        args.push(
            boot.modules.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(","),
        );
    }
    args
}

/// Full argument vector for booting `iso` as a CD under the firmware options `firmware`
/// (empty: SeaBIOS); GRUB on the ISO then loads the kernel.
pub fn iso_command_args(
    machine: &MachineSpec,
    accel: Accel,
    iso: &Path,
    firmware: &[String],
    user_flags: &[String],
) -> Vec<String> {
    let mut args = merge_flags(&machine.args(accel), user_flags);
    fit_machine_to_user_smp(&mut args, user_flags);
    args.extend(PLUMBING.iter().map(|s| s.to_string()));
    args.extend(firmware.iter().cloned());
    args.push("-cdrom".into());
    args.push(iso.display().to_string());
    args
}

/// `-d trace:a,trace:b -D <file>`: QEMU's log backend writes one line per event to `file`.
pub fn trace_args(events: &[&str], file: &Path) -> Vec<String> {
    let item = |e: &&str| {
        if *e == crate::trace::INTERRUPT_LOG {
            e.to_string()
        } else {
            format!("trace:{e}")
        }
    };
    let spec = events.iter().map(item).collect::<Vec<_>>().join(",");
    vec!["-d".into(), spec, "-D".into(), file.display().to_string()]
}

fn canonical_opt(tok: &str) -> Option<&'static str> {
    let t = tok.strip_prefix('-').filter(|t| t.starts_with('-')).unwrap_or(tok); // `--cpu` == `-cpu`
    if t == "-M" {
        return Some("-machine");
    }
    SINGULAR.iter().copied().find(|s| *s == t)
}

/// Extend `defaults` with `user` flags; a singular option (`-cpu`, `-smp`,
/// `-machine`/`-M`, `-accel`, `-m`) in `user` replaces the default of the same
/// option in place; everything else is appended in order.
pub fn merge_flags(defaults: &[String], user: &[String]) -> Vec<String> {
    let mut out = defaults.to_vec();
    let mut appended = Vec::new();
    let mut i = 0;
    while i < user.len() {
        match (canonical_opt(&user[i]), user.get(i + 1)) {
            (Some(opt), Some(val)) => {
                match out.iter().position(|d| canonical_opt(d) == Some(opt)) {
                    Some(p) if p + 1 < out.len() => out[p + 1] = val.clone(),
                    _ => appended.extend([opt.to_string(), val.clone()]),
                }
                i += 2;
            }
            _ => {
                appended.push(user[i].clone());
                i += 1;
            }
        }
    }
    out.extend(appended);
    out
}

/// Split `QEMU_FLAGS` like a shell would for simple cases: whitespace
/// separates words; '...' and "..." group; backslash escapes one character
/// (outside single quotes).
pub fn split_words(s: &str) -> Result<Vec<String>> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => bail!("unterminated ' in {s:?}"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => cur.push(c),
                            None => bail!("trailing backslash in {s:?}"),
                        },
                        Some(c) => cur.push(c),
                        None => bail!("unterminated \" in {s:?}"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => bail!("trailing backslash in {s:?}"),
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// `QEMU_FLAGS` from the environment, split.
pub fn user_flags_from_env() -> Result<Vec<String>> {
    match std::env::var("QEMU_FLAGS") {
        Ok(s) => split_words(&s).map_err(|e| anyhow::anyhow!("QEMU_FLAGS: {e}")),
        Err(_) => Ok(vec![]),
    }
}

/// Render an argv for copy-pasting into a shell.
pub fn shell_quote(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_=,./:+".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        split_words(s).unwrap()
    }

    #[test]
    fn split_quoting() {
        assert_eq!(v("  -cpu qemu64,+x2apic   -smp 4 "), ["-cpu", "qemu64,+x2apic", "-smp", "4"]);
        assert_eq!(
            v(r#"-append 'a b' -x "c \"d\"" e\ f"#),
            ["-append", "a b", "-x", "c \"d\"", "e f"]
        );
        assert_eq!(v("''"), [""]);
        assert!(v("").is_empty());
        assert!(split_words("'open").is_err());
        assert!(split_words("\"open").is_err());
    }

    #[test]
    fn merge_replaces_singular_and_appends_rest() {
        let defaults = MachineSpec::run_default().args(Accel::Tcg);
        let merged = merge_flags(&defaults, &v("-cpu qemu64,+x2apic -smp 4 -d int -M pc --m 256M"));
        assert_eq!(merged, v("-machine pc -accel tcg -cpu qemu64,+x2apic -smp 4 -m 256M -d int"));
    }

    #[test]
    fn merge_without_user_flags_is_identity() {
        let defaults = MachineSpec::run_default().args(Accel::Kvm);
        assert_eq!(merge_flags(&defaults, &[]), defaults);
        assert_eq!(
            defaults,
            v("-machine q35 -accel kvm -cpu qemu64,+smep,+smap,+rdrand,+x2apic -smp 2 -m 128M")
        );
    }

    #[test]
    fn run_boots_x2apic_and_xapic_is_one_flag_away() {
        for accel in [Accel::Tcg, Accel::Kvm] {
            let defaults = MachineSpec::run_default().args(accel);
            let cpu =
                |args: &[String]| args[args.iter().position(|a| a == "-cpu").unwrap() + 1].clone();
            assert_eq!(cpu(&defaults), "qemu64,+smep,+smap,+rdrand,+x2apic");
            let xapic = merge_flags(&defaults, &v("-cpu qemu64,+smep,+smap,+rdrand,-x2apic"));
            assert_eq!(cpu(&xapic), "qemu64,+smep,+smap,+rdrand,-x2apic");
            assert_eq!(xapic.iter().filter(|a| *a == "-cpu").count(), 1);
        }
    }

    #[test]
    fn smp_from_qemu_flags_turns_smm_off_as_the_proofs_do() {
        let boot = BootSpec { kernel: Path::new("k"), cmdline: "", modules: &[] };
        let machine =
            |args: &[String]| args[args.iter().position(|a| a == "-machine").unwrap() + 1].clone();
        let run = MachineSpec::run_default();
        let with = |flags: &str| command_args(&run, Accel::Tcg, &boot, &v(flags));
        assert_eq!(machine(&with("-cpu qemu64,+x2apic -smp 1024 -m 2G")), "q35,smm=off");
        assert_eq!(machine(&with("-smp cpus=288,maxcpus=300")), "q35,smm=off");
        assert_eq!(machine(&with("-smp sockets=4,cores=36,threads=2")), "q35,smm=off");
        assert_eq!(machine(&with("-smp 255")), "q35");
        assert_eq!(machine(&with("-smp 2,maxcpus=260")), "q35");
        assert_eq!(machine(&with("-smp 1024 -M q35,smm=on")), "q35,smm=on");
        assert_eq!(machine(&with("-smp 1024 -machine pc")), "pc,smm=off");
        assert_eq!(machine(&with("")), "q35");
        assert_eq!(requested_cpus(&run, &v("-smp 1024")), 1024);
        assert_eq!(requested_cpus(&run, &[]), 2);
        assert_eq!(smp_cpus("maxcpus=8"), None);
    }

    #[test]
    fn smm_off_only_above_xapic_reach() {
        let at = |smp, machine| MachineSpec { smp, machine, ..MachineSpec::q35_up() }.machine_arg();
        assert_eq!(at(255, "q35"), "q35");
        assert_eq!(at(256, "q35"), "q35,smm=off");
        assert_eq!(at(1024, "q35,kernel-irqchip=split"), "q35,kernel-irqchip=split,smm=off");
        assert_eq!(at(1024, "q35,smm=on"), "q35,smm=on");
    }

    #[test]
    fn merge_dangling_option_is_appended() {
        let merged = merge_flags(&v("-smp 1"), &v("-s -cpu"));
        assert_eq!(merged, v("-smp 1 -s -cpu"));
    }

    #[test]
    fn per_accel_cpu_flags() {
        let cpu = CpuSpec::new("qemu64", &["+x2apic"])
            .with_tcg_flags(&["+smep"])
            .with_kvm_flags(&["+rdrand"]);
        assert_eq!(cpu.arg(Accel::Tcg), "qemu64,+x2apic,+smep");
        assert_eq!(cpu.arg(Accel::Kvm), "qemu64,+x2apic,+rdrand");
    }

    #[test]
    fn trace_arguments() {
        let a = trace_args(&["cpu_set_apic_base", "apic_deliver_irq"], Path::new("/t/x-tcg.trace"));
        assert_eq!(a, v("-d trace:cpu_set_apic_base,trace:apic_deliver_irq -D /t/x-tcg.trace"));
        let a = trace_args(&["int", "apic_deliver_irq"], Path::new("/t/x-tcg.trace"));
        assert_eq!(a, v("-d int,trace:apic_deliver_irq -D /t/x-tcg.trace"));
    }

    #[test]
    fn full_command_line() {
        let k = Path::new("/k/keel");
        let mods = [std::path::PathBuf::from("/a"), std::path::PathBuf::from("/b")];
        let args = command_args(
            &MachineSpec::q35_up(),
            Accel::Tcg,
            &BootSpec { kernel: k, cmdline: "proof=boot x=1", modules: &mods },
            &[],
        );
        let s = shell_quote(&args);
        assert!(s.starts_with("-machine q35 -accel tcg -cpu qemu64,-x2apic -smp 1 -m 128M -display none -serial stdio"), "{s}");
        assert!(s.contains("-device isa-debug-exit,iobase=0xf4,iosize=0x04"));
        assert!(s.ends_with("-kernel /k/keel -append 'proof=boot x=1' -initrd /a,/b"), "{s}");
        assert!(!s.contains("-nographic"));
    }
}
