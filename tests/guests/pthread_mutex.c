#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static long counter;
static void *work(void *arg) { long n = (long)arg; for (long i = 0; i < n; i++) { pthread_mutex_lock(&m); counter++; pthread_mutex_unlock(&m); } return (void*)(n * 2); }
int main(int argc, char **argv) {
  int threads = argc > 1 ? atoi(argv[1]) : 8; long iters = argc > 2 ? atol(argv[2]) : 100000;
  pthread_t t[64]; long sum = 0;
  for (int i = 0; i < threads; i++) pthread_create(&t[i], 0, work, (void*)iters);
  for (int i = 0; i < threads; i++) { void *r; pthread_join(t[i], &r); sum += (long)r; }
  printf("counter=%ld expected=%ld joinsum=%ld\n", counter, threads * iters, sum);
  return counter == threads * iters ? 0 : 1;
}
