/*
 * pipe.c - the C twin of Python's
 *
 *     def worker(conn):
 *         conn.send("Data from worker"); conn.close()
 *     parent_conn, child_conn = multiprocessing.Pipe()
 *     p = multiprocessing.Process(target=worker, args=(child_conn,)); p.start()
 *     print(f"Received from worker: {parent_conn.recv()}"); p.join()
 *
 * The message travels as raw bytes (send_bytes), where Python would pickle the string.
 */
#include <mpipc.h>
#include <stdio.h>
#include <string.h>

static int
worker(void *arg)
{
    mp_conn *conn = arg;
    const char *msg = "Data from worker";
    int r = mp_conn_send_bytes(conn, msg, strlen(msg), MP_FOREVER);
    mp_conn_close(conn);
    return r == 0 ? 0 : 1;
}

int
main(void)
{
    mp_conn *parent_conn, *child_conn;
    mp_process *p;
    if (mp_pipe_open(&parent_conn, &child_conn, true) != 0 ||
        mp_process_open(&p, worker, child_conn, NULL) != 0 || mp_process_start(p) != 0)
        return 1;
    void *buf;
    size_t len;
    int r = mp_conn_recv_bytes(parent_conn, &buf, &len, SIZE_MAX, MP_FOREVER);
    if (r != 0) {
        fprintf(stderr, "recv_bytes: %s\n", mp_strerror(r));
        return 1;
    }
    printf("Received from worker: %.*s\n", (int)len, (const char *)buf);
    mp_free(buf);
    mp_process_join(p, MP_FOREVER);
    mp_process_close(p);
    mp_conn_close(child_conn);
    mp_conn_close(parent_conn);
    return 0;
}
