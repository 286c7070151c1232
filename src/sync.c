/*
 * sync.c - Lock, RLock and Condition, plus what every sync object shares (header, freeing).
 *
 * A lock is one robust, process-shared, error-checking pthread mutex in a shared arena block,
 * so it costs little more than the bare mutex it is measured against. Recursion (RLock) is not the
 * pthread recursive type but a depth counter beside an error-checking mutex: a re-acquire by the
 * owner comes back from glibc as EDEADLK (checked against the owner TID in user space, no system
 * call) and just bumps the depth. That keeps the depth where a condition wait can read it, so the
 * wait can drop every level and restore them afterwards. The owner is the kernel thread id, which
 * is unique across processes, so ownership is per process and per thread, and a forked child
 * never owns a lock its parent holds.
 *
 * A condition keeps its bookkeeping under the user's lock and sleeps on a futex word, never on a
 * pthread_cond_t (whose state a killed waiter corrupts). Waiters take a grant handed out by
 * notify; grants are only usable by waiters that were already waiting when they were issued,
 * and notify wakes every sleeper, so a waiter killed between being woken and taking its grant
 * cannot strand another: the grant stays takeable by the rest.
 */
#include "internal.h"

#include "arena.h"
#include "sync.h"

#include <linux/futex.h>
#include <unistd.h>

/* ---- shared by every sync object ------------------------------------------------------------- */

/* Generations for objects built in zeroed memory. The arena zero-fills a block when it hands it
 * out again, which erases the generation its previous object left there; without this counter
 * the new object would get that same first generation, and a stale handle to the old object
 * would pass its check and use the new one. Only the allocating process reuses a block, so a
 * counter of that process is enough to keep the generations of one block apart. */
static _Atomic uint32_t fresh_gen;

uint32_t
mp__sync_hdr_init(mp__sync_hdr *h, uint32_t kind)
{
    uint32_t g = atomic_load_explicit(&h->gen, memory_order_relaxed);
    if (g == 0)
        g = atomic_fetch_add_explicit(&fresh_gen, 2, memory_order_relaxed) | 1;
    else
        g += (g & 1) ? 2 : 1; /* odd, and never the generation a stale handle may hold */
    h->kind = kind;
    atomic_store_explicit(&h->gen, g, memory_order_release);
    return g;
}

uint32_t
mp__sync_hdr_check(const void *mem, uint32_t kind)
{
    const mp__sync_hdr *h = mem;
    if (mem == NULL || ((uintptr_t)mem & 7) != 0 || h->kind != kind)
        return 0;
    uint32_t g = atomic_load_explicit(&h->gen, memory_order_acquire);
    return (g & 1) ? g : 0;
}

void
mp__sync_free(mp__sync_hdr *h, size_t size)
{
    if (mp__arena_owns(h)) {
        atomic_fetch_add_explicit(&h->gen, 1, memory_order_release);
        mp__arena_free(h, size);
    }
}

/* ---- the caller's thread id ---------------------------------------------------------------------
 * Cached per thread, because ownership checks (condition wait/notify, nested release) compare it
 * with the owner TID in the mutex word. fork() gives the child's only thread a new TID, so the
 * cache is cleared in the child. */

static _Thread_local pid_t tid_cache __attribute__((tls_model("initial-exec")));
static pthread_once_t tid_once = PTHREAD_ONCE_INIT;

static void
tid_forget(void)
{
    tid_cache = 0;
}

static void
tid_register(void)
{
    if (pthread_atfork(NULL, NULL, tid_forget) != 0)
        mp__panic("sync: pthread_atfork failed");
}

static pid_t
my_tid(void)
{
    if (MP__UNLIKELY(tid_cache == 0)) {
        pthread_once(&tid_once, tid_register);
        tid_cache = gettid();
    }
    return tid_cache;
}

/* ---- Lock and RLock -------------------------------------------------------------------------- */

typedef struct lock_shm {
    mp__sync_hdr hdr;
    /* Recursion depth; written only by the owner, read by anyone (a stale value only sends a
     * release down the owner check). It is 1 whenever the mutex is free, so that a fresh
     * acquisition, the hot path, need not write it. */
    _Atomic uint32_t depth;
    /* The header and depth, read by every call, sit on a cache line of their own: on the
     * mutex's line, which bounces between contending CPUs, each read would be one more miss. */
    char pad[64 - sizeof(mp__sync_hdr) - sizeof(uint32_t)];
    pthread_mutex_t m;
} lock_shm;

_Static_assert(sizeof(lock_shm) <= MP__LOCK_SIZE, "lock_shm outgrew MP__LOCK_SIZE");
_Static_assert(sizeof(lock_shm) <= MP__LOCK_SPARE && MP__LOCK_SPARE % 8 == 0 &&
                   offsetof(lock_shm, m) / 64 == (MP__LOCK_SIZE - 1) / 64,
               "MP__LOCK_SPARE must follow the lock, on the mutex's cache line");

struct mp_lock {
    lock_shm *s;
    uint32_t gen;
    bool recursive;
    bool owned; /* the memory is an arena block of this handle's opener */
    mp__pin pin;
};

/* True if the calling thread holds the lock. A robust mutex keeps its owner's TID in the futex
 * word (the kernel's robust-futex ABI), so this reads one word and takes no lock. */
static bool
lock_held(const lock_shm *s)
{
    unsigned w = (unsigned)__atomic_load_n(&s->m.__data.__lock, __ATOMIC_RELAXED);
    return (w & FUTEX_TID_MASK) == (unsigned)my_tid();
}

bool
mp__lock_held(const mp_lock *l)
{
    return lock_held(l->s);
}

int
mp__lock_init_at(void *mem, bool recursive)
{
    if (mem == NULL || ((uintptr_t)mem & 7) != 0)
        return -EINVAL;
    lock_shm *s = mem;
    int r = mp__mutex_init(&s->m);
    if (r != 0)
        return r;
    atomic_store_explicit(&s->depth, 1, memory_order_relaxed);
    mp__sync_hdr_init(&s->hdr, recursive ? MP__KIND_RLOCK : MP__KIND_LOCK);
    return 0;
}

static void
lock_wrap_into(mp_lock *l, lock_shm *s, uint32_t gen, bool owned)
{
    l->s = s;
    l->gen = gen;
    l->recursive = s->hdr.kind == MP__KIND_RLOCK;
    l->owned = owned;
    l->pin = (mp__pin){NULL, NULL};
}

void
mp__lock_pin(mp_lock *l, mp__pin pin)
{
    l->pin = pin;
}

int
mp__lock_wrap(mp_lock **out, void *mem)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    uint32_t g = mp__sync_hdr_check(mem, MP__KIND_LOCK);
    if (g == 0)
        g = mp__sync_hdr_check(mem, MP__KIND_RLOCK);
    if (g == 0)
        return -EINVAL;
    mp_lock *l = mp__malloc(sizeof *l);
    if (l == NULL)
        return -ENOMEM;
    lock_wrap_into(l, mem, g, false);
    *out = l;
    return 0;
}

int
mp_lock_open(mp_lock **out, const mp_lock_opts *opts)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    mp_lock *l = mp__malloc(sizeof *l);
    if (l == NULL)
        return -ENOMEM;
    void *mem;
    int r = mp__arena_alloc(MP__LOCK_SIZE, &mem);
    if (r == 0 && (r = mp__lock_init_at(mem, opts != NULL && opts->recursive)) != 0)
        mp__arena_free(mem, MP__LOCK_SIZE);
    if (r != 0) {
        mp__free(l);
        return r;
    }
    lock_wrap_into(l, mem, atomic_load(&((lock_shm *)mem)->hdr.gen), true);
    *out = l;
    return 0;
}

int
mp_rlock_open(mp_lock **out)
{
    return mp_lock_open(out, &(mp_lock_opts){.recursive = true});
}

void
mp_lock_close(mp_lock *l)
{
    if (l == NULL)
        return;
    if (l->owned)
        mp__sync_free(&l->s->hdr, MP__LOCK_SIZE);
    mp__pin pin = l->pin;
    mp__free(l);
    mp__pin_drop(pin);
}

/* What an acquisition of the mutex returned, turned into the lock's result. */
__attribute__((noinline)) static int
lock_took(mp_lock *l, int r)
{
    lock_shm *s = l->s;
    switch (r) {
    case 0:
        mp__fault("sync.lock.held");
        return 0;
    case EOWNERDEAD:
        /* The dead owner's depth is meaningless: this caller holds the lock once. */
        atomic_store_explicit(&s->depth, 1, memory_order_relaxed);
        pthread_mutex_consistent(&s->m);
        return MP_OWNERDEAD;
    case EDEADLK:
        if (l->recursive) {
            uint32_t d = atomic_load_explicit(&s->depth, memory_order_relaxed);
            if (d == UINT32_MAX)
                return -EAGAIN;
            atomic_store_explicit(&s->depth, d + 1, memory_order_relaxed);
            return 0;
        }
        return -EDEADLK;
    case EBUSY:
        return -EAGAIN;
    default:
        return -r;
    }
}

static int
lock_acquire(mp_lock *l, int timeout_ms)
{
    if (timeout_ms == MP_NOWAIT)
        return lock_took(l, pthread_mutex_trylock(&l->s->m));
    mp__deadline dl;
    if (mp__deadline_init(&dl, timeout_ms) < 0)
        return -EINVAL;
    return lock_took(l, mp__mutex_lock_raw(&l->s->m, &dl));
}

int
mp_lock_acquire(mp_lock *l, int timeout_ms)
{
    if (MP__UNLIKELY(l == NULL))
        return -EINVAL;
    lock_shm *s = l->s;
    if (MP__UNLIKELY(mp__sync_stale(&s->hdr, l->gen)))
        return -EBADF;
    /* The common case inline: an uncontended lock without a deadline. A busy one goes to
     * lock_acquire, whose sleeps are bounded (see mp__mutex_lock_raw). */
    if (MP__LIKELY(timeout_ms == MP_FOREVER)) {
        int r = pthread_mutex_trylock(&s->m);
        if (MP__LIKELY(r == 0)) {
            mp__fault("sync.lock.held");
            return 0;
        }
        if (r != EBUSY)
            return lock_took(l, r);
    }
    return lock_acquire(l, timeout_ms);
}

/* Out of line, so that the hot path of mp_lock_release saves no registers. */
__attribute__((noinline, cold)) static int
release_nested(lock_shm *s, uint32_t d)
{
    if (!lock_held(s))
        return -EPERM;
    atomic_store_explicit(&s->depth, d - 1, memory_order_relaxed);
    return 0;
}

int
mp_lock_release(mp_lock *l)
{
    if (MP__UNLIKELY(l == NULL))
        return -EINVAL;
    lock_shm *s = l->s;
    if (MP__UNLIKELY(mp__sync_stale(&s->hdr, l->gen)))
        return -EBADF;
    uint32_t d = atomic_load_explicit(&s->depth, memory_order_relaxed);
    if (MP__UNLIKELY(d > 1))
        return release_nested(s, d);
    /* The error-checking mutex refuses (EPERM) an unlock by a thread that does not own it. */
    return -pthread_mutex_unlock(&s->m);
}

/* ---- Condition ------------------------------------------------------------------------------- */

typedef struct cond_shm {
    mp__sync_hdr hdr;
    _Atomic uint32_t seq; /* futex word: bumped by every notify that grants something */
    /* The rest is guarded by the condition's lock. */
    uint64_t waiters;     /* waiting, granted or not (a killed waiter stays counted) */
    uint64_t grants;      /* notifications issued and not yet taken */
    uint64_t epoch;       /* count of granting notifies */
    uint64_t grant_epoch; /* epoch of the newest grant: waiters that entered before may take it */
    char pad[64 - 48];
    lock_shm lock; /* the condition's own recursive lock, used unless the caller gave one */
} cond_shm;

_Static_assert(sizeof(cond_shm) <= MP__CONDITION_SIZE, "cond_shm outgrew MP__CONDITION_SIZE");

struct mp_condition {
    cond_shm *s;
    uint32_t gen;
    bool owned;
    mp_lock *lock; /* &own, or the caller's */
    mp_lock own;
    mp__pin pin;
};

int
mp__condition_init_at(void *mem)
{
    if (mem == NULL || ((uintptr_t)mem & 7) != 0)
        return -EINVAL;
    cond_shm *s = mem;
    int r = mp__lock_init_at(&s->lock, true);
    if (r != 0)
        return r;
    atomic_store_explicit(&s->seq, 0, memory_order_relaxed);
    s->waiters = s->grants = s->epoch = s->grant_epoch = 0;
    mp__sync_hdr_init(&s->hdr, MP__KIND_COND);
    return 0;
}

static mp_condition *
cond_new(cond_shm *s, uint32_t gen, bool owned, mp_lock *lock)
{
    mp_condition *c = mp__malloc(sizeof *c);
    if (c == NULL)
        return NULL;
    c->s = s;
    c->gen = gen;
    c->owned = owned;
    lock_wrap_into(&c->own, &s->lock, atomic_load(&s->lock.hdr.gen), false);
    c->lock = lock != NULL ? lock : &c->own;
    c->pin = (mp__pin){NULL, NULL};
    return c;
}

void
mp__condition_pin(mp_condition *c, mp__pin pin)
{
    c->pin = pin;
}

int
mp__condition_wrap(mp_condition **out, void *mem, mp_lock *lock)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    uint32_t g = mp__sync_hdr_check(mem, MP__KIND_COND);
    if (g == 0)
        return -EINVAL;
    if (lock != NULL && mp__sync_stale(&lock->s->hdr, lock->gen))
        return -EBADF;
    *out = cond_new(mem, g, false, lock);
    return *out != NULL ? 0 : -ENOMEM;
}

int
mp_condition_open(mp_condition **out, const mp_condition_opts *opts)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    mp_lock *lock = opts != NULL ? opts->lock : NULL;
    if (lock != NULL && mp__sync_stale(&lock->s->hdr, lock->gen))
        return -EBADF;
    void *mem;
    int r = mp__arena_alloc(MP__CONDITION_SIZE, &mem);
    if (r != 0)
        return r;
    r = mp__condition_init_at(mem);
    mp_condition *c = NULL;
    if (r == 0 && (c = cond_new(mem, atomic_load(&((cond_shm *)mem)->hdr.gen), true, lock)) == NULL)
        r = -ENOMEM;
    if (r != 0) {
        mp__arena_free(mem, MP__CONDITION_SIZE);
        return r;
    }
    *out = c;
    return 0;
}

void
mp_condition_close(mp_condition *c)
{
    if (c == NULL)
        return;
    if (c->owned)
        mp__sync_free(&c->s->hdr, MP__CONDITION_SIZE);
    mp__pin pin = c->pin;
    mp__free(c);
    mp__pin_drop(pin);
}

static int
cond_check(const mp_condition *c)
{
    if (MP__UNLIKELY(c == NULL))
        return -EINVAL;
    if (MP__UNLIKELY(mp__sync_stale(&c->s->hdr, c->gen) ||
                     mp__sync_stale(&c->lock->s->hdr, c->lock->gen)))
        return -EBADF;
    return 0;
}

int
mp_condition_acquire(mp_condition *c, int timeout_ms)
{
    int r = cond_check(c);
    return r != 0 ? r : lock_acquire(c->lock, timeout_ms);
}

int
mp_condition_release(mp_condition *c)
{
    int r = cond_check(c);
    return r != 0 ? r : mp_lock_release(c->lock);
}

/* The wait proper; the caller has checked the handle and that it holds the lock. */
static int
cond_wait(mp_condition *c, const mp__deadline *dl, bool nowait)
{
    cond_shm *cs = c->s;
    lock_shm *ls = c->lock->s;
    uint64_t entered = cs->epoch;
    cs->waiters++;
    uint32_t depth = atomic_load_explicit(&ls->depth, memory_order_relaxed);
    bool owner_died = false;
    int res;
    for (;;) {
        uint32_t seq = atomic_load(&cs->seq);
        /* One unlock drops every level: recursion lives in `depth`, not in the mutex, and
         * depth is 1 while the mutex is free. */
        atomic_store_explicit(&ls->depth, 1, memory_order_relaxed);
        pthread_mutex_unlock(&ls->m);
        mp__fault("sync.cond.wait");
        int r = mp__futex_wait(&cs->seq, seq, dl);
        mp__fault("sync.cond.woken");
        /* The lock is re-taken without a deadline, as Python does, even after a timeout. */
        int lr = mp__mutex_lock_raw(&ls->m, NULL);
        if (lr == EOWNERDEAD) {
            owner_died = true;
            pthread_mutex_consistent(&ls->m);
        } else if (lr != 0) {
            mp__panic("condition: re-taking the lock failed: %d", lr);
        }
        if (cs->grants > 0 && cs->grant_epoch > entered) {
            /* grants first: dying between the two leaves an extra waiter, which only costs a
             * wake-up later, never a lost one. */
            cs->grants--;
            cs->waiters--;
            res = 0;
            break;
        }
        if (r == -EINTR || r == -ETIMEDOUT || mp__deadline_passed(dl)) {
            cs->waiters--;
            res = r == -EINTR ? -EINTR : nowait ? -EAGAIN : -ETIMEDOUT;
            break;
        }
    }
    atomic_store_explicit(&ls->depth, depth, memory_order_relaxed);
    return res == 0 && owner_died ? MP_OWNERDEAD : res;
}

int
mp_condition_wait(mp_condition *c, int timeout_ms)
{
    int r = cond_check(c);
    if (r != 0)
        return r;
    mp__deadline dl;
    if ((r = mp__deadline_init(&dl, timeout_ms)) != 0)
        return r;
    if (!lock_held(c->lock->s))
        return -EPERM;
    return cond_wait(c, &dl, timeout_ms == MP_NOWAIT);
}

int
mp_condition_wait_for(mp_condition *c, bool (*pred)(void *), void *arg, int timeout_ms)
{
    int r = cond_check(c);
    if (r != 0)
        return r;
    mp__deadline dl;
    if (pred == NULL || (r = mp__deadline_init(&dl, timeout_ms)) != 0)
        return -EINVAL;
    if (!lock_held(c->lock->s))
        return -EPERM;
    bool owner_died = false;
    while (!pred(arg)) {
        if (mp__deadline_passed(&dl))
            return timeout_ms == MP_NOWAIT ? -EAGAIN : -ETIMEDOUT;
        r = cond_wait(c, &dl, timeout_ms == MP_NOWAIT);
        if (r == MP_OWNERDEAD)
            owner_died = true;
        else if (r == -ETIMEDOUT || r == -EAGAIN)
            return pred(arg) ? (owner_died ? MP_OWNERDEAD : 0) : r;
        else if (r < 0)
            return r;
    }
    return owner_died ? MP_OWNERDEAD : 0;
}

int
mp_condition_notify(mp_condition *c, int n)
{
    int r = cond_check(c);
    if (r != 0)
        return r;
    if (n < 0)
        return -EINVAL;
    if (!lock_held(c->lock->s))
        return -EPERM;
    cond_shm *cs = c->s;
    /* Waiters that hold no grant yet; killed waiters may inflate it, which at worst grants
     * a notification nobody takes. */
    uint64_t avail = cs->waiters - cs->grants;
    if (n == 0 || avail == 0)
        return 0;
    cs->grants += (uint64_t)n < avail ? (uint64_t)n : avail;
    cs->grant_epoch = ++cs->epoch;
    atomic_fetch_add(&cs->seq, 1);
    /* Everyone wakes: the grants go to whoever takes them first, and a woken waiter that is
     * killed before it takes one leaves it to the others instead of stranding them. */
    mp__futex_wake(&cs->seq, INT32_MAX);
    return 0;
}

int
mp_condition_notify_all(mp_condition *c)
{
    return mp_condition_notify(c, INT32_MAX);
}
