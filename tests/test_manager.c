/*
 * test_manager.c - mp_manager and its shared list, dict and Namespace, checked against what
 * Python prints for the same operations, from the parent and from forked children; concurrent
 * appends, a 100k-key dict, SIGKILLs at the named fault points and at random moments, and the
 * manager's lifetime (nothing left after a shutdown or after the owner is killed).
 */
#define _GNU_SOURCE
#include "helpers.h"

#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

static mp_manager *mgr;

static int
setup(void **state)
{
    (void)state;
    return mp_manager_open(&mgr, NULL);
}

static int
teardown(void **state)
{
    (void)state;
    mp_manager_close(mgr);
    mgr = NULL;
    return 0;
}

/* repr of a container or item compared with Python's output. */
static bool
repr_is(ssize_t (*fn)(void *, char **), void *obj, const char *want)
{
    char *s = NULL;
    ssize_t n = fn(obj, &s);
    bool ok = n >= 0 && strcmp(s, want) == 0 && (size_t)n == strlen(want);
    if (!ok)
        fprintf(stderr, "repr: got %s, want %s\n", n >= 0 ? s : mp_strerror((int)n), want);
    mp_free(s);
    return ok;
}
#define LIST_IS(l, s) repr_is((ssize_t(*)(void *, char **))mp_list_repr, (l), (s))
#define DICT_IS(d, s) repr_is((ssize_t(*)(void *, char **))mp_dict_repr, (d), (s))
#define NS_IS(n, s) repr_is((ssize_t(*)(void *, char **))mp_namespace_repr, (n), (s))

static bool
item_repr_is(mp_item it, const char *want)
{
    return repr_is((ssize_t(*)(void *, char **))mp_item_repr, &it, want);
}

static mp_item
S(const char *s)
{
    return mp_item_str(s);
}

static mp_item
I(int64_t i)
{
    return mp_item_int(i);
}

/* ---- items and repr ------------------------------------------------------------------------ */

static void
test_item_repr_matches_python(void **state)
{
    (void)state;
    static const struct {
        double f;
        const char *want;
    } floats[] = {
        {0.1, "0.1"},
        {1e16, "1e+16"},
        {1e15, "1000000000000000.0"},
        {1.5e-5, "1.5e-05"},
        {0.0001, "0.0001"},
        {-0.0, "-0.0"},
        {1.0 / 3, "0.3333333333333333"},
        {2.5, "2.5"},
        {100.0, "100.0"},
        {1e22, "1e+22"},
        {5e-324, "5e-324"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
        {123456789.125, "123456789.125"},
        {0.5e-4, "5e-05"},
    };
    for (size_t i = 0; i < MP__ARRAY_LEN(floats); i++)
        assert_true(item_repr_is(mp_item_float(floats[i].f), floats[i].want));
    assert_true(item_repr_is(mp_item_float(INFINITY), "inf"));
    assert_true(item_repr_is(mp_item_float(-INFINITY), "-inf"));
    assert_true(item_repr_is(mp_item_float(NAN), "nan"));
    assert_true(item_repr_is(S("it's"), "\"it's\""));
    assert_true(item_repr_is(S("a\"b"), "'a\"b'"));
    assert_true(item_repr_is(S("it's \"x\""), "'it\\'s \"x\"'"));
    assert_true(item_repr_is(S("\n\t\x01\x7f\\"), "'\\n\\t\\x01\\x7f\\\\'"));
    assert_true(item_repr_is(mp_item_bytes("\x00\xff'a", 4), "b\"\\x00\\xff'a\""));
    assert_true(item_repr_is(S("h\xc3\xa9llo"), "'h\xc3\xa9llo'"));
    assert_true(item_repr_is(I(-42), "-42"));
    assert_true(item_repr_is(I(INT64_MIN), "-9223372036854775808"));
    assert_true(item_repr_is(mp_item_none(), "None"));
    assert_true(item_repr_is(mp_item_bool(true), "True"));
    assert_true(item_repr_is(mp_item_bool(false), "False"));
}

/* ---- list --------------------------------------------------------------------------------------
 */

static void
test_list_operations_match_python(void **state)
{
    (void)state;
    mp_item init[] = {I(3), mp_item_float(1.5), mp_item_bool(true), I(-2)};
    mp_list *l;
    assert_int_equal(mp_list_open(&l, mgr, init, 4), 0);
    assert_true(LIST_IS(l, "[3, 1.5, True, -2]"));
    assert_int_equal(mp_list_sort(l, false), 0);
    assert_true(LIST_IS(l, "[-2, True, 1.5, 3]"));
    assert_int_equal(mp_list_sort(l, true), 0);
    assert_true(LIST_IS(l, "[3, 1.5, True, -2]"));
    assert_int_equal(mp_list_clear(l), 0);
    assert_int_equal(mp_list_len(l), 0);

    for (int i = 0; i < 10; i++)
        assert_int_equal(mp_list_append(l, &(mp_item){.type = MP_ITEM_INT, .v.i = i}), 0);
    mp_item *items;
    size_t n;
    assert_int_equal(mp_list_slice(l, MP_SLICE_DEFAULT, MP_SLICE_DEFAULT, -3, &items, &n), 0);
    assert_int_equal(n, 4);
    assert_int_equal(items[0].v.i, 9);
    assert_int_equal(items[3].v.i, 0);
    mp_items_free(items, n);
    assert_int_equal(mp_list_slice(l, 7, 2, -2, &items, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(items[0].v.i + items[1].v.i + items[2].v.i, 7 + 5 + 3);
    mp_items_free(items, n);
    assert_int_equal(mp_list_slice(l, -3, MP_SLICE_DEFAULT, 1, &items, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(items[0].v.i, 7);
    mp_items_free(items, n);
    assert_int_equal(mp_list_del_slice(l, 1, 8, 3), 0);
    assert_true(LIST_IS(l, "[0, 2, 3, 5, 6, 8, 9]"));
    mp_item abc[] = {S("a"), S("b"), S("c")};
    assert_int_equal(mp_list_set_slice(l, 1, 3, abc, 3), 0);
    assert_true(LIST_IS(l, "[0, 'a', 'b', 'c', 5, 6, 8, 9]"));

    mp_item it;
    assert_int_equal(mp_list_get(l, -1, &it), 0);
    assert_int_equal(it.type, MP_ITEM_INT);
    assert_int_equal(it.v.i, 9);
    assert_int_equal(mp_list_get(l, 2, &it), 0);
    assert_int_equal(it.type, MP_ITEM_STR);
    assert_string_equal(it.v.s.ptr, "b");
    mp_item_clear(&it);
    mp_item longs = S("a string longer than the inline eight bytes");
    assert_int_equal(mp_list_set(l, -2, &longs), 0);
    assert_int_equal(mp_list_insert(l, -100, &(mp_item){.type = MP_ITEM_NONE}), 0);
    assert_int_equal(mp_list_insert(l, 100, &(mp_item){.type = MP_ITEM_FLOAT, .v.f = 0.5}), 0);
    assert_int_equal(mp_list_insert(l, 2, &abc[2]), 0);
    assert_true(LIST_IS(l, "[None, 0, 'c', 'a', 'b', 'c', 5, 6, "
                           "'a string longer than the inline eight bytes', 9, 0.5]"));
    assert_int_equal(mp_list_count(l, &abc[2]), 2);
    assert_int_equal(mp_list_index(l, &abc[2]), 2);
    assert_int_equal(mp_list_index(l, &(mp_item){.type = MP_ITEM_FLOAT, .v.f = 5.0}), 6);
    assert_int_equal(mp_list_contains(l, &longs), 1);
    assert_int_equal(mp_list_contains(l, &(mp_item){.type = MP_ITEM_BYTES, .v.s = {"a", 1}}), 0);
    assert_int_equal(mp_list_remove(l, &abc[2]), 0);
    assert_int_equal(mp_list_pop(l, 0, &it), 0);
    assert_int_equal(it.type, MP_ITEM_NONE);
    assert_int_equal(mp_list_pop(l, -1, &it), 0);
    assert_true(it.type == MP_ITEM_FLOAT && it.v.f == 0.5);
    assert_int_equal(mp_list_pop(l, 6, &it), 0);
    assert_string_equal(it.v.s.ptr, "a string longer than the inline eight bytes");
    mp_item_clear(&it);
    assert_int_equal(mp_list_del(l, 1), 0);
    assert_true(LIST_IS(l, "[0, 'b', 'c', 5, 6, 9]"));
    assert_int_equal(mp_list_reverse(l), 0);
    assert_true(LIST_IS(l, "[9, 6, 5, 'c', 'b', 0]"));
    mp_item more[] = {mp_item_bytes("xy", 2), mp_item_float(-1e300)};
    assert_int_equal(mp_list_extend(l, more, 2), 0);
    assert_int_equal(mp_list_len(l), 8);
    assert_true(LIST_IS(l, "[9, 6, 5, 'c', 'b', 0, b'xy', -1e+300]"));
    mp_list_close(l);
}

static void
test_list_errors_change_nothing(void **state)
{
    (void)state;
    mp_item init[] = {I(1), S("x"), mp_item_none()};
    mp_list *l;
    mp_item it;
    assert_int_equal(mp_list_open(&l, mgr, init, 3), 0);
    assert_int_equal(mp_list_get(l, 3, &it), -ERANGE);
    assert_int_equal(mp_list_get(l, -4, &it), -ERANGE);
    assert_int_equal(mp_list_set(l, 3, &init[0]), -ERANGE);
    assert_int_equal(mp_list_del(l, -4), -ERANGE);
    assert_int_equal(mp_list_pop(l, 5, NULL), -ERANGE);
    assert_int_equal(mp_list_remove(l, &(mp_item){.type = MP_ITEM_INT, .v.i = 7}), -ENOENT);
    assert_int_equal(mp_list_index(l, &(mp_item){.type = MP_ITEM_STR, .v.s = {"y", 1}}), -ENOENT);
    assert_int_equal(mp_list_sort(l, false), MP_ETYPE);
    mp_item bad = {.type = MP_ITEM_STR, .v.s = {"\xff\xfe", 2}};
    assert_int_equal(mp_list_append(l, &bad), -EINVAL);
    mp_item two[] = {I(5), bad};
    assert_int_equal(mp_list_extend(l, two, 2), -EINVAL);
    assert_int_equal(mp_list_append(l, &(mp_item){.type = (mp_item_type)99}), -EINVAL);
    assert_int_equal(mp_list_slice(l, 0, 1, 0, NULL, NULL), -EINVAL);
    assert_int_equal(mp_list_del_slice(l, 0, 1, 0), -EINVAL);
    assert_true(LIST_IS(l, "[1, 'x', None]"));
    /* A container of another manager cannot be stored. */
    mp_manager *other;
    mp_list *foreign;
    assert_int_equal(mp_manager_open(&other, NULL), 0);
    assert_int_equal(mp_list_open(&foreign, other, NULL, 0), 0);
    assert_int_equal(mp_list_append(l, &(mp_item){.type = MP_ITEM_LIST, .v.list = foreign}),
                     -EINVAL);
    mp_list_close(foreign);
    mp_manager_close(other);
    /* A single item of any kind sorts; a list of only None does not. */
    mp_item one = mp_item_none();
    mp_list *l1;
    assert_int_equal(mp_list_open(&l1, mgr, &one, 1), 0);
    assert_int_equal(mp_list_sort(l1, false), 0);
    assert_int_equal(mp_list_append(l1, &one), 0);
    assert_int_equal(mp_list_sort(l1, false), MP_ETYPE);
    mp_list_close(l1);
    assert_int_equal(mp_list_len(NULL), -EINVAL);
    mp_list_close(l);
}

/* ---- dict -------------------------------------------------------------------------------------
 */

static void
test_dict_operations_match_python(void **state)
{
    (void)state;
    mp_dict *d;
    mp_item it, k1 = I(1), kf = mp_item_float(1.0), kt = mp_item_bool(true);
    assert_int_equal(mp_dict_open(&d, mgr), 0);
    assert_int_equal(mp_dict_set(d, &k1, &(mp_item){.type = MP_ITEM_STR, .v.s = {"a", 1}}), 0);
    assert_int_equal(mp_dict_set(d, &kf, &(mp_item){.type = MP_ITEM_STR, .v.s = {"b", 1}}), 0);
    assert_int_equal(mp_dict_set(d, &kt, &(mp_item){.type = MP_ITEM_STR, .v.s = {"c", 1}}), 0);
    assert_true(DICT_IS(d, "{1: 'c'}"));
    mp_item none = mp_item_none(), sk = S("key"), bk = mp_item_bytes("key", 3);
    assert_int_equal(mp_dict_set(d, &none, &kf), 0);
    assert_int_equal(mp_dict_set(d, &sk, &k1), 0);
    assert_int_equal(mp_dict_set(d, &bk, &kt), 0);
    assert_int_equal(mp_dict_len(d), 4);
    assert_true(DICT_IS(d, "{1: 'c', None: 1.0, 'key': 1, b'key': True}"));
    assert_int_equal(mp_dict_get(d, &kt, NULL, &it), 0);
    assert_string_equal(it.v.s.ptr, "c");
    mp_item_clear(&it);
    mp_item missing = S("missing");
    assert_int_equal(mp_dict_get(d, &missing, NULL, &it), -ENOENT);
    assert_int_equal(mp_dict_get(d, &missing, &sk, &it), 0);
    assert_string_equal(it.v.s.ptr, "key");
    mp_item_clear(&it);
    assert_int_equal(mp_dict_contains(d, &bk), 1);
    assert_int_equal(mp_dict_contains(d, &missing), 0);
    mp_list *l;
    assert_int_equal(mp_list_open(&l, mgr, NULL, 0), 0);
    mp_item lk = mp_item_list(l);
    assert_int_equal(mp_dict_set(d, &lk, &k1), MP_ETYPE);
    assert_int_equal(mp_dict_get(d, &lk, NULL, &it), MP_ETYPE);

    assert_int_equal(mp_dict_setdefault(d, &sk, &none, &it), 0);
    assert_true(it.type == MP_ITEM_INT && it.v.i == 1);
    assert_int_equal(mp_dict_setdefault(d, &missing, NULL, &it), 0);
    assert_int_equal(it.type, MP_ITEM_NONE);
    assert_int_equal(mp_dict_pop(d, &missing, NULL, &it), 0);
    assert_int_equal(mp_dict_pop(d, &missing, NULL, &it), -ENOENT);
    assert_int_equal(mp_dict_pop(d, &missing, &k1, &it), 0);
    assert_int_equal(it.v.i, 1);
    assert_int_equal(mp_dict_del(d, &missing), -ENOENT);
    assert_int_equal(mp_dict_del(d, &none), 0);

    mp_item uk[] = {S("z"), kt, S("long key that is not inline")};
    mp_item uv[] = {I(26), S("one"), mp_item_float(0.25)};
    mp_item bad_keys[] = {S("stored?"), lk};
    assert_int_equal(mp_dict_update(d, bad_keys, uv, 2), MP_ETYPE);
    assert_int_equal(mp_dict_contains(d, &bad_keys[0]), 0);
    mp_list_close(l);
    assert_int_equal(mp_dict_update(d, uk, uv, 3), 0);
    assert_true(DICT_IS(
        d, "{1: 'one', 'key': 1, b'key': True, 'z': 26, 'long key that is not inline': 0.25}"));
    mp_item *keys, *vals;
    size_t n;
    assert_int_equal(mp_dict_items(d, &keys, &vals, &n), 0);
    assert_int_equal(n, 5);
    assert_int_equal(keys[3].type, MP_ITEM_STR);
    assert_string_equal(keys[3].v.s.ptr, "z");
    assert_int_equal(vals[3].v.i, 26);
    mp_items_free(keys, n);
    mp_items_free(vals, n);
    assert_int_equal(mp_dict_keys(d, &keys, &n), 0);
    assert_int_equal(n, 5);
    mp_items_free(keys, n);
    assert_int_equal(mp_dict_values(d, &vals, &n), 0);
    mp_items_free(vals, n);

    mp_dict *c;
    assert_int_equal(mp_dict_copy(d, &c), 0);
    mp_item pk, pv;
    assert_int_equal(mp_dict_popitem(d, &pk, &pv), 0);
    assert_string_equal(pk.v.s.ptr, "long key that is not inline");
    assert_true(pv.v.f == 0.25);
    mp_item_clear(&pk);
    assert_int_equal(mp_dict_popitem(d, &pk, &pv), 0);
    assert_string_equal(pk.v.s.ptr, "z");
    mp_item_clear(&pk);
    assert_int_equal(mp_dict_clear(d), 0);
    assert_int_equal(mp_dict_len(d), 0);
    assert_int_equal(mp_dict_popitem(d, &pk, &pv), -ENOENT);
    assert_true(DICT_IS(d, "{}"));
    assert_true(DICT_IS(
        c, "{1: 'one', 'key': 1, b'key': True, 'z': 26, 'long key that is not inline': 0.25}"));
    /* Items are copies: changing one changes nothing in the dict (Python's P10 pitfall). */
    assert_int_equal(mp_dict_get(c, &uk[2], NULL, &it), 0);
    assert_int_equal(mp_dict_get(c, &sk, NULL, &it), 0);
    it.v.i = 1000;
    assert_true(DICT_IS(c, "{1: 'one', 'key': 1, b'key': True, 'z': 26, "
                           "'long key that is not inline': 0.25}"));
    mp_dict_close(c);
    mp_dict_close(d);
}

static void
test_namespace_attributes(void **state)
{
    (void)state;
    mp_namespace *ns;
    mp_item it;
    assert_int_equal(mp_namespace_open(&ns, mgr), 0);
    assert_true(NS_IS(ns, "Namespace()"));
    assert_int_equal(mp_namespace_set(ns, "y", &(mp_item){.type = MP_ITEM_STR, .v.s = {"x", 1}}),
                     0);
    assert_int_equal(mp_namespace_set(ns, "x", &(mp_item){.type = MP_ITEM_INT, .v.i = 10}), 0);
    assert_true(NS_IS(ns, "Namespace(x=10, y='x')"));
    assert_int_equal(mp_namespace_get(ns, "x", &it), 0);
    assert_int_equal(it.v.i, 10);
    assert_int_equal(mp_namespace_get(ns, "nope", &it), -ENOENT);
    assert_int_equal(mp_namespace_set(ns, "_private", &it), -EINVAL);
    assert_int_equal(mp_namespace_set(ns, "", &it), -EINVAL);
    assert_int_equal(mp_namespace_del(ns, "y"), 0);
    assert_int_equal(mp_namespace_del(ns, "y"), -ENOENT);
    assert_true(NS_IS(ns, "Namespace(x=10)"));
    mp_namespace_close(ns);
}

static void
test_nested_containers_are_shared(void **state)
{
    (void)state;
    mp_dict *d;
    mp_list *l;
    mp_namespace *ns;
    assert_int_equal(mp_dict_open(&d, mgr), 0);
    assert_int_equal(mp_list_open(&l, mgr, NULL, 0), 0);
    assert_int_equal(mp_namespace_open(&ns, mgr), 0);
    mp_item k = S("k");
    assert_int_equal(mp_dict_set(d, &k, &(mp_item){.type = MP_ITEM_LIST, .v.list = l}), 0);
    assert_int_equal(mp_namespace_set(ns, "d", &(mp_item){.type = MP_ITEM_DICT, .v.dict = d}), 0);
    mp_item got;
    assert_int_equal(mp_dict_get(d, &k, NULL, &got), 0);
    assert_int_equal(got.type, MP_ITEM_LIST);
    assert_int_equal(mp_list_append(got.v.list, &k), 0); /* through the copy's handle */
    mp_item_clear(&got);
    assert_true(LIST_IS(l, "['k']"));
    assert_true(NS_IS(ns, "Namespace(d={'k': ['k']})"));
    /* A list inside itself prints as Python's [...]. */
    assert_int_equal(mp_list_append(l, &(mp_item){.type = MP_ITEM_LIST, .v.list = l}), 0);
    assert_true(LIST_IS(l, "['k', [...]]"));
    assert_int_equal(mp_list_count(l, &(mp_item){.type = MP_ITEM_LIST, .v.list = l}), 1);
    mp_namespace_close(ns);
    mp_list_close(l);
    mp_dict_close(d);
}

/* ---- from children ------------------------------------------------------------------------- */

static mp_list *g_list;
static mp_dict *g_dict;
static mp_namespace *g_ns;

static int
child_every_op(void *arg)
{
    (void)arg;
    mp_item it;
    CHILD_CHECK(LIST_IS(g_list, "[1, 2, 3]"));
    CHILD_CHECK(mp_list_append(g_list, &(mp_item){.type = MP_ITEM_STR, .v.s = {"c", 1}}) == 0);
    CHILD_CHECK(mp_list_insert(g_list, 0, &(mp_item){.type = MP_ITEM_INT, .v.i = 0}) == 0);
    CHILD_CHECK(mp_list_set(g_list, 1, &(mp_item){.type = MP_ITEM_INT, .v.i = 10}) == 0);
    CHILD_CHECK(mp_list_pop(g_list, 2, &it) == 0 && it.v.i == 2);
    CHILD_CHECK(mp_list_remove(g_list, &(mp_item){.type = MP_ITEM_INT, .v.i = 3}) == 0);
    CHILD_CHECK(mp_list_reverse(g_list) == 0);
    CHILD_CHECK(LIST_IS(g_list, "['c', 10, 0]"));
    mp_item k = S("from child");
    CHILD_CHECK(mp_dict_set(g_dict, &k, &(mp_item){.type = MP_ITEM_FLOAT, .v.f = 2.5}) == 0);
    CHILD_CHECK(mp_dict_del(g_dict, &(mp_item){.type = MP_ITEM_INT, .v.i = 1}) == 0);
    CHILD_CHECK(mp_namespace_set(g_ns, "child", &(mp_item){.type = MP_ITEM_BOOL, .v.b = true}) ==
                0);
    /* A container opened in the child, stored where the parent finds it. */
    mp_list *mine;
    mp_item vals[] = {S("made"), S("in child")};
    CHILD_CHECK(mp_list_open(&mine, mgr, vals, 2) == 0);
    CHILD_CHECK(mp_namespace_set(g_ns, "list", &(mp_item){.type = MP_ITEM_LIST, .v.list = mine}) ==
                0);
    mp_list_close(mine);
    CHILD_CHECK(mp_manager_shutdown(mgr) == -EPERM);
    return 0;
}

static void
test_every_operation_from_a_child(void **state)
{
    (void)state;
    mp_item init[] = {I(1), I(2), I(3)};
    assert_int_equal(mp_list_open(&g_list, mgr, init, 3), 0);
    assert_int_equal(mp_dict_open(&g_dict, mgr), 0);
    assert_int_equal(mp_namespace_open(&g_ns, mgr), 0);
    assert_int_equal(mp_dict_set(g_dict, &init[0], &init[1]), 0);
    pid_t pid = th_fork(child_every_op, NULL);
    assert_true(pid > 0);
    assert_child_ok(pid);
    assert_true(LIST_IS(g_list, "['c', 10, 0]"));
    assert_true(DICT_IS(g_dict, "{'from child': 2.5}"));
    assert_true(NS_IS(g_ns, "Namespace(child=True, list=['made', 'in child'])"));
    mp_list_close(g_list);
    mp_dict_close(g_dict);
    mp_namespace_close(g_ns);
}

/* The operations child_every_op does not use, from a child. */
static int
child_more_ops(void *arg)
{
    (void)arg;
    mp_item it, *items, *keys, *vals;
    size_t n;
    mp_item ints[] = {I(5), I(1), I(4), I(1)};
    CHILD_CHECK(mp_list_extend(g_list, ints, 4) == 0);
    CHILD_CHECK(mp_list_count(g_list, &ints[1]) == 2);
    CHILD_CHECK(mp_list_index(g_list, &ints[2]) == 2);
    CHILD_CHECK(mp_list_contains(g_list, &ints[0]) == 1);
    CHILD_CHECK(mp_list_sort(g_list, false) == 0);
    CHILD_CHECK(LIST_IS(g_list, "[1, 1, 4, 5]"));
    CHILD_CHECK(mp_list_slice(g_list, 1, 3, 1, &items, &n) == 0 && n == 2 && items[1].v.i == 4);
    mp_items_free(items, n);
    CHILD_CHECK(mp_list_set_slice(g_list, 0, 2, &ints[0], 1) == 0);
    CHILD_CHECK(mp_list_del_slice(g_list, -1, MP_SLICE_DEFAULT, 1) == 0);
    CHILD_CHECK(mp_list_get(g_list, 0, &it) == 0 && it.v.i == 5);
    CHILD_CHECK(LIST_IS(g_list, "[5, 4]"));
    mp_item ks[] = {S("a"), S("b"), S("c")};
    CHILD_CHECK(mp_dict_update(g_dict, ks, ints, 3) == 0);
    CHILD_CHECK(mp_dict_get(g_dict, &ks[1], NULL, &it) == 0 && it.v.i == 1);
    CHILD_CHECK(mp_dict_contains(g_dict, &ks[2]) == 1);
    CHILD_CHECK(mp_dict_setdefault(g_dict, &ks[0], &ints[3], &it) == 0 && it.v.i == 5);
    CHILD_CHECK(mp_dict_pop(g_dict, &ks[0], NULL, &it) == 0 && it.v.i == 5);
    CHILD_CHECK(mp_dict_popitem(g_dict, &it, NULL) == 0 && strcmp(it.v.s.ptr, "c") == 0);
    mp_item_clear(&it);
    CHILD_CHECK(mp_dict_items(g_dict, &keys, &vals, &n) == 0 && n == 1);
    mp_items_free(keys, n);
    mp_items_free(vals, n);
    CHILD_CHECK(mp_dict_keys(g_dict, &keys, &n) == 0 && n == 1);
    mp_items_free(keys, n);
    CHILD_CHECK(mp_dict_values(g_dict, &vals, &n) == 0 && n == 1);
    mp_items_free(vals, n);
    mp_dict *copy;
    CHILD_CHECK(mp_dict_copy(g_dict, &copy) == 0);
    CHILD_CHECK(mp_dict_clear(g_dict) == 0 && mp_dict_len(g_dict) == 0);
    CHILD_CHECK(mp_namespace_set(g_ns, "copy", &(mp_item){.type = MP_ITEM_DICT, .v.dict = copy}) ==
                0);
    mp_dict_close(copy);
    CHILD_CHECK(mp_namespace_get(g_ns, "gone", &it) == 0 && it.v.i == 1);
    CHILD_CHECK(mp_namespace_del(g_ns, "gone") == 0);
    mp_list *tmp;
    CHILD_CHECK(mp_list_open(&tmp, mgr, ints, 4) == 0);
    CHILD_CHECK(mp_list_clear(tmp) == 0 && mp_list_len(tmp) == 0);
    mp_list_close(tmp);
    return 0;
}

static void
test_the_other_operations_from_a_child(void **state)
{
    (void)state;
    assert_int_equal(mp_list_open(&g_list, mgr, NULL, 0), 0);
    assert_int_equal(mp_dict_open(&g_dict, mgr), 0);
    assert_int_equal(mp_namespace_open(&g_ns, mgr), 0);
    assert_int_equal(mp_namespace_set(g_ns, "gone", &(mp_item){.type = MP_ITEM_INT, .v.i = 1}), 0);
    pid_t pid = th_fork(child_more_ops, NULL);
    assert_true(pid > 0);
    assert_child_ok(pid);
    assert_true(LIST_IS(g_list, "[5, 4]"));
    assert_true(DICT_IS(g_dict, "{}"));
    assert_true(NS_IS(g_ns, "Namespace(copy={'b': 1})"));
    mp_list_close(g_list);
    mp_dict_close(g_dict);
    mp_namespace_close(g_ns);
}

#define APPENDERS 4
#define PER_APPENDER 5000

static th_barrier *g_bar, *g_bar2;

static int
child_append(void *arg)
{
    int64_t who = (int64_t)(intptr_t)arg;
    CHILD_CHECK(th_barrier_wait(g_bar) == 0);
    for (int64_t i = 0; i < PER_APPENDER; i++)
        CHILD_CHECK(
            mp_list_append(g_list, &(mp_item){.type = MP_ITEM_INT, .v.i = who * 1000000 + i}) == 0);
    return 0;
}

static void
test_concurrent_appends_from_four_processes_lose_nothing(void **state)
{
    (void)state;
    assert_int_equal(mp_list_open(&g_list, mgr, NULL, 0), 0);
    g_bar = th_barrier_new(APPENDERS);
    pid_t pids[APPENDERS];
    for (int i = 0; i < APPENDERS; i++)
        assert_true((pids[i] = th_fork(child_append, (void *)(intptr_t)i)) > 0);
    for (int i = 0; i < APPENDERS; i++)
        assert_child_ok(pids[i]);
    assert_int_equal(mp_list_len(g_list), APPENDERS * PER_APPENDER);
    mp_item *items;
    size_t n;
    assert_int_equal(mp_list_slice(g_list, MP_SLICE_DEFAULT, MP_SLICE_DEFAULT, 1, &items, &n), 0);
    int64_t next[APPENDERS] = {0};
    for (size_t i = 0; i < n; i++) {
        int64_t who = items[i].v.i / 1000000, seq = items[i].v.i % 1000000;
        assert_true(who >= 0 && who < APPENDERS);
        assert_int_equal(seq, next[who]); /* each appender's items in its order, none twice */
        next[who]++;
    }
    mp_items_free(items, n);
    th_barrier_free(g_bar);
    mp_list_close(g_list);
}

#define BIG 100000

static int
child_check_big(void *arg)
{
    (void)arg;
    char key[32];
    mp_item it;
    for (int i = 0; i < BIG; i += 7) {
        snprintf(key, sizeof key, "key-%d", i);
        mp_item k = S(key);
        CHILD_CHECK(mp_dict_get(g_dict, &k, NULL, &it) == 0 && it.v.i == i);
    }
    return 0;
}

static void
test_dict_with_100k_keys(void **state)
{
    (void)state;
    assert_int_equal(mp_dict_open(&g_dict, mgr), 0);
    char key[32];
    for (int i = 0; i < BIG; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        mp_item k = S(key);
        assert_int_equal(mp_dict_set(g_dict, &k, &(mp_item){.type = MP_ITEM_INT, .v.i = i}), 0);
    }
    assert_int_equal(mp_dict_len(g_dict), BIG);
    pid_t pid = th_fork(child_check_big, NULL);
    assert_true(pid > 0);
    assert_child_ok(pid);
    for (int i = 0; i < BIG; i += 2) {
        snprintf(key, sizeof key, "key-%d", i);
        mp_item k = S(key);
        assert_int_equal(mp_dict_del(g_dict, &k), 0);
    }
    assert_int_equal(mp_dict_len(g_dict), BIG / 2);
    mp_item *keys;
    size_t n;
    assert_int_equal(mp_dict_keys(g_dict, &keys, &n), 0);
    assert_int_equal(n, BIG / 2);
    assert_string_equal(keys[0].v.s.ptr, "key-1");
    assert_string_equal(keys[n - 1].v.s.ptr, "key-99999");
    mp_items_free(keys, n);
    mp_dict_close(g_dict);
}

static int
child_grow_heap(void *arg)
{
    (void)arg;
    static char big[200000];
    for (int i = 0; i < 40; i++) {
        memset(big, 'a' + i % 26, sizeof big);
        CHILD_CHECK(mp_list_append(
                        g_list, &(mp_item){.type = MP_ITEM_BYTES, .v.s = {big, sizeof big}}) == 0);
    }
    return 0;
}

static void
test_heap_grown_by_a_child_is_seen_by_the_parent(void **state)
{
    (void)state;
    assert_int_equal(mp_list_open(&g_list, mgr, NULL, 0), 0);
    pid_t pid = th_fork(child_grow_heap, NULL);
    assert_true(pid > 0);
    assert_child_ok(pid);
    mp_item it;
    assert_int_equal(mp_list_len(g_list), 40);
    assert_int_equal(mp_list_get(g_list, 39, &it), 0);
    assert_int_equal(it.v.s.len, 200000);
    assert_int_equal(it.v.s.ptr[199999], 'a' + 39 % 26);
    mp_item_clear(&it);
    mp_list_close(g_list);
}

#define THREADS 4
#define PER_THREAD 2000

static void *
thread_append(void *arg)
{
    char text[120];
    memset(text, 'a' + (int)(intptr_t)arg, sizeof text);
    for (int i = 0; i < PER_THREAD; i++) {
        mp_item it = mp_item_bytes(text, sizeof text);
        if (mp_list_append(g_list, &it) != 0)
            return (void *)1;
    }
    return NULL;
}

/* Threads of one process share handles; their appends also grow the heap, so the mapping is
 * extended while other threads use it. */
static void
test_threads_share_handles_while_the_heap_grows(void **state)
{
    (void)state;
    assert_int_equal(mp_list_open(&g_list, mgr, NULL, 0), 0);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, thread_append, (void *)(intptr_t)i), 0);
    for (int i = 0; i < THREADS; i++) {
        void *r;
        assert_int_equal(pthread_join(t[i], &r), 0);
        assert_null(r);
    }
    assert_int_equal(mp_list_len(g_list), THREADS * PER_THREAD);
    for (int i = 0; i < THREADS; i++) {
        char text[120];
        memset(text, 'a' + i, sizeof text);
        mp_item it = mp_item_bytes(text, sizeof text);
        assert_int_equal(mp_list_count(g_list, &it), PER_THREAD);
    }
    mp_list_close(g_list);
}

/* ---- crashes ------------------------------------------------------------------------------- */

/* Each case: an operation that passes the fault point and what a survivor must then find (as
 * Python's repr; NULL: only check consistency). */
typedef struct fault_case {
    const char *point;
    int op;
    const char *want;
} fault_case;

enum {
    OP_LIST_SET,      /* l[1] = 'replaced by a long string' */
    OP_LIST_SET_BACK, /* the long string first, then l[1] = 2 (frees its block) */
    OP_LIST_APPEND,
    OP_LIST_INSERT,
    OP_DICT_SET, /* a new key, then more until the point fires */
    OP_DICT_DEL,
    OP_DICT_REPLACE,
};

#define LONG_SET "[1, 'replaced by a long string', 3]"

static const fault_case fault_cases[] = {
    {"manager.log.committed", OP_LIST_SET, LONG_SET},
    {"manager.log.applying", OP_LIST_SET, LONG_SET},
    {"manager.heap.popped", OP_LIST_SET, "[1, 2, 3]"},
    {"manager.heap.linked", OP_LIST_SET_BACK, "[1, 2, 3]"},
    {"manager.list.append.written", OP_LIST_APPEND, "[1, 2, 3]"},
    {"manager.list.published", OP_LIST_INSERT, "[1, 'ins', 2, 3]"},
    {"manager.log.committed", OP_DICT_SET, "{'a': 1, 'new key here!': 2}"},
    {"manager.log.applying", OP_DICT_SET, "{'a': 1, 'new key here!': 2}"},
    {"manager.log.applying", OP_DICT_DEL, "{}"},
    {"manager.log.applying", OP_DICT_REPLACE, "{'a': 'another long value'}"},
    {"manager.dict.grown", OP_DICT_SET, NULL},
    {"manager.heap.grown", OP_DICT_SET, NULL},
};

static int
child_fault(void *arg)
{
    const fault_case *fc = arg;
    mp_item longs = S("replaced by a long string"), k = S("new key here!"), a = S("a"), two = I(2);
    char key[40];
    /* Leave a free block of the long string's size, so that the next set pops it. */
    CHILD_CHECK(mp_list_set(g_list, 1, &longs) == 0);
    if (fc->op != OP_LIST_SET_BACK)
        CHILD_CHECK(mp_list_set(g_list, 1, &two) == 0);
    CHILD_CHECK(mp__fault_arm(fc->point, 1, NULL, NULL) == 0);
    switch (fc->op) {
    case OP_LIST_SET:
        mp_list_set(g_list, 1, &longs);
        break;
    case OP_LIST_SET_BACK:
        mp_list_set(g_list, 1, &two);
        break;
    case OP_LIST_APPEND:
        mp_list_append(g_list, &longs);
        break;
    case OP_LIST_INSERT:
        mp_list_insert(g_list, 1, &(mp_item){.type = MP_ITEM_STR, .v.s = {"ins", 3}});
        break;
    case OP_DICT_SET:
        mp_dict_set(g_dict, &k, &two);
        for (int i = 0; i < 1000000; i++) {
            snprintf(key, sizeof key, "filler-%d-with-some-length", i);
            mp_item fk = S(key);
            mp_dict_set(g_dict, &fk, &(mp_item){.type = MP_ITEM_INT, .v.i = i});
        }
        break;
    case OP_DICT_DEL:
        mp_dict_del(g_dict, &a);
        break;
    case OP_DICT_REPLACE:
        mp_dict_set(g_dict, &a, &(mp_item){.type = MP_ITEM_STR, .v.s = {"another long value", 18}});
        break;
    }
    return 3; /* the fault point did not fire */
}

/* check_dict_consistent - every key listed can be found with its value, len agrees. */
static void
check_dict_consistent(mp_dict *d)
{
    mp_item *keys, *vals;
    size_t n;
    assert_int_equal(mp_dict_items(d, &keys, &vals, &n), 0);
    assert_int_equal(mp_dict_len(d), (ssize_t)n);
    for (size_t i = 0; i < n; i++) {
        mp_item v;
        assert_int_equal(mp_dict_get(d, &keys[i], NULL, &v), 0);
        assert_int_equal(v.type, vals[i].type);
        if (v.type == MP_ITEM_INT)
            assert_int_equal(v.v.i, vals[i].v.i);
        mp_item_clear(&v);
    }
    mp_items_free(keys, n);
    mp_items_free(vals, n);
}

static void
test_sigkill_at_fault_points_leaves_containers_consistent(void **state)
{
    (void)state;
    if (!mp__fault_enabled())
        skip();
    for (size_t i = 0; i < MP__ARRAY_LEN(fault_cases); i++) {
        const fault_case *fc = &fault_cases[i];
        mp_item init[] = {I(1), I(2), I(3)}, a = S("a");
        assert_int_equal(mp_list_open(&g_list, mgr, init, 3), 0);
        assert_int_equal(mp_dict_open(&g_dict, mgr), 0);
        assert_int_equal(mp_dict_set(g_dict, &a, &init[0]), 0);
        pid_t pid = th_fork(child_fault, (void *)fc);
        assert_true(pid > 0);
        int st = th_wait(pid, 60000);
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
            fprintf(stderr, "fault point %s did not fire (status %d)\n", fc->point, st);
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        if (fc->op <= OP_LIST_INSERT) {
            assert_true(LIST_IS(g_list, fc->want));
            /* The survivor goes on: the list works normally. */
            assert_int_equal(mp_list_append(g_list, &a), 0);
            assert_int_equal(mp_list_pop(g_list, -1, NULL), 0);
            assert_true(LIST_IS(g_list, fc->want));
        } else {
            if (fc->want != NULL)
                assert_true(DICT_IS(g_dict, fc->want));
            check_dict_consistent(g_dict);
            mp_item k = S("survivor");
            assert_int_equal(mp_dict_set(g_dict, &k, &init[2]), 0);
            check_dict_consistent(g_dict);
        }
        mp_list_close(g_list);
        mp_dict_close(g_dict);
    }
}

/* Random kills: workers hammer one dict and one list while the parent SIGKILLs them at random
 * moments; after each round the containers must be consistent and usable. */
static int
child_hammer(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    char key[40];
    for (;;) {
        unsigned r = (unsigned)rand_r(&seed);
        snprintf(key, sizeof key, "hammered key number %u", r % 512);
        mp_item k = S(key), v = {.type = MP_ITEM_INT, .v.i = (int64_t)(r % 512)};
        switch (r % 12) {
        case 0:
            mp_dict_del(g_dict, &k);
            break;
        case 1:
        case 2:
            mp_list_append(g_list, &k);
            break;
        case 3:
            if (mp_list_len(g_list) > 64)
                mp_list_pop(g_list, 0, NULL);
            break;
        case 4:
            mp_list_insert(g_list, (ptrdiff_t)(r % 7), &k);
            break;
        case 5:
            mp_list_set(g_list, -1, &k);
            break;
        case 6:
            mp_list_sort(g_list, (r & 64) != 0);
            break;
        case 7:
            if (mp_list_len(g_list) > 64)
                mp_list_del_slice(g_list, 0, 32, 2);
            break;
        case 8:
            mp_dict_popitem(g_dict, NULL, NULL);
            break;
        default:
            mp_dict_set(g_dict, &k, &v);
        }
    }
    return 0;
}

static void
test_random_kills_leave_containers_consistent(void **state)
{
    (void)state;
    assert_int_equal(mp_list_open(&g_list, mgr, NULL, 0), 0);
    assert_int_equal(mp_dict_open(&g_dict, mgr), 0);
    unsigned seed = 12345;
    for (int round = 0; round < 20; round++) {
        pid_t pids[2];
        for (int i = 0; i < 2; i++)
            assert_true((pids[i] = th_fork(child_hammer, (void *)(uintptr_t)(round * 2 + i))) > 0);
        struct timespec ts = {0, (long)(rand_r(&seed) % 20000) * 1000};
        nanosleep(&ts, NULL); /* a random moment, not synchronisation */
        for (int i = 0; i < 2; i++) {
            kill(pids[i], SIGKILL);
            th_wait(pids[i], 10000);
        }
        check_dict_consistent(g_dict);
        mp_item *items;
        size_t n;
        assert_int_equal(mp_list_slice(g_list, MP_SLICE_DEFAULT, MP_SLICE_DEFAULT, 1, &items, &n),
                         0);
        assert_int_equal((size_t)mp_list_len(g_list), n);
        for (size_t i = 0; i < n; i++)
            assert_true(items[i].type == MP_ITEM_STR &&
                        strncmp(items[i].v.s.ptr, "hammered key number ", 20) == 0);
        mp_items_free(items, n);
    }
    mp_list_close(g_list);
    mp_dict_close(g_dict);
}

/* ---- lifetime -------------------------------------------------------------------------------- */

static bool
shm_exists(const char *name)
{
    char path[300];
    struct stat st;
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    return stat(path, &st) == 0;
}

static void
test_shutdown_makes_operations_fail_and_leaves_nothing(void **state)
{
    (void)state;
    mp_manager *m;
    mp_list *l;
    mp_dict *d;
    mp_manager_opts o = {.name = "mpipc_test_manager_named", .max_size = 16 << 20};
    assert_int_equal(mp_manager_open(&m, &o), 0);
    assert_string_equal(mp_manager_name(m), "mpipc_test_manager_named");
    assert_int_equal(mp_manager_open(&(mp_manager *){NULL}, &o), -EEXIST);
    assert_true(shm_exists("mpipc_test_manager_named"));
    assert_int_equal(mp_list_open(&l, m, NULL, 0), 0);
    assert_int_equal(mp_dict_open(&d, m), 0);
    assert_int_equal(mp_list_append(l, &(mp_item){.type = MP_ITEM_NONE}), 0);
    pid_t mp = mp_manager_pid(m);
    assert_true(mp > 0);
    assert_int_equal(mp_manager_shutdown(m), 0);
    assert_int_equal(mp_manager_shutdown(m), 0);
    assert_false(shm_exists("mpipc_test_manager_named"));
    assert_int_equal(kill(mp, 0), -1); /* reaped: the pid is gone */
    assert_int_equal(mp_list_len(l), -EBADF);
    assert_int_equal(mp_list_append(l, &(mp_item){.type = MP_ITEM_NONE}), -EBADF);
    assert_int_equal(
        mp_dict_set(d, &(mp_item){.type = MP_ITEM_NONE}, &(mp_item){.type = MP_ITEM_NONE}), -EBADF);
    assert_int_equal(mp_list_open(&(mp_list *){NULL}, m, NULL, 0), -EBADF);
    mp_manager_close(m);
    /* The handles outlive the manager handle safely. */
    assert_int_equal(mp_list_len(l), -EBADF);
    mp_list_close(l);
    mp_dict_close(d);
    /* A heap with a small reserve reports -ENOMEM when it is full, and stays usable. */
    o.max_size = 1 << 20;
    assert_int_equal(mp_manager_open(&m, &o), 0);
    assert_int_equal(mp_list_open(&l, m, NULL, 0), 0);
    static char big[300000];
    mp_item b = mp_item_bytes(big, sizeof big);
    int r = 0;
    for (int i = 0; i < 10 && r == 0; i++)
        r = mp_list_append(l, &b);
    assert_int_equal(r, -ENOMEM);
    assert_true(mp_list_len(l) >= 1);
    assert_int_equal(mp_list_append(l, &(mp_item){.type = MP_ITEM_INT, .v.i = 1}), 0);
    mp_list_close(l);
    mp_manager_close(m);
}

typedef struct owner_report {
    char name[256];
    pid_t manager;
    pid_t worker;
    _Atomic int worker_result;
} owner_report;

static owner_report *g_rep;

static int
worker_after_owner(void *arg)
{
    mp_list *l = arg;
    CHILD_CHECK(th_barrier_wait(g_bar) == 0);  /* the owner is about to die */
    CHILD_CHECK(th_barrier_wait(g_bar2) == 0); /* the owner is dead and its manager gone */
    atomic_store(&g_rep->worker_result, mp_list_len(l) == -EBADF ? 1 : 2);
    return 0;
}

static int
owner(void *arg)
{
    (void)arg;
    mp_manager *m;
    mp_list *l;
    CHILD_CHECK(mp_manager_open(&m, NULL) == 0);
    CHILD_CHECK(mp_list_open(&l, m, NULL, 0) == 0);
    snprintf(g_rep->name, sizeof g_rep->name, "%s", mp_manager_name(m));
    g_rep->manager = mp_manager_pid(m);
    g_rep->worker = th_fork(worker_after_owner, l);
    CHILD_CHECK(g_rep->worker > 0);
    CHILD_CHECK(th_barrier_wait(g_bar) == 0);
    raise(SIGKILL);
    return 1;
}

static void
test_owner_killed_leaves_no_segment_and_no_process(void **state)
{
    (void)state;
    g_rep = th_shared(sizeof *g_rep);
    g_bar = th_barrier_new(3);
    g_bar2 = th_barrier_new(2);
    pid_t pid = th_fork(owner, NULL);
    assert_true(pid > 0);
    assert_int_equal(th_barrier_wait(g_bar), 0);
    int st = th_wait(pid, 30000);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    /* The manager process (now our child: the test runner is a subreaper) notices the owner's
     * death, removes the name and exits. */
    st = th_wait(g_rep->manager, 10000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_false(shm_exists(g_rep->name));
    assert_int_equal(th_barrier_wait(g_bar2), 0);
    st = th_wait(g_rep->worker, 30000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(atomic_load(&g_rep->worker_result), 1);
    th_barrier_free(g_bar);
    th_barrier_free(g_bar2);
    th_shared_free(g_rep, sizeof *g_rep);
}

/* Our children from /proc (orphans of a killed child are re-parented to the test runner, a
 * subreaper), skipping `known`. */
static pid_t
find_child(pid_t known)
{
    DIR *d = opendir("/proc");
    pid_t found = 0, self = getpid();
    struct dirent *e;
    while (d != NULL && found == 0 && (e = readdir(d)) != NULL) {
        pid_t pid = (pid_t)atoi(e->d_name);
        char path[64], buf[512];
        if (pid <= 0 || pid == known)
            continue;
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *rp = strrchr(buf, ')'), state;
        int ppid;
        if (rp != NULL && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == self)
            found = pid;
    }
    if (d != NULL)
        closedir(d);
    return found;
}

static int
child_open_and_die(void *arg)
{
    (void)arg;
    mp_manager *m;
    CHILD_CHECK(mp__fault_arm("manager.open.forked", 1, NULL, NULL) == 0);
    mp_manager_open(&m, NULL);
    return 3; /* the fault point did not fire */
}

static bool
shm_has_prefix(const char *prefix)
{
    DIR *d = opendir("/dev/shm");
    struct dirent *e;
    bool found = false;
    while (d != NULL && !found && (e = readdir(d)) != NULL)
        found = strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    if (d != NULL)
        closedir(d);
    return found;
}

static void
test_owner_killed_right_after_the_fork_leaves_nothing(void **state)
{
    (void)state;
    if (!mp__fault_enabled())
        skip();
    pid_t pid = th_fork(child_open_and_die, NULL);
    assert_true(pid > 0);
    /* Generated names carry the creator's pid. */
    char prefix[32];
    snprintf(prefix, sizeof prefix, "mpsm_s_%d_", (int)pid);
    int st = th_wait(pid, 30000);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    pid_t mgr_pid = 0;
    for (int64_t end = th_now_ms() + 10000; th_now_ms() < end && mgr_pid == 0;)
        mgr_pid = find_child(0);
    assert_true(mgr_pid > 0);
    st = th_wait(mgr_pid, 10000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_false(shm_has_prefix(prefix));
}

static void
test_open_fails_cleanly_without_memory(void **state)
{
    (void)state;
    for (long n = 0; n < 20; n++) {
        mp_manager *m = NULL;
        mp__alloc_fail_after(n);
        int r = mp_manager_open(&m, NULL);
        mp__alloc_fail_after(-1);
        if (r == 0) {
            mp_manager_close(m);
            break;
        }
        assert_int_equal(r, -ENOMEM);
    }
    mp_list *l;
    for (long n = 0; n < 20; n++) {
        mp_item it = S("an item long enough to be stored in a block");
        mp__alloc_fail_after(n);
        int r = mp_list_open(&l, mgr, &it, 1);
        int r2 = r == 0 ? mp_list_get(l, 0, &it) : -ENOMEM;
        mp__alloc_fail_after(-1);
        if (r == 0) {
            if (r2 == 0)
                mp_item_clear(&it);
            else
                assert_int_equal(r2, -ENOMEM);
            mp_list_close(l);
            if (r2 == 0)
                break;
        } else {
            assert_int_equal(r, -ENOMEM);
        }
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_item_repr_matches_python),
        cmocka_unit_test_setup_teardown(test_list_operations_match_python, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_errors_change_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dict_operations_match_python, setup, teardown),
        cmocka_unit_test_setup_teardown(test_namespace_attributes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_containers_are_shared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_operation_from_a_child, setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_other_operations_from_a_child, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_appends_from_four_processes_lose_nothing,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_dict_with_100k_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heap_grown_by_a_child_is_seen_by_the_parent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_threads_share_handles_while_the_heap_grows, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sigkill_at_fault_points_leaves_containers_consistent,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_kills_leave_containers_consistent, setup,
                                        teardown),
        cmocka_unit_test(test_shutdown_makes_operations_fail_and_leaves_nothing),
        cmocka_unit_test(test_owner_killed_leaves_no_segment_and_no_process),
        cmocka_unit_test(test_owner_killed_right_after_the_fork_leaves_nothing),
        cmocka_unit_test_setup_teardown(test_open_fails_cleanly_without_memory, setup, teardown),
    };
    return th_run_tests(tests);
}
