//! Multiboot 1 and 2 entry: the 32-bit protected-mode code the loader jumps to, the boot
//! page tables, and the switch into 64-bit long mode in the higher half.
//!
//! The image carries both headers: Multiboot 1 for QEMU `-kernel`, Multiboot 2 for GRUB
//! (BIOS and UEFI). Both use the load-address fields (a.out kludge / address tag) and name
//! the same 32-bit entry, so the ELF's 64-bit virtual entry point is never used. Either
//! loader leaves us in 32-bit protected mode with paging off, EAX = its magic and EBX = the
//! physical address of its information; GRUB on UEFI has exited boot services by then (the
//! header asks for nothing that keeps them), so the kernel needs no firmware services. The kernel is linked at
//! `KERNEL_VMA + 1 MiB` but runs at 1 MiB here, so every address below is converted to its
//! physical value (`symbol - KERNEL_VMA`) until paging is on.
//!
//! Boot page tables (all 2 MiB pages, replaced by `mm::paging` once Rust runs):
//! * identity 0..1 GiB (so the instruction after `mov cr0` still runs),
//! * `KERNEL_VMA` + 0..1 GiB (the kernel image),
//! * `PHYS_OFFSET` + 0..4 GiB (the physical map, which the early Rust code uses to read the
//!   Multiboot info, ACPI tables and to build the real page tables).

use core::arch::global_asm;

/// Stack size of the boot CPU's first stack (lives in .bss).
pub const BOOT_STACK_SIZE: usize = 64 * 1024;

global_asm!(
    r#"
.set KERNEL_VMA, 0xffffffff80000000
.set MB_MAGIC, 0x1BADB002
/* bit 0: page-aligned modules, bit 1: memory map, bit 16: a.out-kludge address fields */
.set MB_FLAGS, 0x00010003

.section .multiboot, "a"
.balign 4
multiboot_header:
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)
    .long multiboot_header - KERNEL_VMA   /* header_addr */
    .long __kernel_start_phys              /* load_addr */
    .long __load_end_phys                  /* load_end_addr: end of file-backed bytes */
    .long __bss_end_phys                   /* bss_end_addr: loader zeroes up to here */
    .long __start32_phys                   /* entry_addr */

/* Multiboot 2 header (8-byte aligned, within the first 32 KiB of the file). */
.set MB2_MAGIC, 0xE85250D6
.set MB2_ARCH_I386, 0
.balign 8
multiboot2_header:
    .long MB2_MAGIC
    .long MB2_ARCH_I386
    .long multiboot2_header_end - multiboot2_header
    .long -(MB2_MAGIC + MB2_ARCH_I386 + (multiboot2_header_end - multiboot2_header))
    /* address tag (type 2): load the file's bytes at their physical addresses */
    .balign 8
    .word 2, 0
    .long 24
    .long multiboot2_header - KERNEL_VMA  /* header_addr */
    .long __kernel_start_phys              /* load_addr */
    .long __load_end_phys                  /* load_end_addr */
    .long __bss_end_phys                   /* bss_end_addr */
    /* entry address tag (type 3): the i386 entry, also used by GRUB on UEFI */
    .balign 8
    .word 3, 0
    .long 12
    .long __start32_phys
    /* end tag */
    .balign 8
    .word 0, 0
    .long 8
multiboot2_header_end:

.section .boot.text, "ax"
.code32
.global _start32
_start32:
    cli
    cld
    movl %eax, %edi                 /* Multiboot magic (kept across cpuid) */
    movl %ebx, %esi                 /* Multiboot info physical address */
    movl $(boot_stack_top - KERNEL_VMA), %esp

    /* Zero .bss ourselves: the page tables and this stack live there (so nothing may be
     * kept on the stack across this loop). */
    movl $__bss_start_phys, %ebx
7:  cmpl $__bss_end_phys, %ebx
    jae 8f
    movl $0, (%ebx)
    addl $4, %ebx
    jmp 7b
8:

    /* Long mode available? */
    movl $0x80000000, %eax
    cpuid
    cmpl $0x80000001, %eax
    jb no_long_mode
    movl $0x80000001, %eax
    cpuid
    testl $(1 << 29), %edx
    jz no_long_mode
    movl %edx, %ebp                 /* remember NX (bit 20) */

    /* Physical-map page directories: 2048 x 2 MiB = 0..4 GiB. */
    movl $(boot_pd_phys - KERNEL_VMA), %ebx
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax                 /* present | writable | 2 MiB page */
    movl %eax, (%ebx, %ecx, 8)
    movl $0, 4(%ebx, %ecx, 8)
    incl %ecx
    cmpl $2048, %ecx
    jb 1b

    /* PDPT for the physical map: four directories. */
    movl $(boot_pdpt_phys - KERNEL_VMA), %ebx
    movl $(boot_pd_phys - KERNEL_VMA + 0x0003), %eax
    movl %eax, 0(%ebx)
    addl $0x1000, %eax
    movl %eax, 8(%ebx)
    addl $0x1000, %eax
    movl %eax, 16(%ebx)
    addl $0x1000, %eax
    movl %eax, 24(%ebx)

    /* Identity 0..1 GiB and KERNEL_VMA + 0..1 GiB share the first directory. */
    movl $(boot_pd_phys - KERNEL_VMA + 0x0003), %eax
    movl %eax, (boot_pdpt_low - KERNEL_VMA)
    movl %eax, (boot_pdpt_high - KERNEL_VMA + 510 * 8)

    movl $(boot_pml4 - KERNEL_VMA), %ebx
    movl $(boot_pdpt_low - KERNEL_VMA + 0x0003), %eax
    movl %eax, 0(%ebx)                       /* PML4[0]: identity */
    movl $(boot_pdpt_phys - KERNEL_VMA + 0x0003), %eax
    movl %eax, (256 * 8)(%ebx)               /* PML4[256]: physical map */
    movl $(boot_pdpt_high - KERNEL_VMA + 0x0003), %eax
    movl %eax, (511 * 8)(%ebx)               /* PML4[511]: kernel image */

    movl %ebx, %cr3
    movl %cr4, %eax
    orl $((1 << 5) | (1 << 7)), %eax         /* PAE | PGE */
    movl %eax, %cr4

    movl $0xC0000080, %ecx                   /* IA32_EFER */
    rdmsr
    orl $(1 << 8), %eax                      /* LME */
    testl $(1 << 20), %ebp
    jz 2f
    orl $(1 << 11), %eax                     /* NXE when the CPU has NX */
2:  wrmsr

    movl %cr0, %eax
    orl $((1 << 31) | (1 << 16) | 1), %eax   /* PG | WP | PE */
    movl %eax, %cr0

    lgdt (boot_gdt_ptr - KERNEL_VMA)
    ljmp $0x08, $(long_mode_low - KERNEL_VMA)

no_long_mode:
    movl $(no_long_mode_msg - KERNEL_VMA), %esi
3:  lodsb
    testb %al, %al
    jz 4f
    movw $0x3f8, %dx
    outb %al, %dx
    jmp 3b
4:  movb $0x13, %al                          /* fatal: isa-debug-exit */
    outb %al, $0xf4
5:  hlt
    jmp 5b

.code64
long_mode_low:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movabsq $long_mode_high, %rax
    jmp *%rax

.section .text
long_mode_high:
    movabsq $boot_stack_top, %rsp
    xorl %ebp, %ebp
    /* edi = magic, esi = info physical address: the SysV arguments of kernel_entry. */
    call kernel_entry
6:  hlt
    jmp 6b

.section .rodata
.balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff                 /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff                 /* 0x10: data */
boot_gdt_end:
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt - KERNEL_VMA
no_long_mode_msg:
    .asciz "keel: this CPU has no long mode\n"

.section .bss
.balign 4096
.global boot_pml4
boot_pml4:      .skip 4096
boot_pdpt_low:  .skip 4096
boot_pdpt_high: .skip 4096
boot_pdpt_phys: .skip 4096
boot_pd_phys:   .skip 4096 * 4
.balign 16
boot_stack_bottom:
    .skip {stack_size}
.global boot_stack_top
boot_stack_top:
"#,
    stack_size = const BOOT_STACK_SIZE,
    options(att_syntax)
);
