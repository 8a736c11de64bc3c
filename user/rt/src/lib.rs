//! Keel user-space runtime.
//!
//! Everything a static Keel program needs to talk to the kernel: the two system calls
//! ([`cap_enter`], [`exit`]), a safe [`Ring`] over the shared submission/completion page,
//! the read-only [`start_info`], console printing ([`print!`], [`println!`], [`ev!`]) and
//! the [`entry!`] macro that supplies `_start` and the panic handler.
//!
//! # Building a program
//!
//! A program is a `#![no_std]`, `#![no_main]` binary crate depending on `keel-rt`, built for
//! `x86_64-unknown-none` as a static, non-PIE executable (the kernel's ELF loader refuses
//! `ET_DYN`):
//!
//! ```text
//! RUSTFLAGS="-C relocation-model=static" \
//!     cargo build -p my-prog --target x86_64-unknown-none --release
//! ```
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! use keel_rt::{ev, println};
//!
//! keel_rt::entry!(main);
//!
//! fn main() -> u64 {
//!     println!("hello from {}", keel_rt::start_info().program_name());
//!     ev!("hello", "yes");
//!     0 // exit code
//! }
//! ```
//!
//! # How the kernel starts it
//!
//! The kernel maps the ELF segments, a 64 KiB stack below [`keel_abi::USER_STACK_TOP`], the
//! ring page at [`keel_abi::RING_VADDR`] and the start-info page at
//! [`keel_abi::START_INFO_VADDR`], then enters `_start` in ring 3 with
//! `rsp = USER_STACK_TOP` (16-byte aligned, no return address), `rdi = RING_VADDR` and
//! `rsi = START_INFO_VADDR`. The `_start` from [`entry!`] clears `rbp`, `call`s into Rust
//! (which restores the SysV "rsp + 8 is 16-aligned" entry condition), runs `main` and passes
//! its return value to [`exit`]. A panic prints `panic: <message> at <file:line>` through the
//! console and exits with [`PANIC_EXIT_CODE`].
//!
//! Programs are single-threaded; the runtime keeps the one [`Ring`] behind [`ring()`], which
//! hands out exclusive access and returns `None` on re-entrant use instead of aliasing.
#![no_std]

pub mod console;
mod ring;
mod syscall;
pub mod util;

pub use keel_abi as abi;
pub use keel_abi::{CapId, Completion, Method, ObjectKind, Request, StartInfo, Status, Submission};
pub use ring::{ring, Ring, RingGuard, CALL_USER_DATA_TAG, STASH_ENTRIES};
pub use syscall::{cap_enter, exit};

/// Exit code of a process that panicked.
pub const PANIC_EXIT_CODE: u64 = 101;

/// The start-info page the kernel mapped for this process.
pub fn start_info() -> &'static StartInfo {
    // SAFETY: the kernel maps a read-only, initialised StartInfo at START_INFO_VADDR for
    // the whole life of every process and never changes it.
    unsafe { &*(keel_abi::START_INFO_VADDR as *const StartInfo) }
}

/// Body of the panic handler [`entry!`] installs: prints the message and location through
/// the console, then exits with [`PANIC_EXIT_CODE`].
pub fn panic_exit(info: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: we exit below and never return to code that might hold a ring guard.
    let mut ring = unsafe { ring::steal_ring() };
    let _ = match info.location() {
        Some(loc) => console::write_fmt_with(
            &mut ring,
            format_args!("panic: {} at {}:{}\n", info.message(), loc.file(), loc.line()),
        ),
        None => console::write_fmt_with(&mut ring, format_args!("panic: {}\n", info.message())),
    };
    exit(PANIC_EXIT_CODE)
}

/// Defines `extern "C" fn $entry() -> !`, where a thread the program creates starts: the
/// kernel enters with rsp 16-byte aligned, rdi = the thread's ring page and rdx = its
/// argument; it calls `$body(ring_page, argument)`, which never returns. A macro because the
/// naked entry must name the program's own body.
#[macro_export]
macro_rules! thread_entry {
    ($vis:vis fn $entry:ident => $body:path) => {
        #[unsafe(naked)]
        $vis extern "C" fn $entry() -> ! {
            ::core::arch::naked_asm!(
                "xor ebp, ebp",
                "mov rsi, rdx",
                "call {body}",
                "ud2",
                body = sym $body,
            )
        }
    };
}

/// Defines the program's `_start` (calling `$main: fn() -> u64`, then [`exit`] with its
/// result) and its `#[panic_handler]`. A macro because both must live in the final binary
/// crate. `_start` is naked so it can fix the stack alignment the kernel's entry leaves.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// Process entry point (see `keel_rt` docs): realign the stack, run `main`, exit.
        #[unsafe(naked)]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn _start() -> ! {
            ::core::arch::naked_asm!(
                "xor ebp, ebp",
                "call {body}",
                "ud2",
                body = sym __keel_rt_start,
            )
        }

        extern "C" fn __keel_rt_start() -> ! {
            let main: fn() -> u64 = $main;
            $crate::exit(main())
        }

        #[panic_handler]
        fn __keel_rt_panic(info: &::core::panic::PanicInfo<'_>) -> ! {
            $crate::panic_exit(info)
        }
    };
}
