//! The `Interrupt` object: a device interrupt source handed to a ring-3 driver.
//!
//! Contract (as seL4's IRQHandler and Zircon's interrupt objects): when the vector fires, the
//! kernel masks the source (IOAPIC RTE, or the MSI per-vector mask when the function has one),
//! EOIs the LAPIC at once, records pending + count + TSC timestamp and wakes the waiter (an IPI
//! reaches it when it runs on another CPU). `wait` completes at once when something is pending,
//! otherwise later; `acknowledge` unmasks, so a level-triggered line that is still asserted
//! fires again. One waiter at a time (a second concurrent `wait` is `Busy`). When the holder
//! exits or releases its capability the source is masked, the waiter cancelled and the route
//! kept for the next holder. The holder may move a live source to another CPU
//! (`InterruptSetAffinity`, `InterruptObject::set_affinity`) without losing or duplicating
//! a delivery. The LAPIC EOI is never held until the driver acknowledges: that
//! would block every vector of equal or lower priority, the timer and IPIs included.
//!
//! State machine of one source (`masked` × `pending` × `waiter`):
//! ```text
//!   Armed (unmasked, idle) --irq--> Pending (masked, count += 1)
//!   Armed + waiter        --irq--> Masked, waiter completed with (count, ts)
//!   Pending --wait--> Masked (completes at once with (count, ts), count reset)
//!   Masked  --acknowledge--> Armed (unmask; a still-asserted level line re-fires)
//!   any --holder exit/release--> Unowned (masked, waiter and count dropped)
//! ```

use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicU8, Ordering};

use fw::sync::IrqSafeMutex;
use keel_abi::{InterruptSource, Status};
use keel_apic::{ApicId, Polarity, TriggerMode};
use keel_vectors::Owner;

use super::msix::{self, MsixFunction};
use super::{Caller, Reply};
use crate::task::{Process, Thread};
use fw::arch::x86_64::ioapic::InService;
use fw::arch::x86_64::{cpu, ioapic, percpu, vector_space};
use fw::pci::{self, PciDevice};

mod routing;

/// Where the interrupt comes from and how it is masked.
pub enum Source {
    /// An IOAPIC input.
    Ioapic { gsi: u32, level: bool, polarity: Polarity },
    /// PCI MSI of a function; `maskable` when it has per-vector mask bits.
    Msi { device: &'static PciDevice, cap: u8, maskable: bool },
    /// One MSI-X table entry of a function (masked through its own vector mask).
    Msix { function: &'static MsixFunction, entry: u16 },
}

struct State {
    holder: Option<Weak<Process>>,
    masked: bool,
    pending: u64,
    first_ts: u64,
    waiter: Option<(Arc<Thread>, u64)>,
}

/// One interrupt source with its vector and current holder.
pub struct InterruptObject {
    /// Manifest spelling, e.g. `msi(edu)`.
    pub name: String,
    /// This source's handle in the per-CPU vector matrix.
    owner: Owner,
    /// The vector, in the space of CPU `cpu` (both change when the source moves).
    vector: AtomicU8,
    cpu: AtomicU32,
    /// The CPU the last grant asked for (`cpu` differs when that one had no free vector).
    requested_cpu: AtomicU32,
    /// Physical APIC ID the source is routed to (changes when a holder on another CPU
    /// acquires it).
    pub target_apic_id: AtomicU32,
    pub source: Source,
    /// The PCI function behind an INTx source (to switch it away from MSI).
    intx_device: Option<&'static PciDevice>,
    state: IrqSafeMutex<State>,
    /// Times the vector fired.
    pub deliveries: AtomicU64,
    /// Times a holder acknowledged.
    pub acknowledgements: AtomicU64,
    /// Deliveries while already masked (MSI without mask bits): coalesced into `pending`.
    pub while_masked: AtomicU64,
    /// Deliveries that arrived on the CPU the source is routed to, and elsewhere.
    pub on_target: AtomicU64,
    pub off_target: AtomicU64,
    /// MSI-X: masks (on delivery, grant, release) and unmasks (on acknowledge) whose
    /// effect was read back from the table entry.
    pub masks_read_back: AtomicU64,
    pub unmasks_read_back: AtomicU64,
    /// Deliveries counted by the CPU that took them (index = CPU index).
    pub deliveries_by_cpu: Vec<AtomicU64>,
    /// Live moves (`SetAffinity`) whose new route was written.
    pub moves: AtomicU64,
    /// Moves that found the source's pending bit set (MSI-X PBA or MSI pending bit, read
    /// from the function) while it was held masked for the switch: sent at the unmask.
    pub pending_at_move: AtomicU64,
}

static SOURCES: IrqSafeMutex<Vec<Arc<InterruptObject>>> = IrqSafeMutex::new(Vec::new());
/// Owner handles (and so sources) the kernel can create.
const MAX_SOURCES: usize = 4096;
/// Sources by their matrix owner handle (`Owner(i)` is entry `i`), read by every device
/// interrupt without a lock. An entry is set once, when its source is created, and holds
/// one strong reference for good (sources are never destroyed: the route outlives its
/// holders), so a pointer read here is always to a live object.
static BY_OWNER: [AtomicPtr<InterruptObject>; MAX_SOURCES] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_SOURCES];
static NEXT_OWNER: AtomicU32 = AtomicU32::new(0);

/// Grants whose requested CPU had no free vector, so the source went to another CPU.
pub static PLACED_ELSEWHERE: AtomicU64 = AtomicU64::new(0);

/// A source as the manifest names it (`isa(N)`, `intx(dev)`, `msi(dev)`), its device resolved.
pub enum ManifestSource<'a> {
    Isa(u8),
    Intx(&'static PciDevice, &'a str),
    Msi(&'static PciDevice, &'a str),
    Msix(&'static PciDevice, &'a str, u16),
}

/// Grants the source to `holder`: creates its route on first use (masked), refuses while
/// another live process holds it.
pub fn acquire(
    request: ManifestSource,
    holder: &Arc<Process>,
    target: &percpu::PerCpu,
) -> Result<Arc<InterruptObject>, &'static str> {
    let name = match &request {
        ManifestSource::Isa(irq) => alloc::format!("isa({irq})"),
        ManifestSource::Intx(_, dev) => alloc::format!("intx({dev})"),
        ManifestSource::Msi(_, dev) => alloc::format!("msi({dev})"),
        ManifestSource::Msix(_, dev, entry) => alloc::format!("msix({dev}, {entry})"),
    };
    let existing = SOURCES.lock().iter().find(|s| s.name == name).cloned();
    let object = match existing {
        Some(o) => o,
        None => create(name, request, target)?,
    };
    object.claim(holder)?;
    object.retarget(target)?;
    object.select_device_mode();
    Ok(object)
}

fn create(
    name: String,
    request: ManifestSource,
    target: &percpu::PerCpu,
) -> Result<Arc<InterruptObject>, &'static str> {
    ioapic::reachable(ApicId::new(target.apic_id.load(Ordering::Acquire)))?;
    vector_space::set_owner_handler(on_vector);
    let owner = Owner(NEXT_OWNER.fetch_add(1, Ordering::Relaxed));
    if owner.0 as usize >= MAX_SOURCES {
        return Err("no interrupt source handle left");
    }
    let (cpu, vector, apic_id) = place(target.index, owner)?;
    let intx_device = match &request {
        ManifestSource::Intx(dev, _) => Some(*dev),
        _ => None,
    };
    let source = match request {
        ManifestSource::Isa(irq) => {
            let route = fw::acpi::platform().resolve_isa_irq(irq).ok_or("ISA IRQ has no GSI")?;
            let (polarity, trigger) = (route.polarity, route.trigger);
            ioapic::route(route.gsi, vector, ApicId::new(apic_id), polarity, trigger, true)
                .map_err(|_| "IOAPIC route failed")?;
            Source::Ioapic { gsi: route.gsi, level: trigger == TriggerMode::Level, polarity }
        }
        ManifestSource::Intx(dev, _) => {
            let gsi = pci::intx_gsi(dev)?;
            pci::enable(dev, true, true, true);
            ioapic::route(
                gsi,
                vector,
                ApicId::new(apic_id),
                Polarity::ActiveHigh,
                TriggerMode::Level,
                true,
            )
            .map_err(|_| "IOAPIC route failed")?;
            Source::Ioapic { gsi, level: true, polarity: Polarity::ActiveHigh }
        }
        ManifestSource::Msi(dev, _) => {
            let cap = pci::find_capability(dev, 0x05).ok_or("device has no MSI capability")?;
            pci::enable(dev, true, true, false);
            let maskable = pci::msi_enable(dev, cap, ApicId::new(apic_id), vector)?;
            pci::msi_set_masked(dev, cap, true);
            Source::Msi { device: dev, cap, maskable }
        }
        ManifestSource::Msix(dev, _, entry) => {
            let function = msix::function(dev)?;
            if !function.has_entry(entry) {
                return Err("MSI-X entry past the function's table");
            }
            pci::enable(dev, true, true, false);
            function.program(entry, vector, ApicId::new(apic_id))?;
            Source::Msix { function, entry }
        }
    };
    let object = Arc::new(InterruptObject {
        name,
        owner,
        vector: AtomicU8::new(vector),
        cpu: AtomicU32::new(cpu),
        requested_cpu: AtomicU32::new(target.index),
        target_apic_id: AtomicU32::new(apic_id),
        source,
        intx_device,
        state: IrqSafeMutex::new(State {
            holder: None,
            masked: true,
            pending: 0,
            first_ts: 0,
            waiter: None,
        }),
        deliveries: AtomicU64::new(0),
        acknowledgements: AtomicU64::new(0),
        while_masked: AtomicU64::new(0),
        on_target: AtomicU64::new(0),
        off_target: AtomicU64::new(0),
        masks_read_back: AtomicU64::new(0),
        unmasks_read_back: AtomicU64::new(0),
        deliveries_by_cpu: percpu::all().map(|_| AtomicU64::new(0)).collect(),
        moves: AtomicU64::new(0),
        pending_at_move: AtomicU64::new(0),
    });
    log::info!("irq: {} -> vector {:#x} of cpu{} (APIC ID {})", object.name, vector, cpu, apic_id);
    SOURCES.lock().push(object.clone());
    // The table's reference, never given back (see `BY_OWNER`).
    BY_OWNER[owner.0 as usize].store(Arc::into_raw(object.clone()).cast_mut(), Ordering::Release);
    Ok(object)
}

/// Allocates `owner` a vector on CPU `requested`, or on the least-loaded CPU whose APIC ID a
/// device interrupt can name when `requested` has none free; `(cpu, vector, apic id)`.
fn place(requested: u32, owner: Owner) -> Result<(u32, u8, u32), &'static str> {
    let reachable: Vec<u32> = percpu::online()
        .filter(|c| ioapic::reachable(ApicId::new(c.apic_id.load(Ordering::Acquire))).is_ok())
        .map(|c| c.index)
        .collect();
    let placed = vector_space::allocate(requested, &reachable, owner)
        .map_err(|_| "no free device vector on any reachable CPU")?;
    if placed.elsewhere {
        PLACED_ELSEWHERE.fetch_add(1, Ordering::Relaxed);
        log::info!("irq: cpu{requested} has no free vector: placed on cpu{}", placed.cpu);
    }
    let apic_id = percpu::cpu(placed.cpu).ok_or("placed on a CPU that is not set up")?;
    Ok((placed.cpu, placed.vector, apic_id.apic_id.load(Ordering::Acquire)))
}

/// The methods of an `Interrupt` capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Completes with (count, first timestamp) when the source fired, at once if it already has.
    Wait,
    /// Unmasks the source after the driver handled it.
    Acknowledge,
    /// Reports the vector and the encoded source.
    Info,
    /// Moves the live source to a vector of CPU `cpu`.
    SetAffinity { cpu: u64 },
}

impl InterruptObject {
    /// Makes `holder` the source's holder (masked, nothing pending) unless a live process
    /// holds it.
    fn claim(&self, holder: &Arc<Process>) -> Result<(), &'static str> {
        let mut st = self.state.lock();
        if st.holder.as_ref().and_then(Weak::upgrade).is_some_and(|p| !p.has_exited()) {
            return Err("interrupt source already held by a live process");
        }
        st.holder = Some(Arc::downgrade(holder));
        st.pending = 0;
        st.waiter = None;
        st.masked = true;
        self.mask_source(true);
        Ok(())
    }

    /// `holder` lets the source go (if it holds it): masked, bus mastering off; returns the
    /// wait it leaves outstanding.
    fn let_go(&self, holder: &Arc<Process>) -> Option<(Arc<Thread>, u64)> {
        let mut st = self.state.lock();
        if !self.is_holder(&st, holder) {
            return None;
        }
        self.mask_source(true);
        st.masked = true;
        st.holder = None;
        st.pending = 0;
        if let Some(device) = self.pci_device() {
            pci::disable_bus_master(device);
        }
        log::info!("irq: {} released by {} (source masked)", self.name, holder.name);
        st.waiter.take()
    }

    /// Executes an `Interrupt` method; only the current holder may wait or acknowledge.
    pub fn invoke(&self, caller: &Caller, method: Method) -> Result<Reply, Status> {
        match method {
            Method::Wait => Ok(match self.wait(caller.thread, caller.user_data)? {
                Some(results) => Reply::Now(results),
                None => Reply::Later,
            }),
            Method::Acknowledge => self.acknowledge(caller.process()).map(|()| Reply::Now([0, 0])),
            Method::Info => Ok(Reply::Now([self.vector() as u64, self.abi_source().encode()])),
            Method::SetAffinity { cpu } => self.set_affinity(caller.process(), cpu).map(Reply::Now),
        }
    }

    /// The source as the ABI describes it to the holder.
    fn abi_source(&self) -> InterruptSource {
        match &self.source {
            Source::Ioapic { gsi, .. } => InterruptSource::Gsi(*gsi),
            Source::Msi { device, .. } => InterruptSource::Msi { bdf: device.addr.bdf() },
            Source::Msix { function, entry } => {
                InterruptSource::MsiX { bdf: function.device.addr.bdf(), entry: *entry }
            }
        }
    }
}

impl InterruptObject {
    /// The vector, in the space of [`Self::cpu`].
    pub fn vector(&self) -> u8 {
        self.vector.load(Ordering::Acquire)
    }

    /// The index of the CPU whose vector space holds the source.
    pub fn cpu(&self) -> u32 {
        self.cpu.load(Ordering::Acquire)
    }

    /// This source's handle in the vector matrix.
    pub fn owner(&self) -> Owner {
        self.owner
    }

    /// A PCI function signals either by MSI or by INTx: switch it to this object's way (a
    /// previous holder may have used the other one).
    fn select_device_mode(&self) {
        match &self.source {
            Source::Msi { device, .. } => pci::enable(device, true, true, false),
            Source::Msix { function, .. } => pci::enable(function.device, true, true, false),
            Source::Ioapic { .. } => {
                if let Some(device) = self.intx_device {
                    if let Some(cap) = pci::find_capability(device, 0x05) {
                        pci::msi_disable(device, cap);
                    }
                    pci::enable(device, true, true, true);
                }
            }
        }
        if let Source::Msi { device, cap, .. } = &self.source {
            pci::msi_set_enabled(device, *cap, true);
        }
    }

    fn mask_source(&self, masked: bool) {
        match &self.source {
            Source::Ioapic { gsi, .. } => {
                let _ = ioapic::set_masked(*gsi, masked);
            }
            Source::Msi { device, cap, maskable: true } => {
                pci::msi_set_masked(device, *cap, masked)
            }
            Source::Msi { maskable: false, .. } => {}
            Source::Msix { function, entry } => {
                function.set_masked(*entry, masked);
                let counter = if masked { &self.masks_read_back } else { &self.unmasks_read_back };
                if function.masked(*entry) == masked {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// `Interrupt.wait`: `Ok(Some(results))` when something was pending, `Ok(None)` when the
    /// caller's completion is deferred, `Err(Busy)` when another wait is outstanding.
    pub fn wait(&self, caller: &Arc<Thread>, user_data: u64) -> Result<Option<[u64; 2]>, Status> {
        let mut st = self.state.lock();
        if !self.is_holder(&st, &caller.process) {
            return Err(Status::Denied);
        }
        if st.pending > 0 {
            let r = [st.pending, st.first_ts];
            st.pending = 0;
            return Ok(Some(r));
        }
        // A waiter whose thread ended no longer waits (its exit also unregisters it).
        if st
            .waiter
            .as_ref()
            .is_some_and(|(t, _)| t.state() == crate::task::thread::ThreadState::Exited)
        {
            st.waiter = None;
        }
        if st.waiter.is_some() {
            return Err(Status::Busy);
        }
        st.waiter = Some((caller.clone(), user_data));
        Ok(None)
    }

    /// `Interrupt.acknowledge`: unmask the source.
    pub fn acknowledge(&self, caller: &Arc<Process>) -> Result<(), Status> {
        let mut st = self.state.lock();
        if !self.is_holder(&st, caller) {
            return Err(Status::Denied);
        }
        st.masked = false;
        self.acknowledgements.fetch_add(1, Ordering::Relaxed);
        self.mask_source(false);
        Ok(())
    }

    fn is_holder(&self, st: &State, p: &Arc<Process>) -> bool {
        st.holder.as_ref().is_some_and(|h| core::ptr::eq(h.as_ptr(), Arc::as_ptr(p)))
    }

    /// The PCI function this source belongs to (MSI, or INTx of a function).
    pub fn pci_device(&self) -> Option<&'static PciDevice> {
        match &self.source {
            Source::Msi { device, .. } => Some(*device),
            Source::Msix { function, .. } => Some(function.device),
            Source::Ioapic { .. } => self.intx_device,
        }
    }

    /// The holder is gone: mask, bus mastering off (the function's DMA and MSI writes stop;
    /// the next holder's grant turns it back on), cancel the waiter, keep the route for the
    /// next holder.
    pub fn release(&self, holder: &Arc<Process>) {
        if let Some((thread, user_data)) = self.let_go(holder) {
            // A released capability cancels the outstanding wait (the ring of a holder that
            // is exiting is gone and the post is dropped).
            thread.post(user_data, Status::Cancelled, [0, 0]);
        }
    }

    /// Whether the kernel's own state says the source is held back (for evidence).
    pub fn is_masked(&self) -> bool {
        self.state.lock().masked
    }

    /// The source's mask bit read from the hardware that holds it: the IOAPIC entry, or the
    /// MSI per-vector mask bit.
    pub fn hardware_mask(&self) -> HardwareMask {
        let bit = match &self.source {
            Source::Ioapic { gsi, .. } => match ioapic::is_masked(*gsi) {
                Ok(bit) => Some(bit),
                Err(_) => return HardwareMask::Unreadable,
            },
            Source::Msi { device, cap, .. } => pci::msi_mask_bit(device, *cap),
            Source::Msix { function, entry } => Some(function.masked(*entry)),
        };
        match bit {
            Some(true) => HardwareMask::Masked,
            Some(false) => HardwareMask::Unmasked,
            None => HardwareMask::NoMaskBit,
        }
    }

    /// Vector handler body.
    fn fire(&self, token: InService) {
        let ts = cpu::rdtsc();
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        let (here, index) =
            percpu::with_current(|me| (me.apic_id.load(Ordering::Relaxed), me.index));
        if let Some(c) = self.deliveries_by_cpu.get(index as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let counter = if here == self.target_apic_id.load(Ordering::Relaxed) {
            &self.on_target
        } else {
            &self.off_target
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let mut st = self.state.lock();
        // Mask first, then EOI: a level line still asserted must not re-enter at once.
        self.mask_source(true);
        token.eoi();
        if st.masked {
            self.while_masked.fetch_add(1, Ordering::Relaxed);
        }
        st.masked = true;
        if st.pending == 0 {
            st.first_ts = ts;
        }
        st.pending += 1;
        if let Some((thread, user_data)) = st.waiter.take() {
            let results = [st.pending, st.first_ts];
            st.pending = 0;
            drop(st);
            thread.post(user_data, Status::Ok, results);
        }
    }
}

/// A source's mask as its hardware holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HardwareMask {
    Masked,
    Unmasked,
    /// MSI without per-vector masking (QEMU's `edu`): only the kernel's software state holds
    /// the source back (deliveries while "masked" are coalesced, never lost).
    NoMaskBit,
    /// The IOAPIC serving the GSI could not be read.
    Unreadable,
}

impl HardwareMask {
    /// Evidence word: `yes`, `no`, `software` (no hardware mask exists) or `unreadable`.
    pub fn evidence(self) -> &'static str {
        match self {
            HardwareMask::Masked => "yes",
            HardwareMask::Unmasked => "no",
            HardwareMask::NoMaskBit => "software",
            HardwareMask::Unreadable => "unreadable",
        }
    }
}

/// Entry for every per-CPU vector: the matrix named this source's owner handle for the
/// (CPU, vector) that fired.
fn on_vector(owner: Owner, _vector: u8, token: InService) {
    let object = BY_OWNER.get(owner.0 as usize).map(|slot| slot.load(Ordering::Acquire));
    match object {
        // SAFETY: a non-null entry came from `Arc::into_raw` and its reference is never
        // released, so the object lives for the rest of the kernel's life.
        Some(ptr) if !ptr.is_null() => unsafe { &*ptr }.fire(token),
        _ => token.eoi(),
    }
}

/// A thread is ending: it no longer waits on any source (another thread of the holder may
/// wait next), and no source keeps it alive.
pub fn cancel_waits_of(thread: &Thread) {
    let dropped: Vec<Arc<Thread>> = {
        let sources = SOURCES.lock();
        sources
            .iter()
            .filter_map(|s| {
                let mut st = s.state.lock();
                match &st.waiter {
                    Some((t, _)) if core::ptr::eq(Arc::as_ptr(t), thread) => {
                        st.waiter.take().map(|(t, _)| t)
                    }
                    _ => None,
                }
            })
            .collect()
    };
    drop(dropped);
}

/// Every source created so far (for evidence).
pub fn all() -> Vec<Arc<InterruptObject>> {
    SOURCES.lock().clone()
}
