//! The generic methods: they act on a capability id itself, whatever object it names
//! (`Nop` on nothing at all), so the ring hands them the id instead of a looked-up object.

use keel_abi::{CapId, Status};

use super::{irqs_off, Caller, Object, Reply};
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

/// Executes a generic method on the caller's capability `cap`.
pub fn invoke(caller: &Caller, cap: CapId, method: Method) -> Result<Reply, Status> {
    let p = caller.process();
    match method {
        Method::Nop => Ok(Reply::Now([0, 0])),
        Method::Copy => {
            let copy = irqs_off(|| p.caps.lock().copy(cap))?;
            Ok(Reply::Now([copy.0 as u64, 0]))
        }
        Method::Release => process::release_cap(p, cap).map(|()| Reply::Now([0, 0])),
        Method::Identify => {
            let kind = irqs_off(|| p.caps.lock().get(cap).map(Object::kind))?;
            Ok(Reply::Now([kind as u64, 0]))
        }
    }
}
