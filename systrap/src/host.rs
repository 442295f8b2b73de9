//! Safe wrappers over the host syscalls the kernel needs to serve guest
//! file, time and system-information calls.
//!
//! The kernel crate is safe Rust; every host call that takes raw pointers
//! lives here. Structures whose layout the guest shares with the host (both
//! are x86-64 Linux: `struct stat`, `statx`, `termios`, `winsize`, `utsname`)
//! come back as raw bytes, ready to be copied into guest memory.

use std::ffi::CStr;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

fn cvt(r: libc::c_long) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// `openat(dirfd, path, flags | O_CLOEXEC, mode)`.
pub fn openat(dirfd: RawFd, path: &CStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: path is NUL-terminated; the returned fd is fresh and ours.
    let fd = unsafe { libc::openat(dirfd, path.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened by us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `read(fd, buf)`.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of its length.
    cvt(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } as libc::c_long)
}

/// `pread64(fd, buf, off)`.
pub fn pread(fd: RawFd, buf: &mut [u8], off: u64) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of its length.
    cvt(unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), off as i64) } as libc::c_long)
}

/// `write(fd, buf)`.
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for reads of its length.
    cvt(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) } as libc::c_long)
}

/// `lseek(fd, off, whence)`.
pub fn lseek(fd: RawFd, off: i64, whence: i32) -> io::Result<u64> {
    // SAFETY: plain syscall.
    let r = unsafe { libc::lseek(fd, off, whence) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as u64)
    }
}

/// `getdents64(fd, buf)`: raw `linux_dirent64` records.
pub fn getdents64(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is valid for writes of its length.
    cvt(unsafe { libc::syscall(libc::SYS_getdents64, fd as i64, buf.as_mut_ptr(), buf.len()) })
}

/// Size of x86-64 `struct stat`.
pub const STAT_SIZE: usize = 144;

/// `fstatat(dirfd, path, flags)` as raw `struct stat` bytes.
pub fn fstatat(dirfd: RawFd, path: &CStr, flags: i32) -> io::Result<[u8; STAT_SIZE]> {
    let mut buf = [0u8; STAT_SIZE];
    // SAFETY: path NUL-terminated; buf has room for a struct stat (144 bytes on x86-64).
    let r = unsafe {
        libc::syscall(
            libc::SYS_newfstatat,
            dirfd as i64,
            path.as_ptr(),
            buf.as_mut_ptr(),
            flags as i64,
        )
    };
    cvt(r).map(|_| buf)
}

/// `fstat(fd)` as raw `struct stat` bytes.
pub fn fstat(fd: RawFd) -> io::Result<[u8; STAT_SIZE]> {
    fstatat(fd, c"", libc::AT_EMPTY_PATH)
}

/// Size of `struct statx`.
pub const STATX_SIZE: usize = 256;

/// `statx(dirfd, path, flags, mask)` as raw bytes.
pub fn statx(dirfd: RawFd, path: &CStr, flags: i32, mask: u32) -> io::Result<[u8; STATX_SIZE]> {
    let mut buf = [0u8; STATX_SIZE];
    // SAFETY: path NUL-terminated; buf has room for a struct statx.
    let r = unsafe {
        libc::syscall(
            libc::SYS_statx,
            dirfd as i64,
            path.as_ptr(),
            flags as i64,
            mask as i64,
            buf.as_mut_ptr(),
        )
    };
    cvt(r).map(|_| buf)
}

/// `readlinkat(dirfd, path)`.
pub fn readlinkat(dirfd: RawFd, path: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: path NUL-terminated; buf valid for writes of its length.
    let n = cvt(unsafe {
        libc::readlinkat(dirfd, path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) as libc::c_long
    })?;
    buf.truncate(n);
    Ok(buf)
}

/// `faccessat2(dirfd, path, mode, flags)`.
pub fn faccessat(dirfd: RawFd, path: &CStr, mode: i32, flags: i32) -> io::Result<()> {
    // SAFETY: path NUL-terminated.
    let r = unsafe {
        libc::syscall(
            libc::SYS_faccessat2,
            dirfd as i64,
            path.as_ptr(),
            mode as i64,
            flags as i64,
        )
    };
    cvt(r).map(|_| ())
}

/// `ioctl(fd, TCGETS)`: raw kernel `struct termios` (36 bytes).
pub fn tcgets(fd: RawFd) -> io::Result<[u8; 36]> {
    let mut buf = [0u8; 64];
    // SAFETY: TCGETS writes a kernel termios (36 bytes) into a 64-byte buffer.
    cvt(unsafe { libc::ioctl(fd, libc::TCGETS, buf.as_mut_ptr()) } as libc::c_long)?;
    let mut out = [0u8; 36];
    out.copy_from_slice(&buf[..36]);
    Ok(out)
}

/// `ioctl(fd, TIOCGWINSZ)`: raw `struct winsize` (8 bytes).
pub fn tiocgwinsz(fd: RawFd) -> io::Result<[u8; 8]> {
    let mut buf = [0u8; 8];
    // SAFETY: TIOCGWINSZ writes 8 bytes.
    cvt(unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, buf.as_mut_ptr()) } as libc::c_long)?;
    Ok(buf)
}

/// Whether `fd` polls ready for `events` right now.
pub fn poll_now(fd: RawFd, events: i16) -> io::Result<i16> {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    cvt(unsafe { libc::poll(&mut p, 1, 0) } as libc::c_long)?;
    Ok(p.revents)
}

/// Fills `buf` from the host's random source.
pub fn getrandom(buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf valid for writes of its length.
    cvt(unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) } as libc::c_long)
}

/// `clock_gettime(clock)` as (seconds, nanoseconds).
pub fn clock_gettime(clock: i32) -> io::Result<(i64, i64)> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec.
    cvt(unsafe { libc::clock_gettime(clock, &mut ts) } as libc::c_long)?;
    Ok((ts.tv_sec, ts.tv_nsec))
}

/// `clock_getres(clock)` as (seconds, nanoseconds).
pub fn clock_getres(clock: i32) -> io::Result<(i64, i64)> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec.
    cvt(unsafe { libc::clock_getres(clock, &mut ts) } as libc::c_long)?;
    Ok((ts.tv_sec, ts.tv_nsec))
}

/// The host's `uname` fields: sysname, nodename, release, version, machine.
pub fn uname() -> [Vec<u8>; 5] {
    // SAFETY: utsname is plain data; zeroed is valid, and uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is a valid utsname.
    unsafe { libc::uname(&mut u) };
    let f = |a: &[libc::c_char]| {
        a.iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect()
    };
    [
        f(&u.sysname),
        f(&u.nodename),
        f(&u.release),
        f(&u.version),
        f(&u.machine),
    ]
}

/// CPU ticks (utime + stime) a host process has used, from `/proc/PID/stat`.
pub fn process_ticks(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// An epoll set that reports readiness of host fds by a 64-bit token.
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by epoll_create1 and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll { fd })
    }

    /// Arms a one-shot watch for `events` (EPOLLIN/EPOLLOUT bits) on `fd`.
    pub fn arm(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: events | libc::EPOLLONESHOT as u32,
            u64: token,
        };
        let epfd = std::os::fd::AsRawFd::as_raw_fd(&self.fd);
        // SAFETY: valid fds and event struct.
        let r = unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_MOD, fd, &mut ev) };
        if r == 0 {
            return Ok(());
        }
        // SAFETY: as above.
        let r = unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) };
        cvt(r as libc::c_long).map(|_| ())
    }

    /// Waits up to `timeout_ms` (-1: forever) and returns ready tokens.
    pub fn wait(&self, timeout_ms: i32) -> io::Result<Vec<u64>> {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 32];
        let epfd = std::os::fd::AsRawFd::as_raw_fd(&self.fd);
        // SAFETY: evs is a writable array of 32 events.
        let n = unsafe { libc::epoll_wait(epfd, evs.as_mut_ptr(), 32, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                return Ok(Vec::new());
            }
            return Err(e);
        }
        Ok(evs[..n as usize].iter().map(|e| e.u64).collect())
    }
}

/// The host's real user and group IDs.
pub fn ids() -> (u32, u32) {
    // SAFETY: getuid/getgid cannot fail and take no pointers.
    unsafe { (libc::getuid(), libc::getgid()) }
}

/// CPUID leaf 1 EDX: the value Linux reports as AT_HWCAP on x86-64.
pub fn hwcap() -> u64 {
    // SAFETY: cpuid leaf 1 exists on every x86-64 CPU.
    let r = std::arch::x86_64::__cpuid(1);
    r.edx as u64
}

/// The host CPU the calling thread runs on.
pub fn getcpu() -> u32 {
    // SAFETY: sched_getcpu takes no arguments.
    let c = unsafe { libc::sched_getcpu() };
    c.max(0) as u32
}

/// Blocks `signals` in the calling thread (and threads it creates later),
/// after restoring their default disposition: a signal ignored at
/// generation (a shell starts background jobs with SIGINT ignored) would
/// never reach `wait_signal`.
pub fn block_signals(signals: &[i32]) {
    for &s in signals {
        // SAFETY: resetting a disposition to SIG_DFL with a plain integer.
        unsafe { libc::signal(s, libc::SIG_DFL) };
    }
    // SAFETY: set is a valid sigset_t built with sigemptyset/sigaddset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits for one of `signals` (which must be blocked) and returns it.
pub fn wait_signal(signals: &[i32]) -> i32 {
    // SAFETY: set is a valid sigset_t; sig is a valid out pointer.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        let mut sig = 0;
        libc::sigwait(&set, &mut sig);
        sig
    }
}
