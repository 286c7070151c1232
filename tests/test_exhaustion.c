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
#include "exhaustion_rows.h"
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

/* Valgrind loads its preload library into the program it runs. It checks the fd limit after the
 * kernel has opened an fd (an O_CREAT open has then created its file), and maps memory of its
 * own: under it the fd sweep and the mapping count would report its doing, not the library's. */
static bool
under_valgrind(void)
{
    const char *p = getenv("LD_PRELOAD");
    return p != NULL && strstr(p, "vgpreload") != NULL;
}

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
                         .maps =
                             UNDER_ASAN || TH_UNDER_TSAN || under_valgrind() ? 0 : th_count_maps()};
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
    for (size_t i = 0; i < n_rows; i++) {
        long n = sweep(&rows[i], ALLOC);
        if (n < 0)
            bad++;
        else
            total += n;
        printf("[ ALLOC    ] %-32s %3ld failure points\n", rows[i].name, n);
    }
    printf("[ ALLOC    ] %zu constructors, %ld failed allocations unwound\n", n_rows, total);
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
    if (under_valgrind())
        skip();
    fd_steps = th_shared(n_rows * sizeof *fd_steps);
    int bad = 0;
    long total = 0;
    for (size_t i = 0; i < n_rows; i++) {
        pid_t pid = th_fork(fds_child, (void *)&rows[i]);
        assert_true(pid > 0);
        int st = th_wait(pid, 30000);
        bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        bad += !ok;
        total += ok ? fd_steps[i] : 0;
        printf("[ EMFILE   ] %-32s %3ld failure points%s\n", rows[i].name, fd_steps[i],
               ok ? "" : "  FAILED");
    }
    th_shared_free(fd_steps, n_rows * sizeof *fd_steps);
    printf("[ EMFILE   ] %zu constructors, %ld fd shortages unwound\n", n_rows, total);
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
        (unshare(CLONE_NEWNS) != 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0))
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
    CHILD_CHECK(expect_fail(find_row("mp_lock_open"), -EFBIG));
    CHILD_CHECK(expect_fail(find_row("mp_value_open"), -EFBIG));
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

/* ---- a served manager out of fds ------------------------------------------------------------- */

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

static int
exit0(void *arg)
{
    (void)arg;
    return 0;
}

/* ---- fork failure ---------------------------------------------------------------------------- */

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
    for (size_t i = 0; i < n_rows; i++) {
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
    CHILD_CHECK(mp_process_open(&p, exit0, NULL, NULL) == 0);
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
