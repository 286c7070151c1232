/*
 * mserve.h - the remote side of the manager: the manager process serving CPython's manager
 * protocol (mserve.c) and the container methods it runs for Python proxies (mcall.c).
 */
#ifndef MPIPC_MSERVE_H
#define MPIPC_MSERVE_H

#include "manager.h"
#include "pickle.h"

/* The request-answering state of a served manager (mserve.c). */
typedef struct mp__server mp__server;

/* mp__serve - the manager process's loop when the manager is served: accept connections on l,
 * answer requests on every connection (poll), until the shutdown eventfd is written, the owner
 * dies (its pidfd, or getppid() every 100 ms without one) or a client sends `shutdown`.
 * registry: the offset of the dict of registered typeids (mp_manager_register). */
void mp__serve(mp__heap *h, mp_listener *l, uint64_t registry, int evfd, int owner_pidfd,
               pid_t owner);

/* The globals a request may name: multiprocessing.managers.Token (get_methods) and
 * builtins.slice (l[1:3]). */
extern const mp__pickle_global mp__serve_request_globals[];

/* The request-answering part of the server, apart from the sockets (the fuzz target drives
 * it directly): the object table and the registry. */
/* mp__server_new - NULL when out of memory. registry: as mp__serve's; address: the
 * listener's (for the Tokens of nested containers), or NULL. */
mp__server *mp__server_new(mp__heap *h, uint64_t registry, const char *address);
void mp__server_free(mp__server *s);
/* mp__server_answer - the reply to one request frame's payload: a control request while
 * *serving is false (accept_connection sets it), else a method call. *stop is set by a
 * shutdown request. NULL when out of memory. */
mp__pv *mp__server_answer(mp__server *s, const void *buf, size_t len, bool *serving, bool *stop);

/* mp__server_proxy_cont - the container behind a proxy a client sent as a value
 * (RebuildProxy(cls, Token, serializer, kwds) with an ident the server knows), or NULL.
 * mp__server_proxy - the proxy tree of container c for a client (an entry without references,
 * which the client's proxy increfs); NULL when out of memory. */
mp__cont *mp__server_proxy_cont(mp__server *s, const mp__pv *v);
mp__pv *mp__server_proxy(mp__server *s, const mp__cont *c);

/* mp__serve_call - run `method` of the container c with a request's args (a tuple) and kwds (a
 * dict) and return the whole reply, ('#RETURN', value), ('#ERROR', exception) or
 * ('#TRACEBACK', text), as CPython's Server.serve_client builds it; NULL when out of memory.
 * Covers the fallbacks '#GETVALUE', '__repr__' and '__str__' too. */
mp__pv *mp__serve_call(mp__server *srv, mp__cont *c, const char *method, const mp__pv *args,
                       const mp__pv *kwds);

/* mp__serve_exposed - the exposed method names of a container kind, as a tuple of str. */
mp__pv *mp__serve_exposed(uint32_t kind);

/* mp__serve_reply - the tuple (kind, payload); consumes payload. NULL when out of memory. */
mp__pv *mp__serve_reply(const char *kind, mp__pv *payload);

/* mp__serve_traceback - ('#TRACEBACK', text) with text shaped as Python's format_exc() for an
 * exception `type` with the formatted message. */
mp__pv *mp__serve_traceback(const char *type, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* mp__serve_items - borrow the items of a list or tuple of plain values as mp_item (the
 * strings point into the tree). On a value a container cannot hold, returns false with the
 * ('#ERROR', TypeError/OverflowError) reply in *err (NULL when out of memory). *out is
 * mp__malloc'ed (NULL for none): mp__free it. */
bool mp__serve_items(mp__server *srv, const mp__pv *seq, mp_item **out, size_t *n, mp__pv **err);

/* mp__serve_init - fill a new dict or Namespace from a constructor's args[from..] and kwds
 * (dict(mapping_or_pairs, **kw), Namespace(**kw)); the reply as mp__serve_call's. */
mp__pv *mp__serve_init(mp__server *srv, mp__cont *c, const mp__pv *args, size_t from,
                       const mp__pv *kwds);

/* mp__token_address - the address in a Token for a listener address: (host, port) for TCP,
 * the path for AF_UNIX. NULL when out of memory. */
mp__pv *mp__token_address(const char *address);

/* The kind of a container created by typeid ("list", "dict", "Namespace"), or 0. */
uint32_t mp__serve_kind(const char *typeid);

/* ---- proxies on the wire: the server's and the client's (mproxy*.c) ---------------------------
 * The typeid and proxy class CPython's SyncManager registers for each container kind. */
extern const char *const mp__kind_typeid[MP__KIND_NS + 1];
extern const char *const mp__kind_proxy[MP__KIND_NS + 1];
/* mp__scalar_pv - the tree for an item that is not a container (None, bool, int, float, str,
 * bytes), as both sides send it; NULL for a container or when out of memory (or a str that is
 * not UTF-8). */
mp__pv *mp__scalar_pv(const mp_item *it);
/* mp__proxy_pv - how a proxy of a `kind` container pickles: RebuildProxy(<kind>Proxy, token,
 * 'pickle', {}), its Token(typeid, address, ident) as NEWOBJ + BUILD. Consumes address and
 * ident; NULL when out of memory (or either is NULL). */
mp__pv *mp__proxy_pv(uint32_t kind, mp__pv *address, mp__pv *ident);
/* mp__token_ident - the ident (borrowed) in a Token tree, or NULL when t is none. */
const mp__pv *mp__token_ident(const mp__pv *t);
/* mp__proxy_parse - the ident (borrowed) of a proxy tree (RebuildProxy with a Token), with
 * *kind the container kind its class names (an AutoProxy by its typeid), 0 for another class;
 * NULL when v is no proxy. */
const mp__pv *mp__proxy_parse(const mp__pv *v, uint32_t *kind);

#endif
