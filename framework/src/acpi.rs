//! ACPI discovery: the `acpi` crate finds and validates the RSDP/RSDT/XSDT and the MADT; each
//! MADT entry becomes a `keel_platform::MadtRecord`, and `keel_platform` decides what the
//! platform means (CPUs, IOAPICs, overrides). Missing or broken tables are reported and
//! replaced by a safe fallback (the boot CPU alone, the standard IOAPIC), never a panic.

use acpi::address::AddressSpace;
use acpi::fadt::Fadt;
use acpi::hpet::HpetInfo;
use acpi::madt::{Madt, MadtEntry};
use acpi::sdt::{SdtHeader, Signature};
use acpi::{AcpiError, AcpiHandler, AcpiTable, AcpiTables, PhysicalMapping};
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};
use keel_boot::handover::AcpiRoot;
use keel_platform::{MadtRecord, Platform};
use spin::Once;

use crate::mm::paging::{map_physical, Caching};

/// The architectural default LAPIC base, used when the MADT is missing.
pub const DEFAULT_LAPIC_BASE: u32 = 0xFEE0_0000;
/// The conventional IOAPIC base, used when the MADT is missing.
pub const DEFAULT_IOAPIC_BASE: u32 = 0xFEC0_0000;

/// The interpreted MADT lives here, filled in place: at 4,096 CPUs it is too large for a stack.
static PLATFORM_STORAGE: PlatformStorage = PlatformStorage {
    claimed: AtomicBool::new(false),
    platform: UnsafeCell::new(Platform::empty()),
};

/// A static `Platform` handed out mutably once.
struct PlatformStorage {
    claimed: AtomicBool,
    platform: UnsafeCell<Platform>,
}

// SAFETY: the cell is reached only through `claim`, which hands out its one `&mut` to the
// first caller (the swap makes any later claim panic); `Platform` is plain data (Send + Sync).
unsafe impl Sync for PlatformStorage {}
const _: () = {
    const fn plain_data<T: Send + Sync>() {}
    plain_data::<Platform>();
};

impl PlatformStorage {
    // The one `&mut` ever handed out from the shared cell: the swap below makes any second
    // claim panic, which is the invariant `mut_from_ref` cannot see.
    #[allow(clippy::mut_from_ref)]
    fn claim(&'static self) -> &'static mut Platform {
        assert!(!self.claimed.swap(true, Ordering::AcqRel), "the platform storage is filled once");
        // SAFETY: first and only claim (asserted above), so no other reference exists.
        unsafe { &mut *self.platform.get() }
    }
}
static PLATFORM: Once<&'static Platform> = Once::new();
/// A copy of the DMAR table's bytes when the firmware has one (an Intel IOMMU is present).
static DMAR: Once<Option<Vec<u8>>> = Once::new();

/// The DMA Remapping Reporting table as raw bytes: `keel_iommu::Dmar` parses it.
#[repr(C, packed)]
struct DmarHeader {
    header: SdtHeader,
}

// SAFETY: `DmarHeader` is exactly the standard header every DMAR begins with; the `acpi`
// crate maps and checksums the whole table before handing it out.
unsafe impl AcpiTable for DmarHeader {
    const SIGNATURE: Signature = Signature::DMAR;

    fn header(&self) -> &SdtHeader {
        &self.header
    }
}

/// The DMAR's bytes (after [`init`]), `None` when the firmware reports no IOMMU.
pub fn dmar() -> Option<&'static [u8]> {
    DMAR.get().and_then(|d| d.as_deref())
}

/// A copy of the IVRS table's bytes when the firmware has one (an AMD IOMMU is present).
static IVRS: Once<Option<Vec<u8>>> = Once::new();

/// The I/O Virtualization Reporting Structure as raw bytes: `keel_iommu::ivrs` parses it.
#[repr(C, packed)]
struct IvrsHeader {
    header: SdtHeader,
}

// SAFETY: `IvrsHeader` is exactly the standard header every IVRS begins with; the `acpi`
// crate maps and checksums the whole table before handing it out.
unsafe impl AcpiTable for IvrsHeader {
    const SIGNATURE: Signature = Signature::IVRS;

    fn header(&self) -> &SdtHeader {
        &self.header
    }
}

/// The IVRS's bytes (after [`init`]), `None` when the firmware reports no AMD IOMMU.
pub fn ivrs() -> Option<&'static [u8]> {
    IVRS.get().and_then(|d| d.as_deref())
}

/// Copies a table the kernel parses itself (DMAR, IVRS) out of firmware memory.
fn copy_table<T: AcpiTable>(tables: &AcpiTables<PhysMapHandler>) -> Option<Vec<u8>> {
    let name = T::SIGNATURE.as_str();
    let mapping = tables.find_table::<T>().ok()?;
    let len = mapping.get().header().length as usize;
    if len > mapping.region_length() {
        log::warn!(
            "acpi: {name} claims {len} bytes but {} are mapped; ignored",
            mapping.region_length()
        );
        return None;
    }
    // SAFETY: the mapping covers the table's `length` bytes (checked just above), which the
    // `acpi` crate mapped and checksummed; the bytes are copied before the mapping is dropped.
    let bytes =
        unsafe { core::slice::from_raw_parts(mapping.virtual_start().as_ptr().cast::<u8>(), len) };
    log::info!("acpi: {name} at {:#x}, {len} bytes", mapping.physical_start());
    Some(bytes.to_vec())
}

/// The timers the firmware's tables describe, the references `time` may calibrate against.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClockHardware {
    /// The ACPI PM timer's I/O port and counter width (24 or 32 bits), from the FADT.
    pub pm_timer: Option<(u16, u32)>,
    /// The HPET's register block (physical), from the `HPET` table.
    pub hpet_base: Option<u64>,
}

static CLOCKS: Once<ClockHardware> = Once::new();

/// The timers the firmware described (after [`init`]; nothing when it had no tables).
pub fn clock_hardware() -> ClockHardware {
    CLOCKS.get().copied().unwrap_or_default()
}

fn find_clocks(tables: &AcpiTables<PhysMapHandler>) -> ClockHardware {
    let pm_timer = tables.find_table::<Fadt>().ok().and_then(|fadt| {
        let bits = if { fadt.flags }.pm_timer_is_32_bit() { 32 } else { 24 };
        match fadt.pm_timer_block() {
            Ok(Some(block)) if block.address_space == AddressSpace::SystemIo => {
                u16::try_from(block.address).ok().filter(|p| *p != 0).map(|port| (port, bits))
            }
            Ok(Some(block)) => {
                log::warn!("acpi: PM timer in {:?} space is not supported", block.address_space);
                None
            }
            _ => None,
        }
    });
    let hpet_base = HpetInfo::new(tables).ok().map(|h| h.base_address as u64).filter(|b| *b != 0);
    log::info!("acpi: PM timer {pm_timer:x?}, HPET {hpet_base:x?}");
    ClockHardware { pm_timer, hpet_base }
}

/// The platform as the firmware declared it (after [`init`]).
pub fn platform() -> &'static Platform {
    PLATFORM.get().expect("acpi::init has not run")
}

/// Above this many CPUs the boot log lists them as ranges instead of one line each.
pub const PER_CPU_LINES_LIMIT: usize = 64;

/// Maps ACPI tables through the physical map (write-back: they are ordinary memory).
#[derive(Clone, Copy)]
struct PhysMapHandler;

impl AcpiHandler for PhysMapHandler {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let virt = map_physical(physical_address as u64, size as u64, Caching::WriteBack);
        // SAFETY: `map_physical` returned a valid, mapped, non-null address for the range.
        unsafe {
            PhysicalMapping::new(
                physical_address,
                NonNull::new_unchecked(virt.as_mut_ptr::<T>()),
                size,
                size,
                *self,
            )
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {
        // The physical map is permanent; nothing to undo.
    }
}

/// The boot CPU's full APIC ID from CPUID (leaf 0x0B gives all 32 bits, leaf 1 only 8).
pub fn boot_cpu_apic_id() -> u32 {
    let f = crate::arch::x86_64::cpu::features();
    if f.max_leaf >= 0x0B {
        let r = core::arch::x86_64::__cpuid_count(0x0B, 0);
        if r.ebx != 0 {
            return r.edx;
        }
    }
    f.initial_apic_id as u32
}

fn convert(entry: MadtEntry) -> MadtRecord {
    match entry {
        MadtEntry::LocalApic(e) => MadtRecord::LocalApic {
            processor_uid: e.processor_id as u32,
            apic_id: e.apic_id as u32,
            flags: e.flags,
        },
        MadtEntry::LocalX2Apic(e) => MadtRecord::LocalX2Apic {
            processor_uid: e.processor_uid,
            apic_id: e.x2apic_id,
            flags: e.flags,
        },
        MadtEntry::IoApic(e) => MadtRecord::IoApic {
            id: e.io_apic_id,
            address: e.io_apic_address,
            gsi_base: e.global_system_interrupt_base,
        },
        MadtEntry::InterruptSourceOverride(e) => MadtRecord::InterruptSourceOverride {
            bus: e.bus,
            source: e.irq,
            gsi: e.global_system_interrupt,
            flags: e.flags,
        },
        MadtEntry::NmiSource(e) => {
            MadtRecord::NmiSource { flags: e.flags, gsi: e.global_system_interrupt }
        }
        MadtEntry::LocalApicNmi(e) => MadtRecord::LocalApicNmi {
            // 0xFF ("all processors") is the platform crate's to interpret.
            processor_uid: e.processor_id as u32,
            flags: e.flags,
            lint: e.nmi_line,
        },
        MadtEntry::X2ApicNmi(e) => MadtRecord::LocalX2ApicNmi {
            processor_uid: e.processor_uid,
            flags: e.flags,
            lint: e.nmi_line,
        },
        MadtEntry::LocalApicAddressOverride(e) => {
            MadtRecord::LocalApicAddressOverride { address: e.local_apic_address }
        }
        MadtEntry::IoSapic(_) => MadtRecord::Other { kind: 6 },
        MadtEntry::LocalSapic(_) => MadtRecord::Other { kind: 7 },
        MadtEntry::PlatformInterruptSource(_) => MadtRecord::Other { kind: 8 },
        MadtEntry::Gicc(_) => MadtRecord::Other { kind: 0xB },
        MadtEntry::Gicd(_) => MadtRecord::Other { kind: 0xC },
        MadtEntry::GicMsiFrame(_) => MadtRecord::Other { kind: 0xD },
        MadtEntry::GicRedistributor(_) => MadtRecord::Other { kind: 0xE },
        MadtEntry::GicInterruptTranslationService(_) => MadtRecord::Other { kind: 0xF },
        MadtEntry::MultiprocessorWakeup(_) => MadtRecord::Other { kind: 0x10 },
    }
}

fn fallback(storage: &mut Platform, bsp: u32, why: &dyn core::fmt::Display) {
    log::error!(
        "acpi: {why}; falling back to the boot CPU alone and an IOAPIC at {DEFAULT_IOAPIC_BASE:#x}"
    );
    ev!("acpi.fallback", "yes");
    let records = [MadtRecord::IoApic { id: 0, address: DEFAULT_IOAPIC_BASE, gsi_base: 0 }];
    storage.rebuild(DEFAULT_LAPIC_BASE, true, records, bsp);
}

/// Finds the root table the way the hand-over allows: the loader's RSDP copy when it gave
/// one, the legacy BIOS-area scan only on a BIOS machine (UEFI has no EBDA to scan).
fn root_tables(root: AcpiRoot) -> Result<AcpiTables<PhysMapHandler>, AcpiError> {
    match root {
        AcpiRoot::FromLoader(rsdp) => {
            let (revision, address) = rsdp.root_table();
            log::info!(
                "acpi: RSDP from the loader ({:?}, revision {}), root table at {address:#x}",
                rsdp.source,
                rsdp.revision
            );
            ev!("acpi.rsdp", "loader");
            // SAFETY: the RSDP copy passed its checksums in keel_boot; the crate validates the
            // root table's signature and checksum, mapping it through the handler.
            unsafe { AcpiTables::from_rsdt(PhysMapHandler, revision, address as usize) }
        }
        AcpiRoot::ScanBiosAreas => {
            ev!("acpi.rsdp", "bios-scan");
            // SAFETY: the BIOS areas the search reads (EBDA, 0xE0000..0xFFFFF) are in the
            // physical map; the handler maps whatever tables they point at.
            unsafe { AcpiTables::search_for_rsdp_bios(PhysMapHandler) }
        }
        AcpiRoot::Unavailable => {
            ev!("acpi.rsdp", "none");
            log::error!("acpi: UEFI loader gave no RSDP and there are no BIOS areas to scan");
            Err(AcpiError::NoValidRsdp)
        }
    }
}

/// Finds the tables, interprets the MADT, prints the platform report.
pub fn init(root: AcpiRoot) -> &'static Platform {
    let bsp = boot_cpu_apic_id();
    assert!(PLATFORM.get().is_none(), "acpi::init runs once");
    // After this function the storage is only ever read, through `PLATFORM`.
    let storage = PLATFORM_STORAGE.claim();
    match root_tables(root) {
        Err(e) => fallback(storage, bsp, &format_args!("no usable RSDP ({e:?})")),
        Ok(tables) => {
            DMAR.call_once(|| copy_table::<DmarHeader>(&tables));
            IVRS.call_once(|| copy_table::<IvrsHeader>(&tables));
            CLOCKS.call_once(|| find_clocks(&tables));
            KERNEL_IO_PORTS.call_once(|| fadt_io_ports(&tables));
            match tables.find_table::<Madt>() {
                Err(e) => fallback(storage, bsp, &format_args!("no usable MADT ({e:?})")),
                Ok(madt) => {
                    let m = madt.get();
                    let lapic = m.local_apic_address;
                    let pc_at = m.supports_8259();
                    log::info!(
                        "acpi: MADT rev {} at {:#x}, LAPIC {:#x}, 8259 {}",
                        m.header.revision,
                        madt.physical_start(),
                        lapic,
                        pc_at
                    );
                    storage.rebuild(lapic, pc_at, m.entries().map(convert), bsp);
                }
            }
        }
    }
    DMAR.call_once(|| None);
    KERNEL_IO_PORTS.call_once(Vec::new);
    IVRS.call_once(|| None);
    let platform: &'static Platform = PLATFORM.call_once(|| storage);
    report(platform);
    platform
}

fn report(p: &Platform) {
    for d in p.diagnostics() {
        log::warn!("acpi: {d}");
    }
    if p.cpus().len() <= PER_CPU_LINES_LIMIT {
        for cpu in p.cpus() {
            log::info!(
                "acpi: cpu index {} apic-id {} uid {} from {:?} state {:?}",
                cpu.index.0,
                cpu.apic_id,
                cpu.processor_uid,
                cpu.source,
                cpu.state
            );
        }
    } else {
        report_cpu_ranges(p);
    }
    for io in p.ioapics() {
        log::info!("acpi: ioapic id {} at {:#x} gsi-base {}", io.id, io.address, io.gsi_base);
    }
    for irq in 0..16u8 {
        let Some(r) = p.resolve_isa_irq(irq) else {
            log::info!("acpi: isa irq {irq} has no GSI of its own (taken by an override)");
            continue;
        };
        if r.gsi != irq as u32
            || r.trigger != keel_apic::TriggerMode::Edge
            || r.polarity != keel_apic::Polarity::ActiveHigh
        {
            log::info!("acpi: isa irq {irq} -> gsi {} {:?} {:?}", r.gsi, r.polarity, r.trigger);
        }
    }
    ev!("acpi.madt.cpus", p.cpus().len());
    ev!(
        "acpi.madt.cpus_enabled",
        p.cpus().iter().filter(|c| c.state == keel_platform::CpuState::Enabled).count()
    );
    ev!("acpi.madt.cpus_dropped", p.summary(keel_apic::LapicMode::X2Apic).dropped_over_capacity);
    ev!("acpi.ioapics", p.ioapics().len());
    ev!("acpi.madt.lapic_nmis", p.lapic_nmis().len());
    ev!("acpi.diagnostics", p.diagnostics().count());
    ev!("acpi.dmar", if dmar().is_some() { "yes" } else { "no" });
    ev!("acpi.ivrs", if ivrs().is_some() { "yes" } else { "no" });
}

/// A large machine's CPU list on a few lines: counts per MADT entry type and the APIC IDs as
/// ranges (gaps in them are the topology's unused IDs).
fn report_cpu_ranges(p: &Platform) {
    let mut ids: alloc::vec::Vec<u32> = p.cpus().iter().map(|c| c.apic_id).collect();
    ids.sort_unstable();
    let x2 = p.cpus().iter().filter(|c| c.source == keel_platform::CpuSource::Type9).count();
    let enabled = p.cpus().iter().filter(|c| c.state == keel_platform::CpuState::Enabled).count();
    log::info!(
        "acpi: {} cpus ({} enabled, {} from x2APIC entries), APIC IDs {}",
        p.cpus().len(),
        enabled,
        x2,
        keel_platform::startup::Ranges(&ids)
    );
}

/// The FADT's fixed-hardware I/O registers (PM1a/b event and control, PM2 control, PM timer,
/// GPE0/1 blocks, the reset register): the kernel owns them, so the loader never grants them.
static KERNEL_IO_PORTS: Once<Vec<keel_manifest::policy::OwnedPorts>> = Once::new();

/// The FADT's I/O registers (after [`init`]; empty without a FADT).
pub fn kernel_io_ports() -> &'static [keel_manifest::policy::OwnedPorts] {
    KERNEL_IO_PORTS.get().map_or(&[], |v| v.as_slice())
}

fn fadt_io_ports(tables: &AcpiTables<PhysMapHandler>) -> Vec<keel_manifest::policy::OwnedPorts> {
    use acpi::address::{AddressSpace, GenericAddress};
    use acpi::fadt::Fadt;
    let Ok(fadt) = tables.find_table::<Fadt>() else {
        log::warn!("acpi: no FADT; only the fixed kernel-owned I/O ports are refused");
        return Vec::new();
    };
    let f = fadt.get();
    let registers: [(&'static str, Option<GenericAddress>); 9] = [
        ("ACPI PM1a event block", f.pm1a_event_block().ok()),
        ("ACPI PM1b event block", f.pm1b_event_block().ok().flatten()),
        ("ACPI PM1a control block", f.pm1a_control_block().ok()),
        ("ACPI PM1b control block", f.pm1b_control_block().ok().flatten()),
        ("ACPI PM2 control block", f.pm2_control_block().ok().flatten()),
        ("ACPI PM timer", f.pm_timer_block().ok().flatten()),
        ("ACPI GPE0 block", f.gpe0_block().ok().flatten()),
        ("ACPI GPE1 block", f.gpe1_block().ok().flatten()),
        ("ACPI reset register", f.reset_register().ok()),
    ];
    let mut out = Vec::new();
    for (owner, reg) in registers {
        let Some(reg) = reg.filter(|r| r.address_space == AddressSpace::SystemIo) else {
            continue;
        };
        let bytes = u64::from(reg.bit_width).div_ceil(8).max(1);
        if reg.address == 0 || reg.address > 0xffff {
            continue;
        }
        let last = (reg.address + bytes - 1).min(0xffff);
        log::info!("acpi: {owner} at ports {:#x}..{last:#x} is kernel-owned", reg.address);
        out.push(keel_manifest::policy::OwnedPorts {
            first: reg.address as u16,
            last: last as u16,
            owner,
        });
    }
    out
}
