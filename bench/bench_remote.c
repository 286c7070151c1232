/*
 * bench_remote.c - the served manager (CPython's manager protocol): method calls per second
 * from one client over loopback TCP. The same C client (a serving connection, one request and
 * its reply at a time, the request pickled as Python pickles it) runs against the mpipc manager
 * and against CPython's own SyncManager server (python3, started in the same session), so the
 * ratio compares the servers. Target: the mpipc server no slower than CPython's (ratio >= 1).
 */
#define _GNU_SOURCE
#include "bench.h"
#include "internal.h"
#include "pickle.h"

#include <mpipc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY "bench key"

typedef struct rctx {
    mp_conn *conn;
    uint8_t *req; /* the pickled request, sent again and again */
    size_t len;
} rctx;

/* One round trip per operation: send the request, read the reply. */
static int
round_trips(void *arg, uint64_t ops, bench_sample *out)
{
    rctx *c = arg;
    bench_clock clk;
    bench_clock_start(&clk);
    for (uint64_t i = 0; i < ops; i++) {
        void *buf;
        size_t len;
        if (mp_conn_send_bytes(c->conn, c->req, c->len, 10000) != 0 ||
            mp_conn_recv_bytes(c->conn, &buf, &len, SIZE_MAX, 10000) != 0)
            return 1;
        bool ok = len > 14 && memmem(buf, len, "#RETURN", 7) != NULL;
        mp_free(buf);
        if (!ok)
            return 1;
    }
    bench_clock_stop(&clk, out);
    return 0;
}

/* Connect, make it a serving connection and pickle (ident, method, (1,), {}). */
static int
client_open(rctx *c, const char *address, const char *ident, const char *method, bool arg)
{
    mp_client_opts o = {.authkey = KEY, .authkey_len = strlen(KEY)};
    if (mp_client_connect(&c->conn, address, &o, 10000) != 0)
        return -1;
    mp__pv *acc = mp__pv_tuple(4, mp__pv_none(), mp__pv_cstr("accept_connection"),
                               mp__pv_tuple(1, mp__pv_cstr("bench")), mp__pv_dict());
    mp__pv *req =
        mp__pv_tuple(4, mp__pv_cstr(ident), mp__pv_cstr(method),
                     arg ? mp__pv_tuple(1, mp__pv_int(1)) : mp__pv_tuple(0), mp__pv_dict());
    uint8_t *b = NULL;
    size_t n;
    void *reply = NULL;
    int r = acc != NULL && req != NULL && mp__pickle_dumps(acc, 4, &b, &n) == 0 &&
                    mp_conn_send_bytes(c->conn, b, n, 10000) == 0 &&
                    mp_conn_recv_bytes(c->conn, &reply, &n, SIZE_MAX, 10000) == 0 &&
                    mp__pickle_dumps(req, 4, &c->req, &c->len) == 0
                ? 0
                : -1;
    mp__free(b);
    mp_free(reply);
    mp__pv_free(acc);
    mp__pv_free(req);
    if (r != 0)
        mp_conn_close(c->conn);
    return r;
}

static void
client_close(rctx *c)
{
    mp_conn_close(c->conn);
    mp__free(c->req);
}

/* Both calls on one server: the list's append(1) and __len__() rates. */
static void
measure(const bench_config *cfg, const char *impl, const char *address, const char *ident,
        double rates[2])
{
    static const char *const methods[2] = {"append", "__len__"};
    rates[0] = rates[1] = 0;
    for (int k = 0; k < 2; k++) {
        rctx c;
        bench_stats st;
        char what[64];
        snprintf(what, sizeof what, "list.%s() over TCP", methods[k]);
        if (client_open(&c, address, ident, methods[k], k == 0) != 0) {
            printf("%s: cannot connect to %s\n", impl, address);
            return;
        }
        if (bench_throughput(cfg, what, impl, round_trips, &c, bench_scaled(cfg, 20000), 0, &st) ==
            0)
            rates[k] = st.ops_s_median;
        client_close(&c);
    }
}

/* The control request `create(typeid)`: the new object's ident into id. */
static int
create_ident(const char *address, const char *typeid, char *id, size_t cap)
{
    mp_client_opts o = {.authkey = KEY, .authkey_len = strlen(KEY)};
    mp_conn *conn;
    if (mp_client_connect(&conn, address, &o, 10000) != 0)
        return -1;
    mp__pv *req = mp__pv_tuple(4, mp__pv_none(), mp__pv_cstr("create"),
                               mp__pv_tuple(1, mp__pv_cstr(typeid)), mp__pv_dict());
    uint8_t *b = NULL;
    void *buf = NULL;
    size_t n;
    mp__pv *v = NULL;
    mp__unpickle_opts uo = {.allow = mp__pickle_manager_globals};
    int r = req != NULL && mp__pickle_dumps(req, 4, &b, &n) == 0 &&
                    mp_conn_send_bytes(conn, b, n, 10000) == 0 &&
                    mp_conn_recv_bytes(conn, &buf, &n, SIZE_MAX, 10000) == 0 &&
                    mp__pickle_loads(&v, buf, n, &uo) == 0
                ? 0
                : -1;
    const mp__pv *ident = mp__pv_item(mp__pv_item(v, 1), 0);
    if (r == 0 && ident != NULL && ident->kind == MP__PV_STR)
        snprintf(id, cap, "%s", ident->u.s.data);
    else
        r = -1;
    mp__pv_free(v);
    mp__pv_free(req);
    mp__free(b);
    mp_free(buf);
    mp_conn_close(conn);
    return r;
}

/* CPython's SyncManager server with one list: it prints its port and the list's ident, and
 * serves until a client sends `shutdown`. */
static FILE *
python_server(char *address, size_t cap, char *ident, size_t icap)
{
    static const char script[] =
        "python3 -c '\n"
        "from multiprocessing.managers import SyncManager\n"
        "s = SyncManager(address=(\"127.0.0.1\", 0), authkey=b\"" KEY "\").get_server()\n"
        "ident, _ = s.create(None, \"list\")\n"
        "print(s.address[1], ident, flush=True)\n"
        "s.serve_forever()\n"
        "' 2>/dev/null";
    fflush(NULL);
    FILE *p = popen(script, "r");
    int port;
    char id[64];
    if (p == NULL)
        return NULL;
    if (fscanf(p, "%d %63s", &port, id) != 2) {
        pclose(p);
        return NULL;
    }
    snprintf(address, cap, "127.0.0.1:%d", port);
    snprintf(ident, icap, "%s", id);
    return p;
}

static void
python_shutdown(FILE *p, const char *address)
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
bench_suite_remote_manager(const bench_config *cfg)
{
    bench_header("remote_manager", "method calls/s from one C client over loopback TCP, "
                                   "mpipc's served manager vs CPython's SyncManager server; "
                                   "target: ratio >= 1");
    mp_listener_opts lo = {.authkey = KEY, .authkey_len = strlen(KEY)};
    mp_manager_opts mo = {.address = "127.0.0.1:0", .listener = &lo};
    mp_manager *m;
    mp_list *l;
    if (mp_manager_open(&m, &mo) != 0) {
        printf("remote_manager: set-up failed\n");
        return;
    }
    double mine[2] = {0}, py[2] = {0};
    char ident[64], address[64];
    if (mp_list_open(&l, m, NULL, 0) == 0) {
        mp_item it = mp_item_list(l);
        if (mp_manager_register(m, "bench_list", &it) == 0 &&
            create_ident(mp_manager_address(m), "bench_list", ident, sizeof ident) == 0)
            measure(cfg, "mpipc", mp_manager_address(m), ident, mine);
        mp_list_close(l);
    }
    mp_manager_close(m);
    FILE *p = python_server(address, sizeof address, ident, sizeof ident);
    if (p == NULL) {
        printf("python3 not found: no Python baseline this run\n");
        return;
    }
    measure(cfg, "CPython SyncManager", address, ident, py);
    python_shutdown(p, address);
    if (mine[0] > 0 && py[0] > 0) {
        bench_ratio("list.append() round trips, mpipc vs CPython server", mine[0], py[0], 1.0, 0);
        bench_ratio("list.__len__() round trips, mpipc vs CPython server", mine[1], py[1], 1.0, 0);
    }
}
