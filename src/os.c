/*
 * os.c - deadlines, futex words, robust mutexes and shared segments: the OS layer every module
 * builds on.
 */
#include "internal.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(MP__TSAN)
#include <sanitizer/tsan_interface.h>
#endif

/* ---- deadlines -------------------------------------------------------------------------------- */

int64_t
mp__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int
mp__deadline_init(mp__deadline *dl, int timeout_ms)
{
    if (timeout_ms < MP_FOREVER)
        return -EINVAL;
    if (timeout_ms == MP_FOREVER)
        dl->abs_ns = INT64_MAX;
    else
        dl->abs_ns = mp__now_ns() + (int64_t)timeout_ms * 1000000;
    return 0;
}

int
mp__deadline_remaining_ms(const mp__deadline *dl)
{
    if (mp__deadline_forever(dl))
        return -1;
    int64_t left = dl->abs_ns - mp__now_ns();
    if (left <= 0)
        return 0;
    int64_t ms = (left + 999999) / 1000000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

struct timespec
mp__deadline_ts(const mp__deadline *dl)
{
    struct timespec ts = {.tv_sec = dl->abs_ns / 1000000000, .tv_nsec = dl->abs_ns % 1000000000};
    return ts;
}

bool
mp__deadline_passed(const mp__deadline *dl)
{
    return !mp__deadline_forever(dl) && mp__now_ns() >= dl->abs_ns;
}

/* ---- futex -------------------------------------------------------------------------------------- */

int
mp__futex_wait(_Atomic uint32_t *word, uint32_t expected, const mp__deadline *dl)
{
    struct timespec ts, *tsp = NULL;
    if (dl != NULL && !mp__deadline_forever(dl)) {
        ts = mp__deadline_ts(dl);
        tsp = &ts;
    }
    /* FUTEX_WAIT_BITSET takes an absolute timeout, on CLOCK_MONOTONIC unless
     * FUTEX_CLOCK_REALTIME is given: exactly the deadline model of the library. */
    long r = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET, expected, tsp, NULL,
                     FUTEX_BITSET_MATCH_ANY);
    if (r == 0)
        return 0;
    switch (errno) {
    case EAGAIN: /* the word no longer held `expected` */
        return 0;
    case ETIMEDOUT:
        return -ETIMEDOUT;
    case EINTR:
        return -EINTR;
    default:
        mp__panic("futex wait failed: errno %d", errno);
    }
}

int
mp__futex_wake(_Atomic uint32_t *word, int n)
{
    long r = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, n, NULL, NULL, 0);
    return r < 0 ? -errno : (int)r;
}

/* ---- robust mutexes ------------------------------------------------------------------------------ */

int
mp__mutex_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    int r = pthread_mutexattr_init(&a);
    if (r != 0)
        return -r;
    /* ERRORCHECK makes a relock by the owner -EDEADLK instead of a silent self-deadlock, and
     * an unlock by a non-owner -EPERM; robustness turns an owner's death into EOWNERDEAD. */
    r = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (r == 0)
        r = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (r == 0)
        r = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    if (r == 0)
        r = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return -r;
}

int
mp__mutex_clocklock(pthread_mutex_t *m, const struct timespec *abs)
{
#if defined(MP__TSAN)
    /* TSan does not intercept pthread_mutex_clocklock: tell it about the acquisition, or the
     * matching unlock looks like an unlock of an unlocked mutex. */
    __tsan_mutex_pre_lock(m, __tsan_mutex_try_lock);
    int r = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, abs);
    __tsan_mutex_post_lock(
        m, __tsan_mutex_try_lock | (r == 0 || r == EOWNERDEAD ? 0 : __tsan_mutex_try_lock_failed),
        0);
    return r;
#else
    return pthread_mutex_clocklock(m, CLOCK_MONOTONIC, abs);
#endif
}

void
mp__pidlock_lock(mp__pidlock *l)
{
    pid_t me = getpid();
    for (;;) {
        pid_t was = 0;
        if (atomic_compare_exchange_weak_explicit(l, &was, me, memory_order_acquire,
                                                  memory_order_relaxed))
            return;
        /* Held by a process that is not this one: the parent's thread, before our fork. */
        if (was != 0 && was != me &&
            atomic_compare_exchange_strong_explicit(l, &was, me, memory_order_acquire,
                                                    memory_order_relaxed))
            return;
        sched_yield();
    }
}

void
mp__pidlock_unlock(mp__pidlock *l)
{
    atomic_store_explicit(l, 0, memory_order_release);
}

/* The longest a waiter sleeps on a robust mutex before it looks at the lock again.
 *
 * Why sleeps are bounded at all: robust mutexes have a hole that no kernel or glibc version
 * closes. An unlock wakes one sleeper; if that sleeper is SIGKILLed before it re-marks the futex
 * as contended, and a third thread took the free lock in between with a plain CAS (which clears
 * the "waiters" bit), the kernel's robust-list cleanup sees a live owner and wakes nobody. The
 * remaining sleepers then wait for a wake that never comes, although the lock is released a
 * moment later. The crash torture test (tests/test_torture.c) hit exactly that. A waiter that
 * wakes up every slice and retries turns "forever" into "at most one slice late". */
#define ROBUST_SLICE_NS (50 * 1000000LL)

int
mp__mutex_lock_raw(pthread_mutex_t *m, const mp__deadline *dl)
{
    int r = pthread_mutex_trylock(m);
    while (r == EBUSY) {
        int64_t end = mp__now_ns() + ROBUST_SLICE_NS;
        bool last = dl != NULL && !mp__deadline_forever(dl) && dl->abs_ns <= end;
        if (last)
            end = dl->abs_ns;
        struct timespec ts = {.tv_sec = end / 1000000000, .tv_nsec = end % 1000000000};
        r = mp__mutex_clocklock(m, &ts);
        if (r == ETIMEDOUT && !last)
            r = pthread_mutex_trylock(m);
    }
    return r;
}

int
mp__mutex_lock(pthread_mutex_t *m, const mp__deadline *dl)
{
    int r = mp__mutex_lock_raw(m, dl);
    if (r == EOWNERDEAD)
        return MP_OWNERDEAD;
    return -r;
}

int
mp__mutex_consistent(pthread_mutex_t *m)
{
    return -pthread_mutex_consistent(m);
}

int
mp__mutex_unlock(pthread_mutex_t *m)
{
    return -pthread_mutex_unlock(m);
}

/* ---- shared segments ------------------------------------------------------------------------------ */

static int
seg_map(mp__seg *seg, int fd, size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    seg->addr = p;
    seg->size = size;
    seg->fd = fd;
    return 0;
}

int
mp__seg_create(mp__seg *seg, const char *name, size_t size)
{
    if (seg == NULL || size == 0)
        return -EINVAL;
    int fd;
    if (name == NULL)
        fd = memfd_create("mpipc", MFD_CLOEXEC);
    else
        fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    /* posix_fallocate returns the error instead of setting errno. Reserving the pages now is
     * what turns a full tmpfs into -ENOSPC here rather than SIGBUS at some later store. */
    int r = -posix_fallocate(fd, 0, (off_t)size);
    if (r == 0)
        r = seg_map(seg, fd, size);
    if (r != 0) {
        if (name != NULL)
            shm_unlink(name);
        close(fd);
    }
    return r;
}

int
mp__seg_attach(mp__seg *seg, const char *name)
{
    if (seg == NULL || name == NULL)
        return -EINVAL;
    int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct stat st;
    int r = fstat(fd, &st) < 0 ? -errno : 0;
    if (r == 0 && st.st_size <= 0)
        r = -EINVAL;
    if (r == 0)
        r = seg_map(seg, fd, (size_t)st.st_size);
    if (r != 0)
        close(fd);
    return r;
}

void
mp__seg_close(mp__seg *seg)
{
    if (seg == NULL)
        return;
    if (seg->addr != NULL)
        munmap(seg->addr, seg->size);
    if (seg->fd >= 0)
        close(seg->fd);
    seg->addr = NULL;
    seg->size = 0;
    seg->fd = -1;
}

int
mp__random_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}
