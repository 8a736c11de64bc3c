//! The two Keel system calls.
//!
//! Convention: `syscall` with `rax` = number, `rdi`/`rsi`/`rdx` = arguments, result in `rax`.
//! The instruction itself overwrites `rcx` (return rip) and `r11` (saved rflags); the kernel
//! preserves every other register.

use core::arch::asm;

use keel_abi::{ENTRY_INT80, SYS_CAP_ENTER, SYS_EXIT};

/// Whether the kernel asked for the `int 0x80` gate instead of `syscall` (see
/// `StartInfo::entry_gate`).
#[inline]
fn use_int80() -> bool {
    crate::start_info().entry_gate == ENTRY_INT80
}

/// `cap_enter(min_complete, timeout_ns)`: let the kernel consume the submission queue, then
/// wait until `min_complete` completions are available or the timeout elapses. Returns the
/// number of available completions (>= 0) or a negative `Status`; see
/// [`keel_abi::enter_result`] to decode it. Safe: the kernel validates everything it reads.
#[inline]
pub fn cap_enter(min_complete: u64, timeout_ns: u64) -> i64 {
    let ret: i64;
    // SAFETY: the system call only reads/writes the ring page (memory is not declared
    // untouched, so the compiler does not cache ring contents across it) and clobbers
    // exactly rax, rcx, r11; it does not touch the user stack.
    unsafe {
        macro_rules! enter {
            ($insn:literal) => {
                asm!(
                    $insn,
                    inlateout("rax") SYS_CAP_ENTER => ret,
                    in("rdi") min_complete,
                    in("rsi") timeout_ns,
                    lateout("rcx") _,
                    lateout("r11") _,
                    options(nostack),
                )
            };
        }
        if use_int80() {
            enter!("int 0x80");
        } else {
            enter!("syscall");
        }
    }
    ret
}

/// `exit(code)`: ends the process; the kernel releases its capabilities and cancels its
/// pending operations. Never returns.
#[inline]
pub fn exit(code: u64) -> ! {
    // SAFETY: the kernel does not return from `exit`; nothing after the instruction runs.
    unsafe {
        if use_int80() {
            asm!("int 0x80", in("rax") SYS_EXIT, in("rdi") code, options(noreturn, nostack));
        } else {
            asm!("syscall", in("rax") SYS_EXIT, in("rdi") code, options(noreturn, nostack));
        }
    }
}
