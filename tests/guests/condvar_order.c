/* Condition-variable handoff in a fixed order: thread i waits for turn i,
 * prints it and passes the turn on. Prints "0 1 ... N-1". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c = PTHREAD_COND_INITIALIZER;
static int turn, rounds = 3, n = 6;

static void *player(void *arg) {
  long me = (long)arg;
  for (int r = 0; r < rounds; r++) {
    pthread_mutex_lock(&m);
    while (turn % n != me) pthread_cond_wait(&c, &m);
    printf("%ld%c", me, (turn + 1) % n == 0 ? '\n' : ' ');
    fflush(stdout);
    turn++;
    pthread_cond_broadcast(&c);
    pthread_mutex_unlock(&m);
  }
  return (void *)(me * 10);
}

int main(int argc, char **argv) {
  if (argc > 1) n = atoi(argv[1]);
  if (n < 1 || n > 64) return 2;
  pthread_t t[64];
  for (long i = 0; i < n; i++) pthread_create(&t[i], NULL, player, (void *)i);
  long sum = 0;
  for (int i = 0; i < n; i++) {
    void *ret;
    pthread_join(t[i], &ret);
    sum += (long)ret;
  }
  printf("joined %ld\n", sum);
  return 0;
}
