//! IOAPIC redirection entries and programming sequences.
//!
//! The IOAPIC is accessed indirectly: write a register index to IOREGSEL
//! (MMIO base + 0x00), then read/write the data through IOWIN (base + 0x10).
//! The kernel implements [`IoapicRegisters`] with that pair; [`Ioapic`] owns
//! the index math and the masking order.
//!
//! Destinations are xAPIC-format 8-bit ids: without interrupt remapping a
//! device interrupt cannot reach an APIC ID above 254, so physical
//! destinations are typed [`XApicId`].

use crate::id::XApicId;
use crate::signal::{Polarity, TriggerMode};

/// Byte offset of IOREGSEL (register index) from the IOAPIC MMIO base.
pub const IOREGSEL_OFFSET: usize = 0x00;
/// Byte offset of IOWIN (register data) from the IOAPIC MMIO base.
pub const IOWIN_OFFSET: usize = 0x10;
/// IOAPIC identification register index.
pub const IOAPICID: u8 = 0x00;
/// IOAPIC version register index (read-only).
pub const IOAPICVER: u8 = 0x01;
/// IOAPIC arbitration register index (read-only).
pub const IOAPICARB: u8 = 0x02;
/// First redirection-table register index.
pub const REDIRECTION_TABLE_BASE: u8 = 0x10;
/// Most pins an index fits: 0x10 + 2 * 119 + 1 = 0xFF.
pub const MAX_PINS: u8 = 120;

/// Redirection entry mask bit (16).
pub const RTE_MASKED: u32 = 1 << 16;
/// Read-only status bits (delivery status 12, remote IRR 14).
pub const RTE_READ_ONLY_BITS: u32 = (1 << 12) | (1 << 14);

/// Register index of the low half of `pin`'s redirection entry.
///
/// Callers must pass `pin < MAX_PINS`; [`Ioapic`] checks against the
/// hardware's actual count first.
pub const fn redirection_low_index(pin: u8) -> u8 {
    REDIRECTION_TABLE_BASE + 2 * pin
}

/// Register index of the high half (destination) of `pin`'s entry.
pub const fn redirection_high_index(pin: u8) -> u8 {
    redirection_low_index(pin) + 1
}

/// Decoded IOAPIC version register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoapicVersion {
    /// Bits 0-7.
    pub version: u8,
    /// Bits 16-23: index of the last redirection entry (pins - 1).
    pub max_redirection_entry: u8,
}

impl IoapicVersion {
    /// Decodes a register value.
    pub const fn decode(raw: u32) -> Self {
        IoapicVersion {
            version: (raw & 0xFF) as u8,
            max_redirection_entry: ((raw >> 16) & 0xFF) as u8,
        }
    }

    /// Number of input pins (capped at [`MAX_PINS`], the index-space limit).
    pub const fn pins(self) -> u8 {
        if self.max_redirection_entry >= MAX_PINS {
            MAX_PINS
        } else {
            self.max_redirection_entry + 1
        }
    }
}

/// Redirection-entry delivery mode (bits 8-10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IoDeliveryMode {
    /// Deliver `vector`.
    Fixed,
    /// Deliver to the lowest-priority CPU of a logical set.
    LowestPriority,
    /// System management interrupt (vector must be 0, edge).
    Smi,
    /// NMI (vector ignored, edge).
    Nmi,
    /// INIT (vector ignored, edge).
    Init,
    /// 8259-compatible: the PIC supplies the vector (edge).
    ExtInt,
}

impl IoDeliveryMode {
    const fn bits(self) -> u32 {
        match self {
            IoDeliveryMode::Fixed => 0b000,
            IoDeliveryMode::LowestPriority => 0b001,
            IoDeliveryMode::Smi => 0b010,
            IoDeliveryMode::Nmi => 0b100,
            IoDeliveryMode::Init => 0b101,
            IoDeliveryMode::ExtInt => 0b111,
        }
    }

    const fn from_bits(bits: u32) -> Option<Self> {
        Some(match bits {
            0b000 => IoDeliveryMode::Fixed,
            0b001 => IoDeliveryMode::LowestPriority,
            0b010 => IoDeliveryMode::Smi,
            0b100 => IoDeliveryMode::Nmi,
            0b101 => IoDeliveryMode::Init,
            0b111 => IoDeliveryMode::ExtInt,
            _ => return None,
        })
    }

    const fn carries_vector(self) -> bool {
        matches!(self, IoDeliveryMode::Fixed | IoDeliveryMode::LowestPriority)
    }
}

/// Redirection-entry destination (destination mode bit 11 + bits 56-63).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IoDestination {
    /// One CPU by xAPIC id (physical mode).
    Physical(XApicId),
    /// A logical destination bitmask (logical mode; interpretation per LDR/DFR).
    Logical(u8),
}

/// One IOAPIC redirection-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RedirectionEntry {
    /// Vector (>= 16 for fixed/lowest-priority).
    pub vector: u8,
    /// Delivery mode.
    pub delivery: IoDeliveryMode,
    /// Destination.
    pub destination: IoDestination,
    /// Input pin polarity (ISA: high; PCI: low).
    pub polarity: Polarity,
    /// Trigger mode (ISA: edge; PCI: level).
    pub trigger: TriggerMode,
    /// Whether the pin is masked.
    pub masked: bool,
}

/// The two 32-bit halves of an encoded redirection entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EncodedEntry {
    /// Register `0x10 + 2 * pin`: vector, mode, polarity, trigger, mask.
    pub low: u32,
    /// Register `0x11 + 2 * pin`: destination in bits 24-31.
    pub high: u32,
}

/// Why an IOAPIC operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoapicError {
    /// Fixed/lowest-priority vectors 0-15 are illegal.
    IllegalVector(u8),
    /// The pin is beyond this IOAPIC's redirection table.
    NoSuchPin {
        /// Requested pin.
        pin: u8,
        /// Number of pins this IOAPIC has.
        pins: u8,
    },
    /// A reserved delivery mode was read back.
    ReservedDeliveryMode(u32),
    /// A physical destination of 0xFF (broadcast) was read back.
    BroadcastDestination,
}

const DELIVERY_SHIFT: u32 = 8;
const DEST_MODE_LOGICAL: u32 = 1 << 11;
const POLARITY_SHIFT: u32 = 13;
const TRIGGER_SHIFT: u32 = 15;
const DESTINATION_SHIFT: u32 = 24;

impl RedirectionEntry {
    /// A masked, edge, active-high fixed entry: the safe default.
    pub const fn masked_fixed(vector: u8, destination: XApicId) -> Self {
        RedirectionEntry {
            vector,
            delivery: IoDeliveryMode::Fixed,
            destination: IoDestination::Physical(destination),
            polarity: Polarity::ActiveHigh,
            trigger: TriggerMode::Edge,
            masked: true,
        }
    }

    /// Encodes both halves; fails for illegal vectors.
    pub fn encode(&self) -> Result<EncodedEntry, IoapicError> {
        let vector = if self.delivery.carries_vector() {
            crate::check_fixed_vector(self.vector).map_err(IoapicError::IllegalVector)?
        } else {
            0
        };
        let (dest_mode, destination) = match self.destination {
            IoDestination::Physical(id) => (0, id.get()),
            IoDestination::Logical(mask) => (DEST_MODE_LOGICAL, mask),
        };
        let low = u32::from(vector)
            | self.delivery.bits() << DELIVERY_SHIFT
            | dest_mode
            | self.polarity.bit() << POLARITY_SHIFT
            | self.trigger.bit() << TRIGGER_SHIFT
            | if self.masked { RTE_MASKED } else { 0 };
        Ok(EncodedEntry { low, high: u32::from(destination) << DESTINATION_SHIFT })
    }

    /// Decodes both halves (read-only status bits ignored).
    pub fn decode(encoded: EncodedEntry) -> Result<Self, IoapicError> {
        let low = encoded.low;
        let delivery_bits = (low >> DELIVERY_SHIFT) & 0b111;
        let delivery = IoDeliveryMode::from_bits(delivery_bits)
            .ok_or(IoapicError::ReservedDeliveryMode(delivery_bits))?;
        let raw_destination = (encoded.high >> DESTINATION_SHIFT) as u8;
        let destination = if low & DEST_MODE_LOGICAL != 0 {
            IoDestination::Logical(raw_destination)
        } else {
            IoDestination::Physical(
                XApicId::new(raw_destination).ok_or(IoapicError::BroadcastDestination)?,
            )
        };
        Ok(RedirectionEntry {
            vector: (low & 0xFF) as u8,
            delivery,
            destination,
            polarity: Polarity::from_bit(low >> POLARITY_SHIFT),
            trigger: TriggerMode::from_bit(low >> TRIGGER_SHIFT),
            masked: low & RTE_MASKED != 0,
        })
    }
}

/// Indirect register access to one IOAPIC, implemented by the kernel
/// (write IOREGSEL, then access IOWIN; the pair must not be interleaved
/// with another CPU's, so the kernel holds a lock around each call).
pub trait IoapicRegisters {
    /// Reads register `index`.
    fn read(&mut self, index: u8) -> u32;
    /// Writes register `index`.
    fn write(&mut self, index: u8, value: u32);
}

/// One IOAPIC, driven through backend `R`.
///
/// Keel owns the IOAPIC once it has masked every pin, so the writable bits of each entry's
/// low half are exactly what it last wrote. [`Ioapic`] keeps that copy and masks or unmasks
/// from it: one register write and no read-back on the interrupt path, where every access is
/// an uncached MMIO round trip (a VM exit when virtualised).
#[derive(Debug)]
pub struct Ioapic<R: IoapicRegisters> {
    regs: R,
    pins: u8,
    /// Last value written to each pin's low half (read-only bits clear).
    low: [u32; MAX_PINS as usize],
    /// Bit `pin` set: `low[pin]` is known.
    low_known: u128,
}

impl<R: IoapicRegisters> Ioapic<R> {
    /// Wraps a backend and reads the pin count from the version register.
    pub fn new(mut regs: R) -> Self {
        let pins = IoapicVersion::decode(regs.read(IOAPICVER)).pins();
        Ioapic { regs, pins, low: [0; MAX_PINS as usize], low_known: 0 }
    }

    /// Writes `pin`'s low half and remembers it.
    fn write_low(&mut self, pin: u8, value: u32) {
        let value = value & !RTE_READ_ONLY_BITS;
        self.regs.write(redirection_low_index(pin), value);
        self.low[pin as usize] = value;
        self.low_known |= 1 << pin;
    }

    /// `pin`'s low half as last written, read from the hardware only the first time.
    fn low(&mut self, pin: u8) -> u32 {
        if self.low_known & (1 << pin) == 0 {
            self.low[pin as usize] =
                self.regs.read(redirection_low_index(pin)) & !RTE_READ_ONLY_BITS;
            self.low_known |= 1 << pin;
        }
        self.low[pin as usize]
    }

    /// The backend.
    pub fn registers(&self) -> &R {
        &self.regs
    }

    /// Unwraps the backend.
    pub fn into_registers(self) -> R {
        self.regs
    }

    /// Number of redirection entries (input pins).
    pub fn pins(&self) -> u8 {
        self.pins
    }

    /// The 4-bit IOAPIC id from IOAPICID bits 24-27.
    pub fn id(&mut self) -> u8 {
        ((self.regs.read(IOAPICID) >> 24) & 0xF) as u8
    }

    fn check_pin(&self, pin: u8) -> Result<(), IoapicError> {
        if pin < self.pins {
            Ok(())
        } else {
            Err(IoapicError::NoSuchPin { pin, pins: self.pins })
        }
    }

    /// Masks every pin, preserving the rest of each entry (boot state is
    /// firmware's and must not fire before Keel routes it).
    pub fn mask_all(&mut self) {
        for pin in 0..self.pins {
            let low = self.regs.read(redirection_low_index(pin));
            self.write_low(pin, low | RTE_MASKED);
        }
    }

    /// Programs `pin`. The low half is first written masked, then the
    /// destination, then the final low half, so the pin is never live with a
    /// stale destination or vector.
    pub fn program(&mut self, pin: u8, entry: RedirectionEntry) -> Result<(), IoapicError> {
        self.check_pin(pin)?;
        self.program_encoded(pin, entry.encode()?)
    }

    /// Programs `pin` with an entry encoded elsewhere (the remappable format of interrupt
    /// remapping), in the same order as [`Ioapic::program`]: masked low half, high half,
    /// then the final low half when it is unmasked.
    pub fn program_encoded(&mut self, pin: u8, encoded: EncodedEntry) -> Result<(), IoapicError> {
        self.check_pin(pin)?;
        self.write_low(pin, encoded.low | RTE_MASKED);
        self.regs.write(redirection_high_index(pin), encoded.high);
        if encoded.low & RTE_MASKED == 0 {
            self.write_low(pin, encoded.low);
        }
        Ok(())
    }

    /// Reads back both raw halves of `pin`'s entry (whatever its format).
    pub fn read_encoded(&mut self, pin: u8) -> Result<EncodedEntry, IoapicError> {
        self.check_pin(pin)?;
        let low = self.regs.read(redirection_low_index(pin));
        let high = self.regs.read(redirection_high_index(pin));
        Ok(EncodedEntry { low, high })
    }

    /// Sets or clears `pin`'s mask bit, preserving the rest of the entry: one write of the
    /// remembered low half.
    pub fn set_masked(&mut self, pin: u8, masked: bool) -> Result<(), IoapicError> {
        self.check_pin(pin)?;
        let low = self.low(pin);
        let low = if masked { low | RTE_MASKED } else { low & !RTE_MASKED };
        self.write_low(pin, low);
        Ok(())
    }

    /// Reads back `pin`'s entry.
    pub fn read_entry(&mut self, pin: u8) -> Result<RedirectionEntry, IoapicError> {
        self.check_pin(pin)?;
        let low = self.regs.read(redirection_low_index(pin));
        let high = self.regs.read(redirection_high_index(pin));
        RedirectionEntry::decode(EncodedEntry { low, high })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakeIoapic, IoEvent};
    use crate::id::ApicId;

    fn cpu(id: u32) -> XApicId {
        XApicId::try_from(ApicId::new(id)).unwrap()
    }

    fn pci_entry() -> RedirectionEntry {
        RedirectionEntry {
            vector: 0x41,
            delivery: IoDeliveryMode::Fixed,
            destination: IoDestination::Physical(cpu(3)),
            polarity: Polarity::ActiveLow,
            trigger: TriggerMode::Level,
            masked: false,
        }
    }

    #[test]
    fn index_math() {
        assert_eq!(redirection_low_index(0), 0x10);
        assert_eq!(redirection_high_index(0), 0x11);
        assert_eq!(redirection_low_index(23), 0x3E);
        assert_eq!(redirection_high_index(119), 0xFF);
    }

    #[test]
    fn version_decode() {
        let v = IoapicVersion::decode(0x0017_0020);
        assert_eq!(v, IoapicVersion { version: 0x20, max_redirection_entry: 23 });
        assert_eq!(v.pins(), 24);
        assert_eq!(IoapicVersion::decode(0x00FF_0011).pins(), MAX_PINS);
    }

    #[test]
    fn entry_encoding_bit_layout() {
        let e = pci_entry().encode().unwrap();
        assert_eq!(e, EncodedEntry { low: 0x0000_A041, high: 0x0300_0000 });
        let isa = RedirectionEntry {
            polarity: Polarity::ActiveHigh,
            trigger: TriggerMode::Edge,
            masked: true,
            ..pci_entry()
        };
        assert_eq!(isa.encode().unwrap().low, 0x0001_0041);
        let logical = RedirectionEntry {
            destination: IoDestination::Logical(0x0F),
            delivery: IoDeliveryMode::LowestPriority,
            ..pci_entry()
        };
        assert_eq!(logical.encode().unwrap(), EncodedEntry { low: 0x0000_A941, high: 0x0F00_0000 });
        let nmi = RedirectionEntry { delivery: IoDeliveryMode::Nmi, vector: 2, ..pci_entry() };
        assert_eq!(nmi.encode().unwrap().low & 0xFF, 0, "NMI carries no vector");
    }

    #[test]
    fn entry_round_trips_every_delivery_mode() {
        for delivery in [
            IoDeliveryMode::Fixed,
            IoDeliveryMode::LowestPriority,
            IoDeliveryMode::Smi,
            IoDeliveryMode::Nmi,
            IoDeliveryMode::Init,
            IoDeliveryMode::ExtInt,
        ] {
            let mut entry = RedirectionEntry { delivery, ..pci_entry() };
            if !delivery.carries_vector() {
                entry.vector = 0;
            }
            assert_eq!(RedirectionEntry::decode(entry.encode().unwrap()), Ok(entry));
        }
    }

    #[test]
    fn entry_rejects_illegal_vectors_and_bad_readback() {
        assert_eq!(
            RedirectionEntry { vector: 15, ..pci_entry() }.encode(),
            Err(IoapicError::IllegalVector(15))
        );
        assert_eq!(
            RedirectionEntry::decode(EncodedEntry { low: 0x300, high: 0 }),
            Err(IoapicError::ReservedDeliveryMode(3))
        );
        assert_eq!(
            RedirectionEntry::decode(EncodedEntry { low: 0x41, high: 0xFF00_0000 }),
            Err(IoapicError::BroadcastDestination)
        );
    }

    #[test]
    fn destination_above_254_is_unrepresentable() {
        assert!(XApicId::try_from(ApicId::new(255)).is_err());
        assert!(XApicId::try_from(ApicId::new(300)).is_err());
    }

    #[test]
    fn pins_come_from_version_register() {
        let ioapic = Ioapic::new(FakeIoapic::new(2, 24));
        assert_eq!(ioapic.pins(), 24);
        let mut ioapic = ioapic;
        assert_eq!(ioapic.id(), 2);
    }

    #[test]
    fn program_masks_then_destination_then_unmasks() {
        let mut ioapic = Ioapic::new(FakeIoapic::new(0, 24));
        ioapic.program(5, pci_entry()).unwrap();
        assert_eq!(ioapic.registers().events()[0], IoEvent::Read(IOAPICVER));
        assert_eq!(
            ioapic.registers().events()[1..],
            [
                IoEvent::Write(0x1A, 0x0001_A041),
                IoEvent::Write(0x1B, 0x0300_0000),
                IoEvent::Write(0x1A, 0x0000_A041),
            ]
        );
        assert_eq!(ioapic.read_entry(5), Ok(pci_entry()));
    }

    #[test]
    fn program_encoded_keeps_the_order_and_reads_back_raw() {
        let mut ioapic = Ioapic::new(FakeIoapic::new(0, 24));
        // A remappable-format entry: index 8 in bits 63:49, format bit 48, vector 0x51.
        let raw = EncodedEntry { low: 0x0000_0051, high: 0x0011_0000 };
        ioapic.program_encoded(8, raw).unwrap();
        assert_eq!(
            ioapic.registers().events()[1..],
            [
                IoEvent::Write(0x20, 0x0001_0051),
                IoEvent::Write(0x21, 0x0011_0000),
                IoEvent::Write(0x20, 0x0000_0051),
            ]
        );
        assert_eq!(ioapic.read_encoded(8), Ok(raw));
        ioapic.set_masked(8, true).unwrap();
        assert_eq!(ioapic.read_encoded(8).unwrap().low, 0x0001_0051);
        assert_eq!(ioapic.read_encoded(24), Err(IoapicError::NoSuchPin { pin: 24, pins: 24 }));
    }

    #[test]
    fn program_masked_entry_never_unmasks() {
        let mut ioapic = Ioapic::new(FakeIoapic::new(0, 24));
        let entry = RedirectionEntry { masked: true, ..pci_entry() };
        ioapic.program(0, entry).unwrap();
        let writes: Vec<_> = ioapic
            .registers()
            .events()
            .iter()
            .filter(|e| matches!(e, IoEvent::Write(..)))
            .collect();
        assert_eq!(writes.len(), 2);
        assert!(ioapic.registers().events().iter().all(|e| match e {
            IoEvent::Write(0x10, v) => v & RTE_MASKED != 0,
            _ => true,
        }));
    }

    #[test]
    fn program_rejects_missing_pin_without_touching_hardware() {
        let mut ioapic = Ioapic::new(FakeIoapic::new(0, 24));
        let before = ioapic.registers().events().len();
        assert_eq!(
            ioapic.program(24, pci_entry()),
            Err(IoapicError::NoSuchPin { pin: 24, pins: 24 })
        );
        assert_eq!(
            ioapic.set_masked(200, true),
            Err(IoapicError::NoSuchPin { pin: 200, pins: 24 })
        );
        assert_eq!(ioapic.registers().events().len(), before);
    }

    #[test]
    fn mask_all_masks_every_pin_and_preserves_fields() {
        let mut fake = FakeIoapic::new(0, 4);
        fake.set(0x12, 0x0000_A041 | (1 << 14)); // pin 1 live, remote IRR set
        let mut ioapic = Ioapic::new(fake);
        ioapic.mask_all();
        for pin in 0..4 {
            assert_ne!(ioapic.registers().get(redirection_low_index(pin)) & RTE_MASKED, 0);
        }
        assert_eq!(
            ioapic.registers().get(0x12),
            0x0001_A041,
            "read-only bits are not written back"
        );
    }

    #[test]
    fn set_masked_toggles_only_the_mask() {
        let mut ioapic = Ioapic::new(FakeIoapic::new(0, 24));
        ioapic.program(7, pci_entry()).unwrap();
        ioapic.set_masked(7, true).unwrap();
        assert_eq!(ioapic.read_entry(7), Ok(RedirectionEntry { masked: true, ..pci_entry() }));
        ioapic.set_masked(7, false).unwrap();
        assert_eq!(ioapic.read_entry(7), Ok(pci_entry()));
        // Idempotent both ways: masking a masked pin keeps it masked.
        ioapic.set_masked(7, true).unwrap();
        ioapic.set_masked(7, true).unwrap();
        assert_eq!(ioapic.read_entry(7).map(|e| e.masked), Ok(true));
        ioapic.set_masked(7, false).unwrap();
        ioapic.set_masked(7, false).unwrap();
        assert_eq!(ioapic.read_entry(7), Ok(pci_entry()));
    }

    #[test]
    fn set_masked_writes_the_remembered_entry_without_reading() {
        let mut ioapic = Ioapic::new(FakeIoapic::new(0, 24));
        ioapic.program(7, pci_entry()).unwrap();
        let before = ioapic.registers().events().len();
        ioapic.set_masked(7, true).unwrap();
        ioapic.set_masked(7, false).unwrap();
        assert_eq!(
            ioapic.registers().events()[before..],
            [IoEvent::Write(0x1E, 0x0001_A041), IoEvent::Write(0x1E, 0x0000_A041),]
        );
    }

    #[test]
    fn set_masked_reads_an_unknown_entry_once_and_drops_status_bits() {
        let mut fake = FakeIoapic::new(0, 24);
        // Firmware left pin 3 programmed; the line is pending (delivery status, remote IRR).
        fake.set(0x16, 0x0000_A031 | RTE_READ_ONLY_BITS);
        let mut ioapic = Ioapic::new(fake);
        ioapic.set_masked(3, true).unwrap();
        ioapic.set_masked(3, false).unwrap();
        assert_eq!(
            ioapic.registers().events()[1..],
            [
                IoEvent::Read(0x16),
                IoEvent::Write(0x16, 0x0001_A031),
                IoEvent::Write(0x16, 0x0000_A031),
            ]
        );
    }

    #[test]
    fn mask_all_then_program_then_mask_reads_each_pin_once() {
        let mut ioapic = Ioapic::new(FakeIoapic::new(0, 4));
        ioapic.mask_all();
        ioapic.program(2, pci_entry()).unwrap();
        for _ in 0..3 {
            ioapic.set_masked(2, true).unwrap();
            ioapic.set_masked(2, false).unwrap();
        }
        let reads =
            ioapic.registers().events().iter().filter(|e| matches!(e, IoEvent::Read(_))).count();
        assert_eq!(reads, 1 + 4, "version register, then each pin once in mask_all");
        assert_eq!(ioapic.read_entry(2), Ok(pci_entry()));
    }
}
