//! Per-CPU GDT and TSS. Each CPU owns its TSS (the IST stacks for #DF, NMI and #MC, and later
//! the ring-0 stack for user entry), so each CPU also owns a GDT holding that TSS.
//!
//! Selector layout (fixed, `syscall`/`sysret` depend on it):
//! 0x08 kernel code, 0x10 kernel data, 0x18 user data, 0x20 user code, 0x28 TSS.

use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// IST slot (1-based in the IDT, 0-based in the TSS array) of each critical exception.
pub const IST_DOUBLE_FAULT: u16 = 1;
pub const IST_NMI: u16 = 2;
pub const IST_MACHINE_CHECK: u16 = 3;

/// Size of each IST stack.
pub const IST_STACK_SIZE: usize = 16 * 1024;

/// Kernel code selector.
pub const KERNEL_CODE: SegmentSelector = SegmentSelector(0x08);
/// Kernel data selector.
pub const KERNEL_DATA: SegmentSelector = SegmentSelector(0x10);
/// User data selector (RPL 3).
pub const USER_DATA: u16 = 0x18 | 3;
/// User code selector (RPL 3).
pub const USER_CODE: u16 = 0x20 | 3;

/// Bytes in the TSS I/O permission bitmap (65536 ports) plus the mandatory 0xFF terminator.
pub const IO_BITMAP_BYTES: usize = 8192 + 1;

/// One CPU's descriptor tables and emergency stacks. The I/O permission bitmap must follow the
/// TSS directly (the TSS limit covers both); a clear bit lets ring 3 use that port.
#[repr(C, align(16))]
pub struct CpuTables {
    pub tss: TaskStateSegment,
    pub io_bitmap: [u8; IO_BITMAP_BYTES],
    pub gdt: GlobalDescriptorTable,
    pub ist_stacks: [[u8; IST_STACK_SIZE]; 3],
    /// The I/O port ranges this CPU opened in `io_bitmap` (see `io_bitmap`).
    pub io_open: super::io_bitmap::OpenPorts,
}

impl CpuTables {
    /// An empty set, filled in by [`CpuTables::load`].
    pub const fn new() -> Self {
        CpuTables {
            tss: TaskStateSegment::new(),
            io_bitmap: [0xFF; IO_BITMAP_BYTES],
            gdt: GlobalDescriptorTable::new(),
            ist_stacks: [[0; IST_STACK_SIZE]; 3],
            io_open: super::io_bitmap::OpenPorts::new(),
        }
    }

    /// Builds the GDT/TSS in place and loads them on the calling CPU.
    pub fn load(&'static mut self) {
        for (slot, stack) in self.ist_stacks.iter().enumerate() {
            let top = VirtAddr::from_ptr(stack.as_ptr_range().end);
            self.tss.interrupt_stack_table[slot] = top;
        }
        self.io_bitmap = [0xFF; IO_BITMAP_BYTES];
        self.io_open = super::io_bitmap::OpenPorts::new();
        // SAFETY: `self` is 'static and per-CPU; the TSS and its bitmap are not loaded anywhere
        // else, and the bitmap directly follows the TSS (repr(C), checked by the crate).
        let (tss, iomap): (&'static TaskStateSegment, &'static [u8]) = unsafe {
            (&*(&self.tss as *const TaskStateSegment), &*(&self.io_bitmap[..] as *const [u8]))
        };
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let _user_data = gdt.append(Descriptor::user_data_segment());
        let _user_code = gdt.append(Descriptor::user_code_segment());
        let tss_descriptor =
            Descriptor::tss_segment_with_iomap(tss, iomap).expect("I/O bitmap follows the TSS");
        let tss_sel = gdt.append(tss_descriptor);
        debug_assert_eq!(code, KERNEL_CODE);
        debug_assert_eq!(data.0, KERNEL_DATA.0);
        self.gdt = gdt;
        // SAFETY: the GDT lives in this 'static per-CPU block and is never moved or rebuilt.
        let gdt: &'static GlobalDescriptorTable =
            unsafe { &*(&self.gdt as *const GlobalDescriptorTable) };
        gdt.load();
        // SAFETY: the selectors index the GDT just loaded; the TSS descriptor is fresh (not busy).
        unsafe {
            CS::set_reg(KERNEL_CODE);
            SS::set_reg(KERNEL_DATA);
            DS::set_reg(KERNEL_DATA);
            ES::set_reg(KERNEL_DATA);
            load_tss(tss_sel);
        }
    }
}

impl Default for CpuTables {
    fn default() -> Self {
        Self::new()
    }
}
