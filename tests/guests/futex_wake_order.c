#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>
/* 16 threads each wait on their own futex word; main wakes them one by one
 * in order, and each woken thread records its turn. */
#define N 16
static atomic_int word[N];
static atomic_int order[N];
static atomic_int next;
static void *waiter(void *arg) {
  long i = (long)arg;
  while (atomic_load(&word[i]) == 0)
    syscall(SYS_futex, &word[i], FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
  order[atomic_fetch_add(&next, 1)] = (int)i;
  return NULL;
}
int main(void) {
  pthread_t t[N];
  for (long i = 0; i < N; i++) pthread_create(&t[i], NULL, waiter, (void *)i);
  usleep(100000);
  for (int i = 0; i < N; i++) {
    atomic_store(&word[i], 1);
    syscall(SYS_futex, &word[i], FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    while (atomic_load(&next) <= i) usleep(1000);
  }
  for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
  for (int i = 0; i < N; i++) printf("%d ", order[i]);
  printf("\n");
  return 0;
}
