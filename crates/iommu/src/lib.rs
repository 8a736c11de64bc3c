//! Pure logic of Keel's Intel VT-d interrupt remapping (no MMIO, no `unsafe`).
//!
//! - [`dmar`]: the ACPI DMAR table: remapping hardware units (DRHD), their device scopes
//!   (IOAPICs, HPETs, PCI devices) and include-all units (VT-d spec 8.1-8.3).
//! - [`irte`]: the 128-bit interrupt-remapping table entry (VT-d spec 9.10) and the table's
//!   index plan (IOAPIC pins by GSI, then MSI handles).
//! - [`remap`]: remappable-format IOAPIC redirection entries and MSI address/data
//!   (VT-d spec 5.1.5.1, 5.1.5.2).
//! - [`regs`]: the register map, capability decoding, the global command/status protocol,
//!   IRTA/IQA encodings and fault records (VT-d spec 10.4).
//! - [`queue`]: queued-invalidation descriptors (VT-d spec 6.5.2).
//! - [`sequence`]: the enabling, command and fault-collection sequences over a register
//!   trait the kernel implements with MMIO (host-tested through a fake unit).
//!
//! The kernel supplies the register accesses and the memory; every value it writes is built
//! (and every value it reads is decoded) here so that host tests check the bit layouts.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod context;
pub mod dma;
pub mod dmar;
pub mod iova;
pub mod irte;
pub mod pagetable;
pub mod queue;
pub mod regs;
pub mod remap;
pub mod sequence;

pub use dmar::{DeviceScope, Dmar, DmarError, Drhd, ScopeKind, SourceId};
pub use irte::{DestinationMode, IndexPlan, Irte, IrteDestination, IrteError, SourceValidation};
pub use remap::{RemappableMsi, RemappableRte};
