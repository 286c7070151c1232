/*
 * array.c - the C twin of Python's
 *
 *     def worker(a):
 *         for i in range(len(a)): a[i] += 1
 *     shared_arr = multiprocessing.Array('i', [0] * 5)
 *     p = multiprocessing.Process(target=worker, args=(shared_arr,)); p.start(); p.join()
 *     print('Shared array after worker modification:', shared_arr[:])
 *
 * The worker holds the array's own (recursive) lock around each read-modify-write, which is
 * what makes `a[i] += 1` safe when several workers run.
 */
#include <mpipc.h>
#include <stdio.h>

static int
worker(void *arg)
{
    mp_array *a = arg;
    mp_lock *lock = mp_array_get_lock(a);
    if (mp_lock_acquire(lock, MP_FOREVER) < 0)
        return 1;
    for (size_t i = 0; i < mp_array_len(a); i++) {
        int x;
        mp_array_get(a, (ptrdiff_t)i, &x, sizeof x);
        x += 1;
        mp_array_set(a, (ptrdiff_t)i, &x, sizeof x);
    }
    mp_lock_release(lock);
    return 0;
}

int
main(void)
{
    int init[5] = {0, 0, 0, 0, 0};
    mp_array *a;
    mp_process *p;
    if (mp_array_open(&a, 'i', 5, &(mp_value_opts){.init = init}) != 0)
        return 1;
    if (mp_process_open(&p, worker, a, NULL) != 0 || mp_process_start(p) != 0)
        return 1;
    mp_process_join(p, MP_FOREVER);
    mp_process_close(p);
    int out[5];
    ssize_t n = mp_array_get_slice(a, 0, PTRDIFF_MAX, out, sizeof out); /* a[:] */
    printf("Shared array after worker modification: [");
    for (ssize_t i = 0; i < n; i++)
        printf(i ? ", %d" : "%d", out[i]);
    printf("]\n");
    mp_array_close(a); /* after the worker: only the opener frees the array */
    return 0;
}
