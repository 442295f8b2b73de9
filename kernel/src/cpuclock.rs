//! The kernel's CPU clock and per-task CPU-time accounting.
//!
//! Two independent pieces live here. [`CpuClock`] is the kernel-wide tick
//! counter (gVisor's `cpuClock`): a background thread named `cpu-clock`
//! adds one to an atomic counter every [`CLOCK_TICK`] while at least one task
//! is running, and parks on a condition variable (no timeout, so an idle
//! sandbox costs nothing) once none is. Workers report each task that starts
//! or stops running with [`CpuClock::task_running`] /
//! [`CpuClock::task_stopped`]; these are single atomic read-modify-writes,
//! and only the 0→1 transition takes the park lock to wake the ticker.
//! Anything that wants a cheap, coarse "CPU time" reads [`CpuClock::now`],
//! a single atomic load. [`TaskCpu`] is the precise per-task account: the
//! worker serving a task records state transitions (guest code running =
//! user time, a syscall or fault being served = system time, blocked or
//! exited = neither) and any thread may read the accumulated `(user, system)`
//! nanoseconds with [`TaskCpu::times`]; a thread group sums its tasks' (and
//! its reaped children's) times into a [`CpuTimes`], which is what `times(2)`,
//! `getrusage(2)` and `CLOCK_*_CPUTIME_ID` report.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Length of one clock tick.
pub const CLOCK_TICK: Duration = Duration::from_millis(10);

/// [`CLOCK_TICK`] in nanoseconds.
const TICK_NS: u64 = {
    let ns = CLOCK_TICK.as_nanos();
    assert!(ns > 0 && ns <= u64::MAX as u128);
    ns as u64
};

/// The kernel-wide CPU clock: ticks elapsed while at least one task ran.
///
/// # Memory orderings
///
/// * `ticks` is written only by the ticker thread (`fetch_add`) and read by
///   [`now`](Self::now); both are `Relaxed`. The counter publishes no other
///   data, and read-read coherence on a single location already guarantees
///   that every thread sees it non-decreasing.
/// * `running` is changed with `Relaxed` read-modify-writes. All RMWs on one
///   location form a single total order and each reads the value just before
///   it, so exactly one [`task_running`](Self::task_running) call observes
///   each 0→1 transition, whatever ordering is used. The hand-off with
///   the ticker does not rely on the atomic's ordering but on the park
///   mutex: the ticker re-reads `running` *under the lock* before parking,
///   and the caller that made the 0→1 transition takes the same lock before
///   clearing `parked` and notifying. Either that caller's critical section
///   comes first (then its increment happens-before the ticker's load, which
///   therefore sees a non-zero count and does not park), or the ticker's
///   comes first (then the caller finds `parked` set, clears it and
///   notifies). No wake-up can be lost.
/// * The 1→0 transition takes no lock: the ticker notices a zero count at
///   its next tick and parks then. A stale non-zero read only costs one
///   extra tick; a stale zero read is re-checked under the lock.
pub struct CpuClock {
    /// Ticks elapsed while `running > 0`.
    ticks: AtomicU64,
    /// Number of tasks currently running.
    running: AtomicUsize,
    /// Where the ticker sleeps. Shared with the ticker thread, which must be
    /// able to wait there without keeping the clock itself alive.
    park: Arc<Park>,
    /// The ticker thread, joined on drop.
    ticker: Mutex<Option<JoinHandle<()>>>,
    /// Tasks charged at every tick, by the mode they are in.
    tasks: Mutex<Vec<Weak<TaskCpu>>>,
}

/// The ticker's parking spot.
struct Park {
    state: Mutex<ParkState>,
    /// Signalled when `parked` is cleared or `closed` is set.
    wake: Condvar,
}

#[derive(Default)]
struct ParkState {
    /// The ticker is (about to be) waiting for a task to start running.
    /// Set by the ticker, cleared by the 0→1 transition of `running`.
    parked: bool,
    /// The clock was dropped: the ticker must exit.
    closed: bool,
}

impl Park {
    /// Marks the ticker parked if `idle()` still holds under the lock.
    /// Returns whether it did.
    fn park_if(&self, idle: impl FnOnce() -> bool) -> bool {
        let mut state = self.state.lock();
        let park = idle();
        if park {
            state.parked = true;
        }
        park
    }

    /// Waits until the ticker is unparked. Returns `false` if the clock was
    /// closed instead.
    fn wait_unparked(&self) -> bool {
        let mut state = self.state.lock();
        while state.parked && !state.closed {
            self.wake.wait(&mut state);
        }
        !state.closed
    }

    /// Sleeps until `deadline`. Returns `false` if the clock was closed
    /// instead.
    fn sleep_until(&self, deadline: Instant) -> bool {
        let mut state = self.state.lock();
        while !state.closed {
            if self.wake.wait_until(&mut state, deadline).timed_out() {
                break;
            }
        }
        !state.closed
    }

    /// Clears `parked` and wakes the ticker if it was set.
    fn unpark(&self) {
        let mut state = self.state.lock();
        if state.parked {
            state.parked = false;
            self.wake.notify_one();
        }
    }

    /// Tells the ticker to exit.
    fn close(&self) {
        self.state.lock().closed = true;
        self.wake.notify_all();
    }
}

impl CpuClock {
    /// Starts the ticker thread (named "cpu-clock"); the thread holds only a
    /// Weak reference and exits when the clock is dropped.
    ///
    /// # Panics
    ///
    /// Panics if the thread cannot be spawned; see [`try_new`](Self::try_new).
    pub fn new() -> Arc<CpuClock> {
        Self::try_new().expect("failed to spawn the cpu-clock thread")
    }

    /// Like [`new`](Self::new), but returns the error if the ticker thread
    /// cannot be spawned.
    pub fn try_new() -> io::Result<Arc<CpuClock>> {
        let clock = Arc::new(CpuClock {
            ticks: AtomicU64::new(0),
            running: AtomicUsize::new(0),
            park: Arc::new(Park {
                state: Mutex::new(ParkState::default()),
                wake: Condvar::new(),
            }),
            ticker: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
        });
        let weak = Arc::downgrade(&clock);
        let park = Arc::clone(&clock.park);
        let handle = thread::Builder::new()
            .name("cpu-clock".into())
            .spawn(move || ticker_main(&weak, &park))?;
        *clock.ticker.lock() = Some(handle);
        Ok(clock)
    }

    /// Ticks elapsed while at least one task was running. Lock-free: one
    /// atomic load.
    #[inline]
    pub fn now(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// A task starts running guest code (or being served); the ticker runs
    /// while the count is > 0.
    #[inline]
    pub fn task_running(&self) {
        if self.running.fetch_add(1, Ordering::Relaxed) == 0 {
            self.park.unpark();
        }
    }

    /// A task stopped running (blocked, parked, exited).
    ///
    /// Calls must balance [`task_running`](Self::task_running); an extra call
    /// is a bug (it panics in debug builds and is ignored otherwise, so the
    /// count never wraps around).
    #[inline]
    pub fn task_stopped(&self) {
        let stopped = self
            .running
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        debug_assert!(
            stopped.is_ok(),
            "CpuClock::task_stopped without a running task"
        );
    }

    /// Number of tasks currently running.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Whether the ticker is parked (no task running) — for tests.
    pub fn is_parked(&self) -> bool {
        self.park.state.lock().parked
    }
}

impl fmt::Debug for CpuClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CpuClock")
            .field("ticks", &self.now())
            .field("running", &self.running())
            .finish_non_exhaustive()
    }
}

impl Drop for CpuClock {
    fn drop(&mut self) {
        self.park.close();
        if let Some(handle) = self.ticker.get_mut().take() {
            // The last reference may have been the one the ticker itself
            // upgraded for a moment; it then exits on its own right after
            // this returns, and joining would deadlock.
            if handle.thread().id() != thread::current().id() {
                // The ticker only ever blocks on the park, which is closed
                // now, so this returns promptly. A panic there is not ours
                // to propagate from a destructor.
                let _ = handle.join();
            }
        }
    }
}

/// The ticker thread. It holds the clock only through `clock` (upgraded
/// briefly, never across a wait) so dropping the last [`CpuClock`] handle
/// closes the park and ends the thread.
fn ticker_main(clock: &Weak<CpuClock>, park: &Park) {
    let mut next = Instant::now() + CLOCK_TICK;
    loop {
        // Park while no task is running.
        let Some(c) = clock.upgrade() else { return };
        let idle = c.running.load(Ordering::Relaxed) == 0
            && park.park_if(|| c.running.load(Ordering::Relaxed) == 0);
        // Dropped outside the park lock: this may be the last reference, and
        // `CpuClock::drop` takes that lock.
        drop(c);
        if idle {
            if !park.wait_unparked() {
                return;
            }
            next = Instant::now() + CLOCK_TICK;
        }

        if !park.sleep_until(next) {
            return;
        }
        let Some(c) = clock.upgrade() else { return };
        if c.running.load(Ordering::Relaxed) > 0 {
            c.ticks.fetch_add(1, Ordering::Relaxed);
            c.charge_tick();
        }
        drop(c);

        // Keep the tick phase. If the thread was held up for more than a
        // tick, the missed ticks are dropped rather than counted in a burst
        // (as gVisor does): the clock must not jump.
        next += CLOCK_TICK;
        let now = Instant::now();
        if next <= now {
            let late = now.duration_since(next).as_nanos() % u128::from(TICK_NS);
            next = now + (CLOCK_TICK - Duration::from_nanos(late as u64));
        }
    }
}

/// What a task is doing, for accounting.
const MODE_STOPPED: u8 = 0;
const MODE_USER: u8 = 1;
const MODE_SYS: u8 = 2;

/// A task's CPU time, built on the cpu clock (as gVisor's task accounting
/// is): the task only publishes what it is doing (one relaxed store per
/// transition, nothing else on the syscall path), and at every clock tick
/// the ticker charges one tick to each registered task that is running, as
/// user time when it runs guest code and as system time while the sentry
/// serves it. Times are therefore multiples of [`CLOCK_TICK`], like Linux
/// with tick-based accounting.
#[derive(Debug, Default)]
pub struct TaskCpu {
    mode: AtomicU8,
    user_ticks: AtomicU64,
    sys_ticks: AtomicU64,
}

impl TaskCpu {
    /// A stopped task with no time.
    pub fn new() -> TaskCpu {
        TaskCpu::default()
    }

    /// The task enters guest code (user time starts).
    #[inline]
    pub fn enter_user(&self) {
        self.mode.store(MODE_USER, Ordering::Relaxed);
    }

    /// The task stopped in the guest and the sentry serves it (system time).
    #[inline]
    pub fn enter_sys(&self) {
        self.mode.store(MODE_SYS, Ordering::Relaxed);
    }

    /// The task blocks or exits: it is charged nothing until it runs again.
    #[inline]
    pub fn stop(&self) {
        self.mode.store(MODE_STOPPED, Ordering::Relaxed);
    }

    /// (user, system) nanoseconds so far.
    pub fn times(&self) -> (u64, u64) {
        (
            self.user_ticks
                .load(Ordering::Relaxed)
                .saturating_mul(TICK_NS),
            self.sys_ticks
                .load(Ordering::Relaxed)
                .saturating_mul(TICK_NS),
        )
    }

    /// One tick in whatever mode the task is in.
    fn charge(&self) {
        match self.mode.load(Ordering::Relaxed) {
            MODE_USER => self.user_ticks.fetch_add(1, Ordering::Relaxed),
            MODE_SYS => self.sys_ticks.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }
}

impl CpuClock {
    /// Makes the ticker charge `task` from now on (until it is dropped).
    pub fn register(&self, task: &Arc<TaskCpu>) {
        self.tasks.lock().push(Arc::downgrade(task));
    }

    fn charge_tick(&self) {
        self.tasks.lock().retain(|t| match t.upgrade() {
            Some(t) => {
                t.charge();
                true
            }
            None => false,
        });
    }
}

#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuTimes {
    /// User time in nanoseconds.
    pub user_ns: u64,
    /// System time in nanoseconds.
    pub sys_ns: u64,
}

impl CpuTimes {
    /// Adds one task's `(user, system)` nanoseconds, as returned by
    /// [`TaskCpu::times`].
    pub fn add(&mut self, (user_ns, sys_ns): (u64, u64)) {
        self.user_ns = self.user_ns.saturating_add(user_ns);
        self.sys_ns = self.sys_ns.saturating_add(sys_ns);
    }

    /// User plus system time in nanoseconds.
    pub fn total_ns(&self) -> u64 {
        self.user_ns.saturating_add(self.sys_ns)
    }

    /// `(user, system)` in whole [`CLOCK_TICK`]s, rounded down: `clock_t`
    /// at 100 Hz, as `times(2)` reports it.
    pub fn to_ticks(&self) -> (u64, u64) {
        (self.user_ns / TICK_NS, self.sys_ns / TICK_NS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::AtomicBool;
    use std::sync::Barrier;

    /// The timing tests and the stress test would starve each other on a
    /// small machine; run them one at a time.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn tick_length() {
        assert_eq!(TICK_NS, 10_000_000);
    }

    #[test]
    fn starts_parked() {
        let _serial = SERIAL.lock();
        let clock = CpuClock::new();
        assert!(wait_for(Duration::from_millis(200), || clock.is_parked()));
        thread::sleep(Duration::from_millis(50));
        assert_eq!(clock.now(), 0);
        assert_eq!(clock.running(), 0);
    }

    #[test]
    fn advances_while_a_task_runs() {
        let _serial = SERIAL.lock();
        let clock = CpuClock::new();
        clock.task_running();
        assert_eq!(clock.running(), 1);
        assert!(!clock.is_parked());
        thread::sleep(Duration::from_millis(120));
        let ticks = clock.now();
        assert!((5..=20).contains(&ticks), "ticks = {ticks}");
        clock.task_stopped();
        assert_eq!(clock.running(), 0);
    }

    #[test]
    fn parks_when_no_task_runs() {
        let _serial = SERIAL.lock();
        let clock = CpuClock::new();
        clock.task_running();
        thread::sleep(Duration::from_millis(50));
        clock.task_stopped();
        assert!(
            wait_for(Duration::from_millis(200), || clock.is_parked()),
            "the ticker did not park"
        );
        let before = clock.now();
        assert!(before > 0);
        thread::sleep(Duration::from_millis(100));
        assert_eq!(clock.now(), before);

        // And it resumes on the next running task.
        clock.task_running();
        assert!(!clock.is_parked());
        assert!(wait_for(Duration::from_secs(1), || clock.now() > before));
        clock.task_stopped();
    }

    #[test]
    fn nested_running_counts() {
        let _serial = SERIAL.lock();
        let clock = CpuClock::new();
        clock.task_running();
        clock.task_running();
        assert_eq!(clock.running(), 2);
        clock.task_stopped();
        assert_eq!(clock.running(), 1);
        let before = clock.now();
        thread::sleep(Duration::from_millis(100));
        let ticks = clock.now() - before;
        assert!((3..=20).contains(&ticks), "ticks = {ticks}");
        assert!(!clock.is_parked());
        clock.task_stopped();
        assert_eq!(clock.running(), 0);
        assert!(wait_for(Duration::from_millis(200), || clock.is_parked()));
    }

    #[test]
    #[cfg_attr(debug_assertions, should_panic(expected = "without a running task"))]
    fn unbalanced_stop_does_not_wrap() {
        let clock = CpuClock::new();
        clock.task_stopped();
        assert_eq!(clock.running(), 0);
    }

    #[test]
    fn drop_ends_the_ticker() {
        for running in [false, true] {
            let clock = CpuClock::new();
            if running {
                clock.task_running();
                thread::sleep(Duration::from_millis(25));
            }
            let weak = Arc::downgrade(&clock);
            let started = Instant::now();
            drop(clock);
            // The ticker may have held a strong reference for an instant, in
            // which case it performs the drop itself right after.
            assert!(wait_for(Duration::from_secs(1), || weak.strong_count() == 0));
            assert!(started.elapsed() < Duration::from_secs(1));
        }
    }

    #[test]
    fn task_cpu_user_sys_split() {
        let _serial = SERIAL.lock();
        let clock = CpuClock::new();
        let cpu = Arc::new(TaskCpu::new());
        clock.register(&cpu);
        assert_eq!(cpu.times(), (0, 0));
        clock.task_running();
        cpu.enter_user();
        thread::sleep(Duration::from_millis(100));
        let (user, sys) = cpu.times();
        assert!((40_000_000..=200_000_000).contains(&user), "user = {user}");
        assert_eq!(sys, 0);
        cpu.enter_sys();
        thread::sleep(Duration::from_millis(60));
        cpu.stop();
        clock.task_stopped();
        let (user, sys) = cpu.times();
        assert!(user >= 40_000_000, "user = {user}");
        assert!(sys >= 20_000_000, "sys = {sys}");
        assert_eq!(user % TICK_NS, 0, "times are whole ticks");
        // A stopped task is charged nothing.
        thread::sleep(Duration::from_millis(50));
        assert_eq!(cpu.times(), (user, sys));
        // Dropped tasks leave the registry.
        drop(cpu);
        clock.task_running();
        thread::sleep(Duration::from_millis(30));
        clock.task_stopped();
        assert!(clock.tasks.lock().is_empty());
    }

    #[test]
    fn cpu_times_sums_and_ticks() {
        let mut total = CpuTimes::default();
        total.add((25_000_000, 9_999_999));
        total.add((5_000_000, 1));
        assert_eq!(
            total,
            CpuTimes {
                user_ns: 30_000_000,
                sys_ns: 10_000_000
            }
        );
        assert_eq!(total.total_ns(), 40_000_000);
        assert_eq!(total.to_ticks(), (3, 1));
        total.add((u64::MAX, 0));
        assert_eq!(total.user_ns, u64::MAX);
        assert_eq!(total.total_ns(), u64::MAX);
    }

    /// A small xorshift generator: the tests need no quality randomness.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn stress_transitions_and_readers() {
        const WRITERS: usize = 8;
        const READERS: usize = 3;
        const TRANSITIONS: usize = 10_000;

        let _serial = SERIAL.lock();
        let started = Instant::now();
        let clock = CpuClock::new();
        let tasks: Arc<Vec<Arc<TaskCpu>>> =
            Arc::new((0..WRITERS).map(|_| Arc::new(TaskCpu::new())).collect());
        for t in tasks.iter() {
            clock.register(t);
        }
        let done = Arc::new(AtomicBool::new(false));
        let barrier = Arc::new(Barrier::new(WRITERS + READERS));

        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                let (tasks, done, barrier) = (tasks.clone(), done.clone(), barrier.clone());
                thread::spawn(move || {
                    let mut last = vec![(0, 0); tasks.len()];
                    let mut last_total = CpuTimes::default();
                    let mut reads = 0u64;
                    barrier.wait();
                    // At least one full pass after the writers are done.
                    loop {
                        let finished = done.load(Ordering::Acquire);
                        let mut total = CpuTimes::default();
                        for (task, last) in tasks.iter().zip(&mut last) {
                            let (user, sys) = task.times();
                            assert!(user >= last.0, "user went back: {user} < {}", last.0);
                            assert!(sys >= last.1, "sys went back: {sys} < {}", last.1);
                            *last = (user, sys);
                            total.add((user, sys));
                        }
                        assert!(total.user_ns >= last_total.user_ns);
                        assert!(total.sys_ns >= last_total.sys_ns);
                        assert!(total.total_ns() >= last_total.total_ns());
                        last_total = total;
                        reads += 1;
                        if finished {
                            return (reads, last_total);
                        }
                        thread::yield_now();
                    }
                })
            })
            .collect();

        let writers: Vec<_> = (0..WRITERS)
            .map(|i| {
                let (tasks, clock, barrier) = (tasks.clone(), clock.clone(), barrier.clone());
                thread::spawn(move || {
                    let cpu = &tasks[i];
                    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1));
                    let mut running = false;
                    barrier.wait();
                    let begin = Instant::now();
                    for _ in 0..TRANSITIONS {
                        let r = rng.next();
                        match r % 3 {
                            0 => cpu.enter_user(),
                            1 => cpu.enter_sys(),
                            _ => cpu.stop(),
                        }
                        let now_running = r % 3 != 2;
                        if now_running && !running {
                            clock.task_running();
                        } else if !now_running && running {
                            clock.task_stopped();
                        }
                        running = now_running;
                        if r & 63 == 0 {
                            thread::yield_now();
                        }
                    }
                    cpu.stop();
                    if running {
                        clock.task_stopped();
                    }
                    let elapsed = begin.elapsed();
                    let (user, sys) = cpu.times();
                    // Ticks are charged while running; a task can gain at
                    // most one per tick that passed (plus the one in flight).
                    let elapsed_ns = u64::try_from(elapsed.as_nanos()).unwrap();
                    assert!(
                        user + sys <= elapsed_ns + 2 * TICK_NS,
                        "{user} + {sys} > {elapsed_ns} + 2 ticks"
                    );
                })
            })
            .collect();

        for writer in writers {
            writer.join().unwrap();
        }
        done.store(true, Ordering::Release);
        let final_times = tasks.iter().fold(CpuTimes::default(), |mut sum, task| {
            sum.add(task.times());
            sum
        });
        for reader in readers {
            let (reads, seen) = reader.join().unwrap();
            assert!(reads > 0);
            // Every task was stopped before `done`, so the last pass saw the
            // final totals.
            assert_eq!(seen, final_times);
        }

        assert_eq!(clock.running(), 0);
        assert!(wait_for(Duration::from_millis(200), || clock.is_parked()));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
    }
}
