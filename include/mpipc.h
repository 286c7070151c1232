/*
 * mpipc.h - Python multiprocessing-style inter-process communication for C.
 *
 * The one public header of mpipc. Sections, in order: common (version, errors, time, memory),
 * process, sync, pipe/connection, queue, value/array, shared memory, manager.
 *
 * Conventions that hold for every call (docs/conventions are in README.md):
 *  - Calls return int (ssize_t for byte counts): >= 0 is success, a negative errno on failure,
 *    or one of the library's own codes below (MP_EOF, MP_ETYPE, MP_EBROKEN).
 *  - Every call that waits for another process takes `int timeout_ms` as its last parameter:
 *    MP_FOREVER (-1), MP_NOWAIT (0) or milliseconds. Any other negative value is -EINVAL.
 *    Not ready with MP_NOWAIT gives -EAGAIN, a deadline that passed gives -ETIMEDOUT. Deadlines
 *    are measured on CLOCK_MONOTONIC, so wall-clock changes do not stretch them.
 *  - Handles are opaque. `mp_<type>_open` fills an out-parameter; `mp_<type>_close` accepts NULL,
 *    releases this process's resources and frees the handle.
 *  - The library starts no threads and installs no signal handlers.
 *
 * Platform: Linux >= 5.3, glibc >= 2.30, 64-bit.
 */
#ifndef MPIPC_H
#define MPIPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MP_VERSION_MAJOR 0
#define MP_VERSION_MINOR 1
#define MP_VERSION_PATCH 0

#if defined(MP_BUILDING_LIBRARY)
#define MP_API __attribute__((visibility("default")))
#else
#define MP_API
#endif

/* ============================================================================================
 * Common: version, error codes, timeouts, memory
 * ============================================================================================ */

/* mp_version_string - the library's run-time version, "MAJOR.MINOR.PATCH". Never NULL. */
MP_API const char *mp_version_string(void);

/* Library-specific result codes. The negative ones sit in a range no Linux errno uses
 * (errno values stop below 4096, -MP_EOF etc. are above that), so they never collide. */
#define MP_OWNERDEAD 1        /* lock acquired, its previous holder died holding it (not an error) */
#define MP_EOF (-4095)        /* end of stream: the peer closed and nothing is left (Python EOFError) */
#define MP_ETYPE (-4094)      /* value of the wrong type (Python TypeError) */
#define MP_EBROKEN (-4093)    /* broken barrier (Python BrokenBarrierError) */
#define MP_EREMOTE (-4092)    /* the remote side raised an error (Python RemoteError) */

/* mp_strerror - a static, human-readable message for any result of this library: a negative
 * errno, one of the MP_ codes above, or 0/positive successes. Never returns NULL. */
MP_API const char *mp_strerror(int err);

#define MP_FOREVER (-1) /* timeout_ms: wait as long as it takes */
#define MP_NOWAIT 0     /* timeout_ms: do not wait at all (Python's block=False) */

/* mp_free - release a buffer that the library allocated for the caller (for example the result
 * of a receive that allocates). Accepts NULL. */
MP_API void mp_free(void *ptr);

/* ============================================================================================
 * Process (Python's multiprocessing.Process, fork start method)
 *
 * A process handle lives in the process that opened it. start() forks; the child runs
 * target(arg) and exits with its return value (the low 8 bits, as exit(3)). stdout and stderr
 * are flushed before the fork, and the child flushes all stdio streams and calls _exit() after
 * the target returns, so buffered output is neither duplicated nor lost and the parent's atexit
 * handlers never run in the child.
 *
 * Crossing fork(): the child gets a copy of every handle; only the process that opened a handle
 * may start, join, terminate, kill or close-reap it (others get -ECHILD or -EINVAL).
 * Thread safety: a handle may be used from several threads of its process.
 *
 * Exit handling (as Python's): when the process that started children exits normally (exit() or
 * return from main), its daemonic children that are still running get SIGTERM and are reaped,
 * then its non-daemonic children are joined. The handler acts only in that process.
 *
 * Reaping: only the library's own children are reaped, by pid (never waitpid(-1)). When SIGCHLD
 * is set to SIG_IGN the kernel discards exit statuses: join still returns once the child has
 * ended, and mp_process_exitcode() then returns -ECHILD (status unknown).
 * ============================================================================================ */

typedef struct mp_process mp_process;

/* The entry function run in the child. Its return value is the child's exit code. */
typedef int (*mp_process_fn)(void *arg);

typedef struct mp_process_opts {
    /* Name shown by mp_process_name(); copied. NULL gives Python's "Process-N" (N counts the
     * processes opened by this process; in a child "Process-1" it becomes "Process-1:N"). */
    const char *name;
    /* Python's daemon flag: terminated (SIGTERM) rather than joined when the parent exits.
     * A daemonic process may not start children of its own (-EINVAL). */
    bool daemon;
    /* Beyond Python: a signal (e.g. SIGKILL) the kernel sends the child when its parent dies
     * (PR_SET_PDEATHSIG). 0 disables it. Linux ties this to the *thread* that forked: if the
     * thread that called mp_process_start() exits, the signal fires even though the parent
     * process lives on. The child re-checks its parent after arming it, so a parent that died
     * during the fork is not missed. */
    int pdeathsig;
} mp_process_opts;

/* mp_process_open - create a process object that will run target(arg); not started yet
 * (Python's Process(target=..., args=...)). `opts` may be NULL.
 * Returns 0, -EINVAL (NULL out or target, bad signal number, name too long), -ENOMEM. */
MP_API int mp_process_open(mp_process **out, mp_process_fn target, void *arg,
                           const mp_process_opts *opts);

/* mp_process_start - fork and run the target in the child. Does not block.
 * Returns 0; -EINVAL if already started, opened in another process, or called from a daemonic
 * child; -EAGAIN/-ENOMEM if fork fails; -EMFILE if no fd is left for the sentinel. */
MP_API int mp_process_start(mp_process *p);

/* mp_process_join - wait until the child has ended and reap it.
 * Returns 0 when it has ended (read the status with mp_process_exitcode), -EAGAIN with MP_NOWAIT
 * or -ETIMEDOUT when it is still running, -EINTR when a signal handler interrupted the wait,
 * -EINVAL if not started or timeout_ms is invalid, -ECHILD if this process did not start it. */
MP_API int mp_process_join(mp_process *p, int timeout_ms);

/* mp_process_is_alive - 1 if started and still running, 0 if not started or ended (reaping it
 * without blocking), -ECHILD if called from a process other than the one that started it. */
MP_API int mp_process_is_alive(mp_process *p);

/* mp_process_exitcode - Python's exitcode. Returns 1 and stores the code in *exitcode once the
 * child has ended: the target's return value (0..255), or -signum if a signal killed it.
 * Returns 0 when not started or still running (Python's None), -ECHILD when the status was
 * discarded because SIGCHLD is ignored, -EINVAL for NULL arguments. Never blocks. */
MP_API int mp_process_exitcode(mp_process *p, int *exitcode);

/* mp_process_terminate / mp_process_kill - send SIGTERM / SIGKILL to a running child. Does
 * nothing and returns 0 once the child has ended. -EINVAL if not started, -ECHILD if this
 * process did not start it. The signal is sent through the child's pidfd, so it can never hit
 * a recycled pid. */
MP_API int mp_process_terminate(mp_process *p);
MP_API int mp_process_kill(mp_process *p);

/* mp_process_pid - the child's pid; 0 before start, -EINVAL for NULL. */
MP_API pid_t mp_process_pid(const mp_process *p);

/* mp_process_name - the process name. Never NULL ("" for a NULL handle). */
MP_API const char *mp_process_name(const mp_process *p);

/* mp_process_sentinel - Python's sentinel: an fd (a pidfd) that becomes readable when the child
 * ends, for poll/epoll or mp_conn_wait. Owned by the handle (do not close it); unlike Python's
 * pipe it is not delayed by grandchildren. Returns the fd, or -EINVAL if not started. */
MP_API int mp_process_sentinel(const mp_process *p);

/* mp_process_close - release the handle. A child that is still running cannot be closed:
 * -EBUSY and nothing is freed (Python's ValueError); join or kill it first. A child that has
 * ended is reaped if needed. Returns 0 (also for NULL). Not-started handles just free. */
MP_API int mp_process_close(mp_process *p);

/* mp_active_children - the live children started by this process (finished ones are reaped,
 * as Python's active_children()). Fills up to `cap` handles into `out` (may be NULL with cap 0)
 * and returns how many are alive, which may exceed cap. */
MP_API int mp_active_children(mp_process **out, size_t cap);

/* mp_parent_pid - the pid of this process's parent (Python's parent_process().pid). */
MP_API pid_t mp_parent_pid(void);

/* mp_cpu_count - the number of CPUs this process may run on (its affinity mask; Python 3.13's
 * process_cpu_count), at least 1, or -ENOSYS if it cannot be found. */
MP_API int mp_cpu_count(void);

/* ============================================================================================
 * Pipe and Connection (Python's multiprocessing.Pipe, Connection, connection.wait and
 * reduction.send_handle / recv_handle)
 *
 * A connection end wraps one AF_UNIX SOCK_STREAM socket. Messages use CPython's framing
 * exactly (a 4-byte big-endian signed length, or -1 followed by an 8-byte big-endian length
 * for payloads above 0x7fffffff), so a Python process holding the other end
 * (multiprocessing.connection.Connection(fd)) can exchange send_bytes/recv_bytes messages with
 * a C process. Message payloads are raw bytes; there is no pickle around them.
 *
 * No read-ahead: a receive reads exactly the next message's header and then exactly its
 * payload, never a byte past it, so fork() never duplicates buffered messages and poll/epoll
 * on the fd tell the truth. The only bytes a handle may hold are those of the next message's
 * header (at most 12), after a receive that read them and then returned without the message
 * (a timeout in the middle of a header, -EINTR, -EMSGSIZE, -ENOMEM); the next receive on the
 * same handle continues with them, so nothing is lost. Such a handle must receive that message
 * itself before its end is used by another process.
 *
 * Time: the timeout bounds the wait for a message to start: for a receive, until the next
 * message's header has arrived; for a send, until the socket accepts the first bytes. Once the
 * payload is under way the call finishes the message whatever the deadline says, blocking for
 * as long as the peer needs, so a timeout never leaves half a message on the stream; only the
 * peer closing (or dying) ends it early, and the stream is then unusable in that direction.
 *
 * Signals: sends use MSG_NOSIGNAL, so writing to a closed peer returns -EPIPE and never raises
 * SIGPIPE; the library changes no signal disposition.
 *
 * Crossing fork(): the child inherits a copy of every handle and its fd. As with Python, each
 * process should close the ends it does not use (EOF is only seen once every copy of the
 * peer's end is closed). An end is one user at a time: at most one thread or process sends on
 * it and one receives from it at any moment (a sender and a receiver may run concurrently).
 * Several processes reading or writing one end need a lock around each call.
 * ============================================================================================ */

typedef struct mp_conn mp_conn;

/* mp_pipe_open - Python's Pipe(duplex). Fills *a and *b with the two ends of a new
 * connection. With duplex, both ends send and receive. Without, *a can only receive and *b can
 * only send (as Python's Pipe(False)); using an end the wrong way gives -EBADF. The fds are
 * O_CLOEXEC. Returns 0, -EINVAL (NULL arguments), -EMFILE/-ENFILE, -ENOMEM; on error nothing
 * is left open and *a and *b are untouched. */
MP_API int mp_pipe_open(mp_conn **a, mp_conn **b, bool duplex);

/* mp_conn_open - Python's Connection(handle, readable, writable): wrap an existing fd, which
 * must be an AF_UNIX SOCK_STREAM socket (for example one end of a socketpair or a fd received
 * from a Python process). Takes ownership of fd only on success (mp_conn_close closes it).
 * Returns 0; -EINVAL for a negative fd, NULL out, or neither readable nor writable;
 * -ENOTSOCK or -EPROTOTYPE for an fd that is not an AF_UNIX stream socket; -ENOMEM. */
MP_API int mp_conn_open(mp_conn **out, int fd, bool readable, bool writable);

/* mp_conn_close - close this process's fd of the end and free the handle (Python's close()).
 * Accepts NULL. The peer sees EOF once every copy of the end (in forked children too) is
 * closed. */
MP_API void mp_conn_close(mp_conn *c);

/* mp_conn_fileno - the end's fd, for poll/epoll or mp_conn_wait (still owned by the handle).
 * Returns -EINVAL for NULL. */
MP_API int mp_conn_fileno(const mp_conn *c);

/* mp_conn_readable / mp_conn_writable - whether the end may receive / send (Python's
 * readable/writable). False for NULL. */
MP_API bool mp_conn_readable(const mp_conn *c);
MP_API bool mp_conn_writable(const mp_conn *c);

/* mp_conn_send_bytes - send len bytes from buf as one message (Python's send_bytes; for a
 * slice pass buf + offset and the size). len may be 0. Header and payload go out in one
 * syscall when the socket has room. Blocks while the socket buffer is full; see "Time" above
 * for what timeout_ms bounds.
 * Returns 0; -EAGAIN (MP_NOWAIT) or -ETIMEDOUT when no byte could be written in time; -EINTR
 * when a signal handler interrupted the wait before any byte was written; -EPIPE when the peer
 * has closed (also for every send after a message was cut short); -EBADF on a receive-only
 * end; -EINVAL for NULL arguments or a bad timeout. */
MP_API int mp_conn_send_bytes(mp_conn *c, const void *buf, size_t len, int timeout_ms);

/* mp_conn_recv_bytes - receive one message into a new buffer (Python's recv_bytes). On 0,
 * *buf holds *len bytes (never NULL, even for an empty message; free with mp_free).
 * maxlength: SIZE_MAX for no limit. A message longer than maxlength is NOT consumed: -EMSGSIZE
 * with its length in *len and *buf NULL; the connection stays usable (better than Python,
 * which makes it unreadable). Blocks until a message arrives (see "Time").
 * Returns 0; MP_EOF when the peer closed and every message sent before was received;
 * -EAGAIN/-ETIMEDOUT/-EINTR with no message lost; -ENOMEM (message kept); -EPROTO for a
 * malformed header (a negative length other than -1), a peer that closed in the middle of a
 * message, or a handle (mp_conn_send_handle) where a message was expected (the kernel drops
 * its fd), after which every receive on this end returns -EPROTO; -EBADF on a send-only end;
 * -EINVAL for NULL arguments or a bad timeout. */
MP_API int mp_conn_recv_bytes(mp_conn *c, void **buf, size_t *len, size_t maxlength,
                              int timeout_ms);

/* mp_conn_recv_bytes_into - receive one message into the caller's buffer of cap bytes
 * (Python's recv_bytes_into; for an offset pass buf + offset and the space left). On 0, *len is
 * the message length. A message longer than cap is NOT consumed: -EMSGSIZE with the needed
 * length in *len, so the caller can grow the buffer and call again (Python consumes it and
 * raises BufferTooShort). Other results as mp_conn_recv_bytes. buf may be NULL when cap is 0. */
MP_API int mp_conn_recv_bytes_into(mp_conn *c, void *buf, size_t cap, size_t *len,
                                   int timeout_ms);

/* mp_conn_poll - Python's poll(timeout): 1 when a receive would not block (a message, or EOF,
 * is waiting), 0 when nothing came within timeout_ms (also for MP_NOWAIT). Never consumes
 * anything. Returns -EBADF on a send-only end, -EINTR, -EINVAL for NULL or a bad timeout. */
MP_API int mp_conn_poll(mp_conn *c, int timeout_ms);

/* mp_conn_wait - Python's connection.wait(object_list, timeout): wait until at least one of n
 * fds is ready, i.e. readable, at EOF/hang-up or in error. The fds are connection ends
 * (mp_conn_fileno), process sentinels (mp_process_sentinel) or any pollable fd. When ready is
 * not NULL, ready[i] tells whether fds[i] is ready. Returns how many are ready, 0 when none
 * became ready within timeout_ms (also for MP_NOWAIT); -EBADF for a negative or closed fd,
 * -EINTR, -ENOMEM, -EINVAL for a bad timeout or NULL fds with n > 0. Never consumes data.
 * A send-only end becomes ready when its reader has closed, as Python's pipe write end. */
MP_API int mp_conn_wait(const int *fds, size_t n, bool *ready, int timeout_ms);

/* mp_conn_send_handle - pass a duplicate of the open fd `handle` to the process holding the
 * other end (SCM_RIGHTS; Python's reduction.send_handle, with the same one-byte message, so a
 * Python peer can recv_handle it). The caller keeps its own fd. Blocks as mp_conn_send_bytes.
 * Returns 0, -EBADF (receive-only end, or handle not open), -EPIPE, -EAGAIN/-ETIMEDOUT/-EINTR,
 * -EINVAL. */
MP_API int mp_conn_send_handle(mp_conn *c, int handle, int timeout_ms);

/* mp_conn_recv_handle - receive an fd sent by mp_conn_send_handle or mp_conn_send_conn (or
 * Python's send_handle) into *handle; it is a new O_CLOEXEC fd owned by the caller. Blocks as
 * mp_conn_recv_bytes. Returns 0; MP_EOF; -EAGAIN/-ETIMEDOUT/-EINTR with nothing consumed;
 * -EPROTO when the next thing on the stream is not a handle (then nothing is consumed, and the
 * message can still be received; this check peeks, which costs time proportional to the
 * number of queued messages), or when the handle message carried no single fd, e.g.
 * because this process had no fd left (the handle is lost); -EBADF on a send-only end;
 * -EINVAL. */
MP_API int mp_conn_recv_handle(mp_conn *c, int *handle, int timeout_ms);

/* mp_conn_send_conn - send connection end `what` (its fd and its readable/writable flags)
 * to the process on the other side of c, which rebuilds it with mp_conn_recv_conn (Python's
 * sending of a Connection object). `what` stays open here; close it if this process has no
 * further use for it. Results as mp_conn_send_handle. */
MP_API int mp_conn_send_conn(mp_conn *c, const mp_conn *what, int timeout_ms);

/* mp_conn_recv_conn - receive a connection end sent with mp_conn_send_conn into a new handle
 * *out. A plain handle from send_handle is accepted as a duplex end if it is an AF_UNIX
 * stream socket. Results as mp_conn_recv_handle, plus -ENOTSOCK/-EPROTOTYPE (the received fd
 * is closed) and -ENOMEM. */
MP_API int mp_conn_recv_conn(mp_conn *c, mp_conn **out, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif /* MPIPC_H */
