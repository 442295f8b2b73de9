/* execve from a thread that is not the leader: the other threads die and
 * the new image runs as the process leader (TID == PID). Also SA_ONSTACK:
 * a handler runs on the alternate signal stack. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static char altstack[65536];
static volatile int on_alt;
static void h(int s) {
  (void)s;
  char local;
  on_alt = (uintptr_t)&local >= (uintptr_t)altstack && (uintptr_t)&local < (uintptr_t)altstack + sizeof altstack;
}

static char *self;
static void *execer(void *arg) {
  (void)arg;
  execl(self, self, "child", (char *)NULL);
  return NULL;
}

static void *sleeper(void *arg) {
  (void)arg;
  for (;;) pause();
  return NULL;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc > 1) {
    printf("new image: tid==pid %d\n", (pid_t)syscall(SYS_gettid) == getpid());
    return 0;
  }
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
  sigaltstack(&ss, NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = h;
  sa.sa_flags = SA_ONSTACK;
  sigaction(SIGUSR1, &sa, NULL);
  raise(SIGUSR1);
  printf("handler on the alternate stack: %d\n", on_alt);
  self = argv[0];
  pthread_t t;
  pthread_create(&t, NULL, sleeper, NULL);
  pthread_create(&t, NULL, execer, NULL);
  for (;;) pause();
}
