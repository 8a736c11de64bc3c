use super::*;

#[test]
fn registry_is_valid() {
    assert_eq!(validate(&registry()), Vec::<String>::new());
    let root = crate::builder::workspace_root();
    let bins = crate::builder::discover_user_programs(&root).expect("user/ readable");
    assert_eq!(validate_files(&registry(), &root, bins.as_deref()), Vec::<String>::new());
}

#[test]
fn manifest_and_programs_become_modules() {
    let dir = std::env::temp_dir().join(format!("xtask-test-{}-manifest", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("manifests")).unwrap();
    std::fs::write(dir.join("manifests/drivers.manifest"), "").unwrap();
    let p = Proof::new("drivers", "")
        .manifest("manifests/drivers.manifest")
        .programs(&["edu-driver", "rtc-driver"]);
    assert!(validate(std::slice::from_ref(&p)).is_empty());
    let mods = p.modules(&dir, std::path::Path::new("/u"));
    assert_eq!(
        mods,
        [dir.join("manifests/drivers.manifest"), "/u/edu-driver".into(), "/u/rtc-driver".into()]
    );
    let bins = vec!["edu-driver".to_string(), "rtc-driver".to_string()];
    assert!(validate_files(std::slice::from_ref(&p), &dir, Some(&bins)).is_empty());
    assert!(
        validate_files(std::slice::from_ref(&p), &dir, None).is_empty(),
        "no user/: programs unchecked"
    );
    let bad = Proof::new("bad", "").manifest("manifests/none.manifest").programs(&["hostile"]);
    let errs = validate_files(&[bad], &dir, Some(&bins));
    assert_eq!(errs.len(), 2, "{errs:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The evidence the kernel must print for the trace proofs, against traces shaped
/// like QEMU 10's (observed: xAPIC boots write IA32_APIC_BASE 0 times; x2APIC boots
/// once per CPU, BSP 0xfee00d00, AP 0xfee00c00).
#[test]
fn apic_trace_proofs_judge_evidence_against_trace() {
    let reg = registry();
    let get = |n: &str| reg.iter().find(|p| p.name == n).unwrap().clone();
    let irq = |dest: u32, vector: u32| {
        format!("9@1.0:apic_deliver_irq dest {dest} dest_mode 0 delivery_mode 0 vector {vector} trigger_mode 0\n")
    };
    let irqs: String = (0..30).map(|_| irq(1, 80)).chain([irq(0, 0)]).collect();
    // The CPU took 29 of the 30 deliveries (one merged while pending).
    let taken = |n: usize| "Servicing hardware INT=0x50\n".repeat(n);
    let x2 = Trace::parse(&format!(
        "cpu_set_apic_base 0x00000000fee00d00\ncpu_set_apic_base 0x00000000fee00c00\n{irqs}{}",
        taken(29)
    ));
    let x1 = Trace::parse(&format!("{irqs}{}", taken(29)));
    let ev = "EV rtc.vector=0x50 rtc.apic_id=1 rtc.interrupts=29\n";
    let judge = |p: &Proof, t: &str, tr: &Trace| {
        crate::trace::judge_trace(&p.trace_checks, &keel_evidence::Transcript::parse(t), Ok(tr))
    };
    let xapic = get("smp-trace");
    assert_eq!(
        judge(&xapic, &format!("{ev}EV lapic.apic_base_writes=0\n"), &x1),
        Vec::<String>::new()
    );
    assert_eq!(judge(&xapic, &format!("{ev}EV lapic.apic_base_writes=1\n"), &x1).len(), 1);
    let far = "EV rtc.vector=80 rtc.apic_id=1 rtc.interrupts=33 lapic.apic_base_writes=0\n";
    assert!(judge(&xapic, far, &x1)[0]
        .contains("the kernel counted 33 RTC interrupts, the CPU took 29"));
    // Two-sided against what the CPU took (`-d int`): under- and over-counts both fail.
    let x1_taken = Trace::parse(&format!("{irqs}{}", taken(27)));
    let ok = "EV rtc.vector=80 rtc.apic_id=1 rtc.interrupts=27 lapic.apic_base_writes=0\n";
    assert_eq!(judge(&xapic, ok, &x1_taken), Vec::<String>::new());
    let short = "EV rtc.vector=80 rtc.apic_id=1 rtc.interrupts=25 lapic.apic_base_writes=0\n";
    assert!(judge(&xapic, short, &x1_taken)[0]
        .contains("the kernel counted 25 RTC interrupts, the CPU took 27"));
    let over = "EV rtc.vector=80 rtc.apic_id=1 rtc.interrupts=29 lapic.apic_base_writes=0\n";
    assert!(judge(&xapic, over, &x1_taken)[0]
        .contains("the kernel counted 29 RTC interrupts, the CPU took 27"));
    let impossible = Trace::parse(&format!("{irqs}{}", taken(31)));
    assert!(judge(&xapic, ok, &impossible)[0]
        .contains("took the RTC vector 31 times but the IOAPIC delivered it only 30"));
    let stray = Trace::parse(&format!("{irqs}{}", irq(0, 80)));
    assert!(judge(&xapic, &format!("{ev}EV lapic.apic_base_writes=0\n"), &stray)[0]
        .contains("1 deliveries of vector 0x50 went to another APIC"));
    let x2apic = get("smp-x2apic-trace");
    let good = format!(
        "{ev}EV lapic.apic_base_writes=2 cpu.0.apic_base=0xfee00d00 cpu.1.apic_base=0xfee00c00\n"
    );
    assert_eq!(judge(&x2apic, &good, &x2), Vec::<String>::new());
    let wrong = format!(
        "{ev}EV lapic.apic_base_writes=2 cpu.0.apic_base=0xfee00d00 cpu.1.apic_base=0xfee00800\n"
    );
    let f = judge(&x2apic, &wrong, &x2);
    assert!(
        f.len() == 1
            && f[0].contains("traced {0xfee00c00,0xfee00d00} != evidence {0xfee00800,0xfee00d00}"),
        "{f:?}"
    );
    let no_extd = Trace::parse("cpu_set_apic_base 0xfee00900\n");
    assert!(judge(&x2apic, &good, &no_extd).iter().any(|f| f.contains("lacks EXTD|EN")));
}

#[test]
fn traced_proofs_are_tcg_only() {
    let p = Proof::new("t", "").trace(&["cpu_set_apic_base"]).trace_check("n", |_, _| Ok(()));
    assert_eq!(p.effective_accels(), Accels::TcgOnly);
    assert!(p.accel_note().is_some());
    let ps = [p];
    let plan_kvm = plan(&ps, &AccelEnv { kvm: Some(KvmBackend::Hardware), forced: None });
    assert_eq!(plan_kvm, [Job { proof: 0, accel: Accel::Tcg, skip: None }]);
    let forced = plan(&ps, &AccelEnv { kvm: Some(KvmBackend::Hardware), forced: Some(Accel::Kvm) });
    assert!(forced[0].skip.is_some());
    let errs = validate(&[
        Proof::new("a", "").trace_check("orphan", |_, _| Ok(())),
        Proof::new("b", "").trace(&["Bad-Event"]).accels(Accels::KvmOnly),
    ]);
    assert_eq!(errs.len(), 3, "{errs:#?}");
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
    let obs = crate::checks::Observed { status: Some(33), timed_out: None, transcript: &t };
    assert!(crate::checks::judge(&p.expect, &p.checks, &obs).is_empty());
}

fn proofs3() -> Vec<Proof> {
    vec![
        Proof::new("any", ""),
        Proof::new("kvm", "").accels(Accels::KvmOnly),
        Proof::new("tcg", "").accels(Accels::TcgOnly),
    ]
}

fn summary(env: AccelEnv) -> Vec<String> {
    summary_of(&proofs3(), env)
}

fn summary_of(ps: &[Proof], env: AccelEnv) -> Vec<String> {
    plan(ps, &env)
        .iter()
        .map(|j| {
            format!(
                "{}/{}{}",
                ps[j.proof].name,
                j.accel,
                j.skip.as_ref().map(|s| format!(" skip: {s}")).unwrap_or_default()
            )
        })
        .collect()
}

#[test]
fn accel_expansion_with_kvm() {
    let env = AccelEnv { kvm: Some(KvmBackend::Hardware), forced: None };
    assert_eq!(summary(env), ["any/tcg", "any/kvm", "kvm/kvm", "tcg/tcg"]);
}

#[test]
fn accel_expansion_without_kvm() {
    let env = AccelEnv { kvm: None, forced: None };
    assert_eq!(
        summary(env),
        ["any/tcg", "kvm/kvm skip: needs KVM: /dev/kvm not available", "tcg/tcg"]
    );
}

#[test]
fn accel_forced() {
    let env = AccelEnv { kvm: Some(KvmBackend::Hardware), forced: Some(Accel::Tcg) };
    assert_eq!(summary(env), ["any/tcg", "kvm/kvm skip: needs KVM: KEEL_ACCEL=tcg", "tcg/tcg"]);
    let env = AccelEnv { kvm: Some(KvmBackend::Hardware), forced: Some(Accel::Kvm) };
    assert_eq!(summary(env), ["any/kvm", "kvm/kvm", "tcg/tcg skip: TCG only: KEEL_ACCEL=kvm"]);
    let env = AccelEnv { kvm: None, forced: Some(Accel::Kvm) };
    assert_eq!(
        summary(env),
        [
            "any/kvm skip: needs KVM: /dev/kvm not available",
            "kvm/kvm skip: needs KVM: /dev/kvm not available",
            "tcg/tcg skip: TCG only: KEEL_ACCEL=kvm"
        ]
    );
}

#[test]
fn ring3_proofs_skip_kvm_only_when_it_is_pvm() {
    let ps = [Proof::new("user", "").guest_ring3(), Proof::new("kernel", "")];
    let pvm = AccelEnv { kvm: Some(KvmBackend::Pvm), forced: None };
    assert_eq!(
        summary_of(&ps, pvm),
        [
            "user/tcg".to_string(),
            format!("user/kvm skip: {PVM_RING3}"),
            "kernel/tcg".into(),
            "kernel/kvm".into(),
        ]
    );
    let hw = AccelEnv { kvm: Some(KvmBackend::Hardware), forced: None };
    assert_eq!(summary_of(&ps, hw), ["user/tcg", "user/kvm", "kernel/tcg", "kernel/kvm"]);
    let forced = AccelEnv { kvm: Some(KvmBackend::Pvm), forced: Some(Accel::Kvm) };
    assert_eq!(
        summary_of(&ps, forced),
        [format!("user/kvm skip: {PVM_RING3}"), "kernel/kvm".into()]
    );
}

#[test]
fn rtc_count_is_checked_both_ways() {
    assert!(rtc_counts_agree(200, 200, 300).is_ok());
    assert!(rtc_counts_agree(201, 200, 300).is_ok());
    assert!(rtc_counts_agree(199, 200, 300).is_ok());
    assert!(rtc_counts_agree(202, 200, 300).is_err());
    assert!(rtc_counts_agree(198, 200, 300).is_err());
    assert!(rtc_counts_agree(0, 0, 0).is_ok());
    assert!(rtc_counts_agree(5, 5, 4).is_err());
}

fn judge_one(name: &str, ev: &str) -> Vec<String> {
    let reg = registry();
    let p = reg.iter().find(|p| p.name == name).unwrap();
    let t = keel_evidence::Transcript::parse(ev);
    p.checks.iter().filter_map(|c| c.eval(&t).err()).collect()
}

#[test]
fn timer_mode_must_be_the_same_on_every_cpu() {
    let fails = judge_one(
        "smp",
        "EV timer.mode=periodic smp.online=2 cpu.0.timer_mode=periodic cpu.1.timer_mode=one-shot\n",
    );
    assert!(fails.iter().any(|f| f.contains("cpu.1.timer_mode = one-shot")), "{fails:#?}");
    let fails = judge_one("smp", "EV timer.mode=periodic smp.online=2 cpu.0.timer_mode=periodic\n");
    assert!(fails.iter().any(|f| f.contains("1 CPUs report a timer mode, 2 online")), "{fails:#?}");
}

#[test]
fn lint_pins_are_checked_on_every_cpu() {
    let fails = judge_one("smp", "EV smp.online=2 cpu.0.lint0=masked cpu.0.lint1=nmi cpu.1.lint0=masked cpu.1.lint1=masked\n");
    assert!(fails.iter().any(|f| f.contains("cpu.1.lint1")), "{fails:#?}");
    let fails = judge_one("smp", "EV smp.online=2 cpu.0.lint0=masked cpu.0.lint1=nmi\n");
    assert!(fails.iter().any(|f| f.contains("lint1")), "{fails:#?}");
}

#[test]
fn entry_gate_and_receive_side_counters_are_checked() {
    let int80 = judge_one("interrupt-grant-int80", "EV entry.syscall=5 entry.int80=4000\n");
    assert!(int80.iter().any(|f| f.contains("entry.syscall = 5, want == 0")), "{int80:#?}");
    let remote = "EV irq.msi_edu.deliveries=1000 irq.intx_edu.deliveries=1000 irq.isa_8.deliveries=64 \
        cpu.0.device_interrupts=2064 cpu.1.device_interrupts=0 cpu.1.wake_ipis_sent=300 cpu.1.ipis_received=3\n";
    let fails = judge_one("interrupt-grant-remote", remote);
    assert!(
        fails.iter().any(|f| f.contains("cpu 1 received 3 IPI 49s, but 300 wake IPIs were sent")),
        "{fails:#?}"
    );
    assert!(!fails.iter().any(|f| f.contains("device interrupt")), "{fails:#?}");
    // The same counters fail the local proof, where the drivers' CPU takes the interrupts.
    let fails = judge_one("interrupt-grant", remote);
    assert!(
        fails.iter().any(|f| f.contains("cpu.0.device_interrupts = 2064, want 0")),
        "{fails:#?}"
    );
}

/// Every scenario a proof names is in the kernel's table (`kernel/src/scenarios/mod.rs`), so a
/// misspelt one fails here rather than as an "unknown scenario" boot.
#[test]
fn every_scenario_is_in_the_kernel_table() {
    let table = std::fs::read_to_string(
        crate::builder::workspace_root().join("kernel/src/scenarios/mod.rs"),
    )
    .unwrap();
    for p in registry().iter().filter(|p| !p.scenario.is_empty()) {
        assert!(
            table.contains(&format!("name: \"{}\"", p.scenario)),
            "{}: scenario {:?} not in the kernel's table",
            p.name,
            p.scenario
        );
    }
}

/// The smp timer checks against evidence shaped like the kernel's in each mode: a tickless
/// boot passes only with quiet idle APs and every deadline fired, a periodic one only with
/// every CPU ticking, and a default boot that kept the tick fails both checks.
#[test]
fn smp_timer_checks_follow_the_requested_mode() {
    let judge = |ev: &str| {
        let t = keel_evidence::Transcript::parse(&format!("EV {ev}\nVERDICT pass\n"));
        let fits = timer_fits_mode().eval(&t);
        let follows = timer_mode_follows_request().eval(&t);
        (fits, follows)
    };
    let tickless = "smp.online=2 cpu.tsc_deadline=no timer.requested=default timer.mode=one-shot \
        timer.tickless=yes smp.ticks.window_ms=1003 smp.ticks.min=0 smp.ticks.ap_max=0 \
        smp.ticks.ap_total=0 smp.ticks.idle_cpus_quiet=1 smp.timer.cpus_on_deadline=2";
    let (fits, follows) = judge(tickless);
    assert!(fits.is_ok() && follows.is_ok(), "{fits:?} {follows:?}");
    let noisy = tickless.replace("smp.ticks.ap_max=0", "smp.ticks.ap_max=4");
    assert!(judge(&noisy).0.unwrap_err().contains("up to 4"));
    let unfired = tickless.replace("cpus_on_deadline=2", "cpus_on_deadline=1");
    assert!(judge(&unfired).0.unwrap_err().contains("1 of 2"));
    // The default silently periodic: the kernel ran its periodic check.
    let kept_tick = "smp.online=2 cpu.tsc_deadline=no timer.requested=default timer.mode=periodic \
        timer.tickless=no smp.ticks.window_ms=1003 smp.ticks.min=100 smp.ticks.ap_max=100 \
        smp.ticks.ap_total=100 smp.ticks.cpus_ticking=2";
    let (fits, follows) = judge(kept_tick);
    let why = fits.unwrap_err();
    assert!(why.contains("timer.tickless = no") && why.contains("up to 100"), "{why}");
    assert!(follows.is_err());
    let periodic = kept_tick.replace("timer.requested=default", "timer.requested=periodic");
    let (fits, follows) = judge(&periodic);
    assert!(fits.is_ok() && follows.is_ok(), "{fits:?} {follows:?}");
    let starved = periodic.replace("smp.ticks.min=100", "smp.ticks.min=3");
    assert!(judge(&starved).0.is_err());
    // timer=tick ticks by TSC-deadline where CPUID offers it.
    let tick = periodic
        .replace("timer.requested=periodic", "timer.requested=tick")
        .replace("cpu.tsc_deadline=no", "cpu.tsc_deadline=yes")
        .replace("timer.mode=periodic", "timer.mode=tsc-deadline");
    assert!(judge(&tick).1.is_ok());
}
