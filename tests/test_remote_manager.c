/*
 * test_remote_manager.c - the manager served in CPython's manager protocol: unmodified Python
 * clients (every python3 found, over TCP on 127.0.0.1 and over AF_UNIX) against the C manager,
 * sharing containers with C processes; wrong keys; malformed, hostile and stalled requests.
 */
#define _GNU_SOURCE
#include "helpers.h"
#include "internal.h"
#include "pickle.h"
#include "python_peer.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEY "remote manager test key"

static const mp_listener_opts key_opts = {.authkey = KEY, .authkey_len = sizeof KEY - 1};
static char unix_path[128];

static void
open_served(mp_manager **m, const char *address)
{
    mp_manager_opts o = {.address = address, .listener = &key_opts};
    int r = mp_manager_open(m, &o);
    if (r != 0)
        print_error("mp_manager_open(%s): %s\n", address, mp_strerror(r));
    assert_int_equal(r, 0);
    assert_non_null(mp_manager_address(*m));
}

static const char *
unix_address(void)
{
    snprintf(unix_path, sizeof unix_path, "/tmp/mpipc-remote-test-%d.sock", (int)getpid());
    return unix_path;
}

/* ---- a raw C client: one request, its reply ----------------------------------------------------
 */

static mp_conn *
connect_key(const char *address, const char *key)
{
    mp_client_opts o = {.authkey = key, .authkey_len = strlen(key)};
    mp_conn *c = NULL;
    int r = mp_client_connect(&c, address, &o, 10000);
    assert_int_equal(r, 0);
    return c;
}

static void
send_pv(mp_conn *c, mp__pv *req)
{
    uint8_t *buf;
    size_t len;
    assert_non_null(req);
    assert_int_equal(mp__pickle_dumps(req, 4, &buf, &len), 0);
    assert_int_equal(mp_conn_send_bytes(c, buf, len, 10000), 0);
    mp__free(buf);
    mp__pv_free(req);
}

/* The reply's kind ("#RETURN", ...) is checked; the payload is returned. */
static mp__pv *
recv_reply(mp_conn *c, const char *kind)
{
    void *buf;
    size_t len;
    assert_int_equal(mp_conn_recv_bytes(c, &buf, &len, SIZE_MAX, 10000), 0);
    mp__pv *v = NULL;
    mp__unpickle_opts o = {.allow = mp__pickle_manager_globals};
    assert_int_equal(mp__pickle_loads(&v, buf, len, &o), 0);
    mp_free(buf);
    assert_int_equal(v->kind, MP__PV_TUPLE);
    assert_int_equal(mp__pv_len(v), 2);
    if (!mp__pv_is_str(mp__pv_item(v, 0), kind))
        print_error("expected %s, got %s\n", kind, mp__pv_item(v, 0)->u.s.data);
    assert_true(mp__pv_is_str(mp__pv_item(v, 0), kind));
    mp__pv *payload = mp__pv_copy(mp__pv_item(v, 1));
    mp__pv_free(v);
    return payload;
}

static mp__pv *
request(const char *ident, const char *method, mp__pv *args)
{
    return mp__pv_tuple(4, ident != NULL ? mp__pv_cstr(ident) : mp__pv_none(), mp__pv_cstr(method),
                        args, mp__pv_dict());
}

/* One control request on a new connection. */
static mp__pv *
control(const char *address, const char *method, mp__pv *args, const char *kind)
{
    mp_conn *c = connect_key(address, KEY);
    send_pv(c, request(NULL, method, args));
    mp__pv *p = recv_reply(c, kind);
    mp_conn_close(c);
    return p;
}

static void
assert_dummy_answers(const char *address)
{
    mp__pv_free(control(address, "dummy", mp__pv_tuple(0), "#RETURN"));
}

/* ---- tests without Python ---------------------------------------------------------------------
 */

static void
test_serve_needs_an_authkey_and_a_good_address(void **state)
{
    (void)state;
    mp_manager *m;
    mp_manager_opts o = {.address = "127.0.0.1:0"};
    assert_int_equal(mp_manager_open(&m, &o), -EINVAL);
    mp_listener_opts nokey = {0};
    o.listener = &nokey;
    assert_int_equal(mp_manager_open(&m, &o), -EINVAL);
    o = (mp_manager_opts){.address = "127.0.0.1:99999", .listener = &key_opts};
    assert_int_equal(mp_manager_open(&m, &o), -EINVAL);
    /* A taken address: the second manager fails and leaves nothing behind (the leak check
     * sees no segment, fd or process). */
    mp_manager *first;
    open_served(&first, unix_address());
    o = (mp_manager_opts){.address = unix_path, .listener = &key_opts};
    assert_int_equal(mp_manager_open(&m, &o), -EADDRINUSE);
    assert_dummy_answers(unix_path);
    mp_manager_close(first);
    /* Not served: no address, nothing to register. */
    assert_int_equal(mp_manager_open(&m, NULL), 0);
    assert_null(mp_manager_address(m));
    mp_list *l;
    assert_int_equal(mp_list_open(&l, m, NULL, 0), 0);
    mp_item it = mp_item_list(l);
    assert_int_equal(mp_manager_register(m, "x", &it), -EINVAL);
    mp_list_close(l);
    mp_manager_close(m);
}

static void
test_c_client_create_call_decref_over_both_transports(void **state)
{
    (void)state;
    const char *addrs[2] = {"127.0.0.1:0", unix_address()};
    for (int k = 0; k < 2; k++) {
        mp_manager *m;
        open_served(&m, addrs[k]);
        const char *a = mp_manager_address(m);
        if (k == 1)
            assert_string_equal(a, unix_path);
        assert_dummy_answers(a);
        /* create('list', [1, 'x']) -> (ident, exposed) */
        mp__pv *seq = mp__pv_list();
        assert_int_equal(mp__pv_append(seq, mp__pv_int(1)), 0);
        assert_int_equal(mp__pv_append(seq, mp__pv_cstr("x")), 0);
        mp__pv *r = control(a, "create", mp__pv_tuple(2, mp__pv_cstr("list"), seq), "#RETURN");
        assert_int_equal(mp__pv_len(r), 2);
        char ident[32];
        snprintf(ident, sizeof ident, "%s", mp__pv_item(r, 0)->u.s.data);
        assert_int_equal(mp__pv_len(mp__pv_item(r, 1)), 14);
        mp__pv_free(r);
        mp__pv *n = control(a, "number_of_objects", mp__pv_tuple(0), "#RETURN");
        assert_int_equal(n->u.i, 1);
        mp__pv_free(n);
        /* A serving connection: append, __len__, __getitem__ out of range (#ERROR). */
        mp_conn *c = connect_key(a, KEY);
        send_pv(c, request(NULL, "accept_connection", mp__pv_tuple(1, mp__pv_cstr("C"))));
        mp__pv_free(recv_reply(c, "#RETURN"));
        send_pv(c, request(ident, "append", mp__pv_tuple(1, mp__pv_float(2.5))));
        mp__pv_free(recv_reply(c, "#RETURN"));
        send_pv(c, request(ident, "__len__", mp__pv_tuple(0)));
        r = recv_reply(c, "#RETURN");
        assert_int_equal(r->kind, MP__PV_INT);
        assert_int_equal(r->u.i, 3);
        mp__pv_free(r);
        send_pv(c, request(ident, "__getitem__", mp__pv_tuple(1, mp__pv_int(7))));
        r = recv_reply(c, "#ERROR");
        assert_true(mp__pv_is_global(r, "builtins", "IndexError"));
        mp__pv_free(r);
        send_pv(c, request(ident, "clear", mp__pv_tuple(0)));
        r = recv_reply(c, "#TRACEBACK");
        assert_non_null(strstr(r->u.s.data, "not in exposed"));
        mp__pv_free(r);
        mp_conn_close(c);
        /* decref to zero forgets the ident; a second decref is a KeyError traceback. */
        mp__pv_free(control(a, "decref", mp__pv_tuple(1, mp__pv_cstr(ident)), "#RETURN"));
        mp__pv_free(control(a, "decref", mp__pv_tuple(1, mp__pv_cstr(ident)), "#TRACEBACK"));
        n = control(a, "number_of_objects", mp__pv_tuple(0), "#RETURN");
        assert_int_equal(n->u.i, 0);
        mp__pv_free(n);
        mp_manager_close(m);
        if (k == 1)
            assert_int_equal(access(unix_path, F_OK), -1); /* the path went with the manager */
    }
}

static void
test_wrong_authkey_is_refused(void **state)
{
    (void)state;
    mp_manager *m;
    open_served(&m, "127.0.0.1:0");
    mp_client_opts o = {.authkey = "not the key", .authkey_len = 11};
    mp_conn *c;
    assert_int_equal(mp_client_connect(&c, mp_manager_address(m), &o, 10000), -EACCES);
    assert_dummy_answers(mp_manager_address(m));
    mp_manager_close(m);
}

/* Random bytes, truncated and hostile pickles: each answered with #TRACEBACK (or the
 * connection closed), the server never stops answering. */
static void
test_malformed_requests_get_errors_never_a_crash(void **state)
{
    (void)state;
    mp_manager *m;
    open_served(&m, "127.0.0.1:0");
    const char *a = mp_manager_address(m);
    mp__pv *good = request(NULL, "dummy", mp__pv_tuple(0));
    uint8_t *gbuf;
    size_t glen;
    assert_int_equal(mp__pickle_dumps(good, 4, &gbuf, &glen), 0);
    mp__pv_free(good);
    unsigned seed = 12345;
    mp_conn *serving = connect_key(a, KEY);
    send_pv(serving, request(NULL, "accept_connection", mp__pv_tuple(1, mp__pv_cstr("fuzz"))));
    mp__pv_free(recv_reply(serving, "#RETURN"));
    for (int i = 0; i < 200; i++) {
        uint8_t buf[64];
        size_t len = (size_t)(rand_r(&seed) % (int)sizeof buf);
        if (i % 2 == 0) {
            /* A mutated real request. */
            len = glen;
            memcpy(buf, gbuf, glen);
            buf[rand_r(&seed) % (int)glen] = (uint8_t)rand_r(&seed);
            if (i % 4 == 0)
                len = (size_t)rand_r(&seed) % glen;
        } else {
            for (size_t j = 0; j < len; j++)
                buf[j] = (uint8_t)rand_r(&seed);
        }
        mp_conn *c = i % 3 == 0 ? serving : connect_key(a, KEY);
        assert_int_equal(mp_conn_send_bytes(c, buf, len, 10000), 0);
        void *rb;
        size_t rl;
        int r = mp_conn_recv_bytes(c, &rb, &rl, SIZE_MAX, 10000);
        assert_true(r == 0 || r == MP_EOF);
        if (r == 0) {
            mp__pv *v = NULL;
            mp__unpickle_opts o = {.allow = mp__pickle_manager_globals};
            assert_int_equal(mp__pickle_loads(&v, rb, rl, &o), 0);
            mp_free(rb);
            assert_true(mp__pv_is_str(mp__pv_item(v, 0), "#TRACEBACK") ||
                        mp__pv_is_str(mp__pv_item(v, 0), "#RETURN"));
            mp__pv_free(v);
        }
        if (c != serving)
            mp_conn_close(c);
    }
    mp__free(gbuf);
    mp_conn_close(serving);
    assert_dummy_answers(a);
    assert_int_equal(kill(mp_manager_pid(m), 0), 0);
    mp_manager_close(m);
}

/* A client that sends half a frame and stalls, or stops reading its replies, holds up no one;
 * one that dies mid-frame is dropped. Others are served meanwhile. */
static void
test_stalled_or_dead_client_does_not_stop_the_server(void **state)
{
    (void)state;
    mp_manager *m;
    open_served(&m, "127.0.0.1:0");
    const char *a = mp_manager_address(m);
    mp_conn *dead = connect_key(a, KEY);
    assert_int_equal(send(mp_conn_fileno(dead), "\x00\x00\x03\xe8xxxx", 8, MSG_NOSIGNAL), 8);
    mp_conn_close(dead);
    assert_dummy_answers(a);
    mp_conn *stalled = connect_key(a, KEY);
    assert_int_equal(send(mp_conn_fileno(stalled), "\x00\x00\x03\xe8xxxx", 8, MSG_NOSIGNAL), 8);
    /* A serving connection that asks for a 4 MiB list's value again and again, never reading. */
    mp_list *big;
    assert_int_equal(mp_list_open(&big, m, NULL, 0), 0);
    char blob[4096] = {0};
    mp_item it = mp_item_bytes(blob, sizeof blob);
    for (int i = 0; i < 1024; i++)
        assert_int_equal(mp_list_append(big, &it), 0);
    it = mp_item_list(big);
    assert_int_equal(mp_manager_register(m, "big", &it), 0);
    mp__pv *r = control(a, "create", mp__pv_tuple(1, mp__pv_cstr("big")), "#RETURN");
    char ident[32];
    snprintf(ident, sizeof ident, "%s", mp__pv_item(r, 0)->u.s.data);
    mp__pv_free(r);
    mp_conn *deaf = connect_key(a, KEY);
    send_pv(deaf, request(NULL, "accept_connection", mp__pv_tuple(1, mp__pv_cstr("deaf"))));
    mp__pv_free(recv_reply(deaf, "#RETURN"));
    for (int i = 0; i < 4; i++)
        send_pv(deaf, request(ident, "#GETVALUE", mp__pv_tuple(0)));
    for (int i = 0; i < 3; i++) {
        int64_t t0 = th_now_ms();
        assert_dummy_answers(a);
        assert_true(th_now_ms() - t0 <= 3000);
    }
    /* The stalled connection is still open (nothing was answered or closed on it). */
    assert_int_equal(mp_conn_poll(stalled, 0), 0);
    mp_conn_close(stalled);
    mp_conn_close(deaf);
    mp_list_close(big);
    assert_dummy_answers(a);
    mp_manager_close(m);
}

/* A client's shutdown request shuts the manager down, as Python's: two replies, then -EBADF. */
static void
test_client_shutdown_stops_the_manager(void **state)
{
    (void)state;
    mp_manager *m;
    open_served(&m, unix_address());
    mp_list *l;
    assert_int_equal(mp_list_open(&l, m, NULL, 0), 0);
    mp_conn *c = connect_key(mp_manager_address(m), KEY);
    send_pv(c, request(NULL, "shutdown", mp__pv_tuple(0)));
    mp__pv_free(recv_reply(c, "#RETURN"));
    mp__pv_free(recv_reply(c, "#RETURN"));
    mp_conn_close(c);
    int st = th_wait(mp_manager_pid(m), 10000);
    assert_true(WIFEXITED(st));
    assert_int_equal(mp_list_len(l), -EBADF);
    mp_list_close(l);
    assert_int_equal(mp_manager_shutdown(m), 0);
    mp_manager_close(m);
}

/* ---- tests with Python clients ----------------------------------------------------------------
 */

static void
run_peer(const char *python, const char *mode, const char *address)
{
    th_py_peer p;
    const char *args[] = {mode, address, NULL};
    th_py_start(&p, python, REMOTE_PEER_PY, args);
    char line[256];
    bool got = th_py_read_line(&p, line, sizeof line);
    th_py_finish(&p);
    assert_true(got);
    assert_string_equal(line, "ok");
}

static int
find_pythons(char py[TH_PY_MAX][PATH_MAX])
{
    int n = th_py_find(py);
    if (n == 0)
        print_message("python3 not found: skipped\n");
    return n;
}

static void
python_mode_everywhere(const char *mode)
{
    char py[TH_PY_MAX][PATH_MAX];
    int n = find_pythons(py);
    if (n == 0)
        skip();
    for (int k = 0; k < n; k++)
        for (int t = 0; t < 2; t++) {
            mp_manager *m;
            open_served(&m, t == 0 ? "127.0.0.1:0" : unix_address());
            print_message("%s %s over %s\n", py[k], mode, t == 0 ? "TCP" : "AF_UNIX");
            run_peer(py[k], mode, mp_manager_address(m));
            mp_manager_close(m);
        }
}

static void
test_python_calls_every_method_with_exact_values(void **state)
{
    (void)state;
    python_mode_everywhere("methods");
}

static void
test_python_wrong_authkey_is_refused(void **state)
{
    (void)state;
    python_mode_everywhere("badkey");
}

static void
test_python_malformed_requests_get_tracebacks(void **state)
{
    (void)state;
    python_mode_everywhere("raw");
}

#define C_WRITERS 2
#define PY_WRITERS 2
#define N_EACH 200

typedef struct writer {
    mp_list *l;
    mp_dict *d;
    int id;
} writer;

static int
c_writer(void *arg)
{
    writer *w = arg;
    for (int i = 0; i < N_EACH; i++) {
        mp_item v = mp_item_int(w->id * 100000 + i);
        CHILD_CHECK(mp_list_append(w->l, &v) == 0);
        CHILD_CHECK(mp_dict_set(w->d, &v, &v) == 0);
    }
    return 0;
}

/* Two Python clients and two C processes write the same list and dict at once; each sees
 * what the other wrote, and nothing is lost or reordered within one writer. */
static void
test_python_and_c_processes_share_containers(void **state)
{
    (void)state;
    char py[TH_PY_MAX][PATH_MAX];
    int npy = find_pythons(py);
    if (npy == 0)
        skip();
    for (int t = 0; t < 2; t++) {
        mp_manager *m;
        open_served(&m, t == 0 ? "127.0.0.1:0" : unix_address());
        mp_list *l;
        mp_dict *d;
        mp_namespace *ns;
        assert_int_equal(mp_list_open(&l, m, NULL, 0), 0);
        assert_int_equal(mp_dict_open(&d, m), 0);
        assert_int_equal(mp_namespace_open(&ns, m), 0);
        mp_item k = mp_item_str("from_c"), v = mp_item_str("hello from C"), it;
        assert_int_equal(mp_dict_set(d, &k, &v), 0);
        v = mp_item_str("C");
        assert_int_equal(mp_namespace_set(ns, "owner", &v), 0);
        it = mp_item_list(l);
        assert_int_equal(mp_manager_register(m, "get_list", &it), 0);
        it = mp_item_dict(d);
        assert_int_equal(mp_manager_register(m, "get_dict", &it), 0);
        it = mp_item_namespace(ns);
        assert_int_equal(mp_manager_register(m, "get_ns", &it), 0);
        th_py_peer p[PY_WRITERS];
        char n_each[16], line[64];
        snprintf(n_each, sizeof n_each, "%d", N_EACH);
        for (int i = 0; i < PY_WRITERS; i++) {
            const char *args[] = {"shared", mp_manager_address(m), n_each, i == 0 ? "p" : "q",
                                  NULL};
            /* Different Python versions at once where there are several. */
            th_py_start(&p[i], py[i % npy], REMOTE_PEER_PY, args);
        }
        for (int i = 0; i < PY_WRITERS; i++) {
            assert_true(th_py_read_line(&p[i], line, sizeof line));
            assert_string_equal(line, "ready");
        }
        writer w[C_WRITERS];
        pid_t pids[C_WRITERS];
        for (int i = 0; i < C_WRITERS; i++) {
            w[i] = (writer){l, d, i + 1};
            pids[i] = th_fork(c_writer, &w[i]);
        }
        for (int i = 0; i < PY_WRITERS; i++)
            assert_int_equal(write(p[i].in, "go\n", 3), 3);
        for (int i = 0; i < C_WRITERS; i++)
            assert_child_ok(pids[i]);
        for (int i = 0; i < PY_WRITERS; i++) {
            assert_true(th_py_read_line(&p[i], line, sizeof line));
            assert_string_equal(line, "ok");
            th_py_finish(&p[i]);
        }
        /* Every writer's items, each writer's in its own order. */
        mp_item *items;
        size_t n;
        assert_int_equal(mp_list_slice(l, MP_SLICE_DEFAULT, MP_SLICE_DEFAULT, 1, &items, &n), 0);
        assert_int_equal(n, (C_WRITERS + PY_WRITERS) * N_EACH);
        int next_c[C_WRITERS + 1] = {0}, next_p = 0, next_q = 0;
        for (size_t i = 0; i < n; i++) {
            if (items[i].type == MP_ITEM_INT) {
                int id = (int)(items[i].v.i / 100000);
                assert_true(id >= 1 && id <= C_WRITERS);
                assert_int_equal(items[i].v.i % 100000, next_c[id]++);
            } else {
                assert_int_equal(items[i].type, MP_ITEM_STR);
                int *next = items[i].v.s.ptr[0] == 'p' ? &next_p : &next_q;
                assert_int_equal(atoi(items[i].v.s.ptr + 1), (*next)++);
            }
        }
        assert_int_equal(next_p, N_EACH);
        assert_int_equal(next_q, N_EACH);
        mp_items_free(items, n);
        /* from_c, done_p, done_q, and every writer's keys. */
        assert_int_equal(mp_dict_len(d), 3 + (C_WRITERS + PY_WRITERS) * N_EACH);
        k = mp_item_str("p7");
        assert_int_equal(mp_dict_get(d, &k, NULL, &it), 0);
        assert_int_equal(it.type, MP_ITEM_INT);
        assert_int_equal(it.v.i, 7);
        k = mp_item_str("done_q");
        assert_int_equal(mp_dict_get(d, &k, NULL, &it), 0);
        assert_int_equal(it.type, MP_ITEM_BOOL);
        assert_int_equal(mp_namespace_get(ns, "last", &it), 0);
        assert_int_equal(it.type, MP_ITEM_STR);
        mp_item_clear(&it);
        mp_list_close(l);
        mp_dict_close(d);
        mp_namespace_close(ns);
        mp_manager_close(m);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_serve_needs_an_authkey_and_a_good_address),
        cmocka_unit_test(test_c_client_create_call_decref_over_both_transports),
        cmocka_unit_test(test_wrong_authkey_is_refused),
        cmocka_unit_test(test_malformed_requests_get_errors_never_a_crash),
        cmocka_unit_test(test_stalled_or_dead_client_does_not_stop_the_server),
        cmocka_unit_test(test_client_shutdown_stops_the_manager),
        cmocka_unit_test(test_python_calls_every_method_with_exact_values),
        cmocka_unit_test(test_python_wrong_authkey_is_refused),
        cmocka_unit_test(test_python_malformed_requests_get_tracebacks),
        cmocka_unit_test(test_python_and_c_processes_share_containers),
    };
    return th_run_tests(tests);
}
