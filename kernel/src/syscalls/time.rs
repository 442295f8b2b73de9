//! Time syscalls: clocks from the host, sleeps that park the task.

use std::time::{Duration, Instant};

use sentry_systrap::host;

use super::{ret, Outcome, Sys};
use crate::errno::Errno;
use crate::task::Restart;

/// A guest (seconds, sub-second) pair of i64s whose second field counts
/// `unit` nanoseconds: `struct timespec` (1) or `struct timeval` (1000).
fn read_time_pair(s: &Sys, addr: u64, unit: i64) -> Result<Duration, Errno> {
    let mut b = [0u8; 16];
    s.mm().read(addr, &mut b)?;
    let sec = i64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
    let frac = i64::from_le_bytes(b[8..].try_into().unwrap_or([0; 8]));
    if sec < 0 || !(0..1_000_000_000 / unit).contains(&frac) {
        return Err(Errno::EINVAL);
    }
    Ok(Duration::new(sec as u64, (frac * unit) as u32))
}

/// A guest `struct timespec` as a duration (EINVAL when out of range).
pub(crate) fn read_timespec(s: &Sys, addr: u64) -> Result<Duration, Errno> {
    read_time_pair(s, addr, 1)
}

/// A guest `struct timeval` as a duration (EINVAL when out of range).
pub(crate) fn read_timeval(s: &Sys, addr: u64) -> Result<Duration, Errno> {
    read_time_pair(s, addr, 1000)
}

fn write_timespec(s: &Sys, addr: u64, sec: i64, nsec: i64) -> Result<(), Errno> {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&sec.to_le_bytes());
    b[8..].copy_from_slice(&nsec.to_le_bytes());
    s.mm().write(addr, &b)
}

fn host_clock(s: &Sys, clock: u64) -> Result<i32, Errno> {
    let c = clock as i32;
    match c {
        libc::CLOCK_REALTIME
        | libc::CLOCK_MONOTONIC
        | libc::CLOCK_MONOTONIC_RAW
        | libc::CLOCK_REALTIME_COARSE
        | libc::CLOCK_MONOTONIC_COARSE
        | libc::CLOCK_BOOTTIME => Ok(c),
        libc::CLOCK_PROCESS_CPUTIME_ID | libc::CLOCK_THREAD_CPUTIME_ID => Ok(-1),
        _ => {
            let _ = s;
            Err(Errno::EINVAL)
        }
    }
}

/// CPU time of the calling process or thread, from the kernel's accounting.
fn cpu_time(s: &Sys, clock: u64) -> (i64, i64) {
    let ns = if clock as i32 == libc::CLOCK_THREAD_CPUTIME_ID {
        let (u, sys) = s.task.cpu.times();
        u + sys
    } else {
        s.task.tg.cpu_times().total_ns()
    };
    ((ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as i64)
}

fn timeval(ns: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&((ns / 1_000_000_000) as i64).to_le_bytes());
    b[8..].copy_from_slice(&(((ns % 1_000_000_000) / 1000) as i64).to_le_bytes());
    b
}

/// `times(2)`: user/system ticks of the process and its reaped children.
pub fn times(s: &mut Sys) -> Result<Outcome, Errno> {
    if s.a[0] != 0 {
        let (u, sys) = s.task.tg.cpu_times().to_ticks();
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&u.to_le_bytes());
        b[8..16].copy_from_slice(&sys.to_le_bytes());
        s.mm().write(s.a[0], &b)?;
    }
    let (sec, nsec) = host::clock_gettime(libc::CLOCK_MONOTONIC).map_err(Errno::from)?;
    ret(sec * 100 + nsec / 10_000_000)
}

/// `getrusage(2)` for RUSAGE_SELF, RUSAGE_THREAD and RUSAGE_CHILDREN.
pub fn getrusage(s: &mut Sys) -> Result<Outcome, Errno> {
    let (u, sys) = match s.a[0] as i32 {
        libc::RUSAGE_SELF => {
            let t = s.task.tg.cpu_times();
            (t.user_ns, t.sys_ns)
        }
        libc::RUSAGE_THREAD => s.task.cpu.times(),
        libc::RUSAGE_CHILDREN => (0, 0),
        _ => return Err(Errno::EINVAL),
    };
    let mut b = [0u8; 144];
    b[..16].copy_from_slice(&timeval(u));
    b[16..32].copy_from_slice(&timeval(sys));
    s.mm().write(s.a[1], &b)?;
    ret(0)
}

pub fn clock_gettime(s: &mut Sys) -> Result<Outcome, Errno> {
    let c = host_clock(s, s.a[0])?;
    let (sec, nsec) = if c < 0 {
        cpu_time(s, s.a[0])
    } else {
        host::clock_gettime(c).map_err(Errno::from)?
    };
    write_timespec(s, s.a[1], sec, nsec)?;
    ret(0)
}

pub fn clock_getres(s: &mut Sys) -> Result<Outcome, Errno> {
    let c = host_clock(s, s.a[0])?;
    if s.a[1] != 0 {
        let (sec, nsec) = if c < 0 {
            (0, 1)
        } else {
            host::clock_getres(c).map_err(Errno::from)?
        };
        write_timespec(s, s.a[1], sec, nsec)?;
    }
    ret(0)
}

pub fn gettimeofday(s: &mut Sys) -> Result<Outcome, Errno> {
    if s.a[0] != 0 {
        let (sec, nsec) = host::clock_gettime(libc::CLOCK_REALTIME).map_err(Errno::from)?;
        write_timespec(s, s.a[0], sec, nsec / 1000)?;
    }
    if s.a[1] != 0 {
        s.mm().write(s.a[1], &[0u8; 8])?;
    }
    ret(0)
}

pub fn time(s: &mut Sys) -> Result<Outcome, Errno> {
    let (sec, _) = host::clock_gettime(libc::CLOCK_REALTIME).map_err(Errno::from)?;
    if s.a[0] != 0 {
        s.mm().write_u64(s.a[0], sec as u64)?;
    }
    ret(sec)
}

/// Sleeps until `deadline`, parking the task; runs again when woken.
fn sleep_until(s: &mut Sys, deadline: Instant) -> Result<Outcome, Errno> {
    if Instant::now() >= deadline {
        s.t.restart = None;
        return ret(0);
    }
    s.t.restart = Some(Restart::Sleep { deadline });
    Ok(Outcome::Block {
        deadline: Some(deadline),
    })
}

pub fn nanosleep(s: &mut Sys) -> Result<Outcome, Errno> {
    if let Some(Restart::Sleep { deadline }) = s.t.restart.clone() {
        return sleep_until(s, deadline);
    }
    let d = read_timespec(s, s.a[0])?;
    sleep_until(s, Instant::now() + d)
}

pub fn clock_nanosleep(s: &mut Sys) -> Result<Outcome, Errno> {
    if let Some(Restart::Sleep { deadline }) = s.t.restart.clone() {
        return sleep_until(s, deadline);
    }
    let c = host_clock(s, s.a[0])?;
    if c < 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    let d = read_timespec(s, s.a[2])?;
    let deadline = if s.a[1] as i32 & libc::TIMER_ABSTIME != 0 {
        let (sec, nsec) = host::clock_gettime(c).map_err(Errno::from)?;
        let now = Duration::new(sec as u64, nsec as u32);
        Instant::now() + d.saturating_sub(now)
    } else {
        Instant::now() + d
    };
    sleep_until(s, deadline)
}

/// `alarm(secs)`: SIGALRM to the process after `secs` seconds (0 cancels);
/// returns the seconds left of the previous alarm.
pub fn alarm(s: &mut Sys) -> Result<Outcome, Errno> {
    let secs = s.a[0] as u32;
    let prev = s.k.set_alarm(
        &s.task.tg,
        (secs > 0).then(|| Instant::now() + Duration::from_secs(secs as u64)),
    );
    ret(prev.map_or(0, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0)))
}

fn write_itimerval(
    s: &Sys,
    addr: u64,
    (left, interval): (Duration, Duration),
) -> Result<(), Errno> {
    let mut b = [0u8; 32];
    let tv = |d: Duration| -> [u8; 16] {
        let mut t = [0u8; 16];
        t[..8].copy_from_slice(&(d.as_secs() as i64).to_le_bytes());
        t[8..].copy_from_slice(&(d.subsec_micros() as i64).to_le_bytes());
        t
    };
    b[..16].copy_from_slice(&tv(interval));
    b[16..].copy_from_slice(&tv(left));
    s.mm().write(addr, &b)
}

/// `setitimer(ITIMER_REAL, ...)`: SIGALRM after `it_value`, then every
/// `it_interval`. The virtual and profiling timers are not provided.
pub fn setitimer(s: &mut Sys) -> Result<Outcome, Errno> {
    if s.a[0] as i32 != libc::ITIMER_REAL {
        return Err(Errno::EINVAL);
    }
    let timer = if s.a[1] != 0 {
        let interval = read_timeval(s, s.a[1])?;
        let value = read_timeval(s, s.a[1] + 16)?;
        (!value.is_zero()).then(|| (Instant::now() + value, interval))
    } else {
        None
    };
    let prev = s.k.set_itimer(&s.task.tg, timer).unwrap_or_default();
    if s.a[2] != 0 {
        write_itimerval(s, s.a[2], prev)?;
    }
    ret(0)
}

pub fn getitimer(s: &mut Sys) -> Result<Outcome, Errno> {
    if s.a[0] as i32 != libc::ITIMER_REAL {
        return Err(Errno::EINVAL);
    }
    let cur = s.k.get_itimer(&s.task.tg).unwrap_or_default();
    write_itimerval(s, s.a[1], cur)?;
    ret(0)
}
