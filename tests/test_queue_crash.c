/*
 * test_queue_crash.c - mp_queue crash safety: SIGKILL at every named fault point, timeouts in
 * the middle of streamed messages, and seeded random kills of producers and consumers.
 */
#define _GNU_SOURCE
#include "queue_util.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

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

/* Found by the torture test: a consumer whose every get has a timeout shorter than the
 * producer-liveness interval must still notice a producer that died mid-stream, or the partial
 * message blocks the queue for good. */
static void
test_queue_short_timeout_gets_discard_stream_of_killed_producer(void **state)
{
    (void)state;
    if (!mp__fault_enabled())
        skip();
    mp_queue *q = open_queue(0, 4096, false);
    crash c = {q, "queue.stream.chunk", 3, 100000, NULL};
    pid_t prod = th_fork(child_put_killed, &c);
    /* Wait until the stream has started, so the gets below are inside it. */
    int64_t t0 = th_now_ms();
    while (mp_queue_qsize(q) == 0 && th_now_ms() - t0 < 10000)
        sched_yield();
    assert_killed(prod);
    void *p;
    size_t len;
    int r = -ETIMEDOUT;
    t0 = th_now_ms();
    while (r == -ETIMEDOUT && th_now_ms() - t0 < 3000)
        r = mp_queue_get_alloc(q, &p, &len, 10);
    assert_int_equal(r, -ETIMEDOUT); /* nothing whole to take... */
    assert_int_equal(mp_queue_qsize(q), 0); /* ...and the partial message is gone */
    put_str(q, "after");
    expect_str(q, "after", 0);
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

/* A waker SIGKILLed between disarming a wait queue and its futex wake ("queue.wake.disarmed")
 * leaves the queue disarmed, so later publishes wake nobody: the sleeper must notice by
 * itself, within a liveness slice, rather than sleep until its deadline (for ever here). */
#define WK_LEN 24 /* a 32-byte frame: two fill the 64-byte ring */

static bool
sleeping_in_futex(pid_t pid)
{
    char path[64], buf[64];
    snprintf(path, sizeof path, "/proc/%d/wchan", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, "futex") != NULL;
}

static void
await_futex_sleep(pid_t pid)
{
    int64_t end = th_now_ms() + 10000;
    while (!sleeping_in_futex(pid) && th_now_ms() < end)
        sched_yield();
    assert_true(sleeping_in_futex(pid));
}

static int
child_put_forever(void *arg)
{
    unsigned char m[WK_LEN];
    fill(m, sizeof m, 7, 0);
    return mp_queue_put(arg, m, sizeof m, MP_FOREVER) == 0 ? 0 : 1;
}

static int
child_get_forever(void *arg)
{
    unsigned char m[WK_LEN];
    size_t len;
    CHILD_CHECK(mp_queue_get(arg, m, sizeof m, &len, MP_FOREVER) == 0);
    CHILD_CHECK(len == WK_LEN && check(m, len, 7, 0));
    return 0;
}

static int
child_killed_in_wake(void *arg)
{
    crash *c = arg;
    unsigned char m[WK_LEN];
    size_t len;
    fill(m, sizeof m, 7, 0);
    CHILD_CHECK(mp__fault_arm("queue.wake.disarmed", 1, NULL, NULL) == 0);
    if (c->len != 0)
        mp_queue_put(c->q, m, sizeof m, 20000);
    else
        mp_queue_get(c->q, m, sizeof m, &len, 20000);
    return 1; /* not reached: the fault point kills the child */
}

static void
test_queue_waker_killed_before_its_wake_delays_sleepers_only_briefly(void **state)
{
    (void)state;
    if (!mp__fault_enabled())
        skip();
    /* A producer waits for room; the consumer that makes it dies in the wake. */
    mp_queue *q = open_queue(0, 64, false);
    unsigned char m[WK_LEN];
    int n = 0;
    for (; n < 8; n++) {
        fill(m, sizeof m, 1, (uint32_t)n);
        if (mp_queue_put(q, m, sizeof m, MP_NOWAIT) != 0)
            break;
    }
    assert_int_equal(n, 2);
    pid_t p = th_fork(child_put_forever, q);
    await_futex_sleep(p);
    crash c = {q, "queue.wake.disarmed", 1, 0, NULL};
    assert_killed(th_fork(child_killed_in_wake, &c));
    int64_t t0 = th_now_ms();
    int st = th_wait(p, th_scaled_ms(5000));
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_true(th_now_ms() - t0 < th_scaled_ms(2000));
    /* The dead consumer took the first message; the second and the sleeper's follow. */
    size_t len;
    assert_int_equal(mp_queue_get(q, m, sizeof m, &len, 0), 0);
    assert_true(len == WK_LEN && check(m, len, 1, 1));
    assert_int_equal(mp_queue_get(q, m, sizeof m, &len, 0), 0);
    assert_true(len == WK_LEN && check(m, len, 7, 0));
    assert_int_equal(mp_queue_empty(q), 1);

    /* A consumer waits for a message; the producer that puts it dies in the wake. */
    pid_t g = th_fork(child_get_forever, q);
    await_futex_sleep(g);
    c.len = WK_LEN;
    assert_killed(th_fork(child_killed_in_wake, &c));
    t0 = th_now_ms();
    st = th_wait(g, th_scaled_ms(5000));
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_true(th_now_ms() - t0 < th_scaled_ms(2000));
    assert_int_equal(mp_queue_empty(q), 1);
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
#ifndef RK_ROUNDS /* a soak run builds with a larger count */
#define RK_ROUNDS (SANITIZED ? 30 : 100)
#endif

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
        if (r != 0)
            fprintf(stderr, "producer %u: put of %zu bytes (seq %u): %s\n", (unsigned)c->id, len,
                    (unsigned)i, mp_strerror(r));
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

static bool
ended_as_expected(int st, bool victim)
{
    bool clean = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    return victim ? clean || (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) : clean;
}

static void
test_queue_survives_seeded_random_kills(void **state)
{
    (void)state;
    unsigned seed = 12345;
    int rounds = RK_ROUNDS;
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
        /* A victim may have finished its work before the kill landed (this process can be
         * descheduled for the whole round on 2 CPUs); then it must have ended cleanly. */
        for (int i = 0; i < 2; i++)
            assert_true(ended_as_expected(th_wait(pids[i], 30000), i == victim));
        for (int i = 0; i < 2; i++)
            assert_int_equal(mp_queue_put(q, NULL, 0, 10000), 0);
        for (int i = 2; i < 4; i++)
            assert_true(ended_as_expected(th_wait(pids[i], 30000), i == victim));
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

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_producer_killed_before_publish_leaves_no_trace),
        cmocka_unit_test(test_queue_consumer_killed_before_advancing_leaves_message),
        cmocka_unit_test(test_queue_consumer_discards_stream_of_killed_producer),
        cmocka_unit_test(test_queue_short_timeout_gets_discard_stream_of_killed_producer),
        cmocka_unit_test(test_queue_next_producer_aborts_stream_of_killed_producer),
        cmocka_unit_test(test_queue_consumer_killed_mid_stream_loses_only_that_message),
        cmocka_unit_test(test_queue_get_timing_out_mid_stream_drops_that_message),
        cmocka_unit_test(test_queue_put_timing_out_mid_stream_is_discarded),
        cmocka_unit_test(test_queue_waker_killed_before_its_wake_delays_sleepers_only_briefly),
        cmocka_unit_test(test_queue_survives_seeded_random_kills),
    };
    return th_run_tests(tests);
}
