//! MSI-X functions the kernel drives for `Interrupt` sources `msix(<device>, <entry>)`.
//!
//! The kernel finds the table and the pending-bit array through the capability
//! (`keel_pci::msix`), maps their BAR pages into its own space and never into a driver's
//! (`DeviceMemory` leaves those pages out, see [`kernel_pages`]). A function is set up once,
//! on its first granted entry, in the order that sends no stray message: MSI-X enabled with
//! the **function mask** set, every entry masked, then the function mask cleared. Each entry
//! is then programmed while masked, and its own **vector mask** carries the `Interrupt`
//! contract (masked on delivery, unmasked on acknowledge); a message raised while masked
//! sets its pending bit and is sent at the unmask.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

use keel_apic::msi::{MsiAddress, MsiData};
use keel_apic::{ApicId, XApicId};
use keel_iommu::RemappableMsi;
use keel_pci::msix::{self, Entry, MessageControl, Msix};

use fw::arch::x86_64::{amdvi, iommu};
use fw::mm::paging::{map_physical, Caching};
use fw::pci::{self, PciDevice};
use fw::sync::IrqSafeMutex;

/// PCI capability ID of MSI-X.
const CAP_MSIX: u8 = 0x11;

/// One MSI-X function as the kernel drives it.
pub struct MsixFunction {
    pub device: &'static PciDevice,
    pub msix: Msix,
    /// Kernel virtual addresses of the table and the PBA (uncached).
    table: u64,
    pba: u64,
    /// Message Control read back right after the setup's first write, before any entry
    /// was written: the function mask must have been set then.
    pub setup_control: MessageControl,
    /// Entries found masked (read back) when the function mask was cleared.
    pub setup_masked_entries: u16,
    /// Each entry's Vector Control as last written: read once at set-up (its reserved bits
    /// are written back as read), so a mask or unmask is one write instead of a read and a
    /// write (only the kernel writes the table; the source's lock orders its writes).
    controls: Box<[AtomicU32]>,
}

static FUNCTIONS: IrqSafeMutex<Vec<&'static MsixFunction>> = IrqSafeMutex::new(Vec::new());

fn config(device: &PciDevice) -> [u8; 256] {
    let mut c = [0u8; 256];
    for off in (0..256).step_by(4) {
        c[off..off + 4].copy_from_slice(&pci::read32(device.addr, off as u8).to_le_bytes());
    }
    c
}

fn bar_size(device: &PciDevice, bar: u8) -> u64 {
    let b = device.bars[bar as usize];
    if b.mmio {
        b.size
    } else {
        0
    }
}

/// The function's MSI-X capability, parsed and checked against its BARs (`None` when it
/// has none or it is unusable).
pub fn capability(device: &PciDevice) -> Option<Msix> {
    let cap = pci::find_capability(device, CAP_MSIX)?;
    let msix = Msix::parse(&config(device), cap).ok()?;
    msix.check_bars(|bar| bar_size(device, bar)).ok()?;
    Some(msix)
}

/// Byte ranges `(start, end)` of BAR `bar` of `device` that hold its MSI-X table or PBA,
/// in whole pages: never mapped into a driver.
pub fn kernel_pages(device: &PciDevice, bar: u8) -> Vec<(u64, u64)> {
    capability(device)
        .map(|m| m.kernel_pages().iter().filter(|p| p.0 == bar).map(|&(_, s, e)| (s, e)).collect())
        .unwrap_or_default()
}

/// The function of `device`, mapped and set up on first use.
pub fn function(device: &'static PciDevice) -> Result<&'static MsixFunction, &'static str> {
    let existing = FUNCTIONS.lock().iter().find(|f| f.device.addr == device.addr).copied();
    if let Some(f) = existing {
        return Ok(f);
    }
    let msix = capability(device).ok_or("device has no usable MSI-X capability")?;
    let phys = |loc: msix::BarLocation| device.bars[loc.bar as usize].phys + loc.offset as u64;
    let table = map_physical(phys(msix.table), msix.table_bytes(), Caching::Uncached).as_u64();
    let pba = map_physical(phys(msix.pba), msix.pba_bytes(), Caching::Uncached).as_u64();
    let mut f = MsixFunction {
        device,
        msix,
        table,
        pba,
        setup_control: MessageControl(0),
        setup_masked_entries: 0,
        controls: Box::new([]),
    };
    f.set_up();
    let f: &'static MsixFunction = Box::leak(Box::new(f));
    FUNCTIONS.lock().push(f);
    Ok(f)
}

impl MsixFunction {
    fn control(&self) -> MessageControl {
        MessageControl(pci::read16(self.device.addr, self.msix.control_offset()))
    }

    fn write_control(&self, c: MessageControl) {
        pci::write16(self.device.addr, self.msix.control_offset(), c.0);
    }

    /// Enable under the function mask, mask every entry, clear the function mask; MSI and
    /// INTx are off from then on (MSI-X enabled overrides both).
    fn set_up(&mut self) {
        if let Some(msi) = pci::find_capability(self.device, 0x05) {
            pci::msi_disable(self.device, msi);
        }
        let [masked, open] = msix::setup(self.control());
        self.write_control(masked);
        self.setup_control = self.control();
        self.controls = (0..self.msix.vectors())
            .map(|e| AtomicU32::new(self.read(e, msix::ENTRY_VECTOR_CONTROL)))
            .collect();
        for e in 0..self.msix.vectors() {
            self.set_masked(e, true);
        }
        self.setup_masked_entries =
            (0..self.msix.vectors()).filter(|&e| self.masked(e)).count() as u16;
        self.write_control(open);
        log::info!(
            "msix: {} set up: {} entries, table BAR {} +{:#x}, PBA BAR {} +{:#x}",
            self.device.addr,
            self.msix.vectors(),
            self.msix.table.bar,
            self.msix.table.offset,
            self.msix.pba.bar,
            self.msix.pba.offset
        );
    }

    fn dword(&self, entry: u16, field: u64) -> *mut u32 {
        let at =
            self.msix.entry_offset(entry).expect("entry checked") - self.msix.table.offset as u64;
        (self.table + at + field) as *mut u32
    }

    fn read(&self, entry: u16, field: u64) -> u32 {
        // SAFETY: `table` maps the whole table uncached (mapped in `function`, never
        // unmapped); `entry` is below the table size, so the dword lies inside it.
        unsafe { self.dword(entry, field).read_volatile() }
    }

    fn write(&self, entry: u16, field: u64, value: u32) {
        // SAFETY: as in `read`.
        unsafe { self.dword(entry, field).write_volatile(value) }
    }

    /// Whether `entry` exists in the table.
    pub fn has_entry(&self, entry: u16) -> bool {
        entry < self.msix.vectors()
    }

    /// Sets or clears `entry`'s vector mask (reserved bits written back as read at set-up).
    pub fn set_masked(&self, entry: u16, masked: bool) {
        let Some(control) = self.controls.get(entry as usize) else { return };
        let value = msix::vector_control(control.load(Ordering::Relaxed), masked);
        control.store(value, Ordering::Relaxed);
        self.write(entry, msix::ENTRY_VECTOR_CONTROL, value);
    }

    /// `entry`'s vector mask as the table holds it.
    pub fn masked(&self, entry: u16) -> bool {
        self.read(entry, msix::ENTRY_VECTOR_CONTROL) & msix::VECTOR_MASKED != 0
    }

    /// `entry`'s pending bit, read from the PBA.
    pub fn pending(&self, entry: u16) -> bool {
        let Some((word, bit)) = self.msix.pending_bit(entry) else { return false };
        let at = self.pba + (word - self.msix.pba.offset as u64);
        // SAFETY: `pba` maps the whole PBA uncached; the word holding `entry`'s bit is in it.
        let low = unsafe { (at as *const u32).read_volatile() } as u64;
        // SAFETY: the PBA is whole 64-bit words, so the high half of the word is in it too.
        let high = unsafe { ((at + 4) as *const u32).read_volatile() } as u64;
        (low | high << 32) & (1 << bit) != 0
    }

    /// `entry` as the table holds it (for evidence).
    pub fn entry(&self, entry: u16) -> Entry {
        Entry::decode([
            self.read(entry, msix::ENTRY_ADDRESS_LO),
            self.read(entry, msix::ENTRY_ADDRESS_HI),
            self.read(entry, msix::ENTRY_DATA),
            self.read(entry, msix::ENTRY_VECTOR_CONTROL),
        ])
    }

    /// Points `entry` at `vector` on the CPU with `cpu`, leaving it masked: with VT-d
    /// remapping on, a remappable-format message naming the entry's own IRTE handle; with
    /// AMD-Vi, a message naming only the entry's own index in the function's table (address
    /// destination 0); without, a compatibility-format one (8-bit destination).
    pub fn program(&self, entry: u16, vector: u8, cpu: ApicId) -> Result<(), &'static str> {
        if !self.has_entry(entry) {
            return Err("MSI-X entry past the function's table");
        }
        let bdf = self.device.addr.bdf();
        let (address, data) = if fw::arch::x86_64::amdvi::mode().is_some() {
            let index = amdvi::remap::program_msix(bdf, entry, vector, cpu).map_err(|e| {
                log::warn!("msix: {}: AMD-Vi entry failed: {e:?}", self.device.addr);
                "interrupt-remapping entry for the MSI-X entry could not be programmed"
            })?;
            let zero = XApicId::new(0).expect("APIC ID 0");
            (MsiAddress::physical(zero).encode() as u64, index as u32)
        } else if iommu::mode().is_some() {
            let handle = iommu::program_msix(bdf, entry, vector, cpu).map_err(|e| {
                log::warn!("msix: {}: remapping entry failed: {e:?}", self.device.addr);
                "interrupt-remapping entry for the MSI-X entry could not be programmed"
            })?;
            let m = RemappableMsi { handle };
            (m.address() as u64, m.data() as u32)
        } else {
            let dest = XApicId::try_from(cpu)
                .map_err(|_| "MSI-X destination above APIC ID 254 needs interrupt remapping")?;
            let data = MsiData::fixed(vector).encode().map_err(|_| "illegal MSI-X vector")?;
            (MsiAddress::physical(dest).encode() as u64, data)
        };
        self.set_masked(entry, true);
        self.write(entry, msix::ENTRY_ADDRESS_LO, address as u32);
        self.write(entry, msix::ENTRY_ADDRESS_HI, (address >> 32) as u32);
        self.write(entry, msix::ENTRY_DATA, data);
        Ok(())
    }

    /// Whether MSI-X is enabled and the function unmasked, read from Message Control.
    #[cfg(feature = "scenarios")]
    pub fn enabled_and_open(&self) -> bool {
        let c = self.control();
        c.enabled() && !c.function_masked()
    }
}
