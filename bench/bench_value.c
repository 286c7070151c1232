/*
 * bench_value.c - increments per second of a shared counter, from one process and from two
 * pinned to different CPUs: under the value's own lock, with the lock-free atomic add, and next
 * to a bare robust process-shared pthread mutex around a counter and a bare __atomic add in the
 * same run. The targets (absolute, on the 2-CPU machine): locked increment from one
 * process >= 30 M/s, two processes contending >= 12 M/s in total, atomic add from two processes
 * >= 40 M/s. Python's `with v.get_lock(): v.value += 1` does about 0.6 M/s.
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

/* One way to increment: `incr` adds 1 to the counter behind `obj`; `read` returns it. */
typedef struct incr_ops {
    int (*incr)(void *obj);
    long (*read)(void *obj);
    void *obj;
} incr_ops;

/* The value's lock held around a read-modify-write of the value through its data pointer: what a
 * C program writes for Python's `with v.get_lock(): v.value += 1`, fetching the lock and the
 * pointer once. */
typedef struct locked_ptr {
    mp_value *v;
    mp_lock *lock;
    long *p;
} locked_ptr;

static int
locked_ptr_incr(void *o)
{
    locked_ptr *lp = o;
    if (mp_lock_acquire(lp->lock, MP_FOREVER) != 0)
        return 1;
    (*lp->p)++;
    return mp_lock_release(lp->lock);
}

static long
locked_ptr_read(void *o)
{
    long x = -1;
    mp_value_get(((locked_ptr *)o)->v, &x, sizeof x);
    return x;
}

/* Python's pattern literally: the lock held, and the get and the set each re-taking it. */
static int
locked_getset_incr(void *o)
{
    mp_value *v = o;
    mp_lock *l = mp_value_get_lock(v);
    long x;
    if (mp_lock_acquire(l, MP_FOREVER) != 0 || mp_value_get(v, &x, sizeof x) != 0)
        return 1;
    x++;
    if (mp_value_set(v, &x, sizeof x) != 0)
        return 1;
    return mp_lock_release(l);
}

static int
atomic_incr(void *o)
{
    return mp_value_fetch_add(o, 1, NULL);
}

static long
value_read(void *o)
{
    long x = -1;
    mp_value_get(o, &x, sizeof x);
    return x;
}

/* The baselines: a robust pshared mutex followed by the counter, in one MAP_SHARED page. */
typedef struct bare {
    pthread_mutex_t m;
    long counter;
} bare;

static int
bare_mutex_incr(void *o)
{
    bare *b = o;
    if (pthread_mutex_lock(&b->m) != 0)
        return 1;
    b->counter++;
    return pthread_mutex_unlock(&b->m);
}

static int
bare_atomic_incr(void *o)
{
    bare *b = o;
    __atomic_fetch_add(&b->counter, 1, __ATOMIC_SEQ_CST);
    return 0;
}

static long
bare_read(void *o)
{
    return __atomic_load_n(&((bare *)o)->counter, __ATOMIC_SEQ_CST);
}

static int
loop(const incr_ops *w, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (w->incr(w->obj) != 0)
            return 1;
    return 0;
}

static int
run_one(void *ctx, uint64_t ops, bench_sample *out)
{
    const incr_ops *w = ctx;
    long before = w->read(w->obj);
    cpu_set_t saved;
    sched_getaffinity(0, sizeof saved, &saved);
    bench_pin(0);
    bench_clock c;
    bench_clock_start(&c);
    int r = loop(w, ops);
    bench_clock_stop(&c, out);
    sched_setaffinity(0, sizeof saved, &saved);
    /* Every increment must have landed. */
    return r != 0 || w->read(w->obj) - before != (long)ops;
}

/* How much of the time the two processes of run_two really ran side by side: on a loaded
 * machine one may be descheduled while the other runs alone, which makes "contended" figures
 * look better than contention allows. The lowest overlap over the repetitions is reported. */
static double min_overlap;

static int64_t
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct gate_mem {
    _Atomic uint32_t word;
    int64_t child_end; /* CLOCK_MONOTONIC ns */
} gate_mem;

/* Two processes, one per CPU, each doing half the increments. A gate word in shared memory
 * starts them together, after the fork and the pinning. */
static int
run_two(void *ctx, uint64_t ops, bench_sample *out)
{
    const incr_ops *w = ctx;
    long before = w->read(w->obj);
    gate_mem *g = mmap(NULL, sizeof *g, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g == MAP_FAILED)
        return 1;
    _Atomic uint32_t *gate = &g->word;
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
        int cr = loop(w, ops / 2);
        g->child_end = now_ns();
        _exit(cr);
    }
    bench_pin(0);
    while (atomic_load(gate) < 1)
        ;
    bench_clock c;
    bench_clock_start(&c);
    int64_t start = now_ns();
    atomic_store(gate, 2);
    int r = loop(w, ops - ops / 2);
    int64_t parent_end = now_ns();
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        r = 1;
    bench_clock_stop(&c, out);
    int64_t first = parent_end < g->child_end ? parent_end : g->child_end;
    int64_t last = parent_end < g->child_end ? g->child_end : parent_end;
    double overlap = (double)(first - start) / (double)(last - start);
    if (overlap < min_overlap)
        min_overlap = overlap;
    sched_setaffinity(0, sizeof saved, &saved);
    munmap(g, sizeof *g);
    return r != 0 || w->read(w->obj) - before != (long)ops;
}

/* bench_throughput with run_two, then the overlap line. */
static int
two(const bench_config *cfg, const char *workload, const char *impl, incr_ops *w, uint64_t n,
    bench_stats *out)
{
    min_overlap = 1.0;
    int r = bench_throughput(cfg, workload, impl, run_two, w, n, 0, out);
    if (r == 0)
        printf("   (both processes ran for at least %.0f%% of the time in every run)\n",
               100 * min_overlap);
    return r;
}

static void
target(const char *what, const bench_stats *s, double min_rate)
{
    printf("   -> %s: %.1f M/s (target >= %.0f M/s: %s)\n", what, s->ops_s_median / 1e6,
           min_rate / 1e6, s->ops_s_median >= min_rate ? "met" : "NOT met");
    fflush(stdout);
}

void
bench_suite_value(const bench_config *cfg)
{
    bench_header("value", "increments/s of a shared long: mp_value (own RLock, atomic add) vs a "
                          "bare robust pshared mutex and a bare __atomic add");
    bare *b = mmap(NULL, sizeof *b, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    mp_value *v = NULL;
    if (b == MAP_FAILED || mp__mutex_init(&b->m) != 0 || mp_value_open(&v, 'l', NULL) != 0) {
        printf("value: set-up failed\n");
        return;
    }
    locked_ptr lpo = {v, mp_value_get_lock(v), mp_value_ptr(v)};
    incr_ops lp = {locked_ptr_incr, locked_ptr_read, &lpo};
    incr_ops lgs = {locked_getset_incr, value_read, v};
    incr_ops at = {atomic_incr, value_read, v};
    incr_ops bm = {bare_mutex_incr, bare_read, b};
    incr_ops ba = {bare_atomic_incr, bare_read, b};
    uint64_t n = bench_scaled(cfg, 5000000);
    /* Atomic adds are so fast that 5M of them end within one scheduler time slice. */
    uint64_t na = 4 * n;
    bench_stats s1, s2, s3;

    bench_throughput(cfg, "1 process, locked", "bare mutex", run_one, &bm, n, 0, NULL);
    if (bench_throughput(cfg, "1 process, locked", "mp_value lock", run_one, &lp, n, 0, &s1) == 0)
        target("locked increment, 1 process", &s1, 30e6);
    bench_throughput(cfg, "1 process, lock+get+set", "mp_value", run_one, &lgs, n, 0, NULL);
    bench_throughput(cfg, "1 process, atomic add", "bare __atomic", run_one, &ba, na, 0, NULL);
    bench_throughput(cfg, "1 process, atomic add", "mp_value", run_one, &at, na, 0, NULL);

    two(cfg, "2 processes, locked", "bare mutex", &bm, n, NULL);
    if (two(cfg, "2 processes, locked", "mp_value lock", &lp, n, &s2) == 0)
        target("locked increment, 2 processes", &s2, 12e6);
    two(cfg, "2 processes, lock+get+set", "mp_value", &lgs, n, NULL);
    two(cfg, "2 processes, atomic add", "bare __atomic", &ba, na, NULL);
    if (two(cfg, "2 processes, atomic add", "mp_value", &at, na, &s3) == 0)
        target("atomic add, 2 processes", &s3, 40e6);

    mp_value_close(v);
    munmap(b, sizeof *b);
}
