//! The kernel's front door and its workers.
//!
//! [`Kernel`] owns the platform, the task table and one worker thread per
//! application core. A worker watches the tasks it resumed, polls their
//! contexts for stops, serves each stop (a syscall through the syscall
//! table, a fault, an interruption) and resumes the guest. A syscall that
//! would block returns [`Outcome::Block`]: the task leaves the worker's
//! watch list and is parked until a wake-up (a timer, host fd readiness)
//! puts it on its worker's ready queue, where the syscall runs again. So a
//! blocked guest never holds a worker.
//!
//! ```text
//!   ready queue --run--> dispatch --Return--> resume + watch --poll--> stop
//!        ^                   |                                          |
//!        |                 Block                                        |
//!        +--wake-- timers / poller <--park--+          dispatch <-------+
//! ```

use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use sentry_systrap::host::Epoll;
use sentry_systrap::{Platform, SpinController, Stop, WorkerBell};

use crate::errno::Errno;
use crate::init::{
    Credentials, FeatureSet, InitError, InitKernelArgs, IpcNamespace, Timekeeper, UserNamespace,
    UtsNamespace,
};
use crate::syscalls::{self, Outcome};
use crate::task::{RunState, Start, Task, ThreadGroup};

/// `pause` iterations a stub spins before sleeping when spinning is on.
const DEFAULT_STUB_SPIN: u32 = 20_000;

/// A job-control state change of a process, for its parent's wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobEvent {
    Stopped(i32),
    Continued,
}

/// Errors of `start` and friends.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LifecycleError {
    #[error("the kernel contains no tasks")]
    NoTasks,
    #[error("the kernel was already started")]
    AlreadyStarted,
}

/// The kernel acting for itself: root credentials and the root namespaces.
pub struct SupervisorContext {
    pub kernel: Weak<Kernel>,
    pub credentials: Credentials,
    pub uts: Arc<UtsNamespace>,
    pub ipc: Arc<IpcNamespace>,
}

/// How a guest process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

impl ExitStatus {
    /// The exit code a shell would show: the status, or 128 + signal.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c & 0xff,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }
}

/// Sentry-side options of a kernel (not part of the guest-visible machine).
#[derive(Clone, Debug)]
pub struct KernelConfig {
    /// Application cores: workers, and the CPUs guests see. Set by `init`
    /// from `InitKernelArgs::application_cores`.
    pub cpus: usize,
    /// Print every syscall in strace's format on stderr.
    pub strace: bool,
    /// Spin before sleeping in the handoff (false: sleep at once).
    pub spin: bool,
}

pub(crate) struct Worker {
    #[allow(dead_code)]
    pub index: usize,
    pub bell: Arc<dyn WorkerBell>,
    pub ready: Mutex<VecDeque<Arc<Task>>>,
    /// Set when `ready` may be non-empty: the worker's lock-free check.
    pub ready_hint: AtomicBool,
    /// The worker's spin controller found that spinning does not pay now.
    pub spin_off: AtomicBool,
}

/// The sandbox's kernel.
pub struct Kernel {
    /// The kernel itself, for wait queues that outlive a syscall.
    me: Weak<Kernel>,
    pub platform: Arc<dyn Platform>,
    pub config: KernelConfig,
    pub(crate) workers: Vec<Arc<Worker>>,
    pub(crate) tasks: Mutex<HashMap<i32, Arc<Task>>>,
    next_tid: AtomicI32,
    next_worker: AtomicU32,
    exit: Mutex<Option<ExitStatus>>,
    exit_cv: Condvar,
    exit_reason: Mutex<Option<String>>,
    shutdown: AtomicBool,
    timers: Timers,
    poller: Epoll,
    pub(crate) enosys_logged: Mutex<HashSet<u64>>,
    spin_rounds: u32,
    /// Host CPUs: spinning pays only while spinners fit on them.
    host_cpus: usize,
    /// Workers awake (serving or spinning), for the spin policy.
    awake_workers: AtomicUsize,
    /// Whether both sides currently spin before sleeping.
    spinning: AtomicBool,
    /// Workers whose spin controller has spinning off.
    workers_spin_off: AtomicUsize,
    /// Futex wait queues, keyed by memory-file offset.
    pub(crate) futexes: crate::futex::Futexes,
    pub features: FeatureSet,
    pub root_credentials: Credentials,
    pub root_user_namespace: Arc<UserNamespace>,
    pub root_uts_namespace: Arc<UtsNamespace>,
    pub root_ipc_namespace: Arc<IpcNamespace>,
    pub timekeeper: Arc<Timekeeper>,
    /// `getcpu` reports the host CPU of the serving worker.
    pub use_host_cores: bool,
    pub extra_auxv: Vec<(u64, u64)>,
    /// Tasks created before `start`, and whether it ran.
    lifecycle: Mutex<Lifecycle>,
    /// Pause nesting depth; workers serve nothing while it is non-zero.
    pause_depth: Mutex<u32>,
    paused: AtomicBool,
    pause_cv: Condvar,
    exit_error: Mutex<Option<String>>,
    unique_id: AtomicU64,
    inotify_cookie: AtomicU32,
    /// Ticks while any task runs; parked otherwise.
    pub cpu_clock: Arc<crate::cpuclock::CpuClock>,
    /// Live processes by PID (exec replaces the entry).
    pub(crate) processes: Mutex<HashMap<i32, Arc<ThreadGroup>>>,
    /// Exited processes not yet reaped by their parent: PID -> status.
    pub(crate) zombies: Mutex<HashMap<i32, ExitStatus>>,
    /// Stop/continue events not yet reported to the parent: PID -> event.
    pub(crate) job_events: Mutex<HashMap<i32, JobEvent>>,
    /// The ITIMER_REAL of each process: PID -> (next SIGALRM, interval).
    alarms: Mutex<HashMap<i32, (Instant, Duration)>>,
}

#[derive(Default)]
struct Lifecycle {
    started: bool,
    global_init: Option<Arc<ThreadGroup>>,
    waiting: Vec<Arc<Task>>,
}

#[derive(PartialEq, Eq)]
struct TimerEntry(Instant, i32);
impl Ord for TimerEntry {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.0.cmp(&self.0).then(o.1.cmp(&self.1))
    }
}
impl PartialOrd for TimerEntry {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

#[derive(Default)]
struct Timers {
    heap: Mutex<BinaryHeap<TimerEntry>>,
    cv: Condvar,
}

impl Kernel {
    /// Builds a kernel with no tasks on `platform` (gVisor's `Kernel.Init`):
    /// validates `args`, then starts the workers, timers and poller. Tasks
    /// run once `start` is called.
    pub fn init(
        platform: Arc<dyn Platform>,
        args: InitKernelArgs,
        config: KernelConfig,
    ) -> Result<Arc<Kernel>, InitError> {
        let features = args.feature_set.ok_or(InitError::NoFeatureSet)?;
        let timekeeper = args.timekeeper.ok_or(InitError::NoTimekeeper)?;
        let user_ns = args.root_user_namespace.ok_or(InitError::NoUserNamespace)?;
        if args.application_cores == 0 {
            return Err(InitError::NoApplicationCores);
        }
        let mut cores = args.application_cores;
        if args.use_host_cores {
            let min = crate::init::max_possible_cpu()? + 1;
            if cores < min {
                eprintln!(
                    "sentry: host cores in use: application cores raised from {cores} to {min}"
                );
                cores = min;
            }
        }
        let cpus = cores.clamp(1, sentry_systrap::MAX_WORKERS);
        platform.set_spin(if config.spin { DEFAULT_STUB_SPIN } else { 0 });
        let workers = (0..cpus)
            .map(|i| {
                Arc::new(Worker {
                    index: i,
                    bell: platform.bell(i),
                    ready: Mutex::new(VecDeque::new()),
                    ready_hint: AtomicBool::new(false),
                    spin_off: AtomicBool::new(false),
                })
            })
            .collect();
        let poller = Epoll::new().map_err(InitError::Threads)?;
        let cpu_clock = crate::cpuclock::CpuClock::try_new().map_err(InitError::Threads)?;
        let k = Arc::new_cyclic(|me| Kernel {
            me: me.clone(),
            platform: platform.clone(),
            config: KernelConfig {
                cpus,
                ..config.clone()
            },
            workers,
            tasks: Mutex::new(HashMap::new()),
            next_tid: AtomicI32::new(1),
            next_worker: AtomicU32::new(0),
            exit: Mutex::new(None),
            exit_cv: Condvar::new(),
            exit_reason: Mutex::new(None),
            shutdown: AtomicBool::new(false),
            timers: Timers::default(),
            poller,
            enosys_logged: Mutex::new(HashSet::new()),
            spin_rounds: if config.spin && platform.spin_pays() {
                4096
            } else {
                0
            },
            host_cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            awake_workers: AtomicUsize::new(0),
            spinning: AtomicBool::new(config.spin),
            workers_spin_off: AtomicUsize::new(0),
            futexes: Default::default(),
            features,
            root_credentials: args.root_credentials,
            root_user_namespace: user_ns,
            root_uts_namespace: args.root_uts_namespace,
            root_ipc_namespace: args.root_ipc_namespace,
            timekeeper,
            use_host_cores: args.use_host_cores,
            extra_auxv: args.extra_auxv,
            lifecycle: Mutex::new(Lifecycle::default()),
            pause_depth: Mutex::new(0),
            paused: AtomicBool::new(false),
            pause_cv: Condvar::new(),
            exit_error: Mutex::new(None),
            unique_id: AtomicU64::new(0),
            inotify_cookie: AtomicU32::new(0),
            cpu_clock,
            processes: Mutex::new(HashMap::new()),
            zombies: Mutex::new(HashMap::new()),
            alarms: Mutex::new(HashMap::new()),
            job_events: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&k);
        platform.set_death_hook(Box::new(move || {
            if let Some(k) = weak.upgrade() {
                k.reap_dead_address_spaces();
                for w in &k.workers {
                    w.bell.ring();
                }
            }
        }));
        let core_ids = core_affinity::get_core_ids().unwrap_or_default();
        for i in 0..cpus {
            let weak = Arc::downgrade(&k);
            let core = if core_ids.is_empty() {
                None
            } else {
                Some(core_ids[i % core_ids.len()])
            };
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    if let Some(c) = core {
                        if !core_affinity::set_for_current(c) {
                            eprintln!("sentry: could not pin worker {i} to CPU {}", c.id);
                        }
                    }
                    worker_main(weak, i)
                })
                .map_err(InitError::Threads)?;
        }
        let weak: Weak<Kernel> = Arc::downgrade(&k);
        std::thread::Builder::new()
            .name("timers".into())
            .spawn(move || timer_main(weak))
            .map_err(InitError::Threads)?;
        let weak: Weak<Kernel> = Arc::downgrade(&k);
        std::thread::Builder::new()
            .name("poller".into())
            .spawn(move || poller_main(weak))
            .map_err(InitError::Threads)?;
        Ok(k)
    }

    pub(crate) fn alloc_tid(&self) -> i32 {
        self.next_tid.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a new thread whose context reports `Started` by itself.
    pub(crate) fn start_thread(&self, task: Arc<Task>) {
        self.tasks.lock().insert(task.tid, task.clone());
        task.sched.lock().state = RunState::Ready;
        self.enqueue(task);
    }

    pub(crate) fn pick_worker(&self) -> usize {
        (self.next_worker.fetch_add(1, Ordering::Relaxed) as usize) % self.workers.len()
    }

    /// Registers a new process's first task; it enters the guest now if the
    /// kernel runs, else at `start`. The first process becomes global init.
    pub(crate) fn start_task(&self, task: Arc<Task>) {
        self.tasks.lock().insert(task.tid, task.clone());
        self.processes.lock().insert(task.tg.pid, task.tg.clone());
        let mut lc = self.lifecycle.lock();
        if lc.global_init.is_none() {
            lc.global_init = Some(task.tg.clone());
        }
        if !lc.started {
            lc.waiting.push(task);
            return;
        }
        drop(lc);
        task.sched.lock().state = RunState::Ready;
        self.enqueue(task);
    }

    /// Starts the tasks created so far (gVisor's `Kernel.Start`).
    pub fn start(&self) -> Result<(), LifecycleError> {
        let mut lc = self.lifecycle.lock();
        if lc.global_init.is_none() {
            return Err(LifecycleError::NoTasks);
        }
        if lc.started {
            return Err(LifecycleError::AlreadyStarted);
        }
        lc.started = true;
        for t in std::mem::take(&mut lc.waiting) {
            t.sched.lock().state = RunState::Ready;
            self.enqueue(t);
        }
        Ok(())
    }

    /// The first process created (PID 1), if any.
    pub fn global_init(&self) -> Option<Arc<ThreadGroup>> {
        self.lifecycle.lock().global_init.clone()
    }

    /// Application cores (the CPUs guests see).
    pub fn application_cores(&self) -> usize {
        self.config.cpus
    }

    /// Kills every process with `status`; the sandbox ends with it.
    pub fn kill(&self, status: ExitStatus) {
        let tgs = self.thread_groups();
        // Unpause first so that killed processes can be reaped.
        if self.paused.load(Ordering::SeqCst) {
            for tg in &tgs {
                tg.address_space.signal(libc::SIGCONT);
            }
        }
        self.finish(status);
        for tg in tgs {
            self.exit_group(&tg, status);
        }
    }

    /// Stops all guest execution; nests (each `pause` needs an `unpause`).
    /// Paused guests make no progress and use no CPU.
    pub fn pause(&self) {
        let mut depth = self.pause_depth.lock();
        *depth += 1;
        if *depth > 1 {
            return;
        }
        self.paused.store(true, Ordering::SeqCst);
        for w in &self.workers {
            w.bell.ring();
        }
        for tg in self.thread_groups() {
            tg.address_space.signal(libc::SIGSTOP);
        }
    }

    /// Undoes one `pause`; guests run again when the last one is undone.
    pub fn unpause(&self) {
        let mut depth = self.pause_depth.lock();
        match *depth {
            0 => panic!("Kernel::unpause without a matching pause"),
            1 => {
                *depth = 0;
                for tg in self.thread_groups() {
                    tg.address_space.signal(libc::SIGCONT);
                }
                self.paused.store(false, Ordering::SeqCst);
                self.pause_cv.notify_all();
                for w in &self.workers {
                    w.bell.ring();
                }
            }
            _ => *depth -= 1,
        }
    }

    /// Whether the kernel is paused.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    fn thread_groups(&self) -> Vec<Arc<ThreadGroup>> {
        let tasks = self.tasks.lock();
        let mut v: Vec<Arc<ThreadGroup>> = Vec::new();
        for t in tasks.values() {
            if !v.iter().any(|g| Arc::ptr_eq(g, &t.tg)) {
                v.push(t.tg.clone());
            }
        }
        v
    }

    /// A signal from outside the sandbox (the CLI forwards SIGINT, SIGTERM
    /// and SIGHUP here), sent to global init like any other signal: its
    /// handler runs, or its disposition applies.
    pub fn send_external_signal(&self, signo: i32) {
        let Some(init) = self.global_init() else {
            return;
        };
        if !(1..=64).contains(&signo) {
            return;
        }
        let info = crate::signal::SigInfo {
            signo,
            code: crate::signal::SI_KERNEL,
            ..Default::default()
        };
        self.signal_group(&init, info);
    }

    /// The first error recorded with `set_exit_error`.
    pub fn exit_error(&self) -> Option<String> {
        self.exit_error.lock().clone()
    }

    /// Records an error that ends the sandbox; the first one wins.
    pub fn set_exit_error(&self, err: impl Into<String>) {
        let mut e = self.exit_error.lock();
        if e.is_none() {
            *e = Some(err.into());
        }
    }

    /// A unique, non-zero identifier. Panics if the 64-bit counter wraps.
    pub fn unique_id(&self) -> u64 {
        let id = self
            .unique_id
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_add(1);
        assert!(id != 0, "unique identifier generator wrapped around");
        id
    }

    /// An inotify move cookie; never 0, also across wrap-around.
    pub fn generate_inotify_cookie(&self) -> u32 {
        loop {
            let id = self
                .inotify_cookie
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_add(1);
            if id != 0 {
                return id;
            }
        }
    }

    /// A context for work the kernel does on its own behalf (not for a task).
    pub fn supervisor_context(self: &Arc<Self>) -> SupervisorContext {
        SupervisorContext {
            kernel: Arc::downgrade(self),
            credentials: self.root_credentials,
            uts: self.root_uts_namespace.clone(),
            ipc: self.root_ipc_namespace.clone(),
        }
    }

    #[cfg(test)]
    pub(crate) fn set_id_counters_for_test(&self, unique: u64, cookie: u32) {
        self.unique_id.store(unique, Ordering::Relaxed);
        self.inotify_cookie.store(cookie, Ordering::Relaxed);
    }

    fn enqueue(&self, task: Arc<Task>) {
        let w = &self.workers[task.worker() % self.workers.len()];
        w.ready.lock().push_back(task);
        w.ready_hint.store(true, Ordering::Release);
        w.bell.ring();
    }

    /// Wakes a blocked task (spurious wake-ups are harmless: syscalls re-check).
    pub fn wake(&self, task: &Arc<Task>) {
        let mut s = task.sched.lock();
        match s.state {
            RunState::Blocked => {
                s.state = RunState::Ready;
                drop(s);
                self.enqueue(task.clone());
            }
            RunState::Running => s.wake_pending = true,
            _ => {}
        }
    }

    /// The task runs (in the guest or in a worker): it counts for the cpu clock.
    fn mark_running(&self, task: &Task) {
        if !task.on_clock.swap(true, Ordering::AcqRel) {
            if !task.clock_registered.swap(true, Ordering::Relaxed) {
                self.cpu_clock.register(&task.cpu);
            }
            self.cpu_clock.task_running();
        }
    }

    /// The task blocked or ended.
    fn mark_stopped(&self, task: &Task) {
        task.cpu.stop();
        if task.on_clock.swap(false, Ordering::AcqRel) {
            self.cpu_clock.task_stopped();
        }
    }

    /// Publishes worker `w`'s spin verdict: nobody spins while any worker's
    /// controller has turned spinning off.
    fn publish_spin_verdict(&self, w: &Worker, spin: &SpinController) {
        let off = spin.is_off();
        if w.spin_off.load(Ordering::Relaxed) != off {
            w.spin_off.store(off, Ordering::Relaxed);
            if off {
                self.workers_spin_off.fetch_add(1, Ordering::Relaxed);
            } else {
                self.workers_spin_off.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// The spin policy: spin (both the stubs and the workers) only while
    /// every spinner can have a host CPU of its own, that is while running
    /// guest threads plus awake workers fit on the host's CPUs, and while no
    /// worker's controller found that spinning does not pay. Past that, a
    /// spinner only steals the CPU the other side of its handoff needs, so
    /// both sides sleep at once instead. Returns whether spinning is on.
    fn update_spin_policy(&self) -> bool {
        if self.spin_rounds == 0 {
            return false;
        }
        let demand = self.cpu_clock.running() + self.awake_workers.load(Ordering::Relaxed);
        let want = demand <= self.host_cpus && self.workers_spin_off.load(Ordering::Relaxed) == 0;
        if self.spinning.load(Ordering::Relaxed) != want {
            self.spinning.store(want, Ordering::Relaxed);
            self.platform
                .set_spin(if want { DEFAULT_STUB_SPIN } else { 0 });
        }
        want
    }

    /// Ticks of the kernel's cpu clock (lock-free).
    pub fn cpu_clock_now(&self) -> u64 {
        self.cpu_clock.now()
    }

    /// A task is gone: stop its clocks and keep its CPU time in its group.
    pub(crate) fn retire(&self, task: &Task) {
        self.mark_stopped(task);
        task.tg.exited_cpu.lock().add(task.cpu.times());
    }

    fn park(&self, task: &Arc<Task>, deadline: Option<Instant>) {
        self.mark_stopped(task);
        if let Some(d) = deadline {
            self.timers.heap.lock().push(TimerEntry(d, task.tid));
            self.timers.cv.notify_one();
        }
        let mut s = task.sched.lock();
        if s.state == RunState::Dead {
            return;
        }
        if s.wake_pending {
            s.wake_pending = false;
            s.state = RunState::Ready;
            drop(s);
            self.enqueue(task.clone());
        } else {
            s.state = RunState::Blocked;
        }
    }

    /// A weak handle on the kernel (for wait queues).
    pub fn weak(&self) -> Weak<Kernel> {
        self.me.clone()
    }

    /// Wakes `task` when host fd `fd` is readable (`write`: writable).
    pub(crate) fn wait_fd(&self, task: &Arc<Task>, fd: i32, write: bool) -> Result<(), Errno> {
        let ev = if write { libc::POLLOUT } else { libc::POLLIN };
        self.wait_fd_events(task, fd, ev)
    }

    /// Wakes `task` when host fd `fd` has any of the `poll` events
    /// `events` (POLLIN, POLLOUT, POLLPRI), or hangs up.
    pub(crate) fn wait_fd_events(
        &self,
        task: &Arc<Task>,
        fd: i32,
        events: i16,
    ) -> Result<(), Errno> {
        let mut ev = 0u32;
        if events & (libc::POLLIN | libc::POLLRDNORM) != 0 {
            ev |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        }
        if events & (libc::POLLOUT | libc::POLLWRNORM) != 0 {
            ev |= libc::EPOLLOUT as u32;
        }
        if events & libc::POLLPRI != 0 {
            ev |= libc::EPOLLPRI as u32;
        }
        self.poller
            .arm(fd, ev | libc::EPOLLHUP as u32, task.tid as u64)
            .map_err(Errno::from)
    }

    /// Ends a process: kills its address space and, for init, the sandbox.
    pub(crate) fn exit_group(&self, tg: &Arc<ThreadGroup>, status: ExitStatus) {
        if tg.exiting.swap(true, Ordering::SeqCst) {
            return;
        }
        let tasks = tg.tasks();
        for t in &tasks {
            let was = std::mem::replace(&mut t.sched.lock().state, RunState::Dead);
            if was != RunState::Dead {
                self.retire(t);
            }
            self.tasks.lock().remove(&t.tid);
        }
        tg.address_space.kill();
        if tg.pid == 1 {
            self.finish(status);
            return;
        }
        self.process_exited(tg, status);
    }

    /// Arms (or with None cancels) a process's SIGALRM; returns the time
    /// that was left on the previous alarm.
    pub(crate) fn set_alarm(&self, tg: &Arc<ThreadGroup>, at: Option<Instant>) -> Option<Duration> {
        self.set_itimer(tg, at.map(|t| (t, Duration::ZERO)))
            .map(|(left, _)| left)
    }

    /// Sets (or with None disarms) a process's ITIMER_REAL: the first
    /// SIGALRM at the given time, then every interval (zero: once). Returns
    /// the previous timer as (time left, interval).
    pub(crate) fn set_itimer(
        &self,
        tg: &Arc<ThreadGroup>,
        timer: Option<(Instant, Duration)>,
    ) -> Option<(Duration, Duration)> {
        let mut alarms = self.alarms.lock();
        let prev = alarms
            .remove(&tg.pid)
            .map(|(t, i)| (t.saturating_duration_since(Instant::now()), i));
        if let Some((at, interval)) = timer {
            alarms.insert(tg.pid, (at, interval));
            // The timer thread wakes on task deadlines; alarms use the
            // marker tid -pid.
            self.timers.heap.lock().push(TimerEntry(at, -tg.pid));
            self.timers.cv.notify_one();
        }
        prev
    }

    /// The ITIMER_REAL of a process as (time left, interval).
    pub(crate) fn get_itimer(&self, tg: &ThreadGroup) -> Option<(Duration, Duration)> {
        self.alarms
            .lock()
            .get(&tg.pid)
            .map(|(t, i)| (t.saturating_duration_since(Instant::now()), *i))
    }

    /// Stops a process (job control): its stub is SIGSTOPped, so no thread
    /// runs guest code until SIGCONT; the parent hears of it.
    pub(crate) fn stop_group(&self, tg: &Arc<ThreadGroup>, sig: i32) {
        if tg.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        tg.address_space.signal(libc::SIGSTOP);
        self.job_event(tg, JobEvent::Stopped(sig), crate::signal::CLD_STOPPED, sig);
    }

    /// Continues a stopped process.
    pub(crate) fn continue_group(&self, tg: &Arc<ThreadGroup>) {
        if !tg.stopped.swap(false, Ordering::SeqCst) {
            return;
        }
        tg.address_space.signal(libc::SIGCONT);
        self.job_event(
            tg,
            JobEvent::Continued,
            crate::signal::CLD_CONTINUED,
            libc::SIGCONT,
        );
    }

    fn job_event(&self, tg: &Arc<ThreadGroup>, ev: JobEvent, code: i32, status: i32) {
        self.job_events.lock().insert(tg.pid, ev);
        let ppid = tg.ppid.load(Ordering::Relaxed);
        // Look up first: a guard in the `if let` would be held for the whole
        // block, across the parent's children lock (which wait4 takes before
        // the process table) and the SIGCHLD delivery.
        let parent = self.processes.lock().get(&ppid).cloned();
        if let Some(parent) = parent {
            let w = parent.children.lock().waiters.take();
            crate::pipe::wake(w);
            let info = crate::signal::SigInfo {
                signo: libc::SIGCHLD,
                code,
                pid: tg.pid,
                uid: tg.creds.uid,
                status,
                ..Default::default()
            };
            self.signal_group(&parent, info);
        }
    }

    fn fire_alarm(&self, pid: i32) {
        let due = {
            let mut alarms = self.alarms.lock();
            match alarms.get(&pid).copied() {
                Some((at, interval)) if at <= Instant::now() => {
                    if interval.is_zero() {
                        alarms.remove(&pid);
                    } else {
                        let next = at + interval;
                        alarms.insert(pid, (next, interval));
                        self.timers.heap.lock().push(TimerEntry(next, -pid));
                        self.timers.cv.notify_one();
                    }
                    true
                }
                _ => false,
            }
        };
        let tg = self.processes.lock().get(&pid).cloned();
        if let (true, Some(tg)) = (due, tg) {
            let info = crate::signal::SigInfo {
                signo: libc::SIGALRM,
                code: crate::signal::SI_KERNEL,
                ..Default::default()
            };
            self.signal_group(&tg, info);
        }
    }

    /// A stub process died without the kernel ending it (killed from
    /// outside, or it broke): its process dies of SIGKILL, even if all its
    /// threads are parked where no worker would notice.
    fn reap_dead_address_spaces(&self) {
        for tg in self.thread_groups() {
            if tg.address_space.is_dead() && !tg.exiting.load(Ordering::SeqCst) {
                let why = format!(
                    "the stub process of guest pid {} (host pid {}) died unexpectedly",
                    tg.pid,
                    tg.address_space.host_pid()
                );
                if tg.pid == 1 {
                    self.set_exit_reason(why);
                } else {
                    eprintln!("sentry: {why}; the guest process is killed");
                }
                self.exit_group(&tg, ExitStatus::Signaled(libc::SIGKILL));
            }
        }
    }

    /// Makes an exited process a zombie for its parent, wakes the parent's
    /// waiters and hands the process's own children to init.
    fn process_exited(&self, tg: &Arc<ThreadGroup>, status: ExitStatus) {
        {
            let mut procs = self.processes.lock();
            if procs.get(&tg.pid).is_some_and(|p| Arc::ptr_eq(p, tg)) {
                procs.remove(&tg.pid);
            }
        }
        let orphans = std::mem::take(&mut tg.children.lock().pids);
        let init = self.processes.lock().get(&1).cloned();
        if let Some(init) = &init {
            for pid in &orphans {
                if let Some(c) = self.processes.lock().get(pid) {
                    c.ppid.store(1, Ordering::Relaxed);
                }
            }
            let mut ch = init.children.lock();
            ch.pids.extend(orphans);
            let w = ch.waiters.take();
            drop(ch);
            crate::pipe::wake(w);
        }
        let ppid = tg.ppid.load(Ordering::Relaxed);
        if ppid == 0 {
            return;
        }
        self.zombies.lock().insert(tg.pid, status);
        // Look up first: a guard in the `if let` would be held for the whole
        // block, across the parent's children lock (which wait4 takes before
        // the process table) and the SIGCHLD delivery.
        let parent = self.processes.lock().get(&ppid).cloned();
        if let Some(parent) = parent {
            let w = parent.children.lock().waiters.take();
            crate::pipe::wake(w);
            let (code, st) = match status {
                ExitStatus::Exited(c) => (crate::signal::CLD_EXITED, c),
                ExitStatus::Signaled(s) => (crate::signal::CLD_KILLED, s),
            };
            let info = crate::signal::SigInfo {
                signo: libc::SIGCHLD,
                code,
                pid: tg.pid,
                uid: tg.creds.uid,
                status: st,
                ..Default::default()
            };
            self.signal_group(&parent, info);
        }
    }

    /// Records the sandbox's end and wakes `wait_exited`.
    pub(crate) fn finish(&self, status: ExitStatus) {
        let mut e = self.exit.lock();
        if e.is_none() {
            *e = Some(status);
        }
        self.exit_cv.notify_all();
    }

    /// Records why the sandbox ended abnormally (shown by the CLI).
    pub(crate) fn set_exit_reason(&self, why: String) {
        let mut r = self.exit_reason.lock();
        if r.is_none() {
            *r = Some(why);
        }
    }

    /// Why the sandbox ended abnormally, if it did.
    pub fn exit_reason(&self) -> Option<String> {
        self.exit_reason.lock().clone()
    }

    /// Blocks until init exits; returns its status.
    pub fn wait_exited(&self) -> ExitStatus {
        let mut e = self.exit.lock();
        while e.is_none() {
            self.exit_cv.wait(&mut e);
        }
        e.unwrap_or(ExitStatus::Exited(0))
    }

    /// Kills every guest process and stops the workers.
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        let tasks: Vec<Arc<Task>> = self.tasks.lock().values().cloned().collect();
        for t in tasks {
            t.tg.address_space.kill();
        }
        for w in &self.workers {
            w.bell.ring();
        }
        self.timers.cv.notify_all();
    }

    fn task(&self, tid: i32) -> Option<Arc<Task>> {
        self.tasks.lock().get(&tid).cloned()
    }

    /// A live task by guest TID.
    pub fn task_by_tid(&self, tid: i32) -> Option<Arc<Task>> {
        self.task(tid)
    }

    /// The CPU `getcpu` reports for a task: its worker, a virtual CPU in
    /// `[0, cpus)`.
    pub fn current_cpu(&self, task: &Task) -> u32 {
        if self.use_host_cores {
            return sentry_systrap::host::getcpu();
        }
        (task.worker() % self.workers.len()) as u32
    }

    /// Serves one stop of a task; returns whether the worker keeps watching it.
    fn handle_stop(&self, task: &Arc<Task>, stop: Stop) -> bool {
        match stop {
            Stop::Syscall { .. } => self.run_syscall(task),
            Stop::Started | Stop::Interrupted => {
                if task.tg.exiting.load(Ordering::SeqCst) {
                    return false;
                }
                self.resume(task)
            }
            Stop::Fault { signo, addr, code } => {
                let handled = {
                    let act = task.tg.sigactions.lock()[signo as usize - 1];
                    let blocked = task.inner.lock().sigmask & (1u64 << (signo - 1)) != 0;
                    act.handler > crate::signal::SIG_IGN && !blocked
                };
                if handled {
                    let info = crate::signal::SigInfo {
                        signo,
                        code,
                        addr,
                        ..Default::default()
                    };
                    task.pending.lock().push(info);
                    task.signal_hint.store(true, Ordering::Release);
                    return self.resume(task);
                }
                if self.config.strace {
                    eprintln!(
                        "[pid {}] --- signal {signo} (fault at {addr:#x}) ---",
                        task.tg.pid
                    );
                    eprintln!("[pid {}] +++ killed by signal {signo} +++", task.tg.pid);
                }
                self.exit_group(&task.tg, ExitStatus::Signaled(signo));
                false
            }
            Stop::Died => {
                if !task.tg.exiting.load(Ordering::SeqCst) {
                    self.set_exit_reason(format!(
                        "the guest's stub process (host pid {}) died unexpectedly",
                        task.tg.address_space.host_pid()
                    ));
                    self.exit_group(&task.tg, ExitStatus::Signaled(libc::SIGKILL));
                }
                false
            }
        }
    }

    fn resume(&self, task: &Arc<Task>) -> bool {
        let mut inner = task.inner.lock();
        if task.signal_hint.load(Ordering::Acquire)
            && self.deliver_signals(task, &mut inner) == crate::signal::Delivered::Killed
        {
            return false;
        }
        match inner.ctx.resume() {
            Ok(()) => {
                task.cpu.enter_user();
                true
            }
            Err(_) => {
                drop(inner);
                self.handle_stop(task, Stop::Died)
            }
        }
    }

    /// Runs (or re-runs) the syscall in the task's registers.
    fn run_syscall(&self, task: &Arc<Task>) -> bool {
        if task.tg.exiting.load(Ordering::SeqCst) {
            return false;
        }
        let mut inner = task.inner.lock();
        let out = if inner.blocked && Self::has_deliverable(task, inner.sigmask) {
            // A signal interrupts the parked syscall.
            self.interrupt_syscall(task, &mut inner)
        } else {
            syscalls::dispatch(self, task, &mut inner)
        };
        // A signal that is already deliverable ends a call about to block.
        let out = match out {
            Outcome::Block { .. } if Self::has_deliverable(task, inner.sigmask) => {
                self.interrupt_syscall(task, &mut inner)
            }
            o => o,
        };
        let out = match out {
            Outcome::Return(v) => {
                inner.ctx.set_syscall_return(v as u64);
                Outcome::Resume
            }
            o => o,
        };
        match out {
            Outcome::Return(_) | Outcome::Resume => {
                inner.blocked = false;
                if task.signal_hint.load(Ordering::Acquire)
                    && self.deliver_signals(task, &mut inner) == crate::signal::Delivered::Killed
                {
                    return false;
                }
                if inner.ctx.resume().is_ok() {
                    task.cpu.enter_user();
                    return true;
                }
                drop(inner);
                self.handle_stop(task, Stop::Died)
            }
            Outcome::Block { deadline } => {
                inner.blocked = true;
                inner.ctx.will_block();
                PARKED.with(|p| p.set(p.get() + 1));
                drop(inner);
                self.park(task, deadline);
                false
            }
            Outcome::Exited => false,
        }
    }

    /// Ends a parked syscall because a signal arrived: EINTR, or a restart
    /// of the same call after the handler when it has SA_RESTART.
    fn interrupt_syscall(&self, task: &Arc<Task>, t: &mut crate::task::TaskInner) -> Outcome {
        if let Some(crate::task::Restart::Futex { key, waiter, .. }) = t.restart.take() {
            if self.futexes.cancel(key, &waiter) {
                return Outcome::Return(0); // it was woken after all
            }
        }
        t.restart = None;
        let (nr, _) = t.ctx.syscall_args();
        let sig = task
            .pending
            .lock()
            .iter()
            .find(|i| (1u64 << (i.signo - 1)) & t.sigmask == 0)
            .map(|i| i.signo);
        let restartable = matches!(
            nr as i64,
            libc::SYS_read
                | libc::SYS_write
                | libc::SYS_readv
                | libc::SYS_writev
                | libc::SYS_pread64
                | libc::SYS_pwrite64
                | libc::SYS_wait4
                | libc::SYS_waitid
                | libc::SYS_futex
                | libc::SYS_sendfile
        );
        let sa_restart = sig.is_some_and(|s| {
            task.tg.sigactions.lock()[s as usize - 1].flags & crate::signal::SA_RESTART != 0
        });
        if restartable && sa_restart {
            // Back to the `syscall` instruction, with the number in rax.
            let r = t.ctx.regs_mut();
            r.rip -= 2;
            r.rax = nr;
            return Outcome::Resume;
        }
        Outcome::Return(-(Errno::EINTR.0 as i64))
    }

    /// A task from the ready queue: first entry, or a woken syscall.
    fn run_ready(&self, task: &Arc<Task>) -> bool {
        {
            let mut s = task.sched.lock();
            if s.state == RunState::Dead {
                return false;
            }
            s.state = RunState::Running;
            s.wake_pending = false;
        }
        self.mark_running(task);
        task.cpu.enter_sys();
        let start = std::mem::replace(&mut task.inner.lock().start, Start::Running);
        match start {
            Start::Resume => self.resume(task),
            Start::Watch => true,
            Start::Running => self.run_syscall(task),
        }
    }
}

thread_local! {
    /// Syscalls this worker parked since its loop last looked.
    static PARKED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

fn worker_main(weak: Weak<Kernel>, index: usize) {
    let mut watched: Vec<Arc<Task>> = Vec::new();
    let mut spin = SpinController::default();
    loop {
        // Hold the kernel only while awake, so dropping it ends the worker.
        let Some(k) = weak.upgrade() else { break };
        let w = k.workers[index].clone();
        k.awake_workers.fetch_add(1, Ordering::Relaxed);
        let token = serve_until_idle(&k, &w, &mut watched, &mut spin);
        k.awake_workers.fetch_sub(1, Ordering::Relaxed);
        drop(k);
        match token {
            Some(token) => w.bell.sleep(token, Duration::from_millis(1000)),
            None => break,
        }
    }
    if std::env::var_os("SENTRY_SPIN_STATS").is_some() {
        eprintln!("sentry: worker {index} spin: {:?}", spin.stats());
    }
}

/// Serves ready and watched tasks until nothing happened for the spin budget
/// (or at once when `spin` says spinning does not pay now); returns the bell
/// token to sleep on (None: shut down).
fn serve_until_idle(
    k: &Arc<Kernel>,
    w: &Worker,
    watched: &mut Vec<Arc<Task>>,
    spin: &mut SpinController,
) -> Option<u32> {
    let mut idle: u32 = 0;
    let mut armed: Option<u32> = None;
    // Whether the current idle stretch spins (decided when it starts).
    let mut spinning = false;
    loop {
        if k.shutdown.load(Ordering::Relaxed) {
            return None;
        }
        if k.paused.load(Ordering::Relaxed) {
            let mut depth = k.pause_depth.lock();
            while *depth > 0 && !k.shutdown.load(Ordering::Relaxed) {
                k.pause_cv.wait_for(&mut depth, Duration::from_millis(500));
            }
            continue;
        }
        let mut busy = false;
        loop {
            if !w.ready_hint.load(Ordering::Acquire) {
                break;
            }
            let next = {
                let mut q = w.ready.lock();
                let t = q.pop_front();
                if q.is_empty() {
                    w.ready_hint.store(false, Ordering::Release);
                }
                t
            };
            let Some(t) = next else { break };
            busy = true;
            if run_guarded(k, &t, |k, t| k.run_ready(t)) {
                watched.push(t);
            }
        }
        let mut i = 0;
        while i < watched.len() {
            let t = &watched[i];
            // A task of a dying process stops with Died once its stub is gone.
            let stop = if t.interrupter.may_have_stopped() {
                t.inner.lock().ctx.poll()
            } else {
                None
            };
            if let Some(stop) = stop {
                busy = true;
                t.cpu.enter_sys();
                let keep =
                    t.state() != RunState::Dead && run_guarded(k, t, |k, t| k.handle_stop(t, stop));
                if !keep {
                    watched.swap_remove(i);
                    continue;
                }
            }
            i += 1;
        }
        if busy {
            if spinning && idle > 0 && armed.is_none() {
                spin.record(true);
            }
            // A parked syscall means a sleeping stub to wake later, likely on
            // an idle CPU: what a spinning handoff saves is lost many times
            // over. Weigh each as two missed spins (a pipe ping-pong then
            // runs paired and without spinning, at a third of the cost).
            let parked = PARKED.with(|p| p.replace(0));
            if parked > 0 && !spin.is_off() {
                for _ in 0..2 * parked {
                    spin.record(false);
                }
                k.publish_spin_verdict(w, spin);
            }
            idle = 0;
            armed = None;
            continue;
        }
        if armed.is_some() {
            // Nothing arrived after the bell was armed: sleep.
            return armed;
        }
        if idle == 0 {
            spinning = k.spin_rounds > 0 && spin.should_spin();
            k.publish_spin_verdict(w, spin);
        }
        idle += 1;
        if !spinning || idle >= k.spin_rounds || !k.update_spin_policy() {
            if spinning && idle >= k.spin_rounds {
                spin.record(false);
                k.publish_spin_verdict(w, spin);
            }
            armed = Some(w.bell.prepare());
        } else {
            std::hint::spin_loop();
        }
    }
}

/// Runs `f`, turning a panic in the sentry into the death of that guest
/// process rather than of the sandbox's workers.
fn run_guarded(
    k: &Arc<Kernel>,
    t: &Arc<Task>,
    f: impl FnOnce(&Kernel, &Arc<Task>) -> bool,
) -> bool {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(k, t))) {
        Ok(keep) => keep,
        Err(_) => {
            k.set_exit_reason(format!("internal error while serving task {}", t.tid));
            k.exit_group(&t.tg, ExitStatus::Signaled(libc::SIGKILL));
            false
        }
    }
}

fn timer_main(k: Weak<Kernel>) {
    loop {
        let Some(kernel) = k.upgrade() else { return };
        if kernel.shutdown.load(Ordering::Relaxed) {
            return;
        }
        let mut heap = kernel.timers.heap.lock();
        let now = Instant::now();
        let mut due = Vec::new();
        while heap.peek().is_some_and(|e| e.0 <= now) {
            if let Some(e) = heap.pop() {
                due.push(e.1);
            }
        }
        if due.is_empty() {
            let next = heap.peek().map(|e| e.0);
            let cv = &kernel.timers.cv;
            match next {
                Some(t) => {
                    cv.wait_until(&mut heap, t);
                }
                None => {
                    cv.wait_for(&mut heap, Duration::from_secs(1));
                }
            }
            continue;
        }
        drop(heap);
        for tid in due {
            if tid < 0 {
                kernel.fire_alarm(-tid);
            } else if let Some(t) = kernel.task(tid) {
                kernel.wake(&t);
            }
        }
    }
}

fn poller_main(k: Weak<Kernel>) {
    loop {
        let Some(kernel) = k.upgrade() else { return };
        if kernel.shutdown.load(Ordering::Relaxed) {
            return;
        }
        let ready = match kernel.poller.wait(1000) {
            Ok(r) => r,
            Err(_) => return,
        };
        for tid in ready {
            if let Some(t) = kernel.task(tid as i32) {
                kernel.wake(&t);
            }
        }
    }
}
