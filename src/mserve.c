/*
 * mserve.c - the manager process serving CPython's manager protocol (contract §2.6).
 *
 * One process, one poll() loop over the listener, every client connection, the shutdown
 * eventfd and the owner's pidfd. Python's server runs a thread per connection; here every
 * client socket is read and written without blocking: a request is gathered into the client's
 * buffer as its bytes arrive and answered once complete, and a reply the client does not read
 * waits in its output buffer (the client's next request is read only after it has gone). So a
 * client that stalls mid-frame, or stops reading, holds up no one. The one bounded wait is the
 * authkey handshake of a new connection (mp_listener_accept, at most the listener's handshake
 * timeout, 2 s by default here).
 *
 * The containers live in the shared heap, so a container a Python client creates is an
 * ordinary heap container: the table here only maps CPython's idents (the container's heap
 * offset in hex, as CPython uses '%x' % id(obj)) to a handle and the proxies' reference count.
 * At count 0 the entry goes; the container itself stays in the heap until the manager goes,
 * as every container does.
 *
 * This process was forked, possibly from a threaded owner: it allocates through glibc's malloc,
 * which glibc's fork() leaves usable in the child, and takes no lock another thread could hold
 * (the heap's locks are robust and process-shared).
 */
#include "mserve.h"

#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_REQUEST ((size_t)64 << 20) /* a larger request closes the connection */
#define MAX_CONNS 1000
#define ACCEPT_BACKOFF_MS 100 /* out of fds: how long the listener is left alone */

typedef struct obj {
    uint64_t off;
    mp__cont *c;
    long refs;
} obj;

typedef struct client {
    mp_conn *conn;
    int fd;
    bool serving; /* after accept_connection: any number of method calls */
    bool last;    /* close once the reply has gone (a control request's connection) */
    bool stop;    /* stop serving once the reply has gone (a shutdown request) */
    uint8_t hdr[12];
    size_t hlen; /* header bytes received */
    uint8_t *in; /* the request payload being received */
    size_t need, got, cap;
    uint8_t *out; /* the framed reply still to send */
    size_t outlen, outoff;
} client;

struct mp__server {
    mp__heap *h;
    mp_listener *l;
    mp__cont *reg; /* the registered typeids: a dict of str to container */
    mp__pv *addr;  /* the address in a Token: (host, port) or the AF_UNIX path; None unserved */
    obj *objs;
    size_t nobjs, capobjs;
    client cl[MAX_CONNS];
    size_t ncl;
    bool stop;
};
typedef struct mp__server server;

const mp__pickle_global mp__serve_request_globals[] = {
    {"multiprocessing.managers", "Token"},
    {"multiprocessing.managers", "RebuildProxy"},
    {"multiprocessing.managers", "AutoProxy"},
    {"multiprocessing.managers", "ListProxy"},
    {"multiprocessing.managers", "DictProxy"},
    {"multiprocessing.managers", "NamespaceProxy"},
    {"builtins", "slice"},
    {NULL, NULL},
};

/* ---- the object table ------------------------------------------------------------------------ */

static obj *
find_obj(server *s, const mp__pv *ident)
{
    if (ident == NULL || ident->kind != MP__PV_STR || ident->u.s.len == 0 || ident->u.s.len > 16)
        return NULL;
    uint64_t off = 0;
    for (size_t i = 0; i < ident->u.s.len; i++) {
        char ch = ident->u.s.data[i];
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (d < 0)
            return NULL;
        off = off << 4 | (uint64_t)d;
    }
    for (size_t i = 0; i < s->nobjs; i++)
        if (s->objs[i].off == off)
            return &s->objs[i];
    return NULL;
}

/* Add a reference to the container at off, making its entry if needed. */
static obj *
ref_obj(server *s, uint64_t off, uint32_t kind)
{
    for (size_t i = 0; i < s->nobjs; i++)
        if (s->objs[i].off == off) {
            s->objs[i].refs++;
            return &s->objs[i];
        }
    if (s->nobjs == s->capobjs) {
        size_t cap = s->capobjs != 0 ? 2 * s->capobjs : 16;
        obj *n = mp__realloc(s->objs, cap * sizeof *n);
        if (n == NULL)
            return NULL;
        s->objs = n;
        s->capobjs = cap;
    }
    mp__cont *c = mp__cont_new(s->h, off, kind);
    if (c == NULL)
        return NULL;
    s->objs[s->nobjs] = (obj){off, c, 1};
    return &s->objs[s->nobjs++];
}

static void
unref_obj(server *s, obj *o)
{
    if (--o->refs > 0)
        return;
    mp__cont_free(o->c);
    *o = s->objs[--s->nobjs];
}

static mp__pv *
ident_pv(const obj *o)
{
    char id[24];
    snprintf(id, sizeof id, "%" PRIx64, o->off);
    return mp__pv_cstr(id);
}

static mp__pv *
no_ident(const mp__pv *ident)
{
    return mp__serve_traceback("KeyError", "'%.40s'",
                               ident != NULL && ident->kind == MP__PV_STR ? ident->u.s.data
                                                                          : "None");
}

/* ---- proxies on the wire: the server's and the client's (mproxy*.c) ---------------------- */

const char *const mp__kind_typeid[MP__KIND_NS + 1] = {
    [MP__KIND_LIST] = "list", [MP__KIND_DICT] = "dict", [MP__KIND_NS] = "Namespace"};
const char *const mp__kind_proxy[MP__KIND_NS + 1] = {
    [MP__KIND_LIST] = "ListProxy", [MP__KIND_DICT] = "DictProxy", [MP__KIND_NS] = "NamespaceProxy"};

mp__pv *
mp__scalar_pv(const mp_item *it)
{
    switch (it->type) {
    case MP_ITEM_NONE:
        return mp__pv_none();
    case MP_ITEM_BOOL:
        return mp__pv_bool(it->v.b);
    case MP_ITEM_INT:
        return mp__pv_int(it->v.i);
    case MP_ITEM_FLOAT:
        return mp__pv_float(it->v.f);
    case MP_ITEM_STR:
        return mp__pv_str(it->v.s.ptr, it->v.s.len);
    case MP_ITEM_BYTES:
        return mp__pv_bytes(it->v.s.ptr, it->v.s.len);
    default:
        return NULL;
    }
}

mp__pv *
mp__proxy_pv(uint32_t kind, mp__pv *address, mp__pv *ident)
{
    mp__pv *state = mp__pv_tuple(3, mp__pv_cstr(mp__kind_typeid[kind]), address, ident);
    /* A NULL state means "no BUILD" to mp__pv_object: out of memory must not make a Token
     * without one. */
    if (state == NULL)
        return NULL;
    mp__pv *token = mp__pv_object(mp__pv_global("multiprocessing.managers", "Token"),
                                  mp__pv_tuple(0), state, true);
    return mp__pv_object(
        mp__pv_global("multiprocessing.managers", "RebuildProxy"),
        mp__pv_tuple(4, mp__pv_global("multiprocessing.managers", mp__kind_proxy[kind]), token,
                     mp__pv_cstr("pickle"), mp__pv_dict()),
        NULL, false);
}

const mp__pv *
mp__token_ident(const mp__pv *t)
{
    if (!mp__pv_is_global(t, "multiprocessing.managers", "Token") || t->kind != MP__PV_OBJECT ||
        t->u.obj.state == NULL || t->u.obj.state->kind != MP__PV_TUPLE ||
        mp__pv_len(t->u.obj.state) != 3)
        return NULL;
    return mp__pv_item(t->u.obj.state, 2);
}

const mp__pv *
mp__proxy_parse(const mp__pv *v, uint32_t *kind)
{
    *kind = 0;
    if (!mp__pv_is_global(v, "multiprocessing.managers", "RebuildProxy") ||
        v->kind != MP__PV_OBJECT || mp__pv_len(v->u.obj.args) < 2)
        return NULL;
    const mp__pv *cls = mp__pv_item(v->u.obj.args, 0), *t = mp__pv_item(v->u.obj.args, 1);
    const mp__pv *ident = mp__token_ident(t);
    if (ident == NULL)
        return NULL;
    const mp__pv *tid = mp__pv_item(t->u.obj.state, 0);
    for (uint32_t k = MP__KIND_LIST; k <= MP__KIND_NS; k++)
        if (mp__pv_is_global(cls, "multiprocessing.managers", mp__kind_proxy[k]) ||
            (mp__pv_is_global(cls, "multiprocessing.managers", "AutoProxy") &&
             mp__pv_is_str(tid, mp__kind_typeid[k])))
            *kind = k;
    return ident;
}

/* ---- nested containers travel as proxies ----------------------------------------------------- */

mp__cont *
mp__server_proxy_cont(server *s, const mp__pv *v)
{
    uint32_t kind;
    obj *o = s != NULL ? find_obj(s, mp__proxy_parse(v, &kind)) : NULL;
    return o != NULL ? o->c : NULL;
}

mp__pv *
mp__server_proxy(server *s, const mp__cont *c)
{
    /* The entry starts with no reference: the client's proxy increfs it when it is built and
     * decrefs it when it goes, as with CPython's nested proxies. */
    obj *o = ref_obj(s, c->off, c->kind);
    if (o == NULL)
        return NULL;
    o->refs--;
    return mp__proxy_pv(c->kind, mp__pv_copy(s->addr), ident_pv(o));
}

/* The Token address of a listener address: (host, port) for TCP, the path for AF_UNIX. */
mp__pv *
mp__token_address(const char *a)
{
    const char *colon = strrchr(a, ':');
    if (strchr(a, '/') != NULL || colon == NULL)
        return mp__pv_cstr(a);
    size_t hl = (size_t)(colon - a);
    if (a[0] == '[' && hl >= 2 && a[hl - 1] == ']') {
        a++;
        hl -= 2;
    }
    return mp__pv_tuple(2, mp__pv_str(a, hl), mp__pv_int(strtol(colon + 1, NULL, 10)));
}

/* ---- control requests (a connection's first message) ----------------------------------------- */

/* A control request reports a failure as #TRACEBACK text, as CPython's handler formats the
 * exception a method call would have sent as #ERROR. Consumes r. */
static mp__pv *
as_traceback(mp__pv *r)
{
    const mp__pv *exc = mp__pv_item(r, 1);
    if (r == NULL || !mp__pv_is_str(mp__pv_item(r, 0), "#ERROR") || exc->kind != MP__PV_OBJECT)
        return r;
    const mp__pv *msg = mp__pv_item(exc->u.obj.args, 0);
    mp__pv *t = mp__serve_traceback(exc->u.obj.callable->u.g.name, "%.300s",
                                    msg != NULL && msg->kind == MP__PV_STR ? msg->u.s.data : "");
    mp__pv_free(r);
    return t;
}

/* create(typeid, *args, **kwds): a registered typeid gives its container, "list", "dict" and
 * "Namespace" a new one. The entry starts with one reference, the caller's. */
static mp__pv *
create(server *s, const mp__pv *args, const mp__pv *kwds)
{
    const mp__pv *tid = mp__pv_item(args, 0);
    if (tid == NULL || tid->kind != MP__PV_STR)
        return mp__serve_traceback("TypeError", "create() needs a typeid");
    uint64_t off = 0;
    uint32_t kind = 0;
    mp_item key = {.type = MP_ITEM_STR, .v.s = {tid->u.s.data, tid->u.s.len}}, found;
    if (mp__shdict_get(s->reg, &key, NULL, &found) == 0) {
        if (mp__pv_len(args) > 1 || mp__pv_len(kwds) > 0) {
            mp_item_clear(&found);
            return mp__serve_traceback("TypeError", "%.100s() takes no arguments", tid->u.s.data);
        }
        mp__cont *c = (mp__cont *)found.v.list;
        off = c->off;
        kind = c->kind;
        mp_item_clear(&found);
    } else if ((kind = mp__serve_kind(tid->u.s.data)) == 0) {
        return mp__serve_traceback("KeyError", "'%.100s'", tid->u.s.data);
    }
    mp__pv *r = NULL;
    if (off == 0) {
        int e;
        if (kind == MP__KIND_LIST) {
            mp_item *items = NULL;
            size_t n = 0;
            if (mp__pv_len(kwds) > 0 || mp__pv_len(args) > 2)
                return mp__serve_traceback("TypeError", "list() takes at most 1 argument");
            if (mp__pv_len(args) == 2 &&
                !mp__serve_items(s, mp__pv_item(args, 1), &items, &n, &r)) {
                if (r == NULL)
                    return NULL;
                mp__pv_free(r);
                return mp__serve_traceback("TypeError", "list() takes a list or tuple of None, "
                                                        "bool, int, float, str or bytes");
            }
            e = mp__shlist_create(s->h, items, n, &off);
            mp__free(items);
        } else {
            if (kind == MP__KIND_NS && mp__pv_len(args) > 1)
                return mp__serve_traceback("TypeError", "Namespace() takes keyword arguments only");
            e = mp__shdict_create(s->h, kind, &off);
        }
        if (e != 0)
            return mp__serve_traceback("MemoryError", "%s", mp_strerror(e));
    }
    obj *o = ref_obj(s, off, kind);
    if (o == NULL)
        return NULL;
    if (o->refs == 1 && kind != MP__KIND_LIST && (mp__pv_len(args) > 1 || mp__pv_len(kwds) > 0)) {
        r = mp__serve_init(s, o->c, args, 1, kwds);
        if (r == NULL || !mp__pv_is_str(mp__pv_item(r, 0), "#RETURN")) {
            unref_obj(s, o);
            return as_traceback(r);
        }
        mp__pv_free(r);
    }
    mp__pv *ident = ident_pv(o);
    return mp__serve_reply("#RETURN", mp__pv_tuple(2, ident, mp__serve_exposed(kind)));
}

static mp__pv *
debug_info(server *s)
{
    size_t cap = 64 + s->nobjs * 64, at = 0;
    char *text = mp__malloc(cap);
    if (text == NULL)
        return NULL;
    text[0] = '\0';
    for (size_t i = 0; i < s->nobjs && at < cap; i++)
        at += (size_t)snprintf(text + at, cap - at, "%s  %" PRIx64 ":       refcount=%ld",
                               i > 0 ? "\n" : "", s->objs[i].off, s->objs[i].refs);
    mp__pv *r = mp__serve_reply("#RETURN", mp__pv_cstr(text));
    mp__free(text);
    return r;
}

/* Answer a control request; *keep is set when the connection becomes a serving one. */
static mp__pv *
control(server *s, const char *method, const mp__pv *args, const mp__pv *kwds, bool *keep,
        bool *stop)
{
    const mp__pv *a0 = mp__pv_item(args, 0);
    size_t na = mp__pv_len(args);
    if (strcmp(method, "create") == 0)
        return create(s, args, kwds);
    if (mp__pv_len(kwds) > 0)
        return mp__serve_traceback("TypeError", "%.100s() got an unexpected keyword argument",
                                   method);
    if (strcmp(method, "dummy") == 0 && na == 0)
        return mp__serve_reply("#RETURN", mp__pv_none());
    if (strcmp(method, "accept_connection") == 0 && na == 1) {
        *keep = true;
        return mp__serve_reply("#RETURN", mp__pv_none());
    }
    if ((strcmp(method, "incref") == 0 || strcmp(method, "decref") == 0) && na == 1) {
        obj *o = find_obj(s, a0);
        if (o == NULL)
            return no_ident(a0);
        if (method[0] == 'i')
            o->refs++;
        else if (o->refs <= 0)
            return mp__serve_traceback("AssertionError", "Id %.40s has refcount 0, not 1+",
                                       a0->u.s.data);
        else
            unref_obj(s, o);
        return mp__serve_reply("#RETURN", mp__pv_none());
    }
    if (strcmp(method, "number_of_objects") == 0 && na == 0) {
        int64_t n = 0;
        for (size_t i = 0; i < s->nobjs; i++)
            n += s->objs[i].refs > 0;
        return mp__serve_reply("#RETURN", mp__pv_int(n));
    }
    if (strcmp(method, "debug_info") == 0 && na == 0)
        return debug_info(s);
    if (strcmp(method, "get_methods") == 0 && na == 1) {
        const mp__pv *id = mp__token_ident(a0);
        obj *o = find_obj(s, id);
        return o != NULL ? mp__serve_reply("#RETURN", mp__serve_exposed(o->c->kind)) : no_ident(id);
    }
    if (strcmp(method, "shutdown") == 0 && na == 0) {
        *stop = true;
        return mp__serve_reply("#RETURN", mp__pv_none());
    }
    bool known = false;
    static const char *const pub[] = {"create",     "dummy",       "accept_connection",
                                      "incref",     "decref",      "number_of_objects",
                                      "debug_info", "get_methods", "shutdown"};
    for (size_t i = 0; i < sizeof pub / sizeof pub[0]; i++)
        known = known || strcmp(pub[i], method) == 0;
    if (known)
        return mp__serve_traceback("TypeError", "%.100s() got %zu positional arguments", method,
                                   na);
    return mp__serve_traceback("AssertionError", "'%.100s' unrecognized", method);
}

/* ---- connections ----------------------------------------------------------------------------- */

/* Append the framed pickle of reply to the client's output. */
static int
queue_reply(client *c, const mp__pv *reply)
{
    uint8_t *buf, hdr[12];
    size_t len;
    int r = mp__pickle_dumps(reply, 4, &buf, &len);
    if (r != 0)
        return r;
    size_t h = mp__conn_header(len, hdr);
    uint8_t *out = mp__realloc(c->out, c->outlen + h + len);
    if (out == NULL) {
        mp__free(buf);
        return -ENOMEM;
    }
    memcpy(out + c->outlen, hdr, h);
    memcpy(out + c->outlen + h, buf, len);
    c->out = out;
    c->outlen += h + len;
    mp__free(buf);
    return 0;
}

mp__pv *
mp__server_answer(server *s, const void *buf, size_t len, bool *serving, bool *stop)
{
    mp__pv *req = NULL, *reply = NULL;
    mp__unpickle_opts uo = {.allow = mp__serve_request_globals, .limits = {.max_depth = 100}};
    int r = mp__pickle_loads(&req, buf, len, &uo);
    const mp__pv *ident = mp__pv_item(req, 0), *method = mp__pv_item(req, 1),
                 *args = mp__pv_item(req, 2), *kwds = mp__pv_item(req, 3);
    bool keep = *serving;
    if (r != 0)
        reply =
            mp__serve_traceback("_pickle.UnpicklingError", "mpipc refused the request: %s",
                                r == -EPERM ? "a global outside the allow-list" : mp_strerror(r));
    else if (req->kind != MP__PV_TUPLE || mp__pv_len(req) != 4 || method->kind != MP__PV_STR ||
             args->kind != MP__PV_TUPLE || kwds->kind != MP__PV_DICT)
        reply = mp__serve_traceback(
            "ValueError", "a request is (ident, methodname: str, args: tuple, kwds: dict)");
    else if (!*serving)
        reply = control(s, method->u.s.data, args, kwds, &keep, stop);
    else {
        obj *o = find_obj(s, ident);
        reply = o != NULL ? mp__serve_call(s, o->c, method->u.s.data, args, kwds) : no_ident(ident);
    }
    mp__pv_free(req);
    *serving = keep;
    return reply;
}

/* Answer the complete request in c->in. False: drop the client now (no memory for a reply). */
static bool
answer(server *s, client *c)
{
    bool serving = c->serving;
    mp__pv *reply = mp__server_answer(s, c->in, c->need, &serving, &c->stop);
    mp__free(c->in);
    c->in = NULL;
    c->hlen = c->need = c->got = c->cap = 0;
    bool ok = reply != NULL && queue_reply(c, reply) == 0;
    /* CPython's shutdown() replies itself, then the generic handler replies again. */
    if (ok && c->stop)
        ok = queue_reply(c, reply) == 0;
    mp__pv_free(reply);
    c->serving = serving;
    c->last = !serving;
    return ok;
}

/* Receive what has arrived; answer a request once it is complete. False: drop the client (EOF,
 * a bad header, an oversized request, out of memory). */
static bool
on_readable(server *s, client *c)
{
    while (c->out == NULL) {
        uint8_t *dst;
        size_t want;
        if (c->in == NULL) {
            want = (c->hlen < 4 ? 4 : 12) - c->hlen;
            dst = c->hdr + c->hlen;
        } else {
            if (c->got == c->cap) {
                size_t cap = c->cap * 2 < c->need ? c->cap * 2 : c->need;
                uint8_t *n = mp__realloc(c->in, cap);
                if (n == NULL)
                    return false;
                c->in = n;
                c->cap = cap;
            }
            want = c->cap - c->got;
            dst = c->in + c->got;
        }
        ssize_t n = want > 0 ? recv(c->fd, dst, want, MSG_DONTWAIT) : 0;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        if (n <= 0 && want > 0)
            return false;
        if (c->in == NULL) {
            c->hlen += (size_t)n;
            if (c->hlen < 4)
                continue;
            int32_t h = (int32_t)((uint32_t)c->hdr[0] << 24 | (uint32_t)c->hdr[1] << 16 |
                                  (uint32_t)c->hdr[2] << 8 | c->hdr[3]);
            uint64_t size = (uint64_t)h;
            if (h == -1) {
                if (c->hlen < 12)
                    continue;
                size = 0;
                for (int i = 4; i < 12; i++)
                    size = size << 8 | c->hdr[i];
            } else if (h < 0) {
                return false;
            }
            if (size > MAX_REQUEST)
                return false;
            c->need = (size_t)size;
            c->cap = c->need < 65536 ? c->need : 65536;
            c->in = mp__malloc(c->cap > 0 ? c->cap : 1);
            if (c->in == NULL)
                return false;
        } else {
            c->got += (size_t)n;
        }
        if (c->in != NULL && c->got == c->need && !answer(s, c))
            return false;
    }
    return true;
}

/* Send what the client's output holds. False: drop the client (an error, or the reply of a
 * control request has gone). */
static bool
on_writable(server *s, client *c)
{
    while (c->outoff < c->outlen) {
        ssize_t n =
            send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        if (n < 0)
            return false;
        c->outoff += (size_t)n;
    }
    mp__free(c->out);
    c->out = NULL;
    c->outlen = c->outoff = 0;
    if (c->stop)
        s->stop = true;
    return !c->last;
}

static void
drop(client *c)
{
    mp_conn_close(c->conn);
    mp__free(c->in);
    mp__free(c->out);
}

/* accept_all - accept every pending client. Returns true when it had to stop for want of fds
 * or memory, leaving a connection pending. */
static bool
accept_all(server *s)
{
    for (;;) {
        mp_conn *conn;
        int r = mp_listener_accept(s->l, &conn, MP_NOWAIT);
        if (r == -EAGAIN)
            return false;
        if (r == -EMFILE || r == -ENFILE || r == -ENOMEM)
            return true;
        if (r != 0)
            continue; /* a failed handshake (a wrong key, a client gone): next one */
        if (s->ncl == MAX_CONNS) {
            mp_conn_close(conn);
            continue;
        }
        s->cl[s->ncl++] = (client){.conn = conn, .fd = mp_conn_fileno(conn)};
    }
}

server *
mp__server_new(mp__heap *h, uint64_t registry, const char *address)
{
    server *s = mp__calloc(1, sizeof *s);
    mp__cont *reg = s != NULL ? mp__cont_new(h, registry, MP__KIND_DICT) : NULL;
    mp__pv *addr = address != NULL ? mp__token_address(address) : mp__pv_none();
    if (reg == NULL || addr == NULL) {
        mp__cont_free(reg);
        mp__pv_free(addr);
        mp__free(s);
        return NULL;
    }
    s->addr = addr;
    s->h = h;
    s->reg = reg;
    return s;
}

void
mp__server_free(server *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->ncl; i++)
        drop(&s->cl[i]);
    for (size_t i = 0; i < s->nobjs; i++)
        mp__cont_free(s->objs[i].c);
    mp__free(s->objs);
    mp__cont_free(s->reg);
    mp__pv_free(s->addr);
    mp__free(s);
}

void
mp__serve(mp__heap *h, mp_listener *l, uint64_t registry, int evfd, int owner_pidfd, pid_t owner)
{
    server *s = mp__server_new(h, registry, mp_listener_address(l));
    if (s == NULL)
        return;
    s->l = l;
    struct pollfd *p = mp__calloc(MAX_CONNS + 3, sizeof *p);
    /* Out of fds, a pending connection keeps the listener readable although it cannot be
     * accepted: the listener is then left out of poll until a client is dropped (which frees
     * an fd) or for ACCEPT_BACKOFF_MS, instead of spinning on it. */
    int64_t resume_ns = 0;
    while (p != NULL && !s->stop && !mp__heap_down(h)) {
        bool starved = mp__now_ns() < resume_ns;
        size_t np = 0;
        p[np++] = (struct pollfd){.fd = evfd, .events = POLLIN};
        p[np++] = (struct pollfd){.fd = owner_pidfd, .events = POLLIN};
        p[np++] = (struct pollfd){.fd = starved ? -1 : mp_listener_fileno(l), .events = POLLIN};
        for (size_t i = 0; i < s->ncl; i++)
            p[np++] = (struct pollfd){.fd = s->cl[i].fd,
                                      .events = s->cl[i].out != NULL ? POLLOUT : POLLIN};
        /* Without a pidfd (fd -1, which poll skips), look at the parent every 100 ms. */
        int r = poll(p, np, owner_pidfd >= 0 && !starved ? -1 : ACCEPT_BACKOFF_MS);
        if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == ENOMEM))
            continue;
        if (r < 0 || p[0].revents != 0 || p[1].revents != 0 ||
            (owner_pidfd < 0 && getppid() != owner))
            break;
        /* Serve the clients that were ready before accepting new ones, so that p[] still
         * lines up with cl[]: a dropped client is replaced by the last one, which was polled
         * too, so walk backwards. */
        for (size_t i = s->ncl; i-- > 0 && !s->stop;) {
            client *c = &s->cl[i];
            if (p[3 + i].revents == 0)
                continue;
            /* A reply is sent at once where the socket has room, else when poll says so. */
            bool ok = c->out != NULL ? on_writable(s, c) : on_readable(s, c);
            if (ok && c->out != NULL && c->outoff == 0)
                ok = on_writable(s, c);
            if (ok)
                continue;
            if (c->stop)
                s->stop = true;
            drop(c);
            s->cl[i] = s->cl[--s->ncl];
            resume_ns = 0;
        }
        if (p[2].revents != 0 && !s->stop && accept_all(s))
            resume_ns = mp__now_ns() + (int64_t)ACCEPT_BACKOFF_MS * 1000000;
    }
    /* The owner (and its children) still hold the listening socket: shut it down so that
     * new clients are refused at once rather than left waiting for a handshake. */
    shutdown(mp_listener_fileno(l), SHUT_RDWR);
    mp__free(p);
    mp__server_free(s);
}
