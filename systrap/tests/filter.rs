//! Installs the stub seccomp filter for real and checks what the kernel does
//! with it.
//!
//! `bpf::simulate` checks the filter against the builder's own idea of BPF;
//! these tests check it against the kernel. Each case runs in a throwaway
//! child process (`fork`), because a seccomp filter cannot be removed. The
//! child maps three pages at a fixed address of its own, each holding a raw
//! syscall gadget, and installs
//! `stub_filter(CODE, CODE + PAGE, [exit_group, rt_sigreturn, getpid])`, so
//! only the middle page is the "stub code". From then on every syscall made
//! anywhere else traps, including the child's own exit: the child reports by
//! `exit_group` through the in-range gadget, with an exit code per outcome,
//! and the parent asserts the code.
//!
//! The child runs only raw syscalls and code that neither allocates nor
//! takes locks (the parent is a multi-threaded test harness). Its SIGSYS
//! handler is installed with the raw `rt_sigaction` so that its restorer is a
//! `rt_sigreturn` gadget inside the code range (glibc's `sigaction` always
//! substitutes its own restorer, which would trap); most cases still exit
//! straight from the handler, one returns through the restorer to check that
//! the trapped call then yields the value the handler wrote into RAX.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use sentry_systrap::bpf::{self, SockFilter, AUDIT_ARCH_X86_64};

/// The filter's code range: one page whose address has a non-zero low half,
/// so both bounds of the low-half test matter, inside a 4 GiB-aligned high
/// half nothing else in a test process uses.
const CODE: u64 = 0x6100_0001_0000;
const PAGE: u64 = 0x1000;
/// A copy of the gadgets just below the code range (same high half).
const BELOW: u64 = CODE - PAGE;
/// A copy of the gadgets just above the code range (same high half).
const ABOVE: u64 = CODE + PAGE;

/// `mov rax, rdi; mov rdi, rsi; mov rsi, rdx; mov rdx, rcx; syscall; ret`:
/// `extern "C" fn(nr, a, b, c) -> i64`.
const SYSCALL_GADGET: &[u8] = &[
    0x48, 0x89, 0xf8, 0x48, 0x89, 0xf7, 0x48, 0x89, 0xd6, 0x48, 0x89, 0xca, 0x0f, 0x05, 0xc3,
];
/// Offset of the instruction after `syscall` in [`SYSCALL_GADGET`].
const SYSCALL_GADGET_RET: u64 = 14;
/// `mov eax, 20 (i386 getpid); int 0x80; ret`.
const INT80_GADGET: &[u8] = &[0xb8, 20, 0, 0, 0, 0xcd, 0x80, 0xc3];
/// `mov eax, 15 (rt_sigreturn); syscall; ud2`: the signal restorer.
const RESTORER_GADGET: &[u8] = &[0xb8, 15, 0, 0, 0, 0x0f, 0x05, 0x0f, 0x0b];
const INT80_OFF: u64 = 0x40;
const RESTORER_OFF: u64 = 0x80;

/// What the handler writes into the trapped call's RAX.
const MARKER: i64 = -4242;
/// i386 `getpid`.
const I386_GETPID: i32 = 20;
/// `AUDIT_ARCH_I386`.
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// `__X32_SYSCALL_BIT`.
const X32_BIT: i64 = 0x4000_0000;
/// `SYS_SECCOMP`, the `si_code` of a seccomp SIGSYS.
const SYS_SECCOMP: i32 = 1;

// Exit codes of the child. Successes are 10 * case.
/// Setting up the child failed before the filter was installed.
const SETUP_FAILED: i32 = 1;
/// `int 0x80` raised SIGSEGV: the kernel has no 32-bit entry point.
const NO_IA32: i32 = 99;
/// Some other SIGSEGV.
const SEGV: i32 = 98;
/// The trapped syscall was not the expected one (+ case).
const WRONG_TRAP: i32 = 100;
/// A trap happened where the case expected none (+ case).
const UNEXPECTED_TRAP: i32 = 120;
/// The case's call returned instead of trapping, or returned a wrong value (+ case).
const WRONG_RESULT: i32 = 150;

/// The cases, one child each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
enum Case {
    /// Allowed syscall from the code range: passes.
    AllowedInRange = 1,
    /// Allowed syscall through libc: traps (instruction pointer, high half).
    AllowedViaLibc = 2,
    /// Syscall not in the list, from the code range: traps.
    NotListedInRange = 3,
    /// 32-bit `int 0x80` from the code range: traps (arch).
    Int80InRange = 4,
    /// The handler returns through the in-range restorer: the trapped call
    /// yields the handler's RAX and the child carries on.
    ReturnFromHandler = 5,
    /// Allowed syscall from the page just below the range: traps (low bound).
    AllowedBelowRange = 6,
    /// Allowed syscall from the page just above the range: traps (high bound).
    AllowedAboveRange = 7,
    /// x32 getpid from the code range: traps.
    X32InRange = 8,
}

impl Case {
    const ALL: [Case; 8] = [
        Case::AllowedInRange,
        Case::AllowedViaLibc,
        Case::NotListedInRange,
        Case::Int80InRange,
        Case::ReturnFromHandler,
        Case::AllowedBelowRange,
        Case::AllowedAboveRange,
        Case::X32InRange,
    ];

    fn from_i32(n: i32) -> Option<Case> {
        Case::ALL.into_iter().find(|c| *c as i32 == n)
    }

    fn pass_code(self) -> i32 {
        self as i32 * 10
    }

    /// The trap the case expects: (syscall number, arch, address of the
    /// instruction after the trapping one if known).
    fn expected_trap(self) -> Option<(i32, u32, Option<u64>)> {
        let x86 = AUDIT_ARCH_X86_64;
        let getpid = libc::SYS_getpid as i32;
        match self {
            Case::AllowedInRange => None,
            Case::AllowedViaLibc => Some((getpid, x86, None)),
            Case::NotListedInRange => Some((
                libc::SYS_getppid as i32,
                x86,
                Some(CODE + SYSCALL_GADGET_RET),
            )),
            Case::Int80InRange => Some((I386_GETPID, AUDIT_ARCH_I386, Some(CODE + INT80_OFF + 7))),
            Case::ReturnFromHandler => Some((libc::SYS_getppid as i32, x86, None)),
            Case::AllowedBelowRange => Some((getpid, x86, Some(BELOW + SYSCALL_GADGET_RET))),
            Case::AllowedAboveRange => Some((getpid, x86, Some(ABOVE + SYSCALL_GADGET_RET))),
            Case::X32InRange => Some((
                (libc::SYS_getpid | X32_BIT) as i32,
                x86,
                Some(CODE + SYSCALL_GADGET_RET),
            )),
        }
    }
}

// Per-child state (each child has its own copy after fork).
static CASE: AtomicI32 = AtomicI32::new(0);
static TRAPPED_NR: AtomicI32 = AtomicI32::new(-1);
static TRAPS: AtomicU64 = AtomicU64::new(0);

type Gadget = extern "C" fn(i64, i64, i64, i64) -> i64;

fn gadget_at(addr: u64) -> Gadget {
    // The child maps SYSCALL_GADGET at `addr` (CODE, BELOW or ABOVE) before
    // calling any of these.
    // SAFETY: 1. the address holds the gadget when called; 2. it follows the
    // C ABI: four integer arguments, result in RAX, clobbers only the
    // caller-saved rcx and r11.
    unsafe { std::mem::transmute::<usize, Gadget>(addr as usize) }
}

/// Exits through the in-range gadget: the only way out once the filter is in.
fn exit_via_gadget(code: i32) -> ! {
    gadget_at(CODE)(libc::SYS_exit_group, code as i64, 0, 0);
    // exit_group does not return; if it trapped, the handler exited.
    loop {
        std::hint::spin_loop();
    }
}

/// `siginfo_t` as the kernel fills it for SIGSYS (`_sigsys` member).
#[repr(C)]
struct SigsysInfo {
    signo: i32,
    errno: i32,
    code: i32,
    _pad: i32,
    call_addr: u64,
    syscall: i32,
    arch: u32,
}

/// The kernel's `struct sigaction` on x86-64.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

const SA_RESTORER: u64 = 0x0400_0000;

extern "C" fn on_sigsys(sig: i32, info: *mut SigsysInfo, uc: *mut libc::ucontext_t) {
    TRAPS.fetch_add(1, Relaxed);
    let case_no = CASE.load(Relaxed);
    // SAFETY: the kernel passes SA_SIGINFO handlers a valid siginfo and
    // ucontext for the duration of the handler; nothing else aliases them.
    let (info, uc) = unsafe { (&*info, &mut *uc) };
    TRAPPED_NR.store(info.syscall, Relaxed);
    uc.uc_mcontext.gregs[libc::REG_RAX as usize] = MARKER;
    let Some(case) = Case::from_i32(case_no) else {
        exit_via_gadget(WRONG_TRAP)
    };
    let Some((nr, arch, after)) = case.expected_trap() else {
        exit_via_gadget(UNEXPECTED_TRAP + case_no)
    };
    let ok = sig == libc::SIGSYS
        && info.signo == libc::SIGSYS
        && info.code == SYS_SECCOMP
        && info.syscall == nr
        && info.arch == arch
        && after.is_none_or(|a| info.call_addr == a);
    if !ok {
        exit_via_gadget(WRONG_TRAP + case_no);
    }
    if case != Case::ReturnFromHandler {
        exit_via_gadget(case.pass_code());
    }
    // Return: the kernel-pushed return address is the in-range restorer.
}

extern "C" fn on_sigsegv(_sig: i32, _info: *mut libc::siginfo_t, _uc: *mut libc::c_void) {
    if CASE.load(Relaxed) == Case::Int80InRange as i32 && TRAPS.load(Relaxed) == 0 {
        exit_via_gadget(NO_IA32);
    }
    exit_via_gadget(SEGV);
}

/// Installs `handler` for `sig` with the in-range restorer (raw syscall).
fn install_handler(sig: i32, handler: usize) -> bool {
    let act = KernelSigaction {
        handler,
        flags: libc::SA_SIGINFO as u64 | SA_RESTORER,
        restorer: (CODE + RESTORER_OFF) as usize,
        mask: 0,
    };
    // SAFETY: rt_sigaction reads `act` (valid, kernel layout, sigsetsize 8)
    // and writes nothing (oldact is null).
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            &act as *const KernelSigaction,
            std::ptr::null_mut::<KernelSigaction>(),
            8usize,
        )
    };
    r == 0
}

/// Maps a page at `addr` holding the gadgets, read + execute.
fn map_gadget_page(addr: u64) -> bool {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping; the
    // page is ours alone until mprotect makes it read-only.
    unsafe {
        let p = libc::mmap(
            addr as *mut libc::c_void,
            PAGE as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        );
        if p as u64 != addr {
            return false;
        }
        let base = p as *mut u8;
        std::ptr::copy_nonoverlapping(SYSCALL_GADGET.as_ptr(), base, SYSCALL_GADGET.len());
        std::ptr::copy_nonoverlapping(
            INT80_GADGET.as_ptr(),
            base.add(INT80_OFF as usize),
            INT80_GADGET.len(),
        );
        std::ptr::copy_nonoverlapping(
            RESTORER_GADGET.as_ptr(),
            base.add(RESTORER_OFF as usize),
            RESTORER_GADGET.len(),
        );
        libc::mprotect(p, PAGE as usize, libc::PROT_READ | libc::PROT_EXEC) == 0
    }
}

/// The child: set up, install the filter, run the case, report. Never returns.
fn child(case: Case, prog: &[SockFilter]) -> ! {
    let fail = |code: i32| -> ! {
        // SAFETY: _exit is async-signal-safe and ends the child.
        unsafe { libc::_exit(code) }
    };
    CASE.store(case as i32, Relaxed);
    if ![BELOW, CODE, ABOVE].into_iter().all(map_gadget_page) {
        fail(SETUP_FAILED);
    }
    if !install_handler(libc::SIGSYS, on_sigsys as *const () as usize)
        || !install_handler(libc::SIGSEGV, on_sigsegv as *const () as usize)
    {
        fail(SETUP_FAILED + 1);
    }
    let unblock: u64 = (1 << (libc::SIGSYS - 1)) | (1 << (libc::SIGSEGV - 1));
    // SAFETY: rt_sigprocmask reads one 8-byte set; getpid takes no
    // pointers.
    let (mask_ok, pid) = unsafe {
        (
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_UNBLOCK,
                &unblock as *const u64,
                std::ptr::null_mut::<u64>(),
                8usize,
            ) == 0,
            libc::syscall(libc::SYS_getpid),
        )
    };
    if !mask_ok {
        fail(SETUP_FAILED + 2);
    }
    if bpf::install(prog).is_err() {
        fail(SETUP_FAILED + 3);
    }

    // From here on only the gadget may make syscalls.
    let in_range = gadget_at(CODE);
    let wrong = WRONG_RESULT + case as i32;
    match case {
        Case::AllowedInRange => {
            let got = in_range(libc::SYS_getpid, 0, 0, 0);
            exit_via_gadget(if got == pid { case.pass_code() } else { wrong })
        }
        Case::AllowedViaLibc => {
            // SAFETY: getpid takes no arguments.
            unsafe { libc::syscall(libc::SYS_getpid) };
            exit_via_gadget(wrong)
        }
        Case::NotListedInRange => {
            in_range(libc::SYS_getppid, 0, 0, 0);
            exit_via_gadget(wrong)
        }
        Case::Int80InRange => {
            let int80: extern "C" fn() -> i64 = {
                // SAFETY: the int 0x80 gadget is mapped at CODE + INT80_OFF
                // and follows the C ABI (no arguments, result in EAX).
                unsafe { std::mem::transmute((CODE + INT80_OFF) as usize) }
            };
            int80();
            exit_via_gadget(wrong)
        }
        Case::ReturnFromHandler => {
            // SAFETY: getppid takes no arguments.
            let got = unsafe { libc::syscall(libc::SYS_getppid) };
            let ok = got == MARKER
                && TRAPS.load(Relaxed) == 1
                && TRAPPED_NR.load(Relaxed) == libc::SYS_getppid as i32;
            exit_via_gadget(if ok { case.pass_code() } else { wrong })
        }
        Case::AllowedBelowRange => {
            gadget_at(BELOW)(libc::SYS_getpid, 0, 0, 0);
            exit_via_gadget(wrong)
        }
        Case::AllowedAboveRange => {
            gadget_at(ABOVE)(libc::SYS_getpid, 0, 0, 0);
            exit_via_gadget(wrong)
        }
        Case::X32InRange => {
            in_range(libc::SYS_getpid | X32_BIT, 0, 0, 0);
            exit_via_gadget(wrong)
        }
    }
}

/// Runs `case` in a child and returns its exit code; kills and reaps a
/// child that does not finish within 10 s.
fn run_case(case: Case) -> i32 {
    let allowed = [
        libc::SYS_exit_group,
        libc::SYS_rt_sigreturn,
        libc::SYS_getpid,
    ];
    let prog = bpf::stub_filter(CODE, CODE + PAGE, &allowed);
    // SAFETY: the child runs only `child`, which makes raw syscalls and
    // neither allocates nor locks, and always ends in _exit or exit_group.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        child(case, &prog);
    }
    let start = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer; `pid` is our child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            panic!("waitpid: {}", std::io::Error::last_os_error());
        }
        if start.elapsed() > Duration::from_secs(10) {
            // SAFETY: `pid` is our unreaped child, so the id is still ours.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("{case:?}: child hung; killed it");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        libc::WIFEXITED(status),
        "{case:?}: child did not exit normally (status {status:#x}, signal {})",
        libc::WTERMSIG(status)
    );
    libc::WEXITSTATUS(status)
}

fn check(case: Case) {
    let code = run_case(case);
    assert_eq!(code, case.pass_code(), "{case:?}: exit code {code}");
}

#[test]
fn allowed_syscall_from_code_range_passes() {
    check(Case::AllowedInRange);
}

#[test]
fn allowed_syscall_through_libc_traps() {
    check(Case::AllowedViaLibc);
}

#[test]
fn unlisted_syscall_from_code_range_traps() {
    check(Case::NotListedInRange);
}

#[test]
fn int80_from_code_range_traps() {
    let code = run_case(Case::Int80InRange);
    if code == NO_IA32 {
        eprintln!("skipped: this kernel has no 32-bit syscall entry (int 0x80 faulted)");
        return;
    }
    assert_eq!(code, Case::Int80InRange.pass_code(), "exit code {code}");
}

#[test]
fn handler_returns_through_in_range_restorer() {
    check(Case::ReturnFromHandler);
}

#[test]
fn allowed_syscall_just_below_code_range_traps() {
    check(Case::AllowedBelowRange);
}

#[test]
fn allowed_syscall_just_above_code_range_traps() {
    check(Case::AllowedAboveRange);
}

#[test]
fn x32_syscall_from_code_range_traps() {
    check(Case::X32InRange);
}
