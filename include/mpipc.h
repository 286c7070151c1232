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
 * Crossing fork(): a child forked after mp_queue_open inherits the handle and may put, get,
 * task_done, join and close it; all handles of one queue, in every process, are equal. The
 * handle's fd is O_CLOEXEC, so exec'd programs do not inherit it. The queue lives until the
 * last process holding it closes it (or exits). Thread safety: a handle may be used from
 * several threads at once.
 *
 * Crash safety: a process killed at any point inside a call never blocks or corrupts the
 * others. A producer killed while putting a message that fits the ring leaves no trace. A
 * consumer killed while getting it either got it (the head had moved) or left it in the queue
 * for the next consumer. A producer killed in the middle of a streamed message: consumers
 * waiting for the next chunk notice within about 50 ms, discard the partial message and go
 * on. A consumer killed (or timing out) in the middle of a streamed message loses that
 * message; the next consumer skips its remainder. A message lost this way counts as done for
 * mp_queue_join.
 * ============================================================================================ */

typedef struct mp_queue mp_queue;

typedef struct mp_queue_opts {
    /* Python's maxsize: the most messages the queue holds; put blocks beyond it. 0 means no
     * limit by count (only the ring's bytes limit it). Less than 2^29. */
    size_t maxsize;
    /* Ring size in bytes, rounded up to a power of two, 64 B .. 4 GiB. 0 gives 1 MiB.
     * The memory is reserved at open (-ENOSPC if /dev/shm is full). */
    size_t capacity;
    /* JoinableQueue: count unfinished tasks for mp_queue_task_done and mp_queue_join. */
    bool joinable;
} mp_queue_opts;

/* mp_queue_open - create a queue; `opts` may be NULL (a SimpleQueue: no limits, 1 MiB ring).
 * Returns 0, -EINVAL (NULL out, maxsize or capacity out of range), -ENOMEM, -ENOSPC, -EMFILE. */
MP_API int mp_queue_open(mp_queue **out, const mp_queue_opts *opts);

/* mp_queue_put - append a copy of data[0..len) (len may be 0; data may then be NULL). Blocks
 * while the queue holds maxsize messages or the ring has no room. The deadline covers the
 * lock, the wait for room and, for a streamed message, the whole stream.
 * Returns 0; -EAGAIN with MP_NOWAIT when full (always for a message larger than the ring);
 * -ETIMEDOUT (nothing of the message is visible: a stream that timed out is discarded by
 * consumers); -EINTR when a signal handler interrupted a wait; -EINVAL for bad arguments. */
MP_API int mp_queue_put(mp_queue *q, const void *data, size_t len, int timeout_ms);

/* mp_queue_get - remove the oldest message and copy it into buf (capacity cap bytes); its
 * length goes to *len. Blocks while the queue is empty. If the message is longer than cap:
 * -EMSGSIZE, *len is the length needed, and the message stays queued for a retry.
 * Returns 0; -EAGAIN with MP_NOWAIT when empty (or a streamed message is at the head);
 * -ETIMEDOUT; -EINTR; -EINVAL (NULL q or len, NULL buf with cap > 0, bad timeout). A timeout
 * or signal in the middle of a streamed message drops that message. */
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

/* mp_queue_close - release this process's mapping and fd and free the handle (NULL is fine).
 * Other processes keep using the queue. Messages still queued are freed with the last handle. */
MP_API void mp_queue_close(mp_queue *q);

#ifdef __cplusplus
}
#endif

#endif /* MPIPC_H */
