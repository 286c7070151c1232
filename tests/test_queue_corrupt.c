/*
 * test_queue_corrupt.c - mp_queue with a scribbled shared header or ring metadata: every call
 * reports -EBADMSG (or goes on with a consistent state), never reads or writes outside the
 * ring, never loops for long, never aborts. The queue is built in place in a heap buffer with
 * a guard area after the ring, so that an out-of-bounds write shows as a changed guard (and
 * under ASan as a report). Each scenario runs in a child, so an abort fails the test rather
 * than the runner. tests/fuzz_queue_header.c explores the same ground at random.
 */
#define _GNU_SOURCE
#include "queue.h"
#include "queue_util.h"

#include <stdlib.h>

#define CAP 64u
#define GUARD 64u

typedef struct scribbled {
    unsigned char *mem;
    size_t size;
    mp_queue *q;
    struct qhdr *h;
} scribbled;

static int
sq_open(scribbled *s)
{
    size_t size, cap;
    mp_queue_opts o = {.capacity = CAP};
    if (mp__queue_size_at(&o, &size, &cap) != 0 || cap != CAP)
        return -1;
    s->size = size;
    if (posix_memalign((void **)&s->mem, 128, size + GUARD) != 0)
        return -1;
    memset(s->mem + size, 0xa5, GUARD);
    if (mp__queue_init_at(s->mem, &o) != 0 || mp__queue_wrap(&s->q, s->mem, cap) != 0)
        return -1;
    s->h = (struct qhdr *)(void *)s->mem;
    return 0;
}

static bool
sq_guard_intact(const scribbled *s)
{
    for (size_t i = 0; i < GUARD; i++)
        if (s->mem[s->size + i] != 0xa5)
            return false;
    return true;
}

static void
sq_close(scribbled *s)
{
    mp_queue_close(s->q);
    free(s->mem);
}

/* The ring word at position pos. */
static uint64_t *
ring_at(scribbled *s, uint64_t pos)
{
    return (uint64_t *)(void *)(s->q->ring + (pos & (CAP - 1)));
}

/* A put at a tail whose position is not 8-aligned would write its length word across the end
 * of the ring. */
static int
child_misaligned_tail(void *arg)
{
    (void)arg;
    scribbled s;
    CHILD_CHECK(sq_open(&s) == 0);
    atomic_store(&s.h->tail, w_make(CAP - 4, 0, 0));
    atomic_store(&s.h->head, w_make(CAP - 4, 0, 0));
    atomic_store(&s.h->head_cache, w_make(CAP - 4, 0, 0));
    CHILD_CHECK(mp_queue_put(s.q, "abcd", 4, MP_NOWAIT) == -EBADMSG);
    CHILD_CHECK(sq_guard_intact(&s));
    /* An open stream flag makes the next producer append an ABORT chunk at the tail. */
    atomic_store(&s.h->tail, w_make(CAP - 4, 0, F_STREAM));
    CHILD_CHECK(mp_queue_put(s.q, "abcd", 4, MP_NOWAIT) == -EBADMSG);
    CHILD_CHECK(sq_guard_intact(&s));
    size_t len;
    char buf[8];
    CHILD_CHECK(mp_queue_get(s.q, buf, sizeof buf, &len, MP_NOWAIT) == -EAGAIN);
    sq_close(&s);
    return 0;
}

static void
test_queue_put_refuses_a_misaligned_tail(void **state)
{
    (void)state;
    assert_child_ok(th_fork(child_misaligned_tail, NULL));
}

/* A length word announcing more than was published. */
static int
child_length_beyond_tail(void *arg)
{
    (void)arg;
    scribbled s;
    CHILD_CHECK(sq_open(&s) == 0);
    CHILD_CHECK(mp_queue_put(s.q, "hello", 5, MP_NOWAIT) == 0);
    *ring_at(&s, 0) = 40;
    char buf[64];
    size_t len;
    void *p = NULL;
    CHILD_CHECK(mp_queue_get(s.q, buf, sizeof buf, &len, MP_NOWAIT) == -EBADMSG);
    CHILD_CHECK(mp_queue_get_alloc(s.q, &p, &len, MP_NOWAIT) == -EBADMSG && p == NULL);
    CHILD_CHECK(mp_queue_qsize(s.q) == 1); /* nothing moved */
    /* A length whose padded frame wraps around 2^64. */
    *ring_at(&s, 0) = UINT64_MAX - 3;
    CHILD_CHECK(mp_queue_get_alloc(s.q, &p, &len, 100) == -EBADMSG && p == NULL);
    /* Restored, the message comes out whole. */
    *ring_at(&s, 0) = 5;
    CHILD_CHECK(mp_queue_get(s.q, buf, sizeof buf, &len, MP_NOWAIT) == 0);
    CHILD_CHECK(len == 5 && memcmp(buf, "hello", 5) == 0);
    /* A head moved past the tail. */
    CHILD_CHECK(mp_queue_put(s.q, "hello", 5, MP_NOWAIT) == 0);
    atomic_store(&s.h->head, w_make(40, 1, 0));
    CHILD_CHECK(mp_queue_get(s.q, buf, sizeof buf, &len, MP_NOWAIT) == -EBADMSG);
    CHILD_CHECK(sq_guard_intact(&s));
    sq_close(&s);
    return 0;
}

static void
test_queue_get_refuses_a_length_beyond_the_published_bytes(void **state)
{
    (void)state;
    assert_child_ok(th_fork(child_length_beyond_tail, NULL));
}

/* The stream record's slot index is a shared word: an index past the two slots. */
static int
child_bad_stream_record(void *arg)
{
    (void)arg;
    scribbled s;
    CHILD_CHECK(sq_open(&s) == 0);
    CHILD_CHECK(mp_queue_put(s.q, "hello", 5, MP_NOWAIT) == 0);
    atomic_store(&s.h->c_active, 1);
    atomic_store(&s.h->c_cur, 0x40000000u);
    char buf[64];
    size_t len;
    CHILD_CHECK(mp_queue_get(s.q, buf, sizeof buf, &len, MP_NOWAIT) == -EBADMSG);
    /* A record that matches neither slot. */
    atomic_store(&s.h->c_cur, 0);
    atomic_store(&s.h->c_at[0], 24);
    atomic_store(&s.h->c_at[1], 32);
    CHILD_CHECK(mp_queue_get(s.q, buf, sizeof buf, &len, 10) == -EBADMSG);
    CHILD_CHECK(mp_queue_qsize(s.q) == 1);
    sq_close(&s);
    return 0;
}

static void
test_queue_get_refuses_a_bad_stream_record(void **state)
{
    (void)state;
    assert_child_ok(th_fork(child_bad_stream_record, NULL));
}

/* A streamed message at the head (its length is above the ring) whose chunk words do not add
 * up: a chunk longer than what is left of the message, or than what was published. */
static int
child_bad_chunks(void *arg)
{
    (void)arg;
    scribbled s;
    CHILD_CHECK(sq_open(&s) == 0);
    char buf[4 * CAP];
    size_t len;
    /* [len 2*CAP][chunk 1000] with 24 bytes published: the walk looking for an ABORT chunk
     * must stop at the tail, not run around the 33-bit position space. */
    *ring_at(&s, 0) = 2 * CAP;
    *ring_at(&s, 8) = 1000;
    atomic_store(&s.h->tail, w_make(24, 1, 0));
    int64_t t0 = th_now_ms();
    CHILD_CHECK(mp_queue_get(s.q, buf, sizeof buf, &len, MP_NOWAIT) == -EBADMSG);
    CHILD_CHECK(th_now_ms() - t0 < 1000);
    /* Taking it: a chunk longer than the message. */
    CHILD_CHECK(mp_queue_get(s.q, buf, sizeof buf, &len, 50) == -EBADMSG);
    /* A chunk within the message but beyond the published bytes (and the ring). */
    *ring_at(&s, 0) = 4 * CAP;
    *ring_at(&s, 8) = 200;
    atomic_store(&s.h->c_active, 0);
    atomic_store(&s.h->head, w_make(0, 0, 0));
    CHILD_CHECK(mp_queue_get(s.q, buf, sizeof buf, &len, 50) == -EBADMSG);
    CHILD_CHECK(sq_guard_intact(&s));
    sq_close(&s);
    return 0;
}

static void
test_queue_get_refuses_chunks_that_do_not_add_up(void **state)
{
    (void)state;
    assert_child_ok(th_fork(child_bad_chunks, NULL));
}

/* A cached head that is more than a ring behind the tail made a streamed put size its chunk
 * from a wrapped-around free count: a chunk longer than the ring, written across its end
 * (found by fuzz_queue_header). */
static int
child_stream_with_bad_head_cache(void *arg)
{
    (void)arg;
    scribbled s;
    CHILD_CHECK(sq_open(&s) == 0);
    atomic_store(&s.h->head_cache, w_make(0x1000, 0, 0));
    unsigned char big[200];
    memset(big, 7, sizeof big);
    CHILD_CHECK(mp_queue_put(s.q, big, sizeof big, 10) == -EBADMSG);
    CHILD_CHECK(sq_guard_intact(&s));
    sq_close(&s);
    return 0;
}

static void
test_queue_stream_put_refuses_a_head_more_than_a_ring_behind(void **state)
{
    (void)state;
    assert_child_ok(th_fork(child_stream_with_bad_head_cache, NULL));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_put_refuses_a_misaligned_tail),
        cmocka_unit_test(test_queue_get_refuses_a_length_beyond_the_published_bytes),
        cmocka_unit_test(test_queue_get_refuses_a_bad_stream_record),
        cmocka_unit_test(test_queue_get_refuses_chunks_that_do_not_add_up),
        cmocka_unit_test(test_queue_stream_put_refuses_a_head_more_than_a_ring_behind),
    };
    return th_run_tests(tests);
}
