//! `--bringup --linux-console`: the Linux guest prints its kernel log on the serial console
//! (no `quiet`) and is stopped as soon as it prints `smp: Brought up`. Its full boot to
//! init takes minutes at 64 vCPUs under TCG and well over half an hour at 288 on two host
//! cores, while the bring-up itself ends in the first minutes; the console costs the guest
//! one emulated UART write per character, during bring-up a few bytes per AP.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::linux::Guest;
use super::parse::GuestOutput;
use super::{qemu_bin, LinuxRun};
use crate::qemu::{self, BootSpec};
use crate::runner::ProcessOutput;

/// The line that ends the measurement (and the run).
const STOP_AT: &str = "smp: Brought up";

/// Boots `run` with a verbose console and stops it at [`STOP_AT`] (or its timeout).
pub fn run_linux_watched(run: &mut LinuxRun, guest: &Guest, log_dir: &Path) {
    let cmdline = format!("console=ttyS0 panic=-1 {}", run.extra_cmdline);
    let modules = [guest.initramfs.clone()];
    run.args = qemu::command_args(
        &run.machine,
        run.accel,
        &BootSpec { kernel: &guest.vmlinuz, cmdline: &cmdline, modules: &modules },
        &[],
    );
    println!(
        "xtask: linux {} ({}, console watched, stops at '{STOP_AT}') ...",
        run.label, run.accel
    );
    let start = Instant::now();
    let mut cmd = Command::new(qemu_bin());
    cmd.args(&run.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            run.failure = Some(format!("cannot start QEMU: {e}"));
            return;
        }
    };
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
            if tx.send(String::from_utf8_lossy(&line).into_owned()).is_err() {
                break;
            }
        }
    });
    let mut console = String::new();
    let mut stopped_at_line = false;
    let mut timed_out = None;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                console.push_str(&line);
                console.push('\n');
                if line.contains(STOP_AT) {
                    stopped_at_line = true;
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if start.elapsed() >= run.timeout {
            timed_out = Some(run.timeout);
            break;
        }
    }
    let elapsed = start.elapsed();
    // SAFETY: plain syscall on the process group of a child we started.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let status = child.wait().ok().and_then(|s| s.code());
    let _ = reader.join();
    let _ = std::fs::create_dir_all(log_dir);
    let base = log_dir.join(format!("linux-{}-{}", run.label, run.accel));
    let _ = std::fs::write(base.with_extension("log"), &console);
    let _ = std::fs::write(
        base.with_extension("cmd"),
        format!("qemu-system-x86_64 {}\n", qemu::shell_quote(&run.args)),
    );
    run.guest = GuestOutput::parse(&console);
    if !stopped_at_line {
        run.failure = Some(match timed_out {
            Some(t) => format!("no '{STOP_AT}' within {}s", t.as_secs()),
            None => format!("guest stopped (status {status:?}) before '{STOP_AT}'"),
        });
    }
    println!(
        "xtask: linux {} ({}) {} in {:.1}s",
        run.label,
        run.accel,
        run.failure.as_deref().unwrap_or("brought up"),
        elapsed.as_secs_f64()
    );
    run.output =
        Some(ProcessOutput { status, timed_out, stdout: console, stderr: String::new(), elapsed });
}
