/*
 * mcall.c - the container methods a Python proxy calls on the manager process: ListProxy,
 * DictProxy and NamespaceProxy, with CPython's results and exceptions.
 *
 * Arguments arrive as pickle trees and go to the public container calls as borrowed mp_item
 * values; results come back as trees. A value a container cannot hold (a tuple, a plain list
 * or dict, an int beyond int64) is answered with the exception Python would give for a value
 * of the wrong type (TypeError, or OverflowError for the int), before anything changes.
 */
#include "mserve.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const list_exposed[] = {
    "__contains__", "__delitem__", "__getitem__", "__len__", "__setitem__",
    "append",       "count",       "extend",      "index",   "insert",
    "pop",          "remove",      "reverse",     "sort",    NULL};
static const char *const dict_exposed[] = {
    "__contains__", "__delitem__", "__getitem__", "__len__", "__setitem__",
    "clear",        "copy",        "get",         "items",   "keys",
    "pop",          "popitem",     "setdefault",  "update",  "values",
    NULL};
static const char *const ns_exposed[] = {"__getattribute__", "__setattr__", "__delattr__", NULL};

static const char *const *
exposed_of(uint32_t kind)
{
    return kind == MP__KIND_LIST ? list_exposed : kind == MP__KIND_DICT ? dict_exposed : ns_exposed;
}

static const char *
class_of(uint32_t kind)
{
    return kind == MP__KIND_LIST   ? "<class 'list'>"
           : kind == MP__KIND_DICT ? "<class 'dict'>"
                                   : "<class 'multiprocessing.managers.Namespace'>";
}

uint32_t
mp__serve_kind(const char *typeid)
{
    return strcmp(typeid, "list") == 0        ? MP__KIND_LIST
           : strcmp(typeid, "dict") == 0      ? MP__KIND_DICT
           : strcmp(typeid, "Namespace") == 0 ? MP__KIND_NS
                                              : 0;
}

mp__pv *
mp__serve_exposed(uint32_t kind)
{
    mp__pv *t = mp__pv_tuple(0);
    for (const char *const *e = exposed_of(kind); t != NULL && *e != NULL; e++)
        if (mp__pv_append(t, mp__pv_cstr(*e)) != 0) {
            mp__pv_free(t);
            t = NULL;
        }
    return t;
}

mp__pv *
mp__serve_reply(const char *kind, mp__pv *payload)
{
    return mp__pv_tuple(2, mp__pv_cstr(kind), payload);
}

mp__pv *
mp__serve_traceback(const char *type, const char *fmt, ...)
{
    char msg[1024], text[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(text, sizeof text,
             "Traceback (most recent call last):\n  File \"<mpipc manager>\", in serve\n%s: %s\n",
             type, msg);
    return mp__serve_reply("#TRACEBACK", mp__pv_cstr(text));
}

/* ('#ERROR', builtins.type(arg)): an exception object pickled as CPython does (STACK_GLOBAL,
 * the args tuple, REDUCE). Consumes arg; NULL arg means no arguments. */
static mp__pv *
error_(const char *type, mp__pv *arg)
{
    mp__pv *args = arg != NULL ? mp__pv_tuple(1, arg) : mp__pv_tuple(0);
    return mp__serve_reply("#ERROR", mp__pv_object(mp__pv_global("builtins", type), args, NULL,
                                                   false));
}

static mp__pv *
errorf_(const char *type, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static mp__pv *
errorf_(const char *type, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return error_(type, mp__pv_cstr(msg));
}

static const char *
type_name(const mp__pv *v)
{
    static const char *const names[] = {
        [MP__PV_NONE] = "NoneType", [MP__PV_BOOL] = "bool",   [MP__PV_INT] = "int",
        [MP__PV_BIGINT] = "int",    [MP__PV_FLOAT] = "float", [MP__PV_STR] = "str",
        [MP__PV_BYTES] = "bytes",   [MP__PV_TUPLE] = "tuple", [MP__PV_LIST] = "list",
        [MP__PV_DICT] = "dict",     [MP__PV_GLOBAL] = "type", [MP__PV_OBJECT] = "object",
    };
    if (v->kind == MP__PV_OBJECT && v->u.obj.callable->kind == MP__PV_GLOBAL)
        return v->u.obj.callable->u.g.name;
    return names[v->kind];
}

/* Borrow a value as an item, or set *err to the reply for a value no container can hold. */
static bool
item_of(const mp__pv *v, mp_item *it, mp__pv **err)
{
    switch (v->kind) {
    case MP__PV_NONE:
        *it = mp_item_none();
        return true;
    case MP__PV_BOOL:
        *it = mp_item_bool(v->u.b);
        return true;
    case MP__PV_INT:
        *it = mp_item_int(v->u.i);
        return true;
    case MP__PV_FLOAT:
        *it = mp_item_float(v->u.f);
        return true;
    case MP__PV_STR:
        it->type = MP_ITEM_STR;
        it->v.s.ptr = v->u.s.data;
        it->v.s.len = v->u.s.len;
        return true;
    case MP__PV_BYTES:
        *it = mp_item_bytes(v->u.s.data, v->u.s.len);
        return true;
    case MP__PV_BIGINT:
        *err = errorf_("OverflowError", "int too large for an mpipc manager item (int64)");
        return false;
    default:
        *err = errorf_("TypeError",
                       "an mpipc manager item is None, bool, int, float, str or bytes, not '%s'",
                       type_name(v));
        return false;
    }
}

bool
mp__serve_items(const mp__pv *seq, mp_item **out, size_t *n, mp__pv **err)
{
    *out = NULL;
    *n = 0;
    if (seq->kind != MP__PV_LIST && seq->kind != MP__PV_TUPLE) {
        *err = errorf_("TypeError", "'%s' object is not a list or tuple", type_name(seq));
        return false;
    }
    size_t len = mp__pv_len(seq);
    mp_item *items = len > 0 ? mp__calloc(len, sizeof *items) : NULL;
    if (len > 0 && items == NULL) {
        *err = NULL;
        return false;
    }
    for (size_t i = 0; i < len; i++)
        if (!item_of(mp__pv_item(seq, i), &items[i], err)) {
            mp__free(items);
            return false;
        }
    *out = items;
    *n = len;
    return true;
}

/* A tree for an item the library filled: consumes (clears) it. A nested container cannot
 * travel (it would need a proxy of its own): TypeError. */
static mp__pv *
pv_of(mp_item *it, mp__pv **err)
{
    mp__pv *v = NULL;
    switch (it->type) {
    case MP_ITEM_NONE:
        v = mp__pv_none();
        break;
    case MP_ITEM_BOOL:
        v = mp__pv_bool(it->v.b);
        break;
    case MP_ITEM_INT:
        v = mp__pv_int(it->v.i);
        break;
    case MP_ITEM_FLOAT:
        v = mp__pv_float(it->v.f);
        break;
    case MP_ITEM_STR:
        v = mp__pv_str(it->v.s.ptr, it->v.s.len);
        break;
    case MP_ITEM_BYTES:
        v = mp__pv_bytes(it->v.s.ptr, it->v.s.len);
        break;
    default:
        *err = errorf_("TypeError", "a nested shared container cannot be sent to a Python client");
        mp_item_clear(it);
        return NULL;
    }
    mp_item_clear(it);
    if (v == NULL)
        *err = NULL;
    return v;
}

static mp__pv *
ret_(mp__pv *v)
{
    return mp__serve_reply("#RETURN", v);
}

/* The reply for a failed container call r. `missing` is the reply for -ENOENT (may be NULL),
 * `range` the IndexError text for -ERANGE. */
static mp__pv *
fail_(int r, mp__pv *missing, const char *range)
{
    if (r == -ENOENT && missing != NULL)
        return missing;
    mp__pv_free(missing);
    switch (r) {
    case -ERANGE:
        return errorf_("IndexError", "%s", range != NULL ? range : "index out of range");
    case MP_ETYPE:
        return errorf_("TypeError", "'<' not supported between these items (or an unhashable key)");
    case -EINVAL:
        return errorf_("ValueError", "a str that is not valid UTF-8 (or a name starting with '_')");
    case -ENOMEM:
    case -ENOSPC:
        return errorf_("MemoryError", "the manager's heap is full");
    default:
        return mp__serve_traceback("OSError", "mpipc manager: %s", mp_strerror(r));
    }
}

/* A sequence of items the library filled, as a list tree (consumes them). */
static mp__pv *
list_of(mp_item *items, size_t n, mp__pv **err)
{
    mp__pv *l = mp__pv_list();
    *err = NULL;
    for (size_t i = 0; i < n; i++) {
        mp__pv *v = l != NULL ? pv_of(&items[i], err) : NULL;
        if (v == NULL || mp__pv_append(l, v) != 0) {
            mp__pv_free(l);
            l = NULL;
            for (size_t j = i; j < n; j++)
                mp_item_clear(&items[j]);
            break;
        }
    }
    mp__free(items);
    return l;
}

/* CPython pickles dict views (keys(), values(), items()) as builtins.list(the list). */
static mp__pv *
as_list_call_(mp__pv *l)
{
    return mp__pv_object(mp__pv_global("builtins", "list"), mp__pv_tuple(1, l), NULL, false);
}

/* ---- argument checks --------------------------------------------------------------------------- */

typedef struct call {
    mp__cont *c;
    const char *m;
    const mp__pv *args, *kwds;
    size_t nargs;
} call;

/* Check the argument count (lo..hi positional, no keywords); on failure *r is the reply. */
static bool
nargs_(const call *k, size_t lo, size_t hi, mp__pv **r)
{
    if (mp__pv_len(k->kwds) != 0) {
        *r = errorf_("TypeError", "%s() takes no keyword arguments", k->m);
        return false;
    }
    if (k->nargs < lo || k->nargs > hi) {
        *r = lo == hi ? errorf_("TypeError", "%s() takes exactly %zu argument%s (%zu given)", k->m,
                                lo, lo == 1 ? "" : "s", k->nargs)
                      : errorf_("TypeError", "%s() takes from %zu to %zu arguments (%zu given)",
                                k->m, lo, hi, k->nargs);
        return false;
    }
    return true;
}

static const mp__pv *
arg_(const call *k, size_t i)
{
    return mp__pv_item(k->args, i);
}

static bool
index_of(const mp__pv *v, ptrdiff_t *i, mp__pv **r)
{
    if (v->kind == MP__PV_INT) {
        *i = v->u.i == INT64_MIN ? INT64_MIN + 1 : (ptrdiff_t)v->u.i;
        return true;
    }
    if (v->kind == MP__PV_BOOL) {
        *i = v->u.b;
        return true;
    }
    if (v->kind == MP__PV_BIGINT)
        *r = errorf_("IndexError", "cannot fit 'int' into an index-sized integer");
    else
        *r = errorf_("TypeError", "list indices must be integers or slices, not %s", type_name(v));
    return false;
}

/* A slice(start, stop, step) object: its bounds, MP_SLICE_DEFAULT for None. */
static bool
slice_of(const mp__pv *v, ptrdiff_t b[3], mp__pv **r)
{
    if (!mp__pv_is_global(v, "builtins", "slice") || v->kind != MP__PV_OBJECT ||
        mp__pv_len(v->u.obj.args) != 3 || v->u.obj.state != NULL)
        return false;
    for (size_t i = 0; i < 3; i++) {
        const mp__pv *x = mp__pv_item(v->u.obj.args, i);
        if (x->kind == MP__PV_NONE)
            b[i] = i == 2 ? 1 : MP_SLICE_DEFAULT;
        else if (!index_of(x, &b[i], r))
            return true;
    }
    if (b[2] == 0)
        *r = errorf_("ValueError", "slice step cannot be zero");
    return true;
}

/* ---- list ------------------------------------------------------------------------------------ */

static mp__pv *
list_call(const call *k)
{
    mp_list *l = (mp_list *)k->c;
    const char *m = k->m;
    mp__pv *r = NULL;
    mp_item it, v, *items;
    size_t n;
    ptrdiff_t i, b[3];
    int e;
    if (strcmp(m, "__len__") == 0) {
        if (!nargs_(k, 0, 0, &r))
            return r;
        ssize_t len = mp_list_len(l);
        return len >= 0 ? ret_(mp__pv_int(len)) : fail_((int)len, NULL, NULL);
    }
    if (strcmp(m, "__getitem__") == 0 || strcmp(m, "__delitem__") == 0 ||
        strcmp(m, "pop") == 0) {
        bool pop = m[0] == 'p', get = m[2] == 'g';
        if (!nargs_(k, pop ? 0 : 1, 1, &r))
            return r;
        if (k->nargs == 1 && !pop && slice_of(arg_(k, 0), b, &r)) {
            if (r != NULL)
                return r;
            if (!get)
                return (e = mp_list_del_slice(l, b[0], b[1], b[2])) == 0 ? ret_(mp__pv_none())
                                                                        : fail_(e, NULL, NULL);
            if ((e = mp_list_slice(l, b[0], b[1], b[2], &items, &n)) != 0)
                return fail_(e, NULL, NULL);
            mp__pv *lv = list_of(items, n, &r);
            return lv != NULL ? ret_(lv) : r;
        }
        i = -1;
        if (k->nargs == 1 && !index_of(arg_(k, 0), &i, &r))
            return r;
        if (get) {
            if ((e = mp_list_get(l, i, &it)) != 0)
                return fail_(e, NULL, "list index out of range");
            mp__pv *pv = pv_of(&it, &r);
            return pv != NULL ? ret_(pv) : r;
        }
        if (!pop)
            return (e = mp_list_del(l, i)) == 0
                       ? ret_(mp__pv_none())
                       : fail_(e, NULL, "list assignment index out of range");
        ssize_t len = mp_list_len(l);
        if ((e = mp_list_pop(l, i, &it)) != 0)
            return fail_(e, NULL, len == 0 ? "pop from empty list" : "pop index out of range");
        mp__pv *pv = pv_of(&it, &r);
        return pv != NULL ? ret_(pv) : r;
    }
    if (strcmp(m, "__setitem__") == 0) {
        if (!nargs_(k, 2, 2, &r))
            return r;
        if (slice_of(arg_(k, 0), b, &r)) {
            if (r != NULL)
                return r;
            if (b[2] != 1)
                return errorf_("ValueError", "mpipc's manager assigns only to slices of step 1");
            if (!mp__serve_items(arg_(k, 1), &items, &n, &r))
                return r;
            e = mp_list_set_slice(l, b[0], b[1], items, n);
            mp__free(items);
            return e == 0 ? ret_(mp__pv_none()) : fail_(e, NULL, NULL);
        }
        if (!index_of(arg_(k, 0), &i, &r) || !item_of(arg_(k, 1), &v, &r))
            return r;
        return (e = mp_list_set(l, i, &v)) == 0
                   ? ret_(mp__pv_none())
                   : fail_(e, NULL, "list assignment index out of range");
    }
    if (strcmp(m, "append") == 0 || strcmp(m, "remove") == 0 || strcmp(m, "count") == 0 ||
        strcmp(m, "__contains__") == 0 || strcmp(m, "index") == 0) {
        if (!nargs_(k, 1, 1, &r)) {
            if (m[0] == 'i' && k->nargs > 1 && mp__pv_len(k->kwds) == 0) {
                mp__pv_free(r);
                return errorf_("TypeError", "mpipc's manager has no index() with start and stop");
            }
            return r;
        }
        if (!item_of(arg_(k, 0), &v, &r))
            return r;
        ssize_t x;
        switch (m[0]) {
        case 'a':
            return (e = mp_list_append(l, &v)) == 0 ? ret_(mp__pv_none()) : fail_(e, NULL, NULL);
        case 'r':
            return (e = mp_list_remove(l, &v)) == 0
                       ? ret_(mp__pv_none())
                       : fail_(e, errorf_("ValueError", "list.remove(x): x not in list"), NULL);
        case 'c':
            return (x = mp_list_count(l, &v)) >= 0 ? ret_(mp__pv_int(x)) : fail_((int)x, NULL, NULL);
        case '_':
            return (e = mp_list_contains(l, &v)) >= 0 ? ret_(mp__pv_bool(e)) : fail_(e, NULL, NULL);
        default:
            return (x = mp_list_index(l, &v)) >= 0
                       ? ret_(mp__pv_int(x))
                       : fail_((int)x, errorf_("ValueError", "list.index(x): x not in list"), NULL);
        }
    }
    if (strcmp(m, "extend") == 0) {
        if (!nargs_(k, 1, 1, &r) || !mp__serve_items(arg_(k, 0), &items, &n, &r))
            return r;
        e = mp_list_extend(l, items, n);
        mp__free(items);
        return e == 0 ? ret_(mp__pv_none()) : fail_(e, NULL, NULL);
    }
    if (strcmp(m, "insert") == 0) {
        if (!nargs_(k, 2, 2, &r) || !index_of(arg_(k, 0), &i, &r) || !item_of(arg_(k, 1), &v, &r))
            return r;
        return (e = mp_list_insert(l, i, &v)) == 0 ? ret_(mp__pv_none()) : fail_(e, NULL, NULL);
    }
    if (strcmp(m, "reverse") == 0) {
        if (!nargs_(k, 0, 0, &r))
            return r;
        return (e = mp_list_reverse(l)) == 0 ? ret_(mp__pv_none()) : fail_(e, NULL, NULL);
    }
    /* sort(*, key=None, reverse=False) */
    if (k->nargs != 0)
        return errorf_("TypeError", "sort() takes no positional arguments");
    bool rev = false;
    for (size_t j = 0; j < mp__pv_len(k->kwds); j++) {
        const mp__pv *key = k->kwds->u.seq.items[2 * j], *val = k->kwds->u.seq.items[2 * j + 1];
        if (mp__pv_is_str(key, "reverse") && (val->kind == MP__PV_BOOL || val->kind == MP__PV_INT))
            rev = val->kind == MP__PV_BOOL ? val->u.b : val->u.i != 0;
        else if (!mp__pv_is_str(key, "key") || val->kind != MP__PV_NONE)
            return errorf_("TypeError", "mpipc's manager sorts with reverse= only (no key function)");
    }
    return (e = mp_list_sort(l, rev)) == 0
               ? ret_(mp__pv_none())
               : fail_(e, NULL, NULL);
}

/* ---- dict and Namespace ------------------------------------------------------------------------ */

/* Append the pairs of a dict, or of a list/tuple of 2-item lists/tuples, to keys and values. */
static bool
pairs_of(const mp__pv *src, mp_item **keys, mp_item **vals, size_t *n, mp__pv **r)
{
    bool isdict = src->kind == MP__PV_DICT;
    if (!isdict && src->kind != MP__PV_LIST && src->kind != MP__PV_TUPLE) {
        *r = errorf_("TypeError", "'%s' object is not iterable as key/value pairs", type_name(src));
        return false;
    }
    size_t m = mp__pv_len(src);
    mp_item *nk = mp__realloc(*keys, (*n + m + 1) * sizeof *nk);
    if (nk != NULL)
        *keys = nk;
    mp_item *nv = nk != NULL ? mp__realloc(*vals, (*n + m + 1) * sizeof *nv) : NULL;
    if (nv == NULL) {
        *r = NULL;
        return false;
    }
    *vals = nv;
    for (size_t i = 0; i < m; i++) {
        const mp__pv *kk, *vv;
        if (isdict) {
            kk = src->u.seq.items[2 * i];
            vv = src->u.seq.items[2 * i + 1];
        } else {
            const mp__pv *p = mp__pv_item(src, i);
            if ((p->kind != MP__PV_TUPLE && p->kind != MP__PV_LIST) || mp__pv_len(p) != 2) {
                *r = errorf_("ValueError", "dictionary update sequence element #%zu has the wrong "
                                           "shape (a pair is required)",
                             i);
                return false;
            }
            kk = mp__pv_item(p, 0);
            vv = mp__pv_item(p, 1);
        }
        if (!item_of(kk, &nk[*n], r) || !item_of(vv, &nv[*n], r))
            return false;
        (*n)++;
    }
    return true;
}

/* update(*args, **kwds), also the dict(...) and Namespace(**kw) constructors. */
static mp__pv *
update_(mp_dict *d, const mp__pv *args, size_t from, const mp__pv *kwds)
{
    mp_item *keys = NULL, *vals = NULL;
    size_t n = 0;
    mp__pv *r = NULL;
    bool ok = true;
    if (mp__pv_len(args) > from + 1)
        return errorf_("TypeError", "update expected at most 1 argument, got %zu",
                       mp__pv_len(args) - from);
    if (mp__pv_len(args) == from + 1)
        ok = pairs_of(mp__pv_item(args, from), &keys, &vals, &n, &r);
    if (ok && kwds != NULL && mp__pv_len(kwds) > 0)
        ok = pairs_of(kwds, &keys, &vals, &n, &r);
    int e = ok ? mp_dict_update(d, keys, vals, n) : 0;
    mp__free(keys);
    mp__free(vals);
    if (!ok)
        return r;
    return e == 0 ? ret_(mp__pv_none()) : fail_(e, NULL, NULL);
}

mp__pv *
mp__serve_init(mp__cont *c, const mp__pv *args, size_t from, const mp__pv *kwds)
{
    return update_((mp_dict *)c, args, from, kwds);
}

/* A copy of the whole dict as a dict tree (copy(), #GETVALUE), or as the keys, values or
 * (key, value) tuples list ('k', 'v', 'i'). */
static mp__pv *
snapshot_(mp_dict *d, char what, mp__pv **r)
{
    mp_item *keys, *vals;
    size_t n;
    int e = mp_dict_items(d, &keys, &vals, &n);
    if (e != 0) {
        *r = fail_(e, NULL, NULL);
        return NULL;
    }
    mp__pv *out = what == 0 ? mp__pv_dict() : mp__pv_list();
    *r = NULL;
    for (size_t i = 0; i < n && out != NULL; i++) {
        mp__pv *kv = pv_of(&keys[i], r), *vv = pv_of(&vals[i], r), *x;
        int a;
        if (what == 0)
            a = mp__pv_dict_push(out, kv, vv);
        else {
            if (what == 'k')
                mp__pv_free(vv);
            else if (what == 'v')
                mp__pv_free(kv);
            x = what == 'k' ? kv : what == 'v' ? vv : mp__pv_tuple(2, kv, vv);
            a = mp__pv_append(out, x);
        }
        if (a != 0) {
            mp__pv_free(out);
            out = NULL;
        }
    }
    mp_items_free(keys, n);
    mp_items_free(vals, n);
    return out;
}

static mp__pv *
key_error_(const mp__pv *key)
{
    return error_("KeyError", mp__pv_copy(key));
}

static mp__pv *
dict_call(const call *k)
{
    mp_dict *d = (mp_dict *)k->c;
    const char *m = k->m;
    mp__pv *r = NULL, *pv;
    mp_item key, v, out;
    int e;
    if (strcmp(m, "update") == 0)
        return update_(d, k->args, 0, k->kwds);
    if (strcmp(m, "__len__") == 0 || strcmp(m, "clear") == 0 || strcmp(m, "popitem") == 0 ||
        strcmp(m, "copy") == 0 || strcmp(m, "keys") == 0 || strcmp(m, "values") == 0 ||
        strcmp(m, "items") == 0) {
        if (!nargs_(k, 0, 0, &r))
            return r;
        if (m[0] == '_') {
            ssize_t n = mp_dict_len(d);
            return n >= 0 ? ret_(mp__pv_int(n)) : fail_((int)n, NULL, NULL);
        }
        if (strcmp(m, "clear") == 0)
            return (e = mp_dict_clear(d)) == 0 ? ret_(mp__pv_none()) : fail_(e, NULL, NULL);
        if (strcmp(m, "copy") == 0)
            return (pv = snapshot_(d, 0, &r)) != NULL ? ret_(pv) : r;
        if (m[0] != 'p')
            return (pv = snapshot_(d, m[0], &r)) != NULL ? ret_(as_list_call_(pv)) : r;
        if ((e = mp_dict_popitem(d, &key, &v)) != 0)
            return fail_(e, errorf_("KeyError", "popitem(): dictionary is empty"), NULL);
        mp__pv *kv = pv_of(&key, &r), *r2 = NULL, *vv = pv_of(&v, &r2);
        if (kv != NULL && vv != NULL)
            return ret_(mp__pv_tuple(2, kv, vv));
        mp__pv_free(kv);
        mp__pv_free(vv);
        if (r == NULL)
            return r2;
        mp__pv_free(r2);
        return r;
    }
    bool set = strcmp(m, "__setitem__") == 0, sd = strcmp(m, "setdefault") == 0;
    bool get = strcmp(m, "get") == 0, pop = strcmp(m, "pop") == 0;
    size_t lo = set ? 2 : 1, hi = set || get || pop || sd ? 2 : 1;
    if (!set && !sd && !get && !pop && strcmp(m, "__getitem__") != 0 &&
        strcmp(m, "__delitem__") != 0 && strcmp(m, "__contains__") != 0)
        return NULL; /* not reached: the caller checked the exposed list */
    if (!nargs_(k, lo, hi, &r) || !item_of(arg_(k, 0), &key, &r))
        return r;
    const mp__pv *def = k->nargs == 2 ? arg_(k, 1) : NULL;
    if (set || sd) {
        mp_item dv = mp_item_none();
        if (def != NULL && !item_of(def, &dv, &r))
            return r;
        if (set)
            return (e = mp_dict_set(d, &key, &dv)) == 0 ? ret_(mp__pv_none()) : fail_(e, NULL, NULL);
        if ((e = mp_dict_setdefault(d, &key, &dv, &out)) != 0)
            return fail_(e, NULL, NULL);
        return (pv = pv_of(&out, &r)) != NULL ? ret_(pv) : r;
    }
    if (strcmp(m, "__contains__") == 0)
        return (e = mp_dict_contains(d, &key)) >= 0 ? ret_(mp__pv_bool(e)) : fail_(e, NULL, NULL);
    if (strcmp(m, "__delitem__") == 0)
        return (e = mp_dict_del(d, &key)) == 0 ? ret_(mp__pv_none())
                                               : fail_(e, key_error_(arg_(k, 0)), NULL);
    /* __getitem__, get and pop: a missing key gives the default (any value: it is not stored). */
    e = pop ? mp_dict_pop(d, &key, NULL, &out) : mp_dict_get(d, &key, NULL, &out);
    if (e == -ENOENT && (get || def != NULL))
        return ret_(def != NULL ? mp__pv_copy(def) : mp__pv_none());
    if (e != 0)
        return fail_(e, key_error_(arg_(k, 0)), NULL);
    return (pv = pv_of(&out, &r)) != NULL ? ret_(pv) : r;
}

static mp__pv *
ns_call(const call *k)
{
    mp_namespace *ns = (mp_namespace *)k->c;
    bool set = strcmp(k->m, "__setattr__") == 0, del = strcmp(k->m, "__delattr__") == 0;
    mp__pv *r = NULL, *pv;
    mp_item v, out;
    if (!nargs_(k, set ? 2 : 1, set ? 2 : 1, &r))
        return r;
    const mp__pv *name = arg_(k, 0);
    if (name->kind != MP__PV_STR)
        return errorf_("TypeError", "attribute name must be string, not '%s'", type_name(name));
    /* Names starting with '_' stay on Python's proxy; the server has none of them. */
    bool plain = strlen(name->u.s.data) == name->u.s.len && name->u.s.len > 0 &&
                 name->u.s.data[0] != '_';
    if (set && !item_of(arg_(k, 1), &v, &r))
        return r;
    int e = !plain ? -ENOENT
            : set  ? mp_namespace_set(ns, name->u.s.data, &v)
            : del  ? mp_namespace_del(ns, name->u.s.data)
                   : mp_namespace_get(ns, name->u.s.data, &out);
    if (e != 0)
        return fail_(e,
                     errorf_("AttributeError", "'Namespace' object has no attribute '%.200s'",
                             name->u.s.data),
                     NULL);
    if (set || del)
        return ret_(mp__pv_none());
    return (pv = pv_of(&out, &r)) != NULL ? ret_(pv) : r;
}

/* #GETVALUE: a copy of the referent as Python would pickle it. */
static mp__pv *
getvalue_(mp__cont *c)
{
    mp__pv *r = NULL, *v;
    if (c->kind == MP__KIND_LIST) {
        mp_item *items;
        size_t n;
        int e = mp_list_slice((mp_list *)c, MP_SLICE_DEFAULT, MP_SLICE_DEFAULT, 1, &items, &n);
        if (e != 0)
            return fail_(e, NULL, NULL);
        return (v = list_of(items, n, &r)) != NULL ? ret_(v) : r;
    }
    if ((v = snapshot_((mp_dict *)c, 0, &r)) == NULL)
        return r;
    if (c->kind == MP__KIND_DICT)
        return ret_(v);
    /* A Namespace pickles as copyreg.__newobj__: NEWOBJ of the class, then BUILD with its dict. */
    return ret_(mp__pv_object(mp__pv_global("multiprocessing.managers", "Namespace"),
                              mp__pv_tuple(0), v, true));
}

mp__pv *
mp__serve_call(mp__cont *c, const char *method, const mp__pv *args, const mp__pv *kwds)
{
    call k = {c, method, args, kwds, mp__pv_len(args)};
    bool fallback = strcmp(method, "#GETVALUE") == 0 || strcmp(method, "__repr__") == 0 ||
                    strcmp(method, "__str__") == 0;
    bool exposed = false;
    for (const char *const *e = exposed_of(c->kind); *e != NULL && !exposed; e++)
        exposed = strcmp(*e, method) == 0;
    if (!exposed && !fallback) {
        char names[512] = "";
        size_t at = 0;
        for (const char *const *e = exposed_of(c->kind); *e != NULL && at < sizeof names; e++)
            at += (size_t)snprintf(names + at, sizeof names - at, "%s'%s'", at > 0 ? ", " : "", *e);
        return mp__serve_traceback("AttributeError",
                                   "method '%.100s' of %s object is not in exposed={%s}\n\n"
                                   "During handling of the above exception, another exception "
                                   "occurred:\n\nKeyError: '%.100s'",
                                   method, class_of(c->kind), names, method);
    }
    if (fallback && !exposed) {
        if (method[0] == '#')
            return getvalue_(c);
        char *s;
        ssize_t n = mp__cont_repr(c, &s);
        if (n < 0)
            return fail_((int)n, NULL, NULL);
        mp__pv *v = mp__pv_str(s, (size_t)n);
        mp_free(s);
        return ret_(v);
    }
    return c->kind == MP__KIND_LIST ? list_call(&k) : c->kind == MP__KIND_DICT ? dict_call(&k)
                                                                               : ns_call(&k);
}
