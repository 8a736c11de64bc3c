//! `bench=N qd=D` (with `irq=msix`): 4 KiB random reads for `cargo xtask bench-compare`.
//!
//! Each I/O queue gets a thread (queue i on CPU `bench_cpu + i`), which first makes
//! [`WARMUP_READS`] reads (checked, not timed), then keeps `qd` reads in flight on its queue
//! until it has issued `N`, at block numbers from a xorshift over the namespace's 4 KiB
//! blocks (the same sequence, warm-up included, that `bench/linux/kbench_nvme.c` reads on
//! Linux).
//! A read's latency runs from the TSC before its command is built (submission) to the TSC
//! when the driver takes its completion from the ring after the queue's interrupt woke it.
//! Data: the first and last word of every block read are checked against the image pattern
//! and cleared (a read that moved nothing fails the next check of that buffer), and the
//! first `FULL_CHECKS` blocks of each thread are compared word by word. The main thread
//! reports, from what the threads counted: `<config>.reads`, `.completed`, `.verified`,
//! `.full_checked`/`.full_matching`, `.errors`, `.lost`, IOPS over the run (first start to
//! last end, from the kernel's clock), the latency median and p99 in cycles, and per queue
//! the CPU its thread ran on. `<config>` is `qd<D>_q<queues>`.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering::*};

use keel_nvme::command::{Command, Prp};
use keel_nvme::{pattern, regs};
use keel_rt::abi::{Method, ObjectKind};
use keel_rt::util::{arg_u64, cap, percentiles, rdtsc, Mmio};
use keel_rt::{ev, println, ring, Ring};

use crate::queue::QueuePair;
use crate::{workers, Driver, PAGE};

/// Reads in flight per queue at most (buffers per queue).
pub const MAX_QD: u64 = 32;
/// Reads per queue at most (the latency samples' room).
const MAX_READS: u64 = 16_384;
/// Blocks of each thread compared word by word.
const FULL_CHECKS: u64 = 8;
/// Reads each thread makes before its measured ones, checked but neither timed nor counted
/// (kbench's `WARMUP_READS` on Linux is the same): a fresh machine's first reads pay once for
/// the emulator's cold paths (its block layer's worker threads, code translation, the
/// IOMMU's first walks), and at queue depth 32 that one-off cost would be the whole p99.
pub const WARMUP_READS: u64 = 64;
/// Where each queue's read buffers (`qd` pages of a MAX_QD-page slot, mapped for DMA by its
/// thread) and the samples live in this process.
const BUFS_VA: u64 = 0x0000_4000_0000;
const SAMPLES_VA: u64 = 0x0000_5000_0000;
const STACKS_VA: u64 = 0x0000_3800_0000;
const STACK_PAGES: u64 = 8;
/// How long all threads may take together.
const RUN_TIMEOUT_NS: u64 = 300_000_000_000;

/// What the main thread hands each queue's thread and what the thread reports.
struct Share {
    completed: AtomicU64,
    verified: AtomicU64,
    full_checked: AtomicU64,
    full_matching: AtomicU64,
    errors: AtomicU64,
    lost: AtomicU64,
    start_ns: AtomicU64,
    end_ns: AtomicU64,
    ran_on: AtomicU64,
    waits: AtomicU64,
    /// What stopped the thread before its first read: 0 nothing, else [`SETUP_FAILURES`].
    setup_failed: AtomicU64,
}

/// Why a queue's thread could not start reading (`Share::setup_failed` - 1).
const SETUP_FAILURES: [&str; 2] = ["VmMap of its buffers", "DeviceMemoryDmaMap of its buffers"];

struct Slot(UnsafeCell<Option<QueuePair>>);
// SAFETY: slot i is written by the main thread before thread i starts, used only by thread
// i until it raises `DONE`, and by the main thread again after that.
unsafe impl Sync for Slot {}

static SLOTS: [Slot; workers::MAX_QUEUES] =
    [const { Slot(UnsafeCell::new(None)) }; workers::MAX_QUEUES];
static SHARES: [Share; workers::MAX_QUEUES] = [const {
    Share {
        completed: AtomicU64::new(0),
        verified: AtomicU64::new(0),
        full_checked: AtomicU64::new(0),
        full_matching: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        lost: AtomicU64::new(0),
        start_ns: AtomicU64::new(0),
        end_ns: AtomicU64::new(0),
        ran_on: AtomicU64::new(u64::MAX),
        waits: AtomicU64::new(0),
        setup_failed: AtomicU64::new(0),
    }
}; workers::MAX_QUEUES];
/// The run's parameters: reads per queue, depth, 4 KiB blocks on the disk, LBAs per block.
static READS: AtomicU64 = AtomicU64::new(0);
static QD: AtomicU64 = AtomicU64::new(1);
static DISK_PAGES: AtomicU64 = AtomicU64::new(1);
static LBAS: AtomicU64 = AtomicU64::new(1);
/// Threads ready to start (all start together), and finished.
static READY: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicU64 = AtomicU64::new(0);
static QUEUES: AtomicU64 = AtomicU64::new(1);

/// The block sequence of queue `index`: xorshift64 from a per-queue seed (kbench.c's too).
pub struct Blocks(u64);

impl Blocks {
    pub fn new(index: u64) -> Blocks {
        Blocks(0x9E37_79B9_7F4A_7C15 ^ (index + 1).wrapping_mul(0xD1B5_4A32_D192_ED03))
    }
    pub fn next(&mut self, pages: u64) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x % pages
    }
}

fn buffer(index: usize, slot: u64) -> &'static mut [u64; 512] {
    let va = BUFS_VA + (index as u64 * MAX_QD + slot) * PAGE;
    // SAFETY: thread `index` mapped `qd` (> slot) writable pages at this queue's BUFS_VA run before
    // its first read; the controller writes a buffer only while that slot's read is in
    // flight, and the thread looks at it after the read's completion.
    unsafe { &mut *(va as *mut [u64; 512]) }
}

fn samples(index: usize) -> &'static mut [u64] {
    let at = SAMPLES_VA + index as u64 * MAX_READS * 8;
    // SAFETY: the main thread mapped MAX_READS words per queue at SAMPLES_VA before starting
    // the threads; thread `index` alone writes its run, the main thread reads it after DONE.
    unsafe { core::slice::from_raw_parts_mut(at as *mut u64, MAX_READS as usize) }
}

/// Runs the benchmark on the created queues (`first` = queue 1), stops the controller and
/// returns the exit code: 0 when every read completed without error and every check held.
pub(crate) fn run(
    d: &Driver,
    first: QueuePair,
    pairs: &mut [Option<QueuePair>; workers::MAX_QUEUES],
    queues: u64,
    disk_pages: u64,
    lbas_per_page: u32,
    timeout_ms: u64,
) -> u64 {
    let reads = arg_u64("bench", 0).min(MAX_READS);
    let qd = arg_u64("qd", 1).clamp(1, MAX_QD.min(first.entries() as u64 - 1));
    let first_cpu = arg_u64("bench_cpu", 0);
    READS.store(reads, Relaxed);
    QD.store(qd, Relaxed);
    DISK_PAGES.store(disk_pages, Relaxed);
    LBAS.store(lbas_per_page as u64, Relaxed);
    QUEUES.store(queues, Relaxed);
    let vm = cap(ObjectKind::VirtualMemory);
    let sample_pages = (queues * MAX_READS * 8).div_ceil(PAGE);
    if ring().expect("ring").call(vm, Method::VmMap, [SAMPLES_VA, sample_pages, 1, 0]).is_err() {
        println!("bench: cannot map {sample_pages} sample pages");
        return 10;
    }
    // SAFETY: called before any thread starts (see `Slot`).
    unsafe { *SLOTS[0].0.get() = Some(first) };
    for i in 1..queues as usize {
        // SAFETY: as above.
        unsafe { *SLOTS[i].0.get() = pairs[i].take() };
    }
    for i in 0..queues {
        if !spawn(i, first_cpu + i) {
            println!("bench: could not start the thread of queue {}", i + 1);
            return 10;
        }
    }
    let deadline = d.now_ns() + RUN_TIMEOUT_NS;
    while DONE.load(Acquire) < queues {
        if d.now_ns() > deadline {
            println!("bench: only {} of {queues} threads finished", DONE.load(Acquire));
            return 10;
        }
        // Long naps: queue 1's thread shares this CPU (percpu runs).
        keel_rt::util::check("sleep", ring().expect("ring").timer_sleep(d.timer, 20_000_000));
    }
    report(queues, qd, reads);

    d.bar.write(regs::CC as usize, 0);
    let stopped = d.wait_ready(false, timeout_ms);
    ev!("bench.disabled", crate::yes(stopped));
    let sum = |f: fn(&Share) -> &AtomicU64| -> u64 {
        SHARES[..queues as usize].iter().map(|s| f(s).load(Relaxed)).sum()
    };
    let all = reads * queues;
    let ok = sum(|s| &s.completed) == all
        && sum(|s| &s.verified) == all
        && sum(|s| &s.full_matching) == sum(|s| &s.full_checked)
        && sum(|s| &s.errors) == 0
        && stopped;
    if ok {
        0
    } else {
        7
    }
}

/// Prints the run's evidence from what the threads counted and measured.
fn report(queues: u64, qd: u64, reads: u64) {
    let n = queues as usize;
    let config = |field: &'static str| ConfigKey { qd, queues, field };
    let sum = |f: fn(&Share) -> &AtomicU64| -> u64 {
        SHARES[..n].iter().map(|s| f(s).load(Relaxed)).sum()
    };
    let start = SHARES[..n].iter().map(|s| s.start_ns.load(Relaxed)).min().unwrap_or(0);
    let end = SHARES[..n].iter().map(|s| s.end_ns.load(Relaxed)).max().unwrap_or(0);
    let completed = sum(|s| &s.completed);
    // Every queue's samples, gathered at the start of the sample pages.
    let base = SAMPLES_VA as *mut u64;
    let mut total = 0usize;
    for (i, share) in SHARES[..n].iter().enumerate() {
        let got = share.completed.load(Relaxed).min(MAX_READS) as usize;
        // SAFETY: both runs lie in the mapped sample pages (n * MAX_READS words); the copy
        // moves queue i's samples down to follow the ones before it (memmove semantics).
        unsafe { core::ptr::copy(base.add(i * MAX_READS as usize), base.add(total), got) };
        total += got;
    }
    // SAFETY: the first `total` words of the sample pages now hold every queue's samples.
    let merged = unsafe { core::slice::from_raw_parts_mut(base, total) };
    let (median, p99) = percentiles(merged);
    let ns = end.saturating_sub(start).max(1);
    ev!(config("reads"), reads * queues);
    ev!(config("completed"), completed);
    ev!(config("verified"), sum(|s| &s.verified));
    ev!(config("full_checked"), sum(|s| &s.full_checked));
    ev!(config("full_matching"), sum(|s| &s.full_matching));
    ev!(config("errors"), sum(|s| &s.errors));
    ev!(config("lost"), sum(|s| &s.lost));
    ev!(config("waits"), sum(|s| &s.waits));
    ev!(config("run_ns"), ns);
    ev!(config("iops"), completed * 1_000_000_000 / ns);
    ev!(config("median_cycles"), median);
    ev!(config("p99_cycles"), p99);
    ev!(config("samples"), total);
    for (i, s) in SHARES[..n].iter().enumerate() {
        ev!(format_args!("qd{qd}_q{queues}.q{}.ran_on", i + 1), s.ran_on.load(Relaxed));
        if let Some(what) =
            SETUP_FAILURES.get((s.setup_failed.load(Relaxed) as usize).wrapping_sub(1))
        {
            println!("bench: queue {} read nothing: {what} failed", i + 1);
        }
    }
}

/// The evidence key `qd<D>_q<N>.<field>` of one run, formatted without an allocator.
struct ConfigKey {
    qd: u64,
    queues: u64,
    field: &'static str,
}

impl core::fmt::Display for ConfigKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "qd{}_q{}.{}", self.qd, self.queues, self.field)
    }
}

keel_rt::thread_entry!(fn thread_start => thread_body);

fn spawn(index: u64, cpu: u64) -> bool {
    let mut r = ring().expect("ring");
    let stack = STACKS_VA + index * (STACK_PAGES + 1) * PAGE;
    if r.call(cap(ObjectKind::VirtualMemory), Method::VmMap, [stack, STACK_PAGES, 1, 0]).is_err() {
        return false;
    }
    let top = stack + STACK_PAGES * PAGE;
    let entry = thread_start as *const () as u64;
    r.call(cap(ObjectKind::Process), Method::ProcessSpawnThread, [entry, top, index, cpu]).is_ok()
}

extern "C" fn thread_body(ring_vaddr: u64, index: u64) -> ! {
    // SAFETY: the kernel passed this thread's own ring page in rdi.
    let mut ring = unsafe { Ring::for_thread(ring_vaddr) };
    let i = index as usize;
    let process = cap(ObjectKind::Process);
    let on = ring.call(process, Method::ProcessInfo, [0; 4]).map_or(u64::MAX, |c| c.results[1]);
    SHARES[i].ran_on.store(on, Relaxed);
    // SAFETY: installed before this thread started; the main thread leaves it until DONE.
    let q = unsafe { (*SLOTS[i].0.get()).as_mut() };
    if let (Some(q), Some(irq)) = (q, workers::interrupt_of(i)) {
        reads(&mut ring, q, irq, i);
    }
    DONE.fetch_add(1, Release);
    let _ = ring.call(process, Method::ProcessExitThread, [0; 4]);
    loop {
        core::hint::spin_loop();
    }
}

/// One queue's run: map its buffers for DMA, wait for every thread, then keep `qd` random
/// reads in flight until `reads` were issued and all completed.
fn reads(ring: &mut Ring, q: &mut QueuePair, irq: keel_rt::CapId, i: usize) {
    let share = &SHARES[i];
    let (reads, qd, pages, lbas) =
        (READS.load(Relaxed), QD.load(Relaxed), DISK_PAGES.load(Relaxed), LBAS.load(Relaxed));
    let bufs_va = BUFS_VA + i as u64 * MAX_QD * PAGE;
    let vm = cap(ObjectKind::VirtualMemory);
    let dm = cap(ObjectKind::DeviceMemory);
    if ring.call(vm, Method::VmMap, [bufs_va, qd, 1, 0]).is_err() {
        share.setup_failed.store(1, Relaxed);
        READY.fetch_add(1, Release);
        return;
    }
    let Ok(iova) = ring.dma_map(dm, bufs_va, qd, true) else {
        share.setup_failed.store(2, Relaxed);
        READY.fetch_add(1, Release);
        return;
    };
    let timer = cap(ObjectKind::Timer);
    // SAFETY: BAR 0 is mapped at BAR_VADDR by the main thread for the process's lifetime.
    let bar = unsafe { Mmio::new(crate::BAR_VADDR) };
    READY.fetch_add(1, AcqRel);
    while READY.load(Acquire) < QUEUES.load(Relaxed) {
        core::hint::spin_loop();
    }
    let mut reader = Reader {
        index: i,
        qd: qd as usize,
        pages,
        lbas,
        iova,
        blocks: Blocks::new(i as u64),
        block: [0; MAX_QD as usize],
        cid: [u16::MAX; MAX_QD as usize],
        submitted_at: [0; MAX_QD as usize],
        busy: [false; MAX_QD as usize],
        counts: crate::irq::Counts::default(),
        tally: Tally::default(),
    };
    // The warm-up's reads are checked like the others, then forgotten.
    reader.pass(ring, q, irq, &bar, WARMUP_READS, None);
    let warm = core::mem::take(&mut reader.tally);
    share.start_ns.store(ring.timer_now(timer).map_or(0, |t| t.0), Relaxed);
    reader.pass(ring, q, irq, &bar, reads, Some(samples(i)));
    share.end_ns.store(ring.timer_now(timer).map_or(0, |t| t.0), Relaxed);
    let t = &reader.tally;
    share.completed.store(t.done, Relaxed);
    share.verified.store(t.verified, Relaxed);
    share.full_checked.store(t.full, Relaxed);
    share.full_matching.store(t.full_ok, Relaxed);
    share.errors.store(t.errors + warm.errors + (warm.verified != warm.done) as u64, Relaxed);
    share.lost.store(t.lost + warm.lost, Relaxed);
    share.waits.store(reader.counts.waits, Relaxed);
    let _ = ring.dma_unmap(dm, iova, qd);
}

/// What one pass of reads counted.
#[derive(Default)]
struct Tally {
    done: u64,
    verified: u64,
    full: u64,
    full_ok: u64,
    errors: u64,
    lost: u64,
}

/// One queue's reads: its block sequence and, per buffer slot, the block it reads, its
/// command id, its submission TSC and whether it is in flight.
struct Reader {
    index: usize,
    qd: usize,
    pages: u64,
    lbas: u64,
    iova: u64,
    blocks: Blocks,
    block: [u64; MAX_QD as usize],
    cid: [u16; MAX_QD as usize],
    submitted_at: [u64; MAX_QD as usize],
    busy: [bool; MAX_QD as usize],
    counts: crate::irq::Counts,
    tally: Tally,
}

impl Reader {
    /// Keeps `qd` reads in flight until `count` were issued and all completed (or one was
    /// lost), each latency into `lat` when given.
    fn pass(
        &mut self,
        ring: &mut Ring,
        q: &mut QueuePair,
        irq: keel_rt::CapId,
        bar: &Mmio,
        count: u64,
        mut lat: Option<&mut [u64]>,
    ) {
        let (mut issued, mut ended) = (0u64, 0u64);
        while ended < count {
            // Fill every free slot, then one doorbell.
            let t = rdtsc();
            let mut queued = false;
            for s in 0..self.qd {
                if self.busy[s] || issued == count {
                    continue;
                }
                let b = self.blocks.next(self.pages);
                let prp =
                    Prp::for_buffer(self.iova + s as u64 * PAGE, PAGE, PAGE).expect("one page");
                let (lba, lbas) = (b * self.lbas, self.lbas as u32);
                let Some(id) = q.queue(|c| Command::read(c, crate::NSID, lba, lbas, prp)) else {
                    break;
                };
                (self.block[s], self.cid[s], self.submitted_at[s], self.busy[s]) = (b, id, t, true);
                issued += 1;
                queued = true;
            }
            if queued {
                q.ring_doorbell(bar);
            }
            if !crate::irq::rearm_and_wait(ring, irq, &mut self.counts, crate::COMMAND_TIMEOUT_NS) {
                self.tally.lost += self.busy.iter().filter(|&&b| b).count() as u64;
                self.busy = [false; MAX_QD as usize];
                return;
            }
            while let Some(c) = q.take_quietly() {
                let seen = rdtsc();
                ended += 1;
                let Some(s) = (0..self.qd).find(|&s| self.busy[s] && self.cid[s] == c.cid) else {
                    self.tally.lost += 1;
                    continue;
                };
                self.busy[s] = false;
                if let Some(lat) = lat.as_deref_mut() {
                    lat[self.tally.done as usize] = seen - self.submitted_at[s];
                }
                self.tally.done += 1;
                if !c.succeeded() {
                    self.tally.errors += 1;
                    continue;
                }
                self.check(s);
            }
            q.release_head(bar);
        }
    }

    /// Checks slot `s`'s block against the image pattern (first and last word; every word
    /// of the first `FULL_CHECKS`), then clears those words for the next read.
    fn check(&mut self, s: usize) {
        let w = buffer(self.index, s as u64);
        let at = self.block[s] * PAGE;
        let t = &mut self.tally;
        if w[0] == pattern::word(at, pattern::IMAGE_SEED)
            && w[511] == pattern::word(at + PAGE - 8, pattern::IMAGE_SEED)
        {
            t.verified += 1;
        }
        if t.full < FULL_CHECKS {
            t.full += 1;
            t.full_ok += (pattern::mismatches(w, at, pattern::IMAGE_SEED) == 0) as u64;
        }
        (w[0], w[511]) = (0, 0);
    }
}
