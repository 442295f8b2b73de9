//! The systrap platform: guests run in stub processes whose seccomp filter
//! turns every guest syscall into SIGSYS; the stub's handler publishes the
//! stop in its thread's [`StubPage`] and a sentry worker serves it.
//!
//! Data flow of one syscall:
//!
//! ```text
//!  guest `syscall` -> SIGSYS on the slot's signal stack -> stub handler:
//!    record ucontext offset, state = TRAPPED, ring the worker's doorbell if
//!    it sleeps, spin then FUTEX_WAIT on state
//!  worker: poll() sees TRAPPED -> read gregs from the frame in the slot
//!    (shared memory, validated) -> kernel serves -> resume() writes gregs
//!    back, state = RESUME, FUTEX_WAKE only if the stub sleeps
//!  stub: `ret` -> restorer -> rt_sigreturn -> guest continues
//! ```
//!
//! Memory commands (mmap of the memory file at guest addresses, mprotect,
//! arch_prctl, clone of a new stub thread) run in the stopped thread itself:
//! the sentry writes `CMD_*` and waits for `CMD_DONE` on the same word.

pub(crate) mod spawn;

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{fence, AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use memmap2::MmapRaw;
use parking_lot::Mutex;
use sentry_stubs::{
    Doorbell, StubPage, DOORBELLS_SIZE, ENTER_FRAME_OFF, MAX_SLOTS, MAX_WORKERS, SIGNO_COMPAT,
    SIGNO_STARTED, SIGSTACK_OFF, SIG_INTERRUPT, SLOT_SIZE, STUB_CODE, STUB_CODE_SIZE,
    STUB_MEMFILE_FD, STUB_SLOTFILE_FD, STUB_SLOTS, ST_CMD_CLONE, ST_CMD_DONE, ST_CMD_EXIT,
    ST_CMD_SYSCALL, ST_ENTER, ST_RESUME, ST_TRAPPED,
};

use crate::bpf::{self, SockFilter};
use crate::memfile::MemoryFile;
use crate::platform::{
    AddressSpace, Context, Interrupter, Platform, PlatformError, Prot, Regs, Stop, WorkerBell,
};
use crate::spin::SpinController;
use crate::sys;

/// Offsets in the kernel's `struct ucontext` (x86-64).
mod uc {
    pub const FLAGS: u64 = 0;
    pub const STACK: u64 = 16;
    pub const GREGS: u64 = 40;
    pub const CSGSFS: u64 = 40 + 18 * 8;
    pub const FPSTATE: u64 = 40 + 23 * 8;
    pub const SIGMASK: u64 = 296;
    /// Bytes of ucontext the sentry reads or writes.
    pub const SIZE: u64 = 304;
    /// `UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS`.
    pub const FLAGS_SS: u64 = 0x6;
    /// cs = 0x33 (64-bit user code), ss = 0x2b, in `csgsfs`.
    pub const USER_CS_SS: u64 = 0x33 | (0x2b << 48);
}

/// How long a command may take before the stub is declared broken.
const COMMAND_DEADLINE: Duration = Duration::from_secs(10);
/// Default spin budget (`pause` iterations) on both sides.
const DEFAULT_SPIN: u32 = 20_000;

/// The sandbox-wide doorbell page, shared by every stub and the sentry.
pub(crate) struct Doorbells {
    fd: OwnedFd,
    map: MmapRaw,
}

impl Doorbells {
    fn new() -> std::io::Result<Doorbells> {
        let fd = sys::memfd(c"sentry-doorbells", DOORBELLS_SIZE)?;
        let map = memmap2::MmapOptions::new()
            .len(DOORBELLS_SIZE as usize)
            .map_raw(&fd)?;
        Ok(Doorbells { fd, map })
    }

    /// Wakes worker `index` if it sleeps on its doorbell.
    pub(crate) fn ring(&self, index: usize) {
        let db = self.get(index);
        db.seq.fetch_add(1, Ordering::SeqCst);
        if db.sleeping.load(Ordering::SeqCst) != 0 {
            sys::futex_wake(&db.seq, 1);
        }
    }

    pub(crate) fn get(&self, index: usize) -> &Doorbell {
        assert!(index < MAX_WORKERS);
        // SAFETY: 1. index < MAX_WORKERS so the 64-byte line lies inside the
        // mapping; 2. Doorbell is two atomics (align 64, the mapping is page
        // aligned), valid for any bit pattern a stub may write.
        unsafe { &*(self.map.as_ptr().add(index * 64) as *const Doorbell) }
    }
}

/// A worker's doorbell, as a [`WorkerBell`].
struct Bell {
    doorbells: Arc<Doorbells>,
    index: usize,
}

impl WorkerBell for Bell {
    fn prepare(&self) -> u32 {
        let db = self.doorbells.get(self.index);
        db.sleeping.store(1, Ordering::SeqCst);
        // SeqCst store then load: pairs with the stub's store(state); mfence;
        // load(sleeping), so either it sees us sleeping or we see its stop.
        db.seq.load(Ordering::SeqCst)
    }

    fn sleep(&self, token: u32, timeout: Duration) {
        let db = self.doorbells.get(self.index);
        sys::futex_wait(&db.seq, token, Some(timeout));
        db.sleeping.store(0, Ordering::Relaxed);
    }

    fn ring(&self) {
        self.doorbells.ring(self.index);
    }
}

/// Shared state of the platform, also reachable from its stub processes.
pub(crate) struct Shared {
    pub(crate) memfile: Arc<MemoryFile>,
    pub(crate) doorbells: Arc<Doorbells>,
    filter: Vec<SockFilter>,
    pub(crate) spin: AtomicU32,
    /// Set while nobody spins: each guest thread then runs on its worker's
    /// CPU, so a handoff is a same-CPU wake-up rather than a cross-CPU one.
    pair: AtomicBool,
    /// The CPUs workers are pinned to (worker `i` on `cpus[i % n]`).
    cpus: Vec<usize>,
    pub(crate) death_hook: Mutex<Option<Arc<dyn Fn() + Send + Sync>>>,
    reaper: spawn::Reaper,
}

/// The systrap platform.
pub struct Systrap {
    shared: Arc<Shared>,
}

static RESERVATION: OnceLock<Result<(), String>> = OnceLock::new();

/// Keeps the stub region free in the sentry's own address space, so that
/// forked stubs can map there and nothing of the sentry is in the way.
pub(crate) fn reserve_stub_region() -> Result<(), PlatformError> {
    RESERVATION
        .get_or_init(|| {
            let len = STUB_SLOTS + MAX_SLOTS * SLOT_SIZE - STUB_CODE;
            // SAFETY: a fresh PROT_NONE anonymous mapping at a fixed address
            // that MAP_FIXED_NOREPLACE refuses to place over anything.
            let p = unsafe {
                libc::mmap(
                    STUB_CODE as *mut libc::c_void,
                    len as usize,
                    libc::PROT_NONE,
                    libc::MAP_PRIVATE
                        | libc::MAP_ANONYMOUS
                        | libc::MAP_NORESERVE
                        | libc::MAP_FIXED_NOREPLACE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED || p as u64 != STUB_CODE {
                Err(format!(
                    "the stub region {STUB_CODE:#x}.. is already used in the sentry: {}",
                    sys::last_error()
                ))
            } else {
                Ok(())
            }
        })
        .clone()
        .map_err(PlatformError::Spawn)
}

impl Systrap {
    /// Sets up the memory file, doorbells and filter; spawns nothing yet.
    pub fn new() -> Result<Systrap, PlatformError> {
        Ok(Systrap {
            shared: Shared::new()?,
        })
    }
}

impl Shared {
    /// Worker `index`'s doorbell.
    pub(crate) fn bell(&self, index: usize) -> Arc<dyn WorkerBell> {
        Arc::new(Bell {
            doorbells: self.doorbells.clone(),
            index,
        })
    }

    pub(crate) fn set_death_hook(&self, hook: Box<dyn Fn() + Send + Sync>) {
        *self.death_hook.lock() = Some(Arc::from(hook));
    }

    /// The CPU the kernel pins worker `worker` to; the threads it serves
    /// (and on ptrace their tracers) go there when they pair with it.
    pub(crate) fn worker_cpu(&self, worker: usize) -> usize {
        self.cpus[worker % self.cpus.len()]
    }

    /// The memory file, doorbells, filter and reaper every platform that
    /// runs stub processes needs.
    pub(crate) fn new() -> Result<Arc<Shared>, PlatformError> {
        reserve_stub_region()?;
        if sentry_stubs::code().len() as u64 > STUB_CODE_SIZE {
            return Err(PlatformError::Spawn(
                "stub code is larger than its region".into(),
            ));
        }
        let filter = bpf::stub_filter(STUB_CODE, STUB_CODE + STUB_CODE_SIZE, bpf::STUB_SYSCALLS);
        Ok(Arc::new(Shared {
            memfile: Arc::new(MemoryFile::new()?),
            doorbells: Arc::new(Doorbells::new()?),
            filter,
            spin: AtomicU32::new(DEFAULT_SPIN),
            pair: AtomicBool::new(false),
            cpus: sys::allowed_cpus(),
            death_hook: Mutex::new(None),
            reaper: spawn::Reaper::new()?,
        }))
    }
}

impl Platform for Systrap {
    fn name(&self) -> &'static str {
        "systrap"
    }

    fn memory_file(&self) -> &Arc<MemoryFile> {
        &self.shared.memfile
    }

    fn new_address_space(
        &self,
        regs: &Regs,
        worker: usize,
    ) -> Result<Box<dyn Context>, PlatformError> {
        let proc = spawn::spawn(&self.shared, worker)?;
        let ctx = SystrapContext {
            interrupter: Arc::new(ThreadInterrupter {
                proc: proc.clone(),
                host_tid: AtomicI32::new(proc.pid),
                slot: 0,
            }),
            proc,
            slot: 0,
            regs: *regs,
            loaded: *regs,
            fs_base: 0,
            frame: Frame::Started,
            running: false,
            worker: worker as u32,
            spin: SpinController::default(),
            last_spin: 0,
            paired: false,
        };
        Ok(Box::new(ctx))
    }

    fn bell(&self, index: usize) -> Arc<dyn WorkerBell> {
        self.shared.bell(index)
    }

    fn set_death_hook(&self, hook: Box<dyn Fn() + Send + Sync>) {
        self.shared.set_death_hook(hook)
    }

    fn set_spin(&self, iters: u32) {
        self.shared.spin.store(iters, Ordering::Relaxed);
        self.shared.pair.store(iters == 0, Ordering::Relaxed);
    }
}

/// A stub process: one guest address space.
pub(crate) struct StubProcess {
    pub(crate) pid: i32,
    pidfd: OwnedFd,
    pub(crate) shared: Arc<Shared>,
    slots: MmapRaw,
    _slots_fd: OwnedFd,
    /// Slots handed to contexts (true) and slots mapped in the stub (index < mapped).
    slot_used: Mutex<(Vec<bool>, u64)>,
    dead: AtomicBool,
    exit_status: AtomicI32,
}

impl StubProcess {
    pub(crate) fn page(&self, slot: u64) -> &StubPage {
        assert!(slot < MAX_SLOTS);
        // SAFETY: 1. the slot mapping is MAX_SLOTS * SLOT_SIZE bytes and slot is
        // in range; 2. StubPage is made of atomics (plus padding the sentry never
        // reads), valid for any bytes the stub writes; 3. the mapping lives as
        // long as self.
        unsafe { &*(self.slots.as_ptr().add((slot * SLOT_SIZE) as usize) as *const StubPage) }
    }

    /// Reads a u64 at `off` in a slot (any offset up to SLOT_SIZE - 8).
    fn slot_read(&self, slot: u64, off: u64) -> u64 {
        assert!(slot < MAX_SLOTS && off + 8 <= SLOT_SIZE && off % 8 == 0);
        // SAFETY: in bounds and aligned (asserted); a volatile read because
        // the stub may write the word at any time.
        unsafe {
            std::ptr::read_volatile(
                self.slots.as_ptr().add((slot * SLOT_SIZE + off) as usize) as *const u64
            )
        }
    }

    fn slot_write(&self, slot: u64, off: u64, v: u64) {
        assert!(slot < MAX_SLOTS && off + 8 <= SLOT_SIZE && off % 8 == 0);
        // SAFETY: as in slot_read.
        unsafe {
            std::ptr::write_volatile(
                self.slots
                    .as_mut_ptr()
                    .add((slot * SLOT_SIZE + off) as usize) as *mut u64,
                v,
            )
        }
    }

    /// The address of `len` bytes at `off` in a slot, if they lie inside it.
    fn slot_bytes(&self, slot: u64, off: u64, len: usize) -> Option<*mut u8> {
        let end = off.checked_add(len as u64)?;
        if slot >= MAX_SLOTS || end > SLOT_SIZE {
            return None;
        }
        // SAFETY: in bounds of the live slot mapping (checked just above).
        Some(unsafe {
            self.slots
                .as_mut_ptr()
                .add((slot * SLOT_SIZE + off) as usize)
        })
    }

    /// Copies bytes at `off` in a slot (bounds-checked).
    fn slot_read_bytes(&self, slot: u64, off: u64, buf: &mut [u8]) -> bool {
        let Some(src) = self.slot_bytes(slot, off, buf.len()) else {
            return false;
        };
        // SAFETY: `src` has buf.len() bytes of the slot mapping; the stub may
        // write concurrently, which only gives a mixed copy.
        unsafe { std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
        true
    }

    fn slot_write_bytes(&self, slot: u64, off: u64, buf: &[u8]) -> bool {
        let Some(dst) = self.slot_bytes(slot, off, buf.len()) else {
            return false;
        };
        // SAFETY: as in slot_read_bytes.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), dst, buf.len()) };
        true
    }

    fn mark_dead(&self, status: i32) {
        self.exit_status.store(status, Ordering::Relaxed);
        self.dead.store(true, Ordering::SeqCst);
    }

    /// Runs a command in the stopped thread of `slot` and waits for it.
    fn command(
        &self,
        slot: u64,
        state: u32,
        nr: i64,
        args: [u64; 6],
    ) -> Result<i64, PlatformError> {
        let page = self.page(slot);
        page.cmd_nr.store(nr as u64, Ordering::Relaxed);
        for (a, v) in page.cmd_args.iter().zip(args) {
            a.store(v, Ordering::Relaxed);
        }
        self.publish(page, state);
        self.await_done(page)?;
        Ok(page.cmd_result.load(Ordering::Relaxed))
    }

    /// Stores a sentry state and wakes the stub if it sleeps; returns
    /// whether it slept.
    fn publish(&self, page: &StubPage, state: u32) -> bool {
        page.state.store(state, Ordering::SeqCst);
        // SeqCst store then load: pairs with the stub's store(stub_sleeping);
        // mfence; FUTEX_WAIT(state), so the stub either sees the new state or
        // we see it sleeping.
        if page.stub_sleeping.load(Ordering::SeqCst) != 0 {
            sys::futex_wake(&page.state, 1);
            return true;
        }
        false
    }

    fn await_done(&self, page: &StubPage) -> Result<(), PlatformError> {
        let spin = self.shared.spin.load(Ordering::Relaxed);
        for _ in 0..spin {
            if page.state.load(Ordering::Acquire) == ST_CMD_DONE {
                return Ok(());
            }
            std::hint::spin_loop();
        }
        let start = Instant::now();
        loop {
            page.sentry_sleeping.store(1, Ordering::SeqCst);
            let st = page.state.load(Ordering::SeqCst);
            if st == ST_CMD_DONE {
                page.sentry_sleeping.store(0, Ordering::Relaxed);
                return Ok(());
            }
            if self.dead.load(Ordering::SeqCst) {
                return Err(PlatformError::Dead);
            }
            if start.elapsed() > COMMAND_DEADLINE {
                self.kill_now();
                return Err(PlatformError::Protocol("a command did not finish"));
            }
            sys::futex_wait(&page.state, st, Some(Duration::from_millis(50)));
        }
    }

    pub(crate) fn kill_now(&self) {
        self.send(libc::SIGKILL);
    }

    pub(crate) fn send(&self, signo: i32) {
        // SAFETY: pidfd_send_signal on our own pidfd; no pointers passed.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd() as i64,
                signo as i64,
                0i64,
                0i64,
            );
        }
    }

    pub(crate) fn alloc_slot(&self) -> Result<(u64, bool), PlatformError> {
        let mut guard = self.slot_used.lock();
        let (used, mapped) = &mut *guard;
        for i in 0..*mapped {
            if !used[i as usize] && self.page(i).host_tid.load(Ordering::Acquire) == 0 {
                used[i as usize] = true;
                return Ok((i, false));
            }
        }
        if *mapped >= MAX_SLOTS {
            return Err(PlatformError::TooManyThreads);
        }
        let i = *mapped;
        *mapped += 1;
        used.push(true);
        Ok((i, true))
    }

    pub(crate) fn free_slot(&self, slot: u64) {
        if let Some(u) = self.slot_used.lock().0.get_mut(slot as usize) {
            *u = false;
        }
    }
}

impl AddressSpace for StubProcess {
    fn kill(&self) {
        self.kill_now();
    }
    fn signal(&self, signo: i32) {
        if !self.is_dead() {
            self.send(signo);
        }
    }
    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }
    fn host_pid(&self) -> i32 {
        self.pid
    }
}

impl Drop for StubProcess {
    fn drop(&mut self) {
        if !self.is_dead() {
            self.kill_now();
        }
    }
}

struct ThreadInterrupter {
    proc: Arc<StubProcess>,
    host_tid: AtomicI32,
    slot: u64,
}

impl Interrupter for ThreadInterrupter {
    fn interrupt(&self) {
        let p = &self.proc;
        let tid = self.host_tid.load(Ordering::Acquire);
        if tid > 0 && !p.is_dead() {
            // SAFETY: tgkill with plain integers.
            unsafe {
                libc::syscall(
                    libc::SYS_tgkill,
                    p.pid as i64,
                    tid as i64,
                    SIG_INTERRUPT as i64,
                )
            };
        }
    }

    fn may_have_stopped(&self) -> bool {
        self.proc.page(self.slot).state.load(Ordering::Acquire) == ST_TRAPPED
            || self.proc.dead.load(Ordering::Relaxed)
    }
}

/// Whether a frame of `size` bytes at slot offset `off` lies in the signal stack.
fn frame_in_stack(off: u64, size: u64) -> bool {
    off % 8 == 0 && off >= SIGSTACK_OFF && off.checked_add(size).is_some_and(|e| e <= SLOT_SIZE)
}

/// What `resume` must do with the registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Frame {
    /// Stopped in the handler; the kernel's frame is at this slot offset
    /// once the full registers were loaded (`None`: only the hot line).
    Kernel(Option<u64>),
    /// A new thread waiting for its first registers.
    Started,
}

/// A guest thread on systrap.
pub struct SystrapContext {
    proc: Arc<StubProcess>,
    slot: u64,
    regs: Regs,
    /// The registers as read from the kernel frame, to write back only changes.
    loaded: Regs,
    fs_base: u64,
    frame: Frame,
    running: bool,
    interrupter: Arc<ThreadInterrupter>,
    /// The doorbell this thread's stops ring.
    worker: u32,
    /// Whether the stub spins while it waits for the sentry.
    spin: SpinController,
    /// The spin budget the stub's current wait runs with.
    last_spin: u32,
    /// Whether the host thread is pinned to its worker's CPU.
    paired: bool,
}

const SIGSYS: i32 = 31;

impl SystrapContext {
    fn page(&self) -> &StubPage {
        self.proc.page(self.slot)
    }

    fn fail(&mut self, why: &'static str) -> Option<Stop> {
        // The guest scribbled over its stub page: the address space is lost.
        self.proc.kill_now();
        let _ = why;
        Some(Stop::Died)
    }

    /// Reads a stop from the page's hot line; the full register set stays in
    /// the kernel frame until someone asks for it (`ensure_full`).
    fn load_stop(&mut self) -> Option<Stop> {
        let (raw, r) = {
            let page = self.page();
            let r: [u64; 7] = std::array::from_fn(|i| page.sysregs[i].load(Ordering::Relaxed));
            (page.signo.load(Ordering::Relaxed), r)
        };
        if raw == SIGNO_STARTED {
            self.frame = Frame::Started;
            return Some(Stop::Started);
        }
        let regs = &mut self.regs;
        [
            regs.rax, regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9,
        ] = r;
        self.frame = Frame::Kernel(None);
        let signo = (raw & 0xffff) as i32;
        match signo {
            SIGSYS => Some(Stop::Syscall {
                compat: raw & SIGNO_COMPAT != 0,
            }),
            s if s == SIG_INTERRUPT => Some(Stop::Interrupted),
            s @ (libc::SIGSEGV | libc::SIGBUS | libc::SIGFPE | libc::SIGILL | libc::SIGTRAP) => {
                let si_off = self.page().siginfo_off.load(Ordering::Relaxed);
                if !frame_in_stack(si_off, 32) || !self.ensure_full() {
                    return self.fail("stop frame outside the signal stack");
                }
                let si_code = (self.proc.slot_read(self.slot, si_off + 8) & 0xffff_ffff) as i32;
                let addr = self.proc.slot_read(self.slot, si_off + 16);
                Some(Stop::Fault {
                    signo: s,
                    code: si_code,
                    addr,
                })
            }
            _ => self.fail("unknown stop signal"),
        }
    }

    /// Loads every register from the kernel frame (once per stop). False if
    /// the page points outside the signal stack (the guest scribbled on it).
    fn ensure_full(&mut self) -> bool {
        match self.frame {
            Frame::Kernel(Some(_)) | Frame::Started => return true,
            Frame::Kernel(None) => {}
        }
        let uc_off = self.page().ucontext_off.load(Ordering::Relaxed);
        if !frame_in_stack(uc_off, uc::SIZE) {
            self.proc.kill_now();
            return false;
        }
        let mut a = [0u64; Regs::COUNT];
        for (i, v) in a.iter_mut().enumerate() {
            *v = self
                .proc
                .slot_read(self.slot, uc_off + uc::GREGS + 8 * i as u64);
        }
        // The sentry answers through the hot line's rax, which the stub
        // copies into the frame; keep the number it read there.
        let rax = self.regs.rax;
        self.regs = Regs::from_array(a);
        self.loaded = self.regs;
        self.regs.rax = rax;
        self.frame = Frame::Kernel(Some(uc_off));
        true
    }

    /// Slot offset and length of the kernel frame's XSAVE area, validated.
    fn fpstate_location(&mut self) -> Option<(u64, usize)> {
        if !self.ensure_full() {
            return None;
        }
        let Frame::Kernel(Some(uc_off)) = self.frame else {
            return None;
        };
        let ptr = self.proc.slot_read(self.slot, uc_off + uc::FPSTATE);
        let off = ptr.checked_sub(STUB_SLOTS + self.slot * SLOT_SIZE)?;
        if ptr == 0 || !frame_in_stack(off, 512) {
            return None;
        }
        // fx_sw_bytes at 464: magic1, extended_size (includes the trailing magic2).
        let sw = self.proc.slot_read(self.slot, off + 464);
        let len = if sw as u32 == 0x4650_5853 {
            (sw >> 32) as usize
        } else {
            512
        };
        frame_in_stack(off, len as u64).then_some((off, len))
    }

    fn write_enter_frame(&self) {
        let s = self.slot;
        let p = &self.proc;
        let base = ENTER_FRAME_OFF;
        p.slot_write(s, base + uc::FLAGS, uc::FLAGS_SS);
        p.slot_write(s, base + 8, 0);
        // uc_stack: the thread's signal stack, as set at its start.
        p.slot_write(
            s,
            base + uc::STACK,
            STUB_SLOTS + s * SLOT_SIZE + SIGSTACK_OFF,
        );
        p.slot_write(s, base + uc::STACK + 8, 0);
        p.slot_write(s, base + uc::STACK + 16, SLOT_SIZE - SIGSTACK_OFF);
        for (i, v) in self.regs.as_array().into_iter().enumerate() {
            p.slot_write(s, base + uc::GREGS + 8 * i as u64, v);
        }
        p.slot_write(s, base + uc::CSGSFS, uc::USER_CS_SS);
        for off in (uc::CSGSFS + 8..uc::FPSTATE).step_by(8) {
            p.slot_write(s, base + off, 0);
        }
        p.slot_write(s, base + uc::FPSTATE, 0); // no FP state: the kernel resets it
        p.slot_write(s, base + uc::SIGMASK, 0); // nothing blocked on the host
        self.page().frame_off.store(base, Ordering::Relaxed);
    }

    /// Pins the host thread to its worker's CPU (`pair`), or lets it run
    /// anywhere. Paired, a handoff in which both sides sleep wakes a thread
    /// on the same CPU, which costs about a quarter of a cross-CPU wake-up
    /// on the VMs this runs on; unpaired, a spinning worker keeps its CPU.
    fn place(&mut self, pair: bool) {
        let tid = self.interrupter.host_tid.load(Ordering::Relaxed);
        if tid > 0 {
            let shared = &self.proc.shared;
            if pair {
                sys::pin(tid, &[shared.worker_cpu(self.worker as usize)]);
            } else {
                sys::pin(tid, &shared.cpus);
            }
        }
        self.paired = pair;
    }

    fn host_syscall(&self, nr: i64, args: [u64; 6]) -> Result<i64, PlatformError> {
        if self.proc.is_dead() {
            return Err(PlatformError::Dead);
        }
        self.proc.command(self.slot, ST_CMD_SYSCALL, nr, args)
    }
}

fn errno_result(r: i64) -> Result<(), PlatformError> {
    if r < 0 {
        Err(PlatformError::Host(std::io::Error::from_raw_os_error(
            -r as i32,
        )))
    } else {
        Ok(())
    }
}

impl Context for SystrapContext {
    fn poll(&mut self) -> Option<Stop> {
        if !self.running {
            return None;
        }
        if self.page().state.load(Ordering::Acquire) != ST_TRAPPED {
            if self.proc.is_dead() {
                self.running = false;
                return Some(Stop::Died);
            }
            return None;
        }
        self.running = false;
        self.load_stop()
    }

    fn regs(&mut self) -> &Regs {
        self.ensure_full();
        &self.regs
    }

    fn regs_mut(&mut self) -> &mut Regs {
        self.ensure_full();
        &mut self.regs
    }

    fn syscall_args(&self) -> (u64, [u64; 6]) {
        (self.regs.rax, self.regs.syscall_args())
    }

    fn set_syscall_return(&mut self, value: u64) {
        self.regs.rax = value;
    }

    fn fs_base(&self) -> u64 {
        self.fs_base
    }

    fn fpstate(&mut self) -> Option<Vec<u8>> {
        let (off, len) = self.fpstate_location()?;
        let mut buf = vec![0u8; len];
        self.proc
            .slot_read_bytes(self.slot, off, &mut buf)
            .then_some(buf)
    }

    fn set_fpstate(&mut self, data: &[u8]) -> bool {
        match self.fpstate_location() {
            Some((off, len)) if len == data.len() => {
                self.proc.slot_write_bytes(self.slot, off, data)
            }
            _ => false,
        }
    }

    fn set_fs_base(&mut self, base: u64) -> Result<(), PlatformError> {
        let r = self.host_syscall(
            libc::SYS_arch_prctl,
            [0x1002u64 /* ARCH_SET_FS */, base, 0, 0, 0, 0],
        )?;
        errno_result(r)?;
        self.fs_base = base;
        Ok(())
    }

    fn resume(&mut self) -> Result<(), PlatformError> {
        if self.proc.is_dead() {
            return Err(PlatformError::Dead);
        }
        let state = match self.frame {
            Frame::Kernel(full) => {
                if let Some(uc_off) = full {
                    // Only the words the kernel changed (rax goes by the hot line).
                    let old = self.loaded.as_array();
                    for (i, v) in self.regs.as_array().into_iter().enumerate() {
                        if v != old[i] {
                            self.proc
                                .slot_write(self.slot, uc_off + uc::GREGS + 8 * i as u64, v);
                        }
                    }
                }
                self.page().sysregs[0].store(self.regs.rax, Ordering::Relaxed);
                ST_RESUME
            }
            Frame::Started => {
                self.write_enter_frame();
                ST_ENTER
            }
        };
        let pair = self.proc.shared.pair.load(Ordering::Relaxed);
        if self.paired != pair {
            self.place(pair);
        }
        // How long the stub spins for its next result: the platform's budget
        // while spinning pays for this thread.
        let budget = self.proc.shared.spin.load(Ordering::Relaxed);
        let spin = if budget > 0 && self.spin.should_spin() {
            budget
        } else {
            0
        };
        // The sentry's line: written only when it differs (the stub reads it
        // at every stop), which also repairs it if the guest scribbled on it.
        let page = self.proc.page(self.slot);
        if page.spin_iters.load(Ordering::Relaxed) != spin {
            page.spin_iters.store(spin, Ordering::Relaxed);
        }
        if page.worker.load(Ordering::Relaxed) != self.worker {
            page.worker.store(self.worker, Ordering::Relaxed);
        }
        self.running = true;
        let slept = self.proc.publish(page, state);
        // The stub's wait that ends here spun with the previous budget.
        if state == ST_RESUME && self.last_spin > 0 {
            self.spin.record(!slept);
        }
        self.last_spin = spin;
        Ok(())
    }

    fn will_block(&mut self) {
        // The stub re-reads its budget at every turn of its spin loop.
        self.proc
            .page(self.slot)
            .spin_iters
            .store(0, Ordering::Relaxed);
        // Its sleep says nothing about whether spinning pays.
        self.last_spin = 0;
    }

    fn map(&mut self, addr: u64, len: u64, prot: Prot, offset: u64) -> Result<(), PlatformError> {
        let r = self.host_syscall(
            libc::SYS_mmap,
            [
                addr,
                len,
                prot.bits() as u64,
                (libc::MAP_SHARED | libc::MAP_FIXED) as u64,
                STUB_MEMFILE_FD as u64,
                offset,
            ],
        )?;
        errno_result(r)
    }

    fn unmap(&mut self, addr: u64, len: u64) -> Result<(), PlatformError> {
        let r = self.host_syscall(libc::SYS_munmap, [addr, len, 0, 0, 0, 0])?;
        errno_result(r)
    }

    fn protect(&mut self, addr: u64, len: u64, prot: Prot) -> Result<(), PlatformError> {
        let r = self.host_syscall(libc::SYS_mprotect, [addr, len, prot.bits() as u64, 0, 0, 0])?;
        errno_result(r)
    }

    fn new_thread(
        &mut self,
        regs: &Regs,
        fs_base: u64,
        worker: usize,
    ) -> Result<Box<dyn Context>, PlatformError> {
        let proc = self.proc.clone();
        let (slot, fresh) = proc.alloc_slot()?;
        let slot_addr = STUB_SLOTS + slot * SLOT_SIZE;
        if fresh {
            let r = self.host_syscall(
                libc::SYS_mmap,
                [
                    slot_addr,
                    SLOT_SIZE,
                    (libc::PROT_READ | libc::PROT_WRITE) as u64,
                    (libc::MAP_SHARED | libc::MAP_FIXED) as u64,
                    STUB_SLOTFILE_FD as u64,
                    slot * SLOT_SIZE,
                ],
            );
            if let Err(e) = r.and_then(errno_result) {
                proc.free_slot(slot);
                return Err(e);
            }
        }
        let page = proc.page(slot);
        page.state.store(0, Ordering::Relaxed);
        page.worker.store(worker as u32, Ordering::Relaxed);
        page.spin_iters
            .store(proc.shared.spin.load(Ordering::Relaxed), Ordering::Relaxed);
        page.host_tid.store(0, Ordering::Relaxed);
        let host_tid_addr = slot_addr + std::mem::offset_of!(StubPage, host_tid) as u64;
        let flags = libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID;
        let r = proc.command(
            self.slot,
            ST_CMD_CLONE,
            0,
            [
                flags as u64,
                slot_addr + SLOT_SIZE,
                host_tid_addr,
                host_tid_addr,
                fs_base,
                0,
            ],
        );
        let tid = match r {
            Ok(t) if t > 0 => t as i32,
            Ok(e) => {
                proc.free_slot(slot);
                return Err(PlatformError::Host(std::io::Error::from_raw_os_error(
                    -e as i32,
                )));
            }
            Err(e) => {
                proc.free_slot(slot);
                return Err(e);
            }
        };
        Ok(Box::new(SystrapContext {
            interrupter: Arc::new(ThreadInterrupter {
                proc: proc.clone(),
                host_tid: AtomicI32::new(tid),
                slot,
            }),
            proc,
            slot,
            regs: *regs,
            loaded: *regs,
            fs_base,
            frame: Frame::Started,
            running: true,
            worker: worker as u32,
            spin: SpinController::default(),
            last_spin: 0,
            paired: false,
        }))
    }

    fn exit_thread(&mut self) {
        self.interrupter.host_tid.store(0, Ordering::Release);
        if !self.proc.is_dead() {
            let page = self.page();
            self.proc.publish(page, ST_CMD_EXIT);
        }
        self.running = false;
        self.proc.free_slot(self.slot);
    }

    fn interrupter(&self) -> Arc<dyn Interrupter> {
        self.interrupter.clone()
    }

    fn address_space(&self) -> Arc<dyn AddressSpace> {
        self.proc.clone()
    }

    fn set_worker(&mut self, worker: usize) {
        self.worker = worker as u32;
        if self.paired {
            self.place(true);
        }
        self.page().worker.store(self.worker, Ordering::Relaxed);
    }
}

/// Registry of live stub processes by host PID, for the reaper.
type Registry = Mutex<HashMap<i32, Weak<StubProcess>>>;

#[allow(dead_code)]
fn _assert_send() {
    fn f<T: Send>() {}
    f::<SystrapContext>();
    let _ = fence;
}
