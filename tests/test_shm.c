/*
 * test_shm.c - mp_shm (named segments, ownership, sweep), mp_shlist (Python's ShareableList
 * layout) and both interop directions with every python3 found (tests/shm_peer.py).
 */
#define _GNU_SOURCE
#include "helpers.h"
#include "internal.h"
#include "python_peer.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

static bool
name_exists(const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    return access(path, F_OK) == 0;
}

static mp_shm *
create_named(const char *name, size_t size)
{
    mp_shm *s = NULL;
    assert_int_equal(mp_shm_open(&s, &(mp_shm_opts){.name = name, .create = true, .size = size}),
                     0);
    return s;
}

/* ---- mp_shm ---------------------------------------------------------------------------------- */

struct attach_arg {
    char name[300];
    mp_shm *inherited;
};

static int
child_attaches_checks_and_writes(void *p)
{
    struct attach_arg *a = p;
    /* The inherited handle is usable but not for unlinking: this is not the creating process. */
    CHILD_CHECK(memcmp(mp_shm_buf(a->inherited), "\x16\x21\x2c\x37\x64", 5) == 0);
    CHILD_CHECK(mp_shm_unlink(a->inherited) == -EPERM);
    mp_shm_close(a->inherited);
    mp_shm *s;
    CHILD_CHECK(mp_shm_open(&s, &(mp_shm_opts){.name = a->name, .size = 1000000}) == 0);
    CHILD_CHECK(mp_shm_size(s) == 10); /* size is ignored on attach, as in Python */
    CHILD_CHECK(memcmp(mp_shm_buf(s), "\x16\x21\x2c\x37\x64", 5) == 0);
    CHILD_CHECK(mp_shm_unlink(s) == -EPERM);
    memcpy(mp_shm_buf(s), "howdy", 5);
    mp_shm_close(s);
    return 0;
}

static void
test_shm_created_with_a_generated_name_is_shared_with_an_attaching_child(void **state)
{
    (void)state;
    mp_shm *s;
    assert_int_equal(mp_shm_open(&s, &(mp_shm_opts){.create = true, .size = 10}), 0);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "mpsm_k_%d_", (int)getpid());
    assert_memory_equal(mp_shm_name(s), prefix, strlen(prefix));
    assert_int_equal(mp_shm_size(s), 10);
    char path[300];
    snprintf(path, sizeof path, "/dev/shm/%s", mp_shm_name(s));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 10);
    memcpy(mp_shm_buf(s), "\x16\x21\x2c\x37\x64", 5); /* Python's doc example: 22 33 44 55 100 */

    struct attach_arg *a = th_shared(sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", mp_shm_name(s));
    a->inherited = s;
    assert_child_ok(th_fork(child_attaches_checks_and_writes, a));
    assert_memory_equal(mp_shm_buf(s), "howdy", 5);

    assert_int_equal(mp_shm_unlink(s), 0);
    assert_int_equal(mp_shm_unlink(s), -ENOENT); /* Python: FileNotFoundError */
    assert_false(name_exists(a->name));
    mp_shm *again;
    assert_int_equal(mp_shm_open(&again, &(mp_shm_opts){.name = a->name}), -ENOENT);
    assert_memory_equal(mp_shm_buf(s), "howdy", 5); /* the mapping outlives the name */
    mp_shm_close(s);
    mp_shm_close(NULL);
    th_shared_free(a, sizeof *a);
}

static void
test_shm_names_follow_python_and_taken_names_are_refused_intact(void **state)
{
    (void)state;
    char name[64], slashed[66];
    snprintf(name, sizeof name, "mpipc-test-shm-%d", (int)getpid());
    snprintf(slashed, sizeof slashed, "/%s", name);
    mp_shm *s = create_named(name, 4096);
    assert_string_equal(mp_shm_name(s), name);
    memset(mp_shm_buf(s), 'x', 4096);

    mp_shm *dup = NULL, *b = NULL;
    assert_int_equal(mp_shm_open(&dup, &(mp_shm_opts){.name = slashed, .create = true, .size = 8}),
                     -EEXIST);
    assert_null(dup);
    assert_int_equal(mp_shm_open(&b, &(mp_shm_opts){.name = slashed}), 0);
    assert_string_equal(mp_shm_name(b), name); /* as Python's .name: no leading '/' */
    assert_int_equal(mp_shm_size(b), 4096);    /* the failed create changed nothing */
    assert_int_equal(((char *)mp_shm_buf(b))[4095], 'x');
    mp_shm_close(b);
    assert_int_equal(mp_shm_unlink(s), 0);
    mp_shm_close(s);

    /* The longest name /dev/shm takes. */
    char longest[MP_SHM_NAME_MAX + 1];
    memset(longest, 'n', MP_SHM_NAME_MAX);
    longest[MP_SHM_NAME_MAX] = '\0';
    s = create_named(longest, 1);
    assert_int_equal(mp_shm_unlink(s), 0);
    mp_shm_close(s);
}

static void
test_shm_open_rejects_bad_arguments_and_leaves_nothing(void **state)
{
    (void)state;
    mp_shm *s = NULL;
    char too_long[MP_SHM_NAME_MAX + 2];
    memset(too_long, 'n', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = '\0';
    assert_int_equal(mp_shm_open(NULL, &(mp_shm_opts){.create = true, .size = 1}), -EINVAL);
    assert_int_equal(mp_shm_open(&s, NULL), -EINVAL);
    assert_int_equal(mp_shm_open(&s, &(mp_shm_opts){0}), -EINVAL); /* attach needs a name */
    assert_int_equal(mp_shm_open(&s, &(mp_shm_opts){.create = true}), -EINVAL); /* size 0 */
    assert_int_equal(mp_shm_open(&s, &(mp_shm_opts){.create = true, .size = SIZE_MAX}), -EINVAL);
    assert_int_equal(
        mp_shm_open(&s, &(mp_shm_opts){.name = "x", .create = true, .size = 1, .sweep = true}),
        -EINVAL);
    assert_int_equal(mp_shm_open(&s, &(mp_shm_opts){.name = "x", .sweep = true}), -EINVAL);
    assert_int_equal(mp_shm_open(&s, &(mp_shm_opts){.create = true, .size = 1, .owner = true}),
                     -EINVAL);
    const char *bad[] = {"", "/", "a/b", "//a", ".", ".."};
    for (size_t i = 0; i < MP__ARRAY_LEN(bad); i++)
        assert_int_equal(mp_shm_open(&s, &(mp_shm_opts){.name = bad[i], .create = true, .size = 1}),
                         -EINVAL);
    assert_int_equal(mp_shm_open(&s, &(mp_shm_opts){.name = too_long, .create = true, .size = 1}),
                     -ENAMETOOLONG);
    assert_int_equal(mp_shm_open(&s, &(mp_shm_opts){.name = "mpipc-test-missing"}), -ENOENT);
    assert_null(s);
    assert_false(name_exists("x"));
}

static void
test_shm_only_the_creator_or_an_owner_unlinks(void **state)
{
    (void)state;
    char name[64];
    snprintf(name, sizeof name, "mpipc-test-owner-%d", (int)getpid());
    mp_shm *creator = create_named(name, 64), *plain, *owner;
    assert_int_equal(mp_shm_open(&plain, &(mp_shm_opts){.name = name}), 0);
    assert_int_equal(mp_shm_open(&owner, &(mp_shm_opts){.name = name, .owner = true}), 0);
    assert_int_equal(mp_shm_unlink(plain), -EPERM);
    assert_true(name_exists(name));
    assert_int_equal(mp_shm_unlink(owner), 0);
    assert_false(name_exists(name));
    assert_int_equal(mp_shm_unlink(creator), -ENOENT);

    /* A name that was unlinked and created again belongs to someone else now: the first
     * creator's unlink must not remove it. */
    mp_shm *second = create_named(name, 64);
    assert_int_equal(mp_shm_unlink(creator), -ENOENT);
    mp_shm *third;
    assert_int_equal(mp_shm_open(&third, &(mp_shm_opts){.name = name, .owner = true}), 0);
    mp_shm_close(creator);
    mp_shm_close(plain);
    mp_shm_close(owner);
    assert_true(name_exists(name));
    assert_int_equal(mp_shm_unlink(second), 0);
    assert_int_equal(mp_shm_unlink(third), -ENOENT);
    assert_int_equal(mp_shm_unlink(NULL), -EINVAL);
    mp_shm_close(second);
    mp_shm_close(third);
}

static void
test_shm_larger_than_dev_shm_fails_with_enospc_and_leaves_nothing(void **state)
{
    (void)state;
    struct statvfs sv;
    assert_int_equal(statvfs("/dev/shm", &sv), 0);
    size_t too_big = (size_t)sv.f_blocks * sv.f_frsize + ((size_t)1 << 30);
    char name[64];
    snprintf(name, sizeof name, "mpipc-test-full-%d", (int)getpid());
    mp_shm *s = NULL;
    assert_int_equal(mp_shm_open(&s, &(mp_shm_opts){.name = name, .create = true, .size = too_big}),
                     -ENOSPC);
    assert_false(name_exists(name));
    assert_int_equal(mp_shm_open(&s, &(mp_shm_opts){.create = true, .size = too_big}), -ENOSPC);
    assert_null(s); /* and the leak check sees no generated name left */
}

static void *
thread_creates_and_unlinks(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++) {
        mp_shm *s;
        if (mp_shm_open(&s, &(mp_shm_opts){.create = true, .size = 64, .sweep = i % 2}) != 0)
            return (void *)1;
        ((char *)mp_shm_buf(s))[63] = 1;
        int r = mp_shm_unlink(s);
        mp_shm_close(s);
        if (r != 0)
            return (void *)1;
    }
    return NULL;
}

static void
test_shm_threads_create_and_unlink_concurrently(void **state)
{
    (void)state;
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, thread_creates_and_unlinks, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *r;
        assert_int_equal(pthread_join(t[i], &r), 0);
        assert_null(r);
    }
}

/* ---- sweep ----------------------------------------------------------------------------------- */

struct sweep_names {
    char swept[128];
    char kept[128];
    th_barrier *created, *swept_once;
};

static int
child_creates_and_dies(void *p)
{
    struct sweep_names *n = p;
    mp_shm *a, *b;
    CHILD_CHECK(mp_shm_open(&a, &(mp_shm_opts){.create = true, .size = 8, .sweep = true}) == 0);
    CHILD_CHECK(mp_shm_open(&b, &(mp_shm_opts){.create = true, .size = 8}) == 0);
    snprintf(n->swept, sizeof n->swept, "%s", mp_shm_name(a));
    snprintf(n->kept, sizeof n->kept, "%s", mp_shm_name(b));
    CHILD_CHECK(th_barrier_wait(n->created) == 0);
    CHILD_CHECK(th_barrier_wait(n->swept_once) == 0);
    kill(getpid(), SIGKILL);
    return 1;
}

static void
test_shm_sweep_removes_opted_in_segments_of_a_killed_creator_only(void **state)
{
    (void)state;
    /* The parent creates first, so the child must not reuse the parent's cached identity. */
    mp_shm *live;
    assert_int_equal(mp_shm_open(&live, &(mp_shm_opts){.create = true, .size = 8, .sweep = true}),
                     0);
    struct sweep_names *n = th_shared(sizeof *n);
    n->created = th_barrier_new(2);
    n->swept_once = th_barrier_new(2);
    pid_t pid = th_fork(child_creates_and_dies, n);
    assert_true(pid > 0);
    assert_int_equal(th_barrier_wait(n->created), 0);
    assert_true(mp_shm_sweep() >= 0);
    assert_true(name_exists(n->swept)); /* its creator still lives */
    assert_int_equal(th_barrier_wait(n->swept_once), 0);
    int st = th_wait(pid, 30000);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_true(name_exists(n->swept));
    assert_true(name_exists(n->kept));

    assert_true(mp_shm_sweep() >= 1);
    assert_false(name_exists(n->swept));
    assert_true(name_exists(n->kept));           /* did not opt in */
    assert_true(name_exists(mp_shm_name(live))); /* its creator lives */

    mp_shm *kept;
    assert_int_equal(mp_shm_open(&kept, &(mp_shm_opts){.name = n->kept, .owner = true}), 0);
    assert_int_equal(mp_shm_unlink(kept), 0);
    mp_shm_close(kept);
    assert_int_equal(mp_shm_unlink(live), 0);
    mp_shm_close(live);
    th_barrier_free(n->created);
    th_barrier_free(n->swept_once);
    th_shared_free(n, sizeof *n);
}

static int
child_dies_inside_open(void *arg)
{
    (void)arg;
    CHILD_CHECK(mp__fault_arm("shm.open.created", 1, NULL, NULL) == 0);
    mp_shm *s;
    mp_shm_open(&s, &(mp_shm_opts){.create = true, .size = 8, .sweep = true});
    return 1; /* not reached: the fault point SIGKILLs this process */
}

static size_t
count_names(const char *prefix)
{
    size_t n = 0;
    DIR *d = opendir("/dev/shm");
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static void
test_shm_sweep_collects_a_creator_killed_inside_open(void **state)
{
    (void)state;
    if (!mp__fault_enabled())
        skip();
    pid_t pid = th_fork(child_dies_inside_open, NULL);
    assert_true(pid > 0);
    int st = th_wait(pid, 30000);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "mpsm_s_%d_", (int)pid);
    assert_int_equal(count_names(prefix), 1);
    assert_true(mp_shm_sweep() >= 1);
    assert_int_equal(count_names(prefix), 0);
}

static void
make_raw(const char *name)
{
    char path[160];
    snprintf(path, sizeof path, "/%s", name);
    int fd = shm_open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    close(fd);
}

static void
test_shm_sweep_sees_a_reused_pid_and_skips_other_namespaces(void **state)
{
    (void)state;
    mp_shm *live;
    assert_int_equal(mp_shm_open(&live, &(mp_shm_opts){.create = true, .size = 8, .sweep = true}),
                     0);
    int pid;
    unsigned long long start, ns;
    unsigned rnd;
    assert_int_equal(sscanf(mp_shm_name(live), "mpsm_s_%d_%llx_%llx_%x", &pid, &start, &ns, &rnd),
                     4);
    assert_int_equal(pid, getpid());

    /* Our pid with an earlier start time: a dead process whose pid we now have. */
    char reused[128], foreign[128], odd[128];
    snprintf(reused, sizeof reused, "mpsm_s_%d_%llx_%llx_%08x", pid, start - 1, ns, rnd);
    /* A dead pid in another pid namespace means nothing here. */
    snprintf(foreign, sizeof foreign, "mpsm_s_%d_%llx_%llx_%08x", 0x3fffffff, start, ns + 1, rnd);
    /* Not exactly the generated shape: never touched. */
    snprintf(odd, sizeof odd, "mpsm_s_+%d_%llx_%llx_%08x", 0x3fffffff, start, ns, rnd);
    make_raw(reused);
    make_raw(foreign);
    make_raw(odd);

    assert_true(mp_shm_sweep() >= 1);
    assert_false(name_exists(reused));
    assert_true(name_exists(foreign));
    assert_true(name_exists(odd));
    assert_true(name_exists(mp_shm_name(live)));

    char path[160];
    snprintf(path, sizeof path, "/%s", foreign);
    assert_int_equal(shm_unlink(path), 0);
    snprintf(path, sizeof path, "/%s", odd);
    assert_int_equal(shm_unlink(path), 0);
    assert_int_equal(mp_shm_unlink(live), 0);
    mp_shm_close(live);
}

/* ---- ShareableList --------------------------------------------------------------------------- */

/* clang-format off */
#define STR(x) {.type = MP_SHLIST_STR, .v.s = {x, sizeof(x) - 1}}
#define BYTES(x) {.type = MP_SHLIST_BYTES, .v.s = {x, sizeof(x) - 1}}
#define INT(x) {.type = MP_SHLIST_INT, .v.i = (x)}
#define FLOAT(x) {.type = MP_SHLIST_FLOAT, .v.f = (x)}
#define BOOL(x) {.type = MP_SHLIST_BOOL, .v.b = (x)}
#define NONE {.type = MP_SHLIST_NONE}
/* clang-format on */

static mp_shlist *
create_list(const mp_shlist_item *items, size_t n)
{
    mp_shlist *l = NULL;
    assert_int_equal(mp_shlist_open(&l, &(mp_shm_opts){.create = true}, items, n), 0);
    return l;
}

static void
drop_list(mp_shlist *l)
{
    assert_int_equal(mp_shm_unlink(mp_shlist_shm(l)), 0);
    mp_shlist_close(l);
}

static void
test_shlist_layout_is_python_byte_for_byte(void **state)
{
    (void)state;
    /* ShareableList(['ab', b'cd', 1, 2.5, None, True]): the example of the reference. */
    const mp_shlist_item items[] = {STR("ab"), BYTES("cd"), INT(1), FLOAT(2.5), NONE, BOOL(true)};
    mp_shlist *l = create_list(items, 6);
    const unsigned char *m = mp_shm_buf(mp_shlist_shm(l));
    assert_int_equal(mp_shm_size(mp_shlist_shm(l)), 8 + 7 * 8 + 6 * 8 + 6 * 8 + 6);
    int64_t head[8];
    memcpy(head, m, sizeof head);
    const int64_t want_head[8] = {6, 0, 8, 16, 24, 32, 40, 48};
    assert_memory_equal(head, want_head, sizeof head);
    const unsigned char *data = m + 64;
    assert_memory_equal(data, "ab\0\0\0\0\0\0cd\0\0\0\0\0\0", 16);
    int64_t one;
    double two_and_a_half;
    memcpy(&one, data + 16, 8);
    memcpy(&two_and_a_half, data + 24, 8);
    assert_int_equal(one, 1);
    assert_true(two_and_a_half == 2.5);
    assert_memory_equal(data + 32, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16);
    assert_memory_equal(data + 48,
                        "8s\0\0\0\0\0\0"
                        "8s\0\0\0\0\0\0"
                        "q\0\0\0\0\0\0\0"
                        "d\0\0\0\0\0\0\0"
                        "xxxxxx?x"
                        "xxxxxxx?",
                        48);
    assert_memory_equal(data + 96, "\1\2\0\0\3\0", 6);
    char fmt[64];
    assert_int_equal(mp_shlist_format(l, fmt, sizeof fmt), 22);
    assert_string_equal(fmt, "8s8sqdxxxxxx?xxxxxxxx?");
    assert_int_equal(mp_shlist_format(l, fmt, 22), -EMSGSIZE);
    drop_list(l);

    /* The empty list is 16 bytes, as Python's. */
    l = create_list(NULL, 0);
    assert_int_equal(mp_shlist_len(l), 0);
    assert_int_equal(mp_shm_size(mp_shlist_shm(l)), 16);
    assert_int_equal(mp_shlist_format(l, fmt, sizeof fmt), 0);
    drop_list(l);
}

static void
test_shlist_get_and_set_follow_python_rules(void **state)
{
    (void)state;
    const mp_shlist_item items[] = {STR("howdy"), BYTES("HoWdY"), FLOAT(-273.154), INT(100),
                                    NONE,         BOOL(true),     INT(42),         BYTES("a\0\0")};
    mp_shlist *l = create_list(items, 8);
    assert_int_equal(mp_shlist_len(l), 8);
    char buf[64];
    mp_shlist_item it;
    assert_int_equal(mp_shlist_get(l, 0, &it, buf, sizeof buf), 0);
    assert_int_equal(it.type, MP_SHLIST_STR);
    assert_int_equal(it.v.s.len, 5);
    assert_string_equal(it.v.s.ptr, "howdy");
    assert_int_equal(mp_shlist_get(l, -1, &it, buf, sizeof buf), 0); /* trailing NULs go */
    assert_int_equal(it.type, MP_SHLIST_BYTES);
    assert_int_equal(it.v.s.len, 1);
    assert_int_equal(mp_shlist_get(l, -6, &it, NULL, 0), 0);
    assert_int_equal(it.type, MP_SHLIST_FLOAT);
    assert_true(it.v.f == -273.154);
    assert_int_equal(mp_shlist_get(l, 4, &it, NULL, 0), 0);
    assert_int_equal(it.type, MP_SHLIST_NONE);
    assert_int_equal(mp_shlist_get(l, 5, &it, NULL, 0), 0);
    assert_true(it.type == MP_SHLIST_BOOL && it.v.b);
    assert_int_equal(mp_shlist_get(l, 8, &it, buf, sizeof buf), -ERANGE);
    assert_int_equal(mp_shlist_get(l, -9, &it, buf, sizeof buf), -ERANGE);
    assert_int_equal(mp_shlist_get(l, 1, &it, buf, 5), -EMSGSIZE); /* needs len + 1 */
    assert_true(it.type == MP_SHLIST_BYTES && it.v.s.len == 5);

    /* Types may change, slots may not grow. */
    const mp_shlist_item dry = STR("dry ice"), big = STR("larger than previously allocated");
    assert_int_equal(mp_shlist_set(l, 2, &(mp_shlist_item)FLOAT(-78.5)), 0);
    assert_int_equal(mp_shlist_set(l, 2, &dry), 0);
    assert_int_equal(mp_shlist_set(l, 2, &big), -ENOSPC);
    assert_int_equal(mp_shlist_get(l, 2, &it, buf, sizeof buf), 0);
    assert_true(it.type == MP_SHLIST_STR && strcmp(buf, "dry ice") == 0);
    assert_int_equal(mp_shlist_set(l, -8, &(mp_shlist_item)STR("12345678")), 0); /* fills it */
    assert_int_equal(mp_shlist_get(l, 0, &it, buf, sizeof buf), 0);
    assert_string_equal(buf, "12345678");
    assert_int_equal(mp_shlist_set(l, 3, &(mp_shlist_item)NONE), 0);
    assert_int_equal(mp_shlist_set(l, 4, &(mp_shlist_item)BOOL(false)), 0);
    assert_int_equal(mp_shlist_set(l, 5, &(mp_shlist_item)INT(-1)), 0);
    assert_int_equal(mp_shlist_set(l, 8, &dry), -ERANGE);
    assert_int_equal(mp_shlist_set(l, -9, &dry), -ERANGE);
    assert_int_equal(mp_shlist_set(l, 0, &(mp_shlist_item){.type = (mp_shlist_type)99}), MP_ETYPE);
    assert_int_equal(mp_shlist_set(l, 0, &(mp_shlist_item)STR("\xff")), -EINVAL);
    assert_int_equal(mp_shlist_set(l, 0, &(mp_shlist_item)STR("\xed\xa0\x80")), -EINVAL);
    assert_int_equal(mp_shlist_set(NULL, 0, &dry), -EINVAL);
    assert_int_equal(mp_shlist_get(l, 0, &it, buf, sizeof buf), 0);
    assert_string_equal(buf, "12345678"); /* the refused sets changed nothing */
    char fmt[80];
    assert_true(mp_shlist_format(l, fmt, sizeof fmt) > 0);
    assert_string_equal(fmt, "8s8s8sxxxxxx?xxxxxxxx?qq8s");
    drop_list(l);

    /* Python's format has 8 characters: the largest str slot is 9999992 bytes. */
    size_t max = 9999991;
    char *huge = calloc(1, max + 1);
    assert_non_null(huge);
    mp_shlist *hl = NULL;
    mp_shlist_item h = {.type = MP_SHLIST_BYTES, .v.s = {huge, max + 1}};
    assert_int_equal(mp_shlist_open(&hl, &(mp_shm_opts){.create = true}, &h, 1), -E2BIG);
    h.v.s.len = max;
    assert_int_equal(mp_shlist_open(&hl, &(mp_shm_opts){.create = true}, &h, 1), 0);
    assert_int_equal(mp_shlist_format(hl, fmt, sizeof fmt), 8);
    assert_string_equal(fmt, "9999992s");
    drop_list(hl);
    free(huge);
}

static void
test_shlist_count_and_index_use_python_equality(void **state)
{
    (void)state;
    const mp_shlist_item items[] = {INT(1),        FLOAT(1.0), BOOL(true), STR("ab"),
                                    BYTES("ab"),   NONE,       FLOAT(NAN), INT((1LL << 53) + 1),
                                    FLOAT(0x1p53), BOOL(false)};
    mp_shlist *l = create_list(items, MP__ARRAY_LEN(items));
    assert_int_equal(mp_shlist_count(l, &(mp_shlist_item)INT(1)), 3);
    assert_int_equal(mp_shlist_count(l, &(mp_shlist_item)BOOL(true)), 3);
    assert_int_equal(mp_shlist_count(l, &(mp_shlist_item)FLOAT(1.0)), 3);
    assert_int_equal(mp_shlist_count(l, &(mp_shlist_item)FLOAT(0.0)), 1); /* False */
    assert_int_equal(mp_shlist_count(l, &(mp_shlist_item)STR("ab")), 1);
    assert_int_equal(mp_shlist_index(l, &(mp_shlist_item)BYTES("ab")), 4);
    assert_int_equal(mp_shlist_index(l, &(mp_shlist_item)NONE), 5);
    assert_int_equal(mp_shlist_count(l, &(mp_shlist_item)FLOAT(NAN)), 0);
    /* 2**53 + 1 is not the double 2**53, although C's conversion would say so. */
    assert_int_equal(mp_shlist_index(l, &(mp_shlist_item)FLOAT(0x1p53)), 8);
    assert_int_equal(mp_shlist_index(l, &(mp_shlist_item)INT((1LL << 53) + 1)), 7);
    assert_int_equal(mp_shlist_index(l, &(mp_shlist_item)STR("abc")), -ENOENT);
    assert_int_equal(mp_shlist_count(l, &(mp_shlist_item){.type = (mp_shlist_type)-1}), MP_ETYPE);
    assert_int_equal(mp_shlist_count(NULL, &(mp_shlist_item)NONE), -EINVAL);
    drop_list(l);
}

struct list_arg {
    char name[128];
};

static int
child_attaches_list_and_writes(void *p)
{
    struct list_arg *a = p;
    mp_shlist *l;
    CHILD_CHECK(mp_shlist_open(&l, &(mp_shm_opts){.name = a->name}, NULL, 0) == 0);
    CHILD_CHECK(mp_shlist_len(l) == 3);
    mp_shlist_item it;
    char buf[16];
    CHILD_CHECK(mp_shlist_get(l, 1, &it, buf, sizeof buf) == 0 && strcmp(buf, "parent") == 0);
    CHILD_CHECK(mp_shlist_set(l, 0, &(mp_shlist_item)INT(7)) == 0);
    CHILD_CHECK(mp_shlist_set(l, 1, &(mp_shlist_item)STR("child")) == 0);
    CHILD_CHECK(mp_shm_unlink(mp_shlist_shm(l)) == -EPERM);
    mp_shlist_close(l);
    return 0;
}

static void
test_shlist_attached_by_name_in_a_child_sees_and_makes_writes(void **state)
{
    (void)state;
    const mp_shlist_item items[] = {NONE, STR("parent"), FLOAT(0.5)};
    mp_shlist *l = create_list(items, 3);
    struct list_arg *a = th_shared(sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", mp_shm_name(mp_shlist_shm(l)));
    assert_child_ok(th_fork(child_attaches_list_and_writes, a));
    mp_shlist_item it;
    char buf[16];
    assert_int_equal(mp_shlist_get(l, 0, &it, NULL, 0), 0);
    assert_true(it.type == MP_SHLIST_INT && it.v.i == 7);
    assert_int_equal(mp_shlist_get(l, 1, &it, buf, sizeof buf), 0);
    assert_string_equal(buf, "child");
    drop_list(l);
    th_shared_free(a, sizeof *a);
}

static void
test_shlist_rejects_bad_arguments_and_corrupted_segments(void **state)
{
    (void)state;
    mp_shlist *l = NULL;
    const mp_shlist_item one[] = {INT(1)};
    const mp_shlist_item bad_utf8[] = {STR("\xc0\xaf")}, bad_type[] = {{.type = 42}};
    assert_int_equal(mp_shlist_open(&l, &(mp_shm_opts){.create = true, .size = 8}, one, 1),
                     -EINVAL);
    assert_int_equal(mp_shlist_open(&l, &(mp_shm_opts){.create = true}, NULL, 1), -EINVAL);
    assert_int_equal(mp_shlist_open(&l, &(mp_shm_opts){.name = "x"}, one, 1), -EINVAL);
    assert_int_equal(mp_shlist_open(&l, &(mp_shm_opts){.create = true}, bad_utf8, 1), -EINVAL);
    assert_int_equal(mp_shlist_open(&l, &(mp_shm_opts){.create = true}, bad_type, 1), MP_ETYPE);
    assert_int_equal(mp_shlist_open(&l, &(mp_shm_opts){.name = "mpipc-test-nolist"}, NULL, 0),
                     -ENOENT);
    assert_null(l);

    /* A segment that is not a list, or a list whose header lies. */
    char name[64];
    snprintf(name, sizeof name, "mpipc-test-corrupt-%d", (int)getpid());
    mp_shm *s = create_named(name, 64);
    int64_t *w = mp_shm_buf(s);
    const int64_t lies[][3] = {{-1, 0, 0}, {4, 0, 8}, {1, 8, 16}, {1, 0, 4}, {1, 0, 1000}};
    for (size_t i = 0; i < MP__ARRAY_LEN(lies); i++) {
        memcpy(w, lies[i], sizeof lies[i]);
        assert_int_equal(mp_shlist_open(&l, &(mp_shm_opts){.name = name}, NULL, 0), -EPROTO);
    }
    mp_shm_close(s); /* the failed attaches did not unlink it */
    assert_true(name_exists(name));
    mp_shm *owner;
    assert_int_equal(mp_shm_open(&owner, &(mp_shm_opts){.name = name, .owner = true}), 0);
    assert_int_equal(mp_shm_unlink(owner), 0);
    mp_shm_close(owner);

    /* A corrupted format or code shows up as -EPROTO on access, not as a wild read. */
    const mp_shlist_item items[] = {STR("abc"), INT(2)};
    l = create_list(items, 2);
    unsigned char *m = mp_shm_buf(mp_shlist_shm(l));
    size_t fmts = 8 * 4 + 16;
    mp_shlist_item it;
    char buf[32];
    memcpy(m + fmts, "99s\0\0\0\0\0", 8); /* wider than its slot */
    assert_int_equal(mp_shlist_get(l, 0, &it, buf, sizeof buf), -EPROTO);
    assert_int_equal(mp_shlist_count(l, &(mp_shlist_item)INT(2)), -EPROTO);
    char fmt[32];
    assert_int_equal(mp_shlist_format(l, fmt, sizeof fmt), -EPROTO);
    memcpy(m + fmts, "8s\0\0\0\0\0\0", 8);
    m[fmts + 16 + 1] = 9; /* unknown type code for item 1 */
    assert_int_equal(mp_shlist_get(l, 1, &it, buf, sizeof buf), -EPROTO);
    m[fmts + 16 + 1] = 1; /* a str code on a "q" slot */
    assert_int_equal(mp_shlist_get(l, 1, &it, buf, sizeof buf), -EPROTO);
    m[fmts + 16 + 1] = 0;
    assert_int_equal(mp_shlist_get(l, 1, &it, buf, sizeof buf), 0);
    assert_int_equal(it.v.i, 2);
    drop_list(l);
}

/* ---- interop with Python --------------------------------------------------------------------- */

static void
assert_item(const mp_shlist *l, ptrdiff_t i, mp_shlist_item want)
{
    mp_shlist_item it;
    char buf[64];
    assert_int_equal(mp_shlist_get(l, i, &it, buf, sizeof buf), 0);
    assert_int_equal(it.type, want.type);
    switch (want.type) {
    case MP_SHLIST_INT:
        assert_true(it.v.i == want.v.i);
        break;
    case MP_SHLIST_FLOAT:
        assert_true(it.v.f == want.v.f);
        break;
    case MP_SHLIST_BOOL:
        assert_int_equal(it.v.b, want.v.b);
        break;
    case MP_SHLIST_STR:
    case MP_SHLIST_BYTES:
        assert_int_equal(it.v.s.len, want.v.s.len);
        assert_memory_equal(it.v.s.ptr, want.v.s.ptr, want.v.s.len);
        break;
    default:
        break;
    }
}

#define HELLO_WORLD "h\xc3\xa9llo w\xc3\xb6rld \xf0\x9f\x99\x82" /* 'héllo wörld 🙂' */

static void
test_interop_c_creates_and_python_attaches_reads_and_writes_back(void **state)
{
    (void)state;
    char py[TH_PY_MAX][PATH_MAX];
    int npy = th_py_find(py);
    if (npy == 0)
        skip();
    /* shm_peer.py's C_ITEMS. */
    const mp_shlist_item items[] = {
        STR("howdy"),   BYTES("HoWdY"), FLOAT(-273.154), INT(100),         NONE,
        BOOL(true),     INT(42),        STR(""),         STR(HELLO_WORLD), BYTES("\0ab\0"),
        INT(INT64_MIN), INT(INT64_MAX), BOOL(false),     FLOAT(INFINITY)};
    for (int k = 0; k < npy; k++) {
        mp_shm *s;
        assert_int_equal(mp_shm_open(&s, &(mp_shm_opts){.create = true, .size = 4096}), 0);
        unsigned char *b = mp_shm_buf(s);
        for (int i = 0; i < 4096; i++)
            b[i] = (unsigned char)i;
        mp_shlist *l = create_list(items, MP__ARRAY_LEN(items));

        th_py_peer p;
        const char *args[] = {"attach", mp_shm_name(s), mp_shm_name(mp_shlist_shm(l)), NULL};
        th_py_start(&p, py[k], SHM_PEER_PY, args);
        th_py_finish(&p);

        assert_memory_equal(b, "howdy", 5);
        for (int i = 5; i < 4096; i++)
            assert_int_equal(b[i], (unsigned char)i);
        /* shm_peer.py's PY_WRITES. */
        assert_item(l, 0, (mp_shlist_item)STR("HOWDY"));
        assert_item(l, 1, (mp_shlist_item)BYTES(""));
        assert_item(l, 2, (mp_shlist_item)STR("dry ice"));
        assert_item(l, 3, (mp_shlist_item)FLOAT(3.5));
        assert_item(l, 4, (mp_shlist_item)INT(7));
        assert_item(l, 5, (mp_shlist_item)NONE);
        assert_item(l, 6, (mp_shlist_item)BOOL(false));
        assert_item(l, 7, (mp_shlist_item)STR(""));
        assert_item(l, 8, (mp_shlist_item)STR(HELLO_WORLD));
        assert_item(l, 9, (mp_shlist_item)BYTES("\0ab"));
        assert_item(l, 10, (mp_shlist_item)INT(INT64_MIN));
        assert_item(l, 11, (mp_shlist_item)INT(INT64_MAX));
        assert_item(l, 12, (mp_shlist_item)STR("xxxxxxxx"));
        assert_item(l, 13, (mp_shlist_item)FLOAT(INFINITY));
        char fmt[128];
        assert_true(mp_shlist_format(l, fmt, sizeof fmt) > 0);
        assert_string_equal(fmt, "8s8s8sdqxxxxxx?xxxxxxxx?8s24s8sqq8sd");

        /* Python's tracker did not unlink what it attached to. */
        assert_true(name_exists(mp_shm_name(s)));
        assert_int_equal(mp_shm_unlink(s), 0);
        mp_shm_close(s);
        drop_list(l);
    }
}

static void
test_interop_python_creates_and_c_attaches_reads_and_writes_back(void **state)
{
    (void)state;
    char py[TH_PY_MAX][PATH_MAX];
    int npy = th_py_find(py);
    if (npy == 0)
        skip();
    for (int k = 0; k < npy; k++) {
        th_py_peer p;
        th_py_start(&p, py[k], SHM_PEER_PY, (const char *const[]){"create", NULL});
        char line[600], shm_name[300], list_name[300];
        if (!th_py_read_line(&p, line, sizeof line) ||
            sscanf(line, "%299s %299s", shm_name, list_name) != 2)
            th_py_finish(&p); /* shows why, and fails */
        assert_int_equal(sscanf(line, "%299s %299s", shm_name, list_name), 2);

        mp_shm *s;
        assert_int_equal(mp_shm_open(&s, &(mp_shm_opts){.name = shm_name}), 0);
        assert_int_equal(mp_shm_size(s), 1000);
        assert_memory_equal(mp_shm_buf(s), "py! ", 4);
        memcpy(mp_shm_buf(s), "C ok", 4);
        assert_int_equal(mp_shm_unlink(s), -EPERM); /* Python created it */
        mp_shm_close(s);

        mp_shlist *l;
        assert_int_equal(mp_shlist_open(&l, &(mp_shm_opts){.name = list_name}, NULL, 0), 0);
        assert_int_equal(mp_shlist_len(l), 7);
        /* shm_peer.py's PY_ITEMS. */
        assert_item(l, 0, (mp_shlist_item)INT(1));
        assert_item(l, 1, (mp_shlist_item)FLOAT(2.5));
        assert_item(l, 2, (mp_shlist_item)STR("three"));
        assert_item(l, 3, (mp_shlist_item)BYTES("four"));
        assert_item(l, 4, (mp_shlist_item)NONE);
        assert_item(l, 5, (mp_shlist_item)BOOL(false));
        assert_item(l, 6, (mp_shlist_item)STR("aaaaaaaaaaaaaaaaaaaa"));
        char fmt[128];
        assert_true(mp_shlist_format(l, fmt, sizeof fmt) > 0);
        assert_string_equal(fmt, "qd8s8sxxxxxx?xxxxxxxx?24s");
        const mp_shlist_item writes[] = {INT(-5),
                                         STR("C"),
                                         STR("bytes"),
                                         BYTES("str"),
                                         FLOAT(0.25),
                                         NONE,
                                         STR("bbbbbbbbbbbbbbbbbbbbbbbb")};
        for (size_t i = 0; i < MP__ARRAY_LEN(writes); i++)
            assert_int_equal(mp_shlist_set(l, (ptrdiff_t)i, &writes[i]), 0);
        assert_int_equal(mp_shlist_set(l, 6, &(mp_shlist_item)STR("bbbbbbbbbbbbbbbbbbbbbbbbb")),
                         -ENOSPC);
        assert_int_equal(mp_shm_unlink(mp_shlist_shm(l)), -EPERM);
        mp_shlist_close(l);

        assert_int_equal(write(p.in, "done\n", 5), 5);
        th_py_finish(&p);
        assert_false(name_exists(shm_name)); /* Python unlinked both */
        assert_false(name_exists(list_name));
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        /* First, so that its threads race to fill the per-process identity cache. */
        cmocka_unit_test(test_shm_threads_create_and_unlink_concurrently),
        cmocka_unit_test(test_shm_created_with_a_generated_name_is_shared_with_an_attaching_child),
        cmocka_unit_test(test_shm_names_follow_python_and_taken_names_are_refused_intact),
        cmocka_unit_test(test_shm_open_rejects_bad_arguments_and_leaves_nothing),
        cmocka_unit_test(test_shm_only_the_creator_or_an_owner_unlinks),
        cmocka_unit_test(test_shm_larger_than_dev_shm_fails_with_enospc_and_leaves_nothing),
        cmocka_unit_test(test_shm_sweep_removes_opted_in_segments_of_a_killed_creator_only),
        cmocka_unit_test(test_shm_sweep_sees_a_reused_pid_and_skips_other_namespaces),
        cmocka_unit_test(test_shm_sweep_collects_a_creator_killed_inside_open),
        cmocka_unit_test(test_shlist_layout_is_python_byte_for_byte),
        cmocka_unit_test(test_shlist_get_and_set_follow_python_rules),
        cmocka_unit_test(test_shlist_count_and_index_use_python_equality),
        cmocka_unit_test(test_shlist_attached_by_name_in_a_child_sees_and_makes_writes),
        cmocka_unit_test(test_shlist_rejects_bad_arguments_and_corrupted_segments),
        cmocka_unit_test(test_interop_c_creates_and_python_attaches_reads_and_writes_back),
        cmocka_unit_test(test_interop_python_creates_and_c_attaches_reads_and_writes_back),
    };
    return th_run_tests(tests);
}
