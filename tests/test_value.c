/*
 * test_value.c - Value, Array, RawValue and RawArray across real processes: every typecode
 * through a child, the three lock modes, a 4-process locked counter, lock-free atomics, 100k
 * values, a lock holder SIGKILLed, bad input that must write nothing, allocation failures, and
 * threads of one process (for ThreadSanitizer).
 */
#define _GNU_SOURCE
#include "arena.h"
#include "helpers.h"
#include "internal.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* ThreadSanitizer follows one process: locks taken in another process look like misuse to it.
 * Under TSan the cross-process tests are skipped (SKIP_UNDER_TSAN) and the threaded one runs. */

/* What the parent shares with its children (MAP_SHARED memory); the handles are process-local
 * pointers that the children inherit through fork. */
typedef struct shared {
    th_barrier *tb;
    mp_value *v;
    mp_array *a;
    mp_lock *lock;
} shared;

static shared *S;

static void
shared_new(unsigned parties)
{
    S = th_shared(sizeof *S);
    assert_non_null(S);
    S->tb = th_barrier_new(parties);
    assert_non_null(S->tb);
}

static void
shared_free(void)
{
    th_barrier_free(S->tb);
    th_shared_free(S, sizeof *S);
    S = NULL;
}

/* ---- every typecode through a child ---------------------------------------------------------- */

/* Two distinct values of each type, as the bytes of that type: the parent initialises with the
 * first, the child checks it and stores the second, the parent checks the second. The extremes
 * catch truncation and sign errors. */
typedef struct typed {
    char tc;
    size_t size;
    unsigned char a[8], b[8];
} typed;

static typed types[14];
static size_t ntypes;

#define TYPED(code, T, x, y)                                                                       \
    do {                                                                                           \
        typed *t_ = &types[ntypes++];                                                              \
        T x_ = (x), y_ = (y);                                                                      \
        t_->tc = (code);                                                                           \
        t_->size = sizeof(T);                                                                      \
        memcpy(t_->a, &x_, sizeof(T));                                                             \
        memcpy(t_->b, &y_, sizeof(T));                                                             \
    } while (0)

static void
types_init(void)
{
    ntypes = 0;
    TYPED('c', char, 'x', '\xff');
    TYPED('b', signed char, -128, 127);
    TYPED('B', unsigned char, 255, 1);
    TYPED('h', short, -32768, 32767);
    TYPED('H', unsigned short, 65535, 2);
    TYPED('i', int, INT32_MIN, INT32_MAX);
    TYPED('I', unsigned, UINT32_MAX, 3);
    TYPED('l', long, INT64_MIN, INT64_MAX);
    TYPED('L', unsigned long, UINT64_MAX, 4);
    TYPED('q', long long, INT64_MIN + 1, -5);
    TYPED('Q', unsigned long long, UINT64_MAX - 1, 6);
    TYPED('f', float, -1.5f, 3.25e30f);
    TYPED('d', double, -2.5e300, 1.0 / 3.0);
    TYPED('?', bool, true, false);
}

/* A C type by size (Python's Value(SomeStructure)): 12 bytes, not a power of two. */
typedef struct point {
    int x, y, z;
} point;

/* The objects of one round, one value and one 3-element array per type plus the point. */
typedef struct round {
    mp_value *v[MP__ARRAY_LEN(types) + 1];
    mp_array *a[MP__ARRAY_LEN(types) + 1];
} round_objs;

static int
roundtrip_child(void *arg)
{
    round_objs *r = arg;
    for (size_t i = 0; i < ntypes; i++) {
        const typed *t = &types[i];
        unsigned char got[8] = {0}, three[24];
        CHILD_CHECK(mp_value_get(r->v[i], got, t->size) == 0);
        CHILD_CHECK(memcmp(got, t->a, t->size) == 0);
        CHILD_CHECK(mp_value_set(r->v[i], t->b, t->size) == 0);
        /* The array was [a, b, a]; make it [b, a, b]. */
        CHILD_CHECK(mp_array_get_slice(r->a[i], 0, PTRDIFF_MAX, three, sizeof three) == 3);
        CHILD_CHECK(memcmp(three, t->a, t->size) == 0);
        CHILD_CHECK(memcmp(three + t->size, t->b, t->size) == 0);
        CHILD_CHECK(mp_array_set(r->a[i], 0, t->b, t->size) == 0);
        CHILD_CHECK(mp_array_set(r->a[i], -2, t->a, t->size) == 0);
        CHILD_CHECK(mp_array_set(r->a[i], 2, t->b, t->size) == 0);
    }
    point p;
    CHILD_CHECK(mp_value_get(r->v[ntypes], &p, sizeof p) == 0);
    CHILD_CHECK(p.x == 1 && p.y == -2 && p.z == 3);
    p = (point){7, 8, -9};
    CHILD_CHECK(mp_value_set(r->v[ntypes], &p, sizeof p) == 0);
    point ps[3];
    CHILD_CHECK(mp_array_get_slice(r->a[ntypes], 0, 3, ps, sizeof ps) == 3);
    CHILD_CHECK(ps[2].z == 3 && ps[0].x == 1);
    CHILD_CHECK(mp_array_set(r->a[ntypes], 1, &p, sizeof p) == 0);
    return 0;
}

static void
check_roundtrip(const mp_value_opts *mode)
{
    types_init();
    round_objs r;
    for (size_t i = 0; i < ntypes; i++) {
        const typed *t = &types[i];
        mp_value_opts o = *mode;
        o.init = t->a;
        assert_int_equal(mp_value_open(&r.v[i], t->tc, &o), 0);
        unsigned char three[24];
        memcpy(three, t->a, t->size);
        memcpy(three + t->size, t->b, t->size);
        memcpy(three + 2 * t->size, t->a, t->size);
        o.init = three;
        assert_int_equal(mp_array_open(&r.a[i], t->tc, 3, &o), 0);
    }
    point p0 = {1, -2, 3}, pa[3] = {{1, 1, 1}, {2, 2, 2}, {3, 3, 3}};
    mp_value_opts o = *mode;
    o.size = sizeof(point);
    o.init = &p0;
    assert_int_equal(mp_value_open(&r.v[ntypes], 0, &o), 0);
    o.init = pa;
    assert_int_equal(mp_array_open(&r.a[ntypes], 0, 3, &o), 0);
    pid_t c = th_fork(roundtrip_child, &r);
    assert_true(c > 0);
    assert_child_ok(c);
    for (size_t i = 0; i < ntypes; i++) {
        const typed *t = &types[i];
        unsigned char got[8] = {0}, three[24];
        assert_int_equal(mp_value_get(r.v[i], got, t->size), 0);
        assert_memory_equal(got, t->b, t->size);
        assert_int_equal(mp_array_get_slice(r.a[i], 0, 3, three, sizeof three), 3);
        assert_memory_equal(three, t->b, t->size);
        assert_memory_equal(three + t->size, t->a, t->size);
        assert_memory_equal(three + 2 * t->size, t->b, t->size);
        mp_value_close(r.v[i]);
        mp_array_close(r.a[i]);
    }
    point p;
    assert_int_equal(mp_value_get(r.v[ntypes], &p, sizeof p), 0);
    assert_true(p.x == 7 && p.y == 8 && p.z == -9);
    assert_int_equal(mp_array_get(r.a[ntypes], 1, &p, sizeof p), 0);
    assert_true(p.x == 7 && p.z == -9);
    assert_int_equal(mp_array_get(r.a[ntypes], -1, &p, sizeof p), 0);
    assert_true(p.x == 3);
    mp_value_close(r.v[ntypes]);
    mp_array_close(r.a[ntypes]);
}

static void
test_every_typecode_round_trips_through_a_child_in_every_lock_mode(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    mp_lock *l;
    assert_int_equal(mp_lock_open(&l, NULL), 0);
    check_roundtrip(&(mp_value_opts){0});
    check_roundtrip(&(mp_value_opts){.raw = true});
    check_roundtrip(&(mp_value_opts){.lock = l});
    mp_lock_close(l);
}

static void
test_values_start_zeroed_and_typecode_sizes_match_c(void **state)
{
    (void)state;
    const char *codes = "cbBhHiIlLqQfd?";
    const size_t sizes[] = {1,
                            1,
                            1,
                            sizeof(short),
                            sizeof(short),
                            sizeof(int),
                            sizeof(int),
                            sizeof(long),
                            sizeof(long),
                            8,
                            8,
                            sizeof(float),
                            sizeof(double),
                            sizeof(bool)};
    for (size_t i = 0; codes[i] != '\0'; i++) {
        mp_value *v;
        mp_array *a;
        unsigned char buf[8 * 4];
        memset(buf, 0x5a, sizeof buf);
        assert_int_equal(mp_value_open(&v, codes[i], NULL), 0);
        assert_int_equal(mp_value_get(v, buf, sizes[i]), 0);
        for (size_t k = 0; k < sizes[i]; k++)
            assert_int_equal(buf[k], 0);
        /* The size, when given, must agree with the typecode. */
        mp_value *w = (mp_value *)1;
        assert_int_equal(mp_value_open(&w, codes[i], &(mp_value_opts){.size = sizes[i] + 1}),
                         -EINVAL);
        assert_null(w);
        assert_int_equal(mp_value_open(&w, codes[i], &(mp_value_opts){.size = sizes[i]}), 0);
        mp_value_close(w);
        assert_int_equal(mp_array_open(&a, codes[i], 4, &(mp_value_opts){.raw = true}), 0);
        assert_int_equal(mp_array_len(a), 4);
        assert_int_equal(mp_array_get_slice(a, 0, 4, buf, sizeof buf), 4);
        for (size_t k = 0; k < 4 * sizes[i]; k++)
            assert_int_equal(buf[k], 0);
        mp_value_close(v);
        mp_array_close(a);
    }
}

/* ---- lock modes ------------------------------------------------------------------------------ */

static int
hold_shared_lock_child(void *arg)
{
    (void)arg;
    CHILD_CHECK(mp_lock_acquire(mp_value_get_lock(S->v), MP_FOREVER) == 0);
    CHILD_CHECK(th_barrier_wait(S->tb) == 0); /* 1: held */
    CHILD_CHECK(th_barrier_wait(S->tb) == 0); /* 2: the parent has tried */
    CHILD_CHECK(mp_lock_release(mp_value_get_lock(S->v)) == 0);
    return 0;
}

static void
test_lock_modes_own_recursive_raw_and_shared(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    /* Default: an own recursive lock; get/set work while the caller holds it. */
    mp_value *v, *raw, *s1;
    mp_array *s2;
    int x = 5, y = 0;
    assert_int_equal(mp_value_open(&v, 'i', &(mp_value_opts){.init = &x}), 0);
    mp_lock *own = mp_value_get_lock(v);
    assert_non_null(own);
    assert_int_equal(mp_lock_acquire(own, MP_NOWAIT), 0);
    assert_int_equal(mp_lock_acquire(own, MP_NOWAIT), 0);
    assert_int_equal(mp_value_get(v, &y, sizeof y), 0);
    assert_int_equal(y, 5);
    x = 6;
    assert_int_equal(mp_value_set(v, &x, sizeof x), 0);
    assert_int_equal(mp_lock_release(own), 0);
    assert_int_equal(mp_lock_release(own), 0);
    assert_int_equal(mp_lock_release(own), -EPERM);
    assert_ptr_equal(mp_value_ptr(v), mp_value_ptr(v));
    assert_int_equal(*(int *)mp_value_ptr(v), 6);

    /* Raw: no lock at all. */
    assert_int_equal(mp_value_open(&raw, 'd', &(mp_value_opts){.raw = true}), 0);
    assert_null(mp_value_get_lock(raw));
    double d = 2.5, e = 0;
    assert_int_equal(mp_value_set(raw, &d, sizeof d), 0);
    assert_int_equal(mp_value_get(raw, &e, sizeof e), 0);
    assert_true(e == 2.5);
    mp_value_opts bad = {.raw = true, .lock = own};
    mp_value *w = (mp_value *)1;
    assert_int_equal(mp_value_open(&w, 'i', &bad), -EINVAL);
    assert_null(w);

    /* Shared: two objects under one given plain Lock. */
    mp_lock *l;
    assert_int_equal(mp_lock_open(&l, NULL), 0);
    assert_int_equal(mp_value_open(&s1, 'q', &(mp_value_opts){.lock = l}), 0);
    assert_int_equal(mp_array_open(&s2, 'h', 3, &(mp_value_opts){.lock = l}), 0);
    assert_ptr_equal(mp_value_get_lock(s1), l);
    assert_ptr_equal(mp_array_get_lock(s2), l);
    /* An access while the caller holds a plain Lock joins its critical section (where Python
     * would deadlock) and leaves the lock held, once. */
    long long q = 9;
    assert_int_equal(mp_lock_acquire(l, MP_NOWAIT), 0);
    assert_int_equal(mp_value_set(s1, &q, sizeof q), 0);
    assert_int_equal(mp_lock_acquire(l, MP_NOWAIT), -EDEADLK);
    assert_int_equal(mp_lock_release(l), 0);
    assert_int_equal(mp_lock_release(l), -EPERM);
    assert_int_equal(mp_value_get(s1, &q, sizeof q), 0);
    assert_int_equal(q, 9);
    q = 0;
    assert_int_equal(mp_value_set(s1, &q, sizeof q), 0);

    /* Another process holding the value's lock blocks this one's locked access. */
    shared_new(2);
    S->v = s1;
    pid_t c = th_fork(hold_shared_lock_child, NULL);
    assert_true(c > 0);
    assert_int_equal(th_barrier_wait(S->tb), 0);
    assert_int_equal(mp_lock_acquire(l, MP_NOWAIT), -EAGAIN);
    /* Atomics take no lock, so they go through while the lock is held elsewhere. */
    assert_int_equal(mp_value_fetch_add(s1, 3, NULL), 0);
    assert_int_equal(th_barrier_wait(S->tb), 0);
    assert_child_ok(c);
    assert_int_equal(mp_value_get(s1, &q, sizeof q), 0);
    assert_int_equal(q, 3);
    shared_free();

    mp_value_close(v);
    mp_value_close(raw);
    mp_value_close(s1);
    mp_array_close(s2);
    mp_lock_close(l); /* after the objects that share it */
}

/* ---- counters: locked and atomic ------------------------------------------------------------- */

#define PROCS 4
#define ITERS 100000

static int
locked_increment_child(void *arg)
{
    (void)arg;
    mp_lock *l = mp_value_get_lock(S->v);
    CHILD_CHECK(th_barrier_wait(S->tb) == 0);
    for (int i = 0; i < ITERS; i++) {
        long x;
        /* Python's `with v.get_lock(): v.value += 1`, the nested accesses re-taking the RLock. */
        CHILD_CHECK(mp_lock_acquire(l, MP_FOREVER) == 0);
        CHILD_CHECK(mp_value_get(S->v, &x, sizeof x) == 0);
        x++;
        CHILD_CHECK(mp_value_set(S->v, &x, sizeof x) == 0);
        CHILD_CHECK(mp_lock_release(l) == 0);
    }
    return 0;
}

static void
test_four_processes_locked_increments_end_exact(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    shared_new(PROCS);
    assert_int_equal(mp_value_open(&S->v, 'l', NULL), 0);
    pid_t c[PROCS];
    for (int i = 0; i < PROCS; i++)
        assert_true((c[i] = th_fork(locked_increment_child, NULL)) > 0);
    for (int i = 0; i < PROCS; i++)
        assert_child_ok(c[i]);
    long x;
    assert_int_equal(mp_value_get(S->v, &x, sizeof x), 0);
    assert_int_equal(x, (long)PROCS * ITERS);
    mp_value_close(S->v);
    shared_free();
}

/* Ten times the locked count: the lock-free loop is so short that with fewer iterations the
 * processes might barely overlap, and a broken atomic would go unnoticed. */
#define ATOMIC_ITERS (10 * ITERS)

static int
atomic_child(void *arg)
{
    (void)arg;
    CHILD_CHECK(th_barrier_wait(S->tb) == 0);
    for (int i = 0; i < ATOMIC_ITERS; i++) {
        CHILD_CHECK(mp_value_fetch_add(S->v, 1, NULL) == 0);
        /* A compare-exchange loop increments the array's 16-bit element 0 (wrapping). */
        int64_t cur = 0;
        CHILD_CHECK(mp_array_fetch_add(S->a, 1, -1, NULL) == 0);
        for (;;) {
            int r = mp_array_compare_exchange(S->a, 0, &cur, (int64_t)(uint16_t)(cur + 1));
            CHILD_CHECK(r == 0 || r == 1);
            if (r == 1)
                break;
        }
    }
    return 0;
}

static void
test_atomics_are_exact_without_a_lock(void **state)
{
    (void)state;
    shared_new(PROCS);
    assert_int_equal(mp_value_open(&S->v, 'I', &(mp_value_opts){.raw = true}), 0);
    assert_int_equal(mp_array_open(&S->a, 'H', 2, NULL), 0);
    pid_t c[PROCS];
    for (int i = 0; i < PROCS; i++)
        assert_true((c[i] = th_fork(atomic_child, NULL)) > 0);
    for (int i = 0; i < PROCS; i++)
        assert_child_ok(c[i]);
    unsigned x;
    assert_int_equal(mp_value_get(S->v, &x, sizeof x), 0);
    assert_int_equal(x, PROCS * ATOMIC_ITERS);
    unsigned short h[2];
    assert_int_equal(mp_array_get_slice(S->a, 0, 2, h, sizeof h), 2);
    assert_int_equal(h[0], (unsigned short)(PROCS * ATOMIC_ITERS));
    assert_int_equal(h[1], (unsigned short)(-(PROCS * ATOMIC_ITERS)));
    mp_value_close(S->v);
    mp_array_close(S->a);
    shared_free();
}

static void
test_atomics_widen_wrap_and_check_their_operands(void **state)
{
    (void)state;
    mp_value *b, *B, *Q, *d;
    int64_t old = 0;
    assert_int_equal(mp_value_open(&b, 'b', NULL), 0);
    assert_int_equal(mp_value_fetch_add(b, 127, &old), 0);
    assert_int_equal(old, 0);
    assert_int_equal(mp_value_fetch_add(b, 1, &old), 0); /* wraps to -128 */
    assert_int_equal(old, 127);
    assert_int_equal(mp_value_exchange(b, -5, &old), 0);
    assert_int_equal(old, -128);
    assert_int_equal(mp_value_exchange(b, 128, &old), -EOVERFLOW);
    assert_int_equal(mp_value_exchange(b, -129, NULL), -EOVERFLOW);
    int64_t exp = 3;
    assert_int_equal(mp_value_compare_exchange(b, &exp, 4), 0);
    assert_int_equal(exp, -5);
    assert_int_equal(mp_value_compare_exchange(b, &exp, 4), 1);
    exp = 1000;
    assert_int_equal(mp_value_compare_exchange(b, &exp, 4), -EOVERFLOW);
    signed char sc;
    assert_int_equal(mp_value_get(b, &sc, sizeof sc), 0);
    assert_int_equal(sc, 4);

    assert_int_equal(mp_value_open(&B, 'B', NULL), 0);
    assert_int_equal(mp_value_fetch_add(B, -1, &old), 0); /* 0 - 1 wraps to 255 */
    assert_int_equal(mp_value_fetch_add(B, 0, &old), 0);
    assert_int_equal(old, 255);
    assert_int_equal(mp_value_exchange(B, -1, NULL), -EOVERFLOW);
    assert_int_equal(mp_value_exchange(B, 256, NULL), -EOVERFLOW);

    /* 64-bit unsigned values travel as their bit pattern. */
    assert_int_equal(mp_value_open(&Q, 'Q', &(mp_value_opts){.raw = true}), 0);
    assert_int_equal(mp_value_exchange(Q, -1, NULL), 0);
    unsigned long long u;
    assert_int_equal(mp_value_get(Q, &u, sizeof u), 0);
    assert_true(u == UINT64_MAX);
    assert_int_equal(mp_value_fetch_add(Q, 2, &old), 0);
    assert_true((uint64_t)old == UINT64_MAX);
    assert_int_equal(mp_value_get(Q, &u, sizeof u), 0);
    assert_true(u == 1);

    /* Not integers: MP_ETYPE, nothing written. */
    double one = 1.0, got;
    assert_int_equal(mp_value_open(&d, 'd', &(mp_value_opts){.init = &one}), 0);
    assert_int_equal(mp_value_fetch_add(d, 1, NULL), MP_ETYPE);
    assert_int_equal(mp_value_exchange(d, 1, NULL), MP_ETYPE);
    exp = 0;
    assert_int_equal(mp_value_compare_exchange(d, &exp, 1), MP_ETYPE);
    assert_int_equal(mp_value_compare_exchange(d, NULL, 1), -EINVAL);
    assert_int_equal(mp_value_get(d, &got, sizeof got), 0);
    assert_true(got == 1.0);
    assert_int_equal(mp_value_fetch_add(NULL, 1, NULL), -EINVAL);
    mp_value_close(b);
    mp_value_close(B);
    mp_value_close(Q);
    mp_value_close(d);
}

/* ---- arrays: slices and strings -------------------------------------------------------------- */

static void
test_array_slices_follow_python_bounds(void **state)
{
    (void)state;
    int init[5] = {0, 1, 2, 3, 4}, out[8], in[2] = {20, 30};
    mp_array *a;
    assert_int_equal(mp_array_open(&a, 'i', 5, &(mp_value_opts){.init = init}), 0);
    assert_int_equal(mp_array_get_slice(a, 1, 3, out, sizeof out), 2);
    assert_int_equal(out[0], 1);
    assert_int_equal(out[1], 2);
    assert_int_equal(mp_array_get_slice(a, -2, 100, out, sizeof out), 2); /* a[-2:100] */
    assert_int_equal(out[0], 3);
    assert_int_equal(out[1], 4);
    assert_int_equal(mp_array_get_slice(a, -100, 1, out, sizeof out), 1);
    assert_int_equal(out[0], 0);
    assert_int_equal(mp_array_get_slice(a, 3, 1, out, sizeof out), 0);
    assert_int_equal(mp_array_get_slice(a, 0, 5, out, 4 * sizeof(int)), -EMSGSIZE);
    assert_int_equal(mp_array_set_slice(a, -2, PTRDIFF_MAX, in, sizeof in), 0);
    assert_int_equal(mp_array_set_slice(a, 4, 2, NULL, 0), 0); /* empty */
    assert_int_equal(mp_array_get_slice(a, 0, PTRDIFF_MAX, out, sizeof out), 5);
    assert_int_equal(out[3], 20);
    assert_int_equal(out[4], 30);
    int z = 0;
    assert_int_equal(mp_array_get(a, -5, &z, sizeof z), 0);
    assert_int_equal(z, 0);
    mp_array_close(a);
    /* Empty arrays, raw and locked, as Python allows. */
    assert_int_equal(mp_array_open(&a, 'd', 0, &(mp_value_opts){.raw = true}), 0);
    assert_int_equal(mp_array_len(a), 0);
    assert_int_equal(mp_array_get_slice(a, 0, PTRDIFF_MAX, NULL, 0), 0);
    assert_int_equal(mp_array_get(a, 0, out, sizeof(double)), -ERANGE);
    mp_array_close(a);
    assert_int_equal(mp_array_open(&a, 'd', 0, NULL), 0);
    assert_int_equal(mp_array_get_slice(a, 0, PTRDIFF_MAX, out, sizeof out), 0);
    mp_array_close(a);
}

static void
test_char_array_value_and_raw_as_python(void **state)
{
    (void)state;
    mp_array *s, *i;
    char buf[16];
    assert_int_equal(mp_array_open(&s, 'c', 8, NULL), 0);
    assert_int_equal(mp_array_get_string(s, buf, sizeof buf), 0);
    assert_string_equal(buf, "");
    assert_int_equal(mp_array_set_string(s, "hello", 5), 0);
    assert_int_equal(mp_array_get_string(s, buf, sizeof buf), 5);
    assert_string_equal(buf, "hello");
    /* .value = b'hi' writes "hi\0" and keeps the rest, as ctypes does: .raw shows "hi\0lo". */
    assert_int_equal(mp_array_set_string(s, "hi", 2), 0);
    assert_int_equal(mp_array_get_string(s, buf, sizeof buf), 2);
    assert_string_equal(buf, "hi");
    assert_int_equal(mp_array_get_slice(s, 0, PTRDIFF_MAX, buf, sizeof buf), 8);
    assert_memory_equal(buf, "hi\0lo\0\0\0", 8);
    /* Exactly the length: no room for a NUL, and .value then returns all of it. */
    assert_int_equal(mp_array_set_string(s, "abcdefgh", 8), 0);
    assert_int_equal(mp_array_get_string(s, buf, sizeof buf), 8);
    assert_string_equal(buf, "abcdefgh");
    assert_int_equal(mp_array_get_string(s, buf, 8), -EMSGSIZE);
    /* Too long: Python's ValueError, nothing written. */
    assert_int_equal(mp_array_set_string(s, "123456789", 9), -EINVAL);
    assert_int_equal(mp_array_get_string(s, buf, sizeof buf), 8);
    assert_string_equal(buf, "abcdefgh");
    /* .raw = b'XY' */
    assert_int_equal(mp_array_set_slice(s, 0, 2, "XY", 2), 0);
    assert_int_equal(mp_array_get_string(s, buf, sizeof buf), 8);
    assert_string_equal(buf, "XYcdefgh");
    assert_int_equal(mp_array_open(&i, 'b', 8, NULL), 0);
    assert_int_equal(mp_array_get_string(i, buf, sizeof buf), MP_ETYPE);
    assert_int_equal(mp_array_set_string(i, "x", 1), MP_ETYPE);
    mp_array_close(s);
    mp_array_close(i);
}

/* ---- bad input writes nothing ---------------------------------------------------------------- */

static void
test_bad_input_returns_errors_and_writes_nothing(void **state)
{
    (void)state;
    mp_value *v = (mp_value *)1;
    mp_array *a = (mp_array *)1;
    assert_int_equal(mp_value_open(&v, 'u', NULL), MP_ETYPE);
    assert_null(v);
    assert_int_equal(mp_value_open(&v, 'x', NULL), MP_ETYPE);
    assert_int_equal(mp_value_open(&v, 0, NULL), -EINVAL);
    assert_int_equal(mp_value_open(NULL, 'i', NULL), -EINVAL);
    assert_int_equal(mp_array_open(&a, 'i', SIZE_MAX / 2, NULL), -ENOMEM);
    assert_null(a);

    int init[3] = {1, 2, 3}, x = 99, out[3];
    long l = 5;
    assert_int_equal(mp_array_open(&a, 'i', 3, &(mp_value_opts){.init = init}), 0);
    assert_int_equal(mp_array_set(a, 3, &x, sizeof x), -ERANGE);
    assert_int_equal(mp_array_set(a, -4, &x, sizeof x), -ERANGE);
    assert_int_equal(mp_array_get(a, 3, &x, sizeof x), -ERANGE);
    assert_int_equal(mp_array_set(a, 0, &l, sizeof l), MP_ETYPE);
    assert_int_equal(mp_array_get(a, 0, &l, sizeof l), MP_ETYPE);
    assert_int_equal(l, 5);
    assert_int_equal(mp_array_set(a, 0, NULL, sizeof x), -EINVAL);
    assert_int_equal(mp_array_set(NULL, 0, &x, sizeof x), -EINVAL);
    /* A slice assignment of the wrong length: Python's ValueError. */
    assert_int_equal(mp_array_set_slice(a, 0, 2, out, 3 * sizeof(int)), -EINVAL);
    assert_int_equal(mp_array_set_slice(a, 0, 3, out, 2 * sizeof(int)), -EINVAL);
    assert_int_equal(mp_array_fetch_add(a, 5, 1, NULL), -ERANGE);
    assert_int_equal(mp_array_exchange(a, -4, 1, NULL), -ERANGE);
    assert_int_equal(mp_array_exchange(a, 0, INT64_C(1) << 40, NULL), -EOVERFLOW);
    assert_int_equal(mp_array_get_slice(a, 0, 3, out, sizeof out), 3);
    assert_memory_equal(out, init, sizeof init);

    assert_int_equal(mp_value_open(&v, 'i', NULL), 0);
    assert_int_equal(mp_value_set(v, &l, sizeof l), MP_ETYPE);
    assert_int_equal(mp_value_get(v, &x, sizeof x), 0);
    assert_int_equal(x, 0);
    assert_int_equal(mp_value_get(v, NULL, sizeof x), -EINVAL);
    assert_null(mp_value_get_lock(NULL));
    assert_null(mp_value_ptr(NULL));
    assert_int_equal(mp_array_len(NULL), 0);
    mp_value_close(v);
    mp_array_close(a);
    mp_value_close(NULL);
    mp_array_close(NULL);
}

/* ---- a killed lock holder -------------------------------------------------------------------- */

static int
die_holding_value_lock_child(void *arg)
{
    (void)arg;
    CHILD_CHECK(mp_lock_acquire(mp_value_get_lock(S->v), MP_FOREVER) == 0);
    int x = 7;
    CHILD_CHECK(mp_value_set(S->v, &x, sizeof x) == 0);
    kill(getpid(), SIGKILL);
    return 1;
}

/* Killed inside the library, in the middle of a locked set: the lock has just been taken. */
static int
die_inside_a_set_child(void *arg)
{
    (void)arg;
    CHILD_CHECK(mp__fault_arm("sync.lock.held", 1, NULL, NULL) == 0);
    long long q[3] = {1, 2, 3};
    mp_array_set_slice(S->a, 0, 3, q, sizeof q);
    return 1;
}

static void
test_child_killed_holding_the_lock_does_not_block_the_parent(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    shared_new(1);
    assert_int_equal(mp_value_open(&S->v, 'i', NULL), 0);
    pid_t c = th_fork(die_holding_value_lock_child, NULL);
    assert_true(c > 0);
    int st = th_wait(c, 10000);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    int x = 0;
    assert_int_equal(mp_value_get(S->v, &x, sizeof x), MP_OWNERDEAD);
    assert_int_equal(x, 7);
    if (mp__fault_enabled()) {
        assert_int_equal(mp_array_open(&S->a, 'q', 3, NULL), 0);
        c = th_fork(die_inside_a_set_child, NULL);
        assert_true(c > 0);
        st = th_wait(c, 10000);
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        long long q[3] = {9, 9, 9};
        assert_int_equal(mp_array_get_slice(S->a, 0, 3, q, sizeof q), 3); /* did not block */
        assert_true(q[0] == 0 && q[2] == 0);
        assert_int_equal(mp_array_set(S->a, 1, &q[0], sizeof q[0]), 0);
        mp_array_close(S->a);
    }
    assert_int_equal(mp_value_get(S->v, &x, sizeof x), 0);
    x = 8;
    assert_int_equal(mp_value_set(S->v, &x, sizeof x), 0);
    assert_int_equal(mp_lock_acquire(mp_value_get_lock(S->v), MP_NOWAIT), 0);
    assert_int_equal(mp_lock_release(mp_value_get_lock(S->v)), 0);
    mp_value_close(S->v);
    shared_free();
}

/* ---- layout
 * -------------------------------------------------------------------------------------- */

static int
layout_child(void *arg)
{
    mp_array **arrs = arg;
    for (size_t n = 0; n < 40; n++) {
        mp_lock *l = mp_array_get_lock(arrs[n]);
        CHILD_CHECK(th_barrier_wait(S->tb) == 0);
        for (int i = 0; i < 1000; i++) {
            CHILD_CHECK(mp_lock_acquire(l, MP_FOREVER) == 0);
            for (size_t k = 0; k < n; k++)
                CHILD_CHECK(mp_array_fetch_add(arrs[n], (ptrdiff_t)k, 1, NULL) == 0);
            CHILD_CHECK(mp_lock_release(l) == 0);
        }
    }
    return 0;
}

/* Small data shares the block with the object's lock: writing every byte of it, from two
 * processes contending for that lock, must never disturb the lock, and the data must be aligned
 * for its type. */
static void
test_data_beside_the_lock_never_disturbs_it(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    shared_new(2);
    mp_array *arrs[40];
    for (size_t n = 0; n < 40; n++) {
        assert_int_equal(mp_array_open(&arrs[n], 'q', n, NULL), 0);
        assert_true(((uintptr_t)mp_array_ptr(arrs[n]) & 7) == 0);
    }
    pid_t c = th_fork(layout_child, arrs);
    assert_true(c > 0);
    for (size_t n = 0; n < 40; n++) {
        mp_lock *l = mp_array_get_lock(arrs[n]);
        assert_int_equal(th_barrier_wait(S->tb), 0);
        for (int i = 0; i < 1000; i++) {
            assert_int_equal(mp_lock_acquire(l, MP_FOREVER), 0);
            long long m1 = -1;
            for (size_t k = 0; k < n; k++)
                assert_int_equal(mp_array_set(arrs[n], (ptrdiff_t)k, &m1, sizeof m1), 0);
            for (size_t k = 0; k < n; k++)
                assert_int_equal(mp_array_fetch_add(arrs[n], (ptrdiff_t)k, 2, NULL), 0);
            assert_int_equal(mp_lock_release(l), 0);
        }
    }
    assert_child_ok(c);
    for (size_t n = 0; n < 40; n++) {
        /* The last writer under the lock decides: the parent's -1 + 2, then maybe child's +1s. */
        long long got[40];
        assert_int_equal(mp_array_get_slice(arrs[n], 0, PTRDIFF_MAX, got, sizeof got), (ssize_t)n);
        for (size_t k = 1; k < n; k++)
            assert_true(got[k] == got[0] && got[k] >= 1);
        assert_int_equal(mp_lock_acquire(mp_array_get_lock(arrs[n]), MP_NOWAIT), 0);
        assert_int_equal(mp_lock_release(mp_array_get_lock(arrs[n])), 0);
        mp_array_close(arrs[n]);
    }
    /* A C type above 8 bytes is aligned to 16 in every lock mode. */
    mp_value *v;
    mp_lock *l;
    assert_int_equal(mp_lock_open(&l, NULL), 0);
    const mp_value_opts modes[] = {
        {.size = 16}, {.size = 16, .raw = true}, {.size = 16, .lock = l}};
    for (size_t m = 0; m < MP__ARRAY_LEN(modes); m++) {
        assert_int_equal(mp_value_open(&v, 0, &modes[m]), 0);
        assert_true(((uintptr_t)mp_value_ptr(v) & 15) == 0);
        mp_value_close(v);
    }
    mp_lock_close(l);
    shared_free();
}

/* ---- many values, ownership ------------------------------------------------------------------ */

#define MANY 100000

static int
many_child(void *arg)
{
    mp_value **vals = arg;
    for (int i = 0; i < MANY; i += 101) {
        int x;
        CHILD_CHECK(mp_value_get(vals[i], &x, sizeof x) == 0 && x == i);
        CHILD_CHECK(mp_value_fetch_add(vals[i], 1, NULL) == 0);
    }
    /* A child's close frees only its handle. */
    for (int i = 0; i < MANY; i++)
        mp_value_close(vals[i]);
    return 0;
}

static void
test_hundred_thousand_values_open_in_a_few_mappings(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    int maps0 = th_count_maps();
    mp_value **vals = mp__calloc(MANY, sizeof *vals);
    assert_non_null(vals);
    for (int i = 0; i < MANY; i++) {
        mp_value_opts o = {.raw = i % 2 == 1, .init = &i};
        assert_int_equal(mp_value_open(&vals[i], 'i', &o), 0);
    }
    assert_true(th_count_maps() - maps0 < 64);
    pid_t c = th_fork(many_child, vals);
    assert_true(c > 0);
    assert_child_ok(c);
    for (int i = 0; i < MANY; i++) {
        int x;
        assert_int_equal(mp_value_get(vals[i], &x, sizeof x), 0);
        assert_int_equal(x, i + (i % 101 == 0));
        mp_value_close(vals[i]);
    }
    mp__free(vals);
}

static int
stale_child(void *arg)
{
    (void)arg;
    CHILD_CHECK(th_barrier_wait(S->tb) == 0); /* the parent has closed the value */
    int x;
    CHILD_CHECK(mp_value_get(S->v, &x, sizeof x) == -EBADF);
    mp_value_close(S->v);
    return 0;
}

static void
test_only_the_creator_frees_and_stale_locked_handles_get_ebadf(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    shared_new(2);
    assert_int_equal(mp_value_open(&S->v, 'i', NULL), 0);
    assert_true(mp__arena_owns(mp_value_ptr(S->v)));
    pid_t c = th_fork(stale_child, NULL);
    assert_true(c > 0);
    void *old = mp_value_ptr(S->v);
    mp_value_close(S->v);
    /* The block is reused at once by a new value: the child's stale handle must still see that
     * its object is gone, not take the new object's lock. */
    mp_value *v2;
    assert_int_equal(mp_value_open(&v2, 'i', NULL), 0);
    assert_ptr_equal(mp_value_ptr(v2), old);
    assert_int_equal(th_barrier_wait(S->tb), 0);
    assert_child_ok(c);
    mp_value_close(v2);
    shared_free();
}

/* ---- threads of one process (what ThreadSanitizer can check) --------------------------------- */

#define THREADS 4
#define THREAD_ITERS 20000

typedef struct threads_shared {
    mp_value *v;     /* locked: atomics mixed with locked read-modify-writes */
    mp_array *flags; /* raw: lock-free set/get */
    _Atomic int failures;
} threads_shared;

static void *
thread_body(void *arg)
{
    threads_shared *t = arg;
    int fails = 0;
    mp_lock *l = mp_value_get_lock(t->v);
    for (int i = 0; i < THREAD_ITERS; i++) {
        long x;
        fails += mp_value_fetch_add(t->v, 1, NULL) != 0;
        fails += mp_lock_acquire(l, MP_FOREVER) != 0;
        /* A locked read beside other threads' lock-free adds, then an add under the lock. */
        fails += mp_value_get(t->v, &x, sizeof x) != 0;
        fails += x < 0;
        fails += mp_value_fetch_add(t->v, 2, NULL) != 0;
        fails += mp_lock_release(l) != 0;
        int one = 1, got;
        fails += mp_array_set(t->flags, i % 8, &one, sizeof one) != 0;
        fails += mp_array_get(t->flags, (i + 3) % 8, &got, sizeof got) != 0;
    }
    atomic_fetch_add(&t->failures, fails);
    return NULL;
}

static void
test_threads_mix_locked_raw_and_atomic_access(void **state)
{
    (void)state;
    threads_shared t = {0};
    assert_int_equal(mp_value_open(&t.v, 'l', NULL), 0);
    assert_int_equal(mp_array_open(&t.flags, 'i', 8, &(mp_value_opts){.raw = true}), 0);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, thread_body, &t), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(atomic_load(&t.failures), 0);
    long x;
    assert_int_equal(mp_value_get(t.v, &x, sizeof x), 0);
    assert_int_equal(x, 3L * THREADS * THREAD_ITERS);
    mp_value_close(t.v);
    mp_array_close(t.flags);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_typecode_round_trips_through_a_child_in_every_lock_mode),
        cmocka_unit_test(test_values_start_zeroed_and_typecode_sizes_match_c),
        cmocka_unit_test(test_lock_modes_own_recursive_raw_and_shared),
        cmocka_unit_test(test_four_processes_locked_increments_end_exact),
        cmocka_unit_test(test_atomics_are_exact_without_a_lock),
        cmocka_unit_test(test_atomics_widen_wrap_and_check_their_operands),
        cmocka_unit_test(test_array_slices_follow_python_bounds),
        cmocka_unit_test(test_char_array_value_and_raw_as_python),
        cmocka_unit_test(test_bad_input_returns_errors_and_writes_nothing),
        cmocka_unit_test(test_child_killed_holding_the_lock_does_not_block_the_parent),
        cmocka_unit_test(test_data_beside_the_lock_never_disturbs_it),
        cmocka_unit_test(test_hundred_thousand_values_open_in_a_few_mappings),
        cmocka_unit_test(test_only_the_creator_frees_and_stale_locked_handles_get_ebadf),
        cmocka_unit_test(test_threads_mix_locked_raw_and_atomic_access),
    };
    return th_run_tests(tests);
}
