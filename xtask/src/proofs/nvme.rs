//! A ring-3 NVMe driver on QEMU's `nvme` controller, polled (`nvme-poll*`), by MSI-X
//! (`nvme-msix*`) or with one queue pair per CPU (`nvme-msix-2*`, `-8`), with DMA only
//! through IOVAs under VT-d: admin queue, identify, I/O queue pairs, 4 KiB reads checked against the
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
/// The controller: 64 I/O queue pairs and 65 MSI-X entries (QEMU's defaults, spelled out).
const DEVICE: &str = "nvme,serial=keel-nvme-0,drive=nvm0,max_ioqpairs=64,msix_qsize=65";
/// The I/O queue pairs the controller grants (`max_ioqpairs`).
const CONTROLLER_PAIRS: u64 = 64;
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
        per_cpu("nvme-msix-2", "one I/O queue pair per CPU (2), a thread each, each queue's MSI-X vector on its thread's CPU (x2APIC, VT-d)", 2),
        per_cpu("nvme-msix-2-xapic", "nvme-msix-2 with the LAPICs in xAPIC mode", 2).cpu(xapic_cpu()),
        per_cpu("nvme-msix-8", "one I/O queue pair per CPU on 8 CPUs, a thread each, each queue's MSI-X vector on its thread's CPU (x2APIC, VT-d)", 8),
        per_cpu("nvme-msix-8-xapic", "nvme-msix-8 with the LAPICs in xAPIC mode", 8).cpu(xapic_cpu()),
        fewer_granted(),
        queue_on_257(),
        moved(),
        death(
            "nvme-msix-death",
            "an NVMe driver exits with reads in flight on its MSI-X queue; the kernel and every frame stay intact and a successor runs on the same device",
        ),
    ]
}

/// Moves of the MSI-X entry made by the driver (`moves=` of `nvme-msix-move.manifest`).
const MOVES: u64 = 12;

/// `nvme-msix` with the entry moved between CPUs 1 and 0 after each I/O doorbell, the
/// commands in flight: every block still read correctly and every command completed by
/// interrupt, deliveries on both CPUs adding up, none on an unowned vector, and the route
/// read back from the entry's IRTE.
fn moved() -> Proof {
    let k =
        |s: &str| -> &'static str { Box::leak(format!("irq.msix_nvme_1.{s}").into_boxed_str()) };
    one_queue(nvme(
        "nvme-msix-move",
        "nvme-msix with its MSI-X entry moved between CPUs after each I/O doorbell, commands in flight (x2APIC, VT-d)",
        "nvme-msix-move",
    ))
    .check(eq("user.nvme.irq.moves", MOVES))
    .check(eq("user.nvme.irq.moves_refused", 0))
    .check(eq(k("moves"), MOVES))
    .check(ge("user.nvme.irq.waits", BLOCKS / BATCH + 4))
    .check(interrupts_accounted())
    .check(custom("deliveries_cpu.0 + deliveries_cpu.1 == deliveries, each > 0", move |t| {
        let on0 = ev_u64(t, "irq.msix_nvme_1.deliveries_cpu.0")?;
        let on1 = ev_u64(t, "irq.msix_nvme_1.deliveries_cpu.1")?;
        let all = ev_u64(t, "irq.msix_nvme_1.deliveries")?;
        if on0 + on1 == all && on0 > 0 && on1 > 0 {
            Ok(())
        } else {
            Err(format!("cpu0 {on0} + cpu1 {on1} vs {all} deliveries"))
        }
    }))
    .check(eq("vectors.unowned_deliveries", 0))
    .check(eq(k("cpu"), 1))
    .check(eq(k("owner_in_matrix"), "yes"))
    .check(eq(k("masked_at_end"), "yes"))
    .check(eq(k("format"), "remappable"))
    .check(keys_equal(k("irte_destination"), k("target_apic_id")))
    .check(keys_equal(k("irte_vector"), k("vector")))
}

/// `queues=3` on CPUs with APIC IDs 0, 1 and 257 (the firmware hands over in x2APIC mode):
/// queue 3's MSI-X entry reaches APIC ID 257, which only a remapping entry in extended
/// interrupt mode can name.
fn queue_on_257() -> Proof {
    let cpu_257 = ["-device", "qemu64-x86_64-cpu,x2apic=on,socket-id=0,core-id=257,thread-id=0"];
    per_cpu(
        "nvme-msix-257",
        "one I/O queue pair per CPU on CPUs with APIC IDs 0, 1 and 257: queue 3's MSI-X entry remapped by VT-d (EIM) to APIC ID 257",
        3,
    )
    .smp(2)
    .cpu(crate::qemu::CpuSpec::new("qemu64", &["+x2apic"]))
    .qemu_extra(&["-smp", "2,maxcpus=260"])
    .qemu_extra(&cpu_257)
    .check(eq("irq.msix_nvme_3.target_apic_id", 257))
    .check(eq("irq.msix_nvme_2.target_apic_id", 1))
}

/// `queues=N` on N CPUs: queue q's thread ran on CPU q-1 (as the kernel reported to it),
/// read its share of the blocks correctly through its own queue, woken by interrupts; the
/// kernel placed entry q's vector in CPU q-1's space and took every one of its deliveries
/// there (counted on the delivery path), masking and unmasking the entry as the contract
/// says (read back from the table).
fn per_cpu(name: &'static str, description: &'static str, queues: u64) -> Proof {
    let manifest: &'static str = Box::leak(format!("nvme-msix-{queues}").into_boxed_str());
    // One DmaMap for the base run (queue 1 in it), one per further queue.
    let p = driver_runs(name, description, manifest, 1, queues).smp(queues as u32);
    queues_on_their_cpus(p, queues, vtd_entry)
        .check(eq("user.nvme.io_queues.asked", queues))
        .check(eq("user.nvme.io_queues.controller_granted", CONTROLLER_PAIRS))
}

/// `nvme-msix-8`'s driver (8 CPUs, 8 entries granted, `queues=8`) on a controller that
/// allocates 4 pairs (`max_ioqpairs=4`): the driver reads the grant from the Set Features
/// completion and creates 4 queues, on CPUs 0-3, which pass every per-queue check.
fn fewer_granted() -> Proof {
    const GRANTED: u64 = 4;
    let p = driver_runs(
        "nvme-msix-granted-4",
        "a driver asking for 8 I/O queue pairs on 8 CPUs creates the 4 the controller grants (Set Features, Number of Queues), each on its own CPU",
        "nvme-msix-8",
        1,
        GRANTED,
    )
    .smp(8);
    let mut p = queues_on_their_cpus(p, GRANTED, vtd_entry)
        .check(eq("user.nvme.io_queues.asked", 8))
        .check(eq("user.nvme.io_queues.controller_granted", GRANTED));
    for arg in p.machine.extra.iter_mut().filter(|a| *a == DEVICE) {
        *arg = DEVICE.replace("max_ioqpairs=64", "max_ioqpairs=4");
    }
    p
}

/// The checks of `queues` I/O queue pairs, queue q on CPU q-1 (see [`per_cpu`]);
/// `remapped(p, q)` adds those of entry q's interrupt-remapping entry.
pub(super) fn queues_on_their_cpus(
    p: Proof,
    queues: u64,
    remapped: fn(Proof, u64) -> Proof,
) -> Proof {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut p = p
        .check(eq("user.nvme.io_queues", queues))
        .check(eq("devmem.msix_pages_withheld", 2))
        .check(eq("vectors.unowned_deliveries", 0))
        .check(same_vector_everywhere(queues))
        .check(own_irte_each(queues));
    for q in 1..=queues {
        let cpu = q - 1;
        let u = |s: &str| leak(format!("user.nvme.q.{q}.{s}"));
        let k = |s: &str| leak(format!("irq.msix_nvme_{q}.{s}"));
        p = p
            .check(eq(u("ran_on"), cpu))
            .check(keys_equal(u("blocks_matching"), u("blocks")))
            .check(ge(u("waits"), 1))
            .check(eq(k("cpu"), cpu))
            .check(eq(k("owner_in_matrix"), "yes"))
            .check(ge(k("deliveries"), 1))
            .check(keys_equal(k("on_target_cpu"), k("deliveries")))
            .check(eq(k("off_target_cpu"), 0))
            .check(keys_equal(k("unmasks_read_back"), k("acknowledgements")))
            .check(eq(k("masked_at_end"), "yes"))
            // The entry's own remapping entry, read back from the table: its CPU, its vector.
            .check(keys_equal(k("irte_destination"), k("target_apic_id")))
            .check(keys_equal(k("irte_vector"), k("vector")))
            .check(ge(&format!("cpu.{cpu}.device_interrupts"), 1));
        p = remapped(p, q);
        if q > 1 {
            p = p.check(keys_equal(u("completions"), u("blocks"))).check(eq(u("errors"), 0));
        }
    }
    p
}

/// `nvme-msix-64` reads a 4 MiB image whole (`blocks=1024`): 16 blocks per queue in 4
/// batches, so each queue's 16-entry completion ring wraps and its entry is re-armed 4
/// times at least.
fn whole_4mib_image(mut p: Proof) -> Proof {
    const BYTES: u64 = 4 << 20;
    const QUEUES: u64 = 64;
    let blocks = BYTES / 4096;
    p.checks.retain(|c| {
        let c = c.to_string();
        !c.contains("user.nvme.ns.bytes") && !c.contains("user.nvme.read.blocks")
    });
    if let Some(disk) = p.disk.as_mut() {
        disk.bytes = BYTES;
    }
    p = p
        .check(eq("user.nvme.ns.bytes", BYTES))
        .check(eq("user.nvme.read.blocks", blocks))
        .check(eq("user.nvme.read.blocks_matching", blocks));
    for q in 1..=QUEUES {
        let u = |s: &str| -> &'static str {
            Box::leak(format!("user.nvme.q.{q}.{s}").into_boxed_str())
        };
        p = p.check(eq(u("blocks"), blocks / QUEUES)).check(ge(u("waits"), blocks / QUEUES / 4));
    }
    p
}

/// VT-d: entry q's message is in remappable format, and its IRTE accepts only the
/// function's requester id.
fn vtd_entry(p: Proof, q: u64) -> Proof {
    let k =
        |s: &str| -> &'static str { Box::leak(format!("irq.msix_nvme_{q}.{s}").into_boxed_str()) };
    p.check(eq(k("format"), "remappable"))
        .check(eq(k("irte_svt"), "requester"))
        .check(keys_equal(k("irte_sid"), k("requester_id")))
}

/// `make test-scale`: one queue pair per CPU on 64 CPUs, the controller's full grant, in
/// both LAPIC modes. 64 vCPUs under TCG on a small host: a generous timeout, and no
/// hard-lockup watch (vCPUs go unscheduled for seconds, see `scale.rs`).
pub(super) fn scale_proofs() -> Vec<Proof> {
    let big = |p: Proof| {
        p.memory("512M")
            .args("lockup_ms=0")
            .accels(super::Accels::TcgOnly)
            .timeout_secs(600)
            .scale()
    };
    vec![
        big(whole_4mib_image(per_cpu("nvme-msix-64", "one I/O queue pair per CPU on 64 CPUs (the controller's 64), a thread each, each queue's MSI-X vector on its thread's CPU, one DmaMap per queue (x2APIC, VT-d)", 64))),
        big(whole_4mib_image(per_cpu("nvme-msix-64-xapic", "nvme-msix-64 with the LAPICs in xAPIC mode", 64)).cpu(xapic_cpu())),
    ]
}

/// Polled: the pin the admin queue asserts stays masked (never acknowledged).
fn poll(name: &'static str, description: &'static str) -> Proof {
    one_queue(nvme(name, description, "nvme-poll")).check(eq("irq.intx_nvme.deliveries", 0))
}

/// Every queue got the same vector number, each in its own CPU's space (the lowest one of
/// the range, nothing else being placed there): one global table could not give it twice.
fn same_vector_everywhere(queues: u64) -> Check {
    custom("every queue's vector is the same number, on its own CPU", move |t| {
        let first = ev_u64(t, "irq.msix_nvme_1.vector")?;
        for q in 2..=queues {
            let v = ev_u64(t, &format!("irq.msix_nvme_{q}.vector"))?;
            if v != first {
                return Err(format!("queue {q} has vector {v}, queue 1 {first}"));
            }
        }
        Ok(())
    })
}

/// Every MSI-X entry has its own remapping entry (index), so each can name its own CPU.
fn own_irte_each(queues: u64) -> Check {
    custom("every queue's MSI-X entry has its own IRTE index", move |t| {
        let mut seen = std::collections::BTreeSet::new();
        for q in 1..=queues {
            let index = ev_u64(t, &format!("irq.msix_nvme_{q}.remap_index"))?;
            if !seen.insert(index) {
                return Err(format!("queue {q} shares IRTE {index} with another queue"));
            }
        }
        Ok(())
    })
}

/// `admin.completions` = 2 identifies + Set Features (Number of Queues) + 2 per I/O queue
/// created.
fn admin_completions() -> Check {
    custom("user.nvme.admin.completions == 3 + 2 * io_queues", |t| {
        let queues = ev_u64(t, "user.nvme.io_queues").unwrap_or(1);
        let admin = ev_u64(t, "user.nvme.admin.completions")?;
        if admin == 3 + 2 * queues {
            Ok(())
        } else {
            Err(format!("{admin} admin completions for {queues} I/O queues"))
        }
    })
}

/// One I/O queue does every read, the write and the three reads back.
fn one_queue(p: Proof) -> Proof {
    let k = |s: &str| -> &'static str { Box::leak(format!("user.nvme.{s}").into_boxed_str()) };
    p.check(eq(k("io.completions"), BLOCKS + 4)).check(ge(k("io.cq_wraps"), (BLOCKS + 4) / ENTRIES))
}

/// Every command completed by interrupt: `irq.msix_nvme_1` delivered on the driver's CPU,
/// each delivery masked the entry and each acknowledge unmasked it (both read back from
/// the table), and the entry is masked again at the end; the table was set up under the
/// function mask with every entry masked; the message is in remappable format; the table
/// and PBA pages were left out of the driver's BAR mapping (read back from its page tables).
fn msix(name: &'static str, description: &'static str) -> Proof {
    let k =
        |s: &str| -> &'static str { Box::leak(format!("irq.msix_nvme_1.{s}").into_boxed_str()) };
    one_queue(nvme(name, description, "nvme-msix"))
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
    driver_runs(name, description, manifest, 1, 1)
}

/// A driver that dies with reads in flight on its MSI-X queue, then a successor on the same
/// device: the kernel revoked the first one's DMA domain and released its interrupt (entry
/// masked), no frame leaked, and the successor passes every check through the re-granted
/// entry.
fn death(name: &'static str, description: &'static str) -> Proof {
    one_queue(driver_runs(name, description, "nvme-msix-death", 2, 1))
        .check(eq("proc.nvme_dying.exit", 9))
        .check(eq("proc.nvme_dying.thread_faults", 0))
        .check(ge("user.nvme.irq.waits", BLOCKS / BATCH + 4))
        .check(eq("irq.msix_nvme_1.masked_at_end", "yes"))
        .check(keys_equal("irq.msix_nvme_1.unmasks_read_back", "irq.msix_nvme_1.acknowledgements"))
        .check(eq("irq.msix_nvme_1.off_target_cpu", 0))
        .check(eq("devmem.msix_pages_withheld", 4))
}

/// The checks every run shares; `runs` drivers mapped their DMA in `maps_each` runs (one
/// `DmaMap` each, counted by the kernel) and were all revoked.
fn driver_runs(
    name: &'static str,
    description: &'static str,
    manifest: &'static str,
    runs: u64,
    maps_each: u64,
) -> Proof {
    let p = user_proof(Proof::new(name, description), manifest, &["nvme-driver"])
        .machine("q35,kernel-irqchip=split")
        .qemu_extra(&["-device", "intel-iommu,intremap=on,eim=on"]);
    driver_checks(controller(p), runs, maps_each)
        .check(eq("iommu.dma_faults", 0))
        .check(eq("iommu.faults", 0))
}

/// The controller (after whatever devices `p` has) with its fresh pattern image.
pub(super) fn controller(p: Proof) -> Proof {
    p.qemu_extra(&["-device", DEVICE]).disk("nvm0", DISK_BYTES, Some(WRITTEN))
}

/// What the controller did for the driver, on either IOMMU.
pub(super) fn driver_checks(p: Proof, runs: u64, maps_each: u64) -> Proof {
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
        // Two identifies, Set Features, then a queue creation pair per I/O queue.
        .check(admin_completions())
        .check(eq(k("admin.errors"), 0))
        .check(eq(k("io.errors"), 0))
        .check(eq(k("disabled"), "yes"))
        .check(eq("iommu.dma", "on"))
        .check(eq("iommu.dma.maps", runs * maps_each))
        .check(eq("iommu.dma.detaches", runs))
        .check(eq("iommu.dma.domains_live", 0))
}
