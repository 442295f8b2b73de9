//! Pipes, eventfds and readiness: `pipe`, `pipe2`, `eventfd2`, `poll`,
//! `ppoll`, `select` and `pselect6`.
//!
//! A poll with nothing ready registers the task with every sentry-served
//! file it watches (and arms the poller for host streams), then blocks
//! until one of them changes or the timeout passes; the deadline is kept in
//! [`Restart::Poll`] so re-runs keep the original one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{ret, Outcome, Sys};
use crate::errno::Errno;
use crate::pipe::{self, Waiter, POLLERR, POLLHUP, POLLIN, POLLOUT};
use crate::task::Restart;
use crate::vfs::{File, FileKind, MAX_FDS};

const EFD_SEMAPHORE: u64 = 1;

fn do_pipe(s: &Sys, addr: u64, flags: u64) -> Result<Outcome, Errno> {
    let flags = flags as i32;
    if flags & !(libc::O_CLOEXEC | libc::O_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    let cloexec = flags & libc::O_CLOEXEC != 0;
    let nb = flags & libc::O_NONBLOCK;
    let (r, w) = pipe::new_pipe();
    let fds = &s.task.tg.fds;
    let rf = fds.install(
        File::new(FileKind::PipeRead(r), libc::O_RDONLY | nb, "pipe:"),
        cloexec,
        0,
    )?;
    let wf = match fds.install(
        File::new(FileKind::PipeWrite(w), libc::O_WRONLY | nb, "pipe:"),
        cloexec,
        0,
    ) {
        Ok(fd) => fd,
        Err(e) => {
            let _ = fds.close(rf);
            return Err(e);
        }
    };
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&rf.to_le_bytes());
    b[4..].copy_from_slice(&wf.to_le_bytes());
    if let Err(e) = s.mm().write(addr, &b) {
        let _ = fds.close(rf);
        let _ = fds.close(wf);
        return Err(e);
    }
    ret(0)
}

pub fn pipe(s: &mut Sys) -> Result<Outcome, Errno> {
    do_pipe(s, s.a[0], 0)
}

pub fn pipe2(s: &mut Sys) -> Result<Outcome, Errno> {
    do_pipe(s, s.a[0], s.a[1])
}

pub fn eventfd(s: &mut Sys) -> Result<Outcome, Errno> {
    s.a[1] = 0;
    eventfd2(s)
}

pub fn eventfd2(s: &mut Sys) -> Result<Outcome, Errno> {
    let flags = s.a[1];
    let known = EFD_SEMAPHORE | libc::O_CLOEXEC as u64 | libc::O_NONBLOCK as u64;
    if flags & !known != 0 {
        return Err(Errno::EINVAL);
    }
    let e = pipe::EventFd::new(s.a[0] & 0xffff_ffff, flags & EFD_SEMAPHORE != 0);
    let fl = libc::O_RDWR | (flags as i32 & libc::O_NONBLOCK);
    let f = File::new(FileKind::EventFd(e), fl, "anon_inode:[eventfd]");
    ret(s
        .task
        .tg
        .fds
        .install(f, flags & libc::O_CLOEXEC as u64 != 0, 0)?)
}

/// One watched descriptor.
struct PollFd {
    fd: i32,
    events: i16,
    revents: i16,
}

/// Fills `revents`; returns how many descriptors are ready. With `waiter`,
/// registers the task with every watched file so that a change wakes it.
fn scan(s: &Sys, pfds: &mut [PollFd], waiter: Option<&Waiter>) -> Result<usize, Errno> {
    let mut ready = 0;
    for p in pfds.iter_mut() {
        p.revents = 0;
        if p.fd < 0 {
            continue;
        }
        let f: Arc<File> = match s.task.tg.fds.get(p.fd) {
            Ok(f) => f,
            Err(_) => {
                p.revents = libc::POLLNVAL;
                ready += 1;
                continue;
            }
        };
        let wanted = p.events | POLLERR | POLLHUP;
        p.revents = f.poll(waiter)? & wanted;
        if p.revents != 0 {
            ready += 1;
        } else if waiter.is_some() {
            if let Some(hfd) = f.host_poll_fd() {
                s.k.wait_fd_events(s.task, hfd, p.events)?;
            }
        }
    }
    Ok(ready)
}

/// Scans `pfds` and returns Some(ready count) when the call is finished,
/// or None after arranging to block until a change or the deadline.
/// `timeout`: None waits forever, Some(0) never blocks.
fn wait_ready(
    s: &mut Sys,
    pfds: &mut [PollFd],
    timeout: Option<Duration>,
) -> Result<Result<usize, Outcome>, Errno> {
    let deadline = match s.t.restart.take() {
        Some(Restart::Poll { deadline }) => deadline,
        _ => timeout.map(|d| Instant::now() + d),
    };
    let blocking = timeout != Some(Duration::ZERO);
    let waiter = Waiter::new(s.k, s.task);
    let n = scan(s, pfds, blocking.then_some(&waiter))?;
    if n > 0 || !blocking || deadline.is_some_and(|d| Instant::now() >= d) {
        return Ok(Ok(n));
    }
    s.t.restart = Some(Restart::Poll { deadline });
    Ok(Err(Outcome::Block { deadline }))
}

fn do_poll(s: &mut Sys, addr: u64, nfds: u64, timeout: Option<Duration>) -> Result<Outcome, Errno> {
    if nfds > MAX_FDS as u64 {
        return Err(Errno::EINVAL);
    }
    let mut raw = vec![0u8; nfds as usize * 8];
    s.mm().read(addr, &mut raw)?;
    let mut pfds: Vec<PollFd> = raw
        .chunks(8)
        .map(|c| PollFd {
            fd: i32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            events: i16::from_le_bytes([c[4], c[5]]),
            revents: 0,
        })
        .collect();
    match wait_ready(s, &mut pfds, timeout)? {
        Ok(n) => {
            for (c, p) in raw.chunks_mut(8).zip(&pfds) {
                c[6..8].copy_from_slice(&p.revents.to_le_bytes());
            }
            s.mm().write(addr, &raw)?;
            ret(n)
        }
        Err(block) => Ok(block),
    }
}

pub fn poll(s: &mut Sys) -> Result<Outcome, Errno> {
    let ms = s.a[2] as i32;
    let timeout = (ms >= 0).then(|| Duration::from_millis(ms as u64));
    do_poll(s, s.a[0], s.a[1], timeout)
}

/// `ppoll`: the signal mask argument is ignored until signals are delivered.
pub fn ppoll(s: &mut Sys) -> Result<Outcome, Errno> {
    let timeout = if s.a[2] == 0 {
        None
    } else {
        Some(super::time::read_timespec(s, s.a[2])?)
    };
    do_poll(s, s.a[0], s.a[1], timeout)
}

fn do_select(
    s: &mut Sys,
    nfds: u64,
    sets: [u64; 3],
    timeout: Option<Duration>,
) -> Result<Outcome, Errno> {
    let nfds = nfds as i32;
    if !(0..=MAX_FDS).contains(&nfds) {
        return Err(Errno::EINVAL);
    }
    let words = (nfds as usize).div_ceil(64);
    let mut bits = [vec![0u64; words], vec![0u64; words], vec![0u64; words]];
    for (i, &addr) in sets.iter().enumerate() {
        if addr != 0 && words > 0 {
            let mut raw = vec![0u8; words * 8];
            s.mm().read(addr, &mut raw)?;
            for (w, c) in bits[i].iter_mut().zip(raw.chunks(8)) {
                *w = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
            }
        }
    }
    let is_set = |set: &[u64], fd: usize| set[fd / 64] & (1 << (fd % 64)) != 0;
    let mut pfds = Vec::new();
    for fd in 0..nfds as usize {
        let mut ev = 0;
        if is_set(&bits[0], fd) {
            ev |= POLLIN;
        }
        if is_set(&bits[1], fd) {
            ev |= POLLOUT;
        }
        if is_set(&bits[2], fd) {
            ev |= libc::POLLPRI;
        }
        if ev != 0 {
            pfds.push(PollFd {
                fd: fd as i32,
                events: ev,
                revents: 0,
            });
        }
    }
    if pfds.iter().any(|p| s.task.tg.fds.get(p.fd).is_err()) {
        return Err(Errno::EBADF);
    }
    match wait_ready(s, &mut pfds, timeout)? {
        Ok(_) => {
            let mut out = [vec![0u64; words], vec![0u64; words], vec![0u64; words]];
            let mut count = 0;
            for p in &pfds {
                let fd = p.fd as usize;
                let conds = [
                    p.events & POLLIN != 0 && p.revents & (POLLIN | POLLHUP | POLLERR) != 0,
                    p.events & POLLOUT != 0 && p.revents & (POLLOUT | POLLERR) != 0,
                    p.events & libc::POLLPRI != 0 && p.revents & libc::POLLPRI != 0,
                ];
                for (i, c) in conds.into_iter().enumerate() {
                    if c {
                        out[i][fd / 64] |= 1 << (fd % 64);
                        count += 1;
                    }
                }
            }
            for (i, &addr) in sets.iter().enumerate() {
                if addr != 0 && words > 0 {
                    let raw: Vec<u8> = out[i].iter().flat_map(|w| w.to_le_bytes()).collect();
                    s.mm().write(addr, &raw)?;
                }
            }
            ret(count)
        }
        Err(block) => Ok(block),
    }
}

pub fn select(s: &mut Sys) -> Result<Outcome, Errno> {
    let timeout = if s.a[4] == 0 {
        None
    } else {
        Some(super::time::read_timeval(s, s.a[4])?)
    };
    do_select(s, s.a[0], [s.a[1], s.a[2], s.a[3]], timeout)
}

/// `pselect6`: the signal mask argument is ignored until signals are delivered.
pub fn pselect6(s: &mut Sys) -> Result<Outcome, Errno> {
    let timeout = if s.a[4] == 0 {
        None
    } else {
        Some(super::time::read_timespec(s, s.a[4])?)
    };
    do_select(s, s.a[0], [s.a[1], s.a[2], s.a[3]], timeout)
}
