//! Electrical signalling attributes shared by LVT entries, IOAPIC
//! redirection entries, MSI data and the ICR.
//!
//! They are defined once so that "active low, level triggered" means the same
//! thing in every encoder and cannot be confused with a plain `bool`.

/// Pin polarity of an interrupt input.
///
/// Encoded as bit 13 of LVT LINT entries and IOAPIC redirection entries
/// (0 = active high, 1 = active low).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Polarity {
    /// Asserted when the line is high (ISA default).
    ActiveHigh,
    /// Asserted when the line is low (PCI INTx default).
    ActiveLow,
}

impl Polarity {
    /// The register bit value (0 or 1) for this polarity.
    pub const fn bit(self) -> u32 {
        match self {
            Polarity::ActiveHigh => 0,
            Polarity::ActiveLow => 1,
        }
    }

    /// Decodes the register bit value; any non-zero value is active low.
    pub const fn from_bit(bit: u32) -> Self {
        if bit & 1 == 0 {
            Polarity::ActiveHigh
        } else {
            Polarity::ActiveLow
        }
    }
}

/// Trigger mode of an interrupt.
///
/// Encoded as bit 15 in the ICR, LVT LINT entries, IOAPIC redirection entries
/// and MSI data (0 = edge, 1 = level). Level-triggered interrupts need an EOI
/// that reaches the IOAPIC; edge-triggered ones do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TriggerMode {
    /// Latched on a transition.
    Edge,
    /// Held while the line is asserted.
    Level,
}

impl TriggerMode {
    /// The register bit value (0 or 1) for this trigger mode.
    pub const fn bit(self) -> u32 {
        match self {
            TriggerMode::Edge => 0,
            TriggerMode::Level => 1,
        }
    }

    /// Decodes the register bit value; any non-zero value is level.
    pub const fn from_bit(bit: u32) -> Self {
        if bit & 1 == 0 {
            TriggerMode::Edge
        } else {
            TriggerMode::Level
        }
    }
}
