/*
 * getpid_loop N: the syscall round-trip benchmark's guest.
 *
 * Makes N raw getpid system calls (syscall(SYS_getpid), so no libc caching
 * can hide them) and prints the nanoseconds they took, measured with
 * CLOCK_MONOTONIC around the loop, as one integer line on stdout. Start-up
 * and exit are outside the measurement, so the same binary gives the native
 * cost when run directly and the sandboxed cost when run under the sentry.
 *
 * Build: gcc -O2 -static -o getpid_loop getpid_loop.c
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
		perror("clock_gettime");
		exit(1);
	}
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	char *end;
	long long n, i, start, elapsed;
	long pid = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: %s N\n", argv[0]);
		return 2;
	}
	n = strtoll(argv[1], &end, 10);
	if (*argv[1] == '\0' || *end != '\0' || n < 0) {
		fprintf(stderr, "%s: bad count '%s'\n", argv[0], argv[1]);
		return 2;
	}
	start = now_ns();
	for (i = 0; i < n; i++)
		pid = syscall(SYS_getpid);
	elapsed = now_ns() - start;
	if (n > 0 && pid <= 0) {
		fprintf(stderr, "%s: getpid returned %ld\n", argv[0], pid);
		return 1;
	}
	printf("%lld\n", elapsed);
	return 0;
}
