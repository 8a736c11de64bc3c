//! The grant policy: whether the boot manifest may give a program what it names, decided
//! before anything is built for it. The manifest's own rules (`keel_manifest::policy`:
//! kernel-owned ports with the FADT's registers, overlaps, DMA without remapping) plus what
//! only the running system knows: the port ranges live processes hold, and BARs on MMIO the
//! kernel drives. Loading itself is `task::loader`'s.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use keel_manifest::policy::{self, OwnedMmio, Refusal};
use keel_manifest::{Grant, Manifest, Program};

use crate::object::Object;
use crate::task::loader::{self, ModuleImage};
use crate::task::{process, Process};

/// Whether device DMA goes through an IOMMU with DMA remapping enabled, so a driver reaches
/// only memory mapped for it (`iommu::dma_translation`: every unit took the kernel's root
/// table). The one place the grant policy asks; without it every PCI device grant needs
/// `dma = "unprotected"`.
pub fn dma_remapping_active() -> bool {
    fw::arch::x86_64::iommu::dma_translation()
}

/// Why a program did not start.
pub enum StartError {
    /// The grant policy refused its grants (each refusal names the range or device).
    Refused(Vec<Refusal>),
    /// Anything else (no module, a bad ELF, no memory, a device absent).
    Failed(String),
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartError::Refused(why) => {
                f.write_str("refused:")?;
                why.iter().try_for_each(|r| write!(f, " {r};"))
            }
            StartError::Failed(e) => f.write_str(e),
        }
    }
}

/// MMIO the kernel drives: the LAPIC, every IOAPIC, every IOMMU unit's registers.
fn kernel_owned_mmio() -> Vec<OwnedMmio> {
    let platform = fw::acpi::platform();
    let mut owned =
        alloc::vec![OwnedMmio { base: platform.local_apic_address(), size: 4096, owner: "LAPIC" }];
    owned.extend(platform.ioapics().iter().map(|io| OwnedMmio {
        base: u64::from(io.address),
        size: 4096,
        owner: "IOAPIC",
    }));
    if let Some(dmar) = fw::acpi::dmar().and_then(|b| keel_iommu::Dmar::parse(b).ok()) {
        owned.extend(dmar.units().map(|u| OwnedMmio {
            base: u.register_base,
            size: u64::from(u.register_pages().max(1)) * 4096,
            owner: "IOMMU registers",
        }));
    }
    owned
}

/// The grant policy for `program` now: the manifest's (kernel-owned ports with the FADT's
/// registers, overlaps, DMA without remapping), overlaps with the ranges live processes
/// hold, and BARs on kernel-owned MMIO.
fn policy_refusals(manifest: &Manifest, program: &Program) -> Vec<Refusal> {
    let mut out =
        policy::refusals(manifest, program, fw::acpi::kernel_io_ports(), dma_remapping_active());
    let live: Vec<(String, u16, u16)> = process::live()
        .iter()
        .filter(|p| !p.has_exited())
        .flat_map(|p| {
            p.caps
                .lock()
                .iter()
                .filter_map(|(_, o)| match *o {
                    Object::IoPorts { first, last } => Some((p.name.clone(), first, last)),
                    _ => None,
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let owned_mmio = kernel_owned_mmio();
    for g in &program.grants {
        match g {
            Grant::IoPorts { first, last } => {
                let (first, last) = (*first, *last);
                if let Some((other, f, l)) =
                    live.iter().find(|(_, f, l)| policy::ranges_overlap(first, last, *f, *l))
                {
                    out.push(Refusal::OverlappingPorts {
                        first,
                        last,
                        other: other.clone(),
                        other_first: *f,
                        other_last: *l,
                    });
                }
            }
            Grant::DeviceMemory { device, bar } => {
                // An absent device fails the grant itself, later, with its own error.
                let Ok(dev) = loader::resolve_device(manifest, device) else { continue };
                let b = dev.bars[*bar as usize];
                if let Some(owned) =
                    b.mmio.then(|| policy::mmio_conflict(b.phys, b.size, &owned_mmio)).flatten()
                {
                    out.push(Refusal::KernelOwnedMmio { phys: b.phys, size: b.size, owned });
                }
            }
            _ => {}
        }
    }
    out
}

/// Applies the grant policy to `program` before anything is built for it; a refusal is
/// logged with the range or device it names and recorded (`proc.<name>.refused`). A PCI
/// device granted without DMA remapping is announced as not contained.
fn check_policy(manifest: &Manifest, program: &Program) -> Result<(), StartError> {
    let key = program.name.replace('-', "_");
    let refusals = policy_refusals(manifest, program);
    if let Some(first) = refusals.first() {
        for r in &refusals {
            log::error!("loader: {} refused: {r}", program.name);
        }
        fw::ev!(("proc.{}.refused", key), first.evidence());
        return Err(StartError::Refused(refusals));
    }
    let pci_grants = program.grants.iter().filter_map(Grant::device);
    if let Some(device) = pci_grants.clone().next().filter(|_| !dma_remapping_active()) {
        log::warn!(
            "loader: {} drives {device} with dma = \"unprotected\" and no DMA remapping: this driver is NOT contained (its device can read and write all memory)",
            program.name
        );
        fw::ev!(("proc.{}.dma", key), "unprotected");
        fw::ev!("dma.contained", "no");
    }
    Ok(())
}

/// Loads `program` from its module, grants its capabilities and queues its thread, once the
/// grant policy accepts it.
pub fn start(
    manifest: &Manifest,
    program: &Program,
    mods: &[ModuleImage],
) -> Result<Arc<Process>, StartError> {
    check_policy(manifest, program)?;
    loader::load_and_queue(manifest, program, mods).map_err(StartError::Failed)
}
