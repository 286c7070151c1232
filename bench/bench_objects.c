/*
 * bench_objects.c - the cost of creating and closing each object type, in one process, beside
 * the bare calls a careful C program would make for the same object:
 *
 *   Lock, Event, Semaphore: mp_*_open + close (sub-allocated from the shared arena) against
 *                           pthread_mutex_init of a robust pshared mutex in a fresh MAP_SHARED
 *                           page + munmap (what one object per mapping costs);
 *   Pipe:                   mp_pipe_open + two closes against socketpair + two closes;
 *   Value, Array(100):      mp_value_open/mp_array_open + close against mmap + munmap of a page.
 *
 * Process start+join and shared memory create+unlink are in the process and shm suites.
 */
#define _GNU_SOURCE
#include "bench.h"

#include "internal.h"

#include <mpipc.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

typedef enum kind { K_LOCK, K_EVENT, K_SEMAPHORE, K_PIPE, K_VALUE, K_ARRAY } kind;

static int
open_close(kind k)
{
    switch (k) {
    case K_LOCK: {
        mp_lock *l;
        if (mp_lock_open(&l, NULL) != 0)
            return 1;
        mp_lock_close(l);
        return 0;
    }
    case K_EVENT: {
        mp_event *e;
        if (mp_event_open(&e) != 0)
            return 1;
        mp_event_close(e);
        return 0;
    }
    case K_SEMAPHORE: {
        mp_semaphore *s;
        if (mp_semaphore_open(&s, 1, NULL) != 0)
            return 1;
        mp_semaphore_close(s);
        return 0;
    }
    case K_PIPE: {
        mp_conn *a, *b;
        if (mp_pipe_open(&a, &b, true) != 0)
            return 1;
        mp_conn_close(a);
        mp_conn_close(b);
        return 0;
    }
    case K_VALUE: {
        mp_value *v;
        if (mp_value_open(&v, 'l', NULL) != 0)
            return 1;
        mp_value_close(v);
        return 0;
    }
    case K_ARRAY: {
        mp_array *a;
        if (mp_array_open(&a, 'd', 100, NULL) != 0)
            return 1;
        mp_array_close(a);
        return 0;
    }
    }
    return 1;
}

static int
raw_open_close(kind k)
{
    if (k == K_PIPE) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
            return 1;
        close(sv[0]);
        close(sv[1]);
        return 0;
    }
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return 1;
    int r = 0;
    if (k == K_LOCK || k == K_EVENT || k == K_SEMAPHORE)
        r = mp__mutex_init(p) != 0;
    else
        ((volatile char *)p)[0] = 1; /* a value's page is touched when it is first set */
    munmap(p, 4096);
    return r;
}

typedef struct work {
    kind k;
    int (*fn)(kind);
} work;

static int
run(void *ctx, uint64_t ops, bench_sample *out)
{
    const work *w = ctx;
    bench_clock c;
    bench_clock_start(&c);
    for (uint64_t i = 0; i < ops; i++)
        if (w->fn(w->k) != 0)
            return 1;
    bench_clock_stop(&c, out);
    return 0;
}

void
bench_suite_objects(const bench_config *cfg)
{
    bench_header("objects", "open + close of one object in one process; baseline: the bare "
                            "calls for one object (see bench_objects.c)");
    static const struct {
        const char *workload, *baseline;
        kind k;
        uint64_t n_mp, n_raw; /* about 0.1 s each on the 2-CPU VM */
    } rows[] = {
        {"Lock open+close", "mmap+mutex_init", K_LOCK, 1000000, 10000},
        {"Event open+close", "mmap+mutex_init", K_EVENT, 1000000, 10000},
        {"Semaphore open+close", "mmap+mutex_init", K_SEMAPHORE, 1000000, 10000},
        {"Pipe open+close", "socketpair", K_PIPE, 10000, 10000},
        {"Value open+close", "mmap+munmap", K_VALUE, 1000000, 10000},
        {"Array(100) open+close", "mmap+munmap", K_ARRAY, 1000000, 10000},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        work mp = {rows[i].k, open_close}, raw = {rows[i].k, raw_open_close};
        uint64_t n_mp = bench_scaled(cfg, rows[i].n_mp), n_raw = bench_scaled(cfg, rows[i].n_raw);
        bench_stats a, b;
        if (bench_throughput(cfg, rows[i].workload, "mpipc", run, &mp, n_mp, 0, &a) == 0 &&
            bench_throughput(cfg, rows[i].workload, rows[i].baseline, run, &raw, n_raw, 0, &b) ==
                0)
            bench_ratio(rows[i].workload, a.ops_s_median, b.ops_s_median, 0, 0);
    }
}
