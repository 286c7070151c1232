/*
 * mproxy.h - what the two files of the remote backend share: the client of a Python manager
 * (mproxy.c: connections, requests, reference counts, value conversions) and the container
 * operations on top of it (mproxy_ops.c).
 */
#ifndef MPIPC_MPROXY_H
#define MPIPC_MPROXY_H

#include "mcall.h"

#include <sys/types.h>

/* A connection of the pool: serving (after accept_connection), used by one call at a time. */
typedef struct mp__rconn {
    mp_conn *conn;
    bool busy;
} mp__rconn;

/* A connected manager in this process, shared by the manager handle and every container
 * handle made from it (each holds a reference). */
struct mp__rman {
    _Atomic long refs;
    mp__pidlock lock; /* guards pid and the pool (a forked child takes it over) */
    pid_t pid;        /* the process the pooled connections belong to */
    mp__rconn *conns;
    size_t nconns, cap;
    char *address;      /* as mp_client_connect takes it */
    mp__pv *token_addr; /* the same in a Token: (host, port) or the path */
    mp_client_opts copts;
    int timeout_ms;
};

/* A container handle of the remote backend. */
typedef struct mp__rcont {
    mp__cont c; /* be: mp__remote_backend; h: NULL; off: the ident's value (for repr's cycles) */
    mp__rman *rm;
    _Atomic pid_t pid; /* the process that holds this handle's reference on the server */
    char ident[40];    /* CPython's '%x' % id(obj) */
} mp__rcont;

static inline mp__rcont *
mp__rc(mp__cont *c)
{
    return (mp__rcont *)c;
}

/* mp__rdeadline - the deadline of one operation on rm (its timeout from now). */
void mp__rdeadline(const mp__rman *rm, mp__deadline *dl);

/* mp__rcall - call `method` of rc's referent with args (a tuple; NULL: -ENOMEM, for a failed build)
 * and kwds (a dict; NULL: none), both consumed. 0 with the result in *res (may be NULL if not
 * wanted), or an error: a mapped Python exception, MP_EREMOTE, -ETIMEDOUT, -EPIPE, -ENOMEM,
 * -EPROTO. */
int mp__rcall(mp__rcont *rc, const char *method, mp__pv *args, mp__pv *kwds, mp__pv **res,
              const mp__deadline *dl);

/* mp__rvalue - the tree for an item sent to rm's server (borrowed strings copied). key: the
 * item is a dict key (a container is then MP_ETYPE, as the heap's dict says). 0, -EINVAL (a
 * bad item, a container of another manager), MP_ETYPE, -ENOMEM. */
int mp__rvalue(mp__rman *rm, const mp_item *it, bool key, mp__pv **out);
/* mp__rvalues - a list tree of n items; errors as mp__rvalue. */
int mp__rvalues(mp__rman *rm, const mp_item *items, size_t n, mp__pv **out);

/* mp__ritem - an item for the caller from a reply's value: a copy, or for a proxy a new handle
 * holding its own reference (incref). MP_ETYPE for a value C cannot hold; -ENOMEM; the
 * errors of an incref. out may be NULL (the value is not wanted, nothing is made). */
int mp__ritem(mp__rman *rm, const mp__pv *v, mp_item *out, const mp__deadline *dl);

/* mp__rcreate - create('typeid', *args): a new handle on the result, which must expose kind's
 * methods (else MP_ETYPE). Consumes args (the arguments after the typeid, a tuple; NULL: -ENOMEM).
 */
int mp__rcreate(mp__rman *rm, const char *typeid, uint32_t kind, mp__pv *args, mp__cont **out,
                const mp__deadline *dl);

/* mp__rcontrol - a control request (create, incref, decref) on a connection of its own, as
 * CPython's dispatch on a new Client. Consumes args (a tuple; NULL: -ENOMEM); *res as mp__rcall's.
 */
int mp__rcontrol(mp__rman *rm, const char *method, mp__pv *args, mp__pv **res,
                 const mp__deadline *dl);
/* mp__rident_args - the tuple (ident,) of an incref or decref; NULL when out of memory. */
mp__pv *mp__rident_args(const char *ident);
/* mp__radopt - a handle on the object `ident`, whose reference this process holds already; on
 * failure (-ENOMEM) the reference is given back. */
int mp__radopt(mp__rman *rm, const char *ident, uint32_t kind, mp__cont **out,
               const mp__deadline *dl);

/* mp__rcont_free - the backend's cont_free: drop this process's reference (decref, bounded by
 * the timeout, a failure ignored as CPython's _decref does) and free the handle. */
void mp__rcont_free(mp__cont *c);

/* mp__rerror - record the message for mp_manager_last_error() and return err. */
int mp__rerror(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
