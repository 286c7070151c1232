/*
 * helpers.c - see helpers.h.
 */
#define _GNU_SOURCE
#include "helpers.h"

#include <dirent.h>
#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

pid_t
th_fork(int (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        _exit(fn(arg));
    return pid;
}

bool
th_valgrind(void)
{
    const char *v = getenv("MPIPC_VALGRIND");
    return v != NULL && strcmp(v, "1") == 0;
}

int
th_scaled_ms(int ms)
{
    return th_valgrind() ? 10 * ms : ms;
}

int64_t
th_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
th_wait(pid_t pid, int timeout_ms)
{
    /* Valgrind does not know pidfd_open and warns at every call: ask once. Forked children
     * inherit the answer. */
    static bool no_pidfd;
    int fd = no_pidfd ? -1 : (int)syscall(SYS_pidfd_open, pid, 0);
    no_pidfd = no_pidfd || (fd < 0 && errno == ENOSYS);
    if (fd >= 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int64_t end = th_now_ms() + timeout_ms;
        int r;
        do
            r = poll(&pfd, 1, (int)(end - th_now_ms() > 0 ? end - th_now_ms() : 0));
        while (r < 0 && errno == EINTR);
        if (r == 0) {
            fprintf(stderr, "th_wait: child %d still running after %d ms: killing it\n", (int)pid,
                    timeout_ms);
            kill(pid, SIGKILL);
        }
        close(fd);
    }
    int st;
    pid_t r;
    do
        r = waitpid(pid, &st, 0);
    while (r < 0 && errno == EINTR);
    return r == pid ? st : -1;
}

void *
th_shared(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void
th_shared_free(void *p, size_t size)
{
    if (p != NULL)
        munmap(p, size);
}

void
th_pattern_fill(uint8_t *buf, size_t size, int tag)
{
    size_t off = (size * 7 + (size_t)tag) % 251;
    for (size_t i = 0; i < size; i++)
        buf[i] = (uint8_t)((i + off) % 251);
}

bool
th_pattern_check(const uint8_t *buf, size_t size, int tag)
{
    size_t off = (size * 7 + (size_t)tag) % 251;
    for (size_t i = 0; i < size; i++)
        if (buf[i] != (uint8_t)((i + off) % 251))
            return false;
    return true;
}

int
th_pattern_send(mp_conn *c, size_t size, int tag, int timeout_ms)
{
    uint8_t *buf = malloc(size > 0 ? size : 1);
    if (buf == NULL)
        return -ENOMEM;
    th_pattern_fill(buf, size, tag);
    int r = mp_conn_send_bytes(c, buf, size, timeout_ms);
    free(buf);
    return r;
}

int
th_count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (f == NULL)
        return 0;
    /* "start-end perms ...": the fourth perms character is 's' for a shared mapping. */
    char line[512];
    int n = 0;
    bool line_start = true;
    while (fgets(line, sizeof line, f) != NULL) {
        char *sp = strchr(line, ' ');
        if (line_start && sp != NULL && strlen(sp) > 4 && sp[4] == 's')
            n++;
        line_start = strchr(line, '\n') != NULL;
    }
    fclose(f);
    return n;
}

struct th_barrier {
    _Atomic uint32_t arrived;
    _Atomic uint32_t generation;
    uint32_t parties;
};

th_barrier *
th_barrier_new(unsigned parties)
{
    th_barrier *b = th_shared(sizeof *b);
    if (b != NULL)
        b->parties = parties;
    return b;
}

int
th_barrier_wait(th_barrier *b)
{
    uint32_t gen = atomic_load(&b->generation);
    if (atomic_fetch_add(&b->arrived, 1) + 1 == b->parties) {
        atomic_store(&b->arrived, 0);
        atomic_fetch_add(&b->generation, 1);
        syscall(SYS_futex, &b->generation, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
        return 0;
    }
    int64_t end = th_now_ms() + 30000;
    while (atomic_load(&b->generation) == gen) {
        int64_t left = end - th_now_ms();
        if (left <= 0)
            return -1;
        struct timespec ts = {.tv_sec = left / 1000, .tv_nsec = (left % 1000) * 1000000};
        syscall(SYS_futex, &b->generation, FUTEX_WAIT, gen, &ts, NULL, 0);
    }
    return 0;
}

void
th_barrier_free(th_barrier *b)
{
    th_shared_free(b, sizeof *b);
}

/* ---- leak check ------------------------------------------------------------------------------ */

#define MAX_SNAP 1024

static struct {
    char shm[MAX_SNAP][256];
    size_t n_shm;
    bool fd[MAX_SNAP];
} snap;

static void
list_fds(bool *open_fds)
{
    memset(open_fds, 0, MAX_SNAP * sizeof *open_fds);
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return;
    int self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd != self && fd < MAX_SNAP)
            open_fds[fd] = true;
    }
    closedir(d);
}

static bool
shm_in_snapshot(const char *name)
{
    for (size_t i = 0; i < snap.n_shm; i++)
        if (strcmp(snap.shm[i], name) == 0)
            return true;
    return false;
}

int
th_leak_snapshot(void **state)
{
    (void)state;
    /* Orphaned grandchildren are re-parented to us, so the child check sees them too. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    snap.n_shm = 0;
    DIR *d = opendir("/dev/shm");
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL && snap.n_shm < MAX_SNAP)
            if (e->d_name[0] != '.')
                snprintf(snap.shm[snap.n_shm++], sizeof snap.shm[0], "%s", e->d_name);
        closedir(d);
    }
    list_fds(snap.fd);
    return 0;
}

/* Children of this process, zombies included, from /proc/<pid>/stat. Kills and reaps each one
 * it reports, so one leak does not spill into the next test executable. */
static int
check_children(void)
{
    int leaks = 0;
    pid_t self = getpid();
    DIR *d = opendir("/proc");
    if (d == NULL)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        pid_t pid = (pid_t)atoi(e->d_name);
        if (pid <= 0)
            continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        /* Fields after the command name, which may itself contain ')'. */
        char *rp = strrchr(buf, ')');
        char state;
        int ppid;
        if (rp == NULL || sscanf(rp + 1, " %c %d", &state, &ppid) != 2 || ppid != self)
            continue;
        fprintf(stderr, "[  LEAK    ] child process %d (state %c) outlived its test\n", (int)pid,
                state);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        leaks++;
    }
    closedir(d);
    return leaks;
}

int
th_leak_check(void **state)
{
    (void)state;
    int leaks = check_children();
    DIR *d = opendir("/dev/shm");
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.' && !shm_in_snapshot(e->d_name)) {
                fprintf(stderr, "[  LEAK    ] /dev/shm/%s was left behind\n", e->d_name);
                leaks++;
            }
        closedir(d);
    }
    static bool now[MAX_SNAP];
    list_fds(now);
    for (int fd = 0; fd < MAX_SNAP; fd++)
        if (now[fd] && !snap.fd[fd]) {
            char path[64], target[256] = "?";
            snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
            ssize_t n = readlink(path, target, sizeof target - 1);
            if (n > 0)
                target[n] = '\0';
            fprintf(stderr, "[  LEAK    ] fd %d (%s) was left open\n", fd, target);
            leaks++;
        }
    return leaks;
}

/* Give this test executable a /dev/shm of its own when it may (as root, in a new mount
 * namespace): then the leak check sees only what this executable and its children created,
 * never a segment of another program that happens to run at the same time. Without the
 * privilege the host's /dev/shm is used as it is. Children, exec'd helpers and Python peers
 * inherit the namespace, so they all see the same private /dev/shm. */
static void
private_dev_shm(void)
{
    if (getenv("MPIPC_TEST_HOST_SHM") != NULL || unshare(CLONE_NEWNS) != 0)
        return;
    /* A propagation change ignores the source and type; "none" rather than NULL keeps
     * valgrind, which reads the type as a string, from reporting a bad syscall parameter. */
    if (mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("mpipc-test", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0)
        fprintf(stderr, "[  NOTE    ] could not mount a private /dev/shm: %s\n", strerror(errno));
}

int
th_run_group(const char *name, const struct CMUnitTest *tests, size_t n)
{
    private_dev_shm();
    th_leak_snapshot(NULL);
    int failed = _cmocka_run_group_tests(name, tests, n, NULL, NULL);
    int leaks = th_leak_check(NULL);
    if (leaks > 0)
        fprintf(stderr, "[  FAILED  ] leak check: %d resource(s) leaked by %s\n", leaks, name);
    else
        printf("[  PASSED  ] leak check: no /dev/shm entry, fd or child process left\n");
    return failed + (leaks > 0);
}
