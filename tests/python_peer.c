/*
 * python_peer.c - run a Python script as the other side of an interop test.
 */
#define _GNU_SOURCE
#include "python_peer.h"
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>

int
th_py_find(char py[TH_PY_MAX][PATH_MAX])
{
    int n = 0;
    const char *path = getenv("PATH");
    char *dirs = strdup(path != NULL ? path : "");
    assert_non_null(dirs);
    char *save = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d != NULL; d = strtok_r(NULL, ":", &save)) {
        char cand[PATH_MAX];
        snprintf(cand, sizeof cand, "%s/python3", d);
        if (access(cand, X_OK) == 0) {
            snprintf(py[n++], PATH_MAX, "python3");
            break;
        }
    }
    free(dirs);
    const char *root = getenv("PYENV_ROOT"), *home = getenv("HOME");
    char pattern[PATH_MAX];
    if (root != NULL)
        snprintf(pattern, sizeof pattern, "%s/versions/3.1[1-9]*/bin/python3", root);
    else
        snprintf(pattern, sizeof pattern, "%s/.pyenv/versions/3.1[1-9]*/bin/python3",
                 home != NULL ? home : "");
    glob_t g;
    if (glob(pattern, 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc && n < TH_PY_MAX; i++)
            snprintf(py[n++], PATH_MAX, "%s", g.gl_pathv[i]);
        globfree(&g);
    }
    return n;
}

void
th_py_start(th_py_peer *p, const char *python, const char *script, const char *const args[])
{
    const char *argv[9] = {python, script};
    for (int i = 0; args != NULL && args[i] != NULL && i < 6; i++)
        argv[2 + i] = args[i];
    snprintf(p->what, sizeof p->what, "%s %s", python, script);
    int in[2], out[2], err[2];
    assert_int_equal(pipe2(in, O_CLOEXEC), 0);
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    assert_int_equal(pipe2(err, O_CLOEXEC), 0);
    fflush(NULL);
    p->pid = fork();
    assert_true(p->pid >= 0);
    if (p->pid == 0) {
        /* Python's resource tracker outlives the interpreter for a moment, and orphans are
         * re-parented to the test (a subreaper, for the leak check). So this child becomes
         * the subreaper of python and its tracker, reaps both and exits with python's status.
         * Only async-signal-safe calls from here on. */
        prctl(PR_SET_CHILD_SUBREAPER, 1);
        pid_t py = fork();
        if (py == 0) {
            dup2(in[0], 0);
            dup2(out[1], 1);
            dup2(err[1], 2);
            execvp(python, (char *const *)argv);
            _exit(127);
        }
        for (int i = 0; i < 2; i++) {
            close(in[i]);
            close(out[i]);
            close(err[i]);
        }
        int code = 127, st;
        pid_t w;
        while ((w = waitpid(-1, &st, 0)) > 0 || (w < 0 && errno == EINTR))
            if (w == py)
                code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        _exit(code);
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    p->in = in[1];
    p->out = out[0];
    p->err = err[0];
}

/* read_some - append what fd has to buf within the deadline; false at EOF, error or timeout. */
static bool
read_some(int fd, char *buf, size_t cap, size_t *len, int64_t end)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int64_t left = end - th_now_ms();
    if (left <= 0 || poll(&pfd, 1, (int)left) <= 0 || *len + 1 >= cap)
        return false;
    ssize_t r = read(fd, buf + *len, cap - 1 - *len);
    if (r <= 0)
        return false;
    *len += (size_t)r;
    buf[*len] = '\0';
    return true;
}

bool
th_py_read_line(th_py_peer *p, char *line, size_t cap)
{
    /* One byte at a time, so nothing after the line is consumed. */
    size_t len = 0;
    int64_t end = th_now_ms() + 30000;
    line[0] = '\0';
    while (read_some(p->out, line, len + 2 <= cap ? len + 2 : cap, &len, end)) {
        if (line[len - 1] == '\n') {
            line[len - 1] = '\0';
            return true;
        }
    }
    return false;
}

void
th_py_finish(th_py_peer *p)
{
    close(p->in);
    char err[16384];
    size_t len = 0;
    err[0] = '\0';
    int64_t end = th_now_ms() + 30000;
    while (read_some(p->err, err, sizeof err, &len, end))
        ;
    close(p->err);
    close(p->out);
    int st = th_wait(p->pid, 30000);
    if (len > 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fprintf(stderr, "%s exited with status %#x and said:\n%s\n", p->what, st, err);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(len, 0);
}
