/*
 * error.c - version, error strings, the internal allocator, panic and fault points.
 */
#include "internal.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MP__STR2(x) #x
#define MP__STR(x) MP__STR2(x)

const char *
mp_version_string(void)
{
    return MP__STR(MP_VERSION_MAJOR) "." MP__STR(MP_VERSION_MINOR) "." MP__STR(MP_VERSION_PATCH);
}

const char *
mp_strerror(int err)
{
    switch (err) {
    case MP_OWNERDEAD:
        return "lock acquired; its previous owner died holding it";
    case MP_EOF:
        return "end of file: the peer closed the connection";
    case MP_ETYPE:
        return "value of the wrong type";
    case MP_EBROKEN:
        return "barrier is broken";
    case MP_EREMOTE:
        return "the remote side reported an error";
    default:
        break;
    }
    if (err >= 0)
        return "success";
    /* strerror() may write a shared static buffer for unknown values; strerrordesc_np (glibc
     * 2.32) would be cleaner but is newer than the platform floor, so known errnos are looked
     * up through strerror, whose result for a valid errno is a constant string in glibc. */
    if (err > -4096) {
        const char *s = strerror(-err);
        if (s != NULL)
            return s;
    }
    return "unknown error";
}

/* ---- allocator -------------------------------------------------------------------------------- */

/* Countdown of successful allocations before one fails; negative when disarmed. */
static _Atomic long alloc_countdown = -1;

static bool
alloc_should_fail(void)
{
    long c = atomic_load_explicit(&alloc_countdown, memory_order_relaxed);
    if (MP__LIKELY(c < 0))
        return false;
    while (c >= 0) {
        if (atomic_compare_exchange_weak(&alloc_countdown, &c, c - 1))
            return c == 0;
    }
    return false;
}

void
mp__alloc_fail_after(long n)
{
    atomic_store(&alloc_countdown, n < 0 ? -1 : n);
}

void *
mp__malloc(size_t size)
{
    if (alloc_should_fail())
        return NULL;
    return malloc(size);
}

void *
mp__calloc(size_t n, size_t size)
{
    if (alloc_should_fail())
        return NULL;
    return calloc(n, size);
}

void *
mp__realloc(void *ptr, size_t size)
{
    if (alloc_should_fail())
        return NULL;
    return realloc(ptr, size);
}

void
mp__free(void *ptr)
{
    free(ptr);
}

char *
mp__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = mp__malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

void
mp_free(void *ptr)
{
    mp__free(ptr);
}

void
mp__panic(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    int n = snprintf(buf, sizeof buf, "mpipc: fatal: ");
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof buf - (size_t)n, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 2)
        n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    /* write(2) rather than stdio: the process may be in any state. */
    ssize_t w = write(STDERR_FILENO, buf, (size_t)n);
    (void)w;
    abort();
}

/* ---- fault points ------------------------------------------------------------------------------ */

#if defined(MP_FAULT_POINTS)
_Atomic(const char *) mp__fault_armed = NULL;
static _Atomic unsigned fault_remaining;
static mp__fault_fn fault_fn;
static void *fault_arg;

void
mp__fault_hit(const char *point)
{
    const char *armed = atomic_load(&mp__fault_armed);
    if (armed == NULL || strcmp(armed, point) != 0)
        return;
    if (atomic_fetch_sub(&fault_remaining, 1) != 1)
        return;
    atomic_store(&mp__fault_armed, NULL);
    if (fault_fn != NULL) {
        fault_fn(point, fault_arg);
        return;
    }
    raise(SIGKILL);
}
#endif

int
mp__fault_arm(const char *point, unsigned nth, mp__fault_fn fn, void *arg)
{
#if defined(MP_FAULT_POINTS)
    if (point == NULL || nth == 0)
        return -EINVAL;
    atomic_store(&mp__fault_armed, NULL);
    fault_fn = fn;
    fault_arg = arg;
    atomic_store(&fault_remaining, nth);
    atomic_store(&mp__fault_armed, point);
    return 0;
#else
    (void)point, (void)nth, (void)fn, (void)arg;
    return -ENOTSUP;
#endif
}

void
mp__fault_disarm(void)
{
#if defined(MP_FAULT_POINTS)
    atomic_store(&mp__fault_armed, NULL);
#endif
}

int
mp__fault_enabled(void)
{
#if defined(MP_FAULT_POINTS)
    return 1;
#else
    return 0;
#endif
}
