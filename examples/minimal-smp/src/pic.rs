//! The legacy 8259 PICs. Firmware leaves them running (SeaBIOS ticks on IRQ 0) with the
//! LAPIC in virtual-wire mode, so an interrupt may already be pending from them when the
//! kernel starts. They are remapped away from the exception vectors and fully masked before
//! the LAPIC is enabled; a masked PIC may still raise a spurious IRQ 7 / 15, which lands on
//! [`PIC_VECTOR_BASE`] + 7 / + 15 and is ignored (no EOI: it was never in service).

use x86_64::instructions::port::Port;

/// Where the PICs' 16 lines are remapped (32..47: just above the exceptions).
pub const PIC_VECTOR_BASE: u8 = 0x20;

/// Remaps both PICs to [`PIC_VECTOR_BASE`] and masks every line.
pub fn remap_and_mask() {
    let (mut master_cmd, mut master_data) = (Port::<u8>::new(0x20), Port::<u8>::new(0x21));
    let (mut slave_cmd, mut slave_data) = (Port::<u8>::new(0xA0), Port::<u8>::new(0xA1));
    // ICW1 (init, ICW4 follows), ICW2 (vector base), ICW3 (slave on IRQ 2), ICW4 (8086 mode),
    // then the mask. QEMU's PICs need no delay between the writes.
    let sequence = [(0x11, 0x11), (PIC_VECTOR_BASE, PIC_VECTOR_BASE + 8), (4, 2), (1, 1)];
    // SAFETY: the PIC ports belong to this code alone; this is the documented ICW sequence.
    unsafe {
        master_cmd.write(sequence[0].0);
        slave_cmd.write(sequence[0].1);
        for (master, slave) in &sequence[1..] {
            master_data.write(*master);
            slave_data.write(*slave);
        }
        master_data.write(0xFF);
        slave_data.write(0xFF);
    }
}
