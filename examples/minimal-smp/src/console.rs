//! COM1 output in the project's evidence format (`EV key=value`, one `VERDICT` last) and the
//! exit through QEMU's isa-debug-exit device.

use core::fmt::{self, Write};

use spin::Mutex;
use x86_64::instructions::port::Port;

/// isa-debug-exit at 0xf4: QEMU exits with status `(code << 1) | 1` (33 = pass, 35 = fail).
const DEBUG_EXIT_PORT: u16 = 0xf4;
const EXIT_PASS: u32 = 0x10;
const EXIT_FAIL: u32 = 0x11;

struct Com1;

impl Write for Com1 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut data = Port::<u8>::new(0x3f8);
        for b in s.bytes() {
            // SAFETY: COM1's data port; QEMU's UART needs no set-up to transmit.
            unsafe { data.write(b) };
        }
        Ok(())
    }
}

static COM1: Mutex<Com1> = Mutex::new(Com1);

pub fn print(args: fmt::Arguments) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let _ = COM1.lock().write_fmt(args);
    });
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// One evidence line.
#[macro_export]
macro_rules! ev {
    ($key:expr, $value:expr) => {
        $crate::println!("EV {}={}", $key, $value)
    };
}

/// Prints the verdict and leaves QEMU.
pub fn finish(pass: bool, reason: &str) -> ! {
    if pass {
        println!("VERDICT pass");
    } else {
        println!("VERDICT fail {reason}");
    }
    // SAFETY: isa-debug-exit ends the virtual machine; nothing runs after this write.
    unsafe { Port::<u32>::new(DEBUG_EXIT_PORT).write(if pass { EXIT_PASS } else { EXIT_FAIL }) };
    loop {
        x86_64::instructions::hlt();
    }
}
