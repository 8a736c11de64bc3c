//! The grant policy: kernel-owned ports at their edges, overlaps between programs that may
//! run together, DMA without remapping.

use super::*;
use crate::policy::{self, kernel_owned_conflict, ranges_overlap, Refusal, KERNEL_OWNED_PORTS};

fn owned(first: u16, last: u16) -> Option<(u16, u16)> {
    kernel_owned_conflict(first, last, KERNEL_OWNED_PORTS, &[]).map(|o| (o.first, o.last))
}

#[test]
fn pci_configuration_ports_at_their_edges() {
    assert_eq!(owned(0xcf8, 0xcff), Some((0xcf8, 0xcff)));
    assert_eq!(owned(0xcfc, 0xcfc), Some((0xcf8, 0xcff)), "one port inside");
    assert_eq!(owned(0xc00, 0xcf7), None, "ending exactly at 0xcf7");
    assert_eq!(owned(0xd00, 0xdff), None, "starting at 0xd00");
    assert_eq!(owned(0xcf7, 0xcf8), Some((0xcf8, 0xcff)), "one port over the lower edge");
    assert_eq!(owned(0xcff, 0xd00), Some((0xcf8, 0xcff)), "one port over the upper edge");
    assert_eq!(owned(0x0, 0xffff), Some((0x20, 0x21)), "everything touches the first owner");
}

#[test]
fn the_top_port_does_not_wrap() {
    assert_eq!(owned(0xfff0, 0xffff), None);
    assert_eq!(owned(0xffff, 0xffff), None);
    assert!(ranges_overlap(0xffff, 0xffff, 0xffff, 0xffff));
    assert!(!ranges_overlap(0xffff, 0xffff, 0x0, 0xfffe));
    assert!(!ranges_overlap(0x0, 0x0, 0x1, 0xffff));
}

#[test]
fn every_fixed_owner_is_refused_and_its_neighbours_are_not() {
    for o in KERNEL_OWNED_PORTS {
        assert_eq!(owned(o.first, o.first), Some((o.first, o.last)), "{}", o.owner);
        assert_eq!(owned(o.last, o.last), Some((o.first, o.last)), "{}", o.owner);
        if o.first > 0 && owned(o.first - 1, o.first - 1).is_none() {
            assert_eq!(owned(o.first - 1, o.first - 1), None);
        }
    }
    // The RTC, the usual driver test, stays grantable; so do the ports between owners.
    assert_eq!(owned(0x70, 0x71), None);
    assert_eq!(owned(0x61, 0x63), None);
    assert_eq!(owned(0x65, 0x6f), None);
    assert_eq!(owned(0xf3, 0xf3), None);
    assert_eq!(owned(0xf8, 0xf8), None);
}

#[test]
fn boot_ranges_join_the_fixed_ones() {
    let fadt = [policy::OwnedPorts { first: 0x600, last: 0x603, owner: "PM1a event" }];
    let hit = kernel_owned_conflict(0x602, 0x602, KERNEL_OWNED_PORTS, &fadt).unwrap();
    assert_eq!((hit.first, hit.last, hit.owner), (0x600, 0x603, "PM1a event"));
    assert!(kernel_owned_conflict(0x604, 0x604, KERNEL_OWNED_PORTS, &fadt).is_none());
}

fn refused(text: &str, program: &str) -> Vec<Refusal> {
    let m = parse(text).unwrap();
    let p = m.program(program).unwrap();
    policy::refusals(&m, p, &[], false)
}

#[test]
fn configuration_ports_are_refused_naming_the_range() {
    let text = "program \"cfg\" { binary = \"b\" grant IoPorts { 0xcf8..0xcff } }";
    let r = refused(text, "cfg");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].evidence(), "kernel_owned_ports_0xcf8_0xcff_owner_0xcf8_0xcff");
    let msg = r[0].to_string();
    assert!(msg.contains("0xcf8..0xcff") && msg.contains("PCI configuration"), "{msg}");
    let e = parse_checked(text).unwrap_err();
    assert_eq!((e.line, e.column), (1, 9));
    assert!(e.to_string().contains("0xcf8..0xcff"), "{e}");
}

#[test]
fn overlaps_between_programs_that_run_together_are_refused() {
    let text = "program \"a\" { binary = \"b\" grant IoPorts { 0x70..0x71 } }\n\
                program \"b\" { binary = \"b\" grant IoPorts { 0x71..0x72 } }\n\
                program \"c\" { binary = \"b\" after = \"a\" grant IoPorts { 0x72 } }\n\
                program \"d\" { binary = \"b\" after = \"c\" grant IoPorts { 0x71 } }";
    let r = refused(text, "a");
    assert_eq!(r.len(), 1);
    assert!(matches!(&r[0], Refusal::OverlappingPorts { other, .. } if other == "b"));
    assert_eq!(r[0].evidence(), "overlapping_ports_0x70_0x71");
    // c runs after a but may run with b; d runs after c (and a, through c) but with b too.
    assert!(
        matches!(&refused(text, "c")[0], Refusal::OverlappingPorts { other, .. } if other == "b")
    );
    assert!(
        matches!(&refused(text, "d")[0], Refusal::OverlappingPorts { other, .. } if other == "b")
    );
    assert!(!policy::may_run_together(&parse(text).unwrap(), "a", "d"));
    assert!(policy::may_run_together(&parse(text).unwrap(), "a", "b"));
}

#[test]
fn sequential_holders_and_adjacent_ranges_are_accepted() {
    let text = "program \"a\" { binary = \"b\" grant IoPorts { 0x70..0x71 } }\n\
                program \"b\" { binary = \"b\" after = \"a\" grant IoPorts { 0x70..0x71 } }\n\
                program \"c\" { binary = \"b\" grant IoPorts { 0x72..0x73 } grant IoPorts { 0x6f } }";
    for p in ["a", "b", "c"] {
        assert_eq!(refused(text, p), [], "{p}");
    }
    assert!(parse_checked(text).is_ok());
}

#[test]
fn one_programs_own_ranges_may_not_overlap() {
    let text =
        "program \"a\" { binary = \"b\" grant IoPorts { 0x70..0x71 } grant IoPorts { 0x71 } }";
    let r = refused(text, "a");
    assert_eq!(r.len(), 2);
    assert!(matches!(&r[0], Refusal::OverlappingPorts { other, .. } if other == "a"));
}

const EDU: &str = "device edu { pci = 1234:11e8 }\n";

#[test]
fn pci_devices_without_remapping_need_the_opt_in() {
    let bare = format!(
        "{EDU}program \"d\" {{ binary = \"b\" grant DeviceMemory {{ pci = edu, bar = 0 }} }}"
    );
    let m = parse(&bare).unwrap();
    let r = policy::refusals(&m, &m.programs[0], &[], false);
    assert_eq!(r, [Refusal::DmaNotContained { device: "edu".into() }]);
    assert_eq!(r[0].evidence(), "dma_not_contained_edu");
    assert_eq!(policy::refusals(&m, &m.programs[0], &[], true), [], "with remapping");
    let intx =
        format!("{EDU}program \"d\" {{ binary = \"b\" grant Interrupt {{ source = intx(edu) }} }}");
    assert_eq!(refused(&intx, "d").len(), 1);
    let isa = "program \"d\" { binary = \"b\" grant Interrupt { source = isa(8) } }";
    assert_eq!(refused(isa, "d"), [], "an ISA line is no PCI function");

    let in_program = format!("{EDU}program \"d\" {{ binary = \"b\" dma = \"unprotected\" grant Interrupt {{ source = msi(edu) }} }}");
    assert_eq!(refused(&in_program, "d"), []);
    assert!(parse(&in_program).unwrap().programs[0].dma_unprotected);
    let in_device = "device edu { pci = 1234:11e8, dma = \"unprotected\" }\nprogram \"d\" { binary = \"b\" grant Interrupt { source = msi(edu) } }";
    assert_eq!(refused(in_device, "d"), []);
}

#[test]
fn dma_and_expect_start_take_one_value() {
    at(
        "program \"a\" { binary = \"b\" dma = \"yes\" }",
        1,
        34,
        ErrorKind::InvalidDma("yes".into()),
    );
    at("device d { pci = 1:2 dma = \"\" }", 1, 28, ErrorKind::InvalidDma("".into()));
    at(
        "program \"a\" { binary = \"b\" expect_start = \"ok\" }",
        1,
        43,
        ErrorKind::InvalidExpectStart("ok".into()),
    );
    at(
        "program \"a\" { binary = \"b\" dma = \"unprotected\" dma = \"unprotected\" }",
        1,
        48,
        ErrorKind::DuplicateKey("dma".into()),
    );
}

#[test]
fn expected_refusals_pass_the_host_check() {
    let text = "program \"cfg\" { binary = \"b\" expect_start = \"refused\" grant IoPorts { 0xcf8..0xcff } }";
    let m = parse_checked(text).unwrap();
    assert!(m.programs[0].expect_refused);
}

#[test]
fn the_repositorys_manifests_pass_the_host_check() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../manifests");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "manifest") {
            let text = std::fs::read_to_string(&path).unwrap();
            if let Err(e) = parse_checked(&text) {
                panic!("{}: {e}", path.display());
            }
            checked += 1;
        }
    }
    assert!(checked > 10);
}

#[test]
fn bars_on_kernel_mmio_are_refused_at_the_edges() {
    use policy::{mmio_conflict, OwnedMmio};
    let lapic = OwnedMmio { base: 0xfee0_0000, size: 0x1000, owner: "LAPIC" };
    let top = OwnedMmio { base: u64::MAX - 0xfff, size: 0x1000, owner: "top" };
    let owned = [lapic, top];
    assert_eq!(mmio_conflict(0xfee0_0000, 0x1000, &owned), Some(lapic));
    assert_eq!(mmio_conflict(0xfedf_f000, 0x1000, &owned), None, "ending just below");
    assert_eq!(mmio_conflict(0xfedf_f000, 0x1001, &owned), Some(lapic), "one byte in");
    assert_eq!(mmio_conflict(0xfee0_1000, 0x1000, &owned), None, "starting just above");
    assert_eq!(mmio_conflict(0xfee0_0fff, 1, &owned), Some(lapic), "the last byte");
    assert_eq!(mmio_conflict(0xfee0_0000, 0, &owned), None, "an empty BAR");
    assert_eq!(mmio_conflict(u64::MAX, 1, &owned), Some(top), "no wrap at 2^64");
    assert_eq!(mmio_conflict(0, 0x1000, &owned), None, "no wrap to 0");
    let r = Refusal::KernelOwnedMmio { phys: 0xfee0_0000, size: 0x1000, owned: lapic };
    assert_eq!(r.evidence(), "kernel_owned_mmio_0xfee00000");
    assert!(r.to_string().contains("LAPIC"));
}

#[test]
fn a_program_that_requires_dma_remapping_is_refused_without_it() {
    let text = "device edu { pci = 1234:11e8 }\n\
                program \"d\" { binary = \"b\" dma = \"remapped\" grant DeviceMemory { pci = edu, bar = 0 } }";
    let m = parse_checked(text).unwrap();
    let program = &m.programs[0];
    assert!(program.dma_remapped && !program.dma_unprotected);
    assert_eq!(policy::dma_refusal(&m, program, true), None);
    assert_eq!(
        policy::dma_refusal(&m, program, false),
        Some(policy::Refusal::DmaRemappingRequired)
    );
    // Devices take only the opt-out: containment is the program's requirement.
    let device_remapped = "device edu { pci = 1234:11e8, dma = \"remapped\" }";
    assert!(matches!(parse(device_remapped).unwrap_err().kind, ErrorKind::InvalidDma(_)));
}
