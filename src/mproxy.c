/*
 * mproxy.c - the client of a Python manager (mp_manager_connect): connections, requests and
 * replies, reference counts, and the conversion of values between mp_item and pickle trees.
 *
 * The protocol is CPython's BaseProxy's. A control request (create, incref, decref, dummy)
 * goes on a new connection of its own, authenticated, one request and its reply, as
 * BaseManager._create and BaseProxy._incref/_decref do. Method calls go on serving
 * connections (the first request is accept_connection): CPython keeps one per thread; here a
 * process keeps a pool per connected manager, and a call takes an idle one or opens another,
 * so threads share handles and concurrent calls still run in parallel. A connection whose call
 * failed in transport (a timeout, the server gone) is closed rather than reused: a late reply
 * would otherwise answer the next call.
 *
 * fork(): the pool belongs to the process recorded in it. A child's first call closes its
 * copies of the parent's connections (never sending on them) and opens its own. A container
 * handle records the process holding its server reference; the first call in a child takes
 * the child's own (incref), as CPython's BaseProxy._after_fork does, so that the parent's
 * decref cannot free the object under the child. This is done lazily rather than at fork
 * time because the library runs nothing between fork() and the child's own code.
 */
#include "mproxy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 5000
#define MAX_REPLY ((size_t)1 << 30)

/* The globals a reply may name: the manager protocol's, the builtin exceptions a container
 * method may raise, and the proxies and Namespace of nested and copied containers. Nothing is
 * ever resolved; a reply naming anything else is reported as MP_EREMOTE. */
static const mp__pickle_global reply_globals[] = {
    {"multiprocessing.managers", "Token"},
    {"multiprocessing.managers", "RemoteError"},
    {"multiprocessing.managers", "RebuildProxy"},
    {"multiprocessing.managers", "AutoProxy"},
    {"multiprocessing.managers", "ListProxy"},
    {"multiprocessing.managers", "DictProxy"},
    {"multiprocessing.managers", "NamespaceProxy"},
    {"multiprocessing.managers", "Namespace"},
    {"builtins", "KeyError"},
    {"builtins", "IndexError"},
    {"builtins", "ValueError"},
    {"builtins", "TypeError"},
    {"builtins", "AttributeError"},
    {"builtins", "OverflowError"},
    {"builtins", "MemoryError"},
    {"builtins", "LookupError"},
    {"builtins", "ArithmeticError"},
    {"builtins", "ZeroDivisionError"},
    {"builtins", "RecursionError"},
    {"builtins", "NameError"},
    {"builtins", "NotImplementedError"},
    {"builtins", "AssertionError"},
    {"builtins", "RuntimeError"},
    {"builtins", "Exception"},
    {"builtins", "OSError"},
    {"builtins", "EOFError"},
    {"builtins", "TimeoutError"},
    {"builtins", "PermissionError"},
    {"builtins", "StopIteration"},
    {NULL, NULL},
};

/* ---- errors ---------------------------------------------------------------------------------- */

static _Thread_local char last_error[1024];

const char *
mp_manager_last_error(void)
{
    return last_error;
}

int
mp__rerror(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return err;
}

/* The code of an exception `name` raised by `method`, as the heap backend reports the same. */
static int
exception_code(const char *name, const char *method)
{
    static const struct {
        const char *name;
        int code;
    } map[] = {
        {"KeyError", -ENOENT},      {"AttributeError", -ENOENT}, {"IndexError", -ERANGE},
        {"OverflowError", -ERANGE}, {"TypeError", MP_ETYPE},     {"MemoryError", -ENOMEM},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i].name, name) == 0)
            return map[i].code;
    if (strcmp(name, "ValueError") == 0)
        return strcmp(method, "remove") == 0 || strcmp(method, "index") == 0 ? -ENOENT : -EINVAL;
    return MP_EREMOTE;
}

/* The result of a reply: 0 and the #RETURN value moved to *res, or the error it reports. */
static int
reply_result(mp__pv *reply, const char *method, mp__pv **res)
{
    const mp__pv *kind = mp__pv_item(reply, 0), *p = mp__pv_item(reply, 1);
    if (reply->kind != MP__PV_TUPLE || mp__pv_len(reply) != 2 || kind->kind != MP__PV_STR)
        return mp__rerror(-EPROTO, "a reply is (kind, result)");
    if (strcmp(kind->u.s.data, "#RETURN") == 0) {
        if (res != NULL) {
            *res = reply->u.seq.items[1];
            reply->u.seq.items[1] = NULL;
        }
        return 0;
    }
    if (strcmp(kind->u.s.data, "#ERROR") == 0) {
        if (p->kind != MP__PV_OBJECT || p->u.obj.callable->kind != MP__PV_GLOBAL)
            return mp__rerror(MP_EREMOTE, "%s: an exception that is not an object", method);
        const mp__pv *g = p->u.obj.callable, *a = mp__pv_item(p->u.obj.args, 0);
        int code = strcmp(g->u.g.module, "builtins") == 0 ? exception_code(g->u.g.name, method)
                                                          : MP_EREMOTE;
        if (a != NULL && a->kind == MP__PV_STR)
            return mp__rerror(code, "%s: %s", g->u.g.name, a->u.s.data);
        return mp__rerror(code, "%s", g->u.g.name);
    }
    if ((strcmp(kind->u.s.data, "#TRACEBACK") == 0 ||
         strcmp(kind->u.s.data, "#UNSERIALIZABLE") == 0) &&
        p->kind == MP__PV_STR)
        return mp__rerror(MP_EREMOTE, "%s", p->u.s.data);
    return mp__rerror(MP_EREMOTE, "%s: an unexpected %.20s reply", method, kind->u.s.data);
}

/* ---- connections ----------------------------------------------------------------------------- */

void
mp__rdeadline(const mp__rman *rm, mp__deadline *dl)
{
    mp__deadline_init(dl, rm->timeout_ms);
}

static int
ms_left(const mp__deadline *dl)
{
    return mp__deadline_remaining_ms(dl);
}

/* A transport failure as the documented codes: the server gone is -EPIPE. */
static int
transport_error(int r)
{
    switch (r) {
    case -EAGAIN:
        return -ETIMEDOUT;
    case MP_EOF:
    case -ECONNRESET:
    case -ECONNREFUSED:
    case -ENOENT:
    case -EPROTO:
    case -EPIPE:
        return -EPIPE;
    default:
        return r;
    }
}

/* Send a request and receive its reply on c. *broken: c's stream is no longer in step. */
static int
exchange(mp_conn *c, const mp__pv *req, mp__pv **reply, bool *broken, const mp__deadline *dl)
{
    uint8_t *buf;
    size_t len;
    int r = mp__pickle_dumps(req, 4, &buf, &len);
    if (r != 0)
        return r;
    r = mp_conn_send_bytes(c, buf, len, ms_left(dl));
    mp__free(buf);
    void *in = NULL;
    if (r == 0)
        r = mp_conn_recv_bytes(c, &in, &len, MAX_REPLY, ms_left(dl));
    if (r != 0) {
        *broken = true;
        return r == -ENOMEM ? r : transport_error(r);
    }
    mp__unpickle_opts uo = {.allow = reply_globals};
    r = mp__pickle_loads(reply, in, len, &uo);
    mp_free(in);
    if (r == -EPERM || r == -EPROTO || r == -E2BIG)
        return mp__rerror(MP_EREMOTE, "mpipc cannot read the reply (%s)",
                          r == -EPERM ? "it names a class outside the allow-list" : mp_strerror(r));
    return r;
}

static mp__pv *
request(const char *ident, const char *method, mp__pv *args, mp__pv *kwds)
{
    return mp__pv_tuple(4, ident != NULL ? mp__pv_cstr(ident) : mp__pv_none(), mp__pv_cstr(method),
                        args, kwds != NULL ? kwds : mp__pv_dict());
}

/* One request on connection c, its result in *res. Consumes args and kwds. */
static int
roundtrip(mp_conn *c, const char *ident, const char *method, mp__pv *args, mp__pv *kwds,
          mp__pv **res, bool *broken, const mp__deadline *dl)
{
    mp__pv *req = request(ident, method, args, kwds), *reply = NULL;
    if (req == NULL)
        return -ENOMEM;
    int r = exchange(c, req, &reply, broken, dl);
    mp__pv_free(req);
    if (r == 0)
        r = reply_result(reply, method, res);
    mp__pv_free(reply);
    return r;
}

static int
connect_(mp__rman *rm, mp_conn **c, const mp__deadline *dl)
{
    int r = mp_client_connect(c, rm->address, &rm->copts, ms_left(dl));
    return r == -EACCES || r == -ENOMEM || r == -EMFILE || r == -ENFILE ? r : transport_error(r);
}

/* A control request on a connection of its own (CPython's dispatch on a new Client). */
int
mp__rcontrol(mp__rman *rm, const char *method, mp__pv *args, mp__pv **res, const mp__deadline *dl)
{
    if (args == NULL)
        return -ENOMEM;
    mp_conn *c;
    int r = connect_(rm, &c, dl);
    if (r != 0) {
        mp__pv_free(args);
        return r;
    }
    bool broken = false;
    r = roundtrip(c, NULL, method, args, NULL, res, &broken, dl);
    mp_conn_close(c);
    return r;
}

/* Take an idle serving connection of this process, or open one. */
static int
conn_get(mp__rman *rm, mp_conn **out, const mp__deadline *dl)
{
    mp__pidlock_lock(&rm->lock);
    mp__fault("proxy.pool.locked");
    int r;
    pid_t me = getpid();
    if (rm->pid != me) {
        /* A forked child: the pool holds the parent's connections. Close this process's
         * copies of their fds; the parent's stay open and in step. */
        for (size_t i = 0; i < rm->nconns; i++)
            mp_conn_close(rm->conns[i].conn);
        rm->nconns = 0;
        rm->pid = me;
    }
    for (size_t i = 0; i < rm->nconns; i++)
        if (!rm->conns[i].busy) {
            rm->conns[i].busy = true;
            *out = rm->conns[i].conn;
            mp__pidlock_unlock(&rm->lock);
            return 0;
        }
    mp__pidlock_unlock(&rm->lock);
    mp_conn *c;
    if ((r = connect_(rm, &c, dl)) != 0)
        return r;
    char name[48];
    snprintf(name, sizeof name, "mpipc-%d", (int)me);
    bool broken = false;
    r = roundtrip(c, NULL, "accept_connection", mp__pv_tuple(1, mp__pv_cstr(name)), NULL, NULL,
                  &broken, dl);
    if (r == 0) {
        mp__pidlock_lock(&rm->lock);
        if (rm->nconns == rm->cap) {
            size_t cap = rm->cap != 0 ? 2 * rm->cap : 4;
            mp__rconn *n = mp__realloc(rm->conns, cap * sizeof *n);
            if (n != NULL) {
                rm->conns = n;
                rm->cap = cap;
            } else {
                r = -ENOMEM;
            }
        }
        if (r == 0)
            rm->conns[rm->nconns++] = (mp__rconn){c, true};
        mp__pidlock_unlock(&rm->lock);
    }
    if (r != 0) {
        mp_conn_close(c);
        return r;
    }
    *out = c;
    return 0;
}

/* Give a connection back to the pool, or close it when its stream is out of step. */
static void
conn_put(mp__rman *rm, mp_conn *c, bool broken)
{
    mp__pidlock_lock(&rm->lock);
    for (size_t i = 0; i < rm->nconns; i++)
        if (rm->conns[i].conn == c) {
            if (broken) {
                mp_conn_close(c);
                rm->conns[i] = rm->conns[--rm->nconns];
            } else {
                rm->conns[i].busy = false;
            }
            break;
        }
    mp__pidlock_unlock(&rm->lock);
}

/* ---- container handles --------------------------------------------------------------------- */

mp__pv *
mp__rident_args(const char *ident)
{
    return mp__pv_tuple(1, mp__pv_cstr(ident));
}

/* A handle on the object `ident` whose reference this process holds already. */
static mp__cont *
rcont_new(mp__rman *rm, const char *ident, uint32_t kind)
{
    mp__rcont *rc = mp__calloc(1, sizeof *rc);
    if (rc == NULL)
        return NULL;
    rc->c.be = &mp__remote_backend;
    rc->c.kind = kind;
    rc->c.off = strtoull(ident, NULL, 16);
    rc->rm = rm;
    snprintf(rc->ident, sizeof rc->ident, "%s", ident);
    atomic_store(&rc->pid, getpid());
    atomic_fetch_add(&rm->refs, 1);
    return &rc->c;
}

/* A handle for an object that holds a reference already; on failure the reference is
 * dropped again. */
int
mp__radopt(mp__rman *rm, const char *ident, uint32_t kind, mp__cont **out, const mp__deadline *dl)
{
    *out = rcont_new(rm, ident, kind);
    if (*out != NULL)
        return 0;
    mp__rcontrol(rm, "decref", mp__rident_args(ident), NULL, dl);
    return -ENOMEM;
}

void
mp__rcont_free(mp__cont *c)
{
    mp__rcont *rc = mp__rc(c);
    /* A handle inherited over fork and never used here holds no reference of this process. */
    if (atomic_load(&rc->pid) == getpid()) {
        mp__deadline dl;
        mp__rdeadline(rc->rm, &dl);
        mp__rcontrol(rc->rm, "decref", mp__rident_args(rc->ident), NULL, &dl);
    }
    mp__rman_unref(rc->rm);
    mp__free(rc);
}

int
mp__rcall(mp__rcont *rc, const char *method, mp__pv *args, mp__pv *kwds, mp__pv **res,
          const mp__deadline *dl)
{
    mp__rman *rm = rc->rm;
    pid_t me = getpid(), was = atomic_load(&rc->pid);
    int r = args != NULL ? 0 : -ENOMEM;
    if (r == 0 && was != me) {
        /* The first call in a forked child: take this process's own reference. Of two threads
         * racing here, the one that loses gives its extra reference back. */
        r = mp__rcontrol(rm, "incref", mp__rident_args(rc->ident), NULL, dl);
        if (r == 0 && !atomic_compare_exchange_strong(&rc->pid, &was, me))
            mp__rcontrol(rm, "decref", mp__rident_args(rc->ident), NULL, dl);
    }
    mp_conn *c = NULL;
    if (r == 0)
        r = conn_get(rm, &c, dl);
    if (r != 0) {
        mp__pv_free(args);
        mp__pv_free(kwds);
        return r;
    }
    bool broken = false;
    r = roundtrip(c, rc->ident, method, args, kwds, res, &broken, dl);
    conn_put(rm, c, broken);
    return r;
}

/* ---- the connected manager ------------------------------------------------------------------- */

void
mp__rman_unref(mp__rman *rm)
{
    if (rm == NULL || atomic_fetch_sub(&rm->refs, 1) != 1)
        return;
    /* In a forked child that never called, these are its copies of the parent's fds. */
    for (size_t i = 0; i < rm->nconns; i++)
        mp_conn_close(rm->conns[i].conn);
    mp__free(rm->conns);
    mp__free(rm->address);
    mp__free((void *)rm->copts.authkey);
    mp__pv_free(rm->token_addr);
    mp__free(rm);
}

const char *
mp__rman_address(const mp__rman *rm)
{
    return rm->address;
}

int
mp__rman_connect(mp__rman **out, const char *address, const mp_manager_connect_opts *opts)
{
    mp__deadline dl;
    int timeout = opts->timeout_ms != 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    if (opts->client.authkey == NULL || mp__deadline_init(&dl, timeout) != 0)
        return -EINVAL;
    mp__rman *rm = mp__calloc(1, sizeof *rm);
    if (rm == NULL)
        return -ENOMEM;
    atomic_store(&rm->refs, 1);
    rm->pid = getpid();
    rm->timeout_ms = timeout;
    rm->copts = opts->client;
    void *key = mp__malloc(opts->client.authkey_len + 1);
    rm->copts.authkey = key;
    rm->address = mp__strdup(address);
    rm->token_addr = mp__token_address(address);
    if (key == NULL || rm->address == NULL || rm->token_addr == NULL) {
        mp__rman_unref(rm);
        return -ENOMEM;
    }
    memcpy(key, opts->client.authkey, opts->client.authkey_len);
    /* Python's connect(): one 'dummy' request proves the address and the key. Failures to
     * connect are mp_client_connect's own codes here. */
    mp_conn *c;
    int r = mp_client_connect(&c, rm->address, &rm->copts, ms_left(&dl));
    if (r == 0) {
        bool broken = false;
        r = roundtrip(c, NULL, "dummy", mp__pv_tuple(0), NULL, NULL, &broken, &dl);
        mp_conn_close(c);
    }
    if (r != 0) {
        mp__rman_unref(rm);
        return r == -EAGAIN ? -ETIMEDOUT : r;
    }
    *out = rm;
    return 0;
}

int
mp_manager_connect(mp_manager **out, const char *address, const mp_manager_connect_opts *opts)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    if (address == NULL || opts == NULL)
        return -EINVAL;
    mp_manager *m = mp__calloc(1, sizeof *m);
    if (m == NULL)
        return -ENOMEM;
    m->be = &mp__remote_backend;
    m->evfd = m->mgr_pidfd = -1;
    int r = mp__rman_connect(&m->rm, address, opts);
    if (r != 0) {
        mp__free(m);
        return r;
    }
    *out = m;
    return 0;
}
