/*
 * files DIR: file and directory system calls on a directory the test made.
 *
 * DIR must hold exactly:
 *   a.txt        "hello, sandbox\n" (mode 0644)
 *   b.bin        10000 bytes, byte i = (i * 7 + 3) & 0xff
 *   link         a symbolic link to "a.txt"
 *   sub/         a directory holding c.txt ("see\n")
 * The program chdirs into DIR and exercises open/read/lseek/pread/readv/
 * fstat/stat/lstat/getdents64/getcwd/chdir/fchdir/openat/dup/dup2/dup3/
 * fcntl/access/readlink/close and writev on stdout, plus the usual errors.
 * It prints one line per result; the output is the same natively and
 * under the sentry. Exits 0 ("files: ok") or 1 ("files: FAILED").
 *
 * Build: gcc -O2 -static -o files files.c
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static int bad;

static const char *errname(int e)
{
	switch (e) {
	case 0: return "OK";
	case ENOENT: return "ENOENT";
	case EBADF: return "EBADF";
	case EISDIR: return "EISDIR";
	case ENOTDIR: return "ENOTDIR";
	case EINVAL: return "EINVAL";
	case EROFS: return "EROFS";
	case EACCES: return "EACCES";
	case EPERM: return "EPERM";
	case ESPIPE: return "ESPIPE";
	case EFAULT: return "EFAULT";
	case ENAMETOOLONG: return "ENAMETOOLONG";
	case ENOSYS: return "ENOSYS";
	default: return "other";
	}
}

static void check(const char *what, int ok)
{
	printf("%s: %s\n", what, ok ? "ok" : "FAILED");
	fflush(stdout);
	if (!ok)
		bad = 1;
}

/* Expects a call to fail with errno `want`. */
static void expect_err(const char *what, long r, int want)
{
	int e = errno;

	printf("%s -> %ld %s\n", what, r, r < 0 ? errname(e) : "OK");
	fflush(stdout);
	if (r >= 0 || e != want)
		bad = 1;
}

struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

static int cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_dir(const char *path)
{
	char buf[512]; /* small, so several getdents64 calls are needed */
	char *names[64];
	int n = 0, fd, i, total_calls = 0;
	long r;

	fd = open(path, O_RDONLY | O_DIRECTORY);
	if (fd < 0) {
		printf("open %s: %s\n", path, errname(errno));
		bad = 1;
		return;
	}
	for (;;) {
		long off = 0;

		r = syscall(SYS_getdents64, fd, buf, sizeof(buf));
		total_calls++;
		if (r < 0) {
			printf("getdents64: %s\n", errname(errno));
			bad = 1;
			break;
		}
		if (r == 0)
			break;
		while (off < r) {
			struct linux_dirent64 *d = (void *)(buf + off);
			const char *t = d->d_type == DT_REG ? "reg" :
					d->d_type == DT_DIR ? "dir" :
					d->d_type == DT_LNK ? "lnk" :
					d->d_type == DT_UNKNOWN ? "unknown" : "other";
			char *s;

			if (d->d_reclen == 0 || off + d->d_reclen > r) {
				printf("bad d_reclen %u\n", d->d_reclen);
				bad = 1;
				break;
			}
			if (d->d_ino == 0) {
				printf("entry %s has inode 0\n", d->d_name);
				bad = 1;
			}
			if (asprintf(&s, "%s (%s)", d->d_name, t) < 0 || n >= 64)
				exit(3);
			names[n++] = s;
			off += d->d_reclen;
		}
	}
	qsort(names, n, sizeof(names[0]), cmpstr);
	printf("getdents64 %s: %d entries\n", path, n);
	for (i = 0; i < n; i++) {
		printf("  %s\n", names[i]);
		free(names[i]);
	}
	r = syscall(SYS_getdents64, fd, buf, sizeof(buf));
	check("getdents64 at the end returns 0", r == 0);
	/* rewinding a directory starts the listing again */
	check("lseek(dirfd, 0, SEEK_SET)", lseek(fd, 0, SEEK_SET) == 0);
	r = syscall(SYS_getdents64, fd, buf, sizeof(buf));
	check("getdents64 after rewinding returns entries again", r > 0);
	lseek(fd, 0, SEEK_SET);
	errno = 0;
	r = syscall(SYS_getdents64, fd, buf, 8);
	expect_err("getdents64 with a too small buffer", r, EINVAL);
	close(fd);
}

static void show_cwd(const char *label)
{
	char buf[PATH_MAX];

	if (getcwd(buf, sizeof(buf)))
		printf("%s: cwd=%s\n", label, buf);
	else {
		printf("%s: getcwd: %s\n", label, errname(errno));
		bad = 1;
	}
}

int main(int argc, char **argv)
{
	char buf[20000];
	struct stat st;
	struct iovec iov[3];
	int fd, fd2, dirfd, i;
	long r;
	unsigned long sum;

	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}

	/* --- getcwd / chdir --- */
	check("chdir DIR", chdir(argv[1]) == 0);
	show_cwd("after chdir DIR");
	{
		char small[2];

		errno = 0;
		r = getcwd(small, sizeof(small)) ? 0 : -1;
		printf("getcwd into a 2-byte buffer -> %ld %s\n", r,
		       r < 0 ? (errno == ERANGE ? "ERANGE" : errname(errno)) : "OK");
		if (r == 0 || errno != ERANGE)
			bad = 1;
	}

	/* --- open / read / lseek / pread / fstat --- */
	fd = open("a.txt", O_RDONLY);
	check("open a.txt", fd >= 0);
	r = read(fd, buf, sizeof(buf));
	printf("read a.txt -> %ld [%.*s]\n", r, r > 0 ? (int)r - 1 : 0, buf);
	check("read returns the whole file", r == 15 && memcmp(buf, "hello, sandbox\n", 15) == 0);
	check("read at EOF returns 0", read(fd, buf, sizeof(buf)) == 0);
	check("lseek SEEK_SET 7", lseek(fd, 7, SEEK_SET) == 7);
	r = read(fd, buf, 4);
	check("read 4 after lseek gives \"sand\"", r == 4 && memcmp(buf, "sand", 4) == 0);
	check("lseek SEEK_CUR 0 is 11", lseek(fd, 0, SEEK_CUR) == 11);
	check("lseek SEEK_CUR -3 is 8", lseek(fd, -3, SEEK_CUR) == 8);
	check("lseek SEEK_END 0 is 15", lseek(fd, 0, SEEK_END) == 15);
	check("lseek SEEK_END -1 is 14", lseek(fd, -1, SEEK_END) == 14);
	check("lseek past the end is allowed", lseek(fd, 100, SEEK_SET) == 100);
	check("read past the end returns 0", read(fd, buf, 10) == 0);
	errno = 0;
	expect_err("lseek to a negative offset", lseek(fd, -1, SEEK_SET), EINVAL);
	errno = 0;
	expect_err("lseek with whence 42", lseek(fd, 0, 42), EINVAL);
	lseek(fd, 3, SEEK_SET);
	r = pread(fd, buf, 5, 0);
	check("pread 5 at 0 gives \"hello\"", r == 5 && memcmp(buf, "hello", 5) == 0);
	check("pread does not move the offset", lseek(fd, 0, SEEK_CUR) == 3);
	r = pread(fd, buf, 100, 10);
	check("pread near the end is short", r == 5 && memcmp(buf, "dbox\n", 5) == 0);
	check("pread past the end returns 0", pread(fd, buf, 10, 1000) == 0);
	errno = 0;
	expect_err("pread at a negative offset", pread(fd, buf, 1, -5), EINVAL);
	check("fstat a.txt", fstat(fd, &st) == 0);
	printf("a.txt: size=%lld mode=%o nlink=%lu regular=%d\n", (long long)st.st_size,
	       (unsigned)(st.st_mode & 07777), (unsigned long)st.st_nlink, S_ISREG(st.st_mode));
	check("st_blksize is positive", st.st_blksize > 0);

	/* readv */
	{
		char x[5], y[20];

		lseek(fd, 0, SEEK_SET);
		iov[0].iov_base = x;
		iov[0].iov_len = sizeof(x);
		iov[1].iov_base = y;
		iov[1].iov_len = sizeof(y);
		r = readv(fd, iov, 2);
		check("readv fills both buffers in order",
		      r == 15 && memcmp(x, "hello", 5) == 0 && memcmp(y, ", sandbox\n", 10) == 0);
	}

	/* --- dup / dup2 / dup3 / fcntl --- */
	lseek(fd, 0, SEEK_SET);
	check("dup2(fd, 10) returns 10", dup2(fd, 10) == 10);
	r = read(10, buf, 6);
	check("read via the duplicate", r == 6 && memcmp(buf, "hello,", 6) == 0);
	check("the duplicate shares the offset", lseek(fd, 0, SEEK_CUR) == 6);
	check("dup2(fd, fd) returns fd", dup2(fd, fd) == fd);
	fd2 = dup(fd);
	check("dup returns a new descriptor", fd2 >= 0 && fd2 != fd && fd2 != 10);
	check("F_GETFD of a new descriptor is 0", fcntl(fd, F_GETFD) == 0);
	check("F_SETFD FD_CLOEXEC", fcntl(fd, F_SETFD, FD_CLOEXEC) == 0);
	check("F_GETFD gives FD_CLOEXEC", fcntl(fd, F_GETFD) == FD_CLOEXEC);
	check("the duplicate does not share FD_CLOEXEC", fcntl(10, F_GETFD) == 0);
	r = fcntl(fd, F_GETFL);
	check("F_GETFL access mode is O_RDONLY", r >= 0 && (r & O_ACCMODE) == O_RDONLY);
	check("F_SETFL O_NONBLOCK", fcntl(fd, F_SETFL, O_NONBLOCK) == 0);
	check("F_GETFL has O_NONBLOCK", (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
	check("file status flags are shared with dups", (fcntl(10, F_GETFL) & O_NONBLOCK) != 0);
	fcntl(fd, F_SETFL, 0);
	r = fcntl(fd, F_DUPFD, 20);
	check("F_DUPFD 20 gives a descriptor >= 20", r >= 20);
	printf("F_DUPFD 20 -> %ld\n", r);
	close((int)r);
	r = fcntl(fd, F_DUPFD_CLOEXEC, 30);
	check("F_DUPFD_CLOEXEC 30 gives >= 30 with FD_CLOEXEC",
	      r >= 30 && fcntl((int)r, F_GETFD) == FD_CLOEXEC);
	close((int)r);
	r = dup3(fd, 40, O_CLOEXEC);
	check("dup3(fd, 40, O_CLOEXEC)", r == 40 && fcntl(40, F_GETFD) == FD_CLOEXEC);
	errno = 0;
	expect_err("dup3 with equal descriptors", dup3(fd, fd, 0), EINVAL);
	check("close 10", close(10) == 0);
	errno = 0;
	expect_err("read from the closed descriptor 10", read(10, buf, 1), EBADF);
	errno = 0;
	expect_err("close of a closed descriptor", close(10), EBADF);
	errno = 0;
	expect_err("dup2 from a bad descriptor", dup2(12345, 50), EBADF);
	errno = 0;
	expect_err("fcntl F_GETFD on a bad descriptor", fcntl(777, F_GETFD), EBADF);
	close(40);
	close(fd2);
	close(fd);

	/* --- a bigger file read in chunks --- */
	fd = open("b.bin", O_RDONLY | O_CLOEXEC);
	check("open b.bin with O_CLOEXEC", fd >= 0 && fcntl(fd, F_GETFD) == FD_CLOEXEC);
	sum = 0;
	for (i = 0;;) {
		int k;

		r = read(fd, buf, 999);
		if (r <= 0)
			break;
		for (k = 0; k < r; k++, i++) {
			if ((unsigned char)buf[k] != ((i * 7 + 3) & 0xff))
				bad = 1;
			sum += (unsigned char)buf[k];
		}
	}
	printf("b.bin: read %d bytes in 999-byte chunks, sum=%lu\n", i, sum);
	check("b.bin contents", i == 10000);
	check("fstat b.bin size", fstat(fd, &st) == 0 && st.st_size == 10000);
	close(fd);

	/* --- stat / lstat / readlink / access --- */
	check("stat sub is a directory", stat("sub", &st) == 0 && S_ISDIR(st.st_mode));
	check("stat link follows it", stat("link", &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 15);
	check("lstat link is a symlink", lstat("link", &st) == 0 && S_ISLNK(st.st_mode));
	memset(buf, 0, 64);
	r = readlink("link", buf, 64);
	printf("readlink link -> %ld [%s]\n", r, r > 0 ? buf : "");
	check("readlink gives a.txt (not NUL-terminated, length 5)", r == 5);
	errno = 0;
	expect_err("readlink of a regular file", readlink("a.txt", buf, 64), EINVAL);
	check("access a.txt R_OK", access("a.txt", R_OK) == 0);
	check("access sub X_OK", access("sub", X_OK) == 0);
	errno = 0;
	expect_err("access of a missing file", access("missing", F_OK), ENOENT);
	check("faccessat AT_FDCWD a.txt", faccessat(AT_FDCWD, "a.txt", R_OK, 0) == 0);

	/* --- errors --- */
	errno = 0;
	expect_err("open a missing file", open("missing.txt", O_RDONLY), ENOENT);
	errno = 0;
	expect_err("open a.txt/x", open("a.txt/x", O_RDONLY), ENOTDIR);
	errno = 0;
	expect_err("open a.txt with O_DIRECTORY", open("a.txt", O_RDONLY | O_DIRECTORY), ENOTDIR);
	errno = 0;
	expect_err("stat a missing file", stat("missing.txt", &st), ENOENT);
	fd = open("sub", O_RDONLY);
	check("open a directory O_RDONLY", fd >= 0);
	errno = 0;
	expect_err("read from a directory", read(fd, buf, 10), EISDIR);
	close(fd);
	errno = 0;
	expect_err("chdir into a file", chdir("a.txt"), ENOTDIR);
	errno = 0;
	expect_err("chdir into a missing dir", chdir("missing"), ENOENT);
	errno = 0;
	expect_err("open with a bad pointer", syscall(SYS_open, (void *)16, O_RDONLY), EFAULT);
	fd = open("a.txt", O_RDONLY);
	errno = 0;
	expect_err("read into a bad pointer", syscall(SYS_read, fd, (void *)16, 10), EFAULT);
	close(fd);

	/* --- getdents64 --- */
	list_dir(".");
	list_dir("sub");

	/* --- chdir / fchdir / openat --- */
	dirfd = open(".", O_RDONLY | O_DIRECTORY);
	check("open . O_DIRECTORY", dirfd >= 0);
	check("chdir sub", chdir("sub") == 0);
	show_cwd("after chdir sub");
	fd = open("c.txt", O_RDONLY);
	r = fd >= 0 ? read(fd, buf, 100) : -1;
	check("relative open after chdir", r == 4 && memcmp(buf, "see\n", 4) == 0);
	close(fd);
	fd = openat(dirfd, "a.txt", O_RDONLY);
	check("openat(dirfd, a.txt)", fd >= 0 && read(fd, buf, 5) == 5 && memcmp(buf, "hello", 5) == 0);
	close(fd);
	fd = openat(dirfd, "sub/c.txt", O_RDONLY);
	check("openat(dirfd, sub/c.txt)", fd >= 0);
	close(fd);
	check("chdir ..", chdir("..") == 0);
	show_cwd("after chdir ..");
	check("chdir /", chdir("/") == 0);
	show_cwd("after chdir /");
	check("fchdir back", fchdir(dirfd) == 0);
	show_cwd("after fchdir");
	check("open relative after fchdir", access("sub/c.txt", R_OK) == 0);
	close(dirfd);

	/* --- special files --- */
	fd = open("/dev/null", O_RDONLY);
	check("read /dev/null gives EOF", fd >= 0 && read(fd, buf, 10) == 0);
	close(fd);
	fd = open("/dev/zero", O_RDONLY);
	memset(buf, 1, 100);
	r = fd >= 0 ? read(fd, buf, 100) : -1;
	for (i = 0; i < 100 && r == 100; i++)
		if (buf[i])
			r = -1;
	check("read /dev/zero gives zeros", r == 100);
	close(fd);

	/* --- writev to stdout --- */
	fflush(stdout);
	iov[0].iov_base = "write";
	iov[0].iov_len = 5;
	iov[1].iov_base = "v to ";
	iov[1].iov_len = 5;
	iov[2].iov_base = "stdout\n";
	iov[2].iov_len = 7;
	r = writev(1, iov, 3);
	printf("writev returned %ld\n", r);
	check("writev wrote all 17 bytes", r == 17);
	r = write(1, "", 0);
	check("a zero-length write returns 0", r == 0);

	printf("files: %s\n", bad ? "FAILED" : "ok");
	return bad;
}
