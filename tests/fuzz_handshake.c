/*
 * fuzz_handshake.c - libFuzzer target for the authkey handshake (src/listener.c, src/digest.c;
 * built with -DMPIPC_FUZZ=ON, clang): CPython's deliver_challenge / answer_challenge, in the
 * 3.11 form (a 20-byte challenge, raw HMAC-MD5) and the 3.12+ form ("{sha256}" prefixes).
 *
 * The first byte picks the side and the options: the listener side (mp_listener_accept: send
 * a challenge, read the response, then answer the peer's challenge) or the client side
 * (mp_client_connect: answer the peer's challenge, read the verdict, then challenge it), with
 * or without sha256_only, and one of three keys (16, 32 and 100 bytes: longer than a block, so
 * it is hashed first). The rest is everything the fuzzed peer sends, frames and all, before it
 * stops writing. The keys are drawn from getrandom() when the process starts, so the peer
 * cannot know them, and the property checked is the handshake's purpose: a peer without the
 * key is never accepted, on either side. Every refusal must be one of the documented results
 * (-EACCES, -EPROTO, -ECONNRESET), a listener that refuses a response says "#FAILURE#", and
 * nothing may crash or read past a frame. Everything is in this process (the client side's
 * peer is a thread); each input's sockets are closed before the next.
 * Seeds: tests/corpus/handshake (tests/fuzz_seeds.py handshake DIR, recorded from CPython 3.11
 * and 3.12 handshakes).
 */
#include "internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

#define MAX_STREAM ((size_t)64 << 10)
#define TIMEOUT_MS 5000 /* never reached: the peer's end of input is an EOF */

static const size_t keylens[3] = {16, 32, 100};
static uint8_t keys[3][100];
/* [key][sha256_only]: listeners that authenticate; `raw` accepts for the client side's peer. */
static mp_listener *auth[3][2], *raw;

static void
teardown(void)
{
    for (int k = 0; k < 3; k++)
        for (int s = 0; s < 2; s++)
            mp_listener_close(auth[k][s]);
    mp_listener_close(raw);
}

static void
setup(void)
{
    for (int k = 0; k < 3; k++) {
        CHECK(mp__random_bytes(keys[k], keylens[k]) == 0);
        for (int s = 0; s < 2; s++) {
            mp_listener_opts o = {.authkey = keys[k], .authkey_len = keylens[k], .sha256_only = s};
            CHECK(mp_listener_open(&auth[k][s], NULL, &o) == 0);
        }
    }
    CHECK(mp_listener_open(&raw, NULL, NULL) == 0);
    /* The listeners' private directories go when libFuzzer exits normally. */
    atexit(teardown);
}

/* libFuzzer's -timeout watchdog is a SIGALRM, which interrupts blocking calls here too. */
static ssize_t
recv_retry(int fd, void *buf, size_t n, int flags)
{
    ssize_t r;
    do
        r = recv(fd, buf, n, flags);
    while (r < 0 && errno == EINTR);
    return r;
}

/* Read one frame of at most 256 bytes from fd; its length, or -1. */
static ssize_t
read_frame(int fd, uint8_t *buf)
{
    uint8_t h[4];
    for (size_t got = 0; got < 4;) {
        ssize_t r = recv_retry(fd, h + got, 4 - got, 0);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    uint32_t n = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    if (n > 256)
        return -1;
    for (size_t got = 0; got < n;) {
        ssize_t r = recv_retry(fd, buf + got, n - got, 0);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return (ssize_t)n;
}

/* The documented refusals; -EINTR when libFuzzer's SIGALRM watchdog (-timeout) interrupts a
 * wait, which also ends the handshake without accepting. */
static bool
refused(int r)
{
    return r == -EACCES || r == -EPROTO || r == -ECONNRESET || r == -EINTR;
}

/* The listener side: a client that connects, sends the input and stops writing. */
static void
listener_side(mp_listener *l, const uint8_t *d, size_t n)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, mp_listener_address(l), sizeof a.sun_path - 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(n == 0 || send(fd, d, n, MSG_NOSIGNAL) == (ssize_t)n);
    CHECK(shutdown(fd, SHUT_WR) == 0);
    mp_conn *c = NULL;
    int r = mp_listener_accept(l, &c, TIMEOUT_MS);
    CHECK(r != 0 && c == NULL); /* the peer does not know the key */
    CHECK(refused(r));
    /* The listener challenged first, and a response it refuses gets "#FAILURE#". */
    uint8_t buf[256];
    ssize_t k = read_frame(fd, buf);
    CHECK(k == 59 && memcmp(buf, "#CHALLENGE#{sha256}", 19) == 0);
    if (r == -EACCES) {
        k = read_frame(fd, buf);
        CHECK(k == 9 && memcmp(buf, "#FAILURE#", 9) == 0);
    }
    close(fd);
}

typedef struct peer {
    const uint8_t *d;
    size_t n;
} peer;

/* The client side's peer: accept, send the input, stop writing, read until the client closes.
 * The send may fail: a client interrupted by the watchdog's SIGALRM has closed already. */
static void *
serve_input(void *arg)
{
    peer *p = arg;
    mp_conn *c;
    int r;
    while ((r = mp_listener_accept(raw, &c, TIMEOUT_MS)) == -EINTR)
        ;
    CHECK(r == 0);
    int fd = mp_conn_fileno(c);
    if (p->n > 0)
        (void)send(fd, p->d, p->n, MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    uint8_t sink[512];
    while (recv_retry(fd, sink, sizeof sink, 0) > 0)
        ;
    mp_conn_close(c);
    return NULL;
}

static void
client_side(int key, bool sha256_only, const uint8_t *d, size_t n)
{
    peer p = {d, n};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, serve_input, &p) == 0);
    mp_client_opts o = {
        .authkey = keys[key], .authkey_len = keylens[key], .sha256_only = sha256_only};
    mp_conn *c = NULL;
    int r = mp_client_connect(&c, mp_listener_address(raw), &o, TIMEOUT_MS);
    CHECK(r != 0 && c == NULL); /* the peer cannot answer the client's challenge */
    CHECK(refused(r));
    pthread_join(th, NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (raw == NULL)
        setup();
    if (size < 1 || size - 1 > MAX_STREAM)
        return 0;
    int key = (data[0] >> 2) % 3;
    bool sha256_only = data[0] & 2;
    if (data[0] & 1)
        client_side(key, sha256_only, data + 1, size - 1);
    else
        listener_side(auth[key][sha256_only], data + 1, size - 1);
    return 0;
}
