//! MSI / MSI-X message encoding (xAPIC-compatible format, no remapping).
//!
//! The address selects the target CPU (8-bit xAPIC id, so ids > 254 are
//! unreachable without interrupt remapping); the data selects vector and
//! delivery mode. Decoders exist for tests and diagnostics.

use crate::id::XApicId;
use crate::signal::TriggerMode;

/// Fixed upper bits of every MSI address: the 0xFEEx_xxxx interrupt window.
pub const MSI_ADDRESS_BASE: u32 = 0xFEE0_0000;
const ADDRESS_WINDOW_MASK: u32 = 0xFFF0_0000;
const DESTINATION_SHIFT: u32 = 12;
/// Address bit 3: redirection hint (allow lowest-priority redirection).
pub const MSI_ADDRESS_REDIRECTION_HINT: u32 = 1 << 3;
/// Address bit 2: logical destination mode.
pub const MSI_ADDRESS_DEST_MODE_LOGICAL: u32 = 1 << 2;

/// Data bit 14: level assert (meaningful for level-triggered messages).
pub const MSI_DATA_LEVEL_ASSERT: u32 = 1 << 14;
const DATA_TRIGGER_SHIFT: u32 = 15;
const DATA_DELIVERY_SHIFT: u32 = 8;

/// The MSI address (low 32 bits; the upper 32 are 0 in this format).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MsiAddress {
    /// Target CPU (physical) or logical mask, bits 12-19.
    pub destination: XApicId,
    /// Bit 3: allow redirection among the destination set.
    pub redirection_hint: bool,
    /// Bit 2: interpret `destination` as logical.
    pub logical: bool,
}

/// Why an MSI value could not be built or decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsiError {
    /// Fixed/lowest-priority vectors 0-15 are illegal.
    IllegalVector(u8),
    /// Address is outside the 0xFEEx_xxxx window.
    NotAnMsiAddress(u32),
    /// Destination 0xFF is broadcast, not a single CPU.
    BroadcastDestination,
    /// Reserved delivery mode in the data word.
    ReservedDeliveryMode(u32),
}

impl MsiAddress {
    /// A physical-mode address targeting `cpu`.
    pub const fn physical(cpu: XApicId) -> Self {
        MsiAddress { destination: cpu, redirection_hint: false, logical: false }
    }

    /// The 32-bit address to program into the device.
    pub const fn encode(self) -> u32 {
        let mut raw = MSI_ADDRESS_BASE | (self.destination.get() as u32) << DESTINATION_SHIFT;
        if self.redirection_hint {
            raw |= MSI_ADDRESS_REDIRECTION_HINT;
        }
        if self.logical {
            raw |= MSI_ADDRESS_DEST_MODE_LOGICAL;
        }
        raw
    }

    /// Decodes an address value.
    pub const fn decode(raw: u32) -> Result<Self, MsiError> {
        if raw & ADDRESS_WINDOW_MASK != MSI_ADDRESS_BASE {
            return Err(MsiError::NotAnMsiAddress(raw));
        }
        let Some(destination) = XApicId::new(((raw >> DESTINATION_SHIFT) & 0xFF) as u8) else {
            return Err(MsiError::BroadcastDestination);
        };
        Ok(MsiAddress {
            destination,
            redirection_hint: raw & MSI_ADDRESS_REDIRECTION_HINT != 0,
            logical: raw & MSI_ADDRESS_DEST_MODE_LOGICAL != 0,
        })
    }
}

/// MSI data delivery mode (bits 8-10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsiDeliveryMode {
    /// Deliver the vector.
    Fixed,
    /// Lowest priority among the destination set.
    LowestPriority,
    /// SMI.
    Smi,
    /// NMI.
    Nmi,
    /// INIT.
    Init,
    /// ExtINT.
    ExtInt,
}

impl MsiDeliveryMode {
    const fn bits(self) -> u32 {
        match self {
            MsiDeliveryMode::Fixed => 0b000,
            MsiDeliveryMode::LowestPriority => 0b001,
            MsiDeliveryMode::Smi => 0b010,
            MsiDeliveryMode::Nmi => 0b100,
            MsiDeliveryMode::Init => 0b101,
            MsiDeliveryMode::ExtInt => 0b111,
        }
    }
}

/// The MSI data word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MsiData {
    /// Vector (>= 16 for fixed/lowest-priority).
    pub vector: u8,
    /// Delivery mode.
    pub delivery: MsiDeliveryMode,
    /// Trigger mode; level messages set the assert bit (14).
    pub trigger: TriggerMode,
}

impl MsiData {
    /// An edge-triggered fixed message: what almost every device uses.
    pub const fn fixed(vector: u8) -> Self {
        MsiData { vector, delivery: MsiDeliveryMode::Fixed, trigger: TriggerMode::Edge }
    }

    /// The data word (bits above 15 are zero).
    pub const fn encode(self) -> Result<u32, MsiError> {
        let carries_vector =
            matches!(self.delivery, MsiDeliveryMode::Fixed | MsiDeliveryMode::LowestPriority);
        if carries_vector && self.vector < crate::MIN_FIXED_VECTOR {
            return Err(MsiError::IllegalVector(self.vector));
        }
        let level = match self.trigger {
            TriggerMode::Level => MSI_DATA_LEVEL_ASSERT,
            TriggerMode::Edge => 0,
        };
        Ok(self.vector as u32
            | self.delivery.bits() << DATA_DELIVERY_SHIFT
            | level
            | self.trigger.bit() << DATA_TRIGGER_SHIFT)
    }

    /// Decodes a data word.
    pub const fn decode(raw: u32) -> Result<Self, MsiError> {
        let delivery = match (raw >> DATA_DELIVERY_SHIFT) & 0b111 {
            0b000 => MsiDeliveryMode::Fixed,
            0b001 => MsiDeliveryMode::LowestPriority,
            0b010 => MsiDeliveryMode::Smi,
            0b100 => MsiDeliveryMode::Nmi,
            0b101 => MsiDeliveryMode::Init,
            0b111 => MsiDeliveryMode::ExtInt,
            other => return Err(MsiError::ReservedDeliveryMode(other)),
        };
        Ok(MsiData {
            vector: (raw & 0xFF) as u8,
            delivery,
            trigger: TriggerMode::from_bit(raw >> DATA_TRIGGER_SHIFT),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ApicId;

    #[test]
    fn address_encodes_destination_in_bits_12_to_19() {
        let cpu = XApicId::try_from(ApicId::new(5)).unwrap();
        assert_eq!(MsiAddress::physical(cpu).encode(), 0xFEE0_5000);
        let max = XApicId::try_from(ApicId::new(254)).unwrap();
        assert_eq!(MsiAddress::physical(max).encode(), 0xFEEF_E000);
        let hinted =
            MsiAddress { redirection_hint: true, logical: true, ..MsiAddress::physical(cpu) };
        assert_eq!(hinted.encode(), 0xFEE0_500C);
        assert_eq!(MsiAddress::decode(hinted.encode()), Ok(hinted));
    }

    #[test]
    fn address_destination_above_254_is_unreachable() {
        assert!(XApicId::try_from(ApicId::new(255)).is_err());
        assert!(XApicId::try_from(ApicId::new(0x105)).is_err(), "no truncation to 5");
        assert_eq!(MsiAddress::decode(0xFEEF_F000), Err(MsiError::BroadcastDestination));
        assert_eq!(MsiAddress::decode(0xFED0_0000), Err(MsiError::NotAnMsiAddress(0xFED0_0000)));
    }

    #[test]
    fn data_encoding() {
        assert_eq!(MsiData::fixed(0x41).encode(), Ok(0x0041));
        let level = MsiData { trigger: TriggerMode::Level, ..MsiData::fixed(0x41) };
        assert_eq!(level.encode(), Ok(0xC041));
        let lowest = MsiData { delivery: MsiDeliveryMode::LowestPriority, ..MsiData::fixed(0x30) };
        assert_eq!(lowest.encode(), Ok(0x0130));
        assert_eq!(MsiData::fixed(3).encode(), Err(MsiError::IllegalVector(3)));
        let nmi = MsiData { vector: 0, delivery: MsiDeliveryMode::Nmi, trigger: TriggerMode::Edge };
        assert_eq!(nmi.encode(), Ok(0x0400));
    }

    #[test]
    fn data_round_trip() {
        for delivery in [
            MsiDeliveryMode::Fixed,
            MsiDeliveryMode::LowestPriority,
            MsiDeliveryMode::Smi,
            MsiDeliveryMode::Nmi,
            MsiDeliveryMode::Init,
            MsiDeliveryMode::ExtInt,
        ] {
            for trigger in [TriggerMode::Edge, TriggerMode::Level] {
                let d = MsiData { vector: 0x80, delivery, trigger };
                assert_eq!(MsiData::decode(d.encode().unwrap()), Ok(d));
            }
        }
        assert_eq!(MsiData::decode(0x300), Err(MsiError::ReservedDeliveryMode(3)));
    }
}
