use super::*;
use crate::regs::ONE_SHOT_STATUS;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Write32(usize, u32),
    Write64(usize, u64),
}

/// A unit that applies GCMD to GSTS the way the spec describes (persistent bits follow the
/// command, SIRTP sets IRTPS), unless `deaf` names a command it ignores.
struct FakeUnit {
    gsts: u32,
    regs64: std::collections::BTreeMap<usize, u64>,
    fsts: u32,
    log: Vec<Access>,
    deaf: Option<GlobalBit>,
    one_shot_echoed: bool,
}

impl FakeUnit {
    fn new(gsts: u32) -> Self {
        FakeUnit {
            gsts,
            regs64: Default::default(),
            fsts: 0,
            log: vec![],
            deaf: None,
            one_shot_echoed: false,
        }
    }

    fn commands(&self) -> Vec<u32> {
        self.log
            .iter()
            .filter_map(|a| match a {
                Access::Write32(o, v) if *o == offset::GLOBAL_COMMAND => Some(*v),
                _ => None,
            })
            .collect()
    }
}

impl UnitRegisters for FakeUnit {
    fn read32(&mut self, o: usize) -> u32 {
        match o {
            offset::GLOBAL_STATUS => self.gsts,
            offset::FAULT_STATUS => self.fsts,
            _ => 0,
        }
    }

    fn write32(&mut self, o: usize, v: u32) {
        self.log.push(Access::Write32(o, v));
        if o == offset::GLOBAL_COMMAND {
            if v & GlobalBit::SetInterruptTablePointer.mask() != 0
                && self.gsts & GlobalBit::SetInterruptTablePointer.mask() != 0
            {
                self.one_shot_echoed = true;
            }
            let persistent = !ONE_SHOT_STATUS;
            let mut next = (self.gsts & ONE_SHOT_STATUS) | (v & persistent);
            if v & GlobalBit::SetInterruptTablePointer.mask() != 0 {
                next |= GlobalBit::SetInterruptTablePointer.mask();
            }
            if let Some(bit) = self.deaf {
                next = (next & !bit.mask()) | (self.gsts & bit.mask());
            }
            self.gsts = next;
        }
        if o == offset::FAULT_STATUS {
            self.fsts &= !v;
        }
    }

    fn read64(&mut self, o: usize) -> u64 {
        self.regs64.get(&o).copied().unwrap_or(0)
    }

    fn write64(&mut self, o: usize, v: u64) {
        self.log.push(Access::Write64(o, v));
        if o >= 0x200 && o % 16 == 8 && v & FAULT_RECORD_FAULT != 0 {
            self.regs64.remove(&o);
        } else {
            self.regs64.insert(o, v);
        }
    }

    fn poll(&mut self, done: &mut dyn FnMut(&mut Self) -> bool) -> bool {
        (0..10).any(|_| done(self))
    }
}

const QIE: u32 = 1 << 26;
const IRE: u32 = 1 << 25;
const IRTPS: u32 = 1 << 24;
const CFI: u32 = 1 << 23;

#[test]
fn enable_follows_the_spec_order() {
    let mut unit = FakeUnit::new(0);
    let mut invalidated_after = None;
    enable(&mut unit, 0x5000, 0x6807, |u: &mut FakeUnit| -> Result<(), ()> {
        invalidated_after = Some(u.log.len());
        Ok(())
    })
    .unwrap();
    let expected = [
        Access::Write32(offset::FAULT_EVENT_CONTROL, FAULT_EVENT_MASKED),
        Access::Write64(offset::IQ_TAIL, 0),
        Access::Write64(offset::IQ_ADDRESS, 0x5000),
        Access::Write32(offset::GLOBAL_COMMAND, QIE),
        Access::Write64(offset::IRT_ADDRESS, 0x6807),
        Access::Write32(offset::GLOBAL_COMMAND, QIE | IRTPS),
        Access::Write32(offset::GLOBAL_COMMAND, QIE | IRE),
    ];
    assert_eq!(unit.log, expected);
    assert_eq!(
        invalidated_after,
        Some(6),
        "the global invalidation runs after SIRTP and before IRE"
    );
    assert_eq!(unit.gsts & (QIE | IRE), QIE | IRE);
    assert!(!unit.one_shot_echoed);
}

#[test]
fn firmware_state_is_turned_off_first_and_cfi_blocked() {
    let mut unit = FakeUnit::new(IRE | QIE | CFI | IRTPS);
    let found = enable(&mut unit, 0x5000, 0x6807, |_: &mut FakeUnit| Ok::<(), ()>(())).unwrap();
    assert!(
        found.interrupt_remapping
            && found.queued_invalidation
            && !found.queue_stuck
            && !found.translation
    );
    let cmds = unit.commands();
    assert_eq!(cmds[0], QIE | CFI, "IRE off first, one-shot IRTPS not echoed");
    assert_eq!(cmds[1], CFI, "then QIE off");
    assert!(cmds.iter().all(|c| c & IRTPS == 0 || *c == QIE | CFI | IRTPS));
    assert_eq!(*cmds.last().unwrap(), QIE | IRE, "CFI cleared before IRE");
    assert_eq!(unit.gsts & CFI, 0);
}

#[test]
fn a_deaf_unit_times_out_and_remapping_stays_off() {
    let mut unit = FakeUnit::new(0);
    unit.deaf = Some(GlobalBit::QueuedInvalidation);
    let r = enable(&mut unit, 0x5000, 0x6807, |_: &mut FakeUnit| Ok::<(), ()>(()));
    assert_eq!(r, Err(SequenceError::CommandTimeout(GlobalBit::QueuedInvalidation)));
    assert_eq!(unit.gsts & IRE, 0);
    let mut unit = FakeUnit::new(0);
    let r = enable(&mut unit, 0x5000, 0x6807, |_: &mut FakeUnit| Err("queue stuck"));
    assert_eq!(r, Err(SequenceError::Invalidation("queue stuck")));
    assert_eq!(unit.gsts & IRE, 0, "IRE is never set when the invalidation failed");
}

#[test]
fn firmware_queue_that_never_drains_is_reported() {
    let mut unit = FakeUnit::new(QIE);
    unit.regs64.insert(offset::IQ_TAIL, 0x20);
    let found = quiesce::<_, ()>(&mut unit).unwrap();
    assert!(found.queued_invalidation && found.queue_stuck);
    assert_eq!(unit.gsts & QIE, 0);
}

#[test]
fn faults_are_read_reported_and_cleared() {
    // Two records at 0x220 (FRO = 0x22), NFR = 1; FRI = 1, PPF and PFO set.
    let cap = Capability(0x22 << 24 | 1 << 40);
    let mut unit = FakeUnit::new(0);
    unit.fsts = 1 << 8 | 0b11;
    unit.regs64.insert(0x230, 0x18 << 48);
    unit.regs64.insert(0x238, FAULT_RECORD_FAULT | 0x22 << 32 | 0x18);
    unit.regs64.insert(0x220, 0x08 << 48);
    unit.regs64.insert(0x228, FAULT_RECORD_FAULT | 0x26 << 32 | 0xFF00);
    let mut seen = vec![];
    let status = collect_faults(&mut unit, cap, |r, slot| seen.push((r, slot)));
    assert!(status.overflow() && status.pending());
    assert_eq!(
        seen,
        [
            (FaultRecord { reason: 0x22, source_id: 0x18, interrupt_index: 0x18 }, 1),
            (FaultRecord { reason: 0x26, source_id: 0xFF00, interrupt_index: 0x08 }, 0),
        ],
        "records are read from FRI on, wrapping"
    );
    assert!(
        !unit.regs64.contains_key(&0x238) && !unit.regs64.contains_key(&0x228),
        "F bits written back"
    );
    assert_eq!(unit.fsts & 1, 0, "PFO cleared");
    let mut again = 0;
    unit.fsts = 0;
    collect_faults(&mut unit, cap, |_, _| again += 1);
    assert_eq!(again, 0);
}
