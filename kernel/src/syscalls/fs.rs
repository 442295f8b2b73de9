//! File syscalls: reads and writes, opening and closing, metadata, the
//! working directory and descriptor juggling. Files are the host's, read-only.

use std::os::fd::AsRawFd;
use std::sync::Arc;

use sentry_systrap::host;

use super::{ret, Outcome, Sys};
use crate::errno::Errno;
use crate::pipe::{Waiter, POLLERR, POLLHUP, POLLIN, POLLOUT};
use crate::task::Restart;
use crate::vfs::{self, File, Io, Resolved};

/// Largest single transfer (Linux caps at MAX_RW_COUNT similarly).
const MAX_IO: usize = 0x7fff_f000;
/// Bounce buffers grow up to this size per call.
const CHUNK: usize = 1 << 20;

fn file(s: &Sys, fd: u64) -> Result<Arc<File>, Errno> {
    s.task.tg.fds.get(fd as i32)
}

fn path_arg(s: &Sys, addr: u64) -> Result<Vec<u8>, Errno> {
    s.mm().read_cstr(addr, 4095)
}

/// Resolves `path` against `dirfd` (AT_FDCWD or a directory).
fn resolve(s: &Sys, dirfd: u64, path: &[u8]) -> Result<Resolved, Errno> {
    let cwd = s.task.tg.fs.lock().cwd.as_raw_fd();
    let dir = if dirfd as i32 == libc::AT_FDCWD || path.first() == Some(&b'/') {
        None
    } else {
        let f = file(s, dirfd)?;
        if !f.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        f.host_fd()
    };
    vfs::resolve(path, cwd, dir, s.k.config.cpus)
}

/// Blocks the task until a host fd is ready, then the call runs again.
fn wait_host(s: &Sys, fd: i32, write: bool) -> Result<Outcome, Errno> {
    s.k.wait_fd(s.task, fd, write)?;
    Ok(Outcome::Block { deadline: None })
}

/// Blocks the task until a sentry-served file (pipe, eventfd) changes.
/// Registration re-checks readiness under the file's lock: if `wanted`
/// events are already there, the task is woken at once and retries.
fn wait_file(s: &Sys, f: &File, wanted: i16) -> Result<Outcome, Errno> {
    let w = Waiter::new(s.k, s.task);
    if f.poll(Some(&w))? & wanted != 0 {
        s.k.wake(s.task);
    }
    Ok(Outcome::Block { deadline: None })
}

/// Blocks a read that found nothing to read.
fn wait_read(s: &Sys, f: &File, io: Io) -> Result<Outcome, Errno> {
    match io {
        Io::WouldBlock(fd) => wait_host(s, fd, false),
        _ => wait_file(s, f, POLLIN | POLLHUP | POLLERR),
    }
}

/// Writes `buf` whole, blocking (and keeping the progress in the task's
/// restart state) while a pipe is full; non-blocking files may write less.
fn write_all(s: &mut Sys, f: &File, buf: &[u8]) -> Result<Outcome, Errno> {
    let done = match s.t.restart {
        Some(Restart::Write { done }) => done.min(buf.len()),
        _ => 0,
    };
    s.t.restart = None;
    match f.write(&buf[done..]) {
        Ok(Io::Done(n)) => ret(done + n),
        Ok(Io::Wait(n)) => {
            s.t.restart = Some(Restart::Write { done: done + n });
            wait_file(s, f, POLLOUT | POLLERR)
        }
        Ok(Io::WouldBlock(fd)) => {
            s.t.restart = Some(Restart::Write { done });
            wait_host(s, fd, true)
        }
        Err(_) if done > 0 => ret(done),
        Err(e) => {
            if e == Errno::EPIPE {
                // A write to a pipe nobody reads also raises SIGPIPE.
                let info = crate::signal::SigInfo {
                    signo: libc::SIGPIPE,
                    code: crate::signal::SI_USER,
                    pid: s.task.tg.pid,
                    uid: s.task.tg.creds.uid,
                    ..Default::default()
                };
                s.k.signal_task(s.task, info);
            }
            Err(e)
        }
    }
}

pub fn read(s: &mut Sys) -> Result<Outcome, Errno> {
    let f = file(s, s.a[0])?;
    let len = (s.a[2] as usize).min(MAX_IO).min(CHUNK);
    let mut buf = vec![0u8; len];
    match f.read(&mut buf)? {
        Io::Done(n) => {
            s.mm().write(s.a[1], &buf[..n])?;
            ret(n)
        }
        io => wait_read(s, &f, io),
    }
}

pub fn write(s: &mut Sys) -> Result<Outcome, Errno> {
    let f = file(s, s.a[0])?;
    let len = (s.a[2] as usize).min(MAX_IO).min(CHUNK * 16);
    let mut buf = vec![0u8; len];
    s.mm().read(s.a[1], &mut buf)?;
    write_all(s, &f, &buf)
}

fn iovecs(s: &Sys, addr: u64, count: u64) -> Result<Vec<(u64, usize)>, Errno> {
    if count > 1024 {
        return Err(Errno::EINVAL);
    }
    let mut raw = vec![0u8; count as usize * 16];
    s.mm().read(addr, &mut raw)?;
    let mut total = 0usize;
    raw.chunks(16)
        .map(|c| {
            let base = u64::from_le_bytes(c[..8].try_into().unwrap_or([0; 8]));
            let len = u64::from_le_bytes(c[8..].try_into().unwrap_or([0; 8])) as usize;
            total = total
                .checked_add(len)
                .filter(|&t| t <= MAX_IO)
                .ok_or(Errno::EINVAL)?;
            Ok((base, len))
        })
        .collect()
}

pub fn readv(s: &mut Sys) -> Result<Outcome, Errno> {
    let f = file(s, s.a[0])?;
    let iov = iovecs(s, s.a[1], s.a[2])?;
    let total: usize = iov.iter().map(|v| v.1).sum::<usize>().min(CHUNK);
    let mut buf = vec![0u8; total];
    let n = match f.read(&mut buf)? {
        Io::Done(n) => n,
        io => return wait_read(s, &f, io),
    };
    let mut off = 0;
    for (base, len) in iov {
        if off >= n {
            break;
        }
        let take = len.min(n - off);
        s.mm().write(base, &buf[off..off + take])?;
        off += take;
    }
    ret(n)
}

pub fn writev(s: &mut Sys) -> Result<Outcome, Errno> {
    let f = file(s, s.a[0])?;
    let iov = iovecs(s, s.a[1], s.a[2])?;
    // Gather into one buffer so the host sees one write (atomic on pipes).
    let mut buf = Vec::new();
    for (base, len) in iov {
        let at = buf.len();
        buf.resize(at + len, 0);
        s.mm().read(base, &mut buf[at..])?;
    }
    write_all(s, &f, &buf)
}

pub fn pread64(s: &mut Sys) -> Result<Outcome, Errno> {
    let f = file(s, s.a[0])?;
    if (s.a[3] as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let mut buf = vec![0u8; (s.a[2] as usize).min(CHUNK)];
    let n = f.pread(&mut buf, s.a[3])?;
    s.mm().write(s.a[1], &buf[..n])?;
    ret(n)
}

pub fn pwrite64(s: &mut Sys) -> Result<Outcome, Errno> {
    let f = file(s, s.a[0])?;
    match f.kind {
        vfs::FileKind::Null | vfs::FileKind::Zero => ret(s.a[2] as i64),
        vfs::FileKind::Stdio(_) => Err(Errno::ESPIPE),
        _ => Err(Errno::EBADF),
    }
}

fn do_open(s: &Sys, dirfd: u64, path_addr: u64, flags: u64) -> Result<Outcome, Errno> {
    let path = path_arg(s, path_addr)?;
    let flags = flags as i32;
    let res = resolve(s, dirfd, &path)?;
    let f = vfs::open(res, flags, &path)?;
    if flags & libc::O_DIRECTORY != 0 && !f.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    ret(s.task.tg.fds.install(f, flags & libc::O_CLOEXEC != 0, 0)?)
}

pub fn open(s: &mut Sys) -> Result<Outcome, Errno> {
    do_open(s, libc::AT_FDCWD as u64, s.a[0], s.a[1])
}

pub fn openat(s: &mut Sys) -> Result<Outcome, Errno> {
    do_open(s, s.a[0], s.a[1], s.a[2])
}

pub fn close(s: &mut Sys) -> Result<Outcome, Errno> {
    s.task.tg.fds.close(s.a[0] as i32)?;
    ret(0)
}

pub fn lseek(s: &mut Sys) -> Result<Outcome, Errno> {
    ret(file(s, s.a[0])?.lseek(s.a[1] as i64, s.a[2] as i32)?)
}

pub fn fstat(s: &mut Sys) -> Result<Outcome, Errno> {
    let st = file(s, s.a[0])?.stat()?;
    s.mm().write(s.a[1], &st)?;
    ret(0)
}

fn stat_at(s: &Sys, dirfd: u64, path_addr: u64, buf: u64, flags: i32) -> Result<Outcome, Errno> {
    let path = path_arg(s, path_addr)?;
    let st = if path.is_empty() {
        if flags & libc::AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        if dirfd as i32 == libc::AT_FDCWD {
            host::fstat(s.task.tg.fs.lock().cwd.as_raw_fd()).map_err(Errno::from)?
        } else {
            file(s, dirfd)?.stat()?
        }
    } else {
        match resolve(s, dirfd, &path)? {
            Resolved::Host { dirfd, path } => {
                host::fstatat(dirfd, &path, flags & libc::AT_SYMLINK_NOFOLLOW)
                    .map_err(Errno::from)?
            }
            Resolved::Special(kind) => File::new(kind, 0, "").stat()?,
        }
    };
    s.mm().write(buf, &st)?;
    ret(0)
}

pub fn stat(s: &mut Sys) -> Result<Outcome, Errno> {
    stat_at(s, libc::AT_FDCWD as u64, s.a[0], s.a[1], 0)
}

pub fn lstat(s: &mut Sys) -> Result<Outcome, Errno> {
    stat_at(
        s,
        libc::AT_FDCWD as u64,
        s.a[0],
        s.a[1],
        libc::AT_SYMLINK_NOFOLLOW,
    )
}

pub fn newfstatat(s: &mut Sys) -> Result<Outcome, Errno> {
    stat_at(s, s.a[0], s.a[1], s.a[2], s.a[3] as i32)
}

pub fn statx(s: &mut Sys) -> Result<Outcome, Errno> {
    let path = path_arg(s, s.a[1])?;
    let flags = s.a[2] as i32 & (libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH | 0x6000);
    let mask = s.a[3] as u32;
    let buf = if path.is_empty() {
        if flags & libc::AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        let fd = if s.a[0] as i32 == libc::AT_FDCWD {
            s.task.tg.fs.lock().cwd.as_raw_fd()
        } else {
            file(s, s.a[0])?.host_fd().ok_or(Errno::EBADF)?
        };
        host::statx(fd, c"", flags, mask).map_err(Errno::from)?
    } else {
        match resolve(s, s.a[0], &path)? {
            Resolved::Host { dirfd, path } => {
                host::statx(dirfd, &path, flags, mask).map_err(Errno::from)?
            }
            Resolved::Special(_) => {
                let c = std::ffi::CString::new(path).map_err(|_| Errno::EINVAL)?;
                host::statx(libc::AT_FDCWD, &c, flags, mask).map_err(Errno::from)?
            }
        }
    };
    s.mm().write(s.a[4], &buf)?;
    ret(0)
}

pub fn getdents64(s: &mut Sys) -> Result<Outcome, Errno> {
    let f = file(s, s.a[0])?;
    if !f.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    let fd = f.host_fd().ok_or(Errno::EBADF)?;
    let mut buf = vec![0u8; (s.a[2] as usize).min(1 << 16)];
    let n = host::getdents64(fd, &mut buf).map_err(Errno::from)?;
    s.mm().write(s.a[1], &buf[..n])?;
    ret(n)
}

fn do_readlink(s: &Sys, dirfd: u64, path_addr: u64, buf: u64, size: u64) -> Result<Outcome, Errno> {
    if (size as i64) <= 0 {
        return Err(Errno::EINVAL);
    }
    let path = path_arg(s, path_addr)?;
    let target = if path == b"/proc/self/exe" {
        s.task.tg.exe.clone()
    } else {
        match resolve(s, dirfd, &path)? {
            Resolved::Host { dirfd, path } => {
                host::readlinkat(dirfd, &path).map_err(Errno::from)?
            }
            Resolved::Special(_) => return Err(Errno::EINVAL),
        }
    };
    let n = target.len().min(size as usize);
    s.mm().write(buf, &target[..n])?;
    ret(n)
}

pub fn readlink(s: &mut Sys) -> Result<Outcome, Errno> {
    do_readlink(s, libc::AT_FDCWD as u64, s.a[0], s.a[1], s.a[2])
}

pub fn readlinkat(s: &mut Sys) -> Result<Outcome, Errno> {
    do_readlink(s, s.a[0], s.a[1], s.a[2], s.a[3])
}

fn do_access(s: &Sys, dirfd: u64, path_addr: u64, mode: u64, flags: u64) -> Result<Outcome, Errno> {
    let path = path_arg(s, path_addr)?;
    match resolve(s, dirfd, &path)? {
        Resolved::Special(_) => ret(0),
        Resolved::Host { dirfd, path } => {
            let flags =
                flags as i32 & (libc::AT_SYMLINK_NOFOLLOW | libc::AT_EACCESS | libc::AT_EMPTY_PATH);
            host::faccessat(dirfd, &path, mode as i32, flags).map_err(Errno::from)?;
            if mode as i32 & libc::W_OK != 0 {
                return Err(Errno::EROFS);
            }
            ret(0)
        }
    }
}

pub fn access(s: &mut Sys) -> Result<Outcome, Errno> {
    do_access(s, libc::AT_FDCWD as u64, s.a[0], s.a[1], 0)
}

pub fn faccessat(s: &mut Sys) -> Result<Outcome, Errno> {
    do_access(s, s.a[0], s.a[1], s.a[2], 0)
}

pub fn faccessat2(s: &mut Sys) -> Result<Outcome, Errno> {
    do_access(s, s.a[0], s.a[1], s.a[2], s.a[3])
}

pub fn getcwd(s: &mut Sys) -> Result<Outcome, Errno> {
    let mut p = s.task.tg.fs.lock().cwd_path.clone();
    p.push(0);
    if p.len() > s.a[1] as usize {
        return Err(Errno::ERANGE);
    }
    s.mm().write(s.a[0], &p)?;
    ret(p.len())
}

fn set_cwd(s: &Sys, fd: std::os::fd::OwnedFd) -> Result<Outcome, Errno> {
    let path =
        std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(Errno::from)?;
    let mut fs = s.task.tg.fs.lock();
    fs.cwd = fd;
    fs.cwd_path = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
    ret(0)
}

pub fn chdir(s: &mut Sys) -> Result<Outcome, Errno> {
    let path = path_arg(s, s.a[0])?;
    match resolve(s, libc::AT_FDCWD as u64, &path)? {
        Resolved::Host { dirfd, path } => {
            let fd = host::openat(dirfd, &path, libc::O_PATH | libc::O_DIRECTORY, 0)
                .map_err(Errno::from)?;
            set_cwd(s, fd)
        }
        Resolved::Special(_) => Err(Errno::ENOTDIR),
    }
}

pub fn fchdir(s: &mut Sys) -> Result<Outcome, Errno> {
    let f = file(s, s.a[0])?;
    if !f.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    let fd = f.host_fd().ok_or(Errno::EBADF)?;
    let dup = host::openat(fd, c".", libc::O_PATH | libc::O_DIRECTORY, 0).map_err(Errno::from)?;
    set_cwd(s, dup)
}

pub fn fcntl(s: &mut Sys) -> Result<Outcome, Errno> {
    let fd = s.a[0] as i32;
    let fds = &s.task.tg.fds;
    let f = fds.get(fd)?;
    match s.a[1] as i32 {
        libc::F_DUPFD => ret(fds.install(f, false, s.a[2] as i32)?),
        libc::F_DUPFD_CLOEXEC => ret(fds.install(f, true, s.a[2] as i32)?),
        libc::F_GETFD => ret(if fds.cloexec(fd)? {
            libc::FD_CLOEXEC
        } else {
            0
        }),
        libc::F_SETFD => {
            fds.set_cloexec(fd, s.a[2] as i32 & libc::FD_CLOEXEC != 0)?;
            ret(0)
        }
        libc::F_GETFL => ret(*f.flags.lock()),
        libc::F_SETFL => {
            let settable = libc::O_NONBLOCK | libc::O_APPEND;
            let mut fl = f.flags.lock();
            *fl = (*fl & !settable) | (s.a[2] as i32 & settable);
            ret(0)
        }
        libc::F_GETLK | libc::F_SETLK | libc::F_SETLKW => ret(0),
        _ => Err(Errno::EINVAL),
    }
}

pub fn dup(s: &mut Sys) -> Result<Outcome, Errno> {
    let f = file(s, s.a[0])?;
    ret(s.task.tg.fds.install(f, false, 0)?)
}

fn do_dup3(s: &Sys, old: u64, new: u64, flags: i32) -> Result<Outcome, Errno> {
    let f = file(s, old)?;
    if new as i32 >= vfs::MAX_FDS || (new as i32) < 0 {
        return Err(Errno::EBADF);
    }
    s.task
        .tg
        .fds
        .install_at(new as i32, f, flags & libc::O_CLOEXEC != 0);
    ret(new as i32)
}

pub fn dup2(s: &mut Sys) -> Result<Outcome, Errno> {
    if s.a[0] == s.a[1] {
        file(s, s.a[0])?;
        return ret(s.a[1] as i32);
    }
    do_dup3(s, s.a[0], s.a[1], 0)
}

pub fn dup3(s: &mut Sys) -> Result<Outcome, Errno> {
    if s.a[0] == s.a[1] {
        return Err(Errno::EINVAL);
    }
    if s.a[2] as i32 & !libc::O_CLOEXEC != 0 {
        return Err(Errno::EINVAL);
    }
    do_dup3(s, s.a[0], s.a[1], s.a[2] as i32)
}

pub fn ioctl(s: &mut Sys) -> Result<Outcome, Errno> {
    let f = file(s, s.a[0])?;
    let vfs::FileKind::Stdio(fd) = f.kind else {
        return Err(Errno::ENOTTY);
    };
    match s.a[1] {
        libc::TCGETS => {
            let t = host::tcgets(fd).map_err(Errno::from)?;
            s.mm().write(s.a[2], &t)?;
            ret(0)
        }
        libc::TIOCGWINSZ => {
            let w = host::tiocgwinsz(fd).map_err(Errno::from)?;
            s.mm().write(s.a[2], &w)?;
            ret(0)
        }
        _ => Err(Errno::ENOTTY),
    }
}

pub fn sendfile(s: &mut Sys) -> Result<Outcome, Errno> {
    let out = file(s, s.a[0])?;
    let inp = file(s, s.a[1])?;
    let mut buf = vec![0u8; (s.a[3] as usize).min(CHUNK)];
    let n = if s.a[2] != 0 {
        let off = s.mm().read_u64(s.a[2])?;
        let n = inp.pread(&mut buf, off)?;
        s.mm().write_u64(s.a[2], off + n as u64)?;
        n
    } else {
        match inp.read(&mut buf)? {
            Io::Done(n) => n,
            io => return wait_read(s, &inp, io),
        }
    };
    // (A full output pipe ends the transfer short rather than blocking.)
    let mut done = 0;
    while done < n {
        let w = match out.write(&buf[done..n]) {
            Ok(Io::Done(w) | Io::Wait(w)) => w,
            Ok(Io::WouldBlock(_)) => 0,
            Err(_) if done > 0 => break,
            Err(e) => return Err(e),
        };
        if w == 0 {
            break;
        }
        done += w;
    }
    ret(done)
}
