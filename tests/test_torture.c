/*
 * test_torture.c - crash torture: workers are SIGKILLed at random moments, over and over, while
 * they use a queue (messages smaller and larger than its ring), a lock, an atomic value, a
 * locked value and array, a manager list and a manager dict (the other sync primitives are in
 * test_torture_sync.c). After each round the survivors must have finished within a bound and the
 * shared state must satisfy its invariants:
 *
 *  - queue: every message arrives whole (its checksum matches), at most once, in each
 *    producer's order; a message is missing only if its producer was killed putting it;
 *  - lock: the counter it guards equals the increments the workers completed, give or take one
 *    per kill (a worker killed between its increment and its own record of it);
 *  - value: the same for lock-free atomic adds;
 *  - value and array under one rlock: the value counts the locked writes (as the lock); a
 *    write sets every element of the array to one value; a reader under the lock never sees a
 *    torn array unless its acquire returned MP_OWNERDEAD (the writer died mid-write), and then
 *    it repairs it before releasing;
 *  - manager list: every item is well formed, no worker's item appears twice or out of order,
 *    and the length is the appends completed, give or take one per kill;
 *  - manager dict: every entry is well formed (its value names its key and its checksum
 *    matches), no key is unknown or twice, len() matches the snapshot, and every key holds
 *    exactly what its worker last stored, except the keys of the victim's operation in flight,
 *    which may hold the state before or after it.
 *
 * The shared machinery (seed, kills, reaping) is in torture.{c,h}; a summary line gives the
 * counts.
 */
#define _GNU_SOURCE
#include "internal.h"
#include "torture.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define WORKERS 3
#define BOUND_MS TT_BOUND_MS

#define ROUNDS 100 /* fast enough under every sanitizer: scaled only under valgrind */

static struct {
    long kills, messages, lock_ops, atomic_ops, array_ops_done, torn, appends, dict_ops,
        dict_entries;
} total;

/* ---- queue ----------------------------------------------------------------------------------- */

#define Q_RING 4096
#define Q_MAXMSG (3 * Q_RING) /* one message in eight is larger than the ring: streamed */
#define Q_PER_PRODUCER 300

struct qmsg_hdr {
    uint32_t producer, seq, len, sum;
};

struct qctx {
    mp_queue *q;
    struct tt_progress *pr;
    int id;
    uint64_t seed;
};

/* The payload length of a producer's next message, from its stream *r (which the parent
 * replays to know which messages were streamed). */
static uint32_t
q_next_len(uint64_t *r)
{
    uint64_t x = tt_next(r);
    return (uint32_t)(x % 8 == 0 ? x % Q_MAXMSG : x % 200);
}

static int
q_producer(void *arg)
{
    struct qctx *c = arg;
    uint64_t r = c->seed | 1;
    static uint8_t buf[sizeof(struct qmsg_hdr) + Q_MAXMSG];
    for (uint32_t seq = 0; seq < Q_PER_PRODUCER; seq++) {
        uint32_t len = q_next_len(&r);
        struct qmsg_hdr h = {(uint32_t)c->id, seq, len, 0};
        for (uint32_t i = 0; i < len; i++)
            buf[sizeof h + i] = (uint8_t)(r >> (i % 56));
        h.sum = tt_checksum(buf + sizeof h, len);
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
    struct qmsg_hdr h = {(uint32_t)c->id, Q_PER_PRODUCER, 0, tt_checksum(NULL, 0)};
    return mp_queue_put(c->q, &h, sizeof h, BOUND_MS) == 0 ? 0 : 1;
}

/* True while a producer may still put: it has not sent its end marker and was not killed (a
 * SIGKILLed process never returns to user space, so once kill() returned it puts nothing). */
static bool
q_may_still_put(const long *next_seq, int w, int victim, bool fired)
{
    return next_seq[w] <= Q_PER_PRODUCER && !(fired && w == victim);
}

static void
test_torture_queue_producers_killed_at_random(void **state)
{
    (void)state;
    static uint8_t buf[sizeof(struct qmsg_hdr) + Q_MAXMSG];
    for (int round = 0; round < tt_rounds(ROUNDS); round++) {
        mp_queue *q;
        assert_int_equal(mp_queue_open(&q, &(mp_queue_opts){.capacity = Q_RING}), 0);
        struct tt_progress *pr = th_shared(sizeof *pr);
        struct qctx ctx[WORKERS];
        pid_t pids[WORKERS];
        for (int w = 0; w < WORKERS; w++) {
            ctx[w] = (struct qctx){q, pr, w, tt_rand()};
            pids[w] = th_fork(q_producer, &ctx[w]);
            assert_true(pids[w] > 0);
        }
        /* Consume while the producers run, so the ring fills, empties and streams; kill one
         * producer after a random number of messages. A get that times out in the middle of a
         * streamed message drops it (as documented), so while a producer that was not killed
         * may still put, the get waits up to the bound; short gets (which let the loop notice
         * that everything has arrived) only drain what ended producers left, where the only
         * message a timeout may drop is the killed producer's in-flight one. */
        long next_seq[WORKERS] = {0};
        long got = 0, kill_at = (long)(tt_rand() % (WORKERS * Q_PER_PRODUCER));
        int victim = (int)(tt_rand() % WORKERS);
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
            bool live = false;
            for (int w = 0; w < WORKERS; w++)
                live = live || q_may_still_put(next_seq, w, victim, fired);
            int64_t left = deadline - th_now_ms();
            size_t len = 0;
            int r = mp_queue_get(q, buf, sizeof buf, &len, live ? (int)(left > 0 ? left : 1) : 50);
            if (r == -ETIMEDOUT && !live) {
                bool all_ended = true;
                for (int w = 0; w < WORKERS && all_ended; w++)
                    all_ended = tt_has_exited(pids[w]);
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
            assert_int_equal(tt_checksum(buf + sizeof h, h.len), h.sum);
            /* Each producer's messages in order, none twice, none skipped. */
            assert_int_equal((long)h.seq, next_seq[h.producer]);
            next_seq[h.producer] = h.seq + 1;
            got += h.seq < Q_PER_PRODUCER;
        }
        int killed = tt_reap_all(pids, WORKERS, victim);
        assert_true(killed >= 0);
        total.kills += killed;
        /* Every message a producer completed arrived; a killed producer's message in flight
         * may be missing or present; nothing else may be missing. */
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
    struct tt_progress *pr;
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
    for (int round = 0; round < tt_rounds(ROUNDS); round++) {
        struct tt_progress *pr = th_shared(sizeof *pr);
        long *counter = th_shared(sizeof *counter);
        mp_lock *lock = NULL;
        mp_value *value = NULL;
        if (locked)
            assert_int_equal(mp_lock_open(&lock, NULL), 0);
        else
            assert_int_equal(mp_value_open(&value, 'q', &(mp_value_opts){.raw = true}), 0);
        struct cctx ctx[WORKERS];
        for (int w = 0; w < WORKERS; w++)
            ctx[w] = (struct cctx){lock, counter, value, pr, w};
        int killed = tt_round(locked ? lock_worker : atomic_worker, ctx, sizeof ctx[0], WORKERS, pr,
                              OPS, &total.kills) >= 0;
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

/* ---- value and array under one rlock --------------------------------------------------------- */

#define ARRAY_LEN 16
#define ARRAY_ROUNDS 40

/* Operations per worker and round: tt_ops(80000), fewer under a sanitizer. */
static long array_ops;

struct actx {
    mp_lock *lock;
    mp_value *count;
    mp_array *arr;
    struct tt_progress *pr;
    struct tt_progress *writes; /* done: the writing operations completed */
    _Atomic long *repaired;
    int id;
    uint64_t seed;
};

/* True if every element holds the same value, and that value is one a worker wrote. */
static bool
array_whole(const int64_t *a, const struct tt_progress *pr)
{
    for (int i = 1; i < ARRAY_LEN; i++)
        if (a[i] != a[0])
            return false;
    if (a[0] == 0)
        return true; /* as opened */
    long w = (long)(a[0] >> 32), seq = (long)(a[0] & 0xffffffff);
    return w >= 1 && w <= WORKERS && seq < atomic_load(&pr->attempted[w - 1]);
}

static void
array_write(struct actx *c, int64_t v, bool by_element)
{
    if (by_element) {
        for (int i = 0; i < ARRAY_LEN; i++)
            CHILD_CHECK(mp_array_set(c->arr, i, &v, sizeof v) == 0);
    } else {
        int64_t buf[ARRAY_LEN];
        for (int i = 0; i < ARRAY_LEN; i++)
            buf[i] = v;
        CHILD_CHECK(mp_array_set_slice(c->arr, 0, ARRAY_LEN, buf, sizeof buf) == 0);
    }
}

static int
array_worker(void *arg)
{
    struct actx *c = arg;
    uint64_t r = c->seed | 1;
    for (long i = 0; i < array_ops; i++) {
        uint64_t x = tt_next(&r);
        atomic_fetch_add(&c->pr->attempted[c->id], 1);
        int rc = mp_lock_acquire(c->lock, BOUND_MS);
        CHILD_CHECK(rc == 0 || rc == MP_OWNERDEAD);
        int64_t a[ARRAY_LEN];
        CHILD_CHECK(mp_array_get_slice(c->arr, 0, ARRAY_LEN, a, sizeof a) == ARRAY_LEN);
        int64_t mark = (int64_t)(c->id + 1) << 32 | i;
        if (!array_whole(a, c->pr)) {
            /* Torn only if the last writer died in the middle: then this caller took the lock
             * from a dead owner, and repairs the array before anyone else can look. */
            CHILD_CHECK(rc == MP_OWNERDEAD);
            array_write(c, mark, false);
            atomic_fetch_add(c->repaired, 1);
        }
        if (x % 3 != 0) {
            int64_t n;
            CHILD_CHECK(mp_value_get(c->count, &n, sizeof n) == 0);
            n++;
            CHILD_CHECK(mp_value_set(c->count, &n, sizeof n) == 0);
            array_write(c, mark, x % 2 == 0);
        }
        CHILD_CHECK(mp_lock_release(c->lock) == 0);
        if (x % 3 != 0)
            atomic_fetch_add(&c->writes->done[c->id], 1);
        atomic_fetch_add(&c->pr->done[c->id], 1);
    }
    return 0;
}

static void
test_torture_locked_value_and_array_writers_killed_at_random(void **state)
{
    (void)state;
    for (int round = 0; round < tt_rounds(ARRAY_ROUNDS); round++) {
        struct tt_progress *pr = th_shared(sizeof *pr);
        _Atomic long *repaired = th_shared(sizeof *repaired);
        mp_lock *l;
        mp_value *count;
        mp_array *arr;
        assert_int_equal(mp_rlock_open(&l), 0);
        assert_int_equal(mp_value_open(&count, 'q', &(mp_value_opts){.lock = l}), 0);
        assert_int_equal(mp_array_open(&arr, 'q', ARRAY_LEN, &(mp_value_opts){.lock = l}), 0);
        struct tt_progress *writes = th_shared(sizeof *writes);
        struct actx ctx[WORKERS];
        for (int w = 0; w < WORKERS; w++)
            ctx[w] = (struct actx){l, count, arr, pr, writes, repaired, w, tt_rand()};
        int victim =
            tt_round(array_worker, ctx, sizeof ctx[0], WORKERS, pr, array_ops, &total.kills);
        int rc = mp_lock_acquire(l, BOUND_MS);
        assert_true(rc == 0 || (rc == MP_OWNERDEAD && victim >= 0));
        int64_t a[ARRAY_LEN], n;
        assert_int_equal(mp_array_get_slice(arr, 0, ARRAY_LEN, a, sizeof a), ARRAY_LEN);
        if (!array_whole(a, pr)) {
            assert_int_equal(rc, MP_OWNERDEAD);
            total.torn++;
        }
        assert_int_equal(mp_value_get(count, &n, sizeof n), 0);
        /* The value counts the writing operations completed, give or take the victim's. */
        long wrote = tt_sum_done(writes, WORKERS), done = tt_sum_done(pr, WORKERS);
        assert_true(n >= wrote && n <= wrote + (victim >= 0));
        assert_int_equal(mp_lock_release(l), 0);
        total.array_ops_done += done;
        total.torn += atomic_load(repaired);
        mp_array_close(arr);
        mp_value_close(count);
        mp_lock_close(l);
        th_shared_free(writes, sizeof *writes);
        th_shared_free(repaired, sizeof *repaired);
        th_shared_free(pr, sizeof *pr);
    }
}

/* ---- manager list ---------------------------------------------------------------------------- */

#define LIST_OPS 2000

struct lctx {
    mp_list *list;
    struct tt_progress *pr;
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
    for (int round = 0; round < tt_rounds(ROUNDS / 3); round++) {
        mp_list *l;
        assert_int_equal(mp_list_open(&l, m, NULL, 0), 0);
        struct tt_progress *pr = th_shared(sizeof *pr);
        struct lctx ctx[WORKERS];
        for (int w = 0; w < WORKERS; w++)
            ctx[w] = (struct lctx){l, pr, w};
        int killed =
            tt_round(append_worker, ctx, sizeof ctx[0], WORKERS, pr, LIST_OPS, &total.kills) >= 0;
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

/* ---- manager dict ------------------------------------------------------------------------------
 * Each worker owns KEYS keys ("k<worker>.<i>") and sets, pops and updates (three keys at once)
 * them at random. A value is bytes that name their key and a version and end in a checksum.
 * The worker records, in shared memory, the version each of its keys holds (0: absent) after
 * every operation, and before each operation what it is about to change, so after the kill the
 * parent knows the exact contents for the survivors' keys and the two possible states of each
 * key the victim's operation in flight touched. */

#define KEYS 8
#define DICT_OPS 1500
#define DICT_MAXPAY 256

struct dmodel {
    _Atomic uint32_t version[WORKERS][KEYS]; /* committed state of each key; 0: absent */
    struct {
        _Atomic int valid; /* set after key/next are written, cleared once version is */
        int n;
        int key[3];
        uint32_t next[3]; /* the version the operation stores; 0: it removes the key */
    } inflight[WORKERS];
};

struct dctx {
    mp_dict *dict;
    struct tt_progress *pr;
    struct dmodel *model;
    int id;
    uint64_t seed;
};

/* A value: key id, version, payload length, payload, checksum of all before it. */
static size_t
dval_make(uint8_t *buf, uint32_t keyid, uint32_t version)
{
    uint32_t len = (keyid * 2654435761u ^ version * 40503u) % DICT_MAXPAY;
    memcpy(buf, &keyid, 4);
    memcpy(buf + 4, &version, 4);
    memcpy(buf + 8, &len, 4);
    for (uint32_t i = 0; i < len; i++)
        buf[12 + i] = (uint8_t)(version + i * 7);
    uint32_t sum = tt_checksum(buf, 12 + len);
    memcpy(buf + 12 + len, &sum, 4);
    return 16 + len;
}

/* The version a value holds if it is well formed and belongs to keyid; 0 otherwise. */
static uint32_t
dval_version(const mp_item *v, uint32_t keyid)
{
    if (v->type != MP_ITEM_BYTES || v->v.s.len < 16)
        return 0;
    const uint8_t *b = (const uint8_t *)v->v.s.ptr;
    uint32_t id, version, len, sum;
    memcpy(&id, b, 4);
    memcpy(&version, b + 4, 4);
    memcpy(&len, b + 8, 4);
    if (id != keyid || len != v->v.s.len - 16)
        return 0;
    memcpy(&sum, b + 12 + len, 4);
    return sum == tt_checksum(b, 12 + len) ? version : 0;
}

static void
dkey_name(char *buf, int worker, int i)
{
    snprintf(buf, 16, "k%d.%d", worker, i);
}

static int
dict_worker(void *arg)
{
    struct dctx *c = arg;
    uint64_t r = c->seed | 1;
    uint32_t version = 0;
    static uint8_t vbuf[3][16 + DICT_MAXPAY];
    char names[3][16];
    for (int op = 0; op < DICT_OPS; op++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        int kind = (int)(r % 4), n = kind == 3 ? 3 : 1;
        mp_item keys[3], vals[3];
        struct dmodel *m = c->model;
        m->inflight[c->id].n = n;
        for (int k = 0; k < n; k++) {
            int key = (int)((r >> 8) % KEYS + (uint64_t)k) % KEYS; /* distinct */
            m->inflight[c->id].key[k] = key;
            m->inflight[c->id].next[k] = kind == 2 ? 0 : ++version;
            dkey_name(names[k], c->id, key);
            keys[k] = mp_item_str(names[k]);
            size_t len = dval_make(vbuf[k], (uint32_t)(c->id * KEYS + key), version);
            vals[k] = mp_item_bytes(vbuf[k], len);
        }
        atomic_store(&m->inflight[c->id].valid, 1);
        atomic_fetch_add(&c->pr->attempted[c->id], 1);
        int key0 = m->inflight[c->id].key[0];
        uint32_t had = atomic_load(&m->version[c->id][key0]);
        if (kind == 2) {
            mp_item none = mp_item_none(), out;
            CHILD_CHECK(mp_dict_pop(c->dict, &keys[0], &none, &out) == 0);
            /* What was there is exactly what this worker last stored under the key. */
            if (had == 0)
                CHILD_CHECK(out.type == MP_ITEM_NONE);
            else
                CHILD_CHECK(dval_version(&out, (uint32_t)(c->id * KEYS + key0)) == had);
            mp_item_clear(&out);
        } else if (n == 1) {
            CHILD_CHECK(mp_dict_set(c->dict, &keys[0], &vals[0]) == 0);
        } else {
            CHILD_CHECK(mp_dict_update(c->dict, keys, vals, 3) == 0);
        }
        for (int k = 0; k < n; k++)
            atomic_store(&m->version[c->id][m->inflight[c->id].key[k]], m->inflight[c->id].next[k]);
        atomic_store(&m->inflight[c->id].valid, 0);
        atomic_fetch_add(&c->pr->done[c->id], 1);
    }
    return 0;
}

/* The states key i of worker w may be in after the round: its committed version, or (a key
 * the victim's operation in flight touched) the version that operation stores. */
static bool
dict_state_ok(const struct dmodel *m, int w, int i, uint32_t found)
{
    if (found == atomic_load(&m->version[w][i]))
        return true;
    if (!atomic_load(&m->inflight[w].valid))
        return false;
    for (int k = 0; k < m->inflight[w].n; k++)
        if (m->inflight[w].key[k] == i && m->inflight[w].next[k] == found)
            return true;
    return false;
}

static void
test_torture_dict_writers_killed_at_random(void **state)
{
    (void)state;
    mp_manager *m;
    assert_int_equal(mp_manager_open(&m, NULL), 0);
    mp_dict *d;
    assert_int_equal(mp_dict_open(&d, m), 0);
    for (int round = 0; round < tt_rounds(ROUNDS / 3); round++) {
        assert_int_equal(mp_dict_clear(d), 0);
        struct tt_progress *pr = th_shared(sizeof *pr);
        struct dmodel *model = th_shared(sizeof *model);
        struct dctx ctx[WORKERS];
        for (int w = 0; w < WORKERS; w++)
            ctx[w] = (struct dctx){d, pr, model, w, tt_rand()};
        int victim = tt_round(dict_worker, ctx, sizeof ctx[0], WORKERS, pr, DICT_OPS, &total.kills);
        /* A survivor's operation is never in flight now. */
        for (int w = 0; w < WORKERS; w++)
            if (w != victim)
                assert_int_equal(atomic_load(&model->inflight[w].valid), 0);
        ssize_t len = mp_dict_len(d);
        mp_item *keys, *vals;
        size_t n;
        assert_int_equal(mp_dict_items(d, &keys, &vals, &n), 0);
        assert_int_equal((size_t)len, n);
        bool seen[WORKERS][KEYS] = {{false}};
        for (size_t j = 0; j < n; j++) {
            int w, i, end = 0;
            assert_int_equal(keys[j].type, MP_ITEM_STR);
            char name[16] = {0};
            assert_true(keys[j].v.s.len < sizeof name);
            memcpy(name, keys[j].v.s.ptr, keys[j].v.s.len);
            assert_int_equal(sscanf(name, "k%d.%d%n", &w, &i, &end), 2);
            assert_true(w >= 0 && w < WORKERS && i >= 0 && i < KEYS &&
                        (size_t)end == keys[j].v.s.len);
            assert_false(seen[w][i]); /* no key twice */
            seen[w][i] = true;
            uint32_t version = dval_version(&vals[j], (uint32_t)(w * KEYS + i));
            assert_true(version != 0); /* well formed, and the value of this key */
            assert_true(dict_state_ok(model, w, i, version));
        }
        /* Every key that is absent may be absent. */
        for (int w = 0; w < WORKERS; w++)
            for (int i = 0; i < KEYS; i++)
                if (!seen[w][i])
                    assert_true(dict_state_ok(model, w, i, 0));
        mp_items_free(keys, n);
        mp_items_free(vals, n);
        for (int w = 0; w < WORKERS; w++)
            total.dict_ops += atomic_load(&pr->done[w]);
        total.dict_entries += (long)n;
        th_shared_free(model, sizeof *model);
        th_shared_free(pr, sizeof *pr);
    }
    mp_dict_close(d);
    mp_manager_close(m);
}

static void
test_torture_summary(void **state)
{
    (void)state;
    printf("torture: seed %llu, %ld kills, %ld messages, %ld locked increments, %ld atomic adds, "
           "%ld locked value/array operations (%ld torn arrays repaired), %ld list appends, "
           "%ld dict operations (%ld entries checked)\n",
           (unsigned long long)tt_seed, total.kills, total.messages, total.lock_ops,
           total.atomic_ops, total.array_ops_done, total.torn, total.appends, total.dict_ops,
           total.dict_entries);
    assert_true(total.kills > 0);
}

int
main(void)
{
    tt_init();
    array_ops = tt_ops(80000);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_torture_queue_producers_killed_at_random),
        cmocka_unit_test(test_torture_lock_holders_killed_at_random),
        cmocka_unit_test(test_torture_atomic_adders_killed_at_random),
        cmocka_unit_test(test_torture_locked_value_and_array_writers_killed_at_random),
        cmocka_unit_test(test_torture_list_appenders_killed_at_random),
        cmocka_unit_test(test_torture_dict_writers_killed_at_random),
        cmocka_unit_test(test_torture_summary),
    };
    return th_run_tests(tests);
}
