/*
 * mcall_dict.c - DictProxy's and NamespaceProxy's methods on a shared dict or Namespace, for
 * the manager process: CPython's results and exceptions (see mcall.c).
 */
#include "mcall.h"

#include <string.h>

/* CPython pickles dict views (keys(), values(), items()) as builtins.list(the list). */
static mp__pv *
as_list_call_(mp__pv *l)
{
    return mp__pv_object(mp__pv_global("builtins", "list"), mp__pv_tuple(1, l), NULL, false);
}

/* ---- dict and Namespace ------------------------------------------------------------------------
 */

/* Append the pairs of a dict, or of a list/tuple of 2-item lists/tuples, to keys and values. */
static bool
pairs_of(mp__server *srv, const mp__pv *src, mp_item **keys, mp_item **vals, size_t *n, mp__pv **r)
{
    bool isdict = src->kind == MP__PV_DICT;
    if (!isdict && src->kind != MP__PV_LIST && src->kind != MP__PV_TUPLE) {
        *r = mp__call_errorf("TypeError", "'%s' object is not iterable as key/value pairs",
                             mp__call_type_name(src));
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
                *r = mp__call_errorf("ValueError",
                                     "dictionary update sequence element #%zu has the wrong "
                                     "shape (a pair is required)",
                                     i);
                return false;
            }
            kk = mp__pv_item(p, 0);
            vv = mp__pv_item(p, 1);
        }
        if (!mp__call_item(srv, kk, &nk[*n], r) || !mp__call_item(srv, vv, &nv[*n], r))
            return false;
        (*n)++;
    }
    return true;
}

/* update(*args, **kwds), also the dict(...) and Namespace(**kw) constructors. */
static mp__pv *
update_(mp__server *srv, mp_dict *d, const mp__pv *args, size_t from, const mp__pv *kwds)
{
    mp_item *keys = NULL, *vals = NULL;
    size_t n = 0;
    mp__pv *r = NULL;
    bool ok = true;
    if (mp__pv_len(args) > from + 1)
        return mp__call_errorf("TypeError", "update expected at most 1 argument, got %zu",
                               mp__pv_len(args) - from);
    if (mp__pv_len(args) == from + 1)
        ok = pairs_of(srv, mp__pv_item(args, from), &keys, &vals, &n, &r);
    if (ok && kwds != NULL && mp__pv_len(kwds) > 0)
        ok = pairs_of(srv, kwds, &keys, &vals, &n, &r);
    int e = ok ? mp_dict_update(d, keys, vals, n) : 0;
    mp__free(keys);
    mp__free(vals);
    if (!ok)
        return r;
    return e == 0 ? mp__call_ret(mp__pv_none()) : mp__call_fail(e, NULL, NULL);
}

mp__pv *
mp__serve_init(mp__server *srv, mp__cont *c, const mp__pv *args, size_t from, const mp__pv *kwds)
{
    return update_(srv, (mp_dict *)c, args, from, kwds);
}

/* A copy of the whole dict as a dict tree (copy(), #GETVALUE), or as the keys, values or
 * (key, value) tuples list ('k', 'v', 'i'). */
mp__pv *
mp__call_snapshot(mp__server *srv, mp_dict *d, char what, mp__pv **r)
{
    mp_item *keys, *vals;
    size_t n;
    int e = mp_dict_items(d, &keys, &vals, &n);
    if (e != 0) {
        *r = mp__call_fail(e, NULL, NULL);
        return NULL;
    }
    mp__pv *out = what == 0 ? mp__pv_dict() : mp__pv_list();
    *r = NULL;
    for (size_t i = 0; i < n && out != NULL; i++) {
        mp__pv *kv = mp__call_pv(srv, &keys[i], r), *vv = mp__call_pv(srv, &vals[i], r), *x;
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
    return mp__call_error("KeyError", mp__pv_copy(key));
}

mp__pv *
mp__call_dict(const mp__call *k)
{
    mp__server *srv = k->srv;
    mp_dict *d = (mp_dict *)k->c;
    const char *m = k->m;
    mp__pv *r = NULL, *pv;
    mp_item key, v, out;
    int e;
    if (strcmp(m, "update") == 0)
        return update_(srv, d, k->args, 0, k->kwds);
    if (strcmp(m, "__len__") == 0 || strcmp(m, "clear") == 0 || strcmp(m, "popitem") == 0 ||
        strcmp(m, "copy") == 0 || strcmp(m, "keys") == 0 || strcmp(m, "values") == 0 ||
        strcmp(m, "items") == 0) {
        if (!mp__call_nargs(k, 0, 0, &r))
            return r;
        if (m[0] == '_') {
            ssize_t n = mp_dict_len(d);
            return n >= 0 ? mp__call_ret(mp__pv_int(n)) : mp__call_fail((int)n, NULL, NULL);
        }
        if (strcmp(m, "clear") == 0)
            return (e = mp_dict_clear(d)) == 0 ? mp__call_ret(mp__pv_none())
                                               : mp__call_fail(e, NULL, NULL);
        if (strcmp(m, "copy") == 0)
            return (pv = mp__call_snapshot(srv, d, 0, &r)) != NULL ? mp__call_ret(pv) : r;
        if (m[0] != 'p')
            return (pv = mp__call_snapshot(srv, d, m[0], &r)) != NULL
                       ? mp__call_ret(as_list_call_(pv))
                       : r;
        if ((e = mp_dict_popitem(d, &key, &v)) != 0)
            return mp__call_fail(e, mp__call_errorf("KeyError", "popitem(): dictionary is empty"),
                                 NULL);
        mp__pv *kv = mp__call_pv(srv, &key, &r), *r2 = NULL, *vv = mp__call_pv(srv, &v, &r2);
        if (kv != NULL && vv != NULL)
            return mp__call_ret(mp__pv_tuple(2, kv, vv));
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
    if (!mp__call_nargs(k, lo, hi, &r) || !mp__call_item(srv, mp__call_arg(k, 0), &key, &r))
        return r;
    const mp__pv *def = k->nargs == 2 ? mp__call_arg(k, 1) : NULL;
    if (set || sd) {
        mp_item dv = mp_item_none();
        if (def != NULL && !mp__call_item(srv, def, &dv, &r))
            return r;
        if (set)
            return (e = mp_dict_set(d, &key, &dv)) == 0 ? mp__call_ret(mp__pv_none())
                                                        : mp__call_fail(e, NULL, NULL);
        if ((e = mp_dict_setdefault(d, &key, &dv, &out)) != 0)
            return mp__call_fail(e, NULL, NULL);
        return (pv = mp__call_pv(srv, &out, &r)) != NULL ? mp__call_ret(pv) : r;
    }
    if (strcmp(m, "__contains__") == 0)
        return (e = mp_dict_contains(d, &key)) >= 0 ? mp__call_ret(mp__pv_bool(e))
                                                    : mp__call_fail(e, NULL, NULL);
    if (strcmp(m, "__delitem__") == 0)
        return (e = mp_dict_del(d, &key)) == 0
                   ? mp__call_ret(mp__pv_none())
                   : mp__call_fail(e, key_error_(mp__call_arg(k, 0)), NULL);
    /* __getitem__, get and pop: a missing key gives the default (any value: it is not stored). */
    e = pop ? mp_dict_pop(d, &key, NULL, &out) : mp_dict_get(d, &key, NULL, &out);
    if (e == -ENOENT && (get || def != NULL))
        return mp__call_ret(def != NULL ? mp__pv_copy(def) : mp__pv_none());
    if (e != 0)
        return mp__call_fail(e, key_error_(mp__call_arg(k, 0)), NULL);
    return (pv = mp__call_pv(srv, &out, &r)) != NULL ? mp__call_ret(pv) : r;
}

mp__pv *
mp__call_ns(const mp__call *k)
{
    mp__server *srv = k->srv;
    mp_namespace *ns = (mp_namespace *)k->c;
    bool set = strcmp(k->m, "__setattr__") == 0, del = strcmp(k->m, "__delattr__") == 0;
    mp__pv *r = NULL, *pv;
    mp_item v, out;
    if (!mp__call_nargs(k, set ? 2 : 1, set ? 2 : 1, &r))
        return r;
    const mp__pv *name = mp__call_arg(k, 0);
    if (name->kind != MP__PV_STR)
        return mp__call_errorf("TypeError", "attribute name must be string, not '%s'",
                               mp__call_type_name(name));
    /* Names starting with '_' stay on Python's proxy; the server has none of them. */
    bool plain =
        strlen(name->u.s.data) == name->u.s.len && name->u.s.len > 0 && name->u.s.data[0] != '_';
    if (set && !mp__call_item(srv, mp__call_arg(k, 1), &v, &r))
        return r;
    int e = !plain ? -ENOENT
            : set  ? mp_namespace_set(ns, name->u.s.data, &v)
            : del  ? mp_namespace_del(ns, name->u.s.data)
                   : mp_namespace_get(ns, name->u.s.data, &out);
    if (e != 0)
        return mp__call_fail(e,
                             mp__call_errorf("AttributeError",
                                             "'Namespace' object has no attribute '%.200s'",
                                             name->u.s.data),
                             NULL);
    if (set || del)
        return mp__call_ret(mp__pv_none());
    return (pv = mp__call_pv(srv, &out, &r)) != NULL ? mp__call_ret(pv) : r;
}
