//! The only APIC code a kernel writes itself when it adopts `keel-apic`: one register
//! backend (MMIO for xAPIC, MSRs for x2APIC) and the `IA32_APIC_BASE` accesses the mode
//! plan asks for. Ordering rules, ICR encodings and timer arithmetic are the crate's.

use core::arch::x86_64::__cpuid_count;

use keel_apic::base::{x2apic_lock_state, CPUID_01_ECX_X2APIC, IA32_APIC_BASE};
use keel_apic::{ApicBase, IcrValue, LapicMode, LapicRegisters, ModeInputs, ModePlan, Register};
use x86_64::registers::model_specific::Msr;

const IA32_ARCH_CAPABILITIES: u32 = keel_apic::base::IA32_ARCH_CAPABILITIES;
const IA32_XAPIC_DISABLE_STATUS: u32 = keel_apic::base::IA32_XAPIC_DISABLE_STATUS;
/// Bounded wait for the xAPIC delivery-status bit (iterations of a `pause` loop).
const ICR_IDLE_POLLS: u32 = 1_000_000;

fn rdmsr(msr: u32) -> u64 {
    // SAFETY: callers name only architectural MSRs this CPU has (APIC base, x2APIC range once
    // enabled, and the lock MSRs only when `x2apic_lock_state` found them enumerated).
    unsafe { Msr::new(msr).read() }
}

fn wrmsr(msr: u32, value: u64) {
    // SAFETY: as in `rdmsr`; the values come from keel_apic's encoders and mode plans, which
    // never produce a write the architecture rejects.
    unsafe { Msr::new(msr).write(value) }
}

/// What mode selection needs, read from this CPU.
pub fn mode_inputs() -> ModeInputs {
    let (leaf1, leaf7) = (__cpuid_count(1, 0), __cpuid_count(7, 0));
    ModeInputs {
        cpuid_x2apic: leaf1.ecx & CPUID_01_ECX_X2APIC != 0,
        apic_base: read_apic_base(),
        x2apic_locked: x2apic_lock_state(
            leaf7.edx,
            || rdmsr(IA32_ARCH_CAPABILITIES),
            || rdmsr(IA32_XAPIC_DISABLE_STATUS),
        ),
    }
}

/// `IA32_APIC_BASE` as it is now: where each CPU's mode is read back from.
pub fn read_apic_base() -> ApicBase {
    ApicBase::from_raw(rdmsr(IA32_APIC_BASE))
}

/// Performs the writes a `plan_for_bsp` / `plan_for_ap` plan lists, in order.
pub fn apply(plan: &ModePlan) {
    for write in plan.writes() {
        wrmsr(IA32_APIC_BASE, write.raw());
    }
}

/// This CPU's local APIC registers in `mode`; `mmio` is the xAPIC page (unused in x2APIC).
pub struct Registers {
    mode: LapicMode,
    mmio: usize,
}

impl Registers {
    pub fn new(mode: LapicMode, mmio: u64) -> Self {
        Registers { mode, mmio: mmio as usize }
    }

    fn mmio(&self, offset: usize) -> *mut u32 {
        (self.mmio + offset) as *mut u32
    }
}

impl LapicRegisters for Registers {
    fn mode(&self) -> LapicMode {
        self.mode
    }

    fn read(&mut self, reg: Register) -> u32 {
        match self.mode {
            LapicMode::X2Apic => rdmsr(reg.x2apic_msr().expect("no such x2APIC register")) as u32,
            LapicMode::XApic => {
                let offset = reg.xapic_offset().expect("no such xAPIC register") as usize;
                // SAFETY: the xAPIC page is identity-mapped uncached (boot.rs) and `offset` is
                // an architectural register inside it.
                unsafe { self.mmio(offset).read_volatile() }
            }
        }
    }

    fn write(&mut self, reg: Register, value: u32) {
        match self.mode {
            LapicMode::X2Apic => {
                wrmsr(reg.x2apic_msr().expect("no such x2APIC register"), value.into())
            }
            LapicMode::XApic => {
                let offset = reg.xapic_offset().expect("no such xAPIC register") as usize;
                // SAFETY: as in `read`.
                unsafe { self.mmio(offset).write_volatile(value) }
            }
        }
    }

    fn write_icr(&mut self, icr: IcrValue) {
        match icr {
            // Destination first: writing the low half sends. Interrupts stay off in this
            // example wherever an IPI is sent, so no handler can slip in between.
            IcrValue::XApic { high, low } => {
                // SAFETY: as in `read`.
                unsafe {
                    self.mmio(0x310).write_volatile(high); // ICR high
                    self.mmio(0x300).write_volatile(low); // ICR low
                }
            }
            IcrValue::X2Apic(value) => {
                // WRMSR to the x2APIC ICR is not serializing: fence so earlier stores (the
                // counters a receiver may read) are visible before the IPI lands.
                // SAFETY: fences have no preconditions.
                unsafe { core::arch::asm!("mfence", "lfence", options(nostack, preserves_flags)) };
                wrmsr(Register::IcrLow.x2apic_msr().expect("x2APIC ICR"), value);
            }
        }
    }

    fn wait_icr_idle(&mut self) -> bool {
        (0..ICR_IDLE_POLLS).any(|_| {
            core::hint::spin_loop();
            // SAFETY: as in `read` (only called in xAPIC mode).
            let low = unsafe { self.mmio(0x300).read_volatile() };
            low & keel_apic::icr::ICR_DELIVERY_STATUS_PENDING == 0
        })
    }
}
