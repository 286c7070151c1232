/*
 * pickle_value.c - the mp__pv value trees that the pickle codec reads and writes.
 */
#include "internal.h"
#include "pickle.h"

#include <stdarg.h>
#include <string.h>

static mp__pv *
node(mp__pv_kind kind)
{
    mp__pv *v = mp__calloc(1, sizeof *v);
    if (v != NULL) {
        v->kind = kind;
        v->height = 1;
    }
    return v;
}

mp__pv *
mp__pv_none(void)
{
    return node(MP__PV_NONE);
}

mp__pv *
mp__pv_bool(bool b)
{
    mp__pv *v = node(MP__PV_BOOL);
    if (v != NULL)
        v->u.b = b;
    return v;
}

mp__pv *
mp__pv_int(int64_t i)
{
    mp__pv *v = node(MP__PV_INT);
    if (v != NULL)
        v->u.i = i;
    return v;
}

mp__pv *
mp__pv_float(double f)
{
    mp__pv *v = node(MP__PV_FLOAT);
    if (v != NULL)
        v->u.f = f;
    return v;
}

/* A node holding a private copy of len bytes, NUL-terminated. */
static mp__pv *
blob(mp__pv_kind kind, const void *p, size_t len)
{
    mp__pv *v = node(kind);
    if (v == NULL)
        return NULL;
    v->u.s.data = mp__malloc(len + 1);
    if (v->u.s.data == NULL) {
        mp__free(v);
        return NULL;
    }
    if (len > 0)
        memcpy(v->u.s.data, p, len);
    v->u.s.data[len] = '\0';
    v->u.s.len = len;
    return v;
}

mp__pv *
mp__pv_bigint(const uint8_t *le, size_t n)
{
    if (n == 0)
        return NULL;
    /* Trim sign bytes that repeat the sign of the byte below them: Python writes the minimal
     * form, and equality compares bytes. */
    while (n > 1 && ((le[n - 1] == 0x00 && !(le[n - 2] & 0x80)) ||
                     (le[n - 1] == 0xff && (le[n - 2] & 0x80))))
        n--;
    if (n <= 8) {
        uint64_t u = (le[n - 1] & 0x80) ? UINT64_MAX : 0;
        for (size_t k = 0; k < n; k++) {
            u &= ~((uint64_t)0xff << (8 * k));
            u |= (uint64_t)le[k] << (8 * k);
        }
        return mp__pv_int((int64_t)u);
    }
    return blob(MP__PV_BIGINT, le, n);
}

bool
mp__utf8_valid(const char *str, size_t len)
{
    const uint8_t *s = (const uint8_t *)str;
    for (size_t i = 0; i < len;) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i < n)
            return false;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        /* Overlong forms and code points above U+10FFFF are refused; surrogates are not,
         * because CPython pickles str with "surrogatepass". */
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return false;
        i += n;
    }
    return true;
}

mp__pv *
mp__pv_str(const char *s, size_t len)
{
    if (!mp__utf8_valid(s, len))
        return NULL;
    return blob(MP__PV_STR, s, len);
}

mp__pv *
mp__pv_cstr(const char *s)
{
    return mp__pv_str(s, strlen(s));
}

mp__pv *
mp__pv_bytes(const void *p, size_t len)
{
    return blob(MP__PV_BYTES, p, len);
}

mp__pv *
mp__pv_global(const char *module, const char *name)
{
    mp__pv *v = node(MP__PV_GLOBAL);
    if (v == NULL)
        return NULL;
    v->u.g.module = mp__strdup(module);
    v->u.g.name = mp__strdup(name);
    if (v->u.g.module == NULL || v->u.g.name == NULL) {
        mp__pv_free(v);
        return NULL;
    }
    return v;
}

static uint32_t
height_above(const mp__pv *child, uint32_t h)
{
    return child != NULL && child->height + 1 > h ? child->height + 1 : h;
}

mp__pv *
mp__pv_object(mp__pv *callable, mp__pv *args, mp__pv *state, bool newobj)
{
    mp__pv *v = NULL;
    if (callable != NULL && callable->kind == MP__PV_GLOBAL && args != NULL &&
        args->kind == MP__PV_TUPLE)
        v = node(MP__PV_OBJECT);
    if (v != NULL) {
        v->height = height_above(state, height_above(args, 2));
        if (v->height > MP__PV_MAX_HEIGHT) {
            mp__free(v);
            v = NULL;
        }
    }
    if (v == NULL) {
        mp__pv_free(callable);
        mp__pv_free(args);
        mp__pv_free(state);
        return NULL;
    }
    v->u.obj.callable = callable;
    v->u.obj.args = args;
    v->u.obj.state = state;
    v->u.obj.newobj = newobj;
    return v;
}

mp__pv *
mp__pv_list(void)
{
    return node(MP__PV_LIST);
}

mp__pv *
mp__pv_dict(void)
{
    return node(MP__PV_DICT);
}

mp__pv *
mp__pv_tuple(size_t n, ...)
{
    mp__pv *t = node(MP__PV_TUPLE);
    bool ok = t != NULL;
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++) {
        mp__pv *item = va_arg(ap, mp__pv *);
        if (ok)
            ok = mp__pv_append(t, item) == 0;
        else
            mp__pv_free(item);
    }
    va_end(ap);
    if (!ok) {
        mp__pv_free(t);
        return NULL;
    }
    return t;
}

/* Room for `more` item slots in a sequence or dict node. */
static int
reserve(mp__pv *v, size_t more)
{
    size_t need = v->u.seq.len * (v->kind == MP__PV_DICT ? 2 : 1) + more;
    if (need <= v->u.seq.cap)
        return 0;
    size_t cap = v->u.seq.cap < 4 ? 4 : v->u.seq.cap;
    while (cap < need)
        cap *= 2;
    mp__pv **items = mp__realloc(v->u.seq.items, cap * sizeof *items);
    if (items == NULL)
        return -ENOMEM;
    v->u.seq.items = items;
    v->u.seq.cap = cap;
    return 0;
}

int
mp__pv_append(mp__pv *seq, mp__pv *item)
{
    int r = 0;
    if (seq == NULL || item == NULL || (seq->kind != MP__PV_LIST && seq->kind != MP__PV_TUPLE))
        r = -EINVAL;
    else if (item->height + 1 > MP__PV_MAX_HEIGHT)
        r = -E2BIG;
    else
        r = reserve(seq, 1);
    if (r < 0) {
        mp__pv_free(item);
        return r;
    }
    seq->u.seq.items[seq->u.seq.len++] = item;
    seq->height = height_above(item, seq->height);
    return 0;
}

int
mp__pv_dict_set(mp__pv *d, mp__pv *key, mp__pv *value)
{
    int r = 0;
    if (d == NULL || key == NULL || value == NULL || d->kind != MP__PV_DICT)
        r = -EINVAL;
    else if (key->height + 1 > MP__PV_MAX_HEIGHT || value->height + 1 > MP__PV_MAX_HEIGHT)
        r = -E2BIG;
    if (r == 0) {
        for (size_t k = d->u.seq.len; k-- > 0;) {
            if (mp__pv_equal(d->u.seq.items[2 * k], key)) {
                mp__pv_free(key);
                mp__pv_free(d->u.seq.items[2 * k + 1]);
                d->u.seq.items[2 * k + 1] = value;
                d->height = height_above(value, d->height);
                return 0;
            }
        }
    }
    if (r < 0) {
        mp__pv_free(key);
        mp__pv_free(value);
        return r;
    }
    return mp__pv_dict_push(d, key, value);
}

int
mp__pv_dict_push(mp__pv *d, mp__pv *key, mp__pv *value)
{
    int r = d == NULL || key == NULL || value == NULL || d->kind != MP__PV_DICT ? -EINVAL
                                                                                : reserve(d, 2);
    if (r < 0) {
        mp__pv_free(key);
        mp__pv_free(value);
        return r;
    }
    d->u.seq.items[2 * d->u.seq.len] = key;
    d->u.seq.items[2 * d->u.seq.len + 1] = value;
    d->u.seq.len++;
    d->height = height_above(value, height_above(key, d->height));
    return 0;
}

static size_t
slots(const mp__pv *v)
{
    return v->kind == MP__PV_DICT ? 2 * v->u.seq.len : v->u.seq.len;
}

void
mp__pv_free(mp__pv *v)
{
    if (v == NULL)
        return;
    switch (v->kind) {
    case MP__PV_BIGINT:
    case MP__PV_STR:
    case MP__PV_BYTES:
        mp__free(v->u.s.data);
        break;
    case MP__PV_TUPLE:
    case MP__PV_LIST:
    case MP__PV_DICT:
        for (size_t i = 0; i < slots(v); i++)
            mp__pv_free(v->u.seq.items[i]);
        mp__free(v->u.seq.items);
        break;
    case MP__PV_GLOBAL:
        mp__free(v->u.g.module);
        mp__free(v->u.g.name);
        break;
    case MP__PV_OBJECT:
        mp__pv_free(v->u.obj.callable);
        mp__pv_free(v->u.obj.args);
        mp__pv_free(v->u.obj.state);
        break;
    default:
        break;
    }
    mp__free(v);
}

mp__pv *
mp__pv_copy(const mp__pv *v)
{
    switch (v->kind) {
    case MP__PV_BIGINT:
    case MP__PV_STR:
    case MP__PV_BYTES:
        return blob(v->kind, v->u.s.data, v->u.s.len);
    case MP__PV_GLOBAL:
        return mp__pv_global(v->u.g.module, v->u.g.name);
    case MP__PV_OBJECT: {
        /* A failed copy of the state must fail the whole copy, not drop the state. */
        mp__pv *state = NULL;
        if (v->u.obj.state != NULL && (state = mp__pv_copy(v->u.obj.state)) == NULL)
            return NULL;
        return mp__pv_object(mp__pv_copy(v->u.obj.callable), mp__pv_copy(v->u.obj.args), state,
                             v->u.obj.newobj);
    }
    case MP__PV_TUPLE:
    case MP__PV_LIST:
    case MP__PV_DICT: {
        mp__pv *c = node(v->kind);
        if (c == NULL || reserve(c, slots(v)) < 0) {
            mp__pv_free(c);
            return NULL;
        }
        for (size_t i = 0; i < slots(v); i++) {
            c->u.seq.items[i] = mp__pv_copy(v->u.seq.items[i]);
            if (c->u.seq.items[i] == NULL) {
                c->u.seq.len = v->kind == MP__PV_DICT ? i / 2 : i;
                /* A half-copied pair: free the lone key, which len no longer covers. */
                if (v->kind == MP__PV_DICT && i % 2 == 1)
                    mp__pv_free(c->u.seq.items[i - 1]);
                mp__pv_free(c);
                return NULL;
            }
        }
        c->u.seq.len = v->u.seq.len;
        c->height = v->height;
        return c;
    }
    default: {
        mp__pv *c = node(v->kind);
        if (c != NULL)
            c->u = v->u;
        return c;
    }
    }
}

bool
mp__pv_equal(const mp__pv *a, const mp__pv *b)
{
    if (a == b)
        return true;
    if (a == NULL || b == NULL || a->kind != b->kind)
        return false;
    switch (a->kind) {
    case MP__PV_NONE:
        return true;
    case MP__PV_BOOL:
        return a->u.b == b->u.b;
    case MP__PV_INT:
        return a->u.i == b->u.i;
    case MP__PV_FLOAT:
        return memcmp(&a->u.f, &b->u.f, sizeof a->u.f) == 0;
    case MP__PV_BIGINT:
    case MP__PV_STR:
    case MP__PV_BYTES:
        return a->u.s.len == b->u.s.len && memcmp(a->u.s.data, b->u.s.data, a->u.s.len) == 0;
    case MP__PV_TUPLE:
    case MP__PV_LIST:
    case MP__PV_DICT:
        if (a->u.seq.len != b->u.seq.len)
            return false;
        for (size_t i = 0; i < slots(a); i++)
            if (!mp__pv_equal(a->u.seq.items[i], b->u.seq.items[i]))
                return false;
        return true;
    case MP__PV_GLOBAL:
        return strcmp(a->u.g.module, b->u.g.module) == 0 && strcmp(a->u.g.name, b->u.g.name) == 0;
    case MP__PV_OBJECT:
        return a->u.obj.newobj == b->u.obj.newobj &&
               mp__pv_equal(a->u.obj.callable, b->u.obj.callable) &&
               mp__pv_equal(a->u.obj.args, b->u.obj.args) &&
               mp__pv_equal(a->u.obj.state, b->u.obj.state);
    }
    return false;
}

size_t
mp__pv_len(const mp__pv *v)
{
    if (v == NULL)
        return 0;
    switch (v->kind) {
    case MP__PV_STR:
    case MP__PV_BYTES:
        return v->u.s.len;
    case MP__PV_TUPLE:
    case MP__PV_LIST:
    case MP__PV_DICT:
        return v->u.seq.len;
    default:
        return 0;
    }
}

mp__pv *
mp__pv_item(const mp__pv *v, size_t i)
{
    if (v == NULL || (v->kind != MP__PV_TUPLE && v->kind != MP__PV_LIST) || i >= v->u.seq.len)
        return NULL;
    return v->u.seq.items[i];
}

mp__pv *
mp__pv_dict_get(const mp__pv *d, const mp__pv *key)
{
    if (d == NULL || d->kind != MP__PV_DICT)
        return NULL;
    for (size_t k = d->u.seq.len; k-- > 0;)
        if (mp__pv_equal(d->u.seq.items[2 * k], key))
            return d->u.seq.items[2 * k + 1];
    return NULL;
}

bool
mp__pv_is_str(const mp__pv *v, const char *s)
{
    size_t n = strlen(s);
    return v != NULL && v->kind == MP__PV_STR && v->u.s.len == n && memcmp(v->u.s.data, s, n) == 0;
}

mp__pv *
mp__pv_dict_get_str(const mp__pv *d, const char *key)
{
    if (d == NULL || d->kind != MP__PV_DICT)
        return NULL;
    for (size_t k = d->u.seq.len; k-- > 0;)
        if (mp__pv_is_str(d->u.seq.items[2 * k], key))
            return d->u.seq.items[2 * k + 1];
    return NULL;
}

bool
mp__pv_is_global(const mp__pv *v, const char *module, const char *name)
{
    if (v != NULL && v->kind == MP__PV_OBJECT)
        v = v->u.obj.callable;
    return v != NULL && v->kind == MP__PV_GLOBAL && strcmp(v->u.g.module, module) == 0 &&
           strcmp(v->u.g.name, name) == 0;
}
