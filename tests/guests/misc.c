/*
 * misc MODE [ARG]: small behaviours a program sees, one per MODE.
 *
 *   time       CLOCK_MONOTONIC never goes backwards over 1000 reads;
 *              nanosleep(50 ms) returns 0 and at least 50 ms pass on the
 *              monotonic clock; clock_nanosleep, clock_getres,
 *              gettimeofday and time() give sane values. No upper bounds.
 *   random     getrandom fills 32 bytes, not all zero, and two calls differ;
 *              GRND_NONBLOCK works; /dev/urandom reads.
 *   uname      prints every uname(2) field.
 *   ids        prints getpid/gettid/getppid/getuid... relations.
 *   exit N     exit(N).
 *   return N   returns N from main.
 *   _exit N    _exit(N) without flushing stdio ("lost" stays unprinted).
 *   null       dereferences a null pointer (dies of SIGSEGV).
 *   enosys     calls unknown system calls (999, 500, -1): each returns -1
 *              with errno ENOSYS, and the program carries on.
 *   sleep N    sleeps N seconds (for tests that kill the sandbox).
 *
 * Except for "ids", the output is the same natively and under the sentry.
 *
 * Build: gcc -O2 -static -o misc misc.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

static int bad;

static void check(const char *what, int ok)
{
	printf("%s: %s\n", what, ok ? "ok" : "FAILED");
	fflush(stdout);
	if (!ok)
		bad = 1;
}

static long long ns(clockid_t c)
{
	struct timespec ts;

	if (clock_gettime(c, &ts) != 0)
		return -1;
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int time_mode(void)
{
	long long prev = ns(CLOCK_MONOTONIC), now, start, elapsed;
	struct timespec req = { 0, 50 * 1000 * 1000 }, rem = { 7, 7 }, res;
	struct timeval tv;
	int i, mono = prev >= 0, r;
	time_t t;

	for (i = 0; i < 1000; i++) {
		now = ns(CLOCK_MONOTONIC);
		if (now < prev)
			mono = 0;
		prev = now;
	}
	check("CLOCK_MONOTONIC never goes backwards", mono);
	check("raw clock_gettime syscall works",
	      syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &res) == 0);

	start = ns(CLOCK_MONOTONIC);
	r = nanosleep(&req, &rem);
	elapsed = ns(CLOCK_MONOTONIC) - start;
	printf("nanosleep(50ms) returned %d\n", r);
	check("nanosleep(50ms) returns 0", r == 0);
	check("at least 50ms passed", elapsed >= 50LL * 1000 * 1000);

	start = ns(CLOCK_MONOTONIC);
	req.tv_nsec = 20 * 1000 * 1000;
	r = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL);
	elapsed = ns(CLOCK_MONOTONIC) - start;
	check("clock_nanosleep(20ms) returns 0", r == 0);
	check("at least 20ms passed", elapsed >= 20LL * 1000 * 1000);

	{
		struct timespec abs;

		clock_gettime(CLOCK_MONOTONIC, &abs);
		abs.tv_nsec += 10 * 1000 * 1000;
		if (abs.tv_nsec >= 1000000000) {
			abs.tv_sec++;
			abs.tv_nsec -= 1000000000;
		}
		r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &abs, NULL);
		check("clock_nanosleep TIMER_ABSTIME returns 0", r == 0);
		check("the absolute deadline passed",
		      ns(CLOCK_MONOTONIC) >= (long long)abs.tv_sec * 1000000000LL + abs.tv_nsec);
	}

	req.tv_sec = 0;
	req.tv_nsec = 2000000000; /* invalid */
	errno = 0;
	r = nanosleep(&req, NULL);
	check("nanosleep with tv_nsec >= 1e9 gives EINVAL", r == -1 && errno == EINVAL);

	check("clock_getres(CLOCK_MONOTONIC)",
	      clock_getres(CLOCK_MONOTONIC, &res) == 0 && res.tv_sec == 0 && res.tv_nsec > 0);
	check("CLOCK_REALTIME is after 2020", ns(CLOCK_REALTIME) > 1577836800LL * 1000000000LL);
	check("gettimeofday is after 2020",
	      gettimeofday(&tv, NULL) == 0 && tv.tv_sec > 1577836800 && tv.tv_usec < 1000000);
	t = time(NULL);
	check("time() is after 2020", t > 1577836800);
	check("CLOCK_BOOTTIME or CLOCK_MONOTONIC_COARSE readable",
	      ns(CLOCK_MONOTONIC_COARSE) > 0 || ns(CLOCK_BOOTTIME) > 0);
	errno = 0;
	check("clock_gettime of clock 1234 gives EINVAL",
	      syscall(SYS_clock_gettime, 1234, &res) == -1 && errno == EINVAL);
	printf("time: %s\n", bad ? "FAILED" : "ok");
	return bad;
}

static int random_mode(void)
{
	unsigned char a[32], b[32], z[32] = { 0 };
	ssize_t r1, r2;
	int fd;

	memset(a, 0, sizeof(a));
	memset(b, 0, sizeof(b));
	r1 = getrandom(a, sizeof(a), 0);
	r2 = getrandom(b, sizeof(b), GRND_NONBLOCK);
	printf("getrandom returned %zd and %zd\n", r1, r2);
	check("getrandom fills 32 bytes", r1 == 32 && r2 == 32);
	check("the bytes are not all zero", memcmp(a, z, 32) != 0);
	check("two calls give different bytes", memcmp(a, b, 32) != 0);
	check("getrandom of 0 bytes returns 0", getrandom(a, 0, 0) == 0);
	{
		static unsigned char big[1 << 16];

		check("getrandom of 64 KiB returns > 0", getrandom(big, sizeof(big), 0) > 0);
	}
	errno = 0;
	check("getrandom with bad flags gives EINVAL",
	      getrandom(a, 8, 0x1000) == -1 && errno == EINVAL);
	fd = open("/dev/urandom", O_RDONLY);
	check("read /dev/urandom", fd >= 0 && read(fd, a, 32) == 32 && memcmp(a, b, 32) != 0);
	close(fd);
	printf("random: %s\n", bad ? "FAILED" : "ok");
	return bad;
}

static int uname_mode(void)
{
	struct utsname u;

	if (uname(&u) != 0) {
		perror("uname");
		return 1;
	}
	printf("sysname=%s\nnodename=%s\nrelease=%s\nversion=%s\nmachine=%s\n",
	       u.sysname, u.nodename, u.release, u.version, u.machine);
#ifdef _UTSNAME_DOMAIN_LENGTH
	printf("domainname=%s\n", u.domainname);
#endif
	return 0;
}

static int ids_mode(void)
{
	long pid = getpid(), tid = syscall(SYS_gettid);

	printf("pid=%ld\n", pid);
	printf("gettid==getpid: %s\n", pid == tid ? "yes" : "no");
	printf("raw getpid==getpid: %s\n", syscall(SYS_getpid) == pid ? "yes" : "no");
	printf("uid=%d euid=%d gid=%d egid=%d\n", (int)getuid(), (int)geteuid(),
	       (int)getgid(), (int)getegid());
	printf("ppid=%ld\n", (long)getppid());
	return 0;
}

static int enosys_mode(void)
{
	static const long nrs[] = { 999, 500, 4096, -1 };
	unsigned i;

	for (i = 0; i < sizeof(nrs) / sizeof(nrs[0]); i++) {
		long r;

		errno = 0;
		r = syscall(nrs[i], 1, 2, 3, 4, 5, 6);
		printf("syscall(%ld) = %ld errno=%s\n", nrs[i], r,
		       errno == ENOSYS ? "ENOSYS" : strerror(errno));
		if (r != -1 || errno != ENOSYS)
			bad = 1;
	}
	/* the program carries on normally */
	printf("getpid still works: %s\n", getpid() > 0 ? "yes" : "no");
	printf("enosys: %s\n", bad ? "FAILED" : "ok");
	return bad;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	int n = argc > 2 ? atoi(argv[2]) : 0;

	if (strcmp(mode, "time") == 0)
		return time_mode();
	if (strcmp(mode, "random") == 0)
		return random_mode();
	if (strcmp(mode, "uname") == 0)
		return uname_mode();
	if (strcmp(mode, "ids") == 0)
		return ids_mode();
	if (strcmp(mode, "enosys") == 0)
		return enosys_mode();
	if (strcmp(mode, "exit") == 0) {
		printf("exiting with %d\n", n);
		exit(n);
	}
	if (strcmp(mode, "return") == 0) {
		printf("returning %d\n", n);
		return n;
	}
	if (strcmp(mode, "_exit") == 0) {
		printf("lost"); /* buffered: a pipe is not a terminal */
		_exit(n);
	}
	if (strcmp(mode, "null") == 0) {
		volatile int *p = NULL;

		printf("dereferencing NULL\n");
		fflush(stdout);
		*p = 42;
		printf("survived\n");
		return 0;
	}
	if (strcmp(mode, "sleep") == 0) {
		printf("sleeping\n");
		fflush(stdout);
		sleep(n);
		return 0;
	}
	fprintf(stderr, "usage: %s time|random|uname|ids|enosys|exit N|return N|_exit N|null|sleep N\n",
		argv[0]);
	return 2;
}
