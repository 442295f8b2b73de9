//! New processes: fork (clone without CLONE_VM), execve and waiting for
//! children with wait4 and waitid.
//!
//! A fork gets a new stub process whose memory is an eager copy of the
//! parent's (holes stay holes); its first thread starts with the parent's
//! registers and rax = 0. An exec loads the new image into a new stub
//! process and replaces the thread group and task objects (same PID and TID),
//! so nothing of the old image survives; the old stub is killed.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sentry_systrap::{host, Regs};

use super::{ret, Outcome, Sys};
use crate::errno::Errno;
use crate::kernel::ExitStatus;
use crate::loader::{self, LoadError};
use crate::mm::Mm;
use crate::task::{FsState, RunState, SigAction, Start, Task, ThreadGroup, ThreadGroupParts};

fn dup_cwd(s: &Sys) -> Result<FsState, Errno> {
    let fs = s.task.tg.fs.lock();
    let cwd = host::openat(
        fs.cwd.as_raw_fd(),
        c".",
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )
    .map_err(Errno::from)?;
    Ok(FsState {
        cwd,
        cwd_path: fs.cwd_path.clone(),
        umask: fs.umask,
    })
}

/// `clone` without CLONE_VM (and `vfork`, which gets a copy as well).
pub fn fork(s: &mut Sys, flags: u64, stack: u64, ctid: u64, tls: u64) -> Result<Outcome, Errno> {
    let f = |bit: i32| flags & bit as u64 != 0;
    let parent = s.task.tg.clone();
    let mut regs: Regs = *s.t.ctx.regs();
    regs.rax = 0;
    if stack != 0 {
        regs.rsp = stack;
    }
    let fs_base = if f(libc::CLONE_SETTLS) {
        tls
    } else {
        s.t.ctx.fs_base()
    };
    let worker = s.k.pick_worker();
    let mut ctx =
        s.k.platform
            .new_address_space(&regs, worker)
            .map_err(|_| Errno::EAGAIN)?;
    let mm = Arc::new(Mm::new(s.k.platform.memory_file().clone()));
    let setup = parent
        .mm
        .fork_into(&mm, &mut *ctx)
        .and_then(|()| ctx.set_fs_base(fs_base).map_err(|_| Errno::ENOMEM));
    if let Err(e) = setup {
        ctx.address_space().kill();
        return Err(e);
    }
    let pid = s.k.alloc_tid();
    let fds = if f(libc::CLONE_FILES) {
        parent.fds.clone()
    } else {
        Arc::new(parent.fds.fork())
    };
    let tg = ThreadGroup::new(ThreadGroupParts {
        pid,
        ppid: parent.pid,
        pgid: parent.pgid.load(Ordering::Relaxed),
        sid: parent.sid.load(Ordering::Relaxed),
        address_space: ctx.address_space(),
        mm,
        fds,
        fs: dup_cwd(s)?,
        exe: parent.exe.clone(),
        creds: parent.creds,
        limits: parent.limits,
        sigactions: *parent.sigactions.lock(),
    });
    if f(libc::CLONE_CHILD_SETTID) {
        let _ = tg.mm.write_u32(ctid, pid as u32);
    }
    let task = Task::new(pid, tg.clone(), ctx, worker, Start::Resume);
    {
        let mut t = task.inner.lock();
        t.sigmask = s.t.sigmask;
        t.altstack = s.t.altstack;
        if f(libc::CLONE_CHILD_CLEARTID) {
            t.clear_child_tid = ctid;
        }
    }
    parent.children.lock().pids.push(pid);
    s.k.start_task(task);
    ret(pid)
}

pub fn fork_syscall(s: &mut Sys) -> Result<Outcome, Errno> {
    fork(s, libc::SIGCHLD as u64, 0, 0, 0)
}

pub fn vfork(s: &mut Sys) -> Result<Outcome, Errno> {
    fork(s, libc::SIGCHLD as u64, 0, 0, 0)
}

/// A child state change a wait can report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Exited(ExitStatus),
    Stopped(i32),
    Continued,
}

impl Event {
    /// The `wait4` status word.
    fn wait_status(self) -> i32 {
        match self {
            Event::Exited(ExitStatus::Exited(c)) => (c & 0xff) << 8,
            Event::Exited(ExitStatus::Signaled(sig)) => sig & 0x7f,
            Event::Stopped(sig) => 0x7f | (sig << 8),
            Event::Continued => 0xffff,
        }
    }

    /// `si_code` and `si_status` for waitid.
    fn siginfo(self) -> (i32, i32) {
        match self {
            Event::Exited(ExitStatus::Exited(c)) => (crate::signal::CLD_EXITED, c),
            Event::Exited(ExitStatus::Signaled(s)) => (crate::signal::CLD_KILLED, s),
            Event::Stopped(s) => (crate::signal::CLD_STOPPED, s),
            Event::Continued => (crate::signal::CLD_CONTINUED, libc::SIGCONT),
        }
    }
}

/// Finds a child matching `pid` (-1: any) with an event the options ask
/// for: exits (`exited`), stops (WUNTRACED/WSTOPPED), continues
/// (WCONTINUED). Ok(None): children exist but none has such an event.
fn reap(
    s: &Sys,
    pid: i32,
    exited: bool,
    stopped: bool,
    continued: bool,
    consume: bool,
) -> Result<Option<(i32, Event)>, Errno> {
    let mut ch = s.task.tg.children.lock();
    let pgid = s.task.tg.pgid.load(Ordering::Relaxed);
    let procs = s.k.processes.lock();
    let matching: Vec<i32> = ch
        .pids
        .iter()
        .copied()
        .filter(|&c| match pid {
            -1 => true,
            p if p > 0 => c == p,
            p => {
                let want = if p == 0 { pgid } else { -p };
                procs
                    .get(&c)
                    .is_none_or(|g| g.pgid.load(Ordering::Relaxed) == want)
            }
        })
        .collect();
    drop(procs);
    if matching.is_empty() {
        return Err(Errno::ECHILD);
    }
    if exited {
        let mut zombies = s.k.zombies.lock();
        for &c in &matching {
            if let Some(&st) = zombies.get(&c) {
                if consume {
                    zombies.remove(&c);
                    ch.pids.retain(|&p| p != c);
                    s.k.job_events.lock().remove(&c);
                }
                return Ok(Some((c, Event::Exited(st))));
            }
        }
    }
    let mut jobs = s.k.job_events.lock();
    for &c in &matching {
        let ev = match jobs.get(&c) {
            Some(crate::kernel::JobEvent::Stopped(sig)) if stopped => Event::Stopped(*sig),
            Some(crate::kernel::JobEvent::Continued) if continued => Event::Continued,
            _ => continue,
        };
        if consume {
            jobs.remove(&c);
        }
        return Ok(Some((c, ev)));
    }
    Ok(None)
}

/// Parks the task until a child changes state.
fn wait_for_children(s: &Sys) -> Result<Outcome, Errno> {
    let w = crate::pipe::Waiter::new(s.k, s.task);
    s.task.tg.children.lock().waiters.add(&w);
    Ok(Outcome::Block { deadline: None })
}

pub fn wait4(s: &mut Sys) -> Result<Outcome, Errno> {
    let [pid, status, options, rusage, ..] = s.a;
    let pid = pid as i32;
    let options = options as i32;
    if options
        & !(libc::WNOHANG | libc::WUNTRACED | libc::WCONTINUED | libc::__WALL | libc::__WCLONE)
        != 0
    {
        return Err(Errno::EINVAL);
    }
    // Register first, then look: an event in between wakes us again.
    if options & libc::WNOHANG == 0 {
        let w = crate::pipe::Waiter::new(s.k, s.task);
        s.task.tg.children.lock().waiters.add(&w);
    }
    let found = reap(
        s,
        pid,
        true,
        options & libc::WUNTRACED != 0,
        options & libc::WCONTINUED != 0,
        true,
    )?;
    match found {
        Some((child, ev)) => {
            if status != 0 {
                s.mm().write_u32(status, ev.wait_status() as u32)?;
            }
            if rusage != 0 {
                s.mm().write(rusage, &[0u8; 144])?;
            }
            ret(child)
        }
        None if options & libc::WNOHANG != 0 => ret(0),
        None => Ok(Outcome::Block { deadline: None }),
    }
}

pub fn waitid(s: &mut Sys) -> Result<Outcome, Errno> {
    let [idtype, id, infop, options, ..] = s.a;
    let options = options as i32;
    if options & (libc::WEXITED | libc::WSTOPPED | libc::WCONTINUED) == 0 {
        return Err(Errno::EINVAL);
    }
    let pid = match idtype as u32 {
        libc::P_ALL => -1,
        libc::P_PID => id as i32,
        libc::P_PGID => -(id as i32),
        _ => return Err(Errno::EINVAL),
    };
    let found = reap(
        s,
        pid,
        options & libc::WEXITED != 0,
        options & libc::WSTOPPED != 0,
        options & libc::WCONTINUED != 0,
        options & libc::WNOWAIT == 0,
    )?;
    match found {
        Some((child, ev)) => {
            if infop != 0 {
                let mut b = [0u8; 128];
                let (code, status) = ev.siginfo();
                b[0..4].copy_from_slice(&libc::SIGCHLD.to_le_bytes());
                b[8..12].copy_from_slice(&code.to_le_bytes());
                b[16..20].copy_from_slice(&child.to_le_bytes());
                b[20..24].copy_from_slice(&s.task.tg.creds.uid.to_le_bytes());
                b[24..28].copy_from_slice(&status.to_le_bytes());
                s.mm().write(infop, &b)?;
            }
            ret(0)
        }
        None if options & libc::WNOHANG != 0 => {
            if infop != 0 {
                s.mm().write(infop, &[0u8; 128])?;
            }
            ret(0)
        }
        None => wait_for_children(s),
    }
}

/// Reads a NULL-terminated array of string pointers (argv, envp).
fn string_array(s: &Sys, addr: u64) -> Result<Vec<Vec<u8>>, Errno> {
    let mut out = Vec::new();
    if addr == 0 {
        return Ok(out);
    }
    let mut total = 0usize;
    for i in 0..=65536u64 {
        let p = s.mm().read_u64(addr + 8 * i)?;
        if p == 0 {
            return Ok(out);
        }
        let arg = s.mm().read_cstr(p, 131072)?;
        total += arg.len() + 1;
        if total > 2 << 20 {
            return Err(Errno::E2BIG);
        }
        out.push(arg);
    }
    Err(Errno::E2BIG)
}

fn load_errno(e: &LoadError) -> Errno {
    match e {
        LoadError::Open { source, .. } => Errno::from_io(source),
        LoadError::Elf { .. } | LoadError::Dynamic { .. } | LoadError::Image { .. } => {
            Errno::ENOEXEC
        }
    }
}

/// Host path of a guest path (relative ones against the working directory).
fn host_path(s: &Sys, path: &[u8]) -> Result<String, Errno> {
    let full = if path.first() == Some(&b'/') {
        path.to_vec()
    } else {
        let mut p = s.task.tg.fs.lock().cwd_path.clone();
        p.push(b'/');
        p.extend_from_slice(path);
        p
    };
    String::from_utf8(full).map_err(|_| Errno::ENOENT)
}

pub fn execve(s: &mut Sys) -> Result<Outcome, Errno> {
    let path = s.mm().read_cstr(s.a[0], 4095)?;
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    let file = host_path(s, &path)?;
    exec_file(s, path, file, s.a[1], s.a[2])
}

/// The host path behind a guest descriptor (a file or directory the
/// sentry opened on the host).
fn fd_path(s: &Sys, fd: u64) -> Result<String, Errno> {
    let f = s.task.tg.fds.get(fd as i32)?;
    let host = f.host_fd().ok_or(Errno::EACCES)?;
    let p = std::fs::read_link(format!("/proc/self/fd/{host}")).map_err(Errno::from)?;
    p.into_os_string().into_string().map_err(|_| Errno::ENOENT)
}

/// `execveat(dirfd, path, argv, envp, flags)`: `path` relative to `dirfd`,
/// or with AT_EMPTY_PATH the file `dirfd` itself (fexecve).
pub fn execveat(s: &mut Sys) -> Result<Outcome, Errno> {
    let [dirfd, path_addr, argv, envp, flags, _] = s.a;
    let flags = flags as i32;
    if flags & !(libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW) != 0 {
        return Err(Errno::EINVAL);
    }
    let path = s.mm().read_cstr(path_addr, 4095)?;
    let file = if path.is_empty() {
        if flags & libc::AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        fd_path(s, dirfd)?
    } else if path[0] == b'/' || dirfd as i32 == libc::AT_FDCWD {
        host_path(s, &path)?
    } else {
        let mut p = fd_path(s, dirfd)?;
        p.push('/');
        p.push_str(std::str::from_utf8(&path).map_err(|_| Errno::ENOENT)?);
        p
    };
    let shown = if path.is_empty() {
        file.clone().into_bytes()
    } else {
        path
    };
    exec_file(s, shown, file, argv, envp)
}

/// Replaces the process image with `file` (a host path; `path` is what the
/// guest named it, for `#!` scripts).
fn exec_file(
    s: &mut Sys,
    path: Vec<u8>,
    file: String,
    argv_addr: u64,
    envp_addr: u64,
) -> Result<Outcome, Errno> {
    let mut file = file;
    let mut argv = string_array(s, argv_addr)?;
    let envv = string_array(s, envp_addr)?;
    // "#!interpreter [arg]": run the interpreter on the script (one level).
    if let Ok(head) = std::fs::read(&file).map(|b| b.into_iter().take(256).collect::<Vec<u8>>()) {
        if head.starts_with(b"#!") {
            let line = head[2..].split(|&b| b == b'\n').next().unwrap_or_default();
            let line = String::from_utf8_lossy(line).trim().to_string();
            let mut parts = line.splitn(2, [' ', '\t']);
            let interp = parts.next().unwrap_or_default().to_string();
            if interp.is_empty() {
                return Err(Errno::ENOEXEC);
            }
            let mut new_argv = vec![interp.clone().into_bytes()];
            if let Some(arg) = parts.next().map(str::trim).filter(|a| !a.is_empty()) {
                new_argv.push(arg.as_bytes().to_vec());
            }
            new_argv.push(path.clone());
            new_argv.extend(argv.into_iter().skip(1));
            argv = new_argv;
            file = interp;
        }
    }
    let (bytes, info) = loader::read_executable(&file).map_err(|e| load_errno(&e))?;
    let worker = s.task.worker();
    let mut ctx =
        s.k.platform
            .new_address_space(&Regs::default(), worker)
            .map_err(|_| Errno::ENOMEM)?;
    let mm = Arc::new(Mm::new(s.k.platform.memory_file().clone()));
    if let Err(e) = loader::load(&file, &bytes, &info, &mm, &mut *ctx, &argv, &envv) {
        ctx.address_space().kill();
        return Err(load_errno(&e));
    }
    // Past the point of no return: the old image goes.
    let old = s.task.tg.clone();
    old.fds.close_on_exec();
    let mut actions = *old.sigactions.lock();
    for a in actions.iter_mut() {
        if a.handler > 1 {
            *a = SigAction::default();
        }
    }
    let tg = ThreadGroup::new(ThreadGroupParts {
        pid: old.pid,
        ppid: old.ppid.load(Ordering::Relaxed),
        pgid: old.pgid.load(Ordering::Relaxed),
        sid: old.sid.load(Ordering::Relaxed),
        address_space: ctx.address_space(),
        mm,
        fds: old.fds.clone(),
        fs: dup_cwd(s)?,
        exe: std::fs::canonicalize(&file)
            .map(|p| p.into_os_string().into_encoded_bytes())
            .unwrap_or_else(|_| file.clone().into_bytes()),
        creds: old.creds,
        limits: old.limits,
        sigactions: actions,
    });
    {
        let mut from = old.children.lock();
        let mut to = tg.children.lock();
        to.pids = std::mem::take(&mut from.pids);
        to.waiters = std::mem::take(&mut from.waiters);
    }
    // Retire every thread of the old image (the exec'ing one included) and
    // kill its stub process; the new task takes the process's PID as TID.
    old.exiting.store(true, Ordering::SeqCst);
    for t in old.tasks() {
        let was = std::mem::replace(&mut t.sched.lock().state, RunState::Dead);
        if was != RunState::Dead {
            s.k.retire(&t);
        }
        s.k.tasks.lock().remove(&t.tid);
    }
    old.address_space.kill();
    let task = Task::new(old.pid, tg.clone(), ctx, worker, Start::Resume);
    task.inner.lock().sigmask = s.t.sigmask;
    s.k.processes.lock().insert(tg.pid, tg.clone());
    s.k.start_task(task);
    Ok(Outcome::Exited)
}

fn process(s: &Sys, pid: u64) -> Result<Arc<ThreadGroup>, Errno> {
    let pid = pid as i32;
    if pid == 0 {
        return Ok(s.task.tg.clone());
    }
    if pid < 0 {
        return Err(Errno::EINVAL);
    }
    s.k.processes.lock().get(&pid).cloned().ok_or(Errno::ESRCH)
}

/// `setpgid(pid, pgid)`: for the caller or one of its children, within
/// the caller's session; a session leader cannot move.
pub fn setpgid(s: &mut Sys) -> Result<Outcome, Errno> {
    let tg = process(s, s.a[0])?;
    let me = &s.task.tg;
    if !Arc::ptr_eq(&tg, me) && tg.ppid.load(Ordering::Relaxed) != me.pid {
        return Err(Errno::ESRCH);
    }
    let pgid = if s.a[1] == 0 { tg.pid } else { s.a[1] as i32 };
    if pgid < 0 {
        return Err(Errno::EINVAL);
    }
    let sid = tg.sid.load(Ordering::Relaxed);
    if tg.pid == sid || sid != me.sid.load(Ordering::Relaxed) {
        return Err(Errno::EPERM);
    }
    if pgid != tg.pid {
        let exists = s.k.processes.lock().values().any(|p| {
            p.pgid.load(Ordering::Relaxed) == pgid && p.sid.load(Ordering::Relaxed) == sid
        });
        if !exists {
            return Err(Errno::EPERM);
        }
    }
    tg.pgid.store(pgid, Ordering::Relaxed);
    ret(0)
}

pub fn getpgid(s: &mut Sys) -> Result<Outcome, Errno> {
    ret(process(s, s.a[0])?.pgid.load(Ordering::Relaxed))
}

pub fn getpgrp(s: &mut Sys) -> Result<Outcome, Errno> {
    ret(s.task.tg.pgid.load(Ordering::Relaxed))
}

pub fn getsid(s: &mut Sys) -> Result<Outcome, Errno> {
    ret(process(s, s.a[0])?.sid.load(Ordering::Relaxed))
}

/// `setsid()`: a new session and process group led by the caller, unless
/// it already leads a process group.
pub fn setsid(s: &mut Sys) -> Result<Outcome, Errno> {
    let tg = &s.task.tg;
    let leads =
        s.k.processes
            .lock()
            .values()
            .any(|p| p.pgid.load(Ordering::Relaxed) == tg.pid);
    if leads {
        return Err(Errno::EPERM);
    }
    tg.pgid.store(tg.pid, Ordering::Relaxed);
    tg.sid.store(tg.pid, Ordering::Relaxed);
    ret(tg.pid)
}
