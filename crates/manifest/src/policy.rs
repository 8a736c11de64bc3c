//! The grant policy: what no manifest may hand a program, whatever it says. One pure
//! implementation serves the host check ([`crate::parse_checked`]) and the kernel's loader,
//! which adds the ranges it learns at boot (ACPI PM and reset registers from the FADT).
//!
//! - I/O ports the kernel drives itself are never grantable ([`KERNEL_OWNED_PORTS`]).
//! - Two programs that may run at the same time never hold overlapping `IoPorts` ranges
//!   (a program started `after` another, directly or through a chain, cannot overlap it).
//! - Without DMA remapping, a grant that lets a program drive a PCI function (its BAR or its
//!   interrupt, hence its bus mastering) needs `dma = "unprotected"` in the program or the
//!   device block: such a driver can read and write all of memory by DMA.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::{Grant, Manifest, Program};

/// An inclusive range of I/O ports and who owns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnedPorts {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
    /// What the kernel drives there, for the error message.
    pub owner: &'static str,
}

/// Ports the kernel owns on every PC it runs on. The loader adds the FADT's registers.
pub const KERNEL_OWNED_PORTS: &[OwnedPorts] = &[
    OwnedPorts { first: 0x20, last: 0x21, owner: "8259 PIC (master)" },
    OwnedPorts { first: 0x40, last: 0x43, owner: "PIT" },
    OwnedPorts { first: 0x60, last: 0x60, owner: "keyboard controller (data)" },
    OwnedPorts { first: 0x64, last: 0x64, owner: "keyboard controller (command)" },
    OwnedPorts { first: 0xa0, last: 0xa1, owner: "8259 PIC (slave)" },
    OwnedPorts { first: 0xf4, last: 0xf7, owner: "isa-debug-exit (the kernel's exit path)" },
    OwnedPorts { first: 0x3f8, last: 0x3ff, owner: "COM1 (the kernel console)" },
    OwnedPorts { first: 0xcf8, last: 0xcff, owner: "PCI configuration (and the 0xcf9 reset)" },
];

/// Whether two inclusive ranges share a port. Inclusive bounds never wrap: `0xffff..0xffff`
/// is one port and nothing after it.
pub const fn ranges_overlap(a_first: u16, a_last: u16, b_first: u16, b_last: u16) -> bool {
    a_first <= b_last && b_first <= a_last
}

/// The first kernel-owned range (`fixed`, then `extra`) that `first..=last` touches.
pub fn kernel_owned_conflict(
    first: u16,
    last: u16,
    fixed: &[OwnedPorts],
    extra: &[OwnedPorts],
) -> Option<OwnedPorts> {
    fixed.iter().chain(extra).copied().find(|o| ranges_overlap(first, last, o.first, o.last))
}

/// A physical MMIO window the kernel drives (LAPIC, IOAPIC, IOMMU registers): no
/// `DeviceMemory` grant may map any of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnedMmio {
    /// Physical base.
    pub base: u64,
    /// Length in bytes.
    pub size: u64,
    /// What the kernel drives there.
    pub owner: &'static str,
}

/// The first kernel-owned window that the `size` bytes at `phys` touch. Sizes of zero touch
/// nothing; a window reaching past 2^64 ends there (no wrap to address 0).
pub fn mmio_conflict(phys: u64, size: u64, owned: &[OwnedMmio]) -> Option<OwnedMmio> {
    // Inclusive last bytes: a window ending at 2^64 - 1 is whole, and nothing wraps to 0.
    let last = |base: u64, size: u64| base.saturating_add(size - 1);
    owned.iter().copied().find(|o| {
        size != 0 && o.size != 0 && phys <= last(o.base, o.size) && o.base <= last(phys, size)
    })
}

/// Why the policy refuses a program's grants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// An `IoPorts` grant touches ports the kernel drives.
    KernelOwnedPorts {
        /// The range as granted.
        first: u16,
        /// Its last port.
        last: u16,
        /// The kernel-owned range it touches.
        owned: OwnedPorts,
    },
    /// An `IoPorts` grant overlaps another program's that may run at the same time.
    OverlappingPorts {
        /// The range as granted.
        first: u16,
        /// Its last port.
        last: u16,
        /// The other holder.
        other: String,
        /// The other holder's range.
        other_first: u16,
        /// Its last port.
        other_last: u16,
    },
    /// A `DeviceMemory` grant whose BAR lies on MMIO the kernel drives.
    KernelOwnedMmio {
        /// The BAR's physical base.
        phys: u64,
        /// Its size.
        size: u64,
        /// The kernel-owned window it touches.
        owned: OwnedMmio,
    },
    /// A PCI device grant without DMA remapping and without `dma = "unprotected"`.
    DmaNotContained {
        /// The device the grant names.
        device: String,
    },
    /// A program that says `dma = "remapped"` on a machine without DMA remapping.
    DmaRemappingRequired,
}

impl Refusal {
    /// One evidence value (no spaces): the reason, the range or device granted and, for
    /// kernel-owned ports, the owner's range it touches.
    pub fn evidence(&self) -> String {
        match self {
            Refusal::KernelOwnedPorts { first, last, owned } => alloc::format!(
                "kernel_owned_ports_{first:#x}_{last:#x}_owner_{:#x}_{:#x}",
                owned.first,
                owned.last
            ),
            Refusal::OverlappingPorts { first, last, .. } => {
                alloc::format!("overlapping_ports_{first:#x}_{last:#x}")
            }
            Refusal::KernelOwnedMmio { phys, .. } => alloc::format!("kernel_owned_mmio_{phys:#x}"),
            Refusal::DmaNotContained { device } => alloc::format!("dma_not_contained_{device}"),
            Refusal::DmaRemappingRequired => "dma_remapping_required".into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::KernelOwnedPorts { first, last, owned } => write!(
                f,
                "IoPorts {first:#x}..{last:#x} touches {:#x}..{:#x}, owned by the kernel ({})",
                owned.first, owned.last, owned.owner
            ),
            Refusal::OverlappingPorts { first, last, other, other_first, other_last } => write!(
                f,
                "IoPorts {first:#x}..{last:#x} overlaps {other_first:#x}..{other_last:#x} granted to \"{other}\", which may run at the same time"
            ),
            Refusal::KernelOwnedMmio { phys, size, owned } => write!(
                f,
                "DeviceMemory {phys:#x}+{size:#x} touches {:#x}+{:#x}, owned by the kernel ({})",
                owned.base, owned.size, owned.owner
            ),
            Refusal::DmaNotContained { device } => write!(
                f,
                "device `{device}` can DMA anywhere without an IOMMU: grant it only with dma = \"unprotected\""
            ),
            Refusal::DmaRemappingRequired => {
                write!(f, "dma = \"remapped\", but this machine has no DMA remapping")
            }
        }
    }
}

/// Whether `program`'s DMA-capable grants (a BAR or an interrupt of a PCI function) are
/// allowed: always with DMA remapping, otherwise only with the explicit opt-in.
pub fn dma_refusal(manifest: &Manifest, program: &Program, dma_remapping: bool) -> Option<Refusal> {
    if dma_remapping {
        return None;
    }
    if program.dma_remapped {
        return Some(Refusal::DmaRemappingRequired);
    }
    program.grants.iter().filter_map(Grant::device).find_map(|name| {
        let device_opt_in = manifest.device(name).is_some_and(|d| d.dma_unprotected);
        (!program.dma_unprotected && !device_opt_in)
            .then(|| Refusal::DmaNotContained { device: name.into() })
    })
}

/// Whether `a` and `b` may run at the same time: neither reaches the other through `after`.
/// `after` chains have no cycle (checked by the parser); the walk is bounded anyway.
pub fn may_run_together(manifest: &Manifest, a: &str, b: &str) -> bool {
    let runs_after = |later: &str, earlier: &str| {
        let mut cur = manifest.program(later).and_then(|p| p.after.as_deref());
        for _ in 0..manifest.programs.len() {
            match cur {
                Some(name) if name == earlier => return true,
                Some(name) => cur = manifest.program(name).and_then(|p| p.after.as_deref()),
                None => return false,
            }
        }
        false
    };
    a != b && !runs_after(a, b) && !runs_after(b, a)
}

/// The `IoPorts` refusals of `program`: kernel-owned ports (`extra` holds what the kernel
/// learned at boot) and overlaps with other programs that may run at the same time.
pub fn port_refusals(manifest: &Manifest, program: &Program, extra: &[OwnedPorts]) -> Vec<Refusal> {
    let mut out = Vec::new();
    for (index, (first, last)) in program.grants.iter().filter_map(io_range).enumerate() {
        if let Some(owned) = kernel_owned_conflict(first, last, KERNEL_OWNED_PORTS, extra) {
            out.push(Refusal::KernelOwnedPorts { first, last, owned });
            continue;
        }
        for other in &manifest.programs {
            // The program's own other ranges count too: releasing one range must close
            // exactly it, which overlapping grants of one holder would blur.
            let itself = other.name == program.name;
            if !itself && !may_run_together(manifest, &program.name, &other.name) {
                continue;
            }
            let clash = other
                .grants
                .iter()
                .filter_map(io_range)
                .enumerate()
                .filter(|&(i, _)| !itself || i != index)
                .map(|(_, range)| range)
                .find(|&(f, l)| ranges_overlap(first, last, f, l));
            if let Some((other_first, other_last)) = clash {
                out.push(Refusal::OverlappingPorts {
                    first,
                    last,
                    other: other.name.clone(),
                    other_first,
                    other_last,
                });
                break;
            }
        }
    }
    out
}

/// Every refusal of `program` under the policy.
pub fn refusals(
    manifest: &Manifest,
    program: &Program,
    extra: &[OwnedPorts],
    dma_remapping: bool,
) -> Vec<Refusal> {
    let mut out = port_refusals(manifest, program, extra);
    out.extend(dma_refusal(manifest, program, dma_remapping));
    out
}

/// The range of an `IoPorts` grant.
fn io_range(g: &Grant) -> Option<(u16, u16)> {
    match *g {
        Grant::IoPorts { first, last } => Some((first, last)),
        _ => None,
    }
}
