//! The interrupt side: one IDT shared by every CPU, a small assembly stub per vector (stable
//! Rust has no `extern "x86-interrupt"`), and the handlers, which count on the CPU they run
//! on. The counters are the evidence: a tick or an IPI is counted only where it arrived.

use core::arch::global_asm;

use spin::Lazy;
use x86_64::structures::idt::InterruptDescriptorTable;
use x86_64::VirtAddr;

use crate::cpu;

/// LAPIC timer, IPI, LAPIC error and spurious vectors (above the exceptions and the PICs).
pub const TIMER_VECTOR: u8 = 0x30;
pub const IPI_VECTOR: u8 = 0x31;
pub const ERROR_VECTOR: u8 = 0xFE;
pub const SPURIOUS_VECTOR: u8 = 0xFF;

// Each stub saves the registers a C call may clobber, calls its handler and returns with
// `iretq`. Entry leaves RSP 8 mod 16 (five words pushed on an aligned stack); nine pushes
// make it 16-byte aligned for the call. The spurious vector only returns: it sets no ISR
// bit, so it must not EOI. The exception stub passes the vector (first argument).
global_asm!(
    r#"
.macro STUB name, handler
.global \name
\name:
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    cld
    call \handler
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rax
    iretq
.endm
.section .text
STUB timer_stub, on_timer
STUB ipi_stub, on_ipi
STUB error_stub, on_apic_error
.macro EXCEPTION name, vector
.global \name
\name:
    movl $\vector, %edi
    jmp exception_common
.endm
EXCEPTION divide_error_stub, 0
EXCEPTION invalid_opcode_stub, 6
EXCEPTION double_fault_stub, 8
EXCEPTION general_protection_stub, 13
EXCEPTION page_fault_stub, 14
exception_common:
    andq $~0xF, %rsp
    call on_exception
.global spurious_stub
spurious_stub:
    iretq
"#,
    options(att_syntax)
);

extern "C" {
    fn timer_stub();
    fn ipi_stub();
    fn error_stub();
    fn divide_error_stub();
    fn invalid_opcode_stub();
    fn double_fault_stub();
    fn general_protection_stub();
    fn page_fault_stub();
    fn spurious_stub();
}

static IDT: Lazy<InterruptDescriptorTable> = Lazy::new(|| {
    let mut idt = InterruptDescriptorTable::new();
    let at = |stub: unsafe extern "C" fn()| VirtAddr::new(stub as usize as u64);
    // SAFETY: each address is a stub above, which preserves every register the handler may
    // clobber and ends in `iretq` (the exception stubs never return: they end the run).
    unsafe {
        idt[TIMER_VECTOR].set_handler_addr(at(timer_stub));
        idt[IPI_VECTOR].set_handler_addr(at(ipi_stub));
        idt[ERROR_VECTOR].set_handler_addr(at(error_stub));
        idt[SPURIOUS_VECTOR].set_handler_addr(at(spurious_stub));
        // The masked 8259s' spurious IRQ 7 and 15 (pic.rs): ignored like the LAPIC's.
        for line in [7, 15] {
            idt[crate::pic::PIC_VECTOR_BASE + line].set_handler_addr(at(spurious_stub));
        }
        idt.divide_error.set_handler_addr(at(divide_error_stub));
        idt.invalid_opcode.set_handler_addr(at(invalid_opcode_stub));
        idt.double_fault.set_handler_addr(at(double_fault_stub));
        idt.general_protection_fault.set_handler_addr(at(general_protection_stub));
        idt.page_fault.set_handler_addr(at(page_fault_stub));
    }
    idt
});

/// Loads the shared IDT on this CPU.
pub fn load() {
    IDT.load();
}

#[no_mangle]
extern "C" fn on_timer() {
    let me = cpu::this();
    me.ticks.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    cpu::lapic().eoi();
}

#[no_mangle]
extern "C" fn on_ipi() {
    let me = cpu::this();
    me.ipis_received.fetch_add(1, core::sync::atomic::Ordering::Release);
    cpu::lapic().eoi();
}

#[no_mangle]
extern "C" fn on_apic_error() {
    let me = cpu::this();
    let mut lapic = cpu::lapic();
    let esr = lapic.read_error();
    me.lapic_errors.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    crate::println!("example: LAPIC error {:#x}", esr.bits());
    lapic.eoi();
}

/// A CPU exception ends the run (this example has no use for any).
#[no_mangle]
extern "C" fn on_exception(vector: u32) -> ! {
    crate::ev!("fault.vector", vector);
    crate::console::finish(false, "CPU exception")
}
