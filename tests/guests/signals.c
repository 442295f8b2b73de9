/* Signal handlers: SA_SIGINFO details, rt_sigreturn restoring general and
 * FP registers, SA_RESTART restarting a blocked read, EINTR without it,
 * SA_RESETHAND, masks and sigpending, sigsuspend, alarm, faults caught by a
 * handler (SIGSEGV with si_addr, SIGFPE, SIGILL, SIGTRAP), SIGCHLD. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t hits, last_sig, last_code;
static volatile void *last_addr;
static sigjmp_buf jb;

static void on_info(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  hits++;
  last_sig = sig;
  last_code = si->si_code;
  last_addr = si->si_addr;
}

static void on_fault(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  last_sig = sig;
  last_addr = si->si_addr;
  siglongjmp(jb, 1);
}

static volatile sig_atomic_t fp_hits;
static void clobber_fp(int sig) {
  (void)sig;
  __asm__ volatile("xorpd %%xmm0, %%xmm0; xorpd %%xmm1, %%xmm1; xorpd %%xmm2, %%xmm2;"
                   "xorpd %%xmm3, %%xmm3; xorpd %%xmm4, %%xmm4; xorpd %%xmm5, %%xmm5;"
                   "xorpd %%xmm6, %%xmm6; xorpd %%xmm7, %%xmm7; xorpd %%xmm8, %%xmm8;"
                   "mov $0, %%r12; mov $0, %%r13; mov $0, %%r14; mov $0, %%r15"
                   ::: "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
                       "r12", "r13", "r14", "r15");
  fp_hits++;
}

static pid_t main_tid;
/* Sends `sig` to the main thread `count` times, `us` apart. */
struct pinger { int sig, count, us; };
static void *pinger(void *arg) {
  struct pinger *p = arg;
  for (int i = 0; i < p->count; i++) {
    usleep(p->us);
    syscall(SYS_tgkill, getpid(), main_tid, p->sig);
  }
  return NULL;
}

static void plain(int sig) { (void)sig; hits++; }

static int pipefd[2];
static void *late_writer(void *arg) {
  (void)arg;
  usleep(100000);
  if (write(pipefd[1], "x", 1) != 1) return NULL;
  return NULL;
}

static void install(int sig, void (*h)(int), int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = h;
  sa.sa_flags = flags;
  sigaction(sig, &sa, NULL);
}

static void install_info(int sig, void (*h)(int, siginfo_t *, void *), int flags) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = h;
  sa.sa_flags = SA_SIGINFO | flags;
  sigaction(sig, &sa, NULL);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  install_info(SIGUSR1, on_info, 0);
  kill(getpid(), SIGUSR1);
  printf("kill self: hits=%d sig=%d code=%s\n", hits, last_sig, last_code == SI_USER ? "SI_USER" : "?");
  syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGUSR1);
  printf("tgkill self: hits=%d code=%s\n", hits, last_code == SI_TKILL ? "SI_TKILL" : "?");

  /* FP and general registers survive handlers that clobber them, arriving
   * asynchronously in the middle of a loop that keeps its state in
   * registers. */
  main_tid = (pid_t)syscall(SYS_gettid);
  install(SIGUSR2, clobber_fp, 0);
  struct pinger pg = {SIGUSR2, 20, 2000};
  pthread_t pt;
  pthread_create(&pt, NULL, pinger, &pg);
  double acc = 0.0;
  long iacc = 0;
  for (long i = 0; i < 200000000L && fp_hits < 20; i++) {
    acc += 0.5;
    iacc += 3;
  }
  pthread_join(pt, NULL);
  printf("registers survive handlers: fp=%d int=%d hits>0=%d\n", acc * 6 == (double)iacc, acc > 0, fp_hits > 0);

  /* Mask, pending, unblock delivers. */
  sigset_t set, old, pend;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigprocmask(SIG_BLOCK, &set, &old);
  int before = hits;
  kill(getpid(), SIGUSR1);
  sigpending(&pend);
  printf("blocked: delivered=%d pending=%d\n", hits != before, sigismember(&pend, SIGUSR1));
  sigprocmask(SIG_SETMASK, &old, NULL);
  printf("unblocked: delivered=%d\n", hits != before);

  /* SA_RESTART: a blocked read resumes after the handler. */
  if (pipe(pipefd) != 0) return 1;
  install(SIGALRM, plain, SA_RESTART);
  pthread_t t, t2;
  pthread_create(&t, NULL, late_writer, NULL);
  struct pinger once = {SIGALRM, 1, 30000};
  pthread_create(&t2, NULL, pinger, &once);
  char ch = 0;
  ssize_t n = read(pipefd[0], &ch, 1);
  pthread_join(t, NULL);
  pthread_join(t2, NULL);
  printf("SA_RESTART read: n=%zd ch=%c\n", n, ch);
  /* Without SA_RESTART: EINTR. */
  install(SIGALRM, plain, 0);
  alarm(1);
  errno = 0;
  n = read(pipefd[0], &ch, 1);
  printf("read without SA_RESTART: n=%zd %s\n", n, errno == EINTR ? "EINTR" : strerror(errno));

  /* SA_RESETHAND: the second signal takes the default (ignored: SIGURG). */
  install(SIGURG, plain, SA_RESETHAND);
  before = hits;
  raise(SIGURG);
  raise(SIGURG);
  printf("SA_RESETHAND: handler ran %d time(s)\n", hits - before);

  /* sigsuspend returns EINTR after the handler, with the old mask back. */
  install(SIGUSR1, plain, 0);
  sigprocmask(SIG_BLOCK, &set, &old);
  kill(getpid(), SIGUSR1);
  sigset_t none;
  sigemptyset(&none);
  int r = sigsuspend(&none);
  sigset_t now;
  sigprocmask(SIG_SETMASK, NULL, &now);
  printf("sigsuspend: r=%d %s, mask restored=%d\n", r, errno == EINTR ? "EINTR" : "?", sigismember(&now, SIGUSR1));
  sigprocmask(SIG_SETMASK, &old, NULL);

  /* Faults reach handlers. */
  install_info(SIGSEGV, on_fault, 0);
  volatile int *bad = (volatile int *)(long)(hits * 0 + 0x10);
  if (sigsetjmp(jb, 1) == 0) *bad = 1;
  printf("SIGSEGV: sig=%d addr=%p\n", last_sig, last_addr);
  install_info(SIGFPE, on_fault, 0);
  volatile int zero = 0;
  if (sigsetjmp(jb, 1) == 0) { volatile int q = 7 / zero; (void)q; }
  printf("SIGFPE: sig=%d\n", last_sig);
  install_info(SIGILL, on_fault, 0);
  if (sigsetjmp(jb, 1) == 0) __asm__ volatile("ud2");
  printf("SIGILL: sig=%d\n", last_sig);
  install_info(SIGTRAP, on_fault, 0);
  if (sigsetjmp(jb, 1) == 0) __asm__ volatile("int3");
  printf("SIGTRAP: sig=%d\n", last_sig);

  /* SIGCHLD reaches the parent. */
  install_info(SIGCHLD, on_info, 0);
  before = hits;
  pid_t kid = fork();
  if (kid == 0) _exit(4);
  int st;
  waitpid(kid, &st, 0);
  usleep(10000);
  printf("SIGCHLD: delivered=%d code=%s\n", hits != before, last_code == CLD_EXITED ? "CLD_EXITED" : "?");
  return 0;
}
