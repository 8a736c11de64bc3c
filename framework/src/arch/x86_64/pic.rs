//! The legacy 8259 PICs: remapped away from the exception vectors and fully masked, so only
//! the IOAPIC delivers device interrupts. (Masked PICs can still raise spurious IRQ7/15;
//! `trap_entry::trap_dispatch` counts those without an EOI.)

use x86_64::instructions::port::Port;

use super::trap_entry::PIC_VECTOR_BASE;

/// Remaps both PICs to `PIC_VECTOR_BASE..+16` and masks every line.
pub fn disable() {
    let mut m_cmd = Port::<u8>::new(0x20);
    let mut m_data = Port::<u8>::new(0x21);
    let mut s_cmd = Port::<u8>::new(0xA0);
    let mut s_data = Port::<u8>::new(0xA1);
    let mut wait = Port::<u8>::new(0x80);
    // SAFETY: the PIC ports belong to the kernel; the ICW sequence is the documented one.
    unsafe {
        let mut io_wait = || wait.write(0);
        m_cmd.write(0x11);
        io_wait(); // ICW1: init, ICW4 follows
        s_cmd.write(0x11);
        io_wait();
        m_data.write(PIC_VECTOR_BASE);
        io_wait(); // ICW2: vector base
        s_data.write(PIC_VECTOR_BASE + 8);
        io_wait();
        m_data.write(4);
        io_wait(); // ICW3: slave on IRQ2
        s_data.write(2);
        io_wait();
        m_data.write(1);
        io_wait(); // ICW4: 8086 mode
        s_data.write(1);
        io_wait();
        m_data.write(0xFF); // mask all
        s_data.write(0xFF);
    }
    log::info!("pic: 8259s remapped to {:#x} and masked", PIC_VECTOR_BASE);
}
