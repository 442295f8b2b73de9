//! The built-in bench guest: a timed syscall loop in position-independent
//! assembly, and the static ELF file that carries it.
//!
//! The loop is assembled into the sentry binary (between the symbols
//! `sentry_bench_guest_start` and `sentry_bench_guest_end`), so `sentry
//! bench` needs no compiler at run time. [`elf_image`] copies those bytes
//! into a minimal `ET_EXEC` file with two segments; the in-process floor
//! ([`super::floor`]) runs the very same bytes in place, after mapping the
//! data segment itself.
//!
//! ```text
//!  file offset                       guest address
//!  0x000  ELF header, 3 phdrs        TEXT_BASE            PT_LOAD r-x
//!  0x100  guest code                 TEXT_BASE + 0x100    (entry)
//!  page   Params (one page)          DATA_BASE            PT_LOAD rw-
//!         (not in the file)          DATA_BASE + 0x1000   thread stacks, STACK_SIZE each
//!                                    bufs                 samples: threads x calls x u64
//! ```
//!
//! The code reads everything it needs from [`Params`] at the fixed address
//! [`DATA_BASE`]: it opens `path` (if set) and puts the descriptor in
//! `args[0]`, starts `threads - 1` extra threads with a raw `clone`, and each
//! thread makes `calls` syscalls `nr(args)`, storing the `rdtsc` cycles of
//! each (lfence-ordered, around the `syscall` instruction) in its part of
//! `bufs`. The main thread waits for the others on the futex word `running`,
//! writes every buffer raw to fd 1 (thread 0's samples first) and exits 0.
//! A failing call writes one line to fd 2 and exits with the errno as status.

use std::mem::offset_of;

use sentry_kernel::loader::elf::{self, Phdr};

/// Where the text segment (headers and code) is loaded.
pub const TEXT_BASE: u64 = 0x40_0000;
/// File offset (and offset from [`TEXT_BASE`]) of the guest code.
const CODE_OFF: u64 = 0x100;
/// Where the data segment ([`Params`], stacks, samples) is loaded: 1 GiB,
/// clear of a non-PIE sentry's text and heap (the floor maps it in the
/// sentry) and below 4 GiB, so the code loads it with a 32-bit move.
pub const DATA_BASE: u64 = 0x4000_0000;
/// Page size of the image.
pub const PAGE: u64 = 0x1000;
/// Stack bytes per extra thread (the floor's SIGSYS frames land here too).
pub const STACK_SIZE: u64 = 0x1_0000;
/// Largest sample area accepted (threads x calls x 8 bytes).
pub const MAX_SAMPLE_BYTES: u64 = 64 << 20;

/// `clone` flags of the extra threads: a thread of the same process.
const CLONE_FLAGS: i32 = libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM;

/// The parameter block at [`DATA_BASE`], read by the guest code.
#[repr(C)]
pub struct Params {
    /// The syscall to time.
    pub nr: u64,
    /// Its arguments; `args[0]` is replaced by the opened fd when `path` is set.
    pub args: [u64; 6],
    /// Calls per thread, warm-up included.
    pub calls: u64,
    /// Threads, the main one included.
    pub threads: u64,
    /// Base of the sample buffers.
    pub bufs: u64,
    /// Base of the extra threads' stacks.
    pub stacks: u64,
    /// `open` flags for `path`.
    pub open_flags: u64,
    /// Extra threads still running (futex word; set by the guest).
    pub running: u32,
    /// Padding.
    pub pad: u32,
    /// NUL-terminated path to open before the loop; empty for none.
    pub path: [u8; 64],
    /// Scratch memory for the syscall's buffers (timespec, one byte, ...).
    pub scratch: [u8; 64],
}

const _: () = {
    assert!(DATA_BASE < 1 << 32);
    assert!(offset_of!(Params, running) % 4 == 0);
    assert!(std::mem::size_of::<Params>() as u64 <= PAGE);
};

/// Address of [`Params::scratch`] in the guest.
pub const SCRATCH: u64 = DATA_BASE + offset_of!(Params, scratch) as u64;

/// Where things lie in the data segment for a given run shape.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Threads, the main one included.
    pub threads: u64,
    /// Calls per thread, warm-up included.
    pub calls: u64,
}

impl Layout {
    /// Base of the extra threads' stacks.
    pub fn stacks(&self) -> u64 {
        DATA_BASE + PAGE
    }

    /// Base of the sample buffers (page aligned).
    pub fn bufs(&self) -> u64 {
        self.stacks() + self.threads * STACK_SIZE
    }

    /// Bytes of samples the guest writes to fd 1.
    pub fn sample_bytes(&self) -> u64 {
        self.threads * self.calls * 8
    }

    /// Size of the data segment in memory.
    pub fn data_size(&self) -> u64 {
        (self.bufs() - DATA_BASE + self.sample_bytes()).next_multiple_of(PAGE)
    }
}

/// What to call and how often: the run-time inputs of the guest.
#[derive(Clone, Debug)]
pub struct GuestSpec {
    /// Syscall number.
    pub nr: u64,
    /// Arguments (absolute guest addresses where they point).
    pub args: [u64; 6],
    /// File to open before the loop, its fd going to `args[0]`.
    pub open: Option<(&'static str, i32)>,
    /// Run shape.
    pub layout: Layout,
}

impl GuestSpec {
    /// The parameter page, as the guest expects it at [`DATA_BASE`].
    pub fn params_page(&self) -> Vec<u8> {
        let mut page = vec![0u8; PAGE as usize];
        let mut put = |off: usize, v: u64| page[off..off + 8].copy_from_slice(&v.to_le_bytes());
        put(offset_of!(Params, nr), self.nr);
        for (i, a) in self.args.iter().enumerate() {
            put(offset_of!(Params, args) + 8 * i, *a);
        }
        put(offset_of!(Params, calls), self.layout.calls);
        put(offset_of!(Params, threads), self.layout.threads);
        put(offset_of!(Params, bufs), self.layout.bufs());
        put(offset_of!(Params, stacks), self.layout.stacks());
        if let Some((path, flags)) = self.open {
            put(offset_of!(Params, open_flags), flags as u64);
            let at = offset_of!(Params, path);
            // Paths are fixed strings of ours, far shorter than the field.
            page[at..at + path.len()].copy_from_slice(path.as_bytes());
        }
        page
    }
}

// The guest loop. Register use: %rbx = Params, %r12 = thread index,
// %r13 = next sample slot, %r14 = calls left, %r15 = start cycles.
core::arch::global_asm!(
    r#"
    .pushsection .text.sentry_bench_guest,"ax",@progbits
    .balign 64
    .globl sentry_bench_guest_start
    .type sentry_bench_guest_start,@function
sentry_bench_guest_start:
    movl ${PARAMS}, %ebx
    cmpb $0, {P_PATH}(%rbx)
    je 1f
    movl ${SYS_OPEN}, %eax
    leaq {P_PATH}(%rbx), %rdi
    movq {P_OPEN_FLAGS}(%rbx), %rsi
    xorl %edx, %edx
    syscall
    leaq sentry_bench_msg_open(%rip), %rsi
    movl $(sentry_bench_msg_open_end - sentry_bench_msg_open), %edx
    testq %rax, %rax
    js sentry_bench_guest_fail
    movq %rax, {P_ARGS}(%rbx)
1:
    /* Start threads 1..threads-1; a child keeps the parent's %r12. */
    movq {P_THREADS}(%rbx), %rax
    decq %rax
    movl %eax, {P_RUNNING}(%rbx)
    movl $1, %r12d
2:  cmpq {P_THREADS}(%rbx), %r12
    jae 3f
    movq %r12, %rsi
    imulq ${STACK_SIZE}, %rsi
    addq {P_STACKS}(%rbx), %rsi
    movl ${CLONE_FLAGS}, %edi
    xorl %edx, %edx
    xorl %r10d, %r10d
    xorl %r8d, %r8d
    movl ${SYS_CLONE}, %eax
    syscall
    testq %rax, %rax
    jz sentry_bench_guest_thread
    leaq sentry_bench_msg_clone(%rip), %rsi
    movl $(sentry_bench_msg_clone_end - sentry_bench_msg_clone), %edx
    js sentry_bench_guest_fail
    incq %r12
    jmp 2b
3:  xorl %r12d, %r12d
    call sentry_bench_guest_loop
    /* Wait until every extra thread is done. */
4:  movl {P_RUNNING}(%rbx), %edx
    testl %edx, %edx
    jz 5f
    movl ${SYS_FUTEX}, %eax
    leaq {P_RUNNING}(%rbx), %rdi
    movl ${FUTEX_WAIT}, %esi
    xorl %r10d, %r10d
    syscall
    jmp 4b
    /* Write every sample to fd 1, looping on short writes. */
5:  movq {P_BUFS}(%rbx), %r13
    movq {P_CALLS}(%rbx), %r14
    imulq {P_THREADS}(%rbx), %r14
    shlq $3, %r14
6:  testq %r14, %r14
    jz 7f
    movl ${SYS_WRITE}, %eax
    movl $1, %edi
    movq %r13, %rsi
    movq %r14, %rdx
    syscall
    cmpq $-{EINTR}, %rax
    je 6b
    leaq sentry_bench_msg_write(%rip), %rsi
    movl $(sentry_bench_msg_write_end - sentry_bench_msg_write), %edx
    testq %rax, %rax
    jg 8f
    jl sentry_bench_guest_fail
    movq $-{EIO}, %rax
    jmp sentry_bench_guest_fail
8:  addq %rax, %r13
    subq %rax, %r14
    jmp 6b
7:  movl ${SYS_EXIT_GROUP}, %eax
    xorl %edi, %edi
    syscall
    ud2

    /* An extra thread: run the loop, count down, wake the main thread, exit. */
sentry_bench_guest_thread:
    call sentry_bench_guest_loop
    lock decl {P_RUNNING}(%rbx)
    movl ${SYS_FUTEX}, %eax
    leaq {P_RUNNING}(%rbx), %rdi
    movl ${FUTEX_WAKE}, %esi
    movl $1, %edx
    syscall
    movl ${SYS_EXIT}, %eax
    xorl %edi, %edi
    syscall
    ud2

    /* %rax = -errno, %rsi/%rdx = message: print it, exit with the errno. */
sentry_bench_guest_fail:
    negq %rax
    movq %rax, %r12
    movl ${SYS_WRITE}, %eax
    movl $2, %edi
    syscall
    movl ${SYS_EXIT_GROUP}, %eax
    movq %r12, %rdi
    syscall
    ud2

    /* The timed loop of thread %r12. */
    .balign 16
    .type sentry_bench_guest_loop,@function
sentry_bench_guest_loop:
    movq {P_CALLS}(%rbx), %r14
    movq %r14, %r13
    imulq %r12, %r13
    shlq $3, %r13
    addq {P_BUFS}(%rbx), %r13
    /* Fault the buffer in before timing; adding 0 atomically keeps the
       samples of a neighbour sharing the first page. */
    movq %r13, %rax
    andq $-{PAGE}, %rax
    leaq (%r13,%r14,8), %rcx
1:  lock addq $0, (%rax)
    addq ${PAGE}, %rax
    cmpq %rcx, %rax
    jb 1b
    .balign 16
2:  lfence
    rdtsc
    shlq $32, %rdx
    orq %rdx, %rax
    movq %rax, %r15
    movq {P_NR}(%rbx), %rax
    movq {P_ARGS}(%rbx), %rdi
    movq {P_ARGS}+8(%rbx), %rsi
    movq {P_ARGS}+16(%rbx), %rdx
    movq {P_ARGS}+24(%rbx), %r10
    movq {P_ARGS}+32(%rbx), %r8
    movq {P_ARGS}+40(%rbx), %r9
    .globl sentry_bench_guest_syscall
sentry_bench_guest_syscall:
    syscall
    movq %rax, %rbp
    lfence
    rdtsc
    shlq $32, %rdx
    orq %rdx, %rax
    subq %r15, %rax
    movq %rax, (%r13)
    cmpq $-4095, %rbp
    jae 3f
    addq $8, %r13
    decq %r14
    jnz 2b
    ret
3:  movq %rbp, %rax
    leaq sentry_bench_msg_call(%rip), %rsi
    movl $(sentry_bench_msg_call_end - sentry_bench_msg_call), %edx
    jmp sentry_bench_guest_fail

sentry_bench_msg_open:
    .ascii "sentry bench guest: cannot open the file for the measured syscall\n"
sentry_bench_msg_open_end:
sentry_bench_msg_clone:
    .ascii "sentry bench guest: clone of a thread failed\n"
sentry_bench_msg_clone_end:
sentry_bench_msg_write:
    .ascii "sentry bench guest: writing the samples to stdout failed\n"
sentry_bench_msg_write_end:
sentry_bench_msg_call:
    .ascii "sentry bench guest: the measured syscall failed\n"
sentry_bench_msg_call_end:
    .globl sentry_bench_guest_end
sentry_bench_guest_end:
    .popsection
"#,
    PARAMS = const DATA_BASE,
    P_NR = const offset_of!(Params, nr),
    P_ARGS = const offset_of!(Params, args),
    P_CALLS = const offset_of!(Params, calls),
    P_THREADS = const offset_of!(Params, threads),
    P_BUFS = const offset_of!(Params, bufs),
    P_STACKS = const offset_of!(Params, stacks),
    P_OPEN_FLAGS = const offset_of!(Params, open_flags),
    P_RUNNING = const offset_of!(Params, running),
    P_PATH = const offset_of!(Params, path),
    STACK_SIZE = const STACK_SIZE,
    PAGE = const PAGE,
    CLONE_FLAGS = const CLONE_FLAGS,
    FUTEX_WAIT = const libc::FUTEX_WAIT,
    FUTEX_WAKE = const libc::FUTEX_WAKE,
    EINTR = const libc::EINTR,
    EIO = const libc::EIO,
    SYS_OPEN = const libc::SYS_open,
    SYS_CLONE = const libc::SYS_clone,
    SYS_FUTEX = const libc::SYS_futex,
    SYS_WRITE = const libc::SYS_write,
    SYS_EXIT = const libc::SYS_exit,
    SYS_EXIT_GROUP = const libc::SYS_exit_group,
    options(att_syntax)
);

extern "C" {
    static sentry_bench_guest_start: u8;
    static sentry_bench_guest_end: u8;
    static sentry_bench_guest_syscall: u8;
}

/// The guest code as it lies in the sentry's own text.
pub fn code() -> &'static [u8] {
    // Both symbols are defined by the global_asm above, in one section,
    // start before end; text is readable and never written.
    // SAFETY: so the bytes between them form a slice valid for 'static.
    unsafe {
        let start = core::ptr::addr_of!(sentry_bench_guest_start);
        let end = core::ptr::addr_of!(sentry_bench_guest_end);
        core::slice::from_raw_parts(start, end as usize - start as usize)
    }
}

/// Address of the guest's entry point in the sentry's own text (for the
/// in-process floor, which runs the code where it lies).
pub fn entry_in_text() -> u64 {
    core::ptr::addr_of!(sentry_bench_guest_start) as u64
}

/// Address of the timed `syscall` instruction in the sentry's own text.
pub fn syscall_insn_in_text() -> u64 {
    core::ptr::addr_of!(sentry_bench_guest_syscall) as u64
}

const EHDR_SIZE: u64 = 64;
const PHDR_SIZE: u64 = 56;
const PHNUM: u64 = 3;

const _: () = assert!(EHDR_SIZE + PHNUM * PHDR_SIZE <= CODE_OFF);

/// A static x86-64 `ET_EXEC` file running the guest loop with `spec`.
pub fn elf_image(spec: &GuestSpec) -> Vec<u8> {
    let code = code();
    let text_size = CODE_OFF + code.len() as u64;
    let data_off = text_size.next_multiple_of(PAGE);
    let params = spec.params_page();

    let mut out = elf::write_headers(
        elf::ET_EXEC,
        TEXT_BASE + CODE_OFF,
        &[
            Phdr {
                p_type: elf::PT_LOAD,
                flags: elf::PF_R | elf::PF_X,
                offset: 0,
                vaddr: TEXT_BASE,
                filesz: text_size,
                memsz: text_size,
            },
            Phdr {
                p_type: elf::PT_LOAD,
                flags: elf::PF_R | elf::PF_W,
                offset: data_off,
                vaddr: DATA_BASE,
                filesz: PAGE,
                memsz: spec.layout.data_size(),
            },
            Phdr {
                p_type: elf::PT_GNU_STACK,
                flags: elf::PF_R | elf::PF_W,
                offset: 0,
                vaddr: 0,
                filesz: 0,
                memsz: 0,
            },
        ],
    );
    debug_assert_eq!(out.len() as u64, EHDR_SIZE + PHNUM * PHDR_SIZE);
    out.resize(CODE_OFF as usize, 0);
    out.extend_from_slice(code);
    out.resize(data_off as usize, 0);
    out.extend_from_slice(&params);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_is_a_static_executable_the_loader_accepts() {
        let spec = GuestSpec {
            nr: libc::SYS_getpid as u64,
            args: [0; 6],
            open: Some(("/dev/null", libc::O_WRONLY)),
            layout: Layout {
                threads: 3,
                calls: 1001,
            },
        };
        let image = elf_image(&spec);
        let info = sentry_kernel::loader::elf::parse(&image).expect("the loader accepts the image");
        assert_eq!(info.entry, TEXT_BASE + CODE_OFF);
        assert_eq!(info.segments.len(), 2);
        assert!(info.interp.is_none());
        let data = &info.segments[1];
        assert_eq!(data.vaddr, DATA_BASE);
        assert!(data.memsz >= spec.layout.bufs() - DATA_BASE + 3 * 1001 * 8);
        assert!(!data.exec && data.write);
    }
}
