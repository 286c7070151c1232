/*
 * pickle.h - the pickle subset spoken with CPython managers (private; see docs/pickle.md).
 *
 * Values are small trees of mp__pv nodes. Every node owns its children; no node is shared, so
 * mp__pv_free() of the root frees everything. The decoder (mp__pickle_loads) executes nothing:
 * a global reference is accepted only when it is on the caller's allow-list, and REDUCE, NEWOBJ
 * and BUILD become inert MP__PV_OBJECT nodes that describe the call. The encoder
 * (mp__pickle_dumps) writes what CPython's C pickler writes for the same value.
 *
 * Nothing here touches shared memory: a tree belongs to the process and thread that built it.
 */
#ifndef MPIPC_PICKLE_H
#define MPIPC_PICKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum mp__pv_kind {
    MP__PV_NONE,
    MP__PV_BOOL,
    MP__PV_INT,    /* fits int64_t */
    MP__PV_BIGINT, /* outside int64_t: minimal little-endian two's complement in u.s */
    MP__PV_FLOAT,
    MP__PV_STR,    /* UTF-8 (lone surrogates allowed, as Python's "surrogatepass") in u.s */
    MP__PV_BYTES,  /* u.s */
    MP__PV_TUPLE,  /* u.seq */
    MP__PV_LIST,   /* u.seq */
    MP__PV_DICT,   /* u.seq: items[2k] is a key, items[2k + 1] its value; len counts pairs */
    MP__PV_GLOBAL, /* u.g: a reference to module.name (a class or function), never resolved */
    MP__PV_OBJECT, /* u.obj: "callable(*args)", then "__setstate__(state)" if state != NULL */
} mp__pv_kind;

typedef struct mp__pv mp__pv;
struct mp__pv {
    mp__pv_kind kind;
    uint32_t height; /* 1 for a leaf; 1 + the highest child otherwise */
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            char *data; /* NUL-terminated for convenience; len excludes the NUL */
            size_t len;
        } s;
        struct {
            mp__pv **items;
            size_t len, cap;
        } seq;
        struct {
            char *module, *name;
        } g;
        struct {
            mp__pv *callable; /* an MP__PV_GLOBAL */
            mp__pv *args;     /* an MP__PV_TUPLE */
            mp__pv *state;    /* NULL, or what BUILD passes to __setstate__ */
            bool newobj;      /* NEWOBJ (cls.__new__(cls, *args)) rather than REDUCE */
        } obj;
    } u;
};

/* No tree may be deeper than this, whoever builds it: every walk (free, copy, equal, encode)
 * recurses, and this bounds the recursion. CPython's own recursion limit is 1000 too. */
#define MP__PV_MAX_HEIGHT 1000

/* ---- building values ---------------------------------------------------------------------------
 * Constructors return a new node, or NULL when out of memory (or, for mp__pv_str and
 * mp__pv_bigint, when the input is invalid). Functions that take child nodes consume them
 * whether they succeed or not, and accept NULL children (then they fail and free the others),
 * so nested calls such as mp__pv_tuple(2, mp__pv_cstr("a"), mp__pv_int(1)) never leak. */
mp__pv *mp__pv_none(void);
mp__pv *mp__pv_bool(bool b);
mp__pv *mp__pv_int(int64_t i);
/* mp__pv_bigint - an int from n little-endian two's complement bytes (n >= 1). Returns an
 * MP__PV_INT when it fits int64_t, otherwise an MP__PV_BIGINT with redundant sign bytes trimmed. */
mp__pv *mp__pv_bigint(const uint8_t *le, size_t n);
mp__pv *mp__pv_float(double f);
/* mp__pv_str - a str from UTF-8; NULL also when s is not UTF-8 (mp__utf8_valid). */
mp__pv *mp__pv_str(const char *s, size_t len);
mp__pv *mp__pv_cstr(const char *s);
mp__pv *mp__pv_bytes(const void *p, size_t len);
mp__pv *mp__pv_global(const char *module, const char *name);
/* mp__pv_object - callable(*args) [then BUILD with state, if not NULL]. callable must be an
 * MP__PV_GLOBAL and args an MP__PV_TUPLE, else NULL. */
mp__pv *mp__pv_object(mp__pv *callable, mp__pv *args, mp__pv *state, bool newobj);
/* mp__pv_tuple - a tuple of the n nodes that follow (each consumed). */
mp__pv *mp__pv_tuple(size_t n, ...);
mp__pv *mp__pv_list(void);
mp__pv *mp__pv_dict(void);
/* mp__pv_append - add item at the end of a list or tuple; consumes item. 0, -EINVAL (not a
 * list or tuple, item NULL), -E2BIG (the result would be deeper than MP__PV_MAX_HEIGHT) or
 * -ENOMEM; seq is unchanged on error. */
int mp__pv_append(mp__pv *seq, mp__pv *item);
/* mp__pv_dict_set - d[key] = value: replaces the value of an equal key, else appends the pair.
 * Consumes key and value. Errors as mp__pv_append. */
int mp__pv_dict_set(mp__pv *d, mp__pv *key, mp__pv *value);
/* mp__pv_dict_push - append the pair without looking for an equal key (the decoder's SETITEM:
 * CPython never pickles a dict with repeated keys). Consumes both; errors as mp__pv_append,
 * except that the caller checks the depth. */
int mp__pv_dict_push(mp__pv *d, mp__pv *key, mp__pv *value);
void mp__pv_free(mp__pv *v);
/* mp__pv_copy - a deep copy, or NULL when out of memory. */
mp__pv *mp__pv_copy(const mp__pv *v);

/* ---- reading values ------------------------------------------------------------------------ */
/* mp__pv_equal - deep equality of kind and contents. Floats compare by bit pattern (so a NaN
 * equals itself and -0.0 differs from 0.0); bool, int and float never equal each other; dicts
 * compare pair by pair in order. */
bool mp__pv_equal(const mp__pv *a, const mp__pv *b);
/* mp__pv_len - items of a tuple or list, pairs of a dict, bytes of a str or bytes; else 0. */
size_t mp__pv_len(const mp__pv *v);
/* mp__pv_item - item i of a tuple or list (borrowed), NULL when out of range or not a sequence. */
mp__pv *mp__pv_item(const mp__pv *v, size_t i);
/* mp__pv_dict_get - the value of the last pair whose key equals key (borrowed), else NULL.
 * mp__pv_dict_get_str looks up a str key. Linear: meant for kwds and small dicts. */
mp__pv *mp__pv_dict_get(const mp__pv *d, const mp__pv *key);
mp__pv *mp__pv_dict_get_str(const mp__pv *d, const char *key);
/* mp__pv_is_str - v is a str equal to the C string s. */
bool mp__pv_is_str(const mp__pv *v, const char *s);
/* mp__pv_is_global - v is the global module.name, or an OBJECT whose callable is. */
bool mp__pv_is_global(const mp__pv *v, const char *module, const char *name);
/* mp__utf8_valid - s is UTF-8 as Python's "surrogatepass" codec reads it: shortest forms,
 * at most U+10FFFF, encoded surrogates allowed. */
bool mp__utf8_valid(const char *s, size_t len);

/* ---- decoding ----------------------------------------------------------------------------------
 */
typedef struct mp__pickle_global {
    const char *module, *name;
} mp__pickle_global;

/* The globals the manager protocol needs: multiprocessing.managers.Token and RemoteError, the
 * builtin exceptions a container method raises, queue.Empty/Full, _queue.Empty and
 * builtins.bytearray. Terminated by {NULL, NULL}. */
extern const mp__pickle_global mp__pickle_manager_globals[];

/* Limits for one decode; a zero field takes the default shown. */
typedef struct mp__pickle_limits {
    size_t max_depth; /* nesting of the result, 200 (at most MP__PV_MAX_HEIGHT) */
    size_t max_nodes; /* nodes created, memo copies included, 1 << 22 */
    size_t max_bytes; /* str/bytes/int payload created, memo copies included, 1 << 30 */
    size_t max_memo;  /* highest memo index + 1, 1 << 20 */
} mp__pickle_limits;

typedef struct mp__unpickle_opts {
    const mp__pickle_global *allow; /* {NULL, NULL}-terminated; NULL: no global at all */
    mp__pickle_limits limits;
} mp__unpickle_opts;

/* mp__pickle_loads - decode exactly one pickle filling buf[0, len) (protocols 2 to 5).
 * Returns 0 and the tree in *out; or -EPROTO (malformed, truncated, an opcode outside the subset,
 * bytes after STOP), -EPERM (a global not on the allow-list), -E2BIG (a limit exceeded) or
 * -ENOMEM, with *out untouched. Never reads outside buf. */
int mp__pickle_loads(mp__pv **out, const void *buf, size_t len, const mp__unpickle_opts *opts);

/* ---- encoding ----------------------------------------------------------------------------------
 */
/* mp__pickle_dumps - the pickle of v at protocol 2 to 5 (0 means 4, ForkingPickler's default),
 * in *out (mp__malloc'ed; release with mp__free) and *len. Returns 0, -EINVAL (bad protocol,
 * a malformed tree, or a value the protocol cannot carry: bytes and globals at protocol 2,
 * strings above 4 GiB below protocol 4) or -ENOMEM. */
int mp__pickle_dumps(const mp__pv *v, int protocol, uint8_t **out, size_t *len);

#endif /* MPIPC_PICKLE_H */
