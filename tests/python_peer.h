/*
 * python_peer.h - run a Python script as the other side of an interop test.
 *
 * The script runs with pipes on its stdin, stdout and stderr. It must exit 0 and print nothing
 * on stderr: a traceback or a warning (such as the resource tracker's "leaked shared_memory
 * objects") fails the test.
 */
#ifndef MPIPC_TEST_PYTHON_PEER_H
#define MPIPC_TEST_PYTHON_PEER_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define TH_PY_MAX 8

/* th_py_find - "python3" when it is on PATH, then every pyenv CPython >= 3.11 installed
 * ($PYENV_ROOT or ~/.pyenv), so the code paths of several versions run where present. Returns
 * how many it found (0: the caller skips). */
int th_py_find(char py[TH_PY_MAX][PATH_MAX]);

typedef struct th_py_peer {
    pid_t pid;
    int in, out, err; /* the script's stdin (write end), stdout and stderr (read ends) */
    char what[PATH_MAX + 64];
} th_py_peer;

/* th_py_start - run `python script args...` (args NULL-terminated, at most 6). */
void th_py_start(th_py_peer *p, const char *python, const char *script, const char *const args[]);

/* th_py_read_line - read one line of the script's stdout (without the '\n') within 30 s. */
bool th_py_read_line(th_py_peer *p, char *line, size_t cap);

/* th_py_finish - close the script's stdin, collect its stderr until EOF, reap it, and assert a
 * clean exit with an empty stderr (printing what it said otherwise). */
void th_py_finish(th_py_peer *p);

#endif
