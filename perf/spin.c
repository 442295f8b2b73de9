/*
 * spin N: the guest of `perf/profile.sh --check`.
 *
 * Alternates between pure computation (guest_compute) and N raw getpid
 * calls (guest_syscalls), twenty times, so that a profile of it under the
 * sentry holds guest frames, sentry frames (the workers answering the
 * syscalls) and stub frames (the stub's signal handler). The function names
 * are what the check looks for in the flame graph.
 *
 * Build: gcc -O2 -static -fno-omit-frame-pointer -o spin spin.c
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

__attribute__((noinline)) unsigned long guest_compute(unsigned long n)
{
	unsigned long x = 1;

	for (unsigned long i = 0; i < n; i++) {
		x = x * 6364136223846793005UL + i;
		__asm__ volatile("" : : "r"(x));
	}
	return x;
}

__attribute__((noinline)) long guest_syscalls(long n)
{
	long pid = 0;

	for (long i = 0; i < n; i++)
		pid = syscall(SYS_getpid);
	return pid;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 10000;
	unsigned long sum = 0;

	if (n <= 0) {
		fprintf(stderr, "usage: %s N (N > 0)\n", argv[0]);
		return 2;
	}
	for (int round = 0; round < 20; round++) {
		sum += guest_compute((unsigned long)n * 200);
		sum += (unsigned long)guest_syscalls(n);
	}
	printf("%lu\n", sum & 1);
	return 0;
}
