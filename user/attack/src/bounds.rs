//! `mode=bounds`: every system-call path that takes a user address, at the edges of user
//! space (`E` = 2^47, the first non-canonical address): the last byte, the last page, a few
//! bytes short of `E` with a length crossing it, zero length at `E` and past it, ranges
//! that wrap `u64`, and the kernel half. Each call's status goes out as evidence
//! (`ok` or the status name); the proof holds the expected values.
//!
//! The last page of user space is this image's top page; it is unmapped, mapped again
//! writable, filled and made read-only, so the accepted edge cases touch memory that exists.
//!
//! The `syscall`-emulation path reads the two bytes before a faulting jump's RCX from user
//! memory: with the kernel's `entry=int80` (no `syscall` ever entering ring 0), threads jump
//! to the kernel's `syscall` entry with RCX at the edges; each must be refused (the thread
//! dies of its page fault) and none emulated.

use core::sync::atomic::Ordering;

use keel_rt::abi::{Method, ObjectKind, Status, RING_VADDR, START_INFO_VADDR};
use keel_rt::util::cap;
use keel_rt::{ev, ring};

use crate::attacks::{
    cpus, jump_thread, map_stacks, spawn_at, stack_top, thread_start, wait_alone,
    KERNEL_SYSCALL_ENTRY, NON_CANONICAL, PAGE, RESUMED, STARTED,
};

/// The first non-canonical address: user space is `[0, E)`.
const E: u64 = NON_CANONICAL;
/// The last page of user space.
const LAST_PAGE: u64 = E - PAGE;
/// The first address of the kernel half.
const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;
/// Ends exactly at the last byte of user space (written there before it is read back).
const EDGE_TEXT: &[u8] = b"[bounds: the last bytes of user space]\n";

/// RCX values of the jumps into the `syscall` entry: one byte past `E`, `E + 2` (the read
/// starts at `E`), a few bytes short of the next page, past it, values whose `- 2` wraps
/// or lands in the kernel half.
const JUMP_RCX: [u64; 7] = [E + 1, E + 2, E + PAGE - 2, E + PAGE + 2, 1, u64::MAX, KERNEL_HALF + 2];

fn status_name(r: Result<u64, Status>) -> &'static str {
    r.err().map_or("ok", |s| s.name())
}

fn call(kind: ObjectKind, method: Method, args: [u64; 4]) -> &'static str {
    status_name(ring().expect("ring").call(cap(kind), method, args).map(|c| c.results[0]))
}

fn console(ptr: u64, len: u64) -> &'static str {
    call(ObjectKind::Console, Method::ConsoleWrite, [ptr, len, 0, 0])
}

fn vm(method: Method, vaddr: u64, pages: u64, writable: u64) -> &'static str {
    let third = if method == Method::VmUnmap { 0 } else { writable };
    call(ObjectKind::VirtualMemory, method, [vaddr, pages, third, 0])
}

/// `DeviceMemoryMap` of edu's BAR 0 (the kernel checks the whole rounded-up size): across
/// `E`, over the ring page (`RING_VADDR`, whose range ends exactly at `E`), at `E`, wrapping,
/// in the kernel half; accepted just below the start-info page.
fn device_memory_edges() {
    let size = ring()
        .expect("ring")
        .call(cap(ObjectKind::DeviceMemory), Method::DeviceMemoryInfo, [0; 4])
        .map_or(0, |c| c.results[0]);
    let span = size.div_ceil(PAGE) * PAGE;
    ev!("device_size", span);
    let map =
        |vaddr: u64| call(ObjectKind::DeviceMemory, Method::DeviceMemoryMap, [vaddr, 0, 0, 0]);
    ev!("device_map_cross", map(E - PAGE));
    ev!("device_map_over_ring", map(RING_VADDR));
    ev!("device_map_at_edge", map(E));
    ev!("device_map_wrap", map(!(PAGE - 1)));
    ev!("device_map_kernel_half", map(KERNEL_HALF));
    ev!("device_map_below_start_info", map(START_INFO_VADDR - span));
}

fn spawn(entry: u64, stack: u64) -> &'static str {
    call(ObjectKind::Process, Method::ProcessSpawnThread, [entry, stack, 0, 0])
}

pub fn bounds_attacks() -> u64 {
    use Method::{VmMap, VmProtect, VmUnmap};
    // The last page: unmap the image's top page, map a fresh writable one, protect it.
    ev!("vm_unmap_last_page", vm(VmUnmap, LAST_PAGE, 1, 0));
    ev!("vm_map_last_page", vm(VmMap, LAST_PAGE, 1, 1));
    let text_at = E - EDGE_TEXT.len() as u64;
    // SAFETY: the last page was just mapped writable in this process (a refused map leaves
    // it unmapped, and this thread's fault then ends the program: the proof fails).
    unsafe {
        core::ptr::copy_nonoverlapping(EDGE_TEXT.as_ptr(), text_at as *mut u8, EDGE_TEXT.len())
    };
    ev!("vm_protect_last_page", vm(VmProtect, LAST_PAGE, 1, 0));
    ev!("console_last_bytes", console(text_at, EDGE_TEXT.len() as u64));
    ev!("console_last_byte", console(E - 1, 1));
    ev!("console_cross_by_one", console(E - 1, 2));
    ev!("console_cross", console(E - 8, 16));
    ev!("console_zero_at_edge", console(E, 0));
    ev!("console_zero_past_edge", console(E + 1, 0));
    ev!("console_start_at_edge", console(E, 1));
    ev!("console_wrap", console(u64::MAX - 7, 16));
    ev!("console_kernel_half", console(KERNEL_HALF, 8));
    for (name, m) in [("vm_map", VmMap), ("vm_unmap", VmUnmap), ("vm_protect", VmProtect)] {
        let top = !(PAGE - 1);
        ev!(format_args!("{name}_cross"), vm(m, LAST_PAGE, 2, 1));
        ev!(format_args!("{name}_at_edge"), vm(m, E, 1, 1));
        ev!(format_args!("{name}_hole"), vm(m, KERNEL_HALF - PAGE, 2, 1));
        ev!(format_args!("{name}_wrap"), vm(m, top, 1, 1));
        ev!(format_args!("{name}_wrap_pages"), vm(m, top - PAGE, 3, 1));
        ev!(format_args!("{name}_kernel_half"), vm(m, KERNEL_HALF, 1, 1));
    }
    map_stacks(1);
    let entry = thread_start as *const () as u64;
    ev!("spawn_entry_at_edge", spawn(E, stack_top(0)));
    ev!("spawn_entry_wrap", spawn(u64::MAX, stack_top(0)));
    ev!("spawn_entry_kernel_half", spawn(KERNEL_HALF, stack_top(0)));
    ev!("spawn_stack_at_edge", spawn(entry, E));
    ev!("spawn_stack_wrap", spawn(entry, !15));
    ev!("spawn_stack_kernel_half", spawn(entry, KERNEL_HALF + 16));
    // The highest stack top: the thread runs on the last page (writable again) and ends at
    // once; it counts itself in `STARTED` first.
    ev!("vm_protect_last_page_writable", vm(VmProtect, LAST_PAGE, 1, 1));
    let started = STARTED.load(Ordering::Acquire);
    ev!("spawn_stack_last", spawn(entry, E - 16));
    ev!("spawn_stack_last_ended", if wait_alone() { "yes" } else { "no" });
    ev!("spawn_stack_last_ran", STARTED.load(Ordering::Acquire) - started);
    device_memory_edges();
    let mut ended = 0;
    for (i, &rcx) in JUMP_RCX.iter().enumerate() {
        if spawn_at(jump_thread as *const () as u64, 0, i as u64 % cpus(), rcx).is_ok()
            && wait_alone()
        {
            ended += 1;
        }
    }
    ev!("jump_target", format_args!("{KERNEL_SYSCALL_ENTRY:#x}"));
    ev!("jump_attempts", JUMP_RCX.len());
    ev!("jump_threads_ended", ended);
    ev!("jump_resumed", RESUMED.load(Ordering::Relaxed));
    ev!("survived", "yes");
    0
}
