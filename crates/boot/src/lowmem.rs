//! Low memory the AP start-up trampoline may use.
//!
//! A SIPI starts an application processor in real mode at a page below 1 MiB, so the
//! trampoline must live there. On a BIOS machine most of that memory is conventional RAM;
//! under UEFI it is free only where the firmware's memory map says so (firmware and the
//! loader may still own pages there). [`check_low_window`] decides from the map alone.

use core::fmt;

use crate::memory::{MemoryMap, MemoryMapError, PhysRange, LOW_MEMORY_END, PAGE_SIZE};
use crate::multiboot::{MemoryType, MmapEntry};

/// Why a low-memory window cannot hold the trampoline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LowWindowError {
    /// The window is empty, unaligned, or not entirely below 1 MiB (SIPI reach).
    OutOfReach {
        /// The window asked for.
        window: PhysRange,
    },
    /// Part of the window is not usable RAM in the firmware's memory map.
    NotUsable {
        /// The window asked for.
        window: PhysRange,
        /// First address inside it that is not usable.
        at: u64,
        /// The type of a map entry that is not available RAM and overlaps the
        /// page at `at`; `None` if no entry describes that page at all.
        kind: Option<MemoryType>,
    },
    /// The window overlaps memory the kernel still needs (a boot module the loader put in
    /// low memory): copying the trampoline there would destroy it.
    InUse {
        /// The window asked for.
        window: PhysRange,
        /// The range in use.
        range: PhysRange,
    },
    /// The memory map itself could not be interpreted.
    Map(MemoryMapError),
}

impl fmt::Display for LowWindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutOfReach { window } => {
                write!(f, "{window} is not a page-aligned window below 1 MiB")
            }
            Self::NotUsable { window, at, kind: Some(kind) } => {
                write!(
                    f,
                    "{window} is not free RAM: {at:#x} is {kind:?} in the firmware memory map"
                )
            }
            Self::NotUsable { window, at, kind: None } => {
                write!(f, "{window} is not free RAM: the firmware memory map does not describe the page at {at:#x}")
            }
            Self::InUse { window, range } => {
                write!(f, "{window} overlaps boot data still in use at {range}")
            }
            Self::Map(e) => write!(f, "unusable memory map: {e}"),
        }
    }
}

/// Checks that `window` (page aligned, below 1 MiB) lies entirely in RAM the
/// firmware memory map declares available, with no reserved entry overlapping it, and
/// overlaps none of the ranges still `in_use` (boot modules the loader may have put low).
pub fn check_low_window(
    entries: &[MmapEntry],
    in_use: &[PhysRange],
    window: PhysRange,
) -> Result<PhysRange, LowWindowError> {
    let aligned = window.page_aligned() == Some(window);
    if !aligned || window.end > LOW_MEMORY_END {
        return Err(LowWindowError::OutOfReach { window });
    }
    if let Some(&range) = in_use.iter().find(|r| r.overlaps(&window)) {
        return Err(LowWindowError::InUse { window, range });
    }
    let map = MemoryMap::from_entries(entries.iter().copied()).map_err(LowWindowError::Map)?;
    let mut at = window.start;
    for r in map.usable() {
        if r.start <= at && at < r.end {
            at = r.end;
        }
        if at >= window.end {
            return Ok(window);
        }
    }
    let page = PhysRange { start: at, end: at + PAGE_SIZE };
    let kind = entries
        .iter()
        .filter(|e| e.kind != MemoryType::Available)
        .find(|e| e.range().is_some_and(|r| r.overlaps(&page)))
        .map(|e| e.kind);
    Err(LowWindowError::NotUsable { window, at, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(base: u64, length: u64, kind: MemoryType) -> MmapEntry {
        MmapEntry { base, length, kind }
    }
    fn w(start: u64, end: u64) -> PhysRange {
        PhysRange { start, end }
    }

    #[test]
    fn bios_map_accepts_the_trampoline_window() {
        let map = [e(0, 0x9fc00, MemoryType::Available), e(0x9fc00, 0x400, MemoryType::Reserved)];
        assert_eq!(check_low_window(&map, &[], w(0x8000, 0xc000)), Ok(w(0x8000, 0xc000)));
    }

    #[test]
    fn uefi_map_with_firmware_pages_in_the_window_is_refused_with_the_reason() {
        // OVMF-like: conventional RAM with a runtime-services hole inside the window.
        let map = [
            e(0, 0x9000, MemoryType::Available),
            e(0x9000, 0x1000, MemoryType::Reserved),
            e(0xa000, 0x96000, MemoryType::Available),
        ];
        assert_eq!(
            check_low_window(&map, &[], w(0x8000, 0xc000)),
            Err(LowWindowError::NotUsable {
                window: w(0x8000, 0xc000),
                at: 0x9000,
                kind: Some(MemoryType::Reserved)
            })
        );
        // A reserved entry overlapping available RAM wins, whatever the order.
        let overlap = [e(0xa800, 0x10, MemoryType::AcpiNvs), e(0, 0xa0000, MemoryType::Available)];
        assert!(matches!(
            check_low_window(&overlap, &[], w(0x8000, 0xc000)),
            Err(LowWindowError::NotUsable { at: 0xa000, kind: Some(MemoryType::AcpiNvs), .. })
        ));
    }

    #[test]
    fn holes_and_out_of_reach_windows() {
        let map = [e(0, 0x8000, MemoryType::Available), e(0xb000, 0x1000, MemoryType::Available)];
        assert_eq!(
            check_low_window(&map, &[], w(0x8000, 0xc000)),
            Err(LowWindowError::NotUsable { window: w(0x8000, 0xc000), at: 0x8000, kind: None })
        );
        assert!(matches!(
            check_low_window(&map, &[], w(0xff000, 0x101000)),
            Err(LowWindowError::OutOfReach { .. })
        ));
        assert!(matches!(
            check_low_window(&map, &[], w(0x8001, 0x9000)),
            Err(LowWindowError::OutOfReach { .. })
        ));
        assert!(matches!(
            check_low_window(&[], &[], w(0x8000, 0x9000)),
            Err(LowWindowError::NotUsable { .. })
        ));
        // Two adjacent available entries cover the window together.
        let split = [e(0, 0xa000, MemoryType::Available), e(0xa000, 0x6000, MemoryType::Available)];
        assert!(check_low_window(&split, &[], w(0x8000, 0xc000)).is_ok());
        // A module the loader put inside the window must not be overwritten.
        let module = w(0xb800, 0x1_0000);
        assert_eq!(
            check_low_window(&split, &[w(0x10_0000, 0x20_0000), module], w(0x8000, 0xc000)),
            Err(LowWindowError::InUse { window: w(0x8000, 0xc000), range: module })
        );
        assert!(
            check_low_window(&split, &[w(0xc000, 0xd000)], w(0x8000, 0xc000)).is_ok(),
            "touching is not overlapping"
        );
    }
}
