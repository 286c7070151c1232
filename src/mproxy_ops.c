/*
 * mproxy_ops.c - the container operations of the remote backend: each is one call of the
 * method a CPython proxy calls for the same Python operation (ListProxy, DictProxy,
 * NamespaceProxy), so the results and exceptions are the server's own. Python's ListProxy has
 * no clear(): it is del l[:]. Snapshots of a dict or Namespace (keys, values, items, repr) are
 * one #GETVALUE, a consistent copy in insertion order.
 */
#include "mproxy.h"

#include <string.h>

/* The deadline and the handle of one operation. */
#define BEGIN(c)                                                                                   \
    mp__rcont *rc = mp__rc(c);                                                                     \
    mp__deadline dl;                                                                               \
    mp__rdeadline(rc->rm, &dl)

static mp__pv *
slice_(ptrdiff_t start, ptrdiff_t stop, ptrdiff_t step)
{
    ptrdiff_t b[3] = {start, stop, step};
    mp__pv *args = mp__pv_tuple(0);
    for (int i = 0; i < 3 && args != NULL; i++)
        if (mp__pv_append(args, b[i] == MP_SLICE_DEFAULT ? mp__pv_none() : mp__pv_int(b[i])) != 0) {
            mp__pv_free(args);
            args = NULL;
        }
    return mp__pv_object(mp__pv_global("builtins", "slice"), args, NULL, false);
}

/* A call whose result is an int (len, index, count) or a bool (contains). */
static ssize_t
call_int(mp__rcont *rc, const char *method, mp__pv *args, const mp__deadline *dl)
{
    mp__pv *res = NULL;
    int r = mp__rcall(rc, method, args, NULL, &res, dl);
    ssize_t n = r;
    if (r == 0)
        n = res->kind == MP__PV_INT && res->u.i >= 0 ? (ssize_t)res->u.i
            : res->kind == MP__PV_BOOL               ? res->u.b
                                       : mp__rerror(MP_ETYPE, "%s: not an int", method);
    mp__pv_free(res);
    return n;
}

/* A call whose result goes to *out (NULL: dropped). */
static int
call_item(mp__rcont *rc, const char *method, mp__pv *args, mp__pv *kwds, mp_item *out,
          const mp__deadline *dl)
{
    mp__pv *res = NULL;
    int r = mp__rcall(rc, method, args, kwds, &res, dl);
    if (r == 0)
        r = mp__ritem(rc->rm, res, out, dl);
    mp__pv_free(res);
    return r;
}

/* A tuple of the tree for an integer (may be absent: -1 means none) and up to two items. */
static int
args_of(mp__rcont *rc, const ptrdiff_t *i, const mp_item *a, bool akey, const mp_item *b,
        mp__pv **out)
{
    mp__pv *t = mp__pv_tuple(0), *v;
    int r = t != NULL ? 0 : -ENOMEM;
    if (r == 0 && i != NULL && mp__pv_append(t, mp__pv_int(*i)) != 0)
        r = -ENOMEM;
    if (r == 0 && a != NULL && (r = mp__rvalue(rc->rm, a, akey, &v)) == 0 && mp__pv_append(t, v))
        r = -ENOMEM;
    if (r == 0 && b != NULL && (r = mp__rvalue(rc->rm, b, false, &v)) == 0 && mp__pv_append(t, v))
        r = -ENOMEM;
    if (r != 0)
        mp__pv_free(t);
    else
        *out = t;
    return r;
}

/* ---- list ------------------------------------------------------------------------------------ */

static ssize_t
rlist_len(mp__cont *c)
{
    BEGIN(c);
    return call_int(rc, "__len__", mp__pv_tuple(0), &dl);
}

static int
rlist_get(mp__cont *c, ptrdiff_t i, mp_item *out)
{
    BEGIN(c);
    mp__pv *a;
    int r = args_of(rc, &i, NULL, false, NULL, &a);
    return r != 0 ? r : call_item(rc, "__getitem__", a, NULL, out, &dl);
}

static int
rlist_set(mp__cont *c, ptrdiff_t i, const mp_item *v)
{
    BEGIN(c);
    mp__pv *a;
    int r = args_of(rc, &i, v, false, NULL, &a);
    return r != 0 ? r : mp__rcall(rc, "__setitem__", a, NULL, NULL, &dl);
}

/* Items for the caller from a list tree. */
static int
items_of(mp__rcont *rc, const mp__pv *l, mp_item **out, size_t *n, const mp__deadline *dl)
{
    if (l->kind != MP__PV_LIST && l->kind != MP__PV_TUPLE)
        return mp__rerror(MP_ETYPE, "a %s where a list was expected", mp__call_type_name(l));
    size_t len = mp__pv_len(l);
    mp_item *items = len > 0 ? mp__calloc(len, sizeof *items) : NULL;
    if (len > 0 && items == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < len; i++) {
        int r = mp__ritem(rc->rm, mp__pv_item(l, i), &items[i], dl);
        if (r != 0) {
            mp_items_free(items, i);
            return r;
        }
    }
    *out = items;
    *n = len;
    return 0;
}

static int
rlist_slice(mp__cont *c, ptrdiff_t start, ptrdiff_t stop, ptrdiff_t step, mp_item **out, size_t *n)
{
    BEGIN(c);
    mp__pv *res = NULL;
    int r =
        mp__rcall(rc, "__getitem__", mp__pv_tuple(1, slice_(start, stop, step)), NULL, &res, &dl);
    if (r == 0)
        r = items_of(rc, res, out, n, &dl);
    mp__pv_free(res);
    return r;
}

static int
rlist_set_slice(mp__cont *c, ptrdiff_t start, ptrdiff_t stop, const mp_item *items, size_t n)
{
    BEGIN(c);
    mp__pv *l;
    int r = mp__rvalues(rc->rm, items, n, &l);
    if (r != 0)
        return r;
    return mp__rcall(rc, "__setitem__", mp__pv_tuple(2, slice_(start, stop, MP_SLICE_DEFAULT), l),
                     NULL, NULL, &dl);
}

static int
rlist_del_slice(mp__cont *c, ptrdiff_t start, ptrdiff_t stop, ptrdiff_t step)
{
    BEGIN(c);
    return mp__rcall(rc, "__delitem__", mp__pv_tuple(1, slice_(start, stop, step)), NULL, NULL,
                     &dl);
}

static int
rlist_append(mp__cont *c, const mp_item *v)
{
    BEGIN(c);
    mp__pv *a;
    int r = args_of(rc, NULL, v, false, NULL, &a);
    return r != 0 ? r : mp__rcall(rc, "append", a, NULL, NULL, &dl);
}

static int
rlist_extend(mp__cont *c, const mp_item *items, size_t n)
{
    BEGIN(c);
    mp__pv *l;
    int r = mp__rvalues(rc->rm, items, n, &l);
    return r != 0 ? r : mp__rcall(rc, "extend", mp__pv_tuple(1, l), NULL, NULL, &dl);
}

static int
rlist_insert(mp__cont *c, ptrdiff_t i, const mp_item *v)
{
    BEGIN(c);
    mp__pv *a;
    int r = args_of(rc, &i, v, false, NULL, &a);
    return r != 0 ? r : mp__rcall(rc, "insert", a, NULL, NULL, &dl);
}

static int
rlist_pop(mp__cont *c, ptrdiff_t i, mp_item *out)
{
    BEGIN(c);
    mp__pv *a;
    int r = args_of(rc, &i, NULL, false, NULL, &a);
    if (r != 0)
        return r;
    /* del l[i] when the item is not wanted: nothing comes back. */
    if (out == NULL)
        return mp__rcall(rc, "__delitem__", a, NULL, NULL, &dl);
    return call_item(rc, "pop", a, NULL, out, &dl);
}

static ssize_t
rlist_find(mp__cont *c, const mp_item *v, int what)
{
    BEGIN(c);
    mp__pv *a;
    int r = args_of(rc, NULL, v, false, NULL, &a);
    if (r != 0)
        return r;
    if (what == MP__FIND_REMOVE)
        return mp__rcall(rc, "remove", a, NULL, NULL, &dl);
    return call_int(rc, what == MP__FIND_INDEX ? "index" : "count", a, &dl);
}

static int
rlist_reverse(mp__cont *c)
{
    BEGIN(c);
    return mp__rcall(rc, "reverse", mp__pv_tuple(0), NULL, NULL, &dl);
}

static int
rlist_sort(mp__cont *c, bool reverse)
{
    BEGIN(c);
    mp__pv *kw = mp__pv_dict();
    if (kw == NULL || mp__pv_dict_set(kw, mp__pv_cstr("reverse"), mp__pv_bool(reverse)) != 0) {
        mp__pv_free(kw);
        return -ENOMEM;
    }
    return mp__rcall(rc, "sort", mp__pv_tuple(0), kw, NULL, &dl);
}

static int
rlist_clear(mp__cont *c)
{
    return rlist_del_slice(c, MP_SLICE_DEFAULT, MP_SLICE_DEFAULT, MP_SLICE_DEFAULT);
}

/* ---- dict and Namespace ---------------------------------------------------------------------- */

/* A copy of the dict's contents (a Namespace's: its attributes) as a dict tree, borrowed from
 * *holder, which the caller frees. */
static int
getvalue(mp__rcont *rc, mp__pv **holder, const mp__pv **d, const mp__deadline *dl)
{
    int r = mp__rcall(rc, "#GETVALUE", mp__pv_tuple(0), NULL, holder, dl);
    if (r != 0)
        return r;
    const mp__pv *v = *holder;
    if (v->kind == MP__PV_OBJECT && v->u.obj.state != NULL)
        v = v->u.obj.state; /* a Namespace: NEWOBJ, then BUILD with its __dict__ */
    else if (v->kind == MP__PV_OBJECT)
        v = NULL; /* a Namespace without attributes */
    if (v != NULL && v->kind != MP__PV_DICT) {
        mp__pv_free(*holder);
        return mp__rerror(MP_ETYPE, "#GETVALUE gave a %s", mp__call_type_name(v));
    }
    *d = v;
    return 0;
}

/* A Namespace's attributes exclude the names Python keeps on the proxy ('_...'). */
static bool
visible(const mp__rcont *rc, const mp__pv *key)
{
    return rc->c.kind != MP__KIND_NS || (key->kind == MP__PV_STR && key->u.s.data[0] != '_');
}

static int
rdict_snapshot(mp__cont *c, mp_item **keys, mp_item **values, size_t *n)
{
    BEGIN(c);
    mp__pv *holder;
    const mp__pv *d;
    int r = getvalue(rc, &holder, &d, &dl);
    if (r != 0)
        return r;
    size_t len = mp__pv_len(d), k = 0;
    mp_item *ks = keys != NULL && len > 0 ? mp__calloc(len, sizeof *ks) : NULL;
    mp_item *vs = values != NULL && len > 0 ? mp__calloc(len, sizeof *vs) : NULL;
    if ((keys != NULL && len > 0 && ks == NULL) || (values != NULL && len > 0 && vs == NULL))
        r = -ENOMEM;
    for (size_t i = 0; r == 0 && i < len; i++) {
        const mp__pv *key = d->u.seq.items[2 * i], *val = d->u.seq.items[2 * i + 1];
        if (!visible(rc, key))
            continue;
        if (ks != NULL && (r = mp__ritem(rc->rm, key, &ks[k], &dl)) != 0)
            break;
        if (vs != NULL && (r = mp__ritem(rc->rm, val, &vs[k], &dl)) != 0) {
            if (ks != NULL)
                mp_item_clear(&ks[k]);
            break;
        }
        k++;
    }
    mp__pv_free(holder);
    if (r != 0) {
        mp_items_free(ks, k);
        mp_items_free(vs, k);
        return r;
    }
    if (keys != NULL)
        *keys = ks;
    if (values != NULL)
        *values = vs;
    *n = k;
    return 0;
}

static ssize_t
rdict_len(mp__cont *c)
{
    BEGIN(c);
    if (c->kind == MP__KIND_DICT)
        return call_int(rc, "__len__", mp__pv_tuple(0), &dl);
    size_t n;
    int r = rdict_snapshot(c, NULL, NULL, &n);
    return r != 0 ? r : (ssize_t)n;
}

static int
rdict_get(mp__cont *c, const mp_item *key, const mp_item *def, mp_item *out)
{
    BEGIN(c);
    mp__pv *a;
    int r = args_of(rc, NULL, key, true, def, &a);
    if (r != 0)
        return r;
    if (c->kind == MP__KIND_NS)
        r = call_item(rc, "__getattribute__", a, NULL, out, &dl);
    else if (out == NULL)
        return (int)call_int(rc, "__contains__", a, &dl);
    else
        r = call_item(rc, def != NULL ? "get" : "__getitem__", a, NULL, out, &dl);
    /* Without out, the Namespace's answer is whether the attribute exists. */
    return out == NULL && r == 0 ? 1 : out == NULL && r == -ENOENT ? 0 : r;
}

static int
rdict_set(mp__cont *c, const mp_item *key, const mp_item *v, int mode, mp_item *out)
{
    BEGIN(c);
    mp_item none = mp_item_none();
    mp__pv *a;
    int r = args_of(rc, NULL, key, true, v != NULL ? v : &none, &a);
    if (r != 0)
        return r;
    if (mode == MP__SET_DEFAULT)
        return call_item(rc, "setdefault", a, NULL, out, &dl);
    return mp__rcall(rc, c->kind == MP__KIND_NS ? "__setattr__" : "__setitem__", a, NULL, NULL,
                     &dl);
}

static int
rdict_pop(mp__cont *c, const mp_item *key, const mp_item *def, mp_item *out)
{
    BEGIN(c);
    mp__pv *a;
    int r = args_of(rc, NULL, key, true, def, &a);
    if (r != 0)
        return r;
    if (c->kind == MP__KIND_NS)
        return mp__rcall(rc, "__delattr__", a, NULL, NULL, &dl);
    if (out == NULL && def == NULL)
        return mp__rcall(rc, "__delitem__", a, NULL, NULL, &dl);
    return call_item(rc, "pop", a, NULL, out, &dl);
}

static int
rdict_popitem(mp__cont *c, mp_item *key, mp_item *value)
{
    BEGIN(c);
    mp__pv *res = NULL;
    int r = mp__rcall(rc, "popitem", mp__pv_tuple(0), NULL, &res, &dl);
    if (r != 0)
        return r;
    mp_item k = mp_item_none();
    if (res->kind != MP__PV_TUPLE || mp__pv_len(res) != 2)
        r = mp__rerror(MP_ETYPE, "popitem gave a %s", mp__call_type_name(res));
    else if ((r = mp__ritem(rc->rm, mp__pv_item(res, 0), key != NULL ? &k : NULL, &dl)) == 0 &&
             (r = mp__ritem(rc->rm, mp__pv_item(res, 1), value, &dl)) != 0)
        mp_item_clear(&k);
    if (r == 0 && key != NULL)
        *key = k;
    mp__pv_free(res);
    return r;
}

static int
rdict_update(mp__cont *c, const mp_item *keys, const mp_item *values, size_t n)
{
    BEGIN(c);
    /* update([(k, v), ...]): every pair is converted (and checked) before anything is sent. */
    mp__pv *pairs = mp__pv_list();
    int r = pairs != NULL ? 0 : -ENOMEM;
    for (size_t i = 0; r == 0 && i < n; i++) {
        mp__pv *a;
        if ((r = args_of(rc, NULL, &keys[i], true, &values[i], &a)) == 0 &&
            mp__pv_append(pairs, a) != 0)
            r = -ENOMEM;
    }
    if (r != 0) {
        mp__pv_free(pairs);
        return r;
    }
    return mp__rcall(rc, "update", mp__pv_tuple(1, pairs), NULL, NULL, &dl);
}

static int
rdict_copy(mp__cont *c, mp__cont **out)
{
    BEGIN(c);
    /* DictProxy.copy() gives a plain dict; a shared copy is a new dict made from it. */
    mp__pv *holder;
    const mp__pv *d;
    int r = getvalue(rc, &holder, &d, &dl);
    if (r != 0)
        return r;
    mp__pv *copy = d != NULL ? mp__pv_copy(d) : mp__pv_dict();
    mp__pv_free(holder);
    if (copy == NULL)
        return -ENOMEM;
    return mp__rcreate(rc->rm, "dict", MP__KIND_DICT, mp__pv_tuple(1, copy), out, &dl);
}

static int
rdict_clear(mp__cont *c)
{
    BEGIN(c);
    return mp__rcall(rc, "clear", mp__pv_tuple(0), NULL, NULL, &dl);
}

const mp__backend mp__remote_backend = {
    .list_len = rlist_len,
    .list_get = rlist_get,
    .list_set = rlist_set,
    .list_slice = rlist_slice,
    .list_set_slice = rlist_set_slice,
    .list_del_slice = rlist_del_slice,
    .list_append = rlist_append,
    .list_extend = rlist_extend,
    .list_insert = rlist_insert,
    .list_pop = rlist_pop,
    .list_find = rlist_find,
    .list_reverse = rlist_reverse,
    .list_sort = rlist_sort,
    .list_clear = rlist_clear,
    .len = rdict_len,
    .dict_get = rdict_get,
    .dict_set = rdict_set,
    .dict_pop = rdict_pop,
    .dict_popitem = rdict_popitem,
    .dict_snapshot = rdict_snapshot,
    .dict_update = rdict_update,
    .dict_copy = rdict_copy,
    .clear = rdict_clear,
    .cont_free = mp__rcont_free,
};
