/*
 * torture.c - see torture.h.
 */
#define _GNU_SOURCE
#include "torture.h"

#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

uint64_t tt_seed;
static uint64_t rng;

void
tt_init(void)
{
    const char *s = getenv("MPIPC_TORTURE_SEED");
    tt_seed = s != NULL ? strtoull(s, NULL, 10) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
    rng = tt_seed | 1;
    printf("torture: seed %llu (set MPIPC_TORTURE_SEED to repeat)\n", (unsigned long long)tt_seed);
    /* To repeat one kind alone: MPIPC_TORTURE_ONLY='*queue*' (a cmocka name pattern). */
    const char *only = getenv("MPIPC_TORTURE_ONLY");
    if (only != NULL)
        cmocka_set_test_filter(only);
}

uint64_t
tt_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

uint64_t
tt_rand(void)
{
    return tt_next(&rng);
}

/* Sanitizer builds are detected at compile time, so CI needs no setting for them. The factors
 * were chosen from the slowdowns measured for the scaled rounds (rlock, semaphore, locked
 * array), so that a round lasts about as long in every build. */
#if defined(__SANITIZE_THREAD__)
#define TT_SLOWDOWN 10
#elif defined(__SANITIZE_ADDRESS__)
#define TT_SLOWDOWN 4
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TT_SLOWDOWN 10
#elif __has_feature(address_sanitizer)
#define TT_SLOWDOWN 4
#endif
#endif
#ifndef TT_SLOWDOWN
#define TT_SLOWDOWN 1
#endif

long
tt_ops(long normal)
{
    long n = normal / TT_SLOWDOWN / (th_valgrind() ? 10 : 1);
    return n > 0 ? n : 1;
}

int
tt_rounds(int normal)
{
    const char *s = getenv("MPIPC_TORTURE_ROUNDS");
    int n = s != NULL ? atoi(s) : th_valgrind() ? normal / 4 : normal;
    return n > 0 ? n : 1;
}

uint32_t
tt_checksum(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

bool
tt_has_exited(pid_t pid)
{
    siginfo_t si = {0};
    return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid;
}

static struct {
    int (*fn)(void *);
    th_barrier *gate;
} launch;

static int
gated(void *arg)
{
    return th_barrier_wait(launch.gate) == 0 ? launch.fn(arg) : 1;
}

int
tt_spawn(pid_t *pids, int n, int (*fn)(void *), void *ctx, size_t size)
{
    launch.fn = fn;
    launch.gate = th_barrier_new((unsigned)n + 1);
    if (launch.gate == NULL)
        return -1;
    int w = 0;
    for (; w < n; w++)
        if ((pids[w] = th_fork(gated, (char *)ctx + (size_t)w * size)) <= 0)
            break;
    int r = w == n ? th_barrier_wait(launch.gate) : -1;
    if (r != 0)
        for (int i = 0; i < w; i++) {
            kill(pids[i], SIGKILL);
            th_wait(pids[i], TT_BOUND_MS);
        }
    th_barrier_free(launch.gate);
    return r;
}

int
tt_reap_all(const pid_t *pids, int n, int victim)
{
    int killed = 0, failed = 0;
    for (int w = 0; w < n; w++) {
        int st = th_wait(pids[w], TT_BOUND_MS);
        if (w == victim && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) {
            killed = 1;
            continue;
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "torture: worker %d ended with status %#x\n", w, st);
            failed = 1; /* reap the others all the same, so none is left behind */
        }
    }
    return failed ? -1 : killed;
}

int
tt_kill_one(const pid_t *pids, int n, struct tt_progress *pr, long ops)
{
    int victim = (int)(tt_rand() % (uint64_t)n);
    long at = (long)(tt_rand() % (uint64_t)ops);
    int64_t deadline = th_now_ms() + TT_BOUND_MS;
    while (atomic_load(&pr->attempted[victim]) < at && th_now_ms() < deadline &&
           !tt_has_exited(pids[victim]))
        sched_yield();
    kill(pids[victim], SIGKILL);
    return victim;
}

int
tt_round(int (*fn)(void *), void *ctx, size_t size, int n, struct tt_progress *pr, long ops,
         long *kills)
{
    pid_t pids[TT_MAX_WORKERS];
    assert_true(n <= TT_MAX_WORKERS);
    assert_int_equal(tt_spawn(pids, n, fn, ctx, size), 0);
    int victim = tt_kill_one(pids, n, pr, ops);
    int killed = tt_reap_all(pids, n, victim);
    assert_true(killed >= 0);
    *kills += killed;
    return killed ? victim : -1;
}

long
tt_sum_done(const struct tt_progress *pr, int n)
{
    long s = 0;
    for (int w = 0; w < n; w++)
        s += atomic_load(&pr->done[w]);
    return s;
}
