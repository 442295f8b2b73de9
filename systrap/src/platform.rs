//! The seam between the kernel and the machinery that runs guest code.
//!
//! The kernel never knows which platform it runs on. A [`Platform`] creates
//! address spaces (one host process each) and their first [`Context`]; a
//! context is one guest thread. A worker asks a context, without blocking,
//! whether its guest has stopped ([`Context::poll`]), serves the stop (a
//! syscall, a fault, an interruption), edits the registers, and lets the guest
//! run again ([`Context::resume`]). Between polls, an idle worker sleeps on
//! its [`WorkerBell`], which a stopping guest (or the kernel) rings.

use std::sync::Arc;

use crate::memfile::MemoryFile;

/// General registers in the order of the kernel's `sigcontext` (`gregs`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub rdx: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rsp: u64,
    pub rip: u64,
    pub eflags: u64,
}

impl Regs {
    /// Number of `u64` fields.
    pub const COUNT: usize = 18;

    /// A fresh thread's registers: everything zero but `rip`, `rsp` and the
    /// interrupt flag.
    pub fn new(rip: u64, rsp: u64) -> Regs {
        Regs {
            rip,
            rsp,
            eflags: 0x202,
            ..Regs::default()
        }
    }

    /// The syscall arguments in order.
    pub fn syscall_args(&self) -> [u64; 6] {
        [self.rdi, self.rsi, self.rdx, self.r10, self.r8, self.r9]
    }

    pub(crate) fn as_array(&self) -> [u64; Self::COUNT] {
        [
            self.r8,
            self.r9,
            self.r10,
            self.r11,
            self.r12,
            self.r13,
            self.r14,
            self.r15,
            self.rdi,
            self.rsi,
            self.rbp,
            self.rbx,
            self.rdx,
            self.rax,
            self.rcx,
            self.rsp,
            self.rip,
            self.eflags,
        ]
    }

    pub(crate) fn from_array(a: [u64; Self::COUNT]) -> Regs {
        Regs {
            r8: a[0],
            r9: a[1],
            r10: a[2],
            r11: a[3],
            r12: a[4],
            r13: a[5],
            r14: a[6],
            r15: a[7],
            rdi: a[8],
            rsi: a[9],
            rbp: a[10],
            rbx: a[11],
            rdx: a[12],
            rax: a[13],
            rcx: a[14],
            rsp: a[15],
            rip: a[16],
            eflags: a[17],
        }
    }
}

/// Page protections of a guest mapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prot {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

impl Prot {
    pub const NONE: Prot = Prot {
        read: false,
        write: false,
        exec: false,
    };
    pub const RW: Prot = Prot {
        read: true,
        write: true,
        exec: false,
    };

    /// From `PROT_*` bits.
    pub fn from_bits(bits: u64) -> Prot {
        Prot {
            read: bits & libc::PROT_READ as u64 != 0,
            write: bits & libc::PROT_WRITE as u64 != 0,
            exec: bits & libc::PROT_EXEC as u64 != 0,
        }
    }

    /// To `PROT_*` bits.
    pub fn bits(self) -> i32 {
        (if self.read { libc::PROT_READ } else { 0 })
            | (if self.write { libc::PROT_WRITE } else { 0 })
            | (if self.exec { libc::PROT_EXEC } else { 0 })
    }
}

/// Why a guest thread stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// A system call: number in `regs().rax`, arguments in the usual registers,
    /// `rip` after the `syscall` instruction. `compat` is set for a 32-bit
    /// entry (`int 0x80`).
    Syscall { compat: bool },
    /// A hardware fault or trap in guest code.
    Fault { signo: i32, code: i32, addr: u64 },
    /// The platform interrupted the guest on the kernel's request.
    Interrupted,
    /// A new context is ready to enter the guest; its registers are the ones
    /// given when it was made.
    Started,
    /// The host process of the address space is gone.
    Died,
}

/// Errors of the platform that the kernel may see.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("the guest's host process is gone")]
    Dead,
    #[error("cannot start a stub process: {0}")]
    Spawn(String),
    #[error("the stub process broke the handoff protocol: {0}")]
    Protocol(&'static str),
    #[error("too many threads in one address space")]
    TooManyThreads,
    #[error("host error: {0}")]
    Host(#[from] std::io::Error),
}

/// A guest thread.
pub trait Context: Send {
    /// Non-blocking: `Some` when the guest has stopped since the last
    /// `resume` (the registers then describe the stop).
    fn poll(&mut self) -> Option<Stop>;
    /// Registers of the stopped thread (loads them all if a stop only
    /// carried the syscall registers).
    fn regs(&mut self) -> &Regs;
    /// The syscall number and arguments of a `Stop::Syscall` (cheap).
    fn syscall_args(&self) -> (u64, [u64; 6]);
    /// Sets the syscall's return value (rax) for `resume`.
    fn set_syscall_return(&mut self, value: u64);
    /// Registers to run with on `resume`.
    fn regs_mut(&mut self) -> &mut Regs;
    /// The thread's saved FP/vector state (the XSAVE area of the host
    /// signal frame), when the stop has one.
    fn fpstate(&mut self) -> Option<Vec<u8>>;
    /// Replaces the saved FP state; `data` must be as long as `fpstate()`.
    /// Returns false when there is no frame or the size differs.
    fn set_fpstate(&mut self, data: &[u8]) -> bool;
    /// The FS segment base (TLS pointer) the thread runs with.
    fn fs_base(&self) -> u64;
    /// Sets the FS base for when the thread runs next.
    fn set_fs_base(&mut self, base: u64) -> Result<(), PlatformError>;
    /// Lets the guest run with the (possibly edited) registers.
    fn resume(&mut self) -> Result<(), PlatformError>;
    /// The current stop will not be answered soon (its syscall blocks): the
    /// platform may stop spinning for it and let the host thread sleep.
    fn will_block(&mut self) {}
    /// Maps `len` bytes of the memory file at `offset` to guest `addr`.
    fn map(&mut self, addr: u64, len: u64, prot: Prot, offset: u64) -> Result<(), PlatformError>;
    /// Removes guest mappings in `[addr, addr + len)`.
    fn unmap(&mut self, addr: u64, len: u64) -> Result<(), PlatformError>;
    /// Changes protections of guest mappings in `[addr, addr + len)`.
    fn protect(&mut self, addr: u64, len: u64, prot: Prot) -> Result<(), PlatformError>;
    /// Makes a new thread in the same address space that starts (with a
    /// `Stop::Started`) with `regs` and `fs_base`, served by `worker`.
    fn new_thread(
        &mut self,
        regs: &Regs,
        fs_base: u64,
        worker: usize,
    ) -> Result<Box<dyn Context>, PlatformError>;
    /// Ends this host thread; the context must not be used again.
    fn exit_thread(&mut self);
    /// Asks a running guest thread to stop with `Stop::Interrupted`. Safe to
    /// call from any sentry thread at any time.
    fn interrupter(&self) -> Arc<dyn Interrupter>;
    /// The address space this thread runs in.
    fn address_space(&self) -> Arc<dyn AddressSpace>;
    /// Which worker's bell this context rings when it stops.
    fn set_worker(&mut self, worker: usize);
}

/// Interrupts a guest thread from anywhere in the sentry.
pub trait Interrupter: Send + Sync {
    fn interrupt(&self);
    /// A lock-free hint for workers: false means the guest surely has not
    /// stopped since its last resume (so `Context::poll` would say `None`).
    fn may_have_stopped(&self) -> bool {
        true
    }
}

/// A guest address space: one host process.
pub trait AddressSpace: Send + Sync {
    /// Ends the host process and all its threads.
    fn kill(&self);
    /// Sends a host signal to the whole host process (SIGSTOP/SIGCONT to pause).
    fn signal(&self, signo: i32);
    /// Whether the host process is gone.
    fn is_dead(&self) -> bool;
    /// The host PID (for diagnostics and CPU accounting, never shown to guests).
    fn host_pid(&self) -> i32;
}

/// Where an idle worker sleeps.
pub trait WorkerBell: Send + Sync {
    /// A token to pass to `sleep`; take it, re-check for work, then sleep.
    fn prepare(&self) -> u32;
    /// Sleeps unless rung since `prepare`, or until `timeout`.
    fn sleep(&self, token: u32, timeout: std::time::Duration);
    /// Wakes the worker if it sleeps.
    fn ring(&self);
}

/// A way of running guests.
pub trait Platform: Send + Sync {
    /// `"systrap"` or `"ptrace"`.
    fn name(&self) -> &'static str;
    /// The sandbox's memory file.
    fn memory_file(&self) -> &Arc<MemoryFile>;
    /// A new, empty address space and its first thread, which starts
    /// (`Stop::Started`) with `regs` once the kernel has mapped its memory.
    fn new_address_space(
        &self,
        regs: &Regs,
        worker: usize,
    ) -> Result<Box<dyn Context>, PlatformError>;
    /// Worker `index`'s bell.
    fn bell(&self, index: usize) -> Arc<dyn WorkerBell>;
    /// Called (from a platform thread) whenever an address space dies.
    fn set_death_hook(&self, hook: Box<dyn Fn() + Send + Sync>);
    /// Spin budget in the stub and the sentry (0 turns spinning off).
    fn set_spin(&self, iters: u32);
    /// Whether a worker waiting for a stop should spin at all: false where
    /// every stop costs a host context switch anyway (ptrace), so a spinning
    /// worker would only take the CPU the stop needs.
    fn spin_pays(&self) -> bool {
        true
    }
}
