/*
 * shlist.c - mp_shlist: Python's multiprocessing.shared_memory.ShareableList, byte for byte.
 *
 * The segment holds, in native byte order (what struct's "@" mode packs on x86-64/aarch64):
 *
 *   int64 N | (N+1) x int64 slot offsets, relative to the data area | data area (the slots)
 *   | N x 8-byte struct format strings, NUL padded | N x int8 type codes
 *
 * Slots are 8 bytes for "q" (int64), "d" (double), "xxxxxxx?" (bool in the last byte) and
 * "xxxxxx?x" (None), and 8*(len/8+1) bytes for "<slot>s" (str as UTF-8 or bytes, NUL padded).
 * Codes: 0 number or bool, 1 str, 2 bytes, 3 None. Python reads N and the offsets once when it
 * attaches and the format and code of an item on every access; so does this file, validating
 * everything it reads, because the other writer may be any program.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

enum { CODE_PLAIN = 0, CODE_STR = 1, CODE_BYTES = 2, CODE_NONE = 3 };

/* The formats Python's _types_mapping produces, as stored (NUL padded to 8). */
#define FMT_INT "q"
#define FMT_FLOAT "d"
#define FMT_BOOL "xxxxxxx?"
#define FMT_NONE "xxxxxx?x"

/* The largest str/bytes slot whose format "<slot>s" still fits Python's 8 format bytes. */
#define SLOT_MAX 9999999u

struct mp_shlist {
    mp_shm *shm;
    unsigned char *base;
    size_t n;
    uint64_t *offs; /* n + 1 slot offsets relative to the data area, validated at open */
    size_t data;    /* offset of the data area: 8 * (n + 2) */
    size_t fmts;    /* offset of the format strings */
    size_t codes;   /* offset of the type codes */
};

/* ---- items ----------------------------------------------------------------------------------- */

/* utf8_valid - strict UTF-8 as Python's encoder writes it: no overlong forms, no surrogates,
 * nothing above U+10FFFF. A str that fails could not be read back by Python. */
static bool
utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t k;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            k = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (len - i <= k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += k + 1;
    }
    return true;
}

static int
check_item(const mp_shlist_item *it)
{
    switch (it->type) {
    case MP_SHLIST_NONE:
    case MP_SHLIST_INT:
    case MP_SHLIST_FLOAT:
    case MP_SHLIST_BOOL:
        return 0;
    case MP_SHLIST_STR:
    case MP_SHLIST_BYTES:
        if (it->v.s.ptr == NULL && it->v.s.len > 0)
            return -EINVAL;
        if (it->type == MP_SHLIST_STR && !utf8_valid(it->v.s.ptr, it->v.s.len))
            return -EINVAL;
        return 0;
    }
    return MP_ETYPE;
}

/* encode - the format, the code and the first 8 bytes of the slot for a non-str item, exactly
 * what struct.pack_into writes (pad bytes zero). */
static void
encode_plain(const mp_shlist_item *it, char fmt[8], signed char *code, unsigned char val[8])
{
    memset(fmt, 0, 8);
    memset(val, 0, 8);
    *code = CODE_PLAIN;
    switch (it->type) {
    case MP_SHLIST_INT:
        memcpy(fmt, FMT_INT, 1);
        memcpy(val, &it->v.i, 8);
        break;
    case MP_SHLIST_FLOAT:
        memcpy(fmt, FMT_FLOAT, 1);
        memcpy(val, &it->v.f, 8);
        break;
    case MP_SHLIST_BOOL:
        memcpy(fmt, FMT_BOOL, 8);
        val[7] = it->v.b ? 1 : 0;
        break;
    default:
        memcpy(fmt, FMT_NONE, 8);
        *code = CODE_NONE;
        break;
    }
}

static void
str_format(char fmt[8], size_t width)
{
    char tmp[16];
    int len = snprintf(tmp, sizeof tmp, "%zus", width);
    memset(fmt, 0, 8);
    memcpy(fmt, tmp, (size_t)len);
}

/* ---- reading slots --------------------------------------------------------------------------- */

static int
resolve(const mp_shlist *l, ptrdiff_t index, size_t *i)
{
    if (index < 0)
        index += (ptrdiff_t)l->n;
    if (index < 0 || (size_t)index >= l->n)
        return -ERANGE;
    *i = (size_t)index;
    return 0;
}

enum fmt_kind { FMT_K_INT, FMT_K_FLOAT, FMT_K_BOOL, FMT_K_NONE, FMT_K_STR };

/* read_format - item i's format without its NUL padding (Python's rstrip(b'\0')) in fmt, its
 * length in *len, its kind in *kind and, for "<width>s", the width in *width. -EPROTO for
 * anything Python cannot have written. */
static int
read_format(const mp_shlist *l, size_t i, char fmt[9], size_t *len, enum fmt_kind *kind,
            size_t *width)
{
    memcpy(fmt, l->base + l->fmts + 8 * i, 8);
    fmt[8] = '\0';
    size_t n = strlen(fmt);
    *len = n;
    *width = 0;
    /* The fixed formats compare as one 8-byte word each (the literals are NUL padded). */
    if (memcmp(fmt, FMT_INT "\0\0\0\0\0\0", 8) == 0)
        *kind = FMT_K_INT;
    else if (memcmp(fmt, FMT_FLOAT "\0\0\0\0\0\0", 8) == 0)
        *kind = FMT_K_FLOAT;
    else if (memcmp(fmt, FMT_BOOL, 8) == 0)
        *kind = FMT_K_BOOL;
    else if (memcmp(fmt, FMT_NONE, 8) == 0)
        *kind = FMT_K_NONE;
    else
        *kind = FMT_K_STR;
    if (*kind != FMT_K_STR)
        return 0;
    /* "<digits>s", then only NUL padding (a NUL inside is not Python's rstrip result). */
    for (size_t k = n; k < 8; k++)
        if (fmt[k] != '\0')
            return -EPROTO;
    size_t w = 0;
    for (size_t k = 0; k + 1 < n; k++) {
        if (fmt[k] < '0' || fmt[k] > '9')
            return -EPROTO;
        w = w * 10 + (size_t)(fmt[k] - '0');
    }
    if (n < 2 || fmt[n - 1] != 's' || w > l->offs[i + 1] - l->offs[i])
        return -EPROTO;
    *width = w;
    return 0;
}

/* view - item i as stored; a str/bytes value points into the mapping, trailing NULs dropped.
 * The type code decides, as in Python, and must agree with the format. */
static int
view(const mp_shlist *l, size_t i, mp_shlist_item *it)
{
    char fmt[9];
    size_t flen, width;
    enum fmt_kind kind;
    int r = read_format(l, i, fmt, &flen, &kind, &width);
    if (r != 0)
        return r;
    signed char code = (signed char)l->base[l->codes + i];
    const unsigned char *slot = l->base + l->data + l->offs[i];
    memset(it, 0, sizeof *it);
    if (code == CODE_NONE) {
        it->type = MP_SHLIST_NONE;
    } else if ((code == CODE_STR || code == CODE_BYTES) && kind == FMT_K_STR) {
        while (width > 0 && slot[width - 1] == '\0')
            width--;
        it->type = code == CODE_STR ? MP_SHLIST_STR : MP_SHLIST_BYTES;
        it->v.s.ptr = slot;
        it->v.s.len = width;
    } else if (code == CODE_PLAIN && kind == FMT_K_INT) {
        it->type = MP_SHLIST_INT;
        memcpy(&it->v.i, slot, 8);
    } else if (code == CODE_PLAIN && kind == FMT_K_FLOAT) {
        it->type = MP_SHLIST_FLOAT;
        memcpy(&it->v.f, slot, 8);
    } else if (code == CODE_PLAIN && kind == FMT_K_BOOL) {
        it->type = MP_SHLIST_BOOL;
        it->v.b = slot[7] != 0;
    } else {
        return -EPROTO;
    }
    return 0;
}

/* ---- open / close ---------------------------------------------------------------------------- */

static int
layout_attached(mp_shlist *l)
{
    size_t size = mp_shm_size(l->shm);
    int64_t n;
    if (size < 16)
        return -EPROTO;
    memcpy(&n, l->base, 8);
    /* 8*(N+2) header bytes plus 9*N bytes of formats and codes must fit. */
    if (n < 0 || (uint64_t)n > (size - 16) / 17)
        return -EPROTO;
    l->n = (size_t)n;
    l->data = 8 * (l->n + 2);
    l->offs = mp__malloc((l->n + 1) * sizeof *l->offs);
    if (l->offs == NULL)
        return -ENOMEM;
    memcpy(l->offs, l->base + 8, (l->n + 1) * 8);
    /* Python's slots start at 0 and are each at least 8 bytes. */
    if (l->offs[0] != 0)
        return -EPROTO;
    for (size_t i = 0; i < l->n; i++)
        if (l->offs[i + 1] < l->offs[i] + 8 || l->offs[i + 1] > size)
            return -EPROTO;
    if (l->offs[l->n] > size - l->data - 9 * l->n)
        return -EPROTO;
    l->fmts = l->data + l->offs[l->n];
    l->codes = l->fmts + 8 * l->n;
    return 0;
}

/* layout_new - the slot offsets and the segment size for items, as Python's constructor
 * computes them (struct.calcsize of the whole layout, which needs no padding since every part
 * is a multiple of 8 bytes except the trailing codes). */
static int
layout_new(mp_shlist *l, const mp_shlist_item *items, size_t n, size_t *size)
{
    if (n > SIZE_MAX / 64 - 2)
        return -ENOMEM;
    l->offs = mp__malloc((n + 1) * sizeof *l->offs);
    if (l->offs == NULL)
        return -ENOMEM;
    uint64_t off = 0;
    l->offs[0] = 0;
    for (size_t i = 0; i < n; i++) {
        const mp_shlist_item *it = &items[i];
        size_t slot = 8;
        if (it->type == MP_SHLIST_STR || it->type == MP_SHLIST_BYTES) {
            if (it->v.s.len / 8 >= SLOT_MAX / 8)
                return -E2BIG;
            slot = 8 * (it->v.s.len / 8 + 1);
        }
        off += slot;
        l->offs[i + 1] = off;
        if (off > (uint64_t)INT64_MAX / 2)
            return -ENOMEM;
    }
    l->n = n;
    l->data = 8 * (n + 2);
    l->fmts = l->data + (size_t)off;
    l->codes = l->fmts + 8 * n;
    *size = l->codes + n;
    return *size > (size_t)INT64_MAX ? -ENOMEM : 0;
}

static void
fill(mp_shlist *l, const mp_shlist_item *items)
{
    int64_t n = (int64_t)l->n;
    memcpy(l->base, &n, 8);
    memcpy(l->base + 8, l->offs, (l->n + 1) * 8);
    for (size_t i = 0; i < l->n; i++) {
        const mp_shlist_item *it = &items[i];
        unsigned char *slot = l->base + l->data + l->offs[i];
        char *fmt = (char *)l->base + l->fmts + 8 * i;
        signed char code;
        if (it->type == MP_SHLIST_STR || it->type == MP_SHLIST_BYTES) {
            str_format(fmt, (size_t)(l->offs[i + 1] - l->offs[i]));
            if (it->v.s.len > 0)
                memcpy(slot, it->v.s.ptr, it->v.s.len);
            code = it->type == MP_SHLIST_STR ? CODE_STR : CODE_BYTES;
        } else {
            encode_plain(it, fmt, &code, slot);
        }
        l->base[l->codes + i] = (unsigned char)code;
    }
}

int
mp_shlist_open(mp_shlist **out, const mp_shm_opts *opts, const mp_shlist_item *items, size_t n)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL || opts == NULL || opts->size != 0 || (items == NULL && n > 0) ||
        (!opts->create && (items != NULL || n > 0)))
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        int r = check_item(&items[i]);
        if (r != 0)
            return r;
    }
    mp_shlist *l = mp__calloc(1, sizeof *l);
    if (l == NULL)
        return -ENOMEM;
    int r = 0;
    mp_shm_opts o = *opts;
    if (opts->create)
        r = layout_new(l, items, n, &o.size);
    if (r == 0)
        r = mp_shm_open(&l->shm, &o);
    if (r == 0) {
        l->base = mp_shm_buf(l->shm);
        if (opts->create)
            fill(l, items);
        else
            r = layout_attached(l);
    }
    if (r != 0) {
        /* Only an attach can fail after the segment exists, and the name is not ours. */
        mp_shm_close(l->shm);
        mp__free(l->offs);
        mp__free(l);
        return r;
    }
    *out = l;
    return 0;
}

void
mp_shlist_close(mp_shlist *l)
{
    if (l == NULL)
        return;
    mp_shm_close(l->shm);
    mp__free(l->offs);
    mp__free(l);
}

mp_shm *
mp_shlist_shm(const mp_shlist *l)
{
    return l != NULL ? l->shm : NULL;
}

size_t
mp_shlist_len(const mp_shlist *l)
{
    return l != NULL ? l->n : 0;
}

/* ---- get / set ------------------------------------------------------------------------------- */

int
mp_shlist_get(const mp_shlist *l, ptrdiff_t index, mp_shlist_item *out, void *buf, size_t cap)
{
    if (l == NULL || out == NULL)
        return -EINVAL;
    size_t i;
    mp_shlist_item it;
    int r = resolve(l, index, &i);
    if (r == 0)
        r = view(l, i, &it);
    if (r != 0)
        return r;
    if (it.type == MP_SHLIST_STR || it.type == MP_SHLIST_BYTES) {
        if (buf == NULL || cap <= it.v.s.len) {
            out->type = it.type;
            out->v.s.ptr = NULL;
            out->v.s.len = it.v.s.len;
            return -EMSGSIZE;
        }
        memcpy(buf, it.v.s.ptr, it.v.s.len);
        ((char *)buf)[it.v.s.len] = '\0';
        it.v.s.ptr = buf;
    }
    *out = it;
    return 0;
}

int
mp_shlist_set(mp_shlist *l, ptrdiff_t index, const mp_shlist_item *item)
{
    if (l == NULL || item == NULL)
        return -EINVAL;
    size_t i;
    int r = check_item(item);
    if (r == 0)
        r = resolve(l, index, &i);
    if (r != 0)
        return r;
    char fmt[8];
    signed char code;
    unsigned char *slot = l->base + l->data + l->offs[i];
    if (item->type == MP_SHLIST_STR || item->type == MP_SHLIST_BYTES) {
        /* Python keeps a "<width>s" format and otherwise makes one of the whole slot; the
         * width of a format it wrote is always the slot size. */
        size_t width = (size_t)(l->offs[i + 1] - l->offs[i]);
        if (item->v.s.len > width)
            return -ENOSPC;
        if (width > SLOT_MAX)
            return -E2BIG;
        str_format(fmt, width);
        code = item->type == MP_SHLIST_STR ? CODE_STR : CODE_BYTES;
        /* Python's order: format, code, value. */
        memcpy(l->base + l->fmts + 8 * i, fmt, 8);
        l->base[l->codes + i] = (unsigned char)code;
        if (item->v.s.len > 0)
            memcpy(slot, item->v.s.ptr, item->v.s.len);
        memset(slot + item->v.s.len, 0, width - item->v.s.len);
    } else {
        unsigned char val[8];
        encode_plain(item, fmt, &code, val);
        memcpy(l->base + l->fmts + 8 * i, fmt, 8);
        l->base[l->codes + i] = (unsigned char)code;
        memcpy(slot, val, 8);
    }
    return 0;
}

/* ---- count / index / format ------------------------------------------------------------------ */

static bool
is_number(mp_shlist_type t)
{
    return t == MP_SHLIST_INT || t == MP_SHLIST_FLOAT || t == MP_SHLIST_BOOL;
}

/* float_equals_int - Python's exact int == float: no rounding of the int to a double. */
static bool
float_equals_int(double d, int64_t i)
{
    if (!(d >= -0x1p63 && d < 0x1p63))
        return false; /* out of range, or NaN */
    int64_t t = (int64_t)d;
    return (double)t == d && t == i;
}

/* equal - Python's == between two list items (bool is an int). */
static bool
equal(const mp_shlist_item *a, const mp_shlist_item *b)
{
    if (is_number(a->type) && is_number(b->type)) {
        if (a->type == MP_SHLIST_FLOAT && b->type == MP_SHLIST_FLOAT)
            return a->v.f == b->v.f;
        if (a->type == MP_SHLIST_FLOAT || b->type == MP_SHLIST_FLOAT) {
            const mp_shlist_item *f = a->type == MP_SHLIST_FLOAT ? a : b;
            const mp_shlist_item *n = f == a ? b : a;
            return float_equals_int(f->v.f, n->type == MP_SHLIST_BOOL ? n->v.b : n->v.i);
        }
        int64_t x = a->type == MP_SHLIST_BOOL ? a->v.b : a->v.i;
        int64_t y = b->type == MP_SHLIST_BOOL ? b->v.b : b->v.i;
        return x == y;
    }
    if (a->type != b->type)
        return false;
    if (a->type == MP_SHLIST_STR || a->type == MP_SHLIST_BYTES)
        return a->v.s.len == b->v.s.len &&
               (a->v.s.len == 0 || memcmp(a->v.s.ptr, b->v.s.ptr, a->v.s.len) == 0);
    return true; /* None == None */
}

/* search - count the matches of value, or with first set return the first one's index. */
static ssize_t
search(const mp_shlist *l, const mp_shlist_item *value, bool first)
{
    if (l == NULL || value == NULL)
        return -EINVAL;
    int r = check_item(value);
    if (r != 0)
        return r;
    ssize_t count = 0;
    for (size_t i = 0; i < l->n; i++) {
        mp_shlist_item it;
        r = view(l, i, &it);
        if (r != 0)
            return r;
        if (equal(&it, value)) {
            if (first)
                return (ssize_t)i;
            count++;
        }
    }
    return first ? -ENOENT : count;
}

ssize_t
mp_shlist_count(const mp_shlist *l, const mp_shlist_item *value)
{
    return search(l, value, false);
}

ssize_t
mp_shlist_index(const mp_shlist *l, const mp_shlist_item *value)
{
    return search(l, value, true);
}

ssize_t
mp_shlist_format(const mp_shlist *l, char *buf, size_t cap)
{
    if (l == NULL || (buf == NULL && cap > 0))
        return -EINVAL;
    size_t len = 0;
    for (size_t i = 0; i < l->n; i++) {
        char fmt[9];
        size_t flen, width;
        enum fmt_kind kind;
        int r = read_format(l, i, fmt, &flen, &kind, &width);
        if (r != 0)
            return r;
        if (len + flen >= cap)
            return -EMSGSIZE;
        memcpy(buf + len, fmt, flen);
        len += flen;
    }
    if (cap == 0)
        return -EMSGSIZE;
    buf[len] = '\0';
    return (ssize_t)len;
}
