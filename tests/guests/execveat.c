/* execveat: relative to a directory fd, and fexecve (AT_EMPTY_PATH). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc > 1) {
    printf("ran via %s\n", argv[1]);
    return 0;
  }
  char dir[4096];
  strncpy(dir, argv[0], sizeof dir - 1);
  char base[4096];
  strncpy(base, argv[0], sizeof base - 1);
  int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
  const char *name = basename(base);
  char *envp[] = {NULL};
  pid_t c = fork();
  if (c == 0) {
    char *av[] = {argv[0], "dirfd", NULL};
    syscall(SYS_execveat, dfd, name, av, envp, 0);
    _exit(9);
  }
  int st;
  waitpid(c, &st, 0);
  c = fork();
  if (c == 0) {
    int fd = open(argv[0], O_RDONLY);
    char *av[] = {argv[0], "fexecve", NULL};
    syscall(SYS_execveat, fd, "", av, envp, AT_EMPTY_PATH);
    _exit(9);
  }
  waitpid(c, &st, 0);
  return 0;
}
