/*
 * test_process.c - mp_process: Python's Process semantics with real children.
 */
#define _GNU_SOURCE
#include "helpers.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* A gate a child blocks on until the parent opens it: a futex word in shared memory (a pipe
 * would not do: children forked later inherit its write end and keep it shut). */
typedef struct gate {
    _Atomic uint32_t *open;
} gate;

static void
gate_init(gate *g)
{
    g->open = th_shared(sizeof *g->open);
    assert_non_null(g->open);
}

static void
gate_open(gate *g)
{
    atomic_store(g->open, 1);
    mp__futex_wake(g->open, INT32_MAX);
}

static void
gate_free(gate *g)
{
    th_shared_free((void *)g->open, sizeof *g->open);
}

/* Child target: wait until the gate opens, then return 0. */
static int
wait_gate(void *arg)
{
    gate *g = arg;
    while (atomic_load(g->open) == 0)
        mp__futex_wait(g->open, 0, NULL);
    return 0;
}

static int
return_arg(void *arg)
{
    return (int)(intptr_t)arg;
}

static int
raise_sigusr1(void *arg)
{
    (void)arg;
    raise(SIGUSR1);
    return 0;
}

static int
block_forever(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return 0; /* not reached */
}

static void
run_to_end(mp_process *p)
{
    assert_int_equal(mp_process_start(p), 0);
    assert_int_equal(mp_process_join(p, 10000), 0);
}

static void
test_process_exit_code_is_the_targets_return_value(void **state)
{
    (void)state;
    static const int codes[][2] = {{0, 0}, {7, 7}, {255, 255}, {256 + 3, 3}};
    for (size_t i = 0; i < MP__ARRAY_LEN(codes); i++) {
        mp_process *p;
        assert_int_equal(mp_process_open(&p, return_arg, (void *)(intptr_t)codes[i][0], NULL), 0);
        run_to_end(p);
        int code = -1000;
        assert_int_equal(mp_process_exitcode(p, &code), 1);
        assert_int_equal(code, codes[i][1]);
        assert_int_equal(mp_process_close(p), 0);
    }
}

static void
test_process_killed_by_signal_reports_minus_signum(void **state)
{
    (void)state;
    mp_process *p;
    assert_int_equal(mp_process_open(&p, raise_sigusr1, NULL, NULL), 0);
    run_to_end(p);
    int code = 0;
    assert_int_equal(mp_process_exitcode(p, &code), 1);
    assert_int_equal(code, -SIGUSR1);
    mp_process_close(p);
}

static void
test_process_join_times_out_on_a_running_child(void **state)
{
    (void)state;
    gate g;
    gate_init(&g);
    mp_process *p;
    assert_int_equal(mp_process_open(&p, wait_gate, &g, NULL), 0);
    assert_int_equal(mp_process_start(p), 0);

    assert_int_equal(mp_process_join(p, MP_NOWAIT), -EAGAIN);
    int64_t t0 = th_now_ms();
    assert_int_equal(mp_process_join(p, 150), -ETIMEDOUT);
    int64_t dt = th_now_ms() - t0;
    assert_true(dt >= 145 && dt < 3000);
    int code = 1234;
    assert_int_equal(mp_process_exitcode(p, &code), 0); /* Python's None */
    assert_int_equal(code, 1234);

    gate_open(&g);
    assert_int_equal(mp_process_join(p, MP_FOREVER), 0);
    assert_int_equal(mp_process_exitcode(p, &code), 1);
    assert_int_equal(code, 0);
    assert_int_equal(mp_process_join(p, MP_NOWAIT), 0); /* joining again is fine */
    mp_process_close(p);
    gate_free(&g);
}

static void
test_process_terminate_and_kill_send_their_signals(void **state)
{
    (void)state;
    static const struct {
        int (*fn)(mp_process *);
        int sig;
    } cases[] = {{mp_process_terminate, SIGTERM}, {mp_process_kill, SIGKILL}};
    for (size_t i = 0; i < MP__ARRAY_LEN(cases); i++) {
        mp_process *p;
        assert_int_equal(mp_process_open(&p, block_forever, NULL, NULL), 0);
        assert_int_equal(mp_process_start(p), 0);
        assert_int_equal(cases[i].fn(p), 0);
        assert_int_equal(mp_process_join(p, 10000), 0);
        int code = 0;
        assert_int_equal(mp_process_exitcode(p, &code), 1);
        assert_int_equal(code, -cases[i].sig);
        /* Once the child has ended, terminate/kill do nothing. */
        assert_int_equal(mp_process_terminate(p), 0);
        assert_int_equal(mp_process_kill(p), 0);
        mp_process_close(p);
    }
}

static void
test_process_is_alive_follows_the_child(void **state)
{
    (void)state;
    gate g;
    gate_init(&g);
    mp_process *p;
    assert_int_equal(mp_process_open(&p, wait_gate, &g, NULL), 0);
    assert_int_equal(mp_process_is_alive(p), 0);
    assert_int_equal(mp_process_pid(p), 0);
    assert_int_equal(mp_process_start(p), 0);
    assert_true(mp_process_pid(p) > 0);
    assert_int_equal(mp_process_is_alive(p), 1);
    gate_open(&g);
    /* Wait on the sentinel, not by polling is_alive with sleeps. */
    struct pollfd pfd = {.fd = mp_process_sentinel(p), .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 10000), 1);
    assert_int_equal(mp_process_is_alive(p), 0);
    mp_process_close(p);
    gate_free(&g);
}

static void
test_process_sentinel_becomes_readable_when_the_child_ends(void **state)
{
    (void)state;
    gate g;
    gate_init(&g);
    mp_process *p;
    assert_int_equal(mp_process_open(&p, wait_gate, &g, NULL), 0);
    assert_int_equal(mp_process_sentinel(p), -EINVAL);
    assert_int_equal(mp_process_start(p), 0);
    int fd = mp_process_sentinel(p);
    assert_true(fd >= 0);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 0), 0);
    gate_open(&g);
    assert_int_equal(poll(&pfd, 1, 10000), 1);
    assert_true(pfd.revents & (POLLIN | POLLHUP)); /* a pipe sentinel reports POLLHUP */
    assert_int_equal(mp_process_join(p, MP_NOWAIT), 0);
    mp_process_close(p);
    gate_free(&g);
}

static void
test_process_close_is_refused_while_running(void **state)
{
    (void)state;
    mp_process *p;
    assert_int_equal(mp_process_open(&p, block_forever, NULL, NULL), 0);
    assert_int_equal(mp_process_close(p), 0); /* never started: simply freed */
    assert_int_equal(mp_process_open(&p, block_forever, NULL, NULL), 0);
    assert_int_equal(mp_process_start(p), 0);
    assert_int_equal(mp_process_close(p), -EBUSY);
    assert_int_equal(mp_process_is_alive(p), 1); /* nothing was freed */
    assert_int_equal(mp_process_kill(p), 0);
    assert_int_equal(mp_process_join(p, 10000), 0);
    assert_int_equal(mp_process_close(p), 0);
    assert_int_equal(mp_process_close(NULL), 0);
}

/* ---- exit handling: daemonic children terminated, others joined ----------------------------- */

struct exit_shared {
    pid_t daemon_pid, worker_pid;
    int worker_done;
    th_barrier *checked;   /* helper and worker: the helper has counted its live children */
    th_barrier *worker_go; /* worker and test: the test is waiting for the helper */
};

static int
exit_worker(void *arg)
{
    struct exit_shared *s = arg;
    if (th_barrier_wait(s->checked) != 0 || th_barrier_wait(s->worker_go) != 0)
        return 1;
    __atomic_store_n(&s->worker_done, 1, __ATOMIC_SEQ_CST);
    return 0;
}

static int
exit_parent(void *arg)
{
    struct exit_shared *s = arg;
    mp_process *d, *w;
    CHILD_CHECK(mp_process_open(&d, block_forever, NULL, &(mp_process_opts){.daemon = true}) == 0);
    CHILD_CHECK(mp_process_open(&w, exit_worker, s, NULL) == 0);
    CHILD_CHECK(mp_process_start(d) == 0);
    CHILD_CHECK(mp_process_start(w) == 0);
    s->daemon_pid = mp_process_pid(d);
    s->worker_pid = mp_process_pid(w);
    CHILD_CHECK(mp_active_children(NULL, 0) == 2);
    CHILD_CHECK(th_barrier_wait(s->checked) == 0); /* only now may the worker finish */
    exit(0); /* a normal exit: the handler must terminate d and join w */
}

static void
test_process_exit_terminates_daemons_and_joins_the_others(void **state)
{
    (void)state;
    struct exit_shared *s = th_shared(sizeof *s);
    s->checked = th_barrier_new(2);
    s->worker_go = th_barrier_new(2);
    pid_t h = th_fork(exit_parent, s);
    assert_true(h > 0);
    /* The worker cannot finish before the helper counted it and we arrive here. */
    assert_int_equal(th_barrier_wait(s->worker_go), 0);
    assert_child_ok(h);
    assert_int_equal(__atomic_load_n(&s->worker_done, __ATOMIC_SEQ_CST), 1);
    /* Both were reaped by the helper: had either been left running or unreaped it would have
     * been re-parented to this process (a subreaper) and still exist. */
    assert_int_equal(kill(s->daemon_pid, 0), -1);
    assert_int_equal(errno, ESRCH);
    assert_int_equal(kill(s->worker_pid, 0), -1);
    assert_int_equal(errno, ESRCH);
    th_barrier_free(s->checked);
    th_barrier_free(s->worker_go);
    th_shared_free(s, sizeof *s);
}

/* ---- pdeathsig ----------------------------------------------------------------------------------- */

struct orphan_shared {
    pid_t child_pid;
    th_barrier *started;
};

static int
pdeath_child(void *arg)
{
    struct orphan_shared *s = arg;
    th_barrier_wait(s->started);
    for (;;)
        pause();
    return 0; /* not reached */
}

static int
pdeath_parent(void *arg)
{
    struct orphan_shared *s = arg;
    mp_process *c;
    CHILD_CHECK(mp_process_open(&c, pdeath_child, s, &(mp_process_opts){.pdeathsig = SIGUSR2}) ==
                0);
    CHILD_CHECK(mp_process_start(c) == 0);
    s->child_pid = mp_process_pid(c);
    CHILD_CHECK(th_barrier_wait(s->started) == 0);
    _exit(0); /* dies without joining: the kernel must send SIGUSR2 to the child */
}

static void
test_process_pdeathsig_fires_when_the_parent_dies(void **state)
{
    (void)state;
    struct orphan_shared *s = th_shared(sizeof *s);
    s->started = th_barrier_new(2);
    pid_t h = th_fork(pdeath_parent, s);
    assert_true(h > 0);
    assert_child_ok(h);
    /* The orphan is re-parented to us (subreaper): its status shows the signal it got. */
    int st = th_wait(s->child_pid, 10000);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGUSR2);
    th_barrier_free(s->started);
    th_shared_free(s, sizeof *s);
}

/* ---- names, identity, parent pid ------------------------------------------------------------ */

static pid_t *grandchild_parent_seen;

static int
report_parent(void *arg)
{
    (void)arg;
    *grandchild_parent_seen = mp_parent_pid();
    return 0;
}

static int
name_child(void *arg)
{
    (void)arg;
    mp_process *c;
    CHILD_CHECK(mp_process_open(&c, report_parent, NULL, NULL) == 0);
    /* A child's children are numbered below it: Process-K:1. */
    const char *n = mp_process_name(c);
    CHILD_CHECK(strncmp(n, "Process-", 8) == 0 && strstr(n, ":1") != NULL);
    CHILD_CHECK(mp_process_start(c) == 0);
    CHILD_CHECK(mp_process_join(c, 10000) == 0);
    CHILD_CHECK(*grandchild_parent_seen == getpid());
    CHILD_CHECK(mp_process_close(c) == 0);
    return 0;
}

static void
test_process_names_follow_pythons_scheme(void **state)
{
    (void)state;
    grandchild_parent_seen = th_shared(sizeof *grandchild_parent_seen);
    mp_process *a, *b;
    assert_int_equal(mp_process_open(&a, name_child, NULL, NULL), 0);
    assert_int_equal(mp_process_open(&b, return_arg, 0, &(mp_process_opts){.name = "worker"}), 0);
    assert_string_equal(mp_process_name(b), "worker");
    assert_int_equal(strncmp(mp_process_name(a), "Process-", 8), 0);
    assert_null(strchr(mp_process_name(a), ':'));
    run_to_end(a);
    int code = -1;
    assert_int_equal(mp_process_exitcode(a, &code), 1);
    assert_int_equal(code, 0);
    mp_process_close(a);
    mp_process_close(b);
    assert_string_equal(mp_process_name(NULL), "");
    th_shared_free(grandchild_parent_seen, sizeof *grandchild_parent_seen);
}

/* ---- stdio across fork ---------------------------------------------------------------------- */

static FILE *stdio_file;

static int
write_b(void *arg)
{
    (void)arg;
    fputs("B", stdio_file); /* left buffered: the child's exit path must flush it */
    return 0;
}

static void
test_process_stdio_is_neither_duplicated_nor_lost(void **state)
{
    (void)state;
    stdio_file = tmpfile();
    assert_non_null(stdio_file);
    fputs("A", stdio_file); /* buffered in the parent when it forks */
    mp_process *p;
    assert_int_equal(mp_process_open(&p, write_b, NULL, NULL), 0);
    run_to_end(p);
    mp_process_close(p);
    fputs("C", stdio_file);
    fflush(stdio_file);
    rewind(stdio_file);
    char buf[16] = {0};
    assert_int_equal(fread(buf, 1, sizeof buf - 1, stdio_file), 3);
    assert_string_equal(buf, "ABC");
    fclose(stdio_file);
}

/* ---- active_children, SIGCHLD ignored, cross-process misuse ------------------------------------- */

static void
test_process_active_children_lists_live_children(void **state)
{
    (void)state;
    gate g1, g2;
    gate_init(&g1);
    gate_init(&g2);
    mp_process *p1, *p2, *done;
    assert_int_equal(mp_process_open(&p1, wait_gate, &g1, NULL), 0);
    assert_int_equal(mp_process_open(&p2, wait_gate, &g2, NULL), 0);
    assert_int_equal(mp_process_open(&done, return_arg, 0, NULL), 0);
    assert_int_equal(mp_active_children(NULL, 0), 0);
    assert_int_equal(mp_process_start(p1), 0);
    assert_int_equal(mp_process_start(p2), 0);
    assert_int_equal(mp_process_start(done), 0);
    struct pollfd pfd = {.fd = mp_process_sentinel(done), .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 10000), 1);

    mp_process *list[4] = {0};
    assert_int_equal(mp_active_children(list, 4), 2); /* `done` was reaped, not listed */
    assert_true((list[0] == p1 && list[1] == p2) || (list[0] == p2 && list[1] == p1));
    assert_int_equal(mp_active_children(list, 1), 2); /* count beyond cap */
    assert_int_equal(mp_active_children(NULL, 1), -EINVAL);

    gate_open(&g1);
    assert_int_equal(mp_process_join(p1, 10000), 0);
    assert_int_equal(mp_active_children(list, 4), 1);
    assert_ptr_equal(list[0], p2);
    gate_open(&g2);
    assert_int_equal(mp_process_join(p2, 10000), 0);
    assert_int_equal(mp_active_children(list, 4), 0);
    mp_process_close(p1);
    mp_process_close(p2);
    mp_process_close(done);
    gate_free(&g1);
    gate_free(&g2);
}

static void
test_process_with_sigchld_ignored_joins_but_status_is_unknown(void **state)
{
    (void)state;
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigaction(SIGCHLD, &ign, &old);
    mp_process *p;
    assert_int_equal(mp_process_open(&p, return_arg, (void *)5, NULL), 0);
    assert_int_equal(mp_process_start(p), 0);
    assert_int_equal(mp_process_join(p, 10000), 0);
    int code = 77;
    assert_int_equal(mp_process_exitcode(p, &code), -ECHILD);
    assert_int_equal(code, 77);
    assert_int_equal(mp_process_close(p), 0);
    sigaction(SIGCHLD, &old, NULL);
}

static mp_process *inherited;

static int
misuse_inherited_handle(void *arg)
{
    (void)arg;
    CHILD_CHECK(mp_process_join(inherited, 0) == -ECHILD);
    CHILD_CHECK(mp_process_is_alive(inherited) == -ECHILD);
    CHILD_CHECK(mp_process_kill(inherited) == -ECHILD);
    CHILD_CHECK(mp_process_start(inherited) == -EINVAL);
    CHILD_CHECK(mp_active_children(NULL, 0) == 0);
    return 0;
}

static int
daemon_tries_to_start_a_child(void *arg)
{
    (void)arg;
    mp_process *c;
    CHILD_CHECK(mp_process_open(&c, return_arg, 0, NULL) == 0);
    CHILD_CHECK(mp_process_start(c) == -EINVAL);
    CHILD_CHECK(mp_process_close(c) == 0);
    return 0;
}

static void
test_process_only_its_creator_may_join_and_daemons_have_no_children(void **state)
{
    (void)state;
    gate g;
    gate_init(&g);
    assert_int_equal(mp_process_open(&inherited, wait_gate, &g, NULL), 0);
    assert_int_equal(mp_process_start(inherited), 0);
    mp_process *checker;
    assert_int_equal(mp_process_open(&checker, misuse_inherited_handle, NULL, NULL), 0);
    run_to_end(checker);
    int code = -1;
    assert_int_equal(mp_process_exitcode(checker, &code), 1);
    assert_int_equal(code, 0);
    mp_process_close(checker);
    gate_open(&g);
    assert_int_equal(mp_process_join(inherited, 10000), 0);
    mp_process_close(inherited);
    gate_free(&g);

    mp_process *d;
    assert_int_equal(
        mp_process_open(&d, daemon_tries_to_start_a_child, NULL, &(mp_process_opts){.daemon = 1}),
        0);
    run_to_end(d);
    assert_int_equal(mp_process_exitcode(d, &code), 1);
    assert_int_equal(code, 0);
    mp_process_close(d);
}

static void
test_process_misuse_returns_clear_errors(void **state)
{
    (void)state;
    mp_process *p = NULL;
    assert_int_equal(mp_process_open(NULL, return_arg, NULL, NULL), -EINVAL);
    assert_int_equal(mp_process_open(&p, NULL, NULL, NULL), -EINVAL);
    assert_int_equal(mp_process_open(&p, return_arg, NULL, &(mp_process_opts){.pdeathsig = 999}),
                     -EINVAL);
    assert_null(p);
    assert_int_equal(mp_process_start(NULL), -EINVAL);
    assert_int_equal(mp_process_join(NULL, 0), -EINVAL);
    assert_int_equal(mp_process_is_alive(NULL), -EINVAL);
    assert_int_equal(mp_process_terminate(NULL), -EINVAL);
    assert_int_equal(mp_process_kill(NULL), -EINVAL);
    assert_int_equal(mp_process_pid(NULL), -EINVAL);
    assert_int_equal(mp_process_sentinel(NULL), -EINVAL);
    int code;
    assert_int_equal(mp_process_exitcode(NULL, &code), -EINVAL);

    assert_int_equal(mp_process_open(&p, return_arg, NULL, NULL), 0);
    assert_int_equal(mp_process_join(p, 0), -EINVAL);   /* not started */
    assert_int_equal(mp_process_kill(p), -EINVAL);      /* not started */
    assert_int_equal(mp_process_exitcode(p, NULL), -EINVAL);
    assert_int_equal(mp_process_exitcode(p, &code), 0); /* None */
    assert_int_equal(mp_process_start(p), 0);
    assert_int_equal(mp_process_start(p), -EINVAL); /* cannot start a process twice */
    assert_int_equal(mp_process_join(p, -2), -EINVAL);
    assert_int_equal(mp_process_join(p, 10000), 0);
    mp_process_close(p);
}

/* Where pidfd_open() is unavailable (seccomp, valgrind) the sentinel is a pipe: the same
 * behaviour must hold. */
static void
test_process_without_pidfd_falls_back_to_a_pipe_sentinel(void **state)
{
    (void)state;
    mp__process_use_pidfd(false);
    test_process_sentinel_becomes_readable_when_the_child_ends(state);
    test_process_join_times_out_on_a_running_child(state);
    test_process_terminate_and_kill_send_their_signals(state);
    test_process_active_children_lists_live_children(state);
    mp__process_use_pidfd(true);
}

static void
test_foundation_version_errors_and_cpu_count(void **state)
{
    (void)state;
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", MP_VERSION_MAJOR, MP_VERSION_MINOR, MP_VERSION_PATCH);
    assert_string_equal(mp_version_string(), want);
    const int codes[] = {MP_EOF, MP_ETYPE, MP_EBROKEN, MP_EREMOTE, MP_OWNERDEAD};
    for (size_t i = 0; i < MP__ARRAY_LEN(codes); i++) {
        assert_non_null(mp_strerror(codes[i]));
        assert_string_not_equal(mp_strerror(codes[i]), "unknown error");
    }
    assert_string_equal(mp_strerror(-ETIMEDOUT), strerror(ETIMEDOUT));
    assert_string_equal(mp_strerror(-999999), "unknown error");
    assert_string_equal(mp_strerror(0), "success");
    assert_true(mp_cpu_count() >= 1);
    assert_int_equal(mp_parent_pid(), getppid());
    mp_free(NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_process_exit_code_is_the_targets_return_value),
        cmocka_unit_test(test_process_killed_by_signal_reports_minus_signum),
        cmocka_unit_test(test_process_join_times_out_on_a_running_child),
        cmocka_unit_test(test_process_terminate_and_kill_send_their_signals),
        cmocka_unit_test(test_process_is_alive_follows_the_child),
        cmocka_unit_test(test_process_sentinel_becomes_readable_when_the_child_ends),
        cmocka_unit_test(test_process_close_is_refused_while_running),
        cmocka_unit_test(test_process_exit_terminates_daemons_and_joins_the_others),
        cmocka_unit_test(test_process_pdeathsig_fires_when_the_parent_dies),
        cmocka_unit_test(test_process_names_follow_pythons_scheme),
        cmocka_unit_test(test_process_stdio_is_neither_duplicated_nor_lost),
        cmocka_unit_test(test_process_active_children_lists_live_children),
        cmocka_unit_test(test_process_with_sigchld_ignored_joins_but_status_is_unknown),
        cmocka_unit_test(test_process_only_its_creator_may_join_and_daemons_have_no_children),
        cmocka_unit_test(test_process_misuse_returns_clear_errors),
        cmocka_unit_test(test_process_without_pidfd_falls_back_to_a_pipe_sentinel),
        cmocka_unit_test(test_foundation_version_errors_and_cpu_count),
    };
    return th_run_tests(tests);
}
