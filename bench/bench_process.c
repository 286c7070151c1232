/*
 * bench_process.c - mp_process start + join against bare fork() + waitpid().
 */
#define _GNU_SOURCE
#include "bench.h"

#include <mpipc.h>
#include <sys/wait.h>
#include <unistd.h>

static int
nothing(void *arg)
{
    (void)arg;
    return 0;
}

static int
run_mpipc(void *ctx, uint64_t ops, bench_sample *out)
{
    (void)ctx;
    bench_clock c;
    bench_clock_start(&c);
    for (uint64_t i = 0; i < ops; i++) {
        mp_process *p;
        if (mp_process_open(&p, nothing, NULL, NULL) != 0 || mp_process_start(p) != 0 ||
            mp_process_join(p, MP_FOREVER) != 0)
            return 1;
        mp_process_close(p);
    }
    bench_clock_stop(&c, out);
    return 0;
}

static int
run_fork(void *ctx, uint64_t ops, bench_sample *out)
{
    (void)ctx;
    bench_clock c;
    bench_clock_start(&c);
    for (uint64_t i = 0; i < ops; i++) {
        pid_t pid = fork();
        if (pid < 0)
            return 1;
        if (pid == 0)
            _exit(0);
        if (waitpid(pid, NULL, 0) != pid)
            return 1;
    }
    bench_clock_stop(&c, out);
    return 0;
}

void
bench_suite_process(const bench_config *cfg)
{
    bench_header("process", "one child at a time: open + start + join + close vs fork + waitpid");
    uint64_t n = bench_scaled(cfg, 2000);
    bench_stats mp, raw;
    if (bench_throughput(cfg, "process start+join", "mpipc", run_mpipc, NULL, n, 0, &mp) == 0 &&
        bench_throughput(cfg, "process start+join", "fork+waitpid", run_fork, NULL, n, 0, &raw) ==
            0)
        bench_ratio("start+join", mp.ops_s_median, raw.ops_s_median, 0, 0);
}
