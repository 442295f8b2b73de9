//! The in-process SIGSYS floor: what a seccomp trap and `rt_sigreturn` cost
//! with nobody else to wake.
//!
//! `sentry bench` starts a copy of itself with the hidden option
//! `--floor-child`; that process calls [`run`], which
//!
//! 1. maps the guest's data segment at [`guest::DATA_BASE`] and copies the
//!    parameter page into it, exactly as the ELF loader would;
//! 2. installs a SIGSYS handler that answers the call in the ucontext
//!    (`rax` = 0, or the byte count for `read`/`write`) and returns;
//! 3. installs a seccomp filter that traps the measured syscall number,
//!    but only from the guest loop's `syscall` instruction, so the guest's
//!    own `open`, `clone`, `futex` and final `write` go to the host kernel;
//! 4. jumps to the guest code where it lies in the sentry's text.
//!
//! The guest then runs as it does natively or in the sandbox and writes its
//! samples to fd 1, so the three runners share one loop and one output
//! format. Extra threads are raw clones that inherit the filter and run only
//! the guest code and the handler, which touches nothing but its ucontext.

use std::sync::atomic::{AtomicBool, Ordering};

use sentry_systrap::bpf::{self, Builder, SockFilter, Target};

use super::guest::{self, GuestSpec};
use super::BenchError;

/// The handler copies `rdx` (the byte count) into `rax` instead of 0.
static ANSWER_COUNT: AtomicBool = AtomicBool::new(false);

/// SIGSYS handler: make the trapped call return without doing it.
extern "C" fn on_sigsys(_sig: libc::c_int, _info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let uc = ctx.cast::<libc::ucontext_t>();
    // Relaxed: the flag is set once before the filter is installed, and
    // installing it (a syscall) orders that store before any trap.
    let count = ANSWER_COUNT.load(Ordering::Relaxed);
    // The kernel passes an SA_SIGINFO handler a valid, writable ucontext_t
    // for the interrupted thread, on that thread's stack, and nothing else
    // touches it until the handler returns.
    // SAFETY: `uc` is that live ucontext, used exclusively here.
    unsafe {
        let gregs = &mut (*uc).uc_mcontext.gregs;
        gregs[libc::REG_RAX as usize] = if count {
            gregs[libc::REG_RDX as usize]
        } else {
            0
        };
    }
}

/// The filter: SECCOMP_RET_TRAP for syscall `nr` made from the `syscall`
/// instruction at `insn`, SECCOMP_RET_ALLOW for everything else.
fn filter(nr: u32, insn: u64) -> Result<Vec<SockFilter>, BenchError> {
    // The kernel reports the address after the instruction; accept either.
    let after = insn + 2;
    if insn >> 32 != after >> 32 {
        return Err(BenchError::Floor(
            "the guest's syscall instruction straddles a 4 GiB boundary".into(),
        ));
    }
    Ok(Builder::default()
        .load(bpf::SD_ARCH)
        .jeq(bpf::AUDIT_ARCH_X86_64, Target::Next, Target::Allow)
        .load(bpf::SD_NR)
        .jeq(nr, Target::Next, Target::Allow)
        .load(bpf::SD_IP_HI)
        .jeq((after >> 32) as u32, Target::Next, Target::Allow)
        .load(bpf::SD_IP_LO)
        .jeq(after as u32, Target::Trap, Target::Next)
        .jeq(insn as u32, Target::Trap, Target::Allow)
        .build())
}

/// Runs the guest loop in this process under the trapping filter. Returns
/// only on failure; on success the guest exits the process.
pub fn run(spec: &GuestSpec, answer_count: bool) -> BenchError {
    match setup(spec, answer_count) {
        Err(e) => e,
        Ok(entry) => {
            // `entry` is the guest code in our own text; it reads only the
            // parameter page and data mapping `setup` made at DATA_BASE, and
            // never returns (it ends in exit_group, or exit in extra threads).
            // Jumping there may clobber every register and the stack below
            // ours: nothing of this process runs afterwards.
            // SAFETY: `entry` is that never-returning guest code (see above).
            unsafe { core::arch::asm!("jmp {0}", in(reg) entry, options(noreturn)) }
        }
    }
}

fn os_error(what: &str) -> BenchError {
    BenchError::Floor(format!("{what}: {}", std::io::Error::last_os_error()))
}

/// Maps the data segment, installs the handler and the filter; returns the
/// entry point.
fn setup(spec: &GuestSpec, answer_count: bool) -> Result<u64, BenchError> {
    let size = spec.layout.data_size() as usize;
    // SAFETY: an anonymous mapping at a fixed address that must be free
    // (MAP_FIXED_NOREPLACE fails rather than replacing anything of ours).
    let at = unsafe {
        libc::mmap(
            guest::DATA_BASE as *mut libc::c_void,
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        )
    };
    if at == libc::MAP_FAILED {
        return Err(os_error(&format!(
            "cannot map the guest data at {:#x}",
            guest::DATA_BASE
        )));
    }
    if at as u64 != guest::DATA_BASE {
        return Err(BenchError::Floor(format!(
            "the kernel placed the guest data at {at:p}, not at {:#x} (too old for MAP_FIXED_NOREPLACE?)",
            guest::DATA_BASE
        )));
    }
    let params = spec.params_page();
    // SAFETY: the mapping above is `size` >= PAGE writable bytes, ours alone,
    // and `params` is one page that does not overlap it.
    unsafe {
        std::ptr::copy_nonoverlapping(params.as_ptr(), at.cast::<u8>(), params.len());
    }

    ANSWER_COUNT.store(answer_count, Ordering::Relaxed);
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = on_sigsys
        as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
        as libc::sighandler_t;
    sa.sa_flags = libc::SA_SIGINFO;
    // SAFETY: the handler is async-signal-safe (it writes the ucontext only)
    // and `sa` is a valid sigaction; the old action is not wanted.
    if unsafe { libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()) } != 0 {
        return Err(os_error("cannot install the SIGSYS handler"));
    }

    let nr = u32::try_from(spec.nr)
        .map_err(|_| BenchError::Floor(format!("syscall number {} out of range", spec.nr)))?;
    let prog = filter(nr, guest::syscall_insn_in_text())?;
    bpf::install(&prog)
        .map_err(|e| BenchError::Floor(format!("cannot install the seccomp filter: {e}")))?;
    Ok(guest::entry_in_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_decides_by_number_arch_and_both_halves_of_the_ip() {
        let insn = 0x7f12_3456_7000u64;
        let nr = libc::SYS_getpid as u32;
        let prog = filter(nr, insn).expect("filter");
        let arch = bpf::AUDIT_ARCH_X86_64;
        let run = |arch, nr, ip| bpf::simulate(&prog, arch, nr, ip);
        assert_eq!(run(arch, nr, insn), bpf::RET_TRAP);
        assert_eq!(run(arch, nr, insn + 2), bpf::RET_TRAP);
        assert_eq!(run(arch, nr, insn + 4), bpf::RET_ALLOW);
        assert_eq!(run(arch, nr, insn + (1 << 32)), bpf::RET_ALLOW);
        assert_eq!(run(arch, nr + 1, insn), bpf::RET_ALLOW);
        assert_eq!(run(0x4000_0003, nr, insn), bpf::RET_ALLOW);
        assert!(filter(nr, 0xffff_fffe).is_err());
    }

    /// Runs the filter in a throwaway child: the measured call from the
    /// guest's instruction traps; the same number from anywhere else passes.
    #[test]
    fn filter_traps_only_the_guest_instruction() {
        let insn = guest::syscall_insn_in_text();
        let prog = filter(libc::SYS_getppid as u32, insn).expect("filter");
        let _serial = super::super::SPAWN_LOCK
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // SAFETY: fork in a test; the child only makes raw syscalls and
        // _exit, all async-signal-safe, before exiting.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: as above; the child ends in _exit whatever happens.
            unsafe {
                libc::signal(libc::SIGSYS, libc::SIG_DFL);
                // No core file from the expected SIGSYS.
                let no_core = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &no_core);
                if bpf::install(&prog).is_err() {
                    libc::_exit(10);
                }
                // getppid from libc's syscall(): allowed.
                if libc::syscall(libc::SYS_getppid) <= 0 {
                    libc::_exit(11);
                }
                // getppid from the guest's instruction: SIGSYS (default
                // action: the child dies of it).
                core::arch::asm!(
                    "jmp {insn}",
                    insn = in(reg) insn,
                    in("rax") libc::SYS_getppid,
                    options(noreturn),
                );
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS,
            "expected the child to die of SIGSYS, status {status:#x}"
        );
    }
}
