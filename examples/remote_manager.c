/*
 * remote_manager.c - the C side of Python's remote manager example:
 *
 *     shared = []
 *     class QueueManager(BaseManager): pass
 *     QueueManager.register('get_list', callable=lambda: shared, proxytype=ListProxy)
 *     m = QueueManager(address=('127.0.0.1', 50000), authkey=b'secret password')
 *     m.get_server().serve_forever()
 *
 * The manager's containers live in shared memory: a C worker process appends to the list
 * directly, while a Python client (remote_manager.py beside this file) reaches the same list
 * and dict over TCP or AF_UNIX through CPython's own manager protocol.
 *
 *     remote_manager [ADDRESS [PYTHON_SCRIPT]]     (ADDRESS: 127.0.0.1:0 by default)
 *
 * With a script it runs `python3 SCRIPT ADDRESS` as the client; without one it waits for a
 * line on stdin, so that the client can be started by hand.
 */
#include <mpipc.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEY "secret password"

static mp_list *shared_list;

static int
worker(void *arg)
{
    (void)arg;
    mp_item v = mp_item_str("from a C worker");
    return mp_list_append(shared_list, &v) == 0 ? 0 : 1;
}

static int
run_client(const char *script, const char *address)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execlp("python3", "python3", script, address, (char *)NULL);
        _exit(127);
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int
main(int argc, char **argv)
{
    mp_listener_opts lo = {.authkey = KEY, .authkey_len = strlen(KEY)};
    mp_manager_opts mo = {.address = argc > 1 ? argv[1] : "127.0.0.1:0", .listener = &lo};
    mp_manager *m;
    mp_dict *d;
    int r = mp_manager_open(&m, &mo);
    if (r != 0) {
        fprintf(stderr, "mp_manager_open: %s\n", mp_strerror(r));
        return 1;
    }
    mp_list_open(&shared_list, m, NULL, 0);
    mp_dict_open(&d, m);
    mp_item l_item = mp_item_list(shared_list), d_item = mp_item_dict(d);
    mp_manager_register(m, "get_list", &l_item);
    mp_manager_register(m, "get_dict", &d_item);
    mp_process *p;
    mp_process_open(&p, worker, NULL, NULL);
    mp_process_start(p);
    mp_process_join(p, MP_FOREVER);
    mp_process_close(p);

    int rc = 0;
    if (argc > 2)
        rc = run_client(argv[2], mp_manager_address(m));
    else {
        char line[16];
        fprintf(stderr, "serving on %s\nrun: python3 remote_manager.py %s   (then press Enter)\n",
                mp_manager_address(m), mp_manager_address(m));
        if (fgets(line, sizeof line, stdin) == NULL)
            line[0] = '\0';
    }
    char *s;
    if (mp_list_repr(shared_list, &s) >= 0) {
        printf("C sees the list: %s\n", s);
        mp_free(s);
    }
    if (mp_dict_repr(d, &s) >= 0) {
        printf("C sees the dict: %s\n", s);
        mp_free(s);
    }
    mp_list_close(shared_list);
    mp_dict_close(d);
    mp_manager_close(m);
    return rc == 0 ? 0 : 1;
}
