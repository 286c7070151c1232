/*
 * manager.h - the manager module's internals: the shared heap (mheap.c), the stored form of an
 * item (mvalue.c), the containers (mlist.c, mdict.c) and the backend interface the public calls
 * go through (manager.c).
 *
 * Everything in the heap is addressed by offsets from its base, never by pointers: each process
 * maps the heap at its own address. Offset 0 is the heap header, so 0 also means "none".
 */
#ifndef MPIPC_MANAGER_H
#define MPIPC_MANAGER_H

#include "internal.h"

#include <string.h>

/* ---- the heap -------------------------------------------------------------------------------- */

#define MP__HEAP_MAGIC 0x3170616568706d70ull /* "pmpheap1" */
#define MP__HEAP_CLASSES 40                  /* block sizes 2^5 .. 2^44 */

/* The header at offset 0 of the segment. */
typedef struct mp__heap_hdr {
    uint64_t magic;
    uint64_t reserve;          /* the most `size` may reach */
    _Atomic uint64_t size;     /* bytes of the file that may be mapped; only grows */
    _Atomic uint32_t shutdown; /* non-zero: the manager is gone, every operation is -EBADF */
    int32_t manager_pid;
    pthread_mutex_t lock; /* guards bump and free[] */
    uint64_t bump;        /* first never-allocated byte */
    uint64_t free[MP__HEAP_CLASSES];
    uint64_t root; /* the name table (mp__names, mobjects.c) */
} mp__heap_hdr;

/* This process's view of a heap: one per process per manager, shared by every handle on it. */
typedef struct mp__heap {
    _Atomic long refs;
    char *base;            /* start of the reserved range */
    size_t reserve;        /* its length */
    _Atomic size_t mapped; /* bytes mapped read/write from base */
    mp__pidlock map_lock;  /* serialises growing the mapping (mp__heap_sync) */
    mp_shm *shm;           /* the named segment (and its fd); NULL when attached by name */
    int fd;
} mp__heap;

static inline mp__heap_hdr *
mp__heap_hdr_of(const mp__heap *h)
{
    return (mp__heap_hdr *)h->base;
}

static inline void *
mp__at(const mp__heap *h, uint64_t off)
{
    return h->base + off;
}

/* mp__heap_create - create the named segment with an initialised header and map it. */
int mp__heap_create(mp__heap **out, const char *name, size_t reserve);
/* mp__heap_publish - make a created heap attachable by name, with its name table at root. */
void mp__heap_publish(mp__heap *h, uint64_t root);
/* mp__heap_attach - map the published heap called path ("/name"), waiting up to timeout_ms for
 * it to appear. 0; -ENOENT (no such heap by the deadline), -EINVAL, -ENOMEM, -EACCES, -EMFILE. */
int mp__heap_attach(mp__heap **out, const char *path, int timeout_ms);
void mp__heap_ref(mp__heap *h);
/* mp__heap_unref - drop a reference; the last one unmaps and closes this process's view. */
void mp__heap_unref(mp__heap *h);
/* mp__heap_sync - map whatever the heap has grown to since this process last looked. Call it
 * after taking a container's lock, before following offsets read under it. 0 or -ENOMEM. */
int mp__heap_sync(mp__heap *h);
/* mp__heap_alloc - a block of at least `size` bytes (16-aligned, not zeroed): its offset, or 0
 * with *err set (-ENOMEM, -ENOSPC). Crash-safe: a holder killed at any point leaves the free
 * lists consistent (the block it was taking may leak). */
uint64_t mp__heap_alloc(mp__heap *h, size_t size, int *err);
/* mp__heap_free - give a block back (0 is ignored). */
void mp__heap_free(mp__heap *h, uint64_t off);
/* mp__heap_down - true once the manager was shut down or its owner died. */
static inline bool
mp__heap_down(const mp__heap *h)
{
    return atomic_load_explicit(&mp__heap_hdr_of(h)->shutdown, memory_order_relaxed) != 0;
}

/* ---- stored items ---------------------------------------------------------------------------- */

/* A stored item: tag = type | len << 8. u holds the int, the double's bits, a str/bytes of up
 * to 8 bytes inline, the offset of a longer one's block, or a container's offset. */
typedef struct mp__slot {
    uint64_t tag;
    uint64_t u;
} mp__slot;

#define MP__SLOT_INLINE 8
#define MP__SLOT_DELETED 0xffu /* a dict entry that was removed */

static inline unsigned
mp__slot_type(const mp__slot *s)
{
    return (unsigned)(s->tag & 0xff);
}
static inline size_t
mp__slot_len(const mp__slot *s)
{
    return (size_t)(s->tag >> 8);
}
/* The bytes of a str/bytes slot. */
static inline const char *
mp__slot_bytes(const mp__heap *h, const mp__slot *s)
{
    return mp__slot_len(s) <= MP__SLOT_INLINE ? (const char *)&s->u : (const char *)mp__at(h, s->u);
}

/* mp__item_check - validate an input item for heap h (type, UTF-8, a container of h). */
int mp__item_check(const mp__heap *h, const mp_item *it);
/* mp__slot_make - store a checked item: allocates a block for a long str/bytes. */
int mp__slot_make(mp__heap *h, const mp_item *it, mp__slot *out);
/* mp__slot_dup - a second stored copy of a slot (a new block for a long str/bytes). */
int mp__slot_dup(mp__heap *h, const mp__slot *s, mp__slot *out);
/* mp__slot_release - free what a slot owns (the block of a long str/bytes). */
void mp__slot_release(mp__heap *h, const mp__slot *s);
/* mp__slot_get - copy a slot out to the caller (a malloc'ed string, a new handle). */
int mp__slot_get(mp__heap *h, const mp__slot *s, mp_item *out);

/* Python's ==, and Python's < for sort: compare returns -1/0/1, 2 for unordered (a NaN), or
 * MP_ETYPE when Python raises TypeError. An item and a slot, or two slots. */
bool mp__slot_eq_item(const mp__heap *h, const mp__slot *s, const mp_item *it);
bool mp__slot_eq(const mp__heap *h, const mp__slot *a, const mp__slot *b);
int mp__slot_cmp(const mp__heap *h, const mp__slot *a, const mp__slot *b);
/* mp__item_hash - Python-compatible equality classes: equal keys hash equal. MP_ETYPE for an
 * unhashable item. */
int mp__item_hash(const mp_item *it, uint64_t *hash);
/* The order class of a slot for sort: 0 numbers, 1 str, 2 bytes, -1 unorderable. */
int mp__slot_order_class(const mp__slot *s);

/* A growable string for repr. */
typedef struct mp__buf {
    char *p;
    size_t len, cap;
    int err;
} mp__buf;
void mp__buf_put(mp__buf *b, const char *s, size_t n);
void mp__buf_puts(mp__buf *b, const char *s);
void mp__repr_float(mp__buf *b, double f);
void mp__repr_text(mp__buf *b, const char *s, size_t n, bool bytes);
/* Finish a repr: hand the string to the caller. */
ssize_t mp__buf_finish(mp__buf *b, char **out);

/* ---- containers ------------------------------------------------------------------------------ */

enum { MP__KIND_LIST = 1, MP__KIND_DICT = 2, MP__KIND_NS = 3 };

#define MP__LOG_MAX 6
#define MP__LOG_W32 (1ull << 63) /* in a word's offset: store only its low 32 bits */

/* The redo record of a container. A mutation that needs more than one store to become visible
 * writes the final values of every word it will change here, commits them with one store of n,
 * applies them and resets n. A process killed after the commit leaves n != 0, and the next
 * locker (which gets MP_OWNERDEAD) applies the same stores again: they are absolute, so
 * re-applying a half-applied record is harmless. Killed before the commit, nothing has changed. */
typedef struct mp__log {
    _Atomic uint32_t n;
    uint32_t pad;
    struct {
        uint64_t off;
        uint64_t val;
    } w[MP__LOG_MAX];
} mp__log;

/* The shared header of every container. `body` is the offset of its items array (list) or
 * table (dict); a structural change builds a new body and publishes it with one store. */
typedef struct mp__chdr {
    pthread_mutex_t lock;
    uint32_t kind;
    uint32_t pad;
    _Atomic uint64_t body;
    mp__log log;
} mp__chdr;

/* A handle on a container, in one process. */
typedef struct mp__cont {
    const struct mp__backend *be;
    mp__heap *h;
    uint64_t off;
    uint32_t kind;
} mp__cont;

struct mp_list {
    mp__cont c;
};
struct mp_dict {
    mp__cont c;
};
struct mp_namespace {
    mp__cont c;
};

/* mp__cont_new - a new handle on the container at off (takes a heap reference). */
mp__cont *mp__cont_new(mp__heap *h, uint64_t off, uint32_t kind);
void mp__cont_free(mp__cont *c);

/* mp__cont_lock - lock a container: repairs it after a holder's death, checks the manager is
 * up and maps any growth of the heap. Returns the header, or NULL with *err set. */
mp__chdr *mp__cont_lock(const mp__cont *c, int *err);
void mp__cont_unlock(const mp__cont *c, mp__chdr *hd);
/* mp__cont_create - allocate and initialise a container header; its offset or 0 (*err). */
uint64_t mp__cont_create(mp__heap *h, uint32_t kind, uint64_t body, int *err);

/* Redo records: put words, then commit (which applies them). */
static inline void
mp__log_put(mp__log *lg, unsigned *k, uint64_t off, uint64_t val)
{
    lg->w[*k].off = off;
    lg->w[*k].val = val;
    (*k)++;
}
void mp__log_commit(mp__heap *h, mp__log *lg, unsigned k);
void mp__log_replay(mp__heap *h, mp__log *lg);

/* mp__cont_repr - Python's repr of a container, through its backend. */
ssize_t mp__cont_repr(mp__cont *c, char **out);
/* Shared-heap constructors: the new container's offset in *off. */
int mp__shlist_create(mp__heap *h, const mp_item *items, size_t n, uint64_t *off);
int mp__shdict_create(mp__heap *h, uint32_t kind, uint64_t *off);

/* ---- the backend interface --------------------------------------------------------------------
 * The public container calls check their arguments and go through these. The shared-heap
 * backend (mlist.c, mdict.c) is the first; a network client to a Python manager is the next. */
typedef struct mp__backend {
    ssize_t (*list_len)(mp__cont *c);
    int (*list_get)(mp__cont *c, ptrdiff_t i, mp_item *out);
    int (*list_set)(mp__cont *c, ptrdiff_t i, const mp_item *v);
    int (*list_slice)(mp__cont *c, ptrdiff_t start, ptrdiff_t stop, ptrdiff_t step, mp_item **out,
                      size_t *n);
    int (*list_set_slice)(mp__cont *c, ptrdiff_t start, ptrdiff_t stop, const mp_item *items,
                          size_t n);
    int (*list_del_slice)(mp__cont *c, ptrdiff_t start, ptrdiff_t stop, ptrdiff_t step);
    int (*list_append)(mp__cont *c, const mp_item *v);
    int (*list_extend)(mp__cont *c, const mp_item *items, size_t n);
    int (*list_insert)(mp__cont *c, ptrdiff_t i, const mp_item *v);
    int (*list_pop)(mp__cont *c, ptrdiff_t i, mp_item *out);
    ssize_t (*list_find)(mp__cont *c, const mp_item *v, int what);
    int (*list_reverse)(mp__cont *c);
    int (*list_sort)(mp__cont *c, bool reverse);
    int (*list_clear)(mp__cont *c);
    ssize_t (*len)(mp__cont *c); /* dict and namespace */
    int (*dict_get)(mp__cont *c, const mp_item *key, const mp_item *def, mp_item *out);
    int (*dict_set)(mp__cont *c, const mp_item *key, const mp_item *v, int mode, mp_item *out);
    int (*dict_pop)(mp__cont *c, const mp_item *key, const mp_item *def, mp_item *out);
    int (*dict_popitem)(mp__cont *c, mp_item *key, mp_item *value);
    int (*dict_snapshot)(mp__cont *c, mp_item **keys, mp_item **values, size_t *n);
    int (*dict_update)(mp__cont *c, const mp_item *keys, const mp_item *values, size_t n);
    int (*dict_copy)(mp__cont *c, mp__cont **out);
    int (*clear)(mp__cont *c);
    /* Release a handle (mp__cont_free); NULL for the shared heap's plain handles. */
    void (*cont_free)(mp__cont *c);
} mp__backend;

/* list_find's `what` */
enum { MP__FIND_INDEX, MP__FIND_COUNT, MP__FIND_REMOVE };
/* dict_set's `mode` */
enum { MP__SET_ALWAYS, MP__SET_DEFAULT };

extern const mp__backend mp__shm_backend;

/* The parts each file contributes to the shared-heap backend. */
ssize_t mp__shlist_len(mp__cont *c);
int mp__shlist_get(mp__cont *c, ptrdiff_t i, mp_item *out);
int mp__shlist_set(mp__cont *c, ptrdiff_t i, const mp_item *v);
int mp__shlist_slice(mp__cont *c, ptrdiff_t start, ptrdiff_t stop, ptrdiff_t step, mp_item **out,
                     size_t *n);
int mp__shlist_set_slice(mp__cont *c, ptrdiff_t start, ptrdiff_t stop, const mp_item *items,
                         size_t n);
int mp__shlist_del_slice(mp__cont *c, ptrdiff_t start, ptrdiff_t stop, ptrdiff_t step);
int mp__shlist_append(mp__cont *c, const mp_item *v);
int mp__shlist_extend(mp__cont *c, const mp_item *items, size_t n);
int mp__shlist_insert(mp__cont *c, ptrdiff_t i, const mp_item *v);
int mp__shlist_pop(mp__cont *c, ptrdiff_t i, mp_item *out);
ssize_t mp__shlist_find(mp__cont *c, const mp_item *v, int what);
int mp__shlist_reverse(mp__cont *c);
int mp__shlist_sort(mp__cont *c, bool reverse);
int mp__shlist_clear(mp__cont *c);
ssize_t mp__shdict_len(mp__cont *c);
int mp__shdict_get(mp__cont *c, const mp_item *key, const mp_item *def, mp_item *out);
int mp__shdict_set(mp__cont *c, const mp_item *key, const mp_item *v, int mode, mp_item *out);
int mp__shdict_pop(mp__cont *c, const mp_item *key, const mp_item *def, mp_item *out);
int mp__shdict_popitem(mp__cont *c, mp_item *key, mp_item *value);
int mp__shdict_snapshot(mp__cont *c, mp_item **keys, mp_item **values, size_t *n);
int mp__shdict_update(mp__cont *c, const mp_item *keys, const mp_item *values, size_t n);
int mp__shdict_copy(mp__cont *c, mp__cont **out);
int mp__shdict_clear(mp__cont *c);

/* ---- the manager and its name table ---------------------------------------------------------- */

struct mp_manager {
    const mp__backend *be;
    mp__heap *h;
    pid_t owner;   /* the process that opened the manager; 0 when attached by name */
    pid_t mgr_pid; /* the manager process */
    int mgr_pidfd; /* its pidfd, or -1 */
    int evfd;      /* written once to ask the manager process to stop; -1 when attached */
    _Atomic bool shut;
    char name[MP_SHM_NAME_MAX + 2]; /* "/name" when attached by name */

    /* A served manager (mserve.c): the listener its process accepts on, and the registered
     * typeids (mp_manager_register). NULL otherwise. */
    mp_listener *l;
    mp__cont *reg;

    /* A connected manager (mp_manager_connect): the client of a Python manager's server; h is
     * then NULL and be is mp__remote_backend. NULL otherwise. */
    struct mp__rman *rm;
};

/* The name table, at the heap header's root. */
typedef struct mp__names {
    pthread_mutex_t lock;  /* serialises binding and unbinding names */
    uint64_t dict;         /* a shared dict: name -> (object offset << 8 | type) */
    _Atomic uint64_t objs; /* every typed object ever created, newest first (mp__mobj.next) */
} mp__names;

/* mp__names_create - an empty name table in a new heap; its offset in *root. */
int mp__names_create(mp__heap *h, uint64_t *root);
/* mp__names_shutdown - after the heap was marked shut down: mark every sync object (and every
 * Value/Array's own lock) of the table dead, so that their handles answer -EBADF. Only atomic
 * stores to the heap: async-signal-safe, so the manager process may call it. Idempotent. */
void mp__names_shutdown(mp__heap *h);

/* ---- the remote backend: a client of a Python manager (src/mproxy*.c) ------------------------ */

typedef struct mp__rman mp__rman;
extern const mp__backend mp__remote_backend;

/* mp__rman_connect - the shared state of a connected manager, after a 'dummy' request. */
int mp__rman_connect(mp__rman **out, const char *address, const mp_manager_connect_opts *opts);
/* mp__rman_unref - drop a reference; the last one closes this process's connections. */
void mp__rman_unref(mp__rman *rm);
const char *mp__rman_address(const mp__rman *rm);
/* mp__remote_create - a handle on a new container of `kind` (typeid NULL: the server's 'list',
 * 'dict' or 'Namespace', made from items[0..n) for a list) or on what the server's typeid
 * returns (it must expose kind's methods, else MP_ETYPE). */
int mp__remote_create(mp__rman *rm, const char *typeid, uint32_t kind, const mp_item *items,
                      size_t n, mp__cont **out);

#endif
