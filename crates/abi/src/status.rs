//! Status codes carried in `Completion::status` and returned (negated range) by `cap_enter`.

/// Outcome of an operation; negative values are errors. The numeric values are ABI.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// Unknown, released or stale capability id.
    BadCap = -1,
    /// Method number not known (or not valid for this object, see `WrongType`).
    BadMethod = -2,
    /// An argument is out of range, or an unused argument is not zero.
    BadArgument = -3,
    /// A user pointer range is misaligned, overflows, or leaves user space / is unmapped.
    BadAddress = -4,
    /// The object is already in use in a way that excludes this call (e.g. a second
    /// concurrent `InterruptWait`).
    Busy = -5,
    /// The capability is valid but names an object of another kind than the method needs.
    WrongType = -6,
    /// The kernel (or the capability table) ran out of room.
    NoMemory = -7,
    /// A deferred operation was abandoned because its capability was released.
    Cancelled = -8,
    /// The wait ended because the timeout elapsed.
    TimedOut = -9,
    /// The submission queue is full (user side), see `docs/abi.md`.
    RingFull = -10,
    /// The capability does not grant this operation (e.g. changing a kernel page's mapping,
    /// or making code writable).
    Denied = -11,
    /// The ring indices are inconsistent; the kernel consumed nothing.
    BadRing = -12,
    /// `Submission::flags` has bits the kernel does not understand.
    BadFlags = -13,
}

impl Status {
    /// Every status, in numeric order from `Ok` downwards; lets tests and tools enumerate them.
    pub const ALL: [Status; 14] = [
        Status::Ok,
        Status::BadCap,
        Status::BadMethod,
        Status::BadArgument,
        Status::BadAddress,
        Status::Busy,
        Status::WrongType,
        Status::NoMemory,
        Status::Cancelled,
        Status::TimedOut,
        Status::RingFull,
        Status::Denied,
        Status::BadRing,
        Status::BadFlags,
    ];

    /// Parses a raw status; `None` for values this ABI version does not define.
    pub const fn from_i32(raw: i32) -> Option<Status> {
        if raw > 0 || raw < -13 {
            return None;
        }
        Some(Status::ALL[(-raw) as usize])
    }

    /// The raw value written into a completion.
    pub const fn as_i32(self) -> i32 {
        self as i32
    }

    /// True for [`Status::Ok`].
    pub const fn is_ok(self) -> bool {
        matches!(self, Status::Ok)
    }

    /// `Ok(())` for [`Status::Ok`], `Err(self)` otherwise, so callers can use `?`.
    pub const fn into_result(self) -> Result<(), Status> {
        if self.is_ok() {
            Ok(())
        } else {
            Err(self)
        }
    }

    /// Stable lower-case name, used in logs and evidence lines.
    pub const fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::BadCap => "bad_cap",
            Status::BadMethod => "bad_method",
            Status::BadArgument => "bad_argument",
            Status::BadAddress => "bad_address",
            Status::Busy => "busy",
            Status::WrongType => "wrong_type",
            Status::NoMemory => "no_memory",
            Status::Cancelled => "cancelled",
            Status::TimedOut => "timed_out",
            Status::RingFull => "ring_full",
            Status::Denied => "denied",
            Status::BadRing => "bad_ring",
            Status::BadFlags => "bad_flags",
        }
    }
}

impl From<Status> for i32 {
    fn from(s: Status) -> i32 {
        s as i32
    }
}

impl core::fmt::Display for Status {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_range() {
        for (i, s) in Status::ALL.iter().enumerate() {
            assert_eq!(s.as_i32(), -(i as i32));
            assert_eq!(i32::from(*s), s.as_i32());
            assert_eq!(Status::from_i32(s.as_i32()), Some(*s));
            assert_eq!(s.is_ok(), i == 0);
            assert_eq!(s.into_result().is_ok(), i == 0);
        }
        for raw in [1, 2, -14, -100, i32::MIN, i32::MAX] {
            assert_eq!(Status::from_i32(raw), None);
        }
    }

    #[test]
    fn names_are_unique_and_lowercase() {
        for (i, a) in Status::ALL.iter().enumerate() {
            assert!(a.name().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            for b in &Status::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
        assert_eq!(format!("{}", Status::BadRing), "bad_ring");
    }

    #[test]
    fn documented_values() {
        assert_eq!(Status::BadCap as i32, -1);
        assert_eq!(Status::Busy as i32, -5);
        assert_eq!(Status::RingFull as i32, -10);
        assert_eq!(Status::BadFlags as i32, -13);
    }
}
