//! Leaving the machine: QEMU's `isa-debug-exit` device turns a byte written to port 0xf4
//! into QEMU's exit status `(byte << 1) | 1`, which the proof runner checks.

use x86_64::instructions::port::Port;

/// Why the kernel stops; the byte values are the contract with `docs/proofs.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Verdict pass, clean halt (QEMU status 33).
    Pass = 0x10,
    /// A check in the kernel failed (QEMU status 35).
    Fail = 0x11,
    /// Kernel panic (QEMU status 37).
    Panic = 0x12,
    /// Fatal CPU exception (QEMU status 39).
    FatalException = 0x13,
}

/// Writes the exit byte and halts; on real hardware (no exit device) the CPU just halts.
pub fn exit(code: ExitCode) -> ! {
    // SAFETY: port 0xf4 is QEMU's isa-debug-exit device (absent elsewhere, where the write
    // is ignored); writing it has no memory effects.
    unsafe { Port::<u8>::new(0xf4).write(code as u8) };
    halt_forever()
}

/// Stops this CPU for good: interrupts off, `hlt` in a loop (NMIs return into the loop).
pub fn halt_forever() -> ! {
    x86_64::instructions::interrupts::disable();
    loop {
        x86_64::instructions::hlt();
    }
}

/// Prints the verdict line (the last evidence line of a boot) and exits accordingly. A boot
/// whose bring-up left a CPU unaccounted fails whatever `pass` says, and says so.
pub fn verdict(pass: bool, reason: &str) -> ! {
    let lost = crate::bringup::cpus::unaccounted();
    if lost > 0 {
        let sep = if pass { "" } else { "; " };
        let reason = if pass { "" } else { reason };
        println!("VERDICT fail {reason}{sep}{lost} CPUs unaccounted after bring-up");
        exit(ExitCode::Fail)
    }
    if pass {
        println!("VERDICT pass");
        exit(ExitCode::Pass)
    } else {
        println!("VERDICT fail {reason}");
        exit(ExitCode::Fail)
    }
}
