//! Upcalls by registration: the framework never imports the kernel above it. The events its
//! trap entry raises (a system call, a ring-3 fault, a refused return to ring 3, leaving for
//! an exiting process, a tick) go to the kernel's [`TrapHandlers`], which the kernel binds
//! at compile time by instantiating the trap entry with them (static dispatch: these run on
//! every entry). The rest (the idle loop's "anything to run?", re-arming the one-shot timer,
//! preparing a CPU, the caller's address space) go to handlers the kernel registers once, at
//! boot, before it brings the other CPUs up ([`register`]): one indirect call each through a
//! `'static` table.

use spin::Once;

use crate::arch::x86_64::percpu::IrqGuard;
use crate::arch::x86_64::trap_entry::TrapFrame;

/// The kernel's handlers on the trap path, bound at compile time: the kernel instantiates the
/// trap entry with them (`fw::trap_entry!(Handlers)`), so each is a direct call (these run on
/// every system call and interrupt).
pub trait TrapHandlers {
    /// A system call from ring 3 (either entry path, interrupts off on entry): arguments and
    /// results in the frame.
    fn syscall(frame: &mut TrapFrame);
    /// A CPU exception taken in ring 3 (interrupts off).
    fn user_fault(frame: &mut TrapFrame);
    /// `trap_return` refused a ring-3 frame (non-canonical RIP or RSP): the thread ends.
    fn refuse_user_return(frame: &mut TrapFrame) -> !;
    /// Last step before any return to ring 3: a thread of an exiting process leaves here.
    fn leave_if_exiting();
    /// The timer tick on this CPU, after the framework's own tick work (`from_user`: the
    /// tick interrupted ring 3).
    fn tick(from_user: bool, cpu: &mut IrqGuard);
}

/// The kernel's other handlers (off the per-call path), registered once at boot.
pub struct Upcalls {
    /// Tickless: arm this CPU's one-shot deadline for what the scheduler owes it.
    pub rearm_timer: fn(cpu: &IrqGuard),
    /// IPI 49 arrived on this CPU (interrupts off, after its EOI): the kernel re-arms the
    /// one-shot timer for a thread queued here and leaves an address space it kept for an
    /// ending process.
    pub wake_ipi: fn(cpu: &IrqGuard),
    /// The idle loop (interrupts off): run a thread if one is queued here; true if it did.
    pub schedule_once: fn() -> bool,
    /// The idle loop found nothing to do: halt until an interrupt (tickless: with nothing
    /// armed but `wake_ns`, `oneshot::NONE` for nothing). Returns with interrupts on.
    pub idle_halt: fn(wake_ns: u64),
    /// A CPU's per-CPU state is being prepared (before it runs): the scheduler reserves its
    /// run queue (heap, outside interrupt context).
    pub prepare_cpu: fn(index: u32),
    /// The PML4 of the current thread's process, if a thread runs here (user copies check
    /// that the caller's space is the loaded one).
    pub current_space: fn() -> Option<u64>,
}

static UPCALLS: Once<Upcalls> = Once::new();

/// Registers the kernel's handlers. Once, on the boot CPU, before interrupts are enabled
/// and before any AP starts; a second registration is a bug and panics.
pub fn register(upcalls: Upcalls) {
    let mut fresh = false;
    UPCALLS.call_once(|| {
        fresh = true;
        upcalls
    });
    assert!(fresh, "upcalls are registered once");
}

/// The registered handlers. Every caller runs after registration (trap handlers run once
/// interrupts are on, the idle loop once APs start); an event before it is a boot-order bug.
#[inline]
pub(crate) fn get() -> &'static Upcalls {
    UPCALLS.get().expect("the kernel registers its upcalls before interrupts are enabled")
}
