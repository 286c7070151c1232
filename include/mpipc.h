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

/* mp_process_sentinel - Python's sentinel: an fd that becomes ready when the child ends, for
 * poll/epoll/select or mp_conn_wait; test revents for POLLIN | POLLHUP. It is a pidfd, which
 * unlike Python's pipe is not delayed by grandchildren; where pidfd_open() is unavailable
 * (seccomp, valgrind) it is Python's pipe, which reports POLLHUP. Owned by the handle: do not
 * close it. Returns the fd, or -EINVAL if not started. */
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
 * Sync (Python's multiprocessing.Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event,
 * Barrier)
 *
 * Every object lives in shared memory (a small block of the library's shared arena, not one
 * mapping each) and is shared by inheritance: open it, then fork (mp_process_start); the child
 * uses its copy of the handle (create processes with fork() or mp_process_start, not a raw
 * clone). Locks belong to a thread of a process: a child never owns a lock that its parent held
 * at fork(). Handles are process-local; a child's close frees only its handle.
 * The shared object itself is freed by the close in the process that opened it, which therefore
 * must come after every other process has finished with the object (Python's rule too). Handles
 * whose object has been freed that way get -EBADF.
 *
 * Crash behaviour: a process that dies (or exits) holding a lock hands it to the next
 * acquirer, whose call returns MP_OWNERDEAD (> 0: it holds a usable lock; the data the lock
 * guards may be half updated). A process killed while waiting on any object leaves the object
 * fully usable. A wait for something only a dead process could have done ends at the caller's
 * timeout.
 *
 * Timeouts: -EAGAIN with MP_NOWAIT, -ETIMEDOUT when the deadline passes, -EINVAL for a bad
 * timeout. Waits on semaphores, conditions, events and barriers sleep on futexes and return
 * -EINTR when a signal handler interrupts them (a condition wait re-takes its lock first); lock
 * acquisition is a pthread mutex wait, which the kernel restarts after a handler, so it never
 * returns -EINTR.
 * All objects may be used from several threads of a process as well as from several processes.
 * ============================================================================================ */

typedef struct mp_lock mp_lock;
typedef struct mp_semaphore mp_semaphore;
typedef struct mp_condition mp_condition;
typedef struct mp_event mp_event;
typedef struct mp_barrier mp_barrier;

typedef struct mp_lock_opts {
    /* Python's RLock: the owning thread may acquire it again and must release it as often. */
    bool recursive;
} mp_lock_opts;

/* mp_lock_open - a new unlocked lock (Python's Lock(), or RLock() with opts->recursive).
 * `opts` may be NULL. Returns 0, -EINVAL (NULL out), -ENOMEM, -ENOSPC, -EMFILE. */
MP_API int mp_lock_open(mp_lock **out, const mp_lock_opts *opts);

/* mp_rlock_open - mp_lock_open with .recursive = true. */
MP_API int mp_rlock_open(mp_lock **out);

/* mp_lock_close - release the handle (NULL is fine); in the opening process also free the lock. */
MP_API void mp_lock_close(mp_lock *lock);

/* mp_lock_acquire - take the lock, waiting up to timeout_ms. Unlike Python's Lock it has an
 * owner: the calling thread of the calling process. Returns 0, or MP_OWNERDEAD when the
 * previous owner died holding it (the caller owns it and the lock is consistent again);
 * -EAGAIN (MP_NOWAIT, busy), -ETIMEDOUT, -EDEADLK when a non-recursive lock is already held by
 * the caller (Python would deadlock), -EAGAIN for a recursive lock at its recursion limit
 * (UINT32_MAX), -EINVAL (bad timeout), -EBADF (lock freed by its creator). Never -EINTR. */
MP_API int mp_lock_acquire(mp_lock *lock, int timeout_ms);

/* mp_lock_release - release one level of the lock. Returns 0, or -EPERM when the calling
 * thread does not hold it (also for a recursive lock), -EBADF. Does not block. */
MP_API int mp_lock_release(mp_lock *lock);

typedef struct mp_semaphore_opts {
    /* Python's BoundedSemaphore: releasing above the initial value is -EINVAL. */
    bool bounded;
} mp_semaphore_opts;

/* mp_semaphore_open - a counting semaphore with `value` units (Python's Semaphore(value);
 * Python's default is 1). Any thread of any process may release it. `opts` may be NULL.
 * Returns 0, -EINVAL (NULL out, value > INT32_MAX), -ENOMEM, -ENOSPC, -EMFILE. */
MP_API int mp_semaphore_open(mp_semaphore **out, unsigned value, const mp_semaphore_opts *opts);

/* mp_semaphore_close - release the handle (NULL is fine); in the opening process also free it. */
MP_API void mp_semaphore_close(mp_semaphore *sem);

/* mp_semaphore_acquire - take one unit, waiting up to timeout_ms for one to be released.
 * Returns 0, -EAGAIN (MP_NOWAIT, none free), -ETIMEDOUT, -EINTR, -EINVAL, -EBADF. */
MP_API int mp_semaphore_acquire(mp_semaphore *sem, int timeout_ms);

/* mp_semaphore_release - give back one unit and wake the waiters. Never blocks. Returns 0,
 * -EINVAL when a bounded semaphore would exceed its initial value (nothing changes),
 * -EOVERFLOW at INT32_MAX units, -EBADF. */
MP_API int mp_semaphore_release(mp_semaphore *sem);

/* mp_semaphore_get_value - the number of free units (>= 0), or -EBADF/-EINVAL. */
MP_API int mp_semaphore_get_value(const mp_semaphore *sem);

typedef struct mp_condition_opts {
    /* The lock to use, which must stay open as long as the condition (Python's
     * Condition(lock)). NULL: the condition makes its own recursive lock (Python's default). */
    mp_lock *lock;
} mp_condition_opts;

/* mp_condition_open - a condition variable. `opts` may be NULL. Returns 0, -EINVAL, -ENOMEM,
 * -ENOSPC, -EMFILE, -EBADF (a freed opts->lock). */
MP_API int mp_condition_open(mp_condition **out, const mp_condition_opts *opts);

/* mp_condition_close - release the handle (NULL is fine); in the opening process also free
 * the condition and its own lock. A lock passed in opts is not closed. */
MP_API void mp_condition_close(mp_condition *cond);

/* mp_condition_acquire / mp_condition_release - mp_lock_acquire / mp_lock_release on the
 * condition's lock. */
MP_API int mp_condition_acquire(mp_condition *cond, int timeout_ms);
MP_API int mp_condition_release(mp_condition *cond);

/* mp_condition_wait - release the lock completely (every level of a recursive lock), sleep
 * until notified or timeout_ms passes, then take the lock back at its old depth. The lock is
 * held again on every return except -EPERM/-EINVAL/-EBADF; re-taking it has no deadline.
 * Returns 0 when notified, MP_OWNERDEAD when notified and the lock's previous holder had died,
 * -ETIMEDOUT, -EAGAIN (MP_NOWAIT), -EINTR (a signal handler ran), -EPERM when the caller does
 * not hold the lock, -EINVAL, -EBADF. Spurious returns do not happen, but a notify may wake
 * one more waiter than asked when a waiter died (the classic predicate loop copes). */
MP_API int mp_condition_wait(mp_condition *cond, int timeout_ms);

/* mp_condition_wait_for - Python's wait_for: wait until pred(arg) returns true, checking it
 * first and after every wake-up, with the lock held; timeout_ms bounds the whole call.
 * Returns 0 (or MP_OWNERDEAD) once pred is true, -ETIMEDOUT / -EAGAIN when the time ran out
 * and pred is still false (it is checked one last time), else as mp_condition_wait. */
MP_API int mp_condition_wait_for(mp_condition *cond, bool (*pred)(void *arg), void *arg,
                                 int timeout_ms);

/* mp_condition_notify - wake up to n of the processes/threads waiting now (n = 0 does
 * nothing). The caller must hold the lock. Never blocks (unlike Python's, which waits for the
 * woken to run). Costs no system call when nobody waits. Returns 0, -EPERM, -EINVAL (n < 0),
 * -EBADF. */
MP_API int mp_condition_notify(mp_condition *cond, int n);

/* mp_condition_notify_all - wake every current waiter; as mp_condition_notify. */
MP_API int mp_condition_notify_all(mp_condition *cond);

/* mp_event_open - a new event, initially clear (Python's Event()). Returns 0, -EINVAL,
 * -ENOMEM, -ENOSPC, -EMFILE. */
MP_API int mp_event_open(mp_event **out);

/* mp_event_close - release the handle (NULL is fine); in the opening process also free it. */
MP_API void mp_event_close(mp_event *ev);

/* mp_event_set / mp_event_clear - set the flag, waking every waiter / clear it. Never block.
 * Return 0 or -EBADF/-EINVAL. */
MP_API int mp_event_set(mp_event *ev);
MP_API int mp_event_clear(mp_event *ev);

/* mp_event_is_set - 1 if the flag is set, 0 if not (or -EBADF/-EINVAL). */
MP_API int mp_event_is_set(const mp_event *ev);

/* mp_event_wait - wait until the flag is set. Returns 0 when it is set, or was set while the
 * caller waited (even if cleared again since); -EAGAIN (MP_NOWAIT), -ETIMEDOUT, -EINTR,
 * -EINVAL, -EBADF. */
MP_API int mp_event_wait(mp_event *ev, int timeout_ms);

/* A barrier action: run by the last party to arrive, before any party is released, while the
 * barrier's internal lock is held (so it must not call the barrier's own functions: they would
 * return -EDEADLK). Nonzero breaks the barrier (Python: the action raised). */
typedef int (*mp_barrier_action)(void *arg);

typedef struct mp_barrier_opts {
    /* The action and its argument. Held by this handle (a function pointer means nothing in
     * another program); handles in forked children inherit it. NULL: no action. */
    mp_barrier_action action;
    void *action_arg;
    /* Python's default timeout, used when mp_barrier_wait gets MP_FOREVER. 0: none. */
    int timeout_ms;
} mp_barrier_opts;

/* mp_barrier_open - a barrier for `parties` parties (Python's Barrier(parties, action,
 * timeout)). `opts` may be NULL. Returns 0, -EINVAL (parties 0 or > INT32_MAX, negative
 * default timeout), -ENOMEM, -ENOSPC, -EMFILE. */
MP_API int mp_barrier_open(mp_barrier **out, unsigned parties, const mp_barrier_opts *opts);

/* mp_barrier_close - release the handle (NULL is fine); in the opening process also free it. */
MP_API void mp_barrier_close(mp_barrier *bar);

/* mp_barrier_wait - arrive and wait until all parties have arrived. Returns the arrival index
 * 0..parties-1 (unique per round); the last arriver first runs the action. MP_FOREVER uses the
 * handle's default timeout if it has one. If the deadline passes the barrier breaks: this
 * caller gets -ETIMEDOUT (-EAGAIN with MP_NOWAIT), the others MP_EBROKEN. MP_EBROKEN also when
 * the barrier is or becomes broken (abort, reset during the wait, a failed action, a process
 * that died while running the action); the action's own negative result (or MP_EBROKEN) goes
 * to the party that ran it. -EINTR breaks it as well. -EINVAL, -EBADF. A party that dies while
 * waiting still counts as arrived. */
MP_API int mp_barrier_wait(mp_barrier *bar, int timeout_ms);

/* mp_barrier_reset - break the current round for its waiters (MP_EBROKEN) and make the barrier
 * usable again. Returns 0, -EBADF, -EDEADLK (called from the action). */
MP_API int mp_barrier_reset(mp_barrier *bar);

/* mp_barrier_abort - break the barrier until the next reset. Returns 0, -EBADF, -EDEADLK. */
MP_API int mp_barrier_abort(mp_barrier *bar);

/* mp_barrier_parties / mp_barrier_n_waiting / mp_barrier_broken - the number of parties, the
 * number that have arrived in the current round (a dead party that arrived counts), 1 if
 * broken or 0; -EBADF/-EINVAL (n_waiting: -EDEADLK from the action). None blocks for long. */
MP_API int mp_barrier_parties(const mp_barrier *bar);
MP_API int mp_barrier_n_waiting(mp_barrier *bar);
MP_API int mp_barrier_broken(const mp_barrier *bar);

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

/* --------------------------------------------------------------------------------------------
 * Listener and Client (Python's multiprocessing.connection.Listener / Client, with authkey)
 *
 * A listening socket that hands out connections, and the call that connects to one. Both ends
 * are ordinary mp_conn handles with CPython's framing, so a C process and a Python process
 * (Listener/Client, on this host or another) talk to each other in either role.
 *
 * Addresses are strings:
 *  - "host:port": TCP over IPv4 ("127.0.0.1:6000", "localhost:6000"; a name resolves to IPv4 as
 *    Python's AF_INET family does; an empty host listens on every interface);
 *  - "[host]:port": TCP over IPv6 ("[::1]:6000");
 *  - anything containing '/', or without ':', is an AF_UNIX path ("/run/app.sock", "./s:1").
 * Port 0 makes a listener bind an ephemeral port; mp_listener_address reports the real one.
 * Host names go through getaddrinfo(), which the timeouts do not bound; numeric addresses keep
 * every call within its timeout.
 *
 * Authentication: with an authkey, both sides run CPython's handshake, each challenging the
 * other (HMAC over a random challenge; 256-byte frame limit). mpipc speaks as CPython 3.12+:
 * it challenges with "{sha256}" and answers either form, and it accepts HMAC-MD5 from 3.11
 * peers, so CPython 3.11, 3.12 and 3.13 interoperate in both directions. sha256_only refuses
 * MD5 both ways (a 3.11 peer is then refused). Digest comparisons are constant-time. Without
 * an authkey nothing is exchanged; a mismatch (a key on one side only) shows up as a timeout
 * or as "#CHALLENGE#..." received as the first message, as in Python.
 * Handshake results (both sides, the connection is then closed): -EACCES wrong key or refused
 * digest (Python's AuthenticationError); -EPROTO a frame over 256 bytes (refused unread) or a
 * message that is not part of the handshake; -ECONNRESET the peer closed during it;
 * -ETIMEDOUT; -EINTR.
 *
 * Crossing fork(): a listener handle is copied into the child, which may accept on it too (a
 * pre-fork server). Only the process that opened the listener removes its AF_UNIX path (and
 * private directory) on close; a child's close only closes its fd. Connections cross fork as
 * mp_conn does. A listener may be used from several threads at once.
 * -------------------------------------------------------------------------------------------- */

typedef struct mp_listener mp_listener;

/* Options for mp_listener_open. All zero (or NULL) means: no authentication, backlog
 * SOMAXCONN, 10 s per handshake. */
typedef struct mp_listener_opts {
    const void *authkey;      /* NULL: no handshake (authkey=None); else authkey_len bytes */
    size_t authkey_len;       /* may be 0: an empty key still runs the handshake */
    bool sha256_only;         /* refuse HMAC-MD5 (CPython 3.11 peers) */
    int backlog;              /* listen() backlog; 0: SOMAXCONN */
    int handshake_timeout_ms; /* bound on each connection's handshake; 0: 10000; MP_FOREVER ok */
} mp_listener_opts;

/* Options for mp_client_connect. All zero (or NULL): no authentication. */
typedef struct mp_client_opts {
    const void *authkey; /* NULL: no handshake; else authkey_len bytes */
    size_t authkey_len;  /* may be 0: an empty key still runs the handshake */
    bool sha256_only;    /* refuse HMAC-MD5 (CPython 3.11 listeners) */
} mp_client_opts;

/* mp_listener_open - Python's Listener(address, backlog=..., authkey=...). Binds and listens on
 * address (see above); NULL picks a fresh AF_UNIX path in a new private 0700 directory under
 * $TMPDIR or /tmp, as Python's default address. An explicit AF_UNIX path is bound where it
 * says (the socket's mode then follows the umask). SO_REUSEADDR is set for TCP, as in Python.
 * The authkey is copied. Never blocks. Returns 0; -EINVAL for an unusable address or options;
 * -EADDRINUSE when the address is taken (also an existing file at an AF_UNIX path);
 * -EACCES, -ENOENT (missing directory), -EADDRNOTAVAIL, -EMFILE/-ENFILE, -ENOMEM. */
MP_API int mp_listener_open(mp_listener **out, const char *address, const mp_listener_opts *opts);

/* mp_listener_accept - Python's accept(): wait for a connection, run the handshake if the
 * listener has an authkey, and fill *out with a new duplex mp_conn (O_CLOEXEC, blocking).
 * timeout_ms bounds both the wait and the handshake; each handshake is also bounded by the
 * handshake_timeout_ms option, which alone applies with MP_NOWAIT (MP_NOWAIT only means "do
 * not wait for a connection to arrive"). So a client that connects and never answers holds
 * accept for the smaller of the two at most.
 * Returns 0; -EAGAIN (MP_NOWAIT, nothing pending) or -ETIMEDOUT; a handshake result (see
 * above: -EACCES, -EPROTO, -ECONNRESET, -ETIMEDOUT), after which that connection is closed and
 * the listener stays usable (call again for the next one); -EINTR; -EMFILE/-ENFILE/-ENOMEM
 * (the pending connection stays queued); -EINVAL. */
MP_API int mp_listener_accept(mp_listener *l, mp_conn **out, int timeout_ms);

/* mp_listener_address - the bound address, in the form mp_client_connect takes: the AF_UNIX
 * path, "a.b.c.d:port" or "[v6]:port" with the real port. Owned by the handle; NULL for NULL. */
MP_API const char *mp_listener_address(const mp_listener *l);

/* mp_listener_fileno - the listening socket, for poll/epoll or mp_conn_wait: readable when a
 * connection is pending. Owned by the handle (it is O_NONBLOCK). -EINVAL for NULL. */
MP_API int mp_listener_fileno(const mp_listener *l);

/* mp_listener_close - Python's close(): stop listening and free the handle. In the process
 * that opened it, also remove the AF_UNIX path and the private directory it made. Connections
 * already accepted stay open. Accepts NULL. */
MP_API void mp_listener_close(mp_listener *l);

/* mp_client_connect - Python's Client(address, authkey=...): connect to address and, with an
 * authkey, run the handshake. Fills *out with a duplex mp_conn. timeout_ms bounds the connect
 * and the handshake together (MP_NOWAIT: only what completes at once; a handshake never does,
 * -EAGAIN). Returns 0; -EINVAL for an unusable address (or port 0) or options; -ENOENT (no
 * such AF_UNIX path), -ECONNREFUSED, -EACCES (also wrong key), -EPROTO, -ECONNRESET,
 * -ETIMEDOUT/-EAGAIN, -EINTR, -ENETUNREACH etc. from connect(2), -EMFILE/-ENFILE, -ENOMEM. */
MP_API int mp_client_connect(mp_conn **out, const char *address, const mp_client_opts *opts,
                             int timeout_ms);

/* ============================================================================================
 * Queue (Python's multiprocessing.Queue, SimpleQueue and JoinableQueue)
 *
 * A FIFO of byte strings of any length, from zero bytes to far larger than the queue's ring,
 * shared by any number of producer and consumer processes. Everything lives in one anonymous
 * shared segment (a memfd): a header with robust locks and counters, and a byte ring. `put`
 * copies the message into the ring before it returns: there is no feeder thread, nothing to
 * flush at exit, and a message that was put survives its producer's exit.
 *
 * SimpleQueue is not a separate type: it is mp_queue_open(&q, NULL) (unbounded, no task
 * counting), used with MP_FOREVER. JoinableQueue is the option `joinable`.
 *
 * Messages larger than the ring (ring bytes minus 8 for the frame header) are streamed through
 * it in chunks while a consumer reads them; the producer and the consumer each hold the queue
 * for the whole message, so messages never interleave. Such messages cannot be moved without
 * waiting for the other side: with MP_NOWAIT, put returns -EAGAIN for them and get returns
 * -EAGAIN while one is at the head.
 *
 * Crossing fork(): a child forked after mp_queue_open inherits the handle (and its
 * mp_queue_fileno) and may put, get, poll, task_done, join and close it; all handles of one
 * queue, in every process, are equal. The handle's fds are O_CLOEXEC, so exec'd programs do
 * not inherit them. The queue lives until the last process holding it closes it (or exits).
 * Thread safety: a handle may be used from several threads at once.
 *
 * Crash safety: a process killed at any point inside a call never blocks or corrupts the
 * others. A producer killed while putting a message that fits the ring leaves no trace. A
 * consumer killed while getting it either got it (the head had moved) or left it in the queue
 * for the next consumer. A producer killed in the middle of a streamed message: consumers
 * waiting for the next chunk notice within about 50 ms, discard the partial message and go
 * on. A consumer killed (or timing out) in the middle of a streamed message loses that
 * message; the next consumer skips its remainder. A message lost this way counts as done for
 * mp_queue_join. A process killed between making the queue ready and waking its sleepers
 * delays them by at most about a second: a blocked call looks again after 50 ms, then at
 * doubling intervals up to 1 s. A signal handler that runs in the moment between two such
 * looks does not end the wait with -EINTR (the handler runs; the wait goes on).
 * ============================================================================================ */

typedef struct mp_queue mp_queue;

typedef struct mp_queue_opts {
    /* Python's maxsize: the most messages the queue holds; put blocks beyond it. 0 means no
     * limit by count (only the ring's bytes limit it). Less than 2^29. */
    size_t maxsize;
    /* Ring size in bytes, rounded up to a power of two, 64 B .. 4 GiB. 0 gives 4 MiB, which
     * holds three 1 MiB messages, so that a producer copies one while a consumer copies
     * another; messages larger than a quarter of the ring move at about half the speed.
     * The memory is reserved at open (-ENOSPC if /dev/shm is full). */
    size_t capacity;
    /* JoinableQueue: count unfinished tasks for mp_queue_task_done and mp_queue_join. */
    bool joinable;
    /* Give the queue a readiness fd (mp_queue_fileno). Queues without it pay nothing for it;
     * with it, a put that makes the queue non-empty and a get that empties it make one
     * eventfd syscall each. */
    bool fileno;
} mp_queue_opts;

/* mp_queue_open - create a queue; `opts` may be NULL (a SimpleQueue: no limits, 4 MiB ring).
 * Returns 0, -EINVAL (NULL out, maxsize or capacity out of range), -ENOMEM, -ENOSPC, -EMFILE. */
MP_API int mp_queue_open(mp_queue **out, const mp_queue_opts *opts);

/* mp_queue_put - append a copy of data[0..len) (len may be 0; data may then be NULL). Blocks
 * while the queue holds maxsize messages or the ring has no room. The deadline covers the
 * lock, the wait for room and, for a streamed message, the whole stream.
 * Returns 0; -EAGAIN with MP_NOWAIT when full (always for a message larger than the ring);
 * -ETIMEDOUT (nothing of the message is visible: a stream that timed out is discarded by
 * consumers); -EINTR when a signal handler interrupted a wait; -EINVAL for bad arguments;
 * -EBADMSG when the queue's shared header has been overwritten with impossible values (by a
 * wild write somewhere: no crash produces them); nothing is published then (a streamed
 * message is aborted, as on a timeout). */
MP_API int mp_queue_put(mp_queue *q, const void *data, size_t len, int timeout_ms);

/* mp_queue_get - remove the oldest message and copy it into buf (capacity cap bytes); its
 * length goes to *len. Blocks while the queue is empty. If the message is longer than cap:
 * -EMSGSIZE, *len is the length needed, and the message stays queued for a retry.
 * Returns 0; -EAGAIN with MP_NOWAIT when empty (or a streamed message is at the head);
 * -ETIMEDOUT; -EINTR; -EINVAL (NULL q or len, NULL buf with cap > 0, bad timeout); -EBADMSG
 * when the shared header or the frame at the head has been overwritten with impossible values
 * (as for put: nothing is taken, and every later get says the same). A timeout or signal in the
 * middle of a streamed message drops that message. */
MP_API int mp_queue_get(mp_queue *q, void *buf, size_t cap, size_t *len, int timeout_ms);

/* mp_queue_get_alloc - as mp_queue_get, into a new buffer stored in *data (release it with
 * mp_free; a zero-length message still gives a non-NULL buffer). Returns as mp_queue_get,
 * plus -ENOMEM (the message stays queued). */
MP_API int mp_queue_get_alloc(mp_queue *q, void **data, size_t *len, int timeout_ms);

/* mp_queue_qsize - the number of messages in the queue: exact at an instant during the call.
 * A streamed message counts from its first chunk until it is fully taken; one whose producer
 * died or gave up counts until a consumer reaches and discards it. -EINVAL for NULL. */
MP_API int mp_queue_qsize(mp_queue *q);

/* mp_queue_empty / mp_queue_full - 1 or 0, exact at an instant during the call. full means a
 * put would block now: maxsize messages are queued, or the ring has no room for even an empty
 * message. -EINVAL for NULL. */
MP_API int mp_queue_empty(mp_queue *q);
MP_API int mp_queue_full(mp_queue *q);

/* mp_queue_task_done - JoinableQueue: one message taken earlier has been processed. Each put
 * adds one unfinished task. Returns 0; -EINVAL if called more often than messages were put
 * (Python's ValueError) or the queue is not joinable. Never blocks. */
MP_API int mp_queue_task_done(mp_queue *q);

/* mp_queue_join - JoinableQueue: wait until every message put has been task_done (or lost to
 * a crash). Returns 0; -EAGAIN (MP_NOWAIT) or -ETIMEDOUT while tasks remain; -EINTR; -EINVAL
 * if the queue is not joinable. */
MP_API int mp_queue_join(mp_queue *q, int timeout_ms);

/* mp_queue_fileno - (beyond Python) an fd that polls readable (POLLIN) while the queue holds a
 * message, for poll/epoll/select or mp_conn_wait: level-triggered, any number of consumers may
 * poll it. Only for queues opened with `.fileno = true` (-EINVAL otherwise, or for NULL). It is
 * the same fd in every process that inherited the queue and is owned by the handle: poll it,
 * never read, write or close it. A put raises it before its message becomes visible; the get
 * that leaves the queue empty clears it. It is never missing while a message is queued, even
 * after crashes. It can be readable with nothing queued: while a put is about to publish (a
 * get with MP_NOWAIT then waits for that put, at most 50 ms, rather than fail), when another
 * consumer took the message first, or after a process was killed inside a call; a get that
 * finds the queue empty (-EAGAIN) clears such a readiness, so a poller that answers readiness
 * with get(MP_NOWAIT) never spins. */
MP_API int mp_queue_fileno(mp_queue *q);

/* mp_queue_close - release this process's mapping and fd and free the handle (NULL is fine).
 * Other processes keep using the queue. Messages still queued are freed with the last handle. */
MP_API void mp_queue_close(mp_queue *q);

/* ============================================================================================
 * Value / Array (Python's multiprocessing.Value, Array, RawValue, RawArray: sharedctypes)
 *
 * A value or a fixed-length array of one C type in shared memory (a block of the library's
 * shared arena, not one mapping each). The type is a Python typecode, passed as the char itself:
 *   'c' char   'b' signed char   'B' unsigned char   'h' short   'H' unsigned short
 *   'i' int    'I' unsigned int  'l' long            'L' unsigned long
 *   'q' long long   'Q' unsigned long long   'f' float   'd' double   '?' bool
 * or 0 with mp_value_opts.size for any other C type (Python's Value(SomeStructure)). Contents
 * start zeroed, or as a copy of mp_value_opts.init.
 *
 * Locking, as Python's lock= argument (mp_value_opts): by default the object gets its own
 * recursive lock (an mp_lock, returned by mp_value_get_lock / mp_array_get_lock and usable with
 * the sync API); `.raw` gives an object with no lock (RawValue/RawArray); `.lock` shares an
 * existing Lock or RLock, which must stay open as long as the object. Every get/set/slice/string
 * call takes the lock (if any) for that one access, blocking as long as it takes, unless the
 * calling thread holds it already (then the access is part of the caller's critical section,
 * with a plain Lock too). It returns MP_OWNERDEAD instead of 0 when the lock's previous holder
 * died holding it (the access was done; what the dead process guarded may be half updated). A
 * compound update such as Python's `v.value += 1` is two accesses: hold the lock around both,
 * or use the atomic calls.
 *
 * Atomics (beyond Python): for the integer typecodes b B h H i I l L q Q, fetch-add, exchange
 * and compare-exchange act on the shared memory atomically and take no lock, even on a locked
 * object. They are the race-free replacement for `v.value += 1`. Operands are int64_t: an
 * 'L'/'Q' value above INT64_MAX travels as its bit pattern (cast the int64_t to uint64_t). Every
 * library access to an element of 1, 2, 4 or 8 bytes (any typecode) is a single atomic load or
 * store of that size, so mixing locked, lock-free and atomic calls on one object is never a
 * data race; direct access through mp_value_ptr is the caller's to synchronise.
 *
 * Errors: MP_ETYPE (Python's TypeError) for an unknown typecode, an atomic on a non-integer
 * type, string calls on an array that is not 'c', and a caller's buffer whose size does not
 * match the element type; -ERANGE (IndexError) for an index out of range; -EINVAL (ValueError)
 * for a slice assignment of the wrong length, a string too long, and bad arguments;
 * -EOVERFLOW for an operand the type cannot represent. On any error nothing is written.
 *
 * Crossing fork(): objects are inherited by children forked after the open, which use their copy
 * of the handle (as in Python, there is no other way to share them). Only the process that
 * opened an object frees it, in its close, which must come after every other process has
 * finished with it (join the children first, as in Python); a close in any other process frees
 * only its handle. A locked object used after its creator freed it gets -EBADF from its lock's
 * generation check (unless the memory now holds unrelated data); a raw one has no such check.
 * Thread safety: objects may be used from several threads of a process as well as from several
 * processes.
 * ============================================================================================ */

typedef struct mp_value mp_value;
typedef struct mp_array mp_array;

typedef struct mp_value_opts {
    /* Python's lock=False: no lock (RawValue/RawArray). Not together with `lock`. */
    bool raw;
    /* Python's lock=<lock>: use this Lock or RLock (not closed with the object). NULL with raw
     * false: the object gets its own recursive lock (Python's default, lock=True). */
    mp_lock *lock;
    /* With typecode 0: the size in bytes of the C type (> 0). With a typecode: 0, or that
     * typecode's size (checked). */
    size_t size;
    /* Initial contents, copied: one element for a value, `length` elements for an array (Python's
     * Value(tc, x) and Array(tc, [x, y, ...])). NULL: zero-filled. */
    const void *init;
} mp_value_opts;

/* mp_value_open - a shared value of `typecode` (Python's Value(tc), or RawValue(tc) with
 * opts->raw). `opts` may be NULL. Never blocks. Returns 0; MP_ETYPE (unknown typecode); -EINVAL
 * (NULL out, raw with a lock, a size that does not fit the typecode, typecode 0 without a
 * size); -ENOMEM, -ENOSPC, -EMFILE. */
MP_API int mp_value_open(mp_value **out, char typecode, const mp_value_opts *opts);

/* mp_value_close - release the handle (NULL is fine); in the opening process also free the
 * value and its own lock (not a lock given in opts). */
MP_API void mp_value_close(mp_value *v);

/* mp_value_get / mp_value_set - copy the value to *out / from *in under the lock (Python's
 * .value). `size` must be the element size (sizeof the C type; the size given at open for
 * typecode 0): MP_ETYPE otherwise. Returns 0 or MP_OWNERDEAD; MP_ETYPE, -EINVAL (NULL), or
 * -EBADF (the lock was freed by its creator). */
MP_API int mp_value_get(mp_value *v, void *out, size_t size);
MP_API int mp_value_set(mp_value *v, const void *in, size_t size);

/* mp_value_fetch_add - atomically add `delta` (wrapping modulo the type's width, as C's atomics)
 * and store the previous value in *old (may be NULL). No lock, never blocks. Returns 0, MP_ETYPE
 * (not an integer typecode), -EINVAL. */
MP_API int mp_value_fetch_add(mp_value *v, int64_t delta, int64_t *old);

/* mp_value_exchange - atomically store `desired` and return the previous value in *old (may be
 * NULL; with NULL this is an atomic store). Returns 0, MP_ETYPE, -EOVERFLOW (desired does not
 * fit the type), -EINVAL. */
MP_API int mp_value_exchange(mp_value *v, int64_t desired, int64_t *old);

/* mp_value_compare_exchange - atomically: if the value equals *expected, store `desired` and
 * return 1; otherwise store the current value in *expected and return 0. Returns MP_ETYPE,
 * -EOVERFLOW (*expected or desired does not fit the type), -EINVAL on error. */
MP_API int mp_value_compare_exchange(mp_value *v, int64_t *expected, int64_t desired);

/* mp_value_get_lock - the object's lock (Python's get_lock()): its own, or the one given in
 * opts; NULL for a raw value. Owned by the value: do not close it. */
MP_API mp_lock *mp_value_get_lock(const mp_value *v);

/* mp_value_ptr - the shared memory holding the value (Python's get_obj()), for callers that
 * lock (or use atomics) themselves. Aligned to at least 8 bytes, and to 16 for a C type of
 * more than 8 bytes. Valid until the creator's close. NULL for NULL. */
MP_API void *mp_value_ptr(const mp_value *v);

/* mp_array_open - a shared array of `length` elements of `typecode` (Python's Array(tc, n) or,
 * with opts->init pointing at `length` elements, Array(tc, [...]); RawArray with opts->raw).
 * A length of 0 is allowed, as in Python. Returns as mp_value_open, and -ENOMEM when the size
 * overflows. */
MP_API int mp_array_open(mp_array **out, char typecode, size_t length, const mp_value_opts *opts);

/* mp_array_close - as mp_value_close. */
MP_API void mp_array_close(mp_array *a);

/* mp_array_len - the number of elements (Python's len()); 0 for NULL. */
MP_API size_t mp_array_len(const mp_array *a);

/* mp_array_get / mp_array_set - copy element `index` to *out / from *in under the lock (Python's
 * a[i] and a[i] = x); a negative index counts from the end. Returns 0 or MP_OWNERDEAD; -ERANGE
 * (index out of range), else as mp_value_get. */
MP_API int mp_array_get(mp_array *a, ptrdiff_t index, void *out, size_t size);
MP_API int mp_array_set(mp_array *a, ptrdiff_t index, const void *in, size_t size);

/* mp_array_get_slice - copy a[start:stop] into out under the lock. start and stop are Python's:
 * negative ones count from the end, both are clamped to [0, len], and stop <= start is empty.
 * `cap` is out's size in bytes. Returns the number of elements copied; -EMSGSIZE when cap is
 * too small (nothing copied); -EINVAL (NULL), the lock's errors. The whole array, Python's
 * a[:] (and .raw for a 'c' array), is mp_array_get_slice(a, 0, PTRDIFF_MAX, ...). */
MP_API ssize_t mp_array_get_slice(mp_array *a, ptrdiff_t start, ptrdiff_t stop, void *out,
                                  size_t cap);

/* mp_array_set_slice - a[start:stop] = in, under the lock; start and stop as above. `size` (in
 * bytes) must be exactly the slice's length times the element size: -EINVAL otherwise (Python's
 * "Can only assign sequence of same size"). Python's .raw = b'..' for a 'c' array is
 * mp_array_set_slice(a, 0, len, ...). Returns 0 or MP_OWNERDEAD, -EINVAL, the lock's errors. */
MP_API int mp_array_set_slice(mp_array *a, ptrdiff_t start, ptrdiff_t stop, const void *in,
                              size_t size);

/* mp_array_get_string - Python's .value of a 'c' array: the bytes up to the first NUL (or all of
 * them), copied into buf with a NUL appended, under the lock. Returns the length; -EMSGSIZE
 * when cap < length + 1 (nothing copied); MP_ETYPE (not a 'c' array); -EINVAL; the lock's
 * errors. */
MP_API ssize_t mp_array_get_string(mp_array *a, char *buf, size_t cap);

/* mp_array_set_string - Python's .value = s for a 'c' array: copy len bytes and, if shorter than
 * the array, a terminating NUL; the rest keeps its contents. Returns 0 or MP_OWNERDEAD; -EINVAL
 * when len > mp_array_len() (Python's "byte string too long") or s is NULL with len > 0;
 * MP_ETYPE; the lock's errors. */
MP_API int mp_array_set_string(mp_array *a, const char *s, size_t len);

/* mp_array_fetch_add / mp_array_exchange / mp_array_compare_exchange - the atomics of
 * mp_value_fetch_add etc. on element `index` (-ERANGE when out of range). */
MP_API int mp_array_fetch_add(mp_array *a, ptrdiff_t index, int64_t delta, int64_t *old);
MP_API int mp_array_exchange(mp_array *a, ptrdiff_t index, int64_t desired, int64_t *old);
MP_API int mp_array_compare_exchange(mp_array *a, ptrdiff_t index, int64_t *expected,
                                     int64_t desired);

/* mp_array_get_lock / mp_array_ptr - as mp_value_get_lock / mp_value_ptr (the first element). */
MP_API mp_lock *mp_array_get_lock(const mp_array *a);
MP_API void *mp_array_ptr(const mp_array *a);

/* ============================================================================================
 * Shared memory (Python's multiprocessing.shared_memory: SharedMemory and ShareableList)
 *
 * A named POSIX shared memory segment under /dev/shm. Names are Python's: the string that
 * mp_shm_name() returns is what Python's SharedMemory(name) takes and what its .name reports
 * (no leading '/'), and the other way round, so either language may create and the other attach.
 *
 * Ownership (what Python leaves to its resource tracker, made explicit): only the process that
 * created a name unlinks it, or a handle attached with `owner`. Attaching never registers
 * anything and the library never prints, so there are no "leaked shared_memory" warnings and a
 * segment is never unlinked behind a process that still uses it. A creator that dies without
 * unlinking leaves its segment behind, as in Python; segments created with `sweep` are then
 * removed by the next mp_shm_sweep() in any process.
 *
 * Crossing fork(): the child inherits the handle, its mapping and its fd; it may read and write
 * the memory and must close its copy with mp_shm_close(). mp_shm_unlink() from the child gives
 * -EPERM: only the process that opened the handle may unlink through it.
 * Thread safety: a handle may be used from several threads. The memory itself is not
 * synchronised, as in Python: guard it with a lock where writers race.
 * ============================================================================================ */

typedef struct mp_shm mp_shm;

/* The longest name (without the leading '/'): the file name limit of /dev/shm. */
#define MP_SHM_NAME_MAX 255

typedef struct mp_shm_opts {
    /* Python's name: any bytes but '/' (one leading '/' is accepted and dropped), not empty,
     * not "." or "..", at most MP_SHM_NAME_MAX bytes (-ENAMETOOLONG). NULL with create
     * generates a unique name "mpsm_<k|s>_<pid>_<start>_<pidns>_<random>" (k: kept, s: swept),
     * retrying on a collision as Python does. */
    const char *name;
    /* Create a new segment (O_EXCL, mode 0600) instead of attaching to an existing one. */
    bool create;
    /* create: the size in bytes, > 0; the pages are reserved up front (posix_fallocate), so a
     * full /dev/shm fails here with -ENOSPC instead of SIGBUS later. attach: ignored, as in
     * Python; the real size is the segment's (mp_shm_size). */
    size_t size;
    /* create with a generated name only: mp_shm_sweep() may remove the name once the creating
     * process has died. */
    bool sweep;
    /* attach only: this process may unlink the name through this handle, as a creator may. */
    bool owner;
} mp_shm_opts;

/* mp_shm_open - create or attach a named segment and map it whole (Python's
 * SharedMemory(name, create, size)). Never blocks.
 * Returns 0; -EINVAL (NULL out or opts, attach without a name, size 0 on create, a bad name,
 * sweep without create or with a given name, owner with create, attach to an empty segment);
 * -ENAMETOOLONG; -ENOENT (attach:
 * no such name); -EEXIST (create: the name is taken); -ENOSPC (create: /dev/shm is full);
 * -EACCES, -EMFILE, -ENOMEM. On any error nothing is left behind and nothing was changed. */
MP_API int mp_shm_open(mp_shm **out, const mp_shm_opts *opts);

/* mp_shm_buf / mp_shm_size - the mapping (read/write, page aligned) and its size in bytes: what
 * was asked at create, the segment's full size when attached. NULL / 0 for a NULL handle. */
MP_API void *mp_shm_buf(const mp_shm *s);
MP_API size_t mp_shm_size(const mp_shm *s);

/* mp_shm_name - the name as Python reports it, without the leading '/'. Valid until close;
 * "" for a NULL handle. */
MP_API const char *mp_shm_name(const mp_shm *s);

/* mp_shm_unlink - remove the name, so that no one can attach any more (Python's unlink()).
 * Mappings stay valid until each process closes them. Only the process that opened the handle
 * with `create` or `owner` may unlink (not its forked children): -EPERM otherwise. Returns 0;
 * -ENOENT when the name is already gone (a second unlink, or a sweep) or now names another
 * segment, which is then left alone; -EINVAL for NULL. */
MP_API int mp_shm_unlink(mp_shm *s);

/* mp_shm_close - unmap, close the fd and free the handle (Python's close()); the name stays
 * unless unlinked. Accepts NULL. The pointer and mp_shm_buf() are dead afterwards. */
MP_API void mp_shm_close(mp_shm *s);

/* mp_shm_sweep - remove the names of segments created with `sweep` whose creating process has
 * died (it checks the pid and the process start time, so a reused pid is still seen as dead;
 * segments made in another pid namespace are skipped, and a creator that has died but is not
 * reaped yet still counts as alive). Processes that have such a segment mapped keep their
 * mapping. Returns how many names it removed, or -errno if /dev/shm or /proc
 * cannot be read. */
MP_API int mp_shm_sweep(void);

/* ---- ShareableList ------------------------------------------------------------------------
 * A fixed-length list of int64, double, bool, str, bytes and None items in one segment, in
 * Python's exact layout (native byte order): an int64 count N, N+1 int64 slot offsets, the
 * slots (8 bytes for int/float/bool/None, 8*(len/8+1) bytes for a str or bytes item), N 8-byte
 * struct format strings and N one-byte type codes. A list made here opens with Python's
 * ShareableList(name=...) and the other way round; mp_shlist_shm() gives the segment for its
 * name and for unlink. Python's quirks are kept for compatibility: a str/bytes item reads back
 * without its trailing NUL bytes, an item's type may change on assignment but never its slot
 * size. As in Python, items are not synchronised between writers. Crossing fork() and thread
 * safety are as for mp_shm. */

typedef struct mp_shlist mp_shlist;

typedef enum mp_shlist_type {
    MP_SHLIST_NONE = 0, /* Python's None */
    MP_SHLIST_INT,      /* int64_t v.i */
    MP_SHLIST_FLOAT,    /* double v.f */
    MP_SHLIST_BOOL,     /* bool v.b */
    MP_SHLIST_STR,      /* UTF-8 text v.s.ptr/v.s.len (not NUL-terminated on input) */
    MP_SHLIST_BYTES,    /* bytes v.s.ptr/v.s.len */
} mp_shlist_type;

/* One item. Initialise with designated initialisers: {.type = MP_SHLIST_INT, .v.i = 42}. */
typedef struct mp_shlist_item {
    mp_shlist_type type;
    union {
        int64_t i;
        double f;
        bool b;
        struct {
            const void *ptr;
            size_t len;
        } s;
    } v;
} mp_shlist_item;

/* mp_shlist_open - create a list holding a copy of items[0..n) (Python's
 * ShareableList(sequence, name=...)), or with opts->create false attach to an existing one by
 * name (ShareableList(name=...); items must be NULL and n 0). opts is as for mp_shm_open except
 * that size must be 0 (it follows from the items). Never blocks.
 * Returns 0, or mp_shm_open's errors and: -EINVAL (items with attach, NULL items with n > 0, a
 * str that is not valid UTF-8), MP_ETYPE (an unknown item type), -E2BIG (a str/bytes item
 * longer than Python's 8-character format allows, 9999991 bytes), -EPROTO (attach: the segment
 * does not hold a valid list). On error nothing is left behind. */
MP_API int mp_shlist_open(mp_shlist **out, const mp_shm_opts *opts, const mp_shlist_item *items,
                          size_t n);

/* mp_shlist_len - the number of items (Python's len()); 0 for NULL. */
MP_API size_t mp_shlist_len(const mp_shlist *l);

/* mp_shlist_get - read item `index` into *out; negative indexes count from the end, as in
 * Python. A str or bytes value is copied into buf with a NUL appended (so cap must be at least
 * len + 1) and out->v.s.ptr points at buf. Returns 0; -ERANGE (bad index); -EMSGSIZE when cap is
 * too small, with out->type and out->v.s.len set to the value's type and length; -EPROTO when
 * the slot holds something Python cannot have written; -EINVAL for NULL l or out. */
MP_API int mp_shlist_get(const mp_shlist *l, ptrdiff_t index, mp_shlist_item *out, void *buf,
                         size_t cap);

/* mp_shlist_set - store *item at `index` (Python's l[index] = v). The type may change; the slot
 * size never does. Returns 0; -ERANGE (bad index); -ENOSPC when a str/bytes value is longer
 * than the slot (Python's "exceeds available storage"), the old value kept; MP_ETYPE (unknown
 * type); -EINVAL (NULL arguments, a str that is not valid UTF-8). */
MP_API int mp_shlist_set(mp_shlist *l, ptrdiff_t index, const mp_shlist_item *item);

/* mp_shlist_count / mp_shlist_index - how many items equal *value, and the first index of one
 * (Python's count() and index()), with Python's ==: int, float and bool compare as numbers
 * (1 == 1.0 == True), str and bytes by content, None only with None, NaN with nothing.
 * mp_shlist_index returns -ENOENT when there is none (Python's ValueError). Both return
 * MP_ETYPE for an unknown type, -EINVAL for NULL or a str that is not valid UTF-8, -EPROTO for
 * a corrupted slot. */
MP_API ssize_t mp_shlist_count(const mp_shlist *l, const mp_shlist_item *value);
MP_API ssize_t mp_shlist_index(const mp_shlist *l, const mp_shlist_item *value);

/* mp_shlist_format - Python's .format, the struct format of all items, e.g. "8s8sqdxxxxxx?x",
 * copied NUL-terminated into buf. It is never longer than 8 * mp_shlist_len(). Returns its
 * length; -EMSGSIZE if cap is too small; -EPROTO for a corrupted format; -EINVAL for NULL. */
MP_API ssize_t mp_shlist_format(const mp_shlist *l, char *buf, size_t cap);

/* mp_shlist_shm - the segment behind the list (Python's .shm), for its name and for
 * mp_shm_unlink(). Owned by the list: do not close it. NULL for NULL. */
MP_API mp_shm *mp_shlist_shm(const mp_shlist *l);

/* mp_shlist_close - close the list and its segment in this process and free the handle.
 * Accepts NULL. Does not unlink. */
MP_API void mp_shlist_close(mp_shlist *l);

/* ============================================================================================
 * Manager (Python's multiprocessing.Manager(): shared list, dict and Namespace, and the
 * SyncManager's Value, Array, Queue and sync objects by name)
 *
 * The containers live in a shared-memory heap, not behind a server: any process forked after
 * mp_manager_open() operates on them directly, under each container's robust lock, with no
 * round trip (Python's manager answers every call over a socket). mp_manager_open() also forks
 * a small manager process, as Python's server process, that keeps the store's lifetime: when the
 * owner shuts the manager down, or dies, it removes the heap's name from /dev/shm and exits.
 * (The other direction, a manager handle whose containers live in a Python manager's server,
 * is mp_manager_connect(): see "driving a Python manager from C" below. What this comment says
 * about the heap does not apply to it.)
 *
 * Items are copied in and out, as Python's proxies return copies: changing a string returned by
 * mp_list_get() changes nothing in the list (Python's `d['k'].append(2)` pitfall). To share a
 * mutable inner object, store a container in a container (an item of type MP_ITEM_LIST, _DICT or
 * _NAMESPACE): what comes back is a new handle on the same shared container.
 *
 * Lifetime: containers live as long as their manager (they are not reference counted; closing a
 * handle frees only the handle). After the manager has been shut down, or its owner has died,
 * every operation returns -EBADF (Python's proxies raise BrokenPipeError/EOFError). Container
 * handles keep this process's mapping of the heap alive, so they may be closed before or after
 * the manager handle.
 *
 * Crossing fork(): a child inherits the manager handle and every container handle and may use
 * them as the parent does (and open new containers); it closes its copies with the _close calls.
 * Only the process that opened the manager shuts it down. A program started with exec inherits
 * nothing (every fd is O_CLOEXEC): it attaches by the manager's name instead.
 *
 * Blocking: container operations wait only for the container's lock, which others hold for
 * the length of one operation; there is no timeout parameter. Threads of one process may share
 * handles.
 *
 * Crash behaviour: a process killed in the middle of any operation (including growth of the
 * heap) leaves the container consistent: the next locker completes the interrupted change from
 * a small redo record, or finds it not yet begun. Such a crash may leak a few blocks of the heap
 * (never freed before the manager goes), never corrupts it.
 *
 * Errors, as Python's exceptions: -ERANGE (IndexError), -ENOENT (KeyError, and the ValueError
 * of list.remove/index), MP_ETYPE (TypeError: an unhashable key, an unorderable sort), -EBADF
 * (the manager was shut down), -EINVAL (NULL arguments, an unknown item type, a str that is not
 * valid UTF-8, a container of another manager), -ENOMEM (the heap's reserve is used up, or no
 * memory for a copy handed to the caller), -ENOSPC (/dev/shm is full). A failed call changes
 * nothing (mp_dict_update running out of heap is the one exception, see there).
 *
 * Reaching the heap: processes forked (directly or not) from the owner after mp_manager_open(),
 * and any process of the same user that attaches by the manager's name (mp_manager_attach),
 * for example one started with exec. Both find containers and objects by name.
 *
 * Managed objects by name (Python's SyncManager.Value, Array, Queue, JoinableQueue, Lock, RLock,
 * Semaphore, BoundedSemaphore, Condition, Event, Barrier, list, dict, Namespace): each
 * mp_manager_<type>() call returns the object bound to `name`, creating it in the heap and
 * binding the name first if the name is free (create-or-get, atomic across processes: two
 * processes asking for a new name get one object). The creation arguments (initial value,
 * parties, capacity...) are used only by the call that creates it. The handles are the
 * ordinary ones (mp_lock *, mp_queue *, mp_value *...): every operation of their section works
 * unchanged, with the same guarantees (robust locks, crash-safe queues), in forked and attached
 * processes alike. Per-process state stays per process: a barrier's action and default timeout
 * and a condition's lock are given to the handle in each process, never stored in the heap.
 * Names are non-empty UTF-8 strings, one namespace per manager for all types.
 *
 * Lifetime of managed objects: closing a handle, in any process (the creator's too), frees only
 * the handle, unlike the sync and value sections' own _open objects. mp_manager_delete() unbinds
 * a name; the object stays usable through handles already open and its memory is reclaimed
 * with the heap (so deleting is always safe; a program that creates and deletes many objects
 * grows the heap). Like container handles, the handles of typed objects keep this process's
 * mapping of the heap alive, so they may be closed before or after the manager handle. After
 * shutdown (or the owner's death) the mp_manager_ calls return -EBADF and the sync objects (and
 * each Value/Array's own lock) are marked dead, so their operations return -EBADF; a queue or a
 * raw Value/Array has no such mark and goes on working among the processes that still hold it.
 * Waiters already asleep on a sync object return at their timeout or when woken.
 *
 * Attached processes: a process that attached holds one fd and one mapping of the heap, nothing
 * else; it may die at any point without leaving anything behind (no name, no process), and with
 * the same crash guarantees as a forked child.
 * ============================================================================================ */

typedef struct mp_manager mp_manager;
typedef struct mp_list mp_list;
typedef struct mp_dict mp_dict;
typedef struct mp_namespace mp_namespace;

typedef enum mp_item_type {
    MP_ITEM_NONE = 0,  /* Python's None */
    MP_ITEM_BOOL,      /* v.b */
    MP_ITEM_INT,       /* v.i, int64 */
    MP_ITEM_FLOAT,     /* v.f */
    MP_ITEM_STR,       /* UTF-8 text v.s.ptr / v.s.len (on input need not be NUL-terminated) */
    MP_ITEM_BYTES,     /* bytes v.s.ptr / v.s.len */
    MP_ITEM_LIST,      /* v.list: a shared list of the same manager */
    MP_ITEM_DICT,      /* v.dict */
    MP_ITEM_NAMESPACE, /* v.ns */
} mp_item_type;

/* One item. On input the pointers are borrowed for the call. Items the library fills for the
 * caller own what they point to (a str/bytes copy with a NUL appended, or a new container
 * handle) and are released with mp_item_clear(); item arrays with mp_items_free(). */
typedef struct mp_item {
    mp_item_type type;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *ptr;
            size_t len;
        } s;
        mp_list *list;
        mp_dict *dict;
        mp_namespace *ns;
    } v;
} mp_item;

static inline mp_item
mp_item_none(void)
{
    mp_item it;
    it.type = MP_ITEM_NONE;
    it.v.i = 0;
    return it;
}
static inline mp_item
mp_item_bool(bool b)
{
    mp_item it;
    it.type = MP_ITEM_BOOL;
    it.v.b = b;
    return it;
}
static inline mp_item
mp_item_int(int64_t i)
{
    mp_item it;
    it.type = MP_ITEM_INT;
    it.v.i = i;
    return it;
}
static inline mp_item
mp_item_float(double f)
{
    mp_item it;
    it.type = MP_ITEM_FLOAT;
    it.v.f = f;
    return it;
}
/* mp_item_str - a NUL-terminated UTF-8 string (borrowed). */
MP_API mp_item mp_item_str(const char *s);
static inline mp_item
mp_item_bytes(const void *p, size_t len)
{
    mp_item it;
    it.type = MP_ITEM_BYTES;
    it.v.s.ptr = (const char *)p;
    it.v.s.len = len;
    return it;
}
static inline mp_item
mp_item_list(mp_list *l)
{
    mp_item it;
    it.type = MP_ITEM_LIST;
    it.v.list = l;
    return it;
}
static inline mp_item
mp_item_dict(mp_dict *d)
{
    mp_item it;
    it.type = MP_ITEM_DICT;
    it.v.dict = d;
    return it;
}
static inline mp_item
mp_item_namespace(mp_namespace *ns)
{
    mp_item it;
    it.type = MP_ITEM_NAMESPACE;
    it.v.ns = ns;
    return it;
}

/* mp_item_clear - release what an item filled by the library owns and make it None. Accepts
 * NULL. Never call it on an item whose pointers the caller set. */
MP_API void mp_item_clear(mp_item *it);

/* mp_items_free - clear n items of an array the library allocated, then free the array. */
MP_API void mp_items_free(mp_item *items, size_t n);

/* mp_item_repr - Python's repr() of the item into a new NUL-terminated string (free it with
 * mp_free): 'text' or "it's" with Python's escapes, b'\x00', 42, True, None, floats in the
 * shortest form that reads back to the same double (0.1, 1e+16, inf, nan), containers with
 * their contents ([1, 'a'], {'k': [2]}, Namespace(a=1)). Non-ASCII text is copied as UTF-8 as
 * it is (Python escapes only its non-printable characters, so the two agree for printable text).
 * A container met again inside itself prints as [...] / {...}. Returns the length, or -EINVAL,
 * -ENOMEM, -EBADF. */
MP_API ssize_t mp_item_repr(const mp_item *it, char **out);

typedef struct mp_manager_opts {
    /* The heap's name in /dev/shm (Python's rules, as mp_shm_opts.name), or NULL for a
     * generated one that mp_shm_sweep() may remove once its creator and manager have died. */
    const char *name;
    /* The most the heap may grow to, in bytes (its reserved address range in every process).
     * 0: 1 GiB. */
    size_t max_size;
    /* Serve the containers to Python clients in CPython's manager protocol (Python's
     * BaseManager(address=..., authkey=...).get_server().serve_forever()): a listener address
     * as mp_listener_open takes it ("127.0.0.1:0", "/run/app.sock"; NULL: not served), and its
     * options, where an authkey is required (CPython's server always authenticates). A zero
     * handshake_timeout_ms is 2 s here: one process serves every client. */
    const char *address;
    const mp_listener_opts *listener;
} mp_manager_opts;

/* mp_manager_open - create the shared heap and start the manager process (Python's
 * Manager().start()). Does not wait for the manager process. `opts` may be NULL.
 * With opts->address, the listener is bound here (before the call returns clients may
 * connect; they are answered once the manager process runs) and the manager process serves
 * it: see "Serving Python clients" below.
 * Returns 0; -EINVAL (also an address without an authkey), -EEXIST (the name is taken),
 * -ENOSPC, -ENOMEM, -EMFILE, -EAGAIN (fork), and mp_listener_open's errors (-EADDRINUSE...).
 * On error nothing is left behind. */
MP_API int mp_manager_open(mp_manager **out, const mp_manager_opts *opts);

/* mp_manager_shutdown - Python's shutdown(): every container of this manager, in every
 * process, answers -EBADF from now on; the manager process is stopped and reaped and the name
 * removed. Only the process that opened the manager may do it: -EPERM elsewhere. Blocks until
 * the manager process has gone (at most about a second: it is killed if it does not exit).
 * Returns 0, -EPERM, -EINVAL; a second shutdown returns 0. */
MP_API int mp_manager_shutdown(mp_manager *m);

/* mp_manager_close - in the opening process shut the manager down first; then release this
 * process's handle (of an attached manager too). Accepts NULL. The heap stays mapped in this
 * process until its last container or managed-object handle is closed too. */
MP_API void mp_manager_close(mp_manager *m);

/* mp_manager_attach - attach this process to the manager whose mp_manager_name() is `name`
 * (a leading '/' is allowed), typically from a program started with exec (Python's
 * BaseManager(address).connect()). Waits up to timeout_ms for the manager to appear (it polls
 * every 10 ms: nothing can be waited on for a name that does not exist yet). The handle works
 * as the owner's except that mp_manager_shutdown() is -EPERM; mp_manager_close() releases it.
 * Returns 0; -ENOENT (no manager by that name by the deadline; at once with MP_NOWAIT), -EBADF
 * (it is shutting down), -EINVAL (NULL, a bad name or timeout), -EACCES, -ENOMEM, -EMFILE. */
MP_API int mp_manager_attach(mp_manager **out, const char *name, int timeout_ms);

/* mp_manager_name - the heap's name without the leading '/' ("" for NULL). */
MP_API const char *mp_manager_name(const mp_manager *m);

/* mp_manager_pid - the manager process's pid (Python's _process.pid), or -EINVAL for NULL. */
MP_API pid_t mp_manager_pid(const mp_manager *m);

/* ---- managed objects by name ------------------------------------------------------------------
 * Each returns the object bound to `name` in m, creating and binding it when the name is free
 * (see the section comment). Never blocks beyond the name table's lock. Errors, for all:
 * -EINVAL (NULL out/m/name, an empty name, invalid UTF-8, bad creation arguments as the type's
 * own _open), MP_ETYPE (the name is bound to an object of another type: a Lock is not an
 * RLock, a Queue not a JoinableQueue, a Semaphore not a BoundedSemaphore, a Value/Array of
 * another typecode or element size), -EBADF (the manager was shut down), -ENOMEM (the heap's
 * reserve, or the handle), -ENOSPC (/dev/shm full). On error *out is NULL and nothing is bound.
 * mp_manager_list/dict/namespace start empty; close with mp_list_close etc. */
MP_API int mp_manager_list(mp_list **out, mp_manager *m, const char *name);
MP_API int mp_manager_dict(mp_dict **out, mp_manager *m, const char *name);
MP_API int mp_manager_namespace(mp_namespace **out, mp_manager *m, const char *name);

/* mp_manager_value / mp_manager_array - Python's manager.Value(typecode, value) and
 * Array(typecode, seq), as mp_value_open / mp_array_open: own recursive lock by default or
 * opts->raw; opts->lock must be NULL (-EINVAL: a lock handle belongs to one process). */
MP_API int mp_manager_value(mp_value **out, mp_manager *m, const char *name, char typecode,
                            const mp_value_opts *opts);
MP_API int mp_manager_array(mp_array **out, mp_manager *m, const char *name, char typecode,
                            size_t length, const mp_value_opts *opts);

/* mp_manager_queue - Python's manager.Queue() / JoinableQueue() (opts->joinable), as
 * mp_queue_open; header and ring live in the heap (the ring takes the next power of two above
 * its capacity there, because of the heap's size classes). */
MP_API int mp_manager_queue(mp_queue **out, mp_manager *m, const char *name,
                            const mp_queue_opts *opts);

/* mp_manager_lock - Python's manager.Lock() / RLock() (opts->recursive). */
MP_API int mp_manager_lock(mp_lock **out, mp_manager *m, const char *name, const mp_lock_opts *opts);

/* mp_manager_semaphore - Python's manager.Semaphore(value) / BoundedSemaphore (opts->bounded). */
MP_API int mp_manager_semaphore(mp_semaphore **out, mp_manager *m, const char *name,
                                unsigned value, const mp_semaphore_opts *opts);

/* mp_manager_condition - Python's manager.Condition(lock): the condition's own recursive lock,
 * or opts->lock, the lock this process's handle uses (give every process a handle on the same
 * lock, e.g. one from mp_manager_lock). */
MP_API int mp_manager_condition(mp_condition **out, mp_manager *m, const char *name,
                                const mp_condition_opts *opts);

/* mp_manager_event - Python's manager.Event(). */
MP_API int mp_manager_event(mp_event **out, mp_manager *m, const char *name);

/* mp_manager_barrier - Python's manager.Barrier(parties, action, timeout): opts (action and
 * default timeout) belong to this process's handle; other processes pass their own. */
MP_API int mp_manager_barrier(mp_barrier **out, mp_manager *m, const char *name, unsigned parties,
                              const mp_barrier_opts *opts);

/* mp_manager_delete - unbind `name` (any type). The object lives on for handles already open;
 * its memory is reclaimed with the heap. A new object may then be bound to the name.
 * Returns 0, -ENOENT (no such name), -EINVAL, -EBADF. */
MP_API int mp_manager_delete(mp_manager *m, const char *name);
/* Serving Python clients. A served manager's process answers CPython's manager protocol, so an
 * unmodified Python program uses the very containers C processes use:
 *     class M(BaseManager): pass
 *     M.register('list', proxytype=ListProxy); M.register('dict', proxytype=DictProxy)
 *     M.register('Namespace', proxytype=NamespaceProxy); M.register('shared', proxytype=...)
 *     m = M(address=('127.0.0.1', port), authkey=b'key'); m.connect()
 * (or SyncManager(address=..., authkey=...).connect(), then m.list(), m.dict(), m.Namespace()).
 * Typeids "list", "dict" and "Namespace" create new containers in the heap; a typeid given to
 * mp_manager_register() returns that container (Python's register('get_x', callable=lambda:
 * x)), which is how C and Python share one. Methods: ListProxy __len__ __getitem__ __setitem__
 * __delitem__ __contains__ append extend insert pop remove index count reverse sort (slices
 * too); DictProxy __len__ __getitem__ __setitem__ __delitem__ __contains__ get keys values items
 * update pop popitem setdefault clear copy; NamespaceProxy attribute get/set/del; the fallbacks
 * str(), repr() and _getvalue(). Any other method is answered as CPython answers an unexposed
 * one (a RemoteError in the client). Values are None, bool, int (int64), float, str, bytes and
 * proxies of this manager's containers (nested containers travel as proxies, both ways, as in
 * CPython; a rebuilt proxy authenticates with the client process's authkey, CPython's rule):
 * storing anything else (a tuple, a plain list or dict) raises TypeError in the client
 * (OverflowError for a larger int) and changes nothing. A client's `shutdown` request shuts
 * the manager down, as in Python.
 * Containers created by clients are freed with the heap, not when their last proxy goes. */

/* mp_manager_address - the address a served manager listens on, in the form mp_client_connect
 * takes ("127.0.0.1:40123", or the AF_UNIX path); NULL when not served or after shutdown. */
MP_API const char *mp_manager_address(const mp_manager *m);

/* mp_manager_register - make `typeid` name the container *obj (a list, dict or Namespace of
 * m) for Python clients: their create(typeid) returns it. Works from any process with the
 * manager, before or after clients connect; registering a typeid again replaces it.
 * Returns 0; -EINVAL (not served, a NULL or empty typeid, obj not a container of m), -EBADF,
 * -ENOMEM, -ENOSPC. */
MP_API int mp_manager_register(mp_manager *m, const char *typeid, const mp_item *obj);

/* ---- driving a Python manager from C ------------------------------------------------------------
 * mp_manager_connect() makes a manager handle that is a client of a Python manager's server
 * (a SyncManager started with start() or get_server().serve_forever(), or any BaseManager that
 * registers 'list', 'dict' and 'Namespace'): Python's BaseManager(address, authkey).connect().
 * On such a handle mp_list_open, mp_dict_open and mp_namespace_open create the container on the
 * server (its typeids 'list', 'dict', 'Namespace'), mp_manager_list/dict/namespace(&x, m, name)
 * call the server's typeid `name` (Python's register('get_x', callable=lambda: x,
 * proxytype=ListProxy), which is how C and Python share one object; the proxytype matters,
 * since it decides which methods the server exposes), and every container call of the sections
 * below works on the handles with the same value types and results. Differences:
 *  - Each call is a round trip to the server (Python's proxies), bounded by the timeout of the
 *    options: -ETIMEDOUT when the server does not answer in time (a stopped server), -EPIPE
 *    when it has gone (the connection closed or was reset, or a new one is refused). A call
 *    that fails so may or may not have been carried out.
 *  - Python exceptions map to the codes of the sections below: KeyError and AttributeError
 *    -ENOENT, IndexError and OverflowError -ERANGE, TypeError MP_ETYPE, ValueError -ENOENT
 *    from remove/index (else -EINVAL), MemoryError -ENOMEM; any other exception (and a
 *    #TRACEBACK reply, Python's RemoteError) is MP_EREMOTE. mp_manager_last_error() keeps the
 *    message. A value C cannot hold (a tuple, a plain list or dict, an int beyond int64, any
 *    other object) is MP_ETYPE; mp_list_pop/mp_dict_pop/popitem have then already removed it.
 *  - Python's list.sort() may leave the list partly sorted when it raises TypeError.
 *  - Nested containers travel as proxies, both ways: a container handle of the same connected
 *    manager may be stored as a value, and reading one back gives a new handle on it. Their
 *    Tokens carry the address as given to mp_manager_connect; give the address the server
 *    bound ("127.0.0.1:port", not "localhost:port") so that the server knows them as its own.
 *  - Reference counting is CPython's: each container handle holds one reference on the
 *    server's object (taken by create, or by incref for a handle received as a value), and
 *    mp_*_close drops it (decref) with one more round trip, which may block up to the
 *    timeout; the server frees the object when no proxy holds it any more. Closing never
 *    fails: a server that has gone is ignored, as by CPython's proxies.
 *  - Crossing fork(): a child inherits the manager and container handles. Its first call on
 *    the manager opens its own connections (it never uses the parent's sockets), and its first
 *    call on an inherited container handle takes the child's own reference (incref, as
 *    CPython's proxies do after fork), which the child's close drops; a handle the child never
 *    uses costs the server nothing, and the parent must keep its own handle open until the
 *    child has used it (else the object may be freed first). Threads may share every handle:
 *    each call takes an idle connection of its process or opens another one, so concurrent
 *    calls run in parallel on separate connections (Python's per-thread connections).
 *  - The other mp_manager_ calls: mp_manager_shutdown is -EPERM (Python's connect()ed manager
 *    cannot shut the server down either), mp_manager_register, mp_manager_delete and the typed
 *    objects (value, array, queue, lock, ...) are -ENOTSUP, mp_manager_name is "",
 *    mp_manager_pid is -ENOTSUP and mp_manager_address is the address connected to.
 *    mp_manager_close releases the handle; container handles keep the connections alive and
 *    may be closed before or after it. */

typedef struct mp_manager_connect_opts {
    mp_client_opts client; /* the authkey (required: Python's server always authenticates) */
    int timeout_ms;        /* bound on each call, connecting included; 0: 5000; MP_FOREVER ok */
} mp_manager_connect_opts;

/* mp_manager_connect - connect to the Python manager at `address` (as mp_client_connect takes
 * it: "127.0.0.1:50000", "[::1]:50000" or an AF_UNIX path) and check that it answers
 * (Python's connect(), which sends 'dummy'). Blocks up to the timeout of opts.
 * Returns 0; -EINVAL (NULL arguments, no authkey, a bad timeout), and mp_client_connect's
 * errors: -EACCES (wrong authkey), -ECONNREFUSED/-ENOENT (no server), -ETIMEDOUT, -EPROTO,
 * -ENOMEM...; MP_EREMOTE when the server answers 'dummy' with an error. */
MP_API int mp_manager_connect(mp_manager **out, const char *address,
                              const mp_manager_connect_opts *opts);

/* mp_manager_last_error - the message of the last Python exception a call of this thread got
 * from a connected manager ("KeyError: 'k'", or a RemoteError's traceback text), truncated
 * to 1023 bytes; "" if none. The string belongs to the thread; the next failing call
 * overwrites it. */
MP_API const char *mp_manager_last_error(void);

/* ---- list (Python's manager.list()) ------------------------------------------------------ */

/* mp_list_open - a new shared list holding copies of items[0..n) (Python's manager.list(seq)).
 * Returns 0, -EINVAL, -EBADF, -ENOMEM, -ENOSPC. */
MP_API int mp_list_open(mp_list **out, mp_manager *m, const mp_item *items, size_t n);

/* mp_list_close - free this handle (NULL is fine); the list itself lives on. */
MP_API void mp_list_close(mp_list *l);

/* mp_list_len - len(l), or a negative error. */
MP_API ssize_t mp_list_len(mp_list *l);

/* mp_list_get / mp_list_set / mp_list_del - l[i], l[i] = v, del l[i]; negative indexes count
 * from the end. -ERANGE when i is out of range. */
MP_API int mp_list_get(mp_list *l, ptrdiff_t i, mp_item *out);
MP_API int mp_list_set(mp_list *l, ptrdiff_t i, const mp_item *v);
MP_API int mp_list_del(mp_list *l, ptrdiff_t i);

/* Slice bounds: MP_SLICE_DEFAULT is Python's omitted bound (l[:3], l[::-1]). */
#define MP_SLICE_DEFAULT PTRDIFF_MIN

/* mp_list_slice - copies of l[start:stop:step] into a new array (*out, *n; free it with
 * mp_items_free; *out may be NULL when *n is 0). Bounds are clamped as in Python.
 * -EINVAL for step 0. */
MP_API int mp_list_slice(mp_list *l, ptrdiff_t start, ptrdiff_t stop, ptrdiff_t step,
                         mp_item **out, size_t *n);

/* mp_list_set_slice - l[start:stop] = items[0..n) (step 1; the list may grow or shrink). */
MP_API int mp_list_set_slice(mp_list *l, ptrdiff_t start, ptrdiff_t stop, const mp_item *items,
                             size_t n);

/* mp_list_del_slice - del l[start:stop:step]. -EINVAL for step 0. */
MP_API int mp_list_del_slice(mp_list *l, ptrdiff_t start, ptrdiff_t stop, ptrdiff_t step);

/* mp_list_append / mp_list_extend / mp_list_insert - as Python's. insert clamps i as Python
 * does (never -ERANGE). extend is atomic: all of items or, on error, none. */
MP_API int mp_list_append(mp_list *l, const mp_item *v);
MP_API int mp_list_extend(mp_list *l, const mp_item *items, size_t n);
MP_API int mp_list_insert(mp_list *l, ptrdiff_t i, const mp_item *v);

/* mp_list_pop - remove l[i] (i = -1: the last) and move it to *out (may be NULL).
 * -ERANGE when the list is empty or i is out of range. */
MP_API int mp_list_pop(mp_list *l, ptrdiff_t i, mp_item *out);

/* mp_list_remove - remove the first item equal to *v. mp_list_index - its index.
 * mp_list_count - how many are equal. mp_list_contains - 1 or 0. Equality is Python's:
 * int, float and bool by value (1 == 1.0 == True), str and bytes by content, None with None,
 * containers by identity; a NaN equals a NaN (Python's identity rule for one object).
 * remove and index return -ENOENT when there is none (Python's ValueError). */
MP_API int mp_list_remove(mp_list *l, const mp_item *v);
MP_API ssize_t mp_list_index(mp_list *l, const mp_item *v);
MP_API ssize_t mp_list_count(mp_list *l, const mp_item *v);
MP_API int mp_list_contains(mp_list *l, const mp_item *v);

/* mp_list_reverse / mp_list_clear - as Python's. */
MP_API int mp_list_reverse(mp_list *l);
MP_API int mp_list_clear(mp_list *l);

/* mp_list_sort - stable sort in Python's order (reverse as Python's reverse=True): numbers
 * (int, float, bool) by value, str by code point, bytes bytewise. Items that Python cannot
 * order against each other (a str and an int, None, containers) give MP_ETYPE and leave the
 * list unchanged. */
MP_API int mp_list_sort(mp_list *l, bool reverse);

/* mp_list_repr - Python's repr(l) (see mp_item_repr). */
MP_API ssize_t mp_list_repr(mp_list *l, char **out);

/* ---- dict (Python's manager.dict()) ------------------------------------------------------ */

/* Keys are None, bool, int, float, str or bytes (a container key is MP_ETYPE) with Python's
 * equality and hashing: 1, 1.0 and True are one key. Order is insertion order, as Python's. */

/* mp_dict_open - a new empty shared dict. Returns 0, -EINVAL, -EBADF, -ENOMEM, -ENOSPC. */
MP_API int mp_dict_open(mp_dict **out, mp_manager *m);

/* mp_dict_close - free this handle (NULL is fine); the dict lives on. */
MP_API void mp_dict_close(mp_dict *d);

/* mp_dict_len - len(d), or a negative error. */
MP_API ssize_t mp_dict_len(mp_dict *d);

/* mp_dict_get - a copy of d[key] into *out; when the key is missing, a copy of *def if def is
 * not NULL (Python's d.get(key, def)) or -ENOENT (Python's d[key]). */
MP_API int mp_dict_get(mp_dict *d, const mp_item *key, const mp_item *def, mp_item *out);

/* mp_dict_set / mp_dict_del / mp_dict_contains - d[key] = v, del d[key] (-ENOENT), key in d
 * (1 or 0). */
MP_API int mp_dict_set(mp_dict *d, const mp_item *key, const mp_item *v);
MP_API int mp_dict_del(mp_dict *d, const mp_item *key);
MP_API int mp_dict_contains(mp_dict *d, const mp_item *key);

/* mp_dict_keys / mp_dict_values / mp_dict_items - a consistent snapshot (taken under the
 * dict's lock) in insertion order, as new arrays (free with mp_items_free; items gives two
 * arrays of *n items each, either pointer may be NULL if not wanted). */
MP_API int mp_dict_keys(mp_dict *d, mp_item **out, size_t *n);
MP_API int mp_dict_values(mp_dict *d, mp_item **out, size_t *n);
MP_API int mp_dict_items(mp_dict *d, mp_item **keys, mp_item **values, size_t *n);

/* mp_dict_update - d[keys[i]] = values[i] for each i, in order, under one lock. Every pair is
 * checked first, so a bad key or value stores nothing; only running out of heap while storing
 * (-ENOMEM, -ENOSPC) can leave the first pairs stored. */
MP_API int mp_dict_update(mp_dict *d, const mp_item *keys, const mp_item *values, size_t n);

/* mp_dict_pop - remove key and move its value to *out (may be NULL); when missing, a copy of
 * *def if given, else -ENOENT. mp_dict_popitem - remove the last inserted pair (Python's LIFO
 * popitem), -ENOENT when empty. */
MP_API int mp_dict_pop(mp_dict *d, const mp_item *key, const mp_item *def, mp_item *out);
MP_API int mp_dict_popitem(mp_dict *d, mp_item *key, mp_item *value);

/* mp_dict_setdefault - d.setdefault(key, def): store *def (NULL: None) if the key is missing;
 * a copy of the value now under key goes to *out (may be NULL). */
MP_API int mp_dict_setdefault(mp_dict *d, const mp_item *key, const mp_item *def, mp_item *out);

/* mp_dict_clear - remove every item. */
MP_API int mp_dict_clear(mp_dict *d);

/* mp_dict_copy - a new shared dict of the same manager with the same items (shallow: nested
 * containers are shared, as in Python's copy()). */
MP_API int mp_dict_copy(mp_dict *d, mp_dict **out);

/* mp_dict_repr - Python's repr(d): {'a': 1, 2: [3]}. */
MP_API ssize_t mp_dict_repr(mp_dict *d, char **out);

/* ---- Namespace (Python's manager.Namespace()) -------------------------------------------- */

/* Attribute names are non-empty UTF-8 strings not starting with '_' (Python keeps those on the
 * proxy, local to one process): -EINVAL otherwise. A missing attribute is -ENOENT (Python's
 * AttributeError). */
MP_API int mp_namespace_open(mp_namespace **out, mp_manager *m);
MP_API void mp_namespace_close(mp_namespace *ns);
MP_API int mp_namespace_get(mp_namespace *ns, const char *name, mp_item *out);
MP_API int mp_namespace_set(mp_namespace *ns, const char *name, const mp_item *v);
MP_API int mp_namespace_del(mp_namespace *ns, const char *name);
/* mp_namespace_repr - Python's repr: Namespace(a=1, b='x'), the "name=value" parts sorted. */
MP_API ssize_t mp_namespace_repr(mp_namespace *ns, char **out);

#ifdef __cplusplus
}
#endif

#endif /* MPIPC_H */
