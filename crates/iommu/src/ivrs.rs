//! The ACPI I/O Virtualization Reporting Structure (IVRS, AMD IOMMU spec 5.2).
//!
//! Layout: the 36-byte ACPI header, IVinfo (bytes 36..40), 8 reserved bytes, then blocks
//! from byte 48, each `type: u8, flags: u8, length: u16`. An IVHD (types 0x10, 0x11, 0x40)
//! describes one IOMMU: its PCI device id, register base, segment, feature summary (type
//! 0x10) or extended-feature register image (0x11, 0x40), then device entries naming the
//! requesters it serves. Firmware lists each IOMMU once per IVHD type it supports; the OS
//! uses the highest type it understands ([`Ivrs::preferred_units`]). IVMD blocks (memory
//! definitions, 0x20..0x22) are walked over.
//!
//! Device entries: types below 0x80 encode their own length in bits 7:6 (4 or 8 bytes), so
//! an unknown one is skipped by that length; 0xF0 (ACPI HID) carries its UID length at byte
//! 21. Any other type at 0x80 or above has no known length and ends the walk with an error.
//! Special entries (0x48) give the device id the IOAPIC's and HPET's interrupt requests
//! carry, which is the device table entry interrupt remapping looks up for them.
//!
//! As in [`crate::dmar`], every length is bounds-checked and nothing panics on any input.

use crate::le::{acpi_table, le16, le32, le64, HeaderError};

/// Offset of the first IVHD/IVMD block.
pub const BLOCKS_OFFSET: usize = 48;
const IVINFO_OFFSET: usize = 36;
/// Fixed bytes of a type-0x10 IVHD before its device entries.
pub const IVHD10_ENTRIES_OFFSET: usize = 24;
/// Fixed bytes of a type-0x11/0x40 IVHD before its device entries.
pub const IVHD11_ENTRIES_OFFSET: usize = 40;
/// Special-entry variety of an IOAPIC.
pub const SPECIAL_IOAPIC: u8 = 1;
/// Special-entry variety of an HPET.
pub const SPECIAL_HPET: u8 = 2;

/// Why an IVRS table (or part of one) was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IvrsError {
    /// Fewer bytes than the header and IVinfo.
    Truncated {
        /// Bytes available.
        len: usize,
    },
    /// The signature is not `IVRS`.
    BadSignature([u8; 4]),
    /// The header's length is shorter than the fixed part or longer than the bytes.
    BadLength {
        /// Length the header declares.
        declared: u32,
        /// Bytes available.
        available: usize,
    },
    /// The bytes do not sum to zero.
    BadChecksum(u8),
    /// A block at `offset` has a length below 4 or past the table's end.
    MalformedBlock {
        /// Byte offset of the block in the table.
        offset: usize,
    },
    /// An IVHD at `offset` is shorter than the fixed fields of its type.
    ShortIvhd {
        /// Byte offset of the block in the table.
        offset: usize,
        /// IVHD type.
        kind: u8,
    },
    /// A device entry runs past its IVHD, or its type has no known length.
    MalformedEntry {
        /// Byte offset of the entry inside its IVHD's entry area.
        offset: usize,
        /// Entry type.
        kind: u8,
    },
    /// A range-end entry without a range start, or a range start not closed by one.
    UnpairedRange {
        /// Byte offset of the entry inside its IVHD's entry area.
        offset: usize,
    },
}

/// IVinfo (bytes 36..40): what every IOMMU of the platform shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IvInfo(pub u32);

impl IvInfo {
    /// Bit 0: the IVHDs of type 0x11/0x40 carry an extended-feature register image.
    pub fn efr_supported(self) -> bool {
        self.0 & 1 != 0
    }
    /// Bits 7:5: guest virtual address size code.
    pub fn gva_size(self) -> u8 {
        ((self.0 >> 5) & 7) as u8
    }
    /// Bits 14:8: physical address bits the IOMMUs handle.
    pub fn pa_size(self) -> u8 {
        ((self.0 >> 8) & 0x7F) as u8
    }
    /// Bits 21:15: virtual address bits the IOMMUs handle.
    pub fn va_size(self) -> u8 {
        ((self.0 >> 15) & 0x7F) as u8
    }
    /// Bit 22: HyperTransport ATS address range reserved.
    pub fn ht_ats_reserved(self) -> bool {
        self.0 & (1 << 22) != 0
    }
}

/// An IOMMU's interrupt-related features as its IVHD reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// x2APIC (XT) support: 32-bit interrupt destinations.
    pub xt: bool,
    /// Guest virtual APIC (GA) support: the 128-bit IRTE format.
    pub ga: bool,
}

/// Bits of the extended feature register (AMD IOMMU spec 3.4.1), as an IVHD 0x11/0x40
/// image or the MMIO register at offset 0x30.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Efr(pub u64);

impl Efr {
    /// Bit 2, XTSup: x2APIC interrupt destinations.
    pub const XT: u64 = 1 << 2;
    /// Bit 7, GASup: guest virtual APIC, the 128-bit IRTE.
    pub const GA: u64 = 1 << 7;

    /// The interrupt features it reports.
    pub fn features(self) -> Features {
        Features { xt: self.0 & Self::XT != 0, ga: self.0 & Self::GA != 0 }
    }
}

/// Bits of a type-0x10 IVHD's "IOMMU feature reporting" word (the same ones Linux reads).
pub mod attr10 {
    /// Bit 0, XTSup.
    pub const XT: u32 = 1 << 0;
    /// Bit 6, GASup.
    pub const GA: u32 = 1 << 6;
}

/// A validated IVRS table borrowed from its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Ivrs<'a> {
    bytes: &'a [u8],
    /// The platform-wide IVinfo.
    pub info: IvInfo,
}

fn header_error(e: HeaderError) -> IvrsError {
    match e {
        HeaderError::Truncated { len } => IvrsError::Truncated { len },
        HeaderError::BadSignature(s) => IvrsError::BadSignature(s),
        HeaderError::BadLength { declared, available } => {
            IvrsError::BadLength { declared, available }
        }
        HeaderError::BadChecksum(sum) => IvrsError::BadChecksum(sum),
    }
}

impl<'a> Ivrs<'a> {
    /// Validates the header (signature, length, checksum) and reads IVinfo. Bytes past the
    /// declared length are ignored.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, IvrsError> {
        let bytes = acpi_table(bytes, b"IVRS", BLOCKS_OFFSET).map_err(header_error)?;
        let info = IvInfo(le32(bytes, IVINFO_OFFSET).unwrap_or(0));
        Ok(Ivrs { bytes, info })
    }

    /// Every block in order; a malformed one is yielded as an error and ends the walk.
    pub fn blocks(&self) -> Blocks<'a> {
        Blocks { bytes: self.bytes, offset: BLOCKS_OFFSET, done: false }
    }

    /// Every IVHD that parsed, of any type, in table order.
    pub fn units(&self) -> impl Iterator<Item = Ivhd<'a>> + 'a {
        self.blocks().filter_map(|b| match b {
            Ok(Block::Ivhd(h)) => Some(h),
            _ => None,
        })
    }

    /// One IVHD per IOMMU: of the IVHDs naming the same IOMMU (device id and segment), the
    /// one of the highest type this parser understands (0x40 > 0x11 > 0x10), as Linux does.
    pub fn preferred_units(&self) -> impl Iterator<Item = Ivhd<'a>> + 'a {
        let all = *self;
        self.units()
            .enumerate()
            .filter(move |(i, h)| {
                !all.units().enumerate().any(|(j, o)| {
                    j != *i
                        && o.same_iommu(h)
                        && (o.kind.rank() > h.kind.rank() || (o.kind == h.kind && j < *i))
                })
            })
            .map(|(_, h)| h)
    }

    /// The first error in the block list (and in each IVHD's entries), if any.
    pub fn first_error(&self) -> Option<IvrsError> {
        for b in self.blocks() {
            match b {
                Err(e) => return Some(e),
                Ok(Block::Ivhd(h)) => {
                    if let Some(e) = h.first_error() {
                        return Some(e);
                    }
                }
                Ok(Block::Other { .. }) => {}
            }
        }
        None
    }

    /// The preferred IVHD whose special entries name the IOAPIC with this MADT id, and the
    /// device id its interrupt requests carry.
    pub fn ioapic_device(&self, ioapic_id: u8) -> Option<(Ivhd<'a>, u16)> {
        self.special_device(SPECIAL_IOAPIC, ioapic_id)
    }

    /// As [`Ivrs::ioapic_device`], for the HPET with this number.
    pub fn hpet_device(&self, hpet_id: u8) -> Option<(Ivhd<'a>, u16)> {
        self.special_device(SPECIAL_HPET, hpet_id)
    }

    fn special_device(&self, variety: u8, handle: u8) -> Option<(Ivhd<'a>, u16)> {
        self.preferred_units().find_map(|unit| {
            unit.entries().map_while(Result::ok).find_map(|e| match e {
                DeviceEntry::Special { handle: h, device_id, variety: v, .. }
                    if v == variety && h == handle =>
                {
                    Some((unit, device_id))
                }
                _ => None,
            })
        })
    }
}

/// One IVRS block.
#[derive(Clone, Copy, Debug)]
pub enum Block<'a> {
    /// An I/O virtualization hardware definition (types 0x10, 0x11, 0x40).
    Ivhd(Ivhd<'a>),
    /// Anything else (IVMD 0x20..0x22, later IVHD types): walked over by its length.
    Other {
        /// Block type.
        kind: u8,
        /// Block length in bytes.
        length: u16,
    },
}

/// The IVHD types this parser reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IvhdType {
    /// 0x10: feature summary word, legacy device entries.
    Legacy10,
    /// 0x11: extended-feature register image.
    Efr11,
    /// 0x40: as 0x11, with ACPI HID device entries.
    Efr40,
}

impl IvhdType {
    fn from_raw(raw: u8) -> Option<Self> {
        match raw {
            0x10 => Some(IvhdType::Legacy10),
            0x11 => Some(IvhdType::Efr11),
            0x40 => Some(IvhdType::Efr40),
            _ => None,
        }
    }

    /// The type byte.
    pub fn raw(self) -> u8 {
        match self {
            IvhdType::Legacy10 => 0x10,
            IvhdType::Efr11 => 0x11,
            IvhdType::Efr40 => 0x40,
        }
    }

    fn rank(self) -> u8 {
        match self {
            IvhdType::Legacy10 => 0,
            IvhdType::Efr11 => 1,
            IvhdType::Efr40 => 2,
        }
    }

    fn entries_offset(self) -> usize {
        match self {
            IvhdType::Legacy10 => IVHD10_ENTRIES_OFFSET,
            IvhdType::Efr11 | IvhdType::Efr40 => IVHD11_ENTRIES_OFFSET,
        }
    }
}

/// Iterator over the blocks of an [`Ivrs`].
pub struct Blocks<'a> {
    bytes: &'a [u8],
    offset: usize,
    done: bool,
}

impl<'a> Iterator for Blocks<'a> {
    type Item = Result<Block<'a>, IvrsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.offset >= self.bytes.len() {
            return None;
        }
        let at = self.offset;
        let (Some(&kind), Some(length)) = (self.bytes.get(at), le16(self.bytes, at + 2)) else {
            self.done = true;
            return Some(Err(IvrsError::MalformedBlock { offset: at }));
        };
        let end = at + length as usize;
        if length < 4 || end > self.bytes.len() {
            self.done = true;
            return Some(Err(IvrsError::MalformedBlock { offset: at }));
        }
        self.offset = end;
        let body = &self.bytes[at..end];
        let Some(ty) = IvhdType::from_raw(kind) else {
            return Some(Ok(Block::Other { kind, length }));
        };
        if body.len() < ty.entries_offset() {
            return Some(Err(IvrsError::ShortIvhd { offset: at, kind }));
        }
        let word = le32(body, 20).unwrap_or(0);
        Some(Ok(Block::Ivhd(Ivhd {
            kind: ty,
            flags: body[1],
            device_id: le16(body, 4).unwrap_or(0),
            capability_offset: le16(body, 6).unwrap_or(0),
            base_address: le64(body, 8).unwrap_or(0),
            segment: le16(body, 16).unwrap_or(0),
            iommu_info: le16(body, 18).unwrap_or(0),
            feature_word: word,
            efr_image: (ty != IvhdType::Legacy10).then(|| le64(body, 24).unwrap_or(0)),
            efr2_image: (ty != IvhdType::Legacy10).then(|| le64(body, 32).unwrap_or(0)),
            entry_bytes: &body[ty.entries_offset()..],
        })))
    }
}

/// One IOMMU's hardware definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ivhd<'a> {
    /// Which IVHD type this is.
    pub kind: IvhdType,
    /// IVHD flags (coherent, IOTLB, isochrony, pass-posted-write ...).
    pub flags: u8,
    /// The IOMMU's own PCI device id (bus << 8 | devfn).
    pub device_id: u16,
    /// Offset of the IOMMU capability block in its configuration space.
    pub capability_offset: u16,
    /// Physical base of the IOMMU's MMIO registers.
    pub base_address: u64,
    /// PCI segment the IOMMU serves.
    pub segment: u16,
    /// IOMMU info: MSI number in bits 4:0, unit id in bits 12:8.
    pub iommu_info: u16,
    /// Type 0x10: the feature-reporting word; 0x11/0x40: the IOMMU attributes.
    pub feature_word: u32,
    /// Types 0x11/0x40: the extended-feature register image.
    pub efr_image: Option<u64>,
    /// Types 0x11/0x40: the second extended-feature register image (reserved on older tables).
    pub efr2_image: Option<u64>,
    entry_bytes: &'a [u8],
}

impl<'a> Ivhd<'a> {
    /// Interrupt features from the type's own source: the EFR image on 0x11/0x40, the
    /// feature-reporting word on 0x10.
    pub fn features(&self) -> Features {
        match self.efr_image {
            Some(efr) => Efr(efr).features(),
            None => Features {
                xt: self.feature_word & attr10::XT != 0,
                ga: self.feature_word & attr10::GA != 0,
            },
        }
    }

    fn same_iommu(&self, other: &Ivhd<'_>) -> bool {
        self.device_id == other.device_id && self.segment == other.segment
    }

    /// The device entries; a malformed one is yielded as an error and ends the walk.
    pub fn entries(&self) -> Entries<'a> {
        Entries { bytes: self.entry_bytes, offset: 0, done: false }
    }

    /// The first malformed entry, or a range without both ends.
    pub fn first_error(&self) -> Option<IvrsError> {
        let mut open: Option<usize> = None;
        let mut at = 0usize;
        for e in self.entries() {
            let e = match e {
                Err(e) => return Some(e),
                Ok(e) => e,
            };
            match e {
                DeviceEntry::RangeStart { .. } | DeviceEntry::AliasRangeStart { .. } => {
                    if let Some(offset) = open {
                        return Some(IvrsError::UnpairedRange { offset });
                    }
                    open = Some(at);
                }
                DeviceEntry::RangeEnd { .. } if open.take().is_none() => {
                    return Some(IvrsError::UnpairedRange { offset: at });
                }
                _ => {}
            }
            at += e.length();
        }
        open.map(|offset| IvrsError::UnpairedRange { offset })
    }

    /// The device ids this IOMMU serves as inclusive ranges with their DTE setting and
    /// alias (a select is a one-id range); stops at the first malformed entry.
    pub fn device_ranges(&self) -> impl Iterator<Item = DeviceRange> + 'a {
        let mut start: Option<(u16, u8, Option<u16>)> = None;
        self.entries().map_while(Result::ok).filter_map(move |e| match e {
            DeviceEntry::All { setting } => {
                Some(DeviceRange { first: 0, last: 0xFFFF, setting, alias: None })
            }
            DeviceEntry::Select { device_id, setting } => {
                Some(DeviceRange { first: device_id, last: device_id, setting, alias: None })
            }
            DeviceEntry::AliasSelect { device_id, setting, alias } => {
                Some(DeviceRange { first: device_id, last: device_id, setting, alias: Some(alias) })
            }
            DeviceEntry::RangeStart { device_id, setting } => {
                start = Some((device_id, setting, None));
                None
            }
            DeviceEntry::AliasRangeStart { device_id, setting, alias } => {
                start = Some((device_id, setting, Some(alias)));
                None
            }
            DeviceEntry::RangeEnd { device_id } => {
                let (first, setting, alias) = start.take()?;
                (first <= device_id).then_some(DeviceRange {
                    first,
                    last: device_id,
                    setting,
                    alias,
                })
            }
            _ => None,
        })
    }

    /// Whether a requester id is one this IOMMU lists (in a select, range or all entry, or
    /// as a special device).
    pub fn serves(&self, device_id: u16) -> bool {
        self.device_ranges().any(|r| (r.first..=r.last).contains(&device_id))
            || self
                .entries()
                .map_while(Result::ok)
                .any(|e| matches!(e, DeviceEntry::Special { device_id: d, .. } if d == device_id))
    }
}

/// A run of requester ids from an IVHD's entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceRange {
    /// First device id.
    pub first: u16,
    /// Last device id (inclusive).
    pub last: u16,
    /// DTE setting byte (INITPass, EIntPass, NMIPass, SysMgt, Lint0Pass, Lint1Pass).
    pub setting: u8,
    /// The device id whose DTE the range uses instead of its own, for alias entries.
    pub alias: Option<u16>,
}

/// One IVHD device entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceEntry<'a> {
    /// 0: four bytes of padding.
    Pad,
    /// 1: every device id of the segment.
    All {
        /// DTE setting.
        setting: u8,
    },
    /// 2: one device id.
    Select {
        /// Device id.
        device_id: u16,
        /// DTE setting.
        setting: u8,
    },
    /// 3: the first id of a range closed by the next [`DeviceEntry::RangeEnd`].
    RangeStart {
        /// Device id.
        device_id: u16,
        /// DTE setting.
        setting: u8,
    },
    /// 4: the last id of the open range.
    RangeEnd {
        /// Device id.
        device_id: u16,
    },
    /// 0x42: one device id whose requests carry `alias`.
    AliasSelect {
        /// Device id.
        device_id: u16,
        /// DTE setting.
        setting: u8,
        /// The requester id used.
        alias: u16,
    },
    /// 0x43: a range start whose requests carry `alias`.
    AliasRangeStart {
        /// Device id.
        device_id: u16,
        /// DTE setting.
        setting: u8,
        /// The requester id used.
        alias: u16,
    },
    /// 0x46 (select) / 0x47 (range start) with extended (ATS) settings.
    Extended {
        /// Entry type.
        kind: u8,
        /// Device id.
        device_id: u16,
        /// DTE setting.
        setting: u8,
        /// Extended setting word.
        extended: u32,
    },
    /// 0x48: an IOAPIC (variety 1) or HPET (variety 2) and the device id its interrupt
    /// requests carry.
    Special {
        /// IOAPIC id (as in the MADT) or HPET number.
        handle: u8,
        /// The requester id.
        device_id: u16,
        /// 1: IOAPIC, 2: HPET.
        variety: u8,
        /// DTE setting.
        setting: u8,
    },
    /// 0xF0: an ACPI namespace device by HID/CID/UID.
    AcpiHid {
        /// Device id.
        device_id: u16,
        /// Hardware id (8 bytes, ASCII).
        hid: &'a [u8],
        /// Unique id bytes.
        uid: &'a [u8],
    },
    /// Another type below 0x80, skipped by the length its type encodes.
    Unknown {
        /// Entry type.
        kind: u8,
    },
}

impl DeviceEntry<'_> {
    /// Bytes the entry occupies.
    pub fn length(&self) -> usize {
        match self {
            DeviceEntry::AcpiHid { uid, .. } => 22 + uid.len(),
            DeviceEntry::Unknown { kind } => fixed_entry_length(*kind).unwrap_or(4),
            DeviceEntry::AliasSelect { .. }
            | DeviceEntry::AliasRangeStart { .. }
            | DeviceEntry::Extended { .. }
            | DeviceEntry::Special { .. } => 8,
            _ => 4,
        }
    }
}

/// The length a type below 0x80 encodes in bits 7:6 (4 bytes for 0x00..0x3F, 8 for
/// 0x40..0x7F); `None` for the variable or undefined types at 0x80 and above.
pub fn fixed_entry_length(kind: u8) -> Option<usize> {
    (kind < 0x80).then(|| 4usize << (kind >> 6))
}

/// Type of the variable-length ACPI HID entry.
pub const ENTRY_ACPI_HID: u8 = 0xF0;

/// Iterator over an IVHD's device entries.
pub struct Entries<'a> {
    bytes: &'a [u8],
    offset: usize,
    done: bool,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<DeviceEntry<'a>, IvrsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.offset >= self.bytes.len() {
            return None;
        }
        let at = self.offset;
        let rest = &self.bytes[at..];
        let kind = rest[0];
        let length = match kind {
            ENTRY_ACPI_HID => rest.get(21).map(|uid_len| 22 + *uid_len as usize),
            k => fixed_entry_length(k),
        };
        let Some(length) = length.filter(|l| *l <= rest.len()) else {
            self.done = true;
            return Some(Err(IvrsError::MalformedEntry { offset: at, kind }));
        };
        self.offset = at + length;
        let e = &rest[..length];
        let device_id = le16(e, 1).unwrap_or(0);
        let setting = e[3];
        let entry = match kind {
            0 => DeviceEntry::Pad,
            1 => DeviceEntry::All { setting },
            2 => DeviceEntry::Select { device_id, setting },
            3 => DeviceEntry::RangeStart { device_id, setting },
            4 => DeviceEntry::RangeEnd { device_id },
            0x42 => DeviceEntry::AliasSelect { device_id, setting, alias: le16(e, 5).unwrap_or(0) },
            0x43 => {
                DeviceEntry::AliasRangeStart { device_id, setting, alias: le16(e, 5).unwrap_or(0) }
            }
            0x46 | 0x47 => DeviceEntry::Extended {
                kind,
                device_id,
                setting,
                extended: le32(e, 4).unwrap_or(0),
            },
            0x48 => DeviceEntry::Special {
                handle: e[4],
                device_id: le16(e, 5).unwrap_or(0),
                variety: e[7],
                setting,
            },
            ENTRY_ACPI_HID => DeviceEntry::AcpiHid { device_id, hid: &e[4..12], uid: &e[22..] },
            _ => DeviceEntry::Unknown { kind },
        };
        Some(Ok(entry))
    }
}

#[cfg(test)]
#[path = "ivrs_tests.rs"]
mod tests;
