/*
 * bench_queue.c - mp_queue against a plain socketpair carrying [u32 length][payload] frames,
 * on the workloads of the queue-speed issue: 1 -> 1 streaming of 64 B and 4 KiB messages,
 * 1 MiB messages (GB/s), 2 -> 2 MPMC with 64 B messages, and a 64 B ping-pong through two
 * queues (round trip median and p99). Every process is a forked child pinned to one CPU; the
 * parent only starts them together and reaps them, so cpu/op covers all the work.
 */
#define _GNU_SOURCE
#include "bench.h"
#include "internal.h"

#include <mpipc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

typedef enum { IMPL_QUEUE, IMPL_SOCK } impl;

typedef struct work {
    impl kind;
    size_t msg; /* bytes per message */
    int nprod, ncons;
    mp_queue *q;     /* IMPL_QUEUE */
    int fd[2];       /* IMPL_SOCK: producers write fd[0], consumers read fd[1] */
    size_t capacity; /* IMPL_QUEUE ring bytes; 0 for the default */
    bool fileno;     /* IMPL_QUEUE: opened with a readiness fd (its cost, no poller) */
} work;

/* The start line: children wait on a shared futex word until the parent releases them. */
static _Atomic uint32_t *start_word;

static void
wait_start(void)
{
    while (atomic_load(start_word) == 0)
        mp__futex_wait(start_word, 0, NULL);
}

static int
write_all(int fd, const void *p, size_t n)
{
    while (n > 0) {
        ssize_t r = write(fd, p, n);
        if (r <= 0)
            return -1;
        p = (const char *)p + r;
        n -= (size_t)r;
    }
    return 0;
}

static int
read_all(int fd, void *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r <= 0)
            return -1;
        p = (char *)p + r;
        n -= (size_t)r;
    }
    return 0;
}

/* Socket frames: SOCK_STREAM for one producer and one consumer; SOCK_SEQPACKET for MPMC,
 * where a stream socket would interleave the frames of concurrent writers. */
static int
sock_send(const work *w, unsigned char *buf, size_t len)
{
    uint32_t n = (uint32_t)len;
    memcpy(buf, &n, 4);
    if (w->nprod > 1)
        return send(w->fd[0], buf, len + 4, 0) == (ssize_t)(len + 4) ? 0 : -1;
    return write_all(w->fd[0], buf, len + 4);
}

static int
sock_recv(const work *w, unsigned char *buf, size_t cap, size_t *len)
{
    uint32_t n;
    if (w->ncons > 1) {
        ssize_t r = recv(w->fd[1], buf, cap + 4, 0);
        if (r < 4)
            return -1;
        memcpy(&n, buf, 4);
        *len = n;
        return 0;
    }
    if (read_all(w->fd[1], &n, 4) != 0 || n > cap || read_all(w->fd[1], buf, n) != 0)
        return -1;
    *len = n;
    return 0;
}

static int
producer(const work *w, uint64_t n)
{
    unsigned char *buf = malloc(w->msg + 4);
    int r = buf == NULL;
    if (buf != NULL)
        memset(buf, 0x5a, w->msg + 4); /* real pages, not the shared zero page */
    wait_start();
    for (uint64_t i = 0; r == 0 && i < n; i++) {
        buf[4] = (unsigned char)i;
        r = w->kind == IMPL_QUEUE ? mp_queue_put(w->q, buf + 4, w->msg, MP_FOREVER)
                                  : sock_send(w, buf, w->msg);
    }
    free(buf);
    return r != 0;
}

static int
consumer(const work *w, uint64_t n)
{
    unsigned char *buf = malloc(w->msg + 4);
    int r = buf == NULL;
    if (buf != NULL)
        memset(buf, 0, w->msg + 4);
    wait_start();
    for (uint64_t i = 0; r == 0 && i < n; i++) {
        size_t len = 0;
        r = w->kind == IMPL_QUEUE ? mp_queue_get(w->q, buf, w->msg, &len, MP_FOREVER)
                                  : sock_recv(w, buf, w->msg, &len);
        if (r == 0 && len != w->msg)
            r = -1;
    }
    free(buf);
    return r != 0;
}

static int
open_transport(work *w)
{
    if (w->kind == IMPL_QUEUE)
        return mp_queue_open(&w->q, &(mp_queue_opts){.capacity = w->capacity, .fileno = w->fileno});
    int type = w->nprod > 1 || w->ncons > 1 ? SOCK_SEQPACKET : SOCK_STREAM;
    if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, w->fd) != 0)
        return -1;
    if (type == SOCK_SEQPACKET) {
        /* Each message must fit one packet; give the socket room for a burst of them. */
        int sz = 4 << 20;
        setsockopt(w->fd[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
        setsockopt(w->fd[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    }
    return 0;
}

static void
close_transport(work *w)
{
    if (w->kind == IMPL_QUEUE) {
        mp_queue_close(w->q);
        w->q = NULL;
    } else {
        close(w->fd[0]);
        close(w->fd[1]);
    }
}

/* Fork the producers and consumers, pinned alternately to CPUs 0 and 1, release them at once,
 * and time until all are reaped. */
static int
run_streaming(void *ctx, uint64_t ops, bench_sample *out)
{
    work *w = ctx;
    if (open_transport(w) != 0)
        return 1;
    atomic_store(start_word, 0);
    pid_t pids[8];
    int n = 0, fail = 0;
    for (int i = 0; i < w->nprod + w->ncons; i++) {
        bool prod = i < w->nprod;
        int k = prod ? w->nprod : w->ncons;
        pid_t pid = fork();
        if (pid == 0) {
            bench_pin(prod ? i + 1 : i - w->nprod);
            _exit(prod ? producer(w, ops / (uint64_t)k) : consumer(w, ops / (uint64_t)k));
        }
        if (pid < 0) {
            fail = 1;
            break;
        }
        pids[n++] = pid;
    }
    bench_clock c;
    bench_clock_start(&c);
    atomic_store(start_word, 1);
    mp__futex_wake(start_word, INT32_MAX);
    for (int i = 0; i < n; i++) {
        int st;
        if (fail)
            kill(pids[i], SIGKILL);
        if (waitpid(pids[i], &st, 0) != pids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fail = 1;
    }
    bench_clock_stop(&c, out);
    close_transport(w);
    return fail;
}

/* ---- ping-pong ------------------------------------------------------------------------------ */

typedef struct pingpong {
    impl kind;
    mp_queue *q[2];
    int fd[2][2];
    double *ns; /* shared: one round trip per sample */
} pingpong;

static int
pp_send(pingpong *p, int dir, unsigned char *buf)
{
    if (p->kind == IMPL_QUEUE)
        return mp_queue_put(p->q[dir], buf + 4, 64, MP_FOREVER);
    uint32_t n = 64;
    memcpy(buf, &n, 4);
    return write_all(p->fd[dir][0], buf, 68);
}

static int
pp_recv(pingpong *p, int dir, unsigned char *buf)
{
    size_t len;
    if (p->kind == IMPL_QUEUE)
        return mp_queue_get(p->q[dir], buf, 64, &len, MP_FOREVER);
    uint32_t n;
    return read_all(p->fd[dir][1], &n, 4) != 0 || n != 64 || read_all(p->fd[dir][1], buf, n) != 0;
}

static int
run_pingpong(pingpong *p, size_t samples, bench_sample *out)
{
    for (int d = 0; d < 2; d++) {
        if (p->kind == IMPL_QUEUE
                ? mp_queue_open(&p->q[d], NULL) != 0
                : socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p->fd[d]) != 0)
            return 1;
    }
    atomic_store(start_word, 0);
    pid_t pids[2];
    for (int role = 0; role < 2; role++) {
        pids[role] = fork();
        if (pids[role] == 0) {
            unsigned char buf[68] = {0};
            int r = 0;
            bench_pin(role);
            wait_start();
            for (size_t i = 0; r == 0 && i < samples; i++) {
                if (role == 0) {
                    int64_t t0 = mp__now_ns();
                    r = pp_send(p, 0, buf) || pp_recv(p, 1, buf);
                    p->ns[i] = (double)(mp__now_ns() - t0);
                } else {
                    r = pp_recv(p, 0, buf) || pp_send(p, 1, buf);
                }
            }
            _exit(r != 0);
        }
    }
    bench_clock c;
    bench_clock_start(&c);
    atomic_store(start_word, 1);
    mp__futex_wake(start_word, INT32_MAX);
    int fail = 0;
    for (int role = 0; role < 2; role++) {
        int st;
        if (waitpid(pids[role], &st, 0) != pids[role] || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fail = 1;
    }
    bench_clock_stop(&c, out);
    for (int d = 0; d < 2; d++) {
        if (p->kind == IMPL_QUEUE) {
            mp_queue_close(p->q[d]);
        } else {
            close(p->fd[d][0]);
            close(p->fd[d][1]);
        }
    }
    return fail;
}

/* ---- the suite ------------------------------------------------------------------------------ */

static void
target(const char *what, double value, double goal, const char *unit, int lower_is_better)
{
    int met = lower_is_better ? value <= goal : value >= goal;
    printf("   -> target %s %s %.2f %s: %.2f %s, %s\n", what, lower_is_better ? "<=" : ">=", goal,
           unit, value, unit, met ? "met" : "NOT met");
}

static void
pair(const bench_config *cfg, const char *name, size_t msg, int np, int nc, uint64_t qops,
     uint64_t sops, double goal, double unit_div, const char *unit, size_t capacity)
{
    work wq = {IMPL_QUEUE, msg, np, nc, NULL, {-1, -1}, capacity, false};
    work ws = {IMPL_SOCK, msg, np, nc, NULL, {-1, -1}, 0, false};
    if (strstr(name, "fileno") != NULL)
        wq.fileno = true;
    bench_stats a, b;
    if (bench_throughput(cfg, name, "mp_queue", run_streaming, &wq, bench_scaled(cfg, qops),
                         (double)msg, &a) != 0 ||
        bench_throughput(cfg, name, "socketpair", run_streaming, &ws, bench_scaled(cfg, sops),
                         (double)msg, &b) != 0)
        return;
    bench_ratio(name, a.ops_s_median, b.ops_s_median, 0, 0);
    if (goal <= 0)
        return;
    double v = unit_div == 1e9 ? a.ops_s_median * (double)msg / 1e9 : a.ops_s_median / unit_div;
    target(name, v, goal, unit, 0);
}

static void
pingpong_pair(const bench_config *cfg)
{
    size_t n = (size_t)bench_scaled(cfg, 100000);
    double med[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        pingpong p = {k == 0 ? IMPL_QUEUE : IMPL_SOCK, {NULL, NULL}, {{-1, -1}, {-1, -1}}, NULL};
        p.ns = mmap(NULL, n * sizeof(double), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                    -1, 0);
        if (p.ns == MAP_FAILED)
            return;
        bench_sample s;
        if (run_pingpong(&p, n / 10 + 1, &s) == 0 && run_pingpong(&p, n, &s) == 0) {
            med[k] = bench_latency_row("ping-pong 64 B round trip",
                                       k == 0 ? "mp_queue" : "socketpair", p.ns, n);
            printf("   %-31s %-16s cpu per round trip %.2f us\n", "", "",
                   s.cpu_s * 1e6 / (double)n);
        }
        munmap(p.ns, n * sizeof(double));
    }
    if (med[0] > 0 && med[1] > 0) {
        bench_ratio("ping-pong round trip", med[0], med[1], 0, 1);
        target("ping-pong median", med[0] / 1e3, 2.0, "us", 1);
    }
}

void
bench_suite_queue(const bench_config *cfg)
{
    bench_header("queue",
                 "1 producer -> 1 consumer unless noted; each beside a socketpair carrying "
                 "[u32 len][payload] (SOCK_SEQPACKET for 2x2); default 4 MiB ring");
    start_word = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (start_word == MAP_FAILED)
        return;
    pair(cfg, "stream 64 B", 64, 1, 1, 4000000, 400000, 10, 1e6, "M msgs/s", 0);
    /* The same with a readiness fd that nobody polls: what mp_queue_fileno costs. */
    pair(cfg, "stream 64 B, fileno", 64, 1, 1, 2000000, 400000, 0, 1e6, "M msgs/s", 0);
    pair(cfg, "stream 4 KiB", 4096, 1, 1, 400000, 200000, 0, 1e6, "M msgs/s", 0);
    /* With the default 4 MiB ring a 1 MiB message fits and is copied once on each side; with
     * a 1 MiB ring it is streamed through it in chunks (no target: for comparison).
     */
    pair(cfg, "stream 1 MiB", 1 << 20, 1, 1, 8000, 2000, 8, 1e9, "GB/s", 0);
    pair(cfg, "stream 1 MiB, 1 MiB ring", 1 << 20, 1, 1, 4000, 2000, 0, 1e9, "GB/s", 1 << 20);
    pair(cfg, "2x2 MPMC 64 B", 64, 2, 2, 4000000, 400000, 4, 1e6, "M msgs/s", 0);
    pingpong_pair(cfg);
    munmap((void *)start_word, 4096);
}
