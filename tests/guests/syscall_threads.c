/*
 * syscall_threads T N: the multi-threaded syscall throughput benchmark's
 * guest.
 *
 * Starts T pthreads that each wait on a barrier and then make N raw getpid
 * system calls (syscall(SYS_getpid), so no libc caching can hide them). The
 * main thread also waits on the barrier, reads CLOCK_MONOTONIC when it is
 * released, joins every thread, reads the clock again and prints the
 * elapsed nanoseconds as one integer line on stdout. Thread creation and
 * process start-up and exit are outside the measurement, so the same binary
 * gives the native throughput when run directly and the sandboxed one when
 * run under the sentry. The total number of calls is T * N.
 *
 * Exit status: 0 on success, 1 if something failed at run time, 2 on bad
 * arguments.
 *
 * Build: gcc -O2 -static -o syscall_threads syscall_threads.c
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* A sanity bound: more threads than this is surely a typo. */
#define MAX_THREADS 1024

static pthread_barrier_t barrier;
static long long calls_per_thread;

struct worker {
	pthread_t thread;
	long pid; /* the last getpid result, checked after the join */
};

static long long now_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
		perror("clock_gettime");
		exit(1);
	}
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	long long i, n = calls_per_thread;
	long pid = 0;
	int rc;

	rc = pthread_barrier_wait(&barrier);
	if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) {
		fprintf(stderr, "pthread_barrier_wait: %s\n", strerror(rc));
		exit(1);
	}
	for (i = 0; i < n; i++)
		pid = syscall(SYS_getpid);
	w->pid = pid;
	return NULL;
}

/* Parses a non-negative decimal integer no larger than max; -1 if bad. */
static long long parse_count(const char *s, long long max)
{
	char *end;
	long long v;

	if (*s == '\0' || *s == '-' || *s == '+')
		return -1;
	v = strtoll(s, &end, 10);
	if (*end != '\0' || v < 0 || v > max)
		return -1;
	return v;
}

int main(int argc, char **argv)
{
	struct worker *workers;
	long long t, n, i, start, elapsed;
	int rc;

	if (argc != 3) {
		fprintf(stderr, "usage: %s T N\n", argv[0]);
		return 2;
	}
	t = parse_count(argv[1], MAX_THREADS);
	if (t < 1) {
		fprintf(stderr, "%s: bad thread count '%s' (1..%d)\n", argv[0],
			argv[1], MAX_THREADS);
		return 2;
	}
	n = parse_count(argv[2], 1LL << 40);
	if (n < 0) {
		fprintf(stderr, "%s: bad call count '%s'\n", argv[0], argv[2]);
		return 2;
	}
	calls_per_thread = n;

	workers = calloc((size_t)t, sizeof(*workers));
	if (workers == NULL) {
		perror("calloc");
		return 1;
	}
	/* The T workers and the main thread. */
	rc = pthread_barrier_init(&barrier, NULL, (unsigned)t + 1);
	if (rc != 0) {
		fprintf(stderr, "pthread_barrier_init: %s\n", strerror(rc));
		return 1;
	}
	for (i = 0; i < t; i++) {
		rc = pthread_create(&workers[i].thread, NULL, worker_main,
				    &workers[i]);
		if (rc != 0) {
			fprintf(stderr, "pthread_create: %s\n", strerror(rc));
			exit(1);
		}
	}

	rc = pthread_barrier_wait(&barrier);
	if (rc != 0 && rc != PTHREAD_BARRIER_SERIAL_THREAD) {
		fprintf(stderr, "pthread_barrier_wait: %s\n", strerror(rc));
		return 1;
	}
	start = now_ns();
	for (i = 0; i < t; i++) {
		rc = pthread_join(workers[i].thread, NULL);
		if (rc != 0) {
			fprintf(stderr, "pthread_join: %s\n", strerror(rc));
			return 1;
		}
	}
	elapsed = now_ns() - start;

	for (i = 0; i < t; i++) {
		if (n > 0 && workers[i].pid <= 0) {
			fprintf(stderr, "%s: getpid returned %ld in thread %lld\n",
				argv[0], workers[i].pid, i);
			return 1;
		}
	}
	pthread_barrier_destroy(&barrier);
	free(workers);
	printf("%lld\n", elapsed);
	return 0;
}
