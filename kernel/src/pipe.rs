//! Pipes and eventfds served inside the sentry.
//!
//! Both keep their state behind one lock together with a list of waiting
//! tasks. An operation that cannot proceed returns [`Io::Wait`]; the
//! syscall then registers its task with [`File::poll`](crate::vfs::File)
//! (which re-checks readiness under the same lock, so no wake-up is lost)
//! and blocks. Any change of state (data, space, a closed end) wakes every
//! waiter; their syscalls run again and re-check, so spurious wake-ups are
//! harmless.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::errno::Errno;
use crate::kernel::Kernel;
use crate::task::Task;
use crate::vfs::Io;

/// Capacity of a pipe's buffer.
pub const PIPE_CAPACITY: usize = 64 * 1024;
/// Writes up to this size are atomic.
pub const PIPE_BUF: usize = 4096;
/// Largest value an eventfd counter holds.
const EFD_MAX: u64 = u64::MAX - 1;

pub const POLLIN: i16 = libc::POLLIN;
pub const POLLOUT: i16 = libc::POLLOUT;
pub const POLLERR: i16 = libc::POLLERR;
pub const POLLHUP: i16 = libc::POLLHUP;
const POLLRDNORM: i16 = libc::POLLRDNORM;
const POLLWRNORM: i16 = libc::POLLWRNORM;

/// A task waiting for a file to change.
#[derive(Clone)]
pub struct Waiter {
    pub k: Weak<Kernel>,
    pub task: Weak<Task>,
}

impl Waiter {
    pub fn new(k: &Kernel, task: &Arc<Task>) -> Waiter {
        Waiter {
            k: k.weak(),
            task: Arc::downgrade(task),
        }
    }
}

/// Tasks to wake when a file's state changes.
#[derive(Default)]
pub struct WaitQueue(Vec<Waiter>);

impl WaitQueue {
    /// Adds `w` once (a task re-registering on every re-run stays one entry).
    pub fn add(&mut self, w: &Waiter) {
        self.0.retain(|e| e.task.strong_count() > 0);
        if !self.0.iter().any(|e| Weak::ptr_eq(&e.task, &w.task)) {
            self.0.push(w.clone());
        }
    }

    /// Takes every waiter; call [`wake`] on the result after unlocking.
    pub fn take(&mut self) -> Vec<Waiter> {
        std::mem::take(&mut self.0)
    }
}

/// Wakes the tasks taken from a queue.
pub fn wake(ws: Vec<Waiter>) {
    for w in ws {
        if let (Some(k), Some(t)) = (w.k.upgrade(), w.task.upgrade()) {
            k.wake(&t);
        }
    }
}

struct PipeState {
    buf: VecDeque<u8>,
    readers: usize,
    writers: usize,
    waiters: WaitQueue,
}

/// The buffer both ends of a pipe share.
pub struct Pipe {
    state: Mutex<PipeState>,
}

/// One end of a pipe; dropping it (the last close of its file) hangs up.
pub struct PipeEnd {
    pipe: Arc<Pipe>,
    write: bool,
}

/// A new pipe: (read end, write end).
pub fn new_pipe() -> (PipeEnd, PipeEnd) {
    let pipe = Arc::new(Pipe {
        state: Mutex::new(PipeState {
            buf: VecDeque::new(),
            readers: 1,
            writers: 1,
            waiters: WaitQueue::default(),
        }),
    });
    (
        PipeEnd {
            pipe: pipe.clone(),
            write: false,
        },
        PipeEnd { pipe, write: true },
    )
}

impl PipeEnd {
    /// Reads what is buffered; 0 at end of file (no writers left).
    pub fn read(&self, buf: &mut [u8], nonblock: bool) -> Result<Io, Errno> {
        if buf.is_empty() {
            return Ok(Io::Done(0));
        }
        let mut st = self.pipe.state.lock();
        if st.buf.is_empty() {
            if st.writers == 0 {
                return Ok(Io::Done(0));
            }
            return if nonblock {
                Err(Errno::EAGAIN)
            } else {
                Ok(Io::Wait(0))
            };
        }
        let n = buf.len().min(st.buf.len());
        for (d, s) in buf.iter_mut().zip(st.buf.drain(..n)) {
            *d = s;
        }
        let ws = st.waiters.take();
        drop(st);
        wake(ws);
        Ok(Io::Done(n))
    }

    /// Writes as much as fits; writes up to PIPE_BUF go in whole or not at
    /// all. `Io::Wait(n)`: n bytes went in, the rest must wait for space.
    pub fn write(&self, buf: &[u8], nonblock: bool) -> Result<Io, Errno> {
        if buf.is_empty() {
            return Ok(Io::Done(0));
        }
        let mut st = self.pipe.state.lock();
        if st.readers == 0 {
            return Err(Errno::EPIPE);
        }
        let space = PIPE_CAPACITY - st.buf.len();
        let n = if buf.len() <= PIPE_BUF && space < buf.len() {
            0
        } else {
            space.min(buf.len())
        };
        st.buf.extend(&buf[..n]);
        let ws = if n > 0 { st.waiters.take() } else { Vec::new() };
        drop(st);
        wake(ws);
        if n == buf.len() {
            Ok(Io::Done(n))
        } else if nonblock {
            if n == 0 {
                Err(Errno::EAGAIN)
            } else {
                Ok(Io::Done(n))
            }
        } else {
            Ok(Io::Wait(n))
        }
    }

    /// Readiness for `poll`; registers `waiter` under the same lock.
    pub fn poll(&self, waiter: Option<&Waiter>) -> i16 {
        let mut st = self.pipe.state.lock();
        let mut r = 0;
        if self.write {
            if st.readers == 0 {
                r |= POLLERR;
            } else if PIPE_CAPACITY - st.buf.len() >= PIPE_BUF {
                r |= POLLOUT | POLLWRNORM;
            }
        } else {
            if !st.buf.is_empty() {
                r |= POLLIN | POLLRDNORM;
            }
            if st.writers == 0 {
                r |= POLLHUP;
            }
        }
        if let Some(w) = waiter {
            st.waiters.add(w);
        }
        r
    }

    /// Bytes ready to read (FIONREAD).
    pub fn available(&self) -> usize {
        self.pipe.state.lock().buf.len()
    }
}

impl Drop for PipeEnd {
    fn drop(&mut self) {
        let mut st = self.pipe.state.lock();
        if self.write {
            st.writers -= 1;
        } else {
            st.readers -= 1;
        }
        let ws = st.waiters.take();
        drop(st);
        wake(ws);
    }
}

struct EventState {
    count: u64,
    waiters: WaitQueue,
}

/// An eventfd counter.
pub struct EventFd {
    semaphore: bool,
    state: Mutex<EventState>,
}

impl EventFd {
    pub fn new(init: u64, semaphore: bool) -> EventFd {
        EventFd {
            semaphore,
            state: Mutex::new(EventState {
                count: init,
                waiters: WaitQueue::default(),
            }),
        }
    }

    /// Reads the counter (or 1 in semaphore mode) into 8 bytes.
    pub fn read(&self, buf: &mut [u8], nonblock: bool) -> Result<Io, Errno> {
        if buf.len() < 8 {
            return Err(Errno::EINVAL);
        }
        let mut st = self.state.lock();
        if st.count == 0 {
            return if nonblock {
                Err(Errno::EAGAIN)
            } else {
                Ok(Io::Wait(0))
            };
        }
        let v = if self.semaphore { 1 } else { st.count };
        st.count -= v;
        buf[..8].copy_from_slice(&v.to_le_bytes());
        let ws = st.waiters.take();
        drop(st);
        wake(ws);
        Ok(Io::Done(8))
    }

    /// Adds an 8-byte value to the counter, waiting while it would overflow.
    pub fn write(&self, buf: &[u8], nonblock: bool) -> Result<Io, Errno> {
        if buf.len() < 8 {
            return Err(Errno::EINVAL);
        }
        let v = u64::from_le_bytes(buf[..8].try_into().map_err(|_| Errno::EINVAL)?);
        if v == u64::MAX {
            return Err(Errno::EINVAL);
        }
        let mut st = self.state.lock();
        if EFD_MAX - st.count < v {
            return if nonblock {
                Err(Errno::EAGAIN)
            } else {
                Ok(Io::Wait(0))
            };
        }
        st.count += v;
        let ws = if v > 0 { st.waiters.take() } else { Vec::new() };
        drop(st);
        wake(ws);
        Ok(Io::Done(8))
    }

    /// Readiness for `poll`; registers `waiter` under the same lock.
    pub fn poll(&self, waiter: Option<&Waiter>) -> i16 {
        let mut st = self.state.lock();
        let mut r = 0;
        if st.count > 0 {
            r |= POLLIN | POLLRDNORM;
        }
        if st.count < EFD_MAX {
            r |= POLLOUT | POLLWRNORM;
        }
        if let Some(w) = waiter {
            st.waiters.add(w);
        }
        r
    }
}
