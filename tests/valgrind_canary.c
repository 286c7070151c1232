/*
 * valgrind_canary.c - proves that the MPIPC_VALGRIND run can fail. Each mode makes one mistake
 * that memcheck must report, in the process where the suite's own mistakes would sit; the
 * ctest that runs it (tests/CMakeLists.txt) passes only if the report appears.
 *   child-leak    a forked child loses a block and _exits
 *   exec-leak     a child execs this program (argv[0], a full path) in "leak" mode, which
 *                 loses a block and exits
 *   uninit-write  the process writes uninitialised bytes (struct padding) to a pipe
 * The parent reports how each child ended on stderr, after valgrind's report of it.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void *volatile sink;

/* Allocate and forget size bytes: the only pointer is overwritten. Not inlined, so the
 * pointer does not linger in a register of the caller. */
static __attribute__((noinline)) void
lose_a_block(size_t size)
{
    sink = malloc(size);
    if (sink != NULL)
        memset(sink, 1, size);
    sink = NULL;
}

static int
report_child(pid_t pid)
{
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return 1;
    fprintf(stderr, "canary: child exited with status %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}

int
main(int argc, char **argv)
{
    const char *mode = argc == 2 ? argv[1] : "";
    if (strcmp(mode, "leak") == 0) {
        lose_a_block(2222);
        return 0;
    }
    if (strcmp(mode, "child-leak") == 0) {
        pid_t pid = fork();
        if (pid == 0) {
            lose_a_block(1111);
            _exit(0);
        }
        return report_child(pid);
    }
    if (strcmp(mode, "exec-leak") == 0) {
        pid_t pid = fork();
        if (pid == 0) {
            execl(argv[0], argv[0], "leak", (char *)NULL);
            _exit(127);
        }
        return report_child(pid);
    }
    if (strcmp(mode, "uninit-write") == 0) {
        struct {
            uint8_t tag; /* followed by 7 bytes of padding that nobody set */
            uint64_t value;
        } msg;
        msg.tag = 1;
        msg.value = 2;
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) != 0)
            return 1;
        ssize_t n = write(fds[1], &msg, sizeof msg);
        close(fds[0]);
        close(fds[1]);
        return n == (ssize_t)sizeof msg ? 0 : 1;
    }
    fprintf(stderr, "usage: valgrind_canary child-leak|exec-leak|uninit-write\n");
    return 2;
}
