//! PCI configuration space (the 0xCF8/0xCFC mechanism), enumeration, BARs, MSI programming
//! and the INTx → GSI rule of the chipset. Enough to find devices and hand them to drivers.

use alloc::vec::Vec;
use spin::Once;
use x86_64::instructions::port::Port;

use keel_apic::msi::{MsiAddress, MsiData};
use keel_apic::{ApicId, XApicId};
use keel_iommu::RemappableMsi;

use crate::arch::x86_64::iommu;
use crate::sync::IrqSafeMutex;

/// Bus/device/function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciAddr {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl PciAddr {
    /// The 16-bit BDF encoding (bus << 8 | device << 3 | function).
    pub fn bdf(self) -> u16 {
        (self.bus as u16) << 8 | (self.device as u16) << 3 | self.function as u16
    }
}

impl core::fmt::Display for PciAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// One decoded base address register.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bar {
    pub phys: u64,
    pub size: u64,
    pub mmio: bool,
}

/// A function found on the bus.
#[derive(Clone, Debug)]
pub struct PciDevice {
    pub addr: PciAddr,
    pub vendor: u16,
    pub device: u16,
    pub class: u32,
    /// Interrupt pin register: 0 none, 1..4 = INTA..INTD.
    pub interrupt_pin: u8,
    pub bars: [Bar; 6],
}

static CONFIG_LOCK: IrqSafeMutex<()> = IrqSafeMutex::new(());
static DEVICES: Once<Vec<PciDevice>> = Once::new();

fn config_address(a: PciAddr, offset: u8) -> u32 {
    0x8000_0000
        | (a.bus as u32) << 16
        | (a.device as u32) << 11
        | (a.function as u32) << 8
        | (offset as u32 & 0xFC)
}

/// Reads a dword of configuration space.
pub fn read32(a: PciAddr, offset: u8) -> u32 {
    let _g = CONFIG_LOCK.lock();
    // SAFETY: 0xCF8/0xCFC are the PCI configuration mechanism #1 ports, owned by the kernel.
    unsafe {
        Port::<u32>::new(0xCF8).write(config_address(a, offset));
        Port::<u32>::new(0xCFC).read()
    }
}

/// Writes a dword of configuration space.
pub fn write32(a: PciAddr, offset: u8, value: u32) {
    let _g = CONFIG_LOCK.lock();
    // SAFETY: as in `read32`.
    unsafe {
        Port::<u32>::new(0xCF8).write(config_address(a, offset));
        Port::<u32>::new(0xCFC).write(value);
    }
}

pub fn read16(a: PciAddr, offset: u8) -> u16 {
    (read32(a, offset & !3) >> ((offset & 2) * 8)) as u16
}

pub fn write16(a: PciAddr, offset: u8, value: u16) {
    let shift = (offset & 2) * 8;
    let old = read32(a, offset & !3);
    let new = (old & !(0xFFFF << shift)) | (value as u32) << shift;
    write32(a, offset & !3, new);
}

fn decode_bars(a: PciAddr) -> [Bar; 6] {
    let mut bars = [Bar::default(); 6];
    let mut i = 0;
    while i < 6 {
        let off = 0x10 + 4 * i as u8;
        let raw = read32(a, off);
        if raw & 1 == 1 {
            i += 1; // I/O BAR: not used by Keel's drivers
            continue;
        }
        let is64 = (raw >> 1) & 3 == 2;
        write32(a, off, 0xFFFF_FFFF);
        let size_lo = read32(a, off) & !0xF;
        write32(a, off, raw);
        let mut phys = (raw & !0xF) as u64;
        let mut size_mask = size_lo as u64 | 0xFFFF_FFFF_0000_0000;
        if is64 && i < 5 {
            let raw_hi = read32(a, off + 4);
            write32(a, off + 4, 0xFFFF_FFFF);
            let size_hi = read32(a, off + 4);
            write32(a, off + 4, raw_hi);
            phys |= (raw_hi as u64) << 32;
            size_mask = (size_hi as u64) << 32 | size_lo as u64;
        }
        let size = (!size_mask).wrapping_add(1);
        if size_lo != 0 {
            bars[i] = Bar { phys, size, mmio: true };
        }
        i += if is64 { 2 } else { 1 };
    }
    bars
}

/// Scans every bus/device/function once.
pub fn devices() -> &'static [PciDevice] {
    DEVICES.call_once(|| {
        let mut found = Vec::new();
        for bus in 0..=255u8 {
            for device in 0..32u8 {
                for function in 0..8u8 {
                    let a = PciAddr { bus, device, function };
                    let id = read32(a, 0);
                    if id & 0xFFFF == 0xFFFF {
                        if function == 0 {
                            break;
                        }
                        continue;
                    }
                    let class = read32(a, 8) >> 8;
                    let header = (read32(a, 0x0C) >> 16) as u8;
                    let bars =
                        if header & 0x7F == 0 { decode_bars(a) } else { [Bar::default(); 6] };
                    let interrupt_pin = (read32(a, 0x3C) >> 8) as u8;
                    found.push(PciDevice {
                        addr: a,
                        vendor: id as u16,
                        device: (id >> 16) as u16,
                        class,
                        interrupt_pin,
                        bars,
                    });
                    if function == 0 && header & 0x80 == 0 {
                        break;
                    }
                }
            }
        }
        for d in &found {
            log::info!(
                "pci: {} {:04x}:{:04x} class {:06x} pin {}",
                d.addr,
                d.vendor,
                d.device,
                d.class,
                d.interrupt_pin
            );
        }
        found
    })
}

/// The `index`-th function with this vendor/device id.
pub fn find(vendor: u16, device: u16, index: u32) -> Option<&'static PciDevice> {
    devices().iter().filter(|d| d.vendor == vendor && d.device == device).nth(index as usize)
}

/// Command register bits Keel sets.
pub fn enable(d: &PciDevice, memory: bool, bus_master: bool, intx: bool) {
    let mut cmd = read16(d.addr, 0x04);
    if memory {
        cmd |= 1 << 1;
    }
    if bus_master {
        cmd |= 1 << 2; // MSI writes are bus-master transactions
    }
    if intx {
        cmd &= !(1 << 10);
    } else {
        cmd |= 1 << 10;
    }
    write16(d.addr, 0x04, cmd);
}

/// Command register bit 2: the function may issue memory requests (DMA, and MSI writes).
const COMMAND_BUS_MASTER: u16 = 1 << 2;

/// Turns the function's bus mastering off: it can no longer start DMA or signal an MSI.
/// Done when the holder of its interrupt is gone, so a device left programmed by a dead
/// driver stops reaching memory.
pub fn disable_bus_master(d: &PciDevice) {
    let cmd = read16(d.addr, 0x04);
    write16(d.addr, 0x04, cmd & !COMMAND_BUS_MASTER);
}

/// Whether the function's command register has bus mastering on (read from the device).
pub fn bus_master(d: &PciDevice) -> bool {
    read16(d.addr, 0x04) & COMMAND_BUS_MASTER != 0
}

/// Offset of the capability with `id` (0x05 = MSI).
pub fn find_capability(d: &PciDevice, id: u8) -> Option<u8> {
    if read16(d.addr, 0x06) & (1 << 4) == 0 {
        return None;
    }
    let mut ptr = (read32(d.addr, 0x34) & 0xFC) as u8;
    for _ in 0..48 {
        if ptr == 0 {
            return None;
        }
        let header = read32(d.addr, ptr);
        if header as u8 == id {
            return Some(ptr);
        }
        ptr = ((header >> 8) & 0xFC) as u8;
    }
    None
}

/// Programs and enables single-message MSI to the CPU with `cpu` on `vector`. With interrupt
/// remapping on, the function gets a remappable-format address naming its IRTE handle (the
/// entry holds the vector and the 32-bit destination); otherwise a compatibility-format
/// address with an 8-bit destination, refused above APIC ID 254. Returns whether the
/// function supports per-vector masking.
pub fn msi_enable(d: &PciDevice, cap: u8, cpu: ApicId, vector: u8) -> Result<bool, &'static str> {
    let (address, data) = if crate::arch::x86_64::amdvi::mode().is_some() {
        // AMD-Vi: the message names only the index in the function's own table (address
        // destination 0); the unit builds the interrupt from the entry.
        let index = crate::arch::x86_64::amdvi::remap::program_msi(d.addr.bdf(), vector, cpu)
            .map_err(|e| {
                log::warn!("pci: {}: AMD-Vi MSI entry failed: {e:?}", d.addr);
                "interrupt-remapping entry for the MSI could not be programmed"
            })?;
        let zero = XApicId::new(0).expect("APIC ID 0");
        (MsiAddress::physical(zero).encode(), index)
    } else if iommu::mode().is_some() {
        let handle = iommu::program_msi(d.addr.bdf(), vector, cpu).map_err(|e| {
            log::warn!("pci: {}: MSI remapping entry failed: {e:?}", d.addr);
            "interrupt-remapping entry for the MSI could not be programmed"
        })?;
        let msi = RemappableMsi { handle };
        (msi.address(), msi.data())
    } else {
        let dest = XApicId::try_from(cpu)
            .map_err(|_| "MSI destination above APIC ID 254 needs interrupt remapping")?;
        let data = MsiData::fixed(vector).encode().map_err(|_| "illegal MSI vector")? as u16;
        (MsiAddress::physical(dest).encode(), data)
    };
    Ok(msi_write(d, cap, address, data))
}

/// Writes an MSI address/data pair as given and enables single-message MSI; returns whether
/// the function has per-vector masking.
pub fn msi_write(d: &PciDevice, cap: u8, address: u32, data: u16) -> bool {
    let control = read16(d.addr, cap + 2);
    let is64 = control & (1 << 7) != 0;
    write32(d.addr, cap + 4, address);
    if is64 {
        write32(d.addr, cap + 8, 0);
        write16(d.addr, cap + 12, data);
    } else {
        write16(d.addr, cap + 8, data);
    }
    // One message (multiple-message enable = 0), MSI enable.
    write16(d.addr, cap + 2, (control & !(0x7 << 4)) | 1);
    control & (1 << 8) != 0
}

/// The bus range `(secondary, subordinate)` behind a PCI-to-PCI bridge (header type 1).
pub fn bridge_buses(bdf: u16) -> Option<(u8, u8)> {
    let a = PciAddr {
        bus: (bdf >> 8) as u8,
        device: ((bdf >> 3) & 0x1F) as u8,
        function: (bdf & 7) as u8,
    };
    if read32(a, 0) & 0xFFFF == 0xFFFF || (read32(a, 0x0C) >> 16) as u8 & 0x7F != 1 {
        return None;
    }
    let buses = read32(a, 0x18);
    Some(((buses >> 8) as u8, (buses >> 16) as u8))
}

/// The MSI address dword as the function holds it (for evidence).
pub fn msi_address(d: &PciDevice, cap: u8) -> u32 {
    read32(d.addr, cap + 4)
}

/// The MSI data word as the function holds it (for evidence).
#[cfg(feature = "scenarios")]
pub fn msi_data(d: &PciDevice, cap: u8) -> u16 {
    let is64 = read16(d.addr, cap + 2) & (1 << 7) != 0;
    read16(d.addr, if is64 { cap + 12 } else { cap + 8 })
}

/// Turns MSI off (the function falls back to INTx).
pub fn msi_disable(d: &PciDevice, cap: u8) {
    msi_set_enabled(d, cap, false);
}

/// Sets the MSI enable bit (address/data stay programmed).
pub fn msi_set_enabled(d: &PciDevice, cap: u8, enabled: bool) {
    let control = read16(d.addr, cap + 2);
    write16(d.addr, cap + 2, if enabled { control | 1 } else { control & !1 });
}

/// Sets or clears the per-vector mask bit 0 (only when the function is maskable).
pub fn msi_set_masked(d: &PciDevice, cap: u8, masked: bool) {
    let control = read16(d.addr, cap + 2);
    if control & (1 << 8) == 0 {
        return;
    }
    let mask_off = if control & (1 << 7) != 0 { cap + 16 } else { cap + 12 };
    let bits = read32(d.addr, mask_off);
    write32(d.addr, mask_off, if masked { bits | 1 } else { bits & !1 });
}

/// The per-vector mask bit 0 as the function holds it, or `None` when the function has no
/// per-vector masking (then only software can hold its interrupts back).
pub fn msi_mask_bit(d: &PciDevice, cap: u8) -> Option<bool> {
    let control = read16(d.addr, cap + 2);
    if control & (1 << 8) == 0 {
        return None;
    }
    let mask_off = if control & (1 << 7) != 0 { cap + 16 } else { cap + 12 };
    Some(read32(d.addr, mask_off) & 1 != 0)
}

/// Which chipset routes INTx, by the host bridge at 00:00.0.
fn host_bridge() -> Option<(u16, u16)> {
    devices()
        .iter()
        .find(|d| d.addr == PciAddr { bus: 0, device: 0, function: 0 })
        .map(|d| (d.vendor, d.device))
}

/// The GSI of a bus-0 function's INTx line, level-triggered active-high as the firmware's
/// ACPI `_PRT`/link devices describe it for QEMU's chipsets.
///
/// Q35 (ICH9): INT[A-D] of slot `s` goes to PIRQ `(s + pin) % 4 + 4` (PIRQ E-H), and PIRQ n
/// is IOAPIC input `16 + n` in APIC mode. Keel has no AML interpreter, so the rule is the
/// chipset's documented default routing; other chipsets are refused rather than guessed.
pub fn intx_gsi(d: &PciDevice) -> Result<u32, &'static str> {
    if d.interrupt_pin == 0 || d.interrupt_pin > 4 {
        return Err("function has no INTx pin");
    }
    if d.addr.bus != 0 {
        return Err("INTx routing behind bridges is not supported");
    }
    match host_bridge() {
        Some((0x8086, 0x29C0)) => Ok(q35_intx_gsi(d.addr.device, d.interrupt_pin)),
        _ => Err("INTx routing for this chipset is unknown (q35 only)"),
    }
}

/// Q35 default INTx routing (see [`intx_gsi`]).
pub fn q35_intx_gsi(slot: u8, pin: u8) -> u32 {
    let pirq = (slot as u32 + (pin as u32 - 1)) % 4 + 4;
    16 + pirq
}
