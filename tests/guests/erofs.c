/*
 * erofs FILE NEWFILE: tries to change the host filesystem.
 *
 * The sandbox's filesystem is read-only, so under the sentry every attempt
 * must fail with EROFS and leave FILE and the directory unchanged:
 *   open(FILE, O_WRONLY), and if that succeeded, write(2) to it;
 *   open(FILE, O_RDWR); open(FILE, O_WRONLY | O_TRUNC);
 *   open(FILE, O_WRONLY | O_APPEND);
 *   open(NEWFILE, O_WRONLY | O_CREAT); openat(AT_FDCWD, NEWFILE, O_CREAT|O_EXCL);
 *   pwrite on a read-only descriptor of FILE (EBADF natively too).
 * Prints one line per attempt: "<what>: errno=<n> (<NAME>)" or
 * "<what>: succeeded". Exits 0 when every attempt failed, 1 otherwise.
 *
 * Build: gcc -O2 -static -o erofs erofs.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int succeeded;

static const char *name(int e)
{
	switch (e) {
	case EROFS: return "EROFS";
	case EBADF: return "EBADF";
	case EACCES: return "EACCES";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case ENOSYS: return "ENOSYS";
	default: return "other";
	}
}

static void attempt_open(const char *what, const char *path, int flags)
{
	int fd;

	errno = 0;
	fd = open(path, flags, 0644);
	if (fd < 0) {
		printf("%s: errno=%d (%s)\n", what, errno, name(errno));
		return;
	}
	/* the open succeeded: the write must not */
	errno = 0;
	if (write(fd, "scribbled\n", 10) < 0) {
		printf("%s: open succeeded, write errno=%d (%s)\n", what, errno, name(errno));
	} else {
		printf("%s: succeeded\n", what);
		succeeded = 1;
	}
	close(fd);
}

int main(int argc, char **argv)
{
	int fd;

	if (argc != 3) {
		fprintf(stderr, "usage: %s FILE NEWFILE\n", argv[0]);
		return 2;
	}
	attempt_open("open O_WRONLY", argv[1], O_WRONLY);
	attempt_open("open O_RDWR", argv[1], O_RDWR);
	attempt_open("open O_WRONLY|O_TRUNC", argv[1], O_WRONLY | O_TRUNC);
	attempt_open("open O_WRONLY|O_APPEND", argv[1], O_WRONLY | O_APPEND);
	attempt_open("open O_RDONLY|O_TRUNC", argv[1], O_RDONLY | O_TRUNC);
	attempt_open("open O_CREAT new file", argv[2], O_WRONLY | O_CREAT);
	attempt_open("open O_CREAT|O_EXCL new file", argv[2], O_RDWR | O_CREAT | O_EXCL);

	fd = open(argv[1], O_RDONLY);
	errno = 0;
	if (fd < 0) {
		printf("open O_RDONLY failed: errno=%d\n", errno);
		return 1;
	}
	if (pwrite(fd, "x", 1, 0) < 0)
		printf("pwrite on a read-only descriptor: errno=%d (%s)\n", errno, name(errno));
	else {
		printf("pwrite on a read-only descriptor: succeeded\n");
		succeeded = 1;
	}
	errno = 0;
	if (write(fd, "x", 1) < 0)
		printf("write on a read-only descriptor: errno=%d (%s)\n", errno, name(errno));
	else {
		printf("write on a read-only descriptor: succeeded\n");
		succeeded = 1;
	}
	close(fd);
	printf("erofs: %s\n", succeeded ? "SOME WRITES SUCCEEDED" : "all writes refused");
	return succeeded;
}
