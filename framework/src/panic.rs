//! The one way down: panics and fatal exceptions stop every other CPU with an NMI first, so
//! the report that follows is the only thing on the console, then exit with a failure status.

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::x86_64::trap_entry::TrapFrame;
use crate::arch::x86_64::{percpu, smp};
use crate::exit::{exit, halt_forever, ExitCode};

static GOING_DOWN: AtomicBool = AtomicBool::new(false);

/// Whether some CPU is reporting a panic (NMI handlers on the others then halt).
pub fn going_down() -> bool {
    GOING_DOWN.load(Ordering::SeqCst)
}

/// Claims the right to report; a second CPU that fails at the same time just halts.
fn claim_report() {
    x86_64::instructions::interrupts::disable();
    if GOING_DOWN.swap(true, Ordering::SeqCst) {
        halt_forever();
    }
    smp::stop_other_cpus();
    crate::console::force_unlock_for_panic();
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    claim_report();
    let cpu = percpu::current_index_or_boot();
    // A CPU stopped mid-line may have left a partial line: start the report on a fresh one.
    println!();
    match info.location() {
        Some(l) => println!("PANIC on cpu{cpu} at {}:{}: {}", l.file(), l.line(), info.message()),
        None => println!("PANIC on cpu{cpu}: {}", info.message()),
    }
    ev!("panic.cpu", cpu);
    ev!("panic.others_stopped", smp::stopped_count());
    println!("VERDICT fail panic");
    exit(ExitCode::Panic)
}

/// Human name of an exception vector.
pub fn exception_name(vector: u64) -> &'static str {
    const NAMES: [&str; 32] = [
        "divide error",
        "debug",
        "NMI",
        "breakpoint",
        "overflow",
        "bound range",
        "invalid opcode",
        "device not available",
        "double fault",
        "coprocessor overrun",
        "invalid TSS",
        "segment not present",
        "stack fault",
        "general protection",
        "page fault",
        "reserved",
        "x87 FP",
        "alignment check",
        "machine check",
        "SIMD FP",
        "virtualization",
        "control protection",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "reserved",
        "hypervisor injection",
        "VMM communication",
        "security",
        "reserved",
    ];
    NAMES.get(vector as usize).copied().unwrap_or("unknown")
}

/// A CPU exception the kernel cannot recover from: print vector, error code, RIP, CR2 and the
/// registers, stop the machine with the fatal-exception status. Never a silent triple fault.
pub fn fatal_exception(frame: &TrapFrame) -> ! {
    claim_report();
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    let cpu = percpu::current_index_or_boot();
    println!();
    println!(
        "FATAL EXCEPTION on cpu{cpu}: vector {} ({}) error {:#x} at rip {:#018x} cr2 {:#018x}",
        frame.vector,
        exception_name(frame.vector),
        frame.error_code,
        frame.rip,
        cr2
    );
    println!(
        "  rax {:#018x} rbx {:#018x} rcx {:#018x} rdx {:#018x}\n  rsi {:#018x} rdi {:#018x} rbp {:#018x} rsp {:#018x}\n  cs {:#x} ss {:#x} rflags {:#x}",
        frame.rax, frame.rbx, frame.rcx, frame.rdx, frame.rsi, frame.rdi, frame.rbp, frame.rsp,
        frame.cs, frame.ss, frame.rflags
    );
    ev!("fault.cpu", cpu);
    ev!("fault.vector", frame.vector);
    ev!("fault.error", format_args!("{:#x}", frame.error_code));
    ev!("fault.rip", format_args!("{:#x}", frame.rip));
    ev!("fault.cr2", format_args!("{:#x}", cr2));
    println!("VERDICT fail fatal-exception");
    exit(ExitCode::FatalException)
}
