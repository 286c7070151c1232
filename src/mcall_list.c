/*
 * mcall_list.c - ListProxy's methods on a shared list, for the manager process: CPython's
 * results and exceptions (see mcall.c).
 */
#include "mcall.h"

#include <string.h>

/* ---- list ------------------------------------------------------------------------------------ */

mp__pv *
mp__call_list(const mp__call *k)
{
    mp__server *srv = k->srv;
    mp_list *l = (mp_list *)k->c;
    const char *m = k->m;
    mp__pv *r = NULL;
    mp_item it, v, *items;
    size_t n;
    ptrdiff_t i, b[3];
    int e;
    if (strcmp(m, "__len__") == 0) {
        if (!mp__call_nargs(k, 0, 0, &r))
            return r;
        ssize_t len = mp_list_len(l);
        return len >= 0 ? mp__call_ret(mp__pv_int(len)) : mp__call_fail((int)len, NULL, NULL);
    }
    if (strcmp(m, "__getitem__") == 0 || strcmp(m, "__delitem__") == 0 || strcmp(m, "pop") == 0) {
        bool pop = m[0] == 'p', get = m[2] == 'g';
        if (!mp__call_nargs(k, pop ? 0 : 1, 1, &r))
            return r;
        if (k->nargs == 1 && !pop && mp__call_slice(mp__call_arg(k, 0), b, &r)) {
            if (r != NULL)
                return r;
            if (!get)
                return (e = mp_list_del_slice(l, b[0], b[1], b[2])) == 0
                           ? mp__call_ret(mp__pv_none())
                           : mp__call_fail(e, NULL, NULL);
            if ((e = mp_list_slice(l, b[0], b[1], b[2], &items, &n)) != 0)
                return mp__call_fail(e, NULL, NULL);
            mp__pv *lv = mp__call_list_of(srv, items, n, &r);
            return lv != NULL ? mp__call_ret(lv) : r;
        }
        i = -1;
        if (k->nargs == 1 && !mp__call_index(mp__call_arg(k, 0), &i, &r))
            return r;
        if (get) {
            if ((e = mp_list_get(l, i, &it)) != 0)
                return mp__call_fail(e, NULL, "list index out of range");
            mp__pv *pv = mp__call_pv(srv, &it, &r);
            return pv != NULL ? mp__call_ret(pv) : r;
        }
        if (!pop)
            return (e = mp_list_del(l, i)) == 0
                       ? mp__call_ret(mp__pv_none())
                       : mp__call_fail(e, NULL, "list assignment index out of range");
        ssize_t len = mp_list_len(l);
        if ((e = mp_list_pop(l, i, &it)) != 0)
            return mp__call_fail(e, NULL,
                                 len == 0 ? "pop from empty list" : "pop index out of range");
        mp__pv *pv = mp__call_pv(srv, &it, &r);
        return pv != NULL ? mp__call_ret(pv) : r;
    }
    if (strcmp(m, "__setitem__") == 0) {
        if (!mp__call_nargs(k, 2, 2, &r))
            return r;
        if (mp__call_slice(mp__call_arg(k, 0), b, &r)) {
            if (r != NULL)
                return r;
            if (b[2] != 1)
                return mp__call_errorf("ValueError",
                                       "mpipc's manager assigns only to slices of step 1");
            if (!mp__serve_items(srv, mp__call_arg(k, 1), &items, &n, &r))
                return r;
            e = mp_list_set_slice(l, b[0], b[1], items, n);
            mp__free(items);
            return e == 0 ? mp__call_ret(mp__pv_none()) : mp__call_fail(e, NULL, NULL);
        }
        if (!mp__call_index(mp__call_arg(k, 0), &i, &r) ||
            !mp__call_item(srv, mp__call_arg(k, 1), &v, &r))
            return r;
        return (e = mp_list_set(l, i, &v)) == 0
                   ? mp__call_ret(mp__pv_none())
                   : mp__call_fail(e, NULL, "list assignment index out of range");
    }
    if (strcmp(m, "append") == 0 || strcmp(m, "remove") == 0 || strcmp(m, "count") == 0 ||
        strcmp(m, "__contains__") == 0 || strcmp(m, "index") == 0) {
        if (!mp__call_nargs(k, 1, 1, &r)) {
            if (m[0] == 'i' && k->nargs > 1 && mp__pv_len(k->kwds) == 0) {
                mp__pv_free(r);
                return mp__call_errorf("TypeError",
                                       "mpipc's manager has no index() with start and stop");
            }
            return r;
        }
        if (!mp__call_item(srv, mp__call_arg(k, 0), &v, &r))
            return r;
        ssize_t x;
        switch (m[0]) {
        case 'a':
            return (e = mp_list_append(l, &v)) == 0 ? mp__call_ret(mp__pv_none())
                                                    : mp__call_fail(e, NULL, NULL);
        case 'r':
            return (e = mp_list_remove(l, &v)) == 0
                       ? mp__call_ret(mp__pv_none())
                       : mp__call_fail(
                             e, mp__call_errorf("ValueError", "list.remove(x): x not in list"),
                             NULL);
        case 'c':
            return (x = mp_list_count(l, &v)) >= 0 ? mp__call_ret(mp__pv_int(x))
                                                   : mp__call_fail((int)x, NULL, NULL);
        case '_':
            return (e = mp_list_contains(l, &v)) >= 0 ? mp__call_ret(mp__pv_bool(e))
                                                      : mp__call_fail(e, NULL, NULL);
        default:
            return (x = mp_list_index(l, &v)) >= 0
                       ? mp__call_ret(mp__pv_int(x))
                       : mp__call_fail(
                             (int)x, mp__call_errorf("ValueError", "list.index(x): x not in list"),
                             NULL);
        }
    }
    if (strcmp(m, "extend") == 0) {
        if (!mp__call_nargs(k, 1, 1, &r) ||
            !mp__serve_items(srv, mp__call_arg(k, 0), &items, &n, &r))
            return r;
        e = mp_list_extend(l, items, n);
        mp__free(items);
        return e == 0 ? mp__call_ret(mp__pv_none()) : mp__call_fail(e, NULL, NULL);
    }
    if (strcmp(m, "insert") == 0) {
        if (!mp__call_nargs(k, 2, 2, &r) || !mp__call_index(mp__call_arg(k, 0), &i, &r) ||
            !mp__call_item(srv, mp__call_arg(k, 1), &v, &r))
            return r;
        return (e = mp_list_insert(l, i, &v)) == 0 ? mp__call_ret(mp__pv_none())
                                                   : mp__call_fail(e, NULL, NULL);
    }
    if (strcmp(m, "reverse") == 0) {
        if (!mp__call_nargs(k, 0, 0, &r))
            return r;
        return (e = mp_list_reverse(l)) == 0 ? mp__call_ret(mp__pv_none())
                                             : mp__call_fail(e, NULL, NULL);
    }
    /* sort(*, key=None, reverse=False) */
    if (k->nargs != 0)
        return mp__call_errorf("TypeError", "sort() takes no positional arguments");
    bool rev = false;
    for (size_t j = 0; j < mp__pv_len(k->kwds); j++) {
        const mp__pv *key = k->kwds->u.seq.items[2 * j], *val = k->kwds->u.seq.items[2 * j + 1];
        if (mp__pv_is_str(key, "reverse") && (val->kind == MP__PV_BOOL || val->kind == MP__PV_INT))
            rev = val->kind == MP__PV_BOOL ? val->u.b : val->u.i != 0;
        else if (!mp__pv_is_str(key, "key") || val->kind != MP__PV_NONE)
            return mp__call_errorf("TypeError",
                                   "mpipc's manager sorts with reverse= only (no key function)");
    }
    return (e = mp_list_sort(l, rev)) == 0 ? mp__call_ret(mp__pv_none())
                                           : mp__call_fail(e, NULL, NULL);
}
