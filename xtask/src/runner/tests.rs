//! The runner's unit tests.

use super::*;
use crate::checks::eq;
use crate::proofs::Accels;

fn sh(script: &str) -> (PathBuf, Vec<String>) {
    (PathBuf::from("/bin/sh"), vec!["-c".into(), script.into()])
}

#[test]
fn captures_output_and_status() {
    let (p, a) = sh("echo 'EV a=1'; echo oops >&2; exit 33");
    let o = run_process(p.as_os_str(), &a, Some(Duration::from_secs(10)), Mode::Captured).unwrap();
    assert_eq!(o.status, Some(33));
    assert_eq!(o.stdout, "EV a=1\n");
    assert_eq!(o.stderr, "oops\n");
    assert!(o.timed_out.is_none());
}

#[test]
fn timeout_kills_process_group() {
    // The shell forks `sleep` (not exec, because of the trailing `echo`), so
    // only a group kill stops it; the pipe would otherwise stay open 30 s.
    let (p, a) = sh("echo 'EV started=1'; sleep 30; echo never");
    let t0 = Instant::now();
    let o = run_process(p.as_os_str(), &a, Some(Duration::from_secs(1)), Mode::Captured).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5), "took {:?}", t0.elapsed());
    assert_eq!(o.timed_out, Some(Duration::from_secs(1)));
    assert_eq!(o.status, None);
    assert_eq!(o.stdout, "EV started=1\n");
}

#[test]
fn missing_program_is_an_error() {
    assert!(run_process(OsStr::new("/nonexistent/qemu"), &[], None, Mode::Captured).is_err());
}

/// A fake QEMU: a script that prints evidence depending on `-append`.
fn fake_env(dir: &Path, script_body: &str) -> Env {
    std::fs::create_dir_all(dir).unwrap();
    let qemu = dir.join("fake-qemu");
    std::fs::write(&qemu, format!("#!/bin/sh\n{script_body}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
    Env {
        qemu,
        kernel: dir.join("keel-scenarios"),
        plain_kernel: dir.join("keel"),
        example_kernel: dir.join("example-minimal-smp"),
        root: dir.to_path_buf(),
        user_dir: dir.join("user"),
        log_dir: dir.join("proofs"),
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xtask-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn proof_through_fake_qemu_passes_and_logs() {
    let dir = tmp("pass");
    let env = fake_env(
        &dir,
        r#"case "$*" in *proof=demo*) echo "EV x=0x10"; echo "VERDICT pass"; exit 33;; esac; exit 1"#,
    );
    let p = Proof::new("demo", "").check(eq("x", 16));
    let job = Job { proof: 0, accel: Accel::Tcg, skip: None };
    let r = run_job(&p, &job, &env);
    assert!(r.passed(), "{r:#?}");
    let log = std::fs::read_to_string(r.log.unwrap()).unwrap();
    assert_eq!(log, "EV x=0x10\nVERDICT pass\n");
    assert!(std::fs::read_to_string(dir.join("proofs/demo-tcg.cmd"))
        .unwrap()
        .contains("-append proof=demo"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn proof_timeout_is_reported() {
    let dir = tmp("timeout");
    let env = fake_env(&dir, "echo 'EV x=1'; sleep 30; exit 33");
    let p = Proof::new("slow", "").timeout_secs(1);
    let r = run_job(&p, &Job { proof: 0, accel: Accel::Tcg, skip: None }, &env);
    match &r.outcome {
        Outcome::Ran { failures, output, .. } => {
            assert!(output.elapsed < Duration::from_secs(5));
            assert_eq!(failures[0], "timeout: killed after 1s");
        }
        o => panic!("{o:?}"),
    }
    assert!(r.failed());
    let _ = std::fs::remove_dir_all(dir);
}

/// The fake QEMU writes the trace file named after `-D`, like QEMU's log backend.
const TRACING_QEMU: &str = r#"while [ $# -gt 0 ]; do [ "$1" = -D ] && out="$2"; [ "$1" = -initrd ] && mods="$2"; shift; done
echo "EV mods=$(echo "$mods" | tr -cd , | wc -c | tr -d ' ') rtc.vector=0x50 rtc.apic_id=1 rtc.interrupts=3"
printf '9@1.0:apic_deliver_irq dest 1 dest_mode 0 delivery_mode 0 vector 80 trigger_mode 0\n' > "$out"
printf 'apic_deliver_irq dest 1 dest_mode 0 delivery_mode 0 vector 80 trigger_mode 0\n' >> "$out"
echo "VERDICT pass"; exit 33"#;

fn traced(p: Proof, tolerance: u64) -> Proof {
    p.trace(&["apic_deliver_irq"]).trace_check("rtc", move |t, tr| {
        let n = tr.count(
            "apic_deliver_irq",
            &[("vector", &crate::trace::ev_str(t, "rtc.vector")?), ("dest", "1")],
        ) as u64;
        let want = crate::trace::ev_u64(t, "rtc.interrupts")?;
        if n.abs_diff(want) <= tolerance {
            Ok(())
        } else {
            Err(format!("{n} traced, {want} counted"))
        }
    })
}

#[test]
fn trace_checks_pass_and_fail_through_fake_qemu() {
    let dir = tmp("trace");
    let env = fake_env(&dir, TRACING_QEMU);
    let job = Job { proof: 0, accel: Accel::Tcg, skip: None };
    let r = run_job(&traced(Proof::new("tr", ""), 1), &job, &env);
    assert!(r.passed(), "{r:#?}");
    assert_eq!(r.trace.as_deref(), Some(dir.join("proofs/tr-tcg.trace").as_path()));
    assert!(r.args.join(" ").contains(&format!(
        "-d trace:apic_deliver_irq -D {}",
        dir.join("proofs/tr-tcg.trace").display()
    )));
    let r = run_job(&traced(Proof::new("tr", ""), 0), &job, &env);
    match &r.outcome {
        Outcome::Ran { failures, .. } => {
            assert_eq!(failures, &["trace check failed: rtc: 2 traced, 3 counted"])
        }
        o => panic!("{o:?}"),
    }
    assert!(crate::report::failure_details(&r).contains("trace check failed: rtc"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn missing_trace_file_fails_traced_proof() {
    let dir = tmp("notrace");
    let env = fake_env(&dir, r#"echo "VERDICT pass"; exit 33"#);
    let r = run_job(
        &traced(Proof::new("tr", ""), 9),
        &Job { proof: 0, accel: Accel::Tcg, skip: None },
        &env,
    );
    match &r.outcome {
        Outcome::Ran { failures, .. } => {
            assert!(failures[0].starts_with("trace unavailable: cannot read"), "{failures:?}")
        }
        o => panic!("{o:?}"),
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn modules_are_passed_manifest_first_and_must_exist() {
    let dir = tmp("modules");
    let env = fake_env(&dir, TRACING_QEMU);
    let p =
        Proof::new("drv", "").manifest("m/drv.manifest").programs(&["edu-driver", "rtc-driver"]);
    let job = Job { proof: 0, accel: Accel::Tcg, skip: None };
    let r = run_job(&p, &job, &env);
    match &r.outcome {
        Outcome::Error(e) => assert!(e.contains("drv.manifest missing"), "{e}"),
        o => panic!("{o:?}"),
    }
    std::fs::create_dir_all(dir.join("m")).unwrap();
    std::fs::create_dir_all(dir.join("user")).unwrap();
    for f in ["m/drv.manifest", "user/edu-driver", "user/rtc-driver"] {
        std::fs::write(dir.join(f), "").unwrap();
    }
    let r = run_job(&p, &job, &env);
    let initrd = r.args.iter().skip_while(|a| *a != "-initrd").nth(1).cloned();
    let want = format!(
        "{},{},{}",
        dir.join("m/drv.manifest").display(),
        dir.join("user/edu-driver").display(),
        dir.join("user/rtc-driver").display()
    );
    assert_eq!(initrd, Some(want));
    match &r.outcome {
        Outcome::Ran { transcript, .. } => assert_eq!(
            transcript.evidence.get("mods").map(|v| v.as_str().to_string()).as_deref(),
            Some("2")
        ),
        o => panic!("{o:?}"),
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn run_all_in_parallel_keeps_order_and_skips() {
    let dir = tmp("all");
    let env = fake_env(
        &dir,
        r#"sleep 1; case "$*" in *proof=bad*) echo "VERDICT fail nope"; exit 35;; esac; echo "VERDICT pass"; exit 33"#,
    );
    let proofs = vec![
        Proof::new("good", ""),
        Proof::new("bad", ""),
        Proof::new("kvmonly", "").accels(Accels::KvmOnly),
    ];
    let jobs = crate::proofs::plan(&proofs, &crate::qemu::AccelEnv { kvm: None, forced: None });
    let seen = AtomicUsize::new(0);
    let t0 = Instant::now();
    let rs = run_all(&proofs, &jobs, &env, 2, |_| {
        seen.fetch_add(1, Ordering::SeqCst);
    });
    assert!(t0.elapsed() < Duration::from_millis(1800), "not parallel: {:?}", t0.elapsed());
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    let names: Vec<_> = rs.iter().map(|r| (r.name, r.passed(), r.skipped())).collect();
    assert_eq!(names, [("good", true, false), ("bad", false, false), ("kvmonly", false, true)]);
    let _ = std::fs::remove_dir_all(dir);
}
