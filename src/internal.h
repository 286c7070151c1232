/*
 * internal.h - foundations shared by the mpipc modules (the mp__ namespace).
 *
 * Nothing here is public API. Tests link the static library and may call these directly.
 */
#ifndef MPIPC_INTERNAL_H
#define MPIPC_INTERNAL_H

#include "mpipc.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* ThreadSanitizer builds: some calls it does not intercept need annotations. */
#if defined(__SANITIZE_THREAD__)
#define MP__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MP__TSAN 1
#endif
#endif

#define MP__LIKELY(x) __builtin_expect(!!(x), 1)
#define MP__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MP__ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- allocation ----------------------------------------------------------------------------
 * Every heap allocation of the library goes through these, so that tests can make the n-th
 * allocation fail and check that each constructor unwinds cleanly. */
void *mp__malloc(size_t size);
void *mp__calloc(size_t n, size_t size);
void *mp__realloc(void *ptr, size_t size);
void mp__free(void *ptr);
char *mp__strdup(const char *s);
/* mp__alloc_fail_after - make the allocation after `n` more successful ones fail (0: the very
 * next one). A negative n disarms. Affects this process (and children forked while armed). */
void mp__alloc_fail_after(long n);

/* ---- failures that cannot be reported --------------------------------------------------------
 * Only for states the library itself cannot have produced without memory corruption (a shared
 * header with impossible values). Never for input, ENOMEM or a dead peer. */
_Noreturn void mp__panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- deadlines ---------------------------------------------------------------------------------
 * One absolute CLOCK_MONOTONIC deadline is computed when a call starts; every wait inside the
 * call uses what is left of it. */
typedef struct mp__deadline {
    int64_t abs_ns; /* CLOCK_MONOTONIC nanoseconds; INT64_MAX means forever */
} mp__deadline;

int64_t mp__now_ns(void);
/* mp__deadline_init - 0, or -EINVAL for a timeout below MP_FOREVER. */
int mp__deadline_init(mp__deadline *dl, int timeout_ms);
static inline bool
mp__deadline_forever(const mp__deadline *dl)
{
    return dl->abs_ns == INT64_MAX;
}
/* Milliseconds left, rounded up, for poll(2): -1 forever, 0 when passed. */
int mp__deadline_remaining_ms(const mp__deadline *dl);
/* The absolute deadline as a timespec (for futex and pthread_mutex_clocklock). */
struct timespec mp__deadline_ts(const mp__deadline *dl);
bool mp__deadline_passed(const mp__deadline *dl);

/* ---- futex -----------------------------------------------------------------------------------
 * Process-shared futex words (no FUTEX_PRIVATE_FLAG): they live in shared mappings. */
/* mp__futex_wait - sleep while *word == expected, until woken or the deadline passes.
 * Returns 0 (woken, or the value already differed), -ETIMEDOUT or -EINTR. */
int mp__futex_wait(_Atomic uint32_t *word, uint32_t expected, const mp__deadline *dl);
/* mp__futex_wake - wake up to n sleepers (INT32_MAX: all). Returns how many were woken. */
int mp__futex_wake(_Atomic uint32_t *word, int n);

/* ---- robust process-shared mutexes -------------------------------------------------------------
 * mp__mutex_init - initialise a PTHREAD_PROCESS_SHARED, PTHREAD_MUTEX_ROBUST mutex in place.
 * mp__mutex_lock - lock with a deadline (NULL: forever). Returns 0; MP_OWNERDEAD when the
 *   previous owner died holding it: the caller owns it, must repair the state it guards and
 *   then call mp__mutex_consistent(); -ETIMEDOUT; -ENOTRECOVERABLE when an earlier owner-dead
 *   recovery was abandoned; -EDEADLK if this thread already holds it. */
int mp__mutex_init(pthread_mutex_t *m);
int mp__mutex_lock(pthread_mutex_t *m, const mp__deadline *dl);
int mp__mutex_consistent(pthread_mutex_t *m);
/* mp__mutex_lock_raw - as mp__mutex_lock, returning pthread's codes (0, EOWNERDEAD, ETIMEDOUT,
 * EDEADLK, ENOTRECOVERABLE). Every robust-mutex sleep in
 * the library goes through it: it never sleeps longer than a short slice without looking at the
 * lock again (see os.c for the robust-mutex hole this closes). */
int mp__mutex_lock_raw(pthread_mutex_t *m, const mp__deadline *dl);
/* mp__mutex_clocklock - pthread_mutex_clocklock on CLOCK_MONOTONIC (returns its error code, not
 * negated), made visible to ThreadSanitizer, which does not intercept it. */
int mp__mutex_clocklock(pthread_mutex_t *m, const struct timespec *abs);
int mp__mutex_unlock(pthread_mutex_t *m);

/* ---- process-local locks that survive fork -----------------------------------------------------
 * mp__pidlock guards a few loads and stores of process-local state (never I/O or a wait). Its
 * word holds the holder's pid, 0 when free. A pthread mutex held by another thread at fork()
 * would stay locked in the child for good; a child that finds this word holding its parent's
 * pid (which none of its threads can be holding) takes the lock over. Waiters yield. */
typedef _Atomic pid_t mp__pidlock;
void mp__pidlock_lock(mp__pidlock *l);
void mp__pidlock_unlock(mp__pidlock *l);

/* ---- shared segments -----------------------------------------------------------------------
 * A shared mapping backed by a tmpfs file. Anonymous segments (name == NULL) are memfds: they
 * have no name in /dev/shm at any moment, so nothing can be left behind even by a crash, and
 * they reach other processes by fork() or by passing the fd. Named segments are shm_open()ed
 * under /dev/shm. Space is reserved with posix_fallocate(), so a full tmpfs gives -ENOSPC at
 * creation instead of SIGBUS on a later store. */
typedef struct mp__seg {
    void *addr;
    size_t size;
    int fd; /* -1 once closed */
} mp__seg;

/* mp__seg_create - create and map `size` bytes, zero-filled. name: NULL for anonymous, else a
 * POSIX shm name ("/x"); O_EXCL: -EEXIST if it exists. On error nothing is left behind. */
int mp__seg_create(mp__seg *seg, const char *name, size_t size);
/* mp__seg_attach - map an existing named segment, whole (size from fstat). */
int mp__seg_attach(mp__seg *seg, const char *name);
/* mp__seg_close - unmap and close the fd. Does not unlink. */
void mp__seg_close(mp__seg *seg);
/* mp__random_bytes - fill buf from getrandom(); 0 or -errno. */
int mp__random_bytes(void *buf, size_t n);

/* mp__shm_fd - the fd of a named segment (the manager's heap grows and maps it itself). */
int mp__shm_fd(const mp_shm *s);

/* ---- process ----------------------------------------------------------------------------------
 * mp__process_use_pidfd - false forces the pipe sentinel used where pidfd_open() is missing
 * (for tests); true returns to pidfds where the kernel has them. */
void mp__process_use_pidfd(bool on);

/* ---- fault points ----------------------------------------------------------------------------
 * mp__fault("queue.put.copied") marks a step where a test may kill or stop the process. In
 * builds without MP_FAULT_POINTS it compiles to nothing. When armed (mp__fault_arm), the n-th
 * time the named point is reached the action runs: by default the process SIGKILLs itself. */
typedef void (*mp__fault_fn)(const char *point, void *arg);
#if defined(MP_FAULT_POINTS)
extern _Atomic(const char *) mp__fault_armed;
void mp__fault_hit(const char *point);
#define mp__fault(point)                                                                          \
    do {                                                                                          \
        if (MP__UNLIKELY(atomic_load_explicit(&mp__fault_armed, memory_order_relaxed) != NULL))  \
            mp__fault_hit(point);                                                                 \
    } while (0)
#else
#define mp__fault(point) ((void)0)
#endif
/* mp__fault_arm - arm `point` to fire on its nth hit (1 = first). fn NULL means SIGKILL self.
 * Returns -ENOTSUP when the library was built without fault points. */
int mp__fault_arm(const char *point, unsigned nth, mp__fault_fn fn, void *arg);
void mp__fault_disarm(void);
/* mp__fault_enabled - 1 when fault points are compiled in. */
int mp__fault_enabled(void);

/* ---- pipe ------------------------------------------------------------------------------------
 * mp__conn_header - encode CPython's send_bytes header for a payload of len bytes into hdr
 * (at least 12 bytes); returns its size: 4, or 12 for the -1 escape above 0x7fffffff. */
size_t mp__conn_header(size_t len, uint8_t *hdr);
/* mp__conn_wrap - a duplex mp_conn owning fd, a connected stream socket that mp_conn_open does
 * not take: inet marks a TCP socket (no fd passing: send_handle gives -EOPNOTSUPP). 0 or
 * -ENOMEM (fd then stays the caller's). */
int mp__conn_wrap(mp_conn **out, int fd, bool inet);

/* ---- pins: handles on objects in another module's region ----------------------------------------
 * A handle made for an object built in place (mp__<type>_wrap) may hold a reference on the
 * region the object lives in, so that the region (the manager's heap mapping) outlives every
 * handle on it: the handle's _close calls drop(arg) after freeing the handle. {NULL, NULL}, the
 * default, drops nothing. */
typedef struct mp__pin {
    void (*drop)(void *arg);
    void *arg;
} mp__pin;

static inline void
mp__pin_drop(mp__pin pin)
{
    if (pin.drop != NULL)
        pin.drop(pin.arg);
}

/* ---- in-place Value/Array and Queue (the manager's heap builds them in its own memory) ----------
 * As sync.h's mp__<type>_init_at/_wrap: init_at builds the object in memory the caller provides
 * and keeps mapped (shared by the processes that use it), wrap makes a handle on it in any
 * process that maps it, and the handle's _close frees only the handle. Neither holds pointers
 * into the memory, so it may sit at another address in each process.
 *
 * mp__value_size_at - the bytes a Value (len 1) or Array of `len` elements needs in place, for
 *   mp_value_open's typecode and opts (opts->lock must be NULL: a lock handle is one process's).
 * mp__value_init_at - build it in mem (16-byte aligned, that many bytes), with opts->init.
 * mp__value_wrap - a handle on it: the same typecode, element size (opts->size, or 0), length and
 *   raw flag as at init. An Array handle is the same object: cast to mp_array *.
 * Each returns 0, MP_ETYPE or -EINVAL as mp_value_open, -ENOMEM (the handle). */
int mp__value_size_at(char tc, size_t len, const mp_value_opts *opts, size_t *size);
int mp__value_init_at(void *mem, char tc, size_t len, const mp_value_opts *opts);
int mp__value_wrap(mp_value **out, void *mem, char tc, size_t elem, size_t len, bool raw);
/* mp__value_pin / mp__queue_pin - give a wrapped handle the pin its close drops. */
void mp__value_pin(mp_value *v, mp__pin pin);

/* mp__queue_size_at - the bytes a queue with these opts (NULL: defaults) needs in place: its
 *   header and its ring; *capacity gets the ring's size for mp__queue_wrap.
 * mp__queue_init_at - build it in mem (64-byte aligned, that many bytes).
 * mp__queue_wrap - a handle on it, given the ring size. Its close frees only the handle.
 * Each returns 0, -EINVAL as mp_queue_open, -ENOMEM (the handle). */
int mp__queue_size_at(const mp_queue_opts *opts, size_t *size, size_t *capacity);
int mp__queue_init_at(void *mem, const mp_queue_opts *opts);
int mp__queue_wrap(mp_queue **out, void *mem, size_t capacity);
void mp__queue_pin(mp_queue *q, mp__pin pin);

#endif /* MPIPC_INTERNAL_H */
