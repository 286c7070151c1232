/*
 * queue.c - mp_queue: Python's Queue, SimpleQueue and JoinableQueue in one shared segment.
 *
 * This file holds the waits, the locks, messages that fit the ring, and the API. Messages
 * larger than the ring are in queue_stream.c; the layout and the crash-safety argument are
 * in queue.h.
 */
#include "queue.h"

#include <sys/eventfd.h>
#include <unistd.h>

/* ---- waiting: bounded adaptive spin, then a futex word ------------------------------------ */

/* mp__queue_wait - until ready(q, arg) or the deadline. The spin (which waits for
 * ready(q, spin_arg), a condition at least as strong) adapts to how long waits have
 * recently lasted (as glibc's adaptive mutexes do) and never exceeds SPIN_MAX pauses, so on
 * two cores a waiter that spins in vain gives its CPU back quickly; est NULL: no spin.
 * Returns 0, -ETIMEDOUT or -EINTR. */
int
mp__queue_wait(mp_queue *q, struct waitq *w, _Atomic unsigned *est, mp__queue_ready ready,
               uint64_t arg, uint64_t spin_arg, const mp__deadline *dl)
{
    if (ready(q, arg))
        return 0;
    if (q->spin && est != NULL) {
        int e = (int)atomic_load_explicit(est, memory_order_relaxed);
        int max = e < (int)SPIN_MIN ? (int)SPIN_MIN : e > (int)SPIN_MAX ? (int)SPIN_MAX : e;
        /* Check at exponentially spaced pauses, then every 8 (about 200 ns): checking reads
         * the other side's position line, and reading it on every pause would pull that line
         * away from its writer for every message it publishes. */
        for (int i = 1, next = 1; i <= max; i++) {
            cpu_relax();
            if (i < next)
                continue;
            next = i < 8 ? 2 * i : i + 8;
            if (ready(q, spin_arg)) {
                /* Aim for twice the wait that just succeeded. */
                atomic_store_explicit(est, (unsigned)(e + (2 * i - e) / 8), memory_order_relaxed);
                return 0;
            }
        }
        /* Spinning did not pay: spin a little less next time. Shrinking slowly keeps one
         * descheduled peer from talking the waiter out of spinning for good. */
        atomic_store_explicit(est, (unsigned)(e - e / 16), memory_order_relaxed);
    }
    /* Sleep a slice at a time, 50 ms growing to 1 s: a waker killed after its publish but
     * before its futex wake (or after disarming `armed`, so that no later publish wakes us
     * either) would otherwise leave us asleep beside a ready queue until our deadline, for
     * ever with MP_FOREVER. Looking again (and re-arming) after each slice bounds what such a
     * death costs. The slices grow so that a long wait costs about one wakeup a second, and
     * so that their ends rarely meet a periodic timer: a signal whose handler runs between two
     * slices, rather than during one, does not end the wait with -EINTR. */
    int64_t slice_ns = LIVENESS_NS;
    for (;;) {
        uint32_t seq = atomic_load_explicit(&w->word, memory_order_acquire);
        atomic_fetch_add(&w->waiters, 1);
        atomic_exchange(&w->armed, 1);
        bool ok = ready(q, arg);
        mp__deadline slice = {mp__now_ns() + slice_ns};
        if (slice.abs_ns > dl->abs_ns)
            slice = *dl;
        slice_ns = slice_ns < WAKE_SLICE_MAX_NS / 2 ? 2 * slice_ns : WAKE_SLICE_MAX_NS;
        int r = ok ? 0 : mp__futex_wait(&w->word, seq, &slice);
        atomic_fetch_sub(&w->waiters, 1);
        if (ok || ready(q, arg))
            return 0;
        if (r == -EINTR)
            return r;
        if (mp__deadline_passed(dl))
            return -ETIMEDOUT;
    }
}

static bool
can_put(mp_queue *q, uint64_t arg)
{
    uint64_t t = atomic_load_explicit(&q->h->tail, memory_order_relaxed);
    uint64_t h = atomic_load(&q->h->head); /* seq_cst: see wake() */
    return room_in(q, t, h, arg);
}

static bool
can_get(mp_queue *q, uint64_t arg)
{
    (void)arg;
    uint64_t h = atomic_load_explicit(&q->h->head, memory_order_relaxed);
    uint64_t t = atomic_load(&q->h->tail); /* seq_cst: see wake() */
    return w_seq(t) != w_seq(h);
}

/* Under plock: room for arg, first against the cached head, then against a fresh one. */
bool
mp__queue_room_locked(mp_queue *q, uint64_t t, uint64_t arg)
{
    struct qhdr *h = q->h;
    if (room_in(q, t, atomic_load_explicit(&h->head_cache, memory_order_relaxed), arg))
        return true;
    uint64_t hw = atomic_load_explicit(&h->head, memory_order_acquire);
    atomic_store_explicit(&h->head_cache, hw, memory_order_relaxed);
    return room_in(q, t, hw, arg);
}

/* ---- locks --------------------------------------------------------------------------------- */

/* queue_lock - mp__mutex_lock, after a short spin of spaced trylocks when more than one CPU is
 * available. The queue's locks are held only to copy a message (or, rarely, for a whole stream),
 * and glibc's robust mutexes go straight to a futex sleep when busy: a contended acquisition
 * (several producers or consumers, or a clear of a queue's fileno, which takes both locks)
 * then costs two syscalls and a wake-up latency instead of a few hundred nanoseconds. */
static int
queue_lock(mp_queue *q, pthread_mutex_t *m, const mp__deadline *dl)
{
    for (int i = 0; q->spin && i < LOCK_SPIN; i++) {
        int r = pthread_mutex_trylock(m);
        if (r == 0 || r == EOWNERDEAD)
            return r == 0 ? 0 : MP_OWNERDEAD;
        if (r != EBUSY)
            return -r;
        for (int k = 0; k < 8; k++)
            cpu_relax();
    }
    return mp__mutex_lock(m, dl);
}

/* ---- JoinableQueue counter ------------------------------------------------------------------ */

/* Lower the unfinished count; -EINVAL (and no change) when it is already 0. */
int
mp__queue_task_drop(mp_queue *q)
{
    struct qhdr *h = q->h;
    uint64_t u = atomic_load(&h->unfinished);
    do {
        if (u == 0)
            return -EINVAL;
    } while (!atomic_compare_exchange_weak(&h->unfinished, &u, u - 1));
    if (u == 1)
        wake(&h->unf);
    return 0;
}

static void fd_released(mp_queue *q);

/* ---- producer side -------------------------------------------------------------------------- */

/* With plock held after EOWNERDEAD: undo the unfinished raise of a publish that never
 * happened, and end an open stream. Bytes past the tail need nothing: they are not visible. */
void
mp__queue_repair(mp_queue *q)
{
    struct qhdr *h = q->h;
    if (atomic_load(&h->rec_active)) {
        uint64_t rt = atomic_load(&h->rec_tail);
        atomic_store(&h->rec_active, 0);
        if (atomic_load(&h->tail) == rt)
            mp__queue_task_drop(q);
    }
    /* The dead holder may have been between the two steps of a raise or a clear: raise
     * again (flag first), so that readiness errs towards "readable"; a get that finds the
     * queue empty clears it. */
    if (q->efd >= 0) {
        atomic_store_explicit(&h->fd_ready, 1, memory_order_relaxed);
        (void)eventfd_write(q->efd, 1);
    }
}

static int
lock_producer(mp_queue *q, const mp__deadline *dl)
{
    struct qhdr *h = q->h;
    int r = queue_lock(q, &h->plock, dl);
    if (r < 0)
        return r;
    if (r == MP_OWNERDEAD) {
        mp__queue_repair(q);
        mp__mutex_consistent(&h->plock);
    }
    uint64_t t = atomic_load_explicit(&h->tail, memory_order_relaxed);
    /* Every frame is 8-aligned: any other tail is a scribbled header (see queue.h). */
    if (MP__UNLIKELY(w_pos(t) & 7)) {
        mp__mutex_unlock(&h->plock);
        return -EBADMSG;
    }
    if (t & F_STREAM)
        mp__queue_abort(q);
    return 0;
}

/* With plock held: make the eventfd readable before a message becomes visible, so that a
 * poller never sees the queue hold a message while the fd is not readable. The flag is set
 * before the counter is written, and a clear reads the counter before it drops the flag, so
 * that a flag of 0 always means a counter of 0 (a get that finds the queue empty can trust
 * it). A death between the two steps leaves the fd not readable while nothing is queued, which
 * is right, and the next plock holder repairs it before any message is published. */
static void
fd_raise(mp_queue *q)
{
    struct qhdr *h = q->h;
    if (atomic_load_explicit(&h->fd_ready, memory_order_relaxed))
        return;
    atomic_store_explicit(&h->fd_ready, 1, memory_order_relaxed);
    /* A non-blocking eventfd write of 1 fails only if the counter is near 2^64. */
    (void)eventfd_write(q->efd, 1);
    mp__fault("queue.fd.raised");
}

/* Publish the tail that makes a new message visible. A JoinableQueue raises the unfinished
 * count first, with a record that lets a repairer undo the raise if this process dies before
 * the store. */
void
mp__queue_publish(mp_queue *q, uint64_t old, uint64_t neww)
{
    struct qhdr *h = q->h;
    if (q->efd >= 0)
        fd_raise(q);
    if (h->joinable) {
        atomic_store(&h->rec_tail, old);
        atomic_store(&h->rec_active, 1);
        atomic_fetch_add(&h->unfinished, 1);
        mp__fault("queue.put.counted");
        publish(&h->tail, neww);
        atomic_store_explicit(&h->rec_active, 0, memory_order_release);
    } else {
        publish(&h->tail, neww);
    }
}

int
mp__queue_put_wait(mp_queue *q, uint64_t need, const mp__deadline *dl)
{
    /* Spin for a quarter of the ring rather than for one frame: a producer that resumes as
     * soon as one frame is free keeps writing the cache lines its consumer is reading. */
    uint64_t far = (need & ~NEED_COUNT) > q->cap / 4 ? need : (q->cap / 4) | (need & NEED_COUNT);
    return mp__queue_wait(q, &q->h->nf, &q->spin_put, can_put, need, far, dl);
}

/* The lock deadline: the call's, but MP_NOWAIT still waits briefly for a lock that another
 * process holds only to copy a message, so that "nowait" fails only on a really full or
 * empty queue (Python's get(block=False) fails when another reader holds the lock). */
static mp__deadline
lock_deadline(const mp__deadline *dl, bool nowait)
{
    mp__deadline ld = *dl;
    if (nowait)
        ld.abs_ns = mp__now_ns() + NOWAIT_LOCK_NS;
    return ld;
}

int
mp_queue_put(mp_queue *q, const void *data, size_t len, int timeout_ms)
{
    if (q == NULL || (data == NULL && len != 0) || len > (SIZE_MAX >> 2))
        return -EINVAL;
    mp__deadline dl;
    int r = mp__deadline_init(&dl, timeout_ms);
    if (r < 0)
        return r;
    struct qhdr *h = q->h;
    bool nowait = timeout_ms == MP_NOWAIT;
    uint64_t frame = HDR + pad8(len);
    bool stream = frame > q->cap;
    /* A message larger than the ring can only be written while consumers read it. */
    if (stream && nowait)
        return -EAGAIN;
    mp__deadline ld = lock_deadline(&dl, nowait);
    uint64_t t;
    for (;;) {
        if ((r = lock_producer(q, &ld)) < 0)
            return r == -ETIMEDOUT && nowait ? -EAGAIN : r;
        if (stream) {
            r = mp__queue_put_stream(q, data, len, &dl);
            mp__mutex_unlock(&h->plock);
            if (q->efd >= 0)
                fd_released(q);
            return r == -ETIMEDOUT && nowait ? -EAGAIN : r;
        }
        t = atomic_load_explicit(&h->tail, memory_order_relaxed);
        if (mp__queue_room_locked(q, t, frame | NEED_COUNT))
            break;
        mp__mutex_unlock(&h->plock);
        if (q->efd >= 0)
            fd_released(q);
        if (nowait)
            return -EAGAIN;
        if ((r = mp__queue_put_wait(q, frame | NEED_COUNT, &dl)) < 0)
            return r;
        ld = dl;
    }
    *ring_word(q, w_pos(t)) = len;
    ring_write(q, w_pos(t) + HDR, data, len);
    mp__fault("queue.put.copied");
    mp__queue_publish(q, t, w_make(w_pos(t) + frame, w_seq(t) + 1, 0));
    mp__mutex_unlock(&h->plock);
    wake(&h->ne);
    if (q->efd >= 0)
        fd_released(q);
    return 0;
}

/* ---- consumer side -------------------------------------------------------------------------- */

static int
lock_consumer(mp_queue *q, const mp__deadline *dl)
{
    int r = queue_lock(q, &q->h->clock, dl);
    if (r == MP_OWNERDEAD) {
        /* The consumer state is kept consistent store by store: an interrupted copy left its
         * message in place, and an interrupted stream is resumed from its record. */
        mp__mutex_consistent(&q->h->clock);
        r = 0;
    }
    return r;
}

enum { SETTLED, SETTLE_AGAIN, SETTLE_BUSY };

static bool
queue_empty(struct qhdr *h)
{
    uint64_t hw = atomic_load(&h->head);
    return w_seq(atomic_load(&h->tail)) == w_seq(hw);
}

/* With clock held: clear the eventfd's readiness if the queue is empty. Only while also holding
 * plock (tried, never waited for: a streaming producer holds it until consumers have read its
 * message), so that no put is between its raise and its publish. SETTLE_AGAIN: a message was
 * published meanwhile; SETTLE_BUSY: plock is held, and its holder looks again after its
 * release (fd_released). The counter is read (cleared) before the flag drops: a death in
 * between dies holding plock, and the repair raises again. */
static int
settle_fd(mp_queue *q)
{
    struct qhdr *h = q->h;
    if (!atomic_load_explicit(&h->fd_ready, memory_order_relaxed) || !queue_empty(h))
        return SETTLED;
    atomic_thread_fence(memory_order_seq_cst); /* see fd_released */
    int r = pthread_mutex_trylock(&h->plock);
    if (r == EOWNERDEAD) {
        mp__queue_repair(q);
        mp__mutex_consistent(&h->plock);
    } else if (r != 0) {
        return SETTLE_BUSY;
    }
    uint64_t t = atomic_load_explicit(&h->tail, memory_order_relaxed);
    if (t & F_STREAM)
        mp__queue_abort(q); /* its producer is gone: the aborted message is still queued */
    bool empty = queue_empty(h);
    if (empty) {
        eventfd_t v;
        (void)eventfd_read(q->efd, &v); /* EAGAIN when a dead clearer already read it */
        mp__fault("queue.fd.cleared");
        atomic_store_explicit(&h->fd_ready, 0, memory_order_relaxed);
    }
    mp__mutex_unlock(&h->plock);
    return empty ? SETTLED : SETTLE_AGAIN;
}

/* fd_released - after releasing plock or clock (holding neither): clear the readiness if the
 * queue is empty. A clear needs both locks and only tries them, so it can fail because the
 * other lock is held; its holder then runs this after its release and finds the same state.
 * "Change the state (or see it), then try the lock" against "release the lock, then read the
 * state" is the store-then-load pattern that needs a full fence on both sides (the lock
 * operations are only acquire and release): then either the clearer gets the lock or the
 * releaser sees the state. So the last releaser clears. */
static void
fd_released(mp_queue *q)
{
    struct qhdr *h = q->h;
    atomic_thread_fence(memory_order_seq_cst);
    if (!atomic_load_explicit(&h->fd_ready, memory_order_relaxed) || !queue_empty(h))
        return;
    int r = pthread_mutex_trylock(&h->clock);
    if (r != 0 && r != EOWNERDEAD)
        return;
    if (r == EOWNERDEAD)
        mp__mutex_consistent(&h->clock); /* see lock_consumer */
    settle_fd(q);
    mp__mutex_unlock(&h->clock);
}

/* With clock held and a message at the head, `used` bytes published from it: take it into buf
 * (or a new buffer when abuf is set). 0, STREAM_DISCARDED (look at the next message), or a
 * negative error. */
static int
take(mp_queue *q, uint64_t hw, uint64_t used, void *buf, size_t cap, void **abuf, size_t *lenp,
     const mp__deadline *dl, bool nowait)
{
    struct qhdr *h = q->h;
    uint64_t len = *ring_word(q, w_pos(hw));
    /* A length no put accepts, or a fitting frame longer than what was published (a put
     * publishes its frame whole). */
    if (MP__UNLIKELY(len > (SIZE_MAX >> 2)))
        return -EBADMSG;
    uint64_t frame = HDR + pad8(len);
    if (MP__UNLIKELY(frame <= q->cap && frame > used))
        return -EBADMSG;
    *lenp = len;
    unsigned char *dst = buf;
    if (frame > q->cap && ((abuf == NULL && len > cap) || nowait)) {
        int d = mp__queue_stream_drop_aborted(q, hw, len);
        if (d != 0)
            return d > 0 ? STREAM_DISCARDED : d;
    }
    if (abuf == NULL && len > cap)
        return -EMSGSIZE;
    if (frame > q->cap && nowait)
        return -EAGAIN; /* completing a streamed message means waiting for its producer */
    if (abuf != NULL && (dst = mp__malloc(len > 0 ? len : 1)) == NULL)
        return -ENOMEM;
    int r;
    if (frame <= q->cap) {
        ring_read(q, w_pos(hw) + HDR, dst, len);
        mp__fault("queue.get.copied");
        publish(&h->head, w_make(w_pos(hw) + frame, w_seq(hw) + 1, 0));
        r = 0;
    } else {
        r = mp__queue_stream_take(q, hw, len, dst, dl);
    }
    if (abuf != NULL) {
        if (r == 0)
            *abuf = dst;
        else
            mp__free(dst);
    }
    return r;
}

static int
get_impl(mp_queue *q, void *buf, size_t cap, void **abuf, size_t *lenp, int timeout_ms)
{
    mp__deadline dl;
    int r = mp__deadline_init(&dl, timeout_ms);
    if (r < 0)
        return r;
    struct qhdr *h = q->h;
    bool nowait = timeout_ms == MP_NOWAIT;
    /* With a fileno, an empty queue whose fd reads ready takes the locked path: a put is about
     * to publish (the get then takes its message) or a death left the fd raised (the get
     * clears it). This is the get a poller makes when the fd is readable. */
    if (nowait && !can_get(q, 0) &&
        (q->efd < 0 || !atomic_load_explicit(&h->fd_ready, memory_order_relaxed)))
        return -EAGAIN;
    mp__deadline ld = lock_deadline(&dl, nowait);
    for (;;) {
        if ((r = lock_consumer(q, &ld)) < 0)
            return r == -ETIMEDOUT && nowait ? -EAGAIN : r;
        bool pending = false;
        for (;;) {
            if (atomic_load_explicit(&h->c_active, memory_order_relaxed) &&
                (r = mp__queue_stream_resume(q, &dl)) < 0)
                break;
            uint64_t hw = atomic_load_explicit(&h->head, memory_order_relaxed);
            uint64_t t = atomic_load_explicit(&h->tail_cache, memory_order_relaxed);
            if (w_seq(t) == w_seq(hw)) {
                t = atomic_load_explicit(&h->tail, memory_order_acquire);
                atomic_store_explicit(&h->tail_cache, t, memory_order_relaxed);
            }
            if (w_seq(t) == w_seq(hw)) {
                int s = q->efd >= 0 ? settle_fd(q) : SETTLED;
                if (s == SETTLE_AGAIN)
                    continue;
                pending = s == SETTLE_BUSY;
                r = -EAGAIN;
                break;
            }
            /* Head and tail as they must be: aligned, the message's length word published,
             * and no more than the ring between them (see queue.h). */
            uint64_t used = w_used(t, hw);
            if (MP__UNLIKELY(((hw | t) & 7) != 0 || used < HDR || used > q->cap)) {
                r = -EBADMSG;
                break;
            }
            if ((r = take(q, hw, used, buf, cap, abuf, lenp, &dl, nowait)) != STREAM_DISCARDED)
                break;
        }
        mp__mutex_unlock(&h->clock);
        if (q->efd >= 0)
            fd_released(q);
        if (r != -EAGAIN || (nowait && !pending)) {
            if (r == 0)
                wake(&h->nf);
            return r == -ETIMEDOUT && nowait ? -EAGAIN : r;
        }
        /* MP_NOWAIT with a put about to publish waits for it as for a lock (ld). */
        r = mp__queue_wait(q, &h->ne, &q->spin_get, can_get, 0, 0, nowait ? &ld : &dl);
        if (r < 0)
            return r == -ETIMEDOUT && nowait ? -EAGAIN : r;
        if (!nowait)
            ld = dl;
    }
}

int
mp_queue_get(mp_queue *q, void *buf, size_t cap, size_t *len, int timeout_ms)
{
    if (q == NULL || len == NULL || (buf == NULL && cap != 0))
        return -EINVAL;
    return get_impl(q, buf, cap, NULL, len, timeout_ms);
}

int
mp_queue_get_alloc(mp_queue *q, void **data, size_t *len, int timeout_ms)
{
    if (q == NULL || data == NULL || len == NULL)
        return -EINVAL;
    return get_impl(q, NULL, 0, data, len, timeout_ms);
}

/* ---- open, close, state -----------------------------------------------------------------------
 */

int
mp_queue_open(mp_queue **out, const mp_queue_opts *opts)
{
    static const mp_queue_opts defaults;
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    if (opts == NULL)
        opts = &defaults;
    uint64_t cap = opts->capacity == 0 ? DEFAULT_CAPACITY : opts->capacity;
    if (cap > MAX_CAPACITY || opts->maxsize > SEQ_MASK / 2)
        return -EINVAL;
    if (cap < MIN_CAPACITY)
        cap = MIN_CAPACITY;
    while (cap & (cap - 1))
        cap += cap & -cap; /* round up to a power of two */
    mp_queue *q = mp__calloc(1, sizeof *q);
    if (q == NULL)
        return -ENOMEM;
    size_t hsize = (sizeof(struct qhdr) + 4095) & ~(size_t)4095;
    int r = mp__seg_create(&q->seg, NULL, hsize + cap);
    if (r < 0) {
        mp__free(q);
        return r;
    }
    struct qhdr *h = q->seg.addr;
    q->h = h;
    q->efd = -1;
    if (opts->fileno && (q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        r = -errno;
        mp__seg_close(&q->seg);
        mp__free(q);
        return r;
    }
    q->ring = (unsigned char *)q->seg.addr + hsize;
    q->cap = cap;
    q->mask = cap - 1;
    q->spin = mp_cpu_count() > 1; /* the CPUs this process may run on, not those online */
    atomic_init(&q->spin_get, 256);
    atomic_init(&q->spin_put, 256);
    h->maxsize = opts->maxsize;
    h->joinable = opts->joinable;
    if ((r = mp__mutex_init(&h->plock)) < 0 || (r = mp__mutex_init(&h->clock)) < 0) {
        if (q->efd >= 0)
            close(q->efd);
        mp__seg_close(&q->seg);
        mp__free(q);
        return r;
    }
    *out = q;
    return 0;
}

void
mp_queue_close(mp_queue *q)
{
    if (q == NULL)
        return;
    if (q->efd >= 0)
        close(q->efd);
    mp__seg_close(&q->seg);
    mp__pin pin = q->pin;
    mp__free(q);
    mp__pin_drop(pin);
}

int
mp_queue_fileno(mp_queue *q)
{
    if (q == NULL || q->efd < 0)
        return -EINVAL;
    return q->efd;
}

int
mp_queue_qsize(mp_queue *q)
{
    if (q == NULL)
        return -EINVAL;
    /* Head first: the tail read afterwards is at least as new, so the count is never negative
     * and equals the true count at some instant during the call. */
    uint64_t hw = atomic_load_explicit(&q->h->head, memory_order_acquire);
    uint64_t t = atomic_load_explicit(&q->h->tail, memory_order_acquire);
    return (int)w_count(t, hw);
}

int
mp_queue_empty(mp_queue *q)
{
    int n = mp_queue_qsize(q);
    return n < 0 ? n : n == 0;
}

int
mp_queue_full(mp_queue *q)
{
    if (q == NULL)
        return -EINVAL;
    uint64_t hw = atomic_load_explicit(&q->h->head, memory_order_acquire);
    uint64_t t = atomic_load_explicit(&q->h->tail, memory_order_acquire);
    return !room_in(q, t, hw, HDR | NEED_COUNT);
}

int
mp_queue_task_done(mp_queue *q)
{
    if (q == NULL || !q->h->joinable)
        return -EINVAL;
    return mp__queue_task_drop(q);
}

static bool
all_done(mp_queue *q, uint64_t arg)
{
    (void)arg;
    return atomic_load(&q->h->unfinished) == 0; /* seq_cst: see wake() */
}

int
mp_queue_join(mp_queue *q, int timeout_ms)
{
    if (q == NULL || !q->h->joinable)
        return -EINVAL;
    mp__deadline dl;
    int r = mp__deadline_init(&dl, timeout_ms);
    if (r < 0)
        return r;
    if (all_done(q, 0))
        return 0;
    if (timeout_ms == MP_NOWAIT)
        return -EAGAIN;
    /* No spin: join waits for whole tasks, which take far longer than a spin. */
    return mp__queue_wait(q, &q->h->unf, NULL, all_done, 0, 0, &dl);
}

/* ---- in place (the manager's heap) -------------------------------------------------------------
 * The same header and ring as an own segment, built in memory the caller owns: the header
 * first, then the ring on the next cache line. The handle's seg stays empty (fd -1), so
 * mp_queue_close frees only the handle. The ring size is rounded as mp_queue_open rounds it. */

static int
inplace_capacity(const mp_queue_opts *opts, uint64_t *cap)
{
    static const mp_queue_opts defaults;
    if (opts == NULL)
        opts = &defaults;
    uint64_t c = opts->capacity == 0 ? DEFAULT_CAPACITY : opts->capacity;
    if (c > MAX_CAPACITY || opts->maxsize > SEQ_MASK / 2)
        return -EINVAL;
    if (c < MIN_CAPACITY)
        c = MIN_CAPACITY;
    while (c & (c - 1))
        c += c & -c;
    *cap = c;
    return 0;
}

#define INPLACE_HDR ((sizeof(struct qhdr) + CACHELINE - 1) & ~(size_t)(CACHELINE - 1))

int
mp__queue_size_at(const mp_queue_opts *opts, size_t *size, size_t *capacity)
{
    uint64_t cap;
    if (size == NULL || capacity == NULL)
        return -EINVAL;
    int r = inplace_capacity(opts, &cap);
    if (r != 0)
        return r;
    *size = INPLACE_HDR + (size_t)cap;
    *capacity = (size_t)cap;
    return 0;
}

int
mp__queue_init_at(void *mem, const mp_queue_opts *opts)
{
    uint64_t cap;
    if (mem == NULL || ((uintptr_t)mem & (alignof(struct qhdr) - 1)) != 0)
        return -EINVAL;
    /* Unrelated processes that attach the region cannot inherit an eventfd. */
    if (opts != NULL && opts->fileno)
        return -ENOTSUP;
    int r = inplace_capacity(opts, &cap);
    if (r != 0)
        return r;
    struct qhdr *h = mem;
    memset(h, 0, sizeof *h);
    h->maxsize = opts != NULL ? opts->maxsize : 0;
    h->joinable = opts != NULL && opts->joinable;
    if ((r = mp__mutex_init(&h->plock)) < 0 || (r = mp__mutex_init(&h->clock)) < 0)
        return r;
    return 0;
}

int
mp__queue_wrap(mp_queue **out, void *mem, size_t capacity)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    if (mem == NULL || capacity < MIN_CAPACITY || (capacity & (capacity - 1)))
        return -EINVAL;
    mp_queue *q = mp__calloc(1, sizeof *q);
    if (q == NULL)
        return -ENOMEM;
    q->seg.fd = -1;
    q->efd = -1;
    q->h = mem;
    q->ring = (unsigned char *)mem + INPLACE_HDR;
    q->cap = capacity;
    q->mask = capacity - 1;
    q->spin = mp_cpu_count() > 1;
    atomic_init(&q->spin_get, 256);
    atomic_init(&q->spin_put, 256);
    *out = q;
    return 0;
}

void
mp__queue_pin(mp_queue *q, mp__pin pin)
{
    q->pin = pin;
}
