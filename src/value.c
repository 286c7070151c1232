/*
 * value.c - Value, Array, RawValue and RawArray (Python's sharedctypes).
 *
 * An object is one block of the shared arena. With its own lock the block starts with a
 * recursive mp_lock (MP__LOCK_SIZE bytes, built in place); data of up to 24 bytes sits in the
 * lock's spare tail on the mutex's cache line, larger data follows on cache lines of its own. A
 * raw object or one sharing a caller's lock is just the data. The handle is
 * process-local and records where the data is, the element type and which lock to take, so a
 * Value is simply an array of one element and both types share every function here.
 *
 * Elements of 1, 2, 4 or 8 bytes (all the typecodes, and C types of those sizes) are always
 * read and written with one __atomic load or store of their size, so that a locked access, a raw
 * access and an atomic read-modify-write on the same element never form a data race. Loads
 * acquire and stores release, which costs nothing on x86-64 and lets a raw value serve as a flag
 * that publishes other data. Larger C types are copied with memcpy under the lock; without a
 * lock their consistency is the caller's business, as in Python.
 */
#include "internal.h"

#include "arena.h"
#include "sync.h"

#include <string.h>

enum kind {
    KIND_OTHER,    /* f, d, ?, c and C types by size: get/set only */
    KIND_SIGNED,   /* b h i l q */
    KIND_UNSIGNED, /* B H I L Q */
};

struct mp_value {
    char *data;
    size_t elem; /* element size in bytes */
    size_t len;  /* number of elements; 1 for a Value */
    enum kind kind;
    char typecode; /* 0 for a C type given by size */
    mp_lock *lock; /* the lock to take, NULL for a raw object */
    mp_lock *own;  /* this handle's wrap of the object's own lock, or NULL */
    void *block;   /* the arena block, freed by the opening process only */
    size_t block_size;
    mp__pin pin; /* dropped by the close of an in-place handle */
};

/* An array handle is a value handle with another name, so that the public types stay distinct. */
struct mp_array {
    struct mp_value o;
};

typedef struct mp_value obj;

/* Python's typecodes with the sizes of the C types they name. */
static const struct {
    char tc;
    unsigned char size;
    unsigned char kind;
} typecodes[] = {
    {'c', sizeof(char), KIND_OTHER},         {'?', sizeof(bool), KIND_OTHER},
    {'f', sizeof(float), KIND_OTHER},        {'d', sizeof(double), KIND_OTHER},
    {'b', sizeof(signed char), KIND_SIGNED}, {'B', sizeof(unsigned char), KIND_UNSIGNED},
    {'h', sizeof(short), KIND_SIGNED},       {'H', sizeof(unsigned short), KIND_UNSIGNED},
    {'i', sizeof(int), KIND_SIGNED},         {'I', sizeof(unsigned), KIND_UNSIGNED},
    {'l', sizeof(long), KIND_SIGNED},        {'L', sizeof(unsigned long), KIND_UNSIGNED},
    {'q', sizeof(long long), KIND_SIGNED},   {'Q', sizeof(unsigned long long), KIND_UNSIGNED},
};

/* The typecode's element size and kind; 0 for an unknown typecode (or 0 itself). */
static size_t
type_of(char tc, enum kind *kind)
{
    for (size_t i = 0; tc != 0 && i < MP__ARRAY_LEN(typecodes); i++) {
        if (typecodes[i].tc == tc) {
            *kind = typecodes[i].kind;
            return typecodes[i].size;
        }
    }
    return 0;
}

/* Where an object's parts go in its block. */
struct layout {
    size_t elem; /* element size */
    enum kind kind;
    bool own_lock; /* the block starts with the object's own recursive lock */
    size_t off;    /* data offset in the block */
    size_t block_size;
};

/* plan - check the arguments of an open and lay the object out; 0, MP_ETYPE, -EINVAL, -ENOMEM. */
static int
plan(char tc, size_t len, const mp_value_opts *opts, struct layout *lo)
{
    if (opts->raw && opts->lock != NULL)
        return -EINVAL;
    lo->kind = KIND_OTHER;
    lo->elem = opts->size;
    if (tc != 0) {
        lo->elem = type_of(tc, &lo->kind);
        if (lo->elem == 0)
            return MP_ETYPE;
        if (opts->size != 0 && opts->size != lo->elem)
            return -EINVAL;
    } else if (lo->elem == 0) {
        return -EINVAL;
    }
    lo->own_lock = !opts->raw && opts->lock == NULL;
    if (len > (SIZE_MAX - MP__LOCK_SIZE) / lo->elem)
        return -ENOMEM;
    size_t bytes = len * lo->elem, elem = lo->elem;
    /* Small data of elements up to 8 bytes sits in the spare tail of the lock, on the mutex's
     * cache line (8-byte aligned, enough for such elements); anything else starts on a cache
     * line of its own after the lock. */
    lo->off = 0;
    if (lo->own_lock)
        lo->off = bytes <= MP__LOCK_SIZE - MP__LOCK_SPARE && elem <= 8 && (elem & (elem - 1)) == 0
                      ? MP__LOCK_SPARE
                      : MP__LOCK_SIZE;
    /* An empty raw array still gets a block, so that every object has one. */
    lo->block_size = lo->own_lock
                         ? (lo->off + bytes > MP__LOCK_SIZE ? lo->off + bytes : MP__LOCK_SIZE)
                         : (bytes > 0 ? bytes : 1);
    return 0;
}

/* wrap - a handle on the object laid out as `lo` in `block`; its own lock must be built. */
static int
wrap(obj **out, void *block, char tc, size_t len, const struct layout *lo, mp_lock *lock)
{
    obj *o = mp__calloc(1, sizeof *o);
    if (o == NULL)
        return -ENOMEM;
    if (lo->own_lock) {
        int r = mp__lock_wrap(&o->own, block);
        if (r != 0) {
            mp__free(o);
            return r;
        }
    }
    o->block = block;
    o->data = (char *)block + lo->off;
    o->elem = lo->elem;
    o->len = len;
    o->kind = lo->kind;
    o->typecode = tc;
    o->lock = lo->own_lock ? o->own : lock;
    o->block_size = lo->block_size;
    *out = o;
    return 0;
}

/* build - construct the object in `block` (zero-filled, block_size bytes): its own lock and
 * its initial contents. Nobody else can see the block yet, so a plain copy is enough. */
static int
build(void *block, size_t len, const struct layout *lo, const void *init)
{
    if (lo->own_lock) {
        int r = mp__lock_init_at(block, true);
        if (r != 0)
            return r;
    }
    if (init != NULL && len > 0)
        memcpy((char *)block + lo->off, init, len * lo->elem);
    return 0;
}

static int
obj_open(obj **out, char tc, size_t len, const mp_value_opts *opts)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    static const mp_value_opts defaults = {0};
    if (opts == NULL)
        opts = &defaults;
    struct layout lo;
    int r = plan(tc, len, opts, &lo);
    if (r != 0)
        return r;
    void *block;
    r = mp__arena_alloc(lo.block_size, &block);
    if (r != 0)
        return r;
    /* Fresh arena blocks are zeroed. */
    if ((r = build(block, len, &lo, opts->init)) != 0 ||
        (r = wrap(out, block, tc, len, &lo, opts->lock)) != 0)
        mp__arena_free(block, lo.block_size);
    return r;
}

void
mp__value_pin(mp_value *v, mp__pin pin)
{
    v->pin = pin;
}

/* ---- in place (the manager's heap) ----------------------------------------------------------- */

int
mp__value_size_at(char tc, size_t len, const mp_value_opts *opts, size_t *size)
{
    struct layout lo;
    if (opts == NULL || size == NULL || opts->lock != NULL)
        return -EINVAL;
    int r = plan(tc, len, opts, &lo);
    if (r == 0)
        *size = lo.block_size;
    return r;
}

int
mp__value_init_at(void *mem, char tc, size_t len, const mp_value_opts *opts)
{
    struct layout lo;
    if (mem == NULL || ((uintptr_t)mem & 15) != 0 || opts == NULL || opts->lock != NULL)
        return -EINVAL;
    int r = plan(tc, len, opts, &lo);
    if (r != 0)
        return r;
    memset(mem, 0, lo.block_size);
    return build(mem, len, &lo, opts->init);
}

int
mp__value_wrap(mp_value **out, void *mem, char tc, size_t elem, size_t len, bool raw)
{
    struct layout lo;
    if (out == NULL || mem == NULL)
        return -EINVAL;
    *out = NULL;
    int r = plan(tc, len, &(mp_value_opts){.raw = raw, .size = elem}, &lo);
    return r != 0 ? r : wrap(out, mem, tc, len, &lo, NULL);
}

static void
obj_close(obj *o)
{
    if (o == NULL)
        return;
    mp_lock_close(o->own); /* a wrap: frees the handle only */
    /* Both free only in the process that allocated the block (arena.h). Freeing through the
     * lock's header first marks the lock dead, so stale handles elsewhere get -EBADF. */
    if (o->own != NULL)
        mp__sync_free(o->block, o->block_size);
    else
        mp__arena_free(o->block, o->block_size);
    mp__pin pin = o->pin;
    mp__free(o);
    mp__pin_drop(pin);
}

/* ---- element access -----------------------------------------------------------------------------
 * One atomic load or store per element where the size allows it (see the top of the file). */

#define LOAD(T)                                                                                    \
    do {                                                                                           \
        T x_ = __atomic_load_n((const T *)(const void *)src, __ATOMIC_ACQUIRE);                    \
        memcpy(dst, &x_, sizeof x_);                                                               \
    } while (0)
#define STORE(T)                                                                                   \
    do {                                                                                           \
        T x_;                                                                                      \
        memcpy(&x_, src, sizeof x_);                                                               \
        __atomic_store_n((T *)(void *)dst, x_, __ATOMIC_RELEASE);                                  \
    } while (0)

static inline void
load_elem(void *dst, const char *src, size_t n)
{
    switch (n) {
    case 1:
        LOAD(uint8_t);
        break;
    case 2:
        LOAD(uint16_t);
        break;
    case 4:
        LOAD(uint32_t);
        break;
    case 8:
        LOAD(uint64_t);
        break;
    default:
        memcpy(dst, src, n);
    }
}

static inline void
store_elem(char *dst, const void *src, size_t n)
{
    switch (n) {
    case 1:
        STORE(uint8_t);
        break;
    case 2:
        STORE(uint16_t);
        break;
    case 4:
        STORE(uint32_t);
        break;
    case 8:
        STORE(uint64_t);
        break;
    default:
        memcpy(dst, src, n);
    }
}

#undef LOAD
#undef STORE

/* Elements are either power-of-two sized and naturally aligned (the block is aligned to at least
 * 16 bytes), or copied whole. */
static void
load_elems(void *dst, const char *src, size_t n, size_t elem)
{
    if (elem != 1 && elem != 2 && elem != 4 && elem != 8) {
        memcpy(dst, src, n * elem);
        return;
    }
    for (size_t i = 0; i < n; i++)
        load_elem((char *)dst + i * elem, src + i * elem, elem);
}

static void
store_elems(char *dst, const void *src, size_t n, size_t elem)
{
    if (elem != 1 && elem != 2 && elem != 4 && elem != 8) {
        memcpy(dst, src, n * elem);
        return;
    }
    for (size_t i = 0; i < n; i++)
        store_elem(dst + i * elem, (const char *)src + i * elem, elem);
}

/* Take the object's lock for one access, unless it has none or the calling thread holds it
 * already: then the access is simply part of the caller's critical section, which saves the
 * nested acquire and release of Python's `with v.get_lock(): v.value += 1` and lets a plain
 * Lock be held around accesses too. Returns 0, MP_OWNERDEAD or the lock's error, and sets *held
 * when the lock was taken here and must be dropped. */
static inline int
take(const obj *o, bool *held)
{
    *held = false;
    if (o->lock == NULL || mp__lock_held(o->lock))
        return 0;
    int r = mp_lock_acquire(o->lock, MP_FOREVER);
    *held = r >= 0;
    return r;
}

static inline void
drop(const obj *o, bool held)
{
    if (held)
        mp_lock_release(o->lock);
}

/* Python's index rule: negative counts from the end. */
static inline int
locate(const obj *o, ptrdiff_t index, char **p)
{
    if (index < 0)
        index += (ptrdiff_t)o->len;
    if (index < 0 || (size_t)index >= o->len)
        return -ERANGE;
    *p = o->data + (size_t)index * o->elem;
    return 0;
}

static int
obj_get(obj *o, ptrdiff_t index, void *out, size_t size)
{
    char *p;
    bool held;
    if (MP__UNLIKELY(o == NULL || out == NULL))
        return -EINVAL;
    if (MP__UNLIKELY(size != o->elem))
        return MP_ETYPE;
    int r = locate(o, index, &p);
    if (MP__UNLIKELY(r != 0))
        return r;
    if (MP__UNLIKELY((r = take(o, &held)) < 0))
        return r;
    load_elem(out, p, size);
    drop(o, held);
    return r;
}

static int
obj_set(obj *o, ptrdiff_t index, const void *in, size_t size)
{
    char *p;
    bool held;
    if (MP__UNLIKELY(o == NULL || in == NULL))
        return -EINVAL;
    if (MP__UNLIKELY(size != o->elem))
        return MP_ETYPE;
    int r = locate(o, index, &p);
    if (MP__UNLIKELY(r != 0))
        return r;
    if (MP__UNLIKELY((r = take(o, &held)) < 0))
        return r;
    store_elem(p, in, size);
    drop(o, held);
    return r;
}

/* ---- atomics --------------------------------------------------------------------------------- */

/* The element's bits widened to int64_t: sign-extended for signed types, zero-extended for
 * unsigned ones (a 64-bit unsigned value keeps its bit pattern). */
static int64_t
widen(const obj *o, uint64_t bits)
{
    unsigned shift = 64 - 8 * (unsigned)o->elem;
    if (shift == 0)
        return (int64_t)bits;
    if (o->kind == KIND_SIGNED)
        return (int64_t)(bits << shift) >> shift;
    return (int64_t)(bits & (~(uint64_t)0 >> shift));
}

/* Whether v is a value of the element's type (a 64-bit unsigned type takes any bit pattern). */
static bool
fits(const obj *o, int64_t v)
{
    if (o->elem == 8)
        return true;
    unsigned bits = 8 * (unsigned)o->elem;
    if (o->kind == KIND_SIGNED)
        return v >= -((int64_t)1 << (bits - 1)) && v < ((int64_t)1 << (bits - 1));
    return v >= 0 && v < ((int64_t)1 << bits);
}

static inline int
atomic_elem(obj *o, ptrdiff_t index, char **p)
{
    if (MP__UNLIKELY(o == NULL))
        return -EINVAL;
    if (MP__UNLIKELY(o->kind == KIND_OTHER))
        return MP_ETYPE;
    return locate(o, index, p);
}

/* Run OP with T the unsigned type of the element's size; P is the element as a T pointer. */
#define BY_SIZE(o, p, OP)                                                                          \
    switch ((o)->elem) {                                                                           \
    case 1:                                                                                        \
        OP(uint8_t, (uint8_t *)(p));                                                               \
        break;                                                                                     \
    case 2:                                                                                        \
        OP(uint16_t, (uint16_t *)(void *)(p));                                                     \
        break;                                                                                     \
    case 4:                                                                                        \
        OP(uint32_t, (uint32_t *)(void *)(p));                                                     \
        break;                                                                                     \
    default:                                                                                       \
        OP(uint64_t, (uint64_t *)(void *)(p));                                                     \
        break;                                                                                     \
    }

static int
obj_fetch_add(obj *o, ptrdiff_t index, int64_t delta, int64_t *old)
{
    char *p;
    int r = atomic_elem(o, index, &p);
    if (MP__UNLIKELY(r != 0))
        return r;
    uint64_t prev = 0;
    /* Unsigned arithmetic wraps, which is also two's-complement addition for signed types. */
#define FETCH_ADD(T, P) prev = __atomic_fetch_add(P, (T)delta, __ATOMIC_SEQ_CST)
    BY_SIZE(o, p, FETCH_ADD)
#undef FETCH_ADD
    if (old != NULL)
        *old = widen(o, prev);
    return 0;
}

static int
obj_exchange(obj *o, ptrdiff_t index, int64_t desired, int64_t *old)
{
    char *p;
    int r = atomic_elem(o, index, &p);
    if (MP__UNLIKELY(r != 0))
        return r;
    if (!fits(o, desired))
        return -EOVERFLOW;
    uint64_t prev = 0;
#define EXCHANGE(T, P) prev = __atomic_exchange_n(P, (T)desired, __ATOMIC_SEQ_CST)
    BY_SIZE(o, p, EXCHANGE)
#undef EXCHANGE
    if (old != NULL)
        *old = widen(o, prev);
    return 0;
}

static int
obj_compare_exchange(obj *o, ptrdiff_t index, int64_t *expected, int64_t desired)
{
    char *p;
    if (expected == NULL)
        return -EINVAL;
    int r = atomic_elem(o, index, &p);
    if (MP__UNLIKELY(r != 0))
        return r;
    if (!fits(o, *expected) || !fits(o, desired))
        return -EOVERFLOW;
    uint64_t cur = 0;
    bool done = false;
#define CMPXCHG(T, P)                                                                              \
    do {                                                                                           \
        T e = (T)*expected;                                                                        \
        done = __atomic_compare_exchange_n(P, &e, (T)desired, false, __ATOMIC_SEQ_CST,             \
                                           __ATOMIC_SEQ_CST);                                      \
        cur = e;                                                                                   \
    } while (0)
    BY_SIZE(o, p, CMPXCHG)
#undef CMPXCHG
    if (!done)
        *expected = widen(o, cur);
    return done ? 1 : 0;
}

/* ---- Value ----------------------------------------------------------------------------------- */

int
mp_value_open(mp_value **out, char typecode, const mp_value_opts *opts)
{
    return obj_open(out, typecode, 1, opts);
}

void
mp_value_close(mp_value *v)
{
    obj_close(v);
}

int
mp_value_get(mp_value *v, void *out, size_t size)
{
    return obj_get(v, 0, out, size);
}

int
mp_value_set(mp_value *v, const void *in, size_t size)
{
    return obj_set(v, 0, in, size);
}

int
mp_value_fetch_add(mp_value *v, int64_t delta, int64_t *old)
{
    return obj_fetch_add(v, 0, delta, old);
}

int
mp_value_exchange(mp_value *v, int64_t desired, int64_t *old)
{
    return obj_exchange(v, 0, desired, old);
}

int
mp_value_compare_exchange(mp_value *v, int64_t *expected, int64_t desired)
{
    return obj_compare_exchange(v, 0, expected, desired);
}

mp_lock *
mp_value_get_lock(const mp_value *v)
{
    return v != NULL ? v->lock : NULL;
}

void *
mp_value_ptr(const mp_value *v)
{
    return v != NULL ? v->data : NULL;
}

/* ---- Array ----------------------------------------------------------------------------------- */

/* Python's slice bounds: negative ones count from the end, both clamp to [0, len]. */
static size_t
clamp_bound(ptrdiff_t i, size_t len)
{
    if (i < 0) {
        i += (ptrdiff_t)len;
        return i < 0 ? 0 : (size_t)i;
    }
    return (size_t)i > len ? len : (size_t)i;
}

static void
slice_of(const obj *o, ptrdiff_t start, ptrdiff_t stop, size_t *first, size_t *n)
{
    size_t s = clamp_bound(start, o->len), e = clamp_bound(stop, o->len);
    *first = s;
    *n = e > s ? e - s : 0;
}

int
mp_array_open(mp_array **out, char typecode, size_t length, const mp_value_opts *opts)
{
    if (out == NULL)
        return -EINVAL;
    obj *o = NULL;
    int r = obj_open(&o, typecode, length, opts);
    *out = (mp_array *)o;
    return r;
}

void
mp_array_close(mp_array *a)
{
    obj_close(a != NULL ? &a->o : NULL);
}

size_t
mp_array_len(const mp_array *a)
{
    return a != NULL ? a->o.len : 0;
}

int
mp_array_get(mp_array *a, ptrdiff_t index, void *out, size_t size)
{
    return obj_get(a != NULL ? &a->o : NULL, index, out, size);
}

int
mp_array_set(mp_array *a, ptrdiff_t index, const void *in, size_t size)
{
    return obj_set(a != NULL ? &a->o : NULL, index, in, size);
}

ssize_t
mp_array_get_slice(mp_array *a, ptrdiff_t start, ptrdiff_t stop, void *out, size_t cap)
{
    if (a == NULL || (out == NULL && cap > 0))
        return -EINVAL;
    obj *o = &a->o;
    size_t first, n;
    slice_of(o, start, stop, &first, &n);
    if (cap < n * o->elem)
        return -EMSGSIZE;
    bool held;
    int r = take(o, &held);
    if (r < 0)
        return r;
    load_elems(out, o->data + first * o->elem, n, o->elem);
    drop(o, held);
    return (ssize_t)n;
}

int
mp_array_set_slice(mp_array *a, ptrdiff_t start, ptrdiff_t stop, const void *in, size_t size)
{
    if (a == NULL || (in == NULL && size > 0))
        return -EINVAL;
    obj *o = &a->o;
    size_t first, n;
    slice_of(o, start, stop, &first, &n);
    if (size != n * o->elem)
        return -EINVAL;
    bool held;
    int r = take(o, &held);
    if (r < 0)
        return r;
    store_elems(o->data + first * o->elem, in, n, o->elem);
    drop(o, held);
    return r;
}

ssize_t
mp_array_get_string(mp_array *a, char *buf, size_t cap)
{
    if (a == NULL || buf == NULL)
        return -EINVAL;
    obj *o = &a->o;
    if (o->typecode != 'c')
        return MP_ETYPE;
    bool held;
    int r = take(o, &held);
    if (r < 0)
        return r;
    size_t n = 0;
    while (n < o->len && __atomic_load_n((const uint8_t *)o->data + n, __ATOMIC_RELAXED) != 0)
        n++;
    if (cap < n + 1) {
        drop(o, held);
        return -EMSGSIZE;
    }
    load_elems(buf, o->data, n, 1);
    buf[n] = '\0';
    drop(o, held);
    return (ssize_t)n;
}

int
mp_array_set_string(mp_array *a, const char *s, size_t len)
{
    if (a == NULL || (s == NULL && len > 0))
        return -EINVAL;
    obj *o = &a->o;
    if (o->typecode != 'c')
        return MP_ETYPE;
    if (len > o->len)
        return -EINVAL;
    bool held;
    int r = take(o, &held);
    if (r < 0)
        return r;
    store_elems(o->data, s, len, 1);
    if (len < o->len)
        __atomic_store_n((uint8_t *)o->data + len, 0, __ATOMIC_RELEASE);
    drop(o, held);
    return r;
}

int
mp_array_fetch_add(mp_array *a, ptrdiff_t index, int64_t delta, int64_t *old)
{
    return obj_fetch_add(a != NULL ? &a->o : NULL, index, delta, old);
}

int
mp_array_exchange(mp_array *a, ptrdiff_t index, int64_t desired, int64_t *old)
{
    return obj_exchange(a != NULL ? &a->o : NULL, index, desired, old);
}

int
mp_array_compare_exchange(mp_array *a, ptrdiff_t index, int64_t *expected, int64_t desired)
{
    return obj_compare_exchange(a != NULL ? &a->o : NULL, index, expected, desired);
}

mp_lock *
mp_array_get_lock(const mp_array *a)
{
    return a != NULL ? a->o.lock : NULL;
}

void *
mp_array_ptr(const mp_array *a)
{
    return a != NULL ? a->o.data : NULL;
}
