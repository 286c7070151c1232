/*
 * test_sync.c - Lock, RLock, Semaphore, Condition, Event, Barrier and the shared arena, across
 * real processes: timeouts and misuse as Python reports them, SIGKILLs at the named fault
 * points, 100k objects, and a 4-process counter stress test.
 */
#define _GNU_SOURCE
#include "arena.h"
#include "helpers.h"
#include "internal.h"
#include "sync.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>

/* What the parent shares with its children; lives in MAP_SHARED memory (th_shared). The
 * handles are process-local pointers that the children inherit through fork. */
typedef struct shared {
    th_barrier *tb;
    mp_lock *lock;
    mp_semaphore *sem;
    mp_condition *cond;
    mp_event *ev;
    mp_barrier *bar;
    long counter;
    int ready; /* guarded by the lock / condition */
    int flag;  /* guarded by the lock / condition */
    _Atomic int woken;
    _Atomic int action_runs;
    int result[4];
} shared;

static shared *S;

/* ThreadSanitizer follows one process: a mutex locked in another process, or released there on
 * purpose to check -EPERM, looks like misuse to it, and it cannot track 100k held locks. Under
 * TSan the cross-process tests are skipped (SKIP_UNDER_TSAN) and the multi-threaded ones run. */

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

static void
assert_killed(pid_t pid)
{
    int st = th_wait(pid, 10000);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGKILL);
}

/* Wait (bounded) until an atomic counter reaches n. */
static int
await_count(_Atomic int *c, int n)
{
    int64_t end = th_now_ms() + 10000;
    while (atomic_load(c) < n) {
        if (th_now_ms() > end)
            return -1;
        sched_yield();
    }
    return 0;
}

/* Under the condition's lock, wait (bounded) until `ready` counts n waiters: each waiter bumps
 * it with the lock held right before it waits, so once we see n with the lock, all n are
 * registered as waiting. Returns with the lock held. */
static int
await_ready_locked(int n)
{
    int64_t end = th_now_ms() + 10000;
    for (;;) {
        if (mp_condition_acquire(S->cond, 5000) < 0)
            return -1;
        if (S->ready >= n)
            return 0;
        mp_condition_release(S->cond);
        if (th_now_ms() > end)
            return -1;
        sched_yield();
    }
}

/* ---- Lock ------------------------------------------------------------------------------------ */

static int
hold_lock_child(void *arg)
{
    (void)arg;
    CHILD_CHECK(mp_lock_acquire(S->lock, MP_FOREVER) == 0);
    CHILD_CHECK(th_barrier_wait(S->tb) == 0); /* 1: the lock is held */
    CHILD_CHECK(th_barrier_wait(S->tb) == 0); /* 2: the parent has tried */
    CHILD_CHECK(mp_lock_release(S->lock) == 0);
    return 0;
}

static void
test_lock_acquire_times_out_while_another_process_holds_it(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    shared_new(2);
    assert_int_equal(mp_lock_open(&S->lock, NULL), 0);
    pid_t c = th_fork(hold_lock_child, NULL);
    assert_true(c > 0);
    assert_int_equal(th_barrier_wait(S->tb), 0);
    assert_int_equal(mp_lock_acquire(S->lock, MP_NOWAIT), -EAGAIN);
    int64_t t0 = th_now_ms();
    assert_int_equal(mp_lock_acquire(S->lock, 100), -ETIMEDOUT);
    int64_t dt = th_now_ms() - t0;
    assert_true(dt >= 95 && dt < 3000);
    assert_int_equal(mp_lock_acquire(S->lock, -2), -EINVAL);
    assert_int_equal(mp_lock_release(S->lock), -EPERM); /* not ours */
    assert_int_equal(th_barrier_wait(S->tb), 0);
    assert_int_equal(mp_lock_acquire(S->lock, 10000), 0);
    assert_child_ok(c);
    assert_int_equal(mp_lock_acquire(S->lock, MP_FOREVER), -EDEADLK); /* Python deadlocks */
    assert_int_equal(mp_lock_release(S->lock), 0);
    assert_int_equal(mp_lock_release(S->lock), -EPERM); /* unlocked */
    mp_lock_close(S->lock);
    mp_lock_close(NULL);
    assert_int_equal(mp_lock_open(NULL, NULL), -EINVAL);
    assert_int_equal(mp_lock_acquire(NULL, 0), -EINVAL);
    shared_free();
}

static int
rlock_non_owner_child(void *arg)
{
    (void)arg;
    CHILD_CHECK(mp_lock_release(S->lock) == -EPERM);
    CHILD_CHECK(mp_lock_acquire(S->lock, MP_NOWAIT) == -EAGAIN);
    CHILD_CHECK(th_barrier_wait(S->tb) == 0); /* 1: checked */
    CHILD_CHECK(th_barrier_wait(S->tb) == 0); /* 2: released */
    /* The parent has released every level: now it is ours, recursively. */
    CHILD_CHECK(mp_lock_acquire(S->lock, 10000) == 0);
    CHILD_CHECK(mp_lock_acquire(S->lock, 0) == 0);
    CHILD_CHECK(mp_lock_release(S->lock) == 0);
    CHILD_CHECK(mp_lock_release(S->lock) == 0);
    CHILD_CHECK(mp_lock_release(S->lock) == -EPERM);
    return 0;
}

static void *
rlock_other_thread(void *arg)
{
    (void)arg;
    intptr_t ok = mp_lock_release(S->lock) == -EPERM && mp_lock_acquire(S->lock, 0) == -EAGAIN;
    return (void *)ok;
}

static void
test_rlock_counts_recursion_per_process_and_thread(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    shared_new(2);
    assert_int_equal(mp_rlock_open(&S->lock), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(mp_lock_acquire(S->lock, MP_NOWAIT), 0);
    pthread_t t;
    void *ok;
    assert_int_equal(pthread_create(&t, NULL, rlock_other_thread, NULL), 0);
    assert_int_equal(pthread_join(t, &ok), 0);
    assert_true(ok != NULL);
    pid_t c = th_fork(rlock_non_owner_child, NULL);
    assert_true(c > 0);
    assert_int_equal(th_barrier_wait(S->tb), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(mp_lock_release(S->lock), 0);
    assert_int_equal(mp_lock_release(S->lock), -EPERM);
    assert_int_equal(th_barrier_wait(S->tb), 0);
    assert_child_ok(c);
    mp_lock_close(S->lock);
    shared_free();
}

static int
die_holding_lock_child(void *arg)
{
    bool recursive = arg != NULL;
    CHILD_CHECK(mp__fault_arm(recursive ? "test.rlock.held" : "sync.lock.held", 1, NULL, NULL) ==
                0);
    CHILD_CHECK(mp_lock_acquire(S->lock, MP_FOREVER) == 0);
    if (recursive) {
        CHILD_CHECK(mp_lock_acquire(S->lock, MP_FOREVER) == 0);
        CHILD_CHECK(mp_lock_acquire(S->lock, MP_FOREVER) == 0);
        mp__fault("test.rlock.held");
    }
    return 3; /* reached only if the fault point did not fire */
}

static int
wait_for_dead_owner_child(void *arg)
{
    (void)arg;
    CHILD_CHECK(th_barrier_wait(S->tb) == 0);
    int r = mp_lock_acquire(S->lock, 10000);
    CHILD_CHECK(r == MP_OWNERDEAD);
    S->counter++;
    CHILD_CHECK(mp_lock_release(S->lock) == 0);
    return 0;
}

static void
check_lock_survives_a_killed_owner(bool recursive)
{
    shared_new(2);
    assert_int_equal(mp_lock_open(&S->lock, &(mp_lock_opts){.recursive = recursive}), 0);
    /* A waiter is already queued when the owner dies; it must inherit the lock, not hang. */
    pid_t w = th_fork(wait_for_dead_owner_child, NULL);
    assert_true(w > 0);
    pid_t c = th_fork(die_holding_lock_child, recursive ? (void *)1 : NULL);
    assert_true(c > 0);
    assert_killed(c);
    assert_int_equal(th_barrier_wait(S->tb), 0);
    assert_child_ok(w);
    assert_int_equal(S->counter, 1);
    /* Consistent again: plain acquire and release, and one level is all it takes. */
    assert_int_equal(mp_lock_acquire(S->lock, 1000), 0);
    assert_int_equal(mp_lock_release(S->lock), 0);
    assert_int_equal(mp_lock_release(S->lock), -EPERM);
    mp_lock_close(S->lock);
    shared_free();
}

static void
test_lock_killed_owner_hands_over_with_ownerdead(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    if (!mp__fault_enabled())
        skip();
    check_lock_survives_a_killed_owner(false);
    check_lock_survives_a_killed_owner(true);
}

#define STRESS_PROCS 4
#define STRESS_ITERS 100000

static int
increment_child(void *arg)
{
    (void)arg;
    CHILD_CHECK(th_barrier_wait(S->tb) == 0);
    for (int i = 0; i < STRESS_ITERS; i++) {
        CHILD_CHECK(mp_lock_acquire(S->lock, MP_FOREVER) == 0);
        S->counter++;
        CHILD_CHECK(mp_lock_release(S->lock) == 0);
    }
    return 0;
}

static void
test_lock_protects_a_counter_incremented_by_four_processes(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    shared_new(STRESS_PROCS);
    assert_int_equal(mp_rlock_open(&S->lock), 0);
    pid_t c[STRESS_PROCS];
    for (int i = 0; i < STRESS_PROCS; i++)
        assert_true((c[i] = th_fork(increment_child, NULL)) > 0);
    for (int i = 0; i < STRESS_PROCS; i++)
        assert_child_ok(c[i]);
    assert_int_equal(S->counter, (long)STRESS_PROCS * STRESS_ITERS);
    mp_lock_close(S->lock);
    shared_free();
}

#define MANY 100000

static int
use_every_lock_child(void *arg)
{
    mp_lock **locks = arg;
    for (int i = 0; i < MANY; i += 997)
        CHILD_CHECK(mp_lock_acquire(locks[i], MP_NOWAIT) == -EAGAIN);
    CHILD_CHECK(mp_lock_acquire(locks[1], MP_NOWAIT) == 0);
    return 0;
}

static void
test_lock_hundred_thousand_open_in_a_few_mappings(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    int maps0 = th_count_maps();
    mp_lock **locks = mp__calloc(MANY, sizeof *locks);
    assert_non_null(locks);
    for (int i = 0; i < MANY; i++)
        assert_int_equal(mp_lock_open(&locks[i], NULL), 0);
    assert_true(th_count_maps() - maps0 < 64);
    for (int i = 0; i < MANY; i += 997)
        assert_int_equal(mp_lock_acquire(locks[i], 0), 0);
    pid_t c = th_fork(use_every_lock_child, locks);
    assert_true(c > 0);
    assert_child_ok(c);
    /* Inherited by the child, which died holding locks[1]. */
    assert_int_equal(mp_lock_acquire(locks[1], 1000), MP_OWNERDEAD);
    for (int i = 0; i < MANY; i++)
        mp_lock_close(locks[i]);
    /* Freed blocks are reused: another 100k need no new mapping. */
    int maps1 = th_count_maps();
    for (int i = 0; i < MANY; i++)
        assert_int_equal(mp_lock_open(&locks[i], NULL), 0);
    assert_int_equal(th_count_maps(), maps1);
    for (int i = 0; i < MANY; i++)
        mp_lock_close(locks[i]);
    mp__free(locks);
}

static int
child_close_keeps_object_child(void *arg)
{
    (void)arg;
    /* A child's close frees only its handle copy; the parent's object lives on. */
    mp_lock_close(S->lock);
    mp_semaphore_close(S->sem);
    return 0;
}

static int
stale_handle_child(void *arg)
{
    (void)arg;
    CHILD_CHECK(th_barrier_wait(S->tb) == 0); /* the parent has closed its objects */
    CHILD_CHECK(mp_lock_acquire(S->lock, 0) == -EBADF);
    CHILD_CHECK(mp_lock_release(S->lock) == -EBADF);
    CHILD_CHECK(mp_semaphore_release(S->sem) == -EBADF);
    return 0;
}

static void
test_only_the_creator_frees_and_stale_handles_get_ebadf(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    shared_new(2);
    assert_int_equal(mp_lock_open(&S->lock, NULL), 0);
    assert_int_equal(mp_semaphore_open(&S->sem, 1, NULL), 0);
    pid_t c = th_fork(child_close_keeps_object_child, NULL);
    assert_true(c > 0);
    assert_child_ok(c);
    assert_int_equal(mp_lock_acquire(S->lock, 0), 0);
    assert_int_equal(mp_lock_release(S->lock), 0);
    assert_int_equal(mp_semaphore_acquire(S->sem, 0), 0);
    c = th_fork(stale_handle_child, NULL);
    assert_true(c > 0);
    mp_lock_close(S->lock);
    mp_semaphore_close(S->sem);
    assert_int_equal(th_barrier_wait(S->tb), 0);
    assert_child_ok(c);
    shared_free();
}

static void
test_arena_fails_cleanly_and_only_frees_its_own_blocks(void **state)
{
    (void)state;
    mp_lock *l = (mp_lock *)1;
    mp__alloc_fail_after(0);
    assert_int_equal(mp_lock_open(&l, NULL), -ENOMEM);
    mp__alloc_fail_after(-1);
    assert_null(l);
    void *p;
    assert_int_equal(mp__arena_alloc(0, &p), -EINVAL);
    assert_int_equal(mp__arena_alloc(100, &p), 0);
    assert_true(((uintptr_t)p & 63) == 0);
    assert_true(mp__arena_owns(p));
    char local[8];
    assert_false(mp__arena_free(local, sizeof local));
    assert_true(mp__arena_free(p, 100));
    void *big;
    assert_int_equal(mp__arena_alloc(MP__ARENA_SMALL_MAX + 1, &big), 0);
    memset(big, 0xab, MP__ARENA_SMALL_MAX + 1);
    assert_true(mp__arena_free(big, MP__ARENA_SMALL_MAX + 1));
    assert_false(mp__arena_owns(big));
}

/* ---- in place -------------------------------------------------------------------------------- */

static int
in_place_child(void *arg)
{
    char *region = arg;
    mp_lock *l;
    mp_semaphore *s;
    CHILD_CHECK(mp__lock_wrap(&l, region) == 0);
    CHILD_CHECK(mp__semaphore_wrap(&s, region + MP__LOCK_SIZE) == 0);
    CHILD_CHECK(mp_lock_acquire(l, 10000) == 0);
    CHILD_CHECK(mp_semaphore_release(s) == 0);
    CHILD_CHECK(mp_lock_release(l) == 0);
    mp_lock_close(l);
    mp_semaphore_close(s);
    return 0;
}

static void
test_objects_built_in_place_work_across_processes(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    size_t size =
        MP__LOCK_SIZE + MP__SEMAPHORE_SIZE + MP__CONDITION_SIZE + MP__EVENT_SIZE + MP__BARRIER_SIZE;
    char *region = th_shared(size);
    assert_non_null(region);
    mp_lock *l;
    assert_int_equal(mp__lock_wrap(&l, region), -EINVAL); /* nothing there yet */
    assert_int_equal(mp__lock_init_at(region, true), 0);
    assert_int_equal(mp__semaphore_init_at(region + MP__LOCK_SIZE, 1, true), 0);
    char *rest = region + MP__LOCK_SIZE + MP__SEMAPHORE_SIZE;
    assert_int_equal(mp__condition_init_at(rest), 0);
    assert_int_equal(mp__event_init_at(rest + MP__CONDITION_SIZE), 0);
    assert_int_equal(mp__barrier_init_at(rest + MP__CONDITION_SIZE + MP__EVENT_SIZE, 1), 0);
    assert_int_equal(mp__barrier_init_at(region + 1, 1), -EINVAL);
    mp_semaphore *s;
    assert_int_equal(mp__semaphore_wrap(&s, region), -EINVAL); /* a lock is no semaphore */
    assert_int_equal(mp__lock_wrap(&l, region), 0);
    assert_int_equal(mp__semaphore_wrap(&s, region + MP__LOCK_SIZE), 0);
    assert_int_equal(mp_semaphore_acquire(s, 0), 0);
    pid_t c = th_fork(in_place_child, region);
    assert_true(c > 0);
    assert_int_equal(mp_semaphore_acquire(s, 10000), 0);
    assert_child_ok(c);
    assert_int_equal(mp_semaphore_release(s), 0);
    assert_int_equal(mp_semaphore_release(s), -EINVAL); /* bounded at 1 */
    mp_condition *cv;
    mp_event *ev;
    mp_barrier *bar;
    assert_int_equal(mp__condition_wrap(&cv, rest, NULL), 0);
    assert_int_equal(mp__event_wrap(&ev, rest + MP__CONDITION_SIZE), 0);
    assert_int_equal(mp__barrier_wrap(&bar, rest + MP__CONDITION_SIZE + MP__EVENT_SIZE, NULL), 0);
    assert_int_equal(mp_condition_acquire(cv, 0), 0);
    assert_int_equal(mp_condition_wait(cv, MP_NOWAIT), -EAGAIN);
    assert_int_equal(mp_condition_release(cv), 0);
    assert_int_equal(mp_event_set(ev), 0);
    assert_int_equal(mp_event_wait(ev, 0), 0);
    assert_int_equal(mp_barrier_wait(bar, 0), 0);
    mp_lock_close(l);
    mp_semaphore_close(s);
    mp_condition_close(cv);
    mp_event_close(ev);
    mp_barrier_close(bar);
    /* Closing wrapped handles leaves the objects alone. */
    assert_int_equal(mp__lock_wrap(&l, region), 0);
    mp_lock_close(l);
    th_shared_free(region, size);
}

/* The manager's case: objects in a named segment that another process attaches at an address
 * of its own. */
static void *parent_addr;

static int
attached_condition_child(void *arg)
{
    const char *name = arg;
    mp__seg seg;
    CHILD_CHECK(mp__seg_attach(&seg, name) == 0);
    CHILD_CHECK(seg.addr != parent_addr);
    mp_condition *cv;
    CHILD_CHECK(mp__condition_wrap(&cv, seg.addr, NULL) == 0);
    int *flag = (int *)((char *)seg.addr + MP__CONDITION_SIZE);
    CHILD_CHECK(mp_condition_acquire(cv, 10000) == 0);
    *flag = 1; /* ready: we hold the lock, and wait() will release it */
    int r = 0;
    while (*flag != 2 && r == 0)
        r = mp_condition_wait(cv, 10000);
    CHILD_CHECK(r == 0);
    CHILD_CHECK(mp_condition_release(cv) == 0);
    mp_condition_close(cv);
    mp__seg_close(&seg);
    return 0;
}

static void
test_objects_in_a_segment_mapped_at_another_address_work(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    char name[64];
    snprintf(name, sizeof name, "/mpipc-test-sync-%d", (int)getpid());
    mp__seg seg;
    assert_int_equal(mp__seg_create(&seg, name, 4096), 0);
    assert_int_equal(mp__condition_init_at(seg.addr), 0);
    int *flag = (int *)((char *)seg.addr + MP__CONDITION_SIZE);
    mp_condition *cv;
    assert_int_equal(mp__condition_wrap(&cv, seg.addr, NULL), 0);
    /* The child inherits this mapping too, so its own attach lands at another address. */
    parent_addr = seg.addr;
    pid_t c = th_fork(attached_condition_child, name);
    assert_true(c > 0);
    int64_t end = th_now_ms() + 10000;
    for (;;) {
        assert_int_equal(mp_condition_acquire(cv, 10000), 0);
        if (*flag == 1)
            break;
        assert_int_equal(mp_condition_release(cv), 0);
        assert_true(th_now_ms() < end);
        sched_yield();
    }
    *flag = 2;
    assert_int_equal(mp_condition_notify(cv, 1), 0);
    assert_int_equal(mp_condition_release(cv), 0);
    assert_child_ok(c);
    mp_condition_close(cv);
    mp__seg_close(&seg);
    shm_unlink(name);
}

/* ---- Semaphore ------------------------------------------------------------------------------- */

static int
sem_taker_child(void *arg)
{
    (void)arg;
    CHILD_CHECK(mp_semaphore_acquire(S->sem, 10000) == 0);
    atomic_fetch_add(&S->woken, 1);
    return 0;
}

static void
test_semaphore_counts_times_out_and_is_released_by_anyone(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    shared_new(2);
    assert_int_equal(mp_semaphore_open(&S->sem, 2, NULL), 0);
    assert_int_equal(mp_semaphore_get_value(S->sem), 2);
    assert_int_equal(mp_semaphore_acquire(S->sem, MP_NOWAIT), 0);
    assert_int_equal(mp_semaphore_acquire(S->sem, 100), 0);
    assert_int_equal(mp_semaphore_acquire(S->sem, MP_NOWAIT), -EAGAIN);
    int64_t t0 = th_now_ms();
    assert_int_equal(mp_semaphore_acquire(S->sem, 100), -ETIMEDOUT);
    int64_t dt = th_now_ms() - t0;
    assert_true(dt >= 95 && dt < 3000);
    assert_int_equal(mp_semaphore_acquire(S->sem, -5), -EINVAL);
    /* Two children block; each release, from this process, lets exactly one through. */
    pid_t c1 = th_fork(sem_taker_child, NULL), c2 = th_fork(sem_taker_child, NULL);
    assert_true(c1 > 0 && c2 > 0);
    assert_int_equal(mp_semaphore_release(S->sem), 0);
    assert_int_equal(await_count(&S->woken, 1), 0);
    assert_int_equal(mp_semaphore_release(S->sem), 0);
    assert_child_ok(c1);
    assert_child_ok(c2);
    assert_int_equal(S->woken, 2);
    assert_int_equal(mp_semaphore_get_value(S->sem), 0);
    /* Unbounded: releasing past the initial value is fine. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(mp_semaphore_release(S->sem), 0);
    assert_int_equal(mp_semaphore_get_value(S->sem), 3);
    mp_semaphore_close(S->sem);
    mp_semaphore *s;
    assert_int_equal(mp_semaphore_open(&s, (unsigned)INT32_MAX + 1, NULL), -EINVAL);
    assert_int_equal(mp_semaphore_open(&s, INT32_MAX, NULL), 0);
    assert_int_equal(mp_semaphore_release(s), -EOVERFLOW);
    mp_semaphore_close(s);
    shared_free();
}

static int
bounded_release_child(void *arg)
{
    (void)arg;
    CHILD_CHECK(mp_semaphore_release(S->sem) == 0);
    CHILD_CHECK(mp_semaphore_release(S->sem) == -EINVAL);
    return 0;
}

static void
test_bounded_semaphore_refuses_over_release(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    shared_new(1);
    assert_int_equal(mp_semaphore_open(&S->sem, 1, &(mp_semaphore_opts){.bounded = true}), 0);
    assert_int_equal(mp_semaphore_release(S->sem), -EINVAL);
    assert_int_equal(mp_semaphore_get_value(S->sem), 1);
    assert_int_equal(mp_semaphore_acquire(S->sem, 0), 0);
    pid_t c = th_fork(bounded_release_child, NULL);
    assert_true(c > 0);
    assert_child_ok(c);
    assert_int_equal(mp_semaphore_get_value(S->sem), 1);
    mp_semaphore_close(S->sem);
    shared_free();
}

static int
die_in_sem_wait_child(void *arg)
{
    (void)arg;
    CHILD_CHECK(mp__fault_arm("sync.sem.wait", 1, NULL, NULL) == 0);
    mp_semaphore_acquire(S->sem, 10000);
    return 3;
}

static void
test_semaphore_waiter_killed_while_waiting_leaves_it_usable(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    if (!mp__fault_enabled())
        skip();
    shared_new(1);
    assert_int_equal(mp_semaphore_open(&S->sem, 0, NULL), 0);
    pid_t k = th_fork(die_in_sem_wait_child, NULL);
    assert_true(k > 0);
    assert_killed(k);
    pid_t c = th_fork(sem_taker_child, NULL);
    assert_true(c > 0);
    assert_int_equal(mp_semaphore_release(S->sem), 0);
    assert_child_ok(c);
    assert_int_equal(mp_semaphore_get_value(S->sem), 0);
    assert_int_equal(mp_semaphore_release(S->sem), 0);
    assert_int_equal(mp_semaphore_acquire(S->sem, 0), 0);
    mp_semaphore_close(S->sem);
    shared_free();
}

/* ---- Condition ------------------------------------------------------------------------------- */

static bool
flag_is_set(void *arg)
{
    (void)arg;
    return S->flag != 0;
}

/* Waits for the flag with a plain predicate loop, counting itself ready first. */
static int
cond_waiter_child(void *arg)
{
    (void)arg;
    CHILD_CHECK(mp_condition_acquire(S->cond, 10000) == 0);
    S->ready++;
    int r = 0;
    while (S->flag == 0 && r == 0)
        r = mp_condition_wait(S->cond, 10000);
    CHILD_CHECK(r == 0);
    atomic_fetch_add(&S->woken, 1);
    CHILD_CHECK(mp_condition_release(S->cond) == 0);
    return 0;
}

/* Waits for exactly one notification. */
static int
cond_once_child(void *arg)
{
    (void)arg;
    CHILD_CHECK(mp_condition_acquire(S->cond, 10000) == 0);
    S->ready++;
    CHILD_CHECK(mp_condition_wait(S->cond, 10000) == 0);
    atomic_fetch_add(&S->woken, 1);
    CHILD_CHECK(mp_condition_release(S->cond) == 0);
    return 0;
}

static void
test_condition_wait_and_notify_need_the_lock_and_time_out(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    shared_new(1);
    assert_int_equal(mp_condition_open(&S->cond, NULL), 0);
    assert_int_equal(mp_condition_wait(S->cond, 10), -EPERM);
    assert_int_equal(mp_condition_notify(S->cond, 1), -EPERM);
    assert_int_equal(mp_condition_notify_all(S->cond), -EPERM);
    assert_int_equal(mp_condition_release(S->cond), -EPERM);
    /* Its own lock is recursive: a wait drops all three levels and restores them. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(mp_condition_acquire(S->cond, 0), 0);
    assert_int_equal(mp_condition_wait(S->cond, -3), -EINVAL);
    assert_int_equal(mp_condition_notify(S->cond, -1), -EINVAL);
    assert_int_equal(mp_condition_notify(S->cond, 1), 0); /* nobody waits: a no-op */
    assert_int_equal(mp_condition_wait(S->cond, MP_NOWAIT), -EAGAIN);
    int64_t t0 = th_now_ms();
    assert_int_equal(mp_condition_wait(S->cond, 100), -ETIMEDOUT);
    int64_t dt = th_now_ms() - t0;
    assert_true(dt >= 95 && dt < 3000);
    t0 = th_now_ms();
    assert_int_equal(mp_condition_wait_for(S->cond, flag_is_set, NULL, 100), -ETIMEDOUT);
    dt = th_now_ms() - t0;
    assert_true(dt >= 95 && dt < 3000);
    assert_int_equal(mp_condition_wait_for(S->cond, NULL, NULL, 100), -EINVAL);
    S->flag = 1;
    assert_int_equal(mp_condition_wait_for(S->cond, flag_is_set, NULL, MP_NOWAIT), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(mp_condition_release(S->cond), 0);
    assert_int_equal(mp_condition_release(S->cond), -EPERM);
    mp_condition_close(S->cond);

    /* On a given non-recursive lock, which the condition uses and does not close. */
    assert_int_equal(mp_lock_open(&S->lock, NULL), 0);
    assert_int_equal(mp_condition_open(&S->cond, &(mp_condition_opts){.lock = S->lock}), 0);
    assert_int_equal(mp_lock_acquire(S->lock, 0), 0);
    assert_int_equal(mp_condition_acquire(S->cond, 0), -EDEADLK);
    assert_int_equal(mp_condition_wait(S->cond, 20), -ETIMEDOUT);
    assert_int_equal(mp_condition_release(S->cond), 0);
    assert_int_equal(mp_lock_release(S->lock), -EPERM);
    mp_condition_close(S->cond);
    assert_int_equal(mp_lock_acquire(S->lock, 0), 0);
    assert_int_equal(mp_lock_release(S->lock), 0);
    mp_lock_close(S->lock);
    shared_free();
}

static int
cond_wait_for_child(void *arg)
{
    (void)arg;
    CHILD_CHECK(mp_condition_acquire(S->cond, 10000) == 0);
    CHILD_CHECK(mp_condition_wait_for(S->cond, flag_is_set, NULL, 10000) == 0);
    CHILD_CHECK(S->flag == 1);
    S->flag = 2;
    CHILD_CHECK(mp_condition_notify(S->cond, 1) == 0);
    CHILD_CHECK(mp_condition_release(S->cond) == 0);
    return 0;
}

static void
test_condition_wait_for_exchanges_with_another_process(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    shared_new(1);
    assert_int_equal(mp_condition_open(&S->cond, NULL), 0);
    pid_t c = th_fork(cond_wait_for_child, NULL);
    assert_true(c > 0);
    assert_int_equal(mp_condition_acquire(S->cond, 10000), 0);
    S->flag = 1;
    assert_int_equal(mp_condition_notify(S->cond, 1), 0);
    int r = 0;
    while (S->flag != 2 && r == 0)
        r = mp_condition_wait(S->cond, 10000);
    assert_int_equal(r, 0);
    assert_int_equal(mp_condition_release(S->cond), 0);
    assert_child_ok(c);
    mp_condition_close(S->cond);
    shared_free();
}

static void
test_condition_notify_wakes_n_and_notify_all_wakes_everyone(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    shared_new(1);
    assert_int_equal(mp_condition_open(&S->cond, NULL), 0);
    pid_t c[3];
    for (int i = 0; i < 3; i++)
        assert_true((c[i] = th_fork(cond_once_child, NULL)) > 0);
    assert_int_equal(await_ready_locked(3), 0);
    assert_int_equal(mp_condition_notify(S->cond, 1), 0);
    assert_int_equal(mp_condition_release(S->cond), 0);
    assert_int_equal(await_count(&S->woken, 1), 0);
    /* An observation window, not synchronisation: nobody else may wake in it. */
    usleep(100 * 1000);
    assert_int_equal(atomic_load(&S->woken), 1);
    assert_int_equal(mp_condition_acquire(S->cond, 10000), 0);
    assert_int_equal(mp_condition_notify_all(S->cond), 0);
    assert_int_equal(mp_condition_release(S->cond), 0);
    for (int i = 0; i < 3; i++)
        assert_child_ok(c[i]);
    assert_int_equal(S->woken, 3);
    /* A waiter that arrives after a notify does not take it. */
    assert_int_equal(mp_condition_acquire(S->cond, 0), 0);
    assert_int_equal(mp_condition_notify_all(S->cond), 0);
    assert_int_equal(mp_condition_wait(S->cond, 50), -ETIMEDOUT);
    assert_int_equal(mp_condition_release(S->cond), 0);
    mp_condition_close(S->cond);
    shared_free();
}

static int
die_in_cond_wait_child(void *arg)
{
    CHILD_CHECK(mp__fault_arm(arg, 1, NULL, NULL) == 0);
    CHILD_CHECK(mp_condition_acquire(S->cond, 10000) == 0);
    S->ready++;
    mp_condition_wait(S->cond, 10000);
    return 3;
}

/* A waiter killed while waiting (point "sync.cond.wait") or right after it was woken
 * ("sync.cond.woken") never costs the survivors their wake-up. */
static void
check_condition_survives_killed_waiter(const char *point)
{
    shared_new(1);
    assert_int_equal(mp_condition_open(&S->cond, NULL), 0);
    pid_t k = th_fork(die_in_cond_wait_child, (void *)point);
    assert_true(k > 0);
    pid_t c = th_fork(cond_once_child, NULL);
    assert_true(c > 0);
    assert_int_equal(await_ready_locked(2), 0);
    assert_int_equal(mp_condition_notify(S->cond, 1), 0);
    assert_int_equal(mp_condition_release(S->cond), 0);
    assert_killed(k);
    assert_child_ok(c);
    /* And later notifies still reach later waiters. */
    S->flag = 0;
    c = th_fork(cond_waiter_child, NULL);
    assert_true(c > 0);
    assert_int_equal(await_ready_locked(3), 0);
    S->flag = 1;
    assert_int_equal(mp_condition_notify(S->cond, 1), 0);
    assert_int_equal(mp_condition_release(S->cond), 0);
    assert_child_ok(c);
    mp_condition_close(S->cond);
    shared_free();
}

static void
test_condition_waiter_killed_while_waiting_leaves_it_usable(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    if (!mp__fault_enabled())
        skip();
    check_condition_survives_killed_waiter("sync.cond.wait");
    check_condition_survives_killed_waiter("sync.cond.woken");
}

/* ---- Event ----------------------------------------------------------------------------------- */

static int
event_waiter_child(void *arg)
{
    (void)arg;
    atomic_fetch_add(&S->woken, 1);
    CHILD_CHECK(mp_event_wait(S->ev, 10000) == 0);
    return 0;
}

static int
die_in_event_wait_child(void *arg)
{
    (void)arg;
    CHILD_CHECK(mp__fault_arm("sync.event.wait", 1, NULL, NULL) == 0);
    mp_event_wait(S->ev, 10000);
    return 3;
}

static void
test_event_set_wakes_waiters_and_wait_times_out(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    shared_new(1);
    assert_int_equal(mp_event_open(&S->ev), 0);
    assert_int_equal(mp_event_is_set(S->ev), 0);
    assert_int_equal(mp_event_wait(S->ev, MP_NOWAIT), -EAGAIN);
    assert_int_equal(mp_event_wait(S->ev, -9), -EINVAL);
    int64_t t0 = th_now_ms();
    assert_int_equal(mp_event_wait(S->ev, 100), -ETIMEDOUT);
    int64_t dt = th_now_ms() - t0;
    assert_true(dt >= 95 && dt < 3000);
    pid_t k = 0;
    if (mp__fault_enabled()) {
        k = th_fork(die_in_event_wait_child, NULL);
        assert_true(k > 0);
        assert_killed(k);
    }
    pid_t c[2];
    for (int i = 0; i < 2; i++)
        assert_true((c[i] = th_fork(event_waiter_child, NULL)) > 0);
    assert_int_equal(await_count(&S->woken, 2), 0);
    assert_int_equal(mp_event_set(S->ev), 0);
    assert_int_equal(mp_event_set(S->ev), 0);
    for (int i = 0; i < 2; i++)
        assert_child_ok(c[i]);
    assert_int_equal(mp_event_is_set(S->ev), 1);
    assert_int_equal(mp_event_wait(S->ev, MP_NOWAIT), 0);
    assert_int_equal(mp_event_clear(S->ev), 0);
    assert_int_equal(mp_event_is_set(S->ev), 0);
    assert_int_equal(mp_event_wait(S->ev, 10), -ETIMEDOUT);
    mp_event_close(S->ev);
    shared_free();
}

/* ---- Barrier --------------------------------------------------------------------------------- */

static int
count_action(void *arg)
{
    (void)arg;
    atomic_fetch_add(&S->action_runs, 1);
    return 0;
}

static int
barrier_party_child(void *arg)
{
    int slot = (int)(intptr_t)arg;
    int r = mp_barrier_wait(S->bar, 10000);
    S->result[slot] = r;
    /* The action ran before anyone was released. */
    CHILD_CHECK(atomic_load(&S->action_runs) == 1);
    return 0;
}

static void
test_barrier_releases_all_with_distinct_indices_after_the_action(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    shared_new(1);
    mp_barrier *b;
    assert_int_equal(mp_barrier_open(&b, 0, NULL), -EINVAL);
    assert_int_equal(mp_barrier_open(&b, 2, &(mp_barrier_opts){.timeout_ms = -1}), -EINVAL);
    assert_int_equal(mp_barrier_open(&S->bar, 3, &(mp_barrier_opts){.action = count_action}), 0);
    assert_int_equal(mp_barrier_parties(S->bar), 3);
    assert_int_equal(mp_barrier_n_waiting(S->bar), 0);
    assert_int_equal(mp_barrier_broken(S->bar), 0);
    pid_t c[2];
    for (int i = 0; i < 2; i++)
        assert_true((c[i] = th_fork(barrier_party_child, (void *)(intptr_t)i)) > 0);
    int mine = mp_barrier_wait(S->bar, 10000);
    for (int i = 0; i < 2; i++)
        assert_child_ok(c[i]);
    assert_int_equal(atomic_load(&S->action_runs), 1);
    int seen = 1 << mine;
    for (int i = 0; i < 2; i++) {
        assert_true(S->result[i] >= 0 && S->result[i] < 3);
        seen |= 1 << S->result[i];
    }
    assert_int_equal(seen, 7);
    assert_int_equal(mp_barrier_n_waiting(S->bar), 0);
    mp_barrier_close(S->bar);
    shared_free();
}

static int
barrier_broken_child(void *arg)
{
    (void)arg;
    CHILD_CHECK(mp_barrier_wait(S->bar, 10000) == MP_EBROKEN);
    return 0;
}

static int
await_waiting(int n)
{
    int64_t end = th_now_ms() + 10000;
    while (mp_barrier_n_waiting(S->bar) < n) {
        if (th_now_ms() > end)
            return -1;
        sched_yield();
    }
    return 0;
}

static void
test_barrier_breaks_on_timeout_abort_and_reset(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    shared_new(1);
    assert_int_equal(mp_barrier_open(&S->bar, 3, NULL), 0);
    /* Timeout: the one whose deadline passed gets -ETIMEDOUT, the others MP_EBROKEN. */
    pid_t c = th_fork(barrier_broken_child, NULL);
    assert_true(c > 0);
    assert_int_equal(await_waiting(1), 0);
    int64_t t0 = th_now_ms();
    assert_int_equal(mp_barrier_wait(S->bar, 100), -ETIMEDOUT);
    int64_t dt = th_now_ms() - t0;
    assert_true(dt >= 95 && dt < 3000);
    assert_child_ok(c);
    assert_int_equal(mp_barrier_broken(S->bar), 1);
    assert_int_equal(mp_barrier_wait(S->bar, 0), MP_EBROKEN);
    assert_int_equal(mp_barrier_reset(S->bar), 0);
    assert_int_equal(mp_barrier_broken(S->bar), 0);
    /* Reset while a party waits. */
    c = th_fork(barrier_broken_child, NULL);
    assert_true(c > 0);
    assert_int_equal(await_waiting(1), 0);
    assert_int_equal(mp_barrier_reset(S->bar), 0);
    assert_child_ok(c);
    assert_int_equal(mp_barrier_broken(S->bar), 0);
    /* Abort while a party waits: broken until reset. */
    c = th_fork(barrier_broken_child, NULL);
    assert_true(c > 0);
    assert_int_equal(await_waiting(1), 0);
    assert_int_equal(mp_barrier_abort(S->bar), 0);
    assert_child_ok(c);
    assert_int_equal(mp_barrier_broken(S->bar), 1);
    assert_int_equal(mp_barrier_n_waiting(S->bar), 0);
    assert_int_equal(mp_barrier_reset(S->bar), 0);
    /* MP_NOWAIT from a party that is not the last breaks it at once. */
    assert_int_equal(mp_barrier_wait(S->bar, MP_NOWAIT), -EAGAIN);
    assert_int_equal(mp_barrier_broken(S->bar), 1);
    assert_int_equal(mp_barrier_wait(S->bar, -7), -EINVAL);
    mp_barrier_close(S->bar);
    /* The default timeout applies to MP_FOREVER. */
    assert_int_equal(mp_barrier_open(&S->bar, 2, &(mp_barrier_opts){.timeout_ms = 50}), 0);
    assert_int_equal(mp_barrier_wait(S->bar, MP_FOREVER), -ETIMEDOUT);
    mp_barrier_close(S->bar);
    shared_free();
}

static int
failing_action(void *arg)
{
    (void)arg;
    return -EIO;
}

static void
test_barrier_failing_action_breaks_it(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    shared_new(1);
    assert_int_equal(mp_barrier_open(&S->bar, 2, &(mp_barrier_opts){.action = failing_action}), 0);
    pid_t c = th_fork(barrier_broken_child, NULL);
    assert_true(c > 0);
    assert_int_equal(await_waiting(1), 0);
    assert_int_equal(mp_barrier_wait(S->bar, 10000), -EIO);
    assert_child_ok(c);
    assert_int_equal(mp_barrier_broken(S->bar), 1);
    mp_barrier_close(S->bar);
    shared_free();
}

static int
die_in_barrier_child(void *arg)
{
    CHILD_CHECK(mp__fault_arm(arg, 1, NULL, NULL) == 0);
    mp_barrier_wait(S->bar, 10000);
    return 3;
}

/* Arrive last: once the parent waits in the barrier, so that this child runs the action. */
static int
die_in_barrier_action_child(void *arg)
{
    int64_t end = th_now_ms() + 10000;
    while (mp_barrier_n_waiting(S->bar) < 1) {
        if (th_now_ms() > end)
            return 2;
        sched_yield();
    }
    return die_in_barrier_child(arg);
}

static void
test_barrier_party_killed_while_waiting_still_counts(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    if (!mp__fault_enabled())
        skip();
    shared_new(1);
    assert_int_equal(mp_barrier_open(&S->bar, 3, &(mp_barrier_opts){.action = count_action}), 0);
    pid_t k = th_fork(die_in_barrier_child, "sync.barrier.wait");
    assert_true(k > 0);
    assert_killed(k);
    assert_int_equal(mp_barrier_n_waiting(S->bar), 1);
    pid_t c = th_fork(barrier_party_child, (void *)0);
    assert_true(c > 0);
    int mine = mp_barrier_wait(S->bar, 10000);
    assert_child_ok(c);
    assert_true(mine >= 1 && S->result[0] >= 1 && mine != S->result[0]);
    mp_barrier_close(S->bar);
    shared_free();
}

static void
test_barrier_killed_while_running_the_action_breaks_at_the_timeout(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    if (!mp__fault_enabled())
        skip();
    shared_new(1);
    assert_int_equal(mp_barrier_open(&S->bar, 2, &(mp_barrier_opts){.action = count_action}), 0);
    pid_t k = th_fork(die_in_barrier_action_child, "sync.barrier.action");
    assert_true(k > 0);
    /* The child arrives last (it waits for us to be waiting), dies in the action holding the
     * barrier's mutex; our wait ends at its deadline and the barrier is broken. The timeout
     * must outlast the child's arrival, or the child finds a broken barrier and never runs
     * the action: generous, since the machine may be loaded (ten times so under valgrind). */
    int64_t t0 = th_now_ms();
    int r = mp_barrier_wait(S->bar, th_scaled_ms(1000));
    int64_t dt = th_now_ms() - t0;
    assert_killed(k);
    assert_true(r == MP_EBROKEN || r == -ETIMEDOUT);
    assert_true(dt < th_scaled_ms(5000));
    assert_int_equal(mp_barrier_broken(S->bar), 1);
    assert_int_equal(mp_barrier_reset(S->bar), 0);
    assert_int_equal(mp_barrier_n_waiting(S->bar), 0);
    mp_barrier_close(S->bar);
    shared_free();
}

/* ---- signals --------------------------------------------------------------------------------- */

static void
on_usr1(int sig)
{
    (void)sig;
}

/* Each futex wait returns -EINTR when a handler (installed without SA_RESTART) runs; the
 * condition wait holds its lock again when it does. */
static int
eintr_child(void *arg)
{
    (void)arg;
    struct sigaction sa = {.sa_handler = on_usr1};
    sigemptyset(&sa.sa_mask);
    CHILD_CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    atomic_fetch_add(&S->woken, 1);
    CHILD_CHECK(mp_event_wait(S->ev, MP_FOREVER) == -EINTR);
    atomic_fetch_add(&S->woken, 1);
    CHILD_CHECK(mp_semaphore_acquire(S->sem, 20000) == -EINTR);
    atomic_fetch_add(&S->woken, 1);
    CHILD_CHECK(mp_condition_acquire(S->cond, 10000) == 0);
    CHILD_CHECK(mp_condition_wait(S->cond, MP_FOREVER) == -EINTR);
    CHILD_CHECK(mp_condition_release(S->cond) == 0);
    CHILD_CHECK(mp_condition_release(S->cond) == -EPERM);
    return 0;
}

static void
test_waits_return_eintr_when_a_signal_handler_runs(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    shared_new(1);
    assert_int_equal(mp_event_open(&S->ev), 0);
    assert_int_equal(mp_semaphore_open(&S->sem, 0, NULL), 0);
    assert_int_equal(mp_condition_open(&S->cond, NULL), 0);
    pid_t c = th_fork(eintr_child, NULL);
    assert_true(c > 0);
    /* Keep signalling until the child is done: a signal that lands before a wait starts is
     * simply followed by the next one. */
    int st = -1;
    int64_t end = th_now_ms() + 20000;
    while (th_now_ms() < end) {
        if (atomic_load(&S->woken) > 0)
            kill(c, SIGUSR1);
        if (waitpid(c, &st, WNOHANG) == c)
            break;
        usleep(5000);
    }
    if (!WIFEXITED(st))
        st = th_wait(c, 1000);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    mp_event_close(S->ev);
    mp_semaphore_close(S->sem);
    mp_condition_close(S->cond);
    shared_free();
}

/* ---- seeded random kills -----------------------------------------------------------------------
 */

#define RK_CONSUMERS 3
#define RK_ITEMS 400

typedef struct rk_shared {
    int items;    /* produced and not yet consumed; guarded by the condition's lock */
    int done;     /* guarded by the condition's lock */
    long counter; /* guarded by the lock */
} rk_shared;

static rk_shared *RK;

static bool
rk_ready(void *arg)
{
    (void)arg;
    return RK->items > 0 || RK->done;
}

/* Takes items one at a time, and between them bumps a counter under a second lock, until told
 * to stop. Killed at random points, it may die holding either lock or inside a wait. */
static int
rk_consumer(void *arg)
{
    (void)arg;
    for (;;) {
        int r = mp_condition_acquire(S->cond, 20000);
        CHILD_CHECK(r == 0 || r == MP_OWNERDEAD);
        r = mp_condition_wait_for(S->cond, rk_ready, NULL, 20000);
        CHILD_CHECK(r == 0 || r == MP_OWNERDEAD);
        if (RK->items > 0)
            RK->items--;
        int done = RK->done && RK->items == 0;
        CHILD_CHECK(mp_condition_release(S->cond) == 0);
        r = mp_lock_acquire(S->lock, 20000);
        CHILD_CHECK(r == 0 || r == MP_OWNERDEAD);
        RK->counter++;
        CHILD_CHECK(mp_lock_release(S->lock) == 0);
        if (done)
            return 0;
    }
}

static void
test_random_kills_never_lose_a_notification_or_a_lock(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    unsigned seed = (unsigned)th_now_ms();
    printf("random kills: seed %u\n", seed);
    srand(seed);
    shared_new(1);
    RK = th_shared(sizeof *RK);
    assert_non_null(RK);
    assert_int_equal(mp_condition_open(&S->cond, NULL), 0);
    assert_int_equal(mp_lock_open(&S->lock, NULL), 0);
    pid_t c[RK_CONSUMERS];
    for (int i = 0; i < RK_CONSUMERS; i++)
        assert_true((c[i] = th_fork(rk_consumer, NULL)) > 0);
    int kills = 0;
    for (int n = 0; n < RK_ITEMS; n++) {
        int r = mp_condition_acquire(S->cond, 20000);
        assert_true(r == 0 || r == MP_OWNERDEAD);
        RK->items++;
        assert_int_equal(mp_condition_notify(S->cond, 1), 0);
        assert_int_equal(mp_condition_release(S->cond), 0);
        if (rand() % 16 == 0) {
            /* Let the victim run a random while, then kill it wherever it is. */
            int v = rand() % RK_CONSUMERS;
            for (int spin = rand() % 20000; spin > 0; spin--)
                __asm__ volatile("" ::: "memory");
            kill(c[v], SIGKILL);
            assert_killed(c[v]);
            kills++;
            assert_true((c[v] = th_fork(rk_consumer, NULL)) > 0);
        }
    }
    int r = mp_condition_acquire(S->cond, 20000);
    assert_true(r == 0 || r == MP_OWNERDEAD);
    RK->done = 1;
    assert_int_equal(mp_condition_notify_all(S->cond), 0);
    assert_int_equal(mp_condition_release(S->cond), 0);
    /* Every survivor drains and stops: no notification was lost to a killed waiter and no lock
     * stayed held by a dead process. */
    for (int i = 0; i < RK_CONSUMERS; i++)
        assert_child_ok(c[i]);
    assert_int_equal(RK->items, 0);
    r = mp_lock_acquire(S->lock, 1000);
    assert_true(r == 0 || r == MP_OWNERDEAD);
    assert_true(RK->counter >= RK_ITEMS - kills);
    assert_int_equal(mp_lock_release(S->lock), 0);
    printf("random kills: %d consumers killed\n", kills);
    mp_condition_close(S->cond);
    mp_lock_close(S->lock);
    th_shared_free(RK, sizeof *RK);
    shared_free();
}

/* ---- threads of one process (what ThreadSanitizer can check) --------------------------------- */

#define THREADS 4
#define THREAD_ITERS 20000

typedef struct threads_shared {
    mp_lock *lock, *rlock;
    mp_semaphore *sem;
    mp_condition *cond;
    mp_event *ev;
    mp_barrier *bar;
    long counter, rcounter;
    int arrived;
    _Atomic int failures;
    _Atomic int index_seen;
} threads_shared;

static bool
all_arrived(void *arg)
{
    const threads_shared *t = arg;
    return t->arrived == THREADS;
}

/* Lock-taking calls use MP_FOREVER: a deadline goes through pthread_mutex_clocklock, which
 * ThreadSanitizer does not intercept, so it would miss those acquisitions. */
static void *
thread_body(void *arg)
{
    threads_shared *t = arg;
    int fails = 0;
    int idx = mp_barrier_wait(t->bar, MP_FOREVER);
    if (idx >= 0 && idx < THREADS)
        atomic_fetch_or(&t->index_seen, 1 << idx);
    else
        fails++;
    for (int i = 0; i < THREAD_ITERS; i++) {
        fails += mp_lock_acquire(t->lock, MP_FOREVER) != 0;
        t->counter++;
        fails += mp_lock_release(t->lock) != 0;
        fails += mp_lock_acquire(t->rlock, MP_FOREVER) != 0;
        fails += mp_lock_acquire(t->rlock, MP_FOREVER) != 0;
        t->rcounter++;
        fails += mp_lock_release(t->rlock) != 0;
        fails += mp_lock_release(t->rlock) != 0;
        fails += mp_semaphore_acquire(t->sem, 10000) != 0;
        fails += mp_semaphore_release(t->sem) != 0;
    }
    fails += mp_condition_acquire(t->cond, MP_FOREVER) != 0;
    t->arrived++;
    fails += mp_condition_notify_all(t->cond) != 0;
    fails += mp_condition_wait_for(t->cond, all_arrived, t, 10000) != 0;
    fails += mp_condition_release(t->cond) != 0;
    fails += mp_event_wait(t->ev, 10000) != 0;
    atomic_fetch_add(&t->failures, fails);
    return NULL;
}

static void
test_every_primitive_works_between_threads_of_one_process(void **state)
{
    (void)state;
    threads_shared t = {0};
    assert_int_equal(mp_lock_open(&t.lock, NULL), 0);
    assert_int_equal(mp_rlock_open(&t.rlock), 0);
    assert_int_equal(mp_semaphore_open(&t.sem, 2, &(mp_semaphore_opts){.bounded = true}), 0);
    assert_int_equal(mp_condition_open(&t.cond, NULL), 0);
    assert_int_equal(mp_event_open(&t.ev), 0);
    assert_int_equal(mp_barrier_open(&t.bar, THREADS, NULL), 0);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, thread_body, &t), 0);
    assert_int_equal(mp_event_set(t.ev), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(atomic_load(&t.failures), 0);
    assert_int_equal(t.counter, (long)THREADS * THREAD_ITERS);
    assert_int_equal(t.rcounter, (long)THREADS * THREAD_ITERS);
    assert_int_equal(atomic_load(&t.index_seen), (1 << THREADS) - 1);
    assert_int_equal(mp_semaphore_get_value(t.sem), 2);
    mp_lock_close(t.lock);
    mp_lock_close(t.rlock);
    mp_semaphore_close(t.sem);
    mp_condition_close(t.cond);
    mp_event_close(t.ev);
    mp_barrier_close(t.bar);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lock_acquire_times_out_while_another_process_holds_it),
        cmocka_unit_test(test_rlock_counts_recursion_per_process_and_thread),
        cmocka_unit_test(test_lock_killed_owner_hands_over_with_ownerdead),
        cmocka_unit_test(test_lock_protects_a_counter_incremented_by_four_processes),
        cmocka_unit_test(test_lock_hundred_thousand_open_in_a_few_mappings),
        cmocka_unit_test(test_only_the_creator_frees_and_stale_handles_get_ebadf),
        cmocka_unit_test(test_arena_fails_cleanly_and_only_frees_its_own_blocks),
        cmocka_unit_test(test_objects_built_in_place_work_across_processes),
        cmocka_unit_test(test_objects_in_a_segment_mapped_at_another_address_work),
        cmocka_unit_test(test_semaphore_counts_times_out_and_is_released_by_anyone),
        cmocka_unit_test(test_bounded_semaphore_refuses_over_release),
        cmocka_unit_test(test_semaphore_waiter_killed_while_waiting_leaves_it_usable),
        cmocka_unit_test(test_condition_wait_and_notify_need_the_lock_and_time_out),
        cmocka_unit_test(test_condition_wait_for_exchanges_with_another_process),
        cmocka_unit_test(test_condition_notify_wakes_n_and_notify_all_wakes_everyone),
        cmocka_unit_test(test_condition_waiter_killed_while_waiting_leaves_it_usable),
        cmocka_unit_test(test_event_set_wakes_waiters_and_wait_times_out),
        cmocka_unit_test(test_barrier_releases_all_with_distinct_indices_after_the_action),
        cmocka_unit_test(test_barrier_breaks_on_timeout_abort_and_reset),
        cmocka_unit_test(test_barrier_failing_action_breaks_it),
        cmocka_unit_test(test_barrier_party_killed_while_waiting_still_counts),
        cmocka_unit_test(test_barrier_killed_while_running_the_action_breaks_at_the_timeout),
        cmocka_unit_test(test_waits_return_eintr_when_a_signal_handler_runs),
        cmocka_unit_test(test_random_kills_never_lose_a_notification_or_a_lock),
        cmocka_unit_test(test_every_primitive_works_between_threads_of_one_process),
    };
    return th_run_tests(tests);
}
