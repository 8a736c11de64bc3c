//! The one instruction that touches user memory, and the exception table that lets it fail.
//!
//! `keel_user_copy` copies with a single `rep movsb` between `stac` and `clac`. Its address
//! and the address of the instruction after it form an entry of the exception table (the
//! `.ex_table` section, bounded by linker symbols). When that instruction takes a page fault
//! on a user address — the page was never mapped, or another CPU unmapped or write-protected
//! it after any check could have been made — the page-fault handler finds the faulting RIP in
//! the table and resumes at the fixup instead of reporting a fatal kernel fault. `rep movsb`
//! leaves RCX at the bytes still to copy, so the routine returns that count and the caller
//! reports `BadAddress`. RFLAGS (with AC set) is restored by `iretq`, so the common epilogue's
//! `clac` closes SMAP again on both paths.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use super::trap_entry::TrapFrame;

global_asm!(
    r#"
.section .text
.global keel_user_copy
/* keel_user_copy(dst: rdi, src: rsi, len: rdx, smap: rcx) -> bytes not copied (rax) */
keel_user_copy:
    movq %rcx, %r8
    testq %r8, %r8
    jz 1f
    stac
1:  movq %rdx, %rcx
2:  rep movsb
3:  testq %r8, %r8
    jz 4f
    clac
4:  movq %rcx, %rax
    ret
.pushsection .ex_table, "a"
    .balign 8
    .quad 2b, 3b
.popsection
"#,
    options(att_syntax)
);

extern "C" {
    fn keel_user_copy(dst: *mut u8, src: *const u8, len: usize, smap: u64) -> usize;
    static __ex_table_start: ExEntry;
    static __ex_table_end: ExEntry;
}

/// One exception-table entry: a kernel instruction allowed to fault on user memory, and where
/// execution resumes when it does.
#[repr(C)]
struct ExEntry {
    faulting: u64,
    fixup: u64,
}

/// Page faults on user memory the exception table turned into an error return.
pub static FIXUPS: AtomicU64 = AtomicU64::new(0);

/// Highest user address + 1 (a fault above it is never fixed up: the copy never goes there).
const USER_END: u64 = crate::mm::address_space::USER_END;

fn table() -> &'static [ExEntry] {
    // SAFETY: the linker script bounds `.ex_table` with these symbols; the section holds only
    // `ExEntry` records (two quads each, 8-aligned) emitted by `global_asm!` blocks.
    unsafe {
        let start = core::ptr::addr_of!(__ex_table_start);
        let end = core::ptr::addr_of!(__ex_table_end);
        core::slice::from_raw_parts(
            start,
            (end as usize - start as usize) / core::mem::size_of::<ExEntry>(),
        )
    }
}

/// A ring-0 page fault: if it hit a table-listed instruction on a user address, resume at its
/// fixup and return true; otherwise false (the fault is fatal).
pub fn fixup_page_fault(frame: &mut TrapFrame) -> bool {
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    if frame.vector != 14 || frame.from_user() || cr2 >= USER_END {
        return false;
    }
    match table().iter().find(|e| e.faulting == frame.rip) {
        Some(e) => {
            frame.rip = e.fixup;
            FIXUPS.fetch_add(1, Ordering::Relaxed);
            true
        }
        None => false,
    }
}

/// Copies `len` bytes from `src` to `dst`, one of which is a user range of the address space
/// loaded on this CPU; returns the bytes that could not be copied (0 on success).
///
/// # Safety
/// The kernel side must be valid for `len` bytes; the user side must lie below `USER_END`
/// (it may be unmapped: that is what the fixup is for).
pub unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) -> usize {
    let smap = super::cpu::features().smap as u64;
    // SAFETY: per the contract; a fault on the user side resumes at the fixup.
    unsafe { keel_user_copy(dst, src, len, smap) }
}
