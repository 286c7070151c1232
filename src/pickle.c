/*
 * pickle.c - decode the pickle subset of the manager protocol (see docs/pickle.md).
 *
 * A stack machine like CPython's Unpickler, minus everything that executes code. The encoder is
 * in pickle_dump.c.
 */
#include "pickle.h"
#include "internal.h"
#include "pickle_ops.h"

#include <string.h>

const mp__pickle_global mp__pickle_manager_globals[] = {
    {"multiprocessing.managers", "Token"},
    {"multiprocessing.managers", "RemoteError"},
    {"builtins", "KeyError"},
    {"builtins", "IndexError"},
    {"builtins", "ValueError"},
    {"builtins", "TypeError"},
    {"builtins", "AttributeError"},
    {"builtins", "StopIteration"},
    {"builtins", "RuntimeError"},
    {"builtins", "Exception"},
    {"builtins", "EOFError"},
    {"builtins", "OSError"},
    {"builtins", "TimeoutError"},
    {"builtins", "NotImplementedError"},
    {"builtins", "AssertionError"},
    {"builtins", "bytearray"},
    {"queue", "Empty"},
    {"queue", "Full"},
    {"_queue", "Empty"},
    {NULL, NULL},
};

/* ================================ decoder =======================================================
 */

typedef struct dec {
    const uint8_t *p, *end;
    int proto;
    mp__pickle_limits lim;
    const mp__pickle_global *allow;
    mp__pv **stack;
    size_t sp, scap;
    size_t *marks;
    size_t nmarks, mcap;
    /* The memo holds borrowed pointers: every node stays owned by the stack, a container or
     * the graveyard until the decode ends, so no entry can dangle. */
    mp__pv **memo;
    size_t memo_cap, memo_count;
    /* Nodes consumed by STACK_GLOBAL (the module and name strings), which the memo may still
     * point at. */
    mp__pv **grave;
    size_t ngrave, gcap;
    size_t nodes, bytes;
} dec;

static int
grow(void *arrp, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap < 16 ? 16 : *cap;
    while (n < need)
        n *= 2;
    /* arrp points at a pointer of some other type: copy it in and out rather than alias it. */
    void *a;
    memcpy(&a, arrp, sizeof a);
    a = mp__realloc(a, n * elem);
    if (a == NULL)
        return -ENOMEM;
    memcpy(arrp, &a, sizeof a);
    *cap = n;
    return 0;
}

/* take - the next n input bytes, consumed; NULL when fewer remain. */
static const uint8_t *
take(dec *d, size_t n)
{
    if ((size_t)(d->end - d->p) < n)
        return NULL;
    const uint8_t *q = d->p;
    d->p += n;
    return q;
}

static uint64_t
le(const uint8_t *q, int n)
{
    uint64_t v = 0;
    for (int k = n - 1; k >= 0; k--)
        v = (v << 8) | q[k];
    return v;
}

/* Items above the innermost mark: what an opcode that does not use marks may pop. */
static size_t
avail(const dec *d)
{
    return d->sp - (d->nmarks > 0 ? d->marks[d->nmarks - 1] : 0);
}

/* Push a new node (NULL: the constructor ran out of memory), counting it against the limits. */
static int
push(dec *d, mp__pv *v, size_t payload)
{
    if (v == NULL)
        return -ENOMEM;
    if (grow(&d->stack, &d->scap, d->sp + 1, sizeof *d->stack) < 0) {
        mp__pv_free(v);
        return -ENOMEM;
    }
    d->stack[d->sp++] = v;
    d->nodes++;
    d->bytes += payload;
    return 0;
}

/* Check that a new node with `payload` bytes fits the limits before building it. */
static int
room(const dec *d, size_t nodes, size_t payload)
{
    if (d->nodes + nodes > d->lim.max_nodes || payload > d->lim.max_bytes - d->bytes)
        return -E2BIG;
    return 0;
}

/* Read a length-prefixed str, bytes or int body of a declared n bytes. */
static int
load_blob(dec *d, int kind, uint64_t n)
{
    if (n > (uint64_t)(d->end - d->p))
        return -EPROTO;
    int r = room(d, 1, (size_t)n);
    if (r < 0)
        return r;
    const uint8_t *q = take(d, (size_t)n);
    if (kind == MP__PV_STR) {
        if (!mp__utf8_valid((const char *)q, (size_t)n))
            return -EPROTO;
        return push(d, mp__pv_str((const char *)q, (size_t)n), (size_t)n);
    }
    if (kind == MP__PV_BYTES)
        return push(d, mp__pv_bytes(q, (size_t)n), (size_t)n);
    if (n == 0)
        return push(d, mp__pv_int(0), 0);
    return push(d, mp__pv_bigint(q, (size_t)n), (size_t)n);
}

static bool
allowed(const dec *d, const char *module, const char *name)
{
    for (const mp__pickle_global *g = d->allow; g != NULL && g->module != NULL; g++)
        if (strcmp(g->module, module) == 0 && strcmp(g->name, name) == 0)
            return true;
    return false;
}

static int
push_global(dec *d, const char *module, const char *name)
{
    if (!allowed(d, module, name))
        return -EPERM;
    int r = room(d, 1, 0);
    return r < 0 ? r : push(d, mp__pv_global(module, name), 0);
}

/* GLOBAL: "module\nname\n", as protocols 0 to 3 write it. */
static int
load_global(dec *d)
{
    char part[2][256];
    for (int k = 0; k < 2; k++) {
        const uint8_t *nl = memchr(d->p, '\n', (size_t)(d->end - d->p));
        size_t n = nl != NULL ? (size_t)(nl - d->p) : 0;
        if (nl == NULL || n == 0 || n >= sizeof part[k] || memchr(d->p, '\0', n) != NULL)
            return -EPROTO;
        memcpy(part[k], d->p, n);
        part[k][n] = '\0';
        d->p = nl + 1;
    }
    /* Python 3 reads protocol 2 pickles with fix_imports: Python 2's names for builtins. */
    const char *module = part[0];
    if (d->proto < 3 && (strcmp(module, "__builtin__") == 0 || strcmp(module, "exceptions") == 0))
        module = "builtins";
    return push_global(d, module, part[1]);
}

static int
load_stack_global(dec *d)
{
    if (avail(d) < 2)
        return -EPROTO;
    mp__pv *module = d->stack[d->sp - 2], *name = d->stack[d->sp - 1];
    if (module->kind != MP__PV_STR || name->kind != MP__PV_STR ||
        strlen(module->u.s.data) != module->u.s.len || strlen(name->u.s.data) != name->u.s.len)
        return -EPROTO;
    if (!allowed(d, module->u.s.data, name->u.s.data))
        return -EPERM;
    if (grow(&d->grave, &d->gcap, d->ngrave + 2, sizeof *d->grave) < 0)
        return -ENOMEM;
    int r = room(d, 1, 0);
    mp__pv *g = r < 0 ? NULL : mp__pv_global(module->u.s.data, name->u.s.data);
    if (g == NULL)
        return r < 0 ? r : -ENOMEM;
    d->grave[d->ngrave++] = module;
    d->grave[d->ngrave++] = name;
    d->sp -= 2;
    return push(d, g, 0);
}

/* Does placing child inside a new or existing parent stay within the depth limit? */
static int
depth_ok(const dec *d, const mp__pv *child)
{
    return child->height + 1 > d->lim.max_depth ? -E2BIG : 0;
}

/* Replace the top n stack items by a tuple of them. */
static int
load_tuple(dec *d, size_t n)
{
    int r = room(d, 1, 0);
    for (size_t k = d->sp - n; r == 0 && k < d->sp; k++)
        r = depth_ok(d, d->stack[k]);
    if (r < 0)
        return r;
    mp__pv *t = mp__pv_tuple(0);
    if (t == NULL ||
        (n > 0 && grow(&t->u.seq.items, &t->u.seq.cap, n, sizeof *t->u.seq.items) < 0)) {
        mp__pv_free(t);
        return -ENOMEM;
    }
    for (size_t k = 0; k < n; k++) {
        mp__pv *item = d->stack[d->sp - n + k];
        t->u.seq.items[k] = item;
        if (item->height + 1 > t->height)
            t->height = item->height + 1;
    }
    t->u.seq.len = n;
    d->sp -= n;
    return push(d, t, 0);
}

/* Move stack[from, sp) into the list or dict at stack[from - 1]. */
static int
load_into(dec *d, size_t from, bool dict)
{
    if (from == 0 || from - 1 < (d->nmarks > 0 ? d->marks[d->nmarks - 1] : 0))
        return -EPROTO;
    mp__pv *c = d->stack[from - 1];
    size_t n = d->sp - from;
    if (c->kind != (dict ? MP__PV_DICT : MP__PV_LIST) || (dict && n % 2 != 0))
        return -EPROTO;
    int r = 0;
    for (size_t k = from; r == 0 && k < d->sp; k++)
        r = depth_ok(d, d->stack[k]);
    if (r == 0)
        r = grow(&c->u.seq.items, &c->u.seq.cap, (dict ? 2 : 1) * c->u.seq.len + n,
                 sizeof *c->u.seq.items);
    if (r < 0)
        return r;
    /* Room is reserved, so these appends cannot fail. */
    for (size_t k = from; k < d->sp; k += dict ? 2 : 1)
        r = dict ? mp__pv_dict_push(c, d->stack[k], d->stack[k + 1])
                 : mp__pv_append(c, d->stack[k]);
    d->sp = from;
    return r;
}

/* The top mark, popped: the stack index where its items start. */
static int
pop_mark(dec *d, size_t *from)
{
    if (d->nmarks == 0)
        return -EPROTO;
    *from = d->marks[--d->nmarks];
    return 0;
}

static int
load_memo_put(dec *d, uint64_t idx)
{
    if (avail(d) < 1)
        return -EPROTO;
    if (idx >= d->lim.max_memo)
        return -E2BIG;
    if (idx >= d->memo_cap) {
        size_t old = d->memo_cap, cap = old;
        if (grow(&d->memo, &cap, (size_t)idx + 1, sizeof *d->memo) < 0)
            return -ENOMEM;
        memset(d->memo + old, 0, (cap - old) * sizeof *d->memo);
        d->memo_cap = cap;
    }
    if (d->memo[idx] == NULL)
        d->memo_count++;
    d->memo[idx] = d->stack[d->sp - 1];
    return 0;
}

/* How many nodes and payload bytes a copy of v makes; stops counting past the limits. */
static void
count(const mp__pv *v, size_t *nodes, size_t *bytes, size_t max_nodes)
{
    if (v == NULL || *nodes > max_nodes)
        return;
    ++*nodes;
    switch (v->kind) {
    case MP__PV_BIGINT:
    case MP__PV_STR:
    case MP__PV_BYTES:
        *bytes += v->u.s.len;
        break;
    case MP__PV_TUPLE:
    case MP__PV_LIST:
    case MP__PV_DICT:
        for (size_t k = 0; k < v->u.seq.len * (v->kind == MP__PV_DICT ? 2 : 1); k++)
            count(v->u.seq.items[k], nodes, bytes, max_nodes);
        break;
    case MP__PV_OBJECT:
        count(v->u.obj.callable, nodes, bytes, max_nodes);
        count(v->u.obj.args, nodes, bytes, max_nodes);
        count(v->u.obj.state, nodes, bytes, max_nodes);
        break;
    default:
        break;
    }
}

/* BINGET: the tree has no shared nodes, so a memo reference becomes a copy, which the limits
 * count in full (a pickle that doubles a list with each BINGET fails with -E2BIG). */
static int
load_memo_get(dec *d, uint64_t idx)
{
    if (idx >= d->memo_cap || d->memo[idx] == NULL)
        return -EPROTO;
    size_t nodes = 0, bytes = 0;
    count(d->memo[idx], &nodes, &bytes, d->lim.max_nodes);
    int r = room(d, nodes, bytes);
    if (r < 0)
        return r;
    r = push(d, mp__pv_copy(d->memo[idx]), bytes);
    if (r == 0)
        d->nodes += nodes - 1;
    return r;
}

/* REDUCE and NEWOBJ: callable(*args) as an inert node; the callable passed the allow-list. */
static int
load_call(dec *d, bool newobj)
{
    if (avail(d) < 2)
        return -EPROTO;
    mp__pv *callable = d->stack[d->sp - 2], *args = d->stack[d->sp - 1];
    if (callable->kind != MP__PV_GLOBAL || args->kind != MP__PV_TUPLE)
        return -EPROTO;
    int r = room(d, 1, 0);
    if (r == 0)
        r = depth_ok(d, args);
    if (r < 0)
        return r;
    d->sp -= 2;
    return push(d, mp__pv_object(callable, args, NULL, newobj), 0);
}

static int
load_build(dec *d)
{
    if (avail(d) < 2)
        return -EPROTO;
    mp__pv *obj = d->stack[d->sp - 2], *state = d->stack[d->sp - 1];
    if (obj->kind != MP__PV_OBJECT || obj->u.obj.state != NULL)
        return -EPROTO;
    int r = depth_ok(d, state);
    if (r < 0)
        return r;
    obj->u.obj.state = state;
    if (state->height + 1 > obj->height)
        obj->height = state->height + 1;
    d->sp--;
    return 0;
}

static int
load_bytearray(dec *d, uint64_t n)
{
    /* Protocol 5's BYTEARRAY8 decodes to what protocol 4 writes for a bytearray,
     * builtins.bytearray(b'...'), so that the caller sees one shape. */
    int r = push_global(d, "builtins", "bytearray");
    if (r == 0)
        r = load_blob(d, MP__PV_BYTES, n);
    if (r == 0)
        r = load_tuple(d, 1);
    return r == 0 ? load_call(d, false) : r;
}

static int
load_one(dec *d, uint8_t op, bool *stop)
{
    const uint8_t *q;
    size_t from;
    int r;
#define ARG(n)                                                                                     \
    do {                                                                                           \
        if ((q = take(d, (n))) == NULL)                                                            \
            return -EPROTO;                                                                        \
    } while (0)
    switch (op) {
    case PROTO:
        ARG(1);
        if (q[0] < 2 || q[0] > 5)
            return -EPROTO;
        d->proto = q[0];
        return 0;
    case FRAME:
        /* CPython's C unpickler checks only that the frame is there; so does this one. */
        ARG(8);
        return le(q, 8) > (uint64_t)(d->end - d->p) ? -EPROTO : 0;
    case STOP:
        if (d->sp != 1 || d->nmarks != 0 || d->p != d->end)
            return -EPROTO;
        *stop = true;
        return 0;
    case MARK:
        if (d->nmarks >= d->lim.max_depth)
            return -E2BIG;
        if (grow(&d->marks, &d->mcap, d->nmarks + 1, sizeof *d->marks) < 0)
            return -ENOMEM;
        d->marks[d->nmarks++] = d->sp;
        return 0;
    case NONE:
        return (r = room(d, 1, 0)) < 0 ? r : push(d, mp__pv_none(), 0);
    case NEWTRUE:
    case NEWFALSE:
        return (r = room(d, 1, 0)) < 0 ? r : push(d, mp__pv_bool(op == NEWTRUE), 0);
    case BININT1:
        ARG(1);
        return (r = room(d, 1, 0)) < 0 ? r : push(d, mp__pv_int(q[0]), 0);
    case BININT2:
        ARG(2);
        return (r = room(d, 1, 0)) < 0 ? r : push(d, mp__pv_int((int64_t)le(q, 2)), 0);
    case BININT:
        ARG(4);
        return (r = room(d, 1, 0)) < 0 ? r : push(d, mp__pv_int((int32_t)(uint32_t)le(q, 4)), 0);
    case LONG1:
        ARG(1);
        return load_blob(d, MP__PV_BIGINT, q[0]);
    case LONG4:
        ARG(4);
        if ((int32_t)(uint32_t)le(q, 4) < 0)
            return -EPROTO;
        return load_blob(d, MP__PV_BIGINT, le(q, 4));
    case BINFLOAT: {
        ARG(8);
        uint64_t bits = 0;
        for (int k = 0; k < 8; k++)
            bits = (bits << 8) | q[k];
        double f;
        memcpy(&f, &bits, sizeof f);
        return (r = room(d, 1, 0)) < 0 ? r : push(d, mp__pv_float(f), 0);
    }
    case SHORT_BINUNICODE:
        ARG(1);
        return load_blob(d, MP__PV_STR, q[0]);
    case BINUNICODE:
        ARG(4);
        return load_blob(d, MP__PV_STR, le(q, 4));
    case BINUNICODE8:
        ARG(8);
        return load_blob(d, MP__PV_STR, le(q, 8));
    case SHORT_BINBYTES:
        ARG(1);
        return load_blob(d, MP__PV_BYTES, q[0]);
    case BINBYTES:
        ARG(4);
        return load_blob(d, MP__PV_BYTES, le(q, 4));
    case BINBYTES8:
        ARG(8);
        return load_blob(d, MP__PV_BYTES, le(q, 8));
    case BYTEARRAY8:
        ARG(8);
        return load_bytearray(d, le(q, 8));
    case EMPTY_TUPLE:
        return load_tuple(d, 0);
    case TUPLE1:
    case TUPLE2:
    case TUPLE3:
        return avail(d) < (size_t)(op - TUPLE1 + 1) ? -EPROTO : load_tuple(d, op - TUPLE1 + 1);
    case TUPLE:
        if ((r = pop_mark(d, &from)) < 0)
            return r;
        return load_tuple(d, d->sp - from);
    case EMPTY_LIST:
        return (r = room(d, 1, 0)) < 0 ? r : push(d, mp__pv_list(), 0);
    case EMPTY_DICT:
        return (r = room(d, 1, 0)) < 0 ? r : push(d, mp__pv_dict(), 0);
    case APPEND:
    case SETITEM:
        if (avail(d) < (op == APPEND ? 1u : 2u))
            return -EPROTO;
        return load_into(d, d->sp - (op == APPEND ? 1 : 2), op == SETITEM);
    case APPENDS:
    case SETITEMS:
        if ((r = pop_mark(d, &from)) < 0)
            return r;
        return load_into(d, from, op == SETITEMS);
    case MEMOIZE:
        return load_memo_put(d, d->memo_count);
    case BINPUT:
        ARG(1);
        return load_memo_put(d, q[0]);
    case LONG_BINPUT:
        ARG(4);
        return load_memo_put(d, le(q, 4));
    case BINGET:
        ARG(1);
        return load_memo_get(d, q[0]);
    case LONG_BINGET:
        ARG(4);
        return load_memo_get(d, le(q, 4));
    case GLOBAL:
        return load_global(d);
    case STACK_GLOBAL:
        return load_stack_global(d);
    case REDUCE:
    case NEWOBJ:
        return load_call(d, op == NEWOBJ);
    case BUILD:
        return load_build(d);
    default:
        return -EPROTO;
    }
#undef ARG
}

int
mp__pickle_loads(mp__pv **out, const void *buf, size_t len, const mp__unpickle_opts *opts)
{
    if (buf == NULL)
        return -EPROTO;
    dec d = {.p = buf, .end = (const uint8_t *)buf + len, .proto = 2};
    if (opts != NULL) {
        d.lim = opts->limits;
        d.allow = opts->allow;
    }
    if (d.lim.max_depth == 0)
        d.lim.max_depth = 200;
    if (d.lim.max_depth > MP__PV_MAX_HEIGHT)
        d.lim.max_depth = MP__PV_MAX_HEIGHT;
    if (d.lim.max_nodes == 0)
        d.lim.max_nodes = (size_t)1 << 22;
    if (d.lim.max_bytes == 0)
        d.lim.max_bytes = (size_t)1 << 30;
    if (d.lim.max_memo == 0)
        d.lim.max_memo = (size_t)1 << 20;

    int r = 0;
    bool stop = false;
    while (r == 0 && !stop) {
        if (d.p == d.end)
            r = -EPROTO; /* no STOP */
        else
            r = load_one(&d, *d.p++, &stop);
    }
    if (r == 0)
        *out = d.stack[--d.sp];
    for (size_t k = 0; k < d.sp; k++)
        mp__pv_free(d.stack[k]);
    for (size_t k = 0; k < d.ngrave; k++)
        mp__pv_free(d.grave[k]);
    mp__free(d.stack);
    mp__free(d.marks);
    mp__free(d.memo);
    mp__free(d.grave);
    return r;
}
