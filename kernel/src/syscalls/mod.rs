//! The syscall table: numbers to handlers, with argument kinds for strace
//! and a support status for the documentation.
//!
//! A handler gets a [`Sys`] (the kernel, the task, its locked state and the
//! six raw arguments) and returns `Ok(Outcome)` or a guest errno. Control
//! flow that is not a return value (block, exit) is an [`Outcome`], never an
//! errno. Unknown numbers return ENOSYS and are logged once per number.

pub mod exec;
pub mod fs;
pub mod futex;
pub mod mm;
pub mod poll;
pub mod process;
pub mod signal;
pub mod time;

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::errno::Errno;
use crate::kernel::Kernel;
use crate::task::{Task, TaskInner};

/// What a syscall did besides returning an error.
#[derive(Debug)]
pub enum Outcome {
    /// Finished with this value in rax.
    Return(i64),
    /// Park the task; the syscall runs again when it is woken (or at `deadline`).
    Block { deadline: Option<Instant> },
    /// The task is gone (exit, exit_group); nothing to resume.
    Exited,
    /// The handler set all registers itself (rt_sigreturn): resume as is.
    Resume,
}

/// Shorthand for a finished call.
pub fn ret(v: impl TryInto<i64>) -> Result<Outcome, Errno> {
    Ok(Outcome::Return(v.try_into().unwrap_or(i64::MAX)))
}

/// A syscall in progress.
pub struct Sys<'a> {
    pub k: &'a Kernel,
    pub task: &'a Arc<Task>,
    pub t: &'a mut TaskInner,
    pub a: [u64; 6],
}

impl Sys<'_> {
    pub fn mm(&self) -> &crate::mm::Mm {
        &self.task.tg.mm
    }
}

type Handler = fn(&mut Sys) -> Result<Outcome, Errno>;

/// How an argument is shown by `--strace`.
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    Int,
    Hex,
    Fd,
    Path,
    /// A buffer the call reads, with its length in argument N.
    InBuf(usize),
    /// A buffer the call fills; shown after the call with the result's length.
    OutBuf,
    Ptr,
}

/// How complete a syscall is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    Full,
    Partial(&'static str),
}

/// One row of the table.
pub struct Entry {
    pub nr: u64,
    pub name: &'static str,
    pub handler: Handler,
    pub args: &'static [Arg],
    pub support: Support,
}

macro_rules! table {
    ($($nr:ident => $h:path, [$($arg:ident $(($n:expr))?),*], $sup:expr;)*) => {
        /// Every syscall the sentry serves.
        pub static TABLE: &[Entry] = &[$(Entry {
            nr: libc::$nr as u64,
            name: {
                const S: &str = stringify!($nr);
                const B: &[u8] = S.as_bytes();
                // strip "SYS_"
                match std::str::from_utf8(B.split_at(4).1) { Ok(s) => s, Err(_) => S }
            },
            handler: $h,
            args: &[$(Arg::$arg $(($n))?),*],
            support: $sup,
        }),*];
    };
}

use Support::{Full, Partial};

table! {
    SYS_read => fs::read, [Fd, OutBuf, Int], Full;
    SYS_write => fs::write, [Fd, InBuf(2), Int], Full;
    SYS_readv => fs::readv, [Fd, Ptr, Int], Full;
    SYS_writev => fs::writev, [Fd, Ptr, Int], Full;
    SYS_pread64 => fs::pread64, [Fd, OutBuf, Int, Int], Full;
    SYS_pwrite64 => fs::pwrite64, [Fd, InBuf(2), Int, Int], Partial("files are read-only");
    SYS_open => fs::open, [Path, Hex, Hex], Partial("read-only host filesystem");
    SYS_openat => fs::openat, [Fd, Path, Hex, Hex], Partial("read-only host filesystem");
    SYS_close => fs::close, [Fd], Full;
    SYS_lseek => fs::lseek, [Fd, Int, Int], Full;
    SYS_fstat => fs::fstat, [Fd, Ptr], Full;
    SYS_stat => fs::stat, [Path, Ptr], Full;
    SYS_lstat => fs::lstat, [Path, Ptr], Full;
    SYS_newfstatat => fs::newfstatat, [Fd, Path, Ptr, Hex], Full;
    SYS_statx => fs::statx, [Fd, Path, Hex, Hex, Ptr], Full;
    SYS_getdents64 => fs::getdents64, [Fd, Ptr, Int], Full;
    SYS_readlink => fs::readlink, [Path, Ptr, Int], Full;
    SYS_readlinkat => fs::readlinkat, [Fd, Path, Ptr, Int], Full;
    SYS_access => fs::access, [Path, Hex], Full;
    SYS_faccessat => fs::faccessat, [Fd, Path, Hex], Full;
    SYS_faccessat2 => fs::faccessat2, [Fd, Path, Hex, Hex], Full;
    SYS_getcwd => fs::getcwd, [Ptr, Int], Full;
    SYS_chdir => fs::chdir, [Path], Full;
    SYS_fchdir => fs::fchdir, [Fd], Full;
    SYS_fcntl => fs::fcntl, [Fd, Int, Hex], Partial("no locks");
    SYS_dup => fs::dup, [Fd], Full;
    SYS_dup2 => fs::dup2, [Fd, Fd], Full;
    SYS_dup3 => fs::dup3, [Fd, Fd, Hex], Full;
    SYS_sendfile => fs::sendfile, [Fd, Fd, Ptr, Int], Full;
    SYS_ioctl => fs::ioctl, [Fd, Hex, Ptr], Partial("TCGETS and TIOCGWINSZ on stdio");
    SYS_pipe => poll::pipe, [Ptr], Full;
    SYS_pipe2 => poll::pipe2, [Ptr, Hex], Full;
    SYS_eventfd => poll::eventfd, [Int], Full;
    SYS_eventfd2 => poll::eventfd2, [Int, Hex], Full;
    SYS_poll => poll::poll, [Ptr, Int, Int], Full;
    SYS_ppoll => poll::ppoll, [Ptr, Int, Ptr, Ptr, Int], Partial("signal mask ignored");
    SYS_select => poll::select, [Int, Ptr, Ptr, Ptr, Ptr], Partial("timeout not updated");
    SYS_pselect6 => poll::pselect6, [Int, Ptr, Ptr, Ptr, Ptr, Ptr], Partial("signal mask ignored; timeout not updated");
    SYS_brk => mm::brk, [Hex], Full;
    SYS_mmap => mm::mmap, [Hex, Int, Hex, Hex, Fd, Hex], Partial("file mappings are private copies");
    SYS_munmap => mm::munmap, [Hex, Int], Full;
    SYS_mprotect => mm::mprotect, [Hex, Int, Hex], Full;
    SYS_madvise => mm::madvise, [Hex, Int, Int], Partial("DONTNEED zeroes; other advice ignored");
    SYS_mremap => mm::mremap, [Hex, Int, Int, Hex, Hex], Partial("no MREMAP_FIXED");
    SYS_arch_prctl => process::arch_prctl, [Hex, Hex], Partial("ARCH_SET_FS and ARCH_GET_FS");
    SYS_set_tid_address => process::set_tid_address, [Ptr], Full;
    SYS_set_robust_list => process::set_robust_list, [Ptr, Int], Full;
    SYS_rseq => process::rseq, [Ptr, Int, Hex, Hex], Partial("ENOSYS: glibc falls back");
    SYS_prlimit64 => process::prlimit64, [Int, Int, Ptr, Ptr], Partial("fixed limits");
    SYS_getrlimit => process::getrlimit, [Int, Ptr], Partial("fixed limits");
    SYS_getrandom => process::getrandom, [Ptr, Int, Hex], Full;
    SYS_uname => process::uname, [Ptr], Full;
    SYS_getpid => process::getpid, [], Full;
    SYS_gettid => process::gettid, [], Full;
    SYS_getppid => process::getppid, [], Full;
    SYS_getuid => process::getuid, [], Full;
    SYS_geteuid => process::geteuid, [], Full;
    SYS_getgid => process::getgid, [], Full;
    SYS_getegid => process::getegid, [], Full;
    SYS_sched_getaffinity => process::sched_getaffinity, [Int, Int, Ptr], Full;
    SYS_pause => process::pause, [], Full;
    SYS_sched_yield => process::sched_yield, [], Full;
    SYS_prctl => process::prctl, [Int, Hex, Hex, Hex, Hex], Partial("names and dumpable flag only");
    SYS_clone => process::clone, [Hex, Ptr, Ptr, Ptr, Hex], Partial("threads and fork-like copies");
    SYS_clone3 => process::clone3, [Ptr, Int], Partial("threads and fork-like copies");
    SYS_futex => futex::futex, [Ptr, Int, Int, Ptr, Ptr, Hex], Partial("no PI futexes");
    SYS_tgkill => process::tgkill, [Int, Int, Int], Full;
    SYS_tkill => process::tkill, [Int, Int], Full;
    SYS_kill => process::kill, [Int, Int], Partial("stop/continue ignored");
    SYS_setpgid => exec::setpgid, [Int, Int], Full;
    SYS_getpgid => exec::getpgid, [Int], Full;
    SYS_getpgrp => exec::getpgrp, [], Full;
    SYS_setsid => exec::setsid, [], Full;
    SYS_getsid => exec::getsid, [Int], Full;
    SYS_getcpu => process::getcpu, [Ptr, Ptr, Ptr], Full;
    SYS_sched_setaffinity => process::sched_setaffinity, [Int, Int, Ptr], Partial("recorded");
    SYS_fork => exec::fork_syscall, [], Partial("eager copy of memory");
    SYS_vfork => exec::vfork, [], Partial("a copy, like fork");
    SYS_execve => exec::execve, [Path, Ptr, Ptr], Partial("static programs and #! scripts");
    SYS_execveat => exec::execveat, [Fd, Path, Ptr, Ptr, Hex], Partial("static programs and #! scripts");
    SYS_wait4 => exec::wait4, [Int, Ptr, Hex, Ptr], Partial("no stop/continue reports yet");
    SYS_waitid => exec::waitid, [Int, Int, Ptr, Hex, Ptr], Partial("exits only");
    SYS_exit => process::exit, [Int], Full;
    SYS_exit_group => process::exit_group, [Int], Full;
    SYS_rt_sigaction => signal::rt_sigaction, [Int, Ptr, Ptr, Int], Full;
    SYS_rt_sigreturn => signal::rt_sigreturn, [], Full;
    SYS_rt_sigpending => signal::rt_sigpending, [Ptr, Int], Full;
    SYS_rt_sigsuspend => signal::rt_sigsuspend, [Ptr, Int], Full;
    SYS_rt_sigtimedwait => signal::rt_sigtimedwait, [Ptr, Ptr, Ptr, Int], Full;
    SYS_alarm => time::alarm, [Int], Full;
    SYS_setitimer => time::setitimer, [Int, Ptr, Ptr], Partial("ITIMER_REAL only");
    SYS_getitimer => time::getitimer, [Int, Ptr], Partial("ITIMER_REAL only");
    SYS_rt_sigprocmask => signal::rt_sigprocmask, [Int, Ptr, Ptr, Int], Full;
    SYS_sigaltstack => signal::sigaltstack, [Ptr, Ptr], Full;
    SYS_clock_gettime => time::clock_gettime, [Int, Ptr], Full;
    SYS_clock_getres => time::clock_getres, [Int, Ptr], Full;
    SYS_gettimeofday => time::gettimeofday, [Ptr, Ptr], Full;
    SYS_time => time::time, [Ptr], Full;
    SYS_times => time::times, [Ptr], Partial("children's times are 0 until processes exist");
    SYS_getrusage => time::getrusage, [Int, Ptr], Partial("CPU times only");
    SYS_nanosleep => time::nanosleep, [Ptr, Ptr], Full;
    SYS_clock_nanosleep => time::clock_nanosleep, [Int, Hex, Ptr, Ptr], Full;
}

fn index() -> &'static [Option<&'static Entry>] {
    static INDEX: OnceLock<Vec<Option<&'static Entry>>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut v = vec![None; 512];
        for e in TABLE {
            v[e.nr as usize] = Some(e);
        }
        v
    })
}

/// The table row for `nr`.
pub fn lookup(nr: u64) -> Option<&'static Entry> {
    index().get(nr as usize).copied().flatten()
}

/// The name of any x86-64 syscall number.
pub fn name(nr: u64) -> String {
    match lookup(nr) {
        Some(e) => e.name.to_string(),
        None => syscalls::Sysno::new(nr as usize)
            .map(|s| s.name().to_string())
            .unwrap_or_else(|| format!("syscall_{nr}")),
    }
}

/// Serves the syscall in the task's registers.
pub fn dispatch(k: &Kernel, task: &Arc<Task>, t: &mut TaskInner) -> Outcome {
    let (nr, a) = t.ctx.syscall_args();
    let entry = lookup(nr);
    let strace = k.config.strace;
    let pre = if strace {
        entry.map(|e| format_args_pre(task, e, &a))
    } else {
        None
    };
    let mut sys = Sys { k, task, t, a };
    let result = match entry {
        Some(e) => (e.handler)(&mut sys),
        None => {
            if k.enosys_logged.lock().insert(nr) {
                eprintln!(
                    "sentry: unsupported syscall {} ({nr}) returns ENOSYS",
                    name(nr)
                );
            }
            Err(Errno::ENOSYS)
        }
    };
    let out = match result {
        Ok(o) => o,
        Err(e) => Outcome::Return(-(e.0 as i64)),
    };
    if strace {
        trace(task, nr, entry, pre, &a, &out);
    }
    out
}

fn escape(buf: &[u8], limit: usize) -> String {
    let mut s = String::from("\"");
    for &b in buf.iter().take(limit) {
        match b {
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\r' => s.push_str("\\r"),
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\{b:o}");
            }
        }
    }
    s.push('"');
    if buf.len() > limit {
        s.push_str("...");
    }
    s
}

fn format_arg(task: &Task, kind: Arg, v: u64, a: &[u64; 6]) -> String {
    match kind {
        Arg::Int => (v as i64).to_string(),
        Arg::Hex => format!("{v:#x}"),
        Arg::Fd => {
            if v as i32 == libc::AT_FDCWD {
                "AT_FDCWD".into()
            } else {
                (v as i32).to_string()
            }
        }
        Arg::Path => match task.tg.mm.read_cstr(v, 4096) {
            Ok(p) => escape(&p, 4096),
            Err(_) => format!("{v:#x}"),
        },
        Arg::InBuf(n) => {
            let len = (a[n] as usize).min(32);
            let mut b = vec![0u8; len];
            match task.tg.mm.read(v, &mut b) {
                Ok(()) => escape(&b, 32) + if a[n] as usize > 32 { "..." } else { "" },
                Err(_) => format!("{v:#x}"),
            }
        }
        Arg::OutBuf | Arg::Ptr => {
            if v == 0 {
                "NULL".into()
            } else {
                format!("{v:#x}")
            }
        }
    }
}

fn format_args_pre(task: &Task, e: &Entry, a: &[u64; 6]) -> Vec<String> {
    e.args
        .iter()
        .enumerate()
        .map(|(i, &k)| {
            if matches!(k, Arg::OutBuf) {
                String::new()
            } else {
                format_arg(task, k, a[i], a)
            }
        })
        .collect()
}

fn trace(
    task: &Task,
    nr: u64,
    entry: Option<&Entry>,
    pre: Option<Vec<String>>,
    a: &[u64; 6],
    out: &Outcome,
) {
    let args = match (entry, pre) {
        (Some(e), Some(mut pre)) => {
            for (i, k) in e.args.iter().enumerate() {
                if matches!(k, Arg::OutBuf) {
                    pre[i] = match out {
                        Outcome::Return(n) if *n >= 0 => {
                            let len = (*n as usize).min(32);
                            let mut b = vec![0u8; len];
                            match task.tg.mm.read(a[i], &mut b) {
                                Ok(()) => escape(&b, 32) + if *n > 32 { "..." } else { "" },
                                Err(_) => format!("{:#x}", a[i]),
                            }
                        }
                        _ => format!("{:#x}", a[i]),
                    };
                }
            }
            pre.join(", ")
        }
        _ => a
            .iter()
            .map(|v| format!("{v:#x}"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let name = name(nr);
    let result = match out {
        Outcome::Return(v) if *v < 0 && *v > -4096 => {
            let e = Errno(-*v as i32);
            format!(
                "-1 {} ({})",
                e.name(),
                std::io::Error::from_raw_os_error(e.0)
            )
        }
        Outcome::Return(v) if matches!(name.as_str(), "mmap" | "brk" | "mremap") => {
            format!("{v:#x}")
        }
        Outcome::Return(v) => v.to_string(),
        Outcome::Block { .. } => "? <blocked>".into(),
        Outcome::Exited => "?".into(),
        Outcome::Resume => "? <registers restored>".into(),
    };
    eprintln!("[pid {:>5}] {name}({args}) = {result}", task.tid);
}

/// The support matrix in Markdown, generated from the table.
pub fn support_matrix() -> String {
    let mut s = String::from("| nr | syscall | support |\n|---|---|---|\n");
    let mut rows: Vec<&Entry> = TABLE.iter().collect();
    rows.sort_by_key(|e| e.nr);
    for e in rows {
        let sup = match e.support {
            Full => "supported".to_string(),
            Partial(n) => format!("partial: {n}"),
        };
        let _ = writeln!(s, "| {} | {} | {} |", e.nr, e.name, sup);
    }
    s.push_str("\nEvery other syscall returns ENOSYS (logged once per number).\n");
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn documented_support_matrix_is_current() {
        // docs/SYSCALLS.md is generated: `sentry syscalls > docs/SYSCALLS.md`.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/SYSCALLS.md");
        let doc = std::fs::read_to_string(path).expect("docs/SYSCALLS.md");
        assert_eq!(
            doc,
            super::support_matrix(),
            "docs/SYSCALLS.md is stale: regenerate it with `sentry syscalls > docs/SYSCALLS.md`"
        );
    }

    #[test]
    fn table_has_no_duplicate_numbers() {
        let mut seen = std::collections::HashSet::new();
        for e in super::TABLE {
            assert!(
                seen.insert(e.nr),
                "syscall {} ({}) is in the table twice",
                e.nr,
                e.name
            );
        }
    }
}
