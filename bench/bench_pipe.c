/*
 * bench_pipe.c - mp_conn against the same workload over a plain socketpair with a 4-byte length
 * prefix (sendmsg of prefix + payload; recv of the prefix, then of the payload, MSG_WAITALL).
 *
 * One process sends, the other receives; each is pinned to its own CPU. Streaming rows count
 * messages per second at the receiver, after the first message has arrived (so the fork is not
 * measured); the ping-pong rows time each 64-byte round trip.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <arpa/inet.h>
#include <mpipc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* One end of either implementation, so that each workload is written once. */
typedef struct end {
    mp_conn *conn; /* mpipc; NULL for the baseline */
    int fd;        /* baseline */
} end;

typedef struct workload {
    size_t size;
    bool mpipc;
} workload;

static int
raw_send(int fd, const void *buf, size_t len)
{
    uint32_t n = htonl((uint32_t)len);
    struct iovec iov[2] = {{&n, 4}, {(void *)(uintptr_t)buf, len}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
    while (m.msg_iovlen > 0) {
        ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
        if (w < 0)
            return -1;
        size_t done = (size_t)w;
        while (m.msg_iovlen > 0 && done >= m.msg_iov[0].iov_len) {
            done -= m.msg_iov[0].iov_len;
            m.msg_iov++;
            m.msg_iovlen--;
        }
        if (m.msg_iovlen > 0) {
            m.msg_iov[0].iov_base = (char *)m.msg_iov[0].iov_base + done;
            m.msg_iov[0].iov_len -= done;
        }
    }
    return 0;
}

static int
raw_recv_exact(int fd, void *buf, size_t len)
{
    while (len > 0) {
        ssize_t r = recv(fd, buf, len, MSG_WAITALL);
        if (r <= 0)
            return -1;
        buf = (char *)buf + r;
        len -= (size_t)r;
    }
    return 0;
}

static int
end_send(end *e, const void *buf, size_t len)
{
    if (e->conn != NULL)
        return mp_conn_send_bytes(e->conn, buf, len, MP_FOREVER);
    return raw_send(e->fd, buf, len);
}

static int
end_recv(end *e, void *buf, size_t cap)
{
    size_t len;
    if (e->conn != NULL)
        return mp_conn_recv_bytes_into(e->conn, buf, cap, &len, MP_FOREVER);
    uint32_t n;
    if (raw_recv_exact(e->fd, &n, 4) != 0 || ntohl(n) > cap)
        return -1;
    return raw_recv_exact(e->fd, buf, ntohl(n));
}

static int
open_pair(bool mpipc, end *a, end *b)
{
    *a = (end){.fd = -1};
    *b = (end){.fd = -1};
    if (mpipc) {
        if (mp_pipe_open(&a->conn, &b->conn, true) != 0)
            return -1;
        a->fd = mp_conn_fileno(a->conn);
        b->fd = mp_conn_fileno(b->conn);
        return 0;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    a->fd = sv[0];
    b->fd = sv[1];
    return 0;
}

static void
end_close(end *e)
{
    if (e->conn != NULL)
        mp_conn_close(e->conn);
    else if (e->fd >= 0)
        close(e->fd);
}

static int
reap(pid_t pid)
{
    int st;
    return waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

/* Streaming: the child sends ops + 1 messages of w->size bytes as fast as it can. */
static int
run_stream(void *ctx, uint64_t ops, bench_sample *out)
{
    const workload *w = ctx;
    end a, b;
    if (open_pair(w->mpipc, &a, &b) != 0)
        return 1;
    char *buf = calloc(1, w->size);
    if (buf == NULL)
        return 1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        bench_pin(1);
        end_close(&a);
        for (uint64_t i = 0; i <= ops; i++)
            if (end_send(&b, buf, w->size) != 0)
                _exit(1);
        end_close(&b);
        _exit(0);
    }
    end_close(&b);
    bench_pin(0);
    int r = pid < 0 || end_recv(&a, buf, w->size) != 0;
    bench_clock c;
    bench_clock_start(&c);
    for (uint64_t i = 0; r == 0 && i < ops; i++)
        r = end_recv(&a, buf, w->size) != 0;
    r |= pid > 0 ? reap(pid) : 1;
    bench_clock_stop(&c, out);
    end_close(&a);
    free(buf);
    return r;
}

/* Ping-pong: n round trips of 64 bytes, each timed; fills ns[]. */
static int
run_pingpong(bool mpipc, double *ns, size_t n)
{
    end a, b;
    if (open_pair(mpipc, &a, &b) != 0)
        return 1;
    char buf[64] = {0};
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        bench_pin(1);
        end_close(&a);
        for (size_t i = 0; i < n + n / 10; i++)
            if (end_recv(&b, buf, sizeof buf) != 0 || end_send(&b, buf, sizeof buf) != 0)
                _exit(1);
        end_close(&b);
        _exit(0);
    }
    end_close(&b);
    bench_pin(0);
    int r = pid < 0;
    for (size_t i = 0; r == 0 && i < n + n / 10; i++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        r = end_send(&a, buf, sizeof buf) != 0 || end_recv(&a, buf, sizeof buf) != 0;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (i >= n / 10) /* the first tenth warms up */
            ns[i - n / 10] =
                (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    }
    r |= pid > 0 ? reap(pid) : 1;
    end_close(&a);
    return r;
}

static void
stream_pair(const bench_config *cfg, const char *name, size_t size, uint64_t ops,
            double *mp_bytes_s)
{
    workload mp = {size, true}, raw = {size, false};
    bench_stats s_mp, s_raw;
    if (bench_throughput(cfg, name, "mpipc", run_stream, &mp, ops, (double)size, &s_mp) == 0 &&
        bench_throughput(cfg, name, "socketpair+len", run_stream, &raw, ops, (double)size,
                         &s_raw) == 0) {
        bench_ratio(name, s_mp.ops_s_median, s_raw.ops_s_median, 0, 0);
        char what[64];
        snprintf(what, sizeof what, "%s, interleaved pairs", name);
        bench_ratio(what, bench_paired_ratio(cfg, run_stream, &mp, run_stream, &raw, ops), 1.0, 1.0, 0);
        if (mp_bytes_s != NULL)
            *mp_bytes_s = s_mp.ops_s_median * (double)size;
    }
}

void
bench_suite_pipe(const bench_config *cfg)
{
    bench_header("pipe", "one-way streaming and 64 B ping-pong; sender and receiver pinned to "
                         "two CPUs; baseline: socketpair with a 4-byte length prefix");
    stream_pair(cfg, "stream 64 B", 64, bench_scaled(cfg, 300000), NULL);
    stream_pair(cfg, "stream 4 KiB", 4096, bench_scaled(cfg, 100000), NULL);
    double gbs = 0;
    stream_pair(cfg, "stream 1 MiB", 1 << 20, bench_scaled(cfg, 2000), &gbs);
    printf("   -> stream 1 MiB: %.2f GB/s  (target >= 2.00 GB/s: %s)\n", gbs / 1e9,
           gbs >= 2e9 ? "met" : "NOT met");

    size_t n = (size_t)bench_scaled(cfg, 20000);
    double *mp = malloc(n * sizeof *mp), *raw = malloc(n * sizeof *raw);
    if (mp != NULL && raw != NULL && run_pingpong(true, mp, n) == 0 &&
        run_pingpong(false, raw, n) == 0) {
        double m = bench_latency_row("ping-pong 64 B round trip", "mpipc", mp, n);
        double b = bench_latency_row("ping-pong 64 B round trip", "socketpair+len", raw, n);
        bench_ratio("round trip median", m, b, 1.1, 1);
    } else {
        printf("ping-pong 64 B round trip          FAILED\n");
    }
    free(mp);
    free(raw);
}
