/*
 * manager_work.h - what a process other than the owner does with a manager's named objects.
 * Linked into test_manager_objects (for forked children) and into the manager_peer program
 * (started with exec, attached by name), so both kinds of process run the very same code.
 */
#ifndef MPIPC_TEST_MANAGER_WORK_H
#define MPIPC_TEST_MANAGER_WORK_H

#include "mpipc.h"

#include <stdio.h>

/* Fail the worker: print where and return 1 (the process's exit status). */
#define MW_CHECK(expr)                                                                             \
    do {                                                                                           \
        if (!(expr)) {                                                                             \
            fprintf(stderr, "%s:%d: worker check failed: %s\n", __FILE__, __LINE__, #expr);        \
            fflush(stderr);                                                                        \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

#define MW_MESSAGES 100   /* each worker puts this many messages on "q" */
#define MW_INCREMENTS 500 /* each process adds this many to "counter" under "lock" */

/* mw_every_type - worker `who` (1: the forked child, 2: the exec'd peer) uses every managed
 * type by name, in lock step with the owner and the other worker through the 3-party barrier
 * "bar" (see test_every_type_from_a_forked_child_and_an_exec_peer). 0 or 1. */
int mw_every_type(mp_manager *m, int who);

/* mw_hold - take the lock "held", set the event "holding", then wait for the event "never"
 * (so the owner can kill the process while it holds the lock and waits). */
int mw_hold(mp_manager *m);

/* mw_hammer - forever: take the lock "hl", add one to the raw Value "hc", release, put the
 * message "<i>" (i = 0, 1, ...) on the queue "hq". Returns only on an error (then 1). */
int mw_hammer(mp_manager *m);

/* mw_barrier_action - the barrier action every process gives its own handle: adds one to the
 * raw 'q' Value it is passed. */
int mw_barrier_action(void *value);

#endif
