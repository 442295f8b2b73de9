/* A fork-exec-wait chain: `fork_chain N` forks a child that execs
 * `fork_chain N-1`; each level exits with its child's status + 1, so the
 * top returns N (the leaf exits 0). Prints each level's pid relation. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 5;
  if (n <= 0) return 0;
  fflush(stdout);
  pid_t child = fork();
  if (child < 0) { perror("fork"); return 100; }
  if (child == 0) {
    char arg[16];
    snprintf(arg, sizeof arg, "%d", n - 1);
    execl("/proc/self/exe", argv[0], arg, (char *)NULL);
    execl(argv[0], argv[0], arg, (char *)NULL);
    perror("exec");
    _exit(101);
  }
  int st = 0;
  pid_t got = waitpid(child, &st, 0);
  if (got != child || !WIFEXITED(st)) { printf("level %d: bad wait\n", n); return 102; }
  printf("level %d: child exited %d\n", n, WEXITSTATUS(st));
  return WEXITSTATUS(st) + 1;
}
