/*
 * mlist.c - the shared-heap list.
 *
 * The body is one block: {len, cap, slots[cap]}. The container header points to it, and every
 * change becomes visible with one store, so a process killed at any point leaves a consistent
 * list:
 *  - append/extend write the new slots above len, then store len;
 *  - pop from the end stores len;
 *  - set replaces a slot (two words) through the redo record;
 *  - everything that moves items (insert, delete, slices, reverse, sort, growth) builds a new
 *    body beside the old one and publishes it by storing its offset in the header. Python's
 *    list moves the same items for these operations, so the copy costs no more in order.
 * Blocks that an operation no longer needs (an old body, the text of a replaced item) are freed
 * after the publishing store; a crash in between leaks them, never frees anything still in use.
 * Pointers into the heap stay valid across allocations: the heap grows in place inside each
 * process's reserved range, it never moves.
 */
#include "manager.h"

#include <stdlib.h>

typedef struct lbody {
    uint64_t len;
    uint64_t cap;
    mp__slot s[];
} lbody;

static lbody *
body_of(const mp__cont *c, const mp__chdr *hd)
{
    return mp__at(c->h, atomic_load_explicit(&hd->body, memory_order_relaxed));
}

static uint64_t
list_body_new_(mp__heap *h, size_t cap, int *err)
{
    if (cap < 4)
        cap = 4;
    if (cap > ((size_t)1 << 40)) {
        *err = -ENOMEM;
        return 0;
    }
    uint64_t off = mp__heap_alloc(h, sizeof(lbody) + cap * sizeof(mp__slot), err);
    if (off != 0) {
        lbody *b = mp__at(h, off);
        b->len = 0;
        b->cap = cap;
    }
    return off;
}

/* publish - make `off` the list's body with one store and free the old body. */
static void
publish(const mp__cont *c, mp__chdr *hd, uint64_t off)
{
    uint64_t old = atomic_load_explicit(&hd->body, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
    atomic_store_explicit(&hd->body, off, memory_order_release);
    atomic_signal_fence(memory_order_seq_cst);
    mp__fault("manager.list.published");
    mp__heap_free(c->h, old);
}

/* store_len - publish a new length with one store, after the slots it covers were written. */
static void
store_len(lbody *b, uint64_t len)
{
    atomic_signal_fence(memory_order_seq_cst);
    *(volatile uint64_t *)&b->len = len;
    atomic_signal_fence(memory_order_seq_cst);
}

/* Check and store n items. On failure nothing is held: the ones already made are released. */
static int
make_slots(mp__heap *h, const mp_item *items, size_t n, mp__slot *out)
{
    for (size_t i = 0; i < n; i++) {
        int r = mp__item_check(h, &items[i]);
        if (r != 0)
            return r;
    }
    for (size_t i = 0; i < n; i++) {
        int r = mp__slot_make(h, &items[i], &out[i]);
        if (r != 0) {
            for (size_t j = 0; j < i; j++)
                mp__slot_release(h, &out[j]);
            return r;
        }
    }
    return 0;
}

static void
release_slots(mp__heap *h, const mp__slot *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        mp__slot_release(h, &s[i]);
}

static int
norm_index(ptrdiff_t i, uint64_t len, uint64_t *out)
{
    if (i < 0)
        i += (ptrdiff_t)len;
    if (i < 0 || (uint64_t)i >= len)
        return -ERANGE;
    *out = (uint64_t)i;
    return 0;
}

/* Python's PySlice_Unpack + PySlice_AdjustIndices: clamp the bounds, return the length. */
static size_t
slice_adjust(uint64_t len, ptrdiff_t *start, ptrdiff_t *stop, ptrdiff_t step)
{
    ptrdiff_t n = (ptrdiff_t)len;
    if (step < -PTRDIFF_MAX)
        step = -PTRDIFF_MAX;
    if (*start == MP_SLICE_DEFAULT)
        *start = step < 0 ? PTRDIFF_MAX : 0;
    if (*stop == MP_SLICE_DEFAULT)
        *stop = step < 0 ? PTRDIFF_MIN : PTRDIFF_MAX;
    ptrdiff_t *b[2] = {start, stop};
    for (int k = 0; k < 2; k++) {
        if (*b[k] < 0) {
            *b[k] = *b[k] < -n ? (step < 0 ? -1 : 0) : *b[k] + n;
        } else if (*b[k] >= n) {
            *b[k] = step < 0 ? n - 1 : n;
        }
    }
    if (step < 0)
        return *stop < *start ? (size_t)((*start - *stop - 1) / (-step) + 1) : 0;
    return *start < *stop ? (size_t)((*stop - *start - 1) / step + 1) : 0;
}

int
mp__shlist_create(mp__heap *h, const mp_item *items, size_t n, uint64_t *off)
{
    int err = 0;
    uint64_t body = list_body_new_(h, n, &err);
    if (body == 0)
        return err;
    lbody *b = mp__at(h, body);
    err = make_slots(h, items, n, b->s);
    if (err == 0) {
        b->len = n;
        *off = mp__cont_create(h, MP__KIND_LIST, body, &err);
        if (*off == 0)
            release_slots(h, b->s, n);
    }
    if (err != 0)
        mp__heap_free(h, body);
    return err;
}

ssize_t
mp__shlist_len(mp__cont *c)
{
    int err = 0;
    mp__chdr *hd = mp__cont_lock(c, &err);
    if (hd == NULL)
        return err;
    ssize_t n = (ssize_t)body_of(c, hd)->len;
    mp__cont_unlock(c, hd);
    return n;
}

int
mp__shlist_get(mp__cont *c, ptrdiff_t i, mp_item *out)
{
    int err = 0;
    mp__chdr *hd = mp__cont_lock(c, &err);
    if (hd == NULL)
        return err;
    lbody *b = body_of(c, hd);
    uint64_t k;
    err = norm_index(i, b->len, &k);
    if (err == 0)
        err = mp__slot_get(c->h, &b->s[k], out);
    mp__cont_unlock(c, hd);
    return err;
}

int
mp__shlist_set(mp__cont *c, ptrdiff_t i, const mp_item *v)
{
    mp__slot ns, old;
    int err = make_slots(c->h, v, 1, &ns);
    if (err != 0)
        return err;
    mp__chdr *hd = mp__cont_lock(c, &err);
    if (hd == NULL) {
        mp__slot_release(c->h, &ns);
        return err;
    }
    lbody *b = body_of(c, hd);
    uint64_t k;
    err = norm_index(i, b->len, &k);
    if (err == 0) {
        old = b->s[k];
        uint64_t at = (uint64_t)((char *)&b->s[k] - c->h->base);
        unsigned w = 0;
        mp__log_put(&hd->log, &w, at, ns.tag);
        mp__log_put(&hd->log, &w, at + 8, ns.u);
        mp__log_commit(c->h, &hd->log, w);
    }
    mp__cont_unlock(c, hd);
    mp__slot_release(c->h, err == 0 ? &old : &ns);
    return err;
}

/* reserve - make room for `more` slots above len, moving to a bigger body if needed. */
static int
reserve(const mp__cont *c, mp__chdr *hd, size_t more, lbody **bp)
{
    lbody *b = body_of(c, hd);
    if (b->cap - b->len >= more)
        goto done;
    size_t cap = b->cap + b->cap / 2 + 4;
    if (cap < b->len + more)
        cap = b->len + more;
    int err = 0;
    uint64_t off = list_body_new_(c->h, cap, &err);
    if (off == 0)
        return err;
    lbody *nb = mp__at(c->h, off);
    memcpy(nb->s, b->s, b->len * sizeof(mp__slot));
    nb->len = b->len;
    publish(c, hd, off);
    b = nb;
done:
    *bp = b;
    return 0;
}

int
mp__shlist_extend(mp__cont *c, const mp_item *items, size_t n)
{
    mp__slot one, *ns = n <= 1 ? &one : mp__malloc(n * sizeof *ns);
    if (ns == NULL)
        return -ENOMEM;
    int err = make_slots(c->h, items, n, ns);
    if (err != 0)
        goto out;
    mp__chdr *hd = mp__cont_lock(c, &err);
    if (hd != NULL) {
        lbody *b = NULL;
        err = reserve(c, hd, n, &b);
        if (err == 0) {
            memcpy(&b->s[b->len], ns, n * sizeof *ns);
            mp__fault("manager.list.append.written");
            store_len(b, b->len + n);
        }
        mp__cont_unlock(c, hd);
    }
    if (err != 0)
        release_slots(c->h, ns, n);
out:
    if (ns != &one)
        mp__free(ns);
    return err;
}

int
mp__shlist_append(mp__cont *c, const mp_item *v)
{
    return mp__shlist_extend(c, v, 1);
}

/* rebuild - publish a new body made of: items [0, start) of the old one, `n` new slots, then
 * the old items from `resume` on. The slots in [start, resume) leave the list; the caller
 * releases what they own. */
static int
rebuild(const mp__cont *c, mp__chdr *hd, uint64_t start, const mp__slot *ins, size_t n,
        uint64_t resume)
{
    lbody *b = body_of(c, hd);
    uint64_t len = start + n + (b->len - resume);
    int err = 0;
    uint64_t off = list_body_new_(c->h, len + len / 8, &err);
    if (off == 0)
        return err;
    lbody *nb = mp__at(c->h, off);
    memcpy(nb->s, b->s, start * sizeof(mp__slot));
    if (n > 0)
        memcpy(&nb->s[start], ins, n * sizeof(mp__slot));
    memcpy(&nb->s[start + n], &b->s[resume], (b->len - resume) * sizeof(mp__slot));
    nb->len = len;
    publish(c, hd, off);
    return 0;
}

int
mp__shlist_insert(mp__cont *c, ptrdiff_t i, const mp_item *v)
{
    mp__slot ns;
    int err = make_slots(c->h, v, 1, &ns);
    if (err != 0)
        return err;
    mp__chdr *hd = mp__cont_lock(c, &err);
    if (hd == NULL) {
        mp__slot_release(c->h, &ns);
        return err;
    }
    lbody *b = body_of(c, hd);
    ptrdiff_t len = (ptrdiff_t)b->len;
    if (i < 0)
        i = i + len < 0 ? 0 : i + len;
    if (i > len)
        i = len;
    if (i == len && b->len < b->cap) {
        b->s[len] = ns;
        store_len(b, b->len + 1);
    } else {
        err = rebuild(c, hd, (uint64_t)i, &ns, 1, (uint64_t)i);
    }
    mp__cont_unlock(c, hd);
    if (err != 0)
        mp__slot_release(c->h, &ns);
    return err;
}

int
mp__shlist_pop(mp__cont *c, ptrdiff_t i, mp_item *out)
{
    int err = 0;
    mp__chdr *hd = mp__cont_lock(c, &err);
    if (hd == NULL)
        return err;
    lbody *b = body_of(c, hd);
    uint64_t k;
    mp__slot gone;
    err = norm_index(i, b->len, &k);
    if (err == 0 && out != NULL)
        err = mp__slot_get(c->h, &b->s[k], out);
    if (err == 0) {
        gone = b->s[k];
        if (k + 1 == b->len)
            store_len(b, k);
        else
            err = rebuild(c, hd, k, NULL, 0, k + 1);
        if (err != 0 && out != NULL)
            mp_item_clear(out);
    }
    mp__cont_unlock(c, hd);
    if (err == 0)
        mp__slot_release(c->h, &gone);
    return err;
}

int
mp__shlist_slice(mp__cont *c, ptrdiff_t start, ptrdiff_t stop, ptrdiff_t step, mp_item **out,
                 size_t *n)
{
    int err = 0;
    mp__chdr *hd = mp__cont_lock(c, &err);
    if (hd == NULL)
        return err;
    lbody *b = body_of(c, hd);
    size_t cnt = slice_adjust(b->len, &start, &stop, step);
    mp_item *items = cnt > 0 ? mp__calloc(cnt, sizeof *items) : NULL;
    if (cnt > 0 && items == NULL)
        err = -ENOMEM;
    size_t done = 0;
    /* The index is computed from `done` so that it never steps past the list (no overflow
     * with a huge step). */
    for (; err == 0 && done < cnt; done++)
        err = mp__slot_get(c->h, &b->s[start + (ptrdiff_t)done * step], &items[done]);
    mp__cont_unlock(c, hd);
    if (err != 0) {
        mp_items_free(items, done);
        return err;
    }
    *out = items;
    *n = cnt;
    return 0;
}

int
mp__shlist_set_slice(mp__cont *c, ptrdiff_t start, ptrdiff_t stop, const mp_item *items, size_t n)
{
    mp__slot one, *ns = n <= 1 ? &one : mp__malloc(n * sizeof *ns);
    if (ns == NULL)
        return -ENOMEM;
    int err = make_slots(c->h, items, n, ns);
    if (err != 0)
        goto out;
    mp__chdr *hd = mp__cont_lock(c, &err);
    if (hd == NULL) {
        release_slots(c->h, ns, n);
        goto out;
    }
    lbody *b = body_of(c, hd);
    slice_adjust(b->len, &start, &stop, 1);
    if (stop < start)
        stop = start;
    size_t ngone = (size_t)(stop - start);
    mp__slot *gone = ngone > 0 ? mp__malloc(ngone * sizeof *gone) : NULL;
    if (ngone > 0 && gone == NULL)
        err = -ENOMEM;
    if (err == 0) {
        if (ngone > 0) /* memcpy from or to NULL is undefined even for 0 bytes */
            memcpy(gone, &b->s[start], ngone * sizeof *gone);
        err = rebuild(c, hd, (uint64_t)start, ns, n, (uint64_t)stop);
    }
    mp__cont_unlock(c, hd);
    if (err == 0)
        release_slots(c->h, gone, ngone);
    else
        release_slots(c->h, ns, n);
    mp__free(gone);
out:
    if (ns != &one)
        mp__free(ns);
    return err;
}

int
mp__shlist_del_slice(mp__cont *c, ptrdiff_t start, ptrdiff_t stop, ptrdiff_t step)
{
    int err = 0;
    mp__chdr *hd = mp__cont_lock(c, &err);
    if (hd == NULL)
        return err;
    lbody *b = body_of(c, hd);
    size_t cnt = slice_adjust(b->len, &start, &stop, step);
    if (cnt == 0) {
        mp__cont_unlock(c, hd);
        return 0;
    }
    /* Mark the doomed indexes, then keep the rest in order. */
    uint64_t len = b->len;
    unsigned char *del = mp__calloc(len, 1);
    mp__slot *gone = mp__malloc(cnt * sizeof *gone);
    uint64_t off = 0;
    if (del == NULL || gone == NULL)
        err = -ENOMEM;
    else
        off = list_body_new_(c->h, len - cnt, &err);
    if (off != 0) {
        for (size_t j = 0; j < cnt; j++) {
            ptrdiff_t k = start + (ptrdiff_t)j * step;
            del[k] = 1;
            gone[j] = b->s[k];
        }
        lbody *nb = mp__at(c->h, off);
        uint64_t w = 0;
        for (uint64_t r = 0; r < len; r++)
            if (!del[r])
                nb->s[w++] = b->s[r];
        nb->len = w;
        publish(c, hd, off);
    }
    mp__cont_unlock(c, hd);
    if (err == 0)
        release_slots(c->h, gone, cnt);
    mp__free(del);
    mp__free(gone);
    return err;
}

ssize_t
mp__shlist_find(mp__cont *c, const mp_item *v, int what)
{
    int err = mp__item_check(c->h, v);
    if (err != 0)
        return err;
    mp__chdr *hd = mp__cont_lock(c, &err);
    if (hd == NULL)
        return err;
    lbody *b = body_of(c, hd);
    ssize_t found = -ENOENT, count = 0;
    mp__slot gone;
    for (uint64_t k = 0; k < b->len; k++) {
        if (!mp__slot_eq_item(c->h, &b->s[k], v))
            continue;
        count++;
        if (what != MP__FIND_COUNT) {
            found = (ssize_t)k;
            break;
        }
    }
    if (what == MP__FIND_REMOVE && found >= 0) {
        gone = b->s[found];
        err = rebuild(c, hd, (uint64_t)found, NULL, 0, (uint64_t)found + 1);
        if (err != 0)
            found = err;
    }
    mp__cont_unlock(c, hd);
    if (what == MP__FIND_REMOVE && found >= 0)
        mp__slot_release(c->h, &gone);
    if (what == MP__FIND_COUNT)
        return count;
    return what == MP__FIND_REMOVE && found >= 0 ? 0 : found;
}

int
mp__shlist_reverse(mp__cont *c)
{
    int err = 0;
    mp__chdr *hd = mp__cont_lock(c, &err);
    if (hd == NULL)
        return err;
    lbody *b = body_of(c, hd);
    uint64_t off = list_body_new_(c->h, b->cap, &err);
    if (off != 0) {
        lbody *nb = mp__at(c->h, off);
        for (uint64_t k = 0; k < b->len; k++)
            nb->s[k] = b->s[b->len - 1 - k];
        nb->len = b->len;
        publish(c, hd, off);
    }
    mp__cont_unlock(c, hd);
    return err;
}

/* A stable merge sort (Python's sort is stable) with "less" as Python's < (reversed for
 * reverse=True, which keeps equal items in their original order, as Python does). */
typedef struct sorter {
    mp__heap *h;
    bool reverse;
} sorter;

static bool
less(const sorter *st, const mp__slot *a, const mp__slot *b)
{
    return st->reverse ? mp__slot_cmp(st->h, b, a) == -1 : mp__slot_cmp(st->h, a, b) == -1;
}

static void
merge_sort(const sorter *st, mp__slot *a, mp__slot *tmp, size_t n)
{
    if (n < 2)
        return;
    size_t m = n / 2;
    merge_sort(st, a, tmp, m);
    merge_sort(st, a + m, tmp, n - m);
    if (!less(st, &a[m], &a[m - 1]))
        return;
    memcpy(tmp, a, m * sizeof *a);
    size_t i = 0, j = m, k = 0;
    while (i < m && j < n)
        a[k++] = less(st, &a[j], &tmp[i]) ? a[j++] : tmp[i++];
    while (i < m)
        a[k++] = tmp[i++];
}

int
mp__shlist_sort(mp__cont *c, bool reverse)
{
    int err = 0;
    mp__chdr *hd = mp__cont_lock(c, &err);
    if (hd == NULL)
        return err;
    lbody *b = body_of(c, hd);
    /* Python compares only within one class; anything else is a TypeError, found before any
     * item moves. A single item is never compared, so it may be anything. */
    int cls = b->len > 0 ? mp__slot_order_class(&b->s[0]) : 0;
    for (uint64_t k = 0; b->len > 1 && k < b->len; k++)
        if (mp__slot_order_class(&b->s[k]) != cls || cls < 0)
            err = MP_ETYPE;
    mp__slot *tmp = NULL;
    uint64_t off = 0;
    if (err == 0 && b->len > 1) {
        tmp = mp__malloc((b->len / 2 + 1) * sizeof *tmp);
        off = tmp != NULL ? list_body_new_(c->h, b->cap, &err) : 0;
        if (tmp == NULL)
            err = -ENOMEM;
    }
    if (off != 0) {
        lbody *nb = mp__at(c->h, off);
        memcpy(nb->s, b->s, b->len * sizeof(mp__slot));
        nb->len = b->len;
        sorter st = {c->h, reverse};
        merge_sort(&st, nb->s, tmp, nb->len);
        publish(c, hd, off);
    }
    mp__cont_unlock(c, hd);
    mp__free(tmp);
    return err;
}

int
mp__shlist_clear(mp__cont *c)
{
    int err = 0;
    mp__chdr *hd = mp__cont_lock(c, &err);
    if (hd == NULL)
        return err;
    lbody *b = body_of(c, hd);
    uint64_t len = b->len;
    store_len(b, 0);
    /* The slots above len may be overwritten as soon as the lock is released: free what they
     * own now. */
    release_slots(c->h, b->s, len);
    mp__cont_unlock(c, hd);
    return 0;
}
