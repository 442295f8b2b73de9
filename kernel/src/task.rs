//! Tasks (guest threads) and thread groups (guest processes).

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use parking_lot::Mutex;
use sentry_systrap::{AddressSpace, Context, Interrupter};

use crate::mm::Mm;
use crate::vfs::FdTable;

/// A syscall's saved progress while its task is blocked.
#[derive(Clone)]
pub enum Restart {
    /// Sleeping until the deadline.
    Sleep { deadline: Instant },
    /// Waiting on a futex (memory-file offset `key`).
    Futex {
        key: u64,
        waiter: Arc<crate::futex::Waiter>,
        deadline: Option<Instant>,
    },
    /// A blocking write that already moved `done` bytes.
    Write { done: usize },
    /// `rt_sigtimedwait` waiting until the deadline (None: forever).
    SigWait { deadline: Option<Instant> },
    /// `poll`/`select` waiting until the deadline (None: forever).
    Poll { deadline: Option<Instant> },
}

/// How a new task reaches the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Its context is stopped and ready: resume it.
    Resume,
    /// Its context is a new host thread that reports `Stop::Started` by
    /// itself: watch it.
    Watch,
    /// Already running.
    Running,
}

/// Scheduling state of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// In the guest or being served by a worker.
    Running,
    /// Parked on a wait source; not watched by any worker.
    Blocked,
    /// Woken, queued on a worker's ready queue.
    Ready,
    /// Gone.
    Dead,
}

pub(crate) struct Sched {
    pub state: RunState,
    /// A wake-up arrived while the task was still Running (about to block).
    pub wake_pending: bool,
}

/// A guest thread's state, locked by the worker serving it.
pub struct TaskInner {
    pub ctx: Box<dyn Context>,
    pub restart: Option<Restart>,
    /// How the task first reaches the guest.
    pub start: Start,
    pub clear_child_tid: u64,
    pub robust_list: (u64, u64),
    pub sigmask: u64,
    pub altstack: (u64, u64, u64),
    /// `sched_setaffinity` mask over application cores (0: all).
    pub affinity: u64,
    /// The mask to restore after the handler (set by rt_sigsuspend).
    pub saved_mask: Option<u64>,
    /// The current syscall parked at least once (a signal interrupts it).
    pub blocked: bool,
}

/// A guest thread.
pub struct Task {
    pub tid: i32,
    pub tg: Arc<ThreadGroup>,
    pub(crate) worker: AtomicUsize,
    pub(crate) sched: Mutex<Sched>,
    pub inner: Mutex<TaskInner>,
    pub interrupter: Arc<dyn Interrupter>,
    /// `comm`, as set by `prctl(PR_SET_NAME)`.
    pub name: Mutex<[u8; 16]>,
    /// CPU time used, split into guest (user) and sentry (system) time.
    pub cpu: Arc<crate::cpuclock::TaskCpu>,
    /// Whether the task counts as running for the kernel's cpu clock.
    pub(crate) on_clock: AtomicBool,
    /// Whether the cpu clock charges this task.
    pub(crate) clock_registered: AtomicBool,
    /// Signals queued for this thread.
    pub pending: Mutex<Vec<crate::signal::SigInfo>>,
    /// Set while `pending` may be non-empty: the cheap test before resuming.
    pub signal_hint: AtomicBool,
}

impl Task {
    pub fn new(
        tid: i32,
        tg: Arc<ThreadGroup>,
        ctx: Box<dyn Context>,
        worker: usize,
        start: Start,
    ) -> Arc<Task> {
        let interrupter = ctx.interrupter();
        let t = Arc::new(Task {
            tid,
            tg: tg.clone(),
            worker: AtomicUsize::new(worker),
            sched: Mutex::new(Sched {
                state: RunState::Running,
                wake_pending: false,
            }),
            inner: Mutex::new(TaskInner {
                ctx,
                restart: None,
                start,
                clear_child_tid: 0,
                robust_list: (0, 0),
                sigmask: 0,
                altstack: (0, 2, 0),
                affinity: 0,
                saved_mask: None,
                blocked: false,
            }),
            interrupter,
            name: Mutex::new([0; 16]),
            cpu: Arc::new(crate::cpuclock::TaskCpu::new()),
            on_clock: AtomicBool::new(false),
            clock_registered: AtomicBool::new(false),
            pending: Mutex::new(Vec::new()),
            signal_hint: AtomicBool::new(false),
        });
        tg.tasks.lock().push(Arc::downgrade(&t));
        t
    }

    pub fn state(&self) -> RunState {
        self.sched.lock().state
    }

    pub fn worker(&self) -> usize {
        self.worker.load(Ordering::Relaxed)
    }
}

/// Working directory and umask.
pub struct FsState {
    pub cwd: OwnedFd,
    pub cwd_path: Vec<u8>,
    pub umask: u32,
}

/// A process's children and the tasks waiting for them.
#[derive(Default)]
pub struct Children {
    pub pids: Vec<i32>,
    pub waiters: crate::pipe::WaitQueue,
}

/// A recorded signal action (delivery comes with the signals issue).
#[derive(Clone, Copy, Debug, Default)]
pub struct SigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// A guest process.
pub struct ThreadGroup {
    pub pid: i32,
    /// The host process the group's threads run in.
    pub address_space: Arc<dyn AddressSpace>,
    /// Parent's PID (0 for init); changes when orphans move to init.
    pub ppid: std::sync::atomic::AtomicI32,
    /// Process group ID.
    pub pgid: std::sync::atomic::AtomicI32,
    /// Session ID.
    pub sid: std::sync::atomic::AtomicI32,
    /// PIDs of children not yet reaped, and tasks waiting in wait4/waitid.
    pub children: Mutex<Children>,
    pub mm: Arc<Mm>,
    pub fds: Arc<FdTable>,
    pub fs: Mutex<FsState>,
    /// The executable's path as given to exec.
    pub exe: Vec<u8>,
    pub creds: crate::init::Credentials,
    /// File-creation mask and resource limits as given at creation.
    pub limits: crate::process::Limits,
    pub sigactions: Mutex<[SigAction; 64]>,
    pub exiting: AtomicBool,
    /// Stopped by job control (SIGSTOP, SIGTSTP, ...) until SIGCONT.
    pub stopped: AtomicBool,
    pub(crate) tasks: Mutex<Vec<Weak<Task>>>,
    /// CPU time of the group's threads that have exited.
    pub exited_cpu: Mutex<crate::cpuclock::CpuTimes>,
}

/// What a new thread group is made of (its PID and links are set by the kernel).
pub struct ThreadGroupParts {
    pub pid: i32,
    pub ppid: i32,
    /// Process group and session (a new process's own PID for init).
    pub pgid: i32,
    pub sid: i32,
    pub address_space: Arc<dyn AddressSpace>,
    pub mm: Arc<Mm>,
    pub fds: Arc<FdTable>,
    pub fs: FsState,
    pub exe: Vec<u8>,
    pub creds: crate::init::Credentials,
    pub limits: crate::process::Limits,
    pub sigactions: [SigAction; 64],
}

impl ThreadGroup {
    /// A thread group with no tasks yet.
    pub fn new(p: ThreadGroupParts) -> Arc<ThreadGroup> {
        Arc::new(ThreadGroup {
            pid: p.pid,
            address_space: p.address_space,
            ppid: std::sync::atomic::AtomicI32::new(p.ppid),
            pgid: std::sync::atomic::AtomicI32::new(p.pgid),
            sid: std::sync::atomic::AtomicI32::new(p.sid),
            children: Mutex::new(Children::default()),
            mm: p.mm,
            fds: p.fds,
            fs: Mutex::new(p.fs),
            exe: p.exe,
            creds: p.creds,
            limits: p.limits,
            sigactions: Mutex::new(p.sigactions),
            exiting: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
            exited_cpu: Mutex::new(Default::default()),
        })
    }

    /// Live tasks of the group.
    pub fn tasks(&self) -> Vec<Arc<Task>> {
        self.tasks
            .lock()
            .iter()
            .filter_map(|w| w.upgrade())
            .collect()
    }

    /// CPU time of the whole group: live threads plus exited ones.
    pub fn cpu_times(&self) -> crate::cpuclock::CpuTimes {
        let mut t = *self.exited_cpu.lock();
        for task in self.tasks() {
            if task.state() != RunState::Dead {
                t.add(task.cpu.times());
            }
        }
        t
    }
}
