//! The proof registry. A proof boots a kernel image (the one with the scenarios compiled in,
//! unless it says otherwise) with `proof=<scenario>` on its command line, on a declared
//! virtual machine, under declared accelerators, and passes only if the QEMU exit status,
//! the VERDICT line and every evidence check match and no EV line was malformed. Several
//! proofs may boot one scenario on different machines. Add a proof by adding one entry to
//! [`registry`].

use std::time::Duration;

use crate::builder::Image;
use crate::checks::{
    custom, eq, for_each_cpu, ge, is, keys_equal, le, present, range, Check, Expect,
};
use crate::iso::Firmware;
#[cfg(test)]
use crate::qemu::{Accel, AccelEnv, KvmBackend};
use crate::qemu::{CpuSpec, MachineSpec};
#[allow(unused_imports)]
use crate::trace::{ev_str, ev_u64, Trace, TraceCheck};

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
    /// Kernel command line; starts with `proof=<scenario>` unless the proof boots none.
    pub cmdline: String,
    /// The kernel scenario (`proof=<scenario>`); several proofs may boot one scenario on
    /// different machines. Empty: no `proof=`, the kernel's plain boot.
    pub scenario: &'static str,
    /// The kernel image booted: the scenarios image unless [`Proof::image`] says otherwise.
    pub image: Image,
    /// Extra kernel command-line options after `proof=<scenario>`.
    pub extra_args: &'static str,
    pub machine: MachineSpec,
    pub accels: Accels,
    pub timeout: Duration,
    pub expect: Expect,
    pub checks: Vec<Check>,
    /// Benchmarks run under `cargo xtask bench`, not `cargo xtask test`.
    pub bench: bool,
    /// Large machines (hundreds of vCPUs, minutes under TCG): run by `cargo xtask
    /// test-scale`, not `cargo xtask test`.
    pub scale: bool,
    /// Long proofs run under `cargo xtask test-hostile`, not `cargo xtask test`.
    pub long: bool,
    /// Endurance proofs run under `cargo xtask test-soak`, not `cargo xtask test`.
    pub soak: bool,
    /// Boot manifest (path relative to the repo root), the first Multiboot module.
    pub manifest: Option<&'static str>,
    /// User binaries (names under `user/`), Multiboot modules after the manifest, in order.
    pub programs: Vec<&'static str>,
    /// QEMU trace events to log (`-d trace:...`); makes the proof TCG-only.
    pub trace_events: Vec<&'static str>,
    pub trace_checks: Vec<TraceCheck>,
    /// Ring-3 programs must enter the kernel (`syscall` / `int 0x80`): not possible under a
    /// PVM-backed KVM, so such runs are skipped there with the reason.
    pub guest_ring3: bool,
    /// A raw disk image created fresh for each run (the guest may write to it).
    pub disk: Option<Disk>,
    /// How the kernel is loaded: QEMU `-kernel` (Multiboot 1), or GRUB from an ISO under a
    /// firmware (Multiboot 2); the latter belong to `cargo xtask test-firmware`.
    pub boot: Boot,
}

/// A disk a proof's machine gets: a raw image of `bytes` filled with
/// `keel_nvme::pattern`'s image pattern, attached as `-drive ...,if=none,id=<id>` for a
/// device in the proof's `qemu_extra` to name. After the run the image is read back: the
/// 4 KiB block `written` (if any) must hold the write pattern and every other block the
/// image pattern, so exactly that block reached the host file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Disk {
    pub id: &'static str,
    pub bytes: u64,
    pub written: Option<u64>,
}

/// How a proof's kernel gets loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boot {
    /// QEMU's `-kernel` Multiboot 1 loader, modules through `-initrd`.
    Kernel,
    /// A per-proof GRUB ISO (`-cdrom`) under this firmware.
    Iso(Firmware),
}

impl Proof {
    /// Defaults: `proof=<name>`, uniprocessor q35 with `qemu64,-x2apic`,
    /// 128 MiB, any accelerator, 60 s, expects `VERDICT pass` and status 33.
    pub fn new(name: &'static str, description: &'static str) -> Proof {
        Proof {
            name,
            description,
            cmdline: format!("proof={name}"),
            scenario: name,
            image: Image::Scenarios,
            extra_args: "",
            machine: MachineSpec::q35_up(),
            accels: Accels::Any,
            timeout: DEFAULT_TIMEOUT,
            expect: Expect::PASS,
            checks: vec![],
            bench: false,
            scale: false,
            long: false,
            soak: false,
            manifest: None,
            programs: vec![],
            trace_events: vec![],
            trace_checks: vec![],
            guest_ring3: false,
            disk: None,
            boot: Boot::Kernel,
        }
    }
    /// Extra kernel options after `proof=<name>`.
    pub fn args(mut self, extra: &'static str) -> Self {
        self.extra_args = extra;
        self.rebuild_cmdline()
    }
    /// Boots kernel scenario `scenario` instead of the one named like the proof.
    pub fn scenario(mut self, scenario: &'static str) -> Self {
        self.scenario = scenario;
        self.rebuild_cmdline()
    }
    /// Boots no scenario: no `proof=`, the kernel's plain boot (init and the manifest).
    pub fn without_scenario(mut self) -> Self {
        self.scenario = "";
        self.rebuild_cmdline()
    }
    /// Boots this kernel image.
    pub fn image(mut self, image: Image) -> Self {
        self.image = image;
        self
    }
    fn rebuild_cmdline(mut self) -> Self {
        self.cmdline = if self.scenario.is_empty() {
            self.extra_args.to_string()
        } else if self.extra_args.is_empty() {
            format!("proof={}", self.scenario)
        } else {
            format!("proof={} {}", self.scenario, self.extra_args)
        };
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

    pub fn long(mut self) -> Self {
        self.long = true;
        self
    }
    /// Belongs to `cargo xtask test-soak` (see [`Proof::soak`]).
    pub fn soak(mut self) -> Self {
        self.soak = true;
        self
    }

    pub fn bench(mut self) -> Self {
        self.bench = true;
        self
    }
    /// Belongs to `cargo xtask test-scale` (see [`Proof::scale`]).
    pub fn scale(mut self) -> Self {
        self.scale = true;
        self
    }
    /// Boot manifest, e.g. `"manifests/drivers.manifest"` (relative to the repo root);
    /// passed as the first Multiboot module.
    pub fn manifest(mut self, path: &'static str) -> Self {
        self.manifest = Some(path);
        self
    }
    /// User programs passed as Multiboot modules after the manifest, e.g. `&["edu-driver"]`.
    pub fn programs(mut self, names: &[&'static str]) -> Self {
        self.programs.extend_from_slice(names);
        self
    }
    /// Log these QEMU trace events to `target/proofs/<name>-tcg.trace` for `trace_check`s.
    /// Trace points only fire in QEMU's userspace APIC, so this makes the proof TCG-only.
    pub fn trace(mut self, events: &[&'static str]) -> Self {
        self.trace_events.extend_from_slice(events);
        self
    }
    /// A check on evidence plus the parsed QEMU trace; `Err(explanation)` fails the proof.
    pub fn trace_check(
        mut self,
        name: &str,
        f: impl Fn(&keel_evidence::Transcript, &Trace) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.trace_checks.push(TraceCheck { name: name.into(), f: std::sync::Arc::new(f) });
        self
    }
    /// The proof runs ring-3 programs that enter the kernel.
    /// Attaches a fresh pattern-filled disk image (see [`Disk`]) whose 4 KiB block
    /// `written` the guest must have written.
    pub fn disk(mut self, id: &'static str, bytes: u64, written: Option<u64>) -> Self {
        self.disk = Some(Disk { id, bytes, written });
        self
    }
    pub fn guest_ring3(mut self) -> Self {
        self.guest_ring3 = true;
        self
    }
    /// What `plan` honours: traced proofs are TCG-only whatever `accels` says.
    pub fn effective_accels(&self) -> Accels {
        if self.trace_events.is_empty() {
            self.accels
        } else {
            Accels::TcgOnly
        }
    }
    /// Why the accelerator set is narrower than declared, for `cargo xtask proofs`.
    pub fn accel_note(&self) -> Option<&'static str> {
        (!self.trace_events.is_empty()).then_some(TRACE_TCG_ONLY)
    }
    /// Multiboot modules in `-initrd` order: manifest, then programs.
    pub fn modules(
        &self,
        root: &std::path::Path,
        user_dir: &std::path::Path,
    ) -> Vec<std::path::PathBuf> {
        self.manifest
            .iter()
            .map(|m| root.join(m))
            .chain(self.programs.iter().map(|p| user_dir.join(p)))
            .collect()
    }
}

const TRACE_TCG_ONLY: &str =
    "TCG only: QEMU trace points need the userspace APIC (KVM's in-kernel APIC bypasses them)";

/// Every proof. Order here is the order of the report.
/// CPU flags the SMP proofs add on both accelerators (QEMU drops what a host lacks, and the
/// kernel reports what it actually enabled).
const HARDENING: &[&str] = &["+smep", "+smap", "+rdrand"];

fn xapic_cpu() -> CpuSpec {
    CpuSpec::new("qemu64", &["-x2apic"]).with_tcg_flags(HARDENING).with_kvm_flags(HARDENING)
}

pub(crate) fn x2apic_cpu() -> CpuSpec {
    CpuSpec::new("qemu64", &["+x2apic"]).with_tcg_flags(HARDENING).with_kvm_flags(HARDENING)
}

/// Name of the check that every x2APIC LDR is architectural (Bochs replaces it, see `bochs.rs`).
pub const LDR_CHECK: &str = "x2APIC: every CPU's LDR is the cluster/member its APIC ID derives";

/// The checks every `proof=smp` boot must meet: all CPUs online in `mode`, every CPU ticking
/// on vector 48, every ping on vector 49 sent and acknowledged exactly, the RTC routed
/// through the IOAPIC, no LAPIC errors.
fn smp_checks(p: Proof, cpus: u64, mode: &'static str) -> Proof {
    let p = p.scenario("smp");
    let pings = 100;
    let per_cpu = (cpus - 1) * pings;
    p.check(eq("lapic.mode", mode))
        .check(eq("smp.online", cpus))
        .check(eq("smp.skipped", 0))
        .check(for_each_cpu("cpu.*.mode", is::eq(mode)).count_eq_key("smp.online"))
        .check(for_each_cpu("cpu.*.online", is::eq("yes")).count_eq_key("smp.online"))
        .check(timer_fits_mode())
        .check(for_each_cpu("cpu.*.timer_hz", is::ge(1_000_000)).count_eq_key("smp.online"))
        // Read back from each CPU's LVT LINT registers. QEMU's MADT has one local APIC NMI
        // entry (all processors, LINT1, conforming): LINT1 is NMI, LINT0 masked.
        .check(for_each_cpu("cpu.*.lint1", is::eq("nmi")).count_eq_key("smp.online"))
        .check(for_each_cpu("cpu.*.lint0", is::eq("masked")).count_eq_key("smp.online"))
        .check(eq("ipi.expected", cpus * per_cpu))
        .check(keys_equal("ipi.sent", "ipi.expected"))
        .check(keys_equal("ipi.acked", "ipi.expected"))
        .check(eq("ipi.timeouts", 0))
        .check(for_each_cpu("ipi.cpu.*.sent", is::eq(per_cpu)).count_eq_key("smp.online"))
        .check(for_each_cpu("ipi.cpu.*.acked", is::eq(per_cpu)).count_eq_key("smp.online"))
        // Counted by each target's vector-49 handler. Pings to one target are serialised, so
        // they never merge; only the IPI that posts a CPU its ping work may merge with the
        // first ping sent to it.
        .check(for_each_cpu("ipi.cpu.*.interrupts", is::ge(per_cpu - 1)).count_eq_key("smp.online"))
        .check(for_each_cpu("cpu.*.lapic_errors", is::eq(0)).count_eq_key("smp.online"))
        .check(ge("rtc.interrupts", 20))
        .check(keys_equal("rtc.on_target", "rtc.interrupts"))
        .check(eq("rtc.on_wrong_cpu", 0))
        .check(custom(LDR_CHECK, move |t| {
            if mode != "x2apic" {
                return Ok(());
            }
            let get = |k: String| t.evidence.get(&k).and_then(|v| v.as_u64());
            let online = get("smp.online".into()).ok_or("no smp.online")?;
            for cpu in 0..online {
                let id =
                    get(format!("cpu.{cpu}.apic_id")).ok_or(format!("no cpu.{cpu}.apic_id"))?;
                let ldr = get(format!("cpu.{cpu}.x2apic_ldr"))
                    .ok_or(format!("no cpu.{cpu}.x2apic_ldr"))?;
                let derived = (id >> 4) << 16 | 1 << (id & 0xF);
                if ldr != derived {
                    return Err(format!(
                        "cpu {cpu}: APIC ID {id} has LDR {ldr:#x}, architecturally {derived:#x}"
                    ));
                }
            }
            Ok(())
        }))
        .check(custom(
            "every CPU's LVT timer is in the boot CPU's mode (cpu.*.timer_mode == timer.mode)",
            |t| {
                let mode = ev_str(t, "timer.mode")?;
                let online = ev_u64(t, "smp.online")?;
                let modes: Vec<_> = t
                    .evidence
                    .matching("cpu.*.timer_mode")
                    .map(|(k, v)| (k.to_string(), v.as_str().to_string()))
                    .collect();
                if let Some((k, v)) = modes.iter().find(|(_, v)| *v != mode) {
                    return Err(format!("{k} = {v}, timer.mode = {mode}"));
                }
                if modes.len() as u64 != online {
                    Err(format!("{} CPUs report a timer mode, {online} online", modes.len()))
                } else {
                    Ok(())
                }
            },
        ))
        .check(timer_mode_follows_request())
}

/// Whether the boot asked for a periodic tick (`timer=periodic` or `timer=tick`); anything
/// else runs tickless, the default.
fn periodic_requested(t: &keel_evidence::Transcript) -> Result<bool, String> {
    match ev_str(t, "timer.requested")?.as_str() {
        "periodic" | "tick" => Ok(true),
        "default" | "tickless" => Ok(false),
        other => Err(format!("timer.requested = {other}")),
    }
}

/// The mode read back from the boot CPU's LVT is the one asked for: tickless by default
/// (LAPIC one-shot, or TSC-deadline where CPUID.1:ECX[24] offers it), the periodic LVT for
/// `timer=periodic`, and for `timer=tick` a tick by TSC-deadline where offered.
pub(crate) fn timer_mode_follows_request() -> Check {
    custom("timer mode (read from the LVT) follows timer= and CPUID.1:ECX[24]", |t| {
        let get = |k: &str| t.evidence.get(k).map(|v| v.as_str().to_string());
        let (cpuid, requested, mode) =
            (get("cpu.tsc_deadline"), get("timer.requested"), get("timer.mode"));
        match (cpuid.as_deref(), requested.as_deref(), mode.as_deref()) {
            (Some("yes"), Some("default" | "tickless" | "tick"), Some("tsc-deadline"))
            | (Some("no"), Some("default" | "tickless"), Some("one-shot"))
            | (Some("no"), Some("tick"), Some("periodic"))
            | (Some(_), Some("periodic"), Some("periodic")) => Ok(()),
            other => Err(format!("cpu.tsc_deadline/timer.requested/timer.mode = {other:?}")),
        }
    })
}

/// Timer interrupts over the `proof=smp` window (the APs idle, the boot CPU waiting), counted
/// in each CPU's vector-48 handler, as the requested mode must give them. Periodic: every CPU
/// ticked at least 10 times in the 1 s window (100 at 100 Hz; the kernel's own bound is a
/// quarter, `check_periodic_ticks` says why). Tickless: every CPU armed one-shot deadlines
/// and idled with none armed (`timer.tickless`), no idle AP took more than one interrupt
/// (issue 25's ≤ 0.1/s allows 0.1 in 1 s; a leftover tick gives 100, an idle CPU that kept
/// its 250 ms watchdog 4), and every CPU's own deadline fired.
pub(crate) fn timer_fits_mode() -> Check {
    custom("timer interrupts fit the requested mode (periodic: every CPU ticks; tickless: idle APs take <= 1, every CPU's deadline fires)", |t| {
        let online = ev_u64(t, "smp.online")?;
        let window_ms = ev_u64(t, "smp.ticks.window_ms")?;
        if window_ms < 900 {
            return Err(format!("timer window {window_ms} ms is too short"));
        }
        if periodic_requested(t)? {
            let (min, ticking) = (ev_u64(t, "smp.ticks.min")?, ev_u64(t, "smp.ticks.cpus_ticking")?);
            return match (min >= 10, ticking == online) {
                (true, true) => Ok(()),
                _ => Err(format!("periodic: smp.ticks.min = {min}, {ticking} of {online} CPUs ticking")),
            };
        }
        let mut wrong = Vec::new();
        let tickless = ev_str(t, "timer.tickless")?;
        if tickless != "yes" {
            wrong.push(format!("timer.tickless = {tickless}"));
        }
        let (ap_max, ap_total) = (ev_u64(t, "smp.ticks.ap_max")?, ev_u64(t, "smp.ticks.ap_total")?);
        // Absent when the kernel ran its periodic check instead: none counted quiet.
        let quiet = ev_u64(t, "smp.ticks.idle_cpus_quiet").unwrap_or(0);
        if ap_max > 1 || quiet + 1 != online {
            wrong.push(format!("idle APs took up to {ap_max} timer interrupts ({ap_total} in all) in {window_ms} ms; {quiet} of {} quiet", online - 1));
        }
        let on_deadline = ev_u64(t, "smp.timer.cpus_on_deadline").unwrap_or(0);
        if on_deadline != online {
            wrong.push(format!("{on_deadline} of {online} CPUs' one-shot deadlines fired"));
        }
        if !wrong.is_empty() {
            return Err(format!("tickless requested: {}", wrong.join("; ")));
        }
        Ok(())
    })
}

/// QEMU trace events the APIC trace proofs log.
const APIC_TRACE: &[&str] = &["cpu_set_apic_base", "apic_deliver_irq", crate::trace::INTERRUPT_LOG];
/// IA32_APIC_BASE bit 10 (EXTD, x2APIC) and bit 11 (EN).
const APIC_BASE_EXTD_EN: u64 = (1 << 10) | (1 << 11);
/// How far the kernel's RTC count may differ from the interrupts the target CPU took (QEMU's
/// `-d int` log), either way: one interrupt in flight when the counter was read. The route
/// is masked and the kernel waits 5 ms before reading, so in practice the two are equal.
const RTC_TAKEN_TOLERANCE: u64 = 1;

/// Two-sided: the kernel's RTC count equals, within [`RTC_TAKEN_TOLERANCE`], the number of
/// times a CPU took the RTC vector, and no CPU took it more often than the IOAPIC delivered
/// it. Deliveries may exceed interrupts taken by any amount: each RTC tick is a new edge
/// for QEMU's IOAPIC even while the line is still high, and one that arrives while the
/// vector is pending in the IRR merges with it (tens of percent at 1,024 Hz on a loaded host).
fn rtc_counts_agree(counted: u64, taken: u64, delivered: u64) -> Result<(), String> {
    if taken > delivered {
        Err(format!("CPUs took the RTC vector {taken} times but the IOAPIC delivered it only {delivered} times"))
    } else if counted.abs_diff(taken) > RTC_TAKEN_TOLERANCE {
        Err(format!("the kernel counted {counted} RTC interrupts, the CPU took {taken} (QEMU delivered {delivered}; tolerance {RTC_TAKEN_TOLERANCE})"))
    } else {
        Ok(())
    }
}

/// The other side of a trace's "at least as many as the kernel counted": each source's
/// kernel count (`counter`) equals, within [`RTC_TAKEN_TOLERANCE`], the number of times a CPU
/// took its vector (`<prefix>.vector`, QEMU's `-d int` log). Adds that log to the trace.
pub(crate) fn counted_as_taken(
    p: Proof,
    sources: &'static [(&'static str, &'static str)],
) -> Proof {
    let p = if sources.is_empty() { p } else { p.trace(&[crate::trace::INTERRUPT_LOG]) };
    sources.iter().fold(p, |p, &(prefix, counter)| {
        p.trace_check(
            &format!("{counter} == interrupts CPUs took on {prefix}.vector (-d int)"),
            move |t, tr| {
                let number = ev_u64(t, &format!("{prefix}.vector"))?;
                let vector = u8::try_from(number)
                    .map_err(|_| format!("{prefix}.vector = {number} is not a vector"))?;
                let (counted, taken) = (ev_u64(t, counter)?, tr.taken(vector) as u64);
                if counted.abs_diff(taken) > RTC_TAKEN_TOLERANCE {
                    Err(format!(
                        "the kernel counted {counted}, CPUs took vector {vector} {taken} times"
                    ))
                } else {
                    Ok(())
                }
            },
        )
    })
}

/// Cross-check the kernel's own APIC counts against what QEMU's emulated APIC saw.
fn apic_trace_checks(p: Proof, x2apic: bool) -> Proof {
    let p = p
        .trace(APIC_TRACE)
        .trace_check("cpu_set_apic_base events == lapic.apic_base_writes", |t, tr| {
            let (traced, claimed) = (tr.count("cpu_set_apic_base", &[]) as u64, ev_u64(t, "lapic.apic_base_writes")?);
            if traced == claimed { Ok(()) } else { Err(format!("{traced} traced, kernel says {claimed}")) }
        })
        .trace_check("the IOAPIC delivered the RTC to rtc.apic_id only; the kernel counted what the CPU took", |t, tr| {
            let (vector, dest) = (ev_str(t, "rtc.vector")?, ev_str(t, "rtc.apic_id")?);
            let to_target = tr.count("apic_deliver_irq", &[("vector", &vector), ("dest", &dest)]) as u64;
            let all = tr.count("apic_deliver_irq", &[("vector", &vector)]) as u64;
            let number = ev_u64(t, "rtc.vector")?;
            let taken = tr.taken(u8::try_from(number).map_err(|_| format!("rtc.vector = {number} is not a vector"))?) as u64;
            if all != to_target {
                Err(format!("{} deliveries of vector {vector} went to another APIC", all - to_target))
            } else {
                rtc_counts_agree(ev_u64(t, "rtc.interrupts")?, taken, to_target)
            }
        });
    if !x2apic {
        return p;
    }
    p.trace_check("every IA32_APIC_BASE write sets EXTD|EN and matches cpu.*.apic_base", |t, tr| {
        let mut traced = std::collections::BTreeSet::new();
        for v in tr.values("cpu_set_apic_base", "value") {
            let n = keel_evidence::parse_u64(v)
                .ok_or_else(|| format!("traced value {v:?} is not an integer"))?;
            if n & APIC_BASE_EXTD_EN != APIC_BASE_EXTD_EN {
                return Err(format!("traced write {v} lacks EXTD|EN"));
            }
            traced.insert(n);
        }
        let mut claimed = std::collections::BTreeSet::new();
        for (k, v) in t.evidence.matching("cpu.*.apic_base") {
            claimed.insert(v.as_u64().ok_or_else(|| format!("{k} = {v} is not an integer"))?);
        }
        if claimed.is_empty() {
            return Err("no cpu.*.apic_base evidence".into());
        }
        let hex = |s: &std::collections::BTreeSet<u64>| {
            s.iter().map(|n| format!("{n:#x}")).collect::<Vec<_>>().join(",")
        };
        if traced == claimed {
            Ok(())
        } else {
            Err(format!("traced {{{}}} != evidence {{{}}}", hex(&traced), hex(&claimed)))
        }
    })
}

/// Firmware (SeaBIOS) enables x2APIC itself when the machine may hold APIC IDs above 254.
fn firmware_x2apic_machine(p: Proof) -> Proof {
    p.smp(2).cpu(CpuSpec::new("qemu64", &["+x2apic"])).qemu_extra(&["-smp", "2,maxcpus=260"])
}

/// `proof=bench` on 2 CPUs in `mode`: 10,000 round trips to a busy and to an idle target,
/// the busy one spinning throughout, the mode read back from IA32_APIC_BASE, no bring-up
/// IPI left "send pending".
fn bench_ipi(p: Proof, mode: &'static str) -> Proof {
    p.scenario("bench")
        .args("trips=10000")
        .smp(2)
        .bench()
        .timeout_secs(300)
        .check(ge("bench.ipi_rtt.busy.samples", 10_000))
        .check(ge("bench.ipi_rtt.idle.samples", 10_000))
        .check(eq("bench.ipi_rtt.busy.target_stayed_busy", "yes"))
        .check(eq("bench.apic_base_mode", mode))
        .check(eq("lapic.icr_stuck", 0))
}

/// Every proof: the `-kernel` proofs, then the same checks booted from the ISO under each
/// firmware ([`firmware_variants`]).
pub fn registry() -> Vec<Proof> {
    let mut base = kernel_registry();
    base.extend(plain::proofs());
    base.extend(scale::proofs());
    base.extend(clock::proofs());
    base.extend(tickless::proofs());
    base.extend(example::proofs());
    let firmware = firmware_variants(&base);
    base.into_iter().chain(firmware).collect()
}

mod kernel_registry;
use kernel_registry::kernel_registry;

mod affinity;
mod amd;
mod amd_dma;
mod amd_nvme;
mod clock;
mod dma;
mod example;
mod fairness;
mod firmware;
mod hostile;
mod memory;
mod nmi;
mod nvme;
pub mod nvme_bench;
mod plain;
pub use plain::{DEFAULT_MANIFEST, DEFAULT_PROGRAMS};
mod plan;
mod remap;
mod soak;
mod user;
mod vectors;
use user::{
    device_interrupts_on, drivers_delivered, interrupt_grant, preempt, remote_wakes_received,
    shootdown_stress, smp_scale, tlb_shootdown, user_proof, Gate, BOOT_CPU, DRIVER_CPU,
};
use vectors::{vector_exhaustion, vectors_on};
mod scale;
mod tickless;
pub use firmware::firmware_variants;
pub use plan::{plan, Job, PVM_RING3};
// The registry's sanity rules run as unit tests (`proofs/tests.rs`).
#[cfg(test)]
use plan::{validate, validate_files};

#[cfg(test)]
mod tests;
