//! Loading programs: the boot manifest (a Multiboot module) names programs (other modules)
//! and the capabilities each gets. Nothing is granted that the manifest does not name, and
//! nothing is loaded before the grant policy (`init::grant_policy`) accepted the program.

use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

use keel_abi::{
    CapInfo, ObjectKind, StartInfo, RING_VADDR, START_INFO_VADDR, USER_STACK_SIZE, USER_STACK_TOP,
};
use keel_elf::ElfImage;
use keel_manifest::{Grant, InterruptSource, Manifest, Program};

use super::process::Process;
use super::sched;
use super::thread::Thread;
use crate::object::{interrupt, DeviceMemory, Object};
use fw::arch::x86_64::percpu;
use fw::mm::address_space::{AddressSpace, UserPerms, USER_END};
use fw::mm::{frames, phys_to_virt, BootContext};

/// A boot module's bytes, named by the basename of its path.
pub struct ModuleImage {
    pub name: String,
    pub bytes: &'static [u8],
}

/// The boot modules, readable through the physical map.
pub fn modules(boot: &BootContext) -> Vec<ModuleImage> {
    boot.modules
        .iter()
        .map(|m| {
            let len = (m.end - m.start) as usize;
            fw::mm::paging::map_physical(m.start, len as u64, fw::mm::paging::Caching::WriteBack);
            // SAFETY: module memory is reserved from the frame allocator for the kernel's
            // lifetime and mapped in the physical map (just ensured).
            let bytes =
                unsafe { core::slice::from_raw_parts(phys_to_virt(m.start).as_ptr::<u8>(), len) };
            ModuleImage { name: keel_manifest::module_basename(&m.name).to_string(), bytes }
        })
        .collect()
}

/// Finds and parses the manifest module (`*.manifest`).
pub fn manifest(mods: &[ModuleImage]) -> Result<Manifest, String> {
    let m = mods.iter().find(|m| m.name.ends_with(".manifest")).ok_or("no *.manifest module")?;
    let text = core::str::from_utf8(m.bytes).map_err(|_| "manifest is not UTF-8")?;
    keel_manifest::parse(text).map_err(|e| alloc::format!("{}: {e}", m.name))
}

/// The PCI function the manifest's device `name` names, if present.
pub fn resolve_device(
    manifest: &Manifest,
    name: &str,
) -> Result<&'static fw::pci::PciDevice, String> {
    let d = manifest.device(name).ok_or_else(|| alloc::format!("unknown device {name}"))?;
    fw::pci::find(d.vendor, d.device, d.index).ok_or_else(|| {
        alloc::format!("PCI device {name} ({:04x}:{:04x}) not present", d.vendor, d.device)
    })
}

/// Set only by a proof scenario (`scenarios` feature); a kernel without them has no such state.
#[cfg(feature = "scenarios")]
static IRQS_TO_BOOT_CPU: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// For the remote-wake proof: deliver every device interrupt to CPU 0, so a driver on another
/// CPU is always woken through IPI 49. Exists only in a kernel built with the scenarios.
#[cfg(feature = "scenarios")]
pub fn deliver_irqs_to_boot_cpu() {
    IRQS_TO_BOOT_CPU.store(true, core::sync::atomic::Ordering::Relaxed);
}

/// Whether a proof scenario asked for [`deliver_irqs_to_boot_cpu`]; never without them.
fn irqs_forced_to_boot_cpu() -> bool {
    #[cfg(feature = "scenarios")]
    return IRQS_TO_BOOT_CPU.load(core::sync::atomic::Ordering::Relaxed);
    #[cfg(not(feature = "scenarios"))]
    false
}

/// Where a driver's device interrupts go: its own CPU (the wake-up is then local, no IPI),
/// unless that CPU cannot be reached by a device interrupt (APIC ID > 254 without VT-d
/// interrupt remapping in x2APIC mode: the driver is then woken through IPI 49) or a proof
/// scenario asked for CPU 0.
pub fn interrupt_target(program_cpu: u32) -> &'static percpu::PerCpu {
    use core::sync::atomic::Ordering;
    let boot = percpu::cpu(0).expect("boot CPU");
    if irqs_forced_to_boot_cpu() {
        return boot;
    }
    match percpu::cpu(program_cpu) {
        Some(c) if c.online.load(Ordering::Acquire) => {
            let apic_id = keel_apic::ApicId::new(c.apic_id.load(Ordering::Acquire));
            match fw::arch::x86_64::ioapic::reachable(apic_id) {
                Ok(()) => c,
                Err(why) => {
                    log::info!("loader: device interrupts for cpu{program_cpu} go to cpu0: {why}");
                    boot
                }
            }
        }
        _ => boot,
    }
}

fn grant(
    manifest: &Manifest,
    g: &Grant,
    process: &Arc<Process>,
    cpu: u32,
) -> Result<(Object, [u64; 2]), String> {
    Ok(match g {
        Grant::Console => (Object::Console, [0, 0]),
        Grant::Timer => (Object::Timer, [0, 0]),
        Grant::Process => (Object::Process, [0, 0]),
        Grant::VirtualMemory => (Object::VirtualMemory, [0, 0]),
        Grant::IoPorts { first, last } => {
            (Object::IoPorts { first: *first, last: *last }, [*first as u64, *last as u64])
        }
        Grant::DeviceMemory { device, bar } => {
            let dev = resolve_device(manifest, device)?;
            let b = dev.bars[*bar as usize];
            if !b.mmio || b.size == 0 {
                return Err(alloc::format!("{device} BAR {bar} is not a memory BAR"));
            }
            fw::pci::enable(dev, true, false, true);
            (
                Object::DeviceMemory(Arc::new(
                    DeviceMemory::new(b.phys, b.size, dev.addr.bdf())
                        .withholding(crate::object::msix::kernel_pages(dev, *bar)),
                )),
                [b.size, dev.addr.bdf() as u64],
            )
        }
        Grant::Interrupt(source, requested_cpu) => {
            let request = match source {
                InterruptSource::Isa(irq) => interrupt::ManifestSource::Isa(*irq),
                InterruptSource::Intx(d) => {
                    interrupt::ManifestSource::Intx(resolve_device(manifest, d)?, d)
                }
                InterruptSource::Msi(d) => {
                    interrupt::ManifestSource::Msi(resolve_device(manifest, d)?, d)
                }
                InterruptSource::Msix(d, entry) => {
                    interrupt::ManifestSource::Msix(resolve_device(manifest, d)?, d, *entry)
                }
            };
            let target = interrupt_target(requested_cpu.unwrap_or(cpu));
            let obj = interrupt::acquire(request, process, target)
                .map_err(|e| alloc::format!("{source}: {e}"))?;
            let vector = obj.vector() as u64;
            (Object::Interrupt(obj), [vector, 0])
        }
    })
}

/// Maps the ELF segments (file bytes copied, the rest zero) and the stack into `space`.
fn map_image(space: &mut AddressSpace, elf: &ElfImage<'_>) -> Result<(), String> {
    for seg in elf.segments() {
        let perms = UserPerms { write: seg.flags.write, exec: seg.flags.exec, uncached: false };
        let data = elf.segment_data(&seg);
        let (first, last) = seg.page_range();
        for page in (first..last).step_by(4096) {
            let frame = match space.translate(page) {
                Some(existing) => existing & !0xfff, // shared with the previous segment
                None => space
                    .map_new(page, perms)
                    .map_err(|e| alloc::format!("map {page:#x}: {e:?}"))?,
            };
            // Copy the file bytes that fall into this page.
            let copy_start = page.max(seg.vaddr);
            let copy_end = (page + 4096).min(seg.vaddr + seg.filesz);
            if copy_start < copy_end {
                let src = &data[(copy_start - seg.vaddr) as usize..(copy_end - seg.vaddr) as usize];
                // SAFETY: `frame` is a frame of this new address space, reached through the
                // physical map; the destination stays within it.
                unsafe {
                    let dst = phys_to_virt(frame + (copy_start - page)).as_mut_ptr::<u8>();
                    core::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len());
                }
            }
        }
    }
    let stack = UserPerms { write: true, exec: false, uncached: false };
    for page in ((USER_STACK_TOP - USER_STACK_SIZE)..USER_STACK_TOP).step_by(4096) {
        space.map_new(page, stack).map_err(|e| alloc::format!("stack: {e:?}"))?;
    }
    Ok(())
}

/// Loads `program` (accepted by the grant policy, `init::grant_policy`), grants its
/// capabilities and queues its thread.
pub fn load_and_queue(
    manifest: &Manifest,
    program: &Program,
    mods: &[ModuleImage],
) -> Result<Arc<Process>, String> {
    let module = mods
        .iter()
        .find(|m| m.name == program.binary)
        .ok_or_else(|| alloc::format!("no module named {}", program.binary))?;
    let elf = ElfImage::parse(module.bytes, USER_END)
        .map_err(|e| alloc::format!("{}: {e}", program.binary))?;
    let mut space = AddressSpace::new().map_err(|e| alloc::format!("{e:?}"))?;
    // A half-built space goes back whole (its frames with it).
    if let Err(e) = map_image(&mut space, &elf) {
        space.destroy();
        return Err(e);
    }
    let Some(start_phys) = frames::allocate_zeroed() else {
        space.destroy();
        return Err("no memory for the start info".into());
    };
    if let Err(e) = space.map_kernel_page(
        START_INFO_VADDR,
        start_phys,
        UserPerms { write: false, exec: false, uncached: false },
    ) {
        frames::free(start_phys);
        space.destroy();
        return Err(alloc::format!("start info: {e:?}"));
    }

    let process = Process::new(&program.name, space);
    process.set_start_info(start_phys);
    let setup = || -> Result<_, String> {
        let ring = process.new_ring().map_err(|e| alloc::format!("ring: {e:?}"))?;
        debug_assert_eq!(ring.1, RING_VADDR);
        let mut info = StartInfo::empty();
        if fw::arch::x86_64::syscall_entry::int80_by_default() {
            info.entry_gate = keel_abi::ENTRY_INT80;
        }
        let _ = info.set_args(program.args.as_bytes());
        let _ = info.set_program_name(program.name.as_bytes());
        for g in &program.grants {
            let (object, param) = grant(manifest, g, &process, program.cpu_or_default())?;
            let kind: ObjectKind = object.kind();
            let id = { process.caps.lock().insert(object) }
                .map_err(|e| alloc::format!("cap table: {e:?}"))?;
            info.push_cap(CapInfo { id, kind: kind as u32, param })
                .map_err(|_| "too many grants for the start info")?;
        }
        process.with_start_info(|page| *page = info);
        Ok(ring)
    };
    let ring = match setup() {
        Ok(ring) => ring,
        Err(e) => {
            // Nothing granted so far may stay with a process that never runs.
            super::process::abandon(&process, u64::MAX);
            return Err(e);
        }
    };

    let cpu = program.cpu_or_default();
    let cpu =
        if percpu::cpu(cpu).is_some_and(|c| c.online.load(core::sync::atomic::Ordering::Acquire)) {
            cpu
        } else {
            0
        };
    let thread = Thread::new_user(
        process.clone(),
        cpu,
        elf.entry(),
        USER_STACK_TOP,
        ring,
        START_INFO_VADDR,
        0,
    );
    process.add_thread(thread.clone());
    log::info!(
        "started {} (pid {}) from {} on cpu{cpu} with {} capabilities",
        program.name,
        process.pid,
        program.binary,
        program.grants.len()
    );
    sched::enqueue(thread);
    Ok(process)
}
