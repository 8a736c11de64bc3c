//! CPU feature discovery (CPUID) and per-CPU protection bits (NX, WP, SMEP, SMAP).

use core::arch::x86_64::{__cpuid, __cpuid_count};
use spin::Once;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
use x86_64::registers::model_specific::{Efer, EferFlags, Msr};

/// What the boot CPU reported; APs are assumed to match (QEMU and real SMP systems are
/// homogeneous in these bits), except for x2APIC support, which `lapic` reads on each CPU.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuFeatures {
    /// CPUID.01H:EDX[9]: the CPU has a local APIC at all.
    pub apic: bool,
    /// CPUID.01H:ECX[21]: the x2APIC MSR interface exists.
    pub x2apic: bool,
    /// CPUID.01H:ECX[24]: LVT timer TSC-deadline mode.
    pub tsc_deadline: bool,
    /// CPUID.80000001H:EDX[20].
    pub nx: bool,
    /// CPUID.07H:EBX[7].
    pub smep: bool,
    /// CPUID.07H:EBX[20].
    pub smap: bool,
    /// CPUID.01H:ECX[30].
    pub rdrand: bool,
    /// CPUID.07H:EDX[29]: IA32_ARCH_CAPABILITIES exists.
    pub arch_capabilities: bool,
    /// CPUID.80000007H:EDX[8].
    pub invariant_tsc: bool,
    /// CPUID.01H:EBX[31:24]: the initial APIC ID (8 bits; x2APIC IDs come from CPUID.0BH).
    pub initial_apic_id: u8,
    /// Largest standard CPUID leaf.
    pub max_leaf: u32,
    /// CPUID.15H: TSC / core crystal ratio and crystal Hz, when the CPU reports real values.
    pub tsc_crystal: Option<(u32, u32, u32)>,
    /// CPUID.16H:EAX: base frequency in MHz, when non-zero.
    pub base_mhz: Option<u32>,
}

static FEATURES: Once<CpuFeatures> = Once::new();

/// Reads CPUID on the boot CPU.
pub fn detect() -> CpuFeatures {
    // Leaves beyond the reported maxima are not read (they would alias other leaves).
    let l0 = __cpuid(0);
    let l1 = __cpuid(1);
    let l7 = if l0.eax >= 7 { __cpuid_count(7, 0) } else { __cpuid(0) };
    let e0 = __cpuid(0x8000_0000);
    let e1 = if e0.eax >= 0x8000_0001 { __cpuid(0x8000_0001) } else { __cpuid(0) };
    let e7 = if e0.eax >= 0x8000_0007 { __cpuid(0x8000_0007) } else { __cpuid(0) };
    let has7 = l0.eax >= 7;
    let tsc_crystal = if l0.eax >= 0x15 {
        let r = __cpuid(0x15);
        (r.eax != 0 && r.ebx != 0).then_some((r.eax, r.ebx, r.ecx))
    } else {
        None
    };
    let base_mhz = if l0.eax >= 0x16 {
        let r = __cpuid(0x16);
        (r.eax & 0xffff != 0).then_some(r.eax & 0xffff)
    } else {
        None
    };
    CpuFeatures {
        apic: l1.edx & (1 << 9) != 0,
        x2apic: l1.ecx & (1 << 21) != 0,
        tsc_deadline: l1.ecx & (1 << 24) != 0,
        nx: e1.edx & (1 << 20) != 0,
        smep: has7 && l7.ebx & (1 << 7) != 0,
        smap: has7 && l7.ebx & (1 << 20) != 0,
        rdrand: l1.ecx & (1 << 30) != 0,
        arch_capabilities: has7 && l7.edx & (1 << 29) != 0,
        invariant_tsc: e7.edx & (1 << 8) != 0,
        initial_apic_id: (l1.ebx >> 24) as u8,
        max_leaf: l0.eax,
        tsc_crystal,
        base_mhz,
    }
}

/// The boot CPU's features (detected once).
pub fn features() -> &'static CpuFeatures {
    FEATURES.call_once(detect)
}

/// Detects features and turns on the protection bits on the boot CPU. A CPU without a local
/// APIC stops the boot here, said plainly: every timer, IPI and device interrupt of Keel goes
/// through it, and its registers would read as garbage (an APIC ID, a timer frequency) were
/// the boot to go on.
pub fn init_boot_cpu_features() {
    let f = features();
    ev!("cpu.apic_cpuid", if f.apic { "yes" } else { "no" });
    if !f.apic {
        log::error!(
            "cpu: CPUID.01H:EDX[9] is clear: this CPU has no local APIC, which Keel needs for its \
             timer, IPIs and interrupts; stopping"
        );
        crate::exit::verdict(false, "no local APIC");
    }
    log::info!(
        "cpu: x2apic={} tsc-deadline={} nx={} smep={} smap={} rdrand={} invariant-tsc={}",
        f.x2apic,
        f.tsc_deadline,
        f.nx,
        f.smep,
        f.smap,
        f.rdrand,
        f.invariant_tsc
    );
    enable_protection();
    let cr4 = Cr4::read();
    let yes = |b: bool| if b { "yes" } else { "no" };
    ev!("cpu.x2apic_cpuid", yes(f.x2apic));
    ev!("cpu.tsc_deadline", yes(f.tsc_deadline));
    ev!("cpu.nx", yes(Efer::read().contains(EferFlags::NO_EXECUTE_ENABLE)));
    ev!("cpu.smep", yes(cr4.contains(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION)));
    ev!("cpu.smap", yes(cr4.contains(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION)));
    ev!("cpu.wp", yes(Cr0::read().contains(Cr0Flags::WRITE_PROTECT)));
    report_hypervisor();
}

/// Evidence only: which KVM paravirtual interrupt features the hypervisor *offers*. Keel never
/// uses them (timer, EOI, IPI and shootdown go through the architectural LAPIC); the `kvm-pv`
/// proofs print this to show the two configurations really differ.
fn report_hypervisor() {
    // Hypervisor leaves are read only when CPUID.1:ECX[31] says one is there.
    let hv = __cpuid(1).ecx & (1 << 31) != 0;
    let mut pv_eoi = false;
    let mut pv_ipi = false;
    if hv {
        let sig = __cpuid(0x4000_0000);
        let kvm = sig.ebx == 0x4b4d_564b && sig.ecx == 0x564b_4d56 && sig.edx == 0x4d;
        if kvm && sig.eax >= 0x4000_0001 {
            let features = __cpuid(0x4000_0001).eax;
            pv_eoi = features & (1 << 6) != 0; // KVM_FEATURE_PV_EOI
            pv_ipi = features & (1 << 11) != 0; // KVM_FEATURE_PV_SEND_IPI
        }
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    ev!("hv.present", yes(hv));
    ev!("hv.kvm_pv_eoi", yes(pv_eoi));
    ev!("hv.kvm_pv_ipi", yes(pv_ipi));
}

/// NX, WP, SMEP and SMAP on this CPU where the CPU has them. Called on every CPU.
pub fn enable_protection() {
    let f = features();
    // SAFETY: the kernel maps its own pages with correct writable/NX bits and never touches
    // user pages without `stac`, so these bits only turn latent bugs into faults.
    unsafe {
        if f.nx {
            Efer::update(|e| e.insert(EferFlags::NO_EXECUTE_ENABLE));
        }
        Cr0::update(|c| c.insert(Cr0Flags::WRITE_PROTECT));
        Cr4::update(|c| {
            if f.smep {
                c.insert(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION);
            }
            if f.smap {
                c.insert(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION);
            }
        });
    }
}

/// Reads a model-specific register.
///
/// # Safety
/// The MSR must exist on this CPU (reading a missing MSR raises #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    // SAFETY: forwarded to the caller.
    unsafe { Msr::new(msr).read() }
}

/// Writes a model-specific register.
///
/// # Safety
/// The MSR must exist and the value must be valid for it; the write's side effects are the
/// caller's responsibility.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: forwarded to the caller.
    unsafe { Msr::new(msr).write(value) }
}

/// Reads the time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is unprivileged-safe and has no side effects (CR4.TSD is clear).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// `mfence; lfence`: Intel requires this before an x2APIC ICR write or a TSC_DEADLINE write
/// so that earlier stores are visible before the (non-serialising) WRMSR takes effect.
#[inline]
pub fn wrmsr_fence() {
    // SAFETY: fences have no effects beyond ordering.
    unsafe { core::arch::asm!("mfence", "lfence", options(nostack, preserves_flags)) };
}
