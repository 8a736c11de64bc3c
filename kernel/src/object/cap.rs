//! The generic methods: they act on a capability id itself, whatever object it names
//! (`Nop` on nothing at all), so the ring hands them the id instead of a looked-up object.

use core::sync::atomic::{AtomicU64, Ordering};

use keel_abi::{CapId, Status};

use super::{Caller, Object, Reply};
use crate::task::process;

/// `Nop` and the `Cap*` methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Completes `Ok`; the capability is ignored.
    Nop,
    /// Duplicates the capability into a new slot.
    Copy,
    /// Releases the capability (an object no other slot holds is released with it).
    Release,
    /// Reports the kind of the object the capability names.
    Identify,
}

/// Capabilities `CapCopy` made and `CapRelease` released, copies refused because the table
/// was full, and the most slots one process's table held after a copy, since boot: the
/// endurance proofs' capability churn, counted where it happens.
pub static COPIES: AtomicU64 = AtomicU64::new(0);
pub static RELEASES: AtomicU64 = AtomicU64::new(0);
pub static COPIES_REFUSED_FULL: AtomicU64 = AtomicU64::new(0);
pub static TABLE_PEAK: AtomicU64 = AtomicU64::new(0);

/// Executes a generic method on the caller's capability `cap`.
pub fn invoke(caller: &Caller, cap: CapId, method: Method) -> Result<Reply, Status> {
    let p = caller.process();
    match method {
        Method::Nop => Ok(Reply::Now([0, 0])),
        Method::Copy => {
            let (copy, held) = {
                let mut caps = p.caps.lock();
                caps.copy(cap).map(|copy| (copy, caps.len()))
            }
            .inspect_err(|e| {
                if matches!(e, keel_cap::CapError::Full) {
                    COPIES_REFUSED_FULL.fetch_add(1, Ordering::Relaxed);
                }
            })?;
            COPIES.fetch_add(1, Ordering::Relaxed);
            TABLE_PEAK.fetch_max(held as u64, Ordering::Relaxed);
            Ok(Reply::Now([copy.0 as u64, 0]))
        }
        Method::Release => process::release_cap(p, cap).map(|()| {
            RELEASES.fetch_add(1, Ordering::Relaxed);
            Reply::Now([0, 0])
        }),
        Method::Identify => {
            let kind = p.caps.lock().get(cap).map(Object::kind)?;
            Ok(Reply::Now([kind as u64, 0]))
        }
    }
}
