//! The IDT, the 256 entry stubs, and the dispatcher.
//!
//! Stable Rust has no `x86-interrupt` ABI, so every vector gets a 16-byte assembly stub that
//! pushes a dummy error code where the CPU does not, then its vector number, and jumps to one
//! common path that saves the general registers into a [`TrapFrame`] and calls
//! [`trap_dispatch`]. One frame layout serves exceptions, device interrupts and user entry.
//! NMI and #MC stubs join a paranoid path instead (`trap_paranoid`): it decides `swapgs`
//! from IA32_GS_BASE rather than the saved CS, then builds the same frame.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Once;

use super::eoi::InService;
use super::gdt::{IST_DOUBLE_FAULT, IST_MACHINE_CHECK, IST_NMI, KERNEL_CODE};
use super::percpu::{self, IrqGuard};
use crate::upcall::TrapHandlers;

/// LAPIC timer tick (fixed by the design).
pub const TIMER_VECTOR: u8 = 48;
/// Inter-processor interrupts: call-function and reschedule mailbox.
pub const IPI_VECTOR: u8 = 49;
/// First vector handed to device interrupts (IOAPIC pins, MSI).
pub const DEVICE_VECTOR_BASE: u8 = 0x50;
/// Last device vector.
pub const DEVICE_VECTOR_LAST: u8 = 0xDF;
/// LAPIC error interrupt (LVT error).
pub const LAPIC_ERROR_VECTOR: u8 = 0xFE;
/// One self-IPI at boot: does the LAPIC's ISR show the vector being handled? (`lapic::probe_isr`)
pub const ISR_PROBE_VECTOR: u8 = 0xFD;
/// The IOMMU units' fault-event interrupt (boot CPU).
pub const IOMMU_FAULT_VECTOR: u8 = 0xFC;
/// LAPIC spurious-interrupt vector (low nibble all ones, as older xAPICs require).
pub const SPURIOUS_VECTOR: u8 = 0xFF;
/// Where the 8259 PICs are parked before being masked (their spurious IRQ7/15 land here).
pub const PIC_VECTOR_BASE: u8 = 0x20;

/// The registers saved on every trap, in push order reversed (lowest address first).
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl TrapFrame {
    /// Whether the trap interrupted ring 3.
    pub fn from_user(&self) -> bool {
        self.cs & 3 == 3
    }
}

// Vectors for which the CPU pushes an error code: #DF 8, #TS 10, #NP 11, #SS 12, #GP 13,
// #PF 14, #AC 17, #CP 21, #VC 29, #SX 30.
global_asm!(
    r#"
/* The TrapFrame's general registers, saved in its order (RAX lowest) with DF cleared for
 * the Rust handler, and restored. */
.macro trap_push_registers
    pushq %r15
    pushq %r14
    pushq %r13
    pushq %r12
    pushq %r11
    pushq %r10
    pushq %r9
    pushq %r8
    pushq %rbp
    pushq %rdi
    pushq %rsi
    pushq %rdx
    pushq %rcx
    pushq %rbx
    pushq %rax
    cld
.endm
.macro trap_pop_registers
    popq %rax
    popq %rbx
    popq %rcx
    popq %rdx
    popq %rsi
    popq %rdi
    popq %rbp
    popq %r8
    popq %r9
    popq %r10
    popq %r11
    popq %r12
    popq %r13
    popq %r14
    popq %r15
.endm

.section .text
.balign 16
.global trap_stubs
trap_stubs:
.set vec, 0
.rept 256
    .balign 16
    .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
        pushq $0
    .endif
    pushq $vec
    .if (vec == 2) || (vec == 18)
    jmp trap_paranoid
    .else
    jmp trap_common
    .endif
    .set vec, vec + 1
.endr

trap_common:
    /* Interrupt gates do not clear RFLAGS.AC: a user could set it to switch SMAP off for the
     * kernel, and a trap inside a user copy (between `stac` and `clac`) would run its handler
     * with SMAP open. Clear it on every entry (pushf/popf works without SMAP); `iretq`
     * restores the interrupted context's AC. */
    pushfq
    andq $~0x40000, (%rsp)
    popfq
    testb $3, 24(%rsp)          /* CS of the interrupted context */
    jz trap_save
    swapgs
/* The `syscall` stub joins here with GS already swapped and its frame built. */
.global trap_save
trap_save:
    trap_push_registers
    movq %rsp, %rdi
    call trap_dispatch
.global trap_return
trap_return:
    cli                         /* a system call may have run with interrupts on */
    /* Every return to ring 3 (sysretq and iretq, new threads included) passes here: the
     * RIP and RSP must be lower-half canonical, or sysretq/iretq would fault in ring 0 on
     * real CPUs (emulators may not). Bits 47..63 of both must be clear. */
    testb $3, {frame_cs}(%rsp)
    jz 1f
    movq {frame_rip}(%rsp), %rax
    orq {frame_rsp}(%rsp), %rax
    shrq $47, %rax
    jnz 4f
1:  trap_pop_registers
    /* rsp -> vector, error code, rip, cs, rflags, rsp, ss */
    cmpq ${syscall_vector}, (%rsp)
    je 3f
    testb $3, 24(%rsp)
    jz 2f
    swapgs
2:  addq $16, %rsp
    iretq

/* A plain return from `syscall`: `sysretq` (RCX = RIP, R11 = RFLAGS, user RSP reloaded). */
3:  addq $16, %rsp
    movq 0(%rsp), %rcx          /* user rip */
    movq 16(%rsp), %r11         /* user rflags */
    movq 24(%rsp), %rsp         /* user rsp */
    swapgs
    sysretq

/* A ring-3 frame the CPU must not return to: end the thread (never returns). */
4:  movq %rsp, %rdi
    call trap_refuse_return
    ud2

/* NMI and #MC (paranoid entry, as Linux's): they can land in the `swapgs` windows (after
 * `syscall` before its `swapgs`, or after trap_return's `swapgs` before `sysretq`/`iretq`),
 * where CS is the kernel's but GS is still the user's, so CS cannot say whether to swap.
 * IA32_GS_BASE can: the kernel's per-CPU blocks live in the upper half, a user's GS base
 * never does (CR4.FSGSBASE stays off and no method sets it). Swap when its sign bit is clear,
 * remember that in RBX (callee-saved across trap_dispatch), and swap back before `iretq`. */
trap_paranoid:
    pushfq
    andq $~0x40000, (%rsp)
    popfq
    trap_push_registers
    xorl %ebx, %ebx
    movl $0xC0000101, %ecx      /* IA32_GS_BASE */
    rdmsr
    testl %edx, %edx
    js 5f                       /* upper half: the kernel's GS is loaded */
    swapgs
    movl $1, %ebx
    lock incq {paranoid_swaps}(%rip)
5:  movq %rsp, %rdi
    call trap_dispatch
    testl %ebx, %ebx
    jz 6f
    swapgs
6:  trap_pop_registers
    addq $16, %rsp
    iretq
"#,
    syscall_vector = const super::syscall_entry::SYSCALL_VECTOR,
    frame_cs = const core::mem::offset_of!(TrapFrame, cs),
    frame_rip = const core::mem::offset_of!(TrapFrame, rip),
    frame_rsp = const core::mem::offset_of!(TrapFrame, rsp),
    paranoid_swaps = sym PARANOID_GS_SWAPS,
    options(att_syntax)
);

extern "C" {
    static trap_stubs: u8;
}

/// One 16-byte IDT gate.
#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    /// A present 64-bit interrupt gate (IF cleared on entry) at ring 0.
    fn interrupt(handler: u64, ist: u16, dpl: u8) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: KERNEL_CODE.0,
            ist: ist as u8,
            type_attr: 0x8E | (dpl << 5),
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static IDT: Once<Idt> = Once::new();

/// Builds the IDT (once) and loads it on the calling CPU.
pub fn init_idt() {
    let idt = IDT.call_once(|| {
        let base = core::ptr::addr_of!(trap_stubs) as u64;
        let mut gates = [Gate::interrupt(0, 0, 0); 256];
        for (vector, gate) in gates.iter_mut().enumerate() {
            let ist = match vector {
                8 => IST_DOUBLE_FAULT,
                2 => IST_NMI,
                18 => IST_MACHINE_CHECK,
                _ => 0,
            };
            // The `int 0x80` system-call gate is the only one ring 3 may invoke.
            let dpl = if vector == keel_abi::SYSCALL_GATE_VECTOR as usize { 3 } else { 0 };
            *gate = Gate::interrupt(base + 16 * vector as u64, ist, dpl);
        }
        Idt(gates)
    });
    let ptr = x86_64::structures::DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: x86_64::VirtAddr::from_ptr(idt),
    };
    // SAFETY: the IDT is 'static and every gate points at a stub in this image.
    unsafe { x86_64::instructions::tables::lidt(&ptr) };
}

/// NMI/#MC entries that found the user's GS loaded in ring 0 (the `swapgs` windows) and
/// swapped it for the kernel's: counted by the paranoid entry stub itself.
pub static PARANOID_GS_SWAPS: AtomicU64 = AtomicU64::new(0);

/// Interrupts that reached no handler (counted, reported by the boot report).
pub static UNHANDLED: AtomicU64 = AtomicU64::new(0);
/// Spurious interrupts from the 8259 PICs (IRQ7/IRQ15 after masking).
pub static PIC_SPURIOUS: AtomicU64 = AtomicU64::new(0);

/// Defines the two symbols the assembly trap path calls, bound to the kernel's
/// [`TrapHandlers`] at compile time (each handler a direct call, inlined where the compiler
/// likes): `trap_dispatch` (called by `trap_common` with interrupts off) and
/// `trap_refuse_return` (called by `trap_return` for a ring-3 frame with a non-canonical RIP
/// or RSP, on the thread's kernel stack with kernel GS: the thread ends there). The kernel
/// writes `fw::trap_entry!(Handlers);` once; without it the image does not link.
#[macro_export]
macro_rules! trap_entry {
    ($handlers:ty) => {
        #[no_mangle]
        extern "C" fn trap_dispatch(frame: &mut $crate::arch::x86_64::trap_entry::TrapFrame) {
            $crate::arch::x86_64::trap_entry::dispatch::<$handlers>(frame)
        }

        #[no_mangle]
        extern "C" fn trap_refuse_return(
            frame: &mut $crate::arch::x86_64::trap_entry::TrapFrame,
        ) -> ! {
            <$handlers as $crate::upcall::TrapHandlers>::refuse_user_return(frame)
        }
    };
}

/// The trap dispatcher `trap_dispatch` runs (see [`trap_entry!`](crate::trap_entry)), with
/// interrupts off.
#[inline(always)]
pub fn dispatch<H: TrapHandlers>(frame: &mut TrapFrame) {
    if frame.vector == super::syscall_entry::SYSCALL_VECTOR {
        count_entry(|me| &me.syscall);
        super::syscall_entry::dispatch::<H>(frame);
        return;
    }
    let vector = frame.vector as u8;
    match vector {
        2 => {
            // SAFETY: entered through an interrupt gate (IF clear); the NMI handler either
            // parks the CPU or counts and returns, never enabling interrupts.
            let cpu = unsafe { IrqGuard::interrupts_already_off() };
            super::smp::nmi(frame, &cpu);
            // An NMI may interrupt any code, the scheduler included: it never leaves here
            // through a thread exit (the paranoid stub must run its own return).
            return;
        }
        0..=31 if frame.from_user() => H::user_fault(frame),
        // A user copy that hit an unmapped or protected user page returns `BadAddress`.
        14 if super::usercopy::fixup_page_fault(frame) => {}
        0..=31 => crate::panic::fatal_exception(frame),
        keel_abi::SYSCALL_GATE_VECTOR if frame.from_user() => {
            count_entry(|me| &me.int80);
            H::syscall(frame)
        }
        _ => {
            // SAFETY: entered through an interrupt gate (IF clear); none of the interrupt
            // handlers enables interrupts (a preempting tick switches out and resumes with
            // them off).
            let mut cpu = unsafe { IrqGuard::interrupts_already_off() };
            interrupt::<H>(vector, frame.from_user(), &mut cpu)
        }
    }
    // A thread of an exiting process leaves before returning to ring 3.
    if frame.from_user() {
        H::leave_if_exiting();
    }
}

/// Entries from ring 3 one CPU took, counted on each entry path.
pub struct EntryCounts {
    /// Through the `syscall` instruction.
    pub syscall: AtomicU64,
    /// Through the `int 0x80` gate.
    pub int80: AtomicU64,
}

crate::cpu_local! {
    /// Each CPU's entries from ring 3.
    pub static ENTRY_COUNTS: EntryCounts =
        EntryCounts { syscall: AtomicU64::new(0), int80: AtomicU64::new(0) };
}

/// Counts an entry from ring 3 on this CPU (before the system call may enable interrupts).
#[inline]
fn count_entry(counter: impl FnOnce(&EntryCounts) -> &AtomicU64) {
    // SAFETY: called first thing in `trap_dispatch`, entered through an interrupt gate or the
    // `syscall` stub (SFMASK clears IF); the guard is gone before the call is handled.
    let cpu = unsafe { IrqGuard::interrupts_already_off() };
    counter(ENTRY_COUNTS.get(&cpu)).fetch_add(1, Ordering::Relaxed);
}

/// Interrupt vectors (not exceptions, not system calls), with the handler's guard. Each
/// LAPIC-delivered vector's handler gets the [`InService`] token that EOIs it exactly once;
/// rescheduling happens here, after the handler (and so the EOI) is done.
fn interrupt<H: TrapHandlers>(vector: u8, from_user: bool, cpu: &mut IrqGuard) {
    match vector {
        TIMER_VECTOR => {
            super::lapic::timer_interrupt(InService::delivered(), cpu);
            super::lockup::watch(cpu);
            if percpu::current(cpu).index == 0 {
                super::iommu::poll_faults();
            }
            H::tick(from_user, cpu);
        }
        IPI_VECTOR => super::smp::ipi_interrupt(InService::delivered(), cpu),
        super::tlb::TLB_VECTOR => super::tlb::shootdown_interrupt(InService::delivered(), cpu),
        SPURIOUS_VECTOR => super::lapic::spurious_interrupt(cpu),
        LAPIC_ERROR_VECTOR => super::lapic::error_interrupt(InService::delivered(), cpu),
        ISR_PROBE_VECTOR => super::lapic::isr_probe_interrupt(InService::delivered()),
        IOMMU_FAULT_VECTOR => super::iommu::fault_interrupt(InService::delivered()),
        DEVICE_VECTOR_BASE..=DEVICE_VECTOR_LAST => super::ioapic::device_interrupt(vector, cpu),
        v if (PIC_VECTOR_BASE..PIC_VECTOR_BASE + 16).contains(&v) => {
            // Masked 8259 lines can still raise a spurious IRQ7/IRQ15; the PIC needs no EOI
            // for those and the LAPIC never saw them.
            PIC_SPURIOUS.fetch_add(1, Ordering::Relaxed);
        }
        _ => {
            UNHANDLED.fetch_add(1, Ordering::Relaxed);
            // Acknowledged (dropped) only if it may be in service: see `InService::claim`.
            drop(InService::claim(vector));
        }
    }
}
