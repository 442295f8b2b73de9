//! Signal syscalls. Actions, masks and alternate stacks are recorded for the
//! guest; delivery of guest handlers comes with the signals work.

use super::{ret, Outcome, Sys};
use crate::errno::Errno;
use crate::task::SigAction;

const SIGKILL: u64 = 9;
const SIGSTOP: u64 = 19;
const UNBLOCKABLE: u64 = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1));

pub fn rt_sigaction(s: &mut Sys) -> Result<Outcome, Errno> {
    let [sig, act, oact, size, ..] = s.a;
    if size != 8 || sig == 0 || sig > 64 {
        return Err(Errno::EINVAL);
    }
    if act != 0 && (sig == SIGKILL || sig == SIGSTOP) {
        return Err(Errno::EINVAL);
    }
    let old = s.task.tg.sigactions.lock()[sig as usize - 1];
    if act != 0 {
        let mut b = [0u8; 32];
        s.mm().read(act, &mut b)?;
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        s.task.tg.sigactions.lock()[sig as usize - 1] = SigAction {
            handler: w(0),
            flags: w(1),
            restorer: w(2),
            mask: w(3) & !UNBLOCKABLE,
        };
    }
    if oact != 0 {
        let mut b = [0u8; 32];
        for (i, v) in [old.handler, old.flags, old.restorer, old.mask]
            .iter()
            .enumerate()
        {
            b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        s.mm().write(oact, &b)?;
    }
    ret(0)
}

pub fn rt_sigprocmask(s: &mut Sys) -> Result<Outcome, Errno> {
    let [how, set, oset, size, ..] = s.a;
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let old = s.t.sigmask;
    if set != 0 {
        let v = s.mm().read_u64(set)?;
        s.t.sigmask = match how as i32 {
            libc::SIG_BLOCK => old | v,
            libc::SIG_UNBLOCK => old & !v,
            libc::SIG_SETMASK => v,
            _ => return Err(Errno::EINVAL),
        } & !UNBLOCKABLE;
    }
    if oset != 0 {
        s.mm().write_u64(oset, old)?;
    }
    ret(0)
}

pub fn sigaltstack(s: &mut Sys) -> Result<Outcome, Errno> {
    let [ss, oss, ..] = s.a;
    let old = s.t.altstack;
    if ss != 0 {
        let mut b = [0u8; 24];
        s.mm().read(ss, &mut b)?;
        let sp = u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
        let flags = u32::from_le_bytes(b[8..12].try_into().unwrap_or([0; 4])) as u64;
        let size = u64::from_le_bytes(b[16..24].try_into().unwrap_or([0; 8]));
        if flags & !(libc::SS_DISABLE as u64 | 1 << 31) != 0 {
            return Err(Errno::EINVAL);
        }
        if flags & libc::SS_DISABLE as u64 == 0 && size < libc::MINSIGSTKSZ as u64 {
            return Err(Errno::ENOMEM);
        }
        s.t.altstack = (sp, flags, size);
    }
    if oss != 0 {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&old.0.to_le_bytes());
        b[8..12].copy_from_slice(&(old.1 as u32).to_le_bytes());
        b[16..24].copy_from_slice(&old.2.to_le_bytes());
        s.mm().write(oss, &b)?;
    }
    ret(0)
}

pub fn rt_sigreturn(s: &mut Sys) -> Result<Outcome, Errno> {
    if crate::signal::sigreturn(s.task, s.t).is_err() {
        // A frame the guest broke: like Linux, SIGSEGV.
        s.k.exit_group(
            &s.task.tg,
            crate::kernel::ExitStatus::Signaled(libc::SIGSEGV),
        );
        return Ok(Outcome::Exited);
    }
    Ok(Outcome::Resume)
}

pub fn rt_sigpending(s: &mut Sys) -> Result<Outcome, Errno> {
    if s.a[1] != 8 {
        return Err(Errno::EINVAL);
    }
    let mut set = 0u64;
    for i in s.task.pending.lock().iter() {
        set |= 1 << (i.signo - 1);
    }
    s.mm().write_u64(s.a[0], set & s.t.sigmask)?;
    ret(0)
}

/// `rt_sigsuspend`: waits with a temporary mask until a signal is
/// delivered; the handler's frame saves the original mask.
pub fn rt_sigsuspend(s: &mut Sys) -> Result<Outcome, Errno> {
    if s.a[1] != 8 {
        return Err(Errno::EINVAL);
    }
    if s.t.saved_mask.is_none() {
        let mask = s.mm().read_u64(s.a[0])?;
        s.t.saved_mask = Some(s.t.sigmask);
        s.t.sigmask = mask & !UNBLOCKABLE;
    }
    Ok(Outcome::Block { deadline: None })
}

/// `rt_sigtimedwait(set, info, timeout)`: takes a pending signal of `set`
/// (normally blocked by the caller) without running a handler.
pub fn rt_sigtimedwait(s: &mut Sys) -> Result<Outcome, Errno> {
    let [set_addr, info_addr, timeout, size, ..] = s.a;
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let set = s.mm().read_u64(set_addr)? & !UNBLOCKABLE;
    let taken = {
        let mut p = s.task.pending.lock();
        let i = p.iter().position(|i| set & (1u64 << (i.signo - 1)) != 0);
        let info = i.map(|i| p.remove(i));
        if p.is_empty() {
            s.task
                .signal_hint
                .store(false, std::sync::atomic::Ordering::Release);
        }
        info
    };
    if let Some(info) = taken {
        s.t.restart = None;
        if info_addr != 0 {
            s.mm().write(info_addr, &info.to_bytes())?;
        }
        return ret(info.signo);
    }
    let deadline = match s.t.restart {
        Some(crate::task::Restart::SigWait { deadline }) => deadline,
        _ if timeout != 0 => {
            Some(std::time::Instant::now() + super::time::read_timespec(s, timeout)?)
        }
        _ => None,
    };
    if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
        s.t.restart = None;
        return Err(Errno::EAGAIN);
    }
    // Any arriving signal wakes a parked task (blocked ones included), so
    // the re-run finds it in `pending`.
    s.t.restart = Some(crate::task::Restart::SigWait { deadline });
    Ok(Outcome::Block { deadline })
}
