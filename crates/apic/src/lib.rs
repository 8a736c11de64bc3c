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
//! - `fake` (feature `fake`): recording fakes of a LAPIC and an IOAPIC.
//!
//! The crate is `no_std`, allocation-free and builds on stable Rust 1.65 or later.
//!
//! # Choosing the mode
//!
//! [`plan_for_bsp`] turns what CPUID and `IA32_APIC_BASE` say into the legal sequence of
//! `IA32_APIC_BASE` writes (never the EN=0/EXTD=1 state that faults); application processors
//! follow the boot CPU's mode through [`plan_for_ap`].
//!
//! ```
//! use keel_apic::{plan_for_bsp, ApicBase, ApicState, LapicMode, ModeInputs};
//! use keel_apic::base::{APIC_BASE_BSP, APIC_BASE_EN};
//!
//! // Firmware left the boot CPU in xAPIC mode; CPUID.01H:ECX[21] reports x2APIC.
//! let inputs = ModeInputs {
//!     cpuid_x2apic: true,
//!     apic_base: ApicBase::from_raw(0xFEE0_0000 | APIC_BASE_EN | APIC_BASE_BSP),
//!     x2apic_locked: None,
//! };
//! let plan = plan_for_bsp(inputs).unwrap();
//! assert_eq!(plan.mode, LapicMode::X2Apic);
//! // One write: xAPIC -> x2APIC (EXTD set, EN kept, base address and BSP bit preserved).
//! assert_eq!(plan.writes().len(), 1);
//! assert_eq!(plan.writes()[0].state(), ApicState::X2Apic);
//! assert!(plan.writes()[0].is_bsp());
//! ```
//!
//! # Driving a local APIC
//!
//! A kernel implements [`LapicRegisters`] once per mode (an MMIO page for xAPIC, `RDMSR` /
//! `WRMSR` for x2APIC) and hands it to [`Lapic`], which owns the ordering rules. The same
//! sequences run on the host against `fake::FakeLapic` (feature `fake`), which
//! records every access and panics on one real hardware would reject:
//!
//! ```
//! # // Always on in the workspace (self dev-dependency); `--features fake` elsewhere.
//! # #[cfg(feature = "fake")] {
//! use keel_apic::fake::{Event, FakeLapic};
//! use keel_apic::{ApicId, IcrValue, Ipi, Lapic, LapicMode, LocalInit, LvtLocal, Register};
//! use keel_apic::TimerDivide;
//!
//! let mut lapic = Lapic::new(FakeLapic::new(LapicMode::X2Apic, ApicId::new(3)));
//! assert_eq!(lapic.id(), ApicId::new(3));
//!
//! let errors = lapic
//!     .enable(LocalInit {
//!         spurious_vector: 0xFF,
//!         error_vector: 0xFE,
//!         lint0: LvtLocal::masked(),
//!         lint1: LvtLocal::nmi(),
//!     })
//!     .unwrap();
//! assert!(errors.is_empty());
//! lapic.start_periodic(0x20, TimerDivide::By16, 100_000).unwrap();
//! lapic.send(Ipi::fixed(0x40).to(ApicId::new(300))).unwrap();
//!
//! let fake = lapic.registers();
//! // The SVR software-enable precedes the LVT writes (they are lost while it is clear) ...
//! let svr = fake.first_write_to(Register::Svr).unwrap();
//! assert!(svr < fake.first_write_to(Register::LvtLint1).unwrap());
//! // ... the timer's initial count is written last, and the IPI is one 64-bit ICR write
//! // addressing APIC ID 300, which no xAPIC could reach.
//! assert!(fake.first_write_to(Register::TimerInitialCount).unwrap()
//!     > fake.first_write_to(Register::LvtTimer).unwrap());
//! assert!(matches!(fake.events().last(), Some(Event::Icr(IcrValue::X2Apic(icr))) if icr >> 32 == 300));
//! # }
//! ```
//!
//! # Rules the types enforce
//!
//! ```
//! use keel_apic::{ApicId, IcrError, Ipi, LapicMode, XApicId};
//!
//! // Vectors 0-15 are refused before any register is touched.
//! assert!(Ipi::fixed(3).to_self().encode(LapicMode::X2Apic).is_err());
//! // An xAPIC cannot address APIC ID 300: the encoder says so instead of truncating it.
//! let far = Ipi::fixed(0x40).to(ApicId::new(300));
//! assert!(matches!(far.encode(LapicMode::XApic), Err(IcrError::DestinationUnreachableInXApic(_))));
//! assert!(XApicId::new(0xFF).is_none());
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

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
#[cfg(test)]
mod spec_tests;
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
pub use mode::{
    bsp_mode, plan_for_ap, plan_for_bsp, plan_to, ApicState, BspModeReason, LapicMode, ModeError,
    ModeInputs, ModePlan,
};
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

/// The README's example, compiled and run with the doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
