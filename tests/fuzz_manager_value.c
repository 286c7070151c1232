/*
 * fuzz_manager_value.c - libFuzzer target for what a Python client's values become in the
 * manager's heap and what comes back out (src/mcall.c, src/mvalue.c, the containers; built
 * with -DMPIPC_FUZZ=ON, clang).
 *
 * The input is a pickle, as a client's argument arrives (byte 0 may add a proxy of one of the
 * manager's containers, which the fuzzer could not guess). Each value of it (each item if it
 * is a list or tuple) goes the server's way: mp__call_item turns it into an item or refuses it
 * with a Python exception; mp__item_check validates it (a str must be strict UTF-8, checked
 * here against a decoder of our own); it is stored as a slot, compared, copied out and turned
 * back into a tree, and appended to a manager list and set in a manager dict, then read back.
 * What goes in must come out equal (the same bytes, the same float bits, the same container),
 * refusals must leave the containers unchanged, equal items must hash equal and compare as
 * equal (Python's dict invariant), and the heap must not grow across inputs: the containers
 * are cleared after each one, so a leak ends in -ENOSPC, which fails a check.
 * Seeds: tests/corpus/manager_value (tests/fuzz_seeds.py manager_value DIR: pickles made by
 * CPython of the values a client sends).
 */
#include "mcall.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

static mp__heap *heap;
static mp__server *srv;
static mp__cont *store_list, *store_dict; /* where values are stored, cleared per input */
static mp__cont *targets[3];              /* containers that values may refer to (proxies) */
static mp__pv *proxies[3];

static void
setup(void)
{
    CHECK(mp__heap_create(&heap, NULL, (size_t)64 << 20) == 0);
    mp_shm_unlink(heap->shm); /* nothing may be left in /dev/shm */
    uint64_t off, registry;
    CHECK(mp__shlist_create(heap, NULL, 0, &off) == 0);
    CHECK((store_list = mp__cont_new(heap, off, MP__KIND_LIST)) != NULL);
    CHECK(mp__shdict_create(heap, MP__KIND_DICT, &off) == 0);
    CHECK((store_dict = mp__cont_new(heap, off, MP__KIND_DICT)) != NULL);
    /* Stored values refer to these, never to the stores themselves: no cycles. */
    uint32_t kinds[3] = {MP__KIND_LIST, MP__KIND_DICT, MP__KIND_NS};
    for (int i = 0; i < 3; i++) {
        CHECK((i == 0 ? mp__shlist_create(heap, NULL, 0, &off)
                      : mp__shdict_create(heap, kinds[i], &off)) == 0);
        CHECK((targets[i] = mp__cont_new(heap, off, kinds[i])) != NULL);
    }
    CHECK(mp__shdict_create(heap, MP__KIND_DICT, &registry) == 0);
    CHECK((srv = mp__server_new(heap, registry, "127.0.0.1:1")) != NULL);
    for (int i = 0; i < 3; i++)
        CHECK((proxies[i] = mp__server_proxy(srv, targets[i])) != NULL);
}

/* Strict UTF-8 as Python's str.encode() writes it: no overlong forms, no surrogates, nothing
 * above U+10FFFF. */
static bool
utf8_ok(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t k = c < 0x80             ? 0
                   : (c & 0xe0) == 0xc0 ? 1
                   : (c & 0xf0) == 0xe0 ? 2
                   : (c & 0xf8) == 0xf0 ? 3
                                        : 4;
        if (k == 4 || k > n - i - 1)
            return false;
        uint32_t cp = k == 0 ? c : c & (0x3f >> k);
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        static const uint32_t min[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < min[k] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

static bool
is_nan(const mp_item *it)
{
    return it->type == MP_ITEM_FLOAT && isnan(it->v.f);
}

/* Whether y, which came back out of the heap, is the value x that went in. */
static bool
same(const mp__pv *x, const mp__pv *y)
{
    if (x->kind == MP__PV_OBJECT)
        return y->kind == MP__PV_OBJECT &&
               mp__server_proxy_cont(srv, x) == mp__server_proxy_cont(srv, y);
    return mp__pv_equal(x, y);
}

/* A tree for an item the library filled (consumed); it must exist. */
static mp__pv *
tree_of(mp_item *it)
{
    mp__pv *err = NULL;
    mp__pv *y = mp__call_pv(srv, it, &err);
    CHECK(y != NULL && err == NULL);
    return y;
}

typedef struct prev {
    bool have, hashable;
    mp__slot slot;
    uint64_t hash;
    bool nan;
} prev;

static void
one_value(const mp__pv *x, prev *p)
{
    mp_item it;
    mp__pv *err = NULL;
    if (!mp__call_item(srv, x, &it, &err)) {
        /* Refused with Python's exception: only what no container can hold. */
        CHECK(err != NULL && mp__pv_len(err) == 2 && mp__pv_is_str(mp__pv_item(err, 0), "#ERROR"));
        CHECK(x->kind != MP__PV_NONE && x->kind != MP__PV_BOOL && x->kind != MP__PV_INT &&
              x->kind != MP__PV_FLOAT && x->kind != MP__PV_STR && x->kind != MP__PV_BYTES);
        mp__pv_free(err);
        return;
    }
    int ck = mp__item_check(heap, &it);
    ssize_t n0 = mp_list_len((mp_list *)store_list);
    if (it.type == MP_ITEM_STR)
        CHECK((ck == 0) == utf8_ok((const unsigned char *)it.v.s.ptr, it.v.s.len));
    if (ck != 0) {
        CHECK(ck == -EINVAL && it.type == MP_ITEM_STR);
        CHECK(mp_list_append((mp_list *)store_list, &it) == -EINVAL);
        CHECK(mp_dict_set((mp_dict *)store_dict, &it, &it) == -EINVAL);
        CHECK(mp_list_len((mp_list *)store_list) == n0);
        return;
    }

    /* The stored form: equal to what went in, and the same value when copied out. */
    mp__slot s;
    CHECK(mp__slot_make(heap, &it, &s) == 0);
    CHECK(mp__slot_eq_item(heap, &s, &it));
    mp_item out;
    CHECK(mp__slot_get(heap, &s, &out) == 0);
    mp__pv *y = tree_of(&out);
    CHECK(same(x, y));
    mp__pv_free(y);

    /* Python's dict invariant against the previous value: equal means equal hashes, and
     * ordering agrees with equality (NaN is unordered). */
    uint64_t hash = 0;
    bool hashable = mp__item_hash(&it, &hash) == 0;
    CHECK(hashable == (it.type <= MP_ITEM_BYTES));
    if (p->have) {
        bool eq = mp__slot_eq(heap, &p->slot, &s);
        CHECK(eq == mp__slot_eq(heap, &s, &p->slot));
        if (eq && hashable && p->hashable)
            CHECK(hash == p->hash);
        int c = mp__slot_cmp(heap, &p->slot, &s);
        if (c != MP_ETYPE && !p->nan && !is_nan(&it))
            CHECK((c == 0) == eq);
        mp__slot_release(heap, &p->slot);
    }
    *p = (prev){true, hashable, s, hash, is_nan(&it)};

    /* Through the public containers. */
    CHECK(mp_list_append((mp_list *)store_list, &it) == 0);
    CHECK(mp_list_len((mp_list *)store_list) == n0 + 1);
    CHECK(mp_list_get((mp_list *)store_list, -1, &out) == 0);
    y = tree_of(&out);
    CHECK(same(x, y));
    mp__pv_free(y);
    mp_item key = hashable ? it : mp_item_str("container");
    CHECK(mp_dict_set((mp_dict *)store_dict, &key, &it) == 0);
    CHECK(mp_dict_get((mp_dict *)store_dict, &key, NULL, &out) == 0);
    y = tree_of(&out);
    CHECK(same(x, y));
    mp__pv_free(y);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (heap == NULL)
        setup();
    if (size < 1)
        return 0;
    mp__unpickle_opts o = {
        .allow = mp__pickle_manager_globals,
        .limits = {.max_depth = 100, .max_nodes = 1 << 13, .max_bytes = 1 << 20}};
    mp__pv *v = NULL;
    if (mp__pickle_loads(&v, data + 1, size - 1, &o) != 0)
        return 0;
    prev p = {0};
    if (v->kind == MP__PV_LIST || v->kind == MP__PV_TUPLE) {
        for (size_t i = 0; i < mp__pv_len(v); i++)
            one_value(mp__pv_item(v, i), &p);
    } else {
        one_value(v, &p);
    }
    if (data[0] % 4 != 0)
        one_value(proxies[data[0] % 4 - 1], &p);
    if (p.have)
        mp__slot_release(heap, &p.slot);
    mp__pv_free(v);
    CHECK(mp_list_clear((mp_list *)store_list) == 0);
    CHECK(mp_dict_clear((mp_dict *)store_dict) == 0);
    return 0;
}
