//! Process and system-information syscalls: identity, exit, TLS, limits,
//! randomness, uname and CPU affinity.

use std::sync::atomic::Ordering;

use sentry_systrap::host;

use super::{ret, Outcome, Sys};
use crate::errno::Errno;
use crate::kernel::ExitStatus;

pub fn getpid(s: &mut Sys) -> Result<Outcome, Errno> {
    ret(s.task.tg.pid)
}

pub fn gettid(s: &mut Sys) -> Result<Outcome, Errno> {
    ret(s.task.tid)
}

pub fn getppid(s: &mut Sys) -> Result<Outcome, Errno> {
    ret(s.task.tg.ppid)
}

pub fn getuid(_: &mut Sys) -> Result<Outcome, Errno> {
    ret(host::ids().0)
}

pub fn getgid(_: &mut Sys) -> Result<Outcome, Errno> {
    ret(host::ids().1)
}

pub fn exit(s: &mut Sys) -> Result<Outcome, Errno> {
    let others = s
        .task
        .tg
        .tasks()
        .iter()
        .any(|t| t.tid != s.task.tid && t.state() != crate::task::RunState::Dead);
    if others {
        let ctid = s.t.clear_child_tid;
        if ctid != 0 {
            let _ = s.mm().write_u32(ctid, 0);
        }
        s.task.sched.lock().state = crate::task::RunState::Dead;
        s.k.tasks.lock().remove(&s.task.tid);
        s.t.ctx.exit_thread();
        return Ok(Outcome::Exited);
    }
    s.k.exit_group(&s.task.tg, ExitStatus::Exited(s.a[0] as i32 & 0xff));
    Ok(Outcome::Exited)
}

pub fn exit_group(s: &mut Sys) -> Result<Outcome, Errno> {
    if s.k.config.strace {
        eprintln!("[pid {:>5}] exit_group({}) = ?", s.task.tid, s.a[0] as i32);
        eprintln!(
            "[pid {:>5}] +++ exited with {} +++",
            s.task.tid,
            s.a[0] as i32 & 0xff
        );
    }
    s.task.tg.exiting.load(Ordering::Relaxed);
    s.k.exit_group(&s.task.tg, ExitStatus::Exited(s.a[0] as i32 & 0xff));
    Ok(Outcome::Exited)
}

const ARCH_SET_GS: u64 = 0x1001;
const ARCH_SET_FS: u64 = 0x1002;
const ARCH_GET_FS: u64 = 0x1003;
const ARCH_GET_GS: u64 = 0x1004;

pub fn arch_prctl(s: &mut Sys) -> Result<Outcome, Errno> {
    match s.a[0] {
        ARCH_SET_FS => {
            if s.a[1] >= sentry_systrap::GUEST_END {
                return Err(Errno::EPERM);
            }
            s.t.ctx.set_fs_base(s.a[1]).map_err(|_| Errno::EFAULT)?;
            ret(0)
        }
        ARCH_GET_FS => {
            let v = s.t.ctx.fs_base();
            s.mm().write_u64(s.a[1], v)?;
            ret(0)
        }
        ARCH_GET_GS => {
            s.mm().write_u64(s.a[1], 0)?;
            ret(0)
        }
        ARCH_SET_GS => Err(Errno::EPERM),
        _ => Err(Errno::EINVAL),
    }
}

pub fn set_tid_address(s: &mut Sys) -> Result<Outcome, Errno> {
    s.t.clear_child_tid = s.a[0];
    ret(s.task.tid)
}

pub fn set_robust_list(s: &mut Sys) -> Result<Outcome, Errno> {
    if s.a[1] != 24 {
        return Err(Errno::EINVAL);
    }
    s.t.robust_list = (s.a[0], s.a[1]);
    ret(0)
}

pub fn rseq(_: &mut Sys) -> Result<Outcome, Errno> {
    Err(Errno::ENOSYS)
}

const RLIM_INFINITY: u64 = u64::MAX;

fn limit(res: u64) -> Result<(u64, u64), Errno> {
    Ok(match res as u32 {
        libc::RLIMIT_STACK => (crate::mm::STACK_SIZE, RLIM_INFINITY),
        libc::RLIMIT_NOFILE => (crate::vfs::MAX_FDS as u64, crate::vfs::MAX_FDS as u64),
        libc::RLIMIT_CORE => (0, RLIM_INFINITY),
        libc::RLIMIT_NPROC => (4096, 4096),
        r if r < 16 => (RLIM_INFINITY, RLIM_INFINITY),
        _ => return Err(Errno::EINVAL),
    })
}

pub fn prlimit64(s: &mut Sys) -> Result<Outcome, Errno> {
    let [pid, res, new, old, ..] = s.a;
    if pid != 0 && pid as i32 != s.task.tg.pid {
        return Err(Errno::ESRCH);
    }
    let (cur, max) = limit(res)?;
    if old != 0 {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&cur.to_le_bytes());
        b[8..].copy_from_slice(&max.to_le_bytes());
        s.mm().write(old, &b)?;
    }
    if new != 0 {
        // Accepted and not enforced beyond the fixed values above.
        let mut b = [0u8; 16];
        s.mm().read(new, &mut b)?;
    }
    ret(0)
}

pub fn getrlimit(s: &mut Sys) -> Result<Outcome, Errno> {
    let (cur, max) = limit(s.a[0])?;
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&cur.to_le_bytes());
    b[8..].copy_from_slice(&max.to_le_bytes());
    s.mm().write(s.a[1], &b)?;
    ret(0)
}

pub fn getrandom(s: &mut Sys) -> Result<Outcome, Errno> {
    if s.a[2] & !7 != 0 {
        return Err(Errno::EINVAL);
    }
    let mut buf = vec![0u8; (s.a[1] as usize).min(1 << 20)];
    let n = host::getrandom(&mut buf).map_err(Errno::from)?;
    s.mm().write(s.a[0], &buf[..n])?;
    ret(n)
}

pub fn uname(s: &mut Sys) -> Result<Outcome, Errno> {
    let fields = host::uname();
    let mut buf = [0u8; 65 * 6];
    for (i, f) in fields.iter().enumerate() {
        let n = f.len().min(64);
        buf[i * 65..i * 65 + n].copy_from_slice(&f[..n]);
    }
    buf[5 * 65..5 * 65 + 6].copy_from_slice(b"(none)");
    s.mm().write(s.a[0], &buf)?;
    ret(0)
}

pub fn sched_getaffinity(s: &mut Sys) -> Result<Outcome, Errno> {
    let len = s.a[1] as usize;
    if len < 8 || len % 8 != 0 {
        return Err(Errno::EINVAL);
    }
    let cpus = s.k.config.cpus;
    let mask: u64 = if cpus >= 64 {
        u64::MAX
    } else {
        (1u64 << cpus) - 1
    };
    s.mm().write(s.a[2], &mask.to_le_bytes())?;
    ret(8)
}

pub fn sched_yield(_: &mut Sys) -> Result<Outcome, Errno> {
    ret(0)
}

pub fn prctl(s: &mut Sys) -> Result<Outcome, Errno> {
    match s.a[0] as i32 {
        libc::PR_SET_NAME => {
            let name = s.mm().read_cstr(s.a[1], 4096)?;
            let mut n = [0u8; 16];
            let len = name.len().min(15);
            n[..len].copy_from_slice(&name[..len]);
            *s.task.name.lock() = n;
            ret(0)
        }
        libc::PR_GET_NAME => {
            let n = *s.task.name.lock();
            s.mm().write(s.a[1], &n)?;
            ret(0)
        }
        libc::PR_GET_DUMPABLE => ret(1),
        libc::PR_SET_DUMPABLE => ret(0),
        libc::PR_SET_PDEATHSIG | libc::PR_SET_NO_NEW_PRIVS => ret(0),
        libc::PR_GET_NO_NEW_PRIVS => ret(1),
        _ => Err(Errno::EINVAL),
    }
}
