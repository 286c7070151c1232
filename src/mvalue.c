/*
 * mvalue.c - the manager's item type: checking, storing in and copying out of the heap, and
 * Python's equality, order and hashing (repr is in mrepr.c).
 */
#include "manager.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- public helpers -------------------------------------------------------------------------- */

mp_item
mp_item_str(const char *s)
{
    mp_item it = {.type = MP_ITEM_STR, .v.s = {s, s != NULL ? strlen(s) : 0}};
    return it;
}

void
mp_item_clear(mp_item *it)
{
    if (it == NULL)
        return;
    switch (it->type) {
    case MP_ITEM_STR:
    case MP_ITEM_BYTES:
        mp__free((void *)it->v.s.ptr);
        break;
    case MP_ITEM_LIST:
    case MP_ITEM_DICT:
    case MP_ITEM_NAMESPACE:
        /* The three handle types share their layout (a mp__cont). */
        mp__cont_free(&it->v.list->c);
        break;
    default:
        break;
    }
    it->type = MP_ITEM_NONE;
    it->v.i = 0;
}

void
mp_items_free(mp_item *items, size_t n)
{
    if (items == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        mp_item_clear(&items[i]);
    mp__free(items);
}

/* ---- checking and storing -------------------------------------------------------------------- */

static bool
utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0)
            k = 1, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0)
            k = 2, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0)
            k = 3, cp = c & 0x07, min = 0x10000;
        else
            return false;
        if (n - i <= k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

static uint32_t
kind_of_type(mp_item_type t)
{
    return t == MP_ITEM_LIST ? MP__KIND_LIST : t == MP_ITEM_DICT ? MP__KIND_DICT : MP__KIND_NS;
}

int
mp__item_check(const mp__heap *h, const mp_item *it)
{
    if (it == NULL)
        return -EINVAL;
    switch (it->type) {
    case MP_ITEM_NONE:
    case MP_ITEM_BOOL:
    case MP_ITEM_INT:
    case MP_ITEM_FLOAT:
        return 0;
    case MP_ITEM_STR:
    case MP_ITEM_BYTES:
        if (it->v.s.ptr == NULL && it->v.s.len > 0)
            return -EINVAL;
        if (it->v.s.len >= ((size_t)1 << 55))
            return -ENOMEM; /* more than any heap can hold */
        if (it->type == MP_ITEM_STR && !utf8_valid((const unsigned char *)it->v.s.ptr, it->v.s.len))
            return -EINVAL;
        return 0;
    case MP_ITEM_LIST:
    case MP_ITEM_DICT:
    case MP_ITEM_NAMESPACE: {
        const mp__cont *c = it->v.list != NULL ? &it->v.list->c : NULL;
        if (c == NULL || c->h != h || c->kind != kind_of_type(it->type))
            return -EINVAL;
        return 0;
    }
    }
    return -EINVAL;
}

int
mp__slot_make(mp__heap *h, const mp_item *it, mp__slot *out)
{
    out->u = 0;
    size_t len = 0;
    switch (it->type) {
    case MP_ITEM_BOOL:
        out->u = it->v.b ? 1 : 0;
        break;
    case MP_ITEM_INT:
        out->u = (uint64_t)it->v.i;
        break;
    case MP_ITEM_FLOAT:
        memcpy(&out->u, &it->v.f, sizeof(double));
        break;
    case MP_ITEM_STR:
    case MP_ITEM_BYTES:
        len = it->v.s.len;
        if (len <= MP__SLOT_INLINE) {
            if (len > 0)
                memcpy(&out->u, it->v.s.ptr, len);
        } else {
            int err = 0;
            uint64_t off = mp__heap_alloc(h, len, &err);
            if (off == 0)
                return err;
            memcpy(mp__at(h, off), it->v.s.ptr, len);
            out->u = off;
        }
        break;
    case MP_ITEM_LIST:
    case MP_ITEM_DICT:
    case MP_ITEM_NAMESPACE:
        out->u = it->v.list->c.off;
        break;
    default:
        break;
    }
    out->tag = (uint64_t)it->type | (uint64_t)len << 8;
    return 0;
}

int
mp__slot_dup(mp__heap *h, const mp__slot *s, mp__slot *out)
{
    *out = *s;
    unsigned t = mp__slot_type(s);
    size_t len = mp__slot_len(s);
    if ((t == MP_ITEM_STR || t == MP_ITEM_BYTES) && len > MP__SLOT_INLINE) {
        int err = 0;
        uint64_t off = mp__heap_alloc(h, len, &err);
        if (off == 0)
            return err;
        memcpy(mp__at(h, off), mp__at(h, s->u), len);
        out->u = off;
    }
    return 0;
}

void
mp__slot_release(mp__heap *h, const mp__slot *s)
{
    unsigned t = mp__slot_type(s);
    if ((t == MP_ITEM_STR || t == MP_ITEM_BYTES) && mp__slot_len(s) > MP__SLOT_INLINE)
        mp__heap_free(h, s->u);
}

int
mp__slot_get(mp__heap *h, const mp__slot *s, mp_item *out)
{
    mp_item it = {.type = (mp_item_type)mp__slot_type(s)};
    switch (it.type) {
    case MP_ITEM_NONE:
        break;
    case MP_ITEM_BOOL:
        it.v.b = s->u != 0;
        break;
    case MP_ITEM_INT:
        it.v.i = (int64_t)s->u;
        break;
    case MP_ITEM_FLOAT:
        memcpy(&it.v.f, &s->u, sizeof(double));
        break;
    case MP_ITEM_STR:
    case MP_ITEM_BYTES: {
        size_t len = mp__slot_len(s);
        char *p = mp__malloc(len + 1);
        if (p == NULL)
            return -ENOMEM;
        memcpy(p, mp__slot_bytes(h, s), len);
        p[len] = '\0';
        it.v.s.ptr = p;
        it.v.s.len = len;
        break;
    }
    case MP_ITEM_LIST:
    case MP_ITEM_DICT:
    case MP_ITEM_NAMESPACE: {
        mp__cont *c = mp__cont_new(h, s->u, kind_of_type(it.type));
        if (c == NULL)
            return -ENOMEM;
        it.v.list = (mp_list *)c;
        break;
    }
    default:
        mp__panic("manager: corrupted item (type %u)", mp__slot_type(s));
    }
    *out = it;
    return 0;
}

/* ---- equality, order, hashing -------------------------------------------------------------------
 * Items and slots are compared through one view of either. */

typedef struct view {
    unsigned type;
    bool is_float; /* numbers: which of i / f holds the value */
    int64_t i;
    double f;
    const char *p; /* str / bytes */
    size_t len;
    uint64_t off; /* containers */
} view;

static view
view_slot(const mp__heap *h, const mp__slot *s)
{
    view v = {.type = mp__slot_type(s)};
    switch (v.type) {
    case MP_ITEM_BOOL:
    case MP_ITEM_INT:
        v.i = (int64_t)s->u;
        break;
    case MP_ITEM_FLOAT:
        v.is_float = true;
        memcpy(&v.f, &s->u, sizeof(double));
        break;
    case MP_ITEM_STR:
    case MP_ITEM_BYTES:
        v.p = mp__slot_bytes(h, s);
        v.len = mp__slot_len(s);
        break;
    default:
        v.off = s->u;
        break;
    }
    return v;
}

static view
view_item(const mp_item *it)
{
    view v = {.type = it->type};
    switch (it->type) {
    case MP_ITEM_BOOL:
        v.i = it->v.b;
        break;
    case MP_ITEM_INT:
        v.i = it->v.i;
        break;
    case MP_ITEM_FLOAT:
        v.is_float = true;
        v.f = it->v.f;
        break;
    case MP_ITEM_STR:
    case MP_ITEM_BYTES:
        v.p = it->v.s.ptr;
        v.len = it->v.s.len;
        break;
    case MP_ITEM_LIST:
    case MP_ITEM_DICT:
    case MP_ITEM_NAMESPACE:
        v.off = it->v.list->c.off;
        break;
    default:
        break;
    }
    return v;
}

static bool
is_num(unsigned t)
{
    return t == MP_ITEM_BOOL || t == MP_ITEM_INT || t == MP_ITEM_FLOAT;
}

/* Exact comparison of an int64 with a double: no rounding of the int through a conversion. */
static int
cmp_int_double(int64_t i, double d)
{
    if (isnan(d))
        return 2;
    if (d >= 9223372036854775808.0)
        return -1;
    if (d < -9223372036854775808.0)
        return 1;
    double t = trunc(d);
    int64_t ti = (int64_t)t;
    if (i != ti)
        return i < ti ? -1 : 1;
    return d > t ? -1 : d < t ? 1 : 0;
}

static int
cmp_num(const view *a, const view *b)
{
    if (!a->is_float && !b->is_float)
        return a->i < b->i ? -1 : a->i > b->i;
    if (!a->is_float)
        return cmp_int_double(a->i, b->f);
    if (!b->is_float) {
        int r = cmp_int_double(b->i, a->f);
        return r == 2 ? 2 : -r;
    }
    if (isnan(a->f) || isnan(b->f))
        return 2;
    return a->f < b->f ? -1 : a->f > b->f;
}

static int
cmp_text(const view *a, const view *b)
{
    size_t n = a->len < b->len ? a->len : b->len;
    int r = n > 0 ? memcmp(a->p, b->p, n) : 0;
    if (r != 0)
        return r < 0 ? -1 : 1;
    return a->len < b->len ? -1 : a->len > b->len;
}

static bool
view_eq(const view *a, const view *b)
{
    if (is_num(a->type) && is_num(b->type)) {
        /* Python compares a NaN equal to itself by identity; a copy stands for the object. */
        if (a->is_float && b->is_float && isnan(a->f) && isnan(b->f))
            return true;
        return cmp_num(a, b) == 0;
    }
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case MP_ITEM_NONE:
        return true;
    case MP_ITEM_STR:
    case MP_ITEM_BYTES:
        return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
    default:
        return a->off == b->off;
    }
}

bool
mp__slot_eq_item(const mp__heap *h, const mp__slot *s, const mp_item *it)
{
    view a = view_slot(h, s), b = view_item(it);
    return view_eq(&a, &b);
}

bool
mp__slot_eq(const mp__heap *h, const mp__slot *x, const mp__slot *y)
{
    view a = view_slot(h, x), b = view_slot(h, y);
    return view_eq(&a, &b);
}

int
mp__slot_order_class(const mp__slot *s)
{
    unsigned t = mp__slot_type(s);
    return is_num(t) ? 0 : t == MP_ITEM_STR ? 1 : t == MP_ITEM_BYTES ? 2 : -1;
}

int
mp__slot_cmp(const mp__heap *h, const mp__slot *x, const mp__slot *y)
{
    view a = view_slot(h, x), b = view_slot(h, y);
    if (is_num(a.type) && is_num(b.type))
        return cmp_num(&a, &b);
    if (a.type == b.type && (a.type == MP_ITEM_STR || a.type == MP_ITEM_BYTES))
        return cmp_text(&a, &b);
    return MP_ETYPE;
}

static uint64_t
mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

static uint64_t
hash_bytes(const char *p, size_t n, uint64_t seed)
{
    uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = mix64(h ^ w) + 0x9e3779b97f4a7c15ull;
        p += 8;
        n -= 8;
    }
    if (n > 0) {
        uint64_t w = 0;
        memcpy(&w, p, n);
        h = mix64(h ^ w ^ ((uint64_t)n << 59));
    }
    return mix64(h);
}

int
mp__item_hash(const mp_item *it, uint64_t *hash)
{
    view v = view_item(it);
    switch (v.type) {
    case MP_ITEM_NONE:
        *hash = 0x6e6f6e65ull;
        return 0;
    case MP_ITEM_BOOL:
    case MP_ITEM_INT:
        *hash = mix64((uint64_t)v.i);
        return 0;
    case MP_ITEM_FLOAT:
        /* Equal numbers must hash equal: an integral double hashes as the int it equals. */
        if (isnan(v.f)) {
            *hash = 0x6e616e;
        } else if (v.f == trunc(v.f) && v.f >= -9223372036854775808.0 &&
                   v.f < 9223372036854775808.0) {
            *hash = mix64((uint64_t)(int64_t)v.f);
        } else {
            uint64_t bits;
            memcpy(&bits, &v.f, sizeof bits);
            *hash = mix64(bits ^ 0x666c6f6174ull);
        }
        return 0;
    case MP_ITEM_STR:
        *hash = hash_bytes(v.p, v.len, 0x737472);
        return 0;
    case MP_ITEM_BYTES:
        *hash = hash_bytes(v.p, v.len, 0x6279746573);
        return 0;
    default:
        return MP_ETYPE; /* containers are unhashable, as Python's list and dict */
    }
}
