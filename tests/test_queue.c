/*
 * test_queue.c - mp_queue: FIFO, limits, timeouts and errors, zero-length and larger-than-ring
 * messages, a 4 x 4 MPMC stress with exact multiset delivery, JoinableQueue, threads. The crash
 * tests are in test_queue_crash.c.
 */
#define _GNU_SOURCE
#include "queue_util.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>

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

static void
on_alarm(int sig)
{
    (void)sig;
}

/* A signal handler interrupts a blocked get (no SA_RESTART): -EINTR, so Ctrl-C can stop it. */
static int
child_get_interrupted(void *arg)
{
    mp_queue *q = arg;
    struct sigaction sa = {.sa_handler = on_alarm};
    CHILD_CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
    struct itimerval it = {.it_value = {.tv_usec = 100000}};
    CHILD_CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
    char buf[8];
    size_t len;
    CHILD_CHECK(mp_queue_get(q, buf, sizeof buf, &len, MP_FOREVER) == -EINTR);
    CHILD_CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0);
    CHILD_CHECK(mp_queue_join(q, 10000) == -EINTR);
    return 0;
}

static void
test_queue_waits_are_interrupted_by_signals(void **state)
{
    (void)state;
    mp_queue *q = open_queue(0, 0, true);
    put_str(q, "x"); /* one unfinished task, so join blocks */
    expect_str(q, "x", 0);
    assert_child_ok(th_fork(child_get_interrupted, q));
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
    /* Too small a buffer: the streamed message stays, and so it does for MP_NOWAIT, which
     * cannot take it without waiting for its producer. */
    size_t need = 0;
    assert_int_equal(mp_queue_get(q, buf, 100, &need, 20000), -EMSGSIZE);
    assert_int_equal(need, BIG);
    assert_int_equal(mp_queue_get(q, buf, BIG, &need, MP_NOWAIT), -EAGAIN);
    assert_int_equal(mp_queue_qsize(q), 1);
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
#define STRESS_N 100000u

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
        assert_int_equal(
            pthread_create(&t[i], NULL, i < 2 ? thread_producer : thread_consumer, &c[i]), 0);
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
        cmocka_unit_test(test_queue_waits_are_interrupted_by_signals),
        cmocka_unit_test(test_queue_put_blocks_at_maxsize),
        cmocka_unit_test(test_queue_put_blocks_when_ring_is_full),
        cmocka_unit_test(test_queue_get_keeps_message_when_buffer_too_small),
        cmocka_unit_test(test_queue_zero_length_messages),
        cmocka_unit_test(test_queue_get_alloc_returns_a_copy_and_survives_enomem),
        cmocka_unit_test(test_queue_streams_messages_larger_than_ring),
        cmocka_unit_test(test_queue_streams_never_interleave),
        cmocka_unit_test(test_queue_4_producers_4_consumers_deliver_exact_multiset),
        cmocka_unit_test(test_queue_joinable_counts_tasks),
        cmocka_unit_test(test_queue_is_safe_across_threads),
    };
    return th_run_tests(tests);
}
