/*
 * bench_proxy.c - C driving a Python manager (mp_manager_connect): round trips per second
 * from C's container calls to CPython's SyncManager server (python3, started in this run),
 * against a Python client's ListProxy on the same server. Both are one request and its reply
 * at a time over loopback TCP, so the server's work is the same; the ratio compares the
 * clients. Target: the C client no slower than Python's (ratio >= 1).
 */
#define _GNU_SOURCE
#include "bench.h"

#include <mpipc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY "bench key"

/* The server: a SyncManager with a registered list; prints its port, serves until `shutdown`. */
static const char server_script[] =
    "python3 -c '\n"
    "from multiprocessing import managers as mm\n"
    "l = []\n"
    "class M(mm.SyncManager): pass\n"
    "M.register(\"get_list\", callable=lambda: l, proxytype=mm.ListProxy)\n"
    "s = M(address=(\"127.0.0.1\", 0), authkey=b\"" KEY "\").get_server()\n"
    "print(s.address[1], flush=True)\n"
    "s.serve_forever()\n"
    "' 2>/dev/null";

typedef struct pctx {
    mp_list *l;
    const char *address;
    int len; /* 1: __len__, else append */
} pctx;

static int
c_calls(void *arg, uint64_t ops, bench_sample *out)
{
    pctx *c = arg;
    mp_item it = mp_item_int(1);
    bench_clock clk;
    bench_clock_start(&clk);
    for (uint64_t i = 0; i < ops; i++)
        if ((c->len ? (int)mp_list_len(c->l) : mp_list_append(c->l, &it)) < 0)
            return 1;
    bench_clock_stop(&clk, out);
    if (!c->len)
        mp_list_clear(c->l);
    return 0;
}

/* A Python client: connect, then time `ops` calls of the same method on the same list. The
 * interpreter's start-up stays outside the measurement; its CPU time is counted whole. */
static int
py_calls(void *arg, uint64_t ops, bench_sample *out)
{
    pctx *c = arg;
    char cmd[2048];
    const char *colon = strrchr(c->address, ':');
    snprintf(cmd, sizeof cmd,
             "python3 -c '\n"
             "import time\n"
             "from multiprocessing import managers as mm\n"
             "class M(mm.SyncManager): pass\n"
             "M.register(\"get_list\", proxytype=mm.ListProxy)\n"
             "m = M(address=(\"127.0.0.1\", %d), authkey=b\"" KEY "\"); m.connect()\n"
             "l = m.get_list(); l.__len__()\n"
             "t = time.perf_counter()\n"
             "for i in range(%llu): %s\n"
             "print(time.perf_counter() - t, time.process_time(), flush=True)\n"
             "%s\n"
             "' 2>/dev/null",
             atoi(colon + 1), (unsigned long long)ops, c->len ? "len(l)" : "l.append(1)",
             c->len ? "" : "del l[:]");
    bench_clock clk;
    bench_clock_start(&clk);
    fflush(NULL);
    FILE *p = popen(cmd, "r");
    double wall = 0, cpu = 0;
    int got = p != NULL ? fscanf(p, "%lf %lf", &wall, &cpu) : 0;
    if (p != NULL)
        pclose(p);
    if (got != 2 || wall <= 0)
        return 1;
    bench_clock_stop(&clk, out);
    out->wall_s = wall;
    out->cpu_s = cpu;
    return 0;
}

static void
shutdown_server(FILE *p, const char *address)
{
    mp_client_opts o = {.authkey = KEY, .authkey_len = strlen(KEY)};
    mp_conn *conn;
    if (mp_client_connect(&conn, address, &o, 10000) == 0) {
        static const uint8_t req[] = "\x80\x04(N\x8c\x08shutdown)}t.";
        void *buf;
        size_t n;
        if (mp_conn_send_bytes(conn, req, sizeof req - 1, 10000) == 0 &&
            mp_conn_recv_bytes(conn, &buf, &n, SIZE_MAX, 10000) == 0)
            mp_free(buf);
        mp_conn_close(conn);
    }
    pclose(p);
}

void
bench_suite_manager_proxy(const bench_config *cfg)
{
    bench_header("manager_proxy", "round trips/s to CPython's SyncManager server over loopback "
                                  "TCP, C's mp_list calls vs a Python ListProxy; target: ratio "
                                  ">= 1");
    fflush(NULL);
    FILE *p = popen(server_script, "r");
    int port;
    if (p == NULL || fscanf(p, "%d", &port) != 1) {
        if (p != NULL)
            pclose(p);
        printf("python3 not found: skipped\n");
        return;
    }
    char address[64];
    snprintf(address, sizeof address, "127.0.0.1:%d", port);
    mp_manager_connect_opts o = {.client = {.authkey = KEY, .authkey_len = strlen(KEY)}};
    mp_manager *m;
    pctx c = {.address = address};
    if (mp_manager_connect(&m, address, &o) != 0 || mp_manager_list(&c.l, m, "get_list") != 0) {
        printf("manager_proxy: set-up failed\n");
        shutdown_server(p, address);
        return;
    }
    static const char *const what[2] = {"list.append(1)", "len(list)"};
    uint64_t ops = bench_scaled(cfg, 10000);
    for (c.len = 0; c.len < 2; c.len++) {
        bench_stats mine = {0}, py = {0};
        bench_throughput(cfg, what[c.len], "mpipc (C)", c_calls, &c, ops, 0, &mine);
        bench_throughput(cfg, what[c.len], "CPython client", py_calls, &c, ops, 0, &py);
        /* The target is judged on pairs run back to back: the load drifts between rows. */
        if (mine.ops_s_median > 0 && py.ops_s_median > 0)
            bench_ratio(what[c.len], bench_paired_ratio(cfg, c_calls, &c, py_calls, &c, ops), 1.0,
                        1.0, 0);
    }
    mp_list_close(c.l);
    mp_manager_close(m);
    shutdown_server(p, address);
}
