/*
 * sync_wait.c - Semaphore, Event and Barrier: objects whose waiters sleep on one futex word.
 *
 * The semaphore and the event are lock-free: their whole state is a counter or a flag that is
 * updated with one atomic operation, so a process killed at any instruction leaves them
 * consistent. A waiter count beside the word lets release/set skip the wake system call when
 * nobody sleeps; a killed waiter leaves it too high, which only costs such a call. Wakes go to
 * every sleeper: a woken waiter that is killed before it takes its unit can then strand no one.
 *
 * The barrier's state is guarded by a robust mutex, and a death inside that mutex (for example
 * while running the action) breaks the barrier. A party killed while waiting has arrived, so the
 * round still completes.
 */
#include "internal.h"

#include "arena.h"
#include "sync.h"

#include <limits.h>

/* Handles of these three types look alike: the block, its generation, who frees it. */
#define HANDLE_FIELDS(shm_type)                                                                    \
    shm_type *s;                                                                                   \
    uint32_t gen;                                                                                  \
    bool owned;                                                                                    \
    mp__pin pin

#define CHECK_HANDLE(h)                                                                            \
    do {                                                                                           \
        if (MP__UNLIKELY((h) == NULL))                                                             \
            return -EINVAL;                                                                        \
        if (MP__UNLIKELY(mp__sync_stale(&(h)->s->hdr, (h)->gen)))                                  \
            return -EBADF;                                                                         \
    } while (0)

static bool
mem_ok(const void *mem)
{
    return mem != NULL && ((uintptr_t)mem & 7) == 0;
}

/* Allocate an arena block and construct an object in it with init(mem). */
static int
alloc_init(size_t size, int (*init)(void *mem, const void *arg), const void *arg, void **out)
{
    int r = mp__arena_alloc(size, out);
    if (r == 0 && (r = init(*out, arg)) != 0)
        mp__arena_free(*out, size);
    return r;
}

/* ---- Semaphore ------------------------------------------------------------------------------- */

typedef struct sem_shm {
    mp__sync_hdr hdr;
    _Atomic uint32_t value; /* futex word: free units */
    _Atomic uint32_t waiters;
    uint32_t max; /* bound on value: the initial value if bounded, else INT32_MAX */
} sem_shm;

_Static_assert(sizeof(sem_shm) <= MP__SEMAPHORE_SIZE, "sem_shm outgrew MP__SEMAPHORE_SIZE");

struct mp_semaphore {
    HANDLE_FIELDS(sem_shm);
};

int
mp__semaphore_init_at(void *mem, unsigned value, bool bounded)
{
    if (!mem_ok(mem) || value > INT32_MAX)
        return -EINVAL;
    sem_shm *s = mem;
    atomic_store(&s->value, value);
    atomic_store(&s->waiters, 0);
    s->max = bounded ? value : INT32_MAX;
    mp__sync_hdr_init(&s->hdr, bounded ? MP__KIND_BSEM : MP__KIND_SEM);
    return 0;
}

int
mp__semaphore_wrap(mp_semaphore **out, void *mem)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    uint32_t g = mp__sync_hdr_check(mem, MP__KIND_SEM);
    if (g == 0)
        g = mp__sync_hdr_check(mem, MP__KIND_BSEM);
    if (g == 0)
        return -EINVAL;
    mp_semaphore *h = mp__malloc(sizeof *h);
    if (h == NULL)
        return -ENOMEM;
    *h = (mp_semaphore){.s = mem, .gen = g, .owned = false};
    *out = h;
    return 0;
}

struct sem_args {
    unsigned value;
    bool bounded;
};

static int
sem_init(void *mem, const void *arg)
{
    const struct sem_args *a = arg;
    return mp__semaphore_init_at(mem, a->value, a->bounded);
}

int
mp_semaphore_open(mp_semaphore **out, unsigned value, const mp_semaphore_opts *opts)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    if (value > INT32_MAX)
        return -EINVAL;
    mp_semaphore *h = mp__malloc(sizeof *h);
    if (h == NULL)
        return -ENOMEM;
    struct sem_args a = {value, opts != NULL && opts->bounded};
    void *mem;
    int r = alloc_init(MP__SEMAPHORE_SIZE, sem_init, &a, &mem);
    if (r != 0) {
        mp__free(h);
        return r;
    }
    *h = (mp_semaphore){.s = mem, .gen = atomic_load(&((sem_shm *)mem)->hdr.gen), .owned = true};
    *out = h;
    return 0;
}

void
mp_semaphore_close(mp_semaphore *h)
{
    if (h == NULL)
        return;
    if (h->owned)
        mp__sync_free(&h->s->hdr, MP__SEMAPHORE_SIZE);
    mp__pin pin = h->pin;
    mp__free(h);
    mp__pin_drop(pin);
}

static bool
sem_try(sem_shm *s)
{
    uint32_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
    while (v > 0)
        if (atomic_compare_exchange_weak(&s->value, &v, v - 1))
            return true;
    return false;
}

int
mp_semaphore_acquire(mp_semaphore *h, int timeout_ms)
{
    CHECK_HANDLE(h);
    sem_shm *s = h->s;
    mp__deadline dl;
    int r = mp__deadline_init(&dl, timeout_ms);
    if (r != 0)
        return r;
    if (sem_try(s))
        return 0;
    if (timeout_ms == MP_NOWAIT)
        return -EAGAIN;
    /* Count ourselves before the futex re-reads the value (both sequentially consistent), so
     * a release either sees the count or its unit is seen here: no wake is lost. */
    atomic_fetch_add(&s->waiters, 1);
    mp__fault("sync.sem.wait");
    for (;;) {
        if (sem_try(s)) {
            r = 0;
            break;
        }
        if (mp__deadline_passed(&dl)) {
            r = -ETIMEDOUT;
            break;
        }
        r = mp__futex_wait(&s->value, 0, &dl);
        if (r == -EINTR)
            break;
    }
    atomic_fetch_sub(&s->waiters, 1);
    return r;
}

int
mp_semaphore_release(mp_semaphore *h)
{
    CHECK_HANDLE(h);
    sem_shm *s = h->s;
    uint32_t v = atomic_load_explicit(&s->value, memory_order_relaxed);
    do {
        if (v >= s->max)
            return s->max == INT32_MAX ? -EOVERFLOW : -EINVAL;
    } while (!atomic_compare_exchange_weak(&s->value, &v, v + 1));
    if (atomic_load(&s->waiters) > 0)
        mp__futex_wake(&s->value, INT32_MAX);
    return 0;
}

int
mp_semaphore_get_value(const mp_semaphore *h)
{
    CHECK_HANDLE(h);
    return (int)atomic_load(&h->s->value);
}

/* ---- Event ----------------------------------------------------------------------------------- */

typedef struct event_shm {
    mp__sync_hdr hdr;
    /* futex word: (number of sets) << 1 | flag. Counting the sets lets a waiter that slept
     * through a set and a clear still see that the flag was set while it waited. */
    _Atomic uint32_t word;
    _Atomic uint32_t waiters;
} event_shm;

_Static_assert(sizeof(event_shm) <= MP__EVENT_SIZE, "event_shm outgrew MP__EVENT_SIZE");

struct mp_event {
    HANDLE_FIELDS(event_shm);
};

int
mp__event_init_at(void *mem)
{
    if (!mem_ok(mem))
        return -EINVAL;
    event_shm *s = mem;
    atomic_store(&s->word, 0);
    atomic_store(&s->waiters, 0);
    mp__sync_hdr_init(&s->hdr, MP__KIND_EVENT);
    return 0;
}

int
mp__event_wrap(mp_event **out, void *mem)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    uint32_t g = mp__sync_hdr_check(mem, MP__KIND_EVENT);
    if (g == 0)
        return -EINVAL;
    mp_event *h = mp__malloc(sizeof *h);
    if (h == NULL)
        return -ENOMEM;
    *h = (mp_event){.s = mem, .gen = g, .owned = false};
    *out = h;
    return 0;
}

static int
event_init(void *mem, const void *arg)
{
    (void)arg;
    return mp__event_init_at(mem);
}

int
mp_event_open(mp_event **out)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    mp_event *h = mp__malloc(sizeof *h);
    if (h == NULL)
        return -ENOMEM;
    void *mem;
    int r = alloc_init(MP__EVENT_SIZE, event_init, NULL, &mem);
    if (r != 0) {
        mp__free(h);
        return r;
    }
    *h = (mp_event){.s = mem, .gen = atomic_load(&((event_shm *)mem)->hdr.gen), .owned = true};
    *out = h;
    return 0;
}

void
mp_event_close(mp_event *h)
{
    if (h == NULL)
        return;
    if (h->owned)
        mp__sync_free(&h->s->hdr, MP__EVENT_SIZE);
    mp__pin pin = h->pin;
    mp__free(h);
    mp__pin_drop(pin);
}

int
mp_event_set(mp_event *h)
{
    CHECK_HANDLE(h);
    event_shm *s = h->s;
    uint32_t w = atomic_load(&s->word);
    do {
        if (w & 1)
            return 0;
    } while (!atomic_compare_exchange_weak(&s->word, &w, (w + 2) | 1));
    if (atomic_load(&s->waiters) > 0)
        mp__futex_wake(&s->word, INT32_MAX);
    return 0;
}

int
mp_event_clear(mp_event *h)
{
    CHECK_HANDLE(h);
    atomic_fetch_and(&h->s->word, ~(uint32_t)1);
    return 0;
}

int
mp_event_is_set(const mp_event *h)
{
    CHECK_HANDLE(h);
    return (int)(atomic_load(&h->s->word) & 1);
}

int
mp_event_wait(mp_event *h, int timeout_ms)
{
    CHECK_HANDLE(h);
    event_shm *s = h->s;
    mp__deadline dl;
    int r = mp__deadline_init(&dl, timeout_ms);
    if (r != 0)
        return r;
    uint32_t w = atomic_load(&s->word);
    if (w & 1)
        return 0;
    if (timeout_ms == MP_NOWAIT)
        return -EAGAIN;
    atomic_fetch_add(&s->waiters, 1);
    mp__fault("sync.event.wait");
    /* With the flag clear, the word changes only when a set() bumps the count. */
    r = 0;
    while (atomic_load(&s->word) == w) {
        if (mp__deadline_passed(&dl)) {
            r = -ETIMEDOUT;
            break;
        }
        r = mp__futex_wait(&s->word, w, &dl);
        if (r == -EINTR)
            break;
        r = 0;
    }
    atomic_fetch_sub(&s->waiters, 1);
    return r;
}

/* ---- Barrier --------------------------------------------------------------------------------- */

typedef struct barrier_shm {
    mp__sync_hdr hdr;
    /* futex word: round << 1 | broken. A round ends by completing or by breaking; a broken
     * barrier stays broken (and in its round) until reset starts the next round. */
    _Atomic uint32_t word;
    uint32_t parties;
    pthread_mutex_t m; /* guards count and every change of word */
    uint32_t count;    /* arrived in this round */
    /* Bit (round % 64) is set when that round ended broken, so a waiter that wakes after the
     * next rounds began still learns how its own round ended. The bit is reused 64 rounds
     * later, so a waiter would misread its outcome only if 64 further rounds completed between
     * its wake-up and its read of the bit. */
    _Atomic uint64_t broken_rounds;
} barrier_shm;

_Static_assert(sizeof(barrier_shm) <= MP__BARRIER_SIZE, "barrier_shm outgrew MP__BARRIER_SIZE");

struct mp_barrier {
    HANDLE_FIELDS(barrier_shm);
    mp_barrier_action action;
    void *action_arg;
    int timeout_ms;
};

int
mp__barrier_init_at(void *mem, unsigned parties)
{
    if (!mem_ok(mem) || parties == 0 || parties > INT32_MAX)
        return -EINVAL;
    barrier_shm *s = mem;
    int r = mp__mutex_init(&s->m);
    if (r != 0)
        return r;
    atomic_store(&s->word, 0);
    atomic_store(&s->broken_rounds, 0);
    s->parties = parties;
    s->count = 0;
    mp__sync_hdr_init(&s->hdr, MP__KIND_BARRIER);
    return 0;
}

static int
barrier_new(mp_barrier **out, barrier_shm *s, uint32_t gen, bool owned, const mp_barrier_opts *o)
{
    mp_barrier *h = mp__malloc(sizeof *h);
    if (h == NULL)
        return -ENOMEM;
    *h = (mp_barrier){.s = s, .gen = gen, .owned = owned};
    if (o != NULL) {
        h->action = o->action;
        h->action_arg = o->action_arg;
        h->timeout_ms = o->timeout_ms;
    }
    *out = h;
    return 0;
}

int
mp__barrier_wrap(mp_barrier **out, void *mem, const mp_barrier_opts *opts)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    uint32_t g = mp__sync_hdr_check(mem, MP__KIND_BARRIER);
    if (g == 0 || (opts != NULL && opts->timeout_ms < 0))
        return -EINVAL;
    return barrier_new(out, mem, g, false, opts);
}

static int
barrier_init(void *mem, const void *arg)
{
    return mp__barrier_init_at(mem, *(const unsigned *)arg);
}

int
mp_barrier_open(mp_barrier **out, unsigned parties, const mp_barrier_opts *opts)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    if (parties == 0 || parties > INT32_MAX || (opts != NULL && opts->timeout_ms < 0))
        return -EINVAL;
    void *mem;
    int r = alloc_init(MP__BARRIER_SIZE, barrier_init, &parties, &mem);
    if (r != 0)
        return r;
    r = barrier_new(out, mem, atomic_load(&((barrier_shm *)mem)->hdr.gen), true, opts);
    if (r != 0)
        mp__arena_free(mem, MP__BARRIER_SIZE);
    return r;
}

void
mp_barrier_close(mp_barrier *h)
{
    if (h == NULL)
        return;
    if (h->owned)
        mp__sync_free(&h->s->hdr, MP__BARRIER_SIZE);
    mp__pin pin = h->pin;
    mp__free(h);
    mp__pin_drop(pin);
}

/* Break the current round (mutex held). */
static void
bar_break(barrier_shm *s)
{
    uint32_t w = atomic_load(&s->word);
    if (w & 1)
        return;
    atomic_fetch_or(&s->broken_rounds, (uint64_t)1 << ((w >> 1) & 63));
    atomic_store(&s->word, w | 1);
    if (s->count > 0)
        mp__futex_wake(&s->word, INT32_MAX);
}

/* Start the next round (mutex held). */
static void
bar_next_round(barrier_shm *s, uint32_t w)
{
    uint32_t next = (w >> 1) + 1;
    atomic_fetch_and(&s->broken_rounds, ~((uint64_t)1 << (next & 63)));
    s->count = 0;
    atomic_store(&s->word, next << 1);
}

static int
bar_lock(barrier_shm *s, const mp__deadline *dl)
{
    int r = mp__mutex_lock(&s->m, dl);
    if (r == MP_OWNERDEAD) {
        /* A process died in the middle of the barrier's bookkeeping or of the action: the
         * round cannot be trusted, so it breaks, as when an action fails. */
        bar_break(s);
        mp__mutex_consistent(&s->m);
        r = 0;
    }
    return r;
}

/* How the round that `w` belonged to ended, seen once the word has moved on to `now`. */
static int
bar_outcome(barrier_shm *s, uint32_t w, uint32_t now, uint32_t idx)
{
    if ((now >> 1) == (w >> 1))
        return MP_EBROKEN; /* still our round, so it was broken */
    uint64_t bits = atomic_load(&s->broken_rounds);
    return (bits >> ((w >> 1) & 63)) & 1 ? MP_EBROKEN : (int)idx;
}

int
mp_barrier_wait(mp_barrier *h, int timeout_ms)
{
    CHECK_HANDLE(h);
    barrier_shm *s = h->s;
    if (timeout_ms == MP_FOREVER && h->timeout_ms > 0)
        timeout_ms = h->timeout_ms;
    mp__deadline dl;
    int r = mp__deadline_init(&dl, timeout_ms);
    if (r != 0)
        return r;
    if ((r = bar_lock(s, &dl)) != 0)
        return r == -ETIMEDOUT && timeout_ms == MP_NOWAIT ? -EAGAIN : r;
    uint32_t w = atomic_load(&s->word);
    if (w & 1) {
        mp__mutex_unlock(&s->m);
        return MP_EBROKEN;
    }
    uint32_t idx = s->count++;
    if (s->count == s->parties) {
        if (h->action != NULL) {
            mp__fault("sync.barrier.action");
            int ar = h->action(h->action_arg);
            if (ar != 0) {
                bar_break(s);
                mp__mutex_unlock(&s->m);
                return ar < 0 ? ar : MP_EBROKEN;
            }
        }
        bar_next_round(s, w);
        if (s->parties > 1)
            mp__futex_wake(&s->word, INT32_MAX);
        mp__mutex_unlock(&s->m);
        return (int)idx;
    }
    if (timeout_ms == MP_NOWAIT) {
        bar_break(s);
        mp__mutex_unlock(&s->m);
        return -EAGAIN;
    }
    mp__mutex_unlock(&s->m);
    mp__fault("sync.barrier.wait");
    for (;;) {
        r = mp__futex_wait(&s->word, w, &dl);
        uint32_t now = atomic_load(&s->word);
        if (now != w)
            return bar_outcome(s, w, now, idx);
        if (r == -ETIMEDOUT || r == -EINTR || mp__deadline_passed(&dl)) {
            /* As Python's: a wait that gives up breaks the barrier for everyone. The lock
             * cannot fail here: this thread does not hold it and every death is repaired. */
            bar_lock(s, NULL);
            now = atomic_load(&s->word);
            if (now == w)
                bar_break(s);
            mp__mutex_unlock(&s->m);
            if (now != w)
                return bar_outcome(s, w, now, idx);
            return r == -EINTR ? -EINTR : -ETIMEDOUT;
        }
    }
}

int
mp_barrier_reset(mp_barrier *h)
{
    CHECK_HANDLE(h);
    barrier_shm *s = h->s;
    int r = bar_lock(s, NULL);
    if (r != 0)
        return r;
    uint32_t w = atomic_load(&s->word);
    bar_break(s); /* the parties waiting now get MP_EBROKEN */
    bar_next_round(s, w);
    mp__mutex_unlock(&s->m);
    return 0;
}

int
mp_barrier_abort(mp_barrier *h)
{
    CHECK_HANDLE(h);
    int r = bar_lock(h->s, NULL);
    if (r != 0)
        return r;
    bar_break(h->s);
    mp__mutex_unlock(&h->s->m);
    return 0;
}

int
mp_barrier_parties(const mp_barrier *h)
{
    CHECK_HANDLE(h);
    return (int)h->s->parties;
}

int
mp_barrier_n_waiting(mp_barrier *h)
{
    CHECK_HANDLE(h);
    barrier_shm *s = h->s;
    int r = bar_lock(s, NULL);
    if (r != 0)
        return r;
    int n = (atomic_load(&s->word) & 1) ? 0 : (int)s->count;
    mp__mutex_unlock(&s->m);
    return n;
}

int
mp_barrier_broken(const mp_barrier *h)
{
    CHECK_HANDLE(h);
    return (int)(atomic_load(&h->s->word) & 1);
}

/* ---- pins ------------------------------------------------------------------------------------ */

void
mp__semaphore_pin(mp_semaphore *h, mp__pin pin)
{
    h->pin = pin;
}

void
mp__event_pin(mp_event *h, mp__pin pin)
{
    h->pin = pin;
}

void
mp__barrier_pin(mp_barrier *h, mp__pin pin)
{
    h->pin = pin;
}
