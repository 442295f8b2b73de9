/* Process groups and sessions, printed as relations so native and
 * sandboxed runs compare equal. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  pid_t me = getpid();
  printf("getpgrp == getpgid(0): %d\n", getpgrp() == getpgid(0));
  pid_t c = fork();
  if (c == 0) {
    setpgid(0, 0);
    printf("child leads its group: %d\n", getpgid(0) == getpid());
    pid_t r = setsid();
    int e = errno;
    printf("child setsid as group leader: %d %s\n", r, e == EPERM ? "EPERM" : "?");
    pause();
    _exit(0);
  }
  usleep(50000);
  printf("parent sees child's group: %d\n", getpgid(c) == c);
  printf("child session is parent's: %d\n", getsid(c) == getsid(0));
  kill(-c, SIGTERM);
  int st;
  waitpid(c, &st, 0);
  printf("kill(-pgid) reached the child: %d sig=%d\n", WIFSIGNALED(st), WTERMSIG(st));
  c = fork();
  if (c == 0) {
    pid_t s = setsid();
    printf("new session: %d leads=%d\n", s == getpid(), getsid(0) == getpid() && getpgrp() == getpid());
    _exit(0);
  }
  waitpid(c, &st, 0);
  printf("parent unchanged: %d\n", getpid() == me);
  return 0;
}
