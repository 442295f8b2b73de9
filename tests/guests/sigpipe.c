/* SIGPIPE on a write to a pipe with no reader: handled, and by default fatal. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
#include <errno.h>
#include <sys/wait.h>
static volatile int got;
static void h(int s) { got = s; }
int main(void) {
  int p[2]; pipe(p); close(p[0]);
  signal(SIGPIPE, h);
  int r = write(p[1], "x", 1);
  printf("handled: r=%d epipe=%d got=%d\n", r, errno == EPIPE, got);
  fflush(stdout);
  pid_t c = fork();
  if (c == 0) { signal(SIGPIPE, SIG_DFL); write(p[1], "x", 1); _exit(0); }
  int st; waitpid(c, &st, 0);
  printf("default: signaled=%d sig=%d\n", WIFSIGNALED(st), WTERMSIG(st));
  return 0;
}
