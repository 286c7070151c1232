/*
 * test_queue_fd.c - mp_queue_fileno: readiness after put and not after the last get, several
 * consumers polling one queue, mp_conn_wait beside a pipe, inheritance across fork, and
 * readiness after a process is killed between its eventfd step and the queue's own state.
 */
#define _GNU_SOURCE
#include "queue_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

static mp_queue *
open_fd_queue(size_t capacity)
{
    mp_queue *q = NULL;
    assert_int_equal(mp_queue_open(&q, &(mp_queue_opts){.capacity = capacity, .fileno = true}), 0);
    return q;
}

/* 1 if fd polls readable within timeout_ms, 0 if not, -1 on error. */
static int
readable(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, timeout_ms);
    return r < 0 ? -1 : r > 0 && (p.revents & POLLIN) != 0;
}

static void
test_queue_fileno_is_opt_in(void **state)
{
    (void)state;
    mp_queue *plain = open_queue(0, 0, false);
    assert_int_equal(mp_queue_fileno(plain), -EINVAL);
    assert_int_equal(mp_queue_fileno(NULL), -EINVAL);
    mp_queue_close(plain);
    mp_queue *q = open_fd_queue(0);
    int fd = mp_queue_fileno(q);
    assert_true(fd >= 0);
    assert_int_equal(mp_queue_fileno(q), fd);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    mp_queue_close(q); /* closes the fd: the leak check would see it otherwise */
}

static void
test_queue_fileno_is_readable_after_put_and_not_after_the_last_get(void **state)
{
    (void)state;
    mp_queue *q = open_fd_queue(4096);
    int fd = mp_queue_fileno(q);
    assert_int_equal(readable(fd, 0), 0);
    put_str(q, "a");
    assert_int_equal(readable(fd, 0), 1);
    put_str(q, "b");
    assert_int_equal(mp_queue_put(q, NULL, 0, MP_NOWAIT), 0);
    expect_str(q, "a", 0);
    assert_int_equal(readable(fd, 0), 1);
    expect_str(q, "b", 0);
    assert_int_equal(readable(fd, 0), 1);
    void *p = NULL;
    size_t len = 1;
    assert_int_equal(mp_queue_get_alloc(q, &p, &len, 0), 0);
    assert_int_equal(len, 0);
    mp_free(p);
    assert_int_equal(readable(fd, 0), 0);
    /* A get that fails leaves the readiness alone; a too-small buffer keeps the message. */
    put_str(q, "long message");
    char small[2];
    assert_int_equal(mp_queue_get(q, small, sizeof small, &len, 0), -EMSGSIZE);
    assert_int_equal(readable(fd, 0), 1);
    expect_str(q, "long message", 0);
    assert_int_equal(readable(fd, 0), 0);
    assert_int_equal(mp_queue_get(q, small, sizeof small, &len, MP_NOWAIT), -EAGAIN);
    assert_int_equal(readable(fd, 0), 0);
    mp_queue_close(q);
}

/* A message larger than the ring is streamed: the fd is readable from its first chunk. */
static int
child_put_big(void *arg)
{
    mp_queue *q = arg;
    unsigned char *buf = malloc(BIG);
    CHILD_CHECK(buf != NULL);
    fill(buf, BIG, 3, 4);
    CHILD_CHECK(mp_queue_put(q, buf, BIG, 20000) == 0);
    free(buf);
    return 0;
}

static void
test_queue_fileno_covers_streamed_messages(void **state)
{
    (void)state;
    mp_queue *q = open_fd_queue(4096);
    int fd = mp_queue_fileno(q);
    pid_t pid = th_fork(child_put_big, q);
    assert_int_equal(readable(fd, 20000), 1);
    void *p = NULL;
    size_t len = 0;
    assert_int_equal(mp_queue_get_alloc(q, &p, &len, 20000), 0);
    assert_int_equal(len, BIG);
    assert_true(check(p, len, 3, 4));
    mp_free(p);
    assert_child_ok(pid);
    assert_int_equal(readable(fd, 0), 0);
    mp_queue_close(q);
}

/* ---- several consumers ---------------------------------------------------------------------- */

#define NCONS 3
#define NMSG 3000

typedef struct multi {
    mp_queue *q;
    th_barrier *b;
    _Atomic uint32_t taken;
    _Atomic uint8_t seen[NMSG];
} multi;

/* Phase 1: every consumer sees the one queued message through the fd at the same time (level
 * triggered), without taking it. Phase 2: the consumers compete for NMSG messages, each
 * waiting with mp_conn_wait and taking with MP_NOWAIT, as an event loop does. */
static int
child_poll_consumer(void *arg)
{
    multi *m = arg;
    int fd = mp_queue_fileno(m->q);
    CHILD_CHECK(fd >= 0);
    CHILD_CHECK(th_barrier_wait(m->b) == 0); /* the parent has put one message */
    bool ready = false;
    CHILD_CHECK(mp_conn_wait(&fd, 1, &ready, 10000) == 1 && ready);
    CHILD_CHECK(th_barrier_wait(m->b) == 0); /* all saw it; the parent takes it */
    CHILD_CHECK(th_barrier_wait(m->b) == 0);
    CHILD_CHECK(readable(fd, 0) == 0);
    CHILD_CHECK(th_barrier_wait(m->b) == 0); /* the parent starts putting */
    int64_t end = th_now_ms() + 20000;
    while (atomic_load(&m->taken) < NMSG) {
        CHILD_CHECK(th_now_ms() < end);
        if (mp_conn_wait(&fd, 1, NULL, 50) <= 0)
            continue;
        uint32_t v;
        size_t len;
        int r = mp_queue_get(m->q, &v, sizeof v, &len, MP_NOWAIT);
        if (r == -EAGAIN)
            continue; /* another consumer took it */
        CHILD_CHECK(r == 0 && len == sizeof v && v < NMSG);
        CHILD_CHECK(atomic_fetch_add(&m->seen[v], 1) == 0);
        atomic_fetch_add(&m->taken, 1);
    }
    return 0;
}

static void
test_queue_fileno_serves_several_consumers(void **state)
{
    (void)state;
    multi *m = th_shared(sizeof *m);
    assert_non_null(m);
    m->q = open_fd_queue(1 << 12); /* small: the producer blocks on room too */
    m->b = th_barrier_new(NCONS + 1);
    pid_t pids[NCONS];
    for (int i = 0; i < NCONS; i++)
        assert_true((pids[i] = th_fork(child_poll_consumer, m)) > 0);
    put_str(m->q, "x");
    assert_int_equal(th_barrier_wait(m->b), 0);
    assert_int_equal(th_barrier_wait(m->b), 0);
    expect_str(m->q, "x", 0);
    assert_int_equal(th_barrier_wait(m->b), 0);
    assert_int_equal(th_barrier_wait(m->b), 0);
    for (uint32_t v = 0; v < NMSG; v++)
        assert_int_equal(mp_queue_put(m->q, &v, sizeof v, 10000), 0);
    for (int i = 0; i < NCONS; i++)
        assert_child_ok(pids[i]);
    for (uint32_t v = 0; v < NMSG; v++)
        assert_int_equal(atomic_load(&m->seen[v]), 1);
    assert_int_equal(readable(mp_queue_fileno(m->q), 0), 0);
    th_barrier_free(m->b);
    mp_queue_close(m->q);
    th_shared_free(m, sizeof *m);
}

/* ---- mp_conn_wait and fork ------------------------------------------------------------------ */

static void
test_queue_fileno_works_in_mp_conn_wait_beside_a_pipe(void **state)
{
    (void)state;
    mp_queue *q = open_fd_queue(0);
    mp_conn *a, *b;
    assert_int_equal(mp_pipe_open(&a, &b, true), 0);
    int fds[2] = {mp_conn_fileno(a), mp_queue_fileno(q)};
    bool ready[2] = {true, true};
    int64_t t0 = th_now_ms();
    assert_int_equal(mp_conn_wait(fds, 2, ready, 100), 0);
    int64_t dt = th_now_ms() - t0;
    assert_true(dt >= 95 && dt < 3000);
    put_str(q, "m");
    assert_int_equal(mp_conn_wait(fds, 2, ready, 1000), 1);
    assert_false(ready[0]);
    assert_true(ready[1]);
    assert_int_equal(mp_conn_send_bytes(b, "p", 1, 1000), 0);
    assert_int_equal(mp_conn_wait(fds, 2, ready, 1000), 2);
    expect_str(q, "m", 0);
    assert_int_equal(mp_conn_wait(fds, 2, ready, 0), 1);
    assert_true(ready[0]);
    assert_false(ready[1]);
    mp_conn_close(a);
    mp_conn_close(b);
    mp_queue_close(q);
}

/* gate_wait with a bound, so that a failed peer fails the test instead of hanging it. */
static bool
gate_wait_for(gate *g, int timeout_ms)
{
    mp__deadline dl;
    if (mp__deadline_init(&dl, timeout_ms) < 0)
        return false;
    while (atomic_load(&g->open) == 0) {
        if (mp__futex_wait(&g->open, 0, &dl) == -ETIMEDOUT)
            return atomic_load(&g->open) != 0;
    }
    return true;
}

typedef struct across {
    mp_queue *q;
    gate *took, *answer, *done;
} across;

/* The child inherited the queue: it waits on the fd until the parent puts, takes the message,
 * and answers once the parent has seen the fd go quiet; each side checks readiness in turn. */
static int
child_fork_peer(void *arg)
{
    across *c = arg;
    int fd = mp_queue_fileno(c->q);
    CHILD_CHECK(fd >= 0);
    CHILD_CHECK(mp_conn_wait(&fd, 1, NULL, 10000) == 1);
    char buf[16];
    size_t len;
    CHILD_CHECK(mp_queue_get(c->q, buf, sizeof buf, &len, MP_NOWAIT) == 0);
    CHILD_CHECK(len == 4 && memcmp(buf, "ping", 4) == 0);
    CHILD_CHECK(readable(fd, 0) == 0);
    gate_open(c->took);
    CHILD_CHECK(gate_wait_for(c->answer, 10000));
    CHILD_CHECK(mp_queue_put(c->q, "pong", 4, 1000) == 0);
    CHILD_CHECK(gate_wait_for(c->done, 10000));
    CHILD_CHECK(readable(fd, 0) == 0);
    mp_queue_close(c->q);
    return 0;
}

static void
test_queue_fileno_is_inherited_across_fork(void **state)
{
    (void)state;
    across c = {open_fd_queue(0), gate_new(), gate_new(), gate_new()};
    int fd = mp_queue_fileno(c.q);
    pid_t pid = th_fork(child_fork_peer, &c);
    put_str(c.q, "ping");
    assert_true(gate_wait_for(c.took, 10000));
    assert_int_equal(readable(fd, 0), 0);
    gate_open(c.answer);
    assert_int_equal(readable(fd, 10000), 1);
    expect_str(c.q, "pong", 0);
    assert_int_equal(readable(fd, 0), 0);
    gate_open(c.done);
    assert_child_ok(pid);
    mp_queue_close(c.q);
    gate_free(c.took);
    gate_free(c.answer);
    gate_free(c.done);
}

/* ---- crashes -------------------------------------------------------------------------------- */

static int
child_put_killed_after_raise(void *arg)
{
    mp_queue *q = arg;
    CHILD_CHECK(mp__fault_arm("queue.fd.raised", 1, NULL, NULL) == 0);
    mp_queue_put(q, "lost", 4, 10000);
    return 1; /* not reached */
}

static int
child_get_killed_after_clear(void *arg)
{
    mp_queue *q = arg;
    CHILD_CHECK(mp__fault_arm("queue.fd.cleared", 1, NULL, NULL) == 0);
    char buf[16];
    size_t len;
    CHILD_CHECK(mp_queue_get(q, buf, sizeof buf, &len, 10000) == 0);
    return 1; /* not reached: killed inside the call after taking the message */
}

static void
assert_killed(pid_t pid)
{
    int st = th_wait(pid, 30000);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGKILL);
}

static void
test_queue_fileno_heals_after_a_producer_dies_between_raise_and_publish(void **state)
{
    (void)state;
    if (!mp__fault_enabled())
        skip();
    mp_queue *q = open_fd_queue(0);
    int fd = mp_queue_fileno(q);
    assert_killed(th_fork(child_put_killed_after_raise, q));
    /* Readable with nothing queued: the error is on the safe side, and the get a poller makes
     * when it wakes clears it. */
    assert_int_equal(readable(fd, 0), 1);
    assert_int_equal(mp_queue_qsize(q), 0);
    char buf[16];
    size_t len;
    assert_int_equal(mp_queue_get(q, buf, sizeof buf, &len, MP_NOWAIT), -EAGAIN);
    assert_int_equal(readable(fd, 0), 0);
    put_str(q, "next");
    assert_int_equal(readable(fd, 0), 1);
    expect_str(q, "next", 0);
    assert_int_equal(readable(fd, 0), 0);
    mp_queue_close(q);
}

static void
test_queue_fileno_heals_after_a_consumer_dies_between_clear_and_flag(void **state)
{
    (void)state;
    if (!mp__fault_enabled())
        skip();
    mp_queue *q = open_fd_queue(0);
    int fd = mp_queue_fileno(q);
    put_str(q, "taken");
    assert_killed(th_fork(child_get_killed_after_clear, q));
    assert_int_equal(mp_queue_qsize(q), 0);
    assert_int_equal(readable(fd, 0), 0);
    /* The dead consumer held the producer lock: the next put repairs, and the message is
     * never queued without the fd being readable. */
    put_str(q, "after");
    assert_int_equal(readable(fd, 0), 1);
    expect_str(q, "after", 0);
    assert_int_equal(readable(fd, 0), 0);
    mp_queue_close(q);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_fileno_is_opt_in),
        cmocka_unit_test(test_queue_fileno_is_readable_after_put_and_not_after_the_last_get),
        cmocka_unit_test(test_queue_fileno_covers_streamed_messages),
        cmocka_unit_test(test_queue_fileno_serves_several_consumers),
        cmocka_unit_test(test_queue_fileno_works_in_mp_conn_wait_beside_a_pipe),
        cmocka_unit_test(test_queue_fileno_is_inherited_across_fork),
        cmocka_unit_test(test_queue_fileno_heals_after_a_producer_dies_between_raise_and_publish),
        cmocka_unit_test(test_queue_fileno_heals_after_a_consumer_dies_between_clear_and_flag),
    };
    return th_run_tests(tests);
}
