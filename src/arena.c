/*
 * arena.c - the shared small-object arena; see arena.h for the ownership rules.
 *
 * Blocks come in power-of-two size classes from 16 bytes to 64 KiB, bump-allocated from the
 * newest chunk and recycled through per-class free lists. The free lists and the chunk table
 * live in this process's private memory, not in the shared chunks: a process that scribbles
 * over a block it no longer owns can damage that object, but never the allocator.
 */
#include "internal.h"

#include "arena.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MIN_SHIFT 4
#define MAX_SHIFT 16
#define NCLASS (MAX_SHIFT - MIN_SHIFT + 1)
#define CHUNK_FIRST ((size_t)1 << 20)
#define CHUNK_LAST ((size_t)64 << 20)

typedef struct chunk {
    char *base;
    size_t size;
    size_t used; /* bump offset; unused for big blocks */
    bool big;    /* one block of its own, unmapped when freed */
} chunk;

typedef struct freelist {
    void **v;
    size_t n, cap;
} freelist;

static struct {
    pthread_mutex_t mu;
    /* Set in a forked child: the tables describe the parent's chunks. They are dropped on the
     * child's first arena call rather than in the fork handler, which must stay minimal. */
    bool inherited;
    chunk *chunks;
    size_t n, cap;
    size_t next_size;
    freelist free[NCLASS];
} A = {.mu = PTHREAD_MUTEX_INITIALIZER, .next_size = CHUNK_FIRST};

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* Holding the mutex across fork() means the child never inherits it locked by a thread that
 * does not exist there, and never sees half-updated tables. */
static void
fork_prepare(void)
{
    pthread_mutex_lock(&A.mu);
}

static void
fork_parent(void)
{
    pthread_mutex_unlock(&A.mu);
}

static void
fork_child(void)
{
    A.inherited = true;
    pthread_mutex_unlock(&A.mu);
}

static void
register_atfork(void)
{
    if (pthread_atfork(fork_prepare, fork_parent, fork_child) != 0)
        mp__panic("arena: pthread_atfork failed");
}

/* Lock the arena, first forgetting the tables a forked child inherited. The parent's chunks
 * stay mapped in the child (its objects live there); they are only no longer this process's. */
static void
arena_lock(void)
{
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&A.mu);
    if (MP__UNLIKELY(A.inherited)) {
        mp__free(A.chunks);
        for (size_t i = 0; i < NCLASS; i++)
            mp__free(A.free[i].v);
        memset(A.free, 0, sizeof A.free);
        A.chunks = NULL;
        A.n = A.cap = 0;
        A.next_size = CHUNK_FIRST;
        A.inherited = false;
    }
}

static unsigned
class_of(size_t size)
{
    unsigned c = 0;
    while (((size_t)1 << (c + MIN_SHIFT)) < size)
        c++;
    return c;
}

static int
map_chunk(size_t size, bool big, chunk **out)
{
    if (A.n == A.cap) {
        size_t cap = A.cap ? A.cap * 2 : 16;
        chunk *v = mp__realloc(A.chunks, cap * sizeof *v);
        if (v == NULL)
            return -ENOMEM;
        A.chunks = v;
        A.cap = cap;
    }
    /* The memfd is closed as soon as the chunk is mapped: the mapping keeps the memory alive
     * and fork() carries it to children, so no fd is held for the life of the program. */
    mp__seg seg;
    int r = mp__seg_create(&seg, NULL, size);
    if (r != 0)
        return r;
    close(seg.fd);
    chunk *c = &A.chunks[A.n++];
    *c = (chunk){.base = seg.addr, .size = size, .used = 0, .big = big};
    *out = c;
    return 0;
}

static chunk *
find_chunk(const void *ptr)
{
    const char *p = ptr;
    for (size_t i = A.n; i-- > 0;)
        if (p >= A.chunks[i].base && p < A.chunks[i].base + A.chunks[i].size)
            return &A.chunks[i];
    return NULL;
}

/* The newest small chunk, which is the only one bump allocation uses. */
static chunk *
bump_chunk(void)
{
    for (size_t i = A.n; i-- > 0;)
        if (!A.chunks[i].big)
            return &A.chunks[i];
    return NULL;
}

static int
alloc_big(size_t size, void **out)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    chunk *c;
    int r = map_chunk((size + page - 1) / page * page, true, &c);
    if (r == 0)
        *out = c->base;
    return r;
}

static int
alloc_small(size_t size, void **out)
{
    unsigned cls = class_of(size);
    size_t bsize = (size_t)1 << (cls + MIN_SHIFT);
    freelist *fl = &A.free[cls];
    if (fl->n > 0) {
        void *p = fl->v[--fl->n];
        memset(p, 0, bsize);
        *out = p;
        return 0;
    }
    size_t align = bsize < 64 ? bsize : 64;
    chunk *c = bump_chunk();
    size_t off = c ? (c->used + align - 1) & ~(align - 1) : 0;
    if (c == NULL || off + bsize > c->size) {
        while (A.next_size < bsize)
            A.next_size *= 2;
        int r = map_chunk(A.next_size, false, &c);
        if (r != 0)
            return r;
        if (A.next_size < CHUNK_LAST)
            A.next_size *= 2;
        off = 0;
    }
    c->used = off + bsize;
    *out = c->base + off; /* fresh tmpfs pages are already zero */
    return 0;
}

int
mp__arena_alloc(size_t size, void **out)
{
    if (size == 0 || out == NULL)
        return -EINVAL;
    arena_lock();
    int r = size > MP__ARENA_SMALL_MAX ? alloc_big(size, out) : alloc_small(size, out);
    pthread_mutex_unlock(&A.mu);
    return r;
}

bool
mp__arena_free(void *ptr, size_t size)
{
    if (ptr == NULL)
        return false;
    arena_lock();
    chunk *c = find_chunk(ptr);
    bool freed = c != NULL;
    if (c != NULL && c->big) {
        munmap(c->base, c->size);
        /* Keep the table in allocation order: bump_chunk() relies on it. */
        size_t i = (size_t)(c - A.chunks);
        memmove(c, c + 1, (A.n - i - 1) * sizeof *c);
        A.n--;
    } else if (c != NULL) {
        freelist *fl = &A.free[class_of(size)];
        if (fl->n == fl->cap) {
            size_t cap = fl->cap ? fl->cap * 2 : 64;
            void **v = mp__realloc(fl->v, cap * sizeof *v);
            /* Without room in the list the block is simply not reused. */
            if (v != NULL) {
                fl->v = v;
                fl->cap = cap;
            }
        }
        if (fl->n < fl->cap)
            fl->v[fl->n++] = ptr;
    }
    pthread_mutex_unlock(&A.mu);
    return freed;
}

bool
mp__arena_owns(const void *ptr)
{
    if (ptr == NULL)
        return false;
    arena_lock();
    bool owned = find_chunk(ptr) != NULL;
    pthread_mutex_unlock(&A.mu);
    return owned;
}
