/*
 * mrepr.c - Python's repr() for manager items and containers.
 *
 * A container is printed from a snapshot taken under its own lock, so no two container locks
 * are ever held together (printing a dict of lists never locks the dict and a list at once).
 */
#include "manager.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

void
mp__buf_put(mp__buf *b, const char *s, size_t n)
{
    if (b->err != 0)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap < 64 ? 64 : b->cap;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = mp__realloc(b->p, cap);
        if (p == NULL) {
            b->err = -ENOMEM;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void
mp__buf_puts(mp__buf *b, const char *s)
{
    mp__buf_put(b, s, strlen(s));
}

ssize_t
mp__buf_finish(mp__buf *b, char **out)
{
    if (b->err == 0 && b->p == NULL)
        mp__buf_put(b, "", 0);
    if (b->err != 0) {
        mp__free(b->p);
        return b->err;
    }
    *out = b->p;
    return (ssize_t)b->len;
}

/* Python's float repr: the shortest digits that read back as the same double, in fixed
 * notation when the decimal exponent is in [-4, 16), otherwise as d.ddde+XX. */
void
mp__repr_float(mp__buf *b, double f)
{
    if (isnan(f)) {
        mp__buf_puts(b, "nan");
        return;
    }
    if (isinf(f)) {
        mp__buf_puts(b, f < 0 ? "-inf" : "inf");
        return;
    }
    char e[40];
    for (int prec = 0; prec < 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec, f);
        if (strtod(e, NULL) == f)
            break;
    }
    /* e is "[-]d[.ddd]e[+-]XX": pull out the sign, the digits and the exponent. */
    char digits[24];
    size_t nd = 0;
    const char *p = e;
    bool neg = *p == '-';
    if (neg)
        p++;
    for (; *p != 'e'; p++)
        if (*p != '.')
            digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    char out[64];
    size_t n = 0;
    if (neg)
        out[n++] = '-';
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            out[n++] = '0';
            out[n++] = '.';
            for (int i = -1; i > exp; i--)
                out[n++] = '0';
            memcpy(out + n, digits, nd);
            n += nd;
        } else {
            for (int i = 0; i <= exp; i++)
                out[n++] = (size_t)i < nd ? digits[i] : '0';
            out[n++] = '.';
            if ((size_t)exp + 1 < nd) {
                memcpy(out + n, digits + exp + 1, nd - (size_t)exp - 1);
                n += nd - (size_t)exp - 1;
            } else {
                out[n++] = '0';
            }
        }
        mp__buf_put(b, out, n);
        return;
    }
    out[n++] = digits[0];
    if (nd > 1) {
        out[n++] = '.';
        memcpy(out + n, digits + 1, nd - 1);
        n += nd - 1;
    }
    n += (size_t)snprintf(out + n, sizeof out - n, "e%c%02d", exp < 0 ? '-' : '+',
                          exp < 0 ? -exp : exp);
    mp__buf_put(b, out, n);
}

/* Python's quoting: single quotes unless the text has a ' and no ", backslash escapes for the
 * quote, \\, \t, \n, \r and other control bytes (\xNN). Bytes >= 0x7f are \xNN in a bytes repr;
 * in a str they are UTF-8 text, copied as is. */
void
mp__repr_text(mp__buf *b, const char *s, size_t n, bool bytes)
{
    bool sq = memchr(s, '\'', n) != NULL, dq = memchr(s, '"', n) != NULL;
    char q = sq && !dq ? '"' : '\'';
    if (bytes)
        mp__buf_put(b, "b", 1);
    mp__buf_put(b, &q, 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[5];
        const char *rep = NULL;
        if (c == (unsigned char)q || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c, esc[2] = '\0';
            rep = esc;
        } else if (c == '\t') {
            rep = "\\t";
        } else if (c == '\n') {
            rep = "\\n";
        } else if (c == '\r') {
            rep = "\\r";
        } else if (c < 0x20 || c == 0x7f || (bytes && c > 0x7f)) {
            snprintf(esc, sizeof esc, "\\x%02x", c);
            rep = esc;
        }
        if (rep != NULL) {
            mp__buf_put(b, s + run, i - run);
            mp__buf_puts(b, rep);
            run = i + 1;
        }
    }
    mp__buf_put(b, s + run, n - run);
    mp__buf_put(b, &q, 1);
}

#define REPR_DEPTH 64

static void repr_item(mp__buf *b, const mp_item *it, const uint64_t *seen, int depth);

static int
cmp_strp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A container: its snapshot is taken under its lock and printed after, so that no two
 * container locks are ever held together. */
static void
repr_cont(mp__buf *b, mp__cont *c, const uint64_t *seen, int depth)
{
    static const char *const again[] = {"", "[...]", "{...}", "Namespace(...)"};
    for (int i = 0; i < depth; i++)
        if (seen[i] == c->off) {
            mp__buf_puts(b, again[c->kind]);
            return;
        }
    if (depth >= REPR_DEPTH) {
        mp__buf_puts(b, again[c->kind]);
        return;
    }
    uint64_t next[REPR_DEPTH];
    if (depth > 0)
        memcpy(next, seen, (size_t)depth * sizeof *seen);
    next[depth++] = c->off;
    mp_item *keys = NULL, *vals = NULL;
    size_t n = 0;
    int r = c->kind == MP__KIND_LIST
                ? c->be->list_slice(c, MP_SLICE_DEFAULT, MP_SLICE_DEFAULT, 1, &vals, &n)
                : c->be->dict_snapshot(c, &keys, &vals, &n);
    if (r != 0) {
        b->err = r;
        return;
    }
    if (c->kind == MP__KIND_LIST) {
        mp__buf_puts(b, "[");
        for (size_t i = 0; i < n; i++) {
            if (i > 0)
                mp__buf_puts(b, ", ");
            repr_item(b, &vals[i], next, depth);
        }
        mp__buf_puts(b, "]");
    } else if (c->kind == MP__KIND_DICT) {
        mp__buf_puts(b, "{");
        for (size_t i = 0; i < n; i++) {
            if (i > 0)
                mp__buf_puts(b, ", ");
            repr_item(b, &keys[i], next, depth);
            mp__buf_puts(b, ": ");
            repr_item(b, &vals[i], next, depth);
        }
        mp__buf_puts(b, "}");
    } else {
        /* Python's Namespace.__repr__ sorts the "name=value" strings. */
        char **parts = mp__calloc(n > 0 ? n : 1, sizeof *parts);
        if (parts == NULL)
            b->err = -ENOMEM;
        for (size_t i = 0; parts != NULL && i < n; i++) {
            mp__buf pb = {0};
            mp__buf_put(&pb, keys[i].v.s.ptr, keys[i].v.s.len);
            mp__buf_puts(&pb, "=");
            repr_item(&pb, &vals[i], next, depth);
            if (mp__buf_finish(&pb, &parts[i]) < 0)
                b->err = -ENOMEM;
        }
        if (b->err == 0) {
            qsort(parts, n, sizeof *parts, cmp_strp);
            mp__buf_puts(b, "Namespace(");
            for (size_t i = 0; i < n; i++) {
                if (i > 0)
                    mp__buf_puts(b, ", ");
                mp__buf_puts(b, parts[i]);
            }
            mp__buf_puts(b, ")");
        }
        for (size_t i = 0; parts != NULL && i < n; i++)
            mp__free(parts[i]);
        mp__free(parts);
    }
    mp_items_free(keys, n);
    mp_items_free(vals, n);
}

static void
repr_item(mp__buf *b, const mp_item *it, const uint64_t *seen, int depth)
{
    char num[32];
    switch (it->type) {
    case MP_ITEM_NONE:
        mp__buf_puts(b, "None");
        break;
    case MP_ITEM_BOOL:
        mp__buf_puts(b, it->v.b ? "True" : "False");
        break;
    case MP_ITEM_INT:
        snprintf(num, sizeof num, "%" PRId64, it->v.i);
        mp__buf_puts(b, num);
        break;
    case MP_ITEM_FLOAT:
        mp__repr_float(b, it->v.f);
        break;
    case MP_ITEM_STR:
    case MP_ITEM_BYTES:
        mp__repr_text(b, it->v.s.ptr != NULL ? it->v.s.ptr : "", it->v.s.len,
                      it->type == MP_ITEM_BYTES);
        break;
    case MP_ITEM_LIST:
    case MP_ITEM_DICT:
    case MP_ITEM_NAMESPACE:
        repr_cont(b, &it->v.list->c, seen, depth);
        break;
    default:
        b->err = -EINVAL;
    }
}

ssize_t
mp_item_repr(const mp_item *it, char **out)
{
    if (it == NULL || out == NULL)
        return -EINVAL;
    if (it->type > MP_ITEM_NAMESPACE || (it->type >= MP_ITEM_LIST && it->v.list == NULL))
        return -EINVAL;
    mp__buf b = {0};
    repr_item(&b, it, NULL, 0);
    return mp__buf_finish(&b, out);
}

ssize_t
mp__cont_repr(mp__cont *c, char **out)
{
    mp__buf b = {0};
    repr_cont(&b, c, NULL, 0);
    return mp__buf_finish(&b, out);
}
