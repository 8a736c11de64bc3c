//! `dma_bench=<rounds>`: before the programs run, the kernel drives edu's DMA engine itself
//! for `rounds` round trips of one 4-KiB page (memory → edu's buffer → memory), timing each
//! from the first start to the second completion in TSC cycles. With DMA translation on,
//! the two frames are mapped into a domain of edu through the same domain code drivers use
//! (`iommu::dma_map`) and edu addresses them by IOVA; without an IOMMU it addresses them by
//! physical address. The same machine with and without `-device intel-iommu` gives the
//! round trip with translation on and off. Each round's copy is checked in the frame.

use keel_boot::cmdline::CommandLine;

use fw::arch::x86_64::{cpu::rdtsc, iommu};
use fw::mm::{frames, paging, phys_to_virt};
use fw::pci;

/// The owner the benchmark's domain is registered for: no process has this id.
const BENCH_OWNER: u64 = u64::MAX;
const MAX_ROUNDS: usize = 64;
/// edu registers (QEMU docs/specs/edu.rst) and its buffer's DMA address.
const REG_DMA_SRC: usize = 0x80;
const REG_DMA_DST: usize = 0x88;
const REG_DMA_COUNT: usize = 0x90;
const REG_DMA_CMD: usize = 0x98;
const DMA_RUN: u32 = 1;
const DMA_TO_MEMORY: u32 = 2;
const EDU_BUFFER: u64 = 0x40000;

struct Edu(*mut u32);

impl Edu {
    fn write(&self, reg: usize, v: u32) {
        // SAFETY: `reg` is one of edu's register offsets in its uncached BAR 0 mapping.
        unsafe { self.0.byte_add(reg).write_volatile(v) }
    }

    fn read(&self, reg: usize) -> u32 {
        // SAFETY: as in `write`.
        unsafe { self.0.byte_add(reg).read_volatile() }
    }

    /// One 4-KiB transfer between `memory` (a device address) and edu's buffer, waited for
    /// (up to 1 s); true when it completed.
    fn transfer(&self, memory: u64, to_memory: bool) -> bool {
        let (src, dst) = if to_memory { (EDU_BUFFER, memory) } else { (memory, EDU_BUFFER) };
        self.write(REG_DMA_SRC, src as u32);
        self.write(REG_DMA_SRC + 4, (src >> 32) as u32);
        self.write(REG_DMA_DST, dst as u32);
        self.write(REG_DMA_DST + 4, (dst >> 32) as u32);
        self.write(REG_DMA_COUNT, 4096);
        self.write(REG_DMA_CMD, DMA_RUN | if to_memory { DMA_TO_MEMORY } else { 0 });
        fw::time::spin_until(0, 1_000_000_000, || self.read(REG_DMA_CMD) & DMA_RUN == 0)
    }
}

fn words(frame: u64) -> *mut u64 {
    phys_to_virt(frame).as_mut_ptr::<u64>()
}

/// Word `i` of the page round `round` copies.
fn pattern(round: usize, i: usize) -> u64 {
    (round * 512 + i) as u64 ^ 0xD3A
}

/// Whether `frame` holds round `round`'s page.
fn holds(frame: u64, round: usize) -> bool {
    // SAFETY: `frame` is one of the benchmark's own frames, in the physical map; the
    // read has no side effects, whatever the device still does.
    (0..512).all(|i| unsafe { words(frame).add(i).read_volatile() } == pattern(round, i))
}

/// Runs the round trips when `dma_bench` asks for them; `bench.dma.*` evidence.
pub fn run(cmdline: &CommandLine) {
    let rounds =
        super::support::option_u64(cmdline, "dma_bench", 0).min(MAX_ROUNDS as u64) as usize;
    if rounds == 0 {
        return;
    }
    let Some(dev) = pci::find(0x1234, 0x11e8, 0) else {
        ev!("bench.dma.edu", "missing");
        return;
    };
    let (Some(src), Some(dst)) = (frames::allocate_zeroed(), frames::allocate_zeroed()) else {
        ev!("bench.dma.edu", "no-memory");
        return;
    };
    let translated = iommu::dma_translation();
    let bdf = dev.addr.bdf();
    let addresses = if translated {
        let map = |frame, writes| iommu::dma_map(bdf, BENCH_OWNER, 0, &[frame], writes);
        match (map(src, false), map(dst, true)) {
            (Some(Ok(s)), Some(Ok(d))) => Some((s, d)),
            _ => None,
        }
    } else {
        Some((src, dst))
    };
    ev!("bench.dma.translation", if translated { "on" } else { "off" });
    let mut cycles = [0u64; MAX_ROUNDS];
    let mut copied = 0;
    if let Some((src_addr, dst_addr)) = addresses {
        let bar = paging::map_physical(dev.bars[0].phys, 0x100, paging::Caching::Uncached);
        let edu = Edu(bar.as_mut_ptr::<u32>());
        pci::enable(dev, true, true, false);
        for (round, sample) in cycles.iter_mut().take(rounds).enumerate() {
            for i in 0..512 {
                // SAFETY: `src` and `dst` are frames this function allocated, in the
                // physical map; the device reads `src` and writes `dst` only during the
                // transfers below.
                unsafe {
                    words(src).add(i).write_volatile(pattern(round, i));
                    words(dst).add(i).write_volatile(0);
                }
            }
            let start = rdtsc();
            let done = edu.transfer(src_addr, false) && edu.transfer(dst_addr, true);
            *sample = rdtsc() - start;
            if done && holds(dst, round) {
                copied += 1;
            }
        }
        pci::disable_bus_master(dev);
    }
    if translated {
        iommu::dma_detach(bdf, BENCH_OWNER);
    }
    frames::free(src);
    frames::free(dst);
    let samples = &mut cycles[..rounds];
    samples.sort_unstable();
    let median = samples[rounds / 2];
    let worst = samples[rounds - 1];
    ev!("bench.dma.rounds", rounds);
    ev!("bench.dma.rounds_copied", copied);
    ev!("bench.dma.roundtrip_median_cycles", median);
    ev!("bench.dma.roundtrip_max_cycles", worst);
    ev!("bench.dma.roundtrip_median_us", fw::time::tsc_to_ns(median) / 1000);
}
