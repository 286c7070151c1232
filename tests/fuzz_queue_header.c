/*
 * fuzz_queue_header.c - libFuzzer target for a queue whose shared header and ring metadata
 * have been scribbled on (src/queue.c, src/queue_stream.c; built with -DMPIPC_FUZZ=ON, clang).
 *
 * Each input builds a fresh queue in place (mp__queue_init_at) in a heap buffer that ends
 * where the ring ends, so that ASan sees any access outside the header and ring; a readiness
 * eventfd is attached when the input asks for one (the in-place constructor offers none). The
 * first bytes pick the ring size (64 B .. 8 KiB), maxsize, joinable and fileno, and the
 * messages put first; the rest is a program of operations: put (fitting or larger than the
 * ring), get into a buffer, get_alloc, qsize/empty/full, task_done/join, each with MP_NOWAIT or
 * a 1 ms timeout (at most a few timed ones per input), and scribbles: any value written over
 * any word of the header except the two robust mutexes (glibc's), or over any 8 bytes of the
 * ring (length and chunk words included).
 *
 * Until the first scribble the queue is checked exactly against a model (every result, every
 * message's bytes, qsize/empty/full, the task count). After it, every call must still return
 * one of its documented results (-EBADMSG among them), a message returned must fit the buffer,
 * no call may hang (libFuzzer's -timeout) or touch memory outside the queue (ASan), and no
 * call may leave a lock held. Seeds: tests/corpus/queue_header (tests/fuzz_seeds.py).
 */
#include "queue.h"

#include <stddef.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

#define MAX_TIMED 4   /* timed calls per input: 1 ms each at most */
#define MAX_MSGS 8192 /* model capacity: more than any input can put */

/* The header words a scribble may hit. */
#define F(field)                                                                                   \
    {                                                                                              \
        offsetof(struct qhdr, field), sizeof(((struct qhdr *)0)->field)                            \
    }
static const struct {
    size_t off, size;
} fields[] = {
    F(maxsize),    F(joinable),   F(tail),     F(head_cache),  F(rec_tail),
    F(rec_active), F(fd_ready),   F(head),     F(tail_cache),  F(c_active),
    F(c_cur),      F(c_at[0]),    F(c_at[1]),  F(c_left[0]),   F(c_left[1]),
    F(ne.word),    F(ne.waiters), F(ne.armed), F(nf.word),     F(nf.waiters),
    F(nf.armed),   F(unfinished), F(unf.word), F(unf.waiters), F(unf.armed),
};

typedef struct input {
    const uint8_t *p, *end;
} input;

static unsigned
next(input *in)
{
    return in->p < in->end ? *in->p++ : 0;
}

static uint64_t
next64(input *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)next(in) << (8 * i);
    return v;
}

/* ---- the model: valid until the first scribble or a stream that timed out ----------------- */

typedef struct model {
    bool ok;
    uint64_t cap, maxsize, used, unfinished;
    bool joinable;
    uint32_t first, count; /* message ids first .. first+count-1 are queued */
    uint32_t ids;          /* the next id */
    size_t len[MAX_MSGS];  /* by id % MAX_MSGS */
} model;

static model m;

static void
fill(unsigned char *buf, size_t len, uint32_t id)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)(id * 131 + i * 7 + 1);
}

static uint64_t
frame_of(size_t len)
{
    return HDR + pad8(len);
}

static bool
model_room(size_t len)
{
    return m.cap - m.used >= frame_of(len) && (m.maxsize == 0 || m.count < m.maxsize);
}

/* ---- operations ------------------------------------------------------------------------------ */

/* A wait that ended without success: its deadline, or libFuzzer's SIGALRM watchdog (-timeout)
 * interrupting it (the calls return -EINTR then, as documented). */
static bool
timed_out(int r)
{
    return r == -ETIMEDOUT || r == -EINTR;
}

static unsigned char src[255 * 64], dst[255 * 64];

static void
op_put(mp_queue *q, size_t len, int timeout)
{
    bool stream = frame_of(len) > m.cap;
    bool room = model_room(len);
    uint32_t id = m.ids;
    fill(src, len, id);
    int r = mp_queue_put(q, src, len, timeout);
    CHECK(r == 0 || r == -EAGAIN || r == -ETIMEDOUT || r == -EBADMSG || r == -EINTR);
    if (!m.ok)
        return;
    if (stream) {
        /* Nobody reads it: NOWAIT refuses it, a timeout aborts it partway (it then counts
         * until a get discards it), which the model does not follow. */
        CHECK(timeout == MP_NOWAIT ? r == -EAGAIN : timed_out(r));
        if (timeout != MP_NOWAIT)
            m.ok = false;
        return;
    }
    CHECK(room ? r == 0 : timeout == MP_NOWAIT ? r == -EAGAIN : timed_out(r));
    if (r == 0) {
        CHECK(m.count < MAX_MSGS);
        m.len[id % MAX_MSGS] = len;
        m.ids++;
        m.count++;
        m.used += frame_of(len);
        m.unfinished += m.joinable;
    }
}

static void
op_get(mp_queue *q, size_t cap, bool alloc, int timeout)
{
    size_t len = SIZE_MAX;
    void *p = NULL;
    int r =
        alloc ? mp_queue_get_alloc(q, &p, &len, timeout) : mp_queue_get(q, dst, cap, &len, timeout);
    CHECK(r == 0 || r == -EAGAIN || r == -ETIMEDOUT || r == -EBADMSG || r == -EINTR ||
          (r == -EMSGSIZE && !alloc));
    CHECK(r == 0 ? alloc ? p != NULL : len <= cap : p == NULL);
    if (m.ok) {
        if (m.count == 0) {
            CHECK(timeout == MP_NOWAIT ? r == -EAGAIN : timed_out(r));
        } else {
            uint32_t id = m.first;
            size_t want = m.len[id % MAX_MSGS];
            CHECK(len == want);
            if (!alloc && want > cap) {
                CHECK(r == -EMSGSIZE);
            } else {
                CHECK(r == 0);
                unsigned char *got = alloc ? p : dst;
                fill(src, want, id);
                CHECK(want == 0 || memcmp(got, src, want) == 0);
                m.first++;
                m.count--;
                m.used -= frame_of(want);
            }
        }
    }
    mp_free(p);
}

static void
op_state(mp_queue *q)
{
    int n = mp_queue_qsize(q), e = mp_queue_empty(q), f = mp_queue_full(q);
    CHECK(n >= 0 && (e == 0 || e == 1) && (f == 0 || f == 1));
    if (m.ok)
        CHECK((uint32_t)n == m.count && e == (m.count == 0) && f == !model_room(0));
}

static void
op_tasks(mp_queue *q, bool join)
{
    int r = join ? mp_queue_join(q, MP_NOWAIT) : mp_queue_task_done(q);
    CHECK(r == 0 || r == -EINVAL || (join && r == -EAGAIN));
    if (!m.ok)
        return;
    if (!m.joinable)
        CHECK(r == -EINVAL);
    else if (join)
        CHECK(r == (m.unfinished == 0 ? 0 : -EAGAIN));
    else if ((r == 0) != (m.unfinished > 0))
        abort();
    else if (r == 0)
        m.unfinished--;
}

/* Neither lock may be left held by a call (trylock by the holder itself would say EBUSY). */
static void
check_unlocked(struct qhdr *h)
{
    CHECK(pthread_mutex_trylock(&h->plock) == 0);
    CHECK(pthread_mutex_unlock(&h->plock) == 0);
    CHECK(pthread_mutex_trylock(&h->clock) == 0);
    CHECK(pthread_mutex_unlock(&h->clock) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    input in = {data, data + size};
    unsigned cfg = next(&in);
    mp_queue_opts o = {
        .capacity = (size_t)64 << (cfg & 7), .joinable = cfg & 8, .maxsize = cfg >> 5};
    size_t qsize, cap;
    CHECK(mp__queue_size_at(&o, &qsize, &cap) == 0);
    void *mem;
    CHECK(posix_memalign(&mem, 128, qsize) == 0);
    CHECK(mp__queue_init_at(mem, &o) == 0);
    mp_queue *q;
    CHECK(mp__queue_wrap(&q, mem, cap) == 0);
    struct qhdr *h = mem;
    if (cfg & 16)
        CHECK((q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) >= 0); /* closed by the close */
    m.ok = true;
    m.cap = cap;
    m.maxsize = o.maxsize;
    m.joinable = o.joinable;
    m.used = m.unfinished = 0;
    m.first = m.count = m.ids = 0;

    for (unsigned n = next(&in) % 8; n > 0; n--)
        op_put(q, next(&in), MP_NOWAIT);
    int timed = 0;
    while (in.p < in.end) {
        unsigned op = next(&in);
        int timeout = MP_NOWAIT;
        if ((op & 0x80) && timed < MAX_TIMED) {
            timeout = 1;
            timed++;
        }
        switch (op & 7) {
        case 0: { /* scribble on a header word */
            size_t f = next(&in) % MP__ARRAY_LEN(fields);
            uint64_t v = next64(&in);
            memcpy((char *)mem + fields[f].off, &v, fields[f].size);
            m.ok = false;
            break;
        }
        case 1: { /* scribble on 8 ring bytes, at any offset */
            size_t at = (next(&in) | next(&in) << 8) % (cap - 7);
            uint64_t v = next64(&in);
            memcpy(q->ring + at, &v, 8);
            m.ok = false;
            break;
        }
        case 2:
            op_put(q, next(&in) * (size_t)((op >> 3) & 1 ? 64 : 1), timeout);
            break;
        case 3:
            op_get(q, (op >> 3) & 1 ? sizeof dst : next(&in), false, timeout);
            break;
        case 4:
            op_get(q, 0, true, MP_NOWAIT); /* a timed get_alloc could allocate a scribbled length */
            break;
        case 5:
            op_state(q);
            break;
        default:
            op_tasks(q, op & 1);
            break;
        }
        check_unlocked(h);
    }
    mp_queue_close(q);
    free(mem);
    return 0;
}
