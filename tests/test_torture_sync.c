/*
 * test_torture_sync.c - crash torture of the sync primitives (the lock is in test_torture.c):
 * workers are SIGKILLed at random moments, over and over, and after each round the survivors
 * must have finished within a bound and the shared state must satisfy its invariants:
 *
 *  - rlock: workers take it 1 to 4 levels deep; the counter guarded at the innermost level
 *    equals the increments completed, give or take one per kill; whoever takes the lock after
 *    its owner died (at any depth) gets MP_OWNERDEAD and holds it exactly once;
 *  - semaphore and bounded semaphore: never more holders than units; a holder that dies keeps
 *    its unit (a semaphore has no owner to give it back), so afterwards exactly the victim's
 *    held unit is missing, and a bounded semaphore refuses to go above its initial value;
 *  - condition: a bounded buffer (two conditions on one Lock or RLock, producers and
 *    consumers); its counter, the predicate, stays within bounds and equals tokens added minus
 *    taken, give or take one per kill, and no wait times out while its predicate holds (a lost
 *    wake-up);
 *  - barrier: a party killed while waiting has arrived, so its round completes; one killed
 *    between waits makes the others time out or get MP_EBROKEN within their timeout; the
 *    survivors have passed the same rounds; arrival indices are never handed out twice; reset
 *    makes the barrier usable again.
 *
 * The machinery (seed, kills, reaping) is shared with test_torture.c in torture.{c,h}.
 */
#define _GNU_SOURCE
#include "torture.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define WORKERS 3
#define BOUND_MS TT_BOUND_MS

#define ROUNDS 40
/* Operations per worker and round: enough that a round lasts some tens of milliseconds, so
 * that the kill lands before the victim has finished. */
static long rlock_ops, sem_ops, tokens;

enum { K_RLOCK, K_SEM, K_COND, K_BARRIER, KINDS };
static struct {
    long kills[KINDS], rlock_ops, ownerdead, ownerdead_deep, sem_ops, sem_lost, tokens,
        cond_timeouts, barrier_waits, barrier_broken, barrier_max_ms;
} total;

/* One round of `kind`: see tt_round. */
static int
run_round(int kind, int (*fn)(void *), void *ctx, size_t size, int n, struct tt_progress *pr,
          long ops)
{
    return tt_round(fn, ctx, size, n, pr, ops, &total.kills[kind]);
}

/* ---- rlock ----------------------------------------------------------------------------------- */

struct rlock_shared {
    long counter;   /* guarded by the lock */
    uint32_t depth; /* the owner's depth as it last recorded it (never more than the truth) */
    _Atomic long ownerdead, deep;
};

struct rctx {
    mp_lock *lock;
    struct rlock_shared *sh;
    struct tt_progress *pr;
    int id;
    uint64_t seed;
};

static int
rlock_worker(void *arg)
{
    struct rctx *c = arg;
    uint64_t r = c->seed | 1;
    for (int i = 0; i < rlock_ops; i++) {
        uint32_t depth = 1 + (uint32_t)(tt_next(&r) % 4);
        atomic_fetch_add(&c->pr->attempted[c->id], 1);
        for (uint32_t k = 0; k < depth; k++) {
            int rc = mp_lock_acquire(c->lock, BOUND_MS);
            if (rc == MP_OWNERDEAD) {
                CHILD_CHECK(k == 0);
                atomic_fetch_add(&c->sh->ownerdead, 1);
                if (c->sh->depth > 1)
                    atomic_fetch_add(&c->sh->deep, 1);
            } else {
                CHILD_CHECK(rc == 0);
            }
            c->sh->depth = k + 1;
        }
        c->sh->counter++;
        for (uint32_t k = depth; k > 0; k--) {
            c->sh->depth = k - 1;
            CHILD_CHECK(mp_lock_release(c->lock) == 0);
        }
        /* Every level is gone, also after taking the lock from a dead owner at depth > 1.
         * (TSan takes the probing unlock for misuse: it cannot know the mutex checks.) */
        CHILD_CHECK(TH_UNDER_TSAN || mp_lock_release(c->lock) == -EPERM);
        atomic_fetch_add(&c->pr->done[c->id], 1);
    }
    return 0;
}

static void
test_torture_rlock_owners_killed_at_any_depth(void **state)
{
    (void)state;
    for (int round = 0; round < tt_rounds(ROUNDS); round++) {
        struct tt_progress *pr = th_shared(sizeof *pr);
        struct rlock_shared *sh = th_shared(sizeof *sh);
        mp_lock *l;
        assert_int_equal(mp_rlock_open(&l), 0);
        struct rctx ctx[WORKERS];
        for (int w = 0; w < WORKERS; w++)
            ctx[w] = (struct rctx){l, sh, pr, w, tt_rand()};
        int victim = run_round(K_RLOCK, rlock_worker, ctx, sizeof ctx[0], WORKERS, pr, rlock_ops);
        int rc = mp_lock_acquire(l, BOUND_MS);
        assert_true(rc == 0 || (rc == MP_OWNERDEAD && victim >= 0));
        if (rc == MP_OWNERDEAD && sh->depth > 1)
            total.ownerdead_deep++;
        total.ownerdead += rc == MP_OWNERDEAD;
        long done = tt_sum_done(pr, WORKERS);
        assert_true(sh->counter >= done && sh->counter <= done + (victim >= 0));
        assert_int_equal(mp_lock_release(l), 0);
        if (!TH_UNDER_TSAN)
            assert_int_equal(mp_lock_release(l), -EPERM);
        total.rlock_ops += sh->counter;
        total.ownerdead += atomic_load(&sh->ownerdead);
        total.ownerdead_deep += atomic_load(&sh->deep);
        mp_lock_close(l);
        th_shared_free(sh, sizeof *sh);
        th_shared_free(pr, sizeof *pr);
    }
}

/* ---- semaphore and bounded semaphore --------------------------------------------------------- */

#define SEM_UNITS 2

enum { IDLE, ACQUIRING, HOLDING, RELEASING };

struct sem_shared {
    _Atomic int holders, max_holders;
    _Atomic int phase[WORKERS]; /* where each worker is, for the victim's unit */
};

struct sctx {
    mp_semaphore *sem;
    struct sem_shared *sh;
    struct tt_progress *pr;
    int id;
};

static int
sem_worker(void *arg)
{
    struct sctx *c = arg;
    for (int i = 0; i < sem_ops; i++) {
        atomic_fetch_add(&c->pr->attempted[c->id], 1);
        atomic_store(&c->sh->phase[c->id], ACQUIRING);
        /* A dead holder's unit is gone, but one of the two is always left: no wait is long. */
        CHILD_CHECK(mp_semaphore_acquire(c->sem, BOUND_MS) == 0);
        atomic_store(&c->sh->phase[c->id], HOLDING);
        int h = atomic_fetch_add(&c->sh->holders, 1) + 1;
        CHILD_CHECK(h <= SEM_UNITS);
        int m = atomic_load(&c->sh->max_holders);
        while (h > m && !atomic_compare_exchange_weak(&c->sh->max_holders, &m, h))
            ;
        atomic_fetch_sub(&c->sh->holders, 1);
        atomic_store(&c->sh->phase[c->id], RELEASING);
        CHILD_CHECK(mp_semaphore_release(c->sem) == 0);
        atomic_store(&c->sh->phase[c->id], IDLE);
        atomic_fetch_add(&c->pr->done[c->id], 1);
    }
    return 0;
}

static void
test_torture_semaphore_holders_killed_at_random(void **state)
{
    (void)state;
    for (int round = 0; round < tt_rounds(ROUNDS); round++) {
        bool bounded = round % 2 == 1;
        struct tt_progress *pr = th_shared(sizeof *pr);
        struct sem_shared *sh = th_shared(sizeof *sh);
        mp_semaphore *sem;
        assert_int_equal(
            mp_semaphore_open(&sem, SEM_UNITS, &(mp_semaphore_opts){.bounded = bounded}), 0);
        struct sctx ctx[WORKERS];
        for (int w = 0; w < WORKERS; w++)
            ctx[w] = (struct sctx){sem, sh, pr, w};
        int victim = run_round(K_SEM, sem_worker, ctx, sizeof ctx[0], WORKERS, pr, sem_ops);
        /* The units missing now are exactly the one the victim held: one if it died holding
         * it, none if it died between a release and the next acquire, and either if it died
         * inside mp_semaphore_acquire or _release (the unit moves with one atomic step). A
         * holder's count left one too high by the victim stands for that lost unit, so the
         * workers' check (never more than two holders) still holds. */
        int lost = SEM_UNITS - mp_semaphore_get_value(sem);
        int phase = victim >= 0 ? atomic_load(&sh->phase[victim]) : IDLE;
        if (phase == HOLDING)
            assert_int_equal(lost, 1);
        else if (phase == IDLE)
            assert_int_equal(lost, 0);
        else
            assert_true(lost == 0 || lost == 1);
        assert_true(atomic_load(&sh->max_holders) <= SEM_UNITS);
        total.sem_lost += lost;
        /* Give the dead holder's unit back; a bounded semaphore then refuses one more. */
        for (int i = 0; i < lost; i++)
            assert_int_equal(mp_semaphore_release(sem), 0);
        assert_int_equal(mp_semaphore_get_value(sem), SEM_UNITS);
        if (bounded) {
            assert_int_equal(mp_semaphore_release(sem), -EINVAL);
            assert_int_equal(mp_semaphore_get_value(sem), SEM_UNITS);
        }
        for (int i = 0; i < SEM_UNITS; i++)
            assert_int_equal(mp_semaphore_acquire(sem, MP_NOWAIT), 0);
        assert_int_equal(mp_semaphore_acquire(sem, MP_NOWAIT), -EAGAIN);
        total.sem_ops += tt_sum_done(pr, WORKERS);
        mp_semaphore_close(sem);
        th_shared_free(sh, sizeof *sh);
        th_shared_free(pr, sizeof *pr);
    }
}

/* ---- condition ------------------------------------------------------------------------------
 * Python's bounded buffer: two conditions on one lock, producers wait while it is full,
 * consumers while it is empty. The buffer is only a counter, the predicate. The lock is a plain
 * Lock in even rounds and an RLock held two levels deep in odd ones. */

#define PRODUCERS 2
#define CONSUMERS 2
#define CAP 1
/* Every wait has a timeout, far above any wait for a live peer: a wait that runs out while
 * its predicate holds has missed its wake-up. */
#define COND_WAIT_MS 5000

struct cond_shared {
    /* Guarded by the lock. */
    long count;            /* the predicate: tokens in the buffer, 0..CAP */
    long added, taken;     /* records kept next to count: a kill between may split them */
    bool ended[PRODUCERS]; /* a producer is done (set by itself, or by the parent) */
    long timeouts, stalled;
};

struct cctx {
    mp_lock *lock;
    mp_condition *not_empty, *not_full;
    struct cond_shared *sh;
    struct tt_progress *pr;
    int id;
    int depth; /* levels each worker takes the lock (an RLock in every other round) */
};

static bool
all_ended(const struct cond_shared *sh)
{
    for (int i = 0; i < PRODUCERS; i++)
        if (!sh->ended[i])
            return false;
    return true;
}

/* Wait on cond with the lock held until ready(sh); a timeout is counted, and is a stall if
 * ready(sh) holds when it returns. */
static void
cond_wait_until(struct cctx *c, mp_condition *cond, bool (*ready)(const struct cond_shared *))
{
    while (!ready(c->sh)) {
        int rc = mp_condition_wait(cond, COND_WAIT_MS);
        if (rc == -ETIMEDOUT) {
            c->sh->timeouts++;
            c->sh->stalled += ready(c->sh);
        } else {
            CHILD_CHECK(rc == 0 || rc == MP_OWNERDEAD);
        }
    }
}

static bool
has_room(const struct cond_shared *sh)
{
    return sh->count < CAP;
}

static bool
has_token_or_end(const struct cond_shared *sh)
{
    return sh->count > 0 || all_ended(sh);
}

/* Take the lock c->depth levels deep: a wait must drop every level and restore them all,
 * also when it takes the lock back from a dead owner. */
static void
cond_lock(struct cctx *c)
{
    for (int k = 0; k < c->depth; k++) {
        int rc = mp_lock_acquire(c->lock, BOUND_MS);
        CHILD_CHECK(rc == 0 || (k == 0 && rc == MP_OWNERDEAD));
    }
}

static void
cond_unlock(struct cctx *c)
{
    for (int k = 0; k < c->depth; k++)
        CHILD_CHECK(mp_lock_release(c->lock) == 0);
}

static int
producer(struct cctx *c)
{
    for (int i = 0; i < tokens; i++) {
        atomic_fetch_add(&c->pr->attempted[c->id], 1);
        cond_lock(c);
        cond_wait_until(c, c->not_full, has_room);
        c->sh->count++;
        c->sh->added++;
        CHILD_CHECK(mp_condition_notify(c->not_empty, 1) == 0);
        cond_unlock(c);
        atomic_fetch_add(&c->pr->done[c->id], 1);
    }
    cond_lock(c);
    c->sh->ended[c->id] = true;
    CHILD_CHECK(mp_condition_notify_all(c->not_empty) == 0);
    cond_unlock(c);
    return 0;
}

static int
consumer(struct cctx *c)
{
    for (;;) {
        atomic_fetch_add(&c->pr->attempted[c->id], 1);
        cond_lock(c);
        cond_wait_until(c, c->not_empty, has_token_or_end);
        CHILD_CHECK(c->sh->count >= 0 && c->sh->count <= CAP);
        bool took = c->sh->count > 0;
        if (took) {
            c->sh->count--;
            c->sh->taken++;
            CHILD_CHECK(mp_condition_notify(c->not_full, 1) == 0);
        }
        cond_unlock(c);
        if (!took)
            return 0;
        atomic_fetch_add(&c->pr->done[c->id], 1);
    }
}

static int
cond_worker(void *arg)
{
    struct cctx *c = arg;
    return c->id < PRODUCERS ? producer(c) : consumer(c);
}

static void
test_torture_condition_waiters_and_notifiers_killed_at_random(void **state)
{
    (void)state;
    enum { N = PRODUCERS + CONSUMERS };
    for (int round = 0; round < tt_rounds(ROUNDS); round++) {
        struct tt_progress *pr = th_shared(sizeof *pr);
        struct cond_shared *sh = th_shared(sizeof *sh);
        mp_lock *lock;
        mp_condition *not_empty, *not_full;
        bool recursive = round % 2 == 1;
        assert_int_equal(mp_lock_open(&lock, &(mp_lock_opts){.recursive = recursive}), 0);
        assert_int_equal(mp_condition_open(&not_empty, &(mp_condition_opts){.lock = lock}), 0);
        assert_int_equal(mp_condition_open(&not_full, &(mp_condition_opts){.lock = lock}), 0);
        struct cctx ctx[N];
        pid_t pids[N];
        for (int w = 0; w < N; w++)
            ctx[w] = (struct cctx){lock, not_empty, not_full, sh, pr, w, recursive ? 2 : 1};
        assert_int_equal(tt_spawn(pids, N, cond_worker, ctx, sizeof ctx[0]), 0);
        int victim = tt_kill_one(pids, N, pr, tokens);
        /* A supervisor's part, as in a Python program that watches its workers' sentinels.
         * Once the victim has gone, a producer that did not say it was done is done: the
         * consumers could not know otherwise. And every waiter is woken to look again: the
         * victim may have taken a notification with it (woken, granted, then killed before
         * acting on it), which no condition variable can give to another waiter. */
        siginfo_t si = {0};
        assert_int_equal(waitid(P_PID, (id_t)pids[victim], &si, WEXITED | WNOWAIT), 0);
        int rc = mp_lock_acquire(lock, BOUND_MS);
        assert_true(rc == 0 || rc == MP_OWNERDEAD);
        if (victim < PRODUCERS)
            sh->ended[victim] = true;
        assert_int_equal(mp_condition_notify_all(not_empty), 0);
        assert_int_equal(mp_condition_notify_all(not_full), 0);
        assert_int_equal(mp_lock_release(lock), 0);
        int killed = tt_reap_all(pids, N, victim);
        assert_true(killed >= 0);
        total.kills[K_COND] += killed;
        rc = mp_lock_acquire(lock, BOUND_MS);
        assert_true(rc == 0 || (rc == MP_OWNERDEAD && killed));
        /* A consumer survived, and leaves only once the buffer is empty and every producer is
         * done. The counter is the tokens added minus those taken, except that the victim may
         * have died between changing it and its own record. */
        assert_int_equal(sh->count, 0);
        long drift = sh->added - sh->taken;
        assert_true(drift >= -killed && drift <= killed);
        /* Every surviving producer's tokens were added, and nothing else. */
        long produced = 0;
        for (int w = 0; w < PRODUCERS; w++)
            produced += atomic_load(&pr->done[w]);
        assert_true(sh->added >= produced && sh->added <= produced + killed);
        assert_int_equal(sh->stalled, 0);
        assert_int_equal(mp_lock_release(lock), 0);
        total.tokens += sh->taken;
        total.cond_timeouts += sh->timeouts;
        mp_condition_close(not_full);
        mp_condition_close(not_empty);
        mp_lock_close(lock);
        th_shared_free(sh, sizeof *sh);
        th_shared_free(pr, sizeof *pr);
    }
}

/* ---- barrier --------------------------------------------------------------------------------- */

#define BAR_OPS 200
/* Far above a round among live parties, so that a round rarely breaks without a death (one
 * that does on a busy machine is checked all the same: every party then fails in it). */
#define BAR_TIMEOUT_MS 400

struct bar_shared {
    _Atomic long actions;          /* rounds whose action ran */
    _Atomic uint32_t idx[BAR_OPS]; /* per round, the arrival indices handed out */
    _Atomic long max_fail_ms;      /* the longest wait that failed */
};

struct bctx {
    mp_barrier *bar;
    struct bar_shared *sh;
    struct tt_progress *pr;
    int id;
};

static int
bar_action(void *arg)
{
    atomic_fetch_add(&((struct bar_shared *)arg)->actions, 1);
    return 0;
}

static int
bar_worker(void *arg)
{
    struct bctx *c = arg;
    for (int i = 0; i < BAR_OPS; i++) {
        atomic_fetch_add(&c->pr->attempted[c->id], 1);
        int64_t t0 = th_now_ms();
        int rc = mp_barrier_wait(c->bar, BAR_TIMEOUT_MS);
        if (rc < 0) {
            /* A party is missing: this wait ran out, or another's did and broke the round. */
            CHILD_CHECK(rc == -ETIMEDOUT || rc == MP_EBROKEN);
            long ms = (long)(th_now_ms() - t0), m = atomic_load(&c->sh->max_fail_ms);
            CHILD_CHECK(rc != -ETIMEDOUT || ms >= BAR_TIMEOUT_MS - 1); /* not early */
            while (ms > m && !atomic_compare_exchange_weak(&c->sh->max_fail_ms, &m, ms))
                ;
            return 0;
        }
        CHILD_CHECK(rc < WORKERS);
        uint32_t bit = 1u << rc;
        CHILD_CHECK((atomic_fetch_or(&c->sh->idx[i], bit) & bit) == 0);
        atomic_fetch_add(&c->pr->done[c->id], 1);
    }
    return 0;
}

/* After a reset, one full round of fresh parties: each exits with its arrival index. */
static int
bar_once(void *arg)
{
    int rc = mp_barrier_wait(arg, BOUND_MS);
    return rc >= 0 && rc < WORKERS ? rc : 100;
}

static void
test_torture_barrier_parties_killed_at_random(void **state)
{
    (void)state;
    for (int round = 0; round < tt_rounds(ROUNDS / 2); round++) {
        struct tt_progress *pr = th_shared(sizeof *pr);
        struct bar_shared *sh = th_shared(sizeof *sh);
        mp_barrier *bar;
        assert_int_equal(
            mp_barrier_open(&bar, WORKERS,
                            &(mp_barrier_opts){.action = bar_action, .action_arg = sh}),
            0);
        struct bctx ctx[WORKERS];
        for (int w = 0; w < WORKERS; w++)
            ctx[w] = (struct bctx){bar, sh, pr, w};
        int victim = run_round(K_BARRIER, bar_worker, ctx, sizeof ctx[0], WORKERS, pr, BAR_OPS);
        /* The survivors passed the same rounds; the victim at most one fewer (it died after
         * arriving, or before recording a round it passed). */
        long passed = -1;
        for (int w = 0; w < WORKERS; w++) {
            if (w == victim)
                continue;
            long d = atomic_load(&pr->done[w]);
            assert_true(passed < 0 || d == passed);
            passed = d;
        }
        if (victim >= 0) {
            long v = atomic_load(&pr->done[victim]);
            assert_true(v == passed || v + 1 == passed);
        }
        /* Every round passed had all its parties, each with its own index; its action ran
         * once (the one after it may have run too, if the victim died in it or after it). */
        for (long i = 0; i < passed; i++)
            assert_true(atomic_load(&sh->idx[i]) == (1u << WORKERS) - 1 ||
                        (victim >= 0 && i == passed - 1));
        /* A wait that failed did so within the bound: a party's timeout, plus however late
         * it arrived (generous: the machine is shared). */
        assert_true(atomic_load(&sh->max_fail_ms) <= BOUND_MS / 2);
        if (atomic_load(&sh->max_fail_ms) > total.barrier_max_ms)
            total.barrier_max_ms = atomic_load(&sh->max_fail_ms);
        long actions = atomic_load(&sh->actions);
        assert_true(actions == passed || (victim >= 0 && actions == passed + 1));
        total.barrier_waits += tt_sum_done(pr, WORKERS);
        if (passed < BAR_OPS) {
            /* It broke, and stays broken until reset. */
            assert_int_equal(mp_barrier_broken(bar), 1);
            assert_int_equal(mp_barrier_wait(bar, BOUND_MS), MP_EBROKEN);
            total.barrier_broken++;
        }
        assert_int_equal(mp_barrier_reset(bar), 0);
        assert_int_equal(mp_barrier_broken(bar), 0);
        assert_int_equal(mp_barrier_n_waiting(bar), 0);
        pid_t pids[WORKERS];
        for (int w = 0; w < WORKERS; w++) {
            pids[w] = th_fork(bar_once, bar);
            assert_true(pids[w] > 0);
        }
        unsigned seen = 0;
        for (int w = 0; w < WORKERS; w++) {
            int st = th_wait(pids[w], BOUND_MS);
            assert_true(WIFEXITED(st) && WEXITSTATUS(st) < WORKERS);
            seen |= 1u << WEXITSTATUS(st);
        }
        assert_int_equal(seen, (1u << WORKERS) - 1);
        assert_int_equal(atomic_load(&sh->actions), actions + 1);
        mp_barrier_close(bar);
        th_shared_free(sh, sizeof *sh);
        th_shared_free(pr, sizeof *pr);
    }
}

static void
test_torture_summary(void **state)
{
    (void)state;
    long kills = 0;
    for (int k = 0; k < KINDS; k++)
        kills += total.kills[k];
    printf("torture: sync: seed %llu, %ld kills: rlock %ld kills, %ld operations (%ld took it from "
           "a dead owner, %ld at depth > 1); semaphores %ld kills, %ld holds (%ld units died with "
           "their holder); condition %ld kills, %ld tokens (%ld waits timed out); barrier %ld "
           "kills, %ld waits (%ld rounds broken, the longest failed wait %ld ms)\n",
           (unsigned long long)tt_seed, kills, total.kills[K_RLOCK], total.rlock_ops,
           total.ownerdead, total.ownerdead_deep, total.kills[K_SEM], total.sem_ops, total.sem_lost,
           total.kills[K_COND], total.tokens, total.cond_timeouts, total.kills[K_BARRIER],
           total.barrier_waits, total.barrier_broken, total.barrier_max_ms);
    for (int k = 0; k < KINDS; k++)
        assert_true(total.kills[k] > 0);
}

int
main(void)
{
    tt_init();
    rlock_ops = tt_ops(100000);
    sem_ops = tt_ops(100000);
    tokens = 5000; /* each hand-over costs context switches, hardly slower under a sanitizer */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_torture_rlock_owners_killed_at_any_depth),
        cmocka_unit_test(test_torture_semaphore_holders_killed_at_random),
        cmocka_unit_test(test_torture_condition_waiters_and_notifiers_killed_at_random),
        cmocka_unit_test(test_torture_barrier_parties_killed_at_random),
        cmocka_unit_test(test_torture_summary),
    };
    return th_run_tests(tests);
}
