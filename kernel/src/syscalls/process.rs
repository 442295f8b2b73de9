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
    ret(s.task.tg.ppid.load(Ordering::Relaxed))
}

pub fn getuid(s: &mut Sys) -> Result<Outcome, Errno> {
    ret(s.task.tg.creds.uid)
}

pub fn geteuid(s: &mut Sys) -> Result<Outcome, Errno> {
    ret(s.task.tg.creds.euid)
}

pub fn getgid(s: &mut Sys) -> Result<Outcome, Errno> {
    ret(s.task.tg.creds.gid)
}

pub fn getegid(s: &mut Sys) -> Result<Outcome, Errno> {
    ret(s.task.tg.creds.egid)
}

/// What a dying thread owes others: clear and wake its `clear_child_tid`
/// word and mark the futexes on its robust list as owner-dead.
fn release_thread(s: &mut Sys) {
    let mm = s.task.tg.mm.clone();
    let tid = s.task.tid as u32;
    let wake = |s: &Sys, addr: u64| {
        if let Ok(key) = mm.file_offset(addr) {
            for t in s.k.futexes.wake(key, 1, u32::MAX) {
                s.k.wake(&t);
            }
        }
    };
    let (head, _) = s.t.robust_list;
    if head != 0 {
        const FUTEX_WAITERS: u32 = 0x8000_0000;
        const FUTEX_OWNER_DIED: u32 = 0x4000_0000;
        const FUTEX_TID_MASK: u32 = 0x3fff_ffff;
        let offset = mm.read_u64(head + 8).unwrap_or(0) as i64;
        let pending = mm.read_u64(head + 16).unwrap_or(0);
        let mut entry = mm.read_u64(head).unwrap_or(head);
        let mut seen = 0;
        let mut entries = Vec::new();
        while entry != head && entry != 0 && seen < 2048 {
            entries.push(entry);
            entry = mm.read_u64(entry).unwrap_or(head);
            seen += 1;
        }
        if pending != 0 {
            entries.push(pending);
        }
        for e in entries {
            let addr = e.wrapping_add(offset as u64);
            if let Ok(v) = mm.read_u32(addr) {
                if v & FUTEX_TID_MASK == tid {
                    let _ = mm.write_u32(addr, (v & FUTEX_WAITERS) | FUTEX_OWNER_DIED);
                    if v & FUTEX_WAITERS != 0 {
                        wake(s, addr);
                    }
                }
            }
        }
    }
    let ctid = s.t.clear_child_tid;
    if ctid != 0 && mm.write_u32(ctid, 0).is_ok() {
        wake(s, ctid);
    }
}

pub fn exit(s: &mut Sys) -> Result<Outcome, Errno> {
    let others = s
        .task
        .tg
        .tasks()
        .iter()
        .any(|t| t.tid != s.task.tid && t.state() != crate::task::RunState::Dead);
    if others {
        release_thread(s);
        s.task.sched.lock().state = crate::task::RunState::Dead;
        s.k.retire(s.task);
        s.k.tasks.lock().remove(&s.task.tid);
        s.t.ctx.exit_thread();
        return Ok(Outcome::Exited);
    }
    s.k.exit_group(&s.task.tg, ExitStatus::Exited(s.a[0] as i32 & 0xff));
    Ok(Outcome::Exited)
}

const CLONE_THREAD_FLAGS: u64 = (libc::CLONE_VM | libc::CLONE_SIGHAND | libc::CLONE_THREAD) as u64;

fn do_clone(
    s: &mut Sys,
    flags: u64,
    stack: u64,
    ptid: u64,
    ctid: u64,
    tls: u64,
) -> Result<Outcome, Errno> {
    let f = |bit: i32| flags & bit as u64 != 0;
    if f(libc::CLONE_SIGHAND) && !f(libc::CLONE_VM)
        || f(libc::CLONE_THREAD) && !f(libc::CLONE_SIGHAND)
    {
        return Err(Errno::EINVAL);
    }
    if !f(libc::CLONE_THREAD) {
        // A new process: fork, vfork, or clone without CLONE_VM.
        return super::exec::fork(s, flags, stack, ctid, tls);
    }
    if flags & CLONE_THREAD_FLAGS != CLONE_THREAD_FLAGS {
        return Err(Errno::EINVAL);
    }
    if f(libc::CLONE_SETTLS) && tls >= sentry_systrap::GUEST_END {
        return Err(Errno::EPERM);
    }
    let mut regs = *s.t.ctx.regs();
    regs.rax = 0;
    if stack != 0 {
        regs.rsp = stack;
    }
    let fs = if f(libc::CLONE_SETTLS) {
        tls
    } else {
        s.t.ctx.fs_base()
    };
    let tid = s.k.alloc_tid();
    let worker = s.k.pick_worker();
    let ctx =
        s.t.ctx
            .new_thread(&regs, fs, worker)
            .map_err(|_| Errno::EAGAIN)?;
    if f(libc::CLONE_PARENT_SETTID) {
        s.mm().write_u32(ptid, tid as u32)?;
    }
    if f(libc::CLONE_CHILD_SETTID) {
        s.mm().write_u32(ctid, tid as u32)?;
    }
    let task = crate::task::Task::new(
        tid,
        s.task.tg.clone(),
        ctx,
        worker,
        crate::task::Start::Watch,
    );
    {
        let mut t = task.inner.lock();
        if f(libc::CLONE_CHILD_CLEARTID) {
            t.clear_child_tid = ctid;
        }
        t.sigmask = s.t.sigmask;
        t.affinity = s.t.affinity;
    }
    s.k.start_thread(task);
    ret(tid)
}

pub fn clone(s: &mut Sys) -> Result<Outcome, Errno> {
    let [flags, stack, ptid, ctid, tls, _] = s.a;
    do_clone(s, flags, stack, ptid, ctid, tls)
}

pub fn clone3(s: &mut Sys) -> Result<Outcome, Errno> {
    let size = s.a[1];
    if !(64..=4096).contains(&size) {
        return Err(Errno::EINVAL);
    }
    let mut b = [0u8; 64];
    s.mm().read(s.a[0], &mut b)?;
    let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    let (flags, _pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls) =
        (w(0), w(1), w(2), w(3), w(4), w(5), w(6), w(7));
    if flags & CLONE_THREAD_FLAGS == CLONE_THREAD_FLAGS && exit_signal != 0 {
        return Err(Errno::EINVAL);
    }
    let top = if stack != 0 {
        stack.checked_add(stack_size).ok_or(Errno::EINVAL)?
    } else {
        0
    };
    do_clone(s, flags, top, parent_tid, child_tid, tls)
}

fn sender(s: &Sys, sig: u64, code: i32) -> Result<crate::signal::SigInfo, Errno> {
    if sig > 64 {
        return Err(Errno::EINVAL);
    }
    Ok(crate::signal::SigInfo {
        signo: sig as i32,
        code,
        pid: s.task.tg.pid,
        uid: s.task.tg.creds.uid,
        ..Default::default()
    })
}

/// Linux's rule: the sender's real or effective UID must match the target's
/// real UID, or the sender is privileged (UID 0).
fn may_signal(s: &Sys, target: &crate::task::ThreadGroup) -> bool {
    let me = s.task.tg.creds;
    me.euid == 0 || me.uid == target.creds.uid || me.euid == target.creds.uid
}

/// After queueing a signal on itself, a task must not resume before it
/// is delivered: the syscall returns and delivery happens on the way out.
fn after_send(s: &Sys) -> Result<Outcome, Errno> {
    if s.task.tg.exiting.load(Ordering::SeqCst) {
        return Ok(Outcome::Exited);
    }
    ret(0)
}

pub fn tgkill(s: &mut Sys) -> Result<Outcome, Errno> {
    let info = sender(s, s.a[2], crate::signal::SI_TKILL)?;
    let t =
        s.k.task_by_tid(s.a[1] as i32)
            .filter(|t| t.tg.pid == s.a[0] as i32)
            .ok_or(Errno::ESRCH)?;
    if !may_signal(s, &t.tg) {
        return Err(Errno::EPERM);
    }
    if info.signo != 0 {
        s.k.signal_task(&t, info);
    }
    after_send(s)
}

pub fn tkill(s: &mut Sys) -> Result<Outcome, Errno> {
    let info = sender(s, s.a[1], crate::signal::SI_TKILL)?;
    let t = s.k.task_by_tid(s.a[0] as i32).ok_or(Errno::ESRCH)?;
    if !may_signal(s, &t.tg) {
        return Err(Errno::EPERM);
    }
    if info.signo != 0 {
        s.k.signal_task(&t, info);
    }
    after_send(s)
}

pub fn kill(s: &mut Sys) -> Result<Outcome, Errno> {
    let info = sender(s, s.a[1], crate::signal::SI_USER)?;
    let pid = s.a[0] as i32;
    let targets: Vec<std::sync::Arc<crate::task::ThreadGroup>> = {
        let procs = s.k.processes.lock();
        match pid {
            p if p > 0 => procs.get(&p).cloned().into_iter().collect(),
            -1 => procs.values().filter(|g| g.pid != 1).cloned().collect(),
            p => {
                let pgid = if p == 0 {
                    s.task.tg.pgid.load(Ordering::Relaxed)
                } else {
                    -p
                };
                procs
                    .values()
                    .filter(|g| g.pgid.load(Ordering::Relaxed) == pgid)
                    .cloned()
                    .collect()
            }
        }
    };
    if targets.is_empty() {
        return Err(Errno::ESRCH);
    }
    let targets: Vec<_> = targets.into_iter().filter(|tg| may_signal(s, tg)).collect();
    if targets.is_empty() {
        return Err(Errno::EPERM);
    }
    if info.signo != 0 {
        for tg in targets {
            s.k.signal_group(&tg, info);
        }
    }
    after_send(s)
}

pub fn getcpu(s: &mut Sys) -> Result<Outcome, Errno> {
    let cpu = s.k.current_cpu(s.task);
    if s.a[0] != 0 {
        s.mm().write_u32(s.a[0], cpu)?;
    }
    if s.a[1] != 0 {
        s.mm().write_u32(s.a[1], 0)?;
    }
    ret(0)
}

pub fn sched_setaffinity(s: &mut Sys) -> Result<Outcome, Errno> {
    let len = (s.a[1] as usize).min(128);
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    let mut b = vec![0u8; len];
    s.mm().read(s.a[2], &mut b)?;
    let mut m8 = [0u8; 8];
    let n = len.min(8);
    m8[..n].copy_from_slice(&b[..n]);
    let cpus = s.k.config.cpus;
    let valid: u64 = if cpus >= 64 {
        u64::MAX
    } else {
        (1u64 << cpus) - 1
    };
    let mask = u64::from_le_bytes(m8) & valid;
    if mask == 0 {
        return Err(Errno::EINVAL);
    }
    s.t.affinity = mask;
    ret(0)
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
    let mut fields = host::uname().to_vec();
    let uts = &s.k.root_uts_namespace;
    fields[1] = uts.hostname.lock().clone();
    fields.push(uts.domainname.lock().clone());
    let mut buf = [0u8; 65 * 6];
    for (i, f) in fields.iter().enumerate() {
        let n = f.len().min(64);
        buf[i * 65..i * 65 + n].copy_from_slice(&f[..n]);
    }
    s.mm().write(s.a[0], &buf)?;
    ret(0)
}

pub fn sched_getaffinity(s: &mut Sys) -> Result<Outcome, Errno> {
    let len = s.a[1] as usize;
    if len < 8 || len % 8 != 0 {
        return Err(Errno::EINVAL);
    }
    let cpus = s.k.config.cpus;
    let all: u64 = if cpus >= 64 {
        u64::MAX
    } else {
        (1u64 << cpus) - 1
    };
    // Under host cores the recorded mask is ignored, as in gVisor.
    let mask = if s.t.affinity != 0 && !s.k.use_host_cores {
        s.t.affinity & all
    } else {
        all
    };
    s.mm().write(s.a[2], &mask.to_le_bytes())?;
    ret(8)
}

/// `pause(2)`: sleeps until a signal ends it with EINTR.
pub fn pause(_: &mut Sys) -> Result<Outcome, Errno> {
    Ok(Outcome::Block { deadline: None })
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
