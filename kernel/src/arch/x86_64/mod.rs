//! x86_64: boot, CPU features, descriptor tables, interrupts, local APIC, IOAPIC, SMP.
pub mod ap_start;
pub mod boot;
pub mod context;
pub mod cpu;
pub mod gdt;
pub mod interrupts;
pub mod irq_guard;
pub mod iommu;
pub mod ioapic;
pub mod lapic;
pub mod percpu;
pub mod pic;
pub mod smp;
pub mod syscall;
pub mod tlb;
pub mod trampoline;
pub mod usercopy;
