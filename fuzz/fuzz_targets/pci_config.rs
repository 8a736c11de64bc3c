//! PCI configuration space (`keel-pci`): the 256 bytes a device answers with, which a
//! hostile or broken device controls entirely, then its MSI-X capability against BAR sizes
//! taken from the rest of the input. Checks the capability walk's bounds and the MSI-X
//! placement the kernel relies on before it maps a table or withholds pages from a driver.
#![no_main]

use keel_pci::msix::{self, Msix, MsixError, ENTRY_SIZE};
use keel_pci::{capabilities, find_capability, CAP_MSIX};
use libfuzzer_sys::fuzz_target;

/// The most capabilities the walk may yield (192 bytes after the header, 4 each).
const MAX_CAPS: usize = 48;

fuzz_target!(|data: &[u8]| {
    let mut config = [0u8; 256];
    let n = data.len().min(256);
    config[..n].copy_from_slice(&data[..n]);
    let mut bar_sizes = [0u64; 6];
    for (i, size) in bar_sizes.iter_mut().enumerate() {
        let at = 256 + i * 8;
        if let Some(bytes) = data.get(at..at + 8) {
            *size = u64::from_le_bytes(bytes.try_into().unwrap());
        }
    }

    let caps: Vec<(u8, u8)> = capabilities(&config).collect();
    assert!(caps.len() <= MAX_CAPS);
    for &(id, at) in &caps {
        assert!(at >= 0x40 && at % 4 == 0);
        assert_eq!(config[at as usize], id);
    }
    for id in [0x01u8, 0x05, 0x10, CAP_MSIX, 0xFF] {
        assert_eq!(find_capability(&config, id), caps.iter().find(|c| c.0 == id).map(|c| c.1));
    }

    let Some(cap) = find_capability(&config, CAP_MSIX) else { return };
    let parsed = Msix::parse(&config, cap);
    let m = match parsed {
        Ok(m) => m,
        Err(MsixError::Truncated) => return assert!(cap as usize + 12 > 256),
        Err(MsixError::BadBir(b)) => return assert!(b > 5),
        Err(e) => panic!("parse gave {e:?}"),
    };
    assert_eq!(m.cap, cap);
    assert!(m.table.bar <= 5 && m.pba.bar <= 5);
    assert!((1..=msix::MAX_VECTORS).contains(&m.vectors()));
    assert_eq!(m.control_offset(), cap + 2);
    let [first, second] = msix::setup(m.control);
    assert!(first.enabled() && first.function_masked());
    assert!(second.enabled() && !second.function_masked());
    assert_eq!(first.table_size(), m.vectors());

    let size = |bar: u8| bar_sizes[bar as usize];
    let last = m.vectors() - 1;
    assert_eq!(m.entry_offset(m.vectors()), None);
    assert_eq!(m.pending_bit(m.vectors()), None);
    let table_end = m.entry_offset(last).unwrap() + ENTRY_SIZE;
    let (pba_word, bit) = m.pending_bit(last).unwrap();
    assert!(bit < 64);
    let pba_end = pba_word + 8;
    assert_eq!(table_end, m.table.offset as u64 + m.table_bytes());
    assert!(pba_end <= m.pba.offset as u64 + m.pba_bytes());
    if m.check_bars(size).is_ok() {
        // Every entry and every pending word lies inside its BAR, and the two never overlap.
        assert!(table_end <= size(m.table.bar));
        assert!(pba_end <= size(m.pba.bar));
        if m.table.bar == m.pba.bar {
            let pba_start = m.pba.offset as u64;
            assert!(
                table_end <= pba_start
                    || m.pba.offset as u64 + m.pba_bytes() <= m.table.offset as u64
            );
        }
    }
    // The pages withheld from a driver cover the table and the PBA whole.
    let [(tb, ts, te), (pb, ps, pe)] = m.kernel_pages();
    assert_eq!((tb, pb), (m.table.bar, m.pba.bar));
    for (start, end) in [(ts, te), (ps, pe)] {
        assert!(start % 4096 == 0 && end % 4096 == 0 && start < end);
    }
    assert!(ts <= m.table.offset as u64 && table_end <= te);
    assert!(ps <= m.pba.offset as u64 && m.pba.offset as u64 + m.pba_bytes() <= pe);
});
