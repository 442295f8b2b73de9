//! The sentry kernel: a user-space Linux kernel for sandboxed x86-64 guests.
//!
//! Guest syscalls arrive from a [`sentry_systrap::Platform`] as stops of a
//! task's context; the [`Kernel`]'s workers serve them through the
//! [`syscalls`] table against the task's memory manager ([`mm`]), file table
//! ([`vfs`]) and thread group ([`task`]). This crate is safe Rust: whatever
//! needs `unsafe` lives behind safe APIs in `sentry-systrap`.
#![deny(unsafe_code)]

pub mod cpuclock;
pub mod errno;
pub mod futex;
pub mod init;
pub mod kernel;
pub mod loader;
pub mod mm;
pub mod pipe;
pub mod process;
pub mod signal;
pub mod syscalls;
pub mod task;
pub mod vfs;

pub use errno::Errno;
pub use init::{InitError, InitKernelArgs};
pub use kernel::{ExitStatus, Kernel, KernelConfig, LifecycleError, SupervisorContext};
pub use process::{CreateError, CreateProcessArgs};
#[cfg(test)]
mod kernel_tests;
