//! Futexes on guest memory.
//!
//! Every guest page lives in the memory file, so a futex word is named by its
//! offset in that file: the same key for every thread (and, with shared
//! mappings, every process) that maps it, private or not. Waiters are queued
//! per key under one lock; the value check of `FUTEX_WAIT` happens under that
//! lock, so a waker that changes the word and then calls `FUTEX_WAKE` can
//! never slip between the check and the enqueue. A waiting task is parked
//! (its worker moves on) and re-runs the syscall when woken, finding its
//! waiter marked.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::task::Task;

/// One waiting task.
pub struct Waiter {
    pub task: Arc<Task>,
    pub bitset: u32,
    /// Set by a waker; the waiting syscall then returns 0.
    pub woken: AtomicBool,
}

/// The futex wait queues of a sandbox.
#[derive(Default)]
pub struct Futexes {
    queues: Mutex<HashMap<u64, Vec<Arc<Waiter>>>>,
}

impl Futexes {
    /// Under the queue lock: if `check()` holds, enqueue a waiter on `key`.
    pub fn wait_if(
        &self,
        key: u64,
        task: &Arc<Task>,
        bitset: u32,
        check: impl FnOnce() -> Result<bool, crate::Errno>,
    ) -> Result<Option<Arc<Waiter>>, crate::Errno> {
        let mut q = self.queues.lock();
        if !check()? {
            return Ok(None);
        }
        let w = Arc::new(Waiter {
            task: task.clone(),
            bitset,
            woken: AtomicBool::new(false),
        });
        q.entry(key).or_default().push(w.clone());
        Ok(Some(w))
    }

    /// Removes a waiter that gave up (timeout, signal). Returns whether it
    /// had been woken meanwhile.
    pub fn cancel(&self, key: u64, w: &Arc<Waiter>) -> bool {
        let mut q = self.queues.lock();
        if let Some(v) = q.get_mut(&key) {
            v.retain(|x| !Arc::ptr_eq(x, w));
            if v.is_empty() {
                q.remove(&key);
            }
        }
        w.woken.load(Ordering::Acquire)
    }

    /// Wakes up to `n` waiters on `key` whose bitset meets `bitset`;
    /// returns them (the caller wakes their tasks outside the lock).
    pub fn wake(&self, key: u64, n: usize, bitset: u32) -> Vec<Arc<Task>> {
        let mut q = self.queues.lock();
        Self::wake_locked(&mut q, key, n, bitset)
    }

    fn wake_locked(
        q: &mut HashMap<u64, Vec<Arc<Waiter>>>,
        key: u64,
        n: usize,
        bitset: u32,
    ) -> Vec<Arc<Task>> {
        let mut out = Vec::new();
        if let Some(v) = q.get_mut(&key) {
            let mut i = 0;
            while i < v.len() && out.len() < n {
                if v[i].bitset & bitset != 0 {
                    let w = v.remove(i);
                    w.woken.store(true, Ordering::Release);
                    out.push(w.task.clone());
                } else {
                    i += 1;
                }
            }
            if v.is_empty() {
                q.remove(&key);
            }
        }
        out
    }

    /// `FUTEX_CMP_REQUEUE`: if `check()` holds, wake `n` on `from` and move
    /// up to `m` more to `to`. Returns (woken tasks, woken + moved).
    pub fn requeue(
        &self,
        from: u64,
        to: u64,
        n: usize,
        m: usize,
        check: impl FnOnce() -> Result<bool, crate::Errno>,
    ) -> Result<(Vec<Arc<Task>>, usize), crate::Errno> {
        let mut q = self.queues.lock();
        if !check()? {
            return Err(crate::Errno::EAGAIN);
        }
        let woken = Self::wake_locked(&mut q, from, n, u32::MAX);
        let mut moved = Vec::new();
        if let Some(v) = q.get_mut(&from) {
            let k = m.min(v.len());
            moved = v.drain(..k).collect();
            if v.is_empty() {
                q.remove(&from);
            }
        }
        let count = woken.len() + moved.len();
        if !moved.is_empty() {
            q.entry(to).or_default().extend(moved);
        }
        Ok((woken, count))
    }

    /// `FUTEX_WAKE_OP`: `op()` runs under the lock and says whether to wake
    /// on `key2` too.
    pub fn wake_op(
        &self,
        key1: u64,
        key2: u64,
        n1: usize,
        n2: usize,
        op: impl FnOnce() -> Result<bool, crate::Errno>,
    ) -> Result<Vec<Arc<Task>>, crate::Errno> {
        let mut q = self.queues.lock();
        let cond = op()?;
        let mut out = Self::wake_locked(&mut q, key1, n1, u32::MAX);
        if cond {
            out.extend(Self::wake_locked(&mut q, key2, n2, u32::MAX));
        }
        Ok(out)
    }

    /// Waiters queued on `key` (for tests and diagnostics).
    pub fn waiters(&self, key: u64) -> usize {
        self.queues.lock().get(&key).map_or(0, Vec::len)
    }
}
