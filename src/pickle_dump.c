/*
 * pickle_dump.c - encode mp__pv trees as CPython's C Pickler (Modules/_pickle.c) does.
 *
 * The same opcode for each value, the same batching of APPENDS/SETITEMS, a MEMOIZE (BINPUT below
 * protocol 4) after the same values, and the same framing: a frame is committed when it holds
 * 64 KiB at the start of a value, and payloads of 64 KiB or more go outside any frame. The one
 * difference: CPython writes BINGET for an object it has already written (the same object, by
 * identity), while a tree has no shared nodes, so such values are written again (docs/pickle.md).
 */
#include "internal.h"
#include "pickle.h"
#include "pickle_ops.h"

#include <string.h>

#define FRAME_HEADER 9          /* FRAME + u64 length */
#define FRAME_SIZE_MIN 4        /* smaller frames are written without a header */
#define FRAME_SIZE_TARGET 65536 /* a frame is committed once it holds this much */
#define BATCH 1000              /* items per APPENDS or SETITEMS */
#define NO_FRAME SIZE_MAX

typedef struct enc {
    uint8_t *buf;
    size_t len, cap;
    int proto;
    bool framing;
    size_t frame_start; /* offset of the open frame's header, or NO_FRAME */
    uint32_t memo;      /* entries memoized so far: the next BINPUT index */
} enc;

static int
put(enc *e, const void *data, size_t n)
{
    size_t need = n + (e->framing && e->frame_start == NO_FRAME ? FRAME_HEADER : 0);
    if (e->cap - e->len < need) {
        size_t cap = e->cap < 256 ? 256 : e->cap;
        while (cap - e->len < need)
            cap *= 2;
        uint8_t *b = mp__realloc(e->buf, cap);
        if (b == NULL)
            return -ENOMEM;
        e->buf = b;
        e->cap = cap;
    }
    /* Like the C pickler, open a frame at the first write after a commit and fill its header in
     * when it is committed. */
    if (e->framing && e->frame_start == NO_FRAME) {
        e->frame_start = e->len;
        e->len += FRAME_HEADER;
    }
    if (n > 0)
        memcpy(e->buf + e->len, data, n);
    e->len += n;
    return 0;
}

static int
put_op(enc *e, uint8_t op)
{
    return put(e, &op, 1);
}

static void
put_le(uint8_t *q, uint64_t v, int n)
{
    for (int k = 0; k < n; k++)
        q[k] = (uint8_t)(v >> (8 * k));
}

static void
commit_frame(enc *e)
{
    if (e->frame_start == NO_FRAME)
        return;
    size_t n = e->len - e->frame_start - FRAME_HEADER;
    uint8_t *h = e->buf + e->frame_start;
    if (n >= FRAME_SIZE_MIN) {
        h[0] = FRAME;
        put_le(h + 1, n, 8);
    } else {
        memmove(h, h + FRAME_HEADER, n);
        e->len -= FRAME_HEADER;
    }
    e->frame_start = NO_FRAME;
}

/* The C pickler checks the frame size before saving each value (at every level). */
static void
boundary(enc *e)
{
    if (e->frame_start != NO_FRAME && e->len - e->frame_start - FRAME_HEADER >= FRAME_SIZE_TARGET)
        commit_frame(e);
}

/* An opcode with its payload. A payload of a frame's size or more is written outside any frame,
 * after committing the open one, as the C pickler does. */
static int
put_blob(enc *e, const uint8_t *hdr, size_t hn, const void *data, size_t n)
{
    bool framing = e->framing;
    if (framing && n >= FRAME_SIZE_TARGET) {
        commit_frame(e);
        e->framing = false;
    }
    int r = put(e, hdr, hn);
    if (r == 0)
        r = put(e, data, n);
    e->framing = framing;
    return r;
}

static int
memoize(enc *e)
{
    if (e->proto >= 4) {
        e->memo++;
        return put_op(e, MEMOIZE);
    }
    uint8_t op[5] = {BINPUT, (uint8_t)e->memo};
    if (e->memo < 256) {
        e->memo++;
        return put(e, op, 2);
    }
    op[0] = LONG_BINPUT;
    put_le(op + 1, e->memo++, 4);
    return put(e, op, 5);
}

/* str (is_str) or bytes of n bytes with the opcode CPython picks for this protocol. */
static int
save_text(enc *e, const char *s, size_t n, bool is_str)
{
    uint8_t h[9];
    size_t hn;
    boundary(e);
    if (!is_str && e->proto < 3)
        return -EINVAL; /* protocol 2 pickles bytes through _codecs.encode: not supported */
    if (n <= 0xff && (e->proto >= 4 || !is_str)) {
        h[0] = is_str ? SHORT_BINUNICODE : SHORT_BINBYTES;
        h[1] = (uint8_t)n;
        hn = 2;
    } else if (n <= 0xffffffffu) {
        h[0] = is_str ? BINUNICODE : BINBYTES;
        put_le(h + 1, n, 4);
        hn = 5;
    } else if (e->proto >= 4) {
        h[0] = is_str ? BINUNICODE8 : BINBYTES8;
        put_le(h + 1, n, 8);
        hn = 9;
    } else {
        return -EINVAL;
    }
    int r = put_blob(e, h, hn, s, n);
    return r < 0 ? r : memoize(e);
}

static int
save_int(enc *e, int64_t i)
{
    uint8_t b[10];
    size_t n;
    if (i >= 0 && i <= 0xff) {
        b[0] = BININT1;
        b[1] = (uint8_t)i;
        n = 2;
    } else if (i >= 0 && i <= 0xffff) {
        b[0] = BININT2;
        put_le(b + 1, (uint64_t)i, 2);
        n = 3;
    } else if (i >= INT32_MIN && i <= INT32_MAX) {
        b[0] = BININT;
        put_le(b + 1, (uint64_t)i, 4);
        n = 5;
    } else {
        /* LONG1 with the shortest two's complement that keeps the sign. */
        uint8_t k = 8;
        put_le(b + 2, (uint64_t)i, 8);
        while (k > 1 &&
               ((b[1 + k] == 0x00 && !(b[k] & 0x80)) || (b[1 + k] == 0xff && (b[k] & 0x80))))
            k--;
        b[0] = LONG1;
        b[1] = k;
        n = 2 + (size_t)k;
    }
    return put(e, b, n);
}

static int save(enc *e, const mp__pv *v, unsigned depth);

static int
save_global(enc *e, const mp__pv *g)
{
    int r;
    if (e->proto < 3)
        return -EINVAL; /* protocol 2 would need Python 2's names (fix_imports) */
    if (e->proto >= 4) {
        if ((r = save_text(e, g->u.g.module, strlen(g->u.g.module), true)) < 0 ||
            (r = save_text(e, g->u.g.name, strlen(g->u.g.name), true)) < 0 ||
            (r = put_op(e, STACK_GLOBAL)) < 0)
            return r;
    } else {
        if (strchr(g->u.g.module, '\n') != NULL || strchr(g->u.g.name, '\n') != NULL)
            return -EINVAL;
        if ((r = put_op(e, GLOBAL)) < 0 || (r = put(e, g->u.g.module, strlen(g->u.g.module))) < 0 ||
            (r = put_op(e, '\n')) < 0 || (r = put(e, g->u.g.name, strlen(g->u.g.name))) < 0 ||
            (r = put_op(e, '\n')) < 0)
            return r;
    }
    return memoize(e);
}

static int
save_object(enc *e, const mp__pv *v, unsigned depth)
{
    const mp__pv *args = v->u.obj.args;
    int r;
    if (v->u.obj.callable == NULL || v->u.obj.callable->kind != MP__PV_GLOBAL || args == NULL ||
        args->kind != MP__PV_TUPLE)
        return -EINVAL;
    /* Protocol 5 has an opcode of its own for bytearray; protocol 4 reduces it. */
    if (e->proto >= 5 && !v->u.obj.newobj && v->u.obj.state == NULL && args->u.seq.len == 1 &&
        args->u.seq.items[0]->kind == MP__PV_BYTES &&
        mp__pv_is_global(v->u.obj.callable, "builtins", "bytearray")) {
        const mp__pv *b = args->u.seq.items[0];
        uint8_t h[9] = {BYTEARRAY8};
        put_le(h + 1, b->u.s.len, 8);
        if ((r = put_blob(e, h, 9, b->u.s.data, b->u.s.len)) < 0)
            return r;
        return memoize(e);
    }
    if ((r = save(e, v->u.obj.callable, depth + 1)) < 0 || (r = save(e, args, depth + 1)) < 0 ||
        (r = put_op(e, v->u.obj.newobj ? NEWOBJ : REDUCE)) < 0 || (r = memoize(e)) < 0)
        return r;
    if (v->u.obj.state == NULL)
        return 0;
    if ((r = save(e, v->u.obj.state, depth + 1)) < 0)
        return r;
    return put_op(e, BUILD);
}

/* Lists and dicts: one item with APPEND/SETITEM, else MARK ... APPENDS/SETITEMS per batch. */
static int
save_items(enc *e, const mp__pv *v, unsigned depth)
{
    bool dict = v->kind == MP__PV_DICT;
    size_t step = dict ? 2 : 1, n = v->u.seq.len;
    int r;
    if (n == 1) {
        for (size_t k = 0; k < step; k++)
            if ((r = save(e, v->u.seq.items[k], depth + 1)) < 0)
                return r;
        return put_op(e, dict ? SETITEM : APPEND);
    }
    for (size_t done = 0; done < n;) {
        if ((r = put_op(e, MARK)) < 0)
            return r;
        for (size_t b = 0; b < BATCH && done < n; b++, done++)
            for (size_t k = 0; k < step; k++)
                if ((r = save(e, v->u.seq.items[done * step + k], depth + 1)) < 0)
                    return r;
        if ((r = put_op(e, dict ? SETITEMS : APPENDS)) < 0)
            return r;
    }
    return 0;
}

static int
save(enc *e, const mp__pv *v, unsigned depth)
{
    int r;
    if (v == NULL || depth > MP__PV_MAX_HEIGHT)
        return -EINVAL;
    boundary(e);
    switch (v->kind) {
    case MP__PV_NONE:
        return put_op(e, NONE);
    case MP__PV_BOOL:
        return put_op(e, v->u.b ? NEWTRUE : NEWFALSE);
    case MP__PV_INT:
        return save_int(e, v->u.i);
    case MP__PV_BIGINT: {
        uint8_t h[5] = {LONG1, (uint8_t)v->u.s.len};
        if (v->u.s.len > 0xff) {
            if (v->u.s.len > INT32_MAX)
                return -EINVAL;
            h[0] = LONG4;
            put_le(h + 1, v->u.s.len, 4);
        }
        return put_blob(e, h, h[0] == LONG1 ? 2 : 5, v->u.s.data, v->u.s.len);
    }
    case MP__PV_FLOAT: {
        uint64_t bits;
        memcpy(&bits, &v->u.f, sizeof bits);
        uint8_t b[9] = {BINFLOAT};
        for (int k = 0; k < 8; k++)
            b[1 + k] = (uint8_t)(bits >> (56 - 8 * k));
        return put(e, b, 9);
    }
    case MP__PV_STR:
    case MP__PV_BYTES:
        return save_text(e, v->u.s.data, v->u.s.len, v->kind == MP__PV_STR);
    case MP__PV_TUPLE: {
        size_t n = v->u.seq.len;
        if (n == 0)
            return put_op(e, EMPTY_TUPLE);
        if (n > 3 && (r = put_op(e, MARK)) < 0)
            return r;
        for (size_t k = 0; k < n; k++)
            if ((r = save(e, v->u.seq.items[k], depth + 1)) < 0)
                return r;
        if ((r = put_op(e, n > 3 ? TUPLE : (uint8_t)(TUPLE1 + n - 1))) < 0)
            return r;
        return memoize(e);
    }
    case MP__PV_LIST:
    case MP__PV_DICT:
        if ((r = put_op(e, v->kind == MP__PV_LIST ? EMPTY_LIST : EMPTY_DICT)) < 0 ||
            (r = memoize(e)) < 0)
            return r;
        return v->u.seq.len == 0 ? 0 : save_items(e, v, depth);
    case MP__PV_GLOBAL:
        return save_global(e, v);
    case MP__PV_OBJECT:
        return save_object(e, v, depth);
    }
    return -EINVAL;
}

int
mp__pickle_dumps(const mp__pv *v, int protocol, uint8_t **out, size_t *len)
{
    if (protocol == 0)
        protocol = 4;
    if (protocol < 2 || protocol > 5)
        return -EINVAL;
    enc e = {.proto = protocol, .frame_start = NO_FRAME};
    uint8_t head[2] = {PROTO, (uint8_t)protocol};
    int r = put(&e, head, 2);
    e.framing = protocol >= 4;
    if (r == 0)
        r = save(&e, v, 0);
    if (r == 0)
        r = put_op(&e, STOP);
    if (r < 0) {
        mp__free(e.buf);
        return r;
    }
    commit_frame(&e);
    *out = e.buf;
    *len = e.len;
    return 0;
}
