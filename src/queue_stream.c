/*
 * queue_stream.c - mp_queue messages larger than the ring: streamed through it in chunks
 * [u64 n | ABORT][n bytes], with the producer lock held for the whole message on one side and
 * the consumer lock on the other. See queue.h for the layout and the crash-safety argument.
 */
#include "queue.h"

/* Bytes published beyond ring position `arg` (a consumer inside a stream). */
static bool
has_bytes(mp_queue *q, uint64_t arg)
{
    return w_pos(atomic_load(&q->h->tail)) != arg; /* seq_cst: see wake() */
}

/* With plock held and STREAM set on the tail: the stream's producer is gone (dead, or it gave
 * up at its deadline). Append an ABORT chunk into the 8 bytes every stream keeps free and end
 * the stream; consumers discard the partial message. */
void
mp__queue_abort(mp_queue *q)
{
    struct qhdr *h = q->h;
    uint64_t t = atomic_load_explicit(&h->tail, memory_order_relaxed);
    if (MP__UNLIKELY(w_pos(t) & 7))
        return; /* a scribbled tail: the caller's own check reports it */
    *ring_word(q, w_pos(t)) = CHUNK_ABORT;
    publish(&h->tail, w_make(w_pos(t) + HDR, w_seq(t), 0));
    if (h->joinable)
        mp__queue_task_drop(q);
    wake(&h->ne);
}

/* A consumer waiting for the next chunk: is the stream's producer still there? trylock
 * cannot block, and EOWNERDEAD tells us the holder died. */
void
mp__queue_probe_producer(mp_queue *q)
{
    struct qhdr *h = q->h;
    int r = pthread_mutex_trylock(&h->plock);
    if (r != 0 && r != EOWNERDEAD)
        return;
    if (r == EOWNERDEAD) {
        mp__queue_repair(q);
        mp__mutex_consistent(&h->plock);
    }
    if (atomic_load_explicit(&h->tail, memory_order_relaxed) & F_STREAM)
        mp__queue_abort(q);
    mp__mutex_unlock(&h->plock);
}

/* With plock held: write a message larger than the ring, chunk by chunk as consumers make
 * room. A timeout or signal aborts it (consumers discard what they got). 0 or -errno
 * (-EBADMSG for a scribbled head, see queue.h). */
int
mp__queue_put_stream(mp_queue *q, const unsigned char *data, size_t len, const mp__deadline *dl)
{
    struct qhdr *h = q->h;
    uint64_t t;
    int r;
    /* The message header plus the 8 bytes kept for an ABORT chunk. */
    for (;;) {
        t = atomic_load_explicit(&h->tail, memory_order_relaxed);
        if (mp__queue_room_locked(q, t, (2 * HDR) | NEED_COUNT))
            break;
        if ((r = mp__queue_put_wait(q, (2 * HDR) | NEED_COUNT, dl)) < 0)
            return r;
    }
    *ring_word(q, w_pos(t)) = len;
    uint64_t nt = w_make(w_pos(t) + HDR, w_seq(t) + 1, F_STREAM);
    mp__queue_publish(q, t, nt);
    wake(&h->ne);
    uint64_t chunk_max = q->cap / 4;
    size_t off = 0;
    while (off < len) {
        t = nt;
        uint64_t rem = len - off, want = pad8(rem) < chunk_max ? pad8(rem) : chunk_max;
        while (!mp__queue_room_locked(q, t, 2 * HDR + want)) {
            if ((r = mp__queue_put_wait(q, 2 * HDR + want, dl)) < 0) {
                mp__queue_abort(q);
                return r;
            }
        }
        /* The chunk is sized from the free bytes: a head more than a ring behind (a scribbled
         * header, see queue.h) would make it longer than the ring. */
        uint64_t used = w_used(t, atomic_load_explicit(&h->head_cache, memory_order_relaxed));
        if (MP__UNLIKELY(used > q->cap)) {
            mp__queue_abort(q);
            return -EBADMSG;
        }
        uint64_t room = (q->cap - used - 2 * HDR) & ~(uint64_t)7;
        uint64_t n = pad8(rem) <= room ? rem : (room < chunk_max ? room : chunk_max);
        *ring_word(q, w_pos(t)) = n;
        ring_write(q, w_pos(t) + HDR, data + off, n);
        off += n;
        nt = w_make(w_pos(t) + HDR + pad8(n), w_seq(t), off < len ? F_STREAM : 0);
        publish(&h->tail, nt);
        wake(&h->ne);
        if (off < len)
            mp__fault("queue.stream.chunk");
    }
    return 0;
}

/* Record where this stream will stand after the next head store, in the slot that is not
 * current, then make it current. A consumer killed between this and the head store leaves
 * head at the other slot's position, so the repairer can tell which record holds. */
static void
stream_record(struct qhdr *h, uint64_t at, uint64_t left)
{
    uint32_t next = (atomic_load_explicit(&h->c_cur, memory_order_relaxed) ^ 1) & 1;
    atomic_store_explicit(&h->c_at[next], w_pos(at), memory_order_release);
    atomic_store_explicit(&h->c_left[next], left, memory_order_release);
    atomic_store_explicit(&h->c_cur, next, memory_order_release);
}

static void
advance_head(mp_queue *q, uint64_t nh)
{
    publish(&q->h->head, nh);
    wake(&q->h->nf);
}

/* Take (dst != NULL) or skip (dst == NULL) the rest of a stream whose `left` payload bytes
 * follow the head. Clock held. STREAM_DONE, STREAM_DISCARDED (its producer aborted it),
 * -ETIMEDOUT or -EINTR (the record stays active: the next consumer skips the rest), -EBADMSG
 * for chunks that do not add up (see queue.h). */
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
            int r =
                mp__queue_wait(q, &h->ne, &q->spin_get, has_bytes, w_pos(hw), w_pos(hw), &slice);
            if (r == -EINTR)
                return r;
            if (r == -ETIMEDOUT) {
                /* Probe also when the caller's own deadline ended the wait: with timeouts
                 * shorter than LIVENESS_NS no slice would ever end first, and a dead
                 * producer's stream would block every consumer for good. An ABORT chunk the
                 * probe appends is taken at once, deadline or not. */
                mp__queue_probe_producer(q);
                if (mp__deadline_passed(dl) && !has_bytes(q, w_pos(hw)))
                    return r;
            }
            continue;
        }
        uint64_t avail = w_used(atomic_load_explicit(&h->tail, memory_order_acquire), hw);
        if (MP__UNLIKELY((hw & 7) != 0 || avail > q->cap))
            return -EBADMSG;
        uint64_t ch = *ring_word(q, w_pos(hw));
        if (ch & CHUNK_ABORT) {
            stream_record(h, w_pos(hw) + HDR, 0);
            advance_head(q, w_make(w_pos(hw) + HDR, done_seq, 0));
            atomic_store_explicit(&h->c_active, 0, memory_order_release);
            return STREAM_DISCARDED;
        }
        /* A chunk is published whole and never exceeds what is left of its message. */
        if (MP__UNLIKELY(ch > left || HDR + pad8(ch) > avail))
            return -EBADMSG;
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
                mp__queue_task_drop(q);
            return STREAM_DONE;
        }
        mp__fault("queue.stream.chunk");
    }
}

/* With clock held and a stream record active: a consumer died or gave up inside a stream.
 * Work out how much is left from the record that matches the head, and skip it. 0, an error
 * as stream_run's, or -EBADMSG when no record matches (see queue.h). */
int
mp__queue_stream_resume(mp_queue *q, const mp__deadline *dl)
{
    struct qhdr *h = q->h;
    uint64_t hpos = w_pos(atomic_load(&h->head));
    uint32_t cur = atomic_load(&h->c_cur);
    uint64_t left;
    if (MP__UNLIKELY(cur > 1))
        return -EBADMSG;
    if (atomic_load(&h->c_at[cur]) == hpos)
        left = atomic_load(&h->c_left[cur]);
    else if (atomic_load(&h->c_at[cur ^ 1]) == hpos)
        left = atomic_load(&h->c_left[cur ^ 1]);
    else
        return -EBADMSG;
    /* Nothing was taken yet (the message stays), or the last store already finished it. */
    if (left == LEFT_UNSTARTED || left == 0) {
        atomic_store(&h->c_active, 0);
        return 0;
    }
    int r = stream_run(q, NULL, left, dl);
    return r < 0 ? r : 0;
}

/* With clock held and a streamed message of `len` bytes at the head (its length word
 * checked against the tail): 1, with the ring position just past its ABORT chunk in *end, if
 * the published part of it ends in one; 0 if not; -EBADMSG for chunks that do not add up. The
 * walk stays within the published bytes, so it ends within a ring's worth of chunks. */
static int
stream_aborted(mp_queue *q, uint64_t hw, uint64_t len, uint64_t *end)
{
    uint64_t pos = w_pos(hw) + HDR;
    uint64_t avail = w_used(atomic_load_explicit(&q->h->tail, memory_order_acquire), pos);
    if (MP__UNLIKELY(avail > q->cap))
        return -EBADMSG;
    while (len > 0 && avail > 0) {
        uint64_t ch = *ring_word(q, pos);
        if (ch & CHUNK_ABORT) {
            *end = pos + HDR;
            return 1;
        }
        if (MP__UNLIKELY(ch > len || HDR + pad8(ch) > avail))
            return -EBADMSG;
        pos += HDR + pad8(ch);
        avail -= HDR + pad8(ch);
        len -= ch;
    }
    return 0;
}

/* With clock held and a streamed message of `len` bytes at the head that this call will not
 * take: if its producer is gone and the stream was aborted, it is nobody's message. Drop it
 * (1) so the caller looks at the next one; 0 if it stays; -EBADMSG as stream_aborted. */
int
mp__queue_stream_drop_aborted(mp_queue *q, uint64_t hw, uint64_t len)
{
    mp__queue_probe_producer(q);
    uint64_t end;
    int r = stream_aborted(q, hw, len, &end);
    if (r == 1)
        publish(&q->h->head, w_make(end, w_seq(hw) + 1, 0));
    return r;
}

/* With clock held and a streamed message of `len` bytes at the head: take it into dst (which
 * has room for len bytes). From the first head store on, a crash or a timeout loses it.
 * STREAM_DONE, STREAM_DISCARDED or a negative error, as stream_run. */
int
mp__queue_stream_take(mp_queue *q, uint64_t hw, uint64_t len, unsigned char *dst,
                      const mp__deadline *dl)
{
    struct qhdr *h = q->h;
    atomic_store(&h->c_at[0], w_pos(hw));
    atomic_store(&h->c_left[0], LEFT_UNSTARTED);
    atomic_store(&h->c_cur, 0);
    atomic_store(&h->c_active, 1);
    stream_record(h, w_pos(hw) + HDR, len);
    advance_head(q, w_make(w_pos(hw) + HDR, w_seq(hw), 0));
    return stream_run(q, dst, len, dl);
}
