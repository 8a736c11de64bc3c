//! Where an `Interrupt` source's deliveries go: its route written into the IOAPIC entry, the
//! MSI message, the MSI-X entry or the IRTE they name; re-targeting at grant time; and the
//! live move of `InterruptSetAffinity`, with the old vector retired until its CPU is done.

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use keel_abi::Status;
use keel_apic::{ApicId, TriggerMode};

use super::{place, HardwareMask, InterruptObject, Source};
use crate::task::Process;
use fw::arch::x86_64::{ioapic, percpu, vector_space};
use fw::pci;

impl InterruptObject {
    /// Moves the (masked) source to a vector of `target`'s space (or of the least-loaded CPU,
    /// when `target` has none free) unless the previous grant asked for the same CPU: the
    /// new vector is allocated, the route rewritten, then the old vector released.
    pub(super) fn retarget(&self, target: &percpu::PerCpu) -> Result<(), &'static str> {
        if self.requested_cpu.load(Ordering::Acquire) == target.index {
            return Ok(());
        }
        ioapic::reachable(ApicId::new(target.apic_id.load(Ordering::Acquire)))?;
        let (old_cpu, old_vector) = (self.cpu(), self.vector());
        let (cpu, vector, apic_id) = place(target.index, self.owner)?;
        self.requested_cpu.store(target.index, Ordering::Release);
        if cpu == old_cpu {
            // Placed back where it is: keep the route, return the second vector.
            let _ = vector_space::release(cpu, vector);
            return Ok(());
        }
        let routed = self.route_to(cpu, vector, apic_id);
        let unused = if routed.is_ok() { (old_cpu, old_vector) } else { (cpu, vector) };
        let _ = vector_space::release(unused.0, unused.1);
        routed
    }

    /// Rewrites the (masked) source's route to `vector` of CPU `cpu` (APIC ID `apic_id`).
    fn route_to(&self, cpu: u32, vector: u8, apic_id: u32) -> Result<(), &'static str> {
        let _st = self.state.lock();
        self.rewrite_route(vector, apic_id)?;
        if let Source::Msi { device, cap, .. } = &self.source {
            pci::msi_set_masked(device, *cap, true);
        }
        self.vector.store(vector, Ordering::Release);
        self.cpu.store(cpu, Ordering::Release);
        self.target_apic_id.store(apic_id, Ordering::Release);
        Ok(())
    }

    /// Writes the route into the hardware that holds it: the IOAPIC entry, the MSI message or
    /// the MSI-X table entry, or (remapping on) the IRTE they name, whose cached copy every
    /// unit has dropped when this returns (IEC invalidation, waited for). Caller holds the
    /// state lock.
    fn rewrite_route(&self, vector: u8, apic_id: u32) -> Result<(), &'static str> {
        match &self.source {
            Source::Ioapic { gsi, level, polarity } => {
                let trigger = if *level { TriggerMode::Level } else { TriggerMode::Edge };
                ioapic::route(*gsi, vector, ApicId::new(apic_id), *polarity, trigger, true)
                    .map_err(|_| "IOAPIC route failed")?;
            }
            Source::Msi { device, cap, .. } => {
                pci::msi_enable(device, *cap, ApicId::new(apic_id), vector)?;
            }
            Source::Msix { function, entry } => {
                function.program(*entry, vector, ApicId::new(apic_id))?;
            }
        }
        Ok(())
    }

    /// `Interrupt.set_affinity`: moves the live source to a vector of CPU `cpu`, while the
    /// device may keep raising (as Linux's `irq_move` with its cleanup vector):
    ///
    /// 1. the new vector is allocated on the target first (the same number when free there,
    ///    so a compatibility MSI message the device reads between its address and data
    ///    writes names this source's vector on either CPU; an unmaskable one is refused
    ///    `Busy` otherwise);
    /// 2. under the state lock (a handler on another CPU waits for the switch), a source
    ///    with a hardware mask is masked, the route rewritten (with remapping: the IRTE, and
    ///    the interrupt entry cache invalidated and waited for), the kernel's route updated,
    ///    and the mask restored: a message held pending meanwhile (the function's pending
    ///    bit) is sent to the new route at that unmask, or at the holder's acknowledge;
    /// 3. the old vector stays owned (an interrupt the old CPU accepted before the switch
    ///    still finds this source) and is retired: the old CPU releases it (from its tick, or
    ///    tickless on its way into an idle halt, nudged by an IPI 49) once its LAPIC's IRR
    ///    and ISR hold nothing on it.
    ///
    /// `results` = (vector, CPU). `BadArgument` for a CPU that is not online or that device
    /// interrupts cannot name; `Busy` when no retirement slot is free; `NoMemory` when the
    /// target has no free vector.
    pub(super) fn set_affinity(&self, caller: &Arc<Process>, cpu: u64) -> Result<[u64; 2], Status> {
        let target = u32::try_from(cpu)
            .ok()
            .and_then(percpu::cpu)
            .filter(|c| c.online.load(Ordering::Acquire))
            .ok_or(Status::BadArgument)?;
        let apic_id = target.apic_id.load(Ordering::Acquire);
        ioapic::reachable(ApicId::new(apic_id)).map_err(|_| Status::BadArgument)?;
        let st = self.state.lock();
        if !self.is_holder(&st, caller) {
            return Err(Status::Denied);
        }
        let (old_cpu, old_vector) = (self.cpu(), self.vector());
        if target.index == old_cpu {
            return Ok([old_vector as u64, old_cpu as u64]);
        }
        if !vector_space::can_retire() {
            return Err(Status::Busy);
        }
        let vector = if vector_space::reclaim(target.index, old_vector, self.owner)
            || vector_space::allocate_at(target.index, old_vector, self.owner).is_ok()
        {
            old_vector
        } else if self.hardware_mask() == HardwareMask::NoMaskBit
            && !matches!(self.source, Source::Ioapic { .. })
            && fw::arch::x86_64::iommu::mode().is_none()
            && fw::arch::x86_64::amdvi::mode().is_none()
        {
            return Err(Status::Busy);
        } else {
            vector_space::allocate(target.index, &[], self.owner)
                .map_err(|_| Status::NoMemory)?
                .vector
        };
        let armed = !st.masked;
        if armed {
            self.mask_source(true);
        }
        if let Err(e) = self.rewrite_route(vector, apic_id) {
            log::warn!("irq: {}: move to cpu{} failed: {e}", self.name, target.index);
            let _ = vector_space::release(target.index, vector);
            if armed {
                self.mask_source(false);
            }
            return Err(Status::BadArgument);
        }
        self.vector.store(vector, Ordering::Release);
        self.cpu.store(target.index, Ordering::Release);
        self.target_apic_id.store(apic_id, Ordering::Release);
        if let Source::Msix { function, entry } = &self.source {
            if function.pending(*entry) {
                self.pending_at_move.fetch_add(1, Ordering::Relaxed);
            }
        }
        if armed {
            self.mask_source(false);
        }
        self.moves.fetch_add(1, Ordering::Relaxed);
        if !vector_space::retire(old_cpu, old_vector) {
            // Another source took the last slot meanwhile: the old vector stays owned (never
            // released early), at the cost of one vector of the old CPU.
            log::warn!("irq: {}: vector {old_vector:#x} of cpu{old_cpu} kept", self.name);
        } else {
            // Tickless, the old CPU may be halted with nothing armed: it releases the vector
            // on its way back into the halt.
            crate::task::sched::nudge(old_cpu);
        }
        drop(st);
        Ok([vector as u64, target.index as u64])
    }
}
