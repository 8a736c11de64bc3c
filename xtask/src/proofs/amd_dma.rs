//! Proofs of AMD-Vi DMA translation, default deny, with the VT-d proofs' user programs and
//! manifests on EPYC-Rome with QEMU's `amd-iommu` (TCG). Every device table entry denies
//! (V, TV, paging mode over an empty table, IR = IW = 0) until a driver maps memory: then
//! its function's entry names a domain's I/O page table.
//!
//! What QEMU 10.0 shows: it writes no event-log entries (its log-full test is inverted), so
//! the kernel has no fault records; the evidence of a refused DMA is the transfer not
//! landing (the watched kernel page's checksum, the driver's own page) and QEMU's
//! `amdvi_page_fault` trace, which names only the address. The unit's translations
//! (`amdvi_translation_result`, `amdvi_cache_update`) and page invalidations
//! (`amdvi_pages_inval`) are traced and cross-checked against the kernel's counters.

use super::amd::{AMD_IOMMU_NO_XT, AMD_IOMMU_XT};
use super::dma::{
    attack_program_checks, bench_map_checks, bench_rounds, death_frame_checks,
    roundtrip_driver_checks,
};
use super::user::user_proof;
use super::{Accels, Proof};
use crate::checks::{eq, keys_equal};
use crate::qemu::CpuSpec;
use crate::trace::{ev_u64, Trace};

/// The unit's trace events these proofs read.
const AMDVI_DMA_TRACE: &[&str] = &[
    "amdvi_page_fault",
    "amdvi_pages_inval",
    "amdvi_devtab_inval",
    "amdvi_translation_result",
    "amdvi_cache_update",
    "amdvi_iotlb_hit",
    "amdvi_mode_invalid",
    "amdvi_command_error",
    "amdvi_completion_wait",
];
/// The kernel page `manifests/dma-attack.manifest` aims at (its `target=`).
const WATCHED_PAGE: &str = "dma_watch=0x101000";
/// The IOVA the manifest writes (its `iova=`).
const UNMAPPED_IOVA: u64 = 0x800_0000;

/// x2APIC with GA/XT interrupt entries, or xAPIC with legacy ones.
#[derive(Clone, Copy)]
enum Mode {
    X2Apic,
    XApic,
}

pub fn proofs() -> Vec<Proof> {
    vec![
        deny("amd-dma-deny", Mode::X2Apic),
        deny("amd-dma-deny-xapic", Mode::XApic),
        roundtrip("amd-dma-roundtrip", Mode::X2Apic),
        roundtrip("amd-dma-roundtrip-xapic", Mode::XApic),
        death(),
        bench(),
    ]
}

/// `cargo xtask bench --filter dma`: the kernel's edu round trips through IOVAs and the
/// driver's `DeviceMemoryDmaMap`/`DmaUnmap` cost with AMD-Vi translating (beside VT-d's
/// `bench-dma-translated`); every round's copy checked in the destination frame.
fn bench() -> Proof {
    let p = amd_machine(
        Proof::new(
            "bench-dma-translated-amd",
            "edu DMA round trips through IOVAs (AMD-Vi on); DmaMap/DmaUnmap cost",
        ),
        "dma-bench",
        Mode::X2Apic,
    );
    bench_map_checks(bench_rounds(p, true))
}

fn amd_machine(p: Proof, manifest: &'static str, mode: Mode) -> Proof {
    let (device, cpu, remap) = match mode {
        // The unit first (00:03.0), edu after it (00:04.0).
        Mode::X2Apic => (AMD_IOMMU_XT, "+x2apic", "ga"),
        Mode::XApic => (AMD_IOMMU_NO_XT, "-x2apic", "legacy"),
    };
    user_proof(p.qemu_extra(device), manifest, &["edu-driver"])
        .cpu(CpuSpec::new("EPYC-Rome", &[cpu]))
        .accels(Accels::TcgOnly)
        .check(eq("iommu.amd.remap", remap))
}

/// Every entry of the device table as memory holds it at the end: deny, except none.
fn table_checks(p: Proof) -> Proof {
    p.check(eq("iommu.dma", "on"))
        .check(eq("iommu.amd.dma.levels", 3))
        .check(keys_equal("iommu.amd.dma.entries_deny", "iommu.amd.dma.deny_written"))
        .check(eq("iommu.amd.dma.entries_translated", 0))
        .check(eq("iommu.amd.dma.entries_untranslated", 0))
        .check(eq("iommu.amd.dma.entries_blocked", 0))
        .check(eq("iommu.amd.dma.empty_root_empty", "yes"))
        .check(eq("iommu.dma.domains_live", 0))
}

/// The page addresses of `amdvi_page_fault`, consecutive repeats counted once (one
/// transfer's accesses to one page).
fn faulted_pages(tr: &Trace) -> Vec<u64> {
    let mut pages: Vec<u64> = Vec::new();
    for e in tr.matching("amdvi_page_fault", &[]) {
        let addr = e.raw.rsplit(' ').next().and_then(keel_evidence::parse_u64);
        if let Some(page) = addr.map(|a| a & !0xFFF) {
            if pages.last() != Some(&page) {
                pages.push(page);
            }
        }
    }
    pages
}

/// edu's requester id as QEMU's trace spells it (`00:04.0`).
fn edu_devid(t: &keel_evidence::Transcript) -> Result<String, String> {
    let id = ev_u64(t, "dma.edu_source_id")?;
    Ok(format!("{:02x}:{:02x}.{:x}", id >> 8, (id >> 3) & 0x1F, id & 7))
}

/// edu's DMA aimed at a kernel page (write, then read) and at an IOVA no domain maps, by a
/// driver that mapped nothing: the entry denies each request, the page is unchanged.
fn deny(name: &'static str, mode: Mode) -> Proof {
    let p = amd_machine(
        Proof::new(
            name,
            "edu's DMA at kernel memory and an unmapped IOVA is refused by AMD-Vi's deny entry (EPYC-Rome)",
        ),
        "dma-attack",
        mode,
    )
    .args(WATCHED_PAGE);
    let p = table_checks(p)
        .check(eq("iommu.dma.maps", 0))
        .check(eq("iommu.amd.dma.devtab_invalidations", 0));
    attack_program_checks(p)
        .check(eq("dma.watch.in_kernel_image", "yes"))
        .check(eq("dma.watch.unchanged", "yes"))
        .trace(AMDVI_DMA_TRACE)
        .trace_check(
            "amdvi_page_fault at the kernel page, then at the IOVA; every result edu's, to no page",
            deny_traced,
        )
}

fn deny_traced(t: &keel_evidence::Transcript, tr: &Trace) -> Result<(), String> {
    let page = ev_u64(t, "dma.watch.phys")?;
    let pages = faulted_pages(tr);
    // The write and the read of the kernel page are consecutive: one run of that page.
    if pages != [page, UNMAPPED_IOVA] {
        return Err(format!("faulted pages {pages:x?}, want [{page:#x}, {UNMAPPED_IOVA:#x}]"));
    }
    // QEMU traces each refused access's result: from edu, to no page at all.
    let edu = edu_devid(t)?;
    for e in tr.matching("amdvi_translation_result", &[]) {
        if !e.raw.contains(&format!("devid: {edu} ")) || !e.raw.ends_with("hpa 0x0") {
            return Err(format!("a translation that is not edu's refusal: {}", e.raw));
        }
    }
    let cached = tr.matching("amdvi_cache_update", &[]).count();
    if cached != 0 {
        return Err(format!("{cached} translations cached for a device with no domain"));
    }
    Ok(())
}

/// Two edu drivers in turn map their pages and copy a pattern through edu by IOVA; a write
/// to the read-only page and a write after `DmaUnmap` do not land; each exit revokes the
/// domain (the entry back to deny) before its frames are freed.
fn roundtrip(name: &'static str, mode: Mode) -> Proof {
    let mut p = amd_machine(
        Proof::new(
            name,
            "edu DMA round trips through IOVAs, pinning, unmap and revocation under AMD-Vi (EPYC-Rome)",
        ),
        "dma-roundtrip",
        mode,
    );
    for key in ["edu_rt", "edu_rt2"] {
        p = roundtrip_driver_checks(p, key);
    }
    table_checks(p)
        .check(eq("proc.edu_rt.exit", 0))
        .check(eq("proc.edu_rt2.exit", 0))
        .check(eq("iommu.dma.maps", 4))
        .check(eq("iommu.dma.unmaps", 2))
        .check(eq("iommu.dma.detaches", 2))
        .check(eq("iommu.dma.pinned_refusals", 2))
        // Per driver: the attach drops domain 0's and its own cached pages, the unmap its
        // range, the revocation the whole domain; one devtab invalidation each way.
        .check(eq("iommu.amd.dma.page_invalidations", 8))
        .check(eq("iommu.amd.dma.devtab_invalidations", 4))
        .trace(AMDVI_DMA_TRACE)
        .trace_check(
            "amdvi_pages_inval: one per page invalidation the kernel completed",
            |t, tr| {
                let want = ev_u64(t, "iommu.amd.dma.page_invalidations")?;
                let traced = tr.matching("amdvi_pages_inval", &[]).count() as u64;
                if traced == want {
                    Ok(())
                } else {
                    Err(format!("{traced} amdvi_pages_inval traced, kernel completed {want}"))
                }
            },
        )
        .trace_check(
            "per domain: the unmapped page translated to its frame before the unmap's invalidation and to nothing after it",
            unmap_traced,
        )
}

/// A driver dies with edu's write of a pattern into its one DMA page in flight (`edu-hold`
/// keeps bus mastering on): the revocation (entry back to deny, devtab entry and domain
/// invalidated) precedes the free of the frame, which never holds the pattern; the write's
/// translations after the revocation's invalidation lead nowhere.
fn death() -> Proof {
    let p = table_checks(
        amd_machine(
            Proof::new(
                "amd-dma-death",
                "DMA in flight at driver death never lands in the freed frame (AMD-Vi, EPYC-Rome)",
            ),
            "dma-death",
            Mode::X2Apic,
        )
        .args("dma_death_seed=0xd1e"),
    )
    .check(eq("proc.edu_death.exit", 0))
    .check(eq("proc.edu_hold.exit", 0))
    .check(eq("user.edu_death.in_flight_at_death", "yes"))
    .check(eq("iommu.dma.maps", 1))
    .check(eq("iommu.dma.detaches", 1));
    death_frame_checks(p)
        .trace(AMDVI_DMA_TRACE)
        .trace_check(
            "after the revocation's invalidation, edu's write at the dead driver's IOVA faults and translates to nothing",
            |t, tr| {
                let iova = ev_u64(t, "user.edu_death.death_iova")?;
                let last_inval = tr
                    .events
                    .iter()
                    .rposition(|e| e.name == "amdvi_pages_inval")
                    .ok_or("no amdvi_pages_inval")?;
                let after = &tr.events[last_inval..];
                let results: Vec<_> = after
                    .iter()
                    .filter(|e| e.name == "amdvi_translation_result")
                    .filter_map(translation)
                    .collect();
                let faults = after.iter().filter(|e| e.name == "amdvi_page_fault").count();
                if results.is_empty() || faults == 0 || results.iter().any(|r| *r != (iova, 0)) {
                    return Err(format!("after the revocation: translations {results:x?}, {faults} faults"));
                }
                Ok(())
            },
        )
}

/// A translation QEMU reported: (IOVA page, physical page).
fn translation(e: &crate::trace::TraceEvent) -> Option<(u64, u64)> {
    let num = |key: &str| {
        let (_, rest) = e.raw.split_once(key)?;
        keel_evidence::parse_u64(rest.split_whitespace().next()?)
    };
    Some((num(" gpa ")? & !0xFFF, num(" hpa ")?))
}

/// Walks the trace in order. Each domain's `amdvi_pages_inval` come as: the attach, the
/// unmap, the revocation. Between the unmap's and the revocation's, every translation is of
/// a page the domain had translated to a frame before, and now to none (a stale IOTLB entry
/// would name the old frame); at least one such refused access per domain.
fn unmap_traced(_: &keel_evidence::Transcript, tr: &Trace) -> Result<(), String> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut invals: BTreeMap<u64, u32> = BTreeMap::new();
    let mut current: Option<u64> = None;
    let mut mapped: BTreeSet<u64> = BTreeSet::new();
    let mut refused: BTreeMap<u64, u32> = BTreeMap::new();
    for e in &tr.events {
        match e.name.as_str() {
            "amdvi_pages_inval" => {
                let d = e.raw.split_whitespace().find_map(keel_evidence::parse_u64);
                let Some(d) = d.filter(|d| *d != 0) else { continue };
                let n = invals.entry(d).or_default();
                *n += 1;
                if *n == 1 {
                    mapped.clear();
                }
                current = Some(d);
            }
            "amdvi_translation_result" => {
                let (Some(d), Some((page, phys))) = (current, translation(e)) else { continue };
                match invals.get(&d) {
                    Some(1) if phys != 0 => {
                        mapped.insert(page);
                    }
                    Some(2) => {
                        if phys != 0 || !mapped.contains(&page) {
                            return Err(format!("after domain {d}'s unmap: {}", e.raw));
                        }
                        *refused.entry(d).or_default() += 1;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let domains: Vec<u64> = invals.keys().copied().collect();
    if domains.len() != 2 || domains.iter().any(|d| invals[d] != 3 || !refused.contains_key(d)) {
        return Err(format!("invalidations per domain {invals:?}, refused accesses {refused:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EV: &str = "EV dma.edu_source_id=0x20 dma.watch.phys=0x101000\n";

    fn judge(p: Proof, ev: &str, trace: &str) -> Vec<String> {
        let tr = Trace::parse(trace);
        crate::trace::judge_trace(&p.trace_checks, &keel_evidence::Transcript::parse(ev), Ok(&tr))
    }

    fn fault(addr: u64) -> String {
        format!("amdvi_page_fault error: page fault accessing guest physical address {addr:#x}\n")
    }

    fn result(gpa: u64, hpa: u64) -> String {
        format!("amdvi_translation_result devid: 00:04.0 gpa {gpa:#x} hpa {hpa:#x}\n")
    }

    #[test]
    fn deny_trace() {
        let good = [fault(0x101000), result(0x101000, 0), fault(0x101004), fault(0x800_0000)];
        assert_eq!(
            judge(deny("amd-dma-deny", Mode::X2Apic), EV, &good.concat()),
            Vec::<String>::new()
        );
        // The IOVA refused but the kernel page not: a missing fault.
        assert!(!judge(deny("amd-dma-deny", Mode::X2Apic), EV, &fault(0x800_0000)).is_empty());
        // A translation to a real page, or another requester's.
        let landed = [fault(0x101000), fault(0x800_0000), result(0x101000, 0x101000)];
        assert!(!judge(deny("amd-dma-deny", Mode::X2Apic), EV, &landed.concat()).is_empty());
        let other = [fault(0x101000), fault(0x800_0000), result(0x101000, 0)];
        assert!(!judge(
            deny("amd-dma-deny", Mode::X2Apic),
            &EV.replace("0x20", "0x28"),
            &other.concat()
        )
        .is_empty());
    }

    fn inval(domain: u16) -> String {
        format!("amdvi_pages_inval AMD-Vi pages for domain {domain:#x} invalidated\n")
    }

    fn domain_run(d: u16, stale: u64) -> String {
        [
            inval(0),
            inval(d),
            result(0x100_1000, 0x37_3000),
            result(0x100_2000, 0x37_5000),
            inval(d),
            result(0x100_2000, stale),
            inval(d),
        ]
        .concat()
    }

    #[test]
    fn unmap_trace() {
        let ev = "EV iommu.amd.dma.page_invalidations=8\n";
        let good = domain_run(1, 0) + &domain_run(2, 0);
        assert_eq!(
            judge(roundtrip("amd-dma-roundtrip", Mode::X2Apic), ev, &good),
            Vec::<String>::new()
        );
        // A stale IOTLB entry: the unmapped page still translates to its frame.
        let stale = domain_run(1, 0x37_5000) + &domain_run(2, 0);
        assert!(!judge(roundtrip("amd-dma-roundtrip", Mode::X2Apic), ev, &stale).is_empty());
        // The kernel counting invalidations QEMU never saw.
        assert!(!judge(roundtrip("amd-dma-roundtrip", Mode::X2Apic), &ev.replace('8', "9"), &good)
            .is_empty());
        // One domain only.
        assert!(!judge(
            roundtrip("amd-dma-roundtrip", Mode::X2Apic),
            "EV iommu.amd.dma.page_invalidations=4\n",
            &domain_run(1, 0)
        )
        .is_empty());
    }
}
