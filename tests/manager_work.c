/*
 * manager_work.c - the non-owner side of test_manager_objects (see manager_work.h).
 */
#include "manager_work.h"

#include <errno.h>
#include <string.h>

int
mw_barrier_action(void *value)
{
    return mp_value_fetch_add(value, 1, NULL);
}

/* The condition's predicate: a function pointer of this process, given to each wait. */
static bool
flag_is_set(void *value)
{
    int64_t x = 0;
    return mp_value_get(value, &x, sizeof x) == 0 && x == 1;
}

struct handles {
    mp_value *actions, *counter, *val, *flag;
    mp_barrier *bar;
    mp_queue *q, *jq;
    mp_lock *lock, *rlock;
    mp_semaphore *sem, *bsem;
    mp_array *arr;
    mp_list *l;
    mp_dict *d;
    mp_namespace *ns;
    mp_condition *cond;
    mp_event *ev1, *ev2;
};

static void
close_all(struct handles *h)
{
    mp_barrier_close(h->bar);
    mp_value_close(h->actions);
    mp_value_close(h->counter);
    mp_value_close(h->val);
    mp_value_close(h->flag);
    mp_queue_close(h->q);
    mp_queue_close(h->jq);
    mp_lock_close(h->lock);
    mp_lock_close(h->rlock);
    mp_semaphore_close(h->sem);
    mp_semaphore_close(h->bsem);
    mp_array_close(h->arr);
    mp_list_close(h->l);
    mp_dict_close(h->d);
    mp_namespace_close(h->ns);
    mp_condition_close(h->cond);
    mp_event_close(h->ev1);
    mp_event_close(h->ev2);
}

/* Every object by name; creation arguments as the owner's, where they make the type. */
static int
get_all(mp_manager *m, struct handles *h)
{
    const mp_value_opts raw = {.raw = true};
    MW_CHECK(mp_manager_value(&h->actions, m, "actions", 'q', &raw) == 0);
    mp_barrier_opts bo = {.action = mw_barrier_action, .action_arg = h->actions};
    MW_CHECK(mp_manager_barrier(&h->bar, m, "bar", 3, &bo) == 0);
    MW_CHECK(mp_manager_queue(&h->q, m, "q", NULL) == 0);
    MW_CHECK(mp_manager_queue(&h->jq, m, "jq", &(mp_queue_opts){.joinable = true}) == 0);
    MW_CHECK(mp_manager_lock(&h->lock, m, "lock", NULL) == 0);
    MW_CHECK(mp_manager_value(&h->counter, m, "counter", 'q', &raw) == 0);
    MW_CHECK(mp_manager_lock(&h->rlock, m, "rlock", &(mp_lock_opts){.recursive = true}) == 0);
    MW_CHECK(mp_manager_semaphore(&h->sem, m, "sem", 0, NULL) == 0);
    MW_CHECK(mp_manager_semaphore(&h->bsem, m, "bsem", 1, &(mp_semaphore_opts){.bounded = true}) ==
             0);
    MW_CHECK(mp_manager_array(&h->arr, m, "arr", 'i', 3, NULL) == 0);
    MW_CHECK(mp_manager_value(&h->val, m, "val", 'd', NULL) == 0);
    MW_CHECK(mp_manager_value(&h->flag, m, "flag", 'q', &raw) == 0);
    MW_CHECK(mp_manager_list(&h->l, m, "l") == 0);
    MW_CHECK(mp_manager_dict(&h->d, m, "d") == 0);
    MW_CHECK(mp_manager_namespace(&h->ns, m, "ns") == 0);
    MW_CHECK(mp_manager_condition(&h->cond, m, "cond", NULL) == 0);
    MW_CHECK(mp_manager_event(&h->ev1, m, "ev1") == 0);
    MW_CHECK(mp_manager_event(&h->ev2, m, "ev2") == 0);
    return 0;
}

static int
work(struct handles *h, int who)
{
    char msg[32], key[8];
    MW_CHECK(mp_barrier_wait(h->bar, 20000) >= 0);
    /* The queue fed by both workers; the owner takes every message. */
    for (int i = 0; i < MW_MESSAGES; i++) {
        int n = snprintf(msg, sizeof msg, "%d:%d", who, i);
        MW_CHECK(mp_queue_put(h->q, msg, (size_t)n, 20000) == 0);
    }
    /* The lock contended by all three: a read-modify-write that only the lock makes exact. */
    for (int i = 0; i < MW_INCREMENTS; i++) {
        int64_t x;
        MW_CHECK(mp_lock_acquire(h->lock, 20000) == 0);
        MW_CHECK(mp_value_get(h->counter, &x, sizeof x) == 0);
        x++;
        MW_CHECK(mp_value_set(h->counter, &x, sizeof x) == 0);
        MW_CHECK(mp_lock_release(h->lock) == 0);
    }
    MW_CHECK(mp_lock_acquire(h->rlock, 20000) == 0 && mp_lock_acquire(h->rlock, MP_NOWAIT) == 0);
    MW_CHECK(mp_lock_release(h->rlock) == 0 && mp_lock_release(h->rlock) == 0);
    MW_CHECK(mp_semaphore_release(h->sem) == 0);
    MW_CHECK(mp_semaphore_acquire(h->bsem, 20000) == 0);
    MW_CHECK(mp_semaphore_release(h->bsem) == 0);
    int32_t e = who * 10;
    MW_CHECK(mp_array_set(h->arr, who, &e, sizeof e) == 0);
    mp_lock *vl = mp_value_get_lock(h->val);
    double dv;
    MW_CHECK(vl != NULL && mp_lock_acquire(vl, 20000) == 0);
    MW_CHECK(mp_value_get(h->val, &dv, sizeof dv) == 0);
    dv += 1.5;
    MW_CHECK(mp_value_set(h->val, &dv, sizeof dv) == 0);
    MW_CHECK(mp_lock_release(vl) == 0);
    mp_item it = mp_item_int(who);
    snprintf(key, sizeof key, "w%d", who);
    mp_item k = mp_item_str(key);
    MW_CHECK(mp_list_append(h->l, &it) == 0);
    MW_CHECK(mp_dict_set(h->d, &k, &it) == 0);
    MW_CHECK(mp_namespace_set(h->ns, key, &it) == 0);
    /* Each event is set by one worker and awaited by the other. */
    MW_CHECK(mp_event_set(who == 1 ? h->ev1 : h->ev2) == 0);
    MW_CHECK(mp_event_wait(who == 1 ? h->ev2 : h->ev1, 20000) == 0);
    size_t len;
    MW_CHECK(mp_queue_get(h->jq, msg, sizeof msg, &len, 20000) == 0 && len == 3);
    MW_CHECK(mp_queue_task_done(h->jq) == 0);
    MW_CHECK(mp_condition_acquire(h->cond, 20000) == 0);
    MW_CHECK(mp_condition_wait_for(h->cond, flag_is_set, h->flag, 20000) >= 0);
    MW_CHECK(mp_condition_release(h->cond) == 0);
    MW_CHECK(mp_barrier_wait(h->bar, 20000) >= 0);
    return 0;
}

int
mw_every_type(mp_manager *m, int who)
{
    struct handles h;
    memset(&h, 0, sizeof h);
    int r = get_all(m, &h);
    if (r == 0)
        r = work(&h, who);
    close_all(&h);
    return r;
}

int
mw_hold(mp_manager *m)
{
    mp_lock *l = NULL;
    mp_event *holding = NULL, *never = NULL;
    MW_CHECK(mp_manager_lock(&l, m, "held", NULL) == 0);
    MW_CHECK(mp_manager_event(&holding, m, "holding") == 0);
    MW_CHECK(mp_manager_event(&never, m, "never") == 0);
    MW_CHECK(mp_lock_acquire(l, 20000) == 0);
    MW_CHECK(mp_event_set(holding) == 0);
    MW_CHECK(mp_event_wait(never, 60000) == 0);
    return 1;
}

int
mw_hammer(mp_manager *m)
{
    mp_lock *l;
    mp_queue *q;
    mp_value *c;
    MW_CHECK(mp_manager_lock(&l, m, "hl", NULL) == 0);
    MW_CHECK(mp_manager_queue(&q, m, "hq", &(mp_queue_opts){.capacity = 4096}) == 0);
    MW_CHECK(mp_manager_value(&c, m, "hc", 'q', &(mp_value_opts){.raw = true}) == 0);
    for (int i = 0;; i++) {
        char msg[16];
        int n = snprintf(msg, sizeof msg, "%d", i);
        MW_CHECK(mp_lock_acquire(l, MP_FOREVER) >= 0);
        MW_CHECK(mp_value_fetch_add(c, 1, NULL) == 0);
        MW_CHECK(mp_lock_release(l) == 0);
        MW_CHECK(mp_queue_put(q, msg, (size_t)n, MP_FOREVER) == 0);
    }
}
