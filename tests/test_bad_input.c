/*
 * test_bad_input.c - the bad-input table: every public function called with NULL handles, NULL
 * out-parameters, bad sizes, bad typecodes, bad names and bad timeouts returns its documented
 * error and changes nothing. docs/errors.md lists the same cases.
 *
 * Each CASE evaluates one call and compares its result with the expected one; a mismatch is
 * reported with the call's text, and the test fails at the end, so one run shows every
 * mismatch at once.
 */
#define _GNU_SOURCE
#include "helpers.h"
#include "internal.h"

#include <errno.h>
#include <string.h>

static int mismatches;

static void
check_case(const char *what, long got, long want, int line)
{
    if (got != want) {
        fprintf(stderr, "test_bad_input.c:%d: %s returned %ld, want %ld (%s)\n", line, what, got,
                want, mp_strerror((int)want));
        mismatches++;
    }
}

#define CASE(call, want) check_case(#call, (long)(call), (long)(want), __LINE__)
#define NULL_CASE(call) check_case(#call, (long)((call) != NULL), 0, __LINE__)

static int
nothing(void *arg)
{
    (void)arg;
    return 0;
}

static bool
never(void *arg)
{
    (void)arg;
    return false;
}

static void
test_null_handles_are_einval(void **state)
{
    (void)state;
    int i = 0;
    size_t n = 0;
    int64_t x = 0;
    void *p = NULL;
    char buf[8];
    mismatches = 0;

    /* process */
    CASE(mp_process_open(NULL, nothing, NULL, NULL), -EINVAL);
    CASE(mp_process_start(NULL), -EINVAL);
    CASE(mp_process_join(NULL, 0), -EINVAL);
    CASE(mp_process_is_alive(NULL), -EINVAL);
    CASE(mp_process_exitcode(NULL, &i), -EINVAL);
    CASE(mp_process_terminate(NULL), -EINVAL);
    CASE(mp_process_kill(NULL), -EINVAL);
    CASE(mp_process_pid(NULL), -EINVAL);
    CASE(strcmp(mp_process_name(NULL), ""), 0);
    CASE(mp_process_sentinel(NULL), -EINVAL);
    CASE(mp_process_close(NULL), 0);
    CASE(mp_active_children(NULL, 1), -EINVAL);

    /* sync */
    CASE(mp_lock_open(NULL, NULL), -EINVAL);
    CASE(mp_rlock_open(NULL), -EINVAL);
    CASE(mp_lock_acquire(NULL, 0), -EINVAL);
    CASE(mp_lock_release(NULL), -EINVAL);
    CASE(mp_semaphore_open(NULL, 1, NULL), -EINVAL);
    CASE(mp_semaphore_acquire(NULL, 0), -EINVAL);
    CASE(mp_semaphore_release(NULL), -EINVAL);
    CASE(mp_semaphore_get_value(NULL), -EINVAL);
    CASE(mp_condition_open(NULL, NULL), -EINVAL);
    CASE(mp_condition_acquire(NULL, 0), -EINVAL);
    CASE(mp_condition_release(NULL), -EINVAL);
    CASE(mp_condition_wait(NULL, 0), -EINVAL);
    CASE(mp_condition_wait_for(NULL, never, NULL, 0), -EINVAL);
    CASE(mp_condition_notify(NULL, 1), -EINVAL);
    CASE(mp_condition_notify_all(NULL), -EINVAL);
    CASE(mp_event_open(NULL), -EINVAL);
    CASE(mp_event_set(NULL), -EINVAL);
    CASE(mp_event_clear(NULL), -EINVAL);
    CASE(mp_event_is_set(NULL), -EINVAL);
    CASE(mp_event_wait(NULL, 0), -EINVAL);
    CASE(mp_barrier_open(NULL, 2, NULL), -EINVAL);
    CASE(mp_barrier_wait(NULL, 0), -EINVAL);
    CASE(mp_barrier_reset(NULL), -EINVAL);
    CASE(mp_barrier_abort(NULL), -EINVAL);
    CASE(mp_barrier_parties(NULL), -EINVAL);
    CASE(mp_barrier_n_waiting(NULL), -EINVAL);
    CASE(mp_barrier_broken(NULL), -EINVAL);

    /* pipe, connection, listener */
    mp_conn *c = NULL;
    CASE(mp_pipe_open(NULL, &c, true), -EINVAL);
    CASE(mp_pipe_open(&c, NULL, true), -EINVAL);
    CASE(mp_conn_open(NULL, 0, true, true), -EINVAL);
    CASE(mp_conn_fileno(NULL), -EINVAL);
    CASE(mp_conn_readable(NULL), false);
    CASE(mp_conn_writable(NULL), false);
    CASE(mp_conn_send_bytes(NULL, "x", 1, 0), -EINVAL);
    CASE(mp_conn_recv_bytes(NULL, &p, &n, 0, 0), -EINVAL);
    CASE(mp_conn_recv_bytes_into(NULL, buf, sizeof buf, &n, 0), -EINVAL);
    CASE(mp_conn_poll(NULL, 0), -EINVAL);
    CASE(mp_conn_wait(NULL, 1, NULL, 0), -EINVAL);
    CASE(mp_conn_send_handle(NULL, 0, 0), -EINVAL);
    CASE(mp_conn_recv_handle(NULL, &i, 0), -EINVAL);
    CASE(mp_conn_send_conn(NULL, NULL, 0), -EINVAL);
    CASE(mp_conn_recv_conn(NULL, &c, 0), -EINVAL);
    CASE(mp_listener_open(NULL, "127.0.0.1:0", NULL), -EINVAL);
    CASE(mp_listener_accept(NULL, &c, 0), -EINVAL);
    NULL_CASE(mp_listener_address(NULL));
    CASE(mp_listener_fileno(NULL), -EINVAL);
    CASE(mp_client_connect(NULL, "127.0.0.1:1", NULL, 0), -EINVAL);

    /* queue */
    CASE(mp_queue_open(NULL, NULL), -EINVAL);
    CASE(mp_queue_put(NULL, "x", 1, 0), -EINVAL);
    CASE(mp_queue_get(NULL, buf, sizeof buf, &n, 0), -EINVAL);
    CASE(mp_queue_get_alloc(NULL, &p, &n, 0), -EINVAL);
    CASE(mp_queue_qsize(NULL), -EINVAL);
    CASE(mp_queue_empty(NULL), -EINVAL);
    CASE(mp_queue_full(NULL), -EINVAL);
    CASE(mp_queue_task_done(NULL), -EINVAL);
    CASE(mp_queue_join(NULL, 0), -EINVAL);

    /* value, array */
    CASE(mp_value_open(NULL, 'i', NULL), -EINVAL);
    CASE(mp_value_get(NULL, &i, sizeof i), -EINVAL);
    CASE(mp_value_set(NULL, &i, sizeof i), -EINVAL);
    CASE(mp_value_fetch_add(NULL, 1, &x), -EINVAL);
    CASE(mp_value_exchange(NULL, 1, &x), -EINVAL);
    CASE(mp_value_compare_exchange(NULL, &x, 1), -EINVAL);
    NULL_CASE(mp_value_get_lock(NULL));
    NULL_CASE(mp_value_ptr(NULL));
    CASE(mp_array_open(NULL, 'i', 1, NULL), -EINVAL);
    CASE(mp_array_len(NULL), 0);
    CASE(mp_array_get(NULL, 0, &i, sizeof i), -EINVAL);
    CASE(mp_array_set(NULL, 0, &i, sizeof i), -EINVAL);
    CASE(mp_array_get_slice(NULL, 0, 1, buf, sizeof buf), -EINVAL);
    CASE(mp_array_set_slice(NULL, 0, 1, buf, sizeof buf), -EINVAL);
    CASE(mp_array_get_string(NULL, buf, sizeof buf), -EINVAL);
    CASE(mp_array_set_string(NULL, "x", 1), -EINVAL);
    CASE(mp_array_fetch_add(NULL, 0, 1, &x), -EINVAL);
    CASE(mp_array_exchange(NULL, 0, 1, &x), -EINVAL);
    CASE(mp_array_compare_exchange(NULL, 0, &x, 1), -EINVAL);
    NULL_CASE(mp_array_get_lock(NULL));
    NULL_CASE(mp_array_ptr(NULL));

    /* shared memory */
    CASE(mp_shm_open(NULL, &(mp_shm_opts){.create = true, .size = 1}), -EINVAL);
    NULL_CASE(mp_shm_buf(NULL));
    CASE(mp_shm_size(NULL), 0);
    CASE(strcmp(mp_shm_name(NULL), ""), 0);
    CASE(mp_shm_unlink(NULL), -EINVAL);
    CASE(mp_shlist_open(NULL, &(mp_shm_opts){.create = true}, NULL, 0), -EINVAL);
    CASE(mp_shlist_len(NULL), 0);
    mp_shlist_item it;
    CASE(mp_shlist_get(NULL, 0, &it, buf, sizeof buf), -EINVAL);
    CASE(mp_shlist_set(NULL, 0, &it), -EINVAL);
    CASE(mp_shlist_count(NULL, &it), -EINVAL);
    CASE(mp_shlist_index(NULL, &it), -EINVAL);
    CASE(mp_shlist_format(NULL, buf, sizeof buf), -EINVAL);
    NULL_CASE(mp_shlist_shm(NULL));

    /* manager */
    mp_item item = mp_item_int(1), out;
    mp_item *items = NULL;
    char *text = NULL;
    CASE(mp_item_repr(NULL, &text), -EINVAL);
    CASE(mp_manager_open(NULL, NULL), -EINVAL);
    CASE(mp_manager_shutdown(NULL), -EINVAL);
    CASE(strcmp(mp_manager_name(NULL), ""), 0);
    CASE(mp_manager_pid(NULL), -EINVAL);
    mp_manager_connect_opts copts = {.client = {.authkey = "k", .authkey_len = 1}};
    mp_manager *conn = (mp_manager *)&copts; /* each failure must leave it NULL */
    CASE(mp_manager_connect(NULL, "127.0.0.1:1", &copts), -EINVAL);
    CASE(mp_manager_connect(&conn, NULL, &copts), -EINVAL);
    CASE(conn == NULL, 1);
    conn = (mp_manager *)&copts;
    CASE(mp_manager_connect(&conn, "127.0.0.1:1", NULL), -EINVAL);
    CASE(conn == NULL, 1);
    conn = (mp_manager *)&copts;
    CASE(mp_manager_connect(&conn, "127.0.0.1:1", &(mp_manager_connect_opts){0}), -EINVAL);
    CASE(conn == NULL, 1);
    conn = (mp_manager *)&copts;
    CASE(mp_manager_connect(&conn, "127.0.0.1:1",
                            &(mp_manager_connect_opts){.client = copts.client, .timeout_ms = -5}),
         -EINVAL);
    CASE(conn == NULL, 1);
    CASE(mp_list_open(NULL, NULL, NULL, 0), -EINVAL);
    CASE(mp_list_len(NULL), -EINVAL);
    CASE(mp_list_get(NULL, 0, &out), -EINVAL);
    CASE(mp_list_set(NULL, 0, &item), -EINVAL);
    CASE(mp_list_del(NULL, 0), -EINVAL);
    CASE(mp_list_slice(NULL, 0, 1, 1, &items, &n), -EINVAL);
    CASE(mp_list_set_slice(NULL, 0, 1, &item, 1), -EINVAL);
    CASE(mp_list_del_slice(NULL, 0, 1, 1), -EINVAL);
    CASE(mp_list_append(NULL, &item), -EINVAL);
    CASE(mp_list_extend(NULL, &item, 1), -EINVAL);
    CASE(mp_list_insert(NULL, 0, &item), -EINVAL);
    CASE(mp_list_pop(NULL, -1, &out), -EINVAL);
    CASE(mp_list_remove(NULL, &item), -EINVAL);
    CASE(mp_list_index(NULL, &item), -EINVAL);
    CASE(mp_list_count(NULL, &item), -EINVAL);
    CASE(mp_list_contains(NULL, &item), -EINVAL);
    CASE(mp_list_reverse(NULL), -EINVAL);
    CASE(mp_list_clear(NULL), -EINVAL);
    CASE(mp_list_sort(NULL, false), -EINVAL);
    CASE(mp_list_repr(NULL, &text), -EINVAL);
    CASE(mp_dict_open(NULL, NULL), -EINVAL);
    CASE(mp_dict_len(NULL), -EINVAL);
    CASE(mp_dict_get(NULL, &item, NULL, &out), -EINVAL);
    CASE(mp_dict_set(NULL, &item, &item), -EINVAL);
    CASE(mp_dict_del(NULL, &item), -EINVAL);
    CASE(mp_dict_contains(NULL, &item), -EINVAL);
    CASE(mp_dict_keys(NULL, &items, &n), -EINVAL);
    CASE(mp_dict_values(NULL, &items, &n), -EINVAL);
    CASE(mp_dict_items(NULL, &items, &items, &n), -EINVAL);
    CASE(mp_dict_update(NULL, &item, &item, 1), -EINVAL);
    CASE(mp_dict_pop(NULL, &item, NULL, &out), -EINVAL);
    CASE(mp_dict_popitem(NULL, &out, &out), -EINVAL);
    CASE(mp_dict_setdefault(NULL, &item, &item, &out), -EINVAL);
    CASE(mp_dict_clear(NULL), -EINVAL);
    CASE(mp_dict_copy(NULL, NULL), -EINVAL);
    CASE(mp_dict_repr(NULL, &text), -EINVAL);
    CASE(mp_namespace_open(NULL, NULL), -EINVAL);
    CASE(mp_namespace_get(NULL, "a", &out), -EINVAL);
    CASE(mp_namespace_set(NULL, "a", &item), -EINVAL);
    CASE(mp_namespace_del(NULL, "a"), -EINVAL);
    CASE(mp_namespace_repr(NULL, &text), -EINVAL);

    /* Every close accepts NULL, as free() does. */
    mp_lock_close(NULL);
    mp_semaphore_close(NULL);
    mp_condition_close(NULL);
    mp_event_close(NULL);
    mp_barrier_close(NULL);
    mp_conn_close(NULL);
    mp_listener_close(NULL);
    mp_queue_close(NULL);
    mp_value_close(NULL);
    mp_array_close(NULL);
    mp_shm_close(NULL);
    mp_shlist_close(NULL);
    mp_manager_close(NULL);
    mp_list_close(NULL);
    mp_dict_close(NULL);
    mp_namespace_close(NULL);
    mp_items_free(NULL, 0);
    mp_item_clear(NULL);
    mp_free(NULL);
    assert_int_equal(mismatches, 0);
}

/* Bad timeouts (below MP_FOREVER) are -EINVAL on every waiting call, and nothing happens: the
 * lock stays free, the queue keeps its message, the semaphore its unit. */
static void
test_bad_timeouts_are_einval_and_change_nothing(void **state)
{
    (void)state;
    mismatches = 0;
    mp_lock *l;
    mp_semaphore *s;
    mp_event *e;
    mp_queue *q;
    mp_condition *cv;
    mp_barrier *b;
    mp_conn *a, *z;
    assert_int_equal(mp_lock_open(&l, NULL), 0);
    assert_int_equal(mp_semaphore_open(&s, 1, NULL), 0);
    assert_int_equal(mp_event_open(&e), 0);
    assert_int_equal(mp_queue_open(&q, NULL), 0);
    assert_int_equal(mp_condition_open(&cv, NULL), 0);
    assert_int_equal(mp_barrier_open(&b, 2, NULL), 0);
    assert_int_equal(mp_pipe_open(&a, &z, true), 0);
    assert_int_equal(mp_queue_put(q, "m", 1, MP_NOWAIT), 0);
    char buf[4];
    size_t n = 0;
    void *p = NULL;
    int i = 0;

    for (int t = -2; t >= -1000; t *= 10) {
        CASE(mp_lock_acquire(l, t), -EINVAL);
        CASE(mp_semaphore_acquire(s, t), -EINVAL);
        CASE(mp_event_wait(e, t), -EINVAL);
        CASE(mp_queue_put(q, "x", 1, t), -EINVAL);
        CASE(mp_queue_get(q, buf, sizeof buf, &n, t), -EINVAL);
        CASE(mp_queue_get_alloc(q, &p, &n, t), -EINVAL);
        CASE(mp_queue_join(q, t), -EINVAL);
        CASE(mp_condition_acquire(cv, t), -EINVAL);
        CASE(mp_barrier_wait(b, t), -EINVAL);
        CASE(mp_conn_send_bytes(a, "x", 1, t), -EINVAL);
        CASE(mp_conn_recv_bytes_into(z, buf, sizeof buf, &n, t), -EINVAL);
        CASE(mp_conn_poll(z, t), -EINVAL);
        CASE(mp_conn_recv_handle(z, &i, t), -EINVAL);
    }
    /* Nothing changed. */
    CASE(mp_lock_acquire(l, MP_NOWAIT), 0);
    CASE(mp_lock_release(l), 0);
    CASE(mp_semaphore_get_value(s), 1);
    CASE(mp_event_is_set(e), 0);
    CASE(mp_queue_qsize(q), 1);
    CASE(mp_barrier_n_waiting(b), 0);
    CASE(mp_barrier_broken(b), 0);
    CASE(mp_conn_poll(z, MP_NOWAIT), 0);

    mp_conn_close(a);
    mp_conn_close(z);
    mp_barrier_close(b);
    mp_condition_close(cv);
    mp_queue_close(q);
    mp_event_close(e);
    mp_semaphore_close(s);
    mp_lock_close(l);
    assert_int_equal(mismatches, 0);
}

/* Bad sizes, typecodes, indexes and names: clear errors, no object created, nothing written. */
static void
test_bad_sizes_typecodes_and_names_are_refused(void **state)
{
    (void)state;
    mismatches = 0;
    mp_value *v = NULL;
    mp_array *arr = NULL;
    mp_shm *shm = NULL;
    mp_queue *q = NULL;
    mp_barrier *b = NULL;

    CASE(mp_value_open(&v, 'Z', NULL), MP_ETYPE);
    CASE(mp_value_open(&v, 'i', &(mp_value_opts){.size = 3}), -EINVAL);
    CASE(mp_value_open(&v, 0, NULL), -EINVAL);
    CASE(mp_array_open(&arr, 'Z', 4, NULL), MP_ETYPE);
    CASE(v == NULL && arr == NULL, 1);
    CASE(mp_barrier_open(&b, 0, NULL), -EINVAL);
    CASE(b == NULL, 1);
    CASE(mp_queue_open(&q, &(mp_queue_opts){.maxsize = (size_t)1 << 40}), -EINVAL);
    CASE(mp_queue_open(&q, &(mp_queue_opts){.capacity = (size_t)1 << 40}), -EINVAL);
    CASE(q == NULL, 1);
    CASE(mp_shm_open(&shm, &(mp_shm_opts){.create = true, .size = 0}), -EINVAL);
    CASE(mp_shm_open(&shm, &(mp_shm_opts){.name = "", .create = true, .size = 8}), -EINVAL);
    CASE(mp_shm_open(&shm, &(mp_shm_opts){.name = "a/b", .create = true, .size = 8}), -EINVAL);
    CASE(mp_shm_open(&shm, &(mp_shm_opts){.name = "mpipc-test-no-such-segment"}), -ENOENT);
    CASE(shm == NULL, 1);

    /* A live value and array: wrong sizes and indexes write nothing. */
    int32_t init = 7, got = 0;
    assert_int_equal(mp_value_open(&v, 'i', &(mp_value_opts){.init = &init}), 0);
    int64_t wide = 1;
    CASE(mp_value_set(v, &wide, sizeof wide), MP_ETYPE);
    CASE(mp_value_get(v, &got, sizeof got), 0);
    CASE(got, 7);
    assert_int_equal(mp_array_open(&arr, 'i', 4, NULL), 0);
    CASE(mp_array_set(arr, 4, &init, sizeof init), -ERANGE);
    CASE(mp_array_set(arr, -5, &init, sizeof init), -ERANGE);
    int32_t three[3] = {1, 2, 3};
    CASE(mp_array_set_slice(arr, 0, 2, three, sizeof three), -EINVAL);
    int32_t all[4] = {9, 9, 9, 9};
    CASE(mp_array_get_slice(arr, 0, 4, all, sizeof all), 4);
    CASE(all[0] | all[1] | all[2] | all[3], 0);
    mp_array_close(arr);
    mp_value_close(v);
    assert_int_equal(mismatches, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_null_handles_are_einval),
        cmocka_unit_test(test_bad_timeouts_are_einval_and_change_nothing),
        cmocka_unit_test(test_bad_sizes_typecodes_and_names_are_refused),
    };
    return th_run_tests(tests);
}
