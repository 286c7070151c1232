/*
 * queue.c - mp_queue: Python's Queue, SimpleQueue and JoinableQueue in one shared segment.
 *
 * Layout. One memfd segment holds a header and a byte ring whose capacity is a power of two.
 * Producers serialise on a robust producer lock (plock), consumers on a robust consumer lock
 * (clock), so one producer and one consumer run in parallel without touching each other's
 * lock. The positions are two 64-bit words, each published with one release store:
 *
 *   tail = ring position (33 bits) | messages started (30 bits) | STREAM flag (bit 63)
 *   head = ring position (33 bits) | messages finished (30 bits)
 *
 * Packing the message count beside the position makes a publish a single store, so a process
 * killed between "bytes visible" and "message counted" cannot exist, and qsize() is exact.
 *
 * Frames are 8-byte aligned: [u64 length][payload, padded to 8]. A message whose frame does not
 * fit the ring is streamed: [u64 length] followed by chunks [u64 n | ABORT][n bytes, padded].
 * The producer holds plock for the whole stream and the consumer holds clock, so streams never
 * interleave.
 *
 * Crash safety, step by step:
 *  - A fitting message is copied first and published by the tail store: a producer killed
 *    before the store leaves only unpublished bytes, which the next producer overwrites.
 *  - A consumer copies out first and advances head afterwards: killed before the store, the
 *    message stays queued; after it, the message is gone ("got it or left it").
 *  - While a stream is open the tail carries STREAM. Whoever next holds plock and sees STREAM
 *    knows the stream's producer is gone (it would still hold plock) and appends an ABORT chunk.
 *    Producers always leave 8 free bytes while streaming, so the ABORT chunk fits without
 *    waiting. Consumers waiting for a chunk probe plock every LIVENESS_NS with trylock, so a
 *    producer that died mid-stream is noticed within that time.
 *  - A consumer records its place in a stream (two slots, flipped before each head store) so
 *    that the next consumer, finding the record active, can tell exactly how much of the
 *    message is left and skip it.
 *  - JoinableQueue: the unfinished count is raised before the message is published; a record
 *    of the tail at that moment lets a repairing producer undo the raise if the publish never
 *    happened. A message that is dropped (aborted or skipped) is counted as done.
 */
#include "internal.h"

#include <stdalign.h>
#include <string.h>
#include <unistd.h>

#define CACHELINE 64
#define POS_MASK ((UINT64_C(1) << 33) - 1)
#define SEQ_SHIFT 33
#define SEQ_MASK ((UINT32_C(1) << 30) - 1)
#define F_STREAM (UINT64_C(1) << 63)
#define CHUNK_ABORT (UINT64_C(1) << 63)
#define HDR 8u
#define MIN_CAPACITY 64u
#define MAX_CAPACITY (UINT64_C(1) << 32)
#define DEFAULT_CAPACITY (UINT64_C(1) << 20)
#define LEFT_UNSTARTED UINT64_MAX
#define LIVENESS_NS (50 * 1000000LL)
#define NOWAIT_LOCK_NS (50 * 1000000LL)
#define SPIN_MIN 400u /* about 10 us of pauses: a peer that is running answers within it */
#define SPIN_MAX 2000u

enum { STREAM_DONE = 0, STREAM_DISCARDED = 1 };

/* A futex word with its sleepers: `waiters` counts them; `armed` is set by each sleeper and
 * cleared by the waker that issues the futex wake, so that while woken sleepers are still on
 * their way out of the kernel further publishes do not wake them again. */
struct waitq {
    _Atomic uint32_t word, waiters, armed;
};

struct qhdr {
    /* Set at open, read-only afterwards. */
    alignas(CACHELINE) uint64_t maxsize;
    uint32_t joinable;

    alignas(CACHELINE) pthread_mutex_t plock;
    /* Producer side, written only under plock. */
    alignas(CACHELINE) _Atomic uint64_t tail;
    _Atomic uint64_t head_cache; /* a recent head, so a put rarely reads the consumers' line */
    _Atomic uint64_t rec_tail;   /* JoinableQueue: tail before the publish in progress */
    _Atomic uint32_t rec_active;

    alignas(CACHELINE) pthread_mutex_t clock;
    /* Consumer side, written only under clock. */
    alignas(CACHELINE) _Atomic uint64_t head;
    _Atomic uint64_t tail_cache;
    _Atomic uint32_t c_active, c_cur; /* a stream is being taken; which record slot is current */
    _Atomic uint64_t c_at[2], c_left[2];

    alignas(CACHELINE) struct waitq ne; /* "not empty" */
    alignas(CACHELINE) struct waitq nf; /* "not full" */
    alignas(CACHELINE) _Atomic uint64_t unfinished;
    struct waitq unf; /* "all tasks done" */
};

struct mp_queue {
    mp__seg seg;
    struct qhdr *h;
    unsigned char *ring;
    uint64_t cap, mask;
    bool spin;                      /* more than one CPU: spinning can pay off */
    _Atomic unsigned spin_get, spin_put; /* adaptive spin estimates of this process */
};

/* ---- words and ring ----------------------------------------------------------------------- */

static inline uint64_t
w_pos(uint64_t w)
{
    return w & POS_MASK;
}

static inline uint32_t
w_seq(uint64_t w)
{
    return (uint32_t)(w >> SEQ_SHIFT) & SEQ_MASK;
}

static inline uint64_t
w_make(uint64_t pos, uint32_t seq, uint64_t flags)
{
    return (pos & POS_MASK) | ((uint64_t)(seq & SEQ_MASK) << SEQ_SHIFT) | flags;
}

static inline uint64_t
pad8(uint64_t n)
{
    return (n + 7) & ~(uint64_t)7;
}

/* Bytes in use and messages queued between a head and a tail word. */
static inline uint64_t
w_used(uint64_t t, uint64_t h)
{
    return (w_pos(t) - w_pos(h)) & POS_MASK;
}

static inline uint32_t
w_count(uint64_t t, uint64_t h)
{
    return (w_seq(t) - w_seq(h)) & SEQ_MASK;
}

static inline uint64_t *
ring_word(mp_queue *q, uint64_t pos)
{
    return (uint64_t *)(void *)(q->ring + (pos & q->mask));
}

static void
ring_write(mp_queue *q, uint64_t pos, const void *src, size_t n)
{
    if (n == 0)
        return; /* src may be NULL */
    size_t off = pos & q->mask, first = q->cap - off < n ? q->cap - off : n;
    memcpy(q->ring + off, src, first);
    if (n > first)
        memcpy(q->ring, (const unsigned char *)src + first, n - first);
}

static void
ring_read(mp_queue *q, uint64_t pos, void *dst, size_t n)
{
    if (dst == NULL || n == 0)
        return;
    size_t off = pos & q->mask, first = q->cap - off < n ? q->cap - off : n;
    memcpy(dst, q->ring + off, first);
    if (n > first)
        memcpy((unsigned char *)dst + first, q->ring, n - first);
}

/* ---- waiting: bounded adaptive spin, then a futex word ------------------------------------ */

typedef bool (*ready_fn)(mp_queue *q, uint64_t arg);

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* wake - called after publishing a change: wake the sleepers of `w`, but only when its waiter
 * count says there are any, so the fast path makes no syscall, and only once per round of
 * sleepers (`armed`). The fence orders the publish before the load of the count; sleepers
 * raise the count and arm (seq_cst RMWs) before they check the condition, so either the sleeper
 * sees the publish or the waker sees the sleeper. A sleeper that arms after the waker disarmed
 * checks the condition after that, so it sees the publish too. */
static inline void
wake(struct waitq *w)
{
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&w->waiters, memory_order_relaxed) != 0 &&
        atomic_load_explicit(&w->armed, memory_order_relaxed) != 0 &&
        atomic_exchange(&w->armed, 0) != 0) {
        atomic_fetch_add_explicit(&w->word, 1, memory_order_release);
        mp__futex_wake(&w->word, INT32_MAX);
    }
}

/* wait_for - until ready(q, arg) or the deadline. The spin adapts to how long waits have
 * recently lasted (as glibc's adaptive mutexes do) and never exceeds SPIN_MAX pauses, so on
 * two cores a waiter that spins in vain gives its CPU back quickly; est NULL: no spin.
 * Returns 0, -ETIMEDOUT or -EINTR. */
static int
wait_for(mp_queue *q, struct waitq *w, _Atomic unsigned *est, ready_fn ready, uint64_t arg,
         uint64_t spin_arg, const mp__deadline *dl)
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
    for (;;) {
        uint32_t seq = atomic_load_explicit(&w->word, memory_order_acquire);
        atomic_fetch_add(&w->waiters, 1);
        atomic_exchange(&w->armed, 1);
        bool ok = ready(q, arg);
        int r = ok ? 0 : mp__futex_wait(&w->word, seq, dl);
        atomic_fetch_sub(&w->waiters, 1);
        if (ok || ready(q, arg))
            return 0;
        if (r < 0)
            return r;
        if (mp__deadline_passed(dl))
            return -ETIMEDOUT;
    }
}

/* Room for `need` bytes (and, with COUNT set, one more message under maxsize). */
#define NEED_COUNT (UINT64_C(1) << 63)

static bool
room_in(mp_queue *q, uint64_t t, uint64_t h, uint64_t arg)
{
    uint64_t need = arg & ~NEED_COUNT;
    if (q->cap - w_used(t, h) < need)
        return false;
    return !(arg & NEED_COUNT) || q->h->maxsize == 0 || w_count(t, h) < q->h->maxsize;
}

static bool
can_put(mp_queue *q, uint64_t arg)
{
    uint64_t t = atomic_load_explicit(&q->h->tail, memory_order_relaxed);
    uint64_t h = atomic_load_explicit(&q->h->head, memory_order_acquire);
    return room_in(q, t, h, arg);
}

static bool
can_get(mp_queue *q, uint64_t arg)
{
    (void)arg;
    uint64_t h = atomic_load_explicit(&q->h->head, memory_order_relaxed);
    uint64_t t = atomic_load_explicit(&q->h->tail, memory_order_acquire);
    return w_seq(t) != w_seq(h);
}

/* Bytes published beyond ring position `arg` (a consumer inside a stream). */
static bool
has_bytes(mp_queue *q, uint64_t arg)
{
    return w_pos(atomic_load_explicit(&q->h->tail, memory_order_acquire)) != arg;
}

/* Under plock: room for arg, first against the cached head, then against a fresh one. */
static bool
room_locked(mp_queue *q, uint64_t t, uint64_t arg)
{
    struct qhdr *h = q->h;
    if (room_in(q, t, atomic_load_explicit(&h->head_cache, memory_order_relaxed), arg))
        return true;
    uint64_t hw = atomic_load_explicit(&h->head, memory_order_acquire);
    atomic_store_explicit(&h->head_cache, hw, memory_order_relaxed);
    return room_in(q, t, hw, arg);
}

/* ---- JoinableQueue counter ------------------------------------------------------------------ */

/* Lower the unfinished count; -EINVAL (and no change) when it is already 0. */
static int
unfinished_dec(mp_queue *q)
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

/* ---- producer side -------------------------------------------------------------------------- */

/* With plock held and STREAM set on the tail: the stream's producer is gone (dead, or it gave
 * up at its deadline). Append an ABORT chunk into the 8 bytes every stream keeps free and end
 * the stream; consumers discard the partial message. */
static void
producer_abort(mp_queue *q)
{
    struct qhdr *h = q->h;
    uint64_t t = atomic_load_explicit(&h->tail, memory_order_relaxed);
    *ring_word(q, w_pos(t)) = CHUNK_ABORT;
    atomic_store_explicit(&h->tail, w_make(w_pos(t) + HDR, w_seq(t), 0), memory_order_release);
    if (h->joinable)
        unfinished_dec(q);
    wake(&h->ne);
}

/* With plock held after EOWNERDEAD: undo the unfinished raise of a publish that never
 * happened, and end an open stream. Bytes past the tail need nothing: they are not visible. */
static void
producer_repair(mp_queue *q)
{
    struct qhdr *h = q->h;
    if (atomic_load(&h->rec_active)) {
        uint64_t rt = atomic_load(&h->rec_tail);
        atomic_store(&h->rec_active, 0);
        if (atomic_load(&h->tail) == rt)
            unfinished_dec(q);
    }
}

/* Lock a robust mutex: a trylock first (the uncontended fast path), then a wait bounded by the
 * deadline. ThreadSanitizer does not intercept pthread_mutex_clocklock, so under it the timed
 * wait polls trylock instead, which it does understand. */
#if defined(__SANITIZE_THREAD__)
#define QUEUE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define QUEUE_TSAN 1
#endif
#endif

static int
lock_robust(pthread_mutex_t *m, const mp__deadline *dl)
{
    int r = pthread_mutex_trylock(m);
    if (r == 0)
        return 0;
    if (r == EOWNERDEAD)
        return MP_OWNERDEAD;
    if (r != EBUSY)
        return -r;
#if defined(QUEUE_TSAN)
    if (!mp__deadline_forever(dl)) {
        while ((r = pthread_mutex_trylock(m)) == EBUSY) {
            if (mp__deadline_passed(dl))
                return -ETIMEDOUT;
            nanosleep(&(struct timespec){0, 100000}, NULL);
        }
        return r == EOWNERDEAD ? MP_OWNERDEAD : -r;
    }
#endif
    return mp__mutex_lock(m, dl);
}

static int
lock_producer(mp_queue *q, const mp__deadline *dl)
{
    struct qhdr *h = q->h;
    int r = lock_robust(&h->plock, dl);
    if (r < 0)
        return r;
    if (r == MP_OWNERDEAD) {
        producer_repair(q);
        mp__mutex_consistent(&h->plock);
    }
    if (atomic_load_explicit(&h->tail, memory_order_relaxed) & F_STREAM)
        producer_abort(q);
    return 0;
}

/* A consumer waiting for the next chunk: is the stream's producer still there? trylock
 * cannot block, and EOWNERDEAD tells us the holder died. */
static void
probe_producer(mp_queue *q)
{
    struct qhdr *h = q->h;
    int r = pthread_mutex_trylock(&h->plock);
    if (r != 0 && r != EOWNERDEAD)
        return;
    if (r == EOWNERDEAD) {
        producer_repair(q);
        mp__mutex_consistent(&h->plock);
    }
    if (atomic_load_explicit(&h->tail, memory_order_relaxed) & F_STREAM)
        producer_abort(q);
    mp__mutex_unlock(&h->plock);
}

/* Publish the tail that makes a new message visible. A JoinableQueue raises the unfinished
 * count first, with a record that lets a repairer undo the raise if this process dies before
 * the store. */
static void
publish_message(mp_queue *q, uint64_t old, uint64_t neww)
{
    struct qhdr *h = q->h;
    if (h->joinable) {
        atomic_store(&h->rec_tail, old);
        atomic_store(&h->rec_active, 1);
        atomic_fetch_add(&h->unfinished, 1);
        mp__fault("queue.put.counted");
        atomic_store_explicit(&h->tail, neww, memory_order_release);
        atomic_store_explicit(&h->rec_active, 0, memory_order_release);
    } else {
        atomic_store_explicit(&h->tail, neww, memory_order_release);
    }
}

static int
put_wait(mp_queue *q, uint64_t need, const mp__deadline *dl)
{
    /* Spin for a quarter of the ring rather than for one frame: a producer that resumes as
     * soon as one frame is free keeps writing the cache lines its consumer is reading. */
    uint64_t far = (need & ~NEED_COUNT) > q->cap / 4 ? need : (q->cap / 4) | (need & NEED_COUNT);
    return wait_for(q, &q->h->nf, &q->spin_put, can_put, need, far, dl);
}

static int
put_stream(mp_queue *q, const unsigned char *data, size_t len, const mp__deadline *dl)
{
    struct qhdr *h = q->h;
    uint64_t t;
    int r;
    /* The message header plus the 8 bytes kept for an ABORT chunk. */
    for (;;) {
        t = atomic_load_explicit(&h->tail, memory_order_relaxed);
        if (room_locked(q, t, (2 * HDR) | NEED_COUNT))
            break;
        if ((r = put_wait(q, (2 * HDR) | NEED_COUNT, dl)) < 0)
            return r;
    }
    *ring_word(q, w_pos(t)) = len;
    uint64_t nt = w_make(w_pos(t) + HDR, w_seq(t) + 1, F_STREAM);
    publish_message(q, t, nt);
    wake(&h->ne);
    uint64_t chunk_max = q->cap / 4;
    size_t off = 0;
    while (off < len) {
        t = nt;
        uint64_t rem = len - off, want = pad8(rem) < chunk_max ? pad8(rem) : chunk_max;
        while (!room_locked(q, t, 2 * HDR + want)) {
            if ((r = put_wait(q, 2 * HDR + want, dl)) < 0) {
                producer_abort(q);
                return r;
            }
        }
        uint64_t free = q->cap - w_used(t, atomic_load_explicit(&h->head_cache,
                                                                memory_order_relaxed));
        uint64_t room = (free - 2 * HDR) & ~(uint64_t)7;
        uint64_t n = pad8(rem) <= room ? rem : (room < chunk_max ? room : chunk_max);
        *ring_word(q, w_pos(t)) = n;
        ring_write(q, w_pos(t) + HDR, data + off, n);
        off += n;
        nt = w_make(w_pos(t) + HDR + pad8(n), w_seq(t), off < len ? F_STREAM : 0);
        atomic_store_explicit(&h->tail, nt, memory_order_release);
        wake(&h->ne);
        if (off < len)
            mp__fault("queue.stream.chunk");
    }
    return 0;
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
            r = put_stream(q, data, len, &dl);
            mp__mutex_unlock(&h->plock);
            return r == -ETIMEDOUT && nowait ? -EAGAIN : r;
        }
        t = atomic_load_explicit(&h->tail, memory_order_relaxed);
        if (room_locked(q, t, frame | NEED_COUNT))
            break;
        mp__mutex_unlock(&h->plock);
        if (nowait)
            return -EAGAIN;
        if ((r = put_wait(q, frame | NEED_COUNT, &dl)) < 0)
            return r;
        ld = dl;
    }
    *ring_word(q, w_pos(t)) = len;
    ring_write(q, w_pos(t) + HDR, data, len);
    mp__fault("queue.put.copied");
    publish_message(q, t, w_make(w_pos(t) + frame, w_seq(t) + 1, 0));
    mp__mutex_unlock(&h->plock);
    wake(&h->ne);
    return 0;
}

/* ---- consumer side -------------------------------------------------------------------------- */

/* Record where this stream will stand after the next head store, in the slot that is not
 * current, then make it current. A consumer killed between this and the head store leaves
 * head at the other slot's position, so the repairer can tell which record holds. */
static void
stream_record(struct qhdr *h, uint64_t at, uint64_t left)
{
    uint32_t next = atomic_load_explicit(&h->c_cur, memory_order_relaxed) ^ 1;
    atomic_store_explicit(&h->c_at[next], w_pos(at), memory_order_release);
    atomic_store_explicit(&h->c_left[next], left, memory_order_release);
    atomic_store_explicit(&h->c_cur, next, memory_order_release);
}

static void
advance_head(mp_queue *q, uint64_t nh)
{
    atomic_store_explicit(&q->h->head, nh, memory_order_release);
    wake(&q->h->nf);
}

/* Take (dst != NULL) or skip (dst == NULL) the rest of a stream whose `left` payload bytes
 * follow the head. Clock held. STREAM_DONE, STREAM_DISCARDED (its producer aborted it),
 * -ETIMEDOUT or -EINTR (the record stays active: the next consumer skips the rest). */
static int
stream_run(mp_queue *q, unsigned char *dst, uint64_t left, const mp__deadline *dl)
{
    struct qhdr *h = q->h;
    size_t off = 0;
    for (;;) {
        uint64_t hw = atomic_load_explicit(&h->head, memory_order_relaxed);
        uint32_t done_seq = w_seq(hw) + 1;
        if (!has_bytes(q, w_pos(hw))) {
            mp__deadline slice = {mp__now_ns() + LIVENESS_NS};
            if (slice.abs_ns > dl->abs_ns)
                slice = *dl;
            int r = wait_for(q, &h->ne, &q->spin_get, has_bytes,
                             w_pos(hw), w_pos(hw), &slice);
            if (r == -EINTR || (r == -ETIMEDOUT && mp__deadline_passed(dl)))
                return r;
            if (r == -ETIMEDOUT)
                probe_producer(q);
            continue;
        }
        uint64_t ch = *ring_word(q, w_pos(hw));
        if (ch & CHUNK_ABORT) {
            stream_record(h, w_pos(hw) + HDR, 0);
            advance_head(q, w_make(w_pos(hw) + HDR, done_seq, 0));
            atomic_store_explicit(&h->c_active, 0, memory_order_release);
            return STREAM_DISCARDED;
        }
        if (ch > left)
            mp__panic("mp_queue: chunk of %llu bytes in a stream with %llu left",
                      (unsigned long long)ch, (unsigned long long)left);
        ring_read(q, w_pos(hw) + HDR, dst != NULL ? dst + off : NULL, ch);
        off += ch;
        left -= ch;
        uint64_t at = w_pos(hw) + HDR + pad8(ch);
        stream_record(h, at, left);
        advance_head(q, w_make(at, left == 0 ? done_seq : w_seq(hw), 0));
        if (left == 0) {
            atomic_store_explicit(&h->c_active, 0, memory_order_release);
            /* A skipped message is never handed to anyone who could call task_done. */
            if (dst == NULL && h->joinable)
                unfinished_dec(q);
            return STREAM_DONE;
        }
        mp__fault("queue.stream.chunk");
    }
}

/* With clock held and a stream record active: a consumer died or gave up inside a stream.
 * Work out how much is left from the record that matches the head, and skip it. */
static int
stream_resume(mp_queue *q, const mp__deadline *dl)
{
    struct qhdr *h = q->h;
    uint64_t hpos = w_pos(atomic_load(&h->head));
    uint32_t cur = atomic_load(&h->c_cur);
    uint64_t left;
    if (atomic_load(&h->c_at[cur]) == hpos)
        left = atomic_load(&h->c_left[cur]);
    else if (atomic_load(&h->c_at[cur ^ 1]) == hpos)
        left = atomic_load(&h->c_left[cur ^ 1]);
    else
        mp__panic("mp_queue: stream record does not match the head");
    /* Nothing was taken yet (the message stays), or the last store already finished it. */
    if (left == LEFT_UNSTARTED || left == 0) {
        atomic_store(&h->c_active, 0);
        return 0;
    }
    int r = stream_run(q, NULL, left, dl);
    return r < 0 ? r : 0;
}

static int
lock_consumer(mp_queue *q, const mp__deadline *dl)
{
    int r = lock_robust(&q->h->clock, dl);
    if (r == MP_OWNERDEAD) {
        /* The consumer state is kept consistent store by store: an interrupted copy left its
         * message in place, and an interrupted stream is resumed from its record. */
        mp__mutex_consistent(&q->h->clock);
        r = 0;
    }
    return r;
}

/* With clock held and a streamed message of `len` bytes at the head: true, with the ring
 * position just past its ABORT chunk in *end, if the published part of it ends in one. */
static bool
stream_aborted(mp_queue *q, uint64_t hw, uint64_t len, uint64_t *end)
{
    uint64_t tpos = w_pos(atomic_load_explicit(&q->h->tail, memory_order_acquire));
    uint64_t pos = w_pos(hw) + HDR;
    while (len > 0 && ((tpos - pos) & POS_MASK) != 0) {
        uint64_t ch = *ring_word(q, pos);
        if (ch & CHUNK_ABORT) {
            *end = pos + HDR;
            return true;
        }
        pos += HDR + pad8(ch);
        len -= ch;
    }
    return false;
}

/* With clock held and a message at the head: take it into buf (or a new buffer when abuf is
 * set). 0, STREAM_DISCARDED (look at the next message), or a negative error. */
static int
take(mp_queue *q, uint64_t hw, void *buf, size_t cap, void **abuf, size_t *lenp,
     const mp__deadline *dl, bool nowait)
{
    struct qhdr *h = q->h;
    uint64_t len = *ring_word(q, w_pos(hw));
    uint64_t frame = HDR + pad8(len);
    *lenp = len;
    unsigned char *dst = buf;
    if (frame > q->cap && ((abuf == NULL && len > cap) || nowait)) {
        /* A streamed message that this call will not take: if its producer is gone and the
         * stream was aborted, it is nobody's message; drop it and look at the next one. */
        probe_producer(q);
        uint64_t end;
        if (stream_aborted(q, hw, len, &end)) {
            atomic_store_explicit(&h->head, w_make(end, w_seq(hw) + 1, 0), memory_order_release);
            return STREAM_DISCARDED;
        }
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
        atomic_store_explicit(&h->head, w_make(w_pos(hw) + frame, w_seq(hw) + 1, 0),
                              memory_order_release);
        r = 0;
    } else {
        /* Take the header: from here on a crash or a timeout loses this message. */
        atomic_store(&h->c_at[0], w_pos(hw));
        atomic_store(&h->c_left[0], LEFT_UNSTARTED);
        atomic_store(&h->c_cur, 0);
        atomic_store(&h->c_active, 1);
        stream_record(h, w_pos(hw) + HDR, len);
        advance_head(q, w_make(w_pos(hw) + HDR, w_seq(hw), 0));
        r = stream_run(q, dst, len, dl);
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
    if (nowait && !can_get(q, 0))
        return -EAGAIN;
    mp__deadline ld = lock_deadline(&dl, nowait);
    for (;;) {
        if ((r = lock_consumer(q, &ld)) < 0)
            return r == -ETIMEDOUT && nowait ? -EAGAIN : r;
        for (;;) {
            if (atomic_load_explicit(&h->c_active, memory_order_relaxed) &&
                (r = stream_resume(q, &dl)) < 0)
                break;
            uint64_t hw = atomic_load_explicit(&h->head, memory_order_relaxed);
            uint64_t t = atomic_load_explicit(&h->tail_cache, memory_order_relaxed);
            if (w_seq(t) == w_seq(hw)) {
                t = atomic_load_explicit(&h->tail, memory_order_acquire);
                atomic_store_explicit(&h->tail_cache, t, memory_order_relaxed);
            }
            if (w_seq(t) == w_seq(hw)) {
                r = -EAGAIN;
                break;
            }
            if ((r = take(q, hw, buf, cap, abuf, lenp, &dl, nowait)) != STREAM_DISCARDED)
                break;
        }
        mp__mutex_unlock(&h->clock);
        if (r != -EAGAIN || nowait) {
            if (r == 0)
                wake(&h->nf);
            return r == -ETIMEDOUT && nowait ? -EAGAIN : r;
        }
        r = wait_for(q, &h->ne, &q->spin_get, can_get, 0, 0, &dl);
        if (r < 0)
            return r;
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

/* ---- open, close, state ----------------------------------------------------------------------- */

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
    q->ring = (unsigned char *)q->seg.addr + hsize;
    q->cap = cap;
    q->mask = cap - 1;
    q->spin = mp_cpu_count() > 1; /* the CPUs this process may run on, not those online */
    atomic_init(&q->spin_get, 256);
    atomic_init(&q->spin_put, 256);
    h->maxsize = opts->maxsize;
    h->joinable = opts->joinable;
    if ((r = mp__mutex_init(&h->plock)) < 0 || (r = mp__mutex_init(&h->clock)) < 0) {
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
    mp__seg_close(&q->seg);
    mp__free(q);
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
    return unfinished_dec(q);
}

static bool
all_done(mp_queue *q, uint64_t arg)
{
    (void)arg;
    return atomic_load_explicit(&q->h->unfinished, memory_order_acquire) == 0;
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
    return wait_for(q, &q->h->unf, NULL, all_done, 0, 0, &dl);
}
