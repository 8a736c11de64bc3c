//! `queues=N` (with `irq=msix`): one I/O queue pair per CPU, each driven by its own thread
//! on that CPU. Queue `q` (1..=N) raises MSI-X entry `q`, granted as the process's q-th
//! `Interrupt` capability with `cpu = q - 1`, so its completions interrupt the CPU its
//! thread waits on. Each thread reads its share of the blocks through its queue, waiting
//! on its own ring; the main thread (on CPU 0) starts them, serves queue 1 itself (a
//! process has at most 64 threads, the main one included), waits for all, and reports per
//! queue.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};

use keel_nvme::command::{Command, Prp};
use keel_nvme::pattern;
use keel_rt::abi::{Method, ObjectKind};
use keel_rt::util::{cap, Mmio};
use keel_rt::{ring, CapId, Ring};

use crate::irq;
use crate::queue::QueuePair;

/// Most queues the driver runs (QEMU's `nvme` offers up to 64 pairs): the main thread and
/// 63 spawned ones.
pub const MAX_QUEUES: usize = 64;
const STACKS_VADDR: u64 = 0x0000_3000_0000;
const STACK_PAGES: u64 = 8;

/// What one queue's thread is given and what it reports.
struct Slot {
    queue: UnsafeCell<Option<QueuePair>>,
}

// SAFETY: slot `i`'s queue is written by the main thread before thread `i` starts, used
// only by thread `i` until it raises `DONE`, and by the main thread again after that.
unsafe impl Sync for Slot {}

static SLOTS: [Slot; MAX_QUEUES] = [const { Slot { queue: UnsafeCell::new(None) } }; MAX_QUEUES];

/// Per queue: first block, block count; results.
pub struct Share {
    pub first: AtomicU64,
    pub count: AtomicU64,
    pub matching: AtomicU64,
    pub mismatched_words: AtomicU64,
    pub lost: AtomicU64,
    pub waits: AtomicU64,
    pub interrupts: AtomicU64,
    /// The CPU the thread ran on (read from the kernel with `ProcessInfo`).
    pub ran_on: AtomicU64,
}

pub static SHARES: [Share; MAX_QUEUES] = [const {
    Share {
        first: AtomicU64::new(0),
        count: AtomicU64::new(0),
        matching: AtomicU64::new(0),
        mismatched_words: AtomicU64::new(0),
        lost: AtomicU64::new(0),
        waits: AtomicU64::new(0),
        interrupts: AtomicU64::new(0),
        ran_on: AtomicU64::new(u64::MAX),
    }
}; MAX_QUEUES];

/// Threads finished.
pub static DONE: AtomicU64 = AtomicU64::new(0);
/// What every thread needs: LBAs per 4 KiB page.
pub static LBAS_PER_PAGE: AtomicU64 = AtomicU64::new(0);

/// Gives queue `index` (0-based) to its thread.
pub fn install(index: usize, q: QueuePair) {
    // SAFETY: called by the main thread before thread `index` is started (see `Slot`).
    unsafe { *SLOTS[index].queue.get() = Some(q) };
}

/// Takes queue `index` back once every thread is done.
pub fn take_back(index: usize) -> Option<QueuePair> {
    if DONE.load(Ordering::Acquire) == 0 {
        return None;
    }
    // SAFETY: called by the main thread after the threads finished (see `Slot`).
    unsafe { (*SLOTS[index].queue.get()).take() }
}

keel_rt::thread_entry!(fn thread_start => thread_body);

/// Starts the thread of queue `index` on `cpu`.
pub fn spawn(index: u64, cpu: u64) -> bool {
    let mut r = ring().expect("ring");
    let stack = STACKS_VADDR + index * (STACK_PAGES + 1) * crate::PAGE;
    if r.call(cap(ObjectKind::VirtualMemory), Method::VmMap, [stack, STACK_PAGES, 1, 0]).is_err() {
        return false;
    }
    let top = stack + STACK_PAGES * crate::PAGE;
    let entry = thread_start as *const () as u64;
    r.call(cap(ObjectKind::Process), Method::ProcessSpawnThread, [entry, top, index, cpu]).is_ok()
}

/// The queue's interrupt capability: the `index`-th `Interrupt` grant.
pub fn interrupt_of(index: usize) -> Option<CapId> {
    keel_rt::start_info().find_cap(ObjectKind::Interrupt, index).map(|c| c.id)
}

extern "C" fn thread_body(ring_vaddr: u64, index: u64) -> ! {
    // SAFETY: the kernel passed this thread's own ring page in rdi.
    let mut ring = unsafe { Ring::for_thread(ring_vaddr) };
    serve(&mut ring, index as usize);
    let _ = ring.call(cap(ObjectKind::Process), Method::ProcessExitThread, [0; 4]);
    loop {
        core::hint::spin_loop();
    }
}

/// Reads queue `i`'s share on the calling thread (its CPU recorded), then counts it done.
pub fn serve(ring: &mut Ring, i: usize) {
    let share = &SHARES[i];
    let process = cap(ObjectKind::Process);
    let on = ring.call(process, Method::ProcessInfo, [0; 4]).map_or(u64::MAX, |c| c.results[1]);
    share.ran_on.store(on, Ordering::Relaxed);
    // SAFETY: the main thread installed the queue before starting this thread (or before
    // serving it itself) and leaves it alone until `DONE` (see `Slot`).
    let q = unsafe { (*SLOTS[i].queue.get()).as_mut() };
    if let (Some(q), Some(irq)) = (q, interrupt_of(i)) {
        read_share(ring, q, irq, i, share);
    }
    DONE.fetch_add(1, Ordering::Release);
}

/// Reads this queue's blocks, `THREAD_BATCH` in flight, sleeping on the queue's interrupt after
/// each doorbell and taking every completion the ring holds when woken.
fn read_share(ring: &mut Ring, q: &mut QueuePair, irq: CapId, i: usize, share: &Share) {
    // SAFETY: BAR 0 is mapped at BAR_VADDR by the main thread for the process's lifetime.
    let bar = unsafe { Mmio::new(crate::BAR_VADDR) };
    let lbas = LBAS_PER_PAGE.load(Ordering::Relaxed) as u32;
    let (first, count) = (share.first.load(Ordering::Relaxed), share.count.load(Ordering::Relaxed));
    let bufs = crate::queue_pages(i).2;
    let mut counts = irq::Counts::default();
    let (mut matching, mut mismatched, mut lost) = (0u64, 0u64, 0u64);
    let mut block = first;
    'batches: while block < first + count {
        let n = (first + count - block).min(crate::THREAD_BATCH).min(q.entries() as u64 - 1);
        let mut cids = [0u16; crate::THREAD_BATCH as usize];
        for k in 0..n {
            let lba = (block + k) * lbas as u64;
            let page_iova = crate::dma::iova(bufs + k);
            let prp = Prp::for_buffer(page_iova, crate::PAGE, crate::PAGE).expect("one page");
            cids[k as usize] =
                q.queue(|cid| Command::read(cid, crate::NSID, lba, lbas, prp)).expect("room");
        }
        q.ring_doorbell(&bar);
        let mut taken = 0;
        while taken < n {
            // Re-armed only now: the entry stayed masked while the last batch was drained.
            if !irq::rearm_and_wait(ring, irq, &mut counts, crate::COMMAND_TIMEOUT_NS) {
                lost += n - taken;
                break 'batches;
            }
            while let Some(c) = q.take_quietly() {
                taken += 1;
                let Some(k) = cids[..n as usize].iter().position(|&id| id == c.cid) else {
                    lost += 1;
                    continue;
                };
                let words = crate::words(bufs + k as u64);
                let wrong = pattern::mismatches(
                    words,
                    (block + k as u64) * crate::PAGE,
                    pattern::IMAGE_SEED,
                );
                mismatched += wrong as u64;
                if c.succeeded() && wrong == 0 {
                    matching += 1;
                }
                words.fill(0);
            }
            q.release_head(&bar);
        }
        block += n;
    }
    // Left armed, as it was found: queue 1 is waited on again by the main thread's own
    // commands (`Driver::complete`), which acknowledge after each wait.
    irq::rearm(ring, irq);
    share.matching.store(matching, Ordering::Relaxed);
    share.mismatched_words.store(mismatched, Ordering::Relaxed);
    share.lost.store(lost, Ordering::Relaxed);
    share.waits.store(counts.waits, Ordering::Relaxed);
    share.interrupts.store(counts.interrupts, Ordering::Relaxed);
}
