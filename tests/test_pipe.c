/*
 * test_pipe.c - mp_pipe / mp_conn: Python's Pipe and Connection with real processes.
 */
#define _GNU_SOURCE
#include "helpers.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>

#ifndef PIPE_PEER_PY
#error "PIPE_PEER_PY (path of tests/pipe_peer.py) must be defined by the build"
#endif

static void
open_pipe(mp_conn **a, mp_conn **b, bool duplex)
{
    assert_int_equal(mp_pipe_open(a, b, duplex), 0);
}

/* Write raw bytes to the fd of an end, bypassing the framing. */
static void
write_raw(mp_conn *c, const void *buf, size_t len)
{
    assert_int_equal(write(mp_conn_fileno(c), buf, len), (ssize_t)len);
}

/* ---- messages both ways ---------------------------------------------------------------------- */

static const size_t SIZES[] = {0, 1, 5, 4096, 16384, 16385, 1 << 20, 100, 0};

typedef struct peer {
    mp_conn *mine, *other; /* the child's end, and the parent's end it closes */
    th_barrier *bar;
} peer;

static int
echo_child(void *arg)
{
    peer *p = arg;
    mp_conn_close(p->other);
    for (;;) {
        void *buf;
        size_t len;
        int r = mp_conn_recv_bytes(p->mine, &buf, &len, SIZE_MAX, 10000);
        if (r == MP_EOF)
            break;
        CHILD_CHECK(r == 0);
        CHILD_CHECK(mp_conn_send_bytes(p->mine, buf, len, 10000) == 0);
        mp_free(buf);
    }
    mp_conn_close(p->mine);
    return 0;
}

static void
test_pipe_duplex_ends_echo_messages_of_every_size(void **state)
{
    (void)state;
    mp_conn *a, *b;
    open_pipe(&a, &b, true);
    assert_true(mp_conn_readable(a) && mp_conn_writable(a));
    assert_true(mp_conn_readable(b) && mp_conn_writable(b));
    peer p = {.mine = b, .other = a};
    pid_t pid = th_fork(echo_child, &p);
    assert_true(pid > 0);
    mp_conn_close(b);
    static uint8_t buf[1 << 20];
    for (size_t i = 0; i < MP__ARRAY_LEN(SIZES); i++) {
        assert_int_equal(th_pattern_send(a, SIZES[i], 1, MP_FOREVER), 0);
        size_t len = 12345;
        assert_int_equal(mp_conn_recv_bytes_into(a, buf, sizeof buf, &len, 10000), 0);
        assert_int_equal(len, SIZES[i]);
        assert_true(th_pattern_check(buf, len, 1));
    }
    mp_conn_close(a);
    assert_child_ok(pid);
}

/* ---- larger than the socket buffer ----------------------------------------------------------- */

#define BIG (8u << 20)

static int
send_big_child(void *arg)
{
    peer *p = arg;
    mp_conn_close(p->other);
    CHILD_CHECK(fcntl(mp_conn_fileno(p->mine), F_SETFL, O_NONBLOCK) == 0);
    /* Twice, with and without a deadline: the second goes through the MSG_DONTWAIT path. */
    CHILD_CHECK(th_pattern_send(p->mine, BIG, 3, MP_FOREVER) == 0);
    uint8_t *buf = malloc(BIG);
    CHILD_CHECK(buf != NULL);
    th_pattern_fill(buf, BIG, 4);
    CHILD_CHECK(mp_conn_send_bytes(p->mine, buf, BIG, 10000) == 0);
    free(buf);
    mp_conn_close(p->mine);
    return 0;
}

static void
test_pipe_message_larger_than_the_socket_buffer_arrives_whole(void **state)
{
    (void)state;
    mp_conn *a, *b;
    open_pipe(&a, &b, false);
    int sndbuf = 0;
    socklen_t sl = sizeof sndbuf;
    assert_int_equal(getsockopt(mp_conn_fileno(b), SOL_SOCKET, SO_SNDBUF, &sndbuf, &sl), 0);
    assert_true(BIG > 4u * (unsigned)sndbuf);
    peer p = {.mine = b, .other = a};
    pid_t pid = th_fork(send_big_child, &p);
    assert_true(pid > 0);
    mp_conn_close(b);
    /* Both ends non-blocking, as a peer sharing the file description may set them: the
     * library must still wait instead of failing with EAGAIN in the middle of a message. */
    assert_int_equal(fcntl(mp_conn_fileno(a), F_SETFL, O_NONBLOCK), 0);
    void *buf;
    size_t len;
    assert_int_equal(mp_conn_recv_bytes(a, &buf, &len, SIZE_MAX, 10000), 0);
    assert_int_equal(len, BIG);
    assert_true(th_pattern_check(buf, len, 3));
    mp_free(buf);
    assert_int_equal(mp_conn_recv_bytes(a, &buf, &len, BIG, 10000), 0);
    assert_int_equal(len, BIG);
    assert_true(th_pattern_check(buf, len, 4));
    mp_free(buf);
    assert_int_equal(mp_conn_recv_bytes(a, &buf, &len, SIZE_MAX, 10000), MP_EOF);
    mp_conn_close(a);
    assert_child_ok(pid);
}

/* ---- one-way pipes and bad arguments --------------------------------------------------------- */

static void
test_pipe_one_way_ends_refuse_the_wrong_direction(void **state)
{
    (void)state;
    mp_conn *r, *w;
    open_pipe(&r, &w, false);
    assert_true(mp_conn_readable(r) && !mp_conn_writable(r));
    assert_true(!mp_conn_readable(w) && mp_conn_writable(w));
    assert_int_equal(mp_conn_send_bytes(r, "x", 1, MP_FOREVER), -EBADF);
    size_t len;
    void *buf;
    assert_int_equal(mp_conn_recv_bytes(w, &buf, &len, SIZE_MAX, MP_NOWAIT), -EBADF);
    assert_int_equal(mp_conn_recv_bytes_into(w, NULL, 0, &len, MP_NOWAIT), -EBADF);
    assert_int_equal(mp_conn_poll(w, MP_NOWAIT), -EBADF);
    assert_int_equal(mp_conn_send_handle(r, 0, MP_NOWAIT), -EBADF);
    int fd;
    assert_int_equal(mp_conn_recv_handle(w, &fd, MP_NOWAIT), -EBADF);
    /* The right way works, and the refused calls changed nothing. */
    assert_int_equal(mp_conn_send_bytes(w, "hello", 5, MP_FOREVER), 0);
    assert_int_equal(mp_conn_poll(r, MP_NOWAIT), 1);
    assert_int_equal(mp_conn_recv_bytes(r, &buf, &len, SIZE_MAX, MP_NOWAIT), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 5);
    mp_free(buf);
    /* As Python's pipe write end, the send-only end is ready for wait only once the reader
     * has closed. */
    int wfd = mp_conn_fileno(w);
    assert_int_equal(mp_conn_wait(&wfd, 1, NULL, MP_NOWAIT), 0);
    mp_conn_close(r);
    assert_int_equal(mp_conn_wait(&wfd, 1, NULL, 1000), 1);
    assert_int_equal(mp_conn_send_bytes(w, "x", 1, 0), -EPIPE);
    mp_conn_close(w);
}

static void
test_pipe_bad_arguments_are_rejected(void **state)
{
    (void)state;
    mp_conn *a, *b;
    assert_int_equal(mp_pipe_open(NULL, &b, true), -EINVAL);
    open_pipe(&a, &b, true);
    void *buf;
    size_t len;
    assert_int_equal(mp_conn_send_bytes(NULL, "x", 1, 0), -EINVAL);
    assert_int_equal(mp_conn_send_bytes(a, NULL, 1, 0), -EINVAL);
    assert_int_equal(mp_conn_send_bytes(a, "x", 1, -2), -EINVAL);
    assert_int_equal(mp_conn_recv_bytes(a, NULL, &len, SIZE_MAX, 0), -EINVAL);
    assert_int_equal(mp_conn_recv_bytes(a, &buf, &len, SIZE_MAX, -2), -EINVAL);
    assert_int_equal(mp_conn_recv_bytes_into(a, NULL, 5, &len, 0), -EINVAL);
    assert_int_equal(mp_conn_poll(NULL, 0), -EINVAL);
    assert_int_equal(mp_conn_poll(a, -5), -EINVAL);
    assert_int_equal(mp_conn_wait(NULL, 1, NULL, 0), -EINVAL);
    assert_int_equal(mp_conn_fileno(NULL), -EINVAL);
    assert_false(mp_conn_readable(NULL) || mp_conn_writable(NULL));
    assert_int_equal(mp_conn_send_handle(a, -1, 0), -EBADF);
    assert_int_equal(mp_conn_send_conn(a, NULL, 0), -EINVAL);
    mp_conn_close(NULL);
    /* Nothing was sent by any of the refused calls. */
    assert_int_equal(mp_conn_poll(b, MP_NOWAIT), 0);
    mp_conn_close(a);
    mp_conn_close(b);
}

static void
test_pipe_conn_open_wraps_only_unix_stream_sockets(void **state)
{
    (void)state;
    mp_conn *c;
    int p[2], sv[2];
    assert_int_equal(mp_conn_open(&c, -1, true, true), -EINVAL);
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    assert_int_equal(mp_conn_open(&c, p[0], true, false), -ENOTSOCK);
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(mp_conn_open(&c, sv[0], true, true), -EPROTOTYPE);
    close(p[0]), close(p[1]), close(sv[0]), close(sv[1]);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(mp_conn_open(&c, sv[0], false, false), -EINVAL);
    mp_conn *d;
    assert_int_equal(mp_conn_open(&c, sv[0], true, true), 0);
    assert_int_equal(mp_conn_open(&d, sv[1], true, true), 0);
    assert_int_equal(mp_conn_fileno(c), sv[0]);
    assert_int_equal(mp_conn_send_bytes(c, "ab", 2, 0), 0);
    char got[4];
    size_t len;
    assert_int_equal(mp_conn_recv_bytes_into(d, got, sizeof got, &len, 0), 0);
    assert_int_equal(len, 2);
    mp_conn_close(c); /* closes sv[0] and sv[1]: the leak check would see them otherwise */
    mp_conn_close(d);
}

/* ---- wire format ----------------------------------------------------------------------------- */

static void
test_pipe_frames_are_byte_identical_to_cpython(void **state)
{
    (void)state;
    mp_conn *a, *b;
    open_pipe(&a, &b, true);
    assert_int_equal(mp_conn_send_bytes(a, "abc", 3, 0), 0);
    assert_int_equal(mp_conn_send_bytes(a, "", 0, 0), 0);
    uint8_t raw[16];
    assert_int_equal(recv(mp_conn_fileno(b), raw, sizeof raw, MSG_DONTWAIT), 11);
    assert_memory_equal(raw, "\0\0\0\3abc\0\0\0\0", 11);
    /* Above 0x7fffffff: -1, then the length as 8 bytes, as Python 3.8+ sends it. */
    uint8_t h[12];
    assert_int_equal(mp__conn_header(0x7fffffff, h), 4);
    assert_memory_equal(h, "\x7f\xff\xff\xff", 4);
    assert_int_equal(mp__conn_header(0x80000000u, h), 12);
    assert_memory_equal(h, "\xff\xff\xff\xff\0\0\0\0\x80\0\0\0", 12);
    assert_int_equal(mp__conn_header((size_t)5 << 32 | 7, h), 12);
    assert_memory_equal(h, "\xff\xff\xff\xff\0\0\0\5\0\0\0\7", 12);
    /* The escape is accepted for any length, as Python accepts it. */
    write_raw(a, "\xff\xff\xff\xff\0\0\0\0\0\0\0\3xyz", 15);
    void *buf;
    size_t len;
    assert_int_equal(mp_conn_recv_bytes(b, &buf, &len, SIZE_MAX, 1000), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(buf, "xyz", 3);
    mp_free(buf);
    mp_conn_close(a);
    mp_conn_close(b);
}

static void
test_pipe_malformed_header_is_eproto(void **state)
{
    (void)state;
    mp_conn *a, *b;
    open_pipe(&a, &b, true);
    write_raw(a, "\x80\0\0\0zz", 6);
    void *buf;
    size_t len;
    assert_int_equal(mp_conn_recv_bytes(b, &buf, &len, SIZE_MAX, 1000), -EPROTO);
    /* The stream is out of step: it stays unusable. */
    assert_int_equal(mp_conn_recv_bytes(b, &buf, &len, SIZE_MAX, 1000), -EPROTO);
    mp_conn_close(a);
    mp_conn_close(b);
    open_pipe(&a, &b, true);
    /* An escape announcing more than any buffer can hold is malformed too. */
    write_raw(a, "\xff\xff\xff\xff\xff\0\0\0\0\0\0\0", 12);
    assert_int_equal(mp_conn_recv_bytes_into(b, NULL, 0, &len, 1000), -EPROTO);
    mp_conn_close(a);
    mp_conn_close(b);
    /* The peer closes in the middle of a payload. */
    open_pipe(&a, &b, true);
    write_raw(a, "\0\0\0\12abc", 7);
    mp_conn_close(a);
    assert_int_equal(mp_conn_recv_bytes(b, &buf, &len, SIZE_MAX, 1000), -EPROTO);
    assert_int_equal(mp_conn_recv_bytes(b, &buf, &len, SIZE_MAX, 1000), -EPROTO);
    mp_conn_close(b);
}

static void
test_pipe_too_long_message_is_kept_for_a_retry(void **state)
{
    (void)state;
    mp_conn *a, *b;
    open_pipe(&a, &b, true);
    uint8_t msg[100];
    th_pattern_fill(msg, sizeof msg, 5);
    assert_int_equal(mp_conn_send_bytes(a, msg, sizeof msg, 0), 0);
    assert_int_equal(mp_conn_send_bytes(a, "next", 4, 0), 0);
    void *buf = (void *)1;
    size_t len = 0;
    assert_int_equal(mp_conn_recv_bytes(b, &buf, &len, 99, 1000), -EMSGSIZE);
    assert_null(buf);
    assert_int_equal(len, 100);
    uint8_t small[10];
    len = 0;
    assert_int_equal(mp_conn_recv_bytes_into(b, small, sizeof small, &len, 1000), -EMSGSIZE);
    assert_int_equal(len, 100);
    assert_int_equal(mp_conn_poll(b, 0), 1);
    uint8_t big[100];
    assert_int_equal(mp_conn_recv_bytes_into(b, big, len, &len, 1000), 0);
    assert_int_equal(len, 100);
    assert_true(th_pattern_check(big, 100, 5));
    assert_int_equal(mp_conn_recv_bytes(b, &buf, &len, 4, 1000), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "next", 4);
    mp_free(buf);
    mp_conn_close(a);
    mp_conn_close(b);
}

/* A writer that sends a header in pieces: the reader waits for the rest, a timeout consumes
 * nothing, and a close in the middle of the header is -EPROTO. */
static void
test_pipe_header_in_pieces_is_waited_for(void **state)
{
    (void)state;
    mp_conn *a, *b;
    open_pipe(&a, &b, true);
    write_raw(a, "\0", 1);
    size_t len;
    char got[8];
    assert_int_equal(mp_conn_recv_bytes_into(b, got, sizeof got, &len, MP_NOWAIT), -EAGAIN);
    write_raw(a, "\0", 1);
    int64_t t0 = th_now_ms();
    assert_int_equal(mp_conn_recv_bytes_into(b, got, sizeof got, &len, 100), -ETIMEDOUT);
    int64_t dt = th_now_ms() - t0;
    assert_true(dt >= 95 && dt < 3000);
    assert_int_equal(mp_conn_recv_bytes_into(b, got, sizeof got, &len, MP_NOWAIT), -EAGAIN);
    write_raw(a, "\0\2hi", 4);
    assert_int_equal(mp_conn_recv_bytes_into(b, got, sizeof got, &len, 1000), 0);
    assert_int_equal(len, 2);
    assert_memory_equal(got, "hi", 2);
    write_raw(a, "\0\0\0", 3);
    mp_conn_close(a);
    assert_int_equal(mp_conn_recv_bytes_into(b, got, sizeof got, &len, 1000), -EPROTO);
    mp_conn_close(b);
}

/* ---- timeouts, poll, EOF --------------------------------------------------------------------- */

static int
send_after_barrier_child(void *arg)
{
    peer *p = arg;
    mp_conn_close(p->other);
    CHILD_CHECK(th_barrier_wait(p->bar) == 0);
    CHILD_CHECK(mp_conn_send_bytes(p->mine, "late", 4, 10000) == 0);
    CHILD_CHECK(mp_conn_send_bytes(p->mine, "bye", 3, 10000) == 0);
    mp_conn_close(p->mine);
    return 0;
}

static void
test_pipe_reader_polls_with_timeout_then_sees_eof_after_writer_exits(void **state)
{
    (void)state;
    mp_conn *r, *w;
    open_pipe(&r, &w, false);
    peer p = {.mine = w, .other = r, .bar = th_barrier_new(2)};
    pid_t pid = th_fork(send_after_barrier_child, &p);
    assert_true(pid > 0);
    mp_conn_close(w);

    assert_int_equal(mp_conn_poll(r, MP_NOWAIT), 0);
    int64_t t0 = th_now_ms();
    assert_int_equal(mp_conn_poll(r, 100), 0);
    int64_t dt = th_now_ms() - t0;
    assert_true(dt >= 95 && dt < 3000);
    void *buf;
    size_t len;
    t0 = th_now_ms();
    assert_int_equal(mp_conn_recv_bytes(r, &buf, &len, SIZE_MAX, 100), -ETIMEDOUT);
    dt = th_now_ms() - t0;
    assert_true(dt >= 95 && dt < 3000);
    assert_int_equal(mp_conn_recv_bytes(r, &buf, &len, SIZE_MAX, MP_NOWAIT), -EAGAIN);

    assert_int_equal(th_barrier_wait(p.bar), 0);
    assert_int_equal(mp_conn_poll(r, 10000), 1);
    assert_int_equal(mp_conn_poll(r, 10000), 1); /* poll consumes nothing */
    assert_int_equal(mp_conn_recv_bytes(r, &buf, &len, SIZE_MAX, MP_FOREVER), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "late", 4);
    mp_free(buf);
    assert_child_ok(pid);
    /* The writer has exited: first what it sent, then EOF, for every later call too. */
    assert_int_equal(mp_conn_recv_bytes(r, &buf, &len, SIZE_MAX, MP_FOREVER), 0);
    assert_memory_equal(buf, "bye", 3);
    mp_free(buf);
    assert_int_equal(mp_conn_poll(r, MP_NOWAIT), 1);
    assert_int_equal(mp_conn_recv_bytes(r, &buf, &len, SIZE_MAX, MP_FOREVER), MP_EOF);
    assert_int_equal(mp_conn_recv_bytes_into(r, NULL, 0, &len, 0), MP_EOF);
    mp_conn_close(r);
    th_barrier_free(p.bar);
}

/* The peer closes while data we sent to it is unread: the kernel then reports ECONNRESET,
 * which must not hide what the peer sent before, and ends as MP_EOF. */
static void
test_pipe_peer_closing_with_unread_data_still_delivers_then_eof(void **state)
{
    (void)state;
    mp_conn *a, *b;
    open_pipe(&a, &b, true);
    assert_int_equal(mp_conn_send_bytes(a, "never read", 10, 0), 0);
    assert_int_equal(mp_conn_send_bytes(b, "hello", 5, 0), 0);
    assert_int_equal(mp_conn_send_bytes(b, "", 0, 0), 0);
    mp_conn_close(b);
    char got[8];
    size_t len;
    assert_int_equal(mp_conn_recv_bytes_into(a, got, sizeof got, &len, 1000), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(got, "hello", 5);
    assert_int_equal(mp_conn_recv_bytes_into(a, got, sizeof got, &len, 1000), 0);
    assert_int_equal(len, 0);
    assert_int_equal(mp_conn_recv_bytes_into(a, got, sizeof got, &len, 1000), MP_EOF);
    assert_int_equal(mp_conn_recv_bytes_into(a, got, sizeof got, &len, MP_FOREVER), MP_EOF);
    assert_int_equal(mp_conn_send_bytes(a, "x", 1, 0), -EPIPE);
    mp_conn_close(a);
}

/* A plain fd received as a connection becomes a duplex end; a fd that is not a socket is
 * refused and closed. */
static void
test_pipe_recv_conn_accepts_a_plain_socket_handle_and_refuses_others(void **state)
{
    (void)state;
    mp_conn *a, *b, *x, *y, *z;
    open_pipe(&a, &b, true);
    open_pipe(&x, &y, true);
    assert_int_equal(mp_conn_send_handle(a, mp_conn_fileno(x), 0), 0);
    mp_conn_close(x);
    assert_int_equal(mp_conn_recv_conn(b, &z, 1000), 0);
    assert_true(mp_conn_readable(z) && mp_conn_writable(z));
    assert_int_equal(mp_conn_send_bytes(y, "via z", 5, 0), 0);
    char got[8];
    size_t len;
    assert_int_equal(mp_conn_recv_bytes_into(z, got, sizeof got, &len, 1000), 0);
    assert_memory_equal(got, "via z", 5);
    mp_conn_close(y);
    mp_conn_close(z);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    assert_int_equal(mp_conn_send_handle(a, p[0], 0), 0);
    assert_int_equal(mp_conn_recv_conn(b, &z, 1000), -ENOTSOCK);
    close(p[0]);
    close(p[1]);
    mp_conn_close(a);
    mp_conn_close(b);
}

static void
test_pipe_send_times_out_when_the_buffer_stays_full_and_keeps_frames_whole(void **state)
{
    (void)state;
    mp_conn *r, *w;
    open_pipe(&r, &w, false);
    static uint8_t chunk[10000];
    unsigned sent = 0;
    int rc;
    while ((rc = mp_conn_send_bytes(w, chunk, sizeof chunk, MP_NOWAIT)) == 0)
        sent++;
    assert_int_equal(rc, -EAGAIN);
    assert_true(sent > 0);
    int64_t t0 = th_now_ms();
    rc = mp_conn_send_bytes(w, chunk, sizeof chunk, 100);
    int64_t dt = th_now_ms() - t0;
    /* The kernel may have had room for the start of one more frame: then it completes. */
    if (rc == 0) {
        sent++;
    } else {
        assert_int_equal(rc, -ETIMEDOUT);
        assert_true(dt >= 95 && dt < 3000);
    }
    mp_conn_close(w);
    size_t len;
    unsigned got = 0;
    while ((rc = mp_conn_recv_bytes_into(r, chunk, sizeof chunk, &len, 1000)) == 0) {
        assert_int_equal(len, sizeof chunk);
        got++;
    }
    assert_int_equal(rc, MP_EOF);
    assert_int_equal(got, sent);
    mp_conn_close(r);
}

static void
on_alarm(int sig)
{
    (void)sig;
}

static void
test_pipe_signal_interrupts_a_wait_with_eintr(void **state)
{
    (void)state;
    mp_conn *r, *w;
    open_pipe(&r, &w, false);
    struct sigaction sa = {.sa_handler = on_alarm}, old; /* no SA_RESTART */
    assert_int_equal(sigaction(SIGALRM, &sa, &old), 0);
    struct itimerval it = {.it_value = {.tv_usec = 50000}};
    void *buf;
    size_t len;
    setitimer(ITIMER_REAL, &it, NULL);
    assert_int_equal(mp_conn_recv_bytes(r, &buf, &len, SIZE_MAX, MP_FOREVER), -EINTR);
    setitimer(ITIMER_REAL, &it, NULL);
    assert_int_equal(mp_conn_recv_bytes(r, &buf, &len, SIZE_MAX, 10000), -EINTR);
    setitimer(ITIMER_REAL, &it, NULL);
    assert_int_equal(mp_conn_poll(r, 10000), -EINTR);
    sigaction(SIGALRM, &old, NULL);
    /* Nothing was consumed or broken. */
    assert_int_equal(mp_conn_send_bytes(w, "ok", 2, 0), 0);
    assert_int_equal(mp_conn_recv_bytes(r, &buf, &len, SIZE_MAX, 1000), 0);
    assert_int_equal(len, 2);
    mp_free(buf);
    mp_conn_close(r);
    mp_conn_close(w);
}

/* SIGPIPE keeps its default disposition (which would kill the child); send must still only
 * return -EPIPE. */
static int
send_to_closed_peer_child(void *arg)
{
    peer *p = arg;
    signal(SIGPIPE, SIG_DFL);
    mp_conn_close(p->other);
    CHILD_CHECK(mp_conn_send_bytes(p->mine, "x", 1, MP_FOREVER) == -EPIPE);
    CHILD_CHECK(mp_conn_send_bytes(p->mine, "", 0, 1000) == -EPIPE);
    CHILD_CHECK(mp_conn_send_handle(p->mine, 0, 1000) == -EPIPE);
    static uint8_t big[1 << 20];
    CHILD_CHECK(mp_conn_send_bytes(p->mine, big, sizeof big, MP_FOREVER) == -EPIPE);
    mp_conn_close(p->mine);
    return 0;
}

static void
test_pipe_send_to_a_closed_peer_is_epipe_without_sigpipe(void **state)
{
    (void)state;
    for (int duplex = 0; duplex <= 1; duplex++) {
        mp_conn *r, *w;
        open_pipe(&r, &w, duplex);
        /* Unread data in the closed end makes the kernel report ECONNRESET: also -EPIPE. */
        assert_int_equal(mp_conn_send_bytes(w, "unread", 6, 0), 0);
        mp_conn_close(r);
        peer p = {.mine = w, .other = NULL};
        pid_t pid = th_fork(send_to_closed_peer_child, &p);
        assert_true(pid > 0);
        mp_conn_close(w);
        int st = th_wait(pid, 30000);
        assert_true(WIFEXITED(st)); /* not killed by SIGPIPE */
        assert_int_equal(WEXITSTATUS(st), 0);
    }
}

static int
die_mid_message_child(void *arg)
{
    peer *p = arg;
    mp_conn_close(p->other);
    mp__fault_arm("pipe.send.started", 1, NULL, NULL);
    static uint8_t big[4 << 20];
    /* With a deadline the first sendmsg() does not block, so it writes only part. */
    mp_conn_send_bytes(p->mine, big, sizeof big, 10000);
    return 1; /* not reached: the fault point SIGKILLs this process */
}

static void
test_pipe_writer_killed_mid_message_gives_eproto(void **state)
{
    (void)state;
    if (!mp__fault_enabled())
        skip();
    mp_conn *r, *w;
    open_pipe(&r, &w, false);
    peer p = {.mine = w, .other = r};
    pid_t pid = th_fork(die_mid_message_child, &p);
    assert_true(pid > 0);
    mp_conn_close(w);
    void *buf = NULL;
    size_t len;
    assert_int_equal(mp_conn_recv_bytes(r, &buf, &len, SIZE_MAX, 10000), -EPROTO);
    assert_null(buf);
    assert_int_equal(mp_conn_recv_bytes(r, &buf, &len, SIZE_MAX, 10000), -EPROTO);
    int st = th_wait(pid, 30000);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    mp_conn_close(r);
}

/* Seeded random kills: a writer sends messages of random sizes and is SIGKILLed at its n-th
 * send (after the first part of that message went out). The reader gets every message before
 * intact and then MP_EOF or -EPROTO, never a hang or a corrupted message. */
typedef struct kill_ctx {
    peer p;
    unsigned seed, nth;
} kill_ctx;

static size_t
random_size(unsigned *seed)
{
    unsigned r = (unsigned)rand_r(seed);
    return r % 4 == 0 ? 0 : r % 3 == 0 ? (size_t)(r % 600000) : (size_t)(r % 5000);
}

static int
killed_writer_child(void *arg)
{
    kill_ctx *k = arg;
    mp_conn_close(k->p.other);
    mp__fault_arm("pipe.send.started", k->nth, NULL, NULL);
    unsigned seed = k->seed;
    static uint8_t buf[600000];
    for (;;) {
        size_t len = random_size(&seed);
        th_pattern_fill(buf, len, 6);
        /* With a deadline the first sendmsg() does not block, so a large message is cut. */
        CHILD_CHECK(mp_conn_send_bytes(k->p.mine, buf, len, 10000) == 0);
    }
}

static void
test_pipe_random_writer_kills_never_corrupt_or_hang_the_reader(void **state)
{
    (void)state;
    if (!mp__fault_enabled())
        skip();
    unsigned cut = 0, rounds = 20;
    for (unsigned round = 0; round < rounds; round++) {
        mp_conn *r, *w;
        open_pipe(&r, &w, false);
        kill_ctx k = {.p = {.mine = w, .other = r}, .seed = 1000 + round, .nth = 1 + round % 7};
        pid_t pid = th_fork(killed_writer_child, &k);
        assert_true(pid > 0);
        mp_conn_close(w);
        unsigned seed = k.seed, got = 0;
        int rc;
        for (;;) {
            void *buf;
            size_t len, want = random_size(&seed);
            rc = mp_conn_recv_bytes(r, &buf, &len, SIZE_MAX, 10000);
            if (rc != 0)
                break;
            assert_int_equal(len, want);
            assert_true(th_pattern_check(buf, len, 6));
            mp_free(buf);
            got++;
        }
        /* The n-th message was either cut (-EPROTO) or sent whole just before the kill. */
        assert_true((rc == -EPROTO && got == k.nth - 1) || (rc == MP_EOF && got == k.nth));
        cut += rc == -EPROTO;
        int st = th_wait(pid, 30000);
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        mp_conn_close(r);
    }
    /* Both kinds of death happened: between messages and inside one. */
    assert_true(cut > 0 && cut < rounds);
}

/* ---- wait ------------------------------------------------------------------------------------ */

typedef struct wait_ctx {
    mp_conn *w[3];
    th_barrier *bar;
} wait_ctx;

static int
wait_child(void *arg)
{
    wait_ctx *x = arg;
    CHILD_CHECK(th_barrier_wait(x->bar) == 0);
    CHILD_CHECK(mp_conn_send_bytes(x->w[1], "one", 3, 10000) == 0);
    CHILD_CHECK(th_barrier_wait(x->bar) == 0);
    return 0; /* exiting makes the sentinel ready and closes the other writers */
}

static void
test_pipe_wait_reports_ready_connections_and_a_sentinel(void **state)
{
    (void)state;
    wait_ctx x = {.bar = th_barrier_new(2)};
    mp_conn *r[3];
    for (int i = 0; i < 3; i++)
        open_pipe(&r[i], &x.w[i], false);
    mp_process *proc;
    assert_int_equal(mp_process_open(&proc, wait_child, &x, NULL), 0);
    assert_int_equal(mp_process_start(proc), 0);
    for (int i = 0; i < 3; i++)
        mp_conn_close(x.w[i]);
    int fds[4] = {mp_conn_fileno(r[0]), mp_conn_fileno(r[1]), mp_conn_fileno(r[2]),
                  mp_process_sentinel(proc)};
    bool ready[4] = {true, true, true, true};
    assert_int_equal(mp_conn_wait(fds, 4, ready, MP_NOWAIT), 0);
    int64_t t0 = th_now_ms();
    assert_int_equal(mp_conn_wait(fds, 4, ready, 100), 0);
    int64_t dt = th_now_ms() - t0;
    assert_true(dt >= 95 && dt < 3000);
    assert_false(ready[0] || ready[1] || ready[2] || ready[3]);

    assert_int_equal(th_barrier_wait(x.bar), 0);
    assert_int_equal(mp_conn_wait(fds, 4, ready, 10000), 1);
    assert_true(!ready[0] && ready[1] && !ready[2] && !ready[3]);
    assert_int_equal(th_barrier_wait(x.bar), 0);
    assert_int_equal(mp_process_join(proc, 10000), 0);
    /* All four now: the message on r[1], EOF on the others, the sentinel. */
    assert_int_equal(mp_conn_wait(fds, 4, ready, 10000), 4);
    assert_true(ready[0] && ready[1] && ready[2] && ready[3]);
    assert_int_equal(mp_conn_wait(fds, 4, NULL, 0), 4);

    /* More fds than the on-stack array holds; a closed fd is -EBADF. */
    int many[40];
    for (int i = 0; i < 40; i++)
        many[i] = fds[i % 3];
    assert_int_equal(mp_conn_wait(many, 40, NULL, 0), 40);
    int bad[2] = {fds[0], 1000};
    assert_int_equal(mp_conn_wait(bad, 2, NULL, 0), -EBADF);
    bad[1] = -1;
    assert_int_equal(mp_conn_wait(bad, 2, NULL, 0), -EBADF);
    assert_int_equal(mp_conn_wait(NULL, 0, NULL, MP_NOWAIT), 0);
    assert_int_equal(mp_conn_wait(fds, 4, ready, -3), -EINVAL);
    for (int i = 0; i < 3; i++)
        mp_conn_close(r[i]);
    assert_int_equal(mp_process_close(proc), 0);
    th_barrier_free(x.bar);
}

/* ---- handle passing -------------------------------------------------------------------------- */

static int
handle_child(void *arg)
{
    peer *p = arg;
    mp_conn_close(p->other);
    /* A plain fd: write through it. */
    int fd = -1;
    CHILD_CHECK(mp_conn_recv_handle(p->mine, &fd, 10000) == 0);
    CHILD_CHECK(fcntl(fd, F_GETFD) == FD_CLOEXEC);
    CHILD_CHECK(write(fd, "via handle", 10) == 10);
    close(fd);
    /* A connection end (receive-only): receive on it. */
    mp_conn *c;
    CHILD_CHECK(mp_conn_recv_conn(p->mine, &c, 10000) == 0);
    CHILD_CHECK(mp_conn_readable(c) && !mp_conn_writable(c));
    void *buf;
    size_t len;
    CHILD_CHECK(mp_conn_recv_bytes(c, &buf, &len, SIZE_MAX, 10000) == 0);
    CHILD_CHECK(len == 6 && memcmp(buf, "passed", 6) == 0);
    mp_free(buf);
    mp_conn_close(c);
    /* A message where a handle is expected is left for recv_bytes. */
    CHILD_CHECK(mp_conn_recv_handle(p->mine, &fd, 10000) == -EPROTO);
    CHILD_CHECK(mp_conn_recv_bytes(p->mine, &buf, &len, SIZE_MAX, 10000) == 0);
    CHILD_CHECK(len == 4 && memcmp(buf, "data", 4) == 0);
    mp_free(buf);
    /* An empty message, directly followed by a handle message. */
    CHILD_CHECK(mp_conn_recv_bytes(p->mine, &buf, &len, SIZE_MAX, 10000) == 0);
    CHILD_CHECK(len == 0);
    mp_free(buf);
    CHILD_CHECK(mp_conn_recv_handle(p->mine, &fd, 10000) == 0);
    close(fd);
    /* A handle where a message is expected is a protocol error: the handle is lost and the
     * end stays unusable for receiving. */
    CHILD_CHECK(mp_conn_recv_bytes(p->mine, &buf, &len, SIZE_MAX, 10000) == -EPROTO);
    CHILD_CHECK(mp_conn_recv_bytes(p->mine, &buf, &len, SIZE_MAX, 10000) == -EPROTO);
    CHILD_CHECK(mp_conn_recv_handle(p->mine, &fd, 10000) == -EPROTO);
    mp_conn_close(p->mine);
    return 0;
}

static void
test_pipe_passes_fds_and_connection_ends_to_another_process(void **state)
{
    (void)state;
    mp_conn *a, *b;
    open_pipe(&a, &b, true);
    peer p = {.mine = b, .other = a};
    pid_t pid = th_fork(handle_child, &p);
    assert_true(pid > 0);
    mp_conn_close(b);

    int pfd[2];
    assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
    assert_int_equal(mp_conn_send_handle(a, pfd[1], 10000), 0);
    close(pfd[1]);
    char got[32];
    ssize_t n = read(pfd[0], got, sizeof got);
    assert_int_equal(n, 10);
    assert_memory_equal(got, "via handle", 10);
    close(pfd[0]);

    mp_conn *r, *w;
    open_pipe(&r, &w, false);
    assert_int_equal(mp_conn_send_conn(a, r, 10000), 0);
    mp_conn_close(r);
    assert_int_equal(mp_conn_send_bytes(w, "passed", 6, 10000), 0);
    mp_conn_close(w);

    assert_int_equal(mp_conn_send_bytes(a, "data", 4, 10000), 0);
    assert_int_equal(mp_conn_send_bytes(a, "", 0, 10000), 0);
    assert_int_equal(mp_conn_send_handle(a, 0, 10000), 0);
    assert_int_equal(mp_conn_send_handle(a, 0, 10000), 0);
    mp_conn_close(a);
    assert_child_ok(pid);
}

/* ---- allocation failure ---------------------------------------------------------------------- */

static void
test_pipe_allocation_failure_leaves_nothing_behind(void **state)
{
    (void)state;
    mp_conn *a = NULL, *b = NULL;
    for (long n = 0; n < 2; n++) {
        mp__alloc_fail_after(n);
        assert_int_equal(mp_pipe_open(&a, &b, true), -ENOMEM);
        assert_null(a);
        assert_null(b);
    }
    mp__alloc_fail_after(-1);
    open_pipe(&a, &b, true);
    assert_int_equal(mp_conn_send_bytes(a, "kept", 4, 0), 0);
    void *buf;
    size_t len;
    mp__alloc_fail_after(0);
    assert_int_equal(mp_conn_recv_bytes(b, &buf, &len, SIZE_MAX, 1000), -ENOMEM);
    int many[20];
    for (int i = 0; i < 20; i++)
        many[i] = mp_conn_fileno(a);
    mp__alloc_fail_after(0);
    assert_int_equal(mp_conn_wait(many, 20, NULL, 0), -ENOMEM);
    mp__alloc_fail_after(-1);
    assert_int_equal(mp_conn_recv_bytes(b, &buf, &len, SIZE_MAX, 1000), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "kept", 4);
    mp_free(buf);
    /* An empty message whose header was read before the allocation failed: poll still says
     * it is there, though no byte of it is left in the socket. */
    assert_int_equal(mp_conn_send_bytes(a, "", 0, 0), 0);
    mp__alloc_fail_after(0);
    assert_int_equal(mp_conn_recv_bytes(b, &buf, &len, SIZE_MAX, 1000), -ENOMEM);
    mp__alloc_fail_after(-1);
    assert_int_equal(mp_conn_poll(b, MP_NOWAIT), 1);
    assert_int_equal(mp_conn_recv_bytes(b, &buf, &len, SIZE_MAX, 1000), 0);
    assert_int_equal(len, 0);
    assert_non_null(buf);
    mp_free(buf);
    assert_int_equal(mp_conn_poll(b, MP_NOWAIT), 0);
    mp_conn_close(a);
    mp_conn_close(b);
}

/* ---- Python on the other end ----------------------------------------------------------------- */

static void
exec_python(const char *version, const char *const *argv, bool quiet)
{
    if (version != NULL)
        setenv("PYENV_VERSION", version, 1);
    if (quiet) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
    }
    execvp("python3", (char *const *)argv);
    _exit(127);
}

/* Whether `python3` (under PYENV_VERSION=version when not NULL) runs and has multiprocessing. */
static bool
python_available(const char *version)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        const char *argv[] = {"python3", "-c", "import multiprocessing.connection", NULL};
        exec_python(version, argv, true);
    }
    int st = th_wait(pid, 30000);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void *
send_all_sizes(void *arg)
{
    mp_conn *c = arg;
    for (size_t i = 0; i < MP__ARRAY_LEN(SIZES); i++)
        if (th_pattern_send(c, SIZES[i], 1, MP_FOREVER) != 0)
            return (void *)1;
    return NULL;
}

static void
interop_with(const char *version)
{
    mp_conn *a, *b;
    open_pipe(&a, &b, true);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* dup() drops O_CLOEXEC, so the fd survives exec. */
        char fdstr[16];
        snprintf(fdstr, sizeof fdstr, "%d", dup(mp_conn_fileno(b)));
        const char *argv[] = {"python3", PIPE_PEER_PY, fdstr, NULL};
        exec_python(version, argv, false);
    }
    mp_conn_close(b);
    /* Both sides send at once: this thread sends while the main thread receives. */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, send_all_sizes, a), 0);
    for (size_t i = 0; i < MP__ARRAY_LEN(SIZES); i++) {
        void *buf;
        size_t len;
        assert_int_equal(mp_conn_recv_bytes(a, &buf, &len, SIZE_MAX, 30000), 0);
        assert_int_equal(len, SIZES[i]);
        assert_true(th_pattern_check(buf, len, 2));
        mp_free(buf);
    }
    void *tr;
    assert_int_equal(pthread_join(t, &tr), 0);
    assert_null(tr);

    /* Python's recv_handle takes our handle, and we take the one from its send_handle. */
    int pfd[2];
    assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
    assert_int_equal(mp_conn_send_handle(a, pfd[1], 30000), 0);
    close(pfd[1]);
    char got[64];
    size_t have = 0;
    ssize_t n;
    while ((n = read(pfd[0], got + have, sizeof got - have)) > 0)
        have += (size_t)n;
    close(pfd[0]);
    assert_int_equal(have, 17);
    assert_memory_equal(got, "written by python", 17);
    int fd;
    assert_int_equal(mp_conn_recv_handle(a, &fd, 30000), 0);
    assert_int_equal(write(fd, "written by C", 12), 12);
    close(fd);

    size_t len;
    assert_int_equal(mp_conn_recv_bytes_into(a, got, sizeof got, &len, 30000), 0);
    assert_int_equal(len, 4);
    assert_memory_equal(got, "done", 4);
    mp_conn_close(a); /* Python then expects EOFError */
    assert_child_ok(pid);
}

static void
test_pipe_talks_to_python_both_ways(void **state)
{
    (void)state;
    if (!python_available(NULL)) {
        print_message("python3 not found: interop test skipped\n");
        skip();
    }
    interop_with(NULL);
    static const char *versions[] = {"3.12.1", "3.13.0"};
    for (size_t i = 0; i < MP__ARRAY_LEN(versions); i++) {
        if (python_available(versions[i])) {
            print_message("interop with python %s\n", versions[i]);
            interop_with(versions[i]);
        } else {
            print_message("python %s not available: skipped\n", versions[i]);
        }
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipe_duplex_ends_echo_messages_of_every_size),
        cmocka_unit_test(test_pipe_message_larger_than_the_socket_buffer_arrives_whole),
        cmocka_unit_test(test_pipe_one_way_ends_refuse_the_wrong_direction),
        cmocka_unit_test(test_pipe_bad_arguments_are_rejected),
        cmocka_unit_test(test_pipe_conn_open_wraps_only_unix_stream_sockets),
        cmocka_unit_test(test_pipe_frames_are_byte_identical_to_cpython),
        cmocka_unit_test(test_pipe_malformed_header_is_eproto),
        cmocka_unit_test(test_pipe_too_long_message_is_kept_for_a_retry),
        cmocka_unit_test(test_pipe_header_in_pieces_is_waited_for),
        cmocka_unit_test(test_pipe_reader_polls_with_timeout_then_sees_eof_after_writer_exits),
        cmocka_unit_test(
            test_pipe_send_times_out_when_the_buffer_stays_full_and_keeps_frames_whole),
        cmocka_unit_test(test_pipe_peer_closing_with_unread_data_still_delivers_then_eof),
        cmocka_unit_test(test_pipe_recv_conn_accepts_a_plain_socket_handle_and_refuses_others),
        cmocka_unit_test(test_pipe_signal_interrupts_a_wait_with_eintr),
        cmocka_unit_test(test_pipe_send_to_a_closed_peer_is_epipe_without_sigpipe),
        cmocka_unit_test(test_pipe_writer_killed_mid_message_gives_eproto),
        cmocka_unit_test(test_pipe_random_writer_kills_never_corrupt_or_hang_the_reader),
        cmocka_unit_test(test_pipe_wait_reports_ready_connections_and_a_sentinel),
        cmocka_unit_test(test_pipe_passes_fds_and_connection_ends_to_another_process),
        cmocka_unit_test(test_pipe_allocation_failure_leaves_nothing_behind),
        cmocka_unit_test(test_pipe_talks_to_python_both_ways),
    };
    return th_run_tests(tests);
}
