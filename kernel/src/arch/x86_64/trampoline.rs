//! The application-processor start-up trampoline: real mode → protected mode → long mode.
//!
//! A SIPI with vector `v` starts the AP in real mode at `CS:IP = (v << 8):0000`, i.e. at
//! physical `v << 12`. This code is assembled into .rodata, copied to [`TRAMPOLINE_PHYS`]
//! before each start, and finds its parameters (CR3, NX, entry, stack, argument) in a block
//! at its end that the boot CPU fills in. The CR3 it loads is a small "trampoline PML4": the
//! kernel half of the kernel PML4 plus an identity map of the first 2 MiB, so the instruction
//! after enabling paging still runs; the AP switches to the real kernel tables in Rust.

use core::arch::global_asm;

use keel_boot::lowmem::{check_low_window, LowWindowError};
use keel_boot::memory::PhysRange;

use crate::mm::{phys_to_virt, paging};

/// Physical address of the trampoline code (SIPI vector 0x08).
pub const TRAMPOLINE_PHYS: u64 = 0x8000;
/// Trampoline page tables, right after it (all below 1 MiB, reserved from the allocator).
const TRAMPOLINE_PML4: u64 = 0x9000;
const TRAMPOLINE_PDPT: u64 = 0xA000;
const TRAMPOLINE_PD: u64 = 0xB000;

global_asm!(
    r#"
.set TRAMPOLINE_BASE, 0x8000
.section .rodata.ap_trampoline, "a"
.balign 16
.global ap_trampoline_start
ap_trampoline_start:
.code16
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lgdtl (tr_gdt_ptr - ap_trampoline_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $(TRAMPOLINE_BASE + tr_prot32 - ap_trampoline_start)

.code32
tr_prot32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl $TRAMPOLINE_BASE, %ebx
    movl %cr4, %eax
    orl $((1 << 5) | (1 << 7)), %eax          /* PAE | PGE */
    movl %eax, %cr4
    movl (tr_cr3 - ap_trampoline_start)(%ebx), %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx                     /* IA32_EFER */
    rdmsr
    orl $(1 << 8), %eax                        /* LME */
    testl $1, (tr_nx - ap_trampoline_start)(%ebx)
    jz 1f
    orl $(1 << 11), %eax                       /* NXE */
1:  wrmsr
    movl %cr0, %eax
    orl $((1 << 31) | (1 << 16) | 1), %eax     /* PG | WP | PE */
    movl %eax, %cr0
    ljmp $0x18, $(TRAMPOLINE_BASE + tr_long64 - ap_trampoline_start)

.code64
tr_long64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl $TRAMPOLINE_BASE, %ebx
    movq (tr_stack - ap_trampoline_start)(%rbx), %rsp
    movq (tr_arg - ap_trampoline_start)(%rbx), %rdi
    movq (tr_entry - ap_trampoline_start)(%rbx), %rax
    xorl %ebp, %ebp
    jmp *%rax

.balign 8
tr_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff                   /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff                   /* 0x10: data */
    .quad 0x00af9a000000ffff                   /* 0x18: 64-bit code */
tr_gdt_ptr:
    .word 31
    .long TRAMPOLINE_BASE + tr_gdt - ap_trampoline_start
.balign 8
.global ap_trampoline_params
ap_trampoline_params:
tr_cr3:   .quad 0
tr_nx:    .quad 0
tr_entry: .quad 0
tr_stack: .quad 0
tr_arg:   .quad 0
.global ap_trampoline_end
ap_trampoline_end:
"#,
    options(att_syntax)
);

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_params: u8;
    static ap_trampoline_end: u8;
}

/// The parameter block at the end of the trampoline, in the order the assembly reads it.
#[repr(C)]
pub struct TrampolineParams {
    pub cr3: u64,
    pub nx: u64,
    pub entry: u64,
    pub stack_top: u64,
    pub arg: u64,
}

/// Copies the trampoline below 1 MiB and builds its page tables. Called once on the boot CPU
/// after the kernel tables exist (the kernel half is shared, so later kernel mappings show up
/// in the trampoline tables too).
pub fn install() {
    // Linker symbols bounding the assembled trampoline; only their addresses are used.
    let (start, end) = (core::ptr::addr_of!(ap_trampoline_start), core::ptr::addr_of!(ap_trampoline_end));
    let len = end as usize - start as usize;
    assert!(len <= 0x1000, "AP trampoline larger than its page");
    // SAFETY: 0x8000..0xC000 is reserved low memory owned by the SMP code, mapped in the
    // physical map; no other code uses it.
    unsafe {
        core::ptr::copy_nonoverlapping(start, phys_to_virt(TRAMPOLINE_PHYS).as_mut_ptr::<u8>(), len);
        let pml4 = phys_to_virt(TRAMPOLINE_PML4).as_mut_ptr::<u64>();
        let pdpt = phys_to_virt(TRAMPOLINE_PDPT).as_mut_ptr::<u64>();
        let pd = phys_to_virt(TRAMPOLINE_PD).as_mut_ptr::<u64>();
        core::ptr::write_bytes(pml4, 0, 512);
        core::ptr::write_bytes(pdpt, 0, 512);
        core::ptr::write_bytes(pd, 0, 512);
        *pd = 0x83; // identity 0..2 MiB, present | writable | 2 MiB
        *pdpt = TRAMPOLINE_PD | 0x3;
        *pml4 = TRAMPOLINE_PDPT | 0x3;
        let kernel = phys_to_virt(paging::kernel_pml4()).as_ptr::<u64>();
        for i in 256..512 {
            *pml4.add(i) = *kernel.add(i);
        }
    }
}

/// Fills the parameter block for the next AP start.
pub fn set_params(params: TrampolineParams) {
    // SAFETY: as in `install`; the block lies inside the copied trampoline and no AP is
    // running trampoline code while the boot CPU writes it (APs start one at a time).
    unsafe {
        let offset = core::ptr::addr_of!(ap_trampoline_params) as usize - core::ptr::addr_of!(ap_trampoline_start) as usize;
        let dst = phys_to_virt(TRAMPOLINE_PHYS + offset as u64).as_mut_ptr::<TrampolineParams>();
        dst.write_volatile(TrampolineParams { cr3: TRAMPOLINE_PML4, ..params });
    }
}

/// The physical frame the trampoline runs from, if the firmware memory map declares its
/// window (code page and the three table pages after it) free RAM and no boot module lies
/// there; under UEFI low memory is free only where the map says so. The error says which
/// page is taken and by what.
pub fn trampoline_frame() -> Result<u64, LowWindowError> {
    let window = PhysRange { start: TRAMPOLINE_PHYS, end: TRAMPOLINE_PD + 0x1000 };
    check_low_window(crate::mm::firmware_memory_map(), crate::mm::boot_module_ranges(), window).map(|w| w.start)
}

/// SIPI vector for the trampoline (its physical page number).
pub fn sipi_page() -> u8 {
    (TRAMPOLINE_PHYS >> 12) as u8
}
