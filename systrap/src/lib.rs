//! The sentry's platforms: how guest code runs and how its syscalls reach the
//! kernel. [`platform`] is the interface the kernel sees; [`systrap`] is the
//! seccomp-SIGSYS implementation; [`ptrace`] runs the same stubs under
//! `PTRACE_SYSEMU`; [`memfile`] holds guest memory; [`bpf`]
//! builds the stub's seccomp filter.

pub mod bpf;
pub mod host;
pub mod memfile;
pub mod platform;
pub mod ptrace;
pub mod spin;
pub mod sys;
pub mod systrap;

pub use memfile::{FileRange, MemoryFile, PAGE_SIZE};
pub use platform::{
    AddressSpace, Context, Interrupter, Platform, PlatformError, Prot, Regs, Stop, WorkerBell,
};
pub use sentry_stubs::{GUEST_END, MAX_WORKERS};
pub use spin::{SpinController, SpinStats};
