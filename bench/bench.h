/*
 * bench.h - the benchmark harness every mpipc benchmark plugs into.
 *
 * A workload is a function that performs `ops` operations and times itself with bench_clock
 * (so that set-up such as forking a peer stays outside the measurement). The harness runs it
 * once to warm up, then `reps` times, and prints one row: the median rate, the spread
 * (min..max), and CPU time per operation summed over the process and the children it reaped,
 * so that a spinning implementation cannot hide behind its throughput. Each mpipc figure is
 * printed next to a raw-syscall baseline measured in the same run, with the ratio.
 */
#ifndef MPIPC_BENCH_H
#define MPIPC_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>

typedef struct bench_config {
    int reps;        /* measured repetitions (median of these) */
    double scale;    /* multiplies every workload's op count; < 1 for a quick smoke run */
    const char *only; /* run only suites whose name contains this, or NULL */
} bench_config;

typedef struct bench_sample {
    double wall_s;
    double cpu_s;
} bench_sample;

/* bench_clock: wall time on CLOCK_MONOTONIC plus user+system CPU time of this process and of
 * its reaped children. Start it after set-up, stop it after the children are reaped. */
typedef struct bench_clock {
    double wall0, cpu0;
} bench_clock;
void bench_clock_start(bench_clock *c);
void bench_clock_stop(const bench_clock *c, bench_sample *out);

/* A workload: do `ops` operations, fill *out; return 0, or non-zero on failure. */
typedef int (*bench_fn)(void *ctx, uint64_t ops, bench_sample *out);

typedef struct bench_stats {
    double ops_s_median, ops_s_min, ops_s_max;
    double cpu_ns_per_op; /* median over the repetitions */
    double bytes_per_op;  /* > 0: also print a bandwidth */
} bench_stats;

/* bench_throughput - warm up, run cfg->reps times, print one row, fill *out (may be NULL).
 * Returns 0 or the workload's failure. */
int bench_throughput(const bench_config *cfg, const char *workload, const char *impl,
                     bench_fn fn, void *ctx, uint64_t ops, double bytes_per_op, bench_stats *out);

/* bench_latency_row - print median and p99 of n latency samples in nanoseconds (sorted in
 * place) and return the median. */
double bench_latency_row(const char *workload, const char *impl, double *ns, size_t n);

/* bench_ratio - print "mpipc/baseline" for throughput (higher is better) and, when `target`
 * is > 0, whether the target ratio is met. */
void bench_ratio(const char *what, double mpipc, double baseline, double target, int lower_is_better);

/* The machine-readable result stream. bench_output_open - also write every row printed by
 * bench_throughput, bench_latency_row and bench_ratio to `path` as one tab-separated record with
 * the columns below (the first line is "# " and the column names). Returns 0 or -1 (errno set).
 * kind is "tput" (median/min/max in op/s, cpu_ns = CPU time per op), "lat" (median/min/max/p99 of
 * the samples in ns, n = samples) or "ratio" (median = mpipc/baseline as bench_ratio printed it,
 * target and better = "higher" or "lower" as passed to it; target 0 = none). */
#define BENCH_TSV_COLUMNS                                                                          \
    "suite\tworkload\timpl\tkind\tmedian\tmin\tmax\tp99\tcpu_ns\tunit\tbytes_per_op\tn\ttarget\tbetter"
int bench_output_open(const char *path);
void bench_output_close(void);

/* bench_set_suite - name the suite whose rows follow (the runner calls it before each suite). */
void bench_set_suite(const char *suite);

/* bench_paired_ratio - the median over cfg->reps pairs of (rate of a / rate of b), each pair
 * running both workloads back to back in alternating order. On a shared machine load drifts
 * between two separately measured rows; a pair sees the same load, so this ratio is the one a
 * target is judged on. Returns 0 if a workload fails. */
double bench_paired_ratio(const bench_config *cfg, bench_fn a, void *ctx_a, bench_fn b,
                          void *ctx_b, uint64_t ops);

/* bench_cpus_init - remember the CPUs the benchmark may use (call once, before any pinning;
 * bench_pin does it too). */
void bench_cpus_init(void);

/* bench_pin - pin the calling process to one CPU (modulo the CPUs it may use). */
void bench_pin(int cpu);

/* bench_scaled - ops * cfg->scale, at least 1. */
uint64_t bench_scaled(const bench_config *cfg, uint64_t ops);

/* bench_header - print a section header and the column titles. */
void bench_header(const char *section, const char *note);

/* The suites. Each benchmark module adds one function here and one line in bench_main.c. */
void bench_suite_process(const bench_config *cfg);
void bench_suite_shm(const bench_config *cfg);
void bench_suite_sync(const bench_config *cfg);
void bench_suite_pipe(const bench_config *cfg);
void bench_suite_value(const bench_config *cfg);
void bench_suite_queue(const bench_config *cfg);
void bench_suite_listener(const bench_config *cfg);
void bench_suite_objects(const bench_config *cfg);
void bench_suite_manager(const bench_config *cfg);
void bench_suite_remote_manager(const bench_config *cfg);
void bench_suite_manager_proxy(const bench_config *cfg);

#endif
