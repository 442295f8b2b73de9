/* Thread corner cases: robust mutexes whose owner died, one thread exiting
 * while others go on, tgkill to a thread, affinity, and exit_group from a
 * thread while another is blocked. Ends with _exit(5) from a thread. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static pthread_mutex_t robust;
static pid_t child_tid;

static void *die_holding(void *arg) {
  (void)arg;
  pthread_mutex_lock(&robust);
  return NULL; /* exits holding the lock */
}

static void *record_tid(void *arg) {
  (void)arg;
  child_tid = (pid_t)syscall(SYS_gettid);
  pthread_exit((void *)7);
}

static void *sleeper(void *arg) {
  (void)arg;
  for (;;) pause();
  return NULL;
}

static void *ender(void *arg) {
  (void)arg;
  usleep(50000);
  fflush(stdout);
  _exit(5);
}

int main(void) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&robust, &a);
  pthread_t t;
  pthread_create(&t, NULL, die_holding, NULL);
  pthread_join(t, NULL);
  int r = pthread_mutex_lock(&robust);
  printf("robust: %s\n", r == EOWNERDEAD ? "EOWNERDEAD" : strerror(r));
  pthread_mutex_consistent(&robust);
  pthread_mutex_unlock(&robust);

  void *ret;
  pthread_create(&t, NULL, record_tid, NULL);
  pthread_join(t, &ret);
  printf("pthread_exit value: %ld, tid > pid: %d\n", (long)ret, child_tid > getpid());

  long k0 = syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), 0);
  long k1 = syscall(SYS_tgkill, getpid(), 99999, 0);
  printf("tgkill self: %ld, tgkill missing: %ld %s\n", k0, k1, k1 < 0 && errno == ESRCH ? "ESRCH" : "?");

  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(0, &set);
  int s0 = sched_setaffinity(0, sizeof set, &set);
  CPU_ZERO(&set);
  sched_getaffinity(0, sizeof set, &set);
  int n = CPU_COUNT(&set);
  cpu_set_t empty;
  CPU_ZERO(&empty);
  int s1 = sched_setaffinity(0, sizeof empty, &empty);
  printf("setaffinity: %d count after: %d empty: %d %s\n", s0, n, s1, s1 < 0 && errno == EINVAL ? "EINVAL" : "?");

  pthread_create(&t, NULL, sleeper, NULL);
  pthread_create(&t, NULL, ender, NULL);
  for (;;) pause();
}
