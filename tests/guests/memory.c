/*
 * memory [MODE]: exercises the memory system calls through libc.
 *
 * MODE "all" (the default) runs every check below and prints one line per
 * check ("name: ok" or "name: FAILED ..."), then "memory: ok" and exits 0,
 * or "memory: FAILED" and exits 1:
 *   - malloc of many sizes, from 1 byte to 64 MiB (small ones come from the
 *     brk heap, large ones from mmap), each filled with a pattern that is
 *     verified after all of them were allocated;
 *   - thousands of small mixed allocations, frees and reallocs;
 *   - realloc growth from 16 bytes to 128 MiB, keeping the contents (glibc
 *     moves large blocks with mremap);
 *   - brk/sbrk: grow the heap by 1 MiB, use it, shrink it back (raw brk
 *     with musl, whose sbrk cannot grow the heap);
 *   - mmap/munmap: a hole punched into an anonymous mapping and filled
 *     again with MAP_FIXED reads as zeros, its neighbours keep their data;
 *   - mremap: growing (MREMAP_MAYMOVE) and shrinking keeps the data;
 *   - mprotect: read-only, PROT_NONE and back to read-write keep the data;
 *     unaligned addresses give EINVAL;
 *   - madvise(MADV_DONTNEED) zeroes private anonymous memory;
 *   - a private file mapping of the program itself starts with "\177ELF".
 * The output is the same natively and under the sentry.
 *
 * MODE "mprotect-fault": writes to a page made read-only; dies of SIGSEGV.
 *
 * Build: gcc -O2 -static -o memory memory.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PAGE 4096UL

static int bad;

static void report(const char *what, int ok)
{
	printf("%s: %s\n", what, ok ? "ok" : "FAILED");
	fflush(stdout);
	if (!ok)
		bad = 1;
}

static unsigned char pat(size_t i, size_t seed)
{
	return (unsigned char)((i * 131 + seed * 7 + (i >> 12)) & 0xff);
}

static void fill(unsigned char *p, size_t n, size_t seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = pat(i, seed);
}

static int verify(const unsigned char *p, size_t n, size_t seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] != pat(i, seed))
			return 0;
	return 1;
}

static void malloc_sizes(void)
{
	static const size_t sizes[] = {
		1, 7, 16, 24, 100, 1000, 4095, 4096, 4097, 65536, 131071,
		131072, 200000, 1 << 20, (1 << 20) + 1, 8 << 20, 64 << 20,
	};
	enum { N = sizeof(sizes) / sizeof(sizes[0]) };
	unsigned char *p[N];
	size_t i;
	int ok = 1;

	for (i = 0; i < N; i++) {
		p[i] = malloc(sizes[i]);
		if (!p[i]) {
			ok = 0;
			continue;
		}
		fill(p[i], sizes[i], i);
	}
	for (i = 0; i < N; i++)
		if (p[i] && !verify(p[i], sizes[i], i))
			ok = 0;
	for (i = 0; i < N; i++)
		free(p[i]);
	report("malloc of 1 byte .. 64 MiB", ok);

	p[0] = calloc(1 << 20, 4);
	ok = p[0] != NULL;
	for (i = 0; ok && i < (4UL << 20); i++)
		if (p[0][i])
			ok = 0;
	free(p[0]);
	report("calloc 4 MiB is zeroed", ok);
}

static void malloc_churn(void)
{
	enum { N = 4000 };
	static unsigned char *p[N];
	static size_t sz[N];
	unsigned int x = 12345;
	size_t i, round;
	int ok = 1;

	for (round = 0; round < 4; round++) {
		for (i = 0; i < N; i++) {
			x = x * 1103515245 + 12345;
			if (p[i] && (x >> 16) % 3 == 0) {
				if (!verify(p[i], sz[i], i))
					ok = 0;
				free(p[i]);
				p[i] = NULL;
			} else if (p[i]) {
				size_t n = (x >> 8) % 3000 + 1;
				unsigned char *q;

				if (!verify(p[i], sz[i], i))
					ok = 0;
				q = realloc(p[i], n);
				if (!q) {
					ok = 0;
					continue;
				}
				if (!verify(q, n < sz[i] ? n : sz[i], i))
					ok = 0;
				fill(q, n, i);
				p[i] = q;
				sz[i] = n;
			} else {
				sz[i] = (x >> 8) % 2000 + 1;
				p[i] = malloc(sz[i]);
				if (!p[i]) {
					ok = 0;
					continue;
				}
				fill(p[i], sz[i], i);
			}
		}
	}
	for (i = 0; i < N; i++) {
		if (p[i] && !verify(p[i], sz[i], i))
			ok = 0;
		free(p[i]);
	}
	report("4000 small allocations, frees and reallocs", ok);
}

static void realloc_growth(void)
{
	size_t n = 16, old;
	unsigned char *p = malloc(n), *q;
	int ok = p != NULL;

	if (p)
		fill(p, n, 99);
	while (ok && n < (128UL << 20)) {
		old = n;
		n *= 2;
		q = realloc(p, n);
		if (!q) {
			ok = 0;
			break;
		}
		p = q;
		if (!verify(p, old, 99))
			ok = 0;
		fill(p + old, n - old, 0);
		/* keep the whole block one pattern for the next round */
		fill(p, n, 99);
	}
	free(p);
	report("realloc growth 16 B .. 128 MiB keeps the contents", ok);
}

static void brk_heap(void)
{
#ifndef __GLIBC__
	/* musl's sbrk only reports the break (sbrk(n != 0) fails): use brk. */
	{
		char *start = (char *)syscall(SYS_brk, 0);
		char *end = (char *)syscall(SYS_brk, start + (1 << 20));
		int ok = end == start + (1 << 20);

		if (ok) {
			fill((unsigned char *)start, 1 << 20, 5);
			ok = verify((unsigned char *)start, 1 << 20, 5);
		}
		ok = ok && (char *)syscall(SYS_brk, start) == start;
		report("sbrk grow by 1 MiB, use, shrink", ok);
		return;
	}
#endif
	void *start = sbrk(0), *prev, *end;
	int ok = start != (void *)-1;

	prev = sbrk(1 << 20);
	ok = ok && prev == start;
	end = sbrk(0);
	ok = ok && (char *)end == (char *)start + (1 << 20);
	if (ok) {
		fill(start, 1 << 20, 5);
		ok = verify(start, 1 << 20, 5);
	}
	prev = sbrk(-(1 << 20));
	ok = ok && prev == end && sbrk(0) == start;
	report("sbrk grow by 1 MiB, use, shrink", ok);
}

static void mmap_munmap(void)
{
	unsigned char *p, *q;
	int ok;

	p = mmap(NULL, 10 * PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ok = p != MAP_FAILED;
	if (!ok) {
		report("mmap anonymous", 0);
		return;
	}
	ok = p[0] == 0 && p[10 * PAGE - 1] == 0;
	report("mmap anonymous memory is zeroed", ok);
	fill(p, 10 * PAGE, 3);
	ok = munmap(p + 4 * PAGE, 2 * PAGE) == 0;
	report("munmap two pages in the middle", ok);
	q = mmap(p + 4 * PAGE, 2 * PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	report("mmap MAP_FIXED into the hole", q == p + 4 * PAGE);
	if (q == p + 4 * PAGE) {
		ok = q[0] == 0 && q[2 * PAGE - 1] == 0;
		report("the refilled hole reads as zeros", ok);
		ok = verify(p, 4 * PAGE, 3);
		{
			size_t i;

			for (i = 6 * PAGE; i < 10 * PAGE; i++)
				if (p[i] != pat(i, 3))
					ok = 0;
		}
		report("the pages around the hole keep their data", ok);
	}
	report("munmap the whole mapping", munmap(p, 10 * PAGE) == 0);
	errno = 0;
	report("munmap of an unaligned address gives EINVAL",
	       munmap(p + 1, PAGE) == -1 && errno == EINVAL);
	errno = 0;
	p = mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	report("mmap of length 0 gives EINVAL", p == MAP_FAILED && errno == EINVAL);
}

static void mremap_grow_shrink(void)
{
	unsigned char *p, *q;
	int ok;

	p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		report("mremap setup", 0);
		return;
	}
	fill(p, PAGE, 8);
	q = mremap(p, PAGE, 64 * PAGE, MREMAP_MAYMOVE);
	ok = q != MAP_FAILED && verify(q, PAGE, 8);
	if (ok) {
		ok = q[64 * PAGE - 1] == 0;
		fill(q, 64 * PAGE, 9);
	}
	report("mremap grow 1 -> 64 pages keeps the data", ok);
	if (q == MAP_FAILED)
		return;
	p = mremap(q, 64 * PAGE, 16 * PAGE, 0);
	ok = p == q && verify(p, 16 * PAGE, 9);
	report("mremap shrink 64 -> 16 pages in place", ok);
	if (p == MAP_FAILED)
		report("munmap after mremap", munmap(q, 64 * PAGE) == 0);
	else
		report("munmap after mremap", munmap(p, 16 * PAGE) == 0);
}

static void mprotect_changes(void)
{
	unsigned char *p;
	volatile unsigned char *v;
	int ok;

	p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		report("mprotect setup", 0);
		return;
	}
	v = p;
	fill(p, 4 * PAGE, 11);
	ok = mprotect(p, 4 * PAGE, PROT_READ) == 0;
	report("mprotect PROT_READ", ok);
	report("read-only pages keep their data", verify(p, 4 * PAGE, 11));
	ok = mprotect(p + PAGE, PAGE, PROT_NONE) == 0;
	report("mprotect PROT_NONE on one page", ok);
	ok = v[0] == pat(0, 11) && v[3 * PAGE] == pat(3 * PAGE, 11);
	report("its neighbours stay readable", ok);
	ok = mprotect(p, 4 * PAGE, PROT_READ | PROT_WRITE) == 0;
	report("mprotect back to PROT_READ|PROT_WRITE", ok);
	ok = verify(p, 4 * PAGE, 11);
	report("the data survived PROT_NONE", ok);
	v[PAGE + 5] = 0x5a;
	report("the page is writable again", v[PAGE + 5] == 0x5a);
	errno = 0;
	/* raw: musl's mprotect rounds the address down to a page */
	ok = syscall(SYS_mprotect, p + 1, PAGE, PROT_READ) == -1 && errno == EINVAL;
	report("mprotect of an unaligned address gives EINVAL", ok);
	munmap(p, 4 * PAGE);
}

static void madvise_dontneed(void)
{
	unsigned char *p;
	int ok;
	size_t i;

	p = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		report("madvise setup", 0);
		return;
	}
	memset(p, 0xab, 8 * PAGE);
	ok = madvise(p + 2 * PAGE, 4 * PAGE, MADV_DONTNEED) == 0;
	for (i = 0; ok && i < 8 * PAGE; i++) {
		unsigned char want = (i >= 2 * PAGE && i < 6 * PAGE) ? 0 : 0xab;

		if (p[i] != want)
			ok = 0;
	}
	report("madvise MADV_DONTNEED zeroes exactly its range", ok);
	munmap(p, 8 * PAGE);
}

static void file_mapping(const char *self)
{
	int fd = open(self, O_RDONLY);
	unsigned char *p;
	int ok;

	if (fd < 0) {
		printf("open %s: %s\n", self, strerror(errno));
		report("file mapping of the program", 0);
		return;
	}
	p = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	ok = p != MAP_FAILED && memcmp(p, "\177ELF", 4) == 0;
	report("a private file mapping of the program starts with \\177ELF", ok);
	if (p != MAP_FAILED) {
		p[0] = 'X'; /* private: changes nothing on disk */
		report("a private file mapping is writable", p[0] == 'X');
		munmap(p, 2 * PAGE);
	}
	close(fd);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "all";

	if (strcmp(mode, "mprotect-fault") == 0) {
		volatile unsigned char *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
						 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED || mprotect((void *)p, PAGE, PROT_READ) != 0) {
			printf("setup failed\n");
			return 1;
		}
		printf("writing to a read-only page\n");
		fflush(stdout);
		p[0] = 1;
		printf("the write did not fault\n");
		return 1;
	}
	if (strcmp(mode, "all") != 0) {
		fprintf(stderr, "usage: %s [all|mprotect-fault]\n", argv[0]);
		return 2;
	}
	brk_heap();
	malloc_sizes();
	malloc_churn();
	realloc_growth();
	mmap_munmap();
	mremap_grow_shrink();
	mprotect_changes();
	madvise_dontneed();
	file_mapping(argv[0]);
	printf("memory: %s\n", bad ? "FAILED" : "ok");
	return bad;
}
