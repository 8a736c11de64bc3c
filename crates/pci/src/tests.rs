use super::*;

/// A configuration space with a capability list: `caps` as (offset, id, next).
fn config_with(caps: &[(u8, u8, u8)]) -> [u8; 256] {
    let mut c = [0u8; 256];
    c[6] = 1 << 4; // status: capability list
    c[0x34] = caps.first().map_or(0, |&(at, _, _)| at);
    for &(at, id, next) in caps {
        c[at as usize] = id;
        c[at as usize + 1] = next;
    }
    c
}

#[test]
fn walks_the_list_in_order() {
    let c = config_with(&[(0x40, CAP_PCIE, 0x80), (0x80, CAP_MSIX, 0x60), (0x60, CAP_MSI, 0)]);
    let all: Vec<_> = capabilities(&c).collect();
    assert_eq!(all, [(CAP_PCIE, 0x40), (CAP_MSIX, 0x80), (CAP_MSI, 0x60)]);
    assert_eq!(find_capability(&c, CAP_MSIX), Some(0x80));
    assert_eq!(find_capability(&c, 0x09), None);
}

#[test]
fn no_list_bit_means_no_capabilities() {
    let mut c = config_with(&[(0x40, CAP_MSIX, 0)]);
    c[6] = 0;
    assert_eq!(capabilities(&c).count(), 0);
}

#[test]
fn a_looping_or_wild_list_ends() {
    let c = config_with(&[(0x40, CAP_MSI, 0x50), (0x50, CAP_PCIE, 0x40)]);
    assert_eq!(capabilities(&c).count(), 48);
    // A pointer into the header ends the walk; reserved low bits are ignored.
    let c = config_with(&[(0x40, CAP_MSI, 0x3C)]);
    assert_eq!(capabilities(&c).count(), 1);
    let mut c = config_with(&[(0x40, CAP_MSI, 0xFF)]);
    c[0xFC] = CAP_MSIX;
    assert_eq!(capabilities(&c).collect::<Vec<_>>(), [(CAP_MSI, 0x40), (CAP_MSIX, 0xFC)]);
}

#[test]
fn random_spaces_never_panic() {
    let mut rng = keel_testkit::XorShift(77);
    for _ in 0..2000 {
        let mut c = [0u8; 256];
        for b in c.iter_mut() {
            *b = rng.next() as u8;
        }
        let n = capabilities(&c).count();
        assert!(n <= 48);
        if let Some(at) = find_capability(&c, CAP_MSIX) {
            let _ = msix::Msix::parse(&c, at);
        }
    }
}
