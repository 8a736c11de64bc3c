//! Pure logic of Keel's local-APIC / IOAPIC layer.
//!
//! Everything here is arithmetic and sequencing: no MMIO, no MSR, no `unsafe`.
//! The kernel supplies two tiny leaf backends (xAPIC MMIO and x2APIC MSR)
//! implementing [`lapic::LapicRegisters`], and one implementing
//! [`ioapic::IoapicRegisters`]; every programming *sequence* (init order,
//! timer order, ESR write-before-read, ICR encoding) lives here so that host
//! tests can drive the exact same code through the recording fakes in
//! `fake` (feature `fake`).
//!
//! Layout:
//! - [`id`]: APIC ID newtypes (sparse 32-bit ids vs. 8-bit xAPIC ids).
//! - [`regs`]: the architectural LAPIC register map for both modes.
//! - [`icr`]: typed IPI builder and ICR encoders.
//! - [`lvt`]: LVT / SVR / divide / ESR / version register values.
//! - [`base`]: `IA32_APIC_BASE` and the x2APIC firmware lock MSRs.
//! - [`mode`]: the xAPIC/x2APIC mode-selection state machine.
//! - [`lapic`]: backend-generic LAPIC programming sequences.
//! - [`timer`]: LAPIC timer calibration math.
//! - [`ioapic`]: IOAPIC redirection entries and programming sequences.
//! - [`msi`]: MSI address/data encoding.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod base;
pub mod delivery;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod icr;
pub mod id;
pub mod ioapic;
pub mod lapic;
pub mod lvt;
pub mod mode;
pub mod msi;
pub mod regs;
pub mod signal;
pub mod timer;

pub use base::{ApicBase, XapicDisableStatus};
pub use delivery::{DeliveryStatus, DeliveryWait};
pub use icr::{IcrError, IcrValue, Ipi, XApicIcr};
pub use id::{ApicId, X2ApicCluster, XApicId};
pub use ioapic::{Ioapic, IoapicRegisters, RedirectionEntry};
pub use lapic::{Lapic, LapicError, LapicRegisters, LocalInit};
pub use lvt::{
    EsrFlags, LvtError, LvtLocal, LvtTimer, SpuriousVector, TimerDivide, TimerMode, Version,
};
pub use mode::{plan_for_ap, plan_for_bsp, ApicState, LapicMode, ModeError, ModeInputs, ModePlan};
pub use regs::Register;
pub use signal::{Polarity, TriggerMode};

/// Lowest vector a fixed interrupt may use.
///
/// Vectors 0-15 are reserved by the architecture; the LAPIC reports them as
/// "illegal vector" errors (ESR bits 5/6) instead of delivering them, so every
/// encoder in this crate refuses them up front rather than failing silently
/// at run time.
pub const MIN_FIXED_VECTOR: u8 = 16;

/// Returns `Err(vector)` for the architecturally illegal vectors 0-15.
///
/// Shared by every encoder that carries a fixed-delivery vector so the rule
/// lives in one place.
pub(crate) const fn check_fixed_vector(vector: u8) -> Result<u8, u8> {
    if vector < MIN_FIXED_VECTOR {
        Err(vector)
    } else {
        Ok(vector)
    }
}
