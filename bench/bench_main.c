/*
 * bench_main.c - the one benchmark runner:
 *   mpipc_bench [--reps N] [--quick] [--tsv FILE] [suite-filter]
 * --tsv FILE also writes every row as a tab-separated record (see bench.h); bench/run reads it.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    void (*run)(const bench_config *);
} suites[] = {
    {"process", bench_suite_process},
    {"shm", bench_suite_shm},
    {"sync", bench_suite_sync},
    {"pipe", bench_suite_pipe},
    {"value", bench_suite_value},
    {"queue", bench_suite_queue},
    {"listener", bench_suite_listener},
    {"objects", bench_suite_objects},
    {"manager", bench_suite_manager},
    {"remote_manager", bench_suite_remote_manager},
    {"manager_proxy", bench_suite_manager_proxy},
};

int
main(int argc, char **argv)
{
    bench_config cfg = {.reps = 5, .scale = 1.0, .only = NULL};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            cfg.reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--tsv") == 0 && i + 1 < argc) {
            if (bench_output_open(argv[++i]) != 0) {
                perror(argv[i]);
                return 1;
            }
        } else if (strcmp(argv[i], "--quick") == 0)
            cfg.scale = 0.05, cfg.reps = 3;
        else if (argv[i][0] != '-')
            cfg.only = argv[i];
        else {
            fprintf(stderr, "usage: %s [--reps N] [--quick] [--tsv FILE] [suite]\n", argv[0]);
            return 2;
        }
    }
    printf("mpipc benchmarks: median of %d runs after a warm-up; cpu/op counts this process and "
           "its reaped children\n",
           cfg.reps);
    /* Every suite starts with the CPUs this process was given: a suite that pins itself and
     * forgets to unpin would otherwise put both sides of the next suite's pair on one CPU
     * (the queue's round trip measured 4.5 us instead of 0.4 us that way). */
    bench_cpus_init();
    cpu_set_t all;
    sched_getaffinity(0, sizeof all, &all);
    for (size_t i = 0; i < sizeof suites / sizeof suites[0]; i++)
        if (cfg.only == NULL || strstr(suites[i].name, cfg.only) != NULL) {
            sched_setaffinity(0, sizeof all, &all);
            bench_set_suite(suites[i].name);
            suites[i].run(&cfg);
        }
    bench_output_close();
    return 0;
}
