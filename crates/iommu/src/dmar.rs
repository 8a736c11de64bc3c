//! The ACPI DMA Remapping Reporting table (DMAR, VT-d spec 8.1-8.3).
//!
//! Layout: the 36-byte ACPI header, host address width (byte 36), flags (byte 37), 10
//! reserved bytes, then remapping structures from byte 48, each `type: u16, length: u16`.
//! A DRHD (type 0) names one remapping unit's register base and the devices it serves:
//! either an explicit device-scope list or, with `INCLUDE_PCI_ALL`, every PCI device of its
//! segment not claimed by another unit. IOAPICs and HPETs are always listed explicitly, even
//! under an include-all unit (spec 8.3.1), which is where their source IDs come from.
//!
//! The parser never trusts a length: every structure and scope is bounds-checked, a
//! malformed one ends its iteration with an error, and nothing here can panic on any input
//! (the fuzz tests feed it random and mutated tables).

use crate::le::{acpi_table, le16, le64, HeaderError};

/// Offset of the first remapping structure.
pub const STRUCTURES_OFFSET: usize = 48;
const DRHD_SCOPES_OFFSET: usize = 16;
const SCOPE_PATH_OFFSET: usize = 6;

/// Remapping structure type of a DRHD.
pub const STRUCTURE_DRHD: u16 = 0;
/// DRHD flag bit 0: the unit covers every PCI device of its segment not listed elsewhere.
pub const DRHD_INCLUDE_PCI_ALL: u8 = 1 << 0;

/// Why a DMAR table (or part of one) was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmarError {
    /// Fewer bytes than the header and fixed fields.
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// The signature is not `DMAR`.
    BadSignature([u8; 4]),
    /// The header's length field is shorter than the fixed part or longer than the bytes.
    BadLength {
        /// Length the header declares.
        declared: u32,
        /// Bytes available.
        available: usize,
    },
    /// The bytes do not sum to zero.
    BadChecksum(u8),
    /// A remapping structure at `offset` has a length below 4 or past the table's end.
    MalformedStructure {
        /// Byte offset of the structure in the table.
        offset: usize,
    },
    /// A DRHD at `offset` is shorter than its 16 fixed bytes.
    ShortDrhd {
        /// Byte offset of the structure in the table.
        offset: usize,
    },
    /// A device scope has a length below 6, an odd path length or runs past its DRHD.
    MalformedScope {
        /// Byte offset of the scope inside its DRHD's scope area.
        offset: usize,
    },
}

/// The DMAR's global flags (byte 37).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmarFlags {
    /// Bit 0: the platform supports interrupt remapping.
    pub interrupt_remapping: bool,
    /// Bit 1: firmware asks the OS not to enable x2APIC (it may still for > 255 CPUs).
    pub x2apic_opt_out: bool,
    /// Bit 2: the platform opts in to DMA protection before hand-over.
    pub dma_control_opt_in: bool,
}

/// A validated DMAR table borrowed from its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Dmar<'a> {
    bytes: &'a [u8],
    /// Maximum DMA physical address width minus one (byte 36).
    pub host_address_width: u8,
    /// Global flags.
    pub flags: DmarFlags,
}

fn header_error(e: HeaderError) -> DmarError {
    match e {
        HeaderError::Truncated { len } => DmarError::Truncated { len },
        HeaderError::BadSignature(s) => DmarError::BadSignature(s),
        HeaderError::BadLength { declared, available } => {
            DmarError::BadLength { declared, available }
        }
        HeaderError::BadChecksum(sum) => DmarError::BadChecksum(sum),
    }
}

impl<'a> Dmar<'a> {
    /// Validates the header (signature, length, checksum) and reads the fixed fields. Bytes
    /// past the declared length are ignored.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DmarError> {
        let bytes = acpi_table(bytes, b"DMAR", STRUCTURES_OFFSET).map_err(header_error)?;
        let flags = bytes[37];
        Ok(Dmar {
            bytes,
            host_address_width: bytes[36],
            flags: DmarFlags {
                interrupt_remapping: flags & 1 != 0,
                x2apic_opt_out: flags & 2 != 0,
                dma_control_opt_in: flags & 4 != 0,
            },
        })
    }

    /// Every remapping structure in order; a malformed one is yielded as an error and ends
    /// the walk (its length cannot be trusted to find the next).
    pub fn structures(&self) -> Structures<'a> {
        Structures { bytes: self.bytes, offset: STRUCTURES_OFFSET, done: false }
    }

    /// The hardware units (DRHDs) that parsed, in table order.
    pub fn units(&self) -> impl Iterator<Item = Drhd<'a>> + 'a {
        self.structures().filter_map(|s| match s {
            Ok(Structure::Drhd(d)) => Some(d),
            _ => None,
        })
    }

    /// The first error in the structure list (and in each DRHD's scopes), if any.
    pub fn first_error(&self) -> Option<DmarError> {
        for s in self.structures() {
            match s {
                Err(e) => return Some(e),
                Ok(Structure::Drhd(d)) => {
                    if let Some(Err(e)) = d.scopes().find(Result::is_err) {
                        return Some(e);
                    }
                }
                Ok(Structure::Other { .. }) => {}
            }
        }
        None
    }

    /// The unit that remaps the IOAPIC with this MADT id, and the IOAPIC's scope entry.
    pub fn ioapic_unit(&self, ioapic_id: u8) -> Option<(Drhd<'a>, DeviceScope<'a>)> {
        self.units().find_map(|unit| {
            unit.scopes()
                .map_while(Result::ok)
                .find(|s| s.kind == ScopeKind::IoApic && s.enumeration_id == ioapic_id)
                .map(|s| (unit, s))
        })
    }

    /// The unit that remaps PCI function `sid` on `segment`: a unit listing it (as an
    /// endpoint, or below a listed bridge whose bus range `bridge_buses` reports), else the
    /// segment's include-all unit.
    pub fn unit_for_pci(
        &self,
        segment: u16,
        sid: SourceId,
        bridge_buses: impl Fn(SourceId) -> Option<(u8, u8)>,
    ) -> Option<Drhd<'a>> {
        let listed =
            self.units().filter(|u| u.segment == segment && !u.include_pci_all()).find(|u| {
                u.scopes().map_while(Result::ok).any(|s| match (s.kind, s.source_id()) {
                    (ScopeKind::PciEndpoint, Some(id)) => id == sid,
                    (ScopeKind::PciSubHierarchy, Some(bridge)) => {
                        bridge == sid
                            || bridge_buses(bridge)
                                .is_some_and(|(lo, hi)| (lo..=hi).contains(&sid.bus()))
                    }
                    _ => false,
                })
            });
        listed.or_else(|| self.units().find(|u| u.segment == segment && u.include_pci_all()))
    }
}

/// One remapping structure.
#[derive(Clone, Copy, Debug)]
pub enum Structure<'a> {
    /// A DMA-remapping hardware unit definition (type 0).
    Drhd(Drhd<'a>),
    /// Any other type (RMRR, ATSR, RHSA, ANDD, SATC, ...): not needed for interrupts.
    Other {
        /// Structure type.
        kind: u16,
        /// Structure length in bytes.
        length: u16,
    },
}

/// Iterator over the remapping structures of a [`Dmar`].
pub struct Structures<'a> {
    bytes: &'a [u8],
    offset: usize,
    done: bool,
}

impl<'a> Iterator for Structures<'a> {
    type Item = Result<Structure<'a>, DmarError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.offset >= self.bytes.len() {
            return None;
        }
        let at = self.offset;
        let (Some(kind), Some(length)) = (le16(self.bytes, at), le16(self.bytes, at + 2)) else {
            self.done = true;
            return Some(Err(DmarError::MalformedStructure { offset: at }));
        };
        let end = at + length as usize;
        if length < 4 || end > self.bytes.len() {
            self.done = true;
            return Some(Err(DmarError::MalformedStructure { offset: at }));
        }
        self.offset = end;
        let body = &self.bytes[at..end];
        if kind != STRUCTURE_DRHD {
            return Some(Ok(Structure::Other { kind, length }));
        }
        if body.len() < DRHD_SCOPES_OFFSET {
            return Some(Err(DmarError::ShortDrhd { offset: at }));
        }
        Some(Ok(Structure::Drhd(Drhd {
            flags: body[4],
            size: body[5],
            segment: u16::from_le_bytes([body[6], body[7]]),
            register_base: le64(body, 8).unwrap_or(0),
            scope_bytes: &body[DRHD_SCOPES_OFFSET..],
        })))
    }
}

/// One DMA-remapping hardware unit (DRHD, VT-d spec 8.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drhd<'a> {
    /// Flags (bit 0: `INCLUDE_PCI_ALL`).
    pub flags: u8,
    /// Register set size: 2^(bits 3:0) 4-KiB pages (0 on older tables: one page).
    pub size: u8,
    /// PCI segment the unit serves.
    pub segment: u16,
    /// Physical base of the unit's register set (page-aligned).
    pub register_base: u64,
    scope_bytes: &'a [u8],
}

impl<'a> Drhd<'a> {
    /// Whether the unit covers every PCI device of its segment not listed by another unit.
    pub fn include_pci_all(&self) -> bool {
        self.flags & DRHD_INCLUDE_PCI_ALL != 0
    }

    /// 4-KiB pages of the register set.
    pub fn register_pages(&self) -> u32 {
        1u32 << (self.size & 0xF)
    }

    /// The device scopes; a malformed scope is yielded as an error and ends the walk.
    pub fn scopes(&self) -> Scopes<'a> {
        Scopes { bytes: self.scope_bytes, offset: 0, done: false }
    }
}

/// What a device scope names (VT-d spec 8.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeKind {
    /// 1: a PCI endpoint.
    PciEndpoint,
    /// 2: a PCI bridge and everything below it.
    PciSubHierarchy,
    /// 3: an IOAPIC (enumeration id = its MADT IOAPIC id).
    IoApic,
    /// 4: an MSI-capable HPET block (enumeration id = its HPET number).
    Hpet,
    /// 5: an ACPI namespace device.
    AcpiNamespace,
    /// Anything else.
    Unknown(u8),
}

impl ScopeKind {
    fn from_raw(raw: u8) -> Self {
        match raw {
            1 => ScopeKind::PciEndpoint,
            2 => ScopeKind::PciSubHierarchy,
            3 => ScopeKind::IoApic,
            4 => ScopeKind::Hpet,
            5 => ScopeKind::AcpiNamespace,
            other => ScopeKind::Unknown(other),
        }
    }
}

/// A PCI requester id (bus << 8 | device << 3 | function): the source id an interrupt
/// request carries and an IRTE can require.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub u16);

impl SourceId {
    /// Builds one from its parts; `None` when device > 31 or function > 7.
    pub fn new(bus: u8, device: u8, function: u8) -> Option<Self> {
        (device < 32 && function < 8)
            .then_some(SourceId((bus as u16) << 8 | (device as u16) << 3 | function as u16))
    }

    /// Bus number.
    pub fn bus(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// Device number.
    pub fn device(self) -> u8 {
        ((self.0 >> 3) & 0x1F) as u8
    }

    /// Function number.
    pub fn function(self) -> u8 {
        (self.0 & 7) as u8
    }
}

/// One device-scope entry of a DRHD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceScope<'a> {
    /// What the entry names.
    pub kind: ScopeKind,
    /// IOAPIC id / HPET number / ACPI device number, by kind.
    pub enumeration_id: u8,
    /// Bus where the path starts.
    pub start_bus: u8,
    path: &'a [u8],
}

impl DeviceScope<'_> {
    /// The (device, function) hops from the start bus, bridge by bridge.
    pub fn hops(&self) -> impl Iterator<Item = (u8, u8)> + '_ {
        self.path.chunks_exact(2).map(|c| (c[0], c[1]))
    }

    /// The requester id when the path has exactly one hop (the device sits on the start
    /// bus); deeper paths need the bridges' secondary bus numbers from configuration space.
    pub fn source_id(&self) -> Option<SourceId> {
        match self.path {
            [device, function] => SourceId::new(self.start_bus, *device, *function),
            _ => None,
        }
    }
}

/// Iterator over a DRHD's device scopes.
pub struct Scopes<'a> {
    bytes: &'a [u8],
    offset: usize,
    done: bool,
}

impl<'a> Iterator for Scopes<'a> {
    type Item = Result<DeviceScope<'a>, DmarError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.offset >= self.bytes.len() {
            return None;
        }
        let at = self.offset;
        let rest = &self.bytes[at..];
        let length = rest.get(1).copied().unwrap_or(0) as usize;
        if length < SCOPE_PATH_OFFSET
            || length > rest.len()
            || (length - SCOPE_PATH_OFFSET) % 2 != 0
        {
            self.done = true;
            return Some(Err(DmarError::MalformedScope { offset: at }));
        }
        self.offset = at + length;
        Some(Ok(DeviceScope {
            kind: ScopeKind::from_raw(rest[0]),
            enumeration_id: rest[4],
            start_bus: rest[5],
            path: &rest[SCOPE_PATH_OFFSET..length],
        }))
    }
}

#[cfg(test)]
#[path = "dmar_tests.rs"]
mod tests;
