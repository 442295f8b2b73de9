/*
 * sigsys_floor N: the in-process SIGSYS floor.
 *
 * The cheapest a seccomp-trap sandbox can make a syscall: the kernel's
 * seccomp check, SIGSYS delivery, a handler that only writes the result into
 * the saved registers, and rt_sigreturn (through glibc's restorer), all in
 * one process with no second party to wake. The program installs a SIGSYS
 * handler (SA_SIGINFO) that sets the trapped call's RAX to FAKE_PID, and a
 * plain seccomp filter (no instruction-pointer test) that traps getpid and
 * allows everything else; then it times N syscall(SYS_getpid) calls with
 * CLOCK_MONOTONIC and prints the elapsed nanoseconds as one integer line.
 * It exits 1 if the calls did not come back with FAKE_PID (the handler did
 * not run).
 *
 * Build: gcc -O2 -static -o sigsys_floor sigsys_floor.c
 */
#define _GNU_SOURCE
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#define FAKE_PID 424242

static volatile long handled;

static void on_sigsys(int sig, siginfo_t *info, void *ctx)
{
	ucontext_t *uc = ctx;

	(void)sig;
	(void)info;
	uc->uc_mcontext.gregs[REG_RAX] = FAKE_PID;
	handled++;
}

static long long now_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
		perror("clock_gettime");
		exit(1);
	}
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void install(void)
{
	struct sigaction sa;
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpid, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {
		.len = sizeof(filter) / sizeof(filter[0]),
		.filter = filter,
	};

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigsys;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) != 0) {
		perror("sigaction");
		exit(1);
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		perror("prctl(PR_SET_NO_NEW_PRIVS)");
		exit(1);
	}
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
		perror("seccomp");
		exit(1);
	}
}

int main(int argc, char **argv)
{
	char *end;
	long long n, i, start, elapsed;
	long pid = FAKE_PID;

	if (argc != 2) {
		fprintf(stderr, "usage: %s N\n", argv[0]);
		return 2;
	}
	n = strtoll(argv[1], &end, 10);
	if (*argv[1] == '\0' || *end != '\0' || n < 0) {
		fprintf(stderr, "%s: bad count '%s'\n", argv[0], argv[1]);
		return 2;
	}
	install();
	start = now_ns();
	for (i = 0; i < n; i++) {
		pid = syscall(SYS_getpid);
		if (pid != FAKE_PID)
			break;
	}
	elapsed = now_ns() - start;
	if (pid != FAKE_PID || handled != n) {
		fprintf(stderr,
			"%s: the SIGSYS handler did not run (getpid returned %ld, "
			"%ld of %lld calls handled)\n",
			argv[0], pid, handled, n);
		return 1;
	}
	printf("%lld\n", elapsed);
	return 0;
}
