//! A ring-3 driver for QEMU's `nvme` controller, polled or interrupt-driven.
//!
//! It maps BAR 0 through its `DeviceMemory` capability and runs of its own pages for DMA
//! (`DeviceMemoryDmaMap`, one per run, `dma.rs`: the controller sees them only through
//! their IOVAs), resets and enables the controller with an admin queue pair in those pages,
//! identifies the controller and namespace 1, asks for the I/O queue pairs it wants (Set
//! Features, Number of Queues), creates them, and reads 4 KiB blocks in
//! batches of several commands in flight, checking each against the pattern the host wrote
//! into the disk image (`keel_nvme::pattern`). Then it writes one block with another
//! pattern and reads it and its neighbours back. Completions are found by their phase
//! tags. Arguments: `blocks=N` 4 KiB blocks to read (default 64), `write=B` the block to
//! write (default 37), `entries=E` I/O queue entries (default 16, so the completion ring
//! wraps several times), `irq=msix`: the I/O completion queue raises MSI-X entry 1, granted
//! as an `Interrupt` capability, and the driver sleeps in `InterruptWait` instead of
//! polling (the admin queue stays polled); `queues=N` with it: one I/O queue pair per CPU
//! it runs on (N, and no more than its `Interrupt` grants, the controller's grant or 64),
//! a thread each, queue q on MSI-X entry q (`workers.rs`). `die_mid_io=1`: exit 9 right
//! after the first batch of reads is submitted (a driver dying mid-I/O). `bench=N qd=D`:
//! the random-read benchmark instead of the checks (`bench.rs`). Exit 0 when every check held.
#![no_std]
#![no_main]

mod bench;
mod dma;
mod irq;
mod queue;
mod workers;

use keel_nvme::command::{granted_queue_pairs, Command, Prp, CNS_CONTROLLER, CNS_NAMESPACE};
use keel_nvme::completion::Completion;
use keel_nvme::identify::{Controller, Namespace};
use keel_nvme::{pattern, regs};
use keel_rt::abi::{Method, ObjectKind};
use keel_rt::util::{arg_u64, cap, check as r, Mmio};
use keel_rt::{ev, println, ring, CapId};

use queue::QueuePair;

keel_rt::entry!(main);

/// Where BAR 0 is mapped in this process.
pub(crate) const BAR_VADDR: u64 = 0x0000_1000_0000;
/// Where the DMA pages start; their order in the run.
pub(crate) const DMA_VA: u64 = 0x0000_2000_0000;
pub(crate) const PAGE: u64 = 4096;
const ADMIN_SQ: u64 = 0;
const ADMIN_CQ: u64 = 1;
const IDENTIFY: u64 = 2;
const IO_SQ: u64 = 3;
const IO_CQ: u64 = 4;
/// Read buffers: one per command in flight.
const READ_BUFS: u64 = 5;
pub(crate) const BATCH: u64 = 8;
const WRITE_BUF: u64 = READ_BUFS + BATCH;
/// Pages of the base DMA run (queue 1 included); each further queue has its own run.
pub(crate) const DMA_PAGES: u64 = WRITE_BUF + 1;
/// Admin queue entries (one page each way).
const ADMIN_ENTRIES: u16 = 64;
/// The I/O queue's id.
const IO_QID: u16 = 1;
/// The MSI-X entry its completion queue raises under `irq=msix` (entry 0 is the admin
/// queue's, left masked: the admin queue is polled).
const IO_VECTOR: u16 = 1;
/// The namespace read and written.
pub(crate) const NSID: u32 = 1;
/// How long a command or a controller state change may take before the driver gives up.
pub(crate) const COMMAND_TIMEOUT_NS: u64 = 5_000_000_000;
/// Exit code of `die_mid_io=1`: the driver left with reads in flight.
const EXIT_MID_IO: u64 = 9;
/// How long the threads of `queues=N` may take together.
const THREADS_TIMEOUT_NS: u64 = 60_000_000_000;

fn va(page: u64) -> u64 {
    DMA_VA + page * PAGE
}

/// Reads each thread of `queues=N` keeps in flight (a read buffer each).
pub(crate) const THREAD_BATCH: u64 = 4;

/// DMA pages of I/O queue `index` (0-based): submission ring, completion ring, first read
/// buffer. Queue 0 uses the single-queue layout in the base run; each further queue has a
/// run of 2 + THREAD_BATCH pages after it (`dma::map_run`).
pub(crate) fn queue_pages(index: usize) -> (u64, u64, u64) {
    if index == 0 {
        return (IO_SQ, IO_CQ, READ_BUFS);
    }
    let base = DMA_PAGES + (index as u64 - 1) * dma::QUEUE_RUN_PAGES;
    (base, base + 1, base + 2)
}

pub(crate) fn words(page: u64) -> &'static mut [u64; 512] {
    // SAFETY: `page` is one of the DMA pages this program mapped at DMA_VA (writable,
    // `dma::map_run`) and keeps mapped; the controller writes it only while a command naming it is in
    // flight, and the driver reads it after that command's completion.
    unsafe { &mut *(va(page) as *mut [u64; 512]) }
}

fn bytes(page: u64) -> &'static [u8; 4096] {
    // SAFETY: as in `words`.
    unsafe { &*(va(page) as *const [u8; 4096]) }
}

/// The driver's handles and clocks.
struct Driver {
    bar: Mmio,
    timer: CapId,
    /// The I/O completion queue's interrupt (`irq=msix`), and what it delivered.
    irq: Option<CapId>,
    irq_counts: core::cell::RefCell<irq::Counts>,
    /// I/O commands were submitted since the last wait: sleep until the queue's interrupt
    /// before looking at the ring.
    interrupt_due: core::cell::Cell<bool>,
}

impl Driver {
    fn now_ns(&self) -> u64 {
        r("TimerNow", ring().expect("ring").timer_now(self.timer)).0
    }

    fn iova(&self, page: u64) -> u64 {
        dma::iova(page)
    }

    fn read64(&self, offset: u64) -> u64 {
        let lo = self.bar.read(offset as usize) as u64;
        lo | (self.bar.read(offset as usize + 4) as u64) << 32
    }

    fn write64(&self, offset: u64, value: u64) {
        self.bar.write(offset as usize, value as u32);
        self.bar.write(offset as usize + 4, (value >> 32) as u32);
    }

    /// Waits until CSTS.RDY is `ready` (or the controller reports a fatal status).
    fn wait_ready(&self, ready: bool, timeout_ms: u64) -> bool {
        let deadline = self.now_ns() + timeout_ms.max(500) * 1_000_000;
        loop {
            let csts = self.bar.read(regs::CSTS as usize);
            if csts & regs::CSTS_FATAL != 0 {
                println!("controller fatal status, CSTS {csts:#x}");
                return false;
            }
            if (csts & regs::CSTS_READY != 0) == ready {
                return true;
            }
            if self.now_ns() > deadline {
                println!("CSTS.RDY stayed {} (CSTS {csts:#x})", !ready);
                return false;
            }
            r("sleep", ring().expect("ring").timer_sleep(self.timer, 1_000_000));
        }
    }

    /// Tells the controller about `q`'s queued commands; with an interrupt, their
    /// completions are then awaited by it.
    fn doorbell(&self, q: &QueuePair) {
        q.ring_doorbell(&self.bar);
        if q.qid() == IO_QID {
            self.interrupt_due.set(true);
            if let Some(irq) = self.irq {
                let counts = &mut self.irq_counts.borrow_mut();
                irq::move_if_due(&mut ring().expect("ring"), irq, counts);
            }
        }
    }

    /// Submits one command and waits for its completion.
    fn run(&self, q: &mut QueuePair, make: impl FnOnce(u16) -> Command) -> Option<Completion> {
        let cid = q.queue(make)?;
        self.doorbell(q);
        let c = self.complete(q)?;
        (c.cid == cid).then_some(c)
    }

    /// The next completion of `q`, within the command timeout: by interrupt for the I/O
    /// queue when the driver has one, else polled.
    fn complete(&self, q: &mut QueuePair) -> Option<Completion> {
        if let (Some(irq), true) = (self.irq, q.qid() == IO_QID) {
            loop {
                if self.interrupt_due.replace(false) {
                    let counts = &mut self.irq_counts.borrow_mut();
                    let ring = &mut *ring().expect("ring");
                    if !irq::wait_and_rearm(ring, irq, counts, COMMAND_TIMEOUT_NS) {
                        return None;
                    }
                }
                if let Some(c) = q.take(&self.bar) {
                    return Some(c);
                }
                self.interrupt_due.set(true);
            }
        }
        let deadline = self.now_ns() + COMMAND_TIMEOUT_NS;
        let c = q.poll(&self.bar, || self.now_ns() > deadline);
        if c.is_none() {
            println!("no completion within {} ms", COMMAND_TIMEOUT_NS / 1_000_000);
        }
        c
    }
}

/// `queues=N`: queue i's thread on CPU i reads blocks [i·blocks/N, (i+1)·blocks/N) (queue
/// 0's is the main thread, on CPU 0); waits for all, reports per queue, and returns queue 1
/// (for the write) with the read sums.
fn read_by_threads(
    d: &Driver,
    first: QueuePair,
    pairs: &mut [Option<QueuePair>; workers::MAX_QUEUES],
    queues: u64,
    blocks: u64,
    lbas_per_page: u32,
) -> Option<(QueuePair, (u64, u64, u64))> {
    use core::sync::atomic::Ordering::{Acquire, Relaxed};
    workers::LBAS_PER_PAGE.store(lbas_per_page as u64, Relaxed);
    workers::install(0, first);
    for (i, pair) in pairs.iter_mut().enumerate().take(queues as usize).skip(1) {
        workers::install(i, pair.take().expect("queue created"));
    }
    for i in 0..queues {
        let share = &workers::SHARES[i as usize];
        share.first.store(i * blocks / queues, Relaxed);
        share.count.store((i + 1) * blocks / queues - i * blocks / queues, Relaxed);
    }
    for i in 1..queues {
        if !workers::spawn(i, i) {
            println!("could not start the thread of queue {}", i + 1);
            return None;
        }
    }
    workers::serve(&mut ring().expect("ring"), 0);
    let deadline = d.now_ns() + THREADS_TIMEOUT_NS;
    while workers::DONE.load(Acquire) < queues {
        if d.now_ns() > deadline {
            println!("only {} of {queues} queue threads finished", workers::DONE.load(Acquire));
            return None;
        }
        r("sleep", ring().expect("ring").timer_sleep(d.timer, 1_000_000));
    }
    let mut sums = (0, 0, 0);
    let mut counts = d.irq_counts.borrow_mut();
    for i in 0..queues as usize {
        let s = &workers::SHARES[i];
        let q = i + 1;
        ev!(format_args!("q.{}.ran_on", q), s.ran_on.load(Relaxed));
        ev!(format_args!("q.{}.blocks", q), s.count.load(Relaxed));
        ev!(format_args!("q.{}.blocks_matching", q), s.matching.load(Relaxed));
        ev!(format_args!("q.{}.waits", q), s.waits.load(Relaxed));
        ev!(format_args!("q.{}.interrupts", q), s.interrupts.load(Relaxed));
        sums.0 += s.matching.load(Relaxed);
        sums.1 += s.mismatched_words.load(Relaxed);
        sums.2 += s.lost.load(Relaxed);
        counts.waits += s.waits.load(Relaxed);
        counts.interrupts += s.interrupts.load(Relaxed);
        if i > 0 {
            let q = workers::take_back(i)?;
            ev!(format_args!("q.{}.completions", i + 1), q.completions);
            ev!(format_args!("q.{}.errors", i + 1), q.errors);
        }
    }
    let q1 = workers::take_back(0)?;
    Some((q1, sums))
}

/// The I/O queue pairs to ask for under `irq=msix`: `queues=N`, one per CPU the driver is
/// to run on, as far as it holds an `Interrupt` grant for each (entry q for queue q) and
/// no more than `MAX_QUEUES`.
fn wanted_queues() -> u64 {
    let asked = arg_u64("queues", 1).clamp(1, workers::MAX_QUEUES as u64);
    let granted = (0..asked as usize).take_while(|&i| workers::interrupt_of(i).is_some()).count();
    ev!("io_queues.asked", asked);
    (granted as u64).max(1)
}

/// Set Features, Number of Queues: asks for `wanted` pairs; the count to create, the
/// smaller of `wanted` and what the controller allocated (`None` if it refused).
fn negotiate_queues(d: &Driver, admin: &mut QueuePair, wanted: u64) -> Option<u64> {
    let c = d.run(admin, |cid| Command::set_queue_count(cid, wanted as u16))?;
    let granted = granted_queue_pairs(c.result) as u64;
    ev!("io_queues.controller_granted", granted);
    if !c.succeeded() {
        println!("Set Features (Number of Queues) failed: status {:#x}", c.status);
        return None;
    }
    Some(wanted.min(granted))
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn main() -> u64 {
    let blocks = arg_u64("blocks", 64);
    let write_block = arg_u64("write", 37);
    let entries = arg_u64("entries", 16) as u16;
    let by_interrupt = keel_rt::start_info().arg("irq") == Some("msix");
    let die_mid_io = arg_u64("die_mid_io", 0) != 0;
    let wanted = if by_interrupt { wanted_queues() } else { 1 };
    let dm = cap(ObjectKind::DeviceMemory);
    let vm = cap(ObjectKind::VirtualMemory);
    let timer = cap(ObjectKind::Timer);

    let bar_map = ring().expect("ring").call(dm, Method::DeviceMemoryMap, [BAR_VADDR, 0, 0, 0]);
    let mapped = r("DeviceMemoryMap", bar_map);
    // SAFETY: the kernel just mapped the whole BAR (results[1] bytes) uncached at BAR_VADDR,
    // and every offset used (registers, the first doorbells) lies in the first 8 KiB.
    let bar = unsafe { Mmio::new(mapped.results[0]) };
    let iova = r("DMA map", dma::map_run(dm, vm, 0));
    let irq = by_interrupt.then(|| cap(ObjectKind::Interrupt));
    let d = Driver {
        bar,
        timer,
        irq,
        irq_counts: core::cell::RefCell::new(irq::Counts {
            moves_left: arg_u64("moves", 0),
            cpus: arg_u64("cpus", 1),
            cpu_now: arg_u64("irq_cpu", 0),
            ..Default::default()
        }),
        interrupt_due: Default::default(),
    };

    let cap_reg = regs::Cap(d.read64(regs::CAP));
    let version = d.bar.read(regs::VS as usize);
    println!(
        "nvme: CAP {:#x} (MQES {}, stride {}, timeout {} ms), version {version:#x}, BAR {:#x} bytes, DMA at IOVA {iova:#x}",
        cap_reg.0,
        cap_reg.max_queue_entries(),
        cap_reg.doorbell_stride(),
        cap_reg.timeout_ms(),
        mapped.results[1]
    );
    ev!("cap.mqes", cap_reg.max_queue_entries());
    ev!("cap.doorbell_stride", cap_reg.doorbell_stride());
    ev!("version", format_args!("{version:#x}"));
    let page_ok = (cap_reg.page_size_min()..=cap_reg.page_size_max()).contains(&PAGE);
    if !page_ok || !cap_reg.supports_nvm_command_set() {
        println!("the controller takes no 4 KiB pages or no NVM command set");
        return 2;
    }
    let timeout_ms = cap_reg.timeout_ms() as u64;

    // Reset, give it the admin queues, enable.
    if d.bar.read(regs::CC as usize) & regs::CC_ENABLE != 0 {
        d.bar.write(regs::CC as usize, 0);
    }
    if !d.wait_ready(false, timeout_ms) {
        return 3;
    }
    let aqa = regs::aqa(ADMIN_ENTRIES as u32, ADMIN_ENTRIES as u32).expect("admin queue size");
    d.bar.write(regs::AQA as usize, aqa);
    d.write64(regs::ASQ, d.iova(ADMIN_SQ));
    d.write64(regs::ACQ, d.iova(ADMIN_CQ));
    d.bar.write(regs::CC as usize, regs::cc_enable(PAGE).expect("4 KiB pages"));
    if !d.wait_ready(true, timeout_ms) {
        return 3;
    }
    let stride = cap_reg.doorbell_stride();
    let mut admin = QueuePair::new(0, ADMIN_ENTRIES, va(ADMIN_SQ), va(ADMIN_CQ), stride);

    // Identify the controller, then namespace 1.
    let ident = d.iova(IDENTIFY);
    let Some(c) = d.run(&mut admin, |cid| Command::identify(cid, CNS_CONTROLLER, 0, ident)) else {
        return 4;
    };
    let ctrl = Controller::parse(bytes(IDENTIFY));
    println!(
        "identify: status {:#x}, vendor {:#06x}, serial {:?}, model {:?}, {} namespaces",
        c.status,
        ctrl.vid,
        ctrl.serial_str(),
        ctrl.model_str(),
        ctrl.nn
    );
    ev!("identify.status", c.status);
    ev!("identify.vid", format_args!("{:#06x}", ctrl.vid));
    ev!("identify.serial", ctrl.serial_str());
    ev!("identify.standard_entries", yes(ctrl.takes_standard_entries()));
    words(IDENTIFY).fill(0);
    let Some(c) = d.run(&mut admin, |cid| Command::identify(cid, CNS_NAMESPACE, NSID, ident))
    else {
        return 4;
    };
    let Some(ns) = Namespace::parse(bytes(IDENTIFY)) else {
        println!("namespace {NSID}: no usable LBA format (status {:#x})", c.status);
        return 5;
    };
    ev!("ns.block_size", ns.block_size());
    ev!("ns.blocks", ns.nsze);
    ev!("ns.bytes", ns.bytes());
    if ns.block_size() > PAGE || !ctrl.takes_standard_entries() {
        return 5;
    }
    let lbas_per_page = (PAGE / ns.block_size()) as u32;
    let pages_on_disk = ns.bytes() / PAGE;

    // The I/O queue pairs: polled, or queue q's completions raising MSI-X entry q.
    let Some(queues) = negotiate_queues(&d, &mut admin, wanted) else {
        return 6;
    };
    let entries = entries.clamp(2, cap_reg.max_queue_entries().min(256) as u16);
    let mut pairs = [const { None }; workers::MAX_QUEUES];
    let mut queues_ok = true;
    for (i, pair) in pairs.iter_mut().enumerate().take(queues as usize) {
        let qid = IO_QID + i as u16;
        if i > 0 {
            r("DMA map", dma::map_run(dm, vm, i));
        }
        let (sq, cq, _) = queue_pages(i);
        let (sq_iova, cq_iova) = (d.iova(sq), d.iova(cq));
        let (vector, ien) = if by_interrupt { (IO_VECTOR + i as u16, true) } else { (0, false) };
        let made_cq =
            d.run(&mut admin, |cid| Command::create_io_cq(cid, qid, entries, cq_iova, vector, ien));
        let made_sq =
            d.run(&mut admin, |cid| Command::create_io_sq(cid, qid, entries, sq_iova, qid));
        queues_ok &=
            made_cq.is_some_and(|c| c.succeeded()) && made_sq.is_some_and(|c| c.succeeded());
        *pair = Some(QueuePair::new(qid, entries, va(sq), va(cq), stride));
        if by_interrupt {
            // The grant leaves the entry masked: arm it before the first command.
            let irq = workers::interrupt_of(i).unwrap_or_else(|| cap(ObjectKind::Interrupt));
            r("acknowledge", ring().expect("ring").interrupt_acknowledge(irq));
        }
    }
    ev!("io_queue.created", yes(queues_ok));
    ev!("io_queues", queues);
    ev!("dma.maps", dma::maps());
    if !queues_ok {
        return 6;
    }
    let mut io = pairs[0].take().expect("queue 1");
    if arg_u64("bench", 0) > 0 {
        return bench::run(&d, io, &mut pairs, queues, pages_on_disk, lbas_per_page, timeout_ms);
    }

    // Reads, BATCH commands in flight at a time, each checked against the image pattern.
    let blocks = blocks.min(pages_on_disk);
    let (mut matching, mut mismatched_words, mut lost) = (0u64, 0u64, 0u64);
    let mut block = 0;
    if queues > 1 {
        io = match read_by_threads(&d, io, &mut pairs, queues, blocks, lbas_per_page) {
            Some((q, sums)) => {
                (matching, mismatched_words, lost) = sums;
                q
            }
            None => return 8,
        };
        block = blocks;
    }
    while block < blocks {
        let n = (blocks - block).min(BATCH).min(entries as u64 - 1);
        let mut cids = [0u16; BATCH as usize];
        for k in 0..n {
            let lba = (block + k) * lbas_per_page as u64;
            let prp = Prp::for_buffer(d.iova(READ_BUFS + k), PAGE, PAGE).expect("one page");
            cids[k as usize] = io
                .queue(|cid| Command::read(cid, NSID, lba, lbas_per_page, prp))
                .expect("room for the batch");
        }
        d.doorbell(&io);
        if die_mid_io {
            // Leave with the batch in flight: the controller still owns the buffers.
            println!("nvme: exiting with {n} reads in flight");
            return EXIT_MID_IO;
        }
        for _ in 0..n {
            let Some(c) = d.complete(&mut io) else {
                lost += 1;
                continue;
            };
            let Some(k) = cids[..n as usize].iter().position(|&id| id == c.cid) else {
                lost += 1;
                continue;
            };
            let wrong = pattern::mismatches(
                words(READ_BUFS + k as u64),
                (block + k as u64) * PAGE,
                pattern::IMAGE_SEED,
            );
            mismatched_words += wrong as u64;
            if c.succeeded() && wrong == 0 {
                matching += 1;
            }
        }
        for k in 0..n {
            words(READ_BUFS + k).fill(0);
        }
        block += n;
    }
    ev!("read.blocks", blocks);
    ev!("read.blocks_matching", matching);
    ev!("read.words_mismatched", mismatched_words);
    ev!("read.lost", lost);

    // One block written with another pattern, then it and its neighbours read back.
    let target = write_block.min(pages_on_disk.saturating_sub(2)).max(1);
    pattern::fill(words(WRITE_BUF), target * PAGE, pattern::WRITE_SEED);
    let wprp = Prp::for_buffer(d.iova(WRITE_BUF), PAGE, PAGE).expect("one page");
    let lba = |b: u64| b * lbas_per_page as u64;
    let wrote = d.run(&mut io, |cid| Command::write(cid, NSID, lba(target), lbas_per_page, wprp));
    let mut read_back = |b: u64, seed: u64| {
        let prp = Prp::for_buffer(d.iova(READ_BUFS), PAGE, PAGE).expect("one page");
        words(READ_BUFS).fill(0);
        let c = d.run(&mut io, |cid| Command::read(cid, NSID, lba(b), lbas_per_page, prp));
        c.is_some_and(|c| c.succeeded())
            && pattern::mismatches(words(READ_BUFS), b * PAGE, seed) == 0
    };
    let readback = read_back(target, pattern::WRITE_SEED);
    let neighbours =
        read_back(target - 1, pattern::IMAGE_SEED) && read_back(target + 1, pattern::IMAGE_SEED);
    ev!("write.status", wrote.map_or(u16::MAX, |c| c.status));
    ev!("write.block", target);
    ev!("write.readback", if readback { "ok" } else { "mismatch" });
    ev!("write.neighbours_intact", yes(neighbours));

    // Stop the controller before the pages go away with the process.
    d.bar.write(regs::CC as usize, 0);
    let stopped = d.wait_ready(false, timeout_ms);
    ev!("admin.completions", admin.completions);
    ev!("admin.errors", admin.errors);
    ev!("io.completions", io.completions);
    ev!("io.errors", io.errors);
    ev!("io.cq_wraps", io.wraps());
    ev!("disabled", yes(stopped));
    if d.irq.is_some() {
        let counts = d.irq_counts.borrow();
        ev!("irq.waits", counts.waits);
        ev!("irq.interrupts", counts.interrupts);
        if counts.moves + counts.moves_refused > 0 {
            ev!("irq.moves", counts.moves);
            ev!("irq.moves_refused", counts.moves_refused);
        }
    }
    let all = matching == blocks
        && mismatched_words == 0
        && lost == 0
        && readback
        && neighbours
        && admin.errors == 0
        && io.errors == 0
        && stopped;
    if all {
        0
    } else {
        7
    }
}
