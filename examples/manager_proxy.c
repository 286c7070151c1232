/*
 * manager_proxy.c - C as the client of a Python manager, the twin of:
 *
 *     class JobManager(SyncManager): pass
 *     JobManager.register('get_jobs'); JobManager.register('get_results')
 *     m = JobManager(address=('127.0.0.1', 50000), authkey=b'secret password'); m.connect()
 *     jobs, results = m.get_jobs(), m.get_results()
 *     jobs.append('from C'); results['done'] = len(jobs)
 *
 * The server is Python's own (manager_proxy_server.py beside this file registers the list and
 * the dict with proxytype=ListProxy/DictProxy).
 *
 *     manager_proxy ADDRESS             connect to a running server ("127.0.0.1:50000")
 *     manager_proxy --run SCRIPT        start `python3 SCRIPT`, use it, let it report
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <mpipc.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEY "secret password"

/* Start python3 SCRIPT with pipes on its stdin and stdout; read the address it prints. */
static pid_t
start_server(const char *script, char *address, size_t cap, int *to_server, FILE **from_server)
{
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execlp("python3", "python3", script, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    *to_server = in[1];
    *from_server = fdopen(out[0], "r");
    if (pid < 0 || *from_server == NULL || fgets(address, (int)cap, *from_server) == NULL)
        return -1;
    address[strcspn(address, "\n")] = '\0';
    return pid;
}

int
main(int argc, char **argv)
{
    char address[256] = "";
    int to_server = -1;
    FILE *from_server = NULL;
    pid_t server = 0;
    if (argc == 3 && strcmp(argv[1], "--run") == 0)
        server = start_server(argv[2], address, sizeof address, &to_server, &from_server);
    else if (argc == 2)
        snprintf(address, sizeof address, "%s", argv[1]);
    else {
        fprintf(stderr, "usage: manager_proxy ADDRESS | --run SCRIPT\n");
        return 2;
    }
    mp_manager_connect_opts o = {.client = {.authkey = KEY, .authkey_len = strlen(KEY)}};
    mp_manager *m = NULL;
    mp_list *jobs = NULL;
    mp_dict *results = NULL;
    int r = server < 0 ? -ECHILD : mp_manager_connect(&m, address, &o);
    if (r == 0 && (r = mp_manager_list(&jobs, m, "get_jobs")) == 0)
        r = mp_manager_dict(&results, m, "get_results");
    if (r == 0) {
        mp_item job = mp_item_str("from C"), key = mp_item_str("done");
        mp_list_append(jobs, &job);
        mp_item n = mp_item_int(mp_list_len(jobs));
        mp_dict_set(results, &key, &n);
        char *s;
        if (mp_list_repr(jobs, &s) >= 0) {
            printf("C sees the jobs: %s\n", s);
            mp_free(s);
        }
    } else {
        fprintf(stderr, "manager_proxy: %s %s\n", mp_strerror(r), mp_manager_last_error());
    }
    mp_list_close(jobs);
    mp_dict_close(results);
    mp_manager_close(m);
    if (server > 0) {
        /* The server reports what C left, then exits. */
        fflush(stdout);
        close(to_server);
        char line[256];
        while (fgets(line, sizeof line, from_server) != NULL)
            fputs(line, stdout);
        fclose(from_server);
        waitpid(server, NULL, 0);
    }
    return r == 0 ? 0 : 1;
}
