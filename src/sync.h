/*
 * sync.h - the sync module's internals: in-place construction for other modules (the manager
 * builds sync objects inside its own region; Value/Array take a lock from here) and what
 * sync.c and sync_wait.c share.
 *
 * In place: mp__<type>_init_at() builds an object in `mem` (MP__<TYPE>_SIZE bytes, 8-byte
 * aligned, shared by the processes that will use it) and mp__<type>_wrap() makes a handle for
 * it in any process that maps it. Such a handle never frees the memory: its _close() frees only
 * the handle, and the owner of the region decides when the object is gone (re-initialising or
 * releasing the memory only once nobody waits on it). The objects hold no pointers, so the
 * region may sit at a different address in each process (a named segment attached later).
 */
#ifndef MPIPC_SYNC_H
#define MPIPC_SYNC_H

#include "internal.h"

#define MP__LOCK_SIZE 128
/* A lock never touches the bytes of its MP__LOCK_SIZE block from this offset on, which share a
 * cache line with its mutex: the Value module keeps small data there, so that a contended
 * locked update moves one cache line between CPUs instead of two. 8-byte aligned. */
#define MP__LOCK_SPARE 104
#define MP__SEMAPHORE_SIZE 64
#define MP__EVENT_SIZE 64
#define MP__CONDITION_SIZE 256
#define MP__BARRIER_SIZE 128

/* Each returns 0 or -EINVAL (NULL or misaligned mem, bad value); a wrap of memory that does not
 * hold a live object of that type is -EINVAL; -ENOMEM for the handle. */
int mp__lock_init_at(void *mem, bool recursive);
int mp__lock_wrap(mp_lock **out, void *mem);
/* mp__lock_held - true if the calling thread holds the lock (one load, no system call). */
bool mp__lock_held(const mp_lock *l);
int mp__semaphore_init_at(void *mem, unsigned value, bool bounded);
int mp__semaphore_wrap(mp_semaphore **out, void *mem);
int mp__condition_init_at(void *mem); /* with its own recursive lock */
/* lock: the lock the condition uses in this process (as mp_condition_opts.lock), or NULL for
 * the condition's own. */
int mp__condition_wrap(mp_condition **out, void *mem, mp_lock *lock);
int mp__event_init_at(void *mem);
int mp__event_wrap(mp_event **out, void *mem);
int mp__barrier_init_at(void *mem, unsigned parties);
/* opts: the handle's action and default timeout, as mp_barrier_open's; may be NULL. */
int mp__barrier_wrap(mp_barrier **out, void *mem, const mp_barrier_opts *opts);

/* mp__<type>_pin - give a wrapped handle the pin its close drops (internal.h). */
void mp__lock_pin(mp_lock *l, mp__pin pin);
void mp__semaphore_pin(mp_semaphore *s, mp__pin pin);
void mp__condition_pin(mp_condition *c, mp__pin pin);
void mp__event_pin(mp_event *e, mp__pin pin);
void mp__barrier_pin(mp_barrier *b, mp__pin pin);

/* ---- shared by sync.c and sync_wait.c -------------------------------------------------------- */

/* Every shared sync object starts with this header. `gen` is odd while the object is alive and
 * is bumped when its creator frees it, so that a stale handle in another process sees -EBADF
 * instead of silently using memory that may be handed out again. */
typedef struct mp__sync_hdr {
    _Atomic uint32_t gen;
    uint32_t kind;
} mp__sync_hdr;

enum {
    MP__KIND_LOCK = 0x6b4c4d50,  /* "PMLk" */
    MP__KIND_RLOCK = 0x6b524d50, /* "PMRk" */
    MP__KIND_SEM = 0x6d534d50,
    MP__KIND_BSEM = 0x6d424d50,
    MP__KIND_COND = 0x64434d50,
    MP__KIND_EVENT = 0x76454d50,
    MP__KIND_BARRIER = 0x72424d50,
};

/* Mark an object alive under a new generation; returns that generation. */
uint32_t mp__sync_hdr_init(mp__sync_hdr *h, uint32_t kind);
/* The generation to store in a handle for `mem`, or 0 if mem holds no live object of `kind`. */
uint32_t mp__sync_hdr_check(const void *mem, uint32_t kind);
/* Free an arena block holding an object: only in its creating process (see arena.h). */
void mp__sync_free(mp__sync_hdr *h, size_t size);

static inline bool
mp__sync_stale(const mp__sync_hdr *h, uint32_t gen)
{
    return atomic_load_explicit(&h->gen, memory_order_relaxed) != gen;
}

#endif
