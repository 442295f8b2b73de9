/* Job control: a child stopped by SIGSTOP/SIGTSTP is reported by
 * WUNTRACED, continued by SIGCONT (WCONTINUED), then killed. */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  int sigs[2] = {SIGSTOP, SIGTSTP};
  for (int i = 0; i < 2; i++) {
    pid_t c = fork();
    if (c == 0) {
      for (;;) pause();
    }
    usleep(50000);
    kill(c, sigs[i]);
    int st = 0;
    pid_t r = waitpid(c, &st, WUNTRACED);
    printf("stopped: %d sig=%d\n", r == c && WIFSTOPPED(st), WSTOPSIG(st));
    kill(c, SIGCONT);
    r = waitpid(c, &st, WCONTINUED);
    printf("continued: %d\n", r == c && WIFCONTINUED(st));
    kill(c, SIGTERM);
    waitpid(c, &st, 0);
    printf("then killed: %d sig=%d\n", WIFSIGNALED(st), WTERMSIG(st));
  }
  return 0;
}
