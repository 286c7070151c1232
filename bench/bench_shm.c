/*
 * bench_shm.c - mp_shm create/attach against the bare syscalls, and mp_shlist item access.
 *
 * The raw baseline does what a careful C program does by hand: shm_open(O_EXCL, 0600),
 * posix_fallocate, mmap, and on the way out munmap, close, shm_unlink. Python's figures for the
 * same operations are in docs/shm.md (measured in the same session with timeit).
 */
#define _GNU_SOURCE
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <mpipc.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#define SEG_SIZE 4096

static int
run_mpipc_create(void *ctx, uint64_t ops, bench_sample *out)
{
    (void)ctx;
    bench_clock c;
    bench_clock_start(&c);
    for (uint64_t i = 0; i < ops; i++) {
        mp_shm *s;
        if (mp_shm_open(&s, &(mp_shm_opts){.create = true, .size = SEG_SIZE}) != 0)
            return 1;
        ((volatile char *)mp_shm_buf(s))[0] = 1;
        if (mp_shm_unlink(s) != 0)
            return 1;
        mp_shm_close(s);
    }
    bench_clock_stop(&c, out);
    return 0;
}

static int
run_raw_create(void *ctx, uint64_t ops, bench_sample *out)
{
    (void)ctx;
    char name[64];
    bench_clock c;
    bench_clock_start(&c);
    for (uint64_t i = 0; i < ops; i++) {
        snprintf(name, sizeof name, "/mpipc-bench-%d-%llu", (int)getpid(), (unsigned long long)i);
        int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 || posix_fallocate(fd, 0, SEG_SIZE) != 0)
            return 1;
        void *p = mmap(NULL, SEG_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
            return 1;
        ((volatile char *)p)[0] = 1;
        munmap(p, SEG_SIZE);
        close(fd);
        shm_unlink(name);
    }
    bench_clock_stop(&c, out);
    return 0;
}

static int
run_mpipc_attach(void *ctx, uint64_t ops, bench_sample *out)
{
    const char *name = ctx;
    bench_clock c;
    bench_clock_start(&c);
    for (uint64_t i = 0; i < ops; i++) {
        mp_shm *s;
        if (mp_shm_open(&s, &(mp_shm_opts){.name = name}) != 0)
            return 1;
        mp_shm_close(s);
    }
    bench_clock_stop(&c, out);
    return 0;
}

static int
run_raw_attach(void *ctx, uint64_t ops, bench_sample *out)
{
    char path[300];
    snprintf(path, sizeof path, "/%s", (const char *)ctx);
    bench_clock c;
    bench_clock_start(&c);
    for (uint64_t i = 0; i < ops; i++) {
        int fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
        if (fd < 0)
            return 1;
        void *p = mmap(NULL, SEG_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
            return 1;
        munmap(p, SEG_SIZE);
        close(fd);
    }
    bench_clock_stop(&c, out);
    return 0;
}

static int
run_shlist_get_int(void *ctx, uint64_t ops, bench_sample *out)
{
    mp_shlist *l = ctx;
    mp_shlist_item it;
    int64_t sum = 0;
    bench_clock c;
    bench_clock_start(&c);
    for (uint64_t i = 0; i < ops; i++) {
        if (mp_shlist_get(l, 0, &it, NULL, 0) != 0)
            return 1;
        sum += it.v.i;
    }
    bench_clock_stop(&c, out);
    return sum == (int64_t)ops * 7 ? 0 : 1;
}

static int
run_shlist_set_str(void *ctx, uint64_t ops, bench_sample *out)
{
    mp_shlist *l = ctx;
    const mp_shlist_item v = {.type = MP_SHLIST_STR, .v.s = {"howdy", 5}};
    bench_clock c;
    bench_clock_start(&c);
    for (uint64_t i = 0; i < ops; i++)
        if (mp_shlist_set(l, 1, &v) != 0)
            return 1;
    bench_clock_stop(&c, out);
    return 0;
}

void
bench_suite_shm(const bench_config *cfg)
{
    bench_header("shm", "4 KiB named segments; ShareableList items in one process");
    uint64_t n = bench_scaled(cfg, 20000);
    bench_stats mp, raw;
    if (bench_throughput(cfg, "shm create+unlink+close", "mpipc", run_mpipc_create, NULL, n, 0,
                         &mp) == 0 &&
        bench_throughput(cfg, "shm create+unlink+close", "shm_open+fallocate", run_raw_create, NULL,
                         n, 0, &raw) == 0)
        bench_ratio("create", mp.ops_s_median, raw.ops_s_median, 0, 0);

    mp_shm *seg;
    if (mp_shm_open(&seg, &(mp_shm_opts){.create = true, .size = SEG_SIZE}) != 0)
        return;
    void *name = (void *)mp_shm_name(seg);
    if (bench_throughput(cfg, "shm attach+close", "mpipc", run_mpipc_attach, name, n, 0, &mp) ==
            0 &&
        bench_throughput(cfg, "shm attach+close", "shm_open+mmap", run_raw_attach, name, n, 0,
                         &raw) == 0)
        bench_ratio("attach", mp.ops_s_median, raw.ops_s_median, 0, 0);
    mp_shm_unlink(seg);
    mp_shm_close(seg);

    const mp_shlist_item items[] = {{.type = MP_SHLIST_INT, .v.i = 7},
                                    {.type = MP_SHLIST_STR, .v.s = {"hello", 5}}};
    mp_shlist *l;
    if (mp_shlist_open(&l, &(mp_shm_opts){.create = true}, items, 2) != 0)
        return;
    uint64_t m = bench_scaled(cfg, 5000000);
    bench_throughput(cfg, "shlist get int", "mpipc", run_shlist_get_int, l, m, 0, NULL);
    bench_throughput(cfg, "shlist set str", "mpipc", run_shlist_set_str, l, m, 0, NULL);
    mp_shm_unlink(mp_shlist_shm(l));
    mp_shlist_close(l);
}
