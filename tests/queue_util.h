/*
 * queue_util.h - helpers shared by the mp_queue test executables (test_queue, test_queue_crash).
 */
#ifndef MPIPC_TEST_QUEUE_UTIL_H
#define MPIPC_TEST_QUEUE_UTIL_H

#include "helpers.h"
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* ---- helpers -------------------------------------------------------------------------------- */

/* A gate in shared memory that a child (or a fault point) blocks on until the parent opens it. */
typedef struct gate {
    _Atomic uint32_t open;
} gate;

static inline gate *
gate_new(void)
{
    gate *g = th_shared(sizeof *g);
    assert_non_null(g);
    return g;
}

static inline void
gate_open(gate *g)
{
    atomic_store(&g->open, 1);
    mp__futex_wake(&g->open, INT32_MAX);
}

static inline void
gate_wait(gate *g)
{
    while (atomic_load(&g->open) == 0)
        mp__futex_wait(&g->open, 0, NULL);
}

static inline void
gate_free(gate *g)
{
    th_shared_free(g, sizeof *g);
}

/* A fault-point action: block on the gate passed as arg. */
static inline void
fault_block(const char *point, void *arg)
{
    (void)point;
    gate_wait(arg);
}

static inline mp_queue *
open_queue(size_t maxsize, size_t capacity, bool joinable)
{
    mp_queue *q = NULL;
    assert_int_equal(
        mp_queue_open(
            &q, &(mp_queue_opts){.maxsize = maxsize, .capacity = capacity, .joinable = joinable}),
        0);
    return q;
}

/* Fill buf with a pattern determined by (a, b). */
static inline void
fill(unsigned char *buf, size_t len, uint32_t a, uint32_t b)
{
    uint32_t x = a * 2654435761u ^ b * 40503u ^ 0x9e3779b9u;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (unsigned char)(x >> 24);
    }
}

static inline bool
check(const unsigned char *buf, size_t len, uint32_t a, uint32_t b)
{
    unsigned char *want = malloc(len > 0 ? len : 1);
    fill(want, len, a, b);
    bool ok = memcmp(want, buf, len) == 0;
    free(want);
    return ok;
}

static inline void
put_str(mp_queue *q, const char *s)
{
    assert_int_equal(mp_queue_put(q, s, strlen(s), 5000), 0);
}

static inline void
expect_str(mp_queue *q, const char *s, int timeout_ms)
{
    char buf[256];
    size_t len = 0;
    assert_int_equal(mp_queue_get(q, buf, sizeof buf, &len, timeout_ms), 0);
    assert_int_equal(len, strlen(s));
    assert_memory_equal(buf, s, len);
}

#define BIG (1u << 20)

#endif
