//! The boundary of every address and size rule `decode` enforces for thread creation and
//! the virtual-memory methods: the last accepted value and the first refused one.

use keel_abi::{
    decode, CapId, Method, Request, Status, Submission, MAX_VM_PAGES, PAGE_SIZE, USER_SPACE_END,
};

fn sub(method: Method, args: [u64; 4]) -> Submission {
    Submission { cap: CapId::new(3, 1).0, method: method.into(), flags: 0, args, user_data: 9 }
}

#[test]
fn method_numbers_are_the_wire_values() {
    assert_eq!(u16::from(Method::ConsoleWrite), 0x0101);
    assert_eq!(u16::from(Method::VmProtect), 0x0703);
}

#[test]
fn spawn_thread_checks_each_address_on_its_own() {
    let ok = |entry, stack| decode(&sub(Method::ProcessSpawnThread, [entry, stack, 5, 1]));
    assert_eq!(
        ok(0x1000, 0x10000),
        Ok(Request::ProcessSpawnThread { entry: 0x1000, stack_top: 0x10000, arg: 5, cpu: 1 })
    );
    assert!(
        ok(USER_SPACE_END - 1, USER_SPACE_END - 16).is_ok(),
        "the last entry and the highest stack top"
    );
    for (entry, stack) in [
        (0, 0x10000),                  // no entry
        (USER_SPACE_END, 0x10000),     // entry outside user space
        (0x1000, 0),                   // no stack
        (0x1000, USER_SPACE_END),      // stack top not canonical
        (0x1000, USER_SPACE_END + 16), // stack above user space
        (0x1000, 0x10008),             // stack not 16-byte aligned
    ] {
        assert_eq!(ok(entry, stack), Err(Status::BadAddress), "entry {entry:#x} stack {stack:#x}");
    }
}

#[test]
fn vm_methods_check_count_alignment_and_range() {
    let top = USER_SPACE_END - PAGE_SIZE;
    for m in [Method::VmMap, Method::VmUnmap, Method::VmProtect] {
        // VmUnmap reads two words; the third (writable) must then be 0.
        let writable = u64::from(m != Method::VmUnmap);
        let call = |vaddr, pages| decode(&sub(m, [vaddr, pages, writable, 0]));
        assert!(call(0x4000_0000, MAX_VM_PAGES).is_ok(), "{m:?}: the largest count");
        assert_eq!(call(0x4000_0000, MAX_VM_PAGES + 1), Err(Status::BadArgument), "{m:?}");
        assert_eq!(call(0x4000_0000, 0), Err(Status::BadArgument), "{m:?}");
        assert_eq!(call(0, 1), Err(Status::BadAddress), "{m:?}: page 0");
        assert_eq!(call(0x4000_0010, 1), Err(Status::BadAddress), "{m:?}: unaligned");
        assert!(call(top, 1).is_ok(), "{m:?}: the last user page");
        assert_eq!(call(top, 2), Err(Status::BadAddress), "{m:?}: runs past user space");
    }
}

#[test]
fn writable_is_zero_or_one() {
    let call = |m, w| decode(&sub(m, [0x4000_0000, 1, w, 0]));
    assert_eq!(call(Method::VmUnmap, 0), Ok(Request::VmUnmap { vaddr: 0x4000_0000, pages: 1 }));
    assert_eq!(call(Method::VmUnmap, 1), Err(Status::BadArgument), "unmap reads two words");
    assert_eq!(call(Method::VmMap, 7), Err(Status::BadArgument));
    assert_eq!(
        call(Method::VmProtect, 0),
        Ok(Request::VmProtect { vaddr: 0x4000_0000, pages: 1, writable: false })
    );
    assert_eq!(
        call(Method::VmMap, 1),
        Ok(Request::VmMap { vaddr: 0x4000_0000, pages: 1, writable: true })
    );
}
