//! IOAPICs: every IOAPIC the MADT lists is mapped and fully masked at boot; legacy (ISA) and
//! PCI interrupt lines are then routed one by one to a chosen CPU's APIC ID with the polarity
//! and trigger the interrupt source overrides give. Device vectors are acknowledged through
//! the LAPIC (EOI) by the handler registered for the vector.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use keel_apic::ioapic::{IoDeliveryMode, IoDestination, IoapicError};
use keel_apic::{ApicId, Ioapic, IoapicRegisters, Polarity, RedirectionEntry, TriggerMode, XApicId};
use keel_platform::Platform;
use spin::Mutex;

use super::interrupts::{DEVICE_VECTOR_BASE, DEVICE_VECTOR_LAST};
use super::percpu;
use crate::mm::paging::{map_physical, Caching};

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
    gsi_base: u32,
    ioapic: Ioapic<IoapicMmio>,
}

static IOAPICS: Mutex<Vec<IoapicUnit>> = Mutex::new(Vec::new());

/// Why a route could not be set up.
#[derive(Debug)]
pub enum RouteError {
    /// No IOAPIC serves this GSI.
    NoIoapicForGsi(u32),
    /// The destination cannot be named in an IOAPIC entry (APIC ID > 254 needs interrupt
    /// remapping, which Keel does not use).
    Unreachable(ApicId),
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
        log::info!("ioapic: id {} at {:#x}: {} pins from GSI {}, all masked", io.id, io.address, ioapic.pins(), io.gsi_base);
        units.push(IoapicUnit { gsi_base: io.gsi_base, ioapic });
    }
    ev!("ioapic.count", units.len());
}

fn with_pin<R>(gsi: u32, f: impl FnOnce(&mut Ioapic<IoapicMmio>, u8) -> R) -> Result<R, RouteError> {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let mut units = IOAPICS.lock();
        let unit = units
            .iter_mut()
            .find(|u| gsi >= u.gsi_base && gsi < u.gsi_base + u.ioapic.pins() as u32)
            .ok_or(RouteError::NoIoapicForGsi(gsi))?;
        let pin = (gsi - unit.gsi_base) as u8;
        Ok(f(&mut unit.ioapic, pin))
    })
}

/// Programs `gsi` to deliver `vector` to the CPU with `destination`, masked or not.
pub fn route(
    gsi: u32,
    vector: u8,
    destination: ApicId,
    polarity: Polarity,
    trigger: TriggerMode,
    masked: bool,
) -> Result<(), RouteError> {
    let dest = XApicId::try_from(destination).map_err(|_| RouteError::Unreachable(destination))?;
    let entry = RedirectionEntry {
        vector,
        delivery: IoDeliveryMode::Fixed,
        destination: IoDestination::Physical(dest),
        polarity,
        trigger,
        masked,
    };
    with_pin(gsi, |io, pin| io.program(pin, entry))?.map_err(RouteError::Ioapic)
}

/// Masks or unmasks a routed GSI (the `Interrupt` capability's mask/acknowledge).
pub fn set_masked(gsi: u32, masked: bool) -> Result<(), RouteError> {
    with_pin(gsi, |io, pin| io.set_masked(pin, masked))?.map_err(RouteError::Ioapic)
}

/// Converts the platform's ISA route polarity/trigger into the register crate's types.
pub fn isa_signal(route: &keel_platform::IrqRoute) -> (Polarity, TriggerMode) {
    let polarity = match route.polarity {
        keel_platform::Polarity::ActiveHigh => Polarity::ActiveHigh,
        keel_platform::Polarity::ActiveLow => Polarity::ActiveLow,
    };
    let trigger = match route.trigger {
        keel_platform::Trigger::Edge => TriggerMode::Edge,
        keel_platform::Trigger::Level => TriggerMode::Level,
    };
    (polarity, trigger)
}

/// A device-vector handler: runs with interrupts off on the CPU the vector was routed to and
/// must EOI the LAPIC.
pub type DeviceHandler = fn(vector: u8);

static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];
static NEXT_VECTOR: AtomicUsize = AtomicUsize::new(DEVICE_VECTOR_BASE as usize);

/// Reserves a fresh device vector with its handler.
pub fn allocate_vector(handler: DeviceHandler) -> Option<u8> {
    let mut v = NEXT_VECTOR.fetch_add(1, Ordering::Relaxed);
    if v == keel_abi::SYSCALL_GATE_VECTOR as usize {
        // The system-call gate lives inside the device range: never hand it to a device.
        v = NEXT_VECTOR.fetch_add(1, Ordering::Relaxed);
    }
    if v > DEVICE_VECTOR_LAST as usize {
        return None;
    }
    HANDLERS[v].store(handler as usize, Ordering::Release);
    Some(v as u8)
}

/// Device-range entries with no ISR bit set (software `int`s): ignored, never EOI'd.
pub static NOT_IN_SERVICE: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Entry from the trap dispatcher for vectors in the device range.
pub fn device_interrupt(vector: u8) {
    // Only the LAPIC's own delivery puts a vector in service; a software `int` into the
    // device range (kernel code: ring 3 gets #GP) is not a device interrupt. Its handler
    // would EOI and so retire whatever else is in service: count it and do nothing.
    if super::lapic::not_in_service(vector) {
        NOT_IN_SERVICE.fetch_add(1, Ordering::Relaxed);
        return;
    }
    percpu::current().device_interrupts.fetch_add(1, Ordering::Relaxed);
    let h = HANDLERS[vector as usize].load(Ordering::Acquire);
    if h == 0 {
        log::warn!("ioapic: interrupt on unclaimed vector {vector:#x}");
        super::lapic::eoi();
        return;
    }
    // SAFETY: non-zero entries were stored from a `DeviceHandler` in `allocate_vector`.
    let handler: DeviceHandler = unsafe { core::mem::transmute::<usize, DeviceHandler>(h) };
    handler(vector);
}
