/*
 * test_exhaustion.c - resource exhaustion: every constructor of every module, run out of heap
 * memory, of file descriptors, of /dev/shm (and of file size, which bounds the memfds), and of
 * processes, must return its documented error and leave nothing half-created: no fd, no
 * /dev/shm entry, no temporary directory, no child process, no mapping, no bound name.
 *
 * One table row per constructor (a small function that makes the object, and one that closes
 * it); each sweep fails the n-th allocation, or leaves exactly k free fds, for n, k = 0, 1, 2...
 * until the call succeeds, and compares a snapshot of the process's resources before and after
 * every failed call. The per-module tests keep their own narrower checks of the same kind (and
 * of calls other than constructors); this file is the one place that covers every constructor.
 */
#define _GNU_SOURCE
#include "helpers.h"
#include "internal.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

/* The sanitizers' allocators map and unmap memory of their own, so the mapping count is
 * compared only in builds without them. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* A private $TMPDIR, so that a listener's temporary directory left behind is seen. */
static char tmpdir[64];

/* ---- resource snapshots ---------------------------------------------------------------------- */

struct snap {
    int fds, shm, tmp, children, maps;
};

static int
count_dir(const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - (strcmp(path, "/proc/self/fd") == 0); /* opendir's own fd */
}

/* Children of this process, zombies included: the children lists of its threads. */
static int
count_children(void)
{
    DIR *d = opendir("/proc/self/task");
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[300];
        snprintf(path, sizeof path, "/proc/self/task/%s/children", e->d_name);
        FILE *f = fopen(path, "r");
        int pid;
        while (f != NULL && fscanf(f, "%d", &pid) == 1)
            n++;
        if (f != NULL)
            fclose(f);
    }
    closedir(d);
    return n;
}

static struct snap
take_snap(void)
{
    return (struct snap){.fds = count_dir("/proc/self/fd"),
                         .shm = count_dir("/dev/shm"),
                         .tmp = count_dir(tmpdir),
                         .children = count_children(),
                         .maps = UNDER_ASAN || TH_UNDER_TSAN ? 0 : th_count_maps()};
}

/* same_snap - true when nothing was left behind; else prints what grew, naming the step. */
static bool
same_snap(const struct snap *a, const struct snap *b, const char *what, long step)
{
    if (a->fds == b->fds && a->shm == b->shm && a->tmp == b->tmp && a->children == b->children &&
        a->maps == b->maps)
        return true;
    fprintf(stderr,
            "%s, step %ld: left behind: fds %d -> %d, /dev/shm %d -> %d, tmp %d -> %d, "
            "children %d -> %d, maps %d -> %d\n",
            what, step, a->fds, b->fds, a->shm, b->shm, a->tmp, b->tmp, a->children, b->children,
            a->maps, b->maps);
    return false;
}

/* ---- the table ------------------------------------------------------------------------------- */

/* What a row's functions share: the manager the managed-object rows use (served, so that the
 * attach and serving rows have something to reach), the prerequisites of one attempt. */
static mp_manager *mgr;
static mp_lock *pre_lock;
static mp_listener *pre_listener;
static int pre_fd[2] = {-1, -1};
static char pre_name[64];
static mp_conn *second; /* the other end of a pipe row */

#define BOUND "exhaustion-bound"

struct row {
    const char *name;
    int (*prep)(void); /* prerequisites of one attempt, made without faults (may be NULL) */
    int (*open)(void **obj);
    void (*close)(void *obj);
    void (*unprep)(void);
    bool (*clean)(void); /* after a failure: nothing half-created that a snapshot cannot see */
    bool needs_mgr;
    bool forks; /* starts a process: must fail with -EAGAIN when fork does */
};

static int
ret0(void *arg)
{
    (void)arg;
    return 0;
}

/* Process: open and start (the fork, the pidfd); closed after join. */
static int
open_process(void **o)
{
    mp_process *p = (mp_process *)1;
    int r = mp_process_open(&p, ret0, NULL, NULL);
    if (r != 0) {
        *o = p;
        return r;
    }
    r = mp_process_start(p);
    if (r != 0) {
        mp_process_close(p);
        p = NULL;
    }
    *o = p;
    return r;
}
static void
close_process(void *o)
{
    mp_process_join(o, MP_FOREVER);
    mp_process_close(o);
}

#define SIMPLE(id, type, closefn, call)                                                            \
    static int open_##id(void **o)                                                                 \
    {                                                                                              \
        type *x = (type *)1;                                                                       \
        int r = (call);                                                                            \
        *o = x;                                                                                    \
        return r;                                                                                  \
    }                                                                                              \
    static void close_##id(void *o)                                                                \
    {                                                                                              \
        closefn((type *)o);                                                                        \
    }

SIMPLE(lock, mp_lock, mp_lock_close, mp_lock_open(&x, NULL))
SIMPLE(rlock, mp_lock, mp_lock_close, mp_rlock_open(&x))
SIMPLE(sem, mp_semaphore, mp_semaphore_close, mp_semaphore_open(&x, 1, NULL))
SIMPLE(bsem, mp_semaphore, mp_semaphore_close,
       mp_semaphore_open(&x, 1, &(mp_semaphore_opts){.bounded = true}))
SIMPLE(cond, mp_condition, mp_condition_close, mp_condition_open(&x, NULL))
SIMPLE(cond_lock, mp_condition, mp_condition_close,
       mp_condition_open(&x, &(mp_condition_opts){.lock = pre_lock}))
SIMPLE(event, mp_event, mp_event_close, mp_event_open(&x))
SIMPLE(barrier, mp_barrier, mp_barrier_close, mp_barrier_open(&x, 2, NULL))
SIMPLE(queue, mp_queue, mp_queue_close, mp_queue_open(&x, NULL))
SIMPLE(jqueue, mp_queue, mp_queue_close,
       mp_queue_open(&x, &(mp_queue_opts){.joinable = true, .maxsize = 10, .capacity = 4096}))
SIMPLE(fqueue, mp_queue, mp_queue_close, mp_queue_open(&x, &(mp_queue_opts){.fileno = true}))
SIMPLE(value, mp_value, mp_value_close, mp_value_open(&x, 'i', NULL))
SIMPLE(value_raw, mp_value, mp_value_close, mp_value_open(&x, 'd', &(mp_value_opts){.raw = true}))
SIMPLE(value_lock, mp_value, mp_value_close,
       mp_value_open(&x, 'q', &(mp_value_opts){.lock = pre_lock}))
SIMPLE(array, mp_array, mp_array_close, mp_array_open(&x, 'i', 10, NULL))
SIMPLE(array_big, mp_array, mp_array_close, mp_array_open(&x, 'd', 1 << 17, NULL))
SIMPLE(listener_unix, mp_listener, mp_listener_close, mp_listener_open(&x, NULL, NULL))
SIMPLE(listener_tcp, mp_listener, mp_listener_close,
       mp_listener_open(&x, "127.0.0.1:0", &(mp_listener_opts){.authkey = "k", .authkey_len = 1}))
SIMPLE(client, mp_conn, mp_conn_close,
       mp_client_connect(&x, mp_listener_address(pre_listener), NULL, 5000))
SIMPLE(accept, mp_conn, mp_conn_close, mp_listener_accept(pre_listener, &x, 5000))
SIMPLE(shm_attach, mp_shm, mp_shm_close, mp_shm_open(&x, &(mp_shm_opts){.name = pre_name}))
SIMPLE(manager, mp_manager, mp_manager_close, mp_manager_open(&x, NULL))
SIMPLE(manager_named, mp_manager, mp_manager_close,
       mp_manager_open(&x, &(mp_manager_opts){.name = pre_name}))
SIMPLE(manager_served, mp_manager, mp_manager_close,
       mp_manager_open(&x, &(mp_manager_opts){
                               .address = "127.0.0.1:0",
                               .listener = &(mp_listener_opts){.authkey = "k", .authkey_len = 1}}))
/* A served manager on an AF_UNIX path in tmpdir: the snapshot sees a socket file left behind. */
static char unix_addr[96];
SIMPLE(manager_served_unix, mp_manager, mp_manager_close,
       mp_manager_open(&x, &(mp_manager_opts){
                               .address = unix_addr,
                               .listener = &(mp_listener_opts){.authkey = "k", .authkey_len = 1}}))
SIMPLE(manager_attach, mp_manager, mp_manager_close,
       mp_manager_attach(&x, mp_manager_name(mgr), MP_NOWAIT))
SIMPLE(list_open, mp_list, mp_list_close,
       mp_list_open(&x, mgr, (mp_item[]){mp_item_str("an item long enough for a block")}, 1))
SIMPLE(dict_open, mp_dict, mp_dict_close, mp_dict_open(&x, mgr))
SIMPLE(ns_open, mp_namespace, mp_namespace_close, mp_namespace_open(&x, mgr))

static int
open_shm_named(void **o)
{
    mp_shm *s = (mp_shm *)1;
    int r = mp_shm_open(&s, &(mp_shm_opts){.name = pre_name, .create = true, .size = 10000});
    *o = s;
    return r;
}

/* A generated name: the snapshot of /dev/shm sees it; unlinked at close. */
static int
open_shm_gen(void **o)
{
    mp_shm *s = (mp_shm *)1;
    int r = mp_shm_open(&s, &(mp_shm_opts){.create = true, .size = 100});
    *o = s;
    return r;
}
static void
close_shm_unlink(void *o)
{
    mp_shm_unlink(o);
    mp_shm_close(o);
}

static const mp_shlist_item shl_items[] = {{.type = MP_SHLIST_INT, .v.i = 7},
                                           {.type = MP_SHLIST_STR, .v.s = {"text", 4}}};
static int
open_shlist(void **o)
{
    mp_shlist *l = (mp_shlist *)1;
    int r = mp_shlist_open(&l, &(mp_shm_opts){.create = true}, shl_items, 2);
    *o = l;
    return r;
}
static void
close_shlist_unlink(void *o)
{
    mp_shm_unlink(mp_shlist_shm(o));
    mp_shlist_close(o);
}
SIMPLE(shlist_attach, mp_shlist, mp_shlist_close,
       mp_shlist_open(&x, &(mp_shm_opts){.name = pre_name}, NULL, 0))

/* Pipes make two handles: the second is kept aside and closed with the first. */
static int
open_pipe_(void **o, bool duplex)
{
    mp_conn *a = (mp_conn *)1;
    second = (mp_conn *)1;
    int r = mp_pipe_open(&a, &second, duplex);
    if (r != 0 && second != NULL)
        a = (mp_conn *)1; /* reported as half-created */
    *o = a;
    return r;
}
static int
open_pipe_duplex(void **o)
{
    return open_pipe_(o, true);
}
static int
open_pipe_simplex(void **o)
{
    return open_pipe_(o, false);
}
static void
close_pipe(void *o)
{
    mp_conn_close(o);
    mp_conn_close(second);
}

/* mp_conn_open takes the fd on success only. */
static int
open_conn(void **o)
{
    mp_conn *c = (mp_conn *)1;
    int r = mp_conn_open(&c, pre_fd[0], true, true);
    if (r == 0)
        pre_fd[0] = -1;
    *o = c;
    return r;
}
static void
close_conn(void *o)
{
    mp_conn_close(o);
}

/* Managed objects by name: a failure must leave the name unbound. */
#define MANAGED(id, type, closefn, call)                                                           \
    static int open_m_##id(void **o)                                                               \
    {                                                                                              \
        type *x = (type *)1;                                                                       \
        int r = (call);                                                                            \
        *o = x;                                                                                    \
        return r;                                                                                  \
    }                                                                                              \
    static void close_m_##id(void *o)                                                              \
    {                                                                                              \
        closefn((type *)o);                                                                        \
        mp_manager_delete(mgr, BOUND);                                                             \
    }

MANAGED(list, mp_list, mp_list_close, mp_manager_list(&x, mgr, BOUND))
MANAGED(dict, mp_dict, mp_dict_close, mp_manager_dict(&x, mgr, BOUND))
MANAGED(ns, mp_namespace, mp_namespace_close, mp_manager_namespace(&x, mgr, BOUND))
MANAGED(value, mp_value, mp_value_close, mp_manager_value(&x, mgr, BOUND, 'i', NULL))
MANAGED(array, mp_array, mp_array_close, mp_manager_array(&x, mgr, BOUND, 'd', 1000, NULL))
MANAGED(queue, mp_queue, mp_queue_close, mp_manager_queue(&x, mgr, BOUND, NULL))
MANAGED(jqueue, mp_queue, mp_queue_close,
        mp_manager_queue(&x, mgr, BOUND, &(mp_queue_opts){.joinable = true}))
MANAGED(lock, mp_lock, mp_lock_close, mp_manager_lock(&x, mgr, BOUND, NULL))
MANAGED(rlock, mp_lock, mp_lock_close,
        mp_manager_lock(&x, mgr, BOUND, &(mp_lock_opts){.recursive = true}))
MANAGED(sem, mp_semaphore, mp_semaphore_close, mp_manager_semaphore(&x, mgr, BOUND, 2, NULL))
MANAGED(cond, mp_condition, mp_condition_close, mp_manager_condition(&x, mgr, BOUND, NULL))
MANAGED(event, mp_event, mp_event_close, mp_manager_event(&x, mgr, BOUND))
MANAGED(barrier, mp_barrier, mp_barrier_close, mp_manager_barrier(&x, mgr, BOUND, 3, NULL))

static bool
name_unbound(void)
{
    return mp_manager_delete(mgr, BOUND) == -ENOENT;
}

/* ---- prerequisites -----------------------------------------------------------------------------
 */

static int
prep_lock(void)
{
    return mp_lock_open(&pre_lock, NULL);
}
static void
unprep_lock(void)
{
    mp_lock_close(pre_lock);
    pre_lock = NULL;
}

static int
prep_listener(void)
{
    return mp_listener_open(&pre_listener, "127.0.0.1:0", NULL);
}
static void
unprep_listener(void)
{
    mp_listener_close(pre_listener);
    pre_listener = NULL;
    if (pre_fd[0] >= 0)
        close(pre_fd[0]);
    pre_fd[0] = -1;
}

/* A listener with one raw client connection waiting in its backlog, for accept. */
static int
prep_pending(void)
{
    int r = prep_listener();
    if (r != 0)
        return r;
    const char *addr = mp_listener_address(pre_listener);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)atoi(strchr(addr, ':') + 1))};
    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    pre_fd[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (pre_fd[0] < 0 || connect(pre_fd[0], (struct sockaddr *)&sin, sizeof sin) != 0)
        return -errno;
    return 0;
}

static int
prep_socketpair(void)
{
    return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pre_fd) == 0 ? 0 : -errno;
}
static void
unprep_socketpair(void)
{
    for (int i = 0; i < 2; i++)
        if (pre_fd[i] >= 0)
            close(pre_fd[i]);
    pre_fd[0] = pre_fd[1] = -1;
}

static unsigned name_seq;

/* A fresh name for a named row: each attempt gets its own, so a leftover of a failed attempt
 * cannot make the next one fail with -EEXIST instead of being seen by the snapshot. */
static int
prep_name(void)
{
    snprintf(pre_name, sizeof pre_name, "mpipc-exh-%d-%u", (int)getpid(), name_seq++);
    return 0;
}
static void
unprep_name(void)
{
    char path[80];
    snprintf(path, sizeof path, "/%s", pre_name);
    shm_unlink(path);
}

static mp_shm *pre_shm;
static int
prep_segment(void)
{
    prep_name();
    return mp_shm_open(&pre_shm, &(mp_shm_opts){.name = pre_name, .create = true, .size = 4096});
}
static int
prep_shlist(void)
{
    prep_name();
    mp_shlist *l;
    int r = mp_shlist_open(&l, &(mp_shm_opts){.name = pre_name, .create = true}, shl_items, 2);
    if (r == 0)
        mp_shlist_close(l);
    return r;
}
static void
unprep_segment(void)
{
    mp_shm_close(pre_shm);
    pre_shm = NULL;
    unprep_name();
}

#define ROW(id) .open = open_##id, .close = close_##id
#define MROW(id)                                                                                   \
    .open = open_m_##id, .close = close_m_##id, .clean = name_unbound, .needs_mgr = true

static const struct row rows[] = {
    {"mp_process_open+start", ROW(process), .forks = true},
    {"mp_lock_open", ROW(lock)},
    {"mp_rlock_open", ROW(rlock)},
    {"mp_semaphore_open", ROW(sem)},
    {"mp_semaphore_open bounded", ROW(bsem)},
    {"mp_condition_open", ROW(cond)},
    {"mp_condition_open with a lock", ROW(cond_lock), .prep = prep_lock, .unprep = unprep_lock},
    {"mp_event_open", ROW(event)},
    {"mp_barrier_open", ROW(barrier)},
    {"mp_pipe_open duplex", .open = open_pipe_duplex, .close = close_pipe},
    {"mp_pipe_open simplex", .open = open_pipe_simplex, .close = close_pipe},
    {"mp_conn_open", .open = open_conn, .close = close_conn, .prep = prep_socketpair,
     .unprep = unprep_socketpair},
    {"mp_listener_open unix", ROW(listener_unix)},
    {"mp_listener_open tcp", ROW(listener_tcp)},
    {"mp_client_connect", ROW(client), .prep = prep_listener, .unprep = unprep_listener},
    {"mp_listener_accept", ROW(accept), .prep = prep_pending, .unprep = unprep_listener},
    {"mp_queue_open", ROW(queue)},
    {"mp_queue_open joinable", ROW(jqueue)},
    {"mp_queue_open fileno", ROW(fqueue)},
    {"mp_value_open", ROW(value)},
    {"mp_value_open raw", ROW(value_raw)},
    {"mp_value_open with a lock", ROW(value_lock), .prep = prep_lock, .unprep = unprep_lock},
    {"mp_array_open", ROW(array)},
    {"mp_array_open large", ROW(array_big)},
    {"mp_shm_open create", .open = open_shm_named, .close = close_shm_unlink, .prep = prep_name,
     .unprep = unprep_name},
    {"mp_shm_open generated name", .open = open_shm_gen, .close = close_shm_unlink},
    {"mp_shm_open attach", ROW(shm_attach), .prep = prep_segment, .unprep = unprep_segment},
    {"mp_shlist_open create", .open = open_shlist, .close = close_shlist_unlink},
    {"mp_shlist_open attach", ROW(shlist_attach), .prep = prep_shlist, .unprep = unprep_name},
    {"mp_manager_open", ROW(manager), .forks = true},
    {"mp_manager_open named", ROW(manager_named), .prep = prep_name, .unprep = unprep_name,
     .forks = true},
    {"mp_manager_open served", ROW(manager_served), .forks = true},
    {"mp_manager_open served unix", ROW(manager_served_unix), .forks = true},
    {"mp_manager_attach", ROW(manager_attach), .needs_mgr = true},
    {"mp_list_open", ROW(list_open), .needs_mgr = true},
    {"mp_dict_open", ROW(dict_open), .needs_mgr = true},
    {"mp_namespace_open", ROW(ns_open), .needs_mgr = true},
    {"mp_manager_list", MROW(list)},
    {"mp_manager_dict", MROW(dict)},
    {"mp_manager_namespace", MROW(ns)},
    {"mp_manager_value", MROW(value)},
    {"mp_manager_array", MROW(array)},
    {"mp_manager_queue", MROW(queue)},
    {"mp_manager_queue joinable", MROW(jqueue)},
    {"mp_manager_lock", MROW(lock)},
    {"mp_manager_lock recursive", MROW(rlock)},
    {"mp_manager_semaphore", MROW(sem)},
    {"mp_manager_condition", MROW(cond)},
    {"mp_manager_event", MROW(event)},
    {"mp_manager_barrier", MROW(barrier)},
};

#define N_ROWS MP__ARRAY_LEN(rows)

/* ---- the sweeps ------------------------------------------------------------------------------ */

enum mode { ALLOC, FDS };

/* limit_fds - lower RLIMIT_NOFILE so that exactly k more fds can be opened (the limit bounds
 * the fd number, so it is set to the k-th free number); the old limit goes to *old. */
static int
limit_fds(long k, struct rlimit *old)
{
    if (getrlimit(RLIMIT_NOFILE, old) != 0)
        return -1;
    int fd = 0;
    for (long free_seen = 0;; fd++) {
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF && free_seen++ == k)
            break;
    }
    struct rlimit rl = {.rlim_cur = (rlim_t)fd, .rlim_max = old->rlim_max};
    return setrlimit(RLIMIT_NOFILE, &rl);
}

/* sweep - run one row with the n-th allocation failing (ALLOC) or with n free fds (FDS), for
 * n = 0, 1, ... until the call succeeds. Every failure must be the row's documented code, leave
 * *out NULL and leave nothing behind. Returns how many steps failed, or -1 (printed) when a
 * check did not hold. Works in forked children too (no cmocka asserts). */
static long
sweep(const struct row *w, enum mode mode)
{
    const int want = mode == ALLOC ? -ENOMEM : -EMFILE;
    for (long n = 0; n < 200; n++) {
        int r = w->prep != NULL ? w->prep() : 0;
        if (r != 0) {
            fprintf(stderr, "%s: prerequisite failed: %s\n", w->name, mp_strerror(r));
            return -1;
        }
        struct snap before = take_snap();
        void *obj = NULL;
        if (mode == ALLOC) {
            mp__alloc_fail_after(n);
            r = w->open(&obj);
            mp__alloc_fail_after(-1);
        } else {
            struct rlimit old;
            if (limit_fds(n, &old) != 0)
                return -1;
            r = w->open(&obj);
            setrlimit(RLIMIT_NOFILE, &old);
        }
        if (r == 0) {
            w->close(obj);
            if (w->unprep != NULL)
                w->unprep();
            return n;
        }
        bool ok = true;
        if (r != want) {
            fprintf(stderr, "%s, step %ld: returned %d (%s), expected %s\n", w->name, n, r,
                    mp_strerror(r), mp_strerror(want));
            ok = false;
        }
        if (obj != NULL) {
            fprintf(stderr, "%s, step %ld: failed but *out is not NULL\n", w->name, n);
            ok = false;
        }
        struct snap after = take_snap();
        ok = same_snap(&before, &after, w->name, n) && ok;
        if (w->clean != NULL && !w->clean()) {
            fprintf(stderr, "%s, step %ld: failed but left its name bound\n", w->name, n);
            ok = false;
        }
        if (w->unprep != NULL)
            w->unprep();
        if (!ok)
            return -1;
    }
    fprintf(stderr, "%s: still failing after 200 steps\n", w->name);
    return -1;
}

static const mp_listener_opts mgr_listener = {.authkey = "k", .authkey_len = 1};

/* Group setup and teardown of the tests that use the table: the manager of its rows. */
static int
open_mgr(void **state)
{
    (void)state;
    return mp_manager_open(&mgr,
                           &(mp_manager_opts){.address = "127.0.0.1:0", .listener = &mgr_listener});
}

static int
close_mgr(void **state)
{
    (void)state;
    mp_manager_close(mgr);
    mgr = NULL;
    return 0;
}

static void
test_every_constructor_unwinds_each_failed_allocation(void **state)
{
    (void)state;
    long total = 0;
    int bad = 0;
    for (size_t i = 0; i < N_ROWS; i++) {
        long n = sweep(&rows[i], ALLOC);
        if (n < 0)
            bad++;
        else
            total += n;
        printf("[ ALLOC    ] %-32s %3ld failure points\n", rows[i].name, n);
    }
    printf("[ ALLOC    ] %zu constructors, %ld failed allocations unwound\n", N_ROWS, total);
    assert_int_equal(bad, 0);
}

/* Each row in a child of its own: RLIMIT_NOFILE is per process, and a fresh child's arenas have
 * no chunk yet, so the first object of each kind needs an fd for its chunk too. */
static long *fd_steps;

static int
fds_child(void *arg)
{
    const struct row *w = arg;
    long n = sweep(w, FDS);
    fd_steps[w - rows] = n;
    return n >= 0 ? 0 : 1;
}

static void
test_every_constructor_fails_with_emfile_when_fds_run_out(void **state)
{
    (void)state;
    fd_steps = th_shared(N_ROWS * sizeof *fd_steps);
    int bad = 0;
    long total = 0;
    for (size_t i = 0; i < N_ROWS; i++) {
        pid_t pid = th_fork(fds_child, (void *)&rows[i]);
        assert_true(pid > 0);
        int st = th_wait(pid, 30000);
        bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        bad += !ok;
        total += ok ? fd_steps[i] : 0;
        printf("[ EMFILE   ] %-32s %3ld failure points%s\n", rows[i].name, fd_steps[i],
               ok ? "" : "  FAILED");
    }
    th_shared_free(fd_steps, N_ROWS * sizeof *fd_steps);
    printf("[ EMFILE   ] %zu constructors, %ld fd shortages unwound\n", N_ROWS, total);
    assert_int_equal(bad, 0);
}

/* ---- a full /dev/shm, and the bound on memfds ------------------------------------------------ */

/* mount_dev_shm - a tmpfs of `size` over /dev/shm, in this process's own mount namespace (made
 * on the first call). Needs root; false without. */
static bool
mount_dev_shm(const char *size)
{
    static bool own_ns;
    if (!own_ns &&
        (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0))
        return false;
    own_ns = true;
    char opts[64];
    snprintf(opts, sizeof opts, "size=%s,mode=1777", size);
    return mount("mpipc-full", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, opts) == 0;
}

/* expect_fail - call w->open once, unarmed: it must fail with `want`, leaving nothing. */
static bool
expect_fail(const struct row *w, int want)
{
    if (w->prep != NULL && w->prep() != 0)
        return false;
    struct snap before = take_snap();
    void *obj = NULL;
    int r = w->open(&obj);
    struct snap after = take_snap();
    bool ok = r == want && obj == NULL && same_snap(&before, &after, w->name, 0) &&
              (w->clean == NULL || w->clean());
    if (r != want)
        fprintf(stderr, "%s: returned %d (%s), expected %s\n", w->name, r, mp_strerror(r),
                mp_strerror(want));
    if (r == 0)
        w->close(obj);
    if (w->unprep != NULL)
        w->unprep();
    return ok;
}

static size_t big_size;

static int
open_shm_big(void **o)
{
    mp_shm *s = (mp_shm *)1;
    int r = mp_shm_open(&s, &(mp_shm_opts){.name = pre_name, .create = true, .size = big_size});
    *o = s;
    return r;
}
static int
open_shm_big_gen(void **o)
{
    mp_shm *s = (mp_shm *)1;
    int r = mp_shm_open(&s, &(mp_shm_opts){.create = true, .sweep = true, .size = big_size});
    *o = s;
    return r;
}
static int
open_shlist_big(void **o)
{
    static char bytes[100000];
    mp_shlist_item it = {.type = MP_SHLIST_BYTES, .v.s = {bytes, sizeof bytes}};
    mp_shlist *l = (mp_shlist *)1;
    int r = mp_shlist_open(&l, &(mp_shm_opts){.create = true}, &it, 1);
    *o = l;
    return r;
}
SIMPLE(queue_big, mp_queue, mp_queue_close,
       mp_queue_open(&x, &(mp_queue_opts){.capacity = (size_t)8 << 20}))
SIMPLE(array_huge, mp_array, mp_array_close, mp_array_open(&x, 'd', (size_t)1 << 20, NULL))
MANAGED(array_big, mp_array, mp_array_close,
        mp_manager_array(&x, mgr, BOUND, 'd', (size_t)1 << 20, NULL))

static const struct row big_rows[] = {
    {"mp_shm_open create", .open = open_shm_big, .close = close_shm_unlink, .prep = prep_name},
    {"mp_shm_open generated name", .open = open_shm_big_gen, .close = close_shm_unlink},
    {"mp_shlist_open create", .open = open_shlist_big, .close = close_shlist_unlink},
    {"mp_manager_open named", ROW(manager_named), .prep = prep_name, .unprep = unprep_name},
    {"mp_queue_open 8 MiB", ROW(queue_big)},
    {"mp_array_open 8 MiB", ROW(array_huge)},
    {"mp_manager_array 8 MiB", MROW(array_big)},
};
enum { BIG_SHM, BIG_SHM_GEN, BIG_SHLIST, BIG_MANAGER, BIG_QUEUE, BIG_ARRAY, BIG_MARRAY };

/* grow_list - append 60 KB items to a list of mgr until it fails; the error (and the count
 * appended, which the list must still hold, in *n). */
static int
grow_list(size_t *n)
{
    static char item[60000];
    mp_list *l;
    int r = mp_manager_list(&l, mgr, "grown");
    for (*n = 0; r == 0 && *n < 1000; ++*n)
        r = mp_list_append(l, &(mp_item){.type = MP_ITEM_BYTES, .v.s = {item, sizeof item}});
    if (r != 0)
        --*n;
    if (l != NULL && mp_list_len(l) != (ssize_t)*n) {
        fprintf(stderr, "the list holds %zd items, %zu were appended\n", mp_list_len(l), *n);
        r = 1;
    }
    mp_list_close(l);
    return r;
}

static int
full_dev_shm_child(void *arg)
{
    (void)arg;
    if (!mount_dev_shm("64k"))
        return 77;
    struct snap empty = take_snap();
    CHILD_CHECK(empty.shm == 0);
    big_size = 128 << 10;
    for (int i = BIG_SHM; i <= BIG_MANAGER; i++) /* the manager's heap starts at 256 KB */
        CHILD_CHECK(expect_fail(&big_rows[i], -ENOSPC));
    /* Filled up by one segment: the next gets -ENOSPC. */
    mp_shm *s;
    CHILD_CHECK(mp_shm_open(&s, &(mp_shm_opts){.create = true, .size = 48 << 10}) == 0);
    big_size = 32 << 10;
    CHILD_CHECK(expect_fail(&big_rows[BIG_SHM], -ENOSPC));
    CHILD_CHECK(mp_shm_unlink(s) == 0);
    mp_shm_close(s);

    /* A named manager's heap that outgrows its tmpfs: growth fails with -ENOSPC, what was
     * stored stays whole, an object that does not fit is not bound, and shutdown removes the
     * name. */
    CHILD_CHECK(mount_dev_shm("1m"));
    CHILD_CHECK(mp_manager_open(&mgr, &(mp_manager_opts){.name = "mpipc-exh-full"}) == 0);
    CHILD_CHECK(count_dir("/dev/shm") == 1);
    size_t n;
    CHILD_CHECK(grow_list(&n) == -ENOSPC);
    CHILD_CHECK(n >= 2);
    CHILD_CHECK(expect_fail(&big_rows[BIG_MARRAY], -ENOSPC));
    printf("[ ENOSPC   ] a 1 MiB /dev/shm took %zu items of 60 KB in a manager list\n", n);
    fflush(stdout);
    mp_manager_close(mgr);
    mgr = NULL;
    struct snap after = take_snap();
    CHILD_CHECK(same_snap(&empty, &after, "manager shutdown", 0));
    return 0;
}

static void
test_a_full_dev_shm_gives_enospc_and_leaves_no_entry(void **state)
{
    (void)state;
    pid_t pid = th_fork(full_dev_shm_child, NULL);
    assert_true(pid > 0);
    int st = th_wait(pid, 30000);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) == 77)
        skip(); /* not root: no tmpfs of our own */
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* memfds live on the kernel's internal tmpfs mount, which has no size limit: a full /dev/shm
 * does not bound them. What does is RLIMIT_FSIZE (posix_fallocate and ftruncate check it on
 * tmpfs too), and the memory cgroup's limit. The first can be tested here, unprivileged: the
 * anonymous objects fail with -EFBIG and leave nothing. SIGXFSZ is ignored so that the limit is
 * an error rather than the end of the process. */
static int
file_size_child(void *arg)
{
    (void)arg;
    signal(SIGXFSZ, SIG_IGN);
    /* This child's arenas have no chunk yet: the first sync object or value needs one (1 MiB). */
    struct rlimit rl;
    CHILD_CHECK(getrlimit(RLIMIT_FSIZE, &rl) == 0);
    rl.rlim_cur = 64 << 10;
    CHILD_CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
    rlim_t unlimited = rl.rlim_max;
    int tried = 0;
    for (size_t i = 0; i < N_ROWS; i++)
        if (rows[i].open == open_lock || rows[i].open == open_value) {
            CHILD_CHECK(expect_fail(&rows[i], -EFBIG));
            tried++;
        }
    CHILD_CHECK(tried == 2);
    rl.rlim_cur = unlimited;
    CHILD_CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
    CHILD_CHECK(mp_manager_open(&mgr, NULL) == 0); /* 256 KB: under the limit */
    rl.rlim_cur = 1 << 20;
    CHILD_CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
    big_size = 2 << 20;
    CHILD_CHECK(expect_fail(&big_rows[BIG_QUEUE], -EFBIG));
    CHILD_CHECK(expect_fail(&big_rows[BIG_ARRAY], -EFBIG));
    CHILD_CHECK(expect_fail(&big_rows[BIG_SHM], -EFBIG));
    CHILD_CHECK(expect_fail(&big_rows[BIG_SHM_GEN], -EFBIG));
    CHILD_CHECK(expect_fail(&big_rows[BIG_MARRAY], -EFBIG));
    size_t n;
    CHILD_CHECK(grow_list(&n) == -EFBIG);
    mp_manager_close(mgr);
    mgr = NULL;
    return 0;
}

static void
test_the_file_size_limit_bounds_anonymous_objects_with_efbig(void **state)
{
    (void)state;
    pid_t pid = th_fork(file_size_child, NULL);
    assert_true(pid > 0);
    assert_child_ok(pid);
}

/* ---- a served manager out of fds ----------------------------------------------------------------
 */

/* cpu_ticks - user + system time of process pid so far, in clock ticks. */
static long
cpu_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    size_t n = f != NULL ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f != NULL)
        fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    unsigned long ut, st;
    /* Fields 3 to 15 after the command: state ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime stime. */
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (long)(ut + st);
}

/* lowest_free_fd - the lowest fd number process pid has not open. */
static int
lowest_free_fd(pid_t pid)
{
    char path[64];
    for (int fd = 0;; fd++) {
        snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)pid, fd);
        if (access(path, F_OK) != 0)
            return fd;
    }
}

/* A manager process that cannot accept a client (no fd left) must not spin on the pending
 * connection: it leaves it waiting (the client's handshake times out) and serves again as soon
 * as fds are available. */
static void
test_a_served_manager_out_of_fds_waits_without_spinning(void **state)
{
    (void)state;
    mp_manager *m = mgr;
    pid_t pid = mp_manager_pid(m);
    /* A first client, kept connected, shows that the manager process serves (it has closed
     * what it inherited), and holds its fd there; then the limit is set to its lowest free fd
     * number, so that it can open no new fd. (Not 0: poll() refuses more fds than the limit.) */
    const mp_client_opts key = {.authkey = "k", .authkey_len = 1};
    mp_conn *first, *c = (mp_conn *)1;
    assert_int_equal(mp_client_connect(&first, mp_manager_address(m), &key, 10000), 0);
    struct rlimit old, none;
    assert_int_equal(prlimit(pid, RLIMIT_NOFILE, NULL, &old), 0);
    none = (struct rlimit){.rlim_cur = (rlim_t)lowest_free_fd(pid), .rlim_max = old.rlim_max};
    assert_int_equal(prlimit(pid, RLIMIT_NOFILE, &none, NULL), 0);

    long t0 = cpu_ticks(pid);
    int64_t start = th_now_ms();
    assert_int_equal(mp_client_connect(&c, mp_manager_address(m), &key, 1000), -ETIMEDOUT);
    long spent = cpu_ticks(pid) - t0;
    int64_t waited = th_now_ms() - start;
    assert_null(c);
    printf("[ SERVE    ] without fds the manager process used %ld ms of CPU in %lld ms\n",
           spent * 1000 / sysconf(_SC_CLK_TCK), (long long)waited);
    /* Spinning takes most of a core for the whole second, even on a busy machine; waiting
     * takes next to nothing. */
    assert_true(t0 >= 0 && spent * 1000 / sysconf(_SC_CLK_TCK) < 200);

    assert_int_equal(prlimit(pid, RLIMIT_NOFILE, &old, NULL), 0);
    assert_int_equal(mp_client_connect(&c, mp_manager_address(m), &key, 10000), 0);
    mp_conn_close(c);
    mp_conn_close(first);
}

/* ---- fork failure ------------------------------------------------------------------------------
 */

#if defined(__x86_64__)
#define AUDIT_ARCH_NATIVE AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define AUDIT_ARCH_NATIVE AUDIT_ARCH_AARCH64
#endif

/* no_more_processes - make every process-creating system call of this process fail with
 * EAGAIN, as fork() does at RLIMIT_NPROC (which root, and so CI, bypasses): a seccomp filter,
 * allowed unprivileged after PR_SET_NO_NEW_PRIVS. Threads could not be created either. */
static bool
no_more_processes(void)
{
#ifdef AUDIT_ARCH_NATIVE
    static const int nrs[] = {
        SYS_clone,
#ifdef SYS_clone3
        SYS_clone3,
#endif
#ifdef SYS_fork
        SYS_fork,
#endif
#ifdef SYS_vfork
        SYS_vfork,
#endif
    };
    enum { N = MP__ARRAY_LEN(nrs) };
    struct sock_filter f[4 + N + 2];
    unsigned k = 0;
    f[k++] =
        (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    /* Another ABI's calls pass untouched. */
    f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_NATIVE, 1, 0);
    f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    f[k++] =
        (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    for (unsigned i = 0; i < N; i++) /* a match jumps to the EAGAIN return after the list */
        f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nrs[i],
                                              (unsigned char)(N - i), 0);
    f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAGAIN);
    struct sock_fprog prog = {.len = (unsigned short)k, .filter = f};
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
           prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
#else
    return false;
#endif
}

/* The calls that fork: each must return -EAGAIN and leave nothing (no heap segment, fd,
 * temporary directory or child). */
static int
fork_fails_child(void *arg)
{
    (void)arg;
    if (!no_more_processes())
        return 77;
    CHILD_CHECK(fork() < 0 && errno == EAGAIN); /* the filter works */
    int forking = 0;
    for (size_t i = 0; i < N_ROWS; i++) {
        const struct row *w = &rows[i];
        if (!w->forks)
            continue;
        forking++;
        CHILD_CHECK(w->prep == NULL || w->prep() == 0);
        struct snap before = take_snap();
        void *obj = NULL;
        int r = w->open(&obj);
        struct snap after = take_snap();
        if (r != -EAGAIN)
            fprintf(stderr, "%s: returned %d (%s) without fork\n", w->name, r, mp_strerror(r));
        CHILD_CHECK(r == -EAGAIN && obj == NULL);
        CHILD_CHECK(same_snap(&before, &after, w->name, 0));
        if (w->unprep != NULL)
            w->unprep();
    }
    CHILD_CHECK(forking == 5);
    /* A process whose start failed may be started once fork works again: here, it is still
     * new, so close frees it at once. */
    mp_process *p;
    CHILD_CHECK(mp_process_open(&p, ret0, NULL, NULL) == 0);
    CHILD_CHECK(mp_process_start(p) == -EAGAIN);
    CHILD_CHECK(mp_process_is_alive(p) == 0);
    CHILD_CHECK(mp_process_close(p) == 0);
    return 0;
}

static void
test_calls_that_fork_fail_with_eagain_and_leave_nothing(void **state)
{
    (void)state;
    pid_t pid = th_fork(fork_fails_child, NULL);
    assert_true(pid > 0);
    int st = th_wait(pid, 30000);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) == 77)
        skip(); /* no seccomp filter on this architecture or kernel */
    assert_int_equal(WEXITSTATUS(st), 0);
}

int
main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mpipc-exh-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return 1;
    setenv("TMPDIR", tmpdir, 1);
    snprintf(unix_addr, sizeof unix_addr, "%s/manager.sock", tmpdir);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_constructor_unwinds_each_failed_allocation,
                                        open_mgr, close_mgr),
        cmocka_unit_test_setup_teardown(test_every_constructor_fails_with_emfile_when_fds_run_out,
                                        open_mgr, close_mgr),
        cmocka_unit_test(test_a_full_dev_shm_gives_enospc_and_leaves_no_entry),
        cmocka_unit_test(test_the_file_size_limit_bounds_anonymous_objects_with_efbig),
        cmocka_unit_test(test_calls_that_fork_fail_with_eagain_and_leave_nothing),
        cmocka_unit_test_setup_teardown(test_a_served_manager_out_of_fds_waits_without_spinning,
                                        open_mgr, close_mgr),
    };
    int r = th_run_tests(tests);
    if (rmdir(tmpdir) != 0) {
        fprintf(stderr, "[  LEAK    ] %s is not empty\n", tmpdir);
        r++;
    }
    return r;
}
