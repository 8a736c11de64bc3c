//! The read-only start-info page and the small encodings it (and some results) use.

use core::mem::{offset_of, size_of};

use crate::{CapId, ObjectKind, Status, PAGE_SIZE};

/// `StartInfo::magic`: the bytes `KEELSTRT` read as a little-endian `u64`, so a program can
/// tell a real start page from an unmapped or zeroed one.
pub const START_INFO_MAGIC: u64 = u64::from_le_bytes(*b"KEELSTRT");
/// Capacity of `StartInfo::caps`: room for a driver with an `Interrupt` grant per CPU of a
/// 64-CPU machine (one MSI-X entry per queue) and its other grants; the page holds 147.
pub const MAX_START_CAPS: usize = 128;
/// Capacity of `StartInfo::args`.
pub const START_ARGS_LEN: usize = 512;
/// Capacity of `StartInfo::program_name` (NUL padded).
pub const START_NAME_LEN: usize = 32;

/// One capability the kernel granted at process start.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapInfo {
    /// The id to put in `Submission::cap`.
    pub id: CapId,
    /// [`ObjectKind`] as `u32`.
    pub kind: u32,
    /// Kind-specific parameters, the same words the kind's info method returns:
    /// Interrupt = (vector, source), DeviceMemory = (size, pci bdf),
    /// IoPorts = (first port, count), Console/Timer = (0, 0).
    pub param: [u64; 2],
}

impl CapInfo {
    /// The typed kind; `None` if the kernel is newer than this ABI crate.
    pub const fn kind(&self) -> Option<ObjectKind> {
        ObjectKind::from_u32(self.kind)
    }
}

/// Contents of the read-only page at [`crate::START_INFO_VADDR`]: what the program was
/// given (capabilities, argument string, name), so it needs no system call to find out.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartInfo {
    /// [`START_INFO_MAGIC`].
    pub magic: u64,
    /// Valid entries in `caps` (readers clamp to [`MAX_START_CAPS`]).
    pub cap_count: u32,
    /// Valid bytes in `args` (readers clamp to [`START_ARGS_LEN`]).
    pub args_len: u32,
    /// Granted capabilities, in manifest order.
    pub caps: [CapInfo; MAX_START_CAPS],
    /// Argument string (UTF-8, conventionally space-separated `key=value` words).
    pub args: [u8; START_ARGS_LEN],
    /// Program name, NUL padded; the kernel prefixes the program's evidence keys with it.
    pub program_name: [u8; START_NAME_LEN],
    /// How to enter the kernel: [`ENTRY_SYSCALL`] or [`ENTRY_INT80`]. The kernel may switch a
    /// running process to `ENTRY_INT80` (this page is read-only to the process, not to it).
    pub entry_gate: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

/// Enter the kernel with `syscall`.
pub const ENTRY_SYSCALL: u32 = 0;
/// Enter the kernel with `int 0x80` ([`crate::SYSCALL_GATE_VECTOR`]): same registers, same
/// results. Used where the CPU's `syscall` does not reach ring 0 (seen under PVM, a KVM
/// backend without VMX/SVM); the kernel detects that on the first call and says so here.
pub const ENTRY_INT80: u32 = 1;

const _: () = {
    assert!(size_of::<CapInfo>() == 24);
    assert!(offset_of!(CapInfo, id) == 0);
    assert!(offset_of!(CapInfo, kind) == 4);
    assert!(offset_of!(CapInfo, param) == 8);
    assert!(offset_of!(StartInfo, magic) == 0);
    assert!(offset_of!(StartInfo, cap_count) == 8);
    assert!(offset_of!(StartInfo, args_len) == 12);
    assert!(offset_of!(StartInfo, caps) == 16);
    assert!(offset_of!(StartInfo, args) == 16 + 24 * MAX_START_CAPS);
    assert!(offset_of!(StartInfo, program_name) == 16 + 24 * MAX_START_CAPS + START_ARGS_LEN);
    assert!(
        offset_of!(StartInfo, entry_gate)
            == 16 + 24 * MAX_START_CAPS + START_ARGS_LEN + START_NAME_LEN
    );
    assert!(
        size_of::<StartInfo>() == 16 + 24 * MAX_START_CAPS + START_ARGS_LEN + START_NAME_LEN + 8
    );
    assert!(size_of::<StartInfo>() <= PAGE_SIZE as usize);
};

/// Longest valid UTF-8 prefix: hostile or truncated bytes degrade to a shorter string
/// instead of an error or a panic.
fn utf8_prefix(bytes: &[u8]) -> &str {
    match core::str::from_utf8(bytes) {
        Ok(s) => s,
        // `valid_up_to` is a char boundary, so the second parse cannot fail.
        Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
    }
}

impl StartInfo {
    /// An empty, valid start info (magic set, nothing granted); the kernel fills it in.
    pub const fn empty() -> StartInfo {
        StartInfo {
            magic: START_INFO_MAGIC,
            cap_count: 0,
            args_len: 0,
            caps: [CapInfo { id: CapId::NULL, kind: 0, param: [0; 2] }; MAX_START_CAPS],
            args: [0; START_ARGS_LEN],
            program_name: [0; START_NAME_LEN],
            entry_gate: ENTRY_SYSCALL,
            reserved: 0,
        }
    }

    /// True if `magic` is right.
    pub const fn is_valid(&self) -> bool {
        self.magic == START_INFO_MAGIC
    }

    /// The granted capabilities (`cap_count` clamped to the array).
    pub fn caps(&self) -> &[CapInfo] {
        let n = (self.cap_count as usize).min(MAX_START_CAPS);
        &self.caps[..n]
    }

    /// The `nth` (0-based) granted capability of `kind`, e.g. the first Console.
    pub fn find_cap(&self, kind: ObjectKind, nth: usize) -> Option<&CapInfo> {
        self.caps().iter().filter(|c| c.kind == kind as u32).nth(nth)
    }

    /// The argument string (its longest valid UTF-8 prefix).
    pub fn args_str(&self) -> &str {
        let n = (self.args_len as usize).min(START_ARGS_LEN);
        utf8_prefix(&self.args[..n])
    }

    /// Value of the first `key=value` word in the arguments; `Some("")` for a bare `key`.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args_str().split_ascii_whitespace().find_map(|w| match w.split_once('=') {
            Some((k, v)) if k == key => Some(v),
            None if w == key => Some(""),
            _ => None,
        })
    }

    /// The argument `key` parsed with [`parse_u64`]; `None` if absent or not a number.
    pub fn arg_u64(&self, key: &str) -> Option<u64> {
        self.arg(key).and_then(parse_u64)
    }

    /// The program name (up to the first NUL).
    pub fn program_name(&self) -> &str {
        let n = self.program_name.iter().position(|&b| b == 0).unwrap_or(START_NAME_LEN);
        utf8_prefix(&self.program_name[..n])
    }

    /// Kernel side: appends a capability; `NoMemory` when all slots are used.
    pub fn push_cap(&mut self, info: CapInfo) -> Result<(), Status> {
        let n = self.cap_count as usize;
        if n >= MAX_START_CAPS {
            return Err(Status::NoMemory);
        }
        self.caps[n] = info;
        self.cap_count += 1;
        Ok(())
    }

    /// Kernel side: sets the argument bytes; `BadArgument` if longer than the array.
    pub fn set_args(&mut self, args: &[u8]) -> Result<(), Status> {
        if args.len() > START_ARGS_LEN {
            return Err(Status::BadArgument);
        }
        self.args = [0; START_ARGS_LEN];
        self.args[..args.len()].copy_from_slice(args);
        self.args_len = args.len() as u32;
        Ok(())
    }

    /// Kernel side: sets the program name; `BadArgument` if longer than the array.
    pub fn set_program_name(&mut self, name: &[u8]) -> Result<(), Status> {
        if name.len() > START_NAME_LEN {
            return Err(Status::BadArgument);
        }
        self.program_name = [0; START_NAME_LEN];
        self.program_name[..name.len()].copy_from_slice(name);
        Ok(())
    }
}

/// Parses an argument number: decimal, or hexadecimal with a `0x`/`0X` prefix; `_`
/// separators are allowed. `None` for empty, malformed or overflowing input (never panics).
pub fn parse_u64(text: &str) -> Option<u64> {
    let (digits, radix) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    let mut value: u64 = 0;
    let mut any = false;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let d = c.to_digit(radix)? as u64;
        value = value.checked_mul(radix as u64)?.checked_add(d)?;
        any = true;
    }
    any.then_some(value)
}

/// PCI bus/device/function packed as `bus << 8 | device << 3 | function` (the config-space
/// "routing id"), as reported by `DeviceMemoryInfo` and [`InterruptSource`].
pub const fn pci_bdf(bus: u8, device: u8, function: u8) -> u16 {
    ((bus as u16) << 8) | (((device & 0x1f) as u16) << 3) | (function & 0x7) as u16
}

/// Where an interrupt comes from, as encoded in `InterruptInfo`'s `results[1]`:
/// bits 63..56 the source type, the low bits its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptSource {
    /// Type 0 (or a type this ABI version does not know).
    Unknown,
    /// Type 1: an IOAPIC global system interrupt; payload bits 31..0 = GSI.
    Gsi(u32),
    /// Type 2: PCI MSI; payload bits 15..0 = bdf.
    Msi {
        /// Requester, see [`pci_bdf`].
        bdf: u16,
    },
    /// Type 3: PCI MSI-X; payload bits 15..0 = bdf, bits 31..16 = table entry.
    MsiX {
        /// Requester, see [`pci_bdf`].
        bdf: u16,
        /// MSI-X table entry.
        entry: u16,
    },
    /// Type 4: raised by the kernel itself (e.g. a self-IPI used by tests).
    Software,
}

impl InterruptSource {
    /// Packs into the result word.
    pub const fn encode(self) -> u64 {
        match self {
            InterruptSource::Unknown => 0,
            InterruptSource::Gsi(gsi) => (1 << 56) | gsi as u64,
            InterruptSource::Msi { bdf } => (2 << 56) | bdf as u64,
            InterruptSource::MsiX { bdf, entry } => (3 << 56) | ((entry as u64) << 16) | bdf as u64,
            InterruptSource::Software => 4 << 56,
        }
    }

    /// Unpacks a result word; unknown types read as `Unknown`.
    pub const fn decode(raw: u64) -> InterruptSource {
        match raw >> 56 {
            1 => InterruptSource::Gsi(raw as u32),
            2 => InterruptSource::Msi { bdf: raw as u16 },
            3 => InterruptSource::MsiX { bdf: raw as u16, entry: (raw >> 16) as u16 },
            4 => InterruptSource::Software,
            _ => InterruptSource::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_read() {
        let mut s = StartInfo::empty();
        assert!(s.is_valid());
        assert!(s.caps().is_empty());
        assert_eq!(s.args_str(), "");
        assert_eq!(s.program_name(), "");
        s.set_program_name(b"hello").unwrap();
        s.set_args(b"mode=fast verbose n=3").unwrap();
        let con =
            |i| CapInfo { id: CapId::new(i, 1), kind: ObjectKind::Console as u32, param: [0; 2] };
        let tmr = CapInfo { id: CapId::new(1, 1), kind: ObjectKind::Timer as u32, param: [0; 2] };
        s.push_cap(con(0)).unwrap();
        s.push_cap(tmr).unwrap();
        s.push_cap(con(2)).unwrap();
        assert_eq!(s.program_name(), "hello");
        assert_eq!(s.args_str(), "mode=fast verbose n=3");
        assert_eq!(s.arg("mode"), Some("fast"));
        assert_eq!(s.arg("verbose"), Some(""));
        assert_eq!(s.arg("n"), Some("3"));
        assert_eq!(s.arg("missing"), None);
        assert_eq!(s.find_cap(ObjectKind::Console, 0).map(|c| c.id), Some(CapId::new(0, 1)));
        assert_eq!(s.find_cap(ObjectKind::Console, 1).map(|c| c.id), Some(CapId::new(2, 1)));
        assert_eq!(s.find_cap(ObjectKind::Console, 2), None);
        assert_eq!(
            s.find_cap(ObjectKind::Timer, 0).and_then(|c| c.kind()),
            Some(ObjectKind::Timer)
        );
        assert_eq!(s.find_cap(ObjectKind::Interrupt, 0), None);
    }

    #[test]
    fn limits_and_hostile_fields() {
        let mut s = StartInfo::empty();
        for i in 0..MAX_START_CAPS {
            s.push_cap(CapInfo { id: CapId::new(i as u16, 1), kind: 5, param: [0; 2] }).unwrap();
        }
        assert_eq!(s.push_cap(CapInfo::default()), Err(Status::NoMemory));
        assert_eq!(s.set_args(&[b'a'; START_ARGS_LEN + 1]), Err(Status::BadArgument));
        assert_eq!(s.set_args(&[b'a'; START_ARGS_LEN]), Ok(()));
        assert_eq!(s.set_program_name(&[b'x'; START_NAME_LEN + 1]), Err(Status::BadArgument));
        assert_eq!(s.set_program_name(&[b'x'; START_NAME_LEN]), Ok(()));
        assert_eq!(s.program_name().len(), START_NAME_LEN);
        // Counts beyond the arrays are clamped, not trusted.
        s.cap_count = u32::MAX;
        s.args_len = u32::MAX;
        assert_eq!(s.caps().len(), MAX_START_CAPS);
        assert_eq!(s.args_str().len(), START_ARGS_LEN);
        assert!(s.find_cap(ObjectKind::Timer, MAX_START_CAPS).is_none());
        // Invalid UTF-8 degrades to the valid prefix.
        s.set_args(b"ok=1 \xff\xfe tail").unwrap();
        assert_eq!(s.args_str(), "ok=1 ");
        s.program_name = [0xff; START_NAME_LEN];
        assert_eq!(s.program_name(), "");
        s.magic = 0;
        assert!(!s.is_valid());
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("1234"), Some(1234));
        assert_eq!(parse_u64("1_000_000"), Some(1_000_000));
        assert_eq!(parse_u64("0x10"), Some(16));
        assert_eq!(parse_u64("0XfF"), Some(255));
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64("0xffffffffffffffff"), Some(u64::MAX));
        for bad in [
            "",
            "0x",
            "_",
            "18446744073709551616",
            "0x1_0000_0000_0000_0000",
            "12a",
            "-1",
            "+1",
            " 1",
            "0x-1",
            "١",
        ] {
            assert_eq!(parse_u64(bad), None, "{bad:?}");
        }
        let mut s = StartInfo::empty();
        s.set_args(b"n=0x20 m=abc").unwrap();
        assert_eq!(s.arg_u64("n"), Some(32));
        assert_eq!(s.arg_u64("m"), None);
        assert_eq!(s.arg_u64("x"), None);
    }

    #[test]
    fn magic_bytes() {
        assert_eq!(&START_INFO_MAGIC.to_le_bytes(), b"KEELSTRT");
    }

    #[test]
    fn bdf_and_sources() {
        assert_eq!(pci_bdf(0, 0, 0), 0);
        assert_eq!(pci_bdf(0, 3, 0), 0x18);
        assert_eq!(pci_bdf(0xff, 31, 7), 0xffff);
        assert_eq!(pci_bdf(1, 0xff, 0xff), 0x1ff); // out-of-range fields are masked
        let all = [
            InterruptSource::Unknown,
            InterruptSource::Gsi(0),
            InterruptSource::Gsi(u32::MAX),
            InterruptSource::Msi { bdf: pci_bdf(0, 4, 0) },
            InterruptSource::MsiX { bdf: 0xffff, entry: 0xffff },
            InterruptSource::MsiX { bdf: 1, entry: 2 },
            InterruptSource::Software,
        ];
        for s in all {
            assert_eq!(InterruptSource::decode(s.encode()), s);
        }
        assert_eq!(InterruptSource::decode(u64::MAX), InterruptSource::Unknown);
        assert_eq!(InterruptSource::decode(5 << 56), InterruptSource::Unknown);
    }
}
