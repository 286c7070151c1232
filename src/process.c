/*
 * process.c - mp_process: Python's multiprocessing.Process with the fork start method.
 *
 * Each started child is watched through a pidfd taken right after fork(): poll() on it tells
 * when the child has ended (not delayed by grandchildren, unlike Python's sentinel pipe), and
 * signals go through pidfd_send_signal() so they can never reach a recycled pid. The status is
 * collected with waitpid() on the child's own pid, never -1, so other children of the program
 * are left alone.
 *
 * Where pidfd_open() is unavailable (seccomp filters, valgrind) the sentinel falls back to
 * Python's scheme: a pipe whose only write end the child holds, hitting EOF when it exits.
 */
#include "internal.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

enum proc_state { PROC_NEW, PROC_RUNNING, PROC_ENDED };

struct mp_process {
    pthread_mutex_t mu; /* guards state, status; process-local */
    mp_process_fn target;
    void *arg;
    char *name;
    bool daemon;
    int pdeathsig;
    pid_t creator; /* the process that opened the handle: the only one that may start/reap */
    pid_t pid;
    int sentinel; /* pidfd, or the read end of the fallback pipe; -1 before start */
    enum proc_state state;
    bool status_known; /* false when SIGCHLD is ignored and the kernel discarded it */
    int exitcode;
    char ident[64];                 /* "1:2": Python's _identity, for default names */
    struct mp_process *prev, *next; /* registry of started handles of this process */
};

/* Per-process registry of started, not yet closed handles, for mp_active_children() and the
 * exit handler. After fork the child starts with an empty one (see child_main). */
static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static mp_process *registry;
static pthread_once_t registry_once = PTHREAD_ONCE_INIT;
static bool have_pidfd;

/* Python's process identity: "" in the main process, "1" in the first child, "1:3" in that
 * child's third child, and so on. */
static char self_ident[64];
static _Atomic unsigned child_counter;
static bool self_daemonic;

static void
registry_lock(void)
{
    pthread_mutex_lock(&registry_mu);
}

static void
registry_unlock(void)
{
    pthread_mutex_unlock(&registry_mu);
}

/* In every child, however it was forked, the inherited registry describes its parent's
 * children, not its own: start empty. Another thread of the parent may have held the lock
 * mid-update at fork; that thread does not exist here and the list is discarded anyway, so the
 * lock is re-initialised rather than taken around fork() (which would order it against every
 * handle's lock). */
static void
registry_after_fork_child(void)
{
    registry = NULL;
    pthread_mutex_init(&registry_mu, NULL);
}

static void exit_handler(void);

static void
registry_setup(void)
{
    pthread_atfork(NULL, NULL, registry_after_fork_child);
    atexit(exit_handler);
    int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    have_pidfd = fd >= 0;
    if (fd >= 0)
        close(fd);
}

void
mp__process_use_pidfd(bool on)
{
    pthread_once(&registry_once, registry_setup);
    if (!on || have_pidfd)
        have_pidfd = on;
}

static void
registry_add(mp_process *p)
{
    registry_lock();
    p->prev = NULL;
    p->next = registry;
    if (registry != NULL)
        registry->prev = p;
    registry = p;
    registry_unlock();
}

static void
registry_remove(mp_process *p)
{
    registry_lock();
    if (p->prev != NULL)
        p->prev->next = p->next;
    else if (registry == p)
        registry = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
    registry_unlock();
}

/* Record how the child ended. Called with p->mu held. */
static void
set_ended(mp_process *p, bool known, int status)
{
    p->state = PROC_ENDED;
    p->status_known = known;
    if (!known)
        p->exitcode = 0;
    else if (WIFEXITED(status))
        p->exitcode = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        p->exitcode = -WTERMSIG(status);
    else
        p->exitcode = 0;
}

/* A pipe sentinel hits EOF when the exiting child closes its files, a moment before it becomes
 * a zombie that waitpid(WNOHANG) can collect. Once the pipe says so, a blocking waitpid() returns
 * at once; without that, is_alive() could report a child whose sentinel fired as running. */
static bool
pipe_sentinel_fired(const mp_process *p)
{
    struct pollfd pfd = {.fd = p->sentinel, .events = POLLIN};
    return !have_pidfd && poll(&pfd, 1, 0) == 1;
}

/* Try to collect the child's status without blocking. Returns true once the child has ended.
 * Caller is the creator. */
static bool
reap_nowait(mp_process *p)
{
    bool ended;
    pthread_mutex_lock(&p->mu);
    if (p->state == PROC_RUNNING) {
        int status = 0;
        pid_t r;
        do
            r = waitpid(p->pid, &status, WNOHANG);
        while (r < 0 && errno == EINTR);
        if (r == 0 && pipe_sentinel_fired(p)) {
            do
                r = waitpid(p->pid, &status, 0);
            while (r < 0 && errno == EINTR);
        }
        if (r == p->pid)
            set_ended(p, true, status);
        else if (r < 0) /* ECHILD: SIGCHLD is SIG_IGN (auto-reaped) or someone else reaped it */
            set_ended(p, false, 0);
    }
    ended = p->state == PROC_ENDED;
    pthread_mutex_unlock(&p->mu);
    return ended;
}

static enum proc_state
get_state(mp_process *p)
{
    pthread_mutex_lock(&p->mu);
    enum proc_state s = p->state;
    pthread_mutex_unlock(&p->mu);
    return s;
}

int
mp_process_open(mp_process **out, mp_process_fn target, void *arg, const mp_process_opts *opts)
{
    static const mp_process_opts defaults;
    if (out == NULL || target == NULL)
        return -EINVAL;
    *out = NULL;
    if (opts == NULL)
        opts = &defaults;
    if (opts->pdeathsig < 0 || opts->pdeathsig >= NSIG)
        return -EINVAL;
    int r = pthread_once(&registry_once, registry_setup);
    if (r != 0)
        return -r;

    mp_process *p = mp__calloc(1, sizeof *p);
    if (p == NULL)
        return -ENOMEM;
    unsigned n = atomic_fetch_add(&child_counter, 1) + 1;
    /* Beyond ~10 levels of nesting the identity no longer fits; keep the last component. */
    int len = self_ident[0] == '\0' ? -1 : snprintf(p->ident, sizeof p->ident, "%s:%u", self_ident, n);
    if (len < 0 || (size_t)len >= sizeof p->ident)
        snprintf(p->ident, sizeof p->ident, "%u", n);
    if (opts->name != NULL) {
        p->name = mp__strdup(opts->name);
    } else {
        p->name = mp__malloc(sizeof p->ident + sizeof "Process-");
        if (p->name != NULL)
            snprintf(p->name, sizeof p->ident + sizeof "Process-", "Process-%s", p->ident);
    }
    if (p->name == NULL) {
        mp__free(p);
        return -ENOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    p->target = target;
    p->arg = arg;
    p->daemon = opts->daemon;
    p->pdeathsig = opts->pdeathsig;
    p->creator = getpid();
    p->sentinel = -1;
    p->state = PROC_NEW;
    *out = p;
    return 0;
}

/* Runs in the child right after fork(). Until target() is called only async-signal-safe work
 * happens here: the parent may have had other threads holding arbitrary locks. */
static _Noreturn void
child_main(mp_process *p, pid_t parent, int pipe_rd)
{
    if (pipe_rd >= 0)
        close(pipe_rd); /* keep only the write end of a fallback sentinel pipe */
    if (p->pdeathsig != 0) {
        prctl(PR_SET_PDEATHSIG, p->pdeathsig);
        /* The parent may have died between fork() and prctl(): then nobody will send the
         * signal, and getppid() already names a reaper. */
        if (getppid() != parent)
            raise(p->pdeathsig);
    }
    memcpy(self_ident, p->ident, sizeof self_ident);
    atomic_store_explicit(&child_counter, 0, memory_order_relaxed);
    self_daemonic = p->daemon;

    int code = p->target(p->arg);
    fflush(NULL);
    _exit(code & 0xff);
}

int
mp_process_start(mp_process *p)
{
    if (p == NULL || p->creator != getpid() || self_daemonic)
        return -EINVAL;
    pthread_mutex_lock(&p->mu);
    if (p->state != PROC_NEW) {
        pthread_mutex_unlock(&p->mu);
        return -EINVAL;
    }
    /* Flush every output stream so buffered text is written once, by the parent, and the
     * child starts with empty buffers. */
    fflush(NULL);
    int pipefd[2] = {-1, -1};
    if (!have_pidfd && pipe2(pipefd, O_CLOEXEC) < 0) {
        int e = errno;
        pthread_mutex_unlock(&p->mu);
        return -e;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        if (pipefd[0] >= 0) {
            close(pipefd[0]);
            close(pipefd[1]);
        }
        pthread_mutex_unlock(&p->mu);
        return -e;
    }
    if (pid == 0)
        child_main(p, parent, pipefd[0]);

    int r = 0;
    int fd;
    if (have_pidfd) {
        fd = (int)syscall(SYS_pidfd_open, pid, 0);
    } else {
        close(pipefd[1]);
        fd = pipefd[0];
    }
    p->pid = pid;
    if (fd >= 0) {
        p->sentinel = fd;
        p->state = PROC_RUNNING;
    } else if (errno == ESRCH) {
        /* Only possible when SIGCHLD is ignored: the child already ended and was auto-reaped. */
        set_ended(p, false, 0);
    } else {
        /* Without a pidfd the child cannot be watched safely: undo the start. */
        r = -errno;
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        p->pid = 0;
    }
    pthread_mutex_unlock(&p->mu);
    if (r == 0)
        registry_add(p);
    return r;
}

int
mp_process_join(mp_process *p, int timeout_ms)
{
    mp__deadline dl;
    if (p == NULL || mp__deadline_init(&dl, timeout_ms) < 0)
        return -EINVAL;
    if (p->creator != getpid())
        return -ECHILD;
    enum proc_state s = get_state(p);
    if (s == PROC_NEW)
        return -EINVAL;
    for (;;) {
        if (reap_nowait(p))
            return 0;
        int ms = mp__deadline_remaining_ms(&dl);
        if (timeout_ms == MP_NOWAIT)
            return -EAGAIN;
        if (ms == 0)
            return -ETIMEDOUT;
        struct pollfd pfd = {.fd = p->sentinel, .events = POLLIN};
        if (poll(&pfd, 1, ms) < 0 && errno == EINTR)
            return -EINTR;
    }
}

int
mp_process_is_alive(mp_process *p)
{
    if (p == NULL)
        return -EINVAL;
    if (p->creator != getpid())
        return -ECHILD;
    if (get_state(p) == PROC_NEW)
        return 0;
    return reap_nowait(p) ? 0 : 1;
}

int
mp_process_exitcode(mp_process *p, int *exitcode)
{
    if (p == NULL || exitcode == NULL)
        return -EINVAL;
    if (p->creator == getpid() && get_state(p) == PROC_RUNNING)
        reap_nowait(p);
    pthread_mutex_lock(&p->mu);
    int r = 0;
    if (p->state == PROC_ENDED) {
        if (p->status_known) {
            *exitcode = p->exitcode;
            r = 1;
        } else {
            r = -ECHILD;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return r;
}

static int
send_signal(mp_process *p, int sig)
{
    if (p == NULL)
        return -EINVAL;
    if (p->creator != getpid())
        return -ECHILD;
    int r = 0;
    pthread_mutex_lock(&p->mu);
    if (p->state == PROC_NEW)
        r = -EINVAL;
    else if (p->state == PROC_RUNNING) {
        /* Without a pidfd, kill() by pid is still safe here: the pid cannot be recycled before
         * this process reaps it, and reaping takes p->mu. */
        long s = have_pidfd ? syscall(SYS_pidfd_send_signal, p->sentinel, sig, NULL, 0)
                            : kill(p->pid, sig);
        if (s < 0 && errno != ESRCH)
            r = -errno; /* ESRCH: it has just exited; "does nothing once ended" */
    }
    pthread_mutex_unlock(&p->mu);
    return r;
}

int
mp_process_terminate(mp_process *p)
{
    return send_signal(p, SIGTERM);
}

int
mp_process_kill(mp_process *p)
{
    return send_signal(p, SIGKILL);
}

pid_t
mp_process_pid(const mp_process *p)
{
    if (p == NULL)
        return -EINVAL;
    return p->pid;
}

const char *
mp_process_name(const mp_process *p)
{
    return p == NULL ? "" : p->name;
}

int
mp_process_sentinel(const mp_process *p)
{
    if (p == NULL || p->sentinel < 0)
        return -EINVAL;
    return p->sentinel;
}

int
mp_process_close(mp_process *p)
{
    if (p == NULL)
        return 0;
    if (p->creator == getpid()) {
        enum proc_state s = get_state(p);
        if (s == PROC_RUNNING && !reap_nowait(p))
            return -EBUSY;
        if (s != PROC_NEW)
            registry_remove(p);
    }
    /* In any other process this is an inherited copy: release only what this process holds. */
    if (p->sentinel >= 0)
        close(p->sentinel);
    pthread_mutex_destroy(&p->mu);
    mp__free(p->name);
    mp__free(p);
    return 0;
}

int
mp_active_children(mp_process **out, size_t cap)
{
    if (out == NULL && cap > 0)
        return -EINVAL;
    int n = 0;
    registry_lock();
    for (mp_process *p = registry; p != NULL; p = p->next) {
        if (reap_nowait(p))
            continue;
        if ((size_t)n < cap)
            out[n] = p;
        n++;
    }
    registry_unlock();
    return n;
}

/* At normal exit of a process that started children: terminate the daemonic ones, then wait
 * for all (Python's _exit_function). The registry holds only this process's children: every
 * child empties the copy it inherits at fork. */
static void
exit_handler(void)
{
    registry_lock();
    for (mp_process *p = registry; p != NULL; p = p->next)
        if (p->daemon && !reap_nowait(p))
            mp_process_terminate(p);
    for (mp_process *p = registry; p != NULL; p = p->next)
        while (mp_process_join(p, MP_FOREVER) == -EINTR)
            ;
    registry_unlock();
}

pid_t
mp_parent_pid(void)
{
    return getppid();
}

int
mp_cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : -ENOSYS;
}
