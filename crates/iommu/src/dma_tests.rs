use super::*;
use crate::regs::Capability;

/// QEMU's CAP: SAGAW 39+48, ND 16-bit ids, MGAW 48, DRD/DWD, MAMV 18.
const QEMU: DmaCapability = DmaCapability(6 | 0b110 << 8 | 47 << 16 | 18 << 48 | 3 << 54);

/// A unit whose GSTS follows GCMD: TE persistent, SRTP sets RTPS, WBF clears at once
/// (or never, when `stuck_flush`).
struct Fake {
    gsts: u32,
    rtaddr: u64,
    fsts: u32,
    records: [u64; 4],
    commands: Vec<u32>,
    stuck_flush: bool,
    events: Vec<&'static str>,
}

impl Fake {
    fn new(gsts: u32) -> Fake {
        Fake {
            gsts,
            rtaddr: 0,
            fsts: 0,
            records: [0; 4],
            commands: vec![],
            stuck_flush: false,
            events: vec![],
        }
    }
}

impl UnitRegisters for Fake {
    fn read32(&mut self, o: usize) -> u32 {
        match o {
            offset::GLOBAL_STATUS => self.gsts,
            offset::FAULT_STATUS => self.fsts,
            _ => 0,
        }
    }

    fn write32(&mut self, o: usize, v: u32) {
        match o {
            offset::GLOBAL_COMMAND => {
                self.commands.push(v);
                let te = GlobalBit::TranslationEnable.mask();
                let turned_on = self.gsts & te == 0 && v & te != 0;
                self.gsts = (self.gsts & !te) | (v & te);
                if v & GlobalBit::SetRootTablePointer.mask() != 0 {
                    self.events.push("srtp");
                    self.gsts |= GlobalBit::SetRootTablePointer.mask();
                }
                if v & GlobalBit::WriteBufferFlush.mask() != 0 {
                    self.events.push("wbf");
                    if self.stuck_flush {
                        self.gsts |= GlobalBit::WriteBufferFlush.mask();
                    }
                }
                if turned_on {
                    self.events.push("te");
                }
            }
            offset::FAULT_STATUS => self.fsts &= !v,
            _ => {}
        }
    }

    fn read64(&mut self, o: usize) -> u64 {
        match o {
            0x220..=0x238 => self.records[(o - 0x220) / 8],
            _ => 0,
        }
    }

    fn write64(&mut self, o: usize, v: u64) {
        match o {
            ROOT_TABLE_ADDRESS => {
                self.events.push("rtaddr");
                self.rtaddr = v
            }
            0x220..=0x238 if v == FAULT_RECORD_FAULT => {
                let i = (o - 0x220) / 8;
                self.records[i] &= !FAULT_RECORD_FAULT;
                if self.records.iter().skip(1).step_by(2).all(|h| h & FAULT_RECORD_FAULT == 0) {
                    self.fsts &= !2;
                }
            }
            _ => {}
        }
    }

    fn poll(&mut self, done: &mut dyn FnMut(&mut Self) -> bool) -> bool {
        (0..3).any(|_| done(self))
    }
}

#[test]
fn capability_fields() {
    assert_eq!(QEMU.domains(), 65536);
    assert_eq!(DmaCapability(0).domains(), 16);
    assert_eq!(QEMU.mgaw(), 48);
    assert_eq!(QEMU.sagaw(), 0b110);
    assert_eq!(QEMU.drain(), (true, true));
    assert_eq!(QEMU.max_address_mask(), 18);
    assert!(!QEMU.caching_mode() && !QEMU.write_buffer_flush());
    assert!(DmaCapability(1 << 4).write_buffer_flush());
    assert!(QEMU.domain_usable(0) && !DmaCapability(QEMU.0 | 1 << 7).domain_usable(0));
}

#[test]
fn context_cache_descriptors() {
    assert_eq!(context_cache(ContextScope::Global), [0x11, 0]);
    assert_eq!(
        context_cache(ContextScope::Device { domain: 5, source: 0x0020 }),
        [0x1 | 3 << 4 | 5 << 16 | 0x20 << 32, 0]
    );
}

#[test]
fn iotlb_descriptors() {
    assert_eq!(iotlb(IotlbScope::Global, QEMU), Some([0x2 | 1 << 4 | 0xC0, 0]));
    assert_eq!(iotlb(IotlbScope::Global, DmaCapability(0)), Some([0x12, 0]));
    assert_eq!(iotlb(IotlbScope::Domain(7), QEMU), Some([0x2 | 2 << 4 | 0xC0 | 7 << 16, 0]));
    let pages = IotlbScope::Pages { domain: 7, address: 0x40_0000, mask: 2 };
    assert_eq!(iotlb(pages, QEMU), Some([0x2 | 3 << 4 | 0xC0 | 7 << 16, 0x40_0002]));
    let misaligned = IotlbScope::Pages { domain: 7, address: 0x40_1000, mask: 2 };
    assert_eq!(iotlb(misaligned, QEMU), None);
}

#[test]
fn range_invalidation_is_never_narrower_than_the_range() {
    assert_eq!(
        iotlb_range(3, 0x10_0000, 1, QEMU),
        IotlbScope::Pages { domain: 3, address: 0x10_0000, mask: 0 }
    );
    assert_eq!(
        iotlb_range(3, 0x10_0000, 4, QEMU),
        IotlbScope::Pages { domain: 3, address: 0x10_0000, mask: 2 }
    );
    assert_eq!(iotlb_range(3, 0x10_1000, 4, QEMU), IotlbScope::Domain(3), "misaligned");
    assert_eq!(iotlb_range(3, 0x10_0000, 3, QEMU), IotlbScope::Domain(3), "not a power of 2");
    assert_eq!(iotlb_range(3, 0, 1 << 20, QEMU), IotlbScope::Domain(3), "beyond MAMV");
}

#[test]
fn caching_mode_invalidates_population_too() {
    let cm = DmaCapability(QEMU.0 | 1 << 7);
    assert!(must_invalidate(EntryChange::Revoked, QEMU));
    assert!(!must_invalidate(EntryChange::Populated, QEMU));
    assert!(must_invalidate(EntryChange::Populated, cm));
}

#[test]
fn enable_sets_root_then_invalidates_then_translates() {
    let mut unit = Fake::new(GlobalBit::QueuedInvalidation.mask());
    let r = enable_translation::<_, ()>(&mut unit, 0x7000, QEMU, |u: &mut Fake| {
        u.events.push("invalidate");
        Ok(())
    });
    assert_eq!(r, Ok(TranslationStart::default()));
    assert_eq!(unit.rtaddr, 0x7000);
    assert_eq!(unit.events, ["rtaddr", "srtp", "invalidate", "te"]);
    assert!(GlobalBit::TranslationEnable.reached(unit.gsts, true));
    // QIE is kept in every command; RTPS is never echoed into the TE command.
    let qie = GlobalBit::QueuedInvalidation.mask();
    assert!(unit.commands.iter().all(|c| c & qie != 0));
    assert_eq!(*unit.commands.last().unwrap(), qie | GlobalBit::TranslationEnable.mask());
}

#[test]
fn firmware_translation_is_replaced_without_turning_it_off() {
    let te = GlobalBit::TranslationEnable.mask();
    let mut unit = Fake::new(te);
    let r = enable_translation::<_, ()>(&mut unit, 0x7000, QEMU, |u: &mut Fake| {
        u.events.push("invalidate");
        Ok(())
    });
    assert!(r.unwrap().firmware_left_on);
    assert_eq!(unit.events, ["rtaddr", "srtp", "invalidate"]);
    assert!(unit.commands.iter().all(|c| c & te != 0), "TE never dropped");
}

#[test]
fn write_buffer_flushed_before_invalidation_when_required() {
    let rwbf = DmaCapability(QEMU.0 | 1 << 4);
    let mut unit = Fake::new(0);
    let r = enable_translation::<_, ()>(&mut unit, 0x7000, rwbf, |u: &mut Fake| {
        u.events.push("invalidate");
        Ok(())
    });
    assert!(r.unwrap().write_buffer_flushed);
    assert_eq!(unit.events, ["rtaddr", "srtp", "wbf", "invalidate", "te"]);
    let mut stuck = Fake::new(0);
    stuck.stuck_flush = true;
    assert_eq!(
        flush_write_buffer::<_, ()>(&mut stuck, rwbf),
        Err(SequenceError::CommandTimeout(GlobalBit::WriteBufferFlush))
    );
}

#[test]
fn a_failed_invalidation_leaves_translation_off() {
    let mut unit = Fake::new(0);
    let r = enable_translation(&mut unit, 0x7000, QEMU, |_: &mut Fake| Err("timeout"));
    assert_eq!(r, Err(SequenceError::Invalidation("timeout")));
    assert!(!GlobalBit::TranslationEnable.reached(unit.gsts, true));
}

#[test]
fn dma_fault_records() {
    // QEMU's record of a blocked write by 00:04.0 to 0x1234000 (root entry not present).
    let high = FAULT_RECORD_FAULT | 0x1 << 32 | 0x20;
    let f = DmaFault::decode(0x123_4000, high).unwrap();
    assert_eq!(f, DmaFault { reason: 1, source_id: 0x20, address: 0x123_4000, write: true });
    assert!(!DmaFault::decode(0x123_4000, high | 1 << 62).unwrap().write);
    assert_eq!(DmaFault::decode(0, high & !FAULT_RECORD_FAULT), None);
    assert_eq!(DmaFault::decode(0, FAULT_RECORD_FAULT | 0x22 << 32), None, "interrupt fault");
    assert_eq!(dma_fault_reason(2), "context entry not present");
}

#[test]
fn raw_fault_collection_clears_each_record() {
    let mut unit = Fake::new(0);
    // Two records (NFR = 1) at 0x220, first record index 1.
    let cap = Capability(0x22 << 24 | 1 << 40);
    unit.records = [0x5000, FAULT_RECORD_FAULT | 2 << 32, 0x6000, FAULT_RECORD_FAULT | 1 << 32];
    unit.fsts = 2 | 1 << 8 | 1;
    let mut seen = vec![];
    let status = collect_raw_faults(&mut unit, cap, |lo, hi, slot| seen.push((lo, hi, slot)));
    assert!(status.overflow());
    assert_eq!(seen.iter().map(|s| (s.0, s.2)).collect::<Vec<_>>(), [(0x6000, 1), (0x5000, 0)]);
    assert!(unit.records.iter().skip(1).step_by(2).all(|h| h & FAULT_RECORD_FAULT == 0));
    assert_eq!(unit.fsts & 3, 0, "PFO and PPF cleared");
}

#[test]
fn fault_event_message_names_the_cpu() {
    assert_eq!(fault_event_message(0xFC, 0, false), Some((0xFC, 0xFEE0_0000, 0)));
    assert_eq!(fault_event_message(0xFC, 3, false), Some((0xFC, 0xFEE0_3000, 0)));
    assert_eq!(fault_event_message(0xFC, 257, false), None, "xAPIC mode: 8-bit IDs");
    assert_eq!(fault_event_message(0xFC, 257, true), Some((0xFC, 0xFEE0_1000, 0x100)));
}

#[test]
fn iotlb_ranges_at_the_top_of_the_address_space_never_overflow() {
    // A mask past 51 shifts every bit of a 4 KiB span out of 64: refused, not a division by 0.
    let far = IotlbScope::Pages { domain: 1, address: 0, mask: 0x3F };
    assert_eq!(iotlb(far, QEMU), None);
    let wide = DmaCapability(QEMU.0 | 0x3F << 48);
    for pages in [1u64 << 52, 1 << 62, 1 << 63, u64::MAX] {
        assert!(matches!(iotlb_range(7, 0, pages, wide), IotlbScope::Domain(7)), "{pages:#x}");
    }
    assert!(matches!(iotlb_range(7, 0, 1 << 51, wide), IotlbScope::Pages { mask: 51, .. }));
}
