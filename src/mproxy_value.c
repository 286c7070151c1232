/*
 * mproxy_value.c - the remote backend's values: mp_item to pickle trees and back (containers
 * travel as proxies, CPython's RebuildProxy with a Token), and the creation of containers on
 * the Python server.
 */
#include "mproxy.h"

#include <string.h>

int
mp__rvalue(mp__rman *rm, const mp_item *it, bool key, mp__pv **out)
{
    mp__pv *v = NULL;
    switch (it->type) {
    case MP_ITEM_NONE:
    case MP_ITEM_BOOL:
    case MP_ITEM_INT:
    case MP_ITEM_FLOAT:
        v = mp__scalar_pv(it);
        break;
    case MP_ITEM_STR:
    case MP_ITEM_BYTES:
        if (it->v.s.ptr == NULL && it->v.s.len > 0)
            return -EINVAL;
        if (it->type == MP_ITEM_STR && !mp__utf8_valid(it->v.s.ptr, it->v.s.len))
            return -EINVAL;
        v = mp__scalar_pv(it);
        break;
    case MP_ITEM_LIST:
    case MP_ITEM_DICT:
    case MP_ITEM_NAMESPACE: {
        uint32_t kind = it->type == MP_ITEM_LIST   ? MP__KIND_LIST
                        : it->type == MP_ITEM_DICT ? MP__KIND_DICT
                                                   : MP__KIND_NS;
        mp__cont *c = it->v.list != NULL ? &it->v.list->c : NULL;
        if (key)
            return MP_ETYPE;
        if (c == NULL || c->be != &mp__remote_backend || mp__rc(c)->rm != rm || c->kind != kind)
            return -EINVAL;
        v = mp__proxy_pv(kind, mp__pv_copy(rm->token_addr), mp__pv_cstr(mp__rc(c)->ident));
        break;
    }
    default:
        return -EINVAL;
    }
    if (v == NULL)
        return -ENOMEM;
    *out = v;
    return 0;
}

int
mp__rvalues(mp__rman *rm, const mp_item *items, size_t n, mp__pv **out)
{
    mp__pv *l = mp__pv_list();
    if (l == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        mp__pv *v;
        int r = mp__rvalue(rm, &items[i], false, &v);
        if (r == 0 && mp__pv_append(l, v) != 0)
            r = -ENOMEM;
        if (r != 0) {
            mp__pv_free(l);
            return r;
        }
    }
    *out = l;
    return 0;
}

/* The kind and ident of a proxy value (RebuildProxy(cls, Token, serializer, kwds)); 0 when v
 * is no proxy of a list, dict or Namespace. */
static uint32_t
proxy_of(const mp__pv *v, const char **ident)
{
    uint32_t kind;
    const mp__pv *id = mp__proxy_parse(v, &kind);
    if (id == NULL || id->kind != MP__PV_STR || id->u.s.len >= sizeof((mp__rcont *)0)->ident)
        return 0;
    *ident = id->u.s.data;
    return kind;
}

int
mp__ritem(mp__rman *rm, const mp__pv *v, mp_item *out, const mp__deadline *dl)
{
    mp_item it = {.type = MP_ITEM_NONE};
    const char *ident;
    uint32_t kind;
    switch (v->kind) {
    case MP__PV_NONE:
        break;
    case MP__PV_BOOL:
        it = mp_item_bool(v->u.b);
        break;
    case MP__PV_INT:
        it = mp_item_int(v->u.i);
        break;
    case MP__PV_FLOAT:
        it = mp_item_float(v->u.f);
        break;
    case MP__PV_STR:
    case MP__PV_BYTES: {
        if (out == NULL)
            return 0;
        char *p = mp__malloc(v->u.s.len + 1);
        if (p == NULL)
            return -ENOMEM;
        memcpy(p, v->u.s.data, v->u.s.len + 1);
        it.type = v->kind == MP__PV_STR ? MP_ITEM_STR : MP_ITEM_BYTES;
        it.v.s.ptr = p;
        it.v.s.len = v->u.s.len;
        break;
    }
    default:
        if ((kind = proxy_of(v, &ident)) == 0)
            return mp__rerror(MP_ETYPE, "a value of type %s, which an mp_item cannot hold",
                              mp__call_type_name(v));
        if (out == NULL)
            return 0;
        /* The new handle holds its own reference, as a rebuilt CPython proxy does. */
        int r = mp__rcontrol(rm, "incref", mp__rident_args(ident), NULL, dl);
        mp__cont *c = NULL;
        if (r == 0)
            r = mp__radopt(rm, ident, kind, &c, dl);
        if (r != 0)
            return r;
        it.type = kind == MP__KIND_LIST   ? MP_ITEM_LIST
                  : kind == MP__KIND_DICT ? MP_ITEM_DICT
                                          : MP_ITEM_NAMESPACE;
        it.v.list = (mp_list *)c;
    }
    if (out != NULL)
        *out = it;
    return 0;
}

/* Whether an exposed tuple has the methods the calls on `kind` use. */
static bool
exposes(const mp__pv *exposed, uint32_t kind)
{
    const char *need = kind == MP__KIND_LIST   ? "__getitem__"
                       : kind == MP__KIND_DICT ? "keys"
                                               : "__getattribute__";
    for (size_t i = 0; i < mp__pv_len(exposed); i++)
        if (mp__pv_is_str(mp__pv_item(exposed, i), need))
            return true;
    return false;
}

int
mp__rcreate(mp__rman *rm, const char *typeid, uint32_t kind, mp__pv *args, mp__cont **out,
            const mp__deadline *dl)
{
    mp__pv *a = args != NULL ? mp__pv_tuple(1, mp__pv_cstr(typeid)) : NULL, *res = NULL;
    for (size_t i = 0; a != NULL && i < mp__pv_len(args); i++) {
        /* The append consumes the item, whether it succeeds or not. */
        mp__pv *item = args->u.seq.items[i];
        args->u.seq.items[i] = NULL;
        if (mp__pv_append(a, item) != 0) {
            mp__pv_free(a);
            a = NULL;
        }
    }
    mp__pv_free(args);
    if (a == NULL)
        return -ENOMEM;
    int r = mp__rcontrol(rm, "create", a, &res, dl);
    if (r != 0)
        return r;
    /* (ident, exposed); create's own reference becomes the handle's. CPython's proxy takes
     * one more (incref) and then drops create's (decref): the same count, two round trips. */
    const mp__pv *id = mp__pv_item(res, 0), *exposed = mp__pv_item(res, 1);
    if (res->kind != MP__PV_TUPLE || mp__pv_len(res) != 2 || id->kind != MP__PV_STR ||
        id->u.s.len >= sizeof((mp__rcont *)0)->ident)
        r = mp__rerror(-EPROTO, "create(%s): a malformed reply", typeid);
    else if (!exposes(exposed, kind)) {
        mp__rcontrol(rm, "decref", mp__rident_args(id->u.s.data), NULL, dl);
        r = mp__rerror(MP_ETYPE, "typeid %s is no %s (register it with proxytype=%s)", typeid,
                       mp__kind_typeid[kind], mp__kind_proxy[kind]);
    } else
        r = mp__radopt(rm, id->u.s.data, kind, out, dl);
    mp__pv_free(res);
    return r;
}

int
mp__remote_create(mp__rman *rm, const char *typeid, uint32_t kind, const mp_item *items, size_t n,
                  mp__cont **out)
{
    mp__deadline dl;
    mp__rdeadline(rm, &dl);
    mp__pv *args;
    if (typeid == NULL && kind == MP__KIND_LIST) {
        mp__pv *l;
        int r = mp__rvalues(rm, items, n, &l);
        if (r != 0)
            return r;
        args = mp__pv_tuple(1, l);
    } else {
        args = mp__pv_tuple(0);
    }
    return mp__rcreate(rm, typeid != NULL ? typeid : mp__kind_typeid[kind], kind, args, out, &dl);
}
