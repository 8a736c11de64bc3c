//! IOAPICs: every IOAPIC the MADT lists is mapped and fully masked at boot; legacy (ISA) and
//! PCI interrupt lines are then routed one by one to a chosen CPU's APIC ID with the polarity
//! and trigger the interrupt source overrides give. Device vectors are acknowledged through
//! the LAPIC (EOI) by the handler registered for the vector.
//!
//! With VT-d interrupt remapping on (`iommu`), an entry is written in remappable format: it
//! carries the index of its interrupt-remapping table entry (index = GSI), and the table
//! entry names the CPU with a full 32-bit APIC ID. Without it, entries are in compatibility
//! format with an 8-bit destination, so CPUs above APIC ID 254 are refused.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use keel_apic::ioapic::{EncodedEntry, IoDeliveryMode, IoDestination, IoapicError};
use keel_apic::{
    ApicId, Ioapic, IoapicRegisters, Polarity, RedirectionEntry, TriggerMode, XApicId,
};
use keel_iommu::irte::DestinationMode;
use keel_iommu::RemappableRte;
use keel_platform::Platform;

pub use super::eoi::InService;
use super::iommu;
use super::percpu::{self, IrqGuard};
use crate::mm::paging::{map_physical, Caching};
use crate::sync::IrqSafeMutex;

/// IOREGSEL / IOWIN access to one IOAPIC's MMIO window.
pub struct IoapicMmio {
    base: *mut u32,
}

// SAFETY: the window is only touched under the `IOAPICS` lock.
unsafe impl Send for IoapicMmio {}

impl IoapicRegisters for IoapicMmio {
    fn read(&mut self, index: u8) -> u32 {
        // SAFETY: `base` maps the IOAPIC's registers uncached: IOREGSEL at 0x00, IOWIN at 0x10.
        unsafe {
            self.base.write_volatile(index as u32);
            self.base.byte_add(0x10).read_volatile()
        }
    }

    fn write(&mut self, index: u8, value: u32) {
        // SAFETY: as in `read`.
        unsafe {
            self.base.write_volatile(index as u32);
            self.base.byte_add(0x10).write_volatile(value);
        }
    }
}

struct IoapicUnit {
    /// The MADT's IOAPIC id (how the DMAR's device scopes name it).
    id: u8,
    gsi_base: u32,
    ioapic: Ioapic<IoapicMmio>,
}

static IOAPICS: IrqSafeMutex<Vec<IoapicUnit>> = IrqSafeMutex::new(Vec::new());

/// Why a route could not be set up.
#[derive(Debug)]
pub enum RouteError {
    /// No IOAPIC serves this GSI.
    NoIoapicForGsi(u32),
    /// The destination cannot be named in a compatibility-format entry (APIC ID > 254) and
    /// no IOMMU remaps interrupts in extended (32-bit destination) mode.
    Unreachable(ApicId),
    /// The interrupt-remapping entry could not be programmed.
    Remap(iommu::RemapError),
    /// The IOAPIC rejected the entry.
    Ioapic(IoapicError),
}

/// Maps and masks every IOAPIC.
pub fn init(platform: &Platform) {
    let mut units = IOAPICS.lock();
    for io in platform.ioapics() {
        let base = map_physical(io.address as u64, 0x20, Caching::Uncached).as_mut_ptr::<u32>();
        let mut ioapic = Ioapic::new(IoapicMmio { base });
        ioapic.mask_all();
        log::info!(
            "ioapic: id {} at {:#x}: {} pins from GSI {}, all masked",
            io.id,
            io.address,
            ioapic.pins(),
            io.gsi_base
        );
        units.push(IoapicUnit { id: io.id, gsi_base: io.gsi_base, ioapic });
    }
    ev!("ioapic.count", units.len());
}

/// The MADT ids of the IOAPICs (how the DMAR names them).
pub fn ids() -> Vec<u8> {
    IOAPICS.lock().iter().map(|u| u.id).collect()
}

/// One past the highest GSI any IOAPIC serves (the remapping table's GSI range).
pub fn gsi_limit() -> u32 {
    IOAPICS.lock().iter().map(|u| u.gsi_base + u.ioapic.pins() as u32).max().unwrap_or(0)
}

/// Whether a device interrupt can be delivered to the CPU with `apic_id`: always with
/// remapping in extended interrupt mode, otherwise only up to APIC ID 254.
pub fn reachable(apic_id: ApicId) -> Result<(), &'static str> {
    if iommu::mode() == Some(DestinationMode::X2Apic) || XApicId::try_from(apic_id).is_ok() {
        Ok(())
    } else {
        Err("target CPU's APIC ID is above 254: IOAPIC and MSI destinations are 8-bit without VT-d interrupt remapping in x2APIC mode, and no IOMMU remaps interrupts here")
    }
}

fn with_pin<R>(
    gsi: u32,
    f: impl FnOnce(&mut Ioapic<IoapicMmio>, u8) -> R,
) -> Result<R, RouteError> {
    with_unit(gsi, |io, _, pin| f(io, pin))
}

fn with_unit<R>(
    gsi: u32,
    f: impl FnOnce(&mut Ioapic<IoapicMmio>, u8, u8) -> R,
) -> Result<R, RouteError> {
    let mut units = IOAPICS.lock();
    let unit = units
        .iter_mut()
        .find(|u| gsi >= u.gsi_base && gsi < u.gsi_base + u.ioapic.pins() as u32)
        .ok_or(RouteError::NoIoapicForGsi(gsi))?;
    let pin = (gsi - unit.gsi_base) as u8;
    Ok(f(&mut unit.ioapic, unit.id, pin))
}

/// What [`route`] asks of a pin, handed on to the remapped paths.
#[derive(Clone, Copy)]
struct PinRoute {
    vector: u8,
    destination: ApicId,
    polarity: Polarity,
    trigger: TriggerMode,
    masked: bool,
}

impl PinRoute {
    /// The compatibility-format entry with `vector_field` delivered to `dest`.
    fn compatibility(&self, vector_field: u8, dest: XApicId) -> RedirectionEntry {
        RedirectionEntry {
            vector: vector_field,
            delivery: IoDeliveryMode::Fixed,
            destination: IoDestination::Physical(dest),
            polarity: self.polarity,
            trigger: self.trigger,
            masked: self.masked,
        }
    }
}

/// Programs `gsi` to deliver `vector` to the CPU with `destination`, masked or not:
/// through the remapping table when remapping is on, in compatibility format otherwise.
pub fn route(
    gsi: u32,
    vector: u8,
    destination: ApicId,
    polarity: Polarity,
    trigger: TriggerMode,
    masked: bool,
) -> Result<(), RouteError> {
    let wanted = PinRoute { vector, destination, polarity, trigger, masked };
    if iommu::mode().is_some() {
        return route_remapped(gsi, wanted);
    }
    let dest = XApicId::try_from(destination).map_err(|_| RouteError::Unreachable(destination))?;
    let entry = wanted.compatibility(vector, dest);
    with_pin(gsi, |io, pin| io.program(pin, entry))?.map_err(RouteError::Ioapic)
}

/// The pin is masked first (its old entry must not fire while the table entry changes), then
/// the table entry is written and invalidated, then the pin gets its remappable entry.
fn route_remapped(gsi: u32, wanted: PinRoute) -> Result<(), RouteError> {
    let PinRoute { vector, destination, polarity, trigger, masked } = wanted;
    let ioapic_id = with_unit(gsi, |io, id, pin| io.set_masked(pin, true).map(|_| id))?
        .map_err(RouteError::Ioapic)?;
    if super::amdvi::mode().is_some() {
        return route_amdvi(gsi, ioapic_id, wanted);
    }
    let index = iommu::program_ioapic(ioapic_id, gsi, vector, destination, trigger).map_err(
        |e| match e {
            iommu::RemapError::Entry(keel_iommu::IrteError::Unreachable(_)) => {
                RouteError::Unreachable(destination)
            }
            e => RouteError::Remap(e),
        },
    )?;
    let entry = RemappableRte { index, vector, polarity, trigger, masked }.encode();
    with_pin(gsi, |io, pin| io.program_encoded(pin, entry))?.map_err(RouteError::Ioapic)
}

/// AMD-Vi: the table entry at index = `vector` holds the route; the redirection entry keeps
/// compatibility format with that index in its vector field (`amdvi::remap` says why it also
/// names the CPU when an 8-bit destination can).
fn route_amdvi(gsi: u32, ioapic_id: u8, wanted: PinRoute) -> Result<(), RouteError> {
    use super::amdvi::AmdRemapError;
    let destination = wanted.destination;
    let index = super::amdvi::remap::program_ioapic(ioapic_id, wanted.vector, destination)
        .map_err(|e| match e {
            AmdRemapError::Entry(keel_iommu::amdvi_ir::AmdIrteError::Unreachable(_)) => {
                RouteError::Unreachable(destination)
            }
            e => RouteError::Remap(iommu::RemapError::AmdVi(e)),
        })?;
    let dest = XApicId::try_from(destination).ok().or(XApicId::new(0)).expect("APIC ID 0");
    let entry = wanted.compatibility(index as u8, dest);
    with_pin(gsi, |io, pin| io.program(pin, entry))?.map_err(RouteError::Ioapic)
}

/// The MADT id of the IOAPIC serving `gsi`.
#[cfg(feature = "scenarios")]
pub fn id_of(gsi: u32) -> Option<u8> {
    with_unit(gsi, |_, id, _| id).ok()
}

/// Both raw halves of `gsi`'s entry as the IOAPIC holds them (for evidence).
pub fn read_entry(gsi: u32) -> Result<EncodedEntry, RouteError> {
    with_pin(gsi, |io, pin| io.read_encoded(pin))?.map_err(RouteError::Ioapic)
}

/// Masks or unmasks a routed GSI (the `Interrupt` capability's mask/acknowledge).
pub fn set_masked(gsi: u32, masked: bool) -> Result<(), RouteError> {
    with_pin(gsi, |io, pin| io.set_masked(pin, masked))?.map_err(RouteError::Ioapic)
}

/// Whether `gsi`'s redirection entry has its mask bit set, read from the IOAPIC itself (not
/// from the remembered entry), for evidence.
pub fn is_masked(gsi: u32) -> Result<bool, RouteError> {
    with_pin(gsi, |io, pin| io.read_entry(pin).map(|e| e.masked))?.map_err(RouteError::Ioapic)
}

/// A device-vector handler: runs with interrupts off on the CPU the vector was routed to,
/// and acknowledges the LAPIC by consuming the token (at once, or when it returns).
pub type DeviceHandler = fn(vector: u8, InService);

/// Each system vector's handler, set once when the vector is reserved (never reused).
static HANDLERS: [spin::Once<DeviceHandler>; 256] = [const { spin::Once::new() }; 256];

/// Reserves a system vector (the same on every CPU, see `vector_space`) with its handler.
pub fn allocate_vector(handler: DeviceHandler) -> Option<u8> {
    let v = super::vector_space::reserve_system()?;
    HANDLERS[v as usize].call_once(|| handler);
    Some(v)
}

/// Device-range entries with no ISR bit set (software `int`s): ignored, never EOI'd.
pub static NOT_IN_SERVICE: AtomicU64 = AtomicU64::new(0);

crate::cpu_local! {
    /// Device interrupts each CPU handled (LAPIC-delivered, so each got its EOI token).
    pub static DEVICE_INTERRUPTS: AtomicU64 = AtomicU64::new(0);
}

/// Entry from the trap dispatcher for vectors in the device range.
pub fn device_interrupt(vector: u8, cpu: &IrqGuard) {
    // Only the LAPIC's own delivery puts a vector in service; a software `int` into the
    // device range (kernel code: ring 3 gets #GP) is not a device interrupt. It gets no
    // token, so nothing EOIs and retires whatever else is in service: count it, do nothing.
    let Some(token) = InService::claim(vector) else {
        NOT_IN_SERVICE.fetch_add(1, Ordering::Relaxed);
        return;
    };
    DEVICE_INTERRUPTS.get(cpu).fetch_add(1, Ordering::Relaxed);
    match HANDLERS[vector as usize].get() {
        Some(handler) => handler(vector, token),
        // A per-CPU vector: its owner is found by (this CPU, vector).
        None => super::vector_space::dispatch(percpu::current(cpu).index, vector, token),
    }
}
