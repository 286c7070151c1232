/*
 * mheap.c - the manager's growable shared heap, container locks and redo records.
 *
 * The heap is one named segment (mp_shm). Every process reserves an address range as large as
 * the heap may ever grow (PROT_NONE, MAP_NORESERVE: no memory is committed) and maps the file
 * at its start. Growth happens under the heap lock: posix_fallocate extends the file (a full
 * /dev/shm gives -ENOSPC, never a later SIGBUS), then one store publishes the new size. Each
 * process extends its own mapping inside its reservation when it sees a larger size, so an
 * address never moves within a process and offsets stay valid everywhere.
 *
 * The allocator has power-of-two size classes with a free list each. Every change to its
 * metadata is a single store (pop: the head; push: the link, then the head; bump: the pointer),
 * so a process killed at any point leaves it consistent: at worst the block being taken or
 * given back is lost until the manager goes.
 */
#include "manager.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#define BLOCK_HDR 16
#define BLOCK_LIVE 0x4b4c42504du /* "MPBLK" */
#define BLOCK_FREE 0x45455246u   /* "FREE" */
#define MIN_SHIFT 5
#define GROW_STEP ((uint64_t)64 << 10) /* sizes are multiples of this (page aligned) */
#define GROW_MAX_STEP ((uint64_t)256 << 20)
#define INITIAL_SIZE ((uint64_t)256 << 10)

/* Compiler barriers: a killed process's stores all reach memory, but only in the order the
 * compiler emitted them; these keep that order the program's. */
static inline void
barrier(void)
{
    atomic_signal_fence(memory_order_seq_cst);
}

static uint64_t
round_up(uint64_t v, uint64_t to)
{
    return (v + to - 1) / to * to;
}

static int
lock_heap(mp__heap *h)
{
    mp__heap_hdr *hd = mp__heap_hdr_of(h);
    int r = mp__mutex_lock(&hd->lock, NULL);
    if (r < 0)
        return r;
    /* Every allocator change is one store: after a holder's death there is nothing to repair. */
    if (r == MP_OWNERDEAD)
        mp__mutex_consistent(&hd->lock);
    r = mp__heap_sync(h);
    if (r != 0)
        mp__mutex_unlock(&hd->lock);
    return r;
}

int
mp__heap_sync(mp__heap *h)
{
    size_t want = (size_t)atomic_load_explicit(&mp__heap_hdr_of(h)->size, memory_order_acquire);
    size_t have = atomic_load_explicit(&h->mapped, memory_order_acquire);
    if (MP__LIKELY(want <= have))
        return 0;
    if (want > h->reserve)
        mp__panic("manager heap: size %zu beyond its reserve %zu", want, h->reserve);
    /* One thread maps each new range, under a lock that a fork from one thread while another
     * maps here cannot leave locked in the child (mp__pidlock). Without it, threads racing
     * here would map the same range twice: harmless to the threads already using it (the
     * same file pages at the same address), but to ThreadSanitizer the second mmap is a write
     * racing with theirs. */
    mp__pidlock_lock(&h->map_lock);
    have = atomic_load_explicit(&h->mapped, memory_order_acquire);
    int r = 0;
    if (have < want) {
        void *p = mmap(h->base + have, want - have, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                       h->fd, (off_t)have);
        if (p == MAP_FAILED)
            r = errno == EAGAIN ? -ENOMEM : -errno;
        else
            atomic_store_explicit(&h->mapped, want, memory_order_release);
    }
    mp__pidlock_unlock(&h->map_lock);
    return r;
}

int
mp__heap_create(mp__heap **out, const char *name, size_t reserve)
{
    reserve = (size_t)round_up(reserve, GROW_STEP);
    if (reserve < INITIAL_SIZE)
        reserve = INITIAL_SIZE;
    mp__heap *h = mp__calloc(1, sizeof *h);
    if (h == NULL)
        return -ENOMEM;
    /* The segment starts small; the heap itself maps and grows the file from here on. */
    mp_shm_opts so = {.name = name, .create = true, .size = 4096, .sweep = name == NULL};
    int r = mp_shm_open(&h->shm, &so);
    if (r != 0) {
        mp__free(h);
        return r;
    }
    h->fd = mp__shm_fd(h->shm);
    h->reserve = reserve;
    r = -posix_fallocate(h->fd, 0, (off_t)INITIAL_SIZE);
    if (r == 0) {
        h->base =
            mmap(NULL, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (h->base == MAP_FAILED) {
            h->base = NULL;
            r = -errno;
        }
    }
    if (r == 0 && mmap(h->base, INITIAL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, h->fd,
                       0) == MAP_FAILED)
        r = -errno;
    mp__heap_hdr *hd = (mp__heap_hdr *)h->base;
    if (r == 0)
        r = mp__mutex_init(&hd->lock);
    if (r != 0) {
        if (h->base != NULL)
            munmap(h->base, reserve);
        mp_shm_unlink(h->shm);
        mp_shm_close(h->shm);
        mp__free(h);
        return r == -EAGAIN ? -ENOMEM : r;
    }
    hd->reserve = reserve;
    hd->bump = round_up(sizeof *hd, 64);
    atomic_store(&hd->size, INITIAL_SIZE);
    /* The magic is stored by mp__heap_publish, once the creator has built the name table:
     * until then a process attaching by name waits. */
    atomic_store(&h->mapped, INITIAL_SIZE);
    atomic_store(&h->refs, 1);
    *out = h;
    return 0;
}

void
mp__heap_publish(mp__heap *h, uint64_t root)
{
    mp__heap_hdr *hd = mp__heap_hdr_of(h);
    hd->root = root;
    __atomic_store_n(&hd->magic, MP__HEAP_MAGIC, __ATOMIC_RELEASE);
}

_Static_assert(offsetof(mp__heap_hdr, magic) == 0 && offsetof(mp__heap_hdr, reserve) == 8 &&
                   offsetof(mp__heap_hdr, size) == 16,
               "probe() reads the first three words of the heap header");

/* probe - open the heap called path if it is ready: its fd and header words, 0; -ENOENT when
 * there is no such name or it is not (yet) a published heap; other errors of shm_open. */
static int
probe(const char *path, int *fd, uint64_t words[3])
{
    *fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
    if (*fd < 0)
        return -errno;
    /* magic, reserve, size: the first three words of the header. The magic is stored last
     * (release), and reading it through the page cache with pread sees it and what came before. */
    ssize_t n = pread(*fd, words, 3 * sizeof(uint64_t), 0);
    if (n == (ssize_t)(3 * sizeof(uint64_t)) && words[0] == MP__HEAP_MAGIC)
        return 0;
    close(*fd);
    *fd = -1;
    return n < 0 ? -errno : -ENOENT;
}

int
mp__heap_attach(mp__heap **out, const char *path, int timeout_ms)
{
    mp__deadline dl;
    int r = mp__deadline_init(&dl, timeout_ms);
    if (r != 0)
        return r;
    int fd;
    uint64_t w[3];
    /* Nothing can be waited on for a name that does not exist yet, so look again every 10 ms
     * until the deadline (a manager being created publishes its heap within microseconds). */
    while ((r = probe(path, &fd, w)) == -ENOENT) {
        int left = mp__deadline_remaining_ms(&dl);
        if (left == 0)
            return -ENOENT;
        struct timespec ts = {0, (left < 0 || left > 10 ? 10 : left) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (r != 0)
        return r;
    size_t reserve = (size_t)w[1], size = (size_t)w[2];
    mp__heap *h = mp__calloc(1, sizeof *h);
    if (h == NULL || size > reserve || size < INITIAL_SIZE) {
        close(fd);
        mp__free(h);
        return h == NULL ? -ENOMEM : -EINVAL;
    }
    h->fd = fd;
    h->reserve = reserve;
    h->base = mmap(NULL, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (h->base == MAP_FAILED ||
        mmap(h->base, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
        r = errno == EAGAIN ? -ENOMEM : -errno;
        if (h->base != MAP_FAILED)
            munmap(h->base, reserve);
        close(fd);
        mp__free(h);
        return r;
    }
    atomic_store(&h->mapped, size);
    atomic_store(&h->refs, 1);
    /* Map whatever it grew to since the header was read. */
    if ((r = mp__heap_sync(h)) != 0) {
        mp__heap_unref(h);
        return r;
    }
    *out = h;
    return 0;
}

void
mp__heap_ref(mp__heap *h)
{
    atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
}

void
mp__heap_unref(mp__heap *h)
{
    if (h == NULL || atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) != 1)
        return;
    munmap(h->base, h->reserve);
    if (h->shm != NULL)
        mp_shm_close(h->shm);
    else
        close(h->fd);
    mp__free(h);
}

static unsigned
size_class(uint64_t total)
{
    unsigned c = 0;
    while (((uint64_t)1 << (c + MIN_SHIFT)) < total)
        c++;
    return c;
}

/* grow - extend the file so that `need` more bytes fit above bump. Heap lock held. */
static int
grow(mp__heap *h, uint64_t need)
{
    mp__heap_hdr *hd = mp__heap_hdr_of(h);
    uint64_t size = atomic_load_explicit(&hd->size, memory_order_relaxed);
    uint64_t want = hd->bump + need;
    if (want > hd->reserve || want < need)
        return -ENOMEM;
    uint64_t step = size < GROW_MAX_STEP ? size : GROW_MAX_STEP;
    uint64_t target = round_up(want > size + step ? want : size + step, GROW_STEP);
    if (target > hd->reserve)
        target = hd->reserve;
    int r;
    do
        r = -posix_fallocate(h->fd, 0, (off_t)target);
    while (r == -EINTR);
    if (r != 0)
        return r;
    /* Killed here, the file is larger than `size` says; the next growth covers it again. */
    mp__fault("manager.heap.grown");
    atomic_store_explicit(&hd->size, target, memory_order_release);
    return mp__heap_sync(h);
}

uint64_t
mp__heap_alloc(mp__heap *h, size_t size, int *err)
{
    if (size > ((uint64_t)1 << (MIN_SHIFT + MP__HEAP_CLASSES - 1)) - BLOCK_HDR) {
        *err = -ENOMEM;
        return 0;
    }
    unsigned c = size_class(size + BLOCK_HDR);
    uint64_t bsz = (uint64_t)1 << (c + MIN_SHIFT);
    mp__heap_hdr *hd = mp__heap_hdr_of(h);
    int r = lock_heap(h);
    if (r != 0) {
        *err = r;
        return 0;
    }
    uint64_t off = hd->free[c];
    if (off != 0) {
        uint64_t next = *(uint64_t *)mp__at(h, off + BLOCK_HDR);
        barrier();
        hd->free[c] = next;
        barrier();
        mp__fault("manager.heap.popped");
    } else {
        if (hd->bump + bsz > atomic_load_explicit(&hd->size, memory_order_relaxed))
            r = grow(h, bsz);
        if (r == 0) {
            off = hd->bump;
            barrier();
            hd->bump = off + bsz;
            barrier();
        }
    }
    mp__mutex_unlock(&hd->lock);
    if (r != 0) {
        *err = r;
        return 0;
    }
    uint64_t *bh = mp__at(h, off);
    bh[0] = (uint64_t)BLOCK_LIVE << 8 | c;
    return off + BLOCK_HDR;
}

void
mp__heap_free(mp__heap *h, uint64_t p)
{
    if (p == 0)
        return;
    uint64_t off = p - BLOCK_HDR;
    uint64_t *bh = mp__at(h, off);
    unsigned c = (unsigned)(bh[0] & 0xff);
    if (bh[0] >> 8 != BLOCK_LIVE || c >= MP__HEAP_CLASSES)
        mp__panic("manager heap: free of a bad block at offset %llu", (unsigned long long)p);
    bh[0] = (uint64_t)BLOCK_FREE << 8 | c;
    mp__heap_hdr *hd = mp__heap_hdr_of(h);
    /* If the lock cannot be had (which needs a corrupted mutex), the block is leaked. */
    if (lock_heap(h) != 0)
        return;
    *(uint64_t *)mp__at(h, p) = hd->free[c];
    barrier();
    mp__fault("manager.heap.linked");
    hd->free[c] = off;
    barrier();
    mp__mutex_unlock(&hd->lock);
}

/* ---- containers: lock, create, redo records -------------------------------------------------- */

static void
log_apply(mp__heap *h, mp__log *lg, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        uint64_t off = lg->w[i].off;
        if (off & MP__LOG_W32)
            *(volatile uint32_t *)mp__at(h, off & ~MP__LOG_W32) = (uint32_t)lg->w[i].val;
        else
            *(volatile uint64_t *)mp__at(h, off) = lg->w[i].val;
        if (i == 0)
            mp__fault("manager.log.applying");
    }
}

void
mp__log_commit(mp__heap *h, mp__log *lg, unsigned k)
{
    barrier();
    atomic_store_explicit(&lg->n, k, memory_order_release);
    barrier();
    mp__fault("manager.log.committed");
    log_apply(h, lg, k);
    barrier();
    atomic_store_explicit(&lg->n, 0, memory_order_release);
    barrier();
}

void
mp__log_replay(mp__heap *h, mp__log *lg)
{
    unsigned n = atomic_load_explicit(&lg->n, memory_order_acquire);
    if (n > MP__LOG_MAX)
        mp__panic("manager: corrupted redo record (%u words)", n);
    log_apply(h, lg, n);
    barrier();
    atomic_store_explicit(&lg->n, 0, memory_order_release);
}

mp__chdr *
mp__cont_lock(const mp__cont *c, int *err)
{
    mp__heap *h = c->h;
    if (mp__heap_down(h)) {
        *err = -EBADF;
        return NULL;
    }
    mp__chdr *hd = mp__at(h, c->off);
    int r = mp__mutex_lock(&hd->lock, NULL);
    if (r < 0) {
        *err = r;
        return NULL;
    }
    /* The dead holder's changes are repaired from the redo record below, which needs no more
     * than the lock; the mutex is made consistent at once, because unlocking an inconsistent
     * robust mutex would make it unusable for good. */
    if (r == MP_OWNERDEAD)
        mp__mutex_consistent(&hd->lock);
    /* The offsets read under the lock may lie in growth this process has not mapped yet. */
    int s = mp__heap_sync(h);
    /* A committed record left by a holder that died (or by a locker that could not map what it
     * names) is applied by the next locker that can: one load in the common case. */
    if (s == 0 && MP__UNLIKELY(atomic_load_explicit(&hd->log.n, memory_order_acquire) != 0))
        mp__log_replay(h, &hd->log);
    if (s == 0 && mp__heap_down(h))
        s = -EBADF;
    if (s != 0) {
        mp__mutex_unlock(&hd->lock);
        *err = s;
        return NULL;
    }
    return hd;
}

void
mp__cont_unlock(const mp__cont *c, mp__chdr *hd)
{
    (void)c;
    mp__mutex_unlock(&hd->lock);
}

uint64_t
mp__cont_create(mp__heap *h, uint32_t kind, uint64_t body, int *err)
{
    uint64_t off = mp__heap_alloc(h, sizeof(mp__chdr), err);
    if (off == 0)
        return 0;
    mp__chdr *hd = mp__at(h, off);
    memset(hd, 0, sizeof *hd);
    int r = mp__mutex_init(&hd->lock);
    if (r != 0) {
        mp__heap_free(h, off);
        *err = r;
        return 0;
    }
    hd->kind = kind;
    atomic_store(&hd->body, body);
    return off;
}

mp__cont *
mp__cont_new(mp__heap *h, uint64_t off, uint32_t kind)
{
    mp__cont *c = mp__malloc(sizeof *c);
    if (c == NULL)
        return NULL;
    c->be = &mp__shm_backend;
    c->h = h;
    c->off = off;
    c->kind = kind;
    mp__heap_ref(h);
    return c;
}

void
mp__cont_free(mp__cont *c)
{
    if (c == NULL)
        return;
    if (c->be->cont_free != NULL) {
        c->be->cont_free(c);
        return;
    }
    mp__heap_unref(c->h);
    mp__free(c);
}
