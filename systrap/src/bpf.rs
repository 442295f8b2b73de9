//! A small classic-BPF builder and the stub's seccomp filter.
//!
//! seccompiler cannot test the instruction pointer, and the stub filter is
//! all about it: a syscall is allowed only when it is one of the stub's few
//! and it was issued from the stub's code, comparing both 32-bit halves of the
//! instruction pointer. Everything else (every guest syscall, 32-bit and x32
//! entry points included) raises SIGSYS.
//!
//! ```text
//!  arch != x86-64            -> TRAP
//!  nr >= 0x4000_0000 (x32)   -> TRAP
//!  ip.hi != code.hi          -> TRAP
//!  ip.lo <  code.lo          -> TRAP
//!  ip.lo >= code.end.lo      -> TRAP
//!  nr in allowed             -> ALLOW
//!  otherwise                 -> TRAP
//! ```

/// One classic BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// `SECCOMP_RET_TRAP`: deliver SIGSYS.
pub const RET_TRAP: u32 = 0x0003_0000;
/// `SECCOMP_RET_ALLOW`.
pub const RET_ALLOW: u32 = 0x7fff_0000;
/// `AUDIT_ARCH_X86_64`.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

// Offsets in `struct seccomp_data`.
pub const SD_NR: u32 = 0;
pub const SD_ARCH: u32 = 4;
pub const SD_IP_LO: u32 = 8;
pub const SD_IP_HI: u32 = 12;

/// A jump target of the builder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Next,
    Trap,
    Allow,
}

enum Insn {
    Load(u32),
    Jump {
        op: u16,
        k: u32,
        jt: Target,
        jf: Target,
    },
}

/// Builds a filter whose conditional jumps go to the next instruction or to
/// one of two shared return instructions at the end.
#[derive(Default)]
pub struct Builder {
    insns: Vec<Insn>,
}

impl Builder {
    pub fn load(mut self, offset: u32) -> Self {
        self.insns.push(Insn::Load(offset));
        self
    }
    pub fn jeq(mut self, k: u32, jt: Target, jf: Target) -> Self {
        self.insns.push(Insn::Jump {
            op: BPF_JEQ_K,
            k,
            jt,
            jf,
        });
        self
    }
    pub fn jge(mut self, k: u32, jt: Target, jf: Target) -> Self {
        self.insns.push(Insn::Jump {
            op: BPF_JGE_K,
            k,
            jt,
            jf,
        });
        self
    }

    /// Resolves the jumps; the program ends `ret TRAP; ret ALLOW`.
    /// Falling off the last instruction traps.
    pub fn build(self) -> Vec<SockFilter> {
        let n = self.insns.len();
        assert!(n + 2 < 256, "filter too long for 8-bit jumps");
        let trap_at = n;
        let allow_at = n + 1;
        let rel = |i: usize, t: Target| -> u8 {
            let to = match t {
                Target::Next => i + 1,
                Target::Trap => trap_at,
                Target::Allow => allow_at,
            };
            (to - i - 1) as u8
        };
        let mut out: Vec<SockFilter> = self
            .insns
            .iter()
            .enumerate()
            .map(|(i, insn)| match *insn {
                Insn::Load(off) => SockFilter {
                    code: BPF_LD_W_ABS,
                    jt: 0,
                    jf: 0,
                    k: off,
                },
                Insn::Jump { op, k, jt, jf } => SockFilter {
                    code: op,
                    jt: rel(i, jt),
                    jf: rel(i, jf),
                    k,
                },
            })
            .collect();
        out.push(SockFilter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: RET_TRAP,
        });
        out.push(SockFilter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: RET_ALLOW,
        });
        out
    }
}

/// Sets `no_new_privs` and installs `prog` as a seccomp filter on the
/// calling thread. Raw syscalls only, no allocation: safe in a forked child.
pub fn install(prog: &[SockFilter]) -> std::io::Result<()> {
    let len =
        u16::try_from(prog.len()).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let fprog = libc::sock_fprog {
        len,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::syscall(libc::SYS_prctl, libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: SockFilter has the layout of `struct sock_filter`; `fprog`
    // points at `prog`, which outlives the call (the kernel copies it).
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Host syscalls the stub itself makes (and only from its code).
pub const STUB_SYSCALLS: &[i64] = &[
    libc::SYS_futex,
    libc::SYS_rt_sigreturn,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_arch_prctl,
    libc::SYS_clone,
    libc::SYS_sigaltstack,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// The stub filter: `allowed` syscalls pass when issued from
/// `[code_start, code_end)`; everything else traps.
pub fn stub_filter(code_start: u64, code_end: u64, allowed: &[i64]) -> Vec<SockFilter> {
    assert_eq!(
        code_start >> 32,
        (code_end - 1) >> 32,
        "code range crosses 4 GiB"
    );
    let hi = (code_start >> 32) as u32;
    let lo = code_start as u32;
    // code_end's low half, or 0 when code_end sits exactly on a 4 GiB line
    // (then every low half above `lo` is inside).
    let end_lo = code_end as u32;
    let mut b = Builder::default()
        .load(SD_ARCH)
        .jeq(AUDIT_ARCH_X86_64, Target::Next, Target::Trap)
        .load(SD_NR)
        .jge(0x4000_0000, Target::Trap, Target::Next)
        .load(SD_IP_HI)
        .jeq(hi, Target::Next, Target::Trap)
        .load(SD_IP_LO)
        .jge(lo, Target::Next, Target::Trap);
    if end_lo != 0 {
        b = b.jge(end_lo, Target::Trap, Target::Next);
    }
    b = b.load(SD_NR);
    for &nr in allowed {
        b = b.jeq(nr as u32, Target::Allow, Target::Next);
    }
    b.build()
}

/// Runs a filter the way the kernel does, for tests and for checking the
/// builder: returns the action for `(arch, nr, ip)`.
pub fn simulate(prog: &[SockFilter], arch: u32, nr: u32, ip: u64) -> u32 {
    let mut acc = 0u32;
    let mut pc = 0usize;
    loop {
        let Some(i) = prog.get(pc) else {
            return RET_TRAP;
        };
        match i.code {
            BPF_LD_W_ABS => {
                acc = match i.k {
                    SD_NR => nr,
                    SD_ARCH => arch,
                    SD_IP_LO => ip as u32,
                    SD_IP_HI => (ip >> 32) as u32,
                    _ => 0,
                };
                pc += 1;
            }
            BPF_JEQ_K | BPF_JGE_K => {
                let taken = if i.code == BPF_JEQ_K {
                    acc == i.k
                } else {
                    acc >= i.k
                };
                pc += 1 + if taken { i.jt as usize } else { i.jf as usize };
            }
            BPF_RET_K => return i.k,
            _ => return RET_TRAP,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: u64 = 0x7000_0000_0000;
    const END: u64 = START + 0x1_0000;

    #[test]
    fn simulated_filter_allows_only_stub_code() {
        let p = stub_filter(START, END, STUB_SYSCALLS);
        let futex = libc::SYS_futex as u32;
        assert_eq!(
            simulate(&p, AUDIT_ARCH_X86_64, futex, START + 0x40),
            RET_ALLOW
        );
        assert_eq!(simulate(&p, AUDIT_ARCH_X86_64, futex, END - 1), RET_ALLOW);
        // outside the range, by either half
        assert_eq!(simulate(&p, AUDIT_ARCH_X86_64, futex, START - 1), RET_TRAP);
        assert_eq!(simulate(&p, AUDIT_ARCH_X86_64, futex, END), RET_TRAP);
        assert_eq!(simulate(&p, AUDIT_ARCH_X86_64, futex, 0x40_0000), RET_TRAP);
        assert_eq!(
            simulate(
                &p,
                AUDIT_ARCH_X86_64,
                futex,
                (START & 0xffff_ffff) | (1 << 32)
            ),
            RET_TRAP
        );
        // not a stub syscall, wrong arch, x32
        assert_eq!(
            simulate(&p, AUDIT_ARCH_X86_64, libc::SYS_getpid as u32, START + 0x40),
            RET_TRAP
        );
        assert_eq!(simulate(&p, 0x4000_0003, futex, START + 0x40), RET_TRAP);
        assert_eq!(
            simulate(&p, AUDIT_ARCH_X86_64, futex | 0x4000_0000, START + 0x40),
            RET_TRAP
        );
    }
}
