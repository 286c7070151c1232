/*
 * manager_list.c - the C twin of Python's
 *
 *     def worker(shared_list): shared_list.append("Data from worker")
 *     with multiprocessing.Manager() as manager:
 *         shared_list = manager.list()
 *         p = multiprocessing.Process(target=worker, args=(shared_list,)); p.start(); p.join()
 *         print(f"Shared list after worker modification: {shared_list}")
 *
 * The list lives in the manager's shared heap, so the worker's append is a direct store under
 * the list's lock rather than a message to a server process.
 */
#include <mpipc.h>
#include <stdio.h>

static int
worker(void *arg)
{
    mp_list *shared_list = arg; /* inherited across the fork */
    mp_item item = mp_item_str("Data from worker");
    return mp_list_append(shared_list, &item) == 0 ? 0 : 1;
}

int
main(void)
{
    mp_manager *manager;
    mp_list *shared_list;
    mp_process *p;
    char *repr;
    if (mp_manager_open(&manager, NULL) != 0)
        return 1;
    if (mp_list_open(&shared_list, manager, NULL, 0) != 0)
        return 1;
    if (mp_process_open(&p, worker, shared_list, NULL) != 0 || mp_process_start(p) != 0)
        return 1;
    mp_process_join(p, MP_FOREVER);
    mp_process_close(p);
    if (mp_list_repr(shared_list, &repr) < 0)
        return 1;
    printf("Shared list after worker modification: %s\n", repr);
    mp_free(repr);
    mp_list_close(shared_list);
    mp_manager_close(manager); /* Python's `with` exit: shutdown */
    return 0;
}
