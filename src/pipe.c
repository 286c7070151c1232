/*
 * pipe.c - Pipe and Connection: CPython's send_bytes/recv_bytes framing over an AF_UNIX stream
 * socketpair, connection.wait, and fd passing with SCM_RIGHTS.
 *
 * The fds stay in blocking mode: the open file description is shared with forked children and
 * possibly with a Python process, whose Connection expects blocking reads. Non-blocking
 * attempts use MSG_DONTWAIT per call instead, and waits with a deadline use poll().
 *
 * A receive never reads past the message it returns: it reads exactly the header, then exactly
 * the payload (two syscalls, as reading a 4-byte prefix and then the payload). A header taken
 * from the socket by a call that then fails before the payload (a timeout, a signal, a message
 * above maxlength, an allocation failure) stays in the handle for the next call.
 */
#include "internal.h"

#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* The longest header: the -1 escape followed by an 8-byte length. */
#define HDR_MAX 12

struct mp_conn {
    int fd;
    bool readable, writable;
    /* Set when a message was cut short in that direction: the stream is out of step and every
     * later call in that direction fails. Separate fields, so that one sending thread and one
     * receiving thread may use the end at the same time. */
    bool rx_broken, tx_broken;
    /* A TCP socket (mp_listener / mp_client): no fd passing, and a header may arrive split. */
    bool inet;
    /* The header bytes of the next message read so far (see read_header). */
    uint8_t hdr_have;
    uint8_t hdr[HDR_MAX];
};

/* Python's send_handle sends one byte holding the number of fds modulo 256, i.e. 1. A
 * connection end is sent with this marker bit set and its readable/writable flags in bits 0-1. */
#define HANDLE_BYTE 1
#define CONN_BIT 0x80
/* Payloads up to this size are copied behind the header and sent with send(). Measured on
 * the development VM (AMD EPYC): copy + send() beats sendmsg() with two iovecs by 100-200 ns
 * at every size up to 4 KiB, provided the copy's destination is 64-byte aligned; copied right
 * behind a 4-byte header it is 30% slower from 3 KiB on (memcpy's `rep movsb` path). */
#define SMALL_MSG 4096

/* ---- framing --------------------------------------------------------------------------------- */

size_t
mp__conn_header(size_t len, uint8_t *hdr)
{
    if (len <= 0x7fffffff) {
        for (int i = 0; i < 4; i++)
            hdr[i] = (uint8_t)(len >> (24 - 8 * i));
        return 4;
    }
    memset(hdr, 0xff, 4);
    for (int i = 0; i < 8; i++)
        hdr[4 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
    return 12;
}

/* Decode the n header bytes read so far. Returns the header size with the payload length in
 * *len, 0 when more bytes are needed, or -EPROTO for a negative length other than the escape
 * (Python silently reads such a frame as empty and loses its place in the stream). */
static int
parse_header(const uint8_t *h, size_t n, size_t *len)
{
    if (n < 4)
        return 0;
    int32_t v = (int32_t)((uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3]);
    if (v >= 0) {
        *len = (size_t)v;
        return 4;
    }
    if (v != -1)
        return -EPROTO;
    if (n < 12)
        return 0;
    uint64_t l = 0;
    for (int i = 4; i < 12; i++)
        l = l << 8 | h[i];
    if (l > (uint64_t)SSIZE_MAX - HDR_MAX)
        return -EPROTO;
    *len = (size_t)l;
    return 12;
}

/* ---- waiting --------------------------------------------------------------------------------- */

/* Wait until fd reports one of `events` or the deadline passes. Returns 0 when ready, -EAGAIN
 * (MP_NOWAIT) or -ETIMEDOUT, -EINTR. */
static int
wait_fd(int fd, short events, const mp__deadline *dl, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        int r = poll(&p, 1, mp__deadline_remaining_ms(dl));
        if (r > 0)
            return 0;
        if (r < 0)
            return -errno;
        if (mp__deadline_passed(dl) || timeout_ms == MP_NOWAIT)
            return timeout_ms == MP_NOWAIT ? -EAGAIN : -ETIMEDOUT;
    }
}

/* ---- sending --------------------------------------------------------------------------------- */

/* Send iov (and, if ctl is not NULL, its ancillary data with the first byte). The deadline
 * bounds the wait until the first byte is accepted; after that the rest is written blocking,
 * retried across signals, because stopping would leave half a message on the stream. */
static int
send_all(mp_conn *c, struct iovec *iov, int iovcnt, void *ctl, size_t ctllen, int timeout_ms)
{
    if (!c->writable)
        return -EBADF;
    if (c->tx_broken)
        return -EPIPE;
    mp__deadline dl;
    int r = mp__deadline_init(&dl, timeout_ms);
    if (r != 0)
        return r;
    struct msghdr m = {
        .msg_iov = iov, .msg_iovlen = (size_t)iovcnt, .msg_control = ctl, .msg_controllen = ctllen};
    /* With no deadline a blocking sendmsg() saves the poll() round when the buffer is full. */
    int flags = MSG_NOSIGNAL | (timeout_ms == MP_FOREVER ? 0 : MSG_DONTWAIT);
    bool started = false;
    for (;;) {
        ssize_t n = m.msg_iovlen == 1 && m.msg_control == NULL
                        ? send(c->fd, m.msg_iov[0].iov_base, m.msg_iov[0].iov_len, flags)
                        : sendmsg(c->fd, &m, flags);
        if (n < 0) {
            int e = errno;
            if (e == EINTR && started)
                continue;
            /* Only if someone made the shared file description O_NONBLOCK. */
            if (e == EAGAIN && started) {
                struct pollfd p = {.fd = c->fd, .events = POLLOUT};
                poll(&p, 1, -1);
                continue;
            }
            if (e == EAGAIN && !started) {
                r = wait_fd(c->fd, POLLOUT, &dl, timeout_ms);
                if (r != 0)
                    return r;
                continue;
            }
            if (started)
                c->tx_broken = true;
            /* A peer that closed with unread data makes the kernel report ECONNRESET. */
            return e == ECONNRESET ? -EPIPE : -e;
        }
        if (!started) {
            started = true;
            flags = MSG_NOSIGNAL;
            m.msg_control = NULL;
            m.msg_controllen = 0;
            mp__fault("pipe.send.started");
        }
        /* Advance past what was written; a zero-length iovec left at the end is harmless. */
        size_t done = (size_t)n;
        while (m.msg_iovlen > 0 && done >= m.msg_iov[0].iov_len) {
            done -= m.msg_iov[0].iov_len;
            m.msg_iov++;
            m.msg_iovlen--;
        }
        if (m.msg_iovlen == 0)
            return 0;
        m.msg_iov[0].iov_base = (char *)m.msg_iov[0].iov_base + done;
        m.msg_iov[0].iov_len -= done;
    }
}

int
mp_conn_send_bytes(mp_conn *c, const void *buf, size_t len, int timeout_ms)
{
    if (c == NULL || (buf == NULL && len > 0) || len > (size_t)SSIZE_MAX - HDR_MAX)
        return -EINVAL;
    /* A small message is copied behind its header and goes out with send(), which is
     * cheaper than sendmsg() with two iovecs by more than the copy costs (CPython, too,
     * concatenates small messages). */
    if (len <= SMALL_MSG) {
        /* The payload starts at an aligned offset; its 4-byte header sits just before it. */
        _Alignas(64) uint8_t frame[64 + SMALL_MSG];
        mp__conn_header(len, frame + 60);
        if (len > 0)
            memcpy(frame + 64, buf, len);
        struct iovec iov = {frame + 60, 4 + len};
        return send_all(c, &iov, 1, NULL, 0, timeout_ms);
    }
    uint8_t hdr[HDR_MAX];
    struct iovec iov[2] = {{hdr, mp__conn_header(len, hdr)}, {(void *)(uintptr_t)buf, len}};
    return send_all(c, iov, 2, NULL, 0, timeout_ms);
}

/* ---- receiving ------------------------------------------------------------------------------- */

/* Whether a MSG_PEEK without room for ancillary data saw a handle message (one byte with
 * SCM_RIGHTS) at the head of the stream. A peek stops right after the byte of a handle
 * message, and the kernel flags MSG_CTRUNC for any fds it saw; but a peek also looks past the
 * range it copies (it flags the fds of a handle message that merely follows), so only "one
 * byte copied, MSG_CTRUNC" means that the handle is the very next thing. Callers peek at least
 * two bytes. */
static bool
handle_at_head(ssize_t n, int msg_flags)
{
    return n == 1 && (msg_flags & MSG_CTRUNC);
}

static int
rx_fail(mp_conn *c, int err)
{
    c->rx_broken = true;
    return err;
}

/* Read the next message's header into c->hdr. Returns the header size with the payload length
 * in *len, MP_EOF, or an error.
 *
 * The header is read, not peeked: on an AF_UNIX stream socket MSG_PEEK walks the whole receive
 * queue (it continues past the bytes it copies), which makes a peek per message cost time
 * proportional to the number of queued messages. Bytes of a header that a failed call (a
 * timeout, a signal, a message above maxlength) has taken from the socket stay in c->hdr, and
 * the next receive on this handle continues with them: nothing is lost, and nothing past the
 * current message is ever read. */
static int
read_header(mp_conn *c, size_t *len, int timeout_ms)
{
    if (!c->readable)
        return -EBADF;
    if (c->rx_broken)
        return -EPROTO;
    mp__deadline dl;
    int r = mp__deadline_init(&dl, timeout_ms);
    if (r != 0)
        return r;
    int flags = timeout_ms == MP_FOREVER ? 0 : MSG_DONTWAIT;
    for (;;) {
        r = parse_header(c->hdr, c->hdr_have, len);
        if (r != 0)
            return r > 0 ? r : rx_fail(c, r);
        /* Ask for exactly the missing header bytes, so as never to read into the payload.
         * recv() rather than recvmsg(): copying a msghdr in and out costs about 10% of a
         * small message. */
        size_t want = (c->hdr_have < 4 ? 4u : 12u) - c->hdr_have;
        ssize_t n = recv(c->fd, c->hdr + c->hdr_have, want, flags);
        if (n > 0) {
            /* A handle message where a header belongs: a read stops right after its single
             * byte, and the kernel has dropped its fds. Well-behaved writers (mpipc, CPython)
             * never split a header before its fourth byte, so one marker byte at a message
             * boundary is taken for a handle. */
            if (!c->inet && c->hdr_have == 0 && n == 1 &&
                (c->hdr[0] == HANDLE_BYTE || (c->hdr[0] & ~3) == CONN_BIT))
                return rx_fail(c, -EPROTO);
            c->hdr_have = (uint8_t)(c->hdr_have + n);
            continue;
        }
        int e = n == 0 ? 0 : errno;
        if (e == EAGAIN) {
            r = wait_fd(c->fd, POLLIN, &dl, timeout_ms);
            if (r != 0)
                return r;
            continue;
        }
        if (e == EINTR)
            return -EINTR;
        /* EOF, or ECONNRESET: the peer closed (without reading all we sent). At a message
         * boundary that is the end of the stream; inside a header the frame was cut short. */
        if (e == 0 || e == ECONNRESET)
            return c->hdr_have == 0 ? MP_EOF : rx_fail(c, -EPROTO);
        return -e;
    }
}

/* Read the len payload bytes of the message whose header is in c->hdr into buf. The message
 * has started, so this blocks until it is complete; only the peer closing stops it. */
static int
read_payload(mp_conn *c, void *buf, size_t len)
{
    c->hdr_have = 0;
    while (len > 0) {
        ssize_t n = recv(c->fd, buf, len, MSG_WAITALL);
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            /* Only if someone made the shared file description O_NONBLOCK. */
            if (n < 0 && errno == EAGAIN) {
                struct pollfd p = {.fd = c->fd, .events = POLLIN};
                poll(&p, 1, -1);
                continue;
            }
            return rx_fail(c, n == 0 || errno == ECONNRESET ? -EPROTO : -errno);
        }
        buf = (char *)buf + n;
        len -= (size_t)n;
        mp__fault("pipe.recv.partial");
    }
    return 0;
}

int
mp_conn_recv_bytes(mp_conn *c, void **buf, size_t *len, size_t maxlength, int timeout_ms)
{
    if (c == NULL || buf == NULL || len == NULL)
        return -EINVAL;
    *buf = NULL;
    size_t n;
    int r = read_header(c, &n, timeout_ms);
    if (r < 0)
        return r;
    *len = n;
    if (n > maxlength)
        return -EMSGSIZE;
    /* At least one byte, so that an empty message still gives a non-NULL buffer. */
    void *p = mp__malloc(n > 0 ? n : 1);
    if (p == NULL)
        return -ENOMEM;
    r = read_payload(c, p, n);
    if (r != 0) {
        mp__free(p);
        return r;
    }
    *buf = p;
    return 0;
}

int
mp_conn_recv_bytes_into(mp_conn *c, void *buf, size_t cap, size_t *len, int timeout_ms)
{
    if (c == NULL || len == NULL || (buf == NULL && cap > 0))
        return -EINVAL;
    size_t n;
    int r = read_header(c, &n, timeout_ms);
    if (r < 0)
        return r;
    *len = n;
    if (n > cap)
        return -EMSGSIZE;
    return read_payload(c, buf, n);
}

int
mp_conn_poll(mp_conn *c, int timeout_ms)
{
    if (c == NULL)
        return -EINVAL;
    if (!c->readable)
        return -EBADF;
    /* A complete header already read for an empty message (kept by an earlier -ENOMEM) has
     * no bytes left in the socket to make it readable. */
    size_t len;
    if (parse_header(c->hdr, c->hdr_have, &len) > 0 && len == 0)
        return 1;
    return mp_conn_wait(&c->fd, 1, NULL, timeout_ms);
}

int
mp_conn_wait(const int *fds, size_t n, bool *ready, int timeout_ms)
{
    if ((fds == NULL && n > 0) || n > INT_MAX)
        return -EINVAL;
    mp__deadline dl;
    int r = mp__deadline_init(&dl, timeout_ms);
    if (r != 0)
        return r;
    struct pollfd small[16], *p = small;
    if (n > MP__ARRAY_LEN(small) && (p = mp__malloc(n * sizeof *p)) == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (fds[i] < 0) {
            r = -EBADF;
            goto out;
        }
        p[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
    }
    for (;;) {
        r = poll(p, (nfds_t)n, mp__deadline_remaining_ms(&dl));
        if (r < 0) {
            r = -errno;
            goto out;
        }
        if (r > 0 || mp__deadline_passed(&dl) || timeout_ms == MP_NOWAIT)
            break;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i].revents & POLLNVAL) {
            r = -EBADF;
            goto out;
        }
    }
    for (size_t i = 0; ready != NULL && i < n; i++)
        ready[i] = p[i].revents != 0;
out:
    if (p != small)
        mp__free(p);
    return r;
}

/* ---- handles --------------------------------------------------------------------------------- */

static int
send_fd(mp_conn *c, int fd, uint8_t byte, int timeout_ms)
{
    if (fd < 0)
        return -EBADF;
    if (c->inet)
        return -EOPNOTSUPP;
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    ctl.h.cmsg_level = SOL_SOCKET;
    ctl.h.cmsg_type = SCM_RIGHTS;
    ctl.h.cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(&ctl.h), &fd, sizeof fd);
    struct iovec iov = {&byte, 1};
    return send_all(c, &iov, 1, &ctl, sizeof ctl, timeout_ms);
}

/* Receive one handle message: its byte into *byte and the fd into *fd. The stream is peeked
 * first, so that a plain message in its place is left unread (-EPROTO). */
static int
recv_fd(mp_conn *c, int *fd, uint8_t *byte, int timeout_ms)
{
    if (!c->readable)
        return -EBADF;
    /* A message whose header was partly read is in the way. */
    if (c->rx_broken || c->hdr_have > 0)
        return -EPROTO;
    mp__deadline dl;
    int r = mp__deadline_init(&dl, timeout_ms);
    if (r != 0)
        return r;
    uint8_t peek[2];
    struct iovec piov = {peek, sizeof peek};
    for (;;) {
        struct msghdr m = {.msg_iov = &piov, .msg_iovlen = 1};
        ssize_t n = recvmsg(c->fd, &m, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN) {
            r = wait_fd(c->fd, POLLIN, &dl, timeout_ms);
            if (r != 0)
                return r;
            continue;
        }
        if (n < 0)
            return errno == ECONNRESET ? MP_EOF : -errno;
        if (n == 0)
            return MP_EOF;
        if (!handle_at_head(n, m.msg_flags))
            return -EPROTO;
        break;
    }
    struct iovec iov = {byte, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl, .msg_controllen = sizeof ctl};
    ssize_t n;
    do
        n = recvmsg(c->fd, &m, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return n == 0 ? MP_EOF : -errno;
    /* One SCM_RIGHTS fd is expected. Anything else (no fd because none could be installed in
     * this process, or more than one, the extra ones then closed by the kernel) loses the
     * handle. */
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    if (h == NULL || h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS ||
        h->cmsg_len != CMSG_LEN(sizeof(int)) || (m.msg_flags & MSG_CTRUNC)) {
        if (h != NULL && h->cmsg_type == SCM_RIGHTS && h->cmsg_len == CMSG_LEN(sizeof(int))) {
            int extra;
            memcpy(&extra, CMSG_DATA(h), sizeof extra);
            close(extra);
        }
        return -EPROTO;
    }
    memcpy(fd, CMSG_DATA(h), sizeof *fd);
    return 0;
}

int
mp_conn_send_handle(mp_conn *c, int handle, int timeout_ms)
{
    if (c == NULL)
        return -EINVAL;
    return send_fd(c, handle, HANDLE_BYTE, timeout_ms);
}

int
mp_conn_recv_handle(mp_conn *c, int *handle, int timeout_ms)
{
    if (c == NULL || handle == NULL)
        return -EINVAL;
    uint8_t byte;
    return recv_fd(c, handle, &byte, timeout_ms);
}

int
mp_conn_send_conn(mp_conn *c, const mp_conn *what, int timeout_ms)
{
    if (c == NULL || what == NULL)
        return -EINVAL;
    uint8_t byte = (uint8_t)(CONN_BIT | (what->readable ? 1 : 0) | (what->writable ? 2 : 0));
    return send_fd(c, what->fd, byte, timeout_ms);
}

int
mp_conn_recv_conn(mp_conn *c, mp_conn **out, int timeout_ms)
{
    if (c == NULL || out == NULL)
        return -EINVAL;
    int fd;
    uint8_t byte;
    int r = recv_fd(c, &fd, &byte, timeout_ms);
    if (r != 0)
        return r;
    bool rd = true, wr = true;
    if (byte & CONN_BIT)
        rd = byte & 1, wr = byte & 2;
    r = mp_conn_open(out, fd, rd, wr);
    if (r != 0)
        close(fd);
    return r;
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

static mp_conn *
conn_new(int fd, bool readable, bool writable)
{
    mp_conn *c = mp__malloc(sizeof *c);
    if (c != NULL)
        *c = (mp_conn){.fd = fd, .readable = readable, .writable = writable};
    return c;
}

int
mp__conn_wrap(mp_conn **out, int fd, bool inet)
{
    mp_conn *c = conn_new(fd, true, true);
    if (c == NULL)
        return -ENOMEM;
    c->inet = inet;
    *out = c;
    return 0;
}

int
mp_pipe_open(mp_conn **a, mp_conn **b, bool duplex)
{
    if (a == NULL || b == NULL)
        return -EINVAL;
    *a = *b = NULL;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -errno;
    mp_conn *ca = conn_new(sv[0], true, duplex);
    mp_conn *cb = conn_new(sv[1], duplex, true);
    if (ca == NULL || cb == NULL) {
        mp__free(ca);
        mp__free(cb);
        close(sv[0]);
        close(sv[1]);
        return -ENOMEM;
    }
    /* Python's Pipe(False) is an os.pipe(); a socketpair keeps MSG_NOSIGNAL and SCM_RIGHTS,
     * which pipes lack. The direction is enforced by the handles' flags only: shutting the
     * socket down in the unused direction would make the send-only end poll as readable (at
     * EOF) forever, so an event loop watching it would spin, whereas Python's pipe write end
     * becomes ready only when the reader closes. */
    *a = ca;
    *b = cb;
    return 0;
}

int
mp_conn_open(mp_conn **out, int fd, bool readable, bool writable)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL || fd < 0 || (!readable && !writable))
        return -EINVAL;
    int domain, type;
    socklen_t l1 = sizeof domain, l2 = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l1) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l2) != 0)
        return -errno;
    if (domain != AF_UNIX || type != SOCK_STREAM)
        return -EPROTOTYPE;
    mp_conn *c = conn_new(fd, readable, writable);
    if (c == NULL)
        return -ENOMEM;
    *out = c;
    return 0;
}

void
mp_conn_close(mp_conn *c)
{
    if (c == NULL)
        return;
    close(c->fd);
    mp__free(c);
}

int
mp_conn_fileno(const mp_conn *c)
{
    return c == NULL ? -EINVAL : c->fd;
}

bool
mp_conn_readable(const mp_conn *c)
{
    return c != NULL && c->readable;
}

bool
mp_conn_writable(const mp_conn *c)
{
    return c != NULL && c->writable;
}
