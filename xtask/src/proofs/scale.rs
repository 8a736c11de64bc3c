//! Proofs of CPU-count scaling: sparse topologies, parallel and serial bring-up, the late-AP
//! rule, and (in `cargo xtask test-scale`) machines of 255, 288 and 1,024 vCPUs.
//!
//! Above 64 CPUs the kernel summarises its evidence (`smp.summary.*`, `smp.ticks.*`,
//! `ipi.cpus_exact`) instead of printing keys per CPU, and the `smp` scenario pings a
//! sample of targets per CPU (`ping_targets=`) so the IPI work grows linearly.

use super::*;

/// A 12-CPU topology with APIC ID gaps: 2 sockets x 3 cores x 2 threads gives IDs 0-5 and
/// 8-13 (the core field is 2 bits wide for 3 cores, so 6 and 7 are never used).
const SPARSE_TOPOLOGY: &str = "sockets=2,cores=3,threads=2";

/// Checks for a summarised `proof=smp` run on `cpus` CPUs with `targets` ping targets and
/// `pings` pings per target.
fn summary_checks(p: Proof, cpus: u64, mode: &'static str, targets: u64, pings: u64) -> Proof {
    p.scenario("smp")
        .check(eq("lapic.mode", mode))
        .check(eq("smp.bringup", "parallel"))
        .check(eq("acpi.madt.cpus", cpus))
        .check(eq("smp.online", cpus))
        .check(eq("smp.skipped", 0))
        .check(eq("smp.out_of_memory", 0))
        .check(eq("smp.summary.online", cpus))
        .check(ge("smp.summary.timer_hz_min", 1_000_000))
        .check(eq("smp.summary.apic_base_mode_mismatches", 0))
        .check(eq("smp.summary.x2apic_ldr_mismatches", 0))
        .check(timer_fits_mode())
        .check(timer_mode_follows_request())
        .check(eq("ipi.targets_per_cpu", targets))
        .check(eq("ipi.expected", cpus * targets * pings))
        .check(keys_equal("ipi.sent", "ipi.expected"))
        .check(keys_equal("ipi.acked", "ipi.expected"))
        .check(eq("ipi.cpus_exact", cpus))
        .check(eq("ipi.timeouts", 0))
        .check(eq("smp.cpus_with_lapic_errors", 0))
        .check(ge("rtc.interrupts", 20))
        .check(keys_equal("rtc.on_target", "rtc.interrupts"))
        .check(eq("rtc.on_wrong_cpu", 0))
}

/// No hard-lockup watch on the machines of 255 vCPUs and more: 1,024 (or 288) vCPUs on 2
/// host cores leave vCPUs unscheduled for seconds, every watcher then reports its neighbour
/// and waits for its NMI with interrupts off, and the reports cascade (`panic-nmi-1024` ran
/// past 15 minutes with the host's load average at 790). The host starves a busy vCPU
/// whatever its timer does, so tickless does not change this. The detector is proved on the
/// small machines. (These machines used to need `tick_hz=10` as well: 1,024 CPUs ticking at
/// 100 Hz kept QEMU's sorted timer list busy under its big lock; tickless, idle CPUs arm
/// nothing, docs/smp.md.)
const NO_LOCKUP_WATCH: &str = "lockup_ms=0";

fn large(name: &'static str, description: &'static str, cpus: u32, memory: &'static str) -> Proof {
    Proof::new(name, description)
        .smp(cpus)
        .memory(memory)
        .cpu(x2apic_cpu())
        .accels(Accels::TcgOnly)
        .scale()
}

/// [`smp_checks`] for `cpus` CPUs with its all-to-all IPI counts replaced by those of
/// `pings` pings per pair (100 pings per pair on 12 vCPUs take over a minute under TCG).
fn smp_checks_fewer_pings(p: Proof, cpus: u64, mode: &'static str, pings: u64) -> Proof {
    let mut p = smp_checks(p, cpus, mode);
    p.checks.retain(|c| !c.to_string().contains("ipi."));
    let per_cpu = (cpus - 1) * pings;
    p.check(eq("ipi.expected", cpus * per_cpu))
        .check(keys_equal("ipi.sent", "ipi.expected"))
        .check(keys_equal("ipi.acked", "ipi.expected"))
        .check(eq("ipi.timeouts", 0))
        .check(for_each_cpu("ipi.cpu.*.sent", is::eq(per_cpu)).count_eq_key("smp.online"))
        .check(for_each_cpu("ipi.cpu.*.acked", is::eq(per_cpu)).count_eq_key("smp.online"))
}

/// `proof=panic` on `cpus` CPUs: CPU 1 panics, and every other online CPU took the stop NMI
/// (counted by each CPU's own NMI handler).
fn panic_nmi(p: Proof, cpus: u64) -> Proof {
    p.scenario("panic")
        .expect(Expect::PANIC)
        .check(eq("panic.cpu", 1))
        .check(eq("panic.online", cpus))
        .check(eq("panic.others_stopped", cpus - 1))
}

/// `proof=panic` with the AP of APIC ID 2 abandoned before its SIPI (it parks in the
/// trampoline, where it has no IDT and an NMI would triple-fault the machine): the panic
/// stops each of the `online` CPUs but itself with one NMI, counted by their NMI handlers,
/// and never the parked one.
fn panic_nmi_abandoned(p: Proof, declared: u64) -> Proof {
    let online = declared - 1;
    panic_nmi(p, online)
        .args("smp_abandon=2")
        .check(eq("acpi.madt.cpus", declared))
        .check(eq("smp.abandoned_for_test", 2))
        .check(eq("smp.parked", 1))
        .check(eq("smp.online", online))
        .check(eq("smp.unaccounted", 0))
        .check(custom("nothing after the panic report but its evidence", |t| {
            let at =
                t.log.iter().position(|l| l.starts_with("PANIC on cpu1")).ok_or("no PANIC line")?;
            match t.log[at + 1..].iter().find(|l| l.contains("chatter")) {
                Some(l) => Err(format!("output after the panic report: {l}")),
                None => Ok(()),
            }
        }))
}

/// A 288-CPU topology with APIC ID gaps: 4 sockets x 36 cores x 2 threads; the core field is
/// 6 bits wide, so each socket uses 72 of its 128 IDs and the highest is 455.
const SPARSE_TOPOLOGY_288: &str = "sockets=4,cores=36,threads=2";

/// `proof=bringup` on `cpus` x2APIC vCPUs, parallel or serial: AP bring-up figures.
fn bringup_bench(
    name: &'static str,
    description: &'static str,
    cpus: u32,
    how: &'static str,
) -> Proof {
    let args = if how == "serial" { "smp_bringup=serial" } else { "smp_bringup=parallel" };
    Proof::new(name, description)
        .scenario("bringup")
        .args(args)
        .smp(cpus)
        .memory(if cpus > 64 { "1G" } else { "256M" })
        .cpu(x2apic_cpu())
        .accels(Accels::TcgOnly)
        .bench()
        .timeout_secs(900)
        .check(eq("smp.bringup", how))
        .check(eq("bench.bringup.cpus", cpus))
}

/// `proof=shootdown_all` on `cpus` x2APIC CPUs: one space resident on all of them, 3
/// single-page shootdowns, every AP served every one; x2APIC sends one IPI per cluster of
/// 16 APIC IDs, so at most `3 * clusters` ICR writes.
fn shootdown_all(p: Proof, cpus: u64) -> Proof {
    let others = cpus - 1;
    let clusters = (cpus - 1) / 16 + 1;
    p.scenario("shootdown_all")
        .args("rounds=3")
        .smp(cpus as u32)
        .cpu(x2apic_cpu())
        .accels(Accels::TcgOnly)
        .check(eq("smp.online", cpus))
        .check(eq("tlb.all.holders", others))
        .check(eq("tlb.all.loaded_on_cpu", others))
        .check(eq("tlb.all.resident", others))
        .check(eq("tlb.all.rounds", 3))
        .check(eq("tlb.all.cpus_served_every_round", others))
        .check(ge("tlb.all.icr_writes", 3))
        .check(le("tlb.all.icr_writes", 3 * clusters))
        .check(eq("tlb.all.holders_not_released", 0))
}

pub fn proofs() -> Vec<Proof> {
    let mut all = checks();
    all.push(shootdown_all(Proof::new("tlb-shootdown-all", "one space resident on all 8 CPUs: every AP serves every shootdown, one cluster IPI each"), 8).timeout_secs(120));
    all.push(
        shootdown_all(
            Proof::new(
                "tlb-shootdown-all-288",
                "one space resident on all 288 CPUs: every AP serves every shootdown",
            ),
            288,
        )
        .memory("1G")
        .timeout_secs(900)
        .scale(),
    );
    all.push(
        shootdown_all(
            Proof::new(
                "tlb-shootdown-all-1024",
                "one space resident on all 1,024 CPUs: every AP serves every shootdown",
            ),
            1024,
        )
        .args("rounds=3")
        .memory("2G")
        .timeout_secs(1800)
        .scale(),
    );
    all.extend([
        bringup_bench("bench-bringup-8", "AP bring-up, 8 vCPUs, parallel", 8, "parallel"),
        bringup_bench(
            "bench-bringup-8-serial",
            "AP bring-up, 8 vCPUs, one AP at a time",
            8,
            "serial",
        ),
        bringup_bench("bench-bringup-64", "AP bring-up, 64 vCPUs, parallel", 64, "parallel"),
        bringup_bench(
            "bench-bringup-64-serial",
            "AP bring-up, 64 vCPUs, one AP at a time",
            64,
            "serial",
        ),
        bringup_bench("bench-bringup-288", "AP bring-up, 288 vCPUs, parallel", 288, "parallel")
            .scale(),
        bringup_bench(
            "bench-bringup-288-serial",
            "AP bring-up, 288 vCPUs, one AP at a time (minutes)",
            288,
            "serial",
        )
        .scale(),
        bringup_bench("bench-bringup-1024", "AP bring-up, 1,024 vCPUs, parallel", 1024, "parallel")
            .memory("2G")
            .timeout_secs(1800)
            .scale(),
        bringup_bench(
            "bench-bringup-1024-serial",
            "AP bring-up, 1,024 vCPUs, one AP at a time",
            1024,
            "serial",
        )
        .memory("2G")
        .timeout_secs(1800)
        .scale(),
    ]);
    all.extend(super::nvme::scale_proofs());
    all
}

fn checks() -> Vec<Proof> {
    vec![
        smp_checks_fewer_pings(
            Proof::new("smp-sparse", "parallel bring-up of 12 CPUs whose APIC IDs have gaps (0-5, 8-13), x2APIC")
                .smp(12)
                .qemu_extra(&["-smp", SPARSE_TOPOLOGY])
                .cpu(x2apic_cpu())
                .args("pings=10")
                .accels(Accels::TcgOnly)
                .timeout_secs(240),
            12,
            "x2apic",
            10,
        )
        .check(eq("smp.bringup", "parallel"))
        .check(eq("smp.max_apic_id", 13))
        .check(eq("smp.parked", 0))
        .check(custom("APIC IDs 6 and 7 are gaps; 0-5 and 8-13 are online", |t| {
            let mut ids: Vec<u64> = (0..12)
                .map(|cpu| t.evidence.get(&format!("cpu.{cpu}.apic_id")).and_then(|v| v.as_u64()).ok_or(format!("no cpu.{cpu}.apic_id")))
                .collect::<Result<_, _>>()?;
            ids.sort_unstable();
            let want: Vec<u64> = (0..6).chain(8..14).collect();
            if ids == want { Ok(()) } else { Err(format!("online APIC IDs {ids:?}, want {want:?}")) }
        })),
        Proof::new("smp-late-ap", "an AP whose slot was abandoned before its SIPI parks itself; the rest come online")
            .scenario("default")
            .args("smp_abandon=2")
            .smp(4)
            .cpu(x2apic_cpu())
            .accels(Accels::TcgOnly)
            .check(eq("smp.bringup", "parallel"))
            .check(eq("smp.abandoned_for_test", 2))
            .check(eq("smp.parked", 1))
            .check(eq("smp.online", 3))
            .check(eq("smp.skipped", 1))
            .check(for_each_cpu("cpu.*.online", is::eq("yes")).count_eq_key("smp.online")),
        Proof::new("smp-lost-ap", "an AP that reports its slot online but never comes online fails the kernel's own verdict")
            .scenario("default")
            .args("smp_lose=2")
            .smp(4)
            .cpu(x2apic_cpu())
            .accels(Accels::TcgOnly)
            .expect(Expect::FAIL)
            .check(eq("smp.online", 3))
            .check(eq("smp.skipped", 0))
            .check(eq("smp.unaccounted", 1))
            .check(custom("the verdict names the unaccounted CPU", |t| {
                match &t.verdict {
                    Some(keel_evidence::Verdict::Fail(why))
                        if why.contains("1 CPUs unaccounted after bring-up") =>
                    {
                        Ok(())
                    }
                    other => Err(format!("verdict {other:?}")),
                }
            })),
        Proof::new("smp-wrong-mode-ap", "an AP online with its LAPIC left in xAPIC mode on an x2APIC machine fails the kernel's own verdict")
            .scenario("default")
            .args("smp_wrong_mode=2")
            .smp(4)
            .cpu(x2apic_cpu())
            .accels(Accels::TcgOnly)
            .expect(Expect::FAIL)
            .check(eq("lapic.mode", "x2apic"))
            .check(eq("smp.online", 4))
            .check(eq("cpu.2.mode", "xapic"))
            .check(eq("smp.unaccounted", 1))
            .check(custom("the verdict names the unaccounted CPU", |t| match &t.verdict {
                Some(keel_evidence::Verdict::Fail(why)) if why == "1 CPUs unaccounted after bring-up" => Ok(()),
                other => Err(format!("verdict {other:?}")),
            })),
        panic_nmi_abandoned(
            Proof::new("panic-nmi-abandoned", "a panic with one AP parked in the trampoline stops the 2 other online CPUs by one NMI each and never the parked one (x2APIC)")
                .smp(4)
                .cpu(x2apic_cpu())
                .accels(Accels::TcgOnly)
                .timeout_secs(120),
            4,
        ),
        panic_nmi_abandoned(
            Proof::new("panic-nmi-abandoned-xapic", "the same in xAPIC mode")
                .smp(4)
                .cpu(xapic_cpu())
                .accels(Accels::TcgOnly)
                .timeout_secs(120),
            4,
        ),
        Proof::new("smp-low-memory", "32 CPUs in 9 MiB of RAM: the APs without memory are reported and skipped, the rest come online")
            .scenario("default")
            .smp(32)
            // Where the APs run out depends on the kernel's own size and its heap's sizing: at
            // 12 MiB every AP found memory after this round's changes; 9 MiB leaves about 10 short
            // with 22 online, a margin either way.
            .memory("9M")
            .cpu(x2apic_cpu())
            .accels(Accels::TcgOnly)
            .timeout_secs(120)
            .check(eq("acpi.madt.cpus", 32))
            .check(ge("smp.out_of_memory", 1))
            .check(ge("smp.online", 2))
            .check(custom("every CPU online or reported out of memory", |t| {
                let get = |k: &str| t.evidence.get(k).and_then(|v| v.as_u64()).ok_or(format!("no {k}"));
                let (online, short, skipped) = (get("smp.online")?, get("smp.out_of_memory")?, get("smp.skipped")?);
                match (online + short == 32, skipped == short) {
                    (true, true) => Ok(()),
                    _ => Err(format!("{online} online + {short} out of memory != 32, or {skipped} skipped")),
                }
            })),
        Proof::new("smp-serial", "smp_bringup=serial: one AP at a time, all online (the comparison path)")
            .scenario("default")
            .args("smp_bringup=serial")
            .smp(4)
            .cpu(x2apic_cpu())
            .accels(Accels::TcgOnly)
            .check(eq("smp.bringup", "serial"))
            .check(eq("smp.online", 4))
            .check(eq("smp.skipped", 0))
            .check(eq("smp.parked", 0))
            .check(for_each_cpu("cpu.*.online", is::eq("yes")).count_eq_key("smp.online")),
        summary_checks(
            large("smp-288", "288 CPUs in x2APIC: parallel bring-up, idle CPUs untimed and every CPU's deadline fired, sampled IPIs, RTC", 288, "1G")
                .args("ping_targets=4 pings=2 rtc_ms=2000 ping_timeout_ms=60000 lockup_ms=0")
                .timeout_secs(900),
            288,
            "x2apic",
            4,
            2,
        )
        .check(eq("smp.max_apic_id", 287))
        .check(eq("ioapic.route_above_254", "refused")),
        summary_checks(
            large("smp-1024", "1,024 CPUs in x2APIC: parallel bring-up, idle CPUs untimed and every CPU's deadline fired, sampled IPIs, RTC", 1024, "2G")
                .args("ping_targets=4 pings=2 rtc_ms=10000 ping_timeout_ms=60000 lockup_ms=0")
                .timeout_secs(1800),
            1024,
            "x2apic",
            4,
            2,
        )
        .check(eq("smp.max_apic_id", 1023)),
        summary_checks(
            large("smp-xapic-255", "xAPIC at its addressing limit: 255 CPUs, APIC IDs 0-254", 255, "1G")
                .cpu(CpuSpec::new("qemu64", &["-x2apic"]).with_tcg_flags(HARDENING))
                .args("ping_targets=4 pings=2 rtc_ms=2000 ping_timeout_ms=60000 lockup_ms=0")
                .timeout_secs(900),
            255,
            "xapic",
            4,
            2,
        )
        .check(eq("smp.max_apic_id", 254)),
        panic_nmi(large("panic-nmi-288", "a panic on CPU 1 of 288 stops the other 287 by NMI and prints one clean report", 288, "1G").timeout_secs(900), 288)
            .args(NO_LOCKUP_WATCH),
        panic_nmi_abandoned(
            large("panic-nmi-288-sparse", "a panic on CPU 1 of 288 sparse CPUs (APIC IDs to 455), one AP parked: the other 286 online CPUs are stopped by NMI, the parked one never", 288, "1G")
                .qemu_extra(&["-smp", SPARSE_TOPOLOGY_288])
                .timeout_secs(900),
            288,
        )
        .args("smp_abandon=2 lockup_ms=0")
        .check(eq("smp.max_apic_id", 455)),
        panic_nmi(
            large("panic-nmi-1024", "a panic on CPU 1 of 1,024 stops the other 1,023 by NMI and prints one clean report", 1024, "2G")
                .timeout_secs(1800),
            1024,
        )
        .args(NO_LOCKUP_WATCH),
    ]
}
