//! Files: the guest's file-descriptor table and the objects behind it.
//!
//! The sandbox's filesystem is the host's, read-only: paths resolve on the
//! host relative to the guest's working directory, every open is read-only
//! (writes give EROFS), and a few device and system files are served by the
//! sentry itself (`/dev/null`, `/dev/zero`, `/dev/urandom`, the CPU lists in
//! `/sys`). The guest's standard streams are the sentry's own.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use parking_lot::Mutex;
use sentry_systrap::host;

use crate::errno::Errno;
use crate::pipe::{EventFd, PipeEnd, Waiter, POLLIN, POLLOUT};

/// What an open file is.
pub enum FileKind {
    /// A host file or directory opened read-only by the sentry.
    Host { fd: OwnedFd, dir: bool },
    /// One of the sentry's standard streams (host fd 0, 1 or 2).
    Stdio(RawFd),
    /// `/dev/null`.
    Null,
    /// `/dev/zero`.
    Zero,
    /// `/dev/urandom` and `/dev/random`.
    Random,
    /// A file whose contents the sentry makes up.
    Synthetic(Vec<u8>),
    /// The read end of a pipe.
    PipeRead(PipeEnd),
    /// The write end of a pipe.
    PipeWrite(PipeEnd),
    /// An eventfd counter.
    EventFd(EventFd),
}

/// An open file description.
pub struct File {
    pub kind: FileKind,
    /// Open flags (`O_*`) as the guest sees them from `F_GETFL`.
    pub flags: Mutex<i32>,
    /// The file offset (host directories keep theirs in the host fd).
    pub offset: Mutex<u64>,
    /// The path it was opened by (for strace and /proc).
    pub path: String,
}

/// How far a read or write got.
pub enum Io {
    Done(usize),
    /// Wait until this host fd is readable (or writable) and retry.
    WouldBlock(RawFd),
    /// This many bytes were transferred; for the rest, register with
    /// [`File::poll`] and block until the file changes.
    Wait(usize),
}

impl File {
    pub fn new(kind: FileKind, flags: i32, path: impl Into<String>) -> Arc<File> {
        Arc::new(File {
            kind,
            flags: Mutex::new(flags),
            offset: Mutex::new(0),
            path: path.into(),
        })
    }

    pub fn nonblocking(&self) -> bool {
        *self.flags.lock() & libc::O_NONBLOCK != 0
    }

    /// Reads at the file offset.
    pub fn read(&self, buf: &mut [u8]) -> Result<Io, Errno> {
        match &self.kind {
            FileKind::Host { fd, dir } => {
                if *dir {
                    return Err(Errno::EISDIR);
                }
                let mut off = self.offset.lock();
                let n = host::pread(fd.as_raw_fd(), buf, *off).map_err(Errno::from)?;
                *off += n as u64;
                Ok(Io::Done(n))
            }
            FileKind::Stdio(fd) => {
                let ready = host::poll_now(*fd, libc::POLLIN).map_err(Errno::from)?;
                if ready == 0 {
                    if self.nonblocking() {
                        return Err(Errno::EAGAIN);
                    }
                    return Ok(Io::WouldBlock(*fd));
                }
                match host::read(*fd, buf) {
                    Ok(n) => Ok(Io::Done(n)),
                    Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(Io::WouldBlock(*fd)),
                    Err(e) => Err(e.into()),
                }
            }
            FileKind::Null => Ok(Io::Done(0)),
            FileKind::Zero => {
                buf.fill(0);
                Ok(Io::Done(buf.len()))
            }
            FileKind::Random => Ok(Io::Done(host::getrandom(buf).map_err(Errno::from)?)),
            FileKind::Synthetic(data) => {
                let mut off = self.offset.lock();
                let start = (*off as usize).min(data.len());
                let n = (data.len() - start).min(buf.len());
                buf[..n].copy_from_slice(&data[start..start + n]);
                *off += n as u64;
                Ok(Io::Done(n))
            }
            FileKind::PipeRead(p) => p.read(buf, self.nonblocking()),
            FileKind::EventFd(e) => e.read(buf, self.nonblocking()),
            FileKind::PipeWrite(_) => Err(Errno::EBADF),
        }
    }

    /// Reads at `off` without moving the offset.
    pub fn pread(&self, buf: &mut [u8], off: u64) -> Result<usize, Errno> {
        match &self.kind {
            FileKind::Host { fd, dir: false } => {
                host::pread(fd.as_raw_fd(), buf, off).map_err(Errno::from)
            }
            FileKind::Host { dir: true, .. } => Err(Errno::EISDIR),
            FileKind::Synthetic(data) => {
                let start = (off as usize).min(data.len());
                let n = (data.len() - start).min(buf.len());
                buf[..n].copy_from_slice(&data[start..start + n]);
                Ok(n)
            }
            FileKind::Null => Ok(0),
            FileKind::Zero => {
                buf.fill(0);
                Ok(buf.len())
            }
            _ => Err(Errno::ESPIPE),
        }
    }

    /// Writes at the file offset.
    pub fn write(&self, buf: &[u8]) -> Result<Io, Errno> {
        let acc = *self.flags.lock() & libc::O_ACCMODE;
        if acc == libc::O_RDONLY {
            return Err(Errno::EBADF);
        }
        match &self.kind {
            FileKind::Stdio(fd) => Ok(Io::Done(host::write(*fd, buf).map_err(Errno::from)?)),
            FileKind::Null | FileKind::Zero | FileKind::Random => Ok(Io::Done(buf.len())),
            FileKind::PipeWrite(p) => p.write(buf, self.nonblocking()),
            FileKind::EventFd(e) => e.write(buf, self.nonblocking()),
            _ => Err(Errno::EBADF),
        }
    }

    /// Readiness as `poll` revents (POLLIN, POLLOUT, POLLHUP, POLLERR),
    /// registering `waiter` to be woken when a sentry-served file changes.
    /// Host streams report their readiness now; waiting on them is the
    /// caller's (see [`File::host_poll_fd`]).
    pub fn poll(&self, waiter: Option<&Waiter>) -> Result<i16, Errno> {
        match &self.kind {
            FileKind::PipeRead(p) | FileKind::PipeWrite(p) => Ok(p.poll(waiter)),
            FileKind::EventFd(e) => Ok(e.poll(waiter)),
            FileKind::Stdio(fd) => {
                host::poll_now(*fd, POLLIN | POLLOUT | libc::POLLPRI).map_err(Errno::from)
            }
            // Regular files and devices are always ready.
            _ => Ok(POLLIN | POLLOUT | libc::POLLRDNORM | libc::POLLWRNORM),
        }
    }

    /// The host fd whose readiness `poll` must wait on, if any.
    pub fn host_poll_fd(&self) -> Option<RawFd> {
        match &self.kind {
            FileKind::Stdio(fd) => Some(*fd),
            _ => None,
        }
    }

    pub fn lseek(&self, off: i64, whence: i32) -> Result<u64, Errno> {
        match &self.kind {
            FileKind::Host { fd, dir: true } => {
                host::lseek(fd.as_raw_fd(), off, whence).map_err(Errno::from)
            }
            FileKind::Host { fd, dir: false } => {
                let mut cur = self.offset.lock();
                let base: i64 = match whence {
                    libc::SEEK_SET => 0,
                    libc::SEEK_CUR => *cur as i64,
                    libc::SEEK_END => {
                        let st = host::fstat(fd.as_raw_fd()).map_err(Errno::from)?;
                        i64::from_le_bytes(st[48..56].try_into().unwrap_or([0; 8]))
                    }
                    libc::SEEK_DATA | libc::SEEK_HOLE => {
                        let r = host::lseek(fd.as_raw_fd(), off, whence).map_err(Errno::from)?;
                        *cur = r;
                        return Ok(r);
                    }
                    _ => return Err(Errno::EINVAL),
                };
                let new = base
                    .checked_add(off)
                    .filter(|&v| v >= 0)
                    .ok_or(Errno::EINVAL)?;
                *cur = new as u64;
                Ok(new as u64)
            }
            FileKind::Synthetic(data) => {
                let mut cur = self.offset.lock();
                let base = match whence {
                    libc::SEEK_SET => 0,
                    libc::SEEK_CUR => *cur as i64,
                    libc::SEEK_END => data.len() as i64,
                    _ => return Err(Errno::EINVAL),
                };
                let new = base
                    .checked_add(off)
                    .filter(|&v| v >= 0)
                    .ok_or(Errno::EINVAL)?;
                *cur = new as u64;
                Ok(new as u64)
            }
            FileKind::Null | FileKind::Zero | FileKind::Random => Ok(0),
            FileKind::Stdio(fd) => host::lseek(*fd, off, whence).map_err(Errno::from),
            FileKind::PipeRead(_) | FileKind::PipeWrite(_) | FileKind::EventFd(_) => {
                Err(Errno::ESPIPE)
            }
        }
    }

    /// Raw `struct stat` bytes.
    pub fn stat(&self) -> Result<[u8; host::STAT_SIZE], Errno> {
        match &self.kind {
            FileKind::Host { fd, .. } => host::fstat(fd.as_raw_fd()).map_err(Errno::from),
            FileKind::Stdio(fd) => host::fstat(*fd).map_err(Errno::from),
            FileKind::Null | FileKind::Zero | FileKind::Random => {
                let path = match self.kind {
                    FileKind::Null => c"/dev/null",
                    FileKind::Zero => c"/dev/zero",
                    _ => c"/dev/urandom",
                };
                host::fstatat(libc::AT_FDCWD, path, 0).map_err(Errno::from)
            }
            FileKind::Synthetic(data) => Ok(synthetic_stat(data.len() as u64)),
            FileKind::PipeRead(_) | FileKind::PipeWrite(_) => {
                Ok(anon_stat(libc::S_IFIFO | 0o600, PIPE_INO))
            }
            FileKind::EventFd(_) => Ok(anon_stat(0o600, EVENTFD_INO)),
        }
    }

    /// Host fd for directory reads and path-relative lookups.
    pub fn host_fd(&self) -> Option<RawFd> {
        match &self.kind {
            FileKind::Host { fd, .. } => Some(fd.as_raw_fd()),
            FileKind::Stdio(fd) => Some(*fd),
            _ => None,
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.kind, FileKind::Host { dir: true, .. })
    }
}

/// A `struct stat` for a made-up regular file of `size` bytes.
pub fn synthetic_stat(size: u64) -> [u8; host::STAT_SIZE] {
    let mut b = [0u8; host::STAT_SIZE];
    b[16..24].copy_from_slice(&1u64.to_le_bytes()); // st_nlink
    b[24..28].copy_from_slice(&(libc::S_IFREG | 0o444).to_le_bytes()); // st_mode
    b[48..56].copy_from_slice(&size.to_le_bytes()); // st_size
    b[56..64].copy_from_slice(&4096u64.to_le_bytes()); // st_blksize
    b
}

const PIPE_INO: u64 = 0x7069_7065;
const EVENTFD_INO: u64 = 0x6576_6664;

/// A `struct stat` for a pipe or anonymous inode.
fn anon_stat(mode: u32, ino: u64) -> [u8; host::STAT_SIZE] {
    let mut b = [0u8; host::STAT_SIZE];
    b[8..16].copy_from_slice(&ino.to_le_bytes()); // st_ino
    b[16..24].copy_from_slice(&1u64.to_le_bytes()); // st_nlink
    b[24..28].copy_from_slice(&mode.to_le_bytes()); // st_mode
    b[56..64].copy_from_slice(&4096u64.to_le_bytes()); // st_blksize
    b
}

struct FdEntry {
    file: Arc<File>,
    cloexec: bool,
}

/// The guest's file-descriptor table.
#[derive(Default)]
pub struct FdTable {
    fds: Mutex<BTreeMap<i32, FdEntry>>,
}

/// Most descriptors a guest may hold (RLIMIT_NOFILE).
pub const MAX_FDS: i32 = 1024;

impl FdTable {
    /// A table with the sentry's standard streams as 0, 1 and 2.
    pub fn with_stdio() -> FdTable {
        let t = FdTable::default();
        for fd in 0..3 {
            let flags = if fd == 0 {
                libc::O_RDONLY
            } else {
                libc::O_WRONLY
            };
            let flags = host_flags(fd).unwrap_or(flags);
            t.install_at(
                fd,
                File::new(FileKind::Stdio(fd), flags, format!("stdio:{fd}")),
                false,
            );
        }
        t
    }

    pub fn get(&self, fd: i32) -> Result<Arc<File>, Errno> {
        self.fds
            .lock()
            .get(&fd)
            .map(|e| e.file.clone())
            .ok_or(Errno::EBADF)
    }

    /// Installs at the lowest free descriptor >= `min`.
    pub fn install(&self, file: Arc<File>, cloexec: bool, min: i32) -> Result<i32, Errno> {
        let mut fds = self.fds.lock();
        let mut fd = min.max(0);
        for (&k, _) in fds.range(fd..) {
            if k != fd {
                break;
            }
            fd += 1;
        }
        if fd >= MAX_FDS {
            return Err(Errno::EMFILE);
        }
        fds.insert(fd, FdEntry { file, cloexec });
        Ok(fd)
    }

    /// Installs at exactly `fd`, replacing what was there.
    pub fn install_at(&self, fd: i32, file: Arc<File>, cloexec: bool) -> Option<Arc<File>> {
        self.fds
            .lock()
            .insert(fd, FdEntry { file, cloexec })
            .map(|e| e.file)
    }

    pub fn close(&self, fd: i32) -> Result<Arc<File>, Errno> {
        self.fds
            .lock()
            .remove(&fd)
            .map(|e| e.file)
            .ok_or(Errno::EBADF)
    }

    pub fn cloexec(&self, fd: i32) -> Result<bool, Errno> {
        self.fds
            .lock()
            .get(&fd)
            .map(|e| e.cloexec)
            .ok_or(Errno::EBADF)
    }

    pub fn set_cloexec(&self, fd: i32, on: bool) -> Result<(), Errno> {
        self.fds
            .lock()
            .get_mut(&fd)
            .map(|e| e.cloexec = on)
            .ok_or(Errno::EBADF)
    }

    /// Closes the descriptors marked close-on-exec.
    pub fn close_on_exec(&self) {
        self.fds.lock().retain(|_, e| !e.cloexec);
    }

    /// A copy for a new process (`fork`).
    pub fn fork(&self) -> FdTable {
        let fds = self
            .fds
            .lock()
            .iter()
            .map(|(&k, e)| {
                (
                    k,
                    FdEntry {
                        file: e.file.clone(),
                        cloexec: e.cloexec,
                    },
                )
            })
            .collect();
        FdTable {
            fds: Mutex::new(fds),
        }
    }
}

fn host_flags(fd: RawFd) -> Option<i32> {
    let _ = fd;
    None
}

/// Where a guest path resolves.
pub enum Resolved {
    /// A host path, relative to `dirfd` (or absolute).
    Host { dirfd: RawFd, path: CString },
    /// A file the sentry serves itself.
    Special(FileKind),
}

/// The number of CPUs the guest sees in /sys (set at kernel init).
pub fn cpu_list(n: usize) -> Vec<u8> {
    if n <= 1 {
        b"0\n".to_vec()
    } else {
        format!("0-{}\n", n - 1).into_bytes()
    }
}

/// Resolves a guest path for `openat`-like calls. `cwd` is the host fd of
/// the working directory; `dir` the directory file for a dirfd, if any.
pub fn resolve(
    path: &[u8],
    cwd: RawFd,
    dir: Option<RawFd>,
    cpus: usize,
) -> Result<Resolved, Errno> {
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    if path[0] == b'/' {
        let norm = normalize(path);
        match norm.as_slice() {
            b"/dev/null" => return Ok(Resolved::Special(FileKind::Null)),
            b"/dev/zero" => return Ok(Resolved::Special(FileKind::Zero)),
            b"/dev/urandom" | b"/dev/random" => return Ok(Resolved::Special(FileKind::Random)),
            b"/sys/devices/system/cpu/online" | b"/sys/devices/system/cpu/possible" => {
                return Ok(Resolved::Special(FileKind::Synthetic(cpu_list(cpus))))
            }
            _ => {}
        }
        // The host's /proc describes the sentry, not the guest: hide it.
        if norm.starts_with(b"/proc/") {
            return Err(Errno::ENOENT);
        }
        let c = CString::new(norm).map_err(|_| Errno::EINVAL)?;
        return Ok(Resolved::Host {
            dirfd: libc::AT_FDCWD,
            path: c,
        });
    }
    let c = CString::new(path.to_vec()).map_err(|_| Errno::EINVAL)?;
    Ok(Resolved::Host {
        dirfd: dir.unwrap_or(cwd),
        path: c,
    })
}

/// Collapses `//`, `/./` and trailing `/.` (not `..`, which the host resolves).
fn normalize(path: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(path.len());
    for comp in path.split(|&b| b == b'/') {
        if comp.is_empty() || comp == b"." {
            continue;
        }
        out.push(b'/');
        out.extend_from_slice(comp);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// Opens a guest path read-only. Any request to write or create gives EROFS.
pub fn open(res: Resolved, flags: i32, path_for_name: &[u8]) -> Result<Arc<File>, Errno> {
    let name = String::from_utf8_lossy(path_for_name).into_owned();
    let acc = flags & libc::O_ACCMODE;
    match res {
        Resolved::Special(kind) => {
            if matches!(kind, FileKind::Synthetic(_)) && acc != libc::O_RDONLY {
                return Err(Errno::EACCES);
            }
            Ok(File::new(kind, flags & !libc::O_CLOEXEC, name))
        }
        Resolved::Host { dirfd, path } => {
            let wants_write = acc != libc::O_RDONLY || flags & (libc::O_CREAT | libc::O_TRUNC) != 0;
            let host_flags = libc::O_RDONLY
                | (flags & (libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_PATH | libc::O_NOCTTY))
                | libc::O_NONBLOCK;
            match host::openat(dirfd, &path, host_flags, 0) {
                Ok(fd) => {
                    if wants_write {
                        return Err(Errno::EROFS);
                    }
                    let st = host::fstat(fd.as_raw_fd()).map_err(Errno::from)?;
                    let mode = u32::from_le_bytes(st[24..28].try_into().unwrap_or([0; 4]));
                    let dir = mode & libc::S_IFMT == libc::S_IFDIR;
                    Ok(File::new(
                        FileKind::Host { fd, dir },
                        flags & !libc::O_CLOEXEC,
                        name,
                    ))
                }
                Err(e) => {
                    let e = Errno::from(e);
                    if e == Errno::ENOENT && flags & libc::O_CREAT != 0 {
                        return Err(Errno::EROFS);
                    }
                    Err(e)
                }
            }
        }
    }
}
