/* fork copies memory: the child sees the parent's data, its writes stay
 * its own; WNOHANG, ECHILD, waitid, exit statuses and signals. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
  size_t len = 8 << 20;
  char *big = malloc(len);
  memset(big, 'p', len);
  int shared_counter = 41;
  pid_t c = fork();
  if (c == 0) {
    int ok = big[len - 1] == 'p' && shared_counter == 41;
    memset(big, 'c', len);
    shared_counter = 99;
    _exit(ok ? 7 : 1);
  }
  int st;
  printf("WNOHANG first: %d\n", waitpid(c, &st, WNOHANG) >= 0);
  waitpid(c, &st, 0);
  printf("child saw parent data: %s, exit %d\n", WEXITSTATUS(st) == 7 ? "yes" : "no", WEXITSTATUS(st));
  printf("parent data intact: %s\n", big[0] == 'p' && shared_counter == 41 ? "yes" : "no");
  errno = 0;
  int none = (int)waitpid(-1, &st, 0);
  printf("no children: %d %s\n", none, errno == ECHILD ? "ECHILD" : "?");
  c = fork();
  if (c == 0) { volatile int *p = NULL; *p = 1; _exit(0); }
  waitpid(c, &st, 0);
  printf("segfaulting child: signaled=%d sig=%d\n", WIFSIGNALED(st), WTERMSIG(st));
  c = fork();
  if (c == 0) _exit(3);
  siginfo_t si;
  memset(&si, 0, sizeof si);
  waitid(P_PID, c, &si, WEXITED);
  printf("waitid: code=%s status=%d pid_ok=%d\n", si.si_code == CLD_EXITED ? "CLD_EXITED" : "?", si.si_status, si.si_pid == c);
  printf("getppid in child matches: ");
  fflush(stdout);
  pid_t me = getpid();
  c = fork();
  if (c == 0) { printf("%s\n", getppid() == me ? "yes" : "no"); fflush(stdout); _exit(0); }
  waitpid(c, &st, 0);
  return 0;
}
