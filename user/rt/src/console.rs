//! `print!`/`println!`/`ev!` through the first Console capability in the start info.

use core::fmt::{self, Write};

use keel_abi::{CapId, ObjectKind};

use crate::ring::{Ring, RingGuard};
use crate::start_info;

/// Bytes formatted before a `ConsoleWrite` is issued; one `println!` shorter than this is a
/// single write, so the kernel sees whole `EV` lines.
const LINE_BUFFER: usize = 512;

/// The first Console capability granted at start, if any.
pub fn console_cap() -> Option<CapId> {
    start_info().find_cap(ObjectKind::Console, 0).map(|c| c.id)
}

/// Formats into a stack buffer and flushes it to the console when full and at the end.
struct ConsoleWriter<'a> {
    ring: &'a mut Ring,
    cap: CapId,
    buf: [u8; LINE_BUFFER],
    len: usize,
}

impl ConsoleWriter<'_> {
    fn flush(&mut self) -> fmt::Result {
        let n = core::mem::take(&mut self.len);
        self.ring.console_write(self.cap, &self.buf[..n]).map(|_| ()).map_err(|_| fmt::Error)
    }
}

impl Write for ConsoleWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut bytes = s.as_bytes();
        while !bytes.is_empty() {
            if self.len == LINE_BUFFER {
                self.flush()?;
            }
            let n = bytes.len().min(LINE_BUFFER - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
        Ok(())
    }
}

/// Writes formatted text using an already held ring; errors (no console, console write
/// refused) are reported, not panicked on.
pub(crate) fn write_fmt_with(ring: &mut RingGuard, args: fmt::Arguments<'_>) -> fmt::Result {
    let cap = console_cap().ok_or(fmt::Error)?;
    let mut w = ConsoleWriter { ring, cap, buf: [0; LINE_BUFFER], len: 0 };
    w.write_fmt(args)?;
    w.flush()
}

/// Implementation of [`crate::print!`]: output is dropped silently if the process has no
/// Console capability or the ring is in use further up the stack (printing must never
/// be the reason a program fails).
#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    if let Some(mut ring) = crate::ring() {
        let _ = write_fmt_with(&mut ring, args);
    }
}

/// Prints to the console capability (no newline).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(::core::format_args!($($arg)*)) };
}

/// Prints a line to the console capability.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::_print(::core::format_args!("{}\n", ::core::format_args!($($arg)*))) };
}

/// Prints an evidence line `EV key=value`; the kernel prefixes `key` with the program name,
/// so `ev!("ticks", 3)` in program `timer` appears as `EV user.timer.ticks=3`. Keys follow
/// `docs/proofs.md` (`[a-z0-9_.]+`), values are one token.
#[macro_export]
macro_rules! ev {
    ($key:expr, $value:expr) => {
        $crate::println!("EV {}={}", $key, $value)
    };
}
