/*
 * value.c - the C twin of Python's
 *
 *     def worker(v): v.value += 10
 *     shared_val = multiprocessing.Value('i', 0)
 *     p = multiprocessing.Process(target=worker, args=(shared_val,)); p.start(); p.join()
 *     print('Shared value after worker modification:', shared_val.value)
 *
 * Python's `v.value += 10` is a locked read followed by a separate locked write, so two workers
 * can lose updates. mp_value_fetch_add does it in one atomic step and needs no lock.
 */
#include <mpipc.h>
#include <stdio.h>

static int
worker(void *v)
{
    return mp_value_fetch_add(v, 10, NULL) == 0 ? 0 : 1;
}

int
main(void)
{
    mp_value *v;
    mp_process *p;
    if (mp_value_open(&v, 'i', NULL) != 0) /* Value('i', 0): zero-filled */
        return 1;
    if (mp_process_open(&p, worker, v, NULL) != 0 || mp_process_start(p) != 0)
        return 1;
    mp_process_join(p, MP_FOREVER);
    mp_process_close(p);
    int x;
    mp_value_get(v, &x, sizeof x);
    printf("Shared value after worker modification: %d\n", x);
    mp_value_close(v); /* after the worker: only the opener frees the value */
    return 0;
}
