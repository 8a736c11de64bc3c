//! Per-CPU data, reached through GS. Each CPU's block starts with a pointer to itself, so
//! `gs:[0]` yields the current CPU's block in one instruction. Blocks never move and are never
//! freed. A block has two parts:
//!
//! - [`PerCpu`], what other CPUs read or post to (APIC identity, the LAPIC timer, the IPI
//!   mailbox, the TLB inbox): atomics and locks only, so it is `Sync` by construction. Any
//!   CPU reaches any CPU's part through [`cpu`], [`all`] and [`online`]; the current CPU's
//!   through [`current`].
//! - [`CpuLocal`], what only the owning CPU touches (the `syscall` entry slots, the loaded
//!   address space, its TSS): plain cells, not `Sync`, reachable only through [`local`].
//!
//! A module's own per-CPU state is not here: its owner declares it with
//! [`cpu_local!`](crate::cpu_local) (the scheduler's run queue and current thread, the entry
//! counters of the trap entry, the IPI and device interrupt counts, the NMI counts).
//!
//! [`current`] and [`local`] take an [`IrqGuard`] and the references they return borrow it,
//! so "this CPU" cannot outlive the proof that the code is not moved to another one.
//!
//! A CPU *index* (0 = boot CPU, dense) is separate from its APIC ID (sparse, 32-bit).

use core::cell::{Cell, UnsafeCell};
use core::mem::MaybeUninit;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use super::gdt::CpuTables;
pub use super::irq_guard::IrqGuard;
use super::smp::Mailbox;

/// Upper bound on CPUs Keel manages: the platform's limit (4,096, q35's maximum; the MADT
/// may list more, and the rest are reported).
pub const MAX_CPUS: usize = keel_platform::MAX_CPUS;
const _: () = assert!(MAX_CPUS <= keel_shootdown::MAX_CPUS, "CPU masks must hold every CPU index");

/// Kernel stack of each AP (its idle loop and the scheduler context).
pub const AP_STACK_SIZE: usize = 64 * 1024;

/// One CPU's block as GS sees it: the self pointer at `gs:[0]`, then the CPU-private part
/// (whose first two slots the `syscall` stub addresses), then the shared part.
#[repr(C)]
struct CpuBlock {
    self_ptr: *const CpuBlock,
    local: CpuLocal,
    /// Next to the entry slots, in the block's first cache lines.
    upper: UpperArea,
    shared: PerCpu,
}

/// Bytes each CPU's block keeps for the CPU-local variables of every module
/// (`cpu_local`; the scheduler's two, the kept address space and the counters take 240
/// together).
pub const UPPER_AREA_BYTES: usize = 1024;

/// This CPU's copy of the CPU-local variables (`cpu_local`): in the CPU's own block, next to
/// the entry slots, filled from `.cpu_local` when the block is built.
#[repr(C, align(64))]
pub struct UpperArea(UnsafeCell<MaybeUninit<[u8; UPPER_AREA_BYTES]>>);

/// What only the owning CPU touches, with interrupts off. Only [`local`] hands out a
/// reference, and only to the calling CPU's own part; cells make it `!Sync`, so that
/// reference cannot be passed to code running elsewhere.
#[repr(C)]
pub struct CpuLocal {
    /// Kernel stack top for `syscall` entry (`gs:[8]`, read by the entry stub): the current
    /// thread's kernel stack, also mirrored into TSS.RSP0 for interrupts from ring 3.
    kernel_stack_top: Cell<u64>,
    /// Scratch slot for the user RSP during `syscall` entry (`gs:[16]`, entry stub only).
    user_rsp_scratch: Cell<u64>,
    /// This CPU's TSS and GDT (set once, before GS points at the block).
    tables: *mut CpuTables,
    /// The PML4 this CPU loaded last through `paging::load_space` (0 before the first load:
    /// the kernel tables). Shootdown handlers compare it instead of reading CR3.
    pub loaded_space: Cell<u64>,
}

/// What other CPUs may read or post to: atomics and locks only, hence `Sync` without an
/// `unsafe impl`.
pub struct PerCpu {
    /// Dense index (0 = boot CPU).
    pub index: u32,
    /// This CPU's APIC ID as read from its own LAPIC.
    pub apic_id: AtomicU32,
    /// IA32_APIC_BASE as this CPU left it after choosing its LAPIC mode.
    pub apic_base: AtomicU64,
    /// This CPU's x2APIC logical ID (its LDR) in x2APIC mode; 0 in xAPIC mode, where Keel
    /// addresses CPUs physically only.
    pub x2apic_ldr: AtomicU32,
    /// Set by the CPU itself once it can take interrupts and IPIs.
    pub online: AtomicBool,
    /// This CPU's LAPIC timer and interrupt counters (kept by `lapic`).
    pub lapic: super::lapic::CpuLapic,
    /// This CPU's view of the CPU it watches for hard lockups (written only by this CPU).
    pub lockup: super::lockup::Watch,
    /// This CPU's one-shot timer state (tickless mode).
    pub oneshot: super::oneshot::Oneshot,
    /// Incoming IPI requests.
    pub mailbox: Mailbox,
    /// TLB shootdown requests aimed at this CPU.
    pub tlb: super::tlb::Inbox,
    /// `IoPorts` revocations aimed at this CPU, and its I/O bitmap figures.
    pub io_revoke: super::io_bitmap::RevokeInbox,
}

/// Byte offsets the assembly entry stubs rely on.
pub const KERNEL_STACK_TOP_OFFSET: usize = 8;
pub const USER_RSP_SCRATCH_OFFSET: usize = 16;
const _: () = assert!(core::mem::offset_of!(CpuBlock, self_ptr) == 0);
const _: () = assert!(
    core::mem::offset_of!(CpuBlock, local) + core::mem::offset_of!(CpuLocal, kernel_stack_top)
        == KERNEL_STACK_TOP_OFFSET
);
const _: () = assert!(
    core::mem::offset_of!(CpuBlock, local) + core::mem::offset_of!(CpuLocal, user_rsp_scratch)
        == USER_RSP_SCRATCH_OFFSET
);
const _: () =
    assert!(core::mem::size_of::<CpuBlock>() <= 4096, "docs/smp.md budgets one page per block");
const _: () = assert!(core::mem::offset_of!(CpuBlock, upper) < 256);
/// Where the current CPU's index sits relative to GS (read in one instruction).
const INDEX_OFFSET: usize =
    core::mem::offset_of!(CpuBlock, shared) + core::mem::offset_of!(PerCpu, index);
const _: () = {
    // The shared part must be Sync by its fields alone (no `unsafe impl`).
    const fn shared_is_sync<T: Sync>() {}
    shared_is_sync::<PerCpu>();
};

impl CpuBlock {
    const fn new(index: u32) -> CpuBlock {
        CpuBlock {
            self_ptr: null_mut(),
            local: CpuLocal {
                kernel_stack_top: Cell::new(0),
                user_rsp_scratch: Cell::new(0),
                tables: null_mut(),
                loaded_space: Cell::new(0),
            },
            upper: UpperArea(UnsafeCell::new(MaybeUninit::uninit())),
            shared: PerCpu {
                index,
                apic_id: AtomicU32::new(u32::MAX),
                apic_base: AtomicU64::new(0),
                x2apic_ldr: AtomicU32::new(0),
                online: AtomicBool::new(false),
                lapic: super::lapic::CpuLapic::new(),
                lockup: super::lockup::Watch::new(),
                oneshot: super::oneshot::Oneshot::new(),
                mailbox: Mailbox::new(),
                tlb: super::tlb::Inbox::new(),
                io_revoke: super::io_bitmap::RevokeInbox::new(),
            },
        }
    }
}

impl CpuLocal {
    /// This CPU's GDT/TSS/I-O bitmap. Writes through the pointer must happen with
    /// interrupts off (the caller's guard) and touch only what the CPU reads on a privilege
    /// change or a ring-3 port access.
    pub fn tables(&self) -> *mut CpuTables {
        self.tables
    }
}

/// Each CPU's [`UpperArea`], by index: published when its block is built (before the
/// kernel's `prepare_cpu` upcall fills it), read by `cpu_local`.
static UPPER_AREAS: [AtomicPtr<UpperArea>; MAX_CPUS] =
    [const { AtomicPtr::new(null_mut()) }; MAX_CPUS];

/// Fills a block's CPU-local area from `.cpu_local` and publishes it by index (before the
/// kernel's `prepare_cpu` upcall for it, and before the CPU runs).
///
/// # Safety
/// `block` must be a 'static block just built, reachable by nobody else yet.
unsafe fn fill_upper_area(block: *mut CpuBlock) {
    // SAFETY: the caller's contract: the block is ours alone; only its area is written.
    let (index, area) = unsafe {
        let area = core::ptr::addr_of_mut!((*block).upper);
        super::cpu_local::fill(area.cast::<u8>());
        ((*block).shared.index, area)
    };
    UPPER_AREAS[index as usize].store(area, Ordering::Release);
}

/// The current CPU's copy of the CPU-local variables, for as long as the guard lives.
#[inline(always)]
pub(super) fn upper_area(guard: &IrqGuard) -> *mut u8 {
    block(guard).upper.0.get().cast::<u8>()
}

/// CPU `index`'s copy of the CPU-local variables, once its block is built.
#[inline(always)]
pub(super) fn upper_area_of(index: u32) -> Option<*mut u8> {
    let area = UPPER_AREAS.get(index as usize)?.load(Ordering::Acquire);
    // SAFETY: non-null entries point into 'static blocks that are never freed.
    (!area.is_null()).then(|| unsafe { (*area).0.get().cast::<u8>() })
}

/// Published blocks, by index: written once per CPU by [`install`], read by anyone.
static CPUS: [AtomicPtr<CpuBlock>; MAX_CPUS] = [const { AtomicPtr::new(null_mut()) }; MAX_CPUS];
static CPU_COUNT: AtomicU32 = AtomicU32::new(0);
static GS_READY_ON_BOOT_CPU: AtomicBool = AtomicBool::new(false);

/// The boot CPU's block and tables: statics, because they are needed before the heap and
/// the frame allocator exist.
struct BootCpu {
    claimed: AtomicBool,
    block: UnsafeCell<CpuBlock>,
    tables: UnsafeCell<CpuTables>,
}

// SAFETY: no reference to the cells is ever formed through this static: `init_boot_cpu`
// claims them once (the `claimed` swap makes a second claim panic) and hands raw pointers to
// `install`. From then on the block is reached like an AP's: its private part only by the
// boot CPU through GS (`local`), its shared part (Sync) by anyone through `CPUS`.
unsafe impl Sync for BootCpu {}

static BOOT_CPU: BootCpu = BootCpu {
    claimed: AtomicBool::new(false),
    block: UnsafeCell::new(CpuBlock::new(0)),
    tables: UnsafeCell::new(CpuTables::new()),
};

fn install(block: *mut CpuBlock, tables: *mut CpuTables) {
    // SAFETY: `block` is this CPU's 'static block, not yet reachable by anyone else: the self
    // pointer and the tables are written before GS points at it and before `CPUS` publishes
    // it. IA32_GS_BASE takes any canonical address.
    let index = unsafe {
        (*block).self_ptr = block;
        (*block).local.tables = tables;
        x86_64::registers::model_specific::GsBase::write(x86_64::VirtAddr::from_ptr(block));
        (*block).shared.index as usize
    };
    CPUS[index].store(block, Ordering::Release);
    CPU_COUNT.fetch_max(index as u32 + 1, Ordering::AcqRel);
}

/// Boot CPU: GS, then its GDT/TSS (static: they must exist before the heap does, since the
/// IDT's IST entries need a loaded TSS).
pub fn init_boot_cpu() {
    assert!(
        !BOOT_CPU.claimed.swap(true, Ordering::AcqRel),
        "the boot CPU's block is installed once"
    );
    let tables = BOOT_CPU.tables.get();
    // SAFETY: claimed once (asserted above): the boot CPU's block is ours alone until
    // `install` publishes it.
    unsafe { fill_upper_area(BOOT_CPU.block.get()) };
    install(BOOT_CPU.block.get(), tables);
    GS_READY_ON_BOOT_CPU.store(true, Ordering::Release);
    // SAFETY: claimed once (asserted above), so this is the only reference to the boot
    // CPU's tables; they are 'static and loaded on this CPU alone.
    unsafe { (*tables).load() };
}

/// An AP's block, tables and stack, allocated by the boot CPU before the AP starts and
/// installed by the AP itself.
pub struct ApBlocks {
    percpu: *mut CpuBlock,
    tables: *mut CpuTables,
    /// Top of the AP's kernel stack (16-byte aligned).
    pub stack_top: u64,
}

// SAFETY: the blocks are handed from the boot CPU to their AP once; neither side dereferences
// the pointers afterwards except `install_ap` on that AP (whose contract says so).
unsafe impl Send for ApBlocks {}
// SAFETY: as above; sharing an `ApBlocks` shares only the addresses.
unsafe impl Sync for ApBlocks {}

const fn pages(bytes: usize) -> usize {
    bytes.div_ceil(4096) * 4096
}

/// Frame memory one AP needs: stack, GDT/TSS/IST/I/O bitmap, per-CPU block.
pub const AP_FRAME_BYTES: usize = pages(AP_STACK_SIZE)
    + pages(core::mem::size_of::<CpuTables>())
    + pages(core::mem::size_of::<CpuBlock>());
/// Heap one AP needs: what the kernel's `Upcalls::prepare_cpu` reserves for it (the
/// scheduler's run queue of 256 threads and its timed-event list), with slack.
pub const AP_HEAP_BYTES: usize = 2 * 256 * 64;

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
    let percpu = (tables as u64 + pages(core::mem::size_of::<CpuTables>()) as u64) as *mut CpuBlock;
    // SAFETY: the frames were allocated for this AP alone (page-aligned, so aligned for both
    // types), are RAM in the physical map, and nothing else references them.
    unsafe {
        tables.write(CpuTables::new());
        percpu.write(CpuBlock::new(index));
        fill_upper_area(percpu);
    }
    (crate::upcall::get().prepare_cpu)(index);
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

/// This CPU's block (the one GS points at).
#[inline]
fn block(_: &IrqGuard) -> &CpuBlock {
    let ptr: *const CpuBlock;
    // SAFETY: GS points at this CPU's block, whose first field is its own address.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) ptr, options(nostack, readonly, preserves_flags))
    };
    // SAFETY: installed blocks are 'static and never freed; the guard keeps the caller on
    // this CPU for as long as the reference (which borrows it) lives.
    unsafe { &*ptr }
}

/// The current CPU's shared part, for as long as the guard proves the code stays on it.
#[inline]
pub fn current(guard: &IrqGuard) -> &PerCpu {
    &block(guard).shared
}

/// The current CPU's private part. Sound because the part is reached only here: on its
/// own CPU, with interrupts off, so no handler on this CPU and no other CPU can touch it
/// while the reference lives (NMI handlers use shared counters only).
#[inline]
pub fn local(guard: &IrqGuard) -> &CpuLocal {
    &block(guard).local
}

/// Runs `f` on the current CPU's shared part with interrupts off: a short read or count
/// outside a trap handler.
#[inline]
pub fn with_current<R>(f: impl FnOnce(&PerCpu) -> R) -> R {
    let guard = IrqGuard::new();
    f(current(&guard))
}

/// The index of the CPU this code runs on now: one GS-relative load, so it is a consistent
/// snapshot without a guard (a thread that later blocks may resume elsewhere).
#[inline]
pub fn current_index() -> u32 {
    let index: u32;
    // SAFETY: GS points at this CPU's block; its index is written before GS is and never
    // changes.
    unsafe {
        core::arch::asm!("mov {:e}, gs:[{off}]", out(reg) index, off = const INDEX_OFFSET,
            options(nostack, readonly, preserves_flags))
    };
    index
}

/// Whether GS points at a per-CPU block (false only in the first steps of boot).
pub fn gs_ready() -> bool {
    GS_READY_ON_BOOT_CPU.load(Ordering::Acquire)
}

/// The current CPU index, or 0 before the boot CPU installed GS (early logging).
pub fn current_index_or_boot() -> u32 {
    if gs_ready() {
        current_index()
    } else {
        0
    }
}

/// CPU `index`'s shared part, if that CPU was set up.
#[inline]
pub fn cpu(index: u32) -> Option<&'static PerCpu> {
    let p = CPUS.get(index as usize)?.load(Ordering::Acquire);
    // SAFETY: non-null entries point at installed 'static blocks; only the shared (Sync)
    // part is projected, without forming a reference to the whole block.
    (!p.is_null()).then(|| unsafe { &*core::ptr::addr_of!((*p).shared) })
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
#[inline]
pub fn set_kernel_stack(guard: &IrqGuard, top: u64) {
    let me = local(guard);
    me.kernel_stack_top.set(top);
    // SAFETY: the tables belong to this CPU; RSP0 is only read by the CPU on a privilege
    // change, which cannot happen while we run here in ring 0 with interrupts off (guard).
    unsafe { (*me.tables).tss.privilege_stack_table[0] = x86_64::VirtAddr::new(top) };
}
