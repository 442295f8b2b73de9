//! Signals: queueing, choosing what a signal does, and delivering it to a
//! guest handler by building a Linux x86-64 `rt_sigframe` on the guest
//! stack (or its alternate signal stack).
//!
//! A signal is queued on a task (thread-directed) or its thread group, and
//! the target is made to notice: a task in the guest is interrupted (its
//! stub stops with `Stop::Interrupted`), a parked task is woken (its syscall
//! then ends with EINTR, or restarts under SA_RESTART). Every time a worker
//! is about to resume a task it delivers pending, unblocked signals: the
//! default action (terminate, ignore), or a frame for the handler. The
//! frame holds the interrupted registers, the signal mask and the FP state
//! (the XSAVE area of the stub's host frame), which `rt_sigreturn` restores.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use sentry_systrap::Context;

use crate::kernel::{ExitStatus, Kernel};
use crate::task::{Task, TaskInner};

pub const SIGHUP: i32 = 1;
pub const SIGKILL: i32 = 9;
pub const SIGSTOP: i32 = 19;
pub const SIG_DFL: u64 = 0;
pub const SIG_IGN: u64 = 1;
pub const SA_SIGINFO: u64 = 4;
pub const SA_ONSTACK: u64 = 0x0800_0000;
pub const SA_RESTART: u64 = 0x1000_0000;
pub const SA_NODEFER: u64 = 0x4000_0000;
pub const SA_RESETHAND: u64 = 0x8000_0000;
pub const SA_RESTORER: u64 = 0x0400_0000;
/// Signals that can never be blocked or caught.
pub const UNBLOCKABLE: u64 = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1));

/// `si_code` values.
pub const SI_USER: i32 = 0;
pub const SI_KERNEL: i32 = 0x80;
pub const SI_TKILL: i32 = -6;
pub const CLD_EXITED: i32 = 1;
pub const CLD_KILLED: i32 = 2;
pub const CLD_STOPPED: i32 = 5;
pub const CLD_CONTINUED: i32 = 6;

/// One queued signal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigInfo {
    pub signo: i32,
    pub code: i32,
    /// Sender (kill) or child (SIGCHLD).
    pub pid: i32,
    pub uid: u32,
    /// Faulting address (SIGSEGV, SIGBUS, ...).
    pub addr: u64,
    /// SIGCHLD: exit status or signal.
    pub status: i32,
}

impl SigInfo {
    /// The 128-byte `siginfo_t` a handler sees.
    pub fn to_bytes(&self) -> [u8; 128] {
        let mut b = [0u8; 128];
        b[0..4].copy_from_slice(&self.signo.to_le_bytes());
        b[8..12].copy_from_slice(&self.code.to_le_bytes());
        match self.signo {
            libc::SIGSEGV | libc::SIGBUS | libc::SIGFPE | libc::SIGILL | libc::SIGTRAP => {
                b[16..24].copy_from_slice(&self.addr.to_le_bytes());
            }
            _ => {
                b[16..20].copy_from_slice(&self.pid.to_le_bytes());
                b[20..24].copy_from_slice(&self.uid.to_le_bytes());
                b[24..28].copy_from_slice(&self.status.to_le_bytes());
            }
        }
        b
    }
}

/// What a signal does when nobody handles it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Default {
    Terminate,
    Ignore,
    /// The whole process stops until SIGCONT (its stub is SIGSTOPped).
    Stop,
    Continue,
}

pub fn default_action(sig: i32) -> Default {
    match sig {
        libc::SIGCHLD | libc::SIGURG | libc::SIGWINCH => Default::Ignore,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => Default::Stop,
        libc::SIGCONT => Default::Continue,
        _ => Default::Terminate,
    }
}

fn bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// What happened when a task was about to resume.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivered {
    /// Nothing to do, or a handler frame is set up: resume.
    Resume,
    /// The process died of a signal: do not resume.
    Killed,
}

impl Kernel {
    /// Whether `sig` would be discarded on arrival (ignored, not blocked).
    fn ignored(tg: &crate::task::ThreadGroup, sig: i32) -> bool {
        let act = tg.sigactions.lock()[sig as usize - 1];
        act.handler == SIG_IGN
            || (act.handler == SIG_DFL
                && matches!(default_action(sig), Default::Ignore | Default::Continue))
    }

    /// Queues a thread-directed signal and makes the task notice.
    pub fn signal_task(&self, task: &Arc<Task>, info: SigInfo) {
        if info.signo == SIGKILL {
            self.exit_group(&task.tg, ExitStatus::Signaled(SIGKILL));
            return;
        }
        if info.signo == libc::SIGCONT {
            self.continue_group(&task.tg);
        }
        if info.signo == SIGSTOP {
            self.stop_group(&task.tg, SIGSTOP);
            return;
        }
        if Self::ignored(&task.tg, info.signo) {
            return;
        }
        {
            let mut p = task.pending.lock();
            if !p.iter().any(|i| i.signo == info.signo) {
                p.push(info);
            }
        }
        task.signal_hint.store(true, Ordering::Release);
        self.notify(task);
    }

    /// Queues a process-directed signal on one of its threads.
    pub fn signal_group(&self, tg: &Arc<crate::task::ThreadGroup>, info: SigInfo) {
        let tasks = tg.tasks();
        // Prefer a thread that does not block it.
        let target = tasks
            .iter()
            .find(|t| {
                t.inner
                    .try_lock()
                    .is_some_and(|i| i.sigmask & bit(info.signo) == 0)
            })
            .or(tasks.first())
            .cloned();
        if let Some(t) = target {
            self.signal_task(&t, info);
        }
    }

    fn notify(&self, task: &Arc<Task>) {
        // `wake` also covers a task still Running on its way to park (it
        // leaves a pending wake-up), so a signal that arrives between a
        // syscall's last check and the park is never lost.
        let running = task.state() == crate::task::RunState::Running;
        self.wake(task);
        if running {
            task.interrupter.interrupt();
        }
    }

    /// Whether the task has a pending signal it does not block.
    pub(crate) fn has_deliverable(task: &Task, mask: u64) -> bool {
        task.signal_hint.load(Ordering::Acquire)
            && task
                .pending
                .lock()
                .iter()
                .any(|i| bit(i.signo) & mask == 0 || bit(i.signo) & UNBLOCKABLE != 0)
    }

    fn dequeue(task: &Task, mask: u64) -> Option<SigInfo> {
        let mut p = task.pending.lock();
        let i = p.iter().position(|i| bit(i.signo) & mask == 0)?;
        let info = p.remove(i);
        if p.is_empty() {
            task.signal_hint.store(false, Ordering::Release);
        }
        Some(info)
    }

    /// Delivers pending signals before the task resumes.
    pub(crate) fn deliver_signals(&self, task: &Arc<Task>, t: &mut TaskInner) -> Delivered {
        while let Some(info) = Self::dequeue(task, t.sigmask) {
            let act = task.tg.sigactions.lock()[info.signo as usize - 1];
            match act.handler {
                SIG_IGN => continue,
                SIG_DFL => match default_action(info.signo) {
                    Default::Terminate => {
                        self.exit_group(&task.tg, ExitStatus::Signaled(info.signo));
                        return Delivered::Killed;
                    }
                    Default::Stop => {
                        // The host stops the stub as soon as it resumes.
                        self.stop_group(&task.tg, info.signo);
                        continue;
                    }
                    _ => continue,
                },
                handler => {
                    if setup_frame(
                        task,
                        t,
                        &info,
                        act.handler,
                        act.flags,
                        act.restorer,
                        act.mask,
                    )
                    .is_err()
                    {
                        // A frame that cannot be written kills with SIGSEGV.
                        self.exit_group(&task.tg, ExitStatus::Signaled(libc::SIGSEGV));
                        return Delivered::Killed;
                    }
                    if act.flags & SA_RESETHAND != 0 {
                        task.tg.sigactions.lock()[info.signo as usize - 1] = Default::reset();
                    }
                    let _ = handler;
                    return Delivered::Resume;
                }
            }
        }
        Delivered::Resume
    }
}

impl Default {
    fn reset() -> crate::task::SigAction {
        crate::task::SigAction::default()
    }
}

/// Size of the kernel's `struct ucontext` and of `struct rt_sigframe` up to the FP state.
const UC_SIZE: u64 = 304;
const FRAME_SIZE: u64 = 8 + UC_SIZE + 128;
const UC_FP_XSTATE: u64 = 1;
const UC_SIGCONTEXT_SS: u64 = 2;
const UC_STRICT_RESTORE_SS: u64 = 4;

fn setup_frame(
    task: &Task,
    t: &mut TaskInner,
    info: &SigInfo,
    handler: u64,
    flags: u64,
    restorer: u64,
    act_mask: u64,
) -> Result<(), crate::Errno> {
    let mm = &task.tg.mm;
    let fp = t.ctx.fpstate();
    let regs = *t.ctx.regs();
    let (ss_sp, ss_flags, ss_size) = t.altstack;
    let on_alt = ss_flags & libc::SS_DISABLE as u64 == 0
        && ss_size > 0
        && regs.rsp > ss_sp
        && regs.rsp <= ss_sp + ss_size;
    let mut sp = if flags & SA_ONSTACK != 0
        && ss_flags & libc::SS_DISABLE as u64 == 0
        && ss_size > 0
        && !on_alt
    {
        ss_sp + ss_size
    } else {
        regs.rsp.wrapping_sub(128) // the red zone
    };
    let mut fp_addr = 0u64;
    if let Some(fp) = &fp {
        sp = (sp - fp.len() as u64) & !63;
        fp_addr = sp;
        mm.write(fp_addr, fp)?;
    }
    let frame = ((sp - FRAME_SIZE) & !15) - 8;
    let uc = frame + 8;
    let mut b = vec![0u8; FRAME_SIZE as usize];
    let put = |b: &mut Vec<u8>, off: u64, v: u64| {
        b[off as usize..off as usize + 8].copy_from_slice(&v.to_le_bytes())
    };
    put(&mut b, 0, restorer);
    let uc_flags = UC_SIGCONTEXT_SS
        | UC_STRICT_RESTORE_SS
        | if fp.as_ref().is_some_and(|f| f.len() > 512) {
            UC_FP_XSTATE
        } else {
            0
        };
    put(&mut b, 8, uc_flags);
    put(&mut b, 8 + 16, ss_sp);
    put(&mut b, 8 + 24, if on_alt { 1 } else { ss_flags }); // SS_ONSTACK
    put(&mut b, 8 + 32, ss_size);
    let g = [
        regs.r8,
        regs.r9,
        regs.r10,
        regs.r11,
        regs.r12,
        regs.r13,
        regs.r14,
        regs.r15,
        regs.rdi,
        regs.rsi,
        regs.rbp,
        regs.rbx,
        regs.rdx,
        regs.rax,
        regs.rcx,
        regs.rsp,
        regs.rip,
        regs.eflags,
    ];
    for (i, v) in g.iter().enumerate() {
        put(&mut b, 8 + 40 + 8 * i as u64, *v);
    }
    put(&mut b, 8 + 40 + 18 * 8, 0x33 | (0x2b << 48)); // cs, ss
    put(&mut b, 8 + 40 + 22 * 8, info.addr); // cr2
    put(&mut b, 8 + 40 + 23 * 8, fp_addr); // fpstate
    put(&mut b, 8 + 296, t.saved_mask.take().unwrap_or(t.sigmask)); // uc_sigmask
    b[(8 + UC_SIZE) as usize..].copy_from_slice(&info.to_bytes());
    mm.write(frame, &b)?;
    let r = t.ctx.regs_mut();
    r.rsp = frame;
    r.rip = handler;
    r.rdi = info.signo as u64;
    r.rsi = uc + UC_SIZE;
    r.rdx = uc;
    r.rax = 0;
    r.eflags &= !(0x400 | 0x100); // DF, TF
    let mut mask = t.sigmask | act_mask;
    if flags & SA_NODEFER == 0 {
        mask |= bit(info.signo);
    }
    t.sigmask = mask & !UNBLOCKABLE;
    Ok(())
}

/// `rt_sigreturn`: restores what `setup_frame` saved. The frame's ucontext
/// is at the stack pointer (the handler's `ret` popped the restorer).
pub fn sigreturn(task: &Task, t: &mut TaskInner) -> Result<(), crate::Errno> {
    let mm = &task.tg.mm;
    let uc = t.ctx.regs().rsp;
    let mut b = vec![0u8; UC_SIZE as usize];
    mm.read(uc, &mut b)?;
    let get = |off: usize| u64::from_le_bytes(b[off..off + 8].try_into().unwrap_or([0; 8]));
    let old_flags = t.ctx.regs().eflags;
    let g: Vec<u64> = (0..18).map(|i| get(40 + 8 * i)).collect();
    let fp_addr = get(40 + 23 * 8);
    let mask = get(296);
    let r = t.ctx.regs_mut();
    [
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx, r.rdx,
        r.rax, r.rcx, r.rsp, r.rip,
    ] = [
        g[0], g[1], g[2], g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11], g[12], g[13],
        g[14], g[15], g[16],
    ];
    const FIX_EFLAGS: u64 = 0x50DD5;
    r.eflags = (old_flags & !FIX_EFLAGS) | (g[17] & FIX_EFLAGS);
    if r.rip >= sentry_systrap::GUEST_END {
        return Err(crate::Errno::EFAULT);
    }
    t.sigmask = mask & !UNBLOCKABLE;
    if fp_addr != 0 {
        if let Some(cur) = t.ctx.fpstate() {
            let mut fp = vec![0u8; cur.len()];
            mm.read(fp_addr, &mut fp)?;
            // Keep the host's XSAVE header fields the kernel checks.
            fp[464..512].copy_from_slice(&cur[464..512]);
            let n = fp.len();
            fp[n - 4..].copy_from_slice(&cur[n - 4..]);
            t.ctx.set_fpstate(&fp);
        }
    }
    Ok(())
}

/// Reads the task's context as a `Context` (keeps imports honest).
#[allow(dead_code)]
fn _ctx(t: &TaskInner) -> &dyn Context {
    &*t.ctx
}
