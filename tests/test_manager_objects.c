/*
 * test_manager_objects.c - managed objects by name: every type created in the manager's heap,
 * used at once by the owner, a forked child and a program started with exec that attached by
 * the manager's name (tests/manager_peer.c); create-or-get, deletion, type and lifetime errors,
 * an attached process killed while holding a lock, and nothing left after shutdown.
 */
#define _GNU_SOURCE
#include "helpers.h"

#include "internal.h"
#include "manager_work.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MANAGER_PEER
#error "MANAGER_PEER must name the manager_peer program"
#endif

/* spawn_peer - fork and exec the peer program on manager m; its pid. */
static pid_t
spawn_peer(mp_manager *m, const char *what)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execl(MANAGER_PEER, "manager_peer", mp_manager_name(m), what, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int
child_every(void *m)
{
    return mw_every_type(m, 1);
}

static bool
flag_is_set(void *value)
{
    int64_t x = 0;
    return mp_value_get(value, &x, sizeof x) == 0 && x == 1;
}

static void
test_every_type_from_a_forked_child_and_an_exec_peer(void **state)
{
    (void)state;
    mp_manager *m;
    assert_int_equal(mp_manager_open(&m, NULL), 0);
    const mp_value_opts raw = {.raw = true};
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
    /* The owner creates each object; the workers get them by name. A small ring, so that
     * the puts of both workers wrap it many times and wait for room. */
    assert_int_equal(mp_manager_value(&actions, m, "actions", 'q', &raw), 0);
    mp_barrier_opts bo = {.action = mw_barrier_action, .action_arg = actions};
    assert_int_equal(mp_manager_barrier(&bar, m, "bar", 3, &bo), 0);
    assert_int_equal(mp_manager_queue(&q, m, "q", &(mp_queue_opts){.capacity = 256}), 0);
    assert_int_equal(mp_manager_queue(&jq, m, "jq", &(mp_queue_opts){.joinable = true}), 0);
    assert_int_equal(mp_manager_lock(&lock, m, "lock", NULL), 0);
    assert_int_equal(mp_manager_value(&counter, m, "counter", 'q', &raw), 0);
    assert_int_equal(mp_manager_lock(&rlock, m, "rlock", &(mp_lock_opts){.recursive = true}), 0);
    assert_int_equal(mp_manager_semaphore(&sem, m, "sem", 0, NULL), 0);
    assert_int_equal(
        mp_manager_semaphore(&bsem, m, "bsem", 1, &(mp_semaphore_opts){.bounded = true}), 0);
    assert_int_equal(mp_manager_array(&arr, m, "arr", 'i', 3, NULL), 0);
    double start = 0.5;
    assert_int_equal(mp_manager_value(&val, m, "val", 'd', &(mp_value_opts){.init = &start}), 0);
    assert_int_equal(mp_manager_value(&flag, m, "flag", 'q', &raw), 0);
    assert_int_equal(mp_manager_list(&l, m, "l"), 0);
    assert_int_equal(mp_manager_dict(&d, m, "d"), 0);
    assert_int_equal(mp_manager_namespace(&ns, m, "ns"), 0);
    assert_int_equal(mp_manager_condition(&cond, m, "cond", NULL), 0);
    assert_int_equal(mp_manager_event(&ev1, m, "ev1"), 0);
    assert_int_equal(mp_manager_event(&ev2, m, "ev2"), 0);

    pid_t child = th_fork(child_every, m);
    pid_t peer = spawn_peer(m, "every");
    assert_true(child > 0 && peer > 0);

    assert_true(mp_barrier_wait(bar, 20000) >= 0);
    /* Every message of both workers, each worker's in its order. */
    int next[3] = {0, 0, 0};
    for (int i = 0; i < 2 * MW_MESSAGES; i++) {
        char msg[32];
        size_t len;
        int who, k;
        assert_int_equal(mp_queue_get(q, msg, sizeof msg - 1, &len, 20000), 0);
        msg[len] = '\0';
        assert_int_equal(sscanf(msg, "%d:%d", &who, &k), 2);
        assert_true(who == 1 || who == 2);
        assert_int_equal(k, next[who]++);
    }
    for (int i = 0; i < MW_INCREMENTS; i++) {
        int64_t x;
        assert_int_equal(mp_lock_acquire(lock, 20000), 0);
        assert_int_equal(mp_value_get(counter, &x, sizeof x), 0);
        x++;
        assert_int_equal(mp_value_set(counter, &x, sizeof x), 0);
        assert_int_equal(mp_lock_release(lock), 0);
    }
    assert_int_equal(mp_semaphore_acquire(sem, 20000), 0);
    assert_int_equal(mp_semaphore_acquire(sem, 20000), 0);
    assert_int_equal(mp_queue_put(jq, "one", 3, 20000), 0);
    assert_int_equal(mp_queue_put(jq, "two", 3, 20000), 0);
    assert_int_equal(mp_queue_join(jq, 20000), 0);
    int64_t one = 1;
    assert_int_equal(mp_condition_acquire(cond, 20000), 0);
    assert_int_equal(mp_value_set(flag, &one, sizeof one), 0);
    assert_int_equal(mp_condition_notify_all(cond), 0);
    assert_true(mp_condition_wait_for(cond, flag_is_set, flag, MP_NOWAIT) >= 0);
    assert_int_equal(mp_condition_release(cond), 0);
    assert_true(mp_barrier_wait(bar, 20000) >= 0);

    /* What the three processes did, seen by the owner. */
    int64_t x;
    assert_int_equal(mp_value_get(counter, &x, sizeof x), 0);
    assert_int_equal(x, 3 * MW_INCREMENTS);
    assert_int_equal(mp_value_get(actions, &x, sizeof x), 0);
    assert_int_equal(x, 2); /* one action per round, in whichever process came last */
    int32_t a[3];
    assert_int_equal(mp_array_get_slice(arr, 0, 3, a, sizeof a), 3);
    assert_true(a[0] == 0 && a[1] == 10 && a[2] == 20);
    double dv;
    assert_int_equal(mp_value_get(val, &dv, sizeof dv), 0);
    assert_true(dv == 3.5);
    assert_int_equal(mp_list_sort(l, false), 0);
    char *s;
    assert_true(mp_list_repr(l, &s) > 0);
    assert_string_equal(s, "[1, 2]");
    mp_free(s);
    mp_item v;
    mp_item k2 = mp_item_str("w2");
    assert_int_equal(mp_dict_get(d, &k2, NULL, &v), 0);
    assert_true(v.type == MP_ITEM_INT && v.v.i == 2);
    assert_int_equal(mp_namespace_get(ns, "w1", &v), 0);
    assert_true(v.type == MP_ITEM_INT && v.v.i == 1);
    assert_int_equal(mp_event_is_set(ev1), 1);
    assert_int_equal(mp_event_is_set(ev2), 1);
    assert_int_equal(mp_queue_qsize(q), 0);
    assert_int_equal(mp_semaphore_get_value(sem), 0);
    assert_int_equal(mp_semaphore_get_value(bsem), 1);
    assert_int_equal(mp_lock_acquire(rlock, MP_NOWAIT), 0);
    assert_int_equal(mp_lock_release(rlock), 0);

    assert_child_ok(child);
    assert_child_ok(peer);
    mp_barrier_close(bar);
    mp_value_close(actions);
    mp_value_close(counter);
    mp_value_close(val);
    mp_value_close(flag);
    mp_queue_close(q);
    mp_queue_close(jq);
    mp_lock_close(lock);
    mp_lock_close(rlock);
    mp_semaphore_close(sem);
    mp_semaphore_close(bsem);
    mp_array_close(arr);
    mp_list_close(l);
    mp_dict_close(d);
    mp_namespace_close(ns);
    mp_condition_close(cond);
    mp_event_close(ev1);
    mp_event_close(ev2);
    mp_manager_close(m);
}

static void
test_one_name_one_object_and_delete_unbinds(void **state)
{
    (void)state;
    mp_manager *m;
    mp_semaphore *a, *b;
    mp_event *ev;
    assert_int_equal(mp_manager_open(&m, NULL), 0);
    assert_int_equal(mp_manager_semaphore(&a, m, "x", 2, NULL), 0);
    /* The second call gets the same semaphore: its value argument is not used. */
    assert_int_equal(mp_manager_semaphore(&b, m, "x", 7, NULL), 0);
    assert_int_equal(mp_semaphore_acquire(a, MP_NOWAIT), 0);
    assert_int_equal(mp_semaphore_get_value(b), 1);
    assert_int_equal(mp_manager_delete(m, "x"), 0);
    assert_int_equal(mp_manager_delete(m, "x"), -ENOENT);
    /* Unbound, the object lives on for its handles, and the name is free for another type. */
    assert_int_equal(mp_semaphore_release(b), 0);
    assert_int_equal(mp_semaphore_get_value(a), 2);
    assert_int_equal(mp_manager_event(&ev, m, "x"), 0);
    assert_int_equal(mp_event_is_set(ev), 0);
    mp_semaphore_close(b);
    assert_int_equal(mp_manager_semaphore(&b, m, "x", 1, NULL), MP_ETYPE);
    assert_null(b);
    mp_semaphore_close(a);
    mp_event_close(ev);

    /* A process may attach to its own manager; handles outlive the manager handle they came
     * from (they keep the mapping). */
    mp_manager *self;
    mp_event *ev2;
    mp_queue *q;
    assert_int_equal(mp_manager_attach(&self, mp_manager_name(m), MP_NOWAIT), 0);
    assert_int_equal(mp_manager_event(&ev2, self, "x"), 0);
    assert_int_equal(mp_manager_queue(&q, self, "q", &(mp_queue_opts){.capacity = 64}), 0);
    mp_manager_close(self);
    assert_int_equal(mp_event_set(ev2), 0);
    assert_int_equal(mp_queue_put(q, "abc", 3, MP_NOWAIT), 0);
    assert_int_equal(mp_manager_event(&ev, m, "x"), 0);
    assert_int_equal(mp_event_is_set(ev), 1);
    mp_event_close(ev);
    mp_manager_close(m);
    /* After the shutdown: the event is dead, the queue (no generation) still holds its message
     * for whoever holds it; both are still mapped. */
    assert_int_equal(mp_event_set(ev2), -EBADF);
    size_t len;
    char buf[8];
    assert_int_equal(mp_queue_get(q, buf, sizeof buf, &len, MP_NOWAIT), 0);
    assert_int_equal(len, 3);
    mp_event_close(ev2);
    mp_queue_close(q);
}

static void
test_errors_for_wrong_types_names_and_arguments(void **state)
{
    (void)state;
    mp_manager *m;
    mp_lock *l = NULL;
    mp_value *v = NULL;
    mp_queue *q = NULL;
    mp_list *li = NULL;
    mp_semaphore *s = NULL;
    mp_barrier *b = NULL;
    assert_int_equal(mp_manager_open(&m, NULL), 0);
    assert_int_equal(mp_manager_lock(&l, m, "lock", NULL), 0);
    mp_lock_close(l);
    assert_int_equal(mp_manager_lock(&l, m, "lock", &(mp_lock_opts){.recursive = true}), MP_ETYPE);
    assert_int_equal(mp_manager_queue(&q, m, "lock", NULL), MP_ETYPE);
    assert_int_equal(mp_manager_list(&li, m, "lock"), MP_ETYPE);
    assert_int_equal(mp_manager_value(&v, m, "v", 'i', NULL), 0);
    mp_value_close(v);
    assert_int_equal(mp_manager_value(&v, m, "v", 'd', NULL), MP_ETYPE);
    mp_lock *mine;
    assert_int_equal(mp_lock_open(&mine, NULL), 0);
    assert_int_equal(mp_manager_value(&v, m, "v2", 'i', &(mp_value_opts){.lock = mine}), -EINVAL);
    mp_lock_close(mine);
    assert_int_equal(mp_manager_value(&v, m, "v2", 'Z', NULL), MP_ETYPE);
    assert_int_equal(mp_manager_queue(&q, m, "q", &(mp_queue_opts){.joinable = true}), 0);
    mp_queue_close(q);
    assert_int_equal(mp_manager_queue(&q, m, "q", NULL), MP_ETYPE);
    assert_int_equal(mp_manager_semaphore(&s, m, "s", 1u << 31, NULL), -EINVAL);
    assert_int_equal(mp_manager_barrier(&b, m, "b", 0, NULL), -EINVAL);
    assert_int_equal(mp_manager_lock(&l, m, "", NULL), -EINVAL);
    assert_int_equal(mp_manager_lock(&l, m, NULL, NULL), -EINVAL);
    assert_int_equal(mp_manager_lock(&l, m, "\xff", NULL), -EINVAL);
    assert_int_equal(mp_manager_lock(&l, NULL, "x", NULL), -EINVAL);
    assert_int_equal(mp_manager_delete(m, "nothing"), -ENOENT);
    assert_int_equal(mp_manager_delete(m, ""), -EINVAL);
    /* Nothing was bound by the failed calls. */
    assert_int_equal(mp_manager_delete(m, "v2"), -ENOENT);
    assert_int_equal(mp_manager_delete(m, "s"), -ENOENT);
    assert_int_equal(mp_manager_delete(m, "b"), -ENOENT);
    mp_manager_close(m);

    mp_manager *a = NULL;
    int64_t t0 = th_now_ms();
    assert_int_equal(mp_manager_attach(&a, "mpipc-test-no-such-manager", MP_NOWAIT), -ENOENT);
    assert_int_equal(mp_manager_attach(&a, "mpipc-test-no-such-manager", 100), -ENOENT);
    int64_t took = th_now_ms() - t0;
    assert_true(took >= 95 && took < 3000);
    assert_int_equal(mp_manager_attach(&a, "a/b", MP_NOWAIT), -EINVAL);
    assert_int_equal(mp_manager_attach(&a, "", MP_NOWAIT), -EINVAL);
    assert_int_equal(mp_manager_attach(&a, "x", -5), -EINVAL);
    assert_null(a);
}

static void
test_shutdown_makes_names_and_objects_ebadf(void **state)
{
    (void)state;
    mp_manager *m;
    mp_lock *l;
    mp_event *ev;
    mp_value *v;
    mp_barrier *b;
    assert_int_equal(mp_manager_open(&m, NULL), 0);
    char name[MP_SHM_NAME_MAX + 1];
    snprintf(name, sizeof name, "%s", mp_manager_name(m));
    assert_int_equal(mp_manager_lock(&l, m, "l", NULL), 0);
    assert_int_equal(mp_manager_event(&ev, m, "e"), 0);
    assert_int_equal(mp_manager_value(&v, m, "v", 'i', NULL), 0);
    assert_int_equal(mp_manager_barrier(&b, m, "b", 2, NULL), 0);
    assert_int_equal(mp_manager_shutdown(m), 0);
    assert_int_equal(mp_lock_acquire(l, MP_NOWAIT), -EBADF);
    assert_int_equal(mp_event_set(ev), -EBADF);
    int i;
    assert_int_equal(mp_value_get(v, &i, sizeof i), -EBADF);
    assert_int_equal(mp_barrier_wait(b, MP_NOWAIT), -EBADF);
    mp_lock *l2 = NULL;
    assert_int_equal(mp_manager_lock(&l2, m, "l", NULL), -EBADF);
    assert_int_equal(mp_manager_delete(m, "l"), -EBADF);
    mp_manager *a = NULL;
    assert_int_equal(mp_manager_attach(&a, name, MP_NOWAIT), -ENOENT);
    mp_lock_close(l);
    mp_event_close(ev);
    mp_value_close(v);
    mp_barrier_close(b);
    mp_manager_close(m);
}

static void
test_an_attached_process_killed_holding_a_lock_leaves_nothing(void **state)
{
    (void)state;
    mp_manager *m;
    mp_lock *l;
    mp_event *holding;
    assert_int_equal(mp_manager_open(&m, NULL), 0);
    assert_int_equal(mp_manager_lock(&l, m, "held", NULL), 0);
    assert_int_equal(mp_manager_event(&holding, m, "holding"), 0);
    pid_t peer = spawn_peer(m, "hold");
    assert_true(peer > 0);
    assert_int_equal(mp_event_wait(holding, 20000), 0);
    assert_int_equal(kill(peer, SIGKILL), 0);
    int st = th_wait(peer, 20000);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_int_equal(mp_lock_acquire(l, 5000), MP_OWNERDEAD);
    assert_int_equal(mp_lock_release(l), 0);
    /* The peer's objects stay bound: it created the event "never". */
    assert_int_equal(mp_manager_delete(m, "never"), 0);
    mp_lock_close(l);
    mp_event_close(holding);
    mp_manager_close(m); /* the group's leak check: no fd, name or process is left */
}

static void
test_attach_waits_for_the_manager_and_cannot_shut_it_down(void **state)
{
    (void)state;
    char name[64];
    snprintf(name, sizeof name, "mpipc-test-mobj-%d", (int)getpid());
    th_barrier *tb = th_barrier_new(2);
    pid_t pid = fork();
    if (pid == 0) {
        mp_manager *a;
        CHILD_CHECK(th_barrier_wait(tb) == 0);
        /* The owner creates the manager only after this point: attach has to wait for it. */
        CHILD_CHECK(mp_manager_attach(&a, name, 20000) == 0);
        CHILD_CHECK(mp_manager_shutdown(a) == -EPERM);
        mp_event *ev;
        CHILD_CHECK(mp_manager_event(&ev, a, "ready") == 0);
        CHILD_CHECK(mp_event_set(ev) == 0);
        mp_event_close(ev);
        mp_manager_close(a);
        _exit(0);
    }
    assert_true(pid > 0);
    assert_int_equal(th_barrier_wait(tb), 0);
    mp_manager *m;
    assert_int_equal(mp_manager_open(&m, &(mp_manager_opts){.name = name}), 0);
    mp_event *ev;
    assert_int_equal(mp_manager_event(&ev, m, "ready"), 0);
    assert_int_equal(mp_event_wait(ev, 20000), 0);
    assert_child_ok(pid);
    pid_t peer = spawn_peer(m, "attach");
    assert_child_ok(peer);
    mp_event_close(ev);
    mp_manager_close(m);
    th_barrier_free(tb);
}

/* Processes racing to create the same names each get the one object bound to each. */
static int
race_child(void *m)
{
    char name[16];
    for (int i = 0; i < 64; i++) {
        mp_semaphore *s;
        snprintf(name, sizeof name, "s%d", i);
        CHILD_CHECK(mp_manager_semaphore(&s, m, name, 0, NULL) == 0);
        CHILD_CHECK(mp_semaphore_release(s) == 0);
        mp_semaphore_close(s);
    }
    return 0;
}

static void
test_create_or_get_races_bind_one_object(void **state)
{
    (void)state;
    mp_manager *m;
    assert_int_equal(mp_manager_open(&m, NULL), 0);
    pid_t kids[3];
    for (int i = 0; i < 3; i++)
        assert_true((kids[i] = th_fork(race_child, m)) > 0);
    for (int i = 0; i < 3; i++)
        assert_child_ok(kids[i]);
    char name[16];
    for (int i = 0; i < 64; i++) {
        mp_semaphore *s;
        snprintf(name, sizeof name, "s%d", i);
        assert_int_equal(mp_manager_semaphore(&s, m, name, 0, NULL), 0);
        assert_int_equal(mp_semaphore_get_value(s), 3);
        mp_semaphore_close(s);
    }
    mp_manager_close(m);
}

/* An attached peer SIGKILLed at arbitrary moments while it takes a lock and feeds a queue: the
 * owner always finds the lock usable and the queue holding whole, consecutive messages. */
static void
test_attached_peers_killed_at_random_moments(void **state)
{
    (void)state;
    mp_manager *m;
    mp_lock *l;
    mp_queue *q;
    assert_int_equal(mp_manager_open(&m, NULL), 0);
    assert_int_equal(mp_manager_lock(&l, m, "hl", NULL), 0);
    assert_int_equal(mp_manager_queue(&q, m, "hq", &(mp_queue_opts){.capacity = 4096}), 0);
    unsigned seed = 12345;
    for (int round = 0; round < 8; round++) {
        pid_t peer = spawn_peer(m, "hammer");
        assert_true(peer > 0);
        /* Let it run for a random number of messages, then kill it wherever it is. */
        int take = (int)(rand_r(&seed) % 300) + 1, got = 0;
        char msg[16];
        size_t len;
        for (; got < take; got++) {
            assert_int_equal(mp_queue_get(q, msg, sizeof msg - 1, &len, 20000), 0);
            msg[len] = '\0';
            assert_int_equal(atoi(msg), got);
        }
        assert_int_equal(kill(peer, SIGKILL), 0);
        int st = th_wait(peer, 20000);
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        /* Whatever it had put is whole and in order; nothing half-written is visible. */
        while (mp_queue_get(q, msg, sizeof msg - 1, &len, MP_NOWAIT) == 0) {
            msg[len] = '\0';
            assert_int_equal(atoi(msg), got++);
        }
        int r = mp_lock_acquire(l, 5000);
        assert_true(r == 0 || r == MP_OWNERDEAD);
        assert_int_equal(mp_lock_release(l), 0);
        assert_int_equal(mp_queue_put(q, "x", 1, MP_NOWAIT), 0);
        assert_int_equal(mp_queue_get(q, msg, sizeof msg, &len, MP_NOWAIT), 0);
        assert_true(len == 1 && msg[0] == 'x');
    }
    mp_lock_close(l);
    mp_queue_close(q);
    mp_manager_close(m);
}

/* The owner of a manager, in a child: it waits to be killed. */
static int
owner_child(void *arg)
{
    const char *name = arg;
    mp_manager *m;
    mp_lock *l;
    mp_event *ev;
    CHILD_CHECK(mp_manager_open(&m, &(mp_manager_opts){.name = name}) == 0);
    CHILD_CHECK(mp_manager_lock(&l, m, "l", NULL) == 0);
    CHILD_CHECK(mp_manager_event(&ev, m, "never") == 0);
    CHILD_CHECK(mp_manager_event(&ev, m, "up") == 0 && mp_event_set(ev) == 0);
    CHILD_CHECK(mp_manager_event(&ev, m, "never") == 0);
    mp_event_wait(ev, 60000);
    return 1;
}

static void
test_an_owner_killed_marks_the_objects_of_attached_processes_dead(void **state)
{
    (void)state;
    char name[64];
    snprintf(name, sizeof name, "mpipc-test-mobj-owner-%d", (int)getpid());
    pid_t owner = th_fork(owner_child, name);
    assert_true(owner > 0);
    mp_manager *a;
    mp_event *up;
    mp_lock *l;
    assert_int_equal(mp_manager_attach(&a, name, 20000), 0);
    assert_int_equal(mp_manager_event(&up, a, "up"), 0);
    assert_int_equal(mp_event_wait(up, 20000), 0);
    assert_int_equal(mp_manager_lock(&l, a, "l", NULL), 0);
    assert_int_equal(mp_lock_acquire(l, MP_NOWAIT), 0);
    assert_int_equal(mp_lock_release(l), 0);
    assert_int_equal(kill(owner, SIGKILL), 0);
    int st = th_wait(owner, 20000);
    assert_true(WIFSIGNALED(st));
    /* The manager process, now our child (the test runner is a subreaper), notices the owner's
     * death, marks the objects dead, removes the name and exits: normally, not by a fault. */
    st = th_wait(mp_manager_pid(a), 20000);
    assert_int_equal(st, 0); /* exited with status 0; the raw status shows otherwise */
    assert_int_equal(mp_lock_acquire(l, MP_NOWAIT), -EBADF);
    assert_int_equal(mp_event_set(up), -EBADF);
    mp_lock *l2 = NULL;
    assert_int_equal(mp_manager_lock(&l2, a, "l", NULL), -EBADF);
    mp_manager *b = NULL;
    assert_int_equal(mp_manager_attach(&b, name, MP_NOWAIT), -ENOENT);
    mp_lock_close(l);
    mp_event_close(up);
    mp_manager_close(a);
}

/* An owner stopped just before forking its manager process (the fault point's action waits
 * on a pipe). Until the manager process exists the heap must not be attachable: an attacher
 * would see no manager pid (it used to get 0, and waited on it). */
typedef struct gate {
    const char *name;
    int entered[2], go[2];
} gate;

static void
stop_before_fork(const char *point, void *arg)
{
    (void)point;
    gate *g = arg;
    char c = 1;
    if (write(g->entered[1], &c, 1) != 1 || read(g->go[0], &c, 1) != 1)
        _exit(90);
}

static int
owner_stopped_before_fork(void *arg)
{
    gate *g = arg;
    mp_manager *m;
    mp_event *done;
    CHILD_CHECK(mp__fault_arm("manager.open.forking", 1, stop_before_fork, g) == 0);
    CHILD_CHECK(mp_manager_open(&m, &(mp_manager_opts){.name = g->name}) == 0);
    mp__fault_disarm();
    CHILD_CHECK(mp_manager_event(&done, m, "done") == 0);
    CHILD_CHECK(mp_event_wait(done, 20000) == 0);
    mp_event_close(done);
    mp_manager_close(m);
    return 0;
}

static void
test_a_heap_is_attachable_only_once_its_manager_process_exists(void **state)
{
    (void)state;
    if (!mp__fault_enabled())
        skip();
    char name[64];
    snprintf(name, sizeof name, "mpipc-test-mobj-early-%d", (int)getpid());
    gate g = {.name = name};
    assert_int_equal(pipe2(g.entered, O_CLOEXEC), 0);
    assert_int_equal(pipe2(g.go, O_CLOEXEC), 0);
    pid_t owner = th_fork(owner_stopped_before_fork, &g);
    char c;
    assert_int_equal(read(g.entered[0], &c, 1), 1);
    mp_manager *a = NULL;
    assert_int_equal(mp_manager_attach(&a, name, MP_NOWAIT), -ENOENT);
    assert_null(a);
    assert_int_equal(write(g.go[1], &c, 1), 1);
    assert_int_equal(mp_manager_attach(&a, name, 20000), 0);
    pid_t mgr = mp_manager_pid(a);
    assert_true(mgr > 0 && mgr != owner && mgr != getpid());
    mp_event *done;
    assert_int_equal(mp_manager_event(&done, a, "done"), 0);
    assert_int_equal(mp_event_set(done), 0);
    assert_child_ok(owner);
    mp_event_close(done);
    mp_manager_close(a);
    for (int i = 0; i < 2; i++) {
        close(g.entered[i]);
        close(g.go[i]);
    }
}

static void
test_values_and_arrays_keep_their_type_and_initial_contents(void **state)
{
    (void)state;
    struct pt {
        double x, y, z;
    } p0 = {1, 2, 3}, p1;
    const int16_t init[4] = {4, -3, 2, -1};
    int16_t got[4];
    mp_manager *m;
    mp_value *v, *v2 = NULL;
    mp_array *a, *a2;
    assert_int_equal(mp_manager_open(&m, NULL), 0);
    assert_int_equal(
        mp_manager_value(&v, m, "pt", 0, &(mp_value_opts){.size = sizeof p0, .init = &p0}), 0);
    assert_int_equal(mp_manager_value(&v2, m, "pt", 0, &(mp_value_opts){.size = 8}), MP_ETYPE);
    assert_int_equal(mp_manager_value(&v2, m, "pt", 0, &(mp_value_opts){.size = sizeof p0}), 0);
    assert_int_equal(mp_value_get(v2, &p1, sizeof p1), 0);
    assert_true(p1.x == 1 && p1.y == 2 && p1.z == 3);
    assert_int_equal(
        mp_manager_array(&a, m, "h", 'h', 4, &(mp_value_opts){.raw = true, .init = init}), 0);
    assert_int_equal(mp_manager_array(&a2, m, "h", 'h', 99, NULL), 0); /* the length is a's */
    assert_int_equal(mp_array_len(a2), 4);
    assert_null(mp_array_get_lock(a2));
    assert_int_equal(mp_array_get_slice(a2, 0, 4, got, sizeof got), 4);
    assert_memory_equal(got, init, sizeof got);
    assert_int_equal(mp_array_fetch_add(a, 1, 10, NULL), 0);
    assert_int_equal(mp_array_get(a2, 1, &got[1], sizeof got[1]), 0);
    assert_int_equal(got[1], 7);
    mp_value_close(v);
    mp_value_close(v2);
    mp_array_close(a);
    mp_array_close(a2);
    mp_manager_close(m);
}

static int
die_binding(void *m)
{
    mp_lock *l;
    CHILD_CHECK(mp__fault_arm("manager.name.built", 1, NULL, NULL) == 0);
    mp_manager_lock(&l, m, "k", NULL);
    return 3; /* the fault point did not fire */
}

static void
test_a_process_killed_while_binding_leaves_the_name_free(void **state)
{
    (void)state;
    if (!mp__fault_enabled())
        skip();
    mp_manager *m;
    mp_lock *l;
    assert_int_equal(mp_manager_open(&m, NULL), 0);
    pid_t pid = th_fork(die_binding, m);
    assert_true(pid > 0);
    int st = th_wait(pid, 20000);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    /* It died holding the name table's lock, with the lock built and the name not bound. */
    assert_int_equal(mp_manager_delete(m, "k"), -ENOENT);
    assert_int_equal(mp_manager_lock(&l, m, "k", NULL), 0);
    assert_int_equal(mp_lock_acquire(l, MP_NOWAIT), 0);
    assert_int_equal(mp_lock_release(l), 0);
    mp_lock_close(l);
    mp_manager_close(m);
}

/* A condition over a managed lock: each process gives its own handle on the lock. */
static int
cond_child(void *m)
{
    mp_lock *l;
    mp_condition *c;
    mp_value *flag;
    CHILD_CHECK(mp_manager_lock(&l, m, "cl", NULL) == 0);
    CHILD_CHECK(mp_manager_condition(&c, m, "cv", &(mp_condition_opts){.lock = l}) == 0);
    CHILD_CHECK(mp_manager_value(&flag, m, "cflag", 'q', &(mp_value_opts){.raw = true}) == 0);
    CHILD_CHECK(mp_lock_acquire(l, 20000) == 0);
    CHILD_CHECK(mp_condition_wait_for(c, flag_is_set, flag, 20000) == 0);
    /* The condition's lock is the managed lock: it is held again on return. */
    CHILD_CHECK(mp_lock_release(l) == 0);
    mp_condition_close(c);
    mp_lock_close(l);
    mp_value_close(flag);
    return 0;
}

static void
test_a_condition_over_a_managed_lock(void **state)
{
    (void)state;
    mp_manager *m;
    mp_lock *l;
    mp_condition *c;
    mp_value *flag;
    assert_int_equal(mp_manager_open(&m, NULL), 0);
    assert_int_equal(mp_manager_lock(&l, m, "cl", NULL), 0);
    assert_int_equal(mp_manager_condition(&c, m, "cv", &(mp_condition_opts){.lock = l}), 0);
    assert_int_equal(mp_manager_value(&flag, m, "cflag", 'q', &(mp_value_opts){.raw = true}), 0);
    pid_t pid = th_fork(cond_child, m);
    assert_true(pid > 0);
    int64_t one = 1;
    assert_int_equal(mp_lock_acquire(l, 20000), 0);
    assert_int_equal(mp_value_set(flag, &one, sizeof one), 0);
    assert_int_equal(mp_condition_notify_all(c), 0);
    assert_int_equal(mp_lock_release(l), 0);
    assert_child_ok(pid);
    mp_condition_close(c);
    mp_lock_close(l);
    mp_value_close(flag);
    mp_manager_close(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_type_from_a_forked_child_and_an_exec_peer),
        cmocka_unit_test(test_one_name_one_object_and_delete_unbinds),
        cmocka_unit_test(test_errors_for_wrong_types_names_and_arguments),
        cmocka_unit_test(test_shutdown_makes_names_and_objects_ebadf),
        cmocka_unit_test(test_an_attached_process_killed_holding_a_lock_leaves_nothing),
        cmocka_unit_test(test_attach_waits_for_the_manager_and_cannot_shut_it_down),
        cmocka_unit_test(test_create_or_get_races_bind_one_object),
        cmocka_unit_test(test_an_owner_killed_marks_the_objects_of_attached_processes_dead),
        cmocka_unit_test(test_a_heap_is_attachable_only_once_its_manager_process_exists),
        cmocka_unit_test(test_values_and_arrays_keep_their_type_and_initial_contents),
        cmocka_unit_test(test_a_process_killed_while_binding_leaves_the_name_free),
        cmocka_unit_test(test_a_condition_over_a_managed_lock),
        cmocka_unit_test(test_attached_peers_killed_at_random_moments),
    };
    return th_run_tests(tests);
}
