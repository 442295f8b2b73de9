/* setitimer(ITIMER_REAL) with an interval delivers repeated SIGALRMs;
 * alarm() returns the time left; a blocked read is interrupted (EINTR). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t ticks;
static void on_alarm(int s) { (void)s; ticks++; }

int main(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm;
  sigaction(SIGALRM, &sa, NULL);
  struct itimerval it = {{0, 20000}, {0, 20000}};
  setitimer(ITIMER_REAL, &it, NULL);
  while (ticks < 5) pause();
  struct itimerval cur;
  getitimer(ITIMER_REAL, &cur);
  printf("ticks>=5: %d interval=%ld us\n", ticks >= 5, (long)cur.it_interval.tv_usec);
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  alarm(10);
  printf("alarm left: %u\n", alarm(0));
  int p[2];
  if (pipe(p) != 0) return 1;
  struct itimerval once = {{0, 0}, {0, 30000}};
  setitimer(ITIMER_REAL, &once, NULL);
  char c;
  errno = 0;
  ssize_t n = read(p[0], &c, 1);
  int e = errno;
  printf("read interrupted: n=%zd %s\n", n, e == EINTR ? "EINTR" : "?");
  return 0;
}
