/*
 * bench_manager.c - manager containers: list append, dict set and dict get (str keys, int
 * values) per second from one process and from two processes pinned to different CPUs.
 * Baseline: Python's multiprocessing.Manager() doing the same operations, run in the same
 * session when python3 is installed. The targets: every operation <= 1 us from one
 * process (>= 1 M ops/s), and gets on a 100k-key dict no slower than 2x gets on a 100-key dict.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <mpipc.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEYS_BIG 100000

typedef struct ctx {
    mp_list *list;
    mp_dict *dict;
    char (*keys)[16]; /* "k0" .. "k99999" */
    size_t nkeys;     /* the key space the workload cycles through */
    int (*op)(struct ctx *c, uint64_t i);
    int procs;
} ctx;

static int
op_append(ctx *c, uint64_t i)
{
    mp_item v = {.type = MP_ITEM_INT, .v.i = (int64_t)i};
    return mp_list_append(c->list, &v);
}

static int
op_set(ctx *c, uint64_t i)
{
    const char *k = c->keys[i % c->nkeys];
    mp_item key = {.type = MP_ITEM_STR, .v.s = {k, strlen(k)}};
    mp_item v = {.type = MP_ITEM_INT, .v.i = (int64_t)i};
    return mp_dict_set(c->dict, &key, &v);
}

static int
op_get(ctx *c, uint64_t i)
{
    const char *k = c->keys[i % c->nkeys];
    mp_item key = {.type = MP_ITEM_STR, .v.s = {k, strlen(k)}}, out;
    return mp_dict_get(c->dict, &key, NULL, &out);
}

static int
loop(ctx *c, uint64_t from, uint64_t n)
{
    for (uint64_t i = from; i < from + n; i++)
        if (c->op(c, i) != 0)
            return 1;
    return 0;
}

/* One process, or two pinned to CPUs 0 and 1 that start together at a gate and split ops. */
static int
run(void *arg, uint64_t ops, bench_sample *out)
{
    ctx *c = arg;
    if (c->procs == 1) {
        bench_clock clk;
        bench_clock_start(&clk);
        int r = loop(c, 0, ops);
        bench_clock_stop(&clk, out);
        if (c->op == op_append)
            mp_list_clear(c->list);
        return r;
    }
    _Atomic uint32_t *gate =
        mmap(NULL, sizeof *gate, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (gate == MAP_FAILED)
        return 1;
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
        _exit(loop(c, ops / 2, ops - ops / 2));
    }
    bench_pin(0);
    while (atomic_load(gate) < 1)
        ;
    bench_clock clk;
    bench_clock_start(&clk);
    atomic_store(gate, 2);
    int r = loop(c, 0, ops / 2), st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        r = 1;
    bench_clock_stop(&clk, out);
    sched_setaffinity(0, sizeof saved, &saved);
    munmap(gate, sizeof *gate);
    if (c->op == op_append)
        mp_list_clear(c->list);
    return r;
}

/* Python's manager on the same operations, ops/s for append, set, get; 0 when unavailable. */
static void
python_baseline(double rates[3])
{
    static const char script[] =
        "python3 -c '\n"
        "import multiprocessing as mp, time\n"
        "N = 20000\n"
        "with mp.Manager() as m:\n"
        "    l, d = m.list(), m.dict()\n"
        "    keys = [\"k%d\" % i for i in range(N)]\n"
        "    out = []\n"
        "    for f in (lambda i: l.append(i), lambda i: d.__setitem__(keys[i], i),\n"
        "              lambda i: d[keys[i]]):\n"
        "        t = time.perf_counter()\n"
        "        for i in range(N): f(i)\n"
        "        out.append(N / (time.perf_counter() - t))\n"
        "    print(*out)\n"
        "' 2>/dev/null";
    rates[0] = rates[1] = rates[2] = 0;
    fflush(NULL);
    FILE *p = popen(script, "r");
    if (p == NULL)
        return;
    if (fscanf(p, "%lf %lf %lf", &rates[0], &rates[1], &rates[2]) != 3)
        rates[0] = rates[1] = rates[2] = 0;
    pclose(p);
}

static void
fill(ctx *c, size_t n)
{
    mp_dict_clear(c->dict);
    for (size_t i = 0; i < n; i++) {
        mp_item key = {.type = MP_ITEM_STR, .v.s = {c->keys[i], strlen(c->keys[i])}};
        mp_item v = {.type = MP_ITEM_INT, .v.i = (int64_t)i};
        mp_dict_set(c->dict, &key, &v);
    }
}

void
bench_suite_manager(const bench_config *cfg)
{
    bench_header("manager", "ops/s on shared containers (str keys, int values); target: each op "
                            "<= 1 us from one process, i.e. ratio to 1 M ops/s >= 1");
    mp_manager *m = NULL;
    ctx c = {0};
    c.keys = malloc(KEYS_BIG * sizeof *c.keys);
    if (c.keys == NULL || mp_manager_open(&m, NULL) != 0 ||
        mp_list_open(&c.list, m, NULL, 0) != 0 || mp_dict_open(&c.dict, m) != 0) {
        printf("manager: set-up failed\n");
        free(c.keys);
        mp_manager_close(m);
        return;
    }
    for (int i = 0; i < KEYS_BIG; i++)
        snprintf(c.keys[i], sizeof c.keys[i], "k%d", i);
    uint64_t n = bench_scaled(cfg, 1000000);
    double one[3] = {0}, py[3];
    static const char *const names[3] = {"list append", "dict set", "dict get (100 keys)"};
    int (*const ops[3])(ctx *, uint64_t) = {op_append, op_set, op_get};
    for (int k = 0; k < 3; k++)
        for (int procs = 1; procs <= 2; procs++) {
            bench_stats st;
            char what[64];
            snprintf(what, sizeof what, "%s, %d process%s", names[k], procs, procs > 1 ? "es" : "");
            c.op = ops[k];
            c.procs = procs;
            c.nkeys = k == 1 ? KEYS_BIG : 100;
            if (k == 2)
                fill(&c, 100);
            if (bench_throughput(cfg, what, "mpipc", run, &c, n, 0, &st) == 0 && procs == 1)
                one[k] = st.ops_s_median;
        }
    /* The 100k-key dict against the 100-key one, gets from one process. */
    bench_stats big;
    fill(&c, KEYS_BIG);
    c.op = op_get;
    c.procs = 1;
    c.nkeys = KEYS_BIG;
    if (bench_throughput(cfg, "dict get (100k keys), 1 process", "mpipc", run, &c, n, 0, &big) == 0)
        bench_ratio("dict get 100k keys vs 100 keys (target >= 0.5)", big.ops_s_median, one[2], 0.5,
                    0);
    for (int k = 0; k < 3; k++)
        bench_ratio(names[k], one[k], 1e6, 1.0, 0);
    python_baseline(py);
    if (py[0] > 0) {
        printf("Python %s baseline, same session (20k ops): append %.0f, set %.0f, get %.0f "
               "ops/s\n",
               "multiprocessing.Manager()", py[0], py[1], py[2]);
        for (int k = 0; k < 3; k++)
            bench_ratio(names[k], one[k], py[k], 40.0, 0);
    } else {
        printf("python3 not found: no Python baseline this run\n");
    }
    mp_list_close(c.list);
    mp_dict_close(c.dict);
    mp_manager_close(m);
    free(c.keys);
}
