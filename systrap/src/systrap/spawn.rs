//! Starting stub processes and noticing their death.
//!
//! A stub is forked from the sentry with a raw `clone` (no fork handlers);
//! the child runs only raw syscalls: it leaves the sentry's session, arms
//! `PDEATHSIG`, maps the stub code, the doorbells and slot 0 into the
//! (pre-reserved) stub region, keeps the memory file and the slot file as
//! fds 3 and 4, closes everything else and jumps to `sentry_stub_init` on
//! slot 0's stack. The stub then installs its handlers and filter, unmaps
//! all of the sentry's memory and reports as a started thread.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sentry_stubs::{
    DOORBELLS_SIZE, MAX_SLOTS, SIGNO_STARTED, SLOT_SIZE, STUB_CODE, STUB_DOORBELLS,
    STUB_MEMFILE_FD, STUB_SLOTFILE_FD, STUB_SLOTS, ST_TRAPPED,
};

use super::{Registry, Shared, StubProcess};
use crate::platform::PlatformError;
use crate::sys;

/// Waits for stub processes to exit and marks them dead.
/// What to call when a stub process dies (wakes the kernel's workers).
pub(super) type DeathHook = Arc<dyn Fn() + Send + Sync>;

pub(super) struct Reaper {
    epoll: OwnedFd,
    registry: Arc<Registry>,
    hook: Arc<Mutex<Option<DeathHook>>>,
}

impl Reaper {
    pub(super) fn new() -> std::io::Result<Reaper> {
        // SAFETY: plain syscall.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(sys::last_error());
        }
        // SAFETY: ep is a fresh fd we own.
        let epoll = unsafe { OwnedFd::from_raw_fd(ep) };
        let registry: Arc<Registry> = Arc::default();
        let hook: Arc<Mutex<Option<DeathHook>>> = Arc::default();
        let (reg, hk, epfd) = (registry.clone(), hook.clone(), ep);
        std::thread::Builder::new()
            .name("stub-reaper".into())
            .spawn(move || reap_loop(epfd, &reg, &hk))?;
        Ok(Reaper {
            epoll,
            registry,
            hook,
        })
    }

    fn watch(&self, proc: &Arc<StubProcess>) -> std::io::Result<()> {
        self.registry.lock().insert(proc.pid, Arc::downgrade(proc));
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: proc.pid as u64,
        };
        // SAFETY: valid epoll fd, valid pidfd, ev lives across the call.
        let r = unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                proc.pidfd.as_raw_fd(),
                &mut ev,
            )
        };
        if r < 0 {
            return Err(sys::last_error());
        }
        Ok(())
    }
}

fn reap_loop(epfd: i32, registry: &Registry, hook: &Mutex<Option<Arc<dyn Fn() + Send + Sync>>>) {
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 16];
    loop {
        // SAFETY: events is a valid writable array of 16 entries.
        let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), 16, -1) };
        if n < 0 {
            if sys::last_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return;
        }
        for ev in &events[..n as usize] {
            let pid = ev.u64 as i32;
            let proc = registry.lock().remove(&pid).and_then(|w| w.upgrade());
            let mut info: libc::siginfo_t = unsafe_zeroed_siginfo();
            let status = if let Some(p) = &proc {
                // SAFETY: reaping our own child through its pidfd; info is writable.
                let r = unsafe {
                    libc::waitid(
                        libc::P_PIDFD,
                        p.pidfd.as_raw_fd() as libc::id_t,
                        &mut info,
                        libc::WEXITED,
                    )
                };
                if r == 0 {
                    // SAFETY: waitid filled a CLD_* siginfo, whose si_status is valid.
                    unsafe { info.si_status() }
                } else {
                    -1
                }
            } else {
                // Already dropped: reap by pid so no zombie stays.
                // SAFETY: plain wait on our child.
                unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
                -1
            };
            if let Some(p) = proc {
                // SAFETY: removing the pidfd from our epoll set.
                unsafe {
                    libc::epoll_ctl(
                        epfd,
                        libc::EPOLL_CTL_DEL,
                        p.pidfd.as_raw_fd(),
                        std::ptr::null_mut(),
                    )
                };
                p.mark_dead(status);
            }
            if let Some(h) = hook.lock().clone() {
                h();
            }
        }
    }
}

fn unsafe_zeroed_siginfo() -> libc::siginfo_t {
    // SAFETY: siginfo_t is plain data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Everything the child needs, computed before the fork (the child must not
/// allocate).
#[repr(C)]
struct ChildParams {
    parent: i32,
    code: *const u8,
    code_len: usize,
    memfile_fd: i32,
    slots_fd: i32,
    doorbells_fd: i32,
    filter: *const libc::sock_fprog,
    init: u64,
    /// glibc's rseq area of the forking thread (0: none) and its signature.
    rseq_area: u64,
    rseq_sizes: [u32; 2],
}

/// Where glibc registered restartable sequences for the calling thread.
///
/// A fork keeps the kernel's rseq registration; once the stub unmaps the
/// sentry's memory, the kernel's rseq updates would fault and turn into a
/// SIGSEGV, so the child unregisters it first (with the same address, length
/// and signature, as the kernel demands).
fn rseq_registration() -> (u64, [u32; 2]) {
    // SAFETY: dlsym with a valid NUL-terminated name; RTLD_DEFAULT searches
    // the global scope. The results, when non-null, point to glibc's exported
    // `ptrdiff_t __rseq_offset` and `unsigned int __rseq_size`.
    unsafe {
        let off = libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset".as_ptr());
        let size = libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr());
        if off.is_null() || size.is_null() {
            return (0, [0, 0]);
        }
        let size = *(size as *const u32);
        if size == 0 {
            return (0, [0, 0]);
        }
        let tp: u64;
        std::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags));
        let area = tp.wrapping_add(*(off as *const isize) as u64);
        (area, [32, size])
    }
}

pub(crate) fn spawn(
    shared: &Arc<Shared>,
    worker: usize,
) -> Result<Arc<StubProcess>, PlatformError> {
    // Route the reaper's death notices through the platform's hook.
    *shared.reaper.hook.lock() = shared.death_hook.lock().clone();

    let slots_fd = sys::memfd(c"sentry-slots", MAX_SLOTS * SLOT_SIZE)?;
    let slots = memmap2::MmapOptions::new()
        .len((MAX_SLOTS * SLOT_SIZE) as usize)
        .map_raw(&slots_fd)?;
    let code = sentry_stubs::code();
    let prog = libc::sock_fprog {
        len: shared.filter.len() as u16,
        filter: shared.filter.as_ptr() as *mut libc::sock_filter,
    };
    let params = ChildParams {
        // SAFETY: getpid has no preconditions.
        parent: unsafe { libc::getpid() },
        code: code.as_ptr(),
        code_len: code.len(),
        memfile_fd: shared.memfile.raw_fd(),
        slots_fd: slots_fd.as_raw_fd(),
        doorbells_fd: shared.doorbells.fd.as_raw_fd(),
        filter: &prog,
        init: sentry_stubs::symbols().init,
        rseq_area: 0,
        rseq_sizes: [0, 0],
    };
    let (rseq_area, rseq_sizes) = rseq_registration();
    let params = ChildParams {
        rseq_area,
        rseq_sizes,
        ..params
    };
    // Slot 0 starts served by `worker`.
    {
        // SAFETY: slot 0's page is at the start of the fresh mapping; all atomics.
        let page = unsafe { &*(slots.as_ptr() as *const sentry_stubs::StubPage) };
        page.worker.store(worker as u32, Ordering::Relaxed);
        page.spin_iters
            .store(shared.spin.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    let mut pidfd: libc::c_int = -1;
    // SAFETY: a fork-like clone (no CLONE_VM): the child gets a copy of this
    // address space and runs only `child_main`, which makes raw syscalls and
    // never returns.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PIDFD | libc::SIGCHLD) as u64,
            0usize,
            &mut pidfd as *mut libc::c_int,
            0usize,
            0usize,
        )
    };
    if pid == 0 {
        // SAFETY: we are the freshly cloned child; params were filled above.
        unsafe { child_main(&params) }
    }
    if pid < 0 {
        return Err(PlatformError::Spawn(format!(
            "clone: {}",
            sys::last_error()
        )));
    }
    // SAFETY: CLONE_PIDFD stored a fresh pidfd that we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let proc = Arc::new(StubProcess {
        pid: pid as i32,
        pidfd,
        shared: shared.clone(),
        slots,
        _slots_fd: slots_fd,
        slot_used: Mutex::new((vec![true], 1)),
        dead: AtomicBool::new(false),
        exit_status: AtomicI32::new(0),
    });
    proc.page(0).host_tid.store(pid as u32, Ordering::Relaxed);
    shared.reaper.watch(&proc)?;

    // Wait for the stub to report as started.
    let page = proc.page(0);
    let start = Instant::now();
    loop {
        if page.state.load(Ordering::Acquire) == ST_TRAPPED {
            if page.signo.load(Ordering::Relaxed) != SIGNO_STARTED {
                let signo = page.signo.load(Ordering::Relaxed);
                let uc = page.ucontext_off.load(Ordering::Relaxed);
                let rip = if uc % 8 == 0 && uc + 400 < SLOT_SIZE {
                    proc.slot_read(0, uc + 40 + 16 * 8)
                } else {
                    0
                };
                proc.kill_now();
                return Err(PlatformError::Spawn(format!(
                    "the stub stopped with signal {signo} at {rip:#x} before it started"
                )));
            }
            write_perf_map(proc.pid);
            return Ok(proc);
        }
        if proc.dead.load(Ordering::SeqCst) {
            let st = proc.exit_status.load(Ordering::Relaxed);
            return Err(PlatformError::Spawn(format!(
                "the stub process exited during start-up with status {st} ({})",
                describe_child_exit(st)
            )));
        }
        if start.elapsed() > Duration::from_secs(10) {
            proc.kill_now();
            return Err(PlatformError::Spawn(
                "the stub process did not start within 10 s".into(),
            ));
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

fn describe_child_exit(st: i32) -> &'static str {
    match st {
        101 => "parent vanished",
        102 => "mapping the stub code failed",
        103 => "mapping the doorbells failed",
        104 => "mapping slot 0 failed",
        105 => "placing file descriptors failed",
        106 => "unregistering the inherited rseq area failed",
        126 => "installing handlers or the seccomp filter failed",
        _ => "unexpected",
    }
}

/// The child half of `spawn`.
///
/// # Safety
/// Must be called only in the child of a fork-like clone of the sentry, with
/// `p` valid in that child's (copied) memory. Uses raw syscalls only.
unsafe fn child_main(p: &ChildParams) -> ! {
    use libc::SYS_exit_group;
    /// A raw syscall with every argument widened to 64 bits.
    #[inline(always)]
    unsafe fn sc<const N: usize>(nr: i64, a: [i64; N]) -> i64 {
        let mut r = [0i64; 6];
        r[..N].copy_from_slice(&a);
        // SAFETY: the caller passes a syscall and arguments valid for it.
        unsafe { libc::syscall(nr, r[0], r[1], r[2], r[3], r[4], r[5]) }
    }
    macro_rules! die {
        ($code:expr) => {{
            sc(SYS_exit_group, [($code) as i64]);
            loop {}
        }};
    }
    // SAFETY: 1. raw syscalls on values prepared by the parent; 2. the stub
    // region was reserved PROT_NONE in the sentry, so MAP_FIXED replaces only
    // that reservation; 3. the final jump never returns to Rust code.
    unsafe {
        sc(libc::SYS_setsid, []);
        sc(
            libc::SYS_prctl,
            [
                (libc::PR_SET_PDEATHSIG) as i64,
                (libc::SIGKILL) as i64,
                0_i64,
                0_i64,
                0_i64,
            ],
        );
        if sc(libc::SYS_getppid, []) as i32 != p.parent {
            die!(101);
        }
        if p.rseq_area != 0 {
            const RSEQ_SIG: i64 = 0x5305_3053;
            let ok = p.rseq_sizes.iter().any(|&len| {
                sc(
                    libc::SYS_rseq,
                    [p.rseq_area as i64, len as i64, 1, RSEQ_SIG],
                ) == 0
            });
            if !ok {
                die!(106);
            }
        }
        let code_map = (p.code_len as u64).div_ceil(4096) * 4096;
        let m = sc(
            libc::SYS_mmap,
            [
                (STUB_CODE) as i64,
                (code_map) as i64,
                (libc::PROT_READ | libc::PROT_WRITE) as i64,
                (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED) as i64,
                -1_i64,
                0_i64,
            ],
        );
        if m as u64 != STUB_CODE {
            die!(102);
        }
        let dst = STUB_CODE as *mut u8;
        for i in 0..p.code_len {
            *dst.add(i) = *p.code.add(i);
        }
        if sc(
            libc::SYS_mprotect,
            [
                (STUB_CODE) as i64,
                (code_map) as i64,
                (libc::PROT_READ | libc::PROT_EXEC) as i64,
            ],
        ) != 0
        {
            die!(102);
        }
        let m = sc(
            libc::SYS_mmap,
            [
                (STUB_DOORBELLS) as i64,
                (DOORBELLS_SIZE) as i64,
                (libc::PROT_READ | libc::PROT_WRITE) as i64,
                (libc::MAP_SHARED | libc::MAP_FIXED) as i64,
                (p.doorbells_fd) as i64,
                0_i64,
            ],
        );
        if m as u64 != STUB_DOORBELLS {
            die!(103);
        }
        let m = sc(
            libc::SYS_mmap,
            [
                (STUB_SLOTS) as i64,
                (SLOT_SIZE) as i64,
                (libc::PROT_READ | libc::PROT_WRITE) as i64,
                (libc::MAP_SHARED | libc::MAP_FIXED) as i64,
                (p.slots_fd) as i64,
                0_i64,
            ],
        );
        if m as u64 != STUB_SLOTS {
            die!(104);
        }
        let a = sc(
            libc::SYS_fcntl,
            [(p.memfile_fd) as i64, (libc::F_DUPFD) as i64, 64_i64],
        );
        let b = sc(
            libc::SYS_fcntl,
            [(p.slots_fd) as i64, (libc::F_DUPFD) as i64, 64_i64],
        );
        if a < 0
            || b < 0
            || sc(libc::SYS_dup2, [(a), (STUB_MEMFILE_FD) as i64]) < 0
            || sc(libc::SYS_dup2, [(b), (STUB_SLOTFILE_FD) as i64]) < 0
        {
            die!(105);
        }
        sc(
            libc::SYS_close_range,
            [(0u32) as i64, (2u32) as i64, (0u32) as i64],
        );
        sc(
            libc::SYS_close_range,
            [
                ((STUB_SLOTFILE_FD + 1) as u32) as i64,
                (u32::MAX) as i64,
                (0u32) as i64,
            ],
        );
        let stack = STUB_SLOTS + SLOT_SIZE;
        std::arch::asm!(
            "mov rsp, {stack}",
            "xor ebp, ebp",
            "jmp {entry}",
            stack = in(reg) stack,
            entry = in(reg) p.init,
            in("rdi") p.filter,
            options(noreturn)
        );
    }
}

#[allow(dead_code)]
fn _weak(_: Weak<StubProcess>) {}

/// With `SENTRY_PERF_MAP=1`, writes `/tmp/perf-PID.map` so that `perf
/// report` names the stub's code (perf reads such maps for anonymous
/// executable memory, as for JIT code). `perf/profile.sh` sets it.
fn write_perf_map(pid: i32) {
    if std::env::var_os("SENTRY_PERF_MAP").is_none_or(|v| v != "1") {
        return;
    }
    let table = sentry_stubs::symbol_table();
    let mut offsets: Vec<u64> = table.iter().map(|&(_, o)| o).collect();
    offsets.push(sentry_stubs::code().len() as u64);
    offsets.sort_unstable();
    let mut out = String::new();
    for (name, off) in table {
        let end = offsets
            .iter()
            .copied()
            .find(|&o| o > off)
            .unwrap_or(off + 1);
        out.push_str(&format!("{:x} {:x} {name}\n", STUB_CODE + off, end - off));
    }
    let _ = std::fs::write(format!("/tmp/perf-{pid}.map"), out);
}
