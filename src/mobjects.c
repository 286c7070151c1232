/*
 * mobjects.c - managed objects by name: the manager's name table and the Value, Array, Queue
 * and sync objects it builds in its heap.
 *
 * The name table is a shared dict of the heap (mdict.c, so it is as crash-safe as any
 * container) mapping a name to one int: the object's offset shifted left by 8, or'ed with its
 * type. A robust mutex beside it serialises binding and unbinding, so that create-or-get is
 * atomic: two processes asking for the same new name get the same object.
 *
 * A typed object is one heap block: a 64-byte record (mp__mobj: type, the parameters a handle
 * needs to wrap it, a link) followed, on the next cache line, by the object itself, built in
 * place by its own module (sync.h's and internal.h's mp__<type>_init_at) and wrapped by it in
 * each process (mp__<type>_wrap), so that the handles are the ordinary ones. Containers (list,
 * dict, Namespace) are bound by the offset of their header.
 *
 * Crash safety: the object is built completely before its name is bound (one dict insert,
 * which is crash-safe); a process killed while building leaks the block until the manager goes
 * and binds nothing. The records form a list, newest first, published by one store of its head,
 * so that shutdown can mark every sync object dead (their handles then answer -EBADF).
 */
#include "manager.h"
#include "sync.h"

enum {
    T_LIST = MP__KIND_LIST,
    T_DICT = MP__KIND_DICT,
    T_NS = MP__KIND_NS,
    T_VALUE = 4,
    T_ARRAY,
    T_QUEUE,
    T_JQUEUE,
    T_LOCK,
    T_RLOCK,
    T_SEM,
    T_BSEM,
    T_COND,
    T_EVENT,
    T_BARRIER,
};

#define MOBJ_HDR 64
#define MOBJ_ALIGN 128

typedef struct mp__mobj {
    uint32_t type;
    char tc;     /* Value/Array typecode */
    uint8_t raw; /* Value/Array without a lock */
    uint16_t pad;
    uint64_t block;        /* the heap block holding record and object */
    uint64_t elem;         /* Value/Array element size */
    uint64_t n;            /* Array length, Queue ring size */
    _Atomic uint64_t next; /* the record created before this one */
} mp__mobj;

_Static_assert(sizeof(mp__mobj) <= MOBJ_HDR, "mp__mobj outgrew its cache line");

/* What a typed object needs: its type, its size in place and how to build it. */
typedef struct spec {
    uint32_t type;
    size_t size;
    int (*build)(void *mem, const struct spec *sp);
    mp__mobj rec; /* the parameters to record (tc, raw, elem, n) */
    const void *opts;
    unsigned count; /* semaphore value, barrier parties */
    uint64_t off;   /* set by bind: where the object is */
    bool created;   /* set by bind: this call made the object and bound its name */
} spec;

static mp__names *
names_of(mp__heap *h)
{
    return mp__at(h, mp__heap_hdr_of(h)->root);
}

static mp__cont
table_of(mp__heap *h)
{
    return (mp__cont){
        .be = &mp__shm_backend, .h = h, .off = names_of(h)->dict, .kind = MP__KIND_DICT};
}

int
mp__names_create(mp__heap *h, uint64_t *root)
{
    int err = 0;
    uint64_t off = mp__heap_alloc(h, sizeof(mp__names), &err);
    if (off == 0)
        return err;
    mp__names *nt = mp__at(h, off);
    memset(nt, 0, sizeof *nt);
    if ((err = mp__mutex_init(&nt->lock)) != 0 ||
        (err = mp__shdict_create(h, MP__KIND_DICT, &nt->dict)) != 0)
        return err; /* the heap goes with the failed open */
    *root = off;
    return 0;
}

static bool
has_sync_hdr(const mp__mobj *mo)
{
    return mo->type >= T_LOCK || ((mo->type == T_VALUE || mo->type == T_ARRAY) && !mo->raw);
}

/* Mark the object dead: an odd generation becomes even (sync.h), once. */
static void
kill_obj(mp__mobj *mo)
{
    if (!has_sync_hdr(mo))
        return;
    mp__sync_hdr *sh = (mp__sync_hdr *)(void *)((char *)mo + MOBJ_HDR);
    uint32_t g = atomic_load(&sh->gen);
    while ((g & 1) && !atomic_compare_exchange_weak(&sh->gen, &g, g + 1))
        ;
}

void
mp__names_shutdown(mp__heap *h)
{
    uint64_t root = mp__heap_hdr_of(h)->root;
    /* The manager process has mapped the heap only as far as it was at the fork: map the rest
     * (one mmap, async-signal-safe in practice: glibc's wrapper is the bare system call). */
    if (root == 0 || mp__heap_sync(h) != 0)
        return;
    /* Records are built before they are linked, and never unlinked or freed. */
    for (uint64_t off = atomic_load(&names_of(h)->objs); off != 0;) {
        mp__mobj *mo = mp__at(h, off);
        kill_obj(mo);
        off = atomic_load_explicit(&mo->next, memory_order_relaxed);
    }
}

static int
lock_names(mp__heap *h)
{
    mp__names *nt = names_of(h);
    int r = mp__mutex_lock(&nt->lock, NULL);
    if (r < 0)
        return r;
    /* The lock guards no data of its own: the dict repairs itself, and an object a dead holder
     * was building was never bound (it leaks until the manager goes). */
    if (r == MP_OWNERDEAD)
        mp__mutex_consistent(&nt->lock);
    if (mp__heap_down(h)) {
        mp__mutex_unlock(&nt->lock);
        return -EBADF;
    }
    return 0;
}

/* create - build a new object of sp in the heap: its record's offset, or 0 with *err set. */
static uint64_t
create(mp__heap *h, const spec *sp, int *err)
{
    if (sp->type <= T_NS) {
        uint64_t off = 0;
        *err = sp->type == T_LIST ? mp__shlist_create(h, NULL, 0, &off)
                                  : mp__shdict_create(h, sp->type, &off);
        return *err == 0 ? off : 0;
    }
    /* Heap blocks are 16-aligned; the object wants MOBJ_ALIGN (a queue's header is aligned to
     * two cache lines) and its record sits just before it. */
    uint64_t block = mp__heap_alloc(h, MOBJ_HDR + MOBJ_ALIGN - 16 + sp->size, err);
    if (block == 0)
        return 0;
    uint64_t obj = (block + MOBJ_HDR + MOBJ_ALIGN - 1) & ~(uint64_t)(MOBJ_ALIGN - 1);
    uint64_t off = obj - MOBJ_HDR;
    mp__mobj *mo = mp__at(h, off);
    *mo = sp->rec;
    mo->type = sp->type;
    mo->block = block;
    atomic_store_explicit(&mo->next, 0, memory_order_relaxed);
    *err = sp->build((char *)mo + MOBJ_HDR, sp);
    if (*err != 0) {
        mp__heap_free(h, block);
        return 0;
    }
    return off;
}

/* bind - the object called name, of sp's type: found, or created and bound. Its offset (a
 * record's, or a container's) in *off and sp->off; sp->created tells which. */
static int
bind(mp_manager *m, const char *name, spec *sp, uint64_t *off)
{
    if (m == NULL || name == NULL)
        return -EINVAL;
    if (m->rm != NULL)
        return -ENOTSUP; /* a connected manager has containers only */
    mp__heap *h = m->h;
    mp__cont table = table_of(h);
    mp_item key = mp_item_str(name), v;
    if (name[0] == '\0')
        return -EINVAL;
    int r = lock_names(h);
    if (r != 0)
        return r;
    r = mp__shdict_get(&table, &key, NULL, &v);
    if (r == 0) {
        uint64_t e = (uint64_t)v.v.i;
        *off = e >> 8;
        r = (e & 0xff) == sp->type ? 0 : MP_ETYPE;
        mp__mobj *mo = mp__at(h, *off);
        if (r == 0 && (sp->type == T_VALUE || sp->type == T_ARRAY) &&
            (mo->tc != sp->rec.tc || mo->elem != sp->rec.elem))
            r = MP_ETYPE;
    } else if (r == -ENOENT) {
        *off = create(h, sp, &r);
        /* Killed here, the object is built but unbound: it leaks, and the name stays free. */
        mp__fault("manager.name.built");
        if (*off != 0) {
            v = mp_item_int((int64_t)(*off << 8 | sp->type));
            r = mp__shdict_set(&table, &key, &v, MP__SET_ALWAYS, NULL);
            /* A failed insert leaks the object (containers are never freed one by one); a
             * typed object nobody saw is given back. */
            if (r != 0 && sp->type > T_NS)
                mp__heap_free(h, ((mp__mobj *)mp__at(h, *off))->block);
        }
        if (r == 0 && sp->type > T_NS) {
            mp__names *nt = names_of(h);
            mp__mobj *mo = mp__at(h, *off);
            atomic_store_explicit(&mo->next, atomic_load(&nt->objs), memory_order_relaxed);
            /* Either shutdown's walk sees this record, or this load sees the shutdown. */
            atomic_store(&nt->objs, *off);
            if (mp__heap_down(h)) {
                kill_obj(mo);
                r = -EBADF;
            }
        }
        sp->created = r == 0;
    }
    sp->off = *off;
    mp__mutex_unlock(&names_of(h)->lock);
    return r;
}

/* finish - the end of a call by name. When this call bound a new object but could not make
 * its handle (-ENOMEM), the name is unbound again, since on error nothing may be bound. Another
 * process may have found the object in the meantime: it keeps it, as after a racing
 * mp_manager_delete, and the memory goes with the heap. */
static int
finish(mp_manager *m, const char *name, const spec *sp, int r)
{
    if (r == 0 || !sp->created)
        return r;
    mp__cont table = table_of(m->h);
    mp_item key = mp_item_str(name), v;
    if (lock_names(m->h) != 0)
        return r;
    if (mp__shdict_get(&table, &key, NULL, &v) == 0 && (uint64_t)v.v.i == (sp->off << 8 | sp->type))
        mp__shdict_pop(&table, &key, NULL, NULL);
    mp__mutex_unlock(&names_of(m->h)->lock);
    return r;
}

int
mp_manager_delete(mp_manager *m, const char *name)
{
    if (m == NULL || name == NULL || name[0] == '\0')
        return -EINVAL;
    if (m->rm != NULL)
        return -ENOTSUP;
    mp__cont table = table_of(m->h);
    mp_item key = mp_item_str(name);
    int r = lock_names(m->h);
    if (r != 0)
        return r;
    r = mp__shdict_pop(&table, &key, NULL, NULL);
    mp__mutex_unlock(&names_of(m->h)->lock);
    return r;
}

/* ---- containers ------------------------------------------------------------------------------ */

static int
bind_cont(mp_manager *m, const char *name, uint32_t kind, mp__cont **out)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    if (m != NULL && m->rm != NULL && name != NULL && name[0] != '\0')
        return mp__remote_create(m->rm, name, kind, NULL, 0, out);
    spec sp = {.type = kind};
    uint64_t off;
    int r = bind(m, name, &sp, &off);
    if (r != 0)
        return r;
    *out = mp__cont_new(m->h, off, kind);
    return finish(m, name, &sp, *out != NULL ? 0 : -ENOMEM);
}

int
mp_manager_list(mp_list **out, mp_manager *m, const char *name)
{
    return bind_cont(m, name, T_LIST, (mp__cont **)out);
}

int
mp_manager_dict(mp_dict **out, mp_manager *m, const char *name)
{
    return bind_cont(m, name, T_DICT, (mp__cont **)out);
}

int
mp_manager_namespace(mp_namespace **out, mp_manager *m, const char *name)
{
    return bind_cont(m, name, T_NS, (mp__cont **)out);
}

/* ---- typed objects ----------------------------------------------------------------------------
 */

static void
drop_heap(void *h)
{
    mp__heap_unref(h);
}

/* heap_pin - a reference on this process's mapping of the heap for a new handle, which its
 * ordinary close drops: typed handles keep the mapping alive as container handles do. */
static mp__pin
heap_pin(mp_manager *m)
{
    mp__heap_ref(m->h);
    return (mp__pin){drop_heap, m->h};
}

/* bind_obj - bind sp's object and return where it lives in this process, or NULL (*err). */
static void *
bind_obj(mp_manager *m, const char *name, spec *sp, mp__mobj **rec, int *err)
{
    uint64_t off;
    *err = bind(m, name, sp, &off);
    if (*err != 0)
        return NULL;
    *rec = mp__at(m->h, off);
    return (char *)*rec + MOBJ_HDR;
}

static int
build_value(void *mem, const spec *sp)
{
    const mp_value_opts *o = sp->opts;
    return mp__value_init_at(mem, sp->rec.tc, sp->type == T_VALUE ? 1 : (size_t)sp->rec.n, o);
}

static int
value_obj(mp_value **out, mp_manager *m, const char *name, uint32_t type, char tc, size_t len,
          const mp_value_opts *opts)
{
    static const mp_value_opts defaults = {0};
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    if (opts == NULL)
        opts = &defaults;
    spec sp = {.type = type, .build = build_value, .opts = opts};
    int r = mp__value_size_at(tc, len, opts, &sp.size);
    if (r != 0)
        return r;
    sp.rec.tc = tc;
    sp.rec.raw = opts->raw;
    sp.rec.elem = tc == 0 ? opts->size : 0;
    sp.rec.n = len;
    mp__mobj *mo;
    void *mem = bind_obj(m, name, &sp, &mo, &r);
    if (mem == NULL)
        return r;
    r = mp__value_wrap(out, mem, mo->tc, (size_t)mo->elem, type == T_VALUE ? 1 : (size_t)mo->n,
                       mo->raw);
    if (r == 0)
        mp__value_pin(*out, heap_pin(m));
    return finish(m, name, &sp, r);
}

int
mp_manager_value(mp_value **out, mp_manager *m, const char *name, char typecode,
                 const mp_value_opts *opts)
{
    return value_obj(out, m, name, T_VALUE, typecode, 1, opts);
}

int
mp_manager_array(mp_array **out, mp_manager *m, const char *name, char typecode, size_t length,
                 const mp_value_opts *opts)
{
    /* An array handle is a value handle (value.c). */
    return value_obj((mp_value **)out, m, name, T_ARRAY, typecode, length, opts);
}

static int
build_queue(void *mem, const spec *sp)
{
    return mp__queue_init_at(mem, sp->opts);
}

int
mp_manager_queue(mp_queue **out, mp_manager *m, const char *name, const mp_queue_opts *opts)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    size_t cap;
    spec sp = {.type = opts != NULL && opts->joinable ? T_JQUEUE : T_QUEUE,
               .build = build_queue,
               .opts = opts};
    int r = mp__queue_size_at(opts, &sp.size, &cap);
    if (r != 0)
        return r;
    sp.rec.n = cap;
    mp__mobj *mo;
    void *mem = bind_obj(m, name, &sp, &mo, &r);
    if (mem != NULL)
        r = mp__queue_wrap(out, mem, (size_t)mo->n);
    if (r == 0)
        mp__queue_pin(*out, heap_pin(m));
    return finish(m, name, &sp, r);
}

static int
build_lock(void *mem, const spec *sp)
{
    return mp__lock_init_at(mem, sp->type == T_RLOCK);
}

int
mp_manager_lock(mp_lock **out, mp_manager *m, const char *name, const mp_lock_opts *opts)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    spec sp = {.type = opts != NULL && opts->recursive ? T_RLOCK : T_LOCK,
               .size = MP__LOCK_SIZE,
               .build = build_lock};
    mp__mobj *mo;
    int r;
    void *mem = bind_obj(m, name, &sp, &mo, &r);
    if (mem != NULL)
        r = mp__lock_wrap(out, mem);
    if (r == 0)
        mp__lock_pin(*out, heap_pin(m));
    return finish(m, name, &sp, r);
}

static int
build_sem(void *mem, const spec *sp)
{
    return mp__semaphore_init_at(mem, sp->count, sp->type == T_BSEM);
}

int
mp_manager_semaphore(mp_semaphore **out, mp_manager *m, const char *name, unsigned value,
                     const mp_semaphore_opts *opts)
{
    if (out == NULL || value > INT32_MAX)
        return -EINVAL;
    *out = NULL;
    spec sp = {.type = opts != NULL && opts->bounded ? T_BSEM : T_SEM,
               .size = MP__SEMAPHORE_SIZE,
               .build = build_sem,
               .count = value};
    mp__mobj *mo;
    int r;
    void *mem = bind_obj(m, name, &sp, &mo, &r);
    if (mem != NULL)
        r = mp__semaphore_wrap(out, mem);
    if (r == 0)
        mp__semaphore_pin(*out, heap_pin(m));
    return finish(m, name, &sp, r);
}

static int
build_cond(void *mem, const spec *sp)
{
    (void)sp;
    return mp__condition_init_at(mem);
}

int
mp_manager_condition(mp_condition **out, mp_manager *m, const char *name,
                     const mp_condition_opts *opts)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    spec sp = {.type = T_COND, .size = MP__CONDITION_SIZE, .build = build_cond};
    mp__mobj *mo;
    int r;
    void *mem = bind_obj(m, name, &sp, &mo, &r);
    if (mem != NULL)
        r = mp__condition_wrap(out, mem, opts != NULL ? opts->lock : NULL);
    if (r == 0)
        mp__condition_pin(*out, heap_pin(m));
    return finish(m, name, &sp, r);
}

static int
build_event(void *mem, const spec *sp)
{
    (void)sp;
    return mp__event_init_at(mem);
}

int
mp_manager_event(mp_event **out, mp_manager *m, const char *name)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    spec sp = {.type = T_EVENT, .size = MP__EVENT_SIZE, .build = build_event};
    mp__mobj *mo;
    int r;
    void *mem = bind_obj(m, name, &sp, &mo, &r);
    if (mem != NULL)
        r = mp__event_wrap(out, mem);
    if (r == 0)
        mp__event_pin(*out, heap_pin(m));
    return finish(m, name, &sp, r);
}

static int
build_barrier(void *mem, const spec *sp)
{
    return mp__barrier_init_at(mem, sp->count);
}

int
mp_manager_barrier(mp_barrier **out, mp_manager *m, const char *name, unsigned parties,
                   const mp_barrier_opts *opts)
{
    if (out == NULL || parties == 0 || parties > INT32_MAX ||
        (opts != NULL && opts->timeout_ms < 0))
        return -EINVAL;
    *out = NULL;
    spec sp = {
        .type = T_BARRIER, .size = MP__BARRIER_SIZE, .build = build_barrier, .count = parties};
    mp__mobj *mo;
    int r;
    void *mem = bind_obj(m, name, &sp, &mo, &r);
    if (mem != NULL)
        r = mp__barrier_wrap(out, mem, opts);
    if (r == 0)
        mp__barrier_pin(*out, heap_pin(m));
    return finish(m, name, &sp, r);
}
