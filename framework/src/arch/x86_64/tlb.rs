//! TLB shootdown over IPIs.
//!
//! Each address space tracks the CPUs where it is *resident* (its CR3 loaded: set before the
//! load, cleared only after another CR3 was loaded; a CPU that keeps the space loaded while
//! idle stays resident). To unmap or protect pages, the
//! caller first changes the page tables, then — after a full fence — reads the resident mask
//! (a word at a time, each word once), queues one request on every other resident CPU and
//! interrupts them on [`TLB_VECTOR`] (in x2APIC mode several targets of one cluster share one
//! logical IPI; otherwise, and for a lone target, each gets a physical one), flushes its own
//! TLB while those are in flight, and waits for every acknowledgement before freeing any
//! frame.
//!
//! Ordering argument: a CPU that is not in the mask when it is read sets its bit (SeqCst)
//! only after that read, and loads CR3 only after setting its bit, so it loads CR3 after the
//! page-table update and cannot cache the old translation (no PCIDs: a CR3 load flushes every
//! non-global entry). A CPU in the mask is flushed and acknowledges before the frames are
//! freed, so no CPU can reach a freed frame through a stale entry. A CPU that leaves the
//! space mid-shootdown still acknowledges (its flush is harmless). Requests aimed at the
//! waiter meanwhile (two CPUs shooting at each other) are served: by the IPI when it waits
//! with interrupts on, by the wait loop itself when it waits with them off.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use keel_apic::{ApicId, IcrError, Ipi, LapicMode, X2ApicCluster};
use x86_64::registers::control::Cr3;

use super::eoi::InService;
use super::lapic;
use super::percpu::{self, IrqGuard};

/// Shootdown IPIs.
pub const TLB_VECTOR: u8 = 50;
pub use keel_shootdown::{flush_plan, CpuMask, CpuSet, FlushPlan, FLUSH_CEILING_PAGES};
use keel_shootdown::{IpiGroup, IpiGrouper, SlotInbox};

/// One invalidation, on the shooter's stack until every target acknowledged.
pub struct Request {
    pml4: u64,
    /// The shooter's own page list (empty for a full flush): it stays alive and unchanged
    /// until `pending` reaches zero, because the shooter waits for that before returning.
    pages: *const u64,
    count: usize,
    full: bool,
    pending: AtomicU32,
}

impl Request {
    fn pages(&self) -> &[u64] {
        // SAFETY: `pages`/`count` describe the shooter's slice, alive until every target
        // acknowledged (see the field); handlers read it only before acknowledging.
        unsafe { core::slice::from_raw_parts(self.pages, self.count) }
    }
}

/// Requests queued for one CPU ([`SlotInbox`]: a shooter claims a slot with one
/// compare-exchange and publishes it with one `fetch_or`; the handler takes each ready slot
/// with one swap; a withdraw claims only a slot that still names its own request). No lock,
/// so no interrupt masking on either side: a shooter interrupted (even by a handler that
/// shoots down itself) holds nothing another CPU waits for.
pub struct Inbox {
    /// Request addresses: unique while queued, since a request lives on its shooter's stack
    /// until every target acknowledged or had it withdrawn.
    slots: SlotInbox,
    /// Shootdown IPIs this CPU handled, and requests it served.
    pub ipis: AtomicU64,
    pub requests: AtomicU64,
    /// Shootdowns this CPU started, those that interrupted no other CPU, and the ICR writes
    /// they took (summed by [`shootdowns`], [`shootdowns_local`] and [`ipis_sent`]).
    started: AtomicU64,
    started_local: AtomicU64,
    icr_writes: AtomicU64,
}

impl Inbox {
    /// Empty.
    pub const fn new() -> Inbox {
        Inbox {
            slots: SlotInbox::new(),
            ipis: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            started: AtomicU64::new(0),
            started_local: AtomicU64::new(0),
            icr_writes: AtomicU64::new(0),
        }
    }

    /// Queues `req`; false if every slot is taken.
    fn push(&self, req: &Request) -> bool {
        self.slots.push(req as *const Request as usize)
    }

    /// Takes every published request, freeing their slots.
    fn take(&self, mut serve: impl FnMut(&Request)) {
        self.slots.take(|ptr| {
            // SAFETY: a shooter keeps its request alive until `pending` reaches zero, which
            // needs this CPU's acknowledgement (in `serve`) first, or until it withdrew it,
            // which the slot's swap just made impossible.
            serve(unsafe { &*(ptr as *const Request) })
        });
    }

    /// Takes `req` back if the handler has not taken it yet; true if it did. The claim
    /// verifies the slot still names `req`, so a later request reusing the slot is never
    /// taken (in the scenarios build a proof's hook runs between locating and claiming).
    fn withdraw(&self, req: &Request) -> bool {
        let ptr = req as *const Request as usize;
        #[cfg(feature = "scenarios")]
        return self.slots.withdraw_with(ptr, window::run_withdraw_hook);
        #[cfg(not(feature = "scenarios"))]
        self.slots.withdraw(ptr)
    }

    /// Requests published and not yet taken.
    fn waiting(&self) -> usize {
        self.slots.waiting()
    }
}

impl Default for Inbox {
    fn default() -> Self {
        Self::new()
    }
}

/// Shootdowns started on all CPUs.
pub fn shootdowns() -> u64 {
    percpu::all().map(|c| c.tlb.started.load(Ordering::Relaxed)).sum()
}

/// Shootdowns on all CPUs that interrupted no other CPU (the space resident here alone, or
/// nowhere): they flush this CPU only.
pub fn shootdowns_local() -> u64 {
    percpu::all().map(|c| c.tlb.started_local.load(Ordering::Relaxed)).sum()
}

/// Shootdown ICR writes on all CPUs.
pub fn ipis_sent() -> u64 {
    percpu::all().map(|c| c.tlb.icr_writes.load(Ordering::Relaxed)).sum()
}

/// Adds to a counter that only this CPU writes, from one context that cannot nest into
/// itself (shootdowns start in system calls, never in interrupt handlers; the vector-50
/// handler runs with interrupts off): a load and a store instead of a locked add.
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Ordering::Relaxed) + by, Ordering::Relaxed);
}

/// Resident CPUs (other than the shooter) of the most recent shootdown, as a bit mask of the
/// first 64 CPUs (evidence).
pub static LAST_TARGETS: AtomicU64 = AtomicU64::new(0);
/// ICR writes the last shootdown needed (one per cluster in x2APIC mode).
pub static LAST_ICR_WRITES: AtomicU64 = AtomicU64::new(0);

/// Invalidates `req` on this CPU, whose loaded space is `loaded`.
fn flush(req: &Request, loaded: u64) {
    if loaded != req.pml4 {
        return; // not loaded here: the switch away already flushed it
    }
    match (req.full, req.count) {
        (true, _) => {
            let (frame, flags) = Cr3::read();
            // SAFETY: reloading the current CR3 only flushes non-global TLB entries.
            unsafe { Cr3::write(frame, flags) };
        }
        (false, _) => {
            for &va in req.pages() {
                x86_64::instructions::tlb::flush(x86_64::VirtAddr::new(va));
            }
        }
    }
}

/// Vector 50: serve every queued request, acknowledge each.
pub fn shootdown_interrupt(token: InService, cpu: &IrqGuard) {
    serve_inbox(cpu);
    // Counted after the acknowledgements: the shooters wait for those, not for this. One
    // writer, this handler, which interrupts cannot nest into (an interrupt gate).
    bump(&percpu::current(cpu).tlb.ipis, 1);
    token.eoi();
}

/// Serves every request queued for this CPU (from its IPI, or from a shooter's own wait with
/// interrupts off; the two cannot interleave on one CPU).
fn serve_inbox(cpu: &IrqGuard) {
    let me = percpu::current(cpu);
    let loaded = percpu::local(cpu).loaded_space.get();
    let mut served = 0;
    me.tlb.take(|req| {
        flush(req, loaded);
        // The acknowledgement first: the shooter is waiting for it, the counter is not.
        req.pending.fetch_sub(1, Ordering::AcqRel);
        served += 1;
    });
    if served > 0 {
        bump(&me.tlb.requests, served);
    }
}

/// CPUs a shootdown could not interrupt (no IPI could be sent to them): their TLBs may still
/// hold the old translations, so the caller must not free the frames behind them.
#[derive(Debug)]
#[must_use]
pub struct Unreached(pub CpuSet);

/// IPIs of shootdowns that could not be sent (each logical one also retried physically).
pub static SEND_FAILURES: AtomicU64 = AtomicU64::new(0);

/// Takes `req` back out of `cpu`'s inbox; true if it was still there (then that CPU never
/// saw it and never will).
fn withdraw(cpu: u32, req: &Request) -> bool {
    let Some(target) = percpu::cpu(cpu) else { return false };
    let removed = target.tlb.withdraw(req);
    if removed {
        req.pending.fetch_sub(1, Ordering::AcqRel);
    }
    removed
}

/// Requests waiting in `cpu`'s inbox (evidence).
pub fn queued(cpu: u32) -> usize {
    percpu::cpu(cpu).map_or(0, |c| c.tlb.waiting())
}

/// Queues `req` on `target`. Every slot taken (16 shooters at one CPU): waits until one
/// frees; with interrupts on, requests aimed at this CPU are served by the IPI meanwhile.
fn queue(req: &Request, target: &percpu::PerCpu) {
    while !target.tlb.push(req) {
        core::hint::spin_loop();
    }
}

/// Interrupts the targets of one shootdown (one physical IPI each, or one [`IpiGroup`] at a
/// time), counting ICR writes and the CPUs no IPI could be sent to.
struct Interrupter<'a, S: FnMut(Ipi) -> Result<(), IcrError>> {
    req: &'a Request,
    send: &'a mut S,
    writes: u64,
    /// Built only when a send failed: a set is 512 bytes, too much to clear on every
    /// shootdown.
    unreached: Option<CpuSet>,
}

impl<S: FnMut(Ipi) -> Result<(), IcrError>> Interrupter<'_, S> {
    /// One logical IPI for a group of several cluster members, else one physical IPI per
    /// member; a logical IPI that cannot be sent falls back to physical ones. The group's
    /// requests are already queued.
    fn interrupt(&mut self, group: IpiGroup) {
        if let Some(cluster) = group.logical() {
            self.writes += 1;
            if (self.send)(Ipi::fixed(TLB_VECTOR).to_cluster(cluster)).is_ok() {
                return;
            }
            SEND_FAILURES.fetch_add(1, Ordering::Relaxed);
        }
        for &cpu in group.cpus() {
            if let Some(target) = percpu::cpu(cpu) {
                self.physical(cpu, target);
            }
        }
    }

    /// One physical IPI to `cpu` (whose shared part is `target`), its request already queued.
    fn physical(&mut self, cpu: u32, target: &percpu::PerCpu) {
        self.writes += 1;
        if (self.send)(
            Ipi::fixed(TLB_VECTOR).to(ApicId::new(target.apic_id.load(Ordering::Acquire))),
        )
        .is_ok()
        {
            return;
        }
        SEND_FAILURES.fetch_add(1, Ordering::Relaxed);
        // A CPU no IPI reached may still have served the request (another shootdown's IPI);
        // otherwise take it back, or the wait for acknowledgements could never end.
        if withdraw(cpu, self.req) {
            self.unreached.get_or_insert_with(CpuSet::default).insert(cpu);
        }
    }
}

/// Invalidates `pages` (or everything, above the ceiling) of the address space `pml4` on
/// every CPU in `resident`; returns after all of them acknowledged. The page tables must
/// already be updated. Callable with interrupts on or off (see the wait below). `Err` names
/// the CPUs that could not be
/// interrupted (their request is withdrawn): frames they may still reach must not be freed.
// The unreached set travels by value: it is built only when a send failed, and this path
// must not allocate (it runs with interrupts off, possibly under the heap's lock).
#[allow(clippy::result_large_err)]
pub fn shootdown(pml4: u64, resident: &CpuMask, pages: &[u64]) -> Result<(), Unreached> {
    shootdown_via(pml4, resident, pages, &mut lapic::send)
}

/// [`shootdown`] with the IPI sender given (the `races` proof makes sends fail).
#[allow(clippy::result_large_err)] // see `shootdown`
pub fn shootdown_via(
    pml4: u64,
    resident: &CpuMask,
    pages: &[u64],
    send: &mut impl FnMut(Ipi) -> Result<(), IcrError>,
) -> Result<(), Unreached> {
    let full = match flush_plan(pages.len()) {
        FlushPlan::Nothing => return Ok(()),
        FlushPlan::Pages(_) => false,
        FlushPlan::Full => true,
    };
    let page_count = if full { 0 } else { pages.len() };
    let req = Request {
        pml4,
        pages: pages.as_ptr(),
        count: page_count,
        full,
        pending: AtomicU32::new(0),
    };
    // This CPU's shared part by index: the shooter may run with interrupts on (so no guard
    // across the wait), but it neither blocks nor yields here, so it stays on this CPU.
    let me = percpu::cpu(percpu::current_index()).expect("this CPU is installed");
    let logical = lapic::mode() == Some(LapicMode::X2Apic);
    let mut interrupter = Interrupter { req: &req, send, writes: 0, unreached: None };
    let mut groups = IpiGrouper::default();
    let mut me_resident = false;
    let mut low_targets = 0;
    let mut remote = 0;
    // Page-table writes before the mask read (pairs with the SeqCst insert before CR3 loads).
    core::sync::atomic::fence(Ordering::SeqCst);
    // Each word of the resident set is read once, and that one value both counts the
    // acknowledgements and picks the CPUs queued and interrupted: reading the set twice
    // could count a CPU that then gets no request (or the reverse) and never finish. The
    // words are streamed, not copied: a whole set is 512 bytes.
    let mut words = resident.words();
    while let Some(mut word) = words.next() {
        me_resident |= word.remove(me.index);
        if word.first() == 0 {
            low_targets = word.bits();
        }
        if word.is_empty() {
            continue;
        }
        let members = word.len();
        remote += members;
        // Counted before queued, so no acknowledgement runs ahead of its count (the wait
        // below starts only after every word was counted).
        req.pending.fetch_add(members, Ordering::AcqRel);
        // Nothing to group in xAPIC mode (physical IPIs only) or for the only target (the
        // usual case, one other CPU running the space): its IPI goes out once it is queued.
        let alone = members == 1 && words.len() == 0 && groups.is_empty();
        for cpu in word {
            let Some(target) = percpu::cpu(cpu) else {
                req.pending.fetch_sub(1, Ordering::AcqRel);
                continue;
            };
            queue(&req, target);
            if alone || !logical {
                interrupter.physical(cpu, target);
                continue;
            }
            let cluster = X2ApicCluster::from_ldr(target.x2apic_ldr.load(Ordering::Acquire));
            if let Some(group) = groups.add(cpu, cluster) {
                interrupter.interrupt(group);
            }
        }
    }
    if let Some(group) = groups.finish() {
        interrupter.interrupt(group);
    }
    let writes = interrupter.writes;
    // Bookkeeping while the IPIs are in flight.
    bump(&me.tlb.started, 1);
    if remote == 0 {
        bump(&me.tlb.started_local, 1);
    }
    bump(&me.tlb.icr_writes, writes);
    LAST_TARGETS.store(low_targets, Ordering::Relaxed);
    LAST_ICR_WRITES.store(writes, Ordering::Relaxed);
    // Flush here while the IPIs are in flight, and also when no other CPU needed one: this
    // CPU's TLB may hold the old entries whoever else does.
    if me_resident {
        let loaded = percpu::local(&IrqGuard::new()).loaded_space.get();
        flush(&req, loaded);
    }
    // Requests aimed at this CPU are served meanwhile: by the IPI when interrupts are on, by
    // the wait itself when they are off (two CPUs shooting at each other with interrupts off
    // would otherwise wait for each other forever).
    // Whether interrupts are on is read once: nothing in the wait changes it, and reading the
    // flags on every poll costs more than the load it guards (under emulation).
    let serve_here = !x86_64::instructions::interrupts::are_enabled();
    if !crate::time::spin_until(crate::time::TIGHT_POLL_NS, 5_000_000_000, || {
        if serve_here {
            serve_inbox(&IrqGuard::new());
        }
        req.pending.load(Ordering::Acquire) == 0
    }) {
        panic!("TLB shootdown: acknowledgements missing after 5 s");
    }
    // Borrowed until here, not moved: moving the optional set copies its 512 bytes.
    match &interrupter.unreached {
        None => Ok(()),
        Some(unreached) => {
            log::error!("TLB shootdown: no IPI could be sent to CPUs {unreached:?}");
            Err(Unreached(*unreached))
        }
    }
}

/// Proof hooks of the scenarios build: a window between a withdraw locating its slot and
/// claiming it, and requests a proof publishes by hand (a second shooter).
#[cfg(feature = "scenarios")]
pub mod window {
    use super::*;
    use core::sync::atomic::AtomicUsize;

    /// A `fn()` run inside every withdraw's window (0: none).
    static WITHDRAW_HOOK: AtomicUsize = AtomicUsize::new(0);
    /// Times the hook ran.
    pub static WITHDRAW_HOOK_RUNS: AtomicU64 = AtomicU64::new(0);

    /// Installs (or removes) the hook.
    pub fn set_withdraw_hook(hook: Option<fn()>) {
        WITHDRAW_HOOK.store(hook.map_or(0, |f| f as usize), Ordering::Release);
    }

    pub(super) fn run_withdraw_hook() {
        let hook = WITHDRAW_HOOK.load(Ordering::Acquire);
        if hook != 0 {
            // SAFETY: only `set_withdraw_hook` stores here, and it stores a `fn()`.
            let hook: fn() = unsafe { core::mem::transmute::<usize, fn()>(hook) };
            WITHDRAW_HOOK_RUNS.fetch_add(1, Ordering::Relaxed);
            hook();
        }
    }

    /// The second shooter's request (0: none yet); leaked, so it outlives any window.
    static SECOND: AtomicUsize = AtomicUsize::new(0);

    /// Publishes a second shooter's full-flush request of `pml4` (expecting one
    /// acknowledgement) in `cpu`'s inbox without interrupting it.
    pub fn publish_second(cpu: u32, pml4: u64) -> bool {
        let req: &'static Request = alloc::boxed::Box::leak(alloc::boxed::Box::new(Request {
            pml4,
            pages: core::ptr::NonNull::dangling().as_ptr(),
            count: 0,
            full: true,
            pending: AtomicU32::new(1),
        }));
        SECOND.store(req as *const Request as usize, Ordering::Release);
        percpu::cpu(cpu).is_some_and(|c| c.tlb.push(req))
    }

    /// Acknowledgements the second shooter's request still waits for.
    pub fn second_pending() -> Option<u32> {
        let ptr = SECOND.load(Ordering::Acquire);
        // SAFETY: a leaked request, never freed.
        (ptr != 0).then(|| unsafe { &*(ptr as *const Request) }.pending.load(Ordering::Acquire))
    }

    /// One shootdown IPI to `cpu` (it serves whatever its inbox holds).
    pub fn interrupt(cpu: u32) -> bool {
        percpu::cpu(cpu).is_some_and(|c| {
            lapic::send(Ipi::fixed(TLB_VECTOR).to(ApicId::new(c.apic_id.load(Ordering::Acquire))))
                .is_ok()
        })
    }
}
