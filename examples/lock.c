/*
 * lock.c - the C twin of Python's
 *
 *     def f(l, i):
 *         with l: print('hello world', i)
 *     lock = multiprocessing.Lock()
 *     for num in range(10): multiprocessing.Process(target=f, args=(lock, num)).start()
 *
 * Without the lock the ten children's lines could interleave; with it each prints whole.
 */
#include <mpipc.h>
#include <stdint.h>
#include <stdio.h>

static mp_lock *lock; /* opened before the children are started, so they inherit it */

static int
f(void *arg)
{
    if (mp_lock_acquire(lock, MP_FOREVER) < 0)
        return 1;
    printf("hello world %d\n", (int)(intptr_t)arg);
    fflush(stdout);
    mp_lock_release(lock);
    return 0;
}

int
main(void)
{
    mp_process *p[10];
    if (mp_lock_open(&lock, NULL) != 0)
        return 1;
    for (int num = 0; num < 10; num++)
        if (mp_process_open(&p[num], f, (void *)(intptr_t)num, NULL) != 0 ||
            mp_process_start(p[num]) != 0)
            return 1;
    for (int num = 0; num < 10; num++) {
        mp_process_join(p[num], MP_FOREVER);
        mp_process_close(p[num]);
    }
    mp_lock_close(lock); /* after the children: only the opener frees the lock */
    return 0;
}
