/*
 * shm.c - mp_shm: named shared memory segments, Python's
 * multiprocessing.shared_memory.SharedMemory.
 *
 * A segment is a POSIX shm object under /dev/shm, created with O_EXCL and mode 0600 and
 * reserved with posix_fallocate (mp__seg_create), so a full tmpfs fails at creation. The name a
 * caller sees is Python's (no leading '/'); shm_open gets "/" + name, exactly as Python's
 * SharedMemory does, so both languages reach the same file.
 *
 * Python decides who unlinks with a resource tracker process that also unlinks segments it only
 * attached to (3.11/3.12). Here ownership is explicit instead: the creating process (or an
 * attacher that asked for it) unlinks, nobody else. For crashes, generated names carry the
 * creator's pid, its start time and its pid namespace; mp_shm_sweep() removes the names whose
 * creator has died, but only for segments that opted in at creation ("mpsm_s_..." names).
 */
#include "internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* glibc places every shm_open name in this directory (fixed since 2.34, and the tmpfs mount
 * that older versions look up is /dev/shm on every supported distribution). */
#define SHM_DIR "/dev/shm"

/* Generated names are retried on a collision, as Python does; 64 collisions of 32 random bits
 * in a row mean something else is wrong. */
#define NAME_TRIES 64

struct mp_shm {
    mp__seg seg;
    char *path;            /* "/" + name, for shm_open and shm_unlink */
    pid_t unlinker;        /* the process allowed to unlink; 0: none */
    _Atomic bool unlinked; /* this handle already unlinked the name */
};

/* ---- process identity, for generated names and the sweep ------------------------------------- */

/* proc_start_time - field 22 of /proc/<pid>/stat: the start time in clock ticks after boot.
 * With the pid it identifies a process for good, since a reused pid starts later. */
static int
proc_start_time(pid_t pid, unsigned long long *start)
{
    char path[40], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int err = n < 0 ? -errno : 0;
    close(fd);
    if (err != 0)
        return err;
    buf[n] = '\0';
    /* The command name (field 2) may contain spaces and parentheses: fields are counted from
     * the last ')'. It is followed by " <field 3> <field 4> ...". */
    char *p = strrchr(buf, ')');
    for (int field = 3; p != NULL && field <= 22; field++)
        p = strchr(p + 1, ' ');
    if (p == NULL)
        return -EPROTO;
    char *end;
    *start = strtoull(p + 1, &end, 10);
    return end == p + 1 ? -EPROTO : 0;
}

/* self_pidns - the inode of this process's pid namespace: pids in names from another namespace
 * mean nothing here. */
static int
self_pidns(unsigned long long *ns)
{
    struct stat st;
    if (stat("/proc/self/ns/pid", &st) < 0)
        return -errno;
    *ns = (unsigned long long)st.st_ino;
    return 0;
}

/* format_name - "/mpsm_<k|s>_<pid>_<start>_<pidns>_<random>". The sweep parses the same
 * format and rebuilds the name from the fields to be sure it read exactly this shape. */
static void
format_name(char *buf, size_t cap, bool sweep, int pid, unsigned long long start,
            unsigned long long ns, uint32_t rnd)
{
    snprintf(buf, cap, "/mpsm_%c_%d_%llx_%llx_%08x", sweep ? 's' : 'k', pid, start, ns,
             (unsigned)rnd);
}

#define GEN_NAME_CAP 80

/* This process's start time and pid namespace never change, but reading /proc costs more than
 * the rest of a create, so they are kept, tagged with the pid they belong to: a forked child
 * sees another pid and reads its own. No lock (a child forked while another thread held one
 * would inherit it held): threads that race compute and store the same values, and the pid is
 * published last. */
static _Atomic pid_t self_pid;
static _Atomic unsigned long long self_start, self_ns;

static void
self_identity(pid_t pid, unsigned long long *start, unsigned long long *ns)
{
    if (atomic_load_explicit(&self_pid, memory_order_acquire) != pid) {
        unsigned long long s = 0, n = 0;
        /* Without /proc the fields are 0, which the sweep never touches: such names are kept. */
        if (proc_start_time(pid, &s) != 0 || self_pidns(&n) != 0)
            s = n = 0;
        atomic_store_explicit(&self_start, s, memory_order_relaxed);
        atomic_store_explicit(&self_ns, n, memory_order_relaxed);
        atomic_store_explicit(&self_pid, pid, memory_order_release);
    }
    *start = atomic_load_explicit(&self_start, memory_order_relaxed);
    *ns = atomic_load_explicit(&self_ns, memory_order_relaxed);
}

static int
generate_name(char *buf, bool sweep)
{
    uint32_t rnd;
    int r = mp__random_bytes(&rnd, sizeof rnd);
    if (r != 0)
        return r;
    pid_t pid = getpid();
    unsigned long long start, ns;
    self_identity(pid, &start, &ns);
    format_name(buf, GEN_NAME_CAP, sweep, (int)pid, start, ns, rnd);
    return 0;
}

/* ---- names ----------------------------------------------------------------------------------- */

/* check_name - Python's rules as glibc applies them: one leading '/' is allowed (Python adds
 * it, a C caller may have it already), the rest must be a single non-empty path component. */
static int
check_name(const char *name, const char **bare)
{
    if (name[0] == '/')
        name++;
    size_t len = strnlen(name, MP_SHM_NAME_MAX + 1);
    if (len > MP_SHM_NAME_MAX)
        return -ENAMETOOLONG;
    if (len == 0 || strchr(name, '/') != NULL || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return -EINVAL;
    *bare = name;
    return 0;
}

/* ---- open / close ---------------------------------------------------------------------------- */

static int
check_opts(const mp_shm_opts *o)
{
    if (o->create) {
        if (o->size == 0 || o->size > (size_t)INT64_MAX || o->owner)
            return -EINVAL;
        if (o->sweep && o->name != NULL)
            return -EINVAL;
    } else if (o->name == NULL || o->sweep) {
        return -EINVAL;
    }
    return 0;
}

int
mp_shm_open(mp_shm **out, const mp_shm_opts *opts)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    if (opts == NULL)
        return -EINVAL;
    int r = check_opts(opts);
    const char *bare = NULL;
    if (r == 0 && opts->name != NULL)
        r = check_name(opts->name, &bare);
    if (r != 0)
        return r;

    /* Everything that can fail without side effects comes first, so a failure after the
     * segment exists has only the segment to undo. */
    mp_shm *s = mp__calloc(1, sizeof *s);
    size_t cap = bare != NULL ? strlen(bare) + 2 : GEN_NAME_CAP;
    char *path = s != NULL ? mp__malloc(cap) : NULL;
    if (path == NULL) {
        mp__free(s);
        return -ENOMEM;
    }
    if (bare != NULL) {
        path[0] = '/';
        memcpy(path + 1, bare, cap - 1);
    }

    if (!opts->create) {
        r = mp__seg_attach(&s->seg, path);
    } else if (bare != NULL) {
        r = mp__seg_create(&s->seg, path, opts->size);
    } else {
        r = -EEXIST;
        for (int i = 0; i < NAME_TRIES && r == -EEXIST; i++) {
            r = generate_name(path, opts->sweep);
            if (r == 0)
                r = mp__seg_create(&s->seg, path, opts->size);
        }
    }
    if (r != 0) {
        mp__free(path);
        mp__free(s);
        return r;
    }
    /* The name exists from here on; a creator killed now leaves it to the sweep. */
    if (opts->create)
        mp__fault("shm.open.created");
    s->path = path;
    s->unlinker = opts->create || opts->owner ? getpid() : 0;
    atomic_init(&s->unlinked, false);
    *out = s;
    return 0;
}

void *
mp_shm_buf(const mp_shm *s)
{
    return s != NULL ? s->seg.addr : NULL;
}

size_t
mp_shm_size(const mp_shm *s)
{
    return s != NULL ? s->seg.size : 0;
}

const char *
mp_shm_name(const mp_shm *s)
{
    return s != NULL ? s->path + 1 : "";
}

int
mp_shm_unlink(mp_shm *s)
{
    if (s == NULL)
        return -EINVAL;
    if (s->unlinker == 0 || s->unlinker != getpid())
        return -EPERM;
    if (atomic_exchange(&s->unlinked, true))
        return -ENOENT;
    /* Once unlinked (by a sweep, or by Python), the name may have been created again by
     * someone else; that segment is not ours to remove. The check and the unlink are two
     * steps, but a name is only reused after it was removed, so the window needs two foreign
     * actions inside it. */
    char file[sizeof SHM_DIR + MP_SHM_NAME_MAX + 1];
    snprintf(file, sizeof file, "%s%s", SHM_DIR, s->path);
    struct stat mine, now;
    if (fstat(s->seg.fd, &mine) < 0)
        return -errno;
    if (stat(file, &now) < 0)
        return -errno;
    if (now.st_ino != mine.st_ino || now.st_dev != mine.st_dev)
        return -ENOENT;
    return shm_unlink(s->path) < 0 ? -errno : 0;
}

int
mp__shm_fd(const mp_shm *s)
{
    return s->seg.fd;
}

void
mp_shm_close(mp_shm *s)
{
    if (s == NULL)
        return;
    mp__seg_close(&s->seg);
    mp__free(s->path);
    mp__free(s);
}

/* ---- sweep ----------------------------------------------------------------------------------- */

/* creator_dead - 1 when the process (pid, start) no longer exists. Anything this process cannot
 * find out counts as alive: a sweep must never remove a segment that is in use. A zombie still
 * has its /proc entry and counts as alive until its parent reaps it. */
static int
creator_dead(int pid, unsigned long long start)
{
    unsigned long long now;
    int r = proc_start_time((pid_t)pid, &now);
    if (r == -ENOENT || r == -ESRCH)
        return 1;
    return r == 0 && now != start;
}

int
mp_shm_sweep(void)
{
    unsigned long long ns = 0;
    int r = self_pidns(&ns);
    if (r != 0)
        return r;
    DIR *d = opendir(SHM_DIR);
    if (d == NULL)
        return -errno;
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int pid;
        unsigned long long start, name_ns;
        unsigned rnd;
        if (strncmp(e->d_name, "mpsm_s_", 7) != 0 ||
            sscanf(e->d_name, "mpsm_s_%d_%llx_%llx_%x", &pid, &start, &name_ns, &rnd) != 4)
            continue;
        char path[GEN_NAME_CAP];
        format_name(path, sizeof path, true, pid, start, name_ns, (uint32_t)rnd);
        if (strcmp(path + 1, e->d_name) != 0 || pid <= 0 || start == 0 || name_ns != ns)
            continue;
        if (creator_dead(pid, start) && shm_unlink(path) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}
