//! `dma_watch=<phys>`: the DMA proofs aim a device at a page of the kernel image. The page's
//! checksum is taken before the programs run and after they exited, read from the page
//! itself through the physical map, so a DMA write that landed shows as a changed sum.

use keel_boot::cmdline::CommandLine;

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
    let phys = cmdline.get_u64("dma_watch").ok().flatten()?;
    let page = phys & !0xFFF;
    if let Some(edu) = fw::pci::find(0x1234, 0x11e8, 0) {
        ev!("dma.edu_source_id", format_args!("{:#x}", edu.addr.bdf()));
    }
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
