/*
 * stub_escape MODE: a hostile guest attacking the sentry's stub region.
 *
 * Under the sentry every guest shares its host process with the stub: the
 * stub code at 0x7000_0000_0000, the worker doorbells at 0x7000_0010_0000
 * and the thread slots from 0x7000_1000_0000 (slot 0 belongs to the first
 * thread). See stubs/src/lib.rs. These addresses are not mapped natively,
 * so this program is only meant to run under the sentry.
 *
 *   scribble        fills the first 4096 bytes of thread slot 0 (the stub
 *                   page of the running thread) with 0xff, then calls
 *                   getpid. The sentry must not panic or hang; it repairs
 *                   the page at the next stop.
 *   doorbells       fills the doorbell page with 0xff, then calls getpid
 *                   a few times.
 *   mmap            tries to map, unmap, mprotect and mremap memory in the
 *                   stub region; every attempt to map or change it must
 *                   fail, and afterwards system calls still work. Prints
 *                   one line per attempt, then "stub region intact".
 *   write-code      writes to the (read-only) stub code: dies of SIGSEGV.
 *
 * Build: gcc -O2 -static -o stub_escape stub_escape.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define GUEST_END 0x700000000000UL
#define STUB_DOORBELLS (GUEST_END + 0x100000UL)
#define STUB_SLOTS (GUEST_END + 0x10000000UL)
#define PAGE 4096UL

static int bad;

static const char *errname(int e)
{
	switch (e) {
	case ENOMEM: return "ENOMEM";
	case EINVAL: return "EINVAL";
	case EPERM: return "EPERM";
	case EACCES: return "EACCES";
	case EEXIST: return "EEXIST";
	case EFAULT: return "EFAULT";
	case ENOSYS: return "ENOSYS";
	default: return "other";
	}
}

/* A mapping attempt must fail. */
static void expect_map_fail(const char *what, void *r, void *want_not)
{
	if (r == MAP_FAILED) {
		printf("%s: refused (%s)\n", what, errname(errno));
	} else {
		printf("%s: SUCCEEDED at %p\n", what, r);
		bad = 1;
		(void)want_not;
	}
	fflush(stdout);
}

static void expect_fail(const char *what, long r)
{
	if (r < 0) {
		printf("%s: refused (%s)\n", what, errname(errno));
	} else {
		printf("%s: SUCCEEDED\n", what);
		bad = 1;
	}
	fflush(stdout);
}

static int mmap_mode(void)
{
	void *r, *p;
	long pid;

	errno = 0;
	r = mmap((void *)GUEST_END, PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	expect_map_fail("mmap MAP_FIXED at the stub code 0x700000000000", r, 0);
	errno = 0;
	r = mmap((void *)(GUEST_END - PAGE), 2 * PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	expect_map_fail("mmap MAP_FIXED straddling the guest end", r, 0);
	errno = 0;
	r = mmap((void *)STUB_DOORBELLS, PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	expect_map_fail("mmap MAP_FIXED at the doorbells", r, 0);
	errno = 0;
	r = mmap((void *)STUB_SLOTS, PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	expect_map_fail("mmap MAP_FIXED at thread slot 0", r, 0);
	errno = 0;
	r = mmap((void *)0x7ffff0000000UL, PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	expect_map_fail("mmap MAP_FIXED above the stub slots", r, 0);
	errno = 0;
	r = mmap((void *)GUEST_END, PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	expect_map_fail("mmap MAP_FIXED_NOREPLACE at the stub code", r, 0);

	/* A hint in the stub region is only a hint: the result must be below it. */
	r = mmap((void *)GUEST_END, PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r == MAP_FAILED || (uintptr_t)r + PAGE > GUEST_END) {
		printf("mmap with a hint in the stub region: BAD (%p)\n", r);
		bad = 1;
	} else {
		printf("mmap with a hint in the stub region: placed below it\n");
		munmap(r, PAGE);
	}

	errno = 0;
	expect_fail("mprotect the stub code rwx",
		    mprotect((void *)GUEST_END, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC));
	errno = 0;
	expect_fail("mprotect thread slot 0 PROT_NONE",
		    mprotect((void *)STUB_SLOTS, PAGE, PROT_NONE));

	/* munmap may "succeed" (nothing of the guest is there) but must not
	 * take the stub away: the system calls after it must still work. */
	errno = 0;
	printf("munmap the stub code returned %d\n",
	       munmap((void *)GUEST_END, 0x10000) == 0 ? 0 : -1);
	printf("munmap thread slot 0 returned %d\n",
	       munmap((void *)STUB_SLOTS, 0x10000) == 0 ? 0 : -1);
	fflush(stdout);

	p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p != MAP_FAILED) {
		errno = 0;
		r = mremap(p, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)GUEST_END);
		expect_map_fail("mremap MREMAP_FIXED onto the stub code", r, 0);
		munmap(p, PAGE);
	}
	/* The last guest page is a legal place for a mapping; growing it in
	 * place would run into the stub code. */
	p = mmap((void *)(GUEST_END - PAGE), PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	if (p == MAP_FAILED) {
		printf("mmap MAP_FIXED at the last guest page: failed (%s)\n", errname(errno));
		bad = 1;
	} else {
		*(volatile char *)p = 1;
		errno = 0;
		r = mremap(p, PAGE, 2 * PAGE, 0);
		expect_map_fail("mremap growing the last guest page in place", r, 0);
		munmap(p, PAGE);
	}
	/* brk up into the stub region must fail (brk returns the old break) */
	{
		long cur = syscall(SYS_brk, 0);
		long got = syscall(SYS_brk, GUEST_END + PAGE);

		if (got == GUEST_END + PAGE) {
			printf("brk into the stub region: SUCCEEDED\n");
			bad = 1;
		} else {
			printf("brk into the stub region: refused\n");
		}
		(void)cur;
	}

	pid = syscall(SYS_getpid);
	printf("getpid after the attempts: %ld\n", pid);
	printf("%s\n", bad ? "stub region NOT intact" : "stub region intact");
	return bad;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";

	if (strcmp(mode, "scribble") == 0) {
		long pid;

		printf("scribbling over thread slot 0\n");
		fflush(stdout);
		memset((void *)STUB_SLOTS, 0xff, PAGE);
		pid = syscall(SYS_getpid);
		printf("getpid after scribbling returned %ld\n", pid);
		return 0;
	}
	if (strcmp(mode, "doorbells") == 0) {
		int i;

		printf("scribbling over the doorbells\n");
		fflush(stdout);
		memset((void *)STUB_DOORBELLS, 0xff, PAGE);
		for (i = 0; i < 100; i++)
			syscall(SYS_getpid);
		printf("getpid after scribbling returned %ld\n", (long)syscall(SYS_getpid));
		return 0;
	}
	if (strcmp(mode, "mmap") == 0)
		return mmap_mode();
	if (strcmp(mode, "write-code") == 0) {
		printf("writing to the stub code\n");
		fflush(stdout);
		*(volatile unsigned char *)GUEST_END = 0xcc;
		printf("the write did not fault\n");
		return 0;
	}
	fprintf(stderr, "usage: %s scribble|doorbells|mmap|write-code\n", argv[0]);
	return 2;
}
