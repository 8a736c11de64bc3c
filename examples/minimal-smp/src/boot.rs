//! From the loader to Rust, for the boot CPU and for every application processor.
//!
//! QEMU's `-kernel` loads a Multiboot 1 image but not a 64-bit ELF, so the header carries the
//! load addresses itself (flag bit 16, the "a.out kludge") and names a 32-bit entry. The
//! loader leaves the boot CPU in 32-bit protected mode with paging off; `start32` maps the
//! first 4 GiB 1:1 with 2 MiB pages (the top GiB, where the LAPIC and IOAPIC live, uncached),
//! switches to long mode and calls `kmain`. The image runs where it is loaded, so no address
//! ever needs converting.
//!
//! An application processor starts in *real* mode at `vector << 12` after a start-up IPI.
//! The trampoline below is assembled into .rodata, copied to [`TRAMPOLINE_PHYS`] and walks
//! real → protected → long mode with the boot CPU's page tables, then calls the entry the
//! boot CPU left in its parameter block. The boot CPU starts one AP at a time, so one
//! parameter block (stack, CPU index) is enough.

use core::arch::global_asm;

/// Where the AP trampoline runs: a free page below 1 MiB (start-up IPI vector 0x08).
pub const TRAMPOLINE_PHYS: u64 = 0x8000;
const BOOT_STACK_SIZE: usize = 64 * 1024;
const AP_STACK_SIZE: usize = 16 * 1024;

global_asm!(
    r#"
.set MB_MAGIC, 0x1BADB002
.set MB_FLAGS, 0x00010000          /* bit 16: the address fields below are valid */

.section .multiboot, "a"
.balign 4
multiboot_header:
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)
    .long multiboot_header             /* header_addr */
    .long __image_start                /* load_addr */
    .long __load_end                   /* load_end_addr */
    .long __bss_end                    /* bss_end_addr: the loader zeroes .bss */
    .long start32                      /* entry_addr */

.section .text.boot, "ax"
.code32
.global start32
start32:
    cli
    cld
    movl $boot_stack_top, %esp
    /* 2048 directory entries of 2 MiB: 0..4 GiB, present | writable | large; from 3 GiB
     * up also PWT | PCD, so LAPIC and IOAPIC accesses are never cached. */
    movl $boot_pd, %ebx
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    cmpl $1536, %ecx
    jb 2f
    orl $0x18, %eax
2:  movl %eax, (%ebx, %ecx, 8)
    movl $0, 4(%ebx, %ecx, 8)
    incl %ecx
    cmpl $2048, %ecx
    jb 1b
    /* One PDPT naming the four directories, one PML4 naming the PDPT. */
    movl $boot_pdpt, %ebx
    movl $(boot_pd + 3), %eax
    xorl %ecx, %ecx
3:  movl %eax, (%ebx, %ecx, 8)
    addl $0x1000, %eax
    incl %ecx
    cmpl $4, %ecx
    jb 3b
    movl $(boot_pdpt + 3), boot_pml4

    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $(1 << 5), %eax                /* PAE */
    movl %eax, %cr4
    movl $0xC0000080, %ecx             /* IA32_EFER */
    rdmsr
    orl $(1 << 8), %eax                /* LME */
    wrmsr
    movl %cr0, %eax
    orl $((1 << 31) | 1), %eax         /* PG | PE */
    movl %eax, %cr0
    lgdt boot_gdt_ptr
    ljmp $0x08, $long_mode

.code64
long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    call kmain
4:  hlt
    jmp 4b

.section .rodata
.balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff           /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff           /* 0x10: data */
boot_gdt_ptr:
    .word boot_gdt_ptr - boot_gdt - 1
    .long boot_gdt

/* The AP trampoline: position-dependent on TRAMPOLINE_BASE, copied there before any SIPI. */
.set TRAMPOLINE_BASE, {trampoline}
.section .rodata.ap_trampoline, "a"
.balign 16
.global ap_trampoline_start
ap_trampoline_start:
.code16
    cli
    cld
    movw %cs, %ax                      /* CS = 0x0800: DS-relative offsets address the copy */
    movw %ax, %ds
    lgdtl (tr_gdt_ptr - ap_trampoline_start)
    movl %cr0, %eax
    orl $1, %eax                       /* PE */
    movl %eax, %cr0
    ljmpl $0x18, $(TRAMPOLINE_BASE + tr_32 - ap_trampoline_start)
.code32
tr_32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl $TRAMPOLINE_BASE, %ebx
    movl %cr4, %eax
    orl $(1 << 5), %eax                /* PAE */
    movl %eax, %cr4
    movl (tr_cr3 - ap_trampoline_start)(%ebx), %eax
    movl %eax, %cr3
    movl $0xC0000080, %ecx
    rdmsr
    orl $(1 << 8), %eax                /* LME */
    wrmsr
    movl %cr0, %eax
    orl $(1 << 31), %eax               /* PG */
    movl %eax, %cr0
    /* 0x08 is 64-bit code here as in the boot GDT, so the IDT's selector fits both. */
    ljmp $0x08, $(TRAMPOLINE_BASE + tr_64 - ap_trampoline_start)
.code64
tr_64:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl $TRAMPOLINE_BASE, %ebx
    movq (tr_stack - ap_trampoline_start)(%rbx), %rsp
    movq (tr_cpu - ap_trampoline_start)(%rbx), %rdi
    movq (tr_entry - ap_trampoline_start)(%rbx), %rax
    call *%rax
5:  cli
    hlt
    jmp 5b
.balign 8
tr_gdt:
    .quad 0
    .quad 0x00af9a000000ffff           /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff           /* 0x10: data */
    .quad 0x00cf9a000000ffff           /* 0x18: 32-bit code */
tr_gdt_ptr:
    .word tr_gdt_ptr - tr_gdt - 1
    .long TRAMPOLINE_BASE + tr_gdt - ap_trampoline_start
.balign 8
.global ap_trampoline_params
ap_trampoline_params:
tr_cr3:   .quad 0
tr_stack: .quad 0
tr_entry: .quad 0
tr_cpu:   .quad 0
.global ap_trampoline_end
ap_trampoline_end:

.section .bss
.balign 4096
.global boot_pml4
boot_pml4: .skip 4096
boot_pdpt: .skip 4096
boot_pd:   .skip 4096 * 4
.balign 16
    .skip {stack_size}
boot_stack_top:
.global ap_stacks
ap_stacks: .skip {ap_stack_size} * {max_cpus}
"#,
    trampoline = const TRAMPOLINE_PHYS,
    stack_size = const BOOT_STACK_SIZE,
    ap_stack_size = const AP_STACK_SIZE,
    max_cpus = const crate::cpu::MAX_CPUS,
    options(att_syntax)
);

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_params: u8;
    static ap_trampoline_end: u8;
    static boot_pml4: u8;
    static ap_stacks: u8;
}

/// The trampoline's parameter block, in the order the assembly reads it.
#[repr(C)]
pub struct TrampolineParams {
    /// Page tables to enable paging with (below 4 GiB: loaded from 32-bit code).
    pub cr3: u64,
    /// Top of the AP's stack (16-byte aligned).
    pub stack_top: u64,
    /// `extern "C" fn(cpu_index: u64) -> !`.
    pub entry: u64,
    /// Argument for `entry`.
    pub cpu_index: u64,
}

/// The boot page tables, shared by every CPU.
pub fn boot_page_tables() -> u64 {
    core::ptr::addr_of!(boot_pml4) as u64
}

/// The top of CPU `index`'s stack (16-byte aligned; index 0, the boot CPU, has its own).
pub fn ap_stack_top(index: usize) -> u64 {
    assert!(index < crate::cpu::MAX_CPUS);
    core::ptr::addr_of!(ap_stacks) as u64 + ((index + 1) * AP_STACK_SIZE) as u64
}

/// Copies the trampoline to [`TRAMPOLINE_PHYS`]; returns the start-up IPI vector.
pub fn install_trampoline() -> u8 {
    let start = core::ptr::addr_of!(ap_trampoline_start);
    let len = core::ptr::addr_of!(ap_trampoline_end) as usize - start as usize;
    assert!(len <= 0x1000, "AP trampoline larger than its page");
    // SAFETY: 0x8000..0x9000 is conventional memory below the image that nothing else uses
    // (QEMU's SeaBIOS leaves it free), identity-mapped and writable.
    unsafe { core::ptr::copy_nonoverlapping(start, TRAMPOLINE_PHYS as *mut u8, len) };
    (TRAMPOLINE_PHYS >> 12) as u8
}

/// Fills the parameter block for the next AP (no AP is between SIPI and its entry now).
pub fn set_trampoline_params(params: TrampolineParams) {
    let offset = core::ptr::addr_of!(ap_trampoline_params) as usize
        - core::ptr::addr_of!(ap_trampoline_start) as usize;
    let dst = (TRAMPOLINE_PHYS as usize + offset) as *mut TrampolineParams;
    // SAFETY: the block lies inside the copy made by `install_trampoline`, 8-byte aligned
    // (`.balign 8`); the only AP that reads it is woken after this write.
    unsafe { dst.write_volatile(params) };
}
