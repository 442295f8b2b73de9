/* futex operations beyond WAIT/WAKE: timeouts, bitsets, REQUEUE,
 * CMP_REQUEUE and WAKE_OP, private and shared. Prints one line per check. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long fx(atomic_int *uaddr, int op, int val, const void *t, atomic_int *uaddr2, int val3) {
  return syscall(SYS_futex, uaddr, op, val, t, uaddr2, val3);
}

static atomic_int a, b, woke, started;

static void *wait_a(void *arg) {
  (void)arg;
  atomic_fetch_add(&started, 1);
  while (atomic_load(&a) == 0) fx(&a, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
  atomic_fetch_add(&woke, 1);
  return NULL;
}

static void *wait_a_shared(void *arg) {
  (void)arg;
  atomic_fetch_add(&started, 1);
  while (atomic_load(&a) == 0) fx(&a, FUTEX_WAIT, 0, NULL, NULL, 0);
  atomic_fetch_add(&woke, 1);
  return NULL;
}

static void *wait_bitset2(void *arg) {
  (void)arg;
  atomic_fetch_add(&started, 1);
  while (atomic_load(&b) == 0) fx(&b, FUTEX_WAIT_BITSET_PRIVATE, 0, NULL, NULL, 2);
  atomic_fetch_add(&woke, 1);
  return NULL;
}

static void settle(int n) {
  while (atomic_load(&started) < n) usleep(1000);
  usleep(50000); /* let them reach FUTEX_WAIT */
}

static void join_all(pthread_t *t, int n) {
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
}

int main(void) {
  struct timespec rel = {0, 30 * 1000 * 1000};
  long r = fx(&a, FUTEX_WAIT_PRIVATE, 0, &rel, NULL, 0);
  printf("timeout: %s\n", r == -1 && errno == ETIMEDOUT ? "ETIMEDOUT" : "?");
  r = fx(&a, FUTEX_WAIT_PRIVATE, 1, NULL, NULL, 0);
  printf("value mismatch: %s\n", r == -1 && errno == EAGAIN ? "EAGAIN" : "?");
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  now.tv_nsec += 20 * 1000 * 1000;
  if (now.tv_nsec >= 1000000000) { now.tv_sec++; now.tv_nsec -= 1000000000; }
  r = fx(&a, FUTEX_WAIT_BITSET_PRIVATE, 0, &now, NULL, FUTEX_BITSET_MATCH_ANY);
  printf("absolute timeout: %s\n", r == -1 && errno == ETIMEDOUT ? "ETIMEDOUT" : "?");

  /* bitset: a wake with bitset 1 misses a waiter on bitset 2; bitset 2 hits. */
  pthread_t t[4];
  started = 0; woke = 0;
  pthread_create(&t[0], NULL, wait_bitset2, NULL);
  settle(1);
  long miss = fx(&b, FUTEX_WAKE_BITSET_PRIVATE, 1, NULL, NULL, 1);
  atomic_store(&b, 1);
  long hit = fx(&b, FUTEX_WAKE_BITSET_PRIVATE, 1, NULL, NULL, 2);
  join_all(t, 1);
  printf("bitset: miss=%ld hit=%ld\n", miss, hit);

  /* REQUEUE: 3 waiters on a; wake 1, move 2 to b; waking b wakes 2. */
  atomic_store(&a, 0); atomic_store(&b, 0); started = 0; woke = 0;
  for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, wait_a, NULL);
  settle(3);
  atomic_store(&a, 1); /* whoever wakes, from a or from b, then leaves */
  long moved = fx(&a, FUTEX_REQUEUE_PRIVATE, 1, (void *)2L, &b, 0);
  usleep(20000);
  long onb = fx(&b, FUTEX_WAKE_PRIVATE, 10, NULL, NULL, 0);
  join_all(t, 3);
  printf("requeue: returned=%ld woken_from_b=%ld total=%d\n", moved, onb, atomic_load(&woke));

  /* CMP_REQUEUE with a stale value fails with EAGAIN. */
  atomic_store(&a, 0);
  r = fx(&a, FUTEX_CMP_REQUEUE_PRIVATE, 1, (void *)1L, &b, 42);
  printf("cmp_requeue stale: %s\n", r == -1 && errno == EAGAIN ? "EAGAIN" : "?");

  /* WAKE_OP: b += 1 and wake a waiter on a; wake on b if old b == 0. */
  atomic_store(&a, 0); atomic_store(&b, 0); started = 0; woke = 0;
  pthread_create(&t[0], NULL, wait_a_shared, NULL);
  settle(1);
  atomic_store(&a, 1);
  r = fx(&a, FUTEX_WAKE_OP, 1, (void *)1L, &b, FUTEX_OP(FUTEX_OP_ADD, 1, FUTEX_OP_CMP_EQ, 0));
  join_all(t, 1);
  printf("wake_op: woken=%ld b=%d\n", r, atomic_load(&b));
  return 0;
}
