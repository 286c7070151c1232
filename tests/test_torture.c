/*
 * test_torture.c - crash torture: workers are SIGKILLed at random moments, over and over, while
 * they use a queue (messages smaller and larger than its ring), a lock, an atomic value and a
 * manager list. After each round the survivors must have finished within a bound and the shared
 * state must satisfy its invariants:
 *
 *  - queue: every message arrives whole (its checksum matches), at most once, in each
 *    producer's order; a message is missing only if its producer was killed putting it;
 *  - lock: the counter it guards equals the increments the workers completed, give or take one
 *    per kill (a worker killed between its increment and its own record of it);
 *  - value: the same for lock-free atomic adds;
 *  - manager list: every item is well formed, no worker's item appears twice or out of order,
 *    and the length is the appends completed, give or take one per kill.
 *
 * The seed comes from MPIPC_TORTURE_SEED or the clock and is printed, so a failure reproduces;
 * a summary line gives the counts. Kill moments are random on purpose (that is the fault being
 * injected); no sleep is used to order anything the assertions depend on.
 */
#define _GNU_SOURCE
#include "helpers.h"
#include "internal.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

/* Rounds per test (the list test runs a third): MPIPC_TORTURE_ROUNDS, or 100, or 25 under
 * valgrind, where every operation is tens of times slower. */
#define ROUNDS 100
#define VALGRIND_ROUNDS 25
#define WORKERS 3
#define BOUND_MS 20000

static uint64_t rng, seed;
static int rounds;
static struct {
    long kills, messages, lock_ops, atomic_ops, appends;
} total;

static uint64_t
next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Per-worker progress in shared memory: how many operations it has completed (and recorded). */
struct progress {
    _Atomic long done[WORKERS];
    _Atomic long attempted[WORKERS];
};

/* True once pid has ended; it stays unreaped (WNOWAIT) for th_wait. */
static bool
has_exited(pid_t pid)
{
    siginfo_t si = {0};
    return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid;
}

/* Reap every worker within the bound. The victim may have been killed (then it counts) or have
 * finished first; every other worker must have ended by itself, successfully. Returns the
 * number of workers really killed (0 or 1), or -1 if a survivor failed or hung. */
static int
reap_all(pid_t *pids, int victim)
{
    int killed = 0;
    for (int w = 0; w < WORKERS; w++) {
        int st = th_wait(pids[w], BOUND_MS);
        if (w == victim && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) {
            killed = 1;
            continue;
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            fprintf(stderr, "torture: worker %d ended with status %#x\n", w, st);
            return -1;
        }
    }
    return killed;
}

/* Kill one random worker once it has attempted a random number of its `ops` operations (or
 * has ended), then reap them all. */
static int
kill_one_and_reap(pid_t *pids, struct progress *pr, long ops)
{
    int victim = (int)(next_rand() % WORKERS);
    long at = (long)(next_rand() % (uint64_t)ops);
    int64_t deadline = th_now_ms() + BOUND_MS;
    while (atomic_load(&pr->attempted[victim]) < at && th_now_ms() < deadline &&
           !has_exited(pids[victim]))
        sched_yield();
    kill(pids[victim], SIGKILL);
    return reap_all(pids, victim);
}

/* ---- queue ------------------------------------------------------------------------------------ */

#define Q_RING 4096
#define Q_MAXMSG (3 * Q_RING) /* one message in eight is larger than the ring: streamed */
#define Q_PER_PRODUCER 300

struct qmsg_hdr {
    uint32_t producer, seq, len, sum;
};

static uint32_t
checksum(const uint8_t *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

struct qctx {
    mp_queue *q;
    struct progress *pr;
    int id;
    uint64_t seed;
};

static int
q_producer(void *arg)
{
    struct qctx *c = arg;
    uint64_t r = c->seed | 1;
    static uint8_t buf[sizeof(struct qmsg_hdr) + Q_MAXMSG];
    for (uint32_t seq = 0; seq < Q_PER_PRODUCER; seq++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        uint32_t len = (uint32_t)(r % 8 == 0 ? r % Q_MAXMSG : r % 200);
        struct qmsg_hdr h = {(uint32_t)c->id, seq, len, 0};
        for (uint32_t i = 0; i < len; i++)
            buf[sizeof h + i] = (uint8_t)(r >> (i % 56));
        h.sum = checksum(buf + sizeof h, len);
        memcpy(buf, &h, sizeof h);
        atomic_fetch_add(&c->pr->attempted[c->id], 1);
        int pr_ = mp_queue_put(c->q, buf, sizeof h + len, BOUND_MS);
        if (pr_ != 0) {
            fprintf(stderr, "torture: producer %d: put of %u bytes (seq %u) failed: %s\n", c->id,
                    (unsigned)(sizeof h + len), seq, mp_strerror(pr_));
            return 1;
        }
        atomic_fetch_add(&c->pr->done[c->id], 1);
    }
    /* The end marker: seq Q_PER_PRODUCER, no payload. */
    struct qmsg_hdr h = {(uint32_t)c->id, Q_PER_PRODUCER, 0, checksum(NULL, 0)};
    return mp_queue_put(c->q, &h, sizeof h, BOUND_MS) == 0 ? 0 : 1;
}

/* True while a producer may still put: it has not sent its end marker and was not killed (a
 * SIGKILLed process never returns to user space, so once kill() returned it puts nothing). */
static bool
may_still_put(const long *next_seq, int w, int victim, bool fired)
{
    return next_seq[w] <= Q_PER_PRODUCER && !(fired && w == victim);
}

static void
test_torture_queue_producers_killed_at_random(void **state)
{
    (void)state;
    static uint8_t buf[sizeof(struct qmsg_hdr) + Q_MAXMSG];
    for (int round = 0; round < rounds; round++) {
        mp_queue *q;
        assert_int_equal(mp_queue_open(&q, &(mp_queue_opts){.capacity = Q_RING}), 0);
        struct progress *pr = th_shared(sizeof *pr);
        struct qctx ctx[WORKERS];
        pid_t pids[WORKERS];
        for (int w = 0; w < WORKERS; w++) {
            ctx[w] = (struct qctx){q, pr, w, next_rand()};
            pids[w] = th_fork(q_producer, &ctx[w]);
            assert_true(pids[w] > 0);
        }
        /* Consume while the producers run, so the ring fills, empties and streams; kill one
         * producer after a random number of messages. */
        long next_seq[WORKERS] = {0};
        long got = 0, kill_at = (long)(next_rand() % (WORKERS * Q_PER_PRODUCER));
        int victim = (int)(next_rand() % WORKERS);
        bool fired = false;
        int64_t deadline = th_now_ms() + BOUND_MS;
        for (;;) {
            if (th_now_ms() >= deadline)
                fprintf(stderr, "torture: round %d stuck: qsize %d, got %ld, fired %d victim %d\n",
                        round, mp_queue_qsize(q), got, fired, victim);
            assert_true(th_now_ms() < deadline);
            if (!fired && got >= kill_at) {
                kill(pids[victim], SIGKILL);
                fired = true;
            }
            /* A get that times out in the middle of a streamed message drops it (as documented),
             * so while a live producer may still put, the get waits up to the bound; short
             * gets only drain what the ended producers left (a killed producer's in-flight
             * message may be dropped: that one may be missing anyway). */
            bool live = false;
            for (int w = 0; w < WORKERS; w++)
                live = live || may_still_put(next_seq, w, victim, fired);
            int64_t left = deadline - th_now_ms();
            size_t len = 0;
            int r = mp_queue_get(q, buf, sizeof buf, &len, live ? (int)(left > 0 ? left : 1) : 50);
            if (r == -ETIMEDOUT && !live) {
                bool all_ended = true;
                for (int w = 0; w < WORKERS && all_ended; w++)
                    all_ended = has_exited(pids[w]);
                if (all_ended && mp_queue_qsize(q) == 0)
                    break;
                continue;
            }
            if (r == -ETIMEDOUT)
                continue; /* the bound has passed: reported above */
            assert_int_equal(r, 0);
            struct qmsg_hdr h;
            assert_true(len >= sizeof h);
            memcpy(&h, buf, sizeof h);
            assert_true(h.producer < WORKERS);
            assert_int_equal(len, sizeof h + h.len);
            assert_int_equal(checksum(buf + sizeof h, h.len), h.sum);
            /* Each producer's messages in order, none twice, none skipped. */
            assert_int_equal((long)h.seq, next_seq[h.producer]);
            next_seq[h.producer] = h.seq + 1;
            got += h.seq < Q_PER_PRODUCER;
        }
        int killed = reap_all(pids, victim);
        assert_true(killed >= 0);
        total.kills += killed;
        /* Every message a producer completed arrived. A killed producer's message in flight may
         * be missing or present; nothing else may be missing. */
        long completed = 0;
        for (int w = 0; w < WORKERS; w++)
            completed += atomic_load(&pr->done[w]);
        assert_true(got >= completed && got <= completed + killed);
        assert_int_equal(mp_queue_qsize(q), 0);
        total.messages += got;
        th_shared_free(pr, sizeof *pr);
        mp_queue_close(q);
    }
}

/* ---- lock and atomic value ------------------------------------------------------------------- */

#define OPS 20000

struct cctx {
    mp_lock *lock;
    long *counter;
    mp_value *value;
    struct progress *pr;
    int id;
};

static int
lock_worker(void *arg)
{
    struct cctx *c = arg;
    for (int i = 0; i < OPS; i++) {
        atomic_fetch_add(&c->pr->attempted[c->id], 1);
        int r = mp_lock_acquire(c->lock, BOUND_MS);
        if (r < 0)
            return 1;
        /* A previous holder may have died here; the counter is one word, so it is whole. */
        long v = __atomic_load_n(c->counter, __ATOMIC_RELAXED);
        __atomic_store_n(c->counter, v + 1, __ATOMIC_RELAXED);
        if (mp_lock_release(c->lock) != 0)
            return 1;
        atomic_fetch_add(&c->pr->done[c->id], 1);
    }
    return 0;
}

static int
atomic_worker(void *arg)
{
    struct cctx *c = arg;
    for (int i = 0; i < OPS; i++) {
        atomic_fetch_add(&c->pr->attempted[c->id], 1);
        if (mp_value_fetch_add(c->value, 1, NULL) != 0)
            return 1;
        atomic_fetch_add(&c->pr->done[c->id], 1);
    }
    return 0;
}

static void
counter_rounds(bool locked)
{
    for (int round = 0; round < rounds; round++) {
        struct progress *pr = th_shared(sizeof *pr);
        long *counter = th_shared(sizeof *counter);
        mp_lock *lock = NULL;
        mp_value *value = NULL;
        if (locked)
            assert_int_equal(mp_lock_open(&lock, NULL), 0);
        else
            assert_int_equal(mp_value_open(&value, 'q', &(mp_value_opts){.raw = true}), 0);
        struct cctx ctx[WORKERS];
        pid_t pids[WORKERS];
        for (int w = 0; w < WORKERS; w++) {
            ctx[w] = (struct cctx){lock, counter, value, pr, w};
            pids[w] = th_fork(locked ? lock_worker : atomic_worker, &ctx[w]);
            assert_true(pids[w] > 0);
        }
        int killed = kill_one_and_reap(pids, pr, OPS);
        assert_true(killed >= 0);
        total.kills += killed;
        long done = 0;
        for (int w = 0; w < WORKERS; w++)
            done += atomic_load(&pr->done[w]);
        long final;
        if (locked) {
            /* The lock is usable afterwards, whoever died holding it. */
            int r = mp_lock_acquire(lock, BOUND_MS);
            assert_true(r == 0 || r == MP_OWNERDEAD);
            final = *counter;
            assert_int_equal(mp_lock_release(lock), 0);
            total.lock_ops += final;
            mp_lock_close(lock);
        } else {
            int64_t v = 0;
            assert_int_equal(mp_value_get(value, &v, sizeof v), 0);
            final = (long)v;
            total.atomic_ops += final;
            mp_value_close(value);
        }
        assert_true(final >= done && final <= done + killed);
        th_shared_free(counter, sizeof *counter);
        th_shared_free(pr, sizeof *pr);
    }
}

static void
test_torture_lock_holders_killed_at_random(void **state)
{
    (void)state;
    counter_rounds(true);
}

static void
test_torture_atomic_adders_killed_at_random(void **state)
{
    (void)state;
    counter_rounds(false);
}

/* ---- manager list ------------------------------------------------------------------------------ */

#define LIST_OPS 2000

struct lctx {
    mp_list *list;
    struct progress *pr;
    int id;
};

static int
append_worker(void *arg)
{
    struct lctx *c = arg;
    for (int i = 0; i < LIST_OPS; i++) {
        mp_item it = mp_item_int((int64_t)c->id * 1000000 + i);
        atomic_fetch_add(&c->pr->attempted[c->id], 1);
        if (mp_list_append(c->list, &it) != 0)
            return 1;
        atomic_fetch_add(&c->pr->done[c->id], 1);
    }
    return 0;
}

static void
test_torture_list_appenders_killed_at_random(void **state)
{
    (void)state;
    mp_manager *m;
    assert_int_equal(mp_manager_open(&m, NULL), 0);
    for (int round = 0; round < (rounds >= 3 ? rounds / 3 : rounds); round++) {
        mp_list *l;
        assert_int_equal(mp_list_open(&l, m, NULL, 0), 0);
        struct progress *pr = th_shared(sizeof *pr);
        struct lctx ctx[WORKERS];
        pid_t pids[WORKERS];
        for (int w = 0; w < WORKERS; w++) {
            ctx[w] = (struct lctx){l, pr, w};
            pids[w] = th_fork(append_worker, &ctx[w]);
            assert_true(pids[w] > 0);
        }
        int killed = kill_one_and_reap(pids, pr, LIST_OPS);
        assert_true(killed >= 0);
        total.kills += killed;
        long done = 0;
        for (int w = 0; w < WORKERS; w++)
            done += atomic_load(&pr->done[w]);
        ssize_t n = mp_list_len(l);
        assert_true(n >= done && n <= done + killed);
        long next[WORKERS] = {0};
        for (ssize_t i = 0; i < n; i++) {
            mp_item it;
            assert_int_equal(mp_list_get(l, i, &it), 0);
            assert_int_equal(it.type, MP_ITEM_INT);
            long w = (long)(it.v.i / 1000000), seq = (long)(it.v.i % 1000000);
            assert_true(w >= 0 && w < WORKERS);
            assert_int_equal(seq, next[w]); /* per worker: in order, none twice, no gap */
            next[w]++;
        }
        total.appends += n;
        th_shared_free(pr, sizeof *pr);
        mp_list_close(l);
    }
    mp_manager_close(m);
}

static void
test_torture_summary(void **state)
{
    (void)state;
    printf("torture: seed %llu, %d rounds, %ld kills, %ld messages, %ld locked increments, "
           "%ld atomic adds, %ld list appends\n",
           (unsigned long long)seed, rounds, total.kills, total.messages, total.lock_ops,
           total.atomic_ops, total.appends);
    assert_true(total.kills > 0);
}

int
main(void)
{
    const char *s = getenv("MPIPC_TORTURE_SEED");
    seed = s != NULL ? strtoull(s, NULL, 10) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
    rng = seed | 1;
    const char *r = getenv("MPIPC_TORTURE_ROUNDS");
    rounds = r != NULL ? atoi(r) : th_valgrind() ? VALGRIND_ROUNDS : ROUNDS;
    printf("torture: seed %llu (set MPIPC_TORTURE_SEED to repeat)\n", (unsigned long long)seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_torture_queue_producers_killed_at_random),
        cmocka_unit_test(test_torture_lock_holders_killed_at_random),
        cmocka_unit_test(test_torture_atomic_adders_killed_at_random),
        cmocka_unit_test(test_torture_list_appenders_killed_at_random),
        cmocka_unit_test(test_torture_summary),
    };
    return th_run_tests(tests);
}
