//! Per-CPU state, indexed by keel-platform's dense `CpuIndex` (never by APIC ID), and the
//! way a CPU finds its own entry: it reads its LAPIC ID register and looks the ID up.
//! Every counter is written on the CPU it describes and read by the boot CPU for the report.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

use keel_apic::{Lapic, LapicMode};

use crate::apic::Registers;

/// CPUs this example handles (a kernel would size this from the platform).
pub const MAX_CPUS: usize = 16;
/// An unused slot's APIC ID.
const NO_CPU: u32 = u32::MAX;

pub struct Cpu {
    /// The APIC ID the MADT gives this index (set by the boot CPU before start-up).
    pub apic_id: AtomicU32,
    /// ACPI processor UID, which the MADT's LINT wiring names.
    pub processor_uid: AtomicU32,
    /// Set by the CPU itself once its LAPIC and timer run.
    pub online: AtomicBool,
    /// `IA32_APIC_BASE` as the CPU read it back after applying its mode plan.
    pub apic_base: AtomicU64,
    /// The APIC ID its own LAPIC ID register reports.
    pub id_register: AtomicU32,
    pub ticks: AtomicU64,
    pub ipis_sent: AtomicU64,
    pub ipis_received: AtomicU64,
    pub lapic_errors: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)] // only as the array initialiser below
const EMPTY: Cpu = Cpu {
    apic_id: AtomicU32::new(NO_CPU),
    processor_uid: AtomicU32::new(0),
    online: AtomicBool::new(false),
    apic_base: AtomicU64::new(0),
    id_register: AtomicU32::new(NO_CPU),
    ticks: AtomicU64::new(0),
    ipis_sent: AtomicU64::new(0),
    ipis_received: AtomicU64::new(0),
    lapic_errors: AtomicU64::new(0),
};

pub static CPUS: [Cpu; MAX_CPUS] = [EMPTY; MAX_CPUS];

/// The system-wide LAPIC mode (the boot CPU's plan; every AP follows it) and xAPIC page.
static X2APIC: AtomicU8 = AtomicU8::new(0);
static XAPIC_MMIO: AtomicU64 = AtomicU64::new(0);

pub fn set_mode(mode: LapicMode, xapic_mmio: u64) {
    XAPIC_MMIO.store(xapic_mmio, Ordering::Relaxed);
    X2APIC.store((mode == LapicMode::X2Apic) as u8, Ordering::Release);
}

pub fn mode() -> LapicMode {
    if X2APIC.load(Ordering::Acquire) != 0 {
        LapicMode::X2Apic
    } else {
        LapicMode::XApic
    }
}

/// The running CPU's local APIC, driven by keel-apic through this example's backend.
pub fn lapic() -> Lapic<Registers> {
    Lapic::new(Registers::new(mode(), XAPIC_MMIO.load(Ordering::Relaxed)))
}

/// Slots the platform filled, with their index.
pub fn present() -> impl Iterator<Item = (usize, &'static Cpu)> {
    CPUS.iter().enumerate().filter(|(_, c)| c.apic_id.load(Ordering::Acquire) != NO_CPU)
}

/// The running CPU's slot.
pub fn this() -> &'static Cpu {
    let id = lapic().id().get();
    present()
        .map(|(_, c)| c)
        .find(|c| c.apic_id.load(Ordering::Relaxed) == id)
        .expect("a CPU the MADT did not list is running")
}

impl Cpu {
    /// Records what this CPU reads back once its LAPIC is enabled, then says it is online.
    pub fn come_online(&self) {
        self.apic_base.store(crate::apic::read_apic_base().raw(), Ordering::Relaxed);
        self.id_register.store(lapic().id().get(), Ordering::Relaxed);
        self.online.store(true, Ordering::Release);
    }
}
