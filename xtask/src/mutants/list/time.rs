//! Breaks: clock sources without the PIT, and the tickless timer.

use super::{Break, Edit};
use crate::qemu::Accel;

pub(super) const BREAKS: &[Break] = &[
    // Time: clock sources without the PIT
    Break {
        name: "pm-timer-rate-wrong",
        what: "the ACPI PM timer is taken to count at the PIT's 1.193 MHz instead of 3.579545 MHz",
        edits: &[Edit {
            file: "crates/clock/src/lib.rs",
            find: "pub const PM_TIMER_HZ: u64 = 3_579_545;",
            replace: "pub const PM_TIMER_HZ: u64 = 1_193_182;",
        }],
        proofs: &["clock-pm-timer", "clock-hpet"],
        accel: Accel::Tcg,
    },
    Break {
        name: "absent-pit-taken-for-present",
        what: "a PIT whose output is already high when its count starts is taken for a working one",
        edits: &[Edit {
            file: "framework/src/time.rs",
            find: "            return None; // the output is already high: nothing is counting",
            replace: "",
        }],
        proofs: &["clock-pm-timer-x2apic", "clock-hpet-x2apic"],
        accel: Accel::Tcg,
    },
    // Time: tickless
    Break {
        name: "tickless-idle-rearms-periodically",
        what: "tickless: an idle CPU still arms the busy watchdog, so it takes a timer interrupt every 250 ms",
        edits: &[Edit {
            file: "kernel/src/task/sched.rs",
            find: "    if !me.oneshot.idle.load(Ordering::Relaxed) {\n",
            replace: "    if !me.oneshot.idle.load(Ordering::Relaxed) || lapic::tickless() {\n",
        }],
        proofs: &["tickless"],
        accel: Accel::Tcg,
    },
    Break {
        name: "tickless-slice-end-unarmed",
        what: "tickless: the running thread's slice end is not armed when others are runnable (only the watchdog preempts)",
        edits: &[Edit {
            file: "kernel/src/task/sched.rs",
            find: "            next = next.min(SCHED.get(cpu).slice_end_ns.load(Ordering::Relaxed));\n",
            replace: "",
        }],
        proofs: &["preempt-tickless"],
        accel: Accel::Tcg,
    },
    Break {
        name: "tickless-sleep-unarmed",
        what: "tickless: sleep expiries, wait timeouts and kernel waits are not armed (only a busy CPU's watchdog ends them)",
        edits: &[Edit {
            file: "kernel/src/task/sched.rs",
            find: "    timed.unwrap_or(oneshot::NONE).min(me.oneshot.kernel_wake_ns.load(Ordering::Relaxed))\n",
            replace: "    let _ = timed;\n    oneshot::NONE\n",
        }],
        proofs: &["tickless-x2apic", "preempt-tickless"],
        accel: Accel::Tcg,
    },
    Break {
        name: "tickless-busy-watchdog-unarmed",
        what: "tickless: a busy CPU arms no watchdog deadline, so a watcher with nothing else to do never checks",
        edits: &[Edit {
            file: "kernel/src/task/sched.rs",
            find: "        next = next.min(since.max(fired) + watchdog_ns());\n",
            replace: "        let _ = (since, fired);\n",
        }],
        proofs: &["tickless-x2apic", "lockup-tickless"],
        accel: Accel::Tcg,
    },
    Break {
        name: "lockup-reports-idle-cpu",
        what: "tickless: the lockup watcher ignores that its CPU is halted idle and reports it after the bound",
        edits: &[Edit {
            file: "framework/src/arch/x86_64/lockup.rs",
            find: "let idle = tickless && target.oneshot.idle.load(Ordering::Acquire);",
            replace: "let idle = tickless && target.oneshot.idle.load(Ordering::Acquire) && false;",
        }],
        proofs: &["tickless"],
        accel: Accel::Tcg,
    },
    Break {
        name: "tickless-exit-wakes-nobody",
        what: "tickless: a process destroyed on another CPU does not wake the boot CPU's supervising loop",
        edits: &[Edit {
            file: "kernel/src/task/process.rs",
            find: "        super::sched::wake_boot_cpu();\n",
            replace: "",
        }],
        proofs: &["hostile-ring-tickless"],
        accel: Accel::Tcg,
    },
    Break {
        name: "timer-sleep-returns-early",
        what: "a TimerSleep completes after half the time asked",
        edits: &[Edit {
            file: "kernel/src/object/timer.rs",
            find: "let deadline = fw::time::now_ns().saturating_add(ns);",
            replace: "let deadline = fw::time::now_ns().saturating_add(ns / 2);",
        }],
        proofs: &["bench-timer-sleep"],
        accel: Accel::Tcg,
    },
    Break {
        name: "timer-sleep-deadline-late",
        what: "a TimerSleep's deadline is set 30 ms after the time asked",
        edits: &[Edit {
            file: "kernel/src/object/timer.rs",
            find: "let deadline = fw::time::now_ns().saturating_add(ns);",
            replace: "let deadline = fw::time::now_ns().saturating_add(ns + 30_000_000);",
        }],
        proofs: &["bench-timer-sleep"],
        accel: Accel::Tcg,
    },
    // Time: tickless by default
    Break {
        name: "timer-default-periodic",
        what: "with no timer= on the command line the machine silently keeps the periodic tick",
        edits: &[Edit {
            file: "framework/src/bringup/mod.rs",
            find: "        None => (true, false, \"default\"),\n",
            replace: "        None => (false, false, \"default\"),\n",
        }],
        proofs: &["smp-x2apic"],
        accel: Accel::Tcg,
    },
    Break {
        name: "smp-idle-ap-keeps-watchdog",
        what: "tickless by default: an idle AP keeps its 250 ms busy watchdog armed (4 interrupts in the smp window)",
        edits: &[Edit {
            file: "kernel/src/task/sched.rs",
            find: "    if !me.oneshot.idle.load(Ordering::Relaxed) {\n",
            replace: "    if !me.oneshot.idle.load(Ordering::Relaxed) || percpu::current_index() != 0 {\n",
        }],
        proofs: &["smp"],
        accel: Accel::Tcg,
    },
];
