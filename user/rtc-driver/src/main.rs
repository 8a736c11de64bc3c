//! A ring-3 driver for the CMOS RTC's periodic interrupt: ISA IRQ 8 (edge) through the
//! IOAPIC, taken with `Interrupt.wait`, the device programmed and acknowledged through ports
//! 0x70/0x71 that its `IoPorts` capability opens in the TSS I/O bitmap.
#![no_std]
#![no_main]

use keel_rt::abi::ObjectKind;
use keel_rt::util::{arg_u64, cap, check as r, inb, outb};
use keel_rt::{ev, println, ring};

keel_rt::entry!(main);

const CMOS_INDEX: u16 = 0x70;
const CMOS_DATA: u16 = 0x71;
/// Keeps NMIs enabled? No: bit 7 of the index disables NMI while a register is selected.
const NMI_OFF: u8 = 0x80;

fn cmos_read(reg: u8) -> u8 {
    outb(CMOS_INDEX, NMI_OFF | reg);
    inb(CMOS_DATA)
}

fn cmos_write(reg: u8, value: u8) {
    outb(CMOS_INDEX, NMI_OFF | reg);
    outb(CMOS_DATA, value);
}

fn main() -> u64 {
    let count = arg_u64("count", 64);
    let irq = cap(ObjectKind::Interrupt);
    let ports = cap(ObjectKind::IoPorts);
    let enabled = r(
        "IoPortsEnable",
        ring().expect("ring").call(ports, keel_rt::Method::IoPortsEnable, [0; 4]),
    );
    println!("ports {:#x}+{} enabled", enabled.results[0], enabled.results[1]);

    // 1024 Hz periodic interrupt.
    let a = cmos_read(0x0A);
    cmos_write(0x0A, (a & 0xF0) | 0x06);
    let b = cmos_read(0x0B);
    cmos_write(0x0B, b | 0x40);
    let _ = cmos_read(0x0C);
    r("arm", ring().expect("ring").interrupt_acknowledge(irq));

    let mut received = 0;
    let mut waits = 0;
    while received < count {
        let (n, _ts) = r("wait", ring().expect("ring").interrupt_wait(irq));
        let _ = cmos_read(0x0C); // acknowledges the RTC so it can interrupt again
        r("ack", ring().expect("ring").interrupt_acknowledge(irq));
        received += n;
        waits += 1;
    }
    let b = cmos_read(0x0B);
    cmos_write(0x0B, b & !0x40);
    let _ = cmos_read(0x0C);
    ev!("received", received);
    ev!("waits", waits);
    0
}
