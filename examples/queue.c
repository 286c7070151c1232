/*
 * queue.c - the C twin of Python's
 *
 *     def worker(q): q.put("Data from worker")
 *     queue = multiprocessing.Queue()
 *     process = multiprocessing.Process(target=worker, args=(queue,))
 *     process.start(); process.join()
 *     print(f"Received from worker: {queue.get()}")
 */
#include <mpipc.h>
#include <stdio.h>
#include <string.h>

static int
worker(void *arg)
{
    const char *msg = "Data from worker";
    return mp_queue_put(arg, msg, strlen(msg), MP_FOREVER) == 0 ? 0 : 1;
}

int
main(void)
{
    mp_queue *queue;
    mp_process *process;
    if (mp_queue_open(&queue, NULL) != 0)
        return 1;
    if (mp_process_open(&process, worker, queue, NULL) != 0 || mp_process_start(process) != 0)
        return 1;
    mp_process_join(process, MP_FOREVER);
    mp_process_close(process);

    char buf[64];
    size_t len;
    if (mp_queue_get(queue, buf, sizeof buf, &len, MP_FOREVER) != 0)
        return 1;
    printf("Received from worker: %.*s\n", (int)len, buf);
    mp_queue_close(queue);
    return 0;
}
