//! `syscall`/`sysret`: the only way into the kernel from ring 3 besides interrupts.
//!
//! The entry stub switches to the current thread's kernel stack (per-CPU `kernel_stack_top`,
//! through GS after `swapgs`), builds the hardware part of the same [`TrapFrame`] the
//! interrupt path builds, with vector [`SYSCALL_VECTOR`], and joins the common trap path
//! (`trap_save` in `trap_entry.rs`). Returning uses `sysretq` when the frame still describes a
//! plain return to user code, and the `iretq` trap path otherwise. Before either, the common
//! return path refuses a ring-3 frame whose RIP or RSP is not a lower-half canonical address
//! (both instructions would fault in ring 0 on real CPUs) and ends the thread instead.

use core::arch::global_asm;

use x86_64::registers::model_specific::{Efer, EferFlags, LStar, SFMask, Star};
use x86_64::registers::rflags::RFlags;
use x86_64::VirtAddr;

use super::gdt::{KERNEL_CODE, KERNEL_DATA};
use super::trap_entry::TrapFrame;
use crate::upcall::TrapHandlers;
use x86_64::structures::gdt::SegmentSelector;

/// Pseudo-vector in a syscall frame: return with `sysretq`.
pub const SYSCALL_VECTOR: u64 = 0x100;
/// Pseudo-vector asking the exit path to return with `iretq` instead.
pub const SYSCALL_VECTOR_IRET: u64 = 0x101;

/// Where the linker script pins `keel_syscall_entry` (no KASLR: the kernel image is public;
/// hostile proofs jump here from ring 3 and must reach the real entry).
pub const SYSCALL_ENTRY_ADDR: u64 = 0xffff_ffff_8010_0200;

global_asm!(
    r#"
.section .text.syscall_entry, "ax"
.global keel_syscall_entry
keel_syscall_entry:
    swapgs
    movq %rsp, %gs:{user_rsp}
    movq %gs:{kernel_rsp}, %rsp
    pushq $0x1b                 /* ss: user data */
    pushq %gs:{user_rsp}        /* rsp */
    pushq %r11                  /* rflags (saved by the CPU) */
    pushq $0x23                 /* cs: user code */
    pushq %rcx                  /* rip (saved by the CPU) */
    pushq $0                    /* error code */
    pushq ${vector}             /* vector: syscall */
    jmp trap_save               /* the common path saves registers, dispatches, returns */
"#,
    user_rsp = const super::percpu::USER_RSP_SCRATCH_OFFSET,
    kernel_rsp = const super::percpu::KERNEL_STACK_TOP_OFFSET,
    vector = const SYSCALL_VECTOR,
    options(att_syntax)
);

extern "C" {
    fn keel_syscall_entry();
}

/// Where the `syscall` entry really is (read from the symbol, for evidence).
#[cfg(feature = "scenarios")]
pub fn entry_address() -> u64 {
    keel_syscall_entry as *const () as u64
}

/// Enables `syscall` on this CPU: EFER.SCE, the selectors (STAR), the entry (LSTAR) and the
/// flags cleared on entry (SFMASK: IF, TF, DF, AC, NT — AC so SMAP holds inside the kernel).
pub fn init_cpu() {
    assert_eq!(
        keel_syscall_entry as *const () as u64, SYSCALL_ENTRY_ADDR,
        "linker script pins the entry"
    );
    // SAFETY: the selectors match the GDT layout in `gdt.rs` (user data 0x18, user code 0x20,
    // as `sysret` derives them from STAR[63:48] = 0x10), and the entry stub is valid code.
    unsafe {
        LStar::write(VirtAddr::new(keel_syscall_entry as *const () as u64));
        SFMask::write(
            RFlags::INTERRUPT_FLAG
                | RFlags::TRAP_FLAG
                | RFlags::DIRECTION_FLAG
                | RFlags::ALIGNMENT_CHECK
                | RFlags::NESTED_TASK,
        );
        Star::write(SegmentSelector(0x20 | 3), SegmentSelector(0x18 | 3), KERNEL_CODE, KERNEL_DATA)
            .expect("STAR selector layout");
        // Enable last: a hypervisor may only start loading the syscall MSRs into hardware
        // once EFER.SCE is set, so every value must already be in place.
        Efer::update(|e| e.insert(EferFlags::SYSTEM_CALL_EXTENSIONS));
    }
}

/// Set only by a proof scenario (`scenarios` feature); a kernel without them has no such state.
#[cfg(feature = "scenarios")]
static INT80_BY_DEFAULT: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);
/// Set by the first system call that really entered ring 0 through `syscall`: only the CPU
/// can set it, so from then on a ring-3 fault at the entry point is a jump, not a broken CPU.
static SYSCALL_WORKS: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
static EMULATED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
static EMULATION_REFUSED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Whether new processes are told to use the `int 0x80` gate. Only a proof scenario sets
/// it (`entry=int80`); no program can change how other programs enter the kernel, and a
/// process is moved to the gate on its own only by the `syscall` fallback (its own gate).
pub fn int80_by_default() -> bool {
    #[cfg(feature = "scenarios")]
    return INT80_BY_DEFAULT.load(core::sync::atomic::Ordering::Relaxed);
    #[cfg(not(feature = "scenarios"))]
    false
}

/// For the `int 0x80` proof: new processes start on the gate, so it is exercised where
/// `syscall` works too. Exists only in a kernel built with the scenarios.
#[cfg(feature = "scenarios")]
pub fn start_processes_on_int80() {
    INT80_BY_DEFAULT.store(true, core::sync::atomic::Ordering::Relaxed);
}

/// System calls that arrived through the page-fault fallback.
pub fn emulated_count() -> u64 {
    EMULATED.load(core::sync::atomic::Ordering::Relaxed)
}

/// Ring-3 faults at the entry point that were not taken for a failed `syscall` (the thread
/// was ended as for any fault).
#[cfg(feature = "scenarios")]
pub fn emulation_refused_count() -> u64 {
    EMULATION_REFUSED.load(core::sync::atomic::Ordering::Relaxed)
}

/// The `syscall` opcode (0F 05).
const SYSCALL_OPCODE: [u8; 2] = [0x0f, 0x05];

/// Whether the two bytes before `rcx` are a `syscall` instruction in the current process's
/// user memory (read like all user memory, through `UserSlice`: unmapped means no).
fn follows_syscall_instruction(rcx: u64) -> bool {
    let Some(at) = rcx.checked_sub(2) else { return false };
    let mut bytes = [0u8; 2];
    crate::mm::user::UserSlice::new(at, 2).and_then(|s| s.read(&mut bytes)).is_ok()
        && bytes == SYSCALL_OPCODE
}

/// A ring-3 fault whose RIP is the `syscall` entry means the CPU executed `syscall` but stayed
/// in ring 3 (seen under PVM, a KVM backend without VMX/SVM that emulates an unmodified guest
/// and completes `syscall` without the privilege change). The registers are exactly those of
/// a system call (RCX = return RIP, R11 = RFLAGS), so the frame is made the system call's
/// (returning with `iretq`) and true tells the caller (the kernel's fault handler) to switch
/// this process (only) to the `int 0x80` gate and handle the call. A program can also just jump to the
/// entry with registers of its choice, so the fault is taken for a failed `syscall` only
/// while no `syscall` has ever entered ring 0 on this machine and RCX points just past a
/// `syscall` instruction of the process; the return path checks the RIP like every other.
/// Returns false for any other fault.
pub fn recover_from_failed_syscall(frame: &mut TrapFrame) -> bool {
    if frame.vector != 14
        || frame.rip != keel_syscall_entry as *const () as u64
        || !frame.from_user()
    {
        return false;
    }
    if SYSCALL_WORKS.load(core::sync::atomic::Ordering::Relaxed)
        || !follows_syscall_instruction(frame.rcx)
    {
        EMULATION_REFUSED.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        return false;
    }
    if EMULATED.fetch_add(1, core::sync::atomic::Ordering::Relaxed) == 0 {
        log::warn!("syscall: the CPU's SYSCALL stayed in ring 3; the process switches to the int 0x80 gate");
    }
    frame.rip = frame.rcx;
    // Only the arithmetic flags and DF from the user's RFLAGS (IOPL, NT, VM, AC stay clear);
    // interrupts on.
    frame.rflags = (frame.r11 & 0xCD5) | 0x202;
    true
}

/// Called from the trap dispatcher for a syscall frame, with interrupts off, on the thread's
/// kernel stack. Leaves the frame marked for `sysretq`, or for `iretq` when the handler
/// changed the frame. Either way `trap_return` checks the user RIP and RSP first.
#[inline(always)]
pub fn dispatch<H: TrapHandlers>(frame: &mut TrapFrame) {
    if !SYSCALL_WORKS.load(core::sync::atomic::Ordering::Relaxed) {
        SYSCALL_WORKS.store(true, core::sync::atomic::Ordering::Relaxed);
    }
    H::syscall(frame);
    if frame.vector != SYSCALL_VECTOR {
        frame.vector = SYSCALL_VECTOR_IRET;
    }
}
