/*
 * fuzz_frame.c - libFuzzer target for the connection frame decoder (src/pipe.c; built with
 * -DMPIPC_FUZZ=ON, clang): the bytes a peer writes on a connection, CPython's framing with the
 * 8-byte escape for payloads above 2 GiB.
 *
 * The first byte picks how the stream is received (recv_bytes with a maxlength, or
 * recv_bytes_into a small buffer; which timeout; whether the end is a TCP-like one, which lets
 * a header arrive split; whether a writer thread delivers the stream in pieces while the reader
 * waits); the rest is what the peer writes before it closes. The target receives until MP_EOF
 * or -EPROTO and checks every result against a reference decoder written here: each message
 * exactly as framed (so nothing was read past a frame or left behind), -EMSGSIZE with the
 * announced length and the message kept, -EPROTO for a bad or cut-off frame and for every call
 * after it, and never an allocation beyond the maxlength it passed (a header announcing 2^40
 * bytes is refused from the header alone: docs/pipe.md, "Oversized messages stay receivable").
 * One socketpair per input, closed before the next: no fd survives an input.
 * Seeds: tests/corpus/frame (tests/fuzz_seeds.py frame DIR).
 */
#include "internal.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

/* The most this target lets one receive allocate. */
#define MAX_ALLOC ((size_t)1 << 20)
#define MAX_STREAM ((size_t)64 << 10) /* well under a socket buffer: written before reading */
/* Pieces of a few bytes each cost a thread switch: split headers need no long streams. */
#define MAX_THREADED 512

static const size_t maxlengths[8] = {0, 1, 4, 100, 4096, 65536, MAX_ALLOC, MAX_ALLOC};

/* ---- the reference decoder ------------------------------------------------------------------ */

typedef struct frame {
    int r;        /* 0 (a whole message), MP_EOF, -EPROTO */
    uint64_t len; /* announced payload length, when the header is whole */
    bool hdr_ok;  /* the header is whole and valid */
    size_t off;   /* where the payload starts */
} frame;

static uint64_t
be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* The frame at d[pos..n): CPython's 4-byte signed big-endian length, or -1 and an 8-byte one. */
static frame
model_next(const uint8_t *d, size_t n, size_t pos)
{
    frame f = {.r = -EPROTO};
    if (pos == n)
        return (frame){.r = MP_EOF};
    if (n - pos < 4)
        return f;
    int32_t v = (int32_t)(uint32_t)be(d + pos, 4);
    size_t h = 4;
    if (v >= 0) {
        f.len = (uint64_t)v;
    } else if (v == -1) {
        if (n - pos < 12)
            return f;
        f.len = be(d + pos + 4, 8);
        h = 12;
        if (f.len > (uint64_t)SSIZE_MAX - 12)
            return f;
    } else {
        return f;
    }
    f.hdr_ok = true;
    f.off = pos + h;
    if (f.len <= n - f.off)
        f.r = 0;
    return f;
}

/* ---- the peer -------------------------------------------------------------------------------- */

typedef struct writer {
    int fd;
    const uint8_t *d;
    size_t n;
    const uint8_t *cuts; /* piece sizes, cycled */
    size_t ncuts;
} writer;

/* Write the stream in pieces, then close: the reader meets partial headers and payloads. */
static void *
write_pieces(void *arg)
{
    writer *w = arg;
    for (size_t off = 0, i = 0; off < w->n; i++) {
        size_t k = w->ncuts > 0 ? 1 + w->cuts[i % w->ncuts] % 16 : w->n;
        if (k > w->n - off)
            k = w->n - off;
        ssize_t r = send(w->fd, w->d + off, k, MSG_NOSIGNAL);
        if (r <= 0)
            break; /* the reader gave up (-EPROTO) and closed */
        off += (size_t)r;
    }
    close(w->fd);
    return NULL;
}

/* ---- the target ------------------------------------------------------------------------------ */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    /* A writer in pieces needs the TCP-like end: a lone marker byte at a message boundary
     * is otherwise taken for a handle (docs/pipe.md), which well-behaved writers never send. */
    bool into = mode & 1, threaded = mode & 4, inet = (mode & 2) || threaded;
    size_t maxlength = maxlengths[(mode >> 3) & 7];
    int timeout = (mode >> 6) == 0 ? MP_FOREVER : (mode >> 6) == 1 ? MP_NOWAIT : 5;
    /* The threaded writer cuts the stream where the first few bytes say. */
    const uint8_t *cuts = data + 1;
    size_t ncuts = threaded ? (size > 1 ? data[1] % 8 : 0) : 0;
    if (1 + (threaded ? 1 : 0) + ncuts > size)
        return 0;
    const uint8_t *d = data + 1 + (threaded ? 1 + ncuts : 0);
    size_t n = size - (size_t)(d - data);
    if (n > (threaded ? MAX_THREADED : MAX_STREAM))
        return 0;
    cuts += 1;

    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    mp_conn *c;
    CHECK(mp__conn_wrap(&c, sv[0], inet) == 0);
    writer w = {sv[1], d, n, cuts, ncuts};
    pthread_t th;
    if (threaded) {
        CHECK(pthread_create(&th, NULL, write_pieces, &w) == 0);
    } else {
        CHECK(n == 0 || send(sv[1], d, n, MSG_NOSIGNAL) == (ssize_t)n);
        close(sv[1]);
        CHECK(mp_conn_poll(c, 0) == 1); /* data or EOF: readable */
    }

    static uint8_t small[64];
    size_t pos = 0;
    for (;;) {
        frame f = model_next(d, n, pos);
        size_t len = SIZE_MAX;
        void *buf = NULL;
        int r =
            into ? mp_conn_recv_bytes_into(c, small, maxlength < 64 ? maxlength : 64, &len, timeout)
                 : mp_conn_recv_bytes(c, &buf, &len, maxlength, timeout);
        /* The rest has not arrived yet (a header read so far stays), or libFuzzer's SIGALRM
         * (its -timeout watchdog) interrupted the wait. */
        if (threaded && (r == -EAGAIN || r == -ETIMEDOUT || r == -EINTR))
            continue;
        size_t cap = into ? (maxlength < 64 ? maxlength : 64) : maxlength;
        if (f.hdr_ok && f.len > cap) {
            /* Refused from its header, kept: receive it with room enough, if that is bounded. */
            CHECK(r == -EMSGSIZE && len == f.len && buf == NULL);
            if (f.len > MAX_ALLOC)
                break;
            do
                r = mp_conn_recv_bytes(c, &buf, &len, MAX_ALLOC, timeout);
            while (threaded && (r == -EAGAIN || r == -ETIMEDOUT || r == -EINTR));
        }
        CHECK(r == f.r);
        if (r == 0) {
            const void *got = into && f.len <= cap ? small : buf;
            CHECK(len == f.len && (len == 0 || memcmp(got, d + f.off, len) == 0));
            pos = f.off + len;
            mp_free(buf);
            continue;
        }
        CHECK(buf == NULL);
        /* The end of the stream and a broken one stay so. */
        if (r == MP_EOF || r == -EPROTO) {
            int again = into ? mp_conn_recv_bytes_into(c, small, sizeof small, &len, MP_NOWAIT)
                             : mp_conn_recv_bytes(c, &buf, &len, MAX_ALLOC, MP_NOWAIT);
            CHECK(again == r && buf == NULL);
        }
        break;
    }
    mp_conn_close(c);
    if (threaded)
        pthread_join(th, NULL);
    return 0;
}
