//! Pure logic of Keel's Intel VT-d interrupt remapping and AMD IVRS parsing (no MMIO, no
//! `unsafe`).
//!
//! - [`dmar`]: the ACPI DMAR table: remapping hardware units (DRHD), their device scopes
//!   (IOAPICs, HPETs, PCI devices) and include-all units (VT-d spec 8.1-8.3).
//! - [`amdvi`]: AMD-Vi register values, device table entries and commands.
//! - [`ivrs`]: the ACPI IVRS table of AMD IOMMUs: IVHD blocks, their device entries and the
//!   requester ids of IOAPICs and HPETs (AMD IOMMU spec 5.2).
//! - [`irte`]: the 128-bit interrupt-remapping table entry (VT-d spec 9.10) and the table's
//!   index plan (IOAPIC pins by GSI, then MSI handles).
//! - [`remap`]: remappable-format IOAPIC redirection entries and MSI address/data
//!   (VT-d spec 5.1.5.1, 5.1.5.2).
//! - [`regs`]: the register map, capability decoding, the global command/status protocol,
//!   IRTA/IQA encodings and fault records (VT-d spec 10.4).
//! - [`queue`]: queued-invalidation descriptors (VT-d spec 6.5.2).
//! - [`sequence`]: the enabling, command and fault-collection sequences over a register
//!   trait the kernel implements with MMIO (host-tested through a fake unit).
//! - [`update`]: changing one IRTE while the units run: store, cache-line flush on a
//!   non-coherent unit, interrupt-entry-cache invalidation, wait (host-tested for its order).
//!
//! The kernel supplies the register accesses and the memory; every value it writes is built
//! (and every value it reads is decoded) here so that host tests check the bit layouts.
//!
//! The crate is `no_std`, allocation-free, forbids `unsafe` and builds on stable Rust 1.70
//! or later. It builds on `keel-apic` for APIC IDs, trigger modes and IOAPIC entry formats.
//!
//! # Reading the DMAR table
//!
//! [`Dmar::parse`] checks the header (signature, length, checksum) and borrows the bytes;
//! the structures are walked lazily, and a malformed one ends the walk with an error instead
//! of a guess.
//!
//! ```
//! use keel_iommu::{Dmar, ScopeKind, SourceId};
//!
//! // QEMU's q35 with `-device intel-iommu,intremap=on`: one include-all unit at 0xFED90000
//! // whose scope lists IOAPIC 0 at PCI 0xFF:00.0.
//! let mut table = vec![0u8; 48];
//! table[..4].copy_from_slice(b"DMAR");
//! table[8] = 1; // revision
//! table[36] = 38; // host address width - 1
//! table[37] = 0b001; // interrupt remapping supported
//! let drhd_len: u16 = 16 + 8;
//! table.extend_from_slice(&0u16.to_le_bytes()); // type 0: DRHD
//! table.extend_from_slice(&drhd_len.to_le_bytes());
//! table.extend_from_slice(&[1, 0]); // INCLUDE_PCI_ALL
//! table.extend_from_slice(&0u16.to_le_bytes()); // segment 0
//! table.extend_from_slice(&0xFED9_0000u64.to_le_bytes());
//! table.extend_from_slice(&[3, 8, 0, 0, 0, 0xFF, 0, 0]); // IOAPIC scope: id 0, bus 0xFF, 00.0
//! let len = table.len() as u32;
//! table[4..8].copy_from_slice(&len.to_le_bytes());
//! let sum = table.iter().fold(0u8, |s, b| s.wrapping_add(*b));
//! table[9] = 0u8.wrapping_sub(sum);
//!
//! let dmar = Dmar::parse(&table).unwrap();
//! assert!(dmar.flags.interrupt_remapping);
//! assert_eq!(dmar.first_error(), None);
//! let (unit, ioapic) = dmar.ioapic_unit(0).unwrap();
//! assert_eq!(unit.register_base, 0xFED9_0000);
//! assert!(unit.include_pci_all());
//! assert_eq!(ioapic.kind, ScopeKind::IoApic);
//! assert_eq!(ioapic.source_id(), Some(SourceId(0xFF00)));
//!
//! // One flipped byte breaks the checksum: the table is refused, not half-read.
//! table[40] ^= 1;
//! assert!(Dmar::parse(&table).is_err());
//! ```
//!
//! # Remapping an IOAPIC pin
//!
//! With remapping on, the IOAPIC entry names a table index; the [`Irte`] at that index holds
//! the real destination, which in x2APIC mode may be any 32-bit APIC ID.
//!
//! ```
//! use keel_apic::{ApicId, Polarity, TriggerMode};
//! use keel_iommu::irte::IrteError;
//! use keel_iommu::{DestinationMode, IndexPlan, Irte, IrteDestination, RemappableRte};
//! use keel_iommu::{SourceId, SourceValidation};
//!
//! let plan = IndexPlan::new(24, 8).unwrap(); // 24 IOAPIC pins, 8 MSI sources
//! assert_eq!(plan.entries, 256); // one 4-KiB page
//! let index = plan.gsi_index(9).unwrap();
//!
//! let irte = Irte {
//!     vector: 0x41,
//!     destination: IrteDestination::X2Apic(ApicId::new(300)),
//!     trigger: TriggerMode::Level,
//!     source: SourceValidation::Requester(SourceId(0xFF00)),
//! };
//! let raw = irte.encode(DestinationMode::X2Apic).unwrap();
//! assert_eq!(Irte::decode(raw, DestinationMode::X2Apic), Ok(irte));
//! // An xAPIC-mode table cannot name APIC ID 300.
//! assert_eq!(irte.encode(DestinationMode::XApic), Err(IrteError::Unreachable(300)));
//!
//! let rte = RemappableRte {
//!     index,
//!     vector: 0x41,
//!     polarity: Polarity::ActiveLow,
//!     trigger: TriggerMode::Level,
//!     masked: false,
//! };
//! assert_eq!(RemappableRte::decode(rte.encode()), Some(rte));
//! ```
//!
//! # Sequences over the kernel's register access
//!
//! [`sequence`] programs a unit through [`sequence::UnitRegisters`]; a model unit whose status
//! register follows its command register is enough to drive it on the host:
//!
//! ```
//! use keel_iommu::regs::{offset, GlobalBit};
//! use keel_iommu::sequence::{command, SequenceError, UnitRegisters};
//!
//! #[derive(Default)]
//! struct ModelUnit {
//!     status: u32,
//!     writes: Vec<(usize, u32)>,
//! }
//!
//! impl UnitRegisters for ModelUnit {
//!     fn read32(&mut self, at: usize) -> u32 {
//!         if at == offset::GLOBAL_STATUS { self.status } else { 0 }
//!     }
//!     fn write32(&mut self, at: usize, value: u32) {
//!         self.writes.push((at, value));
//!         if at == offset::GLOBAL_COMMAND {
//!             self.status = value; // the hardware acknowledges at once
//!         }
//!     }
//!     fn read64(&mut self, _: usize) -> u64 { 0 }
//!     fn write64(&mut self, _: usize, _: u64) {}
//!     fn poll(&mut self, done: &mut dyn FnMut(&mut Self) -> bool) -> bool {
//!         (0..3).any(|_| done(self))
//!     }
//! }
//!
//! let mut unit = ModelUnit::default();
//! command::<_, ()>(&mut unit, GlobalBit::InterruptRemapping, true).unwrap();
//! assert!(GlobalBit::InterruptRemapping.reached(unit.status, true));
//! assert_eq!(unit.writes.len(), 1); // one command per GCMD write
//!
//! // A unit that never acknowledges times out instead of hanging.
//! struct DeadUnit;
//! impl UnitRegisters for DeadUnit {
//!     fn read32(&mut self, _: usize) -> u32 { 0 }
//!     fn write32(&mut self, _: usize, _: u32) {}
//!     fn read64(&mut self, _: usize) -> u64 { 0 }
//!     fn write64(&mut self, _: usize, _: u64) {}
//!     fn poll(&mut self, done: &mut dyn FnMut(&mut Self) -> bool) -> bool { done(self) }
//! }
//! let timeout = command::<_, ()>(&mut DeadUnit, GlobalBit::InterruptRemapping, true);
//! assert_eq!(timeout, Err(SequenceError::CommandTimeout(GlobalBit::InterruptRemapping)));
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod amdvi;
pub mod amdvi_dma;
pub mod amdvi_ir;
pub mod context;
pub mod dma;
pub mod dmar;
pub mod iova;
pub mod irte;
pub mod ivrs;
mod le;
pub mod pagetable;
pub mod queue;
mod radix;
pub mod regs;
pub mod remap;
pub mod sequence;
#[cfg(test)]
mod test_memory;
pub mod update;

pub use dmar::{DeviceScope, Dmar, DmarError, Drhd, ScopeKind, SourceId};
pub use irte::{DestinationMode, IndexPlan, Irte, IrteDestination, IrteError, SourceValidation};
pub use remap::{RemappableMsi, RemappableRte};

/// The README's example, compiled and run with the doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
