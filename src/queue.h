/*
 * queue.h - the shared layout of an mp_queue, private to queue.c and queue_stream.c.
 *
 * mp_queue: Python's Queue, SimpleQueue and JoinableQueue in one shared segment.
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
 *  - A waker killed after its publish but before its futex wake (perhaps having disarmed the
 *    wait queue, so that later publishes wake nobody either) leaves sleepers beside a ready
 *    queue: sleepers therefore sleep in slices of 50 ms growing to WAKE_SLICE_MAX_NS, re-arm
 *    and look again, and notice within one slice.
 *  - A consumer records its place in a stream (two slots, flipped before each head store) so
 *    that the next consumer, finding the record active, can tell exactly how much of the
 *    message is left and skip it.
 *  - The readiness eventfd (mp_queue_fileno) is never missing while a message is queued: a
 *    producer raises it under plock before the tail store that publishes a message, and a
 *    consumer clears it only while holding clock and plock (so no put is in flight) and seeing
 *    the queue empty; fd_ready mirrors it (0 implies a zero counter). Whoever takes plock
 *    after its holder died raises it unconditionally. A readiness left over from a death
 *    (raised, never published) is cleared by the next get that finds the queue empty.
 *    A clear needs both locks, taken with trylock; when one is busy, its holder looks again
 *    after its release (a full fence on both sides), so the last releaser clears.
 *  - JoinableQueue: the unfinished count is raised before the message is published; a record
 *    of the tail at that moment lets a repairing producer undo the raise if the publish never
 *    happened. A message that is dropped (aborted or skipped) is counted as done.
 *
 * A scribbled header. No crash produces words that contradict each other, but a wild write
 * in some process can. Every word that decides where the ring is read or written is checked
 * against the invariants before it is used: positions 8-aligned, the bytes between head and
 * tail at most the ring, a frame or chunk within the bytes published, a chunk within what is
 * left of its message, a record slot 0 or 1 that matches the head. A call that finds one
 * broken returns -EBADMSG and moves nothing, so no access leaves the ring and no walk runs
 * past the tail; the checks are a few compares of words already loaded. Words that only
 * count (sequence numbers, maxsize, waiter counts, the task count) can make answers wrong but
 * cannot make an access go astray.
 */
#ifndef MPIPC_QUEUE_H
#define MPIPC_QUEUE_H

#include "internal.h"

#include <stdalign.h>
#include <string.h>

#define CACHELINE 128 /* apart by a cache line and its adjacent-line prefetch partner */
#define POS_MASK ((UINT64_C(1) << 33) - 1)
#define SEQ_SHIFT 33
#define SEQ_MASK ((UINT32_C(1) << 30) - 1)
#define F_STREAM (UINT64_C(1) << 63)
#define CHUNK_ABORT (UINT64_C(1) << 63)
#define HDR 8u
#define MIN_CAPACITY 64u
#define MAX_CAPACITY (UINT64_C(1) << 32)
#define DEFAULT_CAPACITY (UINT64_C(4) << 20)
#define LEFT_UNSTARTED UINT64_MAX
#define LIVENESS_NS (50 * 1000000LL)
#define WAKE_SLICE_MAX_NS (1000 * 1000000LL) /* the longest sleep between two looks */
#define NOWAIT_LOCK_NS (50 * 1000000LL)
#define SPIN_MIN 400u /* about 10 us of pauses: a peer that is running answers within it */
#define SPIN_MAX 2000u
#define LOCK_SPIN 32 /* spaced trylocks (about 5 us) before sleeping on a busy lock */

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
    _Atomic uint32_t fd_ready; /* the eventfd's counter is non-zero (queues with a fileno) */

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
    int efd;                             /* the readiness eventfd, or -1 */
    bool spin;                           /* more than one CPU: spinning can pay off */
    _Atomic unsigned spin_get, spin_put; /* adaptive spin estimates of this process */
    mp__pin pin;                         /* in place: dropped by the close */
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

static inline void
ring_write(mp_queue *q, uint64_t pos, const void *src, size_t n)
{
    if (n == 0)
        return; /* src may be NULL */
    size_t off = pos & q->mask, first = q->cap - off < n ? q->cap - off : n;
    memcpy(q->ring + off, src, first);
    if (n > first)
        memcpy(q->ring, (const unsigned char *)src + first, n - first);
}

static inline void
ring_read(mp_queue *q, uint64_t pos, void *dst, size_t n)
{
    if (dst == NULL || n == 0)
        return;
    size_t off = pos & q->mask, first = q->cap - off < n ? q->cap - off : n;
    memcpy(dst, q->ring + off, first);
    if (n > first)
        memcpy((unsigned char *)dst + first, q->ring, n - first);
}

/* ---- waking and waiting ------------------------------------------------------------------- */

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* publish - store a new tail or head word. It is an exchange, a seq_cst read-modify-write,
 * so that wake() can then look at the waiter count with plain seq_cst loads: one locked
 * instruction per message on x86 rather than a release store and a separate full fence. */
static inline void
publish(_Atomic uint64_t *word, uint64_t v)
{
    (void)atomic_exchange(word, v);
}

/* wake - called after publish(): wake the sleepers of `w`, but only when its waiter count says
 * there are any, so the fast path makes no syscall, and only once per round of sleepers
 * (`armed`). The publish and the loads here are seq_cst; a sleeper raises the count and arms
 * (seq_cst RMWs) and then checks its condition with a seq_cst load of the published word. In
 * the single order of seq_cst operations either the publish comes before that check (the
 * sleeper sees it) or the sleeper's raise comes before these loads (the waker sees it). A
 * sleeper that arms after the waker disarmed checks the condition after that, so it sees the
 * publish too. */
static inline void
wake(struct waitq *w)
{
    if (atomic_load(&w->waiters) != 0 && atomic_load(&w->armed) != 0 &&
        atomic_exchange(&w->armed, 0) != 0) {
        mp__fault("queue.wake.disarmed");
        atomic_fetch_add_explicit(&w->word, 1, memory_order_release);
        mp__futex_wake(&w->word, INT32_MAX);
    }
}

/* Room for `need` bytes (and, with COUNT set, one more message under maxsize). */
#define NEED_COUNT (UINT64_C(1) << 63)

static inline bool
room_in(mp_queue *q, uint64_t t, uint64_t h, uint64_t arg)
{
    uint64_t need = arg & ~NEED_COUNT;
    if (q->cap - w_used(t, h) < need)
        return false;
    return !(arg & NEED_COUNT) || q->h->maxsize == 0 || w_count(t, h) < q->h->maxsize;
}

typedef bool (*mp__queue_ready)(mp_queue *q, uint64_t arg);

/* queue.c */
int mp__queue_wait(mp_queue *q, struct waitq *w, _Atomic unsigned *est, mp__queue_ready ready,
                   uint64_t arg, uint64_t spin_arg, const mp__deadline *dl);
bool mp__queue_room_locked(mp_queue *q, uint64_t t, uint64_t arg);
int mp__queue_put_wait(mp_queue *q, uint64_t need, const mp__deadline *dl);
void mp__queue_publish(mp_queue *q, uint64_t old, uint64_t neww);
int mp__queue_task_drop(mp_queue *q);
void mp__queue_repair(mp_queue *q);

/* queue_stream.c: messages larger than the ring */
void mp__queue_abort(mp_queue *q);
void mp__queue_probe_producer(mp_queue *q);
int mp__queue_put_stream(mp_queue *q, const unsigned char *data, size_t len,
                         const mp__deadline *dl);
int mp__queue_stream_take(mp_queue *q, uint64_t hw, uint64_t len, unsigned char *dst,
                          const mp__deadline *dl);
int mp__queue_stream_resume(mp_queue *q, const mp__deadline *dl);
int mp__queue_stream_drop_aborted(mp_queue *q, uint64_t hw, uint64_t len);

#endif
