//! Processes: an address space, a capability table, the shared ring page, granted I/O port
//! ranges and (for now) one thread. Exit — voluntary or by a fault — releases every capability
//! (an `Interrupt` source is masked and its waiter cancelled) before the thread leaves its CPU;
//! the address space is destroyed afterwards by the CPU's scheduler context, once no CPU can
//! have it loaded.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use keel_abi::{CapId, Completion, RingHeader, Status};
use keel_cap::CapTable;
use spin::Mutex;

use super::sched;
use super::thread::Thread;
use crate::arch::x86_64::interrupts::TrapFrame;
use crate::arch::x86_64::percpu;
use crate::mm::address_space::AddressSpace;
use crate::mm::phys_to_virt;
use crate::object::Object;

/// Capability slots per process.
pub const CAP_SLOTS: u16 = 256;

/// Kernel-side ring state: the kernel's own copies of the indices it owns (the page's copies
/// are published for the user, never trusted back), and the `cap_enter` waiter.
pub struct RingState {
    pub sq_head: u32,
    pub cq_tail: u32,
    /// Deferred operations holding a completion slot reservation.
    pub in_flight: u32,
    /// A thread blocked in `cap_enter` and the completion count it waits for.
    pub waiter: Option<(Arc<Thread>, u32)>,
    /// Completions that could not be posted (the user corrupted `cq_head`).
    pub overflow: u32,
}

static NEXT_PID: AtomicU64 = AtomicU64::new(1);
static PROCESSES: Mutex<Vec<Arc<Process>>> = Mutex::new(Vec::new());

/// One process.
pub struct Process {
    pub pid: u64,
    pub name: String,
    pml4: u64,
    space: Mutex<Option<AddressSpace>>,
    pub caps: Mutex<CapTable<Object>>,
    ring_phys: u64,
    pub ring: Mutex<RingState>,
    io_ranges: Mutex<Vec<(u16, u16)>>,
    console_line: Mutex<String>,
    exited: AtomicBool,
    destroyed: AtomicBool,
    pub exit_code: AtomicU64,
    thread: Mutex<Option<Arc<Thread>>>,
    /// Completion statistics for reports.
    pub completions: AtomicU64,
    pub errors: AtomicU64,
    /// Physical frame of the start-info page (the kernel may update `entry_gate`).
    pub start_info_phys: AtomicU64,
}

fn irqs_off<R>(f: impl FnOnce() -> R) -> R {
    x86_64::instructions::interrupts::without_interrupts(f)
}

impl Process {
    /// A process around an address space whose ring page is `ring_phys`.
    pub fn new(name: &str, space: AddressSpace, ring_phys: u64) -> Arc<Process> {
        let p = Arc::new(Process {
            pid: NEXT_PID.fetch_add(1, Ordering::Relaxed),
            name: String::from(name),
            pml4: space.pml4(),
            space: Mutex::new(Some(space)),
            caps: Mutex::new(CapTable::new(CAP_SLOTS)),
            ring_phys,
            ring: Mutex::new(RingState { sq_head: 0, cq_tail: 0, in_flight: 0, waiter: None, overflow: 0 }),
            io_ranges: Mutex::new(Vec::new()),
            console_line: Mutex::new(String::new()),
            exited: AtomicBool::new(false),
            destroyed: AtomicBool::new(false),
            exit_code: AtomicU64::new(0),
            thread: Mutex::new(None),
            completions: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            start_info_phys: AtomicU64::new(0),
        });
        irqs_off(|| PROCESSES.lock().push(p.clone()));
        p
    }

    /// A placeholder for a program that could not be started (reported as exited).
    pub fn new_dead(name: &str) -> Arc<Process> {
        let space = AddressSpace::new().expect("a page for a placeholder");
        let p = Process::new(name, space, 0);
        p.exit_code.store(u64::MAX, Ordering::Release);
        p.exited.store(true, Ordering::Release);
        if let Some(space) = irqs_off(|| p.space.lock().take()) {
            space.destroy();
        }
        p.destroyed.store(true, Ordering::Release);
        p
    }

    /// The PML4 to load while this process runs.
    pub fn pml4(&self) -> u64 {
        self.pml4
    }

    /// Whether it has exited (its caps are released).
    pub fn has_exited(&self) -> bool {
        self.exited.load(Ordering::Acquire)
    }

    /// Whether its address space is gone too.
    pub fn is_destroyed(&self) -> bool {
        self.destroyed.load(Ordering::Acquire)
    }

    /// Records the thread.
    pub fn set_thread(&self, t: Arc<Thread>) {
        *self.thread.lock() = Some(t);
    }

    /// Runs `f` on the address space (None once destroyed).
    pub fn with_space<R>(&self, f: impl FnOnce(&mut AddressSpace) -> R) -> Option<R> {
        irqs_off(|| self.space.lock().as_mut().map(f))
    }

    /// The ring header in the shared page (through the physical map: valid on every CPU).
    pub fn ring_header(&self) -> &RingHeader {
        // SAFETY: the ring frame belongs to this process until it is destroyed, and the
        // header holds only atomics and plain integers the user may scribble on.
        unsafe { &*phys_to_virt(self.ring_phys).as_ptr::<RingHeader>() }
    }

    /// Base of the ring page in the physical map.
    pub fn ring_base(&self) -> *mut u8 {
        phys_to_virt(self.ring_phys).as_mut_ptr::<u8>()
    }

    /// Posts the completion of a deferred operation (releases its reservation) and wakes the
    /// `cap_enter` waiter when it has enough. Callable from interrupt context on any CPU.
    pub fn post_deferred(&self, user_data: u64, status: Status, results: [u64; 2]) {
        self.post(user_data, status, results, true);
    }

    /// Posts a completion; `reserved` when a slot was reserved at submission time.
    pub fn post(&self, user_data: u64, status: Status, results: [u64; 2], reserved: bool) {
        if self.is_destroyed() {
            return;
        }
        let woken = irqs_off(|| {
            let mut ring = self.ring.lock();
            if reserved && ring.in_flight > 0 {
                ring.in_flight -= 1;
            }
            let header = self.ring_header();
            let head = header.cq_head.load(Ordering::Acquire);
            match keel_abi::cq_space(head, ring.cq_tail) {
                Ok(space) if space > 0 => {}
                _ => {
                    ring.overflow += 1;
                    header.overflow.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
            }
            let slot = keel_abi::cq_slot(ring.cq_tail);
            let completion = Completion { user_data, status: status.as_i32(), flags: 0, results };
            // SAFETY: the slot lies inside the ring page (CQ_OFFSET + slot * 32 < 4096).
            unsafe {
                let dst = self.ring_base().add(keel_abi::CQ_OFFSET + slot * core::mem::size_of::<Completion>()) as *mut Completion;
                dst.write_volatile(completion);
            }
            ring.cq_tail = ring.cq_tail.wrapping_add(1);
            header.cq_tail.store(ring.cq_tail, Ordering::Release);
            self.completions.fetch_add(1, Ordering::Relaxed);
            if !status.is_ok() {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
            let available = keel_abi::cq_available(head, ring.cq_tail).unwrap_or(u32::MAX);
            match &ring.waiter {
                Some((_, min)) if available >= *min => ring.waiter.take().map(|(t, _)| t),
                _ => None,
            }
        });
        if let Some(t) = woken {
            sched::wake(&t);
        }
    }

    /// Adds an I/O port range to the ranges this process may use, and opens it on this CPU
    /// (the process's thread is running here).
    pub fn enable_io_ports(&self, first: u16, last: u16) {
        irqs_off(|| {
            let mut ranges = self.io_ranges.lock();
            if !ranges.contains(&(first, last)) {
                ranges.push((first, last));
            }
            set_io_bits(first, last, true);
        });
    }

    /// Opens (on switch-in) or closes (on switch-out) this process's ports in this CPU's TSS
    /// I/O bitmap.
    pub fn grant_io_ports_on_this_cpu(&self, open: bool) {
        for &(first, last) in self.io_ranges.lock().iter() {
            set_io_bits(first, last, open);
        }
    }

    /// Console output from the process, line by line: `EV key=value` lines become
    /// `EV user.<name>.<key>=value` (the harness can tell user evidence from kernel evidence),
    /// every other line is prefixed with the program name.
    pub fn console_write(&self, bytes: &[u8]) {
        let mut line = self.console_line.lock();
        for &b in bytes {
            if b == b'\n' || line.len() >= 512 {
                emit_user_line(&self.name, &line);
                line.clear();
            } else if b == b'\t' || (0x20..0x7f).contains(&b) {
                line.push(b as char);
            } else {
                line.push('?');
            }
        }
    }
}

fn emit_user_line(name: &str, line: &str) {
    if let Some(rest) = line.strip_prefix("EV ") {
        let valid = |k: &str| !k.is_empty() && k.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'.');
        let pairs: Vec<(&str, &str)> = rest.split_whitespace().filter_map(|kv| kv.split_once('=')).collect();
        if !pairs.is_empty() && pairs.iter().all(|(k, v)| valid(k) && !v.is_empty() && !v.contains('=')) {
            for (k, v) in pairs {
                crate::println!("EV user.{}.{}={}", name.replace('-', "_"), k, v);
            }
            return;
        }
    }
    crate::println!("[{name}] {line}");
}

fn set_io_bits(first: u16, last: u16, open: bool) {
    let tables = percpu::current().tables.load(Ordering::Relaxed);
    for port in first..=last {
        // SAFETY: this CPU's own TSS bitmap; the CPU reads it only on ring-3 port accesses,
        // which cannot run while we hold interrupts off here.
        unsafe {
            let byte = &mut (*tables).io_bitmap[port as usize / 8];
            if open {
                *byte &= !(1 << (port % 8));
            } else {
                *byte |= 1 << (port % 8);
            }
        }
    }
}

/// Releases what a capability holds when its last holder goes away.
fn release_object(p: &Arc<Process>, object: &Object) {
    if let Object::Interrupt(irq) = object {
        irq.release(p);
    }
}

/// Releases one capability id; objects referenced by no other slot of this process are
/// released too (an `Interrupt` gets masked and its waiter cancelled).
pub fn release_cap(p: &Arc<Process>, id: CapId) -> Result<(), Status> {
    let object = irqs_off(|| p.caps.lock().release(id)).map_err(|e| e.status())?;
    if let Object::Interrupt(irq) = &object {
        let still_held = irqs_off(|| {
            p.caps.lock().iter().any(|(_, o)| matches!(o, Object::Interrupt(other) if Arc::ptr_eq(other, irq)))
        });
        if !still_held {
            release_object(p, &object);
        }
    }
    Ok(())
}

/// Ends the calling process (from its own thread): release every capability, close its ports,
/// cancel timers, leave the CPU for good.
pub fn exit_current(code: u64) -> ! {
    x86_64::instructions::interrupts::disable();
    let thread = sched::current_thread().expect("exit from a thread");
    let p = thread.process.clone();
    p.exit_code.store(code, Ordering::Release);
    let objects: Vec<Object> = p.caps.lock().drain().collect();
    for o in &objects {
        release_object(&p, o);
    }
    drop(objects);
    p.grant_io_ports_on_this_cpu(false);
    p.io_ranges.lock().clear();
    p.ring.lock().waiter = None;
    sched::cancel_timed(&thread);
    p.exited.store(true, Ordering::Release);
    let line = core::mem::take(&mut *p.console_line.lock());
    if !line.is_empty() {
        emit_user_line(&p.name, &line);
    }
    log::info!("process {} ({}) exited with code {code:#x}", p.pid, p.name);
    crate::ev!(("proc.{}.exit", p.name.replace('-', "_")), code);
    drop(p);
    drop(thread);
    sched::exit_current()
}

/// Tells the running process to enter the kernel with `int 0x80` from now on.
pub fn switch_current_to_int80() {
    if let Some(t) = sched::current_thread() {
        let start = t.process.start_info_phys.load(Ordering::Relaxed);
        if start != 0 {
            // SAFETY: the start-info frame belongs to the running process (alive: its thread
            // is running here); the kernel is its only writer.
            unsafe {
                let info = phys_to_virt(start).as_mut_ptr::<keel_abi::StartInfo>();
                core::ptr::addr_of_mut!((*info).entry_gate).write_volatile(keel_abi::ENTRY_INT80);
            }
        }
    }
}

/// A CPU exception in ring 3: report it and end the process, never the kernel.
pub fn user_fault(frame: &mut TrapFrame) {
    if crate::arch::x86_64::syscall::recover_from_failed_syscall(frame) {
        return;
    }
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    let (pid, name) = sched::current_thread().map(|t| (t.process.pid, t.process.name.clone())).unwrap_or((0, String::new()));
    log::warn!(
        "user fault: process {pid} ({name}) vector {} ({}) error {:#x} rip {:#x} cr2 {:#x}",
        frame.vector,
        crate::panic::exception_name(frame.vector),
        frame.error_code,
        frame.rip,
        cr2
    );
    log::warn!(
        "user fault: cs {:#x} ss {:#x} rsp {:#x} rflags {:#x} rcx {:#x} r11 {:#x} rax {:#x}",
        frame.cs, frame.ss, frame.rsp, frame.rflags, frame.rcx, frame.r11, frame.rax
    );
    let key = name.replace('-', "_");
    crate::ev!(("proc.{}.fault_vector", key), frame.vector);
    crate::ev!(("proc.{}.fault_addr", key), format_args!("{:#x}", cr2));
    exit_current(0xFFFF_0000 | frame.vector)
}

/// Scheduler context after the thread exited: destroy the address space (no CPU has it
/// loaded: this CPU just switched to the kernel tables, and the thread ran nowhere else).
pub fn reap(thread: &Arc<Thread>) {
    let p = &thread.process;
    if let Some(space) = irqs_off(|| p.space.lock().take()) {
        space.destroy();
    }
    *p.thread.lock() = None;
    p.destroyed.store(true, Ordering::Release);
}

/// All processes started since boot.
pub fn all() -> Vec<Arc<Process>> {
    irqs_off(|| PROCESSES.lock().clone())
}
