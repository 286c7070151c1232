/*
 * manager.c - mp_manager: the manager process that keeps the heap's lifetime, and the public
 * container calls, which check their arguments and go through the container's backend.
 *
 * The manager process is forked by mp_manager_open and does nothing but wait, in poll(), for
 * one of two things: the owner's pidfd becoming readable (the owner died) or the shutdown
 * eventfd being written (the owner shut the manager down). It then marks the heap shut down,
 * removes the name and exits. An eventfd rather than a pipe, so that the owner's shutdown
 * never raises SIGPIPE when the manager process has already gone. It runs only
 * async-signal-safe calls after the fork (the owner may have threads), and closes every fd it
 * inherited except the three it needs, so that it never keeps another object's pipe open.
 *
 * A served manager (opts->address) binds its listener here before the fork; the manager
 * process keeps that fd too and serves CPython's manager protocol on it (mserve.c), which
 * allocates: glibc's fork() leaves malloc usable in the child of a threaded process.
 */
#include "mserve.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_RESERVE ((size_t)1 << 30)
#define SHUTDOWN_WAIT_MS 1000

static int
pidfd_open_(pid_t pid)
{
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* close_others - close every fd of this (just forked) process except those in keep[0..n),
 * which must be sorted. close_range (Linux 5.9) where it exists, else one close() each. */
static void
close_others(const int *keep, int n)
{
    unsigned lo = 3;
    for (int i = 0; i <= n; i++) {
        unsigned hi = i < n ? (unsigned)keep[i] : ~0u;
        if (i < n && (unsigned)keep[i] < lo)
            continue;
        if (hi > lo) {
            if (syscall(SYS_close_range, lo, hi - 1, 0) != 0) {
                struct rlimit rl;
                unsigned top = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536
                                   ? (unsigned)rl.rlim_cur
                                   : 65536;
                for (unsigned fd = lo; fd < hi && fd < top; fd++)
                    close((int)fd);
            }
        }
        lo = hi + 1;
    }
}

/* The manager process. path: "/name" for shm_unlink, file: "/dev/shm/name" for the check that
 * the name still is our segment. */
static _Noreturn void
manager_main(mp_manager *m, int owner_pidfd, const char *path, const char *file)
{
    mp__heap *h = m->h;
    pid_t owner = m->owner;
    int evfd = m->evfd;
    signal(SIGINT, SIG_IGN); /* as Python's server: Ctrl-C is for the owner to handle */
    int keep[4] = {h->fd, owner_pidfd, evfd, m->l != NULL ? mp_listener_fileno(m->l) : -1};
    int n = 0, sorted[4];
    for (int i = 0; i < 4; i++)
        if (keep[i] >= 0) {
            int j = n++;
            while (j > 0 && sorted[j - 1] > keep[i]) {
                sorted[j] = sorted[j - 1];
                j--;
            }
            sorted[j] = keep[i];
        }
    close_others(sorted, n);
    /* A served manager answers clients until it is stopped; otherwise it only waits. */
    if (m->l != NULL)
        mp__serve(h, m->l, m->reg->off, evfd, owner_pidfd, owner);
    while (m->l == NULL) {
        struct pollfd p[2] = {{.fd = evfd, .events = POLLIN},
                              {.fd = owner_pidfd, .events = POLLIN}};
        /* Without a pidfd, look at the parent every 100 ms instead. */
        int r = poll(p, owner_pidfd >= 0 ? 2 : 1, owner_pidfd >= 0 ? -1 : 100);
        if (r > 0 && (p[0].revents != 0 || (owner_pidfd >= 0 && p[1].revents != 0)))
            break;
        if (owner_pidfd < 0 && getppid() != owner)
            break;
    }
    atomic_store(&mp__heap_hdr_of(h)->shutdown, 1);
    mp__names_shutdown(h);
    struct stat mine, now;
    if (fstat(h->fd, &mine) == 0 && stat(file, &now) == 0 && mine.st_ino == now.st_ino &&
        mine.st_dev == now.st_dev)
        shm_unlink(path);
    _exit(0);
}

/* serve_open - bind the listener the manager process will serve (here, so that a bad address
 * is reported by mp_manager_open and the bound address is known at once) and make the
 * registry of typeids. */
static int
serve_open(mp_manager *m, const mp_manager_opts *opts)
{
    if (opts->listener == NULL || opts->listener->authkey == NULL)
        return -EINVAL;
    mp_listener_opts lo = *opts->listener;
    /* One poll loop serves every client: a stalled handshake must not hold it for long. */
    if (lo.handshake_timeout_ms == 0)
        lo.handshake_timeout_ms = 2000;
    int r = mp_listener_open(&m->l, opts->address, &lo);
    if (r != 0)
        return r;
    uint64_t off = 0;
    r = mp__shdict_create(m->h, MP__KIND_DICT, &off);
    if (r != 0)
        return r;
    m->reg = mp__cont_new(m->h, off, MP__KIND_DICT);
    return m->reg != NULL ? 0 : -ENOMEM;
}

int
mp_manager_open(mp_manager **out, const mp_manager_opts *opts)
{
    static const mp_manager_opts defaults = {0};
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    if (opts == NULL)
        opts = &defaults;
    mp_manager *m = mp__calloc(1, sizeof *m);
    if (m == NULL)
        return -ENOMEM;
    m->be = &mp__shm_backend;
    m->evfd = m->mgr_pidfd = -1;
    int r =
        mp__heap_create(&m->h, opts->name, opts->max_size != 0 ? opts->max_size : DEFAULT_RESERVE);
    if (r != 0) {
        mp__free(m);
        return r;
    }
    int self_pidfd = -1;
    uint64_t root;
    if ((r = mp__names_create(m->h, &root)) != 0)
        goto fail;
    if (opts->address != NULL && (r = serve_open(m, opts)) != 0)
        goto fail;
    char path[MP_SHM_NAME_MAX + 2], file[MP_SHM_NAME_MAX + 16];
    snprintf(path, sizeof path, "/%s", mp_shm_name(m->h->shm));
    snprintf(file, sizeof file, "/dev/shm/%s", mp_shm_name(m->h->shm));
    m->owner = getpid();
    self_pidfd = pidfd_open_(m->owner); /* -1 (ENOSYS, seccomp): the manager polls */
    m->evfd = eventfd(0, EFD_CLOEXEC);
    if (m->evfd < 0) {
        r = -errno;
        goto fail;
    }
    mp__fault("manager.open.forking");
    fflush(NULL); /* so that the manager process never flushes a copy of buffered output */
    pid_t pid = fork();
    if (pid < 0) {
        r = -errno;
        goto fail;
    }
    if (pid == 0)
        manager_main(m, self_pidfd, path, file);
    if (self_pidfd >= 0)
        close(self_pidfd);
    m->mgr_pid = pid;
    m->mgr_pidfd = pidfd_open_(pid);
    mp__heap_hdr_of(m->h)->manager_pid = pid;
    /* Attachable only now, complete with its manager process: an attacher reads the pid. */
    mp__heap_publish(m->h, root);
    mp__fault("manager.open.forked");
    *out = m;
    return 0;
fail:
    if (self_pidfd >= 0)
        close(self_pidfd);
    if (m->evfd >= 0)
        close(m->evfd);
    mp_listener_close(m->l);
    mp__cont_free(m->reg);
    mp_shm_unlink(m->h->shm);
    mp__heap_unref(m->h);
    mp__free(m);
    return r;
}

/* Wait for the manager process to end, killing it after SHUTDOWN_WAIT_MS, and reap it. */
static void
reap_manager(mp_manager *m)
{
    bool ended = false;
    if (m->mgr_pidfd >= 0) {
        struct pollfd p = {.fd = m->mgr_pidfd, .events = POLLIN};
        mp__deadline dl;
        mp__deadline_init(&dl, SHUTDOWN_WAIT_MS);
        int r;
        do
            r = poll(&p, 1, mp__deadline_remaining_ms(&dl));
        while (r < 0 && errno == EINTR);
        ended = r > 0;
        if (!ended)
            syscall(SYS_pidfd_send_signal, m->mgr_pidfd, SIGKILL, NULL, 0);
    } else {
        for (int i = 0; i < SHUTDOWN_WAIT_MS / 10 && !ended; i++) {
            ended = waitpid(m->mgr_pid, NULL, WNOHANG) == m->mgr_pid;
            if (!ended)
                usleep(10000);
        }
        if (ended)
            return;
        kill(m->mgr_pid, SIGKILL);
    }
    while (waitpid(m->mgr_pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

int
mp_manager_shutdown(mp_manager *m)
{
    if (m == NULL)
        return -EINVAL;
    /* A connected manager cannot shut the Python server down, as Python's connect()ed one. */
    if (getpid() != m->owner || m->rm != NULL)
        return -EPERM;
    if (atomic_exchange(&m->shut, true))
        return 0;
    atomic_store(&mp__heap_hdr_of(m->h)->shutdown, 1);
    mp__names_shutdown(m->h);
    uint64_t one = 1;
    ssize_t w;
    do
        w = write(m->evfd, &one, sizeof one);
    while (w < 0 && errno == EINTR);
    reap_manager(m);
    /* The manager process removed the name, unless it had been killed: then do it here. */
    mp_shm_unlink(m->h->shm);
    /* Only now that no process serves it: close the listener, which removes an AF_UNIX path. */
    mp_listener_close(m->l);
    m->l = NULL;
    return 0;
}

void
mp_manager_close(mp_manager *m)
{
    if (m == NULL)
        return;
    if (m->rm != NULL) {
        mp__rman_unref(m->rm);
        mp__free(m);
        return;
    }
    if (m->owner != 0 && getpid() == m->owner)
        mp_manager_shutdown(m);
    if (m->evfd >= 0)
        close(m->evfd);
    if (m->mgr_pidfd >= 0)
        close(m->mgr_pidfd);
    mp_listener_close(m->l);
    mp__cont_free(m->reg);
    mp__heap_unref(m->h);
    mp__free(m);
}

int
mp_manager_attach(mp_manager **out, const char *name, int timeout_ms)
{
    if (out == NULL || name == NULL)
        return -EINVAL;
    *out = NULL;
    if (name[0] == '/')
        name++;
    size_t n = strlen(name);
    if (n == 0 || n > MP_SHM_NAME_MAX || strchr(name, '/') != NULL)
        return -EINVAL;
    mp_manager *m = mp__calloc(1, sizeof *m);
    if (m == NULL)
        return -ENOMEM;
    m->be = &mp__shm_backend;
    m->evfd = m->mgr_pidfd = -1;
    m->name[0] = '/';
    memcpy(m->name + 1, name, n + 1);
    int r = mp__heap_attach(&m->h, m->name, timeout_ms);
    if (r == 0 && mp__heap_down(m->h))
        r = -EBADF;
    if (r != 0) {
        if (m->h != NULL)
            mp__heap_unref(m->h);
        mp__free(m);
        return r;
    }
    m->mgr_pid = mp__heap_hdr_of(m->h)->manager_pid;
    *out = m;
    return 0;
}

const char *
mp_manager_name(const mp_manager *m)
{
    if (m == NULL || m->rm != NULL)
        return "";
    return m->h->shm != NULL ? mp_shm_name(m->h->shm) : m->name + 1;
}

pid_t
mp_manager_pid(const mp_manager *m)
{
    return m == NULL ? -EINVAL : m->rm != NULL ? -ENOTSUP : m->mgr_pid;
}

const char *
mp_manager_address(const mp_manager *m)
{
    if (m != NULL && m->rm != NULL)
        return mp__rman_address(m->rm);
    return m != NULL && m->l != NULL ? mp_listener_address(m->l) : NULL;
}

int
mp_manager_register(mp_manager *m, const char *typeid, const mp_item *obj)
{
    if (m != NULL && m->rm != NULL)
        return -ENOTSUP;
    if (m == NULL || typeid == NULL || typeid[0] == '\0' || obj == NULL || m->reg == NULL ||
        (obj->type != MP_ITEM_LIST && obj->type != MP_ITEM_DICT && obj->type != MP_ITEM_NAMESPACE))
        return -EINVAL;
    mp_item key = mp_item_str(typeid);
    return mp__shdict_set(m->reg, &key, obj, MP__SET_ALWAYS, NULL);
}

/* ---- the shared-heap backend and the public calls -------------------------------------------- */

const mp__backend mp__shm_backend = {
    .list_len = mp__shlist_len,
    .list_get = mp__shlist_get,
    .list_set = mp__shlist_set,
    .list_slice = mp__shlist_slice,
    .list_set_slice = mp__shlist_set_slice,
    .list_del_slice = mp__shlist_del_slice,
    .list_append = mp__shlist_append,
    .list_extend = mp__shlist_extend,
    .list_insert = mp__shlist_insert,
    .list_pop = mp__shlist_pop,
    .list_find = mp__shlist_find,
    .list_reverse = mp__shlist_reverse,
    .list_sort = mp__shlist_sort,
    .list_clear = mp__shlist_clear,
    .len = mp__shdict_len,
    .dict_get = mp__shdict_get,
    .dict_set = mp__shdict_set,
    .dict_pop = mp__shdict_pop,
    .dict_popitem = mp__shdict_popitem,
    .dict_snapshot = mp__shdict_snapshot,
    .dict_update = mp__shdict_update,
    .dict_copy = mp__shdict_copy,
    .clear = mp__shdict_clear,
};

/* open_cont - create a container of `kind` in m and a handle on it. */
static int
open_cont(mp_manager *m, uint32_t kind, const mp_item *items, size_t n, mp__cont **out)
{
    if (out != NULL)
        *out = NULL;
    if (m == NULL || out == NULL || (n > 0 && items == NULL))
        return -EINVAL;
    if (m->rm != NULL)
        return mp__remote_create(m->rm, NULL, kind, items, n, out);
    if (mp__heap_down(m->h))
        return -EBADF;
    uint64_t off = 0;
    int r = kind == MP__KIND_LIST ? mp__shlist_create(m->h, items, n, &off)
                                  : mp__shdict_create(m->h, kind, &off);
    if (r != 0)
        return r;
    /* A handle that cannot be made leaves an empty container behind, which is freed with the
     * heap; containers are never freed one by one. */
    mp__cont *c = mp__cont_new(m->h, off, kind);
    if (c == NULL)
        return -ENOMEM;
    *out = c;
    return 0;
}

int
mp_list_open(mp_list **out, mp_manager *m, const mp_item *items, size_t n)
{
    return open_cont(m, MP__KIND_LIST, items, n, (mp__cont **)out);
}

int
mp_dict_open(mp_dict **out, mp_manager *m)
{
    return open_cont(m, MP__KIND_DICT, NULL, 0, (mp__cont **)out);
}

int
mp_namespace_open(mp_namespace **out, mp_manager *m)
{
    return open_cont(m, MP__KIND_NS, NULL, 0, (mp__cont **)out);
}

void
mp_list_close(mp_list *l)
{
    mp__cont_free(l != NULL ? &l->c : NULL);
}

void
mp_dict_close(mp_dict *d)
{
    mp__cont_free(d != NULL ? &d->c : NULL);
}

void
mp_namespace_close(mp_namespace *ns)
{
    mp__cont_free(ns != NULL ? &ns->c : NULL);
}

#define C(x) (&(x)->c)

ssize_t
mp_list_len(mp_list *l)
{
    return l == NULL ? -EINVAL : l->c.be->list_len(C(l));
}

int
mp_list_get(mp_list *l, ptrdiff_t i, mp_item *out)
{
    return l == NULL || out == NULL ? -EINVAL : l->c.be->list_get(C(l), i, out);
}

int
mp_list_set(mp_list *l, ptrdiff_t i, const mp_item *v)
{
    return l == NULL || v == NULL ? -EINVAL : l->c.be->list_set(C(l), i, v);
}

int
mp_list_del(mp_list *l, ptrdiff_t i)
{
    return l == NULL ? -EINVAL : l->c.be->list_pop(C(l), i, NULL);
}

int
mp_list_slice(mp_list *l, ptrdiff_t start, ptrdiff_t stop, ptrdiff_t step, mp_item **out, size_t *n)
{
    if (l == NULL || out == NULL || n == NULL || step == 0)
        return -EINVAL;
    return l->c.be->list_slice(C(l), start, stop, step, out, n);
}

int
mp_list_set_slice(mp_list *l, ptrdiff_t start, ptrdiff_t stop, const mp_item *items, size_t n)
{
    if (l == NULL || (n > 0 && items == NULL))
        return -EINVAL;
    return l->c.be->list_set_slice(C(l), start, stop, items, n);
}

int
mp_list_del_slice(mp_list *l, ptrdiff_t start, ptrdiff_t stop, ptrdiff_t step)
{
    return l == NULL || step == 0 ? -EINVAL : l->c.be->list_del_slice(C(l), start, stop, step);
}

int
mp_list_append(mp_list *l, const mp_item *v)
{
    return l == NULL || v == NULL ? -EINVAL : l->c.be->list_append(C(l), v);
}

int
mp_list_extend(mp_list *l, const mp_item *items, size_t n)
{
    if (l == NULL || (n > 0 && items == NULL))
        return -EINVAL;
    return l->c.be->list_extend(C(l), items, n);
}

int
mp_list_insert(mp_list *l, ptrdiff_t i, const mp_item *v)
{
    return l == NULL || v == NULL ? -EINVAL : l->c.be->list_insert(C(l), i, v);
}

int
mp_list_pop(mp_list *l, ptrdiff_t i, mp_item *out)
{
    return l == NULL ? -EINVAL : l->c.be->list_pop(C(l), i, out);
}

int
mp_list_remove(mp_list *l, const mp_item *v)
{
    return l == NULL || v == NULL ? -EINVAL : (int)l->c.be->list_find(C(l), v, MP__FIND_REMOVE);
}

ssize_t
mp_list_index(mp_list *l, const mp_item *v)
{
    return l == NULL || v == NULL ? -EINVAL : l->c.be->list_find(C(l), v, MP__FIND_INDEX);
}

ssize_t
mp_list_count(mp_list *l, const mp_item *v)
{
    return l == NULL || v == NULL ? -EINVAL : l->c.be->list_find(C(l), v, MP__FIND_COUNT);
}

int
mp_list_contains(mp_list *l, const mp_item *v)
{
    if (l == NULL || v == NULL)
        return -EINVAL;
    ssize_t r = l->c.be->list_find(C(l), v, MP__FIND_INDEX);
    return r >= 0 ? 1 : r == -ENOENT ? 0 : (int)r;
}

int
mp_list_reverse(mp_list *l)
{
    return l == NULL ? -EINVAL : l->c.be->list_reverse(C(l));
}

int
mp_list_clear(mp_list *l)
{
    return l == NULL ? -EINVAL : l->c.be->list_clear(C(l));
}

int
mp_list_sort(mp_list *l, bool reverse)
{
    return l == NULL ? -EINVAL : l->c.be->list_sort(C(l), reverse);
}

ssize_t
mp_list_repr(mp_list *l, char **out)
{
    return l == NULL || out == NULL ? -EINVAL : mp__cont_repr(C(l), out);
}

ssize_t
mp_dict_len(mp_dict *d)
{
    return d == NULL ? -EINVAL : d->c.be->len(C(d));
}

int
mp_dict_get(mp_dict *d, const mp_item *key, const mp_item *def, mp_item *out)
{
    if (d == NULL || key == NULL || out == NULL)
        return -EINVAL;
    return d->c.be->dict_get(C(d), key, def, out);
}

int
mp_dict_set(mp_dict *d, const mp_item *key, const mp_item *v)
{
    if (d == NULL || key == NULL || v == NULL)
        return -EINVAL;
    return d->c.be->dict_set(C(d), key, v, MP__SET_ALWAYS, NULL);
}

int
mp_dict_del(mp_dict *d, const mp_item *key)
{
    return d == NULL || key == NULL ? -EINVAL : d->c.be->dict_pop(C(d), key, NULL, NULL);
}

int
mp_dict_contains(mp_dict *d, const mp_item *key)
{
    return d == NULL || key == NULL ? -EINVAL : d->c.be->dict_get(C(d), key, NULL, NULL);
}

int
mp_dict_keys(mp_dict *d, mp_item **out, size_t *n)
{
    if (d == NULL || out == NULL || n == NULL)
        return -EINVAL;
    return d->c.be->dict_snapshot(C(d), out, NULL, n);
}

int
mp_dict_values(mp_dict *d, mp_item **out, size_t *n)
{
    if (d == NULL || out == NULL || n == NULL)
        return -EINVAL;
    return d->c.be->dict_snapshot(C(d), NULL, out, n);
}

int
mp_dict_items(mp_dict *d, mp_item **keys, mp_item **values, size_t *n)
{
    if (d == NULL || n == NULL)
        return -EINVAL;
    return d->c.be->dict_snapshot(C(d), keys, values, n);
}

int
mp_dict_update(mp_dict *d, const mp_item *keys, const mp_item *values, size_t n)
{
    if (d == NULL || (n > 0 && (keys == NULL || values == NULL)))
        return -EINVAL;
    return d->c.be->dict_update(C(d), keys, values, n);
}

int
mp_dict_pop(mp_dict *d, const mp_item *key, const mp_item *def, mp_item *out)
{
    return d == NULL || key == NULL ? -EINVAL : d->c.be->dict_pop(C(d), key, def, out);
}

int
mp_dict_popitem(mp_dict *d, mp_item *key, mp_item *value)
{
    return d == NULL ? -EINVAL : d->c.be->dict_popitem(C(d), key, value);
}

int
mp_dict_setdefault(mp_dict *d, const mp_item *key, const mp_item *def, mp_item *out)
{
    if (d == NULL || key == NULL)
        return -EINVAL;
    return d->c.be->dict_set(C(d), key, def, MP__SET_DEFAULT, out);
}

int
mp_dict_clear(mp_dict *d)
{
    return d == NULL ? -EINVAL : d->c.be->clear(C(d));
}

int
mp_dict_copy(mp_dict *d, mp_dict **out)
{
    if (d == NULL || out == NULL)
        return -EINVAL;
    return d->c.be->dict_copy(C(d), (mp__cont **)out);
}

ssize_t
mp_dict_repr(mp_dict *d, char **out)
{
    return d == NULL || out == NULL ? -EINVAL : mp__cont_repr(C(d), out);
}

/* Namespace attributes are the str keys of a dict. */
static int
attr_key(const char *name, mp_item *key)
{
    if (name == NULL || name[0] == '\0' || name[0] == '_')
        return -EINVAL;
    *key = mp_item_str(name);
    return 0;
}

int
mp_namespace_get(mp_namespace *ns, const char *name, mp_item *out)
{
    mp_item key;
    if (ns == NULL || out == NULL || attr_key(name, &key) != 0)
        return -EINVAL;
    return ns->c.be->dict_get(C(ns), &key, NULL, out);
}

int
mp_namespace_set(mp_namespace *ns, const char *name, const mp_item *v)
{
    mp_item key;
    if (ns == NULL || v == NULL || attr_key(name, &key) != 0)
        return -EINVAL;
    return ns->c.be->dict_set(C(ns), &key, v, MP__SET_ALWAYS, NULL);
}

int
mp_namespace_del(mp_namespace *ns, const char *name)
{
    mp_item key;
    if (ns == NULL || attr_key(name, &key) != 0)
        return -EINVAL;
    return ns->c.be->dict_pop(C(ns), &key, NULL, NULL);
}

ssize_t
mp_namespace_repr(mp_namespace *ns, char **out)
{
    return ns == NULL || out == NULL ? -EINVAL : mp__cont_repr(C(ns), out);
}
