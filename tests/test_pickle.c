/*
 * test_pickle.c - the pickle subset: byte-exact agreement with CPython, hostile input, limits.
 */
#define _GNU_SOURCE
#include "helpers.h"
#include "internal.h"
#include "pickle.h"
#include "python_peer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifndef PICKLE_PEER_PY
#error "PICKLE_PEER_PY (path of tests/pickle_peer.py) must be defined by the build"
#endif

/* ---- the cases shared with pickle_peer.py ------------------------------------------------------
 */

static mp__pv *
str_of(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    mp__pv *v = mp__pv_str(s, n);
    free(s);
    return v;
}

static mp__pv *
int_list(int64_t n)
{
    mp__pv *l = mp__pv_list();
    for (int64_t i = 0; i < n; i++)
        assert_int_equal(mp__pv_append(l, mp__pv_int(i)), 0);
    return l;
}

/* An int of 263 little-endian bytes: +-2**2100. */
static mp__pv *
pow2_2100(bool negative)
{
    uint8_t le[263] = {0};
    le[262] = negative ? 0xf0 : 0x10;
    return mp__pv_bigint(le, sizeof le);
}

static mp__pv *
token(mp__pv *typeid, mp__pv *address, const char *id)
{
    return mp__pv_object(mp__pv_global("multiprocessing.managers", "Token"), mp__pv_tuple(0),
                         mp__pv_tuple(3, typeid, address, mp__pv_cstr(id)), true);
}

/* Case i of CASES in pickle_peer.py, or NULL past the end. */
static mp__pv *
make_case(int i)
{
    static const int64_t ints[] = {0,         255,       256,       65535,     65536,
                                   -1,        INT32_MIN, INT32_MAX, 1LL << 31, -(1LL << 31) - 1,
                                   INT64_MAX, INT64_MIN};
    const uint8_t two64[9] = {0, 0, 0, 0, 0, 0, 0, 0, 1};
    const uint8_t minus_two64_1[9] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe};
    uint8_t all[256];
    char buf[64];
    mp__pv *v;
    if (i == 0)
        return mp__pv_none();
    if (i <= 2)
        return mp__pv_bool(i == 1);
    if (i < 3 + 12)
        return mp__pv_int(ints[i - 3]);
    switch (i) {
    case 15:
        return mp__pv_bigint(two64, 9);
    case 16:
        return mp__pv_bigint(minus_two64_1, 9);
    case 17:
    case 18:
        return pow2_2100(i == 18);
    case 19:
        return mp__pv_float(1.5);
    case 20:
        return mp__pv_float(-0.0);
    case 21:
        return mp__pv_float(INFINITY);
    case 22: {
        /* Python's float('nan') is the quiet NaN 0x7ff8000000000000. */
        uint64_t bits = 0x7ff8000000000000ull;
        double f;
        memcpy(&f, &bits, sizeof f);
        return mp__pv_float(f);
    }
    case 23:
        return mp__pv_float(5e-324);
    case 24:
        return mp__pv_cstr("");
    case 25:
        return mp__pv_cstr("abc");
    case 26:
        return mp__pv_cstr("h\xc3\xa9llo \xe2\x82\xac\xf0\x9f\x98\x80");
    case 27:
        return str_of('x', 255);
    case 28:
        return str_of('x', 256);
    case 29:
        return str_of('y', 70000);
    case 30:
        return mp__pv_cstr("\xed\xa0\x80"); /* the lone surrogate U+D800 */
    case 31:
        return mp__pv_bytes("", 0);
    case 32:
        return mp__pv_bytes("xy", 2);
    case 33:
        for (int k = 0; k < 256; k++)
            all[k] = (uint8_t)k;
        return mp__pv_bytes(all, 256);
    case 34: {
        v = str_of('z', 70000);
        mp__pv *b = mp__pv_bytes(v->u.s.data, v->u.s.len);
        mp__pv_free(v);
        return b;
    }
    case 35:
        return mp__pv_tuple(0);
    case 36:
        return mp__pv_tuple(1, mp__pv_int(1));
    case 37:
        return mp__pv_tuple(2, mp__pv_int(1), mp__pv_int(2));
    case 38:
        return mp__pv_tuple(3, mp__pv_int(1), mp__pv_int(2), mp__pv_int(3));
    case 39:
        return mp__pv_tuple(4, mp__pv_int(1), mp__pv_int(2), mp__pv_int(3), mp__pv_int(4));
    case 40:
        return mp__pv_list();
    case 41:
        v = mp__pv_list();
        mp__pv_append(v, mp__pv_int(1));
        return v;
    case 42:
        v = mp__pv_list();
        mp__pv_append(v, mp__pv_int(1));
        mp__pv_append(v, mp__pv_int(2));
        return v;
    case 43:
        return int_list(1001);
    case 44:
        return int_list(2500);
    case 45:
        return mp__pv_dict();
    case 46:
        v = mp__pv_dict();
        mp__pv_dict_set(v, mp__pv_cstr("a"), mp__pv_int(1));
        return v;
    case 47: {
        v = mp__pv_dict();
        mp__pv *l = mp__pv_list();
        mp__pv_append(l, mp__pv_int(2));
        mp__pv_append(l, mp__pv_int(3));
        mp__pv_dict_set(v, mp__pv_cstr("a"), mp__pv_int(1));
        mp__pv_dict_set(v, mp__pv_cstr("b"), l);
        return v;
    }
    case 48:
        v = mp__pv_dict();
        for (int k = 0; k < 1001; k++) {
            snprintf(buf, sizeof buf, "%d", k);
            mp__pv_dict_set(v, mp__pv_cstr(buf), mp__pv_int(k));
        }
        return v;
    case 49: {
        mp__pv *d = mp__pv_dict(), *l3 = mp__pv_list(), *l2 = mp__pv_list(), *l1 = mp__pv_list();
        mp__pv_dict_set(d, mp__pv_cstr("k"),
                        mp__pv_tuple(2, mp__pv_float(1.5), mp__pv_bytes("b", 1)));
        mp__pv_append(l2, l1);
        mp__pv_append(l3, l2);
        v = mp__pv_list();
        mp__pv_append(v, mp__pv_tuple(2, mp__pv_none(), mp__pv_bool(true)));
        mp__pv_append(v, d);
        mp__pv_append(v, l3);
        return v;
    }
    case 50:
        v = mp__pv_list();
        for (int k = 0; k < 100; k++) {
            mp__pv *outer = mp__pv_list();
            mp__pv_append(outer, v);
            v = outer;
        }
        return v;
    case 51:
        v = mp__pv_list();
        for (int k = 0; k < 20000; k++) {
            snprintf(buf, sizeof buf, "item%05d", k);
            mp__pv_append(v, mp__pv_cstr(buf));
        }
        return v;
    case 52:
        v = mp__pv_list();
        mp__pv_append(v, str_of('p', 590));
        for (int k = 1; k < 1200; k++) {
            snprintf(buf, sizeof buf, "%062d", k);
            mp__pv_append(v, mp__pv_cstr(buf));
        }
        return v;
    case 53:
        return mp__pv_object(mp__pv_global("builtins", "KeyError"),
                             mp__pv_tuple(1, mp__pv_cstr("missing")), NULL, false);
    case 54:
        return token(mp__pv_cstr("list"), mp__pv_cstr("/tmp/x"), "7f00aa");
    case 55:
        return token(mp__pv_cstr("dict"),
                     mp__pv_tuple(2, mp__pv_cstr("127.0.0.1"), mp__pv_int(5000)), "7f00ab");
    case 56:
        return mp__pv_tuple(4, mp__pv_none(), mp__pv_cstr("incref"),
                            mp__pv_tuple(1, mp__pv_cstr("7f00aa")), mp__pv_dict());
    case 57:
        return mp__pv_tuple(2, mp__pv_cstr("#RETURN"), mp__pv_none());
    case 58:
        return mp__pv_object(mp__pv_global("builtins", "bytearray"),
                             mp__pv_tuple(1, mp__pv_bytes("abc", 3)), NULL, false);
    case 59:
        v = mp__pv_list();
        mp__pv_append(v, mp__pv_cstr("sss"));
        mp__pv_append(v, mp__pv_cstr("sss"));
        return v;
    default:
        return NULL;
    }
}
#define NCASES 60

static const mp__unpickle_opts MANAGER_OPTS = {.allow = mp__pickle_manager_globals};

static mp__pv *
loads_ok(const void *buf, size_t len)
{
    mp__pv *v = NULL;
    assert_int_equal(mp__pickle_loads(&v, buf, len, &MANAGER_OPTS), 0);
    assert_non_null(v);
    return v;
}

static int
loads_err(const void *buf, size_t len, const mp__unpickle_opts *opts)
{
    mp__pv *v = (mp__pv *)&v; /* must stay untouched */
    int r = mp__pickle_loads(&v, buf, len, opts != NULL ? opts : &MANAGER_OPTS);
    assert_true(v == (mp__pv *)&v);
    return r;
}

#define LOADS_ERR(lit, opts) loads_err(lit, sizeof(lit) - 1, opts)

static int
nibble(char c)
{
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* Bytes from hex digits, spaces ignored (by hand: sscanf per byte is slow under ASan). */
static uint8_t *
unhex(const char *hex, size_t *len)
{
    uint8_t *b = malloc(strlen(hex) / 2 + 1);
    assert_non_null(b);
    size_t n = 0;
    for (const char *h = hex; *h != '\0' && *h != '\n';) {
        if (*h == ' ') {
            h++;
            continue;
        }
        b[n++] = (uint8_t)(nibble(h[0]) << 4 | nibble(h[1]));
        h += 2;
    }
    *len = n;
    return b;
}

static void
write_hex(FILE *f, const uint8_t *b, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char chunk[4096];
    size_t c = 0;
    for (size_t k = 0; k < n; k++) {
        chunk[c++] = digits[b[k] >> 4];
        chunk[c++] = digits[b[k] & 15];
        if (c == sizeof chunk) {
            fwrite(chunk, 1, c, f);
            c = 0;
        }
    }
    fwrite(chunk, 1, c, f);
}

/* ---- agreement with CPython, both ways ---------------------------------------------------------
 */

static int
round_trip_with(const char *python)
{
    th_py_peer p;
    th_py_start(&p, python, PICKLE_PEER_PY, NULL);
    FILE *in = fdopen(dup(p.out), "r");
    assert_non_null(in);
    char *line = NULL;
    size_t cap = 0;
    int lines = 0, exact = 0, failures = 0;
    while (getline(&line, &cap, in) > 0 && strncmp(line, "END", 3) != 0) {
        int i, proto, off = 0;
        char flag;
        assert_int_equal(sscanf(line, "%d %d %c %n", &i, &proto, &flag, &off), 3);
        line[strcspn(line, "\n")] = '\0';
        lines++;
        if (flag == 's')
            continue;
        size_t len;
        uint8_t *want = unhex(line + off, &len);
        mp__pv *c = make_case(i), *got = NULL;
        assert_non_null(c);
        int r = mp__pickle_loads(&got, want, len, &MANAGER_OPTS);
        if (r != 0 || !mp__pv_equal(got, c)) {
            fprintf(stderr, "%s: case %d protocol %d: loads %d, value %s\n", python, i, proto, r,
                    r == 0 ? "differs" : "-");
            failures++;
        }
        uint8_t *mine;
        size_t mlen;
        r = mp__pickle_dumps(c, proto, &mine, &mlen);
        if (r == 0 && flag == 'x') {
            exact++;
            if (mlen != len || memcmp(mine, want, len) != 0) {
                size_t k = 0;
                while (k < len && k < mlen && mine[k] == want[k])
                    k++;
                fprintf(stderr,
                        "%s: case %d protocol %d: %zu bytes vs CPython's %zu, first "
                        "difference at %zu\n",
                        python, i, proto, mlen, len, k);
                failures++;
            }
        }
        if (r == 0)
            mp__free(mine);
        else if (!(r == -EINVAL && proto == 2))
            failures++;
        mp__pv_free(c);
        mp__pv_free(got);
        free(want);
    }
    free(line);
    fclose(in);
    assert_int_equal(lines, NCASES * 4);
    assert_true(exact > NCASES * 3);

    /* The other way: mpipc's encodings, loaded and compared by pickle.loads. */
    FILE *out = fdopen(dup(p.in), "w");
    assert_non_null(out);
    int sent = 0;
    for (int i = 0; i < NCASES; i++) {
        mp__pv *c = make_case(i);
        for (int proto = 2; proto <= 5; proto++) {
            uint8_t *b;
            size_t n;
            int r = mp__pickle_dumps(c, proto, &b, &n);
            if (r == -EINVAL && proto == 2)
                continue;
            assert_int_equal(r, 0);
            fprintf(out, "%d %d ", i, proto);
            write_hex(out, b, n);
            fputc('\n', out);
            sent++;
            mp__free(b);
        }
        mp__pv_free(c);
    }
    fprintf(out, "COUNT %d\n", sent);
    fclose(out);
    th_py_finish(&p);
    return failures;
}

static void
test_pickle_agrees_with_cpython_both_ways(void **state)
{
    (void)state;
    assert_null(make_case(NCASES));
    char py[TH_PY_MAX][PATH_MAX];
    int n = th_py_find(py);
    if (n == 0) {
        print_message("python3 not found: interop test skipped\n");
        skip();
    }
    int failures = 0;
    for (int k = 0; k < n; k++) {
        print_message("interop with %s\n", py[k]);
        failures += round_trip_with(py[k]);
    }
    assert_int_equal(failures, 0);
}

/* The bytes of §2.7 of the CPython contract, as Python writes them and in minimal form. */
static void
test_pickle_reads_manager_requests_and_replies(void **state)
{
    (void)state;
    static const char *const hex[] = {
        "80 04 95 1b 00 00 00 00 00 00 00 28 4e 8c 06 69 6e 63 72 65 66 94 8c 06 37 66 30 30 61 61 "
        "94 85 94 7d 94 74 94 2e",
        "80 04 28 4e 8c 06 69 6e 63 72 65 66 8c 06 37 66 30 30 61 61 85 7d 74 2e",
        "80 04 95 2a 00 00 00 00 00 00 00 28 8c 06 37 66 30 30 61 61 94 8c 03 67 65 74 94 29 7d 94 "
        "8c 07 74 69 6d 65 6f 75 74 94 47 3f e0 00 00 00 00 00 00 73 74 94 2e",
        "80 04 28 8c 06 37 66 30 30 61 61 8c 03 67 65 74 29 7d 28 8c 07 74 69 6d 65 6f 75 74 47 3f "
        "e0 00 00 00 00 00 00 75 74 2e",
        "80 04 95 0e 00 00 00 00 00 00 00 8c 07 23 52 45 54 55 52 4e 94 4e 86 94 2e",
        "80 04 95 2c 00 00 00 00 00 00 00 8c 06 23 45 52 52 4f 52 94 8c 08 62 75 69 6c 74 69 6e 73 "
        "94 8c 08 4b 65 79 45 72 72 6f 72 94 93 94 8c 01 6b 94 85 94 52 94 86 94 2e",
    };
    mp__pv *incref = mp__pv_tuple(4, mp__pv_none(), mp__pv_cstr("incref"),
                                  mp__pv_tuple(1, mp__pv_cstr("7f00aa")), mp__pv_dict());
    mp__pv *kw = mp__pv_dict();
    assert_int_equal(mp__pv_dict_set(kw, mp__pv_cstr("timeout"), mp__pv_float(0.5)), 0);
    mp__pv *get = mp__pv_tuple(4, mp__pv_cstr("7f00aa"), mp__pv_cstr("get"), mp__pv_tuple(0), kw);
    mp__pv *ret = mp__pv_tuple(2, mp__pv_cstr("#RETURN"), mp__pv_none());
    mp__pv *err = mp__pv_tuple(2, mp__pv_cstr("#ERROR"),
                               mp__pv_object(mp__pv_global("builtins", "KeyError"),
                                             mp__pv_tuple(1, mp__pv_cstr("k")), NULL, false));
    const mp__pv *want[] = {incref, incref, get, get, ret, err};
    for (size_t k = 0; k < MP__ARRAY_LEN(hex); k++) {
        size_t len;
        uint8_t *b = unhex(hex[k], &len);
        mp__pv *v = loads_ok(b, len);
        assert_true(mp__pv_equal(v, want[k]));
        /* CPython's own bytes (the even entries and the replies) are what the encoder writes. */
        if (k % 2 == 0 || k >= 4) {
            uint8_t *mine;
            size_t n;
            assert_int_equal(mp__pickle_dumps(v, 4, &mine, &n), 0);
            assert_int_equal(n, len);
            assert_memory_equal(mine, b, len);
            mp__free(mine);
        }
        if (k == 2) {
            assert_true(mp__pv_is_str(mp__pv_item(v, 1), "get"));
            mp__pv *t = mp__pv_dict_get_str(mp__pv_item(v, 3), "timeout");
            assert_non_null(t);
            assert_true(t->kind == MP__PV_FLOAT && t->u.f == 0.5);
        }
        if (k == 5) {
            assert_true(mp__pv_is_global(mp__pv_item(v, 1), "builtins", "KeyError"));
            assert_true(mp__pv_is_str(mp__pv_item(mp__pv_item(v, 1)->u.obj.args, 0), "k"));
        }
        mp__pv_free(v);
        free(b);
    }
    mp__pv_free(incref);
    mp__pv_free(get);
    mp__pv_free(ret);
    mp__pv_free(err);
}

/* ---- hostile input -----------------------------------------------------------------------------
 */

static void
test_pickle_refuses_globals_off_the_allow_list(void **state)
{
    (void)state;
    /* os.system('echo pwned') through GLOBAL and through STACK_GLOBAL: refused before REDUCE. */
    assert_int_equal(LOADS_ERR("\x80\x02"
                               "cos\nsystem\n\x8c\x0a"
                               "echo pwned\x85R.",
                               NULL),
                     -EPERM);
    assert_int_equal(LOADS_ERR("\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x94"
                               "\x8c\x01x\x85R.",
                               NULL),
                     -EPERM);
    assert_int_equal(LOADS_ERR("\x80\x04\x8c\x08"
                               "builtins\x8c\x04"
                               "eval\x93.",
                               NULL),
                     -EPERM);
    /* A name with a NUL inside cannot sneak past the comparison. */
    assert_int_equal(LOADS_ERR("\x80\x04\x8c\x09"
                               "builtins\0\x8c\x08KeyError\x93.",
                               NULL),
                     -EPROTO);
    /* Without an allow-list even the Token is refused; BYTEARRAY8 needs builtins.bytearray. */
    static const char tok[] = "\x80\x04\x8c\x18multiprocessing.managers\x8c\x05Token\x93.";
    mp__unpickle_opts none = {0};
    assert_int_equal(loads_err(tok, sizeof tok - 1, &none), -EPERM);
    mp__pv *v = loads_ok(tok, sizeof tok - 1);
    assert_true(mp__pv_is_global(v, "multiprocessing.managers", "Token"));
    mp__pv_free(v);
    assert_int_equal(LOADS_ERR("\x80\x05\x96\x01\0\0\0\0\0\0\0x.", &none), -EPERM);
    /* REDUCE of something that is not a global, NEWOBJ_EX, EXT1, INST, OBJ: refused. */
    assert_int_equal(LOADS_ERR("\x80\x04N)R.", NULL), -EPROTO);
    assert_int_equal(LOADS_ERR("\x80\x04\x92.", NULL), -EPROTO);
    mp__pv *out = NULL;
    assert_int_equal(mp__pickle_loads(&out, NULL, 0, NULL), -EPROTO);
    assert_int_equal(LOADS_ERR("\x80\x02\x82\x01.", NULL), -EPROTO);
    assert_int_equal(LOADS_ERR("(ios\nsystem\n.", NULL), -EPROTO);
    assert_int_equal(LOADS_ERR("(o.", NULL), -EPROTO);
}

static void
test_pickle_refuses_huge_declared_lengths(void **state)
{
    (void)state;
    assert_int_equal(LOADS_ERR("\x80\x04\x8d\0\0\0\0\0\0\0\x40"
                               "abc.",
                               NULL),
                     -EPROTO);
    assert_int_equal(LOADS_ERR("\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\xff"
                               "abc.",
                               NULL),
                     -EPROTO);
    assert_int_equal(LOADS_ERR("\x80\x04\x42\xff\xff\xff\xff"
                               "abc.",
                               NULL),
                     -EPROTO);
    assert_int_equal(LOADS_ERR("\x80\x04\x8b\xff\xff\xff\xff"
                               "abc.",
                               NULL),
                     -EPROTO);
    assert_int_equal(LOADS_ERR("\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\x7f"
                               "N.",
                               NULL),
                     -EPROTO);
    /* Within the input but beyond the caller's byte budget. */
    mp__unpickle_opts small = {.limits.max_bytes = 2};
    assert_int_equal(LOADS_ERR("\x80\x04\x8c\x03"
                               "abc.",
                               &small),
                     -E2BIG);
    mp__pv *v = NULL;
    assert_int_equal(mp__pickle_loads(&v,
                                      "\x80\x04\x8c\x02"
                                      "ab.",
                                      7, &small),
                     0);
    mp__pv_free(v);
}

static void
test_pickle_bounds_depth_nodes_and_memo(void **state)
{
    (void)state;
    /* 300 nested lists: deeper than the default 200. */
    char deep[2 + 300 + 299 + 1];
    size_t n = 0;
    deep[n++] = (char)0x80;
    deep[n++] = 4;
    memset(deep + n, ']', 300);
    n += 300;
    memset(deep + n, 'a', 299);
    n += 299;
    deep[n++] = '.';
    assert_int_equal(loads_err(deep, n, NULL), -E2BIG);
    mp__unpickle_opts wide = {.limits.max_depth = 400};
    mp__pv *v = NULL;
    assert_int_equal(mp__pickle_loads(&v, deep, n, &wide), 0);
    assert_int_equal(v->height, 300);
    mp__pv_free(v);
    /* 300 open MARKs. */
    memset(deep + 2, '(', 300);
    assert_int_equal(loads_err(deep, 302, NULL), -E2BIG);

    /* A billion laughs: a list that doubles with every BINGET. */
    char laugh[600] = "\x80\x04]\x94\x8c\x02ha\x94\x61";
    n = 9;
    for (int k = 0; k < 60; k++) {
        /* [L] -> L + [copy of L]: EMPTY_LIST, MEMOIZE, MARK, BINGET k, BINGET k, APPENDS. */
        memcpy(laugh + n, "]\x94(h\0h\0e", 8);
        laugh[n + 4] = laugh[n + 6] = (char)(k == 0 ? 0 : k + 1);
        n += 8;
    }
    laugh[n++] = '.';
    int64_t t0 = th_now_ms();
    mp__unpickle_opts laughs = {.limits.max_nodes = 1 << 18};
    assert_int_equal(loads_err(laugh, n, &laughs), -E2BIG);
    assert_true(th_now_ms() - t0 < 10000);

    /* A node budget, and memo indexes far away. */
    mp__unpickle_opts few = {.limits.max_nodes = 3};
    assert_int_equal(LOADS_ERR("\x80\x04(NNNt.", &few), -E2BIG);
    assert_int_equal(LOADS_ERR("\x80\x04N\x72\xff\xff\xff\xff.", NULL), -E2BIG);
    mp__unpickle_opts memo = {.limits.max_memo = 2};
    assert_int_equal(LOADS_ERR("\x80\x04N\x94\x94\x94.", &memo), -E2BIG);
}

static void
test_pickle_refuses_malformed_input(void **state)
{
    (void)state;
    static const struct {
        const char *p;
        size_t n;
    } bad[] = {
#define B(s) {s, sizeof(s) - 1}
        B(""),            /* nothing */
        B("\x80\x04N"),   /* no STOP */
        B("\x80\x04."),   /* STOP on an empty stack */
        B("\x80\x04NN."), /* two values left */
        B("\x80\x04(N."), /* an open MARK */
        B("\x80\x04N.x"), /* bytes after STOP */
        B("\x80\x06N."),  /* protocol 6 */
        B("\x80\x04"
          "a."),               /* APPEND on an empty stack */
        B("\x80\x04K\x01]a."), /* APPEND to an int */
        B("\x80\x04](K\x01"
          "a."),                                /* APPEND across a MARK */
        B("\x80\x04K\x01\x86."),                /* TUPLE2 with one item */
        B("\x80\x04(K\x01\x86t."),              /* TUPLE2 reaching under the MARK */
        B("\x80\x04K\x01t."),                   /* TUPLE without MARK */
        B("\x80\x04}(K\x01u."),                 /* SETITEMS with an odd count */
        B("\x80\x04(e."),                       /* APPENDS with nothing to append to */
        B("\x80\x04h\x05."),                    /* BINGET of an empty memo */
        B("\x80\x04N\x94j\x01\0\0\0."),         /* LONG_BINGET past the memo */
        B("\x80\x04\x94N."),                    /* MEMOIZE on an empty stack */
        B("\x80\x04(\x94N."),                   /* MEMOIZE reaching under a MARK */
        B("\x80\x04\x8c\x02\xc3(."),            /* invalid UTF-8 */
        B("\x80\x04\x8c\x02\xc0\x80."),         /* overlong NUL */
        B("\x80\x04\x8c\x04\xf4\x90\x80\x80."), /* above U+10FFFF */
        B("\x80\x04\x95\x08\0\0\0\0\0\0\0N."),  /* FRAME longer than the rest */
        B("\x80\x04N\x95\x02\0\0"),             /* truncated FRAME header */
        B("\x80\x04J\x01\0."),                  /* truncated BININT */
        B("\x80\x04G\0\0."),                    /* truncated BINFLOAT */
        B("\x80\x04I1\n."),                     /* text INT (protocol 0) */
        B("\x80\x04N0."),                       /* POP */
        B("\x80\x04N\x97."),                    /* NEXT_BUFFER */
        B("\x80\x04NNb."),                      /* BUILD on None */
        B("\x80\x04K\x01\x8c\x01x\x93."),       /* STACK_GLOBAL of an int */
        B("\x80\x02"
          "cbuiltins\nKeyError"), /* GLOBAL without its newline */
        B("\x80\x02"
          "c\nKeyError\n."), /* GLOBAL with an empty module */
#undef B
    };
    for (size_t k = 0; k < MP__ARRAY_LEN(bad); k++) {
        int r = loads_err(bad[k].p, bad[k].n, NULL);
        if (r != -EPROTO)
            fail_msg("malformed input %zu gave %d, not -EPROTO", k, r);
    }

    /* Every proper prefix of real pickles is refused (never read past the end: ASan watches). */
    for (int i = 0; i < NCASES; i += 3) {
        mp__pv *c = make_case(i);
        uint8_t *b;
        size_t n;
        assert_int_equal(mp__pickle_dumps(c, 4, &b, &n), 0);
        size_t step = n > 4096 ? n / 64 + 1 : 1;
        for (size_t len = 0; len < n; len += step) {
            uint8_t *cut = malloc(len + 1); /* exactly len bytes readable for ASan */
            memcpy(cut, b, len);
            assert_true(loads_err(cut, len, NULL) < 0);
            free(cut);
        }
        mp__free(b);
        mp__pv_free(c);
    }
}

/* ---- memo semantics, values, encoder errors
 * ------------------------------------------------------ */

static void
test_pickle_memo_references_become_copies(void **state)
{
    (void)state;
    /* L = [1, 2]; [L, L] as CPython writes it: the second L is a BINGET of the finished list. */
    static const char p[] = "\x80\x04]\x94(]\x94(K\x01K\x02"
                            "eh\x01"
                            "e.";
    mp__pv *v = loads_ok(p, sizeof p - 1);
    assert_int_equal(mp__pv_len(v), 2);
    assert_true(mp__pv_equal(mp__pv_item(v, 0), mp__pv_item(v, 1)));
    assert_ptr_not_equal(mp__pv_item(v, 0), mp__pv_item(v, 1));
    assert_int_equal(mp__pv_len(mp__pv_item(v, 1)), 2);
    mp__pv_free(v);
    /* A list appended to itself becomes a list holding a snapshot of itself. */
    static const char self[] = "\x80\x04]\x94h\0a.";
    v = loads_ok(self, sizeof self - 1);
    assert_int_equal(mp__pv_len(v), 1);
    assert_int_equal(mp__pv_len(mp__pv_item(v, 0)), 0);
    mp__pv_free(v);
    /* Memoized module and name strings of a STACK_GLOBAL stay usable. */
    static const char g[] = "\x80\x04\x8c\x08"
                            "builtins\x94\x8c\x08KeyError\x94\x93h\0\x86.";
    v = loads_ok(g, sizeof g - 1);
    assert_true(mp__pv_is_str(mp__pv_item(v, 1), "builtins"));
    mp__pv_free(v);
}

static void
test_pickle_values_build_compare_and_look_up(void **state)
{
    (void)state;
    mp__pv *d = mp__pv_dict();
    assert_int_equal(mp__pv_dict_set(d, mp__pv_cstr("a"), mp__pv_int(1)), 0);
    assert_int_equal(mp__pv_dict_set(d, mp__pv_cstr("b"), mp__pv_int(2)), 0);
    assert_int_equal(mp__pv_dict_set(d, mp__pv_cstr("a"), mp__pv_int(3)), 0);
    assert_int_equal(mp__pv_len(d), 2);
    assert_int_equal(mp__pv_dict_get_str(d, "a")->u.i, 3);
    assert_null(mp__pv_dict_get_str(d, "c"));
    mp__pv *k = mp__pv_cstr("b");
    assert_int_equal(mp__pv_dict_get(d, k)->u.i, 2);
    mp__pv_free(k);
    mp__pv *c = mp__pv_copy(d);
    assert_true(mp__pv_equal(c, d));
    assert_int_equal(mp__pv_dict_set(c, mp__pv_cstr("b"), mp__pv_bool(true)), 0);
    assert_false(mp__pv_equal(c, d));
    mp__pv_free(c);
    mp__pv_free(d);

    /* bool, int and float are distinct; NaN equals itself by bits. */
    mp__pv *one = mp__pv_int(1), *t = mp__pv_bool(true), *f = mp__pv_float(1.0);
    assert_false(mp__pv_equal(one, t));
    assert_false(mp__pv_equal(one, f));
    mp__pv_free(one);
    mp__pv_free(t);
    mp__pv_free(f);

    /* Big ints are normalised; those fitting int64 become ints. */
    const uint8_t m1[3] = {0xff, 0xff, 0xff}, big[9] = {0, 0, 0, 0, 0, 0, 0, 0x80, 0};
    mp__pv *a = mp__pv_bigint(m1, 3), *b = mp__pv_bigint(big, 9);
    assert_int_equal(a->kind, MP__PV_INT);
    assert_int_equal(a->u.i, -1);
    assert_int_equal(b->kind, MP__PV_BIGINT);
    assert_int_equal(b->u.s.len, 9);
    mp__pv_free(a);
    mp__pv_free(b);

    /* str is UTF-8 with surrogates allowed; other bytes are refused. */
    assert_null(mp__pv_str("\xff", 1));
    assert_null(mp__pv_str("\xe0\x80\x80", 3));
    a = mp__pv_str("\xed\xb0\x80", 3);
    assert_non_null(a);
    mp__pv_free(a);

    /* Consuming constructors: a NULL child fails the whole and frees the rest. */
    assert_null(mp__pv_tuple(3, mp__pv_int(1), NULL, mp__pv_cstr("x")));
    assert_null(mp__pv_object(mp__pv_int(1), mp__pv_tuple(0), NULL, false));
    assert_int_equal(mp__pv_append(NULL, mp__pv_int(1)), -EINVAL);

    /* No tree deeper than MP__PV_MAX_HEIGHT, whoever builds it. */
    mp__pv *v = mp__pv_list();
    uint32_t height = v->height;
    int r = 0;
    while (r == 0) {
        mp__pv *outer = mp__pv_list();
        height = v->height;
        r = mp__pv_append(outer, v); /* consumes v even when it fails */
        v = outer;
        assert_true(height <= MP__PV_MAX_HEIGHT);
    }
    mp__pv_free(v);
    assert_int_equal(r, -E2BIG);
    assert_int_equal(height, MP__PV_MAX_HEIGHT);
}

static void
test_pickle_dumps_refuses_what_a_protocol_cannot_carry(void **state)
{
    (void)state;
    uint8_t *b;
    size_t n;
    mp__pv *v = mp__pv_bytes("x", 1), *g = mp__pv_global("builtins", "KeyError");
    assert_int_equal(mp__pickle_dumps(v, 1, &b, &n), -EINVAL);
    assert_int_equal(mp__pickle_dumps(v, 6, &b, &n), -EINVAL);
    assert_int_equal(mp__pickle_dumps(v, 2, &b, &n), -EINVAL);
    assert_int_equal(mp__pickle_dumps(g, 2, &b, &n), -EINVAL);
    assert_int_equal(mp__pickle_dumps(v, 0, &b, &n), 0);
    assert_int_equal(n, 16);
    assert_memory_equal(b,
                        "\x80\x04\x95\x05\0\0\0\0\0\0\0"
                        "C\x01x\x94.",
                        16);
    mp__free(b);
    mp__pv_free(v);
    mp__pv_free(g);
}

/* ---- allocation failure ------------------------------------------------------------------------
 */

static void
test_pickle_survives_allocation_failure(void **state)
{
    (void)state;
    static const int cases[] = {47, 49, 53, 54, 55, 56, 58};
    for (size_t k = 0; k < MP__ARRAY_LEN(cases); k++) {
        mp__pv *c = make_case(cases[k]);
        uint8_t *b;
        size_t n;
        assert_int_equal(mp__pickle_dumps(c, 4, &b, &n), 0);
        /* Fail the 0th, 1st, ... allocation until one run needs no failure. */
        bool done = false;
        for (long fail = 0; !done; fail++) {
            mp__pv *v = NULL, *cp = NULL;
            uint8_t *b2 = NULL;
            size_t n2;
            mp__alloc_fail_after(fail);
            int r1 = mp__pickle_loads(&v, b, n, &MANAGER_OPTS);
            int r2 = mp__pickle_dumps(c, 4, &b2, &n2);
            cp = mp__pv_copy(c);
            mp__alloc_fail_after(-1);
            assert_true(r1 == 0 || r1 == -ENOMEM);
            assert_true(r2 == 0 || r2 == -ENOMEM);
            if (r1 == 0)
                assert_true(mp__pv_equal(v, c));
            if (r2 == 0)
                assert_memory_equal(b2, b, n);
            if (cp != NULL)
                assert_true(mp__pv_equal(cp, c));
            done = r1 == 0 && r2 == 0 && cp != NULL;
            mp__pv_free(v);
            mp__pv_free(cp);
            mp__free(b2);
        }
        mp__free(b);
        mp__pv_free(c);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pickle_agrees_with_cpython_both_ways),
        cmocka_unit_test(test_pickle_reads_manager_requests_and_replies),
        cmocka_unit_test(test_pickle_refuses_globals_off_the_allow_list),
        cmocka_unit_test(test_pickle_refuses_huge_declared_lengths),
        cmocka_unit_test(test_pickle_bounds_depth_nodes_and_memo),
        cmocka_unit_test(test_pickle_refuses_malformed_input),
        cmocka_unit_test(test_pickle_memo_references_become_copies),
        cmocka_unit_test(test_pickle_values_build_compare_and_look_up),
        cmocka_unit_test(test_pickle_dumps_refuses_what_a_protocol_cannot_carry),
        cmocka_unit_test(test_pickle_survives_allocation_failure),
    };
    /* PICKLE_TEST=<glob> runs only the matching tests (handy under sanitizers and the fuzzer). */
    if (getenv("PICKLE_TEST") != NULL)
        cmocka_set_test_filter(getenv("PICKLE_TEST"));
    return th_run_tests(tests);
}
