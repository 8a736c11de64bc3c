//! A ring-3 NVMe driver on QEMU's `nvme` controller, polled, with DMA only through IOVAs
//! under VT-d: admin queue, identify, one I/O queue pair, 4 KiB reads checked against the
//! disk image the harness wrote (`keel_nvme::pattern`), one write read back. Every figure
//! checked comes from the controller: the identify data it DMA'd, the completion entries
//! taken by their phase tags, the blocks it read from the image. After the run the harness
//! reads the image file: the written block, and only it, holds the write pattern.

use super::{user_proof, xapic_cpu, Proof};
use crate::checks::{custom, eq, ge, keys_equal, Check};
use crate::trace::ev_u64;

/// The disk image's size: 256 blocks of 4 KiB.
const DISK_BYTES: u64 = 1 << 20;
/// The serial number QEMU reports in Identify Controller.
const SERIAL: &str = "keel-nvme-0";
/// What `manifests/nvme-poll.manifest` asks for: blocks read, I/O queue entries.
const BLOCKS: u64 = 64;
const ENTRIES: u64 = 16;
/// The 4 KiB block the driver writes (`write=`): the only one that changes in the image.
const WRITTEN: u64 = 37;
/// Reads the driver keeps in flight at a time (`BATCH` in the driver).
const BATCH: u64 = 8;

pub fn proofs() -> Vec<Proof> {
    vec![
        poll(
            "nvme-poll",
            "ring-3 NVMe driver, polled: identify, an I/O queue pair, 4 KiB reads of the image and a write read back, DMA by IOVA (x2APIC, VT-d)",
        ),
        poll("nvme-poll-xapic", "nvme-poll with the LAPICs in xAPIC mode").cpu(xapic_cpu()),
        msix(
            "nvme-msix",
            "the NVMe driver's I/O completions by MSI-X entry 1 through VT-d (x2APIC): table kept by the kernel, vector mask per delivery and acknowledge",
        ),
        msix("nvme-msix-xapic", "nvme-msix with the LAPICs in xAPIC mode").cpu(xapic_cpu()),
    ]
}

/// Polled: the pin the admin queue asserts stays masked (never acknowledged).
fn poll(name: &'static str, description: &'static str) -> Proof {
    nvme(name, description, "nvme-poll").check(eq("irq.intx_nvme.deliveries", 0))
}

/// Every command completed by interrupt: `irq.msix_nvme_1` delivered on the driver's CPU,
/// each delivery masked the entry and each acknowledge unmasked it (both read back from
/// the table), and the entry is masked again at the end; the table was set up under the
/// function mask with every entry masked; the message is in remappable format; the table
/// and PBA pages were left out of the driver's BAR mapping (read back from its page tables).
fn msix(name: &'static str, description: &'static str) -> Proof {
    let k =
        |s: &str| -> &'static str { Box::leak(format!("irq.msix_nvme_1.{s}").into_boxed_str()) };
    nvme(name, description, "nvme-msix")
        // One wait at least per batch of reads and per single command after them.
        .check(ge("user.nvme.irq.waits", BLOCKS / BATCH + 4))
        .check(interrupts_accounted())
        .check(keys_equal(k("on_target_cpu"), k("deliveries")))
        .check(eq(k("off_target_cpu"), 0))
        .check(eq(k("cpu"), 1))
        .check(eq(k("owner_in_matrix"), "yes"))
        .check(masked_per_delivery())
        .check(keys_equal(k("unmasks_read_back"), k("acknowledgements")))
        .check(eq(k("masked_at_end"), "yes"))
        .check(eq(k("msix_setup_enabled"), "yes"))
        .check(eq(k("msix_setup_function_masked"), "yes"))
        .check(keys_equal(k("msix_setup_masked_entries"), k("msix_table_size")))
        .check(eq(k("msix_enabled_and_open"), "yes"))
        .check(eq(k("format"), "remappable"))
        .check(eq("devmem.msix_pages_withheld", 2))
}

/// Every wait acknowledged, plus the arming acknowledge before the first command; the
/// driver saw no more interrupts than the kernel delivered (one delivered after its last
/// wait stays pending), and at least one per wait.
fn interrupts_accounted() -> Check {
    custom("acknowledgements == waits + 1, waits <= interrupts seen <= deliveries", |t| {
        let waits = ev_u64(t, "user.nvme.irq.waits")?;
        let seen = ev_u64(t, "user.nvme.irq.interrupts")?;
        let acks = ev_u64(t, "irq.msix_nvme_1.acknowledgements")?;
        let delivered = ev_u64(t, "irq.msix_nvme_1.deliveries")?;
        if acks != waits + 1 {
            Err(format!("{acks} acknowledgements for {waits} waits"))
        } else if seen < waits || seen > delivered {
            Err(format!("the driver saw {seen} interrupts in {waits} waits, {delivered} delivered"))
        } else {
            Ok(())
        }
    })
}

/// The entry was masked (read back from the table) at the grant, at every delivery and at
/// the release when the driver exited: deliveries + 2.
fn masked_per_delivery() -> Check {
    custom(
        "irq.msix_nvme_1.masks_read_back == deliveries + 2 (grant, each delivery, release)",
        |t| {
            let masks = ev_u64(t, "irq.msix_nvme_1.masks_read_back")?;
            let deliveries = ev_u64(t, "irq.msix_nvme_1.deliveries")?;
            if masks == deliveries + 2 {
                Ok(())
            } else {
                Err(format!("{masks} masks read back for {deliveries} deliveries"))
            }
        },
    )
}

fn nvme(name: &'static str, description: &'static str, manifest: &'static str) -> Proof {
    let p = user_proof(Proof::new(name, description), manifest, &["nvme-driver"])
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
        .check(eq("iommu.dma", "on"))
        .check(eq("iommu.dma.maps", 1))
        .check(eq("iommu.dma.detaches", 1))
        .check(eq("iommu.dma.domains_live", 0))
        .check(eq("iommu.dma_faults", 0))
        .check(eq("iommu.faults", 0))
}
