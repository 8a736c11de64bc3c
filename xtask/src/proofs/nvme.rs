//! A ring-3 NVMe driver on QEMU's `nvme` controller, polled, with DMA only through IOVAs
//! under VT-d: admin queue, identify, one I/O queue pair, 4 KiB reads checked against the
//! disk image the harness wrote (`keel_nvme::pattern`), one write read back. Every figure
//! checked comes from the controller: the identify data it DMA'd, the completion entries
//! taken by their phase tags, the blocks it read from the image. After the run the harness
//! reads the image file: the written block, and only it, holds the write pattern.

use super::{user_proof, xapic_cpu, Proof};
use crate::checks::{eq, ge};

/// The disk image's size: 256 blocks of 4 KiB.
const DISK_BYTES: u64 = 1 << 20;
/// The serial number QEMU reports in Identify Controller.
const SERIAL: &str = "keel-nvme-0";
/// What `manifests/nvme-poll.manifest` asks for: blocks read, I/O queue entries.
const BLOCKS: u64 = 64;
const ENTRIES: u64 = 16;
/// The 4 KiB block the driver writes (`write=`): the only one that changes in the image.
const WRITTEN: u64 = 37;

pub fn proofs() -> Vec<Proof> {
    vec![
        poll(
            "nvme-poll",
            "ring-3 NVMe driver, polled: identify, an I/O queue pair, 4 KiB reads of the image and a write read back, DMA by IOVA (x2APIC, VT-d)",
        ),
        poll("nvme-poll-xapic", "nvme-poll with the LAPICs in xAPIC mode").cpu(xapic_cpu()),
    ]
}

fn poll(name: &'static str, description: &'static str) -> Proof {
    let p = user_proof(Proof::new(name, description), "nvme-poll", &["nvme-driver"])
        .machine("q35,kernel-irqchip=split")
        .qemu_extra(&["-device", "intel-iommu,intremap=on,eim=on"])
        .qemu_extra(&["-device", "nvme,serial=keel-nvme-0,drive=nvm0"])
        .disk("nvm0", DISK_BYTES, Some(WRITTEN));
    let k = |s: &str| -> &'static str { Box::leak(format!("user.nvme.{s}").into_boxed_str()) };
    p.check(eq("proc.nvme.exit", 0))
        .check(eq(k("identify.status"), 0))
        .check(eq(k("identify.serial"), SERIAL))
        .check(eq(k("identify.vid"), "0x1b36"))
        .check(eq(k("ns.bytes"), DISK_BYTES))
        .check(eq(k("io_queue.created"), "yes"))
        .check(eq(k("read.blocks"), BLOCKS))
        .check(eq(k("read.blocks_matching"), BLOCKS))
        .check(eq(k("read.words_mismatched"), 0))
        .check(eq(k("read.lost"), 0))
        .check(eq(k("write.status"), 0))
        .check(eq(k("write.block"), WRITTEN))
        .check(eq(k("write.readback"), "ok"))
        .check(eq(k("write.neighbours_intact"), "yes"))
        // Two identifies and two queue creations; the reads, the write and three reads back.
        .check(eq(k("admin.completions"), 4))
        .check(eq(k("admin.errors"), 0))
        .check(eq(k("io.completions"), BLOCKS + 4))
        .check(eq(k("io.errors"), 0))
        .check(ge(k("io.cq_wraps"), (BLOCKS + 4) / ENTRIES))
        .check(eq(k("disabled"), "yes"))
        // Polled: the pin the admin queue asserts stays masked (never acknowledged).
        .check(eq("irq.intx_nvme.deliveries", 0))
        .check(eq("iommu.dma", "on"))
        .check(eq("iommu.dma.maps", 1))
        .check(eq("iommu.dma.detaches", 1))
        .check(eq("iommu.dma.domains_live", 0))
        .check(eq("iommu.dma_faults", 0))
        .check(eq("iommu.faults", 0))
}
