/* Spins for ~400 ms of wall time, then prints wall and CPU nanoseconds from
 * clock_gettime(CLOCK_PROCESS_CPUTIME_ID), times() and getrusage(). */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/times.h>
#include <time.h>
#include <unistd.h>

static long long ns(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(void) {
  long long w0 = ns(CLOCK_MONOTONIC), c0 = ns(CLOCK_PROCESS_CPUTIME_ID);
  volatile unsigned long x = 0;
  while (ns(CLOCK_MONOTONIC) - w0 < 400000000LL)
    for (int i = 0; i < 100000; i++) x += i;
  long long wall = ns(CLOCK_MONOTONIC) - w0, cpu = ns(CLOCK_PROCESS_CPUTIME_ID) - c0;
  long long thread = ns(CLOCK_THREAD_CPUTIME_ID);
  struct tms t;
  times(&t);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  long long ru_ns = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
                    (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
  long long tms_ns = (long long)(t.tms_utime + t.tms_stime) * (1000000000LL / sysconf(_SC_CLK_TCK));
  printf("wall=%lld cpu=%lld thread=%lld rusage=%lld times=%lld\n", wall, cpu, thread, ru_ns, tms_ns);
  return 0;
}
