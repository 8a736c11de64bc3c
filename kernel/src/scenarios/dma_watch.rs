//! `dma_watch=<phys>`: the DMA proofs aim a device at a page of the kernel image. The page's
//! checksum is taken before the programs run and after they exited, read from the page
//! itself through the physical map, so a DMA write that landed shows as a changed sum.
//!
//! `dma_death_seed=<seed>`: a driver dies with a DMA write of the pattern `seed` in flight
//! into one of its pages (`edu-driver mode=dma-death`). Revocation records the frames it
//! unpins (the framework's `iommu::death_watch`); after the programs ran, each is read back through the
//! physical map, with the allocator's word on whether it is free.

use keel_boot::cmdline::CommandLine;

use fw::arch::x86_64::iommu::death_watch;
use fw::mm::phys_to_virt;

/// The watched page and its checksum before the programs ran.
pub struct Watch {
    page: u64,
    before: u64,
}

/// FNV-1a over the 4-KiB page at `page`, read volatile (a device may have written it).
fn checksum(page: u64) -> u64 {
    let bytes = phys_to_virt(page).as_ptr::<u8>();
    let mut sum: u64 = 0xcbf2_9ce4_8422_2325;
    for i in 0..4096 {
        // SAFETY: `page` lies in the kernel image (checked by `start`), which the physical
        // map covers; reading it has no side effects.
        let b = unsafe { bytes.add(i).read_volatile() };
        sum = (sum ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    sum
}

/// Checksums the page named by `dma_watch`, when it lies inside the kernel image.
pub fn start(cmdline: &CommandLine) -> Option<Watch> {
    let watched = cmdline.get_u64("dma_watch").ok().flatten();
    if watched.is_some() || cmdline.get("dma_death_seed").is_some() {
        if let Some(edu) = fw::pci::find(0x1234, 0x11e8, 0) {
            ev!("dma.edu_source_id", format_args!("{:#x}", edu.addr.bdf()));
        }
    }
    let page = watched? & !0xFFF;
    let image = fw::mm::kernel_image_phys();
    let inside = page >= image.start && page + 4096 <= image.end;
    ev!("dma.watch.phys", format_args!("{page:#x}"));
    ev!("dma.watch.in_kernel_image", if inside { "yes" } else { "no" });
    if !inside {
        return None;
    }
    let before = checksum(page);
    ev!("dma.watch.before", format_args!("{before:#x}"));
    Some(Watch { page, before })
}

/// Checksums the page again; `dma.watch.unchanged` compares the two sums.
pub fn finish(watch: Option<Watch>) {
    let Some(w) = watch else { return };
    let after = checksum(w.page);
    ev!("dma.watch.after", format_args!("{after:#x}"));
    ev!("dma.watch.unchanged", if after == w.before { "yes" } else { "no" });
}

/// How long after the programs `death_evidence` waits: three times edu's transfer delay.
const DEATH_TRANSFER_WAIT_NS: u64 = 300_000_000;

/// Word `i` of the pattern `edu-driver` fills a page with for `seed` (its `fill`).
fn pattern_word(i: usize, seed: u64) -> u64 {
    (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed
}

/// `dma.death.*`: per frame mapped for DMA, read now (the in-flight transfer had its 100 ms):
/// how many of its words hold the dead driver's pattern, and whether the allocator has it
/// free; and how many frames revocation unpinned before they were freed.
pub fn death_evidence(cmdline: &CommandLine) {
    let Ok(Some(seed)) = cmdline.get_u64("dma_death_seed") else { return };
    // The programs may have ended right after the death: give the transfer (100 ms of
    // virtual time) time to land or fault before looking.
    fw::time::delay_ns(DEATH_TRANSFER_WAIT_NS);
    ev!("dma.death.mapped_frames", death_watch::mapped_frames().count());
    let mut pattern_words = 0usize;
    let mut free = 0usize;
    for frame in death_watch::mapped_frames() {
        let words = phys_to_virt(frame).as_ptr::<u64>();
        pattern_words += (0..512)
            // SAFETY: `frame` is RAM the allocator manages (it was a process page), inside the
            // physical map; reading it has no side effects whoever owns it now.
            .filter(|&i| unsafe { words.add(i).read_volatile() } == pattern_word(i, seed))
            .count();
        if fw::mm::frames::is_free(frame) {
            free += 1;
        }
    }
    ev!("dma.death.frames_free", free);
    ev!("dma.death.revoked_before_free", death_watch::revoked_before_free());
    ev!("dma.death.pattern_words", pattern_words);
}
