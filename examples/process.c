/*
 * process.c - the C twin of Python's
 *
 *     def f(name): print('hello', name)
 *     p = multiprocessing.Process(target=f, args=('bob',)); p.start(); p.join()
 */
#include <mpipc.h>
#include <stdio.h>

static int
f(void *name)
{
    printf("hello %s\n", (const char *)name);
    return 0;
}

int
main(void)
{
    mp_process *p;
    if (mp_process_open(&p, f, "bob", NULL) != 0 || mp_process_start(p) != 0)
        return 1;
    mp_process_join(p, MP_FOREVER);
    mp_process_close(p);
    return 0;
}
