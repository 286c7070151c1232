/*
 * mdict.c - the shared-heap dict (also the store behind Namespace).
 *
 * CPython's compact layout: an index table of 2^k words pointing into an array of entries kept
 * in insertion order (so keys(), items() and popitem() follow Python's order). The body is one
 * block: {mask, cap, nent, used, index[mask + 1], entries[cap]}.
 *
 * Crash safety: a new entry is written in full above nent, where nothing refers to it; the
 * words that make it visible (its index word, nent, used) are then changed through the
 * container's redo record, as are the words of a replaced value and of a removal. Growing the
 * table builds a new body and publishes it with one store. So every change is all or nothing
 * for the survivors of a crash; blocks that an interrupted change no longer needs may leak.
 */
#include "manager.h"

/* Index words are 32 bits (half the cache footprint of the index table of a big dict, which
 * is what a lookup in it misses on); a dict holds fewer than 2^32 - 2 entries. */
#define IX_EMPTY UINT32_MAX
#define IX_DUMMY (UINT32_MAX - 1)

typedef struct dent {
    uint64_t hash;
    mp__slot key;
    mp__slot val;
} dent;

typedef struct dtab {
    uint64_t mask;
    uint64_t cap;
    uint64_t nent;
    uint64_t used;
    uint32_t idx[]; /* mask + 1 words, then the entries (8-aligned: mask + 1 >= 8) */
} dtab;

static dent *
ents(dtab *t)
{
    return (dent *)(void *)&t->idx[t->mask + 1];
}

static dtab *
tab_of(const mp__cont *c, const mp__chdr *hd)
{
    return mp__at(c->h, atomic_load_explicit(&hd->body, memory_order_relaxed));
}

static uint64_t
off_of(const mp__cont *c, const void *p)
{
    return (uint64_t)((const char *)p - c->h->base);
}

/* A table with room for `want` entries (at 2/3 load). */
static uint64_t
dict_body_new_(mp__heap *h, size_t want, int *err)
{
    uint64_t slots = 8;
    while (slots * 2 / 3 < want) {
        if (slots >= ((uint64_t)1 << 31)) {
            *err = -ENOMEM;
            return 0;
        }
        slots *= 2;
    }
    uint64_t cap = slots * 2 / 3;
    uint64_t off =
        mp__heap_alloc(h, sizeof(dtab) + slots * sizeof(uint32_t) + cap * sizeof(dent), err);
    if (off == 0)
        return 0;
    dtab *t = mp__at(h, off);
    t->mask = slots - 1;
    t->cap = cap;
    t->nent = 0;
    t->used = 0;
    memset(t->idx, 0xff, slots * sizeof(uint32_t));
    return off;
}

/* lookup - the entry holding key, or -1; *pos is the index word that points to it, or where a
 * new key would go. The table always has an empty word, so the probe ends. */
static int64_t
lookup(const mp__heap *h, dtab *t, uint64_t hash, const mp_item *key, uint64_t *pos)
{
    uint64_t mask = t->mask, i = hash & mask, perturb = hash;
    int64_t freepos = -1;
    dent *e = ents(t);
    for (;;) {
        uint32_t ix = t->idx[i];
        if (ix == IX_EMPTY) {
            *pos = freepos >= 0 ? (uint64_t)freepos : i;
            return -1;
        }
        if (ix == IX_DUMMY) {
            if (freepos < 0)
                freepos = (int64_t)i;
        } else if (e[ix].hash == hash && mp__slot_eq_item(h, &e[ix].key, key)) {
            *pos = i;
            return (int64_t)ix;
        }
        perturb >>= 5;
        i = (i * 5 + perturb + 1) & mask;
    }
}

/* The index word that points to entry ix. */
static uint64_t
pos_of(dtab *t, uint64_t ix)
{
    uint64_t mask = t->mask, hash = ents(t)[ix].hash, i = hash & mask, perturb = hash;
    while (t->idx[i] != ix) {
        if (t->idx[i] == IX_EMPTY)
            mp__panic("manager dict: entry %llu is not indexed", (unsigned long long)ix);
        perturb >>= 5;
        i = (i * 5 + perturb + 1) & mask;
    }
    return i;
}

/* Put entry ix into a table being built (no duplicates, no dummies yet). */
static void
index_new(dtab *t, uint64_t ix)
{
    uint64_t mask = t->mask, hash = ents(t)[ix].hash, i = hash & mask, perturb = hash;
    while (t->idx[i] != IX_EMPTY) {
        perturb >>= 5;
        i = (i * 5 + perturb + 1) & mask;
    }
    t->idx[i] = (uint32_t)ix;
}

/* grow - publish a compacted table with room for at least one more entry. */
static int
grow(const mp__cont *c, mp__chdr *hd)
{
    dtab *t = tab_of(c, hd);
    int err = 0;
    uint64_t off = dict_body_new_(c->h, (size_t)(t->used + 1) * 2, &err);
    if (off == 0)
        return err;
    dtab *nt = mp__at(c->h, off);
    dent *oe = ents(t), *ne = ents(nt);
    uint64_t n = 0;
    for (uint64_t k = 0; k < t->nent; k++) {
        if (mp__slot_type(&oe[k].key) == MP__SLOT_DELETED)
            continue;
        ne[n] = oe[k];
        index_new(nt, n++);
    }
    nt->nent = nt->used = n;
    uint64_t old = atomic_load_explicit(&hd->body, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
    atomic_store_explicit(&hd->body, off, memory_order_release);
    atomic_signal_fence(memory_order_seq_cst);
    mp__fault("manager.dict.grown");
    mp__heap_free(c->h, old);
    return 0;
}

/* Check a key: valid for this heap and hashable. */
static int
key_check(const mp__cont *c, const mp_item *key, uint64_t *hash)
{
    int r = mp__item_check(c->h, key);
    return r != 0 ? r : mp__item_hash(key, hash);
}

/* copy_item - a caller-owned copy of an input item (for the default of get/pop). */
static int
copy_item(mp__heap *h, const mp_item *src, mp_item *out)
{
    mp__slot s;
    int r = mp__item_check(h, src);
    if (r != 0)
        return r;
    /* A str/bytes is copied to the caller straight from the source, never through the heap. */
    if (src->type == MP_ITEM_STR || src->type == MP_ITEM_BYTES) {
        char *p = mp__malloc(src->v.s.len + 1);
        if (p == NULL)
            return -ENOMEM;
        if (src->v.s.len > 0)
            memcpy(p, src->v.s.ptr, src->v.s.len);
        p[src->v.s.len] = '\0';
        *out = *src;
        out->v.s.ptr = p;
        return 0;
    }
    r = mp__slot_make(h, src, &s);
    return r != 0 ? r : mp__slot_get(h, &s, out);
}

int
mp__shdict_create(mp__heap *h, uint32_t kind, uint64_t *off)
{
    int err = 0;
    uint64_t body = dict_body_new_(h, 0, &err);
    if (body == 0)
        return err;
    *off = mp__cont_create(h, kind, body, &err);
    if (*off == 0)
        mp__heap_free(h, body);
    return err;
}

ssize_t
mp__shdict_len(mp__cont *c)
{
    int err = 0;
    mp__chdr *hd = mp__cont_lock(c, &err);
    if (hd == NULL)
        return err;
    ssize_t n = (ssize_t)tab_of(c, hd)->used;
    mp__cont_unlock(c, hd);
    return n;
}

int
mp__shdict_get(mp__cont *c, const mp_item *key, const mp_item *def, mp_item *out)
{
    uint64_t hash, pos;
    int err = key_check(c, key, &hash);
    if (err != 0)
        return err;
    mp__chdr *hd = mp__cont_lock(c, &err);
    if (hd == NULL)
        return err;
    dtab *t = tab_of(c, hd);
    int64_t ix = lookup(c->h, t, hash, key, &pos);
    if (ix >= 0 && out != NULL)
        err = mp__slot_get(c->h, &ents(t)[ix].val, out);
    mp__cont_unlock(c, hd);
    if (ix >= 0)
        return out != NULL ? err : 1;
    if (def == NULL)
        return out != NULL ? -ENOENT : 0;
    return copy_item(c->h, def, out);
}

/* insert - put a new key (its slot already made) at index word pos. Lock held. */
static int
insert(const mp__cont *c, mp__chdr *hd, uint64_t hash, const mp_item *key, const mp__slot *ks,
       const mp__slot *vs)
{
    dtab *t = tab_of(c, hd);
    uint64_t pos;
    if (t->nent == t->cap) {
        int err = grow(c, hd);
        if (err != 0)
            return err;
        t = tab_of(c, hd); /* the new table */
    }
    lookup(c->h, t, hash, key, &pos);
    uint64_t n = t->nent;
    dent *e = &ents(t)[n];
    e->hash = hash;
    e->key = *ks;
    e->val = *vs;
    unsigned w = 0;
    mp__log_put(&hd->log, &w, off_of(c, &t->idx[pos]) | MP__LOG_W32, n);
    mp__log_put(&hd->log, &w, off_of(c, &t->nent), n + 1);
    mp__log_put(&hd->log, &w, off_of(c, &t->used), t->used + 1);
    mp__log_commit(c->h, &hd->log, w);
    return 0;
}

/* store - d[key] = v with both slots made; in SET_DEFAULT mode an existing value stays and is
 * copied to *out. The slots that end up unused, and a replaced value, go to *drop. */
static int
store(const mp__cont *c, mp__chdr *hd, uint64_t hash, const mp_item *key, const mp__slot *ks,
      const mp__slot *vs, int mode, mp_item *out, mp__slot drop[2])
{
    dtab *t = tab_of(c, hd);
    uint64_t pos;
    int64_t ix = lookup(c->h, t, hash, key, &pos);
    int err = 0;
    if (ix < 0) {
        if (out != NULL && (err = mp__slot_get(c->h, vs, out)) != 0)
            return err;
        err = insert(c, hd, hash, key, ks, vs);
        if (err != 0 && out != NULL)
            mp_item_clear(out);
        drop[0] = drop[1] = (mp__slot){0, 0};
        return err;
    }
    dent *e = &ents(t)[ix];
    drop[0] = *ks;
    if (mode == MP__SET_DEFAULT) {
        drop[1] = *vs;
        return out != NULL ? mp__slot_get(c->h, &e->val, out) : 0;
    }
    drop[1] = e->val;
    unsigned w = 0;
    mp__log_put(&hd->log, &w, off_of(c, &e->val.tag), vs->tag);
    mp__log_put(&hd->log, &w, off_of(c, &e->val.u), vs->u);
    mp__log_commit(c->h, &hd->log, w);
    return 0;
}

static int
make_pair(const mp__cont *c, const mp_item *key, const mp_item *v, uint64_t *hash, mp__slot *ks,
          mp__slot *vs)
{
    int err = key_check(c, key, hash);
    if (err == 0)
        err = mp__item_check(c->h, v);
    if (err == 0)
        err = mp__slot_make(c->h, key, ks);
    if (err == 0 && (err = mp__slot_make(c->h, v, vs)) != 0)
        mp__slot_release(c->h, ks);
    return err;
}

int
mp__shdict_set(mp__cont *c, const mp_item *key, const mp_item *v, int mode, mp_item *out)
{
    static const mp_item none = {.type = MP_ITEM_NONE};
    uint64_t hash;
    mp__slot ks, vs, drop[2];
    int err = make_pair(c, key, v != NULL ? v : &none, &hash, &ks, &vs);
    if (err != 0)
        return err;
    mp__chdr *hd = mp__cont_lock(c, &err);
    if (hd != NULL) {
        err = store(c, hd, hash, key, &ks, &vs, mode, out, drop);
        mp__cont_unlock(c, hd);
    }
    if (err != 0) {
        mp__slot_release(c->h, &ks);
        mp__slot_release(c->h, &vs);
    } else {
        mp__slot_release(c->h, &drop[0]);
        mp__slot_release(c->h, &drop[1]);
    }
    return err;
}

int
mp__shdict_update(mp__cont *c, const mp_item *keys, const mp_item *values, size_t n)
{
    uint64_t *hash = mp__malloc((n > 0 ? n : 1) * sizeof *hash);
    mp__slot *ks = mp__malloc((n > 0 ? n : 1) * 2 * sizeof *ks);
    int err = hash == NULL || ks == NULL ? -ENOMEM : 0;
    /* Every pair is checked and stored in the heap before the lock is taken. */
    size_t held = 0;
    for (; err == 0 && held < n; held++) {
        err =
            make_pair(c, &keys[held], &values[held], &hash[held], &ks[2 * held], &ks[2 * held + 1]);
        if (err != 0)
            break;
    }
    if (err == 0) {
        mp__chdr *hd = mp__cont_lock(c, &err);
        for (size_t i = 0; hd != NULL && err == 0 && i < n; i++) {
            mp__slot drop[2];
            err = store(c, hd, hash[i], &keys[i], &ks[2 * i], &ks[2 * i + 1], MP__SET_ALWAYS, NULL,
                        drop);
            /* A stored pair leaves only its unused slots for the release below. */
            if (err == 0) {
                ks[2 * i] = drop[0];
                ks[2 * i + 1] = drop[1];
            }
        }
        if (hd != NULL)
            mp__cont_unlock(c, hd);
    }
    for (size_t i = 0; i < held; i++) {
        mp__slot_release(c->h, &ks[2 * i]);
        mp__slot_release(c->h, &ks[2 * i + 1]);
    }
    mp__free(hash);
    mp__free(ks);
    return err;
}

/* unlink_entry - remove entry ix (index word pos) through the redo record. Lock held. When it
 * is the last entry, nent goes back with it, so that popitem stays O(1). */
static void
unlink_entry(const mp__cont *c, mp__chdr *hd, dtab *t, uint64_t ix, uint64_t pos)
{
    dent *e = &ents(t)[ix];
    unsigned w = 0;
    mp__log_put(&hd->log, &w, off_of(c, &t->idx[pos]) | MP__LOG_W32, IX_DUMMY);
    mp__log_put(&hd->log, &w, off_of(c, &e->key.tag), MP__SLOT_DELETED);
    mp__log_put(&hd->log, &w, off_of(c, &t->used), t->used - 1);
    if (ix + 1 == t->nent)
        mp__log_put(&hd->log, &w, off_of(c, &t->nent), ix);
    mp__log_commit(c->h, &hd->log, w);
}

int
mp__shdict_pop(mp__cont *c, const mp_item *key, const mp_item *def, mp_item *out)
{
    uint64_t hash, pos;
    int err = key_check(c, key, &hash);
    if (err != 0)
        return err;
    mp__chdr *hd = mp__cont_lock(c, &err);
    if (hd == NULL)
        return err;
    dtab *t = tab_of(c, hd);
    int64_t ix = lookup(c->h, t, hash, key, &pos);
    dent gone;
    if (ix >= 0) {
        gone = ents(t)[ix];
        if (out != NULL)
            err = mp__slot_get(c->h, &gone.val, out);
        if (err == 0)
            unlink_entry(c, hd, t, (uint64_t)ix, pos);
    }
    mp__cont_unlock(c, hd);
    if (ix >= 0) {
        if (err == 0) {
            mp__slot_release(c->h, &gone.key);
            mp__slot_release(c->h, &gone.val);
        }
        return err;
    }
    if (def == NULL)
        return -ENOENT;
    return out != NULL ? copy_item(c->h, def, out) : 0;
}

int
mp__shdict_popitem(mp__cont *c, mp_item *key, mp_item *value)
{
    int err = 0;
    mp__chdr *hd = mp__cont_lock(c, &err);
    if (hd == NULL)
        return err;
    dtab *t = tab_of(c, hd);
    dent *e = ents(t), gone;
    int64_t ix = (int64_t)t->nent - 1;
    while (ix >= 0 && mp__slot_type(&e[ix].key) == MP__SLOT_DELETED)
        ix--;
    if (ix < 0)
        err = -ENOENT;
    if (err == 0) {
        gone = e[ix];
        if (key != NULL)
            err = mp__slot_get(c->h, &gone.key, key);
        if (err == 0 && value != NULL && (err = mp__slot_get(c->h, &gone.val, value)) != 0 &&
            key != NULL)
            mp_item_clear(key);
    }
    if (err == 0) {
        /* Entries above ix were all removed: nent may drop to ix. */
        unsigned w = 0;
        uint64_t pos = pos_of(t, (uint64_t)ix);
        mp__log_put(&hd->log, &w, off_of(c, &t->idx[pos]) | MP__LOG_W32, IX_DUMMY);
        mp__log_put(&hd->log, &w, off_of(c, &e[ix].key.tag), MP__SLOT_DELETED);
        mp__log_put(&hd->log, &w, off_of(c, &t->used), t->used - 1);
        mp__log_put(&hd->log, &w, off_of(c, &t->nent), (uint64_t)ix);
        mp__log_commit(c->h, &hd->log, w);
    }
    mp__cont_unlock(c, hd);
    if (err == 0) {
        mp__slot_release(c->h, &gone.key);
        mp__slot_release(c->h, &gone.val);
    }
    return err;
}

int
mp__shdict_snapshot(mp__cont *c, mp_item **keys, mp_item **values, size_t *n)
{
    int err = 0;
    mp__chdr *hd = mp__cont_lock(c, &err);
    if (hd == NULL)
        return err;
    dtab *t = tab_of(c, hd);
    size_t cnt = (size_t)t->used, done = 0;
    mp_item *ka = NULL, *va = NULL;
    if (cnt > 0 && keys != NULL && (ka = mp__calloc(cnt, sizeof *ka)) == NULL)
        err = -ENOMEM;
    if (cnt > 0 && values != NULL && (va = mp__calloc(cnt, sizeof *va)) == NULL)
        err = -ENOMEM;
    dent *e = ents(t);
    for (uint64_t k = 0; err == 0 && k < t->nent; k++) {
        if (mp__slot_type(&e[k].key) == MP__SLOT_DELETED)
            continue;
        if (ka != NULL)
            err = mp__slot_get(c->h, &e[k].key, &ka[done]);
        if (err == 0 && va != NULL)
            err = mp__slot_get(c->h, &e[k].val, &va[done]);
        done++;
    }
    mp__cont_unlock(c, hd);
    if (err != 0) {
        mp_items_free(ka, done);
        mp_items_free(va, done);
        return err;
    }
    if (keys != NULL)
        *keys = ka;
    if (values != NULL)
        *values = va;
    *n = cnt;
    return 0;
}

int
mp__shdict_clear(mp__cont *c)
{
    int err = 0;
    uint64_t off = dict_body_new_(c->h, 0, &err);
    if (off == 0)
        return err;
    mp__chdr *hd = mp__cont_lock(c, &err);
    if (hd == NULL) {
        mp__heap_free(c->h, off);
        return err;
    }
    uint64_t old = atomic_load_explicit(&hd->body, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
    atomic_store_explicit(&hd->body, off, memory_order_release);
    atomic_signal_fence(memory_order_seq_cst);
    /* The old table is unreachable now: free what it owned, then itself. */
    dtab *t = mp__at(c->h, old);
    dent *e = ents(t);
    for (uint64_t k = 0; k < t->nent; k++) {
        if (mp__slot_type(&e[k].key) == MP__SLOT_DELETED)
            continue;
        mp__slot_release(c->h, &e[k].key);
        mp__slot_release(c->h, &e[k].val);
    }
    mp__heap_free(c->h, old);
    mp__cont_unlock(c, hd);
    return 0;
}

int
mp__shdict_copy(mp__cont *c, mp__cont **out)
{
    int err = 0;
    mp__chdr *hd = mp__cont_lock(c, &err);
    if (hd == NULL)
        return err;
    dtab *t = tab_of(c, hd);
    uint64_t body = dict_body_new_(c->h, (size_t)t->used, &err), off = 0;
    uint64_t n = 0;
    if (body != 0) {
        dtab *nt = mp__at(c->h, body);
        dent *oe = ents(t), *ne = ents(nt);
        for (uint64_t k = 0; err == 0 && k < t->nent; k++) {
            if (mp__slot_type(&oe[k].key) == MP__SLOT_DELETED)
                continue;
            ne[n].hash = oe[k].hash;
            err = mp__slot_dup(c->h, &oe[k].key, &ne[n].key);
            if (err == 0 && (err = mp__slot_dup(c->h, &oe[k].val, &ne[n].val)) != 0)
                mp__slot_release(c->h, &ne[n].key);
            if (err == 0)
                index_new(nt, n++);
        }
        nt->nent = nt->used = n;
        if (err == 0)
            off = mp__cont_create(c->h, c->kind, body, &err);
        if (err != 0) {
            for (uint64_t k = 0; k < n; k++) {
                mp__slot_release(c->h, &ne[k].key);
                mp__slot_release(c->h, &ne[k].val);
            }
            mp__heap_free(c->h, body);
        }
    }
    mp__cont_unlock(c, hd);
    if (err != 0)
        return err;
    *out = mp__cont_new(c->h, off, c->kind);
    return *out != NULL ? 0 : -ENOMEM;
}
