/*
 * bench_ops OP [FILE] N: the per-operation benchmarks' guest.
 *
 * Performs one kind of operation N times and prints the nanoseconds the
 * loop took, measured with CLOCK_MONOTONIC around it, as one integer line on
 * stdout. Set-up (opening files, creating pipes, starting the partner
 * thread) and exit are outside the measurement, so the same binary gives the
 * native cost when run directly and the sandboxed cost when run under the
 * sentry. The operations:
 *
 *   clock_gettime    syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts): a
 *                    real system call, never the vDSO (the sandbox has none,
 *                    so only the raw call compares with native);
 *   write_devnull    write(fd, buf, 1) to an fd open on /dev/null;
 *   open_read_close  open(FILE, O_RDONLY), read it whole into a buffer,
 *                    close it (FILE is a small file the caller created);
 *   pipe_pingpong    one round trip of one byte between this thread and a
 *                    partner thread over two pipes: write to the partner's
 *                    pipe, read its echo from ours (N round trips).
 *
 * Every call's result is checked; a failure exits 1 with a message on
 * stderr. Exit status 2 means bad arguments.
 *
 * Build: gcc -O2 -static -pthread -o bench_ops bench_ops.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static const char *prog;

static void __attribute__((noreturn)) die(const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", prog, what, strerror(errno));
	exit(1);
}

static long long now_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		die("clock_gettime");
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Parses a non-negative decimal integer; -1 if bad. */
static long long parse_count(const char *s)
{
	char *end;
	long long v;

	if (*s == '\0' || *s == '-' || *s == '+')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (*end != '\0' || errno != 0 || v < 0)
		return -1;
	return v;
}

static long long bench_clock_gettime(long long n)
{
	struct timespec ts;
	long long i, start, elapsed;

	start = now_ns();
	for (i = 0; i < n; i++) {
		if (syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) != 0)
			die("clock_gettime (raw syscall)");
	}
	elapsed = now_ns() - start;
	return elapsed;
}

static long long bench_write_devnull(long long n)
{
	char buf[1] = { 'x' };
	long long i, start, elapsed;
	int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		die("open /dev/null");
	start = now_ns();
	for (i = 0; i < n; i++) {
		if (write(fd, buf, 1) != 1)
			die("write /dev/null");
	}
	elapsed = now_ns() - start;
	close(fd);
	return elapsed;
}

static long long bench_open_read_close(const char *path, long long n)
{
	char buf[4096];
	long long i, start, elapsed;
	ssize_t expect = -1, got;
	int fd;

	start = now_ns();
	for (i = 0; i < n; i++) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			die(path);
		got = read(fd, buf, sizeof(buf));
		if (got <= 0 || (expect >= 0 && got != expect))
			die("read");
		expect = got;
		if (close(fd) != 0)
			die("close");
	}
	elapsed = now_ns() - start;
	return elapsed;
}

/* The partner thread's ends of the two pipes, and its round count. */
struct echo {
	int in;
	int out;
	long long rounds;
};

/* Echoes every byte from `in` back on `out`, `rounds` times. */
static void *echo_main(void *arg)
{
	struct echo *e = arg;
	long long i;
	char c;

	for (i = 0; i < e->rounds; i++) {
		if (read(e->in, &c, 1) != 1)
			die("partner read");
		if (write(e->out, &c, 1) != 1)
			die("partner write");
	}
	return NULL;
}

static long long bench_pipe_pingpong(long long n)
{
	int ping[2], pong[2], rc;
	struct echo e;
	pthread_t partner;
	long long i, start, elapsed;
	char c = 'p';

	if (pipe(ping) != 0 || pipe(pong) != 0)
		die("pipe");
	e.in = ping[0];
	e.out = pong[1];
	e.rounds = n;
	rc = pthread_create(&partner, NULL, echo_main, &e);
	if (rc != 0) {
		errno = rc;
		die("pthread_create");
	}
	start = now_ns();
	for (i = 0; i < n; i++) {
		if (write(ping[1], &c, 1) != 1)
			die("write");
		if (read(pong[0], &c, 1) != 1)
			die("read");
	}
	elapsed = now_ns() - start;
	rc = pthread_join(partner, NULL);
	if (rc != 0) {
		errno = rc;
		die("pthread_join");
	}
	close(ping[0]);
	close(ping[1]);
	close(pong[0]);
	close(pong[1]);
	return elapsed;
}

static void __attribute__((noreturn)) usage(void)
{
	fprintf(stderr,
		"usage: %s clock_gettime|write_devnull|pipe_pingpong N\n"
		"       %s open_read_close FILE N\n",
		prog, prog);
	exit(2);
}

int main(int argc, char **argv)
{
	const char *op;
	long long n, elapsed;

	prog = argv[0];
	if (argc < 3)
		usage();
	op = argv[1];
	n = parse_count(argv[argc - 1]);
	if (n < 0) {
		fprintf(stderr, "%s: bad count '%s'\n", prog, argv[argc - 1]);
		return 2;
	}
	if (strcmp(op, "open_read_close") == 0) {
		if (argc != 4)
			usage();
		elapsed = bench_open_read_close(argv[2], n);
	} else if (argc != 3) {
		usage();
	} else if (strcmp(op, "clock_gettime") == 0) {
		elapsed = bench_clock_gettime(n);
	} else if (strcmp(op, "write_devnull") == 0) {
		elapsed = bench_write_devnull(n);
	} else if (strcmp(op, "pipe_pingpong") == 0) {
		elapsed = bench_pipe_pingpong(n);
	} else {
		fprintf(stderr, "%s: unknown operation '%s'\n", prog, op);
		usage();
	}
	printf("%lld\n", elapsed);
	return 0;
}
