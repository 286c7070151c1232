/*
 * helpers.h - shared test helpers: forked children, lock-step barriers, the leak check.
 *
 * cmocka asserts longjmp into the runner, which a forked child must never do: children check
 * with CHILD_CHECK() (prints and _exit(1)s) and end with _exit(0); the parent asserts the exit
 * status with assert_child_ok().
 */
#ifndef MPIPC_TEST_HELPERS_H
#define MPIPC_TEST_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <unistd.h>

#include <cmocka.h>

#include "mpipc.h"

/* In a forked child: on failure print where and _exit(1). */
#define CHILD_CHECK(expr)                                                                         \
    do {                                                                                          \
        if (!(expr)) {                                                                            \
            fprintf(stderr, "%s:%d: child check failed: %s\n", __FILE__, __LINE__, #expr);      \
            fflush(stderr);                                                                       \
            _exit(1);                                                                             \
        }                                                                                         \
    } while (0)

/* th_fork - fork a child that runs fn(arg) and _exit()s with its return value. Returns the pid
 * (the parent asserts it is > 0). */
pid_t th_fork(int (*fn)(void *), void *arg);

/* th_wait - reap pid and return its raw wait status (-1 on error). Bounded: SIGKILLs the child
 * if it has not ended within timeout_ms, so a hung child fails the test instead of hanging it. */
int th_wait(pid_t pid, int timeout_ms);

/* assert_child_ok - reap pid (at most 30 s) and assert it exited with status 0. */
#define assert_child_ok(pid)                                                                      \
    do {                                                                                          \
        int st_ = th_wait((pid), 30000);                                                          \
        assert_true(WIFEXITED(st_));                                                              \
        assert_int_equal(WEXITSTATUS(st_), 0);                                                    \
    } while (0)

/* A lock-step barrier for `parties` processes in MAP_SHARED|MAP_ANONYMOUS memory, built on a
 * raw futex so that the tests do not depend on the sync module they may be testing. */
typedef struct th_barrier th_barrier;
th_barrier *th_barrier_new(unsigned parties);
/* th_barrier_wait - returns 0, or -1 if the other parties did not arrive within 30 s. */
int th_barrier_wait(th_barrier *b);
void th_barrier_free(th_barrier *b);

/* th_shared - zeroed MAP_SHARED|MAP_ANONYMOUS memory, visible to children forked afterwards. */
void *th_shared(size_t size);
void th_shared_free(void *p, size_t size);

/* A byte pattern that depends on the size and a tag, so a message delivered to the wrong reader,
 * truncated or shifted is caught. tests/pipe_peer.py computes the same pattern. */
void th_pattern_fill(uint8_t *buf, size_t size, int tag);
bool th_pattern_check(const uint8_t *buf, size_t size, int tag);
/* th_pattern_send - send `size` pattern bytes with mp_conn_send_bytes; its result or -ENOMEM. */
int th_pattern_send(mp_conn *c, size_t size, int tag, int timeout_ms);

/* th_count_maps - the number of shared mappings of this process (lines of /proc/self/maps with
 * the 's' flag), where every mpipc object lives. Private mappings are left out: malloc's own
 * (and valgrind's, which does not reuse freed blocks at once) grow with the handles. */
int th_count_maps(void);

/* SKIP_UNDER_TSAN - skip a test in ThreadSanitizer builds. TSan follows one process: a lock
 * taken in another process looks like misuse to it, so cross-process tests skip under it and
 * the multi-threaded ones run. */
#if defined(__SANITIZE_THREAD__)
#define TH_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TH_UNDER_TSAN 1
#endif
#endif
#ifndef TH_UNDER_TSAN
#define TH_UNDER_TSAN 0
#endif
#define SKIP_UNDER_TSAN()                                                                         \
    do {                                                                                          \
        if (TH_UNDER_TSAN)                                                                        \
            skip();                                                                               \
    } while (0)

/* th_valgrind - true when the test runs under valgrind: the MPIPC_VALGRIND build sets
 * MPIPC_VALGRIND=1 in the test's environment. Code runs 10-50 times slower there, so a test
 * whose outcome depends on another process arriving within a short timeout stretches it with
 * th_scaled_ms, and the long stress loops run fewer rounds. */
bool th_valgrind(void);

/* th_scaled_ms - ms, or ten times ms under valgrind. */
int th_scaled_ms(int ms);

/* th_now_ms - CLOCK_MONOTONIC milliseconds. */
int64_t th_now_ms(void);

/* The leak check. th_leak_snapshot() records /dev/shm entries, open fds and child processes;
 * th_leak_check() returns non-zero (and prints what leaked) if any appeared since. Every test
 * executable runs them as group setup/teardown through th_run_tests(). */
int th_leak_snapshot(void **state);
int th_leak_check(void **state);

/* Run a cmocka group with the leak check around it; returns cmocka's failure count, plus one
 * if something leaked. */
#define th_run_tests(tests) th_run_group(#tests, tests, sizeof(tests) / sizeof((tests)[0]))
int th_run_group(const char *name, const struct CMUnitTest *tests, size_t n);

#endif
