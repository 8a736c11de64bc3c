use super::*;
use crate::{find_capability, CAP_MSIX};

/// QEMU's `nvme` function with `msix_qsize=65`: the table at BAR 0 + 0x2000, the PBA at
/// BAR 0 + 0x3000 (a 16 KiB BAR).
fn nvme_like() -> [u8; 256] {
    let mut c = [0u8; 256];
    c[6] = 1 << 4;
    c[0x34] = 0x40;
    c[0x40] = CAP_MSIX;
    c[0x41] = 0;
    c[0x42..0x44].copy_from_slice(&64u16.to_le_bytes());
    c[0x44..0x48].copy_from_slice(&0x2000u32.to_le_bytes());
    c[0x48..0x4C].copy_from_slice(&0x3000u32.to_le_bytes());
    c
}

#[test]
fn parses_the_capability() {
    let c = nvme_like();
    let m = Msix::parse(&c, find_capability(&c, CAP_MSIX).unwrap()).unwrap();
    assert_eq!(m.vectors(), 65);
    assert_eq!(m.control_offset(), 0x42);
    assert_eq!(m.table, BarLocation { bar: 0, offset: 0x2000 });
    assert_eq!(m.pba, BarLocation { bar: 0, offset: 0x3000 });
    assert_eq!(m.table_bytes(), 65 * 16);
    assert_eq!(m.pba_bytes(), 16); // 65 bits: two words
    assert!(!m.control.enabled() && !m.control.function_masked());
    assert_eq!(m.check_bars(|bar| if bar == 0 { 0x4000 } else { 0 }), Ok(()));
    assert_eq!(m.entry_offset(0), Some(0x2000));
    assert_eq!(m.entry_offset(64), Some(0x2400));
    assert_eq!(m.entry_offset(65), None);
    assert_eq!(m.pending_bit(63), Some((0x3000, 63)));
    assert_eq!(m.pending_bit(64), Some((0x3008, 0)));
    assert_eq!(m.pending_bit(65), None);
    assert_eq!(m.kernel_pages(), [(0, 0x2000, 0x3000), (0, 0x3000, 0x4000)]);
}

#[test]
fn the_bir_and_offset_split() {
    assert_eq!(BarLocation::decode(0x0000_1004), Ok(BarLocation { bar: 4, offset: 0x1000 }));
    assert_eq!(BarLocation::decode(0x0000_2005), Ok(BarLocation { bar: 5, offset: 0x2000 }));
    assert_eq!(BarLocation::decode(0x0000_1006), Err(MsixError::BadBir(6)));
    assert_eq!(BarLocation::decode(7), Err(MsixError::BadBir(7)));
    let mut c = nvme_like();
    c[0x48] = 0x07;
    assert_eq!(Msix::parse(&c, 0x40), Err(MsixError::BadBir(7)));
}

#[test]
fn refuses_what_is_not_msix_or_does_not_fit() {
    let c = nvme_like();
    assert_eq!(Msix::parse(&c, 0x44), Err(MsixError::NotMsix(0x00)));
    assert_eq!(Msix::parse(&c, 0xF8), Err(MsixError::Truncated));
    let m = Msix::parse(&c, 0x40).unwrap();
    // A 12 KiB BAR: the PBA at 0x3000 is past its end.
    assert_eq!(m.check_bars(|_| 0x3000), Err(MsixError::OutsideBar));
    assert_eq!(m.check_bars(|_| 0), Err(MsixError::OutsideBar));
    // The table's last entry is the BAR's last byte: fits.
    let mut full = nvme_like();
    full[0x42..0x44].copy_from_slice(&0x7FFu16.to_le_bytes()); // 2048 vectors: 32 KiB
    full[0x44..0x48].copy_from_slice(&0u32.to_le_bytes());
    full[0x48..0x4C].copy_from_slice(&1u32.to_le_bytes()); // PBA at BAR 1 + 0
    let m = Msix::parse(&full, 0x40).unwrap();
    assert_eq!(m.vectors(), MAX_VECTORS);
    assert_eq!(m.check_bars(|bar| [0x8000, 256][bar as usize]), Ok(()));
    assert_eq!(m.check_bars(|bar| [0x7FFF, 256][bar as usize]), Err(MsixError::OutsideBar));
    // PBA inside the table: refused.
    let mut overlap = nvme_like();
    overlap[0x48..0x4C].copy_from_slice(&0x2100u32.to_le_bytes());
    let m = Msix::parse(&overlap, 0x40).unwrap();
    assert_eq!(m.check_bars(|_| 0x4000), Err(MsixError::Overlap));
    // Adjacent is fine: the PBA starts at the table's end.
    overlap[0x48..0x4C].copy_from_slice(&(0x2000u32 + 65 * 16).to_le_bytes());
    let m = Msix::parse(&overlap, 0x40).unwrap();
    assert_eq!(m.check_bars(|_| 0x4000), Ok(()));
}

#[test]
fn entries_round_trip_and_keep_reserved_bits() {
    let e = Entry { address: 0x0000_0001_FEE0_1000, data: 0x4061, masked: true };
    let d = e.encode(0xFFFF_0000);
    assert_eq!(d, [0xFEE0_1000, 0x1, 0x4061, 0xFFFF_0001]);
    assert_eq!(Entry::decode(d), e);
    let open = Entry { masked: false, ..e };
    assert_eq!(open.encode(0x8000_0001)[3], 0x8000_0000);
    assert_eq!(vector_control(0xABCD_0000, true), 0xABCD_0001);
    assert_eq!(vector_control(0xABCD_0001, false), 0xABCD_0000);
}

#[test]
fn message_control_bits() {
    let c = MessageControl(0x0040);
    assert_eq!(c.table_size(), 65);
    let [first, then] = setup(c);
    assert_eq!(first.0, 0xC040);
    assert!(first.enabled() && first.function_masked());
    assert_eq!(then.0, 0x8040);
    assert!(then.enabled() && !then.function_masked());
    assert_eq!(then.with_enable(false).0, 0x0040);
    assert_eq!(MessageControl(0x07FF).table_size(), 2048);
}

/// A function's MSI-X behaviour: a vector fires only when MSI-X is enabled, the function is
/// unmasked and its entry is unmasked; otherwise its pending bit is set and the message goes
/// out at the unmask.
struct Function {
    control: MessageControl,
    table: Vec<[u32; 4]>,
    pending: Vec<bool>,
    sent: Vec<(u64, u32)>,
}

impl Function {
    fn new(vectors: usize) -> Function {
        // Reset state: entries masked, address and data undefined (garbage here).
        Function {
            control: MessageControl(vectors as u16 - 1),
            table: vec![[0xDEAD_BEEF, 0xDEAD_BEEF, 0xBAD, VECTOR_MASKED]; vectors],
            pending: vec![false; vectors],
            sent: Vec::new(),
        }
    }

    fn deliverable(&self, v: usize) -> bool {
        self.control.enabled()
            && !self.control.function_masked()
            && self.table[v][3] & VECTOR_MASKED == 0
    }

    fn send(&mut self, v: usize) {
        let e = Entry::decode(self.table[v]);
        self.sent.push((e.address, e.data));
    }

    fn fire(&mut self, v: usize) {
        if self.deliverable(v) {
            self.send(v);
        } else if self.control.enabled() {
            self.pending[v] = true;
        }
    }

    fn flush(&mut self) {
        for v in 0..self.table.len() {
            if self.pending[v] && self.deliverable(v) {
                self.pending[v] = false;
                self.send(v);
            }
        }
    }

    fn write_control(&mut self, c: MessageControl) {
        self.control = c;
        self.flush();
    }

    fn write_entry(&mut self, v: usize, dwords: [u32; 4]) {
        self.table[v] = dwords;
        self.flush();
    }
}

#[test]
fn the_setup_sequence_sends_no_stray_message() {
    let mut f = Function::new(4);
    let [masked, open] = setup(f.control);
    f.write_control(masked);
    f.fire(2); // the device signals while the table is still being written
    for v in 0..4 {
        let e =
            Entry { address: 0xFEE0_0000 | (v as u64) << 12, data: 0x50 + v as u32, masked: true };
        f.write_entry(v, e.encode(f.table[v][3]));
    }
    f.write_control(open);
    assert!(f.sent.is_empty(), "every vector is still masked on its own");
    assert!(f.pending[2]);
    // Arming vector 2 delivers the pending message with the programmed address and data.
    let mut armed = f.table[2];
    armed[3] = vector_control(armed[3], false);
    f.write_entry(2, armed);
    assert_eq!(f.sent, [(0xFEE0_2000, 0x52)]);
    f.fire(2);
    f.fire(1); // still masked: pending, not sent
    assert_eq!(f.sent.len(), 2);
    assert!(f.pending[1] && !f.pending[2]);
}

#[test]
fn unmasking_before_programming_would_send_garbage() {
    // The order matters: with entries unmasked before they are written, a vector that
    // fires sends whatever the table held. The model shows it, so the sequence above is
    // what keeps it from happening.
    let mut f = Function::new(2);
    f.write_control(MessageControl(f.control.0 | CONTROL_ENABLE));
    let mut e = f.table[0];
    e[3] = vector_control(e[3], false);
    f.write_entry(0, e);
    f.fire(0);
    assert_eq!(f.sent, [(0xDEAD_BEEF_DEAD_BEEF, 0xBAD)]);
}
