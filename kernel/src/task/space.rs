//! Which address space each CPU has loaded between threads (lazy address-space switching).
//!
//! Loading CR3 flushes the TLB's non-global entries (no PCIDs), and under emulation the whole
//! software TLB and its jump cache. A thread that blocks and is woken again on its own CPU —
//! a driver waiting for its device's interrupt, once per I/O — would pay two such flushes per
//! wait if its CPU loaded the kernel tables between: so a CPU whose thread leaves it without
//! exiting keeps that process's tables loaded (*kept*) and stays in the process's `resident`
//! set, which keeps it a target of every shootdown of that space. The next thread of the same
//! process then runs without a CR3 load; a thread of another process loads its own tables
//! and only then takes this CPU out of the kept process's set (the order `tlb.rs` needs).
//!
//! A process's tables are freed only once its `resident` set is empty ([`super::process::reap`]).
//! A CPU keeping an ending process gives it up in its IPI 49 handler ([`on_wake_ipi`]), which
//! the reaper sends to every CPU still in the set ([`ask_to_leave`]); the handler runs in the
//! scheduler context (no thread is current while a space is kept), where the kernel tables
//! can be loaded under any code, since every space maps the kernel half alike.

use alloc::sync::Arc;
use core::cell::Cell;
use core::sync::atomic::{AtomicU64, Ordering};

use fw::arch::x86_64::percpu::{self, IrqGuard};
use fw::arch::x86_64::tlb::CpuMask;
use fw::mm::paging;

use super::process::Process;

/// What one CPU's switches did with address spaces, counted where it happens.
pub struct SpaceCounts {
    /// Switch-ins that found their process's tables kept loaded (no CR3 load).
    pub kept: AtomicU64,
    /// Switch-ins that loaded CR3.
    pub loads: AtomicU64,
    /// Kept spaces of ending processes left in the IPI 49 handler.
    pub left_on_request: AtomicU64,
}

fw::cpu_local! {
    /// The process whose tables this CPU keeps loaded while no thread runs here.
    static KEPT: Cell<Option<Arc<Process>>> = Cell::new(None);
    /// This CPU's counts (read by the evidence).
    pub static COUNTS: SpaceCounts = SpaceCounts {
        kept: AtomicU64::new(0),
        loads: AtomicU64::new(0),
        left_on_request: AtomicU64::new(0),
    };
}

/// Switch-in of a thread of `process` (interrupts off): its tables are loaded unless this
/// CPU kept them; a different kept process is given up after the load.
pub fn enter(cpu: &IrqGuard, process: &Arc<Process>) {
    let me = percpu::current(cpu).index;
    let kept = KEPT.get(cpu).take();
    // Resident before the CR3 load (see `tlb.rs` for why the order matters).
    process.resident.insert(me);
    let counts = COUNTS.get(cpu);
    if percpu::local(cpu).loaded_space.get() == process.pml4() {
        counts.kept.fetch_add(1, Ordering::Relaxed);
    } else {
        // SAFETY: the PML4 shares the kernel half, so this code keeps running after the load.
        unsafe { paging::load_space(process.pml4()) };
        counts.loads.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(old) = kept {
        if !Arc::ptr_eq(&old, process) {
            give_up(cpu, old);
        }
    }
}

/// Switch-back from a thread of `process` that left the CPU (interrupts off): an exited
/// thread's or an ending process's tables are left at once, any other's are kept.
pub fn leave(cpu: &IrqGuard, process: &Arc<Process>, exited: bool) {
    if exited || ending(process) {
        paging::load_kernel_space();
        process.resident.remove(percpu::current(cpu).index);
    } else {
        KEPT.get(cpu).set(Some(process.clone()));
    }
}

/// IPI 49 on this CPU (the framework's upcall, interrupts off): a kept process that is
/// ending is left, so its reaper can free its tables; then the tickless timer is re-armed
/// for a thread another CPU may have queued here.
pub fn on_wake_ipi(cpu: &IrqGuard) {
    let kept = KEPT.get(cpu).take();
    match kept {
        Some(p) if ending(&p) => {
            if percpu::local(cpu).loaded_space.get() == p.pml4() {
                paging::load_kernel_space();
            }
            give_up(cpu, p);
            COUNTS.get(cpu).left_on_request.fetch_add(1, Ordering::Relaxed);
        }
        other => KEPT.get(cpu).set(other),
    }
    super::sched::rearm_timer(cpu);
}

/// Sends IPI 49 to every other CPU in `process`'s resident set: each that keeps it leaves.
pub fn ask_to_leave(process: &Process) {
    // The caller's `exited` store before the IPIs (an x2APIC ICR write is not ordered
    // after earlier stores): the handler must see the process ending.
    core::sync::atomic::fence(Ordering::SeqCst);
    let me = percpu::current_index();
    for cpu in process.resident.iter().filter(|&c| c != me) {
        super::sched::kick(cpu);
    }
}

/// Whether `process` is on its way out (its tables must not be kept).
fn ending(process: &Process) -> bool {
    process.is_exiting() || process.has_exited()
}

/// Takes this CPU out of `process`'s resident set (its tables are no longer loaded here) and
/// drops the reference. The reference goes first, and is never the last one: the registry
/// holds the process until [`super::process::reap`] has seen the set empty, which needs this
/// CPU's removal. So nothing is freed here, which matters in the IPI 49 handler: interrupt
/// context must not free memory, since the code it interrupted may hold the heap's lock.
fn give_up(cpu: &IrqGuard, process: Arc<Process>) {
    let resident: *const CpuMask = &process.resident;
    drop(process);
    // SAFETY: the process, and so its set, lives until the set is empty (see above), and
    // this CPU is still in it.
    unsafe { (*resident).remove(percpu::current(cpu).index) };
}
