/*
 * mcall.c - the container methods a Python proxy calls on the manager process: the exposed
 * lists, the dispatch with CPython's fallbacks (#GETVALUE, __repr__, __str__), and the value
 * conversions and replies that ListProxy's (mcall_list.c), DictProxy's and NamespaceProxy's
 * (mcall_dict.c) methods share.
 *
 * Arguments arrive as pickle trees and go to the public container calls as borrowed mp_item
 * values; results come back as trees. A value a container cannot hold (a tuple, a plain list
 * or dict, an int beyond int64) is answered with the exception Python would give for a value
 * of the wrong type (TypeError, or OverflowError for the int), before anything changes.
 */
#include "mcall.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const list_exposed[] = {"__contains__", "__delitem__", "__getitem__", "__len__",
                                           "__setitem__",  "append",      "count",       "extend",
                                           "index",        "insert",      "pop",         "remove",
                                           "reverse",      "sort",        NULL};
static const char *const dict_exposed[] = {"__contains__", "__delitem__", "__getitem__", "__len__",
                                           "__setitem__",  "clear",       "copy",        "get",
                                           "items",        "keys",        "pop",         "popitem",
                                           "setdefault",   "update",      "values",      NULL};
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
    for (uint32_t k = MP__KIND_LIST; k <= MP__KIND_NS; k++)
        if (strcmp(typeid, mp__kind_typeid[k]) == 0)
            return k;
    return 0;
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
mp__pv *
mp__call_error(const char *type, mp__pv *arg)
{
    mp__pv *args = arg != NULL ? mp__pv_tuple(1, arg) : mp__pv_tuple(0);
    return mp__serve_reply("#ERROR",
                           mp__pv_object(mp__pv_global("builtins", type), args, NULL, false));
}

mp__pv *
mp__call_errorf(const char *type, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mp__call_error(type, mp__pv_cstr(msg));
}

const char *
mp__call_type_name(const mp__pv *v)
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
bool
mp__call_item(mp__server *srv, const mp__pv *v, mp_item *it, mp__pv **err)
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
        *err = mp__call_errorf("OverflowError", "int too large for an mpipc manager item (int64)");
        return false;
    case MP__PV_OBJECT: {
        /* A proxy of a container of this manager: the item refers to that container. */
        mp__cont *c = mp__server_proxy_cont(srv, v);
        if (c == NULL)
            break;
        it->type = c->kind == MP__KIND_LIST   ? MP_ITEM_LIST
                   : c->kind == MP__KIND_DICT ? MP_ITEM_DICT
                                              : MP_ITEM_NAMESPACE;
        it->v.list = (mp_list *)c;
        return true;
    }
    default:
        break;
    }
    *err = mp__call_errorf("TypeError",
                           "an mpipc manager item is None, bool, int, float, str, bytes or a "
                           "proxy of this manager, not '%s'",
                           mp__call_type_name(v));
    return false;
}

bool
mp__serve_items(mp__server *srv, const mp__pv *seq, mp_item **out, size_t *n, mp__pv **err)
{
    *out = NULL;
    *n = 0;
    if (seq->kind != MP__PV_LIST && seq->kind != MP__PV_TUPLE) {
        *err = mp__call_errorf("TypeError", "'%s' object is not a list or tuple",
                               mp__call_type_name(seq));
        return false;
    }
    size_t len = mp__pv_len(seq);
    mp_item *items = len > 0 ? mp__calloc(len, sizeof *items) : NULL;
    if (len > 0 && items == NULL) {
        *err = NULL;
        return false;
    }
    for (size_t i = 0; i < len; i++)
        if (!mp__call_item(srv, mp__pv_item(seq, i), &items[i], err)) {
            mp__free(items);
            return false;
        }
    *out = items;
    *n = len;
    return true;
}

/* A tree for an item the library filled: consumes (clears) it. A nested container becomes a
 * proxy of it. */
mp__pv *
mp__call_pv(mp__server *srv, mp_item *it, mp__pv **err)
{
    mp__pv *v;
    *err = NULL;
    if (it->type < MP_ITEM_LIST) {
        v = mp__scalar_pv(it);
    } else if (srv != NULL) {
        /* A nested container travels as a proxy, as CPython's nested proxies do. */
        v = mp__server_proxy(srv, (const mp__cont *)it->v.list);
    } else {
        v = NULL;
        *err = mp__call_errorf("TypeError", "a nested container needs a server");
    }
    mp_item_clear(it);
    return v;
}

mp__pv *
mp__call_ret(mp__pv *v)
{
    return mp__serve_reply("#RETURN", v);
}

/* The reply for a failed container call r. `missing` is the reply for -ENOENT (may be NULL),
 * `range` the IndexError text for -ERANGE. */
mp__pv *
mp__call_fail(int r, mp__pv *missing, const char *range)
{
    if (r == -ENOENT && missing != NULL)
        return missing;
    mp__pv_free(missing);
    switch (r) {
    case -ERANGE:
        return mp__call_errorf("IndexError", "%s", range != NULL ? range : "index out of range");
    case MP_ETYPE:
        return mp__call_errorf("TypeError",
                               "'<' not supported between these items (or an unhashable key)");
    case -EINVAL:
        return mp__call_errorf("ValueError",
                               "a str that is not valid UTF-8 (or a name starting with '_')");
    case -ENOMEM:
    case -ENOSPC:
        return mp__call_errorf("MemoryError", "the manager's heap is full");
    default:
        return mp__serve_traceback("OSError", "mpipc manager: %s", mp_strerror(r));
    }
}

/* A sequence of items the library filled, as a list tree (consumes them). */
mp__pv *
mp__call_list_of(mp__server *srv, mp_item *items, size_t n, mp__pv **err)
{
    mp__pv *l = mp__pv_list();
    *err = NULL;
    for (size_t i = 0; i < n; i++) {
        mp__pv *v = l != NULL ? mp__call_pv(srv, &items[i], err) : NULL;
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

/* ---- argument checks ---------------------------------------------------------------------------
 */

/* Check the argument count (lo..hi positional, no keywords); on failure *r is the reply. */
bool
mp__call_nargs(const mp__call *k, size_t lo, size_t hi, mp__pv **r)
{
    if (mp__pv_len(k->kwds) != 0) {
        *r = mp__call_errorf("TypeError", "%s() takes no keyword arguments", k->m);
        return false;
    }
    if (k->nargs < lo || k->nargs > hi) {
        *r = lo == hi
                 ? mp__call_errorf("TypeError", "%s() takes exactly %zu argument%s (%zu given)",
                                   k->m, lo, lo == 1 ? "" : "s", k->nargs)
                 : mp__call_errorf("TypeError", "%s() takes from %zu to %zu arguments (%zu given)",
                                   k->m, lo, hi, k->nargs);
        return false;
    }
    return true;
}

const mp__pv *
mp__call_arg(const mp__call *k, size_t i)
{
    return mp__pv_item(k->args, i);
}

bool
mp__call_index(const mp__pv *v, ptrdiff_t *i, mp__pv **r)
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
        *r = mp__call_errorf("IndexError", "cannot fit 'int' into an index-sized integer");
    else
        *r = mp__call_errorf("TypeError", "list indices must be integers or slices, not %s",
                             mp__call_type_name(v));
    return false;
}

/* A slice(start, stop, step) object: its bounds, MP_SLICE_DEFAULT for None. */
bool
mp__call_slice(const mp__pv *v, ptrdiff_t b[3], mp__pv **r)
{
    if (!mp__pv_is_global(v, "builtins", "slice") || v->kind != MP__PV_OBJECT ||
        mp__pv_len(v->u.obj.args) != 3 || v->u.obj.state != NULL)
        return false;
    for (size_t i = 0; i < 3; i++) {
        const mp__pv *x = mp__pv_item(v->u.obj.args, i);
        if (x->kind == MP__PV_NONE)
            b[i] = i == 2 ? 1 : MP_SLICE_DEFAULT;
        else if (!mp__call_index(x, &b[i], r))
            return true;
    }
    if (b[2] == 0)
        *r = mp__call_errorf("ValueError", "slice step cannot be zero");
    return true;
}

/* #GETVALUE: a copy of the referent as Python would pickle it. */
static mp__pv *
getvalue_(mp__server *srv, mp__cont *c)
{
    mp__pv *r = NULL, *v;
    if (c->kind == MP__KIND_LIST) {
        mp_item *items;
        size_t n;
        int e = mp_list_slice((mp_list *)c, MP_SLICE_DEFAULT, MP_SLICE_DEFAULT, 1, &items, &n);
        if (e != 0)
            return mp__call_fail(e, NULL, NULL);
        return (v = mp__call_list_of(srv, items, n, &r)) != NULL ? mp__call_ret(v) : r;
    }
    if ((v = mp__call_snapshot(srv, (mp_dict *)c, 0, &r)) == NULL)
        return r;
    if (c->kind == MP__KIND_DICT)
        return mp__call_ret(v);
    /* A Namespace pickles as copyreg.__newobj__: NEWOBJ of the class, then BUILD with its dict. */
    return mp__call_ret(mp__pv_object(mp__pv_global("multiprocessing.managers", "Namespace"),
                                      mp__pv_tuple(0), v, true));
}

mp__pv *
mp__serve_call(mp__server *srv, mp__cont *c, const char *method, const mp__pv *args,
               const mp__pv *kwds)
{
    mp__call k = {srv, c, method, args, kwds, mp__pv_len(args)};
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
            return getvalue_(srv, c);
        char *s;
        ssize_t n = mp__cont_repr(c, &s);
        if (n < 0)
            return mp__call_fail((int)n, NULL, NULL);
        mp__pv *v = mp__pv_str(s, (size_t)n);
        mp_free(s);
        return mp__call_ret(v);
    }
    return c->kind == MP__KIND_LIST   ? mp__call_list(&k)
           : c->kind == MP__KIND_DICT ? mp__call_dict(&k)
                                      : mp__call_ns(&k);
}
