//! The contract between the Keel kernel and user programs.
//!
//! User programs have exactly two system calls, [`SYS_CAP_ENTER`] and [`SYS_EXIT`]. Every
//! kernel service is an object reached through a capability ([`CapId`]) and invoked by
//! writing a [`Submission`] into a shared-memory ring at [`RING_VADDR`]; the kernel answers
//! with a [`Completion`]. This crate holds everything both sides must agree on (numbers,
//! addresses, `#[repr(C)]` layouts, status codes) plus the *pure* checks the kernel runs on
//! hostile input ([`sq_pending`], [`cq_space`], [`decode`]), so they can be tested on the host.
//!
//! The prose specification is `docs/abi.md`; keep the two in sync.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod cap_id;
mod dma_fault;
mod method;
mod request;
mod ring;
mod start;
mod status;

pub use cap_id::CapId;
pub use dma_fault::DmaFaultReport;
pub use method::{Method, ObjectKind};
pub use request::{decode, user_range, Request, CONSOLE_WRITE_MAX, MAX_DMA_PAGES, MAX_VM_PAGES};
pub use ring::{
    cq_available, cq_budget, cq_slot, cq_space, enter_result, min_complete, sq_pending, sq_slot,
    Completion, RingHeader, Submission, CQ_ENTRIES, CQ_OFFSET, SQ_ENTRIES, SQ_OFFSET,
};
pub use start::{
    parse_u64, pci_bdf, CapInfo, InterruptSource, StartInfo, ENTRY_INT80, ENTRY_SYSCALL,
    MAX_START_CAPS, START_ARGS_LEN, START_INFO_MAGIC, START_NAME_LEN,
};
pub use status::Status;

/// `cap_enter(min_complete, timeout_ns) -> i64`: process the submission queue, then wait for
/// completions. Returns the number of completions available (>= 0) or a negative [`Status`].
pub const SYS_CAP_ENTER: u64 = 0;
/// `exit(code) -> !`: end the calling process; its capabilities are released.
pub const SYS_EXIT: u64 = 1;
/// The interrupt vector of the `int 0x80` gate (DPL 3), equivalent to `syscall`.
pub const SYSCALL_GATE_VECTOR: u8 = 0x80;
/// Timeout value meaning "wait until `min_complete` completions are available, however long".
pub const TIMEOUT_INFINITE: u64 = u64::MAX;

/// Where the kernel maps the process's ring page (one 4 KiB page, read/write).
pub const RING_VADDR: u64 = 0x0000_7fff_fff0_0000;
/// Where the kernel maps the read-only [`StartInfo`] page.
pub const START_INFO_VADDR: u64 = 0x0000_7fff_ffe0_0000;
/// Initial `rsp` of a process (16-byte aligned); 64 KiB of stack are mapped below it.
pub const USER_STACK_TOP: u64 = 0x0000_7fff_ff00_0000;
/// Size of the stack mapped below [`USER_STACK_TOP`].
pub const USER_STACK_SIZE: u64 = 64 * 1024;
/// Exclusive upper bound of user addresses: any user pointer range must end at or below it.
pub const USER_SPACE_END: u64 = 0x0000_8000_0000_0000;
/// Page size used by every address rule in the ABI.
pub const PAGE_SIZE: u64 = 4096;
/// Size of the ring mapping at [`RING_VADDR`].
pub const RING_SIZE: usize = 4096;

// The fixed user mappings' layout, checked when the crate compiles: page-aligned, at least
// 64 KiB of stack above the first page, the stack below the start-info page, start info below
// the ring, the ring inside user space.
const _: () = {
    let aligned = [RING_VADDR, START_INFO_VADDR, USER_STACK_TOP, USER_STACK_SIZE, RING_SIZE as u64];
    let mut i = 0;
    while i < aligned.len() {
        assert!(aligned[i].is_multiple_of(PAGE_SIZE), "the fixed user mappings are page-aligned");
        i += 1;
    }
    assert!(USER_STACK_SIZE >= 16 * PAGE_SIZE, "at least 64 KiB of stack");
    assert!(USER_STACK_TOP - USER_STACK_SIZE > PAGE_SIZE);
    assert!(USER_STACK_TOP <= START_INFO_VADDR);
    assert!(START_INFO_VADDR + PAGE_SIZE <= RING_VADDR);
    assert!(RING_VADDR + RING_SIZE as u64 <= USER_SPACE_END);
};
