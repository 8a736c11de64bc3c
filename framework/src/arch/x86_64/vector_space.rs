//! Device vectors, one space per CPU: the kernel's instance of `keel_vectors::Matrix`.
//!
//! A vector number only names an interrupt together with the CPU it arrives at, so every CPU
//! hands out the device range (`DEVICE_VECTOR_BASE..=DEVICE_VECTOR_LAST`) on its own, and the
//! dispatcher finds a device vector's owner by (current CPU, vector). Two kinds of vector
//! share the range:
//!
//! - **system vectors** (`ioapic::allocate_vector`: the AMD-Vi event log, the scenarios' own
//!   handlers, and the system-call gate) are reserved on every CPU, taken from the top of the
//!   range down, and dispatched through `ioapic`'s per-vector handler table;
//! - **per-CPU vectors** (`Interrupt` sources) are allocated on one CPU, from the bottom up,
//!   and dispatched to the handler registered with [`set_owner_handler`] with their
//!   [`Owner`].
//!
//! The matrix is created at the first per-CPU request (after bring-up: the loader grants
//! interrupts once every CPU is online), sized to the CPUs set up then; system vectors
//! reserved before that are carried into it.
//!
//! The matrix lives under one lock, but nothing on the interrupt path takes it: each change
//! of an owner is copied, under the lock, into a table of atomics ([`OwnerTable`]) that the
//! dispatcher reads without one, and the way into an idle halt looks at the retired slots
//! only when some are taken ([`RETIRED_WAITING`]). With more vCPUs than host CPUs a lock
//! holder can be descheduled for a host time slice; every other CPU's interrupt would spin
//! behind it.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use keel_vectors::{AllocError, Matrix, Owner, Placement};
use spin::Once;

use super::eoi::InService;
use super::percpu;
use super::trap_entry::{DEVICE_VECTOR_BASE, DEVICE_VECTOR_LAST};
use crate::sync::IrqSafeMutex;

/// The handler of per-CPU vectors: runs with interrupts off on the CPU that took `vector`.
pub type OwnerHandler = fn(owner: Owner, vector: u8, InService);

/// Old vectors of moved sources waiting for their CPU to finish what it accepted on them.
const RETIRED_SLOTS: usize = 64;

struct Space {
    /// Vectors reserved on every CPU (bit per vector number).
    system: [bool; 256],
    matrix: Option<Matrix>,
    /// `(cpu, vector)` still owned by a source that moved away: released by that CPU itself
    /// ([`drain_retired`]) once its LAPIC holds nothing on the vector.
    retired: [Option<(u32, u8)>; RETIRED_SLOTS],
}

static SPACE: IrqSafeMutex<Space> =
    IrqSafeMutex::new(Space { system: [false; 256], matrix: None, retired: [None; RETIRED_SLOTS] });
static OWNER_HANDLER: Once<OwnerHandler> = Once::new();
/// The matrix's owners as the dispatcher reads them (created with the matrix).
static OWNERS: Once<OwnerTable> = Once::new();
/// Retired slots taken (changed under the lock; read without it on the way into idle).
static RETIRED_WAITING: AtomicU32 = AtomicU32::new(0);

/// Device vectors per CPU.
const DEVICE_VECTORS: usize = (DEVICE_VECTOR_LAST - DEVICE_VECTOR_BASE) as usize + 1;
/// An [`OwnerTable`] entry with no owner.
const NO_OWNER: u32 = u32::MAX;

/// The owner of every (CPU, device vector), one row per CPU: written only under the lock,
/// right after the matrix changed; read by [`dispatch`] without it.
struct OwnerTable(Box<[AtomicU32]>);

impl OwnerTable {
    fn new(cpus: u32) -> OwnerTable {
        let entries = cpus as usize * DEVICE_VECTORS;
        OwnerTable((0..entries).map(|_| AtomicU32::new(NO_OWNER)).collect::<Vec<_>>().into())
    }

    fn entry(&self, cpu: u32, vector: u8) -> Option<&AtomicU32> {
        let column = vector.checked_sub(DEVICE_VECTOR_BASE)? as usize;
        if column >= DEVICE_VECTORS {
            return None;
        }
        self.0.get(cpu as usize * DEVICE_VECTORS + column)
    }

    fn get(&self, cpu: u32, vector: u8) -> Option<Owner> {
        let owner = self.entry(cpu, vector)?.load(Ordering::Acquire);
        (owner != NO_OWNER).then_some(Owner(owner))
    }

    /// Copies the matrix's owner of (`cpu`, `vector`).
    fn publish(&self, matrix: &Matrix, cpu: u32, vector: u8) {
        if let Some(entry) = self.entry(cpu, vector) {
            let owner = matrix.owner(cpu, vector).map_or(NO_OWNER, |o| o.0);
            entry.store(owner, Ordering::Release);
        }
    }
}

/// Per-CPU vectors that arrived with no owner on the CPU that took them.
pub static UNOWNED_DELIVERIES: AtomicU64 = AtomicU64::new(0);
/// Retired vectors released by their CPU, and drain passes that found one still accepted
/// (IRR or ISR set: an interrupt that arrived on the old route before the switch).
pub static RETIRED_RELEASED: AtomicU64 = AtomicU64::new(0);
pub static RETIRED_STILL_ACCEPTED: AtomicU64 = AtomicU64::new(0);
/// Retired vectors taken back by their owner before release.
pub static RECLAIMED: AtomicU64 = AtomicU64::new(0);

fn with_space<R>(f: impl FnOnce(&mut Space) -> R) -> R {
    f(&mut SPACE.lock())
}

impl Space {
    /// The matrix, created on first use with every CPU set up so far.
    fn matrix(&mut self) -> &mut Matrix {
        let system = &self.system;
        self.matrix.get_or_insert_with(|| {
            let cpus = percpu::all().count().max(1) as u32;
            let mut m = Matrix::new(cpus, DEVICE_VECTOR_BASE..=DEVICE_VECTOR_LAST)
                .expect("device vector range is not empty");
            m.reserve_system(keel_abi::SYSCALL_GATE_VECTOR).expect("gate reserved once");
            for v in DEVICE_VECTOR_BASE..=DEVICE_VECTOR_LAST {
                if system[v as usize] && v != keel_abi::SYSCALL_GATE_VECTOR {
                    m.reserve_system(v).expect("no per-CPU vector exists yet");
                }
            }
            for cpu in percpu::all() {
                let _ = m.set_online(cpu.index, cpu.online.load(Ordering::Acquire));
            }
            OWNERS.call_once(|| OwnerTable::new(cpus));
            m
        })
    }

    /// Runs `change` on the matrix, then publishes the owner of (`cpu`, `vector`) of its
    /// result (`Ok`) for the dispatcher.
    fn change<T>(
        &mut self,
        change: impl FnOnce(&mut Matrix) -> Result<T, AllocError>,
        placed: impl Fn(&T) -> (u32, u8),
    ) -> Result<T, AllocError> {
        let m = self.matrix();
        let result = change(m);
        if let (Ok(value), Some(table)) = (&result, OWNERS.get()) {
            let (cpu, vector) = placed(value);
            table.publish(m, cpu, vector);
        }
        result
    }
}

/// Reserves a vector on every CPU for a kernel handler: the highest one no CPU holds.
pub fn reserve_system() -> Option<u8> {
    with_space(|s| {
        for v in (DEVICE_VECTOR_BASE..=DEVICE_VECTOR_LAST).rev() {
            if s.system[v as usize] || v == keel_abi::SYSCALL_GATE_VECTOR {
                continue;
            }
            if let Some(m) = s.matrix.as_mut() {
                if m.reserve_system(v).is_err() {
                    continue;
                }
            }
            s.system[v as usize] = true;
            return Some(v);
        }
        None
    })
}

/// Sets the handler of every per-CPU vector (once).
pub fn set_owner_handler(handler: OwnerHandler) {
    OWNER_HANDLER.call_once(|| handler);
}

/// Where a per-CPU vector was placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    pub cpu: u32,
    pub vector: u8,
    /// The requested CPU had no free vector (or was offline): another one was chosen.
    pub elsewhere: bool,
}

/// Allocates a vector for `owner` on `cpu`, or, when that CPU is full or offline, on the
/// least-loaded CPU of `fallback`.
pub fn allocate(cpu: u32, fallback: &[u32], owner: Owner) -> Result<Placed, AllocError> {
    with_space(|s| {
        s.change(
            |m| match m.allocate(Placement::Cpu(cpu), owner) {
                Ok((cpu, vector)) => Ok(Placed { cpu, vector, elsewhere: false }),
                Err(AllocError::CpuFull | AllocError::CpuOffline | AllocError::NoSuchCpu) => m
                    .allocate(Placement::LeastLoaded(fallback), owner)
                    .map(|(cpu, vector)| Placed { cpu, vector, elsewhere: true }),
                Err(e) => Err(e),
            },
            |p| (p.cpu, p.vector),
        )
    })
}

/// Allocates exactly `vector` on `cpu` for `owner`.
pub fn allocate_at(cpu: u32, vector: u8, owner: Owner) -> Result<(), AllocError> {
    with_space(|s| s.change(|m| m.allocate_at(cpu, vector, owner), |_| (cpu, vector)))
}

/// Hands `vector` of `cpu`, which a source no longer routes to, to that CPU for release: it
/// stays owned (an interrupt the CPU accepted before the switch still finds its handler)
/// until [`drain_retired`] on `cpu` sees the LAPIC hold nothing on it. `false` (nothing
/// recorded) when every slot is taken.
pub fn retire(cpu: u32, vector: u8) -> bool {
    with_space(|s| match s.retired.iter_mut().find(|slot| slot.is_none()) {
        Some(slot) => {
            *slot = Some((cpu, vector));
            RETIRED_WAITING.fetch_add(1, Ordering::AcqRel);
            true
        }
        None => false,
    })
}

/// Takes back a retired `vector` of `cpu` for its `owner` (a source moving back before the
/// CPU released it): the vector never left the owner, so it is simply routed to again.
pub fn reclaim(cpu: u32, vector: u8, owner: Owner) -> bool {
    with_space(|s| {
        let Space { retired, matrix, .. } = s;
        let owned = matrix.as_ref().and_then(|m| m.owner(cpu, vector)) == Some(owner);
        match retired.iter_mut().find(|slot| **slot == Some((cpu, vector))) {
            Some(slot) if owned => {
                *slot = None;
                RETIRED_WAITING.fetch_sub(1, Ordering::AcqRel);
                RECLAIMED.fetch_add(1, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    })
}

/// Whether a retirement slot is free (checked before a source moves).
pub fn can_retire() -> bool {
    with_space(|s| s.retired.iter().any(Option::is_none))
}

/// Retired vectors not released yet.
#[cfg(feature = "scenarios")]
pub fn retired_pending() -> u64 {
    with_space(|s| s.retired.iter().flatten().count() as u64)
}

/// On CPU `cpu` with interrupts off (the tick): releases each of its retired vectors whose
/// IRR and ISR bits are clear. A set bit is an interrupt accepted on the old route and not
/// yet handled; its handler runs once interrupts are on again, and a later pass releases.
pub fn drain_retired(cpu: u32) {
    // Nothing retired (the usual case): no lock. A slot taken after this load comes with
    // an IPI 49 to its CPU (see `retire`'s callers), whose next pass sees it.
    if RETIRED_WAITING.load(Ordering::Acquire) == 0 {
        return;
    }
    with_space(|s| {
        let Space { retired, matrix, .. } = s;
        for slot in retired.iter_mut() {
            let Some((c, vector)) = *slot else { continue };
            if c != cpu {
                continue;
            }
            if super::lapic::accepted_not_done(vector) {
                RETIRED_STILL_ACCEPTED.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if let Some(m) = matrix.as_mut() {
                let _ = m.release(cpu, vector);
                if let Some(table) = OWNERS.get() {
                    table.publish(m, cpu, vector);
                }
            }
            *slot = None;
            RETIRED_WAITING.fetch_sub(1, Ordering::AcqRel);
            RETIRED_RELEASED.fetch_add(1, Ordering::Relaxed);
        }
    })
}

/// Returns `vector` on `cpu` to that CPU's free pool.
pub fn release(cpu: u32, vector: u8) -> Result<Owner, AllocError> {
    with_space(|s| s.change(|m| m.release(cpu, vector), |_| (cpu, vector)))
}

/// Who owns `vector` on `cpu`, read from the matrix (`None` before it exists).
pub fn owner(cpu: u32, vector: u8) -> Option<Owner> {
    with_space(|s| s.matrix.as_ref()?.owner(cpu, vector))
}

/// Per-CPU vectors allocated on `cpu`, read from the matrix's count (`None` before the
/// matrix exists or for an unknown CPU).
pub fn allocated_on(cpu: u32) -> Option<u32> {
    with_space(|s| s.matrix.as_ref()?.allocated_on(cpu))
}

/// Per-CPU vectors `cpu` can still hand out (`None` as for [`allocated_on`]).
pub fn available_on(cpu: u32) -> Option<u32> {
    with_space(|s| s.matrix.as_ref()?.available_on(cpu))
}

/// Dispatches a device-range vector that is not a system vector: to its owner on `cpu` (the
/// CPU that took it), or EOI'd and counted when that CPU has none. The owner is read from
/// the owner table, without the lock.
pub fn dispatch(cpu: u32, vector: u8, token: InService) {
    let owner = OWNERS.get().and_then(|t| t.get(cpu, vector));
    match (owner, OWNER_HANDLER.get()) {
        (Some(owner), Some(handler)) => handler(owner, vector, token),
        _ => {
            UNOWNED_DELIVERIES.fetch_add(1, Ordering::Relaxed);
            log::warn!("vectors: interrupt on unowned vector {vector:#x} of cpu{cpu}");
            token.eoi();
        }
    }
}
