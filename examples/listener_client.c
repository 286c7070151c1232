/*
 * listener_client.c - the C twin of Python's
 *
 *     from multiprocessing.connection import Listener, Client
 *     with Listener(('127.0.0.1', 0), authkey=b'secret password') as listener:
 *         # a child process: with Client(listener.address, authkey=...) as c: print(c.recv_bytes())
 *         with listener.accept() as conn:
 *             print('connection accepted')
 *             conn.send_bytes(b'hello')
 *
 * With arguments it plays one side only, so that the other can be Python:
 *     listener_client listen 127.0.0.1:6000    then, in Python:
 *         Client(('127.0.0.1', 6000), authkey=b'secret password').recv_bytes()
 *     listener_client connect 127.0.0.1:6000   against Python's
 *         Listener(('127.0.0.1', 6000), authkey=b'secret password').accept().send_bytes(b'hello')
 */
#include <mpipc.h>
#include <stdio.h>
#include <string.h>

#define KEY "secret password"

static int
client(void *address)
{
    mp_client_opts opts = {.authkey = KEY, .authkey_len = strlen(KEY)};
    mp_conn *conn;
    int r = mp_client_connect(&conn, address, &opts, 10000);
    if (r != 0) {
        fprintf(stderr, "connect: %s\n", mp_strerror(r));
        return 1;
    }
    void *buf;
    size_t len;
    r = mp_conn_recv_bytes(conn, &buf, &len, SIZE_MAX, 10000);
    if (r == 0) {
        printf("b'%.*s'\n", (int)len, (const char *)buf);
        mp_free(buf);
    }
    mp_conn_close(conn);
    return r == 0 ? 0 : 1;
}

static int
listener(const char *address, bool spawn_client)
{
    mp_listener_opts opts = {.authkey = KEY, .authkey_len = strlen(KEY)};
    mp_listener *l;
    int r = mp_listener_open(&l, address, &opts);
    if (r != 0) {
        fprintf(stderr, "listen on %s: %s\n", address, mp_strerror(r));
        return 1;
    }
    mp_process *p = NULL;
    if (spawn_client && (mp_process_open(&p, client, (void *)mp_listener_address(l), NULL) != 0 ||
                         mp_process_start(p) != 0)) {
        mp_process_close(p);
        mp_listener_close(l);
        return 1;
    }
    mp_conn *conn;
    r = mp_listener_accept(l, &conn, MP_FOREVER);
    if (r == 0) {
        printf("connection accepted\n");
        fflush(stdout);
        r = mp_conn_send_bytes(conn, "hello", 5, MP_FOREVER);
        mp_conn_close(conn);
    } else {
        fprintf(stderr, "accept: %s\n", mp_strerror(r));
    }
    if (p != NULL) {
        mp_process_join(p, MP_FOREVER);
        mp_process_close(p);
    }
    mp_listener_close(l);
    return r == 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "listen") == 0)
        return listener(argv[2], false);
    if (argc == 3 && strcmp(argv[1], "connect") == 0)
        return client(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: %s [listen|connect ADDRESS]\n", argv[0]);
        return 2;
    }
    return listener("127.0.0.1:0", true);
}
