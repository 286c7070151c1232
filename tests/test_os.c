/*
 * test_os.c - the internal foundations: deadlines, futex words, robust mutexes, shared segments,
 * fault points and the failing allocator.
 */
#define _GNU_SOURCE
#include "helpers.h"
#include "internal.h"

#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

static void
test_deadline_rejects_bad_timeouts_and_counts_down(void **state)
{
    (void)state;
    mp__deadline dl;
    assert_int_equal(mp__deadline_init(&dl, -2), -EINVAL);
    assert_int_equal(mp__deadline_init(&dl, MP_FOREVER), 0);
    assert_true(mp__deadline_forever(&dl));
    assert_int_equal(mp__deadline_remaining_ms(&dl), -1);
    assert_false(mp__deadline_passed(&dl));
    assert_int_equal(mp__deadline_init(&dl, MP_NOWAIT), 0);
    assert_true(mp__deadline_passed(&dl));
    assert_int_equal(mp__deadline_remaining_ms(&dl), 0);
    assert_int_equal(mp__deadline_init(&dl, 5000), 0);
    int left = mp__deadline_remaining_ms(&dl);
    assert_true(left > 4000 && left <= 5000);
}

static void
test_futex_wait_times_out_at_the_deadline(void **state)
{
    (void)state;
    _Atomic uint32_t word = 0;
    mp__deadline dl;
    mp__deadline_init(&dl, 100);
    int64_t t0 = th_now_ms();
    assert_int_equal(mp__futex_wait(&word, 0, &dl), -ETIMEDOUT);
    int64_t dt = th_now_ms() - t0;
    assert_true(dt >= 95 && dt < 3000);
    /* A value that already differs returns at once. */
    assert_int_equal(mp__futex_wait(&word, 1, NULL), 0);
}

struct futex_shared {
    _Atomic uint32_t word;
    th_barrier *b;
};

static int
futex_waker(void *arg)
{
    struct futex_shared *s = arg;
    CHILD_CHECK(th_barrier_wait(s->b) == 0);
    atomic_store(&s->word, 1);
    mp__futex_wake(&s->word, INT32_MAX);
    return 0;
}

static void
test_futex_wakes_a_waiter_in_another_process(void **state)
{
    (void)state;
    struct futex_shared *s = th_shared(sizeof *s);
    s->b = th_barrier_new(2);
    pid_t c = th_fork(futex_waker, s);
    assert_true(c > 0);
    assert_int_equal(th_barrier_wait(s->b), 0);
    mp__deadline dl;
    mp__deadline_init(&dl, 10000);
    while (atomic_load(&s->word) == 0)
        assert_int_equal(mp__futex_wait(&s->word, 0, &dl), 0);
    assert_child_ok(c);
    th_barrier_free(s->b);
    th_shared_free(s, sizeof *s);
}

struct mutex_shared {
    pthread_mutex_t m;
    int guarded;
};

static int
die_holding_mutex(void *arg)
{
    struct mutex_shared *s = arg;
    CHILD_CHECK(mp__mutex_lock(&s->m, NULL) == 0);
    s->guarded = 42;
    mp__fault("test.mutex.held"); /* armed: SIGKILLs this child here */
    return 3;                     /* reached only if the fault point did not fire */
}

static void
test_robust_mutex_reports_owner_death_at_a_fault_point(void **state)
{
    (void)state;
    if (!mp__fault_enabled())
        skip();
    struct mutex_shared *s = th_shared(sizeof *s);
    assert_int_equal(mp__mutex_init(&s->m), 0);
    assert_int_equal(mp__fault_arm("test.mutex.held", 1, NULL, NULL), 0);
    pid_t c = th_fork(die_holding_mutex, s);
    mp__fault_disarm();
    assert_true(c > 0);
    int st = th_wait(c, 10000);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGKILL);

    mp__deadline dl;
    mp__deadline_init(&dl, 1000);
    assert_int_equal(mp__mutex_lock(&s->m, &dl), MP_OWNERDEAD);
    assert_int_equal(s->guarded, 42);
    assert_int_equal(mp__mutex_consistent(&s->m), 0);
    assert_int_equal(mp__mutex_unlock(&s->m), 0);
    assert_int_equal(mp__mutex_lock(&s->m, &dl), 0);
    assert_int_equal(mp__mutex_lock(&s->m, &dl), -EDEADLK);
    assert_int_equal(mp__mutex_unlock(&s->m), 0);
#if !defined(MP__TSAN) /* TSan reports the deliberate misuse itself */
    assert_int_equal(mp__mutex_unlock(&s->m), -EPERM);
#endif
    pthread_mutex_destroy(&s->m);
    th_shared_free(s, sizeof *s);
}

static int
hold_mutex_until_released(void *arg)
{
    struct mutex_shared *s = arg;
    CHILD_CHECK(mp__mutex_lock(&s->m, NULL) == 0);
    __atomic_store_n(&s->guarded, 1, __ATOMIC_SEQ_CST);
    mp__futex_wake((_Atomic uint32_t *)&s->guarded, 1);
    while (__atomic_load_n(&s->guarded, __ATOMIC_SEQ_CST) != 2)
        mp__futex_wait((_Atomic uint32_t *)&s->guarded, 1, NULL);
    CHILD_CHECK(mp__mutex_unlock(&s->m) == 0);
    return 0;
}

static void
test_robust_mutex_lock_times_out_when_held(void **state)
{
    (void)state;
    struct mutex_shared *s = th_shared(sizeof *s);
    assert_int_equal(mp__mutex_init(&s->m), 0);
    pid_t c = th_fork(hold_mutex_until_released, s);
    assert_true(c > 0);
    mp__deadline wait_held;
    mp__deadline_init(&wait_held, 10000);
    while (__atomic_load_n(&s->guarded, __ATOMIC_SEQ_CST) == 0)
        assert_int_equal(mp__futex_wait((_Atomic uint32_t *)&s->guarded, 0, &wait_held), 0);
    mp__deadline dl;
    mp__deadline_init(&dl, 100);
    int64_t t0 = th_now_ms();
    assert_int_equal(mp__mutex_lock(&s->m, &dl), -ETIMEDOUT);
    int64_t dt = th_now_ms() - t0;
    assert_true(dt >= 95 && dt < 3000);
    __atomic_store_n(&s->guarded, 2, __ATOMIC_SEQ_CST);
    mp__futex_wake((_Atomic uint32_t *)&s->guarded, 1);
    assert_child_ok(c);
    pthread_mutex_destroy(&s->m);
    th_shared_free(s, sizeof *s);
}

static int
seg_child_writes(void *arg)
{
    mp__seg *seg = arg;
    memcpy(seg->addr, "from child", 11);
    return 0;
}

static void
test_anonymous_segment_is_shared_with_children_and_has_no_name(void **state)
{
    (void)state;
    mp__seg seg;
    assert_int_equal(mp__seg_create(&seg, NULL, 1 << 20), 0);
    assert_true(seg.fd >= 0);
    assert_int_equal(((char *)seg.addr)[12345], 0);
    pid_t c = th_fork(seg_child_writes, &seg);
    assert_child_ok(c);
    assert_string_equal(seg.addr, "from child");
    mp__seg_close(&seg);
    assert_int_equal(seg.fd, -1);
    mp__seg_close(&seg); /* closing twice is harmless */
    assert_int_equal(mp__seg_create(&seg, NULL, 0), -EINVAL);
}

static void
test_named_segment_attaches_and_refuses_duplicates(void **state)
{
    (void)state;
    char name[64];
    snprintf(name, sizeof name, "/mpipc-test-os-%d", (int)getpid());
    mp__seg a, b, dup;
    assert_int_equal(mp__seg_create(&a, name, 8192), 0);
    assert_int_equal(mp__seg_create(&dup, name, 8192), -EEXIST);
    assert_int_equal(mp__seg_attach(&b, name), 0);
    assert_int_equal(b.size, 8192);
    memcpy(a.addr, "shared", 7);
    assert_string_equal(b.addr, "shared");
    mp__seg_close(&b);
    mp__seg_close(&a);
    assert_int_equal(shm_unlink(name), 0);
    assert_int_equal(mp__seg_attach(&b, name), -ENOENT);
}

static void
test_segment_larger_than_dev_shm_fails_with_enospc_and_leaves_nothing(void **state)
{
    (void)state;
    struct statvfs sv;
    assert_int_equal(statvfs("/dev/shm", &sv), 0);
    size_t total = (size_t)sv.f_blocks * sv.f_frsize;
    char name[64];
    snprintf(name, sizeof name, "/mpipc-test-full-%d", (int)getpid());
    mp__seg seg;
    assert_int_equal(mp__seg_create(&seg, name, total + ((size_t)1 << 30)), -ENOSPC);
    assert_int_equal(mp__seg_attach(&seg, name), -ENOENT); /* nothing half-created */
}

static void
test_allocator_fails_on_request(void **state)
{
    (void)state;
    mp__alloc_fail_after(1);
    void *a = mp__malloc(8);
    void *b = mp__malloc(8);
    void *c = mp__malloc(8);
    mp__alloc_fail_after(-1);
    assert_non_null(a);
    assert_null(b);
    assert_non_null(c); /* one failure, then normal again */
    mp__free(a);
    mp__free(c);
}

static int fault_calls;

static void
count_fault(const char *point, void *arg)
{
    assert_string_equal(point, "test.counted");
    (void)arg;
    fault_calls++;
}

static void
test_fault_point_fires_on_its_nth_hit_only(void **state)
{
    (void)state;
    if (!mp__fault_enabled())
        skip();
    assert_int_equal(mp__fault_arm("test.counted", 3, count_fault, NULL), 0);
    for (int i = 0; i < 5; i++) {
        mp__fault("test.other");
        mp__fault("test.counted");
    }
    assert_int_equal(fault_calls, 1);
    mp__fault_disarm();
    assert_int_equal(mp__fault_arm(NULL, 1, NULL, NULL), -EINVAL);
}

static void
test_random_bytes_are_not_constant(void **state)
{
    (void)state;
    unsigned char a[32] = {0}, b[32] = {0};
    assert_int_equal(mp__random_bytes(a, sizeof a), 0);
    assert_int_equal(mp__random_bytes(b, sizeof b), 0);
    assert_memory_not_equal(a, b, sizeof a);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deadline_rejects_bad_timeouts_and_counts_down),
        cmocka_unit_test(test_futex_wait_times_out_at_the_deadline),
        cmocka_unit_test(test_futex_wakes_a_waiter_in_another_process),
        cmocka_unit_test(test_robust_mutex_reports_owner_death_at_a_fault_point),
        cmocka_unit_test(test_robust_mutex_lock_times_out_when_held),
        cmocka_unit_test(test_anonymous_segment_is_shared_with_children_and_has_no_name),
        cmocka_unit_test(test_named_segment_attaches_and_refuses_duplicates),
        cmocka_unit_test(test_segment_larger_than_dev_shm_fails_with_enospc_and_leaves_nothing),
        cmocka_unit_test(test_allocator_fails_on_request),
        cmocka_unit_test(test_fault_point_fires_on_its_nth_hit_only),
        cmocka_unit_test(test_random_bytes_are_not_constant),
    };
    return th_run_tests(tests);
}
