/*
 * arena.h - the shared small-object arena (Python's multiprocessing.heap), internal.
 *
 * Small shared objects (locks, semaphores, Values) are carved out of a few large memfd-backed
 * MAP_SHARED chunks instead of getting one mapping each, so 100k of them cost a few mappings and
 * no fds. A block is visible to every process forked after it was allocated, at the same
 * address.
 *
 * Ownership: each process allocates from its own chunks. A child forked from a process inherits
 * the parent's chunks (its objects stay usable) but never allocates from them or frees into
 * them: only the process that allocated a block may free it, and it must do so only once no
 * other process uses the object any more (as in Python). A free by any other process is a
 * no-op that reports false, so a close in a child can never corrupt the parent's allocator.
 */
#ifndef MPIPC_ARENA_H
#define MPIPC_ARENA_H

#include <stdbool.h>
#include <stddef.h>

/* Blocks of up to this size come from the shared chunks; larger ones get a mapping of their own
 * (still owned and freed the same way). */
#define MP__ARENA_SMALL_MAX ((size_t)64 * 1024)

/* mp__arena_alloc - a zero-filled shared block of at least `size` bytes, aligned to 64 bytes (a
 * cache line, so that two hot objects never share one) or to its size class if smaller.
 * Returns 0 and stores it in *out, -EINVAL for size 0, -ENOMEM or -ENOSPC (tmpfs full). */
int mp__arena_alloc(size_t size, void **out);

/* mp__arena_free - give back a block that this process allocated with the same `size`. Returns
 * true if it was freed, false (and nothing happens) if the block belongs to another process
 * (typically the parent) or is not an arena block. NULL returns false. */
bool mp__arena_free(void *ptr, size_t size);

/* mp__arena_owns - true if ptr is a block allocated by this process (not inherited). */
bool mp__arena_owns(const void *ptr);

#endif
