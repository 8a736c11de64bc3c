//! A hostile program: floods its ring with garbage — random entries, bad and stale capability
//! ids, unknown methods, bad flags, out-of-range and kernel pointers, corrupted ring indices —
//! for a bounded number of rounds. Every submission must complete with an error and the
//! kernel must keep going; it then touches kernel memory directly and must be killed by the
//! kernel with a fault report (its expected exit code in the manifest says so).
#![no_std]
#![no_main]

use core::sync::atomic::Ordering;

use keel_rt::abi::{Method, ObjectKind, RingHeader, Status, Submission, RING_VADDR};
use keel_rt::util::arg_u64;
use keel_rt::{ev, println, ring, start_info, CapId};

keel_rt::entry!(main);

/// xorshift64*: deterministic garbage.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

const KERNEL_POINTERS: [u64; 4] =
    [0xffff_8000_0000_0000, 0xffff_ffff_8010_0000, 0x0000_8000_0000_0000, u64::MAX - 8];

/// Builds a submission that must fail: never a live capability with a valid request.
fn garbage(rng: &mut Rng, live: &[u32], stale: u32, i: u64) -> Submission {
    let pick = rng.next();
    let mut s = Submission {
        cap: rng.next() as u32,
        method: rng.next() as u16,
        flags: 0,
        args: [rng.next(), rng.next(), rng.next(), rng.next()],
        user_data: i,
    };
    match pick % 8 {
        0 => {} // fully random
        1 => s.cap = stale,
        2 => {
            s.method = Method::ConsoleWrite as u16;
            s.cap = live[0];
            s.args = [KERNEL_POINTERS[(pick >> 8) as usize % 4], 64, 0, 0];
        }
        3 => {
            s.method = Method::ConsoleWrite as u16;
            s.cap = live[0];
            s.args = [0x1000, 1 << 20, 0, 0]; // too long
        }
        4 => {
            s.method = Method::ConsoleWrite as u16;
            s.cap = live[0];
            s.args = [0x0000_5555_0000_0000, 16, 0, 0]; // unmapped user address
        }
        5 => {
            s.method = Method::TimerNow as u16; // valid method, wrong object type
            s.cap = live[0];
            s.args = [0; 4];
        }
        6 => {
            s.method = Method::Nop as u16;
            s.flags = 1 | (pick >> 16) as u16; // bad flags
        }
        _ => {
            s.method = Method::InterruptWait as u16;
            s.cap = 0; // null capability
        }
    }
    // Never hand the kernel a valid call by accident.
    if s.method == Method::Nop as u16 && s.flags == 0 {
        s.flags = 2;
    }
    if live.contains(&s.cap) && !matches!(pick % 8, 2..=5) {
        s.cap ^= 0x8000_0000;
    }
    s
}

/// Copies the console capability, releases the copy (its id goes stale), then copies again
/// until the table hands out the same slot index: the stale id and a live capability then
/// share a slot and differ only in the generation. Fillers taken on the way are released;
/// the capability that reuses the slot stays live (the kernel's table holds 256 slots, reused
/// oldest-freed first). Reports whether the slot came back; returns the stale id.
fn stale_id_to_reused_slot(console: CapId) -> CapId {
    let mut ring = ring().expect("ring");
    let old = ring.cap_copy(console).unwrap_or(CapId::NULL);
    let released = ring.cap_release(old).is_ok();
    let mut fillers = [CapId::NULL; 320];
    let mut taken = 0;
    let mut reused = None;
    while released && taken < fillers.len() {
        let Ok(copy) = ring.cap_copy(console) else { break };
        if copy.index() == old.index() {
            reused = Some(copy);
            break;
        }
        fillers[taken] = copy;
        taken += 1;
    }
    for f in &fillers[..taken] {
        let _ = ring.cap_release(*f);
    }
    let live = reused
        .is_some_and(|id| matches!(ring.cap_identify(id), Ok((Some(ObjectKind::Console), _))));
    drop(ring); // `ev!` prints through the ring
    ev!("stale_slot_reused", if live && reused != Some(old) { "yes" } else { "no" });
    ev!("stale_slot_fillers", taken);
    old
}

fn main() -> u64 {
    let rounds = arg_u64("rounds", 200);
    let console =
        start_info().find_cap(ObjectKind::Console, 0).map(|c| c.id).unwrap_or(CapId::NULL);
    let live: [u32; 1] = [console.0];
    let stale = stale_id_to_reused_slot(console);
    // The old id's slot now holds a live capability; only its generation tells them apart.
    let stale_rejected = matches!(ring().expect("ring").cap_identify(stale), Err(Status::BadCap));
    let stale = stale.0;

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ rounds);
    let (mut submitted, mut completed, mut errors, mut unexpected_ok) = (0u64, 0u64, 0u64, 0u64);
    {
        let mut ring = ring().expect("ring");
        for round in 0..rounds {
            let batch = 1 + rng.next() % 24;
            for k in 0..batch {
                if ring.submit(garbage(&mut rng, &live, stale, round * 64 + k)).is_ok() {
                    submitted += 1;
                }
            }
            let _ = ring.enter(batch as u32, 1_000_000_000);
            while let Some(c) = ring.next_completion() {
                completed += 1;
                if c.status == 0 {
                    unexpected_ok += 1;
                } else {
                    errors += 1;
                }
            }
        }
    }

    // Corrupt the ring indices: the kernel must refuse (BadRing) and keep running.
    // SAFETY: the ring page is mapped at RING_VADDR; scribbling on it is the point.
    let header = unsafe { &*(RING_VADDR as *const RingHeader) };
    let tail = header.sq_tail.load(Ordering::Relaxed);
    header.sq_tail.store(tail.wrapping_add(1000), Ordering::Release);
    let bad_tail = keel_rt::cap_enter(0, 0);
    header.sq_tail.store(tail, Ordering::Release);
    let head = header.cq_head.load(Ordering::Relaxed);
    header.cq_head.store(head.wrapping_add(5000), Ordering::Release);
    let bad_head = keel_rt::cap_enter(0, 0);
    header.cq_head.store(head, Ordering::Release);
    let bad_ring = Status::BadRing.as_i32() as i64;

    ev!("submitted", submitted);
    ev!("completed", completed);
    ev!("errors", errors);
    ev!("unexpected_ok", unexpected_ok);
    ev!("stale_rejected", if stale_rejected { "yes" } else { "no" });
    ev!("bad_tail_rejected", if bad_tail == bad_ring { "yes" } else { "no" });
    ev!("bad_head_rejected", if bad_head == bad_ring { "yes" } else { "no" });

    if start_info().arg("touch_kernel") == Some("yes") {
        println!("reading kernel memory: the kernel must end this process");
        // SAFETY: deliberately invalid; the fault is the test.
        let v = unsafe { core::ptr::read_volatile(0xffff_ffff_8010_0000 as *const u64) };
        println!("read {v:#x}: kernel memory is readable from ring 3!");
        return 9;
    }
    0
}
