/* Pipes, eventfds, poll and select between threads; deterministic output. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#define TOTAL (1 << 20)

static const char *ename(int e) {
    switch (e) {
    case 0: return "ok";
    case EAGAIN: return "EAGAIN";
    case EPIPE: return "EPIPE";
    case EINVAL: return "EINVAL";
    case EBADF: return "EBADF";
    default: return strerror(e);
    }
}

/* Runs EXPR with errno cleared and prints its result and errno. */
#define CHECK(label, expr)                                                   \
    do {                                                                     \
        errno = 0;                                                           \
        long r_ = (long)(expr);                                              \
        int e_ = errno;                                                      \
        printf("%s: %ld %s\n", label, r_, ename(e_));                        \
    } while (0)

static int pfd[2];
static uint32_t wsum;

static void *writer(void *arg) {
    (void)arg;
    unsigned char buf[7919];
    size_t sent = 0;
    uint32_t x = 12345;
    while (sent < TOTAL) {
        size_t n = sizeof buf;
        if (n > TOTAL - sent) n = TOTAL - sent;
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            buf[i] = x >> 16;
            wsum = wsum * 31 + buf[i];
        }
        size_t off = 0;
        while (off < n) {
            ssize_t w = write(pfd[1], buf + off, n - off);
            if (w < 0) { perror("write"); exit(1); }
            off += w;
        }
        sent += n;
    }
    close(pfd[1]);
    return NULL;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *late_writer(void *arg) {
    int fd = *(int *)arg;
    struct timespec d = {0, 100 * 1000 * 1000};
    nanosleep(&d, NULL);
    if (write(fd, "x", 1) != 1) exit(3);
    return NULL;
}

static void *late_eventfd(void *arg) {
    int fd = *(int *)arg;
    struct timespec d = {0, 50 * 1000 * 1000};
    nanosleep(&d, NULL);
    uint64_t v = 5;
    if (write(fd, &v, 8) != 8) exit(4);
    return NULL;
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);

    /* 1 MiB through a pipe between two threads. */
    if (pipe(pfd)) return 1;
    pthread_t t;
    pthread_create(&t, NULL, writer, NULL);
    uint32_t rsum = 0;
    size_t got = 0;
    unsigned char rb[5000];
    for (;;) {
        ssize_t n = read(pfd[0], rb, sizeof rb);
        if (n < 0) { perror("read"); return 1; }
        if (n == 0) break;
        for (ssize_t i = 0; i < n; i++) rsum = rsum * 31 + rb[i];
        got += n;
    }
    pthread_join(t, NULL);
    printf("pipe: %zu bytes, checksums %s\n", got, rsum == wsum ? "match" : "DIFFER");
    close(pfd[0]);

    /* pipe2 O_NONBLOCK: EAGAIN when empty and when full; fcntl flags. */
    int p[2];
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC)) return 1;
    char c;
    CHECK("empty read", read(p[0], &c, 1));
    printf("flags: nonblock=%d cloexec=%d\n", !!(fcntl(p[0], F_GETFL) & O_NONBLOCK),
           !!(fcntl(p[1], F_GETFD) & FD_CLOEXEC));
    static char big[100000];
    ssize_t w = write(p[1], big, sizeof big);
    printf("big nonblocking write: %zd\n", w);
    CHECK("write to full", write(p[1], big, 10));
    struct pollfd pp = {p[1], POLLOUT, 0};
    printf("poll full pipe for POLLOUT, timeout 0: %d\n", poll(&pp, 1, 0));
    CHECK("pipe2 bad flags", pipe2(p, O_APPEND));
    close(p[0]);
    close(p[1]);

    /* EOF after the writer closes, with data still buffered. */
    if (pipe(p)) return 1;
    write(p[1], "abc", 3);
    close(p[1]);
    char b3[10];
    ssize_t r1 = read(p[0], b3, 10);
    ssize_t r2 = read(p[0], b3, 10);
    printf("eof: %zd then %zd\n", r1, r2);
    pp = (struct pollfd){p[0], POLLIN, 0};
    int pr = poll(&pp, 1, 0);
    printf("poll after hangup: %d hup=%d\n", pr, !!(pp.revents & POLLHUP));
    close(p[0]);

    /* EPIPE after the reader closes. */
    if (pipe(p)) return 1;
    close(p[0]);
    CHECK("epipe", write(p[1], "x", 1));
    close(p[1]);

    /* eventfd: counter and semaphore modes. */
    int e = eventfd(3, EFD_NONBLOCK);
    uint64_t v = 4;
    write(e, &v, 8);
    read(e, &v, 8);
    printf("eventfd counter: %llu\n", (unsigned long long)v);
    CHECK("eventfd empty", read(e, &v, 8));
    v = 0xfffffffffffffffeULL;
    write(e, &v, 8);
    v = 1;
    CHECK("eventfd overflow", write(e, &v, 8));
    CHECK("eventfd short read", read(e, &v, 4));
    v = ~0ULL;
    CHECK("eventfd write max", write(e, &v, 8));
    close(e);
    e = eventfd(3, EFD_SEMAPHORE | EFD_CLOEXEC);
    printf("semaphore:");
    for (int i = 0; i < 3; i++) {
        read(e, &v, 8);
        printf(" %llu", (unsigned long long)v);
    }
    pp = (struct pollfd){e, POLLIN | POLLOUT, 0};
    poll(&pp, 1, 0);
    printf(" then revents in=%d out=%d\n", !!(pp.revents & POLLIN), !!(pp.revents & POLLOUT));
    /* A blocking eventfd read woken by another thread. */
    pthread_create(&t, NULL, late_eventfd, &e);
    read(e, &v, 8);
    pthread_join(t, NULL);
    printf("blocking semaphore read: %llu\n", (unsigned long long)v);
    close(e);

    /* poll: timeout 0, a timeout that expires, and a wake-up by a write. */
    if (pipe(p)) return 1;
    pp = (struct pollfd){p[0], POLLIN, 0};
    printf("poll timeout 0: %d\n", poll(&pp, 1, 0));
    double t0 = now();
    int n = poll(&pp, 1, 150);
    double el = now() - t0;
    printf("poll timeout 150ms: %d, waited enough: %s\n", n, el >= 0.150 ? "yes" : "no");
    pthread_create(&t, NULL, late_writer, &p[1]);
    t0 = now();
    n = poll(&pp, 1, 10000);
    el = now() - t0;
    pthread_join(t, NULL);
    printf("poll woken: %d revents=%#x early: %s\n", n, pp.revents, el < 5 ? "yes" : "no");
    struct timespec ts = {0, 50 * 1000 * 1000};
    read(p[0], &c, 1);
    t0 = now();
    n = ppoll(&pp, 1, &ts, NULL);
    el = now() - t0;
    printf("ppoll 50ms: %d, waited enough: %s\n", n, el >= 0.050 ? "yes" : "no");
    /* The harness may hand the native run stray inherited fds: make sure
     * the "bad" ones really are closed on both sides. */
    close(999);
    close(40);
    struct pollfd bad[2] = {{999, POLLIN, 0}, {-1, POLLIN, 0}};
    n = poll(bad, 2, 0);
    printf("poll bad fd: %d nval=%d neg=%d\n", n, !!(bad[0].revents & POLLNVAL), bad[1].revents);

    /* select on a pipe. */
    fd_set rs, ws;
    FD_ZERO(&rs);
    FD_ZERO(&ws);
    FD_SET(p[0], &rs);
    FD_SET(p[1], &ws);
    struct timeval tv = {0, 0};
    n = select(p[1] + 1, &rs, &ws, NULL, &tv);
    printf("select empty: %d r=%d w=%d\n", n, FD_ISSET(p[0], &rs), FD_ISSET(p[1], &ws));
    FD_ZERO(&rs);
    FD_SET(p[0], &rs);
    pthread_create(&t, NULL, late_writer, &p[1]);
    n = select(p[0] + 1, &rs, NULL, NULL, NULL);
    pthread_join(t, NULL);
    printf("select woken: %d r=%d\n", n, FD_ISSET(p[0], &rs));
    FD_ZERO(&rs);
    FD_SET(p[0], &rs);
    read(p[0], &c, 1);
    tv = (struct timeval){0, 60000};
    t0 = now();
    n = select(p[0] + 1, &rs, NULL, NULL, &tv);
    el = now() - t0;
    printf("select timeout: %d waited enough: %s\n", n, el >= 0.060 ? "yes" : "no");
    ts = (struct timespec){0, 0};
    FD_ZERO(&rs);
    FD_SET(0, &rs);
    FD_SET(p[0], &rs);
    int devnull = open("/dev/null", O_RDONLY);
    FD_SET(devnull, &rs);
    n = pselect(devnull + 1, &rs, NULL, NULL, &ts, NULL);
    printf("pselect devnull ready: %d\n", FD_ISSET(devnull, &rs));
    /* Linux's select silently ignores fds at or beyond the capacity of
     * the caller's fd table (64 until it grows), so the closed fd must
     * lie inside that capacity for EBADF to be the native answer. */
    FD_ZERO(&rs);
    FD_SET(40, &rs);
    CHECK("select bad fd", select(41, &rs, NULL, NULL, &tv));
    return 0;
}
