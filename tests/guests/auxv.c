/*
 * auxv: checks the auxiliary vector a program gets at start-up.
 *
 * Reads it with getauxval and checks it against what the program knows
 * about itself: AT_PAGESZ is 4096; AT_RANDOM points at 16 readable bytes
 * that are not all zero; AT_EXECFN is a string (printed, and whether it
 * equals argv[0], as it does when the program was started by path); AT_PHDR is where the
 * program headers of this very executable are (the ELF header's
 * __ehdr_start plus e_phoff), with AT_PHENT and AT_PHNUM matching; AT_ENTRY
 * is the address of _start; AT_UID and friends match getuid() and friends;
 * AT_SECURE is 0. Prints one line per check, then "auxv: ok" and exits 0,
 * or "auxv: FAILED" and exits 1. The output is the same natively and
 * under the sentry.
 *
 * Build: gcc -O2 -static -o auxv auxv.c (also -static-pie, musl-gcc -static)
 */
#define _GNU_SOURCE
#include <elf.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

extern const ElfW(Ehdr) __ehdr_start __attribute__((weak, visibility("hidden")));
extern char _start[];

static int bad;

static void check(const char *what, int ok)
{
	printf("%s: %s\n", what, ok ? "ok" : "FAILED");
	if (!ok)
		bad = 1;
}

int main(int argc, char **argv)
{
	unsigned long pagesz = getauxval(AT_PAGESZ);
	const unsigned char *rnd = (const unsigned char *)getauxval(AT_RANDOM);
	const char *execfn = (const char *)getauxval(AT_EXECFN);
	const ElfW(Phdr) *phdr = (const ElfW(Phdr) *)getauxval(AT_PHDR);
	unsigned long phent = getauxval(AT_PHENT);
	unsigned long phnum = getauxval(AT_PHNUM);
	unsigned long entry = getauxval(AT_ENTRY);
	const ElfW(Ehdr) *eh = &__ehdr_start;
	unsigned long i, nload = 0, lowest = ~0UL;
	int zero = 1;

	(void)argc;
	printf("AT_PAGESZ=%lu\n", pagesz);
	check("AT_PAGESZ is 4096", pagesz == 4096);
	check("sysconf(_SC_PAGESIZE) is 4096", sysconf(_SC_PAGESIZE) == 4096);

	check("AT_RANDOM is set", rnd != NULL);
	if (rnd) {
		for (i = 0; i < 16; i++)
			if (rnd[i])
				zero = 0;
		check("AT_RANDOM bytes are not all zero", !zero);
	}

	check("AT_EXECFN is set", execfn != NULL);
	if (execfn) {
		printf("AT_EXECFN=[%s]\n", execfn);
		/* Not a check: started through $PATH, argv[0] is the bare name
		 * and AT_EXECFN the path found. */
		printf("AT_EXECFN equals argv[0]: %s\n",
		       strcmp(execfn, argv[0]) == 0 ? "yes" : "no");
	}

	check("__ehdr_start is an ELF header",
	      eh && memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0);
	printf("AT_PHENT=%lu\n", phent);
	check("AT_PHENT is sizeof(Elf64_Phdr)", phent == sizeof(ElfW(Phdr)));
	check("AT_PHNUM is e_phnum", phnum == eh->e_phnum && phnum > 0);
	check("AT_PHDR is __ehdr_start + e_phoff",
	      (const char *)phdr == (const char *)eh + eh->e_phoff);
	for (i = 0; phdr && i < phnum; i++) {
		if (phdr[i].p_type == PT_LOAD) {
			nload++;
			if (phdr[i].p_vaddr - phdr[i].p_offset < lowest)
				lowest = phdr[i].p_vaddr - phdr[i].p_offset;
		}
		if (phdr[i].p_type == PT_INTERP)
			check("no PT_INTERP (static)", 0);
	}
	check("the program headers have a PT_LOAD", nload > 0);
	check("AT_ENTRY is &_start", entry == (unsigned long)_start);
	/* load bias = where the ELF header is minus where it was linked */
	check("AT_ENTRY is e_entry plus the load bias",
	      entry == eh->e_entry + ((unsigned long)eh - lowest));
	check("e_type is EXEC or DYN", eh->e_type == ET_EXEC || eh->e_type == ET_DYN);
	printf("e_type=%s\n", eh->e_type == ET_EXEC ? "EXEC" : "DYN");

	check("AT_UID is getuid()", getauxval(AT_UID) == getuid());
	check("AT_EUID is geteuid()", getauxval(AT_EUID) == geteuid());
	check("AT_GID is getgid()", getauxval(AT_GID) == getgid());
	check("AT_EGID is getegid()", getauxval(AT_EGID) == getegid());
	check("AT_SECURE is 0", getauxval(AT_SECURE) == 0);

	printf("auxv: %s\n", bad ? "FAILED" : "ok");
	return bad;
}
