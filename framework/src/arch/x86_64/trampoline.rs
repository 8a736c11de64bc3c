//! The application-processor start-up trampoline: real mode → protected mode → long mode.
//!
//! A SIPI with vector `v` starts the AP in real mode at `CS:IP = (v << 8):0000`, i.e. at
//! physical `v << 12`. This code is assembled into .rodata, copied to [`TRAMPOLINE_PHYS`]
//! once, and finds its parameters (CR3, NX, entry, slot lookup) in a block at its end that
//! the boot CPU fills in before any SIPI. The CR3 it loads is a small "trampoline PML4": the
//! kernel half of the kernel PML4 plus an identity map of the first 2 MiB, so the instruction
//! after enabling paging still runs; the AP switches to the real kernel tables in Rust.
//!
//! Many APs may run it at once: nothing in it is per-AP. Up to long mode it needs no stack;
//! then each AP reads its APIC ID with CPUID, takes the lookup lock of the bucket the ID's
//! low bits select, calls the lookup (Rust, on that bucket's stack) which finds the AP's own
//! start slot by its APIC ID and claims it, moves to the stack the slot names, releases the
//! lock and enters the kernel with the slot as argument. An AP whose slot is missing or was
//! abandoned gets a zero stack, releases the lock and parks (`cli; hlt`).

use core::arch::global_asm;

use keel_boot::lowmem::{check_low_window, LowWindowError};
use keel_boot::memory::PhysRange;

use crate::mm::{paging, phys_to_virt};

/// Physical address of the trampoline code (SIPI vector 0x08).
pub const TRAMPOLINE_PHYS: u64 = 0x8000;
/// Trampoline page tables, right after it (all below 1 MiB, reserved from the allocator).
const TRAMPOLINE_PML4: u64 = 0x9000;
const TRAMPOLINE_PDPT: u64 = 0xA000;
const TRAMPOLINE_PD: u64 = 0xB000;

global_asm!(
    r#"
.set TRAMPOLINE_BASE, 0x8000
.set LOOKUP_BUCKETS, {buckets}
.set LOOKUP_STACK_SHIFT, {stack_shift}
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
    /* This CPU's APIC ID (CPUID leaf 0BH's x2APIC ID, else leaf 1's 8-bit ID) picks one of
     * LOOKUP_BUCKETS locks and lookup stacks, so APs only wait for APs in their bucket. */
    xorl %eax, %eax
    cpuid
    cmpl $0x0b, %eax
    jb 7f
    movl $0x0b, %eax
    xorl %ecx, %ecx
    cpuid
    testw %bx, %bx
    jz 7f
    movl %edx, %esi
    jmp 8f
7:  movl $1, %eax
    cpuid
    movl %ebx, %esi
    shrl $24, %esi
8:  andl $(LOOKUP_BUCKETS - 1), %esi
    movl $TRAMPOLINE_BASE, %ebx
    leaq (tr_locks - ap_trampoline_start)(%rbx,%rsi,4), %rdi
1:  movl $1, %eax
    xchgl %eax, (%rdi)
    testl %eax, %eax
    jz 2f
    pause
    jmp 1b
2:  movq %rsi, %rax
    shlq $LOOKUP_STACK_SHIFT, %rax
    addq (tr_lookup_stacks - ap_trampoline_start)(%rbx), %rax
    leaq (1 << LOOKUP_STACK_SHIFT)(%rax), %rsp /* top of this bucket's stack */
    pushq %rdi                                 /* the lock, kept across the call ... */
    pushq %rdi                                 /* ... twice: RSP stays 16-byte aligned */
    xorl %ebp, %ebp
    movq (tr_lookup - ap_trampoline_start)(%rbx), %rax
    call *%rax                                 /* rax = own stack top (0: park), rdx = slot */
    popq %rdi
    popq %rdi
    movl $TRAMPOLINE_BASE, %ebx
    testq %rax, %rax
    jz 3f
    movq %rax, %rsp                            /* off the bucket's stack ... */
    movl $0, (%rdi)                            /* ... so the next AP may use it */
    movq %rdx, %rdi
    movq (tr_entry - ap_trampoline_start)(%rbx), %rax
    pushq $0                                   /* as after a call: no return address */
    jmp *%rax
3:  movl $0, (%rdi)
4:  cli
    hlt
    jmp 4b

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
tr_cr3:          .quad 0
tr_nx:           .quad 0
tr_entry:        .quad 0
tr_lookup:        .quad 0
tr_lookup_stacks: .quad 0
tr_locks:         .fill LOOKUP_BUCKETS, 4, 0
.global ap_trampoline_end
ap_trampoline_end:
"#,
    buckets = const LOOKUP_BUCKETS,
    stack_shift = const LOOKUP_STACK_SHIFT,
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
    /// `extern "C" fn(slot) -> !`, entered on the AP's own stack.
    pub entry: u64,
    /// `extern "C" fn() -> SlotGrant` (stack top in RAX, slot in RDX), run under a bucket lock.
    pub lookup: u64,
    /// Base of [`LOOKUP_BUCKETS`] stacks of `1 << LOOKUP_STACK_SHIFT` bytes each.
    pub lookup_stacks: u64,
}

/// Lookup locks and stacks: an AP uses the pair its APIC ID's low bits select, so only APs
/// whose IDs agree in those bits ever wait for each other (on a dense machine, one AP in
/// 64), and no AP spins while a descheduled one holds the single lock everyone needs.
pub const LOOKUP_BUCKETS: usize = 64;
/// Each lookup stack is 2 KiB (the lookup is a CPUID, a binary search and a compare-exchange).
pub const LOOKUP_STACK_SHIFT: usize = 11;

/// Copies the trampoline below 1 MiB and builds its page tables. Called once on the boot CPU
/// after the kernel tables exist (the kernel half is shared, so later kernel mappings show up
/// in the trampoline tables too).
pub fn install() {
    // Linker symbols bounding the assembled trampoline; only their addresses are used.
    let (start, end) =
        (core::ptr::addr_of!(ap_trampoline_start), core::ptr::addr_of!(ap_trampoline_end));
    let len = end as usize - start as usize;
    assert!(len <= 0x1000, "AP trampoline larger than its page");
    // SAFETY: 0x8000..0xC000 is reserved low memory owned by the SMP code, mapped in the
    // physical map; no other code uses it.
    unsafe {
        core::ptr::copy_nonoverlapping(
            start,
            phys_to_virt(TRAMPOLINE_PHYS).as_mut_ptr::<u8>(),
            len,
        );
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

/// Fills the parameter block once, before the first SIPI (APs find everything per-AP
/// through the lookup, so it never changes while APs run).
pub fn set_params(params: TrampolineParams) {
    // SAFETY: as in `install`; the block lies inside the copied trampoline and no AP has been
    // sent a SIPI yet, so none reads it while the boot CPU writes it.
    unsafe {
        let offset = core::ptr::addr_of!(ap_trampoline_params) as usize
            - core::ptr::addr_of!(ap_trampoline_start) as usize;
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
    check_low_window(crate::mm::firmware_memory_map(), crate::mm::boot_module_ranges(), window)
        .map(|w| w.start)
}

/// SIPI vector for the trampoline (its physical page number).
pub fn sipi_page() -> u8 {
    (TRAMPOLINE_PHYS >> 12) as u8
}
