//! The CMOS RTC's periodic interrupt (ISA IRQ 8, edge) routed through the IOAPIC to one CPU:
//! proves the device-vector path (override-aware GSI lookup, RTE programming with a physical
//! APIC ID destination, delivery, LAPIC EOI).

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use keel_apic::ApicId;
use x86_64::instructions::port::Port;

use fw::arch::x86_64::ioapic::{self, InService};
use fw::arch::x86_64::percpu::{self, PerCpu};
use fw::arch::x86_64::trap_entry::DEVICE_VECTOR_BASE;
use fw::bringup::System;

const CMOS_INDEX: u16 = 0x70;
const CMOS_DATA: u16 = 0x71;
/// Index-port bit that keeps NMIs disabled while CMOS registers are addressed.
const NMI_DISABLE: u8 = 0x80;
const ISA_RTC_IRQ: u8 = 8;

static INTERRUPTS: AtomicU64 = AtomicU64::new(0);
static ON_WRONG_CPU: AtomicU64 = AtomicU64::new(0);
static TARGET_INDEX: AtomicU32 = AtomicU32::new(u32::MAX);

fn cmos_read(reg: u8) -> u8 {
    // SAFETY: CMOS ports belong to the kernel; reading a register has no memory effects.
    unsafe {
        Port::<u8>::new(CMOS_INDEX).write(NMI_DISABLE | reg);
        Port::<u8>::new(CMOS_DATA).read()
    }
}

fn cmos_write(reg: u8, value: u8) {
    // SAFETY: as in `cmos_read`.
    unsafe {
        Port::<u8>::new(CMOS_INDEX).write(NMI_DISABLE | reg);
        Port::<u8>::new(CMOS_DATA).write(value);
    }
}

fn rtc_interrupt(_vector: u8, token: InService) {
    // Reading register C acknowledges the RTC so it can raise the next interrupt.
    let _ = cmos_read(0x0C);
    INTERRUPTS.fetch_add(1, Ordering::Relaxed);
    if percpu::current_index() != TARGET_INDEX.load(Ordering::Relaxed) {
        ON_WRONG_CPU.fetch_add(1, Ordering::Relaxed);
    }
    token.eoi();
}

/// Whether routing IRQ 8 to `cpu` is refused as unreachable (APIC ID above 254).
pub fn route_is_refused(system: &System, cpu: &PerCpu) -> bool {
    let Some(route) = system.platform.resolve_isa_irq(ISA_RTC_IRQ) else { return false };
    let (polarity, trigger) = (route.polarity, route.trigger);
    let apic_id = ApicId::new(cpu.apic_id.load(Ordering::Acquire));
    matches!(
        ioapic::route(route.gsi, DEVICE_VECTOR_BASE, apic_id, polarity, trigger, true),
        Err(ioapic::RouteError::Unreachable(_))
    )
}

/// Routes IRQ 8 to `target`, runs the RTC at 1024 Hz for `window_ms`, checks the count.
pub fn route_and_count(
    system: &System,
    target: &PerCpu,
    window_ms: u64,
) -> Result<(), &'static str> {
    let route = system.platform.resolve_isa_irq(ISA_RTC_IRQ).ok_or("ISA IRQ 8 has no GSI")?;
    let (polarity, trigger) = (route.polarity, route.trigger);
    let vector = ioapic::allocate_vector(rtc_interrupt).ok_or("no free device vector")?;
    TARGET_INDEX.store(target.index, Ordering::Relaxed);
    let apic_id = ApicId::new(target.apic_id.load(Ordering::Acquire));
    ioapic::route(route.gsi, vector, apic_id, polarity, trigger, false).map_err(|e| {
        log::error!("rtc: route failed: {e:?}");
        "IOAPIC route failed"
    })?;
    log::info!(
        "rtc: IRQ 8 -> GSI {} vector {vector:#x} -> cpu{} (APIC ID {})",
        route.gsi,
        target.index,
        apic_id.get()
    );
    let target_before = ioapic::DEVICE_INTERRUPTS.of(target.index).load(Ordering::Relaxed);
    x86_64::instructions::interrupts::without_interrupts(|| {
        let a = cmos_read(0x0A);
        cmos_write(0x0A, (a & 0xF0) | 0x06); // rate 6: 1024 Hz
        let b = cmos_read(0x0B);
        cmos_write(0x0B, b | 0x40); // periodic interrupt enable
        let _ = cmos_read(0x0C);
    });
    super::support::sleep_ms(window_ms);
    x86_64::instructions::interrupts::without_interrupts(|| {
        let b = cmos_read(0x0B);
        cmos_write(0x0B, b & !0x40);
        let _ = cmos_read(0x0C);
    });
    let _ = ioapic::set_masked(route.gsi, true);
    // An interrupt delivered before the mask may still be in its handler (a vCPU can be
    // descheduled for milliseconds): wait until the dispatcher's count on the target and the
    // handler's own count agree, bounded, instead of sleeping a fixed time.
    let counts = || {
        (
            INTERRUPTS.load(Ordering::Acquire),
            ioapic::DEVICE_INTERRUPTS.of(target.index).load(Ordering::Acquire) - target_before,
        )
    };
    // The pair reported is one that agreed when read (or the last one read): an interrupt
    // still in flight could land between a later pair's two loads.
    let mut seen = counts();
    fw::time::spin_until(0, 1_000_000_000, || {
        seen = counts();
        seen.0 == seen.1
    });
    let (count, on_target) = seen;
    ev!("rtc.gsi", route.gsi);
    ev!("rtc.vector", vector);
    ev!("rtc.cpu", target.index);
    ev!("rtc.apic_id", apic_id.get());
    ev!("rtc.window_ms", window_ms);
    ev!("rtc.interrupts", count);
    ev!("rtc.on_target", on_target);
    ev!("rtc.on_wrong_cpu", ON_WRONG_CPU.load(Ordering::Relaxed));
    super::route_evidence::ioapic_evidence("rtc", route.gsi);
    if count < 20 || ON_WRONG_CPU.load(Ordering::Relaxed) != 0 {
        return Err("RTC interrupts missing or on the wrong CPU");
    }
    Ok(())
}
