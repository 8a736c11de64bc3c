//! The ACPI root system description pointer as Multiboot 2 hands it over: a copy of the
//! firmware's RSDP inside a tag (14 for ACPI 1.0, 15 for 2.0+), validated here so the
//! kernel never scans BIOS areas that UEFI machines do not have.

use super::{le32, le64, read, Multiboot2Error};
use crate::multiboot::{BootData, PhysRead};

/// Length of the ACPI 1.0 RSDP (signature through RSDT address).
const RSDP_V1_LEN: u32 = 20;
/// Length of the ACPI 2.0 RSDP (adds length, XSDT address, extended checksum).
const RSDP_V2_LEN: u32 = 36;

/// Which tag the RSDP came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsdpSource {
    /// Tag 14: ACPI 1.0 RSDP copy.
    OldTag,
    /// Tag 15: ACPI 2.0+ RSDP copy.
    NewTag,
}

/// A checksummed RSDP: where the root table is and which kind it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rsdp {
    /// The tag it came from.
    pub source: RsdpSource,
    /// The RSDP `revision` byte (0 = ACPI 1.0, 2 = ACPI 2.0+).
    pub revision: u8,
    /// Physical address of the RSDT (32-bit pointers).
    pub rsdt: u32,
    /// Physical address of the XSDT (64-bit pointers), revision 2+ only and non-zero.
    pub xsdt: Option<u64>,
}

impl Rsdp {
    /// The root table to walk and the revision to walk it with: the XSDT when
    /// there is one (revision ≥ 2), else the RSDT (revision 0 means 32-bit entries).
    pub fn root_table(&self) -> (u8, u64) {
        match self.xsdt {
            Some(x) => (self.revision, x),
            None => (0, self.rsdt as u64),
        }
    }

    pub(super) fn parse<M: PhysRead + ?Sized>(
        mem: &M,
        phys: u64,
        len: u32,
        source: RsdpSource,
    ) -> Result<Self, Multiboot2Error> {
        if len < RSDP_V1_LEN {
            return Err(Multiboot2Error::RsdpTruncated { len, needed: RSDP_V1_LEN });
        }
        let mut b = [0u8; RSDP_V2_LEN as usize];
        let avail = len.min(RSDP_V2_LEN) as usize;
        read(mem, phys, &mut b[..avail], BootData::InfoStructure)?;
        if &b[..8] != b"RSD PTR " {
            return Err(Multiboot2Error::RsdpBadSignature);
        }
        if sum(&b[..RSDP_V1_LEN as usize]) != 0 {
            return Err(Multiboot2Error::RsdpBadChecksum { extended: false });
        }
        let revision = b[15];
        let rsdt = le32(&b, 16);
        let mut xsdt = None;
        if revision >= 2 && source == RsdpSource::NewTag {
            if len < RSDP_V2_LEN {
                return Err(Multiboot2Error::RsdpTruncated { len, needed: RSDP_V2_LEN });
            }
            let length = le32(&b, 20);
            if !(RSDP_V2_LEN..=len).contains(&length) {
                return Err(Multiboot2Error::RsdpTruncated {
                    len,
                    needed: length.max(RSDP_V2_LEN),
                });
            }
            // The extended checksum covers `length` bytes; the tag holds them all.
            let mut total = sum(&b);
            let mut byte = [0u8; 1];
            for i in RSDP_V2_LEN..length {
                read(mem, phys + i as u64, &mut byte, BootData::InfoStructure)?;
                total = total.wrapping_add(byte[0]);
            }
            if total != 0 {
                return Err(Multiboot2Error::RsdpBadChecksum { extended: true });
            }
            xsdt = Some(le64(&b, 24)).filter(|&x| x != 0);
        }
        if rsdt == 0 && xsdt.is_none() {
            return Err(Multiboot2Error::RsdpNullRoot);
        }
        Ok(Self { source, revision, rsdt, xsdt })
    }
}

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}
