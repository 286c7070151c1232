/*
 * bench.c - the harness (see bench.h).
 *
 * Every row is printed for people on stdout and, when bench_output_open() was given a file, also
 * written there as one tab-separated record, so that bench/report can put mpipc, the raw baseline
 * and Python side by side without parsing the human layout. Suites need not know about the file.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The record file and the suite whose rows are being written (set by the runner). */
static FILE *out_file;
static const char *cur_suite = "";

int
bench_output_open(const char *path)
{
    out_file = fopen(path, "we");
    if (out_file == NULL)
        return -1;
    fprintf(out_file, "# %s\n", BENCH_TSV_COLUMNS);
    fflush(out_file);
    return 0;
}

void
bench_output_close(void)
{
    if (out_file != NULL)
        fclose(out_file);
    out_file = NULL;
}

void
bench_set_suite(const char *suite)
{
    cur_suite = suite != NULL ? suite : "";
}

/* Tabs and newlines would break the record, so they become spaces. */
static void
put_field(const char *s)
{
    for (; *s != '\0'; s++)
        fputc(*s == '\t' || *s == '\n' ? ' ' : *s, out_file);
    fputc('\t', out_file);
}

static void
put_record(const char *workload, const char *impl, const char *kind, const double v[5],
           const char *unit, double bytes_per_op, double n, double target, const char *better)
{
    if (out_file == NULL)
        return;
    put_field(cur_suite);
    put_field(workload);
    put_field(impl);
    put_field(kind);
    /* %.6g keeps the files short; every figure is far noisier than six digits. */
    for (int i = 0; i < 5; i++)
        fprintf(out_file, "%.6g\t", v[i]);
    put_field(unit);
    fprintf(out_file, "%.6g\t%.0f\t%.6g\t%s\n", bytes_per_op, n, target, better);
    fflush(out_file);
}

static double
cpu_seconds(void)
{
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    return (double)(self.ru_utime.tv_sec + self.ru_stime.tv_sec + kids.ru_utime.tv_sec +
                    kids.ru_stime.tv_sec) +
           (double)(self.ru_utime.tv_usec + self.ru_stime.tv_usec + kids.ru_utime.tv_usec +
                    kids.ru_stime.tv_usec) /
               1e6;
}

static double
wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void
bench_clock_start(bench_clock *c)
{
    c->cpu0 = cpu_seconds();
    c->wall0 = wall_seconds();
}

void
bench_clock_stop(const bench_clock *c, bench_sample *out)
{
    out->wall_s = wall_seconds() - c->wall0;
    out->cpu_s = cpu_seconds() - c->cpu0;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void
fmt_rate(char *buf, size_t n, double v, const char *unit)
{
    if (v >= 1e9)
        snprintf(buf, n, "%.2f G%s", v / 1e9, unit);
    else if (v >= 1e6)
        snprintf(buf, n, "%.2f M%s", v / 1e6, unit);
    else if (v >= 1e3)
        snprintf(buf, n, "%.2f k%s", v / 1e3, unit);
    else
        snprintf(buf, n, "%.1f %s", v, unit);
}

static void
fmt_ns(char *buf, size_t n, double ns)
{
    if (ns >= 1e6)
        snprintf(buf, n, "%.2f ms", ns / 1e6);
    else if (ns >= 1e3)
        snprintf(buf, n, "%.2f us", ns / 1e3);
    else
        snprintf(buf, n, "%.0f ns", ns);
}

void
bench_header(const char *section, const char *note)
{
    printf("\n== %s ==\n", section);
    if (note != NULL && note[0] != '\0')
        printf("   %s\n", note);
    printf("%-34s %-16s %14s %24s %12s\n", "workload", "impl", "median", "spread (min..max)",
           "cpu/op");
}

uint64_t
bench_scaled(const bench_config *cfg, uint64_t ops)
{
    double v = (double)ops * cfg->scale;
    return v < 1 ? 1 : (uint64_t)v;
}

int
bench_throughput(const bench_config *cfg, const char *workload, const char *impl, bench_fn fn,
                 void *ctx, uint64_t ops, double bytes_per_op, bench_stats *out)
{
    int reps = cfg->reps > 0 ? cfg->reps : 5;
    double *rate = calloc((size_t)reps, sizeof *rate);
    double *cpu = calloc((size_t)reps, sizeof *cpu);
    bench_sample s;
    int r = fn(ctx, ops / 10 + 1, &s); /* warm-up: caches, page faults, CPU frequency */
    for (int i = 0; r == 0 && i < reps; i++) {
        r = fn(ctx, ops, &s);
        rate[i] = (double)ops / (s.wall_s > 0 ? s.wall_s : 1e-9);
        cpu[i] = s.cpu_s * 1e9 / (double)ops;
    }
    if (r != 0) {
        printf("%-34s %-16s   FAILED (%d)\n", workload, impl, r);
        free(rate);
        free(cpu);
        return r;
    }
    qsort(rate, (size_t)reps, sizeof *rate, cmp_double);
    qsort(cpu, (size_t)reps, sizeof *cpu, cmp_double);
    bench_stats st = {
        .ops_s_median = rate[reps / 2],
        .ops_s_min = rate[0],
        .ops_s_max = rate[reps - 1],
        .cpu_ns_per_op = cpu[reps / 2],
        .bytes_per_op = bytes_per_op,
    };
    char med[32], lo[32], hi[32], spread[80], c[32];
    fmt_rate(med, sizeof med, st.ops_s_median, "op/s");
    fmt_rate(lo, sizeof lo, st.ops_s_min, "");
    fmt_rate(hi, sizeof hi, st.ops_s_max, "");
    snprintf(spread, sizeof spread, "%s..%s", lo, hi);
    fmt_ns(c, sizeof c, st.cpu_ns_per_op);
    printf("%-34s %-16s %14s %24s %12s", workload, impl, med, spread, c);
    if (bytes_per_op > 0) {
        char bw[32];
        fmt_rate(bw, sizeof bw, st.ops_s_median * bytes_per_op, "B/s");
        printf("  (%s)", bw);
    }
    printf("\n");
    fflush(stdout);
    put_record(workload, impl, "tput",
               (double[5]){st.ops_s_median, st.ops_s_min, st.ops_s_max, 0, st.cpu_ns_per_op},
               "op/s", bytes_per_op, reps, 0, "higher");
    if (out != NULL)
        *out = st;
    free(rate);
    free(cpu);
    return 0;
}

double
bench_latency_row(const char *workload, const char *impl, double *ns, size_t n)
{
    if (n == 0)
        return 0;
    qsort(ns, n, sizeof *ns, cmp_double);
    double med = ns[n / 2];
    double p99 = ns[(size_t)((double)(n - 1) * 0.99)];
    char a[32], b[32], spread[64];
    fmt_ns(a, sizeof a, med);
    fmt_ns(b, sizeof b, p99);
    snprintf(spread, sizeof spread, "p99 %s", b);
    printf("%-34s %-16s %14s %24s %12s\n", workload, impl, a, spread, "-");
    fflush(stdout);
    put_record(workload, impl, "lat", (double[5]){med, ns[0], ns[n - 1], p99, 0}, "ns", 0,
               (double)n, 0, "lower");
    return med;
}

void
bench_ratio(const char *what, double mpipc, double baseline, double target, int lower_is_better)
{
    double ratio = baseline > 0 ? mpipc / baseline : 0;
    printf("   -> %s: mpipc/baseline = %.2fx", what, ratio);
    if (target > 0) {
        int met = lower_is_better ? ratio <= target : ratio >= target;
        printf("  (target %s %.2fx: %s)", lower_is_better ? "<=" : ">=", target,
               met ? "met" : "NOT met");
    }
    printf("\n");
    fflush(stdout);
    put_record(what, "mpipc/baseline", "ratio", (double[5]){ratio, 0, 0, 0, 0}, "x", 0, 1, target,
               lower_is_better ? "lower" : "higher");
}

double
bench_paired_ratio(const bench_config *cfg, bench_fn a, void *ctx_a, bench_fn b, void *ctx_b,
                   uint64_t ops)
{
    int pairs = cfg->reps > 0 ? cfg->reps : 5;
    double ratio[64];
    if (pairs > 64)
        pairs = 64;
    for (int i = 0; i < pairs; i++) {
        bench_sample sa, sb;
        int r = i % 2 == 0 ? a(ctx_a, ops, &sa) | b(ctx_b, ops, &sb)
                           : b(ctx_b, ops, &sb) | a(ctx_a, ops, &sa);
        if (r != 0 || sa.wall_s <= 0)
            return 0;
        ratio[i] = sb.wall_s / sa.wall_s;
    }
    qsort(ratio, (size_t)pairs, sizeof ratio[0], cmp_double);
    return ratio[pairs / 2];
}

/* The CPUs the benchmark was started with. bench_pin() picks from these, not from the calling
 * process's current mask: a pinned parent's children inherit a one-CPU mask, and picking "CPU 1
 * modulo 1" would put both sides of a pair on the same CPU. */
static cpu_set_t start_cpus;
static pthread_once_t start_once = PTHREAD_ONCE_INIT;

static void
save_start_cpus(void)
{
    if (sched_getaffinity(0, sizeof start_cpus, &start_cpus) != 0)
        CPU_ZERO(&start_cpus);
}

void
bench_cpus_init(void)
{
    pthread_once(&start_once, save_start_cpus);
}

void
bench_pin(int cpu)
{
    bench_cpus_init();
    int n = CPU_COUNT(&start_cpus);
    if (n <= 1)
        return;
    int want = cpu % n;
    for (int i = 0, seen = 0; i < CPU_SETSIZE; i++) {
        if (!CPU_ISSET(i, &start_cpus))
            continue;
        if (seen++ == want) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(i, &one);
            sched_setaffinity(0, sizeof one, &one);
            return;
        }
    }
}
