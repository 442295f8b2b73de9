/* sigtimedwait/sigwaitinfo: a blocked signal sent by another thread is
 * taken without a handler; a timeout gives EAGAIN. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static pid_t main_tid;
static void *sender(void *arg) {
  (void)arg;
  usleep(50000);
  syscall(SYS_tgkill, getpid(), main_tid, SIGUSR1);
  return NULL;
}

int main(void) {
  main_tid = (pid_t)syscall(SYS_gettid);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigprocmask(SIG_BLOCK, &set, NULL);
  struct timespec ts = {0, 20 * 1000 * 1000};
  errno = 0;
  int r = sigtimedwait(&set, NULL, &ts);
  int e = errno;
  printf("timeout: %d %s\n", r, e == EAGAIN ? "EAGAIN" : "?");
  pthread_t t;
  pthread_create(&t, NULL, sender, NULL);
  siginfo_t si;
  r = sigwaitinfo(&set, &si);
  pthread_join(t, NULL);
  printf("waited: %d code=%s\n", r, si.si_code == SI_TKILL ? "SI_TKILL" : "?");
  kill(getpid(), SIGUSR1);
  r = sigtimedwait(&set, NULL, &ts);
  printf("already pending: %d\n", r);
  return 0;
}
