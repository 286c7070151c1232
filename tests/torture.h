/*
 * torture.h - the machinery the crash-torture executables share: a seeded random stream, a
 * per-worker progress record in shared memory, and killing one worker at a random moment and
 * reaping the rest within a bound.
 *
 * The seed comes from MPIPC_TORTURE_SEED or the clock and is printed, so a failing run can be
 * repeated. Kill moments are random on purpose (that is the fault being injected); nothing that
 * an assertion depends on is ordered by sleeping.
 */
#ifndef MPIPC_TEST_TORTURE_H
#define MPIPC_TEST_TORTURE_H

#include "helpers.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define TT_MAX_WORKERS 4
/* Every survivor must have finished within this bound after the kill. */
#define TT_BOUND_MS 20000

/* Per-worker progress in shared memory: operations attempted and operations completed (and
 * recorded). A worker killed between the two leaves one operation in flight. */
struct tt_progress {
    _Atomic long done[TT_MAX_WORKERS];
    _Atomic long attempted[TT_MAX_WORKERS];
};

extern uint64_t tt_seed;

/* tt_init - take the seed from MPIPC_TORTURE_SEED or the clock and print it; run only the
 * tests whose names match MPIPC_TORTURE_ONLY (a cmocka pattern such as '*queue*') if set. */
void tt_init(void);

/* tt_rand - the next number of the seeded stream. */
uint64_t tt_rand(void);

/* tt_next - the next number of a worker's own stream in *state (xorshift64; start it from a
 * tt_rand() | 1). */
uint64_t tt_next(uint64_t *state);

/* tt_ops - `normal` operations per worker and round, fewer under a sanitizer or valgrind,
 * which slow each operation down several times: a round then lasts about as long as in a normal build
 * (so the kills land as often) and the torture stays within CI's time in every build. */
long tt_ops(long normal);

/* tt_rounds - the rounds of a kind whose normal count is `normal`: MPIPC_TORTURE_ROUNDS when
 * set (the same for every kind, at least 1), a quarter under valgrind (every operation is tens of
 * times slower there, and the suite must stay within CI's time), else `normal`. */
int tt_rounds(int normal);

/* tt_checksum - FNV-1a of n bytes. */
uint32_t tt_checksum(const void *p, size_t n);

/* tt_spawn - fork n workers, worker w running fn(ctx + w * size), and return once they are all
 * running, released together: forking takes longer than many operations do, and a worker
 * must not finish before the last is born. Returns 0, or -1 (nothing left running). */
int tt_spawn(pid_t *pids, int n, int (*fn)(void *), void *ctx, size_t size);

/* tt_has_exited - true once pid has ended; it stays unreaped (WNOWAIT) for tt_reap_all. */
bool tt_has_exited(pid_t pid);

/* tt_kill_one - SIGKILL a random one of the n workers once it has attempted a random number of
 * its `ops` operations (or has ended). Returns the victim's index. */
int tt_kill_one(const pid_t *pids, int n, struct tt_progress *pr, long ops);

/* tt_reap_all - reap the n workers within the bound. The victim may have been killed (then it
 * counts) or have finished first; every other worker must have ended by itself with status 0.
 * Returns the number of workers really killed (0 or 1), or -1 if a survivor failed or hung. */
int tt_reap_all(const pid_t *pids, int n, int victim);

/* tt_round - one round: tt_spawn n workers on fn, tt_kill_one, tt_reap_all, asserting (in the
 * test) that spawning worked and every survivor succeeded; adds the kill to *kills. Returns the
 * victim's index if it was really killed, else -1 (it had finished). */
int tt_round(int (*fn)(void *), void *ctx, size_t size, int n, struct tt_progress *pr, long ops,
             long *kills);

/* tt_sum_done - the operations the first n workers completed. */
long tt_sum_done(const struct tt_progress *pr, int n);

#endif
