//! Every decode path that takes a user address, at the edges of user space (`E` =
//! [`USER_SPACE_END`] = 2^47): the last byte and page are accepted, a range a few bytes short
//! of `E` whose length crosses it is refused, so are ranges that wrap `u64`, start in the
//! non-canonical hole or the kernel half; zero length is accepted at `E` and refused past it.
//! The same cases run from ring 3 in `user/attack` `mode=bounds` (proof `hostile-bounds`).

use keel_abi::{
    decode, user_range, CapId, Method, Request, Status, Submission, CONSOLE_WRITE_MAX, PAGE_SIZE,
    USER_SPACE_END as E,
};

const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;

fn sub(method: Method, args: [u64; 4]) -> Submission {
    Submission { cap: CapId::new(3, 1).0, method: method.into(), flags: 0, args, user_data: 1 }
}

#[test]
fn user_range_edges() {
    assert_eq!(user_range(E - 1, 1), Ok(()), "the last byte");
    assert_eq!(user_range(E - PAGE_SIZE, PAGE_SIZE), Ok(()), "the last page");
    assert_eq!(user_range(E, 0), Ok(()), "zero length at the edge");
    for (ptr, len) in [
        (E - 1, 2), // one byte across
        (E - 3, 4), // a few bytes short, crossing
        (E - PAGE_SIZE, PAGE_SIZE + 1),
        (E, 1),                    // starts at the edge
        (E + 1, 0),                // zero length past the edge
        (u64::MAX, 1),             // wraps
        (u64::MAX - 7, 16),        // wraps
        (E - 8, u64::MAX - E + 9), // wraps exactly to 0
        (KERNEL_HALF, 8),
        (KERNEL_HALF - PAGE_SIZE, 2 * PAGE_SIZE), // from the hole into the kernel half
    ] {
        assert_eq!(user_range(ptr, len), Err(Status::BadAddress), "ptr {ptr:#x} len {len:#x}");
    }
}

#[test]
fn console_write_edges() {
    let w = |ptr, len| decode(&sub(Method::ConsoleWrite, [ptr, len, 0, 0]));
    assert_eq!(w(E - 1, 1), Ok(Request::ConsoleWrite { ptr: E - 1, len: 1 }));
    let last = E - CONSOLE_WRITE_MAX;
    assert_eq!(w(last, CONSOLE_WRITE_MAX), Ok(Request::ConsoleWrite { ptr: last, len: 4096 }));
    assert_eq!(w(E, 0), Ok(Request::ConsoleWrite { ptr: E, len: 0 }));
    for (ptr, len) in
        [(E - 1, 2), (E - 8, 16), (E, 1), (E + 1, 0), (u64::MAX - 7, 16), (KERNEL_HALF, 8)]
    {
        assert_eq!(w(ptr, len), Err(Status::BadAddress), "ptr {ptr:#x} len {len}");
    }
    // Longer than the limit is refused before the range is looked at.
    assert_eq!(w(u64::MAX, CONSOLE_WRITE_MAX + 1), Err(Status::BadArgument));
}

#[test]
fn vm_method_edges() {
    let top = !(PAGE_SIZE - 1);
    for m in [Method::VmMap, Method::VmUnmap, Method::VmProtect] {
        let third = u64::from(m != Method::VmUnmap);
        let call = |vaddr, pages| decode(&sub(m, [vaddr, pages, third, 0]));
        assert!(call(E - PAGE_SIZE, 1).is_ok(), "{m:?}: the last page");
        assert!(call(E - 2 * PAGE_SIZE, 2).is_ok(), "{m:?}: the last two pages");
        for (vaddr, pages) in [
            (E - PAGE_SIZE, 2),
            (E, 1),
            (KERNEL_HALF - PAGE_SIZE, 2),
            (top, 1),
            (top - PAGE_SIZE, 3),
            (KERNEL_HALF, 1),
        ] {
            assert_eq!(call(vaddr, pages), Err(Status::BadAddress), "{m:?} {vaddr:#x} x{pages}");
        }
    }
}

#[test]
fn spawn_thread_edges() {
    let spawn = |entry, stack| decode(&sub(Method::ProcessSpawnThread, [entry, stack, 0, 0]));
    assert!(spawn(E - 1, E - 16).is_ok(), "the last entry byte and the highest stack top");
    for (entry, stack) in [
        (E, 0x10000),
        (u64::MAX, 0x10000),
        (KERNEL_HALF, 0x10000),
        (0x1000, E),
        (0x1000, !15),
        (0x1000, KERNEL_HALF + 16),
    ] {
        assert_eq!(spawn(entry, stack), Err(Status::BadAddress), "{entry:#x} {stack:#x}");
    }
}

#[test]
fn device_memory_map_edges() {
    let map = |vaddr| decode(&sub(Method::DeviceMemoryMap, [vaddr, 0, 0, 0]));
    assert_eq!(map(E - PAGE_SIZE), Ok(Request::DeviceMemoryMap { vaddr: E - PAGE_SIZE }));
    for vaddr in [E, E + PAGE_SIZE, !(PAGE_SIZE - 1), KERNEL_HALF] {
        assert_eq!(map(vaddr), Err(Status::BadAddress), "{vaddr:#x}");
    }
}
