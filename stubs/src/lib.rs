//! Code and shared layout of the stub process.
//!
//! A stub process is the host process a guest runs in. It holds nothing of the
//! sentry: at start-up it unmaps every page below and above the *stub region*
//! except its own, installs the seccomp filter, and from then on runs only the
//! assembly in `asm/stub.S`, which this crate assembles into the sentry binary
//! between the symbols `sentry_stub_start` and `sentry_stub_end`. The sentry
//! copies those bytes to [`STUB_CODE`] in each new stub process, so the code is
//! position independent and refers to nothing outside itself.
//!
//! # The stub region (addresses in every stub process)
//!
//! ```text
//!  0x0000_0000_0000 +-------------------------------------+
//!                   |  guest memory (mapped from the      |
//!                   |  sentry's memory file on request)   |
//!  GUEST_END ------ +-------------------------------------+  0x7000_0000_0000
//!  STUB_CODE        |  stub code, r-x, one copy of        |
//!                   |  asm/stub.S (STUB_CODE_SIZE)        |
//!  STUB_DOORBELLS   |  worker doorbells, rw, shared by    |  0x7000_0010_0000
//!                   |  every stub and the sentry          |
//!  STUB_SLOTS       |  thread slot 0 | slot 1 | ...       |  0x7000_1000_0000
//!                   |  each SLOT_SIZE, from the stub's    |
//!                   |  slot memfd, shared with the sentry |
//!                   +-------------------------------------+  STUB_SLOTS + MAX_SLOTS * SLOT_SIZE
//!                   |  nothing (unmapped at start-up)     |
//!  0x7fff_ffff_f000 +-------------------------------------+
//!
//!  one thread slot (SLOT_SIZE bytes, aligned to SLOT_SIZE):
//!  +0x0000  StubPage: the handoff words (see below)
//!  +0x1000  ENTER frame: a ucontext the sentry writes to start a thread
//!  +0x1000 .. SLOT_SIZE: the thread's signal stack (sigaltstack); the
//!           kernel pushes SIGSYS frames at the top, so the sentry can read
//!           and rewrite the whole register state in place
//! ```
//!
//! The signal handler finds its slot by rounding its stack pointer down to
//! `SLOT_SIZE`, so it needs no thread-local storage.
//!
//! Everything here is readable *and writable by the guest*: the sentry treats
//! every value it reads from a slot or a doorbell as untrusted input.
#![no_std]

use core::mem::offset_of;
use core::sync::atomic::{AtomicI64, AtomicU32, AtomicU64};

/// First address above guest memory; the memory manager refuses guest
/// mappings at or above it. It lies well below where the host places the
/// sentry's own libraries, thread stacks and large mappings (top-down from
/// about 0x7fxx_xxxx_xxxx with up to 1 TiB of randomization), so the sentry
/// can always reserve the stub region in its own address space.
pub const GUEST_END: u64 = 0x7000_0000_0000;
/// Where the stub code is mapped in every stub process.
pub const STUB_CODE: u64 = GUEST_END;
/// Bytes reserved for the stub code (the filter's instruction-pointer range).
pub const STUB_CODE_SIZE: u64 = 0x1_0000;
/// The worker doorbells page(s).
pub const STUB_DOORBELLS: u64 = GUEST_END + 0x10_0000;
/// Size of the doorbell mapping.
pub const DOORBELLS_SIZE: u64 = (MAX_WORKERS * 64) as u64;
/// Base of the thread slots.
pub const STUB_SLOTS: u64 = GUEST_END + 0x1000_0000;
/// Bytes per thread slot (a power of two: the handler masks its stack pointer).
pub const SLOT_SIZE: u64 = 0x1_0000;
/// Most guest threads one stub process can hold.
pub const MAX_SLOTS: u64 = 8192;
/// Highest user address on x86-64 with 4-level paging.
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;
/// Most sentry workers (doorbells).
pub const MAX_WORKERS: usize = 64;
/// Offset in a slot of the frame the sentry writes for `ST_ENTER`.
pub const ENTER_FRAME_OFF: u64 = 0x1000;
/// Offset in a slot of the bottom of the signal stack.
pub const SIGSTACK_OFF: u64 = 0x1000;
/// File descriptor of the memory file inside a stub process.
pub const STUB_MEMFILE_FD: i32 = 3;
/// File descriptor of the slot file inside a stub process.
pub const STUB_SLOTFILE_FD: i32 = 4;
/// The host signal the sentry sends a stub thread to make it stop in its
/// handler (to deliver a signal, to exit, to pause).
pub const SIG_INTERRUPT: i32 = 10; // SIGUSR1 (host side only; guests' signals are emulated)

// Handoff states (`StubPage::state`). Each is written by one side only.
/// The stub thread stopped in its handler (signal `signo`); stub-written.
pub const ST_TRAPPED: u32 = 1;
/// Return from the handler into the (possibly edited) kernel frame; sentry-written.
pub const ST_RESUME: u32 = 2;
/// Load the frame at `frame_off` with `rt_sigreturn`; sentry-written.
pub const ST_ENTER: u32 = 3;
/// Run host syscall `cmd_nr(cmd_args)`, store `cmd_result`; sentry-written.
pub const ST_CMD_SYSCALL: u32 = 4;
/// A command finished; stub-written.
pub const ST_CMD_DONE: u32 = 5;
/// Clone a host thread into another slot (args: flags, stack, ptid, ctid, tls); sentry-written.
pub const ST_CMD_CLONE: u32 = 6;
/// Exit this host thread; sentry-written.
pub const ST_CMD_EXIT: u32 = 7;

/// `signo` value meaning "a new stub thread is ready" rather than a signal.
pub const SIGNO_STARTED: u32 = 0;

/// The per-thread handoff page, at the start of each thread slot.
///
/// Fields are grouped by writer. Line 0 is the hot line of a syscall round
/// trip: the handoff word, the stop's signal and the syscall registers,
/// which the stub copies out of the kernel frame and the sentry answers in
/// place (`sysregs[0]` = rax = number in, result out), so one round trip
/// moves this one cache line between the cores and nothing else. Line 1 is
/// written by the stub, lines 2-3 by the sentry, line 4 by a stub going to
/// sleep.
#[repr(C, align(4096))]
pub struct StubPage {
    // --- line 0: handoff (both sides, in turn) ---
    /// One of the `ST_*` values.
    pub state: AtomicU32,
    /// The host signal that stopped the thread, or [`SIGNO_STARTED`]; bit 16
    /// ([`SIGNO_COMPAT`]) marks a syscall entered through a 32-bit gate.
    pub signo: AtomicU32,
    /// rax, rdi, rsi, rdx, r10, r8, r9 at the stop; rax is the result on
    /// resume (the stub copies it into the frame).
    pub sysregs: [AtomicU64; 7],
    // --- line 1: written by the stub at every stop ---
    _pad1a: u64,
    /// Offset in the slot of the kernel's `ucontext` for this stop.
    pub ucontext_off: AtomicU64,
    /// Offset in the slot of the kernel's `siginfo` for this stop.
    pub siginfo_off: AtomicU64,
    /// Result of the last command.
    pub cmd_result: AtomicI64,
    /// Host TID of the thread in this slot (set by clone, cleared at its exit).
    pub host_tid: AtomicU32,
    _pad1: [u8; 28],
    // --- line 2: written by the sentry ---
    /// Doorbell the stub rings after publishing a stop.
    pub worker: AtomicU32,
    /// Non-zero while the sentry sleeps in `FUTEX_WAIT` on `state`.
    pub sentry_sleeping: AtomicU32,
    /// How many `pause` iterations the stub spins before it sleeps.
    pub spin_iters: AtomicU32,
    _pad2: u32,
    /// Offset in the slot of the frame `ST_ENTER` loads.
    pub frame_off: AtomicU64,
    /// Host syscall number of a command.
    pub cmd_nr: AtomicU64,
    /// Arguments of a command.
    pub cmd_args: [AtomicU64; 6],
    _pad3: [u8; 48],
    // --- line 4: written by the stub only when it goes to sleep ---
    /// Non-zero while the stub sleeps in `FUTEX_WAIT` on `state`. The sentry
    /// reads it at every resume; on a line of its own, that read never
    /// steals line 1, whose next writes by the stub (x86 stores become
    /// visible in order) would otherwise hold back the next `state` store.
    pub stub_sleeping: AtomicU32,
}

/// Set in `StubPage::signo` when a SIGSYS came from a non-x86-64 entry.
pub const SIGNO_COMPAT: u32 = 1 << 16;

const _: () = {
    assert!(offset_of!(StubPage, state) == 0);
    assert!(offset_of!(StubPage, signo) == 4);
    assert!(offset_of!(StubPage, sysregs) == 8);
    assert!(offset_of!(StubPage, stub_sleeping) == 256);
    assert!(offset_of!(StubPage, ucontext_off) == 72);
    assert!(offset_of!(StubPage, siginfo_off) == 80);
    assert!(offset_of!(StubPage, cmd_result) == 88);
    assert!(offset_of!(StubPage, host_tid) == 96);
    assert!(offset_of!(StubPage, worker) == 128);
    assert!(offset_of!(StubPage, sentry_sleeping) == 132);
    assert!(offset_of!(StubPage, spin_iters) == 136);
    assert!(offset_of!(StubPage, frame_off) == 144);
    assert!(offset_of!(StubPage, cmd_nr) == 152);
    assert!(offset_of!(StubPage, cmd_args) == 160);
    assert!(core::mem::size_of::<StubPage>() == 4096);
    assert!(SLOT_SIZE.is_power_of_two());
    assert!(STUB_SLOTS % SLOT_SIZE == 0);
    assert!(STUB_SLOTS + MAX_SLOTS * SLOT_SIZE < TASK_SIZE);
    assert!(STUB_CODE + STUB_CODE_SIZE <= STUB_DOORBELLS);
    assert!(STUB_DOORBELLS + DOORBELLS_SIZE <= STUB_SLOTS);
    // The stub tests the instruction pointer's high half once: the code
    // range must not cross a 4 GiB boundary.
    assert!(STUB_CODE >> 32 == (STUB_CODE + STUB_CODE_SIZE - 1) >> 32);
};

/// One worker's doorbell: stubs bump `seq` and wake it when `sleeping`.
#[repr(C, align(64))]
pub struct Doorbell {
    /// Futex word the worker sleeps on.
    pub seq: AtomicU32,
    /// Non-zero while the worker sleeps (or is about to).
    pub sleeping: AtomicU32,
}

const _: () = {
    assert!(offset_of!(Doorbell, seq) == 0);
    assert!(offset_of!(Doorbell, sleeping) == 4);
    assert!(core::mem::size_of::<Doorbell>() == 64);
};

// The stub code. Constants reach the assembly as `const` operands so that
// the layout above is the only place they are written down.
core::arch::global_asm!(
    include_str!("../../asm/stub.S"),
    P_STATE = const offset_of!(StubPage, state),
    P_SIGNO = const offset_of!(StubPage, signo),
    P_SYSREGS = const offset_of!(StubPage, sysregs),
    SIGNO_COMPAT = const SIGNO_COMPAT,
    P_STUB_SLEEPING = const offset_of!(StubPage, stub_sleeping),
    P_UCONTEXT_OFF = const offset_of!(StubPage, ucontext_off),
    P_SIGINFO_OFF = const offset_of!(StubPage, siginfo_off),
    P_CMD_RESULT = const offset_of!(StubPage, cmd_result),
    P_WORKER = const offset_of!(StubPage, worker),
    P_SENTRY_SLEEPING = const offset_of!(StubPage, sentry_sleeping),
    P_SPIN = const offset_of!(StubPage, spin_iters),
    P_FRAME_OFF = const offset_of!(StubPage, frame_off),
    P_CMD_NR = const offset_of!(StubPage, cmd_nr),
    P_CMD_ARGS = const offset_of!(StubPage, cmd_args),
    DB_SEQ = const offset_of!(Doorbell, seq),
    DB_SLEEPING = const offset_of!(Doorbell, sleeping),
    DOORBELLS = const STUB_DOORBELLS,
    MAX_WORKERS = const MAX_WORKERS,
    SLOT_MASK = const -(SLOT_SIZE as i64),
    SLOT_SIZE = const SLOT_SIZE,
    SIGSTACK_OFF = const SIGSTACK_OFF,
    ST_TRAPPED = const ST_TRAPPED,
    ST_RESUME = const ST_RESUME,
    ST_ENTER = const ST_ENTER,
    ST_CMD_SYSCALL = const ST_CMD_SYSCALL,
    ST_CMD_DONE = const ST_CMD_DONE,
    ST_CMD_CLONE = const ST_CMD_CLONE,
    ST_CMD_EXIT = const ST_CMD_EXIT,
    SIGNO_STARTED = const SIGNO_STARTED,
    SIG_INTERRUPT = const SIG_INTERRUPT,
    GUEST_END = const GUEST_END,
    CODE_END = const STUB_CODE + STUB_CODE_SIZE,
    DOORBELLS_END = const STUB_DOORBELLS + DOORBELLS_SIZE,
    SLOTS = const STUB_SLOTS,
    TASK_SIZE = const TASK_SIZE,
    options(att_syntax)
);

extern "C" {
    static sentry_stub_start: u8;
    static sentry_stub_end: u8;
    static sentry_stub_init: u8;
    static sentry_stub_handler: u8;
    static sentry_stub_restorer: u8;
    static sentry_stub_wait: u8;
    static sentry_stub_syscall_insn: u8;
    static sentry_stub_ptrace_syscall: u8;
    static sentry_stub_ptrace_clone: u8;
}

/// The stub code as it lies in the sentry's own text, to be copied to
/// [`STUB_CODE`] in a stub process.
pub fn code() -> &'static [u8] {
    // SAFETY: 1. both symbols are defined by the global_asm above, in one
    // section, start before end; 2. text is readable and never written, so a
    // shared slice over it is valid for the program's lifetime.
    unsafe {
        let start = core::ptr::addr_of!(sentry_stub_start);
        let end = core::ptr::addr_of!(sentry_stub_end);
        core::slice::from_raw_parts(start, end as usize - start as usize)
    }
}

fn offset_of_symbol(sym: *const u8) -> u64 {
    let start = core::ptr::addr_of!(sentry_stub_start) as u64;
    sym as u64 - start
}

/// Addresses (in a stub process) of the stub's entry points and symbols.
#[derive(Clone, Copy, Debug)]
pub struct Symbols {
    /// Start-up entry: `rdi` = pointer to a `sock_fprog`, `rsp` = slot 0 top.
    pub init: u64,
    /// The signal handler.
    pub handler: u64,
    /// The `sa_restorer` (`rt_sigreturn`).
    pub restorer: u64,
    /// The wait loop.
    pub wait: u64,
    /// The command-syscall instruction (for tests of the filter).
    pub syscall_insn: u64,
    /// ptrace platform: `syscall; int3`.
    pub ptrace_syscall: u64,
    /// ptrace platform: `clone` whose child becomes a stub thread.
    pub ptrace_clone: u64,
}

/// The stub's symbols at their addresses in a stub process.
pub fn symbols() -> Symbols {
    Symbols {
        init: STUB_CODE + offset_of_symbol(core::ptr::addr_of!(sentry_stub_init)),
        handler: STUB_CODE + offset_of_symbol(core::ptr::addr_of!(sentry_stub_handler)),
        restorer: STUB_CODE + offset_of_symbol(core::ptr::addr_of!(sentry_stub_restorer)),
        wait: STUB_CODE + offset_of_symbol(core::ptr::addr_of!(sentry_stub_wait)),
        syscall_insn: STUB_CODE + offset_of_symbol(core::ptr::addr_of!(sentry_stub_syscall_insn)),
        ptrace_syscall: STUB_CODE
            + offset_of_symbol(core::ptr::addr_of!(sentry_stub_ptrace_syscall)),
        ptrace_clone: STUB_CODE + offset_of_symbol(core::ptr::addr_of!(sentry_stub_ptrace_clone)),
    }
}

/// Symbol names and `(offset, size)` in the code, for perf maps.
pub fn symbol_table() -> [(&'static str, u64); 7] {
    let s = symbols();
    [
        ("sentry_stub_init", s.init - STUB_CODE),
        ("sentry_stub_handler", s.handler - STUB_CODE),
        ("sentry_stub_wait", s.wait - STUB_CODE),
        ("sentry_stub_command", s.syscall_insn - STUB_CODE),
        ("sentry_stub_ptrace_syscall", s.ptrace_syscall - STUB_CODE),
        ("sentry_stub_ptrace_clone", s.ptrace_clone - STUB_CODE),
        ("sentry_stub_restorer", s.restorer - STUB_CODE),
    ]
}
