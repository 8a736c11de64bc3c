//! The unit's event log (AMD IOMMU spec 2.5, 3.4): one page of 256 16-byte entries the unit
//! writes at its tail and Keel consumes from the head, and the unit's own MSI, raised when
//! it writes an event (EventIntEn). QEMU does not emulate the x2APIC interrupt capability
//! for that MSI, so it targets the boot CPU in compatibility format (APIC ID <= 254).
//! QEMU 10.0 never writes an event: its `amdvi_log_event` tests the status register with
//! an OR (`amdvi_test_mask`), so it always finds "overflow" and returns (fixed upstream).

use core::sync::atomic::{AtomicU64, Ordering};

use keel_apic::XApicId;
use keel_iommu::amdvi_ir::{self, reg, Event};

use super::registers::Registers;
use super::unit::{read_quad, write_quads};
use crate::arch::x86_64::ioapic::{self, InService};
use crate::mm::frames;

/// Event-log interrupts taken.
static INTERRUPTS: AtomicU64 = AtomicU64::new(0);

/// The log and what was read from it.
pub struct EventLog {
    /// Physical address of the log page.
    pub phys: u64,
    /// Entries consumed.
    pub read: u64,
    /// The last entry consumed.
    pub last: Option<Event>,
    /// The unit's MSI: (vector, destination APIC ID) as programmed.
    pub msi: Option<(u8, u32)>,
}

impl EventLog {
    /// Allocates the log page (zeroed: an unwritten entry has event code 0).
    pub fn allocate() -> Option<EventLog> {
        Some(EventLog { phys: frames::allocate_zeroed()?, read: 0, last: None, msi: None })
    }

    /// Consumes every entry between the head and the unit's tail (allocation-free, no log:
    /// interrupt context); returns how many.
    pub fn drain(&mut self, regs: &Registers) -> u64 {
        let bytes = (amdvi_ir::EVENT_BYTES << amdvi_ir::EVENT_LOG_LOG2) as u64;
        let tail = regs.read64(reg::EVENT_TAIL) & 0x7_FFF0;
        let mut head = regs.read64(reg::EVENT_HEAD) & 0x7_FFF0;
        let mut taken = 0;
        while head != tail && head < bytes {
            let at = self.phys + head;
            let raw = [read_quad(at), read_quad(at + 8)];
            if !amdvi_ir::is_empty(raw) {
                self.last = Some(Event::decode(raw));
                self.read += 1;
                taken += 1;
            }
            write_quads(at, &[0, 0]);
            head = (head + amdvi_ir::EVENT_BYTES as u64) % bytes;
        }
        regs.write64(reg::EVENT_HEAD, head);
        // EventLogInt and EventOverflow are write-1-to-clear.
        regs.write64(reg::STATUS, 0b11);
        taken
    }

    /// `iommu.amd.event*` evidence: the log read back and the MSI from the unit's config space.
    pub fn evidence(&self, regs: &Registers) {
        ev!("iommu.amd.event_log", format_args!("{:#x}", regs.read64(reg::EVENT_LOG_BASE)));
        ev!("iommu.amd.event_log_phys", format_args!("{:#x}", self.phys));
        // Status bit 3, EventLogRun: the unit is logging.
        let running = regs.read64(reg::STATUS) & (1 << 3) != 0;
        ev!("iommu.amd.event_log_running", if running { "yes" } else { "no" });
        ev!("iommu.amd.events_read", self.read);
        if let Some(e) = self.last {
            ev!("iommu.amd.last_event", e.kind.name());
            ev!("iommu.amd.last_event.device_id", format_args!("{:#06x}", e.device_id));
            ev!("iommu.amd.last_event.address", format_args!("{:#x}", e.address));
        }
        ev!("iommu.amd.event_interrupts", INTERRUPTS.load(Ordering::Relaxed));
    }
}

/// The unit's MSI handler: counts, consumes the log when the remapper is free, EOI.
fn event_interrupt(_vector: u8, token: InService) {
    INTERRUPTS.fetch_add(1, Ordering::Relaxed);
    if let Some(mut guard) = super::remap::try_lock() {
        if let Some(r) = guard.as_mut() {
            r.events.drain(&r.regs);
        }
    }
    token.eoi();
}

/// Programs the unit's PCI function (`device_id`) to signal `event_interrupt` on `cpu`:
/// compatibility format, since the unit's MSI is not remapped and has 8 bits of destination.
pub fn enable_interrupt(device_id: u16, cpu: u32) -> Result<(u8, u32), &'static str> {
    let dest = XApicId::try_from(keel_apic::ApicId::new(cpu))
        .map_err(|_| "the event-log MSI has an 8-bit destination; the boot CPU is above 254")?;
    let dev = crate::pci::devices()
        .iter()
        .find(|d| d.addr.bdf() == device_id)
        .ok_or("the IOMMU's PCI function is not on the bus")?;
    let cap = crate::pci::find_capability(dev, 0x05).ok_or("the IOMMU has no MSI capability")?;
    let vector = ioapic::allocate_vector(event_interrupt).ok_or("no free vector")?;
    let address = keel_apic::msi::MsiAddress::physical(dest).encode();
    crate::pci::msi_write(dev, cap, address, vector as u16);
    let programmed = crate::pci::msi_address(dev, cap);
    Ok((vector, (programmed >> 12) & 0xFF))
}
