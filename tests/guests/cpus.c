/* What a program sees of the CPUs: affinity count, /sys online count, and
 * getcpu from several threads (all must lie in [0, count)). */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <sys/sysinfo.h>
#include <stdlib.h>
#include <unistd.h>

static int bad;
static int max_cpu = -1;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;

static void *probe(void *arg) {
  long limit = (long)arg;
  for (int i = 0; i < 200; i++) {
    unsigned cpu = 1u << 31, node = 1u << 31;
    if (getcpu(&cpu, &node) != 0) { bad = 1; continue; }
    pthread_mutex_lock(&m);
    if ((long)cpu >= limit || node != 0) bad = 1;
    if ((int)cpu > max_cpu) max_cpu = (int)cpu;
    pthread_mutex_unlock(&m);
    sched_yield();
  }
  return NULL;
}

int main(int argc, char **argv) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  long limit = argc > 1 ? atol(argv[1]) : CPU_COUNT(&set);
  pthread_t t[4];
  for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, probe, (void *)limit);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  printf("affinity=%d nprocs=%d onln=%ld getcpu_ok=%d\n", CPU_COUNT(&set), get_nprocs(),
         sysconf(_SC_NPROCESSORS_ONLN), !bad);
  return 0;
}
