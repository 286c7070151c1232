/*
 * bench_sync.c - mp_lock acquire+release pairs per second against a bare robust, process-shared
 * pthread mutex measured in the same run: uncontended, and contended by two processes pinned
 * to different CPUs. The target: within 1.2x of the bare mutex (ratio >= 0.83).
 */
#define _GNU_SOURCE
#include "bench.h"

#include "internal.h"

#include <mpipc.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define TARGET (1.0 / 1.2)

/* One kind of lock under test: its two operations on a context. */
typedef struct lock_ops {
    int (*acquire)(void *obj);
    int (*release)(void *obj);
    void *obj;
} lock_ops;

static int
mp_acq(void *o)
{
    return mp_lock_acquire(o, MP_FOREVER);
}

static int
mp_rel(void *o)
{
    return mp_lock_release(o);
}

static int
bare_acq(void *o)
{
    return pthread_mutex_lock(o);
}

static int
bare_rel(void *o)
{
    return pthread_mutex_unlock(o);
}

static int
pairs(const lock_ops *l, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (l->acquire(l->obj) != 0 || l->release(l->obj) != 0)
            return 1;
    return 0;
}

static int
run_uncontended(void *ctx, uint64_t ops, bench_sample *out)
{
    bench_clock c;
    bench_clock_start(&c);
    int r = pairs(ctx, ops);
    bench_clock_stop(&c, out);
    return r;
}

/* Two processes, one per CPU, each doing ops/2 pairs on the same lock. A gate word in shared
 * memory starts them together, after the fork and the pinning. */
static int
run_contended(void *ctx, uint64_t ops, bench_sample *out)
{
    _Atomic uint32_t *gate =
        mmap(NULL, sizeof *gate, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (gate == MAP_FAILED)
        return 1;
    atomic_store(gate, 0);
    cpu_set_t saved;
    sched_getaffinity(0, sizeof saved, &saved);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        munmap(gate, sizeof *gate);
        return 1;
    }
    if (pid == 0) {
        bench_pin(1);
        atomic_fetch_add(gate, 1);
        while (atomic_load(gate) < 2)
            ;
        _exit(pairs(ctx, ops / 2));
    }
    bench_pin(0);
    while (atomic_load(gate) < 1)
        ;
    bench_clock c;
    bench_clock_start(&c);
    atomic_store(gate, 2);
    int r = pairs(ctx, ops - ops / 2);
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        r = 1;
    bench_clock_stop(&c, out);
    sched_setaffinity(0, sizeof saved, &saved);
    munmap(gate, sizeof *gate);
    return r;
}

static void
compare(const bench_config *cfg, const char *workload, bench_fn fn, lock_ops *mp, lock_ops *bare,
        uint64_t n)
{
    bench_stats a, b;
    if (bench_throughput(cfg, workload, "mpipc lock", fn, mp, n, 0, &a) == 0 &&
        bench_throughput(cfg, workload, "bare robust mutex", fn, bare, n, 0, &b) == 0)
    {
        bench_ratio(workload, a.ops_s_median, b.ops_s_median, 0, 0);
        char what[96];
        snprintf(what, sizeof what, "%s, interleaved pairs", workload);
        bench_ratio(what, bench_paired_ratio(cfg, fn, mp, fn, bare, n), 1.0, TARGET, 0);
    }
}

void
bench_suite_sync(const bench_config *cfg)
{
    bench_header("sync", "acquire+release pairs/s: mp_lock vs a bare robust pshared pthread mutex "
                         "(target: within 1.2x, ratio >= 0.83)");
    pthread_mutex_t *m =
        mmap(NULL, sizeof *m, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    mp_lock *lock = NULL, *rlock = NULL;
    if (m == MAP_FAILED || mp__mutex_init(m) != 0 || mp_lock_open(&lock, NULL) != 0 ||
        mp_rlock_open(&rlock) != 0) {
        printf("sync: set-up failed\n");
        return;
    }
    lock_ops bare = {bare_acq, bare_rel, m};
    lock_ops mp = {mp_acq, mp_rel, lock};
    lock_ops rmp = {mp_acq, mp_rel, rlock};
    uint64_t n = bench_scaled(cfg, 5000000);
    compare(cfg, "uncontended", run_uncontended, &mp, &bare, n);
    compare(cfg, "uncontended (RLock)", run_uncontended, &rmp, &bare, n);
    compare(cfg, "2 processes, 2 CPUs", run_contended, &mp, &bare, n);
    mp_lock_close(lock);
    mp_lock_close(rlock);
    munmap(m, sizeof *m);
}
