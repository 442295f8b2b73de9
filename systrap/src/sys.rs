//! Thin wrappers over the host syscalls the platforms use.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// The last host error as an `io::Error`.
pub fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// Turns a raw syscall return into a result.
pub fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(last_error())
    } else {
        Ok(ret)
    }
}

/// `memfd_create(name, MFD_CLOEXEC)` sized to `len` bytes (sparse).
pub fn memfd(name: &std::ffi::CStr, len: u64) -> io::Result<OwnedFd> {
    // SAFETY: name is a valid NUL-terminated string.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(last_error());
    }
    // SAFETY: fd was just returned by memfd_create and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: plain syscall on a valid fd.
    if unsafe { libc::ftruncate(std::os::fd::AsRawFd::as_raw_fd(&fd), len as libc::off_t) } < 0 {
        return Err(last_error());
    }
    Ok(fd)
}

/// `FUTEX_WAIT` on a word that may be shared with another process.
/// Returns when woken, when the value differs, on a signal, or at the timeout.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let tsp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: word points to a live, aligned u32; tsp is null or a valid timespec.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT as i64,
            expected as i64,
            tsp,
            0i64,
            0i64,
        );
    }
}

/// `FUTEX_WAKE` of up to `n` waiters on a (possibly shared) word.
pub fn futex_wake(word: &AtomicU32, n: u32) {
    // SAFETY: word points to a live, aligned u32.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE as i64,
            n as i64,
            0i64,
            0i64,
            0i64,
        );
    }
}

/// The calling thread's host TID.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// The host CPUs this process may use, in order (the kernel pins worker `i`
/// to the `i % n`-th of them).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; pid 0 is the calling thread.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    let cpus: Vec<usize> = if r == 0 {
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: CPU_ISSET reads the set we own.
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect()
    } else {
        Vec::new()
    };
    if cpus.is_empty() {
        vec![0]
    } else {
        cpus
    }
}

/// Restricts host thread `tid` (0: the caller) to `cpus`; best effort.
pub fn pin(tid: i32, cpus: &[usize]) {
    // SAFETY: cpu_set_t is plain data.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
        // SAFETY: c < CPU_SETSIZE, so CPU_SET writes inside the set.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: plain syscall with a valid cpu_set_t.
    unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) };
}
