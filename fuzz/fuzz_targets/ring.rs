//! Ring submissions (`keel-abi`): 48-byte submissions as a hostile process writes them,
//! plus the ring index arithmetic the kernel applies to user-written heads and tails.
//! Every decoded request re-encodes to the same submission, and the index checks keep
//! their documented bounds.
#![no_main]

use keel_abi::{
    cq_available, cq_budget, cq_space, decode, min_complete, user_range, CapId, Method, Request,
    Status, Submission, CONSOLE_WRITE_MAX, CQ_ENTRIES, MAX_VM_PAGES, SQ_ENTRIES, USER_SPACE_END,
};
use libfuzzer_sys::fuzz_target;

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn submission(b: &[u8]) -> Submission {
    Submission {
        cap: u32::from_le_bytes(b[0..4].try_into().unwrap()),
        method: u16::from_le_bytes([b[4], b[5]]),
        flags: u16::from_le_bytes([b[6], b[7]]),
        args: [u64_at(b, 8), u64_at(b, 16), u64_at(b, 24), u64_at(b, 32)],
        user_data: u64_at(b, 40),
    }
}

fn check_submission(sub: &Submission) {
    match decode(sub) {
        Ok(req) => {
            // The documented round trip: decode(encode(r)) == r, and encode gives back
            // exactly the accepted submission (no bits were ignored).
            let again = req.encode(CapId(sub.cap), sub.user_data);
            assert_eq!(again, *sub);
            assert_eq!(decode(&again), Ok(req));
            assert_eq!(req.method().as_u16(), sub.method);
            match req {
                Request::ConsoleWrite { ptr, len } => {
                    assert!(len <= CONSOLE_WRITE_MAX && user_range(ptr, len).is_ok());
                }
                Request::VmMap { vaddr, pages, .. }
                | Request::VmUnmap { vaddr, pages }
                | Request::VmProtect { vaddr, pages, .. } => {
                    assert!((1..=MAX_VM_PAGES).contains(&pages));
                    assert!(vaddr != 0 && vaddr % 4096 == 0);
                    assert!(vaddr + pages * 4096 <= USER_SPACE_END);
                }
                Request::ProcessSpawnThread { entry, stack_top, .. } => {
                    assert!(entry != 0 && entry < USER_SPACE_END);
                    assert!(stack_top != 0 && stack_top < USER_SPACE_END && stack_top % 16 == 0);
                }
                Request::DeviceMemoryMap { vaddr } => {
                    assert!(vaddr != 0 && vaddr % 4096 == 0 && vaddr < USER_SPACE_END)
                }
                _ => {}
            }
        }
        Err(status) => {
            assert!(matches!(
                status,
                Status::BadFlags | Status::BadMethod | Status::BadArgument | Status::BadAddress
            ));
            assert_eq!(status == Status::BadFlags, sub.flags != 0);
            if sub.flags == 0 {
                assert_eq!(status == Status::BadMethod, Method::from_u16(sub.method).is_none());
            }
        }
    }
}

fn check_indices(b: &[u8]) {
    let w = |i: usize| u32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().unwrap());
    let (sq_head, sq_tail, cq_head, cq_tail, in_flight) = (w(0), w(1), w(2), w(3), w(4));
    match keel_abi::sq_pending(sq_head, sq_tail) {
        Ok(n) => assert!(n <= SQ_ENTRIES && sq_head.wrapping_add(n) == sq_tail),
        Err(s) => assert!(s == Status::BadRing && sq_tail.wrapping_sub(sq_head) > SQ_ENTRIES),
    }
    match (cq_available(cq_head, cq_tail), cq_space(cq_head, cq_tail)) {
        (Ok(used), Ok(free)) => {
            assert_eq!(used + free, CQ_ENTRIES);
            let budget = cq_budget(cq_head, cq_tail, in_flight).unwrap();
            assert!(budget <= free && budget == free.saturating_sub(in_flight));
        }
        (Err(a), Err(b)) => {
            assert!(a == Status::BadRing && b == Status::BadRing);
            assert!(cq_budget(cq_head, cq_tail, in_flight).is_err());
        }
        other => panic!("cq_available and cq_space disagree: {other:?}"),
    }
    let raw = u64::from(w(0)) << 32 | u64::from(w(1));
    match min_complete(raw) {
        Ok(n) => assert!(u64::from(n) == raw && n <= CQ_ENTRIES),
        Err(s) => assert!(s == Status::BadArgument && raw > u64::from(CQ_ENTRIES)),
    }
    match keel_abi::enter_result(raw as i64) {
        Ok(n) => assert!(n <= CQ_ENTRIES && n as i64 == raw as i64),
        Err(_) => assert!(raw as i64 > CQ_ENTRIES as i64 || (raw as i64) < 0),
    }
}

fuzz_target!(|data: &[u8]| {
    // A whole submission queue's worth of entries, each decoded as the kernel would.
    for chunk in data.chunks_exact(48).take(SQ_ENTRIES as usize) {
        check_submission(&submission(chunk));
    }
    if data.len() >= 20 {
        check_indices(&data[data.len() - 20..]);
    }
});
