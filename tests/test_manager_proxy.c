/*
 * test_manager_proxy.c - C driving a Python manager (mp_manager_connect): a Python
 * SyncManager server (tests/proxy_server.py, every python3 found, over TCP and AF_UNIX) whose
 * list, dict and Namespace C uses through the ordinary container calls, with the results
 * checked from Python too; exceptions mapped to codes; reference counts; fork and threads; a
 * server killed or stopped mid-use.
 */
#define _GNU_SOURCE
#include "helpers.h"
#include "internal.h"
#include "pickle.h"
#include "python_peer.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEY "proxy test key"

typedef struct server {
    th_py_peer p;
    pid_t py; /* the python process itself (p.pid is its reaper) */
    char addr[PATH_MAX + 32];
    char path[128]; /* the AF_UNIX path, "" for TCP */
} server;

static void
srv_start(server *s, const char *python, bool tcp)
{
    memset(s, 0, sizeof *s);
    if (!tcp)
        snprintf(s->path, sizeof s->path, "/tmp/mpipc-proxy-test-%d.sock", (int)getpid());
    unlink(s->path);
    const char *args[] = {tcp ? "tcp" : s->path, KEY, NULL};
    th_py_start(&s->p, python, PROXY_SERVER_PY, args);
    char line[PATH_MAX + 32];
    assert_true(th_py_read_line(&s->p, line, sizeof line));
    char *sp = strrchr(line, ' ');
    assert_non_null(sp);
    *sp = '\0';
    s->py = (pid_t)atoi(sp + 1);
    snprintf(s->addr, sizeof s->addr, "%s", line);
}

/* Send a command to the script; its first answer line goes to out. */
static void
srv_cmd(server *s, const char *cmd, char *out, size_t cap)
{
    char line[64];
    int n = snprintf(line, sizeof line, "%s\n", cmd);
    assert_int_equal(write(s->p.in, line, (size_t)n), n);
    assert_true(th_py_read_line(&s->p, out, cap));
}

static void
srv_stop(server *s)
{
    th_py_finish(&s->p);
    if (s->path[0] != '\0')
        unlink(s->path);
}

/* For a server that was killed: reap it without the clean-exit checks. */
static void
srv_reap_killed(server *s)
{
    close(s->p.in);
    close(s->p.out);
    close(s->p.err);
    assert_true(th_wait(s->p.pid, 30000) != -1);
    if (s->path[0] != '\0')
        unlink(s->path);
}

static mp_manager *
connect_timeout(const char *addr, int timeout_ms)
{
    mp_manager_connect_opts o = {.client = {.authkey = KEY, .authkey_len = strlen(KEY)},
                                 .timeout_ms = timeout_ms};
    mp_manager *m = NULL;
    int r = mp_manager_connect(&m, addr, &o);
    if (r != 0)
        print_error("mp_manager_connect(%s): %s\n", addr, mp_strerror(r));
    assert_int_equal(r, 0);
    return m;
}

static mp_manager *
connect_(const char *addr)
{
    return connect_timeout(addr, 20000);
}

/* A control request of the protocol, sent by hand: its #RETURN value. */
static mp__pv *
control(const char *addr, const char *method)
{
    mp_client_opts o = {.authkey = KEY, .authkey_len = strlen(KEY)};
    mp_conn *c;
    assert_int_equal(mp_client_connect(&c, addr, &o, 20000), 0);
    mp__pv *req =
        mp__pv_tuple(4, mp__pv_none(), mp__pv_cstr(method), mp__pv_tuple(0), mp__pv_dict());
    uint8_t *buf;
    size_t len;
    assert_int_equal(mp__pickle_dumps(req, 4, &buf, &len), 0);
    mp__pv_free(req);
    assert_int_equal(mp_conn_send_bytes(c, buf, len, 20000), 0);
    mp__free(buf);
    void *in;
    assert_int_equal(mp_conn_recv_bytes(c, &in, &len, SIZE_MAX, 20000), 0);
    mp_conn_close(c);
    mp__pv *v = NULL;
    mp__unpickle_opts uo = {.allow = mp__pickle_manager_globals};
    assert_int_equal(mp__pickle_loads(&v, in, len, &uo), 0);
    mp_free(in);
    assert_true(mp__pv_is_str(mp__pv_item(v, 0), "#RETURN"));
    mp__pv *r = mp__pv_copy(mp__pv_item(v, 1));
    mp__pv_free(v);
    return r;
}

static int64_t
number_of_objects(const char *addr)
{
    mp__pv *v = control(addr, "number_of_objects");
    assert_int_equal(v->kind, MP__PV_INT);
    int64_t n = v->u.i;
    mp__pv_free(v);
    return n;
}

static void
assert_repr(ssize_t (*fn)(void *, char **), void *x, const char *want)
{
    char *s;
    ssize_t n = fn(x, &s);
    assert_true(n >= 0);
    if (strcmp(s, want) != 0)
        print_error("repr: got %s, want %s\n", s, want);
    assert_string_equal(s, want);
    mp_free(s);
}
#define REPR(fn, x, want) assert_repr((ssize_t(*)(void *, char **))(fn), (x), (want))

static int
find_pythons(char py[TH_PY_MAX][PATH_MAX])
{
    int n = th_py_find(py);
    if (n == 0)
        print_message("python3 not found: skipped\n");
    return n;
}

/* ---- every operation, on every python and both transports --------------------------------------
 */

static void
list_ops(mp_manager *m)
{
    mp_item init[2] = {mp_item_int(1), mp_item_str("two")}, it, *items;
    mp_list *l;
    size_t n;
    assert_int_equal(mp_list_open(&l, m, init, 2), 0);
    mp_item more[4] = {mp_item_float(2.5), mp_item_bytes("b\0", 2), mp_item_none(),
                       mp_item_bool(true)};
    for (int i = 0; i < 4; i++)
        assert_int_equal(mp_list_append(l, &more[i]), 0);
    assert_int_equal(mp_list_len(l), 6);
    REPR(mp_list_repr, l, "[1, 'two', 2.5, b'b\\x00', None, True]");
    assert_int_equal(mp_list_get(l, 1, &it), 0);
    assert_int_equal(it.type, MP_ITEM_STR);
    assert_string_equal(it.v.s.ptr, "two");
    mp_item_clear(&it);
    assert_int_equal(mp_list_get(l, -3, &it), 0);
    assert_int_equal(it.type, MP_ITEM_BYTES);
    assert_int_equal(it.v.s.len, 2);
    assert_memory_equal(it.v.s.ptr, "b\0", 2);
    mp_item_clear(&it);
    assert_int_equal(mp_list_get(l, 6, &it), -ERANGE);
    it = mp_item_int(10);
    assert_int_equal(mp_list_set(l, 0, &it), 0);
    assert_int_equal(mp_list_set(l, -7, &it), -ERANGE);
    it = mp_item_str("first");
    assert_int_equal(mp_list_insert(l, -100, &it), 0);
    mp_item ext[2] = {mp_item_int(7), mp_item_int(8)};
    assert_int_equal(mp_list_extend(l, ext, 2), 0);
    REPR(mp_list_repr, l, "['first', 10, 'two', 2.5, b'b\\x00', None, True, 7, 8]");
    assert_int_equal(mp_list_index(l, &ext[0]), 7);
    it = mp_item_float(1.0);
    assert_int_equal(mp_list_count(l, &it), 1); /* True == 1.0 */
    assert_int_equal(mp_list_contains(l, &ext[1]), 1);
    it = mp_item_str("absent");
    assert_int_equal(mp_list_contains(l, &it), 0);
    assert_int_equal(mp_list_index(l, &it), -ENOENT);
    assert_int_equal(mp_list_remove(l, &it), -ENOENT);
    assert_int_equal(mp_list_remove(l, &ext[1]), 0);
    assert_int_equal(mp_list_slice(l, 1, 3, 1, &items, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(items[0].v.i, 10);
    assert_string_equal(items[1].v.s.ptr, "two");
    mp_items_free(items, n);
    assert_int_equal(mp_list_slice(l, MP_SLICE_DEFAULT, MP_SLICE_DEFAULT, -3, &items, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(items[0].v.i, 7);
    mp_items_free(items, n);
    mp_item rep[3] = {mp_item_str("a"), mp_item_str("b"), mp_item_str("c")};
    assert_int_equal(mp_list_set_slice(l, 0, 2, rep, 3), 0);
    REPR(mp_list_repr, l, "['a', 'b', 'c', 'two', 2.5, b'b\\x00', None, True, 7]");
    assert_int_equal(mp_list_del_slice(l, 3, MP_SLICE_DEFAULT, 2), 0);
    REPR(mp_list_repr, l, "['a', 'b', 'c', 2.5, None, 7]");
    assert_int_equal(mp_list_pop(l, -1, &it), 0);
    assert_int_equal(it.v.i, 7);
    assert_int_equal(mp_list_pop(l, 10, &it), -ERANGE);
    assert_int_equal(mp_list_del(l, 0), 0);
    assert_int_equal(mp_list_del(l, 10), -ERANGE);
    assert_int_equal(mp_list_reverse(l), 0);
    REPR(mp_list_repr, l, "[None, 2.5, 'c', 'b']");
    assert_int_equal(mp_list_sort(l, false), MP_ETYPE);
    assert_true(strstr(mp_manager_last_error(), "TypeError") != NULL);
    assert_int_equal(mp_list_clear(l), 0);
    assert_int_equal(mp_list_len(l), 0);
    assert_int_equal(mp_list_pop(l, -1, &it), -ERANGE);
    mp_item nums[4] = {mp_item_int(3), mp_item_float(1.5), mp_item_bool(false), mp_item_int(-2)};
    assert_int_equal(mp_list_extend(l, nums, 4), 0);
    assert_int_equal(mp_list_sort(l, false), 0);
    REPR(mp_list_repr, l, "[-2, False, 1.5, 3]");
    assert_int_equal(mp_list_sort(l, true), 0);
    REPR(mp_list_repr, l, "[3, 1.5, False, -2]");
    it = mp_item_str("bad \xff");
    assert_int_equal(mp_list_append(l, &it), -EINVAL);
    mp_list_close(l);
}

static void
dict_ops(mp_manager *m)
{
    mp_dict *d, *d2;
    mp_item k, v, it, *keys, *vals;
    size_t n;
    assert_int_equal(mp_dict_open(&d, m), 0);
    mp_item ks[5] = {mp_item_str("s"), mp_item_int(1), mp_item_float(2.5), mp_item_bytes("b", 1),
                     mp_item_none()};
    mp_item vs[5] = {mp_item_int(1), mp_item_str("one"), mp_item_bool(false), mp_item_none(),
                     mp_item_float(-0.5)};
    for (int i = 0; i < 5; i++)
        assert_int_equal(mp_dict_set(d, &ks[i], &vs[i]), 0);
    k = mp_item_bool(true); /* True == 1: the same key */
    v = mp_item_str("uno");
    assert_int_equal(mp_dict_set(d, &k, &v), 0);
    assert_int_equal(mp_dict_len(d), 5);
    REPR(mp_dict_repr, d, "{'s': 1, 1: 'uno', 2.5: False, b'b': None, None: -0.5}");
    assert_int_equal(mp_dict_get(d, &ks[0], NULL, &it), 0);
    assert_int_equal(it.v.i, 1);
    k = mp_item_str("missing");
    assert_int_equal(mp_dict_get(d, &k, NULL, &it), -ENOENT);
    assert_true(strstr(mp_manager_last_error(), "KeyError") != NULL);
    v = mp_item_int(99);
    assert_int_equal(mp_dict_get(d, &k, &v, &it), 0);
    assert_int_equal(it.v.i, 99);
    assert_int_equal(mp_dict_contains(d, &ks[2]), 1);
    assert_int_equal(mp_dict_contains(d, &k), 0);
    assert_int_equal(mp_dict_items(d, &keys, &vals, &n), 0);
    assert_int_equal(n, 5);
    assert_int_equal(keys[1].type, MP_ITEM_INT);
    assert_string_equal(vals[1].v.s.ptr, "uno");
    assert_int_equal(keys[4].type, MP_ITEM_NONE);
    mp_items_free(keys, n);
    mp_items_free(vals, n);
    assert_int_equal(mp_dict_keys(d, &keys, &n), 0);
    assert_string_equal(keys[0].v.s.ptr, "s");
    mp_items_free(keys, n);
    assert_int_equal(mp_dict_values(d, &vals, &n), 0);
    assert_int_equal(vals[2].type, MP_ITEM_BOOL);
    mp_items_free(vals, n);
    mp_item uk[2] = {mp_item_str("u1"), mp_item_str("s")}, uv[2] = {mp_item_int(5), mp_item_int(6)};
    assert_int_equal(mp_dict_update(d, uk, uv, 2), 0);
    assert_int_equal(mp_dict_pop(d, &ks[2], NULL, &it), 0);
    assert_int_equal(it.type, MP_ITEM_BOOL);
    assert_int_equal(mp_dict_pop(d, &k, NULL, &it), -ENOENT);
    assert_int_equal(mp_dict_pop(d, &k, &v, &it), 0);
    assert_int_equal(it.v.i, 99);
    assert_int_equal(mp_dict_del(d, &ks[3]), 0);
    assert_int_equal(mp_dict_del(d, &ks[3]), -ENOENT);
    assert_int_equal(mp_dict_setdefault(d, &k, &v, &it), 0);
    assert_int_equal(it.v.i, 99);
    v = mp_item_int(100);
    assert_int_equal(mp_dict_setdefault(d, &k, &v, &it), 0);
    assert_int_equal(it.v.i, 99);
    REPR(mp_dict_repr, d, "{'s': 6, 1: 'uno', None: -0.5, 'u1': 5, 'missing': 99}");
    assert_int_equal(mp_dict_popitem(d, &k, &it), 0);
    assert_string_equal(k.v.s.ptr, "missing");
    mp_item_clear(&k);
    assert_int_equal(mp_dict_copy(d, &d2), 0);
    REPR(mp_dict_repr, d2, "{'s': 6, 1: 'uno', None: -0.5, 'u1': 5}");
    assert_int_equal(mp_dict_clear(d), 0);
    assert_int_equal(mp_dict_len(d), 0);
    assert_int_equal(mp_dict_len(d2), 4);
    assert_int_equal(mp_dict_popitem(d, &k, &it), -ENOENT);
    /* A container key is unhashable here as in the heap's dict. */
    k = mp_item_dict(d2);
    assert_int_equal(mp_dict_set(d, &k, &v), MP_ETYPE);
    mp_dict_close(d2);
    mp_dict_close(d);
}

static void
namespace_ops(mp_manager *m)
{
    mp_namespace *ns;
    mp_item it;
    assert_int_equal(mp_namespace_open(&ns, m), 0);
    REPR(mp_namespace_repr, ns, "Namespace()");
    it = mp_item_int(1);
    assert_int_equal(mp_namespace_set(ns, "b", &it), 0);
    it = mp_item_str("x");
    assert_int_equal(mp_namespace_set(ns, "a", &it), 0);
    REPR(mp_namespace_repr, ns, "Namespace(a='x', b=1)");
    assert_int_equal(mp_namespace_get(ns, "b", &it), 0);
    assert_int_equal(it.v.i, 1);
    assert_int_equal(mp_namespace_get(ns, "c", &it), -ENOENT);
    assert_true(strstr(mp_manager_last_error(), "AttributeError") != NULL);
    assert_int_equal(mp_namespace_del(ns, "b"), 0);
    assert_int_equal(mp_namespace_del(ns, "b"), -ENOENT);
    assert_int_equal(mp_namespace_set(ns, "_private", &it), -EINVAL);
    REPR(mp_namespace_repr, ns, "Namespace(a='x')");
    mp_namespace_close(ns);
}

/* The server's registered objects, shared with Python: C's changes seen from Python, Python's
 * from C, containers nested both ways. */
static void
shared_with_python(mp_manager *m, server *s)
{
    mp_list *l, *inner, *again;
    mp_dict *d;
    mp_namespace *ns;
    mp_item it;
    char line[512];
    assert_int_equal(mp_manager_list(&l, m, "get_list"), 0);
    assert_int_equal(mp_manager_dict(&d, m, "get_dict"), 0);
    assert_int_equal(mp_manager_namespace(&ns, m, "get_ns"), 0);
    it = mp_item_str("from C");
    assert_int_equal(mp_list_append(l, &it), 0);
    mp_item k = mp_item_str("answer");
    it = mp_item_int(42);
    assert_int_equal(mp_dict_set(d, &k, &it), 0);
    assert_int_equal(mp_namespace_set(ns, "lang", &it), 0);
    /* A new list stored in the dict travels as a proxy; reading it back gives a handle on
     * the same list. */
    mp_item seq[1] = {mp_item_int(1)};
    assert_int_equal(mp_list_open(&inner, m, seq, 1), 0);
    k = mp_item_str("inner");
    it = mp_item_list(inner);
    assert_int_equal(mp_dict_set(d, &k, &it), 0);
    assert_int_equal(mp_dict_get(d, &k, NULL, &it), 0);
    assert_int_equal(it.type, MP_ITEM_LIST);
    again = it.v.list;
    it = mp_item_int(2);
    assert_int_equal(mp_list_append(again, &it), 0);
    REPR(mp_list_repr, inner, "[1, 2]");
    REPR(mp_dict_repr, d, "{'answer': 42, 'inner': [1, 2]}");
    srv_cmd(s, "dump", line, sizeof line);
    assert_string_equal(line, "['from C']");
    assert_true(th_py_read_line(&s->p, line, sizeof line));
    assert_string_equal(line, "{'answer': 42, 'inner': [1, 2]}");
    assert_true(th_py_read_line(&s->p, line, sizeof line));
    assert_string_equal(line, "Namespace(lang=42)");
    srv_cmd(s, "pyset", line, sizeof line);
    REPR(mp_list_repr, l, "['from C', 'from python']");
    k = mp_item_str("python");
    assert_int_equal(mp_dict_get(d, &k, NULL, &it), 0);
    assert_int_equal(it.v.i, 3);
    assert_int_equal(mp_namespace_get(ns, "lang", &it), 0);
    assert_string_equal(it.v.s.ptr, "python");
    mp_item_clear(&it);
    /* A tuple is no mp_item. */
    k = mp_item_str("tuple");
    assert_int_equal(mp_dict_get(d, &k, NULL, &it), MP_ETYPE);
    assert_int_equal(mp_dict_del(d, &k), 0);
    assert_int_equal(mp_dict_del(d, &(mp_item){.type = MP_ITEM_STR, .v.s = {"inner", 5}}), 0);
    mp_list_close(again);
    mp_list_close(inner);
    mp_list_close(l);
    mp_dict_close(d);
    mp_namespace_close(ns);
}

static void
test_every_operation_on_every_python_and_transport(void **state)
{
    (void)state;
    char py[TH_PY_MAX][PATH_MAX];
    int np = find_pythons(py);
    if (np == 0)
        skip();
    for (int k = 0; k < np; k++)
        for (int t = 0; t < 2; t++) {
            server s;
            srv_start(&s, py[k], t == 0);
            print_message("%s over %s\n", py[k], t == 0 ? "TCP" : "AF_UNIX");
            mp_manager *m = connect_(s.addr);
            assert_string_equal(mp_manager_address(m), s.addr);
            int64_t base = number_of_objects(s.addr);
            list_ops(m);
            dict_ops(m);
            namespace_ops(m);
            shared_with_python(m, &s);
            /* Every handle is closed: the server tracks what it did before. */
            assert_int_equal(number_of_objects(s.addr), base);
            mp_manager_close(m);
            srv_stop(&s);
        }
}

/* ---- errors, reference counts, the other manager calls -----------------------------------------
 */

static void
test_exceptions_map_to_codes_and_unknown_ones_keep_the_message(void **state)
{
    (void)state;
    char py[TH_PY_MAX][PATH_MAX];
    if (find_pythons(py) == 0)
        skip();
    server s;
    srv_start(&s, py[0], true);
    mp_manager *m = connect_(s.addr);
    mp_list *l;
    mp_item it = mp_item_int(1);
    assert_int_equal(mp_manager_list(&l, m, "get_weird"), 0);
    assert_int_equal(mp_list_append(l, &it), MP_EREMOTE);
    assert_string_equal(mp_manager_last_error(), "ZeroDivisionError: weird append");
    assert_int_equal(mp_list_get(l, 0, &it), MP_ETYPE);
    assert_int_equal(mp_list_len(l), 0);
    mp_list_close(l);
    /* Exposing only list's public methods (AutoProxy) is not a list for C; an unknown typeid
     * is a RemoteError (a #TRACEBACK). */
    assert_int_equal(mp_manager_list(&l, m, "get_plain"), MP_ETYPE);
    assert_int_equal(mp_manager_list(&l, m, "no_such_typeid"), MP_EREMOTE);
    assert_non_null(strstr(mp_manager_last_error(), "KeyError"));
    mp_dict *d;
    assert_int_equal(mp_manager_dict(&d, m, "get_list"), MP_ETYPE);
    /* The typed objects and the owner's calls. */
    mp_value *v;
    mp_lock *lk;
    mp_item obj = mp_item_none();
    assert_int_equal(mp_manager_value(&v, m, "v", 'i', NULL), -ENOTSUP);
    assert_int_equal(mp_manager_lock(&lk, m, "l", NULL), -ENOTSUP);
    assert_int_equal(mp_manager_delete(m, "v"), -ENOTSUP);
    assert_int_equal(mp_manager_register(m, "x", &obj), -ENOTSUP);
    assert_int_equal(mp_manager_shutdown(m), -EPERM);
    assert_int_equal(mp_manager_pid(m), -ENOTSUP);
    assert_string_equal(mp_manager_name(m), "");
    /* A container of another manager, connected or shared-heap, is no value here (nor the
     * other way round): -EINVAL, nothing changes. */
    mp_manager *m2 = connect_(s.addr), *heap;
    mp_list *mine, *theirs, *local;
    assert_int_equal(mp_manager_open(&heap, NULL), 0);
    assert_int_equal(mp_list_open(&mine, m, NULL, 0), 0);
    assert_int_equal(mp_list_open(&theirs, m2, NULL, 0), 0);
    assert_int_equal(mp_list_open(&local, heap, NULL, 0), 0);
    it = mp_item_list(theirs);
    assert_int_equal(mp_list_append(mine, &it), -EINVAL);
    it = mp_item_list(local);
    assert_int_equal(mp_list_append(mine, &it), -EINVAL);
    it = mp_item_list(mine);
    assert_int_equal(mp_list_append(local, &it), -EINVAL);
    assert_int_equal(mp_list_len(mine), 0);
    assert_int_equal(mp_list_len(local), 0);
    mp_list_close(local);
    mp_list_close(theirs);
    mp_list_close(mine);
    mp_manager_close(heap);
    mp_manager_close(m2);
    assert_int_equal(number_of_objects(s.addr), 0);
    mp_manager_close(m);
    srv_stop(&s);
}

static void
test_connect_needs_the_right_key_and_a_server(void **state)
{
    (void)state;
    char py[TH_PY_MAX][PATH_MAX];
    if (find_pythons(py) == 0)
        skip();
    server s;
    srv_start(&s, py[0], false);
    mp_manager *m = NULL;
    mp_manager_connect_opts o = {.client = {.authkey = "wrong", .authkey_len = 5}};
    assert_int_equal(mp_manager_connect(&m, s.addr, &o), -EACCES);
    assert_null(m);
    o.client.authkey = NULL;
    assert_int_equal(mp_manager_connect(&m, s.addr, &o), -EINVAL);
    assert_int_equal(mp_manager_connect(&m, s.addr, NULL), -EINVAL);
    o = (mp_manager_connect_opts){.client = {.authkey = KEY, .authkey_len = strlen(KEY)},
                                  .timeout_ms = -5};
    assert_int_equal(mp_manager_connect(&m, s.addr, &o), -EINVAL);
    o.timeout_ms = 0;
    assert_int_equal(mp_manager_connect(&m, "/tmp/mpipc-proxy-no-such.sock", &o), -ENOENT);
    assert_int_equal(mp_manager_connect(&m, s.addr, &o), 0);
    mp_manager_close(m);
    srv_stop(&s);
}

static void
test_reference_counts_follow_the_handles(void **state)
{
    (void)state;
    char py[TH_PY_MAX][PATH_MAX];
    if (find_pythons(py) == 0)
        skip();
    server s;
    srv_start(&s, py[0], true);
    mp_manager *m = connect_(s.addr);
    char line[64];
    mp_list *a, *b;
    mp_dict *d;
    assert_int_equal(mp_list_open(&a, m, NULL, 0), 0);
    assert_int_equal(mp_manager_list(&b, m, "get_list"), 0);
    assert_int_equal(mp_dict_open(&d, m), 0);
    assert_int_equal(number_of_objects(s.addr), 3);
    /* A handle read back from a container takes a reference of its own. */
    mp_item k = mp_item_str("a"), it = mp_item_list(a);
    assert_int_equal(mp_dict_set(d, &k, &it), 0);
    mp_item got[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(mp_dict_get(d, &k, NULL, &got[i]), 0);
    mp__pv *info = control(s.addr, "debug_info");
    assert_non_null(strstr(info->u.s.data, "refcount=4"));
    mp__pv_free(info);
    for (int i = 0; i < 3; i++)
        mp_item_clear(&got[i]);
    info = control(s.addr, "debug_info");
    assert_null(strstr(info->u.s.data, "refcount=4"));
    mp__pv_free(info);
    /* Closing the manager handle first is fine: the containers keep the connection. */
    mp_manager_close(m);
    mp_list_close(a);
    mp_list_close(b);
    assert_int_equal(number_of_objects(s.addr), 1);
    mp_dict_close(d);
    assert_int_equal(number_of_objects(s.addr), 0);
    srv_cmd(&s, "refs", line, sizeof line);
    assert_string_equal(line, "0");
    srv_stop(&s);
}

/* Operations that allocate at many steps (requests, replies, handles for nested containers):
 * with the n-th allocation failing, each gives -ENOMEM or succeeds, and leaks nothing (the
 * ASan build checks). */
static int
alloc_round(mp_manager *m, mp_dict *d)
{
    mp_item seq[2] = {mp_item_str("x"), mp_item_bytes("y", 1)}, it, *keys, *vals;
    mp_list *l = NULL;
    mp_dict *copy = NULL;
    size_t n;
    int r = mp_list_open(&l, m, seq, 2);
    if (r == 0) {
        mp_item k = mp_item_str("l"), v = mp_item_list(l);
        r = mp_dict_set(d, &k, &v);
    }
    mp_list_close(l);
    if (r == 0 && (r = mp_dict_items(d, &keys, &vals, &n)) == 0) {
        mp_items_free(keys, n);
        mp_items_free(vals, n);
    }
    mp_item k = mp_item_str("l");
    if (r == 0 && (r = mp_dict_get(d, &k, NULL, &it)) == 0) {
        char *s;
        ssize_t len = mp_item_repr(&it, &s);
        r = len < 0 ? (int)len : 0;
        if (len >= 0)
            mp_free(s);
        mp_item_clear(&it);
    }
    if (r == 0 && (r = mp_dict_copy(d, &copy)) == 0)
        mp_dict_close(copy);
    return r;
}

static void
test_allocation_failures_give_enomem_and_leak_nothing(void **state)
{
    (void)state;
    char py[TH_PY_MAX][PATH_MAX];
    if (find_pythons(py) == 0)
        skip();
    server s;
    srv_start(&s, py[0], true);
    mp_manager *m = connect_(s.addr);
    mp_dict *d;
    assert_int_equal(mp_dict_open(&d, m), 0);
    int ok = 0;
    for (long n = 0; n < 400 && ok < 3; n++) {
        mp__alloc_fail_after(n);
        int r = alloc_round(m, d);
        mp__alloc_fail_after(-1);
        if (r != 0 && r != -ENOMEM)
            print_error("allocation %ld: %s (%s)\n", n, mp_strerror(r), mp_manager_last_error());
        assert_true(r == 0 || r == -ENOMEM);
        ok += r == 0;
    }
    assert_true(ok > 0);
    assert_int_equal(alloc_round(m, d), 0);
    mp_dict_close(d);
    mp_manager_close(m);
    srv_stop(&s);
}

/* ---- fork and threads --------------------------------------------------------------------------
 */

typedef struct fork_arg {
    mp_manager *m;
    mp_list *l, *unused;
    th_barrier *b;
    const char *addr;
} fork_arg;

enum { ROUNDS = 100 };

/* Calls whose answers differ between the two processes: l[which] is "parent" or "child". A
 * reply read by the wrong process (a shared socket) shows as a wrong answer or a timeout. */
static bool
reads_own_item(mp_list *l, int which)
{
    mp_item it = mp_item_str(which == 0 ? "parent" : "child"), got;
    if (mp_list_append(l, &it) != 0 || mp_list_get(l, which, &got) != 0)
        return false;
    bool ok = got.type == MP_ITEM_STR && strcmp(got.v.s.ptr, it.v.s.ptr) == 0;
    mp_item_clear(&got);
    return ok;
}

static int
child_uses_inherited_handles(void *p)
{
    fork_arg *a = p;
    CHILD_CHECK(th_barrier_wait(a->b) == 0);
    /* At the same time as the parent, on the same inherited manager. */
    for (int i = 0; i < ROUNDS; i++)
        CHILD_CHECK(reads_own_item(a->l, 1));
    CHILD_CHECK(th_barrier_wait(a->b) == 0);
    /* The child closes its copies of everything it inherited, as any child does. */
    mp_list_close(a->l);
    mp_list_close(a->unused);
    mp_manager_close(a->m);
    return 0;
}

static void
test_fork_child_uses_inherited_handles_on_its_own_connection(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    char py[TH_PY_MAX][PATH_MAX];
    if (find_pythons(py) == 0)
        skip();
    server s;
    srv_start(&s, py[0], false);
    mp_manager *m = connect_(s.addr);
    mp_list *l, *unused;
    assert_int_equal(mp_list_open(&l, m, NULL, 0), 0);
    assert_int_equal(mp_list_open(&unused, m, NULL, 0), 0);
    mp_item seed[2] = {mp_item_str("parent"), mp_item_str("child")};
    assert_int_equal(mp_list_extend(l, seed, 2), 0); /* the parent's connection exists */
    fork_arg a = {m, l, unused, th_barrier_new(2), s.addr};
    pid_t pid = th_fork(child_uses_inherited_handles, &a);
    assert_int_equal(th_barrier_wait(a.b), 0);
    for (int i = 0; i < ROUNDS; i++)
        assert_true(reads_own_item(l, 0));
    assert_int_equal(th_barrier_wait(a.b), 0);
    assert_child_ok(pid);
    assert_int_equal(mp_list_len(l), 2 * ROUNDS + 2);
    /* The child dropped the reference it took; the one it never used cost nothing. */
    assert_int_equal(number_of_objects(s.addr), 2);
    mp__pv *info = control(s.addr, "debug_info");
    assert_null(strstr(info->u.s.data, "refcount=2"));
    mp__pv_free(info);
    mp_list_close(l);
    mp_list_close(unused);
    assert_int_equal(number_of_objects(s.addr), 0);
    th_barrier_free(a.b);
    mp_manager_close(m);
    srv_stop(&s);
}

/* A thread stopped inside the pool's lock (the fault point's action waits on a pipe) while
 * the process forks: the child inherits the lock as it was at the fork. */
typedef struct held {
    mp_list *l;
    int entered[2], go[2];
    int r;
} held;

static void
hold_in_pool_lock(const char *point, void *arg)
{
    (void)point;
    held *h = arg;
    char c = 1;
    if (write(h->entered[1], &c, 1) != 1 || read(h->go[0], &c, 1) != 1)
        abort();
}

static void *
thread_calls_len(void *p)
{
    held *h = p;
    h->r = (int)mp_list_len(h->l);
    return NULL;
}

static int
child_calls_despite_the_held_lock(void *p)
{
    fork_arg *a = p;
    mp_item it = mp_item_int(5);
    CHILD_CHECK(mp_list_append(a->l, &it) == 0);
    CHILD_CHECK(mp_list_len(a->l) == 2);
    mp_list_close(a->l);
    mp_manager_close(a->m);
    return 0;
}

static void
test_fork_while_a_thread_holds_the_pool_lock(void **state)
{
    (void)state;
    SKIP_UNDER_TSAN();
    /* The stopped thread's own allocations are reachable only from its stack, which the child
     * does not have: valgrind reports them lost in the child, where no code could free them. */
    if (!mp__fault_enabled() || th_valgrind())
        skip();
    char py[TH_PY_MAX][PATH_MAX];
    if (find_pythons(py) == 0)
        skip();
    server s;
    srv_start(&s, py[0], false);
    mp_manager *m = connect_timeout(s.addr, 3000);
    mp_list *l;
    mp_item one = mp_item_int(1);
    assert_int_equal(mp_list_open(&l, m, &one, 1), 0);
    held h = {.l = l};
    assert_int_equal(pipe2(h.entered, O_CLOEXEC), 0);
    assert_int_equal(pipe2(h.go, O_CLOEXEC), 0);
    assert_int_equal(mp__fault_arm("proxy.pool.locked", 1, hold_in_pool_lock, &h), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, thread_calls_len, &h), 0);
    char c;
    assert_int_equal(read(h.entered[0], &c, 1), 1);
    /* The child's calls must neither wait for a lock no thread of its own holds, nor time out. */
    int64_t t0 = th_now_ms();
    fork_arg fa = {.m = m, .l = l};
    pid_t pid = th_fork(child_calls_despite_the_held_lock, &fa);
    assert_int_equal(write(h.go[1], &c, 1), 1);
    assert_int_equal(pthread_join(t, NULL), 0);
    mp__fault_disarm();
    assert_int_equal(h.r, 1);
    assert_child_ok(pid);
    assert_true(th_now_ms() - t0 < 2500);
    assert_int_equal(mp_list_len(l), 2);
    for (int i = 0; i < 2; i++) {
        close(h.entered[i]);
        close(h.go[i]);
    }
    mp_list_close(l);
    mp_manager_close(m);
    srv_stop(&s);
}

static void *
thread_appends(void *p)
{
    mp_item it = mp_item_int(7);
    for (int i = 0; i < 50; i++)
        if (mp_list_append(p, &it) != 0)
            return p;
    return NULL;
}

static void
test_threads_share_handles(void **state)
{
    (void)state;
    char py[TH_PY_MAX][PATH_MAX];
    if (find_pythons(py) == 0)
        skip();
    server s;
    srv_start(&s, py[0], true);
    mp_manager *m = connect_(s.addr);
    mp_list *l;
    assert_int_equal(mp_list_open(&l, m, NULL, 0), 0);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, thread_appends, l), 0);
    for (int i = 0; i < 4; i++) {
        void *r;
        assert_int_equal(pthread_join(t[i], &r), 0);
        assert_null(r);
    }
    assert_int_equal(mp_list_len(l), 200);
    mp_item it = mp_item_int(7);
    assert_int_equal(mp_list_count(l, &it), 200);
    mp_list_close(l);
    mp_manager_close(m);
    srv_stop(&s);
}

/* ---- a server that goes away or stops ----------------------------------------------------------
 */

typedef struct caller {
    mp_list *l;
    _Atomic int calls;
    int err;
    int64_t last_ms; /* how long the failing call took */
} caller;

/* Append until a call fails, as a thread that is mid-call when the server dies. */
static void *
call_until_error(void *p)
{
    caller *c = p;
    mp_item it = mp_item_int(1);
    for (;;) {
        int64_t t0 = th_now_ms();
        int r = mp_list_append(c->l, &it);
        if (r != 0) {
            c->err = r;
            c->last_ms = th_now_ms() - t0;
            return NULL;
        }
        atomic_fetch_add(&c->calls, 1);
    }
}

static void
test_killed_server_gives_epipe_within_the_timeout(void **state)
{
    (void)state;
    char py[TH_PY_MAX][PATH_MAX];
    if (find_pythons(py) == 0)
        skip();
    for (int t = 0; t < 2; t++) {
        server s;
        srv_start(&s, py[0], t == 0);
        mp_manager *m = connect_timeout(s.addr, 2000);
        mp_list *l;
        assert_int_equal(mp_list_open(&l, m, NULL, 0), 0);
        mp_item it = mp_item_int(1);
        assert_int_equal(mp_list_append(l, &it), 0);
        /* Killed while a thread is calling: its call ends with -EPIPE, not at the timeout. */
        caller c = {.l = l};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, call_until_error, &c), 0);
        while (atomic_load(&c.calls) < 20)
            sched_yield();
        assert_int_equal(kill(s.py, SIGKILL), 0);
        assert_int_equal(pthread_join(th, NULL), 0);
        assert_int_equal(c.err, -EPIPE);
        assert_true(c.last_ms < 1500);
        srv_reap_killed(&s);
        int64_t t0 = th_now_ms();
        assert_int_equal(mp_list_append(l, &it), -EPIPE);
        assert_int_equal(mp_list_len(l), -EPIPE);
        mp_list *l2;
        assert_int_equal(mp_list_open(&l2, m, NULL, 0), -EPIPE);
        mp_list_close(l); /* the decref fails, silently */
        assert_true(th_now_ms() - t0 < 3000);
        mp_manager_close(m);
    }
}

/* Wait until every thread of pid is stopped: kill() returns before the signal has taken
 * effect on a thread running on another CPU. */
static void
wait_stopped(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    for (int64_t end = th_now_ms() + 10000; th_now_ms() < end; usleep(1000)) {
        DIR *d = opendir(path);
        assert_non_null(d);
        bool all = true;
        for (struct dirent *e; (e = readdir(d)) != NULL;) {
            if (e->d_name[0] == '.')
                continue;
            char stat[PATH_MAX + 64], buf[512] = "";
            snprintf(stat, sizeof stat, "%s/%s/stat", path, e->d_name);
            FILE *f = fopen(stat, "r");
            if (f != NULL) {
                size_t n = fread(buf, 1, sizeof buf - 1, f);
                buf[n] = '\0';
                fclose(f);
            }
            const char *st = strrchr(buf, ')');
            all = all && st != NULL && (st[2] == 'T' || st[2] == 't');
        }
        closedir(d);
        if (all)
            return;
    }
    fail_msg("process %d did not stop", (int)pid);
}

static void
test_stopped_server_gives_etimedout_within_the_timeout(void **state)
{
    (void)state;
    char py[TH_PY_MAX][PATH_MAX];
    if (find_pythons(py) == 0)
        skip();
    server s;
    srv_start(&s, py[0], true);
    mp_manager *m = connect_timeout(s.addr, 300);
    mp_list *l;
    assert_int_equal(mp_list_open(&l, m, NULL, 0), 0);
    mp_item it = mp_item_int(1);
    assert_int_equal(mp_list_append(l, &it), 0);
    assert_int_equal(kill(s.py, SIGSTOP), 0);
    wait_stopped(s.py);
    for (int i = 0; i < 2; i++) {
        /* A call on the pooled connection, then one that needs a new connection. */
        int64_t t0 = th_now_ms();
        int r = i == 0 ? mp_list_append(l, &it) : (int)mp_list_len(l);
        int64_t dt = th_now_ms() - t0;
        assert_int_equal(r, -ETIMEDOUT);
        assert_true(dt >= 290 && dt < 3000);
    }
    assert_int_equal(kill(s.py, SIGCONT), 0);
    /* The server answers again; the appends that timed out may or may not have happened. */
    ssize_t n = mp_list_len(l);
    assert_true(n >= 1 && n <= 2);
    mp_list_close(l);
    mp_manager_close(m);
    srv_stop(&s);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_operation_on_every_python_and_transport),
        cmocka_unit_test(test_exceptions_map_to_codes_and_unknown_ones_keep_the_message),
        cmocka_unit_test(test_connect_needs_the_right_key_and_a_server),
        cmocka_unit_test(test_reference_counts_follow_the_handles),
        cmocka_unit_test(test_allocation_failures_give_enomem_and_leak_nothing),
        cmocka_unit_test(test_fork_child_uses_inherited_handles_on_its_own_connection),
        cmocka_unit_test(test_fork_while_a_thread_holds_the_pool_lock),
        cmocka_unit_test(test_threads_share_handles),
        cmocka_unit_test(test_killed_server_gives_epipe_within_the_timeout),
        cmocka_unit_test(test_stopped_server_gives_etimedout_within_the_timeout),
    };
    return th_run_tests(tests);
}
