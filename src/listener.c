/*
 * listener.c - Listener and Client: connections over AF_UNIX and TCP with CPython's authkey
 * handshake, handed out as ordinary mp_conn handles.
 *
 * The handshake runs on the raw fd before it is wrapped. It does its own framing (with
 * mp__conn_header) rather than using mp_conn_recv_bytes, because it needs what a data
 * connection must not do: one deadline over whole frames, payload included (a peer that sends
 * a header and stalls must not hold accept), and a 256-byte limit checked before any payload
 * is read. It still never reads past the frame it wants, so a message the peer sends right
 * after the handshake is left for the connection.
 */
#include "internal.h"

#include "digest.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define HS_MAX 256                  /* Python's recv_bytes(256) in every handshake step */
#define HS_DEFAULT_TIMEOUT_MS 10000 /* handshake_timeout_ms = 0 */
#define CHALLENGE "#CHALLENGE#"     /* 11 bytes */
#define WELCOME "#WELCOME#"         /* 9 bytes */
#define FAILURE "#FAILURE#"         /* 9 bytes */
#define PREFIX_LEN 11
#define LEGACY_CHALLENGE_LEN 20 /* CPython 3.11's random challenge: answer raw HMAC-MD5 */
#define MODERN_RANDOM_LEN 40    /* CPython 3.12+'s MESSAGE_LENGTH */
#define MAX_DIGEST_NAME 8       /* "sha3_256": '}' must come within 9 bytes of '{' */

struct mp_listener {
    int fd;
    pid_t owner;   /* the process that bound it: only it removes path and dir */
    char *path;    /* AF_UNIX path to unlink on close, or NULL */
    char *dir;     /* private directory made for a default address, or NULL */
    char *address; /* what mp_listener_address returns */
    bool inet;
    bool has_key, sha256_only;
    int hs_timeout_ms;
    size_t keylen;
    uint8_t key[]; /* a copy of the authkey */
};

typedef struct auth {
    const uint8_t *key;
    size_t keylen;
    bool sha256_only;
} auth;

/* ---- addresses ------------------------------------------------------------------------------- */

typedef struct addr {
    struct sockaddr_storage ss;
    socklen_t len;
} addr;

static int
unix_addr(addr *a, const char *path)
{
    struct sockaddr_un *u = (struct sockaddr_un *)&a->ss;
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof u->sun_path)
        return -EINVAL;
    memset(u, 0, sizeof *u);
    u->sun_family = AF_UNIX;
    memcpy(u->sun_path, path, n + 1);
    a->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 0;
}

/* Parse "host:port" (IPv4) or "[host]:port" (IPv6). Returns 1 for TCP, 0 when the string is
 * an AF_UNIX path instead, or -EINVAL. passive: a listener's address, where an empty host
 * means every interface and port 0 an ephemeral port. */
static int
parse_inet(addr *a, const char *s, bool passive)
{
    char host[256];
    const char *port;
    int family;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - s - 1) >= sizeof host)
            return -EINVAL;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = '\0';
        port = close + 2;
        family = AF_INET6;
    } else {
        const char *colon = strrchr(s, ':');
        if (strchr(s, '/') != NULL || colon == NULL)
            return 0;
        if ((size_t)(colon - s) >= sizeof host)
            return -EINVAL;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port = colon + 1;
        family = AF_INET;
    }
    /* The port is plain decimal, at most 65535; 0 only where a listener may ask for any. */
    if (port[0] == '\0' || strlen(port) > 5 || strspn(port, "0123456789") != strlen(port))
        return -EINVAL;
    long p = strtol(port, NULL, 10);
    if (p > 65535 || (p == 0 && !passive))
        return -EINVAL;
    if (host[0] == '\0' && (family == AF_INET6 || !passive))
        return -EINVAL;
    struct addrinfo hints = {.ai_family = family,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)};
    struct addrinfo *res = NULL;
    if (getaddrinfo(host[0] != '\0' ? host : NULL, port, &hints, &res) != 0 || res == NULL)
        return -EINVAL;
    memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
    a->len = res->ai_addrlen;
    freeaddrinfo(res);
    return 1;
}

/* The bound address of a TCP socket as "a.b.c.d:port" or "[v6]:port". */
static char *
inet_name(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return NULL;
    char host[INET6_ADDRSTRLEN], buf[INET6_ADDRSTRLEN + 16];
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
        snprintf(buf, sizeof buf, "[%s]:%u", host, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
        snprintf(buf, sizeof buf, "%s:%u", host, ntohs(s4->sin_port));
    }
    return mp__strdup(buf);
}

/* ---- handshake I/O ----------------------------------------------------------------------- */

/* Wait for events on fd until dl. 0, -ETIMEDOUT or -EINTR. */
static int
wait_io(int fd, short events, const mp__deadline *dl)
{
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        int r = poll(&p, 1, mp__deadline_remaining_ms(dl));
        if (r > 0)
            return 0;
        if (r < 0)
            return -errno;
        if (mp__deadline_passed(dl))
            return -ETIMEDOUT;
    }
}

/* Send one frame holding payload, all of it by the deadline. */
static int
hs_send(int fd, const void *payload, size_t len, const mp__deadline *dl)
{
    uint8_t frame[4 + HS_MAX];
    size_t n = mp__conn_header(len, frame);
    memcpy(frame + n, payload, len);
    n += len;
    for (size_t done = 0; done < n;) {
        ssize_t w = send(fd, frame + done, n - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w >= 0) {
            done += (size_t)w;
            continue;
        }
        if (errno != EAGAIN)
            return errno == EPIPE ? -ECONNRESET : -errno;
        int r = wait_io(fd, POLLOUT, dl);
        if (r != 0)
            return r;
    }
    return 0;
}

/* Read exactly n bytes by the deadline; EOF is -ECONNRESET. */
static int
recv_exact(int fd, uint8_t *buf, size_t n, const mp__deadline *dl)
{
    while (n > 0) {
        ssize_t r = recv(fd, buf, n, MSG_DONTWAIT);
        if (r > 0) {
            buf += r, n -= (size_t)r;
            continue;
        }
        if (r == 0)
            return -ECONNRESET;
        if (errno != EAGAIN)
            return -errno;
        int e = wait_io(fd, POLLIN, dl);
        if (e != 0)
            return e;
    }
    return 0;
}

/* Receive one frame of at most HS_MAX bytes into buf. A longer or negative length is refused
 * before any of its payload is read. */
static int
hs_recv(int fd, uint8_t *buf, size_t *len, const mp__deadline *dl)
{
    uint8_t h[8];
    int r = recv_exact(fd, h, 4, dl);
    if (r != 0)
        return r;
    int32_t v = (int32_t)((uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3]);
    uint64_t n = (uint64_t)v;
    /* Python accepts the -1 escape with a 64-bit length even for short frames. */
    if (v == -1) {
        if ((r = recv_exact(fd, h, 8, dl)) != 0)
            return r;
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | h[i];
    } else if (v < 0) {
        return -EPROTO;
    }
    if (n > HS_MAX)
        return -EPROTO;
    *len = (size_t)n;
    return recv_exact(fd, buf, (size_t)n, dl);
}

/* ---- the handshake ----------------------------------------------------------------------- */

/* Read a "{name}" prefix of m (n bytes) as CPython's _get_digest_name_and_payload does. Sets
 * *kind and returns the prefix length; 0 for a well-formed name this library does not
 * implement (sha384, sha3_256, sha3_384: CPython offers them but never picks them on its own);
 * -1 when there is no valid prefix. */
static int
digest_prefix(const uint8_t *m, size_t n, mp__digest_kind *kind)
{
    if (n < 2 || m[0] != '{')
        return -1;
    const uint8_t *close =
        memchr(m + 1, '}', n - 1 < MAX_DIGEST_NAME + 1 ? n - 1 : MAX_DIGEST_NAME + 1);
    if (close == NULL)
        return -1;
    size_t len = (size_t)(close - m - 1);
    static const char *const others[] = {"sha384", "sha3_256", "sha3_384"};
    if (len == 3 && memcmp(m + 1, "md5", 3) == 0)
        *kind = MP__DIGEST_MD5;
    else if (len == 6 && memcmp(m + 1, "sha256", 6) == 0)
        *kind = MP__DIGEST_SHA256;
    else {
        for (size_t i = 0; i < MP__ARRAY_LEN(others); i++)
            if (len == strlen(others[i]) && memcmp(m + 1, others[i], len) == 0)
                return 0;
        return -1;
    }
    return (int)len + 2;
}

/* CPython's deliver_challenge: challenge the peer with "{sha256}" and 40 random bytes, check
 * its HMAC (SHA-256 or, unless sha256_only, the legacy raw MD5 of a 3.11 peer), and tell it
 * the verdict. */
static int
deliver(int fd, const auth *a, const mp__deadline *dl)
{
    uint8_t msg[PREFIX_LEN + 8 + MODERN_RANDOM_LEN];
    memcpy(msg, CHALLENGE "{sha256}", PREFIX_LEN + 8);
    int r = mp__random_bytes(msg + PREFIX_LEN + 8, MODERN_RANDOM_LEN);
    if (r == 0)
        r = hs_send(fd, msg, sizeof msg, dl);
    uint8_t resp[HS_MAX];
    size_t n;
    if (r == 0)
        r = hs_recv(fd, resp, &n, dl);
    if (r != 0)
        return r;
    mp__fault("listener.deliver.response");
    /* What the peer MACs is the challenge after "#CHALLENGE#", digest prefix included. */
    const uint8_t *challenge = msg + PREFIX_LEN;
    size_t clen = sizeof msg - PREFIX_LEN;
    mp__digest_kind kind = MP__DIGEST_MD5;
    const uint8_t *mac = resp;
    size_t maclen = n;
    bool ok;
    if (n == MP__MD5_LEN || n == LEGACY_CHALLENGE_LEN) {
        /* An unprefixed reply: a 3.11 peer's raw HMAC-MD5 (a 20-byte one fails the length
         * check below, as in CPython). */
        ok = !a->sha256_only;
    } else {
        int p = digest_prefix(resp, n, &kind);
        ok = p > 0 && !(a->sha256_only && kind == MP__DIGEST_MD5);
        if (ok)
            mac += p, maclen -= (size_t)p;
    }
    if (ok) {
        uint8_t expect[MP__DIGEST_MAX];
        mp__hmac(kind, a->key, a->keylen, challenge, clen, expect);
        ok = maclen == mp__digest_len(kind) && mp__ct_equal(expect, mac, maclen);
    }
    r = hs_send(fd, ok ? WELCOME : FAILURE, 9, dl);
    return ok ? r : -EACCES;
}

/* CPython's answer_challenge: answer the peer's challenge (the legacy 20-byte one with raw
 * HMAC-MD5, a "{name}" one with "{name}" + HMAC-name) and read its verdict. */
static int
answer(int fd, const auth *a, const mp__deadline *dl)
{
    uint8_t msg[HS_MAX];
    size_t n;
    int r = hs_recv(fd, msg, &n, dl);
    if (r != 0)
        return r;
    mp__fault("listener.answer.challenge");
    if (n < PREFIX_LEN + LEGACY_CHALLENGE_LEN || memcmp(msg, CHALLENGE, PREFIX_LEN) != 0)
        return -EPROTO;
    const uint8_t *challenge = msg + PREFIX_LEN;
    size_t clen = n - PREFIX_LEN;
    mp__digest_kind kind = MP__DIGEST_MD5;
    uint8_t reply[2 + MAX_DIGEST_NAME + MP__DIGEST_MAX];
    size_t plen = 0;
    if (clen != LEGACY_CHALLENGE_LEN) {
        int p = digest_prefix(challenge, clen, &kind);
        if (p < 0)
            return -EPROTO;
        if (p == 0)
            return -EACCES;
        plen = (size_t)p;
        memcpy(reply, challenge, plen);
    }
    if (a->sha256_only && kind == MP__DIGEST_MD5)
        return -EACCES;
    mp__hmac(kind, a->key, a->keylen, challenge, clen, reply + plen);
    r = hs_send(fd, reply, plen + mp__digest_len(kind), dl);
    if (r == 0)
        r = hs_recv(fd, msg, &n, dl);
    if (r != 0)
        return r;
    if (n == 9 && memcmp(msg, WELCOME, 9) == 0)
        return 0;
    return n == 9 && memcmp(msg, FAILURE, 9) == 0 ? -EACCES : -EPROTO;
}

/* ---- listener ---------------------------------------------------------------------------- */

/* Make a private 0700 directory (mkdtemp) under $TMPDIR or /tmp and put the socket path in
 * it, as Python's default Listener address: bind() creates the socket with the umask's mode,
 * and only the directory keeps other users out. */
static int
default_path(mp_listener *l, addr *a, char **out)
{
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0')
        tmp = "/tmp";
    size_t n = strlen(tmp) + sizeof "/mpipc-XXXXXX/listener";
    char *dir = mp__malloc(n), *path = mp__malloc(n);
    if (dir == NULL || path == NULL) {
        mp__free(dir);
        mp__free(path);
        return -ENOMEM;
    }
    snprintf(dir, n, "%s/mpipc-XXXXXX", tmp);
    int r = mkdtemp(dir) != NULL ? 0 : -errno;
    if (r == 0) {
        snprintf(path, n, "%s/listener", dir);
        r = unix_addr(a, path);
        if (r != 0)
            rmdir(dir);
    }
    if (r != 0) {
        mp__free(dir);
        mp__free(path);
        return r;
    }
    l->dir = dir;
    *out = path;
    return 0;
}

/* Create the listening socket in l->fd. Once bind() has created an AF_UNIX path, the listener
 * owns it (*path moves to l->path), so that any later failure, and close, unlinks it; a path
 * that bind() refused (EADDRINUSE) belongs to someone else and is left alone. */
static int
bind_listen(mp_listener *l, const addr *a, char **path, int backlog)
{
    l->fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (l->fd < 0)
        return -errno;
    int one = 1;
    if (l->inet)
        setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(l->fd, (const struct sockaddr *)&a->ss, a->len) != 0)
        return -errno;
    l->path = *path;
    *path = NULL;
    return listen(l->fd, backlog > 0 ? backlog : SOMAXCONN) == 0 ? 0 : -errno;
}

static void
listener_free(mp_listener *l)
{
    if (l->fd >= 0)
        close(l->fd);
    if (l->owner == getpid()) {
        if (l->path != NULL)
            unlink(l->path);
        if (l->dir != NULL)
            rmdir(l->dir);
    }
    mp__free(l->path);
    mp__free(l->dir);
    mp__free(l->address);
    explicit_bzero(l->key, l->keylen); /* no copy of the key left in freed memory */
    mp__free(l);
}

int
mp_listener_open(mp_listener **out, const char *address, const mp_listener_opts *opts)
{
    static const mp_listener_opts none;
    if (out != NULL)
        *out = NULL;
    if (opts == NULL)
        opts = &none;
    if (out == NULL || (opts->authkey == NULL && opts->authkey_len > 0) || opts->backlog < 0 ||
        opts->handshake_timeout_ms < MP_FOREVER || opts->authkey_len > SIZE_MAX / 2)
        return -EINVAL;
    mp_listener *l = mp__calloc(1, sizeof *l + opts->authkey_len);
    if (l == NULL)
        return -ENOMEM;
    l->fd = -1;
    l->owner = getpid();
    l->has_key = opts->authkey != NULL;
    l->sha256_only = opts->sha256_only;
    l->hs_timeout_ms =
        opts->handshake_timeout_ms == 0 ? HS_DEFAULT_TIMEOUT_MS : opts->handshake_timeout_ms;
    l->keylen = opts->authkey_len;
    if (opts->authkey_len > 0)
        memcpy(l->key, opts->authkey, opts->authkey_len);

    addr a;
    char *path = NULL; /* an AF_UNIX path, until bind() has created it */
    int r;
    if (address == NULL) {
        r = default_path(l, &a, &path);
    } else if ((r = parse_inet(&a, address, true)) == 0) {
        r = unix_addr(&a, address);
        if (r == 0 && (path = mp__strdup(address)) == NULL)
            r = -ENOMEM;
    }
    l->inet = r == 1;
    if (r >= 0)
        r = bind_listen(l, &a, &path, opts->backlog);
    mp__free(path);
    if (r == 0) {
        l->address = l->inet ? inet_name(l->fd) : mp__strdup(l->path);
        if (l->address == NULL)
            r = -ENOMEM;
    }
    if (r != 0) {
        listener_free(l);
        return r;
    }
    *out = l;
    return 0;
}

/* Whether accept4() failed for the pending connection only (it was reset or hit a network
 * error already), so that the next one may be taken. */
static bool
accept_transient(int e)
{
    return e == ECONNABORTED || e == EPROTO || e == ENETDOWN || e == ENOPROTOOPT ||
           e == EHOSTDOWN || e == ENONET || e == EHOSTUNREACH || e == EOPNOTSUPP ||
           e == ENETUNREACH;
}

static void
set_nodelay(int fd)
{
    /* Every message goes out in one send; Nagle would only delay replies. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int
mp_listener_accept(mp_listener *l, mp_conn **out, int timeout_ms)
{
    if (l == NULL || out == NULL)
        return -EINVAL;
    *out = NULL;
    mp__deadline dl;
    int r = mp__deadline_init(&dl, timeout_ms);
    if (r != 0)
        return r;
    int fd;
    for (;;) {
        fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0)
            break;
        int e = errno;
        if (accept_transient(e))
            continue;
        if (e != EAGAIN)
            return -e;
        if (timeout_ms == MP_NOWAIT)
            return -EAGAIN;
        if ((r = wait_io(l->fd, POLLIN, &dl)) != 0)
            return r;
    }
    mp__fault("listener.accept.accepted");
    if (l->inet)
        set_nodelay(fd);
    if (l->has_key) {
        /* The handshake gets the smaller of what is left of the call and its own bound. */
        mp__deadline hs;
        mp__deadline_init(&hs, l->hs_timeout_ms);
        if (timeout_ms != MP_NOWAIT && dl.abs_ns < hs.abs_ns)
            hs = dl;
        auth a = {l->key, l->keylen, l->sha256_only};
        r = deliver(fd, &a, &hs);
        if (r == 0)
            r = answer(fd, &a, &hs);
    }
    if (r == 0)
        r = mp__conn_wrap(out, fd, l->inet);
    if (r != 0)
        close(fd);
    return r;
}

const char *
mp_listener_address(const mp_listener *l)
{
    return l == NULL ? NULL : l->address;
}

int
mp_listener_fileno(const mp_listener *l)
{
    return l == NULL ? -EINVAL : l->fd;
}

void
mp_listener_close(mp_listener *l)
{
    if (l != NULL)
        listener_free(l);
}

/* ---- client ------------------------------------------------------------------------------ */

/* Connect fd to a within the deadline. A blocking connect() bounded by SO_SNDTIMEO waits for
 * room in an AF_UNIX listener's backlog as well as for a TCP handshake, which a non-blocking
 * connect() cannot do for AF_UNIX (it fails with EAGAIN and offers nothing to poll). */
static int
connect_by(int fd, const addr *a, const mp__deadline *dl, int timeout_ms)
{
    if (timeout_ms == MP_NOWAIT) {
        int fl = fcntl(fd, F_GETFL);
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
        int r = connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0 ? 0 : -errno;
        fcntl(fd, F_SETFL, fl);
        return r == -EINPROGRESS ? -EAGAIN : r;
    }
    if (!mp__deadline_forever(dl)) {
        int64_t left = dl->abs_ns - mp__now_ns();
        if (left <= 0)
            return -ETIMEDOUT;
        /* Rounded up to whole microseconds, so that a tiny remainder is not 0 (forever). */
        struct timeval tv = {(time_t)(left / 1000000000), (long)((left % 1000000000 + 999) / 1000)};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    int r = connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0 ? 0 : -errno;
    struct timeval zero = {0, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &zero, sizeof zero);
    /* SO_SNDTIMEO expiry shows as EINPROGRESS (TCP) or EAGAIN (AF_UNIX). */
    return r == -EINPROGRESS || r == -EAGAIN ? -ETIMEDOUT : r;
}

int
mp_client_connect(mp_conn **out, const char *address, const mp_client_opts *opts, int timeout_ms)
{
    static const mp_client_opts none;
    if (out != NULL)
        *out = NULL;
    if (opts == NULL)
        opts = &none;
    if (out == NULL || address == NULL || (opts->authkey == NULL && opts->authkey_len > 0))
        return -EINVAL;
    mp__deadline dl;
    int r = mp__deadline_init(&dl, timeout_ms);
    if (r != 0)
        return r;
    addr a;
    r = parse_inet(&a, address, false);
    bool inet = r == 1;
    if (r == 0)
        r = unix_addr(&a, address);
    if (r < 0)
        return r;
    int fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    r = connect_by(fd, &a, &dl, timeout_ms);
    if (r == 0 && inet)
        set_nodelay(fd);
    if (r == 0 && opts->authkey != NULL) {
        auth au = {opts->authkey, opts->authkey_len, opts->sha256_only};
        r = answer(fd, &au, &dl);
        if (r == 0)
            r = deliver(fd, &au, &dl);
        if (r == -ETIMEDOUT && timeout_ms == MP_NOWAIT)
            r = -EAGAIN;
    }
    if (r == 0)
        r = mp__conn_wrap(out, fd, inet);
    if (r != 0)
        close(fd);
    return r;
}
