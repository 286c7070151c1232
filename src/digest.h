/*
 * digest.h - MD5, SHA-256 and HMAC for the connection handshake (internal).
 *
 * Implemented inside the library because mpipc takes no crypto dependency. They serve CPython's
 * authkey handshake only: HMAC-MD5 for 3.11 peers, HMAC-SHA256 for 3.12+.
 */
#ifndef MPIPC_DIGEST_H
#define MPIPC_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MP__MD5_LEN 16
#define MP__SHA256_LEN 32
#define MP__DIGEST_MAX 32

typedef enum mp__digest_kind { MP__DIGEST_MD5, MP__DIGEST_SHA256 } mp__digest_kind;

/* mp__digest_len - 16 for MD5, 32 for SHA-256. */
size_t mp__digest_len(mp__digest_kind kind);

/* mp__digest - the plain hash of msg into out (mp__digest_len bytes). */
void mp__digest(mp__digest_kind kind, const void *msg, size_t len, uint8_t *out);

/* mp__hmac - HMAC (RFC 2104) of msg under key into out (mp__digest_len bytes). */
void mp__hmac(mp__digest_kind kind, const void *key, size_t keylen, const void *msg, size_t len,
              uint8_t *out);

/* mp__ct_equal - whether a and b hold the same n bytes, in time that depends on n only. */
bool mp__ct_equal(const void *a, const void *b, size_t n);

#endif /* MPIPC_DIGEST_H */
