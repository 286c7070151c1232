/*
 * bench_listener.c - mp_listener / mp_client_connect: connections per second (connect, the
 * authkey handshake, close) and the 64-byte round trip over TCP loopback.
 *
 * Baselines: connect()/accept() of plain sockets with no handshake, and a raw TCP socket with a
 * 4-byte length prefix (TCP_NODELAY, as mpipc sets it). A forked child accepts or echoes; each
 * side is pinned to its own CPU.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <arpa/inet.h>
#include <mpipc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KEY "benchmark key"

typedef struct workload {
    const char *address; /* "127.0.0.1:0" or NULL (AF_UNIX) */
    bool mpipc, key;
} workload;

static int
reap(pid_t pid)
{
    int st;
    return waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

static int
raw_connect(const struct sockaddr_storage *ss, socklen_t len)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (const struct sockaddr *)ss, len) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Connections: the child accepts ops connections; the parent connects, waits for the
 * server's close (so each connection is complete on both sides) and goes on. */
static int
run_connect(void *ctx, uint64_t ops, bench_sample *out)
{
    const workload *w = ctx;
    mp_listener_opts lo = {.authkey = w->key ? KEY : NULL, .authkey_len = w->key ? strlen(KEY) : 0};
    mp_listener *l;
    if (mp_listener_open(&l, w->address, &lo) != 0)
        return 1;
    /* The baseline connects to the same listening socket by its raw address. */
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof ss;
    getsockname(mp_listener_fileno(l), (struct sockaddr *)&ss, &sslen);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        bench_pin(1);
        for (uint64_t i = 0; i < ops; i++) {
            if (w->mpipc) {
                mp_conn *c;
                if (mp_listener_accept(l, &c, 10000) != 0)
                    _exit(1);
                mp_conn_close(c);
            } else {
                int fd;
                while ((fd = accept4(mp_listener_fileno(l), NULL, NULL, SOCK_CLOEXEC)) < 0)
                    if (mp_conn_wait((int[]){mp_listener_fileno(l)}, 1, NULL, 10000) != 1)
                        _exit(1);
                close(fd);
            }
        }
        _exit(0);
    }
    bench_pin(0);
    mp_client_opts co = {.authkey = lo.authkey, .authkey_len = lo.authkey_len};
    bench_clock c;
    bench_clock_start(&c);
    int r = pid < 0;
    char byte;
    for (uint64_t i = 0; r == 0 && i < ops; i++) {
        if (w->mpipc) {
            mp_conn *conn;
            void *buf;
            size_t len;
            r = mp_client_connect(&conn, mp_listener_address(l), &co, 10000) != 0;
            if (r == 0) {
                r = mp_conn_recv_bytes(conn, &buf, &len, SIZE_MAX, 10000) != MP_EOF;
                mp_conn_close(conn);
            }
        } else {
            int fd = raw_connect(&ss, sslen);
            r = fd < 0 || recv(fd, &byte, 1, 0) != 0;
            if (fd >= 0)
                close(fd);
        }
    }
    r |= pid > 0 ? reap(pid) : 1;
    bench_clock_stop(&c, out);
    mp_listener_close(l);
    return r;
}

/* ---- TCP round trip ------------------------------------------------------------------------ */

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

/* One 64-byte message each way; mpipc or a raw 4-byte prefix over the same kind of socket. */
static int
exchange(mp_conn *c, int fd, char *buf, bool first_send)
{
    for (int step = 0; step < 2; step++) {
        bool send_now = (step == 0) == first_send;
        if (c != NULL) {
            size_t len;
            if (send_now ? mp_conn_send_bytes(c, buf, 64, MP_FOREVER)
                         : mp_conn_recv_bytes_into(c, buf, 64, &len, MP_FOREVER))
                return -1;
        } else if (send_now) {
            char frame[68];
            uint32_t n = htonl(64);
            memcpy(frame, &n, 4);
            memcpy(frame + 4, buf, 64);
            if (send(fd, frame, sizeof frame, MSG_NOSIGNAL) != (ssize_t)sizeof frame)
                return -1;
        } else {
            uint32_t n;
            if (raw_recv_exact(fd, &n, 4) != 0 || ntohl(n) != 64 || raw_recv_exact(fd, buf, 64))
                return -1;
        }
    }
    return 0;
}

static int
run_pingpong(bool mpipc, double *ns, size_t n)
{
    mp_listener *l;
    if (mp_listener_open(&l, "127.0.0.1:0", NULL) != 0)
        return 1;
    char buf[64] = {0};
    size_t total = n + n / 10;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        bench_pin(1);
        mp_conn *c;
        if (mp_listener_accept(l, &c, 10000) != 0)
            _exit(1);
        for (size_t i = 0; i < total; i++)
            if (exchange(mpipc ? c : NULL, mp_conn_fileno(c), buf, false) != 0)
                _exit(1);
        mp_conn_close(c);
        _exit(0);
    }
    bench_pin(0);
    mp_conn *c;
    int r = pid < 0 || mp_client_connect(&c, mp_listener_address(l), NULL, 10000) != 0;
    for (size_t i = 0; r == 0 && i < total; i++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        r = exchange(mpipc ? c : NULL, mp_conn_fileno(c), buf, true) != 0;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (i >= n / 10) /* the first tenth warms up */
            ns[i - n / 10] =
                (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
    }
    if (pid >= 0 && r == 0)
        mp_conn_close(c);
    r |= pid > 0 ? reap(pid) : 1;
    mp_listener_close(l);
    return r;
}

void
bench_suite_listener(const bench_config *cfg)
{
    bench_header("listener", "connect + handshake + close per second, child accepts; "
                             "baseline: plain connect/accept; 64 B round trip over TCP loopback");
    static const struct {
        const char *name;
        workload w;
    } rows[] = {
        {"connect tcp, sha256 key", {"127.0.0.1:0", true, true}},
        {"connect tcp, no key", {"127.0.0.1:0", true, false}},
        {"connect tcp", {"127.0.0.1:0", false, false}},
        {"connect unix, sha256 key", {NULL, true, true}},
        {"connect unix", {NULL, false, false}},
    };
    uint64_t ops = bench_scaled(cfg, 2000);
    double rate[5] = {0};
    for (size_t i = 0; i < 5; i++) {
        bench_stats s;
        workload w = rows[i].w;
        if (bench_throughput(cfg, rows[i].name, w.mpipc ? "mpipc" : "connect/accept", run_connect,
                             &w, ops, 0, &s) == 0)
            rate[i] = s.ops_s_median;
    }
    bench_ratio("tcp connections, keyed vs plain", rate[0], rate[2], 0, 0);
    bench_ratio("tcp connections, no key vs plain", rate[1], rate[2], 0, 0);
    bench_ratio("unix connections, keyed vs plain", rate[3], rate[4], 0, 0);

    size_t n = (size_t)bench_scaled(cfg, 20000);
    double *mp = malloc(n * sizeof *mp), *raw = malloc(n * sizeof *raw);
    if (mp != NULL && raw != NULL && run_pingpong(true, mp, n) == 0 &&
        run_pingpong(false, raw, n) == 0) {
        double m = bench_latency_row("tcp ping-pong 64 B round trip", "mpipc", mp, n);
        double b = bench_latency_row("tcp ping-pong 64 B round trip", "tcp+len", raw, n);
        bench_ratio("tcp round trip median", m, b, 1.1, 1);
    } else {
        printf("tcp ping-pong 64 B round trip      FAILED\n");
    }
    free(mp);
    free(raw);
}
