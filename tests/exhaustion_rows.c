/*
 * exhaustion_rows.c - see exhaustion_rows.h. Each row's open makes one object and hands it
 * over whatever the constructor left in its out-parameter (a sentinel before the call, so a
 * failure that leaves *out alone is seen); close releases it, unlinking a name it created.
 */
#define _GNU_SOURCE
#include "exhaustion_rows.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

/* What a row's functions share: the prerequisites of one attempt. */
mp_manager *mgr;
char unix_addr[96];
static mp_lock *pre_lock;
static mp_listener *pre_listener;
static int pre_fd[2] = {-1, -1};
static char pre_name[64];
static mp_conn *second; /* the other end of a pipe row */

#define BOUND "exhaustion-bound"

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
SIMPLE(array_raw, mp_array, mp_array_close,
       mp_array_open(&x, 'b', 10, &(mp_value_opts){.raw = true}))
SIMPLE(array_lock, mp_array, mp_array_close,
       mp_array_open(&x, 'i', 10, &(mp_value_opts){.lock = pre_lock}))
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
/* A served manager on an AF_UNIX path in $TMPDIR: a socket file left behind is seen. */
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

/* A manager connected to the served `mgr` (the C client of CPython's protocol, against
 * mpipc's own server), and containers created through it. */
static mp_manager *pre_remote;
#define CONNECT_OPTS                                                                               \
    (&(mp_manager_connect_opts){.client = {.authkey = "k", .authkey_len = 1}})
SIMPLE(manager_connect, mp_manager, mp_manager_close,
       mp_manager_connect(&x, mp_manager_address(mgr), CONNECT_OPTS))
SIMPLE(remote_list, mp_list, mp_list_close,
       mp_list_open(&x, pre_remote, (mp_item[]){mp_item_str("an item")}, 1))
SIMPLE(remote_dict, mp_dict, mp_dict_close, mp_dict_open(&x, pre_remote))
SIMPLE(remote_ns, mp_namespace, mp_namespace_close, mp_namespace_open(&x, pre_remote))

static int
prep_remote(void)
{
    return mp_manager_connect(&pre_remote, mp_manager_address(mgr), CONNECT_OPTS);
}
static void
unprep_remote(void)
{
    mp_manager_close(pre_remote);
    pre_remote = NULL;
}

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

/* ---- prerequisites --------------------------------------------------------------------------- */

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
#define MROW(id) .open = open_m_##id, .close = close_m_##id, .clean = name_unbound

const struct row rows[] = {
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
    {"mp_array_open raw", ROW(array_raw)},
    {"mp_array_open with a lock", ROW(array_lock), .prep = prep_lock, .unprep = unprep_lock},
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
    {"mp_manager_attach", ROW(manager_attach)},
    {"mp_manager_connect", ROW(manager_connect)},
    {"mp_list_open connected", ROW(remote_list), .prep = prep_remote, .unprep = unprep_remote},
    {"mp_dict_open connected", ROW(remote_dict), .prep = prep_remote, .unprep = unprep_remote},
    {"mp_namespace_open connected", ROW(remote_ns), .prep = prep_remote, .unprep = unprep_remote},
    {"mp_list_open", ROW(list_open)},
    {"mp_dict_open", ROW(dict_open)},
    {"mp_namespace_open", ROW(ns_open)},
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

const size_t n_rows = MP__ARRAY_LEN(rows);

const struct row *
find_row(const char *name)
{
    for (size_t i = 0; i < n_rows; i++)
        if (strcmp(rows[i].name, name) == 0)
            return &rows[i];
    return NULL;
}

/* ---- objects too large for a small /dev/shm or file size limit ------------------------------ */

size_t big_size;

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

const struct row big_rows[] = {
    {"mp_shm_open create", .open = open_shm_big, .close = close_shm_unlink, .prep = prep_name},
    {"mp_shm_open generated name", .open = open_shm_big_gen, .close = close_shm_unlink},
    {"mp_shlist_open create", .open = open_shlist_big, .close = close_shlist_unlink},
    {"mp_manager_open named", ROW(manager_named), .prep = prep_name, .unprep = unprep_name},
    {"mp_queue_open 8 MiB", ROW(queue_big)},
    {"mp_array_open 8 MiB", ROW(array_huge)},
    {"mp_manager_array 8 MiB", MROW(array_big)},
};
