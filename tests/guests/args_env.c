/*
 * args_env: prints its argument and environment vectors.
 *
 * Prints argc, every argv[i] and every envp[i] in brackets, and checks the
 * layout the x86-64 ABI promises at process entry: argv[argc] is NULL, envp
 * starts right after it, and libc's environ is that same array. The output
 * is the same natively and under the sentry when both get the same
 * arguments and environment. Exit status 0, or 1 if a check failed.
 *
 * Build: gcc -O2 -static -o args_env args_env.c
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv, char **envp)
{
	int i, bad = 0;

	printf("argc=%d\n", argc);
	for (i = 0; i < argc; i++)
		printf("argv[%d]=[%s] len=%zu\n", i, argv[i], strlen(argv[i]));
	if (argv[argc] != NULL) {
		printf("FAIL: argv[argc] is not NULL\n");
		bad = 1;
	}
	if (envp != argv + argc + 1) {
		printf("FAIL: envp does not follow argv\n");
		bad = 1;
	}
	if (environ != envp) {
		printf("FAIL: environ != envp\n");
		bad = 1;
	}
	for (i = 0; envp[i]; i++)
		printf("env[%d]=[%s]\n", i, envp[i]);
	printf("envc=%d\n", i);
	printf("getenv(SENTRY_TEST_VAR)=[%s]\n",
	       getenv("SENTRY_TEST_VAR") ? getenv("SENTRY_TEST_VAR") : "(unset)");
	/* The initial stack pointer is 16-byte aligned, so is argv's address
	 * modulo 8 (argc sits right below it). */
	if (((unsigned long)argv & 7) != 0) {
		printf("FAIL: argv %p is not 8-byte aligned\n", (void *)argv);
		bad = 1;
	}
	printf("%s\n", bad ? "args_env: FAILED" : "args_env: ok");
	return bad;
}
