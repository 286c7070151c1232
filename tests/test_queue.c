/*
 * test_queue.c - mp_queue: FIFO, limits, timeouts, streaming, MPMC stress, JoinableQueue, and
 * SIGKILL at every crash-safety fault point.
 */
#define _GNU_SOURCE
#include "helpers.h"
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

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

static gate *
gate_new(void)
{
    gate *g = th_shared(sizeof *g);
    assert_non_null(g);
    return g;
}

static void
gate_open(gate *g)
{
    atomic_store(&g->open, 1);
    mp__futex_wake(&g->open, INT32_MAX);
}

static void
gate_wait(gate *g)
{
    while (atomic_load(&g->open) == 0)
        mp__futex_wait(&g->open, 0, NULL);
}

static void
gate_free(gate *g)
{
    th_shared_free(g, sizeof *g);
}

/* A fault-point action: block on the gate passed as arg. */
static void
fault_block(const char *point, void *arg)
{
    (void)point;
    gate_wait(arg);
}

static mp_queue *
open_queue(size_t maxsize, size_t capacity, bool joinable)
{
    mp_queue *q = NULL;
    assert_int_equal(
        mp_queue_open(&q, &(mp_queue_opts){.maxsize = maxsize, .capacity = capacity,
                                           .joinable = joinable}),
        0);
    return q;
}

/* Fill buf with a pattern determined by (a, b). */
static void
fill(unsigned char *buf, size_t len, uint32_t a, uint32_t b)
{
    uint32_t x = a * 2654435761u ^ b * 40503u ^ 0x9e3779b9u;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (unsigned char)(x >> 24);
    }
}

static bool
check(const unsigned char *buf, size_t len, uint32_t a, uint32_t b)
{
    unsigned char *want = malloc(len > 0 ? len : 1);
    fill(want, len, a, b);
    bool ok = memcmp(want, buf, len) == 0;
    free(want);
    return ok;
}

static void
put_str(mp_queue *q, const char *s)
{
    assert_int_equal(mp_queue_put(q, s, strlen(s), 5000), 0);
}

static void
expect_str(mp_queue *q, const char *s, int timeout_ms)
{
    char buf[256];
    size_t len = 0;
    assert_int_equal(mp_queue_get(q, buf, sizeof buf, &len, timeout_ms), 0);
    assert_int_equal(len, strlen(s));
    assert_memory_equal(buf, s, len);
}

/* ---- basic semantics ------------------------------------------------------------------------ */

static void
test_queue_open_checks_options(void **state)
{
    (void)state;
    mp_queue *q = (mp_queue *)1;
    assert_int_equal(mp_queue_open(NULL, NULL), -EINVAL);
    assert_int_equal(mp_queue_open(&q, &(mp_queue_opts){.maxsize = (size_t)1 << 40}), -EINVAL);
    assert_null(q);
    assert_int_equal(mp_queue_open(&q, &(mp_queue_opts){.capacity = (size_t)1 << 33}), -EINVAL);
    mp__alloc_fail_after(0);
    assert_int_equal(mp_queue_open(&q, NULL), -ENOMEM);
    mp__alloc_fail_after(-1);
    /* A capacity that is not a power of two is rounded up: 100 B holds a 100 B frame. */
    q = open_queue(0, 100, false);
    unsigned char buf[120] = {0};
    assert_int_equal(mp_queue_put(q, buf, 120, MP_NOWAIT), 0);
    assert_int_equal(mp_queue_put(q, buf, 0, MP_NOWAIT), -EAGAIN);
    mp_queue_close(q);
    mp_queue_close(NULL);
}

static void
test_queue_rejects_bad_arguments(void **state)
{
    (void)state;
    mp_queue *q = open_queue(0, 0, false);
    char buf[8];
    size_t len;
    void *p;
    assert_int_equal(mp_queue_put(NULL, "x", 1, 0), -EINVAL);
    assert_int_equal(mp_queue_put(q, NULL, 1, 0), -EINVAL);
    assert_int_equal(mp_queue_put(q, "x", 1, -2), -EINVAL);
    assert_int_equal(mp_queue_get(NULL, buf, 8, &len, 0), -EINVAL);
    assert_int_equal(mp_queue_get(q, buf, 8, NULL, 0), -EINVAL);
    assert_int_equal(mp_queue_get(q, NULL, 8, &len, 0), -EINVAL);
    assert_int_equal(mp_queue_get(q, buf, 8, &len, -5), -EINVAL);
    assert_int_equal(mp_queue_get_alloc(q, NULL, &len, 0), -EINVAL);
    assert_int_equal(mp_queue_get_alloc(q, &p, NULL, 0), -EINVAL);
    assert_int_equal(mp_queue_qsize(NULL), -EINVAL);
    assert_int_equal(mp_queue_empty(NULL), -EINVAL);
    assert_int_equal(mp_queue_full(NULL), -EINVAL);
    /* task_done and join belong to JoinableQueue. */
    assert_int_equal(mp_queue_task_done(q), -EINVAL);
    assert_int_equal(mp_queue_join(q, 0), -EINVAL);
    assert_int_equal(mp_queue_qsize(q), 0);
    mp_queue_close(q);
}

static void
test_queue_is_fifo_with_exact_qsize(void **state)
{
    (void)state;
    mp_queue *q = open_queue(0, 1 << 16, false);
    unsigned char buf[300];
    assert_int_equal(mp_queue_empty(q), 1);
    for (uint32_t i = 0; i < 200; i++) {
        fill(buf, i, i, 7);
        assert_int_equal(mp_queue_put(q, buf, i, MP_NOWAIT), 0);
        assert_int_equal(mp_queue_qsize(q), (int)i + 1);
    }
    assert_int_equal(mp_queue_empty(q), 0);
    assert_int_equal(mp_queue_full(q), 0);
    for (uint32_t i = 0; i < 200; i++) {
        size_t len = 0;
        assert_int_equal(mp_queue_get(q, buf, sizeof buf, &len, MP_NOWAIT), 0);
        assert_int_equal(len, i);
        assert_true(check(buf, len, i, 7));
        assert_int_equal(mp_queue_qsize(q), 199 - (int)i);
    }
    assert_int_equal(mp_queue_empty(q), 1);
    mp_queue_close(q);
}

static int
child_put_sequence(void *arg)
{
    mp_queue *q = arg;
    unsigned char buf[64];
    for (uint32_t i = 0; i < 5000; i++) {
        fill(buf, i % 64, i, 1);
        CHILD_CHECK(mp_queue_put(q, buf, i % 64, 10000) == 0);
    }
    mp_queue_close(q);
    return 0;
}

static void
test_queue_is_fifo_across_processes(void **state)
{
    (void)state;
    /* A small ring, so the producer blocks on room many times. */
    mp_queue *q = open_queue(0, 256, false);
    pid_t pid = th_fork(child_put_sequence, q);
    for (uint32_t i = 0; i < 5000; i++) {
        unsigned char buf[64];
        size_t len;
        assert_int_equal(mp_queue_get(q, buf, sizeof buf, &len, 10000), 0);
        assert_int_equal(len, i % 64);
        assert_true(check(buf, len, i, 1));
    }
    assert_child_ok(pid);
    assert_int_equal(mp_queue_empty(q), 1);
    mp_queue_close(q);
}

static void
test_queue_get_times_out_when_empty(void **state)
{
    (void)state;
    mp_queue *q = open_queue(0, 0, false);
    char buf[8];
    size_t len;
    void *p = NULL;
    assert_int_equal(mp_queue_get(q, buf, sizeof buf, &len, MP_NOWAIT), -EAGAIN);
    assert_int_equal(mp_queue_get_alloc(q, &p, &len, MP_NOWAIT), -EAGAIN);
    int64_t t0 = th_now_ms();
    assert_int_equal(mp_queue_get(q, buf, sizeof buf, &len, 100), -ETIMEDOUT);
    int64_t dt = th_now_ms() - t0;
    assert_true(dt >= 95 && dt < 3000);
    assert_null(p);
    mp_queue_close(q);
}

static int
child_get_one(void *arg)
{
    mp_queue *q = arg;
    char buf[16];
    size_t len;
    CHILD_CHECK(mp_queue_get(q, buf, sizeof buf, &len, 10000) == 0);
    CHILD_CHECK(len == 1 && buf[0] == '0');
    return 0;
}

static void
test_queue_put_blocks_at_maxsize(void **state)
{
    (void)state;
    mp_queue *q = open_queue(3, 0, false);
    for (int i = 0; i < 3; i++) {
        char c = (char)('0' + i);
        assert_int_equal(mp_queue_put(q, &c, 1, MP_NOWAIT), 0);
    }
    assert_int_equal(mp_queue_full(q), 1);
    assert_int_equal(mp_queue_put(q, "x", 1, MP_NOWAIT), -EAGAIN);
    int64_t t0 = th_now_ms();
    assert_int_equal(mp_queue_put(q, "x", 1, 100), -ETIMEDOUT);
    int64_t dt = th_now_ms() - t0;
    assert_true(dt >= 95 && dt < 3000);
    assert_int_equal(mp_queue_qsize(q), 3);
    /* A consumer in another process makes room; the blocked put then completes. */
    pid_t pid = th_fork(child_get_one, q);
    assert_int_equal(mp_queue_put(q, "3", 1, 10000), 0);
    assert_child_ok(pid);
    assert_int_equal(mp_queue_qsize(q), 3);
    expect_str(q, "1", 0);
    expect_str(q, "2", 0);
    expect_str(q, "3", 0);
    mp_queue_close(q);
}

static void
test_queue_put_blocks_when_ring_is_full(void **state)
{
    (void)state;
    mp_queue *q = open_queue(0, 64, false);
    unsigned char buf[40] = {1};
    assert_int_equal(mp_queue_put(q, buf, 40, MP_NOWAIT), 0); /* a 48-byte frame of 64 */
    assert_int_equal(mp_queue_full(q), 0);                    /* an empty message fits */
    assert_int_equal(mp_queue_put(q, buf, 9, MP_NOWAIT), -EAGAIN);
    assert_int_equal(mp_queue_put(q, buf, 8, MP_NOWAIT), 0);
    assert_int_equal(mp_queue_full(q), 1);
    assert_int_equal(mp_queue_put(q, NULL, 0, 50), -ETIMEDOUT);
    size_t len;
    assert_int_equal(mp_queue_get(q, buf, sizeof buf, &len, 0), 0);
    assert_int_equal(len, 40);
    assert_int_equal(mp_queue_put(q, buf, 40, MP_NOWAIT), 0);
    mp_queue_close(q);
}

static void
test_queue_get_keeps_message_when_buffer_too_small(void **state)
{
    (void)state;
    mp_queue *q = open_queue(0, 4096, false);
    unsigned char big[10000], buf[10000];
    fill(big, 100, 1, 2);
    assert_int_equal(mp_queue_put(q, big, 100, 0), 0);
    size_t len = 0;
    assert_int_equal(mp_queue_get(q, buf, 99, &len, 0), -EMSGSIZE);
    assert_int_equal(len, 100);
    assert_int_equal(mp_queue_get(q, NULL, 0, &len, 0), -EMSGSIZE);
    assert_int_equal(mp_queue_qsize(q), 1);
    assert_int_equal(mp_queue_get(q, buf, 100, &len, 0), 0);
    assert_true(check(buf, len, 1, 2));
    mp_queue_close(q);
}

static void
test_queue_zero_length_messages(void **state)
{
    (void)state;
    mp_queue *q = open_queue(0, 64, false);
    for (int i = 0; i < 8; i++) /* eight 8-byte frames fill the 64-byte ring */
        assert_int_equal(mp_queue_put(q, NULL, 0, MP_NOWAIT), 0);
    assert_int_equal(mp_queue_put(q, NULL, 0, MP_NOWAIT), -EAGAIN);
    assert_int_equal(mp_queue_qsize(q), 8);
    size_t len = 99;
    assert_int_equal(mp_queue_get(q, NULL, 0, &len, 0), 0);
    assert_int_equal(len, 0);
    void *p = NULL;
    assert_int_equal(mp_queue_get_alloc(q, &p, &len, 0), 0);
    assert_non_null(p);
    assert_int_equal(len, 0);
    mp_free(p);
    assert_int_equal(mp_queue_qsize(q), 6);
    mp_queue_close(q);
}

static void
test_queue_get_alloc_returns_a_copy_and_survives_enomem(void **state)
{
    (void)state;
    mp_queue *q = open_queue(0, 0, false);
    put_str(q, "hello");
    void *p = NULL;
    size_t len;
    mp__alloc_fail_after(0);
    assert_int_equal(mp_queue_get_alloc(q, &p, &len, 0), -ENOMEM);
    mp__alloc_fail_after(-1);
    assert_int_equal(mp_queue_qsize(q), 1);
    assert_int_equal(mp_queue_get_alloc(q, &p, &len, 0), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(p, "hello", 5);
    mp_free(p);
    mp_queue_close(q);
}

/* ---- messages larger than the ring ----------------------------------------------------------- */

#define BIG (1u << 20)

static int
child_put_big_then_small(void *arg)
{
    mp_queue *q = arg;
    unsigned char *buf = malloc(BIG);
    CHILD_CHECK(buf != NULL);
    for (uint32_t i = 0; i < 4; i++) {
        size_t len = BIG - i * 1237;
        fill(buf, len, i, 3);
        CHILD_CHECK(mp_queue_put(q, buf, len, 20000) == 0);
        CHILD_CHECK(mp_queue_put(q, "small", 5, 20000) == 0);
    }
    free(buf);
    return 0;
}

static void
test_queue_streams_messages_larger_than_ring(void **state)
{
    (void)state;
    mp_queue *q = open_queue(0, 4096, false);
    unsigned char big[8192] = {0};
    /* With nobody waiting on the other side, a streamed message cannot move without waiting. */
    assert_int_equal(mp_queue_put(q, big, sizeof big, MP_NOWAIT), -EAGAIN);
    pid_t pid = th_fork(child_put_big_then_small, q);
    unsigned char *buf = malloc(BIG);
    assert_non_null(buf);
    for (uint32_t i = 0; i < 4; i++) {
        size_t len = 0;
        if (i % 2 == 0) {
            assert_int_equal(mp_queue_get(q, buf, BIG, &len, 20000), 0);
            assert_int_equal(len, BIG - i * 1237);
            assert_true(check(buf, len, i, 3));
        } else {
            void *p;
            assert_int_equal(mp_queue_get_alloc(q, &p, &len, 20000), 0);
            assert_int_equal(len, BIG - i * 1237);
            assert_true(check(p, len, i, 3));
            mp_free(p);
        }
        expect_str(q, "small", 20000);
    }
    free(buf);
    assert_child_ok(pid);
    assert_int_equal(mp_queue_qsize(q), 0);
    mp_queue_close(q);
}

/* Two producers stream large messages at two consumers: no interleaving, nothing partial. */
typedef struct stream_ctx {
    mp_queue *q;
    uint32_t id;
} stream_ctx;

#define STREAM_MSGS 24

static int
child_stream_producer(void *arg)
{
    stream_ctx *c = arg;
    unsigned char *buf = malloc(100000);
    CHILD_CHECK(buf != NULL);
    for (uint32_t i = 0; i < STREAM_MSGS; i++) {
        size_t len = 1000 + (i * 7919u + c->id * 3001u) % 99000;
        memcpy(buf, &c->id, 4);
        memcpy(buf + 4, &i, 4);
        fill(buf + 8, len - 8, c->id, i);
        CHILD_CHECK(mp_queue_put(c->q, buf, len, 20000) == 0);
    }
    free(buf);
    return 0;
}

static int
child_stream_consumer(void *arg)
{
    stream_ctx *c = arg;
    int got = 0;
    for (;;) {
        void *p;
        size_t len;
        CHILD_CHECK(mp_queue_get_alloc(c->q, &p, &len, 20000) == 0);
        if (len == 0) {
            mp_free(p);
            break;
        }
        uint32_t id, i;
        memcpy(&id, p, 4);
        memcpy(&i, (char *)p + 4, 4);
        CHILD_CHECK(id < 2 && i < STREAM_MSGS);
        CHILD_CHECK(len == 1000 + (i * 7919u + id * 3001u) % 99000);
        CHILD_CHECK(check((unsigned char *)p + 8, len - 8, id, i));
        mp_free(p);
        got++;
    }
    return got > 0 ? 0 : 1;
}

static void
test_queue_streams_never_interleave(void **state)
{
    (void)state;
    mp_queue *q = open_queue(0, 8192, false);
    stream_ctx c[2] = {{q, 0}, {q, 1}};
    pid_t prod[2], cons[2];
    for (int i = 0; i < 2; i++) {
        prod[i] = th_fork(child_stream_producer, &c[i]);
        cons[i] = th_fork(child_stream_consumer, &c[i]);
    }
    for (int i = 0; i < 2; i++)
        assert_child_ok(prod[i]);
    for (int i = 0; i < 2; i++)
        assert_int_equal(mp_queue_put(q, NULL, 0, 10000), 0);
    for (int i = 0; i < 2; i++)
        assert_child_ok(cons[i]);
    assert_int_equal(mp_queue_qsize(q), 0);
    mp_queue_close(q);
}

/* ---- many producers, many consumers ---------------------------------------------------------- */

#define NPROD 4
#define NCONS 4
#define STRESS_N (SANITIZED ? 20000u : 100000u)

typedef struct stress {
    mp_queue *q;
    uint32_t id;
    _Atomic uint8_t *seen; /* [NPROD][STRESS_N] */
} stress;

static size_t
stress_len(uint32_t p, uint32_t i)
{
    return 8 + (i * 31u + p * 17u) % 97u;
}

static int
child_stress_producer(void *arg)
{
    stress *s = arg;
    unsigned char buf[128];
    for (uint32_t i = 0; i < STRESS_N; i++) {
        size_t len = stress_len(s->id, i);
        memcpy(buf, &s->id, 4);
        memcpy(buf + 4, &i, 4);
        fill(buf + 8, len - 8, s->id, i);
        CHILD_CHECK(mp_queue_put(s->q, buf, len, 20000) == 0);
    }
    return 0;
}

static int
child_stress_consumer(void *arg)
{
    stress *s = arg;
    int64_t last[NPROD] = {-1, -1, -1, -1};
    unsigned char buf[128];
    for (;;) {
        size_t len;
        CHILD_CHECK(mp_queue_get(s->q, buf, sizeof buf, &len, 20000) == 0);
        if (len == 0)
            return 0;
        uint32_t p, i;
        memcpy(&p, buf, 4);
        memcpy(&i, buf + 4, 4);
        CHILD_CHECK(p < NPROD && i < STRESS_N && len == stress_len(p, i));
        CHILD_CHECK(check(buf + 8, len - 8, p, i));
        CHILD_CHECK((int64_t)i > last[p]); /* per-producer order */
        last[p] = i;
        atomic_fetch_add(&s->seen[(size_t)p * STRESS_N + i], 1);
    }
}

static void
test_queue_4_producers_4_consumers_deliver_exact_multiset(void **state)
{
    (void)state;
    mp_queue *q = open_queue(0, 1 << 14, false);
    size_t seen_size = (size_t)NPROD * STRESS_N;
    _Atomic uint8_t *seen = th_shared(seen_size);
    assert_non_null(seen);
    stress s[NPROD + NCONS];
    pid_t pids[NPROD + NCONS];
    for (uint32_t i = 0; i < NPROD + NCONS; i++) {
        s[i] = (stress){q, i < NPROD ? i : i - NPROD, seen};
        pids[i] = th_fork(i < NPROD ? child_stress_producer : child_stress_consumer, &s[i]);
        assert_true(pids[i] > 0);
    }
    for (int i = 0; i < NPROD; i++)
        assert_child_ok(pids[i]);
    for (int i = 0; i < NCONS; i++) /* one empty message stops each consumer */
        assert_int_equal(mp_queue_put(q, NULL, 0, 10000), 0);
    for (int i = NPROD; i < NPROD + NCONS; i++)
        assert_child_ok(pids[i]);
    size_t bad = 0;
    for (size_t i = 0; i < seen_size; i++)
        bad += atomic_load(&seen[i]) != 1;
    assert_int_equal(bad, 0);
    assert_int_equal(mp_queue_qsize(q), 0);
    th_shared_free((void *)seen, seen_size);
    mp_queue_close(q);
}

/* ---- JoinableQueue -------------------------------------------------------------------------- */

static int
child_work_through(void *arg)
{
    mp_queue *q = arg;
    for (int i = 0; i < 3; i++) {
        char buf[8];
        size_t len;
        CHILD_CHECK(mp_queue_get(q, buf, sizeof buf, &len, 10000) == 0);
        CHILD_CHECK(mp_queue_task_done(q) == 0);
    }
    return 0;
}

static void
test_queue_joinable_counts_tasks(void **state)
{
    (void)state;
    mp_queue *q = open_queue(0, 0, true);
    assert_int_equal(mp_queue_join(q, MP_NOWAIT), 0);
    assert_int_equal(mp_queue_task_done(q), -EINVAL);
    assert_int_equal(mp_queue_join(q, -2), -EINVAL);
    for (int i = 0; i < 3; i++)
        put_str(q, "job");
    assert_int_equal(mp_queue_join(q, MP_NOWAIT), -EAGAIN);
    int64_t t0 = th_now_ms();
    assert_int_equal(mp_queue_join(q, 100), -ETIMEDOUT);
    int64_t dt = th_now_ms() - t0;
    assert_true(dt >= 95 && dt < 3000);
    /* Taking the messages is not enough: each must be marked done. */
    pid_t pid = th_fork(child_work_through, q);
    assert_int_equal(mp_queue_join(q, 10000), 0);
    assert_child_ok(pid);
    assert_int_equal(mp_queue_task_done(q), -EINVAL);
    mp_queue_close(q);
}

/* ---- crash safety --------------------------------------------------------------------------- */

typedef struct crash {
    mp_queue *q;
    const char *point;
    unsigned nth;
    size_t len;
    gate *g;
} crash;

static int
child_put_killed(void *arg)
{
    crash *c = arg;
    unsigned char *buf = calloc(1, c->len);
    CHILD_CHECK(buf != NULL);
    fill(buf, c->len, 9, 9);
    CHILD_CHECK(mp__fault_arm(c->point, c->nth, NULL, NULL) == 0);
    mp_queue_put(c->q, buf, c->len, 20000);
    return 1; /* not reached: the fault point kills the child */
}

static int
child_get_killed(void *arg)
{
    crash *c = arg;
    void *p;
    size_t len;
    CHILD_CHECK(mp__fault_arm(c->point, c->nth, NULL, NULL) == 0);
    mp_queue_get_alloc(c->q, &p, &len, 20000);
    return 1;
}

static void
assert_killed(pid_t pid)
{
    int st = th_wait(pid, 30000);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGKILL);
}

static void
test_queue_producer_killed_before_publish_leaves_no_trace(void **state)
{
    (void)state;
    if (!mp__fault_enabled())
        skip();
    /* queue.put.counted: a JoinableQueue has counted the task but not yet published it. */
    static const char *const points[] = {"queue.put.copied", "queue.put.copied",
                                         "queue.put.counted"};
    for (int k = 0; k < 3; k++) {
        bool joinable = k > 0;
        mp_queue *q = open_queue(0, 1024, joinable);
        put_str(q, "before");
        crash c = {q, points[k], 1, 100, NULL};
        assert_killed(th_fork(child_put_killed, &c));
        assert_int_equal(mp_queue_qsize(q), 1);
        /* The lock it died holding is repaired by the next producer. */
        put_str(q, "after");
        expect_str(q, "before", 0);
        expect_str(q, "after", 0);
        assert_int_equal(mp_queue_empty(q), 1);
        if (joinable) {
            assert_int_equal(mp_queue_task_done(q), 0);
            assert_int_equal(mp_queue_task_done(q), 0);
            assert_int_equal(mp_queue_join(q, MP_NOWAIT), 0);
        }
        mp_queue_close(q);
    }
}

static void
test_queue_consumer_killed_before_advancing_leaves_message(void **state)
{
    (void)state;
    if (!mp__fault_enabled())
        skip();
    mp_queue *q = open_queue(0, 1024, false);
    put_str(q, "first");
    put_str(q, "second");
    crash c = {q, "queue.get.copied", 1, 0, NULL};
    assert_killed(th_fork(child_get_killed, &c));
    /* It died holding the consumer lock after copying: the message is still queued. */
    assert_int_equal(mp_queue_qsize(q), 2);
    expect_str(q, "first", 0);
    expect_str(q, "second", 0);
    mp_queue_close(q);
}

/* A consumer child blocked in get while a producer dies in the middle of a stream: it must
 * discard the partial message within a bounded time and then take the next message. */
static int
child_get_big_expect_after(void *arg)
{
    mp_queue *q = arg;
    void *p;
    size_t len;
    CHILD_CHECK(mp_queue_get_alloc(q, &p, &len, 20000) == 0);
    CHILD_CHECK(len == 5 && memcmp(p, "after", 5) == 0);
    mp_free(p);
    return 0;
}

static void
test_queue_consumer_discards_stream_of_killed_producer(void **state)
{
    (void)state;
    if (!mp__fault_enabled())
        skip();
    mp_queue *q = open_queue(0, 4096, false);
    /* The consumer allocates, so it starts taking the stream as soon as it appears. */
    pid_t cons = th_fork(child_get_big_expect_after, q);
    crash c = {q, "queue.stream.chunk", 3, 100000, NULL};
    assert_killed(th_fork(child_put_killed, &c));
    int64_t t0 = th_now_ms();
    /* Nobody touches the producer lock: the consumer itself must notice and discard. */
    while (mp_queue_qsize(q) != 0 && th_now_ms() - t0 < 5000)
        usleep(1000);
    int64_t dt = th_now_ms() - t0;
    assert_int_equal(mp_queue_qsize(q), 0);
    assert_true(dt < 2000);
    put_str(q, "after");
    assert_child_ok(cons);
    mp_queue_close(q);
}

static void
test_queue_next_producer_aborts_stream_of_killed_producer(void **state)
{
    (void)state;
    if (!mp__fault_enabled())
        skip();
    for (int joinable = 0; joinable < 2; joinable++) {
        mp_queue *q = open_queue(0, 4096, joinable);
        crash c = {q, "queue.stream.chunk", 1, 100000, NULL};
        assert_killed(th_fork(child_put_killed, &c));
        assert_int_equal(mp_queue_qsize(q), 1); /* the partial stream, not yet discarded */
        put_str(q, "after");                    /* repairs the lock and ends the stream */
        pid_t cons = th_fork(child_get_big_expect_after, q);
        assert_child_ok(cons);
        assert_int_equal(mp_queue_qsize(q), 0);
        if (joinable) {
            assert_int_equal(mp_queue_task_done(q), 0); /* "after" only */
            assert_int_equal(mp_queue_join(q, MP_NOWAIT), 0);
        }
        mp_queue_close(q);
    }
}

static int
child_put_big_then_next(void *arg)
{
    mp_queue *q = arg;
    unsigned char *buf = malloc(BIG);
    CHILD_CHECK(buf != NULL);
    fill(buf, BIG, 5, 5);
    CHILD_CHECK(mp_queue_put(q, buf, BIG, 20000) == 0);
    CHILD_CHECK(mp_queue_put(q, "next", 4, 20000) == 0);
    free(buf);
    return 0;
}

static void
test_queue_consumer_killed_mid_stream_loses_only_that_message(void **state)
{
    (void)state;
    if (!mp__fault_enabled())
        skip();
    for (int joinable = 0; joinable < 2; joinable++) {
        mp_queue *q = open_queue(0, 4096, joinable);
        pid_t prod = th_fork(child_put_big_then_next, q);
        crash c = {q, "queue.stream.chunk", 3, 0, NULL};
        assert_killed(th_fork(child_get_killed, &c));
        /* The producer is still streaming the rest; this get skips it, then takes "next". */
        expect_str(q, "next", 20000);
        assert_child_ok(prod);
        assert_int_equal(mp_queue_qsize(q), 0);
        if (joinable) {
            assert_int_equal(mp_queue_task_done(q), 0);
            assert_int_equal(mp_queue_join(q, MP_NOWAIT), 0);
        }
        mp_queue_close(q);
    }
}

/* A producer stopped at a fault point in the middle of a stream: a consumer's timeout drops
 * the message; the next get skips the rest once the producer goes on. */
static int
child_put_big_paused(void *arg)
{
    crash *c = arg;
    unsigned char *buf = malloc(BIG);
    CHILD_CHECK(buf != NULL);
    fill(buf, BIG, 5, 5);
    CHILD_CHECK(mp__fault_arm("queue.stream.chunk", 2, fault_block, c->g) == 0);
    CHILD_CHECK(mp_queue_put(c->q, buf, BIG, 20000) == 0);
    CHILD_CHECK(mp_queue_put(c->q, "next", 4, 20000) == 0);
    free(buf);
    return 0;
}

static void
test_queue_get_timing_out_mid_stream_drops_that_message(void **state)
{
    (void)state;
    if (!mp__fault_enabled())
        skip();
    mp_queue *q = open_queue(0, 4096, false);
    crash c = {q, NULL, 0, 0, gate_new()};
    pid_t prod = th_fork(child_put_big_paused, &c);
    void *p = NULL;
    size_t len;
    int64_t t0 = th_now_ms();
    assert_int_equal(mp_queue_get_alloc(q, &p, &len, 300), -ETIMEDOUT);
    int64_t dt = th_now_ms() - t0;
    assert_true(dt >= 295 && dt < 5000);
    assert_null(p);
    gate_open(c.g);
    expect_str(q, "next", 20000);
    assert_child_ok(prod);
    gate_free(c.g);
    mp_queue_close(q);
}

static void
test_queue_put_timing_out_mid_stream_is_discarded(void **state)
{
    (void)state;
    mp_queue *q = open_queue(0, 4096, true);
    unsigned char *buf = malloc(BIG);
    assert_non_null(buf);
    int64_t t0 = th_now_ms();
    assert_int_equal(mp_queue_put(q, buf, BIG, 100), -ETIMEDOUT);
    int64_t dt = th_now_ms() - t0;
    assert_true(dt >= 95 && dt < 3000);
    /* The aborted stream is not a task, and a consumer discards it. */
    assert_int_equal(mp_queue_join(q, MP_NOWAIT), 0);
    put_str(q, "x");
    expect_str(q, "x", 1000);
    assert_int_equal(mp_queue_task_done(q), 0);
    assert_int_equal(mp_queue_qsize(q), 0);
    free(buf);
    mp_queue_close(q);
}

/* Seeded random kills: two producers (some messages larger than the ring) and two consumers
 * run until the parent SIGKILLs one of them at a random moment. The survivors must go on, every
 * message delivered must be intact and delivered once, and every message whose put returned
 * must arrive, except at most the one a killed consumer had taken. */
#define RK_MAXSEQ 4096u

typedef struct rk_shared {
    _Atomic uint32_t stop, progress;
    _Atomic uint32_t put_ok[2];
    _Atomic uint8_t seen[2][RK_MAXSEQ];
} rk_shared;

typedef struct rk_ctx {
    mp_queue *q;
    rk_shared *sh;
    uint32_t id;
} rk_ctx;

static size_t
rk_len(uint32_t p, uint32_t i)
{
    uint32_t x = (p * 7919u + i) * 2654435761u;
    return (x >> 8) % 50 == 0 ? 5000 + (x % 15000) : 12 + (x % 200);
}

static int
child_rk_producer(void *arg)
{
    rk_ctx *c = arg;
    unsigned char *buf = malloc(20000);
    CHILD_CHECK(buf != NULL);
    for (uint32_t i = 0; i < RK_MAXSEQ && !atomic_load(&c->sh->stop); i++) {
        size_t len = rk_len(c->id, i);
        memcpy(buf, &c->id, 4);
        memcpy(buf + 4, &i, 4);
        fill(buf + 8, len - 8, c->id, i);
        int r = mp_queue_put(c->q, buf, len, 20000);
        CHILD_CHECK(r == 0);
        atomic_store(&c->sh->put_ok[c->id], i + 1);
    }
    free(buf);
    return 0;
}

static int
child_rk_consumer(void *arg)
{
    rk_ctx *c = arg;
    for (;;) {
        void *p;
        size_t len;
        CHILD_CHECK(mp_queue_get_alloc(c->q, &p, &len, 20000) == 0);
        if (len == 0) {
            mp_free(p);
            return 0;
        }
        uint32_t id, i;
        memcpy(&id, p, 4);
        memcpy(&i, (char *)p + 4, 4);
        CHILD_CHECK(id < 2 && i < RK_MAXSEQ && len == rk_len(id, i));
        CHILD_CHECK(check((unsigned char *)p + 8, len - 8, id, i));
        atomic_fetch_add(&c->sh->seen[id][i], 1);
        atomic_fetch_add(&c->sh->progress, 1);
        mp_free(p);
    }
}

static void
test_queue_survives_seeded_random_kills(void **state)
{
    (void)state;
    unsigned seed = 12345;
    int rounds = SANITIZED ? 8 : 25;
    for (int round = 0; round < rounds; round++) {
        mp_queue *q = open_queue(0, 4096, false);
        rk_shared *sh = th_shared(sizeof *sh);
        assert_non_null(sh);
        rk_ctx c[4] = {{q, sh, 0}, {q, sh, 1}, {q, sh, 0}, {q, sh, 1}};
        pid_t pids[4];
        for (int i = 0; i < 4; i++)
            pids[i] = th_fork(i < 2 ? child_rk_producer : child_rk_consumer, &c[i]);
        uint32_t at = (uint32_t)rand_r(&seed) % 1500 + 1;
        int victim = rand_r(&seed) % 4;
        int64_t t0 = th_now_ms();
        while (atomic_load(&sh->progress) < at && th_now_ms() - t0 < 10000)
            sched_yield();
        kill(pids[victim], SIGKILL);
        atomic_store(&sh->stop, 1);
        for (int i = 0; i < 2; i++) {
            int st = th_wait(pids[i], 30000);
            if (i == victim)
                assert_true(WIFSIGNALED(st));
            else
                assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        }
        for (int i = 0; i < 2; i++)
            assert_int_equal(mp_queue_put(q, NULL, 0, 10000), 0);
        for (int i = 2; i < 4; i++) {
            int st = th_wait(pids[i], 30000);
            if (i == victim)
                assert_true(WIFSIGNALED(st));
            else
                assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        }
        int missing = 0;
        for (uint32_t p = 0; p < 2; p++) {
            for (uint32_t i = 0; i < RK_MAXSEQ; i++) {
                uint8_t n = atomic_load(&sh->seen[p][i]);
                assert_true(n <= 1);
                missing += i < atomic_load(&sh->put_ok[p]) && n == 0;
            }
        }
        assert_true(missing <= (victim >= 2 ? 1 : 0));
        /* Whatever is left (a stop message the killed consumer never took) drains cleanly,
         * and the queue still works. */
        size_t len;
        char buf[8];
        while (mp_queue_get(q, buf, sizeof buf, &len, MP_NOWAIT) == 0)
            assert_int_equal(len, 0);
        assert_int_equal(mp_queue_qsize(q), 0);
        put_str(q, "ok");
        expect_str(q, "ok", 1000);
        th_shared_free(sh, sizeof *sh);
        mp_queue_close(q);
    }
}

/* ---- threads -------------------------------------------------------------------------------- */

#define THR_N 20000u

typedef struct thr_ctx {
    mp_queue *q;
    uint32_t id;
    _Atomic uint8_t *seen; /* [2][THR_N] */
    int ok;
} thr_ctx;

static void *
thread_producer(void *arg)
{
    thr_ctx *c = arg;
    unsigned char buf[64];
    c->ok = 1;
    for (uint32_t i = 0; i < THR_N && c->ok; i++) {
        memcpy(buf, &c->id, 4);
        memcpy(buf + 4, &i, 4);
        fill(buf + 8, 8 + i % 40, c->id, i);
        c->ok = mp_queue_put(c->q, buf, 16 + i % 40, 10000) == 0;
    }
    return NULL;
}

static void *
thread_consumer(void *arg)
{
    thr_ctx *c = arg;
    unsigned char buf[64];
    c->ok = 1;
    for (;;) {
        size_t len;
        if (mp_queue_get(c->q, buf, sizeof buf, &len, 10000) != 0) {
            c->ok = 0;
            return NULL;
        }
        if (len == 0)
            return NULL;
        uint32_t id, i;
        memcpy(&id, buf, 4);
        memcpy(&i, buf + 4, 4);
        if (id > 1 || i >= THR_N || len != 16 + i % 40 || !check(buf + 8, len - 8, id, i)) {
            c->ok = 0;
            return NULL;
        }
        atomic_fetch_add(&c->seen[id * THR_N + i], 1);
    }
}

static void
test_queue_is_safe_across_threads(void **state)
{
    (void)state;
    mp_queue *q = open_queue(0, 4096, false);
    _Atomic uint8_t *seen = calloc(2 * THR_N, 1);
    assert_non_null(seen);
    thr_ctx c[4];
    pthread_t t[4];
    for (uint32_t i = 0; i < 4; i++) {
        c[i] = (thr_ctx){q, i % 2, seen, 0};
        assert_int_equal(pthread_create(&t[i], NULL, i < 2 ? thread_producer : thread_consumer,
                                        &c[i]),
                         0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++)
        assert_int_equal(mp_queue_put(q, NULL, 0, 10000), 0);
    for (int i = 2; i < 4; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 4; i++)
        assert_true(c[i].ok);
    for (size_t i = 0; i < 2 * THR_N; i++)
        assert_int_equal(atomic_load(&seen[i]), 1);
    free((void *)seen);
    mp_queue_close(q);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_open_checks_options),
        cmocka_unit_test(test_queue_rejects_bad_arguments),
        cmocka_unit_test(test_queue_is_fifo_with_exact_qsize),
        cmocka_unit_test(test_queue_is_fifo_across_processes),
        cmocka_unit_test(test_queue_get_times_out_when_empty),
        cmocka_unit_test(test_queue_put_blocks_at_maxsize),
        cmocka_unit_test(test_queue_put_blocks_when_ring_is_full),
        cmocka_unit_test(test_queue_get_keeps_message_when_buffer_too_small),
        cmocka_unit_test(test_queue_zero_length_messages),
        cmocka_unit_test(test_queue_get_alloc_returns_a_copy_and_survives_enomem),
        cmocka_unit_test(test_queue_streams_messages_larger_than_ring),
        cmocka_unit_test(test_queue_streams_never_interleave),
        cmocka_unit_test(test_queue_4_producers_4_consumers_deliver_exact_multiset),
        cmocka_unit_test(test_queue_joinable_counts_tasks),
        cmocka_unit_test(test_queue_producer_killed_before_publish_leaves_no_trace),
        cmocka_unit_test(test_queue_consumer_killed_before_advancing_leaves_message),
        cmocka_unit_test(test_queue_consumer_discards_stream_of_killed_producer),
        cmocka_unit_test(test_queue_next_producer_aborts_stream_of_killed_producer),
        cmocka_unit_test(test_queue_consumer_killed_mid_stream_loses_only_that_message),
        cmocka_unit_test(test_queue_get_timing_out_mid_stream_drops_that_message),
        cmocka_unit_test(test_queue_put_timing_out_mid_stream_is_discarded),
        cmocka_unit_test(test_queue_survives_seeded_random_kills),
        cmocka_unit_test(test_queue_is_safe_across_threads),
    };
    return th_run_tests(tests);
}
