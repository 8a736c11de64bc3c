//! COM1 (16550 UART) console: the `log` backend, `print!`/`println!`, and `ev!` for
//! machine-readable evidence lines (`EV key=value`, see docs/proofs.md).
//!
//! One lock serialises whole lines from all CPUs; an [`IrqSafeMutex`], so an
//! interrupt handler that logs cannot deadlock against the code it interrupted. A panicking
//! CPU that stopped the others with NMI may break the lock (`force_unlock_for_panic`).

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use x86_64::instructions::port::Port;

use crate::sync::IrqSafeMutex;

const COM1: u16 = 0x3f8;

/// The 16550 registers Keel uses (offsets from the base port).
struct Uart {
    base: u16,
}

impl Uart {
    fn port(&self, offset: u16) -> Port<u8> {
        Port::new(self.base + offset)
    }

    fn init(&mut self) {
        // SAFETY: COM1's I/O ports belong to the UART; programming them has no memory effects.
        unsafe {
            self.port(1).write(0x00); // interrupts off
            self.port(3).write(0x80); // DLAB on
            self.port(0).write(0x01); // divisor 1: 115200 baud
            self.port(1).write(0x00);
            self.port(3).write(0x03); // 8N1, DLAB off
            self.port(2).write(0xC7); // FIFO on, cleared, 14-byte threshold
            self.port(4).write(0x03); // DTR | RTS
        }
    }

    fn write_byte(&mut self, byte: u8) {
        // SAFETY: as in `init`; the line-status read has no side effects we rely on.
        unsafe {
            let mut spins = 0u32;
            while self.port(5).read() & 0x20 == 0 && spins < 100_000 {
                spins += 1;
                core::hint::spin_loop();
            }
            self.port(0).write(byte);
        }
    }
}

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(b);
        }
        Ok(())
    }
}

static UART: IrqSafeMutex<Uart> = IrqSafeMutex::new(Uart { base: COM1 });
static PANIC_OWNS_CONSOLE: AtomicBool = AtomicBool::new(false);

/// Initialises COM1 and installs the `log` backend.
pub fn init() {
    UART.lock().init();
    log::set_logger(&LOGGER).ok();
    log::set_max_level(log::LevelFilter::Info);
}

/// Writes formatted text as one unit (no interleaving with other CPUs).
pub fn write_fmt(args: fmt::Arguments) {
    {
        let _ = UART.lock().write_fmt(args);
    }
}

/// Called by the panic path after the other CPUs were stopped: a CPU halted while holding the
/// console lock must not keep the panic report from printing.
pub fn force_unlock_for_panic() {
    if !PANIC_OWNS_CONSOLE.swap(true, Ordering::SeqCst) {
        for _ in 0..1_000_000 {
            if !UART.is_locked() {
                return;
            }
            core::hint::spin_loop();
        }
        // SAFETY: every other CPU is stopped (NMI) or hung; nobody will release the lock, and
        // the UART state is a plain port base that stays valid mid-line.
        unsafe { UART.force_unlock() };
    }
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Prints one evidence line: `ev!("lapic.mode", "x2apic")` → `EV lapic.mode=x2apic`.
/// The key may be formatted: `ev!(("cpu.{}.apic_id", i), id)`.
#[macro_export]
macro_rules! ev {
    (($($key:tt)*), $value:expr) => {
        $crate::console::write_fmt(format_args!("EV {}={}\n", format_args!($($key)*), $value))
    };
    ($key:expr, $value:expr) => {
        $crate::console::write_fmt(format_args!("EV {}={}\n", $key, $value))
    };
}

struct Logger;
static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let cpu = crate::arch::x86_64::percpu::current_index_or_boot();
            write_fmt(format_args!("[cpu{} {:5}] {}\n", cpu, record.level(), record.args()));
        }
    }

    fn flush(&self) {}
}
