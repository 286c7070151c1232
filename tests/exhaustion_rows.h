/*
 * exhaustion_rows.h - the table of constructors that tests/test_exhaustion.c runs out of each
 * resource: one row per constructor, with what one attempt needs made beforehand.
 */
#ifndef MPIPC_TEST_EXHAUSTION_ROWS_H
#define MPIPC_TEST_EXHAUSTION_ROWS_H

#include <stdbool.h>
#include <stddef.h>

#include "mpipc.h"

struct row {
    const char *name;
    int (*prep)(void);       /* prerequisites of one attempt, made without faults (may be NULL) */
    int (*open)(void **obj); /* the constructor: *obj gets what it filled in *out */
    void (*close)(void *obj);
    void (*unprep)(void);
    bool (*clean)(void); /* after a failure: nothing half-created that a snapshot cannot see */
    bool forks;          /* starts a process: must fail with -EAGAIN when fork does */
};

/* Every constructor, made with ordinary arguments. The managed-object rows use `mgr`, which
 * the tests open (served, so that attach has something to reach). */
extern const struct row rows[];
extern const size_t n_rows;
extern mp_manager *mgr;
/* The AF_UNIX path of the served-manager row; main() puts it in its private $TMPDIR. */
extern char unix_addr[96];

/* find_row - the row of that name (NULL if none). */
const struct row *find_row(const char *name);

/* Objects too large for a small /dev/shm or file size limit; big_size is the size of the
 * shared memory segments. */
extern const struct row big_rows[];
enum { BIG_SHM, BIG_SHM_GEN, BIG_SHLIST, BIG_MANAGER, BIG_QUEUE, BIG_ARRAY, BIG_MARRAY };
extern size_t big_size;

#endif
