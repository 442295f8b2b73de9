//! The ptrace platform: the same stub processes as systrap, but every guest
//! syscall stops its thread under `PTRACE_SYSEMU` instead of raising SIGSYS.
//!
//! Each guest thread has a *tracer*: a sentry thread that seized it and is
//! the only thread allowed to make ptrace requests on it. The tracer sits on
//! the same host CPU as the worker that serves the guest thread, and pins
//! the guest thread there too (a stop wakes the tracer on the tracee's CPU;
//! across CPUs every stop would pay a cross-CPU wake-up).
//!
//! ```text
//!  guest `syscall` -> syscall-entry stop (SYSEMU: the host never runs it)
//!  tracer: waitpid returns -> GETREGS -> publishes the stop on its link,
//!    rings the worker's doorbell
//!  worker: poll() takes the stop -> kernel serves -> resume() sends the
//!    registers to the tracer
//!  tracer: SETREGS -> PTRACE_SYSEMU -> waitpid ...
//! ```
//!
//! Memory commands run in the stopped thread itself, as on systrap, but
//! through the stub's ptrace gadgets: the tracer loads one syscall's
//! registers, points `rip` at `syscall; int3` in the stub code and lets the
//! thread run with `PTRACE_CONT` until the `int3` traps back. The stub's
//! seccomp filter stays installed (it allows only syscalls made from stub
//! code), so a thread that ever ran guest code untraced could still not
//! reach the host. `SIGSTOP`/`SIGCONT` from the kernel (pause, job control)
//! become a hold in the tracers: a paused thread is kept in its ptrace stop.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Weak};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use sentry_stubs::{
    MAX_WORKERS, SIG_INTERRUPT, SLOT_SIZE, STUB_MEMFILE_FD, STUB_SLOTFILE_FD, STUB_SLOTS,
};

use crate::memfile::MemoryFile;
use crate::platform::{
    AddressSpace, Context, Interrupter, Platform, PlatformError, Prot, Regs, Stop, WorkerBell,
};
use crate::sys;
use crate::systrap::{spawn, Doorbells, Shared, StubProcess};

const PTRACE_O_TRACESYSGOOD: i64 = 1;
const PTRACE_EVENT_STOP: i32 = 128;
const PTRACE_GET_SYSCALL_INFO: u32 = 0x420e;
const NT_X86_XSTATE: i64 = 0x202;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `FP_XSTATE_MAGIC1` in `fx_sw_bytes`, `FP_XSTATE_MAGIC2` after the area.
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
/// Bytes asked of `PTRACE_GETREGSET(NT_X86_XSTATE)`; the kernel trims it.
const XSTATE_MAX: usize = 16 * 1024;

/// The ptrace platform.
pub struct Ptrace {
    shared: Arc<Shared>,
}

impl Ptrace {
    /// Sets up the memory file, doorbells and filter; spawns nothing yet.
    pub fn new() -> Result<Ptrace, PlatformError> {
        let shared = Shared::new()?;
        // Stub threads wait only during start-up here: no spinning.
        shared.spin.store(0, Ordering::Relaxed);
        Ok(Ptrace { shared })
    }
}

impl Platform for Ptrace {
    fn name(&self) -> &'static str {
        "ptrace"
    }

    fn memory_file(&self) -> &Arc<MemoryFile> {
        &self.shared.memfile
    }

    fn new_address_space(
        &self,
        regs: &Regs,
        worker: usize,
    ) -> Result<Box<dyn Context>, PlatformError> {
        // No doorbell for the stub's own start-up report: the tracer rings.
        let stub = spawn::spawn(&self.shared, MAX_WORKERS)?;
        let proc = Arc::new(PtraceProcess {
            stub,
            paused: Mutex::new(false),
            unpaused: Condvar::new(),
            tids: Mutex::new(Vec::new()),
        });
        let tid = proc.stub.pid;
        let (link, tx) = start_tracer(&proc, tid, worker)?;
        Ok(Box::new(PtraceContext {
            proc,
            link,
            tx,
            slot: 0,
            regs: *regs,
            fs_base: 0,
            running: false,
        }))
    }

    fn bell(&self, index: usize) -> Arc<dyn WorkerBell> {
        self.shared.bell(index)
    }

    fn set_death_hook(&self, hook: Box<dyn Fn() + Send + Sync>) {
        self.shared.set_death_hook(hook)
    }

    fn set_spin(&self, _iters: u32) {
        // Nothing spins here: a stop always costs the tracer's wake-up.
    }

    fn spin_pays(&self) -> bool {
        false
    }
}

/// A stub process under ptrace: one guest address space.
struct PtraceProcess {
    stub: Arc<StubProcess>,
    /// Set by SIGSTOP (pause, job control), cleared by SIGCONT.
    paused: Mutex<bool>,
    unpaused: Condvar,
    /// Host TIDs of the threads with a tracer.
    tids: Mutex<Vec<i32>>,
}

impl PtraceProcess {
    /// Keeps the caller (a tracer) here while the process is paused.
    fn hold_while_paused(&self) {
        let mut paused = self.paused.lock();
        while *paused && !self.stub.is_dead() {
            self.unpaused
                .wait_for(&mut paused, Duration::from_millis(100));
        }
    }

    fn tgkill(&self, tid: i32, signo: i32) {
        // SAFETY: tgkill with plain integers; the pid check keeps a reused
        // TID of another process safe.
        unsafe {
            libc::syscall(
                libc::SYS_tgkill,
                self.stub.pid as i64,
                tid as i64,
                signo as i64,
            )
        };
    }
}

impl AddressSpace for PtraceProcess {
    fn kill(&self) {
        self.stub.kill_now();
        self.unpaused.notify_all();
    }

    fn signal(&self, signo: i32) {
        if self.stub.is_dead() {
            return;
        }
        match signo {
            libc::SIGSTOP => {
                *self.paused.lock() = true;
                // Running threads stop at once; stopped ones are held by their
                // tracer before they run again.
                for &tid in self.tids.lock().iter() {
                    self.tgkill(tid, SIG_INTERRUPT);
                }
            }
            libc::SIGCONT => {
                *self.paused.lock() = false;
                self.unpaused.notify_all();
            }
            s => self.stub.send(s),
        }
    }

    fn is_dead(&self) -> bool {
        self.stub.is_dead()
    }

    fn host_pid(&self) -> i32 {
        self.stub.pid
    }
}

/// What a context and its tracer share.
struct Link {
    pid: i32,
    tid: i32,
    /// A stop is waiting in `stop` (lock-free hint for workers).
    stop_ready: AtomicBool,
    stop: Mutex<Option<(Stop, Regs)>>,
    /// The kernel asked for an interruption (a SIG_INTERRUPT without it is
    /// a pause).
    interrupt: AtomicBool,
    /// The tracee is gone (exited, killed, or its tracer gave up).
    gone: AtomicBool,
    worker: AtomicU32,
    doorbells: Arc<Doorbells>,
}

impl Link {
    fn post(&self, stop: Stop, regs: Regs) {
        if stop == Stop::Died {
            self.gone.store(true, Ordering::SeqCst);
        }
        *self.stop.lock() = Some((stop, regs));
        self.stop_ready.store(true, Ordering::SeqCst);
        let w = self.worker.load(Ordering::Relaxed) as usize;
        if w < MAX_WORKERS {
            self.doorbells.ring(w);
        }
    }
}

/// Requests to a tracer.
enum Msg {
    /// Run the guest with these registers and FS base until it stops.
    Resume(Regs, u64),
    /// Run a function on the tracer thread (it sends its own reply).
    Call(Box<dyn FnOnce(&mut Tracee) + Send>),
    /// End the thread (exit(0) in the stub) and the tracer.
    Exit,
    /// Move the tracer and the tracee to another host CPU.
    Pin(usize),
}

/// Starts the tracer of host thread `tid` (which must be waiting in stub
/// code) and waits until it has seized it.
fn start_tracer(
    proc: &Arc<PtraceProcess>,
    tid: i32,
    worker: usize,
) -> Result<(Arc<Link>, mpsc::Sender<Msg>), PlatformError> {
    let link = Arc::new(Link {
        pid: proc.stub.pid,
        tid,
        stop_ready: AtomicBool::new(false),
        stop: Mutex::new(None),
        interrupt: AtomicBool::new(false),
        gone: AtomicBool::new(false),
        worker: AtomicU32::new(worker as u32),
        doorbells: proc.stub.shared.doorbells.clone(),
    });
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::sync_channel(1);
    let cpu = proc.stub.shared.worker_cpu(worker);
    let mut tracee = Tracee {
        link: link.clone(),
        proc: Arc::downgrade(proc),
        user: None,
        alive: false,
        deferred_interrupt: false,
    };
    std::thread::Builder::new()
        .name(format!("tracer-{tid}"))
        .spawn(move || {
            sys::pin(0, &[cpu]);
            let r = tracee.seize(cpu);
            let ok = r.is_ok();
            let _ = ready_tx.send(r);
            if ok {
                tracer_main(tracee, rx);
            }
        })
        .map_err(PlatformError::Host)?;
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(PlatformError::Protocol("the tracer thread died")),
    }
    proc.tids.lock().push(tid);
    Ok((link, tx))
}

fn tracer_main(mut t: Tracee, rx: mpsc::Receiver<Msg>) {
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Resume(regs, fs_base) => {
                let (stop, regs) = t.run(&regs, fs_base);
                t.link.post(stop, regs);
                if stop == Stop::Died {
                    break;
                }
            }
            Msg::Call(f) => f(&mut t),
            Msg::Pin(cpu) => {
                sys::pin(0, &[cpu]);
                sys::pin(t.link.tid, &[cpu]);
            }
            Msg::Exit => {
                t.exit();
                return;
            }
        }
    }
    // The context is gone without an exit: nobody will serve this thread
    // again, so its process cannot go on. Kill it, then reap the thread so
    // that no tracee outlives its tracer.
    if t.alive {
        if let Some(p) = t.proc.upgrade() {
            p.stub.kill_now();
        } else {
            // SAFETY: tgkill with plain integers (SIGKILL ends the process).
            unsafe {
                libc::syscall(
                    libc::SYS_tgkill,
                    t.link.pid as i64,
                    t.link.tid as i64,
                    libc::SIGKILL as i64,
                )
            };
        }
        t.reap();
    }
}

/// What `waitpid` said about the tracee.
enum Event {
    Gone,
    /// `WSTOPSIG` and the ptrace event (`status >> 16`).
    Stopped(i32, i32),
}

/// The tracer's side: only the tracer thread touches it.
struct Tracee {
    link: Arc<Link>,
    proc: Weak<PtraceProcess>,
    /// The registers as last read from the tracee (segments and gs_base
    /// come from here on every resume).
    user: Option<libc::user_regs_struct>,
    alive: bool,
    /// A SIG_INTERRUPT the kernel asked for arrived while a command ran.
    deferred_interrupt: bool,
}

fn ptrace(req: u32, tid: i32, addr: u64, data: u64) -> i64 {
    // SAFETY: the callers pass requests whose addr/data are integers or
    // pointers to live buffers of the size the request needs.
    unsafe { libc::ptrace(req, tid, addr, data) }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

impl Tracee {
    fn tid(&self) -> i32 {
        self.link.tid
    }

    /// Attaches to the thread (which waits in stub code) and stops it.
    fn seize(&mut self, cpu: usize) -> Result<(), PlatformError> {
        let tid = self.tid();
        if ptrace(libc::PTRACE_SEIZE, tid, 0, PTRACE_O_TRACESYSGOOD as u64) < 0 {
            return Err(PlatformError::Spawn(format!(
                "PTRACE_SEIZE of stub thread {tid}: {}",
                std::io::Error::last_os_error()
            )));
        }
        self.alive = true;
        sys::pin(tid, &[cpu]);
        if ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0) < 0 {
            return Err(PlatformError::Spawn(format!(
                "PTRACE_INTERRUPT of stub thread {tid}: {}",
                std::io::Error::last_os_error()
            )));
        }
        loop {
            match self.wait() {
                Event::Gone => return Err(PlatformError::Dead),
                Event::Stopped(_, PTRACE_EVENT_STOP) => break,
                // A signal meant for the stub (an early interrupt): drop it,
                // the interrupt trap is still pending.
                Event::Stopped(_, _) => {
                    ptrace(libc::PTRACE_CONT, tid, 0, 0);
                }
            }
        }
        self.read_regs().ok_or(PlatformError::Dead)?;
        Ok(())
    }

    fn wait(&mut self) -> Event {
        let mut status = 0;
        loop {
            // SAFETY: status is a valid out-pointer.
            let r = unsafe { libc::waitpid(self.tid(), &mut status, libc::__WALL) };
            if r < 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                self.alive = false;
                return Event::Gone;
            }
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                self.alive = false;
                return Event::Gone;
            }
            if libc::WIFSTOPPED(status) {
                return Event::Stopped(libc::WSTOPSIG(status), status >> 16);
            }
        }
    }

    /// Waits until the thread is gone.
    fn reap(&mut self) {
        while self.alive {
            if let Event::Stopped(..) = self.wait() {
                ptrace(libc::PTRACE_CONT, self.tid(), 0, 0);
            }
        }
    }

    fn read_regs(&mut self) -> Option<libc::user_regs_struct> {
        // SAFETY: user_regs_struct is plain data.
        let mut u: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        if ptrace(libc::PTRACE_GETREGS, self.tid(), 0, &mut u as *mut _ as u64) < 0 {
            return None;
        }
        self.user = Some(u);
        Some(u)
    }

    fn write_regs(&self, u: &libc::user_regs_struct) -> bool {
        ptrace(libc::PTRACE_SETREGS, self.tid(), 0, u as *const _ as u64) >= 0
    }

    /// Holds while the process is paused; false if it is gone.
    fn hold(&self) -> bool {
        match self.proc.upgrade() {
            Some(p) => {
                p.hold_while_paused();
                !p.stub.is_dead()
            }
            None => false,
        }
    }

    /// Runs guest code with `regs` until a stop the kernel must see.
    fn run(&mut self, regs: &Regs, fs_base: u64) -> (Stop, Regs) {
        let died = (Stop::Died, *regs);
        if !self.alive || !self.hold() {
            return died;
        }
        let Some(mut u) = self.user else {
            return died;
        };
        to_user(regs, fs_base, &mut u);
        if !self.write_regs(&u) {
            return died;
        }
        if std::mem::take(&mut self.deferred_interrupt) {
            if let Some(p) = self.proc.upgrade() {
                p.tgkill(self.tid(), SIG_INTERRUPT);
            }
        }
        let tid = self.tid();
        let mut inject = 0u64;
        loop {
            if ptrace(libc::PTRACE_SYSEMU, tid, 0, inject) < 0 {
                return died;
            }
            inject = 0;
            let (sig, event) = match self.wait() {
                Event::Gone => return died,
                Event::Stopped(s, e) => (s, e),
            };
            if event == PTRACE_EVENT_STOP {
                // A group-stop or interrupt trap: nothing for the kernel.
                continue;
            }
            if sig == libc::SIGTRAP | 0x80 {
                let Some(u) = self.read_regs() else {
                    return died;
                };
                let mut r = from_user(&u);
                r.rax = u.orig_rax;
                let compat = self.syscall_arch().is_some_and(|a| a != AUDIT_ARCH_X86_64);
                return (Stop::Syscall { compat }, r);
            }
            match sig {
                s if s == SIG_INTERRUPT => {
                    if self.link.interrupt.swap(false, Ordering::SeqCst) {
                        let Some(u) = self.read_regs() else {
                            return died;
                        };
                        return (Stop::Interrupted, from_user(&u));
                    }
                    // A pause: wait here, then carry on where the guest was.
                    if !self.hold() {
                        return died;
                    }
                }
                libc::SIGSEGV | libc::SIGBUS | libc::SIGFPE | libc::SIGILL | libc::SIGTRAP => {
                    // SAFETY: siginfo_t is plain data.
                    let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
                    let ok = ptrace(libc::PTRACE_GETSIGINFO, tid, 0, &mut si as *mut _ as u64) >= 0;
                    let Some(u) = self.read_regs() else {
                        return died;
                    };
                    let (code, addr) = if ok {
                        // SAFETY: a fault's siginfo carries si_addr.
                        (si.si_code, unsafe { si.si_addr() } as u64)
                    } else {
                        (0, 0)
                    };
                    return (
                        Stop::Fault {
                            signo: sig,
                            code,
                            addr,
                        },
                        from_user(&u),
                    );
                }
                // Anything else came from outside the sandbox (a SIGTERM
                // to the stub, say): the host's default action applies, as
                // it would on systrap.
                s => inject = s as u64,
            }
        }
    }

    /// The audit arch of the syscall stop (`None` if unknown).
    fn syscall_arch(&self) -> Option<u32> {
        // op, pad[3], arch, instruction_pointer, stack_pointer
        let mut info = [0u8; 24];
        let r = ptrace(
            PTRACE_GET_SYSCALL_INFO,
            self.tid(),
            info.len() as u64,
            info.as_mut_ptr() as u64,
        );
        (r >= 8).then(|| u32::from_le_bytes([info[4], info[5], info[6], info[7]]))
    }

    /// Runs one host syscall in the stopped thread (stub gadget), returns
    /// its raw result. The guest's registers are restored at the next run.
    fn syscall(&mut self, gadget: u64, nr: i64, args: [u64; 6]) -> Result<i64, PlatformError> {
        let Some(mut u) = self.user.filter(|_| self.alive) else {
            return Err(PlatformError::Dead);
        };
        u.rax = nr as u64;
        u.orig_rax = u64::MAX;
        [u.rdi, u.rsi, u.rdx, u.r10, u.r8, u.r9] = args;
        u.rip = gadget;
        // No single-stepping (a guest may have set TF): the gadget must run
        // straight to its int3, and a clone child must not inherit TF.
        u.eflags &= !0x100;
        if !self.write_regs(&u) {
            return Err(PlatformError::Dead);
        }
        let tid = self.tid();
        let mut inject = 0u64;
        loop {
            if ptrace(libc::PTRACE_CONT, tid, 0, inject) < 0 {
                return Err(PlatformError::Dead);
            }
            inject = 0;
            match self.wait() {
                Event::Gone => return Err(PlatformError::Dead),
                Event::Stopped(_, PTRACE_EVENT_STOP) => {}
                Event::Stopped(libc::SIGTRAP, _) => {
                    // SAFETY: user_regs_struct is plain data.
                    let mut now: libc::user_regs_struct = unsafe { std::mem::zeroed() };
                    if ptrace(libc::PTRACE_GETREGS, tid, 0, &mut now as *mut _ as u64) < 0 {
                        return Err(PlatformError::Dead);
                    }
                    // The int3 right after the syscall (or the clone's).
                    if now.rip < gadget || now.rip > gadget + 16 {
                        self.kill();
                        return Err(PlatformError::Protocol(
                            "a ptrace command trapped elsewhere",
                        ));
                    }
                    return Ok(now.rax as i64);
                }
                Event::Stopped(s, _) if s == SIG_INTERRUPT => {
                    if self.link.interrupt.swap(false, Ordering::SeqCst) {
                        self.deferred_interrupt = true;
                    }
                }
                Event::Stopped(s, _) => inject = s as u64,
            }
        }
    }

    fn kill(&mut self) {
        if let Some(p) = self.proc.upgrade() {
            p.stub.kill_now();
        }
    }

    /// Ends the thread with exit(0) from stub code and waits until it is gone.
    fn exit(&mut self) {
        if !self.alive {
            return;
        }
        let gadget = sentry_stubs::symbols().ptrace_syscall;
        if self.syscall(gadget, libc::SYS_exit, [0; 6]).is_err() {
            // exit does not return: Dead is the expected outcome.
        }
        self.reap();
    }

    /// The thread's XSAVE area laid out as in a signal frame: `fx_sw_bytes`
    /// filled in and `FP_XSTATE_MAGIC2` appended.
    fn fpstate(&mut self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; XSTATE_MAX];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        if ptrace(
            libc::PTRACE_GETREGSET,
            self.tid(),
            NT_X86_XSTATE as u64,
            &mut iov as *mut _ as u64,
        ) < 0
        {
            return None;
        }
        let len = iov.iov_len;
        if !(576..=XSTATE_MAX).contains(&len) {
            return None;
        }
        buf.truncate(len);
        // fx_sw_bytes: magic1, extended_size, xfeatures, xstate_size.
        let xfeatures = u64::from_le_bytes(buf[512..520].try_into().ok()?) | 3;
        buf[464..468].copy_from_slice(&FP_XSTATE_MAGIC1.to_le_bytes());
        buf[468..472].copy_from_slice(&(len as u32 + 4).to_le_bytes());
        if u64::from_le_bytes(buf[472..480].try_into().ok()?) == 0 {
            buf[472..480].copy_from_slice(&xfeatures.to_le_bytes());
        }
        buf[480..484].copy_from_slice(&(len as u32).to_le_bytes());
        buf.extend_from_slice(&FP_XSTATE_MAGIC2.to_le_bytes());
        Some(buf)
    }

    fn set_fpstate(&mut self, data: &[u8]) -> bool {
        let Some(area) = data.len().checked_sub(4).map(|n| &data[..n]) else {
            return false;
        };
        let mut buf = area.to_vec();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        ptrace(
            libc::PTRACE_SETREGSET,
            self.tid(),
            NT_X86_XSTATE as u64,
            &mut iov as *mut _ as u64,
        ) >= 0
    }
}

fn from_user(u: &libc::user_regs_struct) -> Regs {
    Regs {
        r8: u.r8,
        r9: u.r9,
        r10: u.r10,
        r11: u.r11,
        r12: u.r12,
        r13: u.r13,
        r14: u.r14,
        r15: u.r15,
        rdi: u.rdi,
        rsi: u.rsi,
        rbp: u.rbp,
        rbx: u.rbx,
        rdx: u.rdx,
        rax: u.rax,
        rcx: u.rcx,
        rsp: u.rsp,
        rip: u.rip,
        eflags: u.eflags,
    }
}

fn to_user(r: &Regs, fs_base: u64, u: &mut libc::user_regs_struct) {
    u.r8 = r.r8;
    u.r9 = r.r9;
    u.r10 = r.r10;
    u.r11 = r.r11;
    u.r12 = r.r12;
    u.r13 = r.r13;
    u.r14 = r.r14;
    u.r15 = r.r15;
    u.rdi = r.rdi;
    u.rsi = r.rsi;
    u.rbp = r.rbp;
    u.rbx = r.rbx;
    u.rdx = r.rdx;
    u.rax = r.rax;
    u.rcx = r.rcx;
    u.rsp = r.rsp;
    u.rip = r.rip;
    u.eflags = r.eflags;
    // No host syscall restart: the kernel decides about restarts itself.
    u.orig_rax = u64::MAX;
    u.fs_base = fs_base;
    u.fs = 0;
    u.gs = 0;
    u.cs = 0x33;
    u.ss = 0x2b;
}

/// Interrupts a guest thread on ptrace.
struct PtraceInterrupter {
    link: Arc<Link>,
}

impl Interrupter for PtraceInterrupter {
    fn interrupt(&self) {
        if self.link.gone.load(Ordering::SeqCst) {
            return;
        }
        self.link.interrupt.store(true, Ordering::SeqCst);
        // SAFETY: tgkill with plain integers.
        unsafe {
            libc::syscall(
                libc::SYS_tgkill,
                self.link.pid as i64,
                self.link.tid as i64,
                SIG_INTERRUPT as i64,
            )
        };
    }

    fn may_have_stopped(&self) -> bool {
        self.link.stop_ready.load(Ordering::Acquire) || self.link.gone.load(Ordering::Relaxed)
    }
}

/// A guest thread on ptrace.
pub struct PtraceContext {
    proc: Arc<PtraceProcess>,
    link: Arc<Link>,
    tx: mpsc::Sender<Msg>,
    slot: u64,
    regs: Regs,
    fs_base: u64,
    running: bool,
}

impl PtraceContext {
    /// Runs `f` on the tracer and waits for its answer.
    fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Tracee) -> R + Send + 'static,
    ) -> Result<R, PlatformError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.tx
            .send(Msg::Call(Box::new(move |t| {
                let _ = tx.send(f(t));
            })))
            .map_err(|_| PlatformError::Dead)?;
        rx.recv().map_err(|_| PlatformError::Dead)
    }

    fn host_syscall(&self, nr: i64, args: [u64; 6]) -> Result<(), PlatformError> {
        if self.proc.is_dead() {
            return Err(PlatformError::Dead);
        }
        let gadget = sentry_stubs::symbols().ptrace_syscall;
        let r = self.call(move |t| t.syscall(gadget, nr, args))??;
        if r < 0 {
            return Err(PlatformError::Host(std::io::Error::from_raw_os_error(
                -r as i32,
            )));
        }
        Ok(())
    }
}

impl Context for PtraceContext {
    fn poll(&mut self) -> Option<Stop> {
        if !self.running {
            return None;
        }
        if !self.link.stop_ready.load(Ordering::Acquire) {
            if self.proc.is_dead() || self.link.gone.load(Ordering::SeqCst) {
                self.running = false;
                return Some(Stop::Died);
            }
            return None;
        }
        self.link.stop_ready.store(false, Ordering::Relaxed);
        let (stop, regs) = self.link.stop.lock().take()?;
        self.running = false;
        if stop != Stop::Started {
            self.regs = regs;
        }
        Some(stop)
    }

    fn regs(&mut self) -> &Regs {
        &self.regs
    }

    fn syscall_args(&self) -> (u64, [u64; 6]) {
        (self.regs.rax, self.regs.syscall_args())
    }

    fn set_syscall_return(&mut self, value: u64) {
        self.regs.rax = value;
    }

    fn regs_mut(&mut self) -> &mut Regs {
        &mut self.regs
    }

    fn fpstate(&mut self) -> Option<Vec<u8>> {
        self.call(|t| t.fpstate()).ok().flatten()
    }

    fn set_fpstate(&mut self, data: &[u8]) -> bool {
        let data = data.to_vec();
        self.call(move |t| t.set_fpstate(&data)).unwrap_or(false)
    }

    fn fs_base(&self) -> u64 {
        self.fs_base
    }

    fn set_fs_base(&mut self, base: u64) -> Result<(), PlatformError> {
        // Loaded with the other registers on the next resume.
        self.fs_base = base;
        Ok(())
    }

    fn resume(&mut self) -> Result<(), PlatformError> {
        if self.proc.is_dead() || self.link.gone.load(Ordering::SeqCst) {
            return Err(PlatformError::Dead);
        }
        self.tx
            .send(Msg::Resume(self.regs, self.fs_base))
            .map_err(|_| PlatformError::Dead)?;
        self.running = true;
        Ok(())
    }

    fn map(&mut self, addr: u64, len: u64, prot: Prot, offset: u64) -> Result<(), PlatformError> {
        self.host_syscall(
            libc::SYS_mmap,
            [
                addr,
                len,
                prot.bits() as u64,
                (libc::MAP_SHARED | libc::MAP_FIXED) as u64,
                STUB_MEMFILE_FD as u64,
                offset,
            ],
        )
    }

    fn unmap(&mut self, addr: u64, len: u64) -> Result<(), PlatformError> {
        self.host_syscall(libc::SYS_munmap, [addr, len, 0, 0, 0, 0])
    }

    fn protect(&mut self, addr: u64, len: u64, prot: Prot) -> Result<(), PlatformError> {
        self.host_syscall(libc::SYS_mprotect, [addr, len, prot.bits() as u64, 0, 0, 0])
    }

    fn new_thread(
        &mut self,
        regs: &Regs,
        fs_base: u64,
        worker: usize,
    ) -> Result<Box<dyn Context>, PlatformError> {
        let stub = self.proc.stub.clone();
        let (slot, fresh) = stub.alloc_slot()?;
        let slot_addr = STUB_SLOTS + slot * SLOT_SIZE;
        let tid = (|| {
            if fresh {
                self.host_syscall(
                    libc::SYS_mmap,
                    [
                        slot_addr,
                        SLOT_SIZE,
                        (libc::PROT_READ | libc::PROT_WRITE) as u64,
                        (libc::MAP_SHARED | libc::MAP_FIXED) as u64,
                        STUB_SLOTFILE_FD as u64,
                        slot * SLOT_SIZE,
                    ],
                )?;
            }
            let page = stub.page(slot);
            page.state.store(0, Ordering::Relaxed);
            page.worker.store(MAX_WORKERS as u32, Ordering::Relaxed);
            page.spin_iters.store(0, Ordering::Relaxed);
            page.host_tid.store(0, Ordering::Relaxed);
            let host_tid_addr =
                slot_addr + std::mem::offset_of!(sentry_stubs::StubPage, host_tid) as u64;
            let flags = libc::CLONE_VM
                | libc::CLONE_FS
                | libc::CLONE_FILES
                | libc::CLONE_SIGHAND
                | libc::CLONE_THREAD
                | libc::CLONE_SYSVSEM
                | libc::CLONE_SETTLS
                | libc::CLONE_PARENT_SETTID
                | libc::CLONE_CHILD_CLEARTID;
            let gadget = sentry_stubs::symbols().ptrace_clone;
            let args = [
                flags as u64,
                slot_addr + SLOT_SIZE,
                host_tid_addr,
                host_tid_addr,
                fs_base,
                0,
            ];
            let r = self.call(move |t| t.syscall(gadget, libc::SYS_clone, args))??;
            if r <= 0 {
                return Err(PlatformError::Host(std::io::Error::from_raw_os_error(
                    -r as i32,
                )));
            }
            Ok(r as i32)
        })();
        let tid = match tid {
            Ok(t) => t,
            Err(e) => {
                stub.free_slot(slot);
                return Err(e);
            }
        };
        let (link, tx) = match start_tracer(&self.proc, tid, worker) {
            Ok(x) => x,
            Err(e) => {
                // A stub thread nobody traces must not stay behind.
                self.proc.stub.kill_now();
                return Err(e);
            }
        };
        link.post(Stop::Started, *regs);
        Ok(Box::new(PtraceContext {
            proc: self.proc.clone(),
            link,
            tx,
            slot,
            regs: *regs,
            fs_base,
            running: true,
        }))
    }

    fn exit_thread(&mut self) {
        self.link.gone.store(true, Ordering::SeqCst);
        self.proc.tids.lock().retain(|&t| t != self.link.tid);
        let _ = self.tx.send(Msg::Exit);
        self.running = false;
        self.proc.stub.free_slot(self.slot);
    }

    fn interrupter(&self) -> Arc<dyn Interrupter> {
        Arc::new(PtraceInterrupter {
            link: self.link.clone(),
        })
    }

    fn address_space(&self) -> Arc<dyn AddressSpace> {
        self.proc.clone()
    }

    fn set_worker(&mut self, worker: usize) {
        self.link.worker.store(worker as u32, Ordering::Relaxed);
        let _ = self
            .tx
            .send(Msg::Pin(self.proc.stub.shared.worker_cpu(worker)));
    }
}
