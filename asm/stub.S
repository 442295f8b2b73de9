/*
 * The stub: the only code a stub process runs besides the guest.
 *
 * Assembled into the sentry binary by stubs/src/lib.rs (global_asm!, AT&T
 * syntax) and copied to STUB_CODE in every stub process, so it is position
 * independent and touches nothing outside the stub region. Constants named
 * in capitals are `const` operands defined next to the layout they describe.
 *
 * Register use: %r12 always holds this thread's StubPage (the slot base,
 * found by rounding the stack pointer down to SLOT_SIZE). The handler may
 * clobber every general register: the kernel saved the guest's in the
 * signal frame and rt_sigreturn restores them. No SIMD/FP instruction is
 * used, so the guest's FP state in the frame stays as the kernel saved it.
 *
 * Handoff on StubPage.state (a futex word):
 *   stub   : writes TRAPPED or CMD_DONE, rings the worker's doorbell, then
 *            spins (spin_iters pauses) and sleeps while the value stands.
 *   sentry : writes RESUME, ENTER, CMD_SYSCALL, CMD_CLONE or CMD_EXIT and
 *            wakes the stub only if stub_sleeping is set.
 * Each side stores its value, then mfence, then reads the other side's
 * sleeping flag (a Dekker pair), so a wake-up is never lost.
 */
    .pushsection .text.sentry_stub,"ax",@progbits
    .balign 64
    .globl sentry_stub_start
sentry_stub_start:

/*
 * Signal handler for SIGSYS (a trapped guest syscall), the fault signals and
 * SIG_INTERRUPT. %rdi = signo, %rsi = siginfo, %rdx = ucontext, all on this
 * thread's signal stack, which lies in the slot the sentry can read.
 */
    .globl sentry_stub_handler
    .type sentry_stub_handler,@function
sentry_stub_handler:
    movq %rsp, %r12
    andq ${SLOT_MASK}, %r12
    /* Copy the syscall registers next to the handoff word (gregs at uc+40:
     * r8 +0, r9 +8, r10 +16, rdi +64, rsi +72, rdx +96, rax +104). */
    movq 144(%rdx), %rax
    movq %rax, {P_SYSREGS}(%r12)
    movq 104(%rdx), %rax
    movq %rax, {P_SYSREGS}+8(%r12)
    movq 112(%rdx), %rax
    movq %rax, {P_SYSREGS}+16(%r12)
    movq 136(%rdx), %rax
    movq %rax, {P_SYSREGS}+24(%r12)
    movq 56(%rdx), %rax
    movq %rax, {P_SYSREGS}+32(%r12)
    movq 40(%rdx), %rax
    movq %rax, {P_SYSREGS}+40(%r12)
    movq 48(%rdx), %rax
    movq %rax, {P_SYSREGS}+48(%r12)
    /* SIGSYS from a 32-bit gate: siginfo _sigsys._arch (offset 28) is not x86-64. */
    cmpl $31, %edi
    jne 3f
    cmpl $0xc000003e, 28(%rsi)
    je 3f
    orl ${SIGNO_COMPAT}, %edi
3:  movl %edi, {P_SIGNO}(%r12)
    subq %r12, %rsi
    movq %rsi, {P_SIGINFO_OFF}(%r12)
    subq %r12, %rdx
    movq %rdx, {P_UCONTEXT_OFF}(%r12)
.Lpublish_stop:
    movl ${ST_TRAPPED}, {P_STATE}(%r12)
    mfence
    call .Lring_doorbell

/* Wait for the sentry's next command. */
    .globl sentry_stub_wait
sentry_stub_wait:
    xorl %ecx, %ecx
1:  movl {P_STATE}(%r12), %eax
    cmpl ${ST_TRAPPED}, %eax
    je 2f
    cmpl ${ST_CMD_DONE}, %eax
    jne .Lcommand
    /* The budget is read at every turn: the sentry lowers it to 0 to send
     * a thread whose syscall blocks to sleep at once. */
2:  cmpl {P_SPIN}(%r12), %ecx
    jae .Lsleep
    incl %ecx
    pause
    jmp 1b
.Lsleep:
    movl %eax, %r13d
    movl $1, {P_STUB_SLEEPING}(%r12)
    mfence
    movl $202, %eax                     /* futex */
    leaq {P_STATE}(%r12), %rdi
    xorl %esi, %esi                     /* FUTEX_WAIT, shared: the sentry maps it too */
    movl %r13d, %edx
    xorl %r10d, %r10d
    syscall
    movl $0, {P_STUB_SLEEPING}(%r12)
    movl $-1, %ecx                      /* woken: no more spinning */
    jmp 1b

.Lcommand:
    cmpl ${ST_RESUME}, %eax
    je .Lresume
    cmpl ${ST_CMD_SYSCALL}, %eax
    je .Lcmd_syscall
    cmpl ${ST_ENTER}, %eax
    je .Lenter
    cmpl ${ST_CMD_CLONE}, %eax
    je .Lclone
    cmpl ${ST_CMD_EXIT}, %eax
    je .Lexit
    /* Any other value means the page was overwritten: end this process. */
    jmp .Lfatal

.Lresume:
    /* The result goes into the frame's rax; then back to the restorer the
     * kernel pushed: rt_sigreturn loads the frame. */
    movq {P_UCONTEXT_OFF}(%r12), %rdx
    addq %r12, %rdx
    movq {P_SYSREGS}(%r12), %rax
    movq %rax, 144(%rdx)
    ret

.Lenter:
    /* Load a frame the sentry wrote (a new thread's first registers). */
    movq {P_FRAME_OFF}(%r12), %rsp
    addq %r12, %rsp
    movl $15, %eax                      /* rt_sigreturn */
    syscall
    jmp .Lfatal

.Lcmd_syscall:
    movq {P_CMD_NR}(%r12), %rax
    movq {P_CMD_ARGS}(%r12), %rdi
    movq {P_CMD_ARGS}+8(%r12), %rsi
    movq {P_CMD_ARGS}+16(%r12), %rdx
    movq {P_CMD_ARGS}+24(%r12), %r10
    movq {P_CMD_ARGS}+32(%r12), %r8
    movq {P_CMD_ARGS}+40(%r12), %r9
    .globl sentry_stub_syscall_insn
sentry_stub_syscall_insn:
    syscall
.Lcmd_done:
    movq %rax, {P_CMD_RESULT}(%r12)
    movl ${ST_CMD_DONE}, {P_STATE}(%r12)
    mfence
    cmpl $0, {P_SENTRY_SLEEPING}(%r12)
    je sentry_stub_wait
    movl $202, %eax                     /* futex */
    leaq {P_STATE}(%r12), %rdi
    movl $1, %esi                       /* FUTEX_WAKE */
    movl $1, %edx
    syscall
    jmp sentry_stub_wait

.Lclone:
    movq {P_CMD_ARGS}(%r12), %rdi       /* flags */
    movq {P_CMD_ARGS}+8(%r12), %rsi     /* stack: the top of the new slot */
    movq {P_CMD_ARGS}+16(%r12), %rdx    /* parent_tid */
    movq {P_CMD_ARGS}+24(%r12), %r10    /* child_tid */
    movq {P_CMD_ARGS}+32(%r12), %r8     /* tls */
    movl $56, %eax                      /* clone */
    syscall
    testq %rax, %rax
    jnz .Lcmd_done
    /* The new thread, on its own slot's stack. */
.Lthread_start:
    movq %rsp, %r12
    subq $1, %r12
    andq ${SLOT_MASK}, %r12
    call .Lset_sigaltstack
    movl ${SIGNO_STARTED}, {P_SIGNO}(%r12)
    jmp .Lpublish_stop

.Lexit:
    movl $60, %eax                      /* exit (this thread) */
    xorl %edi, %edi
    syscall
    jmp .Lfatal

/* Ring the doorbell named in the page if its worker sleeps. */
.Lring_doorbell:
    movl {P_WORKER}(%r12), %ecx
    cmpl ${MAX_WORKERS}, %ecx
    jae 1f
    shll $6, %ecx
    movabsq ${DOORBELLS}, %rdi
    addq %rcx, %rdi
    cmpl $0, {DB_SLEEPING}(%rdi)
    je 1f
    lock incl {DB_SEQ}(%rdi)
    movl $202, %eax                     /* futex */
    movl $1, %esi                       /* FUTEX_WAKE */
    movl $1, %edx
    syscall
1:  ret

/* sigaltstack(slot + SIGSTACK_OFF, 0, SLOT_SIZE - SIGSTACK_OFF) */
.Lset_sigaltstack:
    subq $32, %rsp
    leaq {SIGSTACK_OFF}(%r12), %rax
    movq %rax, 0(%rsp)
    movq $0, 8(%rsp)
    movq ${SLOT_SIZE}, %rax
    subq ${SIGSTACK_OFF}, %rax
    movq %rax, 16(%rsp)
    movq %rsp, %rdi
    xorl %esi, %esi
    movl $131, %eax                     /* sigaltstack */
    syscall
    addq $32, %rsp
    testq %rax, %rax
    jnz .Lfatal
    ret

/*
 * Gadgets for the ptrace platform, which runs a stopped thread here with
 * PTRACE_CONT after loading the registers of one syscall: the syscall runs
 * (the filter allows it, the IP being inside the stub) and int3 hands the
 * thread back to its tracer with the result in %rax.
 */
    .globl sentry_stub_ptrace_syscall
sentry_stub_ptrace_syscall:
    syscall
    int3
/* clone(): the parent traps back; the child starts as a new stub thread
 * (on its slot's stack) and waits in the handoff loop for its tracer. */
    .globl sentry_stub_ptrace_clone
sentry_stub_ptrace_clone:
    syscall
    testq %rax, %rax
    jz .Lthread_start
    int3

    .globl sentry_stub_restorer
    .type sentry_stub_restorer,@function
sentry_stub_restorer:
    movl $15, %eax                      /* rt_sigreturn */
    syscall
    jmp .Lfatal

/*
 * Start-up, jumped to by the freshly forked child with %rdi = the seccomp
 * program (a sock_fprog still mapped from the sentry) and %rsp = the top of
 * slot 0. Installs the handlers and the filter, then unmaps everything that
 * is not the stub's, and reports to the sentry as a started thread.
 */
    .globl sentry_stub_init
sentry_stub_init:
    movq %rdi, %r15
    movq %rsp, %r12
    subq $1, %r12
    andq ${SLOT_MASK}, %r12
    call .Lset_sigaltstack
    /* struct kernel_sigaction: handler, flags, restorer, mask */
    subq $32, %rsp
    leaq sentry_stub_handler(%rip), %rax
    movq %rax, 0(%rsp)
    movq $0x0C000004, 8(%rsp)           /* SA_SIGINFO | SA_ONSTACK | SA_RESTORER */
    leaq sentry_stub_restorer(%rip), %rax
    movq %rax, 16(%rsp)
    movq $-1, 24(%rsp)                  /* block everything while handling */
    movl $31, %edi                      /* SIGSYS */
    call .Lsigaction
    movl $11, %edi                      /* SIGSEGV */
    call .Lsigaction
    movl $7, %edi                       /* SIGBUS */
    call .Lsigaction
    movl $8, %edi                       /* SIGFPE */
    call .Lsigaction
    movl $4, %edi                       /* SIGILL */
    call .Lsigaction
    movl $5, %edi                       /* SIGTRAP */
    call .Lsigaction
    movl ${SIG_INTERRUPT}, %edi
    call .Lsigaction
    addq $32, %rsp
    /* prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) */
    movl $157, %eax
    movl $38, %edi
    movl $1, %esi
    xorl %edx, %edx
    xorl %r10d, %r10d
    xorl %r8d, %r8d
    syscall
    testq %rax, %rax
    jnz .Lfatal
    /* seccomp(SECCOMP_SET_MODE_FILTER, 0, prog) */
    movl $317, %eax
    movl $1, %edi
    xorl %esi, %esi
    movq %r15, %rdx
    syscall
    testq %rax, %rax
    jnz .Lfatal
    /* Unmap everything outside the stub's own mappings. */
    xorl %edi, %edi
    movabsq ${GUEST_END}, %rsi
    call .Lmunmap
    movabsq ${CODE_END}, %rdi
    movabsq ${DOORBELLS}, %rsi
    subq %rdi, %rsi
    call .Lmunmap
    movabsq ${DOORBELLS_END}, %rdi
    movabsq ${SLOTS}, %rsi
    subq %rdi, %rsi
    call .Lmunmap
    movabsq ${SLOTS}, %rdi
    addq ${SLOT_SIZE}, %rdi
    movabsq ${TASK_SIZE}, %rsi
    subq %rdi, %rsi
    call .Lmunmap
    movl ${SIGNO_STARTED}, {P_SIGNO}(%r12)
    jmp .Lpublish_stop

/* rt_sigaction(%edi, 8(%rsp), NULL, 8): the action sits above our return address. */
.Lsigaction:
    movl $13, %eax
    leaq 8(%rsp), %rsi
    xorl %edx, %edx
    movl $8, %r10d
    syscall
    testq %rax, %rax
    jnz .Lfatal
    ret

.Lmunmap:
    movl $11, %eax
    syscall
    testq %rax, %rax
    jnz .Lfatal
    ret

.Lfatal:
    movl $231, %eax                     /* exit_group(126): the sentry reports it */
    movl $126, %edi
    syscall
    ud2

    .globl sentry_stub_end
sentry_stub_end:
    .popsection
