//! Kernel context switch: saves the callee-saved registers of the running kernel context on
//! its own stack, stores the stack pointer, and resumes another context the same way. Every
//! thread switch passes through its CPU's scheduler ("idle") context.

use core::arch::global_asm;

global_asm!(
    r#"
.section .text
.global keel_switch_context
/* keel_switch_context(save_rsp: *mut u64 [rdi], load_rsp: u64 [rsi]) */
keel_switch_context:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
"#,
    options(att_syntax)
);

extern "C" {
    fn keel_switch_context(save_rsp: *mut u64, load_rsp: u64);
    /// The tail of the trap path: pops a `TrapFrame` and returns with `iretq` (swapping GS
    /// when returning to ring 3). A new thread's first switch "returns" here.
    pub fn trap_return();
}

/// Saves the current context into `*save` and resumes the context whose stack pointer is
/// `load`.
///
/// # Safety
/// Interrupts must be off; `load` must be a stack pointer saved by this function (or
/// prepared by [`prepare_new_context`]) whose stack is still alive; `save` must stay valid
/// until this context is resumed.
pub unsafe fn switch(save: *mut u64, load: u64) {
    // SAFETY: forwarded to the caller.
    unsafe { keel_switch_context(save, load) }
}

/// Lays out a fresh kernel stack so that switching to it runs `trap_return` with the
/// `TrapFrame` already written at `frame_addr` (just below the stack top). Returns the saved
/// stack pointer to switch to.
///
/// # Safety
/// `frame_addr` must point at a valid `TrapFrame` at the top of a live kernel stack with at
/// least 64 bytes free below it.
pub unsafe fn prepare_new_context(frame_addr: u64) -> u64 {
    let mut sp = frame_addr;
    // SAFETY: the caller guarantees room below the frame on this stack.
    unsafe {
        sp -= 8;
        (sp as *mut u64).write(trap_return as *const () as u64); // `ret` target
        for _ in 0..6 {
            sp -= 8;
            (sp as *mut u64).write(0); // rbp, rbx, r12..r15
        }
    }
    sp
}
