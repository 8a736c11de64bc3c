//! Per-CPU data, reached through GS. Each CPU's `PerCpu` starts with a pointer to itself, so
//! `gs:[0]` yields the current CPU's block in one instruction. The block never moves and is
//! never freed; other CPUs may read its atomics (counters, mailbox) through [`cpu`].
//!
//! A CPU *index* (0 = boot CPU, dense) is separate from its APIC ID (sparse, 32-bit).

use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use super::gdt::CpuTables;
use super::smp::Mailbox;

/// Threads one CPU's run queue can hold (reserved up front: wake-ups never allocate).
pub const RUN_QUEUE_CAPACITY: usize = 256;

/// Upper bound on CPUs Keel manages: the platform's limit (4,096, q35's maximum; the MADT
/// may list more, and the rest are reported).
pub const MAX_CPUS: usize = keel_platform::MAX_CPUS;
const _: () = assert!(MAX_CPUS <= keel_shootdown::MAX_CPUS, "CPU masks must hold every CPU index");

/// Kernel stack of each AP (its idle loop and the scheduler context).
pub const AP_STACK_SIZE: usize = 64 * 1024;

/// One CPU's private block.
#[repr(C)]
pub struct PerCpu {
    self_ptr: *const PerCpu,
    /// Kernel stack top for `syscall` entry (offset 8: read by the entry stub); the current
    /// thread's kernel stack, also mirrored into TSS.RSP0 for interrupts from ring 3.
    pub kernel_stack_top: AtomicU64,
    /// Scratch slot for the user RSP during `syscall` entry (offset 16).
    pub user_rsp_scratch: AtomicU64,
    /// Dense index (0 = boot CPU).
    pub index: u32,
    /// This CPU's APIC ID as read from its own LAPIC.
    pub apic_id: AtomicU32,
    /// IA32_APIC_BASE as this CPU left it after choosing its LAPIC mode.
    pub apic_base: AtomicU64,
    /// The PML4 this CPU loaded last through `paging::load_space` (0 before the first load:
    /// the kernel tables). Shootdown handlers compare it instead of reading CR3.
    pub loaded_space: AtomicU64,
    /// This CPU's x2APIC logical ID (its LDR) in x2APIC mode; 0 in xAPIC mode, where Keel
    /// addresses CPUs physically only.
    pub x2apic_ldr: AtomicU32,
    /// Set by the CPU itself once it can take interrupts and IPIs.
    pub online: AtomicBool,
    /// LAPIC timer interrupts taken (vector 48).
    pub timer_ticks: AtomicU64,
    /// Measured LAPIC timer input frequency (Hz, after the divider).
    pub timer_hz: AtomicU64,
    /// IPIs taken on vector 49.
    pub ipis_received: AtomicU64,
    /// Spurious LAPIC interrupts (never EOI'd).
    pub spurious: AtomicU64,
    /// LAPIC error interrupts, and the last ESR value seen.
    pub lapic_errors: AtomicU64,
    pub last_esr: AtomicU32,
    /// Device interrupts handled on this CPU.
    pub device_interrupts: AtomicU64,
    /// NMIs taken (outside panic stops).
    pub nmis: AtomicU64,
    /// Incoming IPI requests.
    pub mailbox: Mailbox,
    /// This CPU's scheduler state (run queue, current thread, idle context).
    pub sched: crate::task::sched::CpuSched,
    /// This CPU's TSS and GDT (set when the CPU installs them).
    pub tables: AtomicPtr<CpuTables>,
    /// TLB shootdown requests aimed at this CPU.
    pub tlb: super::tlb::Inbox,
    /// Timer-driven preemptions.
    pub preemptions: AtomicU64,
    /// Entries from ring 3 counted on each entry path: `syscall`, and the `int 0x80` gate.
    pub syscall_entries: AtomicU64,
    pub int80_entries: AtomicU64,
    /// This CPU's LVT timer register as read back after its tick was started.
    pub timer_lvt: AtomicU32,
    /// This CPU's LVT LINT0 and LINT1 registers as read back after the LAPIC was enabled.
    pub lint_lvt: [AtomicU32; 2],
    /// IPI 49s other CPUs sent to wake a thread queued here (counted by the sender; the
    /// receive side is `ipis_received`).
    pub wake_ipis: AtomicU64,
}

/// Byte offsets the assembly entry stubs rely on.
pub const KERNEL_STACK_TOP_OFFSET: usize = 8;
pub const USER_RSP_SCRATCH_OFFSET: usize = 16;
const _: () = assert!(core::mem::offset_of!(PerCpu, kernel_stack_top) == KERNEL_STACK_TOP_OFFSET);
const _: () = assert!(core::mem::offset_of!(PerCpu, user_rsp_scratch) == USER_RSP_SCRATCH_OFFSET);

// SAFETY: all shared fields are atomics; `self_ptr` is only read by the owning CPU.
unsafe impl Sync for PerCpu {}

impl PerCpu {
    const fn new(index: u32) -> PerCpu {
        PerCpu {
            self_ptr: null_mut(),
            kernel_stack_top: AtomicU64::new(0),
            user_rsp_scratch: AtomicU64::new(0),
            index,
            apic_id: AtomicU32::new(u32::MAX),
            apic_base: AtomicU64::new(0),
            loaded_space: AtomicU64::new(0),
            x2apic_ldr: AtomicU32::new(0),
            online: AtomicBool::new(false),
            timer_ticks: AtomicU64::new(0),
            timer_hz: AtomicU64::new(0),
            ipis_received: AtomicU64::new(0),
            spurious: AtomicU64::new(0),
            lapic_errors: AtomicU64::new(0),
            last_esr: AtomicU32::new(0),
            device_interrupts: AtomicU64::new(0),
            nmis: AtomicU64::new(0),
            mailbox: Mailbox::new(),
            sched: crate::task::sched::CpuSched::new(),
            tables: AtomicPtr::new(null_mut()),
            tlb: super::tlb::Inbox::new(),
            preemptions: AtomicU64::new(0),
            syscall_entries: AtomicU64::new(0),
            int80_entries: AtomicU64::new(0),
            timer_lvt: AtomicU32::new(0),
            lint_lvt: [AtomicU32::new(0), AtomicU32::new(0)],
            wake_ipis: AtomicU64::new(0),
        }
    }
}

static CPUS: [AtomicPtr<PerCpu>; MAX_CPUS] = [const { AtomicPtr::new(null_mut()) }; MAX_CPUS];
static CPU_COUNT: AtomicU32 = AtomicU32::new(0);
static GS_READY_ON_BOOT_CPU: AtomicBool = AtomicBool::new(false);

static mut BOOT_CPU: PerCpu = PerCpu::new(0);
static mut BOOT_TABLES: CpuTables = CpuTables::new();

fn install(block: *mut PerCpu, tables: *mut CpuTables) {
    // SAFETY: `block` is this CPU's 'static block; the self pointer is written before GS
    // points at it, and IA32_GS_BASE takes any canonical address.
    let index = unsafe {
        (*block).self_ptr = block;
        (*block).tables.store(tables, Ordering::Release);
        x86_64::registers::model_specific::GsBase::write(x86_64::VirtAddr::from_ptr(block));
        (*block).index as usize
    };
    CPUS[index].store(block, Ordering::Release);
    CPU_COUNT.fetch_max(index as u32 + 1, Ordering::AcqRel);
}

/// Boot CPU: GS, then its GDT/TSS (static: they must exist before the heap does, since the
/// IDT's IST entries need a loaded TSS).
pub fn init_boot_cpu() {
    // SAFETY: runs once on the boot CPU before anything else reads BOOT_CPU/BOOT_TABLES.
    unsafe {
        install(core::ptr::addr_of_mut!(BOOT_CPU), core::ptr::addr_of_mut!(BOOT_TABLES));
        GS_READY_ON_BOOT_CPU.store(true, Ordering::Release);
        (*core::ptr::addr_of_mut!(BOOT_TABLES)).load();
    }
}

/// Reserves the boot CPU's run queue (once the heap exists).
pub fn init_boot_cpu_heap() {
    current().sched.reserve(RUN_QUEUE_CAPACITY);
}

/// An AP's block, tables and stack, allocated by the boot CPU before the AP starts and
/// installed by the AP itself.
pub struct ApBlocks {
    pub percpu: *mut PerCpu,
    pub tables: *mut CpuTables,
    /// Top of the AP's kernel stack (16-byte aligned).
    pub stack_top: u64,
}

// SAFETY: the blocks are handed from the boot CPU to their AP once; neither side aliases them
// mutably afterwards (the AP owns them, others read the atomics in `PerCpu`).
unsafe impl Send for ApBlocks {}
// SAFETY: as above; the pointers are only dereferenced by the owning AP.
unsafe impl Sync for ApBlocks {}

const fn pages(bytes: usize) -> usize {
    bytes.div_ceil(4096) * 4096
}

/// Frame memory one AP needs: stack, GDT/TSS/IST/I/O bitmap, per-CPU block.
pub const AP_FRAME_BYTES: usize =
    pages(AP_STACK_SIZE) + pages(core::mem::size_of::<CpuTables>()) + pages(core::mem::size_of::<PerCpu>());
/// Heap one AP needs (its reserved run queue and timed-event list), with slack.
pub const AP_HEAP_BYTES: usize = 2 * RUN_QUEUE_CAPACITY * 64;

/// Why an AP could not be given memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApMemoryShortage {
    /// No contiguous run of frames for its stack, tables and block.
    Frames,
    /// The heap cannot hold its run queue.
    Heap,
}

/// Frame memory for `count` APs at once (one contiguous run, so bring-up does not search the
/// frame bitmap once per CPU), or `None` when RAM has no such run; callers then fall back to
/// [`allocate_ap`] with no region, one AP at a time.
pub fn reserve_ap_region(count: usize) -> Option<u64> {
    let frames = (count * AP_FRAME_BYTES / 4096) as u64;
    crate::mm::frames::allocate_contiguous(frames, 4096)
}

/// Builds an AP's per-CPU block, descriptor tables and stack (never freed: CPUs never go
/// away) in frames: at `region` when the caller reserved them, else freshly allocated.
pub fn allocate_ap(index: u32, region: Option<u64>) -> Result<ApBlocks, ApMemoryShortage> {
    if crate::mm::heap::free_bytes() < AP_HEAP_BYTES {
        return Err(ApMemoryShortage::Heap);
    }
    let phys = match region {
        Some(p) => p,
        None => crate::mm::frames::allocate_contiguous((AP_FRAME_BYTES / 4096) as u64, 4096)
            .ok_or(ApMemoryShortage::Frames)?,
    };
    let base = crate::mm::phys_to_virt(phys).as_u64();
    let stack_top = base + AP_STACK_SIZE as u64;
    let tables = (base + pages(AP_STACK_SIZE) as u64) as *mut CpuTables;
    let percpu = (tables as u64 + pages(core::mem::size_of::<CpuTables>()) as u64) as *mut PerCpu;
    // SAFETY: the frames were allocated for this AP alone (page-aligned, so aligned for both
    // types), are RAM in the physical map, and nothing else references them.
    unsafe {
        tables.write(CpuTables::new());
        percpu.write(PerCpu::new(index));
        (*percpu).sched.reserve(RUN_QUEUE_CAPACITY);
    }
    Ok(ApBlocks { percpu, tables, stack_top: stack_top & !0xf })
}

/// On the AP: installs its GS and loads its GDT/TSS.
///
/// # Safety
/// Must run once, on the AP the blocks were allocated for.
pub unsafe fn install_ap(blocks: &ApBlocks) {
    install(blocks.percpu, blocks.tables);
    // SAFETY: the tables were allocated for this AP alone and live forever.
    unsafe { (*blocks.tables).load() };
}

/// The current CPU's block.
#[inline]
pub fn current() -> &'static PerCpu {
    let ptr: *const PerCpu;
    // SAFETY: GS points at this CPU's PerCpu whose first field is its own address.
    unsafe { core::arch::asm!("mov {}, gs:[0]", out(reg) ptr, options(nostack, readonly, preserves_flags)) };
    // SAFETY: installed blocks are 'static and never freed.
    unsafe { &*ptr }
}

/// Whether GS points at a per-CPU block (false only in the first steps of boot).
pub fn gs_ready() -> bool {
    GS_READY_ON_BOOT_CPU.load(Ordering::Acquire)
}

/// The current CPU index, or 0 before the boot CPU installed GS (early logging).
pub fn current_index_or_boot() -> u32 {
    if gs_ready() {
        current().index
    } else {
        0
    }
}

/// CPU `index`'s block, if that CPU was set up.
pub fn cpu(index: u32) -> Option<&'static PerCpu> {
    let p = CPUS.get(index as usize)?.load(Ordering::Acquire);
    // SAFETY: non-null entries point at installed 'static blocks.
    (!p.is_null()).then(|| unsafe { &*p })
}

/// All CPUs set up so far (online or not), in index order.
pub fn all() -> impl Iterator<Item = &'static PerCpu> {
    (0..CPU_COUNT.load(Ordering::Acquire)).filter_map(cpu)
}

/// CPUs that reported online.
pub fn online() -> impl Iterator<Item = &'static PerCpu> {
    all().filter(|c| c.online.load(Ordering::Acquire))
}

/// Points this CPU's ring-0 entry stack (TSS.RSP0 for interrupts, the `syscall` stack) at
/// `top`: the kernel stack of the thread about to run in ring 3.
pub fn set_kernel_stack(top: u64) {
    let me = current();
    me.kernel_stack_top.store(top, Ordering::Relaxed);
    let tables = me.tables.load(Ordering::Relaxed);
    // SAFETY: the tables belong to this CPU; RSP0 is only read by the CPU on a privilege change,
    // which cannot happen while we run here with interrupts off or in ring 0.
    unsafe { (*tables).tss.privilege_stack_table[0] = x86_64::VirtAddr::new(top) };
}
