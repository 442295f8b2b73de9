//! `futex(2)` on guest memory: WAIT, WAKE, their BITSET forms, REQUEUE,
//! CMP_REQUEUE and WAKE_OP, private or shared, with timeouts.

use std::time::{Duration, Instant};

use sentry_systrap::host;

use super::{ret, Outcome, Sys};
use crate::errno::Errno;
use crate::task::Restart;

const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;
const FUTEX_REQUEUE: u64 = 3;
const FUTEX_CMP_REQUEUE: u64 = 4;
const FUTEX_WAKE_OP: u64 = 5;
const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_WAKE_BITSET: u64 = 10;
const FUTEX_PRIVATE_FLAG: u64 = 128;
const FUTEX_CLOCK_REALTIME: u64 = 256;

fn key(s: &Sys, addr: u64) -> Result<u64, Errno> {
    if addr % 4 != 0 {
        return Err(Errno::EINVAL);
    }
    s.mm().file_offset(addr)
}

fn wake_all(s: &Sys, tasks: Vec<std::sync::Arc<crate::task::Task>>) -> usize {
    let n = tasks.len();
    for t in tasks {
        s.k.wake(&t);
    }
    n
}

fn wait(
    s: &mut Sys,
    addr: u64,
    val: u32,
    deadline: Option<Instant>,
    bitset: u32,
) -> Result<Outcome, Errno> {
    if let Some(Restart::Futex {
        key,
        waiter,
        deadline,
    }) = s.t.restart.take()
    {
        if waiter.woken.load(std::sync::atomic::Ordering::Acquire) {
            return ret(0);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return if s.k.futexes.cancel(key, &waiter) {
                ret(0)
            } else {
                Err(Errno::ETIMEDOUT)
            };
        }
        s.t.restart = Some(Restart::Futex {
            key,
            waiter,
            deadline,
        });
        return Ok(Outcome::Block { deadline });
    }
    if bitset == 0 {
        return Err(Errno::EINVAL);
    }
    let key = key(s, addr)?;
    let mm = s.task.tg.mm.clone();
    let waiter =
        s.k.futexes
            .wait_if(key, s.task, bitset, || Ok(mm.read_u32(addr)? == val))?;
    let Some(waiter) = waiter else {
        return Err(Errno::EAGAIN);
    };
    s.t.restart = Some(Restart::Futex {
        key,
        waiter,
        deadline,
    });
    Ok(Outcome::Block { deadline })
}

/// Applies a FUTEX_WAKE_OP operation to the word and evaluates its condition.
fn wake_op_apply(word: &std::sync::atomic::AtomicU32, encoded: u32) -> Result<bool, Errno> {
    use std::sync::atomic::Ordering::SeqCst;
    let op = (encoded >> 28) & 7;
    let shift = (encoded >> 28) & 8 != 0;
    let cmp = (encoded >> 24) & 15;
    let mut oparg = (encoded >> 12) & 0xfff;
    let cmparg = encoded & 0xfff;
    if shift {
        oparg = 1u32.checked_shl(oparg).unwrap_or(0);
    }
    let old = match op {
        0 => word.swap(oparg, SeqCst),
        1 => word.fetch_add(oparg, SeqCst),
        2 => word.fetch_or(oparg, SeqCst),
        3 => word.fetch_and(!oparg, SeqCst),
        4 => word.fetch_xor(oparg, SeqCst),
        _ => return Err(Errno::ENOSYS),
    };
    let (o, c) = (old as i32, cmparg as i32);
    Ok(match cmp {
        0 => o == c,
        1 => o != c,
        2 => o < c,
        3 => o <= c,
        4 => o > c,
        5 => o >= c,
        _ => return Err(Errno::ENOSYS),
    })
}

pub fn futex(s: &mut Sys) -> Result<Outcome, Errno> {
    let [addr, op, val, utime, addr2, val3] = s.a;
    let cmd = op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    let realtime = op & FUTEX_CLOCK_REALTIME != 0;
    match cmd {
        FUTEX_WAIT | FUTEX_WAIT_BITSET => {
            let restarting = matches!(s.t.restart, Some(Restart::Futex { .. }));
            let deadline = if restarting || utime == 0 {
                None
            } else if cmd == FUTEX_WAIT {
                Some(Instant::now() + super::time::read_timespec(s, utime)?)
            } else {
                let abs = super::time::read_timespec(s, utime)?;
                let clock = if realtime {
                    libc::CLOCK_REALTIME
                } else {
                    libc::CLOCK_MONOTONIC
                };
                let (sec, nsec) = host::clock_gettime(clock).map_err(Errno::from)?;
                Some(Instant::now() + abs.saturating_sub(Duration::new(sec as u64, nsec as u32)))
            };
            let bitset = if cmd == FUTEX_WAIT {
                u32::MAX
            } else {
                val3 as u32
            };
            wait(s, addr, val as u32, deadline, bitset)
        }
        FUTEX_WAKE | FUTEX_WAKE_BITSET => {
            let bitset = if cmd == FUTEX_WAKE {
                u32::MAX
            } else {
                val3 as u32
            };
            if bitset == 0 {
                return Err(Errno::EINVAL);
            }
            let k = key(s, addr)?;
            let woken = s.k.futexes.wake(k, val as u32 as usize, bitset);
            ret(wake_all(s, woken))
        }
        FUTEX_REQUEUE | FUTEX_CMP_REQUEUE => {
            let (k1, k2) = (key(s, addr)?, key(s, addr2)?);
            let mm = s.task.tg.mm.clone();
            let (woken, count) =
                s.k.futexes
                    .requeue(k1, k2, val as u32 as usize, utime as u32 as usize, || {
                        Ok(cmd == FUTEX_REQUEUE || mm.read_u32(addr)? == val3 as u32)
                    })?;
            wake_all(s, woken);
            ret(count)
        }
        FUTEX_WAKE_OP => {
            let (k1, k2) = (key(s, addr)?, key(s, addr2)?);
            let mem = s.mm().memory_file().clone();
            let word = mem.atomic_u32(k2).map_err(|_| Errno::EFAULT)?;
            let woken =
                s.k.futexes
                    .wake_op(k1, k2, val as u32 as usize, utime as u32 as usize, || {
                        wake_op_apply(word, val3 as u32)
                    })?;
            ret(wake_all(s, woken))
        }
        _ => Err(Errno::ENOSYS),
    }
}
